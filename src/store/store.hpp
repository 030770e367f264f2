#pragma once
/// store: aviary's state, durable, behind one interface with two backends: SQLite for one
/// instance, PostgreSQL for several sharing it (docs/architecture.md, docs/scaling.md).
///
/// Every state change is one transaction that also appends an Event (the audit trail).
/// Writes go through group commit: one writer thread drains its queue into one
/// `BEGIN IMMEDIATE ... COMMIT` in which one failing operation is undone alone and does not
/// fail its neighbours (a SAVEPOINT each, or on SQLite none unless one fails having written); a
/// caller returns only after the commit that holds its write (so an acknowledged write survives
/// kill -9). There is no timer: a batch is what queued while the previous commit was being made
/// durable.
///
/// All methods block the calling thread (on the writer queue or a read connection) and are
/// safe to call from any thread. Coroutines call them through net::offload(), never straight
/// from the I/O loop.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/core.hpp"
#include "store/logs.hpp"

namespace aviary::store {

struct Settings {
    std::string driver = "sqlite";  ///< "sqlite" or "postgres"
    /// SQLite file; ":memory:" for tests; empty means <data_dir>/aviary.db (set by the wiring).
    std::string path;
    /// postgres: a libpq URI (postgresql://user@host:5432/db) or keyword string, without the
    /// password, which comes apart (a file or the environment): the URL is logged.
    std::string url;
    std::string password;  ///< postgres: empty leaves it to libpq (PGPASSWORD, ~/.pgpass)
    core::Millis connect_timeout{std::chrono::seconds{5}};  ///< postgres
    std::string synchronous = "full";  ///< "full" (fsync each commit) or "normal"
    int read_connections = 4;          ///< read connections beside the writer
    /// SQLite: how long to wait for another process's lock. PostgreSQL: a statement unanswered
    /// this long is abandoned with its connection (a paused or partitioned server).
    core::Millis busy_timeout{std::chrono::seconds{5}};
    core::Millis event_retention{std::chrono::hours{24 * 30}};  ///< events older are pruned
    core::Millis retention_sweep{std::chrono::hours{1}};        ///< how often they are pruned
    /// Instances sharing the store beat this often; the leader of the periodic work holds it
    /// leader_ttl past its last beat (docs/scaling.md).
    core::Millis heartbeat{std::chrono::seconds{2}};
    core::Millis leader_ttl{std::chrono::seconds{10}};
};

/// Counters that make group commit visible (exported on /metrics).
struct Stats {
    std::uint64_t commits = 0;        ///< transactions committed by the writer
    std::uint64_t writes = 0;         ///< operations applied
    std::uint64_t failed_writes = 0;  ///< operations that failed, their writes rolled back alone
    std::uint64_t largest_batch = 0;  ///< most operations in one commit so far
    /// Batches rolled back and run again with a savepoint per operation, because one operation
    /// run without a savepoint failed having written (docs/architecture.md, "The store").
    std::uint64_t batches_run_again = 0;
};

/// What a lease asks for: one named node, or `count` nodes whose labels match `selector`
/// (exactly one of the two). Also what a waiter waits for.
struct LeaseRequest {
    std::string node;       ///< one named node, or
    core::Labels selector;  ///< any in-service nodes whose labels match every pair
    int count = 1;          ///< selector only: how many nodes, all or nothing
    std::string owner;
    std::string reason;
    std::string actor;  ///< who asked (the token identity, or the owner without tokens)
    core::TimePoint now;
    core::Millis ttl;
    bool exclusive = false;  ///< refuse even the same owner when the node is already held
};

/// Why an acquire was not granted at once: what the fleet needs to word the refusal.
struct Refusal {
    std::vector<core::Lease> holders;  ///< the active leases in the way (a named node's holder)
    int matching = 0;                  ///< nodes the request could use
    int leased = 0;                    ///< of those, held now
    int maintenance = 0;               ///< of those, out of service
    int gating = 0;         ///< of those, free but their gate has not passed (selector requests)
    int waiters_ahead = 0;  ///< queued waiters that want any of them (FIFO: they go first)
};

/// What an acquire did. `leases` holds the caller's new or renewed lease (one per node, one
/// id) when `granted`; otherwise `refusal` says why not.
struct LeaseAttempt {
    bool granted = false;
    bool renewed = false;  ///< a named node the owner already held (neither side exclusive)
    std::vector<core::Lease> leases;
    std::vector<core::Lease> lapsed;  ///< expired leases this acquire replaced
    Refusal refusal;
};

struct ReleaseRequest {
    std::string node;
    /// The owner who must hold the lease; empty means any holder (an admin's forced free).
    std::string owner;
    std::string actor;
    std::string kind = "lease.released";  ///< event kind: "lease.released" or "lease.freed"
    core::TimePoint now;
};

/// Renew or release every node of one lease.
struct LeaseIdRequest {
    std::string lease_id;
    std::string owner;  ///< who must hold it; empty means any holder (an admin)
    std::string actor;
    core::TimePoint now;
    core::Millis ttl{0};                  ///< renew only: expires_at becomes now + ttl
    std::string kind = "lease.released";  ///< release only: the event kind
};

enum class WaiterState { kWaiting, kGranted };

/// A queued acquire (a row of the waiters table).
struct WaiterRecord {
    std::string ticket;    ///< chosen by the caller (core::new_id()), unique
    LeaseRequest request;  ///< what it waits for; request.now is when it queued
    core::TimePoint deadline;
    WaiterState state = WaiterState::kWaiting;
    std::string lease_id;  ///< kGranted: the lease it got
    /// kWaiting: 1 + earlier waiting waiters that want any node this one could take.
    int position = 0;
    /// The serve instance whose connection waits (server.instance): its restart drops it.
    std::string instance;
};

/// A waiter served by someone else's transaction (a release, an expiry...).
struct WaiterGrant {
    std::string ticket;
    std::vector<core::Lease> leases;  ///< one per node, one id
    std::vector<core::Lease> lapsed;  ///< expired leases the grant replaced
};

/// Called on the store's writer thread after each commit that served waiters, with every
/// grant of that commit in serving order (and, on a shared store, on its listener thread
/// with a grant another instance's commit made). It runs between batches: it must only hand the
/// grants over (queue them, post them to an executor), never block, and never call the store
/// (the writer would wait for itself).
using GrantListener = std::function<void(std::vector<WaiterGrant>)>;

/// What another instance's commit changed that this instance may act on (set_change_listener).
enum class RemoteChange {
    kJobsQueued,  ///< a job became runnable: free workers may claim it
    kJob,         ///< a job's state, step or output changed: its watchers re-read it
    kCancel,      ///< a running job was asked to stop: the instance running it stops it
};

/// Called on the store's listener thread for each change another instance committed (the
/// job's id, or "" for kJobsQueued). It must only hand the change over, never block. Also
/// called with kJobsQueued after the feed reconnects, as changes may have been missed.
using ChangeListener = std::function<void(RemoteChange change, std::string_view job_id)>;

/// A node written through the API or taken in or out of service.
struct NodeChange {
    core::Node node;                   ///< as it is after the change
    bool created = false;              ///< put_node: added rather than updated
    std::optional<core::Lease> ended;  ///< start_maintenance: the lease it ended
};

struct EventQuery {
    std::string node;  ///< empty: every node
    std::optional<core::TimePoint> since;
    std::optional<std::int64_t> before_id;  ///< paging cursor: events with id < before_id
    /// Following: events with id > after_id, oldest first (the others come newest first).
    std::optional<std::int64_t> after_id;
    int limit = 100;
};

/// What reconcile_nodes changed.
struct ReconcileReport {
    std::vector<std::string> added;
    std::vector<std::string> updated;
    std::vector<std::string> removed;
    /// Dropped from the config but still leased: kept until the lease ends.
    std::vector<std::string> kept_leased;
};

// --- jobs ----------------------------------------------------------------------------------

/// A job to insert, with the lease rule its submission carries (one transaction).
struct JobSubmit {
    /// Everything but seq, position and the attempt fields: id, action, queue, node, params,
    /// requester, owner, unique_key, retry_of, exclusive, max_attempts, steps, created_at,
    /// run_at. The store sets state queued.
    core::Job job;
    /// Implicit acquire (tweety's Upgrade with Owner): taken or renewed in the same
    /// transaction; the lease outlives the job. job.lease_id becomes its id.
    std::optional<LeaseRequest> acquire;
    /// Without acquire: refuse when the node is leased by anyone but `allowed_holder` (empty:
    /// by anyone). A free node stays free.
    bool require_unheld = false;
    std::string allowed_holder;
    /// Refuse when the node is out of service (a mutating job), decided in the submission's
    /// own transaction: JobSubmitted::maintenance_reason says so and nothing is written.
    bool refuse_in_maintenance = false;
    std::string actor;
};

/// What submit_job did. When `refused`, nothing was written and `refusal` (the holder, or the
/// acquire's refusal) says why; otherwise `job` is the inserted job, or the active job with the
/// same unique_key when `duplicate` (then no job was written; the implicit acquire, a renewal
/// by the same owner, was).
struct JobSubmitted {
    core::Job job;
    bool duplicate = false;
    bool refused = false;
    Refusal refusal;
    std::optional<LeaseAttempt> lease;  ///< the implicit acquire, when one was made
    /// Set (with refused) when refuse_in_maintenance found the node out of service: its reason.
    std::optional<std::string> maintenance_reason;
};

/// A worker asking for its next job.
struct JobClaim {
    std::string runner;  ///< this serve's run id, recorded on the job
    core::TimePoint now;
    /// Per-action caps: an action with this many running (or cancelling) jobs is skipped.
    std::map<std::string, int, std::less<>> action_caps;
};

/// A step starting: recorded before the step runs (pgid 0 when it runs no child), or the
/// child it started (pgid set) once spawned.
struct JobStepUpdate {
    std::string id;
    int attempt = 0;  ///< guards: the update applies only to this attempt while it runs
    int step = 0;
    std::string step_name;
    std::int64_t pgid = 0;
    std::uint64_t pgid_start_ticks = 0;
    core::TimePoint now;
};

/// Ends an attempt. Applies only while the job is running or cancelling in `attempt`
/// (kBusy otherwise: someone else already moved it — it is never finished twice).
struct JobFinish {
    std::string id;
    int attempt = 0;
    /// succeeded, failed, cancelled or timed_out; or queued with retry_at (a retry: the
    /// attempt failed and another will run at retry_at).
    core::JobState state = core::JobState::kFailed;
    std::optional<core::TimePoint> retry_at;
    std::string result = "{}";
    std::string error;
    std::string actor;
    std::string event_kind;  ///< empty: "job." + the state's name; "job.rescued" at start
    core::TimePoint now;
    /// The attempt's last output lines, appended in the same transaction (saves a commit).
    std::vector<core::OutputLine> output;
    /// state succeeded only: the image tag the job's node runs now (its last install or
    /// upgrade), or "" when the job uninstalled it; recorded on the node in the same
    /// transaction. nullopt: the job deployed nothing.
    std::optional<std::string> deployed_tag;
};

/// What submit_and_claim did: the submission, and the jobs claimed after it.
struct JobSubmittedAndClaimed {
    JobSubmitted submitted;
    std::vector<core::Job> claimed;
};

/// What finish_and_claim did: the finished job, and the jobs it claimed after.
struct JobFinishedAndClaimed {
    core::Job job;
    std::vector<core::Job> claimed;
};

struct JobQuery {
    std::string node;  ///< empty: every node
    std::optional<core::JobState> state;
    std::optional<std::int64_t> before_seq;  ///< paging cursor: jobs with seq < before_seq
    int limit = 100;
};

/// Lines of one job's output, always returned in seq order.
struct OutputQuery {
    std::string job_id;
    std::optional<std::int64_t> after_seq;   ///< lines with seq > after_seq (following)
    std::optional<std::int64_t> before_seq;  ///< lines with seq < before_seq (paging back)
    int limit = 1000;
    bool newest = false;  ///< the last `limit` lines of the range rather than the first
};

/// What /metrics shows about the queue.
struct JobCounts {
    std::int64_t queued = 0;
    std::int64_t running = 0;                      ///< running or cancelling
    std::optional<core::TimePoint> oldest_queued;  ///< created_at of the oldest queued job
};

// --- probe runs ----------------------------------------------------------------------------

/// One finished run of a canary scenario (docs/probes.md).
struct ProbeRun {
    std::int64_t id = 0;
    std::string scenario;
    core::TimePoint started_at{};
    core::Millis duration{0};
    std::string outcome;  ///< "passed", "failed" (a check did not hold) or "broken" (unreachable)
    std::string failed_step;
    std::string message;
    std::string steps = "[]";  ///< the steps' results, a JSON array as probes wrote it
    std::string instance;      ///< the instance that ran it
};

/// A scenario's runs counted per kProbeBucket of start time: what availability over a window,
/// and the dashboard's chart, are computed from without reading every run.
struct ProbeBucket {
    std::string scenario;
    core::TimePoint start{};
    std::int64_t runs = 0;
    std::int64_t failed = 0;
    std::int64_t broken = 0;
    std::int64_t duration_ms = 0;  ///< summed over the runs
};
inline constexpr core::Millis kProbeBucket{std::chrono::minutes{5}};

/// When a scenario runs next (probe_schedule()).
struct ProbeSlot {
    std::string scenario;
    core::TimePoint next_run_at{};
};

// --- alarms (docs/probes.md, "Alarms") ---------------------------------------------------

/// One alarm's durable state: a rule applied to one scenario ("RULE/SCENARIO"). Only the
/// leader evaluates alarms, and each write is a compare-and-set on `version`, so a leader that
/// lost its lead mid-evaluation cannot overwrite what the new one decided.
struct AlarmState {
    std::string name;  ///< "RULE/SCENARIO"
    std::string rule;
    std::string scenario;
    std::string state = "ok";  ///< "ok" or "firing"
    core::TimePoint since{};   ///< when it entered `state`
    /// ok: since when the rule's condition has held (firing waits for the rule's `for`).
    std::optional<core::TimePoint> pending_since;
    /// firing: since when the condition has been clear (resolved after `keep_firing_for`).
    std::optional<core::TimePoint> clear_since;
    std::string summary;          ///< the last evaluation's reading, for people
    std::string silenced_by;      ///< why it notifies nobody now ("silence ID: reason"); "" if not
    std::string notified = "ok";  ///< the state the notifiers last heard of
    core::TimePoint notified_at{};  ///< when they last heard (a reminder is due after that)
    core::TimePoint evaluated_at{};
    std::int64_t version = 0;  ///< 0: not stored yet; each write adds one
};

/// A notification of an alarm in the store's outbox: written in the transaction that changes
/// the alarm, sent by notify (one per notifier), retried with backoff until sent or given up.
struct AlarmNotification {
    std::int64_t id = 0;
    std::string alarm;
    std::string rule;
    std::string scenario;
    std::string notifier;     ///< which configured notifier sends it
    std::string kind;         ///< "firing", "resolved" or "reminder"
    std::string summary;      ///< what failed and the figures
    std::string link;         ///< where a person looks next
    core::TimePoint at{};     ///< when it was raised
    core::TimePoint since{};  ///< when the alarm entered the state it tells of
    int attempts = 0;         ///< failed sends
    core::TimePoint next_attempt_at{};
    std::string last_error;
    std::string outcome;  ///< "" while it is to be sent, "sent" or "abandoned"
    std::optional<core::TimePoint> done_at;
};

/// One alarm's compare-and-set write (Store::write_alarms).
struct AlarmWrite {
    AlarmState next;
    std::int64_t seen_version = 0;
    std::vector<AlarmNotification> notifications;
    std::vector<core::Event> events;
};

/// An explicit silence: alarms it matches notify nobody until it ends.
struct Silence {
    std::string id;
    /// "*", a rule's name, a scenario's name, or one alarm's "RULE/SCENARIO".
    std::string matcher;
    std::string reason;
    std::string created_by;
    core::TimePoint starts_at{};
    core::TimePoint ends_at{};
};

// --- annotation outbox ---------------------------------------------------------------------

/// A job's annotation in the outbox. submit_job writes it (from Job::annotation) not yet due;
/// the claim that starts the job's first attempt sets `time`; the finish that ends the job
/// (terminal) sets `time_end`, `outcome` and `error`. A job cancelled before it ever started
/// drops its row. The sender posts it once started, and patches it once ended.
struct Annotation {
    std::string job_id;
    std::string node;
    std::string action;
    std::string text;  ///< as submitted
    std::vector<std::string> tags;
    core::TimePoint time;                     ///< the job's first start
    std::optional<core::TimePoint> time_end;  ///< set once the job is terminal
    std::string outcome;                      ///< with time_end: "succeeded", "failed", ...
    std::string error;                        ///< with time_end: the job's error
    std::optional<std::int64_t> remote_id;    ///< the receiver's id, once posted
    bool end_sent = false;                    ///< the end is known to the receiver
    /// A post was begun and its answer never recorded (serve died, or the reply was lost):
    /// before posting again the sender must look the annotation up, or it could duplicate it.
    bool post_in_doubt = false;
    int attempts = 0;                 ///< failed sends since the last success
    core::TimePoint next_attempt_at;  ///< not sent again before this (backoff)
    std::string last_error;
};

/// What changed in the outbox after a send.
struct AnnotationSent {
    std::string job_id;
    std::optional<std::int64_t> remote_id;  ///< the post's answer (or the one found)
    bool end_sent = false;                  ///< the end went too (in the post, or a patch)
};

/// One registered run of a serve instance (a row of the instances table).
struct InstanceRecord {
    std::string name;  ///< server.instance: unique among live instances on one store
    std::string run;   ///< this process's run id
    std::string host;  ///< the host name it runs on
    std::int64_t pid = 0;
    core::TimePoint started_at;
    core::TimePoint heartbeat_at;
    std::vector<std::string> leads;  ///< instances(): the duties it leads now
};

/// Who may produce blocks with one signing key (docs/producers.md). The fence only grows: it
/// goes up by one each time the lease changes hands, and a release keeps the row (holder "") so
/// the next holder's fence is higher still. A node acts on production only with the current
/// fence.
struct ProducerLease {
    std::string key;     ///< the signing key or producer account the lease is for
    std::string holder;  ///< the node that may produce with it; "" when free
    std::int64_t fence = 0;
    core::TimePoint acquired_at{};
    core::TimePoint expires_at{};
};

class Store {
public:
    virtual ~Store() = default;

    // --- nodes ---------------------------------------------------------------------------
    /// Makes the config's nodes (source "config") match `specs`: adds, updates driver, tag,
    /// labels and note; removes config nodes no longer listed unless leased. Nodes added
    /// through the API (source "api") are untouched. One transaction, one event per change;
    /// serves waiters.
    virtual core::Result<ReconcileReport> reconcile_nodes(const std::vector<core::NodeSpec>& specs,
                                                          std::string_view actor,
                                                          core::TimePoint now) = 0;
    /// Makes the worker ids (an external scheduler's, mapped to machines) match `workers`, the
    /// config's list: adds, remaps and removes, one event each ("worker.added", "worker.updated",
    /// "worker.removed", the machine as the event's node). kInvalidArgument for an id listed
    /// twice or an empty one. One transaction.
    virtual core::Result<void> reconcile_worker_ids(const std::vector<core::WorkerId>& workers,
                                                    std::string_view actor,
                                                    core::TimePoint now) = 0;
    /// Every worker id, sorted.
    virtual core::Result<std::vector<core::WorkerId>> worker_ids() = 0;
    /// kNotFound for an id that is not listed; a listed id without a machine has machine "".
    virtual core::Result<core::WorkerId> worker_id(std::string_view id) = 0;
    /// Every node, sorted by name, with its lease as of `now` (a lapsed lease shows as free).
    virtual core::Result<std::vector<core::Node>> nodes(core::TimePoint now) = 0;
    /// kNotFound for an unknown node.
    virtual core::Result<core::Node> node(std::string_view name, core::TimePoint now) = 0;

    // --- leases --------------------------------------------------------------------------
    // Every write that frees capacity (a release, an expiry, a node back in service or added,
    // a waiter gone) serves the waiters in the same transaction, first come first served: a
    // waiter gets all its nodes at once when they are free and no earlier waiter that is
    // still waiting could use them. The grants reach the GrantListener after the commit.

    /// Leases at once, all or nothing. A named node: granted when free or lapsed, renewed
    /// (every node of its lease, same id and acquired_at) when the same owner holds it and
    /// neither the lease nor the request is exclusive. A selector: the first `count` free
    /// matching nodes by name. Never takes a node a queued waiter could use (FIFO); refusals
    /// are granted=false with the Refusal filled in. kNotFound for an unknown node or a
    /// selector fewer than `count` nodes match; kUnavailable for a named node in maintenance;
    /// kInvalidArgument for a malformed request.
    virtual core::Result<LeaseAttempt> try_lease(const LeaseRequest& request) = 0;
    /// Ends the node's lease (that node only, when the lease has several). Returns the ended
    /// lease, or nullopt when nobody held it (which succeeds). kNotOwner (naming the holder)
    /// when `owner` is set and someone else holds it; kNotFound for an unknown node.
    virtual core::Result<std::optional<core::Lease>> release(const ReleaseRequest& request) = 0;
    /// try_lease and release without a thread waiting on the commit (the lease hot path):
    /// `done` is called once, on the store's writer thread, when the commit is durable or has
    /// failed, and must only hand the result over (post it to an executor). Once the store is
    /// closed, `done` gets kUnavailable at once on the calling thread.
    using LeaseAttemptCallback = std::function<void(core::Result<LeaseAttempt> attempt)>;
    virtual void try_lease_async(LeaseRequest request, LeaseAttemptCallback done) = 0;
    using ReleaseCallback = std::function<void(core::Result<std::optional<core::Lease>> ended)>;
    virtual void release_async(ReleaseRequest request, ReleaseCallback done) = 0;
    /// Moves expires_at of every node of the lease to now + ttl. kNotFound when the id is not
    /// held (unknown, ended or lapsed); kNotOwner naming the holder when `owner` is set and
    /// differs.
    virtual core::Result<std::vector<core::Lease>> renew_lease(const LeaseIdRequest& request) = 0;
    /// Ends every node of the lease; errors as renew_lease.
    virtual core::Result<std::vector<core::Lease>> release_lease(const LeaseIdRequest& request) = 0;
    /// Ends every lease with expires_at <= now, one "lease.expired" event each. Returns them.
    virtual core::Result<std::vector<core::Lease>> expire_leases(core::TimePoint now) = 0;
    /// Every active lease, grouped by id, oldest first.
    virtual core::Result<std::vector<core::Lease>> leases(core::TimePoint now) = 0;
    /// The earliest time a lease expires or a waiter's deadline passes; nullopt when there is
    /// neither. The expiry task runs then rather than on a fixed sweep.
    virtual core::Result<std::optional<core::TimePoint>> next_lease_deadline() = 0;

    // --- waiters -------------------------------------------------------------------------
    /// try_lease, and when that is refused, queues `waiter` (ticket, request, deadline) last.
    /// Returns the granted attempt or the queued waiter with its position. Errors as
    /// try_lease; kAlreadyExists for a ticket in use.
    virtual core::Result<std::variant<LeaseAttempt, WaiterRecord>> enqueue(
        const WaiterRecord& waiter) = 0;
    /// Removes the waiter. When it was already granted, its lease is released too (nobody is
    /// left to use it). Returns what was removed; nullopt for an unknown ticket. An empty
    /// actor means the waiter's own.
    virtual core::Result<std::optional<WaiterRecord>> cancel_waiter(std::string_view ticket,
                                                                    std::string_view actor,
                                                                    core::TimePoint now) = 0;
    /// One waiter, waiting (with its position) or granted. kNotFound for an unknown ticket.
    virtual core::Result<WaiterRecord> waiter(std::string_view ticket, core::TimePoint now) = 0;
    /// Every waiting waiter, in serving order, with positions.
    virtual core::Result<std::vector<WaiterRecord>> waiters(core::TimePoint now) = 0;
    /// Removes waiting waiters whose deadline <= now ("waiter.expired" each; returned), and
    /// forgets granted ones whose deadline passed and whose lease has ended.
    virtual core::Result<std::vector<WaiterRecord>> expire_waiters(core::TimePoint now) = 0;
    /// Removes every waiter of `instance` ("waiter.dropped" for each waiting one; returned):
    /// at its start, the connections that waited died with its previous run. Other instances'
    /// waiters are theirs.
    virtual core::Result<std::vector<WaiterRecord>> drop_waiters(std::string_view instance,
                                                                 std::string_view actor,
                                                                 core::TimePoint now) = 0;
    /// Replaces the listener (empty: none). Returns after any call of the previous listener in
    /// progress has finished, so its owner may then be destroyed. One listener per store.
    virtual void set_grant_listener(GrantListener listener) = 0;
    /// Replaces the listener of other instances' changes (empty: none); as set_grant_listener.
    /// Grants another instance made to this instance's waiters reach the GrantListener.
    /// SQLite has no other instance: it never calls it.
    virtual void set_change_listener(ChangeListener listener) = 0;

    // --- nodes (API) ---------------------------------------------------------------------
    /// Adds or updates a node with source "api". kAlreadyExists for a config node;
    /// kInvalidArgument for a name that is not a DNS label.
    virtual core::Result<NodeChange> put_node(const core::NodeSpec& spec,
                                              std::string_view actor,
                                              core::TimePoint now) = 0;
    /// Removes an API node, or an API machine when `machine`. kNotFound (also for the other
    /// kind: "t-linux-1 is a machine, not a node"); kAlreadyExists for a config node; kBusy
    /// when leased.
    virtual core::Result<void> remove_node(std::string_view name,
                                           std::string_view actor,
                                           core::TimePoint now,
                                           bool machine) = 0;
    /// Records that `name`'s gate passed (until: handed to selector acquires until then), when
    /// its gate_until is still `seen` (what it was when the gate run began) and nobody holds
    /// it: a pass measured before a lease that came and went meanwhile is not one. Serves the
    /// waiters. False when the node changed meanwhile; kNotFound for an unknown node. No event:
    /// a pass every few minutes per node is not audit material; a failure is maintenance.
    virtual core::Result<bool> set_gate(std::string_view name,
                                        core::TimePoint until,
                                        core::TimePoint seen,
                                        core::TimePoint now) = 0;
    /// Makes exactly `gated` the gated nodes: a node newly gated starts not passed, a node no
    /// longer gated is handed out as any other (waiters served). Unknown names are skipped.
    virtual core::Result<void> configure_gates(const std::vector<std::string>& gated,
                                               core::TimePoint now) = 0;
    /// Takes the node out of service (or changes the reason), ending its lease if any.
    /// kNotFound; kInvalidArgument for an empty reason.
    virtual core::Result<NodeChange> start_maintenance(std::string_view name,
                                                       std::string_view reason,
                                                       std::string_view actor,
                                                       core::TimePoint now) = 0;
    /// Back in service (a no-op when it is); serves waiters. kNotFound.
    virtual core::Result<NodeChange> end_maintenance(std::string_view name,
                                                     std::string_view actor,
                                                     core::TimePoint now) = 0;

    // --- jobs ----------------------------------------------------------------------------
    // Every job write appends one event ("job.queued", "job.started", "job.succeeded",
    // "job.failed", "job.timed_out", "job.cancel_requested", "job.cancelled", "job.retrying",
    // "job.rescued", "queue.paused", "queue.resumed") with the job's summary as JSON.

    /// Applies `acquire` or `require_unheld` (a refusal writes nothing), then inserts a queued
    /// job, unless an active (queued, running, cancelling) job has the same unique_key (then
    /// returns it, duplicate=true). One transaction. kNotFound for an unknown node; kAlreadyExists
    /// for an id in use; errors of try_lease.
    virtual core::Result<JobSubmitted> submit_job(const JobSubmit& submit) = 0;
    /// submit_job, then claim_jobs(claim, max) in the same transaction: a submission that
    /// finds a worker free starts with one commit. When the submission fails nothing is
    /// claimed; when only the claim fails, the submission stands and `claimed` is empty. The
    /// claim takes the first runnable jobs in store order, which need not include this one.
    virtual core::Result<JobSubmittedAndClaimed> submit_and_claim(const JobSubmit& submit,
                                                                  const JobClaim& claim,
                                                                  int max) = 0;
    /// submit_and_claim without blocking the caller (max 0: submit alone), answered as
    /// finish_and_claim_async: on the writer thread once durable or failed.
    using SubmittedAndClaimedCallback =
        std::function<void(core::Result<JobSubmittedAndClaimed> result)>;
    virtual void submit_and_claim_async(JobSubmit submit,
                                        JobClaim claim,
                                        int max,
                                        SubmittedAndClaimedCallback done) = 0;
    /// Claims the first runnable queued job in store order and marks it running (attempt + 1,
    /// started_at, heartbeat_at, runner), guarded by state = queued. Runnable: run_at <= now,
    /// its queue not paused, its action under its cap, and when exclusive, its node not in
    /// maintenance, no running or cancelling exclusive job on its node and no earlier queued
    /// exclusive job for that node.
    /// nullopt when none is runnable.
    virtual core::Result<std::optional<core::Job>> claim_job(const JobClaim& claim) = 0;
    /// claim_job up to `max` times in one transaction (a worker pool filling its free slots
    /// with one commit). Empty when none is runnable.
    virtual core::Result<std::vector<core::Job>> claim_jobs(const JobClaim& claim, int max) = 0;
    /// Records the step (and its process group). kBusy when the attempt is no longer running.
    virtual core::Result<core::Job> update_job_step(const JobStepUpdate& update) = 0;
    /// update_job_step without blocking the caller, answered as finish_and_claim_async. Writes
    /// from one thread commit in the order they were made.
    using JobCallback = std::function<void(core::Result<core::Job> job)>;
    virtual void update_job_step_async(JobStepUpdate update, JobCallback done) = 0;
    /// Moves heartbeat_at of these running jobs to `now` (no event).
    virtual core::Result<void> heartbeat_jobs(const std::vector<std::string>& ids,
                                              core::TimePoint now) = 0;
    /// Ends the attempt as `finish` says (see JobFinish). Returns the job as it is after.
    virtual core::Result<core::Job> finish_job(const JobFinish& finish) = 0;
    /// finish_job, then claim_jobs(claim, max) in the same transaction: a worker hands its
    /// slot to the next job with one commit (the claim sees the finish: the node is free).
    /// When the finish fails nothing is claimed; when only the claim fails, the finish stands
    /// and `claimed` is empty.
    virtual core::Result<JobFinishedAndClaimed> finish_and_claim(const JobFinish& finish,
                                                                 const JobClaim& claim,
                                                                 int max) = 0;
    /// finish_and_claim without blocking the caller (a worker's hot path: no thread waits on
    /// the commit). `done` is called once, on the store's writer thread, when the commit is
    /// durable or has failed; it must only hand the result over (post it to an executor).
    /// Once the store is closed, `done` gets kUnavailable at once on the calling thread.
    using FinishedAndClaimedCallback =
        std::function<void(core::Result<JobFinishedAndClaimed> result)>;
    virtual void finish_and_claim_async(JobFinish finish,
                                        JobClaim claim,
                                        int max,
                                        FinishedAndClaimedCallback done) = 0;
    /// queued -> cancelled at once; running -> cancelling (cancel_requested, durable: it
    /// survives a restart); cancelling stays. kInvalidArgument naming the state for a finished
    /// job; kNotFound.
    virtual core::Result<core::Job> cancel_job(std::string_view id,
                                               std::string_view actor,
                                               core::TimePoint now) = 0;
    /// One job, with its queue position when queued. kNotFound.
    virtual core::Result<core::Job> job(std::string_view id) = 0;
    /// Newest first.
    virtual core::Result<std::vector<core::Job>> jobs(const JobQuery& query) = 0;
    /// Every running or cancelling job, oldest first: what a crash left behind, and what the
    /// heartbeat watchdog checks.
    virtual core::Result<std::vector<core::Job>> active_jobs() = 0;
    /// Appends lines (seq chosen by the caller, increasing per job). No event.
    virtual core::Result<void> append_job_output(std::string_view id,
                                                 const std::vector<core::OutputLine>& lines) = 0;
    virtual core::Result<std::vector<core::OutputLine>> job_output(const OutputQuery& query) = 0;
    /// The highest seq written for the job, 0 when none.
    virtual core::Result<std::int64_t> last_output_seq(std::string_view id) = 0;
    /// Pauses or resumes a queue (durable). Pausing stops new claims; running jobs go on.
    virtual core::Result<void> set_queue_paused(std::string_view queue,
                                                bool paused,
                                                std::string_view actor,
                                                core::TimePoint now) = 0;
    virtual core::Result<std::vector<std::string>> paused_queues() = 0;
    virtual core::Result<JobCounts> job_counts() = 0;
    /// Deletes finished jobs (and their output) with finished_at < before; returns how many.
    /// Their annotations go too once wholly sent (an unsent one is kept until it is).
    /// The earliest run_at after `now` of a queued job (a retry waiting out its backoff), or
    /// nullopt. The engine's due task runs then.
    virtual core::Result<std::optional<core::TimePoint>> next_job_run_at(core::TimePoint now) = 0;
    virtual core::Result<std::int64_t> prune_jobs(core::TimePoint before) = 0;
    // --- annotation outbox ----------------------------------------------------------------
    /// Started annotations with something left to send (no remote_id yet, or ended and
    /// !end_sent) and next_attempt_at <= now, oldest start first.
    virtual core::Result<std::vector<Annotation>> due_annotations(core::TimePoint now,
                                                                  int limit) = 0;
    /// The earliest next_attempt_at among started annotations with something left to send,
    /// for the sender's sleep; nullopt when the outbox has nothing to send.
    virtual core::Result<std::optional<core::TimePoint>> next_annotation_at() = 0;
    /// Marks a post as begun (post_in_doubt), durably, before it is sent.
    virtual core::Result<void> annotation_posting(std::string_view job_id) = 0;
    /// Records a success: remote_id (when set), end_sent (when true), post_in_doubt cleared,
    /// attempts reset, last_error cleared.
    virtual core::Result<void> annotation_sent(const AnnotationSent& sent) = 0;
    /// Records a failed send: attempts + 1, last_error, next_attempt_at.
    virtual core::Result<void> annotation_failed(std::string_view job_id,
                                                 std::string_view error,
                                                 core::TimePoint next_attempt_at) = 0;
    /// Annotations started and not yet wholly sent (for /metrics).
    virtual core::Result<std::int64_t> annotation_backlog() = 0;

    /// Appends an event that goes with no other change (a refused action, for the audit
    /// trail). event.id is ignored.
    virtual core::Result<void> record_event(const core::Event& event) = 0;

    // --- events --------------------------------------------------------------------------
    /// Newest first.
    virtual core::Result<std::vector<core::Event>> events(const EventQuery& query) = 0;
    /// Deletes events older than `before`; returns how many.
    virtual core::Result<std::int64_t> prune_events(core::TimePoint before) = 0;

    // --- instances -----------------------------------------------------------------------
    // Every serve (or worker) sharing the store registers under its instance name, beats, and
    // competes for leadership of the periodic work (docs/scaling.md).

    /// Registers `instance` as run `run`. When another run of the same name is registered and
    /// has beaten within `stale_after`, `may_replace` decides (it runs inside the transaction,
    /// on the store's writer thread: it must be quick and must not call the store): true takes
    /// the name over (that run is known dead: same host, its pid gone), false refuses with
    /// kAlreadyExists naming the run, its host and pid, and when it last beat.
    virtual core::Result<void> join_instance(
        const InstanceRecord& instance,
        core::Millis stale_after,
        std::function<bool(const InstanceRecord& registered)> may_replace) = 0;
    /// Moves the run's heartbeat to `now`, then takes or keeps the leadership of `duty` when it
    /// is free, lapsed or already this run's (expires_at = now + lead_ttl); "leader.elected"
    /// when it changes hands. Returns whether this run leads. kNotFound when the run is no
    /// longer registered (another run took its name): it must stop.
    virtual core::Result<bool> beat_instance(std::string_view instance,
                                             std::string_view run,
                                             std::string_view duty,
                                             core::TimePoint now,
                                             core::Millis lead_ttl) = 0;
    /// Unregisters the run and gives up its leadership (a clean stop hands over at once).
    virtual core::Result<void> leave_instance(std::string_view instance, std::string_view run) = 0;
    /// Every registered instance, by name, with the duties each leads.
    virtual core::Result<std::vector<InstanceRecord>> instances() = 0;

    // --- producer leases (docs/producers.md) ----------------------------------------------
    /// Takes producer lease `key` for `holder` (expires_at = now + ttl): when nobody holds it,
    /// its holder's lease lapsed, or `holder` holds it already (renewed, same fence). A new
    /// holder gets the fence plus one and a "producer.acquired" event. Held by another until
    /// later: kBusy naming the holder, its fence and until when.
    virtual core::Result<ProducerLease> claim_producer(std::string_view key,
                                                       std::string_view holder,
                                                       core::Millis ttl,
                                                       core::TimePoint now) = 0;
    /// Gives the lease up when `holder` holds it with `fence` ("producer.released"); anything
    /// else is kNotOwner naming the holder and fence now.
    virtual core::Result<void> release_producer(std::string_view key,
                                                std::string_view holder,
                                                std::int64_t fence,
                                                core::TimePoint now) = 0;
    /// Every producer lease, by key.
    virtual core::Result<std::vector<ProducerLease>> producers() = 0;

    // --- probe runs (docs/probes.md) -------------------------------------------------------
    /// Stores a finished run and counts it into its scenario's bucket (kProbeBucket wide), in
    /// one transaction. Returns the run's id.
    virtual core::Result<std::int64_t> record_probe_run(const ProbeRun& run) = 0;
    /// A scenario's runs, newest first, older than run `before_id` (0: from the newest).
    virtual core::Result<std::vector<ProbeRun>> probe_runs(std::string_view scenario,
                                                           int limit,
                                                           std::int64_t before_id) = 0;
    /// Each scenario's newest run.
    virtual core::Result<std::vector<ProbeRun>> latest_probe_runs() = 0;
    /// Every scenario's buckets that start at or after `since`, by scenario then time.
    virtual core::Result<std::vector<ProbeBucket>> probe_buckets(core::TimePoint since) = 0;
    /// The same summed per scenario: one ProbeBucket each, `start` the first period counted.
    /// Read from the buckets up to the next whole hour, then hourly and daily counts kept
    /// beside them, so 30 days cost a few dozen rows per scenario.
    virtual core::Result<std::vector<ProbeBucket>> probe_totals(core::TimePoint since) = 0;
    /// Claims a scenario's next run: moves its next run time from `seen` (nullopt: it has none
    /// yet) to `next`. False when the time is no longer `seen`: another instance claimed it, so
    /// each run happens on one instance.
    virtual core::Result<bool> claim_probe(std::string_view scenario,
                                           std::optional<core::TimePoint> seen,
                                           core::TimePoint next) = 0;
    /// When each scenario runs next.
    virtual core::Result<std::vector<ProbeSlot>> probe_schedule() = 0;
    /// Deletes runs started before `runs_before` and buckets before `buckets_before`; returns
    /// how many runs went.
    virtual core::Result<std::int64_t> prune_probe_runs(core::TimePoint runs_before,
                                                        core::TimePoint buckets_before) = 0;

    // --- alarms (docs/probes.md, "Alarms") -------------------------------------------------
    /// Every alarm's state, by name.
    virtual core::Result<std::vector<AlarmState>> alarm_states() = 0;
    /// Writes `next` when the stored version is still `seen_version` (0: not stored yet), with
    /// its version set to seen_version + 1, and in the same transaction queues `notifications`
    /// and records `events`. False when another writer got there first (nothing written).
    virtual core::Result<bool> write_alarm(const AlarmState& next,
                                           std::int64_t seen_version,
                                           const std::vector<AlarmNotification>& notifications,
                                           const std::vector<core::Event>& events) = 0;
    /// write_alarm for each of `writes` in one transaction, so an evaluation that moves
    /// thousands of alarms commits once. Each is its own compare-and-set: out[i] is false when
    /// writes[i] lost to another writer (nothing of it written; the others are).
    virtual core::Result<std::vector<bool>> write_alarms(const std::vector<AlarmWrite>& writes) = 0;
    /// Deletes the alarms whose names are not in `keep` (their rule or scenario left the
    /// config); returns how many went. Their notifications stay in the outbox and are still
    /// sent (the evaluation queues a "resolved" first for one the notifiers think fires).
    virtual core::Result<std::int64_t> forget_alarms(const std::vector<std::string>& keep) = 0;
    /// Notifications still to send whose next attempt is due, oldest first.
    virtual core::Result<std::vector<AlarmNotification>> due_alarm_notifications(
        core::TimePoint now, int limit) = 0;
    /// The earliest next attempt of a notification still to send; nullopt when none is.
    virtual core::Result<std::optional<core::TimePoint>> next_alarm_notification_at() = 0;
    /// Records a notification's end: `outcome` "sent" or "abandoned" (with why).
    virtual core::Result<void> alarm_notification_done(std::int64_t id,
                                                       std::string_view outcome,
                                                       std::string_view error,
                                                       core::TimePoint now) = 0;
    /// Records a failed send: attempts + 1, last_error, next_attempt_at.
    virtual core::Result<void> alarm_notification_failed(std::int64_t id,
                                                         std::string_view error,
                                                         core::TimePoint next_attempt_at) = 0;
    /// The newest notifications (sent or not), newest first: what an operator checks.
    virtual core::Result<std::vector<AlarmNotification>> alarm_notifications(int limit) = 0;
    /// Notifications still to send (for /metrics).
    virtual core::Result<std::int64_t> alarm_notification_backlog() = 0;
    /// Stores a silence ("silence.added" event). kAlreadyExists for a known id.
    virtual core::Result<void> add_silence(const Silence& silence, core::TimePoint now) = 0;
    /// Silences that have not ended by `now` (with `ended`, those too), newest first.
    virtual core::Result<std::vector<Silence>> silences(core::TimePoint now, bool ended) = 0;
    /// Ends a silence now ("silence.expired" event by `actor`); kNotFound for an unknown id,
    /// kInvalidArgument for one already ended.
    virtual core::Result<Silence> expire_silence(std::string_view id,
                                                 std::string_view actor,
                                                 core::TimePoint now) = 0;
    /// Deletes notifications done before `before` and silences that ended before it.
    virtual core::Result<std::int64_t> prune_alarm_history(core::TimePoint before) = 0;

    // --- health --------------------------------------------------------------------------
    virtual Stats stats() const = 0;
    /// A cheap round trip through a read connection and the writer: readiness.
    virtual core::Result<void> ping() = 0;
    virtual int schema_version() = 0;
    /// Drains the writer queue, commits, and closes every connection. Idempotent; further
    /// calls fail with kUnavailable.
    virtual void close() = 0;
};

// --- membership -------------------------------------------------------------------------

/// This process as one of the instances sharing a store (docs/scaling.md). It registers
/// under its instance name, beats on the scheduler, and holds or waits for the leadership of
/// the periodic work: the scheduler runs `leader_only` tasks only while this instance leads.
struct MembershipSettings {
    std::string instance;  ///< empty: the host name
    /// How often the instance beats. Leadership lasts `leader_ttl` past each beat, so a dead
    /// leader is replaced within leader_ttl + heartbeat.
    core::Millis heartbeat{std::chrono::seconds{2}};
    core::Millis leader_ttl{std::chrono::seconds{10}};
    /// False for a process that must never lead (a worker: it does not run the periodic work).
    bool lead = true;
};

class Membership {
public:
    Membership(Store& store, core::Clock& clock, MembershipSettings settings);
    /// leave(), if joined.
    ~Membership();
    Membership(const Membership&) = delete;
    Membership& operator=(const Membership&) = delete;

    /// Registers this run. kAlreadyExists when a live instance holds the name: another host's
    /// that beat within leader_ttl, or a live aviary process on this host. A run of this name
    /// whose process is gone (a crash, kill -9) is taken over at once.
    core::Result<void> join();
    /// The beat task (not leader_only) and the scheduler's leadership hook.
    void schedule(core::Scheduler& scheduler);
    /// Unregisters and resigns leadership, so another instance takes over at its next beat.
    void leave();

    const std::string& name() const { return name_; }
    const std::string& run() const { return run_; }
    bool leads() const { return leads_.load(); }

private:
    void beat(core::TimePoint now);

    Store& store_;
    core::Clock& clock_;
    MembershipSettings settings_;
    std::string name_;
    std::string run_ = core::new_id();
    std::atomic<bool> joined_{false};
    std::atomic<bool> leads_{false};
    std::shared_ptr<spdlog::logger> log_;
};

/// The duty whose leader runs every leader_only scheduler task.
inline constexpr std::string_view kSchedulerDuty = "scheduler";

/// Where the store is, for messages: the SQLite file, or the PostgreSQL URL (which holds no
/// password: the config refuses one).
std::string describe(const Settings& settings);

/// Opens (creating if needed) and migrates the store named by `settings`.
core::Result<std::unique_ptr<Store>> open(const Settings& settings);

// `aviary store copy`: moves a deployment's state from its SQLite store to PostgreSQL, for a
// team that outgrows one machine (docs/scaling.md, "Moving to PostgreSQL").

struct CopyOptions {
    /// Empties the destination's tables first (in the same transaction) instead of refusing a
    /// destination that holds rows.
    bool replace = false;
};

/// What a copy moved: each table's rows in the order they were copied, counted in the source's
/// snapshot and again in the destination before the commit (the two agree, or nothing is
/// committed).
struct CopyReport {
    struct Table {
        std::string name;
        std::int64_t rows = 0;
    };
    std::vector<Table> tables;
    int schema_version = 0;
};

/// Copies every table of the SQLite store `from` (driver "sqlite", its path) into the
/// PostgreSQL store `to` (driver "postgres", its url and password) in one transaction: nodes,
/// leases, waiters, jobs with their output, events, the annotation outbox, paused queues and
/// worker ids. Both are migrated to this build's schema first. The source is read in one
/// snapshot, so a serve still writing to it loses what it writes after; instances and leaders
/// are each instance's own and are not copied. A destination that holds rows is refused
/// unless `options.replace`.
core::Result<CopyReport> copy(const Settings& from, const Settings& to, const CopyOptions& options);

}  // namespace aviary::store
