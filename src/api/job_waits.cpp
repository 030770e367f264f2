#include "api/job_waits.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

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

JobWatch::JobWatch(jobs::Engine& engine, std::string id, asio::any_io_executor executor)
    : poll_(executor) {
    // One message is as good as many: each means "read the job again".
    auto subscribed = engine.hub().subscribe({jobs::Engine::job_topic(id)}, std::move(executor), 1);
    if (subscribed) {
        subscription_ = std::move(*subscribed);
    } else {
        // The hub is full: this wait polls instead (each wait returns "changed" at its timeout).
        core::logger("api")->warn("job {} is polled, not followed: {}", id,
                                  subscribed.error().message);
    }
}

JobWatch::~JobWatch() = default;

asio::awaitable<bool> JobWatch::wait(core::Millis timeout) {
    if (!subscription_) {
        poll_.expires_after(timeout);
        co_await poll_.async_wait(asio::as_tuple(asio::use_awaitable));
        co_return true;
    }
    auto message = co_await subscription_->next(timeout);
    co_return message.has_value();
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
