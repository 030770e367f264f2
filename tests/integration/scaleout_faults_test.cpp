// Several `aviary serve` instances on one PostgreSQL under faults (docs/scaling.md): the
// database restarts or stops answering under load, and acquirers on three instances race for
// one node. Each test has its own PostgreSQL cluster, as it restarts or pauses it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <random>
#include <thread>

#include "rpc_helpers.hpp"
#include "support/postgres_server.hpp"
#include "support/server_process.hpp"

namespace aviary::test {
namespace {

using namespace std::chrono_literals;

std::string random_dir() {
    std::random_device seed;
    return (std::filesystem::temp_directory_path() /
            ("aviary-pgfault-" + std::to_string(std::mt19937_64{seed()}() % 1'000'000'000)))
        .string();
}

class ScaleOutFaults : public ::testing::Test {
protected:
    std::string config(std::string_view instance) const {
        return jobs_test_config(
            "",
            fmt::format("instance: {}\nstore:\n  url: '{}'\n  heartbeat: 100ms\n"
                        "  leader_ttl: 1s\n  busy_timeout: 1s\n"
                        "  connect_timeout: 1s\n",
                        instance, postgres_.url()),
            "  workers: 2\n  heartbeat: 100ms\n  heartbeat_timeout: 3s\n");
    }

    std::unique_ptr<ServerProcess> start(std::string_view instance) {
        auto server = std::make_unique<ServerProcess>(config(instance));
        EXPECT_TRUE(server->start()) << server->log();
        return server;
    }

    PostgresServer postgres_{random_dir(), PostgresServer::Options{}};
};

int status_of(const core::Result<net::ClientResponse>& response) {
    return response ? static_cast<int>(response->status) : -1;
}

std::string submit_say(const ServerProcess& server, int i) {
    auto response = http(server, "POST", "/api/v1/nodes/lotus-0/actions/say",
                         fmt::format(R"({{"params":{{"msg":"m{}"}}}})", i));
    if (status_of(response) != 202) {
        return {};
    }
    return str(json_of(response).at("job").at("id"));
}

TEST_F(ScaleOutFaults, ARestartOfTheDatabaseUnderLoadLosesNoAcknowledgedWrite) {
    auto a = start("serve-a");
    auto b = start("serve-b");
    // Load through both instances while the database restarts; keep every acknowledged id.
    std::atomic<bool> stop{false};
    std::vector<std::string> acknowledged[2];
    std::vector<std::thread> load;
    for (int side = 0; side < 2; ++side) {
        load.emplace_back([&, side] {
            const auto& server = side == 0 ? *a : *b;
            for (int i = 0; !stop.load() && i < 10'000; ++i) {
                if (auto id = submit_say(server, side * 100'000 + i); !id.empty()) {
                    acknowledged[side].push_back(id);
                }
            }
        });
    }
    ASSERT_TRUE(wait_until([&] { return acknowledged[0].size() + acknowledged[1].size() > 20; }));
    postgres_.stop();
    // While it is down, serve says why it is not ready.
    EXPECT_TRUE(wait_until([&] {
        auto ready = http(*a, "GET", "/readyz");
        return status_of(ready) == 503 && ready->body.find("store:") != std::string::npos;
    })) << a->log();
    postgres_.restart();
    EXPECT_TRUE(wait_until(
        [&] {
            return status_of(http(*a, "GET", "/readyz")) == 200 &&
                   status_of(http(*b, "GET", "/readyz")) == 200;
        },
        20s))
        << a->log() << b->log();
    auto before = acknowledged[0].size() + acknowledged[1].size();
    EXPECT_TRUE(wait_until(
        [&] { return acknowledged[0].size() + acknowledged[1].size() > before + 20; }, 20s))
        << "writes did not resume\n"
        << a->log();
    stop = true;
    for (auto& thread : load) {
        thread.join();
    }
    // Every acknowledged job is there and ends exactly once.
    for (const auto& side : acknowledged) {
        for (const auto& id : side) {
            auto job = wait_for_job(*a, id, 30s);
            ASSERT_TRUE(job.is_object()) << "acknowledged job " << id << " is lost";
            ASSERT_EQ(str(job.at("state")), "succeeded") << boost::json::serialize(job) << "\n"
                                                         << a->log() << b->log();
            EXPECT_EQ(job.at("attempt").to_number<int>(), 1);
        }
    }
}

TEST_F(ScaleOutFaults, AnInstanceCutOffFromTheDatabaseStopsWritingAndSaysSo) {
    auto a = start("serve-a");
    ASSERT_EQ(status_of(http(*a, "GET", "/readyz")), 200);
    postgres_.pause();
    // A write waits at most busy_timeout, then fails naming the reason; readiness says so too.
    auto refused =
        http(*a, "POST", "/api/v1/leases", R"({"node":"lotus-0","owner":"alice"})", {}, 30s);
    ASSERT_TRUE(refused) << refused.error().message;
    EXPECT_GE(refused->status, 500U) << refused->body;
    EXPECT_NE(refused->body.find("postgres"), std::string::npos) << refused->body;
    auto ready = http(*a, "GET", "/readyz", {}, {}, 30s);
    EXPECT_EQ(status_of(ready), 503) << (ready ? ready->body : "");
    postgres_.resume();
    EXPECT_TRUE(wait_until([&] { return status_of(http(*a, "GET", "/readyz")) == 200; }, 20s))
        << a->log();
    auto taken = http(*a, "POST", "/api/v1/leases", R"({"node":"lotus-0","owner":"alice"})");
    EXPECT_EQ(status_of(taken), 201) << (taken ? taken->body : "");
}

TEST_F(ScaleOutFaults, SixtyFourAcquirersOnThreeInstancesRaceForOneNodeAndOneWinsEachRound) {
    std::unique_ptr<ServerProcess> servers[3] = {start("serve-a"), start("serve-b"),
                                                 start("serve-c")};
    for (int round = 0; round < 5; ++round) {
        std::atomic<int> won{0};
        std::atomic<int> busy{0};
        std::string winner_lease;
        std::mutex mu;
        std::vector<std::thread> acquirers;
        for (int i = 0; i < 64; ++i) {
            acquirers.emplace_back([&, i] {
                const auto& server = *servers[i % 3];
                auto response = http(server, "POST", "/api/v1/leases",
                                     fmt::format(R"({{"node":"lotus-0","owner":"racer-{}"}})", i));
                if (status_of(response) == 201) {
                    won.fetch_add(1);
                    std::lock_guard lock{mu};
                    winner_lease = str(json_of(response).at("id"));
                } else if (status_of(response) == 409) {
                    busy.fetch_add(1);
                }
            });
        }
        for (auto& thread : acquirers) {
            thread.join();
        }
        ASSERT_EQ(won.load(), 1) << "round " << round;
        ASSERT_EQ(busy.load(), 63) << "round " << round;
        auto freed =
            http(*servers[round % 3], "DELETE", fmt::format("/api/v1/leases/{}", winner_lease));
        ASSERT_EQ(status_of(freed), 200) << (freed ? freed->body : "");
    }
}

TEST_F(ScaleOutFaults, WaitersOnThreeInstancesAreServedInTheOrderTheyQueued) {
    std::unique_ptr<ServerProcess> servers[3] = {start("serve-a"), start("serve-b"),
                                                 start("serve-c")};
    auto held =
        http(*servers[0], "POST", "/api/v1/leases", R"({"node":"lotus-0","owner":"holder"})");
    ASSERT_EQ(status_of(held), 201);
    std::vector<std::future<core::Result<net::ClientResponse>>> waits;
    // Queue c (on C), then b (on B), then a (on A): each is queued before the next asks.
    const int order[3] = {2, 1, 0};
    for (int k = 0; k < 3; ++k) {
        int i = order[k];
        waits.push_back(std::async(std::launch::async, [&, i] {
            return http(*servers[i], "POST", "/api/v1/leases",
                        fmt::format(R"({{"node":"lotus-0","owner":"w{}","wait":"30s"}})", i), {},
                        40s);
        }));
        ASSERT_TRUE(wait_until([&] {
            auto leases = json_of(http(*servers[0], "GET", "/api/v1/leases"));
            return leases.is_object() &&
                   leases.at("waiters").as_array().size() == static_cast<std::size_t>(k + 1);
        }));
    }
    std::string lease = str(json_of(held).at("id"));
    for (int k = 0; k < 3; ++k) {
        auto freed = http(*servers[k], "DELETE", fmt::format("/api/v1/leases/{}", lease));
        ASSERT_EQ(status_of(freed), 200) << (freed ? freed->body : "");
        int i = order[k];
        ASSERT_EQ(waits[k].wait_for(15s), std::future_status::ready) << "waiter " << i;
        auto answer = waits[k].get();
        ASSERT_TRUE(answer);
        auto last = last_line(answer->body);
        ASSERT_TRUE(last.is_object()) << answer->body;
        EXPECT_EQ(str(last.at("lease").at("owner")), fmt::format("w{}", i)) << answer->body;
        lease = str(last.at("lease").at("id"));
        // The others still wait: served strictly in queue order.
        for (int later = k + 1; later < 3; ++later) {
            EXPECT_EQ(waits[later].wait_for(0s), std::future_status::timeout);
        }
    }
}

}  // namespace
}  // namespace aviary::test
