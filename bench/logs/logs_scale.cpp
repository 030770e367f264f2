// bench/logs, at scale: what the log store gives once it holds millions of lines, against a
// running `aviary serve` (bench/logs/scale.sh starts it and runs these in turn).
//
//   logs_scale flood --addr HOST:PORT --seconds S [--connections 4] [--batch 5000]
//       Uploads over Bitahoy's /ws as fast as serve acknowledges, times now, for S seconds;
//       prints lines/s. Run beside lease_load: the lease p99 while logs pour in.
//   logs_scale preload --addr HOST:PORT --lines N [--connections 4] [--batch 5000]
//       [--senders 1000] [--hours 24]
//       Uploads N lines whose times are spread evenly over the last H hours, sender
//       svc-<i mod senders>; one line in 10,000 says "needle-<i>". Prints lines/s.
//   logs_scale query --addr HOST:PORT [--queries 50] [--senders 1000] [--hours 24]
//       GET /api/v1/logs over a random 1-hour window (since/until), newest 100: by service, with
//       no filter, with contains=needle and with regex=needle-[0-9]+5$ (the last two read every
//       line of the hour). p50, p99 and max of each, and the records returned.
//   logs_scale tail --addr HOST:PORT [--lines 2000] [--interval-ms 5] [--upload-addr HOST:PORT]
//       A live tail (/api/v1/logs/tail?service=latency-probe over a WebSocket) and, on /ws, one
//       line every interval carrying its send time: p50 and p99 of upload-to-delivery. With
//       --upload-addr the lines go to another instance than the tail's (bench/logs/instances.sh).
// Each prints its figures and a "RESULT " line; none asserts anything about them.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "leases/latency.hpp"
#include "net/net.hpp"

namespace json = boost::json;
namespace net = aviary::net;
namespace bench = aviary::bench;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

struct Options {
    std::string mode;
    std::string addr;
    double seconds = 10;
    std::int64_t lines = 10'000'000;
    int connections = 4;
    int batch = 5000;
    int senders = 1000;
    int hours = 24;
    int queries = 50;
    int interval_ms = 5;
    std::string upload_addr;  ///< tail: where the lines are uploaded (default: addr)
};

[[noreturn]] void usage(const std::string& why) {
    std::fprintf(stderr,
                 "logs_scale: %s\nusage: logs_scale flood|preload|query|tail --addr HOST:PORT "
                 "[--seconds S] [--lines N] [--connections C] [--batch B] [--senders K] "
                 "[--hours H] [--queries Q] [--interval-ms MS]\n",
                 why.c_str());
    std::exit(2);
}

Options parse(int argc, char** argv) {
    if (argc < 2) {
        usage("no mode");
    }
    Options o;
    o.mode = argv[1];
    for (int i = 2; i < argc; ++i) {
        std::string arg = argv[i];
        if (i + 1 >= argc) {
            usage("missing value for " + arg);
        }
        std::string value = argv[++i];
        if (arg == "--addr") {
            o.addr = value;
        } else if (arg == "--upload-addr") {
            o.upload_addr = value;
        } else if (arg == "--seconds") {
            o.seconds = std::atof(value.c_str());
        } else if (arg == "--lines") {
            o.lines = std::atoll(value.c_str());
        } else if (arg == "--connections") {
            o.connections = std::atoi(value.c_str());
        } else if (arg == "--batch") {
            o.batch = std::atoi(value.c_str());
        } else if (arg == "--senders") {
            o.senders = std::atoi(value.c_str());
        } else if (arg == "--hours") {
            o.hours = std::atoi(value.c_str());
        } else if (arg == "--queries") {
            o.queries = std::atoi(value.c_str());
        } else if (arg == "--interval-ms") {
            o.interval_ms = std::atoi(value.c_str());
        } else {
            usage("unknown flag " + arg);
        }
    }
    if (o.addr.empty()) {
        usage("--addr is required");
    }
    return o;
}

double wall_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::unique_ptr<net::WebSocketClient> connect(const Options& o,
                                              const std::string& path,
                                              const std::string& addr = {}) {
    auto made = net::WebSocketClient::connect(net::WebSocketConnect{
        .url = fmt::format("ws://{}{}", addr.empty() ? o.addr : addr, path), .timeout = 10s});
    if (!made) {
        throw std::runtime_error("cannot open " + path + ": " + made.error().message);
    }
    return std::move(*made);
}

void upload(net::WebSocketClient& ws, const std::string& frame) {
    if (auto sent = ws.send(net::WebSocketMessage{.data = frame}, 60s); !sent) {
        throw std::runtime_error("send: " + sent.error().message);
    }
    auto answer = ws.read(60s);
    if (!answer) {
        throw std::runtime_error("read: " + answer.error().message);
    }
    if (answer->data.find("\"success\":true") == std::string::npos) {
        throw std::runtime_error("refused: " + answer->data.substr(0, 300));
    }
}

/// Line i of a preload (or a flood when `spread` is 0): its time, sender and message.
void append_line(std::string& out, std::int64_t i, double time, const Options& o) {
    const auto sender = i % o.senders;
    fmt::format_to(std::back_inserter(out),
                   R"({{"level":{},"time":{:.6f},"sender":"svc-{}","message":")", 3 + i % 5, time,
                   sender);
    if (i % 10'000 == 0) {
        fmt::format_to(std::back_inserter(out), "needle-{} ", i);
    }
    fmt::format_to(std::back_inserter(out),
                   "line {} from svc-{}: block {} imported, peers 25, txs 140, elapsed 3.2ms\"}}",
                   i, sender, i / 7);
}

/// Sends batches of the lines numbered from `next` (shared by the connections): the preload's
/// N, or a flood's until `until_wall`; `acked` counts the lines serve acknowledged.
void pour(const Options& o,
          std::atomic<std::int64_t>& next,
          std::atomic<std::int64_t>& acked,
          bool spread,
          double until_wall) {
    auto ws = connect(o, "/ws");
    const double now = wall_seconds();
    const double span = static_cast<double>(o.hours) * 3600.0;
    std::string frame;
    while (true) {
        const auto first = next.fetch_add(o.batch);
        if (spread ? first >= o.lines : wall_seconds() >= until_wall) {
            return;
        }
        const auto last =
            spread ? std::min<std::int64_t>(first + o.batch, o.lines) : first + o.batch;
        frame.clear();
        frame += R"({"action":"uploadLogs","logs":[)";
        for (auto i = first; i < last; ++i) {
            if (i > first) {
                frame += ',';
            }
            const double time =
                spread ? now - span + span * static_cast<double>(i) / static_cast<double>(o.lines)
                       : wall_seconds();
            append_line(frame, i, time, o);
        }
        frame += "]}";
        upload(*ws, frame);
        acked += last - first;
    }
}

int run_pour(const Options& o, bool spread) {
    std::atomic<std::int64_t> next{0};
    std::atomic<std::int64_t> acked{0};
    const auto t0 = Clock::now();
    const double until = wall_seconds() + o.seconds;
    std::vector<std::thread> threads;
    std::mutex mu;
    std::string failure;
    for (int c = 0; c < o.connections; ++c) {
        threads.emplace_back([&] {
            try {
                pour(o, next, acked, spread, until);
            } catch (const std::exception& e) {
                std::lock_guard lock{mu};
                failure = e.what();
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const auto sent = acked.load();
    if (!failure.empty()) {
        std::printf("logs_scale %s: FAILED: %s\n", o.mode.c_str(), failure.c_str());
        return 1;
    }
    std::printf("logs_scale %s: %lld lines in %.1f s: %.0f lines/s acknowledged\n", o.mode.c_str(),
                static_cast<long long>(sent), secs, static_cast<double>(sent) / secs);
    std::printf("RESULT mode=%s lines=%lld seconds=%.2f lines_per_s=%.0f\n", o.mode.c_str(),
                static_cast<long long>(sent), secs, static_cast<double>(sent) / secs);
    return 0;
}

std::string get(const Options& o, const std::string& target, std::size_t& records) {
    auto response = net::fetch_sync(
        net::ClientRequest{.url = fmt::format("http://{}{}", o.addr, target), .timeout = 60s});
    if (!response || response->status != 200) {
        throw std::runtime_error(
            target + ": " + (response ? response->body.substr(0, 300) : response.error().message));
    }
    auto body = json::parse(response->body);
    records = body.at("records").as_array().size();
    return response->body;
}

int run_query(const Options& o) {
    std::mt19937 random{42};
    std::uniform_int_distribution<int> hour{1, std::max(1, o.hours - 1)};
    std::uniform_int_distribution<int> sender{0, o.senders - 1};
    struct Shape {
        std::string name;
        std::function<std::string()> filter;
        std::vector<std::uint32_t> latencies_us;
        std::size_t records = 0;
    };
    std::vector<Shape> shapes{
        {"service", [&] { return fmt::format("&service=svc-{}", sender(random)); }, {}, 0},
        {"none", [] { return std::string{}; }, {}, 0},
        {"contains", [] { return std::string{"&contains=needle"}; }, {}, 0},
        {"regex", [] { return std::string{"&regex=needle-%5B0-9%5D%2B5%24"}; }, {}, 0},
    };
    for (auto& shape : shapes) {
        for (int q = 0; q < o.queries; ++q) {
            const int h = hour(random);
            const std::string target = fmt::format("/api/v1/logs?since={}h&until={}h&limit=100{}",
                                                   h + 1, h, shape.filter());
            std::size_t records = 0;
            const auto t0 = Clock::now();
            get(o, target, records);
            shape.latencies_us.push_back(static_cast<std::uint32_t>(
                std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()));
            shape.records += records;
        }
        std::sort(shape.latencies_us.begin(), shape.latencies_us.end());
        std::printf(
            "query 1h window, %-9s p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  records/query %.1f\n",
            shape.name.c_str(), bench::percentile_ms(shape.latencies_us, 50),
            bench::percentile_ms(shape.latencies_us, 99), shape.latencies_us.back() / 1000.0,
            static_cast<double>(shape.records) / o.queries);
        std::printf("RESULT mode=query shape=%s p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
                    shape.name.c_str(), bench::percentile_ms(shape.latencies_us, 50),
                    bench::percentile_ms(shape.latencies_us, 99),
                    shape.latencies_us.back() / 1000.0);
    }
    return 0;
}

int run_tail(const Options& o) {
    auto tail = connect(o, "/api/v1/logs/tail?service=latency-probe");
    auto start = tail->read(10s);
    if (!start || start->data.find("\"start\"") == std::string::npos) {
        throw std::runtime_error("the tail did not start");
    }
    std::vector<std::uint32_t> latencies_us;
    std::atomic<bool> sending_done{false};
    std::string failure;
    std::thread sender{[&] {
        try {
            auto ws = connect(o, "/ws", o.upload_addr);
            for (int i = 0; i < o.lines; ++i) {
                const auto sent_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         Clock::now().time_since_epoch())
                                         .count();
                upload(*ws, fmt::format(R"({{"action":"uploadLogs","logs":[{{"level":6,)"
                                        R"("time":{:.6f},"sender":"latency-probe",)"
                                        R"("message":"sent {}"}}]}})",
                                        wall_seconds(), sent_ns));
                std::this_thread::sleep_for(std::chrono::milliseconds{o.interval_ms});
            }
        } catch (const std::exception& e) {
            failure = e.what();
        }
        sending_done = true;
    }};
    while (latencies_us.size() < static_cast<std::size_t>(o.lines)) {
        auto message = tail->read(10s);
        if (!message) {
            break;
        }
        const auto received =
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
                .count();
        auto body = json::parse(message->data);
        if (body.at("type") != "records") {
            continue;
        }
        for (const auto& r : body.at("records").as_array()) {
            const std::string text{r.at("message").as_string()};
            const auto sent = std::atoll(text.c_str() + 5);
            latencies_us.push_back(static_cast<std::uint32_t>((received - sent) / 1000));
        }
    }
    sender.join();
    if (!failure.empty()) {
        std::printf("logs_scale tail: FAILED: %s\n", failure.c_str());
        return 1;
    }
    std::sort(latencies_us.begin(), latencies_us.end());
    std::printf("tail, upload to delivery: %zu lines, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                latencies_us.size(), bench::percentile_ms(latencies_us, 50),
                bench::percentile_ms(latencies_us, 99),
                latencies_us.empty() ? 0.0 : latencies_us.back() / 1000.0);
    std::printf("RESULT mode=tail lines=%zu p50_ms=%.2f p99_ms=%.2f\n", latencies_us.size(),
                bench::percentile_ms(latencies_us, 50), bench::percentile_ms(latencies_us, 99));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const auto o = parse(argc, argv);
    try {
        if (o.mode == "flood") {
            return run_pour(o, false);
        }
        if (o.mode == "preload") {
            return run_pour(o, true);
        }
        if (o.mode == "query") {
            return run_query(o);
        }
        if (o.mode == "tail") {
            return run_tail(o);
        }
    } catch (const std::exception& e) {
        std::printf("logs_scale %s: FAILED: %s\n", o.mode.c_str(), e.what());
        return 1;
    }
    usage("unknown mode " + o.mode);
}
