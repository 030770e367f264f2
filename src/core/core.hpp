#pragma once
/// core: the vocabulary every component shares.
///
/// Domain types (Node, Lease, Event, Job), errors as values (Result<T> / Error with a closed
/// ErrorCode list), time (Clock, with a ManualClock for tests), ids, named loggers and the
/// Scheduler every periodic and delayed task runs on. Depends on nothing in aviary. Everything here
/// is safe to use from any thread unless a comment says otherwise.
#include <spdlog/fwd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

/// Aborts with `why` when `cond` is false: a broken invariant is a bug, not an error value.
#define AVIARY_ASSERT(cond, why)                                           \
    do {                                                                   \
        if (!(cond)) {                                                     \
            ::aviary::core::assert_failed(#cond, why, __FILE__, __LINE__); \
        }                                                                  \
    } while (false)

namespace aviary::core {

[[noreturn]] void assert_failed(const char* cond, const char* why, const char* file, int line);

// ---------------------------------------------------------------------------------------------
// Errors

/// The closed list of failures that are part of aviary's contract. src/api maps each one to a
/// JSON-RPC code and an HTTP status in one switch; add a code here before returning a new kind.
enum class ErrorCode {
    kInvalidArgument,   ///< the caller sent something malformed or out of range
    kNotFound,          ///< unknown node, lease, job...
    kAlreadyExists,     ///< creating what is already there
    kBusy,              ///< held by someone else (the message names the holder)
    kNotOwner,          ///< acting on a lease the caller does not hold
    kUnauthenticated,   ///< no or bad credentials
    kPermissionDenied,  ///< credentials fine, action not allowed
    kUnavailable,       ///< out of service, shutting down, or a dependency is down
    kUnimplemented,     ///< not in this version
    kTimeout,           ///< a deadline passed
    kStorage,           ///< the store failed (disk full, corrupt, locked)
    kInternal,          ///< a bug or an unexpected exception, mapped at a top-level catch
};

/// Stable lower-case name, e.g. "not_owner"; used in logs and API error data.
std::string_view to_string(ErrorCode code);

struct Error {
    ErrorCode code;
    std::string message;  ///< lower case, names the object, makes sense to an operator
};

/// A T or an Error. Construct from either; test with `if (result)`.
template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

    bool has_value() const { return v_.index() == 0; }
    explicit operator bool() const { return has_value(); }

    T& value() & {
        AVIARY_ASSERT(has_value(), "value() of a failed Result");
        return std::get<0>(v_);
    }
    const T& value() const& {
        AVIARY_ASSERT(has_value(), "value() of a failed Result");
        return std::get<0>(v_);
    }
    T&& value() && {
        AVIARY_ASSERT(has_value(), "value() of a failed Result");
        return std::get<0>(std::move(v_));
    }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const {
        AVIARY_ASSERT(!has_value(), "error() of a successful Result");
        return std::get<1>(v_);
    }

private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error)) {}  // NOLINT: implicit

    bool has_value() const { return !error_; }
    explicit operator bool() const { return has_value(); }
    const Error& error() const {
        AVIARY_ASSERT(error_.has_value(), "error() of a successful Result");
        return *error_;
    }

private:
    std::optional<Error> error_;
};

// ---------------------------------------------------------------------------------------------
// Time

/// Wall-clock instants with millisecond resolution: what the store keeps and the API shows.
using TimePoint = std::chrono::sys_time<std::chrono::milliseconds>;
using Millis = std::chrono::milliseconds;

class Clock {
public:
    virtual ~Clock() = default;
    virtual TimePoint now() const = 0;
};

class SystemClock final : public Clock {
public:
    TimePoint now() const override;
};

/// A clock that moves only when told to. Thread-safe.
class ManualClock final : public Clock {
public:
    explicit ManualClock(TimePoint start = TimePoint{Millis{1'700'000'000'000}}) : now_(start) {}
    TimePoint now() const override { return now_.load(); }
    void set(TimePoint t) { now_.store(t); }
    void advance(Millis d) { now_.store(now_.load() + d); }

private:
    std::atomic<TimePoint> now_;
};

/// RFC 3339 in UTC with milliseconds: "2026-11-22T10:00:00.123Z".
std::string format_time(TimePoint t);
/// Parses what format_time writes (and whole seconds, and "Z" or "+00:00").
Result<TimePoint> parse_time(std::string_view text);
/// "30s", "5m", "24h", "1h30m", "250ms", "7d". Rejects empty, negative and unit-less text.
Result<Millis> parse_duration(std::string_view text);
/// The shortest text parse_duration reads back to `d`: 90s -> "1m30s".
std::string format_duration(Millis d);

// ---------------------------------------------------------------------------------------------
// Ids

/// A new 26-character id, sortable by creation time (ULID layout: 48-bit ms + 80 random bits,
/// Crockford base32). Unique across processes without coordination.
std::string new_id();

// ---------------------------------------------------------------------------------------------
// Domain types

using Labels = std::map<std::string, std::string, std::less<>>;

enum class NodeState { kFree, kLeased, kMaintenance };
std::string_view to_string(NodeState state);

/// How a machine is reached: its network names and the out-of-band controllers a reboot
/// escalates to (docs/machines.md). Never a secret: ssh keys, IPMI passwords and SNMP
/// communities come from files or the environment, named in the config.
struct MachineSpec {
    std::string hostname;  ///< its name on the network, shown to people
    std::string address;   ///< where to reach it (IP or DNS name); empty: hostname
    std::string ssh_user = "root";
    int ssh_port = 22;
    std::string ipmi_address;  ///< the BMC (host or host:port); empty: no IPMI
    std::string ipmi_user;
    std::string pdu_host;             ///< the PDU's SNMP agent (host or host:port); empty: no PDU
    int pdu_outlet = 0;               ///< the machine's outlet on the PDU, from 1; 0 without a PDU
    std::vector<std::string> groups;  ///< permission rules and selectors name these

    bool operator==(const MachineSpec&) const = default;
    /// address, or hostname when no address is given.
    const std::string& reach() const { return address.empty() ? hostname : address; }
};

/// A node as declared in the config or through the API (what a driver needs to reach it).
struct NodeSpec {
    std::string name;  ///< the helm release name; DNS-1123 label
    std::string driver = "sim";
    std::string image_tag;
    Labels labels;
    std::string note;
    /// Set for a machine (driver ssh or none): a host reached over the network rather than a
    /// node a driver deploys.
    std::optional<MachineSpec> machine;
    /// Driver sidecar: the sidecar's control API (`http://host:port`), where serve reaches the
    /// `aviary supervise` that runs the node (docs/producers.md). Empty for every other driver.
    std::string control_url;
};

/// An external scheduler's worker id (the roller's tc_worker_id) and the machine behind it. A
/// worker may be listed before it has a machine: `machine` is then empty.
struct WorkerId {
    std::string id;
    std::string machine;

    bool operator==(const WorkerId&) const = default;
};

/// Who holds a node and until when. Every lease expires. A lease of several nodes (acquired
/// together, all or nothing) is one Lease per node sharing one id.
struct Lease {
    std::string id;
    std::string node;
    std::string owner;
    std::string reason;
    TimePoint acquired_at;
    TimePoint expires_at;
    bool exclusive = false;  ///< acquired exclusive: the same owner cannot acquire it again
};

/// True when every pair of `selector` is in `labels` (an empty selector matches everything).
bool labels_match(const Labels& labels, const Labels& selector);

/// A node as the pool sees it now.
struct Node {
    NodeSpec spec;
    NodeState state = NodeState::kFree;
    std::optional<Lease> lease;      ///< set when state is kLeased
    std::string maintenance_reason;  ///< set when state is kMaintenance
    /// A gated node (its pool names a gate scenario, docs/probes.md "Gated leases") goes to
    /// acquires by selector only until this: its gate passed, and no lease has used the pass
    /// since. The epoch: not passed. nullopt: not gated.
    std::optional<TimePoint> gate_until;
    std::string source = "config";  ///< "config" (reconciled at start) or "api"
    /// The image tag the node runs now, as its last successful deploying job (install,
    /// upgrade) left it; empty when no job has deployed it (or one uninstalled it). spec's
    /// image_tag is the configured one.
    std::string deployed_tag;
};

/// One entry of the audit trail: who did what, when, and the state before and after
/// (compact JSON objects, "{}" when there was none).
struct Event {
    std::int64_t id = 0;
    TimePoint at;
    std::string actor;
    std::string kind;  ///< dotted, e.g. "lease.acquired", "lease.expired", "node.added"
    std::string node;
    std::string before = "{}";
    std::string after = "{}";
};

/// True for a DNS-1123 label: 1-63 of [a-z0-9-], starting and ending alphanumeric.
bool is_dns_label(std::string_view name);

// ---------------------------------------------------------------------------------------------
// Jobs

/// A job's parameters after validation: name -> value, typed by the action's ParamSpecs.
using Params = std::map<std::string, std::string, std::less<>>;

/// queued -> running -> succeeded | failed | timed_out; a cancel moves queued straight to
/// cancelled and running through cancelling to cancelled. A retry waits as queued with a
/// later run_at. docs/api.md maps these to the roller's status names.
enum class JobState { kQueued, kRunning, kSucceeded, kFailed, kCancelling, kCancelled, kTimedOut };
/// "queued", "running", "succeeded", "failed", "cancelling", "cancelled", "timed_out".
std::string_view to_string(JobState state);
std::optional<JobState> parse_job_state(std::string_view text);
/// succeeded, failed, cancelled or timed_out: the job will not change again.
bool is_terminal(JobState state);

/// One action run on one node: the one job shape every surface shows.
/// A Grafana-style annotation a job asks for when it is submitted: kept in the store's outbox
/// with the job, marked with the job's start and end in the transactions that change its
/// state, and sent by notify.
struct JobAnnotation {
    std::string text;               ///< what happened: "upgrade lotus-0 to v1.2.3 by anton"
    std::vector<std::string> tags;  ///< none empty: "deploy", "node:lotus-0", ...
};

struct Job {
    std::string id;  ///< new_id(): sortable by creation
    std::string action;
    std::string queue = "default";  ///< the action's queue (queues pause and resume)
    std::string node;
    Params params;
    std::string requester;   ///< who submitted it (token identity, or the owner without tokens)
    std::string owner;       ///< the lease owner it runs for; empty when run on a free node
    std::string lease_id;    ///< the lease taken or renewed by the implicit acquire
    std::string unique_key;  ///< action + node + params: a duplicate while active returns this
    std::string retry_of;    ///< `job retry`: the finished job it re-runs
    JobState state = JobState::kQueued;
    bool exclusive = true;  ///< mutating: one exclusive job per node runs at a time
    int attempt = 0;        ///< attempts started so far
    int max_attempts = 1;   ///< retries allowed = max_attempts - 1
    int steps = 0;          ///< how many steps the action has
    int step = 0;           ///< the step running now (1-based); 0 before the first
    std::string step_name;
    bool cancel_requested = false;
    TimePoint created_at;
    TimePoint run_at;                      ///< queued: not before this (retry backoff)
    std::optional<TimePoint> started_at;   ///< the current (or last) attempt's start
    std::optional<TimePoint> finished_at;  ///< set in a terminal state
    std::optional<TimePoint> heartbeat_at;
    std::string runner;  ///< the serve instance running it (its run id)
    /// The running step's process group and its leader's start time (/proc ticks since boot),
    /// so a later run can kill exactly that group; 0 when no child runs.
    std::int64_t pgid = 0;
    std::uint64_t pgid_start_ticks = 0;
    std::string result = "{}";  ///< compact JSON object: what the last step reported
    std::string error;          ///< why it failed, timed out, was cancelled or rescued
    std::int64_t seq = 0;       ///< store order (the paging cursor)
    int position = 0;  ///< queued exclusive job: 1 + exclusive jobs of its node ahead of it
    /// Submit only: the annotation to put in the outbox with the job (not read back).
    std::optional<JobAnnotation> annotation;
};

/// A line of a job's output.
struct OutputLine {
    std::int64_t seq = 0;  ///< 1, 2, ... per job, in the order written
    TimePoint at;
    std::string stream;  ///< "stdout", "stderr", or "aviary" (the engine's own notes)
    std::string text;
    int attempt = 0;
    int step = 0;
};

// ---------------------------------------------------------------------------------------------
// Redaction

/// `url` without what must not reach output or logs: its userinfo is dropped and every query
/// value becomes REDACTED ("http://u:p@h/x?token=t" -> "http://h/x?token=REDACTED").
std::string redact_url(std::string_view url);

/// Redacts a line of output or log text: every configured secret becomes REDACTED, every URL
/// is redact_url'ed, and the value of every `--set KEY=VALUE` (and --set-string, --set-json)
/// becomes REDACTED unless KEY is a safe key (image.tag always is). Thread-safe.
class Redactor {
public:
    /// Secrets shorter than this are ignored: they would blank out ordinary words.
    static constexpr std::size_t kMinSecretLength = 6;

    Redactor() = default;
    explicit Redactor(std::vector<std::string> secrets,
                      std::vector<std::string> safe_set_keys = {});
    /// A value to hide wherever it appears (an auth token, the Grafana token).
    void add_secret(std::string secret);
    /// A `--set` key whose value may be shown.
    void add_safe_set_key(std::string key);
    std::string redact(std::string_view line) const;
    /// Only the configured secrets become REDACTED, in place: for text with a structure of its
    /// own (an API answer's JSON), where redact()'s URL and --set rules would change data.
    void hide_secrets(std::string& text) const;

private:
    std::string redact_set_values(std::string_view line) const;

    mutable std::shared_mutex mu_;
    std::vector<std::string> secrets_;  // longest first
    std::set<std::string, std::less<>> safe_set_keys_{"image.tag"};
};

/// The process's redactor: serve's wiring adds the configured secrets at start; job output,
/// driver notes and log lines that may hold a URL or an argv go through redact().
Redactor& redactor();
/// redactor().redact(line).
std::string redact(std::string_view line);

/// Names the calling thread (at most 15 characters shown) for top, perf and gdb: "store-writer",
/// "http-io", "jobs"...
void name_this_thread(std::string_view name);

// ---------------------------------------------------------------------------------------------
// Logging

/// The named logger of a component ("fleet", "store", ...), created on first use.
std::shared_ptr<spdlog::logger> logger(std::string_view component);
/// Writes out log lines still gathering in memory (when stderr is not a terminal, lines are
/// written in batches, at most 100 ms late; warnings and errors at once). Before an abort.
void flush_logs();
/// Sets the level ("trace".."off") and format ("text" or "json") of every logger, present and
/// future. Returns an error naming the bad value.
Result<void> configure_logging(std::string_view level, std::string_view format);

// ---------------------------------------------------------------------------------------------
// Periodic and delayed work

/// One scheduler for a role's periodic and delayed work: lease and waiter expiry, retention,
/// delayed job retries, the Grafana outbox, and (later) probe scenarios. Each task is named and
/// loops around its own run_once(); it never runs twice at once, and tasks run side by side on
/// a few threads so a slow one (an HTTP call under its timeout) does not hold back the others.
///
/// When a task runs next is its own answer: run_once() returns the next time it knows something
/// falls due (the earliest lease expiry or retry in the store), and the scheduler runs it then
/// or after `interval`, whichever is sooner. So nothing due waits for a sweep, and the interval
/// only bounds how long a missed wake-up can go unnoticed. wake() runs a task now.
///
/// Leadership: a task marked `leader_only` runs only while the leadership hook says this
/// instance leads. One instance on SQLite always leads; the PostgreSQL store will answer with
/// an advisory lock, so exactly one of several instances sweeps (docs/architecture.md).
///
/// Lifecycle: add() tasks, start(), stop() (idempotent, safe before start(), returns after
/// every running task has finished). run_due() is for tests on a ManualClock.
class Scheduler {
public:
    struct Task {
        std::string name;  ///< "lease-expiry": in logs and stats
        Millis interval{std::chrono::seconds{30}};
        /// Each wait for the interval is stretched or shrunk by up to this fraction, at random,
        /// so instances and tasks with the same interval do not fire in step.
        double jitter = 0.1;
        /// Does the work once. Returns the next time something is known to fall due, or
        /// nullopt when only the interval applies. Exceptions are logged and the task kept.
        std::function<std::optional<TimePoint>(TimePoint now)> run_once;
        bool leader_only = true;   ///< see Leadership above
        bool run_at_start = true;  ///< the first run is at start(): catch up on what lapsed
    };
    using TaskId = std::size_t;

    struct TaskStats {
        std::string name;
        std::uint64_t runs = 0;
        std::uint64_t failures = 0;  ///< run_once() threw
        TimePoint next_due;
        Millis last_duration{0};
    };

    /// `threads`: how many tasks may run at once.
    explicit Scheduler(Clock& clock, int threads = 2);
    ~Scheduler();
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    /// Adds a task. Before start() only: the task list is fixed while threads run.
    TaskId add(Task task);
    /// Runs the task as soon as a thread is free (again after its current run, if running).
    /// Thread-safe; cheap enough to call on every commit that makes work due.
    void wake(TaskId id);
    /// Removes the task for good; returns after its current run, if any, has finished. For a
    /// component that stops before the scheduler does (its tasks must not outlive it).
    void cancel(TaskId id);
    /// Makes the task due no later than `at` (a retry's run_at, a lease's expiry). Thread-safe.
    void due_by(TaskId id, TimePoint at);
    /// Asks whether this instance leads. Until set, it does.
    void set_leadership(std::function<bool()> leads);

    void start();
    void stop();
    /// Runs, on the calling thread, every task due at the clock's now; returns how many ran.
    /// For tests with a ManualClock, while the threads are not started.
    int run_due();
    std::vector<TaskStats> stats() const;

private:
    struct Entry;
    void loop();
    /// Picks a due task that is not running, or says how long until one may be. Under mu_.
    Entry* next_due(Millis& wait);
    void run(Entry& entry, std::unique_lock<std::mutex>& lock);
    Millis jittered(const Entry& entry);

    Clock& clock_;
    int thread_count_;
    mutable std::mutex mu_;
    std::condition_variable changed_;
    std::vector<std::unique_ptr<Entry>> entries_;
    std::function<bool()> leads_;
    bool started_ = false;
    bool stopping_ = false;
    std::uint64_t random_state_;
    std::vector<std::thread> threads_;
};

// ---------------------------------------------------------------------------------------------
// C libraries opened on first use (docs/architecture.md: libpq, OpenSSL and SQLite are not
// linked, so a role that never uses one does not map it)

/// One function to look up: its name, and the function-pointer object that receives it.
struct LibrarySymbol {
    const char* name;
    void* slot;  ///< &pointer; a function pointer is the size of void* on every POSIX target
};

/// Opens `soname` for the rest of the process (dlopen, RTLD_NOW | RTLD_LOCAL) and fills every
/// slot with its symbol's address. A failure (`code`) says who needs the library and which
/// Debian package has it ("TLS needs libssl.so.3 (Debian's libssl3): …"), or which symbol the
/// installed version lacks. Call it once per library, from a function-local static.
Result<void> open_library(const char* soname,
                          std::string_view needed_by,
                          std::string_view package,
                          std::initializer_list<LibrarySymbol> symbols,
                          ErrorCode code);

}  // namespace aviary::core
