// Leases that hand out only healthy nodes (docs/probes.md, "Gated leases"), through the real
// serve: a pool names a gate scenario; its nodes go to acquires by selector once their gate
// passed; a node back from a lease runs its gate again, and a failure puts it in maintenance
// with the reason and fires alarm gate/NODE, which a webhook hears.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <string>

#include "rpc_helpers.hpp"
#include "support/fake_receiver.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

json::value node_of(ServerProcess& server, std::string_view name) {
    return json_of(http(server, "GET", fmt::format("/api/v1/nodes/{}", name)));
}

bool gate_passed(ServerProcess& server, std::string_view name) {
    auto node = node_of(server, name);
    return node.is_object() && node.as_object().contains("gate_passed_until") &&
           node.at("gate_passed_until").is_string();
}

TEST(GatedLeases, OnlyNodesThatPassedTheirGateAreHandedOutAndAFailureIsMaintenance) {
    FakeReceiver health;  // each node's health endpoint: /health/NODE
    FakeReceiver hook;
    ASSERT_TRUE(health.start());
    ASSERT_TRUE(hook.start());
    ServerProcess server{test_config() + fmt::format(R"(notify:
  notifiers:
    pager: {{type: webhook, url: "{}"}}
  delivery: {{retry_backoff: 100ms, retry_backoff_max: 200ms, poll: 200ms}}
probes:
  gate_poll: 200ms
  scenarios:
    node-healthy:
      enabled: false
      timeout: 5s
      steps:
        - name: health
          http: {{url: "{}/health/{{{{node}}}}"}}
          assert: ["status == 200"]
  gates:
    canaries:
      selector: {{chain: lotus}}
      scenario: node-healthy
      max_age: 10m
)",
                                                     hook.url(), health.url(""))};
    ASSERT_TRUE(server.start()) << server.log();
    for (const auto* name : {"lotus-0", "lotus-1", "lotus-2"}) {
        ASSERT_TRUE(wait_until([&] { return gate_passed(server, name); }, 20s))
            << name << ": " << node_of(server, name) << server.log();
    }
    // Each gate run asked the node's own endpoint.
    bool asked_lotus_1 = false;
    for (const auto& r : health.received()) {
        asked_lotus_1 |= r.path == "/health/lotus-1";
    }
    EXPECT_TRUE(asked_lotus_1);

    // A selector acquire gets a passed node, and the lease uses its pass up.
    auto acquired = http(server, "POST", "/api/v1/leases",
                         R"({"selector": {"chain": "lotus"}, "owner": "dev", "ttl": "10m"})",
                         {net::Header{"Content-Type", "application/json"}});
    ASSERT_TRUE(acquired);
    ASSERT_EQ(acquired->status, 201) << acquired->body;
    auto lease = json::parse(acquired->body);
    const std::string node{lease.at("nodes").at(0).as_string()};
    const std::string id{lease.at("id").as_string()};
    EXPECT_FALSE(gate_passed(server, node)) << node_of(server, node);

    // The node breaks while leased; back from the lease, its gate fails: maintenance, alarm.
    health.answer(500);
    auto released = http(server, "DELETE", "/api/v1/leases/" + id);
    ASSERT_TRUE(released);
    ASSERT_LT(released->status, 300) << released->body;
    ASSERT_TRUE(wait_until(
        [&] { return node_of(server, node).at("state").as_string() == "maintenance"; }, 20s))
        << node_of(server, node) << server.log();
    auto reason = std::string{node_of(server, node).at("maintenance_reason").as_string()};
    EXPECT_NE(reason.find("gate canaries failed (broken)"), std::string::npos) << reason;
    ASSERT_TRUE(wait_until(
        [&] {
            for (const auto& r : hook.received()) {
                auto body = json::parse(r.body);
                if (body.at("alarm").as_string() == "gate/" + node &&
                    body.at("kind").as_string() == "firing") {
                    return true;
                }
            }
            return false;
        },
        20s))
        << server.log();

    // A selector acquire of every lotus node now waits: one is in maintenance.
    auto all = http(server, "POST", "/api/v1/leases",
                    R"({"selector": {"chain": "lotus"}, "count": 3, "owner": "dev"})",
                    {net::Header{"Content-Type", "application/json"}});
    ASSERT_TRUE(all);
    EXPECT_EQ(all->status, 409) << all->body;
    EXPECT_NE(all->body.find("1 in maintenance"), std::string::npos) << all->body;

    // Mended and back in service: its gate passes again and the alarm resolves.
    health.answer(200);
    auto back = http(server, "DELETE", fmt::format("/api/v1/nodes/{}/maintenance", node));
    ASSERT_TRUE(back);
    ASSERT_EQ(back->status, 200) << back->body;
    ASSERT_TRUE(wait_until([&] { return gate_passed(server, node); }, 20s)) << server.log();
    ASSERT_TRUE(wait_until(
        [&] {
            auto alarms = json_of(http(server, "GET", "/api/v1/alarms"));
            for (const auto& a : alarms.at("alarms").as_array()) {
                if (a.at("name").as_string() == "gate/" + node) {
                    return a.at("state").as_string() == "ok";
                }
            }
            return false;
        },
        20s));
    EXPECT_EQ(server.stop(), 0) << server.log();
}

}  // namespace
}  // namespace aviary::test
