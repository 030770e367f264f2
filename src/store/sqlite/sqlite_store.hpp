#pragma once
// Private to src/store and its unit tests: opening the SQLite backend.
#include <memory>

#include "core/core.hpp"
#include "store/store.hpp"

namespace aviary::store::sqlite {

/// Opens (creating if needed) and migrates to the newest schema. store::open() calls this.
core::Result<std::unique_ptr<Store>> open_sqlite(const Settings& settings);
/// Applies migrations only up to `version`: how tests make a database as an older aviary
/// left it.
core::Result<std::unique_ptr<Store>> open_sqlite_at_version_for_test(const Settings& settings,
                                                                     int version);

}  // namespace aviary::store::sqlite
