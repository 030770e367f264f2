#pragma once
// Shared by the store's unit tests: temp directories, settings and request builders.
#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "core/core.hpp"
#include "store/sql/sql_store.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "store/store.hpp"
#include "support/postgres_server.hpp"

namespace aviary::store::test {

using namespace std::chrono_literals;

/// Calls an asynchronous store method (`start(done)`) and waits for the answer its callback
/// gets on the writer thread.
template <class T, class Start>
T wait_for_answer(Start start) {
    std::promise<T> answer;
    auto answered = answer.get_future();
    start([&answer](T value) { answer.set_value(std::move(value)); });
    return answered.get();
}

/// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
public:
    TempDir() : path_(std::filesystem::temp_directory_path() / ("aviary-store-" + core::new_id())) {
        std::filesystem::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::filesystem::path file(std::string_view name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

inline Settings memory_settings() {
    Settings settings;
    settings.path = ":memory:";
    return settings;
}

inline Settings file_settings(const TempDir& dir) {
    Settings settings;
    settings.path = dir.file("aviary.db").string();
    return settings;
}

/// The backends every conformance test runs against (TEST_P over BackendTest).
enum class Backend { kSqlite, kPostgres };

/// The backend of the test running now: BackendTest sets it, open_store() obeys it.
inline Backend& current_backend() {
    static Backend backend = Backend::kSqlite;
    return backend;
}

inline std::vector<Backend> backends() {
    return {Backend::kSqlite, Backend::kPostgres};
}

inline std::string backend_name(const ::testing::TestParamInfo<Backend>& info) {
    return info.param == Backend::kSqlite ? "sqlite" : "postgres";
}

/// A conformance test: runs once per backend.
class BackendTest : public ::testing::TestWithParam<Backend> {
protected:
    void SetUp() override { current_backend() = GetParam(); }
    void TearDown() override { current_backend() = Backend::kSqlite; }
};

/// Declares `Suite` as a conformance suite: its TEST_Ps run against SQLite and PostgreSQL
/// (Suite.Name/sqlite, Suite.Name/postgres).
#define AVIARY_STORE_SUITE(Suite)                                                             \
    class Suite : public ::aviary::store::test::BackendTest {};                               \
    INSTANTIATE_TEST_SUITE_P(, Suite, ::testing::ValuesIn(::aviary::store::test::backends()), \
                             ::aviary::store::test::backend_name)

/// On PostgreSQL, a SQLite path names a schema in the shared test cluster: ":memory:" a new one
/// each time, a file the same one each time (so a reopen finds what was written).
inline Settings for_backend(Settings settings) {
    if (current_backend() == Backend::kSqlite) {
        return settings;
    }
    static std::set<std::string> made;
    std::string schema;
    if (settings.path == ":memory:") {
        schema = "t_" + core::new_id();
    } else {
        schema = "f_" + std::to_string(std::hash<std::string>{}(settings.path));
    }
    for (auto& c : schema) {
        c = std::isalnum(static_cast<unsigned char>(c)) != 0
                ? static_cast<char>(std::tolower(static_cast<unsigned char>(c)))
                : '_';
    }
    settings.driver = "postgres";
    if (made.insert(schema).second) {
        settings.url = aviary::test::fresh_postgres_schema_url(schema);
    } else {
        settings.url = aviary::test::postgres_schema_url(schema);
    }
    return settings;
}

/// Opens the current backend's store or fails the test; the SqlStore type gives tests its
/// hooks (exec_for_test).
inline std::unique_ptr<sql::SqlStore> open_store(const Settings& plain) {
    auto settings = for_backend(plain);
    auto opened = open(settings);
    if (!opened) {
        ADD_FAILURE() << "open failed: " << opened.error().message;
        return nullptr;
    }
    return std::unique_ptr<sql::SqlStore>{dynamic_cast<sql::SqlStore*>(opened->release())};
}

inline std::vector<core::NodeSpec> lotus_nodes(int count) {
    std::vector<core::NodeSpec> specs;
    for (int i = 0; i < count; ++i) {
        specs.push_back(core::NodeSpec{.name = "lotus-" + std::to_string(i),
                                       .driver = "sim",
                                       .image_tag = "v1.0.0",
                                       .labels = {{"chain", "lotus"}},
                                       .note = ""});
    }
    return specs;
}

inline LeaseRequest lease_of(std::string node,
                             std::string owner,
                             core::TimePoint now,
                             core::Millis ttl = 1h) {
    return LeaseRequest{.node = std::move(node),
                        .owner = owner,
                        .reason = "testing",
                        .actor = owner,
                        .now = now,
                        .ttl = ttl};
}

inline LeaseRequest selector_of(int count,
                                std::string owner,
                                core::TimePoint now,
                                core::Millis ttl = 1h) {
    return LeaseRequest{.selector = {{"chain", "lotus"}},
                        .count = count,
                        .owner = owner,
                        .reason = "testing",
                        .actor = owner,
                        .now = now,
                        .ttl = ttl};
}

inline LeaseIdRequest lease_id_of(std::string id,
                                  std::string owner,
                                  core::TimePoint now,
                                  core::Millis ttl = 1h) {
    return LeaseIdRequest{.lease_id = std::move(id),
                          .owner = owner,
                          .actor = owner.empty() ? "admin" : owner,
                          .now = now,
                          .ttl = ttl};
}

inline WaiterRecord waiter_of(std::string ticket, LeaseRequest request, core::Millis wait = 1h) {
    auto deadline = request.now + wait;
    return WaiterRecord{
        .ticket = std::move(ticket), .request = std::move(request), .deadline = deadline};
}

/// Enqueues and expects a queued waiter (not a grant); returns it.
inline WaiterRecord queue(Store& store, WaiterRecord waiter) {
    auto queued = store.enqueue(waiter);
    EXPECT_TRUE(queued) << queued.error().message;
    if (!queued || !std::holds_alternative<WaiterRecord>(*queued)) {
        ADD_FAILURE() << "waiter " << waiter.ticket << " was not queued";
        return waiter;
    }
    return std::get<WaiterRecord>(*queued);
}

/// What the store's GrantListener heard. The listener runs on the writer thread after the
/// batch's submitters are answered; flush() makes that deterministic: ping() commits a later
/// batch, and the writer finishes one batch's listener call before it starts the next.
class GrantLog {
public:
    explicit GrantLog(Store& store) : store_(store) {
        store_.set_grant_listener([this](std::vector<WaiterGrant> grants) {
            std::lock_guard lock{mu_};
            ++calls_;
            for (auto& grant : grants) {
                grants_.push_back(std::move(grant));
            }
        });
    }
    ~GrantLog() { store_.set_grant_listener({}); }
    GrantLog(const GrantLog&) = delete;
    GrantLog& operator=(const GrantLog&) = delete;

    /// Every grant heard so far, oldest first.
    std::vector<WaiterGrant> flush() {
        EXPECT_TRUE(store_.ping());
        std::lock_guard lock{mu_};
        return grants_;
    }
    int calls() {
        EXPECT_TRUE(store_.ping());
        std::lock_guard lock{mu_};
        return calls_;
    }

private:
    Store& store_;
    std::mutex mu_;
    std::vector<WaiterGrant> grants_;
    int calls_ = 0;
};

inline ReleaseRequest release_of(std::string node, std::string owner, core::TimePoint now) {
    return ReleaseRequest{.node = std::move(node),
                          .owner = owner,
                          .actor = owner.empty() ? "admin" : owner,
                          .kind = "lease.released",
                          .now = now};
}

/// An in-memory store with lotus-0 .. lotus-(count-1) declared by the config.
inline std::unique_ptr<sql::SqlStore> lotus_store(const core::Clock& clock, int count = 3) {
    auto store = open_store(memory_settings());
    if (store != nullptr) {
        auto reconciled = store->reconcile_nodes(lotus_nodes(count), "config", clock.now());
        EXPECT_TRUE(reconciled) << reconciled.error().message;
    }
    return store;
}

inline EventQuery all_events(std::string node = "") {
    EventQuery query;
    query.node = std::move(node);
    query.limit = 1000;
    return query;
}

/// Event kinds, newest first.
inline std::vector<std::string> kinds(Store& store, std::string node = "") {
    std::vector<std::string> out;
    auto events = store.events(all_events(std::move(node)));
    EXPECT_TRUE(events) << events.error().message;
    if (events) {
        for (const auto& event : *events) {
            out.push_back(event.kind);
        }
    }
    return out;
}

}  // namespace aviary::store::test
