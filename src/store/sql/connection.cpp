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
