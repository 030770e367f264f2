// Bitahoy's monitoring-service WebSocket (docs/logs.md) through the real binary: `aviary serve`
// on an ephemeral loopback port, real WebSocket connections to /ws, the original's flows.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "net/net.hpp"
#include "rpc_helpers.hpp"
#include "support/server_process.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

/// One /ws connection that sends a JSON object and reads the next message as JSON.
class Ws {
public:
    explicit Ws(const ServerProcess& server, std::vector<net::Header> headers = {}) {
        auto made = net::WebSocketClient::connect(
            net::WebSocketConnect{.url = fmt::format("ws://{}/ws", server.address()),
                                  .headers = std::move(headers),
                                  .timeout = 10s});
        EXPECT_TRUE(made) << made.error().message;
        if (made) {
            client_ = std::move(*made);
        }
    }
    bool ok() const { return client_ != nullptr; }

    bool send(const std::string& text) {
        return client_ && client_->send(net::WebSocketMessage{.data = text}, 5s).has_value();
    }
    /// The next message as JSON; null when none came (the error kept in `last_error`).
    json::value next(core::Millis timeout = std::chrono::seconds{10}) {
        if (!client_) {
            return nullptr;
        }
        auto message = client_->read(timeout);
        if (!message) {
            last_error = message.error().message;
            return nullptr;
        }
        boost::system::error_code ec;
        auto value = json::parse(message->data, ec);
        return ec ? json::value(message->data) : value;
    }
    json::value call(const std::string& text) { return send(text) ? next() : nullptr; }
    json::value call(const json::object& body) { return call(json::serialize(body)); }
    net::WebSocketClient& raw() { return *client_; }

    std::string last_error;

private:
    std::unique_ptr<net::WebSocketClient> client_;
};

json::object upload(std::string_view action,
                    std::string_view field,
                    std::vector<json::value> entries) {
    return json::object{{"action", action}, {field, json::array(entries.begin(), entries.end())}};
}

json::value entry(int level, double time, std::string_view sender, std::string_view message) {
    return json::object{{"level", level}, {"time", time}, {"sender", sender}, {"message", message}};
}

class Bitahoy : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(server_.start()) << server_.log(); }
    ServerProcess server_{test_config() + "logs:\n  idle_timeout: 30s\n"};
};

TEST_F(Bitahoy, UploadThenGetWithEachFilterNewestFirst) {
    Ws ws{server_};
    ASSERT_TRUE(ws.ok());
    const double now = now_seconds();
    auto stored = ws.call(upload("uploadLogs", "logs",
                                 {entry(10, now - 3, "watchdog-1", "booted"),
                                  entry(40, now - 2, "watchdog-2", "disk 91% full"),
                                  entry(20, now - 1, "watchdog-1", "scan done")}));
    EXPECT_EQ(stored, json::parse(R"({"success":true,"action":"uploadLogs",
                                     "comment":"Inserted 3 log(s) into db."})"));

    // Arrays as the original sent them: [sender, message, level], newest first.
    auto all = ws.call(R"({"action":"getLogs","timewindow":60})");
    EXPECT_EQ(all, json::parse(R"({"success":true,"action":"getLogs","logs":[
        ["watchdog-1","scan done",20],["watchdog-2","disk 91% full",40],
        ["watchdog-1","booted",10]]})"));
    auto by_sender = ws.call(R"({"action":"getLogs","timewindow":60,"sender":"watchdog-1"})");
    EXPECT_EQ(by_sender.at("logs").as_array().size(), 2U) << by_sender;
    // level: the given level and below, as the original's query.
    auto by_level = ws.call(R"({"action":"getLogs","timewindow":60,"level":20})");
    EXPECT_EQ(by_level.at("logs"),
              json::parse(R"([["watchdog-1","scan done",20],["watchdog-1","booted",10]])"));
    // timewindow: only what is no older than it, by the entries' own time.
    auto recent = ws.call(R"({"action":"getLogs","timewindow":1.5})");
    EXPECT_EQ(recent.at("logs"), json::parse(R"([["watchdog-1","scan done",20]])"));
    auto objects = ws.call(R"({"action":"getLogs","timewindow":60,"level":10,"format":"objects"})");
    ASSERT_EQ(objects.at("logs").as_array().size(), 1U) << objects;
    const auto& first = objects.at("logs").at(0);
    EXPECT_EQ(first.at("sender"), "watchdog-1");
    EXPECT_EQ(first.at("message"), "booted");
    EXPECT_EQ(first.at("level"), 10);
    EXPECT_NEAR(first.at("time").as_double(), now - 3, 0.001);
    // Notifications are another list: nothing there yet.
    EXPECT_EQ(ws.call(R"({"action":"getNotifications","timewindow":60})").at("notifications"),
              json::array{});
}

TEST_F(Bitahoy, ANotificationIsPushedToTheOtherConnectionsAndReadWithItsTime) {
    Ws uploader{server_};
    Ws watcher{server_};
    ASSERT_TRUE(uploader.ok() && watcher.ok());
    // The watcher is subscribed once it has been answered once.
    ASSERT_EQ(watcher.call(R"({"action":"ping"})"),
              json::parse(R"({"success":true,"action":"ping"})"));
    const double at = now_seconds();
    auto stored = uploader.call(
        upload("uploadNotifications", "notifications", {entry(1, at, "watchdog-3", "intruder")}));
    EXPECT_EQ(stored.at("comment"), "Inserted 1 log(s) into db.") << stored;

    auto pushed = watcher.next();
    ASSERT_TRUE(pushed.is_object()) << watcher.last_error;
    EXPECT_EQ(pushed.at("action"), "notification");
    EXPECT_EQ(pushed.at("success"), true);
    const auto& note = pushed.at("notifications").at(0);
    EXPECT_EQ(note.at(0), "watchdog-3");
    EXPECT_EQ(note.at(1), "intruder");
    EXPECT_EQ(note.at(2), 1);
    EXPECT_NEAR(note.at(3).as_double(), at, 0.001);

    // The uploader is not told again: its next message is the answer to its next request.
    auto read = uploader.call(R"({"action":"getNotifications","timewindow":60})");
    EXPECT_EQ(read.at("action"), "getNotifications") << read;
    ASSERT_EQ(read.at("notifications").as_array().size(), 1U) << read;
    EXPECT_EQ(read.at("notifications").at(0).at(1), "intruder");
}

TEST_F(Bitahoy, ServesOwnEventsArePushedAsNotificationsAsTheyHappen) {
    Ws watcher{server_};
    ASSERT_TRUE(watcher.ok());
    ASSERT_EQ(watcher.call(R"({"action":"ping"})").at("success"), true);
    auto leased =
        http(server_, "POST", "/api/v1/leases", R"({"node": "lotus-0", "owner": "anton"})");
    ASSERT_EQ(leased->status, 201) << leased->body;
    // Events are copied into notifications every second; the push follows the copy.
    json::value pushed;
    for (int i = 0; i < 10; ++i) {
        pushed = watcher.next(15s);
        ASSERT_TRUE(pushed.is_object()) << watcher.last_error;
        if (pushed.at("action") == "notification") {
            break;
        }
    }
    ASSERT_EQ(pushed.at("action"), "notification") << pushed;
    const auto& note = pushed.at("notifications").at(0);
    EXPECT_EQ(note.at(0), "aviary");
    EXPECT_TRUE(note.at(1).as_string().starts_with("lease.acquired node=lotus-0")) << note;
    EXPECT_EQ(note.at(2), 6);
}

TEST_F(Bitahoy, BadInputGetsAClearAnswerAndTheConnectionGoesOn) {
    Ws ws{server_};
    ASSERT_TRUE(ws.ok());
    auto unknown = ws.call(R"({"action":"frobnicate"})");
    EXPECT_EQ(unknown,
              json::parse(R"({"success":false,"action":"frobnicate","comment":"Unknown Action"})"));
    EXPECT_EQ(ws.call(R"({"logs":[]})").at("comment"), "Unknown Action");
    auto not_list = ws.call(R"({"action":"uploadLogs","logs":"oops"})");
    EXPECT_EQ(not_list.at("success"), false);
    EXPECT_EQ(not_list.at("comment"),
              "logs must be a list of {\"level\", \"time\", \"sender\", \"message\"} entries");
    auto bad_level = ws.call(json::serialize(upload(
        "uploadLogs", "logs",
        {entry(1, now_seconds(), "a", "b"),
         json::object{{"level", "high"}, {"time", 1.0}, {"sender", "a"}, {"message", "b"}}})));
    EXPECT_EQ(bad_level.at("comment"), "logs[1].level must be an integer");
    auto bad_time = ws.call(
        R"({"action":"uploadLogs","logs":[{"level":1,"time":"now","sender":"a","message":"b"}]})");
    EXPECT_EQ(bad_time.at("comment"), "logs[0].time must be seconds since the epoch (time.time())");
    auto bad_window = ws.call(R"({"action":"getLogs","timewindow":"ten"})");
    EXPECT_EQ(bad_window.at("comment"),
              "timewindow must be a number of seconds (logs no older than this)");
    auto not_json = ws.call("{nope");
    EXPECT_EQ(not_json.at("success"), false);
    EXPECT_TRUE(not_json.at("comment").as_string().starts_with("not JSON")) << not_json;
    std::string deep(200, '[');
    auto too_deep = ws.call(deep);
    EXPECT_EQ(too_deep.at("success"), false) << too_deep;
    ASSERT_TRUE(ws.raw().send(net::WebSocketMessage{.data = "\x01\x02", .binary = true}, 5s));
    EXPECT_EQ(ws.next().at("comment"), "messages are JSON text frames, not binary ones");
    // Nothing of the bad uploads was stored, and the connection still answers.
    EXPECT_EQ(ws.call(R"({"action":"getLogs","timewindow":3600})").at("logs"), json::array{});
    EXPECT_EQ(ws.call(R"({"action":"keepalive"})"),
              json::parse(R"({"success":true,"action":"keepalive"})"));
    EXPECT_EQ(http(server_, "GET", "/healthz")->status, 200);
}

TEST_F(Bitahoy, HugeOrInvalidFramesCloseThatConnectionWithTheReasonAndNoOther) {
    Ws bystander{server_};
    ASSERT_TRUE(bystander.ok());
    {
        Ws huge{server_};
        ASSERT_TRUE(huge.ok());
        // Past server.websocket.max_message_bytes (1 MiB).
        std::string big = R"({"action":"uploadLogs","logs":[{"message":")" +
                          std::string(std::size_t{2} * 1024 * 1024, 'x') + R"("}]})";
        (void)huge.send(big);
        EXPECT_TRUE(huge.next(5s).is_null());
        // The server closes as soon as it reads the frame's length (1009); a client still
        // writing the payload may see its socket reset before it reads that close frame.
        const auto code = huge.raw().close_code();
        EXPECT_TRUE(code == 1009 || code == 0) << code << " " << huge.last_error;
    }
    {
        Ws garbled{server_};
        ASSERT_TRUE(garbled.ok());
        (void)garbled.send("{\"action\":\"ping\",\"x\":\"\xff\xfe\"}");  // not UTF-8
        EXPECT_TRUE(garbled.next(5s).is_null());
        EXPECT_EQ(garbled.raw().close_code(), 1007) << garbled.last_error;
    }
    EXPECT_EQ(bystander.call(R"({"action":"ping"})"),
              json::parse(R"({"success":true,"action":"ping"})"));
}

TEST_F(Bitahoy, APlainGetOfTheWebSocketRouteIsTold426) {
    auto plain = http(server_, "GET", "/ws");
    ASSERT_TRUE(plain);
    EXPECT_EQ(plain->status, 426) << plain->body;
}

/// A WebSocket client that writes frames by hand (masked, as a client must), for what
/// net::WebSocketClient never sends: fragments, and control frames by the thousand.
class RawWs {
public:
    explicit RawWs(const ServerProcess& server) {
        const auto colon = server.address().rfind(':');
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port =
            htons(static_cast<std::uint16_t>(std::stoi(server.address().substr(colon + 1))));
        ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
        timeval tv{10, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
        const std::string upgrade =
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        ok_ = ok_ && write(upgrade);
        std::string head;
        while (ok_ && head.find("\r\n\r\n") == std::string::npos) {
            char c = 0;
            ok_ = ::recv(fd_, &c, 1, 0) == 1;
            head += c;
        }
        ok_ = ok_ && head.starts_with("HTTP/1.1 101");
    }
    ~RawWs() { ::close(fd_); }
    bool ok() const { return ok_; }

    /// One frame: FIN flag, opcode (1 text, 0 continuation, 9 ping), masked payload.
    bool frame(bool fin, int opcode, std::string_view payload) {
        std::string out;
        out += static_cast<char>((fin ? 0x80 : 0) | opcode);
        if (payload.size() < 126) {
            out += static_cast<char>(0x80 | payload.size());
        } else {
            out += static_cast<char>(0x80 | 126);
            out += static_cast<char>(payload.size() >> 8);
            out += static_cast<char>(payload.size() & 0xff);
        }
        const char mask[4] = {0x12, 0x34, 0x56, 0x78};
        out.append(mask, 4);
        for (std::size_t i = 0; i < payload.size(); ++i) {
            out += static_cast<char>(payload[i] ^ mask[i % 4]);
        }
        return write(out);
    }
    /// The next text frame's payload, skipping pongs; "" when the connection ends first.
    std::string next_text() {
        while (true) {
            unsigned char head[2];
            if (!read(head, 2)) {
                return {};
            }
            std::size_t size = head[1] & 0x7f;
            if (size == 126) {
                unsigned char ext[2];
                if (!read(ext, 2)) {
                    return {};
                }
                size = (std::size_t{ext[0]} << 8) | ext[1];
            }
            std::string payload(size, '\0');
            if (size > 0 && !read(payload.data(), size)) {
                return {};
            }
            const int opcode = head[0] & 0x0f;
            if (opcode == 1) {
                return payload;
            }
            if (opcode == 8) {
                return {};
            }
        }
    }

private:
    bool write(std::string_view data) {
        while (!data.empty()) {
            const auto n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
            if (n <= 0) {
                return false;
            }
            data.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    }
    bool read(void* into, std::size_t size) {
        auto* at = static_cast<char*>(into);
        while (size > 0) {
            const auto n = ::recv(fd_, at, size, 0);
            if (n <= 0) {
                return false;
            }
            at += n;
            size -= static_cast<std::size_t>(n);
        }
        return true;
    }
    int fd_ = -1;
    bool ok_ = false;
};

TEST_F(Bitahoy, AFragmentedMessageIsAnsweredWholeAndAPingFloodLeavesTheConnectionUsable) {
    RawWs raw{server_};
    ASSERT_TRUE(raw.ok());
    // One message in three frames, a ping between two of them (control frames may interleave).
    ASSERT_TRUE(raw.frame(false, 1, R"({"action":)"));
    ASSERT_TRUE(raw.frame(true, 9, "between"));
    ASSERT_TRUE(raw.frame(false, 0, R"("pi)"));
    ASSERT_TRUE(raw.frame(true, 0, R"(ng"})"));
    EXPECT_EQ(json::parse(raw.next_text()), json::parse(R"({"success":true,"action":"ping"})"));
    // Five thousand pings, then a message: each ping is answered (the pongs are skipped while
    // reading), and the message after them is answered too.
    for (int i = 0; i < 5000; ++i) {
        ASSERT_TRUE(raw.frame(true, 9, "flood")) << i;
    }
    ASSERT_TRUE(raw.frame(true, 1, R"({"action":"keepalive"})"));
    EXPECT_EQ(json::parse(raw.next_text()).at("action"), "keepalive");
    Ws bystander{server_};
    ASSERT_TRUE(bystander.ok());
    EXPECT_EQ(bystander.call(R"({"action":"ping"})").at("success"), true);
}

TEST(BitahoyLimits, AReadPastItsBoundsSaysItWasTruncated) {
    ServerProcess server{test_config() + "logs:\n  max_results: 2\n"};
    ASSERT_TRUE(server.start()) << server.log();
    Ws ws{server};
    ASSERT_TRUE(ws.ok());
    const double now = now_seconds();
    ASSERT_EQ(ws.call(upload("uploadLogs", "logs",
                             {entry(1, now - 3, "w", "a"), entry(1, now - 2, "w", "b"),
                              entry(1, now - 1, "w", "c")}))
                  .at("success"),
              true);
    auto page = ws.call(R"({"action":"getLogs","timewindow":60})");
    EXPECT_EQ(page, json::parse(R"({"success":true,"action":"getLogs",
                                   "logs":[["w","c",1],["w","b",1]],"truncated":true})"));
    // Exactly at the bound, nothing was left out.
    auto whole = ws.call(R"({"action":"getLogs","timewindow":2.5})");
    EXPECT_EQ(whole.at("logs").as_array().size(), 2U);
    EXPECT_FALSE(whole.as_object().contains("truncated")) << whole;
}

TEST(BitahoyFaults, NoAcknowledgedLineIsLostToKillNine) {
    TempDir dir;
    const std::string config = test_config() + "logs:\n  logs_timewindow: 1h\n";
    std::size_t acknowledged = 0;
    {
        ServerProcess server{config, dir.path()};
        ASSERT_TRUE(server.start()) << server.log();
        Ws ws{server};
        ASSERT_TRUE(ws.ok());
        // Uploads of 100 lines one after another; serve dies after the 20th is acknowledged,
        // with the next one already sent and unanswered.
        for (int batch = 0; batch < 20; ++batch) {
            std::vector<json::value> lines;
            for (int i = 0; i < 100; ++i) {
                lines.push_back(entry(1, now_seconds(), "w", fmt::format("{}-{}", batch, i)));
            }
            auto answer = ws.call(upload("uploadLogs", "logs", std::move(lines)));
            ASSERT_EQ(answer.at("comment"), "Inserted 100 log(s) into db.") << answer;
            acknowledged += 100;
        }
        ASSERT_TRUE(ws.send(json::serialize(
            upload("uploadLogs", "logs", {entry(1, now_seconds(), "w", "in flight")}))));
        server.kill9();
    }
    ServerProcess restarted{config + "  max_results: 100000\n", dir.path()};
    ASSERT_TRUE(restarted.start()) << restarted.log();
    Ws ws{restarted};
    ASSERT_TRUE(ws.ok());
    auto all = ws.call(R"({"action":"getLogs","timewindow":3600,"format":"objects"})");
    ASSERT_TRUE(all.is_object()) << ws.last_error;
    const auto& logs = all.at("logs").as_array();
    // Every acknowledged line is there; the one in flight may or may not be.
    EXPECT_GE(logs.size(), acknowledged);
    EXPECT_LE(logs.size(), acknowledged + 1);
    std::size_t found = 0;
    for (const auto& line : logs) {
        found += line.at("message") != "in flight" ? 1 : 0;
    }
    EXPECT_EQ(found, acknowledged);
}

TEST(BitahoyRetention, OldLogsAreRemovedAndNotificationsKept) {
    ServerProcess server{test_config() +
                         "logs:\n  logs_timewindow: 2s\n  cleanup_interval: 100ms\n"};
    ASSERT_TRUE(server.start()) << server.log();
    Ws ws{server};
    ASSERT_TRUE(ws.ok());
    const double now = now_seconds();
    // One log already past the window, one inside it.
    ws.call(upload("uploadLogs", "logs",
                   {entry(1, now - 60, "w", "old"), entry(1, now, "w", "fresh")}));
    ws.call(upload("uploadNotifications", "notifications", {entry(1, now - 60, "w", "kept")}));
    // Asked for an hour, only what retention left comes back: first the fresh line alone,
    // then, once it is past the 2 s window too, nothing.
    json::value logs;
    EXPECT_TRUE(wait_until([&] {
        logs = ws.call(R"({"action":"getLogs","timewindow":3600})").at("logs");
        return logs == json::parse(R"([["w","fresh",1]])");
    })) << logs;
    EXPECT_TRUE(wait_until(
        [&] {
            logs = ws.call(R"({"action":"getLogs","timewindow":3600})").at("logs");
            return logs.as_array().empty();
        },
        10s))
        << logs;
    auto notes = ws.call(R"({"action":"getNotifications","timewindow":3600})");
    EXPECT_EQ(notes.at("notifications").as_array().size(), 1U) << notes;
}

TEST(BitahoyIdle, ASilentConnectionIsClosedWithTheReasonAndKeepaliveKeepsItOpen) {
    ServerProcess server{test_config() + "logs:\n  idle_timeout: 1s\n"};
    ASSERT_TRUE(server.start()) << server.log();
    Ws busy{server};
    Ws silent{server};
    ASSERT_TRUE(busy.ok() && silent.ok());
    // The silent one is read on a thread of its own until the server closes it; meanwhile the
    // busy one says keepalive, paced by that read rather than by a clock.
    json::value closed;
    std::atomic<bool> done{false};
    std::thread reader{[&] {
        closed = silent.next(10s);
        done = true;
    }};
    int answered = 0;
    for (int i = 0; i < 1'000'000 && !done.load(); ++i) {
        if (busy.call(R"({"action":"keepalive"})").at("success") != true) {
            break;
        }
        ++answered;
    }
    reader.join();
    EXPECT_TRUE(closed.is_null()) << closed;
    EXPECT_EQ(silent.raw().close_code(), 1000);
    EXPECT_NE(silent.raw().close_reason().find("keepalive"), std::string::npos)
        << silent.raw().close_reason();
    // Past the timeout, the busy one is still open.
    EXPECT_GT(answered, 0);
    EXPECT_EQ(busy.call(R"({"action":"ping"})"),
              json::parse(R"({"success":true,"action":"ping"})"));
}

class BitahoyTokens : public ::testing::Test {
protected:
    void SetUp() override {
        setenv("AVIARY_TEST_W1_TOKEN", "w1-secret", 1);
        setenv("AVIARY_TEST_W2_TOKEN", "w2-secret", 1);
        setenv("AVIARY_TEST_OPS_TOKEN", "ops-secret", 1);
        ASSERT_TRUE(server_.start()) << server_.log();
    }
    ServerProcess server_{test_config() + R"(auth:
  tokens:
    - {identity: watchdog-1, role: user, env: AVIARY_TEST_W1_TOKEN}
    - {identity: watchdog-2, role: user, env: AVIARY_TEST_W2_TOKEN}
    - {identity: ops, role: admin, env: AVIARY_TEST_OPS_TOKEN}
)"};
};

TEST_F(BitahoyTokens, AuthComesFirstAndTheTokenDecidesTheScope) {
    Ws one{server_};
    ASSERT_TRUE(one.ok());
    auto early = one.call(R"({"action":"getLogs","timewindow":60})");
    EXPECT_EQ(early.at("success"), false);
    EXPECT_EQ(early.at("comment"),
              "authenticate first: send {\"action\": \"auth\", \"token\": TOKEN}");
    auto wrong = one.call(R"({"action":"auth","token":"guess"})");
    EXPECT_EQ(wrong.at("success"), false);
    EXPECT_EQ(wrong.at("comment"), "the bearer token is not valid");
    EXPECT_EQ(one.call(R"({"action":"auth","token":"w1-secret"})"),
              json::parse(R"({"success":true,"action":"auth","timeout":30})"));
    // Again as itself is fine; as another identity it takes another connection.
    EXPECT_EQ(one.call(R"({"action":"auth","token":"w1-secret"})").at("success"), true);
    EXPECT_EQ(one.call(R"({"action":"auth","token":"w2-secret"})").at("comment"),
              "this connection is authenticated as \"watchdog-1\" already: open another one "
              "for \"watchdog-2\"");

    Ws two{server_};
    Ws ops{server_};
    ASSERT_TRUE(two.ok() && ops.ok());
    ASSERT_EQ(two.call(R"({"action":"auth","token":"w2-secret"})").at("success"), true);
    ASSERT_EQ(ops.call(R"({"action":"auth","token":"ops-secret"})").at("success"), true);
    const double now = now_seconds();
    ASSERT_EQ(one.call(upload("uploadLogs", "logs", {entry(1, now, "w1", "mine")})).at("success"),
              true);
    ASSERT_EQ(two.call(upload("uploadLogs", "logs", {entry(1, now, "w2", "theirs")})).at("success"),
              true);
    EXPECT_EQ(one.call(R"({"action":"getLogs","timewindow":60})").at("logs"),
              json::parse(R"([["w1","mine",1]])"));
    EXPECT_EQ(two.call(R"({"action":"getLogs","timewindow":60})").at("logs"),
              json::parse(R"([["w2","theirs",1]])"));
    // An admin reads every scope.
    EXPECT_EQ(ops.call(R"({"action":"getLogs","timewindow":60})").at("logs").as_array().size(), 2U);

    // A notification reaches the other connections of its own scope only.
    Ws one_again{server_, {{"Authorization", "Bearer w1-secret"}}};  // the header works too
    ASSERT_TRUE(one_again.ok());
    ASSERT_EQ(one_again.call(R"({"action":"ping"})").at("success"), true);
    ASSERT_EQ(
        two.call(upload("uploadNotifications", "notifications", {entry(1, now, "w2", "two's")}))
            .at("success"),
        true);
    ASSERT_EQ(
        one.call(upload("uploadNotifications", "notifications", {entry(1, now, "w1", "one's")}))
            .at("success"),
        true);
    auto pushed = one_again.next();
    ASSERT_TRUE(pushed.is_object()) << one_again.last_error;
    EXPECT_EQ(pushed.at("notifications").at(0).at(1), "one's") << "not two's";
}

TEST_F(BitahoyTokens, GuessingTokensClosesTheConnectionAfterThreeTries) {
    Ws guesser{server_};
    ASSERT_TRUE(guesser.ok());
    for (const char* guess : {"a", "b", "c"}) {
        EXPECT_EQ(
            guesser.call(fmt::format(R"({{"action":"auth","token":"{}"}})", guess)).at("success"),
            false);
    }
    auto after = guesser.next(5s);
    EXPECT_TRUE(after.is_null()) << after;
    EXPECT_EQ(guesser.raw().close_code(), 1008);
    EXPECT_EQ(guesser.raw().close_reason(), "too many failed auth attempts");
    EXPECT_EQ(http(server_, "GET", "/healthz")->status, 200);
}

}  // namespace
}  // namespace aviary::test
