// Probe runs (docs/probes.md). A run and its bucket's counts are written in one transaction;
// a schedule claim is a conditional update on the time the claimer read, so of several
// instances racing for one run exactly one changes the row.
#include "store/sql/probes.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <string>

namespace aviary::store::sql {
namespace {

constexpr std::string_view kColumns =
    "id, scenario, started_at, duration_ms, outcome, failed_step, message, steps, instance";

ProbeRun run_from_row(const Statement& row) {
    return ProbeRun{.id = row.int64(0),
                    .scenario = row.text(1),
                    .started_at = row.time(2),
                    .duration = core::Millis{row.int64(3)},
                    .outcome = row.text(4),
                    .failed_step = row.text(5),
                    .message = row.text(6),
                    .steps = row.text(7),
                    .instance = row.text(8)};
}

ProbeBucket bucket_from_row(const Statement& row) {
    return ProbeBucket{.scenario = row.text(0),
                       .start = row.time(1),
                       .runs = row.int64(2),
                       .failed = row.int64(3),
                       .broken = row.int64(4),
                       .duration_ms = row.int64(5)};
}

std::int64_t bucket_of(core::TimePoint at) {
    auto ms = at.time_since_epoch().count();
    auto width = kProbeBucket.count();
    return ms - ((ms % width) + width) % width;
}

}  // namespace

core::Result<std::int64_t> insert_probe_run(Connection& db, const ProbeRun& run) {
    auto insert = db.prepare(
        "INSERT INTO probe_runs (scenario, started_at, duration_ms, outcome, failed_step, "
        "message, steps, instance) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id");
    if (!insert) {
        return insert.error();
    }
    insert->bind_all(run.scenario, run.started_at, static_cast<std::int64_t>(run.duration.count()),
                     run.outcome, run.failed_step, run.message, run.steps, run.instance);
    auto row = insert->step();
    if (!row) {
        return row.error();
    }
    if (!*row) {
        return db.error("a probe run's id");
    }
    const std::int64_t id = insert->int64(0);
    if (auto done = insert->run(); !done) {
        return done.error();
    }
    auto bucket = db.prepare(
        "INSERT INTO probe_buckets (scenario, start, runs, failed, broken, duration_ms) "
        "VALUES (?1, ?2, 1, ?3, ?4, ?5) ON CONFLICT (scenario, start) DO UPDATE SET "
        "runs = probe_buckets.runs + 1, failed = probe_buckets.failed + excluded.failed, "
        "broken = probe_buckets.broken + excluded.broken, "
        "duration_ms = probe_buckets.duration_ms + excluded.duration_ms");
    if (!bucket) {
        return bucket.error();
    }
    auto counted =
        bucket
            ->bind_all(run.scenario, bucket_of(run.started_at),
                       std::int64_t{run.outcome == "failed"}, std::int64_t{run.outcome == "broken"},
                       static_cast<std::int64_t>(run.duration.count()))
            .run();
    if (!counted) {
        return counted.error();
    }
    return id;
}

core::Result<std::vector<ProbeRun>> select_probe_runs(Connection& db,
                                                      std::string_view scenario,
                                                      int limit,
                                                      std::int64_t before_id) {
    auto select =
        db.prepare(fmt::format("SELECT {} FROM probe_runs WHERE scenario = ?1 AND id < ?2 "
                               "ORDER BY id DESC LIMIT ?3",
                               kColumns));
    if (!select) {
        return select.error();
    }
    const std::int64_t below = before_id > 0 ? before_id : INT64_MAX;
    return select->bind_all(scenario, below, std::int64_t{limit}).rows(run_from_row);
}

core::Result<std::vector<ProbeRun>> select_latest_probe_runs(Connection& db) {
    auto select = db.prepare(
        fmt::format("SELECT {} FROM probe_runs WHERE id IN "
                    "(SELECT max(id) FROM probe_runs GROUP BY scenario) ORDER BY scenario",
                    kColumns));
    if (!select) {
        return select.error();
    }
    return select->rows(run_from_row);
}

core::Result<std::vector<ProbeBucket>> select_probe_buckets(Connection& db, core::TimePoint since) {
    auto select = db.prepare(
        "SELECT scenario, start, runs, failed, broken, duration_ms FROM probe_buckets "
        "WHERE start >= ?1 ORDER BY scenario, start");
    if (!select) {
        return select.error();
    }
    return select->bind_all(bucket_of(since)).rows(bucket_from_row);
}

core::Result<std::vector<ProbeBucket>> select_probe_totals(Connection& db, core::TimePoint since) {
    auto select = db.prepare(
        "SELECT scenario, min(start), sum(runs), sum(failed), sum(broken), sum(duration_ms) "
        "FROM probe_buckets WHERE start >= ?1 GROUP BY scenario ORDER BY scenario");
    if (!select) {
        return select.error();
    }
    return select->bind_all(bucket_of(since)).rows(bucket_from_row);
}

core::Result<bool> claim_probe(Connection& db,
                               std::string_view scenario,
                               std::optional<core::TimePoint> seen,
                               core::TimePoint next) {
    if (!seen) {
        auto insert = db.prepare(
            "INSERT INTO probe_schedule (scenario, next_run_at) VALUES (?1, ?2) "
            "ON CONFLICT (scenario) DO NOTHING");
        if (!insert) {
            return insert.error();
        }
        if (auto done = insert->bind_all(scenario, next).run(); !done) {
            return done.error();
        }
        return db.changes() == 1;
    }
    auto update = db.prepare(
        "UPDATE probe_schedule SET next_run_at = ?3 WHERE scenario = ?1 AND next_run_at = ?2");
    if (!update) {
        return update.error();
    }
    if (auto done = update->bind_all(scenario, *seen, next).run(); !done) {
        return done.error();
    }
    return db.changes() == 1;
}

core::Result<std::vector<ProbeSlot>> select_probe_schedule(Connection& db) {
    auto select = db.prepare("SELECT scenario, next_run_at FROM probe_schedule ORDER BY scenario");
    if (!select) {
        return select.error();
    }
    return select->rows([](const Statement& row) {
        return ProbeSlot{.scenario = row.text(0), .next_run_at = row.time(1)};
    });
}

core::Result<std::int64_t> delete_probe_runs(Connection& db,
                                             core::TimePoint runs_before,
                                             core::TimePoint buckets_before) {
    auto runs = db.prepare("DELETE FROM probe_runs WHERE started_at < ?1");
    if (!runs) {
        return runs.error();
    }
    if (auto done = runs->bind_all(runs_before).run(); !done) {
        return done.error();
    }
    const auto deleted = db.changes();
    auto buckets = db.prepare("DELETE FROM probe_buckets WHERE start < ?1");
    if (!buckets) {
        return buckets.error();
    }
    if (auto done = buckets->bind_all(buckets_before).run(); !done) {
        return done.error();
    }
    return deleted;
}

}  // namespace aviary::store::sql
