// The scheduler: tasks run at start, then at their own next-due time or the interval, whichever
// is sooner; wake() and due_by() bring a run forward; leadership gates leader-only tasks;
// cancel() and stop() return after the run in progress.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "core/core.hpp"

namespace aviary::core {
namespace {

using namespace std::chrono_literals;

/// Counts runs and lets a test wait for the n-th, with a deadline.
struct RunCounter {
    std::mutex mu;
    std::condition_variable changed;
    int runs = 0;

    void ran() {
        std::lock_guard lock{mu};
        ++runs;
        changed.notify_all();
    }
    bool wait_for_runs(int n, Millis within = 10s) {
        std::unique_lock lock{mu};
        return changed.wait_for(lock, within, [&] { return runs >= n; });
    }
    int count() {
        std::lock_guard lock{mu};
        return runs;
    }
};

Scheduler::Task counting(std::string name, RunCounter& counter, Millis interval = 1h) {
    return Scheduler::Task{
        .name = std::move(name),
        .interval = interval,
        .jitter = 0.0,
        .run_once = [&counter](TimePoint) -> std::optional<TimePoint> {
            counter.ran();
            return std::nullopt;
        },
    };
}

TEST(Scheduler, RunsEachTaskAtStartThenAfterItsInterval) {
    ManualClock clock;
    Scheduler scheduler{clock};
    RunCounter a;
    RunCounter b;
    scheduler.add(counting("a", a, 10s));
    auto late = counting("b", b, 10s);
    late.run_at_start = false;
    scheduler.add(std::move(late));
    EXPECT_EQ(scheduler.run_due(), 1);
    EXPECT_EQ(a.count(), 1);
    EXPECT_EQ(b.count(), 0);
    clock.advance(9s);
    EXPECT_EQ(scheduler.run_due(), 0);
    clock.advance(1s);
    EXPECT_EQ(scheduler.run_due(), 2);
    EXPECT_EQ(a.count(), 2);
    EXPECT_EQ(b.count(), 1);
}

TEST(Scheduler, TheTasksOwnNextDueComesBeforeTheInterval) {
    ManualClock clock;
    Scheduler scheduler{clock};
    int runs = 0;
    auto start = clock.now();
    scheduler.add(Scheduler::Task{
        .name = "expiry",
        .interval = 1h,
        .jitter = 0.0,
        .run_once = [&](TimePoint now) -> std::optional<TimePoint> {
            ++runs;
            return now + 5s;  // say, the earliest lease expiry in the store
        },
    });
    EXPECT_EQ(scheduler.run_due(), 1);
    clock.set(start + 5s);
    EXPECT_EQ(scheduler.run_due(), 1);
    EXPECT_EQ(runs, 2);
    auto stats = scheduler.stats();
    ASSERT_EQ(stats.size(), 1U);
    EXPECT_EQ(stats[0].name, "expiry");
    EXPECT_EQ(stats[0].runs, 2U);
    EXPECT_EQ(stats[0].next_due, start + 10s);
}

TEST(Scheduler, DueByBringsARunForwardButNeverPushesItBack) {
    ManualClock clock;
    Scheduler scheduler{clock};
    RunCounter counter;
    auto id = scheduler.add(counting("due", counter, 1h));
    scheduler.run_due();
    scheduler.due_by(id, clock.now() + 2s);
    scheduler.due_by(id, clock.now() + 30s);  // later than what is set: ignored
    clock.advance(2s);
    EXPECT_EQ(scheduler.run_due(), 1);
    EXPECT_EQ(counter.count(), 2);
}

TEST(Scheduler, DueBySetWhileTheTaskRunsIsKeptPastTheRun) {
    // The jobs engine's due task reads the next run_at from the store and returns it; a retry
    // scheduled while it runs (due_by) came after that read and must not be lost to it.
    ManualClock clock;
    Scheduler scheduler{clock};
    Scheduler::TaskId id = 0;
    int runs = 0;
    id = scheduler.add(Scheduler::Task{
        .name = "due",
        .interval = 1h,
        .jitter = 0.0,
        .run_once = [&](TimePoint now) -> std::optional<TimePoint> {
            if (++runs == 1) {
                scheduler.due_by(id, now + 2s);  // as another thread would, mid-run
            }
            return now + 30min;  // what the task read before that
        },
    });
    EXPECT_EQ(scheduler.run_due(), 1);
    clock.advance(2s);
    EXPECT_EQ(scheduler.run_due(), 1) << "the due_by made during the run was lost";
    EXPECT_EQ(runs, 2);
}

TEST(Scheduler, JitterKeepsWaitsWithinItsFraction) {
    ManualClock clock;
    Scheduler scheduler{clock};
    int runs = 0;
    auto task = Scheduler::Task{
        .name = "jittery",
        .interval = 100s,
        .jitter = 0.2,
        .run_once = [&](TimePoint) -> std::optional<TimePoint> {
            ++runs;
            return std::nullopt;
        },
    };
    scheduler.add(std::move(task));
    std::set<Millis::rep> waits;
    for (int i = 0; i < 50; ++i) {
        ASSERT_EQ(scheduler.run_due(), 1);
        auto wait = scheduler.stats()[0].next_due - clock.now();
        EXPECT_GE(wait, 80s);
        EXPECT_LE(wait, 120s);
        waits.insert(wait.count());
        clock.advance(std::chrono::duration_cast<Millis>(wait));
    }
    EXPECT_GT(waits.size(), 10U) << "the waits should differ";
}

TEST(Scheduler, LeaderOnlyTasksSkipWhileAnotherInstanceLeads) {
    ManualClock clock;
    Scheduler scheduler{clock};
    RunCounter leader_only;
    RunCounter everywhere;
    scheduler.add(counting("sweep", leader_only, 1s));
    auto local = counting("local", everywhere, 1s);
    local.leader_only = false;
    scheduler.add(std::move(local));
    bool leading = false;
    scheduler.set_leadership([&] { return leading; });
    scheduler.run_due();
    EXPECT_EQ(leader_only.count(), 0);
    EXPECT_EQ(everywhere.count(), 1);
    leading = true;
    clock.advance(1s);
    scheduler.run_due();
    EXPECT_EQ(leader_only.count(), 1);
    EXPECT_EQ(everywhere.count(), 2);
}

TEST(Scheduler, AThrowingTaskIsCountedAndKept) {
    ManualClock clock;
    Scheduler scheduler{clock};
    int runs = 0;
    scheduler.add(Scheduler::Task{
        .name = "flaky",
        .interval = 1s,
        .jitter = 0.0,
        .run_once = [&](TimePoint) -> std::optional<TimePoint> {
            ++runs;
            throw std::runtime_error("boom");
        },
    });
    scheduler.run_due();
    clock.advance(1s);
    scheduler.run_due();
    EXPECT_EQ(runs, 2);
    EXPECT_EQ(scheduler.stats()[0].failures, 2U);
}

TEST(Scheduler, ThreadsRunAtStartAndWakeRunsAgainAtOnce) {
    SystemClock clock;
    Scheduler scheduler{clock};
    RunCounter counter;
    auto id = scheduler.add(counting("woken", counter, 1h));
    scheduler.start();
    ASSERT_TRUE(counter.wait_for_runs(1));
    scheduler.wake(id);  // an hour early
    ASSERT_TRUE(counter.wait_for_runs(2));
    scheduler.stop();  // must not wait out the hour
    scheduler.stop();  // idempotent
    EXPECT_EQ(counter.count(), 2);
}

TEST(Scheduler, ASlowTaskDoesNotHoldBackAnother) {
    SystemClock clock;
    Scheduler scheduler{clock, 2};
    std::mutex mu;
    std::condition_variable released;
    bool release = false;
    RunCounter slow_started;
    RunCounter quick;
    scheduler.add(Scheduler::Task{
        .name = "slow",
        .interval = 1h,
        .run_once = [&](TimePoint) -> std::optional<TimePoint> {
            slow_started.ran();
            std::unique_lock lock{mu};
            released.wait(lock, [&] { return release; });
            return std::nullopt;
        },
    });
    auto quick_id = scheduler.add(counting("quick", quick, 1h));
    scheduler.start();
    ASSERT_TRUE(slow_started.wait_for_runs(1));
    ASSERT_TRUE(quick.wait_for_runs(1));
    scheduler.wake(quick_id);
    EXPECT_TRUE(quick.wait_for_runs(2)) << "the quick task waited for the slow one";
    {
        std::lock_guard lock{mu};
        release = true;
    }
    released.notify_all();
    scheduler.stop();
}

TEST(Scheduler, CancelWaitsForTheRunInProgressAndEndsTheTask) {
    SystemClock clock;
    Scheduler scheduler{clock};
    std::atomic<bool> inside{false};
    std::atomic<int> runs{0};
    auto id = scheduler.add(Scheduler::Task{
        .name = "cancelled",
        .interval = 1ms,
        .jitter = 0.0,
        .run_once = [&](TimePoint) -> std::optional<TimePoint> {
            inside = true;
            ++runs;
            std::this_thread::yield();
            inside = false;
            return std::nullopt;
        },
    });
    scheduler.start();
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (runs.load() < 3 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
    }
    ASSERT_GE(runs.load(), 3);
    scheduler.cancel(id);
    EXPECT_FALSE(inside.load()) << "cancel() returned while the task ran";
    EXPECT_TRUE(scheduler.stats().empty()) << "a cancelled task is gone from the stats";
    const int after = runs.load();
    scheduler.wake(id);
    scheduler.stop();
    EXPECT_EQ(runs.load(), after) << "a cancelled task ran again";
}

TEST(Scheduler, StopBeforeStartIsSafe) {
    SystemClock clock;
    Scheduler scheduler{clock};
    RunCounter counter;
    scheduler.add(counting("never", counter));
    scheduler.stop();
    scheduler.start();  // after stop: does nothing
    scheduler.stop();
    EXPECT_EQ(counter.count(), 0);
}

}  // namespace
}  // namespace aviary::core
