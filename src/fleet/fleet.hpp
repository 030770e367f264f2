#pragma once
/// fleet: the node pool and its leases.
///
/// A node is free, leased to exactly one owner, or out of service (maintenance). Every change
/// is one store transaction that emits its Events. Every lease expires: the default TTL, or a
/// per-call TTL up to max_lease_ttl; the expiry task (on the role's core::Scheduler) frees
/// lapsed nodes when the earliest one lapses (first run at start, so leases that lapsed while
/// serve was down are freed and recorded too).
///
/// Waiting: an acquire that cannot be served at once may queue as a waiter (a row in the
/// store). Waiters are served first come, first served in the same transaction that frees a
/// node (release, free, expiry, maintenance off, node added): a waiter is never overtaken for
/// a node it can use by a later one, and a multi-node waiter gets all its nodes at once or
/// none. The granted callback runs on the store's writer thread after the commit: it must
/// only hand the result over (post it to an executor), never block.
///
/// Policy lives here: a caller acts for itself unless admin; node edits and maintenance are
/// admin-only. Calls block on the store: coroutines go through net::offload().
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/core.hpp"
#include "store/store.hpp"

namespace aviary::fleet {

struct Settings {
    core::Millis lease_ttl{std::chrono::hours{24}};          ///< when the caller names none
    core::Millis max_lease_ttl{std::chrono::hours{24 * 7}};  ///< longest a caller may ask for
    /// The expiry task runs at the store's next lease deadline, and at least this often
    /// (a lease taken after the last run with a shorter TTL is freed at most this late).
    core::Millis expiry_sweep{std::chrono::seconds{30}};
    core::Millis max_wait{std::chrono::hours{1}};          ///< longest an acquire may queue
    core::Millis wait_heartbeat{std::chrono::seconds{1}};  ///< progress lines while waiting
    /// Declared nodes and machines (a machine is a node with `machine` set), reconciled at start.
    std::vector<core::NodeSpec> nodes;
    /// An external scheduler's worker ids and the machine behind each, reconciled at start.
    std::vector<core::WorkerId> worker_ids;
    /// This serve's name among the instances sharing the store: its waiters carry it, and its
    /// start drops only its own.
    std::string instance = "default";
};

/// Who is asking. Without tokens every caller is an admin acting under the names it gives
/// (loopback only; see docs/security.md). With tokens, identity is the token's.
struct Caller {
    std::string identity;
    bool admin = true;
    std::vector<std::string> groups;  ///< the token's groups (permission rules name them)
};

struct AcquireRequest {
    std::string node;       ///< one named node, or
    core::Labels selector;  ///< any free nodes whose labels match every pair
    int count = 1;          ///< how many nodes (selector only), all or nothing; 1..64
    std::string owner;      ///< empty: the caller's identity
    std::string reason;
    std::optional<core::Millis> ttl;  ///< default lease_ttl; more than max_lease_ttl is refused
    bool exclusive = false;           ///< refuse even the same owner when already held
};

/// A granted acquire: one Lease per node, all with the same id.
struct Acquired {
    std::vector<core::Lease> leases;
    bool renewed = false;             ///< the owner already held it (not exclusive)
    std::vector<core::Lease> lapsed;  ///< expired leases this acquire replaced
};

/// A queued acquire.
struct Waiter {
    std::string ticket;
    std::string owner;
    std::string reason;
    std::string node;  ///< or
    core::Labels selector;
    int count = 1;
    int position = 1;  ///< 1 + waiters ahead of it that want any node it could take
    core::TimePoint since;
    core::TimePoint deadline;
};

using GrantedCallback = std::function<void(Acquired)>;

/// A page of the audit trail, newest first; next_cursor is empty on the last page.
struct EventsPage {
    std::vector<core::Event> events;
    std::string next_cursor;
};

struct EventsQuery {
    std::string node;
    std::optional<core::TimePoint> since;
    std::string cursor;  ///< from a previous page's next_cursor
    int limit = 100;     ///< 1..1000
};

class Fleet {
public:
    Fleet(Settings settings, store::Store& store, core::Clock& clock);
    ~Fleet();
    Fleet(const Fleet&) = delete;
    Fleet& operator=(const Fleet&) = delete;

    /// Makes the store's config nodes match settings.nodes, and drops waiters left by a
    /// previous run (their connections are gone).
    core::Result<store::ReconcileReport> reconcile();

    // --- leases ------------------------------------------------------------------------
    /// Leases the node(s) at once, or renews when the owner already holds a named node (not
    /// exclusive). Errors: kBusy naming the holder and since when (or "no 3 free nodes match
    /// chain=lotus"); kNotFound; kUnavailable (maintenance); kInvalidArgument (bad request,
    /// TTL out of range); kPermissionDenied (acting for another owner without being admin).
    core::Result<Acquired> acquire(const AcquireRequest& request, const Caller& caller);
    /// acquire() without a thread waiting on the commit: `done` is called once, on the store's
    /// writer thread (or on the calling thread for a request refused before the store), and
    /// must only hand the result over (post it to an executor).
    using AcquiredCallback = std::function<void(core::Result<Acquired> acquired)>;
    void acquire_async(const AcquireRequest& request, const Caller& caller, AcquiredCallback done);
    /// As acquire, but when the nodes are busy queues a waiter until `wait` has passed
    /// (at most max_wait) and returns its Waiter; `on_granted` runs when it is served.
    /// Errors as acquire, except kBusy.
    core::Result<std::variant<Acquired, Waiter>> acquire_or_wait(const AcquireRequest& request,
                                                                 core::Millis wait,
                                                                 const Caller& caller,
                                                                 GrantedCallback on_granted);
    /// Drops a waiter (its connection closed or its deadline passed). If it was served in
    /// the meantime, its lease is released: nobody is left to use it. Unknown tickets are fine.
    void cancel_wait(std::string_view ticket);
    /// The waiter's current view (position moves up as others are served); kNotFound once
    /// it is served or gone.
    core::Result<Waiter> waiter(std::string_view ticket);

    /// Moves expires_at of every node of lease `lease_id` to now + ttl (default lease_ttl).
    /// Holder or admin. kNotFound for an id that is not held.
    core::Result<std::vector<core::Lease>> renew(std::string_view lease_id,
                                                 std::optional<core::Millis> ttl,
                                                 const Caller& caller);
    /// Ends lease `lease_id` (every node of it). Holder or admin. kNotFound if not held.
    core::Result<std::vector<core::Lease>> release_lease(std::string_view lease_id,
                                                         const Caller& caller);
    /// Gives the node back (tweety's Release). Releasing a node nobody holds succeeds
    /// (nullopt); releasing someone else's lease is kNotOwner naming the holder.
    core::Result<std::optional<core::Lease>> release(std::string_view node,
                                                     std::string_view owner,
                                                     const Caller& caller);
    /// True when release() must read the node first (no owner given, none known from the
    /// caller): release_async() cannot answer that request.
    bool release_needs_read(std::string_view owner, const Caller& caller) const;
    /// release() without a thread waiting on the commit, answered as acquire_async(). Not for
    /// a request release_needs_read() (the caller uses release() then).
    using ReleasedCallback = std::function<void(core::Result<std::optional<core::Lease>> ended)>;
    void release_async(std::string_view node,
                       std::string_view owner,
                       const Caller& caller,
                       ReleasedCallback done);
    /// The seed's `free`: the holder gives the node back; `force` lets an admin end anyone's
    /// lease (kPermissionDenied for a non-admin).
    core::Result<std::optional<core::Lease>> free(std::string_view node,
                                                  std::string_view owner,
                                                  bool force,
                                                  const Caller& caller);
    /// Every active lease (grouped by id in the result order), and every waiter in order.
    core::Result<std::vector<core::Lease>> leases();
    core::Result<std::vector<Waiter>> waiters();

    // --- nodes -------------------------------------------------------------------------
    core::Result<std::vector<core::Node>> nodes(const core::Labels& selector = {});
    core::Result<core::Node> node(std::string_view name);
    /// Every worker id (an external scheduler's) and the machine behind it, sorted by id.
    core::Result<std::vector<core::WorkerId>> worker_ids();
    /// One worker id and its machine; kNotFound when it is not listed.
    core::Result<core::WorkerId> worker_id(std::string_view id);
    /// Adds or updates an API node (admin). Returns the node and whether it was created.
    /// kAlreadyExists for a node declared in the config (edit the config instead).
    core::Result<std::pair<core::Node, bool>> put_node(const core::NodeSpec& spec,
                                                       const Caller& caller);
    /// Removes an API node, or an API machine when `machine` (admin). kBusy if leased,
    /// kAlreadyExists if declared in the config, kNotFound for the other kind.
    core::Result<void> remove_node(std::string_view name, const Caller& caller, bool machine);
    /// Out of service with a reason (admin): it cannot be leased; a current lease is ended.
    core::Result<core::Node> start_maintenance(std::string_view name,
                                               std::string_view reason,
                                               const Caller& caller);
    /// Back in service (admin): free, and waiters are served; then the back-in-service
    /// listener is called (jobs that waited for the node may run now).
    core::Result<core::Node> end_maintenance(std::string_view name, const Caller& caller);
    /// Called with the node's name after each end_maintenance that took a node back into
    /// service, on the caller's thread after the commit: it must only hand over. Replaces the
    /// previous listener (empty: none) and returns after any call of it in progress.
    using ServiceListener = std::function<void(std::string_view node)>;
    void set_back_in_service_listener(ServiceListener listener);

    // --- audit trail ---------------------------------------------------------------------
    core::Result<EventsPage> events(const EventsQuery& query);

    // --- producer leases (docs/producers.md) ----------------------------------------------
    /// Takes or renews producer lease `key` for `holder` (default ttl kProducerTtl, at most
    /// kMaxProducerTtl). A caller that is not an admin claims only under its own identity.
    core::Result<store::ProducerLease> claim_producer(std::string_view key,
                                                      std::string_view holder,
                                                      std::optional<core::Millis> ttl,
                                                      const Caller& caller);
    core::Result<void> release_producer(std::string_view key,
                                        std::string_view holder,
                                        std::int64_t fence,
                                        const Caller& caller);
    core::Result<std::vector<store::ProducerLease>> producers();
    static constexpr core::Millis kProducerTtl{std::chrono::seconds{10}};
    static constexpr core::Millis kMaxProducerTtl{std::chrono::minutes{5}};

    // --- for jobs' implicit acquire (one transaction with the job insert) ----------------
    /// The store's request for `request` by `caller`: owner, shape, TTL and actor checked, as
    /// acquire() would send it.
    core::Result<store::LeaseRequest> lease_request(const AcquireRequest& request,
                                                    const Caller& caller);
    /// A refused request worded as acquire() words it (kBusy naming the holder).
    static core::Error refusal_error(const store::LeaseRequest& request,
                                     const store::Refusal& refusal);

    // --- background ----------------------------------------------------------------------
    /// Frees every lapsed lease and drops every waiter past its deadline; returns how many
    /// leases. The sweep calls this.
    std::size_t expire_once();
    /// Adds the expiry task to `scheduler`: it runs expire_once() at the earliest lease expiry
    /// or waiter deadline in the store, and at least every expiry_sweep. The first run is at
    /// the scheduler's start (a lease that lapsed while serve was down must not block). The
    /// scheduler must outlive the fleet: the fleet's destructor cancels its task.
    void schedule(core::Scheduler& scheduler);

    const Settings& settings() const { return settings_; }

private:
    /// The store's GrantListener (writer thread): hands each grant to its waiter's callback.
    void on_grants(std::vector<store::WaiterGrant> grants);
    /// Hands over grants of this instance's waiters that no notification announced (the
    /// "lease-waits" task, every wait_heartbeat while anything waits).
    void recheck_waits(core::TimePoint now);
    store::ReleaseRequest release_request(std::string_view node,
                                          const std::string& holder,
                                          const Caller& caller) const;

    Settings settings_;
    store::Store& store_;  // owned by the role's wiring; outlives the fleet
    core::Clock& clock_;
    std::shared_ptr<spdlog::logger> log_;
    core::Scheduler* scheduler_ = nullptr;  // set by schedule(); the fleet cancels its task
    core::Scheduler::TaskId expiry_task_ = 0;
    core::Scheduler::TaskId waits_task_ = 0;
    std::mutex service_mu_;  // held while the listener runs, so replacing it waits for a call
    ServiceListener back_in_service_;
    std::mutex waits_mu_;
    std::unordered_map<std::string, GrantedCallback> waits_;  // ticket -> who to tell
};

// ---------------------------------------------------------------------------------------------
// Machines: nodes reached over the network rather than deployed by a driver (docs/machines.md).
// The rules their properties follow, shared by the config reader, the REST API and the fleet.

/// A host name or an IP literal ("[::1]" for IPv6), followed by ":PORT" when `port_allowed`.
/// Shape only: names are resolved when used. Never with a leading '-' (it would become an
/// option of the ssh, ipmitool and snmpset commands it is passed to).
bool is_host(std::string_view text, bool port_allowed);

/// A machine's ssh or IPMI user: 1-64 of A-Z, a-z, 0-9, '.', '_', '@' and '-', not starting
/// with '-' (it reaches a tool's argv).
bool is_user_name(std::string_view name);

/// An external scheduler's worker id (the roller's tc_worker_id): 1-128 of A-Z, a-z, 0-9, '.',
/// '_' and '-', not starting with '-'.
bool is_worker_id(std::string_view id);

/// "ssh" (reached with the OpenSSH client) or "none" (only its out-of-band controls).
bool is_machine_driver(std::string_view driver);

/// A machine as a whole: a machine driver, a hostname or an address, hosts of the right shape,
/// ports in range, a PDU host and outlet together, an ssh user. kInvalidArgument naming the
/// field: `machine t-linux-1: pdu_host and pdu_outlet (from 1) go together`.
core::Result<void> check_machine(const core::NodeSpec& spec);

/// A sidecar's control URL: `http://HOST[:PORT]` or `https://...`, HOST a host name or IP
/// address (IPv6 in brackets), no credentials, path, query or fragment. Empty when it is one,
/// else what is wrong with it.
std::string control_url_problem(std::string_view url);

/// A node's control_url against its driver: driver sidecar needs one (a valid one), every other
/// driver has none. kInvalidArgument naming the node: `node bp-a: driver sidecar needs a
/// control_url (the sidecar's control API, http://HOST:PORT)`.
core::Result<void> check_control_url(const core::NodeSpec& spec);

}  // namespace aviary::fleet
