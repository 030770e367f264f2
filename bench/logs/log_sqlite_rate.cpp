// log_sqlite_rate: the raw SQLite rate for the rows aviary's log store writes, as the ceiling
// its storage path is judged against.
//
// One writer thread on one connection, as aviary's log store has: BEGIN IMMEDIATE, B inserts
// of log lines, COMMIT, again. The table and its index are the log store's
// (src/store/sqlite/log_store.cpp, schema v1): id INTEGER PRIMARY KEY AUTOINCREMENT, kind,
// scope, time_ns, level, sender, message, and an index on (kind, time_ns). WAL,
// synchronous=FULL (one fsync of the WAL per commit), and the settings aviary gives the library
// and each connection (src/store/sqlite/connection.cpp): memory statistics off, temp_store =
// MEMORY. Not aviary's own VFS, which gathers a commit's WAL writes into one. The rows are the ones
// logs_bench uploads (bench/logs/rows.hpp): kind 0 (a log), scope "", time now, level 20, sender
// bench-<k> where each transaction is one sender's lines (k turns over --senders, as one upload is
// one connection's), a message of --message-bytes. A plain INSERT, in the transaction itself.
//
// --aviary-shape writes the way aviary's log store does instead (a diagnostic, not the
// ceiling): each batch inside SAVEPOINT op ... RELEASE op within the transaction (what its
// group commit does around every operation), and each row as INSERT ... RETURNING id, its id
// read back. The difference between the two is what that shape costs, apart from WebSockets
// and JSON; --savepoint and --returning take one half each.
//
//   log_sqlite_rate --db /same/disk/x.db --batch 1000 --duration 10 --warmup 2 [--senders 4]
//                   [--message-bytes 100] [--queries 5] [--synchronous FULL|NORMAL]
//                   [--aviary-shape | --savepoint | --returning]
//
// After the measured window, --queries times the read getLogs makes for one sender's lines in
// the last hour, newest first, at most 10,000 (the log store's query with its optional filters
// fixed): p50 in ms. Prints a summary and one "RESULT " line with key=value pairs.
#include <sqlite3.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "leases/latency.hpp"
#include "logs/rows.hpp"

namespace {

namespace bench = aviary::bench;
using Clock = std::chrono::steady_clock;

constexpr int kMaxResults = 10000;

struct Options {
    std::string db;
    int batch = 1000;
    int senders = 4;
    std::size_t message_bytes = 100;
    double duration_s = 10;
    double warmup_s = 2;
    int queries = 5;
    std::string synchronous = "FULL";
    std::string label = "sqlite";
    bool savepoint = false;  // each batch in SAVEPOINT op ... RELEASE op
    bool returning = false;  // INSERT ... RETURNING id
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "log_sqlite_rate: %s\n"
                 "usage: log_sqlite_rate --db PATH [--batch B] [--senders N] [--message-bytes N] "
                 "[--duration S] [--warmup S] [--queries Q] [--synchronous FULL|NORMAL] "
                 "[--label NAME] [--aviary-shape | --savepoint | --returning]\n",
                 why);
    std::exit(2);
}

Options parse(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                usage("missing value");
            }
            return argv[++i];
        };
        if (arg == "--db") {
            options.db = value();
        } else if (arg == "--batch") {
            options.batch = std::atoi(value().c_str());
        } else if (arg == "--senders") {
            options.senders = std::atoi(value().c_str());
        } else if (arg == "--message-bytes") {
            options.message_bytes = static_cast<std::size_t>(std::atol(value().c_str()));
        } else if (arg == "--duration") {
            options.duration_s = std::atof(value().c_str());
        } else if (arg == "--warmup") {
            options.warmup_s = std::atof(value().c_str());
        } else if (arg == "--queries") {
            options.queries = std::atoi(value().c_str());
        } else if (arg == "--synchronous") {
            options.synchronous = value();
        } else if (arg == "--label") {
            options.label = value();
        } else if (arg == "--aviary-shape") {
            options.savepoint = true;
            options.returning = true;
        } else if (arg == "--savepoint") {
            options.savepoint = true;
        } else if (arg == "--returning") {
            options.returning = true;
        } else {
            usage("unknown flag");
        }
    }
    if (options.db.empty()) {
        usage("--db is required");
    }
    if (options.batch < 1 || options.senders < 1 || options.message_bytes < 40 ||
        options.duration_s <= 0 || options.queries < 0) {
        usage("--batch and --senders from 1, --message-bytes from 40, --duration above 0");
    }
    return options;
}

// The log store's schema v1 (src/store/sqlite/log_store.cpp), without its feed_positions and
// schema_version tables, which an upload does not touch.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS log_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    scope TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    level INTEGER NOT NULL,
    sender TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_records_kind_time ON log_records (kind, time_ns);
)sql";

constexpr const char* kInsert =
    "INSERT INTO log_records (kind, scope, time_ns, level, sender, message) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
constexpr const char* kInsertReturning =
    "INSERT INTO log_records (kind, scope, time_ns, level, sender, message) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id";

constexpr const char* kQuery =
    "SELECT id, kind, scope, time_ns, level, sender, message FROM log_records "
    "WHERE kind = 0 AND time_ns >= ?1 AND sender = ?2 "
    "ORDER BY time_ns DESC, id DESC LIMIT ?3";

[[noreturn]] void die(sqlite3* db, const char* what) {
    std::fprintf(stderr, "log_sqlite_rate: %s: %s\n", what, db ? sqlite3_errmsg(db) : "?");
    std::exit(1);
}

sqlite3* open_db(const Options& options) {
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(options.db.c_str(), &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
        die(db, "open");
    }
    sqlite3_busy_timeout(db, 5000);
    std::string pragmas = "PRAGMA journal_mode = WAL; PRAGMA synchronous = " + options.synchronous +
                          "; PRAGMA temp_store = MEMORY;";
    if (sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
        die(db, "pragmas");
    }
    if (sqlite3_exec(db, kSchema, nullptr, nullptr, nullptr) != SQLITE_OK) {
        die(db, "schema");
    }
    return db;
}

sqlite3_stmt* prepare(sqlite3* db, const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
        die(db, sql);
    }
    return stmt;
}

int step_all(sqlite3_stmt* stmt) {
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    }
    sqlite3_reset(stmt);
    return rc;
}

double cpu_seconds_self() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    auto secs = [](const timeval& t) {
        return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
    };
    return secs(usage.ru_utime) + secs(usage.ru_stime);
}

struct Result {
    std::vector<std::uint32_t> latencies_us;  // per commit, measured window only
    std::uint64_t rows = 0;                   // measured window only
    std::uint64_t all_rows = 0;
    std::uint64_t errors = 0;
    std::string first_error;
};

struct Window {
    Clock::time_point from;
    Clock::time_point until;
    std::atomic<bool> stop{false};
};

void write_loop(sqlite3* db, const Options& options, Window& window, Result& out) {
    sqlite3_stmt* begin = prepare(db, "BEGIN IMMEDIATE");
    sqlite3_stmt* commit = prepare(db, "COMMIT");
    sqlite3_stmt* rollback = prepare(db, "ROLLBACK");
    sqlite3_stmt* insert = prepare(db, options.returning ? kInsertReturning : kInsert);
    sqlite3_stmt* savepoint = prepare(db, "SAVEPOINT op");
    sqlite3_stmt* release = prepare(db, "RELEASE op");
    std::int64_t last_id = 0;
    std::vector<std::string> senders;
    for (int s = 0; s < options.senders; ++s) {
        senders.push_back(bench::sender_name(s));
    }
    std::vector<std::uint64_t> counters(senders.size(), 0);
    std::string message;
    auto fail = [&](const char* what) {
        ++out.errors;
        if (out.first_error.empty()) {
            out.first_error = std::string{what} + ": " + sqlite3_errmsg(db);
        }
    };
    for (std::uint64_t k = 0; !window.stop.load(std::memory_order_relaxed); ++k) {
        const std::size_t s = k % senders.size();
        auto start = Clock::now();
        if (step_all(begin) != SQLITE_DONE) {
            fail("BEGIN IMMEDIATE");
            continue;
        }
        bool ok = !options.savepoint || step_all(savepoint) == SQLITE_DONE;
        if (!ok) {
            fail("SAVEPOINT");
        }
        for (int i = 0; i < options.batch && ok; ++i) {
            message.clear();
            bench::append_message(message, senders[s], counters[s]++, options.message_bytes);
            sqlite3_bind_int64(insert, 1, 0);
            sqlite3_bind_text(insert, 2, "", 0, SQLITE_STATIC);
            sqlite3_bind_int64(insert, 3, bench::now_ns());
            sqlite3_bind_int64(insert, 4, bench::kLevel);
            sqlite3_bind_text(insert, 5, senders[s].data(), static_cast<int>(senders[s].size()),
                              SQLITE_STATIC);
            sqlite3_bind_text(insert, 6, message.data(), static_cast<int>(message.size()),
                              SQLITE_STATIC);
            if (options.returning) {
                int rc = sqlite3_step(insert);
                if (rc == SQLITE_ROW) {
                    last_id = sqlite3_column_int64(insert, 0);
                    rc = sqlite3_step(insert);
                }
                sqlite3_reset(insert);
                if (rc != SQLITE_DONE) {
                    fail("insert");
                    ok = false;
                }
            } else if (step_all(insert) != SQLITE_DONE) {
                fail("insert");
                ok = false;
            }
        }
        if (ok && options.savepoint && step_all(release) != SQLITE_DONE) {
            fail("RELEASE");
            ok = false;
        }
        if (!ok || step_all(commit) != SQLITE_DONE) {
            if (ok) {
                fail("COMMIT");
            }
            step_all(rollback);
            continue;
        }
        auto end = Clock::now();
        out.all_rows += static_cast<std::uint64_t>(options.batch);
        if (end >= window.from && end < window.until) {
            out.rows += static_cast<std::uint64_t>(options.batch);
            out.latencies_us.push_back(static_cast<std::uint32_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(end - start).count()));
        }
    }
    for (auto* stmt : {begin, commit, rollback, insert, savepoint, release}) {
        sqlite3_finalize(stmt);
    }
    (void)last_id;
}

/// p50 of `times` reads of sender bench-0's lines in the last hour; the rows of the last one.
std::pair<double, int> query_p50(sqlite3* db, int times) {
    sqlite3_stmt* select = prepare(db, kQuery);
    const std::string sender = bench::sender_name(0);
    std::vector<std::uint32_t> latencies_us;
    int rows = 0;
    for (int i = 0; i < times; ++i) {
        auto start = Clock::now();
        sqlite3_bind_int64(select, 1, bench::now_ns() - std::int64_t{3600} * 1'000'000'000);
        sqlite3_bind_text(select, 2, sender.data(), static_cast<int>(sender.size()), SQLITE_STATIC);
        sqlite3_bind_int64(select, 3, kMaxResults);
        rows = 0;
        std::size_t bytes = 0;
        while (sqlite3_step(select) == SQLITE_ROW) {
            // Read the columns as a server would to answer.
            bytes += static_cast<std::size_t>(sqlite3_column_bytes(select, 5)) +
                     static_cast<std::size_t>(sqlite3_column_bytes(select, 6));
            (void)sqlite3_column_text(select, 5);
            (void)sqlite3_column_text(select, 6);
            ++rows;
        }
        sqlite3_reset(select);
        latencies_us.push_back(static_cast<std::uint32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count()));
        (void)bytes;
    }
    sqlite3_finalize(select);
    std::sort(latencies_us.begin(), latencies_us.end());
    return {bench::percentile_ms(latencies_us, 50), rows};
}

}  // namespace

int main(int argc, char** argv) {
    Options options = parse(argc, argv);
    sqlite3* db = open_db(options);
    Window window;
    auto start = Clock::now();
    window.from = start + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(options.warmup_s));
    window.until = window.from + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(options.duration_s));
    Result result;
    std::thread writer{[&] { write_loop(db, options, window, result); }};
    std::this_thread::sleep_until(window.from);
    const double cpu0 = cpu_seconds_self();
    const auto t0 = Clock::now();
    std::this_thread::sleep_until(window.until);
    const double cpu1 = cpu_seconds_self();
    const double window_s = std::chrono::duration<double>(Clock::now() - t0).count();
    window.stop.store(true);
    writer.join();

    std::sort(result.latencies_us.begin(), result.latencies_us.end());
    const double rows_per_s = static_cast<double>(result.rows) / options.duration_s;
    const double cores = (cpu1 - cpu0) / window_s;
    const double us_per_row =
        result.rows > 0 ? (cpu1 - cpu0) / static_cast<double>(result.rows) * 1e6 : 0;
    auto [query_ms, query_rows] =
        options.queries > 0 ? query_p50(db, options.queries) : std::pair<double, int>{0, 0};
    sqlite3_close(db);
    const auto& all = result.latencies_us;
    std::printf(
        "%s: 1 writer, %d rows/commit%s, synchronous=%s, %.1f s measured: %.0f rows/s "
        "(%.0f commits/s); commit latency ms p50 %.3f p99 %.3f max %.3f; %.2f cores, "
        "%.2f us CPU per row; %llu rows stored; query of one sender's lines p50 %.2f ms "
        "(%d rows)\n",
        options.label.c_str(), options.batch,
        options.savepoint && options.returning
            ? " (aviary's shape: SAVEPOINT, INSERT ... RETURNING id)"
        : options.savepoint ? " (in a SAVEPOINT)"
        : options.returning ? " (INSERT ... RETURNING id)"
                            : "",
        options.synchronous.c_str(), options.duration_s, rows_per_s,
        static_cast<double>(all.size()) / options.duration_s, bench::percentile_ms(all, 50),
        bench::percentile_ms(all, 99), all.empty() ? 0 : all.back() / 1000.0, cores, us_per_row,
        static_cast<unsigned long long>(result.all_rows), query_ms, query_rows);
    if (result.errors > 0) {
        std::printf("!!! %s: %llu ERRORS; first: %s\n", options.label.c_str(),
                    static_cast<unsigned long long>(result.errors), result.first_error.c_str());
    }
    std::printf(
        "RESULT label=%s batch=%d rows=%llu rows_per_s=%.0f p50_ms=%.3f p99_ms=%.3f "
        "cores=%.2f us_per_row=%.2f stored=%llu query_p50_ms=%.2f query_rows=%d errors=%llu\n",
        options.label.c_str(), options.batch, static_cast<unsigned long long>(result.rows),
        rows_per_s, bench::percentile_ms(all, 50), bench::percentile_ms(all, 99), cores, us_per_row,
        static_cast<unsigned long long>(result.all_rows), query_ms, query_rows,
        static_cast<unsigned long long>(result.errors));
    return result.errors == 0 ? 0 : 1;
}
