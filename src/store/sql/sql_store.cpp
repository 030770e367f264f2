#include "store/sql/sql_store.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "store/sql/alarms.hpp"
#include "store/sql/annotations.hpp"
#include "store/sql/events.hpp"
#include "store/sql/instances.hpp"
#include "store/sql/jobs.hpp"
#include "store/sql/leases.hpp"
#include "store/sql/nodes.hpp"
#include "store/sql/probes.hpp"
#include "store/sql/producers.hpp"
#include "store/sql/waiters.hpp"
#include "store/sql/workers.hpp"

namespace aviary::store::sql {

SqlStore::SqlStore(std::unique_ptr<Connection> writer,
                   std::unique_ptr<ReadPool> readers,
                   int schema_version,
                   std::unique_ptr<ChangeFeed> feed)
    : db_(std::move(writer)),
      readers_(std::move(readers)),
      // The rules in store/sql are safe to run twice: write() keeps only the last run's
      // result, and the grants a rolled-back attempt collected go with after_batch(false).
      writer_(std::make_unique<GroupCommit>(
          *db_,
          db_mutex_,
          [this](bool committed) { after_batch(committed); },
          GroupCommit::Isolation::kOptimistic)),
      schema_version_(schema_version) {
    feed_ = std::move(feed);
    if (feed_ != nullptr) {
        feed_->start(
            [this](char kind, std::string_view subject) { on_remote_change(kind, subject); });
    }
}

SqlStore::~SqlStore() {
    close();
}

core::Result<ReconcileReport> SqlStore::reconcile_nodes(const std::vector<core::NodeSpec>& specs,
                                                        std::string_view actor,
                                                        core::TimePoint now) {
    return write_serving<ReconcileReport>([&](Connection& db, Served& served) {
        return sql::reconcile_nodes(db, specs, actor, now, served);
    });
}

core::Result<void> SqlStore::reconcile_worker_ids(const std::vector<core::WorkerId>& workers,
                                                  std::string_view actor,
                                                  core::TimePoint now) {
    return writer_->submit(
        [&](Connection& db) { return sql::reconcile_worker_ids(db, workers, actor, now); });
}

core::Result<std::vector<core::WorkerId>> SqlStore::worker_ids() {
    return read<std::vector<core::WorkerId>>(
        [&](Connection& db) { return sql::select_worker_ids(db); });
}

core::Result<core::WorkerId> SqlStore::worker_id(std::string_view id) {
    return read<core::WorkerId>([&](Connection& db) { return sql::select_worker_id(db, id); });
}

core::Result<std::vector<core::Node>> SqlStore::nodes(core::TimePoint now) {
    return read<std::vector<core::Node>>([&](Connection& db) { return select_nodes(db, now); });
}

core::Result<core::Node> SqlStore::node(std::string_view name, core::TimePoint now) {
    return read<core::Node>([&](Connection& db) { return select_node(db, name, now); });
}

core::Result<LeaseAttempt> SqlStore::try_lease(const LeaseRequest& request) {
    return write_serving<LeaseAttempt>(
        [&](Connection& db, Served& served) { return sql::try_lease(db, request, served); });
}

void SqlStore::try_lease_async(LeaseRequest request, LeaseAttemptCallback done) {
    write_serving_async<LeaseAttempt>(
        [request = std::move(request)](Connection& db, Served& served) {
            return sql::try_lease(db, request, served);
        },
        std::move(done));
}

void SqlStore::release_async(ReleaseRequest request, ReleaseCallback done) {
    write_serving_async<std::optional<core::Lease>>(
        [request = std::move(request)](Connection& db, Served& served) {
            return sql::release(db, request, served);
        },
        std::move(done));
}

core::Result<std::optional<core::Lease>> SqlStore::release(const ReleaseRequest& request) {
    return write_serving<std::optional<core::Lease>>(
        [&](Connection& db, Served& served) { return sql::release(db, request, served); });
}

core::Result<std::vector<core::Lease>> SqlStore::renew_lease(const LeaseIdRequest& request) {
    return write<std::vector<core::Lease>>(
        [&](Connection& db) { return sql::renew_lease(db, request); });
}

core::Result<std::vector<core::Lease>> SqlStore::release_lease(const LeaseIdRequest& request) {
    return write_serving<std::vector<core::Lease>>(
        [&](Connection& db, Served& served) { return sql::release_lease(db, request, served); });
}

core::Result<std::vector<core::Lease>> SqlStore::expire_leases(core::TimePoint now) {
    return write_serving<std::vector<core::Lease>>(
        [&](Connection& db, Served& served) { return sql::expire_leases(db, now, served); });
}

core::Result<std::optional<core::TimePoint>> SqlStore::next_lease_deadline() {
    return read<std::optional<core::TimePoint>>(
        [](Connection& db) { return select_next_lease_deadline(db); });
}

core::Result<std::optional<core::TimePoint>> SqlStore::next_job_run_at(core::TimePoint now) {
    return read<std::optional<core::TimePoint>>(
        [&](Connection& db) { return select_next_job_run_at(db, now); });
}

core::Result<std::vector<core::Lease>> SqlStore::leases(core::TimePoint now) {
    return read<std::vector<core::Lease>>([&](Connection& db) { return select_leases(db, now); });
}

core::Result<std::variant<LeaseAttempt, WaiterRecord>> SqlStore::enqueue(
    const WaiterRecord& waiter) {
    return write_serving<std::variant<LeaseAttempt, WaiterRecord>>(
        [&](Connection& db, Served& served) { return sql::enqueue(db, waiter, served); });
}

core::Result<std::optional<WaiterRecord>> SqlStore::cancel_waiter(std::string_view ticket,
                                                                  std::string_view actor,
                                                                  core::TimePoint now) {
    return write_serving<std::optional<WaiterRecord>>([&](Connection& db, Served& served) {
        return sql::cancel_waiter(db, ticket, actor, now, served);
    });
}

core::Result<WaiterRecord> SqlStore::waiter(std::string_view ticket, core::TimePoint now) {
    return read_snapshot<WaiterRecord>(
        [&](Connection& db) { return select_waiter(db, ticket, now); });
}

core::Result<std::vector<WaiterRecord>> SqlStore::waiters(core::TimePoint now) {
    return read_snapshot<std::vector<WaiterRecord>>(
        [&](Connection& db) { return select_waiters(db, now); });
}

core::Result<std::vector<WaiterRecord>> SqlStore::expire_waiters(core::TimePoint now) {
    return write_serving<std::vector<WaiterRecord>>(
        [&](Connection& db, Served& served) { return sql::expire_waiters(db, now, served); });
}

core::Result<std::vector<WaiterRecord>> SqlStore::drop_waiters(std::string_view instance,
                                                               std::string_view actor,
                                                               core::TimePoint now) {
    return write<std::vector<WaiterRecord>>(
        [&](Connection& db) { return sql::drop_waiters(db, instance, actor, now); });
}

void SqlStore::set_grant_listener(GrantListener listener) {
    std::lock_guard lock{listener_mu_};
    listener_ = std::move(listener);
}

void SqlStore::set_change_listener(ChangeListener listener) {
    std::lock_guard lock{change_mu_};
    change_listener_ = std::move(listener);
}

void SqlStore::on_remote_change(char kind, std::string_view subject) {
    if (kind == change::kGranted) {
        auto now = core::SystemClock{}.now();
        auto grant = read_snapshot<std::optional<WaiterGrant>>(
            [&](Connection& db) -> core::Result<std::optional<WaiterGrant>> {
                auto waiter = select_waiter(db, subject, now);
                if (!waiter) {
                    return waiter.error().code == core::ErrorCode::kNotFound
                               ? core::Result<std::optional<WaiterGrant>>{std::nullopt}
                               : core::Result<std::optional<WaiterGrant>>{waiter.error()};
                }
                if (waiter->state != WaiterState::kGranted) {
                    return std::optional<WaiterGrant>{};
                }
                auto leases = held_rows(db, waiter->lease_id, now);
                if (!leases) {
                    return leases.error();
                }
                if (leases->empty()) {
                    return std::optional<WaiterGrant>{};  // already ended
                }
                return std::optional<WaiterGrant>{
                    WaiterGrant{.ticket = waiter->ticket, .leases = std::move(*leases)}};
            });
        if (!grant || !*grant) {
            return;  // not ours to hand over, gone, or unreadable now: the wait's poll sees it
        }
        std::lock_guard lock{listener_mu_};
        if (listener_) {
            listener_({std::move(**grant)});
        }
        return;
    }
    RemoteChange which;
    switch (kind) {
        case change::kJobsQueued:
            which = RemoteChange::kJobsQueued;
            break;
        case change::kJob:
            which = RemoteChange::kJob;
            break;
        case change::kCancel:
            which = RemoteChange::kCancel;
            break;
        default:
            return;  // a newer aviary's change: nothing to do here
    }
    std::lock_guard lock{change_mu_};
    if (change_listener_) {
        change_listener_(which, subject);
    }
}

void SqlStore::after_batch(bool committed) {
    if (batch_grants_.empty()) {
        return;
    }
    auto grants = std::move(batch_grants_);
    batch_grants_.clear();
    if (!committed) {
        return;  // rolled back: nobody was granted anything
    }
    std::lock_guard lock{listener_mu_};
    if (listener_) {
        listener_(std::move(grants));
    }
}

core::Result<NodeChange> SqlStore::put_node(const core::NodeSpec& spec,
                                            std::string_view actor,
                                            core::TimePoint now) {
    return write_serving<NodeChange>([&](Connection& db, Served& served) {
        return sql::put_node(db, spec, actor, now, served);
    });
}

core::Result<void> SqlStore::remove_node(std::string_view name,
                                         std::string_view actor,
                                         core::TimePoint now,
                                         bool machine) {
    return writer_->submit(
        [&](Connection& db) { return sql::remove_node(db, name, actor, now, machine); });
}

core::Result<NodeChange> SqlStore::start_maintenance(std::string_view name,
                                                     std::string_view reason,
                                                     std::string_view actor,
                                                     core::TimePoint now) {
    return write<NodeChange>(
        [&](Connection& db) { return sql::start_maintenance(db, name, reason, actor, now); });
}

core::Result<bool> SqlStore::set_gate(std::string_view name,
                                      core::TimePoint until,
                                      core::TimePoint seen,
                                      core::TimePoint now) {
    return write_serving<bool>([&](Connection& db, Served& served) {
        return sql::set_gate(db, name, until, seen, now, served);
    });
}

core::Result<void> SqlStore::configure_gates(const std::vector<std::string>& gated,
                                             core::TimePoint now) {
    return write_serving<void>([&](Connection& db, Served& served) {
        return sql::configure_gates(db, gated, now, served);
    });
}

core::Result<NodeChange> SqlStore::end_maintenance(std::string_view name,
                                                   std::string_view actor,
                                                   core::TimePoint now) {
    return write_serving<NodeChange>([&](Connection& db, Served& served) {
        return sql::end_maintenance(db, name, actor, now, served);
    });
}

core::Result<JobSubmitted> SqlStore::submit_job(const JobSubmit& submit) {
    return write_serving<JobSubmitted>(
        [&](Connection& db, Served& served) { return sql::submit_job(db, submit, served); });
}

core::Result<std::optional<core::Job>> SqlStore::claim_job(const JobClaim& claim) {
    return write<std::optional<core::Job>>(
        [&](Connection& db) { return sql::claim_job(db, claim); });
}

namespace {

core::Result<std::vector<core::Job>> claim_up_to(Connection& db, const JobClaim& claim, int max) {
    std::vector<core::Job> claimed;
    while (static_cast<int>(claimed.size()) < max) {
        auto one = sql::claim_job(db, claim);
        if (!one) {
            return one.error();
        }
        if (!*one) {
            break;
        }
        claimed.push_back(std::move(**one));
    }
    return claimed;
}

/// claim_up_to in a savepoint of its own: a failing claim must not take the write before it
/// (a submission, a finish) along. Its error is logged and nothing is claimed.
std::vector<core::Job> claim_after(Connection& db,
                                   const JobClaim& claim,
                                   int max,
                                   std::string_view after) {
    if (!db.run("SAVEPOINT claim_after")) {
        return {};
    }
    auto claimed = claim_up_to(db, claim, max);
    if (!claimed) {
        core::logger("store")->warn("claim after {} failed: {}", after, claimed.error().message);
        (void)db.run("ROLLBACK TO claim_after");
    }
    (void)db.run("RELEASE claim_after");
    return claimed ? std::move(*claimed) : std::vector<core::Job>{};
}

/// The finish and its last output lines (rolled back together when the finish is refused).
core::Result<core::Job> finish_with_output(Connection& db, const JobFinish& finish) {
    if (!finish.output.empty()) {
        if (auto appended = sql::append_job_output(db, finish.id, finish.output); !appended) {
            return appended.error();
        }
    }
    return sql::finish_job(db, finish);
}

core::Result<JobFinishedAndClaimed> finish_then_claim(Connection& db,
                                                      const JobFinish& finish,
                                                      const JobClaim& claim,
                                                      int max) {
    auto finished = finish_with_output(db, finish);
    if (!finished) {
        return finished.error();
    }
    auto what = fmt::format("finishing job {}", finish.id);
    return JobFinishedAndClaimed{.job = std::move(*finished),
                                 .claimed = claim_after(db, claim, max, what)};
}

}  // namespace

core::Result<std::vector<core::Job>> SqlStore::claim_jobs(const JobClaim& claim, int max) {
    return write<std::vector<core::Job>>(
        [&](Connection& db) { return claim_up_to(db, claim, max); });
}

namespace {

core::Result<JobSubmittedAndClaimed> submit_then_claim(
    Connection& db, const JobSubmit& submit, const JobClaim& claim, int max, Served& served) {
    auto submitted = sql::submit_job(db, submit, served);
    if (!submitted) {
        return submitted.error();
    }
    if (max <= 0) {
        return JobSubmittedAndClaimed{.submitted = std::move(*submitted)};
    }
    auto what = fmt::format("submitting job {}", submit.job.id);
    return JobSubmittedAndClaimed{.submitted = std::move(*submitted),
                                  .claimed = claim_after(db, claim, max, what)};
}

}  // namespace

core::Result<JobSubmittedAndClaimed> SqlStore::submit_and_claim(const JobSubmit& submit,
                                                                const JobClaim& claim,
                                                                int max) {
    return write_serving<JobSubmittedAndClaimed>([&](Connection& db, Served& served) {
        return submit_then_claim(db, submit, claim, max, served);
    });
}

void SqlStore::submit_and_claim_async(JobSubmit submit,
                                      JobClaim claim,
                                      int max,
                                      SubmittedAndClaimedCallback done) {
    write_serving_async<JobSubmittedAndClaimed>(
        [submit = std::move(submit), claim = std::move(claim), max](Connection& db,
                                                                    Served& served) {
            return submit_then_claim(db, submit, claim, max, served);
        },
        std::move(done));
}

core::Result<JobFinishedAndClaimed> SqlStore::finish_and_claim(const JobFinish& finish,
                                                               const JobClaim& claim,
                                                               int max) {
    return write<JobFinishedAndClaimed>(
        [&](Connection& db) { return finish_then_claim(db, finish, claim, max); });
}

void SqlStore::finish_and_claim_async(JobFinish finish,
                                      JobClaim claim,
                                      int max,
                                      FinishedAndClaimedCallback done) {
    write_async<JobFinishedAndClaimed>(
        [finish = std::move(finish), claim = std::move(claim), max](Connection& db) {
            return finish_then_claim(db, finish, claim, max);
        },
        std::move(done));
}

void SqlStore::update_job_step_async(JobStepUpdate update, JobCallback done) {
    write_async<core::Job>(
        [update = std::move(update)](Connection& db) { return sql::update_job_step(db, update); },
        std::move(done));
}

core::Result<core::Job> SqlStore::update_job_step(const JobStepUpdate& update) {
    return write<core::Job>([&](Connection& db) { return sql::update_job_step(db, update); });
}

core::Result<void> SqlStore::heartbeat_jobs(const std::vector<std::string>& ids,
                                            core::TimePoint now) {
    if (ids.empty()) {
        return {};
    }
    return writer_->submit([&](Connection& db) { return sql::heartbeat_jobs(db, ids, now); });
}

core::Result<core::Job> SqlStore::finish_job(const JobFinish& finish) {
    return write<core::Job>([&](Connection& db) { return finish_with_output(db, finish); });
}

core::Result<core::Job> SqlStore::cancel_job(std::string_view id,
                                             std::string_view actor,
                                             core::TimePoint now) {
    return write<core::Job>([&](Connection& db) { return sql::cancel_job(db, id, actor, now); });
}

core::Result<core::Job> SqlStore::job(std::string_view id) {
    return read<core::Job>([&](Connection& db) { return select_job(db, id); });
}

core::Result<std::vector<core::Job>> SqlStore::jobs(const JobQuery& query) {
    return read<std::vector<core::Job>>([&](Connection& db) { return select_jobs(db, query); });
}

core::Result<std::vector<core::Job>> SqlStore::active_jobs() {
    return read<std::vector<core::Job>>([](Connection& db) { return select_active_jobs(db); });
}

core::Result<void> SqlStore::append_job_output(std::string_view id,
                                               const std::vector<core::OutputLine>& lines) {
    if (lines.empty()) {
        return {};
    }
    return writer_->submit([&](Connection& db) { return sql::append_job_output(db, id, lines); });
}

core::Result<std::vector<core::OutputLine>> SqlStore::job_output(const OutputQuery& query) {
    return read<std::vector<core::OutputLine>>(
        [&](Connection& db) { return select_job_output(db, query); });
}

core::Result<std::int64_t> SqlStore::last_output_seq(std::string_view id) {
    return read<std::int64_t>([&](Connection& db) { return sql::last_output_seq(db, id); });
}

core::Result<void> SqlStore::set_queue_paused(std::string_view queue,
                                              bool paused,
                                              std::string_view actor,
                                              core::TimePoint now) {
    return writer_->submit(
        [&](Connection& db) { return sql::set_queue_paused(db, queue, paused, actor, now); });
}

core::Result<std::vector<std::string>> SqlStore::paused_queues() {
    return read<std::vector<std::string>>([](Connection& db) { return select_paused_queues(db); });
}

core::Result<JobCounts> SqlStore::job_counts() {
    return read<JobCounts>([](Connection& db) { return count_jobs(db); });
}

core::Result<std::int64_t> SqlStore::prune_jobs(core::TimePoint before) {
    return write<std::int64_t>([&](Connection& db) { return sql::prune_jobs(db, before); });
}

core::Result<std::vector<Annotation>> SqlStore::due_annotations(core::TimePoint now, int limit) {
    return read<std::vector<Annotation>>(
        [&](Connection& db) { return select_due_annotations(db, now, limit); });
}

core::Result<std::optional<core::TimePoint>> SqlStore::next_annotation_at() {
    return read<std::optional<core::TimePoint>>(
        [](Connection& db) { return select_next_annotation_at(db); });
}

core::Result<void> SqlStore::annotation_posting(std::string_view job_id) {
    return writer_->submit([&](Connection& db) { return set_annotation_posting(db, job_id); });
}

core::Result<void> SqlStore::annotation_sent(const AnnotationSent& sent) {
    return writer_->submit([&](Connection& db) { return set_annotation_sent(db, sent); });
}

core::Result<void> SqlStore::annotation_failed(std::string_view job_id,
                                               std::string_view error,
                                               core::TimePoint next_attempt_at) {
    return writer_->submit(
        [&](Connection& db) { return set_annotation_failed(db, job_id, error, next_attempt_at); });
}

core::Result<std::int64_t> SqlStore::annotation_backlog() {
    return read<std::int64_t>([](Connection& db) { return count_annotation_backlog(db); });
}

core::Result<void> SqlStore::record_event(const core::Event& event) {
    return writer_->submit([&](Connection& db) { return append_event(db, event); });
}

core::Result<std::vector<core::Event>> SqlStore::events(const EventQuery& query) {
    return read<std::vector<core::Event>>([&](Connection& db) { return select_events(db, query); });
}

core::Result<std::int64_t> SqlStore::prune_events(core::TimePoint before) {
    return write<std::int64_t>([&](Connection& db) { return delete_events_before(db, before); });
}

core::Result<std::int64_t> SqlStore::record_probe_run(const ProbeRun& run) {
    return write<std::int64_t>([&](Connection& db) { return insert_probe_run(db, run); });
}

core::Result<std::vector<ProbeRun>> SqlStore::probe_runs(std::string_view scenario,
                                                         int limit,
                                                         std::int64_t before_id) {
    return read<std::vector<ProbeRun>>(
        [&](Connection& db) { return select_probe_runs(db, scenario, limit, before_id); });
}

core::Result<std::vector<ProbeRun>> SqlStore::latest_probe_runs() {
    return read<std::vector<ProbeRun>>([](Connection& db) { return select_latest_probe_runs(db); });
}

core::Result<std::vector<ProbeBucket>> SqlStore::probe_buckets(core::TimePoint since) {
    return read<std::vector<ProbeBucket>>(
        [&](Connection& db) { return select_probe_buckets(db, since); });
}

core::Result<std::vector<ProbeBucket>> SqlStore::probe_totals(core::TimePoint since) {
    return read<std::vector<ProbeBucket>>(
        [&](Connection& db) { return select_probe_totals(db, since); });
}

core::Result<bool> SqlStore::claim_probe(std::string_view scenario,
                                         std::optional<core::TimePoint> seen,
                                         core::TimePoint next) {
    return write<bool>([&](Connection& db) { return sql::claim_probe(db, scenario, seen, next); });
}

core::Result<std::vector<ProbeSlot>> SqlStore::probe_schedule() {
    return read<std::vector<ProbeSlot>>([](Connection& db) { return select_probe_schedule(db); });
}

core::Result<std::int64_t> SqlStore::prune_probe_runs(core::TimePoint runs_before,
                                                      core::TimePoint buckets_before) {
    return write<std::int64_t>(
        [&](Connection& db) { return delete_probe_runs(db, runs_before, buckets_before); });
}

core::Result<std::vector<AlarmState>> SqlStore::alarm_states() {
    return read<std::vector<AlarmState>>([](Connection& db) { return select_alarm_states(db); });
}

core::Result<bool> SqlStore::write_alarm(const AlarmState& next,
                                         std::int64_t seen_version,
                                         const std::vector<AlarmNotification>& notifications,
                                         const std::vector<core::Event>& events) {
    return write<bool>([&](Connection& db) {
        return sql::write_alarm(db, next, seen_version, notifications, events);
    });
}

core::Result<std::vector<bool>> SqlStore::write_alarms(const std::vector<AlarmWrite>& writes) {
    return write<std::vector<bool>>([&](Connection& db) -> core::Result<std::vector<bool>> {
        std::vector<bool> out;
        out.reserve(writes.size());
        for (const auto& w : writes) {
            auto written = sql::write_alarm(db, w.next, w.seen_version, w.notifications, w.events);
            if (!written) {
                return written.error();
            }
            out.push_back(*written);
        }
        return out;
    });
}

core::Result<std::int64_t> SqlStore::forget_alarms(const std::vector<std::string>& keep) {
    return write<std::int64_t>([&](Connection& db) { return sql::forget_alarms(db, keep); });
}

core::Result<std::vector<AlarmNotification>> SqlStore::due_alarm_notifications(core::TimePoint now,
                                                                               int limit) {
    return read<std::vector<AlarmNotification>>(
        [&](Connection& db) { return select_due_alarm_notifications(db, now, limit); });
}

core::Result<std::optional<core::TimePoint>> SqlStore::next_alarm_notification_at() {
    return read<std::optional<core::TimePoint>>(
        [](Connection& db) { return select_next_alarm_notification_at(db); });
}

core::Result<void> SqlStore::alarm_notification_done(std::int64_t id,
                                                     std::string_view outcome,
                                                     std::string_view error,
                                                     core::TimePoint now) {
    return write<void>(
        [&](Connection& db) { return sql::alarm_notification_done(db, id, outcome, error, now); });
}

core::Result<void> SqlStore::alarm_notification_failed(std::int64_t id,
                                                       std::string_view error,
                                                       core::TimePoint next_attempt_at) {
    return write<void>([&](Connection& db) {
        return sql::alarm_notification_failed(db, id, error, next_attempt_at);
    });
}

core::Result<std::vector<AlarmNotification>> SqlStore::alarm_notifications(int limit) {
    return read<std::vector<AlarmNotification>>(
        [&](Connection& db) { return select_alarm_notifications(db, limit); });
}

core::Result<std::int64_t> SqlStore::alarm_notification_backlog() {
    return read<std::int64_t>([](Connection& db) { return count_alarm_backlog(db); });
}

core::Result<void> SqlStore::add_silence(const Silence& silence, core::TimePoint now) {
    return write<void>([&](Connection& db) { return insert_silence(db, silence, now); });
}

core::Result<std::vector<Silence>> SqlStore::silences(core::TimePoint now, bool ended) {
    return read<std::vector<Silence>>(
        [&](Connection& db) { return select_silences(db, now, ended); });
}

core::Result<Silence> SqlStore::expire_silence(std::string_view id,
                                               std::string_view actor,
                                               core::TimePoint now) {
    return write<Silence>([&](Connection& db) { return sql::expire_silence(db, id, actor, now); });
}

core::Result<std::int64_t> SqlStore::prune_alarm_history(core::TimePoint before) {
    return write<std::int64_t>([&](Connection& db) { return delete_alarm_history(db, before); });
}

core::Result<void> SqlStore::join_instance(
    const InstanceRecord& instance,
    core::Millis stale_after,
    std::function<bool(const InstanceRecord& registered)> may_replace) {
    return writer_->submit(
        [&](Connection& db) { return sql::join_instance(db, instance, stale_after, may_replace); });
}

core::Result<bool> SqlStore::beat_instance(std::string_view instance,
                                           std::string_view run,
                                           std::string_view duty,
                                           core::TimePoint now,
                                           core::Millis lead_ttl) {
    return write<bool>(
        [&](Connection& db) { return sql::beat_instance(db, instance, run, duty, now, lead_ttl); });
}

core::Result<void> SqlStore::leave_instance(std::string_view instance, std::string_view run) {
    return writer_->submit([&](Connection& db) { return sql::leave_instance(db, instance, run); });
}

core::Result<std::vector<InstanceRecord>> SqlStore::instances() {
    return read<std::vector<InstanceRecord>>([](Connection& db) { return select_instances(db); });
}

core::Result<ProducerLease> SqlStore::claim_producer(std::string_view key,
                                                     std::string_view holder,
                                                     core::Millis ttl,
                                                     core::TimePoint now) {
    return write<ProducerLease>(
        [&](Connection& db) { return sql::claim_producer(db, key, holder, ttl, now); });
}

core::Result<void> SqlStore::release_producer(std::string_view key,
                                              std::string_view holder,
                                              std::int64_t fence,
                                              core::TimePoint now) {
    return writer_->submit(
        [&](Connection& db) { return sql::release_producer(db, key, holder, fence, now); });
}

core::Result<std::vector<ProducerLease>> SqlStore::producers() {
    return read<std::vector<ProducerLease>>([](Connection& db) { return select_producers(db); });
}

Stats SqlStore::stats() const {
    return writer_->stats();
}

core::Result<void> SqlStore::ping() {
    auto probe = [](Connection& db) -> core::Result<bool> {
        auto select = db.prepare("SELECT 1");
        if (!select) {
            return select.error();
        }
        return select->step();
    };
    if (auto read_ok = read<bool>(probe); !read_ok) {
        return read_ok.error();
    }
    // An empty operation still takes the write lock and commits: the writer is alive.
    return writer_->submit([](Connection&) { return core::Result<void>{}; });
}

core::Result<void> SqlStore::exec_for_test(std::string_view sql) {
    return writer_->submit([sql](Connection& db) { return db.exec(sql); });
}

void SqlStore::close() {
    std::lock_guard closing{close_mu_};
    if (feed_ != nullptr) {
        feed_->stop();
    }
    writer_->close();
    if (readers_ != nullptr) {
        readers_->close();
    }
    std::lock_guard lock{db_mutex_};
    if (!closed_) {
        closed_ = true;
        db_.reset();
        core::logger("store")->info("store closed");
    }
}

core::Error SqlStore::closed_error() {
    return core::Error{core::ErrorCode::kUnavailable, "store is closed"};
}

}  // namespace aviary::store::sql
