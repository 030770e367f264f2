#include "store/sqlite/connection.hpp"

#include <fmt/format.h>

namespace aviary::store::sqlite {

Statement::Statement(sqlite3_stmt* stmt, Connection& db) : stmt_(stmt), db_(&db) {}

Statement::Statement(Statement&& other) noexcept
    : stmt_(std::exchange(other.stmt_, nullptr)), db_(other.db_) {}

Statement::~Statement() {
    if (stmt_ != nullptr) {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
    }
}

// Bind failures are bugs (a wrong index, or a statement reused while busy), not store errors.
Statement& Statement::bind(int index, std::int64_t value) {
    AVIARY_ASSERT(sqlite3_bind_int64(stmt_, index, value) == SQLITE_OK, "bind index is valid");
    return *this;
}

Statement& Statement::bind(int index, std::string_view value) {
    // SQLITE_TRANSIENT copies: callers pass views of temporaries.
    int rc = sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                               SQLITE_TRANSIENT);
    AVIARY_ASSERT(rc == SQLITE_OK, "bind index is valid");
    return *this;
}

Statement& Statement::bind(int index, core::TimePoint value) {
    return bind(index, static_cast<std::int64_t>(value.time_since_epoch().count()));
}

Statement& Statement::bind(int index, std::nullopt_t) {
    AVIARY_ASSERT(sqlite3_bind_null(stmt_, index) == SQLITE_OK, "bind index is valid");
    return *this;
}

core::Result<bool> Statement::step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) {
        return true;
    }
    if (rc == SQLITE_DONE) {
        return false;
    }
    return db_->error(sqlite3_sql(stmt_));
}

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

bool Statement::is_null(int column) const {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

std::int64_t Statement::int64(int column) const {
    return sqlite3_column_int64(stmt_, column);
}

std::string Statement::text(int column) const {
    const auto* data = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    if (data == nullptr) {
        return {};
    }
    return std::string(data, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column)));
}

core::TimePoint Statement::time(int column) const {
    return core::TimePoint{core::Millis{int64(column)}};
}

core::Result<std::unique_ptr<Connection>> Connection::open(const std::string& path,
                                                           Mode mode,
                                                           core::Millis busy_timeout) {
    // NOMUTEX: every connection is used by one thread at a time (see the class comment), so
    // SQLite's own per-connection mutex would only cost.
    int flags = SQLITE_OPEN_NOMUTEX;
    flags |= mode == Mode::kReadOnly ? SQLITE_OPEN_READONLY
                                     : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    if (rc != SQLITE_OK) {
        std::string why = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        sqlite3_close(db);
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("cannot open database {}: {}", path, why)};
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, static_cast<int>(busy_timeout.count()));
    return std::unique_ptr<Connection>(new Connection(db, path));
}

Connection::~Connection() {
    for (auto& [sql, stmt] : statements_) {
        sqlite3_finalize(stmt);
    }
    sqlite3_close(db_);
}

core::Result<Statement> Connection::prepare(std::string_view sql) {
    auto it = statements_.find(sql);
    if (it == statements_.end()) {
        sqlite3_stmt* stmt = nullptr;
        int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
        if (rc != SQLITE_OK) {
            return error(fmt::format("cannot prepare \"{}\"", sql));
        }
        it = statements_.emplace(std::string{sql}, stmt).first;
    }
    AVIARY_ASSERT(sqlite3_stmt_busy(it->second) == 0,
                  "a cached statement is used by one Statement at a time");
    return Statement{it->second, *this};
}

core::Result<void> Connection::run(std::string_view sql) {
    auto stmt = prepare(sql);
    if (!stmt) {
        return stmt.error();
    }
    return stmt->run();
}

core::Result<void> Connection::exec(std::string_view sql) {
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

std::int64_t Connection::changes() const {
    return sqlite3_changes64(db_);
}

bool Connection::in_autocommit() const {
    return sqlite3_get_autocommit(db_) != 0;
}

core::Error Connection::error(std::string_view what) const {
    return core::Error{core::ErrorCode::kStorage,
                       fmt::format("sqlite {}: {} ({})", path_, sqlite3_errmsg(db_), what)};
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

}  // namespace aviary::store::sqlite
