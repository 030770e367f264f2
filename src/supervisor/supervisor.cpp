// The Supervisor: the node's life on one thread (docs/supervise.md, "Lifecycle").
//
// Three coroutines share the node thread's io_context: life() starts the node, waits for its
// pidfd or a stop request, and decides what comes next; commands() runs operators' commands one
// at a time; readiness (readiness.cpp) reads the node while it runs. They meet through Changes,
// a wake-up for whoever waits on a state change, and share the Impl's fields without locks (one
// thread). What other threads read (status, logs, the gate) is copied under `mu` on each change.
#include "supervisor/supervisor.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "core/regex.hpp"
#include "net/net.hpp"
#include "proc/proc.hpp"
#include "supervisor/readiness.hpp"
#include "supervisor/state_file.hpp"

namespace aviary::supervisor {

namespace asio = net::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
/// The most bytes of output kept for GET /v1/logs, whatever log_ring_lines says.
constexpr std::size_t kRingBytes = std::size_t{1} << 20U;
/// Commands waiting their turn past this one are refused (a queue has a bound).
constexpr std::size_t kMaxQueuedCommands = 16;
/// How long a finished node's last output may take to arrive.
constexpr core::Millis kPumpDrain{2000};
/// How long a changed config template must stay quiet before it is rendered.
constexpr core::Millis kConfigSettle{300};
constexpr std::string_view kNoBackupTarget =
    "no backup target: start with --backup-dir DIR or set backup.dir";

core::TimePoint now() {
    return std::chrono::time_point_cast<core::Millis>(std::chrono::system_clock::now());
}

/// Writes all of `data` to `fd`, waiting while it is full (the relay's back-pressure), unless
/// `give_up` says to stop waiting: then the rest is dropped. Each wait is a poll() of at most
/// 100 ms and each write at most one pipe buffer, so a write never blocks past a check.
void write_all(int fd, std::string_view data, const std::function<bool()>& give_up) {
    constexpr std::size_t kPiece = 4096;  // PIPE_BUF: POLLOUT promises room for this much
    while (!data.empty()) {
        pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
        int ready = ::poll(&p, 1, 100);
        if (ready < 0 && errno != EINTR) {
            return;
        }
        if (ready <= 0) {
            if (give_up()) {
                return;
            }
            continue;
        }
        if ((p.revents & (POLLERR | POLLNVAL)) != 0) {
            return;  // our stdout is gone: nothing more to do with the bytes
        }
        ssize_t n = ::write(fd, data.data(), std::min(data.size(), kPiece));
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            return;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace

std::string_view to_string(RunState state) {
    switch (state) {
        case RunState::kStarting:
            return "starting";
        case RunState::kRunning:
            return "running";
        case RunState::kStopping:
            return "stopping";
        case RunState::kStopped:
            return "stopped";
        case RunState::kBackoff:
            return "backoff";
        case RunState::kMaintenance:
            return "maintenance";
        case RunState::kExited:
            return "exited";
    }
    return "unknown";
}

std::string_view to_string(Readiness readiness) {
    switch (readiness) {
        case Readiness::kStarting:
            return "starting";
        case Readiness::kSyncing:
            return "syncing";
        case Readiness::kReady:
            return "ready";
        case Readiness::kLagging:
            return "lagging";
        case Readiness::kStalled:
            return "stalled";
        case Readiness::kStopped:
            return "stopped";
        case Readiness::kMaintenance:
            return "maintenance";
    }
    return "unknown";
}

std::string_view to_string(Command command) {
    switch (command) {
        case Command::kMaintenance:
            return "maintenance";
        case Command::kResume:
            return "resume";
        case Command::kReload:
            return "reload";
        case Command::kSafelyReload:
            return "safely_reload";
        case Command::kBackup:
            return "backup";
        case Command::kRestore:
            return "restore";
        case Command::kSafelyPauseProduction:
            return "safely_pause_production";
        case Command::kSafelyResumeProduction:
            return "safely_resume_production";
    }
    return "unknown";
}

std::optional<Command> command_from(std::string_view name) {
    for (auto command : {Command::kMaintenance, Command::kResume, Command::kReload,
                         Command::kSafelyReload, Command::kBackup, Command::kRestore,
                         Command::kSafelyPauseProduction, Command::kSafelyResumeProduction}) {
        if (to_string(command) == name) {
            return command;
        }
    }
    return std::nullopt;
}

/// Wakes every coroutine waiting for a change of the Impl's state. Node thread only.
class Changes {
public:
    explicit Changes(asio::any_io_executor executor) : executor_(std::move(executor)) {}
    asio::awaitable<void> wait() {
        asio::steady_timer timer{executor_, asio::steady_timer::time_point::max()};
        waiting_.push_back(&timer);
        co_await timer.async_wait(kUseTuple);
        std::erase(waiting_, &timer);
    }
    void notify() {
        for (auto* timer : waiting_) {
            timer->cancel();
        }
    }

private:
    asio::any_io_executor executor_;
    std::vector<asio::steady_timer*> waiting_;
};

/// A LogRule ready to apply: its regex compiled once, its metric family, the label sets seen.
/// The node's output on its way to our stdout and stderr. The node thread hands over what it
/// read; a writer thread of its own writes it, blocking as long as our output is not drained.
/// Past kHighWater queued bytes the node thread's pump waits in room() (so the node is held
/// back, and nothing is dropped) while the rest of the node thread — commands, readiness,
/// restarts — goes on.
class Relay {
public:
    static constexpr std::size_t kHighWater = std::size_t{1} << 20U;
    static constexpr std::size_t kLowWater = kHighWater / 2;
    static constexpr std::chrono::seconds kCloseWait{5};

    explicit Relay(asio::any_io_executor executor) : executor_(std::move(executor)) {
        thread_ = std::thread{[this] {
            core::name_this_thread("relay");
            write_loop();
        }};
    }
    ~Relay() { close(); }
    Relay(const Relay&) = delete;
    Relay& operator=(const Relay&) = delete;

    /// Node thread: queue `data` for `fd`.
    void push(int fd, std::string& data) {
        if (data.empty()) {
            return;
        }
        {
            std::lock_guard lock{mu_};
            queued_ += data.size();
            queue_.emplace_back(fd, std::move(data));
        }
        data.clear();
        wake_.notify_one();
    }
    /// Node thread: returns once fewer than kHighWater bytes wait.
    asio::awaitable<void> room() {
        while (true) {
            auto timer = std::make_shared<asio::steady_timer>(
                executor_, asio::steady_timer::time_point::max());
            {
                std::lock_guard lock{mu_};
                if (queued_ < kHighWater || closing_) {
                    co_return;
                }
                waiters_.push_back(timer);  // stdout's and stderr's readers, of every run
            }
            co_await timer->async_wait(kUseTuple);
        }
    }
    /// True while room() would wait.
    bool backed_up() {
        std::lock_guard lock{mu_};
        return queued_ >= kHighWater && !closing_;
    }
    /// Node thread, at shutdown: room() waits no more (a pump held back lets go, so the node
    /// thread can end). What is queued is still written, by close().
    void release() {
        std::vector<std::shared_ptr<asio::steady_timer>> waiters;
        {
            std::lock_guard lock{mu_};
            if (!closing_) {
                closing_ = true;
                close_deadline_ = std::chrono::steady_clock::now() + kCloseWait;
            }
            waiters.swap(waiters_);
        }
        for (const auto& waiter : waiters) {
            waiter->cancel();
        }
    }
    /// Writes out what is queued (for at most kCloseWait) and stops the writer. Idempotent.
    void close() {
        {
            std::lock_guard lock{mu_};
            if (!closing_) {
                closing_ = true;
                close_deadline_ = std::chrono::steady_clock::now() + kCloseWait;
            }
        }
        wake_.notify_one();
        if (thread_.joinable()) {
            thread_.join();
        }
    }

private:
    void write_loop() {
        while (true) {
            std::pair<int, std::string> item;
            {
                std::unique_lock lock{mu_};
                wake_.wait(lock, [this] { return !queue_.empty() || closing_; });
                if (queue_.empty()) {
                    return;
                }
                item = std::move(queue_.front());
                queue_.pop_front();
            }
            write_all(item.first, item.second, [this] {
                // Closing: what is queued may still go out for kCloseWait, then it is dropped
                // (a sidecar whose stdout nobody reads must still exit).
                std::lock_guard lock{mu_};
                return closing_ && std::chrono::steady_clock::now() > close_deadline_;
            });
            std::vector<std::shared_ptr<asio::steady_timer>> waiters;
            {
                std::lock_guard lock{mu_};
                queued_ -= item.second.size();
                if (queued_ < kLowWater) {
                    waiters.swap(waiters_);
                }
            }
            if (!waiters.empty()) {
                asio::post(executor_, [waiters] {
                    for (const auto& waiter : waiters) {
                        waiter->cancel();
                    }
                });
            }
        }
    }

    asio::any_io_executor executor_;
    std::mutex mu_;
    std::condition_variable wake_;
    std::deque<std::pair<int, std::string>> queue_;             // under mu_
    std::size_t queued_ = 0;                                    // under mu_
    std::vector<std::shared_ptr<asio::steady_timer>> waiters_;  // under mu_
    bool closing_ = false;                                      // under mu_
    std::chrono::steady_clock::time_point close_deadline_;      // under mu_
    std::thread thread_;
};

struct CompiledRule {
    const LogRule* rule = nullptr;
    std::optional<core::Regex> regex;
    metrics::Family<metrics::Counter>* counter = nullptr;
    metrics::Family<metrics::Gauge>* gauge = nullptr;
    std::set<std::vector<std::string>> series;
};

struct Supervisor::Impl {
    Impl(Settings settings_in, metrics::Registry& registry)
        : settings(std::move(settings_in)),
          log(core::logger("supervise")),
          changes(context.get_executor()),
          m_starts(
              registry
                  .counter("aviary_supervised_starts_total", "Times the node was started", {"node"})
                  .with({settings.name})),
          m_restarts(registry
                         .counter("aviary_supervised_restarts_total",
                                  "Times the node was started again after it ended by itself",
                                  {"node"})
                         .with({settings.name})),
          m_exits(registry.counter("aviary_supervised_exits_total",
                                   "Times the node ended, by exit code or signal",
                                   {"node", "code", "signal"})),
          m_start_limit(registry
                            .gauge("aviary_supervised_start_limit_hit",
                                   "1 while the node restarts faster than the start limit",
                                   {"node"})
                            .with({settings.name})),
          m_up(registry.gauge("aviary_supervised_up", "1 while the node process runs", {"node"})
                   .with({settings.name})),
          m_uptime(registry
                       .gauge("aviary_supervised_uptime_seconds",
                              "Seconds the node has been running in this run",
                              {"node"})
                       .with({settings.name})),
          m_ready(registry.gauge("aviary_supervised_readiness",
                                 "1 for the node's readiness state now, 0 for the others",
                                 {"node", "state"})),
          m_lines(registry.counter("aviary_supervised_log_lines_total",
                                   "Lines of output relayed from the node",
                                   {"node", "stream"})),
          m_height(registry
                       .gauge("aviary_supervised_head_height",
                              "The node's head block height, as readiness last read it",
                              {"node"})
                       .with({settings.name})),
          m_rule_overflow(registry.counter(
              "aviary_supervised_log_rule_overflow_total",
              "Matching lines not counted because their rule reached its max_series label sets",
              {"node", "rule"})),
          m_copies(registry.counter("aviary_supervised_backup_operations_total",
                                    "Backups and restores of the node's data dir, by outcome",
                                    {"node", "operation", "outcome"})),
          m_last_backup(registry
                            .gauge("aviary_supervised_last_backup_timestamp_seconds",
                                   "When the last usable backup this sidecar made was taken",
                                   {"node"})
                            .with({settings.name})),
          m_copy_seconds(registry.histogram("aviary_supervised_backup_duration_seconds",
                                            "Time a backup or restore took, from the first phase "
                                            "to the proxy open again",
                                            {"node", "operation"})),
          m_producing(registry
                          .gauge("aviary_supervised_producing",
                                 "bp mode: 1 while the node produces blocks, by its producer API",
                                 {"node"})
                          .with({settings.name})),
          readiness(settings, context.get_executor()) {
        compile_rules(registry);
        registry.on_scrape([this] {
            auto s = snapshot();
            m_uptime.set(s.state == RunState::kRunning
                             ? std::chrono::duration<double>(now() - s.started_at).count()
                             : 0.0);
            for (auto r :
                 {Readiness::kStarting, Readiness::kSyncing, Readiness::kReady, Readiness::kLagging,
                  Readiness::kStalled, Readiness::kStopped, Readiness::kMaintenance}) {
                m_ready.with({settings.name, std::string{to_string(r)}})
                    .set(r == s.readiness ? 1.0 : 0.0);
            }
        });
    }

    void compile_rules(metrics::Registry& registry) {
        for (const auto& rule : settings.log_metrics) {
            CompiledRule compiled;
            compiled.rule = &rule;
            auto regex = core::Regex::compile(rule.pattern);
            if (!regex) {
                log->error("log metric {} not used: {}", rule.name, regex.error().message);
                continue;
            }
            compiled.regex = std::move(*regex);
            std::vector<std::string> names{"node"};
            for (const auto& [label, group] : rule.labels) {
                names.push_back(label);
            }
            const std::string help = rule.help.empty()
                                         ? "Lines of the node's output matching " + rule.pattern
                                         : rule.help;
            if (rule.kind == "gauge") {
                compiled.gauge = &registry.gauge(rule.name, help, names);
            } else {
                compiled.counter = &registry.counter(rule.name, help, names);
            }
            rules.push_back(std::move(compiled));
        }
    }

    /// Applies the log metrics to one line (node thread).
    void apply_rules(const proc::Line& line) {
        std::vector<std::string_view> match;
        for (auto& compiled : rules) {
            const LogRule& rule = *compiled.rule;
            if ((rule.stream == "stdout" && line.stream != proc::Stream::kStdout) ||
                (rule.stream == "stderr" && line.stream != proc::Stream::kStderr) ||
                (!rule.contains.empty() && line.text.find(rule.contains) == std::string::npos) ||
                !compiled.regex->search(line.text, match)) {
                continue;
            }
            double value = 1.0;
            if (rule.value_group > 0) {
                std::string text{match[static_cast<std::size_t>(rule.value_group)]};
                std::erase(text, ',');  // "1,234" as some clients print heights
                char* end = nullptr;
                value = std::strtod(text.c_str(), &end);
                if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value) ||
                    (compiled.counter != nullptr && value < 0)) {
                    continue;  // not a number, or one a counter cannot add: the line is skipped
                }
            }
            std::vector<std::string> labels{settings.name};
            for (const auto& [label, group] : rule.labels) {
                labels.emplace_back(match[static_cast<std::size_t>(group)]);
            }
            if (!compiled.series.contains(labels)) {
                if (static_cast<int>(compiled.series.size()) >= rule.max_series) {
                    m_rule_overflow.with({settings.name, rule.name}).inc();
                    continue;
                }
                compiled.series.insert(labels);
            }
            if (compiled.gauge != nullptr) {
                compiled.gauge->with(labels).set(value);
            } else {
                compiled.counter->with(labels).inc(value);
            }
        }
    }

    // --- shared with other threads (under mu) ------------------------------------------------
    Status snapshot() const {
        std::lock_guard lock{mu};
        return shared;
    }
    /// Copies the node thread's view for other threads, and wakes its waiters.
    void publish() {
        {
            std::lock_guard lock{mu};
            shared = status;
            shared_gate_held = gate_held;
        }
        open.store(status.readiness == Readiness::kReady && !status.maintenance && !gate_held,
                   std::memory_order_release);
        changes.notify();
    }

    // --- node thread ---------------------------------------------------------------------------
    void set_state(RunState state) {
        status.state = state;
        switch (state) {
            case RunState::kMaintenance:
                set_readiness(Readiness::kMaintenance, "maintenance");
                break;
            case RunState::kRunning:
                break;  // readiness decides
            case RunState::kStarting:
                set_readiness(Readiness::kStarting, "starting");
                break;
            default:
                set_readiness(Readiness::kStopped,
                              status.last_exit ? fmt::format("stopped ({})", describe_exit())
                                               : std::string{"stopped"});
        }
        publish();
    }
    void set_readiness(Readiness readiness_now, std::string reason) {
        if (readiness_now != status.readiness || reason != status.reason) {
            if (readiness_now == Readiness::kReady || status.readiness == Readiness::kReady) {
                log->info("node {} readiness {} -> {}{}", settings.name,
                          to_string(status.readiness), to_string(readiness_now),
                          reason.empty() ? "" : ": " + reason);
            }
        }
        status.readiness = readiness_now;
        status.reason = readiness_now == Readiness::kReady ? "" : std::move(reason);
    }
    std::string describe_exit() const {
        if (!status.last_exit) {
            return "never ran";
        }
        return status.last_exit->signal != 0
                   ? fmt::format("killed by signal {}", status.last_exit->signal)
                   : fmt::format("exit code {}", status.last_exit->code);
    }

    /// `durable`: the maintenance flag changed (synced before it counts); a start only moves
    /// the counts, which may lag one after a crash.
    core::Result<void> save_state(bool durable = true) {
        return write_state_file(settings.state_dir,
                                StateFile{.maintenance = status.maintenance,
                                          .starts = status.starts,
                                          .restarts = status.restarts,
                                          .restore_pending = status.restore_pending},
                                durable);
    }

    proc::SpawnOptions spawn_options() const {
        proc::SpawnOptions options;
        options.argv = settings.program.argv;
        if (settings.producer.bp_mode) {
            // Passive at every start: a crash or a restart never makes it produce by itself.
            options.argv.insert(options.argv.end(), settings.preset.passive_args.begin(),
                                settings.preset.passive_args.end());
        }
        options.cwd = settings.program.cwd;
        options.env_add = settings.program.env;
        options.umask = settings.program.umask;
        // The node dies with this process even under SIGKILL (the node thread spawns it and
        // lives as long as the sidecar).
        options.die_with_parent = true;
        return options;
    }

    /// Queues what the node wrote for our own stdout/stderr, byte for byte.
    void on_bytes(proc::Stream stream, std::string_view data) {
        (stream == proc::Stream::kStderr ? pending_err : pending_out).append(data);
        read_at = now();  // one clock read per read(): its lines arrived together
    }
    /// Counts one line, applies the log rules to it and keeps it in the ring. The clock is read
    /// and the counters added to once per read (on_bytes, count_lines): a relay of short lines
    /// spent a fifth of its time reading the clock.
    void on_line(const proc::Line& line) {
        const bool err = line.stream == proc::Stream::kStderr;
        ++(err ? read_lines_err : read_lines_out);
        if (!rules.empty()) {
            apply_rules(line);
        }
        const auto& dirty = settings.preset.dirty_log;
        if (!dirty.empty() && backup_store && status.restore_pending.empty() &&
            line.text.find(dirty) != std::string::npos) {
            status.restore_pending = fmt::format("the node logged \"{}\"", dirty);
            log->warn("node {} logged \"{}\": its data dir will be restored before the next start",
                      settings.name, dirty);
            if (auto saved = save_state(); !saved) {
                log->error("cannot save the pending restore: {}", saved.error().message);
            }
            publish();
        }
        LogLine kept{.at = read_at, .stderr_stream = err, .text = line.text};
        if (line_observer) {
            line_observer(kept);
        }
        std::lock_guard lock{mu};
        ring_bytes += kept.text.size();
        ring.push_back(std::move(kept));
        while (!ring.empty() &&
               (ring.size() > settings.log_ring_lines || ring_bytes > kRingBytes)) {
            ring_bytes -= ring.front().text.size();
            ring.pop_front();
        }
        // The pump's after-read hook counts the read's lines and hands it to the relay
        // (flush_output).
    }
    /// Adds the last read's lines to the line counters.
    void count_lines() {
        if (read_lines_out > 0) {
            lines_out->inc(static_cast<double>(read_lines_out));
        }
        if (read_lines_err > 0) {
            lines_err->inc(static_cast<double>(read_lines_err));
        }
        read_lines_out = read_lines_err = 0;
    }
    void flush_output() {
        count_lines();
        relay.push(STDOUT_FILENO, pending_out);
        relay.push(STDERR_FILENO, pending_err);
    }

    /// Stops the running node: the stop signal, again every `repeat`, SIGKILL to the group
    /// after `grace`; then reaps it.
    asio::awaitable<proc::ExitStatus> stop_node(proc::Process& process) {
        const auto& stop = settings.stop;
        const auto deadline = std::chrono::steady_clock::now() + stop.grace;
        process.signal_group(stop.signal);
        int sent = 1;
        asio::steady_timer timer{context};
        while (true) {
            const auto left = deadline - std::chrono::steady_clock::now();
            if (left <= std::chrono::steady_clock::duration::zero()) {
                log->warn("node {} still running {} after signal {}: SIGKILL to its group",
                          settings.name, core::format_duration(stop.grace), stop.signal);
                process.signal_group(SIGKILL);
                break;
            }
            timer.expires_after(std::min<std::chrono::steady_clock::duration>(left, stop.repeat));
            auto which = co_await (process.ended() || timer.async_wait(kUseTuple));
            if (which.index() == 0) {
                break;
            }
            if (std::chrono::steady_clock::now() < deadline) {
                ++sent;
                log->info("node {} still running: signal {} again ({})", settings.name, stop.signal,
                          sent);
                process.signal_group(stop.signal);
            }
        }
        // Members the leader left behind go with it.
        process.signal_group(SIGKILL);
        co_return co_await process.wait();
    }

    /// The node has run stable_after: its next restart is immediate again.
    void on_stable_run() {
        backoff = core::Millis{0};
        recent_starts.clear();
        if (status.start_limit_hit) {
            status.start_limit_hit = false;
            m_start_limit.set(0);
            log->info("node {} has run {}: start limit cleared", settings.name,
                      core::format_duration(settings.restart.stable_after));
            publish();
        }
    }

    /// The delay before the next start after the node ended by itself.
    core::Millis next_delay(core::Millis ran) {
        const auto& r = settings.restart;
        const auto t = std::chrono::steady_clock::now();
        recent_starts.push_back(t);
        while (!recent_starts.empty() && t - recent_starts.front() > r.start_limit_interval) {
            recent_starts.pop_front();
        }
        if (ran >= r.stable_after) {
            backoff = core::Millis{0};
            if (status.start_limit_hit) {
                status.start_limit_hit = false;
                m_start_limit.set(0);
                log->info("node {} ran {}: start limit cleared", settings.name,
                          core::format_duration(ran));
            }
            return r.first_delay;
        }
        backoff = backoff == core::Millis{0} ? r.min_delay : std::min(backoff * 2, r.max_delay);
        if (static_cast<int>(recent_starts.size()) > r.start_limit_burst) {
            if (!status.start_limit_hit) {
                status.start_limit_hit = true;
                m_start_limit.set(1);
            }
            log->error(
                "node {} started {} times in {}: start limit hit, retrying every {} until a run "
                "lasts {}",
                settings.name, recent_starts.size(), core::format_duration(r.start_limit_interval),
                core::format_duration(r.limited_delay), core::format_duration(r.stable_after));
            return std::max(backoff, r.limited_delay);
        }
        return backoff;
    }

    bool ends_for_good(const proc::ExitStatus& exit) const {
        switch (settings.restart.policy) {
            case RestartPolicy::kNever:
                return true;
            case RestartPolicy::kAlways:
                return false;
            case RestartPolicy::kOnFailure:
                return exit.signal == 0 &&
                       std::find(settings.restart.success_codes.begin(),
                                 settings.restart.success_codes.end(),
                                 exit.code) != settings.restart.success_codes.end();
        }
        return false;
    }

    /// Waits for a change or `delay`, whichever comes first.
    asio::awaitable<void> wait_change_or(core::Millis delay) {
        asio::steady_timer timer{context, delay};
        co_await (changes.wait() || timer.async_wait(kUseTuple));
    }

    asio::awaitable<void> life() {
        core::Millis delay{0};
        while (!shutting_down) {
            if (status.maintenance || hold_stopped) {
                set_state(status.maintenance ? RunState::kMaintenance
                          : exited_for_good  ? RunState::kExited
                                             : RunState::kStopped);
                co_await changes.wait();
                delay = core::Millis{0};
                continue;
            }
            if (delay > core::Millis{0}) {
                set_state(RunState::kBackoff);
                const auto until = std::chrono::steady_clock::now() + delay;
                const auto generation = wake_generation;
                while (!shutting_down && !status.maintenance && generation == wake_generation &&
                       std::chrono::steady_clock::now() < until) {
                    co_await wait_change_or(std::chrono::duration_cast<core::Millis>(
                        until - std::chrono::steady_clock::now()));
                }
                delay = core::Millis{0};
                continue;  // re-check maintenance and shutdown
            }
            set_state(RunState::kStarting);
            co_await prepare_data();
            if (shutting_down) {
                break;
            }
            if (status.maintenance || hold_stopped) {
                continue;  // asked to stay stopped while the data was being prepared
            }
            if (auto rendered = co_await render_configs(); !rendered) {
                log->error("node {} cannot start: {}", settings.name, rendered.error().message);
                status.last_exit = ExitRecord{.code = 127, .signal = 0, .at = now()};
                start_error = rendered.error().message;
                delay = next_delay(core::Millis{0});
                publish();
                continue;
            }
            auto spawned = proc::spawn(context.get_executor(), spawn_options());
            if (!spawned) {
                log->error("node {} cannot start: {}", settings.name, spawned.error().message);
                status.last_exit = ExitRecord{.code = 127, .signal = 0, .at = now()};
                start_error = spawned.error().message;
                delay = next_delay(core::Millis{0});
                publish();
                continue;
            }
            start_error.clear();
            auto process = std::make_shared<proc::Process>(std::move(*spawned));
            const auto started = std::chrono::steady_clock::now();
            const bool is_restart = started_once && !requested_start;
            requested_start = false;
            started_once = true;
            ++status.starts;
            m_starts.inc();
            if (is_restart) {
                ++status.restarts;
                m_restarts.inc();
            }
            status.pid = process->pid();
            status.started_at = now();
            status.height.reset();
            status.head_time.reset();
            m_up.set(1);
            (void)save_state(false);
            log->info("node {} started pid={} argv0={}", settings.name, process->pid(),
                      settings.program.argv.front());
            set_state(RunState::kRunning);
            set_readiness(readiness.first(), readiness.first_reason());
            publish();

            auto pump_done = std::make_shared<asio::steady_timer>(
                context, asio::steady_timer::time_point::max());
            auto pumping = std::make_shared<bool>(true);
            asio::co_spawn(
                context,
                [this, process, pump_done, pumping]() -> asio::awaitable<void> {
                    co_await process->pump(
                        [this](const proc::Line& line) { on_line(line); }, proc::kMaxLineBytes,
                        proc::PumpHooks{
                            .on_bytes = [this](proc::Stream stream,
                                               std::string_view data) { on_bytes(stream, data); },
                            .after_read = [this]() -> asio::awaitable<void> {
                                flush_output();
                                co_await relay.room();
                            }});
                    count_lines();  // a last line without a newline, split at end of file
                    *pumping = false;
                    pump_done->cancel();
                },
                asio::detached);

            auto run_over = std::make_shared<asio::steady_timer>(
                context, asio::steady_timer::time_point::max());
            asio::co_spawn(context, read_while_running(run_over), asio::detached);

            asio::steady_timer stop_signal{context, asio::steady_timer::time_point::max()};
            stop_request = &stop_signal;
            current = process;
            // A run that lasts stable_after resets the backoff and clears the start-limit alert
            // while it goes on, not only when it ends.
            asio::steady_timer stable{context, settings.restart.stable_after};
            auto which = co_await (process->ended() || stop_signal.async_wait(kUseTuple) ||
                                   stable.async_wait(kUseTuple));
            if (which.index() == 2) {
                on_stable_run();
                co_await (process->ended() || stop_signal.async_wait(kUseTuple));
            }
            stop_request = nullptr;
            proc::ExitStatus exit;
            const bool asked = stop_wanted;
            if (asked) {
                set_state(RunState::kStopping);
                log->info("node {} stopping pid={} (signal {}, again every {}, SIGKILL after {})",
                          settings.name, process->pid(), settings.stop.signal,
                          core::format_duration(settings.stop.repeat),
                          core::format_duration(settings.stop.grace));
                exit = co_await stop_node(*process);
            } else {
                process->signal_group(SIGKILL);
                exit = co_await process->wait();
                // The gate closes now, not after the last output has been read.
                set_readiness(Readiness::kStopped,
                              exit.signal != 0
                                  ? fmt::format("the node ended (killed by signal {})", exit.signal)
                                  : fmt::format("the node ended (exit code {})", exit.code));
                publish();
            }
            current.reset();
            run_over->cancel();
            if (status.fence != 0) {
                // A node that ended produces nothing: the lease goes back at once.
                co_await release_lease("the node ended");
            }
            if (*pumping && !relay.backed_up()) {
                // The last lines may still be in the pipe; a pump held back by an undrained
                // stdout will not finish soon, so it is not waited for.
                pump_done->expires_after(kPumpDrain);
                co_await pump_done->async_wait(kUseTuple);
            }
            flush_output();
            stop_wanted = false;
            m_up.set(0);
            status.pid = 0;
            status.last_exit = ExitRecord{.code = exit.code, .signal = exit.signal, .at = now()};
            m_exits.with({settings.name, std::to_string(exit.code), std::to_string(exit.signal)})
                .inc();
            const auto ran = std::chrono::duration_cast<core::Millis>(
                std::chrono::steady_clock::now() - started);
            log->log(asked ? spdlog::level::info : spdlog::level::warn,
                     "node {} ended: {} after {}{}", settings.name, describe_exit(),
                     core::format_duration(ran), asked ? " (asked to stop)" : "");
            if (asked) {
                publish();
                continue;  // whoever asked decides what comes next (hold_stopped, maintenance)
            }
            if (ends_for_good(exit)) {
                exited_for_good = true;
                log->info("node {} will not be restarted (restart policy): the sidecar ends too",
                          settings.name);
                break;
            }
            delay = next_delay(ran);
            publish();
        }
        set_state(status.maintenance ? RunState::kMaintenance
                  : exited_for_good  ? RunState::kExited
                                     : RunState::kStopped);
        // Commands still queued cannot run any more; commands() ends, a pump held back by the
        // relay lets go, and so the thread ends.
        shutting_down = true;
        relay.release();
        if (config_watcher != nullptr) {
            config_watcher->close();  // its pending read would keep the thread's loop alive
        }
        for (auto& [command, done, args] : queue) {
            if (done) {
                done(core::Error{core::ErrorCode::kUnavailable, "the sidecar is shutting down"});
            }
        }
        queue.clear();
        publish();
    }

    /// Reads the node every synced.interval until `run_over` is cancelled (the run ended).
    asio::awaitable<void> read_while_running(std::shared_ptr<asio::steady_timer> run_over) {
        asio::steady_timer timer{context};
        readiness.reset();
        while (!shutting_down) {
            auto read = co_await (readiness.read() || run_over->async_wait(kUseTuple));
            if (read.index() != 0) {
                break;
            }
            auto& reading = std::get<0>(read);
            if (status.state == RunState::kRunning) {
                set_readiness(reading.readiness, reading.reason);
                if (reading.height) {
                    status.height = reading.height;
                    m_height.set(static_cast<double>(*reading.height));
                }
                if (reading.head_time) {
                    status.head_time = reading.head_time;
                }
                if (!reading.chain_id.empty()) {
                    status.chain_id = reading.chain_id;
                }
                // The hash of the head just read, or none: never another height's.
                status.block_hash = reading.block_hash;
                if (!reading.node_version.empty()) {
                    status.node_version = reading.node_version;
                }
                status.head_producer = reading.head_producer;
                publish();
            }
            if (settings.producer.bp_mode && status.state == RunState::kRunning) {
                co_await watch_production();
            }
            timer.expires_after(settings.synced.interval);
            auto slept = co_await (timer.async_wait(kUseTuple) || run_over->async_wait(kUseTuple));
            if (slept.index() != 0) {
                break;
            }
        }
    }

    /// Asks life() to stop the running node, and waits until it has.
    asio::awaitable<void> stop_running() {
        // A node still starting (a boot restore may take a while) is stopped once it runs.
        while (true) {
            if (stop_request != nullptr) {
                stop_wanted = true;
                stop_request->cancel();
            }
            if (status.state != RunState::kRunning && status.state != RunState::kStopping &&
                status.state != RunState::kStarting) {
                break;
            }
            co_await changes.wait();
        }
    }

    /// Lets life() start the node now (skipping a backoff), and waits until it has started or
    /// failed to.
    asio::awaitable<core::Result<void>> start_now() {
        hold_stopped = false;
        exited_for_good = false;
        requested_start = true;
        ++wake_generation;
        const auto starts = status.starts;
        changes.notify();
        while (status.starts == starts && start_error.empty() && !shutting_down) {
            co_await changes.wait();
        }
        if (status.starts == starts) {
            co_return core::Error{
                core::ErrorCode::kUnavailable,
                start_error.empty() ? "the sidecar is shutting down" : start_error};
        }
        co_return core::Result<void>{};
    }

    /// Queues a command (node thread): refused when shutting down or kMaxQueuedCommands wait.
    void enqueue(Command command, CommandDone done, CommandDone queued, CommandArgs args = {}) {
        std::optional<core::Error> refused;
        if (shutting_down) {
            refused = core::Error{core::ErrorCode::kUnavailable, "the sidecar is shutting down"};
        } else if (queue.size() >= kMaxQueuedCommands) {
            refused = core::Error{
                core::ErrorCode::kBusy,
                fmt::format("{} commands are queued already: wait for them", queue.size())};
        }
        if (refused) {
            if (queued) {
                queued(*refused);
            }
            if (done) {
                done(*refused);
            }
            return;
        }
        if (queued) {
            queued(core::Result<void>{});
        }
        queue.emplace_back(command, std::move(done), std::move(args));
        changes.notify();
    }

    // --- bp mode (docs/producers.md) ------------------------------------------------------------

    core::Error not_bp_mode() const {
        return core::Error{core::ErrorCode::kUnavailable, "not supported without bp mode"};
    }

    /// One call of the node's producer API.
    asio::awaitable<core::Result<std::string>> producer_call(const std::string& path,
                                                             const char* method) {
        net::ClientRequest request;
        request.method = method;
        request.url = settings.upstream + path;
        request.timeout = settings.synced.timeout;
        request.max_body_bytes = std::size_t{64} * 1024;
        auto response = co_await net::fetch(std::move(request));
        if (!response) {
            co_return response.error();
        }
        if (response->status < 200 || response->status >= 300) {
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  fmt::format("{} {} answered {}", method, path, response->status)};
        }
        co_return std::move(response->body);
    }

    /// Whether the node is paused, by its producer API; an error when it does not say.
    asio::awaitable<core::Result<bool>> read_paused() {
        auto body = co_await producer_call(settings.preset.producer_paused, "GET");
        if (!body) {
            co_return body.error();
        }
        boost::system::error_code ec;
        auto value = boost::json::parse(*body, ec);
        if (ec || !value.is_bool()) {
            co_return core::Error{
                core::ErrorCode::kUnavailable,
                fmt::format("{} did not answer true or false", settings.preset.producer_paused)};
        }
        co_return value.as_bool();
    }

    void set_production(std::string production) {
        if (production != status.production) {
            log->info("node {} production {} -> {}", settings.name,
                      status.production.empty() ? "unknown" : status.production, production);
            status.production = std::move(production);
            m_producing.set(status.production == "producing" ? 1.0 : 0.0);
            publish();
            if (status.production == "paused" && !status.reload_pending.empty()) {
                // Production moved away: the config change waiting for it is applied now.
                asio::co_spawn(context, apply_config_change(), asio::detached);
            }
        }
    }

    /// The producer's name in the chain's schedule.
    const std::string& account() const {
        return settings.producer.account.empty() ? settings.producer.key
                                                 : settings.producer.account;
    }

    /// Places this node's account in the schedule, by who made the head block (where the
    /// preset reads both); not known when either is missing.
    asio::awaitable<void> watch_round() {
        if (settings.preset.schedule.path.empty()) {
            co_return;
        }
        auto schedule = co_await readiness.schedule();
        Round round;
        if (schedule && !status.head_producer.empty() && !account().empty()) {
            round = round_of(*schedule, status.head_producer, account());
            scheduled = schedule->size();
        } else {
            scheduled = 0;
        }
        const std::optional<bool> in_schedule =
            round.status.empty() ? std::nullopt : std::optional<bool>{round.in_schedule};
        if (in_schedule != status.in_schedule) {
            if (!schedule) {
                log->warn("node {}: the schedule is not known: {}", settings.name,
                          schedule.error().message);
            } else if (in_schedule.has_value()) {
                log->info("node {}: account {} is {}in the schedule of {} producers", settings.name,
                          account(), *in_schedule ? "" : "not ", schedule->size());
            }
            status.in_schedule = in_schedule;
        }
        if (round.status != status.round) {
            log->debug("node {} round {} -> {} (head block by {})", settings.name,
                       status.round.empty() ? "unknown" : status.round,
                       round.status.empty() ? "unknown" : round.status, status.head_producer);
            status.round = std::move(round.status);
            publish();
        }
    }

    /// Reads the production state; a node producing without the lease is paused at once.
    asio::awaitable<void> watch_production() {
        co_await watch_round();
        auto paused = co_await read_paused();
        set_production(!paused ? "unknown" : *paused ? "paused" : "producing");
        if (paused && !*paused && status.fence == 0) {
            log->error("node {} is producing without the producer lease: pausing it",
                       settings.name);
            (void)co_await producer_call(settings.preset.producer_pause, "POST");
        }
    }

    /// POST to serve's producer API; the JSON object it answers, or its error.
    asio::awaitable<core::Result<boost::json::object>> serve_call(std::string_view what,
                                                                  const boost::json::object& body) {
        const auto& p = settings.producer;
        net::ClientRequest request;
        request.method = "POST";
        request.url = fmt::format("{}/api/v1/producers/{}/{}", p.serve, p.key, what);
        request.headers.push_back({"Content-Type", "application/json"});
        if (!p.token.empty()) {
            request.headers.push_back({"Authorization", "Bearer " + p.token});
        }
        request.body = boost::json::serialize(body);
        request.timeout = std::min<core::Millis>(p.lease_ttl / 2, std::chrono::seconds{5});
        auto response = co_await net::fetch(std::move(request));
        if (!response) {
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  fmt::format("serve {}: {}", p.serve, response.error().message)};
        }
        boost::system::error_code ec;
        auto value = boost::json::parse(response->body, ec);
        if (ec || !value.is_object()) {
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  fmt::format("serve {} answered {} without a JSON object", p.serve,
                                              response->status)};
        }
        if (response->status != 200) {
            const auto* error = value.as_object().if_contains("error");
            const auto* message = error != nullptr && error->is_object()
                                      ? error->as_object().if_contains("message")
                                      : nullptr;
            co_return core::Error{
                response->status == 409 ? core::ErrorCode::kBusy : core::ErrorCode::kUnavailable,
                message != nullptr && message->is_string()
                    ? std::string{message->as_string()}
                    : fmt::format("serve answered {}", response->status)};
        }
        co_return std::move(value.as_object());
    }

    /// Takes or renews the producer lease; its fence.
    asio::awaitable<core::Result<std::int64_t>> claim_lease() {
        // Named, not a temporary inside co_await (GCC 12).
        boost::json::object body;
        body["holder"] = settings.name;
        body["ttl"] = core::format_duration(settings.producer.lease_ttl);
        auto answer = co_await serve_call("claim", body);
        if (!answer) {
            co_return answer.error();
        }
        const auto* fence = answer->if_contains("fence");
        if (fence == nullptr || !fence->is_int64()) {
            co_return core::Error{core::ErrorCode::kUnavailable, "serve's claim has no fence"};
        }
        co_return fence->as_int64();
    }

    asio::awaitable<void> release_lease(std::string_view why) {
        const auto fence = status.fence;
        status.fence = 0;
        publish();
        boost::json::object body;
        body["holder"] = settings.name;
        body["fence"] = fence;
        auto released = co_await serve_call("release", body);
        if (released) {
            log->info("node {} released producer lease {} (fence {}): {}", settings.name,
                      settings.producer.key, fence, why);
        } else {
            log->warn(
                "node {} could not release producer lease {} (fence {}): {} (it lapses "
                "within {})",
                settings.name, settings.producer.key, fence, released.error().message,
                core::format_duration(settings.producer.lease_ttl));
        }
    }

    /// Pauses production now and lets go of the fence: the lease is lost or cannot be proved.
    asio::awaitable<void> drop_production(const std::string& why) {
        log->error("node {}: {}: pausing production", settings.name, why);
        status.fence = 0;
        publish();
        auto paused = co_await producer_call(settings.preset.producer_pause, "POST");
        if (!paused) {
            log->error("node {}: cannot pause production: {}", settings.name,
                       paused.error().message);
        }
    }

    /// While this sidecar holds the lease, renews it every third of its ttl; losing it (another
    /// holder, a newer fence) drops production at once, and so does failing to renew for two
    /// thirds of the ttl: the pause must land before serve lets the lease lapse and hands it to
    /// another node. Times are taken when a claim is sent, which is never later than serve's.
    asio::awaitable<void> keep_lease() {
        asio::steady_timer timer{context};
        auto last_renewed = std::chrono::steady_clock::now();
        while (!shutting_down) {
            timer.expires_after(settings.producer.lease_ttl / 3);
            co_await (timer.async_wait(kUseTuple) || changes.wait());
            if (shutting_down || status.fence == 0) {
                last_renewed = std::chrono::steady_clock::now();
                continue;
            }
            if (std::chrono::steady_clock::now() - last_renewed < settings.producer.lease_ttl / 3) {
                continue;
            }
            const auto sent = std::chrono::steady_clock::now();
            auto renewed = co_await claim_lease();
            if (renewed && *renewed == status.fence) {
                last_renewed = sent;
                continue;
            }
            if (renewed || renewed.error().code == core::ErrorCode::kBusy) {
                co_await drop_production(
                    renewed ? fmt::format("the producer lease moved to fence {}", *renewed)
                            : "the producer lease is gone: " + renewed.error().message);
                continue;
            }
            if (std::chrono::steady_clock::now() - last_renewed >=
                settings.producer.lease_ttl * 2 / 3) {
                co_await drop_production(
                    "the producer lease could not be renewed for two thirds of its ttl: " +
                    renewed.error().message);
            }
        }
        if (status.fence != 0) {
            co_await release_lease("the sidecar is shutting down");
        }
    }

    /// manageos's safely_resume_production: take the producer lease, then resume.
    asio::awaitable<core::Result<void>> safely_resume() {
        const auto& p = settings.producer;
        if (!p.bp_mode) {
            co_return not_bp_mode();
        }
        if (p.serve.empty()) {
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  "no producer lease to hold: start the sidecar with --serve URL "
                                  "(docs/producers.md)"};
        }
        if (status.state != RunState::kRunning || status.readiness != Readiness::kReady) {
            co_return core::Error{
                core::ErrorCode::kUnavailable,
                fmt::format("the node is not ready ({}): it must be synced "
                            "before it produces",
                            status.reason.empty() ? to_string(status.readiness) : status.reason)};
        }
        auto fence = co_await claim_lease();
        if (!fence) {
            co_return fence.error();
        }
        status.fence = *fence;
        changes.notify();  // keep_lease() starts counting from this claim
        publish();
        log->info("node {} holds producer lease {} with fence {}", settings.name, p.key, *fence);
        auto resumed = co_await producer_call(settings.preset.producer_resume, "POST");
        auto paused = resumed ? co_await read_paused() : core::Result<bool>{resumed.error()};
        if (!paused || *paused) {
            co_await release_lease("the node did not resume");
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  paused ? "the node still says it is paused"
                                         : "the node did not resume: " + paused.error().message};
        }
        set_production("producing");
        co_return core::Result<void>{};
    }

    /// manageos's safely_pause_production: pause, confirm, then give the lease back.
    asio::awaitable<core::Result<void>> safely_pause() {
        if (!settings.producer.bp_mode) {
            co_return not_bp_mode();
        }
        const auto deadline = std::chrono::steady_clock::now() + settings.producer.pause_timeout;
        // The seed's runbook waits for the node's production round to end: a pause inside the
        // round leaves its remaining blocks to a successor that may not have the last ones yet.
        // A producer scheduled alone has no end of round to wait for.
        if (status.production == "producing" && status.round == "producing" && scheduled > 1) {
            log->info(
                "node {} is producing its round (head block by {}): the pause waits for "
                "its end",
                settings.name, status.head_producer);
            while (status.round == "producing" && std::chrono::steady_clock::now() < deadline &&
                   !shutting_down) {
                co_await wait_change_or(settings.synced.interval);
            }
            if (status.round == "producing") {
                co_return core::Error{
                    core::ErrorCode::kTimeout,
                    fmt::format("node {} was still producing its round after {} (head block by "
                                "{}): not paused (producer.pause_timeout)",
                                settings.name,
                                core::format_duration(settings.producer.pause_timeout),
                                status.head_producer)};
            }
        }
        std::string why = "the producer API did not answer";
        while (std::chrono::steady_clock::now() < deadline && !shutting_down) {
            auto sent = co_await producer_call(settings.preset.producer_pause, "POST");
            auto paused = sent ? co_await read_paused() : core::Result<bool>{sent.error()};
            if (paused && *paused) {
                set_production("paused");
                if (status.fence != 0) {
                    co_await release_lease("production paused");
                }
                co_return core::Result<void>{};
            }
            why = paused ? "the node still says it produces" : paused.error().message;
            co_await wait_change_or(core::Millis{200});
        }
        co_return core::Error{
            core::ErrorCode::kTimeout,
            fmt::format("the node did not confirm the pause within {}: {} (the producer lease is "
                        "kept until it does)",
                        core::format_duration(settings.producer.pause_timeout), why)};
    }

    // --- rendered config (docs/supervise.md, "Rendered config") --------------------------------

    /// The public keys a render's key service lists; none without a key service.
    asio::awaitable<core::Result<std::vector<std::string>>> keys_for(const RenderSettings& r) {
        if (r.keys_url.empty()) {
            co_return std::vector<std::string>{};
        }
        net::ClientRequest request;
        request.method = "POST";
        request.url = r.keys_url;
        request.timeout = std::chrono::seconds{10};
        request.max_body_bytes = std::size_t{1} << 20U;
        auto response = co_await net::fetch(std::move(request));
        if (!response) {
            co_return core::Error{
                response.error().code,
                fmt::format("the key service {}: {}", r.keys_url, response.error().message)};
        }
        if (response->status < 200 || response->status >= 300) {
            co_return core::Error{
                core::ErrorCode::kUnavailable,
                fmt::format("the key service {} answered {}", r.keys_url, response->status)};
        }
        co_return parse_keys(response->body, r.keys_url);
    }

    /// Renders every config file before a start. Node thread.
    asio::awaitable<core::Result<void>> render_configs() {
        for (const auto& r : settings.render) {
            auto keys = co_await keys_for(r);
            if (!keys) {
                co_return keys.error();
            }
            auto written =
                co_await net::offload(files, [&r, &keys] { return render_file(r, *keys); });
            if (!written) {
                co_return core::Error{
                    written.error().code,
                    fmt::format("cannot render {}: {}", r.output, written.error().message)};
            }
            if (*written) {
                log->info("node {}: rendered {} from {} ({} signature providers)", settings.name,
                          r.output, r.template_path, keys->size());
            }
        }
        co_return core::Result<void>{};
    }

    /// Whether a render's output would change now (its template or a value file did).
    asio::awaitable<bool> config_changed() {
        for (const auto& r : settings.render) {
            if (!r.restart_on_change) {
                continue;
            }
            auto keys = co_await keys_for(r);
            if (!keys) {
                log->warn("node {}: {} changed, but {}: not restarting", settings.name,
                          r.template_path, keys.error().message);
                continue;
            }
            auto changed = co_await net::offload(files, [&r, &keys]() -> core::Result<bool> {
                auto text = render_text(r, *keys);
                if (!text) {
                    return text.error();
                }
                return !output_holds(r, *text);
            });
            if (!changed) {
                log->warn(
                    "node {}: {} changed but does not render: {} (the node keeps running "
                    "on the last good one)",
                    settings.name, r.template_path, changed.error().message);
                continue;
            }
            if (*changed) {
                co_return true;
            }
        }
        co_return false;
    }

    /// Watches the templates' directories (a Kubernetes configmap mount swaps a symlink) and
    /// restarts the node, through the command queue, when a render's output would change.
    /// A changed config is applied by a restart: deferred while the node produces (bp mode)
    /// until production moves away; through serve's job engine when the node is in its pool, so
    /// the sidecars of a set restart one at a time (the config-reload action); else at once.
    asio::awaitable<void> apply_config_change() {
        if (status.production == "producing") {
            status.reload_pending =
                "the config changed while the node produces: restarting once production is "
                "handed over (switch-producer) or paused";
            log->warn("node {}: {}", settings.name, status.reload_pending);
            publish();
            co_return;
        }
        status.reload_pending.clear();
        if (!settings.producer.serve.empty()) {
            auto submitted = co_await submit_rolling_reload();
            if (submitted) {
                log->info(
                    "node {}: its config changed: restart queued in serve as job {} "
                    "(config-reload, one node at a time)",
                    settings.name, *submitted);
                publish();
                co_return;
            }
            log->warn(
                "node {}: its config changed; serve did not take the rolling restart ({}): "
                "restarting it here",
                settings.name, submitted.error().message);
        }
        log->info("node {}: its config changed: restarting it to apply", settings.name);
        enqueue(Command::kSafelyReload, {}, {});
        publish();
    }

    /// POST serve's /api/v1/nodes/NAME/actions/config-reload: the job's id.
    asio::awaitable<core::Result<std::string>> submit_rolling_reload() {
        const auto& p = settings.producer;
        net::ClientRequest request;
        request.method = "POST";
        request.url =
            fmt::format("{}/api/v1/nodes/{}/actions/config-reload", p.serve, settings.name);
        request.headers.push_back({"Content-Type", "application/json"});
        if (!p.token.empty()) {
            request.headers.push_back({"Authorization", "Bearer " + p.token});
        }
        request.body = "{}";
        request.timeout = std::chrono::seconds{10};
        auto response = co_await net::fetch(std::move(request));
        if (!response) {
            co_return core::Error{core::ErrorCode::kUnavailable, response.error().message};
        }
        boost::system::error_code ec;
        auto value = boost::json::parse(response->body, ec);
        const auto* job = !ec && value.is_object() ? value.as_object().if_contains("job") : nullptr;
        const auto* id =
            job != nullptr && job->is_object() ? job->as_object().if_contains("id") : nullptr;
        if (response->status / 100 != 2 || id == nullptr || !id->is_string()) {
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  fmt::format("serve answered {}: {}", response->status,
                                              response->body.substr(0, 300))};
        }
        co_return std::string{id->as_string()};
    }

    asio::awaitable<void> watch_configs() {
        const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd < 0) {
            log->error("node {}: cannot watch the config templates: {}", settings.name,
                       std::strerror(errno));
            co_return;
        }
        asio::posix::stream_descriptor watcher{context, fd};
        config_watcher = &watcher;
        std::set<std::string> dirs;
        for (const auto& r : settings.render) {
            if (r.restart_on_change) {
                dirs.insert(std::filesystem::path{r.template_path}.parent_path().string());
            }
        }
        for (const auto& dir : dirs) {
            if (::inotify_add_watch(fd, dir.empty() ? "." : dir.c_str(),
                                    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                                        IN_DELETE | IN_ATTRIB) < 0) {
                log->error("node {}: cannot watch {}: {}", settings.name, dir,
                           std::strerror(errno));
            }
        }
        std::array<char, 4096> events{};
        asio::steady_timer settle{context};
        while (!shutting_down) {
            auto [ec, n] = co_await watcher.async_read_some(asio::buffer(events), kUseTuple);
            if (ec || shutting_down) {
                break;
            }
            // A configmap update is several events in a row: let them settle.
            while (true) {
                settle.expires_after(kConfigSettle);
                auto which = co_await (settle.async_wait(kUseTuple) ||
                                       watcher.async_read_some(asio::buffer(events), kUseTuple));
                if (which.index() == 0 || shutting_down) {
                    break;
                }
            }
            if (shutting_down || status.maintenance || !(co_await config_changed())) {
                continue;
            }
            co_await apply_config_change();
        }
        config_watcher = nullptr;
    }

    // --- backups and restores (docs/backups.md) ------------------------------------------------

    void set_phase(std::string phase, std::string_view what = {}) {
        if (!phase.empty()) {
            log->info("node {} {}: {}", settings.name, what, phase);
        }
        status.phase = std::move(phase);
        publish();
    }

    /// The chain whose backups this node makes and restores: --chain-id, else what the node
    /// last reported.
    std::string chain_id() const {
        return settings.chain_id.empty() ? status.chain_id : settings.chain_id;
    }

    core::Result<void> check_backups() const {
        if (!backup_store) {
            return core::Error{core::ErrorCode::kUnavailable, std::string{kNoBackupTarget}};
        }
        if (settings.data_dir.empty()) {
            return core::Error{core::ErrorCode::kUnavailable,
                               "no data dir to back up: start with --data-dir DIR"};
        }
        return {};
    }

    /// In bp mode, a backup stops the node: refused while this node is the producer (it holds
    /// the lease), and a node producing without the lease is paused first.
    asio::awaitable<core::Result<void>> off_the_hook() {
        if (!settings.producer.bp_mode) {
            co_return core::Result<void>{};
        }
        if (status.fence != 0) {
            co_return core::Error{
                core::ErrorCode::kUnavailable,
                fmt::format("node {} is on the hook to produce: it holds producer lease {} "
                            "(fence {}); hand production over first (aviary switch-producer "
                            "--from {} --to ...) or pause it (safely_pause_production)",
                            settings.name, settings.producer.key, status.fence, settings.name)};
        }
        if (status.production != "paused") {
            // Producing without the lease, or not known: paused before the node is stopped.
            auto paused = co_await producer_call(settings.preset.producer_pause, "POST");
            if (!paused && status.state == RunState::kRunning) {
                co_return core::Error{core::ErrorCode::kUnavailable,
                                      fmt::format("cannot pause production before the backup: {}",
                                                  paused.error().message)};
            }
            if (paused) {
                set_production("paused");
            }
        }
        co_return core::Result<void>{};
    }

    /// manageos's backup, in its order: record the head, close the proxy, stop the node, copy
    /// the data dir, start the node, wait for the head to advance, open the proxy. Whatever
    /// fails, a node that was running is started again and the proxy reopens.
    asio::awaitable<core::Result<void>> backup(const CommandArgs& args) {
        if (auto ready = check_backups(); !ready) {
            co_return ready;
        }
        if (!settings.chain_id.empty() && !status.chain_id.empty() &&
            status.chain_id != settings.chain_id) {
            co_return core::Error{core::ErrorCode::kInvalidArgument,
                                  fmt::format("the node reports chain id {}, not {} (--chain-id): "
                                              "refusing to file its data under the wrong chain",
                                              status.chain_id, settings.chain_id)};
        }
        if (auto producing = co_await off_the_hook(); !producing) {
            co_return producing;
        }
        const auto began = std::chrono::steady_clock::now();
        const bool was_running =
            status.state == RunState::kRunning || status.state == RunState::kStarting;
        // What life() would run (a node running, starting or waiting out a backoff) is held
        // stopped for the copy and started again after it.
        const bool start_after = !status.maintenance && !hold_stopped && !exited_for_good;
        Manifest provenance{.node = settings.name,
                            .chain = settings.chain,
                            .chain_id = chain_id(),
                            .height = was_running ? status.height : std::nullopt,
                            .block_hash = was_running ? status.block_hash : std::string{},
                            .node_version = status.node_version,
                            .tag = args.backup_tag,
                            .phase = was_running          ? "stopped for the backup"
                                     : status.maintenance ? "in maintenance"
                                                          : "not running",
                            .created_at = now()};
        provenance.name =
            backup_name(provenance.created_at, provenance.chain_id, provenance.height);
        const std::string what = "backup " + provenance.name;
        gate_held = true;
        set_phase(fmt::format("recorded head {} of chain {}; proxy closed",
                              provenance.height ? std::to_string(*provenance.height) : "unknown",
                              provenance.chain_id.empty() ? "unknown" : provenance.chain_id),
                  what);
        if (start_after) {
            hold_stopped = true;
            if (was_running) {
                set_phase("stopping the node", what);
            }
            co_await stop_running();
        }
        // A node that did not stop within stop.grace was killed: its data may be dirty (a
        // nodeos killed mid-write), and a backup of it would be restored into the same state.
        core::Result<Manifest> made = core::Error{
            core::ErrorCode::kUnavailable,
            "the node did not stop within stop.grace and was killed: its data may be dirty, so "
            "it was not backed up"};
        if (!(was_running && status.last_exit && status.last_exit->signal == SIGKILL)) {
            set_phase("copying the data dir", what);
            made = co_await net::offload(files, [this, &provenance] {
                return backup_store->create(settings.data_dir, provenance, cancel_files);
            });
        }
        core::Result<void> result;
        if (made) {
            status.last_backup = made->name;
            log->info("node {} {}: made, {} files, {} bytes ({} hard-linked to the previous one)",
                      settings.name, what, made->file_count, made->size, made->linked);
            auto pruned = co_await net::offload(files, [this, &provenance] {
                return backup_store->prune(provenance.chain_id, settings.backup.keep);
            });
            if (!pruned) {
                log->warn("node {} backups: cannot remove old ones: {}", settings.name,
                          pruned.error().message);
            } else if (!pruned->empty()) {
                log->info("node {} backups: removed {} (keep {})", settings.name,
                          fmt::join(*pruned, ", "), settings.backup.keep);
            }
        } else {
            result = made.error();
            log->error("node {} {} failed: {}", settings.name, what, made.error().message);
        }
        if (start_after && !shutting_down && !status.maintenance) {
            set_phase("starting the node", what);
            auto started = co_await start_now();
            if (!started && result) {
                result = core::Error{started.error().code,
                                     fmt::format("backup {} made, but the node did not start "
                                                 "again: {}",
                                                 provenance.name, started.error().message)};
            }
            if (started && provenance.height) {
                set_phase(fmt::format("waiting for the head to pass {}", *provenance.height), what);
                co_await head_past(*provenance.height);
            }
        }
        gate_held = false;
        set_phase({}, what);
        if (result) {
            log->info("node {} {}: done, the proxy is open again", settings.name, what);
        }
        record_copy("backup", result, began);
        if (made) {
            m_last_backup.set(static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(
                                                      made->created_at.time_since_epoch())
                                                      .count()));
        }
        co_return result;
    }

    void record_copy(const char* operation,
                     const core::Result<void>& result,
                     std::chrono::steady_clock::time_point began) {
        m_copies.with({settings.name, operation, result ? "ok" : "failed"}).inc();
        m_copy_seconds.with({settings.name, operation})
            .observe(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
    }

    /// Waits until the running node's head passes `height`, it stops, or resume_timeout passes.
    asio::awaitable<void> head_past(std::int64_t height) {
        const auto deadline = std::chrono::steady_clock::now() + settings.backup.resume_timeout;
        while (!shutting_down && status.state == RunState::kRunning &&
               !(status.height && *status.height > height)) {
            const auto left = deadline - std::chrono::steady_clock::now();
            if (left <= std::chrono::steady_clock::duration::zero()) {
                log->warn(
                    "node {}: the head has not passed {} within {} of the restart: the "
                    "proxy opens again, readiness decides",
                    settings.name, height, core::format_duration(settings.backup.resume_timeout));
                co_return;
            }
            co_await wait_change_or(std::chrono::duration_cast<core::Millis>(left));
        }
    }

    /// Resolves the backup a restore names: "" or "latest" is the newest usable one of this
    /// chain (with `tag`, when given).
    core::Result<std::string> pick_backup(const CommandArgs& args) const {
        if (!args.backup_name.empty() && args.backup_name != "latest") {
            return args.backup_name;
        }
        if (chain_id().empty()) {
            return core::Error{core::ErrorCode::kUnavailable,
                               "the node's chain is not known yet: give --chain-id, or name the "
                               "backup (backupName), so no other chain's backup is restored"};
        }
        auto latest = backup_store->latest(chain_id(), args.backup_tag);
        if (!latest) {
            return latest.error();
        }
        if (!*latest) {
            return core::Error{
                core::ErrorCode::kNotFound,
                fmt::format("no usable backup of chain {}{} in {}", chain_id(),
                            args.backup_tag.empty() ? "" : " tagged " + args.backup_tag,
                            settings.backup.dir)};
        }
        return (*latest)->name;
    }

    /// The signer's last-signed height, where the preset names its state file and the file
    /// is there; an error when it is there but unreadable (no restore should guess).
    core::Result<std::optional<std::int64_t>> signed_height() const {
        const auto& preset = settings.preset;
        if (preset.signer_state.empty()) {
            return std::optional<std::int64_t>{};
        }
        const auto path = std::filesystem::path{settings.data_dir} / preset.signer_state;
        std::ifstream in{path};
        if (!in) {
            return std::optional<std::int64_t>{};
        }
        std::stringstream text;
        text << in.rdbuf();
        auto bad = [&](std::string_view why) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("cannot read the last signed height from {} ({}): {}",
                                           path.string(), preset.signer_height, why)};
        };
        boost::system::error_code ec;
        auto value = boost::json::parse(text.str(), ec);
        if (ec) {
            return bad("not JSON");
        }
        const auto* at = value.find_pointer(preset.signer_height, ec);
        if (at == nullptr) {
            return bad("no such field");
        }
        if (at->is_int64()) {
            return std::optional<std::int64_t>{at->as_int64()};
        }
        if (at->is_uint64()) {
            return std::optional<std::int64_t>{static_cast<std::int64_t>(at->as_uint64())};
        }
        std::int64_t height = 0;
        if (at->is_string()) {
            const std::string_view s = at->as_string();
            auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), height);
            if (err == std::errc{} && end == s.data() + s.size()) {
                return std::optional<std::int64_t>{height};
            }
        }
        return bad("not a whole number");
    }

    /// A restore must not move the signer's last-signed mark backwards: with a mark, the
    /// backup must be at or above it.
    core::Result<void> check_signer(const Manifest& manifest) const {
        auto mark = signed_height();
        if (!mark) {
            return mark.error();
        }
        if (!*mark) {
            return {};
        }
        const auto& name = manifest.name;
        if (!manifest.height || *manifest.height < **mark) {
            return core::Error{
                core::ErrorCode::kInvalidArgument,
                fmt::format("backup {} is at height {}, below the signer's last signed height {} "
                            "({}): refusing to restore it",
                            name, manifest.height ? std::to_string(*manifest.height) : "unknown",
                            **mark, settings.preset.signer_state)};
        }
        return {};
    }

    /// Copies backup `name` into the data dir (the node is stopped). Node thread.
    asio::awaitable<core::Result<Manifest>> restore_files(const std::string& name) {
        auto restored = co_await net::offload(files, [this, &name]() -> core::Result<Manifest> {
            // Checked here, with the node stopped, even when a command checked it before the
            // stop: the node may have signed more while it stopped.
            auto manifest = backup_store->read(name);
            if (!manifest) {
                return manifest.error();
            }
            if (auto allowed = check_signer(*manifest); !allowed) {
                return allowed.error();
            }
            return backup_store->restore(name, settings.data_dir, cancel_files);
        });
        if (restored) {
            status.last_restore = restored->name;
            log->info("node {} restore {}: done, {} files, {} bytes, height {}", settings.name,
                      name, restored->file_count, restored->size,
                      restored->height ? std::to_string(*restored->height) : "unknown");
        }
        co_return restored;
    }

    /// manageos's restore: stop the node, put the backup in place (checked as it is copied),
    /// start the node again (unless in maintenance).
    asio::awaitable<core::Result<void>> restore(const CommandArgs& args) {
        if (auto ready = check_backups(); !ready) {
            co_return ready;
        }
        const auto began = std::chrono::steady_clock::now();
        auto name = co_await net::offload(files, [this, &args]() -> core::Result<std::string> {
            auto picked = pick_backup(args);
            if (!picked) {
                return picked;
            }
            // Named wrongly, quarantined, or refused for the signer: said before the node stops.
            auto usable = backup_store->read(*picked);
            if (!usable) {
                return usable.error();
            }
            if (auto allowed = check_signer(*usable); !allowed) {
                return allowed.error();
            }
            return picked;
        });
        if (!name) {
            co_return name.error();
        }
        const std::string what = "restore " + *name;
        if (status.state == RunState::kRunning || status.state == RunState::kStarting ||
            status.state == RunState::kBackoff) {
            set_phase("stopping the node", what);
            hold_stopped = true;
            co_await stop_running();
        }
        set_phase("copying the backup into the data dir", what);
        auto restored = co_await restore_files(*name);
        core::Result<void> result;
        if (restored) {
            status.restore_pending.clear();
            (void)save_state();
        } else {
            result = restored.error();
            log->error("node {} {} failed: {}", settings.name, what, restored.error().message);
        }
        if (!shutting_down && !status.maintenance) {
            set_phase("starting the node", what);
            auto started = co_await start_now();
            if (!started && result) {
                result = core::Error{started.error().code,
                                     fmt::format("restored {}, but the node did not start: {}",
                                                 *name, started.error().message)};
            }
        }
        set_phase({}, what);
        record_copy("restore", result, began);
        co_return result;
    }

    /// The boot rules, before every start: finish a restore a crash interrupted, then restore
    /// the newest usable backup when the data dir has no chain data, is dirty, or a restore is
    /// pending. With no usable backup the node starts from what it has (its genesis).
    asio::awaitable<void> prepare_data() {
        if (!backup_store || settings.data_dir.empty()) {
            co_return;
        }
        // A swap a crash interrupted is finished whatever restore_on_boot says: the node must not
        // start on a half-swapped data dir.
        auto finished = co_await net::offload(files, [this] {
            return finish_restore(settings.data_dir, settings.backup.exclude,
                                  backup_store->inside_data(settings.data_dir));
        });
        if (!finished) {
            log->error("node {}: cannot finish the interrupted restore in {}: {}", settings.name,
                       settings.data_dir, finished.error().message);
        } else if (*finished) {
            log->warn("node {}: finished a restore into {} that was interrupted", settings.name,
                      settings.data_dir);
        }
        if (!settings.backup.restore_on_boot) {
            co_return;
        }
        const std::filesystem::path data{settings.data_dir};
        const auto& preset = settings.preset;
        std::error_code ec;
        std::string why = status.restore_pending;
        if (why.empty() && !preset.dirty_marker.empty() &&
            std::filesystem::exists(data / preset.dirty_marker, ec)) {
            why = fmt::format("the dirty flag {} is set", preset.dirty_marker);
        }
        if (why.empty() && !preset.chain_data.empty() &&
            !std::filesystem::exists(data / preset.chain_data, ec)) {
            why = fmt::format("no chain data ({} is missing)", preset.chain_data);
        }
        if (why.empty()) {
            co_return;
        }
        // Newest first; a backup found damaged as it is copied is quarantined, and the next
        // one is tried.
        while (!shutting_down) {
            auto name = co_await net::offload(files, [this] { return pick_backup({}); });
            if (!name) {
                log->warn("node {}: {}, and {}: it starts from what its data dir holds",
                          settings.name, why, name.error().message);
                break;
            }
            log->warn("node {}: {}: restoring backup {}", settings.name, why, *name);
            status.phase = "restoring " + *name;
            publish();
            auto restored = co_await restore_files(*name);
            if (restored) {
                break;
            }
            log->error("node {}: restoring {} failed: {}", settings.name, *name,
                       restored.error().message);
            if (restored.error().code != core::ErrorCode::kStorage ||
                restored.error().message.find("quarantined") == std::string::npos) {
                break;  // not the backup's fault: trying an older one would not help
            }
        }
        status.phase.clear();
        status.restore_pending.clear();
        (void)save_state();
        publish();
    }

    asio::awaitable<core::Result<void>> run_command(Command command, const CommandArgs& args) {
        switch (command) {
            case Command::kSafelyPauseProduction:
                co_return co_await safely_pause();
            case Command::kSafelyResumeProduction:
                co_return co_await safely_resume();
            case Command::kBackup:
                co_return co_await backup(args);
            case Command::kRestore:
                co_return co_await restore(args);
            case Command::kMaintenance: {
                status.maintenance = true;
                if (auto saved = save_state(); !saved) {
                    log->error("cannot save the maintenance flag: {}", saved.error().message);
                }
                publish();  // the gate closes before the node is stopped
                co_await stop_running();
                set_state(RunState::kMaintenance);
                co_return core::Result<void>{};
            }
            case Command::kResume: {
                const bool was = status.maintenance;
                status.maintenance = false;
                if (auto saved = save_state(); !saved) {
                    log->error("cannot save the maintenance flag: {}", saved.error().message);
                }
                if (!was && status.state == RunState::kRunning) {
                    co_return core::Result<void>{};  // already running
                }
                co_return co_await start_now();
            }
            case Command::kSafelyReload:
                if (status.production == "producing") {
                    co_return core::Error{
                        core::ErrorCode::kUnavailable,
                        fmt::format("node {} is producing (fence {}): hand production over "
                                    "first (aviary switch-producer --from {} --to ...), or pause "
                                    "it; reload restarts it regardless",
                                    settings.name, status.fence, settings.name)};
                }
                [[fallthrough]];
            case Command::kReload: {
                if (status.maintenance) {
                    co_return core::Error{core::ErrorCode::kUnavailable,
                                          "the node is in maintenance: resume it instead"};
                }
                hold_stopped = true;
                co_await stop_running();
                co_return co_await start_now();
            }
        }
        co_return core::Result<void>{};
    }

    asio::awaitable<void> commands() {
        while (true) {
            while (queue.empty() && !shutting_down) {
                co_await changes.wait();
            }
            if (queue.empty()) {
                co_return;
            }
            auto [command, done, args] = std::move(queue.front());
            queue.pop_front();
            status.command = std::string{to_string(command)};
            publish();
            log->info("command {} started", to_string(command));
            auto result = co_await run_command(command, args);
            log->log(result ? spdlog::level::info : spdlog::level::warn, "command {} {}{}",
                     to_string(command),
                     result ? "completed" : "failed: ", result ? "" : result.error().message);
            status.command.clear();
            publish();
            if (done) {
                done(std::move(result));
            }
        }
    }

    Settings settings;
    std::shared_ptr<spdlog::logger> log;
    asio::io_context context{1};
    Changes changes;
    Relay relay{context.get_executor()};
    std::thread thread;

    mutable std::mutex mu;
    Status shared;  // under mu
    /// Whether the proxy may forward: read on every proxied request, so without the lock and
    /// the copy of `shared` (publish() sets it after `shared`).
    std::atomic<bool> open{false};
    bool shared_gate_held = false;  // under mu
    /// Backups and restores copy on their own thread; set when the sidecar shuts down.
    net::BlockingPool files{1};
    Cancelled cancel_files{false};
    std::deque<LogLine> ring;                           // under mu
    std::function<void(const LogLine&)> line_observer;  // set before start(); node thread
    std::size_t ring_bytes = 0;                         // under mu
    bool finished_flag = false;                         // under mu
    std::condition_variable finished_cv;

    // Node thread only.
    Status status;
    std::deque<std::tuple<Command, CommandDone, CommandArgs>> queue;
    /// The proxy stays closed while a backup runs, even once the node is ready again.
    bool gate_held = false;
    asio::posix::stream_descriptor* config_watcher = nullptr;  // while watch_configs() runs
    std::optional<BackupStore> backup_store;
    asio::steady_timer* stop_request = nullptr;
    std::shared_ptr<proc::Process> current;  // the running node, for forwarded signals
    bool stop_wanted = false;
    bool hold_stopped = false;
    bool exited_for_good = false;
    bool requested_start = false;
    bool started_once = false;  // in this sidecar's life
    bool started = false;       // start() ran
    bool shutting_down = false;
    std::uint64_t wake_generation = 0;
    std::string start_error;
    core::Millis backoff{0};
    std::deque<std::chrono::steady_clock::time_point> recent_starts;
    std::string pending_out;
    std::string pending_err;
    // The last read's time and line counts, until count_lines(): the pump's coroutine only.
    core::TimePoint read_at = now();
    std::size_t read_lines_out = 0;
    std::size_t read_lines_err = 0;

    metrics::Counter& m_starts;
    metrics::Counter& m_restarts;
    metrics::Family<metrics::Counter>& m_exits;
    metrics::Gauge& m_start_limit;
    metrics::Gauge& m_up;
    metrics::Gauge& m_uptime;
    metrics::Family<metrics::Gauge>& m_ready;
    metrics::Family<metrics::Counter>& m_lines;
    metrics::Gauge& m_height;
    metrics::Counter* lines_out = &m_lines.with({settings.name, "stdout"});
    metrics::Counter* lines_err = &m_lines.with({settings.name, "stderr"});
    metrics::Family<metrics::Counter>& m_rule_overflow;
    metrics::Family<metrics::Counter>& m_copies;
    metrics::Gauge& m_last_backup;
    metrics::Family<metrics::Histogram>& m_copy_seconds;
    metrics::Gauge& m_producing;
    std::size_t scheduled = 0;  ///< producers in the schedule last read (0: not known)
    std::vector<CompiledRule> rules;
    ReadinessReader readiness;
};

Supervisor::Supervisor(Settings settings, metrics::Registry& registry)
    : impl_(std::make_unique<Impl>(std::move(settings), registry)) {}

Supervisor::~Supervisor() {
    stop();
}

void Supervisor::on_line(std::function<void(const LogLine&)> observer) {
    impl_->line_observer = std::move(observer);
}

namespace {

/// The program a node's argv[0] names, found as execvp will find it; an error says why not.
core::Result<void> check_program(const ProgramSettings& program) {
    const std::string& name = program.argv.front();
    auto runnable = [](const std::string& path) {
        struct stat st {};
        return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
               ::access(path.c_str(), X_OK) == 0;
    };
    if (name.find('/') != std::string::npos) {
        // A relative path is run from the node's working directory.
        const std::string path =
            name.front() != '/' && !program.cwd.empty() ? program.cwd + "/" + name : name;
        if (runnable(path)) {
            return {};
        }
        return core::Error{
            core::ErrorCode::kNotFound,
            fmt::format("cannot run \"{}\": {}", name,
                        ::access(path.c_str(), F_OK) == 0 ? "not executable" : "no such file")};
    }
    std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "/usr/bin:/bin";
    for (const auto& [key, value] : program.env) {
        if (key == "PATH") {
            path = value;
        }
    }
    std::string_view rest{path};
    while (true) {
        auto colon = rest.find(':');
        std::string dir{rest.substr(0, colon)};
        if (runnable((dir.empty() ? std::string{"."} : dir) + "/" + name)) {
            return {};
        }
        if (colon == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(colon + 1);
    }
    return core::Error{core::ErrorCode::kNotFound,
                       fmt::format("cannot run \"{}\": no such file in PATH", name)};
}

}  // namespace

core::Result<void> Supervisor::start() {
    auto& d = *impl_;
    if (d.settings.program.argv.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument, "no command to supervise"};
    }
    if (auto runnable = check_program(d.settings.program); !runnable) {
        return runnable.error();
    }
    auto state = read_state_file(d.settings.state_dir);
    if (!state) {
        return state.error();
    }
    d.status.name = d.settings.name;
    d.status.chain = d.settings.chain;
    d.status.maintenance = state->maintenance;
    d.status.starts = state->starts;
    d.status.restarts = state->restarts;
    d.status.restore_pending = state->restore_pending;
    if (!d.settings.backup.dir.empty()) {
        d.backup_store.emplace(d.settings.backup.dir, d.settings.backup.exclude,
                               d.settings.backup.format);
        if (auto opened = d.backup_store->open(); !opened) {
            return opened.error();
        }
    }
    if (auto saved = d.save_state(); !saved) {
        return saved.error();
    }
    if (d.status.maintenance) {
        d.log->warn("node {} is in maintenance (from {}): not started until resume",
                    d.settings.name, state_file_path(d.settings.state_dir));
    }
    d.publish();
    d.started = true;
    asio::co_spawn(d.context, d.life(), asio::detached);
    asio::co_spawn(d.context, d.commands(), asio::detached);
    if (d.settings.producer.bp_mode) {
        d.status.production = "unknown";
        d.status.producer_key = d.settings.producer.key;
        if (!d.settings.producer.serve.empty()) {
            asio::co_spawn(d.context, d.keep_lease(), asio::detached);
        }
    }
    if (std::any_of(d.settings.render.begin(), d.settings.render.end(),
                    [](const auto& r) { return r.restart_on_change; })) {
        asio::co_spawn(d.context, d.watch_configs(), asio::detached);
    }
    d.thread = std::thread{[&d] {
        core::name_this_thread("node");
        d.context.run();
        {
            std::lock_guard lock{d.mu};
            d.finished_flag = true;
        }
        d.finished_cv.notify_all();
    }};
    return {};
}

void Supervisor::stop() {
    auto& d = *impl_;
    if (!d.thread.joinable()) {
        return;
    }
    asio::co_spawn(
        d.context,
        [&d]() -> asio::awaitable<void> {
            d.shutting_down = true;
            d.cancel_files.store(true);
            co_await d.stop_running();
            d.relay.release();
            d.changes.notify();
        },
        asio::detached);
    d.thread.join();
    d.relay.close();  // what the node printed last reaches our stdout before we return
}

void Supervisor::wait() {
    auto& d = *impl_;
    std::unique_lock lock{d.mu};
    d.finished_cv.wait(lock, [&d] { return d.finished_flag || !d.started; });
}

Status Supervisor::status() const {
    return impl_->snapshot();
}

std::vector<LogLine> Supervisor::logs(std::size_t n) const {
    std::lock_guard lock{impl_->mu};
    const auto& ring = impl_->ring;
    n = std::min(n, ring.size());
    return {ring.end() - static_cast<std::ptrdiff_t>(n), ring.end()};
}

std::pair<bool, std::string> Supervisor::gate() const {
    if (impl_->open.load(std::memory_order_acquire)) {
        return {true, ""};
    }
    Status s;
    bool held = false;
    {
        std::lock_guard lock{impl_->mu};
        s = impl_->shared;
        held = impl_->shared_gate_held;
    }
    if (s.maintenance) {
        return {false, "maintenance"};
    }
    if (held) {
        return {false, fmt::format("backup in progress: {}", s.phase)};
    }
    if (s.readiness == Readiness::kReady) {
        return {true, ""};
    }
    return {false, s.reason.empty() ? std::string{to_string(s.readiness)} : s.reason};
}

void Supervisor::forward_signal(int sig) {
    auto& d = *impl_;
    asio::post(d.context, [&d, sig] {
        if (d.current) {
            d.log->info("forwarding signal {} to node {} (process group {})", sig, d.settings.name,
                        d.current->pgid());
            d.current->signal_group(sig);
        }
    });
}

void Supervisor::submit(Command command, CommandDone done, CommandDone queued, CommandArgs args) {
    auto& d = *impl_;
    asio::post(d.context, [&d, command, done = std::move(done), queued = std::move(queued),
                           args = std::move(args)]() mutable {
        d.enqueue(command, std::move(done), std::move(queued), std::move(args));
    });
}

core::Result<std::vector<BackupEntry>> Supervisor::backups() const {
    const auto& d = *impl_;
    if (!d.backup_store) {
        return core::Error{core::ErrorCode::kUnavailable, std::string{kNoBackupTarget}};
    }
    return d.backup_store->list();
}

const Settings& Supervisor::settings() const {
    return impl_->settings;
}

}  // namespace aviary::supervisor
