#pragma once
// Private to src/config (and its tests): reads the `probes:` section (canary scenarios,
// docs/probes.md) into probes::Settings.
#include <filesystem>

#include "config/yaml_reader.hpp"
#include "probes/probes.hpp"

namespace aviary::config {

/// Reads `probes:`; `value` is null when the file has no such section. The token named by
/// token_file (relative to `base_dir` when set) or token_env is read now.
void read_probes(YamlReader& r,
                 const Value& value,
                 probes::Settings& settings,
                 const std::filesystem::path& base_dir);

}  // namespace aviary::config
