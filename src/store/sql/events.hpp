#pragma once
// Private to src/store: the audit trail's SQL.
#include <cstdint>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "store/sql/connection.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

/// Who acts when nobody asked: the expiry sweep.
inline constexpr std::string_view kSystemActor = "aviary";

/// Appends one event (its id is assigned by the database). Call inside the write
/// transaction of the change it records.
core::Result<void> append_event(Connection& db, const core::Event& event);
/// Newest first; the limit is clamped to 1..1000.
core::Result<std::vector<core::Event>> select_events(Connection& db, const EventQuery& query);
/// Deletes events older than `before`; returns how many.
core::Result<std::int64_t> delete_events_before(Connection& db, core::TimePoint before);

}  // namespace aviary::store::sql
