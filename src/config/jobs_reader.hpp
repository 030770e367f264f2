#pragma once
// Private to src/config (and its tests): reads the `jobs:` section (settings, permission rules,
// actions and their steps) and the `drivers:` section into the settings of those components.
#include <filesystem>
#include <string>
#include <vector>

#include "config/yaml_reader.hpp"
#include "drivers/drivers.hpp"
#include "jobs/jobs.hpp"

namespace aviary::config {

/// Reads `jobs:`; `value` is null when the file has no such section. Each action is checked
/// with jobs::validate_action, whose message is reported at the action's key. Then every
/// action of `builtins` whose name the file did not define is appended (in their order), and
/// the action names of the permission rules are checked against the result. `builtins` is
/// null while the built-ins themselves are read.
/// Relative files (jobs.ssh's key and known_hosts) are read from `base_dir`.
void read_jobs(YamlReader& r,
               const Value& value,
               jobs::Settings& settings,
               const std::vector<jobs::ActionSpec>* builtins,
               const std::filesystem::path& base_dir);

/// An action named somewhere (a permission rule, notify.grafana.actions), checked once every
/// action is known.
struct ActionRef {
    std::string name;
    Value at;
};

/// Reports each ref that names no action in `actions`, at the ref, with a suggestion: a typo
/// there would silently never match.
void check_action_refs(YamlReader& r,
                       const std::vector<ActionRef>& refs,
                       const std::vector<jobs::ActionSpec>& actions);

/// Reads `drivers:`. `dir` is left as written (empty: the wiring picks <data_dir>/nodes).
void read_drivers(YamlReader& r,
                  const Value& value,
                  drivers::Settings& settings,
                  const std::filesystem::path& base_dir);

}  // namespace aviary::config
