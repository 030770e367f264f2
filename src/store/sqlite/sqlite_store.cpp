#include "store/sqlite/sqlite_store.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>

#include "store/sql/sql_store.hpp"
#include "store/sqlite/connection.hpp"
#include "store/sqlite/migrations.hpp"

namespace aviary::store::sqlite {
namespace {

constexpr std::string_view kMemoryPath = ":memory:";

core::Result<void> check_settings(const Settings& settings) {
    if (settings.path.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           "store.path is empty (the wiring sets <data_dir>/aviary.db)"};
    }
    if (settings.synchronous != "full" && settings.synchronous != "normal") {
        return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("store.synchronous must be \"full\" or \"normal\", got \"{}\"",
                        settings.synchronous)};
    }
    if (settings.read_connections < 1) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("store.read_connections must be at least 1, got {}",
                                       settings.read_connections)};
    }
    return {};
}

// WAL lets readers run beside the writer; `synchronous` decides whether each commit is fsynced
// (FULL: an acknowledged write survives power loss, which group commit makes affordable).
core::Result<void> configure(SqliteConnection& db, const Settings& settings) {
    bool in_memory = settings.path == kMemoryPath;
    if (!in_memory) {
        if (auto wal = use_wal(db); !wal) {
            return wal;
        }
    }
    return db.exec(fmt::format("PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
                               settings.synchronous == "full" ? "FULL" : "NORMAL"));
}

void make_parent_directory(const std::string& path) {
    auto parent = std::filesystem::path{path}.parent_path();
    if (!parent.empty()) {
        std::error_code ignored;  // opening the database reports the real problem, if any
        std::filesystem::create_directories(parent, ignored);
    }
}

core::Result<std::unique_ptr<Store>> open_at(const Settings& settings, int version) {
    if (auto valid = check_settings(settings); !valid) {
        return valid.error();
    }
    bool in_memory = settings.path == kMemoryPath;
    if (!in_memory) {
        make_parent_directory(settings.path);
    }
    auto db = SqliteConnection::open(settings.path, SqliteConnection::Mode::kReadWrite,
                                     settings.busy_timeout);
    if (!db) {
        return db.error();
    }
    if (auto configured = configure(**db, settings); !configured) {
        return configured.error();
    }
    auto reached = migrate(**db, version);
    if (!reached) {
        return reached.error();
    }
    std::unique_ptr<sql::ReadPool> readers;
    if (!in_memory) {
        auto pool = sql::ReadPool::open(
            settings.read_connections, [&]() -> core::Result<std::unique_ptr<sql::Connection>> {
                auto read = SqliteConnection::open(settings.path, SqliteConnection::Mode::kReadOnly,
                                                   settings.busy_timeout);
                if (!read) {
                    return read.error();
                }
                return std::unique_ptr<sql::Connection>{std::move(*read)};
            });
        if (!pool) {
            return pool.error();
        }
        readers = std::move(*pool);
    }
    core::logger("store")->info("store opened path={} schema_version={} synchronous={}",
                                settings.path, *reached, settings.synchronous);
    return std::unique_ptr<Store>{new sql::SqlStore(std::move(*db), std::move(readers), *reached)};
}

}  // namespace

core::Result<std::unique_ptr<Store>> open_sqlite(const Settings& settings) {
    return open_at(settings, latest_schema_version());
}

core::Result<std::unique_ptr<Store>> open_sqlite_at_version_for_test(const Settings& settings,
                                                                     int version) {
    return open_at(settings, version);
}

}  // namespace aviary::store::sqlite
