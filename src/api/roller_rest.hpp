#pragma once
// Private to api: the roller's endpoint, verbatim (docs/api.md, "REST: the roller"). An
// external scheduler's dashboard posts `POST /api/v1/jobs?tc_worker_id=W&task_name=T` (the
// query string is the input; any body is ignored) and polls `GET /api/v1/jobs/{task_id}`. The
// task is a public action, run on the machine behind the worker id with params templated from
// it (jobs::worker_params). Answers keep the roller's shapes: 201 with task_name,
// tc_worker_id and task_id; 400 keyed by field; 404 keyed by tc_worker_id; otherwise
// {"detail": "..."}.
#include "api/routes.hpp"
#include "fleet/fleet.hpp"
#include "jobs/jobs.hpp"
#include "net/net.hpp"

namespace aviary::api {

class RollerRest {
public:
    RollerRest(jobs::Engine& engine, fleet::Fleet& fleet, net::BlockingPool& pool)
        : engine_(engine), fleet_(fleet), pool_(pool) {}

    /// Adds POST /api/v1/jobs (CORS: a dashboard in a browser calls it). GET /api/v1/jobs/{id}
    /// is JobsRest's, which answers the roller's fields for every job.
    void add_routes(RouteTable& table);

private:
    net::asio::awaitable<net::Response> submit(net::Request& request, fleet::Caller caller);

    jobs::Engine& engine_;
    fleet::Fleet& fleet_;
    net::BlockingPool& pool_;
};

}  // namespace aviary::api
