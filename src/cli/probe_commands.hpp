#pragma once
// `aviary probe run NAME`: one canary scenario run here, in the CLI's own process, printing each
// step and its time (docs/probes.md, "Running one by hand"). Needs no serve unless the scenario
// calls one.
#include <CLI/CLI.hpp>
#include <string>

namespace aviary::cli {

struct ProbeRunFlags {
    std::string name;
    std::string config_path;  ///< empty: the embedded default's scenarios
    std::string server;       ///< {{server}}; from the global --server
    std::string ca_file;
    bool json = false;
};

/// Adds `probe run` under `app`; returns the `run` subcommand.
CLI::App* add_probe_commands(CLI::App& app, ProbeRunFlags& flags);

/// 0 when the scenario passed, 1 when it failed or broke, 2 for a usage error (no such
/// scenario, a config that does not load).
int run_probe(const ProbeRunFlags& flags);

}  // namespace aviary::cli
