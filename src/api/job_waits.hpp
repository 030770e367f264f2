#pragma once
// Private to api: request coroutines that wait on a job — tweety's "Wait": true, REST's
// "wait": true, and the output follow stream.
//
// A wait subscribes to the job's topic on the engine's hub (net/hub.hpp) before its first read
// of the job; the engine publishes on its own thread and the hub wakes the request's
// coroutine. The request reads the job (or its output) from the store again after every wake,
// so a change that raced with a read is never lost. Every wait is bounded (a deadline, the
// server stopping, or a failed write to a gone client), and destroying the JobWatch ends its
// subscription, so a request that ends for any reason leaves nothing behind.
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "jobs/jobs.hpp"
#include "net/net.hpp"

namespace aviary::api {

/// A watch on one job that wakes the coroutine that opened it. Use on that executor only.
class JobWatch {
public:
    JobWatch(jobs::Engine& engine, std::string id, net::asio::any_io_executor executor);
    ~JobWatch();
    JobWatch(const JobWatch&) = delete;
    JobWatch& operator=(const JobWatch&) = delete;

    /// Returns at once when the job changed since the last call, else after `timeout` or a
    /// change, whichever comes first. True: it changed (or may have: a watch the hub had no
    /// room for polls, and says true at each timeout).
    net::asio::awaitable<bool> wait(core::Millis timeout);

private:
    std::unique_ptr<net::Subscription> subscription_;
    net::asio::steady_timer poll_;  // only without a subscription
};

class JobWaits {
public:
    /// `stopping`: true once the server shuts down (waits give up). `tick`: how often a wait
    /// looks at `stopping` when nothing happens.
    JobWaits(jobs::Engine& engine,
             net::BlockingPool& pool,
             std::function<bool()> stopping,
             core::Millis tick = core::Millis{500})
        : engine_(engine), pool_(pool), stopping_(std::move(stopping)), tick_(tick) {}

    /// Waits until job `id` is terminal and returns it. Errors: kTimeout when `limit` passes
    /// first (the message names the job and its state: it goes on), kUnavailable when the
    /// server stops, and the errors of Engine::job.
    net::asio::awaitable<core::Result<core::Job>> until_finished(std::string id,
                                                                 core::Millis limit);
    /// How long a Wait may hold a request for `job`: every attempt's timeout, the backoffs
    /// between them, and a margin for queueing.
    core::Millis wait_limit(const core::Job& job) const;

    jobs::Engine& engine() { return engine_; }
    bool stopping() const { return stopping_(); }

private:
    jobs::Engine& engine_;
    net::BlockingPool& pool_;
    std::function<bool()> stopping_;
    core::Millis tick_;
};

}  // namespace aviary::api
