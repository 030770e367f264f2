#pragma once
// Private to src/notify: what its senders share. Each sends one request at a time on a private
// loop that a pass runs on a scheduler thread, retries with exponential backoff, and shows a
// receiver's unexpected answer as one short line.
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "core/core.hpp"
#include "net/net.hpp"

namespace aviary::notify {

/// `text` on one line (newlines and tabs as spaces), cut to 200 bytes with "...".
std::string one_line(std::string_view text);

/// One exchange, its result wrapped in an optional so a race against a stop signal can tell
/// "answered" from "stopped".
boost::asio::awaitable<std::optional<core::Result<net::ClientResponse>>> fetch_once(
    net::HttpClient& client, net::ClientRequest request);

/// `base` doubling per attempt (the first attempt waits `base`), ±20 % jitter, never past
/// `max`, never below 1 ms.
core::Millis backoff(int attempt, core::Millis base, core::Millis max, std::mt19937_64& random);

}  // namespace aviary::notify
