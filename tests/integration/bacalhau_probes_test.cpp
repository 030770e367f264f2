// examples/probes/bacalhau.yaml through `aviary probe run`, against a fake Bacalhau orchestrator
// this test serves on loopback. The fake implements the documented contract of the routes the
// five scenarios call (PUT /api/v1/orchestrator/jobs, GET .../jobs, .../jobs/{id} with
// include=executions,history, .../jobs/{id}/executions) and records what it got; a job is
// Running on its first read and Completed after, and its execution's stdout is what its
// Entrypoint echoes, as docker's echo prints it.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cli_support.hpp"
#include "net/net.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;

class FakeBacalhau {
public:
    net::asio::awaitable<net::Response> operator()(net::Request request) {
        std::lock_guard lock{mu_};
        seen_.push_back(request.method + " " + request.target);
        constexpr std::string_view kJobs = "/api/v1/orchestrator/jobs";
        if (request.path == kJobs && request.method == "PUT") {
            co_return put(request);
        }
        if (request.path == kJobs && request.method == "GET") {
            json::array items;
            for (const auto& [id, job] : jobs_) {
                items.push_back(job_json(id, job));
            }
            co_return reply(200, json::object{{"Items", std::move(items)}, {"NextToken", ""}});
        }
        if (request.path.starts_with(std::string{kJobs} + "/") && request.method == "GET") {
            auto rest = request.path.substr(kJobs.size() + 1);
            auto slash = rest.find('/');
            auto id = rest.substr(0, slash);
            auto found = jobs_.find(id);
            if (found == jobs_.end()) {
                co_return reply(404, json::object{{"error", "job not found: " + id}});
            }
            if (slash == std::string::npos) {
                json::object out{{"Job", job_json(id, found->second)}};
                ++found->second.reads;
                auto include = request.param("include").value_or("");
                if (include.find("executions") != std::string::npos) {
                    out["Executions"] = json::object{{"Items", executions(id, found->second)}};
                }
                if (include.find("history") != std::string::npos) {
                    out["History"] = json::object{
                        {"Items", json::array{json::object{{"Type", "JobLevel"}, {"JobID", id}}}}};
                }
                co_return reply(200, out);
            }
            if (rest.substr(slash) == "/executions") {
                co_return reply(200, json::object{{"Items", executions(id, found->second)}});
            }
        }
        co_return reply(404, json::object{{"error", "no route " + request.path}});
    }

    std::vector<std::string> seen() {
        std::lock_guard lock{mu_};
        return seen_;
    }

private:
    struct Job {
        std::string name;
        std::string stdout_text;
        int reads = 0;  // Running until it has been read once
    };

    static net::Response reply(int status, const json::object& body) {
        net::Response r;
        r.status = status;
        r.content_type = "application/json";
        r.body = json::serialize(body);
        return r;
    }

    net::Response put(const net::Request& request) {
        json::error_code ec;
        auto body = json::parse(request.body, ec);
        const json::value* entrypoint = nullptr;
        if (!ec && body.is_object()) {
            if (const auto* job = body.as_object().if_contains("Job"); job && job->is_object()) {
                const auto* tasks = job->as_object().if_contains("Tasks");
                if (tasks && tasks->is_array() && !tasks->as_array().empty()) {
                    const auto& task = tasks->as_array()[0];
                    entrypoint =
                        task.at("Engine").at("Params").as_object().if_contains("Entrypoint");
                }
            }
        }
        if (entrypoint == nullptr || !entrypoint->is_array()) {
            return reply(400, json::object{{"error", "a job needs Tasks[0].Engine.Params"}});
        }
        std::string out;
        const auto& argv = entrypoint->as_array();
        for (std::size_t i = 1; i < argv.size(); ++i) {
            out += (i > 1 ? " " : "") + std::string{argv[i].as_string()};
        }
        auto id = "j-" + std::to_string(jobs_.size() + 1);
        jobs_[id] = Job{.name = std::string{body.at("Job").at("Name").as_string()},
                        .stdout_text = out + "\n"};
        return reply(
            200,
            json::object{{"JobID", id}, {"EvaluationID", "e-" + id}, {"Warnings", json::array{}}});
    }

    static json::object job_json(const std::string& id, const Job& job) {
        return json::object{
            {"ID", id},
            {"Name", job.name},
            {"Type", "batch"},
            {"State", json::object{{"StateType", job.reads == 0 ? "Running" : "Completed"}}}};
    }

    static json::array executions(const std::string& id, const Job& job) {
        return json::array{json::object{
            {"ID", "x-" + id},
            {"JobID", id},
            {"ComputeState", json::object{{"StateType", "Completed"}}},
            {"RunOutput", json::object{{"Stdout", job.stdout_text}, {"ExitCode", 0}}}}};
    }

    std::mutex mu_;
    std::map<std::string, Job> jobs_;
    std::vector<std::string> seen_;
};

/// The fake on a loopback port of its own, for the length of a test.
class BacalhauProbes : public ::testing::Test {
protected:
    void SetUp() override {
        settings_.listen = "127.0.0.1:0";
        api_ = std::make_unique<net::HttpServer>(
            settings_, [fake = fake_](net::Request r) { return (*fake)(std::move(r)); });
        auto bound = api_->start();
        ASSERT_TRUE(bound) << bound.error().message;
        url_ = "http://" + *bound;
    }
    void TearDown() override { api_->stop(); }

    std::shared_ptr<FakeBacalhau> fake_ = std::make_shared<FakeBacalhau>();
    net::ServerSettings settings_;
    std::unique_ptr<net::HttpServer> api_;
    std::string url_;
    TempDir scratch_;
};

TEST_F(BacalhauProbes, TheFiveRunAgainstBacalhausOrchestratorApi) {
    const std::string file = std::string{AVIARY_SOURCE_DIR} + "/examples/probes/bacalhau.yaml";
    for (std::string name :
         {"list", "submit", "submitAndDescribe", "submitAndGet", "submitWithConcurrency"}) {
        auto result = run_aviary(url_, "probe run " + name + " --config " + file, scratch_.path());
        EXPECT_EQ(result.status, 0) << name << "\n" << result.out << result.err;
    }
    auto seen = fake_->seen();
    auto count = [&](std::string_view prefix) {
        return std::count_if(seen.begin(), seen.end(),
                             [&](const std::string& s) { return s.starts_with(prefix); });
    };
    EXPECT_EQ(count("PUT /api/v1/orchestrator/jobs"), 6);  // 1 + 1 + 1 + 3
    EXPECT_EQ(count("GET /api/v1/orchestrator/jobs?limit=10"), 1);
    EXPECT_GE(count("GET /api/v1/orchestrator/jobs/j-"), 12);  // polls, describes, executions
}

TEST_F(BacalhauProbes, AWrongOutputFailsWithWhatTheJobPrinted) {
    // The example's scenario with another text expected than the one the job echoes.
    auto text = read_file(std::string{AVIARY_SOURCE_DIR} + "/examples/probes/bacalhau.yaml");
    auto at = text.find("vars: {text: \"hello λ!\"}");
    ASSERT_NE(at, std::string::npos);
    text.replace(at, std::string{"vars: {text: \"hello λ!\"}"}.size(), "vars: {text: \"goodbye\"}");
    auto entry = text.find("[\"echo\", \"{{text}}\"]");
    ASSERT_NE(entry, std::string::npos);
    text.replace(entry, std::string{"[\"echo\", \"{{text}}\"]"}.size(), "[\"echo\", \"hello\"]");
    const auto file = scratch_.path() + "/bacalhau.yaml";
    std::ofstream{file} << text;
    auto result = run_aviary(url_, "probe run submitAndGet --config " + file, scratch_.path());
    EXPECT_EQ(result.status, 1) << result.out << result.err;
    EXPECT_NE(result.out.find(
                  "output mismatch: expected one of the values to match /^goodbye\\n?$/ but got "
                  "[\"hello\\n\"]"),
              std::string::npos)
        << result.out;
}

}  // namespace
}  // namespace aviary::test
