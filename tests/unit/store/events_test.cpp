#include <gtest/gtest.h>

#include "store_support.hpp"

namespace aviary::store::test {
namespace {

AVIARY_STORE_SUITE(Events);

TEST_P(Events, PageNewestFirstWithCursorNodeAndSinceFilters) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 2);  // events 1, 2: node.added
    ASSERT_TRUE(store);
    for (int i = 0; i < 5; ++i) {
        clock.advance(1min);
        ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "alice", clock.now())));  // 3..7
        ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "bob", clock.now())));    // 4..8 even
    }
    EventQuery page;
    page.node = "lotus-0";
    page.limit = 2;
    auto first = store->events(page);
    ASSERT_TRUE(first);
    ASSERT_EQ(first->size(), 2U);
    EXPECT_GT((*first)[0].id, (*first)[1].id);
    EXPECT_EQ((*first)[0].node, "lotus-0");

    page.before_id = first->back().id;
    auto second = store->events(page);
    ASSERT_TRUE(second);
    ASSERT_EQ(second->size(), 2U);
    EXPECT_LT((*second)[0].id, first->back().id);

    page.before_id = second->back().id;
    page.limit = 100;
    auto rest = store->events(page);
    ASSERT_TRUE(rest);
    ASSERT_EQ(rest->size(), 2U);  // the acquisition and node.added
    EXPECT_EQ(rest->back().kind, "node.added");

    EventQuery recent;
    recent.since = clock.now() - 1min;
    auto since = store->events(recent);
    ASSERT_TRUE(since);
    EXPECT_EQ(since->size(), 4U);  // the last two minutes' renewals of both nodes

    EventQuery clamped;
    clamped.limit = 0;
    auto one = store->events(clamped);
    ASSERT_TRUE(one);
    EXPECT_EQ(one->size(), 1U);
}

TEST_P(Events, FollowingAfterAnIdReadsOldestFirst) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 2);  // events 1, 2: node.added
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "alice", clock.now())));
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "bob", clock.now())));
    auto all = store->events(EventQuery{});
    ASSERT_TRUE(all);
    ASSERT_EQ(all->size(), 4U);
    const auto second = (*all)[2].id;  // newest first: the second event ever
    auto after = store->events(EventQuery{.after_id = second, .limit = 1});
    ASSERT_TRUE(after);
    ASSERT_EQ(after->size(), 1U);
    EXPECT_EQ((*after)[0].kind, "lease.acquired");
    EXPECT_EQ((*after)[0].node, "lotus-0") << "the oldest after the id, not the newest";
    auto rest = store->events(EventQuery{.after_id = (*after)[0].id});
    ASSERT_TRUE(rest);
    ASSERT_EQ(rest->size(), 1U);
    EXPECT_EQ((*rest)[0].node, "lotus-1");
    EXPECT_TRUE(store->events(EventQuery{.after_id = (*rest)[0].id})->empty());
}

TEST_P(Events, PruneDeletesOnlyOlderEvents) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 2);
    ASSERT_TRUE(store);
    clock.advance(1h);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "alice", clock.now())));
    auto pruned = store->prune_events(clock.now());
    ASSERT_TRUE(pruned);
    EXPECT_EQ(*pruned, 2);
    EXPECT_EQ(kinds(*store), (std::vector<std::string>{"lease.acquired"}));
}

}  // namespace
}  // namespace aviary::store::test
