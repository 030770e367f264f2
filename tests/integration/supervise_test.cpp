// `aviary supervise` through the real binary: the node is a real child process (aviary's sim
// node speaking nodeos's API, or small shell programs that crash, ignore SIGTERM or flood), and
// the control API and gated proxy are spoken over real HTTP (docs/supervise.md).
#include <gtest/gtest.h>
#include <signal.h>
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
#include "support/ports.hpp"
#include "support/server_process.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') {
            out += "'\\''";
        } else {
            out.push_back(c);
        }
    }
    return out + "'";
}

/// A sidecar started as `aviary supervise ARGS -- NODE...`, its stdout and stderr in two files
/// of its own temp dir.
class Sidecar {
public:
    Sidecar(std::vector<std::string> args,
            std::vector<std::string> node,
            std::string state_dir = {},
            std::string config_yaml = {})
        : state_dir_(state_dir.empty() ? dir_.path() + "/state" : std::move(state_dir)) {
        std::string line = "exec " + shell_quote(AVIARY_BINARY) + " supervise";
        if (!config_yaml.empty()) {
            std::ofstream{dir_.path() + "/node.yaml"} << config_yaml;
            line += " --config " + shell_quote(dir_.path() + "/node.yaml");
        }
        line += " --control 127.0.0.1:0 --state-dir " + shell_quote(state_dir_);
        for (const auto& a : args) {
            line += " " + shell_quote(a);
        }
        line += " --";
        for (const auto& a : node) {
            line += " " + shell_quote(a);
        }
        line += " > " + shell_quote(out_path()) + " 2> " + shell_quote(err_path());
        pid_ = ::fork();
        if (pid_ == 0) {
            ::setpgid(0, 0);
            ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
    }
    ~Sidecar() {
        if (pid_ > 0 && exit_code_ < 0) {
            ::kill(pid_, SIGTERM);
            (void)wait_for_exit(pid_, 30s);
        }
    }
    Sidecar(const Sidecar&) = delete;
    Sidecar& operator=(const Sidecar&) = delete;

    /// The sidecar's exit code (128+N for signal N), or -1 after the deadline.
    int wait_exit(std::chrono::milliseconds deadline = 30s) {
        if (exit_code_ < 0) {
            exit_code_ = wait_for_exit(pid_, deadline);
        }
        return exit_code_;
    }
    /// The sidecar's pid (the shell exec'd into it).
    pid_t pid_of_sidecar() const { return pid_; }

    std::string out_path() const { return dir_.path() + "/out"; }
    std::string err_path() const { return dir_.path() + "/err"; }
    std::string out() const { return read(out_path()); }
    std::string err() const { return read(err_path()); }

    /// The control and proxy addresses from the start line.
    bool wait_started() {
        static const std::regex line{R"(control=(\S+) proxy=(\S+))"};
        std::smatch m;
        bool found = wait_until([&] {
            std::string text = err();
            if (!std::regex_search(text, m, line)) {
                return false;
            }
            control_ = m[1];
            proxy_ = m[2];
            return true;
        });
        return found;
    }
    const std::string& control() const { return control_; }
    const std::string& proxy() const { return proxy_; }

    net::ClientResponse call(const std::string& method,
                             const std::string& target,
                             const std::string& address = {}) {
        auto response = net::fetch_sync(
            net::ClientRequest{.method = method,
                               .url = "http://" + (address.empty() ? control_ : address) + target,
                               .timeout = 60s});
        EXPECT_TRUE(response) << method << " " << target << ": "
                              << (response ? "" : response.error().message);
        return response ? *response : net::ClientResponse{};
    }
    json::object status() {
        auto response = call("GET", "/v1/status");
        boost::system::error_code ec;
        auto value = json::parse(response.body, ec);
        if (ec || !value.is_object()) {
            ADD_FAILURE() << "status is not a JSON object: " << response.body;
            return {};
        }
        return value.as_object();
    }
    std::int64_t pid() { return status()["pid"].as_int64(); }

    const std::string& state_dir() const { return state_dir_; }

private:
    static std::string read(const std::string& path) {
        std::ifstream in{path};
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }

    TempDir dir_;
    std::string state_dir_;
    pid_t pid_ = -1;
    int exit_code_ = -1;
    std::string control_;
    std::string proxy_;
};

bool process_alive(pid_t pid) {
    std::ifstream stat{"/proc/" + std::to_string(pid) + "/stat"};
    std::string text;
    if (!std::getline(stat, text)) {
        return false;
    }
    auto close = text.rfind(')');
    return close != std::string::npos && text.size() > close + 2 && text[close + 2] != 'Z';
}

std::vector<std::string> sim_node(const std::string& dir, int port) {
    return {AVIARY_BINARY,      "sim-node",
            "--data-dir",       dir,
            "--version",        "v1.0.0",
            "--port-file",      dir + "/port",
            "--listen",         "127.0.0.1:" + std::to_string(port),
            "--block-interval", "50ms"};
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

}  // namespace
}  // namespace aviary::test
