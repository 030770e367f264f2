#include "store/sqlite/leases.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "store/sqlite/encoding.hpp"
#include "store/sqlite/events.hpp"

namespace aviary::store::sqlite {
namespace {

// Renewal keeps the lease id and acquired_at; anything else the WHERE lets through (a free
// node, a lapsed lease) starts a new lease. The WHERE is the whole decision, taken atomically
// by the one statement: reading the holder first and writing after would let two racing
// acquirers both win once this runs on PostgreSQL.
constexpr std::string_view kUpsertLease = R"sql(
INSERT INTO leases (node, id, owner, reason, acquired_at, expires_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (node) DO UPDATE SET
    id = CASE WHEN leases.owner = excluded.owner AND leases.expires_at > excluded.acquired_at
              THEN leases.id ELSE excluded.id END,
    acquired_at = CASE WHEN leases.owner = excluded.owner
                            AND leases.expires_at > excluded.acquired_at
                       THEN leases.acquired_at ELSE excluded.acquired_at END,
    owner = excluded.owner,
    reason = excluded.reason,
    expires_at = excluded.expires_at
WHERE leases.owner = excluded.owner OR leases.expires_at <= excluded.acquired_at
RETURNING id, node, owner, reason, acquired_at, expires_at)sql";

// The release is one conditional delete too: only an active lease, and only the named owner's.
constexpr std::string_view kDeleteHeldLease = R"sql(
DELETE FROM leases WHERE node = ?1 AND expires_at > ?2 AND (?3 = '' OR owner = ?3)
RETURNING id, node, owner, reason, acquired_at, expires_at)sql";

core::Error unknown_node(std::string_view node) {
    return core::Error{core::ErrorCode::kNotFound, fmt::format("unknown node {}", node)};
}

/// Runs a statement whose rows are leases and collects them. Every row is read before the
/// caller writes events, as SQLite finishes a RETURNING statement's changes on the first step.
core::Result<std::vector<core::Lease>> collect_leases(Statement& statement) {
    std::vector<core::Lease> leases;
    while (true) {
        auto row = statement.step();
        if (!row) {
            return row.error();
        }
        if (!*row) {
            return leases;
        }
        leases.push_back(lease_from_row(statement, 0));
    }
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

/// The node's maintenance reason ("" when in service), nullopt for an unknown node.
core::Result<std::optional<std::string>> maintenance_reason(Connection& db, std::string_view node) {
    auto select = db.prepare("SELECT maintenance_reason FROM nodes WHERE name = ?1");
    if (!select) {
        return select.error();
    }
    auto row = select->bind_all(node).step();
    if (!row) {
        return row.error();
    }
    if (!*row) {
        return std::optional<std::string>{};
    }
    return std::optional<std::string>{select->text(0)};
}

/// kNotFound for an unknown node, kUnavailable for one in maintenance.
core::Result<void> check_leasable(Connection& db, std::string_view node) {
    auto reason = maintenance_reason(db, node);
    if (!reason) {
        return reason.error();
    }
    if (!*reason) {
        return unknown_node(node);
    }
    if (!(*reason)->empty()) {
        return core::Error{core::ErrorCode::kUnavailable,
                           fmt::format("node {} is in maintenance: {}", node, **reason)};
    }
    return {};
}

core::Result<void> check_request(const LeaseRequest& request) {
    if (request.owner.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("a lease of node {} needs an owner", request.node)};
    }
    if (request.ttl <= core::Millis::zero()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("a lease of node {} needs a positive ttl", request.node)};
    }
    return {};
}

core::Result<std::optional<core::Lease>> upsert_lease(Connection& db, const LeaseRequest& request) {
    auto upsert = db.prepare(kUpsertLease);
    if (!upsert) {
        return upsert.error();
    }
    upsert->bind_all(request.node, core::new_id(), request.owner, request.reason, request.now,
                     request.now + request.ttl);
    return at_most_one(collect_leases(*upsert));
}

std::string_view actor_of(const LeaseRequest& request) {
    return request.actor.empty() ? request.owner : request.actor;
}

core::Result<LeaseAttempt> record_grant(Connection& db,
                                        const LeaseRequest& request,
                                        const std::optional<core::Lease>& prior,
                                        core::Lease granted) {
    LeaseAttempt attempt{.granted = true, .lease = std::move(granted), .lapsed = std::nullopt};
    // The same condition as the upsert's CASE, on the row it saw: this transaction holds the
    // write lock, so `prior` is exactly what the upsert replaced.
    attempt.renewed = prior && prior->owner == request.owner && prior->expires_at > request.now;
    if (prior && !attempt.renewed) {
        attempt.lapsed = prior;
        auto expired =
            record(db, request.now, actor_of(request), "lease.expired", &*prior, nullptr);
        if (!expired) {
            return expired.error();
        }
    }
    auto recorded =
        attempt.renewed
            ? record(db, request.now, actor_of(request), "lease.renewed", &*prior, &attempt.lease)
            : record(db, request.now, actor_of(request), "lease.acquired", nullptr, &attempt.lease);
    if (!recorded) {
        return recorded.error();
    }
    return attempt;
}

/// The conditional delete ended nothing: a free or unknown node, a lapsed lease (ended here,
/// so the release still succeeds), or someone else's.
core::Result<std::optional<core::Lease>> explain_unreleased(Connection& db,
                                                            const ReleaseRequest& request,
                                                            std::string_view actor) {
    auto reason = maintenance_reason(db, request.node);
    if (!reason) {
        return reason.error();
    }
    if (!*reason) {
        return unknown_node(request.node);
    }
    auto holder = find_lease(db, request.node);
    if (!holder || !*holder) {
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

}  // namespace

core::Lease lease_from_row(const Statement& row, int first) {
    return core::Lease{.id = row.text(first),
                       .node = row.text(first + 1),
                       .owner = row.text(first + 2),
                       .reason = row.text(first + 3),
                       .acquired_at = row.time(first + 4),
                       .expires_at = row.time(first + 5)};
}

core::Result<LeaseAttempt> try_lease(Connection& db, const LeaseRequest& request) {
    if (auto valid = check_request(request); !valid) {
        return valid.error();
    }
    if (auto leasable = check_leasable(db, request.node); !leasable) {
        return leasable.error();
    }
    // Read only to report what the upsert replaces (a lapsed lease, or the renewed one);
    // the upsert alone decides.
    auto prior = find_lease(db, request.node);
    if (!prior) {
        return prior.error();
    }
    auto granted = upsert_lease(db, request);
    if (!granted) {
        return granted.error();
    }
    if (!*granted) {
        AVIARY_ASSERT(prior->has_value(), "only a holder refuses a lease");
        return LeaseAttempt{.granted = false, .lease = **prior, .lapsed = std::nullopt};
    }
    return record_grant(db, request, *prior, std::move(**granted));
}

core::Result<std::optional<core::Lease>> release(Connection& db, const ReleaseRequest& request) {
    std::string_view actor = request.actor.empty() ? request.owner : request.actor;
    auto remove = db.prepare(kDeleteHeldLease);
    if (!remove) {
        return remove.error();
    }
    remove->bind_all(request.node, request.now, request.owner);
    auto ended = at_most_one(collect_leases(*remove));
    if (!ended) {
        return ended;
    }
    if (*ended) {
        if (auto recorded = record(db, request.now, actor, request.kind, &**ended, nullptr);
            !recorded) {
            return recorded.error();
        }
        return ended;
    }
    return explain_unreleased(db, request, actor);
}

core::Result<std::vector<core::Lease>> expire_leases(Connection& db, core::TimePoint now) {
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
    std::sort(expired->begin(), expired->end(),
              [](const auto& a, const auto& b) { return a.node < b.node; });
    for (const auto& lease : *expired) {
        if (auto recorded = record(db, now, kSystemActor, "lease.expired", &lease, nullptr);
            !recorded) {
            return recorded.error();
        }
    }
    return expired;
}

core::Result<std::optional<core::Lease>> end_lapsed_lease(Connection& db,
                                                          std::string_view node,
                                                          std::string_view actor,
                                                          core::TimePoint now) {
    auto remove = db.prepare(fmt::format(
        "DELETE FROM leases WHERE node = ?1 AND expires_at <= ?2 RETURNING {}", kLeaseColumns));
    if (!remove) {
        return remove.error();
    }
    remove->bind_all(node, now);
    auto ended = at_most_one(collect_leases(*remove));
    if (ended && *ended) {
        if (auto recorded = record(db, now, actor, "lease.expired", &**ended, nullptr); !recorded) {
            return recorded.error();
        }
    }
    return ended;
}

}  // namespace aviary::store::sqlite
