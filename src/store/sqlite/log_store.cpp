// The log store on SQLite (store/logs.hpp): a database file of its own, with its own writer
// thread (group commit) and read connections, beside the main store's.
#include "store/sql/log_store.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <utility>

#include "store/sqlite/connection.hpp"

namespace aviary::store::sqlite {
namespace {

constexpr std::string_view kMemoryPath = ":memory:";
constexpr int kLogSchemaVersion = 3;

// One table for both kinds: a query names its kind first, and the index leads with it. The
// index on time serves the window reads (newest first) and retention (oldest first).
// AUTOINCREMENT: an id is never given out twice, even after retention emptied the table, so a
// tail's cursor (the last id it saw) stays meaningful.
constexpr std::string_view kSchemaV1 = R"sql(
CREATE TABLE log_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    scope TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    level INTEGER NOT NULL,
    sender TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX log_records_kind_time ON log_records (kind, time_ns);
CREATE INDEX log_records_kind_sender_time ON log_records (kind, sender, time_ns);
CREATE TABLE feed_positions (
    feed TEXT PRIMARY KEY,
    through INTEGER NOT NULL
);
INSERT INTO schema_version (version) VALUES (1);
)sql";

// Labels node and source beside sender (the service), free fields as JSON (NULL when none), an
// index for reads by node. log_streams holds each label set a scope has written, with the time
// of its newest record: the streams-per-scope cap counts it and the label listings read it
// (a few rows, not the records). log_shippers holds each shipper stream's highest sequence
// number, for append_stream's deduplication.
constexpr std::string_view kSchemaV2 = R"sql(
ALTER TABLE log_records ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE log_records ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE log_records ADD COLUMN fields TEXT;
CREATE INDEX log_records_kind_node_time ON log_records (kind, node, time_ns);
CREATE TABLE log_streams (
    scope TEXT NOT NULL,
    kind INTEGER NOT NULL,
    node TEXT NOT NULL,
    sender TEXT NOT NULL,
    source TEXT NOT NULL,
    level INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    PRIMARY KEY (scope, kind, node, sender, source, level)
) WITHOUT ROWID;
INSERT INTO log_streams
    SELECT scope, kind, node, sender, source, level, max(time_ns) FROM log_records
    GROUP BY scope, kind, node, sender, source, level;
CREATE TABLE log_shippers (
    scope TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    written_ns INTEGER NOT NULL,
    PRIMARY KEY (scope, stream)
) WITHOUT ROWID;
INSERT INTO schema_version (version) VALUES (2);
)sql";

// The node's index only for lines that have a node: most uploads (Bitahoy's) have none, and
// skipping its upkeep for them is about a sixth of the writer's time per line (bench/RESULTS.md,
// "Logs on PostgreSQL"). Queries by node name `node != ''` to use it (sql/log_store.cpp).
constexpr std::string_view kSchemaV3 = R"sql(
DROP INDEX log_records_kind_node_time;
CREATE INDEX log_records_kind_node_time ON log_records (kind, node, time_ns) WHERE node != '';
INSERT INTO schema_version (version) VALUES (3);
)sql";

core::Result<void> check(const LogStoreSettings& settings) {
    if (settings.path.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           "logs.path is empty (serve sets <data_dir>/logs.db)"};
    }
    if (settings.synchronous != "full" && settings.synchronous != "normal") {
        return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("logs.synchronous must be \"full\" or \"normal\", got \"{}\"",
                        settings.synchronous)};
    }
    if (settings.read_connections < 1) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           "logs.read_connections must be at least 1"};
    }
    return {};
}

core::Result<void> configure(SqliteConnection& db, const LogStoreSettings& settings) {
    if (settings.path != kMemoryPath) {
        if (auto wal = use_wal(db); !wal) {
            return wal;
        }
    }
    return db.exec(fmt::format("PRAGMA synchronous = {};",
                               settings.synchronous == "full" ? "FULL" : "NORMAL"));
}

core::Result<void> migrate(sql::Connection& db) {
    auto version = sql::read_schema_version(db);
    if (!version) {
        return version.error();
    }
    if (auto known = sql::check_schema_known(db, *version, kLogSchemaVersion); !known) {
        return known;
    }
    if (*version == kLogSchemaVersion) {
        return {};
    }
    if (auto begun = db.run("BEGIN IMMEDIATE"); !begun) {
        return begun;
    }
    for (const auto& [from, script] :
         {std::pair{0, kSchemaV1}, std::pair{1, kSchemaV2}, std::pair{2, kSchemaV3}}) {
        if (*version > from) {
            continue;
        }
        if (auto made = db.exec(script); !made) {
            (void)db.run("ROLLBACK");
            return made;
        }
    }
    return db.run("COMMIT");
}

/// Inserts `records` and sets their ids. A plain INSERT per row (RETURNING opens a temporary
/// b-tree and a statement savepoint each time: half the writer's speed, bench/RESULTS.md); one
/// writer and AUTOINCREMENT give the rows consecutive ids ending at the sequence.
core::Result<void> insert_rows(sql::Connection& db, std::vector<LogRecord>& records) {
    if (records.empty()) {
        return {};
    }
    for (const auto& record : records) {
        auto insert = db.prepare(
            "INSERT INTO log_records (kind, scope, time_ns, level, sender, message, node, source, "
            "fields) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
        if (!insert) {
            return insert.error();
        }
        const auto fields = record.fields.empty() ? std::optional<std::string_view>{}
                                                  : std::optional<std::string_view>{record.fields};
        if (auto ran = insert
                           ->bind_all(sql::kind_number(record.kind), record.scope, record.time_ns,
                                      static_cast<std::int64_t>(record.level), record.sender,
                                      record.message, record.node, record.source, fields)
                           .run();
            !ran) {
            return ran;
        }
    }
    auto last = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'log_records'");
    if (!last) {
        return last.error();
    }
    if (auto row = last->step(); !row) {
        return row.error();
    }
    auto id = last->int64(0) - static_cast<std::int64_t>(records.size());
    for (auto& record : records) {
        record.id = ++id;
    }
    return {};
}

class SqliteLogStore final : public sql::SqlLogStore {
public:
    SqliteLogStore(std::unique_ptr<SqliteConnection> db,
                   std::unique_ptr<sql::ReadPool> readers,
                   std::size_t max_streams)
        : SqlLogStore(std::move(db), std::move(readers), max_streams) {}
    ~SqliteLogStore() override { close(); }

protected:
    core::Result<void> insert_records(sql::Connection& db,
                                      std::vector<LogRecord>& records) override {
        return insert_rows(db, records);
    }
    std::string_view newest_id_sql() const override {
        return "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'log_records'";
    }
};
}  // namespace

core::Result<std::unique_ptr<LogStore>> open_log_store(const LogStoreSettings& settings) {
    if (auto valid = check(settings); !valid) {
        return valid.error();
    }
    const bool in_memory = settings.path == kMemoryPath;
    if (!in_memory) {
        std::error_code ignored;  // opening the database reports the real problem, if any
        std::filesystem::create_directories(std::filesystem::path{settings.path}.parent_path(),
                                            ignored);
    }
    auto db = SqliteConnection::open(settings.path, SqliteConnection::Mode::kReadWrite,
                                     settings.busy_timeout);
    if (!db) {
        return db.error();
    }
    if (auto configured = configure(**db, settings); !configured) {
        return configured.error();
    }
    if (auto added = (*db)->add_regexp(); !added) {  // ":memory:" reads on this one
        return added.error();
    }
    if (auto migrated = migrate(**db); !migrated) {
        return migrated.error();
    }
    std::unique_ptr<sql::ReadPool> readers;
    if (!in_memory) {
        auto pool = sql::ReadPool::open(
            settings.read_connections, [&]() -> core::Result<std::unique_ptr<sql::Connection>> {
                auto read = SqliteConnection::open(settings.path, SqliteConnection::Mode::kReadOnly,
                                                   settings.busy_timeout);
                if (!read) {
                    return read.error();
                }
                if (auto added = (*read)->add_regexp(); !added) {
                    return added.error();
                }
                return std::unique_ptr<sql::Connection>{std::move(*read)};
            });
        if (!pool) {
            return pool.error();
        }
        readers = std::move(*pool);
    }
    core::logger("store")->info("log store opened path={} synchronous={}", settings.path,
                                settings.synchronous);
    return std::unique_ptr<LogStore>{
        new SqliteLogStore(std::move(*db), std::move(readers), settings.max_streams_per_scope)};
}

}  // namespace aviary::store::sqlite
