// The job rows as read: the column list with the queue position, and the read-only queries.
#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "store/sql/encoding.hpp"
#include "store/sql/jobs.hpp"

namespace aviary::store::sql {
namespace {

constexpr int kMaxJobsPerPage = 1000;

// Every query reads jobs through this list (FROM jobs AS j), in the order job_from_row reads
// it. The last column is the queue position: 1 + queued exclusive jobs of the node ahead, which
// the (node, state, seq) index counts without touching finished jobs.
constexpr std::string_view kJobColumns = R"sql(
j.seq, j.id, j.action, j.queue, j.node, j.params, j.requester, j.owner, j.lease_id,
j.unique_key, j.retry_of, j.state, j.exclusive, j.attempt, j.max_attempts, j.steps, j.step,
j.step_name, j.cancel_requested, j.created_at, j.run_at, j.started_at, j.finished_at,
j.heartbeat_at, j.runner, j.pgid, j.pgid_start_ticks, j.result, j.error,
CASE WHEN j.state = 'queued' AND j.exclusive = 1 THEN 1 + (
    SELECT count(*) FROM jobs AS e
    WHERE e.node = j.node AND e.state = 'queued' AND e.exclusive = 1 AND e.seq < j.seq)
ELSE 0 END)sql";

/// `SELECT kJobColumns FROM jobs AS j <rest>`, built once per call site.
std::string jobs_sql(std::string_view rest) {
    return fmt::format("SELECT {} FROM jobs AS j {}", kJobColumns, rest);
}

std::optional<core::TimePoint> optional_time(const Statement& row, int column) {
    if (row.is_null(column)) {
        return std::nullopt;
    }
    return row.time(column);
}

int int_of(const Statement& row, int column) {
    return static_cast<int>(row.int64(column));
}

core::Result<core::Job> job_from_row(const Statement& row) {
    core::Job job;
    job.seq = row.int64(0);
    job.id = row.text(1);
    job.action = row.text(2);
    job.queue = row.text(3);
    job.node = row.text(4);
    auto params = params_from_json(job.id, row.text(5));
    if (!params) {
        return params.error();
    }
    job.params = std::move(*params);
    job.requester = row.text(6);
    job.owner = row.text(7);
    job.lease_id = row.text(8);
    job.unique_key = row.text(9);
    job.retry_of = row.text(10);
    auto state = core::parse_job_state(row.text(11));
    if (!state) {
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("job {} has an unknown state \"{}\"", job.id, row.text(11))};
    }
    job.state = *state;
    job.exclusive = row.int64(12) != 0;
    job.attempt = int_of(row, 13);
    job.max_attempts = int_of(row, 14);
    job.steps = int_of(row, 15);
    job.step = int_of(row, 16);
    job.step_name = row.text(17);
    job.cancel_requested = row.int64(18) != 0;
    job.created_at = row.time(19);
    job.run_at = row.time(20);
    job.started_at = optional_time(row, 21);
    job.finished_at = optional_time(row, 22);
    job.heartbeat_at = optional_time(row, 23);
    job.runner = row.text(24);
    job.pgid = row.int64(25);
    job.pgid_start_ticks = static_cast<std::uint64_t>(row.int64(26));
    job.result = row.text(27);
    job.error = row.text(28);
    job.position = int_of(row, 29);
    return job;
}

core::Result<std::vector<core::Job>> collect_jobs(Statement& select) {
    std::vector<core::Job> jobs;
    while (true) {
        auto row = select.step();
        if (!row) {
            return row.error();
        }
        if (!*row) {
            return jobs;
        }
        auto job = job_from_row(select);
        if (!job) {
            return job.error();
        }
        jobs.push_back(std::move(*job));
    }
}

core::Result<std::optional<core::Job>> at_most_one(core::Result<std::vector<core::Job>> jobs) {
    if (!jobs) {
        return jobs.error();
    }
    if (jobs->empty()) {
        return std::optional<core::Job>{};
    }
    return std::optional<core::Job>{std::move(jobs->front())};
}

// Only the filters in use go into the SQL, so SQLite can pick the (node, seq), (state, seq) or
// (node, state, seq) index; each shape is prepared once and cached by its text.
std::string select_jobs_sql(const JobQuery& query) {
    std::string where = "WHERE 1 = 1";
    int param = 0;
    if (!query.node.empty()) {
        where += fmt::format(" AND j.node = ?{}", ++param);
    }
    if (query.state) {
        where += fmt::format(" AND j.state = ?{}", ++param);
    }
    if (query.before_seq) {
        where += fmt::format(" AND j.seq < ?{}", ++param);
    }
    return jobs_sql(fmt::format("{} ORDER BY j.seq DESC LIMIT ?{}", where, ++param));
}

void bind_job_filters(Statement& select, const JobQuery& query) {
    int param = 0;
    if (!query.node.empty()) {
        select.bind(++param, query.node);
    }
    if (query.state) {
        select.bind(++param, core::to_string(*query.state));
    }
    if (query.before_seq) {
        select.bind(++param, *query.before_seq);
    }
    select.bind(++param, std::int64_t{std::clamp(query.limit, 1, kMaxJobsPerPage)});
}

}  // namespace

core::Result<std::optional<core::Job>> find_job(Connection& db, std::string_view id) {
    static const std::string sql = jobs_sql("WHERE j.id = ?1");
    auto select = db.prepare(sql);
    if (!select) {
        return select.error();
    }
    select->bind_all(id);
    return at_most_one(collect_jobs(*select));
}

/// The active job holding `key`. The terms match the partial index's WHERE, so it is used.
core::Result<std::optional<core::Job>> find_active_job_by_key(Connection& db,
                                                              std::string_view key) {
    static const std::string sql = jobs_sql(fmt::format(
        "WHERE j.unique_key = ?1 AND j.unique_key <> '' AND j.state IN {}", kActiveJobStates));
    auto select = db.prepare(sql);
    if (!select) {
        return select.error();
    }
    select->bind_all(key);
    return at_most_one(collect_jobs(*select));
}
core::Result<bool> row_exists(Connection& db, std::string_view sql, std::string_view key) {
    auto select = db.prepare(sql);
    if (!select) {
        return select.error();
    }
    auto row = select->bind_all(key).step();
    if (!row) {
        return row.error();
    }
    return *row;
}

core::Error job_not_found(std::string_view id) {
    return core::Error{core::ErrorCode::kNotFound, fmt::format("job {} not found", id)};
}
core::Result<core::Job> select_job(Connection& db, std::string_view id) {
    auto job = find_job(db, id);
    if (!job) {
        return job.error();
    }
    if (!*job) {
        return job_not_found(id);
    }
    return std::move(**job);
}

core::Result<std::vector<core::Job>> select_jobs(Connection& db, const JobQuery& query) {
    auto select = db.prepare(select_jobs_sql(query));
    if (!select) {
        return select.error();
    }
    bind_job_filters(*select, query);
    return collect_jobs(*select);
}

core::Result<std::vector<core::Job>> select_active_jobs(Connection& db) {
    static const std::string sql =
        jobs_sql(fmt::format("WHERE j.state IN {} ORDER BY j.seq", kRunningJobStates));
    auto select = db.prepare(sql);
    if (!select) {
        return select.error();
    }
    return collect_jobs(*select);
}

core::Result<JobCounts> count_jobs(Connection& db) {
    static const std::string sql = fmt::format(
        "SELECT count(CASE WHEN state = 'queued' THEN 1 END), "
        "count(CASE WHEN state <> 'queued' THEN 1 END), "
        "min(CASE WHEN state = 'queued' THEN created_at END) FROM jobs WHERE state IN {}",
        kActiveJobStates);
    auto select = db.prepare(sql);
    if (!select) {
        return select.error();
    }
    auto row = select->step();
    if (!row) {
        return row.error();
    }
    AVIARY_ASSERT(*row, "an aggregate query returns one row");
    return JobCounts{.queued = select->int64(0),
                     .running = select->int64(1),
                     .oldest_queued = optional_time(*select, 2)};
}

core::Result<std::optional<core::TimePoint>> select_next_job_run_at(Connection& db,
                                                                    core::TimePoint now) {
    auto select = db.prepare("SELECT min(run_at) FROM jobs WHERE state = 'queued' AND run_at > ?1");
    if (!select) {
        return select.error();
    }
    select->bind_all(now);
    return optional_time(*select);
}

}  // namespace aviary::store::sql
