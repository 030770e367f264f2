// Grafana annotations through the real binary: `aviary serve` with notify.grafana pointing at a
// fake Grafana on loopback. Jobs of the annotated actions post an annotation when they start and
// patch it into a region when they end; a Grafana that is down (even across a kill -9 of serve)
// gets each annotation exactly once when it is back; other actions are never annotated.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "rpc_helpers.hpp"
#include "support/fake_grafana.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::string_view kToken = "glsa_integration_token";

/// The value of one series in a /metrics exposition, or -1 when it is not there.
double metric(const ServerProcess& server, std::string_view series) {
    auto response = server.get("/metrics");
    if (!response || response->status != 200) {
        return -1;
    }
    std::istringstream lines{response->body};
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind(series, 0) == 0 && line.size() > series.size() &&
            line[series.size()] == ' ') {
            return std::stod(line.substr(series.size() + 1));
        }
    }
    return -1;
}

/// Two test actions beside the built-ins: `break` fails; `gated` runs until its gate file
/// exists (so a test knows the job is still running).
constexpr std::string_view kActions = R"(    break:
      steps:
        - run: [sh, -c, "echo broken; exit 3"]
    gated:
      params:
        gate: {type: string}
      steps:
        - run: [sh, -c, "while [ ! -e \"$GATE\" ]; do sleep 0.02; done"]
          env: {GATE: "{{params.gate}}"}
)";

/// notify: pointing at `url`, token from `token_source` ("token_file: x" or "token_env: X").
std::string grafana_config(const std::string& url,
                           std::string_view token_source,
                           std::string_view poll = "50ms") {
    auto notify = fmt::format(R"(notify:
  grafana:
    url: {}
    {}
    actions: [upgrade, create-canary, break, gated]
    tags: [env:test]
    timeout: 2s
    retry_backoff: 50ms
    retry_backoff_max: 200ms
    poll: {}
)",
                              url, token_source, poll);
    return jobs_test_config(kActions, notify);
}

class GrafanaAnnotations : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(grafana_.start());
        std::ofstream{fs::path{dir_.path()} / "grafana.token"} << kToken << "\n";
    }

    std::unique_ptr<ServerProcess> serve(std::string_view token_source =
                                             "token_file: "
                                             "grafana.token",
                                         std::string_view poll = "50ms") {
        auto server = std::make_unique<ServerProcess>(
            grafana_config(grafana_.url(), token_source, poll), dir_.path());
        EXPECT_TRUE(server->start()) << server->log();
        return server;
    }

    /// Runs tweety's Upgrade of lotus-0 with Wait; returns the job id.
    std::string upgrade(const ServerProcess& server, std::string_view tag = "v1.2.3") {
        auto reply = call_waiting(
            server, "TweetyService.Upgrade",
            fmt::format(
                R"({{"ReleaseName": "lotus-0", "ImageTag": "{}", "Owner": "anton", "Wait": true}})",
                tag));
        EXPECT_TRUE(reply.contains("result")) << json::serialize(reply);
        if (!reply.contains("result")) {
            return {};
        }
        const auto& result = reply.at("result");
        EXPECT_EQ(result.at("State"), "succeeded") << json::serialize(result);
        return str(result.at("JobID"));
    }

    /// Runs `action` on lotus-0 through REST; returns the job (waited for when `wait`).
    json::value run_action(const ServerProcess& server,
                           std::string_view action,
                           json::object params = {},
                           bool wait = true) {
        json::object body{{"wait", wait}, {"params", std::move(params)}};
        auto response =
            http(server, "POST", fmt::format("/api/v1/nodes/lotus-0/actions/{}", action),
                 json::serialize(body), {}, 60s);
        auto parsed = json_of(response);
        EXPECT_TRUE(parsed.is_object() && parsed.as_object().contains("job"))
            << (response ? response->body : response.error().message);
        return parsed.is_object() && parsed.as_object().contains("job") ? parsed.at("job")
                                                                        : json::value{};
    }

    /// POST requests whose body carries `tag`.
    std::size_t posts_tagged(std::string_view tag) {
        std::size_t n = 0;
        for (const auto& post : grafana_.requests("POST", "/api/annotations")) {
            auto body = post.json();
            if (body.is_object() && FakeGrafana::has_tag(body.as_object(), tag)) {
                ++n;
            }
        }
        return n;
    }

    /// Waits until Grafana holds the ended annotation of `job` and serve's outbox is empty.
    bool delivered(const ServerProcess& server, const std::string& job, std::string_view outcome) {
        return wait_until(
            [&] {
                auto held = grafana_.tagged("job:" + job);
                return held.size() == 1 &&
                       FakeGrafana::has_tag(held[0], fmt::format("outcome:{}", outcome)) &&
                       metric(server, "aviary_annotation_backlog") == 0;
            },
            30s);
    }

    FakeGrafana grafana_{std::string{kToken}};
    TempDir dir_;
};

TEST_F(GrafanaAnnotations, TweetyUpgradeIsAnnotatedOnceWithItsTagsAndOutcome) {
    auto server = serve();
    auto job = upgrade(*server);
    ASSERT_FALSE(job.empty());
    ASSERT_TRUE(delivered(*server, job, "succeeded")) << server->log();

    auto held = grafana_.tagged("job:" + job).at(0);
    EXPECT_EQ(held.at("tags"),
              json::value(json::array{"deploy", "node:lotus-0", "image:v1.2.3", "action:upgrade",
                                      "job:" + job, "env:test", "outcome:succeeded"}));
    auto text = str(held.at("text"));
    EXPECT_EQ(
        text.rfind(fmt::format("upgrade lotus-0 to v1.2.3 (job {}, by anton) — succeeded in ", job),
                   0),
        0u)
        << text;
    ASSERT_TRUE(held.at("time").is_int64());
    ASSERT_TRUE(held.at("timeEnd").is_int64());
    EXPECT_LE(held.at("time").as_int64(), held.at("timeEnd").as_int64());
    EXPECT_EQ(posts_tagged("job:" + job), 1u);
    for (const auto& request : grafana_.requests()) {
        EXPECT_EQ(request.authorization, fmt::format("Bearer {}", kToken));
    }
    EXPECT_EQ(server->log().find(kToken), std::string::npos) << "the token is never logged";
    EXPECT_GE(metric(*server, R"(aviary_annotations_sent_total{kind="post"})"), 1);
}

TEST_F(GrafanaAnnotations, ARunningJobIsPostedThenPatchedIntoARegion) {
    auto server = serve();
    auto gate = fs::path{dir_.path()} / "gate";
    auto job = run_action(*server, "gated", {{"gate", gate.string()}}, false);
    ASSERT_TRUE(job.is_object());
    auto id = str(job.at("id"));
    ASSERT_TRUE(wait_until([&] { return posts_tagged("job:" + id) == 1; }, 30s)) << server->log();
    auto post = grafana_.requests("POST", "/api/annotations").back().json();
    EXPECT_TRUE(post.as_object().contains("time"));
    EXPECT_FALSE(post.as_object().contains("timeEnd")) << "the job is still running";
    EXPECT_FALSE(FakeGrafana::has_tag(post.as_object(), "outcome:succeeded"));

    std::ofstream{gate} << "go\n";
    ASSERT_TRUE(delivered(*server, id, "succeeded")) << server->log();
    auto patches = grafana_.requests("PATCH");
    ASSERT_EQ(patches.size(), 1u);
    auto patch = patches[0].json();
    EXPECT_TRUE(patch.at("timeEnd").is_int64());
    EXPECT_TRUE(FakeGrafana::has_tag(patch.as_object(), "outcome:succeeded"));
    EXPECT_EQ(patches[0].path, fmt::format("/api/annotations/{}",
                                           grafana_.tagged("job:" + id).at(0).at("id").as_int64()));
    EXPECT_EQ(posts_tagged("job:" + id), 1u);
}

TEST_F(GrafanaAnnotations, AJobsStartAndEndWakeTheSenderWithoutWaitingForItsPoll) {
    // An hour between looks: only the engine's wake-ups can bring these requests in time.
    auto server = serve("token_file: grafana.token", "1h");
    auto gate = fs::path{dir_.path()} / "gate";
    auto job = run_action(*server, "gated", {{"gate", gate.string()}}, false);
    ASSERT_TRUE(job.is_object());
    auto id = str(job.at("id"));
    ASSERT_TRUE(wait_until([&] { return posts_tagged("job:" + id) == 1; }, 20s)) << server->log();
    std::ofstream{gate} << "go\n";
    ASSERT_TRUE(wait_until([&] { return grafana_.requests("PATCH").size() == 1; }, 20s))
        << server->log();
}

TEST_F(GrafanaAnnotations, TheTokenMayComeFromTheEnvironment) {
    ::setenv("AVIARY_TEST_GRAFANA_TOKEN", std::string{kToken}.c_str(), 1);
    auto server = serve("token_env: AVIARY_TEST_GRAFANA_TOKEN");
    ::unsetenv("AVIARY_TEST_GRAFANA_TOKEN");
    auto job = upgrade(*server, "v2.0.0");
    ASSERT_TRUE(delivered(*server, job, "succeeded")) << server->log();
    EXPECT_TRUE(FakeGrafana::has_tag(grafana_.tagged("job:" + job).at(0), "image:v2.0.0"));
}

TEST_F(GrafanaAnnotations, AFailingJobEndsWithOutcomeFailed) {
    auto server = serve();
    auto job = run_action(*server, "break");
    ASSERT_TRUE(job.is_object());
    EXPECT_EQ(job.at("state"), "failed");
    auto id = str(job.at("id"));
    ASSERT_TRUE(delivered(*server, id, "failed")) << server->log();
    auto held = grafana_.tagged("job:" + id).at(0);
    EXPECT_NE(str(held.at("text")).find(" — failed: "), std::string::npos) << held;
    EXPECT_FALSE(FakeGrafana::has_tag(held, "image:")) << "no tag param, no image tag";
}

TEST_F(GrafanaAnnotations, ActionsNotListedAreNeverAnnotated) {
    auto server = serve();
    auto noop = run_action(*server, "noop");
    ASSERT_TRUE(noop.is_object());
    EXPECT_EQ(noop.at("state"), "succeeded");
    auto job = upgrade(*server);
    ASSERT_TRUE(delivered(*server, job, "succeeded")) << server->log();
    EXPECT_TRUE(grafana_.tagged("job:" + str(noop.at("id"))).empty());
    EXPECT_TRUE(grafana_.tagged("action:noop").empty());
    EXPECT_EQ(grafana_.annotations().size(), 1u);
}

TEST_F(GrafanaAnnotations, AGrafanaDownDuringTheJobAndAfterGetsItOnceWhenBack) {
    grafana_.stop();
    auto server = serve();
    auto job = upgrade(*server);
    ASSERT_FALSE(job.empty());
    ASSERT_TRUE(
        wait_until([&] { return metric(*server, "aviary_annotation_failures_total") >= 3; }, 30s))
        << server->log();
    EXPECT_EQ(metric(*server, "aviary_annotation_backlog"), 1);

    ASSERT_TRUE(grafana_.start());
    ASSERT_TRUE(delivered(*server, job, "succeeded")) << server->log();
    EXPECT_EQ(posts_tagged("job:" + job), 1u);
    EXPECT_EQ(grafana_.annotations().size(), 1u);
}

TEST_F(GrafanaAnnotations, AKillNineWhileGrafanaIsDownLosesNothingAndDuplicatesNothing) {
    grafana_.stop();
    std::string job;
    {
        auto first = serve();
        job = upgrade(*first);
        ASSERT_FALSE(job.empty());
        ASSERT_TRUE(wait_until([&] {
            return metric(*first, "aviary_annotation_failures_total") >= 1;
        })) << first->log();
        first->kill9();
    }
    auto second = serve();
    ASSERT_TRUE(grafana_.start());
    ASSERT_TRUE(delivered(*second, job, "succeeded")) << second->log();
    EXPECT_EQ(posts_tagged("job:" + job), 1u);
    EXPECT_EQ(grafana_.annotations().size(), 1u);
}

}  // namespace
}  // namespace aviary::test
