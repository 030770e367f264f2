// The sim driver with real `aviary sim-node` children.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "drivers/drivers.hpp"
#include "unit/drivers/sim_test_support.hpp"

namespace aviary::drivers {
namespace {

namespace fs = std::filesystem;
using namespace test;

/// Records notes; never stopping; runs no children (the sim driver starts its own).
class FakeContext final : public Context {
public:
    void note(std::string text) override { notes.push_back(std::move(text)); }
    asio::awaitable<core::Result<proc::ExitStatus>> run(proc::SpawnOptions, RunOptions) override {
        co_return core::Error{core::ErrorCode::kUnimplemented, "not in this test"};
    }
    bool stopping() const override { return stopping_now; }

    bool said(const std::string& part) const {
        for (const auto& line : notes) {
            if (line.find(part) != std::string::npos) {
                return true;
            }
        }
        return false;
    }

    std::vector<std::string> notes;
    bool stopping_now = false;
};

core::NodeSpec lotus(int i, std::string tag = "v1.2.2") {
    return core::NodeSpec{.name = "lotus-" + std::to_string(i), .image_tag = std::move(tag)};
}

/// A driver in a temp dir, running the real binary with fast blocks.
class SimDriverTest : public ::testing::Test {
protected:
    SimDriverTest() {
        settings_.dir = dir_.path().string();
        settings_.sim = SimSettings{.block_interval = core::Millis{20},
                                    .sync_blocks = 2,
                                    .snapshot_height = 1000,
                                    .program = kAviary,
                                    .start_timeout = core::Millis{10'000},
                                    .stop_grace = core::Millis{5'000}};
    }

    Driver& driver() {
        if (!driver_) {
            for (auto& made : make_drivers(settings_)) {
                if (made->name() == "sim") {
                    driver_ = std::move(made);
                }
            }
            EXPECT_TRUE(driver_) << "make_drivers made no sim driver";
        }
        return *driver_;
    }

    fs::path node_dir(const std::string& node) const { return dir_.path() / "sim" / node; }

    /// Runs `body`, then the driver's stop(), so no child outlives the test.
    void run_with_driver(asio::awaitable<void> body) {
        Driver* d = &driver();
        run(std::move(body), [d] { return d->stop(); });
    }

    TempDir dir_;
    Settings settings_;
    std::unique_ptr<Driver> driver_;
};

/// An op's JSON result, or its error.
struct OpResult {
    std::optional<core::Error> error;
    boost::json::object json;

    bool ok() const { return !error; }
    std::string version() const { return std::string{json.at("version").as_string()}; }
    std::int64_t height() const { return json.at("height").as_int64(); }
    bool running() const { return json.at("running").as_bool(); }
    bool installed() const { return json.at("installed").as_bool(); }
};

asio::awaitable<OpResult> run_op(
    Driver& driver, Op op, core::NodeSpec node, Context& context, std::string tag = {}) {
    OpRequest request{.op = op, .node = std::move(node), .image_tag = std::move(tag)};
    auto result = co_await driver.run(request, context);
    if (!result) {
        co_return OpResult{.error = result.error()};
    }
    co_return OpResult{.json = boost::json::parse(*result).as_object()};
}

asio::awaitable<NodeStatus> status_of(Driver& driver, core::NodeSpec node) {
    auto status = co_await driver.status(node);
    if (!status) {
        ADD_FAILURE() << status.error().message;
        co_return NodeStatus{};
    }
    co_return *status;
}

// Polls the driver's status until the node runs past `height` (true), or the deadline (false).
asio::awaitable<bool> wait_height_past(Driver& driver, core::NodeSpec node, std::int64_t height) {
    const auto until = std::chrono::steady_clock::now() + kDeadline;
    asio::steady_timer poll{co_await asio::this_coro::executor};
    while (std::chrono::steady_clock::now() < until) {
        auto status = co_await status_of(driver, node);
        if (status.running && status.height > height) {
            co_return true;
        }
        poll.expires_after(10ms);
        co_await poll.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    ADD_FAILURE() << node.name << " did not pass height " << height;
    co_return false;
}

// The pid of the node's last start, from its "starting NODE on TAG (pid N)" note.
pid_t pid_in(const FakeContext& context, const std::string& node) {
    const std::string starting = "starting " + node + " on ";
    const std::string marker = "(pid ";
    pid_t pid = -1;
    for (const auto& line : context.notes) {
        const auto at = line.find(marker);
        if (line.starts_with(starting) && at != std::string::npos) {
            pid = std::stoi(line.substr(at + marker.size()));
        }
    }
    return pid;
}

bool gone(pid_t pid) {
    return ::kill(pid, 0) == -1 && errno == ESRCH;
}

// --- start ---------------------------------------------------------------------------------

struct StartSeen {
    NodeStatus status;
    bool growing = false;
};

asio::awaitable<void> start_fresh(Driver& driver, StartSeen& seen) {
    std::vector<core::NodeSpec> nodes{lotus(0)};
    co_await driver.start(co_await asio::this_coro::executor, nodes);
    seen.status = co_await status_of(driver, lotus(0));
    seen.growing = co_await wait_height_past(driver, lotus(0), seen.status.height);
}

TEST_F(SimDriverTest, StartInstallsANodeNeverSeenAtItsImageTagFromTheSnapshot) {
    StartSeen seen;
    run_with_driver(start_fresh(driver(), seen));
    EXPECT_TRUE(seen.status.installed);
    EXPECT_TRUE(seen.status.running);
    EXPECT_EQ(seen.status.version, "v1.2.2");
    EXPECT_GE(seen.status.height, 1000) << "a fresh data dir imports the snapshot";
    EXPECT_TRUE(seen.status.api.starts_with("http://127.0.0.1:")) << seen.status.api;
    EXPECT_TRUE(seen.growing);
    EXPECT_NE(read_text(node_dir("lotus-0") / "state.json").find("\"installed\":true"),
              std::string::npos);
}

asio::awaitable<void> start_uninstalled(Driver& driver, NodeStatus& seen) {
    std::vector<core::NodeSpec> nodes{lotus(0)};
    co_await driver.start(co_await asio::this_coro::executor, nodes);
    seen = co_await status_of(driver, lotus(0));
}

TEST_F(SimDriverTest, StartLeavesAnUninstalledNodeStopped) {
    write_text(node_dir("lotus-0") / "state.json", R"({"installed":false,"version":"v1.2.2"})");
    NodeStatus seen;
    seen.running = true;
    run_with_driver(start_uninstalled(driver(), seen));
    EXPECT_FALSE(seen.installed);
    EXPECT_FALSE(seen.running);
}

asio::awaitable<void> status_only(Driver& driver, NodeStatus& seen) {
    seen = co_await status_of(driver, lotus(9));
}

TEST_F(SimDriverTest, StatusOfANodeNeverInstalledIsNotAnError) {
    NodeStatus seen;
    seen.installed = seen.running = true;
    run_with_driver(status_only(driver(), seen));
    EXPECT_FALSE(seen.installed);
    EXPECT_FALSE(seen.running);
}

// --- upgrade ---------------------------------------------------------------------------------

struct UpgradeSeen {
    std::int64_t before = -1;
    OpResult upgraded;
    bool growing = false;
    FakeContext context;
};

asio::awaitable<void> upgrade(Driver& driver, UpgradeSeen& seen) {
    std::vector<core::NodeSpec> nodes{lotus(0)};
    co_await driver.start(co_await asio::this_coro::executor, nodes);
    if (!co_await wait_height_past(driver, lotus(0), 1003)) {
        co_return;
    }
    seen.before = (co_await status_of(driver, lotus(0))).height;
    seen.upgraded = co_await run_op(driver, Op::kUpgrade, lotus(0), seen.context, "v1.2.3");
    seen.growing = co_await wait_height_past(driver, lotus(0), seen.before);
}

TEST_F(SimDriverTest, UpgradeKeepsTheHeightGrowingFromWhereItWasOnTheNewVersion) {
    UpgradeSeen seen;
    run_with_driver(upgrade(driver(), seen));
    ASSERT_TRUE(seen.upgraded.ok()) << seen.upgraded.error->message;
    EXPECT_EQ(seen.upgraded.version(), "v1.2.3");
    EXPECT_TRUE(seen.upgraded.running());
    EXPECT_TRUE(seen.upgraded.installed());
    EXPECT_GE(seen.upgraded.height(), seen.before);
    EXPECT_TRUE(seen.growing);
    EXPECT_TRUE(seen.context.said("upgrading lotus-0 from v1.2.2 to v1.2.3"));
    EXPECT_TRUE(seen.context.said("stopping lotus-0 (pid "));
    EXPECT_TRUE(seen.context.said("starting lotus-0 on v1.2.3"));
    EXPECT_NE(read_text(node_dir("lotus-0") / "state.json").find("v1.2.3"), std::string::npos);
}

// --- install-snapshot: uninstall, wipe-data, install ----------------------------------------

struct SnapshotSeen {
    std::int64_t before = -1;
    OpResult uninstalled;
    OpResult wiped;
    OpResult installed;
    bool data_gone = false;
    FakeContext context;
};

asio::awaitable<void> install_snapshot(Driver& driver, fs::path data_dir, SnapshotSeen& seen) {
    std::vector<core::NodeSpec> nodes{lotus(0)};
    co_await driver.start(co_await asio::this_coro::executor, nodes);
    if (!co_await wait_height_past(driver, lotus(0), 5000)) {
        co_return;
    }
    seen.before = (co_await status_of(driver, lotus(0))).height;
    seen.uninstalled = co_await run_op(driver, Op::kUninstall, lotus(0), seen.context);
    seen.wiped = co_await run_op(driver, Op::kWipeData, lotus(0), seen.context);
    seen.data_gone = !fs::exists(data_dir);
    seen.installed = co_await run_op(driver, Op::kInstall, lotus(0), seen.context, "v1.2.4");
}

TEST_F(SimDriverTest, InstallSnapshotResetsTheHeightToTheSnapshots) {
    // The node has come far past the snapshot (1000) before it is reset to it.
    write_text(node_dir("lotus-0") / "data" / "height", "5000\n");
    SnapshotSeen seen;
    run_with_driver(install_snapshot(driver(), node_dir("lotus-0") / "data", seen));
    ASSERT_GT(seen.before, 5000);
    ASSERT_TRUE(seen.uninstalled.ok()) << seen.uninstalled.error->message;
    EXPECT_FALSE(seen.uninstalled.installed());
    EXPECT_FALSE(seen.uninstalled.running());
    ASSERT_TRUE(seen.wiped.ok()) << seen.wiped.error->message;
    EXPECT_TRUE(seen.data_gone);
    ASSERT_TRUE(seen.installed.ok()) << seen.installed.error->message;
    EXPECT_TRUE(seen.installed.running());
    EXPECT_EQ(seen.installed.version(), "v1.2.4");
    EXPECT_GE(seen.installed.height(), 1000);
    EXPECT_LT(seen.installed.height(), seen.before);
    EXPECT_TRUE(seen.context.said("wiped "));
    EXPECT_TRUE(seen.context.said("importing the snapshot at height 1000"));
}

// --- wipe-data while running -----------------------------------------------------------------

struct WipeSeen {
    OpResult wiped;
    NodeStatus after;
    FakeContext context;
};

asio::awaitable<void> wipe_running(Driver& driver, WipeSeen& seen) {
    auto installed = co_await run_op(driver, Op::kInstall, lotus(0), seen.context);
    if (!installed.ok()) {
        ADD_FAILURE() << installed.error->message;
        co_return;
    }
    seen.wiped = co_await run_op(driver, Op::kWipeData, lotus(0), seen.context);
    seen.after = co_await status_of(driver, lotus(0));
}

TEST_F(SimDriverTest, WipeDataWhileRunningIsRefused) {
    WipeSeen seen;
    run_with_driver(wipe_running(driver(), seen));
    ASSERT_FALSE(seen.wiped.ok());
    EXPECT_EQ(seen.wiped.error->code, core::ErrorCode::kBusy);
    EXPECT_NE(seen.wiped.error->message.find("uninstall"), std::string::npos)
        << seen.wiped.error->message;
    EXPECT_TRUE(seen.after.running);
    EXPECT_TRUE(fs::exists(node_dir("lotus-0") / "data" / "height"));
}

// --- restart ---------------------------------------------------------------------------------

struct RestartSeen {
    std::int64_t before = -1;
    OpResult restarted;
    OpResult uninstalled_restart;
    pid_t first_pid = -1;
    pid_t second_pid = -1;
    FakeContext context;
};

asio::awaitable<void> restart(Driver& driver, RestartSeen& seen) {
    auto installed = co_await run_op(driver, Op::kInstall, lotus(0), seen.context);
    seen.first_pid = pid_in(seen.context, "lotus-0");
    if (!installed.ok() || !co_await wait_height_past(driver, lotus(0), 1002)) {
        co_return;
    }
    seen.before = (co_await status_of(driver, lotus(0))).height;
    seen.restarted = co_await run_op(driver, Op::kRestart, lotus(0), seen.context);
    seen.second_pid = pid_in(seen.context, "lotus-0");
    co_await run_op(driver, Op::kUninstall, lotus(0), seen.context);
    seen.uninstalled_restart = co_await run_op(driver, Op::kRestart, lotus(0), seen.context);
}

TEST_F(SimDriverTest, RestartRunsANewProcessOnTheSameVersionAndHeight) {
    RestartSeen seen;
    run_with_driver(restart(driver(), seen));
    ASSERT_TRUE(seen.restarted.ok()) << seen.restarted.error->message;
    EXPECT_TRUE(seen.restarted.running());
    EXPECT_EQ(seen.restarted.version(), "v1.2.2");
    EXPECT_GE(seen.restarted.height(), seen.before);
    EXPECT_GT(seen.first_pid, 0);
    EXPECT_NE(seen.second_pid, seen.first_pid);
    EXPECT_TRUE(gone(seen.first_pid));
    EXPECT_TRUE(seen.context.said("restarting lotus-0 on v1.2.2"));
    ASSERT_FALSE(seen.uninstalled_restart.ok());
    EXPECT_EQ(seen.uninstalled_restart.error->code, core::ErrorCode::kUnavailable);
}

// --- crash, failed start ---------------------------------------------------------------------

struct CrashSeen {
    bool stopped_running = false;
    OpResult restarted;
    FakeContext context;
};

asio::awaitable<void> crash(Driver& driver, CrashSeen& seen) {
    auto installed = co_await run_op(driver, Op::kInstall, lotus(0), seen.context);
    const pid_t pid = pid_in(seen.context, "lotus-0");
    if (!installed.ok() || pid <= 0) {
        ADD_FAILURE() << "lotus-0 did not start";
        co_return;
    }
    ::kill(pid, SIGKILL);
    const auto until = std::chrono::steady_clock::now() + kDeadline;
    asio::steady_timer poll{co_await asio::this_coro::executor};
    while (!seen.stopped_running && std::chrono::steady_clock::now() < until) {
        seen.stopped_running = !(co_await status_of(driver, lotus(0))).running;
        poll.expires_after(10ms);
        co_await poll.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    seen.restarted = co_await run_op(driver, Op::kRestart, lotus(0), seen.context);
}

TEST_F(SimDriverTest, ANodeThatDiesShowsNotRunningUntilRestarted) {
    CrashSeen seen;
    run_with_driver(crash(driver(), seen));
    EXPECT_TRUE(seen.stopped_running);
    ASSERT_TRUE(seen.restarted.ok()) << seen.restarted.error->message;
    EXPECT_TRUE(seen.restarted.running());
}

asio::awaitable<void> install_broken(Driver& driver, OpResult& seen, FakeContext& context) {
    seen = co_await run_op(driver, Op::kInstall, lotus(0), context);
}

TEST_F(SimDriverTest, ANodeThatExitsBeforeServingFailsTheInstallWithItsExit) {
    settings_.sim.program = "/bin/false";
    OpResult seen;
    FakeContext context;
    run_with_driver(install_broken(driver(), seen, context));
    ASSERT_FALSE(seen.ok());
    EXPECT_EQ(seen.error->code, core::ErrorCode::kUnavailable);
    EXPECT_NE(seen.error->message.find("lotus-0"), std::string::npos) << seen.error->message;
    EXPECT_NE(seen.error->message.find("exit code 1"), std::string::npos) << seen.error->message;
}

// --- stop ------------------------------------------------------------------------------------

struct StopSeen {
    std::vector<pid_t> pids;
    bool all_ran = false;
    FakeContext context;
};

asio::awaitable<void> start_two_then_stop(Driver& driver, StopSeen& seen) {
    auto first = co_await run_op(driver, Op::kInstall, lotus(0), seen.context);
    auto second = co_await run_op(driver, Op::kInstall, lotus(1), seen.context);
    seen.all_ran = first.ok() && second.ok() && first.running() && second.running();
    seen.pids = {pid_in(seen.context, "lotus-0"), pid_in(seen.context, "lotus-1")};
    co_await driver.stop();
}

TEST_F(SimDriverTest, StopEndsEveryChild) {
    StopSeen seen;
    run_with_driver(start_two_then_stop(driver(), seen));
    EXPECT_TRUE(seen.all_ran);
    ASSERT_EQ(seen.pids.size(), 2U);
    for (pid_t pid : seen.pids) {
        ASSERT_GT(pid, 0);
        EXPECT_TRUE(gone(pid)) << pid;
    }
    EXPECT_GE(std::stoll(read_text(node_dir("lotus-0") / "data" / "height")), 1000);
}

}  // namespace
}  // namespace aviary::drivers
