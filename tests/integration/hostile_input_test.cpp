// Malformed and hostile input on the JSON-RPC and REST surfaces: a clear error every time, the
// server stays up, and nothing stored is lost or changed.
#include <gtest/gtest.h>

#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

class HostileInput : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(server_.start()) << server_.log();
        auto held = call(server_, "TweetyService.Acquire",
                         R"({"ReleaseName": "lotus-0", "Owner": "keep"})");
        ASSERT_TRUE(held.contains("result"));
        lease_id_ = str(held["result"].at("lease_id"));
    }
    void TearDown() override {
        // Whatever was thrown at it, the server answers and the lease is intact.
        auto health = server_.get("/healthz");
        ASSERT_TRUE(health);
        EXPECT_EQ(health->status, 200);
        auto lotus0 = status_of(server_, "lotus-0");
        EXPECT_EQ(lotus0.at("holder"), "keep");
        EXPECT_EQ(str(lotus0.at("lease_id")), lease_id_);
    }

    boost::json::object post(std::string body, int want_status = 200) {
        auto response = server_.post_json("/", std::move(body));
        EXPECT_TRUE(response);
        if (!response) {
            return {};
        }
        EXPECT_EQ(response->status, want_status) << response->body;
        std::error_code ec;
        auto parsed = boost::json::parse(response->body, ec);
        EXPECT_FALSE(ec) << response->body;
        return (!ec && parsed.is_object()) ? parsed.get_object() : boost::json::object{};
    }
    static int code_of(const boost::json::object& reply) {
        return reply.contains("error") ? int(reply.at("error").at("code").to_number<int>()) : 0;
    }
    static std::string message_of(const boost::json::object& reply) {
        return reply.contains("error") ? str(reply.at("error").at("message")) : "";
    }

    // One machine and worker ids, so the roller's routes have something to refuse around.
    ServerProcess server_{test_config(R"(  machines:
    - {name: t-host-1, hostname: t-host-1.test, address: 127.0.0.1}
  worker_ids:
    - {id: tc-worker-1, machine: t-host-1}
)")};
    std::string lease_id_;
};

TEST_F(HostileInput, MalformedJsonIsAParseError) {
    auto reply = post(R"({"jsonrpc":"2.0","method":)");
    EXPECT_EQ(code_of(reply), -32700);
    EXPECT_NE(message_of(reply).find("parse error"), std::string::npos);
    EXPECT_TRUE(reply.at("id").is_null());
}

TEST_F(HostileInput, InvalidUtf8IsAParseError) {
    auto reply = post(
        "{\"jsonrpc\":\"2.0\",\"method\":\"TweetyService.Status\",\"params\":[{\"ReleaseName\":"
        "\"\xff\xfe\"}],\"id\":1}");
    EXPECT_EQ(code_of(reply), -32700);
}

TEST_F(HostileInput, DeepNestingIsRefused) {
    std::string deep = R"({"jsonrpc":"2.0","method":"TweetyService.Status","params":)";
    deep += std::string(5000, '[') + std::string(5000, ']') + R"(,"id":1})";
    auto reply = post(deep);
    EXPECT_EQ(code_of(reply), -32700);
}

TEST_F(HostileInput, WrongTypesNameTheField) {
    auto reply = post(rpc_body("TweetyService.Acquire", R"({"ReleaseName": 7, "Owner": "x"})"));
    EXPECT_EQ(code_of(reply), -32602);
    EXPECT_NE(message_of(reply).find("ReleaseName must be a string"), std::string::npos);
    reply =
        post(rpc_body("TweetyService.Acquire", R"({"ReleaseName": "lotus-1", "Owner": ["x"]})"));
    EXPECT_EQ(code_of(reply), -32602);
    EXPECT_NE(message_of(reply).find("Owner must be a string"), std::string::npos);
    reply = post(rpc_body("TweetyService.Acquire",
                          R"({"ReleaseName": "lotus-1", "Owner": "x", "TTL": "soon"})"));
    EXPECT_EQ(code_of(reply), -32602);
    EXPECT_NE(message_of(reply).find("TTL"), std::string::npos);
}

TEST_F(HostileInput, MissingFieldsAreNamed) {
    auto reply = post(rpc_body("TweetyService.Acquire", R"({"Owner": "x"})"));
    EXPECT_EQ(code_of(reply), -32602);
    EXPECT_NE(message_of(reply).find("ReleaseName is required"), std::string::npos);
}

TEST_F(HostileInput, InvalidRequestsAreRefused) {
    EXPECT_EQ(code_of(post(R"("just a string")")), -32600);
    EXPECT_EQ(code_of(post(R"({"jsonrpc":"2.0","method":5,"id":1})")), -32600);
    EXPECT_EQ(code_of(post(R"({"jsonrpc":"1.5","method":"TweetyService.Status","id":1})")), -32600);
    EXPECT_EQ(code_of(post(R"({"jsonrpc":"2.0","method":"TweetyService.Status","id":{"a":1}})")),
              -32600);
    EXPECT_EQ(code_of(post("[]")), -32600);
    EXPECT_EQ(
        code_of(post(R"({"jsonrpc":"2.0","method":"TweetyService.Status","params":[1,2],"id":1})")),
        -32602);
    EXPECT_EQ(code_of(post(R"({"jsonrpc":"2.0","method":"TweetyService.Explode","id":1})")),
              -32601);
}

TEST_F(HostileInput, OversizedBodyIsRefusedWithItsLimit) {
    // The head announces 2 MiB and no body follows: the refusal must come from the head alone,
    // before any of it is read.
    auto reply = raw_exchange(server_.address(),
                              "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                              "application/json\r\nContent-Length: 2097152\r\n\r\n");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 413")) << reply;
    EXPECT_NE(reply.find("limit"), std::string::npos) << reply;
}

TEST_F(HostileInput, ForeignContentTypeIsRefused) {
    net::ClientRequest request;
    request.method = "POST";
    request.url = server_.url("/");
    request.headers.push_back({"Content-Type", "application/x-www-form-urlencoded"});
    request.body = rpc_body("TweetyService.Status", "{}");
    auto response = net::fetch_sync(std::move(request));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 415);
    EXPECT_NE(response->body.find("send application/json"), std::string::npos);
}

TEST_F(HostileInput, WrongMethodOnTheEndpointIsRefused) {
    auto response = server_.get("/");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 405);
}

TEST_F(HostileInput, UnknownMethodsAreRefusedAndShareOneMetricsSeries) {
    for (std::string method : {"BREW", "PROPFIND", "X-1", "X-2"}) {
        auto reply =
            raw_exchange(server_.address(), method +
                                                " /api/v1/nodes HTTP/1.1\r\nHost: localhost\r\n"
                                                "Connection: close\r\n\r\n");
        EXPECT_TRUE(reply.starts_with("HTTP/1.1 405")) << method << ": " << reply;
        EXPECT_NE(reply.find("Allow: GET, HEAD, OPTIONS"), std::string::npos) << reply;
    }
    auto metrics = server_.get("/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metrics->body.find("BREW"), std::string::npos);
    EXPECT_EQ(metrics->body.find("X-1"), std::string::npos);
    EXPECT_NE(metrics->body.find(R"(method="other")"), std::string::npos);
}

TEST_F(HostileInput, HugeBatchIsRefused) {
    std::string batch = "[";
    for (int i = 0; i < 500; ++i) {
        batch += fmt::format(R"({}{{"jsonrpc":"2.0","method":"TweetyService.Status","id":{}}})",
                             i == 0 ? "" : ",", i);
    }
    batch += "]";
    auto reply = post(batch);
    EXPECT_EQ(code_of(reply), -32600);
    EXPECT_NE(message_of(reply).find("exceeds the limit"), std::string::npos);
}

/// REST bodies: the same rules, with errors naming the field, and 415 for what a cross-site
/// form could send.
class HostileRest : public HostileInput {
protected:
    int status_of_request(const std::string& method,
                          const std::string& path,
                          std::string body,
                          std::vector<net::Header> headers,
                          std::string* response_body = nullptr) {
        net::ClientRequest request;
        request.method = method;
        request.url = server_.url(path);
        request.headers = std::move(headers);
        request.body = std::move(body);
        auto response = net::fetch_sync(std::move(request));
        EXPECT_TRUE(response) << (response ? "" : response.error().message);
        if (!response) {
            return -1;
        }
        if (response_body != nullptr) {
            *response_body = response->body;
        }
        return response->status;
    }
    static std::vector<net::Header> typed(std::string type) {
        return {{"Content-Type", std::move(type)}};
    }
};

TEST_F(HostileRest, CrossSiteFormTypesAreRefusedWith415) {
    const std::string lease = R"({"node": "lotus-1", "owner": "mallory"})";
    std::string body;
    EXPECT_EQ(status_of_request("POST", "/api/v1/leases", lease, typed("text/plain"), &body), 415);
    EXPECT_NE(body.find("send application/json"), std::string::npos) << body;
    EXPECT_EQ(status_of_request("POST", "/api/v1/leases", "node=lotus-1",
                                typed("application/x-www-form-urlencoded")),
              415);
    EXPECT_EQ(status_of_request("POST", "/api/v1/leases", lease,
                                typed("multipart/form-data; boundary=x")),
              415);
    // A JSON body without any Content-Type is not JSON either.
    EXPECT_EQ(status_of_request("POST", "/api/v1/leases", lease, {}), 415);
    // A route that takes no body refuses one sent as a form.
    EXPECT_EQ(
        status_of_request("DELETE", "/api/v1/leases/" + lease_id_, "x=1", typed("text/plain")),
        415);
    EXPECT_EQ(status_of_request("POST", "/api/v1/nodes/lotus-1/actions/status", "{}",
                                typed("text/plain;charset=UTF-8")),
              415);
    // With the right type the same body works: the refusals were about the type only.
    EXPECT_EQ(status_of_request("POST", "/api/v1/leases", lease,
                                typed("application/json; charset=UTF-8")),
              201);
}

TEST_F(HostileRest, MalformedBodiesNameWhatIsWrong) {
    auto json = typed("application/json");
    std::string body;
    EXPECT_EQ(status_of_request("POST", "/api/v1/leases", "{oops", json, &body), 400);
    EXPECT_NE(body.find("invalid_argument"), std::string::npos) << body;
    EXPECT_EQ(
        status_of_request("POST", "/api/v1/leases", R"({"node": 5, "owner": "a"})", json, &body),
        400);
    EXPECT_NE(body.find("node"), std::string::npos) << body;
    EXPECT_EQ(status_of_request("POST", "/api/v1/leases", R"({"nodes": "lotus-1"})", json, &body),
              400);
    EXPECT_NE(body.find("nodes"), std::string::npos) << body;
    EXPECT_EQ(status_of_request("POST", "/api/v1/leases", std::string(100000, '['), json), 400);
    EXPECT_EQ(status_of_request("POST", "/api/v1/leases", "\"just a string\"", json), 400);
    EXPECT_EQ(status_of_request("POST", "/api/v1/nodes/lotus-1/actions/status",
                                R"({"params": {"x": {"nested": [1]}}})", json, &body),
              400);
    EXPECT_EQ(status_of_request("PUT", "/api/v1/nodes/lotus-1/maintenance", "{}", json, &body),
              400);
    EXPECT_NE(body.find("reason"), std::string::npos) << body;
    // A node name that is no name (percent-decoded into the path) is refused, not looked up.
    EXPECT_EQ(status_of_request("POST", "/api/v1/nodes/lotus-0%3Btouch%20x/actions/status", "{}",
                                json, &body),
              400);
    EXPECT_NE(body.find("DNS-1123"), std::string::npos) << body;
}

TEST_F(HostileRest, OversizedRestBodyIsRefusedFromItsHead) {
    auto reply = raw_exchange(server_.address(),
                              "PUT /api/v1/nodes/geth-9 HTTP/1.1\r\nHost: localhost\r\n"
                              "Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 413")) << reply;
}

TEST_F(HostileRest, UnknownPathsAnd405sNameTheRoute) {
    std::string body;
    EXPECT_EQ(status_of_request("GET", "/api/v1/nope", "", {}, &body), 404);
    EXPECT_NE(body.find("no route for GET /api/v1/nope"), std::string::npos) << body;
    EXPECT_EQ(
        status_of_request("PATCH", "/api/v1/nodes/lotus-1", "{}", typed("application/json"), &body),
        405);
    EXPECT_NE(body.find("GET, HEAD, PUT, DELETE"), std::string::npos) << body;
}

TEST_F(HostileRest, TheRollersQueryIsCheckedAndNothingIsQueuedFromJunk) {
    std::string body;
    const std::string long_value(5000, 'a');
    // Shell and path tricks, NUL, a very long value: each a 400 keyed by the field.
    for (const std::string& query : std::vector<std::string>{
             "tc_worker_id=tc-worker-1&task_name=ping%3Brm%20-rf%20%2F",
             "tc_worker_id=tc-worker-1&task_name=..%2F..%2Fetc",
             "tc_worker_id=tc-worker-1%00&task_name=ping",
             "tc_worker_id=-oProxyCommand%3Dx&task_name=ping",
             "tc_worker_id=" + long_value + "&task_name=ping",
             "tc_worker_id=tc-worker-1&task_name=" + long_value,
             "tc_worker_id=tc-worker-1&tc_worker_id=tc-worker-2&task_name=ping",
             "tc_worker_id&task_name", "=&=&&&"}) {
        EXPECT_EQ(status_of_request("POST", "/api/v1/jobs?" + query, "", {}, &body), 400)
            << query << " -> " << body;
        std::error_code ec;
        auto parsed = boost::json::parse(body, ec);
        ASSERT_FALSE(ec) << body;
        EXPECT_TRUE(parsed.as_object().contains("tc_worker_id") ||
                    parsed.as_object().contains("task_name"))
            << query << " -> " << body;
        EXPECT_LT(body.size(), 1024u) << "a refusal does not echo a long value whole";
    }
    // A body past the server's limit is refused from its head even where bodies are ignored.
    auto reply = raw_exchange(server_.address(),
                              "POST /api/v1/jobs?tc_worker_id=tc-worker-1&task_name=ping HTTP/1.1"
                              "\r\nHost: localhost\r\nContent-Length: 2097152\r\n\r\n");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 413")) << reply;
    // Nothing of the above became a job.
    auto jobs = boost::json::parse(server_.get("/api/v1/jobs")->body);
    EXPECT_TRUE(jobs.at("jobs").as_array().empty()) << jobs;
}

TEST_F(HostileRest, OddOriginsGetNoCorsAnswer) {
    for (const std::string& origin : std::vector<std::string>{
             "null", "http://127.0.0.1:9/path", "file://", "http://user@127.0.0.1:9",
             "javascript:alert(1)", std::string(10000, 'x'), "http://evil.example"}) {
        net::ClientRequest request;
        request.method = "OPTIONS";
        request.url = server_.url("/api/v1/jobs");
        request.headers = {{"Origin", origin}, {"Access-Control-Request-Method", "POST"}};
        auto response = net::fetch_sync(std::move(request));
        ASSERT_TRUE(response) << origin.substr(0, 40);
        EXPECT_EQ(response->status, 204) << origin.substr(0, 40);
        for (const auto& header : response->headers) {
            EXPECT_NE(header.name, "Access-Control-Allow-Origin") << origin.substr(0, 40);
        }
    }
}

TEST_F(HostileRest, HostileMachineBodiesAreRefusedNamingTheField) {
    auto json = typed("application/json");
    std::string body;
    for (const auto& [field, value] : std::vector<std::pair<std::string, std::string>>{
             {"address", R"("-oProxyCommand=touch /tmp/x")"},
             {"hostname", R"("a b")"},
             {"ssh_user", R"("-l root")"},
             {"ipmi_user", R"("admin\nX")"},
             {"ssh_port", "70000"},
             {"pdu_outlet", "-1"},
             {"groups", R"(["ok", "with space"])"}}) {
        auto machine =
            fmt::format(R"({{"hostname": "h1.test", {}: {}}})",
                        field == "hostname" ? std::string{"\"note\""} : "\"" + field + "\"", value);
        if (field == "hostname") {
            machine = fmt::format(R"({{"hostname": {}}})", value);
        }
        EXPECT_EQ(status_of_request("PUT", "/api/v1/machines/t-new-1", machine, json, &body), 400)
            << machine << " -> " << body;
        EXPECT_NE(body.find(field), std::string::npos) << machine << " -> " << body;
    }
    EXPECT_EQ(status_of_request("GET", "/api/v1/machines/t-new-1", "", {}, &body), 404) << body;
}

}  // namespace
}  // namespace aviary::test
