// coarse_now() must be steady_clock's own time, only coarser: deadlines set from it are compared
// with steady_clock::now() by the server's sweep and by the client's deadline timer.
#include "net/coarse_clock.hpp"

#include <gtest/gtest.h>

#include <chrono>

#include "net/deadline_stream.hpp"

namespace aviary::net {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

TEST(CoarseClock, IsSteadyClockAtMostATickBehind) {
    // Another epoch (boot time, the wall clock) would put the two seconds to years apart, or
    // coarse ahead. A tick is 1-10 ms; the bound leaves room for a preemption between reads.
    for (int i = 0; i < 1000; ++i) {
        const auto coarse = coarse_now();
        const auto precise = Steady::now();
        ASSERT_LE(coarse, precise) << "read " << i;
        ASSERT_LT(precise - coarse, 1s) << "read " << i;
    }
}

TEST(CoarseClock, NeverGoesBack) {
    auto last = coarse_now();
    for (int i = 0; i < 100000; ++i) {
        const auto now = coarse_now();
        ASSERT_GE(now, last) << "read " << i;
        last = now;
    }
}

TEST(CoarseClock, DeadlineStreamExpiresByTheSteadyClock) {
    boost::asio::io_context context;
    DeadlineStream stream{DeadlineStream::socket_type{context}};
    stream.expires_after(1h);
    EXPECT_FALSE(stream.expired(Steady::now()));
    EXPECT_TRUE(stream.expired(Steady::now() + 1h));
    stream.expires_after(0s);  // now, or up to a tick before it
    EXPECT_TRUE(stream.expired(Steady::now()));
    stream.expires_never();
    EXPECT_FALSE(stream.expired(Steady::now() + 24h * 365 * 100));
}

}  // namespace
}  // namespace aviary::net
