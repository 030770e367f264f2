#include "store/sql/connection.hpp"

#include <fmt/format.h>

namespace aviary::store::sql {

core::Result<void> Statement::run() {
    while (true) {
        auto row = step();
        if (!row) {
            return row.error();
        }
        if (!*row) {
            return {};
        }
    }
}

core::Result<int> read_schema_version(Connection& db) {
    auto made =
        db.exec(db.dialect() == Dialect::kPostgres
                    ? "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)"
                    : "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
    if (!made) {
        return made.error();
    }
    auto select = db.prepare("SELECT coalesce(max(version), 0) FROM schema_version");
    if (!select) {
        return select.error();
    }
    auto row = select->step();
    if (!row) {
        return row.error();
    }
    return static_cast<int>(select->int64(0));
}

core::Result<void> check_schema_known(const Connection& db, int current, int latest) {
    if (current <= latest) {
        return {};
    }
    return core::Error{core::ErrorCode::kUnavailable,
                       fmt::format("database {} has schema version {}, newer than this aviary "
                                   "knows ({}); run a newer aviary",
                                   db.name(), current, latest)};
}

std::string json_array_values(Dialect dialect, int param) {
    if (dialect == Dialect::kPostgres) {
        return fmt::format("SELECT json_array_elements_text(CAST(?{} AS json))", param);
    }
    return fmt::format("SELECT value FROM json_each(?{})", param);
}

core::Result<std::optional<core::TimePoint>> optional_time(Statement& statement) {
    auto row = statement.step();
    if (!row) {
        return row.error();
    }
    if (!*row || statement.is_null(0)) {
        return std::optional<core::TimePoint>{};
    }
    return std::optional<core::TimePoint>{statement.time(0)};
}

}  // namespace aviary::store::sql
