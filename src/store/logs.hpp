#pragma once
/// store/logs: the records of logs and notifications (docs/logs.md), kept apart from the rest
/// of the store. On SQLite they live in a database file of their own with a writer thread of
/// its own, so a flood of lines never waits behind, nor delays, a lease or a job commit. On
/// PostgreSQL they live in tables of their own in the store's database, with a writer of their
/// own (their own lock and notification channel), log lines partitioned by time.
///
/// Writes go through group commit as the main store's do: append() returns once the commit
/// holding its records is durable, so an acknowledged line survives kill -9. Retention deletes
/// in bounded batches, each its own write, so a big delete never holds the writer for long.
///
/// All methods block the calling thread and are safe from any thread: coroutines call them
/// through net::offload(), never from the I/O loop.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/core.hpp"

namespace aviary::store {

enum class LogKind { kLog, kNotification };

/// One line of a log, or one notification. Its labels are a small fixed set (node, service,
/// source, level); anything else the sender knows goes in `fields` (docs/logs.md, "The model").
struct LogRecord {
    LogKind kind = LogKind::kLog;
    /// Who may read it: the identity of the caller that stored it ("" without tokens).
    std::string scope;
    std::int64_t time_ns = 0;  ///< the record's own time (the sender's clock), ns since epoch
    int level = 0;             ///< the sender's level number (Bitahoy's: lower is more severe)
    std::string sender;        ///< the service label (Bitahoy's sender)
    std::string message;
    std::string node;     ///< the node the line came from, "" when none
    std::string source;   ///< "stdout", "stderr", "sidecar"..., "" when none
    std::string fields;   ///< free fields: a JSON object's text, "" when none
    std::int64_t id = 0;  ///< set by the store: grows with each record stored
    /// A shipper's sequence number in its stream (append_stream); 0 for other records. Not
    /// stored: the store keeps each stream's highest.
    std::int64_t seq = 0;
};

/// The bytes of a record that count against a read's byte bound (LogQuery::max_bytes and the
/// bounds above it).
inline std::size_t bytes_of(const LogRecord& r) {
    return r.message.size() + r.sender.size() + r.node.size() + r.source.size() + r.fields.size();
}

/// A label a listing can name.
enum class LogLabel { kNode, kService, kSource, kLevel };

/// Which records a read wants beyond their kind, scope and time. Every filter given must hold.
struct LogFilter {
    std::optional<std::string> node;      ///< equal to
    std::optional<std::string> sender;    ///< the service label, equal to
    std::optional<std::string> source;    ///< equal to
    std::optional<int> max_level;         ///< level <= this
    std::optional<std::string> contains;  ///< the message holds this text
    /// Regular expressions (RE2 syntax) searched in a label or the message. The caller checks that
    /// they compile; the store compiles each once per read.
    std::optional<std::string> node_regex;
    std::optional<std::string> sender_regex;
    std::optional<std::string> source_regex;
    std::optional<std::string> message_regex;
    /// A free field equal to a value: `path` is a JSON path inside `fields` ("$.peer.id"), the
    /// value compared as text (numbers as written, true and false as 1 and 0).
    struct Field {
        std::string path;
        std::string value;
    };
    std::vector<Field> fields;  ///< at most kMaxFields
    static constexpr std::size_t kMaxFields = 4;
};

/// Where a page of a newest-first read ended: the next page starts below it.
struct LogPosition {
    std::int64_t time_ns = 0;
    std::int64_t id = 0;
};

struct LogQuery {
    LogKind kind = LogKind::kLog;
    /// Only this scope's records; nullopt: every scope's (an admin's read).
    std::optional<std::string> scope;
    std::int64_t since_ns = 0;             ///< records whose time is at or after this
    std::optional<std::int64_t> until_ns;  ///< ...and at or before this
    LogFilter filter;
    bool oldest_first = false;  ///< newest first unless set
    /// The next page after one that ended here (below it newest first, above it oldest first).
    std::optional<LogPosition> after;
    std::size_t limit = 1000;  ///< at most this many
    /// Stops after the record that brings the senders' and messages' bytes to this; 0: no cap.
    std::size_t max_bytes = 0;
};

/// Which records a retention rule covers; every field given must hold. An empty selector
/// matches every record.
struct LogSelector {
    std::optional<std::string> scope;
    std::optional<std::string> sender_glob;  ///< SQLite GLOB: `*`, `?`, `[...]`
    std::optional<std::string> node_glob;
    std::optional<std::string> source_glob;
    std::optional<int> max_level;  ///< level <= this
};

/// One bounded delete of retention: records of `kind` older than `before_ns` that `match`
/// selects and none of `unless` does.
struct LogRemoval {
    LogKind kind = LogKind::kLog;
    std::int64_t before_ns = 0;
    LogSelector match;
    std::vector<LogSelector> unless;
    std::size_t batch = 5000;
    /// The kind's longest window: a partitioned store leaves the records drop_partitions()
    /// will take to it (up to one partition's width later) and removes only the others.
    bool coarse = false;
};

/// Records stored after a point, oldest first: what a live tail catches up on.
struct LogFollow {
    std::optional<LogKind> kind;  ///< nullopt: both
    std::optional<std::string> scope;
    std::int64_t after_id = 0;
    std::optional<std::int64_t> up_to_id;  ///< ...and at most this id
    LogFilter filter;
    std::size_t limit = 1000;
};

/// A label set seen in a scope (the store keeps one row per set, for the streams-per-scope cap
/// and the label listings).
struct LogLabelQuery {
    LogKind kind = LogKind::kLog;
    std::optional<std::string> scope;  ///< nullopt: every scope
    std::int64_t since_ns = 0;         ///< sets seen at or after this
    std::size_t limit = 1000;
};

/// What append_stream() did: the records stored (ids set), and how many it skipped because the
/// stream already held their sequence numbers.
struct StreamAppend {
    std::vector<LogRecord> stored;
    std::size_t duplicates = 0;
    std::int64_t through = 0;  ///< the stream's highest sequence number now
};

/// The ids the store holds: `oldest` is 0 when it holds none; `newest` is the last id given
/// out, even when retention has removed that record since (ids are never reused).
struct LogIds {
    std::int64_t oldest = 0;
    std::int64_t newest = 0;
};

struct LogStoreSettings {
    /// "sqlite" (a file of its own) or "postgres" (tables of their own in the database at
    /// `url`): serve follows store.driver.
    std::string driver = "sqlite";
    /// The SQLite file; ":memory:" for tests; empty means <data_dir>/logs.db (set by serve).
    std::string path;
    /// postgres: as the store's Settings (the password apart from the URL).
    std::string url;
    std::string password;
    core::Millis connect_timeout{std::chrono::seconds{5}};
    /// postgres: the longest a log line is kept (the longest retention window of logs; 0: for
    /// ever). Partitions are made for lines no older than this (30 days when 0); older lines,
    /// and lines dated more than two partitions ahead, go to a default partition.
    core::Millis partition_horizon{0};
    /// postgres: the time one partition of log lines spans; 0: a quarter of partition_horizon,
    /// at least a minute and at most a day.
    core::Millis partition_interval{0};
    std::string synchronous = "full";  ///< "full" (fsync each commit) or "normal"
    int read_connections = 2;
    core::Millis busy_timeout{std::chrono::seconds{5}};
    /// Label sets (kind, node, service, source, level) one scope may hold; an append that would
    /// add one past it fails whole with kInvalidArgument. 0: no cap.
    std::size_t max_streams_per_scope = 10'000;
};

struct LogStoreStats {
    std::uint64_t commits = 0;
    std::uint64_t appended = 0;  ///< records stored since the store opened
    std::uint64_t removed = 0;   ///< records retention removed since the store opened
};

class LogStore {
public:
    virtual ~LogStore() = default;
    /// Stores `records` in one write (all or none) and returns them with their ids set.
    virtual core::Result<std::vector<LogRecord>> append(std::vector<LogRecord> records) = 0;
    /// The same, and in the same commit records that `feed` has been copied up to `through`
    /// (the events copied into notifications): a crash copies nothing twice. Checked inside
    /// the write: kBusy, storing nothing, unless the feed is still at `from` (nullopt: never
    /// copied), so two instances copying at once copy nothing twice either.
    virtual core::Result<std::vector<LogRecord>> append_from(std::string_view feed,
                                                             std::optional<std::int64_t> from,
                                                             std::int64_t through,
                                                             std::vector<LogRecord> records) = 0;
    /// Stores a shipper's records (each with `seq` set, rising, one scope) in one write,
    /// skipping those whose seq the stream already holds: a batch sent again after a lost answer
    /// stores nothing twice. The stream is the shipper's own id, within the records' scope.
    /// `notices` (no seq) are stored in the same write when any record was new.
    virtual core::Result<StreamAppend> append_stream(std::string_view stream,
                                                     std::vector<LogRecord> records,
                                                     std::vector<LogRecord> notices) = 0;
    /// How far `feed` has been copied; nullopt when it never was.
    virtual core::Result<std::optional<std::int64_t>> feed_position(
        std::string_view feed) const = 0;
    /// Newest first: by time, then by id.
    virtual core::Result<std::vector<LogRecord>> query(const LogQuery& query) const = 0;
    /// Ids above follow.after_id, in id order (the order they were stored).
    virtual core::Result<std::vector<LogRecord>> after(const LogFollow& follow) const = 0;
    virtual core::Result<LogIds> ids() const = 0;
    /// The values a label has among the label sets seen (level as its number), sorted; at most
    /// query.limit.
    virtual core::Result<std::vector<std::string>> label_values(
        LogLabel label, const LogLabelQuery& query) const = 0;
    /// Forgets label sets last seen before `before_ns` and shipper streams last written before
    /// `streams_before_ns` (retention's bookkeeping); returns how many rows went.
    virtual core::Result<std::size_t> forget(LogKind kind,
                                             std::int64_t before_ns,
                                             std::int64_t streams_before_ns) = 0;
    /// Removes up to `removal.batch` of the records it selects, oldest first; returns how
    /// many. Call it again while it returns `batch`.
    virtual core::Result<std::size_t> remove(const LogRemoval& removal) = 0;
    /// Drops whole partitions of `kind` whose every record is older than `before_ns`, one
    /// partition per write; returns about how many records went (the database's estimate of each
    /// partition's rows). 0 on a store without partitions (SQLite).
    virtual core::Result<std::size_t> drop_partitions(LogKind kind, std::int64_t before_ns) {
        (void)kind;
        (void)before_ns;
        return std::size_t{0};
    }
    /// True when the store drops partitions (retention then marks the longest window coarse).
    virtual bool partitioned() const { return false; }
    /// True when other instances write the same records (PostgreSQL): retention runs on one.
    virtual bool shared() const { return false; }

    /// Records another instance stored in one commit, as its notification told: the ids of one
    /// scope's records lie in [first_id, last_id] (with other scopes' among them).
    struct RemoteAppend {
        std::string scope;
        std::int64_t first_id = 0;
        std::int64_t last_id = 0;
        bool notifications = false;  ///< some were notifications
    };
    using OnRemoteAppend = std::function<void(const RemoteAppend&)>;
    /// Starts telling `on_append`, on a thread of the store's, of what other instances store
    /// (PostgreSQL's LISTEN; nothing on SQLite, which has no other instance). After the listening
    /// connection is lost and opened again it is called once with an empty scope and ids 0: what
    /// was stored meanwhile was not told. close() stops it.
    virtual void watch(OnRemoteAppend on_append) { (void)on_append; }
    /// Every record of `kind` older than `before_ns`, in batches (remove() with no selector).
    core::Result<std::size_t> remove_before(LogKind kind,
                                            std::int64_t before_ns,
                                            std::size_t batch) {
        return remove(LogRemoval{.kind = kind, .before_ns = before_ns, .batch = batch});
    }
    virtual LogStoreStats stats() const = 0;
    /// Finishes the writes queued, then refuses more. Idempotent.
    virtual void close() = 0;
};

/// Opens (creating when missing) the log store. kInvalidArgument for bad settings, kStorage
/// when the file cannot be opened or holds a schema newer than this build knows.
core::Result<std::unique_ptr<LogStore>> open_log_store(const LogStoreSettings& settings);

}  // namespace aviary::store
