// Canary scenarios on their schedule inside the real serve (docs/probes.md): runs stored and
// served over REST and the CLI, availability and metrics, a run on demand, bad requests, the
// schedule kept across a restart, and on PostgreSQL two instances that share each scenario's
// runs without ever both running the same one.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli_support.hpp"
#include "rpc_helpers.hpp"
#include "support/postgres_server.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr std::string_view kScenarios = R"(probes:
  scenarios:
    healthy:
      interval: 1s
      timeout: 5s
      steps:
        - name: healthz
          http: {url: "{{server}}/healthz"}
          assert: ["status == 200", "body contains ok"]
    wrong:
      interval: 1s
      timeout: 5s
      steps:
        - name: healthz
          http: {url: "{{server}}/healthz"}
          assert: [{that: "body == nope", message: "unexpected health"}]
    down:
      interval: 1s
      timeout: 2s
      steps:
        - tcp: "127.0.0.1:1"
    manual:
      enabled: false
      steps:
        - http: {url: "{{server}}/healthz"}
)";

json::value probes_of(ServerProcess& server) {
    return json_of(http(server, "GET", "/api/v1/probes"));
}

const json::value* find_probe(const json::value& list, std::string_view name) {
    if (!list.is_object()) {
        return nullptr;
    }
    for (const auto& p : list.at("probes").as_array()) {
        if (p.at("name").as_string() == name) {
            return &p;
        }
    }
    return nullptr;
}

/// Waits until `name` has at least `runs` runs in its 1h window.
bool has_runs(ServerProcess& server, std::string_view name, std::int64_t runs) {
    return wait_until(
        [&] {
            auto list = probes_of(server);
            const auto* p = find_probe(list, name);
            return p != nullptr && p->at("windows").at("1h").at("runs").as_int64() >= runs;
        },
        20s);
}

class ProbesServe : public ::testing::Test {
protected:
    TempDir scratch_;
};

TEST_F(ProbesServe, ScenariosRunOnTheirScheduleAndReportWhatTheyFound) {
    ServerProcess server{test_config() + std::string{kScenarios}};
    ASSERT_TRUE(server.start()) << server.log();
    ASSERT_TRUE(has_runs(server, "healthy", 2)) << server.log();
    ASSERT_TRUE(has_runs(server, "wrong", 2)) << server.log();
    ASSERT_TRUE(has_runs(server, "down", 2)) << server.log();

    auto list = probes_of(server);
    const auto& healthy = *find_probe(list, "healthy");
    EXPECT_EQ(healthy.at("last").at("outcome"), "passed") << healthy;
    EXPECT_EQ(healthy.at("windows").at("1h").at("availability").as_double(), 1.0);
    EXPECT_TRUE(healthy.at("next_run_at").is_string());
    const auto& wrong = *find_probe(list, "wrong");
    EXPECT_EQ(wrong.at("last").at("outcome"), "failed") << wrong;
    EXPECT_EQ(wrong.at("last").at("message"),
              "step \"healthz\": unexpected health: expected \"nope\" but got \"ok \"");
    // A wrong answer is a correctness failure: the API was available.
    EXPECT_EQ(wrong.at("windows").at("1h").at("availability").as_double(), 1.0);
    EXPECT_EQ(wrong.at("windows").at("1h").at("correctness").as_double(), 0.0);
    const auto& down = *find_probe(list, "down");
    EXPECT_EQ(down.at("last").at("outcome"), "broken") << down;
    EXPECT_EQ(down.at("windows").at("1h").at("availability").as_double(), 0.0);
    const auto& manual = *find_probe(list, "manual");
    EXPECT_TRUE(manual.at("last").is_null()) << "a scenario that is off never runs by itself";
    EXPECT_TRUE(manual.at("next_run_at").is_null());

    // Its runs, newest first, each with its steps.
    auto runs = json_of(http(server, "GET", "/api/v1/probes/wrong/runs?limit=1"));
    ASSERT_EQ(runs.at("runs").as_array().size(), 1U) << runs;
    const auto& run = runs.at("runs").at(0);
    EXPECT_EQ(run.at("steps").at(0).at("name"), "healthz");
    EXPECT_EQ(run.at("steps").at(0).at("outcome"), "failed");
    ASSERT_TRUE(runs.at("next_before").is_int64());
    auto older = json_of(http(
        server, "GET",
        fmt::format("/api/v1/probes/wrong/runs?before={}", runs.at("next_before").as_int64())));
    ASSERT_FALSE(older.at("runs").as_array().empty());
    EXPECT_LT(older.at("runs").at(0).at("id").as_int64(), run.at("id").as_int64());

    // On demand, an off scenario too.
    auto now = http(server, "POST", "/api/v1/probes/manual/run");
    ASSERT_TRUE(now);
    EXPECT_EQ(now->status, 200) << now->body;
    EXPECT_EQ(json::parse(now->body).at("outcome"), "passed") << now->body;
    auto manual_runs = json_of(http(server, "GET", "/api/v1/probes/manual/runs"));
    EXPECT_EQ(manual_runs.at("runs").as_array().size(), 1U) << manual_runs;

    // Metrics.
    auto metrics = http(server, "GET", "/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_NE(metrics->body.find("aviary_probe_success{probe=\"healthy\"} 1"), std::string::npos);
    EXPECT_NE(metrics->body.find("aviary_probe_success{probe=\"wrong\"} 0"), std::string::npos);
    EXPECT_NE(metrics->body.find("aviary_probe_runs_total{probe=\"down\",outcome=\"broken\"}"),
              std::string::npos);
    EXPECT_NE(metrics->body.find("aviary_probe_duration_seconds_count{probe=\"healthy\"}"),
              std::string::npos);

    // The CLI shows the same.
    auto table = run_aviary(server.url(""), "probes", scratch_.path());
    EXPECT_EQ(table.status, 0) << table.err;
    EXPECT_NE(table.out.find("healthy"), std::string::npos) << table.out;
    EXPECT_NE(table.out.find("100.00%"), std::string::npos) << table.out;
    EXPECT_NE(table.out.find("unexpected health"), std::string::npos) << table.out;
    auto listed = run_aviary(server.url(""), "probe runs wrong --limit 2", scratch_.path());
    EXPECT_EQ(listed.status, 0) << listed.err;
    EXPECT_NE(listed.out.find("failed"), std::string::npos) << listed.out;

    // Bad requests name what is wrong; the server stays up.
    auto unknown = http(server, "GET", "/api/v1/probes/nosuch/runs");
    ASSERT_TRUE(unknown);
    EXPECT_EQ(unknown->status, 404);
    EXPECT_NE(unknown->body.find("no scenario \\\"nosuch\\\""), std::string::npos) << unknown->body;
    auto bad_limit = http(server, "GET", "/api/v1/probes/wrong/runs?limit=0");
    ASSERT_TRUE(bad_limit);
    EXPECT_EQ(bad_limit->status, 400) << bad_limit->body;
    EXPECT_NE(bad_limit->body.find("limit"), std::string::npos) << bad_limit->body;
    auto bad_key = http(server, "GET", "/api/v1/probes?colour=blue");
    ASSERT_TRUE(bad_key);
    EXPECT_EQ(bad_key->status, 400) << bad_key->body;
    auto bad_name = run_aviary(server.url(""), "probe runs ../x", scratch_.path());
    EXPECT_EQ(bad_name.status, 2) << bad_name.out;
    EXPECT_TRUE(server.get("/healthz"));
}

TEST_F(ProbesServe, TheScheduleAndTheRunsOutliveARestart) {
    ServerProcess first{test_config() + std::string{kScenarios}, scratch_.path()};
    ASSERT_TRUE(first.start()) << first.log();
    ASSERT_TRUE(has_runs(first, "healthy", 1)) << first.log();
    auto before = find_probe(probes_of(first), "healthy")->at("windows").at("1h").at("runs");
    EXPECT_EQ(first.stop(), 0);

    ServerProcess second{test_config() + std::string{kScenarios}, scratch_.path()};
    ASSERT_TRUE(second.start()) << second.log();
    ASSERT_TRUE(has_runs(second, "healthy", before.as_int64() + 2)) << second.log();
}

TEST_F(ProbesServe, RunsOnDemandHoldNoThreadWhileTheyRun) {
    // One blocking thread: were a run on demand to wait on it, nothing else needing it (every
    // store read) would be served until the runs ended. The scenario waits for a file.
    const std::string gate = scratch_.path() + "/go";
    ServerProcess server{fmt::format(R"(server:
  blocking_threads: 1
fleet:
  nodes: []
probes:
  scenarios:
    gated:
      enabled: false
      timeout: 30s
      steps:
        - command: [sh, -c, "while [ ! -e {} ]; do sleep 0.05; done; echo opened"]
          assert: ["body == opened"]
)",
                                     gate)};
    ASSERT_TRUE(server.start()) << server.log();
    std::vector<std::thread> callers;
    std::vector<core::Result<net::ClientResponse>> answers(
        3, core::Error{core::ErrorCode::kInternal, "not run"});
    for (int i = 0; i < 3; ++i) {
        callers.emplace_back([&, i] {
            answers[static_cast<std::size_t>(i)] = http(server, "POST", "/api/v1/probes/gated/run");
        });
    }
    // The runs are under way (the store has none of them yet) and reads are still served.
    bool served = wait_until([&] {
        auto list = http(server, "GET", "/api/v1/probes", {}, {}, 2s);
        return list && list->status == 200;
    });
    EXPECT_TRUE(served) << "a store read waited for the runs on demand";
    auto before = json_of(http(server, "GET", "/api/v1/probes/gated/runs"));
    EXPECT_TRUE(before.at("runs").as_array().empty()) << before;
    std::ofstream{gate} << "";
    for (auto& caller : callers) {
        caller.join();
    }
    for (const auto& answer : answers) {
        ASSERT_TRUE(answer) << answer.error().message;
        EXPECT_EQ(answer->status, 200) << answer->body;
        EXPECT_NE(answer->body.find("\"outcome\":\"passed\""), std::string::npos) << answer->body;
    }
    auto after = json_of(http(server, "GET", "/api/v1/probes/gated/runs"));
    EXPECT_EQ(after.at("runs").as_array().size(), 3U) << after;
}

TEST_F(ProbesServe, ARunOnDemandAtShutdownIsToldSoAndServeExitsCleanly) {
    const std::string started = scratch_.path() + "/started";
    ServerProcess server{test_config() + fmt::format(R"(probes:
  scenarios:
    endless:
      enabled: false
      timeout: 1m
      steps:
        - command: [sh, -c, "touch {}; while true; do sleep 0.05; done"]
)",
                                                     started)};
    ASSERT_TRUE(server.start()) << server.log();
    core::Result<net::ClientResponse> answer = core::Error{core::ErrorCode::kInternal, "not run"};
    std::thread caller{[&] { answer = http(server, "POST", "/api/v1/probes/endless/run"); }};
    ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(started); })) << server.log();
    EXPECT_EQ(server.stop(), 0) << server.log();
    caller.join();
    ASSERT_TRUE(answer) << answer.error().message;
    EXPECT_EQ(answer->status, 503) << answer->body;
    EXPECT_NE(answer->body.find("serve is stopping: the run was not finished"), std::string::npos)
        << answer->body;
}

TEST_F(ProbesServe, TheTokenReachesTheScenariosAndNeverTheStoredRuns) {
    const std::string secret = "canary-s3cret-7f2c";
    const std::string token_file = scratch_.path() + "/canary.token";
    std::ofstream{token_file} << secret << "\n";
    ServerProcess server{test_config() + fmt::format(R"(auth:
  tokens:
    - {{identity: canary, role: user, file: {0}}}
probes:
  token_file: {0}
  scenarios:
    authed:
      enabled: false
      steps:
        - http: {{url: "{{{{server}}}}/api/v1/jobs", headers: {{Authorization: "Bearer {{{{token}}}}"}}}}
          assert: ["status == 200"]
    anonymous:
      enabled: false
      steps:
        - http: {{url: "{{{{server}}}}/api/v1/jobs"}}
    telling:
      enabled: false
      steps:
        - http: {{url: "{{{{server}}}}/healthz"}}
          assert: ["body == {{{{token}}}}"]
)",
                                                     token_file)};
    ASSERT_TRUE(server.start()) << server.log();
    const std::vector<net::Header> auth{{"Authorization", "Bearer " + secret}};
    auto run = [&](std::string_view name) {
        auto answer = http(server, "POST", fmt::format("/api/v1/probes/{}/run", name), {}, auth);
        return answer && answer->status == 200 ? json::parse(answer->body) : json::value{};
    };
    EXPECT_EQ(run("authed").at("outcome"), "passed");
    auto anonymous = run("anonymous");
    EXPECT_EQ(anonymous.at("outcome"), "failed");
    EXPECT_NE(anonymous.at("message").as_string().find("HTTP 401"), std::string::npos) << anonymous;
    run("telling");
    auto stored = http(server, "GET", "/api/v1/probes/telling/runs", {}, auth);
    ASSERT_TRUE(stored);
    EXPECT_EQ(stored->body.find(secret), std::string::npos) << stored->body;
    EXPECT_NE(stored->body.find("REDACTED"), std::string::npos) << stored->body;
    EXPECT_EQ(server.log().find(secret), std::string::npos);
}

class ProbesScaleOut : public ::testing::Test {
protected:
    std::unique_ptr<ServerProcess> start(const std::string& instance) {
        auto server = std::make_unique<ServerProcess>(
            test_config() +
            fmt::format("instance: {}\nstore:\n  url: '{}'\n  heartbeat: 100ms\n"
                        "  leader_ttl: 1s\n",
                        instance, url_) +
            R"(probes:
  scenarios:
    shared:
      interval: 1s
      timeout: 5s
      steps:
        - http: {url: "{{server}}/healthz"}
)");
        EXPECT_TRUE(server->start()) << server->log();
        return server;
    }

    std::string url_ = fresh_postgres_schema_url(
        "probes_" + std::to_string(std::mt19937_64{std::random_device{}()}() % 1'000'000'000));
};

TEST_F(ProbesScaleOut, TwoInstancesNeverBothRunTheSameSlot) {
    auto a = start("serve-a");
    auto b = start("serve-b");
    ASSERT_TRUE(has_runs(*a, "shared", 8)) << a->log() << b->log();
    auto runs = json_of(http(*a, "GET", "/api/v1/probes/shared/runs?limit=1000"));
    const auto& list = runs.at("runs").as_array();
    ASSERT_GE(list.size(), 8U);
    // Each run is one instance's: consecutive runs start about an interval apart (±10 % jitter),
    // never two at once as they would if both instances ran every slot.
    std::vector<core::TimePoint> starts;
    std::set<std::string> instances;
    for (const auto& r : list) {
        starts.push_back(*core::parse_time(r.at("started_at").as_string()));
        instances.insert(std::string{r.at("instance").as_string()});
    }
    for (std::size_t i = 0; i + 1 < starts.size(); ++i) {
        EXPECT_GE(starts[i] - starts[i + 1], 800ms)
            << "runs " << i << " and " << i + 1 << " are too close: " << runs;
    }
    EXPECT_FALSE(instances.empty());
    // Both read the same store.
    auto from_b = json_of(http(*b, "GET", "/api/v1/probes/shared/runs?limit=1"));
    EXPECT_EQ(from_b.at("runs").at(0).at("id").as_int64() >= list.front().at("id").as_int64(),
              true);
}

}  // namespace
}  // namespace aviary::test

namespace aviary::test {
namespace {

TEST(ProbeActionStep, SubmitsAJobWaitsForItAndJudgesHowItEnded) {
    ServerProcess server{test_config() + R"(probes:
  scenarios:
    upgrade-then-check:
      enabled: false
      node: lotus-1
      steps:
        - name: say hello
          action: {name: echo, params: {text: "hello from {{node}}"}}
          assert: ["json.state == succeeded", "json.node == lotus-1"]
          capture: {job: json.id}
        - name: its output
          http: {url: "{{server}}/api/v1/jobs/{{job}}/output"}
          assert: ["body contains hello from lotus-1"]
    refused:
      enabled: false
      steps:
        - action: {name: no-such-action, node: lotus-0}
    bad-params:
      enabled: false
      steps:
        - action: {name: echo, node: lotus-0, params: {colour: red}}
)"};
    ASSERT_TRUE(server.start()) << server.log();
    auto passed = json_of(http(server, "POST", "/api/v1/probes/upgrade-then-check/run"));
    ASSERT_TRUE(passed.is_object());
    EXPECT_EQ(passed.at("outcome"), "passed") << passed;
    EXPECT_EQ(passed.at("steps").at(0).at("kind"), "action") << passed;

    auto refused = json_of(http(server, "POST", "/api/v1/probes/refused/run"));
    EXPECT_EQ(refused.at("outcome"), "failed") << refused;
    EXPECT_NE(std::string{refused.at("message").as_string()}.find(
                  "submitting no-such-action on lotus-0: HTTP 404"),
              std::string::npos)
        << refused;
    auto bad = json_of(http(server, "POST", "/api/v1/probes/bad-params/run"));
    EXPECT_EQ(bad.at("outcome"), "failed") << bad;
    EXPECT_NE(std::string{bad.at("message").as_string()}.find("HTTP 400"), std::string::npos)
        << bad;
    // The jobs it ran are in the audit trail as a canary's.
    auto jobs = json_of(http(server, "GET", "/api/v1/jobs?node=lotus-1"));
    ASSERT_FALSE(jobs.at("jobs").as_array().empty()) << jobs;
    EXPECT_EQ(jobs.at("jobs").at(0).at("action"), "echo");
}

}  // namespace
}  // namespace aviary::test
