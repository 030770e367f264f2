// Alarms (docs/probes.md, "Alarms"). An alarm's row is written by a compare-and-set on its
// version, and the notifications and events of that change go in the same transaction: a
// notification is queued exactly when the state it tells of is committed.
#include "store/sql/alarms.hpp"

#include <fmt/format.h>

#include <string>

#include "store/sql/encoding.hpp"
#include "store/sql/events.hpp"

namespace aviary::store::sql {
namespace {

constexpr std::string_view kAlarmColumns =
    "name, rule, scenario, state, since, pending_since, clear_since, summary, silenced_by, "
    "notified, notified_at, evaluated_at, version";

constexpr std::string_view kNotificationColumns =
    "id, alarm, rule, scenario, notifier, kind, summary, link, at, since, attempts, "
    "next_attempt_at, last_error, outcome, done_at";

/// Silences in force at once, at most: an operator's tool, not a store of rows.
constexpr std::int64_t kMaxActiveSilences = 1000;

constexpr std::string_view kSilenceColumns = "id, matcher, reason, created_by, starts_at, ends_at";

std::optional<core::TimePoint> maybe_time(const Statement& row, int column) {
    if (row.is_null(column)) {
        return std::nullopt;
    }
    return row.time(column);
}

AlarmState alarm_from_row(const Statement& row) {
    return AlarmState{.name = row.text(0),
                      .rule = row.text(1),
                      .scenario = row.text(2),
                      .state = row.text(3),
                      .since = row.time(4),
                      .pending_since = maybe_time(row, 5),
                      .clear_since = maybe_time(row, 6),
                      .summary = row.text(7),
                      .silenced_by = row.text(8),
                      .notified = row.text(9),
                      .notified_at = row.time(10),
                      .evaluated_at = row.time(11),
                      .version = row.int64(12)};
}

AlarmNotification notification_from_row(const Statement& row) {
    return AlarmNotification{.id = row.int64(0),
                             .alarm = row.text(1),
                             .rule = row.text(2),
                             .scenario = row.text(3),
                             .notifier = row.text(4),
                             .kind = row.text(5),
                             .summary = row.text(6),
                             .link = row.text(7),
                             .at = row.time(8),
                             .since = row.time(9),
                             .attempts = static_cast<int>(row.int64(10)),
                             .next_attempt_at = row.time(11),
                             .last_error = row.text(12),
                             .outcome = row.text(13),
                             .done_at = maybe_time(row, 14)};
}

Silence silence_from_row(const Statement& row) {
    return Silence{.id = row.text(0),
                   .matcher = row.text(1),
                   .reason = row.text(2),
                   .created_by = row.text(3),
                   .starts_at = row.time(4),
                   .ends_at = row.time(5)};
}

std::string silence_json(const Silence& s) {
    return labels_to_json(core::Labels{{"id", s.id},
                                       {"matcher", s.matcher},
                                       {"reason", s.reason},
                                       {"ends_at", core::format_time(s.ends_at)}});
}

core::Result<std::optional<Silence>> find_silence(Connection& db, std::string_view id) {
    auto select = db.prepare(fmt::format("SELECT {} FROM silences WHERE id = ?1", kSilenceColumns));
    if (!select) {
        return select.error();
    }
    select->bind_all(id);
    auto row = select->step();
    if (!row) {
        return row.error();
    }
    if (!*row) {
        return std::optional<Silence>{};
    }
    return std::optional<Silence>{silence_from_row(*select)};
}

}  // namespace

core::Result<std::vector<AlarmState>> select_alarm_states(Connection& db) {
    auto select = db.prepare(fmt::format("SELECT {} FROM alarms ORDER BY name", kAlarmColumns));
    if (!select) {
        return select.error();
    }
    return select->rows(alarm_from_row);
}

core::Result<bool> write_alarm(Connection& db,
                               const AlarmState& next,
                               std::int64_t seen_version,
                               const std::vector<AlarmNotification>& notifications,
                               const std::vector<core::Event>& events) {
    const std::int64_t version = seen_version + 1;
    if (seen_version == 0) {
        auto insert = db.prepare(fmt::format(
            "INSERT INTO alarms ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
            "?13) ON CONFLICT (name) DO NOTHING",
            kAlarmColumns));
        if (!insert) {
            return insert.error();
        }
        auto done =
            insert
                ->bind_all(next.name, next.rule, next.scenario, next.state, next.since,
                           next.pending_since, next.clear_since, next.summary, next.silenced_by,
                           next.notified, next.notified_at, next.evaluated_at, version)
                .run();
        if (!done) {
            return done.error();
        }
    } else {
        auto update = db.prepare(
            "UPDATE alarms SET state = ?3, since = ?4, pending_since = ?5, clear_since = ?6, "
            "summary = ?7, silenced_by = ?8, notified = ?9, notified_at = ?10, "
            "evaluated_at = ?11, version = ?12 WHERE name = ?1 AND version = ?2");
        if (!update) {
            return update.error();
        }
        auto done =
            update
                ->bind_all(next.name, seen_version, next.state, next.since, next.pending_since,
                           next.clear_since, next.summary, next.silenced_by, next.notified,
                           next.notified_at, next.evaluated_at, version)
                .run();
        if (!done) {
            return done.error();
        }
    }
    if (db.changes() != 1) {
        return false;
    }
    for (const auto& n : notifications) {
        auto insert = db.prepare(
            "INSERT INTO alarm_notifications (alarm, rule, scenario, notifier, kind, summary, "
            "link, at, since, attempts, next_attempt_at, last_error, outcome) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?8, '', '')");
        if (!insert) {
            return insert.error();
        }
        auto done = insert
                        ->bind_all(n.alarm, n.rule, n.scenario, n.notifier, n.kind, n.summary,
                                   n.link, n.at, n.since)
                        .run();
        if (!done) {
            return done.error();
        }
    }
    for (const auto& event : events) {
        if (auto appended = append_event(db, event); !appended) {
            return appended.error();
        }
    }
    return true;
}

core::Result<std::int64_t> forget_alarms(Connection& db, const std::vector<std::string>& keep) {
    // Their notifications stay: what was raised is still told (a "resolved" among them).
    const auto kept = strings_to_json_array(keep);
    auto alarms = db.prepare(fmt::format("DELETE FROM alarms WHERE name NOT IN ({})",
                                         json_array_values(db.dialect(), 1)));
    if (!alarms) {
        return alarms.error();
    }
    if (auto done = alarms->bind_all(kept).run(); !done) {
        return done.error();
    }
    return db.changes();
}

core::Result<std::vector<AlarmNotification>> select_due_alarm_notifications(Connection& db,
                                                                            core::TimePoint now,
                                                                            int limit) {
    // In order per alarm and notifier: one waiting out its backoff holds back the later ones,
    // so a receiver never hears "resolved" before the "firing" it resolves.
    auto select = db.prepare(fmt::format(
        "SELECT {} FROM alarm_notifications a WHERE outcome = '' AND next_attempt_at <= ?1 AND "
        "NOT EXISTS (SELECT 1 FROM alarm_notifications o WHERE o.outcome = '' AND "
        "o.alarm = a.alarm AND o.notifier = a.notifier AND o.id < a.id) "
        "ORDER BY next_attempt_at, id LIMIT ?2",
        kNotificationColumns));
    if (!select) {
        return select.error();
    }
    return select->bind_all(now, std::int64_t{limit}).rows(notification_from_row);
}

core::Result<std::optional<core::TimePoint>> select_next_alarm_notification_at(Connection& db) {
    auto select =
        db.prepare("SELECT min(next_attempt_at) FROM alarm_notifications WHERE outcome = ''");
    if (!select) {
        return select.error();
    }
    return optional_time(*select);
}

core::Result<void> alarm_notification_done(Connection& db,
                                           std::int64_t id,
                                           std::string_view outcome,
                                           std::string_view error,
                                           core::TimePoint now) {
    auto update = db.prepare(
        "UPDATE alarm_notifications SET outcome = ?2, last_error = ?3, done_at = ?4 "
        "WHERE id = ?1");
    if (!update) {
        return update.error();
    }
    return update->bind_all(id, outcome, error, now).run();
}

core::Result<void> alarm_notification_failed(Connection& db,
                                             std::int64_t id,
                                             std::string_view error,
                                             core::TimePoint next_attempt_at) {
    auto update = db.prepare(
        "UPDATE alarm_notifications SET attempts = attempts + 1, last_error = ?2, "
        "next_attempt_at = ?3 WHERE id = ?1");
    if (!update) {
        return update.error();
    }
    return update->bind_all(id, error, next_attempt_at).run();
}

core::Result<std::vector<AlarmNotification>> select_alarm_notifications(Connection& db, int limit) {
    auto select = db.prepare(fmt::format(
        "SELECT {} FROM alarm_notifications ORDER BY id DESC LIMIT ?1", kNotificationColumns));
    if (!select) {
        return select.error();
    }
    return select->bind_all(std::int64_t{limit}).rows(notification_from_row);
}

core::Result<std::int64_t> count_alarm_backlog(Connection& db) {
    auto select = db.prepare("SELECT count(*) FROM alarm_notifications WHERE outcome = ''");
    if (!select) {
        return select.error();
    }
    auto row = select->step();
    if (!row) {
        return row.error();
    }
    return *row ? select->int64(0) : 0;
}

core::Result<void> insert_silence(Connection& db, const Silence& silence, core::TimePoint now) {
    auto found = find_silence(db, silence.id);
    if (!found) {
        return found.error();
    }
    if (*found) {
        return core::Error{core::ErrorCode::kAlreadyExists,
                           fmt::format("silence \"{}\" exists", silence.id)};
    }
    // Bounded in the transaction that adds one, so two racing adds cannot pass the cap.
    auto active = db.prepare("SELECT count(*) FROM silences WHERE ends_at > ?1");
    if (!active) {
        return active.error();
    }
    active->bind_all(now);
    auto counted = active->step();
    if (!counted) {
        return counted.error();
    }
    const std::int64_t in_force = *counted ? active->int64(0) : 0;
    if (in_force >= kMaxActiveSilences) {
        return core::Error{core::ErrorCode::kBusy,
                           fmt::format("{} silences are in force, the most there may be: end one "
                                       "first (DELETE /api/v1/silences/ID)",
                                       kMaxActiveSilences)};
    }
    auto insert = db.prepare(
        fmt::format("INSERT INTO silences ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", kSilenceColumns));
    if (!insert) {
        return insert.error();
    }
    auto done = insert
                    ->bind_all(silence.id, silence.matcher, silence.reason, silence.created_by,
                               silence.starts_at, silence.ends_at)
                    .run();
    if (!done) {
        return done;
    }
    return append_event(db, core::Event{.at = now,
                                        .actor = silence.created_by,
                                        .kind = "silence.added",
                                        .after = silence_json(silence)});
}

core::Result<std::vector<Silence>> select_silences(Connection& db,
                                                   core::TimePoint now,
                                                   bool ended) {
    auto select = db.prepare(fmt::format(
        "SELECT {} FROM silences WHERE ?2 = 1 OR ends_at > ?1 ORDER BY starts_at DESC, id",
        kSilenceColumns));
    if (!select) {
        return select.error();
    }
    return select->bind_all(now, std::int64_t{ended}).rows(silence_from_row);
}

core::Result<Silence> expire_silence(Connection& db,
                                     std::string_view id,
                                     std::string_view actor,
                                     core::TimePoint now) {
    auto found = find_silence(db, id);
    if (!found) {
        return found.error();
    }
    if (!*found) {
        return core::Error{core::ErrorCode::kNotFound, fmt::format("no silence \"{}\"", id)};
    }
    auto before = **found;
    if (before.ends_at <= now) {
        return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("silence \"{}\" ended at {}", id, core::format_time(before.ends_at))};
    }
    auto update = db.prepare("UPDATE silences SET ends_at = ?2 WHERE id = ?1");
    if (!update) {
        return update.error();
    }
    if (auto done = update->bind_all(id, now).run(); !done) {
        return done.error();
    }
    auto after = before;
    after.ends_at = now;
    auto appended = append_event(db, core::Event{.at = now,
                                                 .actor = std::string{actor},
                                                 .kind = "silence.expired",
                                                 .before = silence_json(before),
                                                 .after = silence_json(after)});
    if (!appended) {
        return appended.error();
    }
    return after;
}

core::Result<std::int64_t> delete_alarm_history(Connection& db, core::TimePoint before) {
    auto sent = db.prepare("DELETE FROM alarm_notifications WHERE outcome <> '' AND done_at < ?1");
    if (!sent) {
        return sent.error();
    }
    if (auto done = sent->bind_all(before).run(); !done) {
        return done.error();
    }
    auto deleted = db.changes();
    auto silences = db.prepare("DELETE FROM silences WHERE ends_at < ?1");
    if (!silences) {
        return silences.error();
    }
    if (auto done = silences->bind_all(before).run(); !done) {
        return done.error();
    }
    return deleted + db.changes();
}

}  // namespace aviary::store::sql
