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
    EXPECT_EQ(messages(*store_->query(LogQuery{.kind = LogKind::kLog, .filter = {.sender = "s1"}})),
              (std::vector<std::string>{"second", "first"}));
    EXPECT_EQ(
        messages(*store_->query(LogQuery{.kind = LogKind::kLog, .filter = {.max_level = 20}})),
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
        auto got = store_->query(LogQuery{.after = below, .limit = 3});
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
    EXPECT_EQ(messages(*store_->query(LogQuery{.filter = {.contains = "disk"}})),
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
    EXPECT_EQ(messages(*store_->after(LogFollow{.filter = {.max_level = 1}, .limit = 1})),
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

TEST_F(LogStoreTest, LabelsRegexesAndFreeFieldsFilterAndPagesRunEitherWay) {
    auto labelled = [](std::string node, std::string source, std::string message,
                       std::string fields, std::int64_t t) {
        return LogRecord{.time_ns = t,
                         .level = 6,
                         .sender = "nodeos",
                         .message = std::move(message),
                         .node = std::move(node),
                         .source = std::move(source),
                         .fields = std::move(fields)};
    };
    ASSERT_TRUE(store_->append(
        {labelled("canary-a", "stdout", "produced block 10", R"({"peer":{"id":"p1"},"n":3})", 10),
         labelled("canary-a", "stderr", "error: fork detected", "", 20),
         labelled("canary-b", "stdout", "produced block 11", R"({"peer":{"id":"p2"},"ok":true})",
                  30),
         labelled("prod-1", "stdout", "received block 11", "", 40)}));
    auto read = [&](LogFilter filter, bool oldest_first = false) {
        auto got =
            store_->query(LogQuery{.filter = std::move(filter), .oldest_first = oldest_first});
        EXPECT_TRUE(got) << got.error().message;
        return got ? messages(*got) : std::vector<std::string>{};
    };
    EXPECT_EQ(read({.node = "canary-a"}),
              (std::vector<std::string>{"error: fork detected", "produced block 10"}));
    EXPECT_EQ(read({.source = "stderr"}), (std::vector<std::string>{"error: fork detected"}));
    EXPECT_EQ(read({.node_regex = "^canary-"}, true),
              (std::vector<std::string>{"produced block 10", "error: fork detected",
                                        "produced block 11"}));
    EXPECT_EQ(
        read({.sender_regex = "os$", .message_regex = R"(block \d+$)"}),
        (std::vector<std::string>{"received block 11", "produced block 11", "produced block 10"}));
    EXPECT_EQ(read({.fields = {{"$.peer.id", "p2"}}}),
              (std::vector<std::string>{"produced block 11"}));
    EXPECT_EQ(read({.fields = {{"$.n", "3"}, {"$.peer.id", "p1"}}}),
              (std::vector<std::string>{"produced block 10"}));
    EXPECT_EQ(read({.fields = {{"$.ok", "1"}}}), (std::vector<std::string>{"produced block 11"}));
    EXPECT_TRUE(read({.fields = {{"$.peer.id", "p3"}}}).empty());
    // A pattern that makes a backtracking matcher take exponential time (or overflow its stack)
    // on a long line answers at once.
    ASSERT_TRUE(store_->append({labelled("canary-c", "stdout", std::string(60'000, 'a'), "", 50)}));
    EXPECT_TRUE(read({.message_regex = "^(a|aa)*b$"}).empty());
    EXPECT_EQ(read({.message_regex = "^(a|aa)*$"}).size(), 1U);
    auto bad = store_->query(LogQuery{.filter = {.message_regex = "("}});
    ASSERT_FALSE(bad) << "a pattern that does not compile fails the read, not the process";
    EXPECT_NE(bad.error().message.find("regex"), std::string::npos) << bad.error().message;

    // Oldest first, a page at a time, from the cursor above the last one.
    std::vector<std::string> seen;
    std::optional<LogPosition> after;
    for (int page = 0; page < 5; ++page) {
        auto got = store_->query(LogQuery{.oldest_first = true, .after = after, .limit = 3});
        ASSERT_TRUE(got);
        if (got->empty()) {
            break;
        }
        for (const auto& r : *got) {
            seen.push_back(r.node);
        }
        after = LogPosition{.time_ns = got->back().time_ns, .id = got->back().id};
    }
    EXPECT_EQ(seen,
              (std::vector<std::string>{"canary-a", "canary-a", "canary-b", "prod-1", "canary-c"}));

    auto nodes = store_->label_values(LogLabel::kNode, LogLabelQuery{});
    ASSERT_TRUE(nodes);
    EXPECT_EQ(*nodes, (std::vector<std::string>{"canary-a", "canary-b", "canary-c", "prod-1"}));
    EXPECT_EQ(*store_->label_values(LogLabel::kSource, LogLabelQuery{}),
              (std::vector<std::string>{"stderr", "stdout"}));
    EXPECT_EQ(*store_->label_values(LogLabel::kLevel, LogLabelQuery{}),
              (std::vector<std::string>{"6"}));
    EXPECT_EQ(*store_->label_values(LogLabel::kNode, LogLabelQuery{.since_ns = 35}),
              (std::vector<std::string>{"canary-c", "prod-1"}));
    ASSERT_TRUE(store_->forget(LogKind::kLog, 35, 0));
    EXPECT_EQ(*store_->label_values(LogLabel::kNode, LogLabelQuery{}),
              (std::vector<std::string>{"canary-c", "prod-1"}));
}

TEST_F(LogStoreTest, AStreamStoresEachSequenceNumberOnceAndNoticesOnlyWithNewLines) {
    auto shipped = [](std::int64_t seq, std::string message) {
        return LogRecord{.scope = "team",
                         .time_ns = seq * 10,
                         .sender = "geth",
                         .message = std::move(message),
                         .node = "n1",
                         .source = "stdout",
                         .seq = seq};
    };
    auto notice = LogRecord{.scope = "team",
                            .time_ns = 5,
                            .sender = "geth",
                            .message = "dropped 7",
                            .node = "n1",
                            .source = "sidecar"};
    auto first = store_->append_stream("n1@ab12", {shipped(1, "a"), shipped(2, "b")}, {notice});
    ASSERT_TRUE(first) << first.error().message;
    EXPECT_EQ(first->stored.size(), 3U) << "two lines and the notice";
    EXPECT_EQ(first->duplicates, 0U);
    EXPECT_EQ(first->through, 2);
    // The same batch again (its answer was lost), then one that overlaps it.
    auto again = store_->append_stream("n1@ab12", {shipped(1, "a"), shipped(2, "b")}, {notice});
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->stored.empty());
    EXPECT_EQ(again->duplicates, 2U);
    auto overlap = store_->append_stream("n1@ab12", {shipped(2, "b"), shipped(3, "c")}, {});
    ASSERT_TRUE(overlap);
    EXPECT_EQ(messages(overlap->stored), (std::vector<std::string>{"c"}));
    EXPECT_EQ(overlap->duplicates, 1U);
    EXPECT_EQ(overlap->through, 3);
    // Another stream, or the same name in another scope, has its own numbers.
    ASSERT_EQ(store_->append_stream("n1@ffff", {shipped(1, "other")}, {})->stored.size(), 1U);
    auto elsewhere = shipped(1, "elsewhere");
    elsewhere.scope = "other-team";
    ASSERT_EQ(store_->append_stream("n1@ab12", {elsewhere}, {})->stored.size(), 1U);
    EXPECT_EQ(messages(*store_->query(LogQuery{.scope = "team", .oldest_first = true})),
              (std::vector<std::string>{"dropped 7", "a", "other", "b", "c"}));
    auto falling = store_->append_stream("n1@ab12", {shipped(5, "x"), shipped(4, "y")}, {});
    ASSERT_FALSE(falling);
    EXPECT_EQ(falling.error().code, core::ErrorCode::kInvalidArgument);
    // A stream not written for longer than retention remembers streams is forgotten.
    ASSERT_TRUE(store_->forget(LogKind::kLog, 0, 1'000));
    EXPECT_EQ(store_->append_stream("n1@ab12", {shipped(3, "c")}, {})->stored.size(), 1U);
}

TEST_F(LogStoreTest, AScopePastItsStreamCapIsRefusedWholeNamingTheRecord) {
    store_.reset();
    auto opened = open_log_store(
        LogStoreSettings{.path = (dir_ / "capped.db").string(), .max_streams_per_scope = 2});
    ASSERT_TRUE(opened);
    store_ = std::move(*opened);
    ASSERT_TRUE(store_->append({line("a", 1, 6, "s1", "x"), line("a", 2, 6, "s2", "y"),
                                line("a", 3, 6, "s1", "same set")}));
    auto third = store_->append({line("a", 4, 6, "s1", "fine"), line("a", 5, 6, "s3", "new set")});
    ASSERT_FALSE(third);
    EXPECT_EQ(third.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_NE(third.error().message.find("record 1 would start a new stream"), std::string::npos)
        << third.error().message;
    EXPECT_NE(third.error().message.find("logs.max_streams_per_scope"), std::string::npos);
    EXPECT_EQ(store_->query(LogQuery{.scope = "a"})->size(), 3U) << "all or none";
    EXPECT_TRUE(store_->append({line("b", 5, 6, "s3", "another scope")})) << "the cap is per scope";
    // Retention forgets a set with no record left, and the slot is free again.
    ASSERT_TRUE(store_->forget(LogKind::kLog, 3, 0));  // s2's newest record is at 2
    EXPECT_TRUE(store_->append({line("a", 6, 6, "s3", "new set")}));
}

TEST_F(LogStoreTest, AVersionOneFileIsMigratedKeepingItsRecordsAndTheirLabelSets) {
    store_.reset();
    const auto path = (dir_ / "v1.db").string();
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, R"sql(
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE log_records (id INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL,
    scope TEXT NOT NULL, time_ns INTEGER NOT NULL, level INTEGER NOT NULL, sender TEXT NOT NULL,
    message TEXT NOT NULL);
CREATE INDEX log_records_kind_time ON log_records (kind, time_ns);
CREATE INDEX log_records_kind_sender_time ON log_records (kind, sender, time_ns);
CREATE TABLE feed_positions (feed TEXT PRIMARY KEY, through INTEGER NOT NULL);
INSERT INTO schema_version (version) VALUES (1);
INSERT INTO log_records (kind, scope, time_ns, level, sender, message)
    VALUES (0, '', 7, 3, 'old-sender', 'from version 1');
)sql",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
    auto opened = open_log_store(LogStoreSettings{.path = path});
    ASSERT_TRUE(opened) << opened.error().message;
    auto kept = (*opened)->query(LogQuery{});
    ASSERT_TRUE(kept);
    ASSERT_EQ(kept->size(), 1U);
    EXPECT_EQ((*kept)[0].message, "from version 1");
    EXPECT_EQ((*kept)[0].node, "");
    EXPECT_EQ(*(*opened)->label_values(LogLabel::kService, LogLabelQuery{}),
              (std::vector<std::string>{"old-sender"}));
    auto next = (*opened)->append({line("", 8, 6, "new", "after", LogKind::kLog)});
    ASSERT_TRUE(next);
    EXPECT_EQ((*next)[0].id, (*kept)[0].id + 1);
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
