#include <gtest/gtest.h>

#include "store_support.hpp"

namespace aviary::store::test {
namespace {

AVIARY_STORE_SUITE(Leases);

using core::ErrorCode;

TEST_P(Leases, GrantsAFreeNodeAndRecordsTheAcquisition) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto attempt = store->try_lease(lease_of("lotus-1", "alice", clock.now(), 2h));
    ASSERT_TRUE(attempt) << attempt.error().message;
    EXPECT_TRUE(attempt->granted);
    EXPECT_FALSE(attempt->renewed);
    EXPECT_TRUE(attempt->lapsed.empty());
    EXPECT_EQ(attempt->leases.front().node, "lotus-1");
    EXPECT_EQ(attempt->leases.front().owner, "alice");
    EXPECT_EQ(attempt->leases.front().id.size(), 26U);
    EXPECT_EQ(attempt->leases.front().acquired_at, clock.now());
    EXPECT_EQ(attempt->leases.front().expires_at, clock.now() + 2h);

    auto events = store->events(all_events("lotus-1"));
    ASSERT_TRUE(events);
    ASSERT_EQ(events->size(), 2U);  // node.added, then lease.acquired
    const auto& acquired = events->front();
    EXPECT_EQ(acquired.kind, "lease.acquired");
    EXPECT_EQ(acquired.actor, "alice");
    EXPECT_EQ(acquired.before, "{}");
    EXPECT_EQ(acquired.after,
              "{\"lease_id\":\"" + attempt->leases.front().id +
                  "\",\"owner\":\"alice\",\"reason\":\"testing\","
                  "\"acquired_at\":\"2023-11-14T22:13:20.000Z\","
                  "\"expires_at\":\"2023-11-15T00:13:20.000Z\",\"exclusive\":false}");

    auto node = store->node("lotus-1", clock.now());
    ASSERT_TRUE(node);
    EXPECT_EQ(node->state, core::NodeState::kLeased);
    ASSERT_TRUE(node->lease);
    EXPECT_EQ(node->lease->id, attempt->leases.front().id);
}

TEST_P(Leases, RenewalKeepsLeaseIdAndAcquiredAtAndMovesExpiry) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto first = store->try_lease(lease_of("lotus-1", "alice", clock.now()));
    ASSERT_TRUE(first);
    clock.advance(30min);
    auto renewed = store->try_lease(lease_of("lotus-1", "alice", clock.now(), 3h));
    ASSERT_TRUE(renewed);
    EXPECT_TRUE(renewed->granted);
    EXPECT_TRUE(renewed->renewed);
    EXPECT_TRUE(renewed->lapsed.empty());
    EXPECT_EQ(renewed->leases.front().id, first->leases.front().id);
    EXPECT_EQ(renewed->leases.front().acquired_at, first->leases.front().acquired_at);
    EXPECT_EQ(renewed->leases.front().expires_at, clock.now() + 3h);
    EXPECT_EQ(kinds(*store, "lotus-1"),
              (std::vector<std::string>{"lease.renewed", "lease.acquired", "node.added"}));
}

TEST_P(Leases, RefusesAnotherOwnerAndReturnsTheHolder) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto held = store->try_lease(lease_of("lotus-1", "anton", clock.now()));
    ASSERT_TRUE(held);
    auto refused = store->try_lease(lease_of("lotus-1", "bob", clock.now()));
    ASSERT_TRUE(refused);
    EXPECT_FALSE(refused->granted);
    EXPECT_EQ(refused->refusal.holders.front().owner, "anton");
    EXPECT_EQ(refused->refusal.holders.front().id, held->leases.front().id);
    EXPECT_EQ(
        kinds(*store, "lotus-1"),
        (std::vector<std::string>{"lease.acquired", "node.added"}));  // a refusal changes nothing
}

TEST_P(Leases, TakesOverALapsedLeaseAndReportsIt) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto old = store->try_lease(lease_of("lotus-1", "anton", clock.now(), 1h));
    ASSERT_TRUE(old);
    clock.advance(1h);  // expires_at <= now: lapsed
    auto taken = store->try_lease(lease_of("lotus-1", "bob", clock.now()));
    ASSERT_TRUE(taken) << taken.error().message;
    EXPECT_TRUE(taken->granted);
    EXPECT_FALSE(taken->renewed);
    ASSERT_EQ(taken->lapsed.size(), 1U);
    EXPECT_EQ(taken->lapsed.front().owner, "anton");
    EXPECT_EQ(taken->lapsed.front().id, old->leases.front().id);
    EXPECT_NE(taken->leases.front().id, old->leases.front().id);
    EXPECT_EQ(taken->leases.front().acquired_at, clock.now());
    EXPECT_EQ(kinds(*store, "lotus-1"), (std::vector<std::string>{"lease.acquired", "lease.expired",
                                                                  "lease.acquired", "node.added"}));
}

TEST_P(Leases, OwnLapsedLeaseStartsANewLease) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto old = store->try_lease(lease_of("lotus-1", "anton", clock.now(), 1h));
    ASSERT_TRUE(old);
    clock.advance(2h);
    auto again = store->try_lease(lease_of("lotus-1", "anton", clock.now()));
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->granted);
    EXPECT_FALSE(again->renewed);
    ASSERT_EQ(again->lapsed.size(), 1U);
    EXPECT_NE(again->leases.front().id, old->leases.front().id);
    EXPECT_EQ(again->leases.front().acquired_at, clock.now());
}

TEST_P(Leases, LeaseOfAnUnknownNodeIsNotFound) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto attempt = store->try_lease(lease_of("lotus-9", "alice", clock.now()));
    ASSERT_FALSE(attempt);
    EXPECT_EQ(attempt.error().code, ErrorCode::kNotFound);
    EXPECT_EQ(attempt.error().message, "unknown node lotus-9");
    EXPECT_EQ(store->stats().failed_writes, 1U);
}

TEST_P(Leases, LeaseOfANodeInMaintenanceIsUnavailable) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->exec_for_test(
        "UPDATE nodes SET maintenance_reason = 'disk swap' WHERE name = 'lotus-1'"));
    auto attempt = store->try_lease(lease_of("lotus-1", "alice", clock.now()));
    ASSERT_FALSE(attempt);
    EXPECT_EQ(attempt.error().code, ErrorCode::kUnavailable);
    EXPECT_EQ(attempt.error().message, "node lotus-1 is in maintenance: disk swap");
    auto node = store->node("lotus-1", clock.now());
    ASSERT_TRUE(node);
    EXPECT_EQ(node->state, core::NodeState::kMaintenance);
    EXPECT_EQ(node->maintenance_reason, "disk swap");
}

TEST_P(Leases, LeaseWithoutOwnerIsInvalid) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto attempt = store->try_lease(lease_of("lotus-1", "", clock.now()));
    ASSERT_FALSE(attempt);
    EXPECT_EQ(attempt.error().code, ErrorCode::kInvalidArgument);
}

TEST_P(Leases, ReleaseOfAFreeNodeSucceedsWithNothing) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto released = store->release(release_of("lotus-1", "alice", clock.now()));
    ASSERT_TRUE(released) << released.error().message;
    EXPECT_FALSE(*released);
    EXPECT_EQ(kinds(*store, "lotus-1"), (std::vector<std::string>{"node.added"}));
}

TEST_P(Leases, ReleaseByTheHolderEndsTheLeaseWithAnEvent) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto held = store->try_lease(lease_of("lotus-1", "alice", clock.now()));
    ASSERT_TRUE(held);
    auto released = store->release(release_of("lotus-1", "alice", clock.now()));
    ASSERT_TRUE(released);
    ASSERT_TRUE(*released);
    EXPECT_EQ((*released)->id, held->leases.front().id);
    auto events = store->events(all_events("lotus-1"));
    ASSERT_TRUE(events);
    EXPECT_EQ(events->front().kind, "lease.released");
    EXPECT_EQ(events->front().after, "{}");
    EXPECT_NE(events->front().before.find("\"owner\":\"alice\""), std::string::npos);
    auto node = store->node("lotus-1", clock.now());
    ASSERT_TRUE(node);
    EXPECT_EQ(node->state, core::NodeState::kFree);
}

TEST_P(Leases, ReleaseByAnotherOwnerIsRefusedNamingTheHolder) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "anton", clock.now())));
    auto released = store->release(release_of("lotus-1", "bob", clock.now()));
    ASSERT_FALSE(released);
    EXPECT_EQ(released.error().code, ErrorCode::kNotOwner);
    EXPECT_EQ(released.error().message,
              "node lotus-1 is not yours to release: current owner is anton");
    auto node = store->node("lotus-1", clock.now());
    ASSERT_TRUE(node);
    EXPECT_EQ(node->state, core::NodeState::kLeased);
}

TEST_P(Leases, ForcedReleaseWithoutOwnerEndsAnyLease) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "anton", clock.now())));
    auto request = release_of("lotus-1", "", clock.now());
    request.kind = "lease.freed";
    auto freed = store->release(request);
    ASSERT_TRUE(freed) << freed.error().message;
    ASSERT_TRUE(*freed);
    EXPECT_EQ((*freed)->owner, "anton");
    auto events = store->events(all_events("lotus-1"));
    ASSERT_TRUE(events);
    EXPECT_EQ(events->front().kind, "lease.freed");
    EXPECT_EQ(events->front().actor, "admin");
}

TEST_P(Leases, ReleaseOfALapsedLeaseSucceedsAndRecordsItsExpiry) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "anton", clock.now(), 1h)));
    clock.advance(2h);
    auto released = store->release(release_of("lotus-1", "bob", clock.now()));
    ASSERT_TRUE(released) << released.error().message;
    EXPECT_FALSE(*released);
    EXPECT_EQ(kinds(*store, "lotus-1"),
              (std::vector<std::string>{"lease.expired", "lease.acquired", "node.added"}));
}

TEST_P(Leases, ReleaseOfAnUnknownNodeIsNotFound) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto released = store->release(release_of("lotus-9", "alice", clock.now()));
    ASSERT_FALSE(released);
    EXPECT_EQ(released.error().code, ErrorCode::kNotFound);
    EXPECT_EQ(released.error().message, "unknown node lotus-9");
}

TEST_P(Leases, ExpireLeasesEndsOnlyLapsedLeasesWithAnEventEach) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "alice", clock.now(), 1h)));
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "bob", clock.now(), 2h)));
    ASSERT_TRUE(store->try_lease(lease_of("lotus-2", "carol", clock.now(), 3h)));
    clock.advance(2h);  // lotus-1 expires exactly now: ended too
    auto expired = store->expire_leases(clock.now());
    ASSERT_TRUE(expired) << expired.error().message;
    ASSERT_EQ(expired->size(), 2U);
    EXPECT_EQ((*expired)[0].node, "lotus-0");
    EXPECT_EQ((*expired)[1].node, "lotus-1");
    EXPECT_EQ(kinds(*store, "lotus-0").front(), "lease.expired");
    EXPECT_EQ(kinds(*store, "lotus-1").front(), "lease.expired");
    EXPECT_EQ(kinds(*store, "lotus-2").front(), "lease.acquired");
    auto again = store->expire_leases(clock.now());
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->empty());
}

TEST_P(Leases, SelectorLeaseTakesTheFirstFreeMatchingNodesUnderOneId) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "anton", clock.now())));
    clock.advance(1s);
    auto attempt = store->try_lease(selector_of(2, "ci", clock.now()));
    ASSERT_TRUE(attempt) << attempt.error().message;
    ASSERT_TRUE(attempt->granted);
    ASSERT_EQ(attempt->leases.size(), 2U);
    EXPECT_EQ(attempt->leases[0].node, "lotus-1");
    EXPECT_EQ(attempt->leases[1].node, "lotus-2");
    EXPECT_EQ(attempt->leases[0].id, attempt->leases[1].id);
    EXPECT_EQ(kinds(*store, "lotus-2").front(), "lease.acquired");
    auto leases = store->leases(clock.now());
    ASSERT_TRUE(leases) << leases.error().message;
    ASSERT_EQ(leases->size(), 3U);
    EXPECT_EQ((*leases)[0].owner, "anton");  // oldest first, then grouped by id
    EXPECT_EQ((*leases)[1].id, (*leases)[2].id);
}

TEST_P(Leases, SelectorLeaseIsAllOrNothing) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "anton", clock.now())));
    ASSERT_TRUE(store->exec_for_test(
        "UPDATE nodes SET maintenance_reason = 'disk swap' WHERE name = 'lotus-2'"));
    auto attempt = store->try_lease(selector_of(2, "ci", clock.now()));
    ASSERT_TRUE(attempt) << attempt.error().message;
    EXPECT_FALSE(attempt->granted);
    EXPECT_TRUE(attempt->leases.empty());
    EXPECT_EQ(attempt->refusal.matching, 3);
    EXPECT_EQ(attempt->refusal.leased, 1);
    EXPECT_EQ(attempt->refusal.maintenance, 1);
    EXPECT_EQ(store->node("lotus-0", clock.now())->state, core::NodeState::kFree);
    EXPECT_EQ(kinds(*store, "lotus-0"), (std::vector<std::string>{"node.added"}));
}

TEST_P(Leases, ExclusiveLeaseRefusesTheSameOwnerBothWays) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto exclusive = lease_of("lotus-0", "ci", clock.now());
    exclusive.exclusive = true;
    auto held = store->try_lease(exclusive);
    ASSERT_TRUE(held && held->granted);
    EXPECT_TRUE(held->leases[0].exclusive);
    auto again = store->try_lease(lease_of("lotus-0", "ci", clock.now()));  // not exclusive
    ASSERT_TRUE(again);
    EXPECT_FALSE(again->granted);
    EXPECT_EQ(again->refusal.holders.at(0).id, held->leases[0].id);

    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "ci", clock.now())));
    auto exclusive_again = lease_of("lotus-1", "ci", clock.now());
    exclusive_again.exclusive = true;
    auto refused = store->try_lease(exclusive_again);
    ASSERT_TRUE(refused);
    EXPECT_FALSE(refused->granted);
    EXPECT_EQ(refused->refusal.holders.at(0).owner, "ci");
}

TEST_P(Leases, RenewAndReleaseByIdCoverEveryNodeOfTheLease) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto held = store->try_lease(selector_of(2, "ci", clock.now()));
    ASSERT_TRUE(held && held->granted);
    const auto id = held->leases[0].id;
    clock.advance(30min);
    auto renewed = store->renew_lease(lease_id_of(id, "ci", clock.now(), 3h));
    ASSERT_TRUE(renewed) << renewed.error().message;
    ASSERT_EQ(renewed->size(), 2U);
    for (const auto& lease : *renewed) {
        EXPECT_EQ(lease.id, id);
        EXPECT_EQ(lease.expires_at, clock.now() + 3h);
        EXPECT_EQ(lease.acquired_at, held->leases[0].acquired_at);
    }
    EXPECT_EQ(store->node("lotus-1", clock.now())->lease->expires_at, clock.now() + 3h);
    EXPECT_EQ(kinds(*store, "lotus-1").front(), "lease.renewed");

    auto released = store->release_lease(lease_id_of(id, "", clock.now()));  // an admin
    ASSERT_TRUE(released) << released.error().message;
    EXPECT_EQ(released->size(), 2U);
    EXPECT_EQ(store->node("lotus-0", clock.now())->state, core::NodeState::kFree);
    EXPECT_EQ(store->node("lotus-1", clock.now())->state, core::NodeState::kFree);
    EXPECT_EQ(kinds(*store, "lotus-0").front(), "lease.released");
}

TEST_P(Leases, LeaseIdOperationsRefuseOtherOwnersAndIdsNotHeld) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto held = store->try_lease(lease_of("lotus-0", "anton", clock.now(), 1h));
    ASSERT_TRUE(held);
    const auto id = held->leases[0].id;
    auto other = store->release_lease(lease_id_of(id, "bob", clock.now()));
    ASSERT_FALSE(other);
    EXPECT_EQ(other.error().code, ErrorCode::kNotOwner);
    EXPECT_EQ(other.error().message, "lease " + id + " is not yours: current owner is anton");
    auto renew_other = store->renew_lease(lease_id_of(id, "bob", clock.now()));
    ASSERT_FALSE(renew_other);
    EXPECT_EQ(renew_other.error().code, ErrorCode::kNotOwner);
    auto unknown = store->renew_lease(lease_id_of("nope", "", clock.now()));
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
    clock.advance(1h);  // lapsed: no longer held
    auto lapsed = store->release_lease(lease_id_of(id, "anton", clock.now()));
    ASSERT_FALSE(lapsed);
    EXPECT_EQ(lapsed.error().code, ErrorCode::kNotFound);
    EXPECT_EQ(lapsed.error().message, "lease " + id + " is not held");
}

TEST_P(Leases, NamedRenewalOfOneNodeRenewsTheWholeLease) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto held = store->try_lease(selector_of(2, "ci", clock.now()));
    ASSERT_TRUE(held && held->granted);
    clock.advance(10min);
    auto renewed = store->try_lease(lease_of("lotus-1", "ci", clock.now(), 2h));
    ASSERT_TRUE(renewed) << renewed.error().message;
    EXPECT_TRUE(renewed->renewed);
    ASSERT_EQ(renewed->leases.size(), 2U);
    EXPECT_EQ(store->node("lotus-0", clock.now())->lease->expires_at, clock.now() + 2h);
}

TEST_P(Leases, ShapeErrorsAreInvalid) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto both = selector_of(1, "ci", clock.now());
    both.node = "lotus-0";
    auto refused = store->try_lease(both);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().message, "give node or selector, not both");
    auto too_many = selector_of(65, "ci", clock.now());
    ASSERT_FALSE(store->try_lease(too_many));
    EXPECT_EQ(store->try_lease(too_many).error().code, ErrorCode::kInvalidArgument);
}

TEST_P(Leases, NextDeadlineIsTheEarliestLeaseExpiryOrWaiterDeadline) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto none = store->next_lease_deadline();
    ASSERT_TRUE(none) << none.error().message;
    EXPECT_FALSE(*none);

    ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "alice", clock.now(), 2h)));
    auto lease = store->next_lease_deadline();
    ASSERT_TRUE(lease) << lease.error().message;
    EXPECT_EQ(*lease, clock.now() + 2h);

    queue(*store, waiter_of("w-1", lease_of("lotus-0", "bob", clock.now()), 30min));
    auto waiter = store->next_lease_deadline();
    ASSERT_TRUE(waiter) << waiter.error().message;
    EXPECT_EQ(*waiter, clock.now() + 30min);
}

TEST_P(Leases, AGatedNodeGoesToASelectorOnceItPassedAndALeaseUsesThePassUp) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 2);
    ASSERT_TRUE(store);
    // lotus-0 is gated and has not passed; lotus-1 is not gated.
    ASSERT_TRUE(store->configure_gates({"lotus-0"}, clock.now()));
    auto gated = store->node("lotus-0", clock.now());
    ASSERT_TRUE(gated);
    ASSERT_TRUE(gated->gate_until.has_value());
    EXPECT_EQ(*gated->gate_until, core::TimePoint{});
    EXPECT_FALSE(store->node("lotus-1", clock.now())->gate_until.has_value());

    auto both = store->try_lease(selector_of(2, "alice", clock.now()));
    ASSERT_TRUE(both) << both.error().message;
    EXPECT_FALSE(both->granted);
    EXPECT_EQ(both->refusal.gating, 1);

    // Its gate passes: it is handed out, and the lease uses the pass up.
    auto set = store->set_gate("lotus-0", clock.now() + 10min, core::TimePoint{}, clock.now());
    ASSERT_TRUE(set) << set.error().message;
    EXPECT_TRUE(*set);
    auto one = store->try_lease(selector_of(1, "alice", clock.now()));
    ASSERT_TRUE(one) << one.error().message;
    ASSERT_TRUE(one->granted);
    EXPECT_EQ(one->leases.front().node, "lotus-0");
    EXPECT_EQ(*store->node("lotus-0", clock.now())->gate_until, core::TimePoint{});
    // A pass measured while it is leased (or against a gate_until that changed) is no pass.
    auto while_leased =
        store->set_gate("lotus-0", clock.now() + 10min, core::TimePoint{}, clock.now());
    ASSERT_TRUE(while_leased);
    EXPECT_FALSE(*while_leased);
    auto stale = store->set_gate("lotus-1", clock.now() + 10min, clock.now(), clock.now());
    ASSERT_TRUE(stale);
    EXPECT_FALSE(*stale) << "lotus-1 is not gated: its gate_until is not what was seen";

    // No longer gated: handed out as any node.
    ASSERT_TRUE(store->configure_gates({}, clock.now()));
    EXPECT_FALSE(store->node("lotus-0", clock.now())->gate_until.has_value());
    EXPECT_EQ(store->set_gate("nope", clock.now(), core::TimePoint{}, clock.now()).error().code,
              ErrorCode::kNotFound);
}

}  // namespace
}  // namespace aviary::store::test
