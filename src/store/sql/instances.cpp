#include "store/sql/instances.hpp"

#include <fmt/format.h>

#include <optional>

#include "store/sql/events.hpp"

namespace aviary::store::sql {
namespace {

constexpr std::string_view kInstanceColumns = "name, run, host, pid, started_at, heartbeat_at";

InstanceRecord instance_from_row(const Statement& row) {
    return InstanceRecord{.name = row.text(0),
                          .run = row.text(1),
                          .host = row.text(2),
                          .pid = row.int64(3),
                          .started_at = row.time(4),
                          .heartbeat_at = row.time(5)};
}

core::Result<std::optional<InstanceRecord>> select_instance(Connection& db, std::string_view name) {
    static const std::string sql =
        fmt::format("SELECT {} FROM instances WHERE name = ?1", kInstanceColumns);
    auto select = db.prepare(sql);
    if (!select) {
        return select.error();
    }
    auto row = select->bind_all(name).step();
    if (!row) {
        return row.error();
    }
    if (!*row) {
        return std::optional<InstanceRecord>{};
    }
    return std::optional<InstanceRecord>{instance_from_row(*select)};
}

/// The run leading `duty` now (lapsed or not), or "" when nobody ever did.
core::Result<std::pair<std::string, std::string>> leader_of(Connection& db, std::string_view duty) {
    auto select = db.prepare("SELECT instance, run FROM leaders WHERE duty = ?1");
    if (!select) {
        return select.error();
    }
    auto row = select->bind_all(duty).step();
    if (!row) {
        return row.error();
    }
    if (!*row) {
        return std::pair<std::string, std::string>{};
    }
    return std::pair{select->text(0), select->text(1)};
}

}  // namespace

core::Result<void> join_instance(Connection& db,
                                 const InstanceRecord& instance,
                                 core::Millis stale_after,
                                 const std::function<bool(const InstanceRecord&)>& may_replace) {
    auto registered = select_instance(db, instance.name);
    if (!registered) {
        return registered.error();
    }
    if (*registered && (*registered)->run != instance.run &&
        instance.heartbeat_at - (*registered)->heartbeat_at < stale_after &&
        !may_replace(**registered)) {
        const auto& other = **registered;
        return core::Error{
            core::ErrorCode::kAlreadyExists,
            fmt::format("instance name \"{}\" is in use by a running instance (host {}, pid {}, "
                        "last heartbeat {}): give each instance its own server.instance",
                        instance.name, other.host, other.pid,
                        core::format_time(other.heartbeat_at))};
    }
    auto upsert = db.prepare(
        "INSERT INTO instances (name, run, host, pid, started_at, heartbeat_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO UPDATE SET run = excluded.run, "
        "host = excluded.host, pid = excluded.pid, started_at = excluded.started_at, "
        "heartbeat_at = excluded.heartbeat_at");
    if (!upsert) {
        return upsert.error();
    }
    return upsert
        ->bind_all(instance.name, instance.run, instance.host, instance.pid, instance.started_at,
                   instance.heartbeat_at)
        .run();
}

core::Result<bool> beat_instance(Connection& db,
                                 std::string_view instance,
                                 std::string_view run,
                                 std::string_view duty,
                                 core::TimePoint now,
                                 core::Millis lead_ttl) {
    auto beat = db.prepare("UPDATE instances SET heartbeat_at = ?3 WHERE name = ?1 AND run = ?2");
    if (!beat) {
        return beat.error();
    }
    if (auto done = beat->bind_all(instance, run, now).run(); !done) {
        return done.error();
    }
    if (db.changes() == 0) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("instance {} run {} is no longer registered: another run "
                                       "took its name",
                                       instance, run)};
    }
    if (duty.empty()) {
        return false;  // beats, leads nothing
    }
    auto before = leader_of(db, duty);
    if (!before) {
        return before.error();
    }
    // Takes a free or lapsed duty, or extends our own; a live leader's row is left alone.
    auto lead = db.prepare(
        "INSERT INTO leaders (duty, instance, run, expires_at) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT (duty) DO UPDATE SET instance = excluded.instance, run = excluded.run, "
        "expires_at = excluded.expires_at "
        "WHERE leaders.run = excluded.run OR leaders.expires_at <= ?5");
    if (!lead) {
        return lead.error();
    }
    if (auto done = lead->bind_all(duty, instance, run, now + lead_ttl, now).run(); !done) {
        return done.error();
    }
    bool leads = db.changes() > 0;
    if (leads && before->second != run) {
        auto recorded = append_event(
            db,
            core::Event{
                .at = now,
                .actor = std::string{instance},
                .kind = "leader.elected",
                .before = before->first.empty() ? std::string{"{}"}
                                                : fmt::format(R"({{"duty":"{}","instance":"{}"}})",
                                                              duty, before->first),
                .after = fmt::format(R"({{"duty":"{}","instance":"{}"}})", duty, instance)});
        if (!recorded) {
            return recorded.error();
        }
    }
    return leads;
}

core::Result<void> leave_instance(Connection& db, std::string_view instance, std::string_view run) {
    auto resign = db.prepare("DELETE FROM leaders WHERE instance = ?1 AND run = ?2");
    if (!resign) {
        return resign.error();
    }
    if (auto done = resign->bind_all(instance, run).run(); !done) {
        return done.error();
    }
    auto remove = db.prepare("DELETE FROM instances WHERE name = ?1 AND run = ?2");
    if (!remove) {
        return remove.error();
    }
    return remove->bind_all(instance, run).run();
}

core::Result<std::vector<InstanceRecord>> select_instances(Connection& db) {
    auto select = db.prepare(
        "SELECT i.name, i.run, i.host, i.pid, i.started_at, i.heartbeat_at, l.duty "
        "FROM instances AS i LEFT JOIN leaders AS l ON l.run = i.run "
        "ORDER BY i.name, l.duty");
    if (!select) {
        return select.error();
    }
    std::vector<InstanceRecord> out;
    while (true) {
        auto row = select->step();
        if (!row) {
            return row.error();
        }
        if (!*row) {
            return out;
        }
        if (out.empty() || out.back().name != select->text(0)) {
            out.push_back(instance_from_row(*select));
        }
        if (!select->is_null(6)) {
            out.back().leads.push_back(select->text(6));
        }
    }
}

}  // namespace aviary::store::sql
