// Canary runs (docs/probes.md) on both backends: a run and its bucket in one write, newest
// first with a cursor, the newest run per scenario, totals over a window, schedule claims that
// only one of two racing claimers wins, and pruning by age.
#include <gtest/gtest.h>

#include "store_support.hpp"

namespace aviary::store::test {
namespace {

AVIARY_STORE_SUITE(ProbeRuns);

ProbeRun run(std::string scenario, core::TimePoint at, std::string outcome, int ms = 40) {
    return ProbeRun{.scenario = std::move(scenario),
                    .started_at = at,
                    .duration = core::Millis{ms},
                    .outcome = std::move(outcome),
                    .failed_step = outcome == "passed" ? "" : "get output",
                    .message = outcome == "passed" ? "" : "step \"get output\": output mismatch",
                    .steps = R"([{"name":"submit","outcome":"passed"}])",
                    .instance = "serve-a"};
}

TEST_P(ProbeRuns, ARunIsStoredWithItsStepsAndReadBackNewestFirst) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    std::vector<std::int64_t> ids;
    for (int i = 0; i < 5; ++i) {
        auto id = store->record_probe_run(
            run("submitAndGet", clock.now(), i == 3 ? "failed" : "passed", 10 * i));
        ASSERT_TRUE(id) << id.error().message;
        ids.push_back(*id);
        clock.advance(2min);
    }
    ASSERT_TRUE(store->record_probe_run(run("list", clock.now(), "broken")));
    auto page = store->probe_runs("submitAndGet", 3, 0);
    ASSERT_TRUE(page) << page.error().message;
    ASSERT_EQ(page->size(), 3U);
    EXPECT_EQ((*page)[0].id, ids[4]);
    EXPECT_EQ((*page)[1].outcome, "failed");
    EXPECT_EQ((*page)[1].failed_step, "get output");
    EXPECT_EQ((*page)[1].message, "step \"get output\": output mismatch");
    EXPECT_EQ((*page)[1].steps, R"([{"name":"submit","outcome":"passed"}])");
    EXPECT_EQ((*page)[1].duration, core::Millis{30});
    EXPECT_EQ((*page)[1].instance, "serve-a");
    auto rest = store->probe_runs("submitAndGet", 3, page->back().id);
    ASSERT_TRUE(rest);
    ASSERT_EQ(rest->size(), 2U);
    EXPECT_EQ(rest->back().id, ids[0]);

    auto latest = store->latest_probe_runs();
    ASSERT_TRUE(latest);
    ASSERT_EQ(latest->size(), 2U);
    EXPECT_EQ((*latest)[0].scenario, "list");
    EXPECT_EQ((*latest)[0].outcome, "broken");
    EXPECT_EQ((*latest)[1].id, ids[4]);
}

TEST_P(ProbeRuns, BucketsCountEachOutcomeAndTotalsSumAWindow) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    // Bucket edges are multiples of kProbeBucket since the epoch: start on one.
    const auto base = core::TimePoint{core::Millis{1'800'000'000'000}};
    ASSERT_EQ(base.time_since_epoch().count() % kProbeBucket.count(), 0);
    const char* outcomes[] = {"passed", "failed", "broken", "passed"};
    for (int i = 0; i < 4; ++i) {
        ASSERT_TRUE(store->record_probe_run(run("submit", base + i * 1min, outcomes[i], 100)));
    }
    ASSERT_TRUE(store->record_probe_run(run("submit", base + 6min, "passed", 50)));
    auto buckets = store->probe_buckets(base);
    ASSERT_TRUE(buckets) << buckets.error().message;
    ASSERT_EQ(buckets->size(), 2U);
    EXPECT_EQ((*buckets)[0].start, base);
    EXPECT_EQ((*buckets)[0].runs, 4);
    EXPECT_EQ((*buckets)[0].failed, 1);
    EXPECT_EQ((*buckets)[0].broken, 1);
    EXPECT_EQ((*buckets)[0].duration_ms, 400);
    EXPECT_EQ((*buckets)[1].start, base + kProbeBucket);
    EXPECT_EQ((*buckets)[1].runs, 1);

    auto totals = store->probe_totals(base);
    ASSERT_TRUE(totals) << totals.error().message;
    ASSERT_EQ(totals->size(), 1U);
    EXPECT_EQ((*totals)[0].scenario, "submit");
    EXPECT_EQ((*totals)[0].runs, 5);
    EXPECT_EQ((*totals)[0].failed, 1);
    EXPECT_EQ((*totals)[0].broken, 1);
    EXPECT_EQ((*totals)[0].duration_ms, 450);
    // A window that starts inside a bucket counts that bucket whole.
    auto later = store->probe_totals(base + 6min);
    ASSERT_TRUE(later);
    ASSERT_EQ(later->size(), 1U);
    EXPECT_EQ((*later)[0].runs, 1);
}

// Totals over long windows are summed from buckets, hours and days: whatever the window's
// start, they equal the sum of every run from its first bucket on, per scenario.
TEST_P(ProbeRuns, TotalsOverAnyWindowEqualTheRunsSinceItsFirstBucket) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    const auto base = core::TimePoint{core::Millis{1'800'000'000'000}};
    struct Made {
        std::string scenario;
        core::TimePoint at;
        std::string outcome;
        int ms;
    };
    std::vector<Made> made;
    // Three days of runs, 37 minutes apart (so they fall at every minute of the hour), two
    // scenarios, every fifth failed and every seventh broken.
    for (int i = 0; i < 3 * 24 * 60 / 37; ++i) {
        const auto at = base + i * 37min;
        std::string outcome = i % 5 == 0 ? "failed" : i % 7 == 0 ? "broken" : "passed";
        made.push_back({i % 3 == 0 ? "list" : "submit", at, outcome, i});
        ASSERT_TRUE(store->record_probe_run(run(made.back().scenario, at, outcome, i)));
    }
    for (auto since :
         {base, base + 7min, base + 61min, base + 23h + 55min, base + 26h + 3min, base + 71h}) {
        const auto from = since - (since.time_since_epoch() % kProbeBucket);
        std::map<std::string, ProbeBucket> want;
        for (const auto& m : made) {
            if (m.at < from) {
                continue;
            }
            auto& w = want[m.scenario];
            w.scenario = m.scenario;
            ++w.runs;
            w.failed += m.outcome == "failed";
            w.broken += m.outcome == "broken";
            w.duration_ms += m.ms;
        }
        auto totals = store->probe_totals(since);
        ASSERT_TRUE(totals) << totals.error().message;
        ASSERT_EQ(totals->size(), want.size()) << core::format_time(since);
        for (const auto& t : *totals) {
            const auto& w = want.at(t.scenario);
            EXPECT_EQ(t.runs, w.runs) << t.scenario << " since " << core::format_time(since);
            EXPECT_EQ(t.failed, w.failed) << t.scenario << " since " << core::format_time(since);
            EXPECT_EQ(t.broken, w.broken) << t.scenario << " since " << core::format_time(since);
            EXPECT_EQ(t.duration_ms, w.duration_ms) << t.scenario;
            EXPECT_GE(t.start, from) << t.scenario;
        }
    }
}

TEST_P(ProbeRuns, OfTwoClaimsOnTheSameSlotOnlyOneWins) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    const auto t0 = clock.now();
    auto first = store->claim_probe("list", std::nullopt, t0 + 2min);
    ASSERT_TRUE(first) << first.error().message;
    EXPECT_TRUE(*first);
    auto again = store->claim_probe("list", std::nullopt, t0 + 3min);
    ASSERT_TRUE(again);
    EXPECT_FALSE(*again) << "a second first claim must lose";

    auto a = store->claim_probe("list", t0 + 2min, t0 + 4min);
    auto b = store->claim_probe("list", t0 + 2min, t0 + 5min);
    ASSERT_TRUE(a && b);
    EXPECT_TRUE(*a);
    EXPECT_FALSE(*b) << "the slot moved: the claim made on the old time must lose";
    auto schedule = store->probe_schedule();
    ASSERT_TRUE(schedule);
    ASSERT_EQ(schedule->size(), 1U);
    EXPECT_EQ((*schedule)[0].scenario, "list");
    EXPECT_EQ((*schedule)[0].next_run_at, t0 + 4min);
}

TEST_P(ProbeRuns, PruningDeletesOldRunsAndOlderBuckets) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    const auto base = core::TimePoint{core::Millis{1'800'000'000'000}};
    ASSERT_TRUE(store->record_probe_run(run("list", base, "passed")));
    ASSERT_TRUE(store->record_probe_run(run("list", base + 1h, "passed")));
    ASSERT_TRUE(store->record_probe_run(run("list", base + 2h, "passed")));
    auto pruned = store->prune_probe_runs(base + 90min, base + 30min);
    ASSERT_TRUE(pruned) << pruned.error().message;
    EXPECT_EQ(*pruned, 2);
    auto left = store->probe_runs("list", 10, 0);
    ASSERT_TRUE(left);
    ASSERT_EQ(left->size(), 1U);
    EXPECT_EQ(left->front().started_at, base + 2h);
    auto buckets = store->probe_buckets(base);
    ASSERT_TRUE(buckets);
    ASSERT_EQ(buckets->size(), 2U) << "buckets are kept longer than runs";
    EXPECT_EQ(buckets->front().start, base + 1h);
    // base is a whole hour: the window from it is read from the hourly counts, and an hour
    // goes only once all of it is older than the buckets kept.
    auto totals = store->probe_totals(base);
    ASSERT_TRUE(totals) << totals.error().message;
    ASSERT_EQ(totals->size(), 1U);
    EXPECT_EQ(totals->front().runs, 3);
    ASSERT_TRUE(store->prune_probe_runs(base + 90min, base + 1h));
    totals = store->probe_totals(base);
    ASSERT_TRUE(totals);
    ASSERT_EQ(totals->size(), 1U);
    EXPECT_EQ(totals->front().runs, 2);
    EXPECT_EQ(totals->front().start, base + 1h);
}

}  // namespace
}  // namespace aviary::store::test
