#pragma once
// Private to api: canary scenarios over REST (docs/api.md, "Probes"): each scenario with its
// last run and availability, a scenario's runs, and a run now.
#include <boost/json/object.hpp>

#include "api/routes.hpp"
#include "net/net.hpp"
#include "probes/probes.hpp"

namespace aviary::api {

class ProbesRest {
public:
    ProbesRest(probes::Service& probes, net::BlockingPool& pool);

    void add_routes(RouteTable& table);

private:
    /// GET /api/v1/probes
    net::asio::awaitable<net::Response> list(RouteContext& context);
    /// GET /api/v1/probes/{name}/runs?limit=&before=
    net::asio::awaitable<net::Response> runs(RouteContext& context);
    /// POST /api/v1/probes/{name}/run
    net::asio::awaitable<net::Response> run(RouteContext& context);
    /// GET /api/v1/alarms
    net::asio::awaitable<net::Response> alarms(RouteContext& context);
    /// GET /api/v1/alarms/notifications?limit=
    net::asio::awaitable<net::Response> notifications(RouteContext& context);
    /// GET /api/v1/silences?ended=true
    net::asio::awaitable<net::Response> silences(RouteContext& context);
    /// POST /api/v1/silences {"matcher", "duration", "reason"}
    net::asio::awaitable<net::Response> add_silence(RouteContext& context);
    /// DELETE /api/v1/silences/{id}
    net::asio::awaitable<net::Response> expire_silence(RouteContext& context);

    /// A silence's matcher must name something: "*", a rule, a scenario or RULE/SCENARIO.
    core::Result<void> known_matcher(std::string_view matcher) const;

    probes::Service& probes_;
    net::BlockingPool& pool_;
};

/// A scenario's status as GET /api/v1/probes shows it; also the dashboard's.
boost::json::object probe_status_json(const probes::Service::ScenarioStatus& status);
boost::json::object probe_run_json(const store::ProbeRun& run);
boost::json::object alarm_json(const store::AlarmState& alarm);
boost::json::object silence_json(const store::Silence& silence);

}  // namespace aviary::api
