// SQLite, opened on first use rather than linked.
//
// Only `aviary serve` and the commands that open a store use SQLite; the sidecar and the client
// commands never do, and a linked libsqlite3 costs every process its relocations, symbol
// tables and the pages around them (~250 KB resident in `aviary supervise`). As with OpenSSL
// (src/net/openssl.cpp), this file defines each SQLite function the binary calls, checked against
// sqlite3.h's own declarations (a signature that differs does not compile), and forwards it to
// the address found in libsqlite3.so.0, opened by load_sqlite(). A function used but not listed
// is a link error naming it: add it to the table. docs/architecture.md says which dependencies
// load on first use.
#include "store/sqlite/libsqlite.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <stdexcept>

// X(return type, name, (parameters), (arguments))
#define AVIARY_SQLITE_FUNCTIONS(X)                                                               \
    X(int, sqlite3_bind_int64, (sqlite3_stmt * s, int i, sqlite3_int64 v), (s, i, v))            \
    X(int, sqlite3_bind_null, (sqlite3_stmt * s, int i), (s, i))                                 \
    X(int, sqlite3_bind_text, (sqlite3_stmt * s, int i, const char* v, int n, void (*d)(void*)), \
      (s, i, v, n, d))                                                                           \
    X(int, sqlite3_busy_timeout, (sqlite3 * db, int ms), (db, ms))                               \
    X(sqlite3_int64, sqlite3_changes64, (sqlite3 * db), (db))                                    \
    X(int, sqlite3_clear_bindings, (sqlite3_stmt * s), (s))                                      \
    X(int, sqlite3_close, (sqlite3 * db), (db))                                                  \
    X(int, sqlite3_column_bytes, (sqlite3_stmt * s, int c), (s, c))                              \
    X(sqlite3_int64, sqlite3_column_int64, (sqlite3_stmt * s, int c), (s, c))                    \
    X(const unsigned char*, sqlite3_column_text, (sqlite3_stmt * s, int c), (s, c))              \
    X(int, sqlite3_column_type, (sqlite3_stmt * s, int c), (s, c))                               \
    X(int, sqlite3_create_function_v2,                                                           \
      (sqlite3 * db, const char* name, int args, int flags, void* app,                           \
       void (*call)(sqlite3_context*, int, sqlite3_value**),                                     \
       void (*step)(sqlite3_context*, int, sqlite3_value**), void (*final)(sqlite3_context*),    \
       void (*destroy)(void*)),                                                                  \
      (db, name, args, flags, app, call, step, final, destroy))                                  \
    X(sqlite3_file*, sqlite3_database_file_object, (const char* name), (name))                   \
    X(const char*, sqlite3_errmsg, (sqlite3 * db), (db))                                         \
    X(const char*, sqlite3_errstr, (int rc), (rc))                                               \
    X(int, sqlite3_exec,                                                                         \
      (sqlite3 * db, const char* sql, int (*callback)(void*, int, char**, char**), void* arg,    \
       char** error),                                                                            \
      (db, sql, callback, arg, error))                                                           \
    X(int, sqlite3_extended_result_codes, (sqlite3 * db, int on), (db, on))                      \
    X(int, sqlite3_finalize, (sqlite3_stmt * s), (s))                                            \
    X(void, sqlite3_free, (void* p), (p))                                                        \
    X(int, sqlite3_get_autocommit, (sqlite3 * db), (db))                                         \
    X(void*, sqlite3_get_auxdata, (sqlite3_context * c, int n), (c, n))                          \
    X(int, sqlite3_open_v2, (const char* file, sqlite3** db, int flags, const char* vfs),        \
      (file, db, flags, vfs))                                                                    \
    X(int, sqlite3_prepare_v3,                                                                   \
      (sqlite3 * db, const char* sql, int bytes, unsigned int flags, sqlite3_stmt** s,           \
       const char** tail),                                                                       \
      (db, sql, bytes, flags, s, tail))                                                          \
    X(int, sqlite3_reset, (sqlite3_stmt * s), (s))                                               \
    X(void, sqlite3_result_error, (sqlite3_context * c, const char* text, int n), (c, text, n))  \
    X(void, sqlite3_result_int, (sqlite3_context * c, int v), (c, v))                            \
    X(void, sqlite3_set_auxdata, (sqlite3_context * c, int n, void* p, void (*d)(void*)),        \
      (c, n, p, d))                                                                              \
    X(const char*, sqlite3_sql, (sqlite3_stmt * s), (s))                                         \
    X(int, sqlite3_step, (sqlite3_stmt * s), (s))                                                \
    X(int, sqlite3_stmt_busy, (sqlite3_stmt * s), (s))                                           \
    X(sqlite3_int64, sqlite3_total_changes64, (sqlite3 * db), (db))                              \
    X(const unsigned char*, sqlite3_value_text, (sqlite3_value * v), (v))                        \
    X(sqlite3_vfs*, sqlite3_vfs_find, (const char* name), (name))                                \
    X(int, sqlite3_vfs_register, (sqlite3_vfs * vfs, int make_default), (vfs, make_default))

namespace aviary::store::sqlite {
namespace {

constexpr const char* kSoname = "libsqlite3.so.0";

struct Sqlite {
#define AVIARY_SQLITE_MEMBER(ret, name, params, args) decltype(&::name) name = nullptr;
    AVIARY_SQLITE_FUNCTIONS(AVIARY_SQLITE_MEMBER)
#undef AVIARY_SQLITE_MEMBER
    decltype(&::sqlite3_config) sqlite3_config = nullptr;
};

/// Opens libsqlite3 once per process (never unloaded); later calls return the first outcome.
const core::Result<Sqlite>& load() {
    static const core::Result<Sqlite> loaded = []() -> core::Result<Sqlite> {
        Sqlite lib;
#define AVIARY_SQLITE_SYMBOL(ret, name, params, args) core::LibrarySymbol{#name, &lib.name},
        auto opened = core::open_library(kSoname, "SQLite", "libsqlite3-0",
                                         {AVIARY_SQLITE_FUNCTIONS(AVIARY_SQLITE_SYMBOL)
                                              AVIARY_SQLITE_SYMBOL(int, sqlite3_config, (), ())},
                                         core::ErrorCode::kStorage);
#undef AVIARY_SQLITE_SYMBOL
        if (!opened) {
            return opened.error();
        }
        return lib;
    }();
    return loaded;
}

/// The loaded functions. SqliteConnection::open calls load_sqlite() first and reports its
/// error; past that a missing library can only be met here, and is thrown.
const Sqlite& library() {
    const auto& loaded = load();
    if (!loaded) {
        throw std::runtime_error(loaded.error().message);
    }
    return *loaded;
}

}  // namespace

core::Result<void> load_sqlite() {
    const auto& loaded = load();
    if (!loaded) {
        return loaded.error();
    }
    return {};
}

int disable_sqlite_memstatus() {
    return library().sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

}  // namespace aviary::store::sqlite

#define AVIARY_SQLITE_FORWARD(ret, name, params, args)     \
    extern "C" ret name params {                           \
        return aviary::store::sqlite::library().name args; \
    }
AVIARY_SQLITE_FUNCTIONS(AVIARY_SQLITE_FORWARD)
#undef AVIARY_SQLITE_FORWARD
