// Logs over REST and the live tail (docs/logs.md) through the real binary: records uploaded on
// Bitahoy's /ws, read back with GET /api/v1/logs page by page, and followed on
// /api/v1/logs/tail across a reconnect, retention, its maximum duration and its limit.
#include <gtest/gtest.h>
#include <zstd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli_support.hpp"
#include "net/net.hpp"
#include "rpc_helpers.hpp"
#include "support/peer_process.hpp"
#include "support/server_process.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

std::unique_ptr<net::WebSocketClient> connect(const ServerProcess& server,
                                              const std::string& path) {
    auto made = net::WebSocketClient::connect(
        net::WebSocketConnect{.url = fmt::format("ws://{}{}", server.address(), path)});
    EXPECT_TRUE(made) << made.error().message;
    return made ? std::move(*made) : nullptr;
}

json::value read_json(net::WebSocketClient& ws, core::Millis timeout = std::chrono::seconds{10}) {
    auto message = ws.read(timeout);
    if (!message) {
        return nullptr;
    }
    return json::parse(message->data);
}

/// Uploads `messages` as logs of `sender`, one second apart ending now, on a fresh /ws.
void upload(const ServerProcess& server,
            const std::string& sender,
            const std::vector<std::string>& messages,
            double age = 0,
            std::string_view action = "uploadLogs",
            std::string_view field = "logs") {
    auto ws = connect(server, "/ws");
    ASSERT_TRUE(ws);
    json::array entries;
    double t = now_seconds() - age - static_cast<double>(messages.size());
    for (std::size_t i = 0; i < messages.size(); ++i) {
        entries.push_back(json::object{{"level", static_cast<int>(i % 3)},
                                       {"time", t + static_cast<double>(i)},
                                       {"sender", sender},
                                       {"message", messages[i]}});
    }
    ASSERT_TRUE(ws->send(
        net::WebSocketMessage{
            .data = json::serialize(json::object{{"action", action}, {field, std::move(entries)}})},
        5s));
    auto answer = read_json(*ws);
    ASSERT_EQ(answer.at("success"), true) << answer;
}

std::vector<std::string> messages_of(const json::value& records) {
    std::vector<std::string> out;
    for (const auto& r : records.as_array()) {
        out.emplace_back(r.at("message").as_string());
    }
    return out;
}

/// Reads tail messages until `count` records came (or a message that is not records).
std::vector<std::string> tail_records(net::WebSocketClient& tail,
                                      std::size_t count,
                                      std::string* cursor = nullptr) {
    std::vector<std::string> out;
    for (int i = 0; i < 100 && out.size() < count; ++i) {
        auto m = read_json(tail);
        if (!m.is_object() || m.at("type") != "records") {
            ADD_FAILURE() << "expected records, got " << m;
            break;
        }
        for (const auto& r : messages_of(m.at("records"))) {
            out.push_back(r);
        }
        if (cursor != nullptr) {
            *cursor = std::string{
                m.at("records").as_array().back().at("id").is_int64()
                    ? std::to_string(m.at("records").as_array().back().at("id").as_int64())
                    : ""};
        }
    }
    return out;
}

class Logs : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(server_.start()) << server_.log(); }
    ServerProcess server_{test_config() + "logs:\n  logs_timewindow: 1h\n"};
};

TEST_F(Logs, SearchPagesNewestFirstByCursorWithEveryFilter) {
    upload(server_, "w1", {"boot", "disk 80%", "scan"});
    upload(server_, "w2", {"disk 95%", "net up"});
    std::vector<std::string> seen;
    std::string cursor;
    for (int page = 0; page < 10; ++page) {
        auto response = http(server_, "GET",
                             "/api/v1/logs?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor));
        ASSERT_EQ(response->status, 200) << response->body;
        auto body = json_of(response);
        for (const auto& m : messages_of(body.at("records"))) {
            seen.push_back(m);
        }
        if (body.at("next_cursor").is_null()) {
            break;
        }
        cursor = std::string{body.at("next_cursor").as_string()};
    }
    // w2's upload came last, each upload's lines one second apart ending now.
    EXPECT_EQ(seen, (std::vector<std::string>{"net up", "scan", "disk 95%", "disk 80%", "boot"}));

    auto by_sender = json_of(http(server_, "GET", "/api/v1/logs?sender=w2"));
    EXPECT_EQ(messages_of(by_sender.at("records")),
              (std::vector<std::string>{"net up", "disk 95%"}));
    auto contains = json_of(http(server_, "GET", "/api/v1/logs?contains=disk"));
    EXPECT_EQ(messages_of(contains.at("records")),
              (std::vector<std::string>{"disk 95%", "disk 80%"}));
    auto level = json_of(http(server_, "GET", "/api/v1/logs?level=0"));
    EXPECT_EQ(messages_of(level.at("records")), (std::vector<std::string>{"disk 95%", "boot"}));
    auto recent = json_of(http(server_, "GET", "/api/v1/logs?since=1500ms"));
    EXPECT_EQ(messages_of(recent.at("records")), (std::vector<std::string>{"net up", "scan"}));
    auto old = json_of(http(server_, "GET", "/api/v1/logs?until=1500ms"));
    EXPECT_EQ(messages_of(old.at("records")),
              (std::vector<std::string>{"disk 95%", "disk 80%", "boot"}));
    const auto& record = level.at("records").at(0);
    EXPECT_EQ(record.at("kind"), "log");
    EXPECT_EQ(record.at("sender"), "w2");
    EXPECT_EQ(record.at("level"), 0);
    EXPECT_TRUE(record.at("time").as_string().ends_with("Z")) << record;
    EXPECT_TRUE(record.at("id").is_int64());
    EXPECT_EQ(json_of(http(server_, "GET", "/api/v1/logs?kind=notifications")).at("records"),
              json::array{});

    for (const auto& [query, says] : std::vector<std::pair<std::string, std::string>>{
             {"kind=all", "query parameter \"kind\" must be logs or notifications, got \"all\""},
             {"limit=0", "query parameter \"limit\" must be an integer from 1 to 10000"},
             {"cursor=xyz", "query parameter \"cursor\" is not one this server gave"},
             {"since=yesterday", "query parameter \"since\" must be a duration ago"},
             {"color=red", "unknown query parameter \"color\""}}) {
        auto refused = http(server_, "GET", "/api/v1/logs?" + query);
        EXPECT_EQ(refused->status, 400) << query;
        const std::string said{json_of(refused).at("error").at("message").as_string()};
        EXPECT_NE(said.find(says), std::string::npos) << query << ": " << said;
    }
}

TEST_F(Logs, ATailFollowsAndAReconnectWithItsCursorGetsExactlyWhatItMissed) {
    auto tail = connect(server_, "/api/v1/logs/tail?sender=w1");
    ASSERT_TRUE(tail);
    auto start = read_json(*tail);
    ASSERT_EQ(start.at("type"), "start") << start;
    EXPECT_EQ(start.at("max_duration_seconds"), 3600);
    upload(server_, "w2", {"not mine"});
    upload(server_, "w1", {"one", "two"});
    std::string cursor;
    EXPECT_EQ(tail_records(*tail, 2, &cursor), (std::vector<std::string>{"one", "two"}));
    ASSERT_TRUE((*tail).close(1000, "bye", 5s));
    tail.reset();

    // Missed while away: caught up from the store on reconnect, in stored order, then live.
    upload(server_, "w1", {"three"});
    upload(server_, "w1", {"four"});
    auto again = connect(server_, "/api/v1/logs/tail?sender=w1&cursor=" + cursor);
    ASSERT_TRUE(again);
    auto restart = read_json(*again);
    ASSERT_EQ(restart.at("type"), "start") << restart;
    EXPECT_EQ(restart.at("cursor"), json::value(cursor));
    EXPECT_EQ(tail_records(*again, 2), (std::vector<std::string>{"three", "four"}));
    upload(server_, "w1", {"five"});
    EXPECT_EQ(tail_records(*again, 1), (std::vector<std::string>{"five"}));
}

TEST(LogsTail, ARetentionGapIsCountedAndTheEndIsAnnouncedBeforeTheClose) {
    ServerProcess server{test_config() +
                         "logs:\n  logs_timewindow: 2s\n  cleanup_interval: 100ms\n"
                         "  tail_max_duration: 3s\n  max_tails_per_identity: 1\n"};
    ASSERT_TRUE(server.start()) << server.log();
    std::string cursor;
    {
        auto first = connect(server, "/api/v1/logs/tail");
        ASSERT_TRUE(first);
        auto start = read_json(*first);
        ASSERT_EQ(start.at("type"), "start") << start;
        cursor = std::string{start.at("cursor").as_string()};
        // One tail per identity here: a second is told why before it is closed.
        auto second = connect(server, "/api/v1/logs/tail");
        ASSERT_TRUE(second);
        auto refused = read_json(*second);
        ASSERT_TRUE(refused.is_object());
        EXPECT_EQ(refused.at("type"), "end");
        EXPECT_NE(std::string{refused.at("reason").as_string()}.find(
                      "live tails are open for \"\" already (logs.max_tails_per_identity)"),
                  std::string::npos)
            << refused;
        EXPECT_TRUE(read_json(*second, 5s).is_null());
        EXPECT_EQ(second->close_code(), 1008);
        ASSERT_TRUE(first->close(1000, "bye", 5s));
    }
    // Three lines already a minute old: retention removes them before the tail comes back.
    upload(server, "w", {"a", "b", "c"}, 60);
    EXPECT_TRUE(wait_until([&] {
        auto found = json_of(http(server, "GET", "/api/v1/logs?since=1h"));
        return found.at("records").as_array().empty();
    }));
    upload(server, "w", {"kept"});
    auto back = connect(server, "/api/v1/logs/tail?cursor=" + cursor);
    ASSERT_TRUE(back);
    auto lost = read_json(*back);
    ASSERT_EQ(lost.at("type"), "lost") << lost;
    EXPECT_EQ(lost.at("count"), 3);
    EXPECT_EQ(read_json(*back).at("type"), "start");
    EXPECT_EQ(tail_records(*back, 1), (std::vector<std::string>{"kept"}));
    // The maximum duration ends it with the reason, then the close.
    auto end = read_json(*back, 10s);
    ASSERT_TRUE(end.is_object());
    EXPECT_EQ(end.at("type"), "end");
    EXPECT_NE(std::string{end.at("reason").as_string()}.find(
                  "the tail's maximum duration (3s) was reached: reconnect with cursor"),
              std::string::npos)
        << end;
    EXPECT_TRUE(read_json(*back, 5s).is_null());
    EXPECT_EQ(back->close_code(), 1000);
}

TEST(LogsTail, WithoutAnUpgradeTheSameTailComesAsNdjsonLines) {
    ServerProcess server{test_config() + "logs:\n  tail_max_duration: 2s\n"};
    ASSERT_TRUE(server.start()) << server.log();
    std::atomic<bool> started{false};
    std::thread uploader{[&] {
        if (wait_until([&] { return started.load(); })) {
            upload(server, "w", {"over ndjson"});
        }
    }};
    std::string text;
    auto response = net::fetch_stream(net::ClientRequest{.method = "GET",
                                                         .url = server.url("/api/v1/logs/tail"),
                                                         .timeout = std::chrono::seconds{20}},
                                      [&](std::string_view chunk) {
                                          text += chunk;
                                          if (text.find("\"start\"") != std::string::npos) {
                                              started = true;
                                          }
                                      });
    started = true;  // let the uploader end even when the stream failed
    uploader.join();
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->header("Content-Type"), "application/x-ndjson");
    std::vector<std::string> types;
    std::vector<std::string> got;
    std::string reason;
    for (std::size_t at = 0; at < text.size();) {
        auto end = text.find('\n', at);
        auto line = json::parse(text.substr(at, end - at));
        types.emplace_back(line.at("type").as_string());
        if (types.back() == "records") {
            for (const auto& m : messages_of(line.at("records"))) {
                got.push_back(m);
            }
        }
        if (types.back() == "end") {
            reason = std::string{line.at("reason").as_string()};
        }
        at = end == std::string::npos ? text.size() : end + 1;
    }
    ASSERT_FALSE(types.empty()) << text;
    EXPECT_EQ(types.front(), "start") << text;
    EXPECT_EQ(types.back(), "end") << text;
    EXPECT_EQ(got, (std::vector<std::string>{"over ndjson"})) << text;
    EXPECT_NE(reason.find("maximum duration (2s)"), std::string::npos) << reason;
}

TEST_F(Logs, TheCliPrintsTheNewestOldestFirstAndRefusesAKindItCannotSearch) {
    upload(server_, "w1", {"first", "second"});
    upload(server_, "w2", {"other"});
    TempDir scratch;
    auto printed = run_aviary(server_.url(""), "logs --sender w1", scratch.path());
    ASSERT_EQ(printed.status, 0) << printed.err;
    const auto first = printed.out.find("  w1  first\n");
    const auto second = printed.out.find("  w1  second\n");
    EXPECT_NE(first, std::string::npos) << printed.out;
    EXPECT_NE(second, std::string::npos) << printed.out;
    EXPECT_LT(first, second) << "oldest first: " << printed.out;
    EXPECT_EQ(printed.out.find("other"), std::string::npos) << printed.out;
    auto as_json = run_aviary(server_.url(""), "--json logs --limit 1", scratch.path());
    ASSERT_EQ(as_json.status, 0) << as_json.err;
    EXPECT_EQ(json::parse(as_json.out).at("message"), "other") << as_json.out;
    auto all = run_aviary(server_.url(""), "logs --kind all", scratch.path());
    EXPECT_EQ(all.status, 2);
    EXPECT_NE(all.err.find("--kind all reads both kinds only with -f"), std::string::npos)
        << all.err;
    auto notes = run_aviary(server_.url(""), "notifications", scratch.path());
    EXPECT_EQ(notes.status, 0) << notes.err;
    EXPECT_EQ(notes.out, "");
}

TEST(LogsCli, FollowPrintsTheHistoryThenEachNewLineAndResumesAfterTheTailEnds) {
    ServerProcess server{test_config() + "logs:\n  logs_timewindow: 1h\n  tail_max_duration: 1s\n"};
    ASSERT_TRUE(server.start()) << server.log();
    upload(server, "w", {"before"});
    TempDir scratch;
    PeerProcess cli{{AVIARY_BINARY, "--server", server.url(""), "logs", "-f", "--sender", "w"},
                    scratch.path() + "/cli.log"};
    ASSERT_TRUE(cli.wait_for_log("  w  before\n")) << cli.log();
    upload(server, "w", {"live one"});
    ASSERT_TRUE(cli.wait_for_log("  w  live one\n")) << cli.log();
    // The server ends the tail after a second; the CLI says so and resumes from its cursor.
    ASSERT_TRUE(cli.wait_for_log("the tail's maximum duration (1s) was reached")) << cli.log();
    upload(server, "w", {"after resume"});
    ASSERT_TRUE(cli.wait_for_log("  w  after resume\n")) << cli.log();
    cli.stop();
    const auto log = cli.log();
    auto count = [&](const std::string& text) {
        std::size_t n = 0;
        for (auto at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) {
            ++n;
        }
        return n;
    };
    EXPECT_EQ(count("  w  before\n"), 1U) << log;
    EXPECT_EQ(count("  w  live one\n"), 1U) << "nothing twice across the resume: " << log;
}

TEST_F(Logs, ServesOwnEventsAreReadAsNotificationsWithTheirIds) {
    auto tail = connect(server_, "/api/v1/logs/tail?kind=notifications&sender=aviary");
    ASSERT_TRUE(tail);
    ASSERT_EQ(read_json(*tail).at("type"), "start");
    auto leased =
        http(server_, "POST", "/api/v1/leases", R"({"node": "lotus-0", "owner": "anton"})");
    ASSERT_EQ(leased->status, 201) << leased->body;
    const std::string lease_id{json_of(leased).at("id").as_string()};
    // The tail hears of it as soon as it is copied (every second).
    bool seen = false;
    for (int i = 0; i < 20 && !seen; ++i) {
        auto m = read_json(*tail, 15s);
        ASSERT_TRUE(m.is_object()) << "the tail ended";
        if (m.at("type") != "records") {
            continue;
        }
        for (const auto& record : m.at("records").as_array()) {
            seen = seen || record.at("message").as_string().starts_with("lease.acquired");
        }
    }
    EXPECT_TRUE(seen);
    auto found =
        json_of(http(server_, "GET", "/api/v1/logs?kind=notifications&contains=lease.acquired"));
    ASSERT_EQ(found.at("records").as_array().size(), 1U) << found;
    const auto& note = found.at("records").at(0);
    EXPECT_EQ(note.at("sender"), "aviary");
    EXPECT_EQ(note.at("level"), 6);
    EXPECT_EQ(note.at("message"),
              json::value("lease.acquired node=lotus-0 lease=" + lease_id + " actor=anton"));
}

TEST_F(Logs, LokisJsonPushIsStoredWithItsSenderLevelAndTimeAndBadPushesSayWhy) {
    const auto ns = static_cast<std::int64_t>(now_seconds() * 1e9);
    const auto body = fmt::format(R"({{"streams":[
        {{"stream":{{"job":"vector","level":"error","host":"n1"}},
          "values":[["{}","disk failed"],["{}","disk failed again"]]}},
        {{"stream":{{"service_name":"api"}},"values":[["{}","GET / 200"]]}}]}})",
                                  ns - 2'000'000'000, ns - 1'000'000'000, ns);
    auto pushed = http(server_, "POST", "/loki/api/v1/push", body);
    ASSERT_EQ(pushed->status, 204) << pushed->body;
    auto found = json_of(http(server_, "GET", "/api/v1/logs"));
    const auto& records = found.at("records").as_array();
    ASSERT_EQ(records.size(), 3U) << found;
    EXPECT_EQ(records[0].at("message"), "GET / 200");
    EXPECT_EQ(records[0].at("sender"), "api");
    EXPECT_EQ(records[0].at("level"), 6);
    EXPECT_EQ(records[0].at("time_ns"), ns);
    EXPECT_EQ(records[2].at("message"), "disk failed");
    EXPECT_EQ(records[2].at("sender"), "vector");
    EXPECT_EQ(records[2].at("level"), 3);
    EXPECT_EQ(records[2].at("node"), "n1") << "Loki's host label is the node";

    for (const auto& [request, says] : std::vector<std::pair<std::string, std::string>>{
             {"{nope", "the body is not JSON"},
             {R"({"streams":{}})", "a push is {\"streams\""},
             {R"({"streams":[{"stream":{},"values":[["1","a"],[2,"b"]]}]})",
              "streams[0].values[1] must be [\"<unix time in ns>\", \"line\"]"},
             {R"({"streams":[{"stream":{"level":"loud"},"values":[]}]})",
              "streams[0].stream: level \"loud\" is neither a severity name"}}) {
        auto refused = http(server_, "POST", "/loki/api/v1/push", request);
        EXPECT_EQ(refused->status, 400) << request;
        EXPECT_NE(refused->body.find(says), std::string::npos) << request << ": " << refused->body;
    }
    auto protobuf = http(server_, "POST", "/loki/api/v1/push", "\x0a\x00",
                         {{"Content-Type", "application/x-protobuf"}});
    EXPECT_EQ(protobuf->status, 415);
    EXPECT_NE(protobuf->body.find("not its protobuf one"), std::string::npos) << protobuf->body;
    EXPECT_EQ(json_of(http(server_, "GET", "/api/v1/logs")).at("records").as_array().size(), 3U)
        << "nothing of the bad pushes was stored";
}

std::string zstd_of(const std::string& text) {
    std::string out(ZSTD_compressBound(text.size()), '\0');
    out.resize(ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 3));
    return out;
}

TEST_F(Logs, ShippedLinesAreStoredOnceWithTheirLabelsFilteredAndListed) {
    const auto ns = static_cast<std::int64_t>(now_seconds() * 1e9);
    auto shipment = [&](std::string node, std::int64_t first_seq,
                        std::vector<std::pair<std::string, std::string>> lines) {
        json::array out;
        std::int64_t seq = first_seq;
        for (const auto& [source, message] : lines) {
            out.push_back(json::object{{"seq", seq},
                                       {"time_ns", ns - 1'000'000'000 + seq},
                                       {"source", source},
                                       {"level", source == "stderr" ? 3 : 6},
                                       {"message", message}});
            ++seq;
        }
        return json::serialize(json::object{{"stream", node + "@5eed"},
                                            {"node", node},
                                            {"service", "nodeos"},
                                            {"dropped", 0},
                                            {"lines", std::move(out)}});
    };
    const auto a =
        shipment("canary-a", 1, {{"stdout", "produced block 10"}, {"stderr", "fork at block 11"}});
    auto shipped =
        http(server_, "POST", "/api/v1/logs/ship", zstd_of(a), {{"Content-Encoding", "zstd"}});
    ASSERT_EQ(shipped->status, 200) << shipped->body;
    EXPECT_EQ(json_of(shipped).at("stored"), 2);
    // The same batch again, as a shipper does when serve's answer was lost: nothing twice.
    auto again =
        http(server_, "POST", "/api/v1/logs/ship", zstd_of(a), {{"Content-Encoding", "zstd"}});
    ASSERT_EQ(again->status, 200) << again->body;
    EXPECT_EQ(json_of(again).at("stored"), 0);
    EXPECT_EQ(json_of(again).at("duplicates"), 2);
    EXPECT_EQ(json_of(again).at("through"), 2);
    auto b = http(server_, "POST", "/api/v1/logs/ship",
                  shipment("canary-b", 1, {{"stdout", "produced block 12"}}));
    ASSERT_EQ(b->status, 200) << b->body;

    auto read = [&](const std::string& query) {
        auto response = http(server_, "GET", "/api/v1/logs?" + query);
        EXPECT_EQ(response->status, 200) << query << ": " << response->body;
        return messages_of(json_of(response).at("records"));
    };
    EXPECT_EQ(read("node=canary-a"),
              (std::vector<std::string>{"fork at block 11", "produced block 10"}));
    EXPECT_EQ(read("service=nodeos&source=stdout&direction=forward"),
              (std::vector<std::string>{"produced block 10", "produced block 12"}));
    EXPECT_EQ(read("node_regex=-b$"), (std::vector<std::string>{"produced block 12"}));
    EXPECT_EQ(read("regex=block%201%5B02%5D"),
              (std::vector<std::string>{"produced block 12", "produced block 10"}));
    auto first = json_of(http(server_, "GET", "/api/v1/logs?node=canary-a&source=stderr"));
    const auto& record = first.at("records").at(0);
    EXPECT_EQ(record.at("node"), "canary-a");
    EXPECT_EQ(record.at("source"), "stderr");
    EXPECT_EQ(record.at("sender"), "nodeos");
    EXPECT_EQ(record.at("level"), 3);

    auto labels = json_of(http(server_, "GET", "/api/v1/logs/labels"));
    EXPECT_EQ(labels.at("labels"), (json::array{"level", "node", "service", "source"})) << labels;
    auto nodes = json_of(http(server_, "GET", "/api/v1/logs/labels/node/values"));
    EXPECT_EQ(nodes.at("values"), (json::array{"canary-a", "canary-b"})) << nodes;
    auto levels = json_of(http(server_, "GET", "/api/v1/logs/labels/level/values"));
    EXPECT_EQ(levels.at("values"), (json::array{"3", "6"})) << levels;
    auto unknown = http(server_, "GET", "/api/v1/logs/labels/color/values");
    EXPECT_EQ(unknown->status, 404);

    for (const auto& [body, says] : std::vector<std::pair<std::string, std::string>>{
             {"{", "the shipment is not JSON"},
             {R"({"lines":[]})", "a shipment needs \"stream\""},
             {R"({"stream":"s","lines":[{"seq":0,"time_ns":1,"message":"m"}]})",
              "lines[0]: \"seq\" must be an integer above 0"},
             {R"({"stream":"s","lines":[{"seq":2,"time_ns":1,"message":"m"},)"
              R"({"seq":1,"time_ns":1,"message":"m"}]})",
              "lines[1]: \"seq\" 1 does not rise"},
             {R"({"stream":"s","colour":1,"lines":[]})", "unknown field \"colour\""}}) {
        auto refused = http(server_, "POST", "/api/v1/logs/ship", body);
        EXPECT_EQ(refused->status, 400) << body;
        const std::string said{json_of(refused).at("error").at("message").as_string()};
        EXPECT_NE(said.find(says), std::string::npos) << body << ": " << said;
    }
    auto not_zstd =
        http(server_, "POST", "/api/v1/logs/ship", "plain text", {{"Content-Encoding", "zstd"}});
    EXPECT_EQ(not_zstd->status, 400);
    EXPECT_NE(not_zstd->body.find("not zstd"), std::string::npos) << not_zstd->body;
    // A small body that would expand past the cap is refused, not decompressed whole.
    const std::string bomb = zstd_of(std::string(40 * 1024 * 1024, ' '));
    auto refused_bomb =
        http(server_, "POST", "/api/v1/logs/ship", bomb, {{"Content-Encoding", "zstd"}});
    EXPECT_EQ(refused_bomb->status, 400);
    EXPECT_NE(refused_bomb->body.find("larger than"), std::string::npos) << refused_bomb->body;
    auto gzip = http(server_, "POST", "/api/v1/logs/ship", "x", {{"Content-Encoding", "gzip"}});
    EXPECT_EQ(gzip->status, 400);
    EXPECT_EQ(read("since=1h").size(), 3U) << "nothing of the refused shipments was stored";

    for (const auto& [query, says] : std::vector<std::pair<std::string, std::string>>{
             {"regex=(", "query parameter \"regex\": not a regular expression (RE2 syntax)"},
             {"field..a=1", "a field path is names joined by dots"},
             {"direction=up", "query parameter \"direction\" must be backward"}}) {
        auto refused = http(server_, "GET", "/api/v1/logs?" + query);
        EXPECT_EQ(refused->status, 400) << query;
        const std::string said{json_of(refused).at("error").at("message").as_string()};
        EXPECT_NE(said.find(says), std::string::npos) << query << ": " << said;
    }
}

TEST_F(Logs, FreeFieldsFromLokisLabelsAndMetadataAreFilteredByPath) {
    const auto ns = static_cast<std::int64_t>(now_seconds() * 1e9);
    const auto body = fmt::format(R"({{"streams":[
        {{"stream":{{"job":"geth","host":"n1","stream":"stderr","region":"eu"}},
          "values":[["{}","peer dropped",{{"peer_id":"p7"}}],["{}","peer added"]]}}]}})",
                                  ns - 1'000'000'000, ns);
    ASSERT_EQ(http(server_, "POST", "/loki/api/v1/push", body)->status, 204);
    auto found = json_of(http(server_, "GET", "/api/v1/logs?field.peer_id=p7"));
    ASSERT_EQ(found.at("records").as_array().size(), 1U) << found;
    const auto& record = found.at("records").at(0);
    EXPECT_EQ(record.at("message"), "peer dropped");
    EXPECT_EQ(record.at("source"), "stderr");
    EXPECT_EQ(record.at("fields"), (json::object{{"region", "eu"}, {"peer_id", "p7"}})) << record;
    auto eu = json_of(http(server_, "GET", "/api/v1/logs?field.region=eu&node=n1"));
    EXPECT_EQ(messages_of(eu.at("records")),
              (std::vector<std::string>{"peer added", "peer dropped"}));
}

TEST_F(Logs, ATailsBadParametersAreRefusedBeforeTheUpgrade) {
    auto refused = net::WebSocketClient::connect(net::WebSocketConnect{
        .url = fmt::format("ws://{}/api/v1/logs/tail?level=high", server_.address())});
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message.find("400"), std::string::npos) << refused.error().message;
    EXPECT_NE(refused.error().message.find("query parameter \\\"level\\\" must be an integer"),
              std::string::npos)
        << refused.error().message;
}

}  // namespace
}  // namespace aviary::test
