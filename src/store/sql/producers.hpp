#pragma once
// Private to src/store: producer leases, one per signing key, with a fence that only grows
// (docs/producers.md).
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "store/sql/connection.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

core::Result<ProducerLease> claim_producer(Connection& db,
                                           std::string_view key,
                                           std::string_view holder,
                                           core::Millis ttl,
                                           core::TimePoint now);
core::Result<void> release_producer(Connection& db,
                                    std::string_view key,
                                    std::string_view holder,
                                    std::int64_t fence,
                                    core::TimePoint now);
core::Result<std::vector<ProducerLease>> select_producers(Connection& db);

}  // namespace aviary::store::sql
