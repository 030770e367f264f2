#pragma once
/// JSON paths into a response body, and how a value compares with the text a user wrote: for
/// the job engine's http step (docs/actions.md) and the probes' assertions (docs/probes.md),
/// which read other systems' JSON.
#include <boost/json/value.hpp>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"

namespace aviary::net {

/// One step of a JSON path: a member name or an array index.
struct JsonPathStep {
    bool is_index = false;
    std::string member;     ///< when !is_index
    std::size_t index = 0;  ///< when is_index
};

/// Parses a path into a JSON body: "result.height", "items[0].name", "$.result", "$[2]",
/// "a[\"key.with.dots\"]"; "" and "$" are the whole body (no steps). kInvalidArgument naming
/// the position of the problem.
core::Result<std::vector<JsonPathStep>> parse_json_path(std::string_view path);

/// The value at `path` in `root`, or null with `missing` saying where the walk stopped
/// ("no member \"height\" in result").
const boost::json::value* find_json(const boost::json::value& root,
                                    const std::vector<JsonPathStep>& path,
                                    std::string& missing);

/// Whether `actual` equals `expected` by these rules: a string value with the text, a number
/// numerically ("5" equals 5 and 5.0), true/false/null as those words, an object or array with
/// the text parsed as JSON.
bool json_equals(const boost::json::value& actual, std::string_view expected);

/// "an object", "an array", "a string", "a boolean", "null" or "a number": for messages.
std::string_view json_kind(const boost::json::value& value);

/// A number written as `text` (all of it), or nullopt.
std::optional<double> parse_number(std::string_view text);

}  // namespace aviary::net
