#include "store/sql/waiters.hpp"

#include <fmt/format.h>

#include "store/sql/encoding.hpp"
#include "store/sql/events.hpp"
#include "store/sql/nodes.hpp"

namespace aviary::store::sql {
namespace {

constexpr std::string_view kWaiterColumns =
    "ticket, owner, reason, actor, node, selector, count, ttl_ms, exclusive, created_at, "
    "deadline, state, lease_id, instance";
constexpr std::string_view kWaiting = "waiting";
constexpr std::string_view kGranted = "granted";

core::Result<WaiterRecord> waiter_from_row(const Statement& row) {
    auto selector = labels_from_json(row.text(5));
    if (!selector) {
        return selector.error();
    }
    return WaiterRecord{
        .ticket = row.text(0),
        .request = LeaseRequest{.node = row.text(4),
                                .selector = std::move(*selector),
                                .count = static_cast<int>(row.int64(6)),
                                .owner = row.text(1),
                                .reason = row.text(2),
                                .actor = row.text(3),
                                .now = row.time(9),
                                .ttl = core::Millis{row.int64(7)},
                                .exclusive = row.int64(8) != 0},
        .deadline = row.time(10),
        .state = row.text(11) == kGranted ? WaiterState::kGranted : WaiterState::kWaiting,
        .lease_id = row.text(12),
        .instance = row.text(13)};
}

/// Waiters selected by `where` (parameters ?1, ?2... bound to `args`), in serving order.
template <class... Args>
core::Result<std::vector<WaiterRecord>> select_where(Connection& db,
                                                     std::string_view where,
                                                     const Args&... args) {
    auto select = db.prepare(
        fmt::format("SELECT {} FROM waiters WHERE {} ORDER BY seq", kWaiterColumns, where));
    if (!select) {
        return select.error();
    }
    select->bind_all(args...);
    std::vector<WaiterRecord> waiters;
    while (true) {
        auto row = select->step();
        if (!row) {
            return row.error();
        }
        if (!*row) {
            return waiters;
        }
        auto waiter = waiter_from_row(*select);
        if (!waiter) {
            return waiter.error();
        }
        waiters.push_back(std::move(*waiter));
    }
}

std::string_view actor_of(const LeaseRequest& request) {
    return request.actor.empty() ? request.owner : request.actor;
}

core::Result<void> record(Connection& db,
                          core::TimePoint at,
                          std::string_view actor,
                          std::string_view kind,
                          const WaiterRecord& before,
                          const WaiterRecord* after) {
    return append_event(db, core::Event{.at = at,
                                        .actor = std::string{actor},
                                        .kind = std::string{kind},
                                        .node = before.request.node,
                                        .before = waiter_to_json(before),
                                        .after = after != nullptr ? waiter_to_json(*after)
                                                                  : std::string{kNoState}});
}

core::Result<void> mark_granted(Connection& db,
                                const WaiterRecord& waiter,
                                const LeaseAttempt& attempt,
                                core::TimePoint now) {
    auto update = db.prepare(
        "UPDATE waiters SET state = 'granted', lease_id = ?2 WHERE ticket = ?1 "
        "AND state = 'waiting'");
    if (!update) {
        return update.error();
    }
    const auto& lease_id = attempt.leases.front().id;
    if (auto done = update->bind_all(waiter.ticket, lease_id).run(); !done) {
        return done;
    }
    AVIARY_ASSERT(db.changes() == 1, "a waiter is granted once, while waiting");
    WaiterRecord after = waiter;
    after.state = WaiterState::kGranted;
    after.lease_id = lease_id;
    return record(db, now, actor_of(waiter.request), "waiter.granted", waiter, &after);
}

core::Result<void> insert(Connection& db, const WaiterRecord& waiter) {
    const auto& request = waiter.request;
    auto insert = db.prepare(
        "INSERT INTO waiters (ticket, owner, reason, actor, node, selector, count, ttl_ms, "
        "exclusive, created_at, deadline, state, instance) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'waiting', ?12)");
    if (!insert) {
        return insert.error();
    }
    return insert
        ->bind_all(waiter.ticket, request.owner, request.reason, request.actor, request.node,
                   labels_to_json(request.selector), std::int64_t{request.count},
                   std::int64_t{request.ttl.count()}, std::int64_t{request.exclusive ? 1 : 0},
                   request.now, waiter.deadline, waiter.instance)
        .run();
}

core::Result<void> delete_waiter(Connection& db, std::string_view ticket) {
    auto remove = db.prepare("DELETE FROM waiters WHERE ticket = ?1");
    if (!remove) {
        return remove.error();
    }
    return remove->bind_all(ticket).run();
}

/// Fills in position: 1 + earlier waiters in `queue` that want any node this one could take.
void number(std::vector<WaiterRecord>& queue, const std::vector<core::Node>& pool) {
    std::vector<std::vector<std::string>> wanted;
    wanted.reserve(queue.size());
    for (auto& waiter : queue) {
        wanted.push_back(serving::candidates(waiter.request, pool));
        waiter.position = 1;
        for (std::size_t i = 0; i + 1 < wanted.size(); ++i) {
            if (serving::overlaps(wanted[i], wanted.back())) {
                ++waiter.position;
            }
        }
    }
}

core::Result<std::vector<WaiterRecord>> numbered_queue(Connection& db, core::TimePoint now) {
    auto queue = select_waiting(db, now);
    if (!queue || queue->empty()) {
        return queue;
    }
    auto pool = select_nodes(db, now);
    if (!pool) {
        return pool.error();
    }
    number(*queue, *pool);
    return queue;
}

}  // namespace

core::Result<std::vector<WaiterRecord>> select_waiting(Connection& db, core::TimePoint now) {
    return select_where(db, "state = ?1 AND deadline > ?2", kWaiting, now);
}

core::Result<void> serve(Connection& db,
                         serving::Plan& plan,
                         const std::vector<WaiterRecord>& queue,
                         core::TimePoint now,
                         Served& served) {
    for (const auto& waiter : queue) {
        auto nodes = plan.next(waiter.request);
        if (!nodes) {
            continue;
        }
        LeaseRequest request = waiter.request;
        request.now = now;  // the lease starts when it is granted, not when it queued
        auto attempt = grant(db, request, *nodes);
        if (!attempt) {
            return attempt.error();
        }
        if (auto marked = mark_granted(db, waiter, *attempt, now); !marked) {
            return marked;
        }
        served.push_back(WaiterGrant{.ticket = waiter.ticket,
                                     .leases = std::move(attempt->leases),
                                     .lapsed = std::move(attempt->lapsed)});
    }
    return {};
}

core::Result<void> serve_waiters(Connection& db, core::TimePoint now, Served& served) {
    auto queue = select_waiting(db, now);
    if (!queue) {
        return queue.error();
    }
    if (queue->empty()) {
        return {};
    }
    auto pool = select_nodes(db, now);
    if (!pool) {
        return pool.error();
    }
    serving::Plan plan{*pool};
    return serve(db, plan, *queue, now, served);
}

core::Result<std::variant<LeaseAttempt, WaiterRecord>> enqueue(Connection& db,
                                                               const WaiterRecord& waiter,
                                                               Served& served) {
    if (waiter.ticket.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument, "a waiter needs a ticket"};
    }
    if (waiter.deadline <= waiter.request.now) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("waiter {} has a deadline in the past", waiter.ticket)};
    }
    auto existing = select_where(db, "ticket = ?1", waiter.ticket);
    if (!existing) {
        return existing.error();
    }
    if (!existing->empty()) {
        return core::Error{core::ErrorCode::kAlreadyExists,
                           fmt::format("waiter {} already exists", waiter.ticket)};
    }
    // In the same operation: granted now, or queued behind everyone already waiting.
    auto attempt = try_lease(db, waiter.request, served);
    if (!attempt) {
        return attempt.error();
    }
    if (attempt->granted) {
        return std::variant<LeaseAttempt, WaiterRecord>{std::move(*attempt)};
    }
    if (auto inserted = insert(db, waiter); !inserted) {
        return inserted.error();
    }
    if (auto recorded = record(db, waiter.request.now, actor_of(waiter.request), "waiter.queued",
                               waiter, nullptr);
        !recorded) {
        return recorded.error();
    }
    auto queued = select_waiter(db, waiter.ticket, waiter.request.now);
    if (!queued) {
        return queued.error();
    }
    return std::variant<LeaseAttempt, WaiterRecord>{std::move(*queued)};
}

core::Result<std::optional<WaiterRecord>> cancel_waiter(Connection& db,
                                                        std::string_view ticket,
                                                        std::string_view actor,
                                                        core::TimePoint now,
                                                        Served& served) {
    auto found = select_where(db, "ticket = ?1", ticket);
    if (!found) {
        return found.error();
    }
    if (found->empty()) {
        return std::optional<WaiterRecord>{};
    }
    WaiterRecord waiter = std::move(found->front());
    if (actor.empty()) {
        actor = actor_of(waiter.request);  // its connection closed: the waiter gave up
    }
    if (auto removed = delete_waiter(db, ticket); !removed) {
        return removed.error();
    }
    if (waiter.state == WaiterState::kGranted) {
        // Served, but whoever waited is gone: nobody will use the lease.
        auto ended = end_lease(db, waiter.lease_id, actor, "lease.released", now);
        if (!ended) {
            return ended.error();
        }
    }
    if (auto recorded = record(db, now, actor, "waiter.cancelled", waiter, nullptr); !recorded) {
        return recorded.error();
    }
    // Its nodes are no longer held back (or were just released): the next in line may fit.
    if (auto done = serve_waiters(db, now, served); !done) {
        return done.error();
    }
    return std::optional<WaiterRecord>{std::move(waiter)};
}

core::Result<WaiterRecord> select_waiter(Connection& db,
                                         std::string_view ticket,
                                         core::TimePoint now) {
    auto found = select_where(db, "ticket = ?1", ticket);
    if (!found) {
        return found.error();
    }
    if (found->empty()) {
        return core::Error{core::ErrorCode::kNotFound, fmt::format("unknown waiter {}", ticket)};
    }
    WaiterRecord waiter = std::move(found->front());
    if (waiter.state == WaiterState::kWaiting && waiter.deadline > now) {
        auto queue = numbered_queue(db, now);
        if (!queue) {
            return queue.error();
        }
        for (const auto& queued : *queue) {
            if (queued.ticket == waiter.ticket) {
                waiter.position = queued.position;
            }
        }
    }
    return waiter;
}

core::Result<std::vector<WaiterRecord>> select_waiters(Connection& db, core::TimePoint now) {
    return numbered_queue(db, now);
}

core::Result<std::vector<WaiterRecord>> expire_waiters(Connection& db,
                                                       core::TimePoint now,
                                                       Served& served) {
    auto expired = select_where(db, "state = ?1 AND deadline <= ?2", kWaiting, now);
    if (!expired) {
        return expired;
    }
    for (const auto& waiter : *expired) {
        if (auto removed = delete_waiter(db, waiter.ticket); !removed) {
            return removed.error();
        }
        if (auto recorded = record(db, now, kSystemActor, "waiter.expired", waiter, nullptr);
            !recorded) {
            return recorded.error();
        }
    }
    // A granted row is kept while its lease lives, so a late cancel can still release it.
    auto forget = db.prepare(
        "DELETE FROM waiters WHERE state = 'granted' AND deadline <= ?1 AND NOT EXISTS "
        "(SELECT 1 FROM leases WHERE leases.id = waiters.lease_id AND leases.expires_at > ?1)");
    if (!forget) {
        return forget.error();
    }
    if (auto done = forget->bind_all(now).run(); !done) {
        return done.error();
    }
    if (!expired->empty()) {
        if (auto done = serve_waiters(db, now, served); !done) {
            return done.error();
        }
    }
    return expired;
}

core::Result<std::vector<WaiterRecord>> drop_waiters(Connection& db,
                                                     std::string_view instance,
                                                     std::string_view actor,
                                                     core::TimePoint now) {
    auto dropped = select_where(db, "state = ?1 AND instance = ?2", kWaiting, instance);
    if (!dropped) {
        return dropped;
    }
    for (const auto& waiter : *dropped) {
        if (auto recorded = record(db, now, actor, "waiter.dropped", waiter, nullptr); !recorded) {
            return recorded.error();
        }
    }
    auto remove = db.prepare("DELETE FROM waiters WHERE instance = ?1");
    if (!remove) {
        return remove.error();
    }
    if (auto cleared = remove->bind_all(instance).run(); !cleared) {
        return cleared.error();
    }
    return dropped;
}

}  // namespace aviary::store::sql
