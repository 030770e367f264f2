#pragma once
// Private to src/config (and its tests): reads the `notify:` section (Grafana annotations) into
// notify::Settings.
#include <filesystem>
#include <vector>

#include "config/yaml_reader.hpp"
#include "jobs/jobs.hpp"
#include "notify/notify.hpp"

namespace aviary::config {

/// Reads `notify:`; `value` is null when the file has no such section. `actions` are the job
/// actions after the built-in merge: notify.grafana.actions must name them. With a url, the
/// token is read now from token_file (relative to `base_dir` when set) or token_env.
void read_notify(YamlReader& r,
                 const Value& value,
                 notify::Settings& settings,
                 const std::vector<jobs::ActionSpec>& actions,
                 const std::filesystem::path& base_dir);

}  // namespace aviary::config
