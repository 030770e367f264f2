#pragma once
// Private to src/store/sqlite and its unit tests: one SQLite connection with its cache of
// prepared statements, and a RAII handle for using one cached statement.
#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/core.hpp"

namespace aviary::store::sqlite {

class Connection;

/// One use of a cached prepared statement: bind, step, read columns. The destructor resets
/// the statement and clears its bindings so the cache can hand it out again (and so a
/// half-stepped SELECT does not pin a read transaction open).
class Statement {
public:
    Statement(sqlite3_stmt* stmt, Connection& db);
    ~Statement();
    Statement(Statement&& other) noexcept;
    Statement& operator=(Statement&&) = delete;
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    Statement& bind(int index, std::int64_t value);
    Statement& bind(int index, std::string_view value);
    Statement& bind(int index, core::TimePoint value);
    Statement& bind(int index, std::nullopt_t);
    // Without these a string literal would pick the bool-ish int64 overload.
    Statement& bind(int index, const char* value) { return bind(index, std::string_view{value}); }
    Statement& bind(int index, const std::string& value) {
        return bind(index, std::string_view{value});
    }
    template <class T>
    Statement& bind(int index, const std::optional<T>& value) {
        return value ? bind(index, *value) : bind(index, std::nullopt);
    }

    /// Binds ?1, ?2, ... in order.
    template <class... Args>
    Statement& bind_all(const Args&... args) {
        int index = 0;
        (bind(++index, args), ...);
        return *this;
    }

    /// Advances to the next row: true when there is one, false when done.
    core::Result<bool> step();
    /// Steps to the end, for statements that return no rows.
    core::Result<void> run();

    bool is_null(int column) const;
    std::int64_t int64(int column) const;
    std::string text(int column) const;
    core::TimePoint time(int column) const;

private:
    sqlite3_stmt* stmt_;
    Connection* db_;
};

/// An open database handle. Not thread-safe: the owner serialises every use (the writer
/// thread, a borrowed read connection, or the in-memory database's mutex).
class Connection {
public:
    enum class Mode { kReadWrite, kReadOnly };

    static core::Result<std::unique_ptr<Connection>> open(const std::string& path,
                                                          Mode mode,
                                                          core::Millis busy_timeout);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    /// A cached prepared statement for `sql`, prepared on first use.
    core::Result<Statement> prepare(std::string_view sql);
    /// Runs one cached statement that takes no parameters and returns no rows (transaction
    /// control on the hot path: BEGIN, SAVEPOINT, COMMIT).
    core::Result<void> run(std::string_view sql);
    /// Runs a script of statements, prepared once (pragmas, migrations).
    core::Result<void> exec(std::string_view sql);
    /// Rows changed by the last INSERT, UPDATE or DELETE.
    std::int64_t changes() const;
    /// True when no transaction is open (SQLite rolls back by itself on some errors).
    bool in_autocommit() const;

    /// A kStorage error naming `what` and SQLite's own message.
    core::Error error(std::string_view what) const;
    const std::string& path() const { return path_; }

private:
    Connection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

    sqlite3* db_;
    std::string path_;
    std::map<std::string, sqlite3_stmt*, std::less<>> statements_;
};

/// Steps `statement` once and reads column 0 as a time: nullopt for no row or NULL (what
/// `SELECT min(...)` gives over no rows).
core::Result<std::optional<core::TimePoint>> optional_time(Statement& statement);

}  // namespace aviary::store::sqlite
