#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/read.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "net/net.hpp"
#include "unit/net/raw_http.hpp"

namespace aviary::net {
namespace {

using namespace std::chrono_literals;
using test::RawClient;
using test::wait_until;
using tcp = asio::ip::tcp;

struct OkHandler {
    asio::awaitable<Response> operator()(Request request) const {
        Response response;
        response.body = request.path;
        co_return response;
    }
};

ServerSettings limit_settings() {
    ServerSettings settings;
    settings.listen = "127.0.0.1:0";
    settings.read_timeout = 2s;
    settings.idle_timeout = 10s;
    settings.write_timeout = 2s;
    settings.shutdown_grace = 2s;
    return settings;
}

int count_open_descriptors() {
    int count = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator{"/proc/self/fd"}) {
        ++count;
    }
    return count;
}

int highest_open_descriptor() {
    int highest = 0;
    for (const auto& entry : std::filesystem::directory_iterator{"/proc/self/fd"}) {
        highest = std::max(highest, std::stoi(entry.path().filename().string()));
    }
    return highest;
}

/// Uses up every descriptor the process may open (under a lowered soft limit) until release().
class DescriptorExhaustion {
public:
    DescriptorExhaustion() {
        ::getrlimit(RLIMIT_NOFILE, &original_);
        rlimit lowered = original_;
        lowered.rlim_cur = static_cast<rlim_t>(highest_open_descriptor() + 16);
        ::setrlimit(RLIMIT_NOFILE, &lowered);
        for (;;) {
            int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                break;
            }
            held_.push_back(fd);
        }
    }
    ~DescriptorExhaustion() { release(); }
    void release() {
        for (int fd : held_) {
            ::close(fd);
        }
        held_.clear();
        ::setrlimit(RLIMIT_NOFILE, &original_);
    }
    bool exhausted() const { return !held_.empty(); }

private:
    rlimit original_{};
    std::vector<int> held_;
};

TEST(HttpServerLimits, AcceptFailuresAreCountedAndTheServerServesOnceDescriptorsFree) {
    HttpServer server{limit_settings(), OkHandler{}};
    auto bound = server.start();
    ASSERT_TRUE(bound) << bound.error().message;
    auto host_port = split_host_port(*bound);
    ASSERT_TRUE(host_port);
    const tcp::endpoint endpoint{asio::ip::make_address(host_port->first), host_port->second};

    // Opened first: connecting it later needs no new descriptor, accepting it does.
    asio::io_context ioc;
    tcp::socket waiting{ioc};
    waiting.open(tcp::v4());
    {
        DescriptorExhaustion exhaustion;
        ASSERT_TRUE(exhaustion.exhausted());
        boost::system::error_code ec;
        waiting.connect(endpoint, ec);
        ASSERT_FALSE(ec) << ec.message();
        // The connection waits in the backlog while every accept fails with EMFILE: three
        // failures counted, and the server still up, is what this test is about. (Whether no
        // accept succeeds meanwhile is the kernel's business, and not certain: a descriptor
        // another thread of this process held while the table was filled, and closes during
        // it, leaves one free. CI met that once.)
        EXPECT_TRUE(wait_until([&] { return server.stats().accept_errors >= 3; }));
    }
    EXPECT_TRUE(wait_until([&] { return server.stats().accepted == 1; }));

    std::string request = "GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    asio::write(waiting, asio::buffer(request));
    std::string received;
    auto sink = asio::dynamic_buffer(received);
    asio::async_read(waiting, sink, [](boost::system::error_code, std::size_t) {});
    ioc.run_for(5s);
    EXPECT_TRUE(received.starts_with("HTTP/1.1 200")) << received;
    EXPECT_TRUE(received.ends_with("/after")) << received;
}

TEST(HttpServerLimits, RefusedConnectionsHoldNoMoreThanTheLingerBound) {
    auto settings = limit_settings();
    settings.max_connections = 2;
    HttpServer server{settings, OkHandler{}};
    auto bound = server.start();
    ASSERT_TRUE(bound) << bound.error().message;
    RawClient first{*bound};
    RawClient second{*bound};
    ASSERT_TRUE(wait_until([&] { return server.stats().open == 2; }));
    auto host_port = split_host_port(*bound);
    ASSERT_TRUE(host_port);
    const tcp::endpoint endpoint{asio::ip::make_address(host_port->first), host_port->second};

    // The extra clients share one io_context, so each holds exactly one descriptor here; the
    // server may add at most 16 lingering refusals (HttpServer's documented bound) and a few
    // for accepts in progress.
    asio::io_context ioc;
    const int baseline = count_open_descriptors();
    constexpr int kExtra = 64;
    constexpr int kLingerBound = 16;
    constexpr int kMargin = 4;
    std::vector<std::unique_ptr<tcp::socket>> extra;
    int peak = baseline;
    for (int i = 0; i < kExtra; ++i) {
        extra.push_back(std::make_unique<tcp::socket>(ioc));
        boost::system::error_code ec;
        extra.back()->connect(endpoint, ec);
        ASSERT_FALSE(ec) << ec.message();
        peak = std::max(peak, count_open_descriptors());
    }
    ASSERT_TRUE(wait_until([&] { return server.stats().rejected == kExtra; }));
    peak = std::max(peak, count_open_descriptors());
    EXPECT_LE(peak, baseline + kExtra + kLingerBound + kMargin);

    // Each extra client reads a 503 or just the close, to the end of the stream.
    std::vector<std::string> received(kExtra);
    int ended = 0;
    for (int i = 0; i < kExtra; ++i) {
        auto sink = asio::dynamic_buffer(received[i]);
        asio::async_read(*extra[i], sink,
                         [&ended](boost::system::error_code, std::size_t) { ++ended; });
    }
    ioc.run_for(5s);
    EXPECT_EQ(ended, kExtra);
    int answered = 0;
    for (const auto& got : received) {
        if (!got.empty()) {
            EXPECT_TRUE(got.starts_with("HTTP/1.1 503")) << got;
            ++answered;
        }
    }
    EXPECT_GE(answered, 1);
    EXPECT_EQ(server.stats().open, 2);

    first.send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n");
    auto served = first.read_response();
    ASSERT_TRUE(served);
    EXPECT_EQ(served->status, 200);
}

}  // namespace
}  // namespace aviary::net
