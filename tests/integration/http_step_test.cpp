// http steps through the real binary: an action read from the config file checks a sim node's
// status API, and calls a JSON-RPC endpoint served by this test; a bad http step stops serve.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>

#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

constexpr std::string_view kActions = R"(    sim-check:
      exclusive: false
      params:
        port: {type: integer}
        tag: {type: image_tag}
      steps:
        - http:
            url: "http://127.0.0.1:{{params.port}}/status"
            expect:
              - json_equals: {path: version, value: "{{params.tag}}"}
              - json_exists: height
            retries: 2
            retry_interval: 50ms
          timeout: 30s
    chain-head:
      exclusive: false
      params:
        port: {type: integer}
        token: {type: string}
      steps:
        - name: chain-head
          http:
            method: POST
            url: "http://127.0.0.1:{{params.port}}/rpc/v0"
            headers: {Authorization: "Bearer {{params.token}}", Content-Type: application/json}
            body: '{"jsonrpc": "2.0", "method": "Filecoin.ChainHead", "params": [], "id": "{{job.id}}"}'
            expect_status: [200]
            expect:
              - json_equals: {path: result.Height, value: 42}
              - json_equals: {path: "result.Cids[0]./", value: bafy2head}
            request_timeout: 5s
            retries: 5
            retry_interval: 50ms
          timeout: 1m
)";

/// What the JSON-RPC endpoint saw.
struct Seen {
    std::mutex mu;
    std::vector<net::Request> requests;
};

/// A Lotus-like JSON-RPC endpoint that is "starting" (503) for its first request.
struct LotusApi {
    std::shared_ptr<Seen> seen;

    net::asio::awaitable<net::Response> operator()(net::Request request) const {
        std::size_t n = 0;
        {
            std::lock_guard lock{seen->mu};
            seen->requests.push_back(request);
            n = seen->requests.size();
        }
        net::Response response;
        if (n == 1) {
            response.status = 503;
            response.body = "starting\n";
            co_return response;
        }
        response.content_type = "application/json";
        response.body =
            R"({"jsonrpc": "2.0", "id": 1, "result": {"Cids": [{"/": "bafy2head"}], "Height": 42}})";
        co_return response;
    }
};

class HttpSteps : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(server_.start()) << server_.log(); }

    /// Submits `action` on lotus-0 and waits for the job to finish.
    json::value run(std::string_view action, const json::object& params) {
        json::object request{{"params", params}};
        auto response =
            http(server_, "POST", fmt::format("/api/v1/nodes/lotus-0/actions/{}", action),
                 json::serialize(request));
        EXPECT_TRUE(response && response->status == 202) << (response ? response->body : "");
        auto body = json_of(response);
        if (!body.is_object() || !body.as_object().contains("job")) {
            return nullptr;
        }
        return wait_for_job(server_, str(body.at("job").at("id")));
    }

    /// The job's output lines written by aviary itself.
    std::string notes(const json::value& job) {
        auto response =
            http(server_, "GET", fmt::format("/api/v1/jobs/{}/output", str(job.at("id"))));
        auto out = json_of(response);
        std::string text;
        if (out.is_object()) {
            for (const auto& line : out.at("lines").as_array()) {
                if (line.at("stream") == "aviary") {
                    text += str(line.at("text")) + "\n";
                }
            }
        }
        return text;
    }

    /// The port lotus-0's status API listens on (the sim driver's port file), 0 until it runs.
    int sim_port() {
        std::ifstream in{fs::path{server_.data_dir()} / "nodes" / "sim" / "lotus-0" / "port"};
        int port = 0;
        in >> port;
        return port;
    }

    ServerProcess server_{jobs_test_config(kActions)};
};

TEST_F(HttpSteps, ChecksASimNodesStatusApi) {
    int port = 0;
    ASSERT_TRUE(wait_until([&] { return (port = sim_port()) > 0; })) << server_.log();
    auto job = run("sim-check", json::object{{"port", port}, {"tag", "v1.0.0"}});
    ASSERT_TRUE(job.is_object());
    ASSERT_EQ(job.at("state"), "succeeded") << json::serialize(job);
    EXPECT_EQ(job.at("result").at("status"), 200);
    EXPECT_EQ(job.at("result").at("body").at("version"), "v1.0.0");
    EXPECT_TRUE(job.at("result").at("body").at("height").is_int64());
    EXPECT_NE(notes(job).find(fmt::format("GET http://127.0.0.1:{}/status -> 200 (", port)),
              std::string::npos)
        << notes(job);

    auto wrong = run("sim-check", json::object{{"port", port}, {"tag", "v9"}});
    ASSERT_TRUE(wrong.is_object());
    EXPECT_EQ(wrong.at("state"), "failed");
    auto error = str(wrong.at("error"));
    EXPECT_NE(
        error.find(fmt::format("step 1 (http GET http://127.0.0.1:{{{{params.port}}}}/status) "
                               "failed: GET http://127.0.0.1:{}/status -> 200 (request 3 of "
                               "3): version: expected \"v9\", got \"v1.0.0\"",
                               port)),
        std::string::npos)
        << error;
}

TEST_F(HttpSteps, PostsAJsonRpcCallAndRetriesWhileTheApiStarts) {
    auto seen = std::make_shared<Seen>();
    net::ServerSettings settings;
    settings.listen = "127.0.0.1:0";
    net::HttpServer api{settings, LotusApi{seen}};
    auto bound = api.start();
    ASSERT_TRUE(bound) << bound.error().message;
    auto port = std::stoi(bound->substr(bound->rfind(':') + 1));

    auto job = run("chain-head", json::object{{"port", port}, {"token", "s3cret"}});
    ASSERT_TRUE(job.is_object());
    ASSERT_EQ(job.at("state"), "succeeded") << json::serialize(job);
    EXPECT_EQ(job.at("result").at("body").at("result").at("Height"), 42);
    auto lines = notes(job);
    auto url = fmt::format("http://127.0.0.1:{}/rpc/v0", port);
    EXPECT_NE(lines.find(fmt::format("POST {} -> 503 (", url)), std::string::npos) << lines;
    EXPECT_NE(lines.find("not as expected: expected status 200, got 503; body: starting\\n"),
              std::string::npos)
        << lines;
    EXPECT_NE(lines.find(fmt::format("POST {} -> 200 (", url)), std::string::npos) << lines;
    EXPECT_EQ(lines.find("s3cret"), std::string::npos) << lines;
    api.stop();

    std::lock_guard lock{seen->mu};
    ASSERT_EQ(seen->requests.size(), 2U);
    const auto& last = seen->requests.back();
    EXPECT_EQ(last.method, "POST");
    EXPECT_EQ(last.path, "/rpc/v0");
    EXPECT_EQ(last.header("Authorization").value_or(""), "Bearer s3cret");
    EXPECT_EQ(last.header("Content-Type").value_or(""), "application/json");
    auto body = json::parse(last.body);
    EXPECT_EQ(body.at("method"), "Filecoin.ChainHead");
    EXPECT_EQ(body.at("id"), job.at("id"));
}

TEST(HttpStepConfig, ABadHttpStepStopsServeNamingFileLineAndKey) {
    ServerProcess server{R"(jobs:
  actions:
    probe:
      steps:
        - http: {method: get, url: "http://127.0.0.1:1/"}
)"};
    EXPECT_FALSE(server.start());
    EXPECT_EQ(server.wait_exit(), 2);
    auto log = server.log();
    EXPECT_NE(log.find("aviary.yaml:5:26: jobs.actions.probe.steps[0].http.method: \"get\" is not "
                       "an HTTP method"),
              std::string::npos)
        << log;
}

}  // namespace
}  // namespace aviary::test
