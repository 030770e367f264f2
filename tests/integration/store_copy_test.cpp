// `aviary store copy` through the real binary (docs/scaling.md, "Moving to PostgreSQL"): a
// serve on SQLite builds up state, stops, and its store moves to PostgreSQL, where a serve
// finds the same nodes, leases, jobs with their output and audit trail, and goes on from them.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>
#include <random>
#include <sstream>

#include "cli_support.hpp"
#include "rpc_helpers.hpp"
#include "support/postgres_server.hpp"
#include "support/server_process.hpp"

namespace aviary::test {
namespace {

std::string random_schema() {
    std::random_device seed;
    return "copy_" + std::to_string(std::mt19937_64{seed()}() % 1'000'000'000);
}

/// Runs `aviary ARGS` (no server involved), with stderr apart.
CliResult aviary(const std::string& args,
                 const std::string& scratch_dir,
                 const std::string& environment = {}) {
    const std::string err_path = scratch_dir + "/stderr";
    auto result = run_command(
        fmt::format("{}timeout 60 {} {} 2>{}", environment, AVIARY_BINARY, args, err_path));
    return {result.status, result.output, read_file(err_path)};
}

std::vector<std::string> output_texts(const ServerProcess& server, std::string_view job) {
    auto output = json_of(http(server, "GET", fmt::format("/api/v1/jobs/{}/output", job)));
    std::vector<std::string> texts;
    if (output.is_object()) {
        for (const auto& line : output.at("lines").as_array()) {
            texts.push_back(str(line.at("stream")) + ":" + str(line.at("text")));
        }
    }
    return texts;
}

/// The rows the copy reported for `table` ("nodes   4"), or -1.
long long reported_rows(const std::string& out, std::string_view table) {
    std::istringstream lines{out};
    std::string name;
    long long rows = -1;
    for (std::string line; std::getline(lines, line);) {
        std::istringstream fields{line};
        if (fields >> name && name == table && fields >> rows) {
            return rows;
        }
    }
    return -1;
}

class StoreCopy : public ::testing::Test {
protected:
    /// A serve on SQLite leaves: one node added through the API, a lease, a finished job with
    /// output, a paused queue, and their events; then it stops.
    void SetUp() override {
        ServerProcess sqlite{jobs_test_config(), sqlite_dir_.path()};
        ASSERT_TRUE(sqlite.start()) << sqlite.log();
        auto added = http(sqlite, "PUT", "/api/v1/nodes/geth-9",
                          R"({"driver":"sim","image_tag":"v2.0.0","labels":{"chain":"geth"}})");
        ASSERT_TRUE(added && added->status == 201) << (added ? added->body : "");
        auto lease = http(sqlite, "POST", "/api/v1/leases",
                          R"({"node":"lotus-1","owner":"alice","ttl":"2h"})");
        ASSERT_TRUE(lease && lease->status == 201) << (lease ? lease->body : "");
        lease_id_ = str(json_of(lease).at("id"));
        auto submitted = http(sqlite, "POST", "/api/v1/nodes/lotus-0/actions/count", "{}");
        ASSERT_TRUE(submitted && submitted->status == 202) << (submitted ? submitted->body : "");
        job_id_ = str(json_of(submitted).at("job").at("id"));
        auto job = wait_for_job(sqlite, job_id_);
        ASSERT_TRUE(job.is_object());
        ASSERT_EQ(str(job.at("state")), "succeeded") << sqlite.log();
        output_ = output_texts(sqlite, job_id_);
        ASSERT_FALSE(output_.empty());
        auto paused = http(sqlite, "PUT", "/api/v1/queues/other/pause", "");
        ASSERT_TRUE(paused && paused->status == 200) << (paused ? paused->body : "");
        auto events = json_of(http(sqlite, "GET", "/api/v1/events?limit=1000"));
        ASSERT_TRUE(events.is_object());
        events_ = events.at("events").as_array().size();
        ASSERT_EQ(sqlite.stop(), 0) << sqlite.log();
    }

    std::string copy_args(std::string_view extra = "") const {
        return fmt::format("store copy --from sqlite:{}/aviary.db --to '{}' {}", sqlite_dir_.path(),
                           url_, extra);
    }

    TempDir sqlite_dir_;
    TempDir scratch_;
    std::string url_ = fresh_postgres_schema_url(random_schema());
    std::string lease_id_;
    std::string job_id_;
    std::vector<std::string> output_;
    std::size_t events_ = 0;
};

TEST_F(StoreCopy, AServeOnPostgresFindsWhatTheSqliteStoreHeldAndGoesOn) {
    auto copied = aviary(copy_args(), scratch_.path());
    ASSERT_EQ(copied.status, 0) << copied.out << copied.err;
    EXPECT_NE(copied.out.find("counts match"), std::string::npos) << copied.out;
    EXPECT_EQ(reported_rows(copied.out, "nodes"), 4) << copied.out;
    EXPECT_EQ(reported_rows(copied.out, "leases"), 1) << copied.out;
    EXPECT_EQ(reported_rows(copied.out, "paused_queues"), 1) << copied.out;
    EXPECT_GE(reported_rows(copied.out, "jobs"), 1) << copied.out;
    EXPECT_GE(reported_rows(copied.out, "job_output"), static_cast<long long>(output_.size()))
        << copied.out;
    EXPECT_EQ(reported_rows(copied.out, "events"), static_cast<long long>(events_)) << copied.out;

    ServerProcess postgres{jobs_test_config("", fmt::format("store:\n  url: '{}'\n", url_))};
    ASSERT_TRUE(postgres.start()) << postgres.log();
    auto node = json_of(http(postgres, "GET", "/api/v1/nodes/geth-9"));
    ASSERT_TRUE(node.is_object()) << postgres.log();
    EXPECT_EQ(str(node.at("image_tag")), "v2.0.0");
    auto leases = json_of(http(postgres, "GET", "/api/v1/leases"));
    ASSERT_TRUE(leases.is_object());
    ASSERT_EQ(leases.at("leases").as_array().size(), 1u) << leases;
    EXPECT_EQ(str(leases.at("leases").as_array()[0].at("id")), lease_id_);
    EXPECT_EQ(str(leases.at("leases").as_array()[0].at("owner")), "alice");
    auto job = job_of(postgres, job_id_);
    ASSERT_TRUE(job.is_object());
    EXPECT_EQ(str(job.at("state")), "succeeded");
    EXPECT_EQ(output_texts(postgres, job_id_), output_);
    auto queues = json_of(http(postgres, "GET", "/api/v1/queues"));
    ASSERT_TRUE(queues.is_object());
    bool other_paused = false;
    for (const auto& queue : queues.at("queues").as_array()) {
        other_paused =
            other_paused || (str(queue.at("name")) == "other" && queue.at("paused").as_bool());
    }
    EXPECT_TRUE(other_paused) << queues;

    // It goes on: the holder releases her copied lease, and new jobs and events get ids past
    // the copied ones (a reused id would fail the insert).
    auto released = http(postgres, "DELETE", fmt::format("/api/v1/leases/{}", lease_id_));
    EXPECT_TRUE(released && released->status == 200) << (released ? released->body : "");
    auto submitted = http(postgres, "POST", "/api/v1/nodes/lotus-2/actions/say",
                          R"({"params":{"msg":"after the move"}})");
    ASSERT_TRUE(submitted && submitted->status == 202) << (submitted ? submitted->body : "");
    auto next = wait_for_job(postgres, str(json_of(submitted).at("job").at("id")));
    ASSERT_TRUE(next.is_object()) << postgres.log();
    EXPECT_EQ(str(next.at("state")), "succeeded") << postgres.log();
    auto events = json_of(http(postgres, "GET", "/api/v1/events?limit=1000"));
    ASSERT_TRUE(events.is_object());
    EXPECT_GT(events.at("events").as_array().size(), events_);
}

TEST_F(StoreCopy, ADestinationHoldingRowsIsRefusedUnlessReplaced) {
    auto first = aviary(copy_args(), scratch_.path());
    ASSERT_EQ(first.status, 0) << first.out << first.err;
    auto again = aviary(copy_args(), scratch_.path());
    EXPECT_EQ(again.status, 1);
    EXPECT_NE(again.err.find("the destination already holds"), std::string::npos) << again.err;
    EXPECT_NE(again.err.find("nothing was copied"), std::string::npos) << again.err;
    // The instances' config names the destination as well as --to does.
    const std::string config = scratch_.path() + "/aviary.yaml";
    std::ofstream{config} << fmt::format("store:\n  url: '{}'\n  password_env: COPY_TEST_PW\n",
                                         url_);
    auto replaced =
        aviary(fmt::format("store copy --from sqlite:{}/aviary.db --config {} --replace",
                           sqlite_dir_.path(), config),
               scratch_.path(), "COPY_TEST_PW=unused-by-trust-auth ");
    EXPECT_EQ(replaced.status, 0) << replaced.out << replaced.err;
    EXPECT_EQ(reported_rows(replaced.out, "nodes"), reported_rows(first.out, "nodes"));
    EXPECT_EQ(reported_rows(replaced.out, "job_output"), reported_rows(first.out, "job_output"));
}

TEST_F(StoreCopy, BadSourcesAndDestinationsAreRefusedWithWhatIsWrong) {
    auto not_sqlite =
        aviary(fmt::format("store copy --from {} --to '{}'", url_, url_), scratch_.path());
    EXPECT_EQ(not_sqlite.status, 2);
    EXPECT_NE(not_sqlite.err.find("--from must be sqlite:PATH"), std::string::npos)
        << not_sqlite.err;

    auto missing = aviary(
        fmt::format("store copy --from sqlite:{}/nothing.db --to '{}'", scratch_.path(), url_),
        scratch_.path());
    EXPECT_EQ(missing.status, 1);
    EXPECT_NE(missing.err.find("no SQLite store at"), std::string::npos) << missing.err;

    auto with_password = aviary(fmt::format("store copy --from sqlite:{}/aviary.db --to "
                                            "postgresql://aviary:hunter2@127.0.0.1:1/db",
                                            sqlite_dir_.path()),
                                scratch_.path());
    EXPECT_EQ(with_password.status, 2);
    EXPECT_NE(with_password.err.find("holds a password"), std::string::npos) << with_password.err;
    EXPECT_EQ(with_password.err.find("hunter2"), std::string::npos) << with_password.err;

    auto no_destination = aviary(
        fmt::format("store copy --from sqlite:{}/aviary.db", sqlite_dir_.path()), scratch_.path());
    EXPECT_EQ(no_destination.status, 2);
    EXPECT_NE(no_destination.err.find("needs a PostgreSQL destination"), std::string::npos)
        << no_destination.err;

    // A table a newer aviary added would be left behind: the copy refuses to start.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((sqlite_dir_.path() + "/aviary.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE mystery (x INTEGER)", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
    auto newer = aviary(copy_args(), scratch_.path());
    EXPECT_EQ(newer.status, 1);
    EXPECT_NE(newer.err.find("does not copy: mystery"), std::string::npos) << newer.err;

    // Nothing listens on port 1 (only root could bind it, and nothing here does).
    auto unreachable = aviary(
        fmt::format("store copy --from sqlite:{}/aviary.db --to postgresql://aviary@127.0.0.1:1/db",
                    sqlite_dir_.path()),
        scratch_.path());
    EXPECT_EQ(unreachable.status, 1);
    EXPECT_NE(unreachable.err.find("nothing was copied"), std::string::npos) << unreachable.err;
}

}  // namespace
}  // namespace aviary::test
