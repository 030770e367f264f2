#include "store/store.hpp"

#include <fmt/format.h>

#include "store/postgres/connection.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/sqlite/sqlite_store.hpp"

namespace aviary::store {

std::string describe(const Settings& settings) {
    return settings.driver == "postgres" ? postgres::redact_url(settings.url) : settings.path;
}

core::Result<std::unique_ptr<Store>> open(const Settings& settings) {
    if (settings.driver == "sqlite") {
        return sqlite::open_sqlite(settings);
    }
    if (settings.driver == "postgres") {
        return postgres::open_postgres(settings);
    }
    return core::Error{
        core::ErrorCode::kInvalidArgument,
        fmt::format("unknown store driver \"{}\" (sqlite, postgres)", settings.driver)};
}

}  // namespace aviary::store
