#include "store/sql/workers.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <map>
#include <string>

#include "store/sql/encoding.hpp"
#include "store/sql/events.hpp"

namespace aviary::store::sql {
namespace {

std::string worker_to_json(const core::WorkerId& worker) {
    return boost::json::serialize(boost::json::object{
        {"worker_id", worker.id},
        {"machine", worker.machine},
    });
}

core::Result<void> check_workers(const std::vector<core::WorkerId>& workers) {
    std::map<std::string_view, int> seen;
    for (const auto& worker : workers) {
        if (worker.id.empty()) {
            return core::Error{core::ErrorCode::kInvalidArgument, "a worker id is empty"};
        }
        if (++seen[worker.id] > 1) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("worker id {} is listed twice", worker.id)};
        }
    }
    return {};
}

core::Result<void> record(Connection& db,
                          core::TimePoint now,
                          std::string_view actor,
                          std::string_view kind,
                          std::string_view machine,
                          std::string before,
                          std::string after) {
    return append_event(db, core::Event{.at = now,
                                        .actor = std::string{actor},
                                        .kind = std::string{kind},
                                        .node = std::string{machine},
                                        .before = std::move(before),
                                        .after = std::move(after)});
}

core::Result<void> run(Connection& db, std::string_view sql, const core::WorkerId& worker) {
    auto statement = db.prepare(sql);
    if (!statement) {
        return statement.error();
    }
    return statement->bind_all(worker.id, worker.machine).run();
}

}  // namespace

core::Result<void> reconcile_worker_ids(Connection& db,
                                        const std::vector<core::WorkerId>& workers,
                                        std::string_view actor,
                                        core::TimePoint now) {
    if (auto valid = check_workers(workers); !valid) {
        return valid;
    }
    auto stored = select_worker_ids(db);
    if (!stored) {
        return stored.error();
    }
    std::map<std::string, core::WorkerId, std::less<>> existing;
    for (auto& worker : *stored) {
        std::string id = worker.id;
        existing.emplace(std::move(id), std::move(worker));
    }
    for (const auto& worker : workers) {
        auto it = existing.find(worker.id);
        if (it == existing.end()) {
            if (auto done = run(db, "INSERT INTO worker_ids (id, machine) VALUES (?1, ?2)", worker);
                !done) {
                return done;
            }
            if (auto done = record(db, now, actor, "worker.added", worker.machine,
                                   std::string{kNoState}, worker_to_json(worker));
                !done) {
                return done;
            }
            continue;
        }
        if (it->second != worker) {
            if (auto done = run(db, "UPDATE worker_ids SET machine = ?2 WHERE id = ?1", worker);
                !done) {
                return done;
            }
            if (auto done = record(db, now, actor, "worker.updated", worker.machine,
                                   worker_to_json(it->second), worker_to_json(worker));
                !done) {
                return done;
            }
        }
        existing.erase(it);
    }
    for (const auto& [id, gone] : existing) {
        if (auto done = run(db, "DELETE FROM worker_ids WHERE id = ?1 AND machine = ?2", gone);
            !done) {
            return done;
        }
        if (auto done = record(db, now, actor, "worker.removed", gone.machine, worker_to_json(gone),
                               std::string{kNoState});
            !done) {
            return done;
        }
    }
    return {};
}

core::Result<std::vector<core::WorkerId>> select_worker_ids(Connection& db) {
    auto select = db.prepare("SELECT id, machine FROM worker_ids ORDER BY id");
    if (!select) {
        return select.error();
    }
    std::vector<core::WorkerId> workers;
    while (true) {
        auto row = select->step();
        if (!row) {
            return row.error();
        }
        if (!*row) {
            return workers;
        }
        workers.push_back(core::WorkerId{.id = select->text(0), .machine = select->text(1)});
    }
}

core::Result<core::WorkerId> select_worker_id(Connection& db, std::string_view id) {
    auto select = db.prepare("SELECT id, machine FROM worker_ids WHERE id = ?1");
    if (!select) {
        return select.error();
    }
    select->bind_all(id);
    auto row = select->step();
    if (!row) {
        return row.error();
    }
    if (!*row) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("worker id {} is not listed", id)};
    }
    return core::WorkerId{.id = select->text(0), .machine = select->text(1)};
}

}  // namespace aviary::store::sql
