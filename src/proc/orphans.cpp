#include <signal.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <string>

#include "proc/proc.hpp"

namespace aviary::proc {

std::optional<std::uint64_t> start_ticks(pid_t pid) {
    if (pid <= 0) {
        return std::nullopt;
    }
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    if (!in || !std::getline(in, stat)) {
        return std::nullopt;
    }
    // "PID (COMM) STATE PPID ..." where COMM may hold spaces and parentheses: fields are
    // counted from the last ')'. starttime is field 22; field 3 (state) follows the ')'.
    auto close = stat.rfind(')');
    if (close == std::string::npos) {
        return std::nullopt;
    }
    std::istringstream fields(stat.substr(close + 1));
    std::string field;
    for (int index = 3; index <= 22; ++index) {
        if (!(fields >> field)) {
            return std::nullopt;
        }
    }
    try {
        return std::stoull(field);
    } catch (...) {
        return std::nullopt;
    }
}

bool kill_orphan_group(pid_t pgid, std::uint64_t leader_start_ticks) {
    if (pgid <= 1) {
        return false;
    }
    auto leader = start_ticks(pgid);
    if (leader && *leader != leader_start_ticks) {
        // The pid belongs to a newer process: the recorded group emptied before the pid was
        // reused, so there is nothing of ours left to kill.
        return false;
    }
    return ::kill(-pgid, SIGKILL) == 0;
}

}  // namespace aviary::proc
