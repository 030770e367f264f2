// One attempt of one job: its steps in order, each under a deadline, the children they start
// (recorded, ended as a group on cancel or timeout), their output (numbered, batched into the
// store, capped), and the guarded write that ends the attempt.
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include "jobs/engine_impl.hpp"
#include "jobs/http_step.hpp"
#include "jobs/reboot_step.hpp"
#include "jobs/switch_producer_step.hpp"

namespace aviary::jobs {
namespace {

using namespace asio::experimental::awaitable_operators;
namespace json = boost::json;

/// Output lines wait this long to be written together (or until kOutputBatch have gathered).
constexpr core::Millis kOutputLinger{25};
constexpr std::size_t kOutputBatch = 512;

core::Error step_error(std::string message) {
    return core::Error{core::ErrorCode::kInternal, std::move(message)};
}

std::string describe(const proc::ExitStatus& status) {
    if (status.exited()) {
        return fmt::format("exited with code {}", status.code);
    }
    return fmt::format("was killed by signal {} ({})", status.signal, ::strsignal(status.signal));
}

std::string status_json(const drivers::NodeStatus& status) {
    json::object out{{"installed", status.installed},
                     {"running", status.running},
                     {"version", status.version},
                     {"height", status.height},
                     {"syncing", status.syncing}};
    return json::serialize(out);
}

}  // namespace

asio::awaitable<void> nap(Run& run, core::Millis d) {
    if (run.stop != StopReason::kNone) {
        co_return;
    }
    asio::steady_timer timer(run.deadline.get_executor(), d);
    co_await (timer.async_wait(asio::as_tuple(asio::use_awaitable)) ||
              run.stop_signal.async_wait(asio::as_tuple(asio::use_awaitable)));
}

namespace {

/// What a step gives a driver (drivers::Context) and what runs its children.
class StepContext final : public drivers::Context {
public:
    StepContext(Engine::Impl& engine, Run& run, const StepSpec& step)
        : engine_(engine), run_(run), step_(step) {}

    void note(std::string text) override { engine_.add_line(run_, "aviary", std::move(text)); }
    bool stopping() const override { return run_.stop != StopReason::kNone; }
    using drivers::Context::run;

    asio::awaitable<core::Result<proc::ExitStatus>> run(proc::SpawnOptions options,
                                                        drivers::RunOptions run_options) override {
        const std::string program = options.argv.empty() ? "" : options.argv.front();
        Engine::Impl* engine = &engine_;
        Run* run = &run_;
        const bool stdout_to_output = run_options.stdout_to_output;
        proc::RunSpec spec{
            .on_line =
                [engine, run, also = std::move(run_options.on_line),
                 stdout_to_output](const proc::Line& line) {
                    if (also) {
                        also(line);
                    }
                    if (line.stream == proc::Stream::kStdout && !stdout_to_output) {
                        return;
                    }
                    std::string text = line.text;
                    if (line.truncated) {
                        text += " [line truncated]";
                    }
                    engine->add_line(*run,
                                     line.stream == proc::Stream::kStdout ? "stdout" : "stderr",
                                     std::move(text));
                },
            .max_stdout_line = run_options.max_stdout_line,
            .timeout = run_options.timeout,
            .kill_grace = engine_.settings.kill_grace,
            .on_started = [this](proc::Process& process) { return record_group(process); },
            .stop_signal = &run_.stop_signal,
            .stopping = [run] { return run->stop != StopReason::kNone; },
            .note = [this](std::string text) { note(std::move(text)); },
        };
        auto ran =
            co_await proc::run(engine_.io.get_executor(), std::move(options), std::move(spec));
        if (!ran) {
            co_return ran.error();
        }
        if (ran->timed_out) {
            co_return core::Error{core::ErrorCode::kTimeout,
                                  fmt::format("{} ran longer than {}", program,
                                              core::format_duration(run_options.timeout))};
        }
        co_return ran->status;
    }

private:
    /// The child's group goes on the job before the wait, so a crash's leftover is killed at
    /// the next start.
    asio::awaitable<core::Result<void>> record_group(proc::Process& process) {
        auto& d = engine_;
        store::JobStepUpdate update{
            .id = run_.job.id,
            .attempt = run_.job.attempt,
            .step = run_.step,
            .step_name = step_.name,
            .pgid = process.pgid(),
            .pgid_start_ticks = proc::start_ticks(process.pid()).value_or(0),
            .now = d.clock.now()};
        auto record = [&d, &update] { return d.store.update_job_step(update); };
        auto recorded = co_await net::offload(*d.pool, record);
        // A database that is away (restarting) is waited out, up to heartbeat_timeout: the
        // child runs meanwhile, and its group must be on record before anything can rescue it.
        core::Millis waited{0};
        for (core::Millis backoff{100};
             !recorded && recorded.error().code == core::ErrorCode::kUnavailable && !d.stopping &&
             waited + backoff < d.settings.heartbeat_timeout;
             backoff = std::min(backoff * 2, core::Millis{1000})) {
            asio::steady_timer pause{d.io, backoff};
            co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
            waited += backoff;
            recorded = co_await net::offload(*d.pool, record);
        }
        if (!recorded) {
            co_return recorded.error();
        }
        note(fmt::format("started pid {} (process group {})", process.pid(), process.pgid()));
        co_return core::Result<void>{};
    }

    Engine::Impl& engine_;
    Run& run_;
    const StepSpec& step_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Output

void Engine::Impl::add_line(Run& run, std::string_view stream, std::string text) {
    if (run.truncated) {
        return;
    }
    // Every line a job keeps passes here (a child's, a driver's note, the engine's own): a
    // helm argv's --set values, a URL's credentials and the configured secrets go no further.
    text = core::redact(text);
    auto now = clock.now();
    if (run.next_seq > settings.output_max_lines) {
        run.truncated = true;
        run.pending.push_back(core::OutputLine{
            .seq = run.next_seq++,
            .at = now,
            .stream = "aviary",
            .text = fmt::format("[output truncated: this job wrote more than {} lines; the rest "
                                "is dropped (jobs.output_max_lines)]",
                                settings.output_max_lines),
            .attempt = run.job.attempt,
            .step = run.step});
    } else {
        run.pending.push_back(core::OutputLine{.seq = run.next_seq++,
                                               .at = now,
                                               .stream = std::string(stream),
                                               .text = std::move(text),
                                               .attempt = run.job.attempt,
                                               .step = run.step});
    }
    if (run.flushing) {
        return;  // the flush in progress takes these too
    }
    if (run.pending.size() >= kOutputBatch) {
        run.linger.cancel();
        run.lingering = false;
        run.flushing = true;
        asio::co_spawn(io, flush(run), asio::detached);
        return;
    }
    if (!run.lingering) {
        // Lines gather for a moment and go in one write; followers see them that much later,
        // and a job that ends sooner takes them with its final write.
        run.lingering = true;
        run.linger.expires_after(kOutputLinger);
        run.linger.async_wait([this, id = run.job.id](const boost::system::error_code& ec) {
            auto it = running.find(id);
            if (ec || it == running.end()) {
                return;
            }
            Run& r = *it->second;
            r.lingering = false;
            if (!r.flushing && !r.pending.empty()) {
                r.flushing = true;
                asio::co_spawn(io, flush(r), asio::detached);
            }
        });
    }
}

asio::awaitable<void> Engine::Impl::flush(Run& run) {
    // run.flushing is set by the caller; lines that arrive while a batch is written go in the
    // next batch, so one job's output is written in order by one writer.
    std::optional<std::chrono::steady_clock::time_point> away_since;
    core::Millis backoff{100};
    while (!run.pending.empty()) {
        std::vector<core::OutputLine> batch;
        batch.swap(run.pending);
        auto append = [this, &run, &batch] { return store.append_job_output(run.job.id, batch); };
        if (auto done = co_await net::offload(*pool, append); !done) {
            auto now = std::chrono::steady_clock::now();
            away_since = away_since.value_or(now);
            if (done.error().code == core::ErrorCode::kUnavailable && !stopping &&
                now - *away_since < settings.heartbeat_timeout) {
                // The database is away: keep the lines, in order, and write them once it is back.
                std::move(run.pending.begin(), run.pending.end(), std::back_inserter(batch));
                run.pending.swap(batch);
                asio::steady_timer pause{io, backoff};
                co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
                backoff = std::min(backoff * 2, core::Millis{2000});
                continue;
            }
            log->error("writing output of job {} failed: {}", run.job.id, done.error().message);
        } else {
            away_since.reset();
            backoff = core::Millis{100};
        }
        notify(run.job.id);
    }
    run.flushing = false;
}

asio::awaitable<void> Engine::Impl::settle_output(Run& run) {
    run.linger.cancel();
    run.lingering = false;
    asio::steady_timer timer(io);
    while (run.flushing) {
        timer.expires_after(std::chrono::milliseconds{1});
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
}

asio::awaitable<void> Engine::Impl::flush_all(Run& run) {
    co_await settle_output(run);
    asio::steady_timer timer(io);
    while (run.flushing) {
        timer.expires_after(std::chrono::milliseconds{2});
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (!run.pending.empty()) {
        run.flushing = true;
        co_await flush(run);
    }
}

// ---------------------------------------------------------------------------------------------
// One attempt

namespace {

/// What a driver step that succeeded leaves running on the node: the tag it installed or
/// upgraded to, or nothing after an uninstall.
void note_deployment(Run& run, const drivers::OpRequest& request) {
    switch (request.op) {
        case drivers::Op::kInstall:
        case drivers::Op::kUpgrade:
            run.deployed_tag = request.image_tag;
            break;
        case drivers::Op::kUninstall:
            run.deployed_tag = std::string{};
            break;
        case drivers::Op::kWipeData:
        case drivers::Op::kRestart:
        case drivers::Op::kStatus:
        case drivers::Op::kMaintenance:
        case drivers::Op::kResume:
        case drivers::Op::kReload:
        case drivers::Op::kBackup:
        case drivers::Op::kRestore:
        case drivers::Op::kPauseProduction:
        case drivers::Op::kResumeProduction:
            break;
    }
}

/// lease: acquires the job's node for a person (a loan) or gives it back, through the fleet.
/// The task's permission rule decided who may run it, so the fleet is asked as an admin
/// acting for the requester.
asio::awaitable<core::Result<std::string>> run_lease_step(Engine::Impl& d,
                                                          Run& run,
                                                          const StepSpec& step,
                                                          StepContext& context) {
    auto owner = render_template(step.lease.owner, run.job);
    auto ttl_text = render_template(step.lease.ttl, run.job);
    auto reason = render_template(step.lease.reason, run.job);
    if (!owner) {
        co_return owner.error();
    }
    if (!ttl_text) {
        co_return ttl_text.error();
    }
    if (!reason) {
        co_return reason.error();
    }
    const fleet::Caller caller{.identity = run.job.requester, .admin = true};
    const std::string node = run.job.node;
    if (step.lease.acquire) {
        std::optional<core::Millis> ttl;
        if (!ttl_text->empty()) {
            auto parsed = core::parse_duration(*ttl_text);
            if (!parsed) {
                co_return step_error(
                    fmt::format("lease ttl \"{}\": {}", *ttl_text, parsed.error().message));
            }
            ttl = *parsed;
        }
        fleet::AcquireRequest request{
            .node = node,
            .owner = *owner,
            .reason =
                reason->empty() ? fmt::format("{} (job {})", run.job.action, run.job.id) : *reason,
            .ttl = ttl};
        auto acquire = [&d, &request, &caller] { return d.fleet.acquire(request, caller); };
        auto acquired = co_await net::offload(*d.pool, acquire);
        if (!acquired) {
            co_return acquired.error();
        }
        const auto& lease = acquired->leases.front();
        context.note(fmt::format("{} is leased to {} until {} (lease {})", node, lease.owner,
                                 core::format_time(lease.expires_at), lease.id));
        json::object result{{"lease_id", lease.id},
                            {"owner", lease.owner},
                            {"expires_at", core::format_time(lease.expires_at)}};
        co_return json::serialize(result);
    }
    auto find = [&d, &node] { return d.fleet.node(node); };
    auto current = co_await net::offload(*d.pool, find);
    if (!current) {
        co_return current.error();
    }
    if (!current->lease) {
        co_return step_error(fmt::format("{} is not on loan: nothing to give back", node));
    }
    std::string holder = current->lease->owner;
    if (!owner->empty() && *owner != holder) {
        co_return step_error(
            fmt::format("{} is on loan to {}, not {}: nothing given back", node, holder, *owner));
    }
    auto release = [&d, &node, &holder, &caller] { return d.fleet.release(node, holder, caller); };
    auto released = co_await net::offload(*d.pool, release);
    if (!released) {
        co_return released.error();
    }
    context.note(fmt::format("{} given back by {}", node, holder));
    co_return json::serialize(json::object{{"returned_by", holder}});
}

/// Runs one step; returns its result JSON ("" when it reports nothing).
asio::awaitable<core::Result<std::string>> run_step(Engine::Impl& d,
                                                    Run& run,
                                                    const StepSpec& step) {
    StepContext context(d, run, step);
    switch (step.kind) {
        case StepKind::kNoop:
            co_return std::string{};
        case StepKind::kRun: {
            proc::SpawnOptions options;
            for (const auto& arg : step.argv) {
                auto rendered = render_template(arg, run.job);
                if (!rendered) {
                    co_return rendered.error();
                }
                options.argv.push_back(std::move(*rendered));
            }
            for (const auto& [name, value] : step.env) {
                auto rendered = render_template(value, run.job);
                if (!rendered) {
                    co_return rendered.error();
                }
                options.env_add.emplace_back(name, std::move(*rendered));
            }
            options.env_add.emplace_back("AVIARY_JOB_ID", run.job.id);
            options.env_add.emplace_back("AVIARY_NODE", run.job.node);
            auto status = co_await context.run(std::move(options));
            if (!status) {
                co_return status.error();
            }
            if (!status->succeeded()) {
                co_return step_error(fmt::format("{} {}", step.argv.front(), describe(*status)));
            }
            co_return std::string{};
        }
        case StepKind::kDriver: {
            auto* driver = d.find_driver(run.node.driver);
            if (driver == nullptr) {
                co_return step_error(
                    fmt::format("node {} uses driver \"{}\", which this server does not have",
                                run.node.name, run.node.driver));
            }
            drivers::OpRequest request{.op = step.op, .node = run.node};
            if (step.op == drivers::Op::kInstall || step.op == drivers::Op::kUpgrade) {
                auto tag = render_template(step.image_tag, run.job);
                if (!tag) {
                    co_return tag.error();
                }
                request.image_tag = tag->empty() ? run.node.image_tag : *tag;
            }
            auto done = co_await driver->run(request, context);
            if (done) {
                note_deployment(run, request);
            }
            co_return done;
        }
        case StepKind::kHttp:
            co_return co_await run_http_step(d, run, step);
        case StepKind::kSsh: {
            if (!run.node.machine) {
                co_return step_error(fmt::format(
                    "{} is not a machine: an ssh step needs a machine's address", run.node.name));
            }
            if (run.node.driver == "none") {
                co_return step_error(fmt::format(
                    "machine {} has driver none: it is not reached over ssh", run.node.name));
            }
            std::vector<std::string> remote;
            for (const auto& arg : step.argv) {
                auto rendered = render_template(arg, run.job);
                if (!rendered) {
                    co_return rendered.error();
                }
                remote.push_back(std::move(*rendered));
            }
            proc::SpawnOptions options;
            options.argv = ssh_argv(d.settings.ssh, run.node, remote);
            options.env_add.emplace_back("AVIARY_JOB_ID", run.job.id);
            context.note(fmt::format("ssh {}@{}:{} {}", run.node.machine->ssh_user,
                                     run.node.machine->reach(), run.node.machine->ssh_port,
                                     options.argv.back()));
            auto status = co_await context.run(std::move(options));
            if (!status) {
                co_return status.error();
            }
            if (!status->succeeded()) {
                // 255 is the client's own failure (refused, timed out, host key changed); its
                // stderr, in the output above, says which.
                co_return step_error(
                    status->code == 255
                        ? fmt::format("ssh could not run the command on {} (exit 255: see the "
                                      "output for the client's reason)",
                                      run.node.machine->reach())
                        : fmt::format("{} on {} {}", step.argv.front(), run.node.machine->reach(),
                                      describe(*status)));
            }
            co_return std::string{};
        }
        case StepKind::kLease:
            co_return co_await run_lease_step(d, run, step, context);
        case StepKind::kReboot:
            co_return co_await run_reboot_step(d, run, step, context);
        case StepKind::kConnect:
            co_return co_await run_connect_step(run, step, context);
        case StepKind::kSwitchProducer:
            co_return co_await run_switch_producer_step(d, run, step, context);
        case StepKind::kWait: {
            auto* driver = d.find_driver(run.node.driver);
            if (driver == nullptr) {
                co_return step_error(
                    fmt::format("node {} uses driver \"{}\", which this server "
                                "does not have",
                                run.node.name, run.node.driver));
            }
            std::optional<std::int64_t> first_height;
            std::string last_seen = "no answer yet";
            auto condition = step.condition;
            while (run.stop == StopReason::kNone) {
                auto status = co_await driver->status(run.node);
                if (status && !status->has_height && condition != WaitCondition::kRunning) {
                    context.note(fmt::format(
                        "driver {} cannot see {}'s chain height; waiting for it to be running "
                        "instead of {}",
                        run.node.driver, run.node.name, to_string(condition)));
                    condition = WaitCondition::kRunning;
                }
                if (status) {
                    last_seen = status->has_height
                                    ? fmt::format("running={} height={} syncing={}",
                                                  status->running, status->height, status->syncing)
                                    : fmt::format("running={} version={}", status->running,
                                                  status->version);
                    bool met = false;
                    switch (condition) {
                        case WaitCondition::kRunning:
                            met = status->running;
                            break;
                        case WaitCondition::kSynced:
                            met = status->running && !status->syncing;
                            break;
                        case WaitCondition::kHeightAdvancing:
                            if (status->running && !first_height) {
                                first_height = status->height;
                            } else if (status->running && status->height > *first_height) {
                                met = true;
                            }
                            break;
                    }
                    if (met) {
                        context.note(fmt::format("{} is {}: {}", run.node.name,
                                                 to_string(condition), last_seen));
                        co_return status_json(*status);
                    }
                } else {
                    last_seen = status.error().message;
                }
                co_await nap(run, step.interval);
            }
            co_return step_error(fmt::format("gave up waiting for {} to be {} (last seen: {})",
                                             run.node.name, to_string(condition), last_seen));
        }
    }
    co_return std::string{};
}

}  // namespace

asio::awaitable<void> Engine::Impl::run_job(Run& run) {
    auto started = std::chrono::steady_clock::now();
    auto attempt_deadline = started;
    core::JobState outcome = core::JobState::kSucceeded;
    std::string error;
    std::string result = "{}";
    const std::string id = run.job.id;

    run.action = find_action(run.job.action);
    core::Result<core::Node> node = core::Error{core::ErrorCode::kInternal, "not read yet"};
    // The claim returned the job as it started; a cancel since then reached this Run (see
    // Engine::cancel). The store is read again only for what the claim does not carry: the
    // node's spec (driver and wait steps use it) and, after an earlier attempt, its output.
    bool needs_node =
        run.action != nullptr &&
        std::any_of(run.action->steps.begin(), run.action->steps.end(), [](const StepSpec& step) {
            return step.kind == StepKind::kDriver || step.kind == StepKind::kWait ||
                   step.kind == StepKind::kSsh || step.kind == StepKind::kReboot ||
                   step.kind == StepKind::kSwitchProducer;
        });
    auto prepare = [this, &run, &node]() -> core::Result<std::pair<core::Job, std::int64_t>> {
        node = fleet.node(run.job.node);
        auto job = store.job(run.job.id);
        if (!job) {
            return job.error();
        }
        if (run.job.attempt <= 1) {
            return std::make_pair(std::move(*job), std::int64_t{0});  // no output yet
        }
        auto last = store.last_output_seq(run.job.id);
        if (!last) {
            return last.error();
        }
        return std::make_pair(std::move(*job), *last);
    };
    core::Result<std::pair<core::Job, std::int64_t>> prepared =
        std::make_pair(run.job, std::int64_t{0});
    if (needs_node || run.job.attempt > 1) {
        prepared = co_await net::offload(*pool, prepare);
    } else {
        node = core::Node{.spec = core::NodeSpec{.name = run.job.node}};
    }
    if (prepared) {
        run.next_seq = prepared->second + 1;
        // An earlier attempt already wrote the truncation note: the cap is per job, with one note.
        run.truncated = prepared->second > settings.output_max_lines;
        if (prepared->first.cancel_requested) {
            request_stop(run, StopReason::kCancel);  // cancelled between claim and start
        }
    }
    if (run.action == nullptr) {
        outcome = core::JobState::kFailed;
        error =
            fmt::format("action \"{}\" no longer exists in this server's config", run.job.action);
    } else if (!node) {
        outcome = core::JobState::kFailed;
        error = node.error().message;
    } else {
        run.node = node->spec;
        attempt_deadline = started + run.action->timeout;
        auto steps = run.action->steps.size();
        std::string which =
            run.job.attempt <= run.job.max_attempts
                ? fmt::format("attempt {} of {}", run.job.attempt, run.job.max_attempts)
                : fmt::format("attempt {} (run again after an interruption)", run.job.attempt);
        add_line(run, "aviary",
                 fmt::format("{}: {} on {} ({} step{})", which, run.job.action, run.job.node, steps,
                             steps == 1 ? "" : "s"));
    }

    bool step_cut = false;  // a step failed because serve is stopping
    int completed = 0;      // steps that succeeded
    for (std::size_t i = 0; run.action != nullptr && node && i < run.action->steps.size(); ++i) {
        const auto& step = run.action->steps[i];
        if (run.stop != StopReason::kNone) {
            break;
        }
        run.step = static_cast<int>(i) + 1;
        run.job.step = run.step;
        run.job.step_name = step.name;
        if (step.kind != StepKind::kNoop) {
            // Progress, recorded without waiting for its commit: the step starts now. The store
            // commits this before anything the step writes later (one writer, in order); a
            // child's process group is recorded, awaited, by Context::run.
            store::JobStepUpdate update{.id = id,
                                        .attempt = run.job.attempt,
                                        .step = run.step,
                                        .step_name = step.name,
                                        .now = clock.now()};
            record_step(std::move(update));
        }
        add_line(run, "aviary",
                 fmt::format("step {}/{}: {}", run.step, run.action->steps.size(), step.name));
        auto step_deadline = attempt_deadline;
        if (step.timeout > core::Millis{0}) {
            step_deadline =
                std::min(step_deadline, std::chrono::steady_clock::now() + step.timeout);
        }
        run.deadline.expires_at(step_deadline);
        int this_step = run.step;
        run.deadline.async_wait([this, id, this_step](const boost::system::error_code& ec) {
            if (ec) {
                return;
            }
            auto it = running.find(id);
            if (it != running.end() && it->second->step == this_step) {
                request_stop(*it->second, StopReason::kTimeout);
            }
        });
        auto step_result = co_await run_step(*this, run, step);
        run.deadline.cancel();
        if (run.stop == StopReason::kTimeout) {
            outcome = core::JobState::kTimedOut;
            error = fmt::format("step {} ({}) timed out", run.step, step.name);
            break;
        }
        if (run.stop == StopReason::kCancel) {
            outcome = core::JobState::kCancelled;
            error = fmt::format("cancelled during step {} ({})", run.step, step.name);
            break;
        }
        if (run.stop == StopReason::kShutdown && !step_result) {
            step_cut = true;
            break;
        }
        if (run.stop == StopReason::kLost) {
            break;
        }
        if (!step_result) {
            outcome = core::JobState::kFailed;
            error = fmt::format("step {} ({}) failed: {}", run.step, step.name,
                                step_result.error().message);
            break;
        }
        if (!step_result->empty()) {
            result = *step_result;
        }
        ++completed;
    }
    if (run.stop == StopReason::kLost) {
        // Someone else settled this attempt (a rescue): it is not ours to finish.
        co_await flush_all(run);
        end_run(id);
        co_return;
    }
    // A cancel that arrived between steps stops the rest; one that arrived after the last step
    // came too late: the work is done, and the job says so.
    bool all_done =
        run.action != nullptr && completed == static_cast<int>(run.action->steps.size());
    if (outcome == core::JobState::kSucceeded && run.stop == StopReason::kCancel && !all_done) {
        outcome = core::JobState::kCancelled;
        error = completed == 0 ? std::string("cancelled before its first step")
                               : fmt::format("cancelled after step {} of {}", completed,
                                             run.action->steps.size());
    }
    // Cut: a step ended by the shutdown (even the last one) or steps never started. Only an
    // attempt whose every step completed may finish as succeeded while serve stops.
    bool shutdown_cut = run.stop == StopReason::kShutdown &&
                        outcome == core::JobState::kSucceeded && run.action != nullptr &&
                        (step_cut || run.step < static_cast<int>(run.action->steps.size()));
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (shutdown_cut) {
        add_line(run, "aviary", "serve is stopping: this attempt is left for the next start");
        co_await flush_all(run);
        end_run(id);
        co_return;
    }

    store::JobFinish finish{.id = id,
                            .attempt = run.job.attempt,
                            .state = outcome,
                            .result = result,
                            .error = core::redact(error),
                            .actor = "aviary",
                            .now = clock.now()};
    if (outcome == core::JobState::kSucceeded) {
        finish.deployed_tag = run.deployed_tag;
    }
    bool retryable = outcome == core::JobState::kFailed || outcome == core::JobState::kTimedOut;
    if (retryable && run.action != nullptr && run.job.attempt < run.job.max_attempts &&
        (!run.action->destructive || run.action->retry_destructive)) {
        auto delay = retry_delay(*run.action, run.job.attempt);
        finish.state = core::JobState::kQueued;
        finish.retry_at = finish.now + delay;
        add_line(
            run, "aviary",
            fmt::format("{}; retrying in {} (attempt {} of {})", error,
                        core::format_duration(delay), run.job.attempt + 1, run.job.max_attempts));
    } else if (outcome == core::JobState::kSucceeded) {
        add_line(run, "aviary", fmt::format("succeeded in {:.3f}s", seconds));
    } else {
        add_line(run, "aviary", fmt::format("{}: {}", core::to_string(outcome), error));
    }
    // The last lines go with the final write, and this worker's next job is claimed in the
    // same commit (its Run still holds the slot, so the dispatcher cannot claim it too).
    co_await settle_output(run);
    finish.output.swap(run.pending);
    std::vector<core::Job> next;
    core::Result<core::Job> done = core::Error{core::ErrorCode::kInternal, "not finished"};
    if (stopping) {
        auto write = [this, &finish] { return store.finish_job(finish); };
        done = co_await net::offload(*pool, write);
    } else {
        // A database that is away (restarting, unreachable) must not lose the outcome: the
        // write is tried again, the Run still beating, until it lands, shutdown, or another
        // instance rescued the job meanwhile (the attempt guard then refuses it: not
        // kUnavailable). Giving up sooner would throw away an outcome that is known.
        core::Millis backoff{100};
        while (true) {
            auto both = co_await finish_and_claim(finish);
            if (both) {
                next = std::move(both->claimed);
                done = std::move(both->job);
                break;
            }
            done = both.error();
            if (both.error().code != core::ErrorCode::kUnavailable || stopping) {
                break;
            }
            log->warn("job {} outcome not written yet, retrying in {}: {}", id,
                      core::format_duration(backoff), both.error().message);
            asio::steady_timer pause{io, backoff};
            co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
            backoff = std::min(backoff * 2, core::Millis{2000});
        }
    }
    if (!done) {
        log->warn("job {} could not be finished as {}: {}", id, core::to_string(finish.state),
                  done.error().message);
    } else {
        if (duration_seconds != nullptr) {
            duration_seconds->with({run.job.action}).observe(seconds);
        }
        if (core::is_terminal(done->state) && finished_total != nullptr) {
            finished_total->with({run.job.action, std::string(core::to_string(done->state))}).inc();
        }
        if (finish.retry_at) {
            wake_at(*finish.retry_at);
        }
        log->info("job {} ({} on {}) {}{}", id, run.job.action, run.job.node,
                  core::to_string(done->state), finish.error.empty() ? "" : ": " + finish.error);
        if (on_transition) {
            on_transition(*done);
        }
    }
    notify(id);
    if (next.empty()) {
        end_run(id);
        wake();
    } else {
        running.erase(id);
        start_run(std::move(next.front()));  // this run's slot passes to its successor
    }
}

}  // namespace aviary::jobs
