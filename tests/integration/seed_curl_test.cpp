// The tweety seed's curl lines, exactly as the README prints them, against a server on the
// seed's port 1337 (the test holds a CTest RESOURCE_LOCK on it).
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

/// The curl commands of the seed README (backslash-continued lines joined).
std::vector<std::string> seed_curl_lines() {
    std::ifstream in{std::string{AVIARY_SOURCE_DIR} + "/tests/fixtures/tweety_seed_curl.sh"};
    std::vector<std::string> commands;
    std::string line;
    std::string current;
    while (std::getline(in, line)) {
        if (line.rfind("curl", 0) == 0 || !current.empty()) {
            if (!line.empty() && line.back() == '\\') {
                current += line.substr(0, line.size() - 1) + " ";
                continue;
            }
            commands.push_back(current + line);
            current.clear();
        }
    }
    return commands;
}

std::string with_method(const std::vector<std::string>& commands, std::string_view method) {
    for (const auto& command : commands) {
        if (command.find(method) != std::string::npos) {
            return command;
        }
    }
    return {};
}

TEST(SeedCurl, AcquireAndReleaseLinesWorkVerbatimOnPort1337) {
    auto commands = seed_curl_lines();
    ASSERT_EQ(commands.size(), 6u);
    auto acquire = with_method(commands, "TweetyService.Acquire");
    auto release = with_method(commands, "TweetyService.Release");
    ASSERT_NE(acquire.find("localhost:1337"), std::string::npos);

    ServerProcess server{test_config(), {}, "127.0.0.1:1337"};
    ASSERT_TRUE(server.start()) << server.log();
    auto acquired = run_command(acquire + " 2>/dev/null");
    ASSERT_EQ(acquired.status, 0);
    auto reply = boost::json::parse(acquired.output).as_object();
    ASSERT_TRUE(reply.contains("result")) << acquired.output;
    EXPECT_NE(str(reply["result"].at("Result")).find("lotus-1 acquired by anton"),
              std::string::npos);
    EXPECT_EQ(reply["id"], 68);

    auto released = run_command(release + " 2>/dev/null");
    ASSERT_EQ(released.status, 0);
    reply = boost::json::parse(released.output).as_object();
    ASSERT_TRUE(reply.contains("result")) << released.output;
    EXPECT_EQ(reply["result"].at("released"), true);
    EXPECT_TRUE(status_of(server, "lotus-1").at("holder").is_null());
}

}  // namespace
}  // namespace aviary::test
