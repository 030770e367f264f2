#pragma once
// Private to src/store and its unit tests: the log store's rules in one SQL text for both
// backends (store/logs.hpp), and what each backend adds: SQLite a file of its own, PostgreSQL
// tables of their own in the store's database, partitioned by time (docs/logs.md).
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "core/core.hpp"
#include "store/logs.hpp"
#include "store/sql/connection.hpp"
#include "store/sql/group_commit.hpp"
#include "store/sql/read_pool.hpp"

namespace aviary::store::sql {

/// A label set: what log_streams keys on (scope, kind, node, sender, source, level).
using LabelSet =
    std::tuple<std::string, std::int64_t, std::string, std::string, std::string, std::int64_t>;

/// The label sets log_streams holds, with their newest time as written, as of the last commit:
/// committed state only (noted after submit() returned), cleared by forget(), and bounded (past
/// kMaxEntries it starts over, which costs one UPDATE per set again).
class LabelSetCache {
public:
    static constexpr std::size_t kMaxEntries = 100'000;

    std::optional<std::int64_t> newest(const LabelSet& set) const;
    void note(const std::map<LabelSet, std::int64_t>& written);
    void clear();

private:
    mutable std::mutex mu_;
    std::map<LabelSet, std::int64_t> sets_;
};

/// The log store over a write connection (with its group commit) and read connections. A
/// backend subclass says how records get their ids (insert_records) and may add partitions.
class SqlLogStore : public LogStore {
public:
    ~SqlLogStore() override;

    core::Result<std::vector<LogRecord>> append(std::vector<LogRecord> records) override;
    core::Result<std::vector<LogRecord>> append_from(std::string_view feed,
                                                     std::optional<std::int64_t> from,
                                                     std::int64_t through,
                                                     std::vector<LogRecord> records) override;
    core::Result<StreamAppend> append_stream(std::string_view stream,
                                             std::vector<LogRecord> records,
                                             std::vector<LogRecord> notices) override;
    core::Result<std::optional<std::int64_t>> feed_position(std::string_view feed) const override;
    core::Result<std::vector<LogRecord>> query(const LogQuery& q) const override;
    core::Result<std::vector<LogRecord>> after(const LogFollow& f) const override;
    core::Result<std::vector<std::string>> label_values(LogLabel label,
                                                        const LogLabelQuery& q) const override;
    core::Result<std::size_t> forget(LogKind kind,
                                     std::int64_t before_ns,
                                     std::int64_t streams_before_ns) override;
    core::Result<LogIds> ids() const override;
    core::Result<std::size_t> remove(const LogRemoval& removal) override;
    LogStoreStats stats() const override;
    void close() override;

protected:
    /// `db` is the write connection, used by the writer thread; `readers` none when reads
    /// share `db` under a mutex (SQLite's ":memory:"). A subclass's destructor calls close()
    /// first: the writer thread calls its hooks.
    SqlLogStore(std::unique_ptr<Connection> db,
                std::unique_ptr<ReadPool> readers,
                std::size_t max_streams);

    /// Inserts `records` inside the writer's transaction and sets their ids, which grow in the
    /// order the records are given and, across commits, in commit order.
    virtual core::Result<void> insert_records(Connection& db, std::vector<LogRecord>& records) = 0;
    /// Runs after a write that called insert_records() committed (`committed`) or not.
    virtual void after_write(bool committed) { (void)committed; }
    /// SQL whose one row's column 0 is the last id given out (0 when none).
    virtual std::string_view newest_id_sql() const = 0;
    /// The table a removal deletes from (a coarse one may leave partitions to drop_partitions).
    virtual std::string removal_table(const LogRemoval& removal) const {
        (void)removal;
        return "log_records";
    }

    /// Runs `read` on a read connection (on the write connection, under its mutex, without).
    template <class Read>
    auto with_reader(Read read) const -> decltype(read(std::declval<Connection&>())) {
        if (!readers_) {
            std::lock_guard lock{db_mutex_};
            return read(*db_);
        }
        auto db = readers_->borrow();
        if (!db) {
            return db.error();
        }
        if (auto recovered = (**db).recover(); !recovered) {  // PostgreSQL restarted
            return recovered.error();
        }
        return read(**db);
    }

    GroupCommit& writer() { return writer_; }
    std::atomic<std::uint64_t>& removed_count() { return removed_; }

private:
    struct FeedPosition {
        std::string feed;
        std::optional<std::int64_t> from;
        std::int64_t through = 0;
    };
    core::Result<std::vector<LogRecord>> append_with(std::vector<LogRecord> records,
                                                     std::optional<FeedPosition> position);

    std::unique_ptr<Connection> db_;
    mutable std::mutex db_mutex_;
    std::unique_ptr<ReadPool> readers_;
    GroupCommit writer_;
    std::size_t max_streams_;
    LabelSetCache label_sets_;
    std::atomic<std::uint64_t> appended_{0};
    std::atomic<std::uint64_t> removed_{0};
};

/// The kind's number in the kind column.
inline std::int64_t kind_number(LogKind kind) {
    return kind == LogKind::kLog ? 0 : 1;
}

}  // namespace aviary::store::sql

namespace aviary::store::sqlite {
/// The log store in a SQLite file of its own (settings.path).
core::Result<std::unique_ptr<LogStore>> open_log_store(const LogStoreSettings& settings);
}  // namespace aviary::store::sqlite

namespace aviary::store::postgres {
/// The log store in the PostgreSQL database at settings.url: tables of their own, a writer of
/// their own (their own advisory lock and notification channel), log lines partitioned by time.
core::Result<std::unique_ptr<LogStore>> open_log_store(const LogStoreSettings& settings);
}  // namespace aviary::store::postgres
