// Producer leases (docs/producers.md): one holder per signing key, a fence that only grows.
#include <gtest/gtest.h>

#include "store_support.hpp"

namespace aviary::store::test {
namespace {

AVIARY_STORE_SUITE(Producers);

using core::ErrorCode;

TEST_P(Producers, TheFirstClaimTakesFenceOneAndItsHolderRenewsWithTheSameFence) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto taken = store->claim_producer("eosio.bp1", "bp-1", 10s, clock.now());
    ASSERT_TRUE(taken) << taken.error().message;
    EXPECT_EQ(taken->holder, "bp-1");
    EXPECT_EQ(taken->fence, 1);
    EXPECT_EQ(taken->expires_at, clock.now() + 10s);

    clock.advance(5s);
    auto renewed = store->claim_producer("eosio.bp1", "bp-1", 10s, clock.now());
    ASSERT_TRUE(renewed) << renewed.error().message;
    EXPECT_EQ(renewed->fence, 1);
    EXPECT_EQ(renewed->expires_at, clock.now() + 10s);
    EXPECT_EQ(renewed->acquired_at, taken->acquired_at);
}

TEST_P(Producers, AnotherHolderIsRefusedUntilTheLeaseLapsesThenTakesAHigherFence) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->claim_producer("key-a", "bp-1", 10s, clock.now()));
    auto refused = store->claim_producer("key-a", "bp-2", 10s, clock.now());
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kBusy);
    EXPECT_NE(refused.error().message.find("held by bp-1 (fence 1) until"), std::string::npos)
        << refused.error().message;

    clock.advance(10s);  // bp-1 stopped renewing: its lease lapses
    auto taken = store->claim_producer("key-a", "bp-2", 10s, clock.now());
    ASSERT_TRUE(taken) << taken.error().message;
    EXPECT_EQ(taken->holder, "bp-2");
    EXPECT_EQ(taken->fence, 2);
    // The old holder coming back is refused: it must not produce with fence 1 any more.
    auto stale = store->claim_producer("key-a", "bp-1", 10s, clock.now());
    ASSERT_FALSE(stale);
    EXPECT_EQ(stale.error().code, ErrorCode::kBusy);
    // Keys are independent.
    auto other = store->claim_producer("key-b", "bp-1", 10s, clock.now());
    ASSERT_TRUE(other) << other.error().message;
    EXPECT_EQ(other->fence, 1);
}

TEST_P(Producers, AReleaseFreesTheLeaseAndTheFenceNeverGoesBack) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto first = store->claim_producer("key", "bp-1", 10s, clock.now());
    ASSERT_TRUE(first);
    auto wrong = store->release_producer("key", "bp-2", first->fence, clock.now());
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().code, ErrorCode::kNotOwner);
    EXPECT_NE(wrong.error().message.find("held by bp-1 with fence 1"), std::string::npos)
        << wrong.error().message;
    EXPECT_FALSE(store->release_producer("key", "bp-1", first->fence + 1, clock.now()));
    ASSERT_TRUE(store->release_producer("key", "bp-1", first->fence, clock.now()));

    // Free at once for the next holder, with a higher fence.
    auto second = store->claim_producer("key", "bp-2", 10s, clock.now());
    ASSERT_TRUE(second) << second.error().message;
    EXPECT_EQ(second->fence, 2);
    auto listed = store->producers();
    ASSERT_TRUE(listed) << listed.error().message;
    ASSERT_EQ(listed->size(), 1U);
    EXPECT_EQ(listed->front().holder, "bp-2");
    EXPECT_EQ(listed->front().fence, 2);

    // Each change of hands is in the audit trail.
    auto events = store->events(all_events());
    ASSERT_TRUE(events) << events.error().message;
    std::vector<std::string> kinds;
    for (const auto& event : *events) {
        if (event.kind.starts_with("producer.")) {
            kinds.push_back(event.kind + " " + event.node);
        }
    }
    // Newest first.
    EXPECT_EQ(kinds, (std::vector<std::string>{"producer.acquired bp-2", "producer.released bp-1",
                                               "producer.acquired bp-1"}));
}

TEST_P(Producers, BadClaimsAreRefused) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->claim_producer("", "bp-1", 10s, clock.now()).error().code,
              ErrorCode::kInvalidArgument);
    EXPECT_EQ(store->claim_producer("k", "bp-1", 0s, clock.now()).error().code,
              ErrorCode::kInvalidArgument);
    EXPECT_EQ(store->release_producer("never", "bp-1", 1, clock.now()).error().code,
              ErrorCode::kNotOwner);
}

}  // namespace
}  // namespace aviary::store::test
