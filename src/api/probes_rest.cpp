#include "api/probes_rest.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "api/api.hpp"
#include "api/body.hpp"
#include "api/rest.hpp"

namespace aviary::api {
namespace {

namespace asio = net::asio;
namespace json = boost::json;

constexpr std::int64_t kDefaultRuns = 50;
constexpr std::int64_t kMaxRuns = 1000;
/// The longest one silence lasts: nothing is silenced for ever by accident.
constexpr core::Millis kMaxSilence{std::chrono::hours{24 * 90}};

/// Silences change who is paged: an admin's call, as maintenance is.
core::Result<void> require_admin(const fleet::Caller& caller) {
    if (caller.admin) {
        return {};
    }
    return core::Error{
        core::ErrorCode::kPermissionDenied,
        fmt::format("token for {} may not silence alarms: it needs admin", caller.identity)};
}

/// Who the audit trail names for a silence.
std::string actor_of(const fleet::Caller& caller) {
    return caller.identity.empty() ? std::string{"aviary"} : caller.identity;
}

json::value optional_ratio(const std::optional<double>& ratio) {
    return ratio ? json::value(*ratio) : json::value(nullptr);
}

json::value steps_value(const std::string& text) {
    json::error_code ec;
    auto parsed = json::parse(text, ec);
    return ec ? json::value(json::array{}) : parsed;
}

}  // namespace

std::string probe_result_json(const probes::RunResult& result) {
    json::error_code ec;
    auto steps = json::parse(probes::steps_json(result.steps), ec);
    return json::serialize(json::object{{"scenario", result.scenario},
                                        {"started_at", core::format_time(result.started)},
                                        {"duration_ms", result.duration.count()},
                                        {"outcome", probes::outcome_name(result.outcome)},
                                        {"failed_step", result.failed_step},
                                        {"message", result.message},
                                        {"steps", ec ? json::value(json::array{}) : steps}});
}

json::object probe_run_json(const store::ProbeRun& run) {
    return json::object{{"id", run.id},
                        {"scenario", run.scenario},
                        {"started_at", core::format_time(run.started_at)},
                        {"duration_ms", run.duration.count()},
                        {"outcome", run.outcome},
                        {"failed_step", run.failed_step},
                        {"message", run.message},
                        {"instance", run.instance},
                        {"steps", steps_value(run.steps)}};
}

json::object probe_status_json(const probes::Service::ScenarioStatus& status) {
    const auto& s = *status.scenario;
    json::object windows;
    for (const auto& w : status.windows) {
        windows[w.name] = json::object{{"runs", w.runs},
                                       {"failed", w.failed},
                                       {"broken", w.broken},
                                       {"availability", optional_ratio(w.availability)},
                                       {"correctness", optional_ratio(w.correctness)},
                                       {"success", optional_ratio(w.success)}};
    }
    return json::object{
        {"name", s.name},
        {"description", s.description},
        {"interval", core::format_duration(s.interval)},
        {"timeout", core::format_duration(s.timeout)},
        {"enabled", s.enabled},
        {"last", status.last ? json::value(probe_run_json(*status.last)) : json::value(nullptr)},
        {"next_run_at", status.next_run_at ? json::value(core::format_time(*status.next_run_at))
                                           : json::value(nullptr)},
        {"windows", std::move(windows)}};
}

json::object alarm_json(const store::AlarmState& a) {
    auto time_or_null = [](const std::optional<core::TimePoint>& t) {
        return t ? json::value(core::format_time(*t)) : json::value(nullptr);
    };
    return json::object{{"name", a.name},
                        {"rule", a.rule},
                        {"scenario", a.scenario},
                        {"state", a.state},
                        {"since", core::format_time(a.since)},
                        {"pending_since", time_or_null(a.pending_since)},
                        {"clear_since", time_or_null(a.clear_since)},
                        {"summary", a.summary},
                        {"silenced_by", a.silenced_by},
                        {"notified", a.notified},
                        {"notified_at", core::format_time(a.notified_at)},
                        {"evaluated_at", core::format_time(a.evaluated_at)}};
}

json::object silence_json(const store::Silence& s) {
    return json::object{{"id", s.id},
                        {"matcher", s.matcher},
                        {"reason", s.reason},
                        {"created_by", s.created_by},
                        {"starts_at", core::format_time(s.starts_at)},
                        {"ends_at", core::format_time(s.ends_at)}};
}

ProbesRest::ProbesRest(probes::Service& probes, net::BlockingPool& pool)
    : probes_(probes), pool_(pool) {}

void ProbesRest::add_routes(RouteTable& table) {
    table.add({.method = "GET", .pattern = "/api/v1/probes", .handler = [this](RouteContext& c) {
                   return list(c);
               }});
    table.add({.method = "GET",
               .pattern = "/api/v1/probes/{name}/runs",
               .handler = [this](RouteContext& c) { return runs(c); }});
    table.add({.method = "POST",
               .pattern = "/api/v1/probes/{name}/run",
               .handler = [this](RouteContext& c) { return run(c); },
               .body = BodyKind::kIgnored});
    table.add({.method = "GET", .pattern = "/api/v1/alarms", .handler = [this](RouteContext& c) {
                   return alarms(c);
               }});
    table.add({.method = "GET",
               .pattern = "/api/v1/alarms/notifications",
               .handler = [this](RouteContext& c) { return notifications(c); }});
    table.add({.method = "GET", .pattern = "/api/v1/silences", .handler = [this](RouteContext& c) {
                   return silences(c);
               }});
    table.add({.method = "POST",
               .pattern = "/api/v1/silences",
               .handler = [this](RouteContext& c) { return add_silence(c); },
               .body = BodyKind::kJson});
    table.add({.method = "DELETE",
               .pattern = "/api/v1/silences/{id}",
               .handler = [this](RouteContext& c) { return expire_silence(c); }});
}

asio::awaitable<net::Response> ProbesRest::list(RouteContext& context) {
    for (const auto& [key, value] : context.request.query) {
        (void)value;
        co_return error_reply(unknown_parameter(key, "none"));
    }
    auto read = [this] { return probes_.status(); };
    auto status = co_await net::offload(pool_, std::move(read));
    if (!status) {
        co_return error_reply(status.error());
    }
    json::array out;
    for (const auto& s : *status) {
        out.push_back(probe_status_json(s));
    }
    const auto late = probes_.lateness();
    json::object scheduler{{"runs", late.runs},
                           {"lateness_p50_ms", late.p50_ms},
                           {"lateness_p99_ms", late.p99_ms},
                           {"lateness_max_ms", late.max_ms}};
    co_return json_reply(200, json::serialize(json::object{{"probes", std::move(out)},
                                                           {"scheduler", std::move(scheduler)}}));
}

asio::awaitable<net::Response> ProbesRest::runs(RouteContext& context) {
    const std::string& name = context.params["name"];
    if (probes::find_scenario(probes_.settings(), name) == nullptr) {
        co_return error_reply(
            core::Error{core::ErrorCode::kNotFound, fmt::format("no scenario \"{}\"", name)});
    }
    std::int64_t limit = kDefaultRuns;
    std::int64_t before = 0;
    for (const auto& [key, value] : context.request.query) {
        if (key == "limit" || key == "before") {
            auto n = query_integer(key, value, key == "limit" ? 1 : 1,
                                   key == "limit" ? kMaxRuns : INT64_MAX);
            if (!n) {
                co_return error_reply(n.error());
            }
            (key == "limit" ? limit : before) = *n;
        } else {
            co_return error_reply(unknown_parameter(key, "limit, before"));
        }
    }
    auto read = [this, name, limit, before] {
        return probes_.store().probe_runs(name, static_cast<int>(limit), before);
    };
    auto runs = co_await net::offload(pool_, std::move(read));
    if (!runs) {
        co_return error_reply(runs.error());
    }
    json::array out;
    for (const auto& r : *runs) {
        out.push_back(probe_run_json(r));
    }
    json::value next = nullptr;
    if (static_cast<std::int64_t>(runs->size()) == limit && !runs->empty()) {
        next = runs->back().id;
    }
    co_return json_reply(200, json::serialize(json::object{{"runs", std::move(out)},
                                                           {"next_before", std::move(next)}}));
}

asio::awaitable<net::Response> ProbesRest::run(RouteContext& context) {
    const std::string name = context.params["name"];
    if (probes::find_scenario(probes_.settings(), name) == nullptr) {
        co_return error_reply(
            core::Error{core::ErrorCode::kNotFound, fmt::format("no scenario \"{}\"", name)});
    }
    // Holds no thread while the run goes on: the service calls back when it has ended.
    auto start = [this, name](std::function<void(core::Result<probes::RunResult>)> done) {
        probes_.run_now(name, std::move(done));
    };
    auto result = co_await net::await_answer<core::Result<probes::RunResult>>(std::move(start));
    if (!result) {
        co_return error_reply(result.error());
    }
    co_return json_reply(200, probe_result_json(*result));
}

asio::awaitable<net::Response> ProbesRest::alarms(RouteContext& context) {
    for (const auto& [key, value] : context.request.query) {
        (void)value;
        co_return error_reply(unknown_parameter(key, "none"));
    }
    auto read = [this]() -> core::Result<std::pair<std::vector<store::AlarmState>, std::int64_t>> {
        auto states = probes_.store().alarm_states();
        if (!states) {
            return states.error();
        }
        auto backlog = probes_.store().alarm_notification_backlog();
        if (!backlog) {
            return backlog.error();
        }
        return std::pair{std::move(*states), *backlog};
    };
    auto got = co_await net::offload(pool_, std::move(read));
    if (!got) {
        co_return error_reply(got.error());
    }
    json::array out;
    std::int64_t firing = 0;
    for (const auto& a : got->first) {
        firing += a.state == "firing" ? 1 : 0;
        out.push_back(alarm_json(a));
    }
    co_return json_reply(
        200, json::serialize(json::object{
                 {"alarms", std::move(out)}, {"firing", firing}, {"backlog", got->second}}));
}

asio::awaitable<net::Response> ProbesRest::notifications(RouteContext& context) {
    std::int64_t limit = kDefaultRuns;
    for (const auto& [key, value] : context.request.query) {
        if (key != "limit") {
            co_return error_reply(unknown_parameter(key, "limit"));
        }
        auto n = query_integer(key, value, 1, kMaxRuns);
        if (!n) {
            co_return error_reply(n.error());
        }
        limit = *n;
    }
    auto read = [this, limit] {
        return probes_.store().alarm_notifications(static_cast<int>(limit));
    };
    auto got = co_await net::offload(pool_, std::move(read));
    if (!got) {
        co_return error_reply(got.error());
    }
    json::array out;
    for (const auto& n : *got) {
        out.push_back(
            json::object{{"id", n.id},
                         {"alarm", n.alarm},
                         {"notifier", n.notifier},
                         {"kind", n.kind},
                         {"summary", n.summary},
                         {"at", core::format_time(n.at)},
                         {"attempts", n.attempts},
                         {"outcome", n.outcome.empty() ? std::string{"pending"} : n.outcome},
                         {"last_error", n.last_error},
                         {"next_attempt_at", n.outcome.empty()
                                                 ? json::value(core::format_time(n.next_attempt_at))
                                                 : json::value(nullptr)},
                         {"done_at", n.done_at ? json::value(core::format_time(*n.done_at))
                                               : json::value(nullptr)}});
    }
    co_return json_reply(200, json::serialize(json::object{{"notifications", std::move(out)}}));
}

asio::awaitable<net::Response> ProbesRest::silences(RouteContext& context) {
    bool ended = false;
    for (const auto& [key, value] : context.request.query) {
        if (key != "ended") {
            co_return error_reply(unknown_parameter(key, "ended"));
        }
        if (value != "true" && value != "false") {
            co_return error_reply(core::Error{
                core::ErrorCode::kInvalidArgument,
                fmt::format("query parameter \"ended\" must be true or false, not \"{}\"", value)});
        }
        ended = value == "true";
    }
    auto read = [this, ended] {
        return probes_.store().silences(core::SystemClock{}.now(), ended);
    };
    auto got = co_await net::offload(pool_, std::move(read));
    if (!got) {
        co_return error_reply(got.error());
    }
    json::array out;
    for (const auto& s : *got) {
        out.push_back(silence_json(s));
    }
    co_return json_reply(200, json::serialize(json::object{{"silences", std::move(out)}}));
}

asio::awaitable<net::Response> ProbesRest::add_silence(RouteContext& context) {
    if (auto admin = require_admin(context.caller); !admin) {
        co_return error_reply(admin.error());
    }
    auto body = Body::parse(context.request.body, {"matcher", "duration", "reason"});
    if (!body) {
        co_return error_reply(body.error());
    }
    auto matcher = body->string("matcher");
    auto duration = body->duration("duration");
    auto reason = body->string("reason");
    if (!matcher) {
        co_return error_reply(matcher.error());
    }
    if (!duration) {
        co_return error_reply(duration.error());
    }
    if (!reason) {
        co_return error_reply(reason.error());
    }
    auto missing = [](std::string_view field) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("body field \"{}\" is required", field)};
    };
    if (!*matcher || (*matcher)->empty()) {
        co_return error_reply(missing("matcher"));
    }
    if (!*duration) {
        co_return error_reply(missing("duration"));
    }
    if (!*reason || (*reason)->empty()) {
        co_return error_reply(missing("reason"));
    }
    if (**duration > kMaxSilence) {
        co_return error_reply(core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("body field \"duration\": a silence lasts at most {}, not {}",
                        core::format_duration(kMaxSilence), core::format_duration(**duration))});
    }
    if (auto known = known_matcher(**matcher); !known) {
        co_return error_reply(known.error());
    }
    const auto now = core::SystemClock{}.now();
    store::Silence silence{.id = core::new_id(),
                           .matcher = **matcher,
                           .reason = **reason,
                           .created_by = actor_of(context.caller),
                           .starts_at = now,
                           .ends_at = now + **duration};
    auto write = [this, silence, now] { return probes_.store().add_silence(silence, now); };
    auto added = co_await net::offload(pool_, std::move(write));
    if (!added) {
        co_return error_reply(added.error());
    }
    co_return json_reply(201, json::serialize(silence_json(silence)));
}

asio::awaitable<net::Response> ProbesRest::expire_silence(RouteContext& context) {
    if (auto admin = require_admin(context.caller); !admin) {
        co_return error_reply(admin.error());
    }
    auto write = [this, id = context.params["id"], actor = actor_of(context.caller)] {
        return probes_.store().expire_silence(id, actor, core::SystemClock{}.now());
    };
    auto expired = co_await net::offload(pool_, std::move(write));
    if (!expired) {
        co_return error_reply(expired.error());
    }
    co_return json_reply(200, json::serialize(silence_json(*expired)));
}

core::Result<void> ProbesRest::known_matcher(std::string_view matcher) const {
    if (matcher == "*") {
        return {};
    }
    const auto& settings = probes_.settings();
    std::vector<std::string> known{"*"};
    for (const auto& rule : settings.alarms) {
        known.push_back(rule.name);
    }
    for (const auto& scenario : settings.scenarios) {
        known.push_back(scenario.name);
    }
    for (const auto& [rule, scenario] : probes::Alarms::pairs(settings)) {
        known.push_back(fmt::format("{}/{}", rule->name, scenario->name));
    }
    if (std::find(known.begin(), known.end(), matcher) != known.end()) {
        return {};
    }
    // The gatekeeper's alarms: "gate" (all of them) and "gate/NODE".
    if (!settings.gates.empty() &&
        (matcher == "gate" || (matcher.starts_with("gate/") && matcher.size() > 5))) {
        return {};
    }
    return core::Error{
        core::ErrorCode::kInvalidArgument,
        fmt::format("body field \"matcher\": \"{}\" names no alarm, rule or "
                    "scenario; give \"*\", a rule, a scenario, RULE/SCENARIO or gate/NODE",
                    matcher)};
}

}  // namespace aviary::api
