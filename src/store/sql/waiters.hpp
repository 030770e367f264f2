#pragma once
// Private to src/store: the SQL of waiters and the serving pass. Every function runs
// inside the writer's transaction (reads: on a read connection) and appends its events.
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

#include "core/core.hpp"
#include "store/serving.hpp"
#include "store/sql/connection.hpp"
#include "store/sql/leases.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

/// Waiting waiters whose deadline is after `now`, in serving order.
core::Result<std::vector<WaiterRecord>> select_waiting(Connection& db, core::TimePoint now);
/// Walks `queue` through `plan` and grants every waiter it can serve now: the lease rows,
/// the waiter marked granted with its lease id, and the events. Adds the grants to `served`.
core::Result<void> serve(Connection& db,
                         serving::Plan& plan,
                         const std::vector<WaiterRecord>& queue,
                         core::TimePoint now,
                         Served& served);
/// Loads the pool and the queue, then serve(). Cheap when nobody waits.
core::Result<void> serve_waiters(Connection& db, core::TimePoint now, Served& served);

core::Result<std::variant<LeaseAttempt, WaiterRecord>> enqueue(Connection& db,
                                                               const WaiterRecord& waiter,
                                                               Served& served);
core::Result<std::optional<WaiterRecord>> cancel_waiter(Connection& db,
                                                        std::string_view ticket,
                                                        std::string_view actor,
                                                        core::TimePoint now,
                                                        Served& served);
core::Result<WaiterRecord> select_waiter(Connection& db,
                                         std::string_view ticket,
                                         core::TimePoint now);
core::Result<std::vector<WaiterRecord>> select_waiters(Connection& db, core::TimePoint now);
core::Result<std::vector<WaiterRecord>> expire_waiters(Connection& db,
                                                       core::TimePoint now,
                                                       Served& served);
core::Result<std::vector<WaiterRecord>> drop_waiters(Connection& db,
                                                     std::string_view instance,
                                                     std::string_view actor,
                                                     core::TimePoint now);

}  // namespace aviary::store::sql
