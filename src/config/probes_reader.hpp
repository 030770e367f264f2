#pragma once
// Private to src/config (and its tests): reads the `probes:` section (canary scenarios,
// docs/probes.md) into probes::Settings.
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "config/yaml_reader.hpp"
#include "probes/probes.hpp"

namespace aviary::config {

/// Reads `probes:`; `value` is null when the file has no such section. The token named by
/// token_file (relative to `base_dir` when set) or token_env is read now. The notifiers the
/// alarms name go to `notify_refs` with where each is named, for the caller to check against
/// notify.notifiers.
void read_probes(YamlReader& r,
                 const Value& value,
                 probes::Settings& settings,
                 const std::filesystem::path& base_dir,
                 std::vector<std::pair<std::string, Value>>& notify_refs);

}  // namespace aviary::config
