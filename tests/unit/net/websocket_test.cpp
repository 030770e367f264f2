#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/net.hpp"
#include "support/test_certs.hpp"
#include "unit/net/raw_http.hpp"

namespace aviary::net {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using test::RawClient;
using test::wait_until;

/// What the handlers saw, for the test thread to check once they are done.
struct Seen {
    std::mutex mu;
    std::vector<std::string> errors;  // read()'s final error messages
    std::vector<core::ErrorCode> codes;
    std::vector<bool> sends;  // send()'s results, in order
    WebSocketStats stats;
    std::atomic<int> finished{0};

    void end(const core::Error& error, const WebSocketStats& final_stats) {
        std::lock_guard lock{mu};
        errors.push_back(error.message);
        codes.push_back(error.code);
        stats = final_stats;
        finished.fetch_add(1);
    }
};

/// The routes: /echo answers each message; /burst sends 100 messages at once, then reads;
/// /bye closes with 4000; /feed forwards hub topic "feed" until the client leaves.
struct WsHandler {
    std::shared_ptr<Seen> seen;
    Hub* hub = nullptr;

    asio::awaitable<Response> operator()(Request request) const {
        Response response;
        if (request.path == "/plain") {
            response.body = "plain";
            co_return response;
        }
        if (request.path == "/echo") {
            response.headers.push_back(Header{"X-Route", "echo"});
            response.websocket = [seen = seen](WebSocket& ws) { return echo(ws, seen); };
        } else if (request.path == "/burst") {
            response.websocket = [seen = seen](WebSocket& ws) { return burst(ws, seen); };
        } else if (request.path == "/bye") {
            response.websocket = [seen = seen](WebSocket& ws) { return bye(ws, seen); };
        } else if (request.path == "/feed") {
            response.websocket = [seen = seen, hub = hub](WebSocket& ws) {
                return feed(ws, seen, hub);
            };
        } else {
            response.status = 404;
        }
        co_return response;
    }

    static asio::awaitable<void> echo(WebSocket& ws, std::shared_ptr<Seen> seen) {
        for (;;) {
            auto message = co_await ws.read();
            if (!message) {
                seen->end(message.error(), ws.stats());
                co_return;
            }
            message->data = "echo: " + message->data;
            ws.send(std::move(*message));
        }
    }

    static asio::awaitable<void> burst(WebSocket& ws, std::shared_ptr<Seen> seen) {
        {
            std::lock_guard lock{seen->mu};
            for (int i = 0; i < 100; ++i) {
                seen->sends.push_back(ws.send_text(fmt::format("message {}", i)));
            }
        }
        auto message = co_await ws.read();
        seen->end(message ? core::Error{core::ErrorCode::kInternal, "a message"} : message.error(),
                  ws.stats());
    }

    static asio::awaitable<void> bye(WebSocket& ws, std::shared_ptr<Seen> seen) {
        ws.send_text("about to close");
        ws.close(4000, "bye now");
        auto message = co_await ws.read();
        seen->end(message ? core::Error{core::ErrorCode::kInternal, "a message"} : message.error(),
                  ws.stats());
    }

    static asio::awaitable<void> feed(WebSocket& ws, std::shared_ptr<Seen> seen, Hub* hub) {
        auto subscription = hub->subscribe({"feed"}, ws.executor());
        if (!subscription) {
            ws.close(1011, subscription.error().message);
            co_return;
        }
        // Push `||` read: the read loop ends when the client leaves, which ends the push.
        using namespace asio::experimental::awaitable_operators;
        auto pushing = push(ws, **subscription);
        auto reading = read_until_closed(ws, seen);
        co_await (std::move(pushing) || std::move(reading));
    }

    static asio::awaitable<void> push(WebSocket& ws, Subscription& subscription) {
        while (ws.is_open()) {
            auto message = co_await subscription.next(1s);
            if (message) {
                ws.send_text(message->data);
            }
        }
    }

    static asio::awaitable<void> read_until_closed(WebSocket& ws, std::shared_ptr<Seen> seen) {
        for (;;) {
            auto message = co_await ws.read();
            if (!message) {
                seen->end(message.error(), ws.stats());
                co_return;
            }
        }
    }
};

class WebSocketTest : public ::testing::Test {
protected:
    ServerSettings settings() const {
        ServerSettings settings;
        settings.listen = "127.0.0.1:0";
        settings.read_timeout = 5s;
        settings.write_timeout = 5s;
        settings.shutdown_grace = 30s;
        settings.websocket.idle_timeout = 30s;
        return settings;
    }

    void start(ServerSettings settings) {
        server_ = std::make_unique<HttpServer>(std::move(settings), WsHandler{seen_, &hub_});
        auto bound = server_->start();
        ASSERT_TRUE(bound) << bound.error().message;
        address_ = *bound;
    }

    std::unique_ptr<WebSocketClient> connect(const std::string& path) {
        auto client = WebSocketClient::connect(
            WebSocketConnect{.url = fmt::format("ws://{}{}", address_, path), .timeout = 5s});
        EXPECT_TRUE(client) << client.error().message;
        return client ? std::move(*client) : nullptr;
    }

    std::shared_ptr<Seen> seen_ = std::make_shared<Seen>();
    Hub hub_;
    std::unique_ptr<HttpServer> server_;
    std::string address_;
};

TEST_F(WebSocketTest, EchoesTextAndBinaryAndSeesTheClientsClose) {
    start(settings());
    auto client = connect("/echo");
    ASSERT_TRUE(client);
    EXPECT_EQ(server_->stats().websockets, 1);
    ASSERT_TRUE(client->send(WebSocketMessage{"hello"}, 5s));
    auto answer = client->read(5s);
    ASSERT_TRUE(answer) << answer.error().message;
    EXPECT_EQ(answer->data, "echo: hello");
    EXPECT_FALSE(answer->binary);
    ASSERT_TRUE(client->send(WebSocketMessage{std::string{"\0\1\2", 3}, true}, 5s));
    answer = client->read(5s);
    ASSERT_TRUE(answer) << answer.error().message;
    EXPECT_EQ(answer->data, std::string("echo: \0\1\2", 9));
    EXPECT_TRUE(answer->binary);

    ASSERT_TRUE(client->close(1000, "done", 5s));
    ASSERT_TRUE(wait_until([&] { return seen_->finished.load() == 1; }));
    std::lock_guard lock{seen_->mu};
    EXPECT_EQ(seen_->codes.at(0), core::ErrorCode::kUnavailable);
    EXPECT_EQ(seen_->errors.at(0), "closed by the peer (1000 done)");
    EXPECT_EQ(seen_->stats.received, 2U);
    EXPECT_EQ(seen_->stats.sent, 2U);
    EXPECT_TRUE(wait_until([&] { return server_->stats().websockets == 0; }));
}

TEST_F(WebSocketTest, APlainRequestToAWebSocketRouteGets426) {
    start(settings());
    auto response = fetch_sync(ClientRequest{.url = fmt::format("http://{}/echo", address_)});
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->status, 426);
    EXPECT_EQ(response->header("Upgrade").value_or(""), "websocket");
    EXPECT_NE(response->body.find("WebSocket only"), std::string::npos) << response->body;
    // The connection was kept: an ordinary route still answers.
    auto plain = fetch_sync(ClientRequest{.url = fmt::format("http://{}/plain", address_)});
    ASSERT_TRUE(plain);
    EXPECT_EQ(plain->body, "plain");
}

TEST_F(WebSocketTest, TheHandlersHeadersGoOutWithThe101) {
    start(settings());
    RawClient raw{address_};
    raw.send(
        "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    auto head = raw.read_head();
    EXPECT_NE(head.find("HTTP/1.1 101"), std::string::npos) << head;
    EXPECT_NE(head.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), std::string::npos)
        << head;
    EXPECT_NE(head.find("X-Route: echo"), std::string::npos) << head;
}

TEST_F(WebSocketTest, AMessagePastTheLimitClosesWith1009) {
    auto s = settings();
    s.websocket.max_message_bytes = 1024;
    start(s);
    auto client = connect("/echo");
    ASSERT_TRUE(client);
    ASSERT_TRUE(client->send(WebSocketMessage{std::string(2048, 'x')}, 5s));
    auto answer = client->read(5s);
    ASSERT_FALSE(answer);
    EXPECT_EQ(client->close_code(), 1009) << answer.error().message;
    ASSERT_TRUE(wait_until([&] { return seen_->finished.load() == 1; }));
    std::lock_guard lock{seen_->mu};
    EXPECT_EQ(seen_->codes.at(0), core::ErrorCode::kInvalidArgument) << seen_->errors.at(0);
    EXPECT_EQ(seen_->errors.at(0), "a message exceeded the 1024-byte limit");
}

TEST_F(WebSocketTest, DeflateIsTakenWhenOfferedAndLargeMessagesComeBackWhole) {
    start(settings());
    auto plain = connect("/echo");
    ASSERT_TRUE(plain);
    EXPECT_FALSE(plain->deflated()) << "not offered, not used";
    auto client = WebSocketClient::connect(WebSocketConnect{
        .url = fmt::format("ws://{}/echo", address_), .timeout = 5s, .deflate = true});
    ASSERT_TRUE(client) << client.error().message;
    EXPECT_TRUE((*client)->deflated());
    std::string big;
    for (int i = 0; big.size() < 512 * 1024; ++i) {
        big += fmt::format(R"({{"seq":{},"node":"canary-a","message":"produced block {}"}})", i,
                           i * 7);
    }
    ASSERT_TRUE((*client)->send(WebSocketMessage{big}, 5s));
    auto answer = (*client)->read(5s);
    ASSERT_TRUE(answer) << answer.error().message;
    EXPECT_EQ(answer->data, "echo: " + big);
    ASSERT_TRUE((*client)->send(WebSocketMessage{"short"}, 5s)) << "below deflate_min_bytes";
    answer = (*client)->read(5s);
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->data, "echo: short");

    RawClient raw{address_};
    raw.send(
        "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n");
    auto head = raw.read_head();
    EXPECT_NE(head.find("Sec-WebSocket-Extensions: permessage-deflate"), std::string::npos) << head;
}

TEST_F(WebSocketTest, AServerWithoutDeflateAnswersAnOfferUncompressed) {
    auto s = settings();
    s.websocket.deflate = false;
    start(s);
    auto client = WebSocketClient::connect(WebSocketConnect{
        .url = fmt::format("ws://{}/echo", address_), .timeout = 5s, .deflate = true});
    ASSERT_TRUE(client) << client.error().message;
    EXPECT_FALSE((*client)->deflated());
    ASSERT_TRUE((*client)->send(WebSocketMessage{std::string(4096, 'a')}, 5s));
    auto answer = (*client)->read(5s);
    ASSERT_TRUE(answer) << answer.error().message;
    EXPECT_EQ(answer->data, "echo: " + std::string(4096, 'a'));
}

TEST_F(WebSocketTest, ACompressedMessageThatInflatesPastTheLimitClosesWith1009) {
    auto s = settings();
    s.websocket.max_message_bytes = 64 * 1024;
    start(s);
    auto bomb = WebSocketClient::connect(WebSocketConnect{
        .url = fmt::format("ws://{}/echo", address_), .timeout = 5s, .deflate = true});
    ASSERT_TRUE(bomb) << bomb.error().message;
    ASSERT_TRUE((*bomb)->deflated());
    // 8 MiB of one byte deflates to a few KiB: small on the wire, 128 times the limit inflated.
    // The server may close while the client still writes: then the write fails instead.
    auto sent = (*bomb)->send(WebSocketMessage{std::string(8 * 1024 * 1024, 'x')}, 10s);
    auto answer = (*bomb)->read(5s);
    ASSERT_FALSE(answer);
    if (sent) {
        EXPECT_EQ((*bomb)->close_code(), 1009) << answer.error().message;
    } else {
        EXPECT_TRUE((*bomb)->close_code() == 1009 || (*bomb)->close_code() == 0)
            << sent.error().message << " / " << answer.error().message;
    }
    ASSERT_TRUE(wait_until([&] { return seen_->finished.load() == 1; }));
    {
        std::lock_guard lock{seen_->mu};
        EXPECT_EQ(seen_->errors.at(0), "a message exceeded the 65536-byte limit")
            << "the limit holds for the inflated message";
    }
    // The server goes on with the others.
    auto other = connect("/echo");
    ASSERT_TRUE(other);
    ASSERT_TRUE(other->send(WebSocketMessage{"still here"}, 5s));
    auto reply = other->read(5s);
    ASSERT_TRUE(reply) << reply.error().message;
    EXPECT_EQ(reply->data, "echo: still here");
}

TEST_F(WebSocketTest, AClientOutlivesItsConnectTimeout) {
    start(settings());
    auto client = WebSocketClient::connect(
        WebSocketConnect{.url = fmt::format("ws://{}/echo", address_), .timeout = 200ms});
    ASSERT_TRUE(client) << client.error().message;
    // The subject is time passing beyond the connect deadline, so it has to pass.
    std::this_thread::sleep_for(400ms);
    ASSERT_TRUE((*client)->send(WebSocketMessage{"later"}, 5s));
    auto answer = (*client)->read(5s);
    ASSERT_TRUE(answer) << answer.error().message;
    EXPECT_EQ(answer->data, "echo: later");
}

TEST_F(WebSocketTest, ASlowReaderIsClosedWith1008UnderTheClosePolicy) {
    auto s = settings();
    s.websocket.max_queued_messages = 10;
    s.websocket.slow_reader = SlowReader::kClose;
    start(s);
    auto client = connect("/burst");
    ASSERT_TRUE(client);
    // The handler queued 100 messages before the writer could send one: the 11th overflowed.
    auto answer = client->read(5s);
    ASSERT_FALSE(answer) << "got " << answer->data;
    EXPECT_EQ(client->close_code(), 1008);
    EXPECT_EQ(client->close_reason(), "slow reader: 10 messages queued unread");
    ASSERT_TRUE(wait_until([&] { return seen_->finished.load() == 1; }));
    std::lock_guard lock{seen_->mu};
    ASSERT_EQ(seen_->sends.size(), 100U);
    EXPECT_TRUE(seen_->sends.at(9));
    EXPECT_FALSE(seen_->sends.at(10));
    EXPECT_FALSE(seen_->sends.at(99));  // closing: nothing more is taken
    EXPECT_EQ(seen_->stats.sent, 0U);
}

TEST_F(WebSocketTest, ASlowReaderLosesTheNewestMessagesUnderTheDropPolicy) {
    auto s = settings();
    s.websocket.max_queued_messages = 10;
    s.websocket.slow_reader = SlowReader::kDrop;
    start(s);
    auto client = connect("/burst");
    ASSERT_TRUE(client);
    for (int i = 0; i < 10; ++i) {
        auto answer = client->read(5s);
        ASSERT_TRUE(answer) << answer.error().message;
        EXPECT_EQ(answer->data, fmt::format("message {}", i));
    }
    ASSERT_TRUE(client->close(1000, "", 5s));
    ASSERT_TRUE(wait_until([&] { return seen_->finished.load() == 1; }));
    std::lock_guard lock{seen_->mu};
    EXPECT_EQ(seen_->stats.dropped, 90U);
    EXPECT_EQ(seen_->stats.sent, 10U);
    EXPECT_TRUE(seen_->sends.at(9));
    EXPECT_FALSE(seen_->sends.at(10));
}

TEST_F(WebSocketTest, QueuedMessagesGoOutBeforeTheHandlersClose) {
    start(settings());
    auto client = connect("/bye");
    ASSERT_TRUE(client);
    auto first = client->read(5s);
    ASSERT_TRUE(first) << first.error().message;
    EXPECT_EQ(first->data, "about to close");
    auto end = client->read(5s);
    ASSERT_FALSE(end);
    EXPECT_EQ(client->close_code(), 4000);
    EXPECT_EQ(client->close_reason(), "bye now");
    ASSERT_TRUE(wait_until([&] { return seen_->finished.load() == 1; }));
    std::lock_guard lock{seen_->mu};
    EXPECT_EQ(seen_->errors.at(0), "closed by the server (4000 bye now)");
}

TEST_F(WebSocketTest, HubMessagesReachTheClientAndItsLeavingEndsThePush) {
    start(settings());
    auto client = connect("/feed");
    ASSERT_TRUE(client);
    // The handler subscribes after the handshake: publish until it is there.
    ASSERT_TRUE(wait_until([&] { return hub_.stats().subscribers == 1; }));
    std::thread publisher{[this] {
        for (int i = 0; i < 50; ++i) {
            hub_.publish("feed", fmt::format("event {}", i));
        }
        hub_.publish("other", "not for the feed");
    }};
    publisher.join();
    for (int i = 0; i < 50; ++i) {
        auto message = client->read(5s);
        ASSERT_TRUE(message) << message.error().message;
        EXPECT_EQ(message->data, fmt::format("event {}", i));
    }
    ASSERT_TRUE(client->close(1000, "leaving", 5s));
    ASSERT_TRUE(wait_until([&] { return seen_->finished.load() == 1; }));
    // The push loop ended with the read loop, and its subscription with it.
    EXPECT_TRUE(wait_until([&] { return hub_.stats().subscribers == 0; }));
}

TEST_F(WebSocketTest, StopClosesOpenWebSocketsWith1001) {
    start(settings());  // shutdown_grace 30 s: a close code proves stop() did not just wait
    auto client = connect("/echo");
    ASSERT_TRUE(client);
    std::thread stopper{[this] { server_->stop(); }};
    auto end = client->read(10s);
    stopper.join();
    ASSERT_FALSE(end);
    EXPECT_EQ(client->close_code(), 1001) << end.error().message;
    EXPECT_EQ(client->close_reason(), "server shutting down");
}

TEST_F(WebSocketTest, ASilentPeerIsClosedPastTheIdleTimeout) {
    auto s = settings();
    s.websocket.idle_timeout = 300ms;
    start(s);
    // A raw client completes the handshake and then never reads: it answers no ping.
    RawClient raw{address_};
    raw.send(
        "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
    EXPECT_NE(raw.read_head().find("101"), std::string::npos);
    ASSERT_TRUE(wait_until([&] { return seen_->finished.load() == 1; }, 10s));
    std::lock_guard lock{seen_->mu};
    EXPECT_EQ(seen_->codes.at(0), core::ErrorCode::kTimeout) << seen_->errors.at(0);
}

TEST_F(WebSocketTest, FramesSentBeforeThe101AreRefused) {
    start(settings());
    RawClient raw{address_};
    // The head and a masked text frame in one write: the client did not wait for our answer.
    raw.send(std::string{"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                         "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"} +
             std::string{"\x81\x80\x01\x02\x03\x04", 6});
    auto head = raw.read_head();
    EXPECT_NE(head.find("HTTP/1.1 400"), std::string::npos) << head;
    EXPECT_EQ(seen_->finished.load(), 0);
}

TEST_F(WebSocketTest, ServesWssWithTheServersCertificate) {
    auto dir = fs::temp_directory_path() / fmt::format("aviary-ws-tls-{}", ::getpid());
    fs::remove_all(dir);
    fs::create_directories(dir);
    auto pki = aviary::test::make_test_pki(dir.string());
    auto s = settings();
    s.tls.cert_file = pki.server_cert;
    s.tls.key_file = pki.server_key;
    start(s);
    auto port = address_.substr(address_.rfind(':') + 1);
    auto client = WebSocketClient::connect(
        WebSocketConnect{.url = fmt::format("wss://localhost:{}/echo", port),
                         .timeout = 5s,
                         .tls = ClientTls{.ca_file = pki.ca_cert}});
    ASSERT_TRUE(client) << client.error().message;
    ASSERT_TRUE((*client)->send(WebSocketMessage{"over tls"}, 5s));
    auto answer = (*client)->read(5s);
    ASSERT_TRUE(answer) << answer.error().message;
    EXPECT_EQ(answer->data, "echo: over tls");
    EXPECT_TRUE((*client)->close(1000, "", 5s));
    // A client that does not trust the CA never gets a WebSocket.
    auto untrusting = WebSocketClient::connect(
        WebSocketConnect{.url = fmt::format("wss://localhost:{}/echo", port),
                         .timeout = 5s,
                         .tls = ClientTls{.ca_file = pki.other_ca_cert}});
    ASSERT_FALSE(untrusting);
    EXPECT_NE(untrusting.error().message.find("unknown CA"), std::string::npos)
        << untrusting.error().message;
    server_.reset();
    fs::remove_all(dir);
}

TEST(WebSocketClient, RefusesANonWebSocketUrl) {
    auto client = WebSocketClient::connect(WebSocketConnect{.url = "http://127.0.0.1:1/x"});
    ASSERT_FALSE(client);
    EXPECT_EQ(client.error().code, core::ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace aviary::net
