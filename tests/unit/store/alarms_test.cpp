// Alarms (docs/probes.md, "Alarms") on both backends: an alarm's row written by a
// compare-and-set on its version with its notifications and events in the same transaction
// (a stale write writes nothing), the notification outbox (due, next, failed, done, backlog),
// silences with their events, forgetting alarms that left the config, and pruning history.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "store_support.hpp"

namespace aviary::store::test {
namespace {

namespace json = boost::json;
using core::ErrorCode;

AVIARY_STORE_SUITE(AlarmStore);

const core::TimePoint kT0{core::Millis{1'800'000'000'000}};

AlarmState alarm_of(std::string name, std::string state = "ok") {
    auto slash = name.find('/');
    return AlarmState{.name = name,
                      .rule = name.substr(0, slash),
                      .scenario = name.substr(slash + 1),
                      .state = std::move(state),
                      .since = kT0,
                      .summary = "the last run passed",
                      .notified_at = kT0,
                      .evaluated_at = kT0};
}

AlarmNotification notification_of(const AlarmState& alarm,
                                  std::string notifier,
                                  core::TimePoint at,
                                  std::string kind = "firing") {
    return AlarmNotification{.alarm = alarm.name,
                             .rule = alarm.rule,
                             .scenario = alarm.scenario,
                             .notifier = std::move(notifier),
                             .kind = std::move(kind),
                             .summary = "the last 3 runs were bad: connection refused",
                             .link = "https://aviary.example/dashboard#probe-" + alarm.scenario,
                             .at = at,
                             .since = alarm.since};
}

core::Event event_of(const AlarmState& alarm, std::string kind, core::TimePoint at) {
    return core::Event{.at = at,
                       .actor = "aviary",
                       .kind = std::move(kind),
                       .node = "lotus-0",
                       .after = json::serialize(json::object{{"alarm", alarm.name}})};
}

/// Writes and expects the write to apply.
void written(Store& store,
             const AlarmState& next,
             std::int64_t seen,
             const std::vector<AlarmNotification>& notifications = {},
             const std::vector<core::Event>& events = {}) {
    auto done = store.write_alarm(next, seen, notifications, events);
    ASSERT_TRUE(done) << done.error().message;
    ASSERT_TRUE(*done) << next.name << " at version " << seen << " was not written";
}

std::vector<AlarmState> states(Store& store) {
    auto got = store.alarm_states();
    EXPECT_TRUE(got) << got.error().message;
    return got ? *got : std::vector<AlarmState>{};
}

/// Every notification, oldest first.
std::vector<AlarmNotification> outbox(Store& store) {
    auto got = store.alarm_notifications(1000);
    EXPECT_TRUE(got) << got.error().message;
    if (!got) {
        return {};
    }
    std::reverse(got->begin(), got->end());
    return *got;
}

std::int64_t backlog(Store& store) {
    auto got = store.alarm_notification_backlog();
    EXPECT_TRUE(got) << got.error().message;
    return got ? *got : -1;
}

std::vector<std::int64_t> ids(const core::Result<std::vector<AlarmNotification>>& got) {
    EXPECT_TRUE(got) << got.error().message;
    std::vector<std::int64_t> out;
    if (got) {
        for (const auto& n : *got) {
            out.push_back(n.id);
        }
    }
    return out;
}

std::vector<std::string> silence_ids(const core::Result<std::vector<Silence>>& got) {
    EXPECT_TRUE(got) << got.error().message;
    std::vector<std::string> out;
    if (got) {
        for (const auto& s : *got) {
            out.push_back(s.id);
        }
    }
    return out;
}

/// Events of `kind`, newest first.
std::vector<core::Event> events_of(Store& store, std::string_view kind) {
    auto got = store.events(all_events());
    EXPECT_TRUE(got) << got.error().message;
    std::vector<core::Event> out;
    if (got) {
        for (auto& e : *got) {
            if (e.kind == kind) {
                out.push_back(e);
            }
        }
    }
    return out;
}

TEST_P(AlarmStore, AnAlarmIsInsertedThenUpdatedByCompareAndSetOnItsVersion) {
    core::ManualClock clock{kT0};
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto first = alarm_of("failing/list");
    first.pending_since = kT0 + 1min;
    written(*store, first, 0);
    auto got = states(*store);
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0].name, "failing/list");
    EXPECT_EQ(got[0].rule, "failing");
    EXPECT_EQ(got[0].scenario, "list");
    EXPECT_EQ(got[0].state, "ok");
    EXPECT_EQ(got[0].since, kT0);
    EXPECT_EQ(got[0].pending_since, kT0 + 1min);
    EXPECT_FALSE(got[0].clear_since);
    EXPECT_EQ(got[0].summary, "the last run passed");
    EXPECT_EQ(got[0].silenced_by, "");
    EXPECT_EQ(got[0].notified, "ok");
    EXPECT_EQ(got[0].notified_at, kT0);
    EXPECT_EQ(got[0].evaluated_at, kT0);
    EXPECT_EQ(got[0].version, 1);

    auto next = got[0];
    next.state = "firing";
    next.since = kT0 + 2min;
    next.pending_since.reset();
    next.clear_since = kT0 + 3min;
    next.summary = "the last 3 runs were bad";
    next.silenced_by = "silence s1 until then: rack move";
    next.notified = "firing";
    next.notified_at = kT0 + 2min;
    next.evaluated_at = kT0 + 3min;
    written(*store, next, 1);
    got = states(*store);
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0].state, "firing");
    EXPECT_EQ(got[0].since, kT0 + 2min);
    EXPECT_FALSE(got[0].pending_since);
    EXPECT_EQ(got[0].clear_since, kT0 + 3min);
    EXPECT_EQ(got[0].summary, "the last 3 runs were bad");
    EXPECT_EQ(got[0].silenced_by, "silence s1 until then: rack move");
    EXPECT_EQ(got[0].notified, "firing");
    EXPECT_EQ(got[0].notified_at, kT0 + 2min);
    EXPECT_EQ(got[0].evaluated_at, kT0 + 3min);
    EXPECT_EQ(got[0].version, 2) << "the write sets seen_version + 1, whatever next.version says";

    // Listed by name.
    written(*store, alarm_of("avail/list"), 0);
    got = states(*store);
    ASSERT_EQ(got.size(), 2U);
    EXPECT_EQ(got[0].name, "avail/list");
    EXPECT_EQ(got[1].name, "failing/list");
}

TEST_P(AlarmStore, AStaleWriteWritesNothingNotItsNotificationsNorItsEvents) {
    core::ManualClock clock{kT0};
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto a = alarm_of("failing/list");
    written(*store, a, 0);
    auto mine = a;
    mine.state = "firing";
    written(*store, mine, 1);
    const auto events_before = kinds(*store).size();

    // Another leader decided from version 1 too: it lost.
    auto theirs = a;
    theirs.state = "ok";
    theirs.summary = "stale";
    const std::vector<AlarmNotification> told{notification_of(theirs, "slack", kT0)};
    const std::vector<core::Event> recorded{event_of(theirs, "alarm.resolved", kT0)};
    for (std::int64_t seen : {std::int64_t{1}, std::int64_t{0}, std::int64_t{7}}) {
        SCOPED_TRACE(seen);
        auto done = store->write_alarm(theirs, seen, told, recorded);
        ASSERT_TRUE(done) << done.error().message;
        EXPECT_FALSE(*done);
    }
    // An alarm nobody inserted cannot be updated.
    auto unknown = store->write_alarm(alarm_of("ghost/list"), 1, told, recorded);
    ASSERT_TRUE(unknown) << unknown.error().message;
    EXPECT_FALSE(*unknown);

    auto got = states(*store);
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0].state, "firing");
    EXPECT_EQ(got[0].version, 2);
    EXPECT_TRUE(outbox(*store).empty());
    EXPECT_EQ(backlog(*store), 0);
    EXPECT_EQ(kinds(*store).size(), events_before);
    EXPECT_TRUE(events_of(*store, "alarm.resolved").empty());
}

TEST_P(AlarmStore, ABatchWritesEachAlarmThatStillHasItsVersionAndSkipsTheOneThatLost) {
    core::ManualClock clock{kT0};
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto kept = alarm_of("failing/list");
    written(*store, kept, 0);
    written(*store, kept, 1);  // at version 2 now: a write from version 1 loses
    auto fresh = alarm_of("failing/submit", "firing");
    auto stale = kept;
    stale.state = "firing";
    auto moved = alarm_of("slo/list");
    written(*store, moved, 0);
    moved.state = "firing";
    std::vector<AlarmWrite> batch{
        {.next = fresh,
         .seen_version = 0,
         .notifications = {notification_of(fresh, "slack", kT0)},
         .events = {event_of(fresh, "alarm.firing", kT0)}},
        {.next = stale,
         .seen_version = 1,
         .notifications = {notification_of(stale, "slack", kT0)},
         .events = {event_of(stale, "alarm.firing", kT0)}},
        {.next = moved, .seen_version = 1, .notifications = {}, .events = {}},
    };
    auto done = store->write_alarms(batch);
    ASSERT_TRUE(done) << done.error().message;
    EXPECT_EQ(*done, (std::vector<bool>{true, false, true}));
    std::map<std::string, AlarmState> by_name;
    for (auto& a : states(*store)) {
        by_name[a.name] = a;
    }
    ASSERT_EQ(by_name.size(), 3U);
    EXPECT_EQ(by_name["failing/submit"].state, "firing");
    EXPECT_EQ(by_name["failing/submit"].version, 1);
    EXPECT_EQ(by_name["failing/list"].state, "ok") << "the write that lost changed nothing";
    EXPECT_EQ(by_name["failing/list"].version, 2);
    EXPECT_EQ(by_name["slo/list"].state, "firing");
    EXPECT_EQ(by_name["slo/list"].version, 2);
    auto queued = outbox(*store);
    ASSERT_EQ(queued.size(), 1U) << "only the written alarms' notifications are queued";
    EXPECT_EQ(queued[0].alarm, "failing/submit");
    EXPECT_EQ(events_of(*store, "alarm.firing").size(), 1U);
}

TEST_P(AlarmStore, NotificationsAndEventsAreQueuedWithTheWrite) {
    core::ManualClock clock{kT0};
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto a = alarm_of("failing/list", "firing");
    written(*store, a, 0,
            {notification_of(a, "slack", kT0 + 1s), notification_of(a, "hook", kT0 + 1s)},
            {event_of(a, "alarm.firing", kT0 + 1s)});
    auto got = outbox(*store);
    ASSERT_EQ(got.size(), 2U);
    EXPECT_LT(got[0].id, got[1].id);
    EXPECT_EQ(got[0].notifier, "slack");
    EXPECT_EQ(got[1].notifier, "hook");
    for (const auto& n : got) {
        EXPECT_GT(n.id, 0);
        EXPECT_EQ(n.alarm, "failing/list");
        EXPECT_EQ(n.rule, "failing");
        EXPECT_EQ(n.scenario, "list");
        EXPECT_EQ(n.kind, "firing");
        EXPECT_EQ(n.summary, "the last 3 runs were bad: connection refused");
        EXPECT_EQ(n.link, "https://aviary.example/dashboard#probe-list");
        EXPECT_EQ(n.at, kT0 + 1s);
        EXPECT_EQ(n.since, kT0);
        EXPECT_EQ(n.attempts, 0);
        EXPECT_EQ(n.next_attempt_at, kT0 + 1s) << "due at once";
        EXPECT_EQ(n.last_error, "");
        EXPECT_EQ(n.outcome, "");
        EXPECT_FALSE(n.done_at);
    }
    EXPECT_EQ(backlog(*store), 2);
    auto fired = events_of(*store, "alarm.firing");
    ASSERT_EQ(fired.size(), 1U);
    EXPECT_EQ(fired[0].node, "lotus-0");
    EXPECT_EQ(fired[0].actor, "aviary");
    EXPECT_EQ(fired[0].at, kT0 + 1s);
    EXPECT_EQ(json::parse(fired[0].after).as_object().at("alarm").as_string(), "failing/list");
}

TEST_P(AlarmStore, TheOutboxHandsOutWhatIsDueRetriesWithBackoffAndKeepsWhatWasDone) {
    core::ManualClock clock{kT0};
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto a = alarm_of("failing/list", "firing");
    written(*store, a, 0, {notification_of(a, "slack", kT0)});
    auto b = alarm_of("failing/submit", "firing");
    written(*store, b, 0, {notification_of(b, "slack", kT0 + 1min)});
    auto all = outbox(*store);
    ASSERT_EQ(all.size(), 2U);
    const auto first = all[0].id;
    const auto second = all[1].id;

    EXPECT_TRUE(ids(store->due_alarm_notifications(kT0 - 1ms, 10)).empty());
    EXPECT_EQ(ids(store->due_alarm_notifications(kT0, 10)), (std::vector<std::int64_t>{first}));
    EXPECT_EQ(ids(store->due_alarm_notifications(kT0 + 1min, 10)),
              (std::vector<std::int64_t>{first, second}));
    EXPECT_EQ(ids(store->due_alarm_notifications(kT0 + 1min, 1)),
              (std::vector<std::int64_t>{first}));
    auto next = store->next_alarm_notification_at();
    ASSERT_TRUE(next) << next.error().message;
    EXPECT_EQ(*next, kT0);
    EXPECT_EQ(backlog(*store), 2);

    // The first fails: it waits until kT0 + 5m, behind the second.
    ASSERT_TRUE(store->alarm_notification_failed(first, "slack answered 500", kT0 + 5min));
    auto failed = outbox(*store)[0];
    EXPECT_EQ(failed.attempts, 1);
    EXPECT_EQ(failed.last_error, "slack answered 500");
    EXPECT_EQ(failed.next_attempt_at, kT0 + 5min);
    EXPECT_EQ(failed.outcome, "");
    EXPECT_EQ(ids(store->due_alarm_notifications(kT0 + 1min, 10)),
              (std::vector<std::int64_t>{second}));
    EXPECT_EQ(ids(store->due_alarm_notifications(kT0 + 5min, 10)),
              (std::vector<std::int64_t>{second, first}))
        << "oldest next attempt first";
    EXPECT_EQ(*store->next_alarm_notification_at(), kT0 + 1min);
    ASSERT_TRUE(store->alarm_notification_failed(first, "slack answered 502", kT0 + 15min));
    EXPECT_EQ(outbox(*store)[0].attempts, 2);
    EXPECT_EQ(outbox(*store)[0].last_error, "slack answered 502");

    // The second is sent.
    ASSERT_TRUE(store->alarm_notification_done(second, "sent", "", kT0 + 2min));
    auto sent = outbox(*store)[1];
    EXPECT_EQ(sent.outcome, "sent");
    EXPECT_EQ(sent.done_at, kT0 + 2min);
    EXPECT_EQ(backlog(*store), 1);
    EXPECT_EQ(ids(store->due_alarm_notifications(kT0 + 1h, 10)), (std::vector<std::int64_t>{first}))
        << "what was sent is not due again";
    EXPECT_EQ(*store->next_alarm_notification_at(), kT0 + 15min);

    // The first is given up.
    ASSERT_TRUE(
        store->alarm_notification_done(first, "abandoned", "not delivered within 24h", kT0 + 24h));
    auto abandoned = outbox(*store)[0];
    EXPECT_EQ(abandoned.outcome, "abandoned");
    EXPECT_EQ(abandoned.last_error, "not delivered within 24h");
    EXPECT_EQ(abandoned.done_at, kT0 + 24h);
    EXPECT_EQ(abandoned.attempts, 2);
    EXPECT_EQ(backlog(*store), 0);
    EXPECT_TRUE(ids(store->due_alarm_notifications(kT0 + 48h, 10)).empty());
    next = store->next_alarm_notification_at();
    ASSERT_TRUE(next) << next.error().message;
    EXPECT_FALSE(*next) << "nothing left to send";
    // Both are still listed, newest first, for an operator.
    EXPECT_EQ(ids(store->alarm_notifications(10)), (std::vector<std::int64_t>{second, first}));
    EXPECT_EQ(ids(store->alarm_notifications(1)), (std::vector<std::int64_t>{second}));
}

Silence silence_of(std::string id,
                   std::string matcher,
                   core::TimePoint starts,
                   core::TimePoint ends) {
    return Silence{.id = std::move(id),
                   .matcher = std::move(matcher),
                   .reason = "moving the rack",
                   .created_by = "anton",
                   .starts_at = starts,
                   .ends_at = ends};
}

TEST_P(AlarmStore, SilencesAreAddedOnceListedUntilTheyEndAndExpiredWithEvents) {
    core::ManualClock clock{kT0};
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->add_silence(silence_of("s1", "*", kT0, kT0 + 1h), kT0));
    ASSERT_TRUE(store->add_silence(silence_of("s2", "failing/list", kT0 + 10min, kT0 + 2h), kT0));

    auto again = store->add_silence(silence_of("s1", "other", kT0, kT0 + 3h), kT0);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
    auto added = events_of(*store, "silence.added");
    ASSERT_EQ(added.size(), 2U) << "a refused duplicate records nothing";
    EXPECT_EQ(added[1].actor, "anton");
    EXPECT_EQ(added[1].at, kT0);
    auto shown = json::parse(added[1].after).as_object();
    EXPECT_EQ(shown.at("id").as_string(), "s1");
    EXPECT_EQ(shown.at("matcher").as_string(), "*");
    EXPECT_EQ(shown.at("reason").as_string(), "moving the rack");

    auto listed = store->silences(kT0, false);
    ASSERT_TRUE(listed) << listed.error().message;
    ASSERT_EQ(listed->size(), 2U);
    EXPECT_EQ((*listed)[0].id, "s2") << "newest first";
    EXPECT_EQ((*listed)[0].matcher, "failing/list");
    EXPECT_EQ((*listed)[0].reason, "moving the rack");
    EXPECT_EQ((*listed)[0].created_by, "anton");
    EXPECT_EQ((*listed)[0].starts_at, kT0 + 10min);
    EXPECT_EQ((*listed)[0].ends_at, kT0 + 2h);
    EXPECT_EQ((*listed)[1].matcher, "*") << "the duplicate changed nothing";
    EXPECT_EQ((*listed)[1].ends_at, kT0 + 1h);

    EXPECT_EQ(silence_ids(store->silences(kT0 + 1h, false)), (std::vector<std::string>{"s2"}))
        << "s1 ended at kT0 + 1h";
    EXPECT_EQ(silence_ids(store->silences(kT0 + 1h, true)), (std::vector<std::string>{"s2", "s1"}));

    auto expired = store->expire_silence("s2", "bob", kT0 + 30min);
    ASSERT_TRUE(expired) << expired.error().message;
    EXPECT_EQ(expired->id, "s2");
    EXPECT_EQ(expired->ends_at, kT0 + 30min);
    EXPECT_EQ(expired->starts_at, kT0 + 10min);
    EXPECT_EQ(silence_ids(store->silences(kT0 + 30min, false)), (std::vector<std::string>{"s1"}));
    auto ended = events_of(*store, "silence.expired");
    ASSERT_EQ(ended.size(), 1U);
    EXPECT_EQ(ended[0].actor, "bob");
    EXPECT_EQ(ended[0].at, kT0 + 30min);
    EXPECT_EQ(json::parse(ended[0].before).as_object().at("ends_at").as_string(),
              core::format_time(kT0 + 2h));
    EXPECT_EQ(json::parse(ended[0].after).as_object().at("ends_at").as_string(),
              core::format_time(kT0 + 30min));

    auto unknown = store->expire_silence("nope", "bob", kT0 + 30min);
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
    auto twice = store->expire_silence("s2", "bob", kT0 + 31min);
    ASSERT_FALSE(twice);
    EXPECT_EQ(twice.error().code, ErrorCode::kInvalidArgument);
    auto over = store->expire_silence("s1", "bob", kT0 + 1h);
    ASSERT_FALSE(over) << "s1 ended on its own at kT0 + 1h";
    EXPECT_EQ(over.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(events_of(*store, "silence.expired").size(), 1U) << "refusals record nothing";
}

TEST_P(AlarmStore, ForgettingAlarmsDeletesThemAndLeavesWhatTheyRaisedToBeSent) {
    core::ManualClock clock{kT0};
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto a = alarm_of("failing/list", "firing");
    auto b = alarm_of("failing/submit", "firing");
    auto c = alarm_of("slo/list");
    written(*store, a, 0, {notification_of(a, "slack", kT0)});
    written(*store, b, 0, {notification_of(b, "slack", kT0), notification_of(b, "hook", kT0)});
    written(*store, c, 0);
    auto all = outbox(*store);
    ASSERT_EQ(all.size(), 3U);
    // b's first notification was sent: history, kept.
    ASSERT_TRUE(store->alarm_notification_done(all[1].id, "sent", "", kT0 + 1s));

    auto forgotten = store->forget_alarms({"failing/list", "slo/list"});
    ASSERT_TRUE(forgotten) << forgotten.error().message;
    EXPECT_EQ(*forgotten, 1);
    auto left = states(*store);
    ASSERT_EQ(left.size(), 2U);
    EXPECT_EQ(left[0].name, "failing/list");
    EXPECT_EQ(left[1].name, "slo/list");
    auto kept = outbox(*store);
    ASSERT_EQ(kept.size(), 3U) << "what was raised is still told";
    EXPECT_EQ(kept[1].alarm, "failing/submit");
    EXPECT_EQ(kept[1].outcome, "sent");
    EXPECT_EQ(kept[2].alarm, "failing/submit");
    EXPECT_EQ(kept[2].outcome, "");
    EXPECT_EQ(backlog(*store), 2);

    // Keeping them all forgets nothing; keeping none forgets every one.
    forgotten = store->forget_alarms({"failing/list", "slo/list", "not/there"});
    ASSERT_TRUE(forgotten) << forgotten.error().message;
    EXPECT_EQ(*forgotten, 0);
    forgotten = store->forget_alarms({});
    ASSERT_TRUE(forgotten) << forgotten.error().message;
    EXPECT_EQ(*forgotten, 2);
    EXPECT_TRUE(states(*store).empty());
    EXPECT_EQ(backlog(*store), 2);
}

TEST_P(AlarmStore, PruningDeletesDoneNotificationsAndEndedSilencesBeforeTheCutoff) {
    core::ManualClock clock{kT0};
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto a = alarm_of("failing/list", "firing");
    written(*store, a, 0,
            {notification_of(a, "slack", kT0), notification_of(a, "hook", kT0),
             notification_of(a, "pager", kT0)});
    auto all = outbox(*store);
    ASSERT_EQ(all.size(), 3U);
    ASSERT_TRUE(store->alarm_notification_done(all[0].id, "sent", "", kT0 + 1min));
    ASSERT_TRUE(store->alarm_notification_done(all[1].id, "abandoned", "gone", kT0 + 10min));
    // all[2] is still to send, however old.
    ASSERT_TRUE(store->add_silence(silence_of("old", "*", kT0 - 1h, kT0 + 1min), kT0));
    ASSERT_TRUE(store->add_silence(silence_of("new", "*", kT0, kT0 + 1h), kT0));

    auto pruned = store->prune_alarm_history(kT0 + 5min);
    ASSERT_TRUE(pruned) << pruned.error().message;
    EXPECT_EQ(*pruned, 2) << "one notification and one silence";
    auto kept = outbox(*store);
    ASSERT_EQ(kept.size(), 2U);
    EXPECT_EQ(kept[0].id, all[1].id);
    EXPECT_EQ(kept[1].id, all[2].id);
    EXPECT_EQ(silence_ids(store->silences(kT0, true)), (std::vector<std::string>{"new"}));
    EXPECT_EQ(states(*store).size(), 1U) << "alarms themselves are not history";

    pruned = store->prune_alarm_history(kT0 + 48h);
    ASSERT_TRUE(pruned) << pruned.error().message;
    EXPECT_EQ(*pruned, 2);
    kept = outbox(*store);
    ASSERT_EQ(kept.size(), 1U);
    EXPECT_EQ(kept[0].outcome, "") << "an unsent notification is never pruned";
}

}  // namespace
}  // namespace aviary::store::test
