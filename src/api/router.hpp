#pragma once
// Private to api: serve's HTTP front door. A request is matched against the route table
// (routes.hpp); OPTIONS and probes are answered before auth; every other route authenticates,
// checks Host (and Origin on changes and WebSocket upgrades), checks the body's content type
// and size, and calls the handler. Every request is counted by route pattern, method and
// status, and timed; both labels come from closed sets. docs/architecture.md shows the flow.
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "api/auth.hpp"
#include "api/bitahoy.hpp"
#include "api/jobs_rest.hpp"
#include "api/jsonrpc.hpp"
#include "api/logs_rest.hpp"
#include "api/probes_rest.hpp"
#include "api/rest.hpp"
#include "api/roller_rest.hpp"
#include "api/routes.hpp"
#include "fleet/fleet.hpp"
#include "metrics/metrics.hpp"
#include "net/net.hpp"
#include "store/store.hpp"

namespace aviary::api {

struct RouterDeps {
    store::Store& store;
    fleet::Fleet& fleet;
    net::BlockingPool& pool;
    metrics::Registry& registry;
    JsonRpc& rpc;
    RestApi& rest;
    JobsRest& jobs_rest;
    RollerRest& roller;
    BitahoyWs& bitahoy;
    LogsRest& logs_rest;
    ProbesRest& probes_rest;
    probes::Service& probes;  ///< the dashboard's canary section
    const Authenticator& auth;
    std::function<bool()> stopping;  ///< true once shutdown began: /readyz turns 503
};

class Router {
public:
    explicit Router(RouterDeps deps);

    net::asio::awaitable<net::Response> handle(net::Request request);
    /// For the server's BodyPolicy: true when the route of `head` reads its body as it arrives.
    bool streams_body(const net::Request& head) const;
    const RouteTable& table() const { return table_; }

private:
    /// `cors_route` is set when the request's route answers CORS, and `cors_origin` to the
    /// request's Origin when that origin may use it: handle() then lets the browser read the
    /// answer, whatever it is.
    net::asio::awaitable<net::Response> dispatch(net::Request& request,
                                                 std::string_view& route,
                                                 std::string& cors_origin,
                                                 bool& cors_route);
    core::Result<fleet::Caller> authorize(const net::Request& request,
                                          const RouteTable::Match& match,
                                          bool cors_origin) const;
    static net::Response unrouted(const net::Request& request, const RouteTable::Match& match);
    static std::optional<net::Response> refuse_body(const Route& route,
                                                    const net::Request& request);
    net::asio::awaitable<net::Response> call(const Route& route,
                                             net::Request& request,
                                             fleet::Caller caller,
                                             PathParams params);
    net::asio::awaitable<net::Response> jsonrpc(RouteContext& context);
    net::asio::awaitable<net::Response> readyz();
    /// GET /api/v1/instances: the instances sharing the store, and what each leads.
    net::asio::awaitable<net::Response> instances();
    net::asio::awaitable<net::Response> metrics();
    net::asio::awaitable<net::Response> dashboard();
    void add_own_routes();

    RouterDeps deps_;
    RouteTable table_;
    metrics::Family<metrics::Counter>& requests_;
    metrics::Family<metrics::Histogram>& duration_;
};

/// The method as a metrics label: the known methods as they are, anything else "other", so a
/// client cannot grow /metrics by inventing methods.
std::string_view method_label(std::string_view method);

}  // namespace aviary::api
