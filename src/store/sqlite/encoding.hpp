#pragma once
// Private to src/store/sqlite: how rows hold what is not a plain column (labels, and the
// before/after JSON of events). Boost.JSON stays behind this header.
#include <string>
#include <string_view>

#include "core/core.hpp"
#include "store/store.hpp"

namespace aviary::store::sqlite {

/// What an event's before/after holds when there was nothing.
inline constexpr std::string_view kNoState = "{}";

/// Compact JSON object, keys sorted: {"chain":"lotus"}.
std::string labels_to_json(const core::Labels& labels);
/// kStorage when the text is not a JSON object of strings (a hand-edited database).
core::Result<core::Labels> labels_from_json(std::string_view text);

/// {"lease_id","owner","reason","acquired_at","expires_at","exclusive"}, RFC 3339 times.
std::string lease_to_json(const core::Lease& lease);
/// {"ticket","owner","reason","node" | "selector"+"count","ttl","exclusive","since",
/// "deadline","lease_id"?}.
std::string waiter_to_json(const WaiterRecord& waiter);
/// {"maintenance_reason"}, or {} when in service.
std::string maintenance_to_json(std::string_view reason);
/// {"name","driver","image_tag","labels","note"}.
std::string spec_to_json(const core::NodeSpec& spec);

}  // namespace aviary::store::sqlite
