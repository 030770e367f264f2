// tweety's node actions through the real binary: Upgrade, InstallSnapshot, CreateCanary and
// DeleteCanary run as jobs on sim nodes (real child processes); Owner's implicit acquire; the
// refusals of docs/api.md; Wait; JobStatus; and input that must never reach a node.
#include <gtest/gtest.h>

#include <filesystem>

#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

/// The error member of a reply (null when it succeeded).
json::value error_of(const json::object& reply) {
    return reply.contains("error") ? reply.at("error") : json::value(nullptr);
}

std::string message_of(const json::object& reply) {
    auto error = error_of(reply);
    return error.is_object() ? str(error.at("message")) : std::string{};
}

class TweetyJobs : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(server_.start()) << server_.log(); }

    /// The result member, failing the test when the call was refused.
    json::object result_of(const json::object& reply) {
        EXPECT_TRUE(reply.contains("result")) << json::serialize(reply);
        return reply.contains("result") ? reply.at("result").as_object() : json::object{};
    }

    ServerProcess server_{jobs_test_config()};
};

TEST_F(TweetyJobs, UpgradeWithOwnerQueuesAJobAndLeasesTheNodeToTheOwner) {
    auto reply = call(server_, "TweetyService.Upgrade",
                      R"({"ReleaseName": "lotus-0", "ImageTag": "v1.2.2", "Owner": "anton"})");
    auto result = result_of(reply);
    auto id = str(result.at("JobID"));
    ASSERT_FALSE(id.empty());
    EXPECT_EQ(str(result.at("Result")),
              fmt::format("upgrade of lotus-0 to v1.2.2 queued as job {}", id));
    EXPECT_EQ(result.at("State"), "queued");
    EXPECT_EQ(result.at("Duplicate"), false);
    const auto& job = result.at("Job");
    EXPECT_EQ(str(job.at("id")), id);
    EXPECT_EQ(job.at("action"), "upgrade");
    EXPECT_EQ(job.at("node"), "lotus-0");
    EXPECT_EQ(job.at("params").at("tag"), "v1.2.2");
    EXPECT_EQ(job.at("owner"), "anton");
    EXPECT_EQ(job.at("status"), "PENDING");
    EXPECT_EQ(result.at("Lease").at("owner"), "anton");
    EXPECT_EQ(job.at("lease_id"), result.at("Lease").at("lease_id"));
    EXPECT_EQ(status_of(server_, "lotus-0").at("holder"), "anton");

    auto finished = wait_for_job(server_, id);
    ASSERT_TRUE(finished.is_object());
    EXPECT_EQ(finished.at("state"), "succeeded") << json::serialize(finished);
    EXPECT_EQ(finished.at("status"), "COMPLETE");
    EXPECT_TRUE(finished.at("finished_at").is_string());
    // The lease outlives the job.
    EXPECT_EQ(status_of(server_, "lotus-0").at("holder"), "anton");
    auto status = call(server_, "TweetyService.JobStatus", fmt::format(R"({{"JobID": "{}"}})", id));
    auto polled = result_of(status);
    EXPECT_EQ(polled.at("Result"), "succeeded");
    EXPECT_EQ(str(polled.at("Job").at("id")), id);
}

TEST_F(TweetyJobs, StatusAndTheNodeShowTheTagAnUpgradeDeployedBesideTheConfiguredOne) {
    EXPECT_EQ(status_of(server_, "lotus-1").at("image_tag"), "v1.0.0");
    EXPECT_TRUE(status_of(server_, "lotus-1").at("deployed_image_tag").is_null());
    auto reply = call_waiting(
        server_, "TweetyService.Upgrade",
        R"({"ReleaseName": "lotus-1", "ImageTag": "v1.2.2", "Owner": "anton", "Wait": true})");
    EXPECT_EQ(result_of(reply).at("State"), "succeeded") << json::serialize(reply);
    auto status = status_of(server_, "lotus-1");
    EXPECT_EQ(status.at("deployed_image_tag"), "v1.2.2") << json::serialize(status);
    EXPECT_EQ(status.at("image_tag"), "v1.0.0");  // the configured one stays
    auto node = json_of(http(server_, "GET", "/api/v1/nodes/lotus-1"));
    ASSERT_TRUE(node.is_object()) << json::serialize(node);
    EXPECT_EQ(node.at("deployed_image_tag"), "v1.2.2") << json::serialize(node);
    EXPECT_EQ(node.at("image_tag"), "v1.0.0");
    // Another node's tag is its own.
    EXPECT_TRUE(status_of(server_, "lotus-0").at("deployed_image_tag").is_null());
}

TEST_F(TweetyJobs, WaitAnswersWhenTheJobHasFinished) {
    auto reply = call_waiting(
        server_, "TweetyService.Upgrade",
        R"({"ReleaseName": "lotus-1", "ImageTag": "v1.3.0", "Owner": "anton", "Wait": true})");
    auto result = result_of(reply);
    EXPECT_EQ(result.at("Result"), "upgrade of lotus-1 to v1.3.0 succeeded");
    EXPECT_EQ(result.at("State"), "succeeded");
    EXPECT_EQ(result.at("Job").at("state"), "succeeded");
    EXPECT_TRUE(result.at("Job").at("finished_at").is_string());
    EXPECT_EQ(node_status(server_, "lotus-1", "anton").at("version"), "v1.3.0");
}

TEST_F(TweetyJobs, UpgradeKeepsTheHeightGrowingFromWhereItWas) {
    auto before = node_status(server_, "lotus-0");
    ASSERT_TRUE(before.is_object());
    EXPECT_EQ(before.at("version"), "v1.0.0");
    auto height_before = before.at("height").as_int64();
    EXPECT_GT(height_before, 0);

    auto reply = call_waiting(
        server_, "TweetyService.Upgrade",
        R"({"ReleaseName": "lotus-0", "ImageTag": "v1.2.2", "Owner": "anton", "Wait": true})");
    ASSERT_EQ(result_of(reply).at("State"), "succeeded") << json::serialize(reply);

    auto after = node_status(server_, "lotus-0", "anton");
    ASSERT_TRUE(after.is_object());
    EXPECT_EQ(after.at("version"), "v1.2.2");
    EXPECT_EQ(after.at("running"), true);
    EXPECT_GE(after.at("height").as_int64(), height_before);
}

TEST_F(TweetyJobs, WithoutOwnerAFreeNodeStaysFree) {
    auto reply = call_waiting(server_, "TweetyService.CreateCanary",
                              R"({"ReleaseName": "lotus-2", "ImageTag": "v2.0.0", "Wait": true})");
    auto result = result_of(reply);
    EXPECT_EQ(result.at("Result"), "create-canary of lotus-2 to v2.0.0 succeeded");
    EXPECT_FALSE(result.contains("Lease"));
    EXPECT_EQ(result.at("Job").at("owner"), "");
    EXPECT_TRUE(status_of(server_, "lotus-2").at("holder").is_null());
    EXPECT_EQ(node_status(server_, "lotus-2").at("version"), "v2.0.0");
}

TEST_F(TweetyJobs, WithoutOwnerANodeSomeoneHoldsIsRefusedNamingTheHolder) {
    result_of(
        call(server_, "TweetyService.Acquire", R"({"ReleaseName": "lotus-0", "Owner": "anton"})"));
    for (std::string_view method : {"TweetyService.InstallSnapshot", "TweetyService.CreateCanary",
                                    "TweetyService.DeleteCanary"}) {
        auto reply = call(server_, method, R"({"ReleaseName": "lotus-0", "ImageTag": "v1.2.2"})");
        ASSERT_TRUE(error_of(reply).is_object()) << method << json::serialize(reply);
        EXPECT_EQ(error_of(reply).at("code"), -32001) << method;
        EXPECT_NE(message_of(reply).find("current owner is anton"), std::string::npos)
            << message_of(reply);
    }
    auto jobs = json_of(http(server_, "GET", "/api/v1/jobs?node=lotus-0"));
    EXPECT_EQ(jobs.at("jobs").as_array().size(), 0u) << "a refused call queues nothing";
}

TEST_F(TweetyJobs, DeleteCanaryUninstallsTheNode) {
    auto reply = call_waiting(server_, "TweetyService.DeleteCanary",
                              R"({"ReleaseName": "lotus-1", "Owner": "anton", "Wait": true})");
    auto result = result_of(reply);
    EXPECT_EQ(result.at("Result"), "delete-canary of lotus-1 succeeded");
    auto status = node_status(server_, "lotus-1", "anton");
    EXPECT_EQ(status.at("installed"), false);
    EXPECT_EQ(status.at("running"), false);
}

TEST_F(TweetyJobs, JobStatusOfAnUnknownJobIsNotFound) {
    auto reply =
        call(server_, "TweetyService.JobStatus", R"({"JobID": "01NOSUCHJOB0000000000000000"})");
    ASSERT_TRUE(error_of(reply).is_object());
    EXPECT_EQ(error_of(reply).at("code"), -32003);
    auto missing = call(server_, "TweetyService.JobStatus", "{}");
    EXPECT_EQ(error_of(missing).at("code"), -32602);
    EXPECT_NE(message_of(missing).find("JobID"), std::string::npos);
}

TEST_F(TweetyJobs, MissingOrMistypedFieldsAreInvalidParamsNamingTheField) {
    auto no_tag =
        call(server_, "TweetyService.Upgrade", R"({"ReleaseName": "lotus-0", "Owner": "anton"})");
    EXPECT_EQ(error_of(no_tag).at("code"), -32602);
    EXPECT_NE(message_of(no_tag).find("ImageTag"), std::string::npos) << message_of(no_tag);
    auto no_name = call(server_, "TweetyService.InstallSnapshot", R"({"ImageTag": "v1"})");
    EXPECT_EQ(error_of(no_name).at("code"), -32602);
    EXPECT_NE(message_of(no_name).find("ReleaseName"), std::string::npos);
    auto no_name_delete = call(server_, "TweetyService.DeleteCanary", "{}");
    EXPECT_EQ(error_of(no_name_delete).at("code"), -32602);
    EXPECT_NE(message_of(no_name_delete).find("ReleaseName"), std::string::npos);
    auto wait_type = call(server_, "TweetyService.Upgrade",
                          R"({"ReleaseName": "lotus-0", "ImageTag": "v1", "Wait": "yes"})");
    EXPECT_EQ(error_of(wait_type).at("code"), -32602);
    EXPECT_NE(message_of(wait_type).find("Wait"), std::string::npos);
    auto unknown =
        call(server_, "TweetyService.Upgrade", R"({"ReleaseName": "lotus-9", "ImageTag": "v1"})");
    EXPECT_EQ(error_of(unknown).at("code"), -32003);
    EXPECT_NE(message_of(unknown).find("lotus-9"), std::string::npos);
}

TEST_F(TweetyJobs, ShellMetacharactersNeverReachANode) {
    auto marker = fs::path{server_.data_dir()} / "INJECTED";
    auto in_name = call(
        server_, "TweetyService.Upgrade",
        fmt::format(R"({{"ReleaseName": "lotus-0;touch {}", "ImageTag": "v1"}})", marker.string()));
    EXPECT_EQ(error_of(in_name).at("code"), -32602);
    EXPECT_NE(message_of(in_name).find("ReleaseName"), std::string::npos);
    auto in_tag = call(
        server_, "TweetyService.Upgrade",
        fmt::format(R"({{"ReleaseName": "lotus-0", "ImageTag": "v1;touch {}", "Owner": "anton"}})",
                    marker.string()));
    EXPECT_EQ(error_of(in_tag).at("code"), -32602);
    EXPECT_NE(message_of(in_tag).find("ImageTag"), std::string::npos);
    auto substituted =
        call(server_, "TweetyService.CreateCanary",
             fmt::format(R"json({{"ReleaseName": "lotus-0", "ImageTag": "$(touch {})"}})json",
                         marker.string()));
    EXPECT_EQ(error_of(substituted).at("code"), -32602);
    EXPECT_FALSE(fs::exists(marker));
    auto jobs = json_of(http(server_, "GET", "/api/v1/jobs"));
    EXPECT_EQ(jobs.at("jobs").as_array().size(), 0u);
}

TEST_F(TweetyJobs, SameUpgradeTwiceWhileQueuedIsOneJob) {
    auto paused = http(server_, "PUT", "/api/v1/queues/default/pause");
    ASSERT_EQ(paused->status, 200) << paused->body;
    auto params = R"({"ReleaseName": "lotus-0", "ImageTag": "v1.2.2", "Owner": "anton"})";
    auto first = result_of(call(server_, "TweetyService.Upgrade", params));
    auto second = result_of(call(server_, "TweetyService.Upgrade", params));
    EXPECT_EQ(second.at("JobID"), first.at("JobID"));
    EXPECT_EQ(second.at("Duplicate"), true);
    EXPECT_NE(str(second.at("Result")).find("is already queued as job"), std::string::npos);
    auto other_tag =
        result_of(call(server_, "TweetyService.Upgrade",
                       R"({"ReleaseName": "lotus-0", "ImageTag": "v1.2.3", "Owner": "anton"})"));
    EXPECT_NE(other_tag.at("JobID"), first.at("JobID"));
    EXPECT_EQ(other_tag.at("Job").at("position"), 2);
}

// A failing action: the test config replaces the built-in upgrade with one whose step fails.
TEST(TweetyJobsFailing, WaitOnAFailingJobIsAnErrorCarryingTheJob) {
    ServerProcess server{jobs_test_config(R"(    upgrade:
      params:
        tag: {type: image_tag}
      steps:
        - run: ["false"]
)")};
    ASSERT_TRUE(server.start()) << server.log();
    auto reply = call_waiting(
        server, "TweetyService.Upgrade",
        R"({"ReleaseName": "lotus-0", "ImageTag": "v1.2.2", "Owner": "anton", "Wait": true})");
    auto error = error_of(reply);
    ASSERT_TRUE(error.is_object()) << json::serialize(reply);
    EXPECT_EQ(error.at("code"), -32011);
    EXPECT_NE(str(error.at("message")).find("upgrade of lotus-0 to v1.2.2 failed"),
              std::string::npos)
        << str(error.at("message"));
    EXPECT_EQ(error.at("data").at("error"), "job_failed");
    EXPECT_EQ(error.at("data").at("job").at("state"), "failed");
    EXPECT_EQ(error.at("data").at("job").at("status"), "FAILED");
    EXPECT_FALSE(str(error.at("data").at("job").at("error")).empty());
}

// Reinstalling from the snapshot replaces the node's chain: a node that ran far past the
// snapshot comes back at the snapshot's height. The first run starts the nodes from a high
// snapshot; the second run, on the same data dir, has a low one configured.
TEST(TweetyJobsSnapshot, InstallSnapshotResetsTheHeightToTheSnapshot) {
    TempDir dir;
    {
        ServerProcess first{jobs_test_config("", "", "", 500000), dir.path()};
        ASSERT_TRUE(first.start()) << first.log();
        auto status = node_status(first, "lotus-0");
        ASSERT_TRUE(status.is_object());
        EXPECT_GE(status.at("height").as_int64(), 500000);
        EXPECT_EQ(first.stop(), 0);
    }
    ServerProcess second{jobs_test_config("", "", "", 100), dir.path()};
    ASSERT_TRUE(second.start()) << second.log();
    auto before = node_status(second, "lotus-0");
    ASSERT_TRUE(before.is_object());
    EXPECT_GE(before.at("height").as_int64(), 500000) << "a restart keeps the node's data";

    auto reply = call_waiting(
        second, "TweetyService.InstallSnapshot",
        R"({"ReleaseName": "lotus-0", "ImageTag": "v1.2.2", "Owner": "anton", "Wait": true})");
    ASSERT_TRUE(reply.contains("result")) << json::serialize(reply);
    EXPECT_EQ(reply.at("result").at("Result"), "install-snapshot of lotus-0 to v1.2.2 succeeded");
    auto after = node_status(second, "lotus-0", "anton");
    ASSERT_TRUE(after.is_object());
    EXPECT_EQ(after.at("version"), "v1.2.2");
    EXPECT_GE(after.at("height").as_int64(), 100);
    EXPECT_LT(after.at("height").as_int64(), 100000) << "the height resumed from the snapshot";
}

}  // namespace
}  // namespace aviary::test
