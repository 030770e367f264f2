// The rules of a machine's properties, shared by the config reader and the REST API.
#include <gtest/gtest.h>

#include "fleet/fleet.hpp"

namespace aviary::fleet {
namespace {

TEST(MachineRules, HostsAreNamesOrIpLiteralsWithAPortOnlyWhereAllowed) {
    for (const char* host :
         {"t-linux-1", "t-linux-1.lab.example", "10.0.4.21", "[::1]", "[fe80::1]", "under_score"}) {
        EXPECT_TRUE(is_host(host, false)) << host;
    }
    for (const char* host : {"10.0.5.21:623", "[::1]:1161", "pdu-3:161"}) {
        EXPECT_TRUE(is_host(host, true)) << host;
        EXPECT_FALSE(is_host(host, false)) << host;
    }
    for (const char* host :
         {"", "http://x", "a b", "host:", "host:0", "host:65536", "host:x", "[::1", "[]", "[zz::1]",
          "[::1]x", "a;reboot", "-", "-oProxyCommand=x", "-h:22"}) {
        EXPECT_FALSE(is_host(host, true)) << host;
    }
    EXPECT_FALSE(is_host(std::string(254, 'a'), false));
}

TEST(MachineRules, WorkerIdsAreShortPlainWords) {
    EXPECT_TRUE(is_worker_id("tc-worker-1"));
    EXPECT_TRUE(is_worker_id("t-w1064-ms-280.mdc1.mozilla.com"));
    EXPECT_TRUE(is_worker_id(std::string(128, 'w')));
    EXPECT_FALSE(is_worker_id(std::string(129, 'w')));
    EXPECT_FALSE(is_worker_id(""));
    EXPECT_FALSE(is_worker_id("tc worker"));
    EXPECT_FALSE(is_worker_id("tc/worker"));
}

core::NodeSpec good() {
    return core::NodeSpec{.name = "t-linux-1",
                          .driver = "ssh",
                          .machine = core::MachineSpec{.hostname = "t-linux-1"}};
}

std::string refusal(const core::NodeSpec& spec) {
    auto checked = check_machine(spec);
    if (checked) {
        return "(accepted)";
    }
    EXPECT_EQ(checked.error().code, core::ErrorCode::kInvalidArgument);
    return checked.error().message;
}

TEST(MachineRules, AMachineIsCheckedAsAWholeNamingTheField) {
    EXPECT_TRUE(check_machine(good()));
    auto spec = good();
    spec.machine->hostname.clear();
    EXPECT_EQ(refusal(spec), "machine t-linux-1: needs a hostname or an address");
    spec.machine->address = "10.0.0.1:22";
    EXPECT_EQ(refusal(spec),
              "machine t-linux-1: address \"10.0.0.1:22\" is not a host name or IP "
              "address");
    spec = good();
    spec.driver = "sim";
    EXPECT_EQ(refusal(spec), "machine t-linux-1: unknown machine driver \"sim\" (ssh, none)");
    spec = good();
    spec.machine->pdu_outlet = 2;
    EXPECT_EQ(refusal(spec), "machine t-linux-1: pdu_host and pdu_outlet (from 1) go together");
    spec.machine->pdu_host = "pdu-1:161";
    EXPECT_TRUE(check_machine(spec));
    spec.machine->ipmi_address = "bmc 1";
    EXPECT_EQ(refusal(spec),
              "machine t-linux-1: ipmi_address \"bmc 1\" is not a host name or IP "
              "address (optionally with :PORT)");
    spec = good();
    spec.machine->ssh_port = 0;
    EXPECT_EQ(refusal(spec), "machine t-linux-1: ssh_port 0 is not from 1 to 65535");
    spec = good();
    spec.machine->ssh_user.clear();
    EXPECT_EQ(refusal(spec), "machine t-linux-1: ssh_user is empty");
    spec = good();
    spec.machine.reset();
    EXPECT_EQ(refusal(spec), "machine t-linux-1: has no machine properties");
}

TEST(ControlUrl, OnlyHttpHostAndPortWithoutCredentialsOrPath) {
    for (const char* good :
         {"http://127.0.0.1:8080", "https://sidecar.example:443", "http://[::1]:9000",
          "http://bp-a.internal", "http://10.0.0.7:8080/"}) {
        EXPECT_EQ(control_url_problem(good), "") << good;
    }
    const std::pair<const char*, const char*> bad[] = {
        {"", "must start with http:// or https://"},
        {"10.0.0.7:8080", "must start with http:// or https://"},
        {"http://a:b@10.0.0.7:8080", "must not carry credentials"},
        {"http://10.0.0.7:8080/v1/status", "no path, query or fragment"},
        {"http://10.0.0.7:8080?x=1", "no path, query or fragment"},
        {"http://10.0.0.7:0", "bad host or port"},
        {"http://-oProxyCommand=x", "bad host or port"},
        {"http://", "bad host or port"},
    };
    for (const auto& [url, problem] : bad) {
        EXPECT_NE(control_url_problem(url).find(problem), std::string::npos)
            << url << ": " << control_url_problem(url);
    }
    EXPECT_NE(control_url_problem("http://" + std::string(600, 'a')).find("longer than"),
              std::string::npos);
}

TEST(ControlUrl, ADriverSidecarNodeNeedsOneAndNoOtherNodeHasOne) {
    core::NodeSpec sidecar{.name = "bp-a", .driver = "sidecar"};
    auto missing = check_control_url(sidecar);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_NE(missing.error().message.find("node bp-a: driver sidecar needs a control_url"),
              std::string::npos);
    sidecar.control_url = "http://127.0.0.1:8080";
    EXPECT_TRUE(check_control_url(sidecar));
    core::NodeSpec sim{.name = "lotus-0", .driver = "sim", .control_url = "http://127.0.0.1:1"};
    auto extra = check_control_url(sim);
    ASSERT_FALSE(extra);
    EXPECT_NE(extra.error().message.find("control_url is for driver sidecar, not sim"),
              std::string::npos);
    sim.control_url.clear();
    EXPECT_TRUE(check_control_url(sim));
}

}  // namespace
}  // namespace aviary::fleet
