// core::redact_url and core::Redactor: what output and log lines must never show.
#include <gtest/gtest.h>

#include <string>

#include "core/core.hpp"

namespace aviary::core {
namespace {

TEST(RedactUrl, DropsUserinfoAndRedactsQueryValues) {
    EXPECT_EQ(redact_url("http://admin:s3cret@grafana:3000/api/annotations"),
              "http://grafana:3000/api/annotations");
    EXPECT_EQ(redact_url("http://node:8545/rpc?token=abc&x=1#top"),
              "http://node:8545/rpc?token=REDACTED&x=REDACTED#top");
    EXPECT_EQ(redact_url("http://node/?s3cretvalue"), "http://node/?REDACTED");
    EXPECT_EQ(redact_url("http://user@node"), "http://node");
    EXPECT_EQ(redact_url("http://node:8545/status"), "http://node:8545/status");
    EXPECT_EQ(redact_url("not a url"), "not a url");
}

TEST(Redactor, RedactsUrlsInsideALine) {
    Redactor redactor;
    EXPECT_EQ(redactor.redact("GET http://u:p@h:1/x?k=v failed: 500"),
              "GET http://h:1/x?k=REDACTED failed: 500");
    EXPECT_EQ(redactor.redact("url \"https://h/a?b=c\" and http://plain/"),
              "url \"https://h/a?b=REDACTED\" and http://plain/");
}

TEST(Redactor, RedactsSetValuesButTheImageTagAndSafeKeys) {
    Redactor redactor{{}, {"image.tag", "replicaCount"}};
    EXPECT_EQ(redactor.redact("running helm upgrade lotus-0 ./chart --set image.tag=v1.2.3 "
                              "--set secrets.apiKey=hunter22 --set replicaCount=2"),
              "running helm upgrade lotus-0 ./chart --set image.tag=v1.2.3 "
              "--set secrets.apiKey=REDACTED --set replicaCount=2");
    EXPECT_EQ(redactor.redact("--set-string password='a b c' --set=token=xyz"),
              "--set-string password='REDACTED' --set=token=REDACTED");
    // Several keys in one --set: a secret could hide behind the safe one.
    EXPECT_EQ(redactor.redact("--set image.tag=v1,db.password=pw"), "--set image.tag=REDACTED");
    EXPECT_EQ(redactor.redact("--settings are fine"), "--settings are fine");
}

TEST(Redactor, RedactsConfiguredSecretsWhereverTheyAppear) {
    Redactor redactor{{"tok-0123456789", "abc"}};  // too short to be taken: would blank words
    EXPECT_EQ(redactor.redact("Authorization: Bearer tok-0123456789, again tok-0123456789"),
              "Authorization: Bearer REDACTED, again REDACTED");
    EXPECT_EQ(redactor.redact("abc stays"), "abc stays");
    redactor.add_secret("grafana-token-xyz");
    EXPECT_EQ(redactor.redact("token grafana-token-xyz"), "token REDACTED");
}

TEST(Redactor, ProcessRedactorKeepsTheImageTagByDefault) {
    EXPECT_EQ(redact("--set image.tag=v2 --set a=b"), "--set image.tag=v2 --set a=REDACTED");
}

}  // namespace
}  // namespace aviary::core

namespace aviary::core {
namespace {

TEST(Redactor, HideSecretsTouchesOnlyTheSecrets) {
    Redactor redactor{{"s3cret-token"}};
    std::string body =
        R"({"url": "http://h/x?token=t", "args": "--set a=b", "p": "s3cret-token s3cret-token"})";
    redactor.hide_secrets(body);
    EXPECT_EQ(body,
              R"({"url": "http://h/x?token=t", "args": "--set a=b", "p": "REDACTED REDACTED"})");
}

}  // namespace
}  // namespace aviary::core
