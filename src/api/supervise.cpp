// `aviary supervise`: the sidecar's two HTTP surfaces around a supervisor::Supervisor
// (docs/supervise.md) — the control API, manageos's verbatim (plain-text replies, both
// `/v1/X` and `/v1/nodeos/X`) beside aviary's own JSON, and the gated proxy to the node's API.
#include <fmt/format.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "api/api.hpp"
#include "api/auth.hpp"
#include "api/log_shipping.hpp"
#include "fleet/fleet.hpp"
#include "logs/shipper.hpp"
#include "metrics/metrics.hpp"
#include "net/net.hpp"
#include "supervisor/supervisor.hpp"

namespace aviary::api {
namespace {

namespace json = boost::json;
using supervisor::Command;

/// The most lines GET /v1/logs returns.
constexpr std::size_t kMaxTail = 10000;
/// The most backups one GET /v1/list_backups returns (page with offset).
constexpr std::size_t kMaxBackupsListed = 1000;

net::Response text(int status, std::string body) {
    net::Response response;
    response.status = status;
    response.body = std::move(body);
    return response;
}

net::Response json_response(int status, const json::value& value) {
    net::Response response;
    response.status = status;
    response.content_type = "application/json";
    response.body = json::serialize(value);
    return response;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

std::string form_decode(std::string_view in) {
    std::string out;
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] == '+') {
            out.push_back(' ');
        } else if (in[i] == '%' && i + 2 < in.size() && hex_digit(in[i + 1]) >= 0 &&
                   hex_digit(in[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex_digit(in[i + 1]) * 16 + hex_digit(in[i + 2])));
            i += 2;
        } else {
            out.push_back(in[i]);
        }
    }
    return out;
}

/// A parameter from the query string, or from a form body (manageos read both).
std::optional<std::string> param(const net::Request& request, std::string_view name) {
    if (auto value = request.param(name)) {
        return std::string{*value};
    }
    auto type = request.header("Content-Type");
    if (!type || type->find("application/x-www-form-urlencoded") == std::string_view::npos) {
        return std::nullopt;
    }
    std::string_view body = request.body;
    while (!body.empty()) {
        auto amp = body.find('&');
        std::string_view pair = body.substr(0, amp);
        auto eq = pair.find('=');
        if (form_decode(pair.substr(0, eq)) == name) {
            return eq == std::string_view::npos ? std::string{} : form_decode(pair.substr(eq + 1));
        }
        body = amp == std::string_view::npos ? std::string_view{} : body.substr(amp + 1);
    }
    return std::nullopt;
}

bool truthy(const std::optional<std::string>& value) {
    return value && (*value == "true" || *value == "1" || *value == "yes");
}

std::string iso(core::TimePoint t) {
    return core::format_time(t);
}

json::object status_json(const supervisor::Status& s) {
    json::object o;
    o["name"] = s.name;
    o["chain"] = s.chain;
    o["state"] = std::string{to_string(s.state)};
    o["readiness"] = std::string{to_string(s.readiness)};
    o["reason"] = s.reason;
    o["maintenance"] = s.maintenance;
    o["pid"] = s.pid;
    o["starts"] = s.starts;
    o["restarts"] = s.restarts;
    o["start_limit_hit"] = s.start_limit_hit;
    if (s.pid != 0) {
        o["started_at"] = iso(s.started_at);
        auto now = std::chrono::time_point_cast<core::Millis>(std::chrono::system_clock::now());
        o["uptime_seconds"] =
            std::chrono::duration_cast<std::chrono::seconds>(now - s.started_at).count();
    }
    if (s.last_exit) {
        o["last_exit"] = json::object{{"code", s.last_exit->code},
                                      {"signal", s.last_exit->signal},
                                      {"at", iso(s.last_exit->at)}};
    } else {
        o["last_exit"] = nullptr;
    }
    o["height"] = s.height ? json::value(*s.height) : json::value(nullptr);
    o["head_time"] = s.head_time ? json::value(iso(*s.head_time)) : json::value(nullptr);
    o["chain_id"] = s.chain_id;
    o["block_hash"] = s.block_hash;
    o["node_version"] = s.node_version;
    o["command"] = s.command;
    o["phase"] = s.phase;
    o["restore_pending"] = s.restore_pending;
    o["reload_pending"] = s.reload_pending;
    o["last_backup"] = s.last_backup;
    o["last_restore"] = s.last_restore;
    if (!s.production.empty()) {
        o["production"] = s.production;
        o["producer_key"] = s.producer_key;
        o["fence"] = s.fence;
        // manageos's ProductionRoundStatus and InSchedule, where the chain tells them.
        o["round"] = s.round.empty() ? json::value(nullptr) : json::value(s.round);
        o["in_schedule"] = s.in_schedule ? json::value(*s.in_schedule) : json::value(nullptr);
        o["head_producer"] = s.head_producer;
    }
    return o;
}

json::object backup_json(const supervisor::BackupEntry& entry) {
    const auto& m = entry.manifest;
    json::object o{{"name", m.name},
                   {"usable", entry.usable},
                   {"chain", m.chain},
                   {"chain_id", m.chain_id},
                   {"height", m.height ? json::value(*m.height) : json::value(nullptr)},
                   {"tag", m.tag},
                   {"node", m.node},
                   {"phase", m.phase},
                   {"created_at", iso(m.created_at)},
                   {"size", m.size},
                   {"file_count", m.file_count},
                   {"linked", m.linked},
                   {"format", m.archive.empty() || m.archive == "push" ? "dir" : "tar.zst"},
                   {"archive_size", m.archive_size}};
    if (!m.block_hash.empty()) {
        o["block_hash"] = m.block_hash;
    }
    if (!m.node_version.empty()) {
        o["node_version"] = m.node_version;
    }
    if (!entry.usable) {
        o["reason"] = entry.reason;
    }
    return o;
}

/// backupName and backupTag reach file names: letters, digits, '.', '_', '-', ':'.
std::optional<std::string> check_backup_word(std::string_view key, std::string_view value) {
    const bool ok = value.size() <= 200 && !value.starts_with('.') &&
                    std::all_of(value.begin(), value.end(), [](char c) {
                        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' ||
                               c == '_' || c == '-' || c == ':';
                    });
    if (ok) {
        return std::nullopt;
    }
    return fmt::format(
        "{}: expected up to 200 of a-z, A-Z, 0-9, '.', '_', '-' and ':' (not "
        "starting with '.'), got \"{}\"",
        key, value);
}

/// A whole number from the query string, `fallback` when absent.
std::optional<std::size_t> whole(const net::Request& request,
                                 std::string_view key,
                                 std::size_t fallback,
                                 std::size_t min,
                                 std::size_t max,
                                 std::string& problem) {
    auto given = request.param(key);
    if (!given) {
        return fallback;
    }
    std::size_t n = 0;
    auto [end, ec] = std::from_chars(given->data(), given->data() + given->size(), n);
    if (ec != std::errc{} || end != given->data() + given->size() || n < min || n > max) {
        problem = fmt::format("{}: expected a whole number from {} to {}, got \"{}\"", key, min,
                              max, *given);
        return std::nullopt;
    }
    return n;
}

/// The control API (docs/supervise.md, "Control API").
class Control {
public:
    Control(supervisor::Supervisor& supervisor, metrics::Registry& registry)
        : supervisor_(supervisor), registry_(registry) {}

    net::asio::awaitable<net::Response> operator()(net::Request request) {
        const auto& tokens = supervisor_.settings().tokens;
        if (!tokens.empty() && request.path != "/healthz" && !authorized(request, tokens)) {
            auto response = text(401, "unauthorized: send Authorization: Bearer <token>");
            response.headers.push_back({"WWW-Authenticate", "Bearer"});
            co_return response;
        }
        std::string_view path = request.path;
        if (path == "/healthz") {
            co_return healthz();
        }
        if (path == "/metrics") {
            if (request.method != "GET") {
                co_return text(405, "method not allowed: use GET");
            }
            auto response = text(200, registry_.render());
            response.content_type = std::string{metrics::kContentType};
            co_return response;
        }
        std::string_view name;
        if (path.starts_with("/v1/nodeos/")) {
            name = path.substr(11);
        } else if (path.starts_with("/v1/")) {
            name = path.substr(4);
        } else {
            co_return text(404, fmt::format("not found: {}", request.path));
        }
        co_return co_await route(request, name);
    }

private:
    static bool authorized(const net::Request& request, const std::vector<std::string>& tokens) {
        auto header = request.header("Authorization");
        if (!header || !header->starts_with("Bearer ")) {
            return false;
        }
        auto given = header->substr(7);
        bool ok = false;
        for (const auto& token : tokens) {
            ok |= constant_time_equal(given, token);
        }
        return ok;
    }
    static bool constant_time_equal(std::string_view a, std::string_view b) {
        unsigned char diff = a.size() == b.size() ? 0 : 1;
        for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
            diff |= static_cast<unsigned char>(a[i] ^ b[i]);
        }
        return diff == 0;
    }

    net::Response healthz() {
        auto [open, why] = supervisor_.gate();
        return open ? text(200, "ready") : text(503, "not ready: " + why);
    }

    net::asio::awaitable<net::Response> route(net::Request& request, std::string_view name) {
        const bool get = request.method == "GET" || request.method == "HEAD";
        const bool post = request.method == "POST";
        if (name == "healthz" || name == "ping" || name == "is_running" || name == "status" ||
            name == "logs" || name == "list_backups") {
            if (!get) {
                co_return text(405, "method not allowed: use GET");
            }
            if (name == "healthz") {
                co_return healthz();
            }
            if (name == "ping") {
                co_return text(200, "pong");
            }
            if (name == "is_running") {
                co_return json_response(
                    200, json::object{{"is_running", supervisor_.status().pid != 0}});
            }
            if (name == "status") {
                co_return json_response(200, status_json(supervisor_.status()));
            }
            if (name == "list_backups") {
                co_return co_await list_backups(request);
            }
            co_return logs(request);
        }
        auto command = supervisor::command_from(name);
        if (!command) {
            co_return text(404, fmt::format("not found: {}", request.path));
        }
        if (!post) {
            co_return text(405, "method not allowed: use POST");
        }
        const std::string cmd{name};
        supervisor::CommandArgs args;
        if (*command == Command::kBackup || *command == Command::kRestore) {
            args.backup_name = param(request, "backupName").value_or("");
            args.backup_tag = param(request, "backupTag").value_or("");
            for (auto [key, value] :
                 {std::pair<std::string_view, const std::string*>{"backupName", &args.backup_name},
                  {"backupTag", &args.backup_tag}}) {
                if (auto problem = check_backup_word(key, *value)) {
                    co_return text(400, *problem);
                }
            }
        }
        if (!truthy(param(request, "sync"))) {
            auto taken = co_await net::await_answer<core::Result<void>>(
                [this, command, &args](std::function<void(core::Result<void>)> queued) {
                    supervisor_.submit(*command, {}, std::move(queued), args);
                });
            if (!taken) {
                co_return text(500,
                               fmt::format("ERROR: {} failed: {}", cmd, taken.error().message));
            }
            co_return text(201, cmd + " command submitted");
        }
        auto result = co_await net::await_answer<core::Result<void>>(
            [this, command, &args](std::function<void(core::Result<void>)> done) {
                supervisor_.submit(*command, std::move(done), {}, args);
            });
        if (!result) {
            co_return text(500, fmt::format("ERROR: {} failed: {}", cmd, result.error().message));
        }
        co_return text(200, fmt::format("Success: {} completed", cmd));
    }

    /// GET list_backups?offset=&limit=: the target's backups, newest first, quarantined ones
    /// with their reason. Reads the disk, so off the I/O loop.
    net::asio::awaitable<net::Response> list_backups(const net::Request& request) {
        std::string problem;
        auto offset = whole(request, "offset", 0, 0, 1'000'000, problem);
        auto limit = whole(request, "limit", 100, 0, kMaxBackupsListed, problem);
        if (!offset || !limit) {
            co_return text(400, problem);
        }
        auto listed = co_await net::offload(files_, [this] { return supervisor_.backups(); });
        if (!listed) {
            co_return text(500,
                           fmt::format("ERROR: list_backups failed: {}", listed.error().message));
        }
        json::array backups;
        for (std::size_t i = *offset; i < listed->size() && backups.size() < *limit; ++i) {
            backups.push_back(backup_json((*listed)[i]));
        }
        co_return json_response(200, json::object{{"backups", std::move(backups)},
                                                  {"total", listed->size()},
                                                  {"offset", *offset},
                                                  {"limit", *limit}});
    }

    net::Response logs(const net::Request& request) {
        std::string problem;
        auto tail = whole(request, "tail", 100, 1, kMaxTail, problem);
        if (!tail) {
            return text(400, problem);
        }
        json::array lines;
        for (const auto& line : supervisor_.logs(*tail)) {
            lines.push_back(json::object{{"at", iso(line.at)},
                                         {"stream", line.stderr_stream ? "stderr" : "stdout"},
                                         {"text", line.text}});
        }
        return json_response(200, json::object{{"lines", std::move(lines)}});
    }

    supervisor::Supervisor& supervisor_;
    metrics::Registry& registry_;
    net::BlockingPool files_{1};  // list_backups reads the disk
};

/// The gated proxy: forwards to the node's API while the node is ready, else 503 with why.
class Gate {
public:
    Gate(supervisor::Supervisor& supervisor, net::ReverseProxy& proxy, metrics::Registry& registry)
        : supervisor_(supervisor),
          proxy_(proxy),
          requests_(registry.counter("aviary_supervised_proxy_requests_total",
                                     "Requests to the gated proxy, by outcome",
                                     {"node", "outcome"})),
          refused_(requests_.with({supervisor.settings().name, "refused"})),
          forwarded_(requests_.with({supervisor.settings().name, "forwarded"})),
          upstream_error_(requests_.with({supervisor.settings().name, "upstream_error"})),
          latency_(registry
                       .histogram("aviary_supervised_proxy_request_duration_seconds",
                                  "Time from a proxied request to its response head",
                                  {"node"})
                       .with({supervisor.settings().name})) {}

    /// Not a coroutine itself: the refusal and the forwarding each get their own (small)
    /// coroutine frame rather than one frame holding both responses. The request is the
    /// server's until the returned awaitable completes (net::Handler): the forwarding coroutine
    /// refers to it rather than holding a copy.
    net::asio::awaitable<net::Response> operator()(net::Request&& request) {
        auto [open, why] = supervisor_.gate();
        if (!open) {
            refused_.inc();
            auto response = text(503, why == "maintenance" ? why : "not ready: " + why);
            response.headers.push_back({"Retry-After", "5"});
            return net::ready(std::move(response));
        }
        return forward(request);
    }

private:
    net::asio::awaitable<net::Response> forward(net::Request& request) {
        const auto start = std::chrono::steady_clock::now();
        auto response = co_await proxy_.forward(request);
        latency_.observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        (response.status >= 500 ? upstream_error_ : forwarded_).inc();
        co_return response;
    }

    supervisor::Supervisor& supervisor_;
    net::ReverseProxy& proxy_;
    metrics::Family<metrics::Counter>& requests_;
    metrics::Counter& refused_;
    metrics::Counter& forwarded_;
    metrics::Counter& upstream_error_;
    metrics::Histogram& latency_;
};

/// How long one shipment may take: a stop waits for the one in flight at most this long.
constexpr core::Millis kShipTimeout{std::chrono::seconds{10}};

/// Sends a shipper's batch to serve (POST /api/v1/logs/ship, zstd). serve refusing the batch
/// itself (400, 413) is kInvalidArgument, which the shipper does not send again; anything
/// else (away, 5xx, a bad token) is sent again after a backoff.
logs::Send ship_to(std::string serve, std::string token) {
    return [serve = std::move(serve),
            token = std::move(token)](const logs::Shipment& batch) -> core::Result<void> {
        net::ClientRequest request{
            .method = "POST",
            .url = serve + "/api/v1/logs/ship",
            .headers = {{"Content-Type", "application/json"}, {"Content-Encoding", "zstd"}},
            .body = encode_shipment(batch),
            .timeout = kShipTimeout};
        if (!token.empty()) {
            request.headers.push_back({"Authorization", "Bearer " + token});
        }
        auto response = net::fetch_sync(std::move(request));
        if (!response) {
            return core::Error{core::ErrorCode::kUnavailable, response.error().message};
        }
        if (response->status == 200) {
            return {};
        }
        const auto code = response->status == 400 || response->status == 413
                              ? core::ErrorCode::kInvalidArgument
                              : core::ErrorCode::kUnavailable;
        return core::Error{code, fmt::format("serve answered {}: {}", response->status,
                                             response->body.substr(0, 300))};
    };
}

/// The sidecar's own log lines (restarts, exits, maintenance, backups) shipped beside its
/// node's, source "sidecar".
class ShipSink final : public spdlog::sinks::base_sink<std::mutex> {
public:
    explicit ShipSink(logs::Shipper& shipper) : shipper_(shipper) {}

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        static constexpr int kSyslog[] = {7, 7, 6, 4, 3, 2, 6};  // spdlog's levels, in order
        const auto ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(msg.time.time_since_epoch())
                .count();
        shipper_.offer(ns, "sidecar", kSyslog[static_cast<int>(msg.level)],
                       std::string_view{msg.payload.data(), msg.payload.size()});
    }
    void flush_() override {}

private:
    logs::Shipper& shipper_;
};

/// The service label of a supervised node's lines: the configured one, else the chain's name,
/// else the command's.
std::string service_of(const supervisor::Settings& settings) {
    if (!settings.ship.service.empty()) {
        return settings.ship.service;
    }
    if (!settings.chain.empty() && settings.chain != "none") {
        return settings.chain;
    }
    const auto& argv = settings.program.argv;
    if (argv.empty()) {
        return "node";
    }
    const auto slash = argv.front().rfind('/');
    return slash == std::string::npos ? argv.front() : argv.front().substr(slash + 1);
}

/// The node's stdout and stderr, and the sidecar's own lines, to serve's log store; null
/// without --serve or with shipping off.
core::Result<std::unique_ptr<logs::Shipper>> start_shipping(const supervisor::Settings& settings,
                                                            supervisor::Supervisor& supervisor,
                                                            metrics::Registry& registry) {
    if (settings.producer.serve.empty() || !settings.ship.enabled) {
        return std::unique_ptr<logs::Shipper>{};
    }
    auto shipper = std::make_unique<logs::Shipper>(
        logs::ShipperSettings{.dir = settings.state_dir + "/ship",
                              .node = settings.name,
                              .service = service_of(settings),
                              .max_buffer_bytes = settings.ship.max_buffer_bytes},
        ship_to(settings.producer.serve, settings.producer.token));
    if (auto started = shipper->start(); !started) {
        return core::Error{started.error().code,
                           "cannot start shipping logs: " + started.error().message};
    }
    auto* raw = shipper.get();
    supervisor.on_line([raw](const supervisor::LogLine& line) {
        const auto ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(line.at.time_since_epoch())
                .count();
        raw->offer(ns, line.stderr_stream ? "stderr" : "stdout", logs::level_of_line(line.text),
                   line.text);
    });
    core::logger("supervise")->sinks().push_back(std::make_shared<ShipSink>(*raw));
    auto& lines = registry.counter("aviary_supervised_log_ship_lines_total",
                                   "Lines of the node and the sidecar on their way to serve, by "
                                   "stage: offered, buffered (on disk), shipped (acknowledged), "
                                   "dropped.",
                                   {"node", "stage"});
    auto& buffered =
        registry.gauge("aviary_supervised_log_buffer_bytes",
                       "Bytes in the disk buffer of lines on their way to serve.", {"node"});
    registry.on_scrape([raw, &lines, &buffered, node = settings.name] {
        const auto stats = raw->stats();
        lines.with({node, "offered"}).set_total(static_cast<double>(stats.offered));
        lines.with({node, "buffered"}).set_total(static_cast<double>(stats.written));
        lines.with({node, "shipped"}).set_total(static_cast<double>(stats.shipped));
        lines.with({node, "dropped"}).set_total(static_cast<double>(stats.dropped));
        buffered.with({node}).set(static_cast<double>(stats.buffered_bytes));
    });
    return shipper;
}

int exit_code_of(const supervisor::Status& status) {
    if (!status.last_exit) {
        return 0;
    }
    return status.last_exit->signal != 0 ? 128 + status.last_exit->signal : status.last_exit->code;
}

/// How often a registered sidecar registers again, so serve's pool keeps it (a PUT that finds
/// the node unchanged writes nothing).
constexpr std::chrono::minutes kReregister{5};
constexpr std::chrono::seconds kRegisterBackoffMax{60};

/// Where serve reaches this control API: --advertise, else the listener as bound; an error
/// when it listens on every interface and no --advertise says which address to use.
core::Result<std::string> advertised_url(const supervisor::Settings& settings,
                                         const std::string& bound) {
    if (!settings.advertise.empty()) {
        return settings.advertise;
    }
    auto host = net::split_host_port(bound);
    if (!host) {
        return host.error();
    }
    if (host->first == "0.0.0.0" || host->first == "::" || host->first.empty()) {
        return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("--serve needs --advertise URL: the control API listens on every "
                        "interface ({}), and serve must be told which address reaches it",
                        bound)};
    }
    const bool v6 = host->first.find(':') != std::string::npos;
    std::string url = v6 ? fmt::format("http://[{}]:{}", host->first, host->second)
                         : fmt::format("http://{}:{}", host->first, host->second);
    if (auto problem = fleet::control_url_problem(url); !problem.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("the control URL {} {}: give --advertise", url, problem)};
    }
    return url;
}

/// Registers the node in serve's pool (PUT /api/v1/nodes/NAME, driver sidecar, this control
/// URL): tried with backoff until serve takes it, then again every kReregister. A refusal is
/// logged when it first happens or changes, never the token.
net::asio::awaitable<void> register_with_serve(const supervisor::Settings& settings,
                                               std::string control_url) {
    auto log = core::logger("supervise");
    net::asio::steady_timer timer{co_await net::asio::this_coro::executor};
    const std::string url = settings.producer.serve + "/api/v1/nodes/" + settings.name;
    const std::string body =
        json::serialize(json::object{{"driver", "sidecar"},
                                     {"control_url", control_url},
                                     {"labels", json::object{{"chain", settings.chain}}},
                                     {"note", "run by aviary supervise"}});
    std::chrono::seconds backoff{1};
    std::string last_problem;
    bool registered = false;
    while (true) {
        net::ClientRequest request{.method = "PUT", .url = url, .body = body};
        request.headers.push_back({"Content-Type", "application/json"});
        if (!settings.producer.token.empty()) {
            request.headers.push_back({"Authorization", "Bearer " + settings.producer.token});
        }
        auto response = co_await net::fetch(std::move(request));
        std::string problem;
        if (!response) {
            problem = response.error().message;
        } else if (response->status != 200 && response->status != 201) {
            problem = fmt::format("serve answered {}: {}", response->status,
                                  response->body.substr(0, 300));
        }
        std::chrono::seconds wait = kReregister;
        if (problem.empty()) {
            if (!registered) {
                log->info("registered node={} in serve's pool at {} (driver sidecar, control {})",
                          settings.name, net::redact_url(settings.producer.serve), control_url);
            }
            registered = true;
            last_problem.clear();
            backoff = std::chrono::seconds{1};
        } else {
            if (problem != last_problem) {
                log->warn("registering node={} with serve at {} failed, trying again: {}",
                          settings.name, net::redact_url(settings.producer.serve), problem);
            }
            last_problem = problem;
            wait = backoff;
            backoff = std::min(backoff * 2, std::chrono::seconds{kRegisterBackoffMax});
        }
        timer.expires_after(wait);
        co_await timer.async_wait(net::asio::use_awaitable);
    }
}

}  // namespace

int supervise(supervisor::Settings settings) {
    auto log = core::logger("supervise");
    auto control_host = net::split_host_port(settings.control);
    if (!control_host) {
        std::fprintf(stderr, "aviary supervise: --control %s: %s\n", settings.control.c_str(),
                     control_host.error().message.c_str());
        return 2;
    }
    if (!is_loopback_host(control_host->first) && settings.tokens.empty()) {
        std::fprintf(stderr,
                     "aviary supervise: the control address %s is not loopback: set auth.tokens "
                     "so only operators can stop the node (docs/supervise.md)\n",
                     settings.control.c_str());
        return 2;
    }
    // SIGTERM and SIGINT are handled here (forwarded to the node); the node gets the default
    // dispositions back when it is spawned.
    boost::asio::io_context main_context{1};
    // SIGTERM, SIGINT and SIGQUIT stop the node and then the sidecar; SIGHUP, SIGUSR1 and
    // SIGUSR2 are passed to the node's group (a node may reopen its logs on one).
    boost::asio::signal_set signals{main_context, SIGTERM, SIGINT, SIGQUIT};
    boost::asio::signal_set passed{main_context, SIGHUP, SIGUSR1, SIGUSR2};
    std::signal(SIGPIPE, SIG_IGN);

    metrics::Registry registry;
    supervisor::Supervisor supervisor{settings, registry};
    Control control{supervisor, registry};
    net::HttpServer control_server{
        net::ServerSettings{.listen = settings.control, .io_threads = 1, .blocking_threads = 1},
        std::ref(control)};

    std::unique_ptr<net::ReverseProxy> proxy;
    std::unique_ptr<Gate> gate;
    std::unique_ptr<net::HttpServer> proxy_server;
    if (!settings.proxy.empty()) {
        proxy = std::make_unique<net::ReverseProxy>(
            net::ProxySettings{.upstream = settings.upstream, .via = "aviary-supervise"});
        gate = std::make_unique<Gate>(supervisor, *proxy, registry);
        proxy_server = std::make_unique<net::HttpServer>(
            net::ServerSettings{.listen = settings.proxy,
                                .io_threads = 1,
                                .blocking_threads = 1,
                                .shutdown_grace = std::chrono::seconds{2}},
            std::ref(*gate), [](const net::Request& head) {
                // Bodies stream through as they arrive; a request without one (most reads of a
                // node's API) takes the server's plain path.
                auto length = head.header("Content-Length");
                return head.header("Transfer-Encoding").has_value() ||
                       (length.has_value() && *length != "0");
            });
    }

    // Lines are shipped from the node's first one on, and the sidecar's own from before any
    // thread logs (a logger's sinks are not to change while others write through it).
    auto started_shipping = start_shipping(settings, supervisor, registry);
    if (!started_shipping) {
        std::fprintf(stderr, "aviary supervise: %s\n", started_shipping.error().message.c_str());
        return 1;
    }
    // On every way out: the sidecar's logger lets go of the shipper, then the node's last lines
    // reach the buffer (what serve has not acknowledged is sent after the next start).
    struct StopShipping {
        std::unique_ptr<logs::Shipper> shipper;
        ~StopShipping() {
            if (!shipper) {
                return;
            }
            auto& sinks = core::logger("supervise")->sinks();
            std::erase_if(sinks, [](const spdlog::sink_ptr& sink) {
                return dynamic_cast<ShipSink*>(sink.get()) != nullptr;
            });
            shipper->stop();
        }
    } shipping{std::move(*started_shipping)};
    // Both listeners are bound before the node starts: a sidecar that cannot serve its ports
    // exits without starting the node, rather than starting and at once killing it (a node such
    // as nodeos stopped during its start-up may need a replay). A request in the moment between
    // the two waits for the supervisor like any other.
    auto control_address = control_server.start();
    if (!control_address) {
        // The message names the address ("cannot listen on HOST:PORT: bind failed: …").
        std::fprintf(stderr, "aviary supervise: control: %s\n",
                     control_address.error().message.c_str());
        return 1;
    }
    // With --serve, the URL serve will reach this control API at, known before the node starts.
    std::optional<std::string> advertised;
    if (!settings.producer.serve.empty()) {
        auto url = advertised_url(settings, *control_address);
        if (!url) {
            std::fprintf(stderr, "aviary supervise: %s\n", url.error().message.c_str());
            control_server.stop();
            return 2;
        }
        advertised = std::move(*url);
    }
    std::string proxy_address = "off";
    if (proxy_server) {
        auto bound = proxy_server->start();
        if (!bound) {
            std::fprintf(stderr, "aviary supervise: proxy: %s\n", bound.error().message.c_str());
            control_server.stop();
            return 1;
        }
        proxy_address = *bound;
    }
    if (auto started = supervisor.start(); !started) {
        std::fprintf(stderr, "aviary supervise: %s\n", started.error().message.c_str());
        if (proxy_server) {
            proxy_server->stop();
        }
        control_server.stop();
        return 1;
    }
    if (advertised) {
        boost::asio::co_spawn(main_context, register_with_serve(settings, std::move(*advertised)),
                              boost::asio::detached);
    }
    log->info("supervising node={} chain={} control={} proxy={} upstream={} state_dir={}",
              settings.name, settings.chain, *control_address, proxy_address,
              net::redact_url(settings.upstream), settings.state_dir);

    int received = 0;
    signals.async_wait([&](const boost::system::error_code& ec, int signal) {
        if (!ec) {
            received = signal;
            main_context.stop();
        }
    });
    std::function<void(const boost::system::error_code&, int)> pass =
        [&](const boost::system::error_code& ec, int signal) {
            if (!ec) {
                supervisor.forward_signal(signal);
                passed.async_wait(pass);
            }
        };
    passed.async_wait(pass);
    // The node ending for good (its restart policy says so) ends the sidecar too.
    std::thread watcher{[&] {
        supervisor.wait();
        boost::asio::post(main_context, [&] { main_context.stop(); });
    }};
    main_context.run();
    if (received != 0) {
        log->info("signal {} received: stopping the node", received);
    }
    // The node first: the gate closes as it stops, so new proxied requests get 503 at once and
    // the proxy's own shutdown grace does not delay the node's stop.
    supervisor.stop();
    if (proxy_server) {
        proxy_server->stop();
    }
    watcher.join();
    control_server.stop();
    proxy.reset();
    const auto status = supervisor.status();
    const int code = exit_code_of(status);
    log->info("stopped node={} exit_code={}", settings.name, code);
    return code;
}

}  // namespace aviary::api
