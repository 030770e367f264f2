// Chain checks as canary steps (docs/probes.md, "Chain checks"), against real simulated nodes
// (`aviary sim-node`, read through the `sim` chain preset `aviary supervise` uses): a synced
// node passes, a node whose producer is paused stops advancing and falls behind its peer, and
// a preset that does not exist is refused at load. A lag check finds its peers in the pool.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "cli_support.hpp"
#include "rpc_helpers.hpp"
#include "support/peer_process.hpp"
#include "support/ports.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

/// A sim node on 127.0.0.1:`port`, a block every 50 ms.
std::vector<std::string> sim_node_argv(const std::string& dir, int port) {
    return {AVIARY_BINARY,      "sim-node",
            "--data-dir",       dir,
            "--version",        "v1.0.0",
            "--port-file",      dir + "/port",
            "--listen",         "127.0.0.1:" + std::to_string(port),
            "--block-interval", "50ms"};
}

std::string run_of(ServerProcess& server, std::string_view name, json::value& result) {
    auto got = http(server, "POST", fmt::format("/api/v1/probes/{}/run", name));
    if (!got || got->status != 200) {
        return got ? got->body : got.error().message;
    }
    result = json::parse(got->body);
    return std::string{result.at("outcome").as_string()};
}

TEST(ChainProbes, SyncedAdvancingAndLagReadThroughTheSidecarsPresets) {
    TempDir a_dir;
    TempDir b_dir;
    const int a_port = free_port();
    const int b_port = free_port();
    PeerProcess a{sim_node_argv(a_dir.path(), a_port), a_dir.path() + "/log"};
    PeerProcess b{sim_node_argv(b_dir.path(), b_port), b_dir.path() + "/log"};
    ASSERT_TRUE(wait_for_tcp(a_port)) << a.log();
    ASSERT_TRUE(wait_for_tcp(b_port)) << b.log();
    const auto a_url = fmt::format("http://127.0.0.1:{}", a_port);
    const auto b_url = fmt::format("http://127.0.0.1:{}", b_port);
    ServerProcess server{test_config() + fmt::format(R"(probes:
  scenarios:
    a-synced:
      enabled: false
      steps:
        - chain: {{preset: sim, url: "{0}", check: synced, max_head_age: 5s}}
          assert: ["json.height > 0", "json.syncing == false"]
    a-advancing:
      enabled: false
      steps:
        - chain: {{preset: sim, url: "{0}", check: advancing, within: 3s}}
          assert: ["json.advanced_by > 0"]
    b-advancing:
      enabled: false
      steps:
        - chain: {{preset: sim, url: "{1}", check: advancing, within: 1s}}
    b-lag:
      enabled: false
      steps:
        - chain: {{preset: sim, url: "{1}", check: lag, peers: ["{0}"], max_lag: 5}}
)",
                                                     a_url, b_url)};
    ASSERT_TRUE(server.start()) << server.log();

    json::value result;
    EXPECT_EQ(run_of(server, "a-synced", result), "passed") << result;
    EXPECT_EQ(run_of(server, "a-advancing", result), "passed") << result;
    EXPECT_EQ(run_of(server, "b-lag", result), "passed") << result;

    // b's producer pauses: its head stops, and a pulls ahead.
    auto paused = net::fetch_sync(
        net::ClientRequest{.method = "POST", .url = b_url + "/v1/producer/pause", .timeout = 5s});
    ASSERT_TRUE(paused);
    ASSERT_LT(paused->status, 300) << paused->body;
    EXPECT_EQ(run_of(server, "b-advancing", result), "failed") << result;
    EXPECT_NE(std::string{result.at("message").as_string()}.find("head stayed at"),
              std::string::npos)
        << result;
    ASSERT_TRUE(wait_until([&] { return run_of(server, "b-lag", result) == "failed"; }, 20s))
        << result;
    EXPECT_NE(std::string{result.at("message").as_string()}.find("blocks behind its peers"),
              std::string::npos)
        << result;

    // A node that is not there: broken, not failed (availability, not correctness).
    a.stop();
    EXPECT_EQ(run_of(server, "a-synced", result), "broken") << result;
    EXPECT_EQ(server.stop(), 0) << server.log();
}

// The lag check's peers found in the pool: the nodes labelled chain=sim, each reached through
// its own `rpc` label, less the scenario's own node and those in maintenance.
TEST(ChainProbes, ALagCheckComparesWithTheFleetsOtherNodesOfTheChain) {
    std::vector<std::unique_ptr<TempDir>> dirs;
    std::vector<std::unique_ptr<PeerProcess>> sims;
    std::vector<std::string> urls;
    std::vector<int> ports;
    // Started together, so their heights start together: each counts blocks from its start.
    for (int i = 0; i < 3; ++i) {
        dirs.push_back(std::make_unique<TempDir>());
        ports.push_back(free_port());
        sims.push_back(std::make_unique<PeerProcess>(
            sim_node_argv(dirs.back()->path(), ports.back()), dirs.back()->path() + "/log"));
        urls.push_back(fmt::format("http://127.0.0.1:{}", ports.back()));
    }
    for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(wait_for_tcp(ports[i])) << sims[i]->log();
    }
    ServerProcess server{fmt::format(R"(fleet:
  nodes:
    - {{name: chain-a, driver: sim, labels: {{chain: sim, rpc: "{0}"}}}}
    - {{name: chain-b, driver: sim, labels: {{chain: sim, rpc: "{1}"}}}}
    - {{name: chain-c, driver: sim, labels: {{chain: sim, rpc: "{2}"}}}}
    - {{name: other-0, driver: sim, labels: {{chain: lotus, rpc: "http://127.0.0.1:1"}}}}
server:
  shutdown_grace: 10s
probes:
  scenarios:
    b-lag:
      enabled: false
      node: chain-b
      steps:
        - chain: {{preset: sim, url: "{1}", check: lag, fleet: {{chain: sim}},
                  peer_url: "{{{{peer.rpc}}}}", max_lag: 5}}
    b-peers:
      enabled: false
      node: chain-b
      steps:
        - chain: {{preset: sim, url: "{1}", check: lag, fleet: {{chain: sim}},
                  peer_url: "{{{{peer.rpc}}}}", max_lag: 1000000}}
          assert: ["json.peers == 2", "json.peers_read == 2"]
)",
                                     urls[0], urls[1], urls[2])};
    ASSERT_TRUE(server.start()) << server.log();

    json::value result;
    EXPECT_EQ(run_of(server, "b-lag", result), "passed") << result;
    EXPECT_EQ(run_of(server, "b-peers", result), "passed") << result;

    // b's producer pauses: a and c pull ahead of it.
    auto paused = net::fetch_sync(
        net::ClientRequest{.method = "POST", .url = urls[1] + "/v1/producer/pause", .timeout = 5s});
    ASSERT_TRUE(paused);
    ASSERT_LT(paused->status, 300) << paused->body;
    ASSERT_TRUE(wait_until([&] { return run_of(server, "b-lag", result) == "failed"; }, 20s))
        << result;
    EXPECT_NE(std::string{result.at("message").as_string()}.find("blocks behind its peers"),
              std::string::npos)
        << result;

    // c in maintenance is no peer: one is left.
    auto maintenance =
        http(server, "PUT", "/api/v1/nodes/chain-c/maintenance", R"({"reason": "resync"})",
             {net::Header{"Content-Type", "application/json"}});
    ASSERT_TRUE(maintenance && maintenance->status < 300)
        << (maintenance ? maintenance->body : maintenance.error().message);
    EXPECT_EQ(run_of(server, "b-peers", result), "failed") << result;
    EXPECT_NE(result.at("message").as_string().find("json.peers == 2"), std::string::npos)
        << result;

    // The one peer left stops: nothing to compare with is not a pass, and not b's fault.
    sims[0]->stop();
    EXPECT_EQ(run_of(server, "b-peers", result), "broken") << result;
    EXPECT_NE(std::string{result.at("message").as_string()}.find("none of"), std::string::npos)
        << result;
    EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST(ChainProbes, AnUnknownPresetOrACheckKeyOfAnotherCheckIsRefusedAtLoad) {
    TempDir dir;
    const std::string path = dir.path() + "/canary.yaml";
    {
        std::ofstream out{path};
        out << R"(probes:
  scenarios:
    head:
      steps:
        - chain: {preset: gethh, url: "http://127.0.0.1:8545"}
        - chain: {preset: geth, url: "http://127.0.0.1:8545", check: synced, max_lag: 3}
        - chain: {preset: geth, url: "http://127.0.0.1:8545", check: lag, fleet: {chain: geth}}
        - chain: {preset: geth, url: "http://{{node}}:8545", check: lag, peers: ["http://x:1"],
                  peer_url: "http://{{peer}}:8545"}
        - chain: {preset: geth, url: "http://{{node}}:8545", check: lag}
)";
    }
    auto run = run_aviary("http://127.0.0.1:1", "probe run head --config " + path, dir.path());
    EXPECT_EQ(run.status, 2) << run.out << run.err;
    EXPECT_NE(run.err.find("unknown chain \"gethh\""), std::string::npos) << run.err;
    EXPECT_NE(run.err.find("max_lag applies to check lag, and this one is synced"),
              std::string::npos)
        << run.err;
    EXPECT_NE(run.err.find("\"http://127.0.0.1:8545\" has no {{node}}: give peer_url"),
              std::string::npos)
        << run.err;
    EXPECT_NE(run.err.find("peer_url says how to reach the nodes `fleet` selects"),
              std::string::npos)
        << run.err;
    EXPECT_NE(run.err.find("a lag check needs peers to compare with"), std::string::npos)
        << run.err;
}

}  // namespace
}  // namespace aviary::test
