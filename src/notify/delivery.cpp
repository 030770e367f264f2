// What notify's senders share (delivery.hpp).
#include "notify/delivery.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>

namespace aviary::notify {
namespace {

/// How much of an unexpected answer a message shows.
constexpr std::size_t kExcerptMax = 200;

}  // namespace

std::string one_line(std::string_view text) {
    std::string out;
    for (char c : text.substr(0, kExcerptMax)) {
        out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
    }
    if (text.size() > kExcerptMax) {
        out += "...";
    }
    return out;
}

boost::asio::awaitable<std::optional<core::Result<net::ClientResponse>>> fetch_once(
    net::HttpClient& client, net::ClientRequest request) {
    std::optional<core::Result<net::ClientResponse>> out;
    out.emplace(co_await client.fetch(std::move(request)));
    co_return out;
}

core::Millis backoff(int attempt, core::Millis base, core::Millis max, std::mt19937_64& random) {
    auto wait = base;
    for (int i = 1; i < attempt && wait < max; ++i) {
        wait *= 2;
    }
    wait = std::min(wait, max);
    std::uniform_real_distribution<double> jitter{0.8, 1.2};
    auto jittered =
        core::Millis{static_cast<std::int64_t>(static_cast<double>(wait.count()) * jitter(random))};
    return std::clamp(jittered, core::Millis{1}, max);
}

OutboxTask::OutboxTask(Pass pass, NextDue next_due)
    : pass_(std::move(pass)),
      next_due_(std::move(next_due)),
      stop_signal_(io_, boost::asio::steady_timer::time_point::max()) {}

OutboxTask::~OutboxTask() {
    stop();
}

boost::asio::awaitable<std::optional<core::Result<net::ClientResponse>>> OutboxTask::fetch(
    net::HttpClient& client, net::ClientRequest request) {
    using namespace boost::asio::experimental::awaitable_operators;
    if (stopping_) {
        co_return std::nullopt;
    }
    auto fetching = fetch_once(client, std::move(request));
    auto stopped_waiting =
        stop_signal_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    auto raced = co_await (std::move(fetching) || std::move(stopped_waiting));
    if (raced.index() != 0) {
        co_return std::nullopt;
    }
    co_return std::move(std::get<0>(raced));
}

std::optional<core::TimePoint> OutboxTask::scheduled_pass(core::TimePoint now) {
    {
        std::lock_guard lock{mu_};
        if (stopped_) {
            return std::nullopt;
        }
        in_pass_ = true;
    }
    bool more = false;
    try {
        more = run_pass();
    } catch (...) {
        std::lock_guard lock{mu_};
        in_pass_ = false;
        throw;  // the scheduler logs it, counts it and runs the task again at its interval
    }
    {
        std::lock_guard lock{mu_};
        in_pass_ = false;
    }
    return more ? std::optional{now} : next_due_();
}

bool OutboxTask::run_pass() {
    std::exception_ptr failure;
    bool out_of_time = false;
    io_.restart();
    boost::asio::co_spawn(io_, pass_(out_of_time),
                          [&failure](const std::exception_ptr& error) { failure = error; });
    io_.run();
    if (failure) {
        std::rethrow_exception(failure);
    }
    return out_of_time;
}

bool OutboxTask::schedule(core::Scheduler& scheduler, core::Scheduler::Task task) {
    std::lock_guard lock{mu_};
    AVIARY_ASSERT(scheduler_ == nullptr, "OutboxTask::schedule called twice");
    if (stopped_) {
        return false;
    }
    scheduler_ = &scheduler;
    task.run_once = [this](core::TimePoint now) { return scheduled_pass(now); };
    task_ = scheduler.add(std::move(task));
    return true;
}

void OutboxTask::wake() {
    std::lock_guard lock{mu_};
    if (scheduler_ != nullptr && !stopped_) {
        scheduler_->wake(task_);
    }
}

bool OutboxTask::stop() {
    core::Scheduler* scheduler = nullptr;
    {
        std::lock_guard lock{mu_};
        if (stopped_) {
            return false;
        }
        stopped_ = true;
        stopping_ = true;
        scheduler = scheduler_;
        if (in_pass_) {
            // Ends the request in flight. Should the pass end first, this stays queued and does
            // nothing at a later run_once(), which clears `stopping_` before it runs.
            boost::asio::post(io_, [this] {
                if (stopping_) {
                    stop_signal_.cancel();
                }
            });
        }
    }
    if (scheduler == nullptr) {
        return false;
    }
    scheduler->cancel(task_);  // returns once the pass in flight, if any, has ended
    return true;
}

void OutboxTask::run_once() {
    stopping_ = false;
    run_pass();
}

}  // namespace aviary::notify
