#pragma once
// Private to api: the tweety JSON-RPC methods (DESIGN §3.1) on top of fleet.
#include "api/jsonrpc.hpp"
#include "api/lease_waits.hpp"
#include "fleet/fleet.hpp"
#include "net/net.hpp"

namespace aviary::api {

class TweetyService {
public:
    TweetyService(fleet::Fleet& fleet, net::BlockingPool& pool, LeaseWaits& waits)
        : fleet_(fleet), pool_(pool), waits_(waits) {}

    /// Registers TweetyService.Acquire, .Release, .Free, .Status, and the node actions.
    void register_methods(JsonRpc& rpc);

private:
    net::asio::awaitable<MethodResult> acquire(Params params, CallContext context);
    net::asio::awaitable<MethodResult> release(Params params, CallContext context);
    net::asio::awaitable<MethodResult> renew(Params params, CallContext context);
    net::asio::awaitable<MethodResult> free(Params params, CallContext context);
    net::asio::awaitable<MethodResult> status(Params params, CallContext context);
    net::asio::awaitable<MethodResult> not_yet(std::string method, Params params);

    fleet::Fleet& fleet_;
    net::BlockingPool& pool_;
    LeaseWaits& waits_;
};

}  // namespace aviary::api
