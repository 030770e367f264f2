#pragma once
// Who may run which action on which node (private to jobs).
#include <string>

#include "jobs/jobs.hpp"

namespace aviary::jobs {

/// The verdict for `caller` running `action` on `node`: empty when allowed, else the refusal
/// naming the rule (or saying that no rule allows it).
std::string permission_refusal(const std::vector<PermissionRule>& rules,
                               const fleet::Caller& caller,
                               std::string_view action,
                               const core::Node& node);

}  // namespace aviary::jobs
