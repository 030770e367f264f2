#include "proc/proc.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <chrono>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "support/process_groups.hpp"

namespace aviary::proc {
namespace {

using asio::experimental::awaitable_operators::operator||;
using asio::experimental::awaitable_operators::operator&&;
using namespace std::chrono_literals;

constexpr auto kDeadline = 10s;

// Runs `body` on a private io_context, failing the test if it has not finished in kDeadline.
asio::awaitable<void> bounded(asio::awaitable<void> body) {
    asio::steady_timer deadline{co_await asio::this_coro::executor, kDeadline};
    auto result = co_await (std::move(body) || deadline.async_wait(asio::use_awaitable));
    if (result.index() == 1) {
        ADD_FAILURE() << "the scenario did not finish within the deadline";
    }
}

void run(asio::awaitable<void> body) {
    asio::io_context ioc;
    std::exception_ptr failure;
    asio::co_spawn(ioc, bounded(std::move(body)), [&](std::exception_ptr e) { failure = e; });
    ioc.run();
    if (failure) {
        std::rethrow_exception(failure);
    }
}

struct Output {
    std::vector<std::string> out;
    std::vector<std::string> err;
    std::vector<Line> all;
};

LineCallback collect(Output& output) {
    return [&output](const Line& line) {
        (line.stream == Stream::kStdout ? output.out : output.err).push_back(line.text);
        output.all.push_back(line);
    };
}

// Spawns, pumps both streams and waits for the exit: the whole life of a short command.
asio::awaitable<void> run_to_end(SpawnOptions options, Output& output, ExitStatus& status) {
    auto process = spawn(co_await asio::this_coro::executor, std::move(options));
    if (!process) {
        ADD_FAILURE() << process.error().message;
        co_return;
    }
    co_await process->pump(collect(output));
    status = co_await process->wait();
}

// Built outside the coroutines: GCC 12 rejects a braced list of string literals in a coroutine
// body ("array used as initializer").
SpawnOptions sleep_30() {
    return SpawnOptions{.argv = {"sleep", "30"}};
}

SpawnOptions run_true() {
    return SpawnOptions{.argv = {"true"}};
}

SpawnOptions sh(std::string script) {
    return SpawnOptions{.argv = {"/bin/sh", "-c", std::move(script)}};
}

class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "proc_test.XXXXXX");
        path_ = ::mkdtemp(pattern.data());
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() { std::filesystem::remove_all(path_); }
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

TEST(Process, CapturesStdoutAndStderrLinesInOrderPerStream) {
    Output output;
    ExitStatus status;
    run(run_to_end(sh("echo one; echo two >&2; echo three; printf 'four'; printf 'five' >&2"),
                   output, status));
    EXPECT_EQ(output.out, (std::vector<std::string>{"one", "three", "four"}));
    EXPECT_EQ(output.err, (std::vector<std::string>{"two", "five"}));
    EXPECT_TRUE(status.succeeded());
}

TEST(Process, ALineEndedWithCrLfKeepsNoCarriageReturn) {
    Output output;
    ExitStatus status;
    run(run_to_end(sh("printf 'crlf\\r\\n'; printf 'inner\\rkept\\n' >&2; printf 'last\\r'"),
                   output, status));
    EXPECT_EQ(output.out, (std::vector<std::string>{"crlf", "last"}));
    EXPECT_EQ(output.err, (std::vector<std::string>{"inner\rkept"}));
}

TEST(Process, ReportsTheExitCode) {
    Output output;
    ExitStatus status;
    run(run_to_end(sh("exit 3"), output, status));
    EXPECT_TRUE(status.exited());
    EXPECT_EQ(status.code, 3);
}

TEST(Process, ReportsDeathBySignal) {
    Output output;
    ExitStatus status;
    run(run_to_end(sh("kill -KILL $$"), output, status));
    EXPECT_FALSE(status.exited());
    EXPECT_EQ(status.signal, SIGKILL);
}

TEST(Process, PassesArgvVerbatimWithoutAShell) {
    TempDir dir;
    Output output;
    ExitStatus status;
    run(run_to_end(
        SpawnOptions{.argv = {"echo", "lotus-0;touch X", "$HOME", "*"}, .cwd = dir.path().string()},
        output, status));
    EXPECT_EQ(output.out, (std::vector<std::string>{"lotus-0;touch X $HOME *"}));
    EXPECT_TRUE(status.succeeded());
    EXPECT_FALSE(std::filesystem::exists(dir.path() / "X"));
}

TEST(Process, RunsInTheGivenWorkingDirectory) {
    TempDir dir;
    Output output;
    ExitStatus status;
    auto options = sh("pwd -P");
    options.cwd = dir.path().string();
    run(run_to_end(std::move(options), output, status));
    ASSERT_EQ(output.out.size(), 1U);
    EXPECT_EQ(output.out[0], std::filesystem::canonical(dir.path()).string());
}

TEST(Spawn, MissingProgramIsAClearError) {
    asio::io_context ioc;
    auto missing = spawn(ioc.get_executor(), SpawnOptions{.argv = {"aviary-no-such-program"}});
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, core::ErrorCode::kNotFound);
    EXPECT_EQ(missing.error().message,
              "cannot run \"aviary-no-such-program\": no such file in PATH");

    auto absolute = spawn(ioc.get_executor(), SpawnOptions{.argv = {"/nonexistent/helm"}});
    ASSERT_FALSE(absolute);
    EXPECT_EQ(absolute.error().code, core::ErrorCode::kNotFound);
    EXPECT_NE(absolute.error().message.find("cannot run \"/nonexistent/helm\": "),
              std::string::npos);
}

TEST(Spawn, EmptyArgvIsRejected) {
    asio::io_context ioc;
    auto empty = spawn(ioc.get_executor(), SpawnOptions{});
    ASSERT_FALSE(empty);
    EXPECT_EQ(empty.error().code, core::ErrorCode::kInvalidArgument);
}

TEST(Spawn, MissingWorkingDirectoryIsAClearError) {
    asio::io_context ioc;
    auto result =
        spawn(ioc.get_executor(), SpawnOptions{.argv = {"/bin/echo"}, .cwd = "/nonexistent/dir"});
    ASSERT_FALSE(result);
    EXPECT_NE(result.error().message.find("/nonexistent/dir"), std::string::npos);
}

TEST(Process, EnvAddIsVisibleToTheChild) {
    Output output;
    ExitStatus status;
    run(run_to_end(SpawnOptions{.argv = {"/usr/bin/env"},
                                .env_add = {{"AVIARY_PROC_TEST", "lotus"}},
                                .inherit_env = false},
                   output, status));
    EXPECT_EQ(output.out, (std::vector<std::string>{"AVIARY_PROC_TEST=lotus"}));
}

TEST(Process, EnvAddOverridesAnInheritedVariable) {
    ::setenv("AVIARY_PROC_INHERITED", "old", 1);
    Output output;
    ExitStatus status;
    run(run_to_end(SpawnOptions{.argv = {"/bin/sh", "-c", "echo \"$AVIARY_PROC_INHERITED\""},
                                .env_add = {{"AVIARY_PROC_INHERITED", "new"}}},
                   output, status));
    ::unsetenv("AVIARY_PROC_INHERITED");
    EXPECT_EQ(output.out, (std::vector<std::string>{"new"}));
}

TEST(Process, CapsAnOverLongLine) {
    Output output;
    ExitStatus status;
    run(run_to_end(sh("head -c 200000 /dev/zero | tr '\\0' a; echo; echo next"), output, status));
    ASSERT_EQ(output.all.size(), 2U);
    EXPECT_EQ(output.all[0].text, std::string(kMaxLineBytes, 'a'));
    EXPECT_TRUE(output.all[0].truncated);
    EXPECT_EQ(output.all[1].text, "next");
    EXPECT_FALSE(output.all[1].truncated);
}

// What the process group scenario saw.
struct Group {
    pid_t leader = -1;
    pid_t leader_group = -1;
    pid_t reported_group = -1;
    ExitStatus status;
};

asio::awaitable<void> check_own_group(Group& seen) {
    auto process = spawn(co_await asio::this_coro::executor, sleep_30());
    if (!process) {
        ADD_FAILURE() << process.error().message;
        co_return;
    }
    seen.leader = process->pid();
    seen.leader_group = ::getpgid(process->pid());
    seen.reported_group = process->pgid();
    seen.status = co_await process->terminate(5s);  // sleep ends on SIGTERM well before
}

TEST(Process, RunsInItsOwnProcessGroup) {
    Group seen;
    run(check_own_group(seen));
    ASSERT_GT(seen.leader, 0);
    EXPECT_EQ(seen.leader_group, seen.leader);
    EXPECT_EQ(seen.reported_group, seen.leader);
    EXPECT_NE(seen.leader_group, ::getpgrp());
    EXPECT_EQ(seen.status.signal, SIGTERM);
    EXPECT_EQ(::kill(seen.leader, 0), -1);
    EXPECT_EQ(errno, ESRCH);
}

// What the terminate scenario saw.
struct Termination {
    pid_t grandchild = -1;
    ExitStatus status;
    bool grandchild_gone = false;
};

// Waits for `pid` (not our child: we are its subreaper) to end, then reaps it.
asio::awaitable<bool> reap_orphan(pid_t pid) {
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) {
        co_return errno == ESRCH;
    }
    asio::posix::stream_descriptor pidfd{co_await asio::this_coro::executor, fd};
    co_await pidfd.async_wait(asio::posix::descriptor_base::wait_read, asio::use_awaitable);
    int raw = 0;
    co_return ::waitpid(pid, &raw, 0) == pid;
}

asio::awaitable<void> terminate_after_first_line(Process& process,
                                                 asio::steady_timer& first_line,
                                                 const Output& output,
                                                 Termination& seen) {
    // first_line is cancelled by the line callback: an event, not a sleep. Checked first, since a
    // cancel that comes before the wait starts would be lost.
    if (output.out.empty()) {
        co_await first_line.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (output.out.empty()) {
        ADD_FAILURE() << "no grandchild pid printed";
        co_return;
    }
    seen.grandchild = std::stoi(output.out.front());
    constexpr auto kGrace = 300ms;
    asio::steady_timer bound{co_await asio::this_coro::executor, kGrace + 5s};
    auto ended = co_await (process.terminate(kGrace) || bound.async_wait(asio::use_awaitable));
    if (ended.index() != 0) {
        ADD_FAILURE() << "terminate took longer than grace plus margin";
        co_return;
    }
    seen.status = std::get<0>(ended);
    seen.grandchild_gone = co_await reap_orphan(seen.grandchild);
}

asio::awaitable<void> terminate_stubborn_group(Termination& seen) {
    auto process =
        spawn(co_await asio::this_coro::executor, sh("trap '' TERM; sleep 30 & echo $!; wait"));
    if (!process) {
        ADD_FAILURE() << process.error().message;
        co_return;
    }
    Output output;
    asio::steady_timer first_line{co_await asio::this_coro::executor,
                                  asio::steady_timer::time_point::max()};
    LineCallback on_line = [&output, &first_line](const Line& line) {
        if (line.stream == Stream::kStdout) {
            output.out.push_back(line.text);
            first_line.cancel();
        }
    };
    co_await (process->pump(std::move(on_line)) &&
              terminate_after_first_line(*process, first_line, output, seen));
}

TEST(Process, TerminateEndsAGroupThatIgnoresTermIncludingGrandchildren) {
    // Orphans of our children come to us, so the test can reap the grandchild itself instead of
    // depending on what PID 1 does in this container.
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    Termination seen;
    run(terminate_stubborn_group(seen));
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    ASSERT_GT(seen.grandchild, 0);
    EXPECT_EQ(seen.status.signal, SIGKILL);
    EXPECT_TRUE(seen.grandchild_gone);
    EXPECT_EQ(::kill(seen.grandchild, 0), -1);
    EXPECT_EQ(errno, ESRCH);
}

TEST(Process, DestructorKillsARunningGroupAndReapsIt) {
    pid_t leader = -1;
    {
        asio::io_context ioc;
        auto process = spawn(ioc.get_executor(), SpawnOptions{.argv = {"sleep", "30"}});
        ASSERT_TRUE(process) << process.error().message;
        leader = process->pid();
    }
    EXPECT_EQ(::kill(leader, 0), -1);
    EXPECT_EQ(errno, ESRCH);
}

asio::awaitable<void> wait_twice(ExitStatus& first, ExitStatus& second) {
    auto process = spawn(co_await asio::this_coro::executor, run_true());
    if (!process) {
        ADD_FAILURE() << process.error().message;
        co_return;
    }
    first = co_await process->wait();
    second = co_await process->wait();
}

TEST(Process, WaitAfterExitReturnsTheSameStatus) {
    ExitStatus first{.code = 99};
    ExitStatus second{.code = 99};
    run(wait_twice(first, second));
    EXPECT_TRUE(first.succeeded());
    EXPECT_TRUE(second.succeeded());
}

// --- run(): the one way a child is run to completion -----------------------------------------

struct RunSeen {
    core::Result<RunOutcome> outcome = core::Error{core::ErrorCode::kInternal, "not run"};
    Output output;
    std::vector<std::string> notes;
    pid_t pgid = 0;
};

// An on_started hook: notes the group, then answers `answer`.
asio::awaitable<core::Result<void>> note_group(Process& process,
                                               pid_t& pgid,
                                               core::Result<void> answer) {
    pgid = process.pgid();
    co_return answer;
}

asio::awaitable<void> run_child(SpawnOptions options, RunSpec spec, RunSeen& seen) {
    spec.on_line = collect(seen.output);
    spec.note = [&seen](std::string text) { seen.notes.push_back(std::move(text)); };
    seen.outcome =
        co_await proc::run(co_await asio::this_coro::executor, std::move(options), std::move(spec));
}

TEST(Run, RunsAChildToItsEndWithItsLines) {
    RunSeen seen;
    run(run_child(sh("echo out; echo err >&2; exit 3"), RunSpec{}, seen));
    ASSERT_TRUE(seen.outcome) << seen.outcome.error().message;
    EXPECT_EQ(seen.outcome->status.code, 3);
    EXPECT_FALSE(seen.outcome->timed_out);
    EXPECT_FALSE(seen.outcome->stopped);
    EXPECT_EQ(seen.output.out, std::vector<std::string>{"out"});
    EXPECT_EQ(seen.output.err, std::vector<std::string>{"err"});
    EXPECT_TRUE(seen.notes.empty());
}

TEST(Run, ATimeoutEndsTheWholeGroupAndSaysSo) {
    RunSeen seen;
    RunSpec spec{.timeout = 200ms, .kill_grace = 200ms};
    spec.on_started = [&seen](Process& process) {
        return note_group(process, seen.pgid, core::Result<void>{});
    };
    // The leader ignores TERM and leaves a member behind: only the group's SIGKILL ends both.
    run(run_child(sh("trap '' TERM; sleep 30 & wait"), std::move(spec), seen));
    ASSERT_TRUE(seen.outcome) << seen.outcome.error().message;
    EXPECT_TRUE(seen.outcome->timed_out);
    EXPECT_EQ(seen.outcome->status.signal, SIGKILL);
    ASSERT_GT(seen.pgid, 0);
    EXPECT_TRUE(test::group_ends(seen.pgid));
    ASSERT_EQ(seen.notes.size(), 1U);
    EXPECT_EQ(seen.notes.at(0),
              fmt::format("ending process group {}: /bin/sh ran longer than 200ms (SIGTERM, then "
                          "SIGKILL after 200ms)",
                          seen.pgid));
}

asio::awaitable<void> stop_after_first_line(RunSeen& seen) {
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer stop_signal{executor, asio::steady_timer::time_point::max()};
    bool stopping = false;
    RunSpec spec{.kill_grace = 2s, .stop_signal = &stop_signal};
    spec.stopping = [&stopping] { return stopping; };
    spec.note = [&seen](std::string text) { seen.notes.push_back(std::move(text)); };
    // The stop is the first line's doing: an event, not a sleep.
    spec.on_line = [&seen, &stopping, &stop_signal](const Line& line) {
        seen.output.out.push_back(line.text);
        stopping = true;
        stop_signal.cancel();
    };
    seen.outcome = co_await proc::run(executor, sh("echo ready; exec sleep 30"), std::move(spec));
}

TEST(Run, AStopEndsTheChildGracefully) {
    RunSeen seen;
    run(stop_after_first_line(seen));
    ASSERT_TRUE(seen.outcome) << seen.outcome.error().message;
    EXPECT_TRUE(seen.outcome->stopped);
    EXPECT_FALSE(seen.outcome->timed_out);
    EXPECT_EQ(seen.outcome->status.signal, SIGTERM);
    ASSERT_EQ(seen.notes.size(), 1U);
    EXPECT_NE(seen.notes.at(0).find("(SIGTERM, then SIGKILL after 2s)"), std::string::npos)
        << seen.notes.at(0);
}

TEST(Run, AFailedStartHookEndsTheChildAndIsTheError) {
    RunSeen seen;
    RunSpec spec;
    spec.on_started = [&seen](Process& process) {
        return note_group(process, seen.pgid,
                          core::Error{core::ErrorCode::kStorage, "the store is full"});
    };
    run(run_child(sleep_30(), std::move(spec), seen));
    ASSERT_FALSE(seen.outcome);
    EXPECT_EQ(seen.outcome.error().message, "the store is full");
    ASSERT_GT(seen.pgid, 0);
    EXPECT_TRUE(test::group_ends(seen.pgid));
}

TEST(Run, AMissingProgramIsTheSpawnError) {
    RunSeen seen;
    run(run_child(SpawnOptions{.argv = {"/nonexistent/program"}}, RunSpec{}, seen));
    ASSERT_FALSE(seen.outcome);
    EXPECT_EQ(seen.outcome.error().code, core::ErrorCode::kNotFound);
}

}  // namespace
}  // namespace aviary::proc

// --- the fork path: die_with_parent and umask ------------------------------------------------

namespace aviary::proc {
namespace {

TEST(Spawn, TheChildGetsTheGivenUmask) {
    Output output;
    ExitStatus status;
    auto options = sh("umask");
    options.umask = 027;
    run(run_to_end(std::move(options), output, status));
    ASSERT_EQ(output.out.size(), 1U);
    EXPECT_EQ(output.out[0], "0027");
    EXPECT_TRUE(status.succeeded());
}

TEST(Spawn, AChildThatDiesWithItsParentIsStillAProcessLikeAnyOther) {
    // The same contract as posix_spawn's path: argv, env, cwd, its own group, both streams.
    TempDir dir;
    Output output;
    ExitStatus status;
    auto options = sh("pwd -P; echo \"$AVIARY_PROC_TEST\"; echo oops >&2; exit 3");
    options.cwd = dir.path().string();
    options.env_add = {{"AVIARY_PROC_TEST", "lotus"}};
    options.die_with_parent = true;
    run(run_to_end(std::move(options), output, status));
    EXPECT_EQ(output.out,
              (std::vector<std::string>{std::filesystem::canonical(dir.path()).string(), "lotus"}));
    EXPECT_EQ(output.err, (std::vector<std::string>{"oops"}));
    EXPECT_EQ(status.code, 3);
}

TEST(Spawn, TheForkPathReportsAFailedExec) {
    asio::io_context ioc;
    auto result = spawn(
        ioc.get_executor(),
        SpawnOptions{.argv = {"/bin/echo"}, .cwd = "/nonexistent/dir", .die_with_parent = true});
    ASSERT_FALSE(result);
    EXPECT_NE(result.error().message.find("/nonexistent/dir"), std::string::npos)
        << result.error().message;
}

TEST(Spawn, AChildStartsWithNoSignalBlockedOrIgnoredByItsParent) {
    // The child runs on its parent's memory until it execs: neither the parent thread's blocked
    // signals nor its ignored ones may reach the node. /proc/self/status says what the child got
    // (grep itself: a shell would clear its mask).
    for (bool dies_with_parent : {false, true}) {
        struct sigaction handler {};
        handler.sa_handler = SIG_IGN;  // an ignored signal stays ignored across exec unless reset
        struct sigaction before {};
        ASSERT_EQ(::sigaction(SIGUSR2, &handler, &before), 0);
        sigset_t usr1;
        sigset_t mask_before;
        ::sigemptyset(&usr1);
        ::sigaddset(&usr1, SIGUSR1);
        ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &usr1, &mask_before), 0);
        Output output;
        ExitStatus status;
        SpawnOptions options{.argv = {"grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"}};
        options.die_with_parent = dies_with_parent;
        run(run_to_end(std::move(options), output, status));
        ::pthread_sigmask(SIG_SETMASK, &mask_before, nullptr);
        ::sigaction(SIGUSR2, &before, nullptr);
        ASSERT_EQ(output.out.size(), 2U) << "die_with_parent=" << dies_with_parent;
        EXPECT_EQ(output.out[0], "SigBlk:\t0000000000000000")
            << "die_with_parent=" << dies_with_parent;
        const auto ignored =
            std::stoull(output.out[1].substr(output.out[1].find('\t') + 1), nullptr, 16);
        EXPECT_EQ(ignored & (1ULL << (SIGUSR2 - 1)), 0U) << output.out[1];
        EXPECT_TRUE(status.succeeded());
    }
}

TEST(Spawn, AChildThatDiesWithItsParentDoesSoEvenUnderSigkill) {
    // A helper process spawns the child, says its pid, and is killed with SIGKILL: the child
    // must not outlive it.
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t helper = ::fork();
    ASSERT_GE(helper, 0);
    if (helper == 0) {
        asio::io_context ioc;
        auto child = spawn(ioc.get_executor(),
                           SpawnOptions{.argv = {"sleep", "600"}, .die_with_parent = true});
        pid_t pid = child ? child->pid() : -1;
        (void)::write(fds[1], &pid, sizeof pid);
        ::pause();
        ::_exit(0);
    }
    ::close(fds[1]);
    pid_t child = -1;
    ASSERT_EQ(::read(fds[0], &child, sizeof child), static_cast<ssize_t>(sizeof child));
    ::close(fds[0]);
    ASSERT_GT(child, 0);
    ASSERT_TRUE(test::group_alive(child));
    ::kill(helper, SIGKILL);
    int raw = 0;
    ::waitpid(helper, &raw, 0);
    // Bounded: the kernel delivers the death signal at the helper's exit.
    bool gone = false;
    for (int i = 0; i < 500 && !gone; ++i) {
        gone = !test::group_alive(child);
        if (!gone) {
            ::usleep(10'000);
        }
    }
    EXPECT_TRUE(gone) << "the child outlived its parent";
}

}  // namespace
}  // namespace aviary::proc
