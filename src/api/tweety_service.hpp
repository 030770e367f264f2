#pragma once
// Private to api: the tweety JSON-RPC methods (docs/api.md) on top of fleet and jobs.
#include "api/job_waits.hpp"
#include "api/jsonrpc.hpp"
#include "api/lease_waits.hpp"
#include "fleet/fleet.hpp"
#include "jobs/jobs.hpp"
#include "net/net.hpp"

namespace aviary::api {

class TweetyService {
public:
    TweetyService(fleet::Fleet& fleet,
                  net::BlockingPool& pool,
                  LeaseWaits& waits,
                  JobWaits& job_waits)
        : fleet_(fleet), pool_(pool), waits_(waits), job_waits_(job_waits) {}

    /// Registers TweetyService.Acquire, .Release, .Renew, .Free, .Status, the node actions
    /// (.Upgrade, .InstallSnapshot, .CreateCanary, .DeleteCanary) and .JobStatus.
    void register_methods(JsonRpc& rpc);

    /// A tweety method that runs an action as a job.
    struct NodeAction {
        std::string action;  ///< "upgrade", "install-snapshot", ...
        bool tagged = true;  ///< takes ImageTag (as the action's "tag" param)
    };

private:
    net::asio::awaitable<MethodResult> acquire(Params params, CallContext context);
    net::asio::awaitable<MethodResult> acquire_lease(fleet::AcquireRequest request,
                                                     core::Millis wait,
                                                     fleet::Caller caller);
    net::asio::awaitable<MethodResult> held_acquire(std::shared_ptr<PendingAcquire> pending);
    net::asio::awaitable<MethodResult> release(Params params, CallContext context);
    net::asio::awaitable<MethodResult> release_by_id(std::string id, fleet::Caller caller);
    net::asio::awaitable<MethodResult> release_by_node(std::string node,
                                                       std::string who,
                                                       fleet::Caller caller);
    net::asio::awaitable<MethodResult> release_after_read(std::string node,
                                                          std::string who,
                                                          fleet::Caller caller);
    net::asio::awaitable<MethodResult> renew(Params params, CallContext context);
    net::asio::awaitable<MethodResult> free(Params params, CallContext context);
    net::asio::awaitable<MethodResult> status(Params params, CallContext context);
    net::asio::awaitable<MethodResult> node_action(NodeAction call,
                                                   Params params,
                                                   CallContext context);
    net::asio::awaitable<MethodResult> job_status(Params params, CallContext context);

    fleet::Fleet& fleet_;
    net::BlockingPool& pool_;
    LeaseWaits& waits_;
    JobWaits& job_waits_;
};

}  // namespace aviary::api
