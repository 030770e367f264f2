// Probe runs (docs/probes.md). A run and its bucket's counts are written in one transaction;
// a schedule claim is a conditional update on the time the claimer read, so of several
// instances racing for one run exactly one changes the row.
#include "store/sql/probes.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>

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

constexpr std::int64_t kHourMs = 3'600'000;
constexpr std::int64_t kDayMs = 24 * kHourMs;

/// Where a run is counted: its 5-minute bucket, its hour and its day, what windows of any
/// length are summed from.
struct CountTable {
    std::string_view name;
    std::int64_t width;  ///< ms
};
constexpr std::array<CountTable, 3> kCountTables{
    {{"probe_buckets", kProbeBucket.count()}, {"probe_hours", kHourMs}, {"probe_days", kDayMs}}};

/// `ms` down to a multiple of `width`.
std::int64_t floor_to(std::int64_t ms, std::int64_t width) {
    return ms - ((ms % width) + width) % width;
}

std::int64_t bucket_of(core::TimePoint at) {
    return floor_to(at.time_since_epoch().count(), kProbeBucket.count());
}

/// `ms` up to a multiple of `width`.
std::int64_t ceil_to(std::int64_t ms, std::int64_t width) {
    auto down = floor_to(ms, width);
    return down == ms ? ms : down + width;
}

/// Counts a run into `table`'s row for the period (of `width`) it started in.
core::Result<void> count_into(Connection& db,
                              std::string_view table,
                              std::int64_t width,
                              const ProbeRun& run) {
    auto upsert = db.prepare(
        fmt::format("INSERT INTO {0} (scenario, start, runs, failed, broken, duration_ms) "
                    "VALUES (?1, ?2, 1, ?3, ?4, ?5) ON CONFLICT (scenario, start) DO UPDATE SET "
                    "runs = {0}.runs + 1, failed = {0}.failed + excluded.failed, "
                    "broken = {0}.broken + excluded.broken, "
                    "duration_ms = {0}.duration_ms + excluded.duration_ms",
                    table));
    if (!upsert) {
        return upsert.error();
    }
    return upsert
        ->bind_all(run.scenario, floor_to(run.started_at.time_since_epoch().count(), width),
                   std::int64_t{run.outcome == "failed"}, std::int64_t{run.outcome == "broken"},
                   static_cast<std::int64_t>(run.duration.count()))
        .run();
}

/// The rows of `table` with from <= start < to, unordered. No ORDER BY or GROUP BY: with one,
/// SQLite's planner walks the whole table in its primary key's order instead of the start
/// index (2 s against 20 ms over 30 days of 1,000 scenarios).
core::Result<std::vector<ProbeBucket>> rows_between(Connection& db,
                                                    std::string_view table,
                                                    std::int64_t from,
                                                    std::int64_t to) {
    auto select =
        db.prepare(fmt::format("SELECT scenario, start, runs, failed, broken, duration_ms FROM {} "
                               "WHERE start >= ?1 AND start < ?2",
                               table));
    if (!select) {
        return select.error();
    }
    return select->bind_all(from, to).rows(bucket_from_row);
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
    for (const auto& table : kCountTables) {
        if (auto counted = count_into(db, table.name, table.width, run); !counted) {
            return counted.error();
        }
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
    auto rows = rows_between(db, "probe_buckets", bucket_of(since), INT64_MAX);
    if (!rows) {
        return rows;
    }
    std::sort(rows->begin(), rows->end(), [](const ProbeBucket& a, const ProbeBucket& b) {
        return std::tie(a.scenario, a.start) < std::tie(b.scenario, b.start);
    });
    return rows;
}

core::Result<std::vector<ProbeBucket>> select_probe_totals(Connection& db, core::TimePoint since) {
    // The window from its first bucket: buckets up to the next whole hour, hours up to the next
    // whole day, then days. At most 11 + 23 rows and one per day for each scenario.
    const auto from = bucket_of(since);
    const auto hour = ceil_to(from, kHourMs);
    const auto day = ceil_to(hour, kDayMs);
    std::map<std::string, ProbeBucket, std::less<>> totals;
    for (auto [table, lo, hi] : {std::tuple{std::string_view{"probe_buckets"}, from, hour},
                                 std::tuple{std::string_view{"probe_hours"}, hour, day},
                                 std::tuple{std::string_view{"probe_days"}, day, INT64_MAX}}) {
        if (lo >= hi) {
            continue;
        }
        auto rows = rows_between(db, table, lo, hi);
        if (!rows) {
            return rows.error();
        }
        for (auto& row : *rows) {
            auto [at, added] = totals.try_emplace(row.scenario, row);
            if (added) {
                continue;
            }
            auto& sum = at->second;
            sum.start = std::min(sum.start, row.start);
            sum.runs += row.runs;
            sum.failed += row.failed;
            sum.broken += row.broken;
            sum.duration_ms += row.duration_ms;
        }
    }
    std::vector<ProbeBucket> out;
    out.reserve(totals.size());
    for (auto& [scenario, sum] : totals) {
        out.push_back(std::move(sum));
    }
    return out;
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
    // An hour or a day goes once all of it is older than the buckets kept.
    const auto cutoff = buckets_before.time_since_epoch().count();
    for (const auto& table : kCountTables) {
        auto prune = db.prepare(fmt::format("DELETE FROM {} WHERE start < ?1", table.name));
        if (!prune) {
            return prune.error();
        }
        // A bucket goes by its start, as runs do.
        const bool bucket = table.name == kCountTables[0].name;
        if (auto done = prune->bind_all(bucket ? cutoff : cutoff - table.width + 1).run(); !done) {
            return done.error();
        }
    }
    return deleted;
}

}  // namespace aviary::store::sql
