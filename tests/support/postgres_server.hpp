#pragma once
// Test support: a real, throwaway PostgreSQL cluster. initdb and pg_ctl into a temp directory
// on a free loopback port; as root they run as the `postgres` user, since initdb refuses root.
// A test run shares one cluster: CTest starts it once (the `postgres` fixture, through the
// postgres_cluster tool) and tells tests where it is with AVIARY_TEST_POSTGRES_DIR; a test
// binary run by hand starts its own and stops it at exit.
#include <sys/types.h>

#include <string>

namespace aviary::test {

class PostgresServer {
public:
    struct Options {
        /// fsync and synchronous_commit on: what a benchmark measures. Off for tests (the
        /// machine does not crash under them, and they run faster).
        bool durable = false;
        int max_connections = 200;
    };

    /// initdb + pg_ctl start in `dir` (created; must not exist). Throws std::runtime_error
    /// with the tools' output when either fails.
    PostgresServer(std::string dir, Options options);
    /// stop() and removes the directory.
    ~PostgresServer();
    PostgresServer(const PostgresServer&) = delete;
    PostgresServer& operator=(const PostgresServer&) = delete;

    int port() const { return port_; }
    /// postgresql://postgres@127.0.0.1:PORT/DATABASE
    std::string url(const std::string& database = "postgres") const;
    const std::string& dir() const { return dir_; }

    /// pg_ctl stop -m fast. Idempotent.
    void stop();
    /// Leaves the server running and its directory in place when this object goes: what a
    /// tool that starts a cluster for other processes does (stop_postgres_at() ends it).
    void detach() {
        running_ = false;
        detached_ = true;
    }
    /// pg_ctl restart on the same port and data: what a database restart under load is.
    void restart();
    /// SIGSTOP / SIGCONT to the postmaster and every backend: a database that stops answering
    /// without closing connections (a partition, as the clients see it).
    void pause();
    void resume();

private:
    void start();
    std::string pg_ctl(const std::string& verb, const std::string& extra = "") const;

    std::string dir_;
    Options options_;
    int port_ = 0;
    bool running_ = false;
    bool detached_ = false;
};

/// Stops a cluster another process started in `dir` (the fixture's stop) and removes `dir`.
/// False when pg_ctl failed.
bool stop_postgres_at(const std::string& dir);

/// Runs `command` (a shell line) as the cluster's owner: through runuser when this process is
/// root. Returns its exit status; its output goes to `log`.
int run_as_postgres(const std::string& command, const std::string& log);

/// The URL of the test run's shared cluster (postgres database): CTest's, or one this process
/// starts on first use and stops at exit.
std::string shared_postgres_url();

/// A new schema in the shared cluster, and a URL whose connections use it (search_path): what
/// gives each test its own empty database at the cost of a CREATE SCHEMA.
std::string fresh_postgres_schema_url(const std::string& schema);

/// The URL of `schema` (made before) in the shared cluster.
std::string postgres_schema_url(const std::string& schema);

}  // namespace aviary::test
