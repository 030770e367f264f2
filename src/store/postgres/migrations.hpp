#pragma once
// Private to src/store and its unit tests: PostgreSQL's schema and its migrations. Versions
// are numbered as SQLite's (src/store/sqlite/migrations.cpp): a PostgreSQL database starts at
// the version SQLite had reached when PostgreSQL arrived, and every later migration is written
// for both.
#include "core/core.hpp"
#include "store/postgres/connection.hpp"

namespace aviary::store::postgres {

/// The version the newest migration brings a database to (SQLite's latest too).
int latest_schema_version();

/// Migrates the connection's current schema to the newest version, under a session-level
/// advisory lock on the writers' key: instances starting at once migrate once, the others
/// wait and find it done. Returns the version reached. kUnavailable for a schema newer than
/// this build knows (an older aviary must not write to it).
core::Result<int> migrate(PgConnection& db);

}  // namespace aviary::store::postgres
