#pragma once
// Private to src/store: the SQL of nodes.
#include <optional>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "store/sql/connection.hpp"
#include "store/sql/leases.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

/// Runs inside the writer's transaction; one event per change (see Store::reconcile_nodes).
/// Serves waiters afterwards (a node added may be what they wait for).
core::Result<ReconcileReport> reconcile_nodes(Connection& db,
                                              const std::vector<core::NodeSpec>& specs,
                                              std::string_view actor,
                                              core::TimePoint now,
                                              Served& served);
/// See Store::put_node, remove_node, start_maintenance and end_maintenance.
core::Result<NodeChange> put_node(Connection& db,
                                  const core::NodeSpec& spec,
                                  std::string_view actor,
                                  core::TimePoint now,
                                  Served& served);
core::Result<void> remove_node(Connection& db,
                               std::string_view name,
                               std::string_view actor,
                               core::TimePoint now,
                               bool machine);
core::Result<NodeChange> start_maintenance(Connection& db,
                                           std::string_view name,
                                           std::string_view reason,
                                           std::string_view actor,
                                           core::TimePoint now);
/// Store::set_gate and Store::configure_gates.
core::Result<bool> set_gate(Connection& db,
                            std::string_view name,
                            core::TimePoint until,
                            core::TimePoint seen,
                            core::TimePoint now,
                            Served& served);
core::Result<void> configure_gates(Connection& db,
                                   const std::vector<std::string>& gated,
                                   core::TimePoint now,
                                   Served& served);
core::Result<NodeChange> end_maintenance(Connection& db,
                                         std::string_view name,
                                         std::string_view actor,
                                         core::TimePoint now,
                                         Served& served);
/// Every node sorted by name, with its lease as of `now`.
core::Result<std::vector<core::Node>> select_nodes(Connection& db, core::TimePoint now);
/// kNotFound for an unknown node.
core::Result<core::Node> select_node(Connection& db, std::string_view name, core::TimePoint now);

}  // namespace aviary::store::sql
