#pragma once
// Test support: is a process group still alive? Counted from /proc rather than kill(-pgid, 0),
// which also succeeds for zombies: orphans of a killed serve are re-parented to PID 1, and in a
// container PID 1 may never reap them.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace aviary::test {

/// True while some process of group `pgid` is alive (running or sleeping, not a zombie).
inline bool group_alive(pid_t pgid) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
        const auto name = entry.path().filename().string();
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) {
            continue;
        }
        std::ifstream in(entry.path() / "stat");
        std::string stat;
        if (!std::getline(in, stat)) {
            continue;  // gone meanwhile
        }
        // "PID (COMM) STATE PPID PGRP ...": COMM may hold spaces, so count from the last ')'.
        auto close = stat.rfind(')');
        if (close == std::string::npos) {
            continue;
        }
        std::istringstream fields(stat.substr(close + 1));
        char state = '?';
        long ppid = 0;
        long pgrp = 0;
        if ((fields >> state >> ppid >> pgrp) && pgrp == pgid && state != 'Z' && state != 'X') {
            return true;
        }
    }
    return false;
}

/// True once no live process of group `pgid` is left, polled for up to `within`. A SIGKILL
/// sent to a group is delivered, not completed: a member may still be on its way out when the
/// sender returns, so "ended" is observed, not assumed. The bound only keeps a broken run from
/// hanging.
inline bool group_ends(pid_t pgid, std::chrono::milliseconds within = std::chrono::seconds{10}) {
    const auto until = std::chrono::steady_clock::now() + within;
    while (group_alive(pgid)) {
        if (std::chrono::steady_clock::now() >= until) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds{1});
    }
    return true;
}

}  // namespace aviary::test
