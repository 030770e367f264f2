// Producer leases. Every change is a conditional update on the row as it was read (its fence,
// its holder), so two instances of serve racing on one PostgreSQL cannot both take a lease: the
// second's update changes nothing and it answers with who holds the lease now.
#include "store/sql/producers.hpp"

#include <fmt/format.h>

#include <optional>

#include "store/sql/events.hpp"

namespace aviary::store::sql {
namespace {

constexpr std::string_view kColumns = "key, holder, fence, acquired_at, expires_at";

ProducerLease lease_from_row(const Statement& row) {
    return ProducerLease{.key = row.text(0),
                         .holder = row.text(1),
                         .fence = row.int64(2),
                         .acquired_at = row.time(3),
                         .expires_at = row.time(4)};
}

core::Result<std::optional<ProducerLease>> find(Connection& db, std::string_view key) {
    auto select =
        db.prepare(fmt::format("SELECT {} FROM producer_leases WHERE key = ?1", kColumns));
    if (!select) {
        return select.error();
    }
    select->bind_all(key);
    auto row = select->step();
    if (!row) {
        return row.error();
    }
    if (!*row) {
        return std::optional<ProducerLease>{};
    }
    return std::optional<ProducerLease>{lease_from_row(*select)};
}

std::string lease_json(const ProducerLease& lease) {
    return fmt::format(R"({{"key":"{}","holder":"{}","fence":{}}})", lease.key, lease.holder,
                       lease.fence);
}

core::Result<void> record(Connection& db,
                          std::string_view kind,
                          const ProducerLease& before,
                          const ProducerLease& after,
                          core::TimePoint now) {
    return append_event(db,
                        core::Event{.at = now,
                                    .actor = after.holder.empty() ? before.holder : after.holder,
                                    .kind = std::string{kind},
                                    .node = after.holder.empty() ? before.holder : after.holder,
                                    .before = lease_json(before),
                                    .after = lease_json(after)});
}

core::Error busy(const ProducerLease& lease) {
    return core::Error{core::ErrorCode::kBusy,
                       fmt::format("producer lease {} is held by {} (fence {}) until {}", lease.key,
                                   lease.holder, lease.fence, core::format_time(lease.expires_at))};
}

}  // namespace

core::Result<ProducerLease> claim_producer(Connection& db,
                                           std::string_view key,
                                           std::string_view holder,
                                           core::Millis ttl,
                                           core::TimePoint now) {
    if (key.empty() || holder.empty() || ttl <= core::Millis::zero()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           "a producer lease needs a key, a holder and a positive ttl"};
    }
    auto current = find(db, key);
    if (!current) {
        return current.error();
    }
    const ProducerLease taken{.key = std::string{key},
                              .holder = std::string{holder},
                              .fence = *current ? (*current)->fence + 1 : 1,
                              .acquired_at = now,
                              .expires_at = now + ttl};
    if (!*current) {
        auto insert = db.prepare(
            "INSERT INTO producer_leases (key, holder, fence, acquired_at, expires_at) "
            "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key) DO NOTHING");
        if (!insert) {
            return insert.error();
        }
        if (auto done = insert->bind_all(key, holder, taken.fence, now, taken.expires_at).run();
            !done) {
            return done.error();
        }
        if (db.changes() == 0) {
            auto raced = find(db, key);  // another instance inserted it first
            if (!raced) {
                return raced.error();
            }
            return busy(**raced);
        }
        if (auto recorded =
                record(db, "producer.acquired", ProducerLease{.key = taken.key}, taken, now);
            !recorded) {
            return recorded.error();
        }
        return taken;
    }
    const ProducerLease& held = **current;
    if (held.holder == holder) {
        auto renew = db.prepare(
            "UPDATE producer_leases SET expires_at = ?4 WHERE key = ?1 AND holder = ?2 AND "
            "fence = ?3");
        if (!renew) {
            return renew.error();
        }
        if (auto done = renew->bind_all(key, holder, held.fence, now + ttl).run(); !done) {
            return done.error();
        }
        if (db.changes() == 0) {
            return core::Error{core::ErrorCode::kBusy,
                               fmt::format("producer lease {} changed hands: try again", key)};
        }
        ProducerLease renewed = held;
        renewed.expires_at = now + ttl;
        return renewed;
    }
    if (!held.holder.empty() && held.expires_at > now) {
        return busy(held);
    }
    auto take = db.prepare(
        "UPDATE producer_leases SET holder = ?2, fence = ?3, acquired_at = ?4, expires_at = ?5 "
        "WHERE key = ?1 AND fence = ?6");
    if (!take) {
        return take.error();
    }
    if (auto done =
            take->bind_all(key, holder, taken.fence, now, taken.expires_at, held.fence).run();
        !done) {
        return done.error();
    }
    if (db.changes() == 0) {
        auto raced = find(db, key);
        if (!raced) {
            return raced.error();
        }
        return busy(**raced);
    }
    if (auto recorded = record(db, "producer.acquired", held, taken, now); !recorded) {
        return recorded.error();
    }
    return taken;
}

core::Result<void> release_producer(Connection& db,
                                    std::string_view key,
                                    std::string_view holder,
                                    std::int64_t fence,
                                    core::TimePoint now) {
    auto current = find(db, key);
    if (!current) {
        return current.error();
    }
    if (!*current || (*current)->holder != holder || (*current)->fence != fence) {
        return core::Error{
            core::ErrorCode::kNotOwner,
            !*current ? fmt::format("producer lease {} was never taken", key)
            : (*current)->holder.empty()
                ? fmt::format("producer lease {} is free already (fence {})", key,
                              (*current)->fence)
                : fmt::format("producer lease {} is held by {} with fence {}, not by {} with {}",
                              key, (*current)->holder, (*current)->fence, holder, fence)};
    }
    auto release = db.prepare(
        "UPDATE producer_leases SET holder = '', expires_at = ?4 "
        "WHERE key = ?1 AND holder = ?2 AND fence = ?3");
    if (!release) {
        return release.error();
    }
    if (auto done = release->bind_all(key, holder, fence, now).run(); !done) {
        return done.error();
    }
    ProducerLease after = **current;
    after.holder.clear();
    after.expires_at = now;
    return record(db, "producer.released", **current, after, now);
}

core::Result<std::vector<ProducerLease>> select_producers(Connection& db) {
    auto select = db.prepare(fmt::format("SELECT {} FROM producer_leases ORDER BY key", kColumns));
    if (!select) {
        return select.error();
    }
    return select->rows(lease_from_row);
}

}  // namespace aviary::store::sql
