#include "api/body.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>

namespace aviary::api {
namespace {

namespace json = boost::json;

core::Error bad(std::string_view field, std::string_view want) {
    return core::Error{core::ErrorCode::kInvalidArgument,
                       fmt::format("body field \"{}\" must be {}", field, want)};
}

}  // namespace

core::Result<Body> Body::parse(std::string_view text,
                               std::initializer_list<std::string_view> allowed) {
    Body body;
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
        return body;
    }
    json::parse_options options;
    options.max_depth = 32;
    std::error_code ec;
    auto parsed = json::parse(text, ec, {}, options);
    if (ec) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("body is not valid JSON: {}", ec.message())};
    }
    if (!parsed.is_object()) {
        return core::Error{core::ErrorCode::kInvalidArgument, "body must be a JSON object"};
    }
    for (const auto& entry : parsed.get_object()) {
        if (std::find(allowed.begin(), allowed.end(), entry.key()) == allowed.end()) {
            std::string names;
            for (auto name : allowed) {
                names += fmt::format("{}{}", names.empty() ? "" : ", ", name);
            }
            return core::Error{
                core::ErrorCode::kInvalidArgument,
                fmt::format("unknown body field \"{}\" (known: {})", entry.key(), names)};
        }
    }
    body.fields_ = std::move(parsed.get_object());
    return body;
}

bool Body::has(std::string_view field) const {
    const auto* v = fields_.if_contains(field);
    return v != nullptr && !v->is_null();
}

core::Result<std::optional<std::string>> Body::string(std::string_view field) const {
    if (!has(field)) {
        return std::optional<std::string>{};
    }
    const auto& v = fields_.at(field);
    if (!v.is_string()) {
        return bad(field, "a string");
    }
    return std::optional<std::string>{std::string{v.get_string()}};
}

core::Result<std::optional<bool>> Body::boolean(std::string_view field) const {
    if (!has(field)) {
        return std::optional<bool>{};
    }
    const auto& v = fields_.at(field);
    if (!v.is_bool()) {
        return bad(field, "true or false");
    }
    return std::optional<bool>{v.get_bool()};
}

core::Result<std::optional<int>> Body::integer(std::string_view field, int min, int max) const {
    if (!has(field)) {
        return std::optional<int>{};
    }
    const auto& v = fields_.at(field);
    std::int64_t n = 0;
    if (v.is_int64()) {
        n = v.get_int64();
    } else if (v.is_uint64() && v.get_uint64() <= std::uint64_t(max)) {
        n = std::int64_t(v.get_uint64());
    } else {
        return bad(field, fmt::format("an integer from {} to {}", min, max));
    }
    if (n < min || n > max) {
        return bad(field, fmt::format("an integer from {} to {}", min, max));
    }
    return std::optional<int>{int(n)};
}

core::Result<std::optional<core::Millis>> Body::duration(std::string_view field) const {
    auto text = string(field);
    if (!text) {
        return bad(field, "a duration like \"30m\"");
    }
    if (!*text) {
        return std::optional<core::Millis>{};
    }
    auto parsed = core::parse_duration(**text);
    if (!parsed) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("body field \"{}\": {}", field, parsed.error().message)};
    }
    return std::optional<core::Millis>{*parsed};
}

core::Result<std::optional<core::Labels>> Body::labels(std::string_view field) const {
    if (!has(field)) {
        return std::optional<core::Labels>{};
    }
    const auto& v = fields_.at(field);
    if (!v.is_object()) {
        return bad(field, "an object of strings like {\"chain\": \"lotus\"}");
    }
    core::Labels labels;
    for (const auto& entry : v.get_object()) {
        if (!entry.value().is_string() || entry.key().empty()) {
            return bad(field, "an object of strings like {\"chain\": \"lotus\"}");
        }
        labels.emplace(std::string{entry.key()}, std::string{entry.value().get_string()});
    }
    return std::optional<core::Labels>{std::move(labels)};
}

core::Result<std::optional<std::vector<std::string>>> Body::strings(std::string_view field) const {
    if (!has(field)) {
        return std::optional<std::vector<std::string>>{};
    }
    const auto& v = fields_.at(field);
    if (!v.is_array()) {
        return bad(field, "an array of strings like [\"lab\"]");
    }
    std::vector<std::string> out;
    for (const auto& item : v.get_array()) {
        if (!item.is_string()) {
            return bad(field, "an array of strings like [\"lab\"]");
        }
        out.emplace_back(item.get_string());
    }
    return std::optional<std::vector<std::string>>{std::move(out)};
}

core::Result<std::optional<core::Params>> Body::params(std::string_view field) const {
    if (!has(field)) {
        return std::optional<core::Params>{};
    }
    const auto& v = fields_.at(field);
    auto wrong = [&] {
        return bad(field, "an object of strings, integers or booleans like {\"tag\": \"v1\"}");
    };
    if (!v.is_object()) {
        return wrong();
    }
    core::Params params;
    for (const auto& entry : v.get_object()) {
        const auto& value = entry.value();
        std::string text;
        if (value.is_string()) {
            text = std::string{value.get_string()};
        } else if (value.is_int64()) {
            text = std::to_string(value.get_int64());
        } else if (value.is_uint64()) {
            text = std::to_string(value.get_uint64());
        } else if (value.is_bool()) {
            text = value.get_bool() ? "true" : "false";
        } else {
            return core::Error{
                core::ErrorCode::kInvalidArgument,
                fmt::format("body field \"{}.{}\" must be a string, an integer or a boolean", field,
                            std::string_view{entry.key()})};
        }
        if (entry.key().empty()) {
            return wrong();
        }
        params.emplace(std::string{entry.key()}, std::move(text));
    }
    return std::optional<core::Params>{std::move(params)};
}

core::Result<std::pair<std::string, std::string>> parse_label(std::string_view text,
                                                              std::string_view what) {
    auto eq = text.find('=');
    if (eq == std::string_view::npos || eq == 0) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("{} must look like key=value, got \"{}\"", what, text)};
    }
    return std::pair{std::string{text.substr(0, eq)}, std::string{text.substr(eq + 1)}};
}

}  // namespace aviary::api
