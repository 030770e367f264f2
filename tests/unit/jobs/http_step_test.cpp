// The http step (http_step.cpp): JSON paths, comparisons, URL encoding and validation as units;
// then real http steps run by the engine against a local HttpServer.
#include "jobs/http_step.hpp"

#include <fmt/format.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json.hpp>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine_support.hpp"

namespace aviary::jobs::test {
namespace {

namespace json = boost::json;
using tcp = asio::ip::tcp;

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// --- JSON paths -------------------------------------------------------------------------------

/// The path as steps written back: "a", "[0]", "a.b[2]".
std::string steps_of(std::string_view path) {
    auto parsed = parse_json_path(path);
    if (!parsed) {
        return "error: " + parsed.error().message;
    }
    std::string out;
    for (const auto& step : *parsed) {
        out += step.is_index ? fmt::format("[{}]", step.index) : "<" + step.member + ">";
    }
    return out;
}

TEST(HttpJsonPath, ParsesMembersIndicesAndTheRoot) {
    EXPECT_EQ(steps_of(""), "");
    EXPECT_EQ(steps_of("$"), "");
    EXPECT_EQ(steps_of("result"), "<result>");
    EXPECT_EQ(steps_of("result.height"), "<result><height>");
    EXPECT_EQ(steps_of("items[0].name"), "<items>[0]<name>");
    EXPECT_EQ(steps_of("$.a"), "<a>");
    EXPECT_EQ(steps_of("$[2]"), "[2]");
    EXPECT_EQ(steps_of("[1][0]"), "[1][0]");
    EXPECT_EQ(steps_of(".result.height"), "<result><height>");  // as jq writes it
    EXPECT_EQ(steps_of("a[\"key.with.dots\"].b"), "<a><key.with.dots><b>");
    EXPECT_EQ(steps_of("labels[\"a.b/c[1]\"]"), "<labels><a.b/c[1]>");
    EXPECT_EQ(steps_of("[\"\"]"), "<>");
    EXPECT_EQ(steps_of("with-dash.under_score"), "<with-dash><under_score>");
}

TEST(HttpJsonPath, RefusesMalformedPathsNamingThePosition) {
    EXPECT_EQ(steps_of("a..b"),
              "error: json path \"a..b\": a member name must follow '.' at character 2");
    EXPECT_EQ(steps_of("a."),
              "error: json path \"a.\": a member name must follow '.' at character 2");
    EXPECT_EQ(steps_of("items[0"), "error: json path \"items[0\": unclosed '[' at character 6");
    EXPECT_EQ(steps_of("items[x]"),
              "error: json path \"items[x]\": expected an array index (0, 1, ...) or a quoted "
              "member name inside [ ] at character 7");
    EXPECT_EQ(steps_of("items[-1]"),
              "error: json path \"items[-1]\": expected an array index (0, 1, ...) or a quoted "
              "member name inside [ ] at character 7");
    EXPECT_EQ(steps_of("items[]"),
              "error: json path \"items[]\": expected an array index (0, 1, ...) or a quoted "
              "member name inside [ ] at character 7");
    EXPECT_EQ(steps_of("items[0]name"),
              "error: json path \"items[0]name\": expected '.' or '[' after ']' at character 9");
    EXPECT_EQ(steps_of("$a"),
              "error: json path \"$a\": expected '.' or '[' after '$' at character 2");
    EXPECT_EQ(steps_of("a]"), "error: json path \"a]\": ']' without '[' at character 2");
    EXPECT_EQ(steps_of("a[\"b]"), "error: json path \"a[\"b]\": unclosed '[\"' at character 2");
    EXPECT_EQ(steps_of("a[\"b\"c\"]"),
              "error: json path \"a[\"b\"c\"]\": a quoted member name cannot hold '\"' at "
              "character 2");
    EXPECT_EQ(steps_of("$.[0]"),
              "error: json path \"$.[0]\": a member name must follow '.' at character 2");
}

TEST(HttpJsonPath, FindSaysWhereTheWalkStopped) {
    auto body = json::parse(R"({"result": {"height": 3, "peers": [{"id": "a"}]}, "n": 1})");
    std::string missing;
    auto path = [](std::string_view text) { return *parse_json_path(text); };
    const auto* found = find_json(body, path("result.peers[0].id"), missing);
    ASSERT_NE(found, nullptr);
    EXPECT_EQ(*found, json::value("a"));
    EXPECT_EQ(find_json(body, path("$"), missing), &body);
    EXPECT_EQ(find_json(body, path("result.depth"), missing), nullptr);
    EXPECT_EQ(missing, "no member \"depth\" in result");
    EXPECT_EQ(find_json(body, path("result.peers[3]"), missing), nullptr);
    EXPECT_EQ(missing, "result.peers has 1 element, so no [3]");
    EXPECT_EQ(find_json(body, path("n.x"), missing), nullptr);
    EXPECT_EQ(missing, "n is a number, not an object");
    EXPECT_EQ(find_json(body, path("[0]"), missing), nullptr);
    EXPECT_EQ(missing, "the body is an object, not an array");
    EXPECT_EQ(find_json(body, path("nope"), missing), nullptr);
    EXPECT_EQ(missing, "no member \"nope\" in the body");
}

// --- comparisons ------------------------------------------------------------------------------

TEST(HttpJsonEquals, ComparesStringsAsTextNumbersNumericallyAndWordsAsWords) {
    EXPECT_TRUE(json_equals(json::value("ok"), "ok"));
    EXPECT_FALSE(json_equals(json::value("ok"), "\"ok\""));
    EXPECT_TRUE(json_equals(json::value("5"), "5"));  // a string "5" is the text 5
    EXPECT_TRUE(json_equals(json::value(5), "5"));
    EXPECT_TRUE(json_equals(json::value(5), "5.0"));
    EXPECT_TRUE(json_equals(json::value(5.0), "5"));
    EXPECT_TRUE(json_equals(json::value(-2), "-2"));
    EXPECT_TRUE(json_equals(json::value(0.5), "0.5"));
    EXPECT_TRUE(json_equals(json::value(1000), "1e3"));
    EXPECT_FALSE(json_equals(json::value(5), "6"));
    EXPECT_FALSE(json_equals(json::value(5), "five"));
    EXPECT_FALSE(json_equals(json::value(5), ""));
    // Integers compare exactly, past what a double holds.
    EXPECT_TRUE(json_equals(json::parse("9007199254740993"), "9007199254740993"));
    EXPECT_FALSE(json_equals(json::parse("9007199254740993"), "9007199254740992"));
    EXPECT_TRUE(json_equals(json::parse("18446744073709551615"), "18446744073709551615"));
    EXPECT_TRUE(json_equals(json::value(true), "true"));
    EXPECT_FALSE(json_equals(json::value(true), "false"));
    EXPECT_FALSE(json_equals(json::value(true), "1"));
    EXPECT_TRUE(json_equals(json::value(false), "false"));
    EXPECT_TRUE(json_equals(json::value(nullptr), "null"));
    EXPECT_FALSE(json_equals(json::value(nullptr), ""));
    EXPECT_TRUE(json_equals(json::parse(R"({"a": [1, 2]})"), R"({ "a" : [1,2] })"));
    EXPECT_FALSE(json_equals(json::parse(R"([1, 2])"), "[2, 1]"));
    EXPECT_FALSE(json_equals(json::parse(R"([1, 2])"), "not json"));
}

TEST(HttpUrl, PlaceholderValuesArePercentEncoded) {
    EXPECT_EQ(percent_encode("AZaz09-._~"), "AZaz09-._~");
    EXPECT_EQ(percent_encode("a/b?c d&e=f#g%"), "a%2Fb%3Fc%20d%26e%3Df%23g%25");
    EXPECT_EQ(percent_encode("\xC3\xA9"), "%C3%A9");
    core::Job job;
    job.id = "J1";
    job.node = "lotus-0";
    job.params = {{"path", "../admin?x=1"}, {"host", "10.0.0.1"}};
    auto url =
        render_url("http://{{params.host}}:1234/v1/{{ params.path }}/{{node}}?job={{job.id}}", job);
    ASSERT_TRUE(url) << url.error().message;
    EXPECT_EQ(*url, "http://10.0.0.1:1234/v1/..%2Fadmin%3Fx%3D1/lotus-0?job=J1");
    auto unknown = render_url("http://x/{{nope}}", job);
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().message, "unknown placeholder {{nope}}");
}

// --- validation -------------------------------------------------------------------------------

ActionSpec checked_action(HttpStepSpec http) {
    ActionSpec action;
    action.name = "probe";
    action.params = {ParamSpec{.name = "host", .type = ParamType::kDnsLabel}};
    action.steps = {StepSpec{.name = "probe", .kind = StepKind::kHttp, .http = std::move(http)}};
    return action;
}

/// validate_action's message for an action whose one http step is `http`, or "ok".
std::string problem_of(HttpStepSpec http) {
    auto valid = validate_action(checked_action(std::move(http)));
    return valid ? "ok" : valid.error().message;
}

HttpStepSpec valid_http() {
    HttpStepSpec http;
    http.url = "http://{{params.host}}:1234/status";
    return http;
}

TEST(HttpStepValidation, AcceptsAFullSpec) {
    auto http = valid_http();
    http.method = "POST";
    http.headers = {{"Authorization", "Bearer {{params.host}}"}, {"X-Job", "{{job.id}}"}};
    http.body = R"({"node": "{{node}}"})";
    http.expect_status = {200, 204};
    http.checks = {
        HttpCheck{.kind = HttpCheckKind::kJsonEquals, .path = "result.height", .value = "5"},
        HttpCheck{.kind = HttpCheckKind::kJsonExists, .path = "items[0]"},
        HttpCheck{.kind = HttpCheckKind::kTextContains, .value = "{{node}}"},
    };
    http.retries = 100;
    EXPECT_EQ(problem_of(http), "ok");
    http.method = "PROPFIND";  // any upper-case token
    EXPECT_EQ(problem_of(http), "ok");
    http.url = "http://{{ params.host }}/a%20b";
    EXPECT_EQ(problem_of(http), "ok");
    http.url = "https://{{ params.host }}/status";
    EXPECT_EQ(problem_of(http), "ok");
}

TEST(HttpStepValidation, NamesTheKeyAndTheProblem) {
    auto with = [](auto change) {
        auto http = valid_http();
        change(http);
        return problem_of(http);
    };
    EXPECT_EQ(with([](HttpStepSpec& h) { h.method = "get"; }),
              "action \"probe\": steps[0].http.method: \"get\" is not an HTTP method (GET, POST, "
              "PUT, PATCH, DELETE, HEAD, OPTIONS or another upper-case token)");
    EXPECT_EQ(with([](HttpStepSpec& h) { h.method = "GET /x"; }),
              "action \"probe\": steps[0].http.method: \"GET /x\" is not an HTTP method (GET, "
              "POST, PUT, PATCH, DELETE, HEAD, OPTIONS or another upper-case token)");
    EXPECT_EQ(with([](HttpStepSpec& h) { h.url = ""; }),
              "action \"probe\": steps[0].http.url: an http step needs a url");
    EXPECT_EQ(with([](HttpStepSpec& h) { h.url = "ftp://x/"; }),
              "action \"probe\": steps[0].http.url: \"ftp://x/\" must start with http:// or "
              "https://");
    EXPECT_EQ(with([](HttpStepSpec& h) { h.url = "https:///status"; }),
              "action \"probe\": steps[0].http.url: \"https:///status\" has no host");
    EXPECT_EQ(with([](HttpStepSpec& h) { h.url = "http:///status"; }),
              "action \"probe\": steps[0].http.url: \"http:///status\" has no host");
    EXPECT_EQ(with([](HttpStepSpec& h) { h.url = "http://{{params.hots}}/"; }),
              "action \"probe\": steps[0].http.url: unknown param \"hots\"");
    EXPECT_EQ(with([](HttpStepSpec& h) { h.url = "http://x/a b"; }),
              "action \"probe\": steps[0].http.url: must not hold spaces or line breaks (write "
              "them as %20 and so on; placeholder values are encoded for you)");
    EXPECT_EQ(with([](HttpStepSpec& h) {
                  h.headers = {{"Bad Name", "x"}};
              }),
              "action \"probe\": steps[0].http.headers.Bad Name: is not a header name (letters, "
              "digits and !#$%&'*+-.^_`|~)");
    EXPECT_EQ(with([](HttpStepSpec& h) {
                  h.headers = {{"X-A", "a\r\nX-B: b"}};
              }),
              "action \"probe\": steps[0].http.headers.X-A: a header value must be one line");
    EXPECT_EQ(with([](HttpStepSpec& h) {
                  h.headers = {{"X-A", "{{params.x}}"}};
              }),
              "action \"probe\": steps[0].http.headers.X-A: unknown param \"x\"");
    EXPECT_EQ(with([](HttpStepSpec& h) { h.body = "{{ nope }}"; }),
              "action \"probe\": steps[0].http.body: unknown placeholder {{nope}} (use node, "
              "job.id or params.NAME)");
    EXPECT_EQ(with([](HttpStepSpec& h) {
                  h.expect_status = {200, 99};
              }),
              "action \"probe\": steps[0].http.expect_status[1]: 99 is not an HTTP status "
              "(100-599)");
    EXPECT_EQ(with([](HttpStepSpec& h) { h.expect_status = {600}; }),
              "action \"probe\": steps[0].http.expect_status[0]: 600 is not an HTTP status "
              "(100-599)");
    EXPECT_EQ(with([](HttpStepSpec& h) { h.retries = 101; }),
              "action \"probe\": steps[0].http.retries: must be 0..100");
    EXPECT_EQ(with([](HttpStepSpec& h) { h.retries = -1; }),
              "action \"probe\": steps[0].http.retries: must be 0..100");
    EXPECT_EQ(with([](HttpStepSpec& h) { h.request_timeout = core::Millis{0}; }),
              "action \"probe\": steps[0].http.request_timeout: must be positive");
    EXPECT_EQ(with([](HttpStepSpec& h) { h.retry_interval = core::Millis{0}; }),
              "action \"probe\": steps[0].http.retry_interval: must be positive");
    EXPECT_EQ(with([](HttpStepSpec& h) {
                  h.checks = {HttpCheck{.kind = HttpCheckKind::kJsonExists, .path = "a"},
                              HttpCheck{.kind = HttpCheckKind::kJsonEquals, .path = "a..b"}};
              }),
              "action \"probe\": steps[0].http.expect[1].json_equals: json path \"a..b\": a "
              "member name must follow '.' at character 2");
    EXPECT_EQ(with([](HttpStepSpec& h) {
                  h.checks = {HttpCheck{.kind = HttpCheckKind::kTextContains, .value = ""}};
              }),
              "action \"probe\": steps[0].http.expect[0].text_contains: needs the text to look "
              "for");
    EXPECT_EQ(with([](HttpStepSpec& h) {
                  h.checks = {HttpCheck{
                      .kind = HttpCheckKind::kJsonEquals, .path = "a", .value = "{{params.nope}}"}};
              }),
              "action \"probe\": steps[0].http.expect[0].json_equals: unknown param \"nope\"");
}

TEST(HttpStepValidation, KindsHaveTheirNames) {
    EXPECT_EQ(to_string(StepKind::kHttp), "http");
    EXPECT_EQ(parse_step_kind("http"), StepKind::kHttp);
    EXPECT_EQ(to_string(HttpCheckKind::kJsonEquals), "json_equals");
    EXPECT_EQ(to_string(HttpCheckKind::kJsonExists), "json_exists");
    EXPECT_EQ(to_string(HttpCheckKind::kTextContains), "text_contains");
}

// --- steps run by the engine ------------------------------------------------------------------

/// What the test server saw; shared by the handler and the test.
struct Seen {
    std::mutex mu;
    std::vector<net::Request> requests;
    std::map<std::string, int> by_path;

    int count(const std::string& path) {
        std::lock_guard lock{mu};
        return by_path[path];
    }
    std::vector<net::Request> all() {
        std::lock_guard lock{mu};
        return requests;
    }
};

constexpr std::string_view kStatusBody =
    R"({"result": {"height": 3, "syncing": false, "version": "v1.2.3", "none": null,)"
    R"( "peers": [{"id": "a"}, {"id": "b", "score": 5.0}], "big": 9007199254740993},)"
    R"( "ok": true, "motd": "the quick brown fox jumps over the lazy dog, and again: the quick)"
    R"( brown fox jumps over the lazy dog"})";

/// The routes: /status (a node's JSON status), /text (plain text), /down (503), /flaky (503
/// twice, then 200), /large (JSON past 64 KiB); anything else echoes {"ok": true}.
struct TestServer {
    std::shared_ptr<Seen> seen;

    asio::awaitable<net::Response> operator()(net::Request request) const {
        int n = 0;
        {
            std::lock_guard lock{seen->mu};
            n = ++seen->by_path[request.path];
            seen->requests.push_back(request);
        }
        co_return answer(request, n);
    }

    static net::Response answer(const net::Request& request, int n) {
        net::Response response;
        response.content_type = "application/json";
        if (request.path == "/status") {
            response.body = std::string{kStatusBody};
        } else if (request.path == "/text") {
            response.content_type = "text/plain";
            response.body = "all systems ok\n";
        } else if (request.path == "/down") {
            response.status = 503;
            response.content_type = "text/plain";
            response.body = "busy: try again\n";
        } else if (request.path == "/flaky") {
            response.status = n < 3 ? 503 : 200;
            response.body = n < 3 ? R"({"ready": false})" : R"({"ready": true})";
        } else if (request.path == "/large") {
            response.body = R"({"data": ")" + std::string(70 * 1024, 'x') + R"("})";
        } else {
            response.body = R"({"ok": true})";
        }
        return response;
    }
};

HttpCheck equals(std::string path, std::string value) {
    return HttpCheck{
        .kind = HttpCheckKind::kJsonEquals, .path = std::move(path), .value = std::move(value)};
}

HttpCheck exists(std::string path) {
    return HttpCheck{.kind = HttpCheckKind::kJsonExists, .path = std::move(path)};
}

HttpCheck text(std::string value) {
    return HttpCheck{.kind = HttpCheckKind::kTextContains, .value = std::move(value)};
}

class HttpStep : public EngineTest {
protected:
    void SetUp() override {
        EngineTest::SetUp();
        net::ServerSettings settings;
        settings.listen = "127.0.0.1:0";
        settings.shutdown_grace = std::chrono::milliseconds{500};
        server_ = std::make_unique<net::HttpServer>(settings, TestServer{seen_});
        auto bound = server_->start();
        ASSERT_TRUE(bound) << bound.error().message;
        base_ = "http://" + *bound;
    }

    void TearDown() override {
        EngineTest::TearDown();  // the engine first: its requests end with it
        if (server_ != nullptr) {
            server_->stop();
        }
    }

    /// An http step against this test's server (`target` is appended to its address).
    HttpStepSpec get(const std::string& target) {
        HttpStepSpec http;
        http.url = base_ + target;
        http.request_timeout = 5s;
        http.retry_interval = 10ms;
        return http;
    }

    /// Starts the engine with an action "probe" whose one step is `http`; its optional string
    /// params are `text` and `token`.
    void start_probe(HttpStepSpec http, core::Millis step_timeout = core::Millis{0}) {
        auto settings = test_settings();
        auto action = action_of("probe", {StepSpec{.name = "probe",
                                                   .kind = StepKind::kHttp,
                                                   .http = std::move(http),
                                                   .timeout = step_timeout}});
        action.params.push_back(
            ParamSpec{.name = "text", .type = ParamType::kString, .required = false});
        action.params.push_back(
            ParamSpec{.name = "token", .type = ParamType::kString, .required = false});
        auto valid = validate_action(action);
        ASSERT_TRUE(valid) << valid.error().message;
        settings.actions.push_back(std::move(action));
        start(std::move(settings));
    }

    core::Job run_probe(core::Params params = {}) {
        return wait_finished(submit("probe", std::move(params)).id);
    }

    /// The engine's own lines of the job's output, one per line.
    std::string notes(const std::string& id) {
        std::string out;
        for (const auto& line : output(id)) {
            if (line.stream == "aviary") {
                out += line.text + "\n";
            }
        }
        return out;
    }

    std::shared_ptr<Seen> seen_ = std::make_shared<Seen>();
    std::unique_ptr<net::HttpServer> server_;
    std::string base_;
};

TEST_F(HttpStep, JsonChecksHoldOnNestedPathsAndArrayIndices) {
    auto http = get("/status");
    http.checks = {equals("result.height", "3"),
                   equals("result.peers[1].id", "b"),
                   equals("$.result.version", "v1.2.3"),
                   equals("ok", "true"),
                   equals("result.syncing", "false"),
                   equals("result.none", "null"),
                   exists("result.peers[0]"),
                   exists("$")};
    start_probe(http);
    auto done = run_probe();
    ASSERT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    auto result = json::parse(done.result);
    EXPECT_EQ(result.at("status"), json::value(200));
    EXPECT_EQ(result.at("body"), json::parse(kStatusBody));
    EXPECT_TRUE(contains(notes(done.id), fmt::format("GET {}/status -> 200 (", base_)))
        << notes(done.id);
    EXPECT_EQ(seen_->count("/status"), 1);
}

TEST_F(HttpStep, NumbersCompareNumerically) {
    auto http = get("/status");
    http.checks = {equals("result.height", "3.0"), equals("result.peers[1].score", "5"),
                   equals("result.big", "9007199254740993")};
    start_probe(http);
    auto done = run_probe();
    EXPECT_EQ(done.state, core::JobState::kSucceeded) << done.error;
}

TEST_F(HttpStep, AFailedCheckSaysWhichPathWhatWasExpectedAndWhatWasSeen) {
    auto http = get("/status");
    http.checks = {equals("result.height", "5"), equals("result.version", "v2"),
                   equals("result.syncing", "true"), exists("result.depth")};
    start_probe(http);
    auto done = run_probe();
    ASSERT_EQ(done.state, core::JobState::kFailed);
    auto prefix = fmt::format("step 1 (probe) failed: GET {}/status -> 200: ", base_);
    EXPECT_TRUE(done.error.starts_with(prefix)) << done.error;
    EXPECT_TRUE(contains(done.error,
                         "result.height: expected 5, got 3; "
                         "result.version: expected \"v2\", got \"v1.2.3\"; "
                         "result.syncing: expected true, got false; "
                         "result.depth: not found (no member \"depth\" in result); "
                         "body: {\"result\": {\"height\": 3,"))
        << done.error;
    // The excerpt is capped: the body is longer than what is shown.
    EXPECT_TRUE(contains(done.error, fmt::format("... ({} bytes)", kStatusBody.size())))
        << done.error;
    EXPECT_TRUE(contains(notes(done.id), "not as expected: result.height: expected 5, got 3"))
        << notes(done.id);
}

TEST_F(HttpStep, TextContainsLooksAtTheRawBody) {
    auto http = get("/text");
    http.checks = {text("systems ok")};
    start_probe(http);
    auto done = run_probe();
    ASSERT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    // Not JSON: the result has the status only.
    EXPECT_EQ(json::parse(done.result), json::parse(R"({"status": 200})"));
}

TEST_F(HttpStep, TextAndJsonChecksFailOnATextBody) {
    auto http = get("/text");
    http.checks = {text("all systems down"), exists("status")};
    start_probe(http);
    auto done = run_probe();
    ASSERT_EQ(done.state, core::JobState::kFailed);
    EXPECT_TRUE(contains(done.error,
                         "the body does not contain \"all systems down\"; status: the "
                         "body is not JSON ("))
        << done.error;
    EXPECT_TRUE(contains(done.error, "body: all systems ok\\n")) << done.error;
}

TEST_F(HttpStep, AWrongStatusFailsWithTheStatusAndTheBody) {
    start_probe(get("/down"));
    auto done = run_probe();
    ASSERT_EQ(done.state, core::JobState::kFailed);
    EXPECT_EQ(done.error, fmt::format("step 1 (probe) failed: GET {}/down -> 503: expected a 2xx "
                                      "status, got 503; body: busy: try again\\n",
                                      base_));
}

TEST_F(HttpStep, ExpectStatusAcceptsTheListedStatusesOnly) {
    auto http = get("/down");
    http.expect_status = {500, 503};
    start_probe(http);
    auto done = run_probe();
    EXPECT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    EXPECT_EQ(json::parse(done.result).at("status"), json::value(503));
}

TEST_F(HttpStep, ExpectStatusRefusesA2xxItDoesNotList) {
    auto http = get("/status");
    http.expect_status = {201, 204};
    start_probe(http);
    auto done = run_probe();
    ASSERT_EQ(done.state, core::JobState::kFailed);
    EXPECT_TRUE(contains(done.error, "expected status 201 or 204, got 200")) << done.error;
}

TEST_F(HttpStep, RetriesUntilTheThirdRequestSucceeds) {
    auto http = get("/flaky");
    http.retries = 5;
    http.checks = {equals("ready", "true")};
    start_probe(http);
    auto done = run_probe();
    ASSERT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    EXPECT_EQ(seen_->count("/flaky"), 3);
    auto lines = notes(done.id);
    EXPECT_TRUE(contains(lines, "retrying in 10ms (request 2 of 6)")) << lines;
    EXPECT_TRUE(contains(lines, "retrying in 10ms (request 3 of 6)")) << lines;
    EXPECT_FALSE(contains(lines, "request 4 of 6")) << lines;
    EXPECT_EQ(json::parse(done.result), json::parse(R"({"status": 200, "body": {"ready": true}})"));
}

TEST_F(HttpStep, WhenRetriesRunOutTheLastFailureIsTheError) {
    auto http = get("/down");
    http.retries = 2;
    start_probe(http);
    auto done = run_probe();
    ASSERT_EQ(done.state, core::JobState::kFailed);
    EXPECT_EQ(seen_->count("/down"), 3);
    EXPECT_EQ(done.error,
              fmt::format("step 1 (probe) failed: GET {}/down -> 503 (request 3 of 3): expected a "
                          "2xx status, got 503; body: busy: try again\\n",
                          base_));
}

TEST_F(HttpStep, ARefusedConnectionFailsTheStep) {
    std::uint16_t port = 0;
    {
        asio::io_context ioc;  // a port that was just free: bound, then closed again
        tcp::acceptor probe{ioc, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
        port = probe.local_endpoint().port();
    }
    HttpStepSpec http;
    http.url = fmt::format("http://127.0.0.1:{}/status", port);
    http.retries = 1;
    http.retry_interval = 10ms;
    start_probe(http);
    auto done = run_probe();
    ASSERT_EQ(done.state, core::JobState::kFailed);
    EXPECT_TRUE(done.error.starts_with(fmt::format(
        "step 1 (probe) failed: GET http://127.0.0.1:{}/status (request 2 of 2): ", port)))
        << done.error;
    EXPECT_TRUE(contains(done.error, "refused")) << done.error;
    EXPECT_TRUE(contains(notes(done.id), "-> no response (")) << notes(done.id);
}

TEST_F(HttpStep, RequestTimeoutEndsARequestNobodyAnswers) {
    // Listening but never accepting: the kernel completes the handshake, nobody reads.
    asio::io_context ioc;
    tcp::acceptor silent{ioc, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
    HttpStepSpec http;
    http.url = fmt::format("http://127.0.0.1:{}/status", silent.local_endpoint().port());
    http.request_timeout = 200ms;
    start_probe(http);
    auto done = run_probe();
    ASSERT_EQ(done.state, core::JobState::kFailed);
    EXPECT_TRUE(contains(done.error, "timed out after 200ms")) << done.error;
}

TEST_F(HttpStep, CancelDuringRetriesStopsTheRequests) {
    auto http = get("/down");
    http.retries = 100;
    http.retry_interval = 1h;  // only a cancel ends the wait for the second request
    start_probe(http);
    auto id = submit("probe").id;
    ASSERT_TRUE(eventually([&] { return contains(notes(id), "retrying in 1h"); })) << notes(id);
    auto cancelled = engine_->cancel(id, admin_);
    ASSERT_TRUE(cancelled) << cancelled.error().message;
    auto done = wait_finished(id);
    EXPECT_EQ(done.state, core::JobState::kCancelled);
    EXPECT_EQ(done.error, "cancelled during step 1 (probe)");
    EXPECT_EQ(seen_->count("/down"), 1);
}

TEST_F(HttpStep, CancelEndsARequestInFlight) {
    asio::io_context ioc;
    tcp::acceptor silent{ioc, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
    HttpStepSpec http;
    http.url = fmt::format("http://127.0.0.1:{}/status", silent.local_endpoint().port());
    http.request_timeout = 1h;
    start_probe(http);
    auto id = submit("probe").id;
    // The step's first line is written just before the request is sent.
    ASSERT_TRUE(eventually([&] { return contains(notes(id), "step 1/1: probe"); })) << notes(id);
    auto cancelled = engine_->cancel(id, admin_);
    ASSERT_TRUE(cancelled) << cancelled.error().message;
    auto done = wait_finished(id);
    EXPECT_EQ(done.state, core::JobState::kCancelled);
    EXPECT_TRUE(contains(notes(id), "-> stopped (")) << notes(id);
}

TEST_F(HttpStep, TheStepTimeoutEndsTheRetries) {
    auto http = get("/down");
    http.retries = 100;
    http.retry_interval = 1h;
    start_probe(http, 300ms);
    auto done = run_probe();
    EXPECT_EQ(done.state, core::JobState::kTimedOut);
    EXPECT_EQ(done.error, "step 1 (probe) timed out");
}

TEST_F(HttpStep, UrlPlaceholdersArePercentEncoded) {
    start_probe(get("/echo/{{params.text}}?q={{params.text}}&node={{node}}"));
    auto done = run_probe({{"text", "a/b?c d&x=1"}});
    ASSERT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    auto requests = seen_->all();
    ASSERT_EQ(requests.size(), 1U);
    EXPECT_EQ(requests[0].target,
              "/echo/a%2Fb%3Fc%20d%26x%3D1?q=a%2Fb%3Fc%20d%26x%3D1&node=lotus-0");
    EXPECT_EQ(requests[0].path, "/echo/a/b?c d&x=1");  // one segment, decoded by the server
    ASSERT_EQ(requests[0].query.size(), 2U);
    EXPECT_EQ(requests[0].query[0].second, "a/b?c d&x=1");
}

TEST_F(HttpStep, AHeaderValueWithALineBreakIsNotSent) {
    auto http = get("/echo");
    http.headers = {{"X-Note", "{{params.text}}"}};
    start_probe(http);
    auto done = run_probe({{"text", "fine\r\nX-Evil: 1"}});
    ASSERT_EQ(done.state, core::JobState::kFailed);
    EXPECT_EQ(done.error,
              "step 1 (probe) failed: header X-Note: the rendered value holds a carriage return "
              "(CR); a header value must be one line, so the request was not sent");
    auto lf = run_probe({{"text", "fine\nX-Evil: 1"}});
    EXPECT_TRUE(contains(lf.error, "holds a line feed (LF)")) << lf.error;
    EXPECT_EQ(seen_->count("/echo"), 0);
}

TEST_F(HttpStep, PostSendsTheTemplatedBodyAndHeaders) {
    auto http = get("/echo");
    http.method = "POST";
    http.headers = {{"Authorization", "Bearer {{params.token}}"},
                    {"Content-Type", "application/json"},
                    {"X-Job", "{{job.id}}"}};
    http.body = R"({"node": "{{node}}", "text": "{{params.text}}"})";
    http.checks = {equals("ok", "true")};
    start_probe(http);
    auto done = run_probe({{"text", "a b/c"}, {"token", "s3cret"}});
    ASSERT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    auto requests = seen_->all();
    ASSERT_EQ(requests.size(), 1U);
    const auto& got = requests[0];
    EXPECT_EQ(got.method, "POST");
    EXPECT_EQ(got.body, R"({"node": "lotus-0", "text": "a b/c"})");  // the body is not encoded
    EXPECT_EQ(got.header("Authorization").value_or(""), "Bearer s3cret");
    EXPECT_EQ(got.header("Content-Type").value_or(""), "application/json");
    EXPECT_EQ(got.header("X-Job").value_or(""), done.id);
    // Header values stay out of the output (a token may be one).
    EXPECT_FALSE(contains(notes(done.id), "s3cret")) << notes(done.id);
}

TEST_F(HttpStep, ALargeJsonBodyIsCheckedButLeftOutOfTheResult) {
    auto http = get("/large");
    http.checks = {exists("data")};
    start_probe(http);
    auto done = run_probe();
    ASSERT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    EXPECT_EQ(json::parse(done.result), json::parse(R"({"status": 200})"));
}

TEST_F(HttpStep, CheckValuesAreTemplated) {
    auto http = get("/echo/{{params.text}}");
    http.checks = {equals("ok", "{{params.text}}")};
    start_probe(http);
    auto done = run_probe({{"text", "true"}});
    EXPECT_EQ(done.state, core::JobState::kSucceeded) << done.error;
    auto wrong = run_probe({{"text", "false"}});
    EXPECT_EQ(wrong.state, core::JobState::kFailed);
    EXPECT_TRUE(contains(wrong.error, "ok: expected false, got true")) << wrong.error;
}

}  // namespace
}  // namespace aviary::jobs::test
