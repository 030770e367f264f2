#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net/net.hpp"
#include "unit/net/raw_http.hpp"

namespace aviary::net {
namespace {

using namespace std::chrono_literals;
using tcp = asio::ip::tcp;
using test::RawClient;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

std::string lower(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text;
}

/// Writes "first\n", holds "second\n" back until the client has seen the first.
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

/// The upstream: echoes what it received (headers lower-cased, one per line) with status 201.
struct Upstream {
    std::shared_ptr<std::atomic<bool>> seen_first = std::make_shared<std::atomic<bool>>(false);

    asio::awaitable<Response> operator()(Request request) const {
        Response response;
        if (request.path == "/lines") {
            response.content_type = "application/x-ndjson";
            response.stream = TwoLines{seen_first};
            co_return response;
        }
        response.status = 201;
        response.content_type = "text/x-echo";
        response.headers.push_back({"X-Upstream", "yes"});
        response.body = fmt::format("{} {}\n", request.method, request.target);
        for (const auto& header : request.headers) {
            response.body += fmt::format("{}: {}\n", lower(header.name), header.value);
        }
        response.body += fmt::format("body={}\n", request.body);
        co_return response;
    }
};

struct ProxyHandler {
    ReverseProxy* proxy;
    asio::awaitable<Response> operator()(Request request) const {
        co_return co_await proxy->forward(request);
    }
};

/// A proxy server in front of `upstream_url`; the proxy is destroyed between the server's
/// stop() and its destruction, as net.hpp asks.
struct ProxyRig {
    explicit ProxyRig(ProxySettings settings, std::string listen = "127.0.0.1:0")
        : proxy(std::make_unique<ReverseProxy>(std::move(settings))),
          server(ServerSettings{.listen = std::move(listen)}, ProxyHandler{proxy.get()}) {
        auto bound = server.start();
        AVIARY_ASSERT(bound.has_value(), "the proxy server starts");
        address = *bound;
    }
    ~ProxyRig() {
        server.stop();
        proxy.reset();
    }
    std::unique_ptr<ReverseProxy> proxy;
    HttpServer server;
    std::string address;
};

TEST(ReverseProxy, NamesAnIpv6ClientInXForwardedForWithoutItsPortOrBrackets) {
    HttpServer upstream(ServerSettings{.listen = "127.0.0.1:0"}, Upstream{});
    auto upstream_address = upstream.start();
    ASSERT_TRUE(upstream_address) << upstream_address.error().message;
    ProxyRig rig{ProxySettings{.upstream = "http://" + *upstream_address, .via = "test-proxy"},
                 "[::1]:0"};
    ASSERT_TRUE(rig.address.starts_with("[::1]:")) << rig.address;

    for (const std::string sent : {"", "X-Forwarded-For: 192.0.2.1\r\n"}) {
        RawClient client{rig.address};
        ASSERT_TRUE(client.connected());
        client.send("GET /who HTTP/1.1\r\nHost: proxy.example\r\n" + sent + "\r\n");
        auto response = client.read_response();
        ASSERT_TRUE(response.has_value());
        const std::string expected =
            sent.empty() ? "x-forwarded-for: ::1\n" : "x-forwarded-for: 192.0.2.1, ::1\n";
        EXPECT_NE(response->body.find(expected), std::string::npos) << response->body;
    }
}

std::uint16_t closed_port() {
    asio::io_context ioc;
    tcp::acceptor probe{ioc, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
    return probe.local_endpoint().port();
}

TEST(ReverseProxy, PassesStatusBodyAndEndToEndHeadersAndDropsHopByHopOnes) {
    HttpServer upstream(ServerSettings{.listen = "127.0.0.1:0"}, Upstream{});
    auto upstream_address = upstream.start();
    ASSERT_TRUE(upstream_address) << upstream_address.error().message;
    ProxyRig rig{ProxySettings{.upstream = "http://" + *upstream_address, .via = "test-proxy"}};

    RawClient client{rig.address};
    ASSERT_TRUE(client.connected());
    client.send(
        "POST /api/v1/x?y=1 HTTP/1.1\r\nHost: proxy.example\r\nConnection: X-Hop\r\n"
        "X-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic abc\r\n"
        "TE: trailers\r\nX-Forwarded-For: 10.0.0.1\r\nX-Custom: kept\r\nContent-Length: 5\r\n"
        "VIA: 1.0 client-side\r\nContent-Type: application/json\r\nServer: a-client\r\n"
        "X-Forwarded-Proto: gopher\r\n\r\nhello");
    auto response = client.read_response();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 201);
    const auto head = lower(response->head);
    EXPECT_NE(head.find("x-upstream: yes"), std::string::npos) << response->head;
    EXPECT_NE(head.find("content-type: text/x-echo"), std::string::npos) << response->head;
    EXPECT_NE(head.find("via: 1.1 test-proxy"), std::string::npos) << response->head;
    const auto& body = response->body;
    EXPECT_NE(body.find("POST /api/v1/x?y=1\n"), std::string::npos) << body;
    EXPECT_NE(body.find("x-custom: kept\n"), std::string::npos) << body;
    // End-to-end on a request, whatever they mean on a response.
    EXPECT_NE(body.find("content-type: application/json\n"), std::string::npos) << body;
    EXPECT_NE(body.find("server: a-client\n"), std::string::npos) << body;
    // This hop's, once each: the client's Via and X-Forwarded-For joined, its own proto.
    EXPECT_NE(body.find("via: 1.0 client-side, 1.1 test-proxy\n"), std::string::npos) << body;
    EXPECT_NE(body.find("x-forwarded-for: 10.0.0.1, 127.0.0.1\n"), std::string::npos) << body;
    EXPECT_EQ(body.find("gopher"), std::string::npos) << body;
    EXPECT_NE(body.find("x-forwarded-proto: http\n"), std::string::npos) << body;
    EXPECT_NE(body.find("x-forwarded-host: proxy.example\n"), std::string::npos) << body;
    EXPECT_NE(body.find(fmt::format("host: {}\n", *upstream_address)), std::string::npos) << body;
    EXPECT_NE(body.find("body=hello\n"), std::string::npos) << body;
    for (const char* gone : {"x-hop", "keep-alive", "proxy-authorization", "te:"}) {
        EXPECT_EQ(body.find(gone), std::string::npos) << gone << " in\n" << body;
    }
    EXPECT_EQ(rig.proxy->stats().requests, 1U);
    upstream.stop();
}

TEST(ReverseProxy, DropsEveryHeaderAConnectionHeaderNamesInAnyCaseAmongMany) {
    HttpServer upstream(ServerSettings{.listen = "127.0.0.1:0"}, Upstream{});
    auto upstream_address = upstream.start();
    ASSERT_TRUE(upstream_address) << upstream_address.error().message;
    ProxyRig rig{ProxySettings{.upstream = "http://" + *upstream_address}};
    // 500 named tokens (looked up by binary search), two of them naming headers sent.
    std::string named;
    for (int i = 0; i < 500; ++i) {
        named += fmt::format("x-filler-{}, ", i);
    }
    named += "X-Hop-B,x-HOP-a";
    RawClient client{rig.address};
    client.send(fmt::format(
        "GET /many HTTP/1.1\r\nHost: x\r\nConnection: {}\r\nx-hop-a: 1\r\nX-Hop-b: 2\r\n"
        "X-Kept: 3\r\n\r\n",
        named));
    auto response = client.read_response();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 201);
    EXPECT_NE(response->body.find("x-kept: 3\n"), std::string::npos) << response->body;
    EXPECT_EQ(response->body.find("x-hop-"), std::string::npos) << response->body;
    EXPECT_EQ(response->body.find("filler"), std::string::npos) << response->body;
    upstream.stop();
}

TEST(ReverseProxy, StreamsAChunkedUpstreamResponsePieceByPiece) {
    Upstream handler;
    HttpServer upstream(ServerSettings{.listen = "127.0.0.1:0"}, handler);
    auto upstream_address = upstream.start();
    ASSERT_TRUE(upstream_address) << upstream_address.error().message;
    ProxyRig rig{ProxySettings{.upstream = "http://" + *upstream_address}};

    std::string received;
    bool first_before_second = false;
    ClientRequest request;
    request.url = fmt::format("http://{}/lines", rig.address);
    request.timeout = 20s;
    auto response = fetch_stream(request, [&](std::string_view chunk) {
        received += chunk;
        if (received.find("first\n") != std::string::npos && !*handler.seen_first) {
            first_before_second = received.find("second") == std::string::npos;
            *handler.seen_first = true;
        }
    });
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(received, "first\nsecond\n");
    EXPECT_TRUE(first_before_second);
    EXPECT_EQ(response->header("content-type"), "application/x-ndjson");
    upstream.stop();
}

TEST(ReverseProxy, ReusesTheUpstreamConnection) {
    HttpServer upstream(ServerSettings{.listen = "127.0.0.1:0"}, Upstream{});
    auto upstream_address = upstream.start();
    ASSERT_TRUE(upstream_address) << upstream_address.error().message;
    ProxyRig rig{ProxySettings{.upstream = "http://" + *upstream_address}};
    for (int i = 0; i < 3; ++i) {
        ClientRequest request;
        request.url = fmt::format("http://{}/again", rig.address);
        auto response = fetch_sync(request);
        ASSERT_TRUE(response) << response.error().message;
        EXPECT_EQ(response->status, 201);
    }
    EXPECT_EQ(upstream.stats().accepted, 1U);
    upstream.stop();
}

TEST(ReverseProxy, AGetOrAPostAfterTheUpstreamClosedTheIdleConnectionStillGoesThrough) {
    // A GET takes the idle connection unchecked and is sent again on a fresh one when it turns
    // out closed; a POST (never sent twice) has the idle connection checked first.
    HttpServer upstream(ServerSettings{.listen = "127.0.0.1:0", .idle_timeout = 50ms}, Upstream{});
    auto upstream_address = upstream.start();
    ASSERT_TRUE(upstream_address) << upstream_address.error().message;
    ProxyRig rig{ProxySettings{.upstream = "http://" + *upstream_address}};
    for (const char* method : {"GET", "POST", "GET"}) {
        ASSERT_TRUE(test::wait_until([&] { return upstream.stats().open == 0; }))
            << "the upstream keeps its idle connection open";
        ClientRequest request;
        request.method = method;
        request.url = fmt::format("http://{}/after-idle", rig.address);
        auto response = fetch_sync(request);
        ASSERT_TRUE(response) << method << ": " << response.error().message;
        EXPECT_EQ(response->status, 201) << method << ": " << response->body;
        EXPECT_TRUE(response->body.starts_with(fmt::format("{} /after-idle\n", method)))
            << response->body;
    }
    EXPECT_EQ(upstream.stats().requests, 3U) << "each request reached the upstream once";
    upstream.stop();
}

/// An upstream that answers no request of a wave until the whole wave has arrived: every wave
/// holds `wave` requests in flight at once.
struct WaveUpstream {
    int wave = 0;
    std::shared_ptr<std::atomic<int>> arrived = std::make_shared<std::atomic<int>>(0);

    asio::awaitable<Response> operator()(Request) const {
        const int mine = ++*arrived;
        const int wave_end = ((mine - 1) / wave + 1) * wave;
        asio::steady_timer timer{co_await asio::this_coro::executor};
        const auto give_up = std::chrono::steady_clock::now() + 10s;
        while (*arrived < wave_end && std::chrono::steady_clock::now() < give_up) {
            timer.expires_after(1ms);
            co_await timer.async_wait(asio::use_awaitable);
        }
        Response response;
        response.status = 201;
        co_return response;
    }
};

TEST(ReverseProxy, KeepsAsManyUpstreamConnectionsAsTheLoadUses) {
    // Two waves of 24 requests in flight at once: the second reuses the first's connections
    // instead of closing most of them and opening new ones (connect, TIME_WAIT).
    constexpr int kAtOnce = 24;
    HttpServer upstream(ServerSettings{.listen = "127.0.0.1:0"}, WaveUpstream{.wave = kAtOnce});
    auto upstream_address = upstream.start();
    ASSERT_TRUE(upstream_address) << upstream_address.error().message;
    ProxyRig rig{ProxySettings{.upstream = "http://" + *upstream_address}};
    for (int wave = 0; wave < 2; ++wave) {
        std::vector<std::thread> clients;
        std::atomic<int> ok{0};
        for (int i = 0; i < kAtOnce; ++i) {
            clients.emplace_back([&] {
                ClientRequest request;
                request.url = fmt::format("http://{}/wave", rig.address);
                request.timeout = 20s;
                auto response = fetch_sync(request);
                if (response && response->status == 201) {
                    ++ok;
                }
            });
        }
        for (auto& client : clients) {
            client.join();
        }
        EXPECT_EQ(ok.load(), kAtOnce) << "wave " << wave;
    }
    EXPECT_EQ(upstream.stats().accepted, static_cast<std::uint64_t>(kAtOnce));
    upstream.stop();
}

TEST(ReverseProxy, AnswersBadGatewayNamingAnUpstreamThatRefuses) {
    const auto port = closed_port();
    ProxyRig rig{ProxySettings{.upstream = fmt::format("http://127.0.0.1:{}", port)}};
    ClientRequest request;
    request.url = fmt::format("http://{}/x", rig.address);
    auto response = fetch_sync(request);
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->status, 502);
    EXPECT_EQ(response->body, fmt::format("upstream 127.0.0.1:{} refused the connection\n", port));
    EXPECT_EQ(rig.proxy->stats().refused, 1U);
}

TEST(ReverseProxy, AnswersGatewayTimeoutWhenTheUpstreamNeverAnswers) {
    // Listening but never accepting: the kernel completes the handshake, nobody reads.
    asio::io_context ioc;
    tcp::acceptor silent{ioc, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
    const auto port = silent.local_endpoint().port();
    ProxyRig rig{ProxySettings{.upstream = fmt::format("http://127.0.0.1:{}", port),
                               .response_timeout = 200ms}};
    ClientRequest request;
    request.url = fmt::format("http://{}/x", rig.address);
    auto response = fetch_sync(request);
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->status, 504);
    EXPECT_EQ(response->body,
              fmt::format("upstream 127.0.0.1:{} did not answer within 200ms\n", port));
    EXPECT_EQ(rig.proxy->stats().timed_out, 1U);
}

/// A request for "/" from a client at 127.0.0.1:5000, as the server would hand it over.
Request request_for_root(std::string method = "GET") {
    Request request;
    request.method = std::move(method);
    request.target = "/";
    request.path = "/";
    request.remote = "127.0.0.1:5000";
    return request;
}

asio::awaitable<void> forward_into(ReverseProxy& proxy,
                                   Request& request,
                                   std::optional<Response>& out) {
    out.emplace(co_await proxy.forward(request));
}

/// Answers one request with `answer`, then closes (or, `hold_open`, waits for the proxy to);
/// the answer goes out in `pieces` writes of about equal size, a few milliseconds apart, so
/// that a reader sees them arrive apart.
struct AnswersOnce {
    tcp::acceptor& acceptor;
    std::string answer;
    std::size_t pieces = 1;
    bool hold_open = false;

    asio::awaitable<void> operator()() const {
        auto [accept_ec, socket] = co_await acceptor.async_accept(kTuple);
        if (accept_ec) {
            co_return;
        }
        asio::streambuf buffer;
        co_await asio::async_read_until(socket, buffer, "\r\n\r\n", kTuple);
        const std::size_t each = (answer.size() + pieces - 1) / pieces;
        asio::steady_timer apart{socket.get_executor()};
        for (std::size_t at = 0; at < answer.size(); at += each) {
            if (at > 0) {
                apart.expires_after(5ms);
                co_await apart.async_wait(kTuple);
            }
            co_await asio::async_write(socket, asio::buffer(answer.substr(at, each)), kTuple);
        }
        if (hold_open) {
            std::array<char, 64> sink{};
            co_await socket.async_read_some(asio::buffer(sink), kTuple);  // until the proxy closes
        }
        socket.shutdown(tcp::socket::shutdown_send);
    }
};

/// A request (GET / unless `method` says) forwarded through a proxy (`settings`, its upstream
/// filled in) to an upstream that answers it with `answer`, in `pieces` writes (and, with
/// `hold_open`, keeps the connection open after it). For answers read whole: the proxy and its
/// loop are gone when this returns, so no stream may be left.
std::optional<Response> forward_to(std::string answer,
                                   ProxySettings settings = {},
                                   std::string method = "GET",
                                   std::size_t pieces = 1,
                                   bool hold_open = false) {
    asio::io_context ioc;
    tcp::acceptor acceptor{ioc, {asio::ip::make_address("127.0.0.1"), 0}};
    AnswersOnce upstream{acceptor, std::move(answer), pieces, hold_open};
    asio::co_spawn(ioc, upstream(), asio::detached);
    settings.upstream = fmt::format("http://127.0.0.1:{}", acceptor.local_endpoint().port());
    ReverseProxy proxy{std::move(settings)};
    auto request = request_for_root(std::move(method));
    std::optional<Response> response;
    asio::co_spawn(ioc, forward_into(proxy, request, response), asio::detached);
    // Until the response is in: a kept-alive upstream connection's deadline timer stays pending
    // after it (docs/architecture.md), so the loop would not run out of work yet.
    while (!response && ioc.run_one() > 0) {
    }
    return response;
}

TEST(ReverseProxy, TakesAHeadAndBodyThatArriveInPieces) {
    // Cut inside the status line, a header and the body: each part is read on until whole.
    const std::string body(3000, 'b');
    auto response = forward_to(fmt::format("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                           "X-Kept: yes\r\nContent-Length: {}\r\n\r\n{}",
                                           body.size(), body),
                               {}, "GET", 7);
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->content_type, "text/plain");
    EXPECT_EQ(response->body, body);
    EXPECT_FALSE(response->stream);
}

TEST(ReverseProxy, ExpectsNoBodyAfterAHeadRequestOrA304Or204) {
    // Each names a length its body does not have; the upstream then keeps the connection open
    // (AnswersOnce half-closes it after the head, which a wait for the body would see as 502).
    for (const auto& [method, answer] : std::vector<std::pair<std::string, std::string>>{
             {"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"},
             {"GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"},
             {"GET", "HTTP/1.1 204 No Content\r\n\r\n"},
         }) {
        auto response = forward_to(answer, {}, method);
        ASSERT_TRUE(response.has_value()) << answer;
        EXPECT_LT(response->status, 500) << answer << response->body;
        EXPECT_TRUE(response->body.empty()) << answer;
    }
}

TEST(ReverseProxy, StreamsABodyOfKnownLengthPastTheBufferedBound) {
    asio::io_context ioc;
    tcp::acceptor acceptor{ioc, {asio::ip::make_address("127.0.0.1"), 0}};
    AnswersOnce upstream{acceptor, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"};
    asio::co_spawn(ioc, upstream(), asio::detached);
    // The streamed response holds its upstream connection: it ends before the proxy does.
    ReverseProxy proxy{ProxySettings{
        .upstream = fmt::format("http://127.0.0.1:{}", acceptor.local_endpoint().port()),
        .max_buffered_body = 4}};
    auto request = request_for_root();
    std::optional<Response> response;
    asio::co_spawn(ioc, forward_into(proxy, request, response), asio::detached);
    while (!response && ioc.run_one() > 0) {
    }
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 200);
    EXPECT_TRUE(response->body.empty());
    EXPECT_TRUE(response->stream) << "a body past max_buffered_body is streamed, not read whole";
    response.reset();
}

TEST(ReverseProxy, AnswersBadGatewayWhenTheBodyEndsShort) {
    auto response = forward_to("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 502);
    EXPECT_NE(response->body.find("while sending the body"), std::string::npos) << response->body;
}

TEST(ReverseProxy, AnswersGatewayTimeoutNamingTheIdleTimeoutWhenTheBodyStalls) {
    // Half the body, then silence on an open connection: the wait between pieces runs out.
    auto response = forward_to("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                               {.response_timeout = 5s, .idle_timeout = 200ms}, "GET", 1, true);
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 504);
    EXPECT_TRUE(response->body.ends_with(" stalled for 200ms while sending the body\n"))
        << response->body;
}

TEST(ReverseProxy, ReadsPastAnInterimResponseToTheFinalOne) {
    auto response = forward_to(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
        "Connection: close\r\n\r\nok");
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "ok");
}

TEST(ReverseProxy, DropsTheUpstreamsHopByHopHeadersAndSetsItsOwnServerAndVia) {
    auto response = forward_to(
        "HTTP/1.1 200 OK\r\nServer: upstream/1\r\nVia: 1.0 inner\r\n"
        "Connection: close, X-Private\r\nX-Private: 1\r\nkeep-alive: timeout=5\r\n"
        "Proxy-Authenticate: Basic\r\nPROXY-CONNECTION: keep-alive\r\n"
        "Trailer: X-T\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Kept: yes\r\n"
        "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
        ProxySettings{.via = "edge"});
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "ok");
    EXPECT_EQ(response->content_type, "text/plain");
    // A plain head's headers are relayed as lines (Response::header_lines), in their order.
    EXPECT_TRUE(response->headers.empty());
    EXPECT_EQ(response->header_lines, "X-Kept: yes\r\nVia: 1.0 inner, 1.1 edge\r\n");
}

/// Hands out the body in the pieces given, then the end.
class FakeBodyReader final : public BodyReader {
public:
    explicit FakeBodyReader(std::deque<std::string> pieces) : pieces_(std::move(pieces)) {}
    asio::awaitable<core::Result<std::string>> read_some() override {
        if (pieces_.empty()) {
            co_return std::string{};
        }
        std::string piece = std::move(pieces_.front());
        pieces_.pop_front();
        co_return piece;
    }

private:
    std::deque<std::string> pieces_;
};

TEST(ReverseProxy, StreamsTheRequestBodyFromABodyReader) {
    HttpServer upstream(ServerSettings{.listen = "127.0.0.1:0"}, Upstream{});
    auto upstream_address = upstream.start();
    ASSERT_TRUE(upstream_address) << upstream_address.error().message;
    FakeBodyReader reader{{"abc", "def", "ghi"}};
    Request request;
    request.method = "PUT";
    request.target = "/upload";
    request.path = "/upload";
    request.remote = "192.0.2.7:4000";
    request.body_reader = &reader;
    std::optional<Response> response;
    {
        // The proxy's upstream sockets live on this loop: the proxy goes first.
        asio::io_context ioc;
        ReverseProxy proxy{ProxySettings{.upstream = "http://" + *upstream_address}};
        asio::co_spawn(ioc, forward_into(proxy, request, response), asio::detached);
        // Until the response is in: the kept-alive upstream connection's deadline timer stays
        // pending after it (docs/architecture.md), so the loop would not run out of work yet.
        while (!response && ioc.run_one() > 0) {
        }
        ASSERT_TRUE(response.has_value());
        EXPECT_EQ(response->status, 201);
        EXPECT_FALSE(response->stream);  // small and of known length: passed whole
        EXPECT_NE(response->body.find("body=abcdefghi\n"), std::string::npos) << response->body;
        EXPECT_NE(response->body.find("transfer-encoding: chunked\n"), std::string::npos)
            << response->body;
        EXPECT_NE(response->body.find("x-forwarded-for: 192.0.2.7\n"), std::string::npos)
            << response->body;
    }
    upstream.stop();
}

/// An upstream that accepts an upgrade: answers 101 plus a greeting, then echoes what it reads
/// as "pong:<bytes>" until the other side half-closes.
struct UpgradingUpstream {
    tcp::acceptor& acceptor;
    std::shared_ptr<std::string> request_head = std::make_shared<std::string>();

    asio::awaitable<void> operator()() const {
        auto [accept_ec, socket] = co_await acceptor.async_accept(kTuple);
        if (accept_ec) {
            co_return;
        }
        asio::streambuf buffer;
        auto [ec, n] = co_await asio::async_read_until(socket, buffer, "\r\n\r\n", kTuple);
        if (ec) {
            co_return;
        }
        request_head->assign(asio::buffers_begin(buffer.data()),
                             asio::buffers_begin(buffer.data()) + static_cast<std::ptrdiff_t>(n));
        buffer.consume(n);
        const std::string answer =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: xyz\r\n\r\nhello;";
        co_await asio::async_write(socket, asio::buffer(answer), kTuple);
        std::array<char, 256> piece{};
        for (;;) {
            auto [read_ec, got] = co_await socket.async_read_some(asio::buffer(piece), kTuple);
            if (read_ec) {
                break;
            }
            std::string reply = "pong:" + std::string{piece.data(), got} + ";";
            co_await asio::async_write(socket, asio::buffer(reply), kTuple);
        }
        socket.shutdown(tcp::socket::shutdown_send);
    }
};

/// The client's side of an upgraded connection: sends `to_send`, then the end of its stream.
class FakeTunnel final : public Tunnel {
public:
    explicit FakeTunnel(std::deque<std::string> to_send) : to_send_(std::move(to_send)) {}
    asio::awaitable<core::Result<std::string>> read_some() override {
        if (to_send_.empty()) {
            co_return std::string{};
        }
        std::string piece = std::move(to_send_.front());
        to_send_.pop_front();
        co_return piece;
    }
    asio::awaitable<core::Result<void>> write(std::string_view data) override {
        received.append(data);
        co_return core::Result<void>{};
    }
    void shutdown_send() override { send_closed = true; }

    std::string received;
    bool send_closed = false;

private:
    std::deque<std::string> to_send_;
};

asio::awaitable<void> upgrade_and_splice(ReverseProxy& proxy,
                                         Request& request,
                                         std::optional<Response>& out,
                                         FakeTunnel& tunnel) {
    out.emplace(co_await proxy.forward(request));
    if (out->tunnel) {
        co_await out->tunnel(tunnel);
    }
}

TEST(ReverseProxy, SplicesAnUpgradedConnectionBothWays) {
    asio::io_context ioc;
    tcp::acceptor acceptor{ioc, {asio::ip::make_address("127.0.0.1"), 0}};
    UpgradingUpstream upstream{acceptor};
    asio::co_spawn(ioc, upstream(), asio::detached);
    ReverseProxy proxy{ProxySettings{
        .upstream = fmt::format("http://127.0.0.1:{}", acceptor.local_endpoint().port()),
        .idle_timeout = 5s}};
    Request request;
    request.method = "GET";
    request.target = "/ws";
    request.path = "/ws";
    request.remote = "127.0.0.1:5000";
    request.headers = {{"Host", "proxy.example"},
                       {"Connection", "keep-alive, Upgrade"},
                       {"Upgrade", "websocket"},
                       {"Sec-WebSocket-Key", "abc"}};
    FakeTunnel tunnel{{"ping"}};
    std::optional<Response> response;
    asio::co_spawn(ioc, upgrade_and_splice(proxy, request, response, tunnel), asio::detached);
    ioc.run();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 101);
    auto find = [&](std::string_view name) { return find_header(response->headers, name); };
    EXPECT_EQ(find("upgrade"), "websocket");
    EXPECT_EQ(find("sec-websocket-accept"), "xyz");
    const auto head = lower(*upstream.request_head);
    EXPECT_NE(head.find("upgrade: websocket\r\n"), std::string::npos) << head;
    EXPECT_NE(head.find("connection: upgrade\r\n"), std::string::npos) << head;
    EXPECT_NE(head.find("sec-websocket-key: abc\r\n"), std::string::npos) << head;
    EXPECT_EQ(tunnel.received, "hello;pong:ping;");
    EXPECT_TRUE(tunnel.send_closed);
    EXPECT_EQ(proxy.stats().upgraded, 1U);
}

}  // namespace
}  // namespace aviary::net
