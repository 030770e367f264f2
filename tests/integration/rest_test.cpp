// The REST lease pool through the real binary: nodes, leases by id, exclusive, selectors and
// counts, waiting in order, maintenance, API nodes vs config nodes, the audit trail, the
// dashboard, and strict bodies.
#include <gtest/gtest.h>

#include <future>

#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;

std::string fast_waits() {
    return "  wait_heartbeat: 100ms\n";
}

class Rest : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(server_.start()) << server_.log(); }

    json::value post_lease(std::string body, int want_status = 201) {
        auto response = http(server_, "POST", "/api/v1/leases", std::move(body));
        EXPECT_TRUE(response);
        if (response) {
            EXPECT_EQ(response->status, want_status) << response->body;
        }
        return json_of(response);
    }
    json::value node(std::string_view name) {
        return json_of(http(server_, "GET", fmt::format("/api/v1/nodes/{}", name)));
    }
    /// Starts a waiting acquire in the background; its future holds the NDJSON body.
    std::future<std::string> wait_for(std::string body) {
        return std::async(std::launch::async, [this, body] {
            auto response = http(server_, "POST", "/api/v1/leases", body);
            return response ? response->body : std::string{"request failed"};
        });
    }
    int waiters() {
        auto leases = json_of(http(server_, "GET", "/api/v1/leases"));
        return leases.is_object() ? int(leases.at("waiters").as_array().size()) : -1;
    }

    ServerProcess server_{test_config(fast_waits())};
};

TEST_F(Rest, NodesAreListedAndFilteredByLabel) {
    auto all = json_of(http(server_, "GET", "/api/v1/nodes"));
    ASSERT_EQ(all.at("nodes").as_array().size(), 3u);
    EXPECT_EQ(all.at("nodes").at(0).at("source"), "config");
    auto lotus = json_of(http(server_, "GET", "/api/v1/nodes?label=chain=lotus"));
    EXPECT_EQ(lotus.at("nodes").as_array().size(), 3u);
    auto geth = json_of(http(server_, "GET", "/api/v1/nodes?label=chain=geth"));
    EXPECT_EQ(geth.at("nodes").as_array().size(), 0u);
    auto bad = http(server_, "GET", "/api/v1/nodes?label=oops");
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 400);
    EXPECT_NE(bad->body.find("key=value"), std::string::npos);
    auto missing = http(server_, "GET", "/api/v1/nodes/lotus-9");
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->status, 404);
    EXPECT_EQ(json_of(missing).at("error").at("code"), "not_found");
}

TEST_F(Rest, AcquireByNodeThenRenewAndReleaseById) {
    auto lease = post_lease(R"({"node": "lotus-0", "owner": "ci", "ttl": "10m", "reason": "t"})");
    auto id = str(lease.at("id"));
    ASSERT_FALSE(id.empty());
    EXPECT_EQ(lease.at("nodes").at(0), "lotus-0");
    EXPECT_EQ(str(node("lotus-0").at("lease_id")), id);

    auto renewed = http(server_, "PUT", "/api/v1/leases/" + id, R"({"ttl": "2h"})");
    ASSERT_TRUE(renewed);
    ASSERT_EQ(renewed->status, 200) << renewed->body;
    EXPECT_GT(str(json_of(renewed).at("expires_at")), str(lease.at("expires_at")));

    auto released = http(server_, "DELETE", "/api/v1/leases/" + id);
    ASSERT_TRUE(released);
    ASSERT_EQ(released->status, 200) << released->body;
    EXPECT_EQ(node("lotus-0").at("state"), "free");
    auto again = http(server_, "DELETE", "/api/v1/leases/" + id);
    EXPECT_EQ(again->status, 404);
}

TEST_F(Rest, ExclusiveRefusesEvenTheSameOwner) {
    post_lease(R"({"node": "lotus-1", "owner": "ci", "exclusive": true})");
    auto refused = post_lease(R"({"node": "lotus-1", "owner": "ci", "exclusive": true})", 409);
    EXPECT_EQ(refused.at("error").at("code"), "busy");
    EXPECT_NE(str(refused.at("error").at("message")).find("current owner is ci"),
              std::string::npos);
}

TEST_F(Rest, SelectorAndCountAreAllOrNothing) {
    auto pair = post_lease(R"({"selector": {"chain": "lotus"}, "count": 2, "owner": "a"})");
    ASSERT_EQ(pair.at("nodes").as_array().size(), 2u);
    auto refused = post_lease(R"({"selector": {"chain": "lotus"}, "count": 2, "owner": "b"})", 409);
    EXPECT_EQ(refused.at("error").at("code"), "busy");
    // Never half a set: the one node still free stayed free.
    auto nodes = json_of(http(server_, "GET", "/api/v1/nodes")).at("nodes").as_array();
    int free = 0;
    for (const auto& n : nodes) {
        free += n.at("state") == "free" ? 1 : 0;
    }
    EXPECT_EQ(free, 1);
}

TEST_F(Rest, WaitersAreHandedTheNodeInOrder) {
    auto held = post_lease(R"({"node": "lotus-0", "owner": "a"})");
    auto first = wait_for(R"({"node": "lotus-0", "owner": "b", "wait": "30s"})");
    ASSERT_TRUE(wait_until([&] { return waiters() == 1; }));
    auto second = wait_for(R"({"node": "lotus-0", "owner": "c", "wait": "30s"})");
    ASSERT_TRUE(wait_until([&] { return waiters() == 2; }));
    auto queue = json_of(http(server_, "GET", "/api/v1/leases")).at("waiters").as_array();
    EXPECT_EQ(queue.at(0).at("owner"), "b");
    EXPECT_EQ(queue.at(0).at("position"), 1);
    EXPECT_EQ(queue.at(1).at("owner"), "c");
    EXPECT_EQ(queue.at(1).at("position"), 2);

    ASSERT_EQ(http(server_, "DELETE", "/api/v1/leases/" + str(held.at("id")))->status, 200);
    auto b = last_line(first.get());
    ASSERT_TRUE(b.is_object()) << "no final line";
    EXPECT_EQ(b.at("lease").at("owner"), "b");
    EXPECT_EQ(node("lotus-0").at("holder"), "b");

    ASSERT_EQ(http(server_, "DELETE", "/api/v1/leases/" + str(b.at("lease").at("id")))->status,
              200);
    auto c = last_line(second.get());
    EXPECT_EQ(c.at("lease").at("owner"), "c");
}

TEST_F(Rest, WaitingPrintsProgressLinesWithPosition) {
    post_lease(R"({"node": "lotus-2", "owner": "a"})");
    auto waiting = wait_for(R"({"node": "lotus-2", "owner": "b", "wait": "600ms"})");
    auto body = waiting.get();
    auto first_line = json::parse(body.substr(0, body.find('\n')));
    EXPECT_EQ(first_line.at("waiting").at("position"), 1);
    EXPECT_FALSE(str(first_line.at("waiting").at("ticket")).empty());
    auto last = last_line(body);
    EXPECT_EQ(last.at("error").at("code"), "timeout") << body;
    EXPECT_EQ(waiters(), 0);
    EXPECT_EQ(node("lotus-2").at("holder"), "a");
}

TEST_F(Rest, WaiterIsDroppedWhenItsConnectionCloses) {
    auto held = post_lease(R"({"node": "lotus-1", "owner": "a"})");
    {
        net::ClientRequest request;
        request.method = "POST";
        request.url = server_.url("/api/v1/leases");
        request.headers.push_back({"Content-Type", "application/json"});
        request.body = R"({"node": "lotus-1", "owner": "gone", "wait": "30s"})";
        request.timeout = std::chrono::milliseconds{300};  // the client gives up and hangs up
        auto response = net::fetch_sync(std::move(request));
        EXPECT_FALSE(response);
    }
    EXPECT_TRUE(wait_until([&] { return waiters() == 0; })) << server_.log();
    ASSERT_EQ(http(server_, "DELETE", "/api/v1/leases/" + str(held.at("id")))->status, 200);
    EXPECT_EQ(node("lotus-1").at("state"), "free");  // nobody was handed it
}

TEST_F(Rest, OverlappingMultiNodeWaitersBothFinish) {
    auto held = post_lease(R"({"node": "lotus-0", "owner": "x"})");
    auto all =
        wait_for(R"({"selector": {"chain": "lotus"}, "count": 3, "owner": "w1", "wait": "30s"})");
    ASSERT_TRUE(wait_until([&] { return waiters() == 1; }));
    // lotus-1 is free, but w1 queued first for it: a later caller waits behind.
    auto one = wait_for(R"({"node": "lotus-1", "owner": "w2", "wait": "30s"})");
    ASSERT_TRUE(wait_until([&] { return waiters() == 2; }));
    ASSERT_EQ(http(server_, "DELETE", "/api/v1/leases/" + str(held.at("id")))->status, 200);
    auto w1 = last_line(all.get());
    ASSERT_TRUE(w1.is_object());
    EXPECT_EQ(w1.at("lease").at("nodes").as_array().size(), 3u);
    ASSERT_EQ(http(server_, "DELETE", "/api/v1/leases/" + str(w1.at("lease").at("id")))->status,
              200);
    auto w2 = last_line(one.get());
    EXPECT_EQ(w2.at("lease").at("owner"), "w2");
}

TEST_F(Rest, MaintenanceTakesANodeOutOfServiceAndBack) {
    auto on =
        http(server_, "PUT", "/api/v1/nodes/lotus-2/maintenance", R"({"reason": "disk swap"})");
    ASSERT_TRUE(on);
    ASSERT_EQ(on->status, 200) << on->body;
    EXPECT_EQ(json_of(on).at("state"), "maintenance");
    EXPECT_EQ(json_of(on).at("maintenance_reason"), "disk swap");
    auto refused = post_lease(R"({"node": "lotus-2", "owner": "a"})", 503);
    EXPECT_NE(str(refused.at("error").at("message")).find("disk swap"), std::string::npos);
    auto status = call(server_, "TweetyService.Status", "{}");
    EXPECT_NE(str(status["result"].at("Result")).find("lotus-2 in maintenance: disk swap"),
              std::string::npos);
    auto off = http(server_, "DELETE", "/api/v1/nodes/lotus-2/maintenance");
    ASSERT_EQ(off->status, 200);
    EXPECT_EQ(json_of(off).at("state"), "free");
    post_lease(R"({"node": "lotus-2", "owner": "a"})");
}

TEST_F(Rest, EventsPageNewestFirstWithACursor) {
    for (int i = 0; i < 3; ++i) {
        auto lease = post_lease(R"({"node": "lotus-0", "owner": "pager"})");
        (void)http(server_, "DELETE", "/api/v1/leases/" + str(lease.at("id")));
    }
    std::vector<std::int64_t> ids;
    std::vector<std::string> kinds;
    std::string cursor;
    for (int page = 0; page < 20; ++page) {
        auto path = "/api/v1/events?node=lotus-0&limit=2" +
                    (cursor.empty() ? std::string{} : "&cursor=" + cursor);
        auto body = json_of(http(server_, "GET", path));
        ASSERT_TRUE(body.is_object());
        for (const auto& event : body.at("events").as_array()) {
            ids.push_back(event.at("id").to_number<std::int64_t>());
            kinds.push_back(str(event.at("kind")));
            EXPECT_EQ(event.at("node"), "lotus-0");
        }
        if (body.at("next_cursor").is_null()) {
            break;
        }
        cursor = str(body.at("next_cursor"));
    }
    // Newest first: three acquire/release pairs, then the node's arrival from the config.
    EXPECT_EQ(kinds, (std::vector<std::string>{"lease.released", "lease.acquired", "lease.released",
                                               "lease.acquired", "lease.released", "lease.acquired",
                                               "node.added"}));
    EXPECT_TRUE(std::is_sorted(ids.rbegin(), ids.rend()));
    auto bad = http(server_, "GET", "/api/v1/events?limit=0");
    EXPECT_EQ(bad->status, 400);
}

TEST_F(Rest, StrictBodiesNameTheField) {
    auto unknown = post_lease(R"({"node": "lotus-0", "owner": "a", "colour": "red"})", 400);
    EXPECT_NE(str(unknown.at("error").at("message")).find("colour"), std::string::npos);
    auto wrong = post_lease(R"({"node": "lotus-0", "owner": "a", "count": "two"})", 400);
    EXPECT_NE(str(wrong.at("error").at("message")).find("count"), std::string::npos);
    auto ttl = post_lease(R"({"node": "lotus-0", "owner": "a", "ttl": "forever"})", 400);
    EXPECT_NE(str(ttl.at("error").at("message")).find("ttl"), std::string::npos);
    auto not_json = http(server_, "POST", "/api/v1/leases", "{oops");
    EXPECT_EQ(not_json->status, 400);
    auto both = post_lease(R"({"node": "lotus-0", "selector": {"a": "b"}, "owner": "a"})", 400);
    EXPECT_EQ(both.at("error").at("code"), "invalid_argument");
    EXPECT_EQ(node("lotus-0").at("state"), "free");
}

TEST_F(Rest, HostileBodiesAreRefusedAndNothingChanges) {
    auto held = post_lease(R"({"node": "lotus-2", "owner": "keep"})");
    std::string deep = R"({"node": "lotus-0", "owner": "a", "selector": )" +
                       std::string(2000, '[') + std::string(2000, ']') + "}";
    EXPECT_EQ(http(server_, "POST", "/api/v1/leases", deep)->status, 400);
    auto bad_utf8 =
        http(server_, "POST", "/api/v1/leases", "{\"node\": \"lotus-0\", \"owner\": \"\xff\xfe\"}");
    EXPECT_EQ(bad_utf8->status, 400);
    EXPECT_EQ(json_of(bad_utf8).at("error").at("code"), "invalid_argument");
    // (A body past the size limit: hostile_input_test's OversizedRestBodyIsRefusedFromItsHead.)
    EXPECT_EQ(http(server_, "POST", "/api/v1/leases", "[1, 2]")->status, 400);
    EXPECT_EQ(http(server_, "PUT", "/api/v1/leases/" + str(held.at("id")), R"({"ttl": 5})")->status,
              400);
    // Nothing stored moved: the lease held before is intact, the others are free.
    EXPECT_EQ(node("lotus-2").at("holder"), "keep");
    EXPECT_EQ(node("lotus-0").at("state"), "free");
    EXPECT_EQ(http(server_, "GET", "/api/v1/nodes/geth-9")->status, 404);
    EXPECT_EQ(http(server_, "GET", "/healthz")->status, 200);
}

TEST_F(Rest, DashboardIsPlainHtmlWithEscapedText) {
    post_lease(R"({"node": "lotus-1", "owner": "<script>x</script>"})");
    auto page = http(server_, "GET", "/dashboard");
    ASSERT_TRUE(page);
    EXPECT_EQ(page->status, 200);
    EXPECT_NE(page->header("Content-Type")->find("text/html"), std::string::npos);
    EXPECT_NE(page->body.find("<td>lotus-0</td>"), std::string::npos);
    EXPECT_NE(page->body.find("&lt;script&gt;x&lt;/script&gt;"), std::string::npos);
    EXPECT_EQ(page->body.find("<script>x"), std::string::npos);
}

TEST(RestNodes, ApiNodesPersistAndConfigNodesAreReconciled) {
    TempDir dir;
    {
        ServerProcess server{test_config(), dir.path()};
        ASSERT_TRUE(server.start()) << server.log();
        auto added = http(server, "PUT", "/api/v1/nodes/geth-0",
                          R"({"labels": {"chain": "geth"}, "image_tag": "v1.13"})");
        ASSERT_EQ(added->status, 201) << added->body;
        EXPECT_EQ(json_of(added).at("source"), "api");
        auto config_node = http(server, "PUT", "/api/v1/nodes/lotus-0", R"({"note": "x"})");
        EXPECT_EQ(config_node->status, 409);
        ASSERT_EQ(http(server, "POST", "/api/v1/leases", R"({"node": "lotus-2", "owner": "keep"})")
                      ->status,
                  201);
        EXPECT_EQ(server.stop(), 0);
    }
    // The next config drops lotus-1 (free: removed) and lotus-2 (leased: kept until released).
    std::string smaller = R"(fleet:
  expiry_sweep: 50ms
  nodes:
    - {name: lotus-0, driver: sim, image_tag: v1.0.0, labels: {chain: lotus}}
)";
    ServerProcess restarted{smaller, dir.path()};
    ASSERT_TRUE(restarted.start()) << restarted.log();
    auto names = json_of(http(restarted, "GET", "/api/v1/nodes")).at("nodes").as_array();
    std::vector<std::string> listed;
    for (const auto& n : names) {
        listed.push_back(str(n.at("node")));
    }
    EXPECT_EQ(listed, (std::vector<std::string>{"geth-0", "lotus-0", "lotus-2"}));
    EXPECT_EQ(json_of(http(restarted, "GET", "/api/v1/nodes/lotus-2")).at("holder"), "keep");
    auto removed = http(restarted, "DELETE", "/api/v1/nodes/geth-0");
    EXPECT_EQ(removed->status, 204);
}

}  // namespace
}  // namespace aviary::test
