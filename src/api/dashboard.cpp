#include "api/dashboard.hpp"

#include <fmt/format.h>

#include "api/render.hpp"

namespace aviary::api {
namespace {

std::string escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

/// The tag the node runs, and the configured one when a job deployed another.
std::string image_text(const core::Node& node) {
    if (node.deployed_tag.empty() || node.deployed_tag == node.spec.image_tag) {
        return node.spec.image_tag;
    }
    if (node.spec.image_tag.empty()) {
        return node.deployed_tag;
    }
    return fmt::format("{} (configured {})", node.deployed_tag, node.spec.image_tag);
}

std::string row(const core::Node& node, core::TimePoint now) {
    std::string holder, since, until, state{core::to_string(node.state)};
    if (node.lease) {
        holder = node.lease->owner;
        since = core::format_time(node.lease->acquired_at);
        auto left = std::chrono::duration_cast<std::chrono::seconds>(node.lease->expires_at - now);
        until = fmt::format("{} (in {})", core::format_time(node.lease->expires_at),
                            core::format_duration(std::chrono::duration_cast<core::Millis>(left)));
    }
    return fmt::format(
        "<tr class=\"{0}\"><td>{1}</td><td>{0}</td><td>{2}</td><td>{3}</td><td>{4}</td>"
        "<td>{5}</td><td>{6}</td><td>{7}</td></tr>\n",
        escape(state), escape(node.spec.name), escape(holder), escape(since), escape(until),
        escape(node.maintenance_reason), escape(image_text(node)),
        escape(selector_text(node.spec.labels)));
}

}  // namespace

std::string render_dashboard(const std::vector<core::Node>& nodes, core::TimePoint now) {
    std::string rows;
    int free = 0;
    for (const auto& node : nodes) {
        rows += row(node, now);
        free += node.state == core::NodeState::kFree ? 1 : 0;
    }
    return fmt::format(R"(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="10">
<title>aviary: {0} of {1} nodes free</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: .35em .9em; border-bottom: 1px solid #ddd; text-align: left; }}
tr.free td:nth-child(2) {{ color: #17803d; }}
tr.leased td:nth-child(2) {{ color: #b35c00; }}
tr.maintenance td:nth-child(2) {{ color: #a00; }}
</style>
</head>
<body>
<h1>aviary</h1>
<p>{0} of {1} nodes free &middot; as of {2} &middot; refreshes every 10 s</p>
<table>
<thead><tr><th>node</th><th>state</th><th>holder</th><th>since</th><th>until</th><th>maintenance</th><th>image</th><th>labels</th></tr></thead>
<tbody>
{3}</tbody>
</table>
</body>
</html>
)",
                       free, nodes.size(), core::format_time(now), rows);
}

}  // namespace aviary::api
