// Fleet::acquire_async and release_async: the lease hot path answers as acquire and release
// do (refusals worded for the caller, permission checks before the store), through a callback.
#include <gtest/gtest.h>

#include <future>

#include "fleet_support.hpp"

namespace aviary::fleet::test {
namespace {

class FleetAsyncTest : public FleetTest {
protected:
    core::Result<Acquired> acquire_async(std::string node, std::string owner, Caller caller) {
        std::promise<core::Result<Acquired>> answer;
        auto answered = answer.get_future();
        fleet_->acquire_async(
            AcquireRequest{.node = std::move(node), .owner = std::move(owner)}, caller,
            [&answer](core::Result<Acquired> acquired) { answer.set_value(std::move(acquired)); });
        return answered.get();
    }
    core::Result<std::optional<core::Lease>> release_async(std::string node,
                                                           std::string owner,
                                                           Caller caller) {
        std::promise<core::Result<std::optional<core::Lease>>> answer;
        auto answered = answer.get_future();
        fleet_->release_async(node, owner, caller,
                              [&answer](core::Result<std::optional<core::Lease>> ended) {
                                  answer.set_value(std::move(ended));
                              });
        return answered.get();
    }
};

TEST_F(FleetAsyncTest, AcquireAndReleaseByNodeAnswerThroughTheCallback) {
    auto lease = acquire_async("lotus-0", "anton", admin_);
    ASSERT_TRUE(lease) << lease.error().message;
    EXPECT_EQ(lease->leases.front().owner, "anton");
    EXPECT_EQ(lease->leases.front().expires_at, clock_.now() + 1h);  // the default ttl

    auto refused = acquire_async("lotus-0", "bob", admin_);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kBusy);
    EXPECT_NE(refused.error().message.find("anton"), std::string::npos) << refused.error().message;

    auto released = release_async("lotus-0", "anton", admin_);
    ASSERT_TRUE(released) << released.error().message;
    ASSERT_TRUE(*released);
    EXPECT_EQ((*released)->id, lease->leases.front().id);
    EXPECT_EQ(event_kinds("lotus-0"),
              (std::vector<std::string>{"lease.released", "lease.acquired", "node.added"}));
}

TEST_F(FleetAsyncTest, RefusalsBeforeTheStoreComeThroughTheCallbackToo) {
    Caller alice{.identity = "alice", .admin = false};
    // Acting for another owner without being admin: refused before the store is asked.
    auto for_bob = acquire_async("lotus-1", "bob", alice);
    ASSERT_FALSE(for_bob);
    EXPECT_EQ(for_bob.error().code, core::ErrorCode::kPermissionDenied);
    auto unknown = acquire_async("lotus-9", "alice", alice);
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, core::ErrorCode::kNotFound);
}

TEST_F(FleetAsyncTest, AReleaseWithNoOwnerKnownNeedsTheBlockingPath) {
    Caller anonymous{.identity = "", .admin = false};
    EXPECT_TRUE(fleet_->release_needs_read("", anonymous));
    EXPECT_FALSE(fleet_->release_needs_read("anton", anonymous));
    EXPECT_FALSE(fleet_->release_needs_read("", Caller{.identity = "anton", .admin = false}));
    ASSERT_TRUE(acquire("lotus-2", "anton"));
    auto refused = fleet_->release("lotus-2", "", anonymous);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kNotOwner);
}

}  // namespace
}  // namespace aviary::fleet::test
