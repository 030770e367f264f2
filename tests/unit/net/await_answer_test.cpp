// net::await_answer: a coroutine waits for an answer that another thread delivers through a
// callback (a store write answered by its writer thread), with no thread blocked meanwhile.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <string>
#include <thread>

#include "net/net.hpp"

namespace aviary::net {
namespace {

struct Seen {
    std::string answer;
    std::thread::id answered_on;
    std::thread::id resumed_on;
};

/// Answers from a thread of its own, as the store's writer does.
asio::awaitable<void> ask(Seen& seen, std::thread& answerer) {
    auto start = [&](std::function<void(std::string)> done) {
        answerer = std::thread{[&seen, done = std::move(done)] {
            seen.answered_on = std::this_thread::get_id();
            done("committed");
        }};
    };
    seen.answer = co_await await_answer<std::string>(std::move(start));
    seen.resumed_on = std::this_thread::get_id();
}

TEST(AwaitAnswer, ResumesOnTheCallersExecutorWithTheValueAnotherThreadGave) {
    asio::io_context ioc;
    Seen seen;
    std::thread answerer;
    asio::co_spawn(ioc, ask(seen, answerer), asio::detached);
    ioc.run();  // returns once the coroutine is done: the work guard held it until the answer
    answerer.join();
    EXPECT_EQ(seen.answer, "committed");
    EXPECT_NE(seen.answered_on, std::this_thread::get_id());
    EXPECT_EQ(seen.resumed_on, std::this_thread::get_id());
}

asio::awaitable<void> ask_answered_at_once(int& answer) {
    // done() called inside start(), before the coroutine suspends (a store closed already).
    auto start = [](std::function<void(int)> done) { done(42); };
    answer = co_await await_answer<int>(std::move(start));
}

TEST(AwaitAnswer, AnAnswerGivenBeforeTheWaitBeginsIsNotLost) {
    asio::io_context ioc;
    int answer = 0;
    asio::co_spawn(ioc, ask_answered_at_once(answer), asio::detached);
    ioc.run();
    EXPECT_EQ(answer, 42);
}

asio::awaitable<void> ask_many(int count, std::vector<std::thread>& answerers, int& sum) {
    for (int i = 1; i <= count; ++i) {
        auto start = [&answerers, i](std::function<void(int)> done) {
            answerers.emplace_back([i, done = std::move(done)] { done(i); });
        };
        sum += co_await await_answer<int>(std::move(start));
    }
}

TEST(AwaitAnswer, ManyCoroutinesOnTwoLoopThreadsEachGetTheirOwnAnswer) {
    asio::io_context ioc;
    constexpr int kCoroutines = 16;
    constexpr int kEach = 20;
    std::vector<std::vector<std::thread>> answerers(kCoroutines);
    std::vector<int> sums(kCoroutines, 0);
    for (int c = 0; c < kCoroutines; ++c) {
        asio::co_spawn(ioc,
                       ask_many(kEach, answerers[static_cast<std::size_t>(c)],
                                sums[static_cast<std::size_t>(c)]),
                       asio::detached);
    }
    std::thread second{[&] { ioc.run(); }};
    ioc.run();
    second.join();
    for (auto& threads : answerers) {
        for (auto& thread : threads) {
            thread.join();
        }
    }
    for (int sum : sums) {
        EXPECT_EQ(sum, kEach * (kEach + 1) / 2);
    }
}

}  // namespace
}  // namespace aviary::net
