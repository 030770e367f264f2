#include <gtest/gtest.h>

#include <algorithm>

#include "store_support.hpp"

namespace aviary::store::test {
namespace {

AVIARY_STORE_SUITE(Waiters);

using core::ErrorCode;

std::vector<std::string> nodes_of(const std::vector<core::Lease>& leases) {
    std::vector<std::string> names;
    for (const auto& lease : leases) {
        names.push_back(lease.node);
    }
    return names;
}

TEST_P(Waiters, EnqueueGrantsAtOnceWhenTheNodeIsFree) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto queued = store->enqueue(waiter_of("t1", lease_of("lotus-0", "bob", clock.now())));
    ASSERT_TRUE(queued) << queued.error().message;
    ASSERT_TRUE(std::holds_alternative<LeaseAttempt>(*queued));
    EXPECT_EQ(std::get<LeaseAttempt>(*queued).leases.at(0).owner, "bob");
    auto waiters = store->waiters(clock.now());
    ASSERT_TRUE(waiters);
    EXPECT_TRUE(waiters->empty());
    EXPECT_EQ(kinds(*store, "lotus-0").front(), "lease.acquired");
}

TEST_P(Waiters, ReleaseServesTheWaiterAndTheListenerHearsItAfterTheCommit) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    GrantLog log{*store};
    ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "anton", clock.now())));
    auto waiter = queue(*store, waiter_of("t1", lease_of("lotus-0", "bob", clock.now(), 2h)));
    EXPECT_EQ(waiter.position, 1);
    EXPECT_EQ(waiter.state, WaiterState::kWaiting);
    EXPECT_TRUE(log.flush().empty());

    clock.advance(5min);
    ASSERT_TRUE(store->release(release_of("lotus-0", "anton", clock.now())));
    auto grants = log.flush();
    ASSERT_EQ(grants.size(), 1U);
    EXPECT_EQ(grants[0].ticket, "t1");
    ASSERT_EQ(grants[0].leases.size(), 1U);
    EXPECT_EQ(grants[0].leases[0].owner, "bob");
    EXPECT_EQ(grants[0].leases[0].acquired_at, clock.now());  // the TTL starts at the grant
    EXPECT_EQ(grants[0].leases[0].expires_at, clock.now() + 2h);

    auto served = store->waiter("t1", clock.now());
    ASSERT_TRUE(served) << served.error().message;
    EXPECT_EQ(served->state, WaiterState::kGranted);
    EXPECT_EQ(served->lease_id, grants[0].leases[0].id);
    EXPECT_EQ(kinds(*store, "lotus-0"),
              (std::vector<std::string>{"waiter.granted", "lease.acquired", "lease.released",
                                        "waiter.queued", "lease.acquired", "node.added"}));
}

TEST_P(Waiters, DirectAcquireDoesNotTakeANodeAnEarlierWaiterIsOwed) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "x", clock.now())));
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "y", clock.now())));
    queue(*store, waiter_of("pair", selector_of(2, "alice", clock.now())));  // lotus-2 is owed

    auto named = store->try_lease(lease_of("lotus-2", "zed", clock.now()));
    ASSERT_TRUE(named) << named.error().message;
    EXPECT_FALSE(named->granted);
    EXPECT_TRUE(named->refusal.holders.empty());
    EXPECT_EQ(named->refusal.waiters_ahead, 1);

    auto any = store->try_lease(selector_of(1, "zed", clock.now()));
    ASSERT_TRUE(any);
    EXPECT_FALSE(any->granted);
    EXPECT_EQ(any->refusal.matching, 3);
    EXPECT_EQ(any->refusal.leased, 2);
    EXPECT_EQ(any->refusal.waiters_ahead, 1);
    EXPECT_EQ(store->node("lotus-2", clock.now())->state, core::NodeState::kFree);
}

TEST_P(Waiters, CancelOfAWaitingWaiterServesTheNextInLine) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    GrantLog log{*store};
    ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "x", clock.now())));
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "y", clock.now())));
    queue(*store, waiter_of("pair", selector_of(2, "alice", clock.now())));
    auto single = queue(*store, waiter_of("single", lease_of("lotus-2", "bob", clock.now())));
    EXPECT_EQ(single.position, 2);

    auto cancelled = store->cancel_waiter("pair", "", clock.now());
    ASSERT_TRUE(cancelled) << cancelled.error().message;
    ASSERT_TRUE(*cancelled);
    EXPECT_EQ((*cancelled)->request.owner, "alice");
    auto grants = log.flush();
    ASSERT_EQ(grants.size(), 1U);
    EXPECT_EQ(grants[0].ticket, "single");
    auto events = store->events(all_events());
    ASSERT_TRUE(events);
    EXPECT_EQ((*events)[2].kind, "waiter.cancelled");
    EXPECT_EQ((*events)[2].actor, "alice");
}

TEST_P(Waiters, CancelOfAGrantedWaiterReleasesItsLease) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "anton", clock.now())));
    queue(*store, waiter_of("t1", lease_of("lotus-0", "bob", clock.now())));
    ASSERT_TRUE(store->release(release_of("lotus-0", "anton", clock.now())));
    EXPECT_EQ(store->node("lotus-0", clock.now())->lease->owner, "bob");

    auto cancelled = store->cancel_waiter("t1", "", clock.now());
    ASSERT_TRUE(cancelled);
    ASSERT_TRUE(*cancelled);
    EXPECT_EQ((*cancelled)->state, WaiterState::kGranted);
    EXPECT_EQ(store->node("lotus-0", clock.now())->state, core::NodeState::kFree);
    EXPECT_EQ(kinds(*store, "lotus-0")[0], "waiter.cancelled");
    EXPECT_EQ(kinds(*store, "lotus-0")[1], "lease.released");
    auto gone = store->waiter("t1", clock.now());
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);
    auto unknown = store->cancel_waiter("t1", "", clock.now());
    ASSERT_TRUE(unknown);
    EXPECT_FALSE(*unknown);
}

TEST_P(Waiters, ExpireRemovesWaitersPastTheirDeadlineAndServesThoseBehind) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    GrantLog log{*store};
    ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "x", clock.now())));
    queue(*store, waiter_of("short", selector_of(3, "alice", clock.now()), 10min));
    auto behind = queue(*store, waiter_of("long", lease_of("lotus-1", "bob", clock.now()), 1h));
    EXPECT_EQ(behind.position, 2);

    clock.advance(10min);
    auto expired = store->expire_waiters(clock.now());
    ASSERT_TRUE(expired) << expired.error().message;
    ASSERT_EQ(expired->size(), 1U);
    EXPECT_EQ(expired->front().ticket, "short");
    auto grants = log.flush();
    ASSERT_EQ(grants.size(), 1U);  // lotus-1 was free, held back only for "short"
    EXPECT_EQ(grants[0].ticket, "long");
    auto events = store->events(all_events());
    ASSERT_TRUE(events);
    EXPECT_EQ(std::count_if(events->begin(), events->end(),
                            [](const auto& e) { return e.kind == "waiter.expired"; }),
              1);
}

TEST_P(Waiters, DropRemovesEveryWaiterOfOneInstanceWithAnEventEach) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "x", clock.now())));
    auto mine = [&](std::string ticket, std::string owner) {
        auto waiter =
            waiter_of(std::move(ticket), lease_of("lotus-0", std::move(owner), clock.now()));
        waiter.instance = "serve-a";
        return waiter;
    };
    queue(*store, mine("a", "alice"));
    auto other = waiter_of("c", lease_of("lotus-0", "carol", clock.now()));
    other.instance = "serve-b";
    queue(*store, other);
    queue(*store, mine("b", "bob"));
    auto dropped = store->drop_waiters("serve-a", "aviary", clock.now());
    ASSERT_TRUE(dropped) << dropped.error().message;
    ASSERT_EQ(dropped->size(), 2U);
    EXPECT_EQ((*dropped)[0].ticket, "a");
    EXPECT_EQ((*dropped)[1].ticket, "b");
    auto left = store->waiters(clock.now());
    ASSERT_TRUE(left);
    ASSERT_EQ(left->size(), 1U);  // serve-b's connection still waits
    EXPECT_EQ(left->front().ticket, "c");
    EXPECT_EQ(left->front().instance, "serve-b");
    EXPECT_EQ(left->front().position, 1);
    EXPECT_EQ(kinds(*store, "lotus-0")[0], "waiter.dropped");
    EXPECT_EQ(kinds(*store, "lotus-0")[1], "waiter.dropped");
}

TEST_P(Waiters, ListShowsServingOrderAndPositionsCountOnlyOverlappingWaiters) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 4);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(selector_of(4, "x", clock.now())));
    queue(*store, waiter_of("a", lease_of("lotus-0", "alice", clock.now())));
    queue(*store, waiter_of("b", lease_of("lotus-3", "bob", clock.now())));
    queue(*store, waiter_of("c", selector_of(2, "carol", clock.now())));
    queue(*store, waiter_of("d", lease_of("lotus-0", "dave", clock.now())));
    auto waiters = store->waiters(clock.now());
    ASSERT_TRUE(waiters) << waiters.error().message;
    ASSERT_EQ(waiters->size(), 4U);
    std::vector<std::pair<std::string, int>> order;
    for (const auto& waiter : *waiters) {
        order.emplace_back(waiter.ticket, waiter.position);
    }
    EXPECT_EQ(order,
              (std::vector<std::pair<std::string, int>>{{"a", 1}, {"b", 1}, {"c", 3}, {"d", 3}}));
    EXPECT_EQ(waiters->at(2).request.selector, (core::Labels{{"chain", "lotus"}}));
    EXPECT_EQ(waiters->at(2).request.count, 2);
}

TEST_P(Waiters, TwoWaitersForOverlappingSetsBothFinishInTurn) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    GrantLog log{*store};
    auto held = store->try_lease(selector_of(2, "x", clock.now()));  // lotus-0, lotus-1
    ASSERT_TRUE(held && held->granted);
    queue(*store, waiter_of("pair", selector_of(2, "alice", clock.now())));
    queue(*store, waiter_of("one", lease_of("lotus-1", "bob", clock.now())));

    ASSERT_TRUE(store->release(release_of("lotus-1", "x", clock.now())));
    auto grants = log.flush();
    ASSERT_EQ(grants.size(), 1U);
    EXPECT_EQ(grants[0].ticket, "pair");
    EXPECT_EQ(nodes_of(grants[0].leases), (std::vector<std::string>{"lotus-1", "lotus-2"}));
    EXPECT_EQ(grants[0].leases[0].id, grants[0].leases[1].id);

    ASSERT_TRUE(store->release_lease(lease_id_of(grants[0].leases[0].id, "alice", clock.now())));
    grants = log.flush();
    ASSERT_EQ(grants.size(), 2U);
    EXPECT_EQ(grants[1].ticket, "one");
    EXPECT_EQ(nodes_of(grants[1].leases), (std::vector<std::string>{"lotus-1"}));
}

TEST_P(Waiters, UnservableRequestsAreRefusedInsteadOfQueued) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto too_many = store->enqueue(waiter_of("t", selector_of(4, "alice", clock.now())));
    ASSERT_FALSE(too_many);
    EXPECT_EQ(too_many.error().code, ErrorCode::kNotFound);
    EXPECT_EQ(too_many.error().message, "only 3 node(s) match chain=lotus, 4 asked");
    auto unknown = store->enqueue(waiter_of("t", lease_of("lotus-9", "alice", clock.now())));
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-0", "x", clock.now())));
    queue(*store, waiter_of("t", lease_of("lotus-0", "alice", clock.now())));
    auto again = store->enqueue(waiter_of("t", lease_of("lotus-0", "alice", clock.now())));
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
}

}  // namespace
}  // namespace aviary::store::test
