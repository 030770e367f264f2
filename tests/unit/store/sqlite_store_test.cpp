#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "store_support.hpp"

namespace aviary::store::test {
namespace {

using core::ErrorCode;

TEST(SqliteStore, ClosedStoreRefusesCallsAndCloseIsIdempotent) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->ping());
    store->close();
    store->close();
    auto attempt = store->try_lease(lease_of("lotus-1", "alice", clock.now()));
    ASSERT_FALSE(attempt);
    EXPECT_EQ(attempt.error().code, ErrorCode::kUnavailable);
    EXPECT_EQ(attempt.error().message, "store is closed");
    auto nodes = store->nodes(clock.now());
    ASSERT_FALSE(nodes);
    EXPECT_EQ(nodes.error().code, ErrorCode::kUnavailable);
    EXPECT_FALSE(store->ping());
}

TEST(SqliteStore, RejectsBadSettings) {
    auto settings = memory_settings();
    settings.synchronous = "sometimes";
    auto bad_sync = open(settings);
    ASSERT_FALSE(bad_sync);
    EXPECT_EQ(bad_sync.error().code, ErrorCode::kInvalidArgument);
    settings = memory_settings();
    settings.driver = "mysql";
    auto bad_driver = open(settings);
    ASSERT_FALSE(bad_driver);
    EXPECT_EQ(bad_driver.error().code, ErrorCode::kInvalidArgument);
}

TEST(SqliteStore, InMemoryReadsAreSafeBesideConcurrentWrites) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 8);
    ASSERT_TRUE(store);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            std::string node = "lotus-" + std::to_string(t);
            for (int i = 0; i < 50; ++i) {
                if (!store->try_lease(lease_of(node, "owner", clock.now())) ||
                    !store->nodes(clock.now()) ||
                    !store->release(release_of(node, "owner", clock.now()))) {
                    ++failures;
                }
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(store->stats().writes, 1U + 8U * 50U * 2U);
}

TEST(SqliteStore, AcknowledgedWritesSurviveCloseAndReopen) {
    TempDir dir;
    core::ManualClock clock;
    std::string lease_id;
    {
        auto store = open_store(file_settings(dir));
        ASSERT_TRUE(store);
        ASSERT_TRUE(store->reconcile_nodes(lotus_nodes(3), "config", clock.now()));
        auto leased = store->try_lease(lease_of("lotus-1", "anton", clock.now()));
        ASSERT_TRUE(leased);
        lease_id = leased->leases.front().id;
    }  // the destructor closes
    auto store = open_store(file_settings(dir));
    ASSERT_TRUE(store);
    auto node = store->node("lotus-1", clock.now());
    ASSERT_TRUE(node) << node.error().message;
    ASSERT_TRUE(node->lease);
    EXPECT_EQ(node->lease->id, lease_id);
    EXPECT_EQ(node->lease->owner, "anton");
    auto events = store->events(EventQuery{.node = "", .since = {}, .before_id = {}, .limit = 10});
    ASSERT_TRUE(events);
    EXPECT_EQ(events->size(), 4U);
    EXPECT_TRUE(store->ping());
}

}  // namespace
}  // namespace aviary::store::test
