#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>

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

TEST(HttpClient, RejectsASchemeOtherThanHttpAndHttps) {
    ClientRequest request;
    request.url = "ftp://user:secret@example.com/file?token=abc";
    auto response = fetch_sync(request);
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_EQ(response.error().message,
              "unsupported scheme \"ftp\" in \"ftp://example.com/file?token=REDACTED\" (http and "
              "https only)");
}

TEST(HttpClient, RejectsAMalformedUrl) {
    ClientRequest request;
    request.url = "not a url";
    auto response = fetch_sync(request);
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, core::ErrorCode::kInvalidArgument);
}

/// Writes "first\n", then holds the response open until the client has seen it (or 10 s pass),
/// then writes "second\n": a client that buffers until a chunk fills never sees "first" early.
struct TwoLines {
    std::shared_ptr<std::atomic<bool>> seen_first;
    asio::awaitable<void> operator()(ResponseStream& out) const {
        if (!co_await out.write("first\n")) {
            co_return;
        }
        asio::steady_timer timer{co_await asio::this_coro::executor};
        const auto give_up = std::chrono::steady_clock::now() + 10s;
        while (!*seen_first && std::chrono::steady_clock::now() < give_up) {
            timer.expires_after(2ms);
            co_await timer.async_wait(asio::use_awaitable);
        }
        co_await out.write("second\n");
    }
};

TEST(HttpClient, FetchStreamHandsOverEachPieceAsItArrives) {
    auto seen_first = std::make_shared<std::atomic<bool>>(false);
    Handler handler = [seen_first](Request) -> asio::awaitable<Response> {
        Response response;
        response.content_type = "application/x-ndjson";
        response.stream = TwoLines{seen_first};
        co_return response;
    };
    HttpServer server(ServerSettings{.listen = "127.0.0.1:0"}, handler);
    auto address = server.start();
    ASSERT_TRUE(address) << address.error().message;
    std::string received;
    bool first_before_second = false;
    ClientRequest request;
    request.url = fmt::format("http://{}/lines", *address);
    request.timeout = 20s;
    auto response = fetch_stream(request, [&](std::string_view chunk) {
        received += chunk;
        if (received.find("first\n") != std::string::npos && !*seen_first) {
            first_before_second = received.find("second") == std::string::npos;
            *seen_first = true;
        }
    });
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(received, "first\nsecond\n");
    // "first" reached the callback on its own, while the server still held "second" back.
    EXPECT_TRUE(first_before_second);
    server.stop();
}

}  // namespace
}  // namespace aviary::net
