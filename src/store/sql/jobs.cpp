#include "store/sql/jobs.hpp"

#include <fmt/format.h>

#include <iterator>
#include <map>
#include <utility>

#include "store/sql/annotations.hpp"
#include "store/sql/encoding.hpp"
#include "store/sql/events.hpp"

namespace aviary::store::sql {
namespace {

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

bool is_running(core::JobState state) {
    return state == core::JobState::kRunning || state == core::JobState::kCancelling;
}

/// kBusy unless `job` is running (or cancelling) in `attempt`: someone else moved it on.
core::Result<void> check_running(const core::Job& job, int attempt) {
    if (!is_running(job.state)) {
        return core::Error{core::ErrorCode::kBusy,
                           fmt::format("job {} is no longer running (it is {})", job.id,
                                       core::to_string(job.state))};
    }
    if (job.attempt != attempt) {
        return core::Error{core::ErrorCode::kBusy,
                           fmt::format("job {} attempt {} is no longer running (attempt {} is)",
                                       job.id, attempt, job.attempt)};
    }
    return {};
}

/// The job after a guarded write that must have changed it (the writer holds the only write
/// connection, so nothing can move it between the read and the write).
core::Result<core::Job> reread(Connection& db, std::string_view id) {
    AVIARY_ASSERT(db.changes() == 1, "a guarded job write follows a read of the same state");
    return select_job(db, id);
}

/// The row as a guarded UPDATE just left it, built from the row read before it: the write path
/// (a claim, a finish) reads each job once. `apply` mirrors the UPDATE's SET list.
template <class Apply>
core::Job as_written(Connection& db, const core::Job& before, Apply apply) {
    AVIARY_ASSERT(db.changes() == 1, "a guarded job write follows a read of the same state");
    core::Job after = before;
    apply(after);
    return after;
}

core::Result<void> record(Connection& db,
                          core::TimePoint at,
                          std::string_view actor,
                          std::string_view kind,
                          const core::Job* before,
                          const core::Job& after) {
    db.notify(change::kJob, after.id);
    if (after.state == core::JobState::kQueued) {
        db.notify(change::kJobsQueued, "");  // new, retrying or rescued: runnable somewhere
    } else if (kind == "job.cancel_requested") {
        db.notify(change::kCancel, after.id);
    }
    return append_event(
        db, core::Event{.at = at,
                        .actor = std::string{actor.empty() ? kSystemActor : actor},
                        .kind = std::string{kind},
                        .node = after.node,
                        .before = before != nullptr ? job_to_json(*before) : std::string{kNoState},
                        .after = job_to_json(after)});
}

// --- submit ---------------------------------------------------------------------------------

core::Result<void> check_submit(const JobSubmit& submit) {
    const auto& job = submit.job;
    if (job.id.empty() || job.action.empty() || job.node.empty()) {
        return invalid("a job needs an id, an action and a node");
    }
    if (job.queue.empty()) {
        return invalid(fmt::format("job {} needs a queue", job.id));
    }
    if (submit.acquire && (!submit.acquire->selector.empty() ||
                           (!submit.acquire->node.empty() && submit.acquire->node != job.node))) {
        return invalid(
            fmt::format("the implicit acquire of job {} must name its node {}", job.id, job.node));
    }
    return {};
}

/// The node's maintenance reason ("" in service); kNotFound for an unknown node.
core::Result<std::string> node_maintenance(Connection& db, std::string_view node) {
    auto select = db.prepare("SELECT maintenance_reason FROM nodes WHERE name = ?1");
    if (!select) {
        return select.error();
    }
    auto row = select->bind_all(node).step();
    if (!row) {
        return row.error();
    }
    if (!*row) {
        return core::Error{core::ErrorCode::kNotFound, fmt::format("unknown node {}", node)};
    }
    return select->text(0);
}

/// try_lease inside a nested savepoint: a refusal (or an error) undoes whatever serving the
/// waiters wrote on the way, so a refused submission writes nothing.
core::Result<LeaseAttempt> acquire(Connection& db, const JobSubmit& submit, Served& served) {
    LeaseRequest request = *submit.acquire;
    request.node = submit.job.node;
    if (request.actor.empty()) {
        request.actor = submit.actor;
    }
    if (auto saved = db.run("SAVEPOINT submit_job"); !saved) {
        return saved.error();
    }
    Served granted;
    auto attempt = try_lease(db, request, granted);
    if (attempt && attempt->granted) {
        if (auto released = db.run("RELEASE submit_job"); !released) {
            return released.error();
        }
        std::move(granted.begin(), granted.end(), std::back_inserter(served));
        return attempt;
    }
    if (!db.in_autocommit()) {
        (void)db.run("ROLLBACK TO submit_job");
        (void)db.run("RELEASE submit_job");
    }
    return attempt;
}

/// require_unheld: the active lease on the node that refuses the submission, if any.
core::Result<std::optional<core::Lease>> blocking_lease(Connection& db, const JobSubmit& submit) {
    static const std::string sql =
        fmt::format("SELECT {} FROM leases WHERE node = ?1 AND expires_at > ?2", kLeaseColumns);
    auto select = db.prepare(sql);
    if (!select) {
        return select.error();
    }
    auto row = select->bind_all(submit.job.node, submit.job.created_at).step();
    if (!row) {
        return row.error();
    }
    if (!*row) {
        return std::optional<core::Lease>{};
    }
    auto lease = lease_from_row(*select, 0);
    if (!submit.allowed_holder.empty() && lease.owner == submit.allowed_holder) {
        return std::optional<core::Lease>{};
    }
    return std::optional<core::Lease>{std::move(lease)};
}

core::Result<void> insert_job(Connection& db, const core::Job& job) {
    auto insert = db.prepare(
        "INSERT INTO jobs (id, action, queue, node, params, requester, owner, lease_id, "
        "unique_key, retry_of, state, exclusive, attempt, max_attempts, steps, created_at, "
        "run_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'queued', ?11, 0, ?12, ?13, "
        "?14, ?15)");
    if (!insert) {
        return insert.error();
    }
    return insert
        ->bind_all(job.id, job.action, job.queue, job.node, params_to_json(job.params),
                   job.requester, job.owner, job.lease_id, job.unique_key, job.retry_of,
                   std::int64_t{job.exclusive ? 1 : 0}, std::int64_t{job.max_attempts},
                   std::int64_t{job.steps}, job.created_at, job.run_at)
        .run();
}

// --- claim ----------------------------------------------------------------------------------

/// The actions at their cap, as a JSON array for json_each. Only running jobs are counted, so
/// this reads a handful of rows through the state index.
core::Result<std::string> capped_actions(Connection& db, const JobClaim& claim) {
    std::vector<std::string> capped;
    if (claim.action_caps.empty()) {
        return strings_to_json_array(capped);
    }
    static const std::string sql = fmt::format(
        "SELECT action, count(*) FROM jobs WHERE state IN {} GROUP BY action", kRunningJobStates);
    auto select = db.prepare(sql);
    if (!select) {
        return select.error();
    }
    std::map<std::string, std::int64_t, std::less<>> running;
    auto read =
        each_row(*select, [&](Statement& row) { running.emplace(row.text(0), row.int64(1)); });
    if (!read) {
        return read.error();
    }
    for (const auto& [action, cap] : claim.action_caps) {
        auto it = running.find(action);
        if ((it != running.end() ? it->second : 0) >= cap) {
            capped.push_back(action);
        }
    }
    return strings_to_json_array(capped);
}

// The first runnable queued job in seq order (see Store::claim_job). The outer scan walks the
// (state, seq) index; each NOT EXISTS is a lookup in (node, state, seq), the nodes' or the
// paused queues' primary key, so finished jobs are never read. Maintenance is read here, in
// the claiming transaction: an exclusive job admitted before its node went out of service (or
// racing it) waits until the node is back. Read-only jobs run there, as admission allows.
constexpr std::string_view kFirstRunnable = R"sql(
SELECT j.id FROM jobs AS j
WHERE j.state = 'queued' AND j.run_at <= ?1
  AND j.action NOT IN ({capped})
  AND NOT EXISTS (SELECT 1 FROM paused_queues AS p WHERE p.name = j.queue)
  AND (j.exclusive = 0 OR (
      NOT EXISTS (SELECT 1 FROM nodes AS n
                  WHERE n.name = j.node AND n.maintenance_reason <> '')
      AND NOT EXISTS (SELECT 1 FROM jobs AS r
                  WHERE r.node = j.node AND r.state IN ('running', 'cancelling')
                    AND r.exclusive = 1)
      AND NOT EXISTS (SELECT 1 FROM jobs AS e
                      WHERE e.node = j.node AND e.state = 'queued' AND e.exclusive = 1
                        AND e.seq < j.seq)))
ORDER BY j.seq
LIMIT 1)sql";

core::Result<std::optional<std::string>> first_runnable(Connection& db, const JobClaim& claim) {
    auto capped = capped_actions(db, claim);
    if (!capped) {
        return capped.error();
    }
    static const std::string sqlite = fmt::format(
        fmt::runtime(kFirstRunnable), fmt::arg("capped", json_array_values(Dialect::kSqlite, 2)));
    static const std::string postgres = fmt::format(
        fmt::runtime(kFirstRunnable), fmt::arg("capped", json_array_values(Dialect::kPostgres, 2)));
    auto select = db.prepare(db.dialect() == Dialect::kPostgres ? postgres : sqlite);
    if (!select) {
        return select.error();
    }
    auto row = select->bind_all(claim.now, *capped).step();
    if (!row) {
        return row.error();
    }
    if (!*row) {
        return std::optional<std::string>{};
    }
    return std::optional<std::string>{select->text(0)};
}

// --- finish ---------------------------------------------------------------------------------

core::Result<void> check_finish(const JobFinish& finish) {
    bool retry = finish.state == core::JobState::kQueued && finish.retry_at.has_value();
    if (!core::is_terminal(finish.state) && !retry) {
        return invalid(fmt::format(
            "job {} cannot finish as {}: succeeded, failed, cancelled, timed_out, or queued "
            "with a retry time",
            finish.id, core::to_string(finish.state)));
    }
    return {};
}

std::string finish_kind(const JobFinish& finish) {
    if (!finish.event_kind.empty()) {
        return finish.event_kind;
    }
    if (finish.state == core::JobState::kQueued) {
        return "job.retrying";
    }
    return fmt::format("job.{}", core::to_string(finish.state));
}

core::Result<void> write_finish(Connection& db, const JobFinish& finish) {
    std::string_view result = finish.result.empty() ? kNoState : std::string_view{finish.result};
    if (core::is_terminal(finish.state)) {
        static const std::string sql = fmt::format(
            "UPDATE jobs SET state = ?2, finished_at = ?3, pgid = 0, pgid_start_ticks = 0, "
            "result = ?4, error = ?5 WHERE id = ?1 AND attempt = ?6 AND state IN {}",
            kRunningJobStates);
        auto update = db.prepare(sql);
        if (!update) {
            return update.error();
        }
        return update
            ->bind_all(finish.id, core::to_string(finish.state), finish.now, result, finish.error,
                       std::int64_t{finish.attempt})
            .run();
    }
    // A retry waits as queued from step 0; the next claim makes the next attempt.
    static const std::string sql = fmt::format(
        "UPDATE jobs SET state = 'queued', run_at = ?2, pgid = 0, pgid_start_ticks = 0, "
        "step = 0, step_name = '', result = ?3, error = ?4 "
        "WHERE id = ?1 AND attempt = ?5 AND state IN {}",
        kRunningJobStates);
    auto update = db.prepare(sql);
    if (!update) {
        return update.error();
    }
    return update
        ->bind_all(finish.id, *finish.retry_at, result, finish.error, std::int64_t{finish.attempt})
        .run();
}

/// A terminal finish as write_finish's first SET list left the row.
core::Job as_finished(Connection& db, const core::Job& before, const JobFinish& finish) {
    return as_written(db, before, [&finish](core::Job& job) {
        job.state = finish.state;
        job.finished_at = finish.now;
        job.pgid = 0;
        job.pgid_start_ticks = 0;
        job.result = finish.result.empty() ? std::string{kNoState} : finish.result;
        job.error = finish.error;
    });
}

/// The tag the node runs now (a removed node has nothing to record).
core::Result<void> set_deployed_tag(Connection& db, std::string_view node, std::string_view tag) {
    auto update = db.prepare("UPDATE nodes SET deployed_tag = ?2 WHERE name = ?1");
    if (!update) {
        return update.error();
    }
    return update->bind_all(node, tag).run();
}

// --- cancel ---------------------------------------------------------------------------------

core::Result<void> cancel_queued(Connection& db,
                                 std::string_view id,
                                 std::string_view actor,
                                 core::TimePoint now) {
    auto update = db.prepare(
        "UPDATE jobs SET state = 'cancelled', finished_at = ?2, "
        "error = CASE WHEN error = '' THEN ?3 ELSE error END "
        "WHERE id = ?1 AND state = 'queued'");
    if (!update) {
        return update.error();
    }
    return update->bind_all(id, now, fmt::format("cancelled by {}", actor)).run();
}

core::Result<void> request_cancel(Connection& db, std::string_view id) {
    auto update = db.prepare(
        "UPDATE jobs SET state = 'cancelling', cancel_requested = 1 "
        "WHERE id = ?1 AND state = 'running'");
    if (!update) {
        return update.error();
    }
    return update->bind_all(id).run();
}

}  // namespace

core::Result<JobSubmitted> submit_job(Connection& db, const JobSubmit& submit, Served& served) {
    if (auto valid = check_submit(submit); !valid) {
        return valid.error();
    }
    core::Job job = submit.job;
    auto existing = find_job(db, job.id);
    if (!existing) {
        return existing.error();
    }
    if (*existing) {
        return core::Error{core::ErrorCode::kAlreadyExists,
                           fmt::format("job {} already exists", job.id)};
    }
    auto maintenance = node_maintenance(db, job.node);
    if (!maintenance) {
        return maintenance.error();
    }
    if (submit.refuse_in_maintenance && !maintenance->empty()) {
        return JobSubmitted{
            .job = std::move(job), .refused = true, .maintenance_reason = std::move(*maintenance)};
    }
    JobSubmitted out;
    if (submit.acquire) {
        auto taken = acquire(db, submit, served);
        if (!taken) {
            return taken.error();
        }
        if (!taken->granted) {
            return JobSubmitted{.job = std::move(job), .refused = true, .refusal = taken->refusal};
        }
        job.lease_id = taken->leases.front().id;
        out.lease = std::move(*taken);
    } else if (submit.require_unheld) {
        auto holder = blocking_lease(db, submit);
        if (!holder) {
            return holder.error();
        }
        if (*holder) {
            return JobSubmitted{
                .job = std::move(job),
                .refused = true,
                .refusal = Refusal{.holders = {std::move(**holder)}, .matching = 1, .leased = 1}};
        }
    }
    // Uniqueness after the lease rules: a caller the node would refuse is refused, not handed
    // someone else's job.
    if (!job.unique_key.empty()) {
        auto active = find_active_job_by_key(db, job.unique_key);
        if (!active) {
            return active.error();
        }
        if (*active) {
            out.job = std::move(**active);
            out.duplicate = true;
            return out;
        }
    }
    if (auto inserted = insert_job(db, job); !inserted) {
        return inserted.error();
    }
    if (auto annotated = insert_annotation(db, job); !annotated) {
        return annotated.error();
    }
    auto queued = select_job(db, job.id);
    if (!queued) {
        return queued.error();
    }
    auto actor = submit.actor.empty() ? std::string_view{job.requester} : submit.actor;
    if (auto recorded = record(db, job.created_at, actor, "job.queued", nullptr, *queued);
        !recorded) {
        return recorded.error();
    }
    out.job = std::move(*queued);
    return out;
}

core::Result<std::optional<core::Job>> claim_job(Connection& db, const JobClaim& claim) {
    auto id = first_runnable(db, claim);
    if (!id) {
        return id.error();
    }
    if (!*id) {
        return std::optional<core::Job>{};
    }
    auto before = select_job(db, **id);
    if (!before) {
        return before.error();
    }
    auto update = db.prepare(
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, started_at = ?2, "
        "heartbeat_at = ?2, runner = ?3, step = 0, step_name = '', pgid = 0, "
        "pgid_start_ticks = 0, error = '' WHERE id = ?1 AND state = 'queued'");
    if (!update) {
        return update.error();
    }
    if (auto done = update->bind_all(**id, claim.now, claim.runner).run(); !done) {
        return done.error();
    }
    auto after = as_written(db, *before, [&claim](core::Job& job) {  // the SET list above
        job.state = core::JobState::kRunning;
        job.attempt += 1;
        job.started_at = claim.now;
        job.heartbeat_at = claim.now;
        job.runner = claim.runner;
        job.step = 0;
        job.step_name.clear();
        job.pgid = 0;
        job.pgid_start_ticks = 0;
        job.error.clear();
        job.position = 0;  // counted for queued jobs only
    });
    if (auto marked = mark_annotation_started(db, **id, claim.now); !marked) {
        return marked.error();
    }
    if (auto recorded = record(db, claim.now, kSystemActor, "job.started", &*before, after);
        !recorded) {
        return recorded.error();
    }
    return std::optional<core::Job>{std::move(after)};
}

core::Result<core::Job> update_job_step(Connection& db, const JobStepUpdate& update) {
    auto before = find_job(db, update.id);
    if (!before) {
        return before.error();
    }
    if (!*before) {
        return job_not_found(update.id);
    }
    if (auto running = check_running(**before, update.attempt); !running) {
        return running.error();
    }
    static const std::string sql = fmt::format(
        "UPDATE jobs SET step = ?3, step_name = ?4, pgid = ?5, pgid_start_ticks = ?6, "
        "heartbeat_at = ?7 WHERE id = ?1 AND attempt = ?2 AND state IN {}",
        kRunningJobStates);
    auto write = db.prepare(sql);
    if (!write) {
        return write.error();
    }
    auto done = write
                    ->bind_all(update.id, std::int64_t{update.attempt}, std::int64_t{update.step},
                               update.step_name, update.pgid,
                               static_cast<std::int64_t>(update.pgid_start_ticks), update.now)
                    .run();
    if (!done) {
        return done.error();
    }
    auto after = reread(db, update.id);
    if (!after) {
        return after;
    }
    // One event per step: the pgid recorded once the child is spawned is no news.
    if ((*before)->step != after->step) {
        if (auto recorded = record(db, update.now, kSystemActor, "job.step", &**before, *after);
            !recorded) {
            return recorded.error();
        }
    }
    return after;
}

core::Result<void> heartbeat_jobs(Connection& db,
                                  const std::vector<std::string>& ids,
                                  core::TimePoint now) {
    static const std::string sql = fmt::format(
        "UPDATE jobs SET heartbeat_at = ?2 WHERE id = ?1 AND state IN {}", kRunningJobStates);
    for (const auto& id : ids) {
        auto update = db.prepare(sql);
        if (!update) {
            return update.error();
        }
        if (auto done = update->bind_all(id, now).run(); !done) {
            return done;
        }
    }
    return {};
}

core::Result<core::Job> finish_job(Connection& db, const JobFinish& finish) {
    if (auto valid = check_finish(finish); !valid) {
        return valid.error();
    }
    auto before = find_job(db, finish.id);
    if (!before) {
        return before.error();
    }
    if (!*before) {
        return job_not_found(finish.id);
    }
    if (auto running = check_running(**before, finish.attempt); !running) {
        return running.error();
    }
    if (auto written = write_finish(db, finish); !written) {
        return written.error();
    }
    // A retry is queued again, with a queue position only a read can count.
    auto after = core::is_terminal(finish.state)
                     ? core::Result<core::Job>{as_finished(db, **before, finish)}
                     : reread(db, finish.id);
    if (!after) {
        return after;
    }
    if (core::is_terminal(finish.state)) {
        auto marked = mark_annotation_ended(db, finish.id, finish.state, finish.error, finish.now);
        if (!marked) {
            return marked.error();
        }
    }
    if (finish.state == core::JobState::kSucceeded && finish.deployed_tag) {
        if (auto set = set_deployed_tag(db, after->node, *finish.deployed_tag); !set) {
            return set.error();
        }
    }
    if (auto recorded =
            record(db, finish.now, finish.actor, finish_kind(finish), &**before, *after);
        !recorded) {
        return recorded.error();
    }
    return after;
}

core::Result<core::Job> cancel_job(Connection& db,
                                   std::string_view id,
                                   std::string_view actor,
                                   core::TimePoint now) {
    auto before = find_job(db, id);
    if (!before) {
        return before.error();
    }
    if (!*before) {
        return job_not_found(id);
    }
    const core::Job& job = **before;
    if (job.state == core::JobState::kCancelling) {
        return job;  // already asked: the running step is being ended
    }
    if (core::is_terminal(job.state)) {
        return invalid(fmt::format("job {} already {}", id, core::to_string(job.state)));
    }
    bool queued = job.state == core::JobState::kQueued;
    auto written = queued ? cancel_queued(db, id, actor.empty() ? kSystemActor : actor, now)
                          : request_cancel(db, id);
    if (!written) {
        return written.error();
    }
    auto after = reread(db, id);
    if (!after) {
        return after;
    }
    if (queued) {
        auto marked = mark_annotation_ended(db, id, after->state, after->error, now);
        if (!marked) {
            return marked.error();
        }
    }
    auto kind = queued ? "job.cancelled" : "job.cancel_requested";
    if (auto recorded = record(db, now, actor, kind, &job, *after); !recorded) {
        return recorded.error();
    }
    return after;
}
core::Result<std::int64_t> prune_jobs(Connection& db, core::TimePoint before) {
    if (auto output = delete_output_of_finished(db, before); !output) {
        return output.error();
    }
    // `state || ''` keeps SQLite on the finished_at index: the state check is only a safeguard.
    static const std::string sql = fmt::format(
        "DELETE FROM jobs WHERE finished_at < ?1 AND state || '' IN {}", kTerminalJobStates);
    auto remove = db.prepare(sql);
    if (!remove) {
        return remove.error();
    }
    if (auto done = remove->bind_all(before).run(); !done) {
        return done.error();
    }
    auto pruned = db.changes();
    if (auto annotations = prune_annotations(db); !annotations) {
        return annotations.error();
    }
    return pruned;
}

}  // namespace aviary::store::sql
