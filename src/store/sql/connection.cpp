#include "store/sql/connection.hpp"

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
