#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "net/net.hpp"

namespace aviary::net {

// Lock order: Core::mu, then a State::mu. A subscriber never takes Core::mu while it holds its
// own State::mu.
struct Subscription::State {
    State(asio::any_io_executor executor_in, std::size_t capacity_in)
        : executor(std::move(executor_in)), capacity(capacity_in), wake(executor) {}

    const asio::any_io_executor executor;
    const std::size_t capacity;
    std::vector<std::string> topics;
    std::weak_ptr<Hub::Core> hub;

    mutable std::mutex mu;
    std::deque<HubMessage> queue;  // under mu
    std::uint64_t dropped = 0;     // under mu
    bool closed = false;           // under mu
    bool waiting = false;          // under mu: next() is parked on `wake`
    bool wake_posted = false;      // under mu: a post to cancel `wake` is on its way

    asio::steady_timer wake;  // on `executor` only

    /// Called with mu held when the queue gained a message or the hub closed: wakes a parked
    /// next() on its own executor, once.
    void signal(const std::shared_ptr<State>& self) {
        if (!waiting || wake_posted) {
            return;
        }
        wake_posted = true;
        asio::post(executor, [self] {
            {
                std::lock_guard lock{self->mu};
                self->wake_posted = false;
            }
            self->wake.cancel();
        });
    }
};

struct Hub::Core {
    explicit Core(HubSettings settings_in) : settings(settings_in) {}

    const HubSettings settings;
    mutable std::mutex mu;
    std::unordered_map<std::string, std::vector<std::shared_ptr<Subscription::State>>> topics;
    std::size_t subscribers = 0;
    bool closed = false;
    HubStats stats;

    void leave(const std::shared_ptr<Subscription::State>& state) {
        std::lock_guard lock{mu};
        for (const auto& topic : state->topics) {
            auto found = topics.find(topic);
            if (found == topics.end()) {
                continue;
            }
            auto& list = found->second;
            list.erase(std::remove(list.begin(), list.end(), state), list.end());
            if (list.empty()) {
                topics.erase(found);
            }
        }
        --subscribers;
    }
};

Subscription::Subscription(std::shared_ptr<State> state) : state_(std::move(state)) {}

Subscription::~Subscription() {
    if (auto hub = state_->hub.lock()) {
        hub->leave(state_);
    }
}

std::optional<HubMessage> Subscription::try_next() {
    std::lock_guard lock{state_->mu};
    if (state_->queue.empty()) {
        return std::nullopt;
    }
    auto message = std::move(state_->queue.front());
    state_->queue.pop_front();
    return message;
}

asio::awaitable<std::optional<HubMessage>> Subscription::next(core::Millis timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        {
            std::lock_guard lock{state_->mu};
            state_->waiting = false;
            if (!state_->queue.empty()) {
                auto message = std::move(state_->queue.front());
                state_->queue.pop_front();
                co_return message;
            }
            if (state_->closed || std::chrono::steady_clock::now() >= deadline) {
                co_return std::nullopt;
            }
            // Parked from here: a publish after this point posts a cancel of `wake`.
            state_->waiting = true;
        }
        state_->wake.expires_at(deadline);
        auto [ec] = co_await state_->wake.async_wait(asio::as_tuple(asio::use_awaitable));
        (void)ec;  // cancelled (a message, or the hub closed) or expired: look again
    }
}

std::uint64_t Subscription::dropped() const {
    std::lock_guard lock{state_->mu};
    return state_->dropped;
}

bool Subscription::closed() const {
    std::lock_guard lock{state_->mu};
    return state_->closed;
}

Hub::Hub(HubSettings settings) : core_(std::make_shared<Core>(settings)) {}

Hub::~Hub() {
    try {
        close();
    } catch (...) {
        // close() only locks and posts; a failure here (allocation) must not escape a destructor
    }
}

core::Result<std::unique_ptr<Subscription>> Hub::subscribe(std::vector<std::string> topics,
                                                           asio::any_io_executor executor,
                                                           std::size_t queue) {
    if (topics.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument, "a subscription needs a topic"};
    }
    if (std::any_of(topics.begin(), topics.end(), [](const auto& t) { return t.empty(); })) {
        return core::Error{core::ErrorCode::kInvalidArgument, "a subscription topic is empty"};
    }
    std::sort(topics.begin(), topics.end());
    topics.erase(std::unique(topics.begin(), topics.end()), topics.end());
    const auto& settings = core_->settings;
    const std::size_t capacity =
        std::clamp<std::size_t>(queue == 0 ? settings.default_queue : queue, 1, settings.max_queue);
    auto state = std::make_shared<Subscription::State>(std::move(executor), capacity);
    state->topics = std::move(topics);
    state->hub = core_;
    std::lock_guard lock{core_->mu};
    if (core_->closed) {
        return core::Error{core::ErrorCode::kUnavailable, "the hub is closed"};
    }
    if (core_->subscribers >= settings.max_subscribers) {
        return core::Error{
            core::ErrorCode::kUnavailable,
            fmt::format("too many subscriptions (the limit is {})", settings.max_subscribers)};
    }
    for (const auto& topic : state->topics) {
        core_->topics[topic].push_back(state);
    }
    ++core_->subscribers;
    return std::make_unique<Subscription>(std::move(state));
}

std::size_t Hub::publish(std::string_view topic, std::string data) {
    std::lock_guard lock{core_->mu};
    if (core_->closed) {
        return 0;
    }
    auto& stats = core_->stats;
    ++stats.published;
    std::size_t reached = 0;
    auto deliver = [&](const std::vector<std::shared_ptr<Subscription::State>>& states) {
        for (const auto& state : states) {
            std::lock_guard state_lock{state->mu};
            if (state->queue.size() >= state->capacity) {
                state->queue.pop_front();
                ++state->dropped;
                ++stats.dropped;
            }
            state->queue.push_back(HubMessage{std::string{topic}, data});
            ++stats.delivered;
            ++reached;
            state->signal(state);
        }
    };
    if (auto found = core_->topics.find(std::string{topic}); found != core_->topics.end()) {
        deliver(found->second);
    }
    if (topic != kAllTopics) {
        if (auto all = core_->topics.find(std::string{kAllTopics}); all != core_->topics.end()) {
            deliver(all->second);
        }
    }
    return reached;
}

void Hub::close() {
    std::lock_guard lock{core_->mu};
    if (core_->closed) {
        return;
    }
    core_->closed = true;
    for (auto& [topic, states] : core_->topics) {
        for (const auto& state : states) {
            std::lock_guard state_lock{state->mu};
            state->closed = true;
            state->signal(state);
        }
    }
}

HubStats Hub::stats() const {
    std::lock_guard lock{core_->mu};
    HubStats out = core_->stats;
    out.subscribers = core_->subscribers;
    out.topics = core_->topics.size();
    return out;
}

}  // namespace aviary::net
