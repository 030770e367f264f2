// The engine's surface and dispatch (engine.cpp): submit, uniqueness, exclusivity, caps,
// queues, implicit acquire, permissions, cancel, retry, watches.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "engine_support.hpp"
#include "jobs/engine_impl.hpp"

namespace aviary::jobs::test {
namespace {

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

core::Params n(int value) {
    return {{"n", std::to_string(value)}};
}

class JobEngine : public EngineTest {
protected:
    core::Result<Submitted> try_submit(SubmitRequest request,
                                       const fleet::Caller& caller = fleet::Caller{}) {
        return submit_now(std::move(request), caller);
    }
    void pause(const std::string& queue, bool paused = true) {
        auto done = engine_->set_paused(queue, paused, admin_);
        ASSERT_TRUE(done) << done.error().message;
    }
};

TEST_F(JobEngine, RefusesUnknownActionsNodesAndBadParams) {
    start();
    auto action = try_submit(SubmitRequest{.action = "upgrayedd", .node = "lotus-0"});
    ASSERT_FALSE(action);
    EXPECT_EQ(action.error().code, core::ErrorCode::kNotFound);
    EXPECT_TRUE(contains(action.error().message, "upgrayedd")) << action.error().message;
    EXPECT_TRUE(contains(action.error().message, "noop")) << "lists the known actions";

    auto node = try_submit(SubmitRequest{.action = "noop", .node = "lotus-9"});
    ASSERT_FALSE(node);
    EXPECT_EQ(node.error().code, core::ErrorCode::kNotFound);

    auto name = try_submit(SubmitRequest{.action = "noop", .node = "lotus-0;touch X"});
    ASSERT_FALSE(name);
    EXPECT_EQ(name.error().code, core::ErrorCode::kInvalidArgument);

    auto params = try_submit(SubmitRequest{.action = "noop", .node = "lotus-0", .params = n(0)});
    EXPECT_TRUE(params);
    auto typed =
        try_submit(SubmitRequest{.action = "noop", .node = "lotus-0", .params = {{"n", "x"}}});
    ASSERT_FALSE(typed);
    EXPECT_EQ(typed.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_TRUE(contains(typed.error().message, "params.n")) << typed.error().message;
}

TEST_F(JobEngine, SameJobWhileQueuedIsReturnedNotQueuedTwice) {
    start();
    pause("default");
    auto first = try_submit(SubmitRequest{.action = "noop", .node = "lotus-0", .params = n(1)});
    ASSERT_TRUE(first) << first.error().message;
    EXPECT_FALSE(first->duplicate);
    auto again = try_submit(SubmitRequest{.action = "noop", .node = "lotus-0", .params = n(1)});
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_TRUE(again->duplicate);
    EXPECT_EQ(again->job.id, first->job.id);
    auto other = try_submit(SubmitRequest{.action = "noop", .node = "lotus-0", .params = n(2)});
    ASSERT_TRUE(other);
    EXPECT_FALSE(other->duplicate);
    EXPECT_NE(other->job.id, first->job.id);
    auto elsewhere = try_submit(SubmitRequest{.action = "noop", .node = "lotus-1", .params = n(1)});
    ASSERT_TRUE(elsewhere);
    EXPECT_FALSE(elsewhere->duplicate);
    pause("default", false);
    EXPECT_EQ(wait_finished(first->job.id).state, core::JobState::kSucceeded);
    // Once finished, the same submission is a new job.
    auto later = try_submit(SubmitRequest{.action = "noop", .node = "lotus-0", .params = n(1)});
    ASSERT_TRUE(later);
    EXPECT_FALSE(later->duplicate);
    EXPECT_NE(later->job.id, first->job.id);
}

TEST_F(JobEngine, SameJobWhileRunningIsReturned) {
    start();
    auto first = submit("hold");
    wait_for_state(first.id, core::JobState::kRunning);
    auto again = try_submit(SubmitRequest{.action = "hold", .node = "lotus-0"});
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->duplicate);
    EXPECT_EQ(again->job.id, first.id);
    open_gate();
    EXPECT_EQ(wait_finished(first.id).state, core::JobState::kSucceeded);
}

TEST_F(JobEngine, ConcurrentSubmitsForOneNodeRunOneAtATimeInStoreOrder) {
    start();
    constexpr int kThreads = 8;
    constexpr int kJobs = 50;
    std::vector<core::Result<Submitted>> results(
        kJobs, core::Error{core::ErrorCode::kInternal, "not submitted"});
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&] {
            for (int i = next++; i < kJobs; i = next++) {
                results[static_cast<std::size_t>(i)] = submit_now(
                    SubmitRequest{.action = "upgrade", .node = "lotus-0", .params = n(i)},
                    fleet::Caller{});
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    std::vector<core::Job> jobs;
    for (auto& result : results) {
        ASSERT_TRUE(result) << result.error().message;
        EXPECT_FALSE(result->duplicate);
        jobs.push_back(result->job);
    }
    std::sort(jobs.begin(), jobs.end(),
              [](const core::Job& a, const core::Job& b) { return a.seq < b.seq; });
    std::vector<std::string> store_order;
    for (const auto& queued : jobs) {
        store_order.push_back(queued.id);
    }
    for (auto& queued : jobs) {
        queued = wait_finished(queued.id);
        EXPECT_EQ(queued.state, core::JobState::kSucceeded) << queued.error;
    }
    EXPECT_EQ(fake_.overlaps.load(), 0) << "two upgrades of lotus-0 ran at once";
    EXPECT_EQ(fake_.max_active.load(), 1);
    EXPECT_EQ(fake_.entered_now(), store_order);
    for (std::size_t i = 1; i < jobs.size(); ++i) {
        ASSERT_TRUE(jobs[i].started_at && jobs[i - 1].finished_at);
        EXPECT_GE(*jobs[i].started_at, *jobs[i - 1].finished_at)
            << "job " << i << " started before job " << i - 1 << " finished";
    }
}

TEST_F(JobEngine, QueuedExclusiveJobShowsItsPosition) {
    start();
    auto running = submit("hold", n(1));
    wait_for_state(running.id, core::JobState::kRunning);
    auto second = submit("hold", n(2));
    auto third = submit("hold", n(3));
    // A later job for another node runs meanwhile: the dispatcher passed these two over.
    EXPECT_EQ(wait_finished(submit("noop", {}, "lotus-1").id).state, core::JobState::kSucceeded);
    EXPECT_EQ(job(second.id).state, core::JobState::kQueued);
    EXPECT_EQ(job(third.id).state, core::JobState::kQueued);
    EXPECT_LT(job(second.id).position, job(third.id).position);
    EXPECT_GE(job(second.id).position, 1);
    open_gate();
    for (const auto& id : {running.id, second.id, third.id}) {
        EXPECT_EQ(wait_finished(id).state, core::JobState::kSucceeded);
    }
    EXPECT_EQ(fake_.max_active.load(), 1);
}

TEST_F(JobEngine, NonExclusiveJobsRunSideBySide) {
    start();
    auto first = submit("hold-shared", n(1));
    auto second = submit("hold-shared", n(2));
    EXPECT_TRUE(eventually([&] { return fake_.held.load() == 2; }))
        << "held: " << fake_.held.load();
    EXPECT_EQ(job(first.id).state, core::JobState::kRunning);
    EXPECT_EQ(job(second.id).state, core::JobState::kRunning);
    open_gate();
    EXPECT_EQ(wait_finished(first.id).state, core::JobState::kSucceeded);
    EXPECT_EQ(wait_finished(second.id).state, core::JobState::kSucceeded);
    EXPECT_EQ(fake_.max_active.load(), 2);
}

TEST_F(JobEngine, WorkersCapJobsRunningAtOnce) {
    auto settings = test_settings();
    settings.workers = 1;
    start(settings);
    auto first = submit("hold-shared", n(1));
    auto second = submit("hold-shared", n(2));
    wait_for_state(first.id, core::JobState::kRunning);
    EXPECT_EQ(job(second.id).state, core::JobState::kQueued);
    open_gate();
    EXPECT_EQ(wait_finished(second.id).state, core::JobState::kSucceeded);
    EXPECT_EQ(fake_.max_active.load(), 1);
}

TEST_F(JobEngine, PerActionConcurrencyCapHoldsWithFreeWorkers) {
    start();
    auto first = submit("hold-capped", n(1), "lotus-0");
    auto second = submit("hold-capped", n(2), "lotus-1");
    wait_for_state(first.id, core::JobState::kRunning);
    ASSERT_TRUE(eventually([&] { return fake_.held.load() == 1; })) << "first is at the gate";
    // A later job of another action takes the free worker: the capped one was passed over.
    EXPECT_EQ(wait_finished(submit("noop", {}, "lotus-2").id).state, core::JobState::kSucceeded);
    EXPECT_EQ(job(second.id).state, core::JobState::kQueued);
    EXPECT_EQ(fake_.held.load(), 1);
    open_gate();
    EXPECT_EQ(wait_finished(first.id).state, core::JobState::kSucceeded);
    EXPECT_EQ(wait_finished(second.id).state, core::JobState::kSucceeded);
    EXPECT_EQ(fake_.max_active.load(), 1);
}

TEST_F(JobEngine, PausedQueueHoldsItsJobsUntilResumed) {
    start();
    pause("slow");
    auto queues = engine_->queues();
    ASSERT_TRUE(queues);
    ASSERT_EQ(queues->size(), 2U);
    EXPECT_EQ(queues->at(0).name, "default");
    EXPECT_FALSE(queues->at(0).paused);
    EXPECT_EQ(queues->at(1).name, "slow");
    EXPECT_TRUE(queues->at(1).paused);
    auto later = submit("later");
    EXPECT_EQ(later.queue, "slow");
    // Another node: on lotus-0 the paused job would hold later exclusive jobs (store order).
    EXPECT_EQ(wait_finished(submit("noop", {}, "lotus-1").id).state, core::JobState::kSucceeded);
    EXPECT_EQ(job(later.id).state, core::JobState::kQueued);
    pause("slow", false);
    EXPECT_EQ(wait_finished(later.id).state, core::JobState::kSucceeded);
}

TEST_F(JobEngine, PausingIsForAdminsAndKnownQueues) {
    start();
    auto unknown = engine_->set_paused("nope", true, admin_);
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, core::ErrorCode::kNotFound);
    auto user =
        engine_->set_paused("slow", true, fleet::Caller{.identity = "carol", .admin = false});
    ASSERT_FALSE(user);
    EXPECT_EQ(user.error().code, core::ErrorCode::kPermissionDenied);
}

TEST_F(JobEngine, ImplicitAcquireLeasesTheNodeAndTheLeaseOutlivesTheJob) {
    start();
    auto submitted =
        try_submit(SubmitRequest{.action = "noop", .node = "lotus-0", .owner = "anton"});
    ASSERT_TRUE(submitted) << submitted.error().message;
    ASSERT_TRUE(submitted->lease);
    EXPECT_EQ(submitted->lease->owner, "anton");
    EXPECT_EQ(submitted->job.owner, "anton");
    EXPECT_EQ(submitted->job.lease_id, submitted->lease->id);
    auto node = fleet_->node("lotus-0");
    ASSERT_TRUE(node);
    ASSERT_TRUE(node->lease);
    EXPECT_EQ(node->lease->owner, "anton");
    EXPECT_EQ(wait_finished(submitted->job.id).state, core::JobState::kSucceeded);
    node = fleet_->node("lotus-0");
    ASSERT_TRUE(node);
    ASSERT_TRUE(node->lease) << "the lease outlives the job";
    EXPECT_EQ(node->lease->owner, "anton");
    EXPECT_EQ(node->lease->id, submitted->lease->id);
}

TEST_F(JobEngine, WithoutOwnerAFreeNodeStaysFree) {
    start();
    EXPECT_EQ(wait_finished(submit("noop").id).state, core::JobState::kSucceeded);
    auto node = fleet_->node("lotus-0");
    ASSERT_TRUE(node);
    EXPECT_EQ(node->state, core::NodeState::kFree);
}

TEST_F(JobEngine, WithoutOwnerANodeLeasedByAnotherIsBusyNamingTheHolder) {
    start();
    ASSERT_TRUE(fleet_->acquire(fleet::AcquireRequest{.node = "lotus-0", .owner = "bob"}, admin_));
    auto refused = try_submit(SubmitRequest{.action = "noop", .node = "lotus-0"});
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kBusy);
    EXPECT_TRUE(contains(refused.error().message, "bob")) << refused.error().message;
    // Another owner's implicit acquire is refused the same way, and nothing was queued.
    auto other = try_submit(SubmitRequest{.action = "noop", .node = "lotus-0", .owner = "anton"});
    ASSERT_FALSE(other);
    EXPECT_EQ(other.error().code, core::ErrorCode::kBusy);
    EXPECT_TRUE(contains(other.error().message, "bob")) << other.error().message;
    auto listed = engine_->jobs(JobsQuery{});
    ASSERT_TRUE(listed);
    EXPECT_TRUE(listed->jobs.empty());
    // The holder itself may run actions on its node.
    auto own = try_submit(SubmitRequest{.action = "noop", .node = "lotus-0", .owner = "bob"});
    ASSERT_TRUE(own) << own.error().message;
    EXPECT_EQ(wait_finished(own->job.id).state, core::JobState::kSucceeded);
}

TEST_F(JobEngine, PermissionRefusalIsDeniedNamedAndRecorded) {
    auto settings = test_settings();
    settings.permissions = {
        PermissionRule{
            .name = "operators-run-noops", .who = {"group:operators"}, .actions = {"noop"}},
        PermissionRule{.name = "no-noops-on-lotus-2",
                       .allow = false,
                       .who = {"*"},
                       .actions = {"noop"},
                       .nodes = {"lotus-2"}}};
    start(settings);
    fleet::Caller carol{.identity = "carol", .admin = false};
    auto refused = try_submit(SubmitRequest{.action = "noop", .node = "lotus-0"}, carol);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kPermissionDenied);
    EXPECT_TRUE(contains(refused.error().message, "no permission rule allows it"))
        << refused.error().message;
    auto kinds = event_kinds();
    EXPECT_NE(std::find(kinds.begin(), kinds.end(), "job.refused"), kinds.end());

    fleet::Caller dora{.identity = "dora", .admin = false, .groups = {"operators"}};
    auto allowed = try_submit(SubmitRequest{.action = "noop", .node = "lotus-0"}, dora);
    ASSERT_TRUE(allowed) << allowed.error().message;
    EXPECT_EQ(allowed->job.requester, "dora");
    auto denied = try_submit(SubmitRequest{.action = "noop", .node = "lotus-2"}, dora);
    ASSERT_FALSE(denied);
    EXPECT_TRUE(contains(denied.error().message, "no-noops-on-lotus-2")) << denied.error().message;
    auto events = store_->events(store::EventQuery{.node = "lotus-2", .limit = 10});
    ASSERT_TRUE(events);
    ASSERT_FALSE(events->empty());
    EXPECT_EQ(events->front().kind, "job.refused");
    EXPECT_EQ(events->front().actor, "dora");
    EXPECT_TRUE(contains(events->front().after, "no-noops-on-lotus-2")) << events->front().after;
}

TEST_F(JobEngine, RefusalEventIsJsonWhateverTheRuleIsCalled) {
    auto settings = test_settings();
    settings.permissions = {PermissionRule{
        .name = R"(no "noop" \ here)", .allow = false, .who = {"*"}, .actions = {"noop"}}};
    start(settings);
    fleet::Caller quoted{.identity = R"(carol "the admin")", .admin = true};
    auto refused = try_submit(SubmitRequest{.action = "noop", .node = "lotus-0"}, quoted);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kPermissionDenied);
    auto events = store_->events(store::EventQuery{.node = "lotus-0", .limit = 1});
    ASSERT_TRUE(events);
    ASSERT_EQ(events->size(), 1U);
    EXPECT_EQ(events->front().kind, "job.refused");
    std::error_code ec;
    auto parsed = boost::json::parse(events->front().after, ec);
    ASSERT_FALSE(ec) << events->front().after;
    ASSERT_TRUE(parsed.is_object());
    EXPECT_EQ(parsed.as_object().at("action"), "noop");
    EXPECT_TRUE(contains(boost::json::value_to<std::string>(parsed.as_object().at("reason")),
                         R"(no "noop" \ here)"));
}

TEST_F(JobEngine, RetryRefusedByPermissionIsRecorded) {
    auto settings = test_settings();
    settings.permissions = {
        PermissionRule{.name = "carol-runs-noops", .who = {"carol"}, .actions = {"noop"}}};
    start(settings);
    fleet::Caller carol{.identity = "carol", .admin = false};
    fleet::Caller dave{.identity = "dave", .admin = false};
    auto submitted = try_submit(SubmitRequest{.action = "noop", .node = "lotus-1"}, carol);
    ASSERT_TRUE(submitted) << submitted.error().message;
    EXPECT_EQ(wait_finished(submitted->job.id).state, core::JobState::kSucceeded);
    auto refused = engine_->retry(submitted->job.id, dave);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kPermissionDenied);
    auto events = store_->events(store::EventQuery{.node = "lotus-1", .limit = 1});
    ASSERT_TRUE(events);
    ASSERT_EQ(events->size(), 1U);
    EXPECT_EQ(events->front().kind, "job.refused");
    EXPECT_EQ(events->front().actor, "dave");
}

TEST_F(JobEngine, CancelOfAQueuedJobIsImmediate) {
    start();
    pause("default");
    auto queued = submit("noop");
    auto cancelled = engine_->cancel(queued.id, admin_);
    ASSERT_TRUE(cancelled) << cancelled.error().message;
    EXPECT_EQ(cancelled->state, core::JobState::kCancelled);
    EXPECT_TRUE(cancelled->finished_at);
    pause("default", false);
    // A later job runs; the cancelled one never does.
    EXPECT_EQ(wait_finished(submit("noop", n(1)).id).state, core::JobState::kSucceeded);
    EXPECT_EQ(job(queued.id).state, core::JobState::kCancelled);
    EXPECT_EQ(job(queued.id).attempt, 0);
}

TEST_F(JobEngine, CancelOfAFinishedJobIsInvalid) {
    start();
    auto done = wait_finished(submit("noop").id);
    auto cancelled = engine_->cancel(done.id, admin_);
    ASSERT_FALSE(cancelled);
    EXPECT_EQ(cancelled.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_TRUE(contains(cancelled.error().message, done.id)) << cancelled.error().message;
}

TEST_F(JobEngine, CancelIsForTheRequesterTheOwnerOrAnAdmin) {
    start();
    pause("default");
    fleet::Caller carol{.identity = "carol", .admin = false};
    fleet::Caller dave{.identity = "dave", .admin = false};
    auto queued = try_submit(SubmitRequest{.action = "noop", .node = "lotus-0"}, carol);
    ASSERT_TRUE(queued) << queued.error().message;
    auto refused = engine_->cancel(queued->job.id, dave);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kPermissionDenied);
    EXPECT_TRUE(contains(refused.error().message, "carol")) << refused.error().message;
    auto cancelled = engine_->cancel(queued->job.id, carol);
    ASSERT_TRUE(cancelled) << cancelled.error().message;
    EXPECT_EQ(cancelled->state, core::JobState::kCancelled);
}

TEST_F(JobEngine, RetryRunsAFinishedJobAgainWithTheSameParams) {
    start();
    auto failed = wait_finished(submit("fail", n(7)).id);
    ASSERT_EQ(failed.state, core::JobState::kFailed);
    auto retried = engine_->retry(failed.id, admin_);
    ASSERT_TRUE(retried) << retried.error().message;
    EXPECT_NE(retried->job.id, failed.id);
    EXPECT_EQ(retried->job.retry_of, failed.id);
    EXPECT_EQ(retried->job.action, "fail");
    EXPECT_EQ(retried->job.node, "lotus-0");
    EXPECT_EQ(retried->job.params, failed.params);
    auto done = wait_finished(retried->job.id);
    EXPECT_EQ(done.state, core::JobState::kFailed);
    EXPECT_EQ(done.attempt, 1);
}

TEST_F(JobEngine, RetryOfAnUnfinishedJobIsInvalid) {
    start();
    auto running = submit("hold");
    wait_for_state(running.id, core::JobState::kRunning);
    auto retried = engine_->retry(running.id, admin_);
    ASSERT_FALSE(retried);
    EXPECT_EQ(retried.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_TRUE(contains(retried.error().message, "running")) << retried.error().message;
    auto unknown = engine_->retry("01NOSUCHJOB", admin_);
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, core::ErrorCode::kNotFound);
    open_gate();
    EXPECT_EQ(wait_finished(running.id).state, core::JobState::kSucceeded);
}

TEST_F(JobEngine, AJobsChangesArePublishedOnItsTopic) {
    start();
    pause("default");
    auto queued = submit("noop");
    asio::io_context follower;
    auto watch =
        engine_->hub().subscribe({Engine::job_topic(queued.id)}, follower.get_executor(), 100);
    auto other =
        engine_->hub().subscribe({Engine::job_topic("01SOMEOTHERJOB")}, follower.get_executor());
    ASSERT_TRUE(watch && other);
    pause("default", false);
    EXPECT_EQ(wait_finished(queued.id).state, core::JobState::kSucceeded);
    // Claimed, output, finished: more than one change, each published.
    std::vector<net::HubMessage> got;
    EXPECT_TRUE(eventually([&] {
        while (auto message = (*watch)->try_next()) {
            got.push_back(std::move(*message));
        }
        return got.size() >= 2;
    })) << got.size();
    EXPECT_EQ(got.at(0).topic, "job:" + queued.id);
    EXPECT_FALSE((*other)->try_next());
    // A dropped subscription leaves the hub.
    watch->reset();
    auto second = submit("noop", n(1));
    EXPECT_EQ(wait_finished(second.id).state, core::JobState::kSucceeded);
    EXPECT_EQ(engine_->hub().stats().subscribers, 1U);
}

TEST_F(JobEngine, JobsArePagedNewestFirst) {
    start();
    pause("default");
    std::vector<std::string> ids;
    for (int i = 0; i < 5; ++i) {
        ids.push_back(submit("noop", n(i)).id);
    }
    auto first = engine_->jobs(JobsQuery{.limit = 3});
    ASSERT_TRUE(first) << first.error().message;
    ASSERT_EQ(first->jobs.size(), 3U);
    EXPECT_EQ(first->jobs.front().id, ids[4]);
    ASSERT_FALSE(first->next_cursor.empty());
    auto rest = engine_->jobs(JobsQuery{.cursor = first->next_cursor, .limit = 3});
    ASSERT_TRUE(rest);
    ASSERT_EQ(rest->jobs.size(), 2U);
    EXPECT_EQ(rest->jobs.back().id, ids[0]);
    EXPECT_TRUE(rest->next_cursor.empty());
    auto bad = engine_->jobs(JobsQuery{.cursor = "12abc"});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_FALSE(engine_->jobs(JobsQuery{.limit = 0}));
}

TEST_F(JobEngine, FinishedJobsAreCountedInMetrics) {
    start();
    EXPECT_EQ(wait_finished(submit("noop").id).state, core::JobState::kSucceeded);
    EXPECT_EQ(wait_finished(submit("fail").id).state, core::JobState::kFailed);
    // Counted on the engine's thread just after the store write the test saw.
    std::string text;
    EXPECT_TRUE(eventually([&] {
        text = metrics_.render();
        return contains(text,
                        R"(aviary_jobs_finished_total{action="noop",outcome="succeeded"} 1)") &&
               contains(text, R"(aviary_jobs_finished_total{action="fail",outcome="failed"} 1)");
    })) << text;
    EXPECT_TRUE(contains(text, "aviary_jobs_queued 0")) << text;
}

TEST_F(JobEngine, MutatingJobsAreRefusedOnANodeInMaintenance) {
    start();
    ASSERT_TRUE(fleet_->start_maintenance("lotus-2", "disk swap", admin_));
    auto refused = try_submit(SubmitRequest{.action = "upgrade", .node = "lotus-2"});
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kUnavailable);
    EXPECT_TRUE(contains(refused.error().message, "maintenance")) << refused.error().message;
    EXPECT_TRUE(contains(refused.error().message, "disk swap")) << refused.error().message;
    // A job that changes nothing (not exclusive) still runs there.
    auto shared = try_submit(SubmitRequest{.action = "hold-shared", .node = "lotus-2"});
    ASSERT_TRUE(shared) << shared.error().message;
    open_gate();
    EXPECT_EQ(wait_finished(shared->job.id).state, core::JobState::kSucceeded);
}

TEST_F(JobEngine, JobQueuedBeforeMaintenanceWaitsUntilTheNodeIsBackInService) {
    start();
    auto holder = submit("hold", n(1));
    ASSERT_TRUE(eventually([&] { return fake_.held.load() == 1; })) << "holder is at the gate";
    // Admitted while lotus-0 was in service; queued behind the holder.
    auto upgrade = submit("upgrade");
    EXPECT_EQ(job(upgrade.id).state, core::JobState::kQueued);
    ASSERT_TRUE(fleet_->start_maintenance("lotus-0", "disk swap", admin_));
    open_gate();
    // The holder's finish claims in the same commit: the upgrade must not be taken.
    EXPECT_EQ(wait_finished(holder.id).state, core::JobState::kSucceeded);
    EXPECT_EQ(wait_finished(submit("noop", {}, "lotus-1").id).state, core::JobState::kSucceeded);
    EXPECT_EQ(job(upgrade.id).state, core::JobState::kQueued);
    EXPECT_EQ(job(upgrade.id).attempt, 0);
    ASSERT_TRUE(fleet_->end_maintenance("lotus-0", admin_));
    EXPECT_EQ(wait_finished(upgrade.id).state, core::JobState::kSucceeded);
}

TEST_F(JobEngine, EarlyCancelOfAClaimedJobSurvivesManyStaleEntries) {
    start();
    auto& impl = engine_->impl_for_test();
    auto on_engine = [&impl](std::function<void()> work) {
        std::promise<void> done;
        asio::post(impl.io, [&] {
            work();
            done.set_value();
        });
        done.get_future().wait();
    };
    // A job this runner claimed, cancelled before its Run was registered. Written straight to
    // the store, claimed, cancelled and started in one turn of the engine's own thread while no
    // dispatch is under way, so the dispatcher (woken by the scheduler at any time) can neither
    // take the job first nor hold the free worker slots. A run step: the runner does not read
    // the job again before it starts, so only the early cancel can stop it.
    core::Job job{.id = core::new_id(),
                  .action = "hang",
                  .node = "lotus-0",
                  .params = n(1),
                  .requester = "admin",
                  .steps = 1,
                  .created_at = clock_.now(),
                  .run_at = clock_.now()};
    bool started = false;
    ASSERT_TRUE(eventually([&] {
        on_engine([&] {
            if (impl.dispatching) {
                return;
            }
            ASSERT_TRUE(store_->submit_job(store::JobSubmit{.job = job}));
            auto claimed =
                store_->claim_job(store::JobClaim{.runner = impl.runner_id, .now = clock_.now()});
            ASSERT_TRUE(claimed && *claimed);
            ASSERT_TRUE(store_->cancel_job(job.id, "admin", clock_.now()));
            impl.stop_cancelled(job.id, true);
            // Cancels of jobs that finished before their cancel arrived: never used.
            for (std::size_t i = 0; i < 2 * kMaxEarlyCancels; ++i) {
                impl.stop_cancelled(fmt::format("finished-{}", i), true);
            }
            ASSERT_EQ(impl.reserve(1), 1);
            impl.start_run(**claimed);
            started = true;
        });
        return started;
    }));
    auto done = wait_finished(job.id);
    EXPECT_EQ(done.state, core::JobState::kCancelled) << done.error;
    // The stale entries go once looked up; the set stays bounded.
    std::size_t size = 0;
    EXPECT_TRUE(eventually([&] {
        on_engine([&] { size = impl.early_cancels.size(); });
        return size <= kMaxEarlyCancels;
    })) << size;
}

TEST_F(JobEngine, FinishedJobsArePrunedPastRetention) {
    auto settings = test_settings();
    settings.retention = 200ms;
    settings.retention_sweep = 20ms;
    start(settings);
    pause("slow");
    auto waiting = submit("later");
    auto done = wait_finished(submit("echo", {{"text", "hi"}}, "lotus-1").id);
    ASSERT_EQ(done.state, core::JobState::kSucceeded);
    EXPECT_TRUE(eventually([&] {
        auto found = engine_->job(done.id);
        return !found && found.error().code == core::ErrorCode::kNotFound;
    })) << "a finished job outlived its retention";
    auto output = engine_->output(store::OutputQuery{.job_id = done.id});
    ASSERT_FALSE(output);
    EXPECT_EQ(output.error().code, core::ErrorCode::kNotFound);
    // A job that has not finished is kept however old it is.
    EXPECT_EQ(job(waiting.id).state, core::JobState::kQueued);
}

TEST_F(JobEngine, StopIsIdempotentAndSafeBeforeStart) {
    std::vector<std::unique_ptr<drivers::Driver>> none;
    jobs::Engine never_started{test_settings(), *store_, *fleet_, std::move(none), clock_, nullptr};
    never_started.stop();
    never_started.stop();
    start();
    EXPECT_TRUE(fake_.started);
    engine_->stop();
    engine_->stop();
    EXPECT_TRUE(fake_.stopped);
}

}  // namespace
}  // namespace aviary::jobs::test
