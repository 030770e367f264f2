// Who may run which action on which node: permission_refusal.
#include "jobs/permissions.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace aviary::jobs {
namespace {

core::Node node_of(std::string name, core::Labels labels = {{"chain", "lotus"}}) {
    return core::Node{.spec = core::NodeSpec{.name = std::move(name), .labels = std::move(labels)}};
}

fleet::Caller user(std::string identity, std::vector<std::string> groups = {}) {
    return fleet::Caller{.identity = std::move(identity), .admin = false, .groups = groups};
}

fleet::Caller admin(std::string identity) {
    return fleet::Caller{.identity = std::move(identity), .admin = true};
}

PermissionRule allow(std::string name,
                     std::vector<std::string> who,
                     std::vector<std::string> actions = {"*"},
                     std::vector<std::string> nodes = {}) {
    return PermissionRule{.name = std::move(name),
                          .allow = true,
                          .who = std::move(who),
                          .actions = std::move(actions),
                          .nodes = std::move(nodes)};
}

PermissionRule deny(std::string name,
                    std::vector<std::string> who,
                    std::vector<std::string> actions = {"*"},
                    std::vector<std::string> nodes = {}) {
    auto rule = allow(std::move(name), std::move(who), std::move(actions), std::move(nodes));
    rule.allow = false;
    return rule;
}

TEST(JobPermissionRules, WithoutRulesEveryoneIsAllowed) {
    EXPECT_EQ(permission_refusal({}, user("carol"), "upgrade", node_of("lotus-0")), "");
}

TEST(JobPermissionRules, WithoutIdentityEverythingIsAllowed) {
    // Loopback without tokens: callers carry no identity, and even a deny-all does not apply.
    std::vector<PermissionRule> rules{deny("nobody", {"*"})};
    EXPECT_EQ(permission_refusal(rules, fleet::Caller{}, "upgrade", node_of("lotus-0")), "");
}

TEST(JobPermissionRules, UserWithoutAnAllowRuleIsRefused) {
    std::vector<PermissionRule> rules{allow("ops", {"dave"})};
    auto refusal = permission_refusal(rules, user("carol"), "upgrade", node_of("lotus-0"));
    EXPECT_NE(refusal.find("carol"), std::string::npos) << refusal;
    EXPECT_NE(refusal.find("upgrade"), std::string::npos) << refusal;
    EXPECT_NE(refusal.find("lotus-0"), std::string::npos) << refusal;
    EXPECT_NE(refusal.find("no permission rule allows it"), std::string::npos) << refusal;
    EXPECT_EQ(permission_refusal(rules, user("dave"), "upgrade", node_of("lotus-0")), "");
}

TEST(JobPermissionRules, DenyWinsOverAllowAndIsNamed) {
    std::vector<PermissionRule> rules{allow("everyone", {"*"}),
                                      deny("no-wipes", {"carol"}, {"wipe-data"})};
    EXPECT_EQ(permission_refusal(rules, user("carol"), "upgrade", node_of("lotus-0")), "");
    auto refusal = permission_refusal(rules, user("carol"), "wipe-data", node_of("lotus-0"));
    EXPECT_NE(refusal.find("denied by rule no-wipes"), std::string::npos) << refusal;
    // Order does not matter: a deny listed first still wins over a later allow.
    std::vector<PermissionRule> reversed{rules[1], rules[0]};
    EXPECT_NE(permission_refusal(reversed, user("carol"), "wipe-data", node_of("lotus-0")), "");
    EXPECT_EQ(permission_refusal(rules, user("dave"), "wipe-data", node_of("lotus-0")), "");
}

TEST(JobPermissionRules, UnnamedRuleIsNamedByItsIndex) {
    std::vector<PermissionRule> rules{allow("", {"*"}), deny("", {"*"}, {"wipe-data"})};
    auto refusal = permission_refusal(rules, user("carol"), "wipe-data", node_of("lotus-0"));
    EXPECT_NE(refusal.find("permissions[1]"), std::string::npos) << refusal;
}

TEST(JobPermissionRules, GroupMatchesCallersInIt) {
    std::vector<PermissionRule> rules{allow("release-team", {"group:release"}, {"upgrade"})};
    EXPECT_EQ(
        permission_refusal(rules, user("carol", {"dev", "release"}), "upgrade", node_of("lotus-0")),
        "");
    EXPECT_NE(permission_refusal(rules, user("carol", {"dev"}), "upgrade", node_of("lotus-0")), "");
    // The group's name is not an identity.
    EXPECT_NE(permission_refusal(rules, user("release"), "upgrade", node_of("lotus-0")), "");
    EXPECT_NE(permission_refusal(rules, user("group:release"), "upgrade", node_of("lotus-0")), "")
        << "an identity spelled like the rule must not pass as a member";
}

TEST(JobPermissionRules, AdminIsAllowedUnlessDenied) {
    std::vector<PermissionRule> rules{allow("ops", {"dave"}),
                                      deny("freeze", {"*"}, {"upgrade"}, {"lotus-1"})};
    EXPECT_EQ(permission_refusal(rules, admin("root"), "upgrade", node_of("lotus-0")), "");
    auto refusal = permission_refusal(rules, admin("root"), "upgrade", node_of("lotus-1"));
    EXPECT_NE(refusal.find("denied by rule freeze"), std::string::npos) << refusal;
}

TEST(JobPermissionRules, RulesApplyToTheirActionsOnly) {
    std::vector<PermissionRule> rules{allow("upgraders", {"carol"}, {"upgrade", "restart"})};
    EXPECT_EQ(permission_refusal(rules, user("carol"), "restart", node_of("lotus-0")), "");
    EXPECT_NE(permission_refusal(rules, user("carol"), "install-snapshot", node_of("lotus-0")), "");
}

TEST(JobPermissionRules, NodeNamesLimitARule) {
    std::vector<PermissionRule> rules{allow("own-node", {"carol"}, {"*"}, {"lotus-0", "lotus-2"})};
    EXPECT_EQ(permission_refusal(rules, user("carol"), "upgrade", node_of("lotus-0")), "");
    EXPECT_EQ(permission_refusal(rules, user("carol"), "upgrade", node_of("lotus-2")), "");
    EXPECT_NE(permission_refusal(rules, user("carol"), "upgrade", node_of("lotus-1")), "");
}

TEST(JobPermissionRules, SelectorLimitsARuleToMatchingLabels) {
    auto rule = allow("lotus-only", {"carol"});
    rule.selector = {{"chain", "lotus"}};
    std::vector<PermissionRule> rules{rule};
    EXPECT_EQ(permission_refusal(rules, user("carol"), "upgrade", node_of("lotus-0")), "");
    EXPECT_NE(
        permission_refusal(rules, user("carol"), "upgrade", node_of("geth-0", {{"chain", "geth"}})),
        "");
    // A deny with a selector: only on the matching nodes.
    auto frozen = deny("frozen-geth", {"*"});
    frozen.selector = {{"chain", "geth"}};
    std::vector<PermissionRule> admin_rules{frozen};
    EXPECT_EQ(permission_refusal(admin_rules, admin("root"), "upgrade", node_of("lotus-0")), "");
    auto refusal = permission_refusal(admin_rules, admin("root"), "upgrade",
                                      node_of("geth-0", {{"chain", "geth"}}));
    EXPECT_NE(refusal.find("frozen-geth"), std::string::npos) << refusal;
}

TEST(JobPermissionRules, GroupsMatchAMachinesGroupsAndNoPlainNode) {
    auto lab_machine = node_of("t-linux-1");
    lab_machine.spec.machine =
        core::MachineSpec{.hostname = "t-linux-1", .groups = {"lab", "linux"}};
    auto other_machine = node_of("t-mac-1");
    other_machine.spec.machine = core::MachineSpec{.hostname = "t-mac-1", .groups = {"mac"}};
    auto rule = allow("ci-reboots-linux", {"group:ci"}, {"reboot"});
    rule.groups = {"linux"};
    std::vector<PermissionRule> rules{rule};
    EXPECT_EQ(permission_refusal(rules, user("ci", {"ci"}), "reboot", lab_machine), "");
    EXPECT_EQ(permission_refusal(rules, user("ci", {"ci"}), "reboot", other_machine),
              "ci may not run reboot on t-mac-1: no permission rule allows it");
    EXPECT_EQ(permission_refusal(rules, user("ci", {"ci"}), "reboot", node_of("lotus-0")),
              "ci may not run reboot on lotus-0: no permission rule allows it");

    auto no_lab = deny("no-lab-reimage", {"*"}, {"reimage"});
    no_lab.groups = {"lab"};
    rules.push_back(allow("ci-all", {"group:ci"}));
    rules.push_back(no_lab);
    EXPECT_EQ(permission_refusal(rules, user("ci", {"ci"}), "reimage", lab_machine),
              "ci may not run reimage on t-linux-1: denied by rule no-lab-reimage");
    EXPECT_EQ(permission_refusal(rules, user("ci", {"ci"}), "reimage", other_machine), "");
}

}  // namespace
}  // namespace aviary::jobs
