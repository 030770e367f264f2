#pragma once
// Private to api: strict REST request bodies. Unlike tweety's Params, field names are exact,
// an unknown field is an error (a typo must not silently become a default), and every error
// names the field.
#include <boost/json/object.hpp>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"

namespace aviary::api {

class Body {
public:
    /// Parses `text` as a JSON object whose fields are all in `allowed`. An empty body is an
    /// empty object.
    static core::Result<Body> parse(std::string_view text,
                                    std::initializer_list<std::string_view> allowed);

    bool has(std::string_view field) const;
    core::Result<std::optional<std::string>> string(std::string_view field) const;
    core::Result<std::optional<bool>> boolean(std::string_view field) const;
    core::Result<std::optional<int>> integer(std::string_view field, int min, int max) const;
    /// A duration string: "30m".
    core::Result<std::optional<core::Millis>> duration(std::string_view field) const;
    /// An object of string values: {"chain": "lotus"}.
    core::Result<std::optional<core::Labels>> labels(std::string_view field) const;
    /// An array of strings: ["lab", "linux"].
    core::Result<std::optional<std::vector<std::string>>> strings(std::string_view field) const;
    /// A job's params: an object of strings, integers or booleans, kept as text
    /// ({"tag": "v1", "count": 3} -> tag=v1, count=3). The action's specs check them.
    core::Result<std::optional<core::Params>> params(std::string_view field) const;

private:
    boost::json::object fields_;
};

/// Parses "k=v" (a --label / ?label= value). kInvalidArgument naming `what` otherwise.
core::Result<std::pair<std::string, std::string>> parse_label(std::string_view text,
                                                              std::string_view what);

}  // namespace aviary::api
