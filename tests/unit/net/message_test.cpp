#include <gtest/gtest.h>

#include "net/net.hpp"

namespace aviary::net {
namespace {

TEST(SplitHostPort, SplitsIpv4HostAndPort) {
    auto parts = split_host_port("127.0.0.1:1337");
    ASSERT_TRUE(parts) << parts.error().message;
    EXPECT_EQ(parts->first, "127.0.0.1");
    EXPECT_EQ(parts->second, 1337);
}

TEST(SplitHostPort, AcceptsNamesAndPortZero) {
    auto parts = split_host_port("localhost:0");
    ASSERT_TRUE(parts) << parts.error().message;
    EXPECT_EQ(parts->first, "localhost");
    EXPECT_EQ(parts->second, 0);
}

TEST(SplitHostPort, StripsTheBracketsOfIpv6) {
    auto parts = split_host_port("[::1]:8080");
    ASSERT_TRUE(parts) << parts.error().message;
    EXPECT_EQ(parts->first, "::1");
    EXPECT_EQ(parts->second, 8080);
}

TEST(SplitHostPort, NamesAMissingPort) {
    for (const char* address : {"x", "x:", "[::1]", "[::1]:"}) {
        auto parts = split_host_port(address);
        ASSERT_FALSE(parts) << address;
        EXPECT_EQ(parts.error().code, core::ErrorCode::kInvalidArgument);
        EXPECT_NE(parts.error().message.find("missing port in \""), std::string::npos)
            << parts.error().message;
    }
}

TEST(SplitHostPort, RejectsPortsOutOfRange) {
    auto parts = split_host_port("127.0.0.1:65536");
    ASSERT_FALSE(parts);
    EXPECT_NE(parts.error().message.find("port out of range"), std::string::npos);
    EXPECT_FALSE(split_host_port("127.0.0.1:99999999999999999999"));
}

TEST(SplitHostPort, RejectsWhatIsNotAnAddress) {
    EXPECT_FALSE(split_host_port(""));
    EXPECT_FALSE(split_host_port(":8080"));
    EXPECT_FALSE(split_host_port("127.0.0.1:http"));
    EXPECT_FALSE(split_host_port("::1:8080"));
    EXPECT_FALSE(split_host_port("[::1:8080"));
}

TEST(FindHeader, IgnoresCaseAndReturnsTheFirst) {
    std::vector<Header> headers{{"Content-Type", "text/plain"}, {"X-A", "1"}, {"x-a", "2"}};
    EXPECT_EQ(find_header(headers, "content-type"), "text/plain");
    EXPECT_EQ(find_header(headers, "X-a"), "1");
    EXPECT_FALSE(find_header(headers, "x-b"));
}

TEST(Request, ParamReturnsTheFirstValue) {
    Request request;
    request.query = {{"node", "lotus-0"}, {"node", "lotus-1"}, {"flag", ""}};
    EXPECT_EQ(request.param("node"), "lotus-0");
    EXPECT_EQ(request.param("flag"), "");
    EXPECT_FALSE(request.param("owner"));
}

}  // namespace
}  // namespace aviary::net
