// The jobs' output lines and the paused queues: the parts of jobs.hpp around the job rows.
#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "store/sql/encoding.hpp"
#include "store/sql/events.hpp"
#include "store/sql/jobs.hpp"

namespace aviary::store::sql {
namespace {

constexpr int kMaxLinesPerPage = 10000;

core::Result<void> check_job(Connection& db, std::string_view id) {
    auto found = row_exists(db, "SELECT 1 FROM jobs WHERE id = ?1", id);
    if (!found) {
        return found.error();
    }
    if (!*found) {
        return job_not_found(id);
    }
    return {};
}

// The range is always bound (open ends as the int64 limits), so each direction is one cached
// statement and one range scan of the primary key.
constexpr std::string_view kOldestFirst =
    "SELECT seq, at, stream, text, attempt, step FROM job_output "
    "WHERE job_id = ?1 AND seq > ?2 AND seq < ?3 ORDER BY seq LIMIT ?4";
constexpr std::string_view kNewestFirst =
    "SELECT seq, at, stream, text, attempt, step FROM job_output "
    "WHERE job_id = ?1 AND seq > ?2 AND seq < ?3 ORDER BY seq DESC LIMIT ?4";

core::OutputLine line_from_row(const Statement& row) {
    return core::OutputLine{.seq = row.int64(0),
                            .at = row.time(1),
                            .stream = row.text(2),
                            .text = row.text(3),
                            .attempt = static_cast<int>(row.int64(4)),
                            .step = static_cast<int>(row.int64(5))};
}

core::Result<void> record_queue(Connection& db,
                                std::string_view queue,
                                bool paused,
                                std::string_view actor,
                                core::TimePoint now) {
    return append_event(db, core::Event{.at = now,
                                        .actor = std::string{actor},
                                        .kind = paused ? "queue.paused" : "queue.resumed",
                                        .node = "",
                                        .before = queue_to_json(queue, !paused),
                                        .after = queue_to_json(queue, paused)});
}

}  // namespace

core::Result<void> append_job_output(Connection& db,
                                     std::string_view id,
                                     const std::vector<core::OutputLine>& lines) {
    if (lines.empty()) {
        return {};
    }
    // Checked once per batch: output of an unknown (or pruned) job would never be pruned.
    if (auto known = check_job(db, id); !known) {
        return known;
    }
    db.notify(change::kJob, id);
    for (const auto& line : lines) {
        auto insert = db.prepare(
            "INSERT INTO job_output (job_id, seq, at, stream, text, attempt, step) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
        if (!insert) {
            return insert.error();
        }
        auto done = insert
                        ->bind_all(id, line.seq, line.at, line.stream, line.text,
                                   std::int64_t{line.attempt}, std::int64_t{line.step})
                        .run();
        if (!done) {
            return done;
        }
    }
    return {};
}

core::Result<std::vector<core::OutputLine>> select_job_output(Connection& db,
                                                              const OutputQuery& query) {
    auto select = db.prepare(query.newest ? kNewestFirst : kOldestFirst);
    if (!select) {
        return select.error();
    }
    select->bind_all(query.job_id,
                     query.after_seq.value_or(std::numeric_limits<std::int64_t>::min()),
                     query.before_seq.value_or(std::numeric_limits<std::int64_t>::max()),
                     std::int64_t{std::clamp(query.limit, 1, kMaxLinesPerPage)});
    std::vector<core::OutputLine> lines;
    if (auto read = each_row(*select, [&](Statement& row) { lines.push_back(line_from_row(row)); });
        !read) {
        return read.error();
    }
    if (query.newest) {
        std::reverse(lines.begin(), lines.end());
    }
    return lines;
}

core::Result<std::int64_t> last_output_seq(Connection& db, std::string_view id) {
    auto select = db.prepare("SELECT coalesce(max(seq), 0) FROM job_output WHERE job_id = ?1");
    if (!select) {
        return select.error();
    }
    auto row = select->bind_all(id).step();
    if (!row) {
        return row.error();
    }
    return select->int64(0);
}

core::Result<void> delete_output_of_finished(Connection& db, core::TimePoint before) {
    // `state || ''` keeps SQLite on the finished_at index (the state index would scan every
    // finished job); it reads the same on PostgreSQL, which has no unary plus for text.
    static const std::string sql = fmt::format(
        "DELETE FROM job_output WHERE job_id IN "
        "(SELECT id FROM jobs WHERE finished_at < ?1 AND state || '' IN {})",
        kTerminalJobStates);
    auto remove = db.prepare(sql);
    if (!remove) {
        return remove.error();
    }
    return remove->bind_all(before).run();
}

core::Result<void> set_queue_paused(Connection& db,
                                    std::string_view queue,
                                    bool paused,
                                    std::string_view actor,
                                    core::TimePoint now) {
    if (queue.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument, "a queue needs a name"};
    }
    auto write = db.prepare(paused ? "INSERT INTO paused_queues (name, paused_at, actor) "
                                     "VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING"
                                   : "DELETE FROM paused_queues WHERE name = ?1");
    if (!write) {
        return write.error();
    }
    write->bind(1, queue);
    if (paused) {
        write->bind(2, now).bind(3, actor);
    }
    if (auto done = write->run(); !done) {
        return done;
    }
    if (db.changes() == 0) {
        return {};  // already in that state: nothing happened, nothing to record
    }
    if (!paused) {
        db.notify(change::kJobsQueued, "");
    }
    return record_queue(db, queue, paused, actor.empty() ? kSystemActor : actor, now);
}

core::Result<std::vector<std::string>> select_paused_queues(Connection& db) {
    auto select = db.prepare("SELECT name FROM paused_queues ORDER BY name");
    if (!select) {
        return select.error();
    }
    std::vector<std::string> names;
    while (true) {
        auto row = select->step();
        if (!row) {
            return row.error();
        }
        if (!*row) {
            return names;
        }
        names.push_back(select->text(0));
    }
}

}  // namespace aviary::store::sql
