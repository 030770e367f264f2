// Alarms on the scenarios (docs/probes.md, "Alarms"): read_alarm() for each kind of rule from
// counts made up here, step_alarm()'s pending, hysteresis, reminders and silences, and
// Alarms::evaluate() end to end against a real SQLite store (runs recorded, alarms written with
// their notifications and events, silences by matcher, by maintenance and by planned work, and
// alarms forgotten when their rule leaves the config).
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/core.hpp"
#include "metrics/metrics.hpp"
#include "probes/probes.hpp"
#include "store/store.hpp"

namespace aviary::probes {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
using store::AlarmNotification;
using store::AlarmState;
using store::ProbeBucket;
using store::ProbeRun;

/// A multiple of kProbeBucket since the epoch: buckets and periods start on it.
const core::TimePoint kBase{core::Millis{1'800'000'000'000}};

bool contains(std::string_view text, std::string_view part) {
    return text.find(part) != std::string_view::npos;
}

ProbeBucket bucket(core::TimePoint start, int runs, int failed, int broken) {
    return ProbeBucket{
        .scenario = "list", .start = start, .runs = runs, .failed = failed, .broken = broken};
}

AlarmRule availability_rule() {
    return AlarmRule{.name = "avail",
                     .kind = AlarmKind::kAvailability,
                     .measure = Measure::kAvailability,
                     .threshold = 0.95,
                     .period = 5min,
                     .periods = 5,
                     .breaching = 3};
}

/// Five whole periods [kBase + 5m·i, kBase + 5m·(i+1)), i = 0..4, and now inside the sixth.
AlarmInput five_periods(const std::vector<bool>& bad) {
    AlarmInput in{.now = kBase + 25min + 30s};
    for (int i = 0; i < static_cast<int>(bad.size()); ++i) {
        in.buckets.push_back(bucket(kBase + i * 5min, 10, 0, bad[i] ? 5 : 0));
    }
    return in;
}

// --- availability ---------------------------------------------------------------------------

TEST(AvailabilityRule, ThreeBreachingPeriodsOfFiveFireAndTwoDoNot) {
    auto rule = availability_rule();
    auto three = read_alarm(rule, five_periods({true, false, true, false, true}));
    EXPECT_TRUE(three.breaching);
    EXPECT_EQ(three.summary,
              "availability below 95% in 3 of the last 5 periods of 5m (50%, 100%, 50%, 100%, "
              "50%)");

    auto two = read_alarm(rule, five_periods({false, true, false, true, false}));
    EXPECT_FALSE(two.breaching);
    EXPECT_TRUE(contains(two.summary, "in 2 of the last 5 periods")) << two.summary;
}

TEST(AvailabilityRule, OnlyWholePeriodsAreJudgedNotTheBucketInProgress) {
    auto rule = availability_rule();
    auto in = five_periods({false, true, false, true, false});
    // The bucket now is in: all broken, but the period it starts has not ended.
    in.buckets.push_back(bucket(kBase + 25min, 10, 0, 10));
    EXPECT_FALSE(read_alarm(rule, in).breaching);
    // Buckets older than the periods looked at do not count either.
    in.buckets.insert(in.buckets.begin(), bucket(kBase - 5min, 10, 0, 10));
    EXPECT_FALSE(read_alarm(rule, in).breaching);
}

TEST(AvailabilityRule, APeriodOfTenMinutesSumsItsTwoBuckets) {
    auto rule = availability_rule();
    rule.period = 10min;
    rule.periods = 2;
    rule.breaching = 2;
    AlarmInput in{.now = kBase + 20min + 1s};
    // Each period: one bucket all broken and one all passed: 50% each.
    in.buckets = {bucket(kBase, 10, 0, 10), bucket(kBase + 5min, 10, 0, 0),
                  bucket(kBase + 10min, 10, 0, 0), bucket(kBase + 15min, 10, 0, 10)};
    auto reading = read_alarm(rule, in);
    EXPECT_TRUE(reading.breaching);
    EXPECT_EQ(reading.summary,
              "availability below 95% in 2 of the last 2 periods of 10m (50%, 50%)");
}

TEST(AvailabilityRule, MissingDataBreachesButPeriodsBeforeTheAlarmAreNotJudged) {
    auto rule = availability_rule();
    // Periods 0 and 1 passed, 2 was bad, 3 and 4 had no runs at all.
    AlarmInput in{.now = kBase + 25min + 30s};
    in.buckets = {bucket(kBase, 10, 0, 0), bucket(kBase + 5min, 10, 0, 0),
                  bucket(kBase + 10min, 10, 0, 10)};
    auto missing = read_alarm(rule, in);
    EXPECT_TRUE(missing.breaching) << "two periods without runs count as breaching";
    EXPECT_EQ(missing.summary,
              "availability below 95% in 3 of the last 5 periods of 5m (100%, 100%, 0%, no runs, "
              "no runs)");

    // The alarm exists since kBase + 15m: the two periods since are judged, both missing data.
    in.judged_from = kBase + 15min;
    auto young = read_alarm(rule, in);
    EXPECT_FALSE(young.breaching) << young.summary;
    EXPECT_EQ(young.summary,
              "availability below 95% in 2 of the last 2 periods of 5m (no runs, no runs)");

    // A period that ended exactly when the alarm was made is not judged; one that ended after
    // it is.
    in.judged_from = kBase + 15min - 1ms;
    EXPECT_TRUE(read_alarm(rule, in).breaching);

    // Made now: nothing is judged yet.
    in.judged_from = in.now;
    auto made = read_alarm(rule, in);
    EXPECT_FALSE(made.breaching);
    EXPECT_TRUE(contains(made.summary, "in 0 of the last 0 periods")) << made.summary;
    EXPECT_TRUE(contains(made.summary, "none judged yet")) << made.summary;
}

TEST(AvailabilityRule, TheMeasureSaysWhichRunsAreBad) {
    auto rule = availability_rule();
    AlarmInput wrong{.now = kBase + 25min + 30s};  // every period: half the runs failed
    AlarmInput down{.now = kBase + 25min + 30s};   // every period: half the runs broken
    for (int i = 0; i < 5; ++i) {
        wrong.buckets.push_back(bucket(kBase + i * 5min, 10, 5, 0));
        down.buckets.push_back(bucket(kBase + i * 5min, 10, 0, 5));
    }
    rule.measure = Measure::kAvailability;
    EXPECT_FALSE(read_alarm(rule, wrong).breaching) << "failed runs reached their target";
    EXPECT_TRUE(read_alarm(rule, down).breaching);

    rule.measure = Measure::kCorrectness;
    auto correctness = read_alarm(rule, wrong);
    EXPECT_TRUE(correctness.breaching);
    EXPECT_TRUE(contains(correctness.summary, "correctness below 95% in 5 of the last 5"))
        << correctness.summary;
    EXPECT_FALSE(read_alarm(rule, down).breaching) << "broken runs did not answer wrongly";

    rule.measure = Measure::kSuccess;
    EXPECT_TRUE(read_alarm(rule, wrong).breaching);
    EXPECT_TRUE(read_alarm(rule, down).breaching);
}

TEST(AvailabilityRule, LooksBackOnePeriodMoreThanItJudges) {
    auto rule = availability_rule();
    rule.period = 10min;
    rule.periods = 6;
    EXPECT_EQ(look_back(rule), 70min);
}

// --- consecutive failures -------------------------------------------------------------------

ProbeRun run_of(std::string outcome, std::string message = "") {
    return ProbeRun{
        .scenario = "list", .outcome = std::move(outcome), .message = std::move(message)};
}

AlarmRule consecutive_rule() {
    return AlarmRule{.name = "failing",
                     .kind = AlarmKind::kConsecutiveFailures,
                     .measure = Measure::kSuccess,
                     .failures = 3};
}

TEST(ConsecutiveRule, TheNewestThreeBadRunsBreach) {
    auto rule = consecutive_rule();
    AlarmInput in{.now = kBase};
    in.newest = {run_of("broken", "step \"list\": connection refused"), run_of("failed"),
                 run_of("broken"), run_of("passed")};
    auto reading = read_alarm(rule, in);
    EXPECT_TRUE(reading.breaching);
    EXPECT_EQ(reading.summary, "the last 3 runs were bad: step \"list\": connection refused");
}

TEST(ConsecutiveRule, APassInBetweenStartsTheCountAgain) {
    auto rule = consecutive_rule();
    AlarmInput in{.now = kBase};
    in.newest = {run_of("broken"), run_of("broken"), run_of("passed"), run_of("broken"),
                 run_of("broken")};
    auto reading = read_alarm(rule, in);
    EXPECT_FALSE(reading.breaching);
    EXPECT_EQ(reading.summary, "the last 2 runs were bad: broken");

    in.newest = {run_of("passed"), run_of("broken"), run_of("broken"), run_of("broken")};
    reading = read_alarm(rule, in);
    EXPECT_FALSE(reading.breaching);
    EXPECT_EQ(reading.summary, "the last run passed");

    in.newest = {run_of("broken"), run_of("broken")};
    EXPECT_FALSE(read_alarm(rule, in).breaching) << "fewer runs than failures";
    in.newest.clear();
    EXPECT_EQ(read_alarm(rule, in).summary, "no runs yet");
}

// exposes: read_consecutive() (src/probes/alarms.cpp) says "the last run passed" whenever the
// newest run is not bad by the rule's measure, so an availability rule over a scenario whose
// runs fail (a correctness failure) shows "the last run passed" on the alarm and its
// notifications although no run passed.
TEST(ConsecutiveRule, TheSummaryNeverSaysARunPassedThatDidNot) {
    auto rule = consecutive_rule();
    rule.measure = Measure::kAvailability;
    AlarmInput in{.now = kBase};
    in.newest = {run_of("failed", "step \"get\": output mismatch"), run_of("failed"),
                 run_of("failed")};
    auto reading = read_alarm(rule, in);
    EXPECT_FALSE(reading.breaching);
    EXPECT_FALSE(contains(reading.summary, "passed")) << reading.summary;
}

TEST(ConsecutiveRule, TheMeasureSaysWhichRunsAreBad) {
    auto rule = consecutive_rule();
    AlarmInput in{.now = kBase};
    in.newest = {run_of("failed"), run_of("failed"), run_of("failed")};
    rule.measure = Measure::kAvailability;
    EXPECT_FALSE(read_alarm(rule, in).breaching) << "failed runs reached their target";
    rule.measure = Measure::kCorrectness;
    EXPECT_TRUE(read_alarm(rule, in).breaching);
    in.newest = {run_of("broken"), run_of("broken"), run_of("broken")};
    EXPECT_FALSE(read_alarm(rule, in).breaching) << "broken runs did not answer wrongly";
}

// --- SLO burn rate --------------------------------------------------------------------------

AlarmRule slo_rule() {
    return AlarmRule{.name = "slo",
                     .kind = AlarmKind::kSlo,
                     .measure = Measure::kAvailability,
                     .objective = 0.995,
                     .window = std::chrono::hours{24 * 30}};
}

/// 100 runs in every bucket of the last 6 hours and the one in progress; `broken(i)` of them
/// broken in the bucket starting at kBase + 5m·i (i = 0..72, 72 the bucket now).
AlarmInput six_hours(const std::function<int(int)>& broken) {
    AlarmInput in{.now = kBase + 6h + 1min};
    for (int i = 0; i <= 72; ++i) {
        in.buckets.push_back(bucket(kBase + i * 5min, 100, 0, broken(i)));
    }
    return in;
}

TEST(SloRule, AFastBurnOverTheHourAndTheLastFiveMinutesBreaches) {
    // A 30-day window: the fast burn pages above 0.02·720 = 14.4x. 20% broken over the last
    // hour is 40x.
    auto rule = slo_rule();
    auto in = six_hours([](int i) { return i >= 60 ? 20 : 0; });
    auto reading = read_alarm(rule, in);
    EXPECT_TRUE(reading.breaching);
    EXPECT_TRUE(contains(reading.summary, "fast burn: ")) << reading.summary;
    EXPECT_TRUE(contains(reading.summary, "(pages above 14.4x)")) << reading.summary;
}

TEST(SloRule, OneBadRunOfAQuietScenarioDoesNotPageButTwoDo) {
    // A new scenario's first three runs, one of them broken: 33% of the hour (66x) and 100% of
    // the last five minutes, far past 14.4x both; alone it is a transient, not a page.
    auto rule = slo_rule();
    AlarmInput in{.now = kBase + 1h + 1min};
    in.buckets = {bucket(kBase + 55min, 2, 0, 0), bucket(kBase + 60min, 1, 0, 1)};
    EXPECT_FALSE(read_alarm(rule, in).breaching) << read_alarm(rule, in).summary;
    // Three runs this hour, two of them broken: 67% of the hour, a fast burn by any measure.
    in.buckets.assign({bucket(kBase + 55min, 1, 0, 0), bucket(kBase + 60min, 2, 0, 2)});
    auto reading = read_alarm(rule, in);
    EXPECT_TRUE(reading.breaching);
    EXPECT_TRUE(contains(reading.summary, "fast burn: ")) << reading.summary;
}

TEST(SloRule, ALowErrorRateDoesNotBreach) {
    auto rule = slo_rule();
    // 1% broken everywhere: a burn of 2x, under both the fast (14.4x) and slow (6x) limits.
    auto reading = read_alarm(rule, six_hours([](int) { return 1; }));
    EXPECT_FALSE(reading.breaching) << reading.summary;
    EXPECT_FALSE(contains(reading.summary, "burn")) << reading.summary;
}

TEST(SloRule, ASlowBurnOverSixHoursAndHalfAnHourBreaches) {
    auto rule = slo_rule();
    // 7% broken everywhere: 14x, under the fast limit (14.4x), over the slow one (6x).
    auto reading = read_alarm(rule, six_hours([](int) { return 7; }));
    EXPECT_TRUE(reading.breaching);
    EXPECT_TRUE(contains(reading.summary,
                         "slow burn: 14x over 6h and 14x over 30m (pages above "
                         "6x)"))
        << reading.summary;
}

TEST(SloRule, ABurstThatEndedPagesNeitherFastNorSlow) {
    auto rule = slo_rule();
    // The whole of 5h05..5h20 broken, clean since: the hour burns far past 14.4x and six hours
    // past 6x, but the short windows (5 and 30 minutes) are clean.
    auto reading = read_alarm(rule, six_hours([](int i) { return i >= 61 && i <= 64 ? 100 : 0; }));
    EXPECT_FALSE(reading.breaching) << reading.summary;
}

TEST(SloRule, TheSummaryTellsTheErrorBudgetLeft) {
    auto rule = slo_rule();
    AlarmInput in{.now = kBase};
    // 1 broken of 1000: 0.1% of the runs, a fifth of a 0.5% budget.
    in.window = ProbeBucket{.scenario = "list", .start = kBase - 24h, .runs = 1000, .broken = 1};
    auto reading = read_alarm(rule, in);
    EXPECT_FALSE(reading.breaching);
    EXPECT_EQ(reading.summary,
              "availability objective 99.5%: 99.9% over 30d, 80% of the error budget left");

    // Spent past the budget: none left, never a negative share.
    in.window.broken = 20;
    EXPECT_TRUE(contains(read_alarm(rule, in).summary, ", 0% of the error budget left"))
        << read_alarm(rule, in).summary;

    in.window = ProbeBucket{};
    EXPECT_EQ(read_alarm(rule, in).summary, "availability objective 99.5%: no runs in the window");
}

// --- step_alarm -----------------------------------------------------------------------------

/// One alarm moved on evaluation by evaluation, as Alarms does (each write adds a version).
struct Stepper {
    AlarmRule rule;
    AlarmState state{.name = "r/list", .rule = "r", .scenario = "list"};

    std::vector<std::string> step(bool breaching,
                                  core::TimePoint now,
                                  std::string silenced_by = "") {
        auto stepped = step_alarm(rule, state, Reading{.breaching = breaching, .summary = "why"},
                                  std::move(silenced_by), now);
        state = stepped.next;
        ++state.version;
        return stepped.notify;
    }
};

using Told = std::vector<std::string>;

TEST(StepAlarm, ANewAlarmStartsOkAndAClearReadingTellsNobody) {
    Stepper a{.rule = consecutive_rule()};
    EXPECT_EQ(a.step(false, kBase), Told{});
    EXPECT_EQ(a.state.state, "ok");
    EXPECT_EQ(a.state.since, kBase);
    EXPECT_EQ(a.state.evaluated_at, kBase);
    EXPECT_EQ(a.state.summary, "why");
    EXPECT_EQ(a.state.notified, "ok");
}

TEST(StepAlarm, WithoutPendingTheFirstBreachFires) {
    Stepper a{.rule = consecutive_rule()};
    a.step(false, kBase);
    EXPECT_EQ(a.step(true, kBase + 30s), Told{"firing"});
    EXPECT_EQ(a.state.state, "firing");
    EXPECT_EQ(a.state.since, kBase + 30s);
    EXPECT_EQ(a.state.notified, "firing");
    EXPECT_EQ(a.state.notified_at, kBase + 30s);
}

TEST(StepAlarm, PendingWaitsForTheConditionToHoldForTheWholeFor) {
    Stepper a{.rule = consecutive_rule()};
    a.rule.pending = 2min;
    EXPECT_EQ(a.step(true, kBase), Told{});
    EXPECT_EQ(a.state.state, "ok");
    EXPECT_EQ(a.state.pending_since, kBase);
    EXPECT_EQ(a.step(true, kBase + 1min), Told{});
    // A clear reading starts the wait again.
    EXPECT_EQ(a.step(false, kBase + 90s), Told{});
    EXPECT_FALSE(a.state.pending_since);
    EXPECT_EQ(a.step(true, kBase + 2min), Told{}) << "2m since the first breach, not since this";
    EXPECT_EQ(a.step(true, kBase + 3min + 59s), Told{});
    EXPECT_EQ(a.state.state, "ok");
    EXPECT_EQ(a.step(true, kBase + 4min), Told{"firing"});
    EXPECT_EQ(a.state.state, "firing");
    EXPECT_EQ(a.state.since, kBase + 4min);
    EXPECT_FALSE(a.state.pending_since);
}

TEST(StepAlarm, KeepFiringForHoldsAFiringAlarmThroughABriefClear) {
    Stepper a{.rule = consecutive_rule()};
    a.rule.keep_firing_for = 5min;
    ASSERT_EQ(a.step(true, kBase), Told{"firing"});
    // One clear evaluation does not resolve it, and a breach again forgets the clear.
    EXPECT_EQ(a.step(false, kBase + 1min), Told{});
    EXPECT_EQ(a.state.state, "firing");
    EXPECT_EQ(a.state.clear_since, kBase + 1min);
    EXPECT_EQ(a.step(true, kBase + 2min), Told{});
    EXPECT_FALSE(a.state.clear_since);
    // Clear from 3m: still firing at 7m59s, resolved at 8m.
    EXPECT_EQ(a.step(false, kBase + 3min), Told{});
    EXPECT_EQ(a.step(false, kBase + 5min), Told{});
    EXPECT_EQ(a.step(false, kBase + 7min + 59s), Told{});
    EXPECT_EQ(a.state.state, "firing");
    EXPECT_EQ(a.step(false, kBase + 8min), Told{"resolved"});
    EXPECT_EQ(a.state.state, "ok");
    EXPECT_EQ(a.state.since, kBase + 8min);
    EXPECT_EQ(a.state.notified, "ok");
    EXPECT_FALSE(a.state.clear_since);
    // And it can fire again.
    EXPECT_EQ(a.step(true, kBase + 9min), Told{"firing"});
}

TEST(StepAlarm, RemindersComeEveryRepeatWhileFiring) {
    Stepper a{.rule = consecutive_rule()};
    a.rule.repeat = 4h;
    ASSERT_EQ(a.step(true, kBase), Told{"firing"});
    EXPECT_EQ(a.step(true, kBase + 3h + 59min), Told{});
    EXPECT_EQ(a.step(true, kBase + 4h), Told{"reminder"});
    EXPECT_EQ(a.state.notified_at, kBase + 4h);
    EXPECT_EQ(a.step(true, kBase + 7h + 59min), Told{}) << "4h counted from the reminder";
    EXPECT_EQ(a.step(true, kBase + 8h), Told{"reminder"});
    EXPECT_EQ(a.state.since, kBase) << "a reminder does not move since";
}

TEST(StepAlarm, ARepeatOfZeroNeverReminds) {
    Stepper a{.rule = consecutive_rule()};
    a.rule.repeat = 0ms;
    ASSERT_EQ(a.step(true, kBase), Told{"firing"});
    EXPECT_EQ(a.step(true, kBase + 100h), Told{});
    EXPECT_EQ(a.step(true, kBase + 1000h), Told{});
}

TEST(StepAlarm, AnOkAlarmNeverReminds) {
    Stepper a{.rule = consecutive_rule()};
    a.rule.repeat = 1h;
    a.step(false, kBase);
    EXPECT_EQ(a.step(false, kBase + 10h), Told{});
}

TEST(StepAlarm, ASilencedChangeIsToldOnceTheSilenceEnds) {
    Stepper a{.rule = consecutive_rule()};
    a.step(false, kBase);
    EXPECT_EQ(a.step(true, kBase + 1min, "silence s1 until later: deploy"), Told{});
    EXPECT_EQ(a.state.state, "firing") << "a silence changes whom it tells, not the state";
    EXPECT_EQ(a.state.silenced_by, "silence s1 until later: deploy");
    EXPECT_EQ(a.state.notified, "ok");
    EXPECT_EQ(a.step(true, kBase + 2min, "silence s1 until later: deploy"), Told{});
    EXPECT_EQ(a.step(true, kBase + 3min), Told{"firing"});
    EXPECT_EQ(a.state.silenced_by, "");
    EXPECT_EQ(a.state.notified, "firing");
    EXPECT_EQ(a.state.since, kBase + 1min) << "since it began firing, not since it was told";
}

TEST(StepAlarm, AFiringThatResolvedWhileSilencedIsNeverTold) {
    Stepper a{.rule = consecutive_rule()};
    a.rule.keep_firing_for = 5min;
    a.step(false, kBase);
    EXPECT_EQ(a.step(true, kBase + 1min, "node lotus-0 is in maintenance: disk"), Told{});
    EXPECT_EQ(a.step(false, kBase + 2min, "node lotus-0 is in maintenance: disk"), Told{});
    EXPECT_EQ(a.step(false, kBase + 7min, "node lotus-0 is in maintenance: disk"), Told{});
    EXPECT_EQ(a.state.state, "ok");
    EXPECT_EQ(a.step(false, kBase + 8min), Told{});
    EXPECT_EQ(a.step(false, kBase + 9h), Told{});
    EXPECT_EQ(a.state.notified, "ok");
}

TEST(StepAlarm, AResolutionWhileSilencedIsToldWhenTheNotifiersHeardOfTheFiring) {
    Stepper a{.rule = consecutive_rule()};
    a.rule.keep_firing_for = 0ms;
    ASSERT_EQ(a.step(true, kBase), Told{"firing"});
    EXPECT_EQ(a.step(false, kBase + 1min, "silence s1"), Told{});
    EXPECT_EQ(a.state.state, "ok");
    EXPECT_EQ(a.state.notified, "firing");
    EXPECT_EQ(a.step(false, kBase + 2min), Told{"resolved"});
}

TEST(StepAlarm, NoRemindersWhileSilencedAndOneWhenItEndsIfDue) {
    Stepper a{.rule = consecutive_rule()};
    a.rule.repeat = 4h;
    ASSERT_EQ(a.step(true, kBase), Told{"firing"});
    EXPECT_EQ(a.step(true, kBase + 5h, "silence s1"), Told{});
    EXPECT_EQ(a.step(true, kBase + 6h, "silence s1"), Told{});
    EXPECT_EQ(a.step(true, kBase + 6h + 1min), Told{"reminder"});
}

// --- Alarms::evaluate against a store -------------------------------------------------------

Scenario scenario_of(std::string name, std::string node = "") {
    Scenario s;
    s.name = std::move(name);
    s.node = std::move(node);
    return s;
}

class AlarmsTest : public ::testing::Test {
protected:
    void SetUp() override {
        store::Settings s;
        s.path = ":memory:";
        auto opened = store::open(s);
        ASSERT_TRUE(opened) << opened.error().message;
        store_ = std::move(*opened);
        ASSERT_TRUE(store_->reconcile_nodes({core::NodeSpec{.name = "lotus-0", .driver = "sim"},
                                             core::NodeSpec{.name = "lotus-1", .driver = "sim"}},
                                            "config", clock_.now()));
        settings_.scenarios = {scenario_of("list", "lotus-0"), scenario_of("submit"),
                               scenario_of("off", "lotus-0")};
        settings_.scenarios[2].enabled = false;
        auto failing = consecutive_rule();
        failing.keep_firing_for = 5min;
        settings_.alarms = {failing};
        settings_.notifiers = {"slack", "hook"};
        settings_.public_url = "https://aviary.example/";
    }

    void TearDown() override {
        alarms_.reset();
        if (store_) {
            store_->close();
        }
    }

    Alarms& alarms() {
        if (!alarms_) {
            alarms_ = std::make_unique<Alarms>(settings_, *store_, clock_, &registry_);
        }
        return *alarms_;
    }

    void evaluate() {
        auto done = alarms().evaluate();
        ASSERT_TRUE(done) << done.error().message;
    }

    void record(std::string scenario, std::string outcome, int count = 1) {
        for (int i = 0; i < count; ++i) {
            auto recorded = store_->record_probe_run(
                ProbeRun{.scenario = scenario,
                         .started_at = clock_.now(),
                         .duration = 40ms,
                         .outcome = outcome,
                         .failed_step = outcome == "passed" ? "" : "list",
                         .message = outcome == "passed" ? "" : "step \"list\": connection refused",
                         .instance = "serve-a"});
            ASSERT_TRUE(recorded) << recorded.error().message;
        }
    }

    std::map<std::string, AlarmState> states() {
        auto got = store_->alarm_states();
        EXPECT_TRUE(got) << got.error().message;
        std::map<std::string, AlarmState> out;
        if (got) {
            for (auto& s : *got) {
                out[s.name] = s;
            }
        }
        return out;
    }

    /// Every notification queued, oldest first.
    std::vector<AlarmNotification> notifications() {
        auto got = store_->alarm_notifications(1000);
        EXPECT_TRUE(got) << got.error().message;
        if (!got) {
            return {};
        }
        std::reverse(got->begin(), got->end());
        return *got;
    }

    std::vector<core::Event> events(std::string_view kind) {
        store::EventQuery q;
        q.limit = 1000;
        auto got = store_->events(q);
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

    double firing_gauge(std::string alarm) {
        return registry_.gauge("aviary_alarm_firing", "", {"alarm"}).with({alarm}).value();
    }

    core::ManualClock clock_{kBase + 30s};
    std::unique_ptr<store::Store> store_;
    metrics::Registry registry_;
    Settings settings_;
    std::unique_ptr<Alarms> alarms_;
};

TEST_F(AlarmsTest, PairsAreEachRuleWithEachEnabledScenarioItSelects) {
    auto by_label = AlarmRule{.name = "labelled", .selector = {{"tier", "gold"}}};
    auto named = AlarmRule{.name = "named", .scenarios = {"submit", "off"}};
    settings_.scenarios[0].labels = {{"tier", "gold"}};
    settings_.scenarios[2].labels = {{"tier", "gold"}};
    settings_.alarms = {by_label, named};
    std::vector<std::string> got;
    for (const auto& [rule, scenario] : Alarms::pairs(settings_)) {
        got.push_back(rule->name + "/" + scenario->name);
    }
    EXPECT_EQ(got, (std::vector<std::string>{"labelled/list", "named/submit"}));
}

TEST_F(AlarmsTest, ThreeBadRunsFireOnceWithANotificationPerNotifierAndAnEvent) {
    int woken = 0;
    alarms().set_on_notified([&woken] { ++woken; });
    record("list", "broken", 3);
    record("submit", "passed");
    evaluate();

    auto got = states();
    ASSERT_EQ(got.size(), 2U) << "the scenario that is not enabled has no alarm";
    const auto& list = got["failing/list"];
    EXPECT_EQ(list.rule, "failing");
    EXPECT_EQ(list.scenario, "list");
    EXPECT_EQ(list.state, "firing");
    EXPECT_EQ(list.since, clock_.now());
    EXPECT_EQ(list.notified, "firing");
    EXPECT_EQ(list.summary, "the last 3 runs were bad: step \"list\": connection refused");
    EXPECT_EQ(list.version, 1);
    EXPECT_EQ(got["failing/submit"].state, "ok");
    EXPECT_EQ(got["failing/submit"].summary, "the last run passed");

    auto queued = notifications();
    ASSERT_EQ(queued.size(), 2U);
    std::vector<std::string> whom;
    for (const auto& n : queued) {
        whom.push_back(n.notifier);
        EXPECT_EQ(n.alarm, "failing/list");
        EXPECT_EQ(n.rule, "failing");
        EXPECT_EQ(n.scenario, "list");
        EXPECT_EQ(n.kind, "firing");
        EXPECT_EQ(n.summary, list.summary);
        EXPECT_EQ(n.link, "https://aviary.example/dashboard#probe-list");
        EXPECT_EQ(n.at, clock_.now());
        EXPECT_EQ(n.since, clock_.now());
        EXPECT_EQ(n.outcome, "");
        EXPECT_EQ(n.next_attempt_at, clock_.now());
    }
    std::sort(whom.begin(), whom.end());
    EXPECT_EQ(whom, (std::vector<std::string>{"hook", "slack"}));

    auto fired = events("alarm.firing");
    ASSERT_EQ(fired.size(), 1U);
    EXPECT_EQ(fired[0].node, "lotus-0") << "the scenario's node";
    EXPECT_EQ(fired[0].actor, "aviary");
    auto after = json::parse(fired[0].after).as_object();
    EXPECT_EQ(after.at("alarm").as_string(), "failing/list");
    EXPECT_EQ(after.at("state").as_string(), "firing");
    EXPECT_EQ(woken, 1);
    EXPECT_EQ(firing_gauge("failing/list"), 1);
    EXPECT_EQ(firing_gauge("failing/submit"), 0);

    // Still failing at the next evaluation: nothing more to tell.
    clock_.advance(30s);
    record("list", "broken");
    evaluate();
    EXPECT_EQ(notifications().size(), 2U);
    EXPECT_EQ(events("alarm.firing").size(), 1U);
    EXPECT_EQ(states()["failing/list"].version, 2);
    EXPECT_EQ(states()["failing/list"].evaluated_at, clock_.now());
    EXPECT_EQ(woken, 1) << "no notification, no wake-up";
}

TEST_F(AlarmsTest, AFiringAlarmResolvesAfterKeepFiringForAndTellsEachNotifier) {
    record("list", "broken", 3);
    evaluate();
    clock_.advance(1min);
    record("list", "passed");
    evaluate();
    EXPECT_EQ(states()["failing/list"].state, "firing") << "clear for less than 5m";
    clock_.advance(5min);
    evaluate();
    EXPECT_EQ(states()["failing/list"].state, "ok");
    auto queued = notifications();
    ASSERT_EQ(queued.size(), 4U);
    EXPECT_EQ(queued[2].kind, "resolved");
    EXPECT_EQ(queued[3].kind, "resolved");
    EXPECT_EQ(queued[2].since, clock_.now());
    ASSERT_EQ(events("alarm.resolved").size(), 1U);
    EXPECT_EQ(firing_gauge("failing/list"), 0);
}

TEST_F(AlarmsTest, ARuleNamingItsNotifiersTellsOnlyThem) {
    settings_.alarms[0].notify = {"hook"};
    record("list", "broken", 3);
    evaluate();
    auto queued = notifications();
    ASSERT_EQ(queued.size(), 1U);
    EXPECT_EQ(queued[0].notifier, "hook");
}

TEST_F(AlarmsTest, WithoutAPublicUrlLinksUseServesAddress) {
    settings_.public_url = "";
    alarms().set_public_url("http://127.0.0.1:7070/");
    record("list", "broken", 3);
    evaluate();
    auto queued = notifications();
    ASSERT_FALSE(queued.empty());
    EXPECT_EQ(queued[0].link, "http://127.0.0.1:7070/dashboard#probe-list");
}

TEST_F(AlarmsTest, AnAvailabilityAlarmFiresOnMissingDataButNotOnTheTimeBeforeItExisted) {
    settings_.alarms = {availability_rule()};  // 3 of 5 periods of 5m
    settings_.scenarios.resize(2);
    // "submit" runs every minute and passes; "list" never runs.
    auto tick = [&] {
        clock_.advance(1min);
        record("submit", "passed");
        evaluate();
    };
    evaluate();  // the alarms are made at kBase + 30s
    auto made = states();
    ASSERT_EQ(made.size(), 2U);
    EXPECT_EQ(made["avail/list"].state, "ok") << "no period is judged before the alarm existed";
    EXPECT_TRUE(contains(made["avail/list"].summary, "none judged yet"))
        << made["avail/list"].summary;
    // Until kBase + 15m: the periods ending at 5m and 10m are judged, missing: 2 of 5.
    while (clock_.now() < kBase + 14min) {
        tick();
    }
    EXPECT_EQ(states()["avail/list"].state, "ok") << states()["avail/list"].summary;
    while (clock_.now() < kBase + 15min + 30s) {
        tick();
    }
    auto fired = states();
    EXPECT_EQ(fired["avail/list"].state, "firing") << fired["avail/list"].summary;
    EXPECT_TRUE(contains(fired["avail/list"].summary, "no runs, no runs, no runs"))
        << fired["avail/list"].summary;
    EXPECT_EQ(fired["avail/submit"].state, "ok") << fired["avail/submit"].summary;
    EXPECT_EQ(events("alarm.firing").size(), 1U);
}

// exposes: read_availability() (src/probes/alarms.cpp) counts every period without runs as
// breaching, whatever the scenario's interval, and neither config (probes_reader.cpp's
// read_alarm) nor Alarms::pairs() checks a selected scenario's interval against the rule's
// period. A healthy scenario with `interval: 10m` under the default "availability" rule (5m
// periods, 3 of 5, selecting every scenario) has a run in every other period only, so 2 or 3
// of its last 5 periods are "missing data": its alarm fires although every run passed, and
// never stays clear for keep_firing_for.
TEST_F(AlarmsTest, AHealthyScenarioRunningLessOftenThanThePeriodDoesNotFire) {
    settings_.scenarios = {scenario_of("slow")};
    settings_.scenarios[0].interval = 10min;
    settings_.alarms = {availability_rule()};
    evaluate();
    // Two hours: a passing run every 10 minutes, an evaluation every minute.
    for (int minute = 1; minute <= 120; ++minute) {
        clock_.advance(1min);
        if (minute % 10 == 1) {
            record("slow", "passed");
        }
        evaluate();
    }
    auto slow = states()["avail/slow"];
    EXPECT_EQ(slow.state, "ok") << slow.summary;
    EXPECT_TRUE(events("alarm.firing").empty());
    EXPECT_TRUE(notifications().empty());
}

TEST_F(AlarmsTest, AnExplicitSilenceSuppressesTheNotificationsUntilItIsExpired) {
    ASSERT_TRUE(store_->add_silence(store::Silence{.id = "s1",
                                                   .matcher = "failing/list",
                                                   .reason = "moving the rack",
                                                   .created_by = "anton",
                                                   .starts_at = clock_.now() - 1min,
                                                   .ends_at = clock_.now() + 1h},
                                    clock_.now()));
    record("list", "broken", 3);
    record("submit", "broken", 3);
    evaluate();
    auto got = states();
    EXPECT_EQ(got["failing/list"].state, "firing");
    EXPECT_TRUE(contains(got["failing/list"].silenced_by, "silence s1"))
        << got["failing/list"].silenced_by;
    EXPECT_TRUE(contains(got["failing/list"].silenced_by, "moving the rack"));
    EXPECT_EQ(got["failing/list"].notified, "ok");
    EXPECT_EQ(got["failing/submit"].silenced_by, "") << "the silence names the other alarm";
    auto queued = notifications();
    ASSERT_EQ(queued.size(), 2U) << "only failing/submit's, to both notifiers";
    EXPECT_EQ(queued[0].alarm, "failing/submit");
    EXPECT_EQ(queued[1].alarm, "failing/submit");
    EXPECT_EQ(events("alarm.firing").size(), 1U);

    clock_.advance(30s);
    ASSERT_TRUE(store_->expire_silence("s1", "anton", clock_.now()));
    evaluate();
    got = states();
    EXPECT_EQ(got["failing/list"].silenced_by, "");
    EXPECT_EQ(got["failing/list"].notified, "firing");
    queued = notifications();
    ASSERT_EQ(queued.size(), 4U);
    EXPECT_EQ(queued[2].alarm, "failing/list");
    EXPECT_EQ(queued[2].kind, "firing");
    EXPECT_EQ(queued[2].since, kBase + 30s) << "since it fired, under the silence";
    EXPECT_EQ(events("alarm.firing").size(), 2U);
}

TEST_F(AlarmsTest, ASilenceMatchesEverythingItsRuleItsScenarioOrTheAlarm) {
    struct Case {
        std::string matcher;
        bool silences_list;
        core::Millis starts_in;
    };
    const Case cases[] = {{"*", true, -1min},
                          {"failing", true, -1min},
                          {"list", true, -1min},
                          {"failing/list", true, -1min},
                          {"submit", false, -1min},
                          {"other/list", false, -1min},
                          {"failing/submit", false, -1min},
                          {"list", false, 10min}};  // not begun yet
    for (const auto& c : cases) {
        SCOPED_TRACE(c.matcher);
        TearDown();
        SetUp();
        ASSERT_TRUE(store_->add_silence(store::Silence{.id = "s",
                                                       .matcher = c.matcher,
                                                       .reason = "r",
                                                       .created_by = "a",
                                                       .starts_at = clock_.now() + c.starts_in,
                                                       .ends_at = clock_.now() + 1h},
                                        clock_.now()));
        record("list", "broken", 3);
        evaluate();
        auto list = states()["failing/list"];
        EXPECT_EQ(list.state, "firing");
        EXPECT_EQ(!list.silenced_by.empty(), c.silences_list) << list.silenced_by;
        EXPECT_EQ(notifications().size(), c.silences_list ? 0U : 2U);
    }
}

TEST_F(AlarmsTest, ANodeInMaintenanceSilencesTheScenariosOnIt) {
    ASSERT_TRUE(store_->start_maintenance("lotus-0", "disk swap", "root", clock_.now()));
    record("list", "broken", 3);    // on lotus-0
    record("submit", "broken", 3);  // on no node
    evaluate();
    auto got = states();
    EXPECT_EQ(got["failing/list"].state, "firing");
    EXPECT_EQ(got["failing/list"].silenced_by, "node lotus-0 is in maintenance: disk swap");
    EXPECT_EQ(got["failing/submit"].silenced_by, "");
    auto queued = notifications();
    ASSERT_EQ(queued.size(), 2U);
    EXPECT_EQ(queued[0].alarm, "failing/submit");

    clock_.advance(30s);
    ASSERT_TRUE(store_->end_maintenance("lotus-0", "root", clock_.now()));
    evaluate();
    EXPECT_EQ(states()["failing/list"].silenced_by, "");
    queued = notifications();
    ASSERT_EQ(queued.size(), 4U);
    EXPECT_EQ(queued[3].alarm, "failing/list");
}

TEST_F(AlarmsTest, APlannedActionRunningOnTheNodeSilencesItsScenarios) {
    auto submit_and_claim = [&](std::string action, std::string node) {
        core::Job job;
        job.id = core::new_id();
        job.action = std::move(action);
        job.node = std::move(node);
        job.requester = "anton";
        job.steps = 1;
        job.created_at = clock_.now();
        job.run_at = clock_.now();
        auto submitted = store_->submit_job(store::JobSubmit{.job = job, .actor = "anton"});
        EXPECT_TRUE(submitted) << submitted.error().message;
        auto claimed = store_->claim_job(store::JobClaim{.runner = "r", .now = clock_.now()});
        EXPECT_TRUE(claimed && *claimed);
        return job.id;
    };
    // Work that is not planned disruption does not silence.
    submit_and_claim("logs", "lotus-0");
    record("list", "broken", 3);
    evaluate();
    EXPECT_EQ(states()["failing/list"].silenced_by, "");
    EXPECT_EQ(notifications().size(), 2U);

    TearDown();
    SetUp();
    auto id = submit_and_claim("upgrade", "lotus-0");
    record("list", "broken", 3);
    evaluate();
    EXPECT_EQ(states()["failing/list"].silenced_by,
              "upgrade is running on lotus-0 (job " + id + ")");
    EXPECT_EQ(notifications().size(), 0U);

    // An upgrade on another node silences nothing here.
    TearDown();
    SetUp();
    submit_and_claim("upgrade", "lotus-1");
    record("list", "broken", 3);
    evaluate();
    EXPECT_EQ(states()["failing/list"].silenced_by, "");
}

TEST_F(AlarmsTest, TheAlarmsOfARuleOrScenarioThatLeftTheConfigAreForgotten) {
    auto fast = consecutive_rule();
    fast.name = "fast";
    fast.failures = 1;
    settings_.alarms.push_back(fast);
    record("list", "broken", 3);
    evaluate();
    ASSERT_EQ(states().size(), 4U);
    std::int64_t of_fast = 0;
    for (const auto& n : notifications()) {
        of_fast += n.rule == "fast" ? 1 : 0;
    }
    ASSERT_EQ(of_fast, 2) << "fast/list fired, to both notifiers";

    // The rule "fast" and the scenario "submit" go.
    Settings next = settings_;
    next.alarms.resize(1);
    next.scenarios[1].enabled = false;
    Alarms reloaded{next, *store_, clock_, nullptr};
    clock_.advance(30s);
    auto done = reloaded.evaluate();
    ASSERT_TRUE(done) << done.error().message;
    auto got = states();
    ASSERT_EQ(got.size(), 1U);
    EXPECT_TRUE(got.contains("failing/list"));
    // fast/list was told firing: its notifiers hear it resolved, so no channel shows it firing
    // for ever; the firing raised before stays to be sent first.
    std::vector<std::string> of_fast_now;
    for (const auto& n : notifications()) {
        if (n.alarm == "fast/list") {
            of_fast_now.push_back(n.kind);
        }
    }
    EXPECT_EQ(of_fast_now, (std::vector<std::string>{"firing", "firing", "resolved", "resolved"}));
    EXPECT_EQ(events("alarm.resolved").size(), 1U);
}

}  // namespace
}  // namespace aviary::probes
