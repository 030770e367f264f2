// logs::Logs on a real SQLite log store and a manual clock: upload limits, window reads, and
// retention by the kind's window and by per-stream rules in priority order.
#include "logs/logs.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace aviary::logs {
namespace {

using namespace std::chrono_literals;

class LogsTest : public ::testing::Test {
protected:
    void open(Settings settings) {
        settings.store.path = ":memory:";
        auto opened = store::open_log_store(settings.store);
        ASSERT_TRUE(opened) << opened.error().message;
        store_ = std::move(*opened);
        logs_ = std::make_unique<Logs>(settings, *store_, clock_);
    }
    /// A record `age` old (by its own time) from `sender` at `level`.
    store::LogRecord at(core::Millis age, std::string sender, int level, std::string message) {
        return store::LogRecord{.time_ns = to_ns(clock_.now() - age),
                                .level = level,
                                .sender = std::move(sender),
                                .message = std::move(message)};
    }
    std::vector<std::string> kept(store::LogKind kind = store::LogKind::kLog) {
        auto page = logs_->read(Window{.kind = kind, .window = std::chrono::hours{24 * 365}});
        EXPECT_TRUE(page) << page.error().message;
        std::vector<std::string> out;
        for (const auto& r : page->records) {
            out.push_back(r.message);
        }
        std::sort(out.begin(), out.end());
        return out;
    }

    core::ManualClock clock_{core::TimePoint{std::chrono::hours{24 * 365 * 56}}};
    std::unique_ptr<store::LogStore> store_;
    std::unique_ptr<Logs> logs_;
};

TEST_F(LogsTest, UploadsPastALimitAreRefusedNamingTheRecord) {
    open(Settings{.max_upload = 2, .max_message_bytes = 8, .max_label_bytes = 4});
    auto too_many =
        logs_->upload(store::LogKind::kLog, "",
                      {at(0ms, "a", 1, "x"), at(0ms, "a", 1, "y"), at(0ms, "a", 1, "z")});
    ASSERT_FALSE(too_many);
    EXPECT_EQ(too_many.error().message, "logs holds 3 entries, more than 2 in one upload");
    auto long_message = logs_->upload(store::LogKind::kNotification, "",
                                      {at(0ms, "a", 1, "fine"), at(0ms, "a", 1, "far too long")});
    ASSERT_FALSE(long_message);
    EXPECT_EQ(long_message.error().message, "notifications[1].message is 12 bytes, more than 8");
    auto long_sender = logs_->upload(store::LogKind::kLog, "", {at(0ms, "sender", 1, "x")});
    ASSERT_FALSE(long_sender);
    EXPECT_EQ(long_sender.error().message, "logs[0].sender is 6 bytes, more than 4");
    EXPECT_TRUE(kept().empty()) << "all or none";
}

TEST_F(LogsTest, LabelsAndFreeFieldsAreHeldToTheirLimits) {
    open(Settings{.max_label_bytes = 8, .max_fields = 2, .max_fields_bytes = 40});
    auto with = [&](std::string node, std::string fields) {
        auto r = at(0ms, "svc", 6, "m");
        r.node = std::move(node);
        r.fields = std::move(fields);
        return r;
    };
    auto long_node = logs_->upload(store::LogKind::kLog, "", {with("node-with-long-name", "")});
    ASSERT_FALSE(long_node);
    EXPECT_EQ(long_node.error().message, "logs[0].node is 19 bytes, more than 8");
    auto not_object = logs_->upload(store::LogKind::kLog, "", {with("n", "[1,2]")});
    ASSERT_FALSE(not_object);
    EXPECT_EQ(not_object.error().message, "logs[0].fields must be a JSON object");
    auto many = logs_->upload(store::LogKind::kLog, "", {with("n", R"({"a":1,"b":2,"c":3})")});
    ASSERT_FALSE(many);
    EXPECT_NE(many.error().message.find("logs[0].fields has 3 keys, more than 2"),
              std::string::npos)
        << many.error().message;
    auto big = logs_->upload(store::LogKind::kLog, "",
                             {with("n", R"({"a":"0123456789012345678901234567890123456789"})")});
    ASSERT_FALSE(big);
    EXPECT_NE(big.error().message.find("logs[0].fields is"), std::string::npos);
    EXPECT_TRUE(logs_->upload(store::LogKind::kLog, "", {with("n", R"({"a":1,"b":"x"})")}));
}

TEST_F(LogsTest, AShipmentIsStoredOnceAndItsDropsBecomeOneWarning) {
    open(Settings{});
    auto line = [&](std::int64_t seq, std::string message) {
        auto r = at(0ms, "nodeos", 6, std::move(message));
        r.node = "canary-a";
        r.source = "stdout";
        r.seq = seq;
        return r;
    };
    auto first = logs_->ship("team", Shipment{.stream = "canary-a@01",
                                              .records = {line(1, "one"), line(2, "two")},
                                              .dropped = 40});
    ASSERT_TRUE(first) << first.error().message;
    ASSERT_EQ(first->stored.size(), 3U);
    const auto& warning = first->stored.back();
    EXPECT_EQ(warning.source, "sidecar");
    EXPECT_EQ(warning.level, 4);
    EXPECT_EQ(warning.node, "canary-a");
    EXPECT_NE(warning.message.find("dropped 40 lines of stream canary-a@01"), std::string::npos)
        << warning.message;
    auto again = logs_->ship("team", Shipment{.stream = "canary-a@01",
                                              .records = {line(1, "one"), line(2, "two")},
                                              .dropped = 40});
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->stored.empty()) << "neither the lines nor the warning twice";
    EXPECT_EQ(again->duplicates, 2U);
    auto no_stream = logs_->ship("team", Shipment{.records = {line(3, "three")}});
    ASSERT_FALSE(no_stream);
    EXPECT_EQ(no_stream.error().code, core::ErrorCode::kInvalidArgument);
}

TEST_F(LogsTest, MessagesAreRedactedBeforeTheyAreStored) {
    core::redactor().add_secret("tok-4f8a9c2e");
    open(
        Settings{.redact = {RedactRule{.pattern = R"(password=\S+)", .replacement = "password=***"},
                            RedactRule{.pattern = R"((\d{4})-\d{4}-\d{4}-(\d{4}))",
                                       .replacement = "$1-xxxx-xxxx-$2"}}});
    ASSERT_TRUE(logs_->upload(
        store::LogKind::kLog, "",
        {at(0ms, "w", 1, "login password=hunter2 ok"), at(0ms, "w", 1, "card 1234-5678-9012-3456"),
         at(0ms, "w", 1, "Authorization: Bearer tok-4f8a9c2e")}));
    EXPECT_EQ(kept(),
              (std::vector<std::string>{"Authorization: Bearer REDACTED",
                                        "card 1234-xxxx-xxxx-3456", "login password=*** ok"}));
}

TEST_F(LogsTest, ALongMessageIsRedactedWithoutTheMatcherRecursingOnIt) {
    // std::regex recursed once per character here and overflowed the stack on this line.
    open(
        Settings{.redact = {RedactRule{.pattern = R"(password=\S+)", .replacement = "password=***"},
                            RedactRule{.pattern = R"((\d{4})-\d{4})", .replacement = "$1-xxxx"}}});
    const std::string long_secret(60'000, 'x');
    ASSERT_TRUE(
        logs_->upload(store::LogKind::kLog, "",
                      {at(0ms, "w", 1, "login password=" + long_secret + " ok 1234-5678")}));
    EXPECT_EQ(kept(), (std::vector<std::string>{"login password=*** ok 1234-xxxx"}));
}

TEST_F(LogsTest, RetentionRulesKeepTheirStreamsLongerOrShorterFirstMatchWinning) {
    Settings settings{.logs_window = 60s};
    settings.retention = {
        // Validators' errors a week, the rest of the validators' lines a day.
        RetentionRule{.selector = {.sender_glob = "validator-*", .max_level = 3},
                      .window = 7 * 24h},
        RetentionRule{.selector = {.sender_glob = "validator-*"}, .window = 24h},
        // A noisy sender only 10 s.
        RetentionRule{.selector = {.sender_glob = "chatty"}, .window = 10s},
        // Notifications of team-a a day (others are kept: notifications_window is 0).
        RetentionRule{
            .kind = store::LogKind::kNotification, .selector = {.scope = "team-a"}, .window = 24h},
    };
    open(settings);
    ASSERT_TRUE(logs_->upload(
        store::LogKind::kLog, "",
        {at(2h, "validator-1", 2, "v error 2h"), at(48h, "validator-1", 2, "v error 2d"),
         at(8 * 24h, "validator-1", 2, "v error 8d"), at(2h, "validator-1", 6, "v info 2h"),
         at(48h, "validator-2", 6, "v info 2d"), at(5s, "chatty", 6, "chatty 5s"),
         at(20s, "chatty", 6, "chatty 20s"), at(30s, "web", 6, "web 30s"),
         at(2min, "web", 6, "web 2m")}));
    ASSERT_TRUE(logs_->upload(store::LogKind::kNotification, "team-a",
                              {at(2h, "w", 1, "a 2h"), at(48h, "w", 1, "a 2d")}));
    ASSERT_TRUE(
        logs_->upload(store::LogKind::kNotification, "team-b", {at(48h * 30, "w", 1, "b 60d")}));
    auto removed = logs_->sweep(clock_.now());
    ASSERT_TRUE(removed) << removed.error().message;
    EXPECT_EQ(*removed, 5U);
    EXPECT_EQ(kept(), (std::vector<std::string>{"chatty 5s", "v error 2d", "v error 2h",
                                                "v info 2h", "web 30s"}));
    EXPECT_EQ(kept(store::LogKind::kNotification), (std::vector<std::string>{"a 2h", "b 60d"}));
}

TEST(NotificationOf, AnEventNamesItsKindNodeIdsAndActorWithALevelByKind) {
    const core::Event failed{.id = 7,
                             .at = core::TimePoint{std::chrono::seconds{1'764'928'000}},
                             .actor = "system",
                             .kind = "job.failed",
                             .node = "lotus-0",
                             .before = R"({"id":"01J0JOB","action":"old"})",
                             .after = R"({"id":"01J0JOB","action":"upgrade","state":"failed",
                                          "lease_id":""})"};
    auto note = notification_of(failed);
    EXPECT_EQ(note.kind, store::LogKind::kNotification);
    EXPECT_EQ(note.sender, "aviary");
    EXPECT_EQ(note.level, 3);
    EXPECT_EQ(note.time_ns, 1'764'928'000'000'000'000);
    EXPECT_EQ(note.message, "job.failed node=lotus-0 job=01J0JOB action=upgrade actor=system");
    const core::Event released{.actor = "anton",
                               .kind = "lease.released",
                               .node = "lotus-1",
                               .before = R"({"lease_id":"01J0LEASE","owner":"anton"})",
                               .after = "{}"};
    EXPECT_EQ(notification_of(released).message,
              "lease.released node=lotus-1 lease=01J0LEASE actor=anton");
    EXPECT_EQ(notification_of(released).level, 6);
    EXPECT_EQ(notification_of(core::Event{.kind = "lease.expired"}).level, 4);
    EXPECT_EQ(notification_of(core::Event{.kind = "node.maintenance_started"}).level, 5);
    EXPECT_EQ(notification_of(core::Event{.kind = "queue.paused", .after = "not json"}).message,
              "queue.paused actor=");
}

TEST_F(LogsTest, ARetentionPassRemovesInBoundedBatchesUntilNothingIsLeft) {
    open(Settings{.logs_window = 60s, .retention_batch = 7});
    std::vector<store::LogRecord> old;
    for (int i = 0; i < 30; ++i) {
        old.push_back(at(2min, "w", 1, "old " + std::to_string(i)));
    }
    old.push_back(at(1s, "w", 1, "new"));
    ASSERT_TRUE(logs_->upload(store::LogKind::kLog, "", std::move(old)));
    auto removed = logs_->sweep(clock_.now());
    ASSERT_TRUE(removed);
    EXPECT_EQ(*removed, 30U);
    EXPECT_EQ(kept(), (std::vector<std::string>{"new"}));
    EXPECT_EQ(store_->stats().removed, 30U);
}

}  // namespace
}  // namespace aviary::logs
