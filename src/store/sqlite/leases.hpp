#pragma once
// Private to src/store/sqlite: the SQL of leases. Every function runs inside the writer's
// transaction and appends the events of what it changed.
#include <optional>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "store/sqlite/connection.hpp"
#include "store/store.hpp"

namespace aviary::store::sqlite {

/// The lease columns every query selects, in the order lease_from_row reads them.
inline constexpr std::string_view kLeaseColumns =
    "id, node, owner, reason, acquired_at, expires_at";
/// Reads kLeaseColumns starting at `first`.
core::Lease lease_from_row(const Statement& row, int first);

core::Result<LeaseAttempt> try_lease(Connection& db, const LeaseRequest& request);
core::Result<std::optional<core::Lease>> release(Connection& db, const ReleaseRequest& request);
core::Result<std::vector<core::Lease>> expire_leases(Connection& db, core::TimePoint now);
/// Ends the node's lease if it lapsed (expires_at <= now), with a lease.expired event.
core::Result<std::optional<core::Lease>> end_lapsed_lease(Connection& db,
                                                          std::string_view node,
                                                          std::string_view actor,
                                                          core::TimePoint now);

}  // namespace aviary::store::sqlite
