// The authenticator on its own: tokens and their callers, the Host rule on every request and the
// Origin rule on guarded ones (changes and WebSocket upgrades).
#include "api/auth.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace aviary::api {
namespace {

config::AuthSettings with_tokens() {
    config::AuthSettings settings;
    settings.tokens.push_back(config::Token{
        .identity = "alice", .role = "admin", .groups = {}, .secret = "s3cret-alice"});
    settings.tokens.push_back(config::Token{
        .identity = "bob", .role = "user", .groups = {"deployers"}, .secret = "s3cret-bob"});
    settings.allowed_hosts = {"aviary.internal", "Proxy.Example:8443"};
    return settings;
}

net::Request request_with(std::vector<net::Header> headers, std::string method = "GET") {
    net::Request request;
    request.method = std::move(method);
    request.path = "/api/v1/nodes";
    request.headers = std::move(headers);
    return request;
}

TEST(Authenticator, WithoutTokensEveryCallerIsAnAdmin) {
    Authenticator auth{config::AuthSettings{}, "127.0.0.1:1337"};
    EXPECT_FALSE(auth.tokens_required());
    auto caller = auth.authenticate(request_with({}));
    ASSERT_TRUE(caller);
    EXPECT_TRUE(caller->admin);
}

TEST(Authenticator, BearerTokenNamesItsCallerAndRole) {
    Authenticator auth{with_tokens(), "127.0.0.1:1337"};
    ASSERT_TRUE(auth.tokens_required());
    auto alice = auth.authenticate(request_with({{"Authorization", "Bearer s3cret-alice"}}));
    ASSERT_TRUE(alice);
    EXPECT_EQ(alice->identity, "alice");
    EXPECT_TRUE(alice->admin);
    auto bob = auth.authenticate(request_with({{"authorization", "bearer s3cret-bob"}}));
    ASSERT_TRUE(bob);
    EXPECT_EQ(bob->identity, "bob");
    EXPECT_FALSE(bob->admin);
    EXPECT_EQ(bob->groups, std::vector<std::string>{"deployers"});
}

TEST(Authenticator, BasicCredentialsCarryTheTokenAsPassword) {
    Authenticator auth{with_tokens(), "127.0.0.1:1337"};
    // base64("anyone:s3cret-bob")
    auto bob =
        auth.authenticate(request_with({{"Authorization", "Basic YW55b25lOnMzY3JldC1ib2I="}}));
    ASSERT_TRUE(bob);
    EXPECT_EQ(bob->identity, "bob");
}

TEST(Authenticator, MissingWrongAndPrefixTokensAreUnauthenticated) {
    Authenticator auth{with_tokens(), "127.0.0.1:1337"};
    for (const auto& header : std::vector<std::vector<net::Header>>{
             {},
             {{"Authorization", "Bearer "}},
             {{"Authorization", "Bearer s3cret"}},            // a prefix of a real token
             {{"Authorization", "Bearer s3cret-alice-and"}},  // a real token plus more
             {{"Authorization", "Token s3cret-alice"}},
             {{"Authorization", "Basic !!!"}}}) {
        auto caller = auth.authenticate(request_with(header));
        ASSERT_FALSE(caller);
        EXPECT_EQ(caller.error().code, core::ErrorCode::kUnauthenticated);
    }
    auto missing = auth.authenticate(request_with({}));
    ASSERT_FALSE(missing);
    EXPECT_NE(missing.error().message.find("Authorization: Bearer"), std::string::npos);
}

TEST(Authenticator, HostMustNameThisAviaryOnEveryRequest) {
    Authenticator auth{with_tokens(), "127.0.0.1:1337"};
    auto host = [&](std::string value, std::string method = "GET") {
        return static_cast<bool>(
            auth.check_host_and_origin(request_with({{"Host", std::move(value)}}, method), false));
    };
    EXPECT_TRUE(host("127.0.0.1:1337"));
    EXPECT_TRUE(host("localhost:1337"));
    EXPECT_TRUE(host("LOCALHOST:1337"));
    EXPECT_TRUE(host("[::1]:1337"));
    EXPECT_TRUE(host("localhost"));        // no port: the default port of the scheme
    EXPECT_TRUE(host("aviary.internal"));  // configured, any port (a proxy's)
    EXPECT_TRUE(host("aviary.internal:443"));
    EXPECT_TRUE(host("proxy.example"));       // configured with a port: the name counts
    EXPECT_FALSE(host("localhost:8080"));     // another local service's port
    EXPECT_FALSE(host("evil.example:1337"));  // DNS rebinding
    EXPECT_FALSE(host("evil.example:1337", "POST"));
    EXPECT_FALSE(host("10.1.2.3:1337"));  // not a wildcard listener
    EXPECT_FALSE(host(""));
    auto none = auth.check_host_and_origin(request_with({}), false);
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().code, core::ErrorCode::kPermissionDenied);
    auto refused = auth.check_host_and_origin(request_with({{"Host", "evil.example"}}), false);
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message.find("\"evil.example\""), std::string::npos);
}

TEST(Authenticator, BoundPortReplacesPortZero) {
    Authenticator auth{config::AuthSettings{}, "127.0.0.1:0"};
    auth.set_bound_port(40123);
    EXPECT_TRUE(auth.check_host_and_origin(request_with({{"Host", "127.0.0.1:40123"}}), false));
    EXPECT_FALSE(auth.check_host_and_origin(request_with({{"Host", "127.0.0.1:0"}}), false));
}

TEST(Authenticator, WildcardListenerAcceptsItsOwnIpLiterals) {
    Authenticator auth{with_tokens(), "0.0.0.0:1337"};
    EXPECT_TRUE(auth.check_host_and_origin(request_with({{"Host", "10.1.2.3:1337"}}), false));
    EXPECT_TRUE(auth.check_host_and_origin(request_with({{"Host", "[fd00::7]:1337"}}), false));
    EXPECT_FALSE(auth.check_host_and_origin(request_with({{"Host", "10.1.2.3:9999"}}), false));
    EXPECT_FALSE(auth.check_host_and_origin(request_with({{"Host", "node.evil:1337"}}), false));
}

TEST(Authenticator, OriginIsCheckedOnGuardedRequestsOnly) {
    Authenticator auth{with_tokens(), "127.0.0.1:1337"};
    auto check = [&](std::string origin, bool guarded) {
        return static_cast<bool>(auth.check_host_and_origin(
            request_with({{"Host", "localhost:1337"}, {"Origin", std::move(origin)}}, "POST"),
            guarded));
    };
    EXPECT_TRUE(check("http://localhost:1337", true));
    EXPECT_TRUE(check("https://aviary.internal", true));
    EXPECT_FALSE(check("http://evil.example", true));
    EXPECT_FALSE(check("null", true));
    EXPECT_FALSE(check("file://", true));
    EXPECT_FALSE(check("http://localhost:8080", true));
    // A plain read may come from any page's fetch(): the browser keeps the answer from it.
    EXPECT_TRUE(check("http://evil.example", false));
    auto refused = auth.check_host_and_origin(
        request_with({{"Host", "localhost:1337"}, {"Origin", "http://evil.example"}}, "POST"),
        true);
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message.find("Origin \"http://evil.example\" is foreign"),
              std::string::npos);
}

TEST(Authenticator, LoopbackHostsAreRecognised) {
    EXPECT_TRUE(is_loopback_host("127.0.0.1"));
    EXPECT_TRUE(is_loopback_host("127.8.9.10"));
    EXPECT_TRUE(is_loopback_host("::1"));
    EXPECT_TRUE(is_loopback_host("LocalHost"));
    EXPECT_FALSE(is_loopback_host("0.0.0.0"));
    EXPECT_FALSE(is_loopback_host("128.0.0.1"));
    EXPECT_FALSE(is_loopback_host("localhost.evil.example"));
}

}  // namespace
}  // namespace aviary::api
