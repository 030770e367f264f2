// probes.alarms and notify.notifiers / notify.delivery (docs/probes.md, "Alarms" and
// "Notifiers"): every field read, and each mistake reported with its line and column, the
// key's path and what to write instead, never echoing a secret.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config_support.hpp"

namespace aviary::config {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Strings = std::vector<std::string>;
using test::error_of;

bool contains(std::string_view text, std::string_view part) {
    return text.find(part) != std::string_view::npos;
}

class AlarmsDir {
public:
    AlarmsDir()
        : path_(fs::temp_directory_path() /
                ("aviary-alarms-test-" + std::to_string(::getpid()) + "-" + core::new_id())) {
        fs::create_directories(path_);
    }
    ~AlarmsDir() { fs::remove_all(path_); }
    AlarmsDir(const AlarmsDir&) = delete;
    AlarmsDir& operator=(const AlarmsDir&) = delete;
    fs::path write(const std::string& name, const std::string& text) const {
        auto file = path_ / name;
        std::ofstream{file, std::ios::binary} << text;
        return file;
    }

private:
    fs::path path_;
};

/// Three scenarios (one not enabled) and an alarm "a" whose body starts on line 14, indented
/// six spaces.
constexpr std::string_view kHead = R"(probes:
  scenarios:
    list:
      node: lotus-0
      labels: {tier: gold}
      steps: [{tcp: "127.0.0.1:1"}]
    submit:
      steps: [{tcp: "127.0.0.1:2"}]
    manual:
      enabled: false
      steps: [{tcp: "127.0.0.1:3"}]
  alarms:
    a:
)";

std::string alarm(std::string_view body, std::string_view after = "") {
    return std::string{kHead} + std::string{body} + std::string{after};
}

TEST(AlarmsReader, EveryFieldOfTheAlarmsAndTheNotifiersIsRead) {
    AlarmsDir dir;
    dir.write("slack.url", "https://hooks.slack.com/services/T0/B0/slacksecret\n");
    dir.write("hook.secret", "file-secret-0123\n");
    auto ca = dir.write("ca.pem", "pem");
    ::setenv("AVIARY_TEST_ALARM_HOOK_SECRET", "env-secret-4567", 1);
    ::setenv("AVIARY_TEST_ALARM_HOOK_URL", "http://127.0.0.1:9000/hook", 1);
    auto file = dir.write("aviary.yaml", R"(notify:
  notifiers:
    team:
      type: slack
      url_file: slack.url
      timeout: 3s
    pager:
      type: webhook
      url: https://hooks.example/aviary
      secret_env: AVIARY_TEST_ALARM_HOOK_SECRET
      timeout: 2s
      tls: {ca_file: ca.pem}
    plain:
      type: webhook
      url_env: AVIARY_TEST_ALARM_HOOK_URL
      secret_file: hook.secret
  delivery:
    retry_backoff: 2s
    retry_backoff_max: 1m
    give_up_after: 6h
    poll: 1s
probes:
  evaluate_every: 10s
  public_url: https://aviary.example
  silence_actions: [upgrade, restore]
  scenarios:
    list:
      node: lotus-0
      labels: {tier: gold}
      steps: [{tcp: "127.0.0.1:1"}]
    submit:
      steps: [{tcp: "127.0.0.1:2"}]
  alarms:
    avail:
      kind: availability
      scenarios: [list]
      measure: correctness
      threshold: 0.9
      period: 10m
      periods: 6
      breaching: 4
      for: 1m
      keep_firing_for: 10m
      repeat: never
      notify: [team]
    failing:
      kind: consecutive
      selector: {tier: gold}
      failures: 2
      repeat: 1h
    slo:
      kind: slo
      measure: success
      objective: 99.9%
      window: 7d
      notify: [pager, plain]
)");
    auto loaded = load_file(file.string());
    ::unsetenv("AVIARY_TEST_ALARM_HOOK_SECRET");
    ::unsetenv("AVIARY_TEST_ALARM_HOOK_URL");
    ASSERT_TRUE(loaded) << loaded.error().message;

    const auto& n = loaded->notify;
    ASSERT_EQ(n.notifiers.size(), 3U);
    EXPECT_EQ(n.notifiers[0].name, "team");
    EXPECT_EQ(n.notifiers[0].type, notify::Notifier::Type::kSlack);
    EXPECT_EQ(n.notifiers[0].url, "https://hooks.slack.com/services/T0/B0/slacksecret");
    EXPECT_EQ(n.notifiers[0].secret, "");
    EXPECT_EQ(n.notifiers[0].timeout, 3s);
    EXPECT_EQ(n.notifiers[1].name, "pager");
    EXPECT_EQ(n.notifiers[1].type, notify::Notifier::Type::kWebhook);
    EXPECT_EQ(n.notifiers[1].url, "https://hooks.example/aviary");
    EXPECT_EQ(n.notifiers[1].secret, "env-secret-4567");
    EXPECT_EQ(n.notifiers[1].timeout, 2s);
    EXPECT_EQ(n.notifiers[1].tls.ca_file, ca.string()) << "resolved beside the config";
    EXPECT_EQ(n.notifiers[2].name, "plain");
    EXPECT_EQ(n.notifiers[2].url, "http://127.0.0.1:9000/hook");
    EXPECT_EQ(n.notifiers[2].secret, "file-secret-0123");
    EXPECT_EQ(n.notifiers[2].timeout, 10s) << "the default";
    EXPECT_EQ(n.delivery.retry_backoff, 2s);
    EXPECT_EQ(n.delivery.retry_backoff_max, 1min);
    EXPECT_EQ(n.delivery.give_up_after, 6h);
    EXPECT_EQ(n.delivery.poll, 1s);

    const auto& p = loaded->probes;
    EXPECT_EQ(p.evaluate_every, 10s);
    EXPECT_EQ(p.public_url, "https://aviary.example");
    EXPECT_EQ(p.silence_actions, (Strings{"upgrade", "restore"}));
    EXPECT_EQ(p.notifiers, (Strings{"team", "pager", "plain"}));
    ASSERT_EQ(p.scenarios.size(), 2U);
    EXPECT_EQ(p.scenarios[0].node, "lotus-0");
    ASSERT_EQ(p.alarms.size(), 3U);

    const auto& avail = p.alarms[0];
    EXPECT_EQ(avail.name, "avail");
    EXPECT_EQ(avail.kind, probes::AlarmKind::kAvailability);
    EXPECT_EQ(avail.scenarios, (Strings{"list"}));
    EXPECT_EQ(avail.measure, probes::Measure::kCorrectness);
    EXPECT_DOUBLE_EQ(avail.threshold, 0.9);
    EXPECT_EQ(avail.period, 10min);
    EXPECT_EQ(avail.periods, 6);
    EXPECT_EQ(avail.breaching, 4);
    EXPECT_EQ(avail.pending, 1min);
    EXPECT_EQ(avail.keep_firing_for, 10min);
    EXPECT_EQ(avail.repeat, 0ms) << "never";
    EXPECT_EQ(avail.notify, (Strings{"team"}));

    const auto& failing = p.alarms[1];
    EXPECT_EQ(failing.kind, probes::AlarmKind::kConsecutiveFailures);
    EXPECT_TRUE(failing.scenarios.empty());
    EXPECT_EQ(failing.selector, (core::Labels{{"tier", "gold"}}));
    EXPECT_EQ(failing.failures, 2);
    EXPECT_EQ(failing.measure, probes::Measure::kSuccess) << "any bad run, unless told";
    EXPECT_EQ(failing.repeat, 1h);
    EXPECT_EQ(failing.pending, 0ms) << "the default";
    EXPECT_EQ(failing.keep_firing_for, 5min) << "the default";
    EXPECT_TRUE(failing.notify.empty()) << "empty: every notifier";

    const auto& slo = p.alarms[2];
    EXPECT_EQ(slo.kind, probes::AlarmKind::kSlo);
    EXPECT_EQ(slo.measure, probes::Measure::kSuccess);
    EXPECT_DOUBLE_EQ(slo.objective, 0.999);
    EXPECT_EQ(slo.window, std::chrono::hours{24 * 7});
    EXPECT_EQ(slo.notify, (Strings{"pager", "plain"}));

    // The pairs the rules make: disabled scenarios never, the selector by labels.
    std::vector<std::string> pairs;
    for (const auto& [rule, scenario] : probes::Alarms::pairs(p)) {
        pairs.push_back(rule->name + "/" + scenario->name);
    }
    EXPECT_EQ(pairs, (Strings{"avail/list", "failing/list", "slo/list", "slo/submit"}));
}

TEST(AlarmsReader, SharesAreWrittenAsPercentOrAFraction) {
    auto loaded = load_string(alarm("      threshold: \"99.5%\"\n"), "aviary.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_DOUBLE_EQ(loaded->probes.alarms[0].threshold, 0.995);
    loaded = load_string(alarm("      threshold: 1\n"), "aviary.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_DOUBLE_EQ(loaded->probes.alarms[0].threshold, 1.0);
    // A consecutive rule told its measure keeps it.
    loaded =
        load_string(alarm("      kind: consecutive\n      measure: availability\n"), "aviary.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->probes.alarms[0].measure, probes::Measure::kAvailability);
}

TEST(AlarmsReader, AKeyOfAnotherKindIsRefusedWhereItIs) {
    EXPECT_EQ(error_of(alarm("      kind: availability\n      failures: 2\n")),
              "aviary.yaml:15:17: probes.alarms.a.failures: failures applies to alarms of kind "
              "consecutive, and this one is availability");
    EXPECT_EQ(error_of(alarm("      kind: slo\n      threshold: 90%\n")),
              "aviary.yaml:15:18: probes.alarms.a.threshold: threshold applies to alarms of "
              "kind availability, and this one is slo");
    // Whatever the order of the keys.
    EXPECT_EQ(error_of(alarm("      window: 7d\n      kind: consecutive\n")),
              "aviary.yaml:14:15: probes.alarms.a.window: window applies to alarms of kind slo, "
              "and this one is consecutive");
    // Without a kind, a rule is an availability rule.
    EXPECT_EQ(error_of(alarm("      objective: 99%\n")),
              "aviary.yaml:14:18: probes.alarms.a.objective: objective applies to alarms of "
              "kind slo, and this one is availability");
}

// exposes: probes_reader.cpp's read_alarm() keeps kind "availability" when the kind is
// misspelt (read_choice refuses it and leaves `kind` as it was), then judges the other keys
// against it: `kind: consecutiv` with `failures: 2` gets a second, wrong error saying the rule
// is an availability rule. Only the misspelt kind should be reported.
TEST(AlarmsReader, AMisspeltKindIsTheOnlyErrorReported) {
    EXPECT_EQ(error_of(alarm("      kind: consecutiv\n      failures: 2\n")),
              "aviary.yaml:14:13: probes.alarms.a.kind: unknown alarm kind \"consecutiv\" "
              "(availability, consecutive, slo)");
}

TEST(AlarmsReader, APeriodIsAMultipleOfFiveMinutes) {
    EXPECT_EQ(error_of(alarm("      period: 7m\n")),
              "aviary.yaml:14:15: probes.alarms.a.period: the period must be a multiple of 5m "
              "(runs are counted in buckets that wide)");
    EXPECT_EQ(error_of(alarm("      period: 5m30s\n")),
              "aviary.yaml:14:15: probes.alarms.a.period: the period must be a multiple of 5m "
              "(runs are counted in buckets that wide)");
    EXPECT_TRUE(load_string(alarm("      period: 15m\n"), "aviary.yaml"));
}

TEST(AlarmsReader, BreachingCannotExceedPeriods) {
    EXPECT_EQ(error_of(alarm("      periods: 3\n      breaching: 4\n")),
              "aviary.yaml:15:18: probes.alarms.a.breaching: breaching (4) cannot exceed "
              "periods (3)");
    // Against the default of 5 periods.
    EXPECT_EQ(error_of(alarm("      breaching: 6\n")),
              "aviary.yaml:14:18: probes.alarms.a.breaching: breaching (6) cannot exceed "
              "periods (5)");
    EXPECT_TRUE(load_string(alarm("      periods: 4\n      breaching: 4\n"), "aviary.yaml"));
}

TEST(AlarmsReader, AThresholdIsAShareUpTo100Percent) {
    EXPECT_EQ(error_of(alarm("      threshold: 150%\n")),
              "aviary.yaml:14:18: probes.alarms.a.threshold: \"150%\" is not a share between 0 "
              "and 100%");
    EXPECT_EQ(error_of(alarm("      threshold: 95\n")),
              "aviary.yaml:14:18: probes.alarms.a.threshold: \"95\" is not a share between 0 "
              "and 100% (write 95% or 0.95)");
    EXPECT_EQ(error_of(alarm("      threshold: 0%\n")),
              "aviary.yaml:14:18: probes.alarms.a.threshold: \"0%\" is not a share between 0 "
              "and 100%");
    EXPECT_EQ(error_of(alarm("      threshold: high\n")),
              "aviary.yaml:14:18: probes.alarms.a.threshold: \"high\" is not a share: write 95% "
              "or 0.95");
    EXPECT_EQ(error_of(alarm("      threshold: 95%%\n")),
              "aviary.yaml:14:18: probes.alarms.a.threshold: \"95%%\" is not a share: write 95% "
              "or 0.95");
}

TEST(AlarmsReader, AScenarioNamedMustExistAndBeEnabled) {
    EXPECT_EQ(error_of(alarm("      scenarios: [list, sbumit]\n")),
              "aviary.yaml:14:25: probes.alarms.a.scenarios[1]: no scenario \"sbumit\"; did you "
              "mean \"submit\"?");
    EXPECT_EQ(error_of(alarm("      scenarios: [nothing-like-it]\n")),
              "aviary.yaml:14:19: probes.alarms.a.scenarios[0]: no scenario \"nothing-like-it\"");
    EXPECT_EQ(error_of(alarm("      scenarios: [manual]\n")),
              "aviary.yaml:14:19: probes.alarms.a.scenarios[0]: scenario \"manual\" is not "
              "enabled: it never runs on a schedule, so it cannot alarm");
    EXPECT_EQ(error_of(alarm("      scenarios: [list]\n      selector: {tier: gold}\n")),
              "aviary.yaml:15:17: probes.alarms.a.selector: name the scenarios or give a "
              "selector, not both");
}

TEST(AlarmsReader, AnAlarmNotifiesOnlyNotifiersThatExist) {
    const std::string notifiers = R"(notify:
  notifiers:
    pager:
      type: webhook
      url: http://127.0.0.1:9000/hook
)";
    EXPECT_EQ(error_of(alarm("      notify: [pagr]\n", notifiers)),
              "aviary.yaml:14:16: probes.alarms.a.notify[0]: no notifier \"pagr\" in "
              "notify.notifiers; did you mean \"pager\"?");
    EXPECT_EQ(error_of(alarm("      notify: [pager, slack]\n")),
              "aviary.yaml:14:16: probes.alarms.a.notify[0]: no notifier \"pager\" in "
              "notify.notifiers\n"
              "aviary.yaml:14:23: probes.alarms.a.notify[1]: no notifier \"slack\" in "
              "notify.notifiers");
    auto loaded = load_string(alarm("      notify: [pager]\n", notifiers), "aviary.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->probes.alarms[0].notify, (Strings{"pager"}));
}

TEST(AlarmsReader, AnSloNeedsABudgetAndAWindowOfAtLeastSixHours) {
    EXPECT_EQ(error_of(alarm("      kind: slo\n      objective: 100%\n")),
              "aviary.yaml:15:18: probes.alarms.a.objective: an objective of 100% leaves no "
              "error budget to burn");
    EXPECT_EQ(error_of(alarm("      kind: slo\n      window: 1h\n")),
              "aviary.yaml:15:15: probes.alarms.a.window: an SLO window must be at least 6h (the "
              "slow burn is read over 6h)");
    EXPECT_TRUE(load_string(alarm("      kind: slo\n      window: 6h\n"), "aviary.yaml"));
}

// Buckets are kept max(probes.retention, 31d) (src/probes/service.cpp, schedule_retention): a
// longer SLO window would be judged silently over fewer days than written. (Found by this test;
// refused since b25ad24.)
TEST(AlarmsReader, AnSloWindowIsNoLongerThanTheRunsAreCountedFor) {
    auto message = error_of(alarm("      kind: slo\n      window: 90d\n"));
    EXPECT_TRUE(message.starts_with("aviary.yaml:15:15: probes.alarms.a.window: ")) << message;
    EXPECT_TRUE(contains(message, "retention")) << message;
    // Kept long enough, it is fine.
    auto kept =
        "probes:\n  retention: 90d\n" + alarm("      kind: slo\n      window: 90d\n").substr(8);
    auto loaded = load_string(kept, "aviary.yaml");
    EXPECT_TRUE(loaded) << loaded.error().message;
    EXPECT_TRUE(load_string(alarm("      kind: slo\n      window: 30d\n"), "aviary.yaml"));
}

TEST(AlarmsReader, TheRestOfAnAlarmIsChecked) {
    EXPECT_EQ(error_of(alarm("      kind: burn\n")),
              "aviary.yaml:14:13: probes.alarms.a.kind: unknown alarm kind \"burn\" "
              "(availability, consecutive, slo)");
    EXPECT_EQ(error_of(alarm("      measure: uptime\n")),
              "aviary.yaml:14:16: probes.alarms.a.measure: unknown measure \"uptime\" "
              "(availability, correctness, success)");
    EXPECT_TRUE(contains(error_of(alarm("      repeat: sometimes\n")),
                         "aviary.yaml:14:15: probes.alarms.a.repeat: "));
    EXPECT_TRUE(contains(error_of(alarm("      kind: consecutive\n      failures: 0\n")),
                         "aviary.yaml:15:17: probes.alarms.a.failures: "));
    EXPECT_EQ(error_of(std::string{kHead.substr(0, kHead.size() - 7)} + "    bad name: {}\n"),
              "aviary.yaml:13:5: probes.alarms.bad name: \"bad name\" is not an alarm name "
              "(letters, digits, _, - and ., at most 64)");
    EXPECT_EQ(error_of(alarm("      failurs: 3\n")),
              "aviary.yaml:14:7: probes.alarms.a.failurs: unknown key \"failurs\"; did you mean "
              "\"failures\"?");
}

// --- notify.notifiers ----------------------------------------------------------------------

std::string notifier(std::string_view body) {
    return "notify:\n  notifiers:\n    n:\n" + std::string{body};  // body from line 4
}

TEST(NotifiersReader, ASlackUrlIsASecretAndNeverInline) {
    auto message =
        error_of(notifier("      type: slack\n"
                          "      url: https://hooks.slack.com/services/T0/B0/hunter2\n"));
    EXPECT_EQ(message,
              "aviary.yaml:5:12: notify.notifiers.n.url: a Slack webhook's url is a secret: give "
              "url_file or url_env");
    EXPECT_FALSE(contains(message, "hunter2"));
}

TEST(NotifiersReader, ASecretIsNeverInline) {
    auto message =
        error_of(notifier("      type: webhook\n"
                          "      url: https://hooks.example/x\n"
                          "      secret: hunter2-secret\n"));
    EXPECT_EQ(message,
              "aviary.yaml:6:15: notify.notifiers.n.secret: the secret must come from "
              "secret_file or secret_env, never inline");
    EXPECT_FALSE(contains(message, "hunter2"));
}

TEST(NotifiersReader, AUrlCarriesNoCredentials) {
    auto message =
        error_of(notifier("      type: webhook\n"
                          "      url: https://aviary:hunter2@hooks.example/x\n"));
    EXPECT_EQ(message,
              "aviary.yaml:5:12: notify.notifiers.n.url: the url must not carry credentials: "
              "put them in a file or the environment");
    EXPECT_FALSE(contains(message, "hunter2"));
    // Nor from the environment, and the message does not echo it either.
    ::setenv("AVIARY_TEST_ALARM_CRED_URL", "https://u:hunter2@hooks.slack.com/services/x", 1);
    message = error_of(notifier("      type: slack\n      url_env: AVIARY_TEST_ALARM_CRED_URL\n"));
    ::unsetenv("AVIARY_TEST_ALARM_CRED_URL");
    EXPECT_EQ(message,
              "aviary.yaml:5:16: notify.notifiers.n.url_env: the url must not carry "
              "credentials: put them in a file or the environment");
    EXPECT_FALSE(contains(message, "hunter2"));
}

TEST(NotifiersReader, SlackTakesNoSecretAndEveryNotifierATypeAndOneUrl) {
    ::setenv("AVIARY_TEST_ALARM_SLACK_URL", "https://hooks.slack.com/services/T0/B0/x", 1);
    EXPECT_EQ(error_of(notifier("      type: slack\n"
                                "      url_env: AVIARY_TEST_ALARM_SLACK_URL\n"
                                "      secret_env: HOME\n")),
              "aviary.yaml:6:19: notify.notifiers.n.secret_env: Slack does not check "
              "signatures: a secret applies to type webhook");
    EXPECT_EQ(error_of(notifier("      url_env: AVIARY_TEST_ALARM_SLACK_URL\n")),
              "aviary.yaml:4:7: notify.notifiers.n: notifier n needs a type: slack or webhook");
    EXPECT_EQ(error_of(notifier("      type: email\n      url: https://x\n")),
              "aviary.yaml:4:13: notify.notifiers.n.type: unknown notifier type \"email\" "
              "(slack, webhook)");
    ::unsetenv("AVIARY_TEST_ALARM_SLACK_URL");
    EXPECT_EQ(error_of(notifier("      type: webhook\n")),
              "aviary.yaml:4:7: notify.notifiers.n: notifier n needs a url (url, url_file or "
              "url_env)");
    EXPECT_EQ(error_of(notifier("      type: webhook\n"
                                "      url: https://hooks.example/x\n"
                                "      url_env: HOME\n")),
              "aviary.yaml:5:12: notify.notifiers.n.url: give url, url_file or url_env, only one");
    EXPECT_EQ(error_of(notifier("      type: webhook\n"
                                "      url: http://hooks.example/x\n"
                                "      tls: {ca_file: /etc/hostname}\n")),
              "aviary.yaml:6:12: notify.notifiers.n.tls: tls applies to an https:// url only");
}

TEST(NotifiersReader, DeliveryBacksOffNoFurtherThanItsCap) {
    EXPECT_EQ(error_of("notify:\n  delivery:\n    retry_backoff: 10s\n    retry_backoff_max: 5s\n"),
              "aviary.yaml:4:24: notify.delivery.retry_backoff_max: retry_backoff_max (5s) must "
              "be at least retry_backoff (10s)");
}

}  // namespace
}  // namespace aviary::config
