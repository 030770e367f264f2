#include <fmt/format.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "net/net.hpp"

namespace aviary::net {
namespace {

using namespace std::chrono_literals;
using tcp = asio::ip::tcp;

TEST(HttpClient, TimesOutAgainstAServerThatNeverAnswers) {
    // Listening but never accepting: the kernel completes the handshake, nobody reads.
    asio::io_context ioc;
    tcp::acceptor silent{ioc, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
    const auto port = silent.local_endpoint().port();
    ClientRequest request;
    request.url = fmt::format("http://127.0.0.1:{}/healthz", port);
    request.timeout = 200ms;
    auto response = fetch_sync(request);
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, core::ErrorCode::kTimeout);
    EXPECT_EQ(response.error().message,
              fmt::format("request to http://127.0.0.1:{}/healthz timed out after 200ms", port));
}

TEST(HttpClient, ReportsARefusedConnectionAsUnavailable) {
    std::uint16_t port = 0;
    {
        // A port that was just free: bound, then closed again.
        asio::io_context ioc;
        tcp::acceptor probe{ioc, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
        port = probe.local_endpoint().port();
    }
    ClientRequest request;
    request.url = fmt::format("http://127.0.0.1:{}/", port);
    request.timeout = 2s;
    auto response = fetch_sync(request);
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, core::ErrorCode::kUnavailable);
    EXPECT_NE(response.error().message.find("refused"), std::string::npos)
        << response.error().message;
}

TEST(HttpClient, RefusesHttpsForNow) {
    ClientRequest request;
    request.url = "https://example.com/";
    auto response = fetch_sync(request);
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_NE(response.error().message.find("https is not supported yet"), std::string::npos);
}

TEST(HttpClient, RejectsAMalformedUrl) {
    ClientRequest request;
    request.url = "not a url";
    auto response = fetch_sync(request);
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, core::ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace aviary::net
