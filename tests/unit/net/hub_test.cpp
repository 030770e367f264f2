#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net/net.hpp"

namespace aviary::net {
namespace {

using namespace std::chrono_literals;

/// next() once, on `io`, from the test thread: runs the loop until it returns.
std::optional<HubMessage> next_on(asio::io_context& io,
                                  Subscription& subscription,
                                  core::Millis timeout) {
    auto future = asio::co_spawn(io, subscription.next(timeout), asio::use_future);
    io.restart();
    io.run();
    return future.get();
}

TEST(Hub, DeliversATopicsMessagesInOrderToItsSubscribersOnly) {
    asio::io_context io;
    Hub hub;
    auto jobs = hub.subscribe({"job:1"}, io.get_executor());
    auto other = hub.subscribe({"job:2"}, io.get_executor());
    ASSERT_TRUE(jobs && other);
    EXPECT_EQ(hub.publish("job:1", "queued"), 1U);
    EXPECT_EQ(hub.publish("job:1", "running"), 1U);
    EXPECT_EQ(hub.publish("job:3", "nobody"), 0U);
    auto first = next_on(io, **jobs, 1s);
    auto second = next_on(io, **jobs, 1s);
    ASSERT_TRUE(first && second);
    EXPECT_EQ(first->topic, "job:1");
    EXPECT_EQ(first->data, "queued");
    EXPECT_EQ(second->data, "running");
    EXPECT_FALSE((*other)->try_next());
    auto stats = hub.stats();
    EXPECT_EQ(stats.published, 3U);
    EXPECT_EQ(stats.delivered, 2U);
    EXPECT_EQ(stats.subscribers, 2U);
    EXPECT_EQ(stats.topics, 2U);
}

TEST(Hub, AFullQueueDropsTheOldestAndCountsThem) {
    asio::io_context io;
    Hub hub;
    auto subscription = hub.subscribe({"logs"}, io.get_executor(), 3);
    ASSERT_TRUE(subscription);
    for (int i = 0; i < 10; ++i) {
        hub.publish("logs", std::to_string(i));
    }
    EXPECT_EQ((*subscription)->dropped(), 7U);
    EXPECT_EQ(hub.stats().dropped, 7U);
    std::vector<std::string> got;
    while (auto message = (*subscription)->try_next()) {
        got.push_back(message->data);
    }
    EXPECT_EQ(got, (std::vector<std::string>{"7", "8", "9"}));
}

TEST(Hub, TheAllTopicsSubscriptionSeesEveryTopic) {
    asio::io_context io;
    Hub hub;
    auto all = hub.subscribe({std::string{kAllTopics}}, io.get_executor());
    ASSERT_TRUE(all);
    hub.publish("a", "1");
    hub.publish("b", "2");
    auto first = (*all)->try_next();
    auto second = (*all)->try_next();
    ASSERT_TRUE(first && second);
    EXPECT_EQ(first->topic, "a");
    EXPECT_EQ(second->topic, "b");
}

TEST(Hub, SubscriptionsAreBoundedAndLeaveWhenDestroyed) {
    asio::io_context io;
    Hub hub{HubSettings{.max_subscribers = 2}};
    auto one = hub.subscribe({"t"}, io.get_executor());
    auto two = hub.subscribe({"t", "u"}, io.get_executor());
    ASSERT_TRUE(one && two);
    auto three = hub.subscribe({"t"}, io.get_executor());
    ASSERT_FALSE(three);
    EXPECT_EQ(three.error().code, core::ErrorCode::kUnavailable);
    EXPECT_EQ(three.error().message, "too many subscriptions (the limit is 2)");
    two->reset();
    EXPECT_EQ(hub.stats().subscribers, 1U);
    EXPECT_EQ(hub.stats().topics, 1U);  // "u" had only the one that left
    EXPECT_EQ(hub.publish("u", "x"), 0U);
    EXPECT_TRUE(hub.subscribe({"t"}, io.get_executor()));
}

TEST(Hub, BadTopicsAreRefused) {
    asio::io_context io;
    Hub hub;
    auto none = hub.subscribe({}, io.get_executor());
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().code, core::ErrorCode::kInvalidArgument);
    auto empty = hub.subscribe({"ok", ""}, io.get_executor());
    ASSERT_FALSE(empty);
    EXPECT_EQ(empty.error().message, "a subscription topic is empty");
}

TEST(Hub, NextReturnsNothingWhenItsTimeoutPasses) {
    asio::io_context io;
    Hub hub;
    auto subscription = hub.subscribe({"quiet"}, io.get_executor());
    ASSERT_TRUE(subscription);
    EXPECT_FALSE(next_on(io, **subscription, 20ms));
    EXPECT_FALSE((*subscription)->closed());
}

TEST(Hub, APublishFromAnotherThreadWakesAWaitingNext) {
    asio::io_context io;
    Hub hub;
    auto subscription = hub.subscribe({"t"}, io.get_executor());
    ASSERT_TRUE(subscription);
    auto future = asio::co_spawn(io, (*subscription)->next(30s), asio::use_future);
    // The loop runs on its own thread; the publisher is this one. next() parks first or sees
    // the message at once: either way it returns it, long before the 30 s timeout.
    std::thread loop{[&io] { io.run(); }};
    hub.publish("t", "woken");
    auto message = future.get();
    loop.join();
    ASSERT_TRUE(message);
    EXPECT_EQ(message->data, "woken");
}

TEST(Hub, ClosingWakesWaitersAndRefusesNewSubscriptions) {
    asio::io_context io;
    Hub hub;
    auto subscription = hub.subscribe({"t"}, io.get_executor());
    ASSERT_TRUE(subscription);
    auto future = asio::co_spawn(io, (*subscription)->next(30s), asio::use_future);
    std::thread loop{[&io] { io.run(); }};
    hub.close();
    EXPECT_FALSE(future.get());
    loop.join();
    EXPECT_TRUE((*subscription)->closed());
    EXPECT_EQ(hub.publish("t", "late"), 0U);
    EXPECT_FALSE(hub.subscribe({"t"}, io.get_executor()));
}

}  // namespace
}  // namespace aviary::net
