// `aviary probe run` through the real binary: the Bacalhau canary's five scenarios, as shipped
// in the default config, against a real serve on the default config; a scenario that finds a
// wrong answer, one whose target is down, and bad input, each with its exit code.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

#include "cli_support.hpp"

namespace aviary::test {
namespace {

class ProbeRun : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(server_.start()) << server_.log(); }

    CliResult probe(const std::string& args) {
        return run_aviary(server_.url(""), "probe run " + args, scratch_.path());
    }

    std::string write(const std::string& name, const std::string& text) {
        auto path = scratch_.path() + "/" + name;
        std::ofstream{path} << text;
        return path;
    }

    TempDir scratch_;
    ServerProcess server_;  // the embedded default: lotus-0..2, the echo action, the five
};

TEST_F(ProbeRun, TheBacalhauFivePassAgainstServesOwnJobApi) {
    for (std::string name :
         {"list", "submit", "submitAndDescribe", "submitAndGet", "submitWithConcurrency"}) {
        auto result = probe(name);
        EXPECT_EQ(result.status, 0) << name << "\n" << result.out << result.err;
        EXPECT_NE(result.out.find("passed in"), std::string::npos) << name << "\n" << result.out;
    }
    // submitAndGet's job really ran and printed the text it then compared.
    auto jobs = server_.get("/api/v1/jobs?limit=50");
    ASSERT_TRUE(jobs);
    EXPECT_NE(jobs->body.find("\"action\":\"echo\""), std::string::npos) << jobs->body;
    EXPECT_NE(jobs->body.find("hello λ!"), std::string::npos) << jobs->body;
}

TEST_F(ProbeRun, JsonPrintsTheResultAsTheApiAnswersIt) {
    auto result = run_aviary(server_.url(""), "--json probe run list", scratch_.path());
    ASSERT_EQ(result.status, 0) << result.out << result.err;
    auto parsed = boost::json::parse(result.out);
    EXPECT_EQ(parsed.at("scenario"), "list");
    EXPECT_EQ(parsed.at("outcome"), "passed");
    ASSERT_EQ(parsed.at("steps").as_array().size(), 1U) << result.out;
    EXPECT_EQ(parsed.at("steps").at(0).at("name"), "list jobs");
}

TEST_F(ProbeRun, TheTokenIsSentAndNeverPrinted) {
    auto file = write("token.yaml", R"(probes:
  scenarios:
    telling:
      steps:
        - http: {url: "{{server}}/healthz", headers: {Authorization: "Bearer {{token}}"}}
          assert: ["body == {{token}}"]
)");
    auto result = probe("telling --config " + file + " --token tok-51d2e9");
    EXPECT_EQ(result.status, 1) << result.out << result.err;
    EXPECT_EQ(result.out.find("tok-51d2e9"), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("expected \"REDACTED\" but got \"ok \""), std::string::npos)
        << result.out;
}

TEST_F(ProbeRun, AWrongAnswerExitsOneAndSaysWhatWasSeen) {
    auto file = write("wrong.yaml", R"(probes:
  scenarios:
    wrongOutput:
      vars: {text: "hello λ!"}
      steps:
        - name: submit
          http:
            method: POST
            url: "{{server}}/api/v1/nodes/lotus-0/actions/echo"
            headers: {Content-Type: application/json}
            body: '{"params": {"text": "hello"}, "wait": true}'
          assert: ["status == 200", "json.job.state == succeeded"]
          capture: {job: json.job.id}
        - name: get output
          http: {url: "{{server}}/api/v1/jobs/{{job}}/output"}
          assert:
            - {that: "json.lines[*].text == {{text}}", message: output mismatch}
)");
    auto result = probe("wrongOutput --config " + file);
    EXPECT_EQ(result.status, 1) << result.out << result.err;
    EXPECT_NE(result.out.find("failed in"), std::string::npos) << result.out;
    EXPECT_NE(
        result.out.find("step \"get output\": output mismatch: expected \"hello λ!\" but got"),
        std::string::npos)
        << result.out;
}

TEST_F(ProbeRun, AnUnreachableTargetIsBrokenAndExitsOne) {
    auto file = write("down.yaml", R"(probes:
  scenarios:
    down:
      timeout: 5s
      steps:
        - tcp: "127.0.0.1:1"
)");
    auto result = probe("down --config " + file);
    EXPECT_EQ(result.status, 1) << result.out << result.err;
    EXPECT_NE(result.out.find("broken in"), std::string::npos) << result.out;
    EXPECT_NE(result.out.find("cannot connect to 127.0.0.1:1"), std::string::npos) << result.out;
}

TEST_F(ProbeRun, BadInputExitsTwoNamingWhatAndWhere) {
    auto unknown = probe("nosuch");
    EXPECT_EQ(unknown.status, 2);
    EXPECT_NE(unknown.err.find("no scenario \"nosuch\""), std::string::npos) << unknown.err;
    EXPECT_NE(unknown.err.find("submitAndGet"), std::string::npos) << unknown.err;

    auto file = write("bad.yaml", R"(probes:
  scenarios:
    bad:
      steps:
        - http: {url: "{{server}}/x", methd: GET}
          assert: ["status === 200"]
)");
    auto bad = probe("bad --config " + file);
    EXPECT_EQ(bad.status, 2);
    EXPECT_NE(bad.err.find("bad.yaml:5:39: probes.scenarios.bad.steps[0].http.methd: unknown key"),
              std::string::npos)
        << bad.err;
    EXPECT_NE(bad.err.find("bad.yaml:6:20:"), std::string::npos) << bad.err;
    EXPECT_NE(bad.err.find("\"===\" is not an operator"), std::string::npos) << bad.err;
    // The server was never involved, and is fine.
    EXPECT_TRUE(server_.get("/healthz"));
}

}  // namespace
}  // namespace aviary::test
