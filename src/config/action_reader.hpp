#pragma once
// Private to src/config: reads one action of `jobs.actions` (its settings, params and steps).
#include <string_view>
#include <vector>

#include "config/yaml_reader.hpp"
#include "jobs/jobs.hpp"

namespace aviary::config {

/// What a DNS-1123 label is, for messages about names that are not one.
inline constexpr std::string_view kDnsLabelRule =
    "1-63 of a-z, 0-9 and '-', starting and ending with a letter or digit";

/// Reads the action named by mapping key `key` (its text is the name, its position is where
/// jobs::validate_action's message is reported) from `value`, and appends it to `actions` when
/// it reads cleanly and passes validate_action. A driver install/upgrade step without an
/// image_tag gets "{{params.tag}}" when the action has a `tag` param, else "" (the node's own).
void read_action(YamlReader& r,
                 const Value& key,
                 const Value& value,
                 std::vector<jobs::ActionSpec>& actions);

/// Whether `name` is an HTTP header name (an RFC 9110 token): what an http step, or a probe's,
/// may send.
bool is_header_name(std::string_view name);

}  // namespace aviary::config
