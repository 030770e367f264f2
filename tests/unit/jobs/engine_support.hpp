#pragma once
// Shared by the engine's unit tests: a fake driver whose ops the test can watch and hold, the
// actions the tests run, and a fixture with an engine on real SQLite and the system clock.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "jobs/jobs.hpp"
#include "metrics/metrics.hpp"
#include "support/process_groups.hpp"

namespace aviary::jobs::test {

using namespace std::chrono_literals;
namespace asio = net::asio;

/// What the fake driver saw and what it reports; owned by the test, outlives the engine.
struct FakeState {
    std::mutex mu;
    std::vector<std::string> ops;      ///< "upgrade lotus-0 TAG", in the order they started
    std::vector<std::string> entered;  ///< upgrade's image tags, in the order they started
    std::map<std::string, drivers::NodeStatus> status;  ///< by node
    std::map<std::string, int> active_on_node;
    std::atomic<int> active{0};      ///< ops running now
    std::atomic<int> max_active{0};  ///< the most that ever ran at once
    std::atomic<int> overlaps{0};    ///< an op started while another ran on its node
    std::atomic<bool> gate_open{false};
    std::atomic<int> held{0};  ///< restart ops waiting at the gate now
    std::atomic<bool> started{false};
    std::atomic<bool> stopped{false};

    void bump_height(const std::string& node) {
        std::lock_guard lock{mu};
        ++status[node].height;
    }
    std::vector<std::string> entered_now() {
        std::lock_guard lock{mu};
        return entered;
    }
};

/// A driver that runs nothing real (except `uninstall`, which runs a child through the
/// context): upgrade records its tag and yields once; restart waits at the test's gate; wipe-data
/// fails; status answers from FakeState.
class FakeDriver final : public drivers::Driver {
public:
    explicit FakeDriver(FakeState& state) : state_(state) {}

    std::string_view name() const override { return "fake"; }

    asio::awaitable<void> start(asio::any_io_executor /*executor*/,
                                std::vector<core::NodeSpec> nodes) override {
        std::lock_guard lock{state_.mu};
        for (const auto& node : nodes) {
            auto& status = state_.status[node.name];
            status.installed = true;
            status.running = true;
            status.version = node.image_tag;
        }
        state_.started = true;
        co_return;
    }

    asio::awaitable<core::Result<std::string>> run(const drivers::OpRequest& request,
                                                   drivers::Context& context) override {
        const std::string node = request.node.name;
        enter(request);
        context.note("fake " + std::string(drivers::to_string(request.op)) + " on " + node);
        core::Result<std::string> out = std::string{R"({"fake":true})"};
        asio::steady_timer timer{co_await asio::this_coro::executor};
        switch (request.op) {
            case drivers::Op::kUpgrade:
            case drivers::Op::kInstall:
                // Yield to the loop once, so an overlapping op would be caught in the middle.
                timer.expires_after(1ms);
                co_await timer.async_wait(asio::use_awaitable);
                {
                    std::lock_guard lock{state_.mu};
                    state_.status[node].version = request.image_tag;
                }
                break;
            case drivers::Op::kRestart:
                ++state_.held;
                while (!state_.gate_open && !context.stopping()) {
                    timer.expires_after(5ms);
                    co_await timer.async_wait(asio::use_awaitable);
                }
                --state_.held;
                if (context.stopping()) {
                    out = core::Error{core::ErrorCode::kUnavailable, "cancelled"};
                }
                break;
            case drivers::Op::kWipeData:
                out = core::Error{core::ErrorCode::kInternal,
                                  "wipe of " + node + " failed: disk on fire"};
                break;
            case drivers::Op::kUninstall: {
                auto status = co_await context.run(sleep_options());
                if (!status) {
                    out = status.error();
                } else if (!status->succeeded()) {
                    out = core::Error{core::ErrorCode::kInternal, "uninstall was interrupted"};
                }
                break;
            }
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
        leave(node);
        co_return out;
    }

    asio::awaitable<core::Result<drivers::NodeStatus>> status(const core::NodeSpec& node) override {
        std::lock_guard lock{state_.mu};
        co_return state_.status[node.name];
    }

    asio::awaitable<void> stop() override {
        state_.stopped = true;
        co_return;
    }

private:
    // Built outside the coroutine: GCC 12 mishandles braced lists of literals inside one.
    static proc::SpawnOptions sleep_options() {
        proc::SpawnOptions options;
        options.argv = {"sleep", "30"};
        return options;
    }
    void enter(const drivers::OpRequest& request) {
        std::lock_guard lock{state_.mu};
        state_.ops.push_back(std::string(drivers::to_string(request.op)) + " " + request.node.name +
                             " " + request.image_tag);
        if (request.op == drivers::Op::kUpgrade) {
            state_.entered.push_back(request.image_tag);
        }
        if (state_.active_on_node[request.node.name]++ > 0) {
            ++state_.overlaps;
        }
        int now = ++state_.active;
        int seen = state_.max_active;
        while (now > seen && !state_.max_active.compare_exchange_weak(seen, now)) {
        }
    }
    void leave(const std::string& node) {
        std::lock_guard lock{state_.mu};
        --state_.active_on_node[node];
        --state_.active;
    }

    FakeState& state_;
};

inline StepSpec run_step(std::vector<std::string> argv) {
    return StepSpec{.name = "run", .kind = StepKind::kRun, .argv = std::move(argv)};
}

inline StepSpec driver_step(drivers::Op op, std::string image_tag = "{{params.tag}}") {
    return StepSpec{.name = std::string(drivers::to_string(op)),
                    .kind = StepKind::kDriver,
                    .op = op,
                    .image_tag = std::move(image_tag)};
}

/// An action with an optional integer param `n`, so tests can submit distinct jobs.
inline ActionSpec action_of(std::string name, std::vector<StepSpec> steps) {
    ActionSpec action;
    action.name = std::move(name);
    action.params = {ParamSpec{.name = "n", .type = ParamType::kInteger, .required = false}};
    action.steps = std::move(steps);
    action.timeout = 30s;
    action.retry_backoff = 10ms;
    action.retry_backoff_max = 20ms;
    return action;
}

/// Prints the pid of a background grandchild in the step's group, then sleeps as the leader.
inline std::vector<std::string> group_with_grandchild() {
    return {"sh", "-c", "sleep 30 & echo $!; exec sleep 30"};
}

/// Every action the engine tests run.
inline std::vector<ActionSpec> test_actions() {
    std::vector<ActionSpec> actions;
    actions.push_back(action_of("noop", {StepSpec{.name = "nothing", .kind = StepKind::kNoop}}));
    auto echo = action_of("echo", {run_step({"echo", "{{params.text}}"})});
    echo.params.push_back(ParamSpec{.name = "text", .type = ParamType::kString});
    actions.push_back(echo);
    actions.push_back(action_of(
        "fail", {StepSpec{.name = "first", .kind = StepKind::kNoop},
                 StepSpec{.name = "falsify", .kind = StepKind::kRun, .argv = {"false"}}}));
    auto flaky = action_of("flaky", {run_step({"false"})});
    flaky.max_attempts = 3;
    actions.push_back(flaky);
    auto wipe = action_of("wipe", {driver_step(drivers::Op::kWipeData)});
    wipe.max_attempts = 3;
    wipe.destructive = true;
    actions.push_back(wipe);
    auto wipe_retried = wipe;
    wipe_retried.name = "wipe-retried";
    wipe_retried.retry_destructive = true;
    actions.push_back(wipe_retried);
    auto hang = action_of("hang", {run_step(group_with_grandchild())});
    actions.push_back(hang);
    auto hang_briefly = hang;
    hang_briefly.name = "hang-briefly";
    hang_briefly.timeout = 300ms;
    actions.push_back(hang_briefly);
    actions.push_back(action_of("count", {run_step({"seq", "1", "100"})}));
    actions.push_back(action_of("upgrade", {driver_step(drivers::Op::kUpgrade, "{{job.id}}"),
                                            StepSpec{.name = "after", .kind = StepKind::kNoop}}));
    actions.push_back(action_of("hold", {driver_step(drivers::Op::kRestart)}));
    auto hold_shared = action_of("hold-shared", {driver_step(drivers::Op::kRestart)});
    hold_shared.exclusive = false;
    actions.push_back(hold_shared);
    auto hold_capped = hold_shared;
    hold_capped.name = "hold-capped";
    hold_capped.concurrency = 1;
    actions.push_back(hold_capped);
    auto slow_queue = action_of("later", {StepSpec{.name = "nothing", .kind = StepKind::kNoop}});
    slow_queue.queue = "slow";
    actions.push_back(slow_queue);
    actions.push_back(action_of("uninstall", {driver_step(drivers::Op::kUninstall)}));
    actions.push_back(
        action_of("wait-height", {StepSpec{.name = "wait",
                                           .kind = StepKind::kWait,
                                           .condition = WaitCondition::kHeightAdvancing,
                                           .interval = 10ms}}));
    auto safe = action_of("safe", {StepSpec{.name = "nothing", .kind = StepKind::kNoop}});
    safe.rerun_safe = true;
    actions.push_back(safe);
    return actions;
}

inline Settings test_settings() {
    Settings settings;
    settings.workers = 2;
    settings.kill_grace = 200ms;
    settings.heartbeat = 100ms;
    settings.actions = test_actions();
    return settings;
}

/// lotus-0..2 run by the fake driver.
inline fleet::Settings fleet_settings() {
    fleet::Settings settings;
    for (std::string name : {"lotus-0", "lotus-1", "lotus-2"}) {
        settings.nodes.push_back(core::NodeSpec{
            .name = name, .driver = "fake", .image_tag = "v1", .labels = {{"chain", "lotus"}}});
    }
    return settings;
}

/// Polls `done` every 5 ms until it holds or `limit` passes; returns whether it held.
inline bool eventually(const std::function<bool()>& done, core::Millis limit = 10s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

/// Reaps `pid` (our child, or an orphan we adopted as subreaper) once it has ended, within
/// 10 s. Returns its wait status, or -1 when it did not end.
inline int reap(pid_t pid) {
    int status = -1;
    bool ended = eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; });
    return ended ? status : -1;
}

/// True once no live process of group `pgid` is left (see test::group_ends).
inline bool group_gone(pid_t pgid) {
    return aviary::test::group_ends(pgid);
}

class EngineTest : public ::testing::Test {
protected:
    void SetUp() override {
        // Orphans of the engine's children (a step's background grandchild) come to us, so the
        // test reaps them itself instead of depending on what PID 1 does in this container.
        ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        auto opened = store::open(store_settings());
        ASSERT_TRUE(opened) << opened.error().message;
        store_ = std::move(*opened);
        fleet_ = std::make_unique<fleet::Fleet>(fleet_settings(), *store_, clock_);
        auto reconciled = fleet_->reconcile();
        ASSERT_TRUE(reconciled) << reconciled.error().message;
    }

    void TearDown() override {
        if (scheduler_ != nullptr) {
            scheduler_->stop();  // its tasks call the engine: stopped first
        }
        if (engine_ != nullptr) {
            engine_->stop();
            engine_.reset();
        }
        scheduler_.reset();
        fleet_.reset();
        if (store_ != nullptr) {
            store_->close();
        }
    }

    virtual store::Settings store_settings() { return store::Settings{.path = ":memory:"}; }

    /// Builds and starts the engine; returns what start() rescued.
    RescueReport start(Settings settings = test_settings()) {
        std::vector<std::unique_ptr<drivers::Driver>> drivers;
        drivers.push_back(std::make_unique<FakeDriver>(fake_));
        engine_ = std::make_unique<Engine>(std::move(settings), *store_, *fleet_,
                                           std::move(drivers), clock_, &metrics_);
        scheduler_ = std::make_unique<core::Scheduler>(clock_);
        engine_->schedule(*scheduler_);
        auto started = engine_->start();
        EXPECT_TRUE(started) << started.error().message;
        scheduler_->start();
        return started ? *started : RescueReport{};
    }

    /// Engine::submit run to its answer on an io_context of the test's own thread.
    core::Result<Submitted> submit_now(SubmitRequest request, fleet::Caller caller) {
        asio::io_context io;
        std::optional<core::Result<Submitted>> out;
        auto body = [](Engine& engine, SubmitRequest request, fleet::Caller caller,
                       std::optional<core::Result<Submitted>>& out) -> asio::awaitable<void> {
            out.emplace(co_await engine.submit(std::move(request), std::move(caller)));
        };
        asio::co_spawn(io, body(*engine_, std::move(request), std::move(caller), out),
                       [](std::exception_ptr error) {
                           if (error) {
                               std::rethrow_exception(error);
                           }
                       });
        io.run();
        if (!out) {
            return core::Error{core::ErrorCode::kInternal, "submit did not answer"};
        }
        return std::move(*out);
    }

    /// Submits and expects success; returns the job.
    core::Job submit(std::string action,
                     core::Params params = {},
                     std::string node = "lotus-0",
                     std::string owner = "") {
        auto submitted = submit_now(SubmitRequest{.action = std::move(action),
                                                  .node = std::move(node),
                                                  .params = std::move(params),
                                                  .owner = std::move(owner)},
                                    admin_);
        EXPECT_TRUE(submitted) << submitted.error().message;
        return submitted ? submitted->job : core::Job{};
    }

    core::Job job(const std::string& id) {
        auto found = engine_->job(id);
        EXPECT_TRUE(found) << id << ": " << found.error().message;
        return found ? *found : core::Job{};
    }

    /// Waits until `done(job)` holds; returns the job as last seen.
    core::Job wait_until(const std::string& id,
                         const std::function<bool(const core::Job&)>& done,
                         core::Millis limit = 10s) {
        core::Job seen;
        bool held = eventually(
            [&] {
                auto found = engine_->job(id);
                if (!found) {
                    return false;
                }
                seen = *found;
                return done(seen);
            },
            limit);
        EXPECT_TRUE(held) << "job " << id << " stuck in " << core::to_string(seen.state)
                          << " (attempt " << seen.attempt << ", error: " << seen.error << ")";
        return seen;
    }

    core::Job wait_for_state(const std::string& id, core::JobState state) {
        return wait_until(id, [state](const core::Job& job) { return job.state == state; });
    }

    core::Job wait_finished(const std::string& id) {
        return wait_until(id, [](const core::Job& job) { return core::is_terminal(job.state); });
    }

    /// Waits until the job's step runs a child; returns its process group.
    pid_t wait_for_group(const std::string& id) {
        auto seen = wait_until(id, [](const core::Job& job) { return job.pgid > 0; });
        return static_cast<pid_t>(seen.pgid);
    }

    std::vector<core::OutputLine> output(const std::string& id) {
        auto page = engine_->output(store::OutputQuery{.job_id = id, .limit = 10000});
        EXPECT_TRUE(page) << page.error().message;
        return page ? page->lines : std::vector<core::OutputLine>{};
    }

    std::vector<std::string> stdout_of(const std::string& id) {
        std::vector<std::string> lines;
        for (const auto& line : output(id)) {
            if (line.stream == "stdout") {
                lines.push_back(line.text);
            }
        }
        return lines;
    }

    /// Event kinds of the node's trail, oldest first.
    std::vector<std::string> event_kinds(const std::string& node = "lotus-0") {
        std::vector<std::string> kinds;
        auto events = store_->events(store::EventQuery{.node = node, .limit = 1000});
        EXPECT_TRUE(events) << events.error().message;
        if (events) {
            for (auto it = events->rbegin(); it != events->rend(); ++it) {
                kinds.push_back(it->kind);
            }
        }
        return kinds;
    }

    void open_gate() { fake_.gate_open = true; }

    core::SystemClock clock_;
    std::unique_ptr<core::Scheduler> scheduler_;
    metrics::Registry metrics_;
    FakeState fake_;  // outlives the engine, which owns the driver
    std::unique_ptr<store::Store> store_;
    std::unique_ptr<fleet::Fleet> fleet_;
    std::unique_ptr<Engine> engine_;
    fleet::Caller admin_{};
};

}  // namespace aviary::jobs::test
