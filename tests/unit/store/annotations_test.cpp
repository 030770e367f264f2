// The annotation outbox: written with the job, marked by the writes that start and end it,
// and worked through by a sender that records posts, patches and failures.
#include <gtest/gtest.h>

#include <chrono>

#include "job_support.hpp"

namespace aviary::store::test {
namespace {

AVIARY_STORE_SUITE(Annotations);

using core::JobState;
using namespace std::chrono_literals;

core::Job annotated(std::string id, std::string node, core::TimePoint now) {
    auto job = job_of(std::move(id), std::move(node), now);
    job.annotation = core::JobAnnotation{.text = "upgrade lotus-1 to v2.0.0",
                                         .tags = {"deploy", "node:lotus-1", "image:v2.0.0"}};
    return job;
}

std::vector<Annotation> due(Store& store, core::TimePoint now) {
    auto out = store.due_annotations(now, 100);
    EXPECT_TRUE(out) << out.error().message;
    return out ? *out : std::vector<Annotation>{};
}

core::Job claim(Store& store, core::TimePoint now) {
    auto out = store.claim_job(JobClaim{.runner = "run-1", .now = now});
    EXPECT_TRUE(out && *out);
    return out && *out ? **out : core::Job{};
}

TEST_P(Annotations, AQueuedJobsAnnotationIsNotDueUntilItStarts) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, annotated("job-1", "lotus-1", clock.now()));
    EXPECT_TRUE(due(*store, clock.now() + 1h).empty());
    auto next = store->next_annotation_at();
    ASSERT_TRUE(next);
    EXPECT_FALSE(*next);
    auto backlog = store->annotation_backlog();
    ASSERT_TRUE(backlog);
    EXPECT_EQ(*backlog, 0);
}

TEST_P(Annotations, TheClaimStartsItAndTheFinishEndsIt) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, annotated("job-1", "lotus-1", clock.now()));
    clock.advance(2s);
    auto started_at = clock.now();
    auto job = claim(*store, started_at);

    auto pending = due(*store, started_at);
    ASSERT_EQ(pending.size(), 1u);
    const auto& start = pending.front();
    EXPECT_EQ(start.job_id, "job-1");
    EXPECT_EQ(start.node, "lotus-1");
    EXPECT_EQ(start.action, "upgrade");
    EXPECT_EQ(start.text, "upgrade lotus-1 to v2.0.0");
    EXPECT_EQ(start.tags, (std::vector<std::string>{"deploy", "node:lotus-1", "image:v2.0.0"}));
    EXPECT_EQ(start.time, started_at);
    EXPECT_FALSE(start.time_end);
    EXPECT_FALSE(start.remote_id);
    EXPECT_FALSE(start.post_in_doubt);
    auto next = store->next_annotation_at();
    ASSERT_TRUE(next && *next);
    EXPECT_EQ(**next, started_at);

    ASSERT_TRUE(store->annotation_posting("job-1"));
    EXPECT_TRUE(due(*store, started_at).front().post_in_doubt);
    ASSERT_TRUE(store->annotation_sent(AnnotationSent{.job_id = "job-1", .remote_id = 41}));
    EXPECT_TRUE(due(*store, started_at).empty()) << "posted, and the job has not ended";

    clock.advance(5s);
    auto finish = finish_of(job, JobState::kFailed, clock.now());
    finish.error = "step 1 (driver upgrade) failed";
    ASSERT_TRUE(store->finish_job(finish));
    pending = due(*store, clock.now());
    ASSERT_EQ(pending.size(), 1u);
    EXPECT_EQ(pending.front().remote_id, 41);
    EXPECT_EQ(pending.front().time_end, clock.now());
    EXPECT_EQ(pending.front().outcome, "failed");
    EXPECT_EQ(pending.front().error, "step 1 (driver upgrade) failed");
    EXPECT_FALSE(pending.front().post_in_doubt);

    ASSERT_TRUE(store->annotation_sent(AnnotationSent{.job_id = "job-1", .end_sent = true}));
    EXPECT_TRUE(due(*store, clock.now()).empty());
    auto backlog = store->annotation_backlog();
    ASSERT_TRUE(backlog);
    EXPECT_EQ(*backlog, 0);
}

TEST_P(Annotations, ARetryKeepsTheFirstStartAndTheRegionOpen) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, annotated("job-1", "lotus-1", clock.now()));
    auto first_start = clock.now();
    auto job = claim(*store, first_start);
    auto retry = finish_of(job, JobState::kQueued, clock.now());
    retry.retry_at = clock.now() + 1s;
    ASSERT_TRUE(store->finish_job(retry));
    clock.advance(2s);
    claim(*store, clock.now());
    auto pending = due(*store, clock.now());
    ASSERT_EQ(pending.size(), 1u);
    EXPECT_EQ(pending.front().time, first_start);
    EXPECT_FALSE(pending.front().time_end);
}

TEST_P(Annotations, AJobCancelledBeforeItStartedDropsItsAnnotation) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, annotated("job-1", "lotus-1", clock.now()));
    ASSERT_TRUE(store->cancel_job("job-1", "alice", clock.now()));
    EXPECT_TRUE(due(*store, clock.now() + 1h).empty());
    auto posting = store->annotation_posting("job-1");
    ASSERT_FALSE(posting);
    EXPECT_EQ(posting.error().code, core::ErrorCode::kNotFound);
}

TEST_P(Annotations, AJobWithoutOneWritesNothing) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, job_of("job-1", "lotus-1", clock.now()));
    auto job = claim(*store, clock.now());
    ASSERT_TRUE(store->finish_job(finish_of(job, JobState::kSucceeded, clock.now())));
    EXPECT_TRUE(due(*store, clock.now() + 1h).empty());
}

TEST_P(Annotations, AFailedSendWaitsOutItsBackoff) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, annotated("job-1", "lotus-1", clock.now()));
    claim(*store, clock.now());
    auto retry_at = clock.now() + 4s;
    ASSERT_TRUE(store->annotation_failed("job-1", "connection refused", retry_at));
    EXPECT_TRUE(due(*store, clock.now()).empty());
    auto next = store->next_annotation_at();
    ASSERT_TRUE(next && *next);
    EXPECT_EQ(**next, retry_at);
    auto pending = due(*store, retry_at);
    ASSERT_EQ(pending.size(), 1u);
    EXPECT_EQ(pending.front().attempts, 1);
    EXPECT_EQ(pending.front().last_error, "connection refused");
    auto backlog = store->annotation_backlog();
    ASSERT_TRUE(backlog);
    EXPECT_EQ(*backlog, 1);

    ASSERT_TRUE(store->annotation_sent(AnnotationSent{.job_id = "job-1", .remote_id = 7}));
    auto after = store->annotation_backlog();
    ASSERT_TRUE(after);
    EXPECT_EQ(*after, 0);
}

TEST_P(Annotations, PruningKeepsWhatIsNotYetSent) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    submitted(*store, annotated("sent", "lotus-1", clock.now()));
    auto first = claim(*store, clock.now());
    ASSERT_TRUE(store->finish_job(finish_of(first, JobState::kSucceeded, clock.now())));
    ASSERT_TRUE(
        store->annotation_sent(AnnotationSent{.job_id = "sent", .remote_id = 1, .end_sent = true}));
    submitted(*store, annotated("unsent", "lotus-1", clock.now()));
    auto second = claim(*store, clock.now());
    ASSERT_TRUE(store->finish_job(finish_of(second, JobState::kSucceeded, clock.now())));

    clock.advance(1h);
    auto pruned = store->prune_jobs(clock.now());
    ASSERT_TRUE(pruned);
    EXPECT_EQ(*pruned, 2);
    auto pending = due(*store, clock.now());
    ASSERT_EQ(pending.size(), 1u) << "an unsent annotation outlives its job";
    EXPECT_EQ(pending.front().job_id, "unsent");
    EXPECT_FALSE(store->annotation_posting("sent")) << "a wholly sent one went with its job";
}

}  // namespace
}  // namespace aviary::store::test
