#pragma once
// Private to api: the original tweety's page — the pool as a server-rendered HTML table,
// readable without JavaScript.
#include <string>
#include <vector>

#include "core/core.hpp"
#include "probes/probes.hpp"

namespace aviary::api {

/// The canary scenarios' part of the page: each scenario's availability over the last 24 hours
/// as an SVG chart of hourly bars, its last run and its last failure.
struct ProbesView {
    std::vector<probes::Service::ScenarioStatus> scenarios;
    std::vector<store::ProbeBucket> buckets;  ///< the last 24 hours (Service::recent_buckets)
    std::vector<store::AlarmState> alarms;    ///< every alarm; the firing ones are listed
    std::string error;                        ///< why the figures could not be read; shown instead
};

std::string render_dashboard(const std::vector<core::Node>& nodes,
                             const ProbesView& probes,
                             core::TimePoint now);

}  // namespace aviary::api
