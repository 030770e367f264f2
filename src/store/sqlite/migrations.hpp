#pragma once
// Private to src/store and its unit tests: the numbered schema migrations.
#include "core/core.hpp"
#include "store/sqlite/connection.hpp"

namespace aviary::store::sqlite {

/// The version the newest migration brings a database to.
int latest_schema_version();

/// Applies the migrations after the database's version up to `target`, each in its own
/// transaction that also records the new version. Returns the version reached. Refuses a
/// database newer than this build (kUnavailable: an older aviary must not write to it).
core::Result<int> migrate(SqliteConnection& db, int target);

}  // namespace aviary::store::sqlite
