#include "core/core.hpp"

#include <gtest/gtest.h>

#include <set>
#include <thread>

namespace aviary::core {
namespace {

using namespace std::chrono_literals;

TEST(Result, HoldsValueOrError) {
    Result<int> ok = 42;
    ASSERT_TRUE(ok);
    EXPECT_EQ(*ok, 42);
    Result<int> bad = Error{ErrorCode::kBusy, "node lotus-1 is busy"};
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, ErrorCode::kBusy);
    EXPECT_EQ(bad.error().message, "node lotus-1 is busy");
}

TEST(Result, VoidSucceedsByDefault) {
    Result<void> ok;
    EXPECT_TRUE(ok);
    Result<void> bad = Error{ErrorCode::kNotFound, "unknown node"};
    EXPECT_FALSE(bad);
    EXPECT_EQ(to_string(bad.error().code), "not_found");
}

TEST(Duration, ParsesUnitsAndCompounds) {
    EXPECT_EQ(*parse_duration("30s"), 30s);
    EXPECT_EQ(*parse_duration("250ms"), 250ms);
    EXPECT_EQ(*parse_duration("5m"), 5min);
    EXPECT_EQ(*parse_duration("1h30m"), 90min);
    EXPECT_EQ(*parse_duration("7d"), Millis{7 * 86'400'000LL});
}

TEST(Duration, RejectsTextWithoutUnitsOrNumbers) {
    for (std::string_view bad : {"", "thirty", "30", "s", "-5s", "5 s", "5x"}) {
        auto parsed = parse_duration(bad);
        ASSERT_FALSE(parsed) << bad;
        EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
        EXPECT_NE(parsed.error().message.find("expected a duration"), std::string::npos);
    }
}

TEST(Duration, FormatsWhatItParses) {
    for (Millis d :
         {Millis{0}, Millis{250}, Millis{90'000}, Millis{86'400'000}, Millis{3'723'004}}) {
        EXPECT_EQ(*parse_duration(format_duration(d)), d) << format_duration(d);
    }
    EXPECT_EQ(format_duration(90s), "1m30s");
    EXPECT_EQ(format_duration(24h), "1d");
}

TEST(Time, FormatsRfc3339AndParsesItBack) {
    TimePoint t{Millis{1'700'000'000'123}};
    EXPECT_EQ(format_time(t), "2023-11-14T22:13:20.123Z");
    EXPECT_EQ(*parse_time(format_time(t)), t);
    EXPECT_EQ(*parse_time("2023-11-14T22:13:20Z"), TimePoint{Millis{1'700'000'000'000}});
    EXPECT_FALSE(parse_time("2023-11-14 22:13:20"));
    EXPECT_FALSE(parse_time("2023-11-14T22:13:20+02:00"));
}

TEST(Time, FormatsEdgesOfTheCalendarAndTheDay) {
    EXPECT_EQ(format_time(TimePoint{Millis{0}}), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(format_time(TimePoint{Millis{-1}}), "1969-12-31T23:59:59.999Z");
    EXPECT_EQ(format_time(TimePoint{Millis{951'782'400'000}}), "2000-02-29T00:00:00.000Z");
    EXPECT_EQ(format_time(TimePoint{Millis{253'402'300'799'999}}), "9999-12-31T23:59:59.999Z");
    EXPECT_EQ(format_time(TimePoint{Millis{253'402'300'800'000}}), "10000-01-01T00:00:00.000Z");
    EXPECT_EQ(format_time(TimePoint{Millis{-62'167'219'200'001}}), "-001-12-31T23:59:59.999Z");
    // Every millisecond of a day's last second, and a day either side, reads back as itself.
    for (std::int64_t ms = 1'700'006'399'000; ms < 1'700'006'401'000; ms += 7) {
        TimePoint t{Millis{ms}};
        ASSERT_EQ(*parse_time(format_time(t)), t) << format_time(t);
    }
}

TEST(ManualClock, MovesOnlyWhenTold) {
    ManualClock clock;
    auto start = clock.now();
    clock.advance(5s);
    EXPECT_EQ(clock.now() - start, 5s);
    clock.set(start);
    EXPECT_EQ(clock.now(), start);
}

TEST(Id, IsUniqueAndSortsByCreationTime) {
    std::set<std::string> seen;
    std::string previous;
    for (int i = 0; i < 1000; ++i) {
        auto id = new_id();
        ASSERT_EQ(id.size(), 26u);
        EXPECT_TRUE(seen.insert(id).second);
        EXPECT_GE(id.substr(0, 10), previous.substr(0, std::min<size_t>(10, previous.size())));
        previous = id;
    }
}

TEST(DnsLabel, AcceptsReleaseNamesAndRejectsShellText) {
    EXPECT_TRUE(is_dns_label("lotus-0"));
    EXPECT_FALSE(is_dns_label("lotus-0;touch X"));
    EXPECT_FALSE(is_dns_label("-lotus"));
    EXPECT_FALSE(is_dns_label("Lotus"));
    EXPECT_FALSE(is_dns_label(std::string(64, 'a')));
}

TEST(Logging, RejectsUnknownLevelAndFormat) {
    EXPECT_FALSE(configure_logging("loud", "text"));
    EXPECT_FALSE(configure_logging("info", "xml"));
    EXPECT_TRUE(configure_logging("info", "text"));
    EXPECT_EQ(logger("fleet").get(), logger("fleet").get());
}

TEST(OpenLibrary, FillsEachSlotWithItsFunction) {
    std::size_t (*length)(const char*) = nullptr;
    auto opened = open_library("libc.so.6", "the test", "libc6", {LibrarySymbol{"strlen", &length}},
                               ErrorCode::kUnavailable);
    ASSERT_TRUE(opened) << opened.error().message;
    ASSERT_NE(length, nullptr);
    EXPECT_EQ(length("aviary"), 6U);
}

TEST(OpenLibrary, AMissingLibraryOrFunctionIsAnErrorNamingIt) {
    void (*unused)() = nullptr;
    auto missing = open_library("libaviary-nothing.so.9", "The test", "no-such-package",
                                {LibrarySymbol{"f", &unused}}, ErrorCode::kStorage);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::kStorage);
    EXPECT_TRUE(missing.error().message.starts_with(
        "The test needs libaviary-nothing.so.9 (Debian's no-such-package): "))
        << missing.error().message;

    auto old =
        open_library("libc.so.6", "the test", "libc6",
                     {LibrarySymbol{"aviary_no_such_function", &unused}}, ErrorCode::kUnavailable);
    ASSERT_FALSE(old);
    EXPECT_EQ(old.error().code, ErrorCode::kUnavailable);
    EXPECT_EQ(old.error().message,
              "libc.so.6 has no aviary_no_such_function: the installed libc6 is too old");
    EXPECT_EQ(unused, nullptr);
}

}  // namespace
}  // namespace aviary::core
