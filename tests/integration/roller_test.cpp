// The roller's endpoint through the real binary: POST /api/v1/jobs with the query string as
// its only input, the task run on the machine behind the worker id with params templated from
// it, GET /api/v1/jobs/{task_id} polled to COMPLETE, every refusal in the roller's shape, CORS
// for a dashboard in a browser, task x machine permissions with refusals in the audit trail,
// and loans through the fleet.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>

#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;

constexpr std::string_view kMachines = R"(  machines:
    - name: t-linux-1
      hostname: t-linux-1.test
      address: 127.0.0.1
      ssh_user: relops
      groups: [lab]
    - name: t-odd-1
      hostname: t-odd-1.test
      address: 127.0.0.1
      ssh_user: Ops.Admin
      groups: [lab]
    - name: t-deny-1
      hostname: t-deny-1.test
      address: 127.0.0.1
      groups: [lab]
  worker_ids:
    - {id: tc-worker-1, machine: t-linux-1}
    - {id: tc-worker-2}
    - {id: tc-odd-1, machine: t-odd-1}
    - {id: tc-deny-1, machine: t-deny-1}
)";

/// `hello` is public: its params come from the worker id and the machine.
constexpr std::string_view kHello = R"(    hello:
      public: true
      exclusive: false
      params:
        host: {from: "{{machine.address}}", pattern: "[A-Za-z0-9.:-]+"}
        user: {from: "{{machine.ssh_user}}", pattern: "[a-z]+"}
      steps:
        - run: [echo, "hello {{params.user}}@{{params.host}} for {{params.tc_worker_id}}"]
)";

std::string roller_config(std::string_view extra = "", std::string_view jobs_extra = "") {
    return test_config(std::string{kMachines} + "  wait_heartbeat: 100ms\n") +
           fmt::format(R"(jobs:
{}  actions:
{})",
                       jobs_extra, kHello) +
           std::string{extra};
}

core::Result<net::ClientResponse> post_task(const ServerProcess& server,
                                            std::string_view query,
                                            std::vector<net::Header> headers = {}) {
    return http(server, "POST", fmt::format("/api/v1/jobs?{}", query), {}, std::move(headers));
}

std::optional<std::string> header(const core::Result<net::ClientResponse>& response,
                                  std::string_view name) {
    if (!response) {
        return std::nullopt;
    }
    for (const auto& h : response->headers) {
        if (std::equal(h.name.begin(), h.name.end(), name.begin(), name.end(),
                       [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
            return h.value;
        }
    }
    return std::nullopt;
}

/// Polls GET /api/v1/jobs/{id} (the roller's way) until its status is final.
json::value poll_until_final(const ServerProcess& server, std::string_view id) {
    json::value job;
    wait_until(
        [&] {
            job = job_of(server, id);
            if (!job.is_object()) {
                return false;
            }
            auto status = str(job.at("status"));
            return status == "COMPLETE" || status == "FAILED" || status == "CANCELLED";
        },
        std::chrono::seconds{60});
    return job;
}

class Roller : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(server_.start()) << server_.log(); }

    ServerProcess server_{roller_config()};
};

TEST_F(Roller, APublicTaskRunsOnTheWorkersMachineAndIsPolledToComplete) {
    auto posted = post_task(server_, "tc_worker_id=tc-worker-1&task_name=hello");
    ASSERT_TRUE(posted);
    ASSERT_EQ(posted->status, 201) << posted->body;
    auto body = json_of(posted).as_object();
    EXPECT_EQ(body.size(), 3u) << posted->body;
    EXPECT_EQ(body.at("task_name"), "hello");
    EXPECT_EQ(body.at("tc_worker_id"), "tc-worker-1");
    const std::string id = str(body.at("task_id"));
    ASSERT_FALSE(id.empty());

    auto job = poll_until_final(server_, id);
    ASSERT_TRUE(job.is_object()) << server_.log();
    EXPECT_EQ(job.at("status"), "COMPLETE") << json::serialize(job);
    EXPECT_EQ(str(job.at("task_id")), id);
    EXPECT_EQ(job.at("task_name"), "hello");
    EXPECT_EQ(job.at("tc_worker_id"), "tc-worker-1");
    EXPECT_EQ(job.at("node"), "t-linux-1");  // the job's own fields too
    EXPECT_EQ(job.at("params").at("host"), "127.0.0.1");
    EXPECT_EQ(job.at("params").at("user"), "relops");

    auto output = http(server_, "GET", fmt::format("/api/v1/jobs/{}/output", id));
    ASSERT_TRUE(output);
    EXPECT_NE(output->body.find("hello relops@127.0.0.1 for tc-worker-1"), std::string::npos)
        << output->body;
}

TEST_F(Roller, TheBodyIsIgnoredWhateverItIs) {
    auto posted = http(server_, "POST", "/api/v1/jobs?tc_worker_id=tc-worker-1&task_name=hello",
                       "this is not json", {{"Content-Type", "text/plain"}});
    ASSERT_TRUE(posted);
    EXPECT_EQ(posted->status, 201) << posted->body;
}

TEST_F(Roller, FieldProblemsAre400KeyedByFieldAllAtOnce) {
    auto none = post_task(server_, "");
    ASSERT_TRUE(none);
    EXPECT_EQ(none->status, 400);
    EXPECT_EQ(json_of(none), json::parse(R"({"task_name": ["This field is required."],
                                             "tc_worker_id": ["This field is required."]})"));

    auto unknown = post_task(server_, "tc_worker_id=tc-worker-1&task_name=nope");
    ASSERT_TRUE(unknown);
    EXPECT_EQ(unknown->status, 400);
    EXPECT_EQ(json_of(unknown),
              json::parse(R"({"task_name": ["\"nope\" is not a valid choice."]})"));

    // An action that is not public is not a task, though it exists.
    auto private_action = post_task(server_, "tc_worker_id=tc-worker-1&task_name=noop");
    ASSERT_TRUE(private_action);
    EXPECT_EQ(private_action->status, 400);
    EXPECT_EQ(json_of(private_action).at("task_name").at(0), "\"noop\" is not a valid choice.");

    auto twice = post_task(server_, "tc_worker_id=tc-worker-1&task_name=hello&task_name=ping");
    ASSERT_TRUE(twice);
    EXPECT_EQ(twice->status, 400);
    EXPECT_EQ(json_of(twice).at("task_name").at(0), "task_name is given twice: give it once");

    auto bad_worker = post_task(server_, "tc_worker_id=a%20b&task_name=hello");
    ASSERT_TRUE(bad_worker);
    EXPECT_EQ(bad_worker->status, 400);
    EXPECT_TRUE(json_of(bad_worker).as_object().contains("tc_worker_id")) << bad_worker->body;

    // A machine property that fails the param's check: keyed by the param.
    auto odd = post_task(server_, "tc_worker_id=tc-odd-1&task_name=hello");
    ASSERT_TRUE(odd);
    EXPECT_EQ(odd->status, 400);
    auto odd_body = json_of(odd).as_object();
    ASSERT_TRUE(odd_body.contains("user")) << odd->body;
    EXPECT_EQ(odd_body.size(), 1u) << odd->body;
    EXPECT_NE(str(odd_body.at("user").at(0)).find("Ops.Admin"), std::string::npos) << odd->body;
    EXPECT_TRUE(server_.running());
}

TEST_F(Roller, UnknownWorkersAndWorkersWithoutAMachineAre404) {
    auto unknown = post_task(server_, "tc_worker_id=tc-worker-9&task_name=hello");
    ASSERT_TRUE(unknown);
    EXPECT_EQ(unknown->status, 404);
    EXPECT_EQ(json_of(unknown),
              json::parse(R"({"tc_worker_id": "TC worker with that ID not found."})"));

    auto bare = post_task(server_, "tc_worker_id=tc-worker-2&task_name=hello");
    ASSERT_TRUE(bare);
    EXPECT_EQ(bare->status, 404);
    EXPECT_EQ(json_of(bare),
              json::parse(R"({"tc_worker_id": "Not managing hardware running that TC worker."})"));

    auto missing_job = http(server_, "GET", "/api/v1/jobs/no-such-task");
    ASSERT_TRUE(missing_job);
    EXPECT_EQ(missing_job->status, 404);
}

TEST_F(Roller, ALoopbackPageGetsCorsAnswersAndAForeignOneDoesNot) {
    auto preflight = http(server_, "OPTIONS", "/api/v1/jobs", {},
                          {{"Origin", "http://127.0.0.1:9"},
                           {"Access-Control-Request-Method", "POST"},
                           {"Access-Control-Request-Headers", "authorization"}});
    ASSERT_TRUE(preflight);
    EXPECT_EQ(preflight->status, 200);
    EXPECT_EQ(header(preflight, "Access-Control-Allow-Origin"), "http://127.0.0.1:9");
    EXPECT_EQ(header(preflight, "Access-Control-Allow-Headers"), "Authorization,Content-Type");
    EXPECT_EQ(header(preflight, "Access-Control-Allow-Methods"), "OPTIONS,POST");
    EXPECT_EQ(header(preflight, "Vary"), "Origin");

    auto poll_preflight =
        http(server_, "OPTIONS", "/api/v1/jobs/some-id", {},
             {{"Origin", "http://localhost:8080"}, {"Access-Control-Request-Method", "GET"}});
    ASSERT_TRUE(poll_preflight);
    EXPECT_EQ(header(poll_preflight, "Access-Control-Allow-Methods"), "OPTIONS,GET");

    auto posted = post_task(server_, "tc_worker_id=tc-worker-1&task_name=hello",
                            {{"Origin", "http://127.0.0.1:9"}});
    ASSERT_TRUE(posted);
    EXPECT_EQ(posted->status, 201) << posted->body;
    EXPECT_EQ(header(posted, "Access-Control-Allow-Origin"), "http://127.0.0.1:9");
    // A refusal is readable by the page too.
    auto refused = post_task(server_, "task_name=hello", {{"Origin", "http://127.0.0.1:9"}});
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 400);
    EXPECT_EQ(header(refused, "Access-Control-Allow-Origin"), "http://127.0.0.1:9");

    // A foreign page: no CORS headers, and its POST is refused by the Origin rule.
    auto foreign =
        http(server_, "OPTIONS", "/api/v1/jobs", {},
             {{"Origin", "http://evil.example"}, {"Access-Control-Request-Method", "POST"}});
    ASSERT_TRUE(foreign);
    EXPECT_FALSE(header(foreign, "Access-Control-Allow-Origin").has_value());
    EXPECT_EQ(header(foreign, "Vary"), "Origin");  // a cache keeps the two answers apart
    auto foreign_post = post_task(server_, "tc_worker_id=tc-worker-1&task_name=hello",
                                  {{"Origin", "http://evil.example"}});
    ASSERT_TRUE(foreign_post);
    EXPECT_EQ(foreign_post->status, 403) << foreign_post->body;
    EXPECT_FALSE(header(foreign_post, "Access-Control-Allow-Origin").has_value());
    // Other routes take no CORS at all.
    auto nodes = http(server_, "GET", "/api/v1/nodes", {}, {{"Origin", "http://127.0.0.1:9"}});
    ASSERT_TRUE(nodes);
    EXPECT_FALSE(header(nodes, "Access-Control-Allow-Origin").has_value());
}

TEST(RollerCors, ConfiguredOriginsReplaceTheLoopbackDefault) {
    ServerProcess server{roller_config("auth:\n  cors_origins: [\"https://dash.example\"]\n")};
    ASSERT_TRUE(server.start()) << server.log();
    auto dash =
        http(server, "OPTIONS", "/api/v1/jobs", {},
             {{"Origin", "https://dash.example"}, {"Access-Control-Request-Method", "POST"}});
    ASSERT_TRUE(dash);
    EXPECT_EQ(dash->status, 200);
    EXPECT_EQ(header(dash, "Access-Control-Allow-Origin"), "https://dash.example");
    auto loopback =
        http(server, "OPTIONS", "/api/v1/jobs", {},
             {{"Origin", "http://127.0.0.1:9"}, {"Access-Control-Request-Method", "POST"}});
    ASSERT_TRUE(loopback);
    EXPECT_FALSE(header(loopback, "Access-Control-Allow-Origin").has_value());
    auto posted = post_task(server, "tc_worker_id=tc-worker-1&task_name=hello",
                            {{"Origin", "https://dash.example"}});
    ASSERT_TRUE(posted);
    EXPECT_EQ(posted->status, 201) << posted->body;
}

TEST(RollerConfig, AnOriginWithAPathIsRefusedAtLoad) {
    ServerProcess server{roller_config("auth:\n  cors_origins: [\"https://dash.example/app\"]\n")};
    // serve refuses the file at start, naming the key and why.
    EXPECT_FALSE(server.start());
    EXPECT_NE(server.log().find("auth.cors_origins"), std::string::npos) << server.log();
    EXPECT_NE(server.log().find("no path"), std::string::npos) << server.log();
}

class RollerPermissions : public ::testing::Test {
protected:
    void SetUp() override {
        setenv("AVIARY_TEST_DASH", "dash-secret", 1);
        setenv("AVIARY_TEST_OPS", "ops-secret", 1);
        ASSERT_TRUE(server_.start()) << server_.log();
    }

    ServerProcess server_{roller_config(R"(auth:
  tokens:
    - {identity: dashboard, role: user, env: AVIARY_TEST_DASH, groups: [taskcluster]}
    - {identity: ops, role: user, env: AVIARY_TEST_OPS}
)",
                                        R"(  permissions:
    - name: dashboard-runs-hello-in-the-lab
      effect: allow
      who: [group:taskcluster]
      actions: [hello]
      groups: [lab]
    - name: no-tasks-on-deny
      effect: deny
      who: ["*"]
      nodes: [t-deny-1]
)")};
};

TEST_F(RollerPermissions, ARuleNamesWhoMayRunWhichTaskOnWhichMachines) {
    auto allowed = post_task(server_, "tc_worker_id=tc-worker-1&task_name=hello",
                             {{"Authorization", "Bearer dash-secret"}});
    ASSERT_TRUE(allowed);
    EXPECT_EQ(allowed->status, 201) << allowed->body;

    auto refused = post_task(server_, "tc_worker_id=tc-worker-1&task_name=hello",
                             {{"Authorization", "Bearer ops-secret"}});
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 403) << refused->body;
    EXPECT_EQ(json_of(refused).at("detail"),
              "ops may not run hello on t-linux-1: no permission rule allows it");

    auto anonymous = post_task(server_, "tc_worker_id=tc-worker-1&task_name=hello");
    ASSERT_TRUE(anonymous);
    EXPECT_EQ(anonymous->status, 401);

    // Every run, allowed or refused, is in the audit trail.
    auto events = json_of(http(server_, "GET", "/api/v1/events?node=t-linux-1", {},
                               {{"Authorization", "Bearer ops-secret"}}));
    ASSERT_TRUE(events.is_object()) << server_.log();
    int queued = 0;
    int refusals = 0;
    for (const auto& event : events.at("events").as_array()) {
        auto kind = str(event.at("kind"));
        queued += kind == "job.queued" && str(event.at("actor")) == "dashboard" ? 1 : 0;
        refusals += kind == "job.refused" && str(event.at("actor")) == "ops" ? 1 : 0;
    }
    EXPECT_EQ(queued, 1) << json::serialize(events);
    EXPECT_EQ(refusals, 1) << json::serialize(events);
}

TEST_F(RollerPermissions, DenyWinsAndTheRefusalNamesTheRule) {
    // The dashboard's allow rule covers every lab machine; the deny on t-deny-1 wins.
    auto refused = post_task(server_, "tc_worker_id=tc-deny-1&task_name=hello",
                             {{"Authorization", "Bearer dash-secret"}});
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 403) << refused->body;
    EXPECT_EQ(json_of(refused).at("detail"),
              "dashboard may not run hello on t-deny-1: denied by rule no-tasks-on-deny");
}

TEST(Loans, ALoanLeasesTheMachineToAPersonAndReturnGivesItBack) {
    ServerProcess server{roller_config()};
    ASSERT_TRUE(server.start()) << server.log();
    auto loan = http(server, "POST", "/api/v1/nodes/t-linux-1/actions/loan",
                     R"({"params": {"person": "alice", "ttl": "2h"}, "wait": true})");
    ASSERT_TRUE(loan);
    ASSERT_EQ(loan->status, 200) << loan->body;
    EXPECT_EQ(json_of(loan).at("job").at("state"), "succeeded") << loan->body;
    auto node = json_of(http(server, "GET", "/api/v1/nodes/t-linux-1"));
    EXPECT_EQ(node.at("state"), "leased") << json::serialize(node);
    EXPECT_EQ(node.at("holder"), "alice");
    EXPECT_EQ(node.at("reason"), "loan");

    // Lent out: another loan is refused, naming the holder.
    auto again = http(server, "POST", "/api/v1/nodes/t-linux-1/actions/loan",
                      R"({"params": {"person": "bob"}})");
    ASSERT_TRUE(again);
    EXPECT_EQ(again->status, 409) << again->body;
    EXPECT_NE(again->body.find("alice"), std::string::npos) << again->body;

    // Given back by someone who does not hold it: the job fails and alice keeps it.
    auto wrong = http(server, "POST", "/api/v1/nodes/t-linux-1/actions/return-loan",
                      R"({"params": {"person": "bob"}, "wait": true})");
    ASSERT_TRUE(wrong);
    EXPECT_EQ(json_of(wrong).at("job").at("state"), "failed") << wrong->body;
    EXPECT_NE(str(json_of(wrong).at("job").at("error")).find("on loan to alice, not bob"),
              std::string::npos)
        << wrong->body;

    auto back = http(server, "POST", "/api/v1/nodes/t-linux-1/actions/return-loan",
                     R"({"params": {"person": "alice"}, "wait": true})");
    ASSERT_TRUE(back);
    EXPECT_EQ(json_of(back).at("job").at("state"), "succeeded") << back->body;
    EXPECT_EQ(json_of(http(server, "GET", "/api/v1/nodes/t-linux-1")).at("state"), "free");
}

TEST(LoanRules, AUsersTokenMayNotLendToOthersOrEndOthersLoans) {
    setenv("AVIARY_TEST_OPS", "ops-secret", 1);
    setenv("AVIARY_TEST_ADMIN", "admin-secret", 1);
    ServerProcess server{roller_config(R"(auth:
  tokens:
    - {identity: ops, role: user, env: AVIARY_TEST_OPS}
    - {identity: boss, role: admin, env: AVIARY_TEST_ADMIN}
)")};
    ASSERT_TRUE(server.start()) << server.log();
    const std::vector<net::Header> ops{{"Authorization", "Bearer ops-secret"}};
    const std::vector<net::Header> boss{{"Authorization", "Bearer admin-secret"}};

    auto for_alice = http(server, "POST", "/api/v1/nodes/t-linux-1/actions/loan",
                          R"({"params": {"person": "alice"}})", ops);
    ASSERT_TRUE(for_alice);
    EXPECT_EQ(for_alice->status, 403) << for_alice->body;
    EXPECT_NE(for_alice->body.find("token for ops may not lend t-linux-1 to alice: it needs admin"),
              std::string::npos)
        << for_alice->body;
    // The refusal is in the audit trail like a permission rule's.
    auto events = json_of(http(server, "GET", "/api/v1/events?node=t-linux-1", {}, boss));
    ASSERT_TRUE(events.is_object());
    bool recorded = false;
    for (const auto& event : events.at("events").as_array()) {
        recorded = recorded || (event.at("kind") == "job.refused" && event.at("actor") == "ops");
    }
    EXPECT_TRUE(recorded) << json::serialize(events);

    // An admin lends it to alice; ops may not give it back, even naming nobody.
    auto lent = http(server, "POST", "/api/v1/nodes/t-linux-1/actions/loan",
                     R"({"params": {"person": "alice"}, "wait": true})", boss);
    ASSERT_TRUE(lent);
    EXPECT_EQ(json_of(lent).at("job").at("state"), "succeeded") << lent->body;
    auto not_yours = http(server, "POST", "/api/v1/nodes/t-linux-1/actions/return-loan", "{}", ops);
    ASSERT_TRUE(not_yours);
    EXPECT_EQ(not_yours->status, 403) << not_yours->body;
    EXPECT_EQ(str(json_of(http(server, "GET", "/api/v1/nodes/t-linux-1", {}, ops)).at("holder")),
              "alice");

    // Nor may ops run the admin's loan again through retry.
    auto retried =
        http(server, "POST",
             fmt::format("/api/v1/jobs/{}/retry", str(json_of(lent).at("job").at("id"))), {}, ops);
    ASSERT_TRUE(retried);
    EXPECT_EQ(retried->status, 403) << retried->body;
    EXPECT_NE(retried->body.find("may not lend t-linux-1 to alice"), std::string::npos)
        << retried->body;

    // ops borrows another machine for itself and gives it back.
    auto own = http(server, "POST", "/api/v1/nodes/t-deny-1/actions/loan",
                    R"({"params": {"person": "ops"}, "wait": true})", ops);
    ASSERT_TRUE(own);
    EXPECT_EQ(json_of(own).at("job").at("state"), "succeeded") << own->body;
    auto back = http(server, "POST", "/api/v1/nodes/t-deny-1/actions/return-loan",
                     R"({"params": {"person": "ops"}, "wait": true})", ops);
    ASSERT_TRUE(back);
    EXPECT_EQ(json_of(back).at("job").at("state"), "succeeded") << back->body;
}

}  // namespace
}  // namespace aviary::test
