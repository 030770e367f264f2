// Crash safety (engine.cpp): process groups and jobs left by a previous run are settled at
// start, a hung runner's jobs by the heartbeat watchdog, and stop() leaves an unfinished
// attempt for the next start.
#include <spawn.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engine_support.hpp"
#include "proc/proc.hpp"

extern char** environ;  // NOLINT: posix_spawnp's environment

namespace aviary::jobs::test {
namespace {

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

/// `sleep 30` leading a process group of its own, as a step's child would: what a dead serve
/// leaves behind.
pid_t spawn_group_leader() {
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    std::string program = "sleep";
    std::string seconds = "30";
    std::vector<char*> argv{program.data(), seconds.data(), nullptr};
    pid_t pid = -1;
    int failed = ::posix_spawnp(&pid, "sleep", nullptr, &attr, argv.data(), environ);
    posix_spawnattr_destroy(&attr);
    return failed == 0 ? pid : -1;
}

/// A store file in a temp dir, so a test can close it and open it again as a restart would.
class JobRescue : public EngineTest {
protected:
    JobRescue() : dir_(std::filesystem::temp_directory_path() / ("aviary-jobs-" + core::new_id())) {
        std::filesystem::create_directories(dir_);
    }
    ~JobRescue() override {
        for (pid_t pid : leaders_) {
            if (::waitpid(pid, nullptr, WNOHANG) == 0) {
                ::kill(-pid, SIGKILL);
                ::waitpid(pid, nullptr, 0);
            }
        }
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }

    store::Settings store_settings() override {
        return store::Settings{.path = (dir_ / "aviary.db").string(), .synchronous = "normal"};
    }

    /// Inserts a job of `action` on `node` straight into the store, as a previous run did.
    core::Job insert(const std::string& action, const std::string& node) {
        const auto* spec = find(action);
        // Runnable for a claim as of a minute ago (the watchdog tests claim in the past).
        auto at = clock_.now() - 1min;
        core::Job job{.id = core::new_id(),
                      .action = action,
                      .queue = spec->queue,
                      .node = node,
                      .requester = "alice",
                      .unique_key = action + "/" + node,
                      .exclusive = spec->exclusive,
                      .max_attempts = spec->max_attempts,
                      .steps = static_cast<int>(spec->steps.size()),
                      .created_at = at,
                      .run_at = at};
        auto submitted = store_->submit_job(store::JobSubmit{.job = job, .actor = "alice"});
        EXPECT_TRUE(submitted) << submitted.error().message;
        return submitted ? submitted->job : job;
    }

    /// Claims the next runnable job for `runner` as of `now` (its heartbeat_at).
    core::Job claim(const std::string& runner, core::TimePoint now) {
        auto claimed = store_->claim_job(store::JobClaim{.runner = runner, .now = now});
        EXPECT_TRUE(claimed) << claimed.error().message;
        if (!claimed || !*claimed) {
            ADD_FAILURE() << "nothing to claim";
            return core::Job{};
        }
        return **claimed;
    }

    /// Starts a real group and records it as the running step's child of `job`.
    pid_t record_group(const core::Job& job, core::TimePoint now) {
        pid_t leader = spawn_group_leader();
        EXPECT_GT(leader, 0);
        leaders_.push_back(leader);
        auto recorded = store_->update_job_step(
            store::JobStepUpdate{.id = job.id,
                                 .attempt = job.attempt,
                                 .step = 1,
                                 .step_name = "run",
                                 .pgid = leader,
                                 .pgid_start_ticks = proc::start_ticks(leader).value_or(0),
                                 .now = now});
        EXPECT_TRUE(recorded) << recorded.error().message;
        return leader;
    }

    /// The group was killed: its leader (our child) died of SIGKILL and nothing is left of it.
    void expect_killed(pid_t leader) {
        int status = reap(leader);
        ASSERT_NE(status, -1) << "group " << leader << " was left running";
        EXPECT_TRUE(WIFSIGNALED(status));
        EXPECT_EQ(WTERMSIG(status), SIGKILL);
        EXPECT_TRUE(group_gone(leader));
    }

    /// Closes and reopens the store, as a restarted serve would.
    void reopen() {
        fleet_.reset();
        store_->close();
        auto opened = store::open(store_settings());
        ASSERT_TRUE(opened) << opened.error().message;
        store_ = std::move(*opened);
        fleet_ = std::make_unique<fleet::Fleet>(fleet_settings(), *store_, clock_);
        ASSERT_TRUE(fleet_->reconcile());
    }

    static const ActionSpec* find(const std::string& name) {
        static const std::vector<ActionSpec> actions = test_actions();
        for (const auto& action : actions) {
            if (action.name == name) {
                return &action;
            }
        }
        ADD_FAILURE() << "no test action " << name;
        return &actions.front();
    }

    std::filesystem::path dir_;
    std::vector<pid_t> leaders_;
};

TEST_F(JobRescue, StartKillsLeftGroupsAndSettlesTheirJobs) {
    auto now = clock_.now();
    auto safe = insert("safe", "lotus-0");
    auto unsafe = insert("hang", "lotus-1");
    auto cancelling = insert("hang", "lotus-2");
    auto waiting = insert("noop", "lotus-0");  // queued behind `safe`: untouched by the rescue
    auto safe_run = claim("old-run", now);
    auto unsafe_run = claim("old-run", now);
    auto cancelling_run = claim("old-run", now);
    ASSERT_EQ(safe_run.id, safe.id);
    ASSERT_EQ(unsafe_run.id, unsafe.id);
    ASSERT_EQ(cancelling_run.id, cancelling.id);
    pid_t safe_group = record_group(safe_run, now);
    pid_t unsafe_group = record_group(unsafe_run, now);
    pid_t cancelling_group = record_group(cancelling_run, now);
    auto requested = store_->cancel_job(cancelling.id, "alice", now);
    ASSERT_TRUE(requested) << requested.error().message;
    ASSERT_EQ(requested->state, core::JobState::kCancelling);
    reopen();

    auto report = start();
    EXPECT_EQ(report.groups_killed, 3);
    ASSERT_EQ(report.requeued.size(), 1U);
    EXPECT_EQ(report.requeued.front().id, safe.id);
    ASSERT_EQ(report.failed.size(), 1U);
    EXPECT_EQ(report.failed.front().id, unsafe.id);
    ASSERT_EQ(report.cancelled.size(), 1U);
    EXPECT_EQ(report.cancelled.front().id, cancelling.id);
    expect_killed(safe_group);
    expect_killed(unsafe_group);
    expect_killed(cancelling_group);

    auto rerun = wait_finished(safe.id);
    EXPECT_EQ(rerun.state, core::JobState::kSucceeded) << rerun.error;
    EXPECT_EQ(rerun.attempt, 2);
    auto failed = job(unsafe.id);
    EXPECT_EQ(failed.state, core::JobState::kFailed);
    EXPECT_TRUE(contains(failed.error, "not marked safe to re-run")) << failed.error;
    EXPECT_TRUE(contains(failed.error, "step 1 (run)")) << failed.error;
    EXPECT_EQ(failed.attempt, 1) << "never run twice";
    auto cancelled = job(cancelling.id);
    EXPECT_EQ(cancelled.state, core::JobState::kCancelled);
    EXPECT_EQ(cancelled.attempt, 1);
    EXPECT_EQ(wait_finished(waiting.id).state, core::JobState::kSucceeded);
    auto kinds = event_kinds("lotus-1");
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), "job.rescued"), kinds.end());
}

TEST_F(JobRescue, AGroupWhosePidWasReusedIsNotKilled) {
    auto now = clock_.now();
    insert("hang", "lotus-0");
    auto running = claim("old-run", now);
    pid_t leader = spawn_group_leader();
    ASSERT_GT(leader, 0);
    leaders_.push_back(leader);
    // Recorded with another start time: the pid now belongs to an unrelated process.
    auto ticks = proc::start_ticks(leader).value_or(0);
    ASSERT_TRUE(store_->update_job_step(store::JobStepUpdate{.id = running.id,
                                                             .attempt = running.attempt,
                                                             .step = 1,
                                                             .step_name = "run",
                                                             .pgid = leader,
                                                             .pgid_start_ticks = ticks + 1,
                                                             .now = now}));
    auto report = start();
    EXPECT_EQ(report.groups_killed, 0);
    EXPECT_EQ(report.failed.size(), 1U);
    EXPECT_EQ(::waitpid(leader, nullptr, WNOHANG), 0) << "an unrelated process was killed";
}

TEST_F(JobRescue, HeartbeatWatchdogRescuesAJobOfAHungRunner) {
    auto settings = test_settings();
    settings.workers = 1;  // kept busy below, so this engine cannot claim the hung job itself
    settings.heartbeat_timeout = 300ms;
    start(settings);
    auto busy = submit("hold", {}, "lotus-0");
    wait_for_state(busy.id, core::JobState::kRunning);

    // Another runner claims a job, starts its step's group and never beats again. Claimed
    // as of now, not in the past: a heartbeat already stale could be rescued before the group
    // is recorded (seen under ASan), and then nothing would kill the group.
    auto now = clock_.now();
    auto hung = insert("safe", "lotus-1");
    auto claimed = claim("other-run", now);
    ASSERT_EQ(claimed.id, hung.id);
    pid_t group = record_group(claimed, now);

    auto rescued = wait_until(
        hung.id, [](const core::Job& job) { return job.state != core::JobState::kRunning; });
    EXPECT_EQ(rescued.state, core::JobState::kQueued);
    EXPECT_TRUE(contains(rescued.error, "no heartbeat")) << rescued.error;
    expect_killed(group);
    auto kinds = event_kinds("lotus-1");
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), "job.rescued"), kinds.end());

    // This engine's own job beats on while it runs, past the timeout, and is left alone.
    auto beating = wait_until(busy.id, [](const core::Job& job) {
        return job.heartbeat_at && job.started_at && *job.heartbeat_at > *job.started_at + 400ms;
    });
    EXPECT_EQ(beating.state, core::JobState::kRunning);

    open_gate();
    EXPECT_EQ(wait_finished(busy.id).state, core::JobState::kSucceeded);
    auto rerun = wait_finished(hung.id);
    EXPECT_EQ(rerun.state, core::JobState::kSucceeded) << rerun.error;
    EXPECT_EQ(rerun.attempt, 2);
}

TEST_F(JobRescue, HeartbeatWatchdogFailsAnUnsafeJobAndHonoursACancel) {
    auto settings = test_settings();
    settings.workers = 1;
    settings.heartbeat_timeout = 300ms;
    start(settings);
    auto busy = submit("hold", {}, "lotus-0");
    wait_for_state(busy.id, core::JobState::kRunning);
    // Claimed as of now, so the watchdog cannot act before the cancel is recorded.
    auto now = clock_.now();
    auto unsafe = insert("hang", "lotus-1");
    ASSERT_EQ(claim("other-run", now).id, unsafe.id);
    auto cancelling = insert("hang", "lotus-2");
    ASSERT_EQ(claim("other-run", now).id, cancelling.id);
    ASSERT_TRUE(store_->cancel_job(cancelling.id, "alice", now));
    auto failed = wait_finished(unsafe.id);
    EXPECT_EQ(failed.state, core::JobState::kFailed);
    EXPECT_TRUE(contains(failed.error, "no heartbeat")) << failed.error;
    EXPECT_EQ(wait_finished(cancelling.id).state, core::JobState::kCancelled);
    open_gate();
    EXPECT_EQ(wait_finished(busy.id).state, core::JobState::kSucceeded);
}

TEST_F(JobRescue, StopLeavesAnUnfinishedAttemptForTheNextStart) {
    start();
    auto held = submit("hold");
    ASSERT_TRUE(eventually([&] { return fake_.held.load() == 1; }));  // in its only step
    engine_->stop();
    // Not finished as if it had succeeded: the step never completed.
    auto left = job(held.id);
    EXPECT_EQ(left.state, core::JobState::kRunning) << left.error;
    engine_.reset();
    reopen();
    auto report = start();
    ASSERT_EQ(report.failed.size(), 1U);
    EXPECT_EQ(report.failed.front().id, held.id);
    EXPECT_TRUE(contains(report.failed.front().error, "not marked safe to re-run"))
        << report.failed.front().error;
}

TEST_F(JobRescue, StopLeavesAnUnfinishedRunStepForTheNextStart) {
    start();
    auto hang = submit("hang");
    auto group = wait_for_group(hang.id);
    wait_until(hang.id, [&](const core::Job&) { return !stdout_of(hang.id).empty(); });
    auto grandchild = static_cast<pid_t>(std::stoi(stdout_of(hang.id).front()));
    engine_->stop();
    // The step's group was ended with serve, but the job was not finished: the step never
    // completed, so the next start rescues it.
    ASSERT_NE(reap(grandchild), -1) << "grandchild " << grandchild << " outlived serve";
    EXPECT_TRUE(group_gone(group));
    auto left = job(hang.id);
    EXPECT_EQ(left.state, core::JobState::kRunning) << left.error;
}

}  // namespace
}  // namespace aviary::jobs::test
