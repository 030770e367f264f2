// The tweety JSON-RPC surface through the real binary: leases, contention, expiry, errors.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

class TweetyRpc : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(server_.start()) << server_.log(); }
    ServerProcess server_{test_config()};
};

TEST_F(TweetyRpc, AcquireThenReleaseByTheHolder) {
    auto acquired =
        call(server_, "TweetyService.Acquire", R"({"ReleaseName": "lotus-1", "Owner": "anton"})");
    ASSERT_TRUE(acquired.contains("result")) << boost::json::serialize(acquired);
    auto& result = acquired["result"].as_object();
    EXPECT_EQ(acquired["jsonrpc"], "2.0");
    EXPECT_EQ(acquired["id"], 68);
    EXPECT_NE(str(result["Result"]).find("lotus-1 acquired by anton"), std::string::npos);
    EXPECT_EQ(result["owner"], "anton");
    EXPECT_FALSE(str(result["lease_id"]).empty());
    EXPECT_EQ(str(status_of(server_, "lotus-1").at("holder")), "anton");

    auto released =
        call(server_, "TweetyService.Release", R"({"ReleaseName": "lotus-1", "Owner": "anton"})");
    ASSERT_TRUE(released.contains("result")) << boost::json::serialize(released);
    EXPECT_EQ(released["result"].at("released"), true);
    EXPECT_TRUE(status_of(server_, "lotus-1").at("holder").is_null());
}

TEST_F(TweetyRpc, AnotherOwnerIsRefusedWithTheHolderNamed) {
    call(server_, "TweetyService.Acquire", R"({"ReleaseName": "lotus-0", "Owner": "anton"})");
    auto refused =
        call(server_, "TweetyService.Acquire", R"({"ReleaseName": "lotus-0", "Owner": "bob"})");
    ASSERT_TRUE(refused.contains("error")) << boost::json::serialize(refused);
    EXPECT_EQ(refused["error"].at("code"), -32001);
    EXPECT_NE(str(refused["error"].at("message")).find("current owner is anton"),
              std::string::npos);
    EXPECT_EQ(refused["error"].at("data").at("error"), "busy");
}

TEST_F(TweetyRpc, HolderAcquiringAgainRenewsTheSameLease) {
    auto first =
        call(server_, "TweetyService.Acquire", R"({"ReleaseName": "lotus-0", "Owner": "anton"})");
    auto again =
        call(server_, "TweetyService.Acquire", R"({"ReleaseName": "lotus-0", "Owner": "anton"})");
    ASSERT_TRUE(again.contains("result"));
    EXPECT_EQ(again["result"].at("renewed"), true);
    EXPECT_EQ(again["result"].at("lease_id"), first["result"].at("lease_id"));
}

TEST_F(TweetyRpc, ReleasingSomeoneElsesLeaseIsRefused) {
    call(server_, "TweetyService.Acquire", R"({"ReleaseName": "lotus-0", "Owner": "anton"})");
    auto refused =
        call(server_, "TweetyService.Release", R"({"ReleaseName": "lotus-0", "Owner": "bob"})");
    ASSERT_TRUE(refused.contains("error"));
    EXPECT_EQ(refused["error"].at("code"), -32002);
    EXPECT_NE(str(refused["error"].at("message")).find("current owner is anton"),
              std::string::npos);
    EXPECT_EQ(str(status_of(server_, "lotus-0").at("holder")), "anton");
}

TEST_F(TweetyRpc, ReleasingANodeNobodyHoldsSucceeds) {
    auto released =
        call(server_, "TweetyService.Release", R"({"ReleaseName": "lotus-2", "Owner": "anton"})");
    ASSERT_TRUE(released.contains("result")) << boost::json::serialize(released);
    EXPECT_EQ(released["result"].at("released"), false);
    EXPECT_NE(str(released["result"].at("Result")).find("was not leased"), std::string::npos);
}

TEST_F(TweetyRpc, FreeByHolderAndForcedFreeByAdmin) {
    call(server_, "TweetyService.Acquire", R"({"ReleaseName": "lotus-0", "Owner": "anton"})");
    auto not_holder =
        call(server_, "TweetyService.Free", R"({"ReleaseName": "lotus-0", "Owner": "bob"})");
    ASSERT_TRUE(not_holder.contains("error"));
    EXPECT_EQ(not_holder["error"].at("code"), -32002);
    // Without tokens the loopback caller is an admin, who may force it.
    auto forced =
        call(server_, "TweetyService.Free", R"({"ReleaseName": "lotus-0", "Force": true})");
    ASSERT_TRUE(forced.contains("result")) << boost::json::serialize(forced);
    EXPECT_EQ(forced["result"].at("freed"), true);
    EXPECT_TRUE(status_of(server_, "lotus-0").at("holder").is_null());
}

TEST_F(TweetyRpc, StatusListsEveryNodeWithHolderSinceAndUntil) {
    call(server_, "TweetyService.Acquire",
         R"({"ReleaseName": "lotus-2", "Owner": "ci", "Reason": "nightly"})");
    auto status = call(server_, "TweetyService.Status", "{}");
    auto& nodes = status["result"].at("nodes").as_array();
    ASSERT_EQ(nodes.size(), 3u);
    EXPECT_EQ(nodes[0].at("node"), "lotus-0");
    EXPECT_EQ(nodes[0].at("state"), "free");
    EXPECT_EQ(nodes[0].at("labels").at("chain"), "lotus");
    EXPECT_EQ(nodes[2].at("state"), "leased");
    EXPECT_EQ(nodes[2].at("holder"), "ci");
    EXPECT_EQ(nodes[2].at("reason"), "nightly");
    EXPECT_TRUE(nodes[2].at("since").is_string());
    EXPECT_TRUE(nodes[2].at("until").is_string());
    EXPECT_NE(str(status["result"].at("Result")).find("lotus-2 leased by ci"), std::string::npos);
}

TEST_F(TweetyRpc, UnknownNodeIsAnApplicationError) {
    auto reply =
        call(server_, "TweetyService.Acquire", R"({"ReleaseName": "lotus-9", "Owner": "anton"})");
    ASSERT_TRUE(reply.contains("error"));
    EXPECT_EQ(reply["error"].at("code"), -32003);
    EXPECT_NE(str(reply["error"].at("message")).find("lotus-9"), std::string::npos);
}

TEST_F(TweetyRpc, FieldNamesAreCaseInsensitiveAndUnknownFieldsIgnored) {
    auto reply = call(server_, "TweetyService.Acquire",
                      R"({"releasename": "lotus-1", "OWNER": "anton", "Color": "blue"})");
    ASSERT_TRUE(reply.contains("result")) << boost::json::serialize(reply);
    EXPECT_EQ(reply["result"].at("owner"), "anton");
}

TEST_F(TweetyRpc, CharsetParameterOnContentTypeIsAccepted) {
    net::ClientRequest request;
    request.method = "POST";
    request.url = server_.url("/");
    request.headers.push_back({"Content-Type", "application/json;charset=UTF-8"});
    request.body = rpc_body("TweetyService.Status", "{}");
    auto response = net::fetch_sync(std::move(request));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
    EXPECT_NE(response->body.find("\"nodes\""), std::string::npos);
}

TEST_F(TweetyRpc, BatchAnswersEachCallAndSkipsNotifications) {
    auto response = server_.post_json("/", R"([
        {"jsonrpc":"2.0","method":"TweetyService.Acquire","params":[{"ReleaseName":"lotus-0","Owner":"a"}],"id":1},
        {"jsonrpc":"2.0","method":"TweetyService.Acquire","params":[{"ReleaseName":"lotus-1","Owner":"a"}]},
        {"jsonrpc":"2.0","method":"TweetyService.Nope","id":"x"}
    ])");
    ASSERT_TRUE(response);
    auto replies = boost::json::parse(response->body).as_array();
    ASSERT_EQ(replies.size(), 2u);
    EXPECT_EQ(replies[0].at("id"), 1);
    EXPECT_TRUE(replies[0].as_object().contains("result"));
    EXPECT_EQ(replies[1].at("id"), "x");
    EXPECT_EQ(replies[1].at("error").at("code"), -32601);
    // The notification ran all the same.
    EXPECT_EQ(str(status_of(server_, "lotus-1").at("holder")), "a");
}

TEST_F(TweetyRpc, OnlyNotificationsGetNoContent) {
    auto response = server_.post_json(
        "/",
        R"({"jsonrpc":"2.0","method":"TweetyService.Acquire","params":[{"ReleaseName":"lotus-0","Owner":"n"}]})");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 204);
    EXPECT_TRUE(response->body.empty());
}

TEST_F(TweetyRpc, AcquireWithWaitIsHandedTheNodeWhenItFrees) {
    auto held =
        call(server_, "TweetyService.Acquire", R"({"ReleaseName": "lotus-0", "Owner": "anton"})");
    ASSERT_TRUE(held.contains("result"));
    auto waiting = std::async(std::launch::async, [this] {
        return call(server_, "TweetyService.Acquire",
                    R"({"ReleaseName": "lotus-0", "Owner": "bob", "Wait": "30s"})");
    });
    ASSERT_TRUE(wait_until([&] {
        auto leases = json_of(http(server_, "GET", "/api/v1/leases"));
        return leases.is_object() && leases.at("waiters").as_array().size() == 1;
    }));
    auto released =
        call(server_, "TweetyService.Release", R"({"ReleaseName": "lotus-0", "Owner": "anton"})");
    ASSERT_TRUE(released.contains("result"));
    auto bob = waiting.get();
    ASSERT_TRUE(bob.contains("result")) << boost::json::serialize(bob);
    EXPECT_EQ(bob["result"].at("owner"), "bob");
}

TEST_F(TweetyRpc, RenewAndReleaseByLeaseId) {
    auto held =
        call(server_, "TweetyService.Acquire", R"({"ReleaseName": "lotus-2", "Owner": "anton"})");
    auto id = str(held["result"].at("lease_id"));
    auto renewed = call(server_, "TweetyService.Renew",
                        fmt::format(R"({{"LeaseID": "{}", "TTL": "48h"}})", id));
    ASSERT_TRUE(renewed.contains("result")) << boost::json::serialize(renewed);
    EXPECT_GT(str(renewed["result"].at("expires_at")), str(held["result"].at("expires_at")));
    auto released =
        call(server_, "TweetyService.Release", fmt::format(R"({{"LeaseID": "{}"}})", id));
    ASSERT_TRUE(released.contains("result")) << boost::json::serialize(released);
    EXPECT_TRUE(status_of(server_, "lotus-2").at("holder").is_null());
}

TEST(TweetyContention, SixtyFourConcurrentAcquirersExactlyOneWins) {
    ServerProcess server{test_config()};
    ASSERT_TRUE(server.start()) << server.log();
    constexpr int kAcquirers = 64;
    std::vector<std::string> winners(kAcquirers);
    std::vector<std::string> refusals(kAcquirers);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kAcquirers; ++i) {
        threads.emplace_back([&, i] {
            ++ready;
            while (ready.load() < kAcquirers) {
                std::this_thread::yield();
            }
            auto reply = call(server, "TweetyService.Acquire",
                              fmt::format(R"({{"ReleaseName": "lotus-1", "Owner": "dev-{}"}})", i));
            if (reply.contains("result")) {
                winners[static_cast<size_t>(i)] = str(reply["result"].at("owner"));
            } else if (reply.contains("error")) {
                refusals[static_cast<size_t>(i)] = str(reply["error"].at("message"));
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    std::string winner;
    int wins = 0;
    for (const auto& w : winners) {
        if (!w.empty()) {
            ++wins;
            winner = w;
        }
    }
    ASSERT_EQ(wins, 1);
    int refused = 0;
    for (const auto& message : refusals) {
        if (!message.empty()) {
            ++refused;
            EXPECT_NE(message.find("current owner is " + winner), std::string::npos) << message;
        }
    }
    EXPECT_EQ(refused, kAcquirers - 1);
    EXPECT_EQ(str(status_of(server, "lotus-1").at("holder")), winner);
}

TEST(TweetyExpiry, ShortTtlLeaseExpiresAndFreesTheNode) {
    ServerProcess server{test_config()};
    ASSERT_TRUE(server.start()) << server.log();
    auto reply = call(server, "TweetyService.Acquire",
                      R"({"ReleaseName": "lotus-0", "Owner": "anton", "TTL": "300ms"})");
    ASSERT_TRUE(reply.contains("result")) << boost::json::serialize(reply);
    EXPECT_TRUE(wait_until([&] {
        auto entry = status_of(server, "lotus-0");
        return entry.is_object() && entry.at("state") == "free";
    })) << server.log();
    // Someone else can have it now.
    auto next =
        call(server, "TweetyService.Acquire", R"({"ReleaseName": "lotus-0", "Owner": "bob"})");
    EXPECT_TRUE(next.contains("result"));
}

TEST(TweetyExpiry, TtlBeyondTheMaximumIsRefused) {
    ServerProcess server{test_config("  lease_ttl: 30m\n  max_lease_ttl: 1h\n")};
    ASSERT_TRUE(server.start()) << server.log();
    auto reply = call(server, "TweetyService.Acquire",
                      R"({"ReleaseName": "lotus-0", "Owner": "anton", "TTL": "2h"})");
    ASSERT_TRUE(reply.contains("error"));
    EXPECT_EQ(reply["error"].at("code"), -32602);
    EXPECT_NE(str(reply["error"].at("message")).find("at most 1h"), std::string::npos);
}

}  // namespace
}  // namespace aviary::test
