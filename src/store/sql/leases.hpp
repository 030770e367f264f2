#pragma once
// Private to src/store: the SQL of leases. Every function runs inside the writer's
// transaction and appends the events of what it changed. Those that free capacity serve the
// waiters in the same transaction and add the grants to `served`, which the store hands to
// its GrantListener once the commit is durable.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "store/sql/connection.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

/// The grants one operation made, in serving order.
using Served = std::vector<WaiterGrant>;

/// The lease columns every query selects, in the order lease_from_row reads them.
inline constexpr std::string_view kLeaseColumns =
    "id, node, owner, reason, acquired_at, expires_at, exclusive";
/// Reads kLeaseColumns starting at `first`.
core::Lease lease_from_row(const Statement& row, int first);

core::Result<LeaseAttempt> try_lease(Connection& db, const LeaseRequest& request, Served& served);
core::Result<std::optional<core::Lease>> release(Connection& db,
                                                 const ReleaseRequest& request,
                                                 Served& served);
core::Result<std::vector<core::Lease>> renew_lease(Connection& db, const LeaseIdRequest& request);
core::Result<std::vector<core::Lease>> release_lease(Connection& db,
                                                     const LeaseIdRequest& request,
                                                     Served& served);
/// min(leases.expires_at, waiters.deadline), or nullopt when both tables are empty.
core::Result<std::optional<core::TimePoint>> select_next_lease_deadline(Connection& db);
core::Result<std::vector<core::Lease>> expire_leases(Connection& db,
                                                     core::TimePoint now,
                                                     Served& served);
/// Every active lease, grouped by id, oldest first.
core::Result<std::vector<core::Lease>> select_leases(Connection& db, core::TimePoint now);

/// Ends the node's lease if it lapsed (expires_at <= now), with a lease.expired event.
core::Result<std::optional<core::Lease>> end_lapsed_lease(Connection& db,
                                                          std::string_view node,
                                                          std::string_view actor,
                                                          core::TimePoint now);
/// Ends the active rows of lease `id` (all of them, or only `node`'s when set) with an event
/// of `kind` each; returns them (empty when none is active).
core::Result<std::vector<core::Lease>> end_lease(Connection& db,
                                                 std::string_view id,
                                                 std::string_view actor,
                                                 std::string_view kind,
                                                 core::TimePoint now);
/// Writes one new lease of `nodes` for `request` (ending lapsed rows first), with events.
/// The caller decided the nodes are free; the primary key refuses the write if not.
core::Result<LeaseAttempt> grant(Connection& db,
                                 const LeaseRequest& request,
                                 const std::vector<std::string>& nodes);

/// The active rows of lease `id`, by node.
core::Result<std::vector<core::Lease>> held_rows(Connection& db,
                                                 std::string_view id,
                                                 core::TimePoint now);

}  // namespace aviary::store::sql
