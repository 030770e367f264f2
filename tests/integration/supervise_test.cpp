// `aviary supervise` through the real binary: the node is a real child process (aviary's sim
// node speaking nodeos's API, or small shell programs that crash, ignore SIGTERM or flood), and
// the control API and gated proxy are spoken over real HTTP (docs/supervise.md).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "net/net.hpp"
#include "rpc_helpers.hpp"
#include "supervise_support.hpp"
#include "support/peer_process.hpp"
#include "support/ports.hpp"
#include "support/server_process.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

bool process_alive(pid_t pid) {
    std::ifstream stat{"/proc/" + std::to_string(pid) + "/stat"};
    std::string text;
    if (!std::getline(stat, text)) {
        return false;
    }
    auto close = text.rfind(')');
    return close != std::string::npos && text.size() > close + 2 && text[close + 2] != 'Z';
}

TEST(Supervise, TheSeedsRunbookCallsAnswerVerbatim) {
    TempDir node_dir;
    const int port = free_port();
    Sidecar sidecar{{"--chain", "sim", "--proxy", "127.0.0.1:0", "--upstream",
                     "http://127.0.0.1:" + std::to_string(port)},
                    sim_node(node_dir.path(), port)};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    EXPECT_EQ(sidecar.call("GET", "/v1/ping").body, "pong");
    EXPECT_EQ(sidecar.call("GET", "/v1/nodeos/ping").body, "pong");
    ASSERT_TRUE(wait_until([&] { return sidecar.call("GET", "/healthz").status == 200; }))
        << sidecar.call("GET", "/healthz").body;
    EXPECT_EQ(sidecar.call("GET", "/v1/nodeos/healthz").body, "ready");
    EXPECT_EQ(sidecar.call("GET", "/v1/is_running").body, R"({"is_running":true})");

    // Through the proxy, the node's own API.
    auto info = sidecar.call("POST", "/v1/chain/get_info", sidecar.proxy());
    EXPECT_EQ(info.status, 200) << info.body;
    EXPECT_NE(info.body.find("head_block_num"), std::string::npos) << info.body;

    auto submitted = sidecar.call("POST", "/v1/nodeos/maintenance?sync=true");
    EXPECT_EQ(submitted.status, 200);
    EXPECT_EQ(submitted.body, "Success: maintenance completed");
    EXPECT_EQ(sidecar.call("GET", "/v1/is_running").body, R"({"is_running":false})");
    auto health = sidecar.call("GET", "/v1/healthz");
    EXPECT_EQ(health.status, 503);
    EXPECT_EQ(health.body, "not ready: maintenance");
    auto gated = sidecar.call("POST", "/v1/chain/get_info", sidecar.proxy());
    EXPECT_EQ(gated.status, 503);
    EXPECT_EQ(gated.body, "maintenance");

    auto production = sidecar.call("POST", "/v1/nodeos/safely_resume_production?sync=true");
    EXPECT_EQ(production.status, 500);
    EXPECT_EQ(production.body,
              "ERROR: safely_resume_production failed: not supported without bp mode");

    auto resumed = sidecar.call("POST", "/v1/resume");
    EXPECT_EQ(resumed.status, 201);
    EXPECT_EQ(resumed.body, "resume command submitted");
    EXPECT_TRUE(wait_until([&] { return sidecar.call("GET", "/healthz").status == 200; }));
}

TEST(Supervise, UnknownPathsAndWrongMethodsAreRefusedPlainly) {
    Sidecar sidecar{{"--chain", "none", "--proxy", ""}, {"/bin/sleep", "600"}};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    auto unknown = sidecar.call("GET", "/v1/nodeos/frobnicate");
    EXPECT_EQ(unknown.status, 404);
    EXPECT_EQ(unknown.body, "not found: /v1/nodeos/frobnicate");
    EXPECT_EQ(sidecar.call("GET", "/elsewhere").status, 404);
    auto wrong = sidecar.call("GET", "/v1/maintenance");
    EXPECT_EQ(wrong.status, 405);
    EXPECT_EQ(wrong.body, "method not allowed: use POST");
    EXPECT_EQ(sidecar.call("POST", "/v1/ping").status, 405);
    EXPECT_EQ(sidecar.call("GET", "/v1/logs?tail=0").status, 400);
    EXPECT_EQ(sidecar.call("GET", "/v1/ping").body, "pong") << "the sidecar is still up";
}

TEST(Supervise, AKilledNodeIsRestartedAndCounted) {
    Sidecar sidecar{{"--chain", "none", "--proxy", ""}, {"/bin/sleep", "600"}};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.pid() != 0; }));
    const auto first = sidecar.pid();
    ASSERT_EQ(::kill(static_cast<pid_t>(first), SIGKILL), 0);
    ASSERT_TRUE(wait_until([&] {
        auto s = sidecar.status();
        return s["pid"].as_int64() != 0 && s["pid"].as_int64() != first;
    }));
    auto s = sidecar.status();
    EXPECT_EQ(s["restarts"].to_number<std::int64_t>(), 1);
    EXPECT_EQ(s["last_exit"].as_object()["signal"].as_int64(), SIGKILL);
    auto metrics = sidecar.call("GET", "/metrics").body;
    EXPECT_NE(metrics.find(R"(aviary_supervised_restarts_total{node="node"} 1)"), std::string::npos)
        << metrics;
}

TEST(Supervise, RelaysTheNodesOutputByteForByteInOrder) {
    // 200,000 lines as fast as the node can print them: none lost, none reordered.
    Sidecar sidecar{{"--chain", "none", "--proxy", "", "--restart", "never"},
                    {"/usr/bin/seq", "1", "200000"}};
    ASSERT_EQ(sidecar.wait_exit(), 0) << sidecar.err();
    auto expected = run_command("/usr/bin/seq 1 200000");
    ASSERT_EQ(expected.status, 0);
    EXPECT_EQ(sidecar.out().size(), expected.output.size());
    EXPECT_TRUE(sidecar.out() == expected.output) << "the relayed bytes differ";
}

TEST(Supervise, TheRelayKeepsCarriageReturnsLongLinesAndAnUnfinishedLastLine) {
    // What the line splitter changes for the API's ring ('\r' dropped, a line cut at 64 KiB, a
    // '\n' after the last line) never reaches the relayed bytes.
    Sidecar sidecar{{"--chain", "none", "--proxy", "", "--restart", "never"},
                    {"/bin/sh", "-c",
                     "printf 'a\\r\\nb\\r\\n'; head -c 100000 /dev/zero | tr '\\0' x; "
                     "printf '\\nlast'; printf 'e\\r\\ntail' >&2"}};
    ASSERT_EQ(sidecar.wait_exit(), 0) << sidecar.err();
    const std::string expected = "a\r\nb\r\n" + std::string(100000, 'x') + "\nlast";
    EXPECT_EQ(sidecar.out().size(), expected.size());
    EXPECT_TRUE(sidecar.out() == expected) << "the relayed bytes differ";
    EXPECT_NE(sidecar.err().find("e\r\ntail"), std::string::npos) << sidecar.err();
}

TEST(Supervise, ANodeThatIgnoresTermIsSignalledAgainThenKilledAfterTheGrace) {
    Sidecar sidecar{{"--chain", "none", "--proxy", ""},
                    {"/bin/sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"},
                    {},
                    "stop:\n  repeat: 100ms\n  grace: 600ms\n"};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.out().find("up\n") != std::string::npos; }));
    const auto pid = sidecar.pid();
    auto stopped = sidecar.call("POST", "/v1/maintenance?sync=true");
    EXPECT_EQ(stopped.body, "Success: maintenance completed");
    auto s = sidecar.status();
    EXPECT_EQ(s["pid"].as_int64(), 0);
    EXPECT_EQ(s["last_exit"].as_object()["signal"].as_int64(), SIGKILL);
    EXPECT_FALSE(process_alive(static_cast<pid_t>(pid)));
    const auto err = sidecar.err();
    EXPECT_NE(err.find("signal 15 again"), std::string::npos) << err;
    EXPECT_NE(err.find("SIGKILL to its group"), std::string::npos) << err;
}

TEST(Supervise, ACrashLoopBacksOffRaisesTheStartLimitAlertAndNeverStopsTrying) {
    Sidecar sidecar{{"--chain", "none", "--proxy", ""},
                    {"/bin/sh", "-c", "exit 3"},
                    {},
                    "restart:\n  min_delay: 10ms\n  max_delay: 40ms\n  start_limit_burst: 3\n"
                    "  start_limit_interval: 60s\n  limited_delay: 150ms\n"};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] {
        auto s = sidecar.status();
        return s["start_limit_hit"].as_bool() && s["restarts"].to_number<std::int64_t>() >= 4;
    })) << sidecar.err();
    auto s = sidecar.status();
    EXPECT_EQ(s["last_exit"].as_object()["code"].as_int64(), 3);
    const auto metrics = sidecar.call("GET", "/metrics").body;
    EXPECT_NE(metrics.find(R"(aviary_supervised_start_limit_hit{node="node"} 1)"),
              std::string::npos)
        << metrics;
    EXPECT_NE(sidecar.err().find("start limit hit"), std::string::npos) << sidecar.err();
    // Still trying, slowly: more starts come.
    const auto restarts = s["restarts"].to_number<std::int64_t>();
    EXPECT_TRUE(wait_until(
        [&] { return sidecar.status()["restarts"].to_number<std::int64_t>() > restarts + 1; }));
    EXPECT_NE(sidecar.call("GET", "/healthz").status, 200);
}

TEST(Supervise, SigtermIsForwardedAndTheSidecarExitsWithTheNodesStatus) {
    Sidecar sidecar{{"--chain", "none", "--proxy", ""},
                    {"/bin/sh", "-c",
                     "trap 'echo bye; exit 7' TERM; echo up; "
                     "while :; do sleep 0.05; done"}};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.out().find("up\n") != std::string::npos; }));
    ::kill(sidecar.pid_of_sidecar(), SIGTERM);
    EXPECT_EQ(sidecar.wait_exit(), 7) << sidecar.err();
    EXPECT_NE(sidecar.out().find("bye\n"), std::string::npos) << "the node saw the TERM";
}

TEST(Supervise, AKilledSidecarTakesItsNodeWithIt) {
    Sidecar sidecar{{"--chain", "none", "--proxy", ""}, {"/bin/sleep", "600"}};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.pid() != 0; }));
    const auto node = static_cast<pid_t>(sidecar.pid());
    ASSERT_TRUE(process_alive(node));
    ::kill(sidecar.pid_of_sidecar(), SIGKILL);
    EXPECT_EQ(sidecar.wait_exit(), 128 + SIGKILL);
    EXPECT_TRUE(wait_until([&] { return !process_alive(node); })) << "the node outlived it";
}

TEST(Supervise, MaintenanceSurvivesARestartOfTheSidecar) {
    TempDir state;
    {
        Sidecar first{{"--chain", "none", "--proxy", ""}, {"/bin/sleep", "600"}, state.path()};
        ASSERT_TRUE(first.wait_started()) << first.err();
        EXPECT_EQ(first.call("POST", "/v1/maintenance?sync=true").body,
                  "Success: maintenance completed");
        ::kill(first.pid_of_sidecar(), SIGTERM);
        // The node's last status, as the seed's trap script exits: sleep ended by SIGTERM.
        EXPECT_EQ(first.wait_exit(), 128 + SIGTERM) << first.err();
    }
    Sidecar second{{"--chain", "none", "--proxy", ""}, {"/bin/sleep", "600"}, state.path()};
    ASSERT_TRUE(second.wait_started()) << second.err();
    auto s = second.status();
    EXPECT_TRUE(s["maintenance"].as_bool());
    EXPECT_EQ(s["pid"].as_int64(), 0);
    EXPECT_EQ(s["state"].as_string(), "maintenance");
    EXPECT_EQ(second.call("GET", "/healthz").body, "not ready: maintenance");
    EXPECT_EQ(second.call("POST", "/v1/nodeos/resume?sync=true").body, "Success: resume completed");
    EXPECT_NE(second.pid(), 0);
    EXPECT_FALSE(second.status()["maintenance"].as_bool());
}

TEST(Supervise, ReloadStartsANewProcessAndIsRefusedInMaintenance) {
    Sidecar sidecar{{"--chain", "none", "--proxy", ""}, {"/bin/sleep", "600"}};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.pid() != 0; }));
    const auto first = sidecar.pid();
    EXPECT_EQ(sidecar.call("POST", "/v1/reload?sync=true").body, "Success: reload completed");
    const auto second = sidecar.pid();
    EXPECT_NE(second, 0);
    EXPECT_NE(second, first);
    EXPECT_EQ(sidecar.status()["restarts"].to_number<std::int64_t>(), 0)
        << "an asked-for start is not a restart";
    EXPECT_EQ(sidecar.call("POST", "/v1/maintenance?sync=true").status, 200);
    auto refused = sidecar.call("POST", "/v1/safely_reload?sync=true");
    EXPECT_EQ(refused.status, 500);
    EXPECT_EQ(refused.body,
              "ERROR: safely_reload failed: the node is in maintenance: resume it instead");
}

TEST(Supervise, TheProxySays502WithAReasonWhenTheUpstreamRefuses) {
    const int closed = free_port();
    Sidecar sidecar{
        {"--proxy", "127.0.0.1:0", "--upstream", "http://127.0.0.1:" + std::to_string(closed)},
        {"/bin/sleep", "600"},
        {},
        "chain: app\npreset:\n  readiness: process\n"};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.call("GET", "/healthz").status == 200; }));
    auto response = sidecar.call("GET", "/anything", sidecar.proxy());
    EXPECT_EQ(response.status, 502);
    EXPECT_NE(response.body.find(std::to_string(closed)), std::string::npos) << response.body;
    EXPECT_EQ(sidecar.call("GET", "/v1/ping").body, "pong");
}

TEST(Supervise, LogsAreKeptForTheApiAndTheCtlPrintsThem) {
    Sidecar sidecar{{"--chain", "none", "--proxy", ""},
                    {"/bin/sh", "-c", "echo one; echo two >&2; echo three; sleep 600"}};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.out().find("three\n") != std::string::npos; }));
    auto body = sidecar.call("GET", "/v1/logs?tail=2").body;
    auto value = json::parse(body);
    const auto& lines = value.at("lines").as_array();
    ASSERT_EQ(lines.size(), 2U) << body;
    // The stderr line may come before or after "three": the streams are separate pipes.
    std::vector<std::string> texts;
    for (const auto& line : lines) {
        texts.emplace_back(line.at("text").as_string());
    }
    EXPECT_TRUE(std::find(texts.begin(), texts.end(), "three") != texts.end()) << body;
    auto ctl = run_command(std::string{AVIARY_BINARY} + " supervise ctl logs --tail 3 --control " +
                           sidecar.control());
    EXPECT_EQ(ctl.status, 0);
    EXPECT_NE(ctl.output.find("one\n"), std::string::npos) << ctl.output;
    auto status = run_command(std::string{AVIARY_BINARY} + " supervise ctl status --control " +
                              sidecar.control());
    EXPECT_EQ(status.status, 0);
    EXPECT_NE(status.output.find("\"state\":\"running\""), std::string::npos) << status.output;
    auto maintenance =
        run_command(std::string{AVIARY_BINARY} + " supervise ctl maintenance --sync --control " +
                    sidecar.control());
    EXPECT_EQ(maintenance.status, 0);
    EXPECT_EQ(maintenance.output, "Success: maintenance completed\n");
}

TEST(Supervise, BadFlagsAndFilesAreRefusedSayingWhatAndWhere) {
    TempDir dir;
    auto bad_policy = run_command(std::string{AVIARY_BINARY} +
                                  " supervise --restart sometimes -- /bin/true 2>&1");
    EXPECT_EQ(bad_policy.status, 2);
    EXPECT_NE(bad_policy.output.find("--restart"), std::string::npos) << bad_policy.output;
    auto no_command = run_command(std::string{AVIARY_BINARY} + " supervise 2>&1");
    EXPECT_EQ(no_command.status, 2);
    EXPECT_NE(no_command.output.find("no command to supervise"), std::string::npos)
        << no_command.output;
    std::ofstream{dir.path() + "/node.yaml"} << "name: n\nrestart:\n  polcy: always\n";
    auto unknown_key = run_command(std::string{AVIARY_BINARY} + " supervise --config " +
                                   dir.path() + "/node.yaml -- /bin/true 2>&1");
    EXPECT_EQ(unknown_key.status, 2);
    EXPECT_NE(unknown_key.output.find("node.yaml:3:"), std::string::npos) << unknown_key.output;
    EXPECT_NE(unknown_key.output.find("restart.polcy"), std::string::npos) << unknown_key.output;
    auto missing = run_command(std::string{AVIARY_BINARY} + " supervise --state-dir " + dir.path() +
                               "/s -- /no/such/program 2>&1");
    EXPECT_EQ(missing.status, 1);
    EXPECT_NE(missing.output.find("cannot run \"/no/such/program\""), std::string::npos)
        << missing.output;
}

TEST(Supervise, APortAlreadyTakenIsNamedOnceAndTheNodeIsNotStarted) {
    TempDir dir;
    HeldPort taken;
    ASSERT_GT(taken.port(), 0);
    const std::string address = "127.0.0.1:" + std::to_string(taken.port());
    const std::string marker = dir.path() + "/node-ran";
    for (const std::string flag : {"--control", "--proxy"}) {
        const std::string other =
            flag == "--control" ? " --proxy 127.0.0.1:0" : " --control 127.0.0.1:0";
        auto refused = run_command(std::string{AVIARY_BINARY} + " supervise --state-dir " +
                                   dir.path() + "/s " + flag + " " + address + other +
                                   " -- /bin/sh -c 'touch " + marker + "; sleep 600' 2>&1");
        EXPECT_EQ(refused.status, 1) << flag << ": " << refused.output;
        const std::string expected = "cannot listen on " + address + ": bind failed: ";
        const auto first = refused.output.find(expected);
        ASSERT_NE(first, std::string::npos) << flag << ": " << refused.output;
        EXPECT_EQ(refused.output.find("cannot listen on", first + 1), std::string::npos)
            << flag << ": the address is named twice: " << refused.output;
        EXPECT_NE(refused.output.find("Address already in use"), std::string::npos)
            << refused.output;
        EXPECT_FALSE(std::filesystem::exists(marker)) << flag << ": the node was started";
    }
}

TEST(Supervise, ReadinessFollowsTheHeadStalledWhenProductionStopsReadyWhenItResumes) {
    TempDir node_dir;
    const int port = free_port();
    const std::string upstream = "http://127.0.0.1:" + std::to_string(port);
    Sidecar sidecar{{"--chain", "sim", "--proxy", "127.0.0.1:0", "--upstream", upstream},
                    sim_node(node_dir.path(), port),
                    {},
                    "synced:\n  interval: 50ms\n  stall_blocks: 2\n"};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    // Ready from the first answer (a new head is not stalled yet); then the head advances.
    ASSERT_TRUE(wait_until([&] {
        auto s = sidecar.status();
        return s["readiness"].as_string() == "ready" && s["height"].is_number() &&
               s["height"].to_number<std::int64_t>() > 0;
    })) << sidecar.call("GET", "/v1/status").body;
    auto s = sidecar.status();
    EXPECT_EQ(s["chain_id"].as_string().size(), 64U);

    auto paused = net::fetch_sync(
        net::ClientRequest{.method = "POST", .url = upstream + "/v1/producer/pause"});
    ASSERT_TRUE(paused && paused->status == 200);
    ASSERT_TRUE(wait_until([&] { return sidecar.status()["readiness"].as_string() == "stalled"; }))
        << sidecar.call("GET", "/v1/status").body;
    auto health = sidecar.call("GET", "/healthz");
    EXPECT_EQ(health.status, 503);
    EXPECT_TRUE(health.body.starts_with("not ready: stalled: head ")) << health.body;
    EXPECT_NE(health.body.find("has not advanced in"), std::string::npos) << health.body;
    auto gated = sidecar.call("POST", "/v1/chain/get_info", sidecar.proxy());
    EXPECT_EQ(gated.status, 503);
    EXPECT_EQ(gated.body, health.body) << "the proxy says why, as healthz does";

    auto resumed = net::fetch_sync(
        net::ClientRequest{.method = "POST", .url = upstream + "/v1/producer/resume"});
    ASSERT_TRUE(resumed && resumed->status == 200);
    EXPECT_TRUE(wait_until([&] { return sidecar.call("GET", "/healthz").status == 200; }));
    EXPECT_EQ(sidecar.call("POST", "/v1/chain/get_info", sidecar.proxy()).status, 200);
}

TEST(Supervise, TheNodeGetsItsWorkingDirEnvironmentAndUmask) {
    TempDir work;
    Sidecar sidecar{{"--chain", "none", "--proxy", ""},
                    {"/bin/sh", "-c", "umask; pwd; echo \"$AVIARY_TEST_VALUE\"; sleep 600"},
                    {},
                    "program:\n  cwd: " + work.path() +
                        "\n  umask: \"0027\"\n  env:\n    AVIARY_TEST_VALUE: from-the-file\n"};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    const std::string expected = "0027\n" + work.path() + "\nfrom-the-file\n";
    EXPECT_TRUE(wait_until([&] { return sidecar.out() == expected; })) << sidecar.out();
}

TEST(Supervise, AnUndrainedStdoutHoldsTheNodeBackButNotTheCommands) {
    // The sidecar's stdout is a FIFO nobody reads: the relay blocks, the node is held back,
    // and commands still run (the relay writes on a thread of its own).
    TempDir dir;
    const std::string fifo = dir.path() + "/stdout";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    ASSERT_GE(reader, 0);
    Sidecar sidecar{
        {"--chain", "none", "--proxy", ""}, {"/usr/bin/seq", "1", "10000000"}, {}, {}, fifo};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.pid() != 0; }));
    const auto first = sidecar.pid();
    EXPECT_EQ(sidecar.call("POST", "/v1/reload?sync=true").body, "Success: reload completed");
    EXPECT_NE(sidecar.pid(), first);
    EXPECT_EQ(sidecar.call("POST", "/v1/maintenance?sync=true").body,
              "Success: maintenance completed");
    ::close(reader);  // the relay's next write fails: the sidecar goes on
    EXPECT_EQ(sidecar.call("GET", "/v1/ping").body, "pong");
    ::kill(sidecar.pid_of_sidecar(), SIGTERM);
    EXPECT_EQ(sidecar.wait_exit(20s), 128 + SIGTERM) << "it exits, with the node's last status";
}

TEST(Supervise, TheProxyPassesAWebSocketAndAStreamedBodyThrough) {
    // The node is aviary serve itself: its job output followed over a WebSocket, through the
    // gated proxy.
    TempDir serve_dir;
    std::ofstream{serve_dir.path() + "/aviary.yaml"} << jobs_test_config();
    const int port = free_port();
    Sidecar sidecar{
        {"--chain", "none", "--proxy", "127.0.0.1:0", "--upstream",
         "http://127.0.0.1:" + std::to_string(port)},
        {AVIARY_BINARY, "serve", "--config", serve_dir.path() + "/aviary.yaml", "--listen",
         "127.0.0.1:" + std::to_string(port), "--data-dir", serve_dir.path()}};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.call("GET", "/healthz").status == 200; }, 60s))
        << sidecar.call("GET", "/healthz").body;
    auto submitted = net::fetch_sync(net::ClientRequest{
        .method = "POST",
        .url = "http://" + sidecar.proxy() + "/api/v1/nodes/lotus-0/actions/count",
        .timeout = 60s});
    ASSERT_TRUE(submitted) << submitted.error().message;
    ASSERT_EQ(submitted->status, 202) << submitted->body;
    const std::string id{json::parse(submitted->body).at("job").at("id").as_string()};
    auto client = net::WebSocketClient::connect(net::WebSocketConnect{
        .url = "ws://" + sidecar.proxy() + "/api/v1/jobs/" + id + "/output?follow=1",
        .timeout = 10s});
    ASSERT_TRUE(client) << client.error().message;
    std::vector<std::string> printed;
    bool finished = false;
    for (int i = 0; i < 100 && !finished; ++i) {  // five lines, maybe heartbeats, the end
        auto message = (*client)->read(30s);
        if (!message) {
            break;
        }
        auto line = json::parse(message->data);
        if (line.as_object().contains("finished")) {
            finished = true;
        } else if (line.as_object().contains("text") && line.at("stream") == "stdout") {
            printed.emplace_back(line.at("text").as_string());
        }
    }
    EXPECT_TRUE(finished);
    EXPECT_EQ(printed,
              (std::vector<std::string>{"line 1", "line 2", "line 3", "line 4", "line 5"}));
    // The same output as a streamed (chunked) body.
    auto streamed = run_command("curl -sN --max-time 30 'http://" + sidecar.proxy() +
                                "/api/v1/jobs/" + id + "/output?follow=1'");
    EXPECT_EQ(streamed.status, 0);
    EXPECT_NE(streamed.output.find("\"line 5\""), std::string::npos) << streamed.output;
    EXPECT_NE(streamed.output.find("\"finished\""), std::string::npos) << streamed.output;
}

TEST(Supervise, TheStartLimitAlertClearsOnceARunLastsStableAfter) {
    TempDir work;
    // Exits 3 on its first four starts, then stays up.
    const std::string script =
        "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; "
        "if [ $n -gt 4 ]; then exec sleep 600; fi; exit 3";
    Sidecar sidecar{{"--chain", "none", "--proxy", ""},
                    {"/bin/sh", "-c", script},
                    {},
                    "program:\n  cwd: " + work.path() +
                        "\nrestart:\n  min_delay: 10ms\n  max_delay: 20ms\n"
                        "  start_limit_burst: 2\n  limited_delay: 50ms\n  stable_after: 300ms\n"};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] {
        auto s = sidecar.status();
        return s["restarts"].to_number<std::int64_t>() == 4 && s["pid"].as_int64() != 0;
    })) << sidecar.err();
    EXPECT_NE(sidecar.err().find("start limit hit"), std::string::npos);
    EXPECT_TRUE(wait_until([&] { return !sidecar.status()["start_limit_hit"].as_bool(); }))
        << "cleared while the node runs";
    EXPECT_NE(sidecar.status()["pid"].as_int64(), 0);
    EXPECT_NE(sidecar.call("GET", "/metrics")
                  .body.find(R"(aviary_supervised_start_limit_hit{node="node"} 0)"),
              std::string::npos);
}

TEST(Supervise, SighupIsPassedToTheNode) {
    Sidecar sidecar{
        {"--chain", "none", "--proxy", ""},
        {"/bin/sh", "-c", "trap 'echo hup' HUP; echo up; while :; do sleep 0.05; done"}};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.out().find("up\n") != std::string::npos; }));
    const auto pid = sidecar.pid();
    ::kill(sidecar.pid_of_sidecar(), SIGHUP);
    EXPECT_TRUE(wait_until([&] { return sidecar.out().find("hup\n") != std::string::npos; }))
        << sidecar.out();
    EXPECT_EQ(sidecar.pid(), pid) << "the same node, still running";
    EXPECT_EQ(sidecar.call("GET", "/v1/ping").body, "pong");
}

TEST(Supervise, LogLinesBecomeMetricsWithABoundOnLabelSets) {
    Sidecar sidecar{{"--chain", "none", "--proxy", ""},
                    {"/bin/sh", "-c",
                     "echo 'height 41'; echo 'height 42'; echo 'an error here' >&2; "
                     "echo 'hello from a'; echo 'hello from b'; echo 'hello from c'; "
                     "echo 'hello from a'; echo d=-5; echo d=nan; echo d=3; echo done; "
                     "sleep 600"},
                    {},
                    "log_metrics:\n"
                    "  - name: app_height\n    kind: gauge\n    pattern: '^height ([0-9]+)'\n"
                    "    value: 1\n"
                    "  - name: app_errors_total\n    pattern: error\n    stream: stderr\n"
                    "  - name: app_hellos_total\n    pattern: 'hello from (\\w+)'\n"
                    "    labels: {who: 1}\n    max_series: 2\n"
                    // A counter cannot add -5 or nan: those lines are skipped, the sidecar lives.
                    "  - name: app_delta_total\n    pattern: 'd=(\\S+)'\n    value: 1\n"};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.out().find("done\n") != std::string::npos; }));
    std::string metrics;
    ASSERT_TRUE(wait_until([&] {
        metrics = sidecar.call("GET", "/metrics").body;
        return metrics.find(R"(app_hellos_total{node="node",who="a"} 2)") != std::string::npos;
    })) << metrics;
    EXPECT_NE(metrics.find(R"(app_height{node="node"} 42)"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find(R"(app_errors_total{node="node"} 1)"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find(R"(app_hellos_total{node="node",who="b"} 1)"), std::string::npos);
    EXPECT_EQ(metrics.find(R"(who="c")"), std::string::npos) << "past max_series";
    EXPECT_NE(metrics.find(R"(app_delta_total{node="node"} 3)"), std::string::npos) << metrics;
    EXPECT_NE(
        metrics.find(
            R"(aviary_supervised_log_rule_overflow_total{node="node",rule="app_hellos_total"} 1)"),
        std::string::npos)
        << metrics;
}

TEST(Supervise, MetricsArePromtoolClean) {
    TempDir node_dir;
    const int port = free_port();
    Sidecar sidecar{{"--chain", "sim", "--proxy", "127.0.0.1:0", "--upstream",
                     "http://127.0.0.1:" + std::to_string(port)},
                    sim_node(node_dir.path(), port)};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.call("GET", "/healthz").status == 200; }));
    (void)sidecar.call("POST", "/v1/chain/get_info", sidecar.proxy());  // a proxied request
    // The sim preset's log metric has seen a block line.
    std::string text;
    ASSERT_TRUE(wait_until([&] {
        text = sidecar.call("GET", "/metrics").body;
        return text.find("sim_head_block_num{node=\"node\"}") != std::string::npos;
    })) << text;
    for (const char* name :
         {"aviary_supervised_starts_total", "aviary_supervised_up", "aviary_supervised_readiness",
          "aviary_supervised_head_height", "aviary_supervised_log_lines_total",
          "aviary_supervised_proxy_requests_total",
          "aviary_supervised_proxy_request_duration_seconds_bucket"}) {
        EXPECT_NE(text.find(name), std::string::npos) << name;
    }
    TempDir dir;
    const auto path = dir.path() + "/metrics.txt";
    std::ofstream{path} << text;
    if (run_command("command -v promtool").status != 0) {
        GTEST_SKIP() << "promtool not installed (scripts/install-deps.sh installs it)";
    }
    auto check = run_command("promtool check metrics < " + path + " 2>&1");
    EXPECT_EQ(check.status, 0) << check.output;
    EXPECT_EQ(check.output, "") << check.output;
}

TEST(Supervise, TheControlApiAsksForATokenWhenTokensAreSetAndOffLoopbackNeedsThem) {
    Sidecar sidecar{{"--chain", "none", "--proxy", ""},
                    {"/bin/sleep", "600"},
                    {},
                    "auth:\n  tokens: [s3cret-token-for-tests]\n"};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    auto refused = sidecar.call("GET", "/v1/status");
    EXPECT_EQ(refused.status, 401);
    // The probe path stays open: it answers readiness (no upstream here), not 401.
    EXPECT_TRUE(sidecar.call("GET", "/healthz").body.starts_with("not ready: "));
    auto allowed = net::fetch_sync(
        net::ClientRequest{.url = "http://" + sidecar.control() + "/v1/status",
                           .headers = {{"Authorization", "Bearer s3cret-token-for-tests"}}});
    ASSERT_TRUE(allowed);
    EXPECT_EQ(allowed->status, 200);
    EXPECT_EQ(sidecar.err().find("s3cret-token-for-tests"), std::string::npos)
        << "a token never reaches the log";

    auto open = run_command(std::string{AVIARY_BINARY} +
                            " supervise --control 0.0.0.0:0 --proxy '' --state-dir " +
                            TempDir{}.path() + " -- /bin/true 2>&1");
    EXPECT_EQ(open.status, 2);
    EXPECT_NE(open.output.find("is not loopback: set auth.tokens"), std::string::npos)
        << open.output;
}

TEST(Supervise, ANodeFarBehindItsReferenceIsLaggingAndAnUnreachableReferenceIsIgnored) {
    // The reference makes a block every 5 ms, the node every 100 ms: the node falls behind.
    TempDir reference_dir;
    const int reference_port = free_port();
    auto reference_argv = sim_node(reference_dir.path(), reference_port);
    reference_argv.back() = "5ms";  // --block-interval
    auto reference = std::make_unique<PeerProcess>(reference_argv, reference_dir.path() + "/log");
    ASSERT_TRUE(wait_for_tcp(reference_port));
    TempDir node_dir;
    const int port = free_port();
    auto node_argv = sim_node(node_dir.path(), port);
    node_argv.back() = "100ms";
    Sidecar sidecar{
        {"--chain", "sim", "--proxy", "", "--upstream", "http://127.0.0.1:" + std::to_string(port)},
        node_argv,
        {},
        "synced:\n  interval: 50ms\n  reference: http://127.0.0.1:" +
            std::to_string(reference_port) + "\n  max_lag_blocks: 40\n"};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    std::string health;
    ASSERT_TRUE(wait_until([&] {
        health = sidecar.call("GET", "/healthz").body;
        return health.find("blocks behind the reference") != std::string::npos;
    })) << health;
    EXPECT_TRUE(health.starts_with("not ready: syncing: ") ||
                health.starts_with("not ready: lagging: "))
        << health;
    reference.reset();  // the reference goes away: this node is judged on its own again
    EXPECT_TRUE(wait_until([&] { return sidecar.call("GET", "/healthz").status == 200; }))
        << sidecar.call("GET", "/healthz").body;
}

TEST(Supervise, CommandsWaitingTheirTurnAreBounded) {
    // A maintenance that takes the whole grace (the node ignores TERM) holds the queue.
    Sidecar sidecar{{"--chain", "none", "--proxy", ""},
                    {"/bin/sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"},
                    {},
                    "stop:\n  repeat: 1s\n  grace: 2s\n"};
    ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
    ASSERT_TRUE(wait_until([&] { return sidecar.out().find("up\n") != std::string::npos; }));
    EXPECT_EQ(sidecar.call("POST", "/v1/maintenance").status, 201);
    int submitted = 0;
    int refused = 0;
    std::string refusal;
    for (int i = 0; i < 24; ++i) {
        auto response = sidecar.call("POST", "/v1/reload");
        if (response.status == 201) {
            ++submitted;
        } else {
            ++refused;
            refusal = response.body;
        }
    }
    EXPECT_LE(submitted, 17);  // 16 waiting, and maybe the maintenance had not started yet
    EXPECT_GE(refused, 7);
    EXPECT_TRUE(refusal.starts_with("ERROR: reload failed: ") &&
                refusal.find("commands are queued already") != std::string::npos)
        << refusal;
    EXPECT_EQ(sidecar.call("GET", "/v1/ping").body, "pong");
}

}  // namespace
}  // namespace aviary::test
