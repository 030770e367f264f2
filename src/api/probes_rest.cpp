#include "api/probes_rest.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <string>

#include "api/api.hpp"
#include "api/rest.hpp"

namespace aviary::api {
namespace {

namespace asio = net::asio;
namespace json = boost::json;

constexpr std::int64_t kDefaultRuns = 50;
constexpr std::int64_t kMaxRuns = 1000;

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

}  // namespace aviary::api
