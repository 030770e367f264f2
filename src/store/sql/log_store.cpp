// The log store's rules (store/logs.hpp) in one SQL text for SQLite and PostgreSQL; each
// backend's file adds how records get their ids (and, on PostgreSQL, partitions).
#include "store/sql/log_store.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <utility>

namespace aviary::store::sql {
namespace {

constexpr std::string_view kColumns =
    "id, kind, scope, time_ns, level, sender, message, node, source, fields";

LogRecord record_from(const Statement& row) {
    return LogRecord{.kind = row.int64(1) == 0 ? LogKind::kLog : LogKind::kNotification,
                     .scope = row.text(2),
                     .time_ns = row.int64(3),
                     .level = static_cast<int>(row.int64(4)),
                     .sender = row.text(5),
                     .message = row.text(6),
                     .node = row.text(7),
                     .source = row.text(8),
                     .fields = row.is_null(9) ? std::string{} : row.text(9),
                     .id = row.int64(0)};
}

std::optional<std::int64_t> level_of(std::optional<int> level) {
    return level ? std::optional<std::int64_t>{*level} : std::optional<std::int64_t>{};
}

/// Steps `select` to its end, or until the records' bytes reach `max_bytes` (0: no cap; the
/// record that crosses it is kept).
core::Result<std::vector<LogRecord>> read_rows(Statement& select, std::size_t max_bytes) {
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
        bytes += bytes_of(out.back());
    }
    return out;
}

// PostgreSQL fixes a parameter's type where it first appears, and cannot tell it from
// `?N IS NULL` when the first run binds NULL: such tests name the type (CAST(?N AS TEXT)),
// which SQLite reads alike.
//
// A filter's clauses take 9 + 2 * LogFilter::kMaxFields numbers from `first` on, each bound to
// NULL when its filter is not given, so a statement's text depends only on which index should
// lead: the statement cache stays a handful of shapes whatever the filters.

/// With `lead`, a node or service given is a plain equality, which lets its index lead (a
/// `?N IS NULL OR ...` would hide it). The node's index holds only lines that have a node (most
/// uploads have none, and skip its upkeep): a query names `node != ''` to be allowed to use it.
std::string filter_sql(Dialect dialect, int first, const LogFilter& filter, bool lead) {
    const bool pg = dialect == Dialect::kPostgres;
    auto p = [first](int offset) { return fmt::format("?{}", first + offset); };
    auto equal = [&](std::string_view column, int offset, bool given) {
        return lead && given ? fmt::format(" AND {} = {}", column, p(offset))
                             : fmt::format(" AND (CAST({0} AS TEXT) IS NULL OR {1} = {0})",
                                           p(offset), column);
    };
    const bool by_node = filter.node.has_value() && !filter.node->empty();
    std::string out = equal("node", 0, by_node) + (lead && by_node ? " AND node != ''" : "") +
                      equal("sender", 1, filter.sender.has_value()) + equal("source", 2, false);
    out += fmt::format(" AND (CAST({0} AS BIGINT) IS NULL OR level <= {0})", p(3));
    out += fmt::format(
        fmt::runtime(pg ? " AND (CAST({0} AS TEXT) IS NULL OR strpos(message, {0}) > 0)"
                        : " AND (CAST({0} AS TEXT) IS NULL OR instr(message, {0}) > 0)"),
        p(4));
    int offset = 5;
    for (std::string_view column : {"node", "sender", "source", "message"}) {
        // SQLite's regexp() is RE2 (core/regex.hpp); PostgreSQL's ~ its own engine, which
        // reads the common syntax alike (docs/logs.md, "Queries").
        out +=
            fmt::format(fmt::runtime(pg ? " AND (CAST({0} AS TEXT) IS NULL OR {1} ~ {0})"
                                        : " AND (CAST({0} AS TEXT) IS NULL OR regexp({0}, {1}))"),
                        p(offset++), column);
    }
    for (std::size_t i = 0; i < LogFilter::kMaxFields; ++i) {
        // log_field() on PostgreSQL reads a path as json_extract does (postgres/log_store.cpp).
        out += fmt::format(
            fmt::runtime(pg ? " AND (CAST({0} AS TEXT) IS NULL OR log_field(fields, {0}) = {1})"
                            : " AND (CAST({0} AS TEXT) IS NULL OR CAST(json_extract(fields, {0}) "
                              "AS TEXT) = {1})"),
            p(offset), p(offset + 1));
        offset += 2;
    }
    return out;
}

void bind_filter(Statement& statement, int first, const LogFilter& filter) {
    statement.bind(first, filter.node)
        .bind(first + 1, filter.sender)
        .bind(first + 2, filter.source)
        .bind(first + 3, level_of(filter.max_level))
        .bind(first + 4, filter.contains)
        .bind(first + 5, filter.node_regex)
        .bind(first + 6, filter.sender_regex)
        .bind(first + 7, filter.source_regex)
        .bind(first + 8, filter.message_regex);
    int at = first + 9;
    for (std::size_t i = 0; i < LogFilter::kMaxFields; ++i, at += 2) {
        if (i < filter.fields.size()) {
            statement.bind(at, filter.fields[i].path).bind(at + 1, filter.fields[i].value);
        } else {
            statement.bind(at, std::nullopt).bind(at + 1, std::nullopt);
        }
    }
}

LabelSet labels_of(const LogRecord& r) {
    return {r.scope, kind_number(r.kind), r.node, r.sender, r.source, r.level};
}

std::string describe(const LabelSet& set) {
    return fmt::format("node=\"{}\" service=\"{}\" source=\"{}\" level={}", std::get<2>(set),
                       std::get<3>(set), std::get<4>(set), std::get<5>(set));
}

/// How stale a label set's newest time in log_streams may be: an append whose records are
/// newer by less than this leaves the row alone, so a busy set is written once every few
/// seconds instead of once per batch (an UPDATE per label set per batch cost ingest most of its
/// rate with 1,000 senders). Retention and the listings read the time to within this.
constexpr std::int64_t kLabelSetSlackNs = std::int64_t{5} * 1'000'000'000;

/// Records each label set `records` carry in log_streams (with its newest time), inside the
/// caller's write: a set new to its scope counts against `max_streams` (0: no cap), and one past
/// it fails the write, naming the first record that carries it. A set whose row is new enough
/// by `cache` is skipped; `written` gets the sets written, for the cache once committed.
core::Result<void> note_label_sets(Connection& db,
                                   const std::vector<LogRecord>& records,
                                   std::size_t max_streams,
                                   const LabelSetCache& cache,
                                   std::map<LabelSet, std::int64_t>& written) {
    written.clear();
    std::map<LabelSet, std::pair<std::int64_t, std::size_t>> sets;  // newest time, first index
    for (std::size_t i = 0; i < records.size(); ++i) {
        auto [it, added] = sets.try_emplace(labels_of(records[i]), records[i].time_ns, i);
        it->second.first = std::max(it->second.first, records[i].time_ns);
    }
    for (const auto& [set, seen] : sets) {
        if (auto known = cache.newest(set); known && *known >= seen.first - kLabelSetSlackNs) {
            continue;
        }
        written[set] = seen.first;
        const auto& [scope, kind, node, sender, source, level] = set;
        auto touch = db.prepare(fmt::format(
            "UPDATE log_streams SET last_ns = {}(last_ns, ?7) WHERE scope = ?1 AND kind = ?2 "
            "AND node = ?3 AND sender = ?4 AND source = ?5 AND level = ?6",
            db.dialect() == Dialect::kPostgres ? "greatest" : "max"));
        if (!touch) {
            return touch.error();
        }
        if (auto ran = touch->bind_all(scope, kind, node, sender, source, level, seen.first).run();
            !ran) {
            return ran;
        }
        if (db.changes() > 0) {
            continue;
        }
        if (max_streams > 0) {
            auto count = db.prepare("SELECT count(*) FROM log_streams WHERE scope = ?1");
            if (!count) {
                return count.error();
            }
            if (auto row = count->bind_all(scope).step(); !row) {
                return row.error();
            }
            if (static_cast<std::size_t>(count->int64(0)) >= max_streams) {
                return core::Error{
                    core::ErrorCode::kInvalidArgument,
                    fmt::format("record {} would start a new stream ({}) but scope \"{}\" "
                                "already has {} streams, the most logs.max_streams_per_scope "
                                "allows; reuse a label set or raise the limit",
                                seen.second, describe(set), scope, count->int64(0))};
            }
        }
        auto add = db.prepare(
            "INSERT INTO log_streams (scope, kind, node, sender, source, level, last_ns) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
        if (!add) {
            return add.error();
        }
        if (auto ran = add->bind_all(scope, kind, node, sender, source, level, seen.first).run();
            !ran) {
            return ran;
        }
    }
    return {};
}

/// SQLite's GLOB as a PostgreSQL regular expression: `*` any text, `?` one character,
/// `[...]` (`[^...]`) a set, everything else itself; the whole value must match.
std::string glob_regex(std::string_view glob) {
    std::string out = "^";
    bool in_set = false;
    std::size_t set_start = 0;  // where the open set's characters begin in `glob`
    for (std::size_t i = 0; i < glob.size(); ++i) {
        const char c = glob[i];
        if (in_set) {
            // A `]` first in the set (after `[` or `[^`) is one of its characters. A `[` is
            // escaped: `[:` would begin a character class.
            in_set = c != ']' || i == set_start;
            out += c == '\\' || c == '[' ? std::string{"\\"} + c : std::string(1, c);
            continue;
        }
        switch (c) {
            case '*':
                out += ".*";
                break;
            case '?':
                out += '.';
                break;
            case '[': {
                std::size_t from = i + 1;
                from += from < glob.size() && glob[from] == '^' ? 1 : 0;
                set_start = from;
                from += from < glob.size() && glob[from] == ']' ? 1 : 0;
                in_set = glob.find(']', from) != std::string_view::npos;
                out += in_set ? "[" : "\\[";
                break;
            }
            default:
                if (std::string_view{".^$+(){}|\\]"}.find(c) != std::string_view::npos) {
                    out += '\\';
                }
                out += c;
        }
    }
    return out + "$";
}

}  // namespace

std::optional<std::int64_t> LabelSetCache::newest(const LabelSet& set) const {
    std::lock_guard lock{mu_};
    auto it = sets_.find(set);
    return it == sets_.end() ? std::nullopt : std::optional<std::int64_t>{it->second};
}

void LabelSetCache::note(const std::map<LabelSet, std::int64_t>& written) {
    std::lock_guard lock{mu_};
    if (sets_.size() + written.size() > kMaxEntries) {
        sets_.clear();
    }
    for (const auto& [set, newest] : written) {
        auto& kept = sets_[set];
        kept = std::max(kept, newest);
    }
}

void LabelSetCache::clear() {
    std::lock_guard lock{mu_};
    sets_.clear();
}

SqlLogStore::SqlLogStore(std::unique_ptr<Connection> db,
                         std::unique_ptr<ReadPool> readers,
                         std::size_t max_streams)
    : db_(std::move(db)),
      readers_(std::move(readers)),
      writer_(*db_, db_mutex_, [this](bool committed) { after_write(committed); }),
      max_streams_(max_streams) {}

SqlLogStore::~SqlLogStore() {
    close();
}

core::Result<std::vector<LogRecord>> SqlLogStore::append(std::vector<LogRecord> records) {
    return append_with(std::move(records), {});
}

core::Result<std::vector<LogRecord>> SqlLogStore::append_from(std::string_view feed,
                                                              std::optional<std::int64_t> from,
                                                              std::int64_t through,
                                                              std::vector<LogRecord> records) {
    return append_with(std::move(records), FeedPosition{std::string{feed}, from, through});
}

core::Result<StreamAppend> SqlLogStore::append_stream(std::string_view stream,
                                                      std::vector<LogRecord> records,
                                                      std::vector<LogRecord> notices) {
    StreamAppend out;
    if (records.empty()) {
        return out;
    }
    const std::string scope = records.front().scope;
    for (std::size_t i = 1; i < records.size(); ++i) {
        if (records[i].seq <= records[i - 1].seq || records[i].scope != scope) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("record {} of stream \"{}\": sequence numbers "
                                           "must rise within a batch of one scope",
                                           i, stream)};
        }
    }
    // The stream's position is read and moved inside the write that stores the records: two
    // deliveries of one batch racing each other store it once.
    std::map<LabelSet, std::int64_t> label_sets;
    auto written = writer_.submit([&](Connection& db) -> core::Result<void> {
        out = {};
        label_sets.clear();
        auto held = db.prepare("SELECT seq FROM log_shippers WHERE scope = ?1 AND stream = ?2");
        if (!held) {
            return held.error();
        }
        auto row = held->bind_all(scope, stream).step();
        if (!row) {
            return row.error();
        }
        const std::int64_t through = *row ? held->int64(0) : 0;
        std::vector<LogRecord> fresh;
        for (const auto& record : records) {
            if (record.seq > through) {
                fresh.push_back(record);
            } else {
                ++out.duplicates;
            }
        }
        out.through = std::max(through, records.back().seq);
        if (fresh.empty()) {
            return {};
        }
        const auto last_time = fresh.back().time_ns;
        fresh.insert(fresh.end(), notices.begin(), notices.end());
        if (auto noted = note_label_sets(db, fresh, max_streams_, label_sets_, label_sets);
            !noted) {
            return noted;
        }
        if (auto inserted = insert_records(db, fresh); !inserted) {
            return inserted;
        }
        auto moved = db.prepare(
            "INSERT INTO log_shippers (scope, stream, seq, written_ns) VALUES (?1, ?2, ?3, ?4) "
            "ON CONFLICT (scope, stream) DO UPDATE SET seq = excluded.seq, "
            "written_ns = excluded.written_ns");
        if (!moved) {
            return moved.error();
        }
        if (auto ran = moved->bind_all(scope, stream, out.through, last_time).run(); !ran) {
            return ran;
        }
        out.stored = std::move(fresh);
        return {};
    });
    if (!written) {
        return written.error();
    }
    label_sets_.note(label_sets);
    appended_ += out.stored.size();
    return out;
}

core::Result<std::optional<std::int64_t>> SqlLogStore::feed_position(std::string_view feed) const {
    return with_reader([feed](Connection& db) -> core::Result<std::optional<std::int64_t>> {
        auto select = db.prepare("SELECT through FROM feed_positions WHERE feed = ?1");
        if (!select) {
            return select.error();
        }
        select->bind_all(feed);
        auto row = select->step();
        if (!row) {
            return row.error();
        }
        return *row ? std::optional<std::int64_t>{select->int64(0)} : std::optional<std::int64_t>{};
    });
}

core::Result<std::vector<LogRecord>> SqlLogStore::query(const LogQuery& q) const {
    return with_reader([&q](Connection& db) -> core::Result<std::vector<LogRecord>> {
        // A cursor narrows the time range too, so the index starts at the cursor instead of
        // walking every record the earlier pages returned.
        std::int64_t since = q.since_ns;
        std::optional<std::int64_t> until = q.until_ns;
        if (q.after) {
            if (q.oldest_first) {
                since = std::max(since, q.after->time_ns);
            } else {
                until = until ? std::min(*until, q.after->time_ns) : q.after->time_ns;
            }
        }
        const char* order = q.oldest_first ? "ASC" : "DESC";
        auto select = db.prepare(
            fmt::format("SELECT {} FROM log_records WHERE kind = ?1 AND time_ns >= ?2 "
                        "AND time_ns <= ?3 AND (CAST(?4 AS TEXT) IS NULL OR scope = ?4) "
                        "AND (CAST(?5 AS BIGINT) IS NULL OR (time_ns, id) {} (?5, ?6)){} "
                        "ORDER BY time_ns {}, id {} LIMIT ?7",
                        kColumns, q.oldest_first ? ">" : "<",
                        filter_sql(db.dialect(), 8, q.filter, true), order, order));
        if (!select) {
            return select.error();
        }
        // A plain upper bound, always given: `?3 IS NULL OR ...` kept the index from using it,
        // and a newest-first read of an old window walked every newer record first
        // (bench/RESULTS.md, "The log store at scale").
        select->bind_all(
            kind_number(q.kind), since, until.value_or(std::numeric_limits<std::int64_t>::max()),
            q.scope,
            q.after ? std::optional<std::int64_t>{q.after->time_ns} : std::optional<std::int64_t>{},
            q.after ? q.after->id : std::int64_t{0}, static_cast<std::int64_t>(q.limit));
        bind_filter(*select, 8, q.filter);
        return read_rows(*select, q.max_bytes);
    });
}

core::Result<std::vector<LogRecord>> SqlLogStore::after(const LogFollow& f) const {
    return with_reader([&f](Connection& db) -> core::Result<std::vector<LogRecord>> {
        auto select =
            db.prepare(fmt::format("SELECT {} FROM log_records WHERE id > ?1 AND (CAST(?2 AS "
                                   "BIGINT) IS NULL OR kind = ?2) "
                                   "AND (CAST(?3 AS TEXT) IS NULL OR scope = ?3) AND (CAST(?4 AS "
                                   "BIGINT) IS NULL OR id <= ?4){} "
                                   "ORDER BY id LIMIT ?5",
                                   kColumns, filter_sql(db.dialect(), 6, f.filter, false)));
        if (!select) {
            return select.error();
        }
        select->bind_all(f.after_id,
                         f.kind ? std::optional<std::int64_t>{kind_number(*f.kind)}
                                : std::optional<std::int64_t>{},
                         f.scope, f.up_to_id, static_cast<std::int64_t>(f.limit));
        bind_filter(*select, 6, f.filter);
        return read_rows(*select, 0);
    });
}

core::Result<std::vector<std::string>> SqlLogStore::label_values(LogLabel label,
                                                                 const LogLabelQuery& q) const {
    return with_reader([&](Connection& db) -> core::Result<std::vector<std::string>> {
        const char* column = label == LogLabel::kNode      ? "node"
                             : label == LogLabel::kService ? "sender"
                             : label == LogLabel::kSource  ? "source"
                                                           : "level";
        // A level is a number, never empty (and PostgreSQL will not compare it with '').
        const std::string not_empty =
            label == LogLabel::kLevel ? std::string{} : fmt::format(" AND {} != ''", column);
        auto select =
            db.prepare(fmt::format("SELECT DISTINCT {0} FROM log_streams WHERE kind = ?1 AND "
                                   "(CAST(?2 AS TEXT) IS NULL OR scope = "
                                   "?2) AND last_ns >= ?3{1} ORDER BY {0} LIMIT ?4",
                                   column, not_empty));
        if (!select) {
            return select.error();
        }
        select->bind_all(kind_number(q.kind), q.scope, q.since_ns,
                         static_cast<std::int64_t>(q.limit));
        return select->rows([label](const Statement& row) {
            return label == LogLabel::kLevel ? std::to_string(row.int64(0)) : row.text(0);
        });
    });
}

core::Result<std::size_t> SqlLogStore::forget(LogKind kind,
                                              std::int64_t before_ns,
                                              std::int64_t streams_before_ns) {
    std::size_t forgotten = 0;
    auto done = writer_.submit([&](Connection& db) -> core::Result<void> {
        // On the writer's thread, before the operations after it read the cache.
        label_sets_.clear();
        auto sets = db.prepare("DELETE FROM log_streams WHERE kind = ?1 AND last_ns < ?2");
        if (!sets) {
            return sets.error();
        }
        if (auto ran = sets->bind_all(kind_number(kind), before_ns).run(); !ran) {
            return ran;
        }
        forgotten += static_cast<std::size_t>(db.changes());
        auto streams = db.prepare("DELETE FROM log_shippers WHERE written_ns < ?1");
        if (!streams) {
            return streams.error();
        }
        if (auto ran = streams->bind_all(streams_before_ns).run(); !ran) {
            return ran;
        }
        forgotten += static_cast<std::size_t>(db.changes());
        return {};
    });
    if (!done) {
        return done.error();
    }
    return forgotten;
}

core::Result<LogIds> SqlLogStore::ids() const {
    return with_reader([this](Connection& db) -> core::Result<LogIds> {
        LogIds out;
        auto oldest = db.prepare("SELECT coalesce(min(id), 0) FROM log_records");
        if (!oldest) {
            return oldest.error();
        }
        if (auto row = oldest->step(); !row) {
            return row.error();
        }
        out.oldest = oldest->int64(0);
        auto newest = db.prepare(newest_id_sql());
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

core::Result<std::size_t> SqlLogStore::remove(const LogRemoval& removal) {
    // The rules are fixed at start, so each removal's text is prepared once and cached.
    const bool pg = db_->dialect() == Dialect::kPostgres;
    std::string where = "kind = ?1 AND time_ns < ?2";
    auto param = [&](std::size_t& next) { return fmt::format("?{}", next++); };
    std::size_t next = 4;  // ?3 is the batch
    std::vector<std::pair<std::size_t, std::string>> bound_texts;
    std::vector<std::pair<std::size_t, std::int64_t>> bound_numbers;
    auto predicate = [&](const LogSelector& s) {
        std::string out = "TRUE";
        if (s.scope) {
            bound_texts.emplace_back(next, *s.scope);
            out += " AND scope = " + param(next);
        }
        for (const auto& [glob, column] :
             {std::pair{&s.sender_glob, "sender"}, std::pair{&s.node_glob, "node"},
              std::pair{&s.source_glob, "source"}}) {
            if (*glob) {
                bound_texts.emplace_back(next, pg ? glob_regex(**glob) : **glob);
                out += fmt::format(fmt::runtime(pg ? " AND {} ~ {}" : " AND {} GLOB {}"), column,
                                   param(next));
            }
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
    // The outer bounds let PostgreSQL skip the partitions newer than the cut.
    const auto table = removal_table(removal);
    const std::string sql = fmt::format(
        "DELETE FROM {0} WHERE kind = ?1 AND time_ns < ?2 AND id IN (SELECT id FROM {0} WHERE {1} "
        "ORDER BY time_ns LIMIT ?3)",
        table, where);
    std::size_t removed = 0;
    auto done = writer_.submit([&](Connection& db) -> core::Result<void> {
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

LogStoreStats SqlLogStore::stats() const {
    return LogStoreStats{.commits = writer_.stats().commits,
                         .appended = appended_.load(),
                         .removed = removed_.load()};
}

void SqlLogStore::close() {
    writer_.close();
    if (readers_) {
        readers_->close();
    }
}

core::Result<std::vector<LogRecord>> SqlLogStore::append_with(
    std::vector<LogRecord> records, std::optional<FeedPosition> position) {
    if (records.empty() && !position) {
        return records;
    }
    std::map<LabelSet, std::int64_t> label_sets;
    auto written = writer_.submit([&](Connection& db) -> core::Result<void> {
        // Checked before anything is written, and inside the write that moves it.
        if (position) {
            auto held = db.prepare("SELECT through FROM feed_positions WHERE feed = ?1");
            if (!held) {
                return held.error();
            }
            auto row = held->bind_all(position->feed).step();
            if (!row) {
                return row.error();
            }
            const auto at =
                *row ? std::optional<std::int64_t>{held->int64(0)} : std::optional<std::int64_t>{};
            if (at != position->from) {
                return core::Error{
                    core::ErrorCode::kBusy,
                    fmt::format("feed \"{}\" is at {}, not {}: another instance copied it",
                                position->feed, at ? std::to_string(*at) : "none",
                                position->from ? std::to_string(*position->from) : "none")};
            }
        }
        if (auto noted = note_label_sets(db, records, max_streams_, label_sets_, label_sets);
            !noted) {
            return noted;
        }
        if (auto inserted = insert_records(db, records); !inserted) {
            return inserted;
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
    label_sets_.note(label_sets);
    appended_ += records.size();
    return records;
}

}  // namespace aviary::store::sql

namespace aviary::store {

core::Result<std::unique_ptr<LogStore>> open_log_store(const LogStoreSettings& settings) {
    if (settings.driver == "postgres") {
        return postgres::open_log_store(settings);
    }
    if (settings.driver != "sqlite") {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("the log store's driver must be \"sqlite\" or "
                                       "\"postgres\", got \"{}\"",
                                       settings.driver)};
    }
    return sqlite::open_log_store(settings);
}

}  // namespace aviary::store
