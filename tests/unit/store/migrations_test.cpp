#include "store/postgres/migrations.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>
#include <sstream>

#include "store/sql/sql_store.hpp"
#include "store/sqlite/migrations.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "store_support.hpp"

namespace aviary::store::test {
namespace {

/// Runs `sql` on the database file through the plain C API, as the sqlite3 shell would.
void exec_raw(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char* message = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
    std::string why = message != nullptr ? message : "";
    sqlite3_free(message);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << why;
}

/// Rows of a one-column-per-field query, joined with '|', through the plain C API.
std::vector<std::string> query_raw(const std::string& path, const std::string& sql) {
    std::vector<std::string> rows;
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    auto collect = [](void* out, int columns, char** values, char**) {
        std::string row;
        for (int i = 0; i < columns; ++i) {
            row += (i > 0 ? "|" : "") + std::string{values[i] != nullptr ? values[i] : "NULL"};
        }
        static_cast<std::vector<std::string>*>(out)->push_back(row);
        return 0;
    };
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), collect, &rows, nullptr), SQLITE_OK);
    sqlite3_close(db);
    return rows;
}

std::string fixture_text() {
    std::ifstream in{std::string{AVIARY_FIXTURES_DIR} + "/schema_v1.sql"};
    EXPECT_TRUE(in) << "cannot read tests/fixtures/schema_v1.sql";
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

TEST(Migrations, VersionOneDatabaseMigratesAndItsLeaseGetsAnId) {
    TempDir dir;
    core::ManualClock clock;
    auto settings = file_settings(dir);
    {
        auto opened = sqlite::open_sqlite_at_version_for_test(settings, 1);
        ASSERT_TRUE(opened) << opened.error().message;
        auto& store = dynamic_cast<sql::SqlStore&>(**opened);
        EXPECT_EQ(store.schema_version(), 1);
        // Raw SQL: this build's queries expect the newest schema.
        auto inserted = store.exec_for_test(
            "INSERT INTO nodes (name, driver) VALUES ('lotus-0', 'sim'), ('lotus-1', 'sim');"
            "INSERT INTO leases (node, owner, reason, acquired_at, expires_at) "
            "VALUES ('lotus-1', 'anton', 'before v2', 1700000000000, 4102444800000)");
        ASSERT_TRUE(inserted) << inserted.error().message;
    }
    auto store = open_store(settings);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->schema_version(), 13);
    EXPECT_EQ(store->schema_version(), sqlite::latest_schema_version());
    auto node = store->node("lotus-1", clock.now());
    ASSERT_TRUE(node) << node.error().message;
    ASSERT_TRUE(node->lease);
    EXPECT_EQ(node->lease->owner, "anton");
    EXPECT_EQ(node->lease->id.size(), 26U);
    auto renewed = store->try_lease(lease_of("lotus-1", "anton", clock.now()));
    ASSERT_TRUE(renewed) << renewed.error().message;
    EXPECT_TRUE(renewed->renewed);
    EXPECT_EQ(renewed->leases.front().id, node->lease->id);
    store->close();
    EXPECT_EQ(query_raw(settings.path,
                        "SELECT name FROM sqlite_master WHERE type = 'index' "
                        "AND tbl_name = 'events' ORDER BY name"),
              (std::vector<std::string>{"events_at", "events_node_id"}));
}

TEST(Migrations, FixtureLoadsIntoAFreshDatabaseAndOpenMigratesIt) {
    TempDir dir;
    core::ManualClock clock;
    auto settings = file_settings(dir);
    exec_raw(settings.path, fixture_text());
    auto store = open_store(settings);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->schema_version(), sqlite::latest_schema_version());
    auto nodes = store->nodes(clock.now());
    ASSERT_TRUE(nodes);
    ASSERT_EQ(nodes->size(), 3U);
    const auto& leased = (*nodes)[1];
    EXPECT_EQ(leased.spec.name, "lotus-1");
    EXPECT_EQ(leased.spec.labels, (core::Labels{{"chain", "lotus"}}));
    ASSERT_TRUE(leased.lease);
    EXPECT_EQ(leased.lease->owner, "anton");
    EXPECT_EQ(leased.lease->reason, "v1 data");
    EXPECT_FALSE(leased.lease->id.empty());
    EXPECT_EQ(leased.lease->acquired_at, core::TimePoint{core::Millis{1700000000000}});
    auto refused = store->try_lease(lease_of("lotus-1", "bob", clock.now()));
    ASSERT_TRUE(refused);
    EXPECT_FALSE(refused->granted);
    EXPECT_EQ(refused->refusal.holders.front().owner, "anton");
    auto events =
        store->events(EventQuery{.node = "lotus-1", .since = {}, .before_id = {}, .limit = 10});
    ASSERT_TRUE(events);
    ASSERT_EQ(events->size(), 1U);
    EXPECT_EQ(events->front().kind, "lease.acquired");
}

TEST(Migrations, FixtureHoldsTheSchemaMigrationOneCreates) {
    TempDir dir;
    Settings migrated;
    migrated.path = dir.file("migrated.db").string();
    {
        auto opened = sqlite::open_sqlite_at_version_for_test(migrated, 1);
        ASSERT_TRUE(opened) << opened.error().message;
    }
    auto fixture = dir.file("fixture.db").string();
    exec_raw(fixture, fixture_text());
    std::string schema = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name";
    EXPECT_EQ(query_raw(migrated.path, schema), query_raw(fixture, schema));
    EXPECT_EQ(query_raw(fixture, "SELECT version FROM schema_version"),
              (std::vector<std::string>{"1"}));
}

TEST(Migrations, DatabaseFromANewerAviaryIsRefused) {
    TempDir dir;
    auto settings = file_settings(dir);
    {
        auto store = open_store(settings);
        ASSERT_TRUE(store);
    }
    exec_raw(settings.path, "UPDATE schema_version SET version = 99");
    auto opened = open(settings);
    ASSERT_FALSE(opened);
    EXPECT_EQ(opened.error().code, core::ErrorCode::kUnavailable);
    EXPECT_NE(opened.error().message.find("schema version 99"), std::string::npos);
}

TEST(Migrations, ReopeningAMigratedDatabaseChangesNothing) {
    TempDir dir;
    auto settings = file_settings(dir);
    {
        auto store = open_store(settings);
        ASSERT_TRUE(store);
    }
    auto store = open_store(settings);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->schema_version(), 13);
    store->close();
    EXPECT_EQ(query_raw(settings.path, "SELECT version FROM schema_version"),
              (std::vector<std::string>{std::to_string(sqlite::latest_schema_version())}));
}

TEST(Migrations, VersionTwoDatabaseWithDataMigratesToTheLatest) {
    TempDir dir;
    core::ManualClock clock;
    auto settings = file_settings(dir);
    std::string lease_id;
    {
        auto opened = sqlite::open_sqlite_at_version_for_test(settings, 2);
        ASSERT_TRUE(opened) << opened.error().message;
        auto& store = dynamic_cast<sql::SqlStore&>(**opened);
        EXPECT_EQ(store.schema_version(), 2);
        // Raw SQL as a version 2 aviary wrote it: no exclusive column, no waiters table.
        auto inserted = store.exec_for_test(
            "INSERT INTO nodes (name, driver, labels) VALUES "
            "('lotus-0', 'sim', '{\"chain\":\"lotus\"}'), "
            "('lotus-1', 'sim', '{\"chain\":\"lotus\"}');"
            "INSERT INTO leases (node, id, owner, reason, acquired_at, expires_at) "
            "VALUES ('lotus-1', '01V2LEASE000000000000000000', 'anton', 'v2 data', "
            "1700000000000, 4102444800000);"
            "INSERT INTO events (at, actor, kind, node) "
            "VALUES (1700000000000, 'anton', 'lease.acquired', 'lotus-1')");
        ASSERT_TRUE(inserted) << inserted.error().message;
    }
    auto store = open_store(settings);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->schema_version(), sqlite::latest_schema_version());
    auto node = store->node("lotus-1", clock.now());
    ASSERT_TRUE(node) << node.error().message;
    ASSERT_TRUE(node->lease);
    EXPECT_EQ(node->lease->id, "01V2LEASE000000000000000000");
    EXPECT_FALSE(node->lease->exclusive);
    // The old lease works with the new operations, and so does the new table.
    auto renewed = store->renew_lease(lease_id_of(node->lease->id, "anton", clock.now()));
    ASSERT_TRUE(renewed) << renewed.error().message;
    queue(*store, waiter_of("t", selector_of(2, "ci", clock.now())));
    auto waiters = store->waiters(clock.now());
    ASSERT_TRUE(waiters) << waiters.error().message;
    ASSERT_EQ(waiters->size(), 1U);
    EXPECT_EQ(waiters->front().position, 1);
    auto events = store->events(all_events("lotus-1"));
    ASSERT_TRUE(events);
    EXPECT_EQ(events->back().kind, "lease.acquired");
    store->close();
    EXPECT_EQ(
        query_raw(settings.path,
                  "SELECT name FROM sqlite_master WHERE type = 'index' "
                  "AND tbl_name IN ('leases', 'waiters') ORDER BY name"),
        (std::vector<std::string>{"leases_expires_at", "leases_id", "sqlite_autoindex_leases_1",
                                  "sqlite_autoindex_waiters_1", "waiters_state_seq"}));
}

TEST(Migrations, VersionThreeDatabaseWithDataMigratesToFourAndTakesJobs) {
    TempDir dir;
    core::ManualClock clock;
    auto settings = file_settings(dir);
    {
        auto opened = sqlite::open_sqlite_at_version_for_test(settings, 3);
        ASSERT_TRUE(opened) << opened.error().message;
        auto& store = dynamic_cast<sql::SqlStore&>(**opened);
        EXPECT_EQ(store.schema_version(), 3);
        // Raw SQL as a version 3 aviary wrote it: no jobs tables yet.
        auto inserted = store.exec_for_test(
            "INSERT INTO nodes (name, driver, labels) VALUES "
            "('lotus-0', 'sim', '{\"chain\":\"lotus\"}'), "
            "('lotus-1', 'sim', '{\"chain\":\"lotus\"}');"
            "INSERT INTO leases (node, id, owner, reason, acquired_at, expires_at, exclusive) "
            "VALUES ('lotus-1', '01V3LEASE000000000000000000', 'anton', 'v3 data', "
            "1700000000000, 4102444800000, 0)");
        ASSERT_TRUE(inserted) << inserted.error().message;
    }
    auto store = open_store(settings);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->schema_version(), 13);
    auto node = store->node("lotus-1", clock.now());
    ASSERT_TRUE(node) << node.error().message;
    ASSERT_TRUE(node->lease);
    EXPECT_EQ(node->lease->owner, "anton");

    // The old lease takes part in the new operations: anton's implicit acquire renews it.
    core::Job job;
    job.id = "job-1";
    job.action = "upgrade";
    job.node = "lotus-1";
    job.owner = "anton";
    job.created_at = clock.now();
    job.run_at = clock.now();
    JobSubmit submit{.job = job, .actor = "anton"};
    submit.acquire = lease_of("lotus-1", "anton", clock.now());
    auto out = store->submit_job(submit);
    ASSERT_TRUE(out) << out.error().message;
    EXPECT_FALSE(out->refused);
    EXPECT_EQ(out->job.lease_id, "01V3LEASE000000000000000000");
    auto claimed = store->claim_job(JobClaim{.runner = "r", .now = clock.now()});
    ASSERT_TRUE(claimed) << claimed.error().message;
    ASSERT_TRUE(*claimed);
    EXPECT_EQ((*claimed)->id, "job-1");
    ASSERT_TRUE(store->append_job_output(
        "job-1",
        {core::OutputLine{.seq = 1, .at = clock.now(), .stream = "stdout", .text = "hi"}}));
    ASSERT_TRUE(store->set_queue_paused("default", true, "anton", clock.now()));
    store->close();
    EXPECT_EQ(query_raw(settings.path,
                        "SELECT name FROM sqlite_master WHERE type IN ('table', 'index') "
                        "AND tbl_name IN ('jobs', 'job_output', 'paused_queues') ORDER BY name"),
              (std::vector<std::string>{
                  "job_output", "jobs", "jobs_active_unique_key", "jobs_finished_at",
                  "jobs_node_seq", "jobs_node_state_seq", "jobs_state_seq", "paused_queues",
                  "sqlite_autoindex_jobs_1", "sqlite_autoindex_paused_queues_1"}));
}

TEST(Migrations, VersionTwelveProbeBucketsAreCountedIntoHoursAndDays) {
    TempDir dir;
    auto settings = file_settings(dir);
    // 2027-01-15T08:00Z, a whole hour: buckets of two hours and of the next day.
    const std::int64_t base = 1'800'000'000'000;
    {
        auto opened = sqlite::open_sqlite_at_version_for_test(settings, 12);
        ASSERT_TRUE(opened) << opened.error().message;
        auto& store = dynamic_cast<sql::SqlStore&>(**opened);
        auto inserted = store.exec_for_test(fmt::format(
            "INSERT INTO probe_buckets (scenario, start, runs, failed, broken, duration_ms) "
            "VALUES ('list', {0}, 10, 1, 0, 100), ('list', {1}, 10, 0, 2, 100), "
            "('list', {2}, 5, 0, 0, 50), ('list', {3}, 7, 1, 1, 70)",
            base, base + 55 * 60'000, base + 3'600'000, base + 20 * 3'600'000));
        ASSERT_TRUE(inserted) << inserted.error().message;
    }
    auto store = open_store(settings);
    ASSERT_TRUE(store);
    const auto at = [](std::int64_t ms) { return core::TimePoint{core::Millis{ms}}; };
    // From base: the two hours (read hourly) and the next day (read daily).
    auto totals = store->probe_totals(at(base));
    ASSERT_TRUE(totals) << totals.error().message;
    ASSERT_EQ(totals->size(), 1U);
    EXPECT_EQ(totals->front().runs, 32);
    EXPECT_EQ(totals->front().failed, 2);
    EXPECT_EQ(totals->front().broken, 3);
    // From 09:00, a whole hour: the second hour and the day.
    totals = store->probe_totals(at(base + 3'600'000));
    ASSERT_TRUE(totals);
    ASSERT_EQ(totals->size(), 1U);
    EXPECT_EQ(totals->front().runs, 12);
    store->close();
    EXPECT_EQ(query_raw(settings.path, "SELECT runs FROM probe_days ORDER BY start"),
              (std::vector<std::string>{"25", "7"}));
}

TEST(Migrations, BothBackendsNumberTheirSchemasAlike) {
    // store copy and mixed upgrades rely on one version meaning one schema on either backend.
    EXPECT_EQ(postgres::latest_schema_version(), sqlite::latest_schema_version());
}

}  // namespace
}  // namespace aviary::store::test
