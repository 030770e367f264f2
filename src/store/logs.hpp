#pragma once
/// store/logs: the records of logs and notifications (docs/logs.md), kept apart from the rest
/// of the store. On SQLite they live in a database file of their own with a writer thread of
/// its own, so a flood of lines never waits behind, nor delays, a lease or a job commit.
///
/// Writes go through group commit as the main store's do: append() returns once the commit
/// holding its records is durable, so an acknowledged line survives kill -9. Retention deletes
/// in bounded batches, each its own write, so a big delete never holds the writer for long.
///
/// All methods block the calling thread and are safe from any thread: coroutines call them
/// through net::offload(), never from the I/O loop.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/core.hpp"

namespace aviary::store {

enum class LogKind { kLog, kNotification };

/// One line of a log, or one notification.
struct LogRecord {
    LogKind kind = LogKind::kLog;
    /// Who may read it: the identity of the caller that stored it ("" without tokens).
    std::string scope;
    std::int64_t time_ns = 0;  ///< the record's own time (the sender's clock), ns since epoch
    int level = 0;             ///< the sender's level number (Bitahoy's: lower is more severe)
    std::string sender;
    std::string message;
    std::int64_t id = 0;  ///< set by the store: grows with each record stored
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
    std::optional<std::string> sender;
    std::optional<int> max_level;         ///< level <= this
    std::optional<std::string> contains;  ///< the message holds this text
    std::optional<LogPosition> below;     ///< the next page after one that ended here
    std::size_t limit = 1000;             ///< newest first, at most this many
    /// Stops after the record that brings the senders' and messages' bytes to this; 0: no cap.
    std::size_t max_bytes = 0;
};

/// Which records a retention rule covers; every field given must hold. An empty selector
/// matches every record.
struct LogSelector {
    std::optional<std::string> scope;
    std::optional<std::string> sender_glob;  ///< SQLite GLOB: `*`, `?`, `[...]`
    std::optional<int> max_level;            ///< level <= this
};

/// One bounded delete of retention: records of `kind` older than `before_ns` that `match`
/// selects and none of `unless` does.
struct LogRemoval {
    LogKind kind = LogKind::kLog;
    std::int64_t before_ns = 0;
    LogSelector match;
    std::vector<LogSelector> unless;
    std::size_t batch = 5000;
};

/// Records stored after a point, oldest first: what a live tail catches up on.
struct LogFollow {
    std::optional<LogKind> kind;  ///< nullopt: both
    std::optional<std::string> scope;
    std::int64_t after_id = 0;
    std::optional<std::int64_t> up_to_id;  ///< ...and at most this id
    std::optional<std::string> sender;
    std::optional<int> max_level;
    std::optional<std::string> contains;
    std::size_t limit = 1000;
};

/// The ids the store holds: `oldest` is 0 when it holds none; `newest` is the last id given
/// out, even when retention has removed that record since (ids are never reused).
struct LogIds {
    std::int64_t oldest = 0;
    std::int64_t newest = 0;
};

struct LogStoreSettings {
    /// The SQLite file; ":memory:" for tests; empty means <data_dir>/logs.db (set by serve).
    std::string path;
    std::string synchronous = "full";  ///< "full" (fsync each commit) or "normal"
    int read_connections = 2;
    core::Millis busy_timeout{std::chrono::seconds{5}};
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
    /// The same, and in the same commit records that feed `feed` has been copied up to
    /// `through` (the events copied into notifications): a crash copies nothing twice.
    virtual core::Result<std::vector<LogRecord>> append_from(std::string_view feed,
                                                             std::int64_t through,
                                                             std::vector<LogRecord> records) = 0;
    /// How far `feed` has been copied; nullopt when it never was.
    virtual core::Result<std::optional<std::int64_t>> feed_position(
        std::string_view feed) const = 0;
    /// Newest first: by time, then by id.
    virtual core::Result<std::vector<LogRecord>> query(const LogQuery& query) const = 0;
    /// Ids above follow.after_id, in id order (the order they were stored).
    virtual core::Result<std::vector<LogRecord>> after(const LogFollow& follow) const = 0;
    virtual core::Result<LogIds> ids() const = 0;
    /// Removes up to `removal.batch` of the records it selects, oldest first; returns how
    /// many. Call it again while it returns `batch`.
    virtual core::Result<std::size_t> remove(const LogRemoval& removal) = 0;
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
