#pragma once
// Private to src/store: the SQL of jobs, their output and paused queues. Writes run
// inside the writer's transaction (a failing one undone alone) and append their events; reads
// run on a read connection. See the "jobs" section of store::Store for the contract.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "store/sql/connection.hpp"
#include "store/sql/leases.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

/// The states a job may still change from (the partial unique index on unique_key names them
/// the same way, so SQLite can use it).
inline constexpr std::string_view kActiveJobStates = "('queued', 'running', 'cancelling')";
/// The states of a job that is running an attempt.
inline constexpr std::string_view kRunningJobStates = "('running', 'cancelling')";
inline constexpr std::string_view kTerminalJobStates =
    "('succeeded', 'failed', 'cancelled', 'timed_out')";

/// The implicit acquire may serve waiters (a lapsed lease on the way); their grants go to
/// `served`. A refused acquire rolls back everything it wrote.
core::Result<JobSubmitted> submit_job(Connection& db, const JobSubmit& submit, Served& served);
core::Result<std::optional<core::Job>> claim_job(Connection& db, const JobClaim& claim);
core::Result<core::Job> update_job_step(Connection& db, const JobStepUpdate& update);
core::Result<void> heartbeat_jobs(Connection& db,
                                  const std::vector<std::string>& ids,
                                  core::TimePoint now);
core::Result<core::Job> finish_job(Connection& db, const JobFinish& finish);
core::Result<core::Job> cancel_job(Connection& db,
                                   std::string_view id,
                                   std::string_view actor,
                                   core::TimePoint now);

/// One job with its queue position, nullopt when unknown.
core::Result<std::optional<core::Job>> find_job(Connection& db, std::string_view id);
/// The active (queued, running, cancelling) job holding a non-empty unique key.
core::Result<std::optional<core::Job>> find_active_job_by_key(Connection& db, std::string_view key);
/// kNotFound, worded "job ID not found".
core::Error job_not_found(std::string_view id);
/// Whether `sql` (a "SELECT 1 FROM ... WHERE key = ?1") finds a row for `key`.
core::Result<bool> row_exists(Connection& db, std::string_view sql, std::string_view key);
/// One job with its queue position. kNotFound.
core::Result<core::Job> select_job(Connection& db, std::string_view id);
/// Newest first; the limit is clamped to 1..1000.
core::Result<std::vector<core::Job>> select_jobs(Connection& db, const JobQuery& query);
/// min(run_at) of queued jobs with run_at > now, or nullopt.
core::Result<std::optional<core::TimePoint>> select_next_job_run_at(Connection& db,
                                                                    core::TimePoint now);
/// Running or cancelling, oldest first.
core::Result<std::vector<core::Job>> select_active_jobs(Connection& db);
core::Result<JobCounts> count_jobs(Connection& db);
/// Deletes terminal jobs with finished_at < before, and their output; returns how many jobs.
core::Result<std::int64_t> prune_jobs(Connection& db, core::TimePoint before);

/// Inserts a queue's row (pausing) or deletes it (resuming), with an event when that changed
/// anything. kInvalidArgument for an empty name.
core::Result<void> set_queue_paused(Connection& db,
                                    std::string_view queue,
                                    bool paused,
                                    std::string_view actor,
                                    core::TimePoint now);
/// Sorted by name.
core::Result<std::vector<std::string>> select_paused_queues(Connection& db);

/// kNotFound for an unknown job; the store's error when a seq repeats.
core::Result<void> append_job_output(Connection& db,
                                     std::string_view id,
                                     const std::vector<core::OutputLine>& lines);
/// Ascending by seq; the limit is clamped to 1..10000.
core::Result<std::vector<core::OutputLine>> select_job_output(Connection& db,
                                                              const OutputQuery& query);
core::Result<std::int64_t> last_output_seq(Connection& db, std::string_view id);
/// Deletes the output of terminal jobs with finished_at < before (prune_jobs, first).
core::Result<void> delete_output_of_finished(Connection& db, core::TimePoint before);

}  // namespace aviary::store::sql
