#pragma once
// Private to api: the tweety params object, decoded as the original's Go server did — field
// names case-insensitive (exact match first), unknown fields ignored, null as absent.
#include <boost/json/value.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/core.hpp"

namespace aviary::api {

class Params {
public:
    /// From the request's `params` member: absent (empty params), an object, or an array
    /// holding one object (the seed's `[{...}]`). Anything else is kInvalidArgument.
    static core::Result<Params> from(const boost::json::value* params);

    core::Result<std::string> required_string(std::string_view field) const;
    core::Result<std::optional<std::string>> optional_string(std::string_view field) const;
    core::Result<std::optional<bool>> optional_bool(std::string_view field) const;
    /// A duration string ("30m") or a number of seconds.
    core::Result<std::optional<core::Millis>> optional_duration(std::string_view field) const;

private:
    const boost::json::value* find(std::string_view field) const;

    boost::json::object fields_;
};

}  // namespace aviary::api
