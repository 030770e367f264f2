#include "store/sqlite/connection.hpp"

#include <fmt/format.h>

#include <memory>
#include <mutex>

#include "core/regex.hpp"
#include "store/sqlite/libsqlite.hpp"
#include "store/sqlite/wal_vfs.hpp"

namespace aviary::store::sqlite {

/// One cached sqlite3_stmt. Bind failures are bugs (a wrong index, or a statement reused
/// while busy), not store errors.
class SqliteConnection::Cursor final : public sql::Cursor {
public:
    Cursor(sqlite3_stmt* stmt, SqliteConnection& db) : stmt_(stmt), db_(db) {}
    ~Cursor() override { sqlite3_finalize(stmt_); }
    Cursor(const Cursor&) = delete;
    Cursor& operator=(const Cursor&) = delete;

    void bind_int64(int index, std::int64_t value) override {
        AVIARY_ASSERT(sqlite3_bind_int64(stmt_, index, value) == SQLITE_OK, "bind index is valid");
    }
    void bind_text(int index, std::string_view value) override {
        // SQLITE_TRANSIENT copies: callers pass views of temporaries.
        int rc = sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                                   SQLITE_TRANSIENT);
        AVIARY_ASSERT(rc == SQLITE_OK, "bind index is valid");
    }
    void bind_null(int index) override {
        AVIARY_ASSERT(sqlite3_bind_null(stmt_, index) == SQLITE_OK, "bind index is valid");
    }
    core::Result<bool> step() override {
        int rc = sqlite3_step(stmt_);
        if (rc == SQLITE_ROW) {
            return true;
        }
        if (rc == SQLITE_DONE) {
            return false;
        }
        return db_.error(sqlite3_sql(stmt_));
    }
    bool is_null(int column) const override {
        return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
    }
    std::int64_t int64(int column) const override { return sqlite3_column_int64(stmt_, column); }
    std::string text(int column) const override {
        const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
        if (data == nullptr) {
            return {};
        }
        return std::string(data, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
    }
    void reset() override {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
    }
    bool busy() const { return sqlite3_stmt_busy(stmt_) != 0; }

private:
    sqlite3_stmt* stmt_;
    SqliteConnection& db_;
};

namespace {

/// Once per process, before the first connection: SQLite's allocation statistics (which no one
/// here reads) cost a global mutex on every malloc and free of every connection.
void configure_library() {
    static std::once_flag once;
    std::call_once(once, [] {
        // SQLITE_MISUSE when something already initialised the library: harmless, it keeps
        // its defaults.
        (void)disable_sqlite_memstatus();
    });
}

}  // namespace

core::Result<std::unique_ptr<SqliteConnection>> SqliteConnection::open(const std::string& path,
                                                                       Mode mode,
                                                                       core::Millis busy_timeout) {
    // NOMUTEX: every connection is used by one thread at a time (see sql::Connection), so
    // SQLite's own per-connection mutex would only cost.
    int flags = SQLITE_OPEN_NOMUTEX;
    flags |= mode == Mode::kReadOnly ? SQLITE_OPEN_READONLY
                                     : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (auto loaded = load_sqlite(); !loaded) {
        return loaded.error();
    }
    configure_library();
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &db, flags, wal_gathering_vfs());
    if (rc != SQLITE_OK) {
        std::string why = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        sqlite3_close(db);
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("cannot open database {}: {}", path, why)};
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, static_cast<int>(busy_timeout.count()));
    // Temporary b-trees (a sort, a statement journal for a savepoint) stay in memory: on disk
    // each one is a file created, written, unlinked and closed inside the writer's serial
    // section, once per commit (bench/RESULTS.md, "The job path on SQLite").
    if (char* error = nullptr;
        sqlite3_exec(db, "PRAGMA temp_store = MEMORY", nullptr, nullptr, &error) != SQLITE_OK) {
        std::string why = error != nullptr ? error : "unknown error";
        sqlite3_free(error);
        sqlite3_close(db);
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("cannot configure database {}: {}", path, why)};
    }
    return std::unique_ptr<SqliteConnection>(new SqliteConnection(db, path));
}

SqliteConnection::SqliteConnection(sqlite3* db, std::string path)
    : db_(db), path_(std::move(path)) {}

SqliteConnection::~SqliteConnection() {
    statements_.clear();  // finalized before the handle closes
    sqlite3_close(db_);
}

namespace {

void regexp(sqlite3_context* context, int, sqlite3_value** argv) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_value_text(argv[1]));
    if (text == nullptr) {
        sqlite3_result_int(context, 0);
        return;
    }
    if (const auto* cached = static_cast<const core::Regex*>(sqlite3_get_auxdata(context, 0))) {
        sqlite3_result_int(context, cached->search(text) ? 1 : 0);
        return;
    }
    const auto* pattern = reinterpret_cast<const char*>(sqlite3_value_text(argv[0]));
    auto compiled = core::Regex::compile(pattern != nullptr ? pattern : "");
    if (!compiled) {
        sqlite3_result_error(context, compiled.error().message.c_str(), -1);
        return;
    }
    auto owned = std::make_unique<core::Regex>(std::move(*compiled));
    sqlite3_result_int(context, owned->search(text) ? 1 : 0);
    // Last: SQLite may free it during the call (sqlite3_set_auxdata's contract).
    sqlite3_set_auxdata(context, 0, owned.release(),
                        [](void* p) { delete static_cast<core::Regex*>(p); });
}

}  // namespace

core::Result<void> SqliteConnection::add_regexp() {
    if (sqlite3_create_function_v2(db_, "regexp", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                                   regexp, nullptr, nullptr, nullptr) != SQLITE_OK) {
        return error("cannot add the regexp function");
    }
    return {};
}

core::Result<sql::Statement> SqliteConnection::prepare(std::string_view sql) {
    auto it = statements_.find(sql);
    if (it == statements_.end()) {
        sqlite3_stmt* stmt = nullptr;
        int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
        if (rc != SQLITE_OK) {
            return error(fmt::format("cannot prepare \"{}\"", sql));
        }
        it = statements_.emplace(std::string{sql}, std::make_unique<Cursor>(stmt, *this)).first;
    }
    AVIARY_ASSERT(!it->second->busy(), "a cached statement is used by one Statement at a time");
    return sql::Statement{*it->second};
}

core::Result<void> SqliteConnection::run(std::string_view sql) {
    auto stmt = prepare(sql);
    if (!stmt) {
        return stmt.error();
    }
    return stmt->run();
}

core::Result<void> SqliteConnection::exec(std::string_view sql) {
    std::string owned{sql};
    char* message = nullptr;
    int rc = sqlite3_exec(db_, owned.c_str(), nullptr, nullptr, &message);
    if (rc != SQLITE_OK) {
        std::string why = message != nullptr ? message : sqlite3_errstr(rc);
        sqlite3_free(message);
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("sqlite {}: {} ({})", path_, why, owned)};
    }
    return {};
}

std::int64_t SqliteConnection::changes() const {
    return sqlite3_changes64(db_);
}

std::optional<std::int64_t> SqliteConnection::total_changes() const {
    return sqlite3_total_changes64(db_);
}

bool SqliteConnection::in_autocommit() const {
    return sqlite3_get_autocommit(db_) != 0;
}

core::Error SqliteConnection::error(std::string_view what) const {
    return core::Error{core::ErrorCode::kStorage,
                       fmt::format("sqlite {}: {} ({})", path_, sqlite3_errmsg(db_), what)};
}

core::Result<void> use_wal(SqliteConnection& db) {
    auto mode = db.prepare("PRAGMA journal_mode = WAL");
    if (!mode) {
        return mode.error();
    }
    auto row = mode->step();
    if (!row) {
        return row.error();
    }
    if (!*row || mode->text(0) != "wal") {
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("database {} cannot use WAL mode", db.name())};
    }
    return {};
}

}  // namespace aviary::store::sqlite
