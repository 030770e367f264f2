#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "store/sqlite/checkpointer.hpp"
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

TEST(SqliteStore, TheCheckpointerKeepsTheWalFromGrowingWithoutCheckpointsOnCommit) {
    TempDir dir;
    core::ManualClock clock;
    auto settings = file_settings(dir);
    auto store = open_store(settings);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->reconcile_nodes(lotus_nodes(3), "config", clock.now()));
    // Each acquire and release writes a few pages; enough of them pass the wake threshold
    // several times over.
    bool checkpointed = false;
    for (int i = 0; i < 5000 && !checkpointed; ++i) {
        auto leased = store->try_lease(lease_of("lotus-1", "anton", clock.now()));
        ASSERT_TRUE(leased);
        ASSERT_TRUE(store->release(ReleaseRequest{
            .node = "lotus-1", .owner = "anton", .actor = "anton", .now = clock.now()}));
        checkpointed = store->stats().checkpoints > 0;
    }
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (store->stats().checkpoints == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(5ms);
    }
    EXPECT_GT(store->stats().checkpoints, 0U) << "the WAL passed 1000 pages: a checkpoint ran";
    // The WAL was reused from its start rather than growing with every write: far smaller
    // than the pages written (each at least one 4 KiB page).
    auto wal = std::filesystem::file_size(settings.path + "-wal");
    EXPECT_LT(wal, 4096U * 4 * sqlite::Checkpointer::kWakeAtPages) << wal;
}

}  // namespace
}  // namespace aviary::store::test
