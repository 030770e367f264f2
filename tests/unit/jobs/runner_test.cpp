// One attempt of one job (runner.cpp): steps, children and their process groups, output,
// retries, timeout and cancel.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "engine_support.hpp"
#include "jobs/engine_impl.hpp"

namespace aviary::jobs::test {
namespace {

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

/// Lines of `stream` whose text contains `part`.
std::size_t count_lines(const std::vector<core::OutputLine>& lines,
                        const std::string& stream,
                        const std::string& part) {
    return static_cast<std::size_t>(
        std::count_if(lines.begin(), lines.end(), [&](const core::OutputLine& line) {
            return line.stream == stream && contains(line.text, part);
        }));
}

class JobRunner : public EngineTest {};

TEST_F(JobRunner, NoopJobSucceeds) {
    start();
    auto queued = submit("noop");
    EXPECT_EQ(queued.state, core::JobState::kQueued);
    EXPECT_EQ(queued.attempt, 0);
    auto done = wait_finished(queued.id);
    EXPECT_EQ(done.state, core::JobState::kSucceeded);
    EXPECT_EQ(done.attempt, 1);
    EXPECT_EQ(done.error, "");
    ASSERT_TRUE(done.started_at);
    ASSERT_TRUE(done.finished_at);
    EXPECT_LE(*done.started_at, *done.finished_at);
    EXPECT_GE(*done.started_at, done.created_at);
    EXPECT_EQ(done.pgid, 0);
    auto kinds = event_kinds();
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), "job.queued"), kinds.end());
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), "job.started"), kinds.end());
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), "job.succeeded"), kinds.end());
}

TEST_F(JobRunner, RunStepCapturesStdoutWithIncreasingSeqs) {
    start();
    auto id = submit("echo", {{"text", "hello"}}).id;
    auto done = wait_finished(id);
    ASSERT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    EXPECT_EQ(stdout_of(id), std::vector<std::string>{"hello"});
    auto lines = output(id);
    ASSERT_FALSE(lines.empty());
    for (std::size_t i = 0; i < lines.size(); ++i) {
        EXPECT_EQ(lines[i].seq, static_cast<std::int64_t>(i) + 1) << lines[i].text;
        EXPECT_EQ(lines[i].attempt, 1);
    }
    EXPECT_EQ(count_lines(lines, "aviary", "attempt 1 of 1"), 1U);
    EXPECT_EQ(count_lines(lines, "aviary", "step 1/1: run"), 1U);
    EXPECT_EQ(count_lines(lines, "aviary", "started pid"), 1U);
    EXPECT_EQ(count_lines(lines, "aviary", "succeeded in"), 1U);
    EXPECT_EQ(lines.back().stream, "aviary");
    auto page = engine_->output(store::OutputQuery{.job_id = id});
    ASSERT_TRUE(page);
    EXPECT_TRUE(page->finished);
    EXPECT_EQ(page->last_seq, lines.back().seq);
    // Following from a seq returns only what came after it.
    auto after = engine_->output(store::OutputQuery{.job_id = id, .after_seq = 2});
    ASSERT_TRUE(after);
    ASSERT_FALSE(after->lines.empty());
    EXPECT_EQ(after->lines.front().seq, 3);
}

TEST_F(JobRunner, ParamsReachTheArgvVerbatimAndNoShellRunsThem) {
    std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("aviary-jobs-" + core::new_id());
    std::filesystem::create_directories(dir);
    const std::string touched = (dir / "X").string();
    const std::string text = "lotus-0;touch " + touched + " && touch " + touched + " $(touch " +
                             touched + ") `touch " + touched + "`";
    start();
    auto id = submit("echo", {{"text", text}}).id;
    auto done = wait_finished(id);
    EXPECT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    EXPECT_EQ(stdout_of(id), std::vector<std::string>{text});
    EXPECT_FALSE(std::filesystem::exists(touched));
    std::filesystem::remove_all(dir);
}

TEST_F(JobRunner, OutputIsRedactedBeforeItIsKept) {
    core::redactor().add_secret("runner-secret-0123");
    start();
    const std::string text =
        "helm upgrade x --set image.tag=v2 --set db.password=hunter22 "
        "http://u:pw@h:1/p?token=t runner-secret-0123";
    auto id = submit("echo", {{"text", text}}).id;
    auto done = wait_finished(id);
    EXPECT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    EXPECT_EQ(stdout_of(id),
              std::vector<std::string>{"helm upgrade x --set image.tag=v2 --set "
                                       "db.password=REDACTED http://h:1/p?token=REDACTED "
                                       "REDACTED"});
}

TEST_F(JobRunner, FailingRunFailsNamingTheStepAndExitCode) {
    start();
    auto done = wait_finished(submit("fail").id);
    EXPECT_EQ(done.state, core::JobState::kFailed);
    EXPECT_EQ(done.attempt, 1);
    EXPECT_TRUE(contains(done.error, "step 2 (falsify)")) << done.error;
    EXPECT_TRUE(contains(done.error, "exited with code 1")) << done.error;
    EXPECT_EQ(done.step, 2);
    auto kinds = event_kinds();
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), "job.failed"), kinds.end());
}

TEST_F(JobRunner, MissingProgramFailsTheStep) {
    auto settings = test_settings();
    settings.actions.push_back(
        action_of("missing", {run_step({"/nonexistent/aviary-no-such-program"})}));
    start(settings);
    auto done = wait_finished(submit("missing").id);
    EXPECT_EQ(done.state, core::JobState::kFailed);
    EXPECT_TRUE(contains(done.error, "aviary-no-such-program")) << done.error;
}

TEST_F(JobRunner, FailedAttemptsAreRetriedUpToMaxAttempts) {
    start();
    auto id = submit("flaky").id;
    auto done = wait_finished(id);
    EXPECT_EQ(done.state, core::JobState::kFailed);
    EXPECT_EQ(done.attempt, 3);
    EXPECT_EQ(done.max_attempts, 3);
    auto lines = output(id);
    EXPECT_EQ(count_lines(lines, "aviary", "retrying in"), 2U);
    EXPECT_EQ(count_lines(lines, "aviary", "attempt 3 of 3: flaky"), 1U);
    // Output of every attempt is kept, numbered on from the previous one.
    for (std::size_t i = 1; i < lines.size(); ++i) {
        EXPECT_EQ(lines[i].seq, lines[i - 1].seq + 1);
        EXPECT_GE(lines[i].attempt, lines[i - 1].attempt);
    }
    auto kinds = event_kinds();
    EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "job.retrying"), 2);
    EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "job.started"), 3);
}

TEST_F(JobRunner, DestructiveActionIsNotRetried) {
    start();
    auto done = wait_finished(submit("wipe").id);
    EXPECT_EQ(done.state, core::JobState::kFailed);
    EXPECT_EQ(done.attempt, 1);
    EXPECT_TRUE(contains(done.error, "disk on fire")) << done.error;
}

TEST_F(JobRunner, DestructiveActionIsRetriedWhenConfigured) {
    start();
    auto done = wait_finished(submit("wipe-retried").id);
    EXPECT_EQ(done.state, core::JobState::kFailed);
    EXPECT_EQ(done.attempt, 3);
}

TEST_F(JobRunner, TimeoutEndsTheStepsWholeProcessGroup) {
    start();
    auto id = submit("hang-briefly").id;
    auto pgid = wait_for_group(id);
    ASSERT_GT(pgid, 0);
    auto done = wait_finished(id);
    EXPECT_EQ(done.state, core::JobState::kTimedOut);
    EXPECT_TRUE(contains(done.error, "step 1 (run) timed out")) << done.error;
    EXPECT_EQ(done.pgid, 0);
    auto printed = stdout_of(id);
    ASSERT_EQ(printed.size(), 1U) << "the grandchild's pid";
    auto grandchild = static_cast<pid_t>(std::stoi(printed.front()));
    // The background grandchild was ended with its group, not left behind.
    int status = reap(grandchild);
    ASSERT_NE(status, -1) << "grandchild " << grandchild << " outlived its job";
    EXPECT_TRUE(WIFSIGNALED(status));
    EXPECT_TRUE(group_gone(pgid));
    EXPECT_EQ(count_lines(output(id), "aviary", "ending process group"), 1U);
}

TEST_F(JobRunner, CancelEndsARunningJobAndItsGroup) {
    start();
    auto id = submit("hang").id;
    auto pgid = wait_for_group(id);
    ASSERT_GT(pgid, 0);
    // The grandchild's pid is printed before the cancel, so the test can check it is gone.
    wait_until(id, [&](const core::Job&) { return !stdout_of(id).empty(); });
    auto cancelled = engine_->cancel(id, admin_);
    ASSERT_TRUE(cancelled) << cancelled.error().message;
    EXPECT_TRUE(cancelled->state == core::JobState::kCancelling ||
                cancelled->state == core::JobState::kCancelled)
        << core::to_string(cancelled->state);
    EXPECT_TRUE(cancelled->cancel_requested);
    auto done = wait_finished(id);
    EXPECT_EQ(done.state, core::JobState::kCancelled);
    EXPECT_TRUE(contains(done.error, "cancelled during step 1")) << done.error;
    auto grandchild = static_cast<pid_t>(std::stoi(stdout_of(id).front()));
    ASSERT_NE(reap(grandchild), -1) << "grandchild " << grandchild << " outlived its job";
    EXPECT_TRUE(group_gone(pgid));
    auto kinds = event_kinds();
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), "job.cancel_requested"), kinds.end());
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), "job.cancelled"), kinds.end());
}

TEST_F(JobRunner, TimeoutKillsAGroupThatIgnoresTerm) {
    auto settings = test_settings();
    auto stubborn =
        action_of("stubborn", {run_step({"sh", "-c", "trap '' TERM; sleep 30 & echo $!; wait"})});
    stubborn.timeout = 300ms;
    settings.actions.push_back(stubborn);
    start(settings);
    auto id = submit("stubborn").id;
    auto pgid = wait_for_group(id);
    ASSERT_GT(pgid, 0);
    auto done = wait_finished(id);
    EXPECT_EQ(done.state, core::JobState::kTimedOut);
    ASSERT_TRUE(done.started_at && done.finished_at);
    EXPECT_GE(*done.finished_at - *done.started_at, 300ms + settings.kill_grace - 20ms)
        << "SIGKILL came before kill_grace had passed";
    auto printed = stdout_of(id);
    ASSERT_EQ(printed.size(), 1U);
    auto grandchild = static_cast<pid_t>(std::stoi(printed.front()));
    int status = reap(grandchild);
    ASSERT_NE(status, -1) << "grandchild " << grandchild << " outlived its job";
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    EXPECT_TRUE(group_gone(pgid));
}

TEST_F(JobRunner, CancelRightAfterSubmitAlwaysEndsCancelled) {
    start();
    // Each cancel lands somewhere between queued and running: every one must end cancelled
    // with nothing left running.
    for (int i = 0; i < 10; ++i) {
        auto id = submit("hang", {{"n", std::to_string(i)}}).id;
        ASSERT_TRUE(engine_->cancel(id, admin_));
        auto done = wait_finished(id);
        EXPECT_EQ(done.state, core::JobState::kCancelled) << i << ": " << done.error;
        auto printed = stdout_of(id);
        if (!printed.empty()) {
            EXPECT_NE(reap(static_cast<pid_t>(std::stoi(printed.front()))), -1);
        }
    }
    auto active = store_->active_jobs();
    ASSERT_TRUE(active);
    EXPECT_TRUE(active->empty());
}

TEST_F(JobRunner, CancelEndsAChildADriverStarted) {
    start();
    auto id = submit("uninstall").id;
    auto pgid = wait_for_group(id);
    ASSERT_GT(pgid, 0);
    ASSERT_TRUE(engine_->cancel(id, admin_));
    auto done = wait_finished(id);
    EXPECT_EQ(done.state, core::JobState::kCancelled);
    EXPECT_TRUE(group_gone(pgid));
}

TEST_F(JobRunner, OutputIsCappedWithOneTruncationNote) {
    auto settings = test_settings();
    settings.output_max_lines = 20;
    start(settings);
    auto id = submit("count").id;
    auto done = wait_finished(id);
    EXPECT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    auto lines = output(id);
    ASSERT_EQ(lines.size(), 21U);
    for (std::size_t i = 0; i < lines.size(); ++i) {
        EXPECT_EQ(lines[i].seq, static_cast<std::int64_t>(i) + 1);
    }
    EXPECT_EQ(lines.back().stream, "aviary");
    EXPECT_TRUE(contains(lines.back().text, "output truncated")) << lines.back().text;
    EXPECT_TRUE(contains(lines.back().text, "20")) << lines.back().text;
    EXPECT_EQ(count_lines(lines, "aviary", "truncated"), 1U);
    // stdout is what seq printed first, in order.
    auto printed = stdout_of(id);
    ASSERT_FALSE(printed.empty());
    for (std::size_t i = 0; i < printed.size(); ++i) {
        EXPECT_EQ(printed[i], std::to_string(i + 1));
    }
}

TEST_F(JobRunner, OutputCapHoldsAcrossRetriesWithOneNote) {
    auto settings = test_settings();
    settings.output_max_lines = 20;
    auto spam = action_of("spam", {run_step({"sh", "-c", "seq 1 100; exit 1"})});
    spam.max_attempts = 3;
    settings.actions.push_back(spam);
    start(settings);
    auto id = submit("spam").id;
    auto done = wait_finished(id);
    EXPECT_EQ(done.state, core::JobState::kFailed);
    EXPECT_EQ(done.attempt, 3);
    auto lines = output(id);
    EXPECT_EQ(lines.size(), 21U);
    EXPECT_EQ(count_lines(lines, "aviary", "output truncated"), 1U);
}

TEST_F(JobRunner, CancelDuringRetryBackoffEndsTheJob) {
    auto settings = test_settings();
    auto patient = action_of("patient", {run_step({"false"})});
    patient.max_attempts = 3;
    patient.retry_backoff = 30s;
    patient.retry_backoff_max = 60s;
    settings.actions.push_back(patient);
    start(settings);
    auto id = submit("patient").id;
    auto waiting = wait_until(id, [](const core::Job& job) {
        return job.attempt == 1 && job.state == core::JobState::kQueued;
    });
    EXPECT_GT(waiting.run_at, clock_.now() + 10s);
    auto cancelled = engine_->cancel(id, admin_);
    ASSERT_TRUE(cancelled) << cancelled.error().message;
    EXPECT_EQ(cancelled->state, core::JobState::kCancelled);
    EXPECT_EQ(job(id).attempt, 1);
}

TEST_F(JobRunner, DriverStepResultBecomesTheJobsResult) {
    start();
    auto id = submit("upgrade").id;
    auto done = wait_finished(id);
    EXPECT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    EXPECT_EQ(done.result, R"({"fake":true})");
    std::lock_guard lock{fake_.mu};
    ASSERT_EQ(fake_.ops.size(), 1U);
    // image_tag "{{job.id}}" was rendered for the job.
    EXPECT_EQ(fake_.ops.front(), "upgrade lotus-0 " + id);
    EXPECT_EQ(fake_.status["lotus-0"].version, id);
}

TEST_F(JobRunner, NodeOfAnUnknownDriverFailsTheStep) {
    ASSERT_TRUE(fleet_->put_node(core::NodeSpec{.name = "helm-0", .driver = "helm"}, admin_));
    start();
    auto done = wait_finished(submit("upgrade", {}, "helm-0").id);
    EXPECT_EQ(done.state, core::JobState::kFailed);
    EXPECT_TRUE(contains(done.error, "helm")) << done.error;
}

TEST_F(JobRunner, WaitStepWaitsUntilTheHeightAdvances) {
    start();
    auto id = submit("wait-height").id;
    wait_until(id, [](const core::Job& job) { return job.step == 1; });
    EXPECT_EQ(job(id).state, core::JobState::kRunning);
    // The node produces blocks until the step has seen one.
    EXPECT_TRUE(eventually([&] {
        fake_.bump_height("lotus-0");
        return core::is_terminal(job(id).state);
    }));
    auto done = job(id);
    EXPECT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    EXPECT_TRUE(contains(done.result, "\"height\"")) << done.result;
    EXPECT_EQ(count_lines(output(id), "aviary", "is height-advancing"), 1U);
}

TEST_F(JobRunner, WaitStepGivesUpAtItsTimeout) {
    auto settings = test_settings();
    auto wait = action_of("wait-briefly", {StepSpec{.name = "wait",
                                                    .kind = StepKind::kWait,
                                                    .condition = WaitCondition::kHeightAdvancing,
                                                    .interval = 10ms,
                                                    .timeout = 100ms}});
    settings.actions.push_back(wait);
    start(settings);
    auto done = wait_finished(submit("wait-briefly").id);
    EXPECT_EQ(done.state, core::JobState::kTimedOut);
    EXPECT_TRUE(contains(done.error, "step 1 (wait) timed out")) << done.error;
}

TEST(JobRetryDelay, DoublesFromTheBackoffUpToTheCapWithJitter) {
    ActionSpec action;
    action.retry_backoff = 100ms;
    action.retry_backoff_max = 1s;
    for (int i = 0; i < 50; ++i) {
        auto first = retry_delay(action, 1);
        EXPECT_GE(first, 80ms);
        EXPECT_LE(first, 120ms);
        auto third = retry_delay(action, 3);
        EXPECT_GE(third, 320ms);
        EXPECT_LE(third, 480ms);
        auto late = retry_delay(action, 40);
        EXPECT_GE(late, 800ms);
        EXPECT_LE(late, 1s);  // the cap holds after the jitter
    }
}

}  // namespace
}  // namespace aviary::jobs::test
