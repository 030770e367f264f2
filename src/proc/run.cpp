#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <memory>
#include <utility>

#include "proc/proc.hpp"

namespace aviary::proc {

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

/// How long a finished child's last output may take to arrive (a member that left the group
/// but kept the pipe open must not hold the caller).
constexpr core::Millis kPumpDrain{2000};

/// What the pump shares with run(), which may return before the pump ends.
struct PumpState {
    PumpState(const asio::any_io_executor& executor, LineCallback on_line_in)
        : done_signal(executor, asio::steady_timer::time_point::max()),
          on_line(std::move(on_line_in)) {}

    asio::steady_timer done_signal;  // cancelled when the pump ends
    LineCallback on_line;
    bool open = true;  // false once run() returned: later lines are dropped
    bool done = false;
};

asio::awaitable<void> pump(std::shared_ptr<Process> process,
                           std::shared_ptr<PumpState> state,
                           std::size_t max_stdout_line) {
    LineCallback forward = [state](const Line& line) {
        if (state->open && state->on_line) {
            state->on_line(line);
        }
    };
    co_await process->pump(std::move(forward), max_stdout_line);
    state->done = true;
    state->done_signal.cancel();
}

}  // namespace

asio::awaitable<core::Result<RunOutcome>> run(asio::any_io_executor executor,
                                              SpawnOptions options,
                                              RunSpec spec) {
    const std::string program = options.argv.empty() ? "" : options.argv.front();
    auto spawned = spawn(executor, std::move(options));
    if (!spawned) {
        co_return spawned.error();
    }
    // Shared with the pump, which may outlive this call by a little (kPumpDrain).
    auto process = std::make_shared<Process>(std::move(*spawned));
    if (spec.on_started) {
        auto started = co_await spec.on_started(*process);
        if (!started) {
            co_await process->terminate(spec.kill_grace);
            co_return started.error();
        }
    }
    auto pumped = std::make_shared<PumpState>(executor, std::move(spec.on_line));
    asio::co_spawn(executor, pump(process, pumped, spec.max_stdout_line), asio::detached);

    auto stopping = [&spec] { return spec.stopping && spec.stopping(); };
    asio::steady_timer limit{executor, asio::steady_timer::time_point::max()};
    if (spec.timeout > core::Millis{0}) {
        limit.expires_after(spec.timeout);
    }
    RunOutcome outcome;
    if (!stopping()) {
        using namespace asio::experimental::awaitable_operators;
        if (spec.stop_signal != nullptr) {
            auto which = co_await (process->ended() || spec.stop_signal->async_wait(kUseTuple) ||
                                   limit.async_wait(kUseTuple));
            outcome.timed_out = which.index() == 2 && !stopping();
        } else {
            auto which = co_await (process->ended() || limit.async_wait(kUseTuple));
            outcome.timed_out = which.index() == 1;
        }
    }
    outcome.stopped = !outcome.timed_out && stopping();
    if (outcome.timed_out || outcome.stopped) {
        if (spec.note && outcome.timed_out) {
            spec.note(fmt::format(
                "ending process group {}: {} ran longer than {} (SIGTERM, then SIGKILL after {})",
                process->pgid(), program, core::format_duration(spec.timeout),
                core::format_duration(spec.kill_grace)));
        } else if (spec.note) {
            spec.note(fmt::format("ending process group {} (SIGTERM, then SIGKILL after {})",
                                  process->pgid(), core::format_duration(spec.kill_grace)));
        }
        outcome.status = co_await process->terminate(spec.kill_grace);
    } else {
        // The leader is done: members it left behind go with it (the group is the leader's).
        process->signal_group(SIGKILL);
        outcome.status = co_await process->wait();
    }
    if (!pumped->done) {
        pumped->done_signal.expires_after(kPumpDrain);
        co_await pumped->done_signal.async_wait(kUseTuple);
    }
    pumped->open = false;
    co_return outcome;
}

}  // namespace aviary::proc
