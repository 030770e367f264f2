#pragma once
// Who may run which action on which node (private to jobs).
#include <string>

#include "jobs/jobs.hpp"

namespace aviary::jobs {

/// Whether any rule can refuse `caller`: without rules, or without tokens (a caller with no
/// identity, loopback only), everything is allowed and the node need not be read.
bool permissions_apply(const std::vector<PermissionRule>& rules, const fleet::Caller& caller);

/// The verdict for `caller` running `action` on `node`: empty when allowed, else the refusal
/// naming the rule (or saying that no rule allows it).
std::string permission_refusal(const std::vector<PermissionRule>& rules,
                               const fleet::Caller& caller,
                               std::string_view action,
                               const core::Node& node);

}  // namespace aviary::jobs
