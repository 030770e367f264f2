#pragma once
// Private to api: the REST surface of the lease pool (docs/api.md, "REST"). Parse the path
// and the strict body, call fleet off the I/O loop, render one JSON shape per object.
#include <string_view>

#include "api/lease_waits.hpp"
#include "fleet/fleet.hpp"
#include "net/net.hpp"

namespace aviary::api {

class RestApi {
public:
    RestApi(fleet::Fleet& fleet, net::BlockingPool& pool, LeaseWaits& waits)
        : fleet_(fleet), pool_(pool), waits_(waits) {}

    /// Handles /api/v1/...; sets `route` to the matched pattern (for metrics).
    net::asio::awaitable<net::Response> handle(net::Request& request,
                                               fleet::Caller caller,
                                               std::string_view& route);

private:
    net::asio::awaitable<net::Response> list_nodes(net::Request& request);
    net::asio::awaitable<net::Response> get_node(std::string name);
    net::asio::awaitable<net::Response> put_node(std::string name,
                                                 net::Request& request,
                                                 fleet::Caller caller);
    net::asio::awaitable<net::Response> delete_node(std::string name, fleet::Caller caller);
    net::asio::awaitable<net::Response> maintenance(std::string name,
                                                    bool on,
                                                    net::Request& request,
                                                    fleet::Caller caller);
    net::asio::awaitable<net::Response> acquire(net::Request& request, fleet::Caller caller);
    net::asio::awaitable<net::Response> list_leases(net::Request& request);
    net::asio::awaitable<net::Response> renew(std::string id,
                                              net::Request& request,
                                              fleet::Caller caller);
    net::asio::awaitable<net::Response> release(std::string id, fleet::Caller caller);
    net::asio::awaitable<net::Response> events(net::Request& request);
    net::asio::awaitable<void> stream_wait(std::shared_ptr<PendingAcquire> pending,
                                           net::ResponseStream& stream);
    net::asio::awaitable<bool> write_progress(net::ResponseStream& stream,
                                              const fleet::Waiter& waiter,
                                              std::chrono::milliseconds elapsed);

    fleet::Fleet& fleet_;
    net::BlockingPool& pool_;
    LeaseWaits& waits_;
};

/// The JSON response helpers every api surface shares.
net::Response json_reply(int status, std::string body);
net::Response error_reply(const core::Error& error);
/// A REST 405 naming the methods `allow` lists, with an Allow header.
net::Response method_not_allowed(std::string_view allow);
/// "/api/v1/jobs/ID" -> {"api", "v1", "jobs", "ID"} (empty segments dropped).
std::vector<std::string> path_segments(std::string_view path);

}  // namespace aviary::api
