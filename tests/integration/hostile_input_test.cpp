// Malformed and hostile input on the JSON-RPC surface: a clear error every time, the server
// stays up, and nothing stored is lost or changed.
#include <gtest/gtest.h>

#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

class HostileInput : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(server_.start()) << server_.log();
        auto held = call(server_, "TweetyService.Acquire",
                         R"({"ReleaseName": "lotus-0", "Owner": "keep"})");
        ASSERT_TRUE(held.contains("result"));
        lease_id_ = str(held["result"].at("lease_id"));
    }
    void TearDown() override {
        // Whatever was thrown at it, the server answers and the lease is intact.
        auto health = server_.get("/healthz");
        ASSERT_TRUE(health);
        EXPECT_EQ(health->status, 200);
        auto lotus0 = status_of(server_, "lotus-0");
        EXPECT_EQ(lotus0.at("holder"), "keep");
        EXPECT_EQ(str(lotus0.at("lease_id")), lease_id_);
    }

    boost::json::object post(std::string body, int want_status = 200) {
        auto response = server_.post_json("/", std::move(body));
        EXPECT_TRUE(response);
        if (!response) {
            return {};
        }
        EXPECT_EQ(response->status, want_status) << response->body;
        std::error_code ec;
        auto parsed = boost::json::parse(response->body, ec);
        EXPECT_FALSE(ec) << response->body;
        return (!ec && parsed.is_object()) ? parsed.get_object() : boost::json::object{};
    }
    static int code_of(const boost::json::object& reply) {
        return reply.contains("error") ? int(reply.at("error").at("code").to_number<int>()) : 0;
    }
    static std::string message_of(const boost::json::object& reply) {
        return reply.contains("error") ? str(reply.at("error").at("message")) : "";
    }

    ServerProcess server_{test_config()};
    std::string lease_id_;
};

TEST_F(HostileInput, MalformedJsonIsAParseError) {
    auto reply = post(R"({"jsonrpc":"2.0","method":)");
    EXPECT_EQ(code_of(reply), -32700);
    EXPECT_NE(message_of(reply).find("parse error"), std::string::npos);
    EXPECT_TRUE(reply.at("id").is_null());
}

TEST_F(HostileInput, InvalidUtf8IsAParseError) {
    auto reply = post(
        "{\"jsonrpc\":\"2.0\",\"method\":\"TweetyService.Status\",\"params\":[{\"ReleaseName\":"
        "\"\xff\xfe\"}],\"id\":1}");
    EXPECT_EQ(code_of(reply), -32700);
}

TEST_F(HostileInput, DeepNestingIsRefused) {
    std::string deep = R"({"jsonrpc":"2.0","method":"TweetyService.Status","params":)";
    deep += std::string(5000, '[') + std::string(5000, ']') + R"(,"id":1})";
    auto reply = post(deep);
    EXPECT_EQ(code_of(reply), -32700);
}

TEST_F(HostileInput, WrongTypesNameTheField) {
    auto reply = post(rpc_body("TweetyService.Acquire", R"({"ReleaseName": 7, "Owner": "x"})"));
    EXPECT_EQ(code_of(reply), -32602);
    EXPECT_NE(message_of(reply).find("ReleaseName must be a string"), std::string::npos);
    reply =
        post(rpc_body("TweetyService.Acquire", R"({"ReleaseName": "lotus-1", "Owner": ["x"]})"));
    EXPECT_EQ(code_of(reply), -32602);
    EXPECT_NE(message_of(reply).find("Owner must be a string"), std::string::npos);
    reply = post(rpc_body("TweetyService.Acquire",
                          R"({"ReleaseName": "lotus-1", "Owner": "x", "TTL": "soon"})"));
    EXPECT_EQ(code_of(reply), -32602);
    EXPECT_NE(message_of(reply).find("TTL"), std::string::npos);
}

TEST_F(HostileInput, MissingFieldsAreNamed) {
    auto reply = post(rpc_body("TweetyService.Acquire", R"({"Owner": "x"})"));
    EXPECT_EQ(code_of(reply), -32602);
    EXPECT_NE(message_of(reply).find("ReleaseName is required"), std::string::npos);
}

TEST_F(HostileInput, InvalidRequestsAreRefused) {
    EXPECT_EQ(code_of(post(R"("just a string")")), -32600);
    EXPECT_EQ(code_of(post(R"({"jsonrpc":"2.0","method":5,"id":1})")), -32600);
    EXPECT_EQ(code_of(post(R"({"jsonrpc":"1.5","method":"TweetyService.Status","id":1})")), -32600);
    EXPECT_EQ(code_of(post(R"({"jsonrpc":"2.0","method":"TweetyService.Status","id":{"a":1}})")),
              -32600);
    EXPECT_EQ(code_of(post("[]")), -32600);
    EXPECT_EQ(
        code_of(post(R"({"jsonrpc":"2.0","method":"TweetyService.Status","params":[1,2],"id":1})")),
        -32602);
    EXPECT_EQ(code_of(post(R"({"jsonrpc":"2.0","method":"TweetyService.Explode","id":1})")),
              -32601);
}

TEST_F(HostileInput, OversizedBodyIsRefusedWithItsLimit) {
    auto response = server_.post_json("/", std::string(2 * 1024 * 1024, ' '));
    // The server may answer 413 or close once the limit is passed; either way it stays up.
    if (response) {
        EXPECT_EQ(response->status, 413);
        EXPECT_NE(response->body.find("limit"), std::string::npos);
    }
}

TEST_F(HostileInput, ForeignContentTypeIsRefused) {
    net::ClientRequest request;
    request.method = "POST";
    request.url = server_.url("/");
    request.headers.push_back({"Content-Type", "application/x-www-form-urlencoded"});
    request.body = rpc_body("TweetyService.Status", "{}");
    auto response = net::fetch_sync(std::move(request));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 415);
    EXPECT_NE(response->body.find("send application/json"), std::string::npos);
}

TEST_F(HostileInput, WrongMethodOnTheEndpointIsRefused) {
    auto response = server_.get("/");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 405);
}

TEST_F(HostileInput, HugeBatchIsRefused) {
    std::string batch = "[";
    for (int i = 0; i < 500; ++i) {
        batch += fmt::format(R"({}{{"jsonrpc":"2.0","method":"TweetyService.Status","id":{}}})",
                             i == 0 ? "" : ",", i);
    }
    batch += "]";
    auto reply = post(batch);
    EXPECT_EQ(code_of(reply), -32600);
    EXPECT_NE(message_of(reply).find("exceeds the limit"), std::string::npos);
}

}  // namespace
}  // namespace aviary::test
