#include "fleet/fleet.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace aviary::fleet {
namespace {

constexpr std::string_view kSystemActor = "aviary";

core::Error busy(const core::Lease& holder) {
    return core::Error{core::ErrorCode::kBusy,
                       fmt::format("node {} is busy: current owner is {} (since {}, until {})",
                                   holder.node, holder.owner, core::format_time(holder.acquired_at),
                                   core::format_time(holder.expires_at))};
}

}  // namespace

Fleet::Fleet(Settings settings, store::Store& store, core::Clock& clock)
    : settings_(std::move(settings)), store_(store), clock_(clock), log_(core::logger("fleet")) {}

Fleet::~Fleet() {
    stop();
}

core::Result<store::ReconcileReport> Fleet::reconcile() {
    auto report = store_.reconcile_nodes(settings_.nodes, kSystemActor, clock_.now());
    if (!report) {
        return report.error();
    }
    for (const auto& name : report->added) {
        log_->info("node added from config node={}", name);
    }
    for (const auto& name : report->updated) {
        log_->info("node updated from config node={}", name);
    }
    for (const auto& name : report->removed) {
        log_->info("node removed, no longer in config node={}", name);
    }
    for (const auto& name : report->kept_leased) {
        // Dropping a leased node would pull it from under its holder without a word.
        log_->warn("node kept although no longer in config: it is leased node={}", name);
    }
    return report;
}

core::Result<store::LeaseAttempt> Fleet::acquire(const AcquireRequest& request,
                                                 const Caller& caller) {
    if (request.owner.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument, "owner is required to acquire"};
    }
    auto ttl = request.ttl.value_or(settings_.lease_ttl);
    if (ttl.count() <= 0 || ttl > settings_.max_lease_ttl) {
        return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("ttl {} is out of range: at most {}", core::format_duration(ttl),
                        core::format_duration(settings_.max_lease_ttl))};
    }
    store::LeaseRequest lease_request{
        .node = request.node,
        .owner = request.owner,
        .reason = request.reason,
        .actor = caller.identity.empty() ? request.owner : caller.identity,
        .now = clock_.now(),
        .ttl = ttl,
    };
    // One conditional write in the store: reading the holder first and writing after would let
    // two racing acquirers both win.
    auto attempt = store_.try_lease(lease_request);
    if (!attempt) {
        return attempt.error();
    }
    if (!attempt->granted) {
        return busy(attempt->lease);
    }
    if (attempt->lapsed) {
        log_->info("lease expired node={} owner={}", attempt->lapsed->node, attempt->lapsed->owner);
    }
    log_->info("lease {} node={} owner={} ttl={}", attempt->renewed ? "renewed" : "acquired",
               request.node, request.owner, core::format_duration(ttl));
    return attempt;
}

core::Result<std::optional<core::Lease>> Fleet::release(std::string_view node,
                                                        std::string_view owner,
                                                        const Caller& caller) {
    if (owner.empty()) {
        // The seed's scripts may omit Owner: that is fine on a node nobody holds, and refused
        // (naming the holder) on a node someone does.
        auto current = store_.node(node, clock_.now());
        if (!current) {
            return current.error();
        }
        if (!current->lease) {
            return std::optional<core::Lease>{};
        }
        return core::Error{core::ErrorCode::kNotOwner,
                           fmt::format("node {} is not yours to release: current owner is {}", node,
                                       current->lease->owner)};
    }
    auto released = store_.release(store::ReleaseRequest{
        .node = std::string{node},
        .owner = std::string{owner},
        .actor = caller.identity.empty() ? std::string{owner} : caller.identity,
        .kind = "lease.released",
        .now = clock_.now(),
    });
    if (released && *released) {
        log_->info("lease released node={} owner={}", node, owner);
    }
    return released;
}

core::Result<std::optional<core::Lease>> Fleet::free(std::string_view node,
                                                     std::string_view owner,
                                                     bool force,
                                                     const Caller& caller) {
    if (force && !caller.admin) {
        return core::Error{core::ErrorCode::kPermissionDenied,
                           fmt::format("only an admin may force-free node {}", node)};
    }
    if (!force && owner.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           "owner is required to free a node (or force, as an admin)"};
    }
    auto actor = caller.identity.empty() ? std::string{owner} : caller.identity;
    auto freed = store_.release(store::ReleaseRequest{
        .node = std::string{node},
        .owner = force ? std::string{} : std::string{owner},
        .actor = actor.empty() ? std::string{kSystemActor} : actor,
        .kind = "lease.freed",
        .now = clock_.now(),
    });
    if (freed && *freed) {
        log_->info("node freed node={} owner={} by={} forced={}", node, (*freed)->owner, actor,
                   force);
    }
    return freed;
}

core::Result<std::vector<core::Node>> Fleet::nodes() {
    return store_.nodes(clock_.now());
}

core::Result<core::Node> Fleet::node(std::string_view name) {
    return store_.node(name, clock_.now());
}

std::size_t Fleet::expire_once() {
    auto expired = store_.expire_leases(clock_.now());
    if (!expired) {
        log_->warn("lease expiry sweep failed error={}", expired.error().message);
        return 0;
    }
    for (const auto& lease : *expired) {
        log_->info("lease expired node={} owner={} expired_at={}", lease.node, lease.owner,
                   core::format_time(lease.expires_at));
    }
    return expired->size();
}

void Fleet::start() {
    if (sweep_) {
        return;
    }
    sweep_ = std::make_unique<core::Periodic>("lease-expiry", settings_.expiry_sweep,
                                              [this] { expire_once(); });
    sweep_->start();
}

void Fleet::stop() {
    if (sweep_) {
        sweep_->stop();
    }
}

}  // namespace aviary::fleet
