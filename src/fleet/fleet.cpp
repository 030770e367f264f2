#include "fleet/fleet.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <charconv>

#include "fleet/policy.hpp"

namespace aviary::fleet {
namespace {

using policy::kSystemActor;

std::string node_names(const std::vector<core::Lease>& leases) {
    std::string out;
    for (const auto& lease : leases) {
        out += (out.empty() ? "" : ",") + lease.node;
    }
    return out;
}

core::Result<std::optional<std::int64_t>> parse_cursor(std::string_view cursor) {
    if (cursor.empty()) {
        return std::optional<std::int64_t>{};
    }
    std::int64_t id = 0;
    auto [end, ec] = std::from_chars(cursor.data(), cursor.data() + cursor.size(), id);
    if (ec != std::errc{} || end != cursor.data() + cursor.size() || id <= 0) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("cursor \"{}\" is not from a previous page", cursor)};
    }
    return std::optional<std::int64_t>{id};
}

}  // namespace

Fleet::Fleet(Settings settings, store::Store& store, core::Clock& clock)
    : settings_(std::move(settings)), store_(store), clock_(clock), log_(core::logger("fleet")) {
    store_.set_grant_listener(
        [this](std::vector<store::WaiterGrant> grants) { on_grants(std::move(grants)); });
}

Fleet::~Fleet() {
    if (scheduler_ != nullptr) {
        scheduler_->cancel(expiry_task_);  // its tasks call this fleet
        scheduler_->cancel(waits_task_);
    }
    // Returns once a listener call in progress has finished: none can reach a dead fleet.
    store_.set_grant_listener({});
}

core::Result<store::ReconcileReport> Fleet::reconcile() {
    auto now = clock_.now();
    auto report = store_.reconcile_nodes(settings_.nodes, kSystemActor, now);
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
    if (auto workers = store_.reconcile_worker_ids(settings_.worker_ids, kSystemActor, now);
        !workers) {
        return workers.error();
    }
    // Nobody is left to tell: the connections that waited died with the previous run.
    auto dropped = store_.drop_waiters(settings_.instance, kSystemActor, now);
    if (!dropped) {
        return dropped.error();
    }
    if (!dropped->empty()) {
        log_->info("waiters of a previous run dropped count={}", dropped->size());
    }
    return report;
}

core::Error Fleet::refusal_error(const store::LeaseRequest& request,
                                 const store::Refusal& refusal) {
    return policy::refusal_error(request, refusal);
}

core::Result<store::LeaseRequest> Fleet::lease_request(const AcquireRequest& request,
                                                       const Caller& caller) {
    auto owner = policy::owner_for(request.owner, caller);
    if (!owner) {
        return owner.error();
    }
    if (owner->empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument, "owner is required to acquire"};
    }
    if (auto shape = policy::check_shape(request); !shape) {
        return shape.error();
    }
    auto ttl = policy::ttl_for(request.ttl, settings_);
    if (!ttl) {
        return ttl.error();
    }
    return store::LeaseRequest{.node = request.node,
                               .selector = request.selector,
                               .count = request.count,
                               .owner = *owner,
                               .reason = request.reason,
                               .actor = policy::actor_of(caller, *owner),
                               .now = clock_.now(),
                               .ttl = *ttl,
                               .exclusive = request.exclusive};
}

namespace {

/// What an acquire's store attempt means to the caller: the lease, or the refusal worded for
/// them. Logged here, on whichever thread the answer arrives.
core::Result<Acquired> to_result(spdlog::logger& log,
                                 const store::LeaseRequest& request,
                                 core::Result<store::LeaseAttempt> attempt) {
    if (!attempt) {
        return attempt.error();
    }
    if (!attempt->granted) {
        return policy::refusal_error(request, attempt->refusal);
    }
    for (const auto& lapsed : attempt->lapsed) {
        log.info("lease expired node={} owner={}", lapsed.node, lapsed.owner);
    }
    log.info("lease {} nodes={} owner={} lease_id={} ttl={}",
             attempt->renewed ? "renewed" : "acquired", node_names(attempt->leases), request.owner,
             attempt->leases.front().id, core::format_duration(request.ttl));
    return policy::to_acquired(std::move(*attempt));
}

}  // namespace

core::Result<Acquired> Fleet::acquire(const AcquireRequest& request, const Caller& caller) {
    auto lease_request = this->lease_request(request, caller);
    if (!lease_request) {
        return lease_request.error();
    }
    // One operation in the store decides and writes: reading the holder first and writing
    // after would let two racing acquirers both win.
    return to_result(*log_, *lease_request, store_.try_lease(*lease_request));
}

void Fleet::acquire_async(const AcquireRequest& request,
                          const Caller& caller,
                          AcquiredCallback done) {
    auto lease_request = this->lease_request(request, caller);
    if (!lease_request) {
        done(lease_request.error());
        return;
    }
    // The answer may arrive after this Fleet is gone (the store drains at close): it holds
    // what it needs by value.
    auto answer = [log = log_, request = *lease_request,
                   done = std::move(done)](core::Result<store::LeaseAttempt> attempt) {
        done(to_result(*log, request, std::move(attempt)));
    };
    store_.try_lease_async(std::move(*lease_request), std::move(answer));
}

core::Result<std::variant<Acquired, Waiter>> Fleet::acquire_or_wait(const AcquireRequest& request,
                                                                    core::Millis wait,
                                                                    const Caller& caller,
                                                                    GrantedCallback on_granted) {
    if (auto valid = policy::check_wait(wait, settings_); !valid) {
        return valid.error();
    }
    auto lease_request = this->lease_request(request, caller);
    if (!lease_request) {
        return lease_request.error();
    }
    std::string ticket = core::new_id();
    // Registered before the enqueue commits: from then on any commit may serve the waiter,
    // and its grant must find someone to tell.
    {
        std::lock_guard lock{waits_mu_};
        waits_.emplace(ticket, std::move(on_granted));
    }
    auto forget = [this, &ticket] {
        std::lock_guard lock{waits_mu_};
        waits_.erase(ticket);
    };
    auto queued = store_.enqueue(store::WaiterRecord{.ticket = ticket,
                                                     .request = *lease_request,
                                                     .deadline = lease_request->now + wait,
                                                     .instance = settings_.instance});
    if (!queued) {
        forget();
        return queued.error();
    }
    if (auto* granted = std::get_if<store::LeaseAttempt>(&*queued)) {
        // Served at once, in the caller's own operation: the answer is the return value.
        forget();
        AVIARY_ASSERT(granted->granted, "enqueue returns only a granted attempt");
        log_->info("lease {} nodes={} owner={} lease_id={}",
                   granted->renewed ? "renewed" : "acquired", node_names(granted->leases),
                   lease_request->owner, granted->leases.front().id);
        return std::variant<Acquired, Waiter>{policy::to_acquired(std::move(*granted))};
    }
    auto waiter = policy::to_waiter(std::get<store::WaiterRecord>(*queued));
    log_->info("waiter queued ticket={} owner={} position={} wait={}", ticket, lease_request->owner,
               waiter.position, core::format_duration(wait));
    return std::variant<Acquired, Waiter>{std::move(waiter)};
}

void Fleet::on_grants(std::vector<store::WaiterGrant> grants) {
    for (auto& grant : grants) {
        GrantedCallback callback;
        {
            std::lock_guard lock{waits_mu_};
            auto it = waits_.find(grant.ticket);
            if (it != waits_.end()) {
                callback = std::move(it->second);
                waits_.erase(it);
            }
        }
        log_->info("waiter served ticket={} nodes={} owner={} lease_id={}", grant.ticket,
                   node_names(grant.leases), grant.leases.front().owner, grant.leases.front().id);
        if (callback) {
            // Outside waits_mu_, so a slow hand-over never stalls acquire_or_wait or
            // cancel_wait. The callback must not call the fleet or the store: this is the
            // writer thread, and it would wait for itself.
            callback(policy::to_acquired(std::move(grant)));
        }
    }
}

void Fleet::cancel_wait(std::string_view ticket) {
    {
        std::lock_guard lock{waits_mu_};
        waits_.erase(std::string{ticket});
    }
    auto cancelled = store_.cancel_waiter(ticket, "", clock_.now());
    if (!cancelled) {
        log_->warn("waiter not cancelled ticket={} error=\"{}\"", ticket,
                   cancelled.error().message);
        return;
    }
    if (*cancelled) {
        const auto& waiter = **cancelled;
        log_->info("waiter cancelled ticket={} owner={} granted={}", ticket, waiter.request.owner,
                   waiter.state == store::WaiterState::kGranted);
    }
}

core::Result<Waiter> Fleet::waiter(std::string_view ticket) {
    auto now = clock_.now();
    auto record = store_.waiter(ticket, now);
    if (!record) {
        return record.error();
    }
    if (record->state == store::WaiterState::kGranted) {
        return core::Error{
            core::ErrorCode::kNotFound,
            fmt::format("waiter {} was served (lease {})", ticket, record->lease_id)};
    }
    if (record->deadline <= now) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("waiter {} has passed its deadline", ticket)};
    }
    return policy::to_waiter(*record);
}

core::Result<std::vector<core::Lease>> Fleet::renew(std::string_view lease_id,
                                                    std::optional<core::Millis> ttl,
                                                    const Caller& caller) {
    auto holder = policy::holder_for(caller, lease_id);
    if (!holder) {
        return holder.error();
    }
    auto chosen = policy::ttl_for(ttl, settings_);
    if (!chosen) {
        return chosen.error();
    }
    auto renewed = store_.renew_lease(store::LeaseIdRequest{.lease_id = std::string{lease_id},
                                                            .owner = *holder,
                                                            .actor = policy::actor_of(caller),
                                                            .now = clock_.now(),
                                                            .ttl = *chosen});
    if (renewed) {
        log_->info("lease renewed lease_id={} nodes={} ttl={}", lease_id, node_names(*renewed),
                   core::format_duration(*chosen));
    }
    return renewed;
}

core::Result<std::vector<core::Lease>> Fleet::release_lease(std::string_view lease_id,
                                                            const Caller& caller) {
    auto holder = policy::holder_for(caller, lease_id);
    if (!holder) {
        return holder.error();
    }
    auto released = store_.release_lease(store::LeaseIdRequest{.lease_id = std::string{lease_id},
                                                               .owner = *holder,
                                                               .actor = policy::actor_of(caller),
                                                               .now = clock_.now(),
                                                               .kind = "lease.released"});
    if (released) {
        log_->info("lease released lease_id={} nodes={}", lease_id, node_names(*released));
    }
    return released;
}

core::Result<std::optional<core::Lease>> Fleet::release(std::string_view node,
                                                        std::string_view owner,
                                                        const Caller& caller) {
    auto holder = policy::owner_for(owner, caller);
    if (!holder) {
        return holder.error();
    }
    if (holder->empty()) {
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
    auto released = store_.release(release_request(node, *holder, caller));
    if (released && *released) {
        log_->info("lease released node={} owner={}", node, *holder);
    }
    return released;
}

bool Fleet::release_needs_read(std::string_view owner, const Caller& caller) const {
    auto holder = policy::owner_for(owner, caller);
    return holder && holder->empty();
}

void Fleet::release_async(std::string_view node,
                          std::string_view owner,
                          const Caller& caller,
                          ReleasedCallback done) {
    auto holder = policy::owner_for(owner, caller);
    if (!holder) {
        done(holder.error());
        return;
    }
    AVIARY_ASSERT(!holder->empty(), "release_async needs an owner (release_needs_read)");
    auto answer = [log = log_, node = std::string{node}, owner = *holder,
                   done = std::move(done)](core::Result<std::optional<core::Lease>> released) {
        if (released && *released) {
            log->info("lease released node={} owner={}", node, owner);
        }
        done(std::move(released));
    };
    store_.release_async(release_request(node, *holder, caller), std::move(answer));
}

store::ReleaseRequest Fleet::release_request(std::string_view node,
                                             const std::string& holder,
                                             const Caller& caller) const {
    return store::ReleaseRequest{
        .node = std::string{node},
        .owner = holder,
        .actor = policy::actor_of(caller, holder),
        .kind = "lease.released",
        .now = clock_.now(),
    };
}

core::Result<std::optional<core::Lease>> Fleet::free(std::string_view node,
                                                     std::string_view owner,
                                                     bool force,
                                                     const Caller& caller) {
    if (force && !caller.admin) {
        return core::Error{core::ErrorCode::kPermissionDenied,
                           fmt::format("only an admin may force-free node {}", node)};
    }
    std::string holder;
    if (!force) {
        auto resolved = policy::owner_for(owner, caller);
        if (!resolved) {
            return resolved.error();
        }
        if (resolved->empty()) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               "owner is required to free a node (or force, as an admin)"};
        }
        holder = std::move(*resolved);
    }
    auto actor = policy::actor_of(caller, owner);
    auto freed = store_.release(store::ReleaseRequest{
        .node = std::string{node},
        .owner = holder,
        .actor = actor,
        .kind = "lease.freed",
        .now = clock_.now(),
    });
    if (freed && *freed) {
        log_->info("node freed node={} owner={} by={} forced={}", node, (*freed)->owner, actor,
                   force);
    }
    return freed;
}

core::Result<std::vector<core::Lease>> Fleet::leases() {
    return store_.leases(clock_.now());
}

core::Result<std::vector<Waiter>> Fleet::waiters() {
    auto records = store_.waiters(clock_.now());
    if (!records) {
        return records.error();
    }
    std::vector<Waiter> waiters;
    waiters.reserve(records->size());
    for (const auto& record : *records) {
        waiters.push_back(policy::to_waiter(record));
    }
    return waiters;
}

core::Result<std::vector<core::Node>> Fleet::nodes(const core::Labels& selector) {
    auto all = store_.nodes(clock_.now());
    if (!all || selector.empty()) {
        return all;
    }
    std::erase_if(
        *all, [&](const auto& node) { return !core::labels_match(node.spec.labels, selector); });
    return all;
}

core::Result<core::Node> Fleet::node(std::string_view name) {
    return store_.node(name, clock_.now());
}

core::Result<std::vector<core::WorkerId>> Fleet::worker_ids() {
    return store_.worker_ids();
}

core::Result<core::WorkerId> Fleet::worker_id(std::string_view id) {
    return store_.worker_id(id);
}

core::Result<std::pair<core::Node, bool>> Fleet::put_node(const core::NodeSpec& spec,
                                                          const Caller& caller) {
    if (auto admin = policy::require_admin(caller, "edit nodes"); !admin) {
        return admin.error();
    }
    if (spec.machine || is_machine_driver(spec.driver)) {
        if (auto valid = check_machine(spec); !valid) {
            return valid.error();
        }
    }
    if (auto valid = check_control_url(spec); !valid) {
        return valid.error();
    }
    auto change = store_.put_node(spec, policy::actor_of(caller), clock_.now());
    if (!change) {
        return change.error();
    }
    log_->info("node {} through the api node={} by={}", change->created ? "added" : "updated",
               spec.name, policy::actor_of(caller));
    return std::pair<core::Node, bool>{std::move(change->node), change->created};
}

core::Result<void> Fleet::remove_node(std::string_view name, const Caller& caller, bool machine) {
    if (auto admin = policy::require_admin(caller, "edit nodes"); !admin) {
        return admin;
    }
    auto removed = store_.remove_node(name, policy::actor_of(caller), clock_.now(), machine);
    if (removed) {
        log_->info("node removed through the api node={} by={}", name, policy::actor_of(caller));
    }
    return removed;
}

core::Result<core::Node> Fleet::start_maintenance(std::string_view name,
                                                  std::string_view reason,
                                                  const Caller& caller) {
    if (auto admin = policy::require_admin(caller, "take nodes out of service"); !admin) {
        return admin.error();
    }
    auto change = store_.start_maintenance(name, reason, policy::actor_of(caller), clock_.now());
    if (!change) {
        return change.error();
    }
    if (change->ended) {
        log_->info("lease ended for maintenance node={} owner={} lease_id={}", name,
                   change->ended->owner, change->ended->id);
    }
    log_->info("node in maintenance node={} reason=\"{}\" by={}", name, reason,
               policy::actor_of(caller));
    return std::move(change->node);
}

core::Result<core::Node> Fleet::end_maintenance(std::string_view name, const Caller& caller) {
    if (auto admin = policy::require_admin(caller, "take nodes out of service"); !admin) {
        return admin.error();
    }
    auto change = store_.end_maintenance(name, policy::actor_of(caller), clock_.now());
    if (!change) {
        return change.error();
    }
    log_->info("node back in service node={} by={}", name, policy::actor_of(caller));
    {
        std::lock_guard lock{service_mu_};
        if (back_in_service_) {
            back_in_service_(name);
        }
    }
    return std::move(change->node);
}

void Fleet::set_back_in_service_listener(ServiceListener listener) {
    std::lock_guard lock{service_mu_};
    back_in_service_ = std::move(listener);
}

namespace {

/// Names in producer leases reach logs, events and URLs: letters, digits, ".-_:@".
core::Result<void> check_producer_name(std::string_view what, std::string_view name) {
    const bool ok =
        !name.empty() && name.size() <= 128 && std::all_of(name.begin(), name.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' ||
                   c == '_' || c == ':' || c == '@';
        });
    if (ok) {
        return {};
    }
    return core::Error{core::ErrorCode::kInvalidArgument,
                       fmt::format("{} must be 1-128 of a-z, A-Z, 0-9, '.', '-', '_', ':' and "
                                   "'@', got \"{}\"",
                                   what, name)};
}

/// A well-formed key and holder, and a caller that may act as that holder (an admin, or the
/// holder itself).
core::Result<void> check_producer_request(std::string_view key,
                                          std::string_view holder,
                                          const Caller& caller) {
    if (auto ok = check_producer_name("key", key); !ok) {
        return ok;
    }
    if (auto ok = check_producer_name("holder", holder); !ok) {
        return ok;
    }
    if (caller.admin || caller.identity == holder) {
        return {};
    }
    return core::Error{core::ErrorCode::kPermissionDenied,
                       fmt::format("{} may hold producer leases only as itself, not as {}",
                                   caller.identity, holder)};
}

}  // namespace

core::Result<store::ProducerLease> Fleet::claim_producer(std::string_view key,
                                                         std::string_view holder,
                                                         std::optional<core::Millis> ttl,
                                                         const Caller& caller) {
    if (auto ok = check_producer_request(key, holder, caller); !ok) {
        return ok.error();
    }
    const core::Millis lease_ttl = ttl.value_or(kProducerTtl);
    if (lease_ttl <= core::Millis::zero() || lease_ttl > kMaxProducerTtl) {
        return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("ttl must be more than 0 and at most {}, got {}",
                        core::format_duration(kMaxProducerTtl), core::format_duration(lease_ttl))};
    }
    return store_.claim_producer(key, holder, lease_ttl, clock_.now());
}

core::Result<void> Fleet::release_producer(std::string_view key,
                                           std::string_view holder,
                                           std::int64_t fence,
                                           const Caller& caller) {
    if (auto ok = check_producer_request(key, holder, caller); !ok) {
        return ok.error();
    }
    return store_.release_producer(key, holder, fence, clock_.now());
}

core::Result<std::vector<store::ProducerLease>> Fleet::producers() {
    return store_.producers();
}

core::Result<EventsPage> Fleet::events(const EventsQuery& query) {
    constexpr int kMaxLimit = 1000;
    if (query.limit < 1 || query.limit > kMaxLimit) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("limit must be 1..{}, got {}", kMaxLimit, query.limit)};
    }
    auto before_id = parse_cursor(query.cursor);
    if (!before_id) {
        return before_id.error();
    }
    store::EventQuery page{
        .node = query.node, .since = query.since, .before_id = *before_id, .limit = query.limit};
    auto events = store_.events(page);
    if (!events) {
        return events.error();
    }
    EventsPage out{.events = std::move(*events)};
    if (static_cast<int>(out.events.size()) == query.limit) {
        // A full page may be the last one: look one event further before promising more.
        page.before_id = out.events.back().id;
        page.limit = 1;
        auto more = store_.events(page);
        if (!more) {
            return more.error();
        }
        if (!more->empty()) {
            out.next_cursor = std::to_string(out.events.back().id);
        }
    }
    return out;
}

std::size_t Fleet::expire_once() {
    auto now = clock_.now();
    auto expired = store_.expire_leases(now);
    if (!expired) {
        log_->warn("lease expiry sweep failed error=\"{}\"", expired.error().message);
        return 0;
    }
    for (const auto& lease : *expired) {
        log_->info("lease expired node={} owner={} expired_at={}", lease.node, lease.owner,
                   core::format_time(lease.expires_at));
    }
    // Their callbacks stay quiet: the api side keeps its own deadline and answers timeout.
    auto lapsed = store_.expire_waiters(now);
    if (!lapsed) {
        log_->warn("waiter expiry sweep failed error=\"{}\"", lapsed.error().message);
        return expired->size();
    }
    if (!lapsed->empty()) {
        std::lock_guard lock{waits_mu_};
        for (const auto& waiter : *lapsed) {
            waits_.erase(waiter.ticket);
            log_->info("waiter expired ticket={} owner={}", waiter.ticket, waiter.request.owner);
        }
    }
    return expired->size();
}

void Fleet::schedule(core::Scheduler& scheduler) {
    AVIARY_ASSERT(scheduler_ == nullptr, "Fleet::schedule called twice");
    scheduler_ = &scheduler;
    expiry_task_ = scheduler.add(core::Scheduler::Task{
        .name = "lease-expiry",
        .interval = settings_.expiry_sweep,
        .run_once = [this](core::TimePoint) -> std::optional<core::TimePoint> {
            expire_once();
            auto next = store_.next_lease_deadline();
            if (!next) {
                log_->warn("cannot read the next lease deadline error=\"{}\"",
                           next.error().message);
                return std::nullopt;
            }
            return *next;
        },
    });
    waits_task_ = scheduler.add(core::Scheduler::Task{
        .name = "lease-waits",
        .interval = settings_.wait_heartbeat,
        .run_once = [this](core::TimePoint now) -> std::optional<core::TimePoint> {
            recheck_waits(now);
            return std::nullopt;
        },
        .leader_only = false,
        .run_at_start = false,
    });
}

void Fleet::recheck_waits(core::TimePoint now) {
    std::vector<std::string> tickets;
    {
        std::lock_guard lock{waits_mu_};
        for (const auto& [ticket, callback] : waits_) {
            tickets.push_back(ticket);
        }
    }
    if (tickets.empty()) {
        return;
    }
    // A grant another instance made reaches us through the store's feed; this covers one
    // whose notification was lost (a dropped listener connection).
    std::vector<store::WaiterGrant> missed;
    std::optional<std::vector<core::Lease>> leases;
    for (const auto& ticket : tickets) {
        auto waiter = store_.waiter(ticket, now);
        if (!waiter || waiter->state != store::WaiterState::kGranted) {
            continue;
        }
        if (!leases) {
            auto all = store_.leases(now);
            if (!all) {
                log_->warn("cannot read leases for granted waiters error=\"{}\"",
                           all.error().message);
                return;
            }
            leases = std::move(*all);
        }
        store::WaiterGrant grant{.ticket = ticket};
        for (const auto& lease : *leases) {
            if (lease.id == waiter->lease_id) {
                grant.leases.push_back(lease);
            }
        }
        if (!grant.leases.empty()) {
            log_->warn("waiter granted without a notification ticket={}", ticket);
            missed.push_back(std::move(grant));
        }
    }
    if (!missed.empty()) {
        on_grants(std::move(missed));
    }
}

}  // namespace aviary::fleet
