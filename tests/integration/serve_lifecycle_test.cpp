// serve as an operator meets it: start-up, config errors, crash durability, migration,
// graceful shutdown, health and metrics.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

/// A raw TCP connection, for requests that must be sent in pieces.
class RawConnection {
public:
    explicit RawConnection(const std::string& address) {
        auto colon = address.rfind(':');
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
        inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        timeval timeout{.tv_sec = 20, .tv_usec = 0};
        setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    }
    ~RawConnection() { close(fd_); }
    bool connected() const { return connected_; }
    bool send(std::string_view data) {
        return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == ssize_t(data.size());
    }
    /// Reads until the peer closes or the receive timeout passes.
    std::string read_all() {
        std::string out;
        char buffer[4096];
        ssize_t n = 0;
        while ((n = recv(fd_, buffer, sizeof buffer, 0)) > 0) {
            out.append(buffer, static_cast<size_t>(n));
        }
        return out;
    }

private:
    int fd_ = -1;
    bool connected_ = false;
};

double metric_value(const std::string& text, std::string_view series) {
    std::istringstream lines{text};
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind(series, 0) == 0 && line.size() > series.size() &&
            line[series.size()] == ' ') {
            return std::stod(line.substr(series.size() + 1));
        }
    }
    return -1;
}

TEST(ServeLifecycle, VersionPrintsTheVersion) {
    auto result = run_command(std::string{AVIARY_BINARY} + " version");
    EXPECT_EQ(result.status, 0);
    EXPECT_EQ(result.output.rfind("aviary 0.", 0), 0u) << result.output;
}

TEST(ServeLifecycle, EmbeddedDefaultServesTheDemoFleet) {
    ServerProcess server;  // no --config: the embedded examples/aviary.yaml
    ASSERT_TRUE(server.start()) << server.log();
    auto status = call(server, "TweetyService.Status", "{}");
    auto& nodes = status["result"].at("nodes").as_array();
    // The three sim nodes, and the loopback machine the roller's worker tc-worker-1 runs on.
    ASSERT_EQ(nodes.size(), 4u);
    std::vector<std::string> names;
    for (const auto& node : nodes) {
        names.push_back(str(node.at("node")));
        if (names.back().starts_with("lotus-")) {
            EXPECT_EQ(node.at("labels").at("chain"), "lotus");
            EXPECT_EQ(node.at("driver"), "sim");
        } else {
            EXPECT_EQ(node.at("driver"), "none");
        }
    }
    EXPECT_EQ(names, (std::vector<std::string>{"loopback-1", "lotus-0", "lotus-1", "lotus-2"}));
}

TEST(ServeLifecycle, InvalidConfigNamesFileLineAndKeyAndDoesNotStart) {
    ServerProcess server{"fleet:\n  lease_ttl: thirty\n  expiry_swep: 1s\n"};
    EXPECT_FALSE(server.start());
    EXPECT_EQ(server.wait_exit(), 2);
    auto log = server.log();
    EXPECT_NE(log.find("aviary.yaml:2:14: fleet.lease_ttl: expected a duration"), std::string::npos)
        << log;
    EXPECT_NE(log.find("fleet.expiry_swep"), std::string::npos) << log;
}

TEST(ServeLifecycle, HealthAndReadiness) {
    ServerProcess server{test_config()};
    ASSERT_TRUE(server.start()) << server.log();
    auto health = server.get("/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
    auto ready = server.get("/readyz");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 200);
    EXPECT_EQ(ready->body, "ready\n");
    auto missing = server.get("/nope");
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->status, 404);
}

TEST(ServeLifecycle, AcknowledgedAcquireSurvivesKillNine) {
    TempDir dir;
    {
        ServerProcess server{test_config(), dir.path()};
        ASSERT_TRUE(server.start()) << server.log();
        auto reply = call(server, "TweetyService.Acquire",
                          R"({"ReleaseName": "lotus-2", "Owner": "anton"})");
        ASSERT_TRUE(reply.contains("result"));
        server.kill9();  // right after the acknowledgement: no shutdown, no flush
    }
    ServerProcess restarted{test_config(), dir.path()};
    ASSERT_TRUE(restarted.start()) << restarted.log();
    EXPECT_EQ(str(status_of(restarted, "lotus-2").at("holder")), "anton");
}

TEST(ServeLifecycle, UpgradesADatabaseFromThePreviousSchema) {
    TempDir dir;
    std::ifstream fixture{std::string{AVIARY_SOURCE_DIR} + "/tests/fixtures/schema_v1.sql"};
    ASSERT_TRUE(fixture.good());
    std::stringstream sql;
    sql << fixture.rdbuf();
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir.path() + "/aviary.db").c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    ASSERT_EQ(sqlite3_exec(db, sql.str().c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << (error ? error : "");
    sqlite3_close(db);

    ServerProcess server{test_config(), dir.path()};
    ASSERT_TRUE(server.start()) << server.log();
    auto lotus1 = status_of(server, "lotus-1");
    ASSERT_TRUE(lotus1.is_object());
    EXPECT_EQ(lotus1.at("holder"), "anton");
    EXPECT_FALSE(str(lotus1.at("lease_id")).empty());
    // The old lease behaves like any other: its holder can release it.
    auto released =
        call(server, "TweetyService.Release", R"({"ReleaseName": "lotus-1", "Owner": "anton"})");
    EXPECT_EQ(released["result"].at("released"), true);
}

TEST(ServeLifecycle, LeaseThatLapsedWhileServeWasDownIsFreedAtStart) {
    TempDir dir;
    {
        ServerProcess server{test_config("", "1h"), dir.path()};
        ASSERT_TRUE(server.start()) << server.log();
        call(server, "TweetyService.Acquire",
             R"({"ReleaseName": "lotus-0", "Owner": "anton", "TTL": "200ms"})");
        EXPECT_EQ(server.stop(), 0);
    }
    // Wait out the TTL while serve is down: a bounded poll on the wall clock.
    auto lapsed_at = std::chrono::steady_clock::now() + std::chrono::milliseconds{300};
    wait_until([&] { return std::chrono::steady_clock::now() >= lapsed_at; });
    ServerProcess restarted{test_config("", "1h"), dir.path()};
    ASSERT_TRUE(restarted.start()) << restarted.log();
    EXPECT_TRUE(wait_until([&] {
        return restarted.log().find("lease expired node=lotus-0") != std::string::npos;
    })) << restarted.log();
    EXPECT_EQ(status_of(restarted, "lotus-0").at("state"), "free");
}

TEST(ServeLifecycle, GracefulShutdownLetsAnInFlightRequestFinish) {
    TempDir dir;
    ServerProcess server{test_config(), dir.path()};
    ASSERT_TRUE(server.start()) << server.log();
    std::string body =
        rpc_body("TweetyService.Acquire", R"({"ReleaseName": "lotus-1", "Owner": "slow"})");
    RawConnection slow{server.address()};
    ASSERT_TRUE(slow.connected());
    // Headers and half the body: a request in flight.
    ASSERT_TRUE(
        slow.send(fmt::format("POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: "
                              "application/json\r\nContent-Length: {}\r\n\r\n{}",
                              server.address(), body.size(), body.substr(0, body.size() / 2))));
    ASSERT_TRUE(wait_until([&] {
        auto metrics = server.get("/metrics");
        return metrics && metric_value(metrics->body, "aviary_http_connections_open") >= 2;
    }));
    server.send_signal(SIGTERM);
    // Once shutdown began, new connections are refused...
    EXPECT_TRUE(wait_until([&] { return !RawConnection{server.address()}.connected(); }));
    // ...but the request in flight completes.
    ASSERT_TRUE(slow.send(body.substr(body.size() / 2)));
    auto reply = slow.read_all();
    EXPECT_EQ(reply.rfind("HTTP/1.1 200", 0), 0u) << reply;
    EXPECT_NE(reply.find("lotus-1 acquired by slow"), std::string::npos) << reply;
    EXPECT_EQ(server.wait_exit(), 0) << server.log();
    // The store was closed cleanly with the write in it.
    ServerProcess restarted{test_config(), dir.path()};
    ASSERT_TRUE(restarted.start()) << restarted.log();
    EXPECT_EQ(str(status_of(restarted, "lotus-1").at("holder")), "slow");
}

TEST(ServeLifecycle, MetricsPassPromtoolAndShowGroupCommit) {
    ServerProcess server{test_config()};
    ASSERT_TRUE(server.start()) << server.log();
    call(server, "TweetyService.Acquire", R"({"ReleaseName": "lotus-0", "Owner": "anton"})");
    call(server, "TweetyService.Acquire", R"({"ReleaseName": "lotus-0", "Owner": "bob"})");
    auto noop = http(server, "POST", "/api/v1/nodes/lotus-1/actions/noop", R"({"wait": true})");
    ASSERT_TRUE(noop && noop->status == 200) << (noop ? noop->body : noop.error().message);
    auto metrics = server.get("/metrics");
    ASSERT_TRUE(metrics);
    ASSERT_EQ(metrics->status, 200);
    const auto& text = metrics->body;
    EXPECT_EQ(metric_value(text, R"(aviary_nodes{state="leased"})"), 1);
    EXPECT_EQ(metric_value(text, R"(aviary_nodes{state="free"})"), 2);
    EXPECT_EQ(metric_value(text, "aviary_leases_held"), 1);
    EXPECT_GE(metric_value(text, "aviary_store_commits_total"), 1);
    EXPECT_GE(metric_value(text, "aviary_store_writes_total"), 1);
    EXPECT_GE(
        metric_value(text, R"(aviary_http_requests_total{route="/",method="POST",code="200"})"), 2);
    EXPECT_NE(text.find("aviary_http_request_duration_seconds_bucket"), std::string::npos);
    EXPECT_NE(text.find("aviary_build_info{"), std::string::npos);
    EXPECT_NE(
        text.find(R"(aviary_jsonrpc_calls_total{method="TweetyService.Acquire",outcome="busy"})"),
        std::string::npos);
    // The job engine's figures.
    EXPECT_EQ(
        metric_value(text, R"(aviary_jobs_finished_total{action="noop",outcome="succeeded"})"), 1);
    EXPECT_EQ(metric_value(text, R"(aviary_job_duration_seconds_count{action="noop"})"), 1);
    EXPECT_EQ(metric_value(text, "aviary_jobs_queued"), 0);
    EXPECT_EQ(metric_value(text, "aviary_jobs_running"), 0);
    EXPECT_EQ(metric_value(text, "aviary_jobs_oldest_queued_age_seconds"), 0);
    EXPECT_EQ(metric_value(text, R"(aviary_jobs_submitted_total{action="noop"})"), 1);

    TempDir dir;
    auto path = dir.path() + "/metrics.txt";
    std::ofstream{path} << text;
    if (run_command("command -v promtool").status != 0) {
        GTEST_SKIP() << "promtool not installed (scripts/install-deps.sh installs it)";
    }
    auto check = run_command(fmt::format("promtool check metrics < {} 2>&1", path));
    EXPECT_EQ(check.status, 0) << check.output;
    EXPECT_EQ(check.output, "") << check.output;
}

}  // namespace
}  // namespace aviary::test
