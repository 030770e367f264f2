#include <gtest/gtest.h>

#include <algorithm>

#include "job_support.hpp"

namespace aviary::store::test {
namespace {

AVIARY_STORE_SUITE(Jobs);

using core::ErrorCode;
using core::JobState;

// --- submit ---------------------------------------------------------------------------------

TEST_P(Jobs, SubmitInsertsAQueuedJobAndRecordsIt) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto job = job_of("job-1", "lotus-1", clock.now());
    job.owner = "alice";
    job.unique_key = "upgrade/lotus-1/v2.0.0";
    auto queued = submitted(*store, job);
    EXPECT_EQ(queued.id, "job-1");
    EXPECT_EQ(queued.state, JobState::kQueued);
    EXPECT_EQ(queued.attempt, 0);
    EXPECT_GT(queued.seq, 0);
    EXPECT_EQ(queued.position, 1);
    EXPECT_EQ(queued.params, (core::Params{{"image_tag", "v2.0.0"}}));
    EXPECT_EQ(queued.queue, "default");
    EXPECT_EQ(queued.max_attempts, 3);
    EXPECT_EQ(queued.steps, 2);
    EXPECT_EQ(queued.created_at, clock.now());
    EXPECT_FALSE(queued.started_at);
    EXPECT_FALSE(queued.finished_at);
    EXPECT_EQ(queued.result, "{}");

    auto again = stored(*store, "job-1");
    EXPECT_EQ(again.seq, queued.seq);
    EXPECT_EQ(again.unique_key, "upgrade/lotus-1/v2.0.0");
    EXPECT_EQ(again.requester, "alice");

    auto events = store->events(all_events("lotus-1"));
    ASSERT_TRUE(events);
    ASSERT_FALSE(events->empty());
    const auto& event = events->front();
    EXPECT_EQ(event.kind, "job.queued");
    EXPECT_EQ(event.actor, "alice");
    EXPECT_EQ(event.before, "{}");
    EXPECT_EQ(event.after,
              "{\"id\":\"job-1\",\"action\":\"upgrade\",\"node\":\"lotus-1\","
              "\"params\":{\"image_tag\":\"v2.0.0\"},\"state\":\"queued\",\"owner\":\"alice\","
              "\"lease_id\":\"\",\"attempt\":0}");
}

TEST_P(Jobs, SubmitForAnUnknownNodeIsNotFound) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto out = store->submit_job(submit_of(job_of("job-1", "lotus-9", clock.now())));
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().code, ErrorCode::kNotFound);
    EXPECT_EQ(out.error().message, "unknown node lotus-9");
}

TEST_P(Jobs, SubmitWithAnIdInUseIsAlreadyExists) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-1", clock.now()));
    auto out = store->submit_job(submit_of(job_of("job-1", "lotus-2", clock.now())));
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().code, ErrorCode::kAlreadyExists);
    EXPECT_EQ(out.error().message, "job job-1 already exists");
}

TEST_P(Jobs, SameUniqueKeyReturnsTheActiveJobAndANewOneOnceItFinished) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto first = job_of("job-1", "lotus-1", clock.now());
    first.unique_key = "k";
    submitted(*store, first);
    auto second = first;
    second.id = "job-2";
    auto duplicate = store->submit_job(submit_of(second));
    ASSERT_TRUE(duplicate) << duplicate.error().message;
    EXPECT_TRUE(duplicate->duplicate);
    EXPECT_EQ(duplicate->job.id, "job-1");

    // Still the first while it runs.
    ASSERT_EQ(claimed(*store, clock.now()), "job-1");
    duplicate = store->submit_job(submit_of(second));
    ASSERT_TRUE(duplicate);
    EXPECT_TRUE(duplicate->duplicate);
    EXPECT_EQ(duplicate->job.id, "job-1");
    EXPECT_EQ(duplicate->job.state, JobState::kRunning);

    auto running = stored(*store, "job-1");
    ASSERT_TRUE(store->finish_job(finish_of(running, JobState::kSucceeded, clock.now())));
    auto fresh = store->submit_job(submit_of(second));
    ASSERT_TRUE(fresh) << fresh.error().message;
    EXPECT_FALSE(fresh->duplicate);
    EXPECT_EQ(fresh->job.id, "job-2");

    auto all = store->jobs(JobQuery{});
    ASSERT_TRUE(all);
    EXPECT_EQ(all->size(), 2U);
    auto events = kinds(*store, "lotus-1");
    EXPECT_EQ(std::count(events.begin(), events.end(), "job.queued"), 2);
}

TEST_P(Jobs, ImplicitAcquireLeasesTheNodeInTheSameTransaction) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto submit = submit_of(job_of("job-1", "lotus-1", clock.now()));
    submit.job.owner = "alice";
    submit.acquire = lease_of("", "alice", clock.now());
    auto out = store->submit_job(submit);
    ASSERT_TRUE(out) << out.error().message;
    EXPECT_FALSE(out->refused);
    ASSERT_TRUE(out->lease);
    EXPECT_TRUE(out->lease->granted);
    EXPECT_FALSE(out->lease->renewed);
    ASSERT_EQ(out->lease->leases.size(), 1U);
    EXPECT_EQ(out->lease->leases.front().node, "lotus-1");
    EXPECT_EQ(out->job.lease_id, out->lease->leases.front().id);
    EXPECT_EQ(stored(*store, "job-1").lease_id, out->job.lease_id);

    auto node = store->node("lotus-1", clock.now());
    ASSERT_TRUE(node);
    ASSERT_TRUE(node->lease);
    EXPECT_EQ(node->lease->owner, "alice");
    EXPECT_EQ(kinds(*store, "lotus-1"),
              (std::vector<std::string>{"job.queued", "lease.acquired", "node.added"}));

    // The same owner again renews the lease it holds.
    clock.advance(1min);
    submit.job.id = "job-2";
    submit.job.created_at = clock.now();
    submit.acquire = lease_of("lotus-1", "alice", clock.now());
    auto renewed = store->submit_job(submit);
    ASSERT_TRUE(renewed) << renewed.error().message;
    ASSERT_TRUE(renewed->lease);
    EXPECT_TRUE(renewed->lease->renewed);
    EXPECT_EQ(renewed->job.lease_id, out->job.lease_id);
}

TEST_P(Jobs, RefusedImplicitAcquireWritesNothing) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "bob", clock.now())));
    auto before = kinds(*store);
    auto submit = submit_of(job_of("job-1", "lotus-1", clock.now()));
    submit.acquire = lease_of("lotus-1", "alice", clock.now());
    auto out = store->submit_job(submit);
    ASSERT_TRUE(out) << out.error().message;
    EXPECT_TRUE(out->refused);
    ASSERT_EQ(out->refusal.holders.size(), 1U);
    EXPECT_EQ(out->refusal.holders.front().owner, "bob");
    EXPECT_FALSE(out->lease);
    auto jobs = store->jobs(JobQuery{});
    ASSERT_TRUE(jobs);
    EXPECT_TRUE(jobs->empty());
    EXPECT_EQ(kinds(*store), before);
    EXPECT_FALSE(store->job("job-1"));
}

TEST_P(Jobs, RefusedImplicitAcquireUndoesTheWaiterGrantsItMadeOnTheWay) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    GrantLog grants{*store};
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "bob", clock.now(), 1min)));
    queue(*store, waiter_of("carol-ticket", lease_of("lotus-1", "carol", clock.now())));
    clock.advance(2min);  // bob's lease lapses: the next write serves carol first
    auto before = kinds(*store);
    auto submit = submit_of(job_of("job-1", "lotus-1", clock.now()));
    submit.acquire = lease_of("lotus-1", "alice", clock.now());
    auto out = store->submit_job(submit);
    ASSERT_TRUE(out) << out.error().message;
    ASSERT_TRUE(out->refused);
    ASSERT_EQ(out->refusal.holders.size(), 1U);
    EXPECT_EQ(out->refusal.holders.front().owner, "carol");
    // Nothing the refused submission did stays: carol is still waiting, no event, no grant.
    EXPECT_EQ(kinds(*store), before);
    EXPECT_TRUE(grants.flush().empty());
    auto waiter = store->waiter("carol-ticket", clock.now());
    ASSERT_TRUE(waiter);
    EXPECT_EQ(waiter->state, WaiterState::kWaiting);
}

TEST_P(Jobs, ImplicitAcquireOfANodeInMaintenanceFailsAndWritesNothing) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->start_maintenance("lotus-1", "disk", "admin", clock.now()));
    auto submit = submit_of(job_of("job-1", "lotus-1", clock.now()));
    submit.acquire = lease_of("lotus-1", "alice", clock.now());
    auto out = store->submit_job(submit);
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().code, ErrorCode::kUnavailable);
    auto jobs = store->jobs(JobQuery{});
    ASSERT_TRUE(jobs);
    EXPECT_TRUE(jobs->empty());
}

TEST_P(Jobs, RequireUnheldRefusesNamingTheHolderAndLetsTheAllowedHolderThrough) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "bob", clock.now())));
    auto before = kinds(*store);
    auto submit = submit_of(job_of("job-1", "lotus-1", clock.now()));
    submit.require_unheld = true;
    auto out = store->submit_job(submit);
    ASSERT_TRUE(out) << out.error().message;
    EXPECT_TRUE(out->refused);
    ASSERT_EQ(out->refusal.holders.size(), 1U);
    EXPECT_EQ(out->refusal.holders.front().owner, "bob");
    EXPECT_EQ(kinds(*store), before);

    submit.allowed_holder = "carol";
    out = store->submit_job(submit);
    ASSERT_TRUE(out);
    EXPECT_TRUE(out->refused);

    submit.allowed_holder = "bob";
    auto allowed = submitted(*store, submit);
    EXPECT_EQ(allowed.id, "job-1");
    EXPECT_TRUE(allowed.lease_id.empty());
}

TEST_P(Jobs, ACallerTheNodeRefusesIsRefusedEvenWhenTheSameJobIsActive) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto first = submit_of(job_of("job-1", "lotus-1", clock.now()));
    first.require_unheld = true;
    first.allowed_holder = "bob";
    first.job.unique_key = "upgrade|lotus-1|v2";
    ASSERT_TRUE(store->try_lease(lease_of("lotus-1", "bob", clock.now())));
    submitted(*store, first);
    // Carol asks for the very same job on bob's node: refused, not handed bob's job.
    auto second = submit_of(job_of("job-2", "lotus-1", clock.now()));
    second.job.unique_key = "upgrade|lotus-1|v2";
    second.require_unheld = true;
    second.allowed_holder = "carol";
    auto out = store->submit_job(second);
    ASSERT_TRUE(out) << out.error().message;
    EXPECT_TRUE(out->refused);
    EXPECT_FALSE(out->duplicate);
    // Bob asking again gets the first job back.
    second.allowed_holder = "bob";
    out = store->submit_job(second);
    ASSERT_TRUE(out);
    EXPECT_FALSE(out->refused);
    EXPECT_TRUE(out->duplicate);
    EXPECT_EQ(out->job.id, "job-1");
}

TEST_P(Jobs, RequireUnheldOnAFreeOrLapsedNodeLeavesItFree) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->try_lease(lease_of("lotus-2", "bob", clock.now(), 1min)));
    clock.advance(2min);
    for (std::string node : {"lotus-1", "lotus-2"}) {
        auto submit = submit_of(job_of("job-" + node, node, clock.now()));
        submit.require_unheld = true;
        submitted(*store, submit);
        auto stored_node = store->node(node, clock.now());
        ASSERT_TRUE(stored_node);
        EXPECT_EQ(stored_node->state, core::NodeState::kFree) << node;
    }
}

// --- steps, heartbeats, finish ----------------------------------------------------------------

TEST_P(Jobs, StepUpdateRecordsTheStepAndItsProcessGroup) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-1", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "job-1");
    clock.advance(1s);
    JobStepUpdate update{
        .id = "job-1", .attempt = 1, .step = 1, .step_name = "upgrade", .now = clock.now()};
    auto started = store->update_job_step(update);
    ASSERT_TRUE(started) << started.error().message;
    EXPECT_EQ(started->step, 1);
    EXPECT_EQ(started->step_name, "upgrade");
    EXPECT_EQ(started->pgid, 0);
    EXPECT_EQ(started->heartbeat_at, clock.now());
    EXPECT_EQ(kinds(*store, "lotus-1").front(), "job.step");
    auto events_before = kinds(*store);

    update.pgid = 4242;
    update.pgid_start_ticks = 987654321;
    auto spawned = store->update_job_step(update);
    ASSERT_TRUE(spawned) << spawned.error().message;
    EXPECT_EQ(spawned->pgid, 4242);
    EXPECT_EQ(spawned->pgid_start_ticks, 987654321U);
    EXPECT_EQ(kinds(*store), events_before);  // the same step: no event

    update.attempt = 2;
    auto stale = store->update_job_step(update);
    ASSERT_FALSE(stale);
    EXPECT_EQ(stale.error().code, ErrorCode::kBusy);

    ASSERT_TRUE(store->finish_job(finish_of(*spawned, JobState::kSucceeded, clock.now())));
    update.attempt = 1;
    auto finished = store->update_job_step(update);
    ASSERT_FALSE(finished);
    EXPECT_EQ(finished.error().code, ErrorCode::kBusy);
    EXPECT_EQ(finished.error().message, "job job-1 is no longer running (it is succeeded)");

    update.id = "job-9";
    auto unknown = store->update_job_step(update);
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
}

TEST_P(Jobs, HeartbeatMovesOnlyRunningJobsAndRecordsNoEvent) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-1", clock.now()));
    submitted(*store, job_of("job-2", "lotus-1", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "job-1");
    auto events_before = kinds(*store);
    clock.advance(30s);
    ASSERT_TRUE(store->heartbeat_jobs({"job-1", "job-2", "job-9"}, clock.now()));
    EXPECT_EQ(stored(*store, "job-1").heartbeat_at, clock.now());
    EXPECT_FALSE(stored(*store, "job-2").heartbeat_at);
    EXPECT_EQ(kinds(*store), events_before);
    EXPECT_TRUE(store->heartbeat_jobs({}, clock.now()));
}

TEST_P(Jobs, FinishEndsTheAttemptOnceAndRecordsTheOutcome) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-1", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "job-1");
    auto running = stored(*store, "job-1");
    ASSERT_TRUE(store->update_job_step(
        JobStepUpdate{.id = "job-1", .attempt = 1, .step = 1, .pgid = 77, .now = clock.now()}));
    clock.advance(5s);
    auto finish = finish_of(running, JobState::kFailed, clock.now());
    finish.result = R"({"height":"12"})";
    finish.error = "step 1 (upgrade) exited with status 2";
    finish.actor = "run-1";
    auto failed = store->finish_job(finish);
    ASSERT_TRUE(failed) << failed.error().message;
    EXPECT_EQ(failed->state, JobState::kFailed);
    EXPECT_EQ(failed->finished_at, clock.now());
    EXPECT_EQ(failed->pgid, 0);
    EXPECT_EQ(failed->result, R"({"height":"12"})");
    EXPECT_EQ(failed->error, "step 1 (upgrade) exited with status 2");
    auto events = store->events(all_events("lotus-1"));
    ASSERT_TRUE(events);
    EXPECT_EQ(events->front().kind, "job.failed");
    EXPECT_EQ(events->front().actor, "run-1");
    EXPECT_NE(events->front().after.find("\"error\":\"step 1 (upgrade) exited with status 2\""),
              std::string::npos);

    auto twice = store->finish_job(finish_of(running, JobState::kSucceeded, clock.now()));
    ASSERT_FALSE(twice);
    EXPECT_EQ(twice.error().code, ErrorCode::kBusy);
    EXPECT_EQ(twice.error().message, "job job-1 is no longer running (it is failed)");
    EXPECT_EQ(stored(*store, "job-1").state, JobState::kFailed);
}

TEST_P(Jobs, FinishOfAnotherAttemptIsBusyAndABadStateIsInvalid) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-1", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "job-1");
    auto running = stored(*store, "job-1");
    auto stale = finish_of(running, JobState::kSucceeded, clock.now());
    stale.attempt = 2;
    auto out = store->finish_job(stale);
    ASSERT_FALSE(out);
    EXPECT_EQ(out.error().code, ErrorCode::kBusy);
    EXPECT_EQ(out.error().message, "job job-1 attempt 2 is no longer running (attempt 1 is)");

    auto not_an_end = store->finish_job(finish_of(running, JobState::kRunning, clock.now()));
    ASSERT_FALSE(not_an_end);
    EXPECT_EQ(not_an_end.error().code, ErrorCode::kInvalidArgument);
    auto retry_without_time = store->finish_job(finish_of(running, JobState::kQueued, clock.now()));
    ASSERT_FALSE(retry_without_time);
    EXPECT_EQ(retry_without_time.error().code, ErrorCode::kInvalidArgument);

    auto unknown = running;
    unknown.id = "job-9";
    auto missing = store->finish_job(finish_of(unknown, JobState::kSucceeded, clock.now()));
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
    EXPECT_EQ(stored(*store, "job-1").state, JobState::kRunning);
}

TEST_P(Jobs, FinishWithAnEventKindRecordsThatKind) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-1", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "job-1");
    auto finish = finish_of(stored(*store, "job-1"), JobState::kFailed, clock.now());
    finish.event_kind = "job.rescued";
    finish.error = "interrupted: serve restarted";
    ASSERT_TRUE(store->finish_job(finish));
    auto events = store->events(all_events("lotus-1"));
    ASSERT_TRUE(events);
    EXPECT_EQ(events->front().kind, "job.rescued");
    EXPECT_EQ(events->front().actor, "aviary");
}

// --- cancel ---------------------------------------------------------------------------------

TEST_P(Jobs, CancelOfAQueuedJobEndsItAtOnce) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-1", clock.now()));
    clock.advance(1s);
    auto cancelled = store->cancel_job("job-1", "bob", clock.now());
    ASSERT_TRUE(cancelled) << cancelled.error().message;
    EXPECT_EQ(cancelled->state, JobState::kCancelled);
    EXPECT_EQ(cancelled->finished_at, clock.now());
    EXPECT_EQ(cancelled->error, "cancelled by bob");
    EXPECT_EQ(cancelled->position, 0);
    auto events = store->events(all_events("lotus-1"));
    ASSERT_TRUE(events);
    EXPECT_EQ(events->front().kind, "job.cancelled");
    EXPECT_EQ(events->front().actor, "bob");
    EXPECT_EQ(claimed(*store, clock.now()), "");
}

TEST_P(Jobs, CancelOfARunningJobAsksItToStopAndRepeatingChangesNothing) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-1", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "job-1");
    auto cancelling = store->cancel_job("job-1", "bob", clock.now());
    ASSERT_TRUE(cancelling) << cancelling.error().message;
    EXPECT_EQ(cancelling->state, JobState::kCancelling);
    EXPECT_TRUE(cancelling->cancel_requested);
    EXPECT_FALSE(cancelling->finished_at);
    EXPECT_EQ(kinds(*store, "lotus-1").front(), "job.cancel_requested");
    auto events_before = kinds(*store);

    auto again = store->cancel_job("job-1", "carol", clock.now());
    ASSERT_TRUE(again);
    EXPECT_EQ(again->state, JobState::kCancelling);
    EXPECT_EQ(kinds(*store), events_before);

    // The running attempt still ends it (guarded by attempt, as while running).
    auto cancelled = store->finish_job(finish_of(*again, JobState::kCancelled, clock.now()));
    ASSERT_TRUE(cancelled) << cancelled.error().message;
    EXPECT_EQ(cancelled->state, JobState::kCancelled);
    EXPECT_TRUE(cancelled->cancel_requested);
    EXPECT_EQ(kinds(*store, "lotus-1").front(), "job.cancelled");
}

TEST_P(Jobs, CancelOfAFinishedJobNamesItsStateAndAnUnknownOneIsNotFound) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-1", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "job-1");
    ASSERT_TRUE(
        store->finish_job(finish_of(stored(*store, "job-1"), JobState::kSucceeded, clock.now())));
    auto finished = store->cancel_job("job-1", "bob", clock.now());
    ASSERT_FALSE(finished);
    EXPECT_EQ(finished.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(finished.error().message, "job job-1 already succeeded");
    auto unknown = store->cancel_job("job-9", "bob", clock.now());
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
    EXPECT_EQ(unknown.error().message, "job job-9 not found");
}

TEST_P(Jobs, CancelRequestSurvivesCloseAndReopen) {
    TempDir dir;
    core::ManualClock clock;
    {
        auto store = open_store(file_settings(dir));
        ASSERT_TRUE(store);
        ASSERT_TRUE(store->reconcile_nodes(lotus_nodes(2), "config", clock.now()));
        submitted(*store, job_of("job-1", "lotus-1", clock.now()));
        ASSERT_EQ(claimed(*store, clock.now()), "job-1");
        ASSERT_TRUE(store->cancel_job("job-1", "bob", clock.now()));
    }
    auto store = open_store(file_settings(dir));
    ASSERT_TRUE(store);
    auto active = store->active_jobs();
    ASSERT_TRUE(active);
    ASSERT_EQ(active->size(), 1U);
    EXPECT_EQ(active->front().state, JobState::kCancelling);
    EXPECT_TRUE(active->front().cancel_requested);
}

// --- reads ----------------------------------------------------------------------------------

TEST_P(Jobs, PositionsCountQueuedExclusiveJobsAheadOnTheSameNode) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("a1", "lotus-0", clock.now()));
    submitted(*store, job_of("b1", "lotus-1", clock.now()));
    submitted(*store, job_of("a2", "lotus-0", clock.now()));
    auto status = job_of("s1", "lotus-0", clock.now());
    status.exclusive = false;
    submitted(*store, status);
    auto a3 = submitted(*store, job_of("a3", "lotus-0", clock.now()));
    EXPECT_EQ(a3.position, 3);
    EXPECT_EQ(stored(*store, "a1").position, 1);
    EXPECT_EQ(stored(*store, "a2").position, 2);
    EXPECT_EQ(stored(*store, "b1").position, 1);
    EXPECT_EQ(stored(*store, "s1").position, 0);

    ASSERT_EQ(claimed(*store, clock.now()), "a1");
    EXPECT_EQ(stored(*store, "a1").position, 0);
    EXPECT_EQ(stored(*store, "a2").position, 1);
    auto listed = store->jobs(JobQuery{.node = "lotus-0"});
    ASSERT_TRUE(listed);
    ASSERT_EQ(listed->size(), 4U);
    EXPECT_EQ(listed->front().id, "a3");
    EXPECT_EQ(listed->front().position, 2);

    auto missing = store->job("nope");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_P(Jobs, ListIsNewestFirstWithFiltersAndACursor) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    for (int i = 1; i <= 5; ++i) {
        submitted(*store, job_of("job-" + std::to_string(i), i % 2 == 0 ? "lotus-2" : "lotus-1",
                                 clock.now()));
    }
    ASSERT_EQ(claimed(*store, clock.now()), "job-1");
    auto ids = [&](const JobQuery& query) {
        std::vector<std::string> out;
        auto jobs = store->jobs(query);
        EXPECT_TRUE(jobs) << jobs.error().message;
        if (jobs) {
            for (const auto& job : *jobs) {
                out.push_back(job.id);
            }
        }
        return out;
    };
    using Ids = std::vector<std::string>;
    EXPECT_EQ(ids(JobQuery{}), (Ids{"job-5", "job-4", "job-3", "job-2", "job-1"}));
    EXPECT_EQ(ids(JobQuery{.node = "lotus-1"}), (Ids{"job-5", "job-3", "job-1"}));
    EXPECT_EQ(ids(JobQuery{.state = JobState::kRunning}), (Ids{"job-1"}));
    EXPECT_EQ(ids(JobQuery{.node = "lotus-2", .state = JobState::kQueued}),
              (Ids{"job-4", "job-2"}));
    auto page = store->jobs(JobQuery{.limit = 2});
    ASSERT_TRUE(page);
    ASSERT_EQ(page->size(), 2U);
    EXPECT_EQ(ids(JobQuery{.before_seq = page->back().seq, .limit = 2}), (Ids{"job-3", "job-2"}));
    EXPECT_EQ(ids(JobQuery{.limit = 0}).size(), 1U);  // clamped to at least one
}

TEST_P(Jobs, ActiveJobsAreTheRunningAndCancellingOnesOldestFirst) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-0", clock.now()));
    submitted(*store, job_of("job-2", "lotus-1", clock.now()));
    submitted(*store, job_of("job-3", "lotus-2", clock.now()));
    submitted(*store, job_of("job-4", "lotus-2", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "job-1");
    ASSERT_EQ(claimed(*store, clock.now()), "job-2");
    ASSERT_EQ(claimed(*store, clock.now()), "job-3");
    ASSERT_TRUE(store->cancel_job("job-1", "bob", clock.now()));
    ASSERT_TRUE(
        store->finish_job(finish_of(stored(*store, "job-2"), JobState::kSucceeded, clock.now())));
    auto active = store->active_jobs();
    ASSERT_TRUE(active);
    ASSERT_EQ(active->size(), 2U);
    EXPECT_EQ((*active)[0].id, "job-1");
    EXPECT_EQ((*active)[0].state, JobState::kCancelling);
    EXPECT_EQ((*active)[1].id, "job-3");
}

TEST_P(Jobs, CountsShowQueueDepthRunningAndTheOldestQueued) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto empty = store->job_counts();
    ASSERT_TRUE(empty);
    EXPECT_EQ(empty->queued, 0);
    EXPECT_EQ(empty->running, 0);
    EXPECT_FALSE(empty->oldest_queued);
    auto first = clock.now();
    submitted(*store, job_of("job-1", "lotus-0", clock.now()));
    clock.advance(1s);
    submitted(*store, job_of("job-2", "lotus-1", clock.now()));
    clock.advance(1s);
    submitted(*store, job_of("job-3", "lotus-2", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "job-1");
    ASSERT_EQ(claimed(*store, clock.now()), "job-2");
    ASSERT_TRUE(store->cancel_job("job-2", "bob", clock.now()));
    auto counts = store->job_counts();
    ASSERT_TRUE(counts);
    EXPECT_EQ(counts->queued, 1);
    EXPECT_EQ(counts->running, 2);
    EXPECT_EQ(counts->oldest_queued, first + 2s);
}

// --- output ---------------------------------------------------------------------------------

std::vector<core::OutputLine> lines_from(int first, int last, core::TimePoint at) {
    std::vector<core::OutputLine> lines;
    for (int seq = first; seq <= last; ++seq) {
        lines.push_back(core::OutputLine{.seq = seq,
                                         .at = at,
                                         .stream = seq % 3 == 0 ? "stderr" : "stdout",
                                         .text = "line " + std::to_string(seq),
                                         .attempt = 1,
                                         .step = 1});
    }
    return lines;
}

std::vector<std::int64_t> seqs(Store& store, OutputQuery query) {
    std::vector<std::int64_t> out;
    auto lines = store.job_output(query);
    EXPECT_TRUE(lines) << lines.error().message;
    if (lines) {
        for (const auto& line : *lines) {
            out.push_back(line.seq);
        }
    }
    return out;
}

TEST_P(Jobs, OutputPagesFromTheEndBackwardsAndFollowsForwards) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-1", clock.now()));
    EXPECT_EQ(*store->last_output_seq("job-1"), 0);
    ASSERT_TRUE(store->append_job_output("job-1", lines_from(1, 4, clock.now())));
    ASSERT_TRUE(store->append_job_output("job-1", lines_from(5, 10, clock.now())));
    EXPECT_EQ(*store->last_output_seq("job-1"), 10);

    using Seqs = std::vector<std::int64_t>;
    EXPECT_EQ(seqs(*store, OutputQuery{.job_id = "job-1", .limit = 3, .newest = true}),
              (Seqs{8, 9, 10}));
    EXPECT_EQ(
        seqs(*store, OutputQuery{.job_id = "job-1", .before_seq = 8, .limit = 3, .newest = true}),
        (Seqs{5, 6, 7}));
    EXPECT_EQ(seqs(*store, OutputQuery{.job_id = "job-1", .after_seq = 7}), (Seqs{8, 9, 10}));
    EXPECT_EQ(seqs(*store, OutputQuery{.job_id = "job-1", .after_seq = 2, .limit = 2}),
              (Seqs{3, 4}));
    EXPECT_EQ(seqs(*store, OutputQuery{.job_id = "job-1", .after_seq = 2, .before_seq = 6}),
              (Seqs{3, 4, 5}));
    EXPECT_TRUE(seqs(*store, OutputQuery{.job_id = "job-1", .after_seq = 10}).empty());

    auto lines = store->job_output(OutputQuery{.job_id = "job-1", .after_seq = 2, .limit = 1});
    ASSERT_TRUE(lines);
    ASSERT_EQ(lines->size(), 1U);
    EXPECT_EQ(lines->front().seq, 3);
    EXPECT_EQ(lines->front().stream, "stderr");
    EXPECT_EQ(lines->front().text, "line 3");
    EXPECT_EQ(lines->front().at, clock.now());
    EXPECT_EQ(lines->front().attempt, 1);
    EXPECT_EQ(lines->front().step, 1);
}

TEST_P(Jobs, OutputOfAnUnknownJobOrARepeatedSeqIsRefused) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-1", clock.now()));
    auto unknown = store->append_job_output("job-9", lines_from(1, 1, clock.now()));
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
    ASSERT_TRUE(store->append_job_output("job-1", lines_from(1, 2, clock.now())));
    // One batch is one write: a repeated seq fails it whole.
    EXPECT_FALSE(store->append_job_output("job-1", lines_from(2, 3, clock.now())));
    EXPECT_EQ(*store->last_output_seq("job-1"), 2);
}

// --- queues, pruning, events ----------------------------------------------------------------

TEST_P(Jobs, QueuesPauseAndResumeOnceEach) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->set_queue_paused("upgrades", true, "admin", clock.now()));
    ASSERT_TRUE(store->set_queue_paused("deploys", true, "admin", clock.now()));
    ASSERT_TRUE(store->set_queue_paused("deploys", true, "admin", clock.now()));
    auto paused = store->paused_queues();
    ASSERT_TRUE(paused);
    EXPECT_EQ(*paused, (std::vector<std::string>{"deploys", "upgrades"}));
    ASSERT_TRUE(store->set_queue_paused("deploys", false, "admin", clock.now()));
    ASSERT_TRUE(store->set_queue_paused("deploys", false, "admin", clock.now()));
    ASSERT_TRUE(store->set_queue_paused("never-paused", false, "admin", clock.now()));
    paused = store->paused_queues();
    ASSERT_TRUE(paused);
    EXPECT_EQ(*paused, (std::vector<std::string>{"upgrades"}));
    auto events = store->events(all_events());
    ASSERT_TRUE(events);
    ASSERT_GE(events->size(), 3U);
    EXPECT_EQ((*events)[0].kind, "queue.resumed");
    EXPECT_EQ((*events)[0].before, R"({"queue":"deploys","paused":true})");
    EXPECT_EQ((*events)[0].after, R"({"queue":"deploys","paused":false})");
    EXPECT_EQ((*events)[0].node, "");
    EXPECT_EQ((*events)[1].kind, "queue.paused");
    EXPECT_EQ((*events)[2].kind, "queue.paused");
    EXPECT_NE((*events)[3].kind, "queue.paused");

    auto unnamed = store->set_queue_paused("", true, "admin", clock.now());
    ASSERT_FALSE(unnamed);
    EXPECT_EQ(unnamed.error().code, ErrorCode::kInvalidArgument);
}

TEST_P(Jobs, PruneDeletesOldFinishedJobsAndTheirOutputOnly) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    for (std::string id : {"old", "recent", "running"}) {
        auto job = job_of(id, "lotus-" + std::to_string(id.size() % 3), clock.now());
        job.exclusive = false;
        submitted(*store, job);
        ASSERT_FALSE(claimed(*store, clock.now()).empty());
        ASSERT_TRUE(store->append_job_output(id, lines_from(1, 3, clock.now())));
    }
    submitted(*store, job_of("queued", "lotus-0", clock.now()));
    ASSERT_TRUE(
        store->finish_job(finish_of(stored(*store, "old"), JobState::kSucceeded, clock.now())));
    clock.advance(1h);
    ASSERT_TRUE(
        store->finish_job(finish_of(stored(*store, "recent"), JobState::kFailed, clock.now())));

    auto pruned = store->prune_jobs(clock.now() - 30min);
    ASSERT_TRUE(pruned) << pruned.error().message;
    EXPECT_EQ(*pruned, 1);
    EXPECT_FALSE(store->job("old"));
    EXPECT_EQ(*store->last_output_seq("old"), 0);
    EXPECT_TRUE(store->job("recent"));
    EXPECT_EQ(*store->last_output_seq("recent"), 3);
    EXPECT_TRUE(store->job("running"));
    EXPECT_EQ(*store->last_output_seq("running"), 3);
    EXPECT_TRUE(store->job("queued"));

    // Far in the future every finished job goes, never an active one.
    pruned = store->prune_jobs(clock.now() + 24h);
    ASSERT_TRUE(pruned);
    EXPECT_EQ(*pruned, 1);
    auto left = store->jobs(JobQuery{});
    ASSERT_TRUE(left);
    EXPECT_EQ(left->size(), 2U);
}

TEST_P(Jobs, RecordEventAppendsItAsGiven) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->record_event(core::Event{.id = 999,
                                                .at = clock.now(),
                                                .actor = "mallory",
                                                .kind = "job.refused",
                                                .node = "lotus-1",
                                                .before = "{}",
                                                .after = R"({"rule":"no-upgrades"})"}));
    auto events = store->events(all_events("lotus-1"));
    ASSERT_TRUE(events);
    const auto& event = events->front();
    EXPECT_NE(event.id, 999);
    EXPECT_EQ(event.at, clock.now());
    EXPECT_EQ(event.actor, "mallory");
    EXPECT_EQ(event.kind, "job.refused");
    EXPECT_EQ(event.after, R"({"rule":"no-upgrades"})");
}

TEST_P(Jobs, SubmittedJobSurvivesCloseAndReopen) {
    TempDir dir;
    core::ManualClock clock;
    std::int64_t seq = 0;
    {
        auto store = open_store(file_settings(dir));
        ASSERT_TRUE(store);
        ASSERT_TRUE(store->reconcile_nodes(lotus_nodes(2), "config", clock.now()));
        auto job = job_of("job-1", "lotus-1", clock.now());
        job.unique_key = "k";
        seq = submitted(*store, job).seq;
        ASSERT_TRUE(store->append_job_output("job-1", lines_from(1, 2, clock.now())));
        ASSERT_TRUE(store->set_queue_paused("upgrades", true, "admin", clock.now()));
    }
    auto store = open_store(file_settings(dir));
    ASSERT_TRUE(store);
    auto job = stored(*store, "job-1");
    EXPECT_EQ(job.seq, seq);
    EXPECT_EQ(job.state, JobState::kQueued);
    EXPECT_EQ(job.params, (core::Params{{"image_tag", "v2.0.0"}}));
    EXPECT_EQ(*store->last_output_seq("job-1"), 2);
    EXPECT_EQ(*store->paused_queues(), (std::vector<std::string>{"upgrades"}));
    auto again = job_of("job-2", "lotus-1", clock.now());
    again.unique_key = "k";
    auto duplicate = store->submit_job(submit_of(again));
    ASSERT_TRUE(duplicate);
    EXPECT_TRUE(duplicate->duplicate);
    EXPECT_EQ(claimed(*store, clock.now()), "job-1");
}

TEST_P(Jobs, SucceededDeployingJobRecordsTheTagTheNodeRunsBesideTheConfiguredOne) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto configured = store->node("lotus-1", clock.now());
    ASSERT_TRUE(configured);
    EXPECT_EQ(configured->deployed_tag, "");  // nothing deployed through a job yet
    auto finish_with = [&](std::string id, core::JobState state, std::optional<std::string> tag) {
        submitted(*store, job_of(id, "lotus-1", clock.now()));
        auto job = store->claim_job(JobClaim{.runner = "run-1", .now = clock.now()});
        ASSERT_TRUE(job && *job);
        auto finish = finish_of(**job, state, clock.now());
        finish.deployed_tag = std::move(tag);
        ASSERT_TRUE(store->finish_job(finish));
    };
    auto deployed = [&] {
        auto node = store->node("lotus-1", clock.now());
        EXPECT_TRUE(node);
        return node ? node->deployed_tag : std::string{"?"};
    };
    finish_with("j1", core::JobState::kSucceeded, "v1.2.2");
    EXPECT_EQ(deployed(), "v1.2.2");
    EXPECT_EQ(store->node("lotus-1", clock.now())->spec.image_tag, configured->spec.image_tag);
    finish_with("j2", core::JobState::kFailed, "v9.9.9");  // a failed deploy changes nothing
    EXPECT_EQ(deployed(), "v1.2.2");
    finish_with("j3", core::JobState::kSucceeded, std::nullopt);  // an action that deploys nothing
    EXPECT_EQ(deployed(), "v1.2.2");
    // The config's tag is the config's: reconciling keeps what runs.
    ASSERT_TRUE(store->reconcile_nodes(lotus_nodes(3), "config", clock.now()));
    EXPECT_EQ(deployed(), "v1.2.2");
    finish_with("j4", core::JobState::kSucceeded, "");  // an uninstall
    EXPECT_EQ(deployed(), "");
}

TEST_P(Jobs, FinishAndClaimRecordsTheDeployedTagInItsTransaction) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("j1", "lotus-0", clock.now()));
    auto job = store->claim_job(JobClaim{.runner = "run-1", .now = clock.now()});
    ASSERT_TRUE(job && *job);
    auto finish = finish_of(**job, core::JobState::kSucceeded, clock.now());
    finish.deployed_tag = "v2.0.0";
    ASSERT_TRUE(
        store->finish_and_claim(finish, JobClaim{.runner = "run-1", .now = clock.now()}, 1));
    auto nodes = store->nodes(clock.now());
    ASSERT_TRUE(nodes);
    EXPECT_EQ(nodes->front().spec.name, "lotus-0");
    EXPECT_EQ(nodes->front().deployed_tag, "v2.0.0");
}

TEST_P(Jobs, NextRunAtIsTheEarliestFutureRunOfAQueuedJob) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto none = store->next_job_run_at(clock.now());
    ASSERT_TRUE(none) << none.error().message;
    EXPECT_FALSE(*none);

    auto now_job = job_of("job-now", "lotus-0", clock.now());
    submitted(*store, now_job);
    auto later = job_of("job-later", "lotus-1", clock.now());
    later.run_at = clock.now() + 5min;
    submitted(*store, later);
    auto sooner = job_of("job-sooner", "lotus-2", clock.now());
    sooner.run_at = clock.now() + 2min;
    submitted(*store, sooner);
    auto next = store->next_job_run_at(clock.now());
    ASSERT_TRUE(next) << next.error().message;
    EXPECT_EQ(*next, clock.now() + 2min);
}

}  // namespace
}  // namespace aviary::store::test
