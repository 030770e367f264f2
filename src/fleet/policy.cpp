#include "fleet/policy.hpp"

#include <fmt/format.h>

namespace aviary::fleet::policy {
namespace {

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

std::string describe(const core::Labels& selector) {
    std::string out;
    for (const auto& [key, value] : selector) {
        out += (out.empty() ? "" : ",") + key + "=" + value;
    }
    return out;
}

std::string waiters_ahead(int count) {
    return fmt::format("{} waiter(s) ahead", count);
}

core::Error busy(std::string message) {
    return core::Error{core::ErrorCode::kBusy, std::move(message)};
}

}  // namespace

core::Result<std::string> owner_for(std::string_view owner, const Caller& caller) {
    if (owner.empty()) {
        return caller.identity;
    }
    if (!caller.admin && owner != caller.identity) {
        return core::Error{core::ErrorCode::kPermissionDenied,
                           fmt::format("token for {} may not act for {}", caller.identity, owner)};
    }
    return std::string{owner};
}

core::Result<void> require_admin(const Caller& caller, std::string_view action) {
    if (caller.admin) {
        return {};
    }
    return core::Error{
        core::ErrorCode::kPermissionDenied,
        fmt::format("token for {} may not {}: it needs admin", caller.identity, action)};
}

core::Result<std::string> holder_for(const Caller& caller, std::string_view lease_id) {
    if (caller.admin) {
        return std::string{};
    }
    if (caller.identity.empty()) {
        // An empty owner would mean "any holder" to the store.
        return core::Error{
            core::ErrorCode::kPermissionDenied,
            fmt::format("a caller without identity may not act on lease {}", lease_id)};
    }
    return caller.identity;
}

std::string actor_of(const Caller& caller, std::string_view owner) {
    if (!caller.identity.empty()) {
        return caller.identity;
    }
    return std::string{owner.empty() ? kSystemActor : owner};
}

core::Result<void> check_shape(const AcquireRequest& request) {
    if (!request.node.empty() && !request.selector.empty()) {
        return invalid("give node or selector, not both");
    }
    if (request.node.empty() && request.selector.empty()) {
        return invalid("give node or selector");
    }
    if (request.count < 1 || request.count > kMaxCount) {
        return invalid(fmt::format("count must be 1..{}, got {}", kMaxCount, request.count));
    }
    if (!request.node.empty() && request.count != 1) {
        return invalid(fmt::format("count needs a selector: node {} is one node", request.node));
    }
    return {};
}

core::Result<core::Millis> ttl_for(std::optional<core::Millis> ttl, const Settings& settings) {
    auto chosen = ttl.value_or(settings.lease_ttl);
    if (chosen.count() <= 0 || chosen > settings.max_lease_ttl) {
        return invalid(fmt::format("ttl {} is out of range: at most {}",
                                   core::format_duration(chosen),
                                   core::format_duration(settings.max_lease_ttl)));
    }
    return chosen;
}

core::Result<void> check_wait(core::Millis wait, const Settings& settings) {
    if (wait.count() <= 0 || wait > settings.max_wait) {
        return invalid(fmt::format("wait {} is out of range: at most {}",
                                   core::format_duration(wait),
                                   core::format_duration(settings.max_wait)));
    }
    return {};
}

core::Error refusal_error(const store::LeaseRequest& request, const store::Refusal& refusal) {
    if (!request.node.empty()) {
        if (!refusal.holders.empty()) {
            const auto& holder = refusal.holders.front();
            return busy(fmt::format("node {} is busy: current owner is {} (since {}, until {})",
                                    holder.node, holder.owner,
                                    core::format_time(holder.acquired_at),
                                    core::format_time(holder.expires_at)));
        }
        return busy(
            fmt::format("node {} is busy: {}", request.node, waiters_ahead(refusal.waiters_ahead)));
    }
    std::string counts = fmt::format("{} match", refusal.matching);
    if (refusal.leased > 0) {
        counts += fmt::format(", {} leased", refusal.leased);
    }
    if (refusal.maintenance > 0) {
        counts += fmt::format(", {} in maintenance", refusal.maintenance);
    }
    if (refusal.gating > 0) {
        counts += fmt::format(", {} waiting to pass their gate", refusal.gating);
    }
    if (refusal.waiters_ahead > 0) {
        counts += "; " + waiters_ahead(refusal.waiters_ahead);
    }
    if (request.count == 1) {
        return busy(
            fmt::format("no free node matches {} ({})", describe(request.selector), counts));
    }
    return busy(fmt::format("no {} free nodes match {} ({})", request.count,
                            describe(request.selector), counts));
}

Acquired to_acquired(store::LeaseAttempt attempt) {
    return Acquired{.leases = std::move(attempt.leases),
                    .renewed = attempt.renewed,
                    .lapsed = std::move(attempt.lapsed)};
}

Acquired to_acquired(store::WaiterGrant grant) {
    return Acquired{.leases = std::move(grant.leases), .lapsed = std::move(grant.lapsed)};
}

Waiter to_waiter(const store::WaiterRecord& record) {
    return Waiter{.ticket = record.ticket,
                  .owner = record.request.owner,
                  .reason = record.request.reason,
                  .node = record.request.node,
                  .selector = record.request.selector,
                  .count = record.request.count,
                  .position = record.position,
                  .since = record.request.now,
                  .deadline = record.deadline};
}

}  // namespace aviary::fleet::policy
