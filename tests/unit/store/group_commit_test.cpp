#include "store/sql/group_commit.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <future>
#include <stdexcept>
#include <thread>

#include "store/sqlite/connection.hpp"
#include "store_support.hpp"

namespace aviary::store::test {
namespace {

using core::ErrorCode;
using sql::Connection;
using sql::GroupCommit;
using sqlite::SqliteConnection;

std::unique_ptr<Connection> open_table(const TempDir& dir, std::string_view schema) {
    auto db = SqliteConnection::open(dir.file("writer.db").string(),
                                     SqliteConnection::Mode::kReadWrite, 5s);
    EXPECT_TRUE(db) << db.error().message;
    if (!db) {
        return nullptr;
    }
    auto created = (*db)->exec(schema);
    EXPECT_TRUE(created) << created.error().message;
    return std::move(*db);
}

core::Result<void> insert(Connection& db, int value) {
    auto statement = db.prepare("INSERT INTO t (x) VALUES (?1)");
    if (!statement) {
        return statement.error();
    }
    return statement->bind_all(std::int64_t{value}).run();
}

std::int64_t count_rows(Connection& db) {
    auto select = db.prepare("SELECT count(*) FROM t");
    EXPECT_TRUE(select && select->step());
    return select ? select->int64(0) : -1;
}

/// Holds the writer inside one operation until opened, so everything submitted meanwhile
/// queues up and runs as the next batch.
class WriterGate {
public:
    explicit WriterGate(GroupCommit& writer) {
        auto entered = entered_.get_future();
        thread_ = std::thread{[this, &writer] {
            auto opened = opened_.get_future();
            (void)writer.submit([&](Connection&) {
                entered_.set_value();
                opened.wait();
                return core::Result<void>{};
            });
        }};
        entered.wait();
    }
    ~WriterGate() {
        open();
        thread_.join();
    }
    WriterGate(const WriterGate&) = delete;
    WriterGate& operator=(const WriterGate&) = delete;

    void open() {
        if (!opened_once_) {
            opened_once_ = true;
            opened_.set_value();
        }
    }

private:
    std::promise<void> entered_;
    std::promise<void> opened_;
    bool opened_once_ = false;
    std::thread thread_;
};

/// Waits (with a deadline, yielding) until `count` operations are queued behind the gate.
bool wait_until_queued(const GroupCommit& writer, std::size_t count) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (writer.queued_for_test() < count) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::yield();
    }
    return true;
}

TEST(GroupCommit, OperationsQueuedDuringACommitShareTheNextOne) {
    TempDir dir;
    auto db = open_table(dir, "CREATE TABLE t (x INTEGER)");
    ASSERT_TRUE(db);
    std::mutex db_mutex;
    GroupCommit writer{*db, db_mutex};
    std::vector<std::future<core::Result<void>>> results;
    {
        WriterGate gate{writer};
        for (int i = 0; i < 8; ++i) {
            results.push_back(std::async(std::launch::async, [&writer, i] {
                return writer.submit([i](Connection& c) { return insert(c, i); });
            }));
        }
        ASSERT_TRUE(wait_until_queued(writer, 8));
    }
    for (auto& result : results) {
        EXPECT_TRUE(result.get());
    }
    auto stats = writer.stats();
    EXPECT_EQ(stats.commits, 2U);  // the gate's batch, then all eight together
    EXPECT_EQ(stats.writes, 9U);
    EXPECT_EQ(stats.largest_batch, 8U);
    writer.close();
    EXPECT_EQ(count_rows(*db), 8);
}

TEST(GroupCommit, FailingOperationRollsBackAloneInItsBatch) {
    TempDir dir;
    auto db = open_table(dir, "CREATE TABLE t (x INTEGER)");
    ASSERT_TRUE(db);
    std::mutex db_mutex;
    GroupCommit writer{*db, db_mutex};
    std::vector<std::future<core::Result<void>>> results;
    {
        WriterGate gate{writer};
        for (int i = 0; i < 8; ++i) {
            results.push_back(std::async(std::launch::async, [&writer, i] {
                return writer.submit([i](Connection& c) -> core::Result<void> {
                    auto inserted = insert(c, i);  // written, then rolled back when odd
                    if (inserted && i % 2 == 1) {
                        return core::Error{ErrorCode::kNotOwner, "odd one out"};
                    }
                    return inserted;
                });
            }));
        }
        ASSERT_TRUE(wait_until_queued(writer, 8));
    }
    for (int i = 0; i < 8; ++i) {
        auto result = results[static_cast<std::size_t>(i)].get();
        EXPECT_EQ(result.has_value(), i % 2 == 0);
        if (!result) {
            EXPECT_EQ(result.error().code, ErrorCode::kNotOwner);
        }
    }
    auto stats = writer.stats();
    EXPECT_EQ(stats.commits, 2U);
    EXPECT_EQ(stats.failed_writes, 4U);
    writer.close();
    EXPECT_EQ(count_rows(*db), 4);
}

/// Eight operations queued in order (0 first) behind a gate on an optimistic writer;
/// `run(i, db)` is operation i. Returns each one's result, in order, and counts the runs of
/// each in `runs`.
template <class Run>
std::vector<core::Result<void>> run_optimistic_batch(GroupCommit& writer,
                                                     std::array<std::atomic<int>, 8>& runs,
                                                     Run run) {
    std::array<std::promise<core::Result<void>>, 8> answers;
    {
        WriterGate gate{writer};
        for (std::size_t i = 0; i < answers.size(); ++i) {
            writer.submit_async(
                [&runs, &run, i](Connection& c) -> core::Result<void> {
                    ++runs[i];
                    return run(static_cast<int>(i), c);
                },
                [&answers, i](core::Result<void> result) {
                    answers[i].set_value(std::move(result));
                });
        }
        EXPECT_TRUE(wait_until_queued(writer, 8));
    }
    std::vector<core::Result<void>> results;
    for (auto& answer : answers) {
        results.push_back(answer.get_future().get());
    }
    return results;
}

TEST(GroupCommit, OptimisticBatchKeepsARefusalThatWroteNothingWithoutRunningAgain) {
    TempDir dir;
    auto db = open_table(dir, "CREATE TABLE t (x INTEGER)");
    ASSERT_TRUE(db);
    std::mutex db_mutex;
    std::atomic<int> rolled_back{0};
    GroupCommit writer{*db, db_mutex,
                       [&rolled_back](bool committed) { rolled_back += committed ? 0 : 1; },
                       GroupCommit::Isolation::kOptimistic};
    std::array<std::atomic<int>, 8> runs{};
    auto results = run_optimistic_batch(writer, runs, [](int i, Connection& c) {
        if (i % 2 == 1) {
            return core::Result<void>{core::Error{ErrorCode::kNotOwner, "refused first"}};
        }
        return insert(c, i);
    });
    for (int i = 0; i < 8; ++i) {
        EXPECT_EQ(results[static_cast<std::size_t>(i)].has_value(), i % 2 == 0) << i;
        EXPECT_EQ(runs[static_cast<std::size_t>(i)].load(), 1) << "operation " << i;
    }
    auto stats = writer.stats();
    EXPECT_EQ(stats.batches_run_again, 0U);
    EXPECT_EQ(stats.failed_writes, 4U);
    EXPECT_EQ(rolled_back.load(), 0);
    writer.close();
    EXPECT_EQ(count_rows(*db), 4);
}

TEST(GroupCommit, OptimisticBatchRunsAgainWithSavepointsWhenAFailureHadWritten) {
    TempDir dir;
    auto db = open_table(dir, "CREATE TABLE t (x INTEGER)");
    ASSERT_TRUE(db);
    std::mutex db_mutex;
    std::atomic<int> rolled_back{0};
    std::atomic<int> committed_batches{0};
    GroupCommit writer{*db, db_mutex,
                       [&](bool committed) { ++(committed ? committed_batches : rolled_back); },
                       GroupCommit::Isolation::kOptimistic};
    std::array<std::atomic<int>, 8> runs{};
    auto results = run_optimistic_batch(writer, runs, [](int i, Connection& c) {
        auto inserted = insert(c, i);  // written, then undone: 3 fails, 5 throws
        if (inserted && i == 3) {
            return core::Result<void>{core::Error{ErrorCode::kNotOwner, "written, then refused"}};
        }
        if (inserted && i == 5) {
            throw std::runtime_error{"written, then thrown"};
        }
        return inserted;
    });
    for (int i = 0; i < 8; ++i) {
        EXPECT_EQ(results[static_cast<std::size_t>(i)].has_value(), i != 3 && i != 5) << i;
    }
    ASSERT_FALSE(results[3]);
    EXPECT_EQ(results[3].error().code, ErrorCode::kNotOwner);
    ASSERT_FALSE(results[5]);
    EXPECT_EQ(results[5].error().code, ErrorCode::kInternal);
    EXPECT_NE(results[5].error().message.find("written, then thrown"), std::string::npos);
    // Queued in order: the first attempt stopped at operation 3; the second ran every one.
    for (int i = 0; i < 8; ++i) {
        EXPECT_EQ(runs[static_cast<std::size_t>(i)].load(), i <= 3 ? 2 : 1) << "operation " << i;
    }
    auto stats = writer.stats();
    EXPECT_EQ(stats.batches_run_again, 1U);
    EXPECT_EQ(stats.failed_writes, 2U);
    EXPECT_EQ(stats.commits, 2U) << "the gate's batch, then this one once";
    EXPECT_EQ(rolled_back.load(), 1) << "the rolled-back attempt was forgotten";
    EXPECT_EQ(committed_batches.load(), 2);
    writer.close();
    EXPECT_EQ(count_rows(*db), 6) << "each failure's row undone, nothing written twice";
}

TEST(GroupCommit, FailedCommitFailsEveryOperationOfTheBatch) {
    TempDir dir;
    // A deferred foreign key is checked at COMMIT: one bad row makes the whole commit fail.
    auto db = open_table(dir,
                         "PRAGMA foreign_keys = ON;"
                         "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
                         "CREATE TABLE t (x INTEGER REFERENCES parent (id) "
                         "DEFERRABLE INITIALLY DEFERRED)");
    ASSERT_TRUE(db);
    ASSERT_TRUE(db->exec("INSERT INTO parent (id) VALUES (1)"));
    std::mutex db_mutex;
    GroupCommit writer{*db, db_mutex};
    std::vector<std::future<core::Result<void>>> results;
    {
        WriterGate gate{writer};
        for (int value : {1, 1, 99}) {
            results.push_back(std::async(std::launch::async, [&writer, value] {
                return writer.submit([value](Connection& c) { return insert(c, value); });
            }));
        }
        ASSERT_TRUE(wait_until_queued(writer, 3));
    }
    for (auto& result : results) {
        auto got = result.get();
        ASSERT_FALSE(got);
        EXPECT_EQ(got.error().code, ErrorCode::kStorage);
    }
    EXPECT_EQ(writer.stats().failed_writes, 3U);
    EXPECT_TRUE(writer.submit([](Connection& c) { return insert(c, 1); }));  // still usable
    writer.close();
    EXPECT_EQ(count_rows(*db), 1);
}

TEST(GroupCommit, CloseRunsWhatIsQueuedThenRefusesNewWork) {
    TempDir dir;
    auto db = open_table(dir, "CREATE TABLE t (x INTEGER)");
    ASSERT_TRUE(db);
    std::mutex db_mutex;
    GroupCommit writer{*db, db_mutex};
    std::future<core::Result<void>> queued;
    std::thread closer;
    {
        WriterGate gate{writer};
        queued = std::async(std::launch::async, [&writer] {
            return writer.submit([](Connection& c) { return insert(c, 1); });
        });
        ASSERT_TRUE(wait_until_queued(writer, 1));
        closer = std::thread{[&writer] { writer.close(); }};
    }
    closer.join();
    EXPECT_TRUE(queued.get());
    auto refused = writer.submit([](Connection& c) { return insert(c, 2); });
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
    EXPECT_EQ(refused.error().message, "store is closed");
    writer.close();  // idempotent
    EXPECT_EQ(count_rows(*db), 1);
}

std::vector<core::NodeSpec> numbered_nodes(int count) {
    std::vector<core::NodeSpec> specs;
    for (int i = 0; i < count; ++i) {
        specs.push_back(core::NodeSpec{.name = "node-" + std::to_string(i),
                                       .driver = "sim",
                                       .image_tag = "v1",
                                       .labels = {},
                                       .note = ""});
    }
    return specs;
}

TEST(GroupCommit, ConcurrentLeasesOnAFileDatabaseAllSucceedInFewerCommits) {
    constexpr int kThreads = 32;
    constexpr int kRounds = 20;
    TempDir dir;
    core::ManualClock clock;
    auto store = open_store(file_settings(dir));
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->reconcile_nodes(numbered_nodes(kThreads), "config", clock.now()));
    auto before = store->stats();
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            std::string node = "node-" + std::to_string(t);
            std::string owner = "owner-" + std::to_string(t);
            for (int i = 0; i < kRounds; ++i) {
                auto leased = store->try_lease(lease_of(node, owner, clock.now()));
                auto released = store->release(release_of(node, owner, clock.now()));
                if (!leased || !leased->granted || !released || !*released) {
                    ++failures;
                }
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    EXPECT_EQ(failures.load(), 0);
    auto stats = store->stats();
    auto writes = stats.writes - before.writes;
    auto commits = stats.commits - before.commits;
    EXPECT_EQ(writes, std::uint64_t{kThreads} * kRounds * 2);
    EXPECT_LT(commits, writes) << "no two writes ever shared a commit";
    EXPECT_GT(stats.largest_batch, 1U);
    auto events =
        store->events(EventQuery{.node = "node-7", .since = {}, .before_id = {}, .limit = 1000});
    ASSERT_TRUE(events);
    EXPECT_EQ(events->size(), 1U + kRounds * 2);
}

TEST(GroupCommit, FailingReleasesDoNotFailTheirNeighbours) {
    constexpr int kThreads = 16;
    TempDir dir;
    core::ManualClock clock;
    auto store = open_store(file_settings(dir));
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->reconcile_nodes(numbered_nodes(kThreads), "config", clock.now()));
    // Even nodes are anton's; the threads for them try to release them as someone else.
    for (int t = 0; t < kThreads; t += 2) {
        ASSERT_TRUE(store->try_lease(lease_of("node-" + std::to_string(t), "anton", clock.now())));
    }
    std::vector<std::future<bool>> outcomes;
    for (int t = 0; t < kThreads; ++t) {
        outcomes.push_back(std::async(std::launch::async, [&, t] {
            std::string node = "node-" + std::to_string(t);
            if (t % 2 == 0) {
                auto released = store->release(release_of(node, "mallory", clock.now()));
                return !released && released.error().code == ErrorCode::kNotOwner;
            }
            auto leased = store->try_lease(lease_of(node, "worker", clock.now()));
            return leased && leased->granted;
        }));
    }
    for (auto& outcome : outcomes) {
        EXPECT_TRUE(outcome.get());
    }
    store->close();
    auto reopened = open_store(file_settings(dir));
    ASSERT_TRUE(reopened);
    auto nodes = reopened->nodes(clock.now());
    ASSERT_TRUE(nodes);
    ASSERT_EQ(nodes->size(), std::size_t{kThreads});
    for (const auto& node : *nodes) {
        ASSERT_TRUE(node.lease) << node.spec.name;
        int index = std::stoi(node.spec.name.substr(5));
        EXPECT_EQ(node.lease->owner, index % 2 == 0 ? "anton" : "worker") << node.spec.name;
    }
}
TEST(GroupCommit, AsyncOperationsAreAnsweredAfterTheirBatchCommits) {
    TempDir dir;
    auto db = open_table(dir, "CREATE TABLE t (x INTEGER)");
    ASSERT_TRUE(db);
    std::mutex db_mutex;
    std::atomic<int> batches{0};
    GroupCommit writer{*db, db_mutex, [&batches](bool) { ++batches; }};
    std::promise<core::Result<void>> first;
    std::promise<core::Result<void>> second;
    std::atomic<int> batches_seen{-1};
    {
        WriterGate gate{writer};
        writer.submit_async([](Connection& c) { return insert(c, 1); },
                            [&](core::Result<void> result) {
                                batches_seen = batches.load();
                                first.set_value(std::move(result));
                            });
        writer.submit_async(
            [](Connection&) -> core::Result<void> {
                return core::Error{ErrorCode::kInvalidArgument, "refused"};
            },
            [&](core::Result<void> result) { second.set_value(std::move(result)); });
        ASSERT_TRUE(wait_until_queued(writer, 2));
    }
    auto answered = first.get_future().get();
    EXPECT_TRUE(answered);
    EXPECT_EQ(batches_seen.load(), 2) << "answered after the batch's AfterBatch ran";
    auto refused = second.get_future().get();
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().message, "refused");
    writer.close();
    EXPECT_EQ(count_rows(*db), 1) << "the refused one rolled back alone";

    std::optional<core::Result<void>> closed;
    writer.submit_async([](Connection& c) { return insert(c, 2); },
                        [&closed](core::Result<void> result) { closed = std::move(result); });
    ASSERT_TRUE(closed.has_value()) << "answered at once, on the calling thread";
    ASSERT_FALSE(*closed);
    EXPECT_EQ(closed->error().code, ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace aviary::store::test
