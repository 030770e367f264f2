#pragma once
// Shared by the bench/leases tools: latencies recorded per thread in microseconds, merged and
// read as percentiles the same way everywhere, so their tables compare.
#include <algorithm>
#include <cstdint>
#include <vector>

namespace aviary::bench {

/// Every thread's latencies in one sorted vector. `Result` has `latencies_us`.
template <class Result>
std::vector<std::uint32_t> merged_latencies(const std::vector<Result>& results) {
    std::vector<std::uint32_t> all;
    for (const auto& result : results) {
        all.insert(all.end(), result.latencies_us.begin(), result.latencies_us.end());
    }
    std::sort(all.begin(), all.end());
    return all;
}

/// The p-th percentile (nearest rank) of sorted microseconds, in milliseconds; 0 when empty.
inline double percentile_ms(const std::vector<std::uint32_t>& sorted, double p) {
    if (sorted.empty()) {
        return 0;
    }
    auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
    return sorted[std::min(rank, sorted.size() - 1)] / 1000.0;
}

}  // namespace aviary::bench
