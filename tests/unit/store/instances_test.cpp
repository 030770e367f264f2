// Instances sharing a store: registration, heartbeats and the leadership of periodic work.
#include <gtest/gtest.h>

#include "store_support.hpp"

namespace aviary::store::test {
namespace {

AVIARY_STORE_SUITE(Instances);

using core::ErrorCode;

InstanceRecord run_of(std::string name, std::string run, core::TimePoint now) {
    return InstanceRecord{.name = std::move(name),
                          .run = std::move(run),
                          .host = "host-1",
                          .pid = 4242,
                          .started_at = now,
                          .heartbeat_at = now};
}

auto never = [](const InstanceRecord&) { return false; };
auto always = [](const InstanceRecord&) { return true; };

TEST_P(Instances, ALiveNameIsRefusedUnlessItsRunIsKnownDeadAndAStaleOneIsTakenOver) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->join_instance(run_of("serve-a", "run-1", clock.now()), 10s, never));

    InstanceRecord seen;
    auto refused = store->join_instance(run_of("serve-a", "run-2", clock.now()), 10s,
                                        [&](const InstanceRecord& registered) {
                                            seen = registered;
                                            return false;
                                        });
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kAlreadyExists);
    EXPECT_NE(refused.error().message.find("\"serve-a\" is in use"), std::string::npos)
        << refused.error().message;
    EXPECT_NE(refused.error().message.find("host host-1, pid 4242"), std::string::npos);
    EXPECT_EQ(seen.run, "run-1");

    // The same run joining again (a retry) is not a conflict.
    EXPECT_TRUE(store->join_instance(run_of("serve-a", "run-1", clock.now()), 10s, never));
    // A run known dead is replaced at once; the old run then finds itself unregistered.
    ASSERT_TRUE(store->join_instance(run_of("serve-a", "run-2", clock.now()), 10s, always));
    auto old = store->beat_instance("serve-a", "run-1", kSchedulerDuty, clock.now(), 10s);
    ASSERT_FALSE(old);
    EXPECT_EQ(old.error().code, ErrorCode::kNotFound);

    // A name whose heartbeat went stale is taken without asking.
    clock.advance(11s);
    EXPECT_TRUE(store->join_instance(run_of("serve-a", "run-3", clock.now()), 10s, never));
    auto listed = store->instances();
    ASSERT_TRUE(listed) << listed.error().message;
    ASSERT_EQ(listed->size(), 1U);
    EXPECT_EQ(listed->front().run, "run-3");
    EXPECT_EQ(listed->front().pid, 4242);
}

TEST_P(Instances, OneInstanceLeadsAndADeadLeaderIsReplacedOnceItsTtlLapses) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->join_instance(run_of("serve-a", "run-a", clock.now()), 10s, never));
    ASSERT_TRUE(store->join_instance(run_of("serve-b", "run-b", clock.now()), 10s, never));

    auto a = store->beat_instance("serve-a", "run-a", kSchedulerDuty, clock.now(), 10s);
    ASSERT_TRUE(a) << a.error().message;
    EXPECT_TRUE(*a);
    auto b = store->beat_instance("serve-b", "run-b", kSchedulerDuty, clock.now(), 10s);
    ASSERT_TRUE(b) << b.error().message;
    EXPECT_FALSE(*b);

    // A keeps beating: it keeps leading, B keeps waiting.
    clock.advance(5s);
    EXPECT_TRUE(*store->beat_instance("serve-a", "run-a", kSchedulerDuty, clock.now(), 10s));
    clock.advance(6s);
    EXPECT_FALSE(*store->beat_instance("serve-b", "run-b", kSchedulerDuty, clock.now(), 10s));

    // A stops beating (it died): B takes over once A's leadership lapses, not before.
    clock.advance(3s);
    EXPECT_FALSE(*store->beat_instance("serve-b", "run-b", kSchedulerDuty, clock.now(), 10s));
    clock.advance(1s);
    EXPECT_TRUE(*store->beat_instance("serve-b", "run-b", kSchedulerDuty, clock.now(), 10s));
    // A comes back: B's leadership is live, so A follows.
    EXPECT_FALSE(*store->beat_instance("serve-a", "run-a", kSchedulerDuty, clock.now(), 10s));

    auto listed = store->instances();
    ASSERT_TRUE(listed);
    ASSERT_EQ(listed->size(), 2U);
    EXPECT_TRUE(listed->at(0).leads.empty());
    EXPECT_EQ(listed->at(1).leads, std::vector<std::string>{"scheduler"});

    auto events = store->events(all_events());
    ASSERT_TRUE(events);
    std::vector<std::string> elected;
    for (const auto& event : *events) {
        if (event.kind == "leader.elected") {
            elected.push_back(event.after);
        }
    }
    ASSERT_EQ(elected.size(), 2U);  // newest first: B, then A at the start
    EXPECT_EQ(elected[0], R"({"duty":"scheduler","instance":"serve-b"})");
    EXPECT_EQ(elected[1], R"({"duty":"scheduler","instance":"serve-a"})");
}

TEST_P(Instances, LeavingHandsLeadershipOverAtTheNextBeat) {
    core::ManualClock clock;
    auto store = lotus_store(clock);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->join_instance(run_of("serve-a", "run-a", clock.now()), 10s, never));
    ASSERT_TRUE(store->join_instance(run_of("serve-b", "run-b", clock.now()), 10s, never));
    ASSERT_TRUE(*store->beat_instance("serve-a", "run-a", kSchedulerDuty, clock.now(), 10s));
    ASSERT_TRUE(store->leave_instance("serve-a", "run-a"));
    EXPECT_TRUE(*store->beat_instance("serve-b", "run-b", kSchedulerDuty, clock.now(), 10s));
    auto listed = store->instances();
    ASSERT_TRUE(listed);
    ASSERT_EQ(listed->size(), 1U);
    EXPECT_EQ(listed->front().name, "serve-b");
}

}  // namespace
}  // namespace aviary::store::test
