#include <signal.h>
#include <sys/wait.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <string_view>

#include "proc/process_state.hpp"

namespace aviary::proc {
namespace {

using asio::experimental::awaitable_operators::operator||;
using asio::experimental::awaitable_operators::operator&&;

// Splits one stream into lines, capping each at kMaxLineBytes.
class LineSplitter {
public:
    LineSplitter(Stream stream, const LineCallback& on_line, std::size_t max_line)
        : stream_(stream), on_line_(on_line), max_line_(max_line) {}

    void feed(std::string_view data) {
        while (!data.empty()) {
            const auto newline = data.find('\n');
            append(data.substr(0, newline));
            if (newline == std::string_view::npos) {
                return;
            }
            emit();
            data.remove_prefix(newline + 1);
        }
    }

    // End of file: a last line without '\n' still counts.
    void finish() {
        if (!pending_.empty() || truncated_) {
            emit();
        }
    }

private:
    void append(std::string_view chunk) {
        if (truncated_) {
            return;
        }
        const auto room = max_line_ - pending_.size();
        if (chunk.size() > room) {
            pending_.append(chunk.substr(0, room));
            truncated_ = true;
            return;
        }
        pending_.append(chunk);
    }

    void emit() {
        // A line ended "\r\n" (ssh's own messages, Windows tools) keeps no '\r': it would move
        // a terminal's cursor in `aviary job logs` and ride along in every JSON answer.
        if (!truncated_ && !pending_.empty() && pending_.back() == '\r') {
            pending_.pop_back();
        }
        on_line_(Line{.stream = stream_, .text = std::move(pending_), .truncated = truncated_});
        pending_.clear();
        truncated_ = false;
    }

    Stream stream_;
    const LineCallback& on_line_;
    std::size_t max_line_;
    std::string pending_;
    bool truncated_ = false;
};

asio::awaitable<void> read_lines(asio::posix::stream_descriptor& pipe,
                                 Stream stream,
                                 const LineCallback& on_line,
                                 std::size_t max_line,
                                 const PumpHooks& hooks) {
    LineSplitter splitter{stream, on_line, max_line};
    std::array<char, std::size_t{16} * 1024> buffer{};
    while (pipe.is_open()) {
        auto [ec, n] = co_await pipe.async_read_some(asio::buffer(buffer),
                                                     asio::as_tuple(asio::use_awaitable));
        if (n > 0) {
            const std::string_view data{buffer.data(), n};
            if (hooks.on_bytes) {
                hooks.on_bytes(stream, data);
            }
            splitter.feed(data);
            if (hooks.after_read) {
                co_await hooks
                    .after_read();  // the consumer's back-pressure: read no more until then
            }
        }
        if (ec == asio::error::operation_aborted) {
            co_return;  // cancelled: the pipe stays open for a later pump()
        }
        if (ec) {
            break;  // end of file (or a broken pipe: nothing more will come either way)
        }
    }
    splitter.finish();
    boost::system::error_code ignored;
    pipe.close(ignored);
}

}  // namespace

Process::State::State(
    asio::any_io_executor executor, pid_t child, int pid_fd, int out_fd, int err_fd)
    : pid(child), pidfd(executor, pid_fd), out(executor, out_fd), err(executor, err_fd) {}

Process::State::~State() {
    if (status) {
        return;
    }
    // The leader is not reaped yet, so the group id is still ours to signal.
    ::killpg(pid, SIGKILL);
    int raw = 0;
    while (::waitpid(pid, &raw, 0) < 0 && errno == EINTR) {
    }
}

void Process::State::reap_if_exited() {
    if (status) {
        return;
    }
    siginfo_t info{};
    int rc = 0;
    do {
        rc = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        // ECHILD: reaped behind our back (SIGCHLD set to SIG_IGN). The status is lost.
        status = ExitStatus{.code = -1};
        return;
    }
    if (info.si_pid != pid) {
        return;  // still running
    }
    if (info.si_code == CLD_EXITED) {
        status = ExitStatus{.code = info.si_status};
    } else {
        status = ExitStatus{.code = -1, .signal = info.si_status};
    }
}

Process::Process(std::unique_ptr<State> state) : state_(std::move(state)) {}
Process::Process(Process&&) noexcept = default;
Process& Process::operator=(Process&&) noexcept = default;
Process::~Process() = default;

pid_t Process::pid() const {
    return state_->pid;
}

pid_t Process::pgid() const {
    return state_->pid;
}

asio::awaitable<void> Process::pump(LineCallback on_line,
                                    std::size_t max_stdout_line,
                                    PumpHooks hooks) {
    State* state = state_.get();
    co_await (read_lines(state->out, Stream::kStdout, on_line, max_stdout_line, hooks) &&
              read_lines(state->err, Stream::kStderr, on_line, kMaxLineBytes, hooks));
}

asio::awaitable<ExitStatus> Process::wait() {
    State* state = state_.get();
    state->reap_if_exited();
    while (!state->status) {
        // The pidfd turns readable when the leader ends; the zombie stays until reaped.
        co_await state->pidfd.async_wait(asio::posix::descriptor_base::wait_read,
                                         asio::use_awaitable);
        state->reap_if_exited();
    }
    co_return *state->status;
}

asio::awaitable<void> Process::ended() {
    State* state = state_.get();
    while (!state->status) {
        siginfo_t info{};
        int rc = 0;
        do {
            rc = ::waitid(P_PID, static_cast<id_t>(state->pid), &info, WEXITED | WNOHANG | WNOWAIT);
        } while (rc < 0 && errno == EINTR);
        if (rc < 0 || info.si_pid == state->pid) {
            co_return;  // ended (or reaped behind our back: nothing left to wait for)
        }
        co_await state->pidfd.async_wait(asio::posix::descriptor_base::wait_read,
                                         asio::use_awaitable);
    }
}

void Process::signal_group(int sig) {
    if (!state_ || state_->status) {
        return;
    }
    ::killpg(state_->pid, sig);
}

asio::awaitable<ExitStatus> Process::terminate(core::Millis grace) {
    State* state = state_.get();
    if (!state->status) {
        ::killpg(state->pid, SIGTERM);
        asio::steady_timer deadline{state->pidfd.get_executor(), grace};
        // Wait for the leader to end without reaping it: an unreaped leader keeps the group id
        // from being reused, so the SIGKILL below cannot reach a stranger.
        auto ended =
            state->pidfd.async_wait(asio::posix::descriptor_base::wait_read, asio::use_awaitable);
        co_await (std::move(ended) || deadline.async_wait(asio::use_awaitable));
        if (!state->status) {
            ::killpg(state->pid, SIGKILL);
        }
    }
    co_return co_await wait();
}

}  // namespace aviary::proc
