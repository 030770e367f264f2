// The route table: patterns with named parameters, 404 against 405 with Allow, HEAD served by
// GET routes, probes, and the method label kept to a closed set.
#include "api/routes.hpp"

#include <gtest/gtest.h>

#include "api/router.hpp"

namespace aviary::api {
namespace {

net::asio::awaitable<net::Response> ok(RouteContext&) {
    co_return net::Response{};
}

RouteTable sample_table() {
    RouteTable table;
    table.add({.method = "GET", .pattern = "/healthz", .handler = ok, .access = Access::kProbe});
    table.add({.method = "GET", .pattern = "/api/v1/jobs", .handler = ok});
    table.add({.method = "POST",
               .pattern = "/api/v1/jobs",
               .handler = ok,
               .body = BodyKind::kIgnored,
               .cors = true});
    table.add({.method = "GET", .pattern = "/api/v1/jobs/{id}", .handler = ok});
    table.add({.method = "POST", .pattern = "/api/v1/jobs/{id}/cancel", .handler = ok});
    table.add({.method = "PUT",
               .pattern = "/api/v1/nodes/{name}",
               .handler = ok,
               .body = BodyKind::kJson});
    table.add({.method = "DELETE", .pattern = "/api/v1/nodes/{name}", .handler = ok});
    table.add({.method = "POST",
               .pattern = "/api/v1/nodes/{name}/actions/{action}",
               .handler = ok,
               .body = BodyKind::kJson});
    return table;
}

TEST(RouteTable, MatchesLiteralsAndNamedParameters) {
    auto table = sample_table();
    auto job = table.match("GET", "/api/v1/jobs/01ABC");
    ASSERT_NE(job.route, nullptr);
    EXPECT_EQ(job.route->pattern, "/api/v1/jobs/{id}");
    EXPECT_EQ(job.params["id"], "01ABC");
    auto action = table.match("POST", "/api/v1/nodes/lotus-0/actions/upgrade");
    ASSERT_NE(action.route, nullptr);
    EXPECT_EQ(action.params["name"], "lotus-0");
    EXPECT_EQ(action.params["action"], "upgrade");
}

TEST(RouteTable, SameCollectionServesTwoMethodsWithoutSpecialCases) {
    // aviary's GET /api/v1/jobs lists jobs; the roller's POST /api/v1/jobs?... submits one.
    auto table = sample_table();
    auto list = table.match("GET", "/api/v1/jobs");
    auto submit = table.match("POST", "/api/v1/jobs");
    ASSERT_NE(list.route, nullptr);
    ASSERT_NE(submit.route, nullptr);
    EXPECT_NE(list.route, submit.route);
    EXPECT_EQ(submit.route->body, BodyKind::kIgnored);
    EXPECT_TRUE(submit.cors);
    EXPECT_EQ(list.allow, "GET, HEAD, POST, OPTIONS");
}

TEST(RouteTable, UnknownPathIsA404AndWrongMethodA405WithAllow) {
    auto table = sample_table();
    auto missing = table.match("GET", "/api/v1/nothing");
    EXPECT_EQ(missing.route, nullptr);
    EXPECT_TRUE(missing.allow.empty());
    auto wrong = table.match("PATCH", "/api/v1/nodes/lotus-0");
    EXPECT_EQ(wrong.route, nullptr);
    EXPECT_EQ(wrong.allow, "PUT, DELETE, OPTIONS");
    // Too many or too few segments match nothing.
    EXPECT_TRUE(table.match("GET", "/api/v1/jobs/a/b/c").allow.empty());
    EXPECT_TRUE(table.match("GET", "/api/v1").allow.empty());
}

TEST(RouteTable, HeadIsServedByGetRoutes) {
    auto table = sample_table();
    auto head = table.match("HEAD", "/api/v1/jobs/x");
    ASSERT_NE(head.route, nullptr);
    EXPECT_EQ(head.route->method, "GET");
    EXPECT_EQ(table.match("HEAD", "/api/v1/jobs/x/cancel").route, nullptr);
}

TEST(RouteTable, EmptySegmentsAreIgnoredAndDecodedValuesKept) {
    auto table = sample_table();
    auto match = table.match("GET", "//api/v1//jobs/id with space/");
    ASSERT_NE(match.route, nullptr);
    EXPECT_EQ(match.params["id"], "id with space");
}

TEST(RouteTable, ProbePathsAreKnownEvenForAWrongMethod) {
    auto table = sample_table();
    EXPECT_TRUE(table.match("GET", "/healthz").probe);
    auto post = table.match("POST", "/healthz");
    EXPECT_EQ(post.route, nullptr);
    EXPECT_TRUE(post.probe);
    EXPECT_FALSE(table.match("GET", "/api/v1/jobs").probe);
    EXPECT_FALSE(table.match("GET", "/nowhere").probe);
}

TEST(RouteTable, MutatingMethodsAreTheFourThatChangeState) {
    for (const char* method : {"POST", "PUT", "PATCH", "DELETE"}) {
        EXPECT_TRUE(is_mutating(method)) << method;
    }
    for (const char* method : {"GET", "HEAD", "OPTIONS", "post", "BREW"}) {
        EXPECT_FALSE(is_mutating(method)) << method;
    }
}

TEST(RouteTableDeathTest, DuplicateRouteIsABugFoundAtStart) {
    auto table = sample_table();
    EXPECT_DEATH(table.add({.method = "GET", .pattern = "/api/v1/jobs/{other}", .handler = ok}),
                 "routed once");
    EXPECT_DEATH(table.add({.method = "GET", .pattern = "/api/v1/jobs", .handler = ok}),
                 "routed once");
}

TEST(Router, MethodLabelIsAClosedSet) {
    EXPECT_EQ(method_label("GET"), "GET");
    EXPECT_EQ(method_label("DELETE"), "DELETE");
    EXPECT_EQ(method_label("BREW"), "other");
    EXPECT_EQ(method_label("get"), "other");
    EXPECT_EQ(method_label(std::string(1000, 'X')), "other");
}

}  // namespace
}  // namespace aviary::api
