// What a job's annotation says: annotation_for's text and tags, and what a job's end adds.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "notify/notify.hpp"

namespace aviary::notify {
namespace {

using namespace std::chrono_literals;
using Tags = std::vector<std::string>;

GrafanaSettings grafana() {
    GrafanaSettings settings;
    settings.url = "http://127.0.0.1:3000";
    settings.token = "t";
    return settings;
}

core::Job upgrade(std::string tag = "v1.2.3") {
    core::Job job;
    job.id = "01JOB";
    job.action = "upgrade";
    job.node = "lotus-0";
    if (!tag.empty()) {
        job.params["tag"] = tag;
    }
    job.requester = "anton";
    job.owner = "anton";
    return job;
}

TEST(AnnotationFor, SaysWhatRunsWhereAndTagsIt) {
    auto annotation = annotation_for(grafana(), upgrade());
    ASSERT_TRUE(annotation);
    EXPECT_EQ(annotation->text, "upgrade lotus-0 to v1.2.3 (job 01JOB, by anton)");
    EXPECT_EQ(annotation->tags,
              (Tags{"deploy", "node:lotus-0", "image:v1.2.3", "action:upgrade", "job:01JOB"}));
}

TEST(AnnotationFor, AnActionWithoutATagHasNoImage) {
    auto job = upgrade("");
    job.action = "delete-canary";
    auto annotation = annotation_for(grafana(), job);
    ASSERT_TRUE(annotation);
    EXPECT_EQ(annotation->text, "delete-canary lotus-0 (job 01JOB, by anton)");
    EXPECT_EQ(annotation->tags,
              (Tags{"deploy", "node:lotus-0", "action:delete-canary", "job:01JOB"}));
}

TEST(AnnotationFor, ConfiguredTagsFollowWithoutEmptyOrHollowOnesOrRepeats) {
    auto settings = grafana();
    settings.tags = {"env:prod", "", "team:", "deploy", "aviary"};
    auto annotation = annotation_for(settings, upgrade());
    ASSERT_TRUE(annotation);
    EXPECT_EQ(annotation->tags, (Tags{"deploy", "node:lotus-0", "image:v1.2.3", "action:upgrade",
                                      "job:01JOB", "env:prod", "aviary"}));
}

TEST(AnnotationFor, OnlyTheConfiguredActionsAreAnnotated) {
    auto job = upgrade();
    job.action = "noop";
    EXPECT_FALSE(annotation_for(grafana(), job));
    auto settings = grafana();
    settings.actions = {"noop"};
    EXPECT_TRUE(annotation_for(settings, job));
    EXPECT_FALSE(annotation_for(settings, upgrade()));
}

TEST(AnnotationFor, NothingWithoutAUrl) {
    auto settings = grafana();
    settings.url.clear();
    EXPECT_FALSE(annotation_for(settings, upgrade()));
}

TEST(AnnotationFor, NamesTheRequesterAndTheOwnerTheyActFor) {
    auto job = upgrade();
    job.requester = "ci";
    EXPECT_EQ(annotation_for(grafana(), job)->text,
              "upgrade lotus-0 to v1.2.3 (job 01JOB, by ci for anton)");
    job.owner.clear();
    EXPECT_EQ(annotation_for(grafana(), job)->text, "upgrade lotus-0 to v1.2.3 (job 01JOB, by ci)");
    job.requester = "anonymous";
    EXPECT_EQ(annotation_for(grafana(), job)->text, "upgrade lotus-0 to v1.2.3 (job 01JOB)");
}

store::Annotation ended(std::string outcome, core::Millis took, std::string error = {}) {
    store::Annotation annotation;
    annotation.time = core::TimePoint{core::Millis{1'700'000'000'000}};
    annotation.time_end = annotation.time + took;
    annotation.outcome = std::move(outcome);
    annotation.error = std::move(error);
    return annotation;
}

TEST(OutcomeText, ASuccessSaysHowLongItTook) {
    EXPECT_EQ(outcome_text(ended("succeeded", 42'400ms)), " — succeeded in 42s");
    EXPECT_EQ(outcome_text(ended("succeeded", 90s)), " — succeeded in 1m30s");
    EXPECT_EQ(outcome_text(ended("succeeded", 250ms)), " — succeeded in 250ms");
    EXPECT_EQ(outcome_tag(ended("succeeded", 1s)), "outcome:succeeded");
}

TEST(OutcomeText, AFailureSaysWhyOnOneLine) {
    EXPECT_EQ(outcome_text(ended("failed", 3s, "step 1 (upgrade) failed:\nexit 3")),
              " — failed: step 1 (upgrade) failed: exit 3");
    EXPECT_EQ(outcome_text(ended("timed_out", 3s, "the action took longer than 10m")),
              " — timed out: the action took longer than 10m");
    EXPECT_EQ(outcome_text(ended("cancelled", 3s)), " — cancelled");
    EXPECT_EQ(outcome_tag(ended("timed_out", 3s)), "outcome:timed_out");
}

TEST(OutcomeText, ALongErrorIsCut) {
    auto text = outcome_text(ended("failed", 1s, std::string(2000, 'x')));
    EXPECT_LT(text.size(), 400u);
    EXPECT_TRUE(text.ends_with("x...")) << text;
}

}  // namespace
}  // namespace aviary::notify
