#pragma once
// Private to api: serve's HTTP routes. Authenticate -> check Host/Origin for mutating
// requests -> parse -> call the feature -> render; every request is counted by route and
// status, and timed.
#include <functional>
#include <string_view>

#include "api/auth.hpp"
#include "api/jobs_rest.hpp"
#include "api/jsonrpc.hpp"
#include "api/rest.hpp"
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
    const Authenticator& auth;
    std::function<bool()> stopping;  ///< true once shutdown began: /readyz turns 503
};

class Router {
public:
    explicit Router(RouterDeps deps);

    net::asio::awaitable<net::Response> handle(net::Request request);

private:
    net::asio::awaitable<net::Response> dispatch(net::Request& request, std::string_view& route);
    net::asio::awaitable<net::Response> jsonrpc(net::Request& request, fleet::Caller caller);
    net::asio::awaitable<net::Response> readyz();
    net::asio::awaitable<net::Response> metrics();
    net::asio::awaitable<net::Response> dashboard();

    RouterDeps deps_;
    metrics::Family<metrics::Counter>& requests_;
    metrics::Family<metrics::Histogram>& duration_;
};

}  // namespace aviary::api
