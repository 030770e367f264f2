#pragma once
// Private to src/store and its unit tests: the VFS every store connection opens its database
// through.
//
// It is the platform's default VFS with one change: a connection's writes to its WAL file are
// gathered in memory and reach the file as one write when SQLite next needs them there. SQLite
// writes each frame of a commit as two writes (a 24-byte frame header, then the page), so a
// commit of 28 pages cost 56 pwrite calls inside the writer's serial section; through this VFS
// it costs one (bench/RESULTS.md, "The lease path's WAL writes").
//
// The gathered bytes reach the file before anything can depend on them:
// - before the connection publishes a commit to other connections (SQLite's shared-memory
//   barrier, which comes before the new wal-index header is written), so a reader never sees
//   a frame count past what the file holds, and a commit that has returned is in the
//   operating system's hands exactly as without this VFS;
// - before any read, sync, truncate, size query or file control on the WAL, and before it
//   closes;
// - before a write that does not extend the gathered run (SQLite rewriting a frame of the same
//   transaction), which then goes to the file directly, in order.
// A run longer than a few MiB (a very large transaction) is written out as it grows.

namespace aviary::store::sqlite {

/// The name to pass to sqlite3_open_v2 (registered on first call; thread-safe). nullptr when
/// the default VFS cannot be wrapped, and then connections use the default VFS unchanged.
const char* wal_gathering_vfs();

}  // namespace aviary::store::sqlite
