// What notify's senders share (delivery.hpp).
#include "notify/delivery.hpp"

#include <algorithm>

namespace aviary::notify {
namespace {

/// How much of an unexpected answer a message shows.
constexpr std::size_t kExcerptMax = 200;

}  // namespace

std::string one_line(std::string_view text) {
    std::string out;
    for (char c : text.substr(0, kExcerptMax)) {
        out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
    }
    if (text.size() > kExcerptMax) {
        out += "...";
    }
    return out;
}

boost::asio::awaitable<std::optional<core::Result<net::ClientResponse>>> fetch_once(
    net::HttpClient& client, net::ClientRequest request) {
    std::optional<core::Result<net::ClientResponse>> out;
    out.emplace(co_await client.fetch(std::move(request)));
    co_return out;
}

core::Millis backoff(int attempt, core::Millis base, core::Millis max, std::mt19937_64& random) {
    auto wait = base;
    for (int i = 1; i < attempt && wait < max; ++i) {
        wait *= 2;
    }
    wait = std::min(wait, max);
    std::uniform_real_distribution<double> jitter{0.8, 1.2};
    auto jittered =
        core::Millis{static_cast<std::int64_t>(static_cast<double>(wait.count()) * jitter(random))};
    return std::clamp(jittered, core::Millis{1}, max);
}

}  // namespace aviary::notify
