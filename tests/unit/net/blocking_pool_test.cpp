#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <stdexcept>
#include <string>
#include <thread>

#include "net/net.hpp"

namespace aviary::net {
namespace {

struct Seen {
    std::thread::id worker;
    std::thread::id resumed;
};

asio::awaitable<void> compute_on_pool(BlockingPool& pool, Seen& seen) {
    auto work = [] { return std::this_thread::get_id(); };
    seen.worker = co_await offload(pool, std::move(work));
    seen.resumed = std::this_thread::get_id();
}

asio::awaitable<void> fail_on_pool(BlockingPool& pool, std::string& caught) {
    auto work = []() -> int { throw std::runtime_error("disk on fire"); };
    try {
        co_await offload(pool, std::move(work));
    } catch (const std::runtime_error& e) {
        caught = e.what();
    }
}

asio::awaitable<void> run_void_on_pool(BlockingPool& pool, int& counter) {
    auto work = [&counter] { ++counter; };
    co_await offload(pool, std::move(work));
    ++counter;
}

TEST(BlockingPool, OffloadReturnsTheValueComputedOnAnotherThread) {
    BlockingPool pool{2};
    asio::io_context ioc;
    Seen seen;
    asio::co_spawn(ioc, compute_on_pool(pool, seen), asio::detached);
    ioc.run();
    EXPECT_NE(seen.worker, std::thread::id{});
    EXPECT_NE(seen.worker, std::this_thread::get_id());
    EXPECT_EQ(seen.resumed, std::this_thread::get_id());  // back on the caller's executor
}

TEST(BlockingPool, OffloadRethrowsInTheCaller) {
    BlockingPool pool{1};
    asio::io_context ioc;
    std::string caught;
    asio::co_spawn(ioc, fail_on_pool(pool, caught), asio::detached);
    ioc.run();
    EXPECT_EQ(caught, "disk on fire");
}

TEST(BlockingPool, OffloadRunsVoidWork) {
    BlockingPool pool{1};
    asio::io_context ioc;
    int counter = 0;
    asio::co_spawn(ioc, run_void_on_pool(pool, counter), asio::detached);
    ioc.run();
    EXPECT_EQ(counter, 2);
}

TEST(BlockingPool, RunAfterStopFailsInsteadOfHanging) {
    BlockingPool pool{1};
    pool.stop();
    pool.stop();  // idempotent
    asio::io_context ioc;
    int counter = 0;
    bool failed = false;
    asio::co_spawn(ioc, run_void_on_pool(pool, counter),
                   [&failed](std::exception_ptr error) { failed = static_cast<bool>(error); });
    ioc.run();
    EXPECT_TRUE(failed);
    EXPECT_EQ(counter, 0);
}

}  // namespace
}  // namespace aviary::net
