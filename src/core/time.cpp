#include <fmt/format.h>

#include <charconv>
#include <cstdio>

#include "core/core.hpp"

namespace aviary::core {
namespace {

Error bad_duration(std::string_view text, std::string_view why) {
    return Error{ErrorCode::kInvalidArgument,
                 fmt::format("expected a duration like \"30s\", got \"{}\" ({})", text, why)};
}

std::optional<Millis> unit_of(std::string_view unit) {
    using namespace std::chrono_literals;
    if (unit == "ms")
        return 1ms;
    if (unit == "s")
        return 1000ms;
    if (unit == "m")
        return Millis{60'000};
    if (unit == "h")
        return Millis{3'600'000};
    if (unit == "d")
        return Millis{86'400'000};
    return std::nullopt;
}

}  // namespace

TimePoint SystemClock::now() const {
    return std::chrono::time_point_cast<Millis>(std::chrono::system_clock::now());
}

std::string format_time(TimePoint t) {
    auto day = std::chrono::floor<std::chrono::days>(t);
    std::chrono::year_month_day ymd{day};
    std::chrono::hh_mm_ss<Millis> hms{t - day};
    const int year = int(ymd.year());
    if (year < 0 || year > 9999) {
        return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", year,
                           unsigned(ymd.month()), unsigned(ymd.day()), hms.hours().count(),
                           hms.minutes().count(), hms.seconds().count(), hms.subseconds().count());
    }
    // Every lease and event carries times: written digit by digit, as fmt's width specs cost
    // several times more on the lease path.
    std::string out = "0000-00-00T00:00:00.000Z";
    auto put = [&out](std::size_t at, std::size_t width, long long value) {
        for (std::size_t i = width; i-- > 0;) {
            out[at + i] = static_cast<char>('0' + value % 10);
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, unsigned(ymd.month()));
    put(8, 2, unsigned(ymd.day()));
    put(11, 2, hms.hours().count());
    put(14, 2, hms.minutes().count());
    put(17, 2, hms.seconds().count());
    put(20, 3, hms.subseconds().count());
    return out;
}

Result<TimePoint> parse_time(std::string_view text) {
    int y = 0;
    unsigned mo = 0, d = 0, h = 0, mi = 0, s = 0, ms = 0;
    std::string owned{text};
    int consumed = 0;
    if (std::sscanf(owned.c_str(), "%4d-%2u-%2uT%2u:%2u:%2u%n", &y, &mo, &d, &h, &mi, &s,
                    &consumed) != 6) {
        return Error{
            ErrorCode::kInvalidArgument,
            fmt::format("expected a time like \"2026-01-02T03:04:05Z\", got \"{}\"", text)};
    }
    std::string_view rest = text.substr(static_cast<size_t>(consumed));
    if (!rest.empty() && rest.front() == '.') {
        rest.remove_prefix(1);
        unsigned digits = 0;
        while (!rest.empty() && rest.front() >= '0' && rest.front() <= '9') {
            if (digits < 3) {
                ms = ms * 10 + unsigned(rest.front() - '0');
            }
            ++digits;
            rest.remove_prefix(1);
        }
        for (; digits < 3; ++digits) {
            ms *= 10;
        }
    }
    if (rest != "Z" && rest != "+00:00") {
        return Error{ErrorCode::kInvalidArgument,
                     fmt::format("time \"{}\" must be in UTC (end with Z)", text)};
    }
    std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{mo},
                                    std::chrono::day{d}};
    if (!ymd.ok() || h > 23 || mi > 59 || s > 60) {
        return Error{ErrorCode::kInvalidArgument, fmt::format("time \"{}\" is not a date", text)};
    }
    return TimePoint{std::chrono::sys_days{ymd}} + std::chrono::hours{h} +
           std::chrono::minutes{mi} + std::chrono::seconds{s} + Millis{ms};
}

Result<Millis> parse_duration(std::string_view text) {
    if (text.empty()) {
        return bad_duration(text, "empty");
    }
    Millis total{0};
    std::string_view rest = text;
    while (!rest.empty()) {
        std::int64_t n = 0;
        auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), n);
        if (ec != std::errc{} || end == rest.data()) {
            return bad_duration(text, "a number must come first");
        }
        rest.remove_prefix(static_cast<size_t>(end - rest.data()));
        size_t unit_len = 0;
        while (unit_len < rest.size() && rest[unit_len] >= 'a' && rest[unit_len] <= 'z') {
            ++unit_len;
        }
        auto unit = unit_of(rest.substr(0, unit_len));
        if (!unit) {
            return bad_duration(text, "units are ms, s, m, h, d");
        }
        if (n < 0 || n > 1'000'000'000) {
            return bad_duration(text, "out of range");
        }
        total += *unit * n;
        rest.remove_prefix(unit_len);
    }
    return total;
}

std::string format_duration(Millis d) {
    if (d.count() == 0) {
        return "0s";
    }
    std::string out;
    auto take = [&](Millis unit, std::string_view name) {
        if (d >= unit) {
            out += fmt::format("{}{}", d / unit, name);
            d %= unit;
        }
    };
    if (d % Millis{86'400'000} == Millis{0}) {
        take(Millis{86'400'000}, "d");
    }
    take(Millis{3'600'000}, "h");
    take(Millis{60'000}, "m");
    take(Millis{1000}, "s");
    take(Millis{1}, "ms");
    return out;
}

}  // namespace aviary::core
