// Machines through the real binary: declared in the config with their worker ids, listed and
// read over REST, added, updated and removed through the API, kept apart from plain nodes, and
// bad bodies refused naming the field.
#include <gtest/gtest.h>

#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;

std::string machines_fleet() {
    return R"(  machines:
    - name: t-linux-1
      hostname: t-linux-1.test
      address: 127.0.0.1
      ssh_user: relops
      ipmi_address: "127.0.0.1:6230"
      ipmi_user: admin
      pdu_host: "127.0.0.1:1161"
      pdu_outlet: 4
      groups: [lab]
  worker_ids:
    - {id: tc-worker-1, machine: t-linux-1}
    - {id: tc-worker-2}
)";
}

class Machines : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(server_.start()) << server_.log(); }

    ServerProcess server_{test_config(machines_fleet())};
};

TEST_F(Machines, AConfigMachineIsListedWithItsPropertiesAndWorkerIds) {
    auto listed = http(server_, "GET", "/api/v1/machines");
    ASSERT_TRUE(listed);
    ASSERT_EQ(listed->status, 200) << listed->body;
    const auto machines = json_of(listed).at("machines").as_array();
    ASSERT_EQ(machines.size(), 1u) << listed->body;
    const auto& m = machines.at(0).as_object();
    EXPECT_EQ(m.at("name"), "t-linux-1");
    EXPECT_EQ(m.at("driver"), "ssh");
    EXPECT_EQ(m.at("hostname"), "t-linux-1.test");
    EXPECT_EQ(m.at("address"), "127.0.0.1");
    EXPECT_EQ(m.at("ssh_user"), "relops");
    EXPECT_EQ(m.at("ssh_port"), 22);
    EXPECT_EQ(m.at("ipmi_address"), "127.0.0.1:6230");
    EXPECT_EQ(m.at("pdu_outlet"), 4);
    EXPECT_EQ(m.at("groups"), (json::array{"lab"}));
    EXPECT_EQ(m.at("worker_ids"), (json::array{"tc-worker-1"}));
    EXPECT_EQ(m.at("state"), "free");
    EXPECT_EQ(m.at("source"), "config");

    // One machine by name; a plain node is not one.
    auto one = http(server_, "GET", "/api/v1/machines/t-linux-1");
    ASSERT_TRUE(one);
    EXPECT_EQ(one->status, 200);
    EXPECT_EQ(json_of(one).at("hostname"), "t-linux-1.test");
    auto node = http(server_, "GET", "/api/v1/machines/lotus-0");
    ASSERT_TRUE(node);
    EXPECT_EQ(node->status, 404);
    EXPECT_EQ(json_of(node).at("error").at("message"), "lotus-0 is a node, not a machine");
    // It is a node of the pool too: leased like any other.
    auto in_nodes = json_of(http(server_, "GET", "/api/v1/nodes/t-linux-1"));
    EXPECT_EQ(in_nodes.at("machine").at("address"), "127.0.0.1");
}

TEST_F(Machines, TheApiAddsUpdatesAndRemovesItsOwnMachinesOnly) {
    auto added = http(server_, "PUT", "/api/v1/machines/t-mac-1",
                      R"({"driver": "none", "hostname": "t-mac-1.test", "groups": ["mac"]})");
    ASSERT_TRUE(added);
    ASSERT_EQ(added->status, 201) << added->body;
    EXPECT_EQ(json_of(added).at("source"), "api");
    EXPECT_EQ(json_of(added).at("driver"), "none");
    auto updated = http(server_, "PUT", "/api/v1/machines/t-mac-1",
                        R"({"hostname": "t-mac-1.test", "address": "10.0.0.9"})");
    ASSERT_TRUE(updated);
    ASSERT_EQ(updated->status, 200) << updated->body;
    EXPECT_EQ(json_of(updated).at("address"), "10.0.0.9");
    EXPECT_EQ(json_of(updated).at("driver"), "ssh");
    EXPECT_EQ(json_of(http(server_, "GET", "/api/v1/machines")).at("machines").as_array().size(),
              2u);

    // The config's machine is the config's; a node is not rewritten as a machine.
    auto config_machine =
        http(server_, "PUT", "/api/v1/machines/t-linux-1", R"({"hostname": "x"})");
    ASSERT_TRUE(config_machine);
    EXPECT_EQ(config_machine->status, 409) << config_machine->body;
    auto over_node = http(server_, "DELETE", "/api/v1/machines/lotus-0");
    ASSERT_TRUE(over_node);
    EXPECT_EQ(over_node->status, 404) << over_node->body;
    auto as_node = http(server_, "DELETE", "/api/v1/nodes/t-mac-1");
    ASSERT_TRUE(as_node);
    EXPECT_EQ(as_node->status, 404) << as_node->body;

    auto removed = http(server_, "DELETE", "/api/v1/machines/t-mac-1");
    ASSERT_TRUE(removed);
    EXPECT_EQ(removed->status, 204) << removed->body;
    EXPECT_EQ(http(server_, "GET", "/api/v1/machines/t-mac-1")->status, 404);
}

TEST_F(Machines, BadMachineBodiesNameTheFieldAndChangeNothing) {
    struct Case {
        std::string body;
        std::string says;
    };
    const std::vector<Case> cases{
        {R"({"hostname": "a", "ssh_port": 70000})", "ssh_port"},
        {R"({"hostname": "a", "groups": "lab"})", "groups"},
        {R"({"hostname": "a", "password": "x"})", "password"},
        {R"({"address": "http://x"})", "is not a host name or IP address"},
        {R"({"hostname": "a", "pdu_outlet": 3})", "pdu_host and pdu_outlet"},
        {R"({"hostname": "a", "driver": "helm"})", "unknown machine driver"},
        {R"({})", "needs a hostname or an address"},
    };
    for (const auto& [body, says] : cases) {
        auto response = http(server_, "PUT", "/api/v1/machines/t-bad-1", body);
        ASSERT_TRUE(response) << body;
        EXPECT_EQ(response->status, 400) << body << " -> " << response->body;
        EXPECT_NE(response->body.find(says), std::string::npos) << body << " -> " << response->body;
    }
    EXPECT_EQ(http(server_, "GET", "/api/v1/machines/t-bad-1")->status, 404);
    EXPECT_EQ(http(server_, "GET", "/healthz")->status, 200);
}

TEST(MachinesConfig, AWorkerIdNamingNoMachineStopsServeSayingWhere) {
    ServerProcess server{test_config("  worker_ids:\n    - {id: tc-1, machine: nowhere}\n")};
    EXPECT_FALSE(server.start());
    EXPECT_NE(server.log().find("worker id \"tc-1\": no machine \"nowhere\" is declared in "
                                "fleet.machines"),
              std::string::npos)
        << server.log();
}

}  // namespace
}  // namespace aviary::test
