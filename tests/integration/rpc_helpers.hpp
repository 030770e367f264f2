#pragma once
// Shared by the integration tests: JSON-RPC calls against a ServerProcess, decoded.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "support/server_process.hpp"

namespace aviary::test {

/// Calls `method` with one params object and returns the decoded reply (asserting HTTP 200).
inline boost::json::object call(const ServerProcess& server,
                                std::string_view method,
                                std::string_view params_json) {
    auto response = server.post_json("/", rpc_body(method, params_json));
    EXPECT_TRUE(response) << (response ? "" : response.error().message);
    if (!response) {
        return {};
    }
    EXPECT_EQ(response->status, 200) << response->body;
    std::error_code ec;
    auto parsed = boost::json::parse(response->body, ec);
    EXPECT_FALSE(ec) << response->body;
    if (ec || !parsed.is_object()) {
        return {};
    }
    return parsed.get_object();
}

inline std::string str(const boost::json::value& v) {
    return v.is_string() ? std::string{v.get_string()} : boost::json::serialize(v);
}

/// The Status entry of `node`, or null.
inline boost::json::value status_of(const ServerProcess& server, std::string_view node) {
    auto reply = call(server, "TweetyService.Status", "{}");
    if (!reply.contains("result")) {
        return nullptr;
    }
    for (const auto& entry : reply["result"].at("nodes").as_array()) {
        if (entry.at("node").as_string() == node) {
            return entry;
        }
    }
    return nullptr;
}

/// Any HTTP request against the server; a body is sent as application/json.
inline core::Result<net::ClientResponse> http(
    const ServerProcess& server,
    std::string method,
    std::string_view path,
    std::string body = {},
    std::vector<net::Header> headers = {},
    std::chrono::milliseconds timeout = std::chrono::seconds{20}) {
    net::ClientRequest request;
    request.method = std::move(method);
    request.url = server.url(path);
    request.headers = std::move(headers);
    if (!body.empty()) {
        request.headers.push_back({"Content-Type", "application/json"});
    }
    request.body = std::move(body);
    request.timeout = timeout;
    request.tls = server.tls();
    return net::fetch_sync(std::move(request));
}

/// The body as JSON (null when it is not JSON).
inline boost::json::value json_of(const core::Result<net::ClientResponse>& response) {
    if (!response) {
        return nullptr;
    }
    std::error_code ec;
    auto parsed = boost::json::parse(response->body, ec);
    return ec ? boost::json::value(nullptr) : parsed;
}

/// The last non-empty line of an NDJSON body, parsed.
inline boost::json::value last_line(const std::string& body) {
    auto end = body.find_last_not_of('\n');
    if (end == std::string::npos) {
        return nullptr;
    }
    auto start = body.rfind('\n', end);
    std::error_code ec;
    auto parsed = boost::json::parse(body.substr(start == std::string::npos ? 0 : start + 1), ec);
    return ec ? boost::json::value(nullptr) : parsed;
}

/// A config with the demo fleet and sweeps settable small, for tests.
/// Now as Python's time.time() gives it: seconds since the epoch, with a fraction (Bitahoy's
/// entries carry their time so).
inline double now_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

inline std::string test_config(std::string_view extra_fleet = "",
                               std::string_view expiry_sweep = "50ms") {
    return fmt::format(R"(fleet:
  expiry_sweep: {}
{}  nodes:
    - {{name: lotus-0, driver: sim, image_tag: v1.0.0, labels: {{chain: lotus}}}}
    - {{name: lotus-1, driver: sim, image_tag: v1.0.0, labels: {{chain: lotus}}}}
    - {{name: lotus-2, driver: sim, image_tag: v1.0.0, labels: {{chain: lotus}}}}
server:
  shutdown_grace: 10s
  read_timeout: 5s
  idle_timeout: 5s
)",
                       expiry_sweep, extra_fleet);
}

/// A config for job tests: test_config() with fast wait heartbeats, sim nodes that make a block
/// every 50 ms, and test actions beside the built-in ones (a user config inherits those):
/// `say` echoes its msg param (an argv, never a shell), `say-other` does it in queue "other",
/// `count` prints five lines over half a second. `extra_actions` are more actions (indented
/// four spaces), `extra` more top-level YAML (auth:, ...), `jobs_extra` more keys of jobs:
/// (permissions:, indented two spaces).
inline std::string jobs_test_config(std::string_view extra_actions = "",
                                    std::string_view extra = "",
                                    std::string_view jobs_extra = "",
                                    std::int64_t snapshot_height = 1000) {
    return test_config("  wait_heartbeat: 100ms\n") + fmt::format(R"(drivers:
  sim: {{block_interval: 50ms, sync_blocks: 1, snapshot_height: {}}}
jobs:
{}  actions:
    say:
      description: Echo a message.
      params:
        msg: {{type: string}}
      steps:
        - run: [echo, "{{{{params.msg}}}}"]
    say-other:
      queue: other
      params:
        msg: {{type: string}}
      steps:
        - run: [echo, "{{{{params.msg}}}}"]
    count:
      steps:
        - run: [sh, -c, "for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done"]
{}{})",
                                                                  snapshot_height, jobs_extra,
                                                                  extra_actions, extra);
}

/// Calls `method` and returns the decoded reply, allowing `timeout` for an answer (Wait).
inline boost::json::object call_waiting(const ServerProcess& server,
                                        std::string_view method,
                                        std::string_view params_json,
                                        std::chrono::milliseconds timeout = std::chrono::seconds{
                                            60}) {
    auto response = http(server, "POST", "/", rpc_body(method, params_json), {}, timeout);
    EXPECT_TRUE(response) << (response ? "" : response.error().message);
    auto parsed = json_of(response);
    EXPECT_TRUE(parsed.is_object()) << (response ? response->body : "");
    return parsed.is_object() ? parsed.get_object() : boost::json::object{};
}

/// GET /api/v1/jobs/ID as JSON (null when it fails).
inline boost::json::value job_of(const ServerProcess& server, std::string_view id) {
    auto response = http(server, "GET", fmt::format("/api/v1/jobs/{}", id));
    if (!response || response->status != 200) {
        return nullptr;
    }
    return json_of(response);
}

/// Waits until job `id` is in a terminal state and returns it (null on timeout).
inline boost::json::value wait_for_job(const ServerProcess& server,
                                       std::string_view id,
                                       std::chrono::milliseconds deadline = std::chrono::seconds{
                                           60}) {
    boost::json::value job;
    bool done = wait_until(
        [&] {
            job = job_of(server, id);
            if (!job.is_object()) {
                return false;
            }
            auto state = str(job.at("state"));
            return state == "succeeded" || state == "failed" || state == "cancelled" ||
                   state == "timed_out";
        },
        deadline);
    return done ? job : boost::json::value(nullptr);
}

/// Runs the built-in `status` action on `node` and waits: the node's status as the sim driver
/// reports it ({installed, running, version, height, syncing}), or null. A node someone holds
/// takes jobs only for its holder: pass the holder as `owner` (it renews the lease).
inline boost::json::value node_status(const ServerProcess& server,
                                      std::string_view node,
                                      std::string_view owner = {}) {
    boost::json::object request{{"wait", true}};
    if (!owner.empty()) {
        request["owner"] = owner;
    }
    auto response = http(server, "POST", fmt::format("/api/v1/nodes/{}/actions/status", node),
                         boost::json::serialize(request), {}, std::chrono::seconds{60});
    auto body = json_of(response);
    if (!body.is_object() || !body.as_object().contains("job")) {
        ADD_FAILURE() << (response ? response->body : response.error().message);
        return nullptr;
    }
    const auto& job = body.at("job");
    EXPECT_EQ(job.at("state"), "succeeded") << boost::json::serialize(job);
    return job.at("result");
}

}  // namespace aviary::test
