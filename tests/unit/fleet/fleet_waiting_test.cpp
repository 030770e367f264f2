#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <thread>

#include "fleet_support.hpp"

namespace aviary::fleet::test {
namespace {

TEST_F(FleetTest, AcquireOrWaitServedAtOnceReturnsTheLeaseAndNeverCallsBack) {
    auto outcome = fleet_->acquire_or_wait(AcquireRequest{.node = "lotus-0", .owner = "anton"},
                                           10min, admin_, granted_.callback("anton"));
    ASSERT_TRUE(outcome) << outcome.error().message;
    ASSERT_TRUE(std::holds_alternative<Acquired>(*outcome));
    EXPECT_EQ(std::get<Acquired>(*outcome).leases.at(0).owner, "anton");
    ASSERT_TRUE(fleet_->release("lotus-0", "anton", admin_));
    EXPECT_TRUE(granted_.after_flush(*store_).empty());
}

TEST_F(FleetTest, WaitOutsideZeroToMaxWaitIsRefused) {
    for (core::Millis wait : {core::Millis{0}, core::Millis{2h}}) {
        auto refused = fleet_->acquire_or_wait(AcquireRequest{.node = "lotus-0", .owner = "a"},
                                               wait, admin_, granted_.callback("a"));
        ASSERT_FALSE(refused);
        EXPECT_EQ(refused.error().code, core::ErrorCode::kInvalidArgument);
    }
    auto refused = fleet_->acquire_or_wait(AcquireRequest{.node = "lotus-0", .owner = "a"}, 2h,
                                           admin_, granted_.callback("a"));
    EXPECT_EQ(refused.error().message, "wait 2h is out of range: at most 1h");
}

TEST_F(FleetTest, WaitersAreServedFirstComeFirstServedOnRelease) {
    ASSERT_TRUE(acquire("lotus-0", "anton"));
    auto bob = wait_for_node("lotus-0", "bob");
    auto carol = wait_for_node("lotus-0", "carol");
    EXPECT_EQ(bob.position, 1);
    EXPECT_EQ(carol.position, 2);
    EXPECT_EQ(bob.node, "lotus-0");
    EXPECT_EQ(bob.deadline, clock_.now() + 1h);

    ASSERT_TRUE(fleet_->release("lotus-0", "anton", admin_));
    ASSERT_TRUE(granted_.wait_for(1));
    auto got = granted_.after_flush(*store_);
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0].first, "bob");
    EXPECT_EQ(got[0].second.leases.at(0).owner, "bob");
    EXPECT_EQ(fleet_->waiter(carol.ticket)->position, 1);
    auto served = fleet_->waiter(bob.ticket);
    ASSERT_FALSE(served);
    EXPECT_EQ(served.error().code, core::ErrorCode::kNotFound);

    ASSERT_TRUE(fleet_->release_lease(got[0].second.leases[0].id, admin_));
    ASSERT_TRUE(granted_.wait_for(2));
    EXPECT_EQ(granted_.after_flush(*store_)[1].first, "carol");
}

TEST_F(FleetTest, ALaterWaiterNeverOvertakesAnEarlierOneForANodeItCouldUse) {
    ASSERT_TRUE(acquire("lotus-0", "x"));
    ASSERT_TRUE(acquire("lotus-1", "y"));
    auto pair = wait_for_lotus(2, "alice");  // lotus-2 is free but not enough
    auto single = wait_for_node("lotus-2", "bob");
    EXPECT_EQ(pair.position, 1);
    EXPECT_EQ(single.position, 2);
    auto direct = acquire("lotus-2", "zed");
    ASSERT_FALSE(direct);
    EXPECT_EQ(direct.error().code, core::ErrorCode::kBusy);
    EXPECT_EQ(direct.error().message, "node lotus-2 is busy: 2 waiter(s) ahead");
    auto any = acquire_lotus(1, "zed");
    ASSERT_FALSE(any);
    EXPECT_EQ(any.error().message,
              "no free node matches chain=lotus (3 match, 2 leased; 2 waiter(s) ahead)");
    // A node nobody ahead could use is not held back.
    auto geth = fleet_->acquire_or_wait(AcquireRequest{.node = "geth-0", .owner = "carol"}, 1h,
                                        admin_, granted_.callback("carol"));
    ASSERT_TRUE(geth);
    EXPECT_TRUE(std::holds_alternative<Acquired>(*geth));

    ASSERT_TRUE(fleet_->release("lotus-0", "x", admin_));
    ASSERT_TRUE(granted_.wait_for(1));
    auto got = granted_.after_flush(*store_);
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0].first, "alice");
    EXPECT_EQ(nodes_of(got[0].second.leases), (std::vector<std::string>{"lotus-0", "lotus-2"}));
    EXPECT_EQ(fleet_->waiter(single.ticket)->position, 1);
}

TEST_F(FleetTest, TwoWaitersForOverlappingSetsBothFinish) {
    // x holds lotus-0 and lotus-1. A wants 2 of chain=lotus, B wants lotus-1: they overlap on
    // lotus-1 and, for A, on whatever comes free. Neither holds part of its set while waiting.
    auto held = acquire_lotus(2, "x");
    ASSERT_TRUE(held);
    auto a = wait_for_lotus(2, "a");
    auto b = wait_for_node("lotus-1", "b");
    EXPECT_EQ(b.position, 2);

    ASSERT_TRUE(fleet_->release("lotus-0", "x", admin_));  // A gets lotus-0 and lotus-2
    ASSERT_TRUE(granted_.wait_for(1));
    auto got = granted_.after_flush(*store_);
    EXPECT_EQ(got[0].first, "a");
    EXPECT_EQ(nodes_of(got[0].second.leases), (std::vector<std::string>{"lotus-0", "lotus-2"}));

    ASSERT_TRUE(fleet_->release("lotus-1", "x", admin_));  // B gets lotus-1
    ASSERT_TRUE(granted_.wait_for(2));
    got = granted_.after_flush(*store_);
    EXPECT_EQ(got[1].first, "b");
    EXPECT_EQ(nodes_of(got[1].second.leases), (std::vector<std::string>{"lotus-1"}));
    auto waiters = fleet_->waiters();
    ASSERT_TRUE(waiters);
    EXPECT_TRUE(waiters->empty());
}

TEST_F(FleetTest, CancelOfAGrantedWaiterReleasesItsLease) {
    ASSERT_TRUE(acquire("lotus-0", "anton"));
    auto bob = wait_for_node("lotus-0", "bob");
    ASSERT_TRUE(fleet_->release("lotus-0", "anton", admin_));
    ASSERT_TRUE(granted_.wait_for(1));
    EXPECT_EQ(fleet_->node("lotus-0")->lease->owner, "bob");
    fleet_->cancel_wait(bob.ticket);  // the client left just as it was served
    EXPECT_EQ(fleet_->node("lotus-0")->state, core::NodeState::kFree);
    EXPECT_EQ(event_kinds("lotus-0")[0], "waiter.cancelled");
    EXPECT_EQ(event_kinds("lotus-0")[1], "lease.released");
    fleet_->cancel_wait(bob.ticket);  // unknown by now: fine
    fleet_->cancel_wait("never-issued");
}

TEST_F(FleetTest, WaiterPositionMovesUpAsThoseAheadLeave) {
    ASSERT_TRUE(acquire_lotus(3, "x"));
    auto first = wait_for_node("lotus-0", "a");
    auto second = wait_for_node("lotus-0", "b");
    auto third = wait_for_lotus(1, "c");  // could take lotus-0 too: behind both
    EXPECT_EQ(third.position, 3);
    fleet_->cancel_wait(first.ticket);
    EXPECT_EQ(fleet_->waiter(second.ticket)->position, 1);
    EXPECT_EQ(fleet_->waiter(third.ticket)->position, 2);
    auto gone = fleet_->waiter(first.ticket);
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, core::ErrorCode::kNotFound);
    auto listed = fleet_->waiters();
    ASSERT_TRUE(listed);
    ASSERT_EQ(listed->size(), 2U);
    EXPECT_EQ(listed->at(0).owner, "b");
    EXPECT_EQ(listed->at(1).selector, (core::Labels{{"chain", "lotus"}}));
    EXPECT_TRUE(granted_.after_flush(*store_).empty());
}

TEST_F(FleetTest, WaitersPastTheirDeadlineExpireWithoutACallback) {
    ASSERT_TRUE(acquire("lotus-0", "anton"));
    auto bob = wait_for_node("lotus-0", "bob", 5min);
    clock_.advance(5min);
    fleet_->expire_once();
    auto gone = fleet_->waiter(bob.ticket);
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, core::ErrorCode::kNotFound);
    EXPECT_EQ(event_kinds("lotus-0")[0], "waiter.expired");
    ASSERT_TRUE(fleet_->release("lotus-0", "anton", admin_));
    EXPECT_TRUE(granted_.after_flush(*store_).empty());
    EXPECT_EQ(fleet_->node("lotus-0")->state, core::NodeState::kFree);
}

TEST_F(FleetTest, ReconcileDropsWaitersLeftByAPreviousRun) {
    ASSERT_TRUE(acquire("lotus-0", "anton"));
    wait_for_node("lotus-0", "bob");
    fleet_.reset();  // the previous run ends; its waiter row stays in the store
    fleet_ = std::make_unique<Fleet>(pool_settings(), *store_, clock_);
    ASSERT_TRUE(fleet_->reconcile());
    auto waiters = fleet_->waiters();
    ASSERT_TRUE(waiters);
    EXPECT_TRUE(waiters->empty());
    EXPECT_EQ(event_kinds("lotus-0")[0], "waiter.dropped");
    ASSERT_TRUE(fleet_->release("lotus-0", "anton", admin_));
    EXPECT_EQ(fleet_->node("lotus-0")->state, core::NodeState::kFree);
}

TEST_F(FleetTest, MaintenanceEndServesAWaiter) {
    ASSERT_TRUE(fleet_->start_maintenance("geth-0", "kernel upgrade", admin_));
    auto queued =
        fleet_->acquire_or_wait(AcquireRequest{.selector = {{"chain", "geth"}}, .owner = "bob"}, 1h,
                                admin_, granted_.callback("bob"));
    ASSERT_TRUE(queued) << queued.error().message;
    ASSERT_TRUE(std::holds_alternative<Waiter>(*queued));
    ASSERT_TRUE(fleet_->end_maintenance("geth-0", admin_));
    ASSERT_TRUE(granted_.wait_for(1));
    EXPECT_EQ(granted_.after_flush(*store_)[0].second.leases.at(0).node, "geth-0");
}

TEST_F(FleetTest, GrantCallbackFiresExactlyOncePerGrant) {
    auto held = acquire_lotus(3, "x");
    ASSERT_TRUE(held);
    for (std::string name : {"a", "b", "c", "d"}) {
        wait_for_lotus(1, name);
    }
    // Three nodes come free one release at a time, then the fourth waiter's node after.
    for (const auto& lease : held->leases) {
        ASSERT_TRUE(fleet_->release(lease.node, "x", admin_));
    }
    ASSERT_TRUE(granted_.wait_for(3));
    auto got = granted_.after_flush(*store_);
    ASSERT_EQ(got.size(), 3U);
    ASSERT_TRUE(fleet_->release_lease(got[0].second.leases.at(0).id, admin_));
    ASSERT_TRUE(granted_.wait_for(4));
    fleet_->expire_once();
    ASSERT_TRUE(fleet_->release_lease(got[1].second.leases.at(0).id, admin_));
    got = granted_.after_flush(*store_);
    std::map<std::string, int> calls;
    for (const auto& [name, acquired] : got) {
        ++calls[name];
        EXPECT_EQ(acquired.leases.at(0).owner, name);
    }
    EXPECT_EQ(calls, (std::map<std::string, int>{{"a", 1}, {"b", 1}, {"c", 1}, {"d", 1}}));
}

// 16 threads acquire 1 or 2 lotus nodes by selector, waiting when busy, and release, on a
// file database (real readers beside the writer). Nobody may ever hold a node another holds;
// the audit trail, replayed at the end, must agree.
TEST(FleetConcurrency, SixteenThreadsBySelectorNeverShareANode) {
    auto dir = std::filesystem::temp_directory_path() / ("aviary-fleet-" + core::new_id());
    std::filesystem::create_directories(dir);
    core::ManualClock clock;
    {
        auto opened = store::open(
            store::Settings{.path = (dir / "aviary.db").string(), .synchronous = "normal"});
        ASSERT_TRUE(opened) << opened.error().message;
        auto& store = **opened;
        auto settings = pool_settings();
        settings.nodes.push_back(core::NodeSpec{.name = "lotus-3", .labels = {{"chain", "lotus"}}});
        Fleet fleet{settings, store, clock};
        ASSERT_TRUE(fleet.reconcile());

        constexpr int kThreads = 16;
        constexpr int kRounds = 15;
        std::mutex held_mu;
        std::map<std::string, std::string> held;  // node -> owner, as the threads see it
        std::atomic<int> overlaps{0};
        std::atomic<int> failures{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t) {
            threads.emplace_back([&, t] {
                std::string owner = "t" + std::to_string(t);
                Caller caller{.identity = owner, .admin = false};
                for (int round = 0; round < kRounds; ++round) {
                    struct Slot {
                        std::mutex mu;
                        std::condition_variable cv;
                        std::optional<Acquired> got;
                    };
                    auto slot = std::make_shared<Slot>();
                    auto outcome = fleet.acquire_or_wait(
                        AcquireRequest{.selector = {{"chain", "lotus"}}, .count = 1 + t % 2}, 1h,
                        caller, [slot](Acquired acquired) {
                            std::lock_guard lock{slot->mu};
                            slot->got = std::move(acquired);
                            slot->cv.notify_all();
                        });
                    if (!outcome) {
                        ++failures;
                        return;
                    }
                    Acquired acquired;
                    if (auto* now = std::get_if<Acquired>(&*outcome)) {
                        acquired = std::move(*now);
                    } else {
                        std::unique_lock lock{slot->mu};
                        if (!slot->cv.wait_for(lock, 30s, [&] { return slot->got.has_value(); })) {
                            ++failures;
                            return;
                        }
                        acquired = std::move(*slot->got);
                    }
                    {
                        std::lock_guard lock{held_mu};
                        for (const auto& lease : acquired.leases) {
                            if (!held.emplace(lease.node, owner).second) {
                                ++overlaps;
                            }
                        }
                    }
                    for (const auto& lease : acquired.leases) {
                        // The store must agree while we hold it (a read connection's view).
                        auto node = fleet.node(lease.node);
                        if (!node || !node->lease || node->lease->id != lease.id) {
                            ++overlaps;
                        }
                    }
                    {
                        // Forgotten before the release commits, so the next holder's claim
                        // happens after it.
                        std::lock_guard lock{held_mu};
                        for (const auto& lease : acquired.leases) {
                            held.erase(lease.node);
                        }
                    }
                    if (!fleet.release_lease(acquired.leases.at(0).id, caller)) {
                        ++failures;
                    }
                }
            });
        }
        for (auto& thread : threads) {
            thread.join();
        }
        EXPECT_EQ(overlaps.load(), 0);
        EXPECT_EQ(failures.load(), 0);

        // Replay the audit trail oldest first: an acquire of a node someone holds is a bug.
        std::vector<core::Event> trail;
        std::optional<std::int64_t> before;
        while (true) {
            auto page = store.events(store::EventQuery{.before_id = before, .limit = 1000});
            ASSERT_TRUE(page) << page.error().message;
            if (page->empty()) {
                break;
            }
            trail.insert(trail.end(), page->begin(), page->end());
            before = page->back().id;
        }
        std::map<std::string, bool> leased;
        int acquisitions = 0;
        for (auto it = trail.rbegin(); it != trail.rend(); ++it) {
            if (it->kind == "lease.acquired") {
                ++acquisitions;
                EXPECT_FALSE(leased[it->node]) << "event " << it->id << " on " << it->node;
                leased[it->node] = true;
            } else if (it->kind == "lease.released" || it->kind == "lease.expired" ||
                       it->kind == "lease.freed") {
                leased[it->node] = false;
            }
        }
        EXPECT_EQ(acquisitions, kRounds * (kThreads / 2) * 3);  // 1 node or 2, half each
        auto nodes = fleet.nodes();
        ASSERT_TRUE(nodes);
        for (const auto& node : *nodes) {
            EXPECT_EQ(node.state, core::NodeState::kFree) << node.spec.name;
        }
        auto waiters = fleet.waiters();
        ASSERT_TRUE(waiters);
        EXPECT_TRUE(waiters->empty());
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
}

}  // namespace
}  // namespace aviary::fleet::test
