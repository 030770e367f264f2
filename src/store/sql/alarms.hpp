#pragma once
// Private to src/store: alarms, their notification outbox and silences (docs/probes.md,
// "Alarms"), the same SQL on both backends.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/sql/connection.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

core::Result<std::vector<AlarmState>> select_alarm_states(Connection& db);
core::Result<bool> write_alarm(Connection& db,
                               const AlarmState& next,
                               std::int64_t seen_version,
                               const std::vector<AlarmNotification>& notifications,
                               const std::vector<core::Event>& events);
core::Result<std::int64_t> forget_alarms(Connection& db, const std::vector<std::string>& keep);
core::Result<std::vector<AlarmNotification>> select_due_alarm_notifications(Connection& db,
                                                                            core::TimePoint now,
                                                                            int limit);
core::Result<std::optional<core::TimePoint>> select_next_alarm_notification_at(Connection& db);
core::Result<void> alarm_notification_done(Connection& db,
                                           std::int64_t id,
                                           std::string_view outcome,
                                           std::string_view error,
                                           core::TimePoint now);
core::Result<void> alarm_notification_failed(Connection& db,
                                             std::int64_t id,
                                             std::string_view error,
                                             core::TimePoint next_attempt_at);
core::Result<std::vector<AlarmNotification>> select_alarm_notifications(Connection& db, int limit);
core::Result<std::int64_t> count_alarm_backlog(Connection& db);
core::Result<void> insert_silence(Connection& db, const Silence& silence, core::TimePoint now);
core::Result<std::vector<Silence>> select_silences(Connection& db, core::TimePoint now, bool ended);
core::Result<Silence> expire_silence(Connection& db,
                                     std::string_view id,
                                     std::string_view actor,
                                     core::TimePoint now);
core::Result<std::int64_t> delete_alarm_history(Connection& db, core::TimePoint before);

}  // namespace aviary::store::sql
