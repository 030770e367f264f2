// lease_load: a closed-loop load generator for aviary's tweety JSON-RPC leases.
//
// N threads, each with its own blocking keep-alive TCP connection to 127.0.0.1:PORT and its own
// node (node-i, owner bench-i), repeat: POST TweetyService.Acquire, POST TweetyService.Release.
// Each request is one lease operation. Requests are pre-built bytes; responses are read by
// Content-Length and checked to be a JSON-RPC result. After a warm-up, every operation that
// completes inside the measured window is counted and its latency kept; percentiles are taken
// over all threads' latencies merged.
//
//   lease_load --addr 127.0.0.1:PORT --concurrency 32 --duration 10 --warmup 2
//
// Prints a human summary and one line starting "RESULT " with key=value pairs for scripts.
// Exit status: 0 when every response was a result, 1 when any was not (or on set-up failure).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/http_connection.hpp"
#include "latency.hpp"

namespace {

using aviary::bench::percentile_ms;

using Clock = std::chrono::steady_clock;

struct Options {
    std::string host = "127.0.0.1";
    int port = 0;
    int concurrency = 1;
    double duration_s = 10;
    double warmup_s = 2;
    std::string node_prefix = "node-";
    std::string owner_prefix = "bench-";
    int first_node = 0;
    int recv_timeout_ms = 5000;
    std::string label = "leases";
    std::string extra_params;  // appended to the params object, e.g. "\"TTL\":\"1h\""
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "lease_load: %s\n"
                 "usage: lease_load --addr HOST:PORT [--concurrency N] [--duration S] "
                 "[--warmup S]\n"
                 "                  [--node-prefix node-] [--owner-prefix bench-] "
                 "[--first-node 0] [--label NAME]\n"
                 "                  [--extra-params '\"TTL\":\"1h\"']\n",
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
        if (arg == "--addr") {
            auto addr = value();
            auto colon = addr.rfind(':');
            if (colon == std::string::npos) {
                usage("--addr must be HOST:PORT");
            }
            options.host = addr.substr(0, colon);
            options.port = std::atoi(addr.c_str() + colon + 1);
        } else if (arg == "--concurrency" || arg == "-c") {
            options.concurrency = std::atoi(value().c_str());
        } else if (arg == "--duration") {
            options.duration_s = std::atof(value().c_str());
        } else if (arg == "--warmup") {
            options.warmup_s = std::atof(value().c_str());
        } else if (arg == "--node-prefix") {
            options.node_prefix = value();
        } else if (arg == "--owner-prefix") {
            options.owner_prefix = value();
        } else if (arg == "--first-node") {
            options.first_node = std::atoi(value().c_str());
        } else if (arg == "--label") {
            options.label = value();
        } else if (arg == "--extra-params") {
            options.extra_params = value();
        } else {
            usage("unknown flag");
        }
    }
    if (options.port <= 0 || options.port > 65535) {
        usage("--addr HOST:PORT is required");
    }
    if (options.concurrency < 1 || options.concurrency > 4096) {
        usage("--concurrency must be 1..4096");
    }
    if (options.duration_s <= 0 || options.warmup_s < 0) {
        usage("--duration must be positive, --warmup not negative");
    }
    return options;
}

std::string build_request(const Options& options, std::string_view method, int node) {
    std::string body =
        R"({"jsonrpc":"2.0","method":"TweetyService.)" + std::string{method} +
        R"(","params":[{"ReleaseName":")" + options.node_prefix + std::to_string(node) +
        R"(","Owner":")" + options.owner_prefix + std::to_string(node) + R"(")" +
        (options.extra_params.empty() ? "" : "," + options.extra_params) + R"(}],"id":1})";
    std::string request =
        "POST / HTTP/1.1\r\nHost: " + options.host + ":" + std::to_string(options.port) +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n";
    return request + body;
}

/// Shared between the threads: the phase clock and the first bad response, for the report.
struct Shared {
    Clock::time_point measure_from;
    Clock::time_point measure_until;
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::string first_error;
    void note_error(std::string what) {
        std::lock_guard lock{mu};
        if (first_error.empty()) {
            first_error = std::move(what);
        }
    }
};

struct ThreadResult {
    std::vector<std::uint32_t> latencies_us;  // measured window only
    std::uint64_t ok = 0;                     // measured window only
    std::uint64_t errors = 0;                 // whole run, warm-up included
    std::uint64_t reconnects = 0;
};

/// A JSON-RPC result, not an error: the reply starts with the envelope and names "result"
/// before any "error" member. Minimal by design: the server's JSON is not re-parsed.
bool is_result(std::string_view body) {
    auto result = body.find("\"result\":");
    if (result == std::string_view::npos) {
        return false;
    }
    auto error = body.find("\"error\":");
    return error == std::string_view::npos || error > result;
}

void run_thread(const Options& options, Shared& shared, int node, ThreadResult& out) {
    const std::string requests[2] = {build_request(options, "Acquire", node),
                                     build_request(options, "Release", node)};
    out.latencies_us.reserve(static_cast<std::size_t>(options.duration_s * 200'000 /
                                                      std::max(1, options.concurrency / 4)) +
                             1024);
    aviary::bench::HttpConnection connection{
        options.host, options.port, options.recv_timeout_ms,
        [&shared](std::string what) { shared.note_error(std::move(what)); }};
    bool open = connection.open();
    // Bounded: the loop ends at the deadline whatever happens; a failed connect backs off.
    for (std::uint64_t i = 0; !shared.stop.load(std::memory_order_relaxed); ++i) {
        if (!open) {
            ++out.reconnects;
            std::this_thread::sleep_for(std::chrono::milliseconds{10});
            open = connection.open();
            if (!open) {
                ++out.errors;
                continue;
            }
        }
        const std::string& request = requests[i % 2];
        int status = 0;
        bool keep_alive = true;
        auto start = Clock::now();
        auto body = connection.round_trip(request, status, keep_alive);
        auto end = Clock::now();
        if (!body) {
            ++out.errors;
            open = false;
            continue;
        }
        bool ok = status == 200 && is_result(*body);
        if (!ok) {
            ++out.errors;
            shared.note_error("HTTP " + std::to_string(status) + ": " +
                              std::string{body->substr(0, 400)});
        } else if (start >= shared.measure_from && end <= shared.measure_until) {
            ++out.ok;
            auto us = std::chrono::duration_cast<std::chrono::microseconds>(end - start).count();
            out.latencies_us.push_back(static_cast<std::uint32_t>(us));
        }
        if (!keep_alive) {
            connection.close();
            open = false;
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    Options options = parse(argc, argv);
    Shared shared;
    auto start = Clock::now();
    auto warmup = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>{options.warmup_s});
    auto duration = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>{options.duration_s});
    shared.measure_from = start + warmup;
    shared.measure_until = shared.measure_from + duration;

    std::vector<ThreadResult> results(static_cast<std::size_t>(options.concurrency));
    std::vector<std::thread> threads;
    threads.reserve(results.size());
    for (int i = 0; i < options.concurrency; ++i) {
        threads.emplace_back(run_thread, std::cref(options), std::ref(shared),
                             options.first_node + i, std::ref(results[static_cast<size_t>(i)]));
    }
    std::this_thread::sleep_until(shared.measure_until);
    shared.stop.store(true);
    for (auto& thread : threads) {
        thread.join();
    }

    std::uint64_t ok = 0;
    std::uint64_t errors = 0;
    std::uint64_t reconnects = 0;
    std::uint64_t min_thread = UINT64_MAX;
    std::uint64_t max_thread = 0;
    for (auto& result : results) {
        min_thread = std::min(min_thread, result.ok);
        max_thread = std::max(max_thread, result.ok);
        ok += result.ok;
        errors += result.errors;
        reconnects += result.reconnects;
    }
    auto all = aviary::bench::merged_latencies(results);
    double ops_per_s = static_cast<double>(ok) / options.duration_s;
    double mean_ms = 0;
    for (auto us : all) {
        mean_ms += us;
    }
    mean_ms = all.empty() ? 0 : mean_ms / static_cast<double>(all.size()) / 1000.0;
    double p50 = percentile_ms(all, 50);
    double p90 = percentile_ms(all, 90);
    double p99 = percentile_ms(all, 99);
    double p999 = percentile_ms(all, 99.9);
    double max = all.empty() ? 0 : all.back() / 1000.0;

    std::printf(
        "%s: concurrency %d, %.1f s measured after %.1f s warm-up: %llu ops (acquire and release "
        "each one), %.0f ops/s; latency ms p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f "
        "mean %.3f; ops per connection min %llu max %llu\n",
        options.label.c_str(), options.concurrency, options.duration_s, options.warmup_s,
        static_cast<unsigned long long>(ok), ops_per_s, p50, p90, p99, p999, max, mean_ms,
        static_cast<unsigned long long>(min_thread), static_cast<unsigned long long>(max_thread));
    if (errors > 0) {
        std::printf(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
            "!!! %s: %llu ERRORS (responses that were not JSON-RPC results, or broken "
            "connections; %llu reconnects)\n"
            "!!! first: %s\n"
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n",
            options.label.c_str(), static_cast<unsigned long long>(errors),
            static_cast<unsigned long long>(reconnects), shared.first_error.c_str());
    }
    std::printf(
        "RESULT label=%s concurrency=%d duration_s=%.1f ops=%llu ops_per_s=%.0f p50_ms=%.3f "
        "p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f mean_ms=%.3f conn_min_ops=%llu "
        "conn_max_ops=%llu errors=%llu\n",
        options.label.c_str(), options.concurrency, options.duration_s,
        static_cast<unsigned long long>(ok), ops_per_s, p50, p90, p99, p999, max, mean_ms,
        static_cast<unsigned long long>(min_thread), static_cast<unsigned long long>(max_thread),
        static_cast<unsigned long long>(errors));
    return errors == 0 ? 0 : 1;
}
