#include "fleet/fleet.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "fleet_support.hpp"

namespace aviary::fleet::test {
namespace {

TEST_F(FleetTest, AcquireGrantsAFreeNodeForTheDefaultTtl) {
    auto lease = acquire("lotus-0", "anton");
    ASSERT_TRUE(lease) << lease.error().message;
    ASSERT_EQ(lease->leases.size(), 1U);
    EXPECT_EQ(lease->leases[0].owner, "anton");
    EXPECT_EQ(lease->leases[0].expires_at - lease->leases[0].acquired_at, 1h);
    auto node = fleet_->node("lotus-0");
    ASSERT_TRUE(node);
    EXPECT_EQ(node->state, core::NodeState::kLeased);
}

TEST_F(FleetTest, BusyRefusalNamesTheHolderAndSince) {
    ASSERT_TRUE(acquire("lotus-0", "anton"));
    auto refused = acquire("lotus-0", "bob");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kBusy);
    EXPECT_NE(refused.error().message.find("current owner is anton"), std::string::npos);
    EXPECT_NE(refused.error().message.find(core::format_time(clock_.now())), std::string::npos);
}

TEST_F(FleetTest, HolderAcquiringAgainRenews) {
    auto first = acquire("lotus-0", "anton");
    clock_.advance(30min);
    auto again = acquire("lotus-0", "anton");
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->renewed);
    EXPECT_EQ(again->leases[0].id, first->leases[0].id);
    EXPECT_EQ(again->leases[0].expires_at, clock_.now() + 1h);
}

TEST_F(FleetTest, TtlAboveTheMaximumIsRefused) {
    auto refused = acquire("lotus-0", "anton", 5h);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_TRUE(acquire("lotus-0", "anton", 4h));
}

TEST_F(FleetTest, EmptyOwnerCannotAcquire) {
    auto refused = acquire("lotus-0", "");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kInvalidArgument);
}

TEST_F(FleetTest, ExpiredLeaseGoesToTheNextCaller) {
    ASSERT_TRUE(acquire("lotus-0", "anton", 10min));
    clock_.advance(11min);
    auto taken = acquire("lotus-0", "bob");
    ASSERT_TRUE(taken) << taken.error().message;
    EXPECT_EQ(taken->leases[0].owner, "bob");
    ASSERT_EQ(taken->lapsed.size(), 1U);
    EXPECT_EQ(taken->lapsed[0].owner, "anton");
}

TEST_F(FleetTest, ExpireOnceFreesLapsedLeasesAndRecordsEvents) {
    ASSERT_TRUE(acquire("lotus-0", "anton", 10min));
    ASSERT_TRUE(acquire("lotus-1", "bob", 2h));
    clock_.advance(1h);
    EXPECT_EQ(fleet_->expire_once(), 1u);
    EXPECT_EQ(fleet_->node("lotus-0")->state, core::NodeState::kFree);
    EXPECT_EQ(fleet_->node("lotus-1")->state, core::NodeState::kLeased);
    auto events = store_->events(store::EventQuery{.node = "lotus-0"});
    ASSERT_TRUE(events);
    ASSERT_FALSE(events->empty());
    EXPECT_EQ(events->front().kind, "lease.expired");
}

TEST_F(FleetTest, ReleaseByHolderFreesAndByOtherIsRefused) {
    ASSERT_TRUE(acquire("lotus-0", "anton"));
    auto refused = fleet_->release("lotus-0", "bob", admin_);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kNotOwner);
    EXPECT_NE(refused.error().message.find("current owner is anton"), std::string::npos);
    auto released = fleet_->release("lotus-0", "anton", admin_);
    ASSERT_TRUE(released);
    ASSERT_TRUE(released->has_value());
    EXPECT_EQ((*released)->owner, "anton");
}

TEST_F(FleetTest, ReleasingAFreeNodeSucceedsWithOrWithoutOwner) {
    auto released = fleet_->release("lotus-1", "anton", admin_);
    ASSERT_TRUE(released);
    EXPECT_FALSE(released->has_value());
    auto anonymous = fleet_->release("lotus-1", "", admin_);
    ASSERT_TRUE(anonymous);
    EXPECT_FALSE(anonymous->has_value());
}

TEST_F(FleetTest, ReleaseWithoutOwnerOfAHeldNodeIsRefused) {
    ASSERT_TRUE(acquire("lotus-1", "anton"));
    auto refused = fleet_->release("lotus-1", "", admin_);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kNotOwner);
}

TEST_F(FleetTest, ForcedFreeNeedsAnAdmin) {
    ASSERT_TRUE(acquire("lotus-0", "anton"));
    Caller user{.identity = "bob", .admin = false};
    auto refused = fleet_->free("lotus-0", "", true, user);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kPermissionDenied);
    auto freed = fleet_->free("lotus-0", "", true, Caller{.identity = "root", .admin = true});
    ASSERT_TRUE(freed);
    ASSERT_TRUE(freed->has_value());
    EXPECT_EQ(fleet_->node("lotus-0")->state, core::NodeState::kFree);
    auto events = store_->events(store::EventQuery{.node = "lotus-0"});
    EXPECT_EQ(events->front().kind, "lease.freed");
    EXPECT_EQ(events->front().actor, "root");
}

TEST_F(FleetTest, UnknownNodeIsNotFound) {
    auto missing = acquire("lotus-9", "anton");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, core::ErrorCode::kNotFound);
}

TEST_F(FleetTest, ExpiryRunsAtStartThenAtTheNextLeaseDeadline) {
    ASSERT_TRUE(acquire("lotus-0", "anton", 10min));
    ASSERT_TRUE(acquire("lotus-1", "carol", 30min));
    std::mutex mu;
    std::optional<Acquired> got;
    auto queued = fleet_->acquire_or_wait(AcquireRequest{.node = "lotus-0", .owner = "bob"}, 1h,
                                          admin_, [&](Acquired acquired) {
                                              std::lock_guard lock{mu};
                                              got = std::move(acquired);
                                          });
    ASSERT_TRUE(queued) << queued.error().message;
    ASSERT_TRUE(std::holds_alternative<Waiter>(*queued));
    auto& scheduler = scheduler_;
    fleet_->schedule(scheduler);
    const auto start = clock_.now();
    clock_.advance(20min);
    // The first run is at the scheduler's start: it ends anton's lapsed lease and serves bob.
    // (lease-waits, which looks for grants no notification announced, is due too.)
    ASSERT_EQ(scheduler.run_due(), 2);
    {
        std::lock_guard lock{mu};
        ASSERT_TRUE(got.has_value());
        EXPECT_EQ(got->leases.at(0).owner, "bob");
    }
    // The next run is due when carol's lease lapses, not a whole expiry_sweep later.
    auto stats = scheduler.stats();
    ASSERT_EQ(stats.size(), 2U);
    EXPECT_EQ(stats[0].name, "lease-expiry");
    EXPECT_EQ(stats[0].next_due, start + 30min);
    EXPECT_EQ(stats[1].name, "lease-waits");
    clock_.set(start + 30min);
    ASSERT_EQ(scheduler.run_due(), 2);
    EXPECT_EQ(fleet_->node("lotus-1")->state, core::NodeState::kFree);
}

TEST_F(FleetTest, ExclusiveAcquireRefusesEvenTheSameOwner) {
    auto exclusive = fleet_->acquire(
        AcquireRequest{.node = "lotus-0", .owner = "ci", .exclusive = true}, admin_);
    ASSERT_TRUE(exclusive) << exclusive.error().message;
    EXPECT_TRUE(exclusive->leases.at(0).exclusive);
    auto again = acquire("lotus-0", "ci");
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, core::ErrorCode::kBusy);
    EXPECT_EQ(again.error().message,
              "node lotus-0 is busy: current owner is ci (since 2023-11-14T22:13:20.000Z, until "
              "2023-11-14T23:13:20.000Z)");

    ASSERT_TRUE(acquire("lotus-1", "ci"));
    auto exclusive_again = fleet_->acquire(
        AcquireRequest{.node = "lotus-1", .owner = "ci", .exclusive = true}, admin_);
    ASSERT_FALSE(exclusive_again);
    EXPECT_EQ(exclusive_again.error().code, core::ErrorCode::kBusy);
}

TEST_F(FleetTest, SelectorAcquireTakesCountNodesAllOrNothing) {
    ASSERT_TRUE(acquire("lotus-1", "anton"));
    auto three = acquire_lotus(3, "ci");
    ASSERT_FALSE(three);
    EXPECT_EQ(three.error().code, core::ErrorCode::kBusy);
    EXPECT_EQ(three.error().message, "no 3 free nodes match chain=lotus (3 match, 1 leased)");
    EXPECT_EQ(fleet_->node("lotus-0")->state, core::NodeState::kFree);
    EXPECT_EQ(fleet_->node("lotus-2")->state, core::NodeState::kFree);

    auto two = acquire_lotus(2, "ci");
    ASSERT_TRUE(two) << two.error().message;
    EXPECT_EQ(nodes_of(two->leases), (std::vector<std::string>{"lotus-0", "lotus-2"}));
    EXPECT_EQ(two->leases[0].id, two->leases[1].id);
    auto none = acquire_lotus(1, "bob");
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().message, "no free node matches chain=lotus (3 match, 3 leased)");
}

TEST_F(FleetTest, SelectorMatchingTooFewNodesIsNotFound) {
    auto refused = acquire_lotus(4, "ci");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kNotFound);
    auto nothing =
        fleet_->acquire(AcquireRequest{.selector = {{"chain", "solana"}}, .owner = "ci"}, admin_);
    ASSERT_FALSE(nothing);
    EXPECT_EQ(nothing.error().message, "no node matches chain=solana");
}

TEST_F(FleetTest, RequestShapeErrorsNameTheField) {
    auto expect_invalid = [&](AcquireRequest request, std::string message) {
        request.owner = "ci";
        auto refused = fleet_->acquire(request, admin_);
        ASSERT_FALSE(refused);
        EXPECT_EQ(refused.error().code, core::ErrorCode::kInvalidArgument);
        EXPECT_EQ(refused.error().message, message);
    };
    expect_invalid(AcquireRequest{.node = "lotus-0", .selector = {{"chain", "lotus"}}},
                   "give node or selector, not both");
    expect_invalid(AcquireRequest{}, "give node or selector");
    expect_invalid(AcquireRequest{.selector = {{"chain", "lotus"}}, .count = 0},
                   "count must be 1..64, got 0");
    expect_invalid(AcquireRequest{.selector = {{"chain", "lotus"}}, .count = 65},
                   "count must be 1..64, got 65");
    expect_invalid(AcquireRequest{.node = "lotus-0", .count = 2},
                   "count needs a selector: node lotus-0 is one node");
}

TEST_F(FleetTest, NonAdminActsOnlyForItselfAndOwnerDefaultsToTheCaller) {
    Caller bob{.identity = "bob", .admin = false};
    auto for_anton = fleet_->acquire(AcquireRequest{.node = "lotus-0", .owner = "anton"}, bob);
    ASSERT_FALSE(for_anton);
    EXPECT_EQ(for_anton.error().code, core::ErrorCode::kPermissionDenied);
    EXPECT_EQ(for_anton.error().message, "token for bob may not act for anton");
    auto own = fleet_->acquire(AcquireRequest{.node = "lotus-0"}, bob);
    ASSERT_TRUE(own) << own.error().message;
    EXPECT_EQ(own->leases.at(0).owner, "bob");
    auto release_for_anton = fleet_->release("lotus-0", "anton", bob);
    ASSERT_FALSE(release_for_anton);
    EXPECT_EQ(release_for_anton.error().code, core::ErrorCode::kPermissionDenied);
    auto events = store_->events(store::EventQuery{.node = "lotus-0"});
    ASSERT_TRUE(events);
    EXPECT_EQ(events->front().actor, "bob");
}

TEST_F(FleetTest, RenewAndReleaseByIdAllowTheHolderAndAnAdminOnly) {
    Caller anton{.identity = "anton", .admin = false};
    Caller bob{.identity = "bob", .admin = false};
    Caller root{.identity = "root", .admin = true};
    auto held = fleet_->acquire(
        AcquireRequest{.selector = {{"chain", "lotus"}}, .count = 2, .ttl = 1h}, anton);
    ASSERT_TRUE(held) << held.error().message;
    const auto id = held->leases.at(0).id;

    clock_.advance(10min);
    auto by_holder = fleet_->renew(id, 2h, anton);
    ASSERT_TRUE(by_holder) << by_holder.error().message;
    ASSERT_EQ(by_holder->size(), 2U);
    EXPECT_EQ(by_holder->at(1).expires_at, clock_.now() + 2h);
    auto by_other = fleet_->renew(id, {}, bob);
    ASSERT_FALSE(by_other);
    EXPECT_EQ(by_other.error().code, core::ErrorCode::kNotOwner);
    auto too_long = fleet_->renew(id, 5h, anton);
    ASSERT_FALSE(too_long);
    EXPECT_EQ(too_long.error().code, core::ErrorCode::kInvalidArgument);
    auto by_admin = fleet_->renew(id, {}, root);
    ASSERT_TRUE(by_admin);
    EXPECT_EQ(by_admin->at(0).expires_at, clock_.now() + 1h);

    auto release_by_other = fleet_->release_lease(id, bob);
    ASSERT_FALSE(release_by_other);
    EXPECT_EQ(release_by_other.error().code, core::ErrorCode::kNotOwner);
    auto released = fleet_->release_lease(id, anton);
    ASSERT_TRUE(released) << released.error().message;
    EXPECT_EQ(released->size(), 2U);
    auto gone = fleet_->release_lease(id, root);
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, core::ErrorCode::kNotFound);
    auto leases = fleet_->leases();
    ASSERT_TRUE(leases);
    EXPECT_TRUE(leases->empty());
}

TEST_F(FleetTest, MaintenanceStartEndsTheLeaseAndRefusesAcquire) {
    ASSERT_TRUE(acquire("lotus-0", "anton"));
    auto started = fleet_->start_maintenance("lotus-0", "disk swap", admin_);
    ASSERT_TRUE(started) << started.error().message;
    EXPECT_EQ(started->state, core::NodeState::kMaintenance);
    EXPECT_FALSE(started->lease);
    EXPECT_EQ(event_kinds("lotus-0")[1], "lease.freed");
    auto refused = acquire("lotus-0", "bob");
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kUnavailable);
    EXPECT_EQ(refused.error().message, "node lotus-0 is in maintenance: disk swap");
    auto ended = fleet_->end_maintenance("lotus-0", admin_);
    ASSERT_TRUE(ended);
    EXPECT_EQ(ended->state, core::NodeState::kFree);
    EXPECT_TRUE(acquire("lotus-0", "bob"));
}

TEST_F(FleetTest, NodeEditsAndMaintenanceNeedAnAdmin) {
    Caller bob{.identity = "bob", .admin = false};
    auto put = fleet_->put_node(core::NodeSpec{.name = "geth-1"}, bob);
    ASSERT_FALSE(put);
    EXPECT_EQ(put.error().code, core::ErrorCode::kPermissionDenied);
    EXPECT_EQ(put.error().message, "token for bob may not edit nodes: it needs admin");
    EXPECT_FALSE(fleet_->remove_node("geth-0", bob, false));
    auto maintenance = fleet_->start_maintenance("lotus-0", "why", bob);
    ASSERT_FALSE(maintenance);
    EXPECT_EQ(maintenance.error().code, core::ErrorCode::kPermissionDenied);
    EXPECT_FALSE(fleet_->end_maintenance("lotus-0", bob));
}

TEST_F(FleetTest, PutAndRemoveNodeKeepConfigNodesToTheConfig) {
    Caller root{.identity = "root", .admin = true};
    auto added =
        fleet_->put_node(core::NodeSpec{.name = "lotus-9", .labels = {{"chain", "lotus"}}}, root);
    ASSERT_TRUE(added) << added.error().message;
    EXPECT_TRUE(added->second);
    EXPECT_EQ(added->first.source, "api");
    auto updated = fleet_->put_node(
        core::NodeSpec{.name = "lotus-9", .labels = {{"chain", "lotus"}}, .note = "n"}, root);
    ASSERT_TRUE(updated);
    EXPECT_FALSE(updated->second);
    auto config = fleet_->put_node(core::NodeSpec{.name = "lotus-0"}, root);
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error().code, core::ErrorCode::kAlreadyExists);
    EXPECT_EQ(config.error().message, "node lotus-0 is declared in the config; edit the config");
    auto lotus = fleet_->nodes({{"chain", "lotus"}});
    ASSERT_TRUE(lotus);
    EXPECT_EQ(lotus->size(), 4U);

    ASSERT_TRUE(acquire("lotus-9", "anton"));
    auto leased = fleet_->remove_node("lotus-9", root, false);
    ASSERT_FALSE(leased);
    EXPECT_EQ(leased.error().code, core::ErrorCode::kBusy);
    ASSERT_TRUE(fleet_->release("lotus-9", "anton", admin_));
    ASSERT_TRUE(fleet_->remove_node("lotus-9", root, false));
    auto removed = fleet_->node("lotus-9");
    ASSERT_FALSE(removed);
    EXPECT_EQ(removed.error().code, core::ErrorCode::kNotFound);
    auto config_remove = fleet_->remove_node("lotus-0", root, false);
    ASSERT_FALSE(config_remove);
    EXPECT_EQ(config_remove.error().code, core::ErrorCode::kAlreadyExists);
}

TEST_F(FleetTest, EventsPageWithACursorAndTheLastPageHasNone) {
    // reconcile: 4 node.added; then 3 acquisitions of lotus-0: 7 events in all
    for (int i = 0; i < 3; ++i) {
        clock_.advance(1min);
        ASSERT_TRUE(acquire("lotus-0", "anton"));
    }
    auto first = fleet_->events(EventsQuery{.limit = 4});
    ASSERT_TRUE(first) << first.error().message;
    ASSERT_EQ(first->events.size(), 4U);
    EXPECT_EQ(first->events[0].kind, "lease.renewed");
    ASSERT_FALSE(first->next_cursor.empty());
    auto second = fleet_->events(EventsQuery{.cursor = first->next_cursor, .limit = 3});
    ASSERT_TRUE(second);
    ASSERT_EQ(second->events.size(), 3U);  // a full page, and the last one
    EXPECT_TRUE(second->next_cursor.empty());
    EXPECT_LT(second->events[0].id, first->events[3].id);
    auto bad = fleet_->events(EventsQuery{.cursor = "abc"});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, core::ErrorCode::kInvalidArgument);
    auto limit = fleet_->events(EventsQuery{.limit = 1001});
    ASSERT_FALSE(limit);
    EXPECT_EQ(limit.error().code, core::ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace aviary::fleet::test
