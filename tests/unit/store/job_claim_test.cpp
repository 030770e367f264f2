#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "job_support.hpp"

namespace aviary::store::test {
namespace {

AVIARY_STORE_SUITE(JobClaims);

using core::ErrorCode;
using core::JobState;

TEST_P(JobClaims, ClaimsTheFirstQueuedJobAndMarksItRunning) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    EXPECT_EQ(claimed(*store, clock.now()), "");  // nothing queued
    submitted(*store, job_of("job-1", "lotus-1", clock.now()));
    submitted(*store, job_of("job-2", "lotus-2", clock.now()));
    clock.advance(2s);
    auto out = store->claim_job(JobClaim{.runner = "run-7", .now = clock.now()});
    ASSERT_TRUE(out) << out.error().message;
    ASSERT_TRUE(*out);
    const auto& job = **out;
    EXPECT_EQ(job.id, "job-1");
    EXPECT_EQ(job.state, JobState::kRunning);
    EXPECT_EQ(job.attempt, 1);
    EXPECT_EQ(job.started_at, clock.now());
    EXPECT_EQ(job.heartbeat_at, clock.now());
    EXPECT_EQ(job.runner, "run-7");
    EXPECT_EQ(job.step, 0);
    EXPECT_EQ(job.position, 0);
    EXPECT_EQ(stored(*store, "job-1").state, JobState::kRunning);
    auto events = store->events(all_events("lotus-1"));
    ASSERT_TRUE(events);
    EXPECT_EQ(events->front().kind, "job.started");
    EXPECT_NE(events->front().before.find("\"state\":\"queued\""), std::string::npos);
    EXPECT_NE(events->front().after.find("\"state\":\"running\""), std::string::npos);

    EXPECT_EQ(claimed(*store, clock.now()), "job-2");
    EXPECT_EQ(claimed(*store, clock.now()), "");
}

TEST_P(JobClaims, ExclusiveJobsOfOneNodeRunOneAtATimeInStoreOrder) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("a1", "lotus-0", clock.now()));
    submitted(*store, job_of("a2", "lotus-0", clock.now()));
    submitted(*store, job_of("a3", "lotus-0", clock.now()));
    submitted(*store, job_of("b1", "lotus-1", clock.now()));
    EXPECT_EQ(claimed(*store, clock.now()), "a1");
    EXPECT_EQ(claimed(*store, clock.now()), "b1");  // another node runs alongside
    EXPECT_EQ(claimed(*store, clock.now()), "");
    for (std::string next : {"a2", "a3"}) {
        auto running = store->active_jobs();
        ASSERT_TRUE(running);
        auto on_lotus_0 = std::find_if(running->begin(), running->end(),
                                       [](const auto& j) { return j.node == "lotus-0"; });
        ASSERT_NE(on_lotus_0, running->end());
        ASSERT_TRUE(store->finish_job(finish_of(*on_lotus_0, JobState::kSucceeded, clock.now())));
        EXPECT_EQ(claimed(*store, clock.now()), next);
        EXPECT_EQ(claimed(*store, clock.now()), "");
    }
}

TEST_P(JobClaims, CancellingExclusiveJobStillHoldsItsNode) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("a1", "lotus-0", clock.now()));
    submitted(*store, job_of("a2", "lotus-0", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "a1");
    ASSERT_TRUE(store->cancel_job("a1", "bob", clock.now()));
    EXPECT_EQ(claimed(*store, clock.now()), "");
    ASSERT_TRUE(
        store->finish_job(finish_of(stored(*store, "a1"), JobState::kCancelled, clock.now())));
    EXPECT_EQ(claimed(*store, clock.now()), "a2");
}

TEST_P(JobClaims, NonExclusiveJobsRunAlongsideAndDoNotBlock) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("a1", "lotus-0", clock.now()));
    auto status = job_of("s1", "lotus-0", clock.now());
    status.action = "status";
    status.exclusive = false;
    submitted(*store, status);
    auto status2 = status;
    status2.id = "s2";
    submitted(*store, status2);
    submitted(*store, job_of("a2", "lotus-0", clock.now()));
    EXPECT_EQ(claimed(*store, clock.now()), "a1");
    EXPECT_EQ(claimed(*store, clock.now()), "s1");
    EXPECT_EQ(claimed(*store, clock.now()), "s2");
    EXPECT_EQ(claimed(*store, clock.now()), "");  // a2 waits for a1, not for s1 or s2
    ASSERT_TRUE(
        store->finish_job(finish_of(stored(*store, "a1"), JobState::kSucceeded, clock.now())));
    EXPECT_EQ(claimed(*store, clock.now()), "a2");
}

TEST_P(JobClaims, FutureRunAtIsSkippedAndHoldsBackLaterExclusiveJobsOfItsNode) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto later = job_of("a1", "lotus-0", clock.now());
    later.run_at = clock.now() + 10s;
    submitted(*store, later);
    submitted(*store, job_of("a2", "lotus-0", clock.now()));
    submitted(*store, job_of("b1", "lotus-1", clock.now()));
    EXPECT_EQ(claimed(*store, clock.now()), "b1");
    EXPECT_EQ(claimed(*store, clock.now()), "");
    clock.advance(10s);
    EXPECT_EQ(claimed(*store, clock.now()), "a1");
    EXPECT_EQ(claimed(*store, clock.now()), "");
    ASSERT_TRUE(
        store->finish_job(finish_of(stored(*store, "a1"), JobState::kSucceeded, clock.now())));
    EXPECT_EQ(claimed(*store, clock.now()), "a2");
}

TEST_P(JobClaims, PausedQueueIsSkippedUntilResumed) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto paused = job_of("p1", "lotus-0", clock.now());
    paused.queue = "upgrades";
    submitted(*store, paused);
    submitted(*store, job_of("d1", "lotus-1", clock.now()));
    ASSERT_TRUE(store->set_queue_paused("upgrades", true, "admin", clock.now()));
    EXPECT_EQ(claimed(*store, clock.now()), "d1");
    EXPECT_EQ(claimed(*store, clock.now()), "");
    EXPECT_EQ(stored(*store, "p1").state, JobState::kQueued);
    ASSERT_TRUE(store->set_queue_paused("upgrades", false, "admin", clock.now()));
    EXPECT_EQ(claimed(*store, clock.now()), "p1");
}

TEST_P(JobClaims, ActionAtItsCapIsSkippedWhileOthersRun) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("u1", "lotus-0", clock.now()));
    submitted(*store, job_of("u2", "lotus-1", clock.now()));
    auto restart = job_of("r1", "lotus-2", clock.now());
    restart.action = "restart";
    submitted(*store, restart);
    std::map<std::string, int, std::less<>> caps{{"upgrade", 1}, {"restart", 5}};
    EXPECT_EQ(claimed(*store, clock.now(), caps), "u1");
    EXPECT_EQ(claimed(*store, clock.now(), caps), "r1");  // u2 waits: upgrade is at its cap
    EXPECT_EQ(claimed(*store, clock.now(), caps), "");
    // A cancelling job still runs, so it still counts.
    ASSERT_TRUE(store->cancel_job("u1", "bob", clock.now()));
    EXPECT_EQ(claimed(*store, clock.now(), caps), "");
    ASSERT_TRUE(
        store->finish_job(finish_of(stored(*store, "u1"), JobState::kCancelled, clock.now())));
    EXPECT_EQ(claimed(*store, clock.now(), caps), "u2");
}

TEST_P(JobClaims, ZeroCapHoldsAnActionBack) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("u1", "lotus-0", clock.now()));
    EXPECT_EQ(claimed(*store, clock.now(), {{"upgrade", 0}}), "");
    EXPECT_EQ(claimed(*store, clock.now(), {{"upgrade", 1}}), "u1");
}

TEST_P(JobClaims, RetryWaitsAsQueuedUntilItsTimeAndStartsTheNextAttempt) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-0", clock.now()));
    submitted(*store, job_of("job-2", "lotus-0", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "job-1");
    ASSERT_TRUE(store->update_job_step(JobStepUpdate{.id = "job-1",
                                                     .attempt = 1,
                                                     .step = 2,
                                                     .step_name = "wait",
                                                     .pgid = 55,
                                                     .now = clock.now()}));
    auto finish = finish_of(stored(*store, "job-1"), JobState::kQueued, clock.now());
    finish.retry_at = clock.now() + 10s;
    finish.error = "step 2 (wait) timed out";
    auto retrying = store->finish_job(finish);
    ASSERT_TRUE(retrying) << retrying.error().message;
    EXPECT_EQ(retrying->state, JobState::kQueued);
    EXPECT_EQ(retrying->run_at, clock.now() + 10s);
    EXPECT_EQ(retrying->attempt, 1);
    EXPECT_EQ(retrying->step, 0);
    EXPECT_EQ(retrying->pgid, 0);
    EXPECT_FALSE(retrying->finished_at);
    EXPECT_EQ(retrying->error, "step 2 (wait) timed out");
    EXPECT_EQ(retrying->position, 1);  // still first in line for its node
    EXPECT_EQ(kinds(*store, "lotus-0").front(), "job.retrying");

    // The retry keeps its place: job-2 behind it on the same node waits too.
    EXPECT_EQ(claimed(*store, clock.now()), "");
    clock.advance(10s);
    auto next = store->claim_job(JobClaim{.runner = "run-1", .now = clock.now()});
    ASSERT_TRUE(next);
    ASSERT_TRUE(*next);
    EXPECT_EQ((*next)->id, "job-1");
    EXPECT_EQ((*next)->attempt, 2);
    EXPECT_EQ((*next)->started_at, clock.now());
    EXPECT_TRUE((*next)->error.empty());

    // The first attempt can no longer finish it.
    auto stale = store->finish_job(finish_of(*retrying, JobState::kSucceeded, clock.now()));
    ASSERT_FALSE(stale);
    EXPECT_EQ(stale.error().code, ErrorCode::kBusy);
    ASSERT_TRUE(store->finish_job(finish_of(**next, JobState::kSucceeded, clock.now())));
    EXPECT_EQ(claimed(*store, clock.now()), "job-2");
}

TEST_P(JobClaims, ManyJobsAreClaimedInOrderWithoutRepeats) {
    core::ManualClock clock;
    auto store = lotus_store(clock, 4);
    ASSERT_TRUE(store);
    for (int i = 0; i < 40; ++i) {
        submitted(*store, job_of("job-" + std::to_string(i), "lotus-" + std::to_string(i % 4),
                                 clock.now()));
    }
    std::vector<std::string> order;
    while (true) {
        auto running = store->active_jobs();
        ASSERT_TRUE(running);
        for (const auto& job : *running) {
            ASSERT_TRUE(store->finish_job(finish_of(job, JobState::kSucceeded, clock.now())));
        }
        auto id = claimed(*store, clock.now());
        if (id.empty()) {
            break;
        }
        order.push_back(id);
    }
    ASSERT_EQ(order.size(), 40U);
    for (int i = 0; i < 40; ++i) {
        EXPECT_EQ(order[i], "job-" + std::to_string(i));
    }
    auto counts = store->job_counts();
    ASSERT_TRUE(counts);
    EXPECT_EQ(counts->queued, 0);
    EXPECT_EQ(counts->running, 0);
}

TEST_P(JobClaims, ClaimJobsFillsSeveralSlotsInOneTransactionByTheSameRules) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("a1", "lotus-0", clock.now()));
    submitted(*store, job_of("a2", "lotus-0", clock.now()));  // waits for a1: same node
    submitted(*store, job_of("b1", "lotus-1", clock.now()));
    submitted(*store, job_of("c1", "lotus-2", clock.now()));
    auto commits_before = store->stats().commits;
    auto out = store->claim_jobs(JobClaim{.runner = "run-1", .now = clock.now()}, 5);
    ASSERT_TRUE(out) << out.error().message;
    std::vector<std::string> ids;
    for (const auto& job : *out) {
        ids.push_back(job.id);
        EXPECT_EQ(job.state, JobState::kRunning);
    }
    EXPECT_EQ(ids, (std::vector<std::string>{"a1", "b1", "c1"}));
    EXPECT_EQ(store->stats().commits, commits_before + 1);
    auto none = store->claim_jobs(JobClaim{.runner = "run-1", .now = clock.now()}, 5);
    ASSERT_TRUE(none);
    EXPECT_TRUE(none->empty());
    auto limited = lotus_store(clock);
    ASSERT_TRUE(limited);
    submitted(*limited, job_of("x1", "lotus-1", clock.now()));
    submitted(*limited, job_of("y1", "lotus-2", clock.now()));
    auto one = limited->claim_jobs(JobClaim{.runner = "run-1", .now = clock.now()}, 1);
    ASSERT_TRUE(one);
    ASSERT_EQ(one->size(), 1u);
    EXPECT_EQ(one->front().id, "x1");
}

TEST_P(JobClaims, FinishCarriesTheLastOutputLinesInTheSameTransaction) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto job = submitted(*store, job_of("j1", "lotus-0", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "j1");
    auto running = stored(*store, "j1");
    auto finish = finish_of(running, JobState::kSucceeded, clock.now());
    finish.output = {core::OutputLine{
        .seq = 1, .at = clock.now(), .stream = "stdout", .text = "done", .attempt = 1, .step = 1}};
    auto done = store->finish_job(finish);
    ASSERT_TRUE(done) << done.error().message;
    auto lines = store->job_output(OutputQuery{.job_id = "j1"});
    ASSERT_TRUE(lines);
    ASSERT_EQ(lines->size(), 1u);
    EXPECT_EQ(lines->front().text, "done");
    // A refused finish (already finished) writes none of its lines.
    finish.output.front().seq = 2;
    finish.output.front().text = "again";
    auto twice = store->finish_job(finish);
    ASSERT_FALSE(twice);
    EXPECT_EQ(twice.error().code, ErrorCode::kBusy);
    auto after = store->last_output_seq("j1");
    ASSERT_TRUE(after);
    EXPECT_EQ(*after, 1);
}

TEST_P(JobClaims, FinishAndClaimHandsTheNodeToItsNextJobInOneCommit) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("j1", "lotus-0", clock.now()));
    submitted(*store, job_of("j2", "lotus-0", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "j1");
    EXPECT_EQ(claimed(*store, clock.now()), "") << "j2 waits for its node";
    auto commits = store->stats().commits;

    auto finish = finish_of(stored(*store, "j1"), JobState::kSucceeded, clock.now());
    auto out = store->finish_and_claim(finish, JobClaim{.runner = "run-1", .now = clock.now()}, 1);
    ASSERT_TRUE(out) << out.error().message;
    EXPECT_EQ(out->job.id, "j1");
    EXPECT_EQ(out->job.state, JobState::kSucceeded);
    ASSERT_EQ(out->claimed.size(), 1u) << "the finish freed the node for the claim after it";
    EXPECT_EQ(out->claimed.front().id, "j2");
    EXPECT_EQ(out->claimed.front().state, JobState::kRunning);
    EXPECT_EQ(store->stats().commits, commits + 1);
    EXPECT_EQ(stored(*store, "j2").state, JobState::kRunning);
}

TEST_P(JobClaims, FinishAndClaimClaimsNothingWhenTheFinishIsRefused) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("j1", "lotus-0", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "j1");
    auto finish = finish_of(stored(*store, "j1"), JobState::kSucceeded, clock.now());
    ASSERT_TRUE(store->finish_job(finish));
    submitted(*store, job_of("j2", "lotus-1", clock.now()));

    auto again =
        store->finish_and_claim(finish, JobClaim{.runner = "run-1", .now = clock.now()}, 1);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, ErrorCode::kBusy);
    EXPECT_EQ(stored(*store, "j2").state, JobState::kQueued);
}

TEST_P(JobClaims, SubmitAndClaimStartsTheJobInTheSubmissionsCommit) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto commits = store->stats().commits;
    auto out = store->submit_and_claim(submit_of(job_of("j1", "lotus-0", clock.now())),
                                       JobClaim{.runner = "run-1", .now = clock.now()}, 1);
    ASSERT_TRUE(out) << out.error().message;
    EXPECT_EQ(out->submitted.job.id, "j1");
    EXPECT_EQ(out->submitted.job.state, JobState::kQueued) << "as submitted, before the claim";
    ASSERT_EQ(out->claimed.size(), 1u);
    EXPECT_EQ(out->claimed.front().id, "j1");
    EXPECT_EQ(out->claimed.front().state, JobState::kRunning);
    EXPECT_EQ(out->claimed.front().attempt, 1);
    EXPECT_EQ(store->stats().commits, commits + 1);
}

core::Result<JobSubmittedAndClaimed> submit_and_claim_async(Store& store,
                                                            JobSubmit submit,
                                                            JobClaim claim,
                                                            int max) {
    return wait_for_answer<core::Result<JobSubmittedAndClaimed>>([&](auto done) {
        store.submit_and_claim_async(std::move(submit), std::move(claim), max, std::move(done));
    });
}

TEST_P(JobClaims, SubmitAndClaimAsyncAnswersAfterItsOneCommit) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    auto commits = store->stats().commits;
    JobClaim claim{.runner = "run-1", .now = clock.now()};
    auto first =
        submit_and_claim_async(*store, submit_of(job_of("j1", "lotus-0", clock.now())), claim, 1);
    ASSERT_TRUE(first) << first.error().message;
    ASSERT_EQ(first->claimed.size(), 1U);
    EXPECT_EQ(first->claimed.front().id, "j1");
    EXPECT_EQ(stored(*store, "j1").state, JobState::kRunning) << "durable when answered";
    EXPECT_EQ(store->stats().commits, commits + 1);

    // No free worker (max 0): the job is queued and nothing is claimed, not even a runnable one.
    auto second =
        submit_and_claim_async(*store, submit_of(job_of("j2", "lotus-1", clock.now())), claim, 0);
    ASSERT_TRUE(second) << second.error().message;
    EXPECT_TRUE(second->claimed.empty());
    EXPECT_EQ(stored(*store, "j2").state, JobState::kQueued);

    auto again =
        submit_and_claim_async(*store, submit_of(job_of("j2", "lotus-1", clock.now())), claim, 1);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
    EXPECT_EQ(stored(*store, "j2").state, JobState::kQueued) << "the failed submit claimed nothing";
}

TEST_P(JobClaims, SubmitRefusesAMutatingJobOnANodeInMaintenanceInItsOwnTransaction) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->start_maintenance("lotus-0", "disk swap", "admin", clock.now()));
    auto events = store->events(EventQuery{.limit = 100});
    ASSERT_TRUE(events) << events.error().message;

    auto mutating = submit_of(job_of("j1", "lotus-0", clock.now()));
    mutating.refuse_in_maintenance = true;
    auto refused = store->submit_job(mutating);
    ASSERT_TRUE(refused) << refused.error().message;
    EXPECT_TRUE(refused->refused);
    ASSERT_TRUE(refused->maintenance_reason.has_value());
    EXPECT_EQ(*refused->maintenance_reason, "disk swap");
    EXPECT_EQ(store->job("j1").error().code, ErrorCode::kNotFound) << "nothing written";
    auto after = store->events(EventQuery{.limit = 100});
    ASSERT_TRUE(after) << after.error().message;
    EXPECT_EQ(after->size(), events->size()) << "no event either";

    // Read-only work is not refused, and neither is anything once the node is back.
    auto reading = submit_of(job_of("s1", "lotus-0", clock.now()));
    reading.job.exclusive = false;
    auto taken = store->submit_job(reading);
    ASSERT_TRUE(taken) << taken.error().message;
    EXPECT_FALSE(taken->refused);
    ASSERT_TRUE(store->end_maintenance("lotus-0", "admin", clock.now()));
    auto later = store->submit_job(mutating);
    ASSERT_TRUE(later) << later.error().message;
    EXPECT_FALSE(later->refused);
    EXPECT_FALSE(later->maintenance_reason.has_value());
    EXPECT_EQ(stored(*store, "j1").state, JobState::kQueued);
}

/// Every stored field of two views of one job.
void expect_same_job(const core::Job& returned, const core::Job& stored) {
    EXPECT_EQ(returned.id, stored.id);
    EXPECT_EQ(returned.state, stored.state);
    EXPECT_EQ(returned.attempt, stored.attempt);
    EXPECT_EQ(returned.step, stored.step);
    EXPECT_EQ(returned.step_name, stored.step_name);
    EXPECT_EQ(returned.cancel_requested, stored.cancel_requested);
    EXPECT_EQ(returned.created_at, stored.created_at);
    EXPECT_EQ(returned.run_at, stored.run_at);
    EXPECT_EQ(returned.started_at, stored.started_at);
    EXPECT_EQ(returned.finished_at, stored.finished_at);
    EXPECT_EQ(returned.heartbeat_at, stored.heartbeat_at);
    EXPECT_EQ(returned.runner, stored.runner);
    EXPECT_EQ(returned.pgid, stored.pgid);
    EXPECT_EQ(returned.pgid_start_ticks, stored.pgid_start_ticks);
    EXPECT_EQ(returned.result, stored.result);
    EXPECT_EQ(returned.error, stored.error);
    EXPECT_EQ(returned.seq, stored.seq);
    EXPECT_EQ(returned.position, stored.position);
    EXPECT_EQ(returned.params, stored.params);
    EXPECT_EQ(returned.exclusive, stored.exclusive);
}

TEST_P(JobClaims, AClaimAndAFinishReturnTheJobAsStored) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("j1", "lotus-0", clock.now()));
    submitted(*store, job_of("j2", "lotus-0", clock.now()));  // queued behind j1: position 2
    ASSERT_EQ(stored(*store, "j2").position, 2);
    clock.advance(1s);
    auto first = store->claim_job(JobClaim{.runner = "run-1", .now = clock.now()});
    ASSERT_TRUE(first && *first) << (first ? "none claimed" : first.error().message);
    expect_same_job(**first, stored(*store, "j1"));

    clock.advance(1s);
    ASSERT_TRUE(store->update_job_step(JobStepUpdate{.id = "j1",
                                                     .attempt = 1,
                                                     .step = 1,
                                                     .step_name = "upgrade",
                                                     .pgid = 4242,
                                                     .pgid_start_ticks = 7,
                                                     .now = clock.now()}));
    clock.advance(1s);
    auto finish = finish_of(stored(*store, "j1"), JobState::kFailed, clock.now());
    finish.result = R"({"height":7})";
    finish.error = "exit status 2";
    auto both = store->finish_and_claim(finish, JobClaim{.runner = "run-2", .now = clock.now()}, 1);
    ASSERT_TRUE(both) << both.error().message;
    expect_same_job(both->job, stored(*store, "j1"));
    ASSERT_EQ(both->claimed.size(), 1U);
    expect_same_job(both->claimed.front(), stored(*store, "j2"));
    EXPECT_EQ(both->claimed.front().position, 0) << "running: no queue position";

    // A finish that empties the result stores (and returns) an empty object.
    clock.advance(1s);
    auto second = finish_of(stored(*store, "j2"), JobState::kSucceeded, clock.now());
    second.result.clear();
    auto done = store->finish_job(second);
    ASSERT_TRUE(done) << done.error().message;
    expect_same_job(*done, stored(*store, "j2"));
    EXPECT_EQ(done->result, "{}");
}

TEST_P(JobClaims, SubmitAndClaimLeavesABlockedJobQueued) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("j1", "lotus-0", clock.now()));
    ASSERT_EQ(claimed(*store, clock.now()), "j1");
    auto out = store->submit_and_claim(submit_of(job_of("j2", "lotus-0", clock.now())),
                                       JobClaim{.runner = "run-1", .now = clock.now()}, 1);
    ASSERT_TRUE(out) << out.error().message;
    EXPECT_TRUE(out->claimed.empty()) << "lotus-0 is busy with j1";
    EXPECT_EQ(stored(*store, "j2").state, JobState::kQueued);
}

TEST_P(JobClaims, ExclusiveJobOfANodeInMaintenanceStaysQueuedOnEveryClaimPath) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    // Queued before maintenance began: admission saw the node in service.
    submitted(*store, job_of("j1", "lotus-0", clock.now()));
    auto status = job_of("s1", "lotus-0", clock.now());
    status.exclusive = false;  // read-only work still runs on a node out of service
    submitted(*store, status);
    ASSERT_TRUE(store->start_maintenance("lotus-0", "disk swap", "admin", clock.now()));
    JobClaim claim{.runner = "run-1", .now = clock.now()};
    EXPECT_EQ(claimed(*store, clock.now()), "s1");
    auto many = store->claim_jobs(claim, 4);
    ASSERT_TRUE(many) << many.error().message;
    EXPECT_TRUE(many->empty());
    auto both = store->submit_and_claim(submit_of(job_of("j2", "lotus-1", clock.now())), claim, 4);
    ASSERT_TRUE(both) << both.error().message;
    ASSERT_EQ(both->claimed.size(), 1U);
    EXPECT_EQ(both->claimed.front().id, "j2");
    auto finished = store->finish_and_claim(
        finish_of(both->claimed.front(), JobState::kSucceeded, clock.now()), claim, 4);
    ASSERT_TRUE(finished) << finished.error().message;
    EXPECT_TRUE(finished->claimed.empty());
    EXPECT_EQ(stored(*store, "j1").state, JobState::kQueued);

    ASSERT_TRUE(store->end_maintenance("lotus-0", "admin", clock.now()));
    EXPECT_EQ(claimed(*store, clock.now()), "j1");
}

}  // namespace
}  // namespace aviary::store::test
