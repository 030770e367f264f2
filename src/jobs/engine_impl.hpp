#pragma once
// The engine's insides, shared by engine.cpp (lifecycle, surfaces, dispatch) and runner.cpp
// (one attempt of one job: its steps, children and output). Private to jobs.
//
// Threads: everything in Impl except the fields marked otherwise belongs to the engine's own
// thread (`io`); public Engine methods run on callers' threads and only touch the store (which
// is thread-safe), `hub` and post() to `io`.
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "jobs/jobs.hpp"
#include "metrics/metrics.hpp"
#include "net/net.hpp"

namespace aviary::jobs {

namespace asio = net::asio;

/// Why a running attempt is being stopped.
/// Why a run stops early. kLost: its attempt was settled by someone else (a rescue): it is
/// not this run's to finish.
enum class StopReason { kNone, kCancel, kTimeout, kShutdown, kLost };

/// One attempt in progress (engine thread only).
struct Run {
    explicit Run(const asio::any_io_executor& executor)
        : stop_signal(executor, asio::steady_timer::time_point::max()),
          deadline(executor),
          linger(executor) {}

    core::Job job;
    const ActionSpec* action = nullptr;
    core::NodeSpec node;
    StopReason stop = StopReason::kNone;
    /// Never expires by itself; cancelled (waking every waiter) when the attempt must stop.
    asio::steady_timer stop_signal;
    asio::steady_timer deadline;  ///< the running step's deadline
    // Output: lines wait here until the flusher writes them in one store call.
    std::int64_t next_seq = 1;
    std::vector<core::OutputLine> pending;
    bool flushing = false;
    bool lingering = false;     ///< a flush is scheduled after kOutputLinger
    asio::steady_timer linger;  ///< lines gather for a moment, then go in one write
    bool truncated = false;
    int step = 0;
    /// The tag the node runs after this attempt's last install or upgrade step ("" after an
    /// uninstall); recorded on the node when the job succeeds.
    std::optional<std::string> deployed_tag;
};

struct Engine::Impl {
    Impl(Settings settings,
         store::Store& store,
         fleet::Fleet& fleet,
         std::vector<std::unique_ptr<drivers::Driver>> drivers,
         core::Clock& clock,
         metrics::Registry* metrics);

    // --- engine thread -------------------------------------------------------------------
    asio::awaitable<void> dispatch();  // claims while workers are free
    /// A claimed job, holding a reserved slot: registered, then run (or, when serve is
    /// stopping, left for the next start's rescue and its slot released).
    void start_run(core::Job job);
    void end_run(const std::string& id);  // unregisters a run and releases its slot
    /// A cancel of job `id` was committed (`ours`: claimed by this runner): stops its run, or
    /// has start_run stop it when it is claimed but not registered yet.
    void stop_cancelled(const std::string& id, bool ours);
    /// Finishes a run's attempt and claims the job its slot passes to, in one commit, with no
    /// thread waiting on it: the store answers on its writer thread, which posts here.
    asio::awaitable<core::Result<store::JobFinishedAndClaimed>> finish_and_claim(
        store::JobFinish finish);
    /// Records a step's start without waiting for the commit; a refusal (the attempt is no
    /// longer this run's) stops the run as kLost. A database that is away is tried again
    /// (`tries` so far) until heartbeat_timeout.
    void record_step(store::JobStepUpdate update, int tries = 1);
    store::JobClaim claim_now() const;  // this runner's claim, with the action caps
    /// Engine thread: runs `send` (a store call that answers asynchronously) once the loop has
    /// run the handlers already queued, with every other send made meanwhile.
    void send_to_store(std::function<void()> send);
    /// `done` as a store callback that stop() waits for: counted in store_callbacks until it
    /// has run (any thread).
    template <class T>
    std::function<void(T)> counted(std::function<void(T)> done) {
        store_callbacks.fetch_add(1);
        return [this, done = std::move(done)](T value) {
            done(std::move(value));
            store_callbacks.fetch_sub(1);
        };
    }
    asio::awaitable<void> run_job(Run& run);  // runner.cpp; erases `run` from running at its end
    asio::awaitable<void> heartbeat_loop();
    void request_stop(Run& run, StopReason reason);
    void wake();  // any thread: the dispatcher looks for work now
    /// Any thread: takes up to `want` free worker slots (busy < workers), returns how many.
    int reserve(int want);
    void release(int slots);
    void wake_at(core::TimePoint when);  // any thread: the due task runs by then
    // Output (runner.cpp).
    void add_line(Run& run, std::string_view stream, std::string text);
    asio::awaitable<void> flush(Run& run);
    asio::awaitable<void> flush_all(Run& run);
    /// Stops the linger timer and waits for a flush in progress; pending lines stay pending.
    asio::awaitable<void> settle_output(Run& run);

    // --- any thread ----------------------------------------------------------------------
    void notify(const std::string& job_id);  // publishes job_topic(job_id) on the hub
    /// What a submission writes: the job with its annotation, and its lease rule (the implicit
    /// acquire, or a free node), and that a mutating job needs the node in service.
    core::Result<store::JobSubmit> submission(core::Job job,
                                              const SubmitRequest& request,
                                              const fleet::Caller& caller);
    /// After a submission's commit: a job it claimed starts on the engine's thread, else its
    /// reserved slot (if any) goes back and the dispatcher looks.
    void hand_over(int slot, std::vector<core::Job> claimed);
    /// The caller's answer to a submission the store has decided (refusals worded, counted).
    core::Result<Submitted> submitted(core::Result<store::JobSubmitted> done,
                                      const store::JobSubmit& submit,
                                      const fleet::Caller& caller);
    /// submission, written while a thread waits (retry).
    core::Result<Submitted> submit_job(core::Job job,
                                       const SubmitRequest& request,
                                       const fleet::Caller& caller);
    /// A refused submission into the audit trail (event job.refused) and the refusal metric.
    void record_refusal(const ActionSpec& action,
                        std::string_view node,
                        std::string_view requester,
                        const std::string& reason);
    /// Permission rules (a refusal is recorded as a "job.refused" event): may `caller` run
    /// `action` on `node`?
    core::Result<void> admit(const ActionSpec& action,
                             const core::Node& node,
                             const fleet::Caller& caller,
                             std::string_view requester);
    const ActionSpec* find_action(std::string_view name) const;
    drivers::Driver* find_driver(std::string_view name) const;
    std::shared_ptr<spdlog::logger> log;

    Settings settings;
    store::Store& store;
    fleet::Fleet& fleet;
    std::map<std::string, std::unique_ptr<drivers::Driver>, std::less<>> drivers;
    core::Clock& clock;
    std::string runner_id = settings.instance + "/" + core::new_id();
    /// When the heartbeat last failed to reach the store (engine thread only).
    core::TimePoint store_away_since{};
    /// True when `job` was claimed by a run of this instance (or before runners named their
    /// instance): its process groups live on this host.
    bool owns(const core::Job& job) const;
    /// Per-action caps (concurrency > 0), made once: every claim carries them.
    std::map<std::string, int, std::less<>> action_caps;
    Engine::Annotator annotator;       // set before start; read by submit on any thread
    Engine::Transition on_transition;  // set before start; called on the engine thread

    asio::io_context io;
    std::unique_ptr<net::BlockingPool> pool;
    /// http steps' keep-alive connections, on `io` only; made by start(), destroyed before io.
    std::unique_ptr<net::HttpClient> http;
    std::thread thread;
    core::Scheduler* scheduler = nullptr;  // set by schedule(); outlives the engine's run
    core::Scheduler::TaskId due_task = 0;  // runs at the next run_at of a queued job
    core::Scheduler::TaskId retention_task = 0;
    bool started = false;
    std::atomic<bool> stopping = false;
    bool dispatching = false;
    bool dispatch_again = false;
    std::map<std::string, std::unique_ptr<Run>, std::less<>> running;  // by job id
    /// Worker slots in use: running jobs plus slots reserved for claims in flight (the
    /// dispatcher's, a submission's, a finishing run's hand-over). Never above workers.
    std::atomic<int> busy{0};
    /// Store calls whose callback has not run yet: stop() waits for them, as they post here.
    std::atomic<int> store_callbacks{0};
    /// Writes made during one turn of the engine's loop, sent to the store together at its end
    /// (send_to_store): workers answered by one commit then share the next one.
    std::vector<std::function<void()>> store_sends;
    bool sends_posted = false;
    /// Jobs cancelled after their claim, before their Run was registered (engine thread).
    /// An entry goes when its Run registers or ends; entries of jobs that ended before their
    /// cancel arrived are dropped by prune_early_cancels once the set reaches kMaxEarlyCancels
    /// (a live entry is never dropped: the store shows its job running here).
    std::unordered_set<std::string> early_cancels;
    bool pruning_early_cancels = false;
    asio::awaitable<void> prune_early_cancels();

    net::Hub hub;  // job_topic(id): a job changed (Engine::hub())

    // Metrics (null families when no registry was given).
    metrics::Family<metrics::Counter>* finished_total = nullptr;
    metrics::Family<metrics::Histogram>* duration_seconds = nullptr;
    metrics::Family<metrics::Counter>* rescued_total = nullptr;
    metrics::Family<metrics::Counter>* submitted_total = nullptr;
    metrics::Family<metrics::Counter>* refused_total = nullptr;
};

/// Sleeps `d`, or less when the run is told to stop (runner.cpp; wait and http steps).
asio::awaitable<void> nap(Run& run, core::Millis d);

/// early_cancels is pruned of entries whose jobs no longer run here when it grows this big.
inline constexpr std::size_t kMaxEarlyCancels = 1024;

/// The delay before retry number `attempt` (1 = the first retry): backoff * 2^(attempt-1),
/// capped, with +-20 % jitter.
core::Millis retry_delay(const ActionSpec& action, int attempt);

}  // namespace aviary::jobs
