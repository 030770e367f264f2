#include "api/params.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <cmath>

namespace aviary::api {
namespace {

namespace json = boost::json;

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (size_t i = 0; i < a.size(); ++i) {
        auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

std::string_view kind_of(const json::value& v) {
    switch (v.kind()) {
        case json::kind::null:
            return "null";
        case json::kind::bool_:
            return "a boolean";
        case json::kind::int64:
        case json::kind::uint64:
        case json::kind::double_:
            return "a number";
        case json::kind::string:
            return "a string";
        case json::kind::array:
            return "an array";
        case json::kind::object:
            return "an object";
    }
    return "a value";
}

core::Error wrong_type(std::string_view field, std::string_view want, const json::value& got) {
    return core::Error{
        core::ErrorCode::kInvalidArgument,
        fmt::format("invalid params: {} must be {}, got {}", field, want, kind_of(got))};
}

}  // namespace

core::Result<Params> Params::from(const json::value* params) {
    Params out;
    if (params == nullptr || params->is_null()) {
        return out;
    }
    const json::value* object = params;
    if (params->is_array()) {
        const auto& array = params->get_array();
        if (array.empty()) {
            return out;
        }
        if (array.size() != 1) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("invalid params: expected [{{...}}] with one object, "
                                           "got an array of {}",
                                           array.size())};
        }
        object = &array[0];
    }
    if (!object->is_object()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("invalid params: expected an object or [{{...}}], got {}",
                                       kind_of(*object))};
    }
    out.fields_ = object->get_object();
    return out;
}

const json::value* Params::find(std::string_view field) const {
    if (auto it = fields_.find(field); it != fields_.end()) {
        return it->value().is_null() ? nullptr : &it->value();
    }
    for (const auto& entry : fields_) {
        if (iequals(entry.key(), field)) {
            return entry.value().is_null() ? nullptr : &entry.value();
        }
    }
    return nullptr;
}

core::Result<std::string> Params::required_string(std::string_view field) const {
    auto value = optional_string(field);
    if (!value) {
        return value.error();
    }
    if (!*value || (*value)->empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("invalid params: {} is required", field)};
    }
    return std::move(**value);
}

core::Result<std::optional<std::string>> Params::optional_string(std::string_view field) const {
    const auto* value = find(field);
    if (value == nullptr) {
        return std::optional<std::string>{};
    }
    if (!value->is_string()) {
        return wrong_type(field, "a string", *value);
    }
    return std::optional<std::string>{std::string{value->get_string()}};
}

core::Result<std::optional<bool>> Params::optional_bool(std::string_view field) const {
    const auto* value = find(field);
    if (value == nullptr) {
        return std::optional<bool>{};
    }
    if (!value->is_bool()) {
        return wrong_type(field, "a boolean", *value);
    }
    return std::optional<bool>{value->get_bool()};
}

core::Result<std::optional<core::Millis>> Params::optional_duration(std::string_view field) const {
    const auto* value = find(field);
    if (value == nullptr) {
        return std::optional<core::Millis>{};
    }
    if (value->is_string()) {
        auto parsed = core::parse_duration(value->get_string());
        if (!parsed) {
            return core::Error{
                core::ErrorCode::kInvalidArgument,
                fmt::format("invalid params: {}: {}", field, parsed.error().message)};
        }
        return std::optional<core::Millis>{*parsed};
    }
    if (value->is_number()) {
        std::error_code ec;
        double seconds = value->to_number<double>(ec);
        if (!ec && std::isfinite(seconds) && seconds > 0 && seconds < 1e9) {
            return std::optional<core::Millis>{core::Millis{std::llround(seconds * 1000)}};
        }
        return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("invalid params: {} must be a positive number of seconds", field)};
    }
    return wrong_type(field, "a duration like \"30m\" or a number of seconds", *value);
}

}  // namespace aviary::api
