// Logs and notifications with several `aviary serve` instances on one PostgreSQL (docs/logs.md,
// "Several instances"), through the real binary: a live tail on one instance follows what is
// uploaded through another, a notification stored through one is pushed on another's /ws, reads
// agree everywhere, and serve's own events become one notification each, not one per instance.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "net/net.hpp"
#include "rpc_helpers.hpp"
#include "support/postgres_server.hpp"
#include "support/server_process.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

std::string random_schema() {
    std::random_device seed;
    return "logs_scaleout_" + std::to_string(std::mt19937_64{seed()}() % 1'000'000'000);
}

std::unique_ptr<net::WebSocketClient> connect(const ServerProcess& server, std::string_view path) {
    auto made = net::WebSocketClient::connect(net::WebSocketConnect{
        .url = fmt::format("ws://{}{}", server.address(), path), .timeout = 10s});
    EXPECT_TRUE(made) << made.error().message;
    return made ? std::move(*made) : nullptr;
}

/// The next message as JSON; null when none came within `timeout`.
json::value next(net::WebSocketClient& ws, core::Millis timeout = std::chrono::seconds{15}) {
    auto message = ws.read(timeout);
    if (!message) {
        return nullptr;
    }
    return json::parse(message->data);
}

/// Sends one Bitahoy request on `ws` and returns its answer.
json::value call(net::WebSocketClient& ws, const json::object& request) {
    if (!ws.send(net::WebSocketMessage{.data = json::serialize(request)}, 5s)) {
        return nullptr;
    }
    return next(ws);
}

json::object upload(std::string_view action,
                    std::string_view field,
                    std::string_view sender,
                    const std::vector<std::string>& messages) {
    json::array entries;
    const double now = now_seconds();
    for (std::size_t i = 0; i < messages.size(); ++i) {
        entries.push_back(json::object{{"level", 3},
                                       {"time", now - 1 + 0.001 * static_cast<double>(i)},
                                       {"sender", sender},
                                       {"message", messages[i]}});
    }
    return json::object{{"action", action}, {field, std::move(entries)}};
}

std::vector<std::string> messages_of(const json::value& records) {
    std::vector<std::string> out;
    for (const auto& r : records.as_array()) {
        out.emplace_back(r.at("message").as_string());
    }
    return out;
}

class LogsScaleOut : public ::testing::Test {
protected:
    std::unique_ptr<ServerProcess> start(std::string_view instance) {
        auto server = std::make_unique<ServerProcess>(
            test_config() + fmt::format("instance: {}\nstore:\n  url: '{}'\n  heartbeat: 100ms\n"
                                        "  leader_ttl: 1s\nlogs:\n  logs_timewindow: 1h\n",
                                        instance, url_));
        EXPECT_TRUE(server->start()) << server->log();
        return server;
    }

    std::string url_ = fresh_postgres_schema_url(random_schema());
};

TEST_F(LogsScaleOut, ATailOnOneInstanceFollowsWhatIsUploadedThroughEither) {
    auto a = start("serve-a");
    auto b = start("serve-b");
    auto tail = connect(*b, "/api/v1/logs/tail?sender=geth-1");
    ASSERT_TRUE(tail);
    auto started = next(*tail);
    ASSERT_TRUE(started.is_object()) << b->log();
    ASSERT_EQ(started.at("type"), "start") << started;

    auto uploader_a = connect(*a, "/ws");
    auto uploader_b = connect(*b, "/ws");
    ASSERT_TRUE(uploader_a && uploader_b);
    ASSERT_EQ(
        call(*uploader_a, upload("uploadLogs", "logs", "geth-1", {"a1", "a2", "a3"})).at("success"),
        true);
    ASSERT_EQ(
        call(*uploader_a, upload("uploadLogs", "logs", "lotus-9", {"not followed"})).at("success"),
        true);
    ASSERT_EQ(call(*uploader_b, upload("uploadLogs", "logs", "geth-1", {"b1"})).at("success"),
              true);
    ASSERT_EQ(call(*uploader_a, upload("uploadLogs", "logs", "geth-1", {"a4"})).at("success"),
              true);

    // In the order they were stored, across both instances, the other sender's line left out.
    std::vector<std::string> seen;
    std::int64_t last_id = 0;
    for (int i = 0; i < 20 && seen.size() < 5; ++i) {
        auto m = next(*tail);
        ASSERT_TRUE(m.is_object()) << "the tail on B went quiet after " << seen.size() << " lines\n"
                                   << a->log() << b->log();
        ASSERT_EQ(m.at("type"), "records") << m;
        for (const auto& r : m.at("records").as_array()) {
            seen.emplace_back(r.at("message").as_string());
            EXPECT_GT(r.at("id").as_int64(), last_id) << m;
            last_id = r.at("id").as_int64();
        }
    }
    EXPECT_EQ(seen, (std::vector<std::string>{"a1", "a2", "a3", "b1", "a4"}));

    // Both instances read the same records, with the same ids.
    auto read_a = json_of(http(*a, "GET", "/api/v1/logs?service=geth-1"));
    auto read_b = json_of(http(*b, "GET", "/api/v1/logs?service=geth-1"));
    EXPECT_EQ(messages_of(read_b.at("records")),
              (std::vector<std::string>{"a4", "b1", "a3", "a2", "a1"}));
    EXPECT_EQ(read_a.at("records"), read_b.at("records"));
    auto services = json_of(http(*b, "GET", "/api/v1/logs/labels/service/values"));
    EXPECT_EQ(services.at("values"), json::parse(R"(["geth-1","lotus-9"])")) << services;

    // Regexes run on PostgreSQL's engine here: the common syntax alike, RE2's named groups
    // refused as bad input, with the server still up.
    auto matched = json_of(http(*a, "GET", "/api/v1/logs?regex=%5Ea%5B24%5D%24"));
    EXPECT_EQ(messages_of(matched.at("records")), (std::vector<std::string>{"a4", "a2"}));
    auto refused = http(*a, "GET", "/api/v1/logs?regex=%28%3FP%3Cn%3Ea%29");
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 400) << refused->body;
    EXPECT_NE(refused->body.find("regular expression"), std::string::npos) << refused->body;
    EXPECT_EQ(http(*a, "GET", "/healthz")->status, 200);
}

TEST_F(LogsScaleOut, NoLineAcknowledgedByAnInstanceKilledWithNineIsLost) {
    auto a = start("serve-a");
    auto b = start("serve-b");
    std::size_t acknowledged = 0;
    {
        auto ws = connect(*a, "/ws");
        ASSERT_TRUE(ws);
        for (int batch = 0; batch < 20; ++batch) {
            std::vector<std::string> lines;
            for (int i = 0; i < 100; ++i) {
                lines.push_back(fmt::format("{}-{}", batch, i));
            }
            auto answer = call(*ws, upload("uploadLogs", "logs", "killed", lines));
            ASSERT_EQ(answer.at("comment"), "Inserted 100 log(s) into db.") << answer;
            acknowledged += 100;
        }
        // One more in flight, unanswered, when A dies.
        ASSERT_TRUE(ws->send(
            net::WebSocketMessage{
                .data = json::serialize(upload("uploadLogs", "logs", "killed", {"in flight"}))},
            5s));
        a->kill9();
    }
    // B reads the shared tables: every acknowledged line, the one in flight perhaps.
    std::size_t found = 0;
    std::size_t in_flight = 0;
    std::string cursor;
    for (int page = 0; page < 10; ++page) {
        auto read = json_of(http(*b, "GET",
                                 "/api/v1/logs?service=killed&limit=1000" +
                                     (cursor.empty() ? "" : "&cursor=" + cursor)));
        ASSERT_TRUE(read.is_object()) << b->log();
        for (const auto& message : messages_of(read.at("records"))) {
            (message == "in flight" ? in_flight : found) += 1;
        }
        if (read.at("next_cursor").is_null()) {
            break;
        }
        cursor = std::string{read.at("next_cursor").as_string()};
    }
    EXPECT_EQ(found, acknowledged);
    EXPECT_LE(in_flight, 1U);
}

TEST_F(LogsScaleOut, ANotificationStoredThroughOneInstanceIsPushedOnAnothersWs) {
    auto a = start("serve-a");
    auto b = start("serve-b");
    auto watcher = connect(*b, "/ws");
    ASSERT_TRUE(watcher);
    // Subscribed once answered once.
    ASSERT_EQ(call(*watcher, json::object{{"action", "ping"}}).at("success"), true);
    auto uploader = connect(*a, "/ws");
    ASSERT_TRUE(uploader);
    auto stored =
        call(*uploader, upload("uploadNotifications", "notifications", "watchdog-3", {"intruder"}));
    ASSERT_EQ(stored.at("comment"), "Inserted 1 log(s) into db.") << stored;

    // serve's own events are pushed too; the uploaded one must come among the first few.
    json::value pushed;
    for (int i = 0; i < 10; ++i) {
        pushed = next(*watcher);
        ASSERT_TRUE(pushed.is_object()) << "nothing pushed on B\n" << a->log() << b->log();
        if (pushed.at("action") == "notification" &&
            pushed.at("notifications").at(0).at(0) == "watchdog-3") {
            break;
        }
    }
    ASSERT_EQ(pushed.at("action"), "notification") << pushed;
    EXPECT_EQ(pushed.at("notifications").at(0).at(0), "watchdog-3") << pushed;
    EXPECT_EQ(pushed.at("notifications").at(0).at(1), "intruder") << pushed;
}

TEST_F(LogsScaleOut, EachEventBecomesOneNotificationWhicheverInstancesRun) {
    auto a = start("serve-a");
    auto b = start("serve-b");
    auto notes_about = [&](const ServerProcess& server, std::string_view node) {
        auto read = json_of(
            http(server, "GET", fmt::format("/api/v1/logs?kind=notifications&contains={}", node)));
        std::vector<std::string> out;
        for (const auto& note : read.at("records").as_array()) {
            out.emplace_back(note.at("message").as_string());
        }
        return out;
    };
    auto leased = http(*a, "POST", "/api/v1/leases", R"({"node": "lotus-0", "owner": "anton"})");
    ASSERT_EQ(leased->status, 201) << leased->body;
    ASSERT_TRUE(wait_until([&] { return !notes_about(*b, "lotus-0").empty(); }))
        << a->log() << b->log();
    auto released = http(*b, "DELETE", "/api/v1/leases/" + str(json_of(leased).at("id")));
    ASSERT_EQ(released->status, 200) << released->body;
    ASSERT_TRUE(wait_until([&] { return notes_about(*a, "lotus-0").size() >= 2; }));
    // A later event copied is a barrier: every copy of the earlier ones has been made by then.
    auto later = http(*b, "POST", "/api/v1/leases", R"({"node": "lotus-1", "owner": "anton"})");
    ASSERT_EQ(later->status, 201) << later->body;
    ASSERT_TRUE(wait_until([&] { return !notes_about(*a, "lotus-1").empty(); }));

    const auto said = notes_about(*b, "lotus-0");
    ASSERT_EQ(said.size(), 2U) << testing::PrintToString(said);
    EXPECT_TRUE(said[0].starts_with("lease.released node=lotus-0")) << said[0];
    EXPECT_TRUE(said[1].starts_with("lease.acquired node=lotus-0")) << said[1];
    EXPECT_EQ(notes_about(*a, "lotus-1").size(), 1U);
}

}  // namespace
}  // namespace aviary::test
