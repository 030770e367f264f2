// The log store on SQLite (store/logs.hpp): a database file of its own, with its own writer
// thread (group commit) and read connections, beside the main store's.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <utility>

#include "store/logs.hpp"
#include "store/sql/connection.hpp"
#include "store/sql/group_commit.hpp"
#include "store/sql/read_pool.hpp"
#include "store/sqlite/connection.hpp"

namespace aviary::store {
namespace {

constexpr std::string_view kMemoryPath = ":memory:";
constexpr int kLogSchemaVersion = 1;

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

std::int64_t kind_number(LogKind kind) {
    return kind == LogKind::kLog ? 0 : 1;
}

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

core::Result<void> configure(sqlite::SqliteConnection& db, const LogStoreSettings& settings) {
    if (settings.path != kMemoryPath) {
        if (auto wal = sqlite::use_wal(db); !wal) {
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
    if (*version == 0) {
        if (auto begun = db.run("BEGIN IMMEDIATE"); !begun) {
            return begun;
        }
        if (auto made = db.exec(kSchemaV1); !made) {
            (void)db.run("ROLLBACK");
            return made;
        }
        return db.run("COMMIT");
    }
    return {};
}

std::optional<std::int64_t> level_of(std::optional<int> level) {
    return level ? std::optional<std::int64_t>{*level} : std::optional<std::int64_t>{};
}

LogRecord record_from(const sql::Statement& row);

/// Steps `select` to its end, or until the senders' and messages' bytes reach `max_bytes`
/// (0: no cap; the record that crosses it is kept).
core::Result<std::vector<LogRecord>> read_rows(sql::Statement& select, std::size_t max_bytes) {
    std::vector<LogRecord> out;
    std::size_t bytes = 0;
    while (max_bytes == 0 || bytes < max_bytes) {
        auto row = select.step();
        if (!row) {
            return row.error();
        }
        if (!*row) {
            break;
        }
        out.push_back(record_from(select));
        bytes += out.back().message.size() + out.back().sender.size();
    }
    return out;
}

LogRecord record_from(const sql::Statement& row) {
    return LogRecord{.kind = row.int64(1) == 0 ? LogKind::kLog : LogKind::kNotification,
                     .scope = row.text(2),
                     .time_ns = row.int64(3),
                     .level = static_cast<int>(row.int64(4)),
                     .sender = row.text(5),
                     .message = row.text(6),
                     .id = row.int64(0)};
}

class SqliteLogStore final : public LogStore {
public:
    SqliteLogStore(std::unique_ptr<sqlite::SqliteConnection> db,
                   std::unique_ptr<sql::ReadPool> readers)
        : db_(std::move(db)), readers_(std::move(readers)), writer_(*db_, db_mutex_) {}

    ~SqliteLogStore() override { close(); }

    core::Result<std::vector<LogRecord>> append(std::vector<LogRecord> records) override {
        return append_with(std::move(records), {});
    }

    core::Result<std::vector<LogRecord>> append_from(std::string_view feed,
                                                     std::int64_t through,
                                                     std::vector<LogRecord> records) override {
        return append_with(std::move(records), FeedPosition{std::string{feed}, through});
    }

    core::Result<std::optional<std::int64_t>> feed_position(std::string_view feed) const override {
        return with_reader(
            [feed](sql::Connection& db) -> core::Result<std::optional<std::int64_t>> {
                auto select = db.prepare("SELECT through FROM feed_positions WHERE feed = ?1");
                if (!select) {
                    return select.error();
                }
                select->bind_all(feed);
                auto row = select->step();
                if (!row) {
                    return row.error();
                }
                return *row ? std::optional<std::int64_t>{select->int64(0)}
                            : std::optional<std::int64_t>{};
            });
    }

    core::Result<std::vector<LogRecord>> query(const LogQuery& q) const override {
        return with_reader([&q](sql::Connection& db) -> core::Result<std::vector<LogRecord>> {
            // With a sender, a plain `sender = ?4` lets the (kind, sender, time_ns) index
            // lead; `?4 IS NULL OR ...` would hide it. Two shapes, each prepared once.
            auto select = db.prepare(
                std::string{
                    "SELECT id, kind, scope, time_ns, level, sender, message FROM log_records "
                    "WHERE kind = ?1 AND time_ns >= ?2 AND (?3 IS NULL OR scope = ?3) AND "} +
                (q.sender ? "sender = ?4 " : "?4 IS NULL ") +
                "AND (?5 IS NULL OR level <= ?5) "
                "AND (?7 IS NULL OR time_ns <= ?7) AND (?8 IS NULL OR instr(message, ?8) > 0) "
                "AND (?9 IS NULL OR (time_ns, id) < (?9, ?10)) "
                "ORDER BY time_ns DESC, id DESC LIMIT ?6");
            if (!select) {
                return select.error();
            }
            select->bind_all(kind_number(q.kind), q.since_ns, q.scope, q.sender,
                             level_of(q.max_level), static_cast<std::int64_t>(q.limit), q.until_ns,
                             q.contains,
                             q.below ? std::optional<std::int64_t>{q.below->time_ns}
                                     : std::optional<std::int64_t>{},
                             q.below ? q.below->id : std::int64_t{0});
            return read_rows(*select, q.max_bytes);
        });
    }

    core::Result<std::vector<LogRecord>> after(const LogFollow& f) const override {
        return with_reader([&f](sql::Connection& db) -> core::Result<std::vector<LogRecord>> {
            auto select = db.prepare(
                "SELECT id, kind, scope, time_ns, level, sender, message FROM log_records "
                "WHERE id > ?1 AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR scope = ?3) "
                "AND (?4 IS NULL OR sender = ?4) AND (?5 IS NULL OR level <= ?5) "
                "AND (?6 IS NULL OR instr(message, ?6) > 0) AND (?8 IS NULL OR id <= ?8) "
                "ORDER BY id LIMIT ?7");
            if (!select) {
                return select.error();
            }
            select->bind_all(f.after_id,
                             f.kind ? std::optional<std::int64_t>{kind_number(*f.kind)}
                                    : std::optional<std::int64_t>{},
                             f.scope, f.sender, level_of(f.max_level), f.contains,
                             static_cast<std::int64_t>(f.limit), f.up_to_id);
            return read_rows(*select, 0);
        });
    }

    core::Result<LogIds> ids() const override {
        return with_reader([](sql::Connection& db) -> core::Result<LogIds> {
            LogIds out;
            auto oldest = db.prepare("SELECT coalesce(min(id), 0) FROM log_records");
            if (!oldest) {
                return oldest.error();
            }
            if (auto row = oldest->step(); !row) {
                return row.error();
            }
            out.oldest = oldest->int64(0);
            auto newest = db.prepare(
                "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'log_records'");
            if (!newest) {
                return newest.error();
            }
            if (auto row = newest->step(); !row) {
                return row.error();
            }
            out.newest = newest->int64(0);
            return out;
        });
    }

    core::Result<std::size_t> remove(const LogRemoval& removal) override {
        // The rules are fixed at start, so each removal's text is prepared once and cached.
        std::string where = "kind = ?1 AND time_ns < ?2";
        auto param = [&](std::size_t& next) { return fmt::format("?{}", next++); };
        std::size_t next = 4;  // ?3 is the batch
        std::vector<std::pair<std::size_t, std::string>> bound_texts;
        std::vector<std::pair<std::size_t, std::int64_t>> bound_numbers;
        auto predicate = [&](const LogSelector& s) {
            std::string out = "1";
            if (s.scope) {
                bound_texts.emplace_back(next, *s.scope);
                out += " AND scope = " + param(next);
            }
            if (s.sender_glob) {
                bound_texts.emplace_back(next, *s.sender_glob);
                out += " AND sender GLOB " + param(next);
            }
            if (s.max_level) {
                bound_numbers.emplace_back(next, *s.max_level);
                out += " AND level <= " + param(next);
            }
            return "(" + out + ")";
        };
        where += " AND " + predicate(removal.match);
        for (const auto& other : removal.unless) {
            where += " AND NOT " + predicate(other);
        }
        const std::string sql = fmt::format(
            "DELETE FROM log_records WHERE id IN (SELECT id FROM log_records WHERE {} "
            "ORDER BY time_ns LIMIT ?3)",
            where);
        std::size_t removed = 0;
        auto done = writer_.submit([&](sql::Connection& db) -> core::Result<void> {
            auto remove = db.prepare(sql);
            if (!remove) {
                return remove.error();
            }
            remove->bind(1, kind_number(removal.kind))
                .bind(2, removal.before_ns)
                .bind(3, static_cast<std::int64_t>(removal.batch));
            for (const auto& [index, text] : bound_texts) {
                remove->bind(static_cast<int>(index), text);
            }
            for (const auto& [index, number] : bound_numbers) {
                remove->bind(static_cast<int>(index), number);
            }
            if (auto ran = remove->run(); !ran) {
                return ran;
            }
            removed = static_cast<std::size_t>(db.changes());
            return {};
        });
        if (!done) {
            return done.error();
        }
        removed_ += removed;
        return removed;
    }

    LogStoreStats stats() const override {
        return LogStoreStats{.commits = writer_.stats().commits,
                             .appended = appended_.load(),
                             .removed = removed_.load()};
    }

    void close() override {
        writer_.close();
        if (readers_) {
            readers_->close();
        }
    }

private:
    struct FeedPosition {
        std::string feed;
        std::int64_t through = 0;
    };

    core::Result<std::vector<LogRecord>> append_with(std::vector<LogRecord> records,
                                                     std::optional<FeedPosition> position) {
        if (records.empty() && !position) {
            return records;
        }
        auto written =
            writer_.submit([&records, &position](sql::Connection& db) -> core::Result<void> {
                // A plain INSERT per row (RETURNING opens a temporary b-tree and a statement
                // savepoint each time: half the writer's speed, bench/RESULTS.md). One writer
                // and AUTOINCREMENT give the batch consecutive ids ending at the sequence.
                for (const auto& record : records) {
                    auto insert = db.prepare(
                        "INSERT INTO log_records (kind, scope, time_ns, level, sender, message) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
                    if (!insert) {
                        return insert.error();
                    }
                    if (auto ran =
                            insert
                                ->bind_all(kind_number(record.kind), record.scope, record.time_ns,
                                           static_cast<std::int64_t>(record.level), record.sender,
                                           record.message)
                                .run();
                        !ran) {
                        return ran;
                    }
                }
                if (!records.empty()) {
                    auto last =
                        db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'log_records'");
                    if (!last) {
                        return last.error();
                    }
                    auto row = last->step();
                    if (!row) {
                        return row.error();
                    }
                    auto id = last->int64(0) - static_cast<std::int64_t>(records.size());
                    for (auto& record : records) {
                        record.id = ++id;
                    }
                }
                if (position) {
                    auto moved = db.prepare(
                        "INSERT INTO feed_positions (feed, through) VALUES (?1, ?2) "
                        "ON CONFLICT (feed) DO UPDATE SET through = excluded.through");
                    if (!moved) {
                        return moved.error();
                    }
                    return moved->bind_all(position->feed, position->through).run();
                }
                return {};
            });
        if (!written) {
            return written.error();
        }
        appended_ += records.size();
        return records;
    }

    /// Runs `read` on a read connection (on the one connection, for ":memory:").
    template <class Read>
    auto with_reader(Read read) const -> decltype(read(std::declval<sql::Connection&>())) {
        if (!readers_) {
            std::lock_guard lock{db_mutex_};
            return read(*db_);
        }
        auto db = readers_->borrow();
        if (!db) {
            return db.error();
        }
        return read(**db);
    }

    std::unique_ptr<sqlite::SqliteConnection> db_;
    mutable std::mutex db_mutex_;
    std::unique_ptr<sql::ReadPool> readers_;  // none for ":memory:": reads share db_
    sql::GroupCommit writer_;
    std::atomic<std::uint64_t> appended_{0};
    std::atomic<std::uint64_t> removed_{0};
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
    auto db = sqlite::SqliteConnection::open(
        settings.path, sqlite::SqliteConnection::Mode::kReadWrite, settings.busy_timeout);
    if (!db) {
        return db.error();
    }
    if (auto configured = configure(**db, settings); !configured) {
        return configured.error();
    }
    if (auto migrated = migrate(**db); !migrated) {
        return migrated.error();
    }
    std::unique_ptr<sql::ReadPool> readers;
    if (!in_memory) {
        auto pool = sql::ReadPool::open(
            settings.read_connections, [&]() -> core::Result<std::unique_ptr<sql::Connection>> {
                auto read = sqlite::SqliteConnection::open(
                    settings.path, sqlite::SqliteConnection::Mode::kReadOnly,
                    settings.busy_timeout);
                if (!read) {
                    return read.error();
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
    return std::unique_ptr<LogStore>{new SqliteLogStore(std::move(*db), std::move(readers))};
}

}  // namespace aviary::store
