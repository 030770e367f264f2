#include "store/sql/events.hpp"

#include <algorithm>
#include <string>

namespace aviary::store::sql {
namespace {

constexpr int kMaxEventsPerPage = 1000;

// Only the filters in use go into the SQL, so SQLite can pick the (node, id) or (at) index;
// each shape is prepared once and cached by its text.
std::string events_sql(const EventQuery& query) {
    std::string sql = "SELECT id, at, actor, kind, node, before, after FROM events WHERE 1 = 1";
    int param = 0;
    if (!query.node.empty()) {
        sql += " AND node = ?" + std::to_string(++param);
    }
    if (query.since) {
        sql += " AND at >= ?" + std::to_string(++param);
    }
    if (query.before_id) {
        sql += " AND id < ?" + std::to_string(++param);
    }
    if (query.after_id) {
        sql += " AND id > ?" + std::to_string(++param);
    }
    sql += query.after_id ? " ORDER BY id LIMIT ?" : " ORDER BY id DESC LIMIT ?";
    sql += std::to_string(++param);
    return sql;
}

void bind_filters(Statement& select, const EventQuery& query) {
    int param = 0;
    if (!query.node.empty()) {
        select.bind(++param, query.node);
    }
    if (query.since) {
        select.bind(++param, *query.since);
    }
    if (query.before_id) {
        select.bind(++param, *query.before_id);
    }
    if (query.after_id) {
        select.bind(++param, *query.after_id);
    }
    select.bind(++param, std::int64_t{std::clamp(query.limit, 1, kMaxEventsPerPage)});
}

core::Event event_from_row(const Statement& row) {
    return core::Event{.id = row.int64(0),
                       .at = row.time(1),
                       .actor = row.text(2),
                       .kind = row.text(3),
                       .node = row.text(4),
                       .before = row.text(5),
                       .after = row.text(6)};
}

}  // namespace

core::Result<void> append_event(Connection& db, const core::Event& event) {
    auto insert = db.prepare(
        "INSERT INTO events (at, actor, kind, node, before, after) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (!insert) {
        return insert.error();
    }
    return insert
        ->bind_all(event.at, event.actor, event.kind, event.node, event.before, event.after)
        .run();
}

core::Result<std::vector<core::Event>> select_events(Connection& db, const EventQuery& query) {
    auto select = db.prepare(events_sql(query));
    if (!select) {
        return select.error();
    }
    bind_filters(*select, query);
    return select->rows(event_from_row);
}

core::Result<std::int64_t> delete_events_before(Connection& db, core::TimePoint before) {
    auto remove = db.prepare("DELETE FROM events WHERE at < ?1");
    if (!remove) {
        return remove.error();
    }
    if (auto done = remove->bind_all(before).run(); !done) {
        return done.error();
    }
    return db.changes();
}

}  // namespace aviary::store::sql
