#pragma once
// Private to src/store and its unit tests: one PostgreSQL connection (libpq) with its cache of
// prepared statements.
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "store/sql/connection.hpp"
#include "store/sql/read_pool.hpp"

struct pg_conn;
struct pg_result;

namespace aviary::store::postgres {

/// Where to connect and as whom. `url` is a libpq connection URI or keyword string; the
/// password comes apart from it (a file's contents or an environment variable), so the URL
/// can be logged.
struct ConnectInfo {
    std::string url;
    std::string password;  ///< empty: libpq's own (PGPASSWORD, ~/.pgpass, or none)
    core::Millis connect_timeout{std::chrono::seconds{5}};
    /// A statement unanswered this long is abandoned with its connection (a paused or
    /// partitioned server): the caller gets kUnavailable and the next use reconnects.
    core::Millis query_timeout{std::chrono::seconds{10}};
    std::string application_name = "aviary";
    /// Which writers this connection's write transactions exclude, and which channel it
    /// notifies on: "" for the main store's, "logs" for the log store's, so a flood of log
    /// lines never waits for, nor delays, a lease (docs/scaling.md).
    std::string lane;
};

/// `url` with any password in it replaced by "***": what messages and logs show.
std::string redact_url(std::string_view url);

/// An open PostgreSQL connection (sql::Connection's rules apply). Statements are prepared on
/// the server at their first run, with the parameter types of that run (int8 for integers,
/// text for text), and results come back as text.
class PgConnection final : public sql::Connection {
public:
    static core::Result<std::unique_ptr<PgConnection>> open(const ConnectInfo& info);
    ~PgConnection() override;
    PgConnection(const PgConnection&) = delete;
    PgConnection& operator=(const PgConnection&) = delete;

    sql::Dialect dialect() const override { return sql::Dialect::kPostgres; }
    /// `?N` parameters become `$N`.
    core::Result<sql::Statement> prepare(std::string_view sql) override;
    core::Result<void> run(std::string_view sql) override;
    core::Result<void> exec(std::string_view sql) override;
    std::int64_t changes() const override { return changes_; }
    bool in_autocommit() const override;
    /// BEGIN, then the transaction-level advisory lock every writer of this schema's lane takes:
    /// one write transaction at a time across every instance, so each rule decides on the state
    /// it writes (docs/scaling.md, "Why one writer at a time").
    core::Result<void> begin_write() override;
    /// REPEATABLE READ, READ ONLY: one snapshot for the whole transaction.
    core::Result<void> begin_read() override;
    core::Error error(std::string_view what) const override;
    const std::string& name() const override { return name_; }

    /// Queues a change for the other instances (deduplicated; sent by send_notifications).
    void notify(char kind, std::string_view subject) override;
    /// pg_notify on this schema's channel: "KIND SUBJECT" lines, chunked under the payload
    /// limit.
    core::Result<void> send_notifications() override;
    void drop_notifications() override { pending_.clear(); }

    /// True once the server connection is lost or abandoned (it must be opened again).
    bool broken() const;
    bool lost() const override { return broken(); }
    /// Opens a lost connection again (statements are prepared again at their next run). Fails
    /// fast with the last reason while a backoff (50 ms doubling to 1 s) runs.
    core::Result<void> recover() override;
    /// The server process serving this connection: what a notification names as its sender.
    int backend_pid() const;
    /// This schema's notification channel ("aviary." + the schema name, + "." + the lane).
    const std::string& channel() const { return channel_; }
    /// LISTEN on channel().
    core::Result<void> listen();
    /// A notification's sender and its payload.
    struct Notification {
        int sender = 0;
        std::string payload;
    };
    /// Waits up to `timeout` for notifications (kUnavailable when the connection is lost).
    core::Result<std::vector<Notification>> wait_notifications(core::Millis timeout);
    /// Runs `sql`, a `COPY ... FROM STDIN` in text format, with `rows` as its data (each line
    /// a row, columns apart by tabs, escaped as COPY's text format wants); how many rows went in.
    core::Result<std::int64_t> copy_in(std::string_view sql, std::string_view rows);
    /// The SQLSTATE of the last failed statement ("" when none): 40001, 40P01, 57P01...
    const std::string& last_sqlstate() const { return last_sqlstate_; }

private:
    class Cursor;
    PgConnection(pg_conn* conn, std::string name, core::Millis query_timeout, std::string lane);
    core::Error failed(std::string_view what, const pg_result* result);
    /// Collects the answer to what was sent, waiting at most query_timeout.
    core::Result<pg_result*> await_result(std::string_view what);
    /// Reads what the server sent until a result is ready (PQisBusy false), until `deadline`.
    core::Result<void> await_ready(std::string_view what,
                                   std::chrono::steady_clock::time_point deadline);

    pg_conn* conn_;
    std::string name_;
    std::int64_t changes_ = 0;
    std::string last_sqlstate_;
    std::string channel_;
    core::Millis query_timeout_;
    std::string lane_;
    bool abandoned_ = false;
    std::string last_loss_;
    core::Millis reconnect_backoff_{50};
    std::chrono::steady_clock::time_point next_reconnect_{};
    std::vector<std::string> pending_;  // "KIND SUBJECT", in order, without repeats
    int statements_made_ = 0;
    std::map<std::string, std::unique_ptr<Cursor>, std::less<>> statements_;
};

/// `size` read connections to `info`'s database.
core::Result<std::unique_ptr<sql::ReadPool>> open_readers(int size, const ConnectInfo& info);

/// `sql` with `?N` parameters written `$N` (quoted strings and identifiers left alone).
std::string numbered_parameters(std::string_view sql);

/// The two keys of the advisory lock that `lane`'s write transactions and migrations take, as
/// SQL: the first names aviary, the second this schema (and the lane, for a lane but the main
/// store's).
std::string lock_keys(std::string_view lane);

}  // namespace aviary::store::postgres
