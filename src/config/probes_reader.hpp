#pragma once
// Private to src/config (and its tests): reads the `probes:` section (canary scenarios,
// docs/probes.md) into probes::Settings.
#include "config/yaml_reader.hpp"
#include "probes/probes.hpp"

namespace aviary::config {

/// Reads `probes:`; `value` is null when the file has no such section.
void read_probes(YamlReader& r, const Value& value, probes::Settings& settings);

}  // namespace aviary::config
