#pragma once
// Private to src/store: probe runs, their buckets and the schedule claims (docs/probes.md), the
// same SQL on both backends.
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "store/sql/connection.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

core::Result<std::int64_t> insert_probe_run(Connection& db, const ProbeRun& run);
core::Result<std::vector<ProbeRun>> select_probe_runs(Connection& db,
                                                      std::string_view scenario,
                                                      int limit,
                                                      std::int64_t before_id);
core::Result<std::vector<ProbeRun>> select_latest_probe_runs(Connection& db);
core::Result<std::vector<ProbeBucket>> select_probe_buckets(Connection& db, core::TimePoint since);
core::Result<std::vector<ProbeBucket>> select_probe_totals(Connection& db, core::TimePoint since);
core::Result<bool> claim_probe(Connection& db,
                               std::string_view scenario,
                               std::optional<core::TimePoint> seen,
                               core::TimePoint next);
core::Result<std::vector<ProbeSlot>> select_probe_schedule(Connection& db);
core::Result<std::int64_t> delete_probe_runs(Connection& db,
                                             core::TimePoint runs_before,
                                             core::TimePoint buckets_before);

}  // namespace aviary::store::sql
