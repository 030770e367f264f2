#include "store/sqlite/migrations.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <span>
#include <string>
#include <vector>

namespace aviary::store::sqlite {
namespace {

struct Migration {
    int version;
    std::string_view name;
    core::Result<void> (*apply)(SqliteConnection& db);
};

// tests/fixtures/schema_v1.sql holds this text verbatim: an integration test loads it with the
// sqlite3 shell and expects the server to migrate it.
constexpr std::string_view kSchemaV1 = R"sql(
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    image_tag TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '{}',
    note TEXT NOT NULL DEFAULT '',
    maintenance_reason TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT 'config'
);
CREATE TABLE leases (
    node TEXT PRIMARY KEY REFERENCES nodes (name),
    owner TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    acquired_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    node TEXT NOT NULL DEFAULT '',
    before TEXT NOT NULL DEFAULT '{}',
    after TEXT NOT NULL DEFAULT '{}'
);
)sql";

core::Result<void> create_v1_tables(SqliteConnection& db) {
    return db.exec(kSchemaV1);
}

// Leases get an id so a renewal can be told from a new lease; rows written by v1 get one now
// (the id is made in C++, so this cannot be a plain UPDATE). SQLite cannot add a NOT NULL
// column without a default; every write since v2 sets it.
core::Result<void> add_lease_ids_and_event_indexes(SqliteConnection& db) {
    auto done = db.exec(R"sql(
ALTER TABLE leases ADD COLUMN id TEXT;
CREATE INDEX events_node_id ON events (node, id);
CREATE INDEX events_at ON events (at);
)sql");
    if (!done) {
        return done;
    }
    std::vector<std::string> nodes;
    {
        auto select = db.prepare("SELECT node FROM leases WHERE id IS NULL");
        if (!select) {
            return select.error();
        }
        for (auto row = select->step(); row && *row; row = select->step()) {
            nodes.push_back(select->text(0));
        }
    }
    for (const auto& node : nodes) {
        auto update = db.prepare("UPDATE leases SET id = ?1 WHERE node = ?2");
        if (!update) {
            return update.error();
        }
        if (auto updated = update->bind_all(core::new_id(), node).run(); !updated) {
            return updated;
        }
    }
    return {};
}

// Multi-node leases share an id (so it is looked up by id now) and may be exclusive. Waiters
// are rows, not memory, so every instance on a shared store serves one queue; `seq` is the
// serving order (created_at ties within a millisecond, and tickets are random past it).
// A waiter's node has no foreign key: the node may be removed while it waits.
constexpr std::string_view kSchemaV3 = R"sql(
ALTER TABLE leases ADD COLUMN exclusive INTEGER NOT NULL DEFAULT 0;
CREATE INDEX leases_id ON leases (id);
CREATE INDEX leases_expires_at ON leases (expires_at);
CREATE TABLE waiters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    actor TEXT NOT NULL DEFAULT '',
    node TEXT NOT NULL DEFAULT '',
    selector TEXT NOT NULL DEFAULT '{}',
    count INTEGER NOT NULL DEFAULT 1,
    ttl_ms INTEGER NOT NULL,
    exclusive INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'waiting',
    lease_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX waiters_state_seq ON waiters (state, seq);
)sql";

core::Result<void> add_exclusive_leases_and_waiters(SqliteConnection& db) {
    return db.exec(kSchemaV3);
}

// Jobs are rows so a restart finds what was queued and what was running (with its process
// group, to kill what a crash left). `seq` is store order: claims take the first runnable
// queued job, and per-node order among exclusive jobs is seq order. The job's node has no
// foreign key: history outlives a removed node. The unique_key index is partial and unique:
// at most one active job per key, while finished ones keep theirs for the record.
// Output is keyed by (job_id, seq) without a rowid: lines are read by range of one job.
constexpr std::string_view kSchemaV4 = R"sql(
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    queue TEXT NOT NULL DEFAULT 'default',
    node TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    requester TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    lease_id TEXT NOT NULL DEFAULT '',
    unique_key TEXT NOT NULL DEFAULT '',
    retry_of TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    exclusive INTEGER NOT NULL DEFAULT 1,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 1,
    steps INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    step_name TEXT NOT NULL DEFAULT '',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    run_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    heartbeat_at INTEGER,
    runner TEXT NOT NULL DEFAULT '',
    pgid INTEGER NOT NULL DEFAULT 0,
    pgid_start_ticks INTEGER NOT NULL DEFAULT 0,
    result TEXT NOT NULL DEFAULT '{}',
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX jobs_state_seq ON jobs (state, seq);
CREATE INDEX jobs_node_seq ON jobs (node, seq);
CREATE INDEX jobs_node_state_seq ON jobs (node, state, seq);
CREATE UNIQUE INDEX jobs_active_unique_key ON jobs (unique_key)
    WHERE unique_key <> '' AND state IN ('queued', 'running', 'cancelling');
CREATE INDEX jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE job_output (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    stream TEXT NOT NULL,
    text TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE paused_queues (
    name TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL,
    actor TEXT NOT NULL DEFAULT ''
);
)sql";

core::Result<void> add_jobs(SqliteConnection& db) {
    return db.exec(kSchemaV4);
}

// The annotation outbox: one row per job that asked for an annotation, written with the job and
// marked in the transactions that start and end it. `time` stays NULL until the first start;
// the partial index holds only rows with something left to send.
constexpr std::string_view kSchemaV5 = R"sql(
CREATE TABLE annotations (
    job_id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    action TEXT NOT NULL,
    text TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    time INTEGER,
    time_end INTEGER,
    outcome TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    remote_id INTEGER,
    end_sent INTEGER NOT NULL DEFAULT 0,
    post_in_doubt INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX annotations_pending ON annotations (next_attempt_at)
    WHERE time IS NOT NULL AND (remote_id IS NULL OR (time_end IS NOT NULL AND end_sent = 0));
)sql";

core::Result<void> add_annotations(SqliteConnection& db) {
    return db.exec(kSchemaV5);
}

// The image tag a node runs now, beside the configured one: set in the transaction that
// finishes a successful deploying job (install, upgrade), cleared by one that uninstalls.
constexpr std::string_view kSchemaV6 = R"sql(
ALTER TABLE nodes ADD COLUMN deployed_tag TEXT NOT NULL DEFAULT '';
)sql";

core::Result<void> add_deployed_tags(SqliteConnection& db) {
    return db.exec(kSchemaV6);
}

// Machines are nodes with a "machine" object (ssh and IPMI addresses, a PDU outlet; never a
// secret); an external scheduler's worker ids name the machine behind each one, or none yet.
constexpr std::string_view kSchemaV7 = R"sql(
ALTER TABLE nodes ADD COLUMN machine TEXT NOT NULL DEFAULT '';
CREATE TABLE worker_ids (
    id TEXT PRIMARY KEY,
    machine TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
)sql";

core::Result<void> add_machines(SqliteConnection& db) {
    return db.exec(kSchemaV7);
}

// Several instances on one store (PostgreSQL): each registers and beats, one leads the
// periodic work at a time, and a waiter belongs to the instance whose connection waits, so a
// restart drops only its own.
constexpr std::string_view kSchemaV8 = R"sql(
ALTER TABLE waiters ADD COLUMN instance TEXT NOT NULL DEFAULT '';
CREATE TABLE instances (
    name TEXT PRIMARY KEY,
    run TEXT NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE leaders (
    duty TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    run TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

core::Result<void> add_instances(SqliteConnection& db) {
    return db.exec(kSchemaV8);
}

// Producer leases (docs/producers.md): a released lease keeps its row, so its fence never
// goes back.
constexpr std::string_view kSchemaV9 = R"sql(
CREATE TABLE producer_leases (
    key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    fence INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

core::Result<void> add_producer_leases(SqliteConnection& db) {
    return db.exec(kSchemaV9);
}

// Nodes run by an `aviary supervise` sidecar: where its control API answers.
core::Result<void> add_control_urls(SqliteConnection& db) {
    return db.exec("ALTER TABLE nodes ADD COLUMN control_url TEXT NOT NULL DEFAULT ''");
}

// Canary scenarios' runs (docs/probes.md): each run, its counts per 5-minute bucket (what
// availability over 30 days is read from), and when each scenario runs next (the row several
// instances claim a run on).
constexpr std::string_view kSchemaV11 = R"sql(
CREATE TABLE probe_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scenario TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    failed_step TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    steps TEXT NOT NULL DEFAULT '[]',
    instance TEXT NOT NULL DEFAULT ''
);
CREATE INDEX probe_runs_by_scenario ON probe_runs (scenario, id);
CREATE INDEX probe_runs_by_start ON probe_runs (started_at);
CREATE TABLE probe_buckets (
    scenario TEXT NOT NULL,
    start INTEGER NOT NULL,
    runs INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    broken INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (scenario, start)
) WITHOUT ROWID;
CREATE INDEX probe_buckets_by_start ON probe_buckets (start);
CREATE TABLE probe_schedule (
    scenario TEXT PRIMARY KEY,
    next_run_at INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

core::Result<void> add_probe_runs(SqliteConnection& db) {
    return db.exec(kSchemaV11);
}

// Alarms on the scenarios (docs/probes.md, "Alarms"): each alarm's durable state, the outbox
// of its notifications, and explicit silences.
constexpr std::string_view kSchemaV12 = R"sql(
CREATE TABLE alarms (
    name TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    scenario TEXT NOT NULL,
    state TEXT NOT NULL,
    since INTEGER NOT NULL,
    pending_since INTEGER,
    clear_since INTEGER,
    summary TEXT NOT NULL DEFAULT '',
    silenced_by TEXT NOT NULL DEFAULT '',
    notified TEXT NOT NULL DEFAULT 'ok',
    notified_at INTEGER NOT NULL DEFAULT 0,
    evaluated_at INTEGER NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE alarm_notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alarm TEXT NOT NULL,
    rule TEXT NOT NULL,
    scenario TEXT NOT NULL,
    notifier TEXT NOT NULL,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    link TEXT NOT NULL DEFAULT '',
    at INTEGER NOT NULL,
    since INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL DEFAULT '',
    done_at INTEGER
);
CREATE INDEX alarm_notifications_due ON alarm_notifications (outcome, next_attempt_at);
CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    matcher TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    starts_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

core::Result<void> add_alarms(SqliteConnection& db) {
    if (auto made = db.exec(kSchemaV12); !made) {
        return made;
    }
    // Gated nodes: until when a passed gate lets a selector acquire hand the node out.
    return db.exec("ALTER TABLE nodes ADD COLUMN gate_until INTEGER");
}

/// Probe counts by hour and by day beside the 5-minute buckets, so a total over 30 days reads
/// a few rows per scenario rather than 8,640 (docs/probes.md, "Availability"). Filled from the
/// buckets already there.
constexpr std::string_view kSchemaV13 = R"sql(
CREATE TABLE probe_hours (
    scenario TEXT NOT NULL,
    start INTEGER NOT NULL,
    runs INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    broken INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (scenario, start)
) WITHOUT ROWID;
CREATE INDEX probe_hours_by_start ON probe_hours (start);
CREATE TABLE probe_days (
    scenario TEXT NOT NULL,
    start INTEGER NOT NULL,
    runs INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    broken INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (scenario, start)
) WITHOUT ROWID;
CREATE INDEX probe_days_by_start ON probe_days (start);
INSERT INTO probe_hours (scenario, start, runs, failed, broken, duration_ms)
    SELECT scenario, start - start % 3600000, sum(runs), sum(failed), sum(broken), sum(duration_ms)
    FROM probe_buckets GROUP BY scenario, start - start % 3600000;
INSERT INTO probe_days (scenario, start, runs, failed, broken, duration_ms)
    SELECT scenario, start - start % 86400000, sum(runs), sum(failed), sum(broken), sum(duration_ms)
    FROM probe_buckets GROUP BY scenario, start - start % 86400000;
)sql";

core::Result<void> add_probe_rollups(SqliteConnection& db) {
    return db.exec(kSchemaV13);
}

constexpr Migration kMigrations[] = {
    {1, "nodes, leases and events", create_v1_tables},
    {2, "lease ids and event indexes", add_lease_ids_and_event_indexes},
    {3, "exclusive leases and waiters", add_exclusive_leases_and_waiters},
    {4, "jobs, job output and paused queues", add_jobs},
    {5, "the annotation outbox", add_annotations},
    {6, "the image tag each node runs", add_deployed_tags},
    {7, "machines and worker ids", add_machines},
    {8, "instances, leaders and waiters' instances", add_instances},
    {9, "producer leases", add_producer_leases},
    {10, "sidecars' control urls", add_control_urls},
    {11, "probe runs, buckets and schedule", add_probe_runs},
    {12, "alarms, their notifications, silences and gated nodes", add_alarms},
    {13, "probe counts by hour and by day", add_probe_rollups},
};

core::Result<void> record_version(SqliteConnection& db, int version) {
    if (auto cleared = db.exec("DELETE FROM schema_version"); !cleared) {
        return cleared;
    }
    auto insert = db.prepare("INSERT INTO schema_version (version) VALUES (?1)");
    if (!insert) {
        return insert.error();
    }
    return insert->bind_all(std::int64_t{version}).run();
}

core::Result<void> apply_one(SqliteConnection& db, const Migration& migration) {
    if (auto begun = db.exec("BEGIN IMMEDIATE"); !begun) {
        return begun;
    }
    auto applied = migration.apply(db);
    if (applied) {
        applied = record_version(db, migration.version);
    }
    if (applied) {
        applied = db.exec("COMMIT");
    }
    if (!applied) {
        (void)db.exec("ROLLBACK");
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("migration {} ({}) failed: {}", migration.version,
                                       migration.name, applied.error().message)};
    }
    core::logger("store")->info("schema migrated version={} migration=\"{}\" path={}",
                                migration.version, migration.name, db.name());
    return {};
}

}  // namespace

int latest_schema_version() {
    return std::span{kMigrations}.back().version;
}

core::Result<int> migrate(SqliteConnection& db, int target) {
    auto current = sql::read_schema_version(db);
    if (!current) {
        return current;
    }
    if (auto known = sql::check_schema_known(db, *current, latest_schema_version()); !known) {
        return known.error();
    }
    for (const auto& migration : kMigrations) {
        if (migration.version <= *current || migration.version > target) {
            continue;
        }
        if (auto applied = apply_one(db, migration); !applied) {
            return applied.error();
        }
        current = migration.version;
    }
    return current;
}

}  // namespace aviary::store::sqlite
