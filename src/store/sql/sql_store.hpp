#pragma once
// Private to src/store and its unit tests: store::Store over SQL, the same for both backends
// (the backend opens the connections and migrates; docs/architecture.md, "Store").
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "core/core.hpp"
#include "store/sql/connection.hpp"
#include "store/sql/group_commit.hpp"
#include "store/sql/leases.hpp"
#include "store/sql/read_pool.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

/// Another instance's changes as they arrive (PostgreSQL's LISTEN), on the feed's own thread.
class ChangeFeed {
public:
    using OnChange = std::function<void(char kind, std::string_view subject)>;
    virtual ~ChangeFeed() = default;
    /// Starts delivering each change (a Connection::notify kind and subject) that another
    /// instance's writer committed; after each (re)connection also a change::kJobsQueued, as
    /// changes may have been missed meanwhile.
    virtual void start(OnChange on_change) = 0;
    /// Stops and joins; no call is in progress after it returns. Idempotent.
    virtual void stop() = 0;
};

/// One write connection driven by the group-commit thread, and read connections beside it.
/// An in-memory SQLite database has no second connection to read from (`readers` null):
/// reads then run on the write connection under the mutex the writer holds per batch.
class SqlStore final : public Store {
public:
    SqlStore(std::unique_ptr<Connection> writer,
             std::unique_ptr<ReadPool> readers,
             int schema_version,
             std::unique_ptr<ChangeFeed> feed = nullptr);
    ~SqlStore() override;
    SqlStore(const SqlStore&) = delete;
    SqlStore& operator=(const SqlStore&) = delete;

    core::Result<ReconcileReport> reconcile_nodes(const std::vector<core::NodeSpec>& specs,
                                                  std::string_view actor,
                                                  core::TimePoint now) override;
    core::Result<std::vector<core::Node>> nodes(core::TimePoint now) override;
    core::Result<core::Node> node(std::string_view name, core::TimePoint now) override;

    core::Result<LeaseAttempt> try_lease(const LeaseRequest& request) override;
    void try_lease_async(LeaseRequest request, LeaseAttemptCallback done) override;
    void release_async(ReleaseRequest request, ReleaseCallback done) override;
    core::Result<std::optional<core::Lease>> release(const ReleaseRequest& request) override;
    core::Result<std::vector<core::Lease>> renew_lease(const LeaseIdRequest& request) override;
    core::Result<std::vector<core::Lease>> release_lease(const LeaseIdRequest& request) override;
    core::Result<std::vector<core::Lease>> expire_leases(core::TimePoint now) override;
    core::Result<std::optional<core::TimePoint>> next_lease_deadline() override;
    core::Result<std::optional<core::TimePoint>> next_job_run_at(core::TimePoint now) override;
    core::Result<std::vector<core::Lease>> leases(core::TimePoint now) override;

    core::Result<std::variant<LeaseAttempt, WaiterRecord>> enqueue(
        const WaiterRecord& waiter) override;
    core::Result<std::optional<WaiterRecord>> cancel_waiter(std::string_view ticket,
                                                            std::string_view actor,
                                                            core::TimePoint now) override;
    core::Result<WaiterRecord> waiter(std::string_view ticket, core::TimePoint now) override;
    core::Result<std::vector<WaiterRecord>> waiters(core::TimePoint now) override;
    core::Result<std::vector<WaiterRecord>> expire_waiters(core::TimePoint now) override;
    core::Result<std::vector<WaiterRecord>> drop_waiters(std::string_view instance,
                                                         std::string_view actor,
                                                         core::TimePoint now) override;
    void set_grant_listener(GrantListener listener) override;
    void set_change_listener(ChangeListener listener) override;

    core::Result<void> reconcile_worker_ids(const std::vector<core::WorkerId>& workers,
                                            std::string_view actor,
                                            core::TimePoint now) override;
    core::Result<std::vector<core::WorkerId>> worker_ids() override;
    core::Result<core::WorkerId> worker_id(std::string_view id) override;
    core::Result<NodeChange> put_node(const core::NodeSpec& spec,
                                      std::string_view actor,
                                      core::TimePoint now) override;
    core::Result<void> remove_node(std::string_view name,
                                   std::string_view actor,
                                   core::TimePoint now,
                                   bool machine) override;
    core::Result<NodeChange> start_maintenance(std::string_view name,
                                               std::string_view reason,
                                               std::string_view actor,
                                               core::TimePoint now) override;
    core::Result<bool> set_gate(std::string_view name,
                                core::TimePoint until,
                                core::TimePoint seen,
                                core::TimePoint now) override;
    core::Result<void> configure_gates(const std::vector<std::string>& gated,
                                       core::TimePoint now) override;
    core::Result<NodeChange> end_maintenance(std::string_view name,
                                             std::string_view actor,
                                             core::TimePoint now) override;

    core::Result<JobSubmitted> submit_job(const JobSubmit& submit) override;
    core::Result<std::optional<core::Job>> claim_job(const JobClaim& claim) override;
    core::Result<std::vector<core::Job>> claim_jobs(const JobClaim& claim, int max) override;
    core::Result<core::Job> update_job_step(const JobStepUpdate& update) override;
    core::Result<void> heartbeat_jobs(const std::vector<std::string>& ids,
                                      core::TimePoint now) override;
    core::Result<core::Job> finish_job(const JobFinish& finish) override;
    core::Result<JobSubmittedAndClaimed> submit_and_claim(const JobSubmit& submit,
                                                          const JobClaim& claim,
                                                          int max) override;
    void submit_and_claim_async(JobSubmit submit,
                                JobClaim claim,
                                int max,
                                SubmittedAndClaimedCallback done) override;
    void update_job_step_async(JobStepUpdate update, JobCallback done) override;
    void finish_and_claim_async(JobFinish finish,
                                JobClaim claim,
                                int max,
                                FinishedAndClaimedCallback done) override;
    core::Result<JobFinishedAndClaimed> finish_and_claim(const JobFinish& finish,
                                                         const JobClaim& claim,
                                                         int max) override;
    core::Result<core::Job> cancel_job(std::string_view id,
                                       std::string_view actor,
                                       core::TimePoint now) override;
    core::Result<core::Job> job(std::string_view id) override;
    core::Result<std::vector<core::Job>> jobs(const JobQuery& query) override;
    core::Result<std::vector<core::Job>> active_jobs() override;
    core::Result<void> append_job_output(std::string_view id,
                                         const std::vector<core::OutputLine>& lines) override;
    core::Result<std::vector<core::OutputLine>> job_output(const OutputQuery& query) override;
    core::Result<std::int64_t> last_output_seq(std::string_view id) override;
    core::Result<void> set_queue_paused(std::string_view queue,
                                        bool paused,
                                        std::string_view actor,
                                        core::TimePoint now) override;
    core::Result<std::vector<std::string>> paused_queues() override;
    core::Result<JobCounts> job_counts() override;
    core::Result<std::int64_t> prune_jobs(core::TimePoint before) override;
    core::Result<void> record_event(const core::Event& event) override;

    core::Result<std::vector<Annotation>> due_annotations(core::TimePoint now, int limit) override;
    core::Result<std::optional<core::TimePoint>> next_annotation_at() override;
    core::Result<void> annotation_posting(std::string_view job_id) override;
    core::Result<void> annotation_sent(const AnnotationSent& sent) override;
    core::Result<void> annotation_failed(std::string_view job_id,
                                         std::string_view error,
                                         core::TimePoint next_attempt_at) override;
    core::Result<std::int64_t> annotation_backlog() override;

    core::Result<std::vector<core::Event>> events(const EventQuery& query) override;
    core::Result<std::int64_t> prune_events(core::TimePoint before) override;
    core::Result<std::int64_t> record_probe_run(const ProbeRun& run) override;
    core::Result<std::vector<ProbeRun>> probe_runs(std::string_view scenario,
                                                   int limit,
                                                   std::int64_t before_id) override;
    core::Result<std::vector<ProbeRun>> latest_probe_runs() override;
    core::Result<std::vector<ProbeBucket>> probe_buckets(core::TimePoint since) override;
    core::Result<std::vector<ProbeBucket>> probe_totals(core::TimePoint since) override;
    core::Result<bool> claim_probe(std::string_view scenario,
                                   std::optional<core::TimePoint> seen,
                                   core::TimePoint next) override;
    core::Result<std::vector<ProbeSlot>> probe_schedule() override;
    core::Result<std::int64_t> prune_probe_runs(core::TimePoint runs_before,
                                                core::TimePoint buckets_before) override;
    core::Result<std::vector<AlarmState>> alarm_states() override;
    core::Result<bool> write_alarm(const AlarmState& next,
                                   std::int64_t seen_version,
                                   const std::vector<AlarmNotification>& notifications,
                                   const std::vector<core::Event>& events) override;
    core::Result<std::vector<bool>> write_alarms(const std::vector<AlarmWrite>& writes) override;
    core::Result<std::int64_t> forget_alarms(const std::vector<std::string>& keep) override;
    core::Result<std::vector<AlarmNotification>> due_alarm_notifications(core::TimePoint now,
                                                                         int limit) override;
    core::Result<std::optional<core::TimePoint>> next_alarm_notification_at() override;
    core::Result<void> alarm_notification_done(std::int64_t id,
                                               std::string_view outcome,
                                               std::string_view error,
                                               core::TimePoint now) override;
    core::Result<void> alarm_notification_failed(std::int64_t id,
                                                 std::string_view error,
                                                 core::TimePoint next_attempt_at) override;
    core::Result<std::vector<AlarmNotification>> alarm_notifications(int limit) override;
    core::Result<std::int64_t> alarm_notification_backlog() override;
    core::Result<void> add_silence(const Silence& silence, core::TimePoint now) override;
    core::Result<std::vector<Silence>> silences(core::TimePoint now, bool ended) override;
    core::Result<Silence> expire_silence(std::string_view id,
                                         std::string_view actor,
                                         core::TimePoint now) override;
    core::Result<std::int64_t> prune_alarm_history(core::TimePoint before) override;

    core::Result<void> join_instance(
        const InstanceRecord& instance,
        core::Millis stale_after,
        std::function<bool(const InstanceRecord& registered)> may_replace) override;
    core::Result<bool> beat_instance(std::string_view instance,
                                     std::string_view run,
                                     std::string_view duty,
                                     core::TimePoint now,
                                     core::Millis lead_ttl) override;
    core::Result<void> leave_instance(std::string_view instance, std::string_view run) override;
    core::Result<std::vector<InstanceRecord>> instances() override;
    core::Result<ProducerLease> claim_producer(std::string_view key,
                                               std::string_view holder,
                                               core::Millis ttl,
                                               core::TimePoint now) override;
    core::Result<void> release_producer(std::string_view key,
                                        std::string_view holder,
                                        std::int64_t fence,
                                        core::TimePoint now) override;
    core::Result<std::vector<ProducerLease>> producers() override;

    Stats stats() const override;
    core::Result<void> ping() override;
    int schema_version() override { return schema_version_; }
    void close() override;

    /// Runs `sql` in the next group commit: how tests set what the Store interface cannot
    /// (a node in maintenance, a node added through the API).
    core::Result<void> exec_for_test(std::string_view sql);

private:
    /// Runs `work(Connection&) -> Result<T>` in the next group commit; returns its result once
    /// that commit is durable (or the commit's error).
    template <class T, class Work>
    core::Result<T> write(Work work) {
        std::optional<core::Result<T>> out;
        auto operation = [&out, &work](Connection& db) -> core::Result<void> {
            out.emplace(work(db));
            if (!*out) {
                return out->error();
            }
            return {};
        };
        if (auto committed = writer_->submit(operation); !committed) {
            return committed.error();  // also covers a failed COMMIT after `work` succeeded
        }
        return std::move(*out);
    }

    /// write() without waiting: `done` gets the result on the writer thread once the commit
    /// is durable (or the commit's error).
    template <class T, class Work>
    void write_async(Work work, std::function<void(core::Result<T>)> done) {
        auto out = std::make_shared<std::optional<core::Result<T>>>();
        auto operation = [out, work = std::move(work)](Connection& db) -> core::Result<void> {
            out->emplace(work(db));
            if (!**out) {
                return (*out)->error();
            }
            return {};
        };
        auto answer = [out, done = std::move(done)](core::Result<void> committed) {
            if (!committed) {
                done(committed.error());  // also a failed COMMIT after the work succeeded
                return;
            }
            done(std::move(**out));
        };
        writer_->submit_async(std::move(operation), std::move(answer));
    }

    /// `work(Connection&, Served&) -> Result<T>`, which may serve waiters, as a write: the
    /// grants of a successful operation wait in batch_grants_ for the batch's commit.
    template <class T, class Work>
    auto serving(Work work) {
        return [this, work = std::move(work)](Connection& db) -> core::Result<T> {
            Served served;
            auto out = work(db, served);
            if (out) {
                for (auto& grant : served) {
                    db.notify(change::kGranted, grant.ticket);
                    batch_grants_.push_back(std::move(grant));
                }
            }
            return out;
        };
    }

    /// write() for a `work` that may serve waiters (serving()).
    template <class T, class Work>
    core::Result<T> write_serving(Work work) {
        return write<T>(serving<T>(std::move(work)));
    }

    /// write_serving() answered as write_async().
    template <class T, class Work>
    void write_serving_async(Work work, std::function<void(core::Result<T>)> done) {
        write_async<T>(serving<T>(std::move(work)), std::move(done));
    }

    /// `work(Connection&) -> Result<T>` on a read connection inside one read transaction,
    /// so a result built from several queries sees one state of the database.
    template <class T, class Work>
    core::Result<T> read_snapshot(Work work) {
        return read<T>([&work](Connection& db) -> core::Result<T> {
            if (auto begun = db.begin_read(); !begun) {
                return begun.error();
            }
            auto out = work(db);
            (void)db.run(out ? "COMMIT" : "ROLLBACK");
            return out;
        });
    }

    /// Runs `work(Connection&) -> Result<T>` on a read connection.
    template <class T, class Work>
    core::Result<T> read(Work work) {
        if (readers_ == nullptr) {
            std::lock_guard lock{db_mutex_};
            if (closed_) {
                return closed_error();
            }
            return work(*db_);
        }
        auto borrowed = readers_->borrow();
        if (!borrowed) {
            return borrowed.error();
        }
        if (auto recovered = (**borrowed).recover(); !recovered) {
            return recovered.error();
        }
        return work(**borrowed);
    }

    static core::Error closed_error();
    /// GroupCommit's AfterBatch: hands a committed batch's grants to the listener.
    void after_batch(bool committed);
    /// The feed's callback: a remote grant goes to the grant listener (read back from the
    /// store), anything else to the change listener.
    void on_remote_change(char kind, std::string_view subject);

    std::unique_ptr<Connection> db_;     // the write connection
    std::mutex db_mutex_;                // held by the writer per batch, and by in-memory reads
    std::unique_ptr<ReadPool> readers_;  // null for an in-memory database
    // Declared before writer_: its thread uses them until close() joins it.
    std::vector<WaiterGrant> batch_grants_;  // writer thread only: grants awaiting the commit
    std::mutex listener_mu_;                 // held while the listener runs or is replaced
    GrantListener listener_;
    std::unique_ptr<GroupCommit> writer_;
    std::mutex change_mu_;  // held while the change listener runs or is replaced
    ChangeListener change_listener_;
    std::unique_ptr<ChangeFeed> feed_;  // started last, stopped first
    int schema_version_;
    bool closed_ = false;  // guarded by db_mutex_
    std::mutex close_mu_;
};

}  // namespace aviary::store::sql
