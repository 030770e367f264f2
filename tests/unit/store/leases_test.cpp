#include <gtest/gtest.h>

#include "store_support.hpp"

namespace aviary::store::test {
namespace {

using core::ErrorCode;

TEST(Leases, GrantsAFreeNodeAndRecordsTheAcquisition) {
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

TEST(Leases, RenewalKeepsLeaseIdAndAcquiredAtAndMovesExpiry) {
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

TEST(Leases, RefusesAnotherOwnerAndReturnsTheHolder) {
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

TEST(Leases, TakesOverALapsedLeaseAndReportsIt) {
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

TEST(Leases, OwnLapsedLeaseStartsANewLease) {
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

TEST(Leases, LeaseOfAnUnknownNodeIsNotFound) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto attempt = store->try_lease(lease_of("lotus-9", "alice", clock.now()));
    ASSERT_FALSE(attempt);
    EXPECT_EQ(attempt.error().code, ErrorCode::kNotFound);
    EXPECT_EQ(attempt.error().message, "unknown node lotus-9");
    EXPECT_EQ(store->stats().failed_writes, 1U);
}

TEST(Leases, LeaseOfANodeInMaintenanceIsUnavailable) {
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

TEST(Leases, LeaseWithoutOwnerIsInvalid) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto attempt = store->try_lease(lease_of("lotus-1", "", clock.now()));
    ASSERT_FALSE(attempt);
    EXPECT_EQ(attempt.error().code, ErrorCode::kInvalidArgument);
}

TEST(Leases, ReleaseOfAFreeNodeSucceedsWithNothing) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto released = store->release(release_of("lotus-1", "alice", clock.now()));
    ASSERT_TRUE(released) << released.error().message;
    EXPECT_FALSE(*released);
    EXPECT_EQ(kinds(*store, "lotus-1"), (std::vector<std::string>{"node.added"}));
}

TEST(Leases, ReleaseByTheHolderEndsTheLeaseWithAnEvent) {
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

TEST(Leases, ReleaseByAnotherOwnerIsRefusedNamingTheHolder) {
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

TEST(Leases, ForcedReleaseWithoutOwnerEndsAnyLease) {
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

TEST(Leases, ReleaseOfALapsedLeaseSucceedsAndRecordsItsExpiry) {
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

TEST(Leases, ReleaseOfAnUnknownNodeIsNotFound) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto released = store->release(release_of("lotus-9", "alice", clock.now()));
    ASSERT_FALSE(released);
    EXPECT_EQ(released.error().code, ErrorCode::kNotFound);
    EXPECT_EQ(released.error().message, "unknown node lotus-9");
}

TEST(Leases, ExpireLeasesEndsOnlyLapsedLeasesWithAnEventEach) {
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

}  // namespace
}  // namespace aviary::store::test
