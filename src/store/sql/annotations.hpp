#pragma once
// Private to src/store: the annotation outbox (see the "annotation outbox" section of
// store::Store). The job writes call the mark_* functions inside their own operation, so an
// annotation's start and end are written in the transaction that changes the job.
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "store/sql/connection.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

/// submit: the job's annotation, not yet due (no start). Nothing when it has none.
core::Result<void> insert_annotation(Connection& db, const core::Job& job);
/// A claim: the job's first start becomes the annotation's time (later attempts keep it).
core::Result<void> mark_annotation_started(Connection& db,
                                           std::string_view job_id,
                                           core::TimePoint now);
/// A terminal state: the end. A job that never started drops its annotation instead.
core::Result<void> mark_annotation_ended(Connection& db,
                                         std::string_view job_id,
                                         core::JobState outcome,
                                         std::string_view error,
                                         core::TimePoint now);
/// prune: annotations whose job is gone and that have nothing left to send.
core::Result<void> prune_annotations(Connection& db);

core::Result<std::vector<Annotation>> select_due_annotations(Connection& db,
                                                             core::TimePoint now,
                                                             int limit);
core::Result<std::optional<core::TimePoint>> select_next_annotation_at(Connection& db);
core::Result<void> set_annotation_posting(Connection& db, std::string_view job_id);
core::Result<void> set_annotation_sent(Connection& db, const AnnotationSent& sent);
core::Result<void> set_annotation_failed(Connection& db,
                                         std::string_view job_id,
                                         std::string_view error,
                                         core::TimePoint next_attempt_at);
core::Result<std::int64_t> count_annotation_backlog(Connection& db);

}  // namespace aviary::store::sql
