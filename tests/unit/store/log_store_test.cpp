// The log store (store/logs.hpp) on a real SQLite file: what is stored is read back by window,
// scope, sender and level, newest first; retention removes in bounded batches; the file's
// schema is checked on open.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>
#include <string>
#include <vector>

#include "store/store.hpp"

namespace aviary::store {
namespace {

namespace fs = std::filesystem;

class LogStoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("aviary-logstore-" +
                std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        auto opened = open_log_store(LogStoreSettings{.path = (dir_ / "logs.db").string()});
        ASSERT_TRUE(opened) << opened.error().message;
        store_ = std::move(*opened);
    }
    void TearDown() override {
        store_.reset();
        fs::remove_all(dir_);
    }

    static LogRecord line(std::string scope,
                          std::int64_t time_ns,
                          int level,
                          std::string sender,
                          std::string message,
                          LogKind kind = LogKind::kLog) {
        return LogRecord{.kind = kind,
                         .scope = std::move(scope),
                         .time_ns = time_ns,
                         .level = level,
                         .sender = std::move(sender),
                         .message = std::move(message)};
    }
    static std::vector<std::string> messages(const std::vector<LogRecord>& records) {
        std::vector<std::string> out;
        for (const auto& r : records) {
            out.push_back(r.message);
        }
        return out;
    }

    fs::path dir_;
    std::unique_ptr<LogStore> store_;
};

TEST_F(LogStoreTest, AppendedRecordsGetGrowingIdsAndReadBackNewestFirstByEachFilter) {
    auto stored =
        store_->append({line("a", 100, 10, "s1", "first"), line("a", 300, 40, "s2", "third"),
                        line("b", 200, 20, "s1", "second"),
                        line("a", 250, 1, "s1", "note", LogKind::kNotification)});
    ASSERT_TRUE(stored) << stored.error().message;
    ASSERT_EQ(stored->size(), 4U);
    EXPECT_LT((*stored)[0].id, (*stored)[1].id);
    EXPECT_LT((*stored)[1].id, (*stored)[2].id);

    auto all = store_->query(LogQuery{.kind = LogKind::kLog});
    ASSERT_TRUE(all);
    EXPECT_EQ(messages(*all), (std::vector<std::string>{"third", "second", "first"}));
    EXPECT_EQ(messages(*store_->query(LogQuery{.kind = LogKind::kLog, .scope = "a"})),
              (std::vector<std::string>{"third", "first"}));
    EXPECT_EQ(messages(*store_->query(LogQuery{.kind = LogKind::kLog, .since_ns = 200})),
              (std::vector<std::string>{"third", "second"}));
    EXPECT_EQ(messages(*store_->query(LogQuery{.kind = LogKind::kLog, .sender = "s1"})),
              (std::vector<std::string>{"second", "first"}));
    EXPECT_EQ(messages(*store_->query(LogQuery{.kind = LogKind::kLog, .max_level = 20})),
              (std::vector<std::string>{"second", "first"}));
    EXPECT_EQ(messages(*store_->query(LogQuery{.kind = LogKind::kLog, .limit = 1})),
              (std::vector<std::string>{"third"}));
    auto notes = store_->query(LogQuery{.kind = LogKind::kNotification});
    ASSERT_TRUE(notes);
    ASSERT_EQ(notes->size(), 1U);
    EXPECT_EQ((*notes)[0].scope, "a");
    EXPECT_EQ((*notes)[0].time_ns, 250);
    EXPECT_EQ((*notes)[0].level, 1);
    EXPECT_EQ((*notes)[0].sender, "s1");
}

TEST_F(LogStoreTest, RetentionRemovesTheOldestInBatchesOfOneKindOnly) {
    std::vector<LogRecord> batch;
    for (int i = 0; i < 25; ++i) {
        batch.push_back(line("", 1000 + i, 1, "s", "line " + std::to_string(i)));
    }
    batch.push_back(line("", 1, 1, "s", "old note", LogKind::kNotification));
    ASSERT_TRUE(store_->append(std::move(batch)));
    // Everything before 1020 goes: 20 lines, in batches of 8.
    std::vector<std::size_t> removed;
    for (int i = 0; i < 10; ++i) {
        auto gone = store_->remove_before(LogKind::kLog, 1020, 8);
        ASSERT_TRUE(gone) << gone.error().message;
        removed.push_back(*gone);
        if (*gone < 8) {
            break;
        }
    }
    EXPECT_EQ(removed, (std::vector<std::size_t>{8, 8, 4}));
    auto left = store_->query(LogQuery{.kind = LogKind::kLog});
    ASSERT_TRUE(left);
    ASSERT_EQ(left->size(), 5U);
    EXPECT_EQ(left->back().message, "line 20");
    EXPECT_EQ(store_->query(LogQuery{.kind = LogKind::kNotification})->size(), 1U);
    EXPECT_EQ(store_->stats().removed, 20U);
    EXPECT_EQ(store_->stats().appended, 26U);
}

TEST_F(LogStoreTest, PagesFollowOneAnotherBelowTheLastPositionWithTheTextAndTimeFilters) {
    std::vector<LogRecord> lines;
    for (int i = 0; i < 10; ++i) {
        // Two records at each time: the id breaks the tie.
        lines.push_back(
            line("", 100 + i / 2, 1, "s", (i % 3 == 0 ? "disk " : "net ") + std::to_string(i)));
    }
    ASSERT_TRUE(store_->append(std::move(lines)));
    std::vector<std::string> seen;
    std::optional<LogPosition> below;
    for (int page = 0; page < 10; ++page) {
        auto got = store_->query(LogQuery{.below = below, .limit = 3});
        ASSERT_TRUE(got) << got.error().message;
        if (got->empty()) {
            break;
        }
        for (const auto& r : *got) {
            seen.push_back(r.message);
        }
        below = LogPosition{.time_ns = got->back().time_ns, .id = got->back().id};
    }
    EXPECT_EQ(seen, (std::vector<std::string>{"disk 9", "net 8", "net 7", "disk 6", "net 5",
                                              "net 4", "disk 3", "net 2", "net 1", "disk 0"}));
    EXPECT_EQ(messages(*store_->query(LogQuery{.contains = "disk"})),
              (std::vector<std::string>{"disk 9", "disk 6", "disk 3", "disk 0"}));
    EXPECT_EQ(messages(*store_->query(LogQuery{.since_ns = 101, .until_ns = 102})),
              (std::vector<std::string>{"net 5", "net 4", "disk 3", "net 2"}));
}

TEST_F(LogStoreTest, FollowingReadsInStoredOrderAndIdsAreNeverGivenTwice) {
    auto empty = store_->ids();
    ASSERT_TRUE(empty);
    EXPECT_EQ(empty->oldest, 0);
    EXPECT_EQ(empty->newest, 0);
    auto first = store_->append({line("a", 5, 1, "s", "one"), line("b", 1, 1, "s", "two"),
                                 line("a", 3, 9, "t", "three", LogKind::kNotification)});
    ASSERT_TRUE(first);
    const auto one = (*first)[0].id;
    auto rest = store_->after(LogFollow{.after_id = one});
    ASSERT_TRUE(rest);
    EXPECT_EQ(messages(*rest), (std::vector<std::string>{"two", "three"})) << "by id, not time";
    EXPECT_EQ(messages(*store_->after(LogFollow{.kind = LogKind::kLog, .scope = "a"})),
              (std::vector<std::string>{"one"}));
    EXPECT_EQ(messages(*store_->after(LogFollow{.max_level = 1, .limit = 1})),
              (std::vector<std::string>{"one"}));
    // Retention empties the table; the next id still follows the last one given.
    ASSERT_TRUE(store_->remove_before(LogKind::kLog, 100, 100));
    ASSERT_TRUE(store_->remove_before(LogKind::kNotification, 100, 100));
    auto emptied = store_->ids();
    EXPECT_EQ(emptied->oldest, 0);
    EXPECT_EQ(emptied->newest, (*first)[2].id);
    auto next = store_->append({line("a", 7, 1, "s", "four")});
    ASSERT_TRUE(next);
    EXPECT_EQ((*next)[0].id, (*first)[2].id + 1);
    EXPECT_EQ(store_->ids()->oldest, (*next)[0].id);
}

TEST_F(LogStoreTest, WhatWasAcknowledgedIsThereAfterReopening) {
    ASSERT_TRUE(store_->append({line("", 5, 1, "s", "durable")}));
    store_.reset();
    auto again = open_log_store(LogStoreSettings{.path = (dir_ / "logs.db").string()});
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_EQ(messages(*(*again)->query(LogQuery{})), (std::vector<std::string>{"durable"}));
}

TEST_F(LogStoreTest, ANewerSchemaOrBadSettingsAreRefusedWithTheReason) {
    store_.reset();
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ / "logs.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "INSERT INTO schema_version (version) VALUES (99)", nullptr, nullptr,
                           nullptr),
              SQLITE_OK);
    sqlite3_close(db);
    auto newer = open_log_store(LogStoreSettings{.path = (dir_ / "logs.db").string()});
    ASSERT_FALSE(newer);
    EXPECT_NE(newer.error().message.find("schema version 99, newer than this aviary knows"),
              std::string::npos)
        << newer.error().message;
    auto no_path = open_log_store(LogStoreSettings{});
    ASSERT_FALSE(no_path);
    EXPECT_EQ(no_path.error().code, core::ErrorCode::kInvalidArgument);
    auto bad_sync = open_log_store(
        LogStoreSettings{.path = (dir_ / "other.db").string(), .synchronous = "sometimes"});
    ASSERT_FALSE(bad_sync);
    EXPECT_NE(bad_sync.error().message.find("logs.synchronous"), std::string::npos);
}

}  // namespace
}  // namespace aviary::store
