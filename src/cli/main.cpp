// The aviary binary: one executable, several roles (docs/architecture.md). This file parses the
// command line and dispatches; the client commands live in commands.hpp's files.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <limits>
#include <string>
#include <variant>
#include <vector>

#include "api/api.hpp"
#include "cli/commands.hpp"
#include "cli/probe_commands.hpp"
#include "cli/supervise_command.hpp"
#include "config/config.hpp"
#include "drivers/drivers.hpp"

namespace {

using namespace aviary;

struct ServeFlags {
    std::string config_path;
    std::string listen;
    std::string data_dir;
    std::string store;
    bool insecure = false;
};

/// The config file (or the embedded default) with the flags applied over it; an exit code
/// when it cannot be loaded.
std::variant<config::Config, int> load_role_config(const ServeFlags& flags) {
    auto config = flags.config_path.empty()
                      ? config::load_string(config::embedded_default(), "<embedded default>")
                      : config::load_file(flags.config_path);
    if (!config) {
        std::fprintf(stderr, "aviary: invalid configuration:\n%s\n",
                     config.error().message.c_str());
        return 2;
    }
    // Flags win over the file.
    if (!flags.listen.empty()) {
        config->server.listen = flags.listen;
    }
    if (!flags.data_dir.empty()) {
        config->data_dir = flags.data_dir;
    }
    if (!flags.store.empty()) {
        if (auto problem = config::check_store_url(flags.store)) {
            std::fprintf(stderr, "aviary: --store: %s\n", problem->c_str());
            return 2;
        }
        config->store.driver = "postgres";
        config->store.url = flags.store;
    }
    return std::move(*config);
}

int run_worker(const ServeFlags& flags) {
    auto config = load_role_config(flags);
    if (auto* code = std::get_if<int>(&config)) {
        return *code;
    }
    return api::work(std::move(std::get<config::Config>(config)));
}

int run_serve(const ServeFlags& flags) {
    auto config = load_role_config(flags);
    if (auto* code = std::get_if<int>(&config)) {
        return *code;
    }
    return api::serve(std::move(std::get<config::Config>(config)),
                      api::ServeOptions{.insecure = flags.insecure});
}

struct GlobalFlags {
    std::string server = "http://127.0.0.1:1337";
    std::string token;
    std::string ca_file;
    bool json = false;
};

/// Every flag and argument of the client commands, filled by CLI11.
struct ClientFlags {
    cli::NodesFlags nodes;
    cli::NodeAddFlags node_add;
    std::string node_remove;
    cli::MachineAddFlags machine_add;
    std::string machine_remove;
    cli::MaintenanceFlags maintenance;
    cli::AcquireFlags acquire;
    cli::RenewFlags renew;
    cli::ReleaseFlags release;
    cli::ReleaseFlags free;
    cli::HistoryFlags history;
    cli::WithLeaseFlags with_lease;
    cli::ActionFlags action;  ///< upgrade, install-snapshot, canary create|delete, run-action
    cli::JobsFlags jobs;
    cli::JobFlags job;  ///< job show|logs|cancel|retry|wait
    cli::SwitchProducerFlags switch_producer;
    cli::LogsFlags logs;
    std::string completion_shell;
};

const CLI::Validator kLabelPair{[](const std::string& text) {
                                    return text.find('=') == std::string::npos ||
                                                   text.front() == '='
                                               ? std::string{"expected KEY=VALUE"}
                                               : std::string{};
                                },
                                "KEY=VALUE", "label"};

const CLI::Validator kDuration{[](const std::string& text) {
                                   auto parsed = core::parse_duration(text);
                                   return parsed ? std::string{} : parsed.error().message;
                               },
                               "DURATION", "duration"};

void add_acquire_options(CLI::App& command, cli::AcquireFlags& flags) {
    command.add_option("--label", flags.labels, "any free node with this label (repeatable)")
        ->check(kLabelPair);
    command.add_option("--count", flags.count, "how many nodes (with --label), all or nothing")
        ->check(CLI::Range(1, 64));
    command.add_option("--owner", flags.owner, "who holds it (default: the token's or $USER)");
    command.add_option("--ttl", flags.ttl, "lease length, e.g. 2h (default: the server's)")
        ->check(kDuration);
    command.add_option("--wait", flags.wait, "queue for the node(s) up to this long, e.g. 10m")
        ->check(kDuration);
    command.add_flag("--exclusive", flags.exclusive, "refuse even the same owner if held");
    command.add_option("--reason", flags.reason, "shown to everyone");
}

/// The parsed subcommands, for dispatch.
struct Commands {
    CLI::App* serve;
    CLI::App* worker;
    CLI::App* store_copy;
    CLI::App* version;
    CLI::App* nodes;
    CLI::App* node_add;
    CLI::Option* note;
    CLI::App* node_remove;
    CLI::App* machines;
    CLI::App* machine_add;
    CLI::App* machine_remove;
    CLI::App* maintenance;
    CLI::App* acquire;
    CLI::App* renew;
    CLI::App* release;
    CLI::App* free;
    CLI::App* who;
    CLI::App* history;
    CLI::App* with_lease;
    CLI::App* upgrade;
    CLI::App* install_snapshot;
    CLI::App* canary_create;
    CLI::App* canary_delete;
    CLI::App* run_action;
    CLI::App* switch_producer;
    CLI::App* actions;
    CLI::App* jobs;
    CLI::App* logs;
    CLI::App* notifications;
    CLI::App* job_show;
    CLI::App* job_logs;
    CLI::App* job_cancel;
    CLI::App* job_retry;
    CLI::App* job_wait;
    CLI::App* completion;
};

void add_node_commands(CLI::App& app, ClientFlags& flags, Commands& commands) {
    commands.nodes = app.add_subcommand("nodes", "list the pool's nodes (add, remove)");
    commands.nodes
        ->add_option("--label", flags.nodes.labels, "only nodes with this label (repeatable)")
        ->check(kLabelPair);
    commands.nodes->require_subcommand(0, 1);
    auto* add = commands.node_add =
        commands.nodes->add_subcommand("add", "add or update a node (admin)");
    add->add_option("name", flags.node_add.name, "node name")->required();
    add->add_option("--driver", flags.node_add.driver, "sim, helm or sidecar")
        ->check(CLI::IsMember({"sim", "helm", "sidecar"}));
    add->add_option("--control-url", flags.node_add.control_url,
                    "driver sidecar: the sidecar's control API, http://HOST:PORT");
    add->add_option("--image-tag", flags.node_add.image_tag, "the image tag it runs");
    add->add_option("--label", flags.node_add.labels, "label KEY=VALUE (repeatable)")
        ->check(kLabelPair);
    commands.note = add->add_option("--note", flags.node_add.note, "free text shown in lists");
    commands.node_remove =
        commands.nodes->add_subcommand("remove", "remove a node added through the API (admin)");
    commands.node_remove->add_option("name", flags.node_remove, "node name")->required();

    commands.machines = app.add_subcommand("machines", "list the machines (add, remove)");
    commands.machines->require_subcommand(0, 1);
    auto* madd = commands.machine_add = commands.machines->add_subcommand(
        "add", "add or replace a machine (admin; the options are the whole machine)");
    auto& m = flags.machine_add;
    madd->add_option("name", m.name, "machine name")->required();
    madd->add_option("--driver", m.driver, "ssh (default) or none")
        ->check(CLI::IsMember({"ssh", "none"}));
    madd->add_option("--hostname", m.hostname, "its name on the network");
    madd->add_option("--address", m.address, "where to reach it (default: the hostname)");
    madd->add_option("--ssh-user", m.ssh_user, "the user ssh steps log in as (default root)");
    madd->add_option("--ssh-port", m.ssh_port, "default 22")->check(CLI::Range(1, 65535));
    madd->add_option("--ipmi-address", m.ipmi_address, "its BMC, HOST[:PORT]");
    madd->add_option("--ipmi-user", m.ipmi_user, "the BMC user");
    madd->add_option("--pdu-host", m.pdu_host, "the PDU's SNMP agent, HOST[:PORT]");
    madd->add_option("--pdu-outlet", m.pdu_outlet, "its outlet on the PDU, from 1")
        ->check(CLI::Range(1, 4096));
    madd->add_option("--group", m.groups, "a group (repeatable)");
    madd->add_option("--label", m.labels, "label KEY=VALUE (repeatable)")->check(kLabelPair);
    madd->add_option("--note", m.note, "free text shown in lists");
    commands.machine_remove = commands.machines->add_subcommand(
        "remove", "remove a machine added through the API (admin)");
    commands.machine_remove->add_option("name", flags.machine_remove, "machine name")->required();

    auto* maintenance = commands.maintenance =
        app.add_subcommand("maintenance", "take a node out of service (on) or back (off)");
    maintenance->add_option("node", flags.maintenance.node, "node name")->required();
    maintenance->add_option("mode", flags.maintenance.mode, "on or off")
        ->required()
        ->check(CLI::IsMember({"on", "off"}));
    maintenance->add_option("--reason", flags.maintenance.reason, "why (shown everywhere)");
}

void add_lease_commands(CLI::App& app, ClientFlags& flags, Commands& commands) {
    commands.acquire = app.add_subcommand("acquire", "lease a node, or nodes by label");
    commands.acquire->add_option("node", flags.acquire.node, "the node (or use --label)");
    add_acquire_options(*commands.acquire, flags.acquire);

    commands.renew = app.add_subcommand("renew", "extend a lease");
    commands.renew->add_option("id", flags.renew.id, "lease id")->required();
    commands.renew
        ->add_option("--ttl", flags.renew.ttl,
                     "new length from now (default: the "
                     "server's lease_ttl)")
        ->check(kDuration);

    commands.release = app.add_subcommand("release", "give back a node's lease, or a lease by id");
    commands.release->add_option("target", flags.release.target, "node name or lease id")
        ->required();
    commands.release->add_option("--owner", flags.release.owner, "who holds it (default: $USER)");

    commands.free = app.add_subcommand("free", "end the lease on a node (--force: anyone's)");
    commands.free->add_option("node", flags.free.target, "node name")->required();
    commands.free->add_flag("--force", flags.free.force, "end another owner's lease (admin)");
    commands.free->add_option("--owner", flags.free.owner, "who holds it (default: $USER)");

    commands.who = app.add_subcommand("who", "leases held and acquires waiting");
    commands.history = app.add_subcommand("history", "the audit trail, newest first");
    commands.history->add_option("node", flags.history.node, "only this node");
    commands.history->add_option("--limit", flags.history.limit, "at most this many events")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);

    auto* with_lease = commands.with_lease = app.add_subcommand(
        "with-lease", "run a command while holding a lease: with-lease --label k=v -- CMD ARGS…");
    with_lease->add_option("node", flags.with_lease.acquire.node, "the node (or use --label)");
    add_acquire_options(*with_lease, flags.with_lease.acquire);
    with_lease->footer(
        "CMD runs without a shell, with AVIARY_NODES (comma-separated), AVIARY_NODE0… and "
        "AVIARY_LEASE_ID set. The lease is renewed while it runs and released when it exits or "
        "when aviary gets SIGTERM, SIGINT or SIGHUP (forwarded to CMD). Exit status: CMD's, or "
        "128+signal when interrupted.");
}

/// --owner, --ttl, --reason, --wait, --logs: how every action command submits and waits.
void add_submit_options(CLI::App& command, cli::ActionFlags& flags) {
    command.add_option("--owner", flags.owner,
                       "acquire the node for this owner first (default: none; the node must be "
                       "free or yours)");
    command.add_option("--ttl", flags.ttl, "with --owner: the lease's length, e.g. 2h")
        ->check(kDuration);
    command.add_option("--reason", flags.reason, "with --owner: the lease's reason");
    auto* wait = command.add_flag("--wait", flags.wait,
                                  "follow the job until it ends; exit 0 succeeded, 1 failed, "
                                  "4 timed out, 5 cancelled");
    command.add_flag("--logs", flags.logs, "with --wait: print the job's output as it runs")
        ->needs(wait);
}

CLI::App* add_action_command(CLI::App& parent,
                             std::string name,
                             std::string description,
                             cli::ActionFlags& flags) {
    auto* command = parent.add_subcommand(std::move(name), std::move(description));
    command->add_option("node", flags.node, "node name")->required();
    add_submit_options(*command, flags);
    return command;
}

void add_job_commands(CLI::App& app, ClientFlags& flags, Commands& commands) {
    auto& action = flags.action;
    commands.upgrade =
        add_action_command(app, "upgrade", "run the node on another image tag (a job)", action);
    commands.upgrade->add_option("tag", action.tag, "image tag")->required();
    commands.install_snapshot =
        add_action_command(app, "install-snapshot",
                           "wipe the node's data and start it from a snapshot (a job)", action);
    commands.install_snapshot->add_option("tag", action.tag, "image tag")->required();
    auto* canary = app.add_subcommand("canary", "create or delete a canary node (a job)");
    canary->require_subcommand(1);
    commands.canary_create = add_action_command(
        *canary, "create", "install the node, or bring an existing one to TAG", action);
    commands.canary_create->add_option("tag", action.tag,
                                       "image tag (default: the node's current one)");
    commands.canary_delete =
        add_action_command(*canary, "delete", "uninstall the node and delete its data", action);
    commands.run_action = add_action_command(
        app, "run-action", "run any configured action on a node (aviary actions lists them)",
        action);
    commands.run_action->add_option("action", action.action, "action name")->required();
    commands.run_action->add_option("--param", action.params, "action param KEY=VALUE (repeatable)")
        ->check(kLabelPair);
    commands.actions = app.add_subcommand("actions", "the actions the server can run");
    auto& sp = flags.switch_producer;
    commands.switch_producer = app.add_subcommand(
        "switch-producer",
        "hand block production from one supervised node to another (a job; a dry run unless "
        "--execute; docs/producers.md)");
    commands.switch_producer->add_option("--from", sp.from, "the node producing now")->required();
    commands.switch_producer->add_option("--to", sp.to, "the node to produce next")->required();
    commands.switch_producer->add_flag("--execute", sp.execute,
                                       "hand over (without it: the plan and the checks only)");
    commands.switch_producer
        ->add_option("--max-lag", sp.max_lag, "the most blocks --to may be behind --from")
        ->capture_default_str()
        ->check(CLI::Range(0, 1'000'000));

    auto add_logs = [&](const char* name, const char* description, bool kinds) {
        auto& logs = flags.logs;
        auto* command = app.add_subcommand(name, description);
        if (kinds) {
            command->add_option("--kind", logs.kind, "logs, notifications, or all (with -f)")
                ->capture_default_str()
                ->check(CLI::IsMember({"logs", "notifications", "all"}));
        }
        command->add_option("--node", logs.node, "only this node's");
        command->add_option("--service,--sender", logs.service, "only this service's (sender's)");
        command->add_option("--source", logs.source, "only from this source (stdout, stderr...)");
        command->add_option("--grep", logs.grep,
                            "only messages this regular expression (RE2 syntax) finds");
        command->add_option("--field", logs.fields,
                            "only records whose free field PATH equals VALUE (PATH=VALUE; "
                            "repeat for more)");
        command->add_option("--level", logs.level, "only records at this level or below");
        command->add_option("--contains", logs.contains, "only messages holding this text");
        command->add_option("--since", logs.since, "from this long ago (10m) or this time")
            ->capture_default_str();
        command->add_option("--until", logs.until, "up to this long ago or this time");
        command->add_option("--limit", logs.limit, "at most this many of the newest")
            ->capture_default_str()
            ->check(CLI::Range(1, 1'000'000));
        command->add_flag("-f,--follow", logs.follow,
                          "then follow new ones as they are stored, resuming by itself");
        return command;
    };
    commands.logs = add_logs("logs", "logs nodes and tools uploaded (docs/logs.md)", true);
    commands.notifications =
        add_logs("notifications", "notifications nodes and tools uploaded (docs/logs.md)", false);

    commands.jobs = app.add_subcommand("jobs", "list jobs, newest first");
    commands.jobs->add_option("--node", flags.jobs.node, "only this node's");
    commands.jobs->add_option("--state", flags.jobs.state, "only jobs in this state")
        ->check(CLI::IsMember(
            {"queued", "running", "succeeded", "failed", "cancelling", "cancelled", "timed_out"}));
    commands.jobs->add_option("--limit", flags.jobs.limit, "at most this many jobs")
        ->capture_default_str()
        ->check(CLI::Range(1, 100000));

    auto& job = flags.job;
    auto* parent = app.add_subcommand("job", "one job: show, logs, cancel, retry, wait");
    parent->require_subcommand(1);
    auto add = [&](const char* name, const char* description) {
        auto* command = parent->add_subcommand(name, description);
        command->add_option("id", job.id, "job id")->required();
        return command;
    };
    commands.job_show = add("show", "every field of a job");
    commands.job_logs = add("logs", "a job's output: the last 1000 lines, or from --from");
    commands.job_logs->add_flag("-f,--follow", job.follow,
                                "then follow it until the job ends (exit codes as --wait)");
    commands.job_logs->add_option("--from", job.from, "start at this line (seq, from 1)")
        ->check(CLI::Range(std::int64_t{1}, std::numeric_limits<std::int64_t>::max()));
    commands.job_cancel = add("cancel", "cancel a queued or running job");
    commands.job_retry = add("retry", "run a finished job again with the same params");
    auto* retry_wait =
        commands.job_retry->add_flag("--wait", job.wait, "follow the new job until it ends");
    commands.job_retry->add_flag("--logs", job.logs, "with --wait: print its output")
        ->needs(retry_wait);
    commands.job_wait = add("wait", "follow a job until it ends; exit codes as --wait");
    commands.job_wait->add_flag("--logs", job.logs, "print its output as it runs");
}

/// The job commands' dispatch; -1 when none of them was given.
int run_job_client(const cli::Context& context, const Commands& commands, ClientFlags& flags) {
    auto& action = flags.action;
    const std::pair<CLI::App*, const char*> named[] = {
        {commands.upgrade, "upgrade"},
        {commands.install_snapshot, "install-snapshot"},
        {commands.canary_create, "create-canary"},
        {commands.canary_delete, "delete-canary"},
    };
    for (const auto& [command, name] : named) {
        if (*command) {
            action.action = name;
            action.tag_from_node = command == commands.canary_create;
            return cli::run_action(context, action);
        }
    }
    if (*commands.run_action) {
        return cli::run_action(context, action);
    }
    if (*commands.switch_producer) {
        return cli::run_switch_producer(context, flags.switch_producer);
    }
    if (*commands.actions) {
        return cli::run_actions(context);
    }
    if (*commands.jobs) {
        return cli::run_jobs(context, flags.jobs);
    }
    if (*commands.logs) {
        return cli::run_logs(context, flags.logs);
    }
    if (*commands.notifications) {
        flags.logs.kind = "notifications";
        return cli::run_logs(context, flags.logs);
    }
    const std::pair<CLI::App*, int (*)(const cli::Context&, const cli::JobFlags&)> job_commands[] =
        {
            {commands.job_show, cli::run_job_show},     {commands.job_logs, cli::run_job_logs},
            {commands.job_cancel, cli::run_job_cancel}, {commands.job_retry, cli::run_job_retry},
            {commands.job_wait, cli::run_job_wait},
        };
    for (const auto& [command, run] : job_commands) {
        if (*command) {
            return run(context, flags.job);
        }
    }
    return -1;
}

/// Splits argv at the first "--": what follows is with-lease's command, passed on verbatim
/// and never read as aviary's own flags.
std::vector<std::string> take_trailing_command(int& argc, char** argv) {
    std::vector<std::string> command;
    for (int i = 1; i < argc; ++i) {
        if (std::string_view{argv[i]} == "--") {
            command.assign(argv + i + 1, argv + argc);
            argc = i;
            break;
        }
    }
    return command;
}

int run_client(const Commands& commands, ClientFlags& flags, const GlobalFlags& global) {
    const cli::Context context{
        cli::Client{cli::Connection{global.server, global.token, global.ca_file}}, global.json,
        !global.token.empty()};
    if (*commands.node_add) {
        flags.node_add.note_given = commands.note->count() > 0;
        return cli::run_nodes_add(context, flags.node_add);
    }
    if (*commands.node_remove) {
        return cli::run_nodes_remove(context, flags.node_remove);
    }
    if (*commands.nodes) {
        return cli::run_nodes(context, flags.nodes);
    }
    if (*commands.machine_add) {
        return cli::run_machines_add(context, flags.machine_add);
    }
    if (*commands.machine_remove) {
        return cli::run_machines_remove(context, flags.machine_remove);
    }
    if (*commands.machines) {
        return cli::run_machines(context);
    }
    if (*commands.maintenance) {
        return cli::run_maintenance(context, flags.maintenance);
    }
    if (*commands.acquire) {
        return cli::run_acquire(context, flags.acquire);
    }
    if (*commands.renew) {
        return cli::run_renew(context, flags.renew);
    }
    if (*commands.release) {
        return cli::run_release(context, flags.release);
    }
    if (*commands.free) {
        return cli::run_free(context, flags.free);
    }
    if (*commands.who) {
        return cli::run_who(context);
    }
    if (*commands.history) {
        return cli::run_history(context, flags.history);
    }
    if (const int code = run_job_client(context, commands, flags); code >= 0) {
        return code;
    }
    return cli::run_with_lease(context, flags.with_lease);
}

}  // namespace

static int run_main(int argc, char** argv) {
    // The sim driver's child (hidden): its own argv, never parsed as a client command.
    if (argc >= 2 && std::string{argv[1]} == "sim-node") {
        return aviary::drivers::sim_node_main(std::vector<std::string>(argv + 2, argv + argc));
    }
    CLI::App app{"aviary: a control plane for fleets of long-running nodes"};
    app.require_subcommand(1);
    // Global flags may come after the command too: `aviary nodes --json`.
    app.fallthrough();

    GlobalFlags global;
    app.add_option("--server", global.server, "aviary serve's URL")
        ->envname("AVIARY_SERVER")
        ->capture_default_str();
    app.add_option("--token", global.token, "bearer token (env AVIARY_TOKEN)")
        ->envname("AVIARY_TOKEN");
    app.add_option("--ca-file", global.ca_file,
                   "for an https:// --server: PEM CA file to trust instead of the system's "
                   "(env AVIARY_CA_FILE)")
        ->envname("AVIARY_CA_FILE");
    app.add_flag("--json", global.json, "print the server's JSON instead of tables");

    Commands commands{};
    ServeFlags serve_flags;
    commands.serve = app.add_subcommand("serve", "run the control plane (JSON-RPC on :1337)");
    commands.serve->add_option("--config", serve_flags.config_path,
                               "YAML config file (default: the embedded examples/aviary.yaml)");
    commands.serve->add_option("--listen", serve_flags.listen,
                               "HOST:PORT to listen on (port 0: any)");
    commands.serve->add_option("--data-dir", serve_flags.data_dir, "where the SQLite store lives");
    commands.serve->add_option("--store", serve_flags.store,
                               "a PostgreSQL store shared with other instances: "
                               "postgresql://user@host:5432/db (password from store.password_file "
                               "or PGPASSWORD; docs/scaling.md)");
    commands.serve->add_flag("--insecure", serve_flags.insecure,
                             "allow a non-loopback listen address without auth.tokens "
                             "(docs/security.md)");
    commands.worker = app.add_subcommand(
        "worker", "run job workers only, on a store shared with serve instances (no HTTP API)");
    commands.worker->add_option("--config", serve_flags.config_path,
                                "YAML config file (default: the embedded examples/aviary.yaml)");
    commands.worker->add_option("--store", serve_flags.store,
                                "the PostgreSQL store the serve instances use: "
                                "postgresql://user@host:5432/db");
    commands.worker->add_option("--data-dir", serve_flags.data_dir,
                                "where the worker keeps its own state (drivers' data)");
    api::StoreCopyOptions store_copy;
    auto* store = app.add_subcommand("store", "work on a store directly (no server)");
    store->require_subcommand(1);
    commands.store_copy = store->add_subcommand(
        "copy", "copy a SQLite store's state into an empty PostgreSQL store (docs/scaling.md)");
    commands.store_copy->add_option("--from", store_copy.from, "sqlite:PATH (serve's aviary.db)")
        ->required();
    commands.store_copy->add_option("--to", store_copy.to,
                                    "postgresql://user@host:5432/db (password from "
                                    "--password-file, PGPASSWORD or ~/.pgpass)");
    commands.store_copy->add_option("--config", store_copy.config_path,
                                    "the instances' YAML config: its store section is the "
                                    "destination (--to wins over its url)");
    commands.store_copy->add_option("--password-file", store_copy.password_file,
                                    "file holding the PostgreSQL password");
    commands.store_copy->add_flag("--replace", store_copy.replace,
                                  "empty the destination's tables first instead of refusing "
                                  "one that holds rows");
    commands.version = app.add_subcommand("version", "print the version and commit");

    cli::ProbeRunFlags probe_flags;
    cli::ProbeListFlags probe_list;
    cli::AlarmFlags alarm_flags;
    const auto probe = cli::add_probe_commands(app, probe_flags, probe_list, alarm_flags);

    cli::SuperviseCliFlags supervise_flags;
    const auto supervise = cli::add_supervise_commands(app, supervise_flags);

    ClientFlags flags;
    add_node_commands(app, flags, commands);
    add_lease_commands(app, flags, commands);
    add_job_commands(app, flags, commands);
    commands.completion = app.add_subcommand("completion", "print the shell completion script");
    commands.completion->add_option("shell", flags.completion_shell, "bash")
        ->required()
        ->check(CLI::IsMember({"bash"}));

    flags.with_lease.command = take_trailing_command(argc, argv);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // CLI11's own codes vary by error; the CLI promises 2 for every usage error.
        return app.exit(e) == 0 ? cli::kExitOk : cli::kExitUsage;
    }
    if (*supervise.ctl) {
        return cli::run_supervise_ctl(supervise_flags);
    }
    if (*supervise.supervise) {
        return cli::run_supervise(supervise, supervise_flags, std::move(flags.with_lease.command));
    }
    if (!flags.with_lease.command.empty() && !*commands.with_lease) {
        std::fprintf(stderr, "aviary: only with-lease and supervise take a command after --\n");
        return cli::kExitUsage;
    }
    if (*commands.version) {
        std::printf("aviary %s (commit %s)\n", std::string{api::version()}.c_str(),
                    std::string{api::commit()}.c_str());
        return cli::kExitOk;
    }
    if (*commands.serve) {
        return run_serve(serve_flags);
    }
    if (*commands.worker) {
        return run_worker(serve_flags);
    }
    if (*commands.store_copy) {
        return api::copy_store(store_copy);
    }
    if (*commands.completion) {
        return cli::run_completion(flags.completion_shell);
    }
    if (*probe.list || *probe.runs || *probe.alarms || *probe.silences || *probe.silence_add ||
        *probe.silence_expire) {
        const cli::Context context{
            cli::Client{cli::Connection{global.server, global.token, global.ca_file}}, global.json,
            !global.token.empty()};
        if (*probe.list) {
            return cli::run_probes_list(context);
        }
        if (*probe.runs) {
            return cli::run_probe_runs(context, probe_list);
        }
        return cli::run_alarm_command(context, probe, alarm_flags);
    }
    if (*probe.run) {
        probe_flags.server = global.server;
        probe_flags.ca_file = global.ca_file;
        probe_flags.token = global.token;
        probe_flags.json = global.json;
        return cli::run_probe(probe_flags);
    }
    return run_client(commands, flags, global);
}

int main(int argc, char** argv) {
    try {
        return run_main(argc, argv);
    } catch (const std::exception& e) {
        // Every command reports its own errors; this is what none of them expected.
        std::fprintf(stderr, "aviary: %s\n", e.what());
        return 1;
    }
}
