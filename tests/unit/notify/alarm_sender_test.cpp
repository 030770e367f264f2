// AlarmSender against a fake Slack and a fake webhook receiver on loopback, with a real SQLite
// store holding the outbox: what each receiver gets (Slack's {"text"}, the webhook's JSON and its
// HMAC signature), retries with backoff on the manual clock, notifications given up, and
// secrets kept out of what is stored. Also net::hmac_sha256_hex against RFC 4231.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/core.hpp"
#include "metrics/metrics.hpp"
#include "net/net.hpp"
#include "notify/notify.hpp"
#include "store/store.hpp"
#include "support/fake_receiver.hpp"

namespace aviary::notify {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

const core::TimePoint kT0{core::Millis{1'800'000'000'000}};

bool contains(std::string_view text, std::string_view part) {
    return text.find(part) != std::string_view::npos;
}

// --- HMAC-SHA256 ---------------------------------------------------------------------------

std::string hmac(std::string_view key, std::string_view message) {
    auto mac = net::hmac_sha256_hex(key, message);
    EXPECT_TRUE(mac) << mac.error().message;
    return mac ? *mac : std::string{};
}

TEST(HmacSha256, Rfc4231TestCase2) {
    EXPECT_EQ(hmac("Jefe", "what do ya want for nothing?"),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(HmacSha256, Rfc4231TestCase6AKeyLongerThanABlockIsHashedFirst) {
    EXPECT_EQ(
        hmac(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First"),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(HmacSha256, KeysAtTheBlockBoundaryAndEmptyInputs) {
    // Reference values from Python's hmac module. 64 bytes is used as is; 65 is hashed first.
    EXPECT_EQ(hmac(std::string(64, 'k'), "exactly one block of key"),
              "baa93ea4ccc7062ed6870c5e7937dbd35ad7791df4e29df9addeb429ff491acf");
    EXPECT_EQ(hmac(std::string(65, 'k'), "exactly one block of key"),
              "13c573689ff3377060a3cc259336f4d8a45de086f248a7f620b2ba4e01361985");
    EXPECT_EQ(hmac("", ""), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(WebhookSignature, SignsTheTimestampDotTheBody) {
    auto signature = webhook_signature("Jefe", 1800000000, R"({"a":1})");
    ASSERT_TRUE(signature) << signature.error().message;
    EXPECT_EQ(*signature, "t=1800000000,v1=" + hmac("Jefe", R"(1800000000.{"a":1})"));
}

// --- bodies ---------------------------------------------------------------------------------

store::AlarmNotification sample(std::string kind) {
    return store::AlarmNotification{.id = 42,
                                    .alarm = "failing/list",
                                    .rule = "failing",
                                    .scenario = "list",
                                    .notifier = "hook",
                                    .kind = std::move(kind),
                                    .summary = "the last 3 runs were bad: connection refused",
                                    .link = "https://aviary.example/dashboard#probe-list",
                                    .at = kT0 + 1s,
                                    .since = kT0};
}

TEST(AlarmBodies, SlackGetsOneTextNamingTheAlarmTheSummaryAndTheLink) {
    for (std::string kind : {"firing", "resolved", "reminder"}) {
        SCOPED_TRACE(kind);
        auto body = json::parse(slack_body(sample(kind))).as_object();
        ASSERT_EQ(body.size(), 1U);
        std::string text{body.at("text").as_string()};
        EXPECT_TRUE(contains(text, "*failing/list*")) << text;
        EXPECT_TRUE(contains(text, "scenario list")) << text;
        EXPECT_TRUE(contains(text, "the last 3 runs were bad: connection refused")) << text;
        EXPECT_TRUE(contains(text, "<https://aviary.example/dashboard#probe-list|")) << text;
        EXPECT_TRUE(contains(text, core::format_time(kT0))) << text;
        EXPECT_EQ(contains(text, "Resolved"), kind == "resolved") << text;
        EXPECT_EQ(contains(text, "Still firing"), kind == "reminder") << text;
    }
    auto no_link = sample("firing");
    no_link.link = "";
    EXPECT_FALSE(contains(slack_body(no_link), "Open the dashboard"));
}

TEST(AlarmBodies, TheWebhookGetsEveryFieldAndTheStateItTellsOf) {
    auto body = json::parse(webhook_body(sample("firing"))).as_object();
    EXPECT_EQ(body.at("version").as_int64(), 1);
    EXPECT_EQ(body.at("id").as_int64(), 42);
    EXPECT_EQ(body.at("alarm").as_string(), "failing/list");
    EXPECT_EQ(body.at("rule").as_string(), "failing");
    EXPECT_EQ(body.at("scenario").as_string(), "list");
    EXPECT_EQ(body.at("kind").as_string(), "firing");
    EXPECT_EQ(body.at("state").as_string(), "firing");
    EXPECT_EQ(body.at("summary").as_string(), "the last 3 runs were bad: connection refused");
    EXPECT_EQ(body.at("link").as_string(), "https://aviary.example/dashboard#probe-list");
    EXPECT_EQ(body.at("at").as_string(), core::format_time(kT0 + 1s));
    EXPECT_EQ(body.at("since").as_string(), core::format_time(kT0));
    EXPECT_EQ(body.size(), 11U);
    EXPECT_EQ(json::parse(webhook_body(sample("resolved"))).as_object().at("state").as_string(),
              "ok");
    EXPECT_EQ(json::parse(webhook_body(sample("reminder"))).as_object().at("state").as_string(),
              "firing");
}

// --- a receiver on loopback -----------------------------------------------------------------

using Receiver = test::FakeReceiver;

constexpr std::string_view kSecret = "whsec-0123456789-abcdef";

class AlarmSenderTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(slack_.start());
        ASSERT_TRUE(hook_.start());
        store::Settings s;
        s.path = ":memory:";
        auto opened = store::open(s);
        ASSERT_TRUE(opened) << opened.error().message;
        store_ = std::move(*opened);
        settings_.notifiers = {
            Notifier{.name = "slack",
                     .type = Notifier::Type::kSlack,
                     .url = slack_.url("/services/T000/B000/slackpathsecret"),
                     .timeout = 5s},
            Notifier{.name = "hook",
                     .type = Notifier::Type::kWebhook,
                     .url = hook_.url("/hooks/aviary"),
                     .secret = std::string{kSecret},
                     .timeout = 5s},
        };
        settings_.delivery.retry_backoff = 10s;
        settings_.delivery.retry_backoff_max = 1min;
        settings_.delivery.give_up_after = 1h;
    }

    void TearDown() override {
        sender_.reset();
        if (store_) {
            store_->close();
        }
    }

    AlarmSender& sender() {
        if (!sender_) {
            sender_ = std::make_unique<AlarmSender>(settings_, *store_, clock_, &registry_);
        }
        return *sender_;
    }

    /// Writes a new alarm "failing/<scenario>" with a notification to each of `notifiers`,
    /// raised now; returns their ids.
    std::vector<std::int64_t> queue(std::string scenario,
                                    std::vector<std::string> notifiers,
                                    std::string kind = "firing") {
        store::AlarmState alarm{.name = "failing/" + scenario,
                                .rule = "failing",
                                .scenario = scenario,
                                .state = kind == "resolved" ? "ok" : "firing",
                                .since = clock_.now() - 1min,
                                .summary = "the last 3 runs were bad: connection refused"};
        std::vector<store::AlarmNotification> told;
        for (auto& notifier : notifiers) {
            told.push_back(store::AlarmNotification{
                .alarm = alarm.name,
                .rule = alarm.rule,
                .scenario = scenario,
                .notifier = notifier,
                .kind = kind,
                .summary = alarm.summary,
                .link = "https://aviary.example/dashboard#probe-" + scenario,
                .at = clock_.now(),
                .since = alarm.since});
        }
        auto written = store_->write_alarm(alarm, 0, told, {});
        EXPECT_TRUE(written && *written);
        auto all = store_->alarm_notifications(1000);
        EXPECT_TRUE(all);
        std::vector<std::int64_t> ids;
        if (all) {
            for (const auto& n : *all) {  // newest first
                if (n.alarm == alarm.name) {
                    ids.insert(ids.begin(), n.id);
                }
            }
        }
        return ids;
    }

    store::AlarmNotification notification(std::int64_t id) {
        auto all = store_->alarm_notifications(1000);
        EXPECT_TRUE(all);
        if (all) {
            for (const auto& n : *all) {
                if (n.id == id) {
                    return n;
                }
            }
        }
        ADD_FAILURE() << "no notification " << id;
        return {};
    }

    std::int64_t backlog() {
        auto count = store_->alarm_notification_backlog();
        EXPECT_TRUE(count);
        return count ? *count : -1;
    }

    double counted(std::string notifier, std::string outcome) {
        return registry_.counter("aviary_alarm_notifications_total", "", {"notifier", "outcome"})
            .with({notifier, outcome})
            .value();
    }

    core::ManualClock clock_{kT0};
    Receiver slack_;
    Receiver hook_;
    std::unique_ptr<store::Store> store_;
    metrics::Registry registry_;
    Settings settings_;
    std::unique_ptr<AlarmSender> sender_;
};

TEST_F(AlarmSenderTest, SlackGetsTheAlarmTheSummaryAndTheLinkAsText) {
    auto ids = queue("list", {"slack"});
    ASSERT_EQ(ids.size(), 1U);
    sender().run_once();
    auto got = slack_.received();
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0].method, "POST");
    EXPECT_EQ(got[0].path, "/services/T000/B000/slackpathsecret");
    EXPECT_EQ(got[0].header("Content-Type").value_or(""), "application/json");
    EXPECT_EQ(got[0].header("X-Aviary-Signature").value_or(""), "") << "Slack checks no signature";
    auto body = json::parse(got[0].body).as_object();
    ASSERT_EQ(body.size(), 1U) << got[0].body;
    std::string text{body.at("text").as_string()};
    EXPECT_TRUE(contains(text, "failing/list")) << text;
    EXPECT_TRUE(contains(text, "the last 3 runs were bad: connection refused")) << text;
    EXPECT_TRUE(contains(text, "https://aviary.example/dashboard#probe-list")) << text;
    EXPECT_TRUE(hook_.received().empty());

    auto n = notification(ids[0]);
    EXPECT_EQ(n.outcome, "sent");
    EXPECT_EQ(n.done_at, clock_.now());
    EXPECT_EQ(n.attempts, 0);
    EXPECT_EQ(backlog(), 0);
    EXPECT_EQ(counted("slack", "sent"), 1);

    // Sent is sent: a later pass posts nothing.
    clock_.advance(1h);
    sender().run_once();
    EXPECT_EQ(slack_.received().size(), 1U);
}

TEST_F(AlarmSenderTest, TheWebhookGetsTheNotificationAsJsonSignedWithTheSecret) {
    auto ids = queue("list", {"hook"});
    ASSERT_EQ(ids.size(), 1U);
    clock_.advance(1500ms);  // sent a moment after it was raised: the signature's time is now
    sender().run_once();
    auto got = hook_.received();
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0].path, "/hooks/aviary");
    EXPECT_EQ(got[0].header("Content-Type").value_or(""), "application/json");
    EXPECT_EQ(got[0].header("X-Aviary-Event").value_or(""), "firing");
    EXPECT_EQ(got[0].header("X-Aviary-Delivery").value_or(""), std::to_string(ids[0]));
    EXPECT_EQ(got[0].header("User-Agent").value_or(""), "aviary-alarms");
    auto body = json::parse(got[0].body).as_object();
    EXPECT_EQ(body.at("version").as_int64(), 1);
    EXPECT_EQ(body.at("id").as_int64(), ids[0]);
    EXPECT_EQ(body.at("alarm").as_string(), "failing/list");
    EXPECT_EQ(body.at("rule").as_string(), "failing");
    EXPECT_EQ(body.at("scenario").as_string(), "list");
    EXPECT_EQ(body.at("kind").as_string(), "firing");
    EXPECT_EQ(body.at("state").as_string(), "firing");
    EXPECT_EQ(body.at("summary").as_string(), "the last 3 runs were bad: connection refused");
    EXPECT_EQ(body.at("link").as_string(), "https://aviary.example/dashboard#probe-list");
    EXPECT_EQ(body.at("at").as_string(), core::format_time(kT0));
    EXPECT_EQ(body.at("since").as_string(), core::format_time(kT0 - 1min));

    // t=UNIX,v1=HEX(HMAC-SHA256(secret, "UNIX." + body)), verified as a receiver would.
    const auto& signature = got[0].header("X-Aviary-Signature").value_or("");
    const auto unix_now = std::to_string(
        std::chrono::duration_cast<std::chrono::seconds>(clock_.now().time_since_epoch()).count());
    ASSERT_TRUE(signature.starts_with("t=" + unix_now + ",v1=")) << signature;
    auto hex = signature.substr(signature.find(",v1=") + 4);
    EXPECT_EQ(hex, hmac(kSecret, unix_now + "." + got[0].body));
    EXPECT_NE(hex, hmac("another secret", unix_now + "." + got[0].body));
    EXPECT_EQ(notification(ids[0]).outcome, "sent");
}

TEST_F(AlarmSenderTest, AWebhookWithoutASecretIsNotSigned) {
    settings_.notifiers[1].secret = "";
    queue("list", {"hook"}, "resolved");
    sender().run_once();
    auto got = hook_.received();
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0].header("X-Aviary-Signature").value_or(""), "");
    EXPECT_EQ(got[0].header("X-Aviary-Event").value_or(""), "resolved");
    EXPECT_EQ(json::parse(got[0].body).as_object().at("state").as_string(), "ok");
}

TEST_F(AlarmSenderTest, EachNotificationGoesToItsOwnNotifier) {
    auto ids = queue("list", {"slack", "hook"});
    ASSERT_EQ(ids.size(), 2U);
    sender().run_once();
    EXPECT_EQ(slack_.received().size(), 1U);
    EXPECT_EQ(hook_.received().size(), 1U);
    EXPECT_EQ(notification(ids[0]).outcome, "sent");
    EXPECT_EQ(notification(ids[1]).outcome, "sent");
}

TEST_F(AlarmSenderTest, AFailedSendWaitsOutItsBackoffThenSucceeds) {
    hook_.answer(500, "upstream\nexploded");
    auto ids = queue("list", {"hook"});
    ASSERT_EQ(ids.size(), 1U);
    sender().run_once();
    ASSERT_EQ(hook_.received().size(), 1U);
    auto failed = notification(ids[0]);
    EXPECT_EQ(failed.outcome, "");
    EXPECT_EQ(failed.attempts, 1);
    EXPECT_TRUE(contains(failed.last_error, "500")) << failed.last_error;
    EXPECT_TRUE(contains(failed.last_error, "hook")) << failed.last_error;
    EXPECT_TRUE(contains(failed.last_error, "upstream exploded"))
        << "the receiver's answer on one line: " << failed.last_error;
    // The first retry waits retry_backoff (10s) ±20%.
    EXPECT_GE(failed.next_attempt_at, clock_.now() + 8s);
    EXPECT_LE(failed.next_attempt_at, clock_.now() + 12s);
    EXPECT_EQ(backlog(), 1);
    EXPECT_EQ(counted("hook", "failed"), 1);

    // Not due yet: a pass now posts nothing.
    sender().run_once();
    EXPECT_EQ(hook_.received().size(), 1U);

    hook_.answer(204, "");
    clock_.set(failed.next_attempt_at);
    sender().run_once();
    ASSERT_EQ(hook_.received().size(), 2U);
    auto sent = notification(ids[0]);
    EXPECT_EQ(sent.outcome, "sent");
    EXPECT_EQ(sent.attempts, 1);
    EXPECT_EQ(sent.done_at, clock_.now());
    EXPECT_EQ(backlog(), 0);
}

TEST_F(AlarmSenderTest, AReceiverFoundDownIsNotTriedAgainInThatPass) {
    hook_.answer(503, "down");
    auto first = queue("list", {"hook"});
    auto second = queue("submit", {"hook", "slack"});
    ASSERT_EQ(second.size(), 2U);
    sender().run_once();
    EXPECT_EQ(hook_.received().size(), 1U) << "one request to the receiver that is down";
    EXPECT_EQ(slack_.received().size(), 1U) << "the other receiver is not held up";
    EXPECT_EQ(notification(first[0]).attempts, 1);
    EXPECT_EQ(notification(second[0]).attempts, 1);
    EXPECT_TRUE(contains(notification(second[0]).last_error, "503"));
    EXPECT_EQ(notification(second[1]).outcome, "sent");
}

// Notifications of one alarm to one notifier reach it in the order they were raised: a
// "firing" waiting out its backoff must not be delivered after the "resolved" raised meanwhile,
// or the receiver (a Slack channel) is told last that an alarm fires that is ok. (Found by this
// test when the due list was ordered by next_attempt_at alone; fixed in b25ad24.)
TEST_F(AlarmSenderTest, AResolvedAlarmIsNeverFollowedByItsOlderFiring) {
    hook_.answer(503, "down");
    auto firing = queue("list", {"hook"});
    ASSERT_EQ(firing.size(), 1U);
    sender().run_once();  // fails: the firing waits 8..12 s
    ASSERT_EQ(hook_.received().size(), 1U);

    // The alarm resolves a second later (as after keep_firing_for), and the receiver is back.
    clock_.advance(1s);
    auto alarms = store_->alarm_states();
    ASSERT_TRUE(alarms && alarms->size() == 1U);
    auto resolved = (*alarms)[0];
    resolved.state = "ok";
    resolved.since = clock_.now();
    auto written = store_->write_alarm(resolved, resolved.version,
                                       {store::AlarmNotification{.alarm = resolved.name,
                                                                 .rule = resolved.rule,
                                                                 .scenario = resolved.scenario,
                                                                 .notifier = "hook",
                                                                 .kind = "resolved",
                                                                 .summary = "the last run passed",
                                                                 .at = clock_.now(),
                                                                 .since = clock_.now()}},
                                       {});
    ASSERT_TRUE(written && *written);
    hook_.answer(200);

    // Passes until the outbox is empty.
    for (int i = 0; i < 10 && backlog() > 0; ++i) {
        sender().run_once();
        clock_.advance(15s);
    }
    EXPECT_EQ(backlog(), 0);
    std::vector<std::string> accepted;
    auto got = hook_.received();
    for (std::size_t i = 1; i < got.size(); ++i) {  // the first was answered 503
        accepted.push_back(got[i].header("X-Aviary-Event").value_or(""));
    }
    ASSERT_FALSE(accepted.empty());
    EXPECT_EQ(accepted.back(), "resolved")
        << "what the receiver heard, in order: " << testing::PrintToString(accepted);
}

TEST_F(AlarmSenderTest, ANotifierNoLongerConfiguredIsAbandoned) {
    auto ids = queue("list", {"pager"});
    ASSERT_EQ(ids.size(), 1U);
    sender().run_once();
    auto n = notification(ids[0]);
    EXPECT_EQ(n.outcome, "abandoned");
    EXPECT_EQ(n.last_error, "notifier \"pager\" is no longer configured");
    EXPECT_EQ(n.done_at, clock_.now());
    EXPECT_EQ(backlog(), 0);
    EXPECT_TRUE(slack_.received().empty());
    EXPECT_TRUE(hook_.received().empty());
    EXPECT_EQ(counted("pager", "abandoned"), 1);
}

TEST_F(AlarmSenderTest, ANotificationNotDeliveredWithinGiveUpAfterIsAbandoned) {
    hook_.answer(500, "no");
    auto ids = queue("list", {"hook"});
    ASSERT_EQ(ids.size(), 1U);
    clock_.advance(59min);
    sender().run_once();
    EXPECT_EQ(notification(ids[0]).outcome, "") << "still within the hour";
    EXPECT_EQ(notification(ids[0]).attempts, 1);
    clock_.advance(1min);
    sender().run_once();
    EXPECT_EQ(hook_.received().size(), 2U) << "it was tried once more";
    auto n = notification(ids[0]);
    EXPECT_EQ(n.outcome, "abandoned");
    EXPECT_TRUE(n.last_error.starts_with("not delivered within 1h: ")) << n.last_error;
    EXPECT_TRUE(contains(n.last_error, "500")) << n.last_error;
    EXPECT_EQ(backlog(), 0);
    auto next = store_->next_alarm_notification_at();
    ASSERT_TRUE(next);
    EXPECT_FALSE(*next) << "nothing is retried for ever";
}

TEST_F(AlarmSenderTest, TheWebhookSecretIsNeverSentNorStored) {
    hook_.answer(401, "bad signature");
    auto ids = queue("list", {"hook"});
    sender().run_once();
    auto got = hook_.received();
    ASSERT_EQ(got.size(), 1U);
    EXPECT_FALSE(contains(got[0].body, kSecret));
    for (const auto& h : got[0].headers) {
        EXPECT_FALSE(contains(h.value, kSecret)) << h.name;
    }
    auto n = notification(ids[0]);
    EXPECT_TRUE(contains(n.last_error, "401")) << n.last_error;
    EXPECT_FALSE(contains(n.last_error, kSecret)) << n.last_error;
}

TEST_F(AlarmSenderTest, ASlackUrlIsKeptOutOfTheErrorWhenItsReceiverIsDown) {
    // serve adds a Slack webhook's URL to the redactor at start (it is the credential).
    core::redactor().add_secret(settings_.notifiers[0].url);
    slack_.stop();  // connections to its port are refused now
    auto ids = queue("list", {"slack"});
    sender().run_once();
    auto n = notification(ids[0]);
    EXPECT_EQ(n.outcome, "");
    EXPECT_EQ(n.attempts, 1);
    EXPECT_TRUE(contains(n.last_error, "slack")) << n.last_error;
    EXPECT_FALSE(contains(n.last_error, "slackpathsecret")) << n.last_error;
}

}  // namespace
}  // namespace aviary::notify
