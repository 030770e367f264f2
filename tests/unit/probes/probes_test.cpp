// The probes' assertions, captures and templates, and run_scenario() against a real HTTP server
// on loopback that this test serves (a target that answers, floods, hangs, speaks JSON-RPC and
// WebSocket), a real TCP listener and real commands.
#include "probes/probes.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "net/net.hpp"

namespace aviary::probes {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

// --- parsing ------------------------------------------------------------------------------------

Assertion assertion(std::string_view text) {
    auto parsed = parse_assertion(text);
    EXPECT_TRUE(parsed) << text << ": " << parsed.error().message;
    return parsed ? *parsed : Assertion{};
}

std::string refusal(std::string_view text) {
    auto parsed = parse_assertion(text);
    EXPECT_FALSE(parsed) << text << " was accepted";
    return parsed ? std::string{} : parsed.error().message;
}

TEST(Assertions, ReadSubjectOperatorAndValue) {
    auto a = assertion("status == 200");
    EXPECT_EQ(a.subject, Subject::kStatus);
    EXPECT_EQ(a.op, Op::kEq);
    EXPECT_EQ(a.value, "200");

    a = assertion("json.result.height >= 10");
    EXPECT_EQ(a.subject, Subject::kJson);
    EXPECT_EQ(a.name, "result.height");
    EXPECT_EQ(a.op, Op::kGe);

    a = assertion("len(json.jobs) > 0");
    EXPECT_TRUE(a.length);
    EXPECT_EQ(a.op, Op::kGt);

    a = assertion("has(json.id)");
    EXPECT_EQ(a.op, Op::kHas);
    EXPECT_EQ(a.name, "id");

    a = assertion("header.Content-Type matches ^application/json");
    EXPECT_EQ(a.subject, Subject::kHeader);
    EXPECT_EQ(a.name, "Content-Type");
    EXPECT_EQ(a.op, Op::kMatches);

    a = assertion("json.state any succeeded, failed");
    EXPECT_EQ(a.values, (std::vector<std::string>{"succeeded", "failed"}));

    a = assertion("body contains hello λ!");
    EXPECT_EQ(a.op, Op::kContains);
    EXPECT_EQ(a.value, "hello λ!");

    a = assertion("json.lines[*].text == {{text}}");
    EXPECT_EQ(a.name, "lines[*].text");
    a = assertion("duration < 2s");
    EXPECT_EQ(a.subject, Subject::kDuration);
    // A word operator inside a path is part of the path.
    a = assertion("json.contains == 1");
    EXPECT_EQ(a.name, "contains");
}

TEST(Assertions, RefuseWhatCannotBeChecked) {
    EXPECT_NE(refusal("").find("empty assertion"), std::string::npos);
    EXPECT_NE(refusal("jsn.x == 1").find("\"jsn.x\" is not something a step answers"),
              std::string::npos);
    EXPECT_NE(refusal("status === 200").find("\"===\" is not an operator"), std::string::npos);
    EXPECT_NE(refusal("status 200").find("expected SUBJECT OPERATOR VALUE"), std::string::npos);
    EXPECT_NE(refusal("status < fast").find("compare numbers"), std::string::npos);
    EXPECT_NE(refusal("duration < 5").find("duration like 500ms"), std::string::npos);
    EXPECT_NE(refusal("body matches (unclosed").find("missing )"), std::string::npos);
    EXPECT_NE(refusal("json.a[x] == 1").find("array index"), std::string::npos);
    EXPECT_NE(refusal("json.a[*].b[*] == 1").find("at most one [*]"), std::string::npos);
    EXPECT_NE(refusal("len(json.a) contains 1").find("a length compares"), std::string::npos);
    EXPECT_NE(refusal("has(json.a").find("not closed"), std::string::npos);
    EXPECT_NE(refusal("json.a == {{bad name}}").find("not a variable name"), std::string::npos);
}

TEST(Captures, NeedAGroupWhenTheyUseARegex) {
    auto c = parse_capture("job", "json.job.id");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->subject, Subject::kJson);
    EXPECT_EQ(c->name, "job.id");
    EXPECT_TRUE(parse_capture("n", "body ~ id=([0-9]+)"));
    auto no_group = parse_capture("n", "body ~ id=[0-9]+");
    ASSERT_FALSE(no_group);
    EXPECT_NE(no_group.error().message.find("needs a group"), std::string::npos);
}

TEST(Templates, FillKnownVariablesAndNameTheUnknown) {
    std::map<std::string, std::string, std::less<>> vars{{"server", "http://h:1"}, {"job", "7"}};
    auto filled = render("{{server}}/jobs/{{ job }}", vars);
    ASSERT_TRUE(filled);
    EXPECT_EQ(*filled, "http://h:1/jobs/7");
    auto unknown = render("{{nope}}", vars);
    ASSERT_FALSE(unknown);
    EXPECT_NE(unknown.error().message.find("no variable \"nope\""), std::string::npos);
    EXPECT_FALSE(parse_template("{{open"));
    EXPECT_TRUE(parse_template("no placeholders at all"));
}

// --- running ------------------------------------------------------------------------------------

/// What the test server answers, by path.
struct Target {
    std::atomic<int> polls{0};

    asio::awaitable<net::Response> operator()(net::Request request) {
        net::Response r;
        if (request.path == "/jobs" && request.method == "POST") {
            r.status = 202;
            r.content_type = "application/json";
            r.body = R"({"job": {"id": "j-1", "state": "queued"}})";
        } else if (request.path == "/jobs/j-1") {
            int n = ++polls;
            r.content_type = "application/json";
            r.body = n < 3 ? R"({"id": "j-1", "state": "running"})"
                           : R"({"id": "j-1", "state": "succeeded", "n": 3})";
        } else if (request.path == "/output") {
            r.content_type = "application/json";
            r.body = R"({"lines": [{"text": "started"}, {"text": "hello λ!"}]})";
        } else if (request.path == "/rpc") {
            auto body = json::parse(request.body);
            r.content_type = "application/json";
            const auto& method = body.at("method").as_string();
            if (method == "eth_blockNumber") {
                r.body = R"({"jsonrpc": "2.0", "id": 1, "result": "0x2a"})";
            } else {
                r.body =
                    R"({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "no such method"}})";
            }
        } else if (request.path == "/unavailable") {
            r.status = 503;
            r.body = "down for maintenance";
        } else if (request.path == "/flood") {
            r.body = std::string(std::size_t{2} * 1024 * 1024, 'x');
        } else if (request.path == "/hang") {
            asio::steady_timer wait{co_await asio::this_coro::executor, std::chrono::seconds{5}};
            co_await wait.async_wait(asio::use_awaitable);
        } else if (request.path == "/ws") {
            r.websocket = [](net::WebSocket& ws) -> asio::awaitable<void> {
                auto got = co_await ws.read();
                if (got) {
                    ws.send_text("echo: " + got->data);
                }
            };
        } else {
            r.status = 404;
            r.body = "not found";
        }
        co_return r;
    }
};

class Runs : public ::testing::Test {
protected:
    void SetUp() override {
        net::ServerSettings settings;
        settings.listen = "127.0.0.1:0";
        settings.io_threads = 1;
        settings.shutdown_grace = core::Millis{50};  // the hanging handler is not waited for
        server_ = std::make_unique<net::HttpServer>(
            settings, [this](net::Request r) { return target_(std::move(r)); });
        auto bound = server_->start();
        ASSERT_TRUE(bound) << bound.error().message;
        base_ = "http://" + *bound;
        ws_base_ = "ws://" + *bound;
    }
    void TearDown() override { server_->stop(); }

    RunResult run(const Scenario& scenario, std::size_t max_body = 1024 * 1024) {
        asio::io_context io;
        net::HttpClient http{io.get_executor(), net::ClientSettings{}};
        net::BlockingPool blocking{1};
        RunContext context;
        context.http = &http;
        context.blocking = &blocking;
        context.vars["server"] = base_;
        context.max_body_bytes = max_body;
        context.on_step = [this](const StepResult& s) { shown_.push_back(s.name); };
        RunResult result;
        asio::co_spawn(io, run_scenario(scenario, std::move(context)),
                       [&](std::exception_ptr, RunResult r) { result = std::move(r); });
        io.run();
        blocking.stop();
        return result;
    }

    static Step http(std::string name, std::string url, std::vector<std::string> asserts = {}) {
        Step s;
        s.name = std::move(name);
        s.kind = StepKind::kHttp;
        s.url = std::move(url);
        for (const auto& a : asserts) {
            s.assertions.push_back(*parse_assertion(a));
        }
        return s;
    }

    Target target_;
    std::unique_ptr<net::HttpServer> server_;
    std::string base_;
    std::string ws_base_;
    std::vector<std::string> shown_;
};

TEST_F(Runs, ASubmitCapturedAndPolledUntilItSucceeds) {
    Scenario s;
    s.name = "submit";
    auto submit = http("submit", "{{server}}/jobs", {"status == 202", "json.job.state == queued"});
    submit.method = "POST";
    submit.captures.push_back(*parse_capture("job", "json.job.id"));
    Step poll;
    poll.name = "wait";
    poll.kind = StepKind::kPoll;
    poll.interval = core::Millis{10};
    poll.deadline = core::Millis{5000};
    poll.steps.push_back(http("read", "{{server}}/jobs/{{job}}", {"json.state == succeeded"}));
    s.steps = {submit, poll};
    auto result = run(s);
    EXPECT_EQ(result.outcome, Outcome::kPassed) << result.message;
    ASSERT_EQ(result.steps.size(), 3U);
    EXPECT_EQ(result.steps[1].message, "passed on try 3");
    EXPECT_EQ(result.steps[2].depth, 1);
    EXPECT_EQ(target_.polls.load(), 3);
    // The callback heard the scenario's own steps as they ended, not every try inside the poll.
    EXPECT_EQ(shown_, (std::vector<std::string>{"submit", "wait"}));
}

TEST_F(Runs, AWrongAnswerIsACorrectnessFailureThatSaysWhatItSaw) {
    Scenario s;
    s.name = "get";
    auto get = http("get output", "{{server}}/output");
    auto a = *parse_assertion("json.lines[*].text == hello world");
    a.message = "output mismatch";
    get.assertions.push_back(a);
    s.steps = {get, http("never", "{{server}}/output")};
    auto result = run(s);
    EXPECT_EQ(result.outcome, Outcome::kFailed);
    EXPECT_EQ(result.failed_step, "get output");
    EXPECT_EQ(result.message,
              "step \"get output\": output mismatch: expected \"hello world\" but got "
              "[\"started\",\"hello λ!\"]");
    EXPECT_EQ(result.steps.size(), 1U) << "the step after a failure must not run";
}

TEST_F(Runs, AStarPathPassesWhenOneValueHolds) {
    Scenario s;
    s.name = "star";
    s.steps = {http("get", "{{server}}/output",
                    {"json.lines[*].text == hello λ!", "len(json.lines[*].text) == 2",
                     "has(json.lines[*].text)", "json.lines[*].text contains λ"})};
    auto result = run(s);
    EXPECT_EQ(result.outcome, Outcome::kPassed) << result.message;
}

TEST_F(Runs, UnreachableOrUnavailableIsBroken) {
    Scenario refused;
    refused.name = "refused";
    refused.steps = {http("nothing listens", "http://127.0.0.1:1/x")};
    auto result = run(refused);
    EXPECT_EQ(result.outcome, Outcome::kBroken);
    EXPECT_NE(result.message.find("Connection refused"), std::string::npos) << result.message;

    Scenario down;
    down.name = "down";
    down.steps = {http("503", "{{server}}/unavailable")};
    result = run(down);
    EXPECT_EQ(result.outcome, Outcome::kBroken);
    EXPECT_NE(result.message.find("HTTP 503: \"down for maintenance\""), std::string::npos)
        << result.message;

    Scenario missing;
    missing.name = "missing";
    missing.steps = {http("404", "{{server}}/nope")};
    result = run(missing);
    EXPECT_EQ(result.outcome, Outcome::kFailed) << "a 4xx is the target answering wrongly";
}

TEST_F(Runs, AHangingTargetIsEndedAtTheTimeoutAndCleanupStillRuns) {
    Scenario s;
    s.name = "hang";
    s.timeout = core::Millis{300};
    s.steps = {http("hang", "{{server}}/hang")};
    s.cleanup = {http("tidy", "{{server}}/output", {"status == 200"})};
    auto result = run(s);
    EXPECT_EQ(result.outcome, Outcome::kBroken);
    EXPECT_LT(result.duration.count(), 10'000);
    ASSERT_EQ(result.steps.size(), 2U);
    EXPECT_TRUE(result.steps[1].cleanup);
    EXPECT_EQ(result.steps[1].outcome, Outcome::kPassed);
}

TEST_F(Runs, AFloodIsCutAtTheSizeCap) {
    Scenario s;
    s.name = "flood";
    s.steps = {http("flood", "{{server}}/flood")};
    auto result = run(s, 64 * 1024);
    EXPECT_NE(result.outcome, Outcome::kPassed);
    EXPECT_FALSE(result.message.empty());
}

TEST_F(Runs, JsonRpcResultsAndErrors) {
    Scenario s;
    s.name = "rpc";
    Step call;
    call.name = "block";
    call.kind = StepKind::kJsonRpc;
    call.url = "{{server}}/rpc";
    call.rpc_method = "eth_blockNumber";
    call.assertions.push_back(*parse_assertion("json.result == 0x2a"));
    s.steps = {call};
    EXPECT_EQ(run(s).outcome, Outcome::kPassed);

    s.steps[0].rpc_method = "eth_nothing";
    s.steps[0].assertions.clear();
    auto result = run(s);
    EXPECT_EQ(result.outcome, Outcome::kFailed);
    EXPECT_NE(result.message.find("JSON-RPC error: {\"code\":-32601"), std::string::npos)
        << result.message;

    s.steps[0].rpc_params = "[{{nope}}]";
    result = run(s);
    EXPECT_NE(result.message.find("no variable \"nope\""), std::string::npos) << result.message;
}

TEST_F(Runs, WebSocketTcpAndCommandSteps) {
    Scenario s;
    s.name = "mixed";
    Step ws;
    ws.kind = StepKind::kWebSocket;
    ws.url = ws_base_ + "/ws";
    ws.body = "ping {{who}}";
    ws.assertions.push_back(*parse_assertion("body == echo: ping canary"));
    Step tcp;
    tcp.kind = StepKind::kTcp;
    tcp.address = base_.substr(7);
    Step cmd;
    cmd.kind = StepKind::kCommand;
    cmd.argv = {"sh", "-c", "echo out-{{who}}; echo err >&2; exit 3"};
    cmd.assertions.push_back(*parse_assertion("exit_code == 3"));
    cmd.assertions.push_back(*parse_assertion("body == out-canary"));
    cmd.assertions.push_back(*parse_assertion("stderr == err"));
    s.vars = {{"who", "canary"}};
    s.steps = {ws, tcp, cmd};
    auto result = run(s);
    EXPECT_EQ(result.outcome, Outcome::kPassed) << result.message;

    Step closed;
    closed.kind = StepKind::kTcp;
    closed.address = "127.0.0.1:1";
    s.steps = {closed};
    EXPECT_EQ(run(s).outcome, Outcome::kBroken);

    Step failing;
    failing.kind = StepKind::kCommand;
    failing.argv = {"false"};
    s.steps = {failing};
    auto failed = run(s);
    EXPECT_EQ(failed.outcome, Outcome::kFailed);
    EXPECT_NE(failed.message.find("exited with 1"), std::string::npos) << failed.message;
}

TEST_F(Runs, ParallelBranchesEachGetTheirNumber) {
    Scenario s;
    s.name = "parallel";
    Step branch;
    branch.kind = StepKind::kCommand;
    branch.argv = {"echo", "{{branch}}"};
    branch.captures.push_back(*parse_capture("seen", "body"));
    branch.assertions.push_back(*parse_assertion("body any 1, 2, 3"));
    Step parallel;
    parallel.kind = StepKind::kParallel;
    parallel.count = 3;
    parallel.steps = {branch};
    s.steps = {parallel};
    auto result = run(s);
    EXPECT_EQ(result.outcome, Outcome::kPassed) << result.message;
    ASSERT_EQ(result.steps.size(), 4U);
    EXPECT_EQ(result.steps[1].name, "[1] echo");
    EXPECT_EQ(result.steps[3].name, "[3] echo");

    // One branch failing fails the step, and says which.
    s.steps[0].steps[0].assertions = {*parse_assertion("body == 2")};
    result = run(s);
    EXPECT_EQ(result.outcome, Outcome::kFailed);
    EXPECT_NE(result.message.find("2 of 3 branches did not pass"), std::string::npos)
        << result.message;
}

TEST_F(Runs, APollThatNeverPassesSaysHowLongItTried) {
    Scenario s;
    s.name = "never";
    Step poll;
    poll.kind = StepKind::kPoll;
    poll.interval = core::Millis{20};
    poll.deadline = core::Millis{150};
    poll.steps = {http("read", "{{server}}/output", {"json.lines[0].text == finished"})};
    s.steps = {poll};
    auto result = run(s);
    EXPECT_EQ(result.outcome, Outcome::kFailed);
    EXPECT_NE(result.message.find("not passed after"), std::string::npos) << result.message;
    EXPECT_NE(result.message.find("expected \"finished\" but got \"started\""), std::string::npos)
        << result.message;
}

}  // namespace
}  // namespace aviary::probes
