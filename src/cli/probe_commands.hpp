#pragma once
// `aviary probe run NAME`: one canary scenario run here, in the CLI's own process, printing each
// step and its time (docs/probes.md, "Running one by hand"). Needs no serve unless the scenario
// calls one.
#include <CLI/CLI.hpp>
#include <string>

#include "cli/commands.hpp"

namespace aviary::cli {

struct ProbeRunFlags {
    std::string name;
    std::string config_path;  ///< empty: the embedded default's scenarios
    std::string server;       ///< {{server}}; from the global --server
    std::string ca_file;
    std::string token;  ///< {{token}}; from the global --token
    bool json = false;
};

struct ProbeListFlags {
    std::string name;  ///< `probe runs NAME`
    int limit = 20;
};

struct AlarmFlags {
    std::string matcher;  ///< silence add: "*", a rule, a scenario or RULE/SCENARIO
    std::string duration = "2h";
    std::string reason;
    std::string id;  ///< silence expire ID
    bool ended = false;
    int limit = 20;
};

struct ProbeCommands {
    CLI::App* run = nullptr;             ///< probe run NAME: here, now
    CLI::App* list = nullptr;            ///< probes: the server's scenarios and their figures
    CLI::App* runs = nullptr;            ///< probe runs NAME: a scenario's stored runs
    CLI::App* alarms = nullptr;          ///< alarms: every alarm and its state
    CLI::App* notifications = nullptr;   ///< alarms notifications: what was sent to whom
    CLI::App* silences = nullptr;        ///< silences: those in force (--ended: all)
    CLI::App* silence_add = nullptr;     ///< silence add MATCHER --for 2h --reason ...
    CLI::App* silence_expire = nullptr;  ///< silence expire ID
};

/// Adds `probes`, `probe run`, `probe runs`, `alarms`, `silences` and `silence add|expire`.
ProbeCommands add_probe_commands(CLI::App& app,
                                 ProbeRunFlags& flags,
                                 ProbeListFlags& list,
                                 AlarmFlags& alarms);

/// 0 when the scenario passed, 1 when it failed or broke, 2 for a usage error (no such
/// scenario, a config that does not load).
int run_probe(const ProbeRunFlags& flags);

/// `aviary probes` and `aviary probe runs NAME` against the server (GET /api/v1/probes...).
int run_probes_list(const Context& context);
int run_probe_runs(const Context& context, const ProbeListFlags& flags);
/// The alarm commands against the server (docs/probes.md, "Alarms").
int run_alarm_command(const Context& context,
                      const ProbeCommands& commands,
                      const AlarmFlags& flags);

}  // namespace aviary::cli
