#include "jobs/permissions.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace aviary::jobs {
namespace {

bool names(const std::vector<std::string>& list, std::string_view value) {
    return std::any_of(list.begin(), list.end(),
                       [&](const std::string& item) { return item == "*" || item == value; });
}

bool rule_matches(const PermissionRule& rule,
                  const fleet::Caller& caller,
                  std::string_view action,
                  const core::Node& node) {
    bool who = std::any_of(rule.who.begin(), rule.who.end(), [&](const std::string& item) {
        // "group:NAME" names a group only: a token whose identity is spelled "group:NAME" must
        // not pass as a member.
        if (item.starts_with("group:")) {
            auto group = std::string_view(item).substr(6);
            return std::find(caller.groups.begin(), caller.groups.end(), group) !=
                   caller.groups.end();
        }
        return item == "*" || item == caller.identity;
    });
    if (!who) {
        return false;
    }
    if (!rule.actions.empty() && !names(rule.actions, action)) {
        return false;
    }
    if (!rule.nodes.empty() && !names(rule.nodes, node.spec.name)) {
        return false;
    }
    if (!rule.groups.empty()) {
        const auto* machine = node.spec.machine ? &*node.spec.machine : nullptr;
        bool in_group =
            machine != nullptr &&
            std::any_of(machine->groups.begin(), machine->groups.end(),
                        [&](const std::string& group) { return names(rule.groups, group); });
        if (!in_group) {
            return false;
        }
    }
    return core::labels_match(node.spec.labels, rule.selector);
}

std::string rule_name(const std::vector<PermissionRule>& rules, std::size_t index) {
    return rules[index].name.empty() ? fmt::format("permissions[{}]", index) : rules[index].name;
}

}  // namespace

bool permissions_apply(const std::vector<PermissionRule>& rules, const fleet::Caller& caller) {
    return !rules.empty() && !caller.identity.empty();
}

std::string permission_refusal(const std::vector<PermissionRule>& rules,
                               const fleet::Caller& caller,
                               std::string_view action,
                               const core::Node& node) {
    if (!permissions_apply(rules, caller)) {
        return {};
    }
    std::string who = caller.identity.empty() ? std::string("anonymous") : caller.identity;
    bool allowed = caller.admin;
    for (std::size_t i = 0; i < rules.size(); ++i) {
        if (!rule_matches(rules[i], caller, action, node)) {
            continue;
        }
        if (!rules[i].allow) {
            return fmt::format("{} may not run {} on {}: denied by rule {}", who, action,
                               node.spec.name, rule_name(rules, i));
        }
        allowed = true;
    }
    if (!allowed) {
        return fmt::format("{} may not run {} on {}: no permission rule allows it", who, action,
                           node.spec.name);
    }
    return {};
}

}  // namespace aviary::jobs
