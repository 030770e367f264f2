#pragma once
// The client commands (docs/cli.md): each takes its parsed flags, talks to the REST API and
// returns the process exit code (ExitCode in client.hpp). main.cpp only parses and dispatches.
#include <boost/json/value.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/client.hpp"
#include "core/core.hpp"

namespace aviary::cli {

/// What every client command shares: where the server is, and how to print.
struct Context {
    Client client;
    bool json = false;       ///< print the server's JSON instead of tables
    bool has_token = false;  ///< the server knows who we are: owner defaults to the token's
};

// --- nodes -------------------------------------------------------------------------------

struct NodesFlags {
    std::vector<std::string> labels;  ///< "k=v", all must match
};
int run_nodes(const Context& context, const NodesFlags& flags);

struct NodeAddFlags {
    std::string name;
    std::string driver;  ///< empty: not sent (the server's default, or unchanged)
    std::string image_tag;
    std::vector<std::string> labels;
    std::string note;
    bool note_given = false;  ///< --note "" clears a note, so absence is tracked apart
    std::string control_url;  ///< driver sidecar: the sidecar's control API
};
int run_nodes_add(const Context& context, const NodeAddFlags& flags);
int run_nodes_remove(const Context& context, const std::string& name);

// --- machines ----------------------------------------------------------------------------

struct MachineAddFlags {
    std::string name;
    std::string driver;  ///< empty: the server's default (ssh)
    std::string hostname;
    std::string address;
    std::string ssh_user;
    int ssh_port = 0;  ///< 0: not sent
    std::string ipmi_address;
    std::string ipmi_user;
    std::string pdu_host;
    int pdu_outlet = 0;  ///< 0: not sent
    std::vector<std::string> groups;
    std::vector<std::string> labels;
    std::string note;
};
int run_machines(const Context& context);
int run_machines_add(const Context& context, const MachineAddFlags& flags);
int run_machines_remove(const Context& context, const std::string& name);

struct MaintenanceFlags {
    std::string node;
    std::string mode;  ///< "on" or "off"
    std::string reason;
};
int run_maintenance(const Context& context, const MaintenanceFlags& flags);

// --- leases ------------------------------------------------------------------------------

struct AcquireFlags {
    std::string node;                 ///< one named node, or
    std::vector<std::string> labels;  ///< a selector, "k=v" pairs
    int count = 0;                    ///< 0: not sent (one node)
    std::string owner;                ///< empty: the token's identity, else $USER
    std::string ttl;                  ///< durations as typed ("30m"): the server parses them
    std::string wait;
    bool exclusive = false;
    std::string reason;
};
int run_acquire(const Context& context, const AcquireFlags& flags);

/// Acquires as `flags` say, waiting when --wait is given, with progress on a terminal.
/// The LEASE object on success.
Outcome<boost::json::value> acquire_lease(const Context& context, const AcquireFlags& flags);

struct RenewFlags {
    std::string id;
    std::string ttl;
};
int run_renew(const Context& context, const RenewFlags& flags);

struct ReleaseFlags {
    std::string target;  ///< a node name or a lease id
    std::string owner;
    bool force = false;  ///< free --force: end whoever's lease it is
};
int run_release(const Context& context, const ReleaseFlags& flags);
int run_free(const Context& context, const ReleaseFlags& flags);
int run_who(const Context& context);

struct HistoryFlags {
    std::string node;
    int limit = 50;
};
int run_history(const Context& context, const HistoryFlags& flags);

struct WithLeaseFlags {
    AcquireFlags acquire;
    std::vector<std::string> command;  ///< after "--": run as is, no shell
};
int run_with_lease(const Context& context, const WithLeaseFlags& flags);

// --- jobs --------------------------------------------------------------------------------

/// An action on a node, submitted as a job: upgrade, install-snapshot, canary create|delete and
/// run-action all fill this one struct.
struct ActionFlags {
    std::string node;
    std::string action;               ///< "upgrade", "create-canary", run-action's ACTION
    std::string tag;                  ///< sent as params.tag when given
    bool tag_from_node = false;       ///< canary create without TAG: the node's image_tag
    std::vector<std::string> params;  ///< run-action --param "k=v"
    std::string owner;                ///< set: implicit acquire for this owner; empty: none
    std::string ttl;                  ///< the implicit acquire's lease length, as typed
    std::string reason;
    bool wait = false;  ///< follow the job until it ends; exit by its end (job_exit_code)
    bool logs = false;  ///< while waiting, print its output lines
};
int run_action(const Context& context, const ActionFlags& flags);

/// aviary switch-producer: the switch-producer action on --to, followed with its output (the
/// plan, each check and step).
struct SwitchProducerFlags {
    std::string from;
    std::string to;
    bool execute = false;
    int max_lag = 3;
};
int run_switch_producer(const Context& context, const SwitchProducerFlags& flags);
/// The actions the server knows, with their params and steps.
int run_actions(const Context& context);

struct JobsFlags {
    std::string node;
    std::string state;  ///< one of core::JobState's names; empty: all
    int limit = 50;
};
int run_jobs(const Context& context, const JobsFlags& flags);

// --- logs --------------------------------------------------------------------------------

/// `aviary logs` and `aviary notifications` (docs/logs.md).
struct LogsFlags {
    std::string kind = "logs";  ///< logs, notifications; with --follow also all
    std::string node;
    std::string service;  ///< the sender
    std::string source;
    std::optional<int> level;  ///< level <= this
    std::string contains;
    std::string grep;                 ///< a regex searched in the message
    std::vector<std::string> fields;  ///< "path=value": a free field equal to a value
    std::string since = "1h";
    std::string until;
    int limit = 100;
    bool follow = false;
};
/// The newest matching records, oldest first; with --follow, then every new one as it is
/// stored, reconnecting with its cursor whenever the tail ends.
int run_logs(const Context& context, const LogsFlags& flags);

/// The job subcommands: show, logs, cancel, retry, wait.
struct JobFlags {
    std::string id;
    bool follow = false;    ///< logs -f: until the job ends
    std::int64_t from = 0;  ///< logs --from: the first line's seq; 0: the last 1000 lines
    bool wait = false;      ///< retry --wait
    bool logs = false;      ///< wait / retry --wait: print output lines while waiting
};
int run_job_show(const Context& context, const JobFlags& flags);
int run_job_logs(const Context& context, const JobFlags& flags);
int run_job_cancel(const Context& context, const JobFlags& flags);
int run_job_retry(const Context& context, const JobFlags& flags);
int run_job_wait(const Context& context, const JobFlags& flags);

/// The exit code of a command that followed a job to `state`: 0 succeeded, 1 failed,
/// 4 timed_out, 5 cancelled (docs/cli.md).
int job_exit_code(std::string_view state);

// --- completion --------------------------------------------------------------------------

/// Prints scripts/aviary-completion.bash (compiled in). Only "bash" is known.
int run_completion(const std::string& shell);

// --- shared by the commands -----------------------------------------------------------------

/// "k=v" pairs as a JSON object; a pair without '=' is a usage Failure.
Outcome<boost::json::value> labels_object(const std::vector<std::string>& pairs);
/// The owner to send: --owner, else nothing when a token names us, else the login name.
std::string default_owner(const Context& context, const std::string& owner_flag);
/// Prints a lease as "key  value" lines (or its JSON with --json).
void print_lease(const Context& context, const boost::json::value& lease);

}  // namespace aviary::cli
