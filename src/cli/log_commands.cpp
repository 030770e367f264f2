// `aviary logs` and `aviary notifications` (docs/cli.md, docs/logs.md): a search of the newest
// records, then with --follow the live tail as NDJSON, resumed from its cursor whenever it ends.
#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <thread>

#include "cli/commands.hpp"
#include "cli/render.hpp"

namespace aviary::cli {
namespace json = boost::json;

namespace {

/// The tail's connection may stay open this long: past the server's maximum duration (1 h by
/// default), which ends it with a message first.
constexpr core::Millis kTailTimeout{std::chrono::minutes{65}};
constexpr core::Millis kFirstRetry{std::chrono::seconds{1}};
constexpr core::Millis kLastRetry{std::chrono::seconds{30}};

std::string text_of(const json::value& v) {
    return v.is_string() ? std::string{v.as_string()} : json::serialize(v);
}

/// One record as a line: "2026-12-05T09:58:01.500Z  4  watchdog-1  disk 91% full", with the
/// node and source after the sender where the record has them ("nodeos node-a/stderr").
void print_record(const json::object& record, bool as_json) {
    if (as_json) {
        std::printf("%s\n", json::serialize(record).c_str());
        return;
    }
    auto member = [&record](std::string_view name) {
        const auto* v = record.if_contains(name);
        return v != nullptr ? text_of(*v) : std::string{};
    };
    std::string who = member("sender");
    if (auto node = member("node"); !node.empty()) {
        who += " " + node;
        if (auto source = member("source"); !source.empty()) {
            who += "/" + source;
        }
    }
    const auto time = member("time");
    const auto level = member("level");
    std::printf("%s  %3s  %s  %s\n", time.empty() ? "-" : time.c_str(),
                level.empty() ? "-" : level.c_str(), who.empty() ? "-" : who.c_str(),
                member("message").c_str());
}

/// The filters both reads share, as query parameters (each starting with '&').
std::string filters(const LogsFlags& flags) {
    std::string out = "kind=" + encode(flags.kind);
    for (const auto& [name, value] :
         {std::pair{"node", &flags.node}, std::pair{"service", &flags.service},
          std::pair{"source", &flags.source}, std::pair{"regex", &flags.grep}}) {
        if (!value->empty()) {
            out += fmt::format("&{}={}", name, encode(*value));
        }
    }
    for (const auto& field : flags.fields) {
        const auto eq = field.find('=');
        out += fmt::format("&field.{}={}", encode(field.substr(0, eq)),
                           eq == std::string::npos ? std::string{} : encode(field.substr(eq + 1)));
    }
    if (flags.level) {
        out += fmt::format("&level={}", *flags.level);
    }
    if (!flags.contains.empty()) {
        out += "&contains=" + encode(flags.contains);
    }
    return out;
}

/// Prints the newest records, oldest first; the largest id printed (0: none).
Outcome<std::int64_t> print_recent(const Context& context, const LogsFlags& flags) {
    std::string path = fmt::format("/api/v1/logs?{}&since={}&limit={}", filters(flags),
                                   encode(flags.since), flags.limit);
    if (!flags.until.empty()) {
        path += "&until=" + encode(flags.until);
    }
    auto reply = context.client.call("GET", path);
    if (!reply) {
        return reply.failure();
    }
    const auto* records =
        reply->json.is_object() ? reply->json.as_object().if_contains("records") : nullptr;
    if (records == nullptr || !records->is_array()) {
        return Failure{kExitRefused, "the server's answer has no records"};
    }
    std::int64_t newest = 0;
    const auto& list = records->as_array();
    for (auto it = list.rbegin(); it != list.rend(); ++it) {
        if (!it->is_object()) {
            continue;
        }
        print_record(it->as_object(), context.json);
        if (const auto* id = it->as_object().if_contains("id"); id != nullptr && id->is_int64()) {
            newest = std::max(newest, id->as_int64());
        }
    }
    std::fflush(stdout);
    return newest;
}

/// Follows the tail from `cursor` (empty: from now) until interrupted, resuming after every
/// end: at once after the server's own end, with backoff after a lost connection.
int follow(const Context& context, const LogsFlags& flags, std::string cursor) {
    core::Millis retry = kFirstRetry;
    while (true) {
        std::string path = "/api/v1/logs/tail?" + filters(flags);
        if (!cursor.empty()) {
            path += "&cursor=" + cursor;
        }
        std::string end_reason;
        bool refused = false;
        auto on_line = [&](const json::object& line) {
            const auto* type = line.if_contains("type");
            if (type == nullptr || !type->is_string()) {
                return;
            }
            const std::string_view kind = type->as_string();
            if ((kind == "start" || kind == "records") && line.contains("cursor")) {
                cursor = text_of(line.at("cursor"));
            }
            if (kind == "records" && line.contains("records") && line.at("records").is_array()) {
                for (const auto& record : line.at("records").as_array()) {
                    if (record.is_object()) {
                        print_record(record.as_object(), context.json);
                    }
                }
                std::fflush(stdout);
                retry = kFirstRetry;
            } else if (kind == "lost") {
                std::fprintf(stderr,
                             "aviary: %s records after the cursor were removed by "
                             "retention before the tail resumed\n",
                             line.contains("count") ? text_of(line.at("count")).c_str() : "some");
            } else if (kind == "error" && line.contains("message")) {
                std::fprintf(stderr, "aviary: %s\n", text_of(line.at("message")).c_str());
            } else if (kind == "end" && line.contains("reason")) {
                end_reason = text_of(line.at("reason"));
                refused = end_reason.find("logs.max_tails_per_identity") != std::string::npos;
            }
        };
        auto streamed = context.client.stream(path, kTailTimeout, on_line);
        if (!streamed && streamed.failure().http_status != 0) {
            return report(streamed.failure());  // the server refused the tail (a bad filter)
        }
        if (refused) {
            return report(Failure{kExitRefused, end_reason});
        }
        if (!end_reason.empty()) {
            // The server ended it, saying why: resume at once.
            std::fprintf(stderr, "aviary: %s\n", end_reason.c_str());
            continue;
        }
        std::fprintf(stderr, "aviary: the tail was cut (%s): resuming from cursor %s in %s\n",
                     streamed ? "the server closed it" : streamed.failure().message.c_str(),
                     cursor.empty() ? "now" : cursor.c_str(), core::format_duration(retry).c_str());
        std::this_thread::sleep_for(retry);
        retry = std::min(retry * 2, kLastRetry);
    }
}

}  // namespace

int run_logs(const Context& context, const LogsFlags& flags) {
    std::string cursor;
    if (flags.kind == "all") {
        if (!flags.follow) {
            return report(Failure{kExitUsage, "--kind all reads both kinds only with -f"});
        }
    } else {
        auto printed = print_recent(context, flags);
        if (!printed) {
            return report(printed.failure());
        }
        if (*printed > 0) {
            cursor = std::to_string(*printed);
        }
    }
    if (!flags.follow) {
        return kExitOk;
    }
    return follow(context, flags, std::move(cursor));
}

}  // namespace aviary::cli
