#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "net/net.hpp"
#include "unit/net/raw_http.hpp"

namespace aviary::net {
namespace {

using namespace std::chrono_literals;
using test::RawClient;
using test::wait_until;

/// The byte at `offset` of the test bodies: a pattern, so a lost or repeated piece shows.
char pattern_at(std::size_t offset) {
    return static_cast<char>('a' + (offset * 7 + offset / 251) % 26);
}

std::string pattern(std::size_t size) {
    std::string out(size, '\0');
    for (std::size_t i = 0; i < size; ++i) {
        out[i] = pattern_at(i);
    }
    return out;
}

/// "/upload" reads the body to its end and reports what it saw (or, when it came whole with the
/// head, checks `body`); "/ignore" never reads it; everything else echoes the path.
struct BodyHandler {
    asio::awaitable<Response> operator()(Request request) const {
        Response response;
        if (request.path == "/upload" && request.body_reader == nullptr) {
            response.body = fmt::format("whole bytes={} intact={}", request.body.size(),
                                        request.body == pattern(request.body.size()));
            co_return response;
        }
        if (request.path == "/upload") {
            co_return co_await read_all(*request.body_reader);
        }
        response.body = request.path + " body=" + request.body;
        co_return response;
    }

    static asio::awaitable<Response> read_all(BodyReader& reader) {
        std::size_t total = 0;
        std::size_t pieces = 0;
        bool intact = true;
        for (;;) {
            auto piece = co_await reader.read_some();
            if (!piece) {
                Response refused;
                refused.status =
                    piece.error().code == core::ErrorCode::kInvalidArgument ? 413 : 400;
                refused.body = fmt::format("{}: {}", core::to_string(piece.error().code),
                                           piece.error().message);
                co_return refused;
            }
            if (piece->empty()) {
                break;
            }
            for (std::size_t i = 0; i < piece->size(); ++i) {
                intact = intact && (*piece)[i] == pattern_at(total + i);
            }
            total += piece->size();
            ++pieces;
        }
        Response response;
        response.body = fmt::format("bytes={} intact={} several={}", total, intact, pieces > 1);
        co_return response;
    }
};

bool streams_uploads(const Request& head) {
    return head.path == "/upload" || head.path == "/ignore";
}

struct Running {
    std::unique_ptr<HttpServer> server;
    std::string address;
};

Running start_server(std::size_t max_body_bytes) {
    ServerSettings settings;
    settings.listen = "127.0.0.1:0";
    settings.read_timeout = 2s;
    settings.idle_timeout = 10s;
    settings.write_timeout = 2s;
    settings.shutdown_grace = 2s;
    settings.max_body_bytes = max_body_bytes;
    Running running;
    running.server = std::make_unique<HttpServer>(settings, BodyHandler{}, streams_uploads);
    auto bound = running.server->start();
    EXPECT_TRUE(bound) << bound.error().message;
    if (bound) {
        running.address = *bound;
    }
    return running;
}

TEST(HttpServerBody, StreamedBodyReachesTheHandlerWhole) {
    auto running = start_server(8 * 1024 * 1024);
    constexpr std::size_t kSize = 5 * 1024 * 1024;
    RawClient client{running.address};
    client.send(
        fmt::format("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", kSize));
    client.send(pattern(kSize));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, fmt::format("bytes={} intact=true several=true", kSize));
    // Read to its end, the body leaves the connection ready for the next request.
    client.send("GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    auto next = client.read_response();
    ASSERT_TRUE(next);
    EXPECT_EQ(next->body, "/next body=");
}

TEST(HttpServerBody, ChunkedStreamedBodyWaitsForContinueThenArrives) {
    auto running = start_server(1024);
    RawClient client{running.address};
    client.send(
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        "Expect: 100-continue\r\n\r\n");
    EXPECT_EQ(client.read_head(), "HTTP/1.1 100 Continue");
    const std::string body = pattern(300);
    client.send(fmt::format("{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n", 100, body.substr(0, 100), 200,
                            body.substr(100)));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_TRUE(response->body.starts_with("bytes=300 intact=true")) << response->body;
}

TEST(HttpServerBody, StreamedBodyPastTheCapIsAnErrorToTheHandler) {
    auto running = start_server(1024);
    RawClient client{running.address};
    // Chunked, so the length is unknown until the cap is crossed mid-body.
    client.send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    const std::string chunk = pattern(600);
    client.send(fmt::format("{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n", chunk.size(), chunk,
                            chunk.size(), chunk));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 413);
    EXPECT_EQ(response->body, "invalid_argument: request body exceeds the 1024-byte limit");
    EXPECT_TRUE(client.wait_closed());
}

TEST(HttpServerBody, StreamedBodyWithAContentLengthPastTheCapIsRefusedBeforeTheHandler) {
    auto running = start_server(1024);
    RawClient client{running.address};
    client.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 413);
    EXPECT_EQ(response->body, "request body exceeds the 1024-byte limit");
}

TEST(HttpServerBody, IgnoredLargeBodyClosesTheConnectionInsteadOfReadingItAsRequests) {
    auto running = start_server(8 * 1024 * 1024);
    RawClient client{running.address};
    // A body that looks like requests: were the connection reused, these would be answered.
    std::string body;
    while (body.size() < 256 * 1024) {
        body += "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    }
    client.send(
        fmt::format("POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.size()));
    client.send(body);
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, "/ignore body=");
    EXPECT_NE(response->head.find("Connection: close"), std::string::npos) << response->head;
    EXPECT_TRUE(client.wait_closed());
    EXPECT_FALSE(client.read_response(0ms));
    EXPECT_EQ(running.server->stats().requests, 1U);
}

TEST(HttpServerBody, IgnoredSmallBodyIsDrainedAndTheConnectionGoesOn) {
    auto running = start_server(8 * 1024 * 1024);
    RawClient client{running.address};
    // Past the server's first read (4 KiB), so it is streamed; under the 64 KiB it drains.
    const std::string body = pattern(10 * 1024);
    client.send(
        fmt::format("POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{}"
                    "GET /next HTTP/1.1\r\nHost: x\r\n\r\n",
                    body.size(), body));
    auto first = client.read_response();
    ASSERT_TRUE(first);
    EXPECT_EQ(first->body, "/ignore body=");
    auto next = client.read_response();
    ASSERT_TRUE(next);
    EXPECT_EQ(next->body, "/next body=");
    EXPECT_FALSE(client.closed());
}

TEST(HttpServerBody, ABodyThatCameWithItsHeadIsTheRequestsEvenOnAStreamedRoute) {
    auto running = start_server(1024);
    RawClient client{running.address};
    const std::string body = pattern(300);
    client.send(
        fmt::format("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{}"
                    "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                    body.size(), body));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, "whole bytes=300 intact=true");
    auto empty = client.read_response();
    ASSERT_TRUE(empty);
    EXPECT_EQ(empty->body, "whole bytes=0 intact=true");
}

TEST(HttpServerBody, RoutesTheyDoNotStreamStillGetTheBodyWhole) {
    auto running = start_server(1024);
    RawClient client{running.address};
    client.send("POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, "/other body=abc");
}

// --- upgraded connections -------------------------------------------------------------------

/// Echoes every byte until the client ends its side.
struct EchoTunnel {
    asio::awaitable<void> operator()(Tunnel& tunnel) const {
        for (;;) {
            auto data = co_await tunnel.read_some();
            if (!data || data->empty()) {
                break;
            }
            if (!co_await tunnel.write(*data)) {
                break;
            }
        }
        tunnel.shutdown_send();
    }
};

struct UpgradeHandler {
    asio::awaitable<Response> operator()(Request request) const {
        Response response;
        if (request.header("upgrade") == "echo") {
            response.status = 101;
            response.headers.push_back({"Upgrade", "echo"});
            response.headers.push_back({"Connection", "upgrade"});
            response.tunnel = EchoTunnel{};
        } else {
            response.body = request.path;
        }
        co_return response;
    }
};

TEST(HttpServerTunnel, EchoesBytesAfterTheUpgradeIncludingThoseSentWithTheHead) {
    ServerSettings settings;
    settings.listen = "127.0.0.1:0";
    settings.idle_timeout = 10s;
    HttpServer server{settings, UpgradeHandler{}};
    auto bound = server.start();
    ASSERT_TRUE(bound) << bound.error().message;
    RawClient client{*bound};
    client.send(
        "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\n"
        "early bytes;");
    auto head = client.read_head();
    EXPECT_TRUE(head.starts_with("HTTP/1.1 101 Switching Protocols")) << head;
    EXPECT_NE(head.find("Upgrade: echo"), std::string::npos) << head;
    EXPECT_EQ(head.find("Content-Type"), std::string::npos) << head;
    auto& echoed = client.read_until([](const std::string& got) { return got.size() >= 12; });
    EXPECT_EQ(echoed, "early bytes;");
    client.send("GET / HTTP/1.1\r\n\r\n");  // no longer HTTP: echoed like any bytes
    auto& more = client.read_until([](const std::string& got) { return got.size() >= 30; });
    EXPECT_EQ(more, "early bytes;GET / HTTP/1.1\r\n\r\n");
    EXPECT_EQ(server.stats().requests, 1U);
}

TEST(HttpServerTunnel, EndsTheConnectionWhenTheTunnelReturns) {
    ServerSettings settings;
    settings.listen = "127.0.0.1:0";
    settings.idle_timeout = 200ms;  // the echo loop ends on the idle timeout
    HttpServer server{settings, UpgradeHandler{}};
    auto bound = server.start();
    ASSERT_TRUE(bound) << bound.error().message;
    RawClient client{*bound};
    client.send("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\n\r\n");
    EXPECT_TRUE(client.read_head().starts_with("HTTP/1.1 101"));
    EXPECT_TRUE(client.wait_closed());
    EXPECT_TRUE(wait_until([&] { return server.stats().open == 0; }));
}

}  // namespace
}  // namespace aviary::net
