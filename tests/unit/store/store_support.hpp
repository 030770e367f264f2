#pragma once
// Shared by the store's unit tests: temp directories, settings and request builders.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/core.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "store/store.hpp"

namespace aviary::store::test {

using namespace std::chrono_literals;

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

/// Opens or fails the test. The store is the SQLite backend, for its test hooks.
inline std::unique_ptr<sqlite::SqliteStore> open_store(const Settings& settings) {
    auto opened = open(settings);
    if (!opened) {
        ADD_FAILURE() << "open failed: " << opened.error().message;
        return nullptr;
    }
    return std::unique_ptr<sqlite::SqliteStore>{
        dynamic_cast<sqlite::SqliteStore*>(opened->release())};
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

inline ReleaseRequest release_of(std::string node, std::string owner, core::TimePoint now) {
    return ReleaseRequest{.node = std::move(node),
                          .owner = owner,
                          .actor = owner.empty() ? "admin" : owner,
                          .kind = "lease.released",
                          .now = now};
}

/// An in-memory store with lotus-0 .. lotus-(count-1) declared by the config.
inline std::unique_ptr<sqlite::SqliteStore> lotus_store(const core::Clock& clock, int count = 3) {
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
