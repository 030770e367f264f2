#pragma once
// Private to src/net: the time deadlines are set from on every request.
#include <chrono>
#include <ctime>

namespace aviary::net {

/// steady_clock's time as of the kernel's last tick (CLOCK_MONOTONIC_COARSE): the same clock
/// (libstdc++'s steady_clock reads CLOCK_MONOTONIC), at most one tick (1-10 ms, CONFIG_HZ)
/// behind it, and about 5 ns to read against steady_clock::now()'s 23 on the reference VM.
/// For deadlines of seconds and idle timestamps, which are set several times per proxied
/// request: a deadline taken from it falls at most one tick early. nginx caches its time once
/// per loop turn for the same reason. Never for a duration that is reported (latencies).
inline std::chrono::steady_clock::time_point coarse_now() noexcept {
#ifndef CLOCK_MONOTONIC_COARSE
    return std::chrono::steady_clock::now();  // not Linux: the precise clock
#else
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return std::chrono::steady_clock::time_point{
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::seconds{now.tv_sec} + std::chrono::nanoseconds{now.tv_nsec})};
#endif
}

}  // namespace aviary::net
