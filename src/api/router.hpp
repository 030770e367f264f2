#pragma once
// Private to api: serve's HTTP routes. Parse -> call the feature -> render; every request is
// counted by route and status, and timed.
#include <functional>
#include <string_view>

#include "api/jsonrpc.hpp"
#include "fleet/fleet.hpp"
#include "metrics/metrics.hpp"
#include "net/net.hpp"
#include "store/store.hpp"

namespace aviary::api {

struct RouterDeps {
    store::Store& store;
    net::BlockingPool& pool;
    metrics::Registry& registry;
    JsonRpc& rpc;
    std::function<bool()> stopping;  ///< true once shutdown began: /readyz turns 503
};

class Router {
public:
    explicit Router(RouterDeps deps);

    net::asio::awaitable<net::Response> handle(net::Request request);

private:
    net::asio::awaitable<net::Response> dispatch(net::Request& request, std::string_view& route);
    net::asio::awaitable<net::Response> jsonrpc(net::Request& request);
    net::asio::awaitable<net::Response> readyz();
    net::asio::awaitable<net::Response> metrics();

    RouterDeps deps_;
    metrics::Family<metrics::Counter>& requests_;
    metrics::Family<metrics::Histogram>& duration_;
};

}  // namespace aviary::api
