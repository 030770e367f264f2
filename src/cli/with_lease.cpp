// aviary with-lease … -- CMD ARGS…: hold a lease exactly as long as a command runs.
//
// Acquire (waiting if asked), export the nodes, run CMD as a child (no shell), renew every
// ttl/3 while it runs, and release when it ends or when we are told to stop. Signal handlers
// only write to a self-pipe; one poll() loop reacts to them, to the child's exit and to the
// renewal clock, so no lease call ever runs inside a handler.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/json/object.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cli/commands.hpp"
#include "cli/render.hpp"

namespace aviary::cli {
namespace json = boost::json;

namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr core::Millis kLeaseCallTimeout{std::chrono::seconds{10}};
constexpr core::Millis kMinRenewInterval{std::chrono::seconds{1}};
constexpr core::Millis kFallbackRenewInterval{std::chrono::minutes{1}};
constexpr std::array kForwarded{SIGTERM, SIGINT, SIGHUP};

// Handler state: written before the handlers are installed or as one sig_atomic_t store.
volatile sig_atomic_t g_acquiring = 1;
int g_wake_fd = -1;

void on_signal(int signal, siginfo_t* info, void* /*context*/) {
    if (g_acquiring != 0 && signal != SIGCHLD) {
        // Nothing is held yet and the waiting request cannot be interrupted, so leave now: the
        // server drops a waiter whose connection closes, and releases what it was just granted.
        _exit(128 + signal);
    }
    const int saved_errno = errno;
    // A signal the terminal sent (Ctrl-C, hang-up) went to the whole foreground process group,
    // the child included: forwarding it would deliver it twice.
    const std::array<unsigned char, 2> message{
        static_cast<unsigned char>(signal), static_cast<unsigned char>(info->si_code == SI_KERNEL)};
    [[maybe_unused]] auto written = write(g_wake_fd, message.data(), message.size());
    errno = saved_errno;
}

/// The self-pipe's read end, with every handler installed; -1 when that failed.
int install_signal_handlers() {
    std::array<int, 2> fds{};
    if (pipe2(fds.data(), O_CLOEXEC | O_NONBLOCK) != 0) {
        return -1;
    }
    g_wake_fd = fds[1];
    struct sigaction action {};
    action.sa_sigaction = on_signal;
    action.sa_flags = SA_SIGINFO | SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&action.sa_mask);
    for (int signal : kForwarded) {
        sigaction(signal, &action, nullptr);
    }
    sigaction(SIGCHLD, &action, nullptr);
    return fds[0];
}

/// How often to renew: a third of the lease's length, so two renewals may fail in a row (a
/// server restart, a network blip) before it lapses.
core::Millis renew_interval(const json::value& lease) {
    auto acquired = core::parse_time(text_of(field(lease, "acquired_at")));
    auto expires = core::parse_time(text_of(field(lease, "expires_at")));
    if (!acquired || !expires || *expires <= *acquired) {
        return kFallbackRenewInterval;
    }
    return std::max(kMinRenewInterval, (*expires - *acquired) / 3);
}

void export_lease(const json::value& lease) {
    const auto& nodes = field(lease, "nodes");
    setenv("AVIARY_NODES", join_names(nodes).c_str(), 1);
    setenv("AVIARY_LEASE_ID", text_of(field(lease, "id")).c_str(), 1);
    if (const auto* list = nodes.if_array()) {
        for (std::size_t i = 0; i < list->size(); ++i) {
            setenv(fmt::format("AVIARY_NODE{}", i).c_str(), text_of((*list)[i]).c_str(), 1);
        }
    }
}

/// fork + execvp: CMD runs as given, never through a shell. -1 if fork failed.
pid_t start_child(const std::vector<std::string>& command) {
    std::vector<char*> argv;
    argv.reserve(command.size() + 1);
    for (const auto& arg : command) {
        argv.push_back(const_cast<char*>(arg.c_str()));
    }
    argv.push_back(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
        // Caught signals reset to their defaults across exec; the self-pipe is O_CLOEXEC.
        execvp(argv[0], argv.data());
        const int error = errno;
        std::fprintf(stderr, "aviary: cannot run %s: %s\n", argv[0], std::strerror(error));
        _exit(error == ENOENT ? 127 : 126);  // the shell's codes for "not found" / "not run"
    }
    return pid;
}

class LeaseKeeper {
public:
    LeaseKeeper(const Context& context, const json::value& lease, std::string ttl)
        : context_(context),
          id_(text_of(field(lease, "id"))),
          nodes_(join_names(field(lease, "nodes"), ", ")),
          ttl_(std::move(ttl)),
          interval_(renew_interval(lease)) {}

    core::Millis interval() const { return interval_; }

    void renew() const {
        json::object body;
        if (!ttl_.empty()) {
            body["ttl"] = ttl_;
        }
        auto renewed =
            context_.client.call("PUT", "/api/v1/leases/" + encode(id_), body, kLeaseCallTimeout);
        if (!renewed) {
            // The command keeps running: it is not ours to stop, and the lease may still hold.
            std::fprintf(stderr, "aviary: could not renew lease %s (%s): %s\n", id_.c_str(),
                         nodes_.c_str(), renewed.failure().message.c_str());
        }
    }

    void release() const {
        auto released =
            context_.client.call("DELETE", "/api/v1/leases/" + encode(id_), {}, kLeaseCallTimeout);
        if (released) {
            std::fprintf(stderr, "aviary: released lease %s (%s)\n", id_.c_str(), nodes_.c_str());
        } else {
            std::fprintf(stderr,
                         "aviary: could not release lease %s (%s): %s; it ends at its "
                         "expiry\n",
                         id_.c_str(), nodes_.c_str(), released.failure().message.c_str());
        }
    }

private:
    const Context& context_;
    std::string id_;
    std::string nodes_;
    std::string ttl_;
    core::Millis interval_;
};

struct ChildEnd {
    int wait_status = 0;
    int interrupted_by = 0;  ///< the last signal we were sent, 0 if none
};

/// Forwards what the pipe says to `child` and returns the last signal seen (0 for none).
int drain_signals(int wake_fd, pid_t child) {
    int last = 0;
    std::array<unsigned char, 2> message{};
    while (read(wake_fd, message.data(), message.size()) == ssize_t(message.size())) {
        const int signal = message[0];
        if (signal == SIGCHLD) {
            continue;
        }
        last = signal;
        if (message[1] == 0) {
            kill(child, signal);
        }
    }
    return last;
}

/// Runs until `child` exits: forwards signals, renews on schedule.
ChildEnd supervise(pid_t child, int wake_fd, const LeaseKeeper& keeper) {
    ChildEnd end;
    auto next_renewal = SteadyClock::now() + keeper.interval();
    for (;;) {
        // Checked before every poll: the SIGCHLD byte may have been read with another signal.
        if (waitpid(child, &end.wait_status, WNOHANG) == child) {
            return end;
        }
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_renewal -
                                                                          SteadyClock::now());
        pollfd wake{.fd = wake_fd, .events = POLLIN, .revents = 0};
        const int ready = poll(&wake, 1, static_cast<int>(std::max<std::int64_t>(0, wait.count())));
        if (ready > 0) {
            if (int signal = drain_signals(wake_fd, child); signal != 0) {
                end.interrupted_by = signal;
            }
        }
        if (SteadyClock::now() >= next_renewal) {
            keeper.renew();
            next_renewal = SteadyClock::now() + keeper.interval();
        }
    }
}

int exit_status(const ChildEnd& end) {
    if (end.interrupted_by != 0) {
        return 128 + end.interrupted_by;  // interrupted is not success, whatever CMD made of it
    }
    if (WIFEXITED(end.wait_status)) {
        return WEXITSTATUS(end.wait_status);
    }
    return WIFSIGNALED(end.wait_status) ? 128 + WTERMSIG(end.wait_status) : 1;
}

}  // namespace

int run_with_lease(const Context& context, const WithLeaseFlags& flags) {
    if (flags.command.empty()) {
        return report(Failure{kExitUsage, "with-lease needs a command after --"});
    }
    const int wake_fd = install_signal_handlers();
    if (wake_fd < 0) {
        return report(Failure{
            kExitRefused, fmt::format("cannot set up signal handling: {}", std::strerror(errno))});
    }
    auto lease = acquire_lease(context, flags.acquire);
    if (!lease) {
        return report(lease.failure());
    }
    // From here a signal must lead to a release; a signal that landed in the instant between
    // the grant and this store exits at once and the lease lapses at its expiry instead.
    g_acquiring = 0;
    LeaseKeeper keeper{context, *lease, flags.acquire.ttl};
    std::fprintf(stderr, "aviary: lease %s: %s until %s\n", text_of(field(*lease, "id")).c_str(),
                 join_names(field(*lease, "nodes"), ", ").c_str(),
                 time_with_remaining(field(*lease, "expires_at"), now()).c_str());
    export_lease(*lease);
    const pid_t child = start_child(flags.command);
    if (child < 0) {
        const int error = errno;
        keeper.release();
        return report(Failure{kExitRefused, fmt::format("cannot start {}: {}", flags.command[0],
                                                        std::strerror(error))});
    }
    auto end = supervise(child, wake_fd, keeper);
    keeper.release();
    return exit_status(end);
}

}  // namespace aviary::cli
