#pragma once
// Private to src/fleet and its unit tests: who may do what, what a request may ask, and how
// the store's answers read to an operator. Pure functions: no store, no clock.
#include <optional>
#include <string>
#include <string_view>

#include "core/core.hpp"
#include "fleet/fleet.hpp"
#include "store/store.hpp"

namespace aviary::fleet::policy {

/// Who acts when nobody asked (the sweep, reconcile).
inline constexpr std::string_view kSystemActor = "aviary";
inline constexpr int kMaxCount = 64;

/// The owner a call acts for: `owner`, or the caller's identity when empty. A non-admin may
/// act only for itself: kPermissionDenied "token for bob may not act for anton".
core::Result<std::string> owner_for(std::string_view owner, const Caller& caller);
/// kPermissionDenied naming the caller and `action` ("edit nodes") unless admin.
core::Result<void> require_admin(const Caller& caller, std::string_view action);
/// The owner renew/release_lease must match: empty (anyone) for an admin, else the identity.
core::Result<std::string> holder_for(const Caller& caller, std::string_view lease_id);
/// Who the audit trail names: the caller's identity, else the owner, else kSystemActor.
std::string actor_of(const Caller& caller, std::string_view owner = {});

/// Exactly one of node/selector, count 1..64 (a named node is one node). kInvalidArgument
/// naming the field.
core::Result<void> check_shape(const AcquireRequest& request);
/// The TTL to use: the default when none is given; kInvalidArgument out of (0, max].
core::Result<core::Millis> ttl_for(std::optional<core::Millis> ttl, const Settings& settings);
/// kInvalidArgument unless 0 < wait <= max_wait.
core::Result<void> check_wait(core::Millis wait, const Settings& settings);

/// kBusy worded for people: "node lotus-0 is busy: current owner is anton (since …, until …)",
/// "node lotus-0 is busy: 2 waiter(s) ahead", "no 2 free nodes match chain=lotus (3 match,
/// 2 leased)".
core::Error refusal_error(const store::LeaseRequest& request, const store::Refusal& refusal);

Acquired to_acquired(store::LeaseAttempt attempt);
Acquired to_acquired(store::WaiterGrant grant);
Waiter to_waiter(const store::WaiterRecord& record);

}  // namespace aviary::fleet::policy
