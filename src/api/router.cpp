#include "api/router.hpp"

#include <fmt/format.h>

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>

#include "api/dashboard.hpp"
#include "api/errors.hpp"

namespace aviary::api {
namespace {

namespace json = boost::json;

net::Response text(int status, std::string body) {
    net::Response response;
    response.status = status;
    response.body = std::move(body);
    if (!response.body.empty() && response.body.back() != '\n') {
        response.body += '\n';
    }
    return response;
}

std::string lower_trimmed(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
        text.remove_prefix(1);
    }
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
        text.remove_suffix(1);
    }
    std::string out{text};
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') {
            c = char(c - 'A' + 'a');
        }
    }
    return out;
}

/// application/json, with or without parameters (";charset=UTF-8"), as the original accepted.
bool is_json_content_type(std::string_view value) {
    auto media = lower_trimmed(value.substr(0, value.find(';')));
    return media == "application/json" || media == "application/json-rpc";
}

/// A refusal in the shape of the surface the path belongs to: a JSON-RPC envelope on "/", the
/// REST error object under /api/, plain text elsewhere.
net::Response refusal(std::string_view path, int status, const core::Error& error) {
    net::Response out;
    if (path == "/") {
        out = json_reply(
            status, json::serialize(error_envelope(jsonrpc_code(error.code), error.message, nullptr,
                                                   core::to_string(error.code))));
    } else if (path.starts_with("/api/")) {
        out = error_reply(error);
    } else {
        out = text(status, error.message);
    }
    out.status = status;
    return out;
}

/// 415 unless the body's Content-Type suits the route. A JSON route takes application/json (a
/// missing type is accepted only with an empty body: curl -X POST sends none); a route without
/// a body refuses one sent with another type, which is what a cross-site form post looks like.
std::optional<core::Error> check_content_type(const Route& route, const net::Request& request) {
    auto type = request.header("Content-Type");
    const bool json_type = type && is_json_content_type(*type);
    switch (route.body) {
        case BodyKind::kIgnored:
        case BodyKind::kOwn:
            return std::nullopt;
        case BodyKind::kJson:
            if (json_type || (!type && request.body.empty() && request.body_reader == nullptr)) {
                return std::nullopt;
            }
            break;
        case BodyKind::kNone:
            if (!type || json_type) {
                return std::nullopt;
            }
            break;
    }
    return core::Error{core::ErrorCode::kInvalidArgument,
                       fmt::format("unsupported content type \"{}\" for {} {}: send "
                                   "application/json",
                                   type.value_or(""), request.method, route.pattern)};
}

/// A refused caller, with the challenge headers a browser needs to ask for credentials.
net::Response refused(std::string_view path, const core::Error& error) {
    auto response = refusal(path, http_status(error.code), error);
    if (error.code == core::ErrorCode::kUnauthenticated) {
        response.headers.push_back({"WWW-Authenticate", "Bearer realm=\"aviary\""});
        response.headers.push_back({"WWW-Authenticate", "Basic realm=\"aviary\""});
    }
    return response;
}

}  // namespace

std::string_view method_label(std::string_view method) {
    static constexpr std::array<std::string_view, 8> kKnown = {
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT"};
    for (auto known : kKnown) {
        if (method == known) {
            return known;
        }
    }
    return "other";
}

Router::Router(RouterDeps deps)
    : deps_(std::move(deps)),
      requests_(deps_.registry.counter(
          "aviary_http_requests_total",
          "HTTP requests served, by route pattern, method (known methods, else other) and "
          "status code.",
          {"route", "method", "code"})),
      duration_(deps_.registry.histogram("aviary_http_request_duration_seconds",
                                         "Time to handle an HTTP request, by route.",
                                         {"route"})) {
    add_own_routes();
    deps_.rest.add_routes(table_);
    deps_.jobs_rest.add_routes(table_);
    deps_.roller.add_routes(table_);
    deps_.bitahoy.add_routes(table_);
    deps_.logs_rest.add_routes(table_);
    deps_.probes_rest.add_routes(table_);
}

void Router::add_own_routes() {
    // Probes stay open: a load balancer or kubelet carries no token and may use any Host.
    table_.add({.method = "GET",
                .pattern = "/healthz",
                .handler = [](RouteContext&) -> net::asio::awaitable<net::Response> {
                    co_return text(200, "ok");
                },
                .access = Access::kProbe});
    table_.add({.method = "GET",
                .pattern = "/readyz",
                .handler = [this](RouteContext&) { return readyz(); },
                .access = Access::kProbe});
    // Prometheus addresses aviary by IP or service name: a token, but no Host rule.
    table_.add({.method = "GET",
                .pattern = "/metrics",
                .handler = [this](RouteContext&) { return metrics(); },
                .access = Access::kScrape});
    table_.add({.method = "GET", .pattern = "/api/v1/instances", .handler = [this](RouteContext&) {
                    return instances();
                }});
    table_.add({.method = "GET", .pattern = "/dashboard", .handler = [this](RouteContext&) {
                    return dashboard();
                }});
    // JSON-RPC answers a wrong content type in its own envelope (jsonrpc()).
    table_.add({.method = "POST",
                .pattern = "/",
                .handler = [this](RouteContext& context) { return jsonrpc(context); },
                .body = BodyKind::kOwn});
}

bool Router::streams_body(const net::Request& head) const {
    auto match = table_.match(head.method, head.path);
    return match.route != nullptr && match.route->streams_body;
}

net::asio::awaitable<net::Response> Router::handle(net::Request request) {
    auto started = std::chrono::steady_clock::now();
    std::string_view route = "unmatched";
    std::string cors_origin;
    bool cors_route = false;
    auto response = co_await dispatch(request, route, cors_origin, cors_route);
    if (!cors_origin.empty()) {
        response.headers.push_back({"Access-Control-Allow-Origin", cors_origin});
    }
    if (cors_route) {
        // The answer depends on Origin whether or not this one was allowed: caches keep apart.
        response.headers.push_back({"Vary", "Origin"});
    }
    // A configured secret that reached stored data (a param, an event, a job's result) is
    // not shown to a caller (docs/security.md, "Redaction"). A followed job's streamed output
    // carries lines and errors that were redacted when they were captured.
    core::redactor().hide_secrets(response.body);
    std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
    requests_.with({route, method_label(request.method), std::to_string(response.status)}).inc();
    duration_.with({route}).observe(took.count());
    co_return response;
}

/// Not a coroutine: what is answered at once (a preflight, a refusal) goes back through
/// net::ready, and only a routed request gets a coroutine frame, call()'s.
net::asio::awaitable<net::Response> Router::dispatch(net::Request& request,
                                                     std::string_view& route,
                                                     std::string& cors_origin,
                                                     bool& cors_route) {
    const auto& path = request.path;
    auto match = table_.match(request.method, path);
    // A preflight asks for the path; an actual request is answered for its own route only.
    const bool cors =
        request.method == "OPTIONS" ? match.cors : match.route != nullptr && match.route->cors;
    cors_route = cors;
    if (auto origin = request.header("Origin");
        cors && origin && deps_.auth.cors_origin_allowed(*origin)) {
        cors_origin = std::string{*origin};
    }
    if (request.method == "OPTIONS" && !match.allow.empty()) {
        // Answered before auth: a CORS preflight carries no credentials.
        route = "options";
        if (!cors_origin.empty() && request.header("Access-Control-Request-Method")) {
            auto response = text(200, "");
            response.headers.push_back(
                {"Access-Control-Allow-Headers", "Authorization,Content-Type"});
            response.headers.push_back({"Access-Control-Allow-Methods", match.cors_methods});
            response.headers.push_back({"Access-Control-Max-Age", "600"});
            return net::ready(std::move(response));
        }
        auto response = text(204, "");
        response.headers.push_back({"Allow", match.allow});
        return net::ready(std::move(response));
    }
    if (match.route != nullptr) {
        route = match.route->pattern;
    }
    const bool probe = match.route != nullptr ? match.route->access == Access::kProbe : match.probe;
    fleet::Caller caller;
    if (!probe) {
        auto authenticated = authorize(request, match, !cors_origin.empty());
        if (!authenticated) {
            route = "refused";
            return net::ready(refused(path, authenticated.error()));
        }
        caller = std::move(*authenticated);
    }
    if (match.route == nullptr) {
        return net::ready(unrouted(request, match));
    }
    if (auto refusal = refuse_body(*match.route, request)) {
        return net::ready(std::move(*refusal));
    }
    return call(*match.route, request, std::move(caller), std::move(match.params));
}

/// The caller named by the token, once Host (and, on changes and upgrades, Origin) name aviary.
core::Result<fleet::Caller> Router::authorize(const net::Request& request,
                                              const RouteTable::Match& match,
                                              bool cors_origin) const {
    auto caller = deps_.auth.authenticate(request);
    const bool in_band = match.route != nullptr && match.route->access == Access::kInBand;
    if (in_band && !caller && !request.header("Authorization")) {
        caller = fleet::Caller{.identity = "", .admin = false};
    }
    const bool host_rule = match.route != nullptr ? match.route->access == Access::kCaller ||
                                                        match.route->access == Access::kInBand
                                                  : !match.scrape;
    if (!caller || !host_rule) {
        return caller;
    }
    // Any upgrade, not only on WebSocket routes: a browser opens a WebSocket to any URL.
    // A CORS route's allowed origin is one this aviary chose to trust: its Origin passes.
    const bool guarded =
        (is_mutating(request.method) && !cors_origin) || net::is_websocket_upgrade(request);
    if (auto allowed = deps_.auth.check_host_and_origin(request, guarded); !allowed) {
        return allowed.error();
    }
    return caller;
}

net::Response Router::unrouted(const net::Request& request, const RouteTable::Match& match) {
    if (match.allow.empty()) {
        return refusal(
            request.path, 404,
            core::Error{core::ErrorCode::kNotFound,
                        fmt::format("no route for {} {}", request.method, request.path)});
    }
    auto response = refusal(request.path, 405,
                            core::Error{core::ErrorCode::kInvalidArgument,
                                        fmt::format("{} takes {}, not {}; see docs/api.md",
                                                    request.path, match.allow, request.method)});
    response.headers.push_back({"Allow", match.allow});
    return response;
}

/// 415 or 413 when the body is not what the route takes.
std::optional<net::Response> Router::refuse_body(const Route& route, const net::Request& request) {
    if (auto refused = check_content_type(route, request)) {
        return refusal(request.path, 415, *refused);
    }
    if (route.max_body_bytes > 0 && request.body.size() > route.max_body_bytes) {
        return refusal(
            request.path, 413,
            core::Error{core::ErrorCode::kInvalidArgument,
                        fmt::format("request body of {} bytes is over {}'s limit "
                                    "of {} bytes",
                                    request.body.size(), route.pattern, route.max_body_bytes)});
    }
    return std::nullopt;
}

/// The route's handler, with the context it reads (its frame owns the caller and parameters).
net::asio::awaitable<net::Response> Router::call(const Route& route,
                                                 net::Request& request,
                                                 fleet::Caller caller,
                                                 PathParams params) {
    RouteContext context{.request = request, .caller = std::move(caller), .params = params};
    co_return co_await route.handler(context);
}

net::asio::awaitable<net::Response> Router::dashboard() {
    auto work = [this] { return deps_.fleet.nodes(); };
    auto nodes = co_await net::offload(deps_.pool, std::move(work));
    if (!nodes) {
        co_return text(http_status(nodes.error().code), nodes.error().message);
    }
    auto read_probes = [this] {
        ProbesView view;
        auto status = deps_.probes.status();
        auto buckets = deps_.probes.recent_buckets();
        auto alarms = deps_.probes.store().alarm_states();
        if (!status || !buckets || !alarms) {
            view.error = "the canary figures could not be read: " + (!status    ? status.error()
                                                                     : !buckets ? buckets.error()
                                                                                : alarms.error())
                                                                        .message;
            return view;
        }
        view.scenarios = std::move(*status);
        view.buckets = std::move(*buckets);
        view.alarms = std::move(*alarms);
        return view;
    };
    auto probes = co_await net::offload(deps_.pool, std::move(read_probes));
    net::Response response;
    response.content_type = "text/html; charset=utf-8";
    response.body = render_dashboard(*nodes, probes, core::SystemClock{}.now());
    co_return response;
}

net::asio::awaitable<net::Response> Router::jsonrpc(RouteContext& context) {
    auto& request = context.request;
    if (auto type = request.header("Content-Type"); type && !is_json_content_type(*type)) {
        co_return json_reply(
            415, json::serialize(error_envelope(
                     kInvalidRequest,
                     fmt::format("unsupported content type \"{}\": send application/json", *type),
                     nullptr)));
    }
    CallContext call_context{.caller = context.caller};
    auto reply = co_await deps_.rpc.handle(request.body, std::move(call_context));
    if (!reply) {
        co_return text(204, "");
    }
    co_return json_reply(200, std::move(*reply));
}

net::asio::awaitable<net::Response> Router::readyz() {
    if (deps_.stopping()) {
        co_return text(503, "not ready: shutting down");
    }
    auto work = [this] { return deps_.store.ping(); };
    auto ping = co_await net::offload(deps_.pool, std::move(work));
    if (!ping) {
        co_return text(503, fmt::format("not ready: store: {}", ping.error().message));
    }
    co_return text(200, "ready");
}

net::asio::awaitable<net::Response> Router::instances() {
    auto work = [this] { return deps_.store.instances(); };
    auto found = co_await net::offload(deps_.pool, std::move(work));
    if (!found) {
        co_return error_reply(found.error());
    }
    boost::json::array list;
    for (const auto& instance : *found) {
        boost::json::array leads;
        for (const auto& duty : instance.leads) {
            leads.emplace_back(duty);
        }
        list.push_back(boost::json::object{
            {"name", instance.name},
            {"run", instance.run},
            {"host", instance.host},
            {"pid", instance.pid},
            {"started_at", core::format_time(instance.started_at)},
            {"heartbeat_at", core::format_time(instance.heartbeat_at)},
            {"leads", std::move(leads)},
        });
    }
    co_return json_reply(
        200, boost::json::serialize(boost::json::object{{"instances", std::move(list)}}));
}

net::asio::awaitable<net::Response> Router::metrics() {
    // Scrape hooks read the store: off the I/O loop.
    auto work = [this] { return deps_.registry.render(); };
    net::Response response;
    response.body = co_await net::offload(deps_.pool, std::move(work));
    response.content_type = std::string{metrics::kContentType};
    co_return response;
}

}  // namespace aviary::api
