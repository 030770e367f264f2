#pragma once
// Shared by the bench/logs programs: CPU time of another process (and its threads or its
// children) from /proc, in clock ticks, sampled at the edges of a measured window.
#include <dirent.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace aviary::bench {

struct ProcTicks {
    std::string name;  // comm: the thread's or process's name
    int ppid = 0;
    std::uint64_t ticks = 0;  // utime + stime
};

/// Parses a /proc/.../stat file; false when it cannot be read (the process or thread is gone).
inline bool read_stat(const std::string& path, ProcTicks& out) {
    std::ifstream in{path};
    std::string text;
    if (!std::getline(in, text)) {
        return false;
    }
    auto open = text.find('(');
    auto close = text.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open) {
        return false;
    }
    out.name = text.substr(open + 1, close - open - 1);
    std::istringstream rest{text.substr(close + 2)};
    // Fields after comm: state(3) ppid(4) ... utime(14) stime(15).
    std::vector<std::string> fields;
    std::string field;
    while (fields.size() < 13 && rest >> field) {
        fields.push_back(field);
    }
    if (fields.size() < 13) {
        return false;
    }
    out.ppid = std::stoi(fields[1]);
    out.ticks = std::stoull(fields[11]) + std::stoull(fields[12]);
    return true;
}

inline double ticks_per_second() {
    return static_cast<double>(::sysconf(_SC_CLK_TCK));
}

/// All of `pid`'s threads now: tid -> name and ticks.
inline std::map<int, ProcTicks> thread_ticks(int pid) {
    std::map<int, ProcTicks> out;
    std::string dir = "/proc/" + std::to_string(pid) + "/task";
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
        return out;
    }
    while (dirent* entry = ::readdir(d)) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') {
            continue;
        }
        ProcTicks t;
        if (read_stat(dir + "/" + entry->d_name + "/stat", t)) {
            out[std::stoi(entry->d_name)] = t;
        }
    }
    ::closedir(d);
    return out;
}

/// `pid`'s ticks (all its threads) plus those of its direct children (a PostgreSQL server's
/// backends and helpers); 0 when it is gone.
inline std::uint64_t tree_ticks(int pid) {
    ProcTicks self;
    if (!read_stat("/proc/" + std::to_string(pid) + "/stat", self)) {
        return 0;
    }
    std::uint64_t total = self.ticks;
    DIR* d = ::opendir("/proc");
    if (d == nullptr) {
        return total;
    }
    while (dirent* entry = ::readdir(d)) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') {
            continue;
        }
        ProcTicks child;
        if (read_stat(std::string{"/proc/"} + entry->d_name + "/stat", child) &&
            child.ppid == pid) {
            total += child.ticks;
        }
    }
    ::closedir(d);
    return total;
}

/// The first child process of this one (the `aviary serve` that ServerProcess forked), or 0.
inline int first_child_pid() {
    const int me = static_cast<int>(::getpid());
    int found = 0;
    DIR* d = ::opendir("/proc");
    if (d == nullptr) {
        return 0;
    }
    while (dirent* entry = ::readdir(d)) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') {
            continue;
        }
        ProcTicks p;
        if (read_stat(std::string{"/proc/"} + entry->d_name + "/stat", p) && p.ppid == me) {
            found = std::stoi(entry->d_name);
            break;
        }
    }
    ::closedir(d);
    return found;
}

/// Busy and total ticks of the whole machine (/proc/stat's first line).
inline std::pair<std::uint64_t, std::uint64_t> machine_ticks() {
    std::ifstream in{"/proc/stat"};
    std::string cpu;
    std::uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
                  steal = 0;
    in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
    std::uint64_t busy = user + nice + system + irq + softirq + steal;
    return {busy, busy + idle + iowait};
}

}  // namespace aviary::bench
