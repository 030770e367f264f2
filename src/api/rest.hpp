#pragma once
// Private to api: the REST surface of the lease pool (docs/api.md, "REST"). Parse the path
// and the strict body, call fleet off the I/O loop, render one JSON shape per object.
#include <string_view>

#include "api/lease_waits.hpp"
#include "api/routes.hpp"
#include "fleet/fleet.hpp"
#include "net/net.hpp"

namespace aviary::api {

class RestApi {
public:
    RestApi(fleet::Fleet& fleet, net::BlockingPool& pool, LeaseWaits& waits)
        : fleet_(fleet), pool_(pool), waits_(waits) {}

    /// Adds /api/v1/nodes..., /api/v1/machines..., /api/v1/leases... and /api/v1/events to
    /// `table`.
    void add_routes(RouteTable& table);

private:
    net::asio::awaitable<net::Response> list_nodes(net::Request& request);
    net::asio::awaitable<net::Response> get_node(std::string name);
    net::asio::awaitable<net::Response> put_node(std::string name,
                                                 net::Request& request,
                                                 fleet::Caller caller);
    /// DELETE /api/v1/nodes/{name}, or /api/v1/machines/{name} when `machine`.
    net::asio::awaitable<net::Response> delete_node(std::string name,
                                                    fleet::Caller caller,
                                                    bool machine);
    net::asio::awaitable<net::Response> list_machines();
    net::asio::awaitable<net::Response> get_machine(std::string name);
    net::asio::awaitable<net::Response> put_machine(std::string name,
                                                    net::Request& request,
                                                    fleet::Caller caller);
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
    net::asio::awaitable<net::Response> producers();
    net::asio::awaitable<net::Response> claim_producer(std::string key,
                                                       net::Request& request,
                                                       fleet::Caller caller);
    net::asio::awaitable<net::Response> release_producer(std::string key,
                                                         net::Request& request,
                                                         fleet::Caller caller);
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
/// An integer query parameter within [min, max]; kInvalidArgument naming it otherwise.
core::Result<std::int64_t> query_integer(std::string_view name,
                                         std::string_view value,
                                         std::int64_t min,
                                         std::int64_t max);
core::Error unknown_parameter(std::string_view key, std::string_view known);

}  // namespace aviary::api
