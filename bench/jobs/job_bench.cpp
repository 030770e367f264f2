// bench/jobs: what the job engine costs, measured against the real binary over HTTP.
//
//   job_bench [--single N] [--burst N] [--clients C] [--cancels N] [--rescues N] [--dir DIR]
//
// 1. single: N no-op jobs one at a time (each submitted with "wait": true): enqueue-to-start
//    from the job's own record (started_at - created_at, both written by serve; ms resolution)
//    and the client's submit-to-finished round trip. Then the same with microseconds: N
//    `probe` jobs whose one step is an http GET to a listener in this program; enqueue-to-start
//    is the time from the client sending the submit to that request arriving (an upper bound:
//    it includes the step's own connect and request, which is measured alone and shown too).
// 2. burst: N no-op jobs submitted at once by C client threads, each over one keep-alive
//    connection (as Celery's clients keep their broker connection); enqueue-to-start p50/p99
//    from the records, and throughput = N / (last finished_at - first created_at), 2 workers.
// 3. cancel: a step running `sleep 60` is cancelled N times; the time from the cancel request
//    to its process group being gone, and to the job reading cancelled. Then the same with a
//    step that ignores SIGTERM (jobs.kill_grace 1s): the grace shows.
// 4. rescue: N times, serve is killed with SIGKILL while a rerun-safe step runs, and started
//    again on the same data dir: time until it answers /healthz, until the old group is gone,
//    and until the job runs again (attempt 2).
// Every job is durable: serve runs on SQLite with synchronous=full in DIR (a real disk).
#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "common/http_connection.hpp"
#include "support/process_groups.hpp"
#include "support/server_process.hpp"

namespace json = boost::json;
using aviary::test::ServerProcess;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
    int single = 200;
    int burst = 1000;
    int clients = 32;
    int cancels = 10;
    int rescues = 5;
    std::string dir;
};

constexpr std::string_view kConfig = R"(log:
  level: warn
store:
  synchronous: full
fleet:
  nodes:
    - {name: bench-0, driver: sim, image_tag: v1}
    - {name: bench-1, driver: sim, image_tag: v1}
drivers:
  sim: {block_interval: 500ms}
jobs:
  workers: 2
  kill_grace: 1s
  actions:
    tick:
      exclusive: false
      params:
        n: {type: integer}
      steps:
        - noop: {}
    probe:
      exclusive: false
      params:
        port: {type: integer}
        n: {type: integer}
      steps:
        - http: {url: "http://127.0.0.1:{{params.port}}/probe/{{params.n}}"}
    sleeper:
      rerun_safe: true
      steps:
        - run: [sleep, "60"]
    stubborn:
      steps:
        - run: [sh, -c, "trap '' TERM; while true; do sleep 1; done"]
)";

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double percentile(std::vector<double> values, double p) {
    if (values.empty()) {
        return 0;
    }
    std::sort(values.begin(), values.end());
    auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(values.size() - 1) + 0.5);
    return values[std::min(rank, values.size() - 1)];
}

json::value request(const ServerProcess& server,
                    const std::string& method,
                    const std::string& path,
                    const std::string& body = {}) {
    aviary::net::ClientRequest req;
    req.method = method;
    req.url = server.url(path);
    if (!body.empty()) {
        req.headers.push_back({"Content-Type", "application/json"});
    }
    req.body = body;
    req.timeout = std::chrono::seconds{60};
    auto response = aviary::net::fetch_sync(std::move(req));
    if (!response) {
        throw std::runtime_error(fmt::format("{} {}: {}", method, path, response.error().message));
    }
    std::error_code ec;
    auto parsed = json::parse(response->body, ec);
    if (ec || response->status >= 400) {
        throw std::runtime_error(
            fmt::format("{} {}: HTTP {} {}", method, path, response->status, response->body));
    }
    return parsed;
}

std::int64_t ms_field(const json::value& job, std::string_view key) {
    // RFC 3339 with milliseconds, UTC: "2026-11-22T10:00:00.123Z"; compare as ms of the day is
    // not enough across midnight, so parse fully.
    std::string text(job.at(key).as_string());
    std::tm tm{};
    int ms = 0;
    std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<std::int64_t>(timegm(&tm)) * 1000 + ms;
}

std::string state_of(const json::value& job) {
    return std::string(job.at("state").as_string());
}

using aviary::test::group_alive;

/// The process group of job `id`'s running step (attempt `attempt`), from its output.
pid_t wait_group(const ServerProcess& server, const std::string& id, int attempt) {
    static const std::regex started(R"(started pid \d+ \(process group (\d+)\))");
    auto give_up = Clock::now() + std::chrono::seconds{30};
    while (Clock::now() < give_up) {
        auto out = request(server, "GET", fmt::format("/api/v1/jobs/{}/output", id));
        for (const auto& line : out.at("lines").as_array()) {
            std::smatch match;
            std::string text(line.at("text").as_string());
            if (line.at("attempt").to_number<int>() == attempt &&
                std::regex_search(text, match, started)) {
                return static_cast<pid_t>(std::stol(match[1]));
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds{2});
    }
    throw std::runtime_error("job " + id + " did not start its step");
}

std::string submit(const ServerProcess& server,
                   const std::string& node,
                   const std::string& action,
                   const std::string& body = "{}") {
    auto reply =
        request(server, "POST", fmt::format("/api/v1/nodes/{}/actions/{}", node, action), body);
    return std::string(reply.at("job").at("id").as_string());
}

json::value wait_state(const ServerProcess& server,
                       const std::string& id,
                       const std::function<bool(const std::string&)>& done) {
    auto give_up = Clock::now() + std::chrono::seconds{60};
    while (Clock::now() < give_up) {
        auto job = request(server, "GET", "/api/v1/jobs/" + id);
        if (done(state_of(job))) {
            return job;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds{1});
    }
    throw std::runtime_error("job " + id + " did not reach the state in time");
}

void row(std::string_view what, std::string_view figure) {
    fmt::print("  {:<58} {}\n", what, figure);
}

void bench_single(const ServerProcess& server, int count) {
    std::vector<double> start_ms;
    std::vector<double> round_trip_ms;
    for (int i = 0; i < count; ++i) {
        auto t0 = Clock::now();
        auto reply = request(server, "POST", "/api/v1/nodes/bench-0/actions/tick",
                             fmt::format(R"({{"params":{{"n":"{}"}},"wait":true}})", i));
        round_trip_ms.push_back(ms_since(t0));
        const auto& job = reply.at("job");
        if (state_of(job) != "succeeded") {
            throw std::runtime_error("a tick job did not succeed: " + json::serialize(job));
        }
        start_ms.push_back(
            static_cast<double>(ms_field(job, "started_at") - ms_field(job, "created_at")));
    }
    fmt::print("\n== single: {} no-op jobs one at a time\n", count);
    row("enqueue-to-start p50 / p99 (server records, ms resolution)",
        fmt::format("{:.1f} / {:.1f} ms", percentile(start_ms, 50), percentile(start_ms, 99)));
    row("submit-to-finished round trip p50 / p99 (client)",
        fmt::format("{:.2f} / {:.2f} ms", percentile(round_trip_ms, 50),
                    percentile(round_trip_ms, 99)));
}

/// Answers the probe jobs' http steps and notes when each arrived.
class ProbeListener {
public:
    ProbeListener() {
        aviary::net::ServerSettings settings;
        settings.listen = "127.0.0.1:0";
        server_ = std::make_unique<aviary::net::HttpServer>(
            settings, [this](aviary::net::Request request) { return handle(std::move(request)); });
        auto bound = server_->start();
        if (!bound) {
            throw std::runtime_error("probe listener: " + bound.error().message);
        }
        port_ = bound->substr(bound->rfind(':') + 1);
    }
    ~ProbeListener() { server_->stop(); }

    const std::string& port() const { return port_; }

    /// When probe `n` arrived; throws after 10 s.
    Clock::time_point wait_for(int n) {
        std::unique_lock lock{mu_};
        bool arrived =
            seen_.wait_for(lock, std::chrono::seconds{10}, [&] { return arrivals_.count(n) > 0; });
        if (!arrived) {
            throw std::runtime_error(fmt::format("probe {} never arrived", n));
        }
        return arrivals_.at(n);
    }

private:
    aviary::net::asio::awaitable<aviary::net::Response> handle(aviary::net::Request request) {
        auto now = Clock::now();
        auto n = std::atoi(request.path.substr(request.path.rfind('/') + 1).c_str());
        {
            std::lock_guard lock{mu_};
            arrivals_.emplace(n, now);
        }
        seen_.notify_all();
        aviary::net::Response response;
        response.body = "ok";
        co_return response;
    }

    std::unique_ptr<aviary::net::HttpServer> server_;
    std::string port_;
    std::mutex mu_;
    std::condition_variable seen_;
    std::map<int, Clock::time_point> arrivals_;
};

void bench_probe(const ServerProcess& server, int count) {
    ProbeListener listener;
    std::vector<double> start_ms;
    for (int i = 0; i < count; ++i) {
        auto t0 = Clock::now();
        auto id =
            submit(server, "bench-0", "probe",
                   fmt::format(R"({{"params":{{"port":"{}","n":"{}"}}}})", listener.port(), i));
        auto arrived = listener.wait_for(i);
        start_ms.push_back(std::chrono::duration<double, std::milli>(arrived - t0).count());
        wait_state(server, id, [](const std::string& s) { return s == "succeeded"; });
    }
    // What the probe itself costs: the same request on a new connection, sent from here.
    std::vector<double> direct_ms;
    for (int i = 0; i < count; ++i) {
        aviary::net::ClientRequest req;
        req.url = fmt::format("http://127.0.0.1:{}/probe/{}", listener.port(), count + i);
        auto t0 = Clock::now();
        auto sent = aviary::net::fetch_sync(std::move(req));
        if (!sent) {
            throw std::runtime_error("probe listener: " + sent.error().message);
        }
        direct_ms.push_back(
            std::chrono::duration<double, std::milli>(listener.wait_for(count + i) - t0).count());
    }
    double overhead = percentile(direct_ms, 50);
    fmt::print("\n== probe: {} one-step http jobs one at a time\n", count);
    row("enqueue-to-start p50 / p99 (submit sent to step arrived)",
        fmt::format("{:.2f} / {:.2f} ms", percentile(start_ms, 50), percentile(start_ms, 99)));
    row("the probe's own request (sent from the bench), p50", fmt::format("{:.2f} ms", overhead));
    row("enqueue-to-start p50 less the probe's own request",
        fmt::format("{:.2f} ms", percentile(start_ms, 50) - overhead));
}

/// Submits over one keep-alive connection, as the Celery side sends over its one broker
/// connection per client: the figure is the server's, not a connect per job.
std::string submit_over(aviary::bench::HttpConnection& connection,
                        const std::string& host,
                        const std::string& path,
                        const std::string& body) {
    auto request = fmt::format(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n"
        "Content-Length: {}\r\n\r\n{}",
        path, host, body.size(), body);
    int status = 0;
    bool keep_alive = true;
    auto reply = connection.round_trip(request, status, keep_alive);
    if (!reply) {
        throw std::runtime_error("POST " + path + ": the connection failed");
    }
    if (status >= 400) {
        throw std::runtime_error(fmt::format("POST {}: HTTP {} {}", path, status, *reply));
    }
    auto parsed = json::parse(*reply);
    std::string id(parsed.at("job").at("id").as_string());
    if (!keep_alive && !connection.open()) {
        throw std::runtime_error("POST " + path + ": could not connect again");
    }
    return id;
}

void bench_burst(const ServerProcess& server, int count, int clients) {
    std::vector<std::vector<std::string>> ids(static_cast<std::size_t>(clients));
    std::atomic<int> next{0};
    std::atomic<bool> failed{false};
    const std::string& address = server.address();
    auto colon = address.rfind(':');
    std::string host = address.substr(0, colon);
    int port = std::stoi(address.substr(colon + 1));
    // Every client connects before the clock starts.
    std::vector<std::unique_ptr<aviary::bench::HttpConnection>> connections;
    for (int c = 0; c < clients; ++c) {
        connections.push_back(std::make_unique<aviary::bench::HttpConnection>(
            host, port, 60'000, [](const std::string& what) { std::cerr << what << "\n"; }));
        if (!connections.back()->open()) {
            throw std::runtime_error("could not connect to serve at " + address);
        }
    }
    auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
        threads.emplace_back([&, c] {
            try {
                for (int i = next++; i < count; i = next++) {
                    ids[static_cast<std::size_t>(c)].push_back(
                        submit_over(*connections[static_cast<std::size_t>(c)], address,
                                    "/api/v1/nodes/bench-1/actions/tick",
                                    fmt::format(R"({{"params":{{"n":"{}"}}}})", 1'000'000 + i)));
                }
            } catch (const std::exception& e) {
                std::cerr << e.what() << "\n";
                failed = true;
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    double submit_ms = ms_since(t0);
    if (failed) {
        throw std::runtime_error("submitting the burst failed");
    }
    // Wait for the queue to drain, looking every 50 ms (as the Celery side does: polling each
    // job while they run would load the server being measured), then read every record.
    auto give_up = Clock::now() + std::chrono::seconds{300};
    auto none_in = [&server](std::string_view state) {
        auto page = request(server, "GET", fmt::format("/api/v1/jobs?state={}&limit=1", state));
        return page.at("jobs").as_array().empty();
    };
    while (!(none_in("queued") && none_in("running") && none_in("cancelling"))) {
        if (Clock::now() > give_up) {
            throw std::runtime_error("the burst did not drain in 300 s");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
    std::vector<double> start_ms;
    std::int64_t first_created = INT64_MAX;
    std::int64_t last_finished = 0;
    for (const auto& list : ids) {
        for (const auto& id : list) {
            auto job = wait_state(server, id, [](const std::string& s) {
                return s == "succeeded" || s == "failed" || s == "cancelled" || s == "timed_out";
            });
            if (state_of(job) != "succeeded") {
                throw std::runtime_error("a burst job did not succeed: " + json::serialize(job));
            }
            auto created = ms_field(job, "created_at");
            start_ms.push_back(static_cast<double>(ms_field(job, "started_at") - created));
            first_created = std::min(first_created, created);
            last_finished = std::max(last_finished, ms_field(job, "finished_at"));
        }
    }
    double span_s = static_cast<double>(last_finished - first_created) / 1000.0;
    fmt::print("\n== burst: {} no-op jobs submitted by {} clients at once, 2 workers\n", count,
               clients);
    row("submitted (all durable) in",
        fmt::format("{:.0f} ms ({:.0f} submits/s)", submit_ms, count / (submit_ms / 1000.0)));
    row("enqueue-to-start p50 / p99 (server records)",
        fmt::format("{:.0f} / {:.0f} ms", percentile(start_ms, 50), percentile(start_ms, 99)));
    row("throughput, first submit to last finished",
        fmt::format("{:.0f} jobs/s ({} jobs in {:.2f} s)", count / span_s, count, span_s));
}

void bench_cancel(const ServerProcess& server, int count, const std::string& action) {
    std::vector<double> gone_ms;
    std::vector<double> state_ms;
    for (int i = 0; i < count; ++i) {
        auto id = submit(server, "bench-0", action);
        pid_t group = wait_group(server, id, 1);
        auto t0 = Clock::now();
        request(server, "POST", fmt::format("/api/v1/jobs/{}/cancel", id), "{}");
        while (group_alive(group)) {
            if (ms_since(t0) > 30'000) {
                throw std::runtime_error("a cancelled group outlived 30 s");
            }
            std::this_thread::sleep_for(std::chrono::microseconds{200});
        }
        gone_ms.push_back(ms_since(t0));
        wait_state(server, id, [](const std::string& s) { return s == "cancelled"; });
        state_ms.push_back(ms_since(t0));
    }
    fmt::print("\n== cancel: {} x `{}` cancelled while running (kill_grace 1s)\n", count, action);
    row("cancel request to process group gone p50 / max",
        fmt::format("{:.1f} / {:.1f} ms", percentile(gone_ms, 50), percentile(gone_ms, 100)));
    row("cancel request to job reading cancelled p50 / max",
        fmt::format("{:.1f} / {:.1f} ms", percentile(state_ms, 50), percentile(state_ms, 100)));
}

void bench_rescue(const std::string& dir, int count) {
    std::vector<double> up_ms;
    std::vector<double> gone_ms;
    std::vector<double> rerun_ms;
    std::string config(kConfig);
    for (int i = 0; i < count; ++i) {
        auto server = std::make_unique<ServerProcess>(config, dir);
        if (!server->start()) {
            throw std::runtime_error("serve did not start: " + server->log());
        }
        auto id = submit(*server, "bench-0", "sleeper");
        pid_t group = wait_group(*server, id, 1);
        server->kill9();
        auto t0 = Clock::now();
        server = std::make_unique<ServerProcess>(config, dir);
        if (!server->start()) {
            throw std::runtime_error("serve did not restart: " + server->log());
        }
        up_ms.push_back(ms_since(t0));
        while (group_alive(group)) {
            std::this_thread::sleep_for(std::chrono::microseconds{200});
            if (ms_since(t0) > 30'000) {
                throw std::runtime_error("a leftover group outlived 30 s");
            }
        }
        gone_ms.push_back(ms_since(t0));
        wait_group(*server, id, 2);
        rerun_ms.push_back(ms_since(t0));
        request(*server, "POST", fmt::format("/api/v1/jobs/{}/cancel", id), "{}");
        wait_state(*server, id, [](const std::string& s) { return s == "cancelled"; });
        server->stop();
    }
    fmt::print("\n== rescue: {} x kill -9 of serve mid-step, then serve started again\n", count);
    row("restart to /healthz answering p50 / max",
        fmt::format("{:.0f} / {:.0f} ms", percentile(up_ms, 50), percentile(up_ms, 100)));
    row("restart to the leftover group gone p50 / max (<= healthz: killed first)",
        fmt::format("{:.0f} / {:.0f} ms", percentile(gone_ms, 50), percentile(gone_ms, 100)));
    row("restart to the rescued job running again (attempt 2) p50 / max",
        fmt::format("{:.0f} / {:.0f} ms", percentile(rerun_ms, 50), percentile(rerun_ms, 100)));
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
        if (arg == "--single") {
            options.single = std::stoi(value());
        } else if (arg == "--burst") {
            options.burst = std::stoi(value());
        } else if (arg == "--clients") {
            options.clients = std::stoi(value());
        } else if (arg == "--cancels") {
            options.cancels = std::stoi(value());
        } else if (arg == "--rescues") {
            options.rescues = std::stoi(value());
        } else if (arg == "--dir") {
            options.dir = value();
        } else {
            throw std::runtime_error("unknown option " + arg);
        }
    }
    if (options.dir.empty()) {
        throw std::runtime_error("--dir DIR is required (a directory on a real disk)");
    }
    return options;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        auto options = parse(argc, argv);
        std::string config(kConfig);
        std::filesystem::create_directories(options.dir + "/main");
        std::filesystem::create_directories(options.dir + "/rescue");
        {
            ServerProcess server(config, options.dir + "/main");
            if (!server.start()) {
                throw std::runtime_error("serve did not start: " + server.log());
            }
            bench_single(server, options.single);
            bench_probe(server, options.single);
            bench_burst(server, options.burst, options.clients);
            bench_cancel(server, options.cancels, "sleeper");
            bench_cancel(server, std::max(1, options.cancels / 3), "stubborn");
            server.stop();
        }
        bench_rescue(options.dir + "/rescue", options.rescues);
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "job_bench: " << e.what() << "\n";
        return 1;
    }
}
