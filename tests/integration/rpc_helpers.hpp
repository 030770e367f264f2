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

}  // namespace aviary::test
