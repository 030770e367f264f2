// log_pg_copy: PostgreSQL's bulk-ingest path for the same log lines: COPY ... FROM STDIN in
// batches, each batch its own transaction (autocommit), on a server with fsync and
// synchronous_commit on, so a batch is durable when its COPY is answered.
//
// C threads, each on its own connection, as logs_bench's C WebSockets: COPY B rows of one
// sender (bench-<c>), wait for the answer, again. The table has the log store's columns (id,
// kind, scope, time_ns, level, sender, message; src/store/sqlite/log_store.cpp) and its index
// on (kind, time_ns); the id is an identity column with its primary key index, as a tail's
// cursor needs. The rows are logs_bench's (bench/logs/rows.hpp).
//
//   log_pg_copy --url postgresql://... --connections 4 --batch 1000 --duration 10 --warmup 2
//               [--message-bytes 100] [--queries 5] [--server-pid PID]
//
// With --server-pid (the postmaster's), the server's CPU over the window (it and its children:
// backends, WAL writer, checkpointer) in cores and microseconds per row. After the window and
// an ANALYZE (what autovacuum would have done by then),
// --queries times the read getLogs makes for bench-0's lines in the last hour (newest 10,000).
// Prints a summary and one "RESULT " line with key=value pairs.
#include <libpq-fe.h>

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

#include "leases/latency.hpp"
#include "logs/proc_cpu.hpp"
#include "logs/rows.hpp"

namespace {

namespace bench = aviary::bench;
using Clock = std::chrono::steady_clock;

constexpr int kMaxResults = 10000;

struct Options {
    std::string url;
    int connections = 4;
    int batch = 1000;
    std::size_t message_bytes = 100;
    double duration_s = 10;
    double warmup_s = 2;
    int queries = 5;
    int server_pid = 0;
    std::string label = "postgres";
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "log_pg_copy: %s\n"
                 "usage: log_pg_copy --url URL [--connections C] [--batch B] [--message-bytes N] "
                 "[--duration S] [--warmup S] [--queries Q] [--server-pid PID] [--label NAME]\n",
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
        if (arg == "--url") {
            options.url = value();
        } else if (arg == "--connections") {
            options.connections = std::atoi(value().c_str());
        } else if (arg == "--batch") {
            options.batch = std::atoi(value().c_str());
        } else if (arg == "--message-bytes") {
            options.message_bytes = static_cast<std::size_t>(std::atol(value().c_str()));
        } else if (arg == "--duration") {
            options.duration_s = std::atof(value().c_str());
        } else if (arg == "--warmup") {
            options.warmup_s = std::atof(value().c_str());
        } else if (arg == "--queries") {
            options.queries = std::atoi(value().c_str());
        } else if (arg == "--server-pid") {
            options.server_pid = std::atoi(value().c_str());
        } else if (arg == "--label") {
            options.label = value();
        } else {
            usage("unknown flag");
        }
    }
    if (options.url.empty()) {
        usage("--url is required");
    }
    if (options.connections < 1 || options.connections > 256 || options.batch < 1 ||
        options.message_bytes < 40 || options.duration_s <= 0 || options.queries < 0) {
        usage("--connections 1-256, --batch from 1, --message-bytes from 40, --duration above 0");
    }
    return options;
}

constexpr const char* kSchema = R"sql(
SET client_min_messages = warning;
DROP TABLE IF EXISTS log_records;
CREATE TABLE log_records (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind INTEGER NOT NULL,
    scope TEXT NOT NULL,
    time_ns BIGINT NOT NULL,
    level INTEGER NOT NULL,
    sender TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX log_records_kind_time ON log_records (kind, time_ns);
)sql";

constexpr const char* kCopy =
    "COPY log_records (kind, scope, time_ns, level, sender, message) FROM STDIN";

constexpr const char* kQuery =
    "SELECT id, kind, scope, time_ns, level, sender, message FROM log_records "
    "WHERE kind = 0 AND time_ns >= $1 AND sender = $2 "
    "ORDER BY time_ns DESC, id DESC LIMIT $3";

PGconn* connect_db(const Options& options) {
    PGconn* db = PQconnectdb(options.url.c_str());
    if (PQstatus(db) != CONNECTION_OK) {
        std::fprintf(stderr, "log_pg_copy: connect: %s", PQerrorMessage(db));
        std::exit(1);
    }
    return db;
}

void exec_or_die(PGconn* db, const char* sql) {
    PGresult* result = PQexec(db, sql);
    if (PQresultStatus(result) != PGRES_COMMAND_OK && PQresultStatus(result) != PGRES_TUPLES_OK) {
        std::fprintf(stderr, "log_pg_copy: %s: %s", sql, PQerrorMessage(db));
        std::exit(1);
    }
    PQclear(result);
}

struct Shared {
    Clock::time_point from;
    Clock::time_point until;
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::string first_error;
};

struct ThreadResult {
    std::vector<std::uint32_t> latencies_us;  // per COPY, measured window only
    std::uint64_t rows = 0;                   // measured window only
    std::uint64_t all_rows = 0;
    std::uint64_t errors = 0;
};

/// One COPY of `text`; empty when it stored `rows` rows, else what went wrong.
std::string copy_batch(PGconn* db, const std::string& text, int rows) {
    PGresult* started = PQexec(db, kCopy);
    if (PQresultStatus(started) != PGRES_COPY_IN) {
        PQclear(started);
        return std::string{"COPY: "} + PQerrorMessage(db);
    }
    PQclear(started);
    if (PQputCopyData(db, text.data(), static_cast<int>(text.size())) != 1 ||
        PQputCopyEnd(db, nullptr) != 1) {
        return std::string{"COPY data: "} + PQerrorMessage(db);
    }
    std::string wrong;
    while (PGresult* result = PQgetResult(db)) {
        if (PQresultStatus(result) != PGRES_COMMAND_OK) {
            wrong = std::string{"COPY end: "} + PQresultErrorMessage(result);
        } else if (std::atoi(PQcmdTuples(result)) != rows) {
            wrong = std::string{"COPY stored "} + PQcmdTuples(result) + " rows, not " +
                    std::to_string(rows);
        }
        PQclear(result);
    }
    return wrong;
}

void run_connection(const Options& options, int index, Shared& shared, ThreadResult& out) {
    PGconn* db = connect_db(options);
    const std::string sender = bench::sender_name(index);
    std::uint64_t counter = 0;
    std::string text;
    while (!shared.stop.load(std::memory_order_relaxed)) {
        // COPY's text format: tab-separated, "" is an empty string (NULL would be \N); the
        // messages hold no tab, newline or backslash.
        text.clear();
        for (int i = 0; i < options.batch; ++i) {
            text += "0\t\t";
            text += std::to_string(bench::now_ns());
            text += '\t';
            text += std::to_string(bench::kLevel);
            text += '\t';
            text += sender;
            text += '\t';
            bench::append_message(text, sender, counter++, options.message_bytes);
            text += '\n';
        }
        auto start = Clock::now();
        auto wrong = copy_batch(db, text, options.batch);
        auto end = Clock::now();
        if (!wrong.empty()) {
            ++out.errors;
            std::lock_guard lock{shared.mu};
            if (shared.first_error.empty()) {
                shared.first_error = wrong;
            }
            continue;
        }
        out.all_rows += static_cast<std::uint64_t>(options.batch);
        if (end >= shared.from && end < shared.until) {
            out.rows += static_cast<std::uint64_t>(options.batch);
            out.latencies_us.push_back(static_cast<std::uint32_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(end - start).count()));
        }
    }
    PQfinish(db);
}

std::pair<double, int> query_p50(PGconn* db, int times) {
    const std::string sender = bench::sender_name(0);
    std::vector<std::uint32_t> latencies_us;
    int rows = 0;
    for (int i = 0; i < times; ++i) {
        auto start = Clock::now();
        const std::string since =
            std::to_string(bench::now_ns() - std::int64_t{3600} * 1'000'000'000);
        const std::string limit = std::to_string(kMaxResults);
        const char* params[] = {since.c_str(), sender.c_str(), limit.c_str()};
        PGresult* result = PQexecParams(db, kQuery, 3, nullptr, params, nullptr, nullptr, 0);
        if (PQresultStatus(result) != PGRES_TUPLES_OK) {
            std::fprintf(stderr, "log_pg_copy: query: %s", PQerrorMessage(db));
            std::exit(1);
        }
        rows = PQntuples(result);
        PQclear(result);
        latencies_us.push_back(static_cast<std::uint32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count()));
    }
    std::sort(latencies_us.begin(), latencies_us.end());
    return {bench::percentile_ms(latencies_us, 50), rows};
}

}  // namespace

int main(int argc, char** argv) {
    Options options = parse(argc, argv);
    PGconn* admin = connect_db(options);
    exec_or_die(admin, kSchema);

    Shared shared;
    auto start = Clock::now();
    shared.from = start + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(options.warmup_s));
    shared.until = shared.from + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(options.duration_s));
    std::vector<ThreadResult> results(static_cast<std::size_t>(options.connections));
    std::vector<std::thread> threads;
    for (int c = 0; c < options.connections; ++c) {
        threads.emplace_back(run_connection, std::cref(options), c, std::ref(shared),
                             std::ref(results[static_cast<std::size_t>(c)]));
    }
    std::this_thread::sleep_until(shared.from);
    const auto server0 = options.server_pid > 0 ? bench::tree_ticks(options.server_pid) : 0;
    const auto t0 = Clock::now();
    std::this_thread::sleep_until(shared.until);
    const auto server1 = options.server_pid > 0 ? bench::tree_ticks(options.server_pid) : 0;
    const double window_s = std::chrono::duration<double>(Clock::now() - t0).count();
    shared.stop.store(true);
    for (auto& thread : threads) {
        thread.join();
    }

    std::uint64_t rows = 0;
    std::uint64_t all_rows = 0;
    std::uint64_t errors = 0;
    for (const auto& result : results) {
        rows += result.rows;
        all_rows += result.all_rows;
        errors += result.errors;
    }
    auto all = bench::merged_latencies(results);
    const double rows_per_s = static_cast<double>(rows) / options.duration_s;
    const double hz = bench::ticks_per_second();
    const double cores = static_cast<double>(server1 - server0) / hz / window_s;
    const double us_per_row =
        rows > 0 ? static_cast<double>(server1 - server0) / hz / static_cast<double>(rows) * 1e6
                 : 0;
    // The statistics autovacuum would have gathered on a table this size by now: without
    // them the planner does not know the index on (kind, time_ns) is selective.
    if (options.queries > 0) {
        exec_or_die(admin, "ANALYZE log_records");
    }
    auto [query_ms, query_rows] =
        options.queries > 0 ? query_p50(admin, options.queries) : std::pair<double, int>{0, 0};
    PQfinish(admin);
    std::printf(
        "%s: %d connection(s), COPY of %d rows each, %.1f s measured: %.0f rows/s; COPY latency "
        "ms p50 %.3f p99 %.3f max %.3f; server %.2f cores, %.2f us CPU per row; %llu rows "
        "stored; query of one sender's lines p50 %.2f ms (%d rows)\n",
        options.label.c_str(), options.connections, options.batch, options.duration_s, rows_per_s,
        bench::percentile_ms(all, 50), bench::percentile_ms(all, 99),
        all.empty() ? 0 : all.back() / 1000.0, cores, us_per_row,
        static_cast<unsigned long long>(all_rows), query_ms, query_rows);
    if (errors > 0) {
        std::printf("!!! %s: %llu ERRORS; first: %s\n", options.label.c_str(),
                    static_cast<unsigned long long>(errors), shared.first_error.c_str());
    }
    std::printf(
        "RESULT label=%s connections=%d batch=%d rows=%llu rows_per_s=%.0f p50_ms=%.3f "
        "p99_ms=%.3f cores=%.2f us_per_row=%.2f stored=%llu query_p50_ms=%.2f query_rows=%d "
        "errors=%llu\n",
        options.label.c_str(), options.connections, options.batch,
        static_cast<unsigned long long>(rows), rows_per_s, bench::percentile_ms(all, 50),
        bench::percentile_ms(all, 99), cores, us_per_row, static_cast<unsigned long long>(all_rows),
        query_ms, query_rows, static_cast<unsigned long long>(errors));
    return errors == 0 ? 0 : 1;
}
