// Machine tasks as data: a public action's params from a worker id and a machine
// (worker_params), the rules validate_action holds public actions and ssh/lease steps to, and
// the OpenSSH argv an ssh step runs (ssh_argv, shell_quote).
#include <gtest/gtest.h>

#include <string>

#include "jobs/jobs.hpp"

namespace aviary::jobs {
namespace {

core::NodeSpec machine() {
    core::NodeSpec node{.name = "t-linux-1", .driver = "ssh"};
    node.machine = core::MachineSpec{.hostname = "t-linux-1.test",
                                     .address = "10.0.0.7",
                                     .ssh_user = "relops",
                                     .ssh_port = 2222,
                                     .ipmi_address = "10.0.1.7:623",
                                     .ipmi_user = "admin",
                                     .pdu_host = "pdu-1",
                                     .pdu_outlet = 4};
    return node;
}

ActionSpec public_action() {
    ActionSpec action;
    action.name = "reboot-ish";
    action.is_public = true;
    action.params = {
        ParamSpec{.name = "host", .pattern = "[a-z0-9.-]+", .from = "{{machine.address}}"},
        ParamSpec{.name = "bmc", .from = "{{machine.ipmi_user}}@{{ machine.ipmi_address }}"},
        ParamSpec{.name = "outlet", .type = ParamType::kInteger, .from = "{{machine.pdu_outlet}}"},
        ParamSpec{.name = "mode", .required = false, .default_value = "soft"},
        ParamSpec{.name = "tc_worker_id", .required = false, .from = "{{tc_worker_id}}"},
    };
    action.steps = {StepSpec{.kind = StepKind::kRun, .argv = {"echo", "{{params.host}}"}}};
    return action;
}

TEST(WorkerParams, FillsEachParamFromTheWorkerAndTheMachine) {
    auto params = worker_params(public_action(), "tc-worker-1", machine());
    ASSERT_TRUE(params.errors.empty()) << params.errors.front().message;
    EXPECT_EQ(params.params, (core::Params{{"host", "10.0.0.7"},
                                           {"bmc", "admin@10.0.1.7:623"},
                                           {"outlet", "4"},
                                           {"mode", "soft"},
                                           {"tc_worker_id", "tc-worker-1"}}));
}

TEST(WorkerParams, AnAddresslessMachineIsReachedByItsHostname) {
    auto node = machine();
    node.machine->address.clear();
    auto params = worker_params(public_action(), "w", node);
    ASSERT_TRUE(params.errors.empty());
    EXPECT_EQ(params.params.at("host"), "t-linux-1.test");
}

TEST(WorkerParams, EveryRefusedParamIsNamedAtOnce) {
    auto node = machine();
    node.machine->address = "Bad Host";
    node.machine->pdu_outlet = 0;  // no PDU: nothing for {{machine.pdu_outlet}}
    auto params = worker_params(public_action(), "w", node);
    ASSERT_EQ(params.errors.size(), 2u);
    EXPECT_EQ(params.errors[0].field, "host");
    EXPECT_NE(params.errors[0].message.find("Bad Host"), std::string::npos);
    EXPECT_EQ(params.errors[1].field, "outlet");
    EXPECT_EQ(params.errors[1].message, "machine t-linux-1 has nothing for {{machine.pdu_outlet}}");
}

TEST(WorkerParams, AValueStartingWithADashIsRefusedAsForAnyParam) {
    auto node = machine();
    node.machine->ipmi_user = "-oProxyCommand=x";
    auto action = public_action();
    action.params[1].from = "{{machine.ipmi_user}}";
    auto params = worker_params(action, "w", node);
    ASSERT_EQ(params.errors.size(), 1u);
    EXPECT_EQ(params.errors[0].field, "bmc");
    EXPECT_NE(params.errors[0].message.find("must not start with '-'"), std::string::npos);
}

TEST(PublicActions, ValidateRequiresFromOrADefaultAndTheWorkerParam) {
    EXPECT_TRUE(validate_action(public_action()));

    auto no_source = public_action();
    no_source.params[0].from.clear();
    auto refused = validate_action(no_source);
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message.find("params.host: a public action's param needs `from`"),
              std::string::npos)
        << refused.error().message;

    auto no_worker = public_action();
    no_worker.params.pop_back();
    ASSERT_FALSE(validate_action(no_worker));
    EXPECT_NE(validate_action(no_worker).error().message.find("params.tc_worker_id"),
              std::string::npos);

    auto unknown = public_action();
    unknown.params[0].from = "{{machine.password}}";
    auto bad = validate_action(unknown);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("unknown placeholder {{machine.password}}"),
              std::string::npos)
        << bad.error().message;

    auto private_from = public_action();
    private_from.is_public = false;
    ASSERT_FALSE(validate_action(private_from));
    EXPECT_NE(validate_action(private_from).error().message.find("only a public action"),
              std::string::npos);
}

TEST(SshSteps, ValidateNeedsARemoteCommandWithKnownParams) {
    ActionSpec action{.name = "uptime"};
    action.steps = {StepSpec{.kind = StepKind::kSsh}};
    auto empty = validate_action(action);
    ASSERT_FALSE(empty);
    EXPECT_NE(empty.error().message.find("steps[0].ssh: needs the remote command"),
              std::string::npos);
    action.steps[0].argv = {"uptime", "{{params.nope}}"};
    auto unknown = validate_action(action);
    ASSERT_FALSE(unknown);
    EXPECT_NE(unknown.error().message.find("steps[0].ssh[1]: unknown param \"nope\""),
              std::string::npos)
        << unknown.error().message;
}

TEST(LeaseSteps, AnAcquireNeedsAnOwnerAndAReleaseTakesOnlyOne) {
    ActionSpec action{.name = "loan"};
    action.steps = {StepSpec{.kind = StepKind::kLease}};
    ASSERT_FALSE(validate_action(action));
    EXPECT_NE(validate_action(action).error().message.find("steps[0].lease.owner"),
              std::string::npos);
    action.steps[0].lease = LeaseStepSpec{.acquire = false, .owner = "", .ttl = "1h"};
    ASSERT_FALSE(validate_action(action));
    EXPECT_NE(validate_action(action).error().message.find("a release takes only an owner"),
              std::string::npos);
    action.steps[0].lease = LeaseStepSpec{.acquire = true, .owner = "{{params.who}}"};
    ASSERT_FALSE(validate_action(action));
    EXPECT_NE(validate_action(action).error().message.find("unknown param \"who\""),
              std::string::npos);
}

TEST(SshArgv, RunsTheClientNeverInteractiveWithThePinnedHostsAndKey) {
    SshSettings ssh{.identity_file = "/etc/aviary/id_ed25519",
                    .known_hosts = "/etc/aviary/known_hosts",
                    .connect_timeout = std::chrono::milliseconds{2500}};
    auto argv = ssh_argv(ssh, machine(), {"systemctl", "restart", "lotus"});
    EXPECT_EQ(argv, (std::vector<std::string>{"ssh",
                                              "-o",
                                              "BatchMode=yes",
                                              "-o",
                                              "ConnectTimeout=2",
                                              "-o",
                                              "StrictHostKeyChecking=yes",
                                              "-o",
                                              "LogLevel=ERROR",
                                              "-o",
                                              "UserKnownHostsFile=/etc/aviary/known_hosts",
                                              "-o",
                                              "GlobalKnownHostsFile=/dev/null",
                                              "-o",
                                              "IdentitiesOnly=yes",
                                              "-i",
                                              "/etc/aviary/id_ed25519",
                                              "-p",
                                              "2222",
                                              "-l",
                                              "relops",
                                              "--",
                                              "10.0.0.7",
                                              "systemctl restart lotus"}));
}

TEST(SshArgv, AnIpv6LiteralLosesItsBracketsAndWordsAreQuotedForTheRemoteShell) {
    auto node = machine();
    node.machine->address = "[::1]";
    auto argv = ssh_argv(SshSettings{}, node, {"echo", "it's", "a b", "$HOME", ""});
    ASSERT_GE(argv.size(), 2u);
    EXPECT_EQ(argv[argv.size() - 2], "::1");
    EXPECT_EQ(argv.back(), R"(echo 'it'\''s' 'a b' '$HOME' '')");
}

TEST(ShellQuote, LeavesSafeWordsAloneAndQuotesTheRest) {
    EXPECT_EQ(shell_quote("v1.2.3"), "v1.2.3");
    EXPECT_EQ(shell_quote("/var/lib/lotus"), "/var/lib/lotus");
    EXPECT_EQ(shell_quote("a;b"), "'a;b'");
    EXPECT_EQ(shell_quote("`x`"), "'`x`'");
    EXPECT_EQ(shell_quote(""), "''");
}

TEST(IpmiArgv, PassesThePasswordAsAFileNeverOnTheCommandLine) {
    IpmiSettings ipmi{.password_file = "/var/lib/aviary/secrets/ipmi_password",
                      .password = "hunter2-secret",
                      .cipher_suite = 3,
                      .retries = 1,
                      .retry_seconds = 1};
    auto argv = ipmi_argv(ipmi, machine(), {"chassis", "power", "cycle"});
    EXPECT_EQ(argv, (std::vector<std::string>{"ipmitool",
                                              "-I",
                                              "lanplus",
                                              "-H",
                                              "10.0.1.7",
                                              "-p",
                                              "623",
                                              "-U",
                                              "admin",
                                              "-f",
                                              "/var/lib/aviary/secrets/ipmi_password",
                                              "-C",
                                              "3",
                                              "-R",
                                              "1",
                                              "-N",
                                              "1",
                                              "chassis",
                                              "power",
                                              "cycle"}));
    for (const auto& arg : argv) {
        EXPECT_EQ(arg.find("hunter2"), std::string::npos) << arg;
    }
    auto v6 = machine();
    v6.machine->ipmi_address = "[fd00::7]";
    auto bare = ipmi_argv(IpmiSettings{.password_file = "/p"}, v6, {"chassis", "power", "status"});
    EXPECT_EQ(bare, (std::vector<std::string>{"ipmitool", "-I", "lanplus", "-H", "fd00::7", "-U",
                                              "admin", "-f", "/p", "-R", "2", "-N", "2", "chassis",
                                              "power", "status"}));
    auto none = machine();
    none.machine->ipmi_address.clear();
    EXPECT_TRUE(ipmi_argv(ipmi, none, {"chassis"}).empty());
}

TEST(PduArgv, SwitchesTheMachinesOutletWithTheCommunityLeftToSnmpConf) {
    PduSettings pdu{.community = "private-community", .timeout = std::chrono::milliseconds{1500}};
    auto node = machine();
    node.machine->pdu_host = "127.0.0.1:1161";
    EXPECT_EQ(pdu_argv(pdu, node, 2),
              (std::vector<std::string>{"snmpset", "-t", "1.5", "-r", "1", "127.0.0.1:1161",
                                        ".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.4", "i", "2"}));
    node.machine->pdu_host = "[::1]:1161";
    EXPECT_EQ(pdu_argv(pdu, node, 1)[5], "udp6:[::1]:1161");
    node.machine->pdu_host = "pdu-1";
    EXPECT_EQ(pdu_argv(pdu, node, 1)[5], "pdu-1");
    node.machine->pdu_host.clear();
    EXPECT_TRUE(pdu_argv(pdu, node, 1).empty());
}

TEST(RebootSteps, ValidateNamesTheFieldThatIsWrong) {
    ActionSpec action{.name = "reboot"};
    action.steps = {StepSpec{.kind = StepKind::kReboot}};
    EXPECT_TRUE(validate_action(action));
    auto with = [&](auto change) {
        auto copy = action;
        change(copy.steps[0].reboot);
        auto valid = validate_action(copy);
        return valid ? std::string{} : valid.error().message;
    };
    EXPECT_NE(with([](RebootStepSpec& r) { r.methods.clear(); })
                  .find("steps[0].reboot.methods: "
                        "needs at least one"),
              std::string::npos);
    EXPECT_NE(with([](RebootStepSpec& r) {
                  r.methods = {RebootMethod::kIpmi, RebootMethod::kSsh, RebootMethod::kIpmi};
              }).find("steps[0].reboot.methods[2]: ipmi is listed twice"),
              std::string::npos);
    EXPECT_NE(with([](RebootStepSpec& r) {
                  r.ssh_command = {"reboot", "{{params.when}}"};
              }).find("steps[0].reboot.ssh_command[1]: unknown param \"when\""),
              std::string::npos);
    EXPECT_NE(with([](RebootStepSpec& r) {
                  r.up_within = core::Millis{0};
              }).find("steps[0].reboot.verify.up_within: must be positive"),
              std::string::npos);
    EXPECT_NE(
        with([](RebootStepSpec& r) { r.verify_port = 70000; }).find("steps[0].reboot.verify.port"),
        std::string::npos);
}

TEST(ConnectSteps, ValidateNamesTheFieldThatIsWrong) {
    ActionSpec action{.name = "tcp-ping"};
    action.params = {ParamSpec{.name = "host"}};
    action.steps = {StepSpec{.kind = StepKind::kConnect}};
    EXPECT_TRUE(validate_action(action));
    action.steps[0].connect.port = 0;
    EXPECT_NE(
        validate_action(action).error().message.find("steps[0].connect.port: must be 1..65535"),
        std::string::npos);
    action.steps[0].connect.port = 22;
    action.steps[0].connect.host = "{{params.hots}}";
    EXPECT_NE(validate_action(action).error().message.find(
                  "steps[0].connect.host: unknown param \"hots\""),
              std::string::npos);
    action.steps[0].connect.host = "{{params.host}}";
    action.steps[0].connect.attempts = 0;
    EXPECT_NE(validate_action(action).error().message.find("steps[0].connect.attempts"),
              std::string::npos);
}

}  // namespace
}  // namespace aviary::jobs
