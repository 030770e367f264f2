// bench/roller: what the roller endpoint costs, measured against the real binary over HTTP.
//
//   roller_bench --dir DIR [--requests N] [--clients C] [--rounds R] [--singles M]
//                [--worker-ids W] [--poll-ms P]
//
// (defaults 2000, 32, 2, 50, 32, 5). bench/roller/run.sh builds it and runs it with a temp dir on
// a real disk and the knobs from the environment.
//
// serve runs with 32 machines (driver none, address 127.0.0.1), W worker ids tc-bench-0..W-1
// spread over them, 2 job workers and a public no-op task `tick` (one `noop` step, params host
// from the machine and tc_worker_id), on SQLite's default settings (synchronous=full) in DIR.
//
// 1. load: N submissions of `tick` from C client threads, each with its own kept-alive
//    connection (aviary's net::HttpClient), each sending its next request when the last one
//    was answered; request i is for worker id i % W. Per round and route: accepted/s (accepted
//    answers / first request sent to last answer), p50 and p99 of the accepted requests' round
//    trips, the answers that were not acceptances, and how many distinct jobs the accepted
//    answers named. A submission identical to a job still queued or running (same action,
//    machine and params) is a duplicate: it writes no job and answers the first one, so with
//    W = C many answers can be duplicates; "new jobs" says how many were not, and W >= N
//    (--worker-ids) makes every submission of a round a new job.
//      roller: POST /api/v1/jobs?tc_worker_id=W&task_name=tick, no body; accepted is 201.
//      rest:   POST /api/v1/nodes/MACHINE/actions/tick with the params the roller fills in,
//              {"params": {"host": "127.0.0.1", "tc_worker_id": W}}; accepted is 202 (a new
//              job) or 200 (a duplicate).
//    The routes alternate, roller then rest, R times, so the machine's noise shows; one short
//    unprinted warm-up of each comes first. Between rounds the queue drains (nothing queued
//    or running); "drained" is the time from the last answer until then.
// 2. single: M times with the queue empty, one roller POST, then GET /api/v1/jobs/{task_id}
//    every P ms (as a dashboard polls) until its status reads COMPLETE: the client's time from
//    sending the POST to seeing COMPLETE (the poll interval is in it), and the job's own
//    finished_at - created_at (written by serve, ms resolution: no poll interval in it).
// It prints figures and asserts nothing about them.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/server_process.hpp"

namespace json = boost::json;
namespace net = aviary::net;
namespace asio = aviary::net::asio;
using aviary::test::ServerProcess;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kMachines = 32;
constexpr int kJobWorkers = 2;
constexpr std::string_view kTask = "tick";
constexpr std::string_view kMachineAddress = "127.0.0.1";
/// Unprinted warm-up per route before the first round: this many requests per client.
constexpr int kWarmupPerClient = 4;
constexpr auto kRequestTimeout = std::chrono::seconds{60};
constexpr auto kDrainLimit = std::chrono::seconds{300};
constexpr auto kDrainPoll = std::chrono::milliseconds{20};
constexpr auto kJobLimit = std::chrono::seconds{60};
constexpr std::size_t kShownBody = 300;

/// The actions under jobs: in the config; `tick` is the ping-like no-op task.
constexpr std::string_view kActionsConfig = R"(  actions:
    tick:
      public: true
      exclusive: false
      params:
        host: {from: "{{machine.address}}"}
      steps:
        - noop
)";

struct Options {
    int requests = 2000;
    int clients = 32;
    int rounds = 2;
    int singles = 50;
    int worker_ids = 32;
    int poll_ms = 5;
    std::string dir;
};

enum class Route { kRoller, kRest };

std::string_view route_name(Route route) {
    return route == Route::kRoller ? "roller" : "rest";
}

std::string machine_name(int index) {
    return fmt::format("bench-m-{}", index);
}

std::string worker_id(int index) {
    return fmt::format("tc-bench-{}", index);
}

std::string make_config(int worker_ids) {
    std::string out = "log: {level: warn}\nfleet:\n  machines:\n";
    for (int m = 0; m < kMachines; ++m) {
        out += fmt::format("    - {{name: {0}, driver: none, hostname: {0}, address: {1}}}\n",
                           machine_name(m), kMachineAddress);
    }
    out += "  worker_ids:\n";
    for (int w = 0; w < worker_ids; ++w) {
        out += fmt::format("    - {{id: {}, machine: {}}}\n", worker_id(w),
                           machine_name(w % kMachines));
    }
    out += fmt::format("jobs:\n  workers: {}\n", kJobWorkers);
    return out + std::string(kActionsConfig);
}

double ms_between(Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
}

double ms_since(Clock::time_point start) {
    return ms_between(start, Clock::now());
}

double percentile(std::vector<double> values, double p) {
    if (values.empty()) {
        return 0;
    }
    std::sort(values.begin(), values.end());
    auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(values.size() - 1) + 0.5);
    return values[std::min(rank, values.size() - 1)];
}

/// RFC 3339 with milliseconds, UTC ("2026-11-22T10:00:00.123Z"), as ms since the epoch.
std::int64_t ms_field(const json::value& job, std::string_view key) {
    std::string text(job.at(key).as_string());
    std::tm tm{};
    int ms = 0;
    std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<std::int64_t>(timegm(&tm)) * 1000 + ms;
}

/// Runs one HttpClient::fetch() to its end, for KeptAlive (a named coroutine: GCC 12).
asio::awaitable<void> fetch_into(net::HttpClient& client,
                                 net::ClientRequest request,
                                 std::optional<aviary::core::Result<net::ClientResponse>>& out) {
    auto response = co_await client.fetch(std::move(request));
    out.emplace(std::move(response));
}

/// aviary's net::HttpClient used blocking from one thread: one kept-alive connection, each
/// fetch() run on a private io_context until it is answered (or its timeout passes).
class KeptAlive {
public:
    KeptAlive()
        : client_(io_.get_executor(),
                  net::ClientSettings{.max_idle_per_host = 1, .max_per_host = 1}) {}

    aviary::core::Result<net::ClientResponse> fetch(net::ClientRequest request) {
        std::optional<aviary::core::Result<net::ClientResponse>> out;
        std::exception_ptr failure;
        asio::co_spawn(io_, fetch_into(client_, std::move(request), out),
                       [&failure](std::exception_ptr e) { failure = e; });
        io_.restart();
        io_.run();
        if (failure) {
            std::rethrow_exception(failure);
        }
        if (!out) {
            throw std::runtime_error("a fetch ended without an answer");
        }
        return std::move(*out);
    }

private:
    asio::io_context io_;
    net::HttpClient client_;  // after io_: destroyed before it
};

net::ClientRequest make_request(const ServerProcess& server,
                                std::string method,
                                std::string_view path,
                                std::string body = {}) {
    net::ClientRequest request;
    request.method = std::move(method);
    request.url = server.url(path);
    if (!body.empty()) {
        request.headers.push_back({"Content-Type", "application/json"});
    }
    request.body = std::move(body);
    request.timeout = kRequestTimeout;
    return request;
}

/// A GET on a new connection (net::fetch_sync), parsed; throws unless it is a 200 with JSON.
json::value get_json(const ServerProcess& server, std::string_view path) {
    auto response = net::fetch_sync(make_request(server, "GET", path));
    if (!response) {
        throw std::runtime_error(fmt::format("GET {}: {}", path, response.error().message));
    }
    std::error_code ec;
    auto parsed = json::parse(response->body, ec);
    if (ec || response->status != 200) {
        throw std::runtime_error(fmt::format("GET {}: HTTP {} {}", path, response->status,
                                             response->body.substr(0, kShownBody)));
    }
    return parsed;
}

/// Waits until no job is queued or running (bounded); the time it took, in ms.
double wait_drained(const ServerProcess& server) {
    auto start = Clock::now();
    auto none_in = [&server](std::string_view state) {
        auto page = get_json(server, fmt::format("/api/v1/jobs?state={}&limit=1", state));
        return page.at("jobs").as_array().empty();
    };
    while (!(none_in("queued") && none_in("running") && none_in("cancelling"))) {
        if (Clock::now() - start > kDrainLimit) {
            throw std::runtime_error(
                fmt::format("the queue did not drain in {} s", kDrainLimit.count()));
        }
        std::this_thread::sleep_for(kDrainPoll);
    }
    return ms_since(start);
}

/// One submission of `tick` for worker id `worker` on `route`.
net::ClientRequest submission(const ServerProcess& server, Route route, int worker) {
    if (route == Route::kRoller) {
        return make_request(
            server, "POST",
            fmt::format("/api/v1/jobs?tc_worker_id={}&task_name={}", worker_id(worker), kTask));
    }
    return make_request(
        server, "POST",
        fmt::format("/api/v1/nodes/{}/actions/{}", machine_name(worker % kMachines), kTask),
        fmt::format(R"({{"params":{{"host":"{}","tc_worker_id":"{}"}}}})", kMachineAddress,
                    worker_id(worker)));
}

/// The job an accepted answer names, or empty when the answer is not an acceptance: the
/// roller answers 201 {"task_id": ...}; the REST route 202 (new) or 200 (duplicate)
/// {"job": {"id": ...}}.
std::string accepted_id(Route route, const net::ClientResponse& response) {
    bool accepted = route == Route::kRoller ? response.status == 201
                                            : response.status == 202 || response.status == 200;
    if (!accepted) {
        return {};
    }
    std::error_code ec;
    auto body = json::parse(response.body, ec);
    if (ec || !body.is_object()) {
        return {};
    }
    const json::value* id = nullptr;
    if (route == Route::kRoller) {
        id = body.as_object().if_contains("task_id");
    } else if (const auto* job = body.as_object().if_contains("job"); job && job->is_object()) {
        id = job->as_object().if_contains("id");
    }
    return id != nullptr && id->is_string() ? std::string(id->as_string()) : std::string{};
}

/// What one client thread saw.
struct ThreadResult {
    std::vector<double> latency_ms;  // accepted requests only
    std::vector<std::string> ids;    // the job each accepted answer named
    int refused = 0;                 // answers that were not acceptances, and transport errors
    std::string first_error;
    std::optional<Clock::time_point> first_sent;
    Clock::time_point last_answer;
    std::exception_ptr failure;
};

void run_client(const ServerProcess& server,
                Route route,
                int count,
                int worker_ids,
                std::atomic<int>& next,
                ThreadResult& out) {
    try {
        KeptAlive client;
        for (int i = next++; i < count; i = next++) {
            auto request = submission(server, route, i % worker_ids);
            auto sent = Clock::now();
            if (!out.first_sent) {
                out.first_sent = sent;
            }
            auto response = client.fetch(std::move(request));
            out.last_answer = Clock::now();
            std::string id = response ? accepted_id(route, *response) : std::string{};
            if (id.empty()) {
                ++out.refused;
                if (out.first_error.empty()) {
                    out.first_error = response ? fmt::format("HTTP {} {}", response->status,
                                                             response->body.substr(0, kShownBody))
                                               : response.error().message;
                }
                continue;
            }
            out.latency_ms.push_back(ms_between(sent, out.last_answer));
            out.ids.push_back(std::move(id));
        }
    } catch (...) {
        out.failure = std::current_exception();
    }
}

struct LoadFigures {
    int accepted = 0;
    int refused = 0;
    int new_jobs = 0;  // distinct job ids among the accepted answers
    double accepted_per_s = 0;
    double p50_ms = 0;
    double p99_ms = 0;
    double drained_ms = 0;
    std::string first_error;
};

/// `count` submissions on `route` from `clients` threads, then waits for the queue to drain.
LoadFigures run_load(
    const ServerProcess& server, Route route, int count, int clients, int worker_ids) {
    std::vector<ThreadResult> results(static_cast<std::size_t>(clients));
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    threads.reserve(results.size());
    for (auto& result : results) {
        threads.emplace_back(run_client, std::cref(server), route, count, worker_ids,
                             std::ref(next), std::ref(result));
    }
    for (auto& thread : threads) {
        thread.join();
    }
    LoadFigures out;
    std::vector<double> latency_ms;
    std::set<std::string> ids;
    std::optional<Clock::time_point> first_sent;
    Clock::time_point last_answer{};
    for (auto& result : results) {
        if (result.failure) {
            std::rethrow_exception(result.failure);
        }
        latency_ms.insert(latency_ms.end(), result.latency_ms.begin(), result.latency_ms.end());
        ids.insert(result.ids.begin(), result.ids.end());
        out.accepted += static_cast<int>(result.ids.size());
        out.refused += result.refused;
        if (out.first_error.empty()) {
            out.first_error = result.first_error;
        }
        if (result.first_sent) {
            first_sent =
                first_sent ? std::min(*first_sent, *result.first_sent) : *result.first_sent;
            last_answer = std::max(last_answer, result.last_answer);
        }
    }
    out.new_jobs = static_cast<int>(ids.size());
    double span_ms = first_sent ? ms_between(*first_sent, last_answer) : 0;
    out.accepted_per_s = span_ms > 0 ? out.accepted / (span_ms / 1000.0) : 0;
    out.p50_ms = percentile(latency_ms, 50);
    out.p99_ms = percentile(latency_ms, 99);
    out.drained_ms = wait_drained(server);
    return out;
}

void print_load_header(const Options& options) {
    fmt::print(
        "\n== load: {} submissions of `{}` per round from {} client threads (one kept-alive\n"
        "   connection each), {} worker ids over {} machines, {} job workers\n",
        options.requests, kTask, options.clients, options.worker_ids, kMachines, kJobWorkers);
    fmt::print("   roller: POST /api/v1/jobs?tc_worker_id=W&task_name={} (accepted: 201)\n", kTask);
    fmt::print(
        "   rest:   POST /api/v1/nodes/MACHINE/actions/{} with the roller's params, host and\n"
        "           tc_worker_id (accepted: 202 new, 200 duplicate)\n",
        kTask);
    fmt::print("  {:<7} {:>5} {:>11} {:>8} {:>8} {:>8} {:>9} {:>10} {:>10}\n", "route", "round",
               "accepted/s", "p50 ms", "p99 ms", "refused", "new jobs", "duplicates", "drained ms");
}

void print_load_row(Route route, int round, const LoadFigures& f) {
    fmt::print("  {:<7} {:>5} {:>11.0f} {:>8.2f} {:>8.2f} {:>8} {:>9} {:>10} {:>10.0f}\n",
               route_name(route), round, f.accepted_per_s, f.p50_ms, f.p99_ms, f.refused,
               f.new_jobs, f.accepted - f.new_jobs, f.drained_ms);
    if (f.refused > 0) {
        fmt::print("          first refusal: {}\n", f.first_error);
    }
}

void bench_load(const ServerProcess& server, const Options& options) {
    int warmup = kWarmupPerClient * options.clients;
    for (Route route : {Route::kRoller, Route::kRest}) {
        run_load(server, route, warmup, options.clients, options.worker_ids);
    }
    print_load_header(options);
    for (int round = 1; round <= options.rounds; ++round) {
        for (Route route : {Route::kRoller, Route::kRest}) {
            auto figures =
                run_load(server, route, options.requests, options.clients, options.worker_ids);
            print_load_row(route, round, figures);
        }
    }
    fmt::print(
        "  (accepted/s: accepted answers / first request sent to last answer; p50, p99: their\n"
        "   round trips; refused: other answers and transport errors; new jobs: distinct job\n"
        "   ids answered; duplicates: accepted answers naming a job already answered, which\n"
        "   wrote no job; drained: last answer to nothing queued or running, {} ms polls)\n",
        kDrainPoll.count());
}

/// Polls GET /api/v1/jobs/{id} every `poll` until its status is final; the job and the polls.
std::pair<json::value, int> poll_until_final(KeptAlive& client,
                                             const ServerProcess& server,
                                             const std::string& id,
                                             std::chrono::milliseconds poll) {
    auto give_up = Clock::now() + kJobLimit;
    for (int polls = 1; Clock::now() < give_up; ++polls) {
        std::this_thread::sleep_for(poll);
        auto response = client.fetch(make_request(server, "GET", "/api/v1/jobs/" + id));
        if (!response) {
            throw std::runtime_error("GET job " + id + ": " + response.error().message);
        }
        std::error_code ec;
        auto job = json::parse(response->body, ec);
        if (ec || response->status != 200) {
            throw std::runtime_error(fmt::format("GET job {}: HTTP {} {}", id, response->status,
                                                 response->body.substr(0, kShownBody)));
        }
        auto status = std::string(job.at("status").as_string());
        if (status == "COMPLETE") {
            return {std::move(job), polls};
        }
        if (status == "FAILED" || status == "CANCELLED") {
            throw std::runtime_error("a tick task ended " + status + ": " + json::serialize(job));
        }
    }
    throw std::runtime_error(
        fmt::format("task {} did not complete in {} s", id, kJobLimit.count()));
}

void bench_single(const ServerProcess& server, const Options& options) {
    KeptAlive client;
    std::vector<double> seen_ms;
    std::vector<double> record_ms;
    std::vector<double> post_ms;
    long polls = 0;
    wait_drained(server);
    for (int i = 0; i < options.singles; ++i) {
        auto request = submission(server, Route::kRoller, i % options.worker_ids);
        auto t0 = Clock::now();
        auto response = client.fetch(std::move(request));
        post_ms.push_back(ms_since(t0));
        std::string id = response ? accepted_id(Route::kRoller, *response) : std::string{};
        if (id.empty()) {
            throw std::runtime_error(
                "a single roller POST was refused: " +
                (response ? fmt::format("HTTP {} {}", response->status, response->body)
                          : response.error().message));
        }
        auto [job, job_polls] =
            poll_until_final(client, server, id, std::chrono::milliseconds{options.poll_ms});
        seen_ms.push_back(ms_since(t0));
        record_ms.push_back(
            static_cast<double>(ms_field(job, "finished_at") - ms_field(job, "created_at")));
        polls += job_polls;
    }
    fmt::print("\n== single: {} roller tasks one at a time, queue empty, polled every {} ms\n",
               options.singles, options.poll_ms);
    fmt::print("  {:<60} {:>8} {:>8}\n", "", "p50 ms", "p99 ms");
    auto row = [](std::string_view what, const std::vector<double>& values) {
        fmt::print("  {:<60} {:>8.2f} {:>8.2f}\n", what, percentile(values, 50),
                   percentile(values, 99));
    };
    row("POST sent to COMPLETE seen by the poller (client)", seen_ms);
    row("created_at to finished_at (the job's record, ms resolution)", record_ms);
    row("POST answered (201)", post_ms);
    fmt::print("  ({:.1f} polls per task on average)\n",
               options.singles > 0 ? static_cast<double>(polls) / options.singles : 0.0);
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
        if (arg == "--requests") {
            options.requests = std::stoi(value());
        } else if (arg == "--clients") {
            options.clients = std::stoi(value());
        } else if (arg == "--rounds") {
            options.rounds = std::stoi(value());
        } else if (arg == "--singles") {
            options.singles = std::stoi(value());
        } else if (arg == "--worker-ids") {
            options.worker_ids = std::stoi(value());
        } else if (arg == "--poll-ms") {
            options.poll_ms = std::stoi(value());
        } else if (arg == "--dir") {
            options.dir = value();
        } else {
            throw std::runtime_error("unknown option " + arg);
        }
    }
    if (options.dir.empty()) {
        throw std::runtime_error("--dir DIR is required (a directory on a real disk)");
    }
    if (options.requests < 1 || options.clients < 1 || options.clients > 1024 ||
        options.rounds < 1 || options.singles < 0 || options.worker_ids < 1 ||
        options.worker_ids > 100'000 || options.poll_ms < 0 || options.poll_ms > 10'000) {
        throw std::runtime_error(
            "--requests and --rounds from 1, --clients 1-1024, --singles from 0, --worker-ids "
            "1-100000, --poll-ms 0-10000");
    }
    return options;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        auto options = parse(argc, argv);
        std::filesystem::create_directories(options.dir + "/serve");
        ServerProcess server(make_config(options.worker_ids), options.dir + "/serve");
        if (!server.start()) {
            throw std::runtime_error("serve did not start: " + server.log());
        }
        bench_load(server, options);
        if (options.singles > 0) {
            bench_single(server, options);
        }
        server.stop();
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "roller_bench: " << e.what() << "\n";
        return 1;
    }
}
