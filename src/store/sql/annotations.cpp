#include "store/sql/annotations.hpp"

#include <fmt/format.h>

#include <string>
#include <utility>

#include "store/sql/encoding.hpp"

namespace aviary::store::sql {
namespace {

/// Started, with a post or a patch still to make: the partial index annotations_pending holds
/// exactly these rows, so the sender's reads never touch the history.
constexpr std::string_view kPending =
    "time IS NOT NULL AND (remote_id IS NULL OR (time_end IS NOT NULL AND end_sent = 0))";

constexpr std::string_view kColumns =
    "job_id, node, action, text, tags, time, time_end, outcome, error, remote_id, end_sent, "
    "post_in_doubt, attempts, next_attempt_at, last_error";

core::Result<Annotation> read_annotation(const Statement& row) {
    auto tags = strings_from_json_array(row.text(4));
    if (!tags) {
        return tags.error();
    }
    Annotation out{.job_id = row.text(0),
                   .node = row.text(1),
                   .action = row.text(2),
                   .text = row.text(3),
                   .tags = std::move(*tags),
                   .time = row.time(5),
                   .outcome = row.text(7),
                   .error = row.text(8),
                   .end_sent = row.int64(10) != 0,
                   .post_in_doubt = row.int64(11) != 0,
                   .attempts = static_cast<int>(row.int64(12)),
                   .next_attempt_at = row.time(13),
                   .last_error = row.text(14)};
    if (!row.is_null(6)) {
        out.time_end = row.time(6);
    }
    if (!row.is_null(9)) {
        out.remote_id = row.int64(9);
    }
    return out;
}

}  // namespace

core::Result<void> insert_annotation(Connection& db, const core::Job& job) {
    if (!job.annotation) {
        return {};
    }
    auto insert = db.prepare(
        "INSERT INTO annotations (job_id, node, action, text, tags) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!insert) {
        return insert.error();
    }
    return insert
        ->bind_all(job.id, job.node, job.action, job.annotation->text,
                   strings_to_json_array(job.annotation->tags))
        .run();
}

core::Result<void> mark_annotation_started(Connection& db,
                                           std::string_view job_id,
                                           core::TimePoint now) {
    auto update = db.prepare(
        "UPDATE annotations SET time = ?2, next_attempt_at = ?2 "
        "WHERE job_id = ?1 AND time IS NULL");
    if (!update) {
        return update.error();
    }
    return update->bind_all(job_id, now).run();
}

core::Result<void> mark_annotation_ended(Connection& db,
                                         std::string_view job_id,
                                         core::JobState outcome,
                                         std::string_view error,
                                         core::TimePoint now) {
    auto drop = db.prepare("DELETE FROM annotations WHERE job_id = ?1 AND time IS NULL");
    if (!drop) {
        return drop.error();
    }
    if (auto done = drop->bind_all(job_id).run(); !done) {
        return done;
    }
    auto update = db.prepare(
        "UPDATE annotations SET time_end = ?2, outcome = ?3, error = ?4 "
        "WHERE job_id = ?1 AND time_end IS NULL");
    if (!update) {
        return update.error();
    }
    return update->bind_all(job_id, now, core::to_string(outcome), error).run();
}

core::Result<void> prune_annotations(Connection& db) {
    static const std::string sql = fmt::format(
        "DELETE FROM annotations WHERE NOT ({}) "
        "AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = annotations.job_id)",
        kPending);
    auto remove = db.prepare(sql);
    if (!remove) {
        return remove.error();
    }
    return remove->run();
}

core::Result<std::vector<Annotation>> select_due_annotations(Connection& db,
                                                             core::TimePoint now,
                                                             int limit) {
    static const std::string sql = fmt::format(
        "SELECT {} FROM annotations WHERE {} AND next_attempt_at <= ?1 "
        "ORDER BY time, job_id LIMIT ?2",
        kColumns, kPending);
    auto select = db.prepare(sql);
    if (!select) {
        return select.error();
    }
    select->bind_all(now, std::int64_t{std::clamp(limit, 1, 1000)});
    std::vector<Annotation> out;
    for (;;) {
        auto row = select->step();
        if (!row) {
            return row.error();
        }
        if (!*row) {
            return out;
        }
        auto annotation = read_annotation(*select);
        if (!annotation) {
            return annotation.error();
        }
        out.push_back(std::move(*annotation));
    }
}

core::Result<std::optional<core::TimePoint>> select_next_annotation_at(Connection& db) {
    static const std::string sql =
        fmt::format("SELECT min(next_attempt_at) FROM annotations WHERE {}", kPending);
    auto select = db.prepare(sql);
    if (!select) {
        return select.error();
    }
    return optional_time(*select);
}

core::Result<void> set_annotation_posting(Connection& db, std::string_view job_id) {
    auto update = db.prepare("UPDATE annotations SET post_in_doubt = 1 WHERE job_id = ?1");
    if (!update) {
        return update.error();
    }
    if (auto done = update->bind_all(job_id).run(); !done) {
        return done;
    }
    if (db.changes() == 0) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("no annotation for job {}", job_id)};
    }
    return {};
}

core::Result<void> set_annotation_sent(Connection& db, const AnnotationSent& sent) {
    auto update = db.prepare(
        "UPDATE annotations SET remote_id = coalesce(?2, remote_id), "
        "end_sent = CASE WHEN ?3 = 1 THEN 1 ELSE end_sent END, post_in_doubt = 0, attempts = 0, "
        "last_error = '' "
        "WHERE job_id = ?1");
    if (!update) {
        return update.error();
    }
    if (auto done =
            update->bind_all(sent.job_id, sent.remote_id, std::int64_t{sent.end_sent}).run();
        !done) {
        return done;
    }
    if (db.changes() == 0) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("no annotation for job {}", sent.job_id)};
    }
    return {};
}

core::Result<void> set_annotation_failed(Connection& db,
                                         std::string_view job_id,
                                         std::string_view error,
                                         core::TimePoint next_attempt_at) {
    auto update = db.prepare(
        "UPDATE annotations SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 "
        "WHERE job_id = ?1");
    if (!update) {
        return update.error();
    }
    return update->bind_all(job_id, error, next_attempt_at).run();
}

core::Result<std::int64_t> count_annotation_backlog(Connection& db) {
    static const std::string sql =
        fmt::format("SELECT count(*) FROM annotations WHERE {}", kPending);
    auto select = db.prepare(sql);
    if (!select) {
        return select.error();
    }
    auto row = select->step();
    if (!row) {
        return row.error();
    }
    return *row ? select->int64(0) : std::int64_t{0};
}

}  // namespace aviary::store::sql
