#pragma once
// Private to src/notify: what its senders share. Each sends one request at a time on a private
// loop that a pass runs on a scheduler thread, retries with exponential backoff, and shows a
// receiver's unexpected answer as one short line.
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "core/core.hpp"
#include "net/net.hpp"

namespace aviary::notify {

/// `text` on one line (newlines and tabs as spaces), cut to 200 bytes with "...".
std::string one_line(std::string_view text);

/// One exchange, its result wrapped in an optional so a race against a stop signal can tell
/// "answered" from "stopped".
boost::asio::awaitable<std::optional<core::Result<net::ClientResponse>>> fetch_once(
    net::HttpClient& client, net::ClientRequest request);

/// `base` doubling per attempt (the first attempt waits `base`), ±20 % jitter, never past
/// `max`, never below 1 ms.
core::Millis backoff(int attempt, core::Millis base, core::Millis max, std::mt19937_64& random);

/// An outbox sender's task on serve's scheduler: each run is one pass of the sender's
/// coroutine on a private io_context, on the scheduler's thread (its HttpClient lives on io(),
/// so keep-alive connections outlast a pass). A pass that ran out of its time budget with more
/// due runs again at once; otherwise the next run is what `next_due` says, or the interval.
/// stop() ends the request in flight and removes the task.
class OutboxTask {
public:
    /// One pass: sends what is due, sets `out_of_time` when it stopped at its budget.
    using Pass = std::function<boost::asio::awaitable<void>(bool& out_of_time)>;
    /// When something next falls due after a whole pass (nullopt: at the interval).
    using NextDue = std::function<std::optional<core::TimePoint>()>;

    OutboxTask(Pass pass, NextDue next_due);
    ~OutboxTask();  ///< stops
    OutboxTask(const OutboxTask&) = delete;
    OutboxTask& operator=(const OutboxTask&) = delete;

    boost::asio::io_context& io() { return io_; }
    /// Set by stop(), cleared by run_once(); a pass reads it between requests.
    bool stopping() const { return stopping_; }
    /// One request, raced against stop(): nullopt when stopped before it was answered.
    boost::asio::awaitable<std::optional<core::Result<net::ClientResponse>>> fetch(
        net::HttpClient& client, net::ClientRequest request);

    /// Adds `task` (its run_once is this pass) to `scheduler`, before it starts; false when
    /// already stopped. The scheduler must outlive this.
    bool schedule(core::Scheduler& scheduler, core::Scheduler::Task task);
    /// Runs a pass soon. Thread-safe; nothing before schedule() or after stop().
    void wake();
    /// Ends the pass in flight promptly and removes the task; returns once no pass runs. True
    /// when this call stopped a scheduled task. Idempotent, safe before schedule().
    bool stop();
    /// One pass on the calling thread; for tests, never while the task may run.
    void run_once();

private:
    std::optional<core::TimePoint> scheduled_pass(core::TimePoint now);
    /// Runs a pass on io_ until it ends; true when it stopped at its budget with more due.
    bool run_pass();

    Pass pass_;
    NextDue next_due_;
    boost::asio::io_context io_;
    /// Never expires by itself; cancelled by stop(), which ends the request in flight.
    boost::asio::steady_timer stop_signal_;
    std::atomic<bool> stopping_{false};
    std::mutex mu_;  // guards what follows
    core::Scheduler* scheduler_ = nullptr;
    core::Scheduler::TaskId task_ = 0;
    bool stopped_ = false;
    bool in_pass_ = false;  ///< a pass runs io_ now: stop() must cancel it through io_
};

}  // namespace aviary::notify
