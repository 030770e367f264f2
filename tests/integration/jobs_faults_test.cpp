// Jobs under faults, through the real binary: kill -9 of serve while steps run, then a restart
// on the same data dir (leftover process groups killed, jobs rescued by the action's rules and
// never duplicated), and cancel ending a step's whole process group.
#include <gtest/gtest.h>

#include <regex>

#include "integration/rpc_helpers.hpp"
#include "support/process_groups.hpp"

namespace aviary::test {
namespace {

// Two slow actions, the same step, differing only in whether a rescue may run them again. The
// step leaves a grandchild in its group (`sleep &`), as a real deploy script might.
constexpr std::string_view kSlowActions = R"(    slow-safe:
      rerun_safe: true
      steps:
        - run: [sh, -c, "echo begin; sleep 60 & exec sleep 60"]
    slow-unsafe:
      rerun_safe: false
      steps:
        - run: [sh, -c, "echo begin; sleep 60 & exec sleep 60"]
)";

class JobsFaults : public ::testing::Test {};

std::string submit(const ServerProcess& server, std::string_view node, std::string_view action) {
    auto response =
        http(server, "POST", fmt::format("/api/v1/nodes/{}/actions/{}", node, action), "{}");
    EXPECT_TRUE(response && response->status == 202) << (response ? response->body : "");
    auto body = json_of(response);
    if (!body.is_object()) {
        return {};
    }
    return str(body.at("job").at("id"));
}

/// Waits for job `id` to run its child; returns the child's process group (from the engine's
/// "started pid N (process group G)" output line), or 0.
pid_t running_group(const ServerProcess& server, std::string_view id, int attempt = 1) {
    static const std::regex started(R"(started pid \d+ \(process group (\d+)\))");
    pid_t pgid = 0;
    wait_until([&] {
        auto response = http(server, "GET", fmt::format("/api/v1/jobs/{}/output", id));
        auto body = json_of(response);
        if (!body.is_object()) {
            return false;
        }
        for (const auto& line : body.at("lines").as_array()) {
            std::smatch match;
            std::string text = str(line.at("text"));
            if (line.at("attempt").to_number<int>() == attempt &&
                std::regex_search(text, match, started)) {
                pgid = static_cast<pid_t>(std::stol(match[1]));
                return true;
            }
        }
        return false;
    });
    return pgid;
}

TEST_F(JobsFaults, Kill9MidStepThenRestartKillsLeftoverGroupsAndRescuesByTheActionsRules) {
    TempDir dir;
    auto config = jobs_test_config(kSlowActions);
    auto server = std::make_unique<ServerProcess>(config, dir.path());
    ASSERT_TRUE(server->start()) << server->log();
    auto safe = submit(*server, "lotus-0", "slow-safe");
    auto unsafe = submit(*server, "lotus-1", "slow-unsafe");
    pid_t safe_group = running_group(*server, safe);
    pid_t unsafe_group = running_group(*server, unsafe);
    ASSERT_GT(safe_group, 0) << server->log();
    ASSERT_GT(unsafe_group, 0) << server->log();

    server->kill9();
    // The steps outlive serve: they are in their own groups.
    EXPECT_TRUE(group_alive(safe_group));
    EXPECT_TRUE(group_alive(unsafe_group));

    server = std::make_unique<ServerProcess>(config, dir.path());
    ASSERT_TRUE(server->start()) << server->log();
    // The old unsafe group is gone: killed at start, before anything ran again.
    EXPECT_TRUE(wait_until([&] { return !group_alive(unsafe_group); }, std::chrono::seconds{10}));
    EXPECT_TRUE(wait_until([&] { return !group_alive(safe_group); }, std::chrono::seconds{10}));

    auto unsafe_job = job_of(*server, unsafe);
    ASSERT_TRUE(unsafe_job.is_object());
    EXPECT_EQ(str(unsafe_job.at("state")), "failed");
    EXPECT_NE(str(unsafe_job.at("error")).find("not marked safe to re-run"), std::string::npos)
        << str(unsafe_job.at("error"));

    // The safe one runs again, as attempt 2 of the same job, in a new group.
    pid_t again = running_group(*server, safe, 2);
    ASSERT_GT(again, 0) << server->log();
    EXPECT_NE(again, safe_group);
    auto safe_job = job_of(*server, safe);
    EXPECT_EQ(str(safe_job.at("state")), "running");
    EXPECT_EQ(safe_job.at("attempt").to_number<int>(), 2);

    // Never duplicated: still exactly the two jobs.
    auto list = json_of(http(*server, "GET", "/api/v1/jobs?limit=100"));
    ASSERT_TRUE(list.is_object());
    EXPECT_EQ(list.at("jobs").as_array().size(), 2u) << boost::json::serialize(list);
    // The audit trail says what happened to each.
    auto events = http(*server, "GET", "/api/v1/events?limit=200");
    ASSERT_TRUE(events);
    EXPECT_NE(events->body.find("job.rescued"), std::string::npos);

    // Cancel ends the new group too.
    auto cancelled = http(*server, "POST", fmt::format("/api/v1/jobs/{}/cancel", safe), "{}");
    ASSERT_TRUE(cancelled && cancelled->status == 200) << (cancelled ? cancelled->body : "");
    EXPECT_TRUE(wait_until([&] { return !group_alive(again); }, std::chrono::seconds{10}));
    auto final_job = wait_for_job(*server, safe, std::chrono::seconds{10});
    ASSERT_TRUE(final_job.is_object());
    EXPECT_EQ(str(final_job.at("state")), "cancelled");
    EXPECT_EQ(server->stop(), 0) << server->log();
}

TEST_F(JobsFaults, CancelEndsTheStepsWholeGroupEvenWhenItIgnoresSigterm) {
    auto config = jobs_test_config(R"(    stubborn:
      steps:
        - run: [sh, -c, "trap '' TERM; echo begin; sleep 60 & while true; do sleep 1; done"]
)",
                                   "", "  kill_grace: 300ms\n");
    ServerProcess server(config);
    ASSERT_TRUE(server.start()) << server.log();
    auto id = submit(server, "lotus-2", "stubborn");
    pid_t group = running_group(server, id);
    ASSERT_GT(group, 0) << server.log();
    auto cancelled = http(server, "POST", fmt::format("/api/v1/jobs/{}/cancel", id), "{}");
    ASSERT_TRUE(cancelled && cancelled->status == 200) << (cancelled ? cancelled->body : "");
    EXPECT_TRUE(wait_until([&] { return !group_alive(group); }, std::chrono::seconds{10}));
    auto job = wait_for_job(server, id, std::chrono::seconds{10});
    ASSERT_TRUE(job.is_object());
    EXPECT_EQ(str(job.at("state")), "cancelled");
    EXPECT_NE(str(job.at("error")).find("cancelled during step 1"), std::string::npos)
        << boost::json::serialize(job);
}

TEST_F(JobsFaults, ATimeoutEndsTheStepsGroupAndTheJobIsTimedOut) {
    auto config = jobs_test_config(R"(    too-slow:
      timeout: 400ms
      steps:
        - run: [sh, -c, "echo begin; sleep 60 & exec sleep 60"]
)",
                                   "", "  kill_grace: 300ms\n");
    ServerProcess server(config);
    ASSERT_TRUE(server.start()) << server.log();
    auto id = submit(server, "lotus-0", "too-slow");
    pid_t group = running_group(server, id);
    ASSERT_GT(group, 0) << server.log();
    auto job = wait_for_job(server, id, std::chrono::seconds{10});
    ASSERT_TRUE(job.is_object());
    EXPECT_EQ(str(job.at("state")), "timed_out") << boost::json::serialize(job);
    EXPECT_TRUE(wait_until([&] { return !group_alive(group); }, std::chrono::seconds{10}));
}

}  // namespace
}  // namespace aviary::test
