// sqlite_rate: the raw SQLite rate for the writes a lease operation makes, as the floor and
// ceiling aviary's store is judged against.
//
// One operation = one transaction: acquire is the conditional lease upsert aviary uses plus one
// event insert; release is the conditional delete plus one event insert. WAL,
// synchronous=FULL (one fsync of the WAL per commit), foreign keys on, the schema aviary's
// migrations create. Each thread has its own connection (busy_timeout) and its own node, and
// loops acquire, release. With many threads every commit still waits for its own fsync and for
// the write lock: there is no group commit here. `--batch K` instead puts K operations in one
// transaction on one thread (what group commit reaches with K writers queued).
//
//   sqlite_rate --db /same/disk/x.db --threads 32 --duration 10 --warmup 2 [--batch 1]
//
// Prints a summary and one "RESULT " line with key=value pairs.
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "latency.hpp"

namespace {

using aviary::bench::percentile_ms;

using Clock = std::chrono::steady_clock;

struct Options {
    std::string db;
    int threads = 1;
    int nodes = 32;
    int batch = 1;
    double duration_s = 10;
    double warmup_s = 2;
    int busy_timeout_ms = 5000;
    std::string synchronous = "FULL";
    std::string label = "sqlite";
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "sqlite_rate: %s\n"
                 "usage: sqlite_rate --db PATH [--threads N] [--batch K] [--duration S] "
                 "[--warmup S] [--synchronous FULL|NORMAL] [--label NAME]\n",
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
        } else if (arg == "--threads") {
            options.threads = std::atoi(value().c_str());
        } else if (arg == "--batch") {
            options.batch = std::atoi(value().c_str());
        } else if (arg == "--duration") {
            options.duration_s = std::atof(value().c_str());
        } else if (arg == "--warmup") {
            options.warmup_s = std::atof(value().c_str());
        } else if (arg == "--synchronous") {
            options.synchronous = value();
        } else if (arg == "--label") {
            options.label = value();
        } else {
            usage("unknown flag");
        }
    }
    if (options.db.empty()) {
        usage("--db is required");
    }
    if (options.threads < 1 || options.threads > 1024 || options.batch < 1) {
        usage("--threads must be 1..1024, --batch at least 1");
    }
    if (options.batch > 1 && options.threads != 1) {
        usage("--batch needs --threads 1");
    }
    options.nodes = std::max(options.nodes, options.threads * options.batch);
    return options;
}

// aviary's tables and indexes after its migrations (src/store/sqlite/migrations.cpp, v1..v3;
// the waiters table is left out: these writes do not touch it).
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY, driver TEXT NOT NULL, image_tag TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '{}', note TEXT NOT NULL DEFAULT '',
    maintenance_reason TEXT NOT NULL DEFAULT '', source TEXT NOT NULL DEFAULT 'config');
CREATE TABLE IF NOT EXISTS leases (
    node TEXT PRIMARY KEY REFERENCES nodes (name), owner TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', acquired_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
    id TEXT, exclusive INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL,
    kind TEXT NOT NULL, node TEXT NOT NULL DEFAULT '', before TEXT NOT NULL DEFAULT '{}',
    after TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS events_node_id ON events (node, id);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE INDEX IF NOT EXISTS leases_id ON leases (id);
CREATE INDEX IF NOT EXISTS leases_expires_at ON leases (expires_at);
)sql";

// The writes the issue names: a conditional upsert of the lease row (the statement aviary's store
// ran up to commit 72075c6; since 2fc6577 it deletes a lapsed row and inserts instead, after
// reading the pool and the waiter queue) or the conditional delete aviary runs, and one event.
constexpr const char* kUpsertLease = R"sql(
INSERT INTO leases (node, id, owner, reason, acquired_at, expires_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (node) DO UPDATE SET
    id = CASE WHEN leases.owner = excluded.owner AND leases.expires_at > excluded.acquired_at
              THEN leases.id ELSE excluded.id END,
    acquired_at = CASE WHEN leases.owner = excluded.owner
                            AND leases.expires_at > excluded.acquired_at
                       THEN leases.acquired_at ELSE excluded.acquired_at END,
    owner = excluded.owner,
    reason = excluded.reason,
    expires_at = excluded.expires_at
WHERE leases.owner = excluded.owner OR leases.expires_at <= excluded.acquired_at
RETURNING id, node, owner, reason, acquired_at, expires_at, exclusive)sql";
constexpr const char* kDeleteLease = R"sql(
DELETE FROM leases WHERE node = ?1 AND expires_at > ?2 AND (?3 = '' OR owner = ?3)
RETURNING id, node, owner, reason, acquired_at, expires_at, exclusive)sql";
constexpr const char* kInsertEvent =
    "INSERT INTO events (at, actor, kind, node, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

[[noreturn]] void die(sqlite3* db, const char* what) {
    std::fprintf(stderr, "sqlite_rate: %s: %s\n", what, db ? sqlite3_errmsg(db) : "?");
    std::exit(1);
}

sqlite3* open_db(const Options& options) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(options.db.c_str(), &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
        die(db, "open");
    }
    sqlite3_busy_timeout(db, options.busy_timeout_ms);
    std::string pragmas = "PRAGMA journal_mode = WAL; PRAGMA synchronous = " + options.synchronous +
                          "; PRAGMA foreign_keys = ON;";
    if (sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
        die(db, "pragmas");
    }
    return db;
}

void set_up(const Options& options) {
    sqlite3* db = open_db(options);
    if (sqlite3_exec(db, kSchema, nullptr, nullptr, nullptr) != SQLITE_OK) {
        die(db, "schema");
    }
    sqlite3_exec(db, "BEGIN; DELETE FROM leases;", nullptr, nullptr, nullptr);
    for (int i = 0; i < options.nodes; ++i) {
        std::string sql = "INSERT OR IGNORE INTO nodes (name, driver) VALUES ('node-" +
                          std::to_string(i) + "', 'sim')";
        if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
            die(db, "nodes");
        }
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    sqlite3_close(db);
}

struct Shared {
    Clock::time_point measure_from;
    Clock::time_point measure_until;
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::string first_error;
};

struct ThreadResult {
    std::vector<std::uint32_t> latencies_us;  // per transaction, measured window only
    std::uint64_t ops = 0;                    // measured window only
    std::uint64_t errors = 0;
    std::uint64_t busy = 0;  // SQLITE_BUSY after busy_timeout (retried)
};

class Worker {
public:
    Worker(const Options& options, Shared& shared, int first_node, ThreadResult& out)
        : options_(options), shared_(shared), out_(out), db_(open_db(options)) {
        prepare(kUpsertLease, &upsert_);
        prepare(kDeleteLease, &remove_);
        prepare(kInsertEvent, &event_);
        prepare("BEGIN IMMEDIATE", &begin_);
        prepare("COMMIT", &commit_);
        prepare("ROLLBACK", &rollback_);
        for (int k = 0; k < options.batch; ++k) {
            std::string n = std::to_string(first_node + k);
            nodes_.push_back("node-" + n);
            owners_.push_back("bench-" + n);
        }
    }
    ~Worker() {
        for (auto* stmt : {upsert_, remove_, event_, begin_, commit_, rollback_}) {
            sqlite3_finalize(stmt);
        }
        sqlite3_close(db_);
    }

    void run() {
        for (std::uint64_t i = 0; !shared_.stop.load(std::memory_order_relaxed); ++i) {
            bool acquire = i % 2 == 0;
            auto start = Clock::now();
            bool ok = transaction(acquire);
            auto end = Clock::now();
            if (ok && start >= shared_.measure_from && end <= shared_.measure_until) {
                out_.ops += static_cast<std::uint64_t>(options_.batch);
                out_.latencies_us.push_back(static_cast<std::uint32_t>(
                    std::chrono::duration_cast<std::chrono::microseconds>(end - start).count()));
            }
        }
    }

private:
    void prepare(const char* sql, sqlite3_stmt** stmt) {
        if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, nullptr) !=
            SQLITE_OK) {
            die(db_, sql);
        }
    }

    int step_all(sqlite3_stmt* stmt) {
        int rc;
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        }
        sqlite3_reset(stmt);
        return rc;
    }

    void error(const char* what) {
        ++out_.errors;
        std::lock_guard lock{shared_.mu};
        if (shared_.first_error.empty()) {
            shared_.first_error = std::string{what} + ": " + sqlite3_errmsg(db_);
        }
    }

    /// One transaction of `batch` operations, all acquires or all releases. Retries BEGIN on
    /// SQLITE_BUSY (busy_timeout elapsed), as a server would.
    bool transaction(bool acquire) {
        int rc;
        while ((rc = step_all(begin_)) == SQLITE_BUSY) {
            ++out_.busy;
            if (shared_.stop.load()) {
                return false;
            }
        }
        if (rc != SQLITE_DONE) {
            error("BEGIN IMMEDIATE");
            return false;
        }
        std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
        for (int k = 0; k < options_.batch; ++k) {
            if (!operation(acquire, k, now)) {
                step_all(rollback_);
                return false;
            }
        }
        if (step_all(commit_) != SQLITE_DONE) {
            error("COMMIT");
            step_all(rollback_);
            return false;
        }
        return true;
    }

    bool operation(bool acquire, int k, std::int64_t now) {
        const std::string& node = nodes_[static_cast<std::size_t>(k)];
        const std::string& owner = owners_[static_cast<std::size_t>(k)];
        char id[32];
        std::snprintf(id, sizeof id, "01BENCH%019llu",
                      static_cast<unsigned long long>(++sequence_ * 1024 + k));
        // A lease's JSON as aviary's events carry it (before / after), about 170 bytes.
        char lease[512];
        std::snprintf(lease, sizeof lease,
                      R"({"id":"%s","node":"%s","owner":"%s","reason":"","acquired_at":)"
                      R"("2026-11-22T10:00:00.000Z","expires_at":"2026-11-23T10:00:00.000Z"})",
                      id, node.c_str(), owner.c_str());
        sqlite3_stmt* change = acquire ? upsert_ : remove_;
        sqlite3_bind_text(change, 1, node.data(), static_cast<int>(node.size()), SQLITE_STATIC);
        if (acquire) {
            sqlite3_bind_text(upsert_, 2, id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(upsert_, 3, owner.data(), static_cast<int>(owner.size()),
                              SQLITE_STATIC);
            sqlite3_bind_text(upsert_, 4, "", 0, SQLITE_STATIC);
            sqlite3_bind_int64(upsert_, 5, now);
            sqlite3_bind_int64(upsert_, 6, now + 24LL * 3600 * 1000);
        } else {
            sqlite3_bind_int64(remove_, 2, now);
            sqlite3_bind_text(remove_, 3, owner.data(), static_cast<int>(owner.size()),
                              SQLITE_STATIC);
        }
        if (step_all(change) != SQLITE_DONE) {
            error(acquire ? "upsert" : "delete");
            return false;
        }
        sqlite3_bind_int64(event_, 1, now);
        sqlite3_bind_text(event_, 2, owner.data(), static_cast<int>(owner.size()), SQLITE_STATIC);
        sqlite3_bind_text(event_, 3, acquire ? "lease.acquired" : "lease.released", -1,
                          SQLITE_STATIC);
        sqlite3_bind_text(event_, 4, node.data(), static_cast<int>(node.size()), SQLITE_STATIC);
        sqlite3_bind_text(event_, 5, acquire ? "{}" : lease, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(event_, 6, acquire ? lease : "{}", -1, SQLITE_TRANSIENT);
        if (step_all(event_) != SQLITE_DONE) {
            error("event insert");
            return false;
        }
        return true;
    }

    const Options& options_;
    Shared& shared_;
    ThreadResult& out_;
    sqlite3* db_;
    sqlite3_stmt* upsert_ = nullptr;
    sqlite3_stmt* remove_ = nullptr;
    sqlite3_stmt* event_ = nullptr;
    sqlite3_stmt* begin_ = nullptr;
    sqlite3_stmt* commit_ = nullptr;
    sqlite3_stmt* rollback_ = nullptr;
    std::vector<std::string> nodes_;
    std::vector<std::string> owners_;
    std::uint64_t sequence_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
    Options options = parse(argc, argv);
    set_up(options);
    Shared shared;
    auto start = Clock::now();
    shared.measure_from = start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>{options.warmup_s});
    shared.measure_until =
        shared.measure_from + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>{options.duration_s});
    std::vector<ThreadResult> results(static_cast<std::size_t>(options.threads));
    std::vector<std::thread> threads;
    for (int i = 0; i < options.threads; ++i) {
        threads.emplace_back([&, i] {
            Worker worker{options, shared, i * options.batch, results[static_cast<size_t>(i)]};
            worker.run();
        });
    }
    std::this_thread::sleep_until(shared.measure_until);
    shared.stop.store(true);
    for (auto& thread : threads) {
        thread.join();
    }
    std::uint64_t ops = 0;
    std::uint64_t errors = 0;
    std::uint64_t busy = 0;
    std::uint64_t min_thread = UINT64_MAX;
    std::uint64_t max_thread = 0;
    for (auto& result : results) {
        min_thread = std::min(min_thread, result.ops);
        max_thread = std::max(max_thread, result.ops);
        ops += result.ops;
        errors += result.errors;
        busy += result.busy;
    }
    auto all = aviary::bench::merged_latencies(results);
    double ops_per_s = static_cast<double>(ops) / options.duration_s;
    double commits_per_s = static_cast<double>(all.size()) / options.duration_s;
    std::printf(
        "%s: %d thread(s), %d op(s)/commit, synchronous=%s, %.1f s measured: %.0f ops/s "
        "(%.0f commits/s); commit latency ms p50 %.3f p99 %.3f max %.3f; busy retries %llu; "
        "ops per thread min %llu max %llu\n",
        options.label.c_str(), options.threads, options.batch, options.synchronous.c_str(),
        options.duration_s, ops_per_s, commits_per_s, percentile_ms(all, 50),
        percentile_ms(all, 99), all.empty() ? 0 : all.back() / 1000.0,
        static_cast<unsigned long long>(busy), static_cast<unsigned long long>(min_thread),
        static_cast<unsigned long long>(max_thread));
    if (errors > 0) {
        std::printf("!!! %s: %llu ERRORS; first: %s\n", options.label.c_str(),
                    static_cast<unsigned long long>(errors), shared.first_error.c_str());
    }
    std::printf(
        "RESULT label=%s threads=%d batch=%d ops=%llu ops_per_s=%.0f commits_per_s=%.0f "
        "p50_ms=%.3f p99_ms=%.3f max_ms=%.3f busy=%llu thread_min_ops=%llu thread_max_ops=%llu "
        "errors=%llu\n",
        options.label.c_str(), options.threads, options.batch, static_cast<unsigned long long>(ops),
        ops_per_s, commits_per_s, percentile_ms(all, 50), percentile_ms(all, 99),
        all.empty() ? 0 : all.back() / 1000.0, static_cast<unsigned long long>(busy),
        static_cast<unsigned long long>(min_thread), static_cast<unsigned long long>(max_thread),
        static_cast<unsigned long long>(errors));
    return errors == 0 ? 0 : 1;
}
