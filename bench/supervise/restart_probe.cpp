// bench/supervise's restart timer.
//
//   restart_probe node FILE        appends "MONOTONIC_NS PID\n" to FILE, then sleeps: the
//                                  supervised node, under aviary supervise or supervisord.
//   restart_probe kill FILE N GAP  N times: waits GAP ms, SIGKILLs the node FILE names last,
//                                  and waits (at most 5 s) for the next line; prints each
//                                  restart's time (kill to the new node's start) and p50/p99.
//
// The new node's own CLOCK_MONOTONIC stamp ends the interval, so how soon the killer notices the
// line does not count; it waits on inotify (no busy polling to take a core from the supervisor
// on a 2-core machine).
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace {

std::int64_t now_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

struct Start {
    std::int64_t at = 0;
    pid_t pid = 0;
};

/// The starts recorded so far.
std::vector<Start> starts(const std::string& file) {
    std::vector<Start> out;
    std::ifstream in{file};
    long long at = 0;
    long pid = 0;
    while (in >> at >> pid) {
        out.push_back(Start{at, static_cast<pid_t>(pid)});
    }
    return out;
}

void sleep_ms(long ms) {
    timespec ts{ms / 1000, (ms % 1000) * 1'000'000};
    ::nanosleep(&ts, nullptr);
}

int node(const std::string& file) {
    FILE* out = std::fopen(file.c_str(), "a");
    if (out == nullptr) {
        return 1;
    }
    std::fprintf(out, "%lld %ld\n", static_cast<long long>(now_ns()),
                 static_cast<long>(::getpid()));
    std::fclose(out);
    while (true) {
        ::pause();
    }
}

int kill_loop(const std::string& file, int n, long gap_ms) {
    const int watch = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (watch < 0 || ::inotify_add_watch(watch, file.c_str(), IN_MODIFY) < 0) {
        std::fprintf(stderr, "restart_probe: cannot watch %s\n", file.c_str());
        return 1;
    }
    std::vector<double> ms;
    for (int i = 0; i < n; ++i) {
        sleep_ms(gap_ms);
        auto before = starts(file);
        if (before.empty()) {
            std::fprintf(stderr, "restart_probe: no node has started (%s)\n", file.c_str());
            return 1;
        }
        const auto victim = before.back();
        const std::int64_t killed_at = now_ns();
        if (::kill(victim.pid, SIGKILL) != 0) {
            std::fprintf(stderr, "restart_probe: cannot kill %d\n", victim.pid);
            return 1;
        }
        // Read again on every change of the file, for at most 5 s.
        bool restarted = false;
        const std::int64_t give_up = killed_at + std::int64_t{5'000'000'000};
        while (!restarted && now_ns() < give_up) {
            auto after = starts(file);
            if (after.size() > before.size()) {
                ms.push_back(static_cast<double>(after.back().at - killed_at) / 1e6);
                restarted = true;
                break;
            }
            pollfd p{.fd = watch, .events = POLLIN, .revents = 0};
            const auto left_ms = static_cast<int>((give_up - now_ns()) / 1'000'000) + 1;
            if (::poll(&p, 1, left_ms) > 0) {
                std::array<char, 4096> events{};
                while (::read(watch, events.data(), events.size()) > 0) {
                }
            }
        }
        if (!restarted) {
            ::close(watch);
            std::fprintf(stderr, "restart_probe: no restart within 5 s of kill %d\n", i + 1);
            return 1;
        }
    }
    ::close(watch);
    std::sort(ms.begin(), ms.end());
    auto pct = [&](double p) {
        return ms[std::min(ms.size() - 1,
                           static_cast<std::size_t>(p * static_cast<double>(ms.size())))];
    };
    std::printf("restarts=%zu p50_ms=%.2f p99_ms=%.2f min_ms=%.2f max_ms=%.2f\n", ms.size(),
                pct(0.5), pct(0.99), ms.front(), ms.back());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 2 && args[0] == "node") {
        return node(args[1]);
    }
    if (args.size() == 4 && args[0] == "kill") {
        return kill_loop(args[1], std::atoi(args[2].c_str()), std::atol(args[3].c_str()));
    }
    std::fprintf(stderr, "usage: restart_probe node FILE | restart_probe kill FILE N GAP_MS\n");
    return 2;
}
