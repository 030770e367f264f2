// The REST surface of jobs through the real binary: actions on nodes, the job list and one
// job, output paged and followed live (NDJSON, resumable), cancel, retry, queues paused and
// resumed, uniqueness, argv templating that never meets a shell, permissions with tokens, the
// action catalog, and bad input.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>

#include "net/net.hpp"
#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

/// Every line of an NDJSON body, parsed (unparsable lines become null).
std::vector<json::value> ndjson_lines(std::string_view body) {
    std::vector<json::value> out;
    size_t start = 0;
    while (start < body.size()) {
        auto end = body.find('\n', start);
        if (end == std::string_view::npos) {
            end = body.size();
        }
        if (end > start) {
            std::error_code ec;
            auto parsed = json::parse(body.substr(start, end - start), ec);
            out.push_back(ec ? json::value(nullptr) : parsed);
        }
        start = end + 1;
    }
    return out;
}

bool has_key(const json::value& line, std::string_view key) {
    return line.is_object() && line.as_object().contains(key);
}

/// A follow stream read by curl (a real client that hands over each chunk as it comes) on a
/// thread of its own, its lines collected as they arrive.
class Follower {
public:
    Follower(const ServerProcess& server, std::string_view path)
        : headers_(fs::path{server.data_dir()} / fmt::format("follow-{}.headers", ++count_)) {
        auto command =
            fmt::format("curl -sN --max-time 60 -D '{}' '{}'", headers_.string(), server.url(path));
        done_ = std::async(std::launch::async, [this, command] {
            FILE* pipe = popen(command.c_str(), "r");
            if (pipe == nullptr) {
                return;
            }
            std::array<char, 4096> buffer{};
            while (fgets(buffer.data(), int(buffer.size()), pipe) != nullptr) {
                std::lock_guard lock{mu_};
                body_ += buffer.data();
            }
            pclose(pipe);
        });
    }
    std::vector<json::value> lines() const {
        std::lock_guard lock{mu_};
        return ndjson_lines(body_);
    }
    bool saw(const std::function<bool(const json::value&)>& match) const {
        auto all = lines();
        return std::any_of(all.begin(), all.end(), match);
    }
    /// Waits for the stream to end; false if it did not within the deadline.
    bool finish(std::chrono::seconds deadline = std::chrono::seconds{60}) {
        return done_.wait_for(deadline) == std::future_status::ready;
    }
    /// The response head curl saw ("HTTP/1.1 200 OK\r\nContent-Type: ...").
    std::string head() const {
        std::ifstream in{headers_};
        std::stringstream text;
        text << in.rdbuf();
        return text.str();
    }

private:
    static inline int count_ = 0;
    fs::path headers_;
    mutable std::mutex mu_;
    std::string body_;
    std::future<void> done_;
};

class JobsRest : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(server_.start()) << server_.log(); }

    /// POSTs an action and returns the body, checking the status.
    json::value submit(std::string_view node,
                       std::string_view action,
                       std::string body,
                       int want_status = 202) {
        auto response =
            http(server_, "POST", fmt::format("/api/v1/nodes/{}/actions/{}", node, action),
                 std::move(body), {}, std::chrono::seconds{60});
        EXPECT_TRUE(response);
        if (!response) {
            return nullptr;
        }
        EXPECT_EQ(response->status, want_status) << response->body;
        return json_of(response);
    }
    std::string say(std::string_view node, std::string_view msg, int want_status = 202) {
        auto body = submit(node, "say",
                           json::serialize(json::object{{"params", json::object{{"msg", msg}}}}),
                           want_status);
        return body.is_object() && body.as_object().contains("job") ? str(body.at("job").at("id"))
                                                                    : std::string{};
    }
    void pause(std::string_view queue, bool on) {
        auto response =
            http(server_, on ? "PUT" : "DELETE", fmt::format("/api/v1/queues/{}/pause", queue));
        ASSERT_TRUE(response);
        ASSERT_EQ(response->status, 200) << response->body;
        EXPECT_EQ(json_of(response).at("paused"), on);
    }
    json::value output(std::string_view id, std::string_view query = "") {
        auto response = http(server_, "GET", fmt::format("/api/v1/jobs/{}/output{}", id, query));
        EXPECT_TRUE(response && response->status == 200) << (response ? response->body : "");
        return json_of(response);
    }

    ServerProcess server_{jobs_test_config()};
};

TEST_F(JobsRest, SubmitThenListGetAndReadTheOutput) {
    auto body = submit("lotus-0", "say", R"({"params": {"msg": "hello aviary"}})");
    ASSERT_TRUE(body.is_object());
    EXPECT_EQ(body.at("duplicate"), false);
    EXPECT_FALSE(body.as_object().contains("lease"));
    const auto& job = body.at("job");
    auto id = str(job.at("id"));
    EXPECT_EQ(job.at("action"), "say");
    EXPECT_EQ(job.at("node"), "lotus-0");
    EXPECT_EQ(job.at("queue"), "default");
    EXPECT_EQ(job.at("params").at("msg"), "hello aviary");
    EXPECT_EQ(job.at("state"), "queued");
    EXPECT_EQ(job.at("status"), "PENDING");
    EXPECT_EQ(job.at("steps"), 1);
    EXPECT_TRUE(job.at("created_at").is_string());
    EXPECT_TRUE(job.at("finished_at").is_null());

    auto finished = wait_for_job(server_, id);
    ASSERT_TRUE(finished.is_object());
    EXPECT_EQ(finished.at("state"), "succeeded") << json::serialize(finished);
    EXPECT_EQ(finished.at("attempt"), 1);
    EXPECT_TRUE(finished.at("started_at").is_string());
    EXPECT_TRUE(finished.at("result").is_object());

    auto list = json_of(http(server_, "GET", "/api/v1/jobs?node=lotus-0&state=succeeded"));
    ASSERT_TRUE(list.is_object());
    ASSERT_EQ(list.at("jobs").as_array().size(), 1u);
    EXPECT_EQ(str(list.at("jobs").at(0).at("id")), id);
    EXPECT_EQ(list.at("next_cursor"), "");
    auto elsewhere = json_of(http(server_, "GET", "/api/v1/jobs?node=lotus-1"));
    EXPECT_EQ(elsewhere.at("jobs").as_array().size(), 0u);

    auto out = output(id);
    ASSERT_TRUE(out.is_object());
    EXPECT_EQ(out.at("finished"), true);
    EXPECT_EQ(out.at("state"), "succeeded");
    bool said = false;
    for (const auto& line : out.at("lines").as_array()) {
        EXPECT_TRUE(line.at("seq").is_int64());
        EXPECT_TRUE(line.at("at").is_string());
        EXPECT_EQ(line.at("attempt"), 1);
        if (line.at("stream") == "stdout" && line.at("text") == "hello aviary") {
            said = true;
            EXPECT_EQ(line.at("step"), 1);
        }
    }
    EXPECT_TRUE(said) << json::serialize(out);
    EXPECT_EQ(out.at("last_seq"), out.at("lines").as_array().back().at("seq"));
}

TEST_F(JobsRest, OutputPagesBackwardsFromTheEnd) {
    auto id = str(submit("lotus-0", "count", "").at("job").at("id"));
    ASSERT_EQ(wait_for_job(server_, id).at("state"), "succeeded");
    auto all = output(id);
    auto total = all.at("lines").as_array().size();
    ASSERT_GE(total, 5u);
    auto last_seq = all.at("last_seq").as_int64();

    auto newest = output(id, "?limit=2");
    ASSERT_EQ(newest.at("lines").as_array().size(), 2u);
    EXPECT_EQ(newest.at("lines").at(1).at("seq"), last_seq);
    auto oldest_shown = newest.at("lines").at(0).at("seq").as_int64();
    auto back = output(id, fmt::format("?before={}&limit=2", oldest_shown));
    ASSERT_EQ(back.at("lines").as_array().size(), 2u);
    EXPECT_EQ(back.at("lines").at(1).at("seq"), oldest_shown - 1);
    auto after = output(id, fmt::format("?from={}", last_seq - 1));
    ASSERT_EQ(after.at("lines").as_array().size(), 1u);
    EXPECT_EQ(after.at("lines").at(0).at("seq"), last_seq);
    std::vector<std::string> printed;
    for (const auto& line : all.at("lines").as_array()) {
        if (line.at("stream") == "stdout") {
            printed.push_back(str(line.at("text")));
        }
    }
    EXPECT_EQ(printed,
              (std::vector<std::string>{"line 1", "line 2", "line 3", "line 4", "line 5"}));
}

TEST_F(JobsRest, FollowStreamsLiveLinesHeartbeatsAndAFinishedLine) {
    pause("default", true);
    auto id = str(submit("lotus-0", "count", "").at("job").at("id"));
    Follower follower{server_, fmt::format("/api/v1/jobs/{}/output?follow=1", id)};
    // Idle while the queue is paused: heartbeats keep the stream alive.
    ASSERT_TRUE(wait_until([&] {
        return follower.saw([](const json::value& l) { return has_key(l, "heartbeat"); });
    }));
    pause("default", false);
    ASSERT_TRUE(follower.finish());
    EXPECT_NE(follower.head().find("HTTP/1.1 200"), std::string::npos) << follower.head();
    EXPECT_NE(follower.head().find("application/x-ndjson"), std::string::npos);
    auto lines = follower.lines();
    ASSERT_FALSE(lines.empty());
    const auto& last = lines.back();
    ASSERT_TRUE(has_key(last, "finished")) << json::serialize(last);
    EXPECT_EQ(last.at("state"), "succeeded");
    std::vector<std::string> printed;
    std::int64_t previous = 0;
    for (const auto& line : lines) {
        if (has_key(line, "seq")) {
            EXPECT_GT(line.at("seq").as_int64(), previous) << "in order, never twice";
            previous = line.at("seq").as_int64();
            if (line.at("stream") == "stdout") {
                printed.push_back(str(line.at("text")));
            }
        }
    }
    EXPECT_EQ(printed,
              (std::vector<std::string>{"line 1", "line 2", "line 3", "line 4", "line 5"}));

    // Resumable: from the third line, exactly the rest, then the finished line.
    auto all = output(id);
    auto third = all.at("lines").at(2).at("seq").as_int64();
    Follower resumed{server_, fmt::format("/api/v1/jobs/{}/output?follow=1&from={}", id, third)};
    ASSERT_TRUE(resumed.finish());
    auto rest = resumed.lines();
    std::vector<std::int64_t> seqs;
    for (const auto& line : rest) {
        if (has_key(line, "seq")) {
            seqs.push_back(line.at("seq").as_int64());
        }
    }
    std::vector<std::int64_t> want;
    for (const auto& line : all.at("lines").as_array()) {
        if (line.at("seq").as_int64() > third) {
            want.push_back(line.at("seq").as_int64());
        }
    }
    EXPECT_EQ(seqs, want);
    ASSERT_FALSE(rest.empty());
    EXPECT_TRUE(has_key(rest.back(), "finished"));
}

TEST_F(JobsRest, FollowOverAWebSocketSendsEachLineAsAMessage) {
    pause("default", true);
    auto id = str(submit("lotus-0", "count", "").at("job").at("id"));
    auto client = net::WebSocketClient::connect(net::WebSocketConnect{
        .url = fmt::format("ws://{}/api/v1/jobs/{}/output?follow=1", server_.address(), id),
        .timeout = std::chrono::seconds{10}});
    ASSERT_TRUE(client) << client.error().message;
    pause("default", false);
    std::vector<std::string> printed;
    json::value last;
    // Bounded: five lines, maybe heartbeats, then the finished line and the server's close.
    for (int i = 0; i < 100; ++i) {
        auto message = (*client)->read(std::chrono::seconds{30});
        if (!message) {
            EXPECT_EQ((*client)->close_code(), 1000) << message.error().message;
            break;
        }
        std::error_code ec;
        last = json::parse(message->data, ec);
        ASSERT_FALSE(ec) << "one JSON object per message: " << message->data;
        if (has_key(last, "seq") && last.at("stream") == "stdout") {
            printed.push_back(str(last.at("text")));
        }
    }
    EXPECT_EQ(printed,
              (std::vector<std::string>{"line 1", "line 2", "line 3", "line 4", "line 5"}));
    ASSERT_TRUE(has_key(last, "finished")) << json::serialize(last);
    EXPECT_EQ(last.at("state"), "succeeded");
}

TEST_F(JobsRest, ACrossSiteWebSocketIsRefused) {
    auto id = say("lotus-0", "hi");
    // A page on another site opening a WebSocket to aviary (cross-site WebSocket hijacking).
    auto client = net::WebSocketClient::connect(net::WebSocketConnect{
        .url = fmt::format("ws://{}/api/v1/jobs/{}/output?follow=1", server_.address(), id),
        .headers = {{"Origin", "http://evil.example"}},
        .timeout = std::chrono::seconds{10}});
    ASSERT_FALSE(client);
    EXPECT_NE(client.error().message.find("403"), std::string::npos) << client.error().message;
    EXPECT_NE(client.error().message.find("evil.example"), std::string::npos)
        << client.error().message;
    // A plain GET of a WebSocket-only answer is not what this route is: it still pages.
    EXPECT_TRUE(output(id).is_object());
}

TEST_F(JobsRest, ArgvTemplatesNeverMeetAShell) {
    auto marker = fs::path{server_.data_dir()} / "INJECTED";
    for (auto msg :
         {fmt::format("x;touch {}", marker.string()), fmt::format("$(touch {})", marker.string()),
          fmt::format("`touch {}` && touch {}", marker.string(), marker.string())}) {
        auto id = say("lotus-0", msg);
        auto finished = wait_for_job(server_, id);
        ASSERT_EQ(finished.at("state"), "succeeded") << json::serialize(finished);
        bool echoed = false;
        auto out = output(id);
        for (const auto& line : out.at("lines").as_array()) {
            echoed = echoed || (line.at("stream") == "stdout" && str(line.at("text")) == msg);
        }
        EXPECT_TRUE(echoed) << "echo printed the argument verbatim: " << msg;
    }
    EXPECT_FALSE(fs::exists(marker));
    // In the node's name the same text names no node at all.
    auto in_path = http(server_, "POST", "/api/v1/nodes/lotus-0%3Btouch%20X/actions/say",
                        R"({"params": {"msg": "hi"}})");
    ASSERT_TRUE(in_path);
    EXPECT_EQ(in_path->status, 400) << in_path->body;
    EXPECT_NE(in_path->body.find("DNS-1123"), std::string::npos);
}

TEST_F(JobsRest, CancellingAQueuedJobEndsItAtOnce) {
    pause("default", true);
    auto id = say("lotus-0", "never");
    auto cancelled = http(server_, "POST", fmt::format("/api/v1/jobs/{}/cancel", id));
    ASSERT_TRUE(cancelled);
    ASSERT_EQ(cancelled->status, 200) << cancelled->body;
    EXPECT_EQ(json_of(cancelled).at("state"), "cancelled");
    EXPECT_EQ(json_of(cancelled).at("status"), "CANCELLED");
    auto again = http(server_, "POST", fmt::format("/api/v1/jobs/{}/cancel", id));
    EXPECT_EQ(again->status, 409) << again->body;
    EXPECT_NE(again->body.find("cancelled"), std::string::npos);
    pause("default", false);
    // Resumed, the queue runs a later job while the cancelled one stays cancelled.
    auto later = say("lotus-0", "later");
    EXPECT_EQ(wait_for_job(server_, later).at("state"), "succeeded");
    EXPECT_EQ(job_of(server_, id).at("state"), "cancelled");
    auto output_lines = output(id).at("lines").as_array();
    for (const auto& line : output_lines) {
        EXPECT_NE(line.at("text"), "never");
    }
}

TEST_F(JobsRest, RetryRunsAFinishedJobAgainWithTheSameParams) {
    auto id = say("lotus-1", "again");
    ASSERT_EQ(wait_for_job(server_, id).at("state"), "succeeded");
    auto retried = http(server_, "POST", fmt::format("/api/v1/jobs/{}/retry", id));
    ASSERT_TRUE(retried);
    ASSERT_EQ(retried->status, 201) << retried->body;
    auto body = json_of(retried);
    const auto& job = body.at("job");
    EXPECT_NE(str(job.at("id")), id);
    EXPECT_EQ(str(job.at("retry_of")), id);
    EXPECT_EQ(job.at("params").at("msg"), "again");
    EXPECT_EQ(wait_for_job(server_, str(job.at("id"))).at("state"), "succeeded");

    pause("default", true);
    auto queued = say("lotus-1", "still queued");
    auto refused = http(server_, "POST", fmt::format("/api/v1/jobs/{}/retry", queued));
    EXPECT_EQ(refused->status, 409) << refused->body;
}

TEST_F(JobsRest, APausedQueueKeepsItsJobsQueuedUntilResumed) {
    pause("default", true);
    auto queues = json_of(http(server_, "GET", "/api/v1/queues"));
    bool default_paused = false;
    for (const auto& queue : queues.at("queues").as_array()) {
        if (queue.at("name") == "default") {
            default_paused = queue.at("paused").as_bool();
        }
    }
    EXPECT_TRUE(default_paused) << json::serialize(queues);
    auto held = say("lotus-2", "held");
    // Another queue still runs: once its job has finished, the workers have had their chance.
    // (On another node: on lotus-2 it would wait behind the held job, exclusive jobs of a node
    // running in store order whatever their queue.)
    auto other = submit("lotus-1", "say-other", R"({"params": {"msg": "other"}})");
    auto other_done = wait_for_job(server_, str(other.at("job").at("id")));
    ASSERT_EQ(other_done.at("state"), "succeeded") << json::serialize(other_done);
    auto still = job_of(server_, held);
    EXPECT_EQ(still.at("state"), "queued");
    EXPECT_EQ(still.at("position"), 1);
    pause("default", false);
    EXPECT_EQ(wait_for_job(server_, held).at("state"), "succeeded");
    auto unknown = http(server_, "PUT", "/api/v1/queues/no-such-queue/pause");
    EXPECT_EQ(unknown->status, 404) << unknown->body;
}

TEST_F(JobsRest, TheSameJobTwiceWhileQueuedIsOneJob) {
    pause("default", true);
    auto first = submit("lotus-0", "say", R"({"params": {"msg": "once"}})");
    auto second = submit("lotus-0", "say", R"({"params": {"msg": "once"}})", 200);
    EXPECT_EQ(second.at("duplicate"), true);
    EXPECT_EQ(second.at("job").at("id"), first.at("job").at("id"));
    auto different = submit("lotus-0", "say", R"({"params": {"msg": "twice"}})");
    EXPECT_NE(different.at("job").at("id"), first.at("job").at("id"));
    auto elsewhere = submit("lotus-1", "say", R"({"params": {"msg": "once"}})");
    EXPECT_NE(elsewhere.at("job").at("id"), first.at("job").at("id"));
    auto queued = json_of(http(server_, "GET", "/api/v1/jobs?state=queued"));
    EXPECT_EQ(queued.at("jobs").as_array().size(), 3u);
}

TEST_F(JobsRest, WaitAnswersWithTheFinishedJob) {
    auto body = submit("lotus-0", "say", R"({"params": {"msg": "waited"}, "wait": true})", 200);
    EXPECT_EQ(body.at("job").at("state"), "succeeded");
    EXPECT_TRUE(body.at("job").at("finished_at").is_string());
    auto status = node_status(server_, "lotus-0");
    ASSERT_TRUE(status.is_object());
    EXPECT_EQ(status.at("running"), true);
    EXPECT_GT(status.at("height").as_int64(), 0);
}

TEST_F(JobsRest, OwnerTakesTheLeaseWithTheJob) {
    auto body = submit("lotus-2", "say",
                       R"({"params": {"msg": "mine"}, "owner": "anton", "lease_ttl": "1h",
                           "reason": "testing"})");
    ASSERT_TRUE(body.as_object().contains("lease")) << json::serialize(body);
    EXPECT_EQ(body.at("lease").at("owner"), "anton");
    EXPECT_EQ(body.at("job").at("owner"), "anton");
    auto node = json_of(http(server_, "GET", "/api/v1/nodes/lotus-2"));
    EXPECT_EQ(node.at("holder"), "anton");
    EXPECT_EQ(node.at("reason"), "testing");
    // Someone else's node: refused, naming the holder.
    auto refused =
        submit("lotus-2", "say", R"({"params": {"msg": "theirs"}, "owner": "bob"})", 409);
    EXPECT_NE(str(refused.at("error").at("message")).find("current owner is anton"),
              std::string::npos);
}

TEST_F(JobsRest, AMutatingActionOnANodeInMaintenanceIsRefusedAndNothingIsQueued) {
    auto into =
        http(server_, "PUT", "/api/v1/nodes/lotus-1/maintenance", R"({"reason": "disk swap"})");
    ASSERT_TRUE(into);
    ASSERT_EQ(into->status, 200) << into->body;

    auto refused = submit("lotus-1", "say", R"({"params": {"msg": "refused"}})", 503);
    ASSERT_TRUE(refused.is_object());
    auto message = str(refused.at("error").at("message"));
    EXPECT_NE(message.find("lotus-1 is in maintenance (disk swap)"), std::string::npos) << message;
    auto queued = json_of(http(server_, "GET", "/api/v1/jobs?node=lotus-1"));
    EXPECT_TRUE(queued.at("jobs").as_array().empty()) << queued;

    // Reading the node's status is not refused, and the server goes on serving.
    auto status = submit("lotus-1", "status", "{}");
    EXPECT_TRUE(status.is_object() && status.as_object().contains("job")) << status;
    EXPECT_FALSE(say("lotus-0", "elsewhere").empty());
}

TEST_F(JobsRest, TheCatalogListsEveryAction) {
    auto catalog = json_of(http(server_, "GET", "/api/v1/actions"));
    ASSERT_TRUE(catalog.is_object());
    std::map<std::string, json::value> by_name;
    for (const auto& action : catalog.at("actions").as_array()) {
        by_name[str(action.at("name"))] = action;
    }
    for (auto name : {"upgrade", "install-snapshot", "create-canary", "delete-canary", "status",
                      "say", "count"}) {
        EXPECT_TRUE(by_name.count(name)) << name;
    }
    const auto& upgrade = by_name["upgrade"];
    EXPECT_EQ(upgrade.at("queue"), "default");
    EXPECT_EQ(upgrade.at("params").at(0).at("name"), "tag");
    EXPECT_EQ(upgrade.at("params").at(0).at("type"), "image_tag");
    EXPECT_EQ(upgrade.at("params").at(0).at("required"), true);
    EXPECT_EQ(upgrade.at("steps").at(0).at("kind"), "driver");
    EXPECT_TRUE(upgrade.at("timeout").is_string());
    EXPECT_EQ(by_name["install-snapshot"].at("destructive"), true);
    EXPECT_EQ(by_name["status"].at("exclusive"), false);
}

TEST_F(JobsRest, BadInputIsRefusedNamingWhatIsWrong) {
    auto expect = [&](std::string method, std::string path, std::string body, int status,
                      std::string_view mentions) {
        auto response = http(server_, method, path, body);
        ASSERT_TRUE(response);
        EXPECT_EQ(response->status, status) << method << " " << path << " " << response->body;
        EXPECT_NE(response->body.find(mentions), std::string::npos)
            << path << " " << response->body;
        EXPECT_TRUE(json_of(response).at("error").is_object()) << response->body;
    };
    expect("POST", "/api/v1/nodes/lotus-0/actions/no-such-action", "", 404, "no-such-action");
    expect("POST", "/api/v1/nodes/lotus-9/actions/say", R"({"params": {"msg": "x"}})", 404,
           "lotus-9");
    expect("POST", "/api/v1/nodes/lotus-0/actions/upgrade", "", 400, "tag");
    expect("POST", "/api/v1/nodes/lotus-0/actions/upgrade", R"({"params": {"tag": "bad tag!"}})",
           400, "tag");
    expect("POST", "/api/v1/nodes/lotus-0/actions/say", R"({"params": {"msg": "x", "color": "y"}})",
           400, "color");
    expect("POST", "/api/v1/nodes/lotus-0/actions/say", R"({"params": {"msg": "x"}, "wiat": 1})",
           400, "wiat");
    expect("POST", "/api/v1/nodes/lotus-0/actions/say", R"({"params": ["x"]})", 400, "params");
    expect("POST", "/api/v1/nodes/lotus-0/actions/say", R"({"params": {"msg": "x"}, "wait": 1})",
           400, "wait");
    expect("GET", "/api/v1/jobs/01NOSUCHJOB0000000000000000", "", 404, "01NOSUCHJOB");
    expect("GET", "/api/v1/jobs/01NOSUCHJOB0000000000000000/output", "", 404, "01NOSUCHJOB");
    expect("POST", "/api/v1/jobs/01NOSUCHJOB0000000000000000/cancel", "", 404, "01NOSUCHJOB");
    expect("GET", "/api/v1/jobs?state=bogus", "", 400, "state");
    expect("GET", "/api/v1/jobs?limit=0", "", 400, "limit");
    expect("GET", "/api/v1/jobs?colour=red", "", 400, "colour");
    auto id = say("lotus-0", "x");
    expect("GET", fmt::format("/api/v1/jobs/{}/output?from=abc", id), "", 400, "from");
    expect("GET", fmt::format("/api/v1/jobs/{}/output?limit=10001", id), "", 400, "limit");
    expect("GET", fmt::format("/api/v1/jobs/{}/output?follow=1&before=3", id), "", 400, "before");
    expect("DELETE", fmt::format("/api/v1/jobs/{}", id), "", 405, "GET");
    expect("GET", "/api/v1/nodes/lotus-0/actions/say", "", 405, "POST");
}

// Shutdown with requests held open on jobs: a follow stream ends, a Wait is answered that the
// server is stopping (the job goes on at the next start), and serve exits cleanly.
TEST(JobsShutdown, HeldFollowAndWaitEndWhenServeStops) {
    ServerProcess server{jobs_test_config()};
    ASSERT_TRUE(server.start()) << server.log();
    ASSERT_EQ(http(server, "PUT", "/api/v1/queues/default/pause")->status, 200);
    auto submitted = json_of(http(server, "POST", "/api/v1/nodes/lotus-0/actions/count"));
    auto id = str(submitted.at("job").at("id"));
    Follower follower{server, fmt::format("/api/v1/jobs/{}/output?follow=1", id)};
    auto waiting = std::async(std::launch::async, [&server] {
        return call_waiting(server, "TweetyService.Upgrade",
                            R"({"ReleaseName": "lotus-1", "ImageTag": "v9", "Wait": true})");
    });
    ASSERT_TRUE(wait_until([&] {
        return follower.saw([](const json::value& l) { return has_key(l, "heartbeat"); });
    }));
    ASSERT_TRUE(wait_until([&] {
        auto queued = json_of(http(server, "GET", "/api/v1/jobs?node=lotus-1&state=queued"));
        return queued.is_object() && !queued.at("jobs").as_array().empty();
    }));
    EXPECT_EQ(server.stop(), 0) << server.log();
    EXPECT_TRUE(follower.finish(std::chrono::seconds{5}));
    auto reply = waiting.get();
    ASSERT_TRUE(reply.contains("error")) << json::serialize(reply);
    EXPECT_EQ(reply.at("error").at("code"), -32005);
    EXPECT_NE(str(reply.at("error").at("message")).find("shutting down"), std::string::npos);
}

// Tokens and permission rules: deny wins and names the rule, an allowed user runs, a user
// without any allow rule is refused once rules exist, an admin needs no allow rule, and every
// refusal is in the audit trail.
class JobsPermissions : public ::testing::Test {
protected:
    void SetUp() override {
        setenv("AVIARY_TEST_ALICE", "alice-secret", 1);
        setenv("AVIARY_TEST_CI", "ci-secret", 1);
        setenv("AVIARY_TEST_BOB", "bob-secret", 1);
        ASSERT_TRUE(server_.start()) << server_.log();
    }
    core::Result<net::ClientResponse> run(std::string_view token,
                                          std::string_view node,
                                          std::string_view action,
                                          std::string body) {
        return http(server_, "POST", fmt::format("/api/v1/nodes/{}/actions/{}", node, action),
                    std::move(body), {{"Authorization", fmt::format("Bearer {}", token)}});
    }

    ServerProcess server_{jobs_test_config("",
                                           R"(auth:
  tokens:
    - {identity: alice, role: admin, env: AVIARY_TEST_ALICE}
    - {identity: ci, role: user, env: AVIARY_TEST_CI, groups: [ci]}
    - {identity: bob, role: user, env: AVIARY_TEST_BOB}
)",
                                           R"(  permissions:
    - {name: no-ci-upgrades, effect: deny, who: ["group:ci"], actions: [upgrade]}
    - {name: ci-may-say, effect: allow, who: ["group:ci"], actions: [say, upgrade]}
)")};
};

TEST_F(JobsPermissions, DenyWinsAndNamesTheRule) {
    auto refused = run("ci-secret", "lotus-0", "upgrade", R"({"params": {"tag": "v2"}})");
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 403) << refused->body;
    EXPECT_EQ(json_of(refused).at("error").at("code"), "permission_denied");
    EXPECT_NE(refused->body.find("no-ci-upgrades"), std::string::npos) << refused->body;
    auto events = json_of(http(server_, "GET", "/api/v1/events?node=lotus-0", "",
                               {{"Authorization", "Bearer alice-secret"}}));
    bool recorded = false;
    for (const auto& event : events.at("events").as_array()) {
        if (event.at("kind") == "job.refused") {
            recorded = true;
            EXPECT_EQ(event.at("actor"), "ci");
            EXPECT_NE(json::serialize(event).find("no-ci-upgrades"), std::string::npos)
                << json::serialize(event);
        }
    }
    EXPECT_TRUE(recorded) << json::serialize(events);
    auto rpc = http(server_, "POST", "/",
                    rpc_body("TweetyService.Upgrade",
                             R"({"ReleaseName": "lotus-0", "ImageTag": "v2", "Owner": "ci"})"),
                    {{"Authorization", "Bearer ci-secret"}});
    EXPECT_EQ(json_of(rpc).at("error").at("code"), -32007) << rpc->body;
    EXPECT_NE(rpc->body.find("no-ci-upgrades"), std::string::npos);
}

TEST_F(JobsPermissions, AnAllowedUserRuns) {
    auto allowed = run("ci-secret", "lotus-0", "say", R"({"params": {"msg": "from ci"}})");
    ASSERT_TRUE(allowed);
    ASSERT_EQ(allowed->status, 202) << allowed->body;
    auto body = json_of(allowed);
    const auto& job = body.at("job");
    EXPECT_EQ(job.at("requester"), "ci");
    std::string id = str(job.at("id"));
    wait_until([&] {
        auto got = http(server_, "GET", fmt::format("/api/v1/jobs/{}", id), "",
                        {{"Authorization", "Bearer ci-secret"}});
        return got && json_of(got).at("state") == "succeeded";
    });
    auto got = http(server_, "GET", fmt::format("/api/v1/jobs/{}", id), "",
                    {{"Authorization", "Bearer ci-secret"}});
    EXPECT_EQ(json_of(got).at("state"), "succeeded") << got->body;
}

TEST_F(JobsPermissions, AUserWithoutAnAllowRuleIsRefusedAndAnAdminIsNot) {
    auto refused = run("bob-secret", "lotus-1", "say", R"({"params": {"msg": "from bob"}})");
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 403) << refused->body;
    auto admin = run("alice-secret", "lotus-1", "upgrade", R"({"params": {"tag": "v2"}})");
    ASSERT_TRUE(admin);
    EXPECT_EQ(admin->status, 202) << admin->body;
    auto anonymous =
        http(server_, "POST", "/api/v1/nodes/lotus-1/actions/say", R"({"params": {"msg": "x"}})");
    EXPECT_EQ(anonymous->status, 401);
}

}  // namespace
}  // namespace aviary::test
