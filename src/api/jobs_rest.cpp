#include "api/jobs_rest.hpp"

#include <fmt/format.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <limits>

#include "api/body.hpp"
#include "api/render.hpp"
#include "api/rest.hpp"

namespace aviary::api {
namespace {

namespace json = boost::json;

constexpr int kOutputDefaultLimit = 1000;
constexpr int kOutputMaxLimit = 10000;
/// Lines read from the store per round while following.
constexpr int kFollowBatch = 1000;

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

std::string state_names() {
    std::string out;
    for (auto state :
         {core::JobState::kQueued, core::JobState::kRunning, core::JobState::kSucceeded,
          core::JobState::kFailed, core::JobState::kCancelling, core::JobState::kCancelled,
          core::JobState::kTimedOut}) {
        out += fmt::format("{}{}", out.empty() ? "" : ", ", core::to_string(state));
    }
    return out;
}

/// {"job": JOB, "duplicate": bool, "lease": LEASE?}
json::object submitted_json(const core::Job& job,
                            bool duplicate,
                            const std::optional<core::Lease>& lease) {
    json::object out{{"job", job_json(job)}, {"duplicate", duplicate}};
    if (lease) {
        out["lease"] = lease_json(*lease);
    }
    return out;
}

/// Cancel and retry refuse a job in the wrong state with kInvalidArgument naming it: that is a
/// conflict with the job's state, not a malformed request.
net::Response conflict_or_error(const core::Error& error) {
    auto response = error_reply(error);
    if (error.code == core::ErrorCode::kInvalidArgument) {
        response.status = 409;
    }
    return response;
}

std::string ndjson(const json::object& line) {
    return json::serialize(line) + "\n";
}

/// What output?... asks for.
struct OutputRequest {
    store::OutputQuery query;
    bool follow = false;
};

core::Result<OutputRequest> parse_output_request(std::string id, const net::Request& request) {
    OutputRequest out;
    out.query.job_id = std::move(id);
    out.query.limit = kOutputDefaultLimit;
    constexpr std::int64_t kMaxSeq = std::numeric_limits<std::int64_t>::max();
    for (const auto& [key, value] : request.query) {
        if (key == "from" || key == "before") {
            auto seq = query_integer(key, value, 0, kMaxSeq);
            if (!seq) {
                return seq.error();
            }
            (key == "from" ? out.query.after_seq : out.query.before_seq) = *seq;
        } else if (key == "limit") {
            auto limit = query_integer(key, value, 1, kOutputMaxLimit);
            if (!limit) {
                return limit.error();
            }
            out.query.limit = int(*limit);
        } else if (key == "follow") {
            if (value != "1" && value != "true" && value != "0" && value != "false") {
                return invalid(
                    fmt::format("query parameter \"follow\" must be 1 or 0, got \"{}\"", value));
            }
            out.follow = value == "1" || value == "true";
        } else {
            return unknown_parameter(key, "from, before, limit, follow");
        }
    }
    if (out.follow && out.query.before_seq) {
        return invalid("query parameter \"before\" pages back and cannot be followed: use from");
    }
    // Without `from`, the page is the newest lines (of those before `before`, if given).
    out.query.newest = !out.query.after_seq.has_value();
    return out;
}

}  // namespace

void JobsRest::add_routes(RouteTable& table) {
    table.add({.method = "POST",
               .pattern = "/api/v1/nodes/{name}/actions/{action}",
               .handler =
                   [this](RouteContext& c) {
                       return submit(c.params["name"], c.params["action"], c.request, c.caller);
                   },
               .body = BodyKind::kJson});
    table.add({.method = "GET", .pattern = "/api/v1/jobs", .handler = [this](RouteContext& c) {
                   return list_jobs(c.request);
               }});
    // The roller's dashboard polls this from a browser: CORS.
    table.add({.method = "GET",
               .pattern = "/api/v1/jobs/{id}",
               .handler = [this](RouteContext& c) { return get_job(c.params["id"]); },
               .cors = true});
    table.add({.method = "GET",
               .pattern = "/api/v1/jobs/{id}/output",
               .handler = [this](RouteContext& c) { return output(c.params["id"], c.request); },
               .websocket = true});
    table.add({.method = "POST",
               .pattern = "/api/v1/jobs/{id}/cancel",
               .handler = [this](RouteContext& c) { return cancel(c.params["id"], c.caller); }});
    table.add({.method = "POST",
               .pattern = "/api/v1/jobs/{id}/retry",
               .handler = [this](RouteContext& c) { return retry(c.params["id"], c.caller); }});
    table.add({.method = "GET", .pattern = "/api/v1/queues", .handler = [this](RouteContext&) {
                   return list_queues();
               }});
    table.add(
        {.method = "PUT",
         .pattern = "/api/v1/queues/{name}/pause",
         .handler = [this](RouteContext& c) { return pause(c.params["name"], true, c.caller); }});
    table.add(
        {.method = "DELETE",
         .pattern = "/api/v1/queues/{name}/pause",
         .handler = [this](RouteContext& c) { return pause(c.params["name"], false, c.caller); }});
    table.add({.method = "GET", .pattern = "/api/v1/actions", .handler = [this](RouteContext&) {
                   return list_actions();
               }});
}

net::asio::awaitable<net::Response> JobsRest::submit(std::string node,
                                                     std::string action,
                                                     net::Request& request,
                                                     fleet::Caller caller) {
    auto body = Body::parse(request.body, {"params", "owner", "lease_ttl", "reason", "wait"});
    if (!body) {
        co_return error_reply(body.error());
    }
    auto params = body->params("params");
    auto owner = body->string("owner");
    auto lease_ttl = body->duration("lease_ttl");
    auto reason = body->string("reason");
    auto wait = body->boolean("wait");
    for (const core::Error* error :
         {params ? nullptr : &params.error(), owner ? nullptr : &owner.error(),
          lease_ttl ? nullptr : &lease_ttl.error(), reason ? nullptr : &reason.error(),
          wait ? nullptr : &wait.error()}) {
        if (error != nullptr) {
            co_return error_reply(*error);
        }
    }
    // The path is percent-decoded: "lotus-0;touch X" may arrive here. It names no node.
    if (!core::is_dns_label(node)) {
        co_return error_reply(
            invalid(fmt::format("node name \"{}\" must be a DNS-1123 label (a-z, 0-9, -)", node)));
    }
    jobs::SubmitRequest submit_request{.action = std::move(action),
                                       .node = std::move(node),
                                       .params = params->value_or(core::Params{}),
                                       .owner = owner->value_or(""),
                                       .lease_ttl = *lease_ttl,
                                       .reason = reason->value_or("")};
    auto submitted = co_await engine_.submit(std::move(submit_request), caller);
    if (!submitted) {
        co_return error_reply(submitted.error());
    }
    if (!wait->value_or(false)) {
        co_return json_reply(submitted->duplicate ? 200 : 202,
                             json::serialize(submitted_json(submitted->job, submitted->duplicate,
                                                            submitted->lease)));
    }
    const auto& job = submitted->job;
    auto finished = co_await waits_.until_finished(job.id, waits_.wait_limit(job));
    if (!finished) {
        co_return error_reply(finished.error());
    }
    co_return json_reply(
        200, json::serialize(submitted_json(*finished, submitted->duplicate, submitted->lease)));
}

net::asio::awaitable<net::Response> JobsRest::list_jobs(net::Request& request) {
    jobs::JobsQuery query;
    for (const auto& [key, value] : request.query) {
        if (key == "node") {
            query.node = value;
        } else if (key == "state") {
            auto state = core::parse_job_state(value);
            if (!state) {
                co_return error_reply(
                    invalid(fmt::format("query parameter \"state\" must be one of {}, got \"{}\"",
                                        state_names(), value)));
            }
            query.state = *state;
        } else if (key == "limit") {
            auto limit = query_integer(key, value, 1, 1000);
            if (!limit) {
                co_return error_reply(limit.error());
            }
            query.limit = int(*limit);
        } else if (key == "cursor") {
            query.cursor = value;
        } else {
            co_return error_reply(unknown_parameter(key, "node, state, limit, cursor"));
        }
    }
    auto work = [this, query] { return engine_.jobs(query); };
    auto page = co_await net::offload(pool_, std::move(work));
    if (!page) {
        co_return error_reply(page.error());
    }
    json::array jobs;
    for (const auto& job : page->jobs) {
        jobs.push_back(job_json(job));
    }
    co_return json_reply(200, json::serialize(json::object{{"jobs", std::move(jobs)},
                                                           {"next_cursor", page->next_cursor}}));
}

net::asio::awaitable<net::Response> JobsRest::get_job(std::string id) {
    auto work = [this, id] { return engine_.job(id); };
    auto job = co_await net::offload(pool_, std::move(work));
    if (!job) {
        co_return error_reply(job.error());
    }
    co_return json_reply(200, json::serialize(job_json(*job)));
}

net::asio::awaitable<net::Response> JobsRest::output(std::string id, net::Request& request) {
    auto parsed = parse_output_request(id, request);
    if (!parsed) {
        co_return error_reply(parsed.error());
    }
    auto work = [this, id] { return engine_.job(id); };
    auto job = co_await net::offload(pool_, std::move(work));
    if (!job) {
        co_return error_reply(job.error());
    }
    if (parsed->follow && net::is_websocket_upgrade(request)) {
        net::Response response;
        response.websocket = [this, id, from = parsed->query.after_seq.value_or(0)](
                                 net::WebSocket& ws) { return follow_websocket(id, from, ws); };
        co_return response;
    }
    if (parsed->follow) {
        net::Response response;
        response.content_type = "application/x-ndjson";
        response.stream = [this, id, from = parsed->query.after_seq.value_or(0)](
                              net::ResponseStream& stream) { return follow(id, from, stream); };
        co_return response;
    }
    auto read = [this, query = parsed->query] { return engine_.output(query); };
    auto page = co_await net::offload(pool_, std::move(read));
    if (!page) {
        co_return error_reply(page.error());
    }
    json::array lines;
    for (const auto& line : page->lines) {
        lines.push_back(output_line_json(line));
    }
    // The state read before the lines: a job seen running may have finished since, which
    // `finished` (read with the lines) already tells.
    co_return json_reply(200, json::serialize(json::object{
                                  {"lines", std::move(lines)},
                                  {"last_seq", page->last_seq},
                                  {"finished", page->finished},
                                  {"state", core::to_string(job->state)},
                              }));
}

net::asio::awaitable<void> JobsRest::follow(std::string id,
                                            std::int64_t from,
                                            net::ResponseStream& stream) {
    auto executor = co_await net::asio::this_coro::executor;
    // Registered before the first read: a line written after it wakes us.
    JobWatch watch{engine_, id, executor};
    std::int64_t last = from;
    auto last_write = std::chrono::steady_clock::now();
    while (true) {
        store::OutputQuery query{.job_id = id, .after_seq = last, .limit = kFollowBatch};
        auto read = [this, query] { return engine_.output(query); };
        auto page = co_await net::offload(pool_, std::move(read));
        if (!page) {
            (void)co_await stream.write(ndjson(error_json(page.error())));
            co_return;
        }
        if (!page->lines.empty()) {
            std::string chunk;
            for (const auto& line : page->lines) {
                chunk += ndjson(output_line_json(line));
                last = line.seq;
            }
            if (!co_await stream.write(std::move(chunk))) {
                co_return;  // the client has gone, or the server stops
            }
            last_write = std::chrono::steady_clock::now();
            if (page->lines.size() == std::size_t(kFollowBatch)) {
                continue;  // more are there already
            }
        }
        if (page->finished && last >= page->last_seq) {
            (void)co_await write_finished(id, last, stream);
            co_return;
        }
        if (waits_.stopping()) {
            co_return;
        }
        auto idle =
            std::chrono::duration_cast<core::Millis>(std::chrono::steady_clock::now() - last_write);
        if (idle >= heartbeat_) {
            json::object beat{{"heartbeat", true}, {"last_seq", last}};
            if (!co_await stream.write(ndjson(beat))) {
                co_return;
            }
            last_write = std::chrono::steady_clock::now();
            idle = core::Millis{0};
        }
        (void)co_await watch.wait(heartbeat_ - idle);
    }
}

namespace {

/// The follow stream's NDJSON over a WebSocket: one text message per line. A write is false
/// once the client has gone or the socket's send queue overflowed (the socket closes then).
class WebSocketLines final : public net::ResponseStream {
public:
    explicit WebSocketLines(net::WebSocket& ws) : ws_(ws) {}

    net::asio::awaitable<bool> write(std::string data) override {
        std::string_view rest = data;
        while (!rest.empty()) {
            auto end = rest.find('\n');
            auto line = rest.substr(0, end);
            if (!line.empty() && !ws_.send_text(std::string{line})) {
                co_return false;
            }
            rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
        }
        co_return ws_.is_open();
    }

private:
    net::WebSocket& ws_;
};

}  // namespace

net::asio::awaitable<void> JobsRest::follow_websocket(std::string id,
                                                      std::int64_t from,
                                                      net::WebSocket& ws) {
    WebSocketLines lines{ws};
    co_await follow(std::move(id), from, lines);
}

net::asio::awaitable<bool> JobsRest::write_finished(std::string id,
                                                    std::int64_t last_seq,
                                                    net::ResponseStream& stream) {
    auto work = [this, id] { return engine_.job(id); };
    auto job = co_await net::offload(pool_, std::move(work));
    if (!job) {
        co_return co_await stream.write(ndjson(error_json(job.error())));
    }
    json::object line{{"finished", true},
                      {"state", core::to_string(job->state)},
                      {"status", roller_status(job->state)},
                      {"error", job->error},
                      {"last_seq", last_seq}};
    co_return co_await stream.write(ndjson(line));
}

net::asio::awaitable<net::Response> JobsRest::cancel(std::string id, fleet::Caller caller) {
    auto work = [this, id, caller] { return engine_.cancel(id, caller); };
    auto job = co_await net::offload(pool_, std::move(work));
    if (!job) {
        co_return conflict_or_error(job.error());
    }
    co_return json_reply(200, json::serialize(job_json(*job)));
}

net::asio::awaitable<net::Response> JobsRest::retry(std::string id, fleet::Caller caller) {
    auto work = [this, id, caller] { return engine_.retry(id, caller); };
    auto submitted = co_await net::offload(pool_, std::move(work));
    if (!submitted) {
        co_return conflict_or_error(submitted.error());
    }
    co_return json_reply(
        submitted->duplicate ? 200 : 201,
        json::serialize(submitted_json(submitted->job, submitted->duplicate, submitted->lease)));
}

net::asio::awaitable<net::Response> JobsRest::list_queues() {
    auto work = [this] { return engine_.queues(); };
    auto queues = co_await net::offload(pool_, std::move(work));
    if (!queues) {
        co_return error_reply(queues.error());
    }
    json::array out;
    for (const auto& queue : *queues) {
        out.push_back(json::object{{"name", queue.name}, {"paused", queue.paused}});
    }
    co_return json_reply(200, json::serialize(json::object{{"queues", std::move(out)}}));
}

net::asio::awaitable<net::Response> JobsRest::pause(std::string queue,
                                                    bool paused,
                                                    fleet::Caller caller) {
    auto work = [this, queue, paused, caller] { return engine_.set_paused(queue, paused, caller); };
    auto done = co_await net::offload(pool_, std::move(work));
    if (!done) {
        co_return error_reply(done.error());
    }
    co_return json_reply(200, json::serialize(json::object{{"name", queue}, {"paused", paused}}));
}

net::asio::awaitable<net::Response> JobsRest::list_actions() {
    json::array out;
    for (const auto& action : engine_.actions()) {
        out.push_back(action_json(action));
    }
    co_return json_reply(200, json::serialize(json::object{{"actions", std::move(out)}}));
}

}  // namespace aviary::api
