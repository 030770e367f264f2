#include <gtest/gtest.h>

#include <algorithm>

#include "store_support.hpp"

namespace aviary::store::test {
namespace {

AVIARY_STORE_SUITE(Machines);
AVIARY_STORE_SUITE(Nodes);

using core::ErrorCode;

TEST_P(Nodes, ListShowsALapsedLeaseAsFree) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "alice", clock.now(), 1h)));
    auto before = store->nodes(clock.now());
    ASSERT_TRUE(before);
    ASSERT_EQ(before->size(), 3U);
    EXPECT_EQ((*before)[1].state, core::NodeState::kLeased);
    clock.advance(1h);
    auto after = store->nodes(clock.now());
    ASSERT_TRUE(after);
    EXPECT_EQ((*after)[1].state, core::NodeState::kFree);
    EXPECT_FALSE((*after)[1].lease);
    EXPECT_EQ((*after)[1].spec.labels.at("chain"), "lotus");
}

TEST_P(Nodes, ReconcileAddsUpdatesAndRemovesConfigNodes) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 3);
    ASSERT_TRUE(store);
    auto specs = lotus_nodes(4);    // lotus-3 is new
    specs.erase(specs.begin());     // lotus-0 is gone
    specs[0].image_tag = "v1.1.0";  // lotus-1 changes
    auto report = store->reconcile_nodes(specs, "config", clock.now());
    ASSERT_TRUE(report) << report.error().message;
    EXPECT_EQ(report->added, (std::vector<std::string>{"lotus-3"}));
    EXPECT_EQ(report->updated, (std::vector<std::string>{"lotus-1"}));
    EXPECT_EQ(report->removed, (std::vector<std::string>{"lotus-0"}));
    EXPECT_TRUE(report->kept_leased.empty());

    auto nodes = store->nodes(clock.now());
    ASSERT_TRUE(nodes);
    ASSERT_EQ(nodes->size(), 3U);
    EXPECT_EQ((*nodes)[0].spec.name, "lotus-1");
    EXPECT_EQ((*nodes)[0].spec.image_tag, "v1.1.0");

    auto events = store->events(all_events("lotus-1"));
    ASSERT_TRUE(events);
    EXPECT_EQ(events->front().kind, "node.updated");
    EXPECT_NE(events->front().before.find("v1.0.0"), std::string::npos);
    EXPECT_NE(events->front().after.find("v1.1.0"), std::string::npos);
    EXPECT_EQ(kinds(*store, "lotus-0").front(), "node.removed");

    auto unchanged = store->reconcile_nodes(specs, "config", clock.now());
    ASSERT_TRUE(unchanged);
    EXPECT_TRUE(unchanged->added.empty() && unchanged->updated.empty() &&
                unchanged->removed.empty());
}

TEST_P(Nodes, ReconcileKeepsALeasedNodeDroppedFromTheConfig) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 3);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-2", "anton", clock.now(), 1h)));
    auto report = store->reconcile_nodes(lotus_nodes(2), "config", clock.now());
    ASSERT_TRUE(report) << report.error().message;
    EXPECT_EQ(report->kept_leased, (std::vector<std::string>{"lotus-2"}));
    EXPECT_TRUE(report->removed.empty());
    EXPECT_EQ(kinds(*store, "lotus-2").front(), "node.kept");
    auto node = store->node("lotus-2", clock.now());
    ASSERT_TRUE(node);
    EXPECT_EQ(node->state, core::NodeState::kLeased);

    clock.advance(1h);  // once the lease lapses, the next reconcile removes the node
    auto later = store->reconcile_nodes(lotus_nodes(2), "config", clock.now());
    ASSERT_TRUE(later) << later.error().message;
    EXPECT_EQ(later->removed, (std::vector<std::string>{"lotus-2"}));
    EXPECT_EQ(kinds(*store, "lotus-2"),
              (std::vector<std::string>{"node.removed", "lease.expired", "node.kept",
                                        "lease.acquired", "node.added"}));
}

TEST_P(Nodes, ReconcileLeavesApiNodesUntouched) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 1);
    ASSERT_TRUE(store);
    ASSERT_TRUE(
        store->exec_for_test("INSERT INTO nodes (name, driver, image_tag, labels, note, source) "
                             "VALUES ('geth-0', 'ssh', 'v9', '{}', 'added by hand', 'api')"));
    auto specs = lotus_nodes(1);
    specs.push_back(core::NodeSpec{
        .name = "geth-0", .driver = "sim", .image_tag = "v1", .labels = {}, .note = ""});
    auto report = store->reconcile_nodes(specs, "config", clock.now());
    ASSERT_TRUE(report);
    EXPECT_TRUE(report->updated.empty());
    auto dropped = store->reconcile_nodes({}, "config", clock.now());
    ASSERT_TRUE(dropped);
    EXPECT_EQ(dropped->removed, (std::vector<std::string>{"lotus-0"}));
    auto node = store->node("geth-0", clock.now());
    ASSERT_TRUE(node);
    EXPECT_EQ(node->source, "api");
    EXPECT_EQ(node->spec.driver, "ssh");
    EXPECT_EQ(node->spec.note, "added by hand");
}

TEST_P(Nodes, ReconcileRefusesDuplicateNames) {
    core::ManualClock clock;
    auto store = open_store(memory_settings());
    ASSERT_TRUE(store);
    auto specs = lotus_nodes(2);
    specs[1].name = "lotus-0";
    auto report = store->reconcile_nodes(specs, "config", clock.now());
    ASSERT_FALSE(report);
    EXPECT_EQ(report.error().code, ErrorCode::kInvalidArgument);
}

TEST_P(Nodes, PutNodeAddsThenUpdatesAnApiNodeAndRefusesAConfigNode) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 1);
    ASSERT_TRUE(store);
    core::NodeSpec spec{.name = "geth-0", .driver = "ssh", .labels = {{"chain", "geth"}}};
    auto added = store->put_node(spec, "root", clock.now());
    ASSERT_TRUE(added) << added.error().message;
    EXPECT_TRUE(added->created);
    EXPECT_EQ(added->node.source, "api");
    EXPECT_EQ(added->node.spec.driver, "ssh");
    spec.note = "moved racks";
    auto updated = store->put_node(spec, "root", clock.now());
    ASSERT_TRUE(updated);
    EXPECT_FALSE(updated->created);
    EXPECT_EQ(updated->node.spec.note, "moved racks");
    EXPECT_EQ(kinds(*store, "geth-0"), (std::vector<std::string>{"node.updated", "node.added"}));
    auto unchanged = store->put_node(spec, "root", clock.now());
    ASSERT_TRUE(unchanged);
    EXPECT_EQ(kinds(*store, "geth-0").size(), 2U);

    auto config = store->put_node(core::NodeSpec{.name = "lotus-0"}, "root", clock.now());
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error().code, ErrorCode::kAlreadyExists);
    EXPECT_EQ(config.error().message, "node lotus-0 is declared in the config; edit the config");
    auto bad = store->put_node(core::NodeSpec{.name = "Not_A_Label"}, "root", clock.now());
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST_P(Nodes, ASidecarNodesControlUrlIsKeptAndAChangeOfItIsAnUpdate) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 1);
    ASSERT_TRUE(store);
    core::NodeSpec spec{.name = "bp-a", .driver = "sidecar", .control_url = "http://10.0.0.7:8080"};
    auto added = store->put_node(spec, "bp-a", clock.now());
    ASSERT_TRUE(added) << added.error().message;
    EXPECT_EQ(added->node.spec.control_url, "http://10.0.0.7:8080");
    auto read = store->node("bp-a", clock.now());
    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(read->spec.control_url, "http://10.0.0.7:8080");
    // The same registration again writes nothing; a new address is an update.
    auto again = store->put_node(spec, "bp-a", clock.now());
    ASSERT_TRUE(again);
    EXPECT_EQ(kinds(*store, "bp-a").size(), 1U);
    spec.control_url = "http://10.0.0.8:8080";
    auto moved = store->put_node(spec, "bp-a", clock.now());
    ASSERT_TRUE(moved);
    EXPECT_FALSE(moved->created);
    EXPECT_EQ(kinds(*store, "bp-a"), (std::vector<std::string>{"node.updated", "node.added"}));
    auto listed = store->nodes(clock.now());
    ASSERT_TRUE(listed);
    auto it = std::find_if(listed->begin(), listed->end(),
                           [](const core::Node& n) { return n.spec.name == "bp-a"; });
    ASSERT_NE(it, listed->end());
    EXPECT_EQ(it->spec.control_url, "http://10.0.0.8:8080");
}

TEST_P(Nodes, PutNodeServesAWaiterForItsLabels) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 1);
    ASSERT_TRUE(store);
    GrantLog log{*store};
    ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "x", clock.now())));
    queue(*store, waiter_of("t", selector_of(1, "alice", clock.now())));
    ASSERT_TRUE(store->put_node(core::NodeSpec{.name = "lotus-9", .labels = {{"chain", "lotus"}}},
                                "root", clock.now()));
    auto grants = log.flush();
    ASSERT_EQ(grants.size(), 1U);
    EXPECT_EQ(grants[0].leases.at(0).node, "lotus-9");
}

TEST_P(Nodes, RemoveNodeRefusesConfigAndLeasedNodes) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 1);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->put_node(core::NodeSpec{.name = "geth-0"}, "root", clock.now()));
    auto config = store->remove_node("lotus-0", "root", clock.now(), false);
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error().code, ErrorCode::kAlreadyExists);
    ASSERT_TRUE(store->try_lease(lease_of("geth-0", "anton", clock.now(), 1h)));
    auto leased = store->remove_node("geth-0", "root", clock.now(), false);
    ASSERT_FALSE(leased);
    EXPECT_EQ(leased.error().code, ErrorCode::kBusy);
    clock.advance(1h);  // a lapsed lease does not keep it
    auto removed = store->remove_node("geth-0", "root", clock.now(), false);
    ASSERT_TRUE(removed) << removed.error().message;
    EXPECT_EQ(kinds(*store, "geth-0")[0], "node.removed");
    EXPECT_EQ(kinds(*store, "geth-0")[1], "lease.expired");
    auto missing = store->remove_node("geth-0", "root", clock.now(), false);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_P(Nodes, MaintenanceEndsTheLeaseOfThatNodeOnlyAndItsEndServesAWaiter) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    GrantLog log{*store};
    auto held = store->try_lease(selector_of(2, "ci", clock.now()));
    ASSERT_TRUE(held && held->granted);
    auto started = store->start_maintenance("lotus-0", "disk swap", "root", clock.now());
    ASSERT_TRUE(started) << started.error().message;
    ASSERT_TRUE(started->ended);
    EXPECT_EQ(started->ended->owner, "ci");
    EXPECT_EQ(started->node.state, core::NodeState::kMaintenance);
    EXPECT_EQ(started->node.maintenance_reason, "disk swap");
    EXPECT_EQ(store->node("lotus-1", clock.now())->lease->id, held->leases[0].id);
    EXPECT_EQ(kinds(*store, "lotus-0")[0], "node.maintenance_started");
    EXPECT_EQ(kinds(*store, "lotus-0")[1], "lease.freed");

    auto refused = store->try_lease(lease_of("lotus-0", "bob", clock.now()));
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
    queue(*store, waiter_of("t", selector_of(2, "bob", clock.now())));  // lotus-2 + one more

    auto ended = store->end_maintenance("lotus-0", "root", clock.now());
    ASSERT_TRUE(ended) << ended.error().message;
    auto grants = log.flush();
    ASSERT_EQ(grants.size(), 1U);
    EXPECT_EQ(grants[0].leases.at(0).node, "lotus-0");
    EXPECT_EQ(grants[0].leases.at(1).node, "lotus-2");
    EXPECT_EQ(kinds(*store, "lotus-0")[0], "lease.acquired");
    EXPECT_EQ(kinds(*store, "lotus-0")[1], "node.maintenance_ended");
    auto again = store->end_maintenance("lotus-0", "root", clock.now());
    ASSERT_TRUE(again);  // already in service: nothing to do
}

TEST_P(Nodes, MaintenanceNeedsAReasonAndAKnownNode) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto no_reason = store->start_maintenance("lotus-0", "", "root", clock.now());
    ASSERT_FALSE(no_reason);
    EXPECT_EQ(no_reason.error().code, ErrorCode::kInvalidArgument);
    auto unknown = store->start_maintenance("lotus-9", "why", "root", clock.now());
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
}

core::NodeSpec machine_spec(std::string name, std::string address) {
    return core::NodeSpec{.name = std::move(name),
                          .driver = "ssh",
                          .labels = {{"rack", "r1"}},
                          .machine = core::MachineSpec{.hostname = "t-linux-1.test",
                                                       .address = std::move(address),
                                                       .ipmi_address = "127.0.0.1:6230",
                                                       .ipmi_user = "admin",
                                                       .pdu_host = "127.0.0.1:1161",
                                                       .pdu_outlet = 4,
                                                       .groups = {"lab"}}};
}

TEST_P(Machines, AMachineKeepsItsPropertiesThroughTheStoreAndItsEvents) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 1);
    ASSERT_TRUE(store);
    auto specs = lotus_nodes(1);
    specs.push_back(machine_spec("t-linux-1", "127.0.0.1"));
    ASSERT_TRUE(store->reconcile_nodes(specs, "config", clock.now()));
    auto node = store->node("t-linux-1", clock.now());
    ASSERT_TRUE(node) << node.error().message;
    EXPECT_EQ(node->spec.machine, specs[1].machine);
    EXPECT_EQ(node->spec.driver, "ssh");
    auto plain = store->node("lotus-0", clock.now());
    ASSERT_TRUE(plain);
    EXPECT_FALSE(plain->spec.machine);
    auto added = store->events(all_events("t-linux-1"));
    ASSERT_TRUE(added);
    ASSERT_FALSE(added->empty());
    EXPECT_NE(added->front().after.find("\"address\":\"127.0.0.1\""), std::string::npos)
        << added->front().after;

    // A changed property is a change of the machine: updated, with both sides in the event.
    specs[1].machine->address = "127.0.0.2";
    auto report = store->reconcile_nodes(specs, "config", clock.now());
    ASSERT_TRUE(report);
    EXPECT_EQ(report->updated, (std::vector<std::string>{"t-linux-1"}));
    auto events = store->events(all_events("t-linux-1"));
    ASSERT_TRUE(events);
    EXPECT_EQ(events->front().kind, "node.updated");
    EXPECT_NE(events->front().before.find("127.0.0.1"), std::string::npos);
    EXPECT_NE(events->front().after.find("127.0.0.2"), std::string::npos);

    // Through the API too.
    auto put = store->put_node(machine_spec("t-linux-2", "10.0.0.2"), "alice", clock.now());
    ASSERT_TRUE(put) << put.error().message;
    EXPECT_TRUE(put->created);
    EXPECT_EQ(put->node.spec.machine->address, "10.0.0.2");

    // A machine is not rewritten as a node, nor a node as a machine.
    auto as_node = store->put_node(core::NodeSpec{.name = "t-linux-2"}, "alice", clock.now());
    ASSERT_FALSE(as_node);
    EXPECT_EQ(as_node.error().code, ErrorCode::kAlreadyExists);
    EXPECT_EQ(as_node.error().message, "t-linux-2 is a machine, not a node");
    ASSERT_TRUE(store->put_node(core::NodeSpec{.name = "plain"}, "alice", clock.now()));
    auto as_machine = store->put_node(machine_spec("plain", "10.0.0.3"), "alice", clock.now());
    ASSERT_FALSE(as_machine);
    EXPECT_EQ(as_machine.error().message, "plain is a node, not a machine");

    // Nor removed through the other kind's route.
    auto machine_as_node = store->remove_node("t-linux-2", "alice", clock.now(), false);
    ASSERT_FALSE(machine_as_node);
    EXPECT_EQ(machine_as_node.error().message, "t-linux-2 is a machine, not a node");
    auto node_as_machine = store->remove_node("plain", "alice", clock.now(), true);
    ASSERT_FALSE(node_as_machine);
    EXPECT_EQ(node_as_machine.error().code, ErrorCode::kNotFound);
    ASSERT_TRUE(store->remove_node("t-linux-2", "alice", clock.now(), true));
    EXPECT_EQ(store->node("t-linux-2", clock.now()).error().code, ErrorCode::kNotFound);
}

TEST_P(Machines, WorkerIdsAreReconciledWithAnEventForEachChange) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 0);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->reconcile_nodes({machine_spec("m1", "127.0.0.1"), machine_spec("m2", "a")},
                                       "config", clock.now()));
    std::vector<core::WorkerId> workers{{.id = "tc-worker-1", .machine = "m1"},
                                        {.id = "tc-worker-2", .machine = ""},
                                        {.id = "tc-worker-3", .machine = "m2"}};
    ASSERT_TRUE(store->reconcile_worker_ids(workers, "config", clock.now()));
    auto listed = store->worker_ids();
    ASSERT_TRUE(listed);
    EXPECT_EQ(*listed, workers);
    auto one = store->worker_id("tc-worker-2");
    ASSERT_TRUE(one);
    EXPECT_EQ(one->machine, "");
    auto unknown = store->worker_id("tc-worker-9");
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
    EXPECT_EQ(unknown.error().message, "worker id tc-worker-9 is not listed");

    // tc-worker-2 gets a machine, tc-worker-3 goes, tc-worker-4 comes.
    workers = {{.id = "tc-worker-1", .machine = "m1"},
               {.id = "tc-worker-2", .machine = "m2"},
               {.id = "tc-worker-4", .machine = "m1"}};
    ASSERT_TRUE(store->reconcile_worker_ids(workers, "config", clock.now()));
    listed = store->worker_ids();
    ASSERT_TRUE(listed);
    EXPECT_EQ(*listed, workers);
    EXPECT_EQ(kinds(*store, "m2"), (std::vector<std::string>{"worker.removed", "worker.updated",
                                                             "worker.added", "node.added"}));
    // Nothing changed, nothing recorded.
    auto before = kinds(*store).size();
    ASSERT_TRUE(store->reconcile_worker_ids(workers, "config", clock.now()));
    EXPECT_EQ(kinds(*store).size(), before);

    auto twice = store->reconcile_worker_ids(
        {{.id = "tc-worker-1", .machine = "m1"}, {.id = "tc-worker-1", .machine = "m2"}}, "config",
        clock.now());
    ASSERT_FALSE(twice);
    EXPECT_EQ(twice.error().message, "worker id tc-worker-1 is listed twice");
}

}  // namespace
}  // namespace aviary::store::test
