#pragma once
// Shared by the bench/logs programs: the log line every side stores, so aviary, raw SQLite and
// PostgreSQL are given the same rows (level 20, sender bench-<connection>, a message of a fixed
// length that carries a counter).
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace aviary::bench {

constexpr int kLevel = 20;

inline std::string sender_name(int connection) {
    return "bench-" + std::to_string(connection);
}

/// Appends the message of line `counter` from `sender` to `out`: "line 000000000042 from
/// bench-0: " and filler up to `bytes` in all (plain ASCII: nothing to escape in JSON, COPY or
/// SQL).
inline void append_message(std::string& out,
                           const std::string& sender,
                           std::uint64_t counter,
                           std::size_t bytes) {
    static constexpr std::string_view kFiller =
        "ingest benchmark filler: the quick brown fox jumps over the lazy dog, again and again "
        "and again until the line is long enough ";
    const std::size_t start = out.size();
    char number[24];
    int n =
        std::snprintf(number, sizeof number, "%012llu", static_cast<unsigned long long>(counter));
    out += "line ";
    out.append(number, static_cast<std::size_t>(n));
    out += " from ";
    out += sender;
    out += ": ";
    while (out.size() - start < bytes) {
        out.append(kFiller.substr(0, std::min(kFiller.size(), bytes - (out.size() - start))));
    }
}

inline std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace aviary::bench
