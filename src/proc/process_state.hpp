#pragma once
// Private to proc: what a Process owns, shared by process.cpp and spawn.cpp.
#include <boost/asio/posix/stream_descriptor.hpp>
#include <optional>

#include "proc/proc.hpp"

namespace aviary::proc {

struct Process::State {
    State(asio::any_io_executor executor, pid_t child, int pidfd, int out_fd, int err_fd);
    State(const State&) = delete;
    State& operator=(const State&) = delete;
    ~State();

    /// Reaps the leader if it has ended; sets status. Never blocks.
    void reap_if_exited();

    pid_t pid;
    asio::posix::stream_descriptor pidfd;
    asio::posix::stream_descriptor out;
    asio::posix::stream_descriptor err;
    std::optional<ExitStatus> status;
};

}  // namespace aviary::proc
