#include "api/router.hpp"

#include <fmt/format.h>

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

}  // namespace

Router::Router(RouterDeps deps)
    : deps_(std::move(deps)),
      requests_(deps_.registry.counter("aviary_http_requests_total",
                                       "HTTP requests served, by route, method and status code.",
                                       {"route", "method", "code"})),
      duration_(deps_.registry.histogram("aviary_http_request_duration_seconds",
                                         "Time to handle an HTTP request, by route.",
                                         {"route"})) {}

net::asio::awaitable<net::Response> Router::handle(net::Request request) {
    auto started = std::chrono::steady_clock::now();
    std::string_view route = "unmatched";
    auto response = co_await dispatch(request, route);
    std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
    requests_.with({std::string{route}, request.method, std::to_string(response.status)}).inc();
    duration_.with({std::string{route}}).observe(took.count());
    co_return response;
}

net::asio::awaitable<net::Response> Router::dispatch(net::Request& request,
                                                     std::string_view& route) {
    const auto& path = request.path;
    const bool get = request.method == "GET" || request.method == "HEAD";
    const bool rest = path.starts_with("/api/v1/");
    // Probes stay open: a load balancer or kubelet carries no token.
    if (path == "/healthz" || path == "/readyz") {
        route = path;
        if (!get) {
            auto response = text(405, fmt::format("{} takes GET", path));
            response.headers.push_back({"Allow", "GET, HEAD"});
            co_return response;
        }
        if (path == "/healthz") {
            co_return text(200, "ok");
        }
        co_return co_await readyz();
    }
    auto caller = deps_.auth.authenticate(request);
    if (caller) {
        if (auto allowed = deps_.auth.check_host_and_origin(request); !allowed) {
            caller = allowed.error();
        }
    }
    if (!caller) {
        route = "refused";
        net::Response refused;
        if (rest || path == "/") {
            refused =
                path == "/"
                    ? json_reply(http_status(caller.error().code),
                                 json::serialize(error_envelope(
                                     jsonrpc_code(caller.error().code), caller.error().message,
                                     nullptr, core::to_string(caller.error().code))))
                    : error_reply(caller.error());
        } else {
            refused = text(http_status(caller.error().code), caller.error().message);
        }
        if (caller.error().code == core::ErrorCode::kUnauthenticated) {
            refused.headers.push_back({"WWW-Authenticate", "Bearer realm=\"aviary\""});
            refused.headers.push_back({"WWW-Authenticate", "Basic realm=\"aviary\""});
        }
        co_return refused;
    }
    if (path == "/") {
        route = "/";
        if (request.method != "POST") {
            auto response = text(405, "the JSON-RPC endpoint takes POST; see docs/api.md");
            response.headers.push_back({"Allow", "POST"});
            co_return response;
        }
        co_return co_await jsonrpc(request, std::move(*caller));
    }
    if (rest && JobsRest::serves(path)) {
        co_return co_await deps_.jobs_rest.handle(request, std::move(*caller), route);
    }
    if (rest) {
        co_return co_await deps_.rest.handle(request, std::move(*caller), route);
    }
    if (path == "/metrics" || path == "/dashboard") {
        route = path;
        if (!get) {
            auto response = text(405, fmt::format("{} takes GET", path));
            response.headers.push_back({"Allow", "GET, HEAD"});
            co_return response;
        }
        if (path == "/metrics") {
            co_return co_await metrics();
        }
        co_return co_await dashboard();
    }
    co_return text(404, fmt::format("no route for {} {}", request.method, path));
}

net::asio::awaitable<net::Response> Router::dashboard() {
    auto work = [this] { return deps_.fleet.nodes(); };
    auto nodes = co_await net::offload(deps_.pool, std::move(work));
    if (!nodes) {
        co_return text(http_status(nodes.error().code), nodes.error().message);
    }
    net::Response response;
    response.content_type = "text/html; charset=utf-8";
    response.body = render_dashboard(*nodes, core::SystemClock{}.now());
    co_return response;
}

net::asio::awaitable<net::Response> Router::jsonrpc(net::Request& request, fleet::Caller caller) {
    if (auto type = request.header("Content-Type"); type && !is_json_content_type(*type)) {
        co_return json_reply(
            415, json::serialize(error_envelope(
                     kInvalidRequest,
                     fmt::format("unsupported content type \"{}\": send application/json", *type),
                     nullptr)));
    }
    CallContext context{.caller = std::move(caller)};
    auto reply = co_await deps_.rpc.handle(request.body, std::move(context));
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

net::asio::awaitable<net::Response> Router::metrics() {
    // Scrape hooks read the store: off the I/O loop.
    auto work = [this] { return deps_.registry.render(); };
    net::Response response;
    response.body = co_await net::offload(deps_.pool, std::move(work));
    response.content_type = std::string{metrics::kContentType};
    co_return response;
}

}  // namespace aviary::api
