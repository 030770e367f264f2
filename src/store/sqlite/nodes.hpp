#pragma once
// Private to src/store/sqlite: the SQL of nodes.
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "store/sqlite/connection.hpp"
#include "store/store.hpp"

namespace aviary::store::sqlite {

/// Runs inside the writer's transaction; one event per change (see Store::reconcile_nodes).
core::Result<ReconcileReport> reconcile_nodes(Connection& db,
                                              const std::vector<core::NodeSpec>& specs,
                                              std::string_view actor,
                                              core::TimePoint now);
/// Every node sorted by name, with its lease as of `now`.
core::Result<std::vector<core::Node>> select_nodes(Connection& db, core::TimePoint now);
/// kNotFound for an unknown node.
core::Result<core::Node> select_node(Connection& db, std::string_view name, core::TimePoint now);

}  // namespace aviary::store::sqlite
