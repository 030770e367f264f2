#pragma once
// Private to src/store: the SQL of worker ids (an external scheduler's worker, mapped
// to the machine behind it).
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "store/sql/connection.hpp"

namespace aviary::store::sql {

/// Runs inside the writer's transaction; one event per change (see Store::reconcile_worker_ids).
core::Result<void> reconcile_worker_ids(Connection& db,
                                        const std::vector<core::WorkerId>& workers,
                                        std::string_view actor,
                                        core::TimePoint now);
/// Every worker id, sorted.
core::Result<std::vector<core::WorkerId>> select_worker_ids(Connection& db);
/// kNotFound naming the id when it is not listed.
core::Result<core::WorkerId> select_worker_id(Connection& db, std::string_view id);

}  // namespace aviary::store::sql
