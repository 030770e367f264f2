// GrafanaSender against a fake Grafana on loopback, with a real SQLite store: what it posts and
// patches, and how it survives a Grafana that is down, refuses its token, loses an answer or
// lost an annotation.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "metrics/metrics.hpp"
#include "notify/notify.hpp"
#include "support/fake_grafana.hpp"
#include "support/test_certs.hpp"

namespace aviary::notify {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
using test::FakeGrafana;

constexpr std::string_view kToken = "grafana-test-token";

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds deadline = 15s) {
    auto give_up = std::chrono::steady_clock::now() + deadline;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= give_up) {
            return false;
        }
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

std::int64_t ms(core::TimePoint t) {
    return t.time_since_epoch().count();
}

class GrafanaSenderTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(grafana_.start());
        store::Settings settings;
        settings.path = ":memory:";
        auto opened = store::open(settings);
        ASSERT_TRUE(opened) << opened.error().message;
        store_ = std::move(*opened);
        std::vector<core::NodeSpec> nodes;
        for (const char* name : {"lotus-0", "lotus-1", "lotus-2"}) {
            nodes.push_back(core::NodeSpec{.name = name});
        }
        ASSERT_TRUE(store_->reconcile_nodes(nodes, "test", clock_.now()));
        settings_.url = grafana_.url();
        settings_.token = std::string{kToken};
        settings_.retry_backoff = 1s;
        settings_.retry_backoff_max = 8s;
        settings_.poll = 20ms;
        settings_.timeout = 5s;
    }

    void TearDown() override {
        if (store_) {
            store_->close();
        }
    }

    std::unique_ptr<GrafanaSender> sender() {
        return std::make_unique<GrafanaSender>(settings_, *store_, clock_, &registry_);
    }

    core::Job submit(std::string node = "lotus-0") {
        core::Job job;
        job.id = core::new_id();
        job.action = "upgrade";
        job.node = std::move(node);
        job.params = {{"tag", "v1.2.3"}};
        job.requester = "anton";
        job.owner = "anton";
        job.steps = 1;
        job.created_at = clock_.now();
        job.run_at = clock_.now();
        job.annotation = annotation_for(settings_, job);
        auto submitted = store_->submit_job(store::JobSubmit{.job = job, .actor = "anton"});
        EXPECT_TRUE(submitted) << submitted.error().message;
        return job;
    }

    /// Claims the next job (its annotation starts now).
    core::Job start() {
        auto claimed = store_->claim_job(store::JobClaim{.runner = "test", .now = clock_.now()});
        EXPECT_TRUE(claimed && *claimed);
        return claimed && *claimed ? **claimed : core::Job{};
    }

    void finish(const core::Job& job, core::JobState state, std::string error = {}) {
        auto finished = store_->finish_job(store::JobFinish{.id = job.id,
                                                            .attempt = job.attempt,
                                                            .state = state,
                                                            .error = std::move(error),
                                                            .now = clock_.now()});
        ASSERT_TRUE(finished) << finished.error().message;
    }

    /// The outbox rows still to send, whenever due.
    std::vector<store::Annotation> pending() {
        auto due = store_->due_annotations(clock_.now() + 24h, 100);
        EXPECT_TRUE(due);
        return due ? *due : std::vector<store::Annotation>{};
    }

    std::int64_t backlog() {
        auto count = store_->annotation_backlog();
        EXPECT_TRUE(count);
        return count ? *count : -1;
    }

    double sent(std::string kind) {
        return registry_.counter("aviary_annotations_sent_total", "", {"kind"})
            .with({std::move(kind)})
            .value();
    }
    double failures() {
        return registry_.counter("aviary_annotation_failures_total", "").get().value();
    }

    /// The tags annotation_for gives `job`, plus `extra`.
    json::array tags(const core::Job& job, std::vector<std::string> extra = {}) {
        json::array out{"deploy", "node:" + job.node, "image:v1.2.3", "action:upgrade",
                        "job:" + job.id};
        for (auto& tag : extra) {
            out.emplace_back(tag);
        }
        return out;
    }

    std::string text(const core::Job& job) {
        return fmt::format("upgrade {} to v1.2.3 (job {}, by anton)", job.node, job.id);
    }

    /// Runs `s` as serve does: a task on a started scheduler.
    void run_scheduled(GrafanaSender& s) {
        s.schedule(scheduler_);
        scheduler_.start();
    }

    FakeGrafana grafana_{std::string{kToken}};
    core::ManualClock clock_;
    /// Its interval waits never end on the manual clock: a task runs at start() and on wake().
    core::Scheduler scheduler_{clock_};
    metrics::Registry registry_;
    std::unique_ptr<store::Store> store_;
    GrafanaSettings settings_;
};

TEST_F(GrafanaSenderTest, PostsWhenTheJobStartsAndPatchesItIntoARegionWhenItEnds) {
    submit();
    clock_.advance(2s);
    auto started_at = clock_.now();
    auto job = start();
    auto s = sender();
    s->run_once();

    auto posts = grafana_.requests("POST", "/api/annotations");
    ASSERT_EQ(posts.size(), 1u);
    EXPECT_EQ(posts[0].authorization, fmt::format("Bearer {}", kToken));
    EXPECT_EQ(posts[0].content_type, "application/json");
    EXPECT_EQ(posts[0].accept, "application/json");
    EXPECT_EQ(posts[0].json(),
              (json::value{{"time", ms(started_at)}, {"tags", tags(job)}, {"text", text(job)}}));

    s->run_once();
    EXPECT_EQ(grafana_.requests().size(), 1u) << "nothing more to send until the job ends";
    EXPECT_EQ(backlog(), 0);

    clock_.advance(42s);
    finish(job, core::JobState::kSucceeded);
    EXPECT_EQ(backlog(), 1);
    s->run_once();
    auto patches = grafana_.requests("PATCH");
    ASSERT_EQ(patches.size(), 1u);
    EXPECT_EQ(patches[0].path, "/api/annotations/1");
    EXPECT_EQ(patches[0].authorization, fmt::format("Bearer {}", kToken));
    EXPECT_EQ(patches[0].json(), (json::value{{"timeEnd", ms(clock_.now())},
                                              {"text", text(job) + " — succeeded in 42s"},
                                              {"tags", tags(job, {"outcome:succeeded"})}}));
    auto held = grafana_.annotations();
    ASSERT_EQ(held.size(), 1u);
    EXPECT_EQ(held[1].at("time"), ms(started_at));
    EXPECT_EQ(held[1].at("timeEnd"), ms(clock_.now()));

    s->run_once();
    EXPECT_EQ(grafana_.requests().size(), 2u);
    EXPECT_EQ(backlog(), 0);
    EXPECT_EQ(sent("post"), 1);
    EXPECT_EQ(sent("patch"), 1);
    EXPECT_EQ(failures(), 0);
    auto exposition = registry_.render();
    EXPECT_NE(exposition.find("aviary_annotations_sent_total{kind=\"patch\"} 1"), std::string::npos)
        << exposition;
    EXPECT_NE(exposition.find("aviary_annotation_backlog 0"), std::string::npos) << exposition;
}

TEST_F(GrafanaSenderTest, AJobThatEndedBeforeItsPostIsOnePostWithItsEnd) {
    submit();
    auto job = start();
    auto started_at = clock_.now();
    clock_.advance(3s);
    finish(job, core::JobState::kFailed, "step 1 (driver upgrade) failed: exit status 3");
    auto s = sender();
    s->run_once();
    s->run_once();

    ASSERT_EQ(grafana_.requests().size(), 1u);
    auto post = grafana_.requests("POST", "/api/annotations");
    ASSERT_EQ(post.size(), 1u);
    EXPECT_EQ(
        post[0].json(),
        (json::value{
            {"time", ms(started_at)},
            {"timeEnd", ms(clock_.now())},
            {"tags", tags(job, {"outcome:failed"})},
            {"text", text(job) + " — failed: step 1 (driver upgrade) failed: exit status 3"}}));
    EXPECT_EQ(backlog(), 0);
}

TEST_F(GrafanaSenderTest, AGrafanaThatIsDownIsRetriedUntilItIsBackAndGetsOnePost) {
    grafana_.stop();
    submit();
    auto job = start();
    auto s = sender();
    run_scheduled(*s);  // the first pass runs at the scheduler's start
    ASSERT_TRUE(wait_until([&] { return failures() >= 1; }));
    auto rows = pending();
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_GE(rows[0].attempts, 1);
    EXPECT_NE(rows[0].last_error.find("refused"), std::string::npos) << rows[0].last_error;
    EXPECT_GT(rows[0].next_attempt_at, clock_.now()) << "it waits out its backoff";

    ASSERT_TRUE(grafana_.start());  // the same port
    clock_.advance(settings_.retry_backoff_max);
    s->wake();
    ASSERT_TRUE(wait_until([&] { return grafana_.tagged("job:" + job.id).size() == 1; }));
    clock_.advance(5s);  // it ran for the backoff cap and these 5 s
    finish(job, core::JobState::kSucceeded);
    s->wake();
    ASSERT_TRUE(wait_until([&] { return grafana_.requests("PATCH").size() == 1; }));
    ASSERT_TRUE(wait_until([&] { return backlog() == 0; }));
    s->stop();

    EXPECT_EQ(grafana_.requests("POST").size(), 1u);
    auto held = grafana_.tagged("outcome:succeeded");
    ASSERT_EQ(held.size(), 1u);
    EXPECT_EQ(held[0].at("text"), json::value(text(job) + " — succeeded in 13s"));
}

TEST_F(GrafanaSenderTest, ARefusedTokenIsRetriedWithGrowingBackoffAndNeverLost) {
    grafana_.set_token("another-token");
    submit();
    auto job = start();
    auto s = sender();
    s->run_once();
    ASSERT_EQ(grafana_.requests().size(), 1u);

    auto rows = pending();
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].attempts, 1);
    EXPECT_NE(rows[0].last_error.find("401"), std::string::npos) << rows[0].last_error;
    EXPECT_NE(rows[0].last_error.find("Invalid API key"), std::string::npos);
    EXPECT_EQ(rows[0].last_error.find(kToken), std::string::npos) << "never the token";
    auto first_wait = rows[0].next_attempt_at - clock_.now();
    EXPECT_GE(first_wait, 800ms);
    EXPECT_LE(first_wait, 1200ms);

    s->run_once();
    EXPECT_EQ(grafana_.requests().size(), 1u) << "not again before its backoff";

    clock_.advance(first_wait);
    s->run_once();
    rows = pending();
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].attempts, 2);
    auto second_wait = rows[0].next_attempt_at - clock_.now();
    EXPECT_GE(second_wait, 1600ms);
    EXPECT_LE(second_wait, 2400ms);
    EXPECT_EQ(failures(), 2);

    grafana_.set_token(std::string{kToken});
    clock_.advance(second_wait);
    s->run_once();
    EXPECT_EQ(grafana_.tagged("job:" + job.id).size(), 1u);
    EXPECT_EQ(backlog(), 0);
}

TEST_F(GrafanaSenderTest, BackoffStopsGrowingAtItsCap) {
    grafana_.set_token("another-token");
    submit();
    start();
    auto s = sender();
    for (int i = 0; i < 8; ++i) {
        clock_.advance(settings_.retry_backoff_max);
        s->run_once();
    }
    auto rows = pending();
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].attempts, 8);
    EXPECT_LE(rows[0].next_attempt_at - clock_.now(), settings_.retry_backoff_max);
    EXPECT_GE(rows[0].next_attempt_at - clock_.now(), settings_.retry_backoff_max * 8 / 10);
}

TEST_F(GrafanaSenderTest, WhenGrafanaRefusesUsTheRestOfThePassWaitsWithoutARequest) {
    grafana_.set_token("another-token");
    for (const char* node : {"lotus-0", "lotus-1", "lotus-2"}) {
        submit(node);
        start();
    }
    sender()->run_once();
    EXPECT_EQ(grafana_.requests().size(), 1u);
    auto rows = pending();
    ASSERT_EQ(rows.size(), 3u);
    for (const auto& row : rows) {
        EXPECT_EQ(row.attempts, 1) << row.job_id;
        EXPECT_NE(row.last_error.find("401"), std::string::npos) << row.last_error;
    }
}

TEST_F(GrafanaSenderTest, APostInDoubtIsFoundByItsJobTagAndNotPostedAgain) {
    submit("lotus-1");
    auto other = start();
    submit();
    auto job = start();
    // A previous run began the post and died before recording Grafana's answer.
    ASSERT_TRUE(store_->annotation_posting(job.id));
    grafana_.add(json::object{{"time", 1}, {"tags", tags(other)}, {"text", "someone else"}});
    auto id = grafana_.add(json::object{{"time", 1}, {"tags", tags(job)}, {"text", text(job)}});
    ASSERT_TRUE(store_->annotation_sent(store::AnnotationSent{.job_id = other.id, .remote_id = 1}));

    auto s = sender();
    s->run_once();
    auto gets = grafana_.requests("GET", "/api/annotations");
    ASSERT_EQ(gets.size(), 1u);
    EXPECT_EQ(gets[0].target,
              fmt::format("/api/annotations?tags=job:{}&type=annotation&limit=1", job.id));
    EXPECT_EQ(gets[0].authorization, fmt::format("Bearer {}", kToken));
    EXPECT_TRUE(grafana_.requests("POST").empty());

    finish(job, core::JobState::kSucceeded);
    s->run_once();
    auto patches = grafana_.requests("PATCH");
    ASSERT_EQ(patches.size(), 1u);
    EXPECT_EQ(patches[0].path, fmt::format("/api/annotations/{}", id));
    EXPECT_EQ(backlog(), 0);
}

TEST_F(GrafanaSenderTest, APostInDoubtThatGrafanaNeverGotIsPosted) {
    submit();
    auto job = start();
    ASSERT_TRUE(store_->annotation_posting(job.id));
    sender()->run_once();
    EXPECT_EQ(grafana_.requests("GET").size(), 1u);
    EXPECT_EQ(grafana_.requests("POST").size(), 1u);
    EXPECT_EQ(grafana_.tagged("job:" + job.id).size(), 1u);
    EXPECT_EQ(backlog(), 0);
}

TEST_F(GrafanaSenderTest, APostWhoseAnswerWasLostIsNotDuplicated) {
    grafana_.lose_post_answers(1);
    submit();
    auto job = start();
    auto s = sender();
    s->run_once();
    EXPECT_EQ(pending().at(0).attempts, 1);
    clock_.advance(settings_.retry_backoff_max);
    s->run_once();
    EXPECT_EQ(grafana_.requests("POST").size(), 1u);
    EXPECT_EQ(grafana_.tagged("job:" + job.id).size(), 1u);
    EXPECT_EQ(backlog(), 0);

    finish(job, core::JobState::kSucceeded);
    s->run_once();
    ASSERT_EQ(grafana_.requests("PATCH").size(), 1u);
    EXPECT_EQ(grafana_.tagged("outcome:succeeded").size(), 1u);
}

TEST_F(GrafanaSenderTest, ALostAnswerOfAnEndedJobsPostIsAdoptedWithItsEnd) {
    grafana_.lose_post_answers(1);
    submit();
    auto job = start();
    finish(job, core::JobState::kFailed, "exit status 1");
    auto s = sender();
    s->run_once();
    clock_.advance(settings_.retry_backoff_max);
    s->run_once();
    s->run_once();
    EXPECT_EQ(grafana_.requests("POST").size(), 1u);
    EXPECT_TRUE(grafana_.requests("PATCH").empty()) << "the post carried the end already";
    EXPECT_EQ(grafana_.tagged("outcome:failed").size(), 1u);
    EXPECT_EQ(backlog(), 0);
}

TEST_F(GrafanaSenderTest, APatchOfAnAnnotationDeletedInGrafanaIsNotRetriedForever) {
    submit();
    auto job = start();
    auto s = sender();
    s->run_once();
    grafana_.remove(1);
    finish(job, core::JobState::kSucceeded);
    s->run_once();
    ASSERT_EQ(grafana_.requests("PATCH").size(), 1u);
    EXPECT_EQ(backlog(), 0);
    clock_.advance(1h);
    s->run_once();
    EXPECT_EQ(grafana_.requests().size(), 2u);
    EXPECT_TRUE(grafana_.annotations().empty()) << "nothing is posted in its place";
}

TEST_F(GrafanaSenderTest, StopEndsARequestGrafanaNeverAnswers) {
    settings_.timeout = 60s;
    grafana_.hang(true);
    submit();
    auto job = start();
    auto s = sender();
    run_scheduled(*s);
    ASSERT_TRUE(wait_until([&] { return !grafana_.requests().empty(); }));
    auto began = std::chrono::steady_clock::now();
    s->stop();
    // Cancelled, not timed out: far less than the request's 60 s.
    EXPECT_LT(std::chrono::steady_clock::now() - began, 30s);
    auto rows = pending();
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_TRUE(rows[0].post_in_doubt) << "the next run looks it up before posting";
    EXPECT_EQ(rows[0].job_id, job.id);
}

TEST_F(GrafanaSenderTest, AFailureKeepsNeitherTheUrlsCredentialsNorTheToken) {
    settings_.url =
        "http://aviary:s3cret-pw@" + grafana_.url().substr(std::string_view{"http://"}.size());
    core::redactor().add_secret(std::string{kToken});
    grafana_.stop();
    submit();
    start();
    sender()->run_once();
    auto rows = pending();
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_FALSE(rows[0].last_error.empty());
    EXPECT_EQ(rows[0].last_error.find("s3cret-pw"), std::string::npos) << rows[0].last_error;
    EXPECT_EQ(rows[0].last_error.find(kToken), std::string::npos) << rows[0].last_error;
}

TEST_F(GrafanaSenderTest, StopIsIdempotentAndSafeBeforeSchedule) {
    submit();
    start();
    auto s = sender();
    s->stop();
    s->stop();
    s->wake();
    s->schedule(scheduler_);  // stopped: adds no task
    scheduler_.start();
    EXPECT_EQ(scheduler_.stats().size(), 0u);
    EXPECT_TRUE(grafana_.requests().empty());  // never scheduled: nothing was sent
    // A stop before schedule() leaves the sender whole: a pass still sends.
    s->run_once();
    EXPECT_EQ(grafana_.requests("POST", "/api/annotations").size(), 1u);
}

TEST_F(GrafanaSenderTest, AScheduledSenderSendsOnWakeAndNothingAfterStop) {
    auto t = sender();
    run_scheduled(*t);
    ASSERT_EQ(scheduler_.stats().size(), 1u);
    EXPECT_EQ(scheduler_.stats()[0].name, "grafana-annotations");
    submit("lotus-1");
    start();
    t->wake();
    // Sent and its answer recorded: Grafana having the POST is not enough, a stop() between the
    // two would leave the row pending (and the next pass would find it by its tags).
    ASSERT_TRUE(wait_until([&] {
        return pending().empty() && grafana_.requests("POST", "/api/annotations").size() == 1;
    }));
    t->stop();
    t->stop();
    EXPECT_TRUE(scheduler_.stats().empty()) << "stop() removed the task";
    // Stopped: a job started now waits in the outbox, whatever wakes the sender.
    submit("lotus-2");
    start();
    t->wake();
    EXPECT_EQ(pending().size(), 1u);
    EXPECT_EQ(grafana_.requests("POST", "/api/annotations").size(), 1u);
    // A pass by hand (serve's next start, say) sends it.
    t->run_once();
    EXPECT_EQ(grafana_.requests("POST", "/api/annotations").size(), 2u);
    EXPECT_TRUE(pending().empty());
}

/// Grafana behind HTTPS, as most are: certificates made by the openssl command for this test.
class GrafanaOverTlsTest : public GrafanaSenderTest {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               fmt::format("aviary-grafana-tls-{}-{}", ::getpid(), core::new_id());
        std::filesystem::create_directories(dir_);
        pki_ = test::make_test_pki(dir_.string());
        grafana_.serve_tls(pki_.server_cert, pki_.server_key);
        GrafanaSenderTest::SetUp();
        settings_.tls.ca_file = pki_.ca_cert;
    }
    void TearDown() override {
        GrafanaSenderTest::TearDown();
        std::filesystem::remove_all(dir_);
    }

    std::filesystem::path dir_;
    test::TestPki pki_;
};

TEST_F(GrafanaOverTlsTest, AnnotationsReachAGrafanaServedOverHttpsWithAPrivateCa) {
    ASSERT_TRUE(settings_.url.starts_with("https://127.0.0.1:")) << settings_.url;
    submit();
    auto job = start();
    auto s = sender();
    s->run_once();
    ASSERT_EQ(grafana_.tagged("job:" + job.id).size(), 1u);
    finish(job, core::JobState::kSucceeded);
    s->run_once();
    EXPECT_EQ(grafana_.requests("PATCH").size(), 1u);
    EXPECT_EQ(backlog(), 0);
    EXPECT_EQ(grafana_.requests().size(), 2u);
    EXPECT_EQ(grafana_.requests()[0].authorization, fmt::format("Bearer {}", kToken));
}

TEST_F(GrafanaOverTlsTest, AGrafanaWhoseCertificateNoCaVouchesForIsRefusedWithTheReason) {
    settings_.tls.ca_file = pki_.other_ca_cert;
    submit();
    start();
    sender()->run_once();
    EXPECT_TRUE(grafana_.requests().empty()) << "nothing was sent over an unverified connection";
    auto rows = pending();
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_NE(rows[0].last_error.find("unknown CA"), std::string::npos) << rows[0].last_error;
    EXPECT_EQ(failures(), 1);
}

TEST_F(GrafanaOverTlsTest, AClientCertificateIsPresentedWhenConfigured) {
    // A Grafana (or the proxy in front of it) that asks for a client certificate: the fake's
    // server refuses a handshake without one signed by the CA.
    grafana_.stop();
    grafana_.require_client_cert(pki_.ca_cert);
    ASSERT_TRUE(grafana_.start());
    submit();
    auto job = start();
    sender()->run_once();
    EXPECT_TRUE(grafana_.requests().empty()) << "no certificate, no handshake";
    ASSERT_EQ(pending().size(), 1u);
    settings_.tls.cert_file = pki_.client_cert;
    settings_.tls.key_file = pki_.client_key;
    clock_.advance(settings_.retry_backoff_max * 2);
    sender()->run_once();
    EXPECT_EQ(grafana_.tagged("job:" + job.id).size(), 1u);
}

}  // namespace
}  // namespace aviary::notify
