// The `notify:` section: Grafana's url, its token from a file or the environment, the actions
// annotated (checked against the merged action list) and the rest of the sender's settings.
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

class NotifyDir {
public:
    NotifyDir()
        : path_(fs::temp_directory_path() /
                ("aviary-notify-test-" + std::to_string(::getpid()) + "-" + core::new_id())) {
        fs::create_directories(path_);
    }
    ~NotifyDir() { fs::remove_all(path_); }
    NotifyDir(const NotifyDir&) = delete;
    NotifyDir& operator=(const NotifyDir&) = delete;
    fs::path write(const std::string& name, const std::string& text) const {
        auto file = path_ / name;
        std::ofstream{file, std::ios::binary} << text;
        return file;
    }

private:
    fs::path path_;
};

TEST(NotifyReader, WithoutTheSectionGrafanaIsOff) {
    auto loaded = load_string("{}\n", "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->notify.grafana.url, "");
    EXPECT_EQ(loaded->notify.grafana.token, "");
    EXPECT_EQ(loaded->notify.grafana.actions,
              (Strings{"upgrade", "install-snapshot", "create-canary", "delete-canary"}));
}

TEST(NotifyReader, ReadsEveryKeyWithTheTokenFromAFileBesideTheConfig) {
    NotifyDir dir;
    dir.write("grafana.token", "glsa_secret\n");
    auto file = dir.write("aviary.yaml", R"(notify:
  grafana:
    url: http://grafana.example:3000/
    token_file: grafana.token
    actions: [upgrade, noop]
    tags: [env:prod, aviary]
    timeout: 2s
    retry_backoff: 250ms
    retry_backoff_max: 1m
    poll: 50ms
)");
    auto loaded = load_file(file.string());
    ASSERT_TRUE(loaded) << loaded.error().message;
    const auto& g = loaded->notify.grafana;
    EXPECT_EQ(g.url, "http://grafana.example:3000/");
    EXPECT_EQ(g.token, "glsa_secret");
    EXPECT_EQ(g.actions, (Strings{"upgrade", "noop"}));
    EXPECT_EQ(g.tags, (Strings{"env:prod", "aviary"}));
    EXPECT_EQ(g.timeout, 2s);
    EXPECT_EQ(g.retry_backoff, 250ms);
    EXPECT_EQ(g.retry_backoff_max, 1min);
    EXPECT_EQ(g.poll, 50ms);
}

TEST(NotifyReader, AnHttpsGrafanaTakesACaFileAndAClientCertificateBesideTheConfig) {
    NotifyDir dir;
    dir.write("grafana.token", "glsa_secret\n");
    auto ca = dir.write("ca.pem", "pem");
    auto cert = dir.write("client.pem", "pem");
    auto key = dir.write("client.key", "pem");
    auto file = dir.write("aviary.yaml", R"(notify:
  grafana:
    url: https://grafana.example
    token_file: grafana.token
    tls:
      ca_file: ca.pem
      cert_file: client.pem
      key_file: client.key
)");
    auto loaded = load_file(file.string());
    ASSERT_TRUE(loaded) << loaded.error().message;
    const auto& g = loaded->notify.grafana;
    EXPECT_EQ(g.url, "https://grafana.example");
    EXPECT_EQ(g.tls.ca_file, ca.string()) << "resolved beside the config";
    EXPECT_EQ(g.tls.cert_file, cert.string());
    EXPECT_EQ(g.tls.key_file, key.string());
}

TEST(NotifyReader, TlsFilesAreCheckedAtLoadAndOnlyForHttps) {
    auto head = std::string{
        "notify:\n  grafana:\n    url: https://g\n    token_env: HOME\n"
        "    tls:\n"};
    EXPECT_EQ(error_of(head + "      ca_file: /nonexistent/ca.pem\n"),
              "aviary.yaml:6:16: notify.grafana.tls.ca_file: cannot read TLS CA file "
              "\"/nonexistent/ca.pem\": No such file or directory");
    EXPECT_EQ(error_of(head + "      key_file: /etc/hostname\n"),
              "aviary.yaml:6:17: notify.grafana.tls.key_file: key_file without cert_file: a "
              "client certificate needs both");
    EXPECT_EQ(error_of(head + "      cafile: x\n"),
              "aviary.yaml:6:7: notify.grafana.tls.cafile: unknown key \"cafile\"; did you mean "
              "\"ca_file\"?");
    EXPECT_EQ(error_of("notify:\n  grafana:\n    url: http://g\n    token_env: HOME\n"
                       "    tls: {ca_file: /etc/hostname}\n"),
              "aviary.yaml:5:10: notify.grafana.tls: tls applies to an https:// url only; this "
              "url is http://");
}

TEST(NotifyReader, TheTokenMayComeFromTheEnvironment) {
    ::setenv("AVIARY_TEST_GRAFANA_TOKEN", "glsa_env", 1);
    auto loaded = load_string(
        "notify:\n  grafana: {url: \"http://127.0.0.1:3000\", token_env: "
        "AVIARY_TEST_GRAFANA_TOKEN}\n",
        "t.yaml");
    ::unsetenv("AVIARY_TEST_GRAFANA_TOKEN");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->notify.grafana.token, "glsa_env");
}

TEST(NotifyReader, AUrlNeedsExactlyOneTokenSource) {
    EXPECT_EQ(error_of("notify:\n  grafana:\n    url: http://g:3000\n"),
              "aviary.yaml:3:10: notify.grafana.url: a url needs a token: set exactly one of "
              "token_file or token_env");
    EXPECT_EQ(error_of("notify:\n  grafana:\n    url: http://g:3000\n    token_file: a\n"
                       "    token_env: B\n"),
              "aviary.yaml:3:10: notify.grafana.url: set exactly one of token_file or token_env, "
              "not both");
    ::unsetenv("AVIARY_TEST_UNSET_GRAFANA");
    EXPECT_EQ(error_of("notify:\n  grafana:\n    url: http://g:3000\n"
                       "    token_env: AVIARY_TEST_UNSET_GRAFANA\n"),
              "aviary.yaml:4:16: notify.grafana.token_env: environment variable "
              "\"AVIARY_TEST_UNSET_GRAFANA\" is not set");
}

TEST(NotifyReader, WithoutAUrlNoTokenIsRead) {
    auto loaded =
        load_string("notify:\n  grafana: {url: \"\", token_file: /nonexistent/token}\n", "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->notify.grafana.token, "");
}

TEST(NotifyReader, AnInlineTokenIsRefusedWithoutEchoingIt) {
    auto message = error_of("notify:\n  grafana:\n    url: http://g\n    token: glsa_hunter2\n");
    EXPECT_EQ(message,
              "aviary.yaml:4:12: notify.grafana.token: the token must come from token_file or "
              "token_env, never inline");
    EXPECT_EQ(message.find("hunter2"), std::string::npos);
}

TEST(NotifyReader, TheUrlIsHttpOrHttpsWithAHostAndNoCredentials) {
    auto url_error = [](std::string_view url) {
        return error_of(std::string{"notify:\n  grafana:\n    url: \""} + std::string{url} +
                        "\"\n    token_env: HOME\n");
    };
    EXPECT_EQ(url_error("grafana:3000"),
              "aviary.yaml:3:10: notify.grafana.url: expected an http:// or https:// url like "
              "\"https://grafana.example\"");
    EXPECT_EQ(url_error("https://"), "aviary.yaml:3:10: notify.grafana.url: the url has no host");
    EXPECT_EQ(url_error("https://admin:pw@g"),
              "aviary.yaml:3:10: notify.grafana.url: the url must not carry credentials: put the "
              "token in token_file or token_env");
    EXPECT_EQ(url_error("http://"), "aviary.yaml:3:10: notify.grafana.url: the url has no host");
    EXPECT_EQ(url_error("http://admin:pw@g:3000"),
              "aviary.yaml:3:10: notify.grafana.url: the url must not carry credentials: put the "
              "token in token_file or token_env");
    EXPECT_EQ(url_error("http://g:99999"),
              "aviary.yaml:3:10: notify.grafana.url: \"99999\" is not a port");
    EXPECT_EQ(url_error("http://g:3000/?orgId=1"),
              "aviary.yaml:3:10: notify.grafana.url: the url must not contain spaces, a query or "
              "a fragment");
    auto loaded = load_string(
        "notify:\n  grafana: {url: \"http://[::1]:3000/grafana\", token_env: HOME}\n", "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
}

TEST(NotifyReader, ActionsMustBeKnownAfterTheMerge) {
    EXPECT_EQ(error_of("notify:\n  grafana:\n    actions: [upgrade, upgrde, nothing]\n"),
              "aviary.yaml:3:24: notify.grafana.actions[1]: unknown action \"upgrde\"; did you "
              "mean \"upgrade\"?\n"
              "aviary.yaml:3:32: notify.grafana.actions[2]: unknown action \"nothing\"");
    EXPECT_EQ(error_of("notify:\n  grafana:\n    actions: [noop, noop]\n"),
              "aviary.yaml:3:21: notify.grafana.actions[1]: action \"noop\" is listed twice");
    // An action the file defines is as good as a built-in.
    auto loaded = load_string(R"(notify:
  grafana:
    actions: [rollout]
jobs:
  actions:
    rollout:
      steps: [noop]
)",
                              "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->notify.grafana.actions, (Strings{"rollout"}));
}

TEST(NotifyReader, TagsAreNeverEmptyOrHollow) {
    EXPECT_EQ(error_of("notify:\n  grafana:\n    tags: [ok, \"\", \"env:\"]\n"),
              "aviary.yaml:3:16: notify.grafana.tags[1]: \"\" is not a tag (non-empty, and a "
              "\"key:\" needs a value after the colon)\n"
              "aviary.yaml:3:20: notify.grafana.tags[2]: \"env:\" is not a tag (non-empty, and a "
              "\"key:\" needs a value after the colon)");
}

TEST(NotifyReader, TheBackoffCapCoversTheFirstBackoff) {
    EXPECT_EQ(error_of("notify:\n  grafana:\n    retry_backoff: 10s\n    retry_backoff_max: 5s\n"),
              "aviary.yaml:4:24: notify.grafana.retry_backoff_max: retry_backoff_max (5s) must be "
              "at least retry_backoff (10s)");
    EXPECT_NE(error_of("notify:\n  grafana:\n    poll: 0s\n").find("notify.grafana.poll"),
              std::string::npos);
    EXPECT_NE(error_of("notify:\n  grafana:\n    poll: soon\n").find("notify.grafana.poll"),
              std::string::npos);
    EXPECT_NE(error_of("notify:\n  grafna: {}\n").find("did you mean \"grafana\""),
              std::string::npos);
}

}  // namespace
}  // namespace aviary::config
