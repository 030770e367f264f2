#include "store/sql/leases.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "store/serving.hpp"
#include "store/sql/encoding.hpp"
#include "store/sql/events.hpp"
#include "store/sql/nodes.hpp"
#include "store/sql/waiters.hpp"

namespace aviary::store::sql {
namespace {

constexpr int kMaxCount = 64;

core::Error unknown_node(std::string_view node) {
    return core::Error{core::ErrorCode::kNotFound, fmt::format("unknown node {}", node)};
}

/// Runs a statement whose rows are leases and collects them. Every row is read before the
/// caller writes events, as SQLite finishes a RETURNING statement's changes on the first step.
core::Result<std::vector<core::Lease>> collect_leases(Statement& statement) {
    return statement.rows([](const Statement& row) { return lease_from_row(row, 0); });
}

core::Result<std::optional<core::Lease>> at_most_one(core::Result<std::vector<core::Lease>> rows) {
    if (!rows) {
        return rows.error();
    }
    if (rows->empty()) {
        return std::optional<core::Lease>{};
    }
    return std::optional<core::Lease>{std::move(rows->front())};
}

/// Deletes the one lease `select` finds (a bound SELECT of kLeaseColumns on one node) and
/// returns it. Deleted by node and id, so a row another instance ended in between is not
/// returned as ended here. The acquire and release path ends leases this way rather than by
/// DELETE ... RETURNING: SQLite runs a RETURNING clause through a temporary b-tree, a page cache
/// allocated and freed per statement, which that path paid on every call (bench/RESULTS.md).
core::Result<std::optional<core::Lease>> take_lease(Connection& db, Statement& select) {
    auto found = at_most_one(collect_leases(select));
    if (!found || !*found) {
        return found;
    }
    auto remove = db.prepare("DELETE FROM leases WHERE node = ?1 AND id = ?2");
    if (!remove) {
        return remove.error();
    }
    if (auto done = remove->bind_all((*found)->node, (*found)->id).run(); !done) {
        return done.error();
    }
    if (db.changes() == 0) {
        return std::optional<core::Lease>{};
    }
    return found;
}

void by_node(std::vector<core::Lease>& leases) {
    std::sort(leases.begin(), leases.end(),
              [](const auto& a, const auto& b) { return a.node < b.node; });
}

core::Result<std::optional<core::Lease>> find_lease(Connection& db, std::string_view node) {
    auto select = db.prepare(fmt::format("SELECT {} FROM leases WHERE node = ?1", kLeaseColumns));
    if (!select) {
        return select.error();
    }
    select->bind_all(node);
    return at_most_one(collect_leases(*select));
}

core::Result<void> record(Connection& db,
                          core::TimePoint at,
                          std::string_view actor,
                          std::string_view kind,
                          const core::Lease* before,
                          const core::Lease* after) {
    std::string node = before != nullptr ? before->node : after->node;
    return append_event(
        db,
        core::Event{.at = at,
                    .actor = std::string{actor},
                    .kind = std::string{kind},
                    .node = std::move(node),
                    .before = before != nullptr ? lease_to_json(*before) : std::string{kNoState},
                    .after = after != nullptr ? lease_to_json(*after) : std::string{kNoState}});
}

std::string what(const LeaseRequest& request) {
    return request.node.empty() ? fmt::format("nodes {}", serving::describe(request.selector))
                                : fmt::format("node {}", request.node);
}

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

core::Result<void> check_request(const LeaseRequest& request) {
    if (request.node.empty() == request.selector.empty()) {
        return invalid(request.node.empty() ? "give node or selector"
                                            : "give node or selector, not both");
    }
    if (request.owner.empty()) {
        return invalid(fmt::format("a lease of {} needs an owner", what(request)));
    }
    if (request.ttl <= core::Millis::zero()) {
        return invalid(fmt::format("a lease of {} needs a positive ttl", what(request)));
    }
    if (request.count < 1 || request.count > kMaxCount) {
        return invalid(fmt::format("count must be 1..{}, got {}", kMaxCount, request.count));
    }
    if (!request.node.empty() && request.count != 1) {
        return invalid(fmt::format("count needs a selector: node {} is one node", request.node));
    }
    return {};
}

/// kNotFound when nothing could ever serve the request; kUnavailable for a named node in
/// maintenance (a selector waits for its nodes to come back instead).
core::Result<void> check_servable(const LeaseRequest& request,
                                  const std::vector<core::Node>& pool) {
    auto matching = serving::candidates(request, pool);
    if (!request.node.empty()) {
        if (matching.empty()) {
            return unknown_node(request.node);
        }
        auto node = std::find_if(pool.begin(), pool.end(),
                                 [&](const auto& n) { return n.spec.name == request.node; });
        if (node->state == core::NodeState::kMaintenance) {
            return core::Error{core::ErrorCode::kUnavailable,
                               fmt::format("node {} is in maintenance: {}", request.node,
                                           node->maintenance_reason)};
        }
        return {};
    }
    if (static_cast<int>(matching.size()) < request.count) {
        return core::Error{
            core::ErrorCode::kNotFound,
            matching.empty()
                ? fmt::format("no node matches {}", serving::describe(request.selector))
                : fmt::format("only {} node(s) match {}, {} asked", matching.size(),
                              serving::describe(request.selector), request.count)};
    }
    return {};
}

/// Sets expires_at (and the reason, when given) on every active row of lease `id`, with a
/// lease.renewed event each. Returns the rows after, by node.
core::Result<std::vector<core::Lease>> extend(Connection& db,
                                              std::string_view id,
                                              core::TimePoint expires_at,
                                              const std::string* reason,
                                              std::string_view actor,
                                              core::TimePoint now) {
    auto before = held_rows(db, id, now);
    if (!before) {
        return before;
    }
    auto update = db.prepare(
        "UPDATE leases SET expires_at = ?2, reason = coalesce(?3, reason) "
        "WHERE id = ?1 AND expires_at > ?4");
    if (!update) {
        return update.error();
    }
    update->bind_all(id, expires_at);
    reason != nullptr ? update->bind(3, *reason) : update->bind(3, std::nullopt);
    if (auto done = update->bind(4, now).run(); !done) {
        return done.error();
    }
    std::vector<core::Lease> after = *before;
    for (std::size_t i = 0; i < after.size(); ++i) {
        after[i].expires_at = expires_at;
        if (reason != nullptr) {
            after[i].reason = *reason;
        }
        if (auto recorded = record(db, now, actor, "lease.renewed", &(*before)[i], &after[i]);
            !recorded) {
            return recorded.error();
        }
    }
    return after;
}

/// The holder of a named node renews it unless either side is exclusive; anyone else, or an
/// exclusive request, is refused naming the holder.
core::Result<LeaseAttempt> renew_or_refuse(Connection& db,
                                           const LeaseRequest& request,
                                           const core::Lease& holder) {
    if (holder.owner != request.owner || holder.exclusive || request.exclusive) {
        return LeaseAttempt{.granted = false,
                            .refusal = Refusal{.holders = {holder}, .matching = 1, .leased = 1}};
    }
    auto renewed = extend(db, holder.id, request.now + request.ttl, &request.reason,
                          request.actor.empty() ? request.owner : request.actor, request.now);
    if (!renewed) {
        return renewed.error();
    }
    return LeaseAttempt{.granted = true, .renewed = true, .leases = std::move(*renewed)};
}

/// Why the plan refused: counts as the pool stands after this transaction's grants, and the
/// waiters still queued ahead for any node it could use.
core::Result<LeaseAttempt> refuse(Connection& db,
                                  const LeaseRequest& request,
                                  const std::vector<WaiterRecord>& queue,
                                  const Served& served) {
    auto pool = select_nodes(db, request.now);
    if (!pool) {
        return pool.error();
    }
    LeaseAttempt attempt{.granted = false, .refusal = serving::refusal_for(request, *pool)};
    auto wanted = serving::candidates(request, *pool);
    for (const auto& waiter : queue) {
        bool granted = std::any_of(served.begin(), served.end(),
                                   [&](const auto& g) { return g.ticket == waiter.ticket; });
        if (!granted && serving::overlaps(serving::candidates(waiter.request, *pool), wanted)) {
            ++attempt.refusal.waiters_ahead;
        }
    }
    return attempt;
}

/// The conditional delete ended nothing: a free or unknown node, a lapsed lease (ended here,
/// so the release still succeeds), or someone else's.
core::Result<std::optional<core::Lease>> explain_unreleased(Connection& db,
                                                            const ReleaseRequest& request,
                                                            std::string_view actor) {
    auto holder = find_lease(db, request.node);
    if (!holder) {
        return holder;
    }
    if (!*holder) {
        if (auto node = select_node(db, request.node, request.now); !node) {
            return node.error();
        }
        return holder;
    }
    if ((*holder)->expires_at <= request.now) {
        auto lapsed = end_lapsed_lease(db, request.node, actor, request.now);
        if (!lapsed) {
            return lapsed.error();
        }
        return std::optional<core::Lease>{};
    }
    return core::Error{core::ErrorCode::kNotOwner,
                       fmt::format("node {} is not yours to release: current owner is {}",
                                   request.node, (*holder)->owner)};
}

/// renew_lease and release_lease changed nothing: the id is not held, or not by `owner`.
core::Error explain_not_held(Connection& db, const LeaseIdRequest& request) {
    auto rows = held_rows(db, request.lease_id, request.now);
    if (!rows) {
        return rows.error();
    }
    if (rows->empty()) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("lease {} is not held", request.lease_id)};
    }
    return core::Error{core::ErrorCode::kNotOwner,
                       fmt::format("lease {} is not yours: current owner is {}", request.lease_id,
                                   rows->front().owner)};
}

/// Whether `owner` (empty: anyone) holds lease `id` now.
core::Result<bool> holds(Connection& db, const LeaseIdRequest& request) {
    auto rows = held_rows(db, request.lease_id, request.now);
    if (!rows) {
        return rows.error();
    }
    return !rows->empty() && (request.owner.empty() || rows->front().owner == request.owner);
}

}  // namespace

core::Result<std::vector<core::Lease>> held_rows(Connection& db,
                                                 std::string_view id,
                                                 core::TimePoint now) {
    auto select = db.prepare(fmt::format(
        "SELECT {} FROM leases WHERE id = ?1 AND expires_at > ?2 ORDER BY node", kLeaseColumns));
    if (!select) {
        return select.error();
    }
    select->bind_all(id, now);
    return collect_leases(*select);
}

core::Lease lease_from_row(const Statement& row, int first) {
    return core::Lease{.id = row.text(first),
                       .node = row.text(first + 1),
                       .owner = row.text(first + 2),
                       .reason = row.text(first + 3),
                       .acquired_at = row.time(first + 4),
                       .expires_at = row.time(first + 5),
                       .exclusive = row.int64(first + 6) != 0};
}

/// True when some waiter is still waiting: one seek on waiters (state, seq).
core::Result<bool> anyone_waiting(Connection& db, core::TimePoint now) {
    auto select =
        db.prepare("SELECT 1 FROM waiters WHERE state = 'waiting' AND deadline > ?1 LIMIT 1");
    if (!select) {
        return select.error();
    }
    select->bind_all(now);
    return select->step();
}

/// A named node with nobody waiting, the common case, is decided on its own row: no waiter
/// can be ahead and no other node matters, so the plan is the rule's over a pool of one.
/// nullopt when someone waits (try_lease then serves the queue first, over the whole pool).
core::Result<std::optional<LeaseAttempt>> try_named_lease(Connection& db,
                                                          const LeaseRequest& request,
                                                          Served& served) {
    auto waiting = anyone_waiting(db, request.now);
    if (!waiting) {
        return waiting.error();
    }
    if (*waiting) {
        return std::optional<LeaseAttempt>{};
    }
    auto decided =
        [](core::Result<LeaseAttempt> attempt) -> core::Result<std::optional<LeaseAttempt>> {
        if (!attempt) {
            return attempt.error();
        }
        return std::optional<LeaseAttempt>{std::move(*attempt)};
    };
    auto node = select_node(db, request.node, request.now);
    if (!node) {
        return node.error().code == core::ErrorCode::kNotFound ? unknown_node(request.node)
                                                               : node.error();
    }
    std::vector<core::Node> pool{std::move(*node)};
    if (auto servable = check_servable(request, pool); !servable) {
        return servable.error();
    }
    if (pool.front().lease && pool.front().lease->expires_at > request.now) {
        return decided(renew_or_refuse(db, request, *pool.front().lease));
    }
    serving::Plan plan{pool};
    auto nodes = plan.next(request);
    if (!nodes) {
        return decided(refuse(db, request, {}, served));
    }
    return decided(grant(db, request, *nodes));
}

core::Result<LeaseAttempt> try_lease(Connection& db, const LeaseRequest& request, Served& served) {
    if (auto valid = check_request(request); !valid) {
        return valid.error();
    }
    if (!request.node.empty()) {
        auto decided = try_named_lease(db, request, served);
        if (!decided) {
            return decided.error();
        }
        if (*decided) {
            return std::move(**decided);
        }
    }
    auto pool = select_nodes(db, request.now);
    if (!pool) {
        return pool.error();
    }
    if (auto servable = check_servable(request, *pool); !servable) {
        return servable.error();
    }
    // The queue goes first: a lapsed lease may already be a waiter's, and a direct acquire
    // is the last in line.
    auto queue = select_waiting(db, request.now);
    if (!queue) {
        return queue.error();
    }
    serving::Plan plan{*pool};
    if (auto done = serve(db, plan, *queue, request.now, served); !done) {
        return done.error();
    }
    if (!request.node.empty()) {
        auto holder = find_lease(db, request.node);
        if (!holder) {
            return holder.error();
        }
        if (*holder && (*holder)->expires_at > request.now) {
            return renew_or_refuse(db, request, **holder);
        }
    }
    auto nodes = plan.next(request);
    if (!nodes) {
        return refuse(db, request, *queue, served);
    }
    return grant(db, request, *nodes);
}

core::Result<LeaseAttempt> grant(Connection& db,
                                 const LeaseRequest& request,
                                 const std::vector<std::string>& nodes) {
    std::string actor = request.actor.empty() ? request.owner : request.actor;
    LeaseAttempt attempt{.granted = true};
    std::string id = core::new_id();
    for (const auto& node : nodes) {
        auto lapsed = end_lapsed_lease(db, node, actor, request.now);
        if (!lapsed) {
            return lapsed.error();
        }
        if (*lapsed) {
            attempt.lapsed.push_back(std::move(**lapsed));
        }
        core::Lease lease{.id = id,
                          .node = node,
                          .owner = request.owner,
                          .reason = request.reason,
                          .acquired_at = request.now,
                          .expires_at = request.now + request.ttl,
                          .exclusive = request.exclusive};
        // Prepared per node: the Statement's destructor resets it for the next bind.
        auto insert = db.prepare(
            "INSERT INTO leases (node, id, owner, reason, acquired_at, expires_at, exclusive) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
        if (!insert) {
            return insert.error();
        }
        if (auto done =
                insert
                    ->bind_all(lease.node, lease.id, lease.owner, lease.reason, lease.acquired_at,
                               lease.expires_at, std::int64_t{lease.exclusive ? 1 : 0})
                    .run();
            !done) {
            return done.error();
        }
        // A gated node's pass is used up by the lease: it goes to a selector again only once
        // its gate has passed after this lease.
        auto consume = db.prepare(
            "UPDATE nodes SET gate_until = 0 WHERE name = ?1 AND gate_until IS NOT NULL");
        if (!consume) {
            return consume.error();
        }
        if (auto done = consume->bind_all(node).run(); !done) {
            return done.error();
        }
        if (auto recorded = record(db, request.now, actor, "lease.acquired", nullptr, &lease);
            !recorded) {
            return recorded.error();
        }
        attempt.leases.push_back(std::move(lease));
    }
    return attempt;
}

core::Result<std::optional<core::Lease>> release(Connection& db,
                                                 const ReleaseRequest& request,
                                                 Served& served) {
    std::string_view actor = request.actor.empty() ? request.owner : request.actor;
    // Only an active lease, and only the named owner's (any owner's when none is named).
    static const std::string kHeld = fmt::format(
        "SELECT {} FROM leases WHERE node = ?1 AND expires_at > ?2 "
        "AND (?3 = '' OR owner = ?3)",
        kLeaseColumns);
    auto select = db.prepare(kHeld);
    if (!select) {
        return select.error();
    }
    select->bind_all(request.node, request.now, request.owner);
    auto ended = take_lease(db, *select);
    if (!ended) {
        return ended;
    }
    if (*ended) {
        if (auto recorded = record(db, request.now, actor, request.kind, &**ended, nullptr);
            !recorded) {
            return recorded.error();
        }
    } else {
        ended = explain_unreleased(db, request, actor);
        if (!ended) {
            return ended;
        }
    }
    if (auto done = serve_waiters(db, request.now, served); !done) {
        return done.error();
    }
    return ended;
}

core::Result<std::vector<core::Lease>> renew_lease(Connection& db, const LeaseIdRequest& request) {
    if (request.ttl <= core::Millis::zero()) {
        return invalid(fmt::format("renewing lease {} needs a positive ttl", request.lease_id));
    }
    auto held = holds(db, request);
    if (!held) {
        return held.error();
    }
    if (!*held) {
        return explain_not_held(db, request);
    }
    return extend(db, request.lease_id, request.now + request.ttl, nullptr,
                  request.actor.empty() ? request.owner : request.actor, request.now);
}

core::Result<std::vector<core::Lease>> release_lease(Connection& db,
                                                     const LeaseIdRequest& request,
                                                     Served& served) {
    auto held = holds(db, request);
    if (!held) {
        return held.error();
    }
    if (!*held) {
        return explain_not_held(db, request);
    }
    auto ended =
        end_lease(db, request.lease_id, request.actor.empty() ? request.owner : request.actor,
                  request.kind, request.now);
    if (!ended) {
        return ended;
    }
    if (auto done = serve_waiters(db, request.now, served); !done) {
        return done.error();
    }
    return ended;
}

core::Result<std::vector<core::Lease>> end_lease(Connection& db,
                                                 std::string_view id,
                                                 std::string_view actor,
                                                 std::string_view kind,
                                                 core::TimePoint now) {
    auto remove = db.prepare(fmt::format(
        "DELETE FROM leases WHERE id = ?1 AND expires_at > ?2 RETURNING {}", kLeaseColumns));
    if (!remove) {
        return remove.error();
    }
    remove->bind_all(id, now);
    auto ended = collect_leases(*remove);
    if (!ended) {
        return ended;
    }
    by_node(*ended);
    for (const auto& lease : *ended) {
        if (auto recorded = record(db, now, actor, kind, &lease, nullptr); !recorded) {
            return recorded.error();
        }
    }
    return ended;
}

core::Result<std::optional<core::TimePoint>> select_next_lease_deadline(Connection& db) {
    // leases.expires_at is indexed (one seek); waiters are few, those of one pool.
    auto select = db.prepare(
        "SELECT min(t) FROM (SELECT min(expires_at) AS t FROM leases "
        "UNION ALL SELECT min(deadline) FROM waiters) AS deadlines");
    if (!select) {
        return select.error();
    }
    return optional_time(*select);
}

core::Result<std::vector<core::Lease>> expire_leases(Connection& db,
                                                     core::TimePoint now,
                                                     Served& served) {
    auto remove = db.prepare(
        fmt::format("DELETE FROM leases WHERE expires_at <= ?1 RETURNING {}", kLeaseColumns));
    if (!remove) {
        return remove.error();
    }
    remove->bind_all(now);
    auto expired = collect_leases(*remove);
    if (!expired) {
        return expired;
    }
    by_node(*expired);
    for (const auto& lease : *expired) {
        if (auto recorded = record(db, now, kSystemActor, "lease.expired", &lease, nullptr);
            !recorded) {
            return recorded.error();
        }
    }
    if (auto done = serve_waiters(db, now, served); !done) {
        return done.error();
    }
    return expired;
}

core::Result<std::vector<core::Lease>> select_leases(Connection& db, core::TimePoint now) {
    auto select =
        db.prepare(fmt::format("SELECT {} FROM leases WHERE expires_at > ?1 "
                               "ORDER BY min(acquired_at) OVER (PARTITION BY id), id, node",
                               kLeaseColumns));
    if (!select) {
        return select.error();
    }
    select->bind_all(now);
    return collect_leases(*select);
}

core::Result<std::optional<core::Lease>> end_lapsed_lease(Connection& db,
                                                          std::string_view node,
                                                          std::string_view actor,
                                                          core::TimePoint now) {
    static const std::string kLapsed =
        fmt::format("SELECT {} FROM leases WHERE node = ?1 AND expires_at <= ?2", kLeaseColumns);
    auto select = db.prepare(kLapsed);
    if (!select) {
        return select.error();
    }
    select->bind_all(node, now);
    auto ended = take_lease(db, *select);
    if (ended && *ended) {
        if (auto recorded = record(db, now, actor, "lease.expired", &**ended, nullptr); !recorded) {
            return recorded.error();
        }
    }
    return ended;
}

}  // namespace aviary::store::sql
