#include "api/dashboard.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <optional>

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

std::string percent(const std::optional<double>& ratio) {
    return ratio ? fmt::format("{:.2f}%", *ratio * 100.0) : std::string{"no runs"};
}

/// The colour of an availability: green from 99.5 %, amber from 95 %, red below.
std::string_view colour(double ratio) {
    return ratio >= 0.995 ? "#17803d" : ratio >= 0.95 ? "#c98a00" : "#b00020";
}

/// 24 hourly bars, oldest on the left: height and colour by availability, grey where there was
/// no run. Each bar's <title> says the hour and its figures.
std::string chart(std::string_view scenario,
                  const std::vector<store::ProbeBucket>& buckets,
                  core::TimePoint now) {
    constexpr int kHours = 24;
    constexpr int kBar = 8;
    constexpr int kGap = 2;
    constexpr int kHeight = 32;
    const auto hour = std::chrono::duration_cast<core::Millis>(std::chrono::hours{1});
    const auto end = core::TimePoint{(now.time_since_epoch() / hour + 1) * hour};
    const auto start = end - kHours * hour;
    std::array<store::ProbeBucket, kHours> hours{};
    for (const auto& b : buckets) {
        if (b.scenario != scenario || b.start < start || b.start >= end) {
            continue;
        }
        auto& h = hours[static_cast<std::size_t>((b.start - start) / hour)];
        h.runs += b.runs;
        h.failed += b.failed;
        h.broken += b.broken;
    }
    std::string bars;
    for (int i = 0; i < kHours; ++i) {
        const auto& h = hours[static_cast<std::size_t>(i)];
        const auto from = start + i * hour;
        const int x = i * (kBar + kGap);
        if (h.runs == 0) {
            bars += fmt::format(
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"2\" fill=\"#ccc\">"
                "<title>{}: no runs</title></rect>",
                x, kHeight - 2, kBar, escape(core::format_time(from)));
            continue;
        }
        const auto w = probes::window_from("1h", hour, h);
        const double a = w.availability.value_or(0);
        const int height = std::max(2, static_cast<int>(a * kHeight + 0.5));
        bars += fmt::format(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\">"
            "<title>{}: {} available, {} correct, {} runs</title></rect>",
            x, kHeight - height, kBar, height, colour(a), escape(core::format_time(from)),
            percent(w.availability), percent(w.correctness), h.runs);
    }
    return fmt::format(
        "<svg class=\"availability\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
        "role=\"img\" aria-label=\"{2}: availability per hour over the last 24 hours\">{3}"
        "</svg>",
        kHours * (kBar + kGap), kHeight, escape(scenario), bars);
}

/// The alarms firing now, each with since when, what it read and what silences it.
std::string alarms_section(const std::vector<store::AlarmState>& alarms) {
    std::string rows;
    for (const auto& a : alarms) {
        if (a.state != "firing") {
            continue;
        }
        rows += fmt::format(
            "<tr class=\"alarm firing{0}\" data-alarm=\"{1}\"><td>{1}</td><td>{2}</td>"
            "<td class=\"message\">{3}</td><td>{4}</td></tr>\n",
            a.silenced_by.empty() ? "" : " silenced", escape(a.name),
            escape(core::format_time(a.since)), escape(a.summary),
            a.silenced_by.empty() ? std::string{"notified"} : escape(a.silenced_by));
    }
    if (rows.empty()) {
        return fmt::format(
            "<h2>Alarms</h2>\n<p class=\"alarms-quiet\">No alarm is firing ({} "
            "watched).</p>\n",
            alarms.size());
    }
    return fmt::format(
        "<h2>Alarms</h2>\n<table class=\"alarms\">\n<thead><tr><th>alarm</th><th>firing "
        "since</th><th>reading</th><th>silenced</th></tr></thead>\n<tbody>\n{}</tbody>\n"
        "</table>\n",
        rows);
}

std::string probes_section(const ProbesView& view, core::TimePoint now) {
    if (!view.error.empty()) {
        return fmt::format("<h2>Canary scenarios</h2>\n<p class=\"error\">{}</p>\n",
                           escape(view.error));
    }
    if (view.scenarios.empty()) {
        return "<h2>Canary scenarios</h2>\n<p>No scenarios configured (docs/probes.md).</p>\n";
    }
    std::string rows;
    for (const auto& s : view.scenarios) {
        const auto& scenario = *s.scenario;
        std::string last = "never run";
        std::string outcome = "none";
        std::string failure;
        if (s.last) {
            outcome = s.last->outcome;
            last = fmt::format("{} {}", s.last->outcome, core::format_time(s.last->started_at));
            failure = s.last->message;
        }
        const auto& day = s.windows.size() > 1 ? s.windows[1] : probes::Window{};
        rows += fmt::format(
            "<tr class=\"probe {0}\" id=\"probe-{1}\" data-probe=\"{1}\"><td>{1}</td><td>{2}</td>"
            "<td class=\"availability-24h\">{3}</td><td>{4}</td><td>{5}</td>"
            "<td class=\"message\">{6}</td></tr>\n",
            escape(outcome), escape(scenario.name), escape(last), percent(day.availability),
            chart(scenario.name, view.buckets, now),
            scenario.enabled ? core::format_duration(scenario.interval) : std::string{"off"},
            escape(failure));
    }
    return fmt::format(
        "<h2>Canary scenarios</h2>\n"
        "<table class=\"probes\">\n<thead><tr><th>scenario</th><th>last run</th>"
        "<th>availability, 24 h</th><th>per hour, 24 h</th><th>every</th>"
        "<th>last message</th></tr></thead>\n<tbody>\n{}</tbody>\n</table>\n{}",
        rows, alarms_section(view.alarms));
}

}  // namespace

std::string render_dashboard(const std::vector<core::Node>& nodes,
                             const ProbesView& probes,
                             core::TimePoint now) {
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
tr.probe.passed td:nth-child(2) {{ color: #17803d; }}
tr.probe.failed td:nth-child(2), tr.probe.broken td:nth-child(2) {{ color: #b00020; }}
td.message {{ max-width: 40em; }}
tr.alarm.firing td:first-child {{ color: #b00020; font-weight: bold; }}
tr.alarm.silenced td:first-child {{ color: #777; }}
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
{4}</body>
</html>
)",
                       free, nodes.size(), core::format_time(now), rows,
                       probes_section(probes, now));
}

}  // namespace aviary::api
