#pragma once
/// proc: child processes, one implementation for job steps, drivers and the sidecar
/// (docs/architecture.md).
///
/// spawn() starts a program from an argv, never through a shell, in its own process group
/// (pgid == pid), with stdin from /dev/null and stdout/stderr on pipes read by pump(). Every
/// other descriptor is closed in the child, and signal dispositions and the signal mask are
/// reset to the defaults. Exit is noticed through a pidfd, so no SIGCHLD handler is needed; the
/// child is reaped exactly once, by wait() or terminate() (or the destructor).
///
/// Executor: a Process belongs to the executor it was spawned on; call its coroutines from that
/// executor only (one I/O loop thread). pump() and wait() may run at the same time. Keep the
/// Process alive (and unmoved-from) until every coroutine you started on it has finished.
///
/// Destructor: a Process whose leader has not been reaped yet is killed: SIGKILL to its whole
/// group, then a blocking reap (quick: SIGKILL cannot be caught). Await terminate() first for a
/// graceful stop. Move-assigning over a Process does the same to the one it replaces. A
/// moved-from Process may only be destroyed or assigned to.
#include <sys/types.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/core.hpp"
#include "net/net.hpp"

namespace aviary::proc {

namespace asio = net::asio;

struct SpawnOptions {
    /// argv[0] is the program: run as given when it holds a slash, otherwise looked up in PATH
    /// (the PATH of env_add when it sets one, else this process's PATH).
    std::vector<std::string> argv;
    std::string cwd;  ///< the child's working directory; empty: this process's
    std::vector<std::pair<std::string, std::string>> env_add;  ///< set (or override) in the child
    bool inherit_env = true;  ///< start from this process's environment; false: env_add only
    /// The child gets SIGKILL when the thread that spawned it ends (PR_SET_PDEATHSIG), so it
    /// never outlives this process, even one killed with SIGKILL. Only the child itself: what
    /// it starts in turn is not covered. Keep the spawning thread alive as long as the child.
    bool die_with_parent = false;
    std::optional<unsigned> umask;  ///< the child's umask; unset: this process's
};

enum class Stream { kStdout, kStderr };

/// Longest line pump() delivers; the rest of a longer line is dropped and the line is marked.
inline constexpr std::size_t kMaxLineBytes = std::size_t{64} * 1024;

struct Line {
    Stream stream;
    std::string text;        ///< without the '\n'
    bool truncated = false;  ///< the line was longer than kMaxLineBytes; text holds its start
};

using LineCallback = std::function<void(const Line&)>;
/// Awaited by pump() after the lines of each read have been delivered: a consumer that cannot
/// keep up (a relay whose output is not drained) holds the reading, and so the child, back.
using AfterRead = std::function<asio::awaitable<void>()>;
/// Gets each read of a stream exactly as it was read, before it is split into lines: a relay
/// that must pass the bytes on unchanged ('\r', a last line without '\n', a line past the cap).
using BytesCallback = std::function<void(Stream, std::string_view)>;

/// What pump() calls besides the line callback.
struct PumpHooks {
    BytesCallback on_bytes;  ///< each read, before its lines
    AfterRead after_read;    ///< after each read's lines
};

/// How the process group's leader ended.
struct ExitStatus {
    int code = 0;    ///< exit code when it exited
    int signal = 0;  ///< the signal that killed it, 0 when it exited
    bool exited() const { return signal == 0; }
    bool succeeded() const { return signal == 0 && code == 0; }
};

class Process {
public:
    Process(Process&&) noexcept;
    Process& operator=(Process&&) noexcept;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    ~Process();

    pid_t pid() const;
    pid_t pgid() const;  ///< equal to pid(): the child leads its own group

    /// Reads stdout and stderr line by line until both are closed (by every process of the group
    /// that holds them), calling `on_line` for each line in order per stream. A last line without
    /// '\n' is delivered at end of file. A stdout line longer than `max_stdout_line` (a stderr
    /// line longer than kMaxLineBytes) arrives cut and marked truncated: a caller that reads a
    /// document printed on one line (helm's JSON) raises it. Call it once.
    asio::awaitable<void> pump(LineCallback on_line,
                               std::size_t max_stdout_line = kMaxLineBytes,
                               PumpHooks hooks = {});

    /// Waits for the leader to end and reaps it. Later calls return the same status at once.
    asio::awaitable<ExitStatus> wait();

    /// Waits until the leader has ended, without reaping it: the group id stays reserved, so
    /// signal_group() still reaches members that outlived the leader. Then call wait() (or
    /// terminate()) to reap. Cancellable (e.g. raced with a stop signal).
    asio::awaitable<void> ended();

    /// Sends `sig` to the whole group. Does nothing once the leader has been reaped: its pid, and
    /// so the group id, may belong to someone else by then.
    void signal_group(int sig);

    /// SIGTERM to the whole group, up to `grace` for the leader to end, then SIGKILL to the whole
    /// group (members that outlived the leader or ignore SIGTERM included), then reaps the leader.
    /// The leader is reaped only after the SIGKILL, so the group id cannot have been reused.
    asio::awaitable<ExitStatus> terminate(core::Millis grace);

    struct State;

private:
    friend core::Result<Process> spawn(asio::any_io_executor executor, SpawnOptions options);
    explicit Process(std::unique_ptr<State> state);

    std::unique_ptr<State> state_;
};

/// The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or
/// nullopt when there is no such process. With the pid it names one process across pid reuse.
std::optional<std::uint64_t> start_ticks(pid_t pid);

/// SIGKILLs process group `pgid` left behind by an earlier run of aviary, when it is still the
/// group recorded: its leader alive with `leader_start_ticks`, or the leader gone while members
/// live on (a live group's id is never handed out as a new pid, so it cannot have been reused).
/// Returns true when a signal was sent to a live group.
bool kill_orphan_group(pid_t pgid, std::uint64_t leader_start_ticks);

/// How run() runs one child beyond spawning it.
struct RunSpec {
    /// Gets each line, on the executor. A pump that outlives run() (a grandchild holding the
    /// pipes) is cut off after a short drain: no line arrives once run() has returned.
    LineCallback on_line;
    std::size_t max_stdout_line = kMaxLineBytes;
    /// The child's group is ended (SIGTERM, kill_grace, SIGKILL) once it has run this long.
    /// 0: no limit of its own.
    core::Millis timeout{0};
    core::Millis kill_grace{std::chrono::seconds{5}};
    /// Called once the child has started, before the wait: e.g. to record its group. An error
    /// ends the child and is run()'s error.
    std::function<asio::awaitable<core::Result<void>>(Process&)> on_started;
    /// A timer the caller cancels to stop the child early (a job step's cancel), and what says
    /// it is stopping; both or neither.
    asio::steady_timer* stop_signal = nullptr;
    std::function<bool()> stopping;
    /// Told when the group is ended on purpose, e.g. "ending process group 42: ...".
    std::function<void(std::string)> note;
};

struct RunOutcome {
    ExitStatus status;
    bool timed_out = false;  ///< ended because spec.timeout passed
    bool stopped = false;    ///< ended because the caller stopped it
};

/// Spawns `options`, pumps its lines, and waits for the leader to end, the timeout, or a stop;
/// then ends what is left of its group: SIGKILL when the leader ended by itself (a group is
/// its leader's), terminate() otherwise. The one way aviary runs a child to completion (job
/// steps through drivers::Context::run, drivers outside a step). Errors: those of spawn(), and
/// of spec.on_started.
asio::awaitable<core::Result<RunOutcome>> run(asio::any_io_executor executor,
                                              SpawnOptions options,
                                              RunSpec spec);

/// Starts options.argv. Errors name the program: kInvalidArgument for an empty argv, kNotFound
/// (`cannot run "helm": no such file in PATH`, or a missing path or cwd), kPermissionDenied, or
/// kUnavailable with the system's reason. Never throws.
core::Result<Process> spawn(asio::any_io_executor executor, SpawnOptions options);

}  // namespace aviary::proc
