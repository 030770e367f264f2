// `aviary sim-node` on its own: the real binary as a child process.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/json.hpp>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <regex>
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
        {{"--data-dir", "/tmp/d", "--version", "v1", "--port-file", "/tmp/p", "--chain-id", "abc"},
         "--chain-id"},
        {{"--data-dir", "/tmp/d", "--version", "v1", "--port-file", "/tmp/p", "--chain-id",
          std::string(63, 'a')},
         "--chain-id"},
        {{"--data-dir", "/tmp/d", "--version", "v1", "--port-file", "/tmp/p", "--chain-id",
          std::string(63, 'a') + "g"},
         "--chain-id"},
        {{"--data-dir", "/tmp/d", "--version", "v1", "--port-file", "/tmp/p", "--paused=yes"},
         "--paused"},
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

// --- nodeos's chain and producer API ---

/// The default chain id: the SHA-256 of "aviary-sim".
constexpr const char* kSimChainId =
    "081ee42fa1a89993cfe0f0b80bbe898e64832c5ec9b3a3ede900423d728a5009";

/// One HTTP exchange with the node.
struct Reply {
    int status = 0;
    std::string content_type;
    std::string allow;
    std::string body;
};

asio::awaitable<Reply> call(std::uint16_t port,
                            std::string method,
                            const std::string& path,
                            std::string body = {}) {
    auto request = get(port, path);
    request.method = std::move(method);
    request.body = std::move(body);
    auto response = co_await net::fetch(std::move(request));
    if (!response) {
        ADD_FAILURE() << path << ": " << response.error().message;
        co_return Reply{};
    }
    co_return Reply{.status = response->status,
                    .content_type = std::string{response->header("Content-Type").value_or("")},
                    .allow = std::string{response->header("Allow").value_or("")},
                    .body = response->body};
}

/// What get_info said, or an empty object when it did not answer 200 with a JSON object.
asio::awaitable<boost::json::object> get_info(std::uint16_t port, std::string method = "POST") {
    auto reply = co_await call(port, std::move(method), "/v1/chain/get_info", "{}");
    boost::system::error_code ec;
    auto value = boost::json::parse(reply.body, ec);
    if (reply.status != 200 || ec || !value.is_object()) {
        ADD_FAILURE() << "get_info: " << reply.status << " " << reply.body;
        co_return boost::json::object{};
    }
    co_return value.as_object();
}

std::int64_t head_of(const boost::json::object& info) {
    const auto* head = info.if_contains("head_block_num");
    return head != nullptr && head->is_int64() ? head->as_int64() : -1;
}

std::string text_of(const boost::json::object& info, std::string_view key) {
    const auto* value = info.if_contains(key);
    return value != nullptr && value->is_string() ? std::string{value->as_string()} : "";
}

// Polls get_info until the head passes `height`; the info that showed it.
asio::awaitable<boost::json::object> wait_head_past(std::uint16_t port, std::int64_t height) {
    const auto until = std::chrono::steady_clock::now() + kDeadline;
    asio::steady_timer poll{co_await asio::this_coro::executor};
    while (std::chrono::steady_clock::now() < until) {
        auto info = co_await get_info(port);
        if (head_of(info) > height) {
            co_return info;
        }
        poll.expires_after(10ms);
        co_await poll.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    ADD_FAILURE() << "the head did not pass " << height;
    co_return boost::json::object{};
}

/// What get_info showed over ten block intervals (--block-interval 20ms) of polling. No event
/// marks "no block was made", so this one wait is bounded by time.
struct Frozen {
    std::int64_t lowest = -1;
    std::int64_t highest = -1;
    std::vector<std::string> times;  ///< head_block_time, each distinct one seen
    int polls = 0;
};

asio::awaitable<Frozen> watch_head(std::uint16_t port) {
    Frozen seen;
    const auto until = std::chrono::steady_clock::now() + 10 * 20ms;
    asio::steady_timer poll{co_await asio::this_coro::executor};
    do {
        auto info = co_await get_info(port);
        const auto head = head_of(info);
        seen.lowest = seen.polls == 0 ? head : std::min(seen.lowest, head);
        seen.highest = std::max(seen.highest, head);
        const auto time = text_of(info, "head_block_time");
        if (seen.times.empty() || seen.times.back() != time) {
            seen.times.push_back(time);
        }
        ++seen.polls;
        poll.expires_after(5ms);
        co_await poll.async_wait(asio::as_tuple(asio::use_awaitable));
    } while (std::chrono::steady_clock::now() < until);
    co_return seen;
}

/// What a test does with a node once it serves.
using Scenario = std::function<asio::awaitable<void>(std::uint16_t port)>;

asio::awaitable<void> once_serving(fs::path dir, Scenario scenario) {
    auto port = co_await wait_port(dir / "port");
    if (port) {
        co_await scenario(*port);
    }
}

/// Runs a node with `extra` options and `scenario` against it, then ends it.
void with_serving_node(const fs::path& dir,
                       std::vector<std::string> extra,
                       Scenario scenario,
                       Seen& seen) {
    Interaction interact = [dir, scenario](proc::Process&) { return once_serving(dir, scenario); };
    run(with_node(node_argv(dir, std::move(extra)), interact, seen));
}

bool matches(const std::string& text, const char* pattern) {
    return std::regex_match(text, std::regex{pattern});
}

/// get_info twice, a few blocks apart, and /status just before the first.
struct InfoSeen {
    std::optional<ChainStatus> status;
    boost::json::object first;
    boost::json::object later;
    boost::json::object by_get;
};

asio::awaitable<void> read_infos(std::uint16_t port, InfoSeen& seen) {
    seen.status = co_await wait_past(port, 0);
    seen.first = co_await get_info(port);
    seen.later = co_await wait_head_past(port, head_of(seen.first) + 2);
    seen.by_get = co_await get_info(port, "GET");
}

TEST(SimNode, GetInfoAnswersAsNodeosDoes) {
    TempDir dir;
    Seen seen;
    InfoSeen infos;
    Scenario scenario = [&infos](std::uint16_t port) { return read_infos(port, infos); };
    with_serving_node(dir.path(), {}, scenario, seen);
    ASSERT_TRUE(infos.status);
    const auto& info = infos.first;
    const auto head = head_of(info);
    EXPECT_GE(head, infos.status->height) << "get_info shows the chain /status shows";
    EXPECT_EQ(text_of(info, "server_version"), "bb063b58") << "SHA-256 of v1.2.2, 8 hex digits";
    EXPECT_EQ(text_of(info, "server_version_string"), "v1.2.2");
    EXPECT_EQ(text_of(info, "chain_id"), kSimChainId);
    EXPECT_EQ(text_of(info, "head_block_producer"), "eosio");
    ASSERT_TRUE(info.if_contains("last_irreversible_block_num"));
    EXPECT_EQ(info.at("last_irreversible_block_num").as_int64(),
              std::max<std::int64_t>(head - 2, 0));
    ASSERT_TRUE(info.if_contains("fork_db_head_block_num"));
    EXPECT_EQ(info.at("fork_db_head_block_num").as_int64(), head);
    const auto id = text_of(info, "head_block_id");
    EXPECT_TRUE(matches(id, "[0-9a-f]{64}")) << id;
    EXPECT_EQ(id.substr(0, 8), fmt::format("{:08x}", head)) << id;
    EXPECT_TRUE(matches(text_of(info, "last_irreversible_block_id"), "[0-9a-f]{64}"));
    const auto time = text_of(info, "head_block_time");
    EXPECT_TRUE(matches(time, R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3})")) << time;

    const auto& later = infos.later;
    EXPECT_GT(head_of(later), head + 2) << "the head advances";
    EXPECT_NE(text_of(later, "head_block_id"), id);
    EXPECT_GT(text_of(later, "head_block_time"), time) << "a later block, a later time";
    EXPECT_EQ(text_of(later, "chain_id"), kSimChainId) << "the chain id is stable";
    EXPECT_EQ(text_of(infos.by_get, "chain_id"), kSimChainId) << "GET answers as POST does";
    EXPECT_GE(head_of(infos.by_get), head_of(later));
}

/// The producer API's answers around a pause and a resume.
struct PauseSeen {
    Reply paused_before;
    Reply pause;
    Reply paused_during;
    boost::json::object at_pause;
    std::optional<ChainStatus> status_at_pause;
    std::int64_t persisted_at_pause = -1;
    Frozen frozen;
    Reply resume;
    Reply paused_after;
    boost::json::object after_resume;
};

asio::awaitable<void> pause_and_resume(std::uint16_t port, fs::path data_dir, PauseSeen& seen) {
    auto running = co_await wait_head_past(port, 0);
    co_await wait_head_past(port, head_of(running) + 2);
    seen.paused_before = co_await call(port, "GET", "/v1/producer/paused");
    seen.pause = co_await call(port, "POST", "/v1/producer/pause");
    seen.paused_during = co_await call(port, "POST", "/v1/producer/paused");
    seen.at_pause = co_await get_info(port);
    seen.status_at_pause = co_await fetch_status(port);
    seen.persisted_at_pause = height_in(data_dir);
    seen.frozen = co_await watch_head(port);
    seen.resume = co_await call(port, "POST", "/v1/producer/resume");
    seen.paused_after = co_await call(port, "GET", "/v1/producer/paused");
    seen.after_resume = co_await wait_head_past(port, head_of(seen.at_pause) + 1);
}

TEST(SimNode, PauseFreezesTheHeadAndResumeMovesItAgain) {
    TempDir dir;
    Seen seen;
    PauseSeen api;
    const auto data_dir = dir.path() / "data";
    Scenario scenario = [&api, data_dir](std::uint16_t port) {
        return pause_and_resume(port, data_dir, api);
    };
    with_serving_node(dir.path(), {}, scenario, seen);
    EXPECT_EQ(api.paused_before.status, 200);
    EXPECT_EQ(api.paused_before.body, "false");
    EXPECT_EQ(api.pause.status, 200);
    EXPECT_EQ(api.pause.body, R"({"result":"ok"})");
    EXPECT_EQ(api.pause.content_type, "application/json");
    EXPECT_EQ(api.paused_during.body, "true");

    const auto head = head_of(api.at_pause);
    EXPECT_GT(head, 2);
    ASSERT_TRUE(api.status_at_pause);
    EXPECT_EQ(api.status_at_pause->height, head) << "/status keeps answering, head frozen";
    EXPECT_EQ(api.persisted_at_pause, head) << "no block made behind the pause";
    EXPECT_GT(api.frozen.polls, 1);
    EXPECT_EQ(api.frozen.lowest, head) << "no block while paused";
    EXPECT_EQ(api.frozen.highest, head) << "no block while paused";
    EXPECT_EQ(api.frozen.times, std::vector<std::string>{text_of(api.at_pause, "head_block_time")});

    EXPECT_EQ(api.resume.status, 200);
    EXPECT_EQ(api.resume.body, R"({"result":"ok"})");
    EXPECT_EQ(api.paused_after.body, "false");
    EXPECT_GT(head_of(api.after_resume), head) << "blocks again after resume";
}

struct PausedStartSeen {
    Reply paused;
    std::optional<ChainStatus> status;
    Frozen frozen;
    Reply resume;
    boost::json::object after_resume;
};

asio::awaitable<void> start_paused(std::uint16_t port, PausedStartSeen& seen) {
    seen.paused = co_await call(port, "GET", "/v1/producer/paused");
    seen.status = co_await fetch_status(port);
    seen.frozen = co_await watch_head(port);
    seen.resume = co_await call(port, "POST", "/v1/producer/resume");
    seen.after_resume = co_await wait_head_past(port, seen.frozen.highest);
}

TEST(SimNode, StartsPausedWithPausedAndProducesOnResume) {
    TempDir dir;
    write_text(dir.path() / "data" / "height", "40\n");
    Seen seen;
    PausedStartSeen api;
    Scenario scenario = [&api](std::uint16_t port) { return start_paused(port, api); };
    with_serving_node(dir.path(), {"--paused"}, scenario, seen);
    EXPECT_EQ(api.paused.body, "true");
    ASSERT_TRUE(api.status);
    EXPECT_EQ(api.status->height, 40);
    EXPECT_EQ(api.frozen.lowest, 40);
    EXPECT_EQ(api.frozen.highest, 40) << "no block before resume";
    EXPECT_GE(height_in(dir.path() / "data"), head_of(api.after_resume));
    EXPECT_EQ(api.resume.body, R"({"result":"ok"})");
    EXPECT_GT(head_of(api.after_resume), 40);
}

asio::awaitable<void> read_chain_id(std::uint16_t port, std::string& chain_id) {
    chain_id = text_of(co_await get_info(port), "chain_id");
}

TEST(SimNode, ChainIdOptionSetsTheChainId) {
    TempDir dir;
    Seen seen;
    const std::string given = "ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789";
    std::string chain_id;
    Scenario scenario = [&chain_id](std::uint16_t port) { return read_chain_id(port, chain_id); };
    with_serving_node(dir.path(), {"--chain-id", given}, scenario, seen);
    EXPECT_EQ(chain_id, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
}

struct ErrorsSeen {
    Reply unknown;
    Reply unknown_get;
    Reply pause_by_get;
    Reply info_by_put;
    Reply paused;
};

asio::awaitable<void> call_wrongly(std::uint16_t port, ErrorsSeen& seen) {
    seen.unknown = co_await call(port, "POST", "/v1/chain/get_block", R"({"block_num_or_id":1})");
    seen.unknown_get = co_await call(port, "GET", "/v1/nope");
    seen.pause_by_get = co_await call(port, "GET", "/v1/producer/pause");
    seen.info_by_put = co_await call(port, "PUT", "/v1/chain/get_info");
    seen.paused = co_await call(port, "GET", "/v1/producer/paused");
}

TEST(SimNode, UnknownNodeosEndpointsAre404AndWrongMethods405) {
    TempDir dir;
    Seen seen;
    ErrorsSeen api;
    Scenario scenario = [&api](std::uint16_t port) { return call_wrongly(port, api); };
    with_serving_node(dir.path(), {}, scenario, seen);
    for (const auto* unknown : {&api.unknown, &api.unknown_get}) {
        EXPECT_EQ(unknown->status, 404);
        EXPECT_EQ(unknown->content_type, "application/json");
        boost::system::error_code ec;
        auto body = boost::json::parse(unknown->body, ec);
        ASSERT_FALSE(ec) << unknown->body;
        EXPECT_EQ(body.at("code").as_int64(), 404);
        EXPECT_EQ(body.at("message").as_string(), "Not Found");
        EXPECT_EQ(body.at("error").at("what").as_string(), "unknown endpoint");
    }
    EXPECT_EQ(api.pause_by_get.status, 405);
    EXPECT_EQ(api.pause_by_get.allow, "POST");
    EXPECT_EQ(api.info_by_put.status, 405);
    EXPECT_EQ(api.info_by_put.allow, "GET, POST");
    EXPECT_EQ(api.paused.body, "false") << "a refused pause does not pause";
}

}  // namespace
}  // namespace aviary::drivers
