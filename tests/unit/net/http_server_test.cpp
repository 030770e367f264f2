#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "net/net.hpp"
#include "unit/net/raw_http.hpp"

namespace aviary::net {
namespace {

using namespace std::chrono_literals;
using test::RawClient;
using test::wait_until;

/// Lets a test hold a handler inside "/slow" until it says so: no guessing how long is enough.
struct Gate {
    std::atomic<bool> entered{false};
    std::atomic<bool> open{false};
};

/// Writes three chunks, stopping early if the client or the server goes away.
struct ChunkProducer {
    asio::awaitable<void> operator()(ResponseStream& out) const {
        for (const char* part : {"alpha", "beta", "gamma"}) {
            if (!co_await out.write(part)) {
                co_return;
            }
        }
    }
};

struct TestHandler {
    std::shared_ptr<Gate> gate = std::make_shared<Gate>();

    asio::awaitable<Response> operator()(Request request) const {
        if (request.path == "/boom") {
            throw std::runtime_error("handler exploded");
        }
        if (request.path == "/stream") {
            Response response;
            response.body = "start;";
            response.stream = ChunkProducer{};
            co_return response;
        }
        if (request.path == "/slow") {
            co_return co_await slow();
        }
        co_return echo(request);
    }

    static Response echo(const Request& request) {
        Response response;
        response.body = fmt::format("{} {}\n", request.method, request.path);
        for (const auto& [key, value] : request.query) {
            response.body += fmt::format("{}={}\n", key, value);
        }
        response.body += fmt::format("body={}\n", request.body);
        if (request.path == "/headers") {
            for (const auto& header : request.headers) {
                response.body += fmt::format("{}: {}\n", header.name, header.value);
            }
        }
        response.headers.push_back({"X-Remote", request.remote});
        return response;
    }

    asio::awaitable<Response> slow() const {
        gate->entered = true;
        asio::steady_timer timer{co_await asio::this_coro::executor};
        // A poll with a cap: the test opens the gate; the cap keeps a failed test from hanging.
        const auto give_up = std::chrono::steady_clock::now() + 10s;
        while (!gate->open && std::chrono::steady_clock::now() < give_up) {
            timer.expires_after(2ms);
            co_await timer.async_wait(asio::use_awaitable);
        }
        Response response;
        response.body = "slow done";
        co_return response;
    }
};

ServerSettings small_settings() {
    ServerSettings settings;
    settings.listen = "127.0.0.1:0";
    settings.read_timeout = 200ms;
    settings.idle_timeout = 200ms;
    settings.write_timeout = 2s;
    settings.shutdown_grace = 5s;
    return settings;
}

struct Running {
    std::unique_ptr<HttpServer> server;
    std::string address;
};

Running start_server(ServerSettings settings, Handler handler = TestHandler{}) {
    Running running;
    running.server = std::make_unique<HttpServer>(std::move(settings), std::move(handler));
    auto bound = running.server->start();
    EXPECT_TRUE(bound) << bound.error().message;
    if (bound) {
        running.address = *bound;
    }
    return running;
}

core::Result<ClientResponse> get(const std::string& address, const std::string& target) {
    ClientRequest request;
    request.url = fmt::format("http://{}{}", address, target);
    request.timeout = 5s;
    return fetch_sync(request);
}

TEST(HttpServer, AnswersAGetWithDecodedPathAndQuery) {
    auto running = start_server(small_settings());
    EXPECT_TRUE(running.address.starts_with("127.0.0.1:"));
    auto response =
        get(running.address, "/nodes/lotus%2D0/a%20b?owner=anton&note=hello%20world&plus=a+b&flag");
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body,
              "GET /nodes/lotus-0/a b\nowner=anton\nnote=hello world\nplus=a b\nflag=\nbody=\n");
    EXPECT_EQ(response->header("server"), "aviary");
    EXPECT_EQ(response->header("content-type"), "text/plain; charset=utf-8");
    EXPECT_TRUE(response->header("x-remote").value_or("").starts_with("127.0.0.1:"));
}

TEST(HttpServer, TakesAPlainPathAsItIsAndDecodesTheRest) {
    auto running = start_server(small_settings());
    for (const auto& [target, path] : std::vector<std::pair<std::string, std::string>>{
             {"/", "/"},
             {"/a/b-c_d.e~f", "/a/b-c_d.e~f"},
             {"/x;v=1,2:3@h/!$&'()*+", "/x;v=1,2:3@h/!$&'()*+"},
             {"//double//slash", "//double//slash"},
             {"/a%2Fb", "/a/b"},
             {"/q?", "/q"},
         }) {
        RawClient client{running.address};
        client.send(fmt::format("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", target));
        auto response = client.read_response();
        ASSERT_TRUE(response) << target;
        EXPECT_EQ(response->status, 200) << target;
        EXPECT_TRUE(response->body.starts_with("GET " + path + "\n"))
            << target << ": " << response->body;
    }
    RawClient client{running.address};
    client.send("GET /a{b} HTTP/1.1\r\nHost: x\r\n\r\n");  // not pchar: the URL parser refuses it
    auto refused = client.read_response();
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 400) << refused->body;
}

TEST(HttpServer, ServesConcurrentClientsOnSeveralThreads) {
    auto settings = small_settings();
    settings.io_threads = 2;
    auto running = start_server(settings);
    constexpr int kClients = 8;
    constexpr int kEach = 20;
    std::atomic<int> ok{0};
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
        clients.emplace_back([&, c] {
            for (int i = 0; i < kEach; ++i) {
                auto response = get(running.address, fmt::format("/c{}?i={}", c, i));
                if (response && response->body.starts_with(fmt::format("GET /c{}\ni={}\n", c, i))) {
                    ++ok;
                }
            }
        });
    }
    for (auto& client : clients) {
        client.join();
    }
    EXPECT_EQ(ok.load(), kClients * kEach);
    EXPECT_EQ(running.server->stats().requests, static_cast<std::uint64_t>(kClients * kEach));
}

TEST(HttpServer, PassesThePostBody) {
    auto running = start_server(small_settings());
    ClientRequest request;
    request.method = "POST";
    request.url = fmt::format("http://{}/jobs", running.address);
    request.body = R"({"a":1})";
    auto response = fetch_sync(request);
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->body, "POST /jobs\nbody={\"a\":1}\n");
}

TEST(HttpServer, KeepsTheConnectionAliveForTheNextRequest) {
    auto running = start_server(small_settings());
    RawClient client{running.address};
    ASSERT_TRUE(client.connected());
    client.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
    auto first = client.read_response();
    ASSERT_TRUE(first);
    EXPECT_EQ(first->status, 200);
    EXPECT_TRUE(first->body.starts_with("GET /one\n"));
    client.send("GET /two HTTP/1.1\r\nHost: x\r\n\r\n");
    auto second = client.read_response();
    ASSERT_TRUE(second);
    EXPECT_TRUE(second->body.starts_with("GET /two\n"));
    EXPECT_FALSE(client.closed());
    EXPECT_EQ(running.server->stats().accepted, 1U);
    EXPECT_EQ(running.server->stats().requests, 2U);
}

TEST(HttpServer, AnswersPipelinedRequestsInOrder) {
    auto running = start_server(small_settings());
    RawClient client{running.address};
    client.send(
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
        "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    for (const char* expected : {"GET /a\n", "POST /b\n", "GET /c\n"}) {
        auto response = client.read_response();
        ASSERT_TRUE(response) << expected;
        EXPECT_TRUE(response->body.starts_with(expected)) << response->body;
    }
    EXPECT_TRUE(client.wait_closed());  // the last one asked for close
}

TEST(HttpServer, RefusesAnOversizedBodyWith413AndGoesOn) {
    auto settings = small_settings();
    settings.max_body_bytes = 1024;
    auto running = start_server(settings);
    RawClient client{running.address};
    client.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n");
    client.send(std::string(2000, 'x'));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 413);
    EXPECT_EQ(response->body, "request body exceeds the 1024-byte limit");
    EXPECT_TRUE(client.wait_closed());

    auto next = get(running.address, "/after");
    ASSERT_TRUE(next) << next.error().message;
    EXPECT_EQ(next->status, 200);
}

TEST(HttpServer, AnswersPipelinedRequestsOfEveryShapeInOrder) {
    // Plain heads are read in one pass and the rest by Beast's parser (docs/architecture.md):
    // one connection, both kinds in turn, each request's headers its own.
    auto running = start_server(small_settings());
    RawClient client{running.address};
    client.send(
        "GET /headers?x=1 HTTP/1.1\r\nHost: x\r\nX-Long: a value past the short-string size\r\n"
        "X-Third: 3\r\n\r\n"
        "POST /chunked HTTP/1.1\r\nHost: y\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\nhi\r\n0\r\n\r\n"
        "POST /headers HTTP/1.1\r\nHost: z\r\nContent-Length: 3\r\n\r\nabc"
        "HEAD /head HTTP/1.1\r\nHost: w\r\n\r\n"
        "GET /last HTTP/1.1\r\nHost: v\r\n\r\n");
    auto first = client.read_response();
    ASSERT_TRUE(first);
    EXPECT_EQ(first->body,
              "GET /headers\nx=1\nbody=\nHost: x\nX-Long: a value past the short-string size\n"
              "X-Third: 3\n");
    auto chunked = client.read_response();
    ASSERT_TRUE(chunked);
    EXPECT_EQ(chunked->body, "POST /chunked\nbody=hi\n");
    auto third = client.read_response();
    ASSERT_TRUE(third);
    EXPECT_EQ(third->body, "POST /headers\nbody=abc\nHost: z\nContent-Length: 3\n");
    const auto head = client.read_head();
    EXPECT_TRUE(head.starts_with("HTTP/1.1 200 OK")) << head;
    EXPECT_NE(head.find("Content-Length: 17"), std::string::npos) << head;  // "HEAD /head\nbody=\n"
    auto last = client.read_response();
    ASSERT_TRUE(last);
    EXPECT_EQ(last->body, "GET /last\nbody=\n");
    EXPECT_FALSE(client.closed());
}

TEST(HttpServer, RefusesAnOversizedHeaderWith431) {
    auto settings = small_settings();
    settings.max_header_bytes = 1024;
    auto running = start_server(settings);
    RawClient client{running.address};
    client.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2000, 'y') + "\r\n\r\n");
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 431);
    EXPECT_EQ(response->body, "request header exceeds the 1024-byte limit");
    EXPECT_TRUE(client.wait_closed());
}

TEST(HttpServer, RefusesAGarbageRequestLineWith400) {
    auto running = start_server(small_settings());
    RawClient client{running.address};
    client.send("NOT HTTP AT ALL\r\n\r\n");
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 400);
    EXPECT_TRUE(response->body.starts_with("bad request: ")) << response->body;
    EXPECT_TRUE(client.wait_closed());
}

TEST(HttpServer, RefusesABadlyEncodedTargetWith400) {
    auto running = start_server(small_settings());
    RawClient client{running.address};
    client.send("GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n");
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 400);
    EXPECT_TRUE(response->body.starts_with("bad request target \"/a%zz\"")) << response->body;
}

TEST(HttpServer, ClosesAnIdleConnectionAfterTheIdleTimeout) {
    auto running = start_server(small_settings());
    RawClient client{running.address};
    ASSERT_TRUE(client.connected());
    EXPECT_TRUE(client.wait_closed(5s));
    EXPECT_TRUE(wait_until([&] { return running.server->stats().open == 0; }));
}

TEST(HttpServer, ClosesAConnectionThatSendsHalfARequest) {
    auto running = start_server(small_settings());
    RawClient client{running.address};
    client.send("GET / HTTP/1.1\r\nHost: x\r\n");
    EXPECT_TRUE(client.wait_closed(5s));
    EXPECT_TRUE(client.read_until([](const std::string&) { return false; }, 0ms).empty());
}

TEST(HttpServer, RefusesConnectionsPastTheLimitWith503) {
    auto settings = small_settings();
    settings.max_connections = 1;
    settings.idle_timeout = 10s;  // the first connection must stay open throughout
    auto running = start_server(settings);
    RawClient first{running.address};
    ASSERT_TRUE(wait_until([&] { return running.server->stats().open == 1; }));

    RawClient second{running.address};
    auto refused = second.read_response();
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 503);
    EXPECT_EQ(refused->body, "too many connections");
    EXPECT_TRUE(second.wait_closed());
    EXPECT_EQ(running.server->stats().rejected, 1U);

    first.send("GET /still-served HTTP/1.1\r\nHost: x\r\n\r\n");
    auto served = first.read_response();
    ASSERT_TRUE(served);
    EXPECT_EQ(served->status, 200);
}

TEST(HttpServer, TurnsAHandlerExceptionInto500AndGoesOn) {
    auto running = start_server(small_settings());
    auto boom = get(running.address, "/boom");
    ASSERT_TRUE(boom) << boom.error().message;
    EXPECT_EQ(boom->status, 500);
    EXPECT_EQ(boom->body, "internal error");
    auto next = get(running.address, "/fine");
    ASSERT_TRUE(next) << next.error().message;
    EXPECT_EQ(next->status, 200);
}

TEST(HttpServer, StreamsChunksInOrder) {
    auto running = start_server(small_settings());
    RawClient client{running.address};
    client.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    auto raw = client.read_response();
    ASSERT_TRUE(raw);
    EXPECT_NE(raw->head.find("Transfer-Encoding: chunked"), std::string::npos) << raw->head;
    EXPECT_EQ(raw->body, "6\r\nstart;\r\n5\r\nalpha\r\n4\r\nbeta\r\n5\r\ngamma\r\n0\r\n\r\n");

    auto decoded = get(running.address, "/stream");
    ASSERT_TRUE(decoded) << decoded.error().message;
    EXPECT_EQ(decoded->body, "start;alphabetagamma");
}

TEST(HttpServer, StreamsToAnHttp10ClientUntilClose) {
    auto running = start_server(small_settings());
    RawClient client{running.address};
    client.send("GET /stream HTTP/1.0\r\n\r\n");
    EXPECT_TRUE(client.wait_closed());
    auto raw = client.read_response();
    ASSERT_TRUE(raw);
    EXPECT_TRUE(raw->head.starts_with("HTTP/1.0 200")) << raw->head;
    EXPECT_EQ(raw->head.find("chunked"), std::string::npos) << raw->head;
    EXPECT_EQ(raw->body, "start;alphabetagamma");
}

TEST(HttpServer, WritesTheResponseHeadByteForByte) {
    // The head is formatted by hand (docs/architecture.md): the exact bytes for each framing.
    auto running = start_server(small_settings(), [](Request request) -> asio::awaitable<Response> {
        Response response;
        if (request.path == "/empty") {
            response.status = 204;
            co_return response;
        }
        if (request.path == "/big") {
            response.content_type = "application/octet-stream";
            response.body = std::string(20000, 'b');  // past the size joined to the head
            co_return response;
        }
        response.content_type = "application/json";
        response.headers.push_back({"X-Request-Id", "r1"});
        response.body = R"({"ok":true})";
        co_return response;
    });
    RawClient client{running.address};
    client.send("GET /json HTTP/1.1\r\nHost: x\r\n\r\n");
    auto json = client.read_response();
    ASSERT_TRUE(json);
    EXPECT_EQ(json->head,
              "HTTP/1.1 200 OK\r\nServer: aviary\r\nContent-Type: application/json\r\n"
              "X-Request-Id: r1\r\nContent-Length: 11");
    EXPECT_EQ(json->body, R"({"ok":true})");
    client.send("GET /empty HTTP/1.1\r\nHost: x\r\n\r\n");
    // No Content-Length: a 204 has no body by definition.
    EXPECT_EQ(client.read_head(),
              "HTTP/1.1 204 No Content\r\nServer: aviary\r\nContent-Type: text/plain; "
              "charset=utf-8");
    client.send("GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    auto big = client.read_response();
    ASSERT_TRUE(big);
    EXPECT_EQ(big->head,
              "HTTP/1.1 200 OK\r\nServer: aviary\r\nContent-Type: application/octet-stream\r\n"
              "Connection: close\r\nContent-Length: 20000");
    EXPECT_EQ(big->body, std::string(20000, 'b'));
    EXPECT_TRUE(client.wait_closed());

    RawClient old{running.address};
    old.send("GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    auto kept = old.read_response();
    ASSERT_TRUE(kept);
    EXPECT_EQ(kept->head,
              "HTTP/1.0 200 OK\r\nServer: aviary\r\nContent-Type: application/json\r\n"
              "X-Request-Id: r1\r\nConnection: keep-alive\r\nContent-Length: 11");
    old.send("HEAD /json HTTP/1.0\r\n\r\n");
    EXPECT_EQ(old.read_head(),
              "HTTP/1.0 200 OK\r\nServer: aviary\r\nContent-Type: application/json\r\n"
              "X-Request-Id: r1\r\nContent-Length: 11");
    EXPECT_TRUE(old.wait_closed());  // HTTP/1.0 without keep-alive: closed, and no body sent
    EXPECT_FALSE(old.read_response()) << "a body after the HEAD response";
}

TEST(HttpServer, NeverLetsAHandlersHeaderBreakTheHead) {
    // The hand-formatted head (docs/architecture.md) takes tokens and single-line values; the
    // rest goes through Beast, where a name that is not a token is left out and CR or LF in a
    // value becomes a space: a handler's header cannot end its line and start another.
    auto running = start_server(small_settings(), [](Request request) -> asio::awaitable<Response> {
        Response response;
        response.headers.push_back({"X-Plain", "p"});
        if (request.path == "/odd-name") {
            response.headers.push_back({"X-Odd(name)", "v"});
            response.headers.push_back({"X-Bad\r\nX-Injected", "v"});
        } else if (request.path == "/crlf") {
            response.headers.push_back({"X-Split", "a\r\nX-Injected: b"});
        } else if (request.path == "/connection") {
            response.headers.push_back({"connection", "close"});
        }
        response.body = "ok";
        co_return response;
    });
    RawClient client{running.address};
    client.send("GET /plain HTTP/1.1\r\nHost: x\r\n\r\n");
    auto plain = client.read_response();
    ASSERT_TRUE(plain);
    EXPECT_EQ(plain->head,
              "HTTP/1.1 200 OK\r\nServer: aviary\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "X-Plain: p\r\nContent-Length: 2");

    client.send("GET /odd-name HTTP/1.1\r\nHost: x\r\n\r\n");
    auto odd = client.read_response();
    ASSERT_TRUE(odd);
    EXPECT_NE(odd->head.find("\r\nX-Plain: p\r\n"), std::string::npos) << odd->head;
    EXPECT_EQ(odd->head.find("X-Odd"), std::string::npos) << odd->head;
    EXPECT_EQ(odd->head.find("X-Injected"), std::string::npos) << odd->head;
    EXPECT_EQ(odd->body, "ok");

    client.send("GET /crlf HTTP/1.1\r\nHost: x\r\n\r\n");
    auto crlf = client.read_response();
    ASSERT_TRUE(crlf);
    EXPECT_NE(crlf->head.find("\r\nX-Split: a  X-Injected: b\r\n"), std::string::npos)
        << crlf->head;
    EXPECT_EQ(crlf->head.find("\r\nX-Injected"), std::string::npos) << crlf->head;
    EXPECT_EQ(crlf->body, "ok");

    // Connection is Beast's to merge: the handler's "close" ends the connection after the body.
    client.send("GET /connection HTTP/1.1\r\nHost: x\r\n\r\n");
    auto closing = client.read_response();
    ASSERT_TRUE(closing);
    EXPECT_NE(closing->head.find("\r\nX-Plain: p\r\n"), std::string::npos) << closing->head;
    EXPECT_EQ(closing->body, "ok");
    EXPECT_TRUE(client.wait_closed());
}

TEST(HttpServer, SendsAHandlersHeaderLinesAfterItsHeadersOnEitherHeadPath) {
    // Response::header_lines go out as they are on the hand-formatted head, and line by line
    // through Beast when a header of the handler's needs Beast's rules (Connection here).
    auto running = start_server(small_settings(), [](Request request) -> asio::awaitable<Response> {
        Response response;
        response.headers.push_back({"X-First", "1"});
        response.header_lines = "X-Relayed: a, b\r\nETag: \"x\"\r\n";
        if (request.path == "/beast") {
            response.headers.push_back({"Connection", "close"});
        }
        response.body = "ok";
        co_return response;
    });
    RawClient client{running.address};
    client.send("GET /formatted HTTP/1.1\r\nHost: x\r\n\r\n");
    auto formatted = client.read_response();
    ASSERT_TRUE(formatted);
    EXPECT_EQ(formatted->head,
              "HTTP/1.1 200 OK\r\nServer: aviary\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "X-First: 1\r\nX-Relayed: a, b\r\nETag: \"x\"\r\nContent-Length: 2");
    EXPECT_EQ(formatted->body, "ok");

    client.send("GET /beast HTTP/1.1\r\nHost: x\r\n\r\n");
    auto beast = client.read_response();
    ASSERT_TRUE(beast);
    EXPECT_NE(beast->head.find("\r\nX-First: 1\r\n"), std::string::npos) << beast->head;
    EXPECT_NE(beast->head.find("\r\nX-Relayed: a, b\r\n"), std::string::npos) << beast->head;
    EXPECT_NE(beast->head.find("\r\nETag: \"x\"\r\n"), std::string::npos) << beast->head;
    EXPECT_EQ(beast->body, "ok");
    EXPECT_TRUE(client.wait_closed());
}

TEST(HttpServer, AResponseLargerThanTheSocketTakesAtOnceArrivesWhole) {
    // 16 MiB cannot fit a loopback socket's send buffer: the first write takes part of it and
    // the rest waits for the client to read (docs/architecture.md, "Message heads").
    std::string pattern;
    for (int i = 0; i < (16 << 20) / 8; ++i) {
        pattern += fmt::format("{:07x}\n", i);
    }
    // The client checks 16 MiB between its two requests, slowly under the sanitizers: the
    // keep-alive wait must outlast that (small_settings' 200 ms did not, in the ASan CI run).
    auto settings = small_settings();
    settings.idle_timeout = 20s;
    settings.write_timeout = 20s;
    auto running = start_server(settings, [pattern](Request) -> asio::awaitable<Response> {
        Response response;
        response.body = pattern;
        co_return response;
    });
    RawClient client{running.address};
    client.send("GET /large HTTP/1.1\r\nHost: x\r\n\r\n");
    auto large = client.read_response(20s);
    ASSERT_TRUE(large);
    EXPECT_EQ(large->status, 200);
    EXPECT_EQ(large->body.size(), pattern.size());
    EXPECT_TRUE(large->body == pattern) << "the body arrived changed";
    client.send("GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
    auto again = client.read_response(20s);
    ASSERT_TRUE(again) << "the connection is still usable";
    EXPECT_EQ(again->body.size(), pattern.size());
}

TEST(HttpServer, AnswersHeadWithoutABody) {
    auto running = start_server(small_settings());
    RawClient client{running.address};
    client.send("HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n");
    auto head = client.read_head();
    EXPECT_TRUE(head.starts_with("HTTP/1.1 200")) << head;
    EXPECT_NE(head.find("Content-Length: "), std::string::npos);
    // Had a body been sent, it would now be read as the next response's status line.
    client.send("GET /y HTTP/1.1\r\nHost: x\r\n\r\n");
    auto next = client.read_response();
    ASSERT_TRUE(next);
    EXPECT_TRUE(next->body.starts_with("GET /y\n")) << next->body;
}

TEST(HttpServer, AnswersTheClientsHeadRequest) {
    auto running = start_server(small_settings());
    ClientRequest request;
    request.method = "HEAD";
    request.url = fmt::format("http://{}/x", running.address);
    request.timeout = 5s;
    auto response = fetch_sync(request);
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->status, 200);
    EXPECT_TRUE(response->body.empty());
    EXPECT_NE(response->header("content-length").value_or("0"), "0");
}

TEST(HttpServer, SendsContinueWhenTheClientExpectsIt) {
    auto running = start_server(small_settings());
    RawClient client{running.address};
    client.send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    EXPECT_EQ(client.read_head(), "HTTP/1.1 100 Continue");
    client.send("abc");
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->body, "POST /p\nbody=abc\n");
}

TEST(HttpServer, StopLetsTheBusyRequestFinishAndRefusesNewConnections) {
    TestHandler handler;
    auto gate = handler.gate;
    auto running = start_server(small_settings(), handler);

    std::optional<core::Result<ClientResponse>> slow;
    std::thread client{[&] { slow.emplace(get(running.address, "/slow")); }};
    ASSERT_TRUE(wait_until([&] { return gate->entered.load(); }));

    std::atomic<bool> stopped{false};
    std::thread stopper{[&] {
        running.server->stop();
        stopped = true;
    }};
    EXPECT_TRUE(wait_until([&] { return running.server->stopping(); }));
    // The listener closes early in stop(): from then on the kernel refuses outright.
    EXPECT_TRUE(wait_until([&] { return !RawClient{running.address}.connected(); }));
    EXPECT_FALSE(stopped.load());  // still waiting for the busy request

    gate->open = true;
    client.join();
    stopper.join();
    ASSERT_TRUE(slow.has_value());
    ASSERT_TRUE(*slow) << slow->error().message;
    EXPECT_EQ((*slow)->status, 200);
    EXPECT_EQ((*slow)->body, "slow done");
}

TEST(HttpServer, StopClosesIdleKeepAliveConnectionsAtOnce) {
    auto settings = small_settings();
    settings.idle_timeout = 60s;
    settings.shutdown_grace = 60s;  // were the idle connection waited for, the test would time out
    auto running = start_server(settings);
    RawClient client{running.address};
    client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(client.read_response());

    std::atomic<bool> stopped{false};
    std::thread stopper{[&] {
        running.server->stop();
        stopped = true;
    }};
    EXPECT_TRUE(wait_until([&] { return stopped.load(); }, 10s));
    EXPECT_TRUE(client.wait_closed());
    stopper.join();
}

TEST(HttpServer, StopIsIdempotentAndSafeBeforeStart) {
    HttpServer never_started{small_settings(), TestHandler{}};
    never_started.stop();
    never_started.stop();
    EXPECT_TRUE(never_started.stopping());
    EXPECT_FALSE(never_started.start());

    auto running = start_server(small_settings());
    running.server->stop();
    running.server->stop();
    EXPECT_FALSE(RawClient{running.address}.connected());
}

TEST(HttpServer, ReportsAnAddressItCannotListenOn) {
    HttpServer server{ServerSettings{.listen = "127.0.0.1"}, TestHandler{}};
    auto bound = server.start();
    ASSERT_FALSE(bound);
    EXPECT_EQ(bound.error().code, core::ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace aviary::net
