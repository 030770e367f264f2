#pragma once
// Private to src/store: the instances that share a store, and who leads its periodic work.
#include <functional>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "store/sql/connection.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

core::Result<void> join_instance(Connection& db,
                                 const InstanceRecord& instance,
                                 core::Millis stale_after,
                                 const std::function<bool(const InstanceRecord&)>& may_replace);
core::Result<bool> beat_instance(Connection& db,
                                 std::string_view instance,
                                 std::string_view run,
                                 std::string_view duty,
                                 core::TimePoint now,
                                 core::Millis lead_ttl);
core::Result<void> leave_instance(Connection& db, std::string_view instance, std::string_view run);
core::Result<std::vector<InstanceRecord>> select_instances(Connection& db);

}  // namespace aviary::store::sql
