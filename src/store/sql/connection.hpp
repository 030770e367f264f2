#pragma once
// Private to src/store and its unit tests: what the store's rules need of a database
// connection, whichever backend holds it (SQLite or PostgreSQL; docs/architecture.md,
// "Store"). The rules in src/store/sql write one SQL text for both: `?1`, `?2`... parameters
// (a PostgreSQL connection renumbers them `$1`, `$2`...), integers for times and flags, TEXT
// for JSON. Where the dialects part, a rule asks dialect().
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/core.hpp"

namespace aviary::store::sql {

enum class Dialect { kSqlite, kPostgres };

/// What a notification says changed (Connection::notify's `kind`).
namespace change {
inline constexpr char kJobsQueued = 'q';  ///< a job became runnable (subject: "")
inline constexpr char kJob = 'j';         ///< a job's state, step or output (subject: its id)
inline constexpr char kCancel = 'c';      ///< a running job is asked to stop (subject: its id)
inline constexpr char kGranted = 'g';     ///< a waiter was granted (subject: its ticket)
/// Log records were stored (the log store's channel; subject: "WRITER FIRST LAST NOTES SCOPE",
/// postgres/log_store.cpp).
inline constexpr char kLogs = 'l';
}  // namespace change

/// A backend's prepared statement in use: parameters in, rows out. Statement wraps it.
class Cursor {
public:
    virtual ~Cursor() = default;
    virtual void bind_int64(int index, std::int64_t value) = 0;
    virtual void bind_text(int index, std::string_view value) = 0;
    virtual void bind_null(int index) = 0;
    /// Runs the statement on the first call; then advances to the next row: true when there
    /// is one, false when done.
    virtual core::Result<bool> step() = 0;
    virtual bool is_null(int column) const = 0;
    /// An integer column (a boolean reads as 0 or 1).
    virtual std::int64_t int64(int column) const = 0;
    virtual std::string text(int column) const = 0;
    /// Forgets the bindings and the rows, so the statement can be used again.
    virtual void reset() = 0;
};

/// One use of a cached prepared statement: bind, step, read columns. The destructor resets
/// it so the cache can hand it out again (and so a half-stepped SELECT does not pin a read
/// transaction open).
class Statement {
public:
    explicit Statement(Cursor& cursor) : cursor_(&cursor) {}
    ~Statement() {
        if (cursor_ != nullptr) {
            cursor_->reset();
        }
    }
    Statement(Statement&& other) noexcept : cursor_(std::exchange(other.cursor_, nullptr)) {}
    Statement& operator=(Statement&&) = delete;
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    Statement& bind(int index, std::int64_t value) {
        cursor_->bind_int64(index, value);
        return *this;
    }
    Statement& bind(int index, std::string_view value) {
        cursor_->bind_text(index, value);
        return *this;
    }
    /// Times are stored as milliseconds since the Unix epoch.
    Statement& bind(int index, core::TimePoint value) {
        return bind(index, static_cast<std::int64_t>(value.time_since_epoch().count()));
    }
    Statement& bind(int index, std::nullopt_t) {
        cursor_->bind_null(index);
        return *this;
    }
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
    core::Result<bool> step() { return cursor_->step(); }
    /// Steps to the end, for statements that return no rows.
    core::Result<void> run();
    /// Steps to the end, turning each row into a value with `from_row(*this)`.
    template <class F>
    auto rows(F from_row) -> core::Result<std::vector<decltype(from_row(*this))>> {
        std::vector<decltype(from_row(*this))> out;
        while (true) {
            auto row = step();
            if (!row) {
                return row.error();
            }
            if (!*row) {
                return out;
            }
            out.push_back(from_row(*this));
        }
    }

    bool is_null(int column) const { return cursor_->is_null(column); }
    std::int64_t int64(int column) const { return cursor_->int64(column); }
    std::string text(int column) const { return cursor_->text(column); }
    core::TimePoint time(int column) const { return core::TimePoint{core::Millis{int64(column)}}; }

private:
    Cursor* cursor_;
};

/// An open database connection. Not thread-safe: the owner serialises every use (the writer
/// thread, a borrowed read connection, or an in-memory database's mutex).
class Connection {
public:
    virtual ~Connection() = default;

    virtual Dialect dialect() const = 0;
    /// A cached prepared statement for `sql`, prepared on first use.
    virtual core::Result<Statement> prepare(std::string_view sql) = 0;
    /// Runs one statement that takes no parameters and returns no rows (transaction control
    /// on the hot path: SAVEPOINT, RELEASE, COMMIT).
    virtual core::Result<void> run(std::string_view sql) = 0;
    /// Runs a script of statements (settings, migrations).
    virtual core::Result<void> exec(std::string_view sql) = 0;
    /// Rows changed by the last INSERT, UPDATE or DELETE.
    virtual std::int64_t changes() const = 0;
    /// Rows changed by every INSERT, UPDATE and DELETE since the connection opened, where a
    /// failed statement is known to change nothing (SQLite undoes a statement that fails part
    /// way). Two equal readings around an operation mean it wrote nothing: a group commit
    /// need not undo it (GroupCommit::Isolation). nullopt where that cannot be told
    /// (PostgreSQL: a failed statement aborts the whole transaction).
    virtual std::optional<std::int64_t> total_changes() const { return std::nullopt; }
    /// True when no transaction is open (SQLite rolls back by itself on some errors; a
    /// PostgreSQL transaction in error counts as open: it still needs its ROLLBACK).
    virtual bool in_autocommit() const = 0;
    /// True when the server connection is lost (PostgreSQL; never on SQLite): the open
    /// transaction went with it.
    virtual bool lost() const { return false; }
    /// Opens the connection again when the server dropped it (PostgreSQL; a no-op where it
    /// cannot be lost). kUnavailable naming why while the database stays unreachable.
    virtual core::Result<void> recover() { return {}; }
    /// Opens the write transaction a batch of operations runs in. Concurrent writers (other
    /// processes on the same database) wait here, so every rule sees the state it decides on
    /// until its commit.
    virtual core::Result<void> begin_write() = 0;
    /// Opens a read-only transaction that sees one state of the database throughout.
    virtual core::Result<void> begin_read() = 0;
    /// Tells the other instances sharing the database what this transaction changed, once it
    /// commits (PostgreSQL's NOTIFY; nothing on SQLite, which has no other instance). A hint:
    /// a receiver re-reads the store. `kind` is one of the Change letters.
    virtual void notify(char kind, std::string_view subject) {
        (void)kind;
        (void)subject;
    }
    /// Sends what notify() queued, inside the open transaction (it leaves with the COMMIT).
    virtual core::Result<void> send_notifications() { return {}; }
    /// Forgets what notify() queued (the transaction rolls back).
    virtual void drop_notifications() {}
    /// A kStorage error naming `what` and the database's own message.
    virtual core::Error error(std::string_view what) const = 0;
    /// Where the database is, for messages (never a password).
    virtual const std::string& name() const = 0;
};

/// Steps `statement` to the end, calling `row(statement)` for each row; the first failed
/// step's error. A `row` that returns a core::Result<void> stops the walk with its error.
template <class Row>
core::Result<void> each_row(Statement& statement, Row row) {
    while (true) {
        auto more = statement.step();
        if (!more) {
            return more.error();
        }
        if (!*more) {
            return {};
        }
        if constexpr (std::is_void_v<std::invoke_result_t<Row&, Statement&>>) {
            row(statement);
        } else if (auto kept = row(statement); !kept) {
            return kept;
        }
    }
}

/// The version recorded in the schema_version table, made when missing (0 for a new database).
core::Result<int> read_schema_version(Connection& db);

/// kUnavailable when the database's schema is newer than `latest`, the newest this build
/// knows: an older aviary must not write to it.
core::Result<void> check_schema_known(const Connection& db, int current, int latest);

/// A subquery whose rows are the strings of the JSON array bound to parameter `param`
/// (`?N`): json_each on SQLite, json_array_elements_text on PostgreSQL.
std::string json_array_values(Dialect dialect, int param);

/// Steps `statement` once and reads column 0 as a time: nullopt for no row or NULL (what
/// `SELECT min(...)` gives over no rows).
core::Result<std::optional<core::TimePoint>> optional_time(Statement& statement);

}  // namespace aviary::store::sql
