#include "store/store.hpp"

#include <fmt/format.h>

#include "store/sqlite/sqlite_store.hpp"

namespace aviary::store {

core::Result<std::unique_ptr<Store>> open(const Settings& settings) {
    if (settings.driver == "sqlite") {
        return sqlite::open_sqlite(settings);
    }
    if (settings.driver == "postgres") {
        return core::Error{core::ErrorCode::kUnimplemented,
                           "the postgres store arrives with scale-out; use driver \"sqlite\""};
    }
    return core::Error{core::ErrorCode::kInvalidArgument,
                       fmt::format("unknown store driver \"{}\" (sqlite)", settings.driver)};
}

}  // namespace aviary::store
