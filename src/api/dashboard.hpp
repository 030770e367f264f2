#pragma once
// Private to api: the original tweety's page — the pool as a server-rendered HTML table,
// readable without JavaScript.
#include <string>
#include <vector>

#include "core/core.hpp"

namespace aviary::api {

std::string render_dashboard(const std::vector<core::Node>& nodes, core::TimePoint now);

}  // namespace aviary::api
