// `aviary sim-node` on its own: the real binary as a child process.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/json.hpp>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "drivers/drivers.hpp"
#include "unit/drivers/sim_test_support.hpp"

namespace aviary::drivers {
namespace {

namespace fs = std::filesystem;
using asio::experimental::awaitable_operators::operator&&;
using namespace test;

/// What GET /status said.
struct ChainStatus {
    std::string version;
    std::int64_t height = -1;
    bool syncing = true;
};

/// What a sim-node run showed.
struct Seen {
    std::vector<std::string> out;
    std::vector<std::string> err;
    std::optional<ChainStatus> first;  ///< the first status after the port file appeared
    std::optional<ChainStatus> last;   ///< the status the scenario waited for
    int healthz = 0;
    proc::ExitStatus exit;
};

std::vector<std::string> node_argv(const fs::path& dir, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{kAviary,
                                  "sim-node",
                                  "--data-dir",
                                  (dir / "data").string(),
                                  "--version",
                                  "v1.2.2",
                                  "--port-file",
                                  (dir / "port").string(),
                                  "--block-interval",
                                  "20ms"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
}

net::ClientRequest get(std::uint16_t port, const std::string& path) {
    return net::ClientRequest{.url = "http://127.0.0.1:" + std::to_string(port) + path,
                              .timeout = 2s};
}

asio::awaitable<std::optional<ChainStatus>> fetch_status(std::uint16_t port) {
    auto request = get(port, "/status");
    auto response = co_await net::fetch(std::move(request));
    if (!response || response->status != 200) {
        co_return std::nullopt;
    }
    auto body = boost::json::parse(response->body).as_object();
    co_return ChainStatus{.version = std::string{body.at("version").as_string()},
                          .height = body.at("height").as_int64(),
                          .syncing = body.at("syncing").as_bool()};
}

std::optional<std::uint16_t> port_in(const fs::path& file) {
    const auto text = read_text(file);
    if (text.empty() || text.back() != '\n') {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(std::stoi(text));
}

asio::awaitable<std::optional<std::uint16_t>> wait_port(const fs::path& file) {
    auto exists = [&file] { return port_in(file).has_value(); };
    if (!co_await eventually(exists)) {
        ADD_FAILURE() << "no port in " << file;
        co_return std::nullopt;
    }
    co_return port_in(file);
}

// Polls GET /status until the chain passes `height` with syncing over.
asio::awaitable<std::optional<ChainStatus>> wait_past(std::uint16_t port, std::int64_t height) {
    const auto until = std::chrono::steady_clock::now() + kDeadline;
    asio::steady_timer poll{co_await asio::this_coro::executor};
    while (std::chrono::steady_clock::now() < until) {
        auto status = co_await fetch_status(port);
        if (status && status->height > height && !status->syncing) {
            co_return status;
        }
        poll.expires_after(10ms);
        co_await poll.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    ADD_FAILURE() << "the chain did not pass height " << height;
    co_return std::nullopt;
}

using Interaction = std::function<asio::awaitable<void>(proc::Process&)>;

asio::awaitable<void> interact_then_end(proc::Process& process, Interaction& interact, Seen& seen) {
    co_await interact(process);
    seen.exit = co_await process.terminate(5s);  // at once when `interact` saw it end
}

// Runs `argv` with its output collected in `seen` while `interact` talks to it; ends it after.
asio::awaitable<void> with_node(std::vector<std::string> argv, Interaction interact, Seen& seen) {
    // Named first: GCC 12 destroys an aggregate temporary of a co_await expression twice.
    auto executor = co_await asio::this_coro::executor;
    proc::SpawnOptions options{.argv = std::move(argv)};
    auto process = proc::spawn(executor, std::move(options));
    if (!process) {
        ADD_FAILURE() << process.error().message;
        co_return;
    }
    proc::LineCallback on_line = [&seen](const proc::Line& line) {
        (line.stream == proc::Stream::kStdout ? seen.out : seen.err).push_back(line.text);
    };
    co_await (process->pump(std::move(on_line)) && interact_then_end(*process, interact, seen));
}

// Reads the status twice (at start and once past a few blocks), then asks it to stop.
asio::awaitable<void> watch_it_grow(proc::Process& process, fs::path dir, Seen& seen) {
    auto port = co_await wait_port(dir / "port");
    if (!port) {
        co_return;
    }
    seen.first = co_await fetch_status(*port);
    if (!seen.first) {
        ADD_FAILURE() << "no status";
        co_return;
    }
    seen.last = co_await wait_past(*port, seen.first->height + 3);
    auto request = get(*port, "/healthz");
    auto healthz = co_await net::fetch(std::move(request));
    seen.healthz = healthz ? healthz->status : 0;
    seen.exit = co_await process.terminate(5s);
}

Interaction grow(const fs::path& dir, Seen& seen) {
    return [dir, &seen](proc::Process& process) { return watch_it_grow(process, dir, seen); };
}

std::int64_t height_in(const fs::path& data_dir) {
    return std::stoll(read_text(data_dir / "height"));
}

TEST(SimNode, ServesItsStatusGrowsAndExitsCleanlyOnSigterm) {
    TempDir dir;
    Seen seen;
    run(with_node(node_argv(dir.path()), grow(dir.path(), seen), seen));
    ASSERT_TRUE(seen.first && seen.last);
    EXPECT_EQ(seen.first->version, "v1.2.2");
    EXPECT_GE(seen.first->height, 0);
    EXPECT_GT(seen.last->height, seen.first->height + 3);
    EXPECT_FALSE(seen.last->syncing);
    EXPECT_EQ(seen.healthz, 200);
    EXPECT_TRUE(seen.exit.succeeded())
        << "code " << seen.exit.code << " signal " << seen.exit.signal;
    EXPECT_GE(height_in(dir.path() / "data"), seen.last->height);
    EXPECT_FALSE(fs::exists(dir.path() / "port")) << "a clean exit takes its port file away";
    EXPECT_FALSE(seen.out.empty());
}

TEST(SimNode, RestartContinuesFromThePersistedHeight) {
    TempDir dir;
    Seen before;
    run(with_node(node_argv(dir.path()), grow(dir.path(), before), before));
    ASSERT_TRUE(before.last);
    const auto persisted = height_in(dir.path() / "data");
    ASSERT_GE(persisted, before.last->height);

    Seen after;
    run(with_node(node_argv(dir.path()), grow(dir.path(), after), after));
    ASSERT_TRUE(after.first);
    EXPECT_GE(after.first->height, persisted);
}

TEST(SimNode, ImportsTheSnapshotIntoAnEmptyDataDir) {
    TempDir dir;
    ASSERT_TRUE(write_sim_snapshot((dir.path() / "snapshot.json").string(), 7000));
    Seen seen;
    const auto import = (dir.path() / "snapshot.json").string();
    run(with_node(node_argv(dir.path(), {"--import", import}), grow(dir.path(), seen), seen));
    ASSERT_TRUE(seen.first);
    EXPECT_GE(seen.first->height, 7000);
}

TEST(SimNode, KeepsItsOwnHeightOverTheSnapshot) {
    TempDir dir;
    ASSERT_TRUE(write_sim_snapshot((dir.path() / "snapshot.json").string(), 7000));
    write_text(dir.path() / "data" / "height", "12\n");
    Seen seen;
    const auto import = (dir.path() / "snapshot.json").string();
    run(with_node(node_argv(dir.path(), {"--import", import}), grow(dir.path(), seen), seen));
    ASSERT_TRUE(seen.first);
    EXPECT_GE(seen.first->height, 12);
    EXPECT_LT(seen.first->height, 7000);
}

asio::awaitable<void> read_first_status(fs::path dir, Seen& seen) {
    auto port = co_await wait_port(dir / "port");
    if (port) {
        seen.first = co_await fetch_status(*port);
    }
}

TEST(SimNode, StaysSyncingUntilItHasProducedSyncBlocks) {
    TempDir dir;
    Seen seen;
    Interaction first_status = [&dir, &seen](proc::Process&) {
        return read_first_status(dir.path(), seen);
    };
    run(with_node(node_argv(dir.path(), {"--sync-blocks", "1000000"}), first_status, seen));
    ASSERT_TRUE(seen.first);
    EXPECT_TRUE(seen.first->syncing);
}

std::vector<std::string> sleep_30() {
    return {"sleep", "30"};
}

// Ends the node's parent once the node serves, then waits for the node to go by itself.
asio::awaitable<void> end_parent(proc::Process& parent,
                                 proc::Process& node,
                                 fs::path dir,
                                 Seen& seen) {
    using asio::experimental::awaitable_operators::operator||;
    if (!co_await wait_port(dir / "port")) {
        co_return;
    }
    co_await parent.terminate(5s);
    asio::steady_timer bound{co_await asio::this_coro::executor, kDeadline};
    auto ended = co_await (node.wait() || bound.async_wait(asio::use_awaitable));
    if (ended.index() == 0) {
        seen.last = ChainStatus{};  // marks "ended on its own"
    }
}

std::vector<std::string> child_of(const fs::path& dir, pid_t parent) {
    return node_argv(dir, {"--parent-pid", std::to_string(parent)});
}

asio::awaitable<void> outlive_parent(fs::path dir, Seen& seen) {
    auto executor = co_await asio::this_coro::executor;
    proc::SpawnOptions options{.argv = sleep_30()};
    auto parent = proc::spawn(executor, std::move(options));
    if (!parent) {
        ADD_FAILURE() << parent.error().message;
        co_return;
    }
    proc::Process& parent_process = *parent;
    Interaction end_it = [&parent_process, dir, &seen](proc::Process& node) {
        return end_parent(parent_process, node, dir, seen);
    };
    co_await with_node(child_of(dir, parent->pid()), end_it, seen);
}

TEST(SimNode, ExitsWhenItsParentIsGone) {
    TempDir dir;
    Seen seen;
    run(outlive_parent(dir.path(), seen));
    EXPECT_TRUE(seen.last.has_value()) << "sim-node outlived its parent";
    EXPECT_TRUE(seen.exit.succeeded())
        << "code " << seen.exit.code << " signal " << seen.exit.signal;
}

// The bad arguments, each with the option its message must name.
struct BadArgs {
    std::vector<std::string> args;
    std::string named;
};

std::vector<BadArgs> bad_args() {
    return {
        {{"--version", "v1", "--port-file", "/tmp/p"}, "--data-dir"},
        {{"--data-dir", "/tmp/d", "--port-file", "/tmp/p"}, "--version"},
        {{"--data-dir", "/tmp/d", "--version", "v1"}, "--port-file"},
        {{"--data-dir", "/tmp/d", "--version", "v1", "--port-file", "/tmp/p", "--block-interval",
          "fast"},
         "--block-interval"},
        {{"--data-dir", "/tmp/d", "--version", "v1", "--port-file", "/tmp/p", "--sync-blocks",
          "-1"},
         "--sync-blocks"},
        {{"--data-dir", "/tmp/d", "--version", "v1", "--port-file", "/tmp/p", "--parent-pid", "me"},
         "--parent-pid"},
        {{"--data-dir", "/tmp/d", "--version", "v1", "--port-file", "/tmp/p", "--bogus", "1"},
         "--bogus"},
        {{"--data-dir"}, "--data-dir"},
    };
}

asio::awaitable<void> wait_for_exit(proc::Process& process) {
    co_await process.wait();
}

TEST(SimNode, BadArgumentsExitWithCodeTwoNamingTheOption) {
    for (const auto& bad : bad_args()) {
        std::vector<std::string> argv{kAviary, "sim-node"};
        argv.insert(argv.end(), bad.args.begin(), bad.args.end());
        Seen seen;
        run(with_node(argv, wait_for_exit, seen));
        EXPECT_TRUE(seen.exit.exited());
        EXPECT_EQ(seen.exit.code, 2) << bad.named;
        ASSERT_FALSE(seen.err.empty()) << bad.named;
        EXPECT_NE(seen.err.front().find(bad.named), std::string::npos) << seen.err.front();
    }
}

}  // namespace
}  // namespace aviary::drivers
