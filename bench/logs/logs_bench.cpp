// bench/logs: what ingest over Bitahoy's WebSocket costs, measured against the real binary.
//
//   logs_bench --dir DIR [--connections C] [--batch B] [--duration S] [--warmup S]
//              [--message-bytes N] [--queries Q] [--store-url URL --db-pid PID] [--label L]
//
// (defaults 4, 1000, 10, 2, 100, 5). bench/logs/run.sh builds it and runs it with a temp dir on
// a real disk and the knobs from the environment.
//
// serve runs on SQLite in DIR (or, with --store-url, on that PostgreSQL: the log store's tables
// there, their CPU shown with --db-pid) with the log store's default logs.synchronous=full (an
// upload is answered once its commit is fsynced), logs.logs_timewindow 1h (retention removes
// nothing during the run) and server.websocket.max_message_bytes / logs.max_upload large enough for
// one batch.
//
// 1. ingest: C threads, each with its own WebSocket to ws://ADDRESS/ws (net::WebSocketClient),
//    send uploadLogs messages of B lines one after another, each once the previous one was
//    answered: {"action":"uploadLogs","logs":[{"level":20,"time":NOW,"sender":"bench-<c>",
//    "message":"line <counter> from bench-<c>: <filler to N bytes>"}, ...]}. Every answer is
//    checked: {"success":true,"action":"uploadLogs","comment":"Inserted B log(s) into db."}
//    and anything else counts as a failure. After the warm-up, for S seconds: lines/s of the
//    acknowledgements that arrived in the window, p50/p99 of their round trips, and serve's CPU
//    over the window from /proc/PID/stat (utime + stime), in cores and in microseconds per
//    acknowledged line; per thread of serve too (/proc/PID/task/*/stat), so the log store's
//    writer shows apart from the I/O threads. Before the ingest, one upload of a few lines from
//    the sender bench-rare.
// 2. query: after the ingest, on a fresh connection, Q times getLogs with timewindow 3600 and a
//    sender filter: bench-0 (one connection's lines, answered up to logs.max_results, newest
//    first), then bench-rare (a handful of lines among all the others). p50 and max of the round
//    trips, the entries returned and whether the answer said truncated.
// 3. stored: the rows in DIR/serve/logs.db, counted with SQLite read-only while serve runs,
//    against the lines acknowledged; the database's size on disk.
// It prints figures and one "RESULT " line, and asserts nothing about them.
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "leases/latency.hpp"
#include "logs/proc_cpu.hpp"
#include "logs/rows.hpp"
#include "support/server_process.hpp"

namespace json = boost::json;
namespace net = aviary::net;
namespace bench = aviary::bench;
using aviary::test::ServerProcess;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kAnswerTimeout = std::chrono::seconds{60};
constexpr std::string_view kRareSender = "bench-rare";
constexpr int kRareLines = 5;
constexpr std::size_t kShownAnswer = 300;

struct Options {
    int connections = 4;
    int batch = 1000;
    double duration_s = 10;
    double warmup_s = 2;
    std::size_t message_bytes = 100;
    int queries = 5;
    std::string dir;
    std::string store_url;  ///< --store-url: serve on this PostgreSQL instead of SQLite
    int db_pid = 0;         ///< --db-pid: the postmaster, whose CPU (with its children) is shown
    std::string label = "aviary";
};

std::string make_config(const Options& options) {
    // One line of the upload is about 70 bytes of JSON around its message; room for twice that.
    std::size_t frame = static_cast<std::size_t>(options.batch) * (options.message_bytes + 140);
    std::size_t max_frame = std::max<std::size_t>(std::size_t{1} << 20, 2 * frame);
    return fmt::format(
        "log: {{level: warn}}\n"
        "server:\n"
        "  websocket: {{max_message_bytes: {}}}\n"
        "logs:\n"
        "  logs_timewindow: 1h\n"
        "  max_upload: {}\n"
        "{}",
        max_frame, std::max(options.batch, 10000),
        options.store_url.empty() ? std::string{}
                                  : fmt::format("store:\n  url: '{}'\n", options.store_url));
}

double seconds_between(Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double>(to - from).count();
}

/// The connect timeout. It used to have to cover the whole run (the client kept it as the
/// socket's expiry until that was fixed); each send and read has its own timeout now.
constexpr auto kConnectionLife = std::chrono::seconds{10};

std::unique_ptr<net::WebSocketClient> connect_ws(const ServerProcess& server) {
    auto made = net::WebSocketClient::connect(net::WebSocketConnect{
        .url = fmt::format("ws://{}/ws", server.address()), .timeout = kConnectionLife});
    if (!made) {
        throw std::runtime_error("cannot open ws://" + server.address() +
                                 "/ws: " + made.error().message);
    }
    return std::move(*made);
}

/// Appends one uploadLogs message of `lines` lines from `sender` to `out` (cleared first);
/// `counter` is the sender's next line number.
void build_upload(std::string& out,
                  const std::string& sender,
                  std::uint64_t& counter,
                  int lines,
                  std::size_t message_bytes) {
    out.clear();
    out += R"({"action":"uploadLogs","logs":[)";
    for (int i = 0; i < lines; ++i) {
        if (i > 0) {
            out += ',';
        }
        double now = static_cast<double>(bench::now_ns()) / 1e9;
        fmt::format_to(std::back_inserter(out), R"({{"level":{},"time":{:.6f},"sender":"{}",)",
                       bench::kLevel, now, sender);
        out += R"("message":")";
        bench::append_message(out, sender, counter++, message_bytes);
        out += "\"}";
    }
    out += "]}";
}

/// Empty when `answer` is the acknowledgement of `lines` lines, else what was wrong.
std::string check_ack(const std::string& answer, int lines) {
    std::error_code ec;
    auto value = json::parse(answer, ec);
    if (ec || !value.is_object()) {
        return "not a JSON object: " + answer.substr(0, kShownAnswer);
    }
    const auto& body = value.as_object();
    const auto* success = body.if_contains("success");
    const auto* action = body.if_contains("action");
    const auto* comment = body.if_contains("comment");
    const std::string expected = fmt::format("Inserted {} log(s) into db.", lines);
    if (success == nullptr || !success->is_bool() || !success->as_bool() || action == nullptr ||
        !action->is_string() || action->as_string() != "uploadLogs" || comment == nullptr ||
        !comment->is_string() || comment->as_string() != expected) {
        return "unexpected answer: " + answer.substr(0, kShownAnswer);
    }
    return {};
}

/// Sends `text` and reads its answer; the answer, or throws naming `what`.
std::string round_trip(net::WebSocketClient& ws, const std::string& text, std::string_view what) {
    if (auto sent = ws.send(net::WebSocketMessage{.data = text}, kAnswerTimeout); !sent) {
        throw std::runtime_error(fmt::format("{}: send: {}", what, sent.error().message));
    }
    auto answer = ws.read(kAnswerTimeout);
    if (!answer) {
        throw std::runtime_error(fmt::format("{}: read: {}", what, answer.error().message));
    }
    return std::move(answer->data);
}

struct Shared {
    Clock::time_point measure_from;
    Clock::time_point measure_until;
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::string first_error;
};

struct ConnectionResult {
    std::vector<std::uint32_t> latencies_us;  // acknowledgements in the window only
    std::uint64_t window_lines = 0;           // lines acknowledged in the window
    std::uint64_t acked_lines = 0;            // every line acknowledged, warm-up included
    std::uint64_t uploads = 0;                // every upload sent
    std::uint64_t failures = 0;               // answers that were not the acknowledgement
    std::exception_ptr failure;               // the connection itself failed
};

void run_connection(const ServerProcess& server,
                    const Options& options,
                    int index,
                    Shared& shared,
                    ConnectionResult& out) {
    try {
        auto ws = connect_ws(server);
        const std::string sender = bench::sender_name(index);
        std::uint64_t counter = 0;
        std::string frame;
        frame.reserve(static_cast<std::size_t>(options.batch) * (options.message_bytes + 100));
        while (!shared.stop.load(std::memory_order_relaxed)) {
            build_upload(frame, sender, counter, options.batch, options.message_bytes);
            auto sent = Clock::now();
            auto answer = round_trip(*ws, frame, sender);
            auto answered = Clock::now();
            ++out.uploads;
            if (auto wrong = check_ack(answer, options.batch); !wrong.empty()) {
                ++out.failures;
                std::lock_guard lock{shared.mu};
                if (shared.first_error.empty()) {
                    shared.first_error = wrong;
                }
                continue;
            }
            out.acked_lines += static_cast<std::uint64_t>(options.batch);
            if (answered >= shared.measure_from && answered < shared.measure_until) {
                out.window_lines += static_cast<std::uint64_t>(options.batch);
                out.latencies_us.push_back(static_cast<std::uint32_t>(
                    std::chrono::duration_cast<std::chrono::microseconds>(answered - sent)
                        .count()));
            }
        }
        (void)ws->close(1000, "done", std::chrono::seconds{5});
    } catch (...) {
        out.failure = std::current_exception();
    }
}

double cpu_seconds_self() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    auto secs = [](const timeval& t) {
        return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
    };
    return secs(usage.ru_utime) + secs(usage.ru_stime);
}

struct IngestFigures {
    std::uint64_t window_lines = 0;
    std::uint64_t acked_lines = 0;
    std::uint64_t uploads = 0;
    std::uint64_t failures = 0;
    double lines_per_s = 0;
    double p50_ms = 0;
    double p99_ms = 0;
    double serve_cores = 0;
    double db_cores = 0;  ///< PostgreSQL's postmaster and children, with --db-pid
    double serve_us_per_line = 0;
    double client_cores = 0;
    double machine_cores = 0;
    std::string first_error;
};

/// One thread's CPU over the window, for the per-thread table.
struct ThreadUse {
    int tid = 0;
    std::string name;
    double cores = 0;
};

IngestFigures ingest(const ServerProcess& server,
                     int serve_pid,
                     const Options& options,
                     std::vector<ThreadUse>& threads_out) {
    Shared shared;
    auto start = Clock::now();
    shared.measure_from = start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(options.warmup_s));
    shared.measure_until =
        shared.measure_from + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(options.duration_s));
    std::vector<ConnectionResult> results(static_cast<std::size_t>(options.connections));
    std::vector<std::thread> threads;
    threads.reserve(results.size());
    for (int c = 0; c < options.connections; ++c) {
        threads.emplace_back(run_connection, std::cref(server), std::cref(options), c,
                             std::ref(shared), std::ref(results[static_cast<std::size_t>(c)]));
    }
    std::this_thread::sleep_until(shared.measure_from);
    const auto tasks0 = bench::thread_ticks(serve_pid);
    const auto serve0 = bench::tree_ticks(serve_pid);
    const auto db0 = options.db_pid > 0 ? bench::tree_ticks(options.db_pid) : 0;
    const auto machine0 = bench::machine_ticks();
    const double client0 = cpu_seconds_self();
    const auto t0 = Clock::now();
    std::this_thread::sleep_until(shared.measure_until);
    const auto tasks1 = bench::thread_ticks(serve_pid);
    const auto serve1 = bench::tree_ticks(serve_pid);
    const auto db1 = options.db_pid > 0 ? bench::tree_ticks(options.db_pid) : 0;
    const auto machine1 = bench::machine_ticks();
    const double client1 = cpu_seconds_self();
    const double window_s = seconds_between(t0, Clock::now());
    shared.stop.store(true);
    for (auto& thread : threads) {
        thread.join();
    }

    IngestFigures out;
    for (auto& result : results) {
        if (result.failure) {
            std::rethrow_exception(result.failure);
        }
        out.window_lines += result.window_lines;
        out.acked_lines += result.acked_lines;
        out.uploads += result.uploads;
        out.failures += result.failures;
    }
    out.first_error = shared.first_error;
    auto all = bench::merged_latencies(results);
    out.lines_per_s = static_cast<double>(out.window_lines) / options.duration_s;
    out.p50_ms = bench::percentile_ms(all, 50);
    out.p99_ms = bench::percentile_ms(all, 99);
    const double hz = bench::ticks_per_second();
    out.serve_cores = static_cast<double>(serve1 - serve0) / hz / window_s;
    out.db_cores = static_cast<double>(db1 - db0) / hz / window_s;
    out.serve_us_per_line = out.window_lines > 0 ? static_cast<double>(serve1 - serve0) / hz /
                                                       static_cast<double>(out.window_lines) * 1e6
                                                 : 0;
    out.client_cores = (client1 - client0) / window_s;
    const auto busy = static_cast<double>(machine1.first - machine0.first);
    const auto total = static_cast<double>(machine1.second - machine0.second);
    out.machine_cores =
        total > 0 ? busy / total * static_cast<double>(std::thread::hardware_concurrency()) : 0;
    for (const auto& [tid, after] : tasks1) {
        auto before = tasks0.find(tid);
        std::uint64_t used = after.ticks - (before != tasks0.end() ? before->second.ticks : 0);
        if (used > 0) {
            threads_out.push_back(
                ThreadUse{tid, after.name, static_cast<double>(used) / hz / window_s});
        }
    }
    std::sort(threads_out.begin(), threads_out.end(),
              [](const ThreadUse& a, const ThreadUse& b) { return a.cores > b.cores; });
    return out;
}

struct QueryFigures {
    double p50_ms = 0;
    double max_ms = 0;
    std::size_t entries = 0;
    bool truncated = false;
    std::size_t answer_bytes = 0;
};

QueryFigures query(net::WebSocketClient& ws, std::string_view sender, int times) {
    const std::string request =
        fmt::format(R"({{"action":"getLogs","timewindow":3600,"sender":"{}"}})", sender);
    std::vector<std::uint32_t> latencies_us;
    QueryFigures out;
    for (int i = 0; i < times; ++i) {
        auto sent = Clock::now();
        auto answer = round_trip(ws, request, "getLogs");
        latencies_us.push_back(static_cast<std::uint32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent).count()));
        std::error_code ec;
        auto value = json::parse(answer, ec);
        const json::object* body = !ec && value.is_object() ? &value.as_object() : nullptr;
        const json::value* success = body ? body->if_contains("success") : nullptr;
        const json::value* logs = body ? body->if_contains("logs") : nullptr;
        if (success == nullptr || !success->is_bool() || !success->as_bool() || logs == nullptr ||
            !logs->is_array()) {
            throw std::runtime_error("getLogs was not answered with logs: " +
                                     answer.substr(0, kShownAnswer));
        }
        out.entries = logs->as_array().size();
        const json::value* truncated = body->if_contains("truncated");
        out.truncated = truncated != nullptr && truncated->is_bool() && truncated->as_bool();
        out.answer_bytes = answer.size();
    }
    std::sort(latencies_us.begin(), latencies_us.end());
    out.p50_ms = bench::percentile_ms(latencies_us, 50);
    out.max_ms = latencies_us.empty() ? 0 : latencies_us.back() / 1000.0;
    return out;
}

/// Log rows in PostgreSQL's log_records, through psql. -1 when it cannot be read.
std::int64_t stored_rows_postgres(const std::string& url) {
    const auto command =
        fmt::format("psql -tA '{}' -c 'SELECT count(*) FROM log_records WHERE kind = 0'", url);
    FILE* out = popen(command.c_str(), "r");
    if (out == nullptr) {
        return -1;
    }
    char line[64] = {};
    const bool read = std::fgets(line, sizeof line, out) != nullptr;
    const int status = pclose(out);
    return read && status == 0 ? std::strtoll(line, nullptr, 10) : -1;
}

/// Rows in log_records, read-only beside the running serve (WAL: a reader sees the last
/// commit). -1 when the database cannot be read.
std::int64_t stored_rows(const std::string& path) {
    sqlite3* db = nullptr;
    std::int64_t rows = -1;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        sqlite3_stmt* count = nullptr;
        if (sqlite3_prepare_v2(db, "SELECT count(*) FROM log_records WHERE kind = 0", -1, &count,
                               nullptr) == SQLITE_OK &&
            sqlite3_step(count) == SQLITE_ROW) {
            rows = sqlite3_column_int64(count, 0);
        }
        sqlite3_finalize(count);
    }
    sqlite3_close(db);
    return rows;
}

std::uintmax_t size_on_disk(const std::string& path) {
    std::uintmax_t total = 0;
    for (const char* suffix : {"", "-wal", "-shm"}) {
        std::error_code ec;
        auto size = std::filesystem::file_size(path + suffix, ec);
        total += ec ? 0 : size;
    }
    return total;
}

Options parse(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                throw std::runtime_error(arg + " needs a value");
            }
            return argv[++i];
        };
        if (arg == "--connections") {
            options.connections = std::stoi(value());
        } else if (arg == "--batch") {
            options.batch = std::stoi(value());
        } else if (arg == "--duration") {
            options.duration_s = std::stod(value());
        } else if (arg == "--warmup") {
            options.warmup_s = std::stod(value());
        } else if (arg == "--message-bytes") {
            options.message_bytes = static_cast<std::size_t>(std::stoul(value()));
        } else if (arg == "--queries") {
            options.queries = std::stoi(value());
        } else if (arg == "--dir") {
            options.dir = value();
        } else if (arg == "--store-url") {
            options.store_url = value();
        } else if (arg == "--db-pid") {
            options.db_pid = std::stoi(value());
        } else if (arg == "--label") {
            options.label = value();
        } else {
            throw std::runtime_error("unknown option " + arg);
        }
    }
    if (options.dir.empty()) {
        throw std::runtime_error("--dir DIR is required (a directory on a real disk)");
    }
    if (options.connections < 1 || options.connections > 256 || options.batch < 1 ||
        options.batch > 1'000'000 || options.duration_s <= 0 || options.warmup_s < 0 ||
        options.message_bytes < 40 || options.message_bytes > 60'000 || options.queries < 1) {
        throw std::runtime_error(
            "--connections 1-256, --batch 1-1000000, --duration above 0, --warmup from 0, "
            "--message-bytes 40-60000, --queries from 1");
    }
    return options;
}

void print_ingest(const Options& options,
                  const IngestFigures& f,
                  const std::vector<ThreadUse>& threads) {
    fmt::print(
        "\n== ingest: {} connections to /ws, each uploadLogs of {} lines ({}-byte messages) one "
        "after another,\n   {:.0f} s measured after {:.0f} s of warm-up; logs.synchronous=full\n",
        options.connections, options.batch, options.message_bytes, options.duration_s,
        options.warmup_s);
    fmt::print("  {:>12} {:>9} {:>9} {:>9} {:>9} {:>12} {:>13} {:>8}\n", "lines/s", "p50 ms",
               "p99 ms", "uploads", "failures", "serve cores", "serve us/line", "machine");
    fmt::print("  {:>12.0f} {:>9.2f} {:>9.2f} {:>9} {:>9} {:>12.2f} {:>13.2f} {:>8.2f}\n",
               f.lines_per_s, f.p50_ms, f.p99_ms, f.uploads, f.failures, f.serve_cores,
               f.serve_us_per_line, f.machine_cores);
    if (f.failures > 0) {
        fmt::print("  !!! {} uploads were not acknowledged as expected; first: {}\n", f.failures,
                   f.first_error);
    }
    fmt::print(
        "  (lines/s: lines whose acknowledgement arrived in the window / its length; p50, p99: "
        "those\n   uploads' round trips; uploads, failures: the whole run, warm-up included; "
        "machine: cores\n   busy on the whole machine, this client ({:.2f} cores) included)\n",
        f.client_cores);
    if (options.db_pid > 0) {
        fmt::print("  PostgreSQL (postmaster and its children): {:.2f} cores\n", f.db_cores);
    }
    fmt::print("  serve's threads over the window (cores; a thread name can repeat):\n");
    for (const auto& t : threads) {
        if (t.cores < 0.005) {
            continue;
        }
        fmt::print("    {:<16} tid {:<8} {:>6.2f}\n", t.name, t.tid, t.cores);
    }
}

}  // namespace

int main(int argc, char** argv) {
    try {
        auto options = parse(argc, argv);
        const std::string data = options.dir + "/serve";
        std::filesystem::create_directories(data);
        ServerProcess server(make_config(options), data);
        if (!server.start()) {
            throw std::runtime_error("serve did not start: " + server.log());
        }
        const int serve_pid = bench::first_child_pid();
        if (serve_pid <= 0) {
            throw std::runtime_error("cannot find serve's pid among this process's children");
        }
        fmt::print("serve at {} (pid {}), data in {}\n", server.address(), serve_pid, data);
        std::fflush(stdout);  // the pid, for a profiler, even when stdout is a file

        std::uint64_t rare_lines = 0;
        {
            auto ws = connect_ws(server);
            std::string frame;
            std::uint64_t counter = 0;
            build_upload(frame, std::string{kRareSender}, counter, kRareLines,
                         options.message_bytes);
            if (auto wrong = check_ack(round_trip(*ws, frame, kRareSender), kRareLines);
                !wrong.empty()) {
                throw std::runtime_error("the first upload was refused: " + wrong);
            }
            rare_lines = kRareLines;
        }

        std::vector<ThreadUse> threads;
        auto figures = ingest(server, serve_pid, options, threads);
        print_ingest(options, figures, threads);

        auto ws = connect_ws(server);
        auto one = query(*ws, bench::sender_name(0), options.queries);
        auto rare = query(*ws, kRareSender, options.queries);
        const std::int64_t stored = options.store_url.empty()
                                        ? stored_rows(data + "/logs.db")
                                        : stored_rows_postgres(options.store_url);
        const std::uint64_t acked = figures.acked_lines + rare_lines;
        fmt::print(
            "\n== query: getLogs, timewindow 3600, {} times each, on one connection after the "
            "ingest\n",
            options.queries);
        fmt::print("  {:<44} {:>8} {:>8} {:>9} {:>10} {:>12}\n", "sender", "p50 ms", "max ms",
                   "entries", "truncated", "answer bytes");
        auto row = [](std::string_view what, const QueryFigures& q) {
            fmt::print("  {:<44} {:>8.2f} {:>8.2f} {:>9} {:>10} {:>12}\n", what, q.p50_ms, q.max_ms,
                       q.entries, q.truncated ? "yes" : "no", q.answer_bytes);
        };
        row(fmt::format("{} (~{} of its lines stored)", bench::sender_name(0),
                        figures.acked_lines / static_cast<std::uint64_t>(options.connections)),
            one);
        row(fmt::format("{} ({} lines among the rest)", kRareSender, rare_lines), rare);
        fmt::print(
            "\n== stored: {} log rows ({} lines acknowledged), logs.db {:.1f} MiB on disk "
            "(db + wal)\n",
            stored, acked, static_cast<double>(size_on_disk(data + "/logs.db")) / 1048576.0);
        if (stored != static_cast<std::int64_t>(acked)) {
            fmt::print("  !!! the stored rows and the acknowledged lines differ\n");
        }

        fmt::print(
            "RESULT label={} connections={} batch={} lines={} lines_per_s={:.0f} "
            "p50_ms={:.3f} p99_ms={:.3f} uploads={} failures={} serve_cores={:.2f} db_cores={:.2f} "
            "serve_us_per_line={:.2f} client_cores={:.2f} machine_cores={:.2f} stored={} "
            "acked={} query_p50_ms={:.2f} query_entries={} query_truncated={} "
            "rare_p50_ms={:.2f}\n",
            options.label, options.connections, options.batch, figures.window_lines,
            figures.lines_per_s, figures.p50_ms, figures.p99_ms, figures.uploads, figures.failures,
            figures.serve_cores, figures.db_cores, figures.serve_us_per_line, figures.client_cores,
            figures.machine_cores, stored, acked, one.p50_ms, one.entries, one.truncated ? 1 : 0,
            rare.p50_ms);
        (void)ws->close(1000, "done", std::chrono::seconds{5});
        server.stop();
        return figures.failures == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::cerr << "logs_bench: " << e.what() << "\n";
        return 1;
    }
}
