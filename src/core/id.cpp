#include <random>

#include "core/core.hpp"

namespace aviary::core {

std::string new_id() {
    static constexpr char kCrockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    // One generator per thread, seeded from the OS: ids stay unique across threads and
    // processes without a lock.
    thread_local std::mt19937_64 rng{std::random_device{}()};
    auto ms = static_cast<std::uint64_t>(SystemClock{}.now().time_since_epoch().count());
    std::uint64_t hi = rng();
    std::uint64_t lo = rng();
    std::string out(26, '0');
    // 10 characters of timestamp (50 bits, top two always zero for 48-bit ms), 16 of randomness.
    for (int i = 9; i >= 0; --i) {
        out[static_cast<size_t>(i)] = kCrockford[ms & 31U];
        ms >>= 5U;
    }
    for (int i = 25; i >= 10; --i) {
        out[static_cast<size_t>(i)] = kCrockford[lo & 31U];
        lo = (lo >> 5U) | ((hi & 31U) << 59U);
        hi >>= 5U;
    }
    return out;
}

}  // namespace aviary::core
