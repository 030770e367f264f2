#include "fleet/fleet.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

namespace aviary::fleet {
namespace {

using namespace std::chrono_literals;

class FleetTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto opened = store::open(store::Settings{.path = ":memory:"});
        ASSERT_TRUE(opened) << opened.error().message;
        store_ = std::move(*opened);
        Settings settings;
        settings.lease_ttl = 1h;
        settings.max_lease_ttl = 4h;
        for (std::string name : {"lotus-0", "lotus-1"}) {
            settings.nodes.push_back(core::NodeSpec{.name = name, .labels = {{"chain", "lotus"}}});
        }
        fleet_ = std::make_unique<Fleet>(settings, *store_, clock_);
        ASSERT_TRUE(fleet_->reconcile());
    }

    core::Result<Acquired> acquire(std::string node,
                                   std::string owner,
                                   std::optional<core::Millis> ttl = {}) {
        return fleet_->acquire(AcquireRequest{.node = node, .owner = owner, .ttl = ttl}, admin_);
    }

    core::ManualClock clock_;
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<Fleet> fleet_;
    Caller admin_{.identity = "", .admin = true};
};

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

TEST_F(FleetTest, SweepRunsOnStartAndStopsCleanly) {
    ASSERT_TRUE(acquire("lotus-0", "anton", 10min));
    std::mutex mu;
    std::condition_variable granted;
    std::optional<Acquired> got;
    auto queued = fleet_->acquire_or_wait(AcquireRequest{.node = "lotus-0", .owner = "bob"}, 1h,
                                          admin_, [&](Acquired acquired) {
                                              std::lock_guard lock{mu};
                                              got = std::move(acquired);
                                              granted.notify_all();
                                          });
    ASSERT_TRUE(queued) << queued.error().message;
    ASSERT_TRUE(std::holds_alternative<Waiter>(*queued));
    clock_.advance(20min);
    fleet_->start();  // the first sweep is immediate: it ends anton's lease and serves bob
    {
        std::unique_lock lock{mu};
        ASSERT_TRUE(granted.wait_for(lock, 10s, [&] { return got.has_value(); }));
    }
    fleet_->stop();
    fleet_->stop();
    EXPECT_EQ(got->leases.at(0).owner, "bob");
}

}  // namespace
}  // namespace aviary::fleet
