#include "support/postgres_server.hpp"

#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "support/ports.hpp"

namespace aviary::test {
namespace fs = std::filesystem;
namespace {

/// The newest installed server's bin directory (Debian keeps them versioned, off PATH).
std::string pg_bin(const std::string& tool) {
    std::vector<fs::path> found;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
        auto candidate = entry.path() / "bin" / tool;
        if (fs::exists(candidate)) {
            found.push_back(candidate);
        }
    }
    if (found.empty()) {
        return tool;  // from PATH, or the shell says it is missing
    }
    std::sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) {
        return std::stoi(a.parent_path().parent_path().filename().string()) <
               std::stoi(b.parent_path().parent_path().filename().string());
    });
    return found.back().string();
}

std::string read_file(const std::string& path) {
    std::ifstream in{path};
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

void give_to_postgres(const fs::path& path) {
    if (::geteuid() != 0) {
        return;
    }
    const passwd* user = ::getpwnam("postgres");
    if (user == nullptr) {
        throw std::runtime_error("running as root, and there is no postgres user to run initdb");
    }
    if (::chown(path.c_str(), user->pw_uid, user->pw_gid) != 0) {
        throw std::runtime_error("cannot chown " + path.string() + " to postgres");
    }
}

std::string random_suffix() {
    std::random_device seed;
    std::mt19937_64 random{seed()};
    std::ostringstream out;
    out << std::hex << random();
    return out.str();
}

std::string exec_sql(const std::string& url, const std::string& sql) {
    PGconn* conn = PQconnectdb(url.c_str());
    std::string error;
    if (PQstatus(conn) != CONNECTION_OK) {
        error = PQerrorMessage(conn);
    } else {
        PQsetNoticeProcessor(
            conn, [](void*, const char*) {}, nullptr);
        PGresult* result = PQexec(conn, sql.c_str());
        if (PQresultStatus(result) != PGRES_COMMAND_OK) {
            error = PQresultErrorMessage(result);
        }
        PQclear(result);
    }
    PQfinish(conn);
    return error;
}

}  // namespace

int run_as_postgres(const std::string& command, const std::string& log) {
    std::string line = ::geteuid() == 0 ? "runuser -u postgres -- " + command : command;
    line += " >>" + log + " 2>&1";
    int status = std::system(line.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

PostgresServer::PostgresServer(std::string dir, Options options)
    : dir_(std::move(dir)), options_(options) {
    fs::create_directories(dir_);
    give_to_postgres(dir_);
    std::string log = dir_ + "/initdb.log";
    { std::ofstream touch{log}; }
    give_to_postgres(log);
    int rc = run_as_postgres(pg_bin("initdb") + " -D " + dir_ +
                                 "/data -U postgres -A trust -E UTF8 --locale=C --no-sync",
                             log);
    if (rc != 0) {
        throw std::runtime_error("initdb failed (" + std::to_string(rc) + "): " + read_file(log));
    }
    port_ = free_port();
    start();
}

PostgresServer::~PostgresServer() {
    if (detached_) {
        return;
    }
    stop();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
}

std::string PostgresServer::url(const std::string& database) const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

std::string PostgresServer::pg_ctl(const std::string& verb, const std::string& extra) const {
    std::string log = dir_ + "/pg_ctl.log";
    std::string command = pg_bin("pg_ctl") + " -D " + dir_ + "/data -w -t 60 " + extra + " " + verb;
    int rc = run_as_postgres(command, log);
    return rc == 0 ? "" : "pg_ctl " + verb + " failed: " + read_file(log);
}

void PostgresServer::start() {
    std::string settings = "-p " + std::to_string(port_) + " -c listen_addresses=127.0.0.1 -k " +
                           dir_ + " -c max_connections=" + std::to_string(options_.max_connections);
    if (!options_.durable) {
        settings += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off";
    }
    auto failed = pg_ctl("start", "-l " + dir_ + "/server.log -o '" + settings + "'");
    if (!failed.empty()) {
        throw std::runtime_error(failed + read_file(dir_ + "/server.log"));
    }
    running_ = true;
}

void PostgresServer::stop() {
    if (running_) {
        resume();
        (void)pg_ctl("stop", "-m fast");
        running_ = false;
    }
}

void PostgresServer::restart() {
    stop();
    start();
}

void PostgresServer::pause() {
    // The postmaster and its backends share its process group only by accident of how it was
    // started; signal each by pid instead: the postmaster's pid file, and its children.
    auto pid = read_file(dir_ + "/data/postmaster.pid");
    auto postmaster = std::stoi(pid.substr(0, pid.find('\n')));
    std::system(("pkill -STOP -P " + std::to_string(postmaster)).c_str());
    ::kill(postmaster, SIGSTOP);
}

void PostgresServer::resume() {
    auto pid = read_file(dir_ + "/data/postmaster.pid");
    if (pid.empty()) {
        return;
    }
    auto postmaster = std::stoi(pid.substr(0, pid.find('\n')));
    ::kill(postmaster, SIGCONT);
    std::system(("pkill -CONT -P " + std::to_string(postmaster)).c_str());
}

bool stop_postgres_at(const std::string& dir) {
    if (!fs::exists(dir + "/data")) {
        return true;
    }
    int rc = run_as_postgres(pg_bin("pg_ctl") + " -D " + dir + "/data -m fast -w stop",
                             dir + "/pg_ctl.log");
    std::error_code ignored;
    fs::remove_all(dir, ignored);
    return rc == 0;
}

std::string shared_postgres_url() {
    static std::once_flag once;
    static std::unique_ptr<PostgresServer> own;
    static std::string url;
    std::call_once(once, [] {
        if (const char* dir = std::getenv("AVIARY_TEST_POSTGRES_DIR"); dir != nullptr) {
            url = read_file(std::string{dir} + "/url");
            while (!url.empty() && (url.back() == '\n' || url.back() == ' ')) {
                url.pop_back();
            }
            if (url.empty()) {
                throw std::runtime_error(std::string{"AVIARY_TEST_POSTGRES_DIR="} + dir +
                                         " has no url: did the postgres fixture start?");
            }
            return;
        }
        own = std::make_unique<PostgresServer>(
            (fs::temp_directory_path() / ("aviary-pg-" + random_suffix())).string(),
            PostgresServer::Options{});
        url = own->url();
        // Static destruction stops it; a killed test leaves it to the next boot's tmp cleanup.
    });
    return url;
}

std::string fresh_postgres_schema_url(const std::string& schema) {
    auto base = shared_postgres_url();
    auto error =
        exec_sql(base, "DROP SCHEMA IF EXISTS " + schema + " CASCADE; CREATE SCHEMA " + schema);
    if (!error.empty()) {
        throw std::runtime_error("cannot create schema " + schema + ": " + error);
    }
    return postgres_schema_url(schema);
}

std::string postgres_schema_url(const std::string& schema) {
    return shared_postgres_url() + "?options=-csearch_path%3D" + schema;
}

}  // namespace aviary::test
