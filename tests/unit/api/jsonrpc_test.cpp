#include "api/jsonrpc.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>

#include "api/errors.hpp"
#include "api/params.hpp"

namespace aviary::api {
namespace {

namespace json = boost::json;
namespace asio = boost::asio;

/// Runs one JsonRpc::handle to completion on a private io_context.
std::optional<std::string> run(JsonRpc& rpc, std::string body) {
    asio::io_context io;
    auto future = asio::co_spawn(io, rpc.handle(body, CallContext{}), asio::use_future);
    io.run();
    return future.get();
}

json::value reply(JsonRpc& rpc, std::string body) {
    auto text = run(rpc, std::move(body));
    EXPECT_TRUE(text.has_value());
    return text ? json::parse(*text) : json::value{};
}

net::asio::awaitable<MethodResult> echo_owner(Params params, CallContext) {
    auto owner = params.required_string("Owner");
    if (!owner) {
        co_return owner.error();
    }
    co_return json::object{{"Result", *owner}};
}

net::asio::awaitable<MethodResult> always_busy(Params, CallContext) {
    co_return core::Error{core::ErrorCode::kBusy, "node lotus-1 is busy: current owner is anton"};
}

class JsonRpcTest : public ::testing::Test {
protected:
    void SetUp() override {
        rpc_.add("T.Echo", [](Params p, CallContext c) { return echo_owner(std::move(p), c); });
        rpc_.add("T.Busy", [](Params p, CallContext c) { return always_busy(std::move(p), c); });
        rpc_.on_call = [this](std::string_view method, std::string_view outcome) {
            calls_.push_back(std::string{method} + ":" + std::string{outcome});
        };
    }
    JsonRpc rpc_;
    std::vector<std::string> calls_;
};

TEST_F(JsonRpcTest, ResultCarriesIdAndVersion) {
    auto r =
        reply(rpc_, R"({"jsonrpc":"2.0","method":"T.Echo","params":[{"Owner":"anton"}],"id":68})");
    EXPECT_EQ(r.at("jsonrpc"), "2.0");
    EXPECT_EQ(r.at("id"), 68);
    EXPECT_EQ(r.at("result").at("Result"), "anton");
    EXPECT_EQ(calls_, std::vector<std::string>{"T.Echo:ok"});
}

TEST_F(JsonRpcTest, ParamsMayBeAnObjectOrOneElementArray) {
    auto as_object =
        reply(rpc_, R"({"jsonrpc":"2.0","method":"T.Echo","params":{"owner":"x"},"id":"a"})");
    EXPECT_EQ(as_object.at("result").at("Result"), "x");
    EXPECT_EQ(as_object.at("id"), "a");
}

TEST_F(JsonRpcTest, ApplicationErrorsMapToTheirCodes) {
    auto r = reply(rpc_, R"({"jsonrpc":"2.0","method":"T.Busy","id":1})");
    EXPECT_EQ(r.at("error").at("code"), kBusyCode);
    EXPECT_EQ(r.at("error").at("data").at("error"), "busy");
    EXPECT_EQ(calls_, std::vector<std::string>{"T.Busy:busy"});
}

TEST_F(JsonRpcTest, GorillaStyleRequestWithoutVersionIsAccepted) {
    auto r = reply(rpc_, R"({"method":"T.Echo","params":[{"Owner":"old"}],"id":1})");
    EXPECT_EQ(r.at("result").at("Result"), "old");
}

TEST_F(JsonRpcTest, NotificationGetsNoReplyButRuns) {
    EXPECT_FALSE(run(rpc_, R"({"jsonrpc":"2.0","method":"T.Echo","params":[{"Owner":"n"}]})"));
    EXPECT_EQ(calls_, std::vector<std::string>{"T.Echo:ok"});
}

TEST_F(JsonRpcTest, NullIdIsARequestNotANotification) {
    auto r =
        reply(rpc_, R"({"jsonrpc":"2.0","method":"T.Echo","params":[{"Owner":"z"}],"id":null})");
    EXPECT_TRUE(r.at("id").is_null());
    EXPECT_EQ(r.at("result").at("Result"), "z");
}

TEST_F(JsonRpcTest, ParseErrorHasNullId) {
    auto r = reply(rpc_, "{not json");
    EXPECT_EQ(r.at("error").at("code"), kParseError);
    EXPECT_TRUE(r.at("id").is_null());
}

TEST_F(JsonRpcTest, BatchMixesResultsAndErrorsInOrder) {
    auto r = reply(rpc_, R"([{"jsonrpc":"2.0","method":"T.Echo","params":[{"Owner":"a"}],"id":1},
                             1,
                             {"jsonrpc":"2.0","method":"T.Busy","id":2}])");
    auto& replies = r.as_array();
    ASSERT_EQ(replies.size(), 3u);
    EXPECT_EQ(replies[0].at("result").at("Result"), "a");
    EXPECT_EQ(replies[1].at("error").at("code"), kInvalidRequest);
    EXPECT_EQ(replies[2].at("error").at("code"), kBusyCode);
}

TEST(Params, PreferExactNameThenCaseInsensitive) {
    json::value v = json::parse(R"([{"owner":"lower","Owner":"exact"}])");
    auto params = Params::from(&v);
    ASSERT_TRUE(params);
    EXPECT_EQ(*params->required_string("Owner"), "exact");
    EXPECT_EQ(*params->required_string("OWNER"), "lower");
}

TEST(Params, DurationsAcceptTextOrSeconds) {
    json::value v = json::parse(R"({"a":"90s","b":1.5,"c":-1,"d":true})");
    auto params = Params::from(&v);
    ASSERT_TRUE(params);
    EXPECT_EQ(**params->optional_duration("a"), core::Millis{90'000});
    EXPECT_EQ(**params->optional_duration("b"), core::Millis{1500});
    EXPECT_FALSE(params->optional_duration("c"));
    EXPECT_FALSE(params->optional_duration("d"));
    EXPECT_FALSE(params->optional_duration("missing")->has_value());
}

TEST(Params, NullCountsAsAbsent) {
    json::value v = json::parse(R"({"ReleaseName":null})");
    auto params = Params::from(&v);
    auto name = params->required_string("ReleaseName");
    ASSERT_FALSE(name);
    EXPECT_NE(name.error().message.find("ReleaseName is required"), std::string::npos);
}

TEST(ErrorMapping, EveryCodeHasADistinctJsonRpcCodeAndAnHttpStatus) {
    std::set<int> seen;
    for (auto code :
         {core::ErrorCode::kInvalidArgument, core::ErrorCode::kNotFound,
          core::ErrorCode::kAlreadyExists, core::ErrorCode::kBusy, core::ErrorCode::kNotOwner,
          core::ErrorCode::kUnauthenticated, core::ErrorCode::kPermissionDenied,
          core::ErrorCode::kUnavailable, core::ErrorCode::kUnimplemented, core::ErrorCode::kTimeout,
          core::ErrorCode::kStorage, core::ErrorCode::kInternal}) {
        EXPECT_TRUE(seen.insert(jsonrpc_code(code)).second) << core::to_string(code);
        EXPECT_GE(http_status(code), 400);
    }
    EXPECT_EQ(http_status(core::ErrorCode::kNotFound), 404);
    EXPECT_EQ(jsonrpc_code(core::ErrorCode::kInvalidArgument), kInvalidParams);
}

}  // namespace
}  // namespace aviary::api
