#include "support/peer_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "support/ports.hpp"
#include "support/server_process.hpp"

#ifndef AVIARY_SOURCE_DIR
#error "AVIARY_SOURCE_DIR must name the source tree"
#endif

namespace aviary::test {
bool wait_for_tcp(int port, std::chrono::milliseconds deadline) {
    return wait_until(
        [port] {
            int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            auto addr = loopback(port);
            bool up =
                fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
            if (fd >= 0) {
                ::close(fd);
            }
            return up;
        },
        deadline);
}

PeerProcess::PeerProcess(std::vector<std::string> argv, std::string log_path)
    : log_path_(std::move(log_path)) {
    pid_ = ::fork();
    if (pid_ == 0) {
        ::setpgid(0, 0);
        // A test killed by its timeout runs no destructor: the peer goes with it.
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        std::vector<char*> args;
        for (auto& arg : argv) {
            args.push_back(arg.data());
        }
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        _exit(127);
    }
    if (pid_ > 0) {
        ::setpgid(pid_, pid_);  // also here: no race with the child's own call
    }
}

PeerProcess::~PeerProcess() {
    stop();
}

bool PeerProcess::running() {
    if (pid_ <= 0) {
        return false;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        ::kill(-pid_, SIGTERM);  // what it left in its group
        pid_ = -1;
        return false;
    }
    return true;
}

void PeerProcess::stop() {
    if (pid_ <= 0) {
        return;
    }
    ::kill(-pid_, SIGTERM);
    if (wait_for_exit(pid_, std::chrono::seconds{5}) < 0) {
        ::kill(-pid_, SIGKILL);
    }
    ::kill(-pid_, SIGKILL);  // sessions the leader left behind
    pid_ = -1;
}

std::string PeerProcess::log() const {
    std::ifstream in{log_path_};
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

bool PeerProcess::wait_for_log(const std::string& text, std::chrono::milliseconds deadline) {
    return wait_until([&] { return log().find(text) != std::string::npos || !running(); },
                      deadline) &&
           log().find(text) != std::string::npos;
}

std::string peer_script(const std::string& name) {
    return std::string{AVIARY_SOURCE_DIR} + "/tests/support/peers/" + name;
}

}  // namespace aviary::test
