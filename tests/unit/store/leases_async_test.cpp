// The lease hot path (conformance, both backends): try_lease_async and release_async answer
// as the blocking calls do, from the writer thread after the commit, and a named node is
// decided on its own row only while nobody waits: a waiter is never overtaken.
#include <gtest/gtest.h>

#include "store_support.hpp"

namespace aviary::store::test {
namespace {

AVIARY_STORE_SUITE(LeasesAsync);

using core::ErrorCode;

core::Result<LeaseAttempt> acquire_async(Store& store, LeaseRequest request) {
    return wait_for_answer<core::Result<LeaseAttempt>>(
        [&](auto done) { store.try_lease_async(std::move(request), std::move(done)); });
}

core::Result<std::optional<core::Lease>> release_async(Store& store, ReleaseRequest request) {
    return wait_for_answer<core::Result<std::optional<core::Lease>>>(
        [&](auto done) { store.release_async(std::move(request), std::move(done)); });
}

TEST_P(LeasesAsync, AcquireAndReleaseAnswerAsTheBlockingCallsAndAreDurable) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto attempt = acquire_async(*store, lease_of("lotus-1", "alice", clock.now(), 2h));
    ASSERT_TRUE(attempt) << attempt.error().message;
    ASSERT_TRUE(attempt->granted);
    EXPECT_EQ(attempt->leases.front().owner, "alice");
    // Answered after the commit: a read on another connection sees it.
    auto node = store->node("lotus-1", clock.now());
    ASSERT_TRUE(node);
    ASSERT_TRUE(node->lease);
    EXPECT_EQ(node->lease->id, attempt->leases.front().id);

    auto renewed = acquire_async(*store, lease_of("lotus-1", "alice", clock.now(), 3h));
    ASSERT_TRUE(renewed);
    EXPECT_TRUE(renewed->renewed);
    EXPECT_EQ(renewed->leases.front().id, attempt->leases.front().id);

    auto refused = acquire_async(*store, lease_of("lotus-1", "bob", clock.now()));
    ASSERT_TRUE(refused);
    EXPECT_FALSE(refused->granted);
    ASSERT_EQ(refused->refusal.holders.size(), 1U);
    EXPECT_EQ(refused->refusal.holders.front().owner, "alice");

    auto not_hers = release_async(*store, release_of("lotus-1", "bob", clock.now()));
    ASSERT_FALSE(not_hers);
    EXPECT_EQ(not_hers.error().code, ErrorCode::kNotOwner);

    auto released = release_async(*store, release_of("lotus-1", "alice", clock.now()));
    ASSERT_TRUE(released) << released.error().message;
    ASSERT_TRUE(*released);
    EXPECT_EQ((*released)->id, attempt->leases.front().id);
    EXPECT_EQ(kinds(*store, "lotus-1"), (std::vector<std::string>{"lease.released", "lease.renewed",
                                                                  "lease.acquired", "node.added"}));
}

TEST_P(LeasesAsync, ErrorsComeThroughTheCallback) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto unknown = acquire_async(*store, lease_of("lotus-9", "alice", clock.now()));
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
    EXPECT_NE(unknown.error().message.find("lotus-9"), std::string::npos);
    ASSERT_TRUE(store->start_maintenance("lotus-2", "disk swap", "admin", clock.now()));
    auto maintenance = acquire_async(*store, lease_of("lotus-2", "alice", clock.now()));
    ASSERT_FALSE(maintenance);
    EXPECT_EQ(maintenance.error().code, ErrorCode::kUnavailable);
    EXPECT_NE(maintenance.error().message.find("disk swap"), std::string::npos);
}

TEST_P(LeasesAsync, AfterCloseTheCallbackGetsUnavailableAtOnce) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    store->close();
    auto attempt = acquire_async(*store, lease_of("lotus-1", "alice", clock.now()));
    ASSERT_FALSE(attempt);
    EXPECT_EQ(attempt.error().code, ErrorCode::kUnavailable);
    auto released = release_async(*store, release_of("lotus-1", "alice", clock.now()));
    ASSERT_FALSE(released);
    EXPECT_EQ(released.error().code, ErrorCode::kUnavailable);
}

// The index-driven decision applies only while nobody waits: a lapsed lease whose node a
// waiter wants goes to the waiter, never to the direct acquire that noticed it first.
TEST_P(LeasesAsync, ADirectAcquireOfALapsedNodeNeverOvertakesItsWaiter) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "alice", clock.now(), 1min)));
    auto waiting = queue(*store, waiter_of("t-bob", lease_of("lotus-1", "bob", clock.now())));
    EXPECT_EQ(waiting.position, 1);
    clock.advance(2min);  // alice's lease lapsed; no sweep has run
    auto carol = acquire_async(*store, lease_of("lotus-1", "carol", clock.now()));
    ASSERT_TRUE(carol) << carol.error().message;
    EXPECT_FALSE(carol->granted);
    ASSERT_EQ(carol->refusal.holders.size(), 1U);
    EXPECT_EQ(carol->refusal.holders.front().owner, "bob");
    // Nobody waits now: the next free node is decided on its own row.
    auto dave = acquire_async(*store, lease_of("lotus-0", "dave", clock.now()));
    ASSERT_TRUE(dave);
    EXPECT_TRUE(dave->granted);
}

}  // namespace
}  // namespace aviary::store::test
