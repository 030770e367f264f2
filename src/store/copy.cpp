#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <optional>
#include <ranges>
#include <set>
#include <variant>

#include "store/postgres/connection.hpp"
#include "store/postgres/migrations.hpp"
#include "store/sqlite/connection.hpp"
#include "store/sqlite/migrations.hpp"
#include "store/store.hpp"

namespace aviary::store {
namespace {

using sql::Connection;
using sql::Statement;

/// A table the copy moves, in an order that satisfies the foreign keys (leases name nodes).
struct Table {
    std::string_view name;
    std::string_view order_by;  ///< the source's key order, so the copy reads it as stored
    std::string_view identity;  ///< PostgreSQL's identity column, whose sequence moves past it
};

constexpr std::array<Table, 18> kTables{{
    {"nodes", "name", ""},
    {"leases", "node", ""},
    {"events", "id", "id"},
    {"waiters", "seq", "seq"},
    {"jobs", "seq", "seq"},
    {"job_output", "job_id, seq", ""},
    {"paused_queues", "name", ""},
    {"annotations", "job_id", ""},
    {"worker_ids", "id", ""},
    // Copied so a fence never goes back when a deployment moves.
    {"producer_leases", "key", ""},
    // Canary runs, their availability counts and when each scenario runs next.
    {"probe_runs", "id", "id"},
    {"probe_buckets", "scenario, start", ""},
    {"probe_hours", "scenario, start", ""},
    {"probe_days", "scenario, start", ""},
    {"probe_schedule", "scenario", ""},
    // Alarms keep their state (and so do not notify again), their notifications and silences.
    {"alarms", "name", ""},
    {"alarm_notifications", "id", "id"},
    {"silences", "id", ""},
}};

/// Tables each database keeps for itself: an instance's registration and leadership are the
/// running processes' own, the schema version and SQLite's sequences are bookkeeping.
constexpr std::array<std::string_view, 4> kNotCopied{"instances", "leaders", "schema_version",
                                                     "sqlite_sequence"};

struct Column {
    std::string name;
    bool integer = false;  ///< SQLite's declared INTEGER (times, counts, flags); else TEXT
};

using Value = std::optional<std::variant<std::int64_t, std::string>>;

/// PostgreSQL takes at most 65,535 parameters a statement; a batch stays well under it.
constexpr std::size_t kMaxParameters = 30'000;
constexpr std::size_t kMaxBatchRows = 500;

core::Error copy_error(std::string_view table, const core::Error& cause) {
    return core::Error{cause.code, fmt::format("copying table {}: {}", table, cause.message)};
}

core::Result<std::vector<std::string>> source_tables(Connection& source) {
    auto select = source.prepare("SELECT name FROM sqlite_master WHERE type = 'table'");
    if (!select) {
        return select.error();
    }
    std::vector<std::string> names;
    if (auto read = sql::each_row(*select, [&](Statement& row) { names.push_back(row.text(0)); });
        !read) {
        return read.error();
    }
    return names;
}

/// Refuses a source with a table this build does not know how to copy (a newer schema's): a
/// copy that silently left it behind would lose it.
core::Result<void> check_every_table_known(Connection& source) {
    auto names = source_tables(source);
    if (!names) {
        return names.error();
    }
    for (const auto& name : *names) {
        bool copied = std::any_of(kTables.begin(), kTables.end(),
                                  [&](const Table& table) { return table.name == name; });
        bool kept = std::find(kNotCopied.begin(), kNotCopied.end(), name) != kNotCopied.end();
        if (!copied && !kept) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("the source has a table this aviary does not copy: "
                                           "{} (is the SQLite store newer than this build?)",
                                           name)};
        }
    }
    return {};
}

core::Result<std::vector<Column>> source_columns(Connection& source, std::string_view table) {
    auto select =
        source.prepare("SELECT name, upper(type) FROM pragma_table_info(?1) ORDER BY cid");
    if (!select) {
        return select.error();
    }
    select->bind(1, table);
    std::vector<Column> columns;
    auto read = sql::each_row(*select, [&](Statement& row) {
        columns.push_back(Column{.name = row.text(0), .integer = row.text(1) == "INTEGER"});
    });
    if (!read) {
        return read.error();
    }
    return columns;
}

/// The destination's columns must be the source's: both were migrated to the same version, so
/// a difference is a defect to report, not a column to drop.
core::Result<void> check_same_columns(Connection& destination,
                                      std::string_view table,
                                      const std::vector<Column>& columns) {
    auto select = destination.prepare(
        "SELECT column_name::text FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ?1");
    if (!select) {
        return select.error();
    }
    select->bind(1, table);
    std::set<std::string> theirs;
    if (auto read = sql::each_row(*select, [&](Statement& row) { theirs.insert(row.text(0)); });
        !read) {
        return read.error();
    }
    std::set<std::string> ours;
    for (const auto& column : columns) {
        ours.insert(column.name);
    }
    if (ours != theirs) {
        return core::Error{
            core::ErrorCode::kStorage,
            fmt::format("the destination's columns differ from the source's: [{}] against [{}]",
                        fmt::join(theirs, ", "), fmt::join(ours, ", "))};
    }
    return {};
}

core::Result<std::int64_t> count_rows(Connection& db, std::string_view table) {
    auto select = db.prepare(fmt::format("SELECT count(*) FROM {}", table));
    if (!select) {
        return select.error();
    }
    auto row = select->step();
    if (!row) {
        return row.error();
    }
    return *row ? select->int64(0) : 0;
}

std::string insert_sql(std::string_view table,
                       const std::vector<Column>& columns,
                       std::size_t rows) {
    std::string text = fmt::format("INSERT INTO {} ({}) VALUES ", table,
                                   fmt::join(columns | std::views::transform(&Column::name), ", "));
    int parameter = 0;
    for (std::size_t row = 0; row < rows; ++row) {
        text += row == 0 ? "(" : ", (";
        for (std::size_t column = 0; column < columns.size(); ++column) {
            text += fmt::format("{}?{}", column == 0 ? "" : ", ", ++parameter);
        }
        text += ")";
    }
    return text;
}

core::Result<void> insert_batch(Connection& destination,
                                std::string_view table,
                                const std::vector<Column>& columns,
                                const std::vector<Value>& values) {
    auto insert = destination.prepare(insert_sql(table, columns, values.size() / columns.size()));
    if (!insert) {
        return insert.error();
    }
    int parameter = 0;
    for (const auto& value : values) {
        ++parameter;
        if (!value) {
            insert->bind(parameter, std::nullopt);
        } else if (const auto* integer = std::get_if<std::int64_t>(&*value)) {
            insert->bind(parameter, *integer);
        } else {
            insert->bind(parameter, std::get<std::string>(*value));
        }
    }
    return insert->run();
}

/// Streams one table from the source's snapshot into the destination's transaction in batches
/// of multi-row INSERTs; returns the rows moved.
core::Result<std::int64_t> copy_table(Connection& source,
                                      Connection& destination,
                                      const Table& table) {
    auto columns = source_columns(source, table.name);
    if (!columns) {
        return columns.error();
    }
    if (auto same = check_same_columns(destination, table.name, *columns); !same) {
        return same.error();
    }
    auto select =
        source.prepare(fmt::format("SELECT {} FROM {} ORDER BY {}",
                                   fmt::join(*columns | std::views::transform(&Column::name), ", "),
                                   table.name, table.order_by));
    if (!select) {
        return select.error();
    }
    const std::size_t batch_rows = std::min(kMaxBatchRows, kMaxParameters / columns->size());
    std::vector<Value> values;
    values.reserve(batch_rows * columns->size());
    std::int64_t moved = 0;
    auto flush = [&]() -> core::Result<void> {
        if (values.empty()) {
            return {};
        }
        auto rows = static_cast<std::int64_t>(values.size() / columns->size());
        if (auto inserted = insert_batch(destination, table.name, *columns, values); !inserted) {
            return core::Error{inserted.error().code,
                               fmt::format("rows {} to {}: {}", moved + 1, moved + rows,
                                           inserted.error().message)};
        }
        moved += rows;
        values.clear();
        return {};
    };
    auto read = sql::each_row(*select, [&](Statement& row) -> core::Result<void> {
        for (int i = 0; i < static_cast<int>(columns->size()); ++i) {
            if (row.is_null(i)) {
                values.emplace_back(std::nullopt);
            } else if ((*columns)[static_cast<std::size_t>(i)].integer) {
                values.emplace_back(row.int64(i));
            } else {
                values.emplace_back(row.text(i));
            }
        }
        return values.size() >= batch_rows * columns->size() ? flush() : core::Result<void>{};
    });
    if (!read) {
        return read.error();
    }
    if (auto flushed = flush(); !flushed) {
        return flushed.error();
    }
    if (!table.identity.empty()) {
        // Rows keep their ids; the next id the destination makes comes after them.
        auto moved_past = destination.exec(fmt::format(
            "SELECT setval(pg_get_serial_sequence('{0}', '{1}'), COALESCE(max({1}), 0) + 1, "
            "false) FROM {0}",
            table.name, table.identity));
        if (!moved_past) {
            return moved_past.error();
        }
    }
    return moved;
}

/// Refuses a destination that already holds rows, or empties it when asked to.
core::Result<void> prepare_destination(Connection& destination, const CopyOptions& options) {
    for (auto table = kTables.rbegin(); table != kTables.rend(); ++table) {
        if (options.replace) {
            if (auto emptied = destination.exec(fmt::format("DELETE FROM {}", table->name));
                !emptied) {
                return copy_error(table->name, emptied.error());
            }
            continue;
        }
        auto rows = count_rows(destination, table->name);
        if (!rows) {
            return copy_error(table->name, rows.error());
        }
        if (*rows > 0) {
            return core::Error{
                core::ErrorCode::kAlreadyExists,
                fmt::format(
                    "the destination already holds rows in table {1} ({0}): store copy fills "
                    "an empty database (--replace empties it first; stop every instance "
                    "on it before)",
                    *rows, table->name)};
        }
    }
    return {};
}

core::Result<std::unique_ptr<sqlite::SqliteConnection>> open_source(const Settings& from) {
    if (from.driver != "sqlite") {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           "store copy reads a SQLite store (sqlite:PATH)"};
    }
    std::error_code error;
    if (from.path.empty() || !std::filesystem::is_regular_file(from.path, error)) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("no SQLite store at {}", from.path)};
    }
    auto source = sqlite::SqliteConnection::open(
        from.path, sqlite::SqliteConnection::Mode::kReadWrite, from.busy_timeout);
    if (!source) {
        return source.error();
    }
    // As serve would on start: a store from an older aviary reaches this build's schema.
    if (auto migrated = sqlite::migrate(**source, sqlite::latest_schema_version()); !migrated) {
        return migrated.error();
    }
    return source;
}

core::Result<std::unique_ptr<postgres::PgConnection>> open_destination(const Settings& to) {
    if (to.driver != "postgres" || to.url.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           "store copy writes to a PostgreSQL store (postgresql://...)"};
    }
    // A batch of 500 rows is one statement: give it longer than a serve's busy_timeout.
    postgres::ConnectInfo info{
        .url = to.url,
        .password = to.password,
        .connect_timeout = to.connect_timeout,
        .query_timeout = std::max<core::Millis>(to.busy_timeout, std::chrono::minutes{1}),
        .application_name = "aviary store copy"};
    auto destination = postgres::PgConnection::open(info);
    if (!destination) {
        return destination.error();
    }
    if (auto migrated = postgres::migrate(**destination); !migrated) {
        return migrated.error();
    }
    return destination;
}

/// Everything between BEGIN and COMMIT: the destination's transaction rolls back when this
/// fails.
core::Result<CopyReport> copy_tables(Connection& source,
                                     Connection& destination,
                                     const CopyOptions& options) {
    if (auto known = check_every_table_known(source); !known) {
        return known.error();
    }
    if (auto prepared = prepare_destination(destination, options); !prepared) {
        return prepared.error();
    }
    CopyReport report;
    for (const auto& table : kTables) {
        auto counted = count_rows(source, table.name);
        if (!counted) {
            return copy_error(table.name, counted.error());
        }
        auto moved = copy_table(source, destination, table);
        if (!moved) {
            return copy_error(table.name, moved.error());
        }
        auto landed = count_rows(destination, table.name);
        if (!landed) {
            return copy_error(table.name, landed.error());
        }
        if (*moved != *counted || *landed != *counted) {
            return core::Error{
                core::ErrorCode::kStorage,
                fmt::format("copying table {}: the source holds {} rows, {} were read and the "
                            "destination holds {}; nothing was committed",
                            table.name, *counted, *moved, *landed)};
        }
        report.tables.push_back(
            CopyReport::Table{.name = std::string{table.name}, .rows = *landed});
    }
    return report;
}

}  // namespace

core::Result<CopyReport> copy(const Settings& from,
                              const Settings& to,
                              const CopyOptions& options) {
    auto source = open_source(from);
    if (!source) {
        return source.error();
    }
    auto destination = open_destination(to);
    if (!destination) {
        return destination.error();
    }
    // One snapshot of the source: a serve still writing to it does not tear the copy.
    if (auto reading = (*source)->begin_read(); !reading) {
        return reading.error();
    }
    if (auto writing = (*destination)->begin_write(); !writing) {
        return writing.error();
    }
    auto report = copy_tables(**source, **destination, options);
    if (!report) {
        (void)(*destination)->run("ROLLBACK");
        (void)(*source)->run("ROLLBACK");
        return report.error();
    }
    if (auto committed = (*destination)->run("COMMIT"); !committed) {
        return committed.error();
    }
    (void)(*source)->run("ROLLBACK");
    report->schema_version = postgres::latest_schema_version();
    return report;
}

}  // namespace aviary::store
