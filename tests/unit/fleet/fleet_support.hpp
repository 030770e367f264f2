#pragma once
// Shared by the fleet's unit tests: a fleet on real SQLite with a ManualClock, and a
// collector for grant callbacks.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "fleet/fleet.hpp"

namespace aviary::fleet::test {

using namespace std::chrono_literals;

/// lotus-0..2 (chain=lotus) and geth-0 (chain=geth), declared by the config.
inline Settings pool_settings() {
    Settings settings;
    settings.lease_ttl = 1h;
    settings.max_lease_ttl = 4h;
    settings.max_wait = 1h;
    // Longer than any TTL here: the expiry task's next run comes from the store's deadlines.
    settings.expiry_sweep = 2h;
    for (std::string name : {"lotus-0", "lotus-1", "lotus-2"}) {
        settings.nodes.push_back(core::NodeSpec{.name = name, .labels = {{"chain", "lotus"}}});
    }
    settings.nodes.push_back(core::NodeSpec{.name = "geth-0", .labels = {{"chain", "geth"}}});
    return settings;
}

/// What the grant callbacks received, by waiter name. The callbacks run on the store's writer
/// thread; tests wait for them with a deadline, or flush the writer to assert that none ran.
class Granted {
public:
    GrantedCallback callback(std::string name) {
        return [this, name = std::move(name)](Acquired acquired) {
            std::lock_guard lock{mu_};
            got_.emplace_back(name, std::move(acquired));
            arrived_.notify_all();
        };
    }
    /// True once `count` callbacks have run; false when the deadline passes first.
    bool wait_for(std::size_t count) {
        std::unique_lock lock{mu_};
        return arrived_.wait_for(lock, 10s, [&] { return got_.size() >= count; });
    }
    /// Every callback so far. After store.ping() returns, every callback of an earlier commit
    /// has run: the writer finishes one batch's listener before it starts the next batch.
    std::vector<std::pair<std::string, Acquired>> after_flush(store::Store& store) {
        EXPECT_TRUE(store.ping());
        std::lock_guard lock{mu_};
        return got_;
    }

private:
    std::mutex mu_;
    std::condition_variable arrived_;
    std::vector<std::pair<std::string, Acquired>> got_;
};

class FleetTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto opened = store::open(store::Settings{.path = ":memory:"});
        ASSERT_TRUE(opened) << opened.error().message;
        store_ = std::move(*opened);
        fleet_ = std::make_unique<Fleet>(pool_settings(), *store_, clock_);
        ASSERT_TRUE(fleet_->reconcile());
    }

    core::Result<Acquired> acquire(std::string node,
                                   std::string owner,
                                   std::optional<core::Millis> ttl = {}) {
        return fleet_->acquire(AcquireRequest{.node = node, .owner = owner, .ttl = ttl}, admin_);
    }
    core::Result<Acquired> acquire_lotus(int count, std::string owner) {
        return fleet_->acquire(
            AcquireRequest{.selector = {{"chain", "lotus"}}, .count = count, .owner = owner},
            admin_);
    }
    /// acquire_or_wait that must queue; returns the waiter.
    Waiter wait_for_node(std::string node, std::string owner, core::Millis wait = 1h) {
        return expect_queued(fleet_->acquire_or_wait(AcquireRequest{.node = node, .owner = owner},
                                                     wait, admin_, granted_.callback(owner)));
    }
    Waiter wait_for_lotus(int count, std::string owner, core::Millis wait = 1h) {
        return expect_queued(fleet_->acquire_or_wait(
            AcquireRequest{.selector = {{"chain", "lotus"}}, .count = count, .owner = owner}, wait,
            admin_, granted_.callback(owner)));
    }
    static Waiter expect_queued(core::Result<std::variant<Acquired, Waiter>> outcome) {
        EXPECT_TRUE(outcome) << outcome.error().message;
        if (!outcome || !std::holds_alternative<Waiter>(*outcome)) {
            ADD_FAILURE() << "expected a queued waiter";
            return Waiter{};
        }
        return std::get<Waiter>(*outcome);
    }
    std::vector<std::string> event_kinds(std::string node) {
        std::vector<std::string> kinds;
        auto events = store_->events(store::EventQuery{.node = std::move(node), .limit = 1000});
        EXPECT_TRUE(events);
        for (const auto& event : *events) {
            kinds.push_back(event.kind);
        }
        return kinds;
    }

    core::ManualClock clock_;
    core::Scheduler scheduler_{clock_};  // outlives fleet_, which cancels its task when destroyed
    std::unique_ptr<store::Store> store_;
    Granted granted_;  // outlives fleet_: its callbacks may run until the fleet is gone
    std::unique_ptr<Fleet> fleet_;
    Caller admin_{.identity = "", .admin = true};
};

inline std::vector<std::string> nodes_of(const std::vector<core::Lease>& leases) {
    std::vector<std::string> names;
    for (const auto& lease : leases) {
        names.push_back(lease.node);
    }
    return names;
}

}  // namespace aviary::fleet::test
