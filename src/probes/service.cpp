// probes::Service: every enabled scenario on its schedule inside serve (docs/probes.md,
// "Schedule"). One I/O thread runs every scenario's loop as a coroutine; store calls are
// offloaded to the blocking pool so a commit never holds the loop.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <deque>
#include <exception>
#include <future>
#include <list>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "metrics/metrics.hpp"
#include "net/net.hpp"
#include "probes/probes.hpp"

namespace aviary::probes {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

/// Lateness samples kept for the figures: the newest this many.
constexpr std::size_t kLatenessSamples = 100'000;
/// Buckets are kept this long past the longest window, so 30 days are always whole.
constexpr core::Millis kBucketRetention{std::chrono::hours{24 * 31}};
/// How often the availability gauges are read again.
constexpr core::Millis kGaugeRefresh{std::chrono::seconds{30}};

double percentile(std::vector<double> values, double p) {
    if (values.empty()) {
        return 0;
    }
    std::sort(values.begin(), values.end());
    auto at = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
    return values[std::min(at, values.size() - 1)];
}

}  // namespace

std::vector<std::pair<std::string, core::Millis>> standard_windows() {
    using std::chrono::hours;
    return {{"1h", hours{1}}, {"24h", hours{24}}, {"30d", hours{24 * 30}}};
}

Window window_from(std::string name, core::Millis length, const store::ProbeBucket& counts) {
    Window w{.name = std::move(name),
             .length = length,
             .runs = counts.runs,
             .failed = counts.failed,
             .broken = counts.broken};
    if (counts.runs > 0) {
        auto share = [&](std::int64_t bad) {
            return 1.0 - static_cast<double>(bad) / static_cast<double>(std::max(bad, counts.runs));
        };
        w.availability = share(counts.broken);
        w.correctness = share(counts.failed);
        w.success = share(counts.broken + counts.failed);
    }
    return w;
}

std::string steps_json(const std::vector<StepResult>& steps) {
    json::array out;
    for (const auto& s : steps) {
        out.push_back(json::object{{"name", s.name},
                                   {"kind", step_kind_name(s.kind)},
                                   {"depth", s.depth},
                                   {"cleanup", s.cleanup},
                                   {"outcome", outcome_name(s.outcome)},
                                   {"duration_ms", s.duration.count()},
                                   {"message", s.message}});
    }
    return json::serialize(out);
}

struct Service::Impl {
    Impl(const Settings& settings_in, Options options_in)
        : settings(settings_in),
          options(std::move(options_in)),
          clock(options.clock != nullptr ? *options.clock : system_clock),
          http(io.get_executor(),
               net::ClientSettings{.max_idle_per_host = 16, .max_per_host = 256}),
          log(core::logger("probes")),
          random(std::random_device{}()) {
        if (options.metrics != nullptr) {
            auto& m = *options.metrics;
            success = &m.gauge("aviary_probe_success",
                               "1 when the scenario's last run here passed, else 0.", {"probe"});
            duration =
                &m.histogram("aviary_probe_duration_seconds", "How long the scenario's runs took.",
                             {"probe"}, {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60});
            runs_total = &m.counter("aviary_probe_runs_total",
                                    "The scenario's runs on this instance, by outcome (passed, "
                                    "failed: a check did not hold, broken: unreachable).",
                                    {"probe", "outcome"});
            availability = &m.gauge(
                "aviary_probe_availability_ratio",
                "The share of the scenario's runs, on every instance, over the window that "
                "reached their target (1 - broken / runs).",
                {"probe", "window"});
            lateness_gauge = &m.gauge("aviary_probe_start_lateness_seconds",
                                      "How late this instance's scheduled runs started, p99 of "
                                      "the newest runs.")
                                  .get();
        }
    }

    /// Runs `work` (a store call) on the blocking pool.
    template <class F>
    asio::awaitable<std::invoke_result_t<F&>> offload(F work) {
        co_return co_await net::offload(*options.blocking, std::move(work));
    }

    asio::awaitable<void> sleep_until(core::TimePoint at) {
        asio::steady_timer timer{io};
        auto wait = at - clock.now();
        timer.expires_after(
            std::max(std::chrono::duration_cast<core::Millis>(wait), core::Millis{0}));
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }

    core::Millis jittered(core::Millis interval) {
        // ±10 %, so scenarios with one interval do not all start in step.
        std::uniform_real_distribution<double> spread{0.9, 1.1};
        return core::Millis{
            static_cast<std::int64_t>(static_cast<double>(interval.count()) * spread(random))};
    }

    /// One coroutine waiting for a slot: give_slot() hands it one by taking it off the list.
    struct SlotWaiter {
        asio::steady_timer* wake;
        bool handed = false;
    };

    /// Waits for one of max_concurrent slots.
    asio::awaitable<void> take_slot() {
        while (running >= settings.max_concurrent) {
            asio::steady_timer wake{io, asio::steady_timer::time_point::max()};
            SlotWaiter me{&wake};
            auto entry = waiting.insert(waiting.end(), &me);
            co_await wake.async_wait(asio::as_tuple(asio::use_awaitable));
            if (!me.handed) {
                waiting.erase(entry);  // woken by stop(): no one may touch this timer again
            }
            if (stopping) {
                co_return;
            }
        }
        ++running;
    }

    void give_slot() {
        --running;
        if (!waiting.empty()) {
            auto* next = waiting.front();
            waiting.pop_front();
            next->handed = true;
            next->wake->cancel();
        }
    }

    /// Runs one scenario and stores the run. Always on the probes thread. `due`: when a
    /// scheduled run was due, so its lateness (start, a free slot included, against due) counts.
    asio::awaitable<RunResult> run_and_store(const Scenario& scenario,
                                             std::optional<core::TimePoint> due = std::nullopt,
                                             std::string node = {}) {
        co_await take_slot();
        if (due) {
            note_lateness(std::chrono::duration_cast<core::Millis>(clock.now() - *due));
        }
        RunContext context;
        context.http = &http;
        context.blocking = options.blocking;
        context.vars["server"] = server_url;
        context.vars["token"] = settings.token;
        context.vars["node"] = node.empty() ? scenario.node : node;
        context.max_body_bytes = settings.max_body_bytes;
        context.clock = &clock;
        auto result = co_await run_scenario(scenario, std::move(context));
        give_slot();
        // What a run says may quote a value it compared: the token among them. Redacted once,
        // here, for the store, the log and whoever asked for the run.
        result.message = core::redact(result.message);
        for (auto& step : result.steps) {
            step.message = core::redact(step.message);
        }
        store::ProbeRun record{.scenario = scenario.name,
                               .started_at = result.started,
                               .duration = result.duration,
                               .outcome = std::string{outcome_name(result.outcome)},
                               .failed_step = result.failed_step,
                               .message = result.message,
                               .steps = steps_json(result.steps),
                               .instance = options.instance};
        if (stopping) {
            co_return result;  // abandoned: a run cut short by shutdown is not a result
        }
        auto store_run = [this, record] { return options.store->record_probe_run(record); };
        auto stored = co_await offload(std::move(store_run));
        if (!stored) {
            log->warn("probe run not stored probe={} error=\"{}\"", scenario.name,
                      stored.error().message);
        } else if (options.on_run_stored) {
            options.on_run_stored();
        }
        if (success != nullptr) {
            success->with({scenario.name}).set(result.outcome == Outcome::kPassed ? 1 : 0);
            duration->with({scenario.name})
                .observe(static_cast<double>(result.duration.count()) / 1000.0);
            runs_total->with({scenario.name, outcome_name(result.outcome)}).inc();
        }
        if (result.outcome == Outcome::kPassed) {
            log->debug("probe passed probe={} duration_ms={}", scenario.name,
                       result.duration.count());
        } else {
            log->info("probe {} probe={} duration_ms={} message=\"{}\"",
                      outcome_name(result.outcome), scenario.name, result.duration.count(),
                      result.message);
        }
        co_return result;
    }

    /// One scenario's schedule, for the service's life.
    asio::awaitable<void> loop(const Scenario& scenario, std::optional<core::TimePoint> seen) {
        // A scenario new to the store starts within its interval (at most 10 s), spread out.
        core::TimePoint due =
            seen ? *seen
                 : clock.now() +
                       core::Millis{std::uniform_int_distribution<std::int64_t>{
                           0, std::min<std::int64_t>(scenario.interval.count(), 10'000)}(random)};
        while (!stopping) {
            co_await sleep_until(due);
            if (stopping) {
                break;
            }
            auto now = clock.now();
            // Held while it runs: no other instance starts it before this run could have ended.
            auto hold = now + scenario.interval + 2 * scenario.timeout;
            auto claim = [this, &scenario, seen, hold] {
                return options.store->claim_probe(scenario.name, seen, hold);
            };
            auto claimed = co_await offload(std::move(claim));
            if (!claimed || !*claimed) {
                if (!claimed) {
                    log->warn("probe not claimed probe={} error=\"{}\"", scenario.name,
                              claimed.error().message);
                }
                // Another instance has it (or the store is away): read when it runs next.
                auto read_schedule = [this] { return options.store->probe_schedule(); };
                auto slots = co_await offload(std::move(read_schedule));
                std::optional<core::TimePoint> stored;
                if (slots) {
                    for (const auto& slot : *slots) {
                        if (slot.scenario == scenario.name) {
                            stored = slot.next_run_at;
                        }
                    }
                }
                seen = stored;
                due = std::max(stored.value_or(now), now + core::Millis{1000});
                continue;
            }
            seen = hold;
            auto result = co_await run_and_store(scenario, due);
            if (stopping) {
                break;
            }
            auto next = result.started + jittered(scenario.interval);
            auto move_on = [this, &scenario, seen, next] {
                return options.store->claim_probe(scenario.name, seen, next);
            };
            auto moved = co_await offload(std::move(move_on));
            if (moved && *moved) {
                seen = next;
                due = next;
            } else {
                due = *seen;  // taken over meanwhile: come back when that hold ends
            }
        }
    }

    /// The gatekeeper (docs/probes.md, "Gated leases"): keeps the store's set of gated nodes
    /// as the gates' selectors say, and runs the gate of each free gated node whose pass is
    /// missing (a lease used it) or about to lapse. Each gate run is claimed in the store, so
    /// of several instances one runs it.
    asio::awaitable<void> gate_loop() {
        std::optional<std::vector<std::string>> configured;  // what the store was last told
        while (!stopping) {
            const auto now = clock.now();
            auto read = [this, now]()
                -> core::Result<std::pair<std::vector<core::Node>, std::vector<store::ProbeSlot>>> {
                auto nodes = options.store->nodes(now);
                if (!nodes) {
                    return nodes.error();
                }
                auto slots = options.store->probe_schedule();
                if (!slots) {
                    return slots.error();
                }
                return std::pair{std::move(*nodes), std::move(*slots)};
            };
            auto got = co_await offload(std::move(read));
            if (!got) {
                log->warn("gated nodes not read error=\"{}\"", got.error().message);
            } else {
                auto& [nodes, slots] = *got;
                std::vector<std::pair<const core::Node*, const Gate*>> gated;
                std::vector<std::string> names;
                for (const auto& node : nodes) {
                    for (const auto& gate : settings.gates) {
                        if (core::labels_match(node.spec.labels, gate.selector)) {
                            gated.emplace_back(&node, &gate);
                            names.push_back(node.spec.name);
                            break;
                        }
                    }
                }
                if (configured != names) {
                    auto configure = [this, names, now] {
                        return options.store->configure_gates(names, now);
                    };
                    if (auto done = co_await offload(std::move(configure)); !done) {
                        log->warn("gated nodes not configured error=\"{}\"", done.error().message);
                    } else {
                        configured = names;
                        continue;  // read again: newly gated nodes now show as not passed
                    }
                }
                std::map<std::string, core::TimePoint, std::less<>> held;
                for (const auto& slot : slots) {
                    held[slot.scenario] = slot.next_run_at;
                }
                for (const auto& [node, gate] : gated) {
                    if (node->state != core::NodeState::kFree || !node->gate_until ||
                        gating.contains(node->spec.name)) {
                        continue;
                    }
                    if (*node->gate_until - now > gate->max_age / 3) {
                        continue;  // passed, and not about to lapse
                    }
                    const auto* scenario = find_scenario(settings, gate->scenario);
                    if (scenario == nullptr) {
                        continue;
                    }
                    const std::string slot = "gate:" + node->spec.name;
                    std::optional<core::TimePoint> seen;
                    if (auto found = held.find(slot); found != held.end()) {
                        if (found->second > now) {
                            continue;  // another instance runs it now
                        }
                        seen = found->second;
                    }
                    gating.insert(node->spec.name);
                    spawn(
                        run_gate(node->spec.name, *gate, *scenario, slot, seen, *node->gate_until));
                }
            }
            co_await sleep_until(clock.now() + settings.gate_poll);
        }
    }

    /// One gate run on `node`, claimed first; a pass lets selectors have the node for max_age,
    /// a failure puts it in maintenance.
    asio::awaitable<void> run_gate(std::string node,
                                   const Gate& gate,
                                   const Scenario& scenario,
                                   std::string slot,
                                   std::optional<core::TimePoint> seen,
                                   core::TimePoint gate_seen) {
        const auto hold = clock.now() + 2 * scenario.timeout + std::chrono::seconds{5};
        auto claim = [this, slot, seen, hold] {
            return options.store->claim_probe(slot, seen, hold);
        };
        auto claimed = co_await offload(std::move(claim));
        if (!claimed || !*claimed) {
            gating.erase(node);
            co_return;
        }
        auto result = co_await run_and_store(scenario, std::nullopt, node);
        if (stopping) {
            co_return;  // cut short: the hold lapses and the next start runs it again
        }
        auto settle = [this, node, &gate, result, slot, hold, gate_seen]() -> core::Result<void> {
            auto now = clock.now();
            core::Result<void> done;
            if (result.outcome == Outcome::kPassed) {
                auto set =
                    options.store->set_gate(node, result.started + gate.max_age, gate_seen, now);
                if (!set) {
                    done = set.error();
                } else if (!*set) {
                    // Leased (and maybe back) while the gate ran: this pass says nothing of
                    // the node now. The next look runs the gate again.
                    (void)options.store->claim_probe(slot, hold, now);
                    return {};
                }
            } else {
                auto reason = fmt::format("gate {} failed ({}): {}", gate.name,
                                          outcome_name(result.outcome), result.message);
                auto changed = options.store->start_maintenance(node, reason, "aviary", now);
                done = changed ? core::Result<void>{} : core::Result<void>{changed.error()};
                // And its earlier pass no longer holds: back in service, it runs the gate first.
                (void)options.store->set_gate(node, core::TimePoint{}, gate_seen, now);
            }
            if (options.on_gate) {
                options.on_gate(node, gate, result);
            }
            (void)options.store->claim_probe(slot, hold, now);  // free for the next run
            return done;
        };
        if (auto done = co_await offload(std::move(settle)); !done) {
            log->warn("gate result not stored node={} gate={} error=\"{}\"", node, gate.name,
                      done.error().message);
        } else if (result.outcome != Outcome::kPassed) {
            log->warn("gate failed: node in maintenance node={} gate={} message=\"{}\"", node,
                      gate.name, result.message);
        }
        gating.erase(node);
    }

    /// Starts `work` on the loop, cancellable at stop(). On the probes thread (or before it runs).
    void spawn(asio::awaitable<void> work) {
        auto& signal = signals.emplace_back();
        ++active;
        asio::co_spawn(io, std::move(work),
                       asio::bind_cancellation_slot(signal.slot(), [this](std::exception_ptr e) {
                           if (e && !stopping) {
                               try {
                                   std::rethrow_exception(e);
                               } catch (const std::exception& failure) {
                                   log->error("probe loop ended error=\"{}\"", failure.what());
                               }
                           }
                           if (--active == 0 && drained != nullptr) {
                               drained->set_value();
                               drained = nullptr;
                           }
                       }));
    }

    /// Calls a run-now caller back, once: with the run, or (at stop) kUnavailable.
    void answer_on_demand(std::uint64_t id, core::Result<RunResult> result) {
        RunDone done;
        {
            std::lock_guard lock{mu};
            auto found = on_demand.find(id);
            if (found == on_demand.end()) {
                return;
            }
            done = std::move(found->second);
            on_demand.erase(found);
        }
        done(std::move(result));
    }

    /// At stop: every run-now caller still waiting hears that its run was not finished.
    void answer_left_on_demand() {
        std::map<std::uint64_t, RunDone> left;
        {
            std::lock_guard lock{mu};
            left.swap(on_demand);
        }
        for (auto& [id, done] : left) {
            done(core::Error{core::ErrorCode::kUnavailable,
                             "serve is stopping: the run was not finished"});
        }
    }

    void note_lateness(core::Millis late) {
        std::lock_guard lock{mu};
        lateness_ms.push_back(static_cast<double>(std::max(late, core::Millis{0}).count()));
        if (lateness_ms.size() > kLatenessSamples) {
            lateness_ms.pop_front();
        }
        ++scheduled_runs;
    }

    /// Reads the windows' totals and sets the availability gauges.
    asio::awaitable<void> refresh_gauges() {
        while (!stopping && availability != nullptr) {
            auto now = clock.now();
            for (const auto& [name, length] : standard_windows()) {
                auto read_totals = [this, since = now - length] {
                    return options.store->probe_totals(since);
                };
                auto totals = co_await offload(std::move(read_totals));
                if (!totals) {
                    continue;
                }
                for (const auto& t : *totals) {
                    auto w = window_from(name, length, t);
                    if (w.availability && find_scenario(settings, t.scenario) != nullptr) {
                        availability->with({t.scenario, name}).set(*w.availability);
                    }
                }
            }
            if (lateness_gauge != nullptr) {
                lateness_gauge->set(snapshot().p99_ms / 1000.0);
            }
            co_await sleep_until(clock.now() + kGaugeRefresh);
        }
    }

    Lateness snapshot() const {
        std::vector<double> copy;
        Lateness out;
        {
            std::lock_guard lock{mu};
            copy.assign(lateness_ms.begin(), lateness_ms.end());
            out.runs = scheduled_runs;
        }
        out.p50_ms = percentile(copy, 0.50);
        out.p99_ms = percentile(copy, 0.99);
        out.max_ms = copy.empty() ? 0 : *std::max_element(copy.begin(), copy.end());
        return out;
    }

    const Settings& settings;
    Options options;
    core::SystemClock system_clock;
    core::Clock& clock;
    asio::io_context io;
    net::HttpClient http;
    std::shared_ptr<spdlog::logger> log;
    std::mt19937_64 random;
    std::thread thread;
    std::atomic<bool> stopping{false};
    bool started = false;
    std::string server_url;  // set by start(), before the loop runs
    // The probes thread's own: slots and who waits for one; the coroutines running, how to
    // cancel each, and who waits for them all to end.
    int running = 0;
    int active = 0;
    std::list<asio::cancellation_signal> signals;
    std::promise<void>* drained = nullptr;
    std::list<SlotWaiter*> waiting;
    std::set<std::string, std::less<>> gating;  // nodes whose gate runs now
    // Lateness figures, read from other threads; callers of run_now() waiting for their run.
    mutable std::mutex mu;
    std::map<std::uint64_t, RunDone> on_demand;
    std::uint64_t next_on_demand = 0;
    std::deque<double> lateness_ms;
    std::uint64_t scheduled_runs = 0;
    // Metrics (null without a registry).
    metrics::Family<metrics::Gauge>* success = nullptr;
    metrics::Family<metrics::Histogram>* duration = nullptr;
    metrics::Family<metrics::Counter>* runs_total = nullptr;
    metrics::Family<metrics::Gauge>* availability = nullptr;
    metrics::Gauge* lateness_gauge = nullptr;
};

Service::Service(Settings settings, Options options)
    : settings_(std::move(settings)), impl_(std::make_unique<Impl>(settings_, std::move(options))) {
    AVIARY_ASSERT(impl_->options.store != nullptr && impl_->options.blocking != nullptr,
                  "probes::Service needs a store and a blocking pool");
}

Service::~Service() {
    stop();
}

store::Store* Service::impl_store() {
    return impl_->options.store;
}

void Service::start(std::string server_url) {
    auto& impl = *impl_;
    if (impl.started) {
        return;
    }
    impl.started = true;
    impl.server_url = std::move(server_url);
    std::map<std::string, core::TimePoint, std::less<>> due;
    if (impl.options.schedule) {
        if (auto slots = impl.options.store->probe_schedule()) {
            for (const auto& slot : *slots) {
                due[slot.scenario] = slot.next_run_at;
            }
        } else {
            impl.log->warn("probe schedule not read error=\"{}\"", slots.error().message);
        }
        for (const auto& scenario : settings_.scenarios) {
            if (!scenario.enabled) {
                continue;
            }
            auto found = due.find(scenario.name);
            std::optional<core::TimePoint> seen;
            if (found != due.end()) {
                seen = found->second;
            }
            impl.spawn(impl.loop(scenario, seen));
        }
        impl.spawn(impl.refresh_gauges());
        if (!settings_.gates.empty()) {
            impl.spawn(impl.gate_loop());
        }
    }
    impl.thread = std::thread{[&impl] {
        core::name_this_thread("probes");
        auto guard = asio::make_work_guard(impl.io);
        while (!impl.stopping) {
            try {
                impl.io.run();
                break;
            } catch (const std::exception& e) {
                impl.log->error("probe loop failed error=\"{}\"", e.what());
            }
        }
    }};
    impl.log->info("probes started scenarios={} scheduled={} max_concurrent={}",
                   settings_.scenarios.size(), impl.options.schedule, settings_.max_concurrent);
}

void Service::stop() {
    auto& impl = *impl_;
    if (impl.stopping.exchange(true)) {
        return;
    }
    if (impl.started) {
        // Cancel every loop and run (a run cut short is not stored), and let them end, so no
        // coroutine is left holding the HTTP client when it goes.
        std::promise<void> drained;
        auto all_ended = drained.get_future();
        asio::post(impl.io, [&impl, &drained] {
            if (impl.active == 0) {
                drained.set_value();
                return;
            }
            impl.drained = &drained;
            for (auto& signal : impl.signals) {
                signal.emit(asio::cancellation_type::terminal);
            }
            for (auto* waiter : impl.waiting) {
                waiter->wake->cancel();
            }
        });
        if (all_ended.wait_for(std::chrono::seconds{10}) != std::future_status::ready) {
            impl.log->error("probe runs did not end within 10s of stop");
            impl.io.stop();
            if (impl.thread.joinable()) {
                impl.thread.join();
            }
            impl.drained = nullptr;
            impl.answer_left_on_demand();
            return;
        }
    }
    impl.io.stop();
    if (impl.thread.joinable()) {
        impl.thread.join();
    }
    impl.answer_left_on_demand();
}

void Service::run_now(std::string_view name, RunDone done) {
    const auto* scenario = find_scenario(settings_, name);
    if (scenario == nullptr) {
        done(core::Error{core::ErrorCode::kNotFound, fmt::format("no scenario \"{}\"", name)});
        return;
    }
    auto& impl = *impl_;
    std::uint64_t id = 0;
    {
        std::unique_lock lock{impl.mu};
        if (impl.stopping || !impl.started) {
            lock.unlock();
            done(core::Error{core::ErrorCode::kUnavailable, "probes are not running"});
            return;
        }
        id = ++impl.next_on_demand;
        impl.on_demand.emplace(id, std::move(done));
    }
    asio::post(impl.io, [&impl, scenario, id] {
        impl.spawn(
            [](Impl& impl, const Scenario& scenario, std::uint64_t id) -> asio::awaitable<void> {
                auto result = co_await impl.run_and_store(scenario);
                if (impl.stopping) {
                    co_return;  // stop() answers it: a run cut short is not a result
                }
                impl.answer_on_demand(id, std::move(result));
            }(impl, *scenario, id));
    });
}

core::Result<std::vector<Service::ScenarioStatus>> Service::status() {
    auto& store = *impl_->options.store;
    auto now = impl_->clock.now();
    auto latest = store.latest_probe_runs();
    if (!latest) {
        return latest.error();
    }
    auto slots = store.probe_schedule();
    if (!slots) {
        return slots.error();
    }
    std::vector<std::pair<std::string, std::map<std::string, store::ProbeBucket, std::less<>>>>
        totals;
    for (const auto& [name, length] : standard_windows()) {
        auto counted = store.probe_totals(now - length);
        if (!counted) {
            return counted.error();
        }
        std::map<std::string, store::ProbeBucket, std::less<>> by_scenario;
        for (auto& t : *counted) {
            by_scenario[t.scenario] = t;
        }
        totals.emplace_back(name, std::move(by_scenario));
    }
    std::map<std::string_view, const store::ProbeRun*> last_of;
    for (const auto& run : *latest) {
        last_of[run.scenario] = &run;
    }
    std::map<std::string_view, core::TimePoint> next_of;
    for (const auto& slot : *slots) {
        next_of[slot.scenario] = slot.next_run_at;
    }
    std::vector<ScenarioStatus> out;
    for (const auto& scenario : settings_.scenarios) {
        ScenarioStatus s{.scenario = &scenario};
        if (auto found = last_of.find(scenario.name); found != last_of.end()) {
            s.last = *found->second;
        }
        if (auto found = next_of.find(scenario.name); found != next_of.end() && scenario.enabled) {
            s.next_run_at = found->second;
        }
        auto windows = standard_windows();
        for (std::size_t i = 0; i < windows.size(); ++i) {
            auto found = totals[i].second.find(scenario.name);
            s.windows.push_back(window_from(
                windows[i].first, windows[i].second,
                found == totals[i].second.end() ? store::ProbeBucket{} : found->second));
        }
        out.push_back(std::move(s));
    }
    return out;
}

core::Result<std::vector<store::ProbeBucket>> Service::recent_buckets() {
    return impl_->options.store->probe_buckets(impl_->clock.now() - std::chrono::hours{24});
}

Service::Lateness Service::lateness() const {
    return impl_->snapshot();
}

void schedule_retention(core::Scheduler& scheduler, store::Store& store, const Settings& settings) {
    scheduler.add(core::Scheduler::Task{
        .name = "probe-retention",
        .interval = std::chrono::hours{1},
        .run_once = [&store, retention = settings.retention](
                        core::TimePoint now) -> std::optional<core::TimePoint> {
            auto pruned = store.prune_probe_runs(now - retention,
                                                 now - std::max(retention, kBucketRetention));
            auto log = core::logger("probes");
            // Notifications sent or given up, and silences that ended, go with the runs.
            if (auto history = store.prune_alarm_history(now - retention); !history) {
                log->warn("alarm history not pruned error=\"{}\"", history.error().message);
            }
            if (!pruned) {
                log->warn("probe runs not pruned error=\"{}\"", pruned.error().message);
            } else if (*pruned > 0) {
                log->info("probe runs pruned count={}", *pruned);
            }
            return std::nullopt;
        },
        .leader_only = true});
}

}  // namespace aviary::probes
