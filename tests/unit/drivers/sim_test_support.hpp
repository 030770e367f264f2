#pragma once
// Shared by the sim-node and sim driver tests: a temp dir, a bounded io_context run, and waits
// for a condition with a deadline (never a fixed sleep).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "drivers/drivers.hpp"

namespace aviary::drivers::test {

using namespace std::chrono_literals;

/// A condition a test waits for must hold within this.
inline constexpr auto kDeadline = 20s;

inline constexpr const char* kAviary = AVIARY_BINARY;

class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "drivers_test.XXXXXX");
        path_ = ::mkdtemp(pattern.data());
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

inline std::string read_text(const std::filesystem::path& path) {
    std::ifstream in{path};
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream{path} << text;
}

inline asio::awaitable<void> bounded(asio::awaitable<void> scenario,
                                     std::function<asio::awaitable<void>()> after) {
    using asio::experimental::awaitable_operators::operator||;
    asio::steady_timer deadline{co_await asio::this_coro::executor, kDeadline * 2};
    auto result = co_await (std::move(scenario) || deadline.async_wait(asio::use_awaitable));
    if (result.index() == 1) {
        ADD_FAILURE() << "the scenario did not finish within the deadline";
    }
    if (after) {
        co_await after();
    }
}

/// Runs `body` on a private io_context; `after` runs next, even when the deadline ended `body`
/// (a driver's stop(), so no child outlives the test).
inline void run(asio::awaitable<void> body, std::function<asio::awaitable<void>()> after = {}) {
    asio::io_context ioc;
    std::exception_ptr failure;
    asio::co_spawn(ioc, bounded(std::move(body), std::move(after)),
                   [&](std::exception_ptr e) { failure = e; });
    ioc.run();
    if (failure) {
        std::rethrow_exception(failure);
    }
}

/// Polls `condition` every 10 ms until it holds (true) or kDeadline passes (false).
inline asio::awaitable<bool> eventually(std::function<bool()> condition) {
    const auto until = std::chrono::steady_clock::now() + kDeadline;
    asio::steady_timer poll{co_await asio::this_coro::executor};
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= until) {
            co_return false;
        }
        poll.expires_after(10ms);
        co_await poll.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    co_return true;
}

}  // namespace aviary::drivers::test
