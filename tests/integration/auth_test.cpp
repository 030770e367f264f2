// Identity and access through the real binary: tokens and roles, Host and Origin refusals,
// the start-up refusal of an open network listener, and hostile connections.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;

std::vector<net::Header> bearer(std::string_view token) {
    return {{"Authorization", fmt::format("Bearer {}", token)}};
}

class Tokens : public ::testing::Test {
protected:
    void SetUp() override {
        std::ofstream{server_.data_dir() + "/alice.token"} << "alice-secret\n";
        setenv("AVIARY_TEST_CI_TOKEN", "ci-secret", 1);
        ASSERT_TRUE(server_.start()) << server_.log();
    }
    ServerProcess server_{test_config() + R"(auth:
  tokens:
    - {identity: alice, role: admin, file: alice.token}
    - {identity: ci, role: user, env: AVIARY_TEST_CI_TOKEN}
)"};
};

TEST_F(Tokens, EveryRequestButProbesNeedsAToken) {
    auto rest = http(server_, "GET", "/api/v1/nodes");
    EXPECT_EQ(rest->status, 401);
    EXPECT_EQ(json_of(rest).at("error").at("code"), "unauthenticated");
    EXPECT_TRUE(rest->header("WWW-Authenticate").has_value());
    auto rpc = server_.post_json("/", rpc_body("TweetyService.Status", "{}"));
    EXPECT_EQ(rpc->status, 401);
    EXPECT_EQ(json_of(rpc).at("error").at("code"), -32008);
    EXPECT_EQ(http(server_, "GET", "/metrics")->status, 401);
    EXPECT_EQ(http(server_, "GET", "/healthz")->status, 200);
    EXPECT_EQ(http(server_, "GET", "/readyz")->status, 200);
    EXPECT_EQ(http(server_, "GET", "/api/v1/nodes", "", bearer("nope"))->status, 401);
    EXPECT_EQ(http(server_, "GET", "/api/v1/nodes", "", bearer("ci-secret"))->status, 200);
}

TEST_F(Tokens, AUserActsOnlyAsItself) {
    auto mine =
        http(server_, "POST", "/api/v1/leases", R"({"node": "lotus-0"})", bearer("ci-secret"));
    ASSERT_EQ(mine->status, 201) << mine->body;
    EXPECT_EQ(json_of(mine).at("owner"), "ci");  // the token's identity by default
    auto for_bob = http(server_, "POST", "/api/v1/leases", R"({"node": "lotus-1", "owner": "bob"})",
                        bearer("ci-secret"));
    EXPECT_EQ(for_bob->status, 403) << for_bob->body;
    auto rpc_for_bob =
        http(server_, "POST", "/",
             rpc_body("TweetyService.Acquire", R"({"ReleaseName": "lotus-1", "Owner": "bob"})"),
             bearer("ci-secret"));
    EXPECT_EQ(json_of(rpc_for_bob).at("error").at("code"), -32007) << rpc_for_bob->body;
    auto maintenance = http(server_, "PUT", "/api/v1/nodes/lotus-2/maintenance",
                            R"({"reason": "mine now"})", bearer("ci-secret"));
    EXPECT_EQ(maintenance->status, 403);
}

TEST_F(Tokens, AnAdminActsForOthersAndEndsTheirLeases) {
    auto ci_lease =
        http(server_, "POST", "/api/v1/leases", R"({"node": "lotus-0"})", bearer("ci-secret"));
    ASSERT_EQ(ci_lease->status, 201);
    auto id = str(json_of(ci_lease).at("id"));
    auto for_bob = http(server_, "POST", "/api/v1/leases", R"({"node": "lotus-1", "owner": "bob"})",
                        bearer("alice-secret"));
    EXPECT_EQ(for_bob->status, 201) << for_bob->body;
    EXPECT_EQ(json_of(for_bob).at("owner"), "bob");
    // ci may not end bob's lease; alice may end ci's.
    auto bob_id = str(json_of(for_bob).at("id"));
    EXPECT_EQ(http(server_, "DELETE", "/api/v1/leases/" + bob_id, "", bearer("ci-secret"))->status,
              403);
    EXPECT_EQ(http(server_, "DELETE", "/api/v1/leases/" + id, "", bearer("alice-secret"))->status,
              200);
    auto events = json_of(
        http(server_, "GET", "/api/v1/events?node=lotus-0&limit=1", "", bearer("alice-secret")));
    EXPECT_EQ(events.at("events").at(0).at("actor"), "alice");
}

TEST_F(Tokens, DashboardTakesTheTokenAsABasicPassword) {
    EXPECT_EQ(http(server_, "GET", "/dashboard")->status, 401);
    // "alice:alice-secret" in base64.
    auto page = http(server_, "GET", "/dashboard", "",
                     {{"Authorization", "Basic YWxpY2U6YWxpY2Utc2VjcmV0"}});
    EXPECT_EQ(page->status, 200);
    EXPECT_NE(page->body.find("lotus-0"), std::string::npos);
}

class HostAndOrigin : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(server_.start()) << server_.log(); }
    int acquire_with(std::vector<net::Header> headers) {
        auto response = http(server_, "POST", "/api/v1/leases",
                             R"({"node": "lotus-0", "owner": "web"})", std::move(headers));
        if (response && response->status == 201) {
            (void)http(server_, "DELETE", "/api/v1/leases/" + str(json_of(response).at("id")));
        }
        return response ? response->status : -1;
    }
    std::string port() const { return server_.address().substr(server_.address().rfind(':') + 1); }
    ServerProcess server_{test_config() + "auth:\n  allowed_hosts: [aviary.internal]\n"};
};

TEST_F(HostAndOrigin, ForeignHostIsRefusedForChanges) {
    EXPECT_EQ(acquire_with({{"Host", "evil.example:" + port()}}), 403);
    EXPECT_EQ(acquire_with({{"Host", "localhost:" + port()}}), 201);
    EXPECT_EQ(acquire_with({{"Host", "aviary.internal"}}), 201);
    auto seed_style = http(server_, "POST", "/", rpc_body("TweetyService.Status", "{}"),
                           {{"Host", "rebound.attacker.example:" + port()}});
    ASSERT_TRUE(seed_style);
    EXPECT_EQ(seed_style->status, 403);
}

TEST_F(HostAndOrigin, ForeignHostIsRefusedForReadsToo) {
    // DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 must not read
    // job output, events or the dashboard.
    for (std::string path : {"/api/v1/nodes", "/api/v1/events", "/api/v1/jobs", "/dashboard"}) {
        auto read = http(server_, "GET", path, "", {{"Host", "evil.example:" + port()}});
        ASSERT_TRUE(read) << path;
        EXPECT_EQ(read->status, 403) << path << ": " << read->body;
        EXPECT_NE(read->body.find("evil.example"), std::string::npos) << read->body;
    }
    auto own = http(server_, "GET", "/api/v1/nodes", "", {{"Host", "localhost:" + port()}});
    ASSERT_TRUE(own);
    EXPECT_EQ(own->status, 200);
}

TEST_F(HostAndOrigin, ProbesAnswerWhateverTheHost) {
    // Load balancers and kubelets probe by IP or by a service name aviary cannot know.
    for (std::string path : {"/healthz", "/readyz", "/metrics"}) {
        auto probe = http(server_, "GET", path, "", {{"Host", "10.0.0.7:8080"}});
        ASSERT_TRUE(probe) << path;
        EXPECT_EQ(probe->status, 200) << path;
    }
}

TEST_F(HostAndOrigin, ForeignOriginIsRefused) {
    EXPECT_EQ(acquire_with({{"Origin", "http://evil.example"}}), 403);
    EXPECT_EQ(acquire_with({{"Origin", "null"}}), 403);
    EXPECT_EQ(acquire_with({{"Origin", "http://localhost:" + port()}}), 201);
    EXPECT_EQ(acquire_with({{"Origin", "https://aviary.internal"}}), 201);
}

TEST(Exposure, NonLoopbackListenWithoutTokensRefusesToStart) {
    ServerProcess server{test_config(), {}, "0.0.0.0:0"};
    EXPECT_FALSE(server.start());
    EXPECT_EQ(server.wait_exit(), 1);
    EXPECT_NE(server.log().find("--insecure"), std::string::npos) << server.log();
}

TEST(HostileConnections, SlowAndHalfOpenConnectionsAreClosedAndTheServerServes) {
    ServerProcess server{test_config() +
                         "auth:\n  allowed_hosts: []\n"};  // read/idle timeouts: 5s in test_config
    ASSERT_TRUE(server.start()) << server.log();
    std::vector<int> idle;
    for (int i = 0; i < 200; ++i) {  // many connections at once, doing nothing
        int fd = connect_to(server.address());
        ASSERT_GE(fd, 0);
        idle.push_back(fd);
    }
    int slow = connect_to(server.address());
    const char partial[] = "POST /api/v1/leases HTTP/1.1\r\nHost: localhost\r\nContent-Le";
    ASSERT_GT(send(slow, partial, sizeof partial - 1, MSG_NOSIGNAL), 0);
    // The server keeps answering while they hang.
    auto lease = http(server, "POST", "/api/v1/leases", R"({"node": "lotus-0", "owner": "ok"})");
    ASSERT_TRUE(lease);
    EXPECT_EQ(lease->status, 201);
    // The stalled request is cut off by read_timeout (5s): the socket reads EOF.
    timeval timeout{.tv_sec = 15, .tv_usec = 0};
    setsockopt(slow, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    char buffer[256];
    ssize_t n = 0;
    while ((n = recv(slow, buffer, sizeof buffer, 0)) > 0) {
    }
    EXPECT_EQ(n, 0) << "the half-sent request was not closed";
    for (int fd : idle) {
        close(fd);
    }
    close(slow);
    EXPECT_EQ(http(server, "GET", "/healthz")->status, 200);
    EXPECT_EQ(json_of(http(server, "GET", "/api/v1/nodes/lotus-0")).at("holder"), "ok");
}

}  // namespace
}  // namespace aviary::test
