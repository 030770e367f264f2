#pragma once
// Test support: a real protocol peer (sshd, ipmi_sim, snmpd: tests/support/peers/*.sh) as a
// child process in its own process group, its output in a log file, ended with its whole group
// when the test is done.
#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "support/ports.hpp"

namespace aviary::test {

/// True once a TCP connection to 127.0.0.1:`port` succeeds, polling until `deadline`.
bool wait_for_tcp(int port, std::chrono::milliseconds deadline = std::chrono::seconds{15});

class PeerProcess {
public:
    /// Starts `argv` (argv[0] a path) with stdout and stderr appended to `log_path`, in a new
    /// process group.
    PeerProcess(std::vector<std::string> argv, std::string log_path);
    /// stop().
    ~PeerProcess();
    PeerProcess(const PeerProcess&) = delete;
    PeerProcess& operator=(const PeerProcess&) = delete;

    /// SIGTERM to the whole group, SIGKILL after 5 s; reaps the leader. Idempotent.
    void stop();
    bool running();
    /// What it printed so far.
    std::string log() const;
    /// True once `text` appears in the log, polling until `deadline` (false if it exits).
    bool wait_for_log(const std::string& text,
                      std::chrono::milliseconds deadline = std::chrono::seconds{15});

private:
    pid_t pid_ = -1;
    std::string log_path_;
};

/// The path of tests/support/peers/NAME in the source tree.
std::string peer_script(const std::string& name);

}  // namespace aviary::test
