// The seed's runbook lines, as written, against a sidecar on its default ports: control on
// 127.0.0.1:8080, the gated proxy on :9999, the node (aviary's sim node speaking nodeos's API)
// on 127.0.0.1:8888. The ports are fixed, so ctest runs this alone (RESOURCE_LOCK).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <string>

#include "support/server_process.hpp"

namespace aviary::test {
namespace {

using namespace std::chrono_literals;

TEST(SuperviseRunbook, TheSeedsCurlLinesWorkAsWritten) {
    TempDir dir;
    const std::string node = std::string{AVIARY_BINARY} + " sim-node --data-dir " + dir.path() +
                             "/node --version v1.0.0 --port-file " + dir.path() +
                             "/port --listen 127.0.0.1:8888 --block-interval 50ms";
    const std::string line = "exec " + std::string{AVIARY_BINARY} +
                             " supervise --chain sim --state-dir " + dir.path() + "/state -- " +
                             node + " > " + dir.path() + "/out 2> " + dir.path() + "/err";
    pid_t sidecar = ::fork();
    ASSERT_GE(sidecar, 0);
    if (sidecar == 0) {
        ::setpgid(0, 0);
        ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    struct Reap {
        pid_t pid;
        ~Reap() {
            ::kill(pid, SIGTERM);
            (void)wait_for_exit(pid, 30s);
        }
    } reap{sidecar};

    ASSERT_TRUE(wait_until([] {
        return run_command("curl -s localhost:8080/v1/nodeos/healthz").output == "ready";
    })) << run_command("cat " + dir.path() + "/err").output;

    // HOWTO SWITCH BP, step 1: which node is producing.
    auto paused = run_command("curl -s -w \"\\n\" localhost:8888/v1/producer/paused");
    EXPECT_EQ(paused.status, 0);
    EXPECT_EQ(paused.output, "false\n");
    // The node's API through the gated proxy.
    auto info = run_command("curl -s --fail localhost:9999/v1/chain/get_info");
    EXPECT_EQ(info.status, 0);
    EXPECT_NE(info.output.find("\"head_block_num\""), std::string::npos) << info.output;

    // Step 5, on the source node.
    auto maintenance =
        run_command("curl -s --fail -XPOST localhost:8080/v1/nodeos/maintenance?sync=true");
    EXPECT_EQ(maintenance.status, 0);
    EXPECT_EQ(maintenance.output, "Success: maintenance completed");
    auto closed = run_command("curl -s -w ' %{http_code}' localhost:9999/v1/chain/get_info");
    EXPECT_EQ(closed.output, "maintenance 503");
    // ... and on the destination: bp mode arrives with backups and the hand-off.
    auto production =
        run_command("curl -s -XPOST localhost:8080/v1/nodeos/safely_resume_production?sync=true");
    EXPECT_EQ(production.status, 0);
    EXPECT_EQ(production.output,
              "ERROR: safely_resume_production failed: not supported without bp mode");
    auto failing = run_command(
        "curl -s --fail -XPOST localhost:8080/v1/nodeos/safely_resume_production?sync=true");
    EXPECT_NE(failing.status, 0) << "--fail sees the 500";

    auto resumed = run_command("curl -s --fail -XPOST localhost:8080/v1/nodeos/resume?sync=true");
    EXPECT_EQ(resumed.status, 0);
    EXPECT_EQ(resumed.output, "Success: resume completed");
    EXPECT_TRUE(wait_until(
        [] { return run_command("curl -s --fail localhost:9999/v1/chain/get_info").status == 0; }));
}

}  // namespace
}  // namespace aviary::test
