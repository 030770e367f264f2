// The log store on PostgreSQL (store/logs.hpp, docs/logs.md "On PostgreSQL"): tables of their
// own in the store's database, a writer of their own on the "logs" lane (its own advisory lock
// and notification channel, so ingest never waits for a lease commit nor delays one), and log
// lines partitioned by time so retention drops partitions instead of deleting rows.
//
// Ids: every writer of the lane holds the lane's lock for its whole transaction and takes its
// ids from log_id_high inside it, so ids grow in commit order across instances: a tail that has
// read up to id N never later finds a record below N committed (what a sequence would allow).
#include "store/sql/log_store.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <iterator>
#include <map>
#include <utility>

#include "store/postgres/change_feed.hpp"
#include "store/postgres/connection.hpp"

namespace aviary::store::postgres {
namespace {

constexpr std::string_view kLane = "logs";
constexpr int kLogSchemaVersion = 1;
constexpr std::int64_t kNsPerMs = 1'000'000;
/// Partitions one write may make; lines of further new partitions go to the default one.
constexpr std::size_t kMaxNewPartitionsPerWrite = 8;
/// How long the writer trusts its list of partitions before reading it again (another
/// instance's retention drops them; a rolled-back write may have made one that is not there).
constexpr auto kPartitionListTtl = std::chrono::seconds{60};
/// The horizon when logs are kept for ever: older lines go to the default partition.
constexpr core::Millis kForeverHorizon{std::chrono::hours{24 * 30}};

// log_records is partitioned by kind: notifications in one table, log lines in log_lines,
// itself partitioned by time (log_lines_<from_ns>, listed in log_partitions with their range)
// with a default partition for lines outside every range. The indexes are declared on each
// kind's table, without the kind (a quarter cheaper to keep up than SQLite's, which lead with
// it), and made on each partition of log_lines; the node's holds only lines that have one, as
// on SQLite. log_id_high holds the last id given out (see
// above). log_field() reads a free field as SQLite's json_extract does, compared as text (true and
// false as 1 and 0). Text compares byte by byte (COLLATE "C"), as on SQLite.
constexpr std::string_view kSchemaV1 = R"sql(
CREATE TABLE log_records (
    id BIGINT NOT NULL,
    kind BIGINT NOT NULL,
    scope TEXT COLLATE "C" NOT NULL,
    time_ns BIGINT NOT NULL,
    level BIGINT NOT NULL,
    sender TEXT COLLATE "C" NOT NULL,
    message TEXT COLLATE "C" NOT NULL,
    node TEXT COLLATE "C" NOT NULL DEFAULT '',
    source TEXT COLLATE "C" NOT NULL DEFAULT '',
    fields TEXT COLLATE "C"
) PARTITION BY LIST (kind);
CREATE TABLE log_notifications PARTITION OF log_records FOR VALUES IN (1);
CREATE TABLE log_lines PARTITION OF log_records FOR VALUES IN (0) PARTITION BY RANGE (time_ns);
CREATE TABLE log_lines_default PARTITION OF log_lines DEFAULT;
CREATE INDEX log_lines_id ON log_lines (id);
CREATE INDEX log_lines_time ON log_lines (time_ns);
CREATE INDEX log_lines_sender_time ON log_lines (sender, time_ns);
CREATE INDEX log_lines_node_time ON log_lines (node, time_ns) WHERE node <> '';
CREATE INDEX log_notifications_id ON log_notifications (id);
CREATE INDEX log_notifications_time ON log_notifications (time_ns);
CREATE INDEX log_notifications_sender_time ON log_notifications (sender, time_ns);
CREATE INDEX log_notifications_node_time ON log_notifications (node, time_ns) WHERE node <> '';
CREATE TABLE log_partitions (
    name TEXT COLLATE "C" PRIMARY KEY,
    from_ns BIGINT NOT NULL,
    to_ns BIGINT NOT NULL
);
CREATE TABLE log_id_high (newest BIGINT NOT NULL);
INSERT INTO log_id_high VALUES (0);
CREATE TABLE feed_positions (
    feed TEXT COLLATE "C" PRIMARY KEY,
    through BIGINT NOT NULL
);
CREATE TABLE log_streams (
    scope TEXT COLLATE "C" NOT NULL,
    kind BIGINT NOT NULL,
    node TEXT COLLATE "C" NOT NULL,
    sender TEXT COLLATE "C" NOT NULL,
    source TEXT COLLATE "C" NOT NULL,
    level BIGINT NOT NULL,
    last_ns BIGINT NOT NULL,
    PRIMARY KEY (scope, kind, node, sender, source, level)
);
CREATE TABLE log_shippers (
    scope TEXT COLLATE "C" NOT NULL,
    stream TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    written_ns BIGINT NOT NULL,
    PRIMARY KEY (scope, stream)
);
CREATE FUNCTION log_field(fields TEXT, path TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v)
               WHEN 'boolean' THEN CASE WHEN v = 'true'::jsonb THEN '1' ELSE '0' END
               WHEN 'null' THEN NULL
               ELSE v #>> '{}'
           END
    FROM (SELECT jsonb_path_query_first(fields::jsonb, path::jsonpath) AS v) AS found
$$;
)sql";

/// Makes or checks the log tables under the lane's lock (several instances starting at once
/// migrate once); their version lives in log_schema_version, apart from the main store's.
core::Result<void> migrate(PgConnection& db) {
    const auto keys = lock_keys(kLane);
    if (auto locked = db.exec(fmt::format("SELECT pg_advisory_lock({})", keys)); !locked) {
        return locked;
    }
    auto migrated = [&]() -> core::Result<void> {
        if (auto made =
                db.exec("CREATE TABLE IF NOT EXISTS log_schema_version (version BIGINT NOT NULL)");
            !made) {
            return made;
        }
        auto select = db.prepare("SELECT coalesce(max(version), 0) FROM log_schema_version");
        if (!select) {
            return select.error();
        }
        if (auto row = select->step(); !row) {
            return row.error();
        }
        const auto version = static_cast<int>(select->int64(0));
        if (auto known = sql::check_schema_known(db, version, kLogSchemaVersion); !known) {
            return known;
        }
        if (version == kLogSchemaVersion) {
            return {};
        }
        auto made = db.exec(
            fmt::format("BEGIN; {} INSERT INTO log_schema_version (version) VALUES ({}); COMMIT;",
                        kSchemaV1, kLogSchemaVersion));
        if (!made) {
            (void)db.exec("ROLLBACK");
            return core::Error{core::ErrorCode::kStorage,
                               fmt::format("cannot make the log tables: {}", made.error().message)};
        }
        core::logger("store")->info("log tables made postgres={} version={}", db.name(),
                                    kLogSchemaVersion);
        return {};
    }();
    (void)db.exec(fmt::format("SELECT pg_advisory_unlock({})", keys));
    return migrated;
}

/// `text` as a column of COPY's text format into `out`: backslash, tab, newline and carriage
/// return escaped. PostgreSQL's text cannot hold a NUL character: it becomes U+FFFD, as an
/// invalid byte does from the sidecar (docs/logs.md).
void append_copy_text(std::string& out, std::string_view text) {
    constexpr std::string_view kSpecial{"\\\t\n\r\0", 5};
    while (!text.empty()) {
        const auto plain = std::min(text.find_first_of(kSpecial), text.size());
        out.append(text.substr(0, plain));
        if (plain == text.size()) {
            return;
        }
        switch (text[plain]) {
            case '\\':
                out += "\\\\";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            default:  // NUL
                out += "\xEF\xBF\xBD";
        }
        text.remove_prefix(plain + 1);
    }
}

/// The records as COPY's text-format rows, ids from `first` on, in the columns kCopyRecords
/// names.
std::string copy_rows(const std::vector<LogRecord>& records, std::int64_t first) {
    std::string out;
    std::size_t bytes = 0;
    for (const auto& r : records) {
        bytes += bytes_of(r) + 64;
    }
    out.reserve(bytes);
    for (std::size_t i = 0; i < records.size(); ++i) {
        const auto& r = records[i];
        fmt::format_to(std::back_inserter(out), "{}\t{}\t", first + static_cast<std::int64_t>(i),
                       sql::kind_number(r.kind));
        append_copy_text(out, r.scope);
        fmt::format_to(std::back_inserter(out), "\t{}\t{}\t", r.time_ns, r.level);
        for (const auto* column : {&r.sender, &r.message, &r.node, &r.source}) {
            append_copy_text(out, *column);
            out += '\t';
        }
        if (r.fields.empty()) {
            out += "\\N";
        } else {
            append_copy_text(out, r.fields);
        }
        out += '\n';
    }
    return out;
}

constexpr std::string_view kCopyRecords =
    "COPY log_records (id, kind, scope, time_ns, level, sender, message, node, source, fields) "
    "FROM STDIN";

/// floor(t / step) * step, for negative t too.
std::int64_t floor_to(std::int64_t t, std::int64_t step) {
    const auto q = t / step;
    return (t % step != 0 && t < 0 ? q - 1 : q) * step;
}

std::string partition_name(std::int64_t from_ns) {
    return from_ns < 0 ? fmt::format("log_lines_m{}", -from_ns)
                       : fmt::format("log_lines_{}", from_ns);
}

class PgLogStore final : public sql::SqlLogStore {
public:
    PgLogStore(std::unique_ptr<PgConnection> db,
               std::unique_ptr<sql::ReadPool> readers,
               const LogStoreSettings& settings,
               ConnectInfo info)
        : SqlLogStore(std::move(db), std::move(readers), settings.max_streams_per_scope),
          info_(std::move(info)),
          writer_token_(core::new_id()) {
        const auto horizon =
            settings.partition_horizon.count() > 0 ? settings.partition_horizon : kForeverHorizon;
        auto interval = settings.partition_interval;
        if (interval.count() == 0) {
            interval = std::clamp<core::Millis>(horizon / 4, std::chrono::minutes{1},
                                                std::chrono::hours{24});
        }
        horizon_ns_ = horizon.count() * kNsPerMs;
        interval_ns_ = interval.count() * kNsPerMs;
    }
    ~PgLogStore() override { close(); }

    bool partitioned() const override { return true; }
    bool shared() const override { return true; }

    core::Result<std::size_t> drop_partitions(LogKind kind, std::int64_t before_ns) override {
        if (kind != LogKind::kLog) {
            return std::size_t{0};  // notifications are one table
        }
        std::size_t removed = 0;
        while (true) {
            bool dropped = false;
            // One partition per write: a drop waits for the readers of log_lines and holds its
            // writers while it runs, so each stays short.
            auto done = writer().submit([&](sql::Connection& db) -> core::Result<void> {
                dropped = false;
                auto oldest = db.prepare(
                    "SELECT name, from_ns FROM log_partitions WHERE to_ns <= ?1 ORDER BY from_ns "
                    "LIMIT 1");
                if (!oldest) {
                    return oldest.error();
                }
                auto row = oldest->bind_all(before_ns).step();
                if (!row) {
                    return row.error();
                }
                if (!*row) {
                    return {};
                }
                const auto name = oldest->text(0);
                const auto from_ns = oldest->int64(1);
                auto estimate = db.prepare(
                    "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = "
                    "?1::regclass");
                if (!estimate) {
                    return estimate.error();
                }
                if (auto counted = estimate->bind_all(name).step(); !counted) {
                    return counted.error();
                }
                const auto rows = estimate->int64(0);
                if (auto gone = db.exec(fmt::format(
                        "DROP TABLE {0}; DELETE FROM log_partitions WHERE name = '{0}';", name));
                    !gone) {
                    return gone;
                }
                std::erase_if(known_, [from_ns](const Range& r) { return r.from == from_ns; });
                removed += static_cast<std::size_t>(rows);
                dropped = true;
                return {};
            });
            if (!done) {
                return done.error();
            }
            if (!dropped) {
                break;
            }
        }
        removed_count() += removed;
        return removed;
    }

    void watch(OnRemoteAppend on_append) override {
        if (feed_ != nullptr) {
            return;
        }
        // This store's own commits are told in-process; its notifications carry its token (the
        // writer's backend pid would change when it reconnects).
        feed_ = std::make_unique<PgChangeFeed>(info_, -1);
        feed_->start([this, on_append = std::move(on_append)](char kind, std::string_view subject) {
            if (kind == sql::change::kJobsQueued) {  // (re)connected: what came meanwhile is untold
                on_append(RemoteAppend{});
                return;
            }
            if (kind != sql::change::kLogs) {
                return;
            }
            if (auto told = parse_told(subject); told) {
                on_append(*told);
            }
        });
    }

    void close() override {
        if (feed_ != nullptr) {
            feed_->stop();
        }
        SqlLogStore::close();
    }

protected:
    core::Result<void> insert_records(sql::Connection& db,
                                      std::vector<LogRecord>& records) override {
        if (records.empty()) {
            return {};
        }
        if (auto made = make_partitions(db, records); !made) {
            return made;
        }
        const auto count = static_cast<std::int64_t>(records.size());
        auto reserve = db.prepare("UPDATE log_id_high SET newest = newest + ?1 RETURNING newest");
        if (!reserve) {
            return reserve.error();
        }
        auto row = reserve->bind_all(count).step();
        if (!row) {
            return row.error();
        }
        if (!*row) {
            return db.error("log_id_high has no row");
        }
        const auto first = reserve->int64(0) - count + 1;
        // COPY: half the database's work per line of an INSERT from a JSON parameter
        // (bench/RESULTS.md, "Logs on PostgreSQL"). The writer's connection is PostgreSQL's.
        auto copied =
            static_cast<PgConnection&>(db).copy_in(kCopyRecords, copy_rows(records, first));
        if (!copied) {
            return copied.error();
        }
        // One notification per scope for the other instances' tails.
        struct Told {
            std::int64_t first = 0;
            std::int64_t last = 0;
            bool notifications = false;
        };
        std::map<std::string_view, Told> told;
        for (std::int64_t i = 0; i < count; ++i) {
            auto& r = records[static_cast<std::size_t>(i)];
            r.id = first + i;
            auto [it, added] = told.try_emplace(r.scope, Told{r.id, r.id, false});
            it->second.last = r.id;
            it->second.notifications |= r.kind == LogKind::kNotification;
        }
        for (const auto& [scope, range] : told) {
            db.notify(sql::change::kLogs,
                      fmt::format("{} {} {} {} {}", writer_token_, range.first, range.last,
                                  range.notifications ? 1 : 0, scope));
        }
        return {};
    }

    void after_write(bool committed) override {
        // Writer thread. Whether the partitions a batch made exist is not known here: a batch
        // that rolled back took them with it, and so did an operation that failed after making
        // some (its savepoint rolled back) in a batch that committed. The next write lists them
        // again before trusting any.
        (void)committed;
        if (!made_.empty()) {
            listed_at_ = {};
        }
        made_.clear();
    }

    std::string_view newest_id_sql() const override { return "SELECT newest FROM log_id_high"; }

    std::string removal_table(const LogRemoval& removal) const override {
        // Under the longest window, only what no partition holds goes row by row.
        return removal.coarse && removal.kind == LogKind::kLog ? "log_lines_default"
                                                               : "log_records";
    }

private:
    struct Range {
        std::int64_t from = 0;
        std::int64_t to = 0;
    };

    std::optional<RemoteAppend> parse_told(std::string_view subject) const {
        // "WRITER FIRST LAST NOTES SCOPE"; the scope may hold spaces.
        std::array<std::string_view, 4> words;
        for (auto& word : words) {
            auto space = subject.find(' ');
            if (space == std::string_view::npos) {
                return std::nullopt;
            }
            word = subject.substr(0, space);
            subject.remove_prefix(space + 1);
        }
        if (words[0] == writer_token_) {
            return std::nullopt;
        }
        RemoteAppend out{.scope = std::string{subject}, .notifications = words[3] == "1"};
        auto number = [](std::string_view text, std::int64_t& value) {
            return std::from_chars(text.data(), text.data() + text.size(), value).ec == std::errc{};
        };
        if (!number(words[1], out.first_id) || !number(words[2], out.last_id)) {
            return std::nullopt;
        }
        return out;
    }

    bool covered(std::int64_t t) const {
        return std::any_of(known_.begin(), known_.end(),
                           [t](const Range& r) { return r.from <= t && t < r.to; }) ||
               std::any_of(made_.begin(), made_.end(),
                           [t](const Range& r) { return r.from <= t && t < r.to; });
    }

    /// Reads log_partitions again (inside the write: under the lane's lock, so it is the
    /// truth until the commit).
    core::Result<void> list_partitions(sql::Connection& db) {
        auto select = db.prepare("SELECT from_ns, to_ns FROM log_partitions");
        if (!select) {
            return select.error();
        }
        auto listed = select->rows([](const sql::Statement& row) {
            return Range{.from = row.int64(0), .to = row.int64(1)};
        });
        if (!listed) {
            return listed.error();
        }
        known_ = std::move(*listed);
        listed_at_ = std::chrono::steady_clock::now();
        return {};
    }

    /// Makes the partitions the records' lines need that do not exist yet, for lines dated
    /// within the horizon and up to two partitions ahead; the rest go to the default partition.
    core::Result<void> make_partitions(sql::Connection& db, const std::vector<LogRecord>& records) {
        const std::int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count();
        const std::int64_t low = now_ns - horizon_ns_;
        const std::int64_t high = now_ns + 2 * interval_ns_;
        if (std::chrono::steady_clock::now() - listed_at_ > kPartitionListTtl) {
            if (auto listed = list_partitions(db); !listed) {
                return listed;
            }
        }
        std::map<std::int64_t, std::int64_t> wanted;  // bucket start -> a line's time in it
        for (const auto& r : records) {
            if (r.kind == LogKind::kLog && r.time_ns >= low && r.time_ns < high &&
                !covered(r.time_ns)) {
                wanted.try_emplace(floor_to(r.time_ns, interval_ns_), r.time_ns);
            }
        }
        if (wanted.empty()) {
            return {};
        }
        if (auto listed = list_partitions(db); !listed) {
            return listed;
        }
        std::size_t made = 0;
        for (const auto& [bucket, t] : wanted) {
            if (covered(t)) {
                continue;
            }
            if (made == kMaxNewPartitionsPerWrite) {
                break;
            }
            // The bucket, cut where a partition of another width (an older setting) begins or
            // ends.
            Range range{.from = bucket, .to = bucket + interval_ns_};
            for (const auto& other : known_) {
                if (other.to <= t) {
                    range.from = std::max(range.from, other.to);
                } else if (other.from > t) {
                    range.to = std::min(range.to, other.from);
                }
            }
            const auto name = partition_name(range.from);
            // Made apart and attached, with the lines of its range the default partition held
            // moved in first: attaching takes a weaker lock on log_lines than CREATE ... PARTITION
            // OF, and the CHECK spares it a scan of the new table.
            auto created = db.exec(fmt::format(
                "CREATE TABLE {0} (LIKE log_lines INCLUDING DEFAULTS);"
                "ALTER TABLE {0} ADD CONSTRAINT {0}_range "
                "CHECK (kind = 0 AND time_ns >= {1} AND time_ns < {2});"
                "WITH moved AS (DELETE FROM log_lines_default WHERE time_ns >= {1} "
                "AND time_ns < {2} RETURNING *) INSERT INTO {0} SELECT * FROM moved;"
                "ALTER TABLE log_lines ATTACH PARTITION {0} FOR VALUES FROM ({1}) TO ({2});"
                "INSERT INTO log_partitions (name, from_ns, to_ns) VALUES ('{0}', {1}, {2});",
                name, range.from, range.to));
            if (!created) {
                return created;
            }
            made_.push_back(range);
            ++made;
        }
        return {};
    }

    ConnectInfo info_;
    std::string writer_token_;
    std::int64_t horizon_ns_ = 0;
    std::int64_t interval_ns_ = 0;
    // Writer thread only: the partitions as last listed, and those this batch made.
    std::vector<Range> known_;
    std::vector<Range> made_;
    std::chrono::steady_clock::time_point listed_at_{};
    std::unique_ptr<PgChangeFeed> feed_;
};

}  // namespace

core::Result<std::unique_ptr<LogStore>> open_log_store(const LogStoreSettings& settings) {
    if (settings.url.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           "the log store on postgres needs store.url"};
    }
    if (settings.read_connections < 1) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           "logs.read_connections must be at least 1"};
    }
    if (settings.partition_interval.count() != 0 &&
        settings.partition_interval < std::chrono::minutes{1}) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("logs.partition_interval must be at least 1m, got {}",
                                       core::format_duration(settings.partition_interval))};
    }
    ConnectInfo info{.url = settings.url,
                     .password = settings.password,
                     .connect_timeout = settings.connect_timeout,
                     .query_timeout = settings.busy_timeout,
                     .application_name = "aviary-logs",
                     .lane = std::string{kLane}};
    auto writer = PgConnection::open(info);
    if (!writer) {
        return writer.error();
    }
    if (auto migrated = migrate(**writer); !migrated) {
        return migrated.error();
    }
    auto readers = open_readers(settings.read_connections, info);
    if (!readers) {
        return readers.error();
    }
    core::logger("store")->info("log store opened postgres={} readers={}", (*writer)->name(),
                                settings.read_connections);
    return std::unique_ptr<LogStore>{
        new PgLogStore(std::move(*writer), std::move(*readers), settings, std::move(info))};
}

}  // namespace aviary::store::postgres
