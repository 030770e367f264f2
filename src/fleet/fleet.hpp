#pragma once
/// fleet: the node pool and its leases.
///
/// A node is free, leased to exactly one owner, or out of service (maintenance). Every change
/// is one store transaction that emits one Event. Every lease expires: the default TTL, or a
/// per-call TTL up to max_lease_ttl; the expiry sweep frees lapsed nodes (first run at start,
/// so leases that lapsed while serve was down are freed and recorded too). Calls block on the
/// store: coroutines go through net::offload(), never call them from the I/O loop.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "store/store.hpp"

namespace aviary::fleet {

struct Settings {
    core::Millis lease_ttl{std::chrono::hours{24}};          ///< when the caller names none
    core::Millis max_lease_ttl{std::chrono::hours{24 * 7}};  ///< longest a caller may ask for
    core::Millis expiry_sweep{std::chrono::seconds{30}};     ///< how often lapsed leases are freed
    std::vector<core::NodeSpec> nodes;  ///< declared nodes, reconciled at start
};

/// Who is asking. Without tokens every caller is an admin (loopback only; see docs/security.md).
struct Caller {
    std::string identity;
    bool admin = true;
};

struct AcquireRequest {
    std::string node;
    std::string owner;
    std::string reason;
    std::optional<core::Millis> ttl;  ///< default lease_ttl; more than max_lease_ttl is refused
};

class Fleet {
public:
    Fleet(Settings settings, store::Store& store, core::Clock& clock);
    ~Fleet();
    Fleet(const Fleet&) = delete;
    Fleet& operator=(const Fleet&) = delete;

    /// Makes the store's config nodes match settings.nodes (DESIGN: config nodes are reconciled
    /// at start, API nodes persist, a leased node dropped from the config is kept).
    core::Result<store::ReconcileReport> reconcile();

    /// Leases `node` to `owner`, or renews it when the owner already holds it.
    /// Errors: kBusy naming the holder and since when; kNotFound; kUnavailable (maintenance);
    /// kInvalidArgument (empty owner, TTL out of range).
    core::Result<store::LeaseAttempt> acquire(const AcquireRequest& request, const Caller& caller);
    /// Gives the node back. Releasing a node nobody holds succeeds (nullopt); releasing
    /// someone else's lease is kNotOwner naming the holder.
    core::Result<std::optional<core::Lease>> release(std::string_view node,
                                                     std::string_view owner,
                                                     const Caller& caller);
    /// The seed's `free`: the holder gives the node back; `force` lets an admin end anyone's
    /// lease (kPermissionDenied for a non-admin).
    core::Result<std::optional<core::Lease>> free(std::string_view node,
                                                  std::string_view owner,
                                                  bool force,
                                                  const Caller& caller);

    core::Result<std::vector<core::Node>> nodes();
    core::Result<core::Node> node(std::string_view name);

    /// Frees every lapsed lease now; returns how many. The sweep calls this.
    std::size_t expire_once();
    /// Starts / stops the expiry sweep. stop() is idempotent and safe before start().
    void start();
    void stop();

    const Settings& settings() const { return settings_; }

private:
    Settings settings_;
    store::Store& store_;  // owned by the role's wiring; outlives the fleet
    core::Clock& clock_;
    std::shared_ptr<spdlog::logger> log_;
    std::unique_ptr<core::Periodic> sweep_;
};

}  // namespace aviary::fleet
