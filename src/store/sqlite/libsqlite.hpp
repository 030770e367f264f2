#pragma once
// Private to src/store (and its tests): SQLite is opened on first use, not linked
// (libsqlite.cpp).

#include "core/core.hpp"

namespace aviary::store::sqlite {

/// Opens libsqlite3.so.0 if it is not open yet. An error (kStorage) names the library and why
/// it could not be opened; SqliteConnection::open calls this before anything else.
core::Result<void> load_sqlite();

/// sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) on the opened library: its allocation statistics
/// (which no one here reads) cost a global mutex on every malloc and free of every connection.
/// sqlite3_config is variadic, so it is called here rather than forwarded. Before the first
/// connection; SQLITE_MISUSE once the library is initialised.
int disable_sqlite_memstatus();

}  // namespace aviary::store::sqlite
