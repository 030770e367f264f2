#pragma once
// What the `aviary supervise` integration tests share: a sidecar run as a real process, the
// sim node's command line, and small helpers.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "net/net.hpp"
#include "support/server_process.hpp"

namespace aviary::test {

inline std::string shell_quote(const std::string& s) {
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

inline std::string read_file(const std::string& path) {
    std::ifstream in{path};
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A sidecar started as `aviary supervise ARGS -- NODE...` in its own process group, its stdout
/// and stderr in two files of its own temp dir; SIGTERM and reaped by the destructor, and by
/// the kernel when the test process dies.
class Sidecar {
public:
    Sidecar(std::vector<std::string> args,
            std::vector<std::string> node,
            std::string state_dir = {},
            std::string config_yaml = {},
            std::string stdout_path = {})
        : state_dir_(state_dir.empty() ? dir_.path() + "/state" : std::move(state_dir)) {
        std::string line = "exec " + shell_quote(AVIARY_BINARY) + " supervise";
        if (!config_yaml.empty()) {
            std::ofstream{dir_.path() + "/node.yaml"} << config_yaml;
            line += " --config " + shell_quote(dir_.path() + "/node.yaml");
        }
        line += " --control 127.0.0.1:0 --state-dir " + shell_quote(state_dir_);
        for (const auto& a : args) {
            line += ' ';
            line += shell_quote(a);
        }
        line += " --";
        for (const auto& a : node) {
            line += ' ';
            line += shell_quote(a);
        }
        line += " > " + shell_quote(stdout_path.empty() ? out_path() : stdout_path) + " 2> " +
                shell_quote(err_path());
        pid_ = ::fork();
        if (pid_ == 0) {
            ::setpgid(0, 0);
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
    }
    ~Sidecar() {
        if (pid_ > 0 && exit_code_ < 0) {
            ::kill(pid_, SIGTERM);
            (void)wait_for_exit(pid_, std::chrono::seconds{30});
        }
    }
    Sidecar(const Sidecar&) = delete;
    Sidecar& operator=(const Sidecar&) = delete;

    /// The sidecar's exit code (128+N for signal N), or -1 after the deadline.
    int wait_exit(std::chrono::milliseconds deadline = std::chrono::seconds{30}) {
        if (exit_code_ < 0) {
            exit_code_ = wait_for_exit(pid_, deadline);
        }
        return exit_code_;
    }
    /// SIGKILL to the sidecar alone (its node dies with it), reaped.
    void kill_hard() {
        ::kill(pid_, SIGKILL);
        (void)wait_exit();
    }
    /// The sidecar's pid (the shell exec'd into it).
    pid_t pid_of_sidecar() const { return pid_; }

    std::string out_path() const { return dir_.path() + "/out"; }
    std::string err_path() const { return dir_.path() + "/err"; }
    std::string out() const { return read_file(out_path()); }
    std::string err() const { return read_file(err_path()); }

    /// The control and proxy addresses from the start line.
    bool wait_started() {
        static const std::regex line{R"(control=(\S+) proxy=(\S+))"};
        std::smatch m;
        return wait_until([&] {
            const std::string text = err();
            if (!std::regex_search(text, m, line)) {
                return false;
            }
            control_ = m[1];
            proxy_ = m[2];
            return true;
        });
    }
    const std::string& control() const { return control_; }
    const std::string& proxy() const { return proxy_; }

    net::ClientResponse call(const std::string& method,
                             const std::string& target,
                             const std::string& address = {}) {
        auto response = net::fetch_sync(
            net::ClientRequest{.method = method,
                               .url = "http://" + (address.empty() ? control_ : address) + target,
                               .timeout = std::chrono::seconds{60}});
        EXPECT_TRUE(response) << method << " " << target << ": "
                              << (response ? "" : response.error().message);
        return response ? *response : net::ClientResponse{};
    }
    /// POST /v1/COMMAND?sync=true (more query after `&`): the command's outcome.
    net::ClientResponse command(const std::string& name, const std::string& query = {}) {
        return call("POST", "/v1/" + name + "?sync=true" + (query.empty() ? "" : "&" + query));
    }
    boost::json::object status() {
        auto response = call("GET", "/v1/status");
        boost::system::error_code ec;
        auto value = boost::json::parse(response.body, ec);
        if (ec || !value.is_object()) {
            ADD_FAILURE() << "status is not a JSON object: " << response.body;
            return {};
        }
        return value.as_object();
    }
    std::int64_t pid() { return status()["pid"].as_int64(); }

    const std::string& state_dir() const { return state_dir_; }

private:
    TempDir dir_;
    std::string state_dir_;
    pid_t pid_ = -1;
    int exit_code_ = -1;
    std::string control_;
    std::string proxy_;
};

/// The sim node on `port`, keeping its data in `dir`, a block every 50 ms.
inline std::vector<std::string> sim_node(const std::string& dir, int port) {
    return {AVIARY_BINARY,      "sim-node",
            "--data-dir",       dir,
            "--version",        "v1.0.0",
            "--port-file",      dir + "/port",
            "--listen",         "127.0.0.1:" + std::to_string(port),
            "--block-interval", "50ms"};
}

}  // namespace aviary::test
