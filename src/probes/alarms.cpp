// Alarms on the scenarios (docs/probes.md, "Alarms"). read_alarm() judges one scenario by one
// rule from its stored counts; step_alarm() moves the alarm's durable state on (pending,
// hysteresis, silences, reminders); Alarms runs both for every (rule, scenario) pair as a
// leader-only scheduler task, and writes each change with its notifications and events in one
// transaction, so what the notifiers hear is exactly what was committed.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <map>
#include <mutex>
#include <set>

#include "metrics/metrics.hpp"
#include "probes/probes.hpp"

namespace aviary::probes {
namespace {

namespace json = boost::json;

using std::chrono::hours;

/// The rule name of the alarms the gatekeeper raises.
constexpr std::string_view kGateRule = "gate";
/// Alarms written per commit by an evaluation: one transaction each would cost a commit (an
/// fsync) per alarm, 3 s for 3,000; one for all would hold the writer from leases too long.
constexpr std::size_t kWriteBatch = 500;
/// The least time between evaluations that stored runs wake (Alarms::wake).
constexpr core::Millis kWakeGap{std::chrono::seconds{1}};
using std::chrono::minutes;

/// The multiwindow burn-rate pairs (long window, short window, share of the budget spent in
/// the long window that pages), after the SRE workbook's alerting on SLOs.
struct BurnWindow {
    std::string_view name;
    core::Millis long_window;
    core::Millis short_window;
    double budget_share;
};
/// Bad runs a burn-rate page needs in its long window (see read_slo).
constexpr std::int64_t kMinBadRuns = 2;
constexpr BurnWindow kBurnWindows[] = {
    {"fast", hours{1}, minutes{5}, 0.02},
    {"slow", hours{6}, minutes{30}, 0.05},
};

/// How many runs of `counts` are bad by `measure`.
std::int64_t bad_runs(Measure measure, const store::ProbeBucket& counts) {
    switch (measure) {
        case Measure::kAvailability:
            return counts.broken;
        case Measure::kCorrectness:
            return counts.failed;
        case Measure::kSuccess:
            return counts.broken + counts.failed;
    }
    return 0;
}

/// The original canary's share: 1 − bad / max(bad, runs).
double good_share(Measure measure, const store::ProbeBucket& counts) {
    auto bad = bad_runs(measure, counts);
    return 1.0 - static_cast<double>(bad) / static_cast<double>(std::max(bad, counts.runs));
}

std::string percent(double share) {
    return fmt::format("{:.4g}%", share * 100.0);
}

bool run_is_bad(Measure measure, std::string_view outcome) {
    switch (measure) {
        case Measure::kAvailability:
            return outcome == "broken";
        case Measure::kCorrectness:
            return outcome == "failed";
        case Measure::kSuccess:
            return outcome != "passed";
    }
    return false;
}

store::ProbeBucket sum_since(const std::vector<store::ProbeBucket>& buckets,
                             core::TimePoint from,
                             core::TimePoint to) {
    store::ProbeBucket out;
    for (const auto& b : buckets) {
        if (b.start >= from && b.start < to) {
            out.runs += b.runs;
            out.failed += b.failed;
            out.broken += b.broken;
        }
    }
    return out;
}

core::TimePoint bucket_floor(core::TimePoint at) {
    auto ms = at.time_since_epoch().count();
    auto width = store::kProbeBucket.count();
    return core::TimePoint{core::Millis{ms - ((ms % width) + width) % width}};
}

Reading read_availability(const AlarmRule& rule, const AlarmInput& in) {
    // Whole periods only, ending where the bucket in progress starts.
    const auto end = bucket_floor(in.now);
    int breached = 0;
    int judged = 0;
    std::vector<std::string> shares;
    for (int i = 0; i < rule.periods; ++i) {
        const auto to = end - i * rule.period;
        const auto from = to - rule.period;
        if (to <= in.judged_from) {
            break;  // before the alarm existed: not judged
        }
        ++judged;
        auto counts = sum_since(in.buckets, from, to);
        if (counts.runs == 0) {
            if (rule.period * 10 <= in.interval * 11) {
                --judged;  // no run was due in it: a scenario that runs less often than that
                continue;
            }
            ++breached;  // missing data counts as breaching, as the original's alarm did
            shares.emplace_back("no runs");
            continue;
        }
        auto share = good_share(rule.measure, counts);
        if (share < rule.threshold) {
            ++breached;
        }
        shares.push_back(percent(share));
    }
    std::reverse(shares.begin(), shares.end());
    Reading out;
    out.breaching = breached >= rule.breaching;
    out.summary = fmt::format("{} below {} in {} of the last {} periods of {} ({})",
                              measure_name(rule.measure), percent(rule.threshold), breached, judged,
                              core::format_duration(rule.period),
                              shares.empty() ? std::string{"none judged yet"}
                                             : fmt::format("{}", fmt::join(shares, ", ")));
    return out;
}

Reading read_consecutive(const AlarmRule& rule, const AlarmInput& in) {
    int bad = 0;
    for (const auto& run : in.newest) {
        if (!run_is_bad(rule.measure, run.outcome)) {
            break;
        }
        ++bad;
    }
    Reading out;
    out.breaching = bad >= rule.failures;
    if (bad == 0) {
        out.summary = in.newest.empty() ? std::string{"no runs yet"}
                                        : fmt::format("the last run {}", in.newest.front().outcome);
    } else {
        const auto& last = in.newest.front();
        out.summary = fmt::format("the last {} run{} {}: {}", bad, bad == 1 ? "" : "s",
                                  bad == 1 ? "was bad" : "were bad",
                                  last.message.empty() ? last.outcome : last.message);
    }
    return out;
}

Reading read_slo(const AlarmRule& rule, const AlarmInput& in) {
    const double budget = 1.0 - rule.objective;
    auto burn = [&](core::Millis length) {
        auto counts = sum_since(in.buckets, bucket_floor(in.now - length), in.now + minutes{5});
        if (counts.runs == 0) {
            return 0.0;
        }
        auto bad_share =
            static_cast<double>(bad_runs(rule.measure, counts)) / static_cast<double>(counts.runs);
        return bad_share / budget;
    };
    Reading out;
    std::string why;
    for (const auto& w : kBurnWindows) {
        // The rate that spends `budget_share` of the window's budget in the long window.
        const double limit = w.budget_share * static_cast<double>(rule.window.count()) /
                             static_cast<double>(w.long_window.count());
        auto long_burn = burn(w.long_window);
        auto short_burn = burn(w.short_window);
        // A scenario runs a few dozen times an hour: one bad run is already a steep burn. At
        // least kMinBadRuns in the long window, so a single transient failure does not page.
        auto long_counts =
            sum_since(in.buckets, bucket_floor(in.now - w.long_window), in.now + minutes{5});
        if (bad_runs(rule.measure, long_counts) >= kMinBadRuns && long_burn > limit &&
            short_burn > limit) {
            out.breaching = true;
            why = fmt::format("{} burn: {:.3g}x over {} and {:.3g}x over {} (pages above {:.3g}x)",
                              w.name, long_burn, core::format_duration(w.long_window), short_burn,
                              core::format_duration(w.short_window), limit);
            break;
        }
    }
    std::string left = "no runs in the window";
    if (in.window.runs > 0) {
        const double spent = static_cast<double>(bad_runs(rule.measure, in.window)) /
                             static_cast<double>(in.window.runs) / budget;
        left = fmt::format("{} over {}, {} of the error budget left",
                           percent(good_share(rule.measure, in.window)),
                           core::format_duration(rule.window), percent(std::max(0.0, 1.0 - spent)));
    }
    out.summary = fmt::format("{} objective {}: {}{}", measure_name(rule.measure),
                              percent(rule.objective), left, why.empty() ? "" : "; " + why);
    return out;
}

/// The audit event a notification goes with (it reaches aviary's notifications feed).
core::Event event_of(const store::AlarmState& alarm,
                     std::string_view kind,
                     const std::string& node,
                     core::TimePoint now) {
    json::object after{{"alarm", alarm.name},
                       {"rule", alarm.rule},
                       {"scenario", alarm.scenario},
                       {"state", alarm.state},
                       {"summary", alarm.summary}};
    return core::Event{.at = now,
                       .actor = "aviary",
                       .kind = fmt::format("alarm.{}", kind),
                       .node = node,
                       .after = json::serialize(after)};
}

/// The outbox rows one notification of `alarm` makes: one per notifier, each with the
/// alarm's reading (redacted) and since when it holds its state.
std::vector<store::AlarmNotification> notifications_of(const store::AlarmState& alarm,
                                                       std::string_view kind,
                                                       const std::vector<std::string>& notifiers,
                                                       const std::string& link,
                                                       core::TimePoint now) {
    std::vector<store::AlarmNotification> out;
    for (const auto& notifier : notifiers) {
        out.push_back(store::AlarmNotification{.alarm = alarm.name,
                                               .rule = alarm.rule,
                                               .scenario = alarm.scenario,
                                               .notifier = notifier,
                                               .kind = std::string{kind},
                                               .summary = core::redact(alarm.summary),
                                               .link = link,
                                               .at = now,
                                               .since = alarm.since});
    }
    return out;
}

/// "silence ID until T: reason" for the first silence in force that names one of `names`
/// (or is "*"), else "".
std::string silence_naming(const std::vector<store::Silence>& silences,
                           core::TimePoint now,
                           std::initializer_list<std::string_view> names) {
    for (const auto& s : silences) {
        if (s.starts_at > now) {
            continue;
        }
        if (s.matcher == "*" || std::find(names.begin(), names.end(), s.matcher) != names.end()) {
            return fmt::format("silence {} until {}: {}", s.id, core::format_time(s.ends_at),
                               s.reason);
        }
    }
    return {};
}

}  // namespace

std::string_view alarm_kind_name(AlarmKind kind) {
    switch (kind) {
        case AlarmKind::kAvailability:
            return "availability";
        case AlarmKind::kConsecutiveFailures:
            return "consecutive";
        case AlarmKind::kSlo:
            return "slo";
    }
    return "?";
}

std::string_view measure_name(Measure measure) {
    switch (measure) {
        case Measure::kAvailability:
            return "availability";
        case Measure::kCorrectness:
            return "correctness";
        case Measure::kSuccess:
            return "success";
    }
    return "?";
}

core::Millis look_back(const AlarmRule& rule) {
    switch (rule.kind) {
        case AlarmKind::kAvailability:
            return rule.period * (rule.periods + 1);
        case AlarmKind::kConsecutiveFailures:
            return core::Millis{0};
        case AlarmKind::kSlo:
            return hours{6} + minutes{5};
    }
    return core::Millis{0};
}

Reading read_alarm(const AlarmRule& rule, const AlarmInput& input) {
    switch (rule.kind) {
        case AlarmKind::kAvailability:
            return read_availability(rule, input);
        case AlarmKind::kConsecutiveFailures:
            return read_consecutive(rule, input);
        case AlarmKind::kSlo:
            return read_slo(rule, input);
    }
    return {};
}

AlarmStep step_alarm(const AlarmRule& rule,
                     store::AlarmState current,
                     const Reading& reading,
                     std::string silenced_by,
                     core::TimePoint now) {
    AlarmStep out{.next = std::move(current)};
    auto& a = out.next;
    if (a.version == 0) {
        a.since = now;
        a.notified_at = now;
    }
    a.summary = reading.summary;
    a.silenced_by = std::move(silenced_by);
    a.evaluated_at = now;
    if (a.state == "firing") {
        if (reading.breaching) {
            a.clear_since.reset();
        } else {
            if (!a.clear_since) {
                a.clear_since = now;
            }
            if (now - *a.clear_since >= rule.keep_firing_for) {
                a.state = "ok";
                a.since = now;
                a.clear_since.reset();
            }
        }
    } else {
        if (!reading.breaching) {
            a.pending_since.reset();
        } else {
            if (!a.pending_since) {
                a.pending_since = now;
            }
            if (now - *a.pending_since >= rule.pending) {
                a.state = "firing";
                a.since = now;
                a.pending_since.reset();
            }
        }
    }
    if (!a.silenced_by.empty()) {
        return out;  // told once the silence ends, if it still holds then
    }
    if (a.state != a.notified) {
        // A firing the notifiers never heard of that has resolved meanwhile is not told.
        out.notify.emplace_back(a.state == "firing" ? "firing" : "resolved");
        a.notified = a.state;
        a.notified_at = now;
    } else if (a.state == "firing" && rule.repeat.count() > 0 &&
               now - a.notified_at >= rule.repeat) {
        out.notify.emplace_back("reminder");
        a.notified_at = now;
    }
    return out;
}

// ---------------------------------------------------------------------------------------------

struct Alarms::Impl {
    Impl(const Settings& settings_in,
         store::Store& store_in,
         core::Clock& clock_in,
         metrics::Registry* registry)
        : settings(settings_in), store(store_in), clock(clock_in), log(core::logger("alarms")) {
        if (registry != nullptr) {
            firing =
                &registry->gauge("aviary_alarm_firing",
                                 "1 while the alarm fires, else 0 (set by the leader).", {"alarm"});
        }
    }

    /// Why `rule`'s alarm on `scenario` notifies nobody now, or "".
    std::string silence_of(const AlarmRule& rule,
                           const Scenario& scenario,
                           const std::string& alarm,
                           const std::vector<store::Silence>& silences,
                           const std::map<std::string, core::Node, std::less<>>& nodes,
                           const std::vector<core::Job>& running) const {
        if (auto explicit_silence =
                silence_naming(silences, clock.now(), {rule.name, scenario.name, alarm});
            !explicit_silence.empty()) {
            return explicit_silence;
        }
        if (scenario.node.empty()) {
            return {};
        }
        if (auto found = nodes.find(scenario.node);
            found != nodes.end() && found->second.state == core::NodeState::kMaintenance) {
            return fmt::format("node {} is in maintenance: {}", scenario.node,
                               found->second.maintenance_reason);
        }
        for (const auto& job : running) {
            if (job.node == scenario.node &&
                std::find(settings.silence_actions.begin(), settings.silence_actions.end(),
                          job.action) != settings.silence_actions.end()) {
                return fmt::format("{} is running on {} (job {})", job.action, scenario.node,
                                   job.id);
            }
        }
        return {};
    }

    core::Result<void> evaluate() {
        std::lock_guard one_at_a_time{evaluating};
        const auto now = clock.now();
        auto alarms = pairs(settings);
        std::vector<std::string> names;
        core::Millis back{0};
        core::Millis widest{0};
        for (const auto& [rule, scenario] : alarms) {
            names.push_back(fmt::format("{}/{}", rule->name, scenario->name));
            back = std::max(back, look_back(*rule));
            if (rule->kind == AlarmKind::kSlo) {
                widest = std::max(widest, rule->window);
            }
        }
        auto states = store.alarm_states();
        if (!states) {
            return states.error();
        }
        bool notified = false;
        std::vector<std::string> keep = names;
        for (const auto& s : *states) {
            if (s.rule == kGateRule) {
                keep.push_back(s.name);  // raised by the gatekeeper, not by a rule
            }
        }
        // An alarm whose rule or scenario left the config while the notifiers believe it
        // fires is told resolved first, so no channel shows it firing for ever.
        for (const auto& s : *states) {
            if (s.notified != "firing" ||
                std::find(keep.begin(), keep.end(), s.name) != keep.end()) {
                continue;
            }
            auto next = s;
            next.state = "ok";
            next.notified = "ok";
            next.since = now;
            next.notified_at = now;
            next.evaluated_at = now;
            next.summary = "its rule or scenario left the config";
            auto told = notifications_of(next, "resolved", settings.notifiers,
                                         fmt::format("{}/dashboard", link_base()), now);
            std::vector<core::Event> events{event_of(next, "resolved", "", now)};
            auto written = store.write_alarm(next, s.version, told, events);
            if (!written) {
                return written.error();
            }
            notified = notified || (*written && !told.empty());
        }
        if (auto forgotten = store.forget_alarms(keep); !forgotten) {
            return forgotten.error();
        } else if (*forgotten > 0) {
            log->info("alarms forgotten count={} (their rule or scenario left the config)",
                      *forgotten);
        }
        std::map<std::string, store::AlarmState, std::less<>> state_of;
        for (auto& s : *states) {
            state_of[s.name] = std::move(s);
        }
        auto buckets = store.probe_buckets(now - back);
        if (!buckets) {
            return buckets.error();
        }
        std::map<std::string, std::vector<store::ProbeBucket>, std::less<>> buckets_of;
        for (auto& b : *buckets) {
            buckets_of[b.scenario].push_back(std::move(b));
        }
        // One read per distinct SLO window.
        std::map<std::int64_t, std::map<std::string, store::ProbeBucket, std::less<>>> windows;
        for (const auto& [rule, scenario] : alarms) {
            if (rule->kind != AlarmKind::kSlo || windows.contains(rule->window.count())) {
                continue;
            }
            auto totals = store.probe_totals(now - rule->window);
            if (!totals) {
                return totals.error();
            }
            auto& into = windows[rule->window.count()];
            for (auto& t : *totals) {
                into[t.scenario] = std::move(t);
            }
        }
        auto silences = store.silences(now, false);
        if (!silences) {
            return silences.error();
        }
        auto node_list = store.nodes(now);
        if (!node_list) {
            return node_list.error();
        }
        std::map<std::string, core::Node, std::less<>> nodes;
        for (auto& n : *node_list) {
            nodes[n.spec.name] = std::move(n);
        }
        auto running =
            store.jobs(store::JobQuery{.state = core::JobState::kRunning, .limit = 1000});
        if (!running) {
            return running.error();
        }
        // A job being cancelled is still at work on its node.
        auto cancelling =
            store.jobs(store::JobQuery{.state = core::JobState::kCancelling, .limit = 1000});
        if (!cancelling) {
            return cancelling.error();
        }
        running->insert(running->end(), cancelling->begin(), cancelling->end());
        std::vector<store::AlarmWrite> writes;
        for (std::size_t i = 0; i < alarms.size(); ++i) {
            const auto& [rule, scenario] = alarms[i];
            const auto& name = names[i];
            AlarmInput input{.now = now, .interval = scenario->interval};
            if (auto found = buckets_of.find(scenario->name); found != buckets_of.end()) {
                input.buckets = found->second;
            }
            if (rule->kind == AlarmKind::kConsecutiveFailures) {
                auto newest = store.probe_runs(scenario->name, rule->failures, 0);
                if (!newest) {
                    return newest.error();
                }
                input.newest = std::move(*newest);
            }
            if (rule->kind == AlarmKind::kSlo) {
                auto& totals = windows[rule->window.count()];
                if (auto found = totals.find(scenario->name); found != totals.end()) {
                    input.window = found->second;
                }
            }
            store::AlarmState current{
                .name = name, .rule = rule->name, .scenario = scenario->name, .since = now};
            if (auto found = state_of.find(name); found != state_of.end()) {
                current = found->second;
            }
            // An ok alarm judges only the periods since it was made or last resolved: a new
            // alarm does not fire on the missing data of the time before it, nor a resolved one
            // again on the periods it already fired for. A firing one judges them all.
            if (current.version == 0) {
                input.judged_from = now;
            } else if (current.state == "ok") {
                input.judged_from = current.since;
            }
            auto reading = read_alarm(*rule, input);
            auto silenced = silence_of(*rule, *scenario, name, *silences, nodes, *running);
            const auto seen = current.version;
            auto stepped = step_alarm(*rule, std::move(current), reading, std::move(silenced), now);
            auto& next = stepped.next;
            std::vector<store::AlarmNotification> notifications;
            std::vector<core::Event> events;
            for (const auto& kind : stepped.notify) {
                events.push_back(event_of(next, kind, scenario->node, now));
                const auto& whom = rule->notify.empty() ? settings.notifiers : rule->notify;
                auto rows = notifications_of(
                    next, kind, whom,
                    fmt::format("{}/dashboard#probe-{}", link_base(), scenario->name), now);
                notifications.insert(notifications.end(), rows.begin(), rows.end());
                log->log(kind == "resolved" ? spdlog::level::info : spdlog::level::warn,
                         "alarm {} alarm={} summary=\"{}\"", kind, name, next.summary);
            }
            writes.push_back(store::AlarmWrite{.next = std::move(next),
                                               .seen_version = seen,
                                               .notifications = std::move(notifications),
                                               .events = std::move(events)});
            if (writes.size() == kWriteBatch) {
                if (auto flushed = flush(writes, notified); !flushed) {
                    return flushed;
                }
            }
        }
        if (auto flushed = flush(writes, notified); !flushed) {
            return flushed;
        }
        if (notified && on_notified) {
            on_notified();
        }
        return {};
    }

    /// Writes what an evaluation decided, kWriteBatch alarms to a commit rather than one each.
    core::Result<void> flush(std::vector<store::AlarmWrite>& writes, bool& notified) {
        if (writes.empty()) {
            return {};
        }
        auto written = store.write_alarms(writes);
        if (!written) {
            return written.error();
        }
        for (std::size_t i = 0; i < writes.size(); ++i) {
            const auto& next = writes[i].next;
            if (!(*written)[i]) {
                log->info("alarm changed meanwhile by another instance alarm={}", next.name);
                continue;
            }
            if (firing != nullptr) {
                firing->with({next.name}).set(next.state == "firing" ? 1 : 0);
            }
            notified = notified || !writes[i].notifications.empty();
        }
        writes.clear();
        return {};
    }

    std::string link_base() {
        std::string base = settings.public_url;
        if (base.empty()) {
            std::lock_guard lock{mu};
            base = public_url;
        }
        while (!base.empty() && base.back() == '/') {
            base.pop_back();
        }
        return base;
    }

    const Settings& settings;
    store::Store& store;
    core::Clock& clock;
    std::shared_ptr<spdlog::logger> log;
    std::string public_url;  // guarded by mu
    std::function<void()> on_notified;
    std::mutex evaluating;
    std::mutex mu;  // guards what follows
    core::Scheduler* scheduler = nullptr;
    core::Scheduler::TaskId task = 0;
    /// When the last evaluation started and how long it took: wake() waits out the gap.
    std::optional<core::TimePoint> last_started;
    core::Millis last_took{0};
    metrics::Family<metrics::Gauge>* firing = nullptr;
};

Alarms::Alarms(const Settings& settings,
               store::Store& store,
               core::Clock& clock,
               metrics::Registry* metrics)
    : impl_(std::make_unique<Impl>(settings, store, clock, metrics)) {}

Alarms::~Alarms() {
    stop();
}

void Alarms::set_public_url(std::string url) {
    std::lock_guard lock{impl_->mu};
    impl_->public_url = std::move(url);
}

void Alarms::set_on_notified(std::function<void()> on_notified) {
    impl_->on_notified = std::move(on_notified);
}

void Alarms::schedule(core::Scheduler& scheduler) {
    auto& d = *impl_;
    if (d.settings.alarms.empty()) {
        return;
    }
    std::lock_guard lock{d.mu};
    d.scheduler = &scheduler;
    d.task = scheduler.add(core::Scheduler::Task{
        .name = "alarms",
        .interval = d.settings.evaluate_every,
        .run_once = [&d](core::TimePoint now) -> std::optional<core::TimePoint> {
            const auto started = std::chrono::steady_clock::now();
            {
                std::lock_guard lock{d.mu};
                d.last_started = now;
            }
            if (auto done = d.evaluate(); !done) {
                d.log->warn("alarms not evaluated error=\"{}\"", done.error().message);
            }
            const auto took = std::chrono::duration_cast<core::Millis>(
                std::chrono::steady_clock::now() - started);
            std::lock_guard lock{d.mu};
            d.last_took = took;
            return std::nullopt;
        },
        .leader_only = true});
}

void Alarms::wake() {
    auto& d = *impl_;
    std::lock_guard lock{d.mu};
    if (d.scheduler == nullptr) {
        return;
    }
    // Runs stored back to back make one evaluation, not one each: the next starts at least
    // kWakeGap, and ten times the last one's length, after the last one started, so however
    // many alarms there are, evaluating them takes at most a tenth of a thread.
    const auto gap = std::max(kWakeGap, 10 * d.last_took);
    if (!d.last_started || d.clock.now() >= *d.last_started + gap) {
        d.scheduler->wake(d.task);
    } else {
        d.scheduler->due_by(d.task, *d.last_started + gap);
    }
}

void Alarms::stop() {
    auto& d = *impl_;
    core::Scheduler* scheduler = nullptr;
    {
        std::lock_guard lock{d.mu};
        scheduler = std::exchange(d.scheduler, nullptr);
    }
    if (scheduler != nullptr) {
        scheduler->cancel(d.task);
    }
}

core::Result<void> Alarms::evaluate() {
    return impl_->evaluate();
}

core::Result<void> Alarms::gate_result(const std::string& node,
                                       const Gate& gate,
                                       const RunResult& run) {
    auto& d = *impl_;
    std::lock_guard one_at_a_time{d.evaluating};
    const auto name = fmt::format("{}/{}", kGateRule, node);
    // The gate alarm fires at once and resolves at the first pass: no pending, no hysteresis
    // (the node stays in maintenance until a person brings it back anyway).
    const AlarmRule rule{.name = std::string{kGateRule},
                         .keep_firing_for = core::Millis{0},
                         .repeat = core::Millis{0}};
    const bool passed = run.outcome == Outcome::kPassed;
    for (int attempt = 0; attempt < 3; ++attempt) {
        const auto now = d.clock.now();
        auto states = d.store.alarm_states();
        if (!states) {
            return states.error();
        }
        store::AlarmState current{
            .name = name, .rule = std::string{kGateRule}, .scenario = gate.scenario, .since = now};
        for (auto& s : *states) {
            if (s.name == name) {
                current = std::move(s);
            }
        }
        if (passed && current.version == 0) {
            return {};  // never failed: nothing to say
        }
        auto silences = d.store.silences(now, false);
        if (!silences) {
            return silences.error();
        }
        auto silenced =
            silence_naming(*silences, now, {kGateRule, std::string_view{gate.scenario}, name});
        Reading reading{
            .breaching = !passed,
            .summary = passed ? fmt::format("gate {} passed on {}: back in the pool once out of "
                                            "maintenance",
                                            gate.name, node)
                              : fmt::format("gate {} failed on {}, now in maintenance: {}",
                                            gate.name, node, core::redact(run.message))};
        const auto seen = current.version;
        auto stepped = step_alarm(rule, std::move(current), reading, silenced, now);
        std::vector<store::AlarmNotification> notifications;
        std::vector<core::Event> events;
        for (const auto& kind : stepped.notify) {
            events.push_back(event_of(stepped.next, kind, node, now));
            auto rows = notifications_of(stepped.next, kind, d.settings.notifiers,
                                         fmt::format("{}/dashboard", d.link_base()), now);
            notifications.insert(notifications.end(), rows.begin(), rows.end());
        }
        auto written = d.store.write_alarm(stepped.next, seen, notifications, events);
        if (!written) {
            return written.error();
        }
        if (*written) {
            if (d.firing != nullptr) {
                d.firing->with({name}).set(stepped.next.state == "firing" ? 1 : 0);
            }
            if (!notifications.empty() && d.on_notified) {
                d.on_notified();
            }
            return {};
        }
    }
    return core::Error{core::ErrorCode::kBusy,
                       fmt::format("alarm {} kept changing under this write", name)};
}

std::vector<std::pair<const AlarmRule*, const Scenario*>> Alarms::pairs(const Settings& settings) {
    std::vector<std::pair<const AlarmRule*, const Scenario*>> out;
    for (const auto& rule : settings.alarms) {
        for (const auto& scenario : settings.scenarios) {
            if (!scenario.enabled) {
                continue;
            }
            bool selected = rule.scenarios.empty()
                                ? core::labels_match(scenario.labels, rule.selector)
                                : std::find(rule.scenarios.begin(), rule.scenarios.end(),
                                            scenario.name) != rule.scenarios.end();
            if (selected) {
                out.emplace_back(&rule, &scenario);
            }
        }
    }
    return out;
}

}  // namespace aviary::probes
