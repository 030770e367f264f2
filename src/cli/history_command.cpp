// aviary history [NODE] [--limit N]: the audit trail, newest first, across as many pages as
// --limit needs.
#include <fmt/format.h>

#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/render.hpp"

namespace aviary::cli {
namespace json = boost::json;

namespace {

// Pages well under the server's largest (1000): each answer stays small and quick.
constexpr int kPageSize = 100;

std::string events_path(const HistoryFlags& flags, int page, const std::string& cursor) {
    auto path = fmt::format("/api/v1/events?limit={}", page);
    if (!flags.node.empty()) {
        path += "&node=" + encode(flags.node);
    }
    if (!cursor.empty()) {
        path += "&cursor=" + encode(cursor);
    }
    return path;
}

/// Up to flags.limit events, following next_cursor; the cursor after the last one kept
/// (null when the trail has no more).
Outcome<json::object> collect_events(const Context& context, const HistoryFlags& flags) {
    json::array events;
    json::value next = nullptr;
    std::string cursor;
    while (static_cast<int>(events.size()) < flags.limit) {
        const int page = std::min(flags.limit - static_cast<int>(events.size()), kPageSize);
        auto reply = context.client.call("GET", events_path(flags, page, cursor));
        if (!reply) {
            return reply.failure();
        }
        if (const auto* got = field(reply->json, "events").if_array()) {
            for (const auto& event : *got) {
                events.push_back(event);
            }
        }
        next = field(reply->json, "next_cursor");
        cursor = text_of(next);
        if (cursor.empty()) {
            break;
        }
    }
    return json::object{{"events", std::move(events)}, {"next_cursor", std::move(next)}};
}

}  // namespace

int run_history(const Context& context, const HistoryFlags& flags) {
    auto history = collect_events(context, flags);
    if (!history) {
        return report(history.failure());
    }
    if (context.json) {
        std::puts(json::serialize(*history).c_str());
        return kExitOk;
    }
    Table table{{"AT", "ACTOR", "KIND", "NODE"}};
    for (const auto& event : history->at("events").as_array()) {
        table.add({text_of(field(event, "at")), text_of(field(event, "actor")),
                   text_of(field(event, "kind")), text_of(field(event, "node"))});
    }
    std::fputs(table.empty() ? "no events\n" : table.text().c_str(), stdout);
    return kExitOk;
}

}  // namespace aviary::cli
