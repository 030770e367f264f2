#pragma once
// Private to api: serve's route table. Every HTTP route is one line — a method, a path pattern
// with named parameters, a handler and its attributes — and the router derives the rest from
// the table: 404 against 405 with `Allow`, OPTIONS (and CORS preflights), the Host check, the
// content types a body may have, the body limit, and the `route` label of the metrics.
// docs/architecture.md shows how a request flows through it.
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fleet/fleet.hpp"
#include "net/net.hpp"

namespace aviary::api {

/// Who may call a route.
enum class Access {
    kCaller,  ///< a caller: a token when tokens are configured; the Host rule applies
    kScrape,  ///< a token when tokens are configured, no Host rule: Prometheus (/metrics)
    kProbe,   ///< anyone, no Host rule: load balancers and kubelets (/healthz, /readyz)
    /// The Host and Origin rules apply, and a bearer token when one is sent; without one the
    /// handler gets an unauthenticated caller (empty identity, not admin) and asks for the token
    /// in the connection itself (Bitahoy's `auth` message).
    kInBand,
};

/// What a route's request body may be.
enum class BodyKind {
    kNone,     ///< no body expected; one sent with a foreign Content-Type is refused (415)
    kJson,     ///< a JSON document: Content-Type application/json (415 otherwise)
    kIgnored,  ///< whatever is sent is ignored (the roller's POST carries its input in the query)
    kOwn,      ///< the handler checks the type itself (JSON-RPC answers in its own envelope)
};

/// A matched route's path parameters, in pattern order: {"name", "lotus-0"}.
class PathParams {
public:
    void add(std::string_view name, std::string value) {
        values_.emplace_back(name, std::move(value));
    }
    /// The value of `name`; the table guarantees every name of the pattern is present.
    const std::string& operator[](std::string_view name) const;

private:
    std::vector<std::pair<std::string_view, std::string>> values_;
};

/// What a handler gets. References live until the handler's awaitable completes.
struct RouteContext {
    net::Request& request;
    fleet::Caller caller;
    const PathParams& params;
};

using RouteHandler = std::function<net::asio::awaitable<net::Response>(RouteContext&)>;

struct Route {
    std::string method;   ///< "GET" (HEAD is served by GET routes), "POST", "PUT", "DELETE"...
    std::string pattern;  ///< "/api/v1/nodes/{name}/maintenance"; also the metrics label
    RouteHandler handler;
    Access access = Access::kCaller;
    BodyKind body = BodyKind::kNone;
    std::size_t max_body_bytes = 0;  ///< 0: the server's limit; a smaller one refuses with 413
    bool streams_body = false;       ///< the handler reads the body through Request::body_reader
    bool cors = false;               ///< answers CORS preflights (the roller's routes)
    /// Answers a WebSocket upgrade with a WebSocket (its handler returns Response::websocket).
    /// Any upgrade request, to any route, meets the Origin rule as changes do.
    bool websocket = false;
};

/// True for the methods that change state: POST, PUT, PATCH, DELETE.
bool is_mutating(std::string_view method);

/// The route table. Built once at start, then read concurrently by every I/O thread.
class RouteTable {
public:
    /// Adds a route. Aborts on a duplicate method + pattern or a malformed pattern: a bug in
    /// the wiring, found at start.
    void add(Route route);

    struct Match {
        const Route* route = nullptr;  ///< null: no route for this method (see allow)
        PathParams params;
        /// The methods the path takes, for 405's Allow and OPTIONS ("GET, HEAD, POST"); empty
        /// when no pattern matches the path at all (404).
        std::string allow;
        bool cors = false;  ///< some route on this path answers CORS preflights
        /// The methods of those routes for Access-Control-Allow-Methods: "OPTIONS,POST".
        std::string cors_methods;
        bool probe = false;  ///< every route on this path is Access::kProbe (no auth, no Host rule)
        bool scrape = false;  ///< every route on this path skips the Host rule (kProbe, kScrape)
    };
    /// The route for `method` on the decoded `path`. HEAD matches GET routes.
    Match match(std::string_view method, std::string_view path) const;

    const std::vector<Route>& routes() const { return routes_; }

private:
    struct Segment {
        std::string text;
        bool parameter = false;  // {name}: matches any one non-empty segment
    };
    struct Compiled {
        std::vector<Segment> segments;
    };
    static bool same_shape(const Compiled& a, const Compiled& b);
    static bool matches(const Compiled& compiled,
                        const std::vector<std::string_view>& parts,
                        PathParams* params);

    std::vector<Route> routes_;
    std::vector<Compiled> compiled_;  // parallel to routes_
};

/// "/api/v1/jobs/ID" -> {"api", "v1", "jobs", "ID"}; empty segments are dropped.
std::vector<std::string_view> split_path(std::string_view path);

}  // namespace aviary::api
