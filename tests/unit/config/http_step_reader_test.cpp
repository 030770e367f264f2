// http steps of `jobs.actions`, read through config::load_string as serve reads them.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "config_support.hpp"

namespace aviary::config {
namespace {

using namespace std::chrono_literals;

using test::error_of;

/// The steps of action "a" in a config that must load.
std::vector<jobs::StepSpec> steps_of(std::string_view yaml) {
    auto loaded = load_string(yaml, "t.yaml");
    EXPECT_TRUE(loaded) << loaded.error().message;
    if (loaded) {
        for (const auto& action : loaded->jobs.actions) {
            if (action.name == "a") {
                return action.steps;
            }
        }
    }
    ADD_FAILURE() << "no action a";
    return {};
}

/// An action "a" with params host and token, whose steps are `steps` (indented 8).
std::string action_with(std::string_view steps) {
    return std::string{
               "jobs:\n  actions:\n    a:\n      params:\n        host: {type: dns_label}\n"
               "        token: {required: false}\n      steps:\n"} +
           std::string{steps};
}

TEST(HttpStepReader, ReadsEveryKey) {
    auto steps = steps_of(action_with(R"(
        - http:
            method: POST
            url: "http://{{params.host}}:1234/rpc/v0"
            headers: {Authorization: "Bearer {{params.token}}", Content-Type: application/json}
            body: '{"jsonrpc": "2.0", "method": "Filecoin.ChainHead", "params": [], "id": 1}'
            expect_status: [200, 204]
            expect:
              - json_equals: {path: result.syncing, value: false}
              - json_equals: {path: "result.Height", value: 5}
              - json_equals: {path: result.none, value: null}
              - json_equals: {path: result.empty, value:}
              - json_equals: {path: result.name, value: "lotus"}
              - json_equals: {value: "ok"}
              - json_exists: result.Cids[0]
              - text_contains: "jsonrpc"
            request_timeout: 3s
            retries: 5
            retry_interval: 500ms
          name: chain-head
          timeout: 1m
)"));
    ASSERT_EQ(steps.size(), 1U);
    const auto& step = steps[0];
    EXPECT_EQ(step.kind, jobs::StepKind::kHttp);
    EXPECT_EQ(step.name, "chain-head");
    EXPECT_EQ(step.timeout, 1min);
    const auto& http = step.http;
    EXPECT_EQ(http.method, "POST");
    EXPECT_EQ(http.url, "http://{{params.host}}:1234/rpc/v0");
    EXPECT_EQ(http.headers, (std::vector<std::pair<std::string, std::string>>{
                                {"Authorization", "Bearer {{params.token}}"},
                                {"Content-Type", "application/json"}}));
    EXPECT_EQ(http.body,
              R"({"jsonrpc": "2.0", "method": "Filecoin.ChainHead", "params": [], "id": 1})");
    EXPECT_EQ(http.expect_status, (std::vector<int>{200, 204}));
    ASSERT_EQ(http.checks.size(), 8U);
    auto check = [&](std::size_t i, jobs::HttpCheckKind kind, std::string path, std::string value) {
        SCOPED_TRACE(i);
        EXPECT_EQ(jobs::to_string(http.checks[i].kind), jobs::to_string(kind));
        EXPECT_EQ(http.checks[i].path, path);
        EXPECT_EQ(http.checks[i].value, value);
    };
    check(0, jobs::HttpCheckKind::kJsonEquals, "result.syncing", "false");
    check(1, jobs::HttpCheckKind::kJsonEquals, "result.Height", "5");
    check(2, jobs::HttpCheckKind::kJsonEquals, "result.none", "null");
    check(3, jobs::HttpCheckKind::kJsonEquals, "result.empty", "null");
    check(4, jobs::HttpCheckKind::kJsonEquals, "result.name", "lotus");
    check(5, jobs::HttpCheckKind::kJsonEquals, "", "ok");
    check(6, jobs::HttpCheckKind::kJsonExists, "result.Cids[0]", "");
    check(7, jobs::HttpCheckKind::kTextContains, "", "jsonrpc");
    EXPECT_EQ(http.request_timeout, 3s);
    EXPECT_EQ(http.retries, 5);
    EXPECT_EQ(http.retry_interval, 500ms);
}

TEST(HttpStepReader, AUrlAloneIsAGetExpectingAny2xx) {
    auto steps =
        steps_of(action_with("        - http: \"http://{{params.host}}:8080/status\"\n"
                             "        - http: {url: \"http://127.0.0.1/x\", "
                             "expect_status: 404}\n"));
    ASSERT_EQ(steps.size(), 2U);
    const auto& http = steps[0].http;
    EXPECT_EQ(steps[0].kind, jobs::StepKind::kHttp);
    EXPECT_EQ(steps[0].name, "http GET http://{{params.host}}:8080/status");
    EXPECT_EQ(http.method, "GET");
    EXPECT_EQ(http.url, "http://{{params.host}}:8080/status");
    EXPECT_TRUE(http.headers.empty());
    EXPECT_EQ(http.body, "");
    EXPECT_TRUE(http.expect_status.empty());
    EXPECT_TRUE(http.checks.empty());
    EXPECT_EQ(http.request_timeout, 10s);
    EXPECT_EQ(http.retries, 0);
    EXPECT_EQ(http.retry_interval, 1s);
    EXPECT_EQ(steps[1].http.expect_status, (std::vector<int>{404}));
}

TEST(HttpStepReader, ErrorsNameTheKey) {
    auto head = action_with("");
    EXPECT_EQ(error_of(head + "        - http: {method: get, url: \"http://x/\"}\n"),
              "aviary.yaml:8:26: jobs.actions.a.steps[0].http.method: \"get\" is not an HTTP "
              "method (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or another upper-case token)");
    EXPECT_EQ(error_of(head + "        - http: \"ws://x/\"\n"),
              "aviary.yaml:8:17: jobs.actions.a.steps[0].http: \"ws://x/\" must start with "
              "http:// or https://");
    EXPECT_EQ(error_of(head + "        - http: {url: \"ftp://x/\"}\n"),
              "aviary.yaml:8:23: jobs.actions.a.steps[0].http.url: \"ftp://x/\" must start with "
              "http:// or https://");
    EXPECT_EQ(error_of(head + "        - http: {method: GET}\n"),
              "aviary.yaml:8:17: jobs.actions.a.steps[0].http: an http step needs a url");
    EXPECT_EQ(error_of(head + "        - http:\n"),
              "aviary.yaml:8:11: jobs.actions.a.steps[0].http: expected a url or a mapping with "
              "url (and method, headers, body, expect_status, expect, request_timeout, retries, "
              "retry_interval), got nothing");
    EXPECT_EQ(error_of(head + "        - http\n"),
              "aviary.yaml:8:11: jobs.actions.a.steps[0]: a http step needs a value: \"http: "
              "...\" (only noop stands alone)");
    EXPECT_EQ(error_of(head + "        - http: {url: \"http://x/\", retires: 3}\n"),
              "aviary.yaml:8:36: jobs.actions.a.steps[0].http.retires: unknown key \"retires\"; "
              "did you mean \"retries\"?");
    EXPECT_EQ(error_of(head + "        - http: {url: \"http://x/\", retries: 101}\n"),
              "aviary.yaml:8:45: jobs.actions.a.steps[0].http.retries: expected an integer from "
              "0 to 100, got \"101\"");
    EXPECT_EQ(error_of(head + "        - http: {url: \"http://x/\", expect_status: [200, 99]}\n"),
              "aviary.yaml:8:57: jobs.actions.a.steps[0].http.expect_status[1]: expected an "
              "integer from 100 to 599, got \"99\"");
    EXPECT_EQ(error_of(head + "        - http: {url: \"http://x/\", request_timeout: 0s}\n"),
              "aviary.yaml:8:53: jobs.actions.a.steps[0].http.request_timeout: must be positive, "
              "got \"0s\"");
    EXPECT_EQ(error_of(head + "        - http: {url: \"http://x/\", headers: {\"Bad Name\": x}}\n"),
              "aviary.yaml:8:46: jobs.actions.a.steps[0].http.headers.Bad Name: \"Bad Name\" is "
              "not a header name (letters, digits and !#$%&'*+-.^_`|~)");
    EXPECT_EQ(error_of(head + "        - http: {url: \"http://x/\", headers: {X-A: \"a\\nb\"}}\n"),
              "aviary.yaml:8:51: jobs.actions.a.steps[0].http.headers.X-A: a header value must "
              "be one line");
    // A key of the http mapping written beside it instead.
    EXPECT_EQ(error_of(head + "        - http: \"http://x/\"\n          retries: 3\n"),
              "aviary.yaml:9:11: jobs.actions.a.steps[0].retries: unknown key \"retries\"");
}

TEST(HttpStepReader, CheckErrorsNameTheCheck) {
    auto head =
        action_with("        - http:\n            url: \"http://x/\"\n            expect:\n");
    EXPECT_EQ(error_of(head + "              - json_equal: {path: a, value: 1}\n"),
              "aviary.yaml:11:17: jobs.actions.a.steps[0].http.expect[0].json_equal: unknown key "
              "\"json_equal\"; did you mean \"json_equals\"?");
    EXPECT_EQ(error_of(head + "              - {json_exists: a, text_contains: b}\n"),
              "aviary.yaml:11:49: jobs.actions.a.steps[0].http.expect[0].text_contains: a check "
              "has exactly one of json_equals, json_exists or text_contains");
    EXPECT_EQ(error_of(head + "              - {}\n"),
              "aviary.yaml:11:17: jobs.actions.a.steps[0].http.expect[0]: a check needs one of "
              "json_equals, json_exists or text_contains");
    EXPECT_EQ(error_of(head + "              - text_contains\n"),
              "aviary.yaml:11:17: jobs.actions.a.steps[0].http.expect[0]: expected a check (a "
              "mapping with one of json_equals, json_exists or text_contains), got "
              "\"text_contains\"");
    EXPECT_EQ(error_of(head + "              - json_equals: {path: a}\n"),
              "aviary.yaml:11:30: jobs.actions.a.steps[0].http.expect[0].json_equals: json_equals "
              "needs a value: {path: PATH, value: VALUE}");
    EXPECT_EQ(error_of(head + "              - json_equals: {path: a, value: [1]}\n"),
              "aviary.yaml:11:47: jobs.actions.a.steps[0].http.expect[0].json_equals.value: "
              "expected a string, number, true, false or null, got a sequence (to compare an "
              "object or array, write its JSON as a string)");
    EXPECT_EQ(error_of(head + "              - json_exists: [a]\n"),
              "aviary.yaml:11:30: jobs.actions.a.steps[0].http.expect[0].json_exists: expected a "
              "string, got a sequence");
    EXPECT_EQ(error_of(head + "              - text_contains: \"\"\n"),
              "aviary.yaml:11:32: jobs.actions.a.steps[0].http.expect[0].text_contains: needs "
              "the text to look for");
    // What only jobs::validate_action knows comes at the action's key, with the key path.
    EXPECT_EQ(error_of(head + "              - json_exists: \"a..b\"\n"),
              "aviary.yaml:3:5: jobs.actions.a: steps[0].http.expect[0].json_exists: json path "
              "\"a..b\": a member name must follow '.' at character 2");
    EXPECT_EQ(error_of(action_with("        - http: \"http://{{params.hots}}/\"\n")),
              "aviary.yaml:3:5: jobs.actions.a: steps[0].http.url: unknown param \"hots\"");
}

TEST(HttpStepReader, TheCommentedReferenceInTheExampleReads) {
    // examples/aviary.yaml lists every key of an action in a comment, "my-action": uncommented,
    // it must load, http steps and all.
    std::ifstream in{std::string{AVIARY_SOURCE_DIR} + "/examples/aviary.yaml"};
    ASSERT_TRUE(in) << "cannot read examples/aviary.yaml";
    std::string yaml = "jobs:\n  actions:\n";
    bool inside = false;
    for (std::string line; std::getline(in, line);) {
        if (line == "  #   my-action:") {
            inside = true;
        } else if (inside && !line.starts_with("  #  ")) {
            break;
        }
        if (inside) {
            yaml += "  " + line.substr(4) + "\n";  // "  # " off, two spaces under actions
        }
    }
    ASSERT_TRUE(inside) << "no \"my-action\" reference in examples/aviary.yaml";
    auto loaded = load_string(yaml, "reference.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message << "\n" << yaml;
    std::vector<jobs::StepSpec> http;
    for (const auto& action : loaded->jobs.actions) {
        if (action.name != "my-action") {
            continue;
        }
        for (const auto& step : action.steps) {
            if (step.kind == jobs::StepKind::kHttp) {
                http.push_back(step);
            }
        }
    }
    ASSERT_EQ(http.size(), 2U);
    EXPECT_EQ(http[0].http.url, "http://{{node}}:1234/status");
    EXPECT_EQ(http[0].http.checks.size(), 3U);
    EXPECT_EQ(http[0].http.retries, 0);
    EXPECT_EQ(http[1].http.url, "http://127.0.0.1:8080/healthz");
}

}  // namespace
}  // namespace aviary::config
