#pragma once
/// store: aviary's state, durable, behind one interface with two backends (SQLite now,
/// PostgreSQL for scale-out later; DESIGN §6).
///
/// Every state change is one transaction that also appends an Event (the audit trail).
/// Writes go through group commit: one writer thread drains its queue into one
/// `BEGIN IMMEDIATE ... COMMIT`, each operation inside its own SAVEPOINT so one failing
/// operation does not fail its neighbours; a caller returns only after the commit that holds
/// its write (so an acknowledged write survives kill -9). There is no timer: a batch is what
/// queued while the previous commit was being made durable.
///
/// All methods block the calling thread (on the writer queue or a read connection) and are
/// safe to call from any thread. Coroutines call them through net::offload(), never straight
/// from the I/O loop.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"

namespace aviary::store {

struct Settings {
    std::string driver = "sqlite";  ///< "sqlite" (PostgreSQL arrives with scale-out)
    /// SQLite file; ":memory:" for tests; empty means <data_dir>/aviary.db (set by the wiring).
    std::string path;
    std::string synchronous = "full";  ///< "full" (fsync each commit) or "normal"
    int read_connections = 4;          ///< read-only connections beside the writer
    core::Millis busy_timeout{std::chrono::seconds{5}};
    core::Millis event_retention{std::chrono::hours{24 * 30}};  ///< events older are pruned
    core::Millis retention_sweep{std::chrono::hours{1}};        ///< how often they are pruned
};

/// Counters that make group commit visible (exported on /metrics).
struct Stats {
    std::uint64_t commits = 0;        ///< transactions committed by the writer
    std::uint64_t writes = 0;         ///< operations applied (each in its own savepoint)
    std::uint64_t failed_writes = 0;  ///< operations rolled back to their savepoint
    std::uint64_t largest_batch = 0;  ///< most operations in one commit so far
};

/// What try_lease did. `lease` is the caller's new or renewed lease when `granted`, otherwise
/// the holder's lease (so the refusal can name the holder and since when).
struct LeaseAttempt {
    bool granted = false;
    bool renewed = false;  ///< granted to the owner who already held it
    core::Lease lease;
    std::optional<core::Lease> lapsed;  ///< an expired lease this acquire replaced
};

struct LeaseRequest {
    std::string node;
    std::string owner;
    std::string reason;
    std::string actor;  ///< who asked (the token identity, or the owner without tokens)
    core::TimePoint now;
    core::Millis ttl;
};

struct ReleaseRequest {
    std::string node;
    /// The owner who must hold the lease; empty means any holder (an admin's forced free).
    std::string owner;
    std::string actor;
    std::string kind = "lease.released";  ///< event kind: "lease.released" or "lease.freed"
    core::TimePoint now;
};

struct EventQuery {
    std::string node;  ///< empty: every node
    std::optional<core::TimePoint> since;
    std::optional<std::int64_t> before_id;  ///< paging cursor: events with id < before_id
    int limit = 100;
};

/// What reconcile_nodes changed.
struct ReconcileReport {
    std::vector<std::string> added;
    std::vector<std::string> updated;
    std::vector<std::string> removed;
    /// Dropped from the config but still leased: kept until the lease ends.
    std::vector<std::string> kept_leased;
};

class Store {
public:
    virtual ~Store() = default;

    // --- nodes ---------------------------------------------------------------------------
    /// Makes the config's nodes (source "config") match `specs`: adds, updates driver, tag,
    /// labels and note; removes config nodes no longer listed unless leased. Nodes added
    /// through the API (source "api") are untouched. One transaction, one event per change.
    virtual core::Result<ReconcileReport> reconcile_nodes(const std::vector<core::NodeSpec>& specs,
                                                          std::string_view actor,
                                                          core::TimePoint now) = 0;
    /// Every node, sorted by name, with its lease as of `now` (a lapsed lease shows as free).
    virtual core::Result<std::vector<core::Node>> nodes(core::TimePoint now) = 0;
    /// kNotFound for an unknown node.
    virtual core::Result<core::Node> node(std::string_view name, core::TimePoint now) = 0;

    // --- leases --------------------------------------------------------------------------
    /// One conditional write: grants the node when it is free, lapsed, or held by the same
    /// owner (a renewal, keeping the lease id and acquired_at); otherwise returns the holder's
    /// lease with granted=false. kNotFound for an unknown node, kUnavailable in maintenance.
    virtual core::Result<LeaseAttempt> try_lease(const LeaseRequest& request) = 0;
    /// Ends the node's lease. Returns the ended lease, or nullopt when nobody held it (which
    /// succeeds). kNotOwner (naming the holder) when `owner` is set and someone else holds it;
    /// kNotFound for an unknown node.
    virtual core::Result<std::optional<core::Lease>> release(const ReleaseRequest& request) = 0;
    /// Ends every lease with expires_at <= now, one "lease.expired" event each. Returns them.
    virtual core::Result<std::vector<core::Lease>> expire_leases(core::TimePoint now) = 0;

    // --- events --------------------------------------------------------------------------
    /// Newest first.
    virtual core::Result<std::vector<core::Event>> events(const EventQuery& query) = 0;
    /// Deletes events older than `before`; returns how many.
    virtual core::Result<std::int64_t> prune_events(core::TimePoint before) = 0;

    // --- health --------------------------------------------------------------------------
    virtual Stats stats() const = 0;
    /// A cheap round trip through a read connection and the writer: readiness.
    virtual core::Result<void> ping() = 0;
    virtual int schema_version() = 0;
    /// Drains the writer queue, commits, and closes every connection. Idempotent; further
    /// calls fail with kUnavailable.
    virtual void close() = 0;
};

/// Opens (creating if needed) and migrates the store named by `settings`.
core::Result<std::unique_ptr<Store>> open(const Settings& settings);

}  // namespace aviary::store
