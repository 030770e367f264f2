#pragma once
// Private to src/store: how rows hold what is not a plain column (labels, and the
// before/after JSON of events). Boost.JSON stays behind this header.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

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
/// {"name","driver","image_tag","labels","note","machine"?} ("machine" for machines only).
std::string spec_to_json(const core::NodeSpec& spec);
/// A machine's properties as a compact JSON object; "" for a node that is not a machine.
std::string machine_to_json(const std::optional<core::MachineSpec>& machine);
/// The reverse: "" is no machine. kStorage naming the node when the text is not a machine
/// object (a hand-edited database).
core::Result<std::optional<core::MachineSpec>> machine_from_json(std::string_view node,
                                                                 std::string_view text);

/// A job's params as a compact JSON object of strings, keys sorted.
std::string params_to_json(const core::Params& params);
/// kStorage naming the job when the text is not a JSON object of strings.
core::Result<core::Params> params_from_json(std::string_view job_id, std::string_view text);
/// A job's summary for events: {"id","action","node","params","state","owner","lease_id",
/// "attempt","step"?,"step_name"?,"error"?} (the optional keys only when set).
std::string job_to_json(const core::Job& job);
/// A compact JSON array of strings: ["upgrade","restart"].
std::string strings_to_json_array(const std::vector<std::string>& strings);
/// kStorage when the text is not a JSON array of strings.
core::Result<std::vector<std::string>> strings_from_json_array(std::string_view text);
/// {"queue","paused"}.
std::string queue_to_json(std::string_view queue, bool paused);

}  // namespace aviary::store::sql
