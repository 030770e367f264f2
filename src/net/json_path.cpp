#include "net/json_path.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <charconv>
#include <cstdint>
#include <system_error>

namespace aviary::net {
namespace {

namespace json = boost::json;

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

template <class T>
std::optional<T> parse_whole(std::string_view text) {
    T n{};
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return n;
}

bool numbers_equal(const json::value& actual, std::string_view expected) {
    // Integers compare exactly (a double would lose digits past 2^53); anything else as doubles.
    if (actual.is_int64()) {
        if (auto n = parse_whole<std::int64_t>(expected)) {
            return *n == actual.get_int64();
        }
    } else if (actual.is_uint64()) {
        if (auto n = parse_whole<std::uint64_t>(expected)) {
            return *n == actual.get_uint64();
        }
    }
    auto d = parse_whole<double>(expected);
    return d && *d == actual.to_number<double>();
}

}  // namespace

std::string_view json_kind(const json::value& value) {
    switch (value.kind()) {
        case json::kind::object:
            return "an object";
        case json::kind::array:
            return "an array";
        case json::kind::string:
            return "a string";
        case json::kind::bool_:
            return "a boolean";
        case json::kind::null:
            return "null";
        default:
            return "a number";
    }
}

std::optional<double> parse_number(std::string_view text) {
    return parse_whole<double>(text);
}

core::Result<std::vector<JsonPathStep>> parse_json_path(std::string_view path) {
    auto bad = [&](std::size_t at, std::string_view what) {
        return invalid(fmt::format("json path \"{}\": {} at character {}", path, what, at + 1));
    };
    std::vector<JsonPathStep> steps;
    std::size_t i = 0;
    if (path.starts_with('$')) {
        i = 1;
        if (i < path.size() && path[i] != '.' && path[i] != '[') {
            return bad(i, "expected '.' or '[' after '$'");
        }
    }
    // A member name may come at the start (without '$') and after each '.'; a leading '.'
    // reads as jq writes it (".result.height").
    bool need_member = i == 0;
    while (i < path.size()) {
        if (path[i] == '[') {
            // A quoted name ends at `"]`: it may hold '.', '[' and ']' (not '"').
            bool quoted = i + 1 < path.size() && path[i + 1] == '"';
            auto close = quoted ? path.find("\"]", i + 2) : path.find(']', i);
            if (close == std::string_view::npos) {
                return bad(i, quoted ? "unclosed '[\"'" : "unclosed '['");
            }
            close += quoted ? 1 : 0;
            auto inside = path.substr(i + 1, close - i - 1);
            JsonPathStep step;
            if (quoted) {
                step.member = std::string{inside.substr(1, inside.size() - 2)};
                if (step.member.find('"') != std::string::npos) {
                    return bad(i, "a quoted member name cannot hold '\"'");
                }
            } else {
                auto index = parse_whole<std::size_t>(inside);
                if (!index || inside.front() == '+') {
                    return bad(i + 1,
                               "expected an array index (0, 1, ...) or a quoted member name "
                               "inside [ ]");
                }
                step.is_index = true;
                step.index = *index;
            }
            steps.push_back(std::move(step));
            i = close + 1;
            if (i < path.size() && path[i] != '.' && path[i] != '[') {
                return bad(i, "expected '.' or '[' after ']'");
            }
        } else if (path[i] == '.') {
            if (i + 1 >= path.size() || path[i + 1] == '.' || path[i + 1] == '[') {
                return bad(i, "a member name must follow '.'");
            }
            need_member = true;
            ++i;
        } else if (path[i] == ']') {
            return bad(i, "']' without '['");
        } else {
            if (!need_member) {
                return bad(i, "expected '.' or '['");
            }
            auto end = path.find_first_of(".[]", i);
            if (end == std::string_view::npos) {
                end = path.size();
            }
            steps.push_back(JsonPathStep{.member = std::string{path.substr(i, end - i)}});
            need_member = false;
            i = end;
        }
    }
    return steps;
}

const json::value* find_json(const json::value& root,
                             const std::vector<JsonPathStep>& path,
                             std::string& missing) {
    const json::value* at = &root;
    std::string walked;  // the path so far, for messages; empty: the whole body
    for (const auto& step : path) {
        std::string_view here = walked.empty() ? std::string_view{"the body"} : walked;
        if (step.is_index) {
            const auto* array = at->if_array();
            if (array == nullptr) {
                missing = fmt::format("{} is {}, not an array", here, json_kind(*at));
                return nullptr;
            }
            if (step.index >= array->size()) {
                missing = fmt::format("{} has {} element{}, so no [{}]", here, array->size(),
                                      array->size() == 1 ? "" : "s", step.index);
                return nullptr;
            }
            at = &(*array)[step.index];
            walked += fmt::format("[{}]", step.index);
        } else {
            const auto* object = at->if_object();
            if (object == nullptr) {
                missing = fmt::format("{} is {}, not an object", here, json_kind(*at));
                return nullptr;
            }
            const auto* member = object->if_contains(step.member);
            if (member == nullptr) {
                missing = fmt::format("no member \"{}\" in {}", step.member, here);
                return nullptr;
            }
            at = member;
            walked += walked.empty() ? step.member : "." + step.member;
        }
    }
    return at;
}

bool json_equals(const json::value& actual, std::string_view expected) {
    switch (actual.kind()) {
        case json::kind::string:
            return actual.get_string() == expected;
        case json::kind::bool_:
            return expected == (actual.get_bool() ? "true" : "false");
        case json::kind::null:
            return expected == "null";
        case json::kind::int64:
        case json::kind::uint64:
        case json::kind::double_:
            return numbers_equal(actual, expected);
        case json::kind::object:
        case json::kind::array: {
            json::error_code ec;
            auto parsed = json::parse(expected, ec);
            return !ec && parsed == actual;
        }
    }
    return false;
}

}  // namespace aviary::net
