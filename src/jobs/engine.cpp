// The engine's lifecycle (start with rescue, stop), its public surface (submit, cancel, retry,
// queries, watches) and the dispatcher that hands claimed jobs to runs. One attempt's work is
// in runner.cpp.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <exception>
#include <future>
#include <random>
#include <set>

#include "jobs/engine_impl.hpp"
#include "jobs/permissions.hpp"

namespace aviary::jobs {
namespace {

namespace json = boost::json;

/// A job interrupted this many times more than max_attempts is failed even when safe to re-run:
/// a job that crashes serve must not crash it forever.
constexpr int kMaxInterruptions = 3;
/// The due task runs at the store's next run_at; this only bounds a missed due_by().
constexpr core::Millis kDueSweep{std::chrono::seconds{30}};

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

bool is_running(core::JobState state) {
    return state == core::JobState::kRunning || state == core::JobState::kCancelling;
}

/// action + node + params in one canonical string: the uniqueness key.
std::string unique_key(std::string_view action, std::string_view node, const core::Params& params) {
    std::string key = fmt::format("{}\x1f{}", action, node);
    for (const auto& [name, value] : params) {
        key += fmt::format("\x1f{}={}", name, value);
    }
    return key;
}

std::string known_actions(const std::vector<ActionSpec>& actions) {
    std::string out;
    for (const auto& action : actions) {
        out += (out.empty() ? "" : ", ") + action.name;
    }
    return out;
}

template <class T>
T run_blocking(asio::io_context& io, std::function<asio::awaitable<T>()> make) {
    std::promise<T> done;
    auto future = done.get_future();
    asio::co_spawn(
        io,
        [&make, &done]() -> asio::awaitable<void> {
            try {
                done.set_value(co_await make());
            } catch (...) {
                done.set_exception(std::current_exception());
            }
        },
        asio::detached);
    return future.get();
}

/// A queued job of `action` on `node`, runnable now (what submit and retry insert).
core::Job new_job(const ActionSpec& action,
                  const std::string& node,
                  const core::Params& params,
                  const std::string& requester,
                  const std::string& owner,
                  core::TimePoint now) {
    return core::Job{.id = core::new_id(),
                     .action = action.name,
                     .queue = action.queue,
                     .node = node,
                     .params = params,
                     .requester = requester,
                     .owner = owner,
                     .unique_key = unique_key(action.name, node, params),
                     .exclusive = action.exclusive,
                     .max_attempts = action.max_attempts,
                     .steps = static_cast<int>(action.steps.size()),
                     .created_at = now,
                     .run_at = now};
}

}  // namespace

core::Millis retry_delay(const ActionSpec& action, int attempt) {
    double base = static_cast<double>(action.retry_backoff.count());
    double cap = static_cast<double>(action.retry_backoff_max.count());
    double delay = base;
    for (int i = 1; i < attempt && delay < cap; ++i) {
        delay *= 2;
    }
    thread_local std::mt19937 random{std::random_device{}()};
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    // The cap holds after the jitter too.
    return core::Millis{static_cast<std::int64_t>(std::min(delay * jitter(random), cap))};
}

// ---------------------------------------------------------------------------------------------
// Impl

Engine::Impl::Impl(Settings settings_in,
                   store::Store& store_in,
                   fleet::Fleet& fleet_in,
                   std::vector<std::unique_ptr<drivers::Driver>> drivers_in,
                   core::Clock& clock_in,
                   metrics::Registry* metrics)
    : log(core::logger("jobs")),
      settings(std::move(settings_in)),
      store(store_in),
      fleet(fleet_in),
      clock(clock_in) {
    for (auto& driver : drivers_in) {
        std::string name(driver->name());
        drivers.emplace(std::move(name), std::move(driver));
    }
    for (const auto& action : settings.actions) {
        if (action.concurrency > 0) {
            action_caps.emplace(action.name, action.concurrency);
        }
    }
    if (metrics != nullptr) {
        finished_total = &metrics->counter(
            "aviary_jobs_finished_total", "Jobs that reached a final state, by action and outcome.",
            {"action", "outcome"});
        duration_seconds = &metrics->histogram(
            "aviary_job_duration_seconds", "Time from an attempt's start to its end, by action.",
            {"action"}, {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600});
        rescued_total = &metrics->counter(
            "aviary_jobs_rescued_total",
            "Jobs found running after a crash (or a hung heartbeat) and rescued, by outcome.",
            {"outcome"});
        submitted_total =
            &metrics->counter("aviary_jobs_submitted_total", "Jobs queued, by action.", {"action"});
        refused_total =
            &metrics->counter("aviary_jobs_refused_total",
                              "Submissions refused by a permission rule, by action.", {"action"});
        auto& queued = metrics->gauge("aviary_jobs_queued", "Jobs waiting to run.");
        auto& running = metrics->gauge("aviary_jobs_running", "Jobs running or cancelling.");
        auto& oldest = metrics->gauge("aviary_jobs_oldest_queued_age_seconds",
                                      "Age of the oldest queued job (0 when none).");
        metrics->on_scrape([this, &queued, &running, &oldest] {
            auto counts = store.job_counts();
            if (!counts) {
                return;
            }
            queued.get().set(static_cast<double>(counts->queued));
            running.get().set(static_cast<double>(counts->running));
            double age = 0;
            if (counts->oldest_queued) {
                age = std::max<double>(
                    0, std::chrono::duration<double>(clock.now() - *counts->oldest_queued).count());
            }
            oldest.get().set(age);
        });
    }
}

const ActionSpec* Engine::Impl::find_action(std::string_view name) const {
    for (const auto& action : settings.actions) {
        if (action.name == name) {
            return &action;
        }
    }
    return nullptr;
}

drivers::Driver* Engine::Impl::find_driver(std::string_view name) const {
    auto it = drivers.find(name);
    return it == drivers.end() ? nullptr : it->second.get();
}

void Engine::Impl::notify(const std::string& job_id) {
    hub.publish(Engine::job_topic(job_id), "changed");
}

void Engine::Impl::wake() {
    asio::post(io, [this] {
        if (stopping || !started) {
            return;
        }
        if (dispatching) {
            dispatch_again = true;
            return;
        }
        dispatching = true;
        asio::co_spawn(io, dispatch(), asio::detached);
    });
}

void Engine::Impl::wake_at(core::TimePoint when) {
    scheduler->due_by(due_task, when);
}

asio::awaitable<void> Engine::Impl::dispatch() {
    do {
        dispatch_again = false;
        while (!stopping) {
            // Every free worker's job in one commit.
            int free = reserve(settings.workers);
            if (free == 0) {
                break;
            }
            auto claim = claim_now();
            auto claim_some = [this, &claim, free] { return store.claim_jobs(claim, free); };
            auto claimed = co_await net::offload(*pool, claim_some);
            if (!claimed) {
                release(free);
                log->error("claiming jobs failed: {}", claimed.error().message);
                break;
            }
            release(free - static_cast<int>(claimed->size()));
            for (auto& job : *claimed) {
                start_run(std::move(job));
            }
            if (claimed->empty()) {
                break;
            }
        }
    } while (dispatch_again && !stopping);
    dispatching = false;
}

int Engine::Impl::reserve(int want) {
    int taken = busy.load();
    int granted = 0;
    do {
        granted = std::clamp(settings.workers - taken, 0, want);
        if (granted == 0) {
            return 0;
        }
    } while (!busy.compare_exchange_weak(taken, taken + granted));
    return granted;
}

void Engine::Impl::release(int slots) {
    if (slots > 0) {
        busy.fetch_sub(slots);
    }
}

void Engine::Impl::start_run(core::Job job) {
    if (stopping) {
        // Claimed as serve began to stop: the next start rescues it, as after a crash.
        early_cancels.erase(job.id);
        release(1);
        return;
    }
    notify(job.id);
    auto run = std::make_unique<Run>(io.get_executor());
    run->job = std::move(job);
    Run& ref = *run;
    running.emplace(ref.job.id, std::move(run));
    if (early_cancels.erase(ref.job.id) > 0) {
        request_stop(ref, StopReason::kCancel);  // cancelled between its claim and now
    }
    if (on_transition) {
        on_transition(ref.job);
    }
    asio::co_spawn(io, run_job(ref), asio::detached);
}

void Engine::Impl::stop_cancelled(const std::string& id, bool ours) {
    auto it = running.find(id);
    if (it != running.end()) {
        request_stop(*it->second, StopReason::kCancel);
    } else if (ours) {
        // Claimed here, its Run not registered yet: start_run stops it at once. (Or it finished
        // before this cancel arrived: the entry is never used, and a prune drops it.)
        early_cancels.insert(id);
        if (early_cancels.size() >= kMaxEarlyCancels && !pruning_early_cancels) {
            pruning_early_cancels = true;
            asio::co_spawn(io, prune_early_cancels(), asio::detached);
        }
    }
}

asio::awaitable<void> Engine::Impl::prune_early_cancels() {
    // Again while the set is still full and the last round found something: cancels may have
    // arrived while the store was read.
    bool found = true;
    while (found && !stopping && early_cancels.size() >= kMaxEarlyCancels) {
        std::vector<std::string> ids(early_cancels.begin(), early_cancels.end());
        // An entry is live while its job is running here (claimed, not yet registered); any
        // other state means the run it was meant for has ended or never will run here.
        auto look_up = [this, &ids] {
            std::vector<std::string> stale;
            for (const auto& id : ids) {
                auto job = store.job(id);
                if (job ? (!is_running(job->state) || job->runner != runner_id)
                        : job.error().code == core::ErrorCode::kNotFound) {
                    stale.push_back(id);
                }
            }
            return stale;
        };
        auto stale = co_await net::offload(*pool, look_up);
        found = !stale.empty();
        for (const auto& id : stale) {
            early_cancels.erase(id);
        }
    }
    pruning_early_cancels = false;
}

void Engine::Impl::end_run(const std::string& id) {
    running.erase(id);
    early_cancels.erase(id);
    release(1);
}

void Engine::Impl::record_step(store::JobStepUpdate update, int tries) {
    auto on_answer = [this, update, tries](core::Result<core::Job> job) {
        asio::post(io, [this, update, tries, job = std::move(job)] {
            const auto& id = update.id;
            auto it = running.find(id);
            if (job) {
                notify(id);
            } else if (job.error().code == core::ErrorCode::kUnavailable && !stopping &&
                       it != running.end() && it->second->job.attempt == update.attempt &&
                       it->second->step == update.step &&
                       core::Millis{200} * tries < settings.heartbeat_timeout) {
                // The database is away: the step (and its process group, which a rescue
                // kills) is recorded once it is back.
                auto pause = std::make_shared<asio::steady_timer>(io, core::Millis{200});
                pause->async_wait([this, pause, update, tries](const boost::system::error_code&) {
                    record_step(update, tries + 1);
                });
            } else if (it != running.end() && it->second->job.attempt == update.attempt) {
                log->warn("job {} left by its runner: {}", id, job.error().message);
                request_stop(*it->second, StopReason::kLost);
            }
        });
    };
    store.update_job_step_async(std::move(update), counted<core::Result<core::Job>>(on_answer));
}

asio::awaitable<core::Result<store::JobFinishedAndClaimed>> Engine::Impl::finish_and_claim(
    store::JobFinish finish) {
    using Answer = core::Result<store::JobFinishedAndClaimed>;
    auto start = [this, &finish](std::function<void(Answer)> done) {
        send_to_store(
            [this, finish = std::move(finish), done = counted<Answer>(std::move(done))]() mutable {
                store.finish_and_claim_async(std::move(finish), claim_now(), 1, std::move(done));
            });
    };
    co_return co_await net::await_answer<Answer>(std::move(start));
}

void Engine::Impl::send_to_store(std::function<void()> send) {
    store_sends.push_back(std::move(send));
    if (sends_posted) {
        return;
    }
    // Sent once the loop has run what is already queued: the other workers answered by the
    // same commit finish their next job first, and the writer finds all of them together.
    sends_posted = true;
    asio::post(io, [this] {
        sends_posted = false;
        auto sends = std::move(store_sends);
        store_sends.clear();
        for (auto& one : sends) {
            one();
        }
    });
}

store::JobClaim Engine::Impl::claim_now() const {
    return store::JobClaim{.runner = runner_id, .now = clock.now(), .action_caps = action_caps};
}

asio::awaitable<void> Engine::Impl::heartbeat_loop() {
    asio::steady_timer timer(io);
    while (!stopping) {
        timer.expires_after(settings.heartbeat);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        if (stopping) {
            break;
        }
        std::vector<std::string> ids;
        for (const auto& [id, run] : running) {
            ids.push_back(id);
        }
        auto now = clock.now();
        auto beat = [this, &ids, now]() -> core::Result<std::vector<core::Job>> {
            if (!ids.empty()) {
                if (auto r = store.heartbeat_jobs(ids, now); !r) {
                    return r.error();
                }
            }
            return store.active_jobs();
        };
        auto active = co_await net::offload(*pool, beat);
        if (!active) {
            log->warn("job heartbeat failed: {}", active.error().message);
            store_away_since = now;
            continue;
        }
        // After the store was away, every instance's beats are old: give the others a whole
        // heartbeat_timeout to beat again before taking any of their jobs for dead.
        bool others_had_time = now - store_away_since >= settings.heartbeat_timeout;
        // A job that runs here is alive; one that runs nowhere (its worker or instance hung
        // or died) stops beating and is rescued once its heartbeat is old enough.
        for (const auto& job : *active) {
            // A cancel another instance took, in case its notification never came.
            if (auto it = running.find(job.id); it != running.end() && job.cancel_requested &&
                                                it->second->job.attempt == job.attempt) {
                request_stop(*it->second, StopReason::kCancel);
            }
            if (running.count(job.id) > 0 || !job.heartbeat_at ||
                now - *job.heartbeat_at < settings.heartbeat_timeout ||
                (!owns(job) && !others_had_time)) {
                continue;
            }
            log->warn("job {} ({} on {}) has not beaten since {}: rescuing it", job.id, job.action,
                      job.node, core::format_time(*job.heartbeat_at));
            if (job.pgid > 0 && owns(job)) {
                proc::kill_orphan_group(static_cast<pid_t>(job.pgid), job.pgid_start_ticks);
            }
            const auto* action = find_action(job.action);
            store::JobFinish finish{
                .id = job.id,
                .attempt = job.attempt,
                .state = core::JobState::kFailed,
                .error = fmt::format("no heartbeat since {}: its worker hung or died",
                                     core::format_time(*job.heartbeat_at)),
                .actor = "aviary",
                .event_kind = "job.rescued",
                .now = now};
            if (job.cancel_requested) {
                finish.state = core::JobState::kCancelled;
            } else if (action != nullptr && action->rerun_safe &&
                       job.attempt < job.max_attempts + kMaxInterruptions) {
                finish.state = core::JobState::kQueued;
                finish.retry_at = now;
            }
            auto rescue = [this, &finish] { return store.finish_job(finish); };
            if (auto done = co_await net::offload(*pool, rescue); done) {
                if (rescued_total != nullptr) {
                    rescued_total->with({std::string(core::to_string(done->state))}).inc();
                }
                notify(job.id);
                wake();
            }
        }
    }
}

void Engine::Impl::request_stop(Run& run, StopReason reason) {
    if (run.stop != StopReason::kNone) {
        return;
    }
    run.stop = reason;
    run.stop_signal.cancel();
}

// ---------------------------------------------------------------------------------------------
// Engine: lifecycle

Engine::Engine(Settings settings,
               store::Store& store,
               fleet::Fleet& fleet,
               std::vector<std::unique_ptr<drivers::Driver>> drivers,
               core::Clock& clock,
               metrics::Registry* metrics)
    : impl_(std::make_unique<Impl>(
          std::move(settings), store, fleet, std::move(drivers), clock, metrics)) {}

Engine::~Engine() {
    try {
        stop();
    } catch (const std::exception& e) {
        // stop() cancels and joins; a failure there (a thread that cannot be joined) is logged,
        // since nothing may escape a destructor. spdlog does not throw from a log call.
        impl_->log->error("stopping the job engine failed: {}", e.what());
    } catch (...) {
        impl_->log->error("stopping the job engine failed");
    }
}

void Engine::schedule(core::Scheduler& scheduler) {
    auto& d = *impl_;
    AVIARY_ASSERT(d.scheduler == nullptr, "Engine::schedule called twice");
    d.scheduler = &scheduler;
    d.retention_task = scheduler.add(core::Scheduler::Task{
        .name = "jobs-retention",
        .interval = d.settings.retention_sweep,
        .run_once = [&d](core::TimePoint now) -> std::optional<core::TimePoint> {
            if (auto pruned = d.store.prune_jobs(now - d.settings.retention); !pruned) {
                d.log->warn("pruning finished jobs failed: {}", pruned.error().message);
            } else if (*pruned > 0) {
                d.log->info("pruned {} finished jobs (and their output) older than {}", *pruned,
                            core::format_duration(d.settings.retention));
            }
            return std::nullopt;
        },
    });
    d.due_task = scheduler.add(core::Scheduler::Task{
        .name = "jobs-due",
        .interval = kDueSweep,
        // Every instance claims for its own workers; this is also the bounded poll behind a
        // wake-up another instance's NOTIFY could have missed.
        .run_once = [&d](core::TimePoint now) -> std::optional<core::TimePoint> {
            d.wake();
            auto next = d.store.next_job_run_at(now);
            if (!next) {
                d.log->warn("cannot read the next due job error=\"{}\"", next.error().message);
                return std::nullopt;
            }
            return *next;
        },
        .leader_only = false,
    });
}

bool Engine::Impl::owns(const core::Job& job) const {
    auto slash = job.runner.find('/');
    return slash == std::string::npos || job.runner.compare(0, slash, settings.instance) == 0;
}

core::Result<RescueReport> Engine::start() {
    auto& d = *impl_;
    AVIARY_ASSERT(!d.started, "Engine::start called twice");
    AVIARY_ASSERT(d.scheduler != nullptr, "Engine::schedule() comes before start()");
    if (d.settings.workers < 1) {
        return invalid("jobs.workers must be at least 1");
    }
    RescueReport report;
    // 1. What the previous run left: kill its process groups first, then settle its jobs.
    auto active = d.store.active_jobs();
    if (!active) {
        return active.error();
    }
    auto now = d.clock.now();
    for (const auto& job : *active) {
        if (!d.owns(job)) {
            continue;  // another instance's: alive, or rescued by a watchdog once it stops beating
        }
        if (job.pgid > 0 &&
            proc::kill_orphan_group(static_cast<pid_t>(job.pgid), job.pgid_start_ticks)) {
            ++report.groups_killed;
        }
        const auto* action = d.find_action(job.action);
        std::string where =
            job.step > 0 ? fmt::format(" in step {} ({})", job.step, job.step_name) : "";
        store::JobFinish finish{.id = job.id,
                                .attempt = job.attempt,
                                .actor = "aviary",
                                .event_kind = "job.rescued",
                                .now = now};
        if (job.cancel_requested) {
            finish.state = core::JobState::kCancelled;
            finish.error =
                fmt::format("cancelled: serve stopped while attempt {} ran{}", job.attempt, where);
        } else if (action != nullptr && action->rerun_safe &&
                   job.attempt < job.max_attempts + kMaxInterruptions) {
            finish.state = core::JobState::kQueued;
            finish.retry_at = now;
            finish.error = fmt::format(
                "interrupted: serve stopped while attempt {} ran{}; {} is safe to re-run, so it "
                "runs again",
                job.attempt, where, job.action);
        } else {
            finish.state = core::JobState::kFailed;
            finish.error =
                action == nullptr
                    ? fmt::format(
                          "interrupted: serve stopped while attempt {} ran{}, and action "
                          "{} no longer exists",
                          job.attempt, where, job.action)
                    : fmt::format(
                          "interrupted: serve stopped while attempt {} ran{}; {} is not "
                          "marked safe to re-run (rerun_safe), so it was not retried",
                          job.attempt, where, job.action);
        }
        auto done = d.store.finish_job(finish);
        if (!done) {
            d.log->error("rescuing job {} failed: {}", job.id, done.error().message);
            continue;
        }
        d.log->warn("rescued job {} ({} on {}): {}", job.id, job.action, job.node, finish.error);
        auto outcome = std::string(core::to_string(done->state));
        if (d.rescued_total != nullptr) {
            d.rescued_total->with({outcome}).inc();
        }
        switch (done->state) {
            case core::JobState::kQueued:
                report.requeued.push_back(*done);
                break;
            case core::JobState::kCancelled:
                report.cancelled.push_back(*done);
                break;
            default:
                report.failed.push_back(*done);
                break;
        }
    }
    // 2. The event loop, the drivers (sim nodes come up), then the workers.
    d.pool = std::make_unique<net::BlockingPool>(d.settings.workers + 4);
    d.http = std::make_unique<net::HttpClient>(d.io.get_executor(), net::ClientSettings{});
    d.thread = std::thread([&d] {
        core::name_this_thread("jobs");
        auto guard = asio::make_work_guard(d.io);
        d.io.run();
    });
    auto nodes = d.fleet.nodes();
    if (!nodes) {
        return nodes.error();
    }
    for (auto& [name, driver] : d.drivers) {
        std::vector<core::NodeSpec> specs;
        for (const auto& node : *nodes) {
            if (node.spec.driver == name) {
                specs.push_back(node.spec);
            }
        }
        auto* raw = driver.get();
        auto executor = d.io.get_executor();
        run_blocking<bool>(d.io, [raw, executor, specs]() -> asio::awaitable<bool> {
            co_await raw->start(executor, specs);
            co_return true;
        });
    }
    d.started = true;
    // Exclusive jobs of a node in maintenance stay queued (the claim skips them): look again
    // when one comes back.
    d.fleet.set_back_in_service_listener([&d](std::string_view /*node*/) { d.wake(); });
    // Other instances on a shared store: a job they queued may run on a free worker here, a
    // cancel they took may be for a step running here, and watchers here follow their jobs.
    d.store.set_change_listener([&d](store::RemoteChange change, std::string_view job_id) {
        switch (change) {
            case store::RemoteChange::kJobsQueued:
                d.wake();
                break;
            case store::RemoteChange::kJob:
                d.notify(std::string{job_id});
                break;
            case store::RemoteChange::kCancel:
                asio::post(d.io, [&d, id = std::string{job_id}] { d.stop_cancelled(id, false); });
                d.notify(std::string{job_id});
                break;
        }
    });
    asio::co_spawn(d.io, d.heartbeat_loop(), asio::detached);
    // Retries waiting out their backoff when the previous run stopped: the due task reads the
    // earliest run_at from the store at the scheduler's start.
    d.wake();
    d.log->info("job engine started: {} workers, {} actions, {} drivers", d.settings.workers,
                d.settings.actions.size(), d.drivers.size());
    return report;
}

void Engine::stop() {
    auto& d = *impl_;
    if (d.stopping) {
        return;
    }
    if (d.scheduler != nullptr) {
        // The tasks call into the engine: none may run once it is gone.
        d.scheduler->cancel(d.retention_task);
        d.scheduler->cancel(d.due_task);
    }
    if (!d.started) {
        // start() failed part way: only the loop may be up.
        d.stopping = true;
        d.io.stop();
        if (d.thread.joinable()) {
            d.thread.join();
        }
        return;
    }
    d.fleet.set_back_in_service_listener({});
    d.store.set_change_listener({});  // returns once a call in progress has finished
    // Stop claiming and end every running step; give the runs kill_grace (plus a little) to
    // finish. Runs stopped for shutdown leave their jobs running in the store: the next start
    // rescues them, exactly as after a crash.
    std::promise<void> drained;
    auto drained_future = drained.get_future();
    asio::co_spawn(
        d.io,
        [&d, &drained]() -> asio::awaitable<void> {
            d.stopping = true;
            for (auto& [id, run] : d.running) {
                d.request_stop(*run, StopReason::kShutdown);
            }
            asio::steady_timer timer(d.io);
            auto give_up =
                std::chrono::steady_clock::now() + d.settings.kill_grace + std::chrono::seconds{2};
            while ((!d.running.empty() || d.dispatching) &&
                   std::chrono::steady_clock::now() < give_up) {
                timer.expires_after(std::chrono::milliseconds{10});
                co_await timer.async_wait(asio::use_awaitable);
            }
            for (auto& [name, driver] : d.drivers) {
                co_await driver->stop();
            }
            drained.set_value();
        },
        asio::detached);
    drained_future.wait();
    // A store answer still on its way would post to the loop: let it land before the loop
    // goes (the writer answers every queued operation, so this ends).
    while (d.store_callbacks.load() > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds{1});
    }
    d.io.stop();
    if (d.thread.joinable()) {
        d.thread.join();
    }
    d.pool->stop();
    d.log->info("job engine stopped");
}

// ---------------------------------------------------------------------------------------------
// Engine: surfaces

core::Result<store::JobSubmit> Engine::Impl::submission(core::Job job,
                                                        const SubmitRequest& request,
                                                        const fleet::Caller& caller) {
    if (annotator) {
        job.annotation = annotator(job);
    }
    // A node out of service takes no mutating job (as it takes no lease); reading its status
    // or a no-op is fine. Decided in the submission's own transaction, not on an earlier read.
    bool exclusive = job.exclusive;
    store::JobSubmit submit{.job = std::move(job),
                            .refuse_in_maintenance = exclusive,
                            .actor = caller.identity.empty()
                                         ? (request.owner.empty() ? "anonymous" : request.owner)
                                         : caller.identity};
    if (!request.owner.empty()) {
        fleet::AcquireRequest acquire{
            .node = request.node,
            .owner = request.owner,
            .reason = request.reason.empty()
                          ? fmt::format("{} of {}", submit.job.action, submit.job.node)
                          : request.reason,
            .ttl = request.lease_ttl};
        auto lease_request = fleet.lease_request(acquire, caller);
        if (!lease_request) {
            return lease_request.error();
        }
        submit.acquire = *lease_request;
    } else if (exclusive) {
        // A mutating job without an owner: only on a free node (it stays free) or the caller's.
        // Read-only (non-exclusive) actions such as status run whoever holds the node.
        submit.require_unheld = true;
        submit.allowed_holder = caller.identity;
    }
    return submit;
}

void Engine::Impl::hand_over(int slot, std::vector<core::Job> claimed) {
    if (claimed.empty()) {
        // Nothing claimed here: the dispatcher looks, also for a job that found no free worker
        // while this submission held the slot it now gives back.
        release(slot);
        wake();
    } else {
        asio::post(
            io, [this, job = std::move(claimed.front())]() mutable { start_run(std::move(job)); });
    }
}

core::Result<Submitted> Engine::Impl::submitted(core::Result<store::JobSubmitted> done,
                                                const store::JobSubmit& submit,
                                                const fleet::Caller& caller) {
    if (!done) {
        return done.error();
    }
    if (done->maintenance_reason) {
        return core::Error{
            core::ErrorCode::kUnavailable,
            fmt::format("node {} is in maintenance ({}): {} is refused until it is "
                        "back in service",
                        submit.job.node, *done->maintenance_reason, submit.job.action)};
    }
    if (done->refused) {
        store::LeaseRequest wording = submit.acquire.value_or(
            store::LeaseRequest{.node = submit.job.node, .owner = caller.identity});
        return fleet::Fleet::refusal_error(wording, done->refusal);
    }
    Submitted out{.job = std::move(done->job), .duplicate = done->duplicate};
    if (done->lease && done->lease->granted && !done->lease->leases.empty()) {
        out.lease = done->lease->leases.front();
    }
    if (!out.duplicate) {
        if (submitted_total != nullptr) {
            submitted_total->with({out.job.action}).inc();
        }
        log->info("job {} queued: {} on {} by {}", out.job.id, out.job.action, out.job.node,
                  out.job.requester);
    }
    return out;
}

core::Result<Submitted> Engine::Impl::submit_job(core::Job job,
                                                 const SubmitRequest& request,
                                                 const fleet::Caller& caller) {
    auto submit = submission(std::move(job), request, caller);
    if (!submit) {
        return submit.error();
    }
    // A free worker takes a job in the submission's own commit (one commit to start).
    int slot = stopping ? 0 : reserve(1);
    auto both = store.submit_and_claim(*submit, claim_now(), slot);
    hand_over(slot, both ? std::move(both->claimed) : std::vector<core::Job>{});
    if (!both) {
        return both.error();
    }
    return submitted(std::move(both->submitted), *submit, caller);
}

void Engine::Impl::record_refusal(const ActionSpec& action,
                                  std::string_view node,
                                  std::string_view requester,
                                  const std::string& reason) {
    json::object after{{"action", action.name}, {"reason", reason}};
    core::Event event{.at = clock.now(),
                      .actor = std::string(requester),
                      .kind = "job.refused",
                      .node = std::string(node),
                      .after = json::serialize(after)};
    if (auto recorded = store.record_event(event); !recorded) {
        log->error("recording a refusal failed: {}", recorded.error().message);
    }
    if (refused_total != nullptr) {
        refused_total->with({action.name}).inc();
    }
}

core::Result<void> Engine::Impl::admit(const ActionSpec& action,
                                       const core::Node& node,
                                       const fleet::Caller& caller,
                                       std::string_view requester) {
    if (auto refusal = permission_refusal(settings.permissions, caller, action.name, node);
        !refusal.empty()) {
        record_refusal(action, node.spec.name, requester, refusal);
        return core::Error{core::ErrorCode::kPermissionDenied, refusal};
    }
    return {};
}

namespace {

/// A lease step acts on the fleet for the job's requester, so it is held to the fleet's rule
/// for leases, here where the caller is known: a user's token lends only to itself and gives
/// back only its own loan; admins (and every caller without tokens) act for anyone.
core::Result<void> lease_refusal(const ActionSpec& action,
                                 const core::Job& job,
                                 const fleet::Caller& caller) {
    if (caller.admin) {
        return {};
    }
    for (const auto& step : action.steps) {
        if (step.kind != StepKind::kLease) {
            continue;
        }
        auto owner = render_template(step.lease.owner, job);
        if (!owner) {
            return owner.error();
        }
        if (*owner == caller.identity) {
            continue;
        }
        return core::Error{
            core::ErrorCode::kPermissionDenied,
            step.lease.acquire
                ? fmt::format("token for {} may not lend {} to {}: it needs admin", caller.identity,
                              job.node, owner->empty() ? "nobody" : *owner)
                : fmt::format("token for {} may give back only its own loan of {} (name itself "
                              "as the person), not {}: it needs admin",
                              caller.identity, job.node,
                              owner->empty() ? "whoever holds it" : *owner)};
    }
    return {};
}

}  // namespace

asio::awaitable<core::Result<Submitted>> Engine::submit(SubmitRequest request,
                                                        fleet::Caller caller) {
    auto& d = *impl_;
    const auto* action = d.find_action(request.action);
    if (action == nullptr) {
        co_return core::Error{core::ErrorCode::kNotFound,
                              fmt::format("unknown action \"{}\" (known: {})", request.action,
                                          known_actions(d.settings.actions))};
    }
    if (!core::is_dns_label(request.node)) {
        co_return invalid(fmt::format(
            "node \"{}\" is not a valid node name (a DNS-1123 label)",
            request.node.size() > 80 ? request.node.substr(0, 80) + "..." : request.node));
    }
    auto params = validate_params(*action, request.params);
    if (!params) {
        co_return params.error();
    }
    std::string requester = caller.identity.empty()
                                ? (request.owner.empty() ? "anonymous" : request.owner)
                                : caller.identity;
    // Permission rules match the node's labels and machine groups: only then is the node read
    // before the write (on the engine's pool). Everything else the submission needs to know
    // about the node (that it exists, that it is in service) is decided in its transaction.
    if (permissions_apply(d.settings.permissions, caller)) {
        auto admit = [&d, &request, &caller, action, &requester]() -> core::Result<void> {
            auto node = d.fleet.node(request.node);
            if (!node) {
                return node.error();
            }
            return d.admit(*action, *node, caller, requester);
        };
        if (auto admitted = co_await net::offload(*d.pool, admit); !admitted) {
            co_return admitted.error();
        }
    }
    auto job = new_job(*action, request.node, *params, requester, request.owner, d.clock.now());
    if (auto refused = lease_refusal(*action, job, caller); !refused) {
        auto record = [&d, action, &job, &requester, &refused] {
            d.record_refusal(*action, job.node, requester, refused.error().message);
        };
        co_await net::offload(*d.pool, record);
        co_return refused.error();
    }
    auto submit = d.submission(std::move(job), request, caller);
    if (!submit) {
        co_return submit.error();
    }
    // A free worker takes a job in the submission's own commit (one commit to start). The
    // answer comes from the store's writer thread: no thread waits on the commit.
    int slot = d.stopping ? 0 : d.reserve(1);
    using Answer = core::Result<store::JobSubmittedAndClaimed>;
    auto start = [&d, &submit, slot](std::function<void(Answer)> done) {
        auto answer = [&d, slot, done = std::move(done)](Answer both) {
            d.hand_over(slot, both ? std::move(both->claimed) : std::vector<core::Job>{});
            done(std::move(both));
        };
        d.store.submit_and_claim_async(*submit, d.claim_now(), slot, d.counted<Answer>(answer));
    };
    auto both = co_await net::await_answer<Answer>(std::move(start));
    if (!both) {
        co_return both.error();
    }
    co_return d.submitted(std::move(both->submitted), *submit, caller);
}

void Engine::set_annotator(Annotator annotator) {
    impl_->annotator = std::move(annotator);
}

void Engine::set_on_transition(Transition on_transition) {
    impl_->on_transition = std::move(on_transition);
}

core::Result<core::Job> Engine::job(std::string_view id) {
    return impl_->store.job(id);
}

core::Result<JobsPage> Engine::jobs(const JobsQuery& query) {
    if (query.limit < 1 || query.limit > 1000) {
        return invalid(fmt::format("limit {} is out of range 1..1000", query.limit));
    }
    store::JobQuery store_query{.node = query.node, .state = query.state, .limit = query.limit + 1};
    if (!query.cursor.empty()) {
        try {
            std::size_t used = 0;
            store_query.before_seq = std::stoll(query.cursor, &used);
            if (used != query.cursor.size()) {
                throw std::invalid_argument("trailing text");
            }
        } catch (const std::exception&) {
            return invalid(fmt::format("cursor \"{}\" is not one this server gave", query.cursor));
        }
    }
    auto found = impl_->store.jobs(store_query);
    if (!found) {
        return found.error();
    }
    JobsPage page{.jobs = std::move(*found)};
    if (static_cast<int>(page.jobs.size()) > query.limit) {
        page.jobs.resize(static_cast<std::size_t>(query.limit));
        page.next_cursor = std::to_string(page.jobs.back().seq);
    }
    return page;
}

core::Result<core::Job> Engine::cancel(std::string_view id, const fleet::Caller& caller) {
    auto& d = *impl_;
    auto job = d.store.job(id);
    if (!job) {
        return job.error();
    }
    if (!caller.admin && caller.identity != job->requester && caller.identity != job->owner) {
        return core::Error{core::ErrorCode::kPermissionDenied,
                           fmt::format("job {} belongs to {}: only its requester, its owner or an "
                                       "admin may cancel it",
                                       id, job->requester)};
    }
    std::string actor = caller.identity.empty() ? "anonymous" : caller.identity;
    auto cancelled = d.store.cancel_job(id, actor, d.clock.now());
    if (!cancelled) {
        return cancelled.error();
    }
    if (cancelled->state == core::JobState::kCancelling) {
        bool ours = cancelled->runner == d.runner_id;
        asio::post(d.io, [&d, job_id = std::string(id), ours] { d.stop_cancelled(job_id, ours); });
    } else if (d.finished_total != nullptr && cancelled->state == core::JobState::kCancelled) {
        d.finished_total->with({cancelled->action, "cancelled"}).inc();
    }
    d.notify(cancelled->id);
    d.wake();
    return cancelled;
}

core::Result<Submitted> Engine::retry(std::string_view id, const fleet::Caller& caller) {
    auto& d = *impl_;
    auto old = d.store.job(id);
    if (!old) {
        return old.error();
    }
    if (!core::is_terminal(old->state)) {
        return invalid(fmt::format("job {} is {}: only a finished job can be retried", id,
                                   core::to_string(old->state)));
    }
    SubmitRequest request{
        .action = old->action, .node = old->node, .params = old->params, .owner = old->owner};
    const auto* action = d.find_action(old->action);
    if (action == nullptr) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("job {}'s action \"{}\" no longer exists", id, old->action)};
    }
    auto node = d.fleet.node(old->node);
    if (!node) {
        return node.error();
    }
    std::string requester = caller.identity.empty() ? old->requester : caller.identity;
    if (auto admitted = d.admit(*action, *node, caller, requester); !admitted) {
        return admitted.error();
    }
    auto now = d.clock.now();
    auto job = new_job(*action, old->node, old->params, requester, old->owner, now);
    job.retry_of = old->id;
    if (auto refused = lease_refusal(*action, job, caller); !refused) {
        d.record_refusal(*action, job.node, requester, refused.error().message);
        return refused.error();
    }
    return d.submit_job(std::move(job), request, caller);
}

core::Result<OutputPage> Engine::output(const store::OutputQuery& query) {
    auto& d = *impl_;
    auto job = d.store.job(query.job_id);
    if (!job) {
        return job.error();
    }
    auto lines = d.store.job_output(query);
    if (!lines) {
        return lines.error();
    }
    auto last = d.store.last_output_seq(query.job_id);
    if (!last) {
        return last.error();
    }
    return OutputPage{
        .lines = std::move(*lines), .last_seq = *last, .finished = core::is_terminal(job->state)};
}

core::Result<void> Engine::set_paused(std::string_view queue,
                                      bool paused,
                                      const fleet::Caller& caller) {
    auto& d = *impl_;
    if (!caller.admin) {
        return core::Error{core::ErrorCode::kPermissionDenied,
                           "pausing and resuming queues is for admins"};
    }
    bool known = false;
    for (const auto& action : d.settings.actions) {
        known = known || action.queue == queue;
    }
    if (!known) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("no action uses queue \"{}\"", queue)};
    }
    auto done = d.store.set_queue_paused(
        queue, paused, caller.identity.empty() ? "anonymous" : caller.identity, d.clock.now());
    if (done && !paused) {
        d.wake();
    }
    return done;
}

core::Result<std::vector<QueueInfo>> Engine::queues() {
    auto paused = impl_->store.paused_queues();
    if (!paused) {
        return paused.error();
    }
    std::set<std::string> names;
    for (const auto& action : impl_->settings.actions) {
        names.insert(action.queue);
    }
    std::vector<QueueInfo> out;
    for (const auto& name : names) {
        bool is_paused = std::find(paused->begin(), paused->end(), name) != paused->end();
        out.push_back(QueueInfo{.name = name, .paused = is_paused});
    }
    return out;
}

net::Hub& Engine::hub() {
    return impl_->hub;
}

std::string Engine::job_topic(std::string_view id) {
    return fmt::format("job:{}", id);
}

const ActionSpec* Engine::action(std::string_view name) const {
    return impl_->find_action(name);
}

const std::vector<ActionSpec>& Engine::actions() const {
    return impl_->settings.actions;
}

const Settings& Engine::settings() const {
    return impl_->settings;
}

Engine::Impl& Engine::impl_for_test() {
    return *impl_;
}

}  // namespace aviary::jobs
