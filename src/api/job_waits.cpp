#include "api/job_waits.hpp"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace aviary::api {

namespace asio = boost::asio;

namespace {

/// Time for a job to wait in its queue, beyond its own run time, before a Wait gives up.
constexpr core::Millis kQueueMargin{std::chrono::minutes{5}};

}  // namespace

struct JobWatch::Signal {
    explicit Signal(asio::any_io_executor executor) : wake(std::move(executor)) {}

    asio::steady_timer wake;  // on the request's executor
    bool changed = false;     // set there too
};

JobWatch::JobWatch(jobs::Engine& engine, std::string id, asio::any_io_executor executor)
    : signal_(std::make_shared<Signal>(std::move(executor))) {
    // Runs on the engine's thread: hand over, nothing more.
    auto on_change = [signal = signal_] {
        asio::post(signal->wake.get_executor(), [signal] {
            signal->changed = true;
            signal->wake.cancel();
        });
    };
    watch_ = engine.watch(std::move(id), std::move(on_change));
}

asio::awaitable<bool> JobWatch::wait(core::Millis timeout) {
    if (!signal_->changed) {
        signal_->wake.expires_after(timeout);
        co_await signal_->wake.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    bool changed = signal_->changed;
    signal_->changed = false;
    co_return changed;
}

asio::awaitable<core::Result<core::Job>> JobWaits::until_finished(std::string id,
                                                                  core::Millis limit) {
    auto executor = co_await asio::this_coro::executor;
    JobWatch watch{engine_, id, executor};
    auto started = std::chrono::steady_clock::now();
    auto deadline = started + limit;
    while (true) {
        auto work = [this, id] { return engine_.job(id); };
        auto job = co_await net::offload(pool_, std::move(work));
        if (!job || core::is_terminal(job->state)) {
            co_return job;
        }
        auto now = std::chrono::steady_clock::now();
        if (now >= deadline) {
            co_return core::Error{
                core::ErrorCode::kTimeout,
                fmt::format("gave up waiting for job {} after {}: it is {} and goes on", id,
                            core::format_duration(limit), core::to_string(job->state))};
        }
        if (stopping_()) {
            co_return core::Error{
                core::ErrorCode::kUnavailable,
                fmt::format("aviary is shutting down: stopped waiting for job {} (it is {})", id,
                            core::to_string(job->state))};
        }
        auto left = std::chrono::duration_cast<core::Millis>(deadline - now);
        (void)co_await watch.wait(std::min(tick_, left + core::Millis{1}));
    }
}

core::Millis JobWaits::wait_limit(const core::Job& job) const {
    const auto* action = engine_.action(job.action);
    if (action == nullptr) {
        return kQueueMargin;
    }
    int attempts = std::max(1, action->max_attempts);
    return action->timeout * attempts + action->retry_backoff_max * (attempts - 1) + kQueueMargin;
}

}  // namespace aviary::api
