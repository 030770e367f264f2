#pragma once
// Shared by the store's job tests: job and request builders, and calls that fail the test.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "store_support.hpp"

namespace aviary::store::test {

/// An exclusive "upgrade" of `node` submitted by alice, runnable from `now`.
inline core::Job job_of(std::string id, std::string node, core::TimePoint now) {
    core::Job job;
    job.id = std::move(id);
    job.action = "upgrade";
    job.node = std::move(node);
    job.params = {{"image_tag", "v2.0.0"}};
    job.requester = "alice";
    job.steps = 2;
    job.max_attempts = 3;
    job.created_at = now;
    job.run_at = now;
    return job;
}

inline JobSubmit submit_of(core::Job job) {
    std::string actor = job.requester;
    return JobSubmit{.job = std::move(job), .actor = std::move(actor)};
}

/// Submits and expects a new queued job; returns it as stored.
inline core::Job submitted(Store& store, const JobSubmit& submit) {
    auto out = store.submit_job(submit);
    EXPECT_TRUE(out) << out.error().message;
    if (!out) {
        return submit.job;
    }
    EXPECT_FALSE(out->duplicate) << submit.job.id;
    EXPECT_FALSE(out->refused) << submit.job.id;
    return out->job;
}

inline core::Job submitted(Store& store, const core::Job& job) {
    return submitted(store, submit_of(job));
}

/// The claimed job's id, or "" when none was runnable.
inline std::string claimed(Store& store,
                           core::TimePoint now,
                           std::map<std::string, int, std::less<>> caps = {}) {
    auto out = store.claim_job(JobClaim{.runner = "run-1", .now = now, .action_caps = caps});
    EXPECT_TRUE(out) << out.error().message;
    if (!out || !*out) {
        return "";
    }
    return (*out)->id;
}

inline JobFinish finish_of(const core::Job& job, core::JobState state, core::TimePoint now) {
    return JobFinish{.id = job.id,
                     .attempt = job.attempt,
                     .state = state,
                     .retry_at = std::nullopt,
                     .result = "{}",
                     .error = "",
                     .actor = "",
                     .event_kind = "",
                     .now = now};
}

/// The job as stored now (fails the test when it is not).
inline core::Job stored(Store& store, const std::string& id) {
    auto job = store.job(id);
    EXPECT_TRUE(job) << id << ": " << job.error().message;
    return job ? *job : core::Job{};
}

}  // namespace aviary::store::test
