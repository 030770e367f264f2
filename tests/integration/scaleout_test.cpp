// Several `aviary serve` instances on one PostgreSQL (docs/scaling.md), through the real binary:
// jobs cross instances, grants and cancels reach the instance they are for, one instance leads
// the periodic work and another takes over when it dies, and a dead instance's jobs are rescued.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <future>
#include <memory>
#include <random>
#include <set>

#include "rpc_helpers.hpp"
#include "support/peer_process.hpp"
#include "support/postgres_server.hpp"
#include "support/server_process.hpp"

namespace aviary::test {
namespace {

using namespace std::chrono_literals;

// `slow` holds a worker for a minute; `hold` until it is cancelled.
constexpr std::string_view kActions = R"(    slow:
      rerun_safe: true
      steps:
        - run: [sh, -c, "echo begin; exec sleep 60"]
    talk:
      steps:
        - run: [sh, -c, "for i in 1 2 3 4 5 6 7 8; do echo said $i; sleep 0.2; done"]
)";

std::string random_schema() {
    std::random_device seed;
    return "scaleout_" + std::to_string(std::mt19937_64{seed()}() % 1'000'000'000);
}

class ScaleOut : public ::testing::Test {
protected:
    /// One instance's config: the shared store, fast beats, `workers` job workers.
    std::string config(std::string_view instance, int workers) const {
        return jobs_test_config(
            kActions,
            fmt::format("instance: {}\nstore:\n  url: '{}'\n  heartbeat: 100ms\n"
                        "  leader_ttl: 1s\n",
                        instance, url_),
            fmt::format("  workers: {}\n  heartbeat: 100ms\n"
                        "  heartbeat_timeout: 1500ms\n",
                        workers));
    }

    std::unique_ptr<ServerProcess> start(std::string_view instance, int workers = 2) {
        auto server = std::make_unique<ServerProcess>(config(instance, workers));
        EXPECT_TRUE(server->start()) << server->log();
        return server;
    }

    std::string url_ = fresh_postgres_schema_url(random_schema());
};

std::string submit(const ServerProcess& server, std::string_view node, std::string_view action) {
    auto response =
        http(server, "POST", fmt::format("/api/v1/nodes/{}/actions/{}", node, action), "{}");
    EXPECT_TRUE(response && response->status == 202) << (response ? response->body : "");
    auto body = json_of(response);
    return body.is_object() ? str(body.at("job").at("id")) : std::string{};
}

/// Waits until job `id`, read through `server`, is running; returns the instance running it.
std::string running_on(const ServerProcess& server, std::string_view id) {
    std::string instance;
    wait_until([&] {
        auto job = job_of(server, id);
        if (!job.is_object() || str(job.at("state")) != "running") {
            return false;
        }
        instance = str(job.at("instance"));
        return true;
    });
    return instance;
}

/// The instance that leads the periodic work, from the audit trail ("" when none yet).
std::string leader(const ServerProcess& server) {
    auto events = json_of(http(server, "GET", "/api/v1/events?limit=1000"));
    if (!events.is_object()) {
        return {};
    }
    for (const auto& event : events.at("events").as_array()) {
        if (str(event.at("kind")) == "leader.elected") {
            return str(event.at("after").at("instance"));  // newest first
        }
    }
    return {};
}

TEST_F(ScaleOut, AJobQueuedThroughOneInstanceRunsOnAnotherInstancesFreeWorker) {
    auto a = start("serve-a", 1);
    auto b = start("serve-b", 1);
    // A's one worker is busy; B's is free.
    auto first = submit(*a, "lotus-0", "slow");
    auto first_on = running_on(*a, first);
    ASSERT_FALSE(first_on.empty());
    auto& other = first_on == "serve-a" ? *a : *b;
    auto second = submit(other, "lotus-1", "slow");
    // Started by the instance with the free worker, told by the other's commit (the poll
    // behind it is 30 s, longer than this wait).
    auto second_on = running_on(*a, second);
    EXPECT_FALSE(second_on.empty());
    EXPECT_NE(second_on, first_on) << a->log() << b->log();
}

TEST_F(ScaleOut, ANodeReleasedOnOneInstanceIsGrantedToAWaiterConnectedToAnother) {
    auto a = start("serve-a");
    auto b = start("serve-b");
    auto taken = http(*a, "POST", "/api/v1/leases", R"({"node":"lotus-0","owner":"alice"})");
    ASSERT_TRUE(taken && taken->status == 201) << (taken ? taken->body : "");
    // Bob waits through B; Alice releases through A.
    auto waiting = std::async(std::launch::async, [&] {
        return http(*b, "POST", "/api/v1/leases",
                    R"({"node":"lotus-0","owner":"bob","wait":"20s"})", {}, 30s);
    });
    ASSERT_TRUE(wait_until([&] {
        auto leases = json_of(http(*a, "GET", "/api/v1/leases"));
        return leases.is_object() && !leases.at("waiters").as_array().empty();
    })) << b->log();
    auto lease_id = str(json_of(taken).at("id"));
    auto freed = http(*a, "DELETE", fmt::format("/api/v1/leases/{}", lease_id));
    ASSERT_TRUE(freed && freed->status < 300) << (freed ? freed->body : "");
    ASSERT_EQ(waiting.wait_for(15s), std::future_status::ready);
    auto answer = waiting.get();
    ASSERT_TRUE(answer) << answer.error().message;
    auto last = last_line(answer->body);
    ASSERT_TRUE(last.is_object()) << answer->body;
    EXPECT_EQ(str(last.at("lease").at("owner")), "bob") << answer->body;
}

TEST_F(ScaleOut, ACancelSentToOneInstanceStopsTheStepRunningOnAnother) {
    auto a = start("serve-a", 1);
    auto b = start("serve-b", 1);
    auto id = submit(*a, "lotus-0", "slow");
    auto on = running_on(*a, id);
    ASSERT_FALSE(on.empty());
    auto& elsewhere = on == "serve-a" ? *b : *a;
    auto cancelled = http(elsewhere, "POST", fmt::format("/api/v1/jobs/{}/cancel", id), "{}");
    ASSERT_TRUE(cancelled && cancelled->status < 300) << (cancelled ? cancelled->body : "");
    auto job = wait_for_job(elsewhere, id, 20s);
    ASSERT_TRUE(job.is_object()) << a->log() << b->log();
    EXPECT_EQ(str(job.at("state")), "cancelled");
}

TEST_F(ScaleOut, FollowingOutputOnOneInstanceShowsWhatAnotherInstancesWorkerWrites) {
    auto a = start("serve-a", 1);
    auto b = start("serve-b", 1);
    auto id = submit(*a, "lotus-0", "talk");
    auto on = running_on(*a, id);
    ASSERT_FALSE(on.empty());
    auto& watcher = on == "serve-a" ? *b : *a;
    auto followed = http(watcher, "GET", fmt::format("/api/v1/jobs/{}/output?follow=1&from=0", id),
                         {}, {}, 30s);
    ASSERT_TRUE(followed) << followed.error().message;
    for (int i = 1; i <= 8; ++i) {
        EXPECT_NE(followed->body.find(fmt::format("said {}", i)), std::string::npos)
            << followed->body;
    }
}

TEST_F(ScaleOut, OneInstanceLeadsAndAnotherTakesOverWhenItIsKilled) {
    auto a = start("serve-a");
    ASSERT_TRUE(wait_until([&] { return leader(*a) == "serve-a"; })) << a->log();
    auto b = start("serve-b");
    // A keeps leading while it beats.
    auto instances = json_of(http(*b, "GET", "/api/v1/instances"));
    ASSERT_TRUE(instances.is_object()) << b->log();
    int leaders = 0;
    for (const auto& instance : instances.at("instances").as_array()) {
        leaders += instance.at("leads").as_array().empty() ? 0 : 1;
    }
    EXPECT_EQ(leaders, 1) << boost::json::serialize(instances);
    a->kill9();
    EXPECT_TRUE(wait_until([&] { return leader(*b) == "serve-b"; }, 10s)) << b->log();
}

TEST_F(ScaleOut, AKilledInstancesJobsAreRescuedByAnotherOnceTheyStopBeating) {
    auto a = start("serve-a", 2);
    auto b = start("serve-b", 2);
    std::vector<std::string> ids;
    for (const char* node : {"lotus-0", "lotus-1"}) {
        ids.push_back(submit(*a, node, "slow"));
    }
    std::set<std::string> where;
    for (const auto& id : ids) {
        where.insert(running_on(*a, id));
    }
    ASSERT_FALSE(where.count(""));
    // Kill whichever instance runs the first job.
    auto victim = running_on(*a, ids[0]);
    auto& dead = victim == "serve-a" ? *a : *b;
    auto& alive = victim == "serve-a" ? *b : *a;
    dead.kill9();
    // rerun_safe: the survivor re-queues the dead one's job and runs it itself.
    EXPECT_TRUE(wait_until(
        [&] {
            auto job = job_of(alive, ids[0]);
            return job.is_object() && str(job.at("state")) == "running" &&
                   str(job.at("instance")) != victim && job.at("attempt").to_number<int>() == 2;
        },
        20s))
        << alive.log();
    auto events = json_of(http(alive, "GET", "/api/v1/events?limit=1000"));
    ASSERT_TRUE(events.is_object());
    int rescued = 0;
    for (const auto& event : events.at("events").as_array()) {
        if (str(event.at("kind")) == "job.rescued" && str(event.at("after").at("id")) == ids[0]) {
            ++rescued;
        }
    }
    EXPECT_EQ(rescued, 1);  // rescued exactly once
}

TEST_F(ScaleOut, ASecondLiveInstanceOfTheSameNameIsRefused) {
    auto a = start("serve-a");
    ServerProcess twin{config("serve-a", 1)};
    EXPECT_FALSE(twin.start());
    EXPECT_NE(twin.log().find("instance name \"serve-a\" is in use by a running instance"),
              std::string::npos)
        << twin.log();
}

TEST_F(ScaleOut, AWorkerRunsJobsQueuedThroughServeAndNeverLeads) {
    auto a = start("serve-a", 1);
    auto busy = submit(*a, "lotus-0", "slow");
    ASSERT_EQ(running_on(*a, busy), "serve-a");
    TempDir dir;
    auto config_path = dir.path() + "/worker.yaml";
    {
        std::ofstream file{config_path};
        file << config("worker-w", 2);
    }
    PeerProcess worker{{AVIARY_BINARY, "worker", "--config", config_path, "--data-dir", dir.path()},
                       dir.path() + "/worker.log"};
    ASSERT_TRUE(worker.wait_for_log("worker worker-w running 2 workers")) << worker.log();
    // serve's one worker is busy: the worker takes the next job.
    auto next = submit(*a, "lotus-1", "slow");
    EXPECT_EQ(running_on(*a, next), "worker-w") << worker.log();
    auto instances = json_of(http(*a, "GET", "/api/v1/instances"));
    ASSERT_TRUE(instances.is_object());
    for (const auto& instance : instances.at("instances").as_array()) {
        bool leads = !instance.at("leads").as_array().empty();
        EXPECT_EQ(leads, str(instance.at("name")) == "serve-a") << boost::json::serialize(instance);
    }
    worker.stop();
    EXPECT_FALSE(worker.running());
}

TEST(Worker, NeedsAStoreSharedWithServe) {
    auto result = run_command(std::string{AVIARY_BINARY} + " worker 2>&1");
    EXPECT_EQ(result.status, 2);
    EXPECT_NE(result.output.find("worker needs a store it shares with serve"), std::string::npos)
        << result.output;
}

}  // namespace
}  // namespace aviary::test
