#pragma once
// Private to src/store and its unit tests: one SQLite connection with its cache of prepared
// statements.
#include <sqlite3.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "core/core.hpp"
#include "store/sql/connection.hpp"

namespace aviary::store::sqlite {

/// An open SQLite database handle (sql::Connection's rules apply).
class SqliteConnection final : public sql::Connection {
public:
    enum class Mode { kReadWrite, kReadOnly };

    static core::Result<std::unique_ptr<SqliteConnection>> open(const std::string& path,
                                                                Mode mode,
                                                                core::Millis busy_timeout);
    ~SqliteConnection() override;
    SqliteConnection(const SqliteConnection&) = delete;
    SqliteConnection& operator=(const SqliteConnection&) = delete;

    sql::Dialect dialect() const override { return sql::Dialect::kSqlite; }
    core::Result<sql::Statement> prepare(std::string_view sql) override;
    core::Result<void> run(std::string_view sql) override;
    /// Runs a script of statements with sqlite3_exec (nothing cached).
    core::Result<void> exec(std::string_view sql) override;
    std::int64_t changes() const override;
    std::optional<std::int64_t> total_changes() const override;
    bool in_autocommit() const override;
    /// BEGIN IMMEDIATE: takes the database's one write lock now, not at the first write.
    core::Result<void> begin_write() override { return run("BEGIN IMMEDIATE"); }
    /// A read transaction in WAL mode sees the snapshot of its first read.
    core::Result<void> begin_read() override { return run("BEGIN"); }
    core::Error error(std::string_view what) const override;
    const std::string& name() const override { return path_; }
    /// Adds SQL's `regexp(pattern, text)`: whether `pattern` (RE2 syntax, core/regex.hpp) is
    /// found in `text` (NULL text: false). Each pattern is compiled once per statement; a bad
    /// pattern fails the statement with RE2's reason.
    core::Result<void> add_regexp();

private:
    class Cursor;
    SqliteConnection(sqlite3* db, std::string path);

    sqlite3* db_;
    std::string path_;
    std::map<std::string, std::unique_ptr<Cursor>, std::less<>> statements_;
};

/// Puts `db` in WAL mode (readers run beside the writer); kStorage when the file cannot use it.
core::Result<void> use_wal(SqliteConnection& db);

}  // namespace aviary::store::sqlite
