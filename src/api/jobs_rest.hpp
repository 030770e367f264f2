#pragma once
// Private to api: the REST surface of jobs (docs/api.md, "REST: jobs"). Actions on nodes,
// jobs and their output (paged, or followed as NDJSON), cancel and retry, queues, and the
// action catalog. Parse the path, query and strict body; call the engine off the I/O loop;
// render with render.hpp's one job shape.
#include <chrono>
#include <string>
#include <string_view>

#include "api/job_waits.hpp"
#include "api/routes.hpp"
#include "fleet/fleet.hpp"
#include "jobs/jobs.hpp"
#include "net/net.hpp"

namespace aviary::api {

class JobsRest {
public:
    /// `heartbeat`: the follow stream's keep-alive line after this long without a line.
    JobsRest(JobWaits& waits, net::BlockingPool& pool, core::Millis heartbeat)
        : waits_(waits), engine_(waits.engine()), pool_(pool), heartbeat_(heartbeat) {}

    /// Adds /api/v1/jobs..., /api/v1/queues..., /api/v1/actions and
    /// /api/v1/nodes/{name}/actions/{action} to `table`.
    void add_routes(RouteTable& table);

private:
    net::asio::awaitable<net::Response> submit(std::string node,
                                               std::string action,
                                               net::Request& request,
                                               fleet::Caller caller);
    net::asio::awaitable<net::Response> list_jobs(net::Request& request);
    net::asio::awaitable<net::Response> get_job(std::string id);
    net::asio::awaitable<net::Response> output(std::string id, net::Request& request);
    net::asio::awaitable<net::Response> cancel(std::string id, fleet::Caller caller);
    net::asio::awaitable<net::Response> retry(std::string id, fleet::Caller caller);
    net::asio::awaitable<net::Response> list_queues();
    net::asio::awaitable<net::Response> pause(std::string queue, bool paused, fleet::Caller caller);
    net::asio::awaitable<net::Response> list_actions();
    /// The NDJSON body of output?follow=1: lines after `from`, then live ones, heartbeats, and
    /// a last {"finished": true, ...} line.
    net::asio::awaitable<void> follow(std::string id,
                                      std::int64_t from,
                                      net::ResponseStream& stream);
    /// The same lines as follow(), one WebSocket text message each.
    net::asio::awaitable<void> follow_websocket(std::string id,
                                                std::int64_t from,
                                                net::WebSocket& ws);
    net::asio::awaitable<bool> write_finished(std::string id,
                                              std::int64_t last_seq,
                                              net::ResponseStream& stream);

    JobWaits& waits_;
    jobs::Engine& engine_;
    net::BlockingPool& pool_;
    core::Millis heartbeat_;
};

}  // namespace aviary::api
