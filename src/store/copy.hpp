#pragma once
// `aviary store copy`: moves a deployment's state from its SQLite store to PostgreSQL, for a
// team that outgrows one machine (docs/scaling.md, "Moving to PostgreSQL").
#include <cstdint>
#include <string>
#include <vector>

#include "core/core.hpp"
#include "store/store.hpp"

namespace aviary::store {

struct CopyOptions {
    /// Empties the destination's tables first (in the same transaction) instead of refusing a
    /// destination that holds rows.
    bool replace = false;
};

/// What a copy moved: each table's rows in the order they were copied, counted in the source's
/// snapshot and again in the destination before the commit (the two agree, or nothing is
/// committed).
struct CopyReport {
    struct Table {
        std::string name;
        std::int64_t rows = 0;
    };
    std::vector<Table> tables;
    int schema_version = 0;
};

/// Copies every table of the SQLite store `from` (driver "sqlite", its path) into the
/// PostgreSQL store `to` (driver "postgres", its url and password) in one transaction: nodes,
/// leases, waiters, jobs with their output, events, the annotation outbox, paused queues and
/// worker ids. Both are migrated to this build's schema first. The source is read in one
/// snapshot, so a serve still writing to it loses what it writes after; instances and leaders
/// are each instance's own and are not copied. A destination that holds rows is refused
/// unless `options.replace`.
core::Result<CopyReport> copy(const Settings& from, const Settings& to, const CopyOptions& options);

}  // namespace aviary::store
