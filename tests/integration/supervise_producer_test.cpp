// bp mode (docs/producers.md) through the real binaries: `aviary serve` holds the producer
// lease, `aviary supervise --bp-mode` sidecars run aviary's sim node (nodeos's producer API:
// GET /v1/producer/paused, POST /v1/producer/pause and /resume), and every check is made over
// real HTTP, on the sidecars' control APIs, on serve's REST API and on the nodes' own ports.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <regex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "bp_support.hpp"
#include "net/net.hpp"
#include "rpc_helpers.hpp"
#include "supervise_support.hpp"
#include "support/ports.hpp"
#include "support/server_process.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(SuperviseProducer, NodesStartPassiveTheFenceRefusesASecondProducerAndGrowsAsProductionMoves) {
    ServerProcess serve{test_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    BpNode a{"bp-a", serve.url("")};
    BpNode b{"bp-b", serve.url("")};
    ASSERT_TRUE(a.wait_passive_and_ready()) << a.sidecar.err();
    ASSERT_TRUE(b.wait_passive_and_ready()) << b.sidecar.err();
    EXPECT_TRUE(a.started_passive());
    EXPECT_TRUE(b.started_passive());
    EXPECT_EQ(fence_of(a.sidecar), 0);
    EXPECT_EQ(fence_of(b.sidecar), 0);
    EXPECT_TRUE(lease_in(serve).empty()) << "nobody claimed yet";

    auto first = a.sidecar.command("safely_resume_production");
    EXPECT_EQ(first.status, 200);
    ASSERT_EQ(first.body, kResumed) << a.sidecar.err();
    EXPECT_EQ(a.paused(), false) << "A produces";
    auto sa = a.sidecar.status();
    EXPECT_EQ(sa["production"], "producing");
    EXPECT_EQ(sa["fence"], 1);
    auto lease = lease_in(serve);
    EXPECT_EQ(lease["holder"], "bp-a") << json::serialize(lease);
    EXPECT_EQ(lease["fence"], 1) << json::serialize(lease);

    // The fence refuses a second producer, naming the holder.
    auto refused = b.sidecar.command("safely_resume_production");
    EXPECT_EQ(refused.status, 500);
    EXPECT_TRUE(refused.body.starts_with(kResumeFailed +
                                         "producer lease eosio.bp is held by bp-a (fence 1)"))
        << refused.body;
    EXPECT_EQ(b.paused(), true) << "B was not resumed";
    EXPECT_EQ(fence_of(b.sidecar), 0);
    EXPECT_EQ(a.paused(), false) << "A still produces";
    EXPECT_EQ(lease_in(serve)["holder"], "bp-a");

    // Pause A: confirmed paused, the lease given back with its fence kept.
    auto paused = a.sidecar.command("safely_pause_production");
    EXPECT_EQ(paused.status, 200);
    EXPECT_EQ(paused.body, kPaused) << a.sidecar.err();
    EXPECT_EQ(a.paused(), true);
    sa = a.sidecar.status();
    EXPECT_EQ(sa["production"], "paused");
    EXPECT_EQ(sa["fence"], 0);
    lease = lease_in(serve);
    EXPECT_EQ(lease["holder"], "") << json::serialize(lease);
    EXPECT_EQ(lease["fence"], 1) << json::serialize(lease);

    // Resume elsewhere: B takes it with the next fence.
    auto moved = b.sidecar.command("safely_resume_production");
    EXPECT_EQ(moved.status, 200);
    EXPECT_EQ(moved.body, kResumed) << b.sidecar.err();
    EXPECT_EQ(b.paused(), false) << "B produces";
    EXPECT_EQ(a.paused(), true) << "A stays paused";
    auto sb = b.sidecar.status();
    EXPECT_EQ(sb["production"], "producing");
    EXPECT_EQ(sb["fence"], 2);
    lease = lease_in(serve);
    EXPECT_EQ(lease["key"], kKey);
    EXPECT_EQ(lease["holder"], "bp-b") << json::serialize(lease);
    EXPECT_EQ(lease["fence"], 2) << json::serialize(lease);

    // And now A is the one refused, naming B and the new fence.
    auto back = a.sidecar.command("safely_resume_production");
    EXPECT_EQ(back.status, 500);
    EXPECT_TRUE(
        back.body.starts_with(kResumeFailed + "producer lease eosio.bp is held by bp-b (fence 2)"))
        << back.body;
    EXPECT_EQ(a.paused(), true);
}

/// One read of one node's paused endpoint by the sampler.
struct Read {
    int node = -1;
    std::optional<bool> paused;
    Clock::time_point sent;
    Clock::time_point received;
};

/// One safely_resume_production call of the mover: while it runs, `node` may go from paused to
/// producing (nothing else resumes a node in this test).
struct ResumeWindow {
    int node = -1;
    Clock::time_point sent;
    Clock::time_point received;
};

TEST(SuperviseProducer, AtNoInstantDoTwoNodesProduceWhileProductionMovesAround) {
    ServerProcess serve{test_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    const std::array<const char*, 3> names{"bp-a", "bp-b", "bp-c"};
    std::vector<std::unique_ptr<BpNode>> nodes;
    for (const auto* name : names) {
        nodes.push_back(std::make_unique<BpNode>(name, serve.url("")));
    }
    for (auto& node : nodes) {
        ASSERT_TRUE(node->wait_passive_and_ready()) << node->sidecar.err();
    }
    std::vector<std::string> upstreams;
    for (auto& node : nodes) {
        upstreams.push_back(node->upstream);
    }

    // The sampler: every node's own paused endpoint, one after the other, every few ms, until
    // told to stop, a bounded number of passes, or a deadline.
    constexpr std::size_t kMaxPasses = 100'000;
    std::vector<std::array<Read, 3>> passes;
    passes.reserve(kMaxPasses);
    std::array<std::atomic<int>, 3> seen_producing{};
    std::jthread sampler{[&](const std::stop_token& stop) {
        const auto deadline = Clock::now() + 150s;
        while (!stop.stop_requested() && passes.size() < kMaxPasses && Clock::now() < deadline) {
            std::array<Read, 3> pass;
            for (int i = 0; i < 3; ++i) {
                pass[i].node = i;
                pass[i].sent = Clock::now();
                pass[i].paused = node_paused(upstreams[i]);
                pass[i].received = Clock::now();
                if (pass[i].paused == false) {
                    seen_producing[i].fetch_add(1);
                }
            }
            passes.push_back(pass);
            std::this_thread::sleep_for(1ms);
        }
    }};

    // The mover: A -> B -> C -> A, five rounds, each a pause then a resume elsewhere.
    constexpr int kRounds = 5;
    std::vector<int> order;
    for (int i = 0; i <= 3 * kRounds; ++i) {
        order.push_back(i % 3);
    }
    std::vector<ResumeWindow> resumes;
    std::vector<std::int64_t> fences;
    for (std::size_t step = 0; step < order.size(); ++step) {
        const int to = order[step];
        if (step > 0) {
            const int from = order[step - 1];
            auto paused = nodes[from]->sidecar.command("safely_pause_production");
            ASSERT_EQ(paused.body, kPaused)
                << "step " << step << ": " << names[from] << ": " << nodes[from]->sidecar.err();
        }
        const int seen_before = seen_producing[to].load();
        ResumeWindow window{.node = to, .sent = Clock::now()};
        auto resumed = nodes[to]->sidecar.command("safely_resume_production");
        window.received = Clock::now();
        resumes.push_back(window);
        ASSERT_EQ(resumed.body, kResumed)
            << "step " << step << ": " << names[to] << ": " << nodes[to]->sidecar.err();
        fences.push_back(fence_of(nodes[to]->sidecar));
        // Hold production here until the sampler has seen this node produce a few times.
        EXPECT_TRUE(wait_until([&] { return seen_producing[to].load() >= seen_before + 3; }, 10s))
            << names[to] << " was never seen producing after its resume (step " << step << ")";
    }
    sampler.request_stop();
    sampler.join();

    // The fence grows by one at each change of hands.
    std::vector<std::int64_t> expected_fences;
    for (std::size_t i = 0; i < order.size(); ++i) {
        expected_fences.push_back(static_cast<std::int64_t>(i) + 1);
    }
    EXPECT_EQ(fences, expected_fences);
    auto lease = lease_in(serve);
    EXPECT_EQ(lease["holder"], "bp-a") << json::serialize(lease);
    EXPECT_EQ(lease["fence"], static_cast<std::int64_t>(order.size())) << json::serialize(lease);

    // Two nodes answering false in one pass, X read before Y, prove that both produced at once
    // unless Y may have been resumed in between: a node goes from paused to producing only
    // inside a safely_resume_production call of the mover, so if none for Y overlaps
    // [X's read sent, Y's read answered], Y produced already when X was read.
    std::size_t overlaps = 0;
    std::vector<std::string> first_overlaps;  // the first few, for the failure message
    std::size_t unproven = 0;
    std::array<int, 3> producing_passes{};
    std::size_t unanswered = 0;
    for (std::size_t p = 0; p < passes.size(); ++p) {
        const auto& pass = passes[p];
        for (int x = 0; x < 3; ++x) {
            if (!pass[x].paused) {
                ++unanswered;
            } else if (!*pass[x].paused) {
                ++producing_passes[x];
            }
        }
        for (int x = 0; x < 3; ++x) {
            for (int y = x + 1; y < 3; ++y) {
                if (pass[x].paused != false || pass[y].paused != false) {
                    continue;
                }
                const auto from = pass[x].sent;
                const auto to = pass[y].received;
                const bool y_may_have_resumed =
                    std::any_of(resumes.begin(), resumes.end(), [&](const ResumeWindow& r) {
                        return r.node == y && r.sent <= to && r.received >= from;
                    });
                if (y_may_have_resumed) {
                    ++unproven;
                    continue;
                }
                if (++overlaps <= 10) {
                    first_overlaps.push_back(std::string{names[x]} + " and " + names[y] +
                                             " in sample " + std::to_string(p) + " of " +
                                             std::to_string(passes.size()));
                }
            }
        }
    }
    EXPECT_EQ(overlaps, 0U) << "samples saw two nodes producing at once: "
                            << ::testing::PrintToString(first_overlaps);
    for (int i = 0; i < 3; ++i) {
        EXPECT_GT(producing_passes[i], 0) << names[i] << " was never seen producing";
    }
    EXPECT_GT(passes.size(), order.size()) << "the sampler barely ran";
    EXPECT_EQ(unanswered, 0U) << "some reads of the nodes' paused endpoints failed";
    RecordProperty("samples", static_cast<int>(passes.size()));
    RecordProperty("unproven_double_reads", static_cast<int>(unproven));
}

TEST(SuperviseProducer, ANodeResumedBehindItsSidecarsBackIsPausedAgain) {
    ServerProcess serve{test_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    BpNode a{"bp-a", serve.url("")};
    BpNode b{"bp-b", serve.url("")};
    ASSERT_TRUE(a.wait_passive_and_ready()) << a.sidecar.err();
    ASSERT_TRUE(b.wait_passive_and_ready()) << b.sidecar.err();
    ASSERT_EQ(b.sidecar.command("safely_resume_production").body, kResumed) << b.sidecar.err();

    // Someone resumes A through the node's own API, not through its sidecar.
    auto direct = net::fetch_sync(
        net::ClientRequest{.method = "POST", .url = a.upstream + "/v1/producer/resume"});
    ASSERT_TRUE(direct) << direct.error().message;
    ASSERT_EQ(direct->status, 200) << direct->body;

    EXPECT_TRUE(wait_until([&] { return a.paused() == true; }, 10s))
        << "A still produces without the lease: " << a.sidecar.err();
    EXPECT_TRUE(wait_until(
        [&] {
            return a.sidecar.err().find(
                       "node bp-a is producing without the producer lease: pausing it") !=
                   std::string::npos;
        },
        10s))
        << "A's sidecar did not say it paused A: " << a.sidecar.err();
    EXPECT_TRUE(wait_until([&] { return a.sidecar.status()["production"] == "paused"; }, 10s));
    EXPECT_EQ(fence_of(a.sidecar), 0);

    // The holder is untouched.
    EXPECT_EQ(b.paused(), false);
    EXPECT_EQ(fence_of(b.sidecar), 1);
    auto lease = lease_in(serve);
    EXPECT_EQ(lease["holder"], "bp-b") << json::serialize(lease);
    EXPECT_EQ(lease["fence"], 1) << json::serialize(lease);
    EXPECT_EQ(b.sidecar.err().find("without the producer lease"), std::string::npos)
        << b.sidecar.err();
}

TEST(SuperviseProducer, ASidecarThatLosesServeStopsProducingAndCannotResume) {
    ServerProcess serve{test_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    const std::string serve_url = serve.url("");
    BpNode b{"bp-b", serve_url, "producer:\n  lease_ttl: 3s\n"};
    ASSERT_TRUE(b.wait_passive_and_ready()) << b.sidecar.err();
    ASSERT_EQ(b.sidecar.command("safely_resume_production").body, kResumed) << b.sidecar.err();
    ASSERT_EQ(b.paused(), false);
    auto claimed = lease_in(serve);
    ASSERT_EQ(claimed["holder"], "bp-b") << json::serialize(claimed);

    // While serve is up the sidecar renews the lease: same holder and fence, later expiry.
    json::object renewed;
    EXPECT_TRUE(wait_until(
        [&] {
            renewed = lease_in(serve);
            return renewed["expires_at"] != claimed["expires_at"];
        },
        10s))
        << json::serialize(claimed);
    EXPECT_EQ(renewed["holder"], "bp-b") << json::serialize(renewed);
    EXPECT_EQ(renewed["fence"], claimed["fence"]) << json::serialize(renewed);
    EXPECT_EQ(b.paused(), false) << "renewing does not stop production";

    serve.kill9();
    EXPECT_TRUE(wait_until([&] { return b.paused() == true; }, 10s))
        << "B still produces after serve went away: " << b.sidecar.err();
    EXPECT_TRUE(wait_until([&] { return fence_of(b.sidecar) == 0; }, 10s)) << b.sidecar.err();
    EXPECT_NE(b.sidecar.err().find("could not be renewed"), std::string::npos) << b.sidecar.err();

    auto refused = b.sidecar.command("safely_resume_production");
    EXPECT_EQ(refused.status, 500);
    EXPECT_TRUE(refused.body.starts_with(kResumeFailed + "serve " + serve_url)) << refused.body;
    EXPECT_EQ(b.paused(), true) << "not resumed without the lease";
    EXPECT_EQ(fence_of(b.sidecar), 0);
}

TEST(SuperviseProducer, WithoutBpModeTheProductionCommandsAreNotSupported) {
    TempDir dir;
    const int port = free_port();
    const std::string upstream = "http://127.0.0.1:" + std::to_string(port);
    Sidecar sidecar{{"--chain", "sim", "--proxy", "127.0.0.1:0", "--upstream", upstream},
                    sim_node(dir.path(), port)};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.status()["readiness"] == "ready"; }, 30s))
        << sidecar.err();
    EXPECT_EQ(node_paused(upstream), false) << "without bp mode the node starts producing";
    auto resumed = sidecar.command("safely_resume_production");
    EXPECT_EQ(resumed.status, 500);
    EXPECT_EQ(resumed.body,
              "ERROR: safely_resume_production failed: not supported without bp mode");
    auto paused = sidecar.command("safely_pause_production");
    EXPECT_EQ(paused.status, 500);
    EXPECT_EQ(paused.body, "ERROR: safely_pause_production failed: not supported without bp mode");
    EXPECT_EQ(node_paused(upstream), false) << "the refused pause left the node alone";
    auto s = sidecar.status();
    EXPECT_FALSE(s.contains("production")) << json::serialize(s);
    EXPECT_FALSE(s.contains("fence")) << json::serialize(s);
}

TEST(SuperviseProducer, BpModeWithoutServeStartsPassiveAndRefusesToResumeNamingServe) {
    BpNode a{"bp-a", ""};
    ASSERT_TRUE(a.wait_passive_and_ready()) << a.sidecar.err();
    EXPECT_TRUE(a.started_passive());
    auto refused = a.sidecar.command("safely_resume_production");
    EXPECT_EQ(refused.status, 500);
    EXPECT_TRUE(refused.body.starts_with(kResumeFailed)) << refused.body;
    EXPECT_NE(refused.body.find("--serve"), std::string::npos) << refused.body;
    EXPECT_EQ(a.paused(), true) << "not resumed";
    EXPECT_EQ(fence_of(a.sidecar), 0);
    // A pause needs no lease: it is confirmed.
    auto paused = a.sidecar.command("safely_pause_production");
    EXPECT_EQ(paused.status, 200);
    EXPECT_EQ(paused.body, kPaused);
}

// Rounds of 20 blocks of 50 ms: 1 s each.
constexpr int kRoundBlocks = 20;
const std::vector<std::string> kScheduleArgs = schedule_args(kRoundBlocks);

TEST(SuperviseProducer, TheRoundStatusFollowsTheScheduleAndAPauseWaitsForTheRoundsEnd) {
    ServerProcess serve{test_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    BpNode a{"bp-a", serve.url(""), "synced:\n  interval: 50ms\n", kScheduleArgs};
    BpNode plain{"bp-plain", serve.url(""), "synced:\n  interval: 50ms\n"};
    ASSERT_TRUE(a.wait_passive_and_ready()) << a.sidecar.err();
    ASSERT_TRUE(plain.wait_passive_and_ready()) << plain.sidecar.err();

    // Every status the seed names comes round, each agreeing with the head's producer.
    for (const std::string want : {"producing", "just produced", "producing next"}) {
        json::object seen;
        EXPECT_TRUE(wait_until(
            [&] {
                seen = a.sidecar.status();
                return seen["round"] == want.c_str();
            },
            20s))
            << want << " never seen: " << json::serialize(seen);
        EXPECT_EQ(seen["in_schedule"], true);
        const std::string head{seen["head_producer"].as_string()};
        const std::string expected = want == "producing"       ? kKey
                                     : want == "just produced" ? "charlie"
                                                               : "alpha";
        EXPECT_EQ(head, expected) << json::serialize(seen);
    }
    // A node whose schedule does not list the account: known, and not in it.
    auto other = plain.sidecar.status();
    EXPECT_TRUE(wait_until([&] {
        other = plain.sidecar.status();
        return other["in_schedule"].is_bool();
    })) << json::serialize(other);
    EXPECT_EQ(other["in_schedule"], false) << json::serialize(other);
    EXPECT_EQ(other["round"], "not producing") << json::serialize(other);
    EXPECT_EQ(other["head_producer"], "eosio") << json::serialize(other);

    ASSERT_EQ(a.sidecar.command("safely_resume_production").body, kResumed) << a.sidecar.err();
    // Pause while the node is producing its round: the pause lands after the round, never in
    // it. (A round is 1 s; the sidecar reads the head every 50 ms.)
    ASSERT_TRUE(wait_until([&] { return a.sidecar.status()["round"] == "producing"; }, 20s))
        << a.sidecar.err();
    auto paused = a.sidecar.command("safely_pause_production");
    EXPECT_EQ(paused.body, kPaused) << a.sidecar.err();
    EXPECT_EQ(a.paused(), true);
    std::optional<std::int64_t> height;
    ASSERT_TRUE(wait_until([&] { return (height = paused_at(a.sidecar.out())).has_value(); }))
        << a.sidecar.out();
    EXPECT_NE(scheduled_producer(*height, kRoundBlocks), kKey)
        << "paused at height " << *height << ", inside the account's own round";
    EXPECT_NE(a.sidecar.err().find("node bp-a is producing its round (head block by eosio.bp): "
                                   "the pause waits for its end"),
              std::string::npos)
        << a.sidecar.err();
    EXPECT_EQ(fence_of(a.sidecar), 0);
    EXPECT_EQ(lease_in(serve)["holder"], "");
}

TEST(SuperviseProducer, ARoundLongerThanThePauseTimeoutFailsThePauseAndKeepsTheProducer) {
    ServerProcess serve{test_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    // Rounds of 10 s: the pause cannot wait for one within its 300 ms.
    BpNode a{"bp-a",
             serve.url(""),
             "synced:\n  interval: 50ms\nproducer:\n  pause_timeout: 300ms\n",
             {"--schedule", "eosio.bp,bravo", "--round-blocks", "200"}};
    ASSERT_TRUE(a.wait_passive_and_ready()) << a.sidecar.err();
    ASSERT_EQ(a.sidecar.command("safely_resume_production").body, kResumed) << a.sidecar.err();
    ASSERT_TRUE(wait_until([&] { return a.sidecar.status()["round"] == "producing"; }, 30s))
        << a.sidecar.err();
    auto refused = a.sidecar.command("safely_pause_production");
    EXPECT_TRUE(refused.body.starts_with("ERROR: safely_pause_production failed: "))
        << refused.body;
    EXPECT_NE(refused.body.find("node bp-a was still producing its round after 300ms (head "
                                "block by eosio.bp): not paused"),
              std::string::npos)
        << refused.body;
    EXPECT_EQ(a.paused(), false) << "the producer was left producing, as the error says";
    EXPECT_EQ(fence_of(a.sidecar), 1);
    EXPECT_EQ(lease_in(serve)["holder"], "bp-a");
}

TEST(SuperviseProducer, ABackupRefusesTheNodeOnTheHookToProduceAndRunsOncePaused) {
    ServerProcess serve{test_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    TempDir backups;
    BpNode a{"bp-a", serve.url(""), "backup:\n  dir: " + backups.path() + "\n"};
    ASSERT_TRUE(a.wait_passive_and_ready()) << a.sidecar.err();
    ASSERT_EQ(a.sidecar.command("safely_resume_production").body, kResumed) << a.sidecar.err();
    const auto starts = a.sidecar.status()["starts"];

    auto refused = a.sidecar.command("backup");
    EXPECT_EQ(refused.body,
              "ERROR: backup failed: node bp-a is on the hook to produce: it holds producer lease "
              "eosio.bp (fence 1); hand production over first (aviary switch-producer --from "
              "bp-a --to ...) or pause it (safely_pause_production)")
        << a.sidecar.err();
    EXPECT_EQ(a.paused(), false) << "still producing";
    EXPECT_EQ(a.sidecar.status()["starts"], starts) << "the node was not stopped";
    EXPECT_EQ(lease_in(serve)["holder"], "bp-a");

    ASSERT_EQ(a.sidecar.command("safely_pause_production").body, kPaused) << a.sidecar.err();
    auto made = a.sidecar.command("backup");
    EXPECT_EQ(made.body, "Success: backup completed") << a.sidecar.err();
    EXPECT_TRUE(a.wait_passive_and_ready()) << "the node starts again, passive";
}

TEST(SuperviseProducer, BpModeWithAChainWithoutAProducerApiIsRefusedAtStart) {
    TempDir dir;
    const std::string marker = dir.path() + "/node-ran";
    auto refused = run_command(
        "timeout 60 " + shell_quote(AVIARY_BINARY) +
        " supervise --chain none --bp-mode --restart never --control 127.0.0.1:0 --proxy '' "
        "--state-dir " +
        shell_quote(dir.path() + "/state") + " -- /bin/sh -c " +
        shell_quote("touch " + shell_quote(marker)) + " 2>&1");
    EXPECT_EQ(refused.status, 2) << refused.output;
    EXPECT_NE(refused.output.find("bp mode needs a chain preset with a producer API"),
              std::string::npos)
        << refused.output;
    EXPECT_NE(refused.output.find("none has no producer API"), std::string::npos) << refused.output;
    EXPECT_FALSE(std::filesystem::exists(marker)) << "the node was started";
}

}  // namespace
}  // namespace aviary::test
