#pragma once
// Test support: the real `aviary serve` binary as a child process on an ephemeral loopback
// port, in a temp data dir, spoken to over real HTTP.
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "net/net.hpp"

namespace aviary::test {

/// A fresh directory under $TMPDIR, removed by the destructor.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

/// Polls `condition` until it holds or `deadline` passes; true if it held.
bool wait_until(const std::function<bool()>& condition,
                std::chrono::milliseconds deadline = std::chrono::seconds{15});

/// Waits for child `pid` to exit; its exit code (128+N for signal N), or -1 after the deadline
/// (then it is killed and reaped).
int wait_for_exit(pid_t pid, std::chrono::milliseconds deadline = std::chrono::seconds{30});

/// Runs a shell command line, returning its exit status and what it printed on stdout.
struct CommandResult {
    int status = -1;
    std::string output;
};
CommandResult run_command(const std::string& command_line);

/// Opens a TCP connection to "HOST:PORT" (IPv4); the descriptor, or -1 if it fails.
int connect_to(const std::string& address);

/// Writes `request` as is to "HOST:PORT" (IPv4) and returns what the server sends until it
/// closes the connection or `within` passes. For requests a client library would not send:
/// a Content-Length past the limit with no body, a method nobody knows.
std::string raw_exchange(const std::string& address,
                         const std::string& request,
                         std::chrono::milliseconds within = std::chrono::seconds{10});

class ServerProcess {
public:
    /// `config_yaml` is written to DATA_DIR/aviary.yaml and passed with --config; empty means
    /// the embedded default. `data_dir` empty means a new temp dir owned by this object.
    explicit ServerProcess(std::string config_yaml = {},
                           std::string data_dir = {},
                           std::string listen = "127.0.0.1:0");
    ~ServerProcess();
    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;

    /// Starts serve and waits until it published its address and answers /healthz.
    /// Returns false (and the log in `log()`) if it exited or did not come up in time.
    bool start();
    /// Sends `signal` and waits for the exit; returns the exit status (128+N for a signal).
    int stop(int signal = 15);
    /// Sends `signal` without waiting.
    void send_signal(int signal);
    /// SIGKILL, no grace: what a crash looks like.
    void kill9();
    bool running();
    /// Waits for the process to exit on its own; its exit code, or -1 on timeout.
    int wait_exit(std::chrono::milliseconds deadline = std::chrono::seconds{15});

    /// For a config with server.tls: url() says https://, and start()'s health check, get()
    /// and post_json() verify the server with `tls`. Before start().
    void use_tls(net::ClientTls tls) { tls_ = std::move(tls); }
    const std::optional<net::ClientTls>& tls() const { return tls_; }

    const std::string& address() const { return address_; }  ///< "127.0.0.1:43210"
    std::string url(std::string_view path = "/") const;
    const std::string& data_dir() const { return data_dir_; }
    /// What serve printed (stdout and stderr).
    std::string log() const;

    core::Result<net::ClientResponse> get(std::string_view path) const;
    /// POST with Content-Type: application/json.
    core::Result<net::ClientResponse> post_json(std::string_view path, std::string body) const;

private:
    std::unique_ptr<TempDir> owned_dir_;
    std::string data_dir_;
    std::string config_path_;
    std::string listen_;
    std::string address_;
    std::optional<net::ClientTls> tls_;
    pid_t pid_ = -1;
    int exit_status_ = -1;
};

/// A JSON-RPC request body for a TweetyService method with one params object.
std::string rpc_body(std::string_view method, std::string_view params_json, int id = 68);

}  // namespace aviary::test
