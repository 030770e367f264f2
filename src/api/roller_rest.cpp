#include "api/roller_rest.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <optional>
#include <string>

#include "api/errors.hpp"
#include "api/rest.hpp"

namespace aviary::api {
namespace {

namespace json = boost::json;

constexpr std::string_view kUnknownWorker = "TC worker with that ID not found.";
constexpr std::string_view kNoMachine = "Not managing hardware running that TC worker.";
constexpr std::string_view kRequired = "This field is required.";

net::Response reply(int status, const json::object& body) {
    return json_reply(status, json::serialize(body));
}

/// The roller's non-field errors: {"detail": "..."} with the status the error's code maps to.
net::Response detail(const core::Error& error) {
    return reply(http_status(error.code), json::object{{"detail", error.message}});
}

/// What the store side of a submission came to.
struct Outcome {
    int status = 201;
    json::object body;
};

}  // namespace

void RollerRest::add_routes(RouteTable& table) {
    table.add({.method = "POST",
               .pattern = "/api/v1/jobs",
               .handler = [this](RouteContext& c) { return submit(c.request, c.caller); },
               .body = BodyKind::kIgnored,
               .cors = true});
}

net::asio::awaitable<net::Response> RollerRest::submit(net::Request& request,
                                                       fleet::Caller caller) {
    // As the roller's serializer: every field's problem at once (400), and only then the worker
    // (404). Other query parameters are ignored, as there; one given twice is refused.
    std::optional<std::string> worker;
    std::optional<std::string> task;
    json::object problems;
    for (const auto& [key, value] : request.query) {
        auto* slot = key == "tc_worker_id" ? &worker : key == "task_name" ? &task : nullptr;
        if (slot == nullptr) {
            continue;
        }
        if (*slot) {
            problems[key] = json::array{fmt::format("{} is given twice: give it once", key)};
        }
        *slot = value;
    }
    const jobs::ActionSpec* action = nullptr;
    if (!problems.contains("task_name")) {
        if (!task || task->empty()) {
            problems["task_name"] = json::array{kRequired};
        } else if (action = engine_.action(*task); action == nullptr || !action->is_public) {
            action = nullptr;
            auto shown = task->size() > 80 ? task->substr(0, 80) + "..." : *task;
            problems["task_name"] =
                json::array{fmt::format("\"{}\" is not a valid choice.", shown)};
        }
    }
    if (!problems.contains("tc_worker_id")) {
        if (!worker || worker->empty()) {
            problems["tc_worker_id"] = json::array{kRequired};
        } else if (!fleet::is_worker_id(*worker)) {
            problems["tc_worker_id"] = json::array{
                "A worker id is 1-128 of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '-'."};
        }
    }
    if (!problems.empty()) {
        co_return reply(400, problems);
    }
    // The worker id and its machine are read on the pool; the submission then waits on no
    // thread. An answer found on the way (404, 400) ends it there.
    struct Found {
        std::optional<Outcome> answer;
        jobs::SubmitRequest submit;
    };
    auto look_up = [this, action, &worker]() -> core::Result<Found> {
        auto found = fleet_.worker_id(*worker);
        if (!found) {
            if (found.error().code == core::ErrorCode::kNotFound) {
                return Found{.answer =
                                 Outcome{404, json::object{{"tc_worker_id", kUnknownWorker}}}};
            }
            return found.error();
        }
        auto node = found->machine.empty()
                        ? core::Result<core::Node>{core::Error{core::ErrorCode::kNotFound, ""}}
                        : fleet_.node(found->machine);
        if (!node || !node->spec.machine) {
            if (node || node.error().code == core::ErrorCode::kNotFound) {
                return Found{.answer = Outcome{404, json::object{{"tc_worker_id", kNoMachine}}}};
            }
            return node.error();
        }
        auto params = jobs::worker_params(*action, *worker, node->spec);
        if (!params.errors.empty()) {
            json::object fields;
            for (const auto& error : params.errors) {
                fields[error.field] = json::array{error.message};
            }
            return Found{.answer = Outcome{400, std::move(fields)}};
        }
        return Found{.submit = jobs::SubmitRequest{.action = action->name,
                                                   .node = node->spec.name,
                                                   .params = std::move(params.params)}};
    };
    auto found = co_await net::offload(pool_, std::move(look_up));
    if (!found) {
        co_return detail(found.error());
    }
    if (found->answer) {
        co_return reply(found->answer->status, found->answer->body);
    }
    auto submitted = co_await engine_.submit(std::move(found->submit), caller);
    if (!submitted && submitted.error().code == core::ErrorCode::kNotFound) {
        // The machine went away since it was looked up.
        co_return reply(404, json::object{{"tc_worker_id", kNoMachine}});
    }
    if (!submitted) {
        co_return detail(submitted.error());
    }
    co_return reply(201, json::object{{"task_name", action->name},
                                      {"tc_worker_id", *worker},
                                      {"task_id", submitted->job.id}});
}

}  // namespace aviary::api
