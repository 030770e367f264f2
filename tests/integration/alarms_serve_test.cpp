// Alarms on canary scenarios inside the real serve (docs/probes.md, "Alarms"): a scenario
// whose target the test breaks and mends fires an alarm and resolves it; both transitions
// reach a Slack incoming webhook, an HMAC-signed webhook and aviary's notifications; a receiver
// that is down is retried while probing goes on; silences (explicit, and a node in
// maintenance) hold pages until they end; alarm state survives a restart; bad silences are
// refused with what is wrong; the CLI lists and silences.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "cli_support.hpp"
#include "net/net.hpp"
#include "rpc_helpers.hpp"
#include "support/fake_receiver.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr std::string_view kHmacKey = "hook-signing-key-0123456789";

class AlarmsServe : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(target_.start());
        ASSERT_TRUE(slack_.start());
        ASSERT_TRUE(hook_.start());
        target_.answer(500);  // broken until the test mends it
        write(slack_url_file_, slack_.url("/services/T000/B000/XXXX"));
        write(secret_file_, std::string{kHmacKey});
    }

    static void write(const std::string& path, const std::string& text) {
        std::ofstream out{path};
        out << text << "\n";
    }

    /// serve with one scenario against the target and one consecutive-failures alarm on it.
    std::string config(std::string_view node_line = "", std::string_view backoff = "100ms") const {
        return test_config() + fmt::format(R"(notify:
  notifiers:
    team-slack: {{type: slack, url_file: "{}"}}
    pager: {{type: webhook, url: "{}", secret_file: "{}"}}
  delivery: {{retry_backoff: {}, retry_backoff_max: 200ms, poll: 200ms}}
probes:
  evaluate_every: 1s
  public_url: "https://aviary.example"
  scenarios:
    flaky:
      interval: 1s
      timeout: 3s
{}      steps:
        - name: health
          http: {{url: "{}"}}
          assert: ["status == 200"]
  alarms:
    down:
      kind: consecutive
      failures: 2
      keep_firing_for: 1s
      repeat: never
)",
                                           slack_url_file_, hook_.url(), secret_file_, backoff,
                                           node_line, target_.url("/health"));
    }

    static json::value alarm_of(ServerProcess& server, std::string_view name) {
        auto list = json_of(http(server, "GET", "/api/v1/alarms"));
        if (!list.is_object()) {
            return nullptr;
        }
        for (const auto& a : list.at("alarms").as_array()) {
            if (a.at("name").as_string() == name) {
                return a;
            }
        }
        return nullptr;
    }

    static bool alarm_is(ServerProcess& server, std::string_view state) {
        return wait_until(
            [&] {
                auto a = alarm_of(server, "down/flaky");
                return a.is_object() && a.at("state").as_string() == state;
            },
            30s);
    }

    /// The webhook bodies received so far, of `kind` ("" any).
    std::vector<json::object> hooks(std::string_view kind = "") const {
        std::vector<json::object> out;
        for (const auto& r : hook_.received()) {
            auto body = json::parse(r.body).as_object();
            if (kind.empty() || body.at("kind").as_string() == kind) {
                out.push_back(body);
            }
        }
        return out;
    }

    TempDir scratch_;
    FakeReceiver target_;
    FakeReceiver slack_;
    FakeReceiver hook_;
    std::string slack_url_file_ = scratch_.path() + "/slack-url";
    std::string secret_file_ = scratch_.path() + "/hook-secret";
};

TEST_F(AlarmsServe, FiringAndResolvedReachSlackTheSignedWebhookAndNotifications) {
    ServerProcess server{config()};
    ASSERT_TRUE(server.start()) << server.log();
    ASSERT_TRUE(alarm_is(server, "firing")) << server.log();
    ASSERT_TRUE(
        wait_until([&] { return !hooks("firing").empty() && !slack_.received().empty(); }, 20s))
        << server.log();

    // The webhook: the documented JSON, signed over "TIMESTAMP.BODY" with the shared key.
    const auto received = hook_.received().front();
    EXPECT_EQ(received.method, "POST");
    EXPECT_EQ(received.header("Content-Type").value_or(""), "application/json");
    EXPECT_EQ(received.header("X-Aviary-Event").value_or(""), "firing");
    auto signature = received.header("X-Aviary-Signature").value_or("");
    ASSERT_TRUE(signature.starts_with("t=")) << signature;
    auto comma = signature.find(",v1=");
    ASSERT_NE(comma, std::string::npos) << signature;
    auto stamp = signature.substr(2, comma - 2);
    auto mac = net::hmac_sha256_hex(kHmacKey, stamp + "." + received.body);
    ASSERT_TRUE(mac);
    EXPECT_EQ(signature.substr(comma + 4), *mac) << "the signature must verify with the key";
    auto body = json::parse(received.body).as_object();
    EXPECT_EQ(body.at("version").as_int64(), 1);
    EXPECT_EQ(body.at("alarm").as_string(), "down/flaky");
    EXPECT_EQ(body.at("rule").as_string(), "down");
    EXPECT_EQ(body.at("scenario").as_string(), "flaky");
    EXPECT_EQ(body.at("state").as_string(), "firing");
    EXPECT_NE(std::string{body.at("summary").as_string()}.find("were bad"), std::string::npos)
        << body;
    EXPECT_EQ(body.at("link").as_string(), "https://aviary.example/dashboard#probe-flaky");

    // Slack: its text names the alarm, what failed and the link, at the secret URL's path.
    const auto slack = slack_.received().front();
    EXPECT_EQ(slack.path, "/services/T000/B000/XXXX");
    auto text = std::string{json::parse(slack.body).at("text").as_string()};
    EXPECT_NE(text.find("Firing"), std::string::npos) << text;
    EXPECT_NE(text.find("down/flaky"), std::string::npos) << text;
    EXPECT_NE(text.find("https://aviary.example/dashboard#probe-flaky"), std::string::npos) << text;
    // The Slack URL is a credential: serve never logs it.
    EXPECT_EQ(server.log().find("/services/T000/B000/XXXX"), std::string::npos) << server.log();

    // The alarm as the API, the metrics and the dashboard show it.
    auto alarm = alarm_of(server, "down/flaky");
    EXPECT_EQ(alarm.at("notified").as_string(), "firing") << alarm;
    EXPECT_EQ(alarm.at("silenced_by").as_string(), "") << alarm;
    auto metrics = http(server, "GET", "/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_NE(metrics->body.find("aviary_alarm_firing{alarm=\"down/flaky\"} 1"), std::string::npos);
    auto page = http(server, "GET", "/dashboard");
    ASSERT_TRUE(page);
    EXPECT_NE(page->body.find("data-alarm=\"down/flaky\""), std::string::npos);

    // aviary's own notifications carry it too (getNotifications, aviary notifications -f).
    ASSERT_TRUE(wait_until(
        [&] {
            auto feed = json_of(
                http(server, "GET", "/api/v1/logs?kind=notifications&contains=alarm.firing"));
            return feed.is_object() && !feed.at("records").as_array().empty();
        },
        20s))
        << server.log();

    // Mended: resolved once clear for keep_firing_for, and both notifiers hear it.
    target_.answer(200);
    ASSERT_TRUE(alarm_is(server, "ok")) << server.log();
    ASSERT_TRUE(wait_until(
        [&] {
            bool slack_resolved = false;
            for (const auto& r : slack_.received()) {
                slack_resolved |= r.body.find("Resolved") != std::string::npos;
            }
            return !hooks("resolved").empty() && slack_resolved;
        },
        20s))
        << server.log();
    EXPECT_EQ(hooks("firing").size(), 1U) << "one firing, told once (repeat: never)";
    // A receiver has its request before the sender records the answer: wait for the outbox.
    boost::json::value sent;
    (void)wait_until(
        [&] {
            sent = json_of(http(server, "GET", "/api/v1/alarms/notifications"));
            if (!sent.is_object()) {
                return false;
            }
            for (const auto& n : sent.at("notifications").as_array()) {
                if (n.at("outcome").as_string() == "pending") {
                    return false;
                }
            }
            return true;
        },
        20s);
    ASSERT_TRUE(sent.is_object());
    for (const auto& n : sent.at("notifications").as_array()) {
        EXPECT_EQ(n.at("outcome").as_string(), "sent") << n;
    }
    EXPECT_EQ(sent.at("notifications").as_array().size(), 4U) << sent;
    EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST_F(AlarmsServe, AReceiverThatErrsIsRetriedWhileProbingGoesOn) {
    hook_.answer(500);
    ServerProcess server{config()};
    ASSERT_TRUE(server.start()) << server.log();
    ASSERT_TRUE(alarm_is(server, "firing")) << server.log();
    json::value pending;
    ASSERT_TRUE(wait_until(
        [&] {
            auto sent = json_of(http(server, "GET", "/api/v1/alarms/notifications"));
            if (!sent.is_object()) {
                return false;
            }
            for (const auto& n : sent.at("notifications").as_array()) {
                if (n.at("notifier").as_string() == "pager" && n.at("attempts").as_int64() >= 2) {
                    pending = n;
                    return true;
                }
            }
            return false;
        },
        20s))
        << server.log();
    EXPECT_EQ(pending.at("outcome").as_string(), "pending") << pending;
    EXPECT_NE(std::string{pending.at("last_error").as_string()}.find("answered 500"),
              std::string::npos)
        << pending;
    // Slack, up all along, got its message regardless.
    EXPECT_FALSE(slack_.received().empty());
    // The scenario kept running on its schedule meanwhile.
    auto before = json_of(http(server, "GET", "/api/v1/probes/flaky/runs?limit=1000"));
    auto runs_before = before.at("runs").as_array().size();
    ASSERT_TRUE(wait_until(
        [&] {
            auto now = json_of(http(server, "GET", "/api/v1/probes/flaky/runs?limit=1000"));
            return now.at("runs").as_array().size() >= runs_before + 2;
        },
        20s));
    // The receiver comes back: the firing is delivered, once.
    hook_.answer(200);
    ASSERT_TRUE(wait_until(
        [&] {
            std::size_t accepted = 0;
            for (const auto& r : hook_.received()) {
                accepted += r.body.find("\"firing\"") != std::string::npos ? 1 : 0;
            }
            auto sent = json_of(http(server, "GET", "/api/v1/alarms/notifications"));
            for (const auto& n : sent.at("notifications").as_array()) {
                if (n.at("notifier").as_string() == "pager" &&
                    n.at("outcome").as_string() == "sent") {
                    return accepted >= 2;  // the failed tries and the one that took
                }
            }
            return false;
        },
        30s))
        << server.log();
    EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST_F(AlarmsServe, AnExplicitSilenceHoldsPagesUntilItEnds) {
    ServerProcess server{config()};
    ASSERT_TRUE(server.start()) << server.log();
    auto added = http(server, "POST", "/api/v1/silences",
                      R"({"matcher": "flaky", "duration": "1h", "reason": "replacing the disk"})",
                      {net::Header{"Content-Type", "application/json"}});
    ASSERT_TRUE(added);
    ASSERT_EQ(added->status, 201) << added->body;
    auto silence = json::parse(added->body);
    const std::string id{silence.at("id").as_string()};
    EXPECT_EQ(silence.at("reason").as_string(), "replacing the disk");

    ASSERT_TRUE(alarm_is(server, "firing")) << server.log();
    ASSERT_TRUE(wait_until(
        [&] {
            auto a = alarm_of(server, "down/flaky");
            return std::string{a.at("silenced_by").as_string()}.find("replacing the disk") !=
                   std::string::npos;
        },
        10s));
    // A few evaluations later, still nothing was sent.
    auto evaluated = alarm_of(server, "down/flaky").at("evaluated_at");
    ASSERT_TRUE(wait_until(
        [&] { return alarm_of(server, "down/flaky").at("evaluated_at") != evaluated; }, 10s));
    EXPECT_TRUE(hook_.received().empty());
    EXPECT_TRUE(slack_.received().empty());
    EXPECT_EQ(alarm_of(server, "down/flaky").at("notified").as_string(), "ok");

    auto listed = json_of(http(server, "GET", "/api/v1/silences"));
    ASSERT_EQ(listed.at("silences").as_array().size(), 1U) << listed;

    // The silence ends: the firing that still holds is told.
    auto expired = http(server, "DELETE", "/api/v1/silences/" + id);
    ASSERT_TRUE(expired);
    ASSERT_EQ(expired->status, 200) << expired->body;
    ASSERT_TRUE(wait_until([&] { return !hooks("firing").empty(); }, 20s)) << server.log();
    EXPECT_TRUE(json_of(http(server, "GET", "/api/v1/silences")).at("silences").as_array().empty());
    auto again = http(server, "DELETE", "/api/v1/silences/" + id);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->status, 400) << again->body;
    auto unknown = http(server, "DELETE", "/api/v1/silences/nope");
    ASSERT_TRUE(unknown);
    EXPECT_EQ(unknown->status, 404) << unknown->body;
    EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST_F(AlarmsServe, BadSilencesAreRefusedWithWhatIsWrong) {
    ServerProcess server{config()};
    ASSERT_TRUE(server.start()) << server.log();
    struct Case {
        std::string body;
        std::string says;
    };
    const std::vector<Case> cases{
        {R"({"matcher": "flakey", "duration": "1h", "reason": "r"})", "\"flakey\" names no alarm"},
        {R"({"matcher": "flaky", "duration": "100d", "reason": "r"})", "at most 90d"},
        {R"({"matcher": "flaky", "duration": "1h"})", "\"reason\" is required"},
        {R"({"matcher": "flaky", "reason": "r"})", "\"duration\" is required"},
        {R"({"matcher": "flaky", "duration": "soon", "reason": "r"})", "duration"},
        {R"({"matcher": "flaky", "duration": "1h", "reason": "r", "until": "x"})", "until"},
        {R"(["flaky"])", "object"},
    };
    for (const auto& c : cases) {
        auto got = http(server, "POST", "/api/v1/silences", c.body,
                        {net::Header{"Content-Type", "application/json"}});
        ASSERT_TRUE(got) << c.body;
        EXPECT_EQ(got->status, 400) << c.body << " -> " << got->body;
        auto message = std::string{json::parse(got->body).at("error").at("message").as_string()};
        EXPECT_NE(message.find(c.says), std::string::npos) << c.body << " -> " << message;
    }
    auto bad_query = http(server, "GET", "/api/v1/silences?ended=maybe");
    ASSERT_TRUE(bad_query);
    EXPECT_EQ(bad_query->status, 400) << bad_query->body;
    // And serve is still up.
    auto health = http(server, "GET", "/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
}

TEST_F(AlarmsServe, ANodeInMaintenanceSilencesItsScenariosAlarms) {
    ServerProcess server{config("      node: lotus-0\n")};
    ASSERT_TRUE(server.start()) << server.log();
    auto maintenance =
        http(server, "PUT", "/api/v1/nodes/lotus-0/maintenance", R"({"reason": "disk swap"})",
             {net::Header{"Content-Type", "application/json"}});
    ASSERT_TRUE(maintenance);
    ASSERT_EQ(maintenance->status, 200) << maintenance->body;
    ASSERT_TRUE(alarm_is(server, "firing")) << server.log();
    ASSERT_TRUE(wait_until(
        [&] {
            auto a = alarm_of(server, "down/flaky");
            return std::string{a.at("silenced_by").as_string()}.find(
                       "node lotus-0 is in maintenance: disk swap") != std::string::npos;
        },
        10s))
        << alarm_of(server, "down/flaky");
    EXPECT_TRUE(hook_.received().empty());
    // Back in service, still broken: now it pages.
    auto back = http(server, "DELETE", "/api/v1/nodes/lotus-0/maintenance");
    ASSERT_TRUE(back);
    ASSERT_EQ(back->status, 200) << back->body;
    ASSERT_TRUE(wait_until([&] { return !hooks("firing").empty(); }, 20s)) << server.log();
    EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST_F(AlarmsServe, AlarmStateSurvivesARestartAndIsNotToldTwice) {
    TempDir data;
    {
        ServerProcess server{config(), data.path()};
        ASSERT_TRUE(server.start()) << server.log();
        ASSERT_TRUE(alarm_is(server, "firing")) << server.log();
        ASSERT_TRUE(wait_until([&] { return !hooks("firing").empty(); }, 20s)) << server.log();
        EXPECT_EQ(server.stop(), 0) << server.log();
    }
    ServerProcess again{config(), data.path()};
    ASSERT_TRUE(again.start()) << again.log();
    auto a = alarm_of(again, "down/flaky");
    ASSERT_TRUE(a.is_object());
    EXPECT_EQ(a.at("state").as_string(), "firing") << "the state is the store's, not memory's";
    // Several evaluations after the restart, the firing was still told only once.
    auto evaluated = a.at("evaluated_at");
    ASSERT_TRUE(wait_until(
        [&] { return alarm_of(again, "down/flaky").at("evaluated_at") != evaluated; }, 10s));
    EXPECT_EQ(hooks("firing").size(), 1U);
    EXPECT_EQ(again.stop(), 0) << again.log();
}

TEST_F(AlarmsServe, TheCliListsAlarmsAndSilences) {
    ServerProcess server{config()};
    ASSERT_TRUE(server.start()) << server.log();
    ASSERT_TRUE(alarm_is(server, "firing")) << server.log();
    auto listed = run_aviary(server.url(""), "alarms", scratch_.path());
    EXPECT_EQ(listed.status, 0) << listed.err;
    EXPECT_NE(listed.out.find("down/flaky"), std::string::npos) << listed.out;
    EXPECT_NE(listed.out.find("firing"), std::string::npos) << listed.out;

    auto added =
        run_aviary(server.url(""), "silence add 'down/flaky' --for 30m --reason 'known outage'",
                   scratch_.path());
    EXPECT_EQ(added.status, 0) << added.err;
    EXPECT_NE(added.out.find("known outage"), std::string::npos) << added.out;
    auto silences = run_aviary(server.url(""), "--json silences", scratch_.path());
    EXPECT_EQ(silences.status, 0) << silences.err;
    auto parsed = json::parse(silences.out);
    ASSERT_EQ(parsed.at("silences").as_array().size(), 1U) << silences.out;
    const std::string id{parsed.at("silences").at(0).at("id").as_string()};
    auto expired = run_aviary(server.url(""), "silence expire " + id, scratch_.path());
    EXPECT_EQ(expired.status, 0) << expired.err;
    auto refused = run_aviary(server.url(""), "silence add nothing --reason x", scratch_.path());
    EXPECT_EQ(refused.status, 1) << refused.out;
    EXPECT_NE(refused.err.find("names no alarm"), std::string::npos) << refused.err;
    auto sent = run_aviary(server.url(""), "alarms notifications", scratch_.path());
    EXPECT_EQ(sent.status, 0) << sent.err;
    EXPECT_NE(sent.out.find("NOTIFIER"), std::string::npos) << sent.out;
}

}  // namespace
}  // namespace aviary::test
