// The serve role's wiring: the one place that knows the config and owns every object.
#include <fcntl.h>
#include <fmt/format.h>
#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/awaitable.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "api/api.hpp"
#include "api/auth.hpp"
#include "api/job_waits.hpp"
#include "api/jobs_rest.hpp"
#include "api/jsonrpc.hpp"
#include "api/lease_waits.hpp"
#include "api/logs_rest.hpp"
#include "api/rest.hpp"
#include "api/roller_rest.hpp"
#include "api/router.hpp"
#include "api/tweety_service.hpp"
#include "drivers/drivers.hpp"
#include "fleet/fleet.hpp"
#include "jobs/jobs.hpp"
#include "logs/logs.hpp"
#include "metrics/metrics.hpp"
#include "net/net.hpp"
#include "notify/notify.hpp"
#include "probes/probes.hpp"
#include "store/store.hpp"

namespace aviary::api {
namespace {

namespace fs = std::filesystem;

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread and every thread started after it, so that
/// wait_for_shutdown_signal() receives them synchronously instead of a handler interrupting
/// arbitrary code.
sigset_t block_shutdown_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    return set;
}

int wait_for_shutdown_signal(const sigset_t& set) {
    int signal = 0;
    while (sigwait(&set, &signal) != 0) {
    }
    return signal;
}

/// SIGHUP: new connections get the certificate files as they are now (a renewed certificate);
/// a file that fails to load leaves the old one serving.
void reload_tls(spdlog::logger& log, net::HttpServer& server, const net::TlsServerSettings& tls) {
    if (tls.cert_file.empty()) {
        log.info("SIGHUP ignored: TLS is off");
        return;
    }
    if (auto reloaded = server.reload_tls(); !reloaded) {
        log.error("tls reload failed, the old certificate stays error=\"{}\"",
                  reloaded.error().message);
        return;
    }
    log.info("tls reloaded cert_file={} key_file={}", tls.cert_file, tls.key_file);
}

/// Tokens over plain HTTP off loopback: anyone on the path can read and replay them.
void warn_if_tokens_in_clear(spdlog::logger& log, const config::Config& config) {
    auto address = net::split_host_port(config.server.listen);
    if (config.auth.tokens.empty() || !config.server.tls.cert_file.empty() || !address ||
        is_loopback_host(address->first)) {
        return;
    }
    log.warn(
        "listening off loopback without TLS: bearer tokens cross the network in clear text; set "
        "server.tls or put a TLS proxy in front (docs/security.md) listen={}",
        config.server.listen);
}

/// A non-loopback listener without tokens would hand the pool to anyone on the network.
core::Result<void> check_exposure(const config::Config& config, const ServeOptions& options) {
    auto address = net::split_host_port(config.server.listen);
    if (!address) {
        return address.error();
    }
    if (is_loopback_host(address->first) || !config.auth.tokens.empty() || options.insecure) {
        return {};
    }
    return core::Error{core::ErrorCode::kPermissionDenied,
                       fmt::format("refusing to listen on {} without auth.tokens: anyone who can "
                                   "reach it could lease and free every node. Configure tokens "
                                   "(docs/security.md) or pass --insecure",
                                   config.server.listen)};
}

/// `text` into `path`, readable by this user alone from the moment it exists.
core::Result<void> write_private(const fs::path& path, std::string_view text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("cannot write {}: {}", path.string(), std::strerror(errno))};
    }
    bool ok = ::fchmod(fd, 0600) == 0;
    while (ok && !text.empty()) {
        auto n = ::write(fd, text.data(), text.size());
        ok = n > 0;
        text.remove_prefix(ok ? static_cast<std::size_t>(n) : 0);
    }
    ok = ::close(fd) == 0 && ok;
    if (!ok) {
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("cannot write {}: {}", path.string(), std::strerror(errno))};
    }
    return {};
}

core::Result<void> private_dir(const fs::path& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (!ec) {
        fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
    }
    if (ec) {
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("cannot create {}: {}", dir.string(), ec.message())};
    }
    return {};
}

/// IPMI and SNMP secrets reach their tools through files only, never a command line that ps
/// shows (docs/machines.md, "Secrets"): ipmitool's -f file (the configured one, or one written
/// here for password_env) and an snmp.conf found through SNMPCONFPATH, both under
/// DATA_DIR/secrets, readable by this user alone.
core::Result<void> write_machine_secrets(config::Config& config) {
    auto& ipmi = config.jobs.ipmi;
    auto& pdu = config.jobs.pdu;
    const bool ipmi_from_env = ipmi.password_file.empty() && !ipmi.password.empty();
    if (!ipmi_from_env && pdu.community.empty()) {
        return {};
    }
    const fs::path dir = fs::path{config.data_dir} / "secrets";
    if (auto made = private_dir(dir); !made) {
        return made;
    }
    if (ipmi_from_env) {
        auto path = dir / "ipmi_password";
        if (auto written = write_private(path, ipmi.password); !written) {
            return written;
        }
        ipmi.password_file = path.string();
    }
    if (!pdu.community.empty()) {
        const fs::path snmp = dir / "snmp";
        if (auto made = private_dir(snmp / "persist"); !made) {
            return made;
        }
        if (auto made = private_dir(snmp); !made) {
            return made;
        }
        // persistentDir: the tools keep their engine ids here, not in /var/lib/snmp; `mibs :`
        // loads no MIB files (the OIDs are numeric).
        auto conf = fmt::format("defVersion 2c\ndefCommunity {}\npersistentDir {}\nmibs :\n",
                                pdu.community, (snmp / "persist").string());
        if (auto written = write_private(snmp / "snmp.conf", conf); !written) {
            return written;
        }
        pdu.conf_dir = snmp.string();
    }
    return {};
}

/// The log store follows the store: on PostgreSQL, tables of their own in the same database,
/// partitioned for the longest window logs are kept (docs/logs.md, "On PostgreSQL").
void place_log_store(config::Config& config) {
    auto& logs = config.logs.store;
    if (config.store.driver != "postgres") {
        return;
    }
    logs.driver = "postgres";
    logs.url = config.store.url;
    logs.password = config.store.password;
    logs.connect_timeout = config.store.connect_timeout;
    logs.busy_timeout = config.store.busy_timeout;
    logs.partition_horizon = logs::longest_window(config.logs, store::LogKind::kLog);
}

core::Result<void> prepare_data_dir(config::Config& config) {
    std::error_code ec;
    fs::create_directories(config.data_dir, ec);
    if (ec) {
        return core::Error{core::ErrorCode::kStorage, fmt::format("cannot create data dir {}: {}",
                                                                  config.data_dir, ec.message())};
    }
    if (config.store.path.empty()) {
        config.store.path = (fs::path{config.data_dir} / "aviary.db").string();
    }
    if (config.logs.store.path.empty()) {
        config.logs.store.path = (fs::path{config.data_dir} / "logs.db").string();
    }
    place_log_store(config);
    if (config.drivers.dir.empty()) {
        config.drivers.dir = (fs::path{config.data_dir} / "nodes").string();
    }
    return write_machine_secrets(config);
}

/// What the engine found from a previous run: one line with the counts, one per rescued job.
void log_rescue(spdlog::logger& log, const jobs::RescueReport& report) {
    log.info("job engine started requeued={} failed={} cancelled={} groups_killed={}",
             report.requeued.size(), report.failed.size(), report.cancelled.size(),
             report.groups_killed);
    auto each = [&log](const std::vector<core::Job>& jobs, std::string_view outcome) {
        for (const auto& job : jobs) {
            log.warn(
                "job rescued after a restart job={} action={} node={} attempt={} outcome={} "
                "error=\"{}\"",
                job.id, job.action, job.node, job.attempt, outcome, job.error);
        }
    };
    each(report.requeued, "requeued");
    each(report.failed, "failed");
    each(report.cancelled, "cancelled");
}

/// Writes the bound address to DATA_DIR/aviary.addr (atomically) for tests and scripts that
/// start serve on port 0.
void publish_address(const std::string& data_dir, const std::string& address) {
    auto final_path = fs::path{data_dir} / "aviary.addr";
    auto temp_path = fs::path{data_dir} / "aviary.addr.tmp";
    {
        std::ofstream out{temp_path, std::ios::trunc};
        out << address << '\n';
    }
    std::error_code ec;
    fs::rename(temp_path, final_path, ec);
}

/// Prunes events older than store.event_retention, every store.retention_sweep.
void schedule_event_retention(core::Scheduler& scheduler,
                              store::Store& store,
                              const store::Settings& settings,
                              spdlog::logger& log) {
    scheduler.add(core::Scheduler::Task{
        .name = "event-retention",
        .interval = settings.retention_sweep,
        .run_once = [&store, &settings,
                     &log](core::TimePoint now) -> std::optional<core::TimePoint> {
            if (auto pruned = store.prune_events(now - settings.event_retention); !pruned) {
                log.warn("pruning events failed error=\"{}\"", pruned.error().message);
            } else if (*pruned > 0) {
                log.info("events pruned count={}", *pruned);
            }
            return std::nullopt;
        },
    });
}

/// Each scheduled task's runs, failures and the time its last run took, by task name (a closed
/// set: the tasks serve adds at start).
void register_scheduler_metrics(metrics::Registry& registry, core::Scheduler& scheduler) {
    auto& runs = registry.counter("aviary_scheduler_runs_total",
                                  "Runs of each scheduled task (docs/architecture.md).", {"task"});
    auto& failures = registry.counter("aviary_scheduler_failures_total",
                                      "Runs of each scheduled task that threw.", {"task"});
    auto& last = registry.gauge("aviary_scheduler_last_run_seconds",
                                "How long the last run of each scheduled task took.", {"task"});
    registry.on_scrape([&runs, &failures, &last, &scheduler] {
        for (const auto& task : scheduler.stats()) {
            runs.with({task.name}).set_total(double(task.runs));
            failures.with({task.name}).set_total(double(task.failures));
            last.with({task.name}).set(double(task.last_duration.count()) / 1000.0);
        }
    });
}

void register_pool_metrics(metrics::Registry& registry,
                           fleet::Fleet& fleet,
                           store::Store& store,
                           net::HttpServer& server) {
    auto& nodes = registry.gauge("aviary_nodes", "Nodes in the pool, by state.", {"state"});
    auto& leases = registry.gauge("aviary_leases_held", "Leases held now.");
    auto& commits = registry.counter(
        "aviary_store_commits_total",
        "Transactions committed by the store writer; each holds a batch of writes.");
    auto& writes =
        registry.counter("aviary_store_writes_total", "Write operations applied by the store.");
    auto& failed =
        registry.counter("aviary_store_failed_writes_total",
                         "Write operations that failed, their writes rolled back alone.");
    auto& run_again = registry.counter(
        "aviary_store_batches_run_again_total",
        "Write batches rolled back and run again with a savepoint per operation, because one "
        "failed having written.");
    auto& batch = registry.gauge("aviary_store_largest_batch",
                                 "Most write operations committed in one transaction so far.");
    auto& open = registry.gauge("aviary_http_connections_open", "HTTP connections open now.");
    auto& accepted =
        registry.counter("aviary_http_connections_accepted_total", "HTTP connections accepted.");
    auto& rejected = registry.counter("aviary_http_connections_rejected_total",
                                      "HTTP connections refused past server.max_connections.");
    auto& accept_errors = registry.counter(
        "aviary_http_accept_errors_total",
        "Failed accepts on the HTTP listener (out of descriptors); accepting pauses after each.");
    auto& handshake_failures =
        registry.counter("aviary_http_tls_handshake_failures_total",
                         "TLS handshakes that failed: plain HTTP, unknown CA, no client "
                         "certificate, timeout.");
    auto& websockets = registry.gauge("aviary_http_websockets_open", "WebSockets open now.");
    registry.gauge("aviary_build_info", "The running build.", {"version", "commit"})
        .with({std::string{version()}, std::string{commit()}})
        .set(1);
    registry.on_scrape(
        [&, states = std::vector<core::NodeState>{core::NodeState::kFree, core::NodeState::kLeased,
                                                  core::NodeState::kMaintenance}] {
            if (auto all = fleet.nodes()) {
                std::map<core::NodeState, int> counts;
                for (const auto& node : *all) {
                    ++counts[node.state];
                }
                for (auto state : states) {
                    nodes.with({std::string{core::to_string(state)}}).set(counts[state]);
                }
                leases.get().set(counts[core::NodeState::kLeased]);
            }
            auto stats = store.stats();
            commits.get().set_total(double(stats.commits));
            writes.get().set_total(double(stats.writes));
            failed.get().set_total(double(stats.failed_writes));
            run_again.get().set_total(double(stats.batches_run_again));
            batch.get().set(double(stats.largest_batch));
            auto http = server.stats();
            open.get().set(double(http.open));
            accepted.get().set_total(double(http.accepted));
            rejected.get().set_total(double(http.rejected));
            accept_errors.get().set_total(double(http.accept_errors));
            handshake_failures.get().set_total(double(http.tls_handshake_failures));
            websockets.get().set(double(http.websockets));
        });
}

/// The configured secrets, so that a job's output or a log line that happens to quote one
/// shows REDACTED instead (docs/security.md, "Redaction").
void register_secrets(const config::Config& config) {
    for (const auto& token : config.auth.tokens) {
        core::redactor().add_secret(token.secret);
    }
    core::redactor().add_secret(config.notify.grafana.token);
    for (const auto& n : config.notify.notifiers) {
        core::redactor().add_secret(n.secret);
        if (n.type == notify::Notifier::Type::kSlack) {
            core::redactor().add_secret(n.url);  // a Slack webhook's URL is its credential
        }
    }
    core::redactor().add_secret(config.jobs.ipmi.password);
    core::redactor().add_secret(config.jobs.pdu.community);
    core::redactor().add_secret(config.probes.token);
}

/// The data directory made (its store path filled in) and the store opened, as serve and
/// worker start; nullopt after printing why when either fails.
std::optional<std::unique_ptr<store::Store>> open_store(config::Config& config) {
    if (auto prepared = prepare_data_dir(config); !prepared) {
        std::fprintf(stderr, "aviary: %s\n", prepared.error().message.c_str());
        return std::nullopt;
    }
    auto store = store::open(config.store);
    if (!store) {
        std::fprintf(stderr, "aviary: cannot open the store at %s: %s\n",
                     store::describe(config.store).c_str(), store.error().message.c_str());
        return std::nullopt;
    }
    return std::move(*store);
}

/// How this run takes part among the instances sharing the store; `lead`: whether it may lead
/// the periodic work (serve) or never (worker).
store::MembershipSettings membership_settings(const config::Config& config, bool lead) {
    return store::MembershipSettings{.instance = config.instance,
                                     .heartbeat = config.store.heartbeat,
                                     .leader_ttl = config.store.leader_ttl,
                                     .lead = lead};
}

}  // namespace

int serve(config::Config config, ServeOptions options) {
    auto signals = block_shutdown_signals();
    // Each store write frees its savepoint's memory, and glibc then hands the top of the
    // writer's heap back to the kernel (an madvise and a TLB shootdown per write) only to
    // fault it in again on the next. Keeping up to 64 MiB roughly halved the writer's CPU per
    // write in bench/leases (see bench/RESULTS.md).
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    auto log = core::logger("serve");
    register_secrets(config);
    if (auto logging = core::configure_logging(config.log.level, config.log.format); !logging) {
        std::fprintf(stderr, "aviary: %s\n", logging.error().message.c_str());
        return 1;
    }
    if (auto exposure = check_exposure(config, options); !exposure) {
        std::fprintf(stderr, "aviary: %s\n", exposure.error().message.c_str());
        return 1;
    }
    auto store = open_store(config);
    if (!store) {
        return 1;
    }
    core::SystemClock clock;
    // This run among the instances sharing the store: registered before anything is touched,
    // so a second live instance of the same name is refused before it drops or rescues
    // anything of the first's.
    store::Membership membership{**store, clock, membership_settings(config, true)};
    if (auto joined = membership.join(); !joined) {
        std::fprintf(stderr, "aviary: %s\n", joined.error().message.c_str());
        (*store)->close();
        return 1;
    }
    config.fleet.instance = membership.name();
    config.jobs.instance = membership.name();
    // Every periodic and delayed task of serve (docs/architecture.md, "The scheduler").
    // Declared before the components that add tasks: each cancels its own when destroyed.
    core::Scheduler scheduler{clock};
    membership.schedule(scheduler);
    fleet::Fleet fleet{config.fleet, **store, clock};
    if (auto reconciled = fleet.reconcile(); !reconciled) {
        std::fprintf(stderr, "aviary: cannot reconcile the config's nodes: %s\n",
                     reconciled.error().message.c_str());
        return 1;
    }
    fleet.schedule(scheduler);  // the first run frees leases that lapsed while serve was down
    schedule_event_retention(scheduler, **store, config.store, *log);
    // Declared before the server, so it outlives every request coroutine holding a watch.
    metrics::Registry registry;
    jobs::Engine engine{config.jobs, **store,  fleet, drivers::make_drivers(config.drivers),
                        clock,       &registry};
    // Sends the outbox on the scheduler, including what a previous run left unsent (it does
    // nothing without a url); declared before the engine starts, as the engine wakes it.
    notify::GrafanaSender annotations{config.notify.grafana, **store, clock, &registry};
    annotations.schedule(scheduler);
    if (!config.notify.grafana.url.empty()) {
        // Every new job of an annotated action carries its annotation into the store's outbox,
        // in the transaction that queues it; a start or an end wakes the sender.
        engine.set_annotator([settings = config.notify.grafana](const core::Job& job) {
            return notify::annotation_for(settings, job);
        });
        engine.set_on_transition([&annotations](const core::Job&) { annotations.wake(); });
    }
    engine.schedule(scheduler);
    // Logs and notifications (docs/logs.md): a database of their own, with their own writer.
    auto log_store = store::open_log_store(config.logs.store);
    if (!log_store) {
        const auto where = config.logs.store.driver == "postgres" ? store::describe(config.store)
                                                                  : config.logs.store.path;
        std::fprintf(stderr, "aviary: cannot open the log store at %s: %s\n", where.c_str(),
                     log_store.error().message.c_str());
        return 1;
    }
    // Stored records wake the live tails of their scope (GET /api/v1/logs/tail).
    net::Hub record_feed;
    // New notifications to Bitahoy's /ws connections of their scope.
    net::Hub notification_pushes;
    logs::Logs records{config.logs, **log_store, clock};
    records.schedule(scheduler);
    // serve's own audit events become notifications too (docs/logs.md, "serve's events"), told
    // to live tails and pushed on /ws as they are copied.
    records.schedule_events(
        scheduler, **store,
        [&record_feed, &notification_pushes](const std::vector<store::LogRecord>& copied) {
            publish_records(record_feed, copied);
            push_notifications(notification_pushes, copied);
        });
    // What other instances store (on PostgreSQL): it wakes this instance's tails and its
    // notifications are pushed on this instance's /ws too (docs/logs.md, "Several instances").
    (*log_store)
        ->watch([&record_feed, &notification_pushes,
                 &records](const store::LogStore::RemoteAppend& told) {
            if (told.last_id == 0) {
                return;  // listening again: the next record of each scope wakes its tails
            }
            publish_stored(record_feed, told.scope, told.last_id);
            if (told.notifications) {
                auto stored = records.follow(store::LogFollow{.kind = store::LogKind::kNotification,
                                                              .scope = told.scope,
                                                              .after_id = told.first_id - 1,
                                                              .up_to_id = told.last_id});
                if (stored) {
                    push_notifications(notification_pushes, *stored);
                }
            }
        });
    // Stops the watch before the hubs it publishes on go, on every way out of serve.
    struct StopLogStore {
        store::LogStore& logs;
        ~StopLogStore() { logs.close(); }
    } stop_log_store{**log_store};
    auto rescued = engine.start();
    if (!rescued) {
        std::fprintf(stderr, "aviary: cannot start the job engine: %s\n",
                     rescued.error().message.c_str());
        engine.stop();
        membership.leave();
        (*store)->close();
        return 1;
    }
    log_rescue(*log, *rescued);
    // Canary scenarios' old runs (docs/probes.md): the leader prunes them.
    probes::schedule_retention(scheduler, **store, config.probes);
    // Alarms on the scenarios: the leader evaluates them and writes each change with its
    // notifications into the store's outbox; the sender delivers them (docs/probes.md).
    notify::AlarmSender alarm_sender{config.notify, **store, clock, &registry};
    alarm_sender.schedule(scheduler);
    probes::Alarms alarms{config.probes, **store, clock, &registry};
    alarms.set_on_notified([&alarm_sender] { alarm_sender.wake(); });
    alarms.schedule(scheduler);
    scheduler.start();

    net::BlockingPool pool{config.server.blocking_threads};
    // Canary scenarios on their schedule, on a thread of their own (docs/probes.md); started
    // once serve listens, as their {{server}} is its address.
    // A gated node's gate: a failure fires alarm gate/NODE, the next pass resolves it.
    auto on_gate = [&alarms, &log](const std::string& node, const probes::Gate& gate,
                                   const probes::RunResult& run) {
        if (auto raised = alarms.gate_result(node, gate, run); !raised) {
            log->warn("gate alarm not written node={} error=\"{}\"", node, raised.error().message);
        }
    };
    probes::Service probes{config.probes,
                           probes::Service::Options{.store = &**store,
                                                    .blocking = &pool,
                                                    .metrics = &registry,
                                                    .clock = &clock,
                                                    .instance = membership.name(),
                                                    .on_run_stored = [&alarms] { alarms.wake(); },
                                                    .on_gate = on_gate}};
    JsonRpc rpc;
    auto& calls = registry.counter("aviary_jsonrpc_calls_total",
                                   "JSON-RPC calls, by method and outcome.", {"method", "outcome"});
    rpc.on_call = [&calls](std::string_view method, std::string_view outcome) {
        calls.with({method, outcome}).inc();
    };
    net::HttpServer* server_ptr = nullptr;
    auto stopping = [&server_ptr] { return server_ptr != nullptr && server_ptr->stopping(); };
    LeaseWaits waits{fleet, pool, stopping};
    JobWaits job_waits{engine, pool, stopping};
    TweetyService tweety{fleet, pool, waits, job_waits};
    tweety.register_methods(rpc);
    RestApi rest{fleet, pool, waits};
    JobsRest jobs_rest{job_waits, pool, config.fleet.wait_heartbeat};
    RollerRest roller{engine, fleet, pool};
    Authenticator auth{config.auth, config.server.listen};
    BitahoyWs bitahoy{records, pool, auth, record_feed, notification_pushes};
    LogsRest logs_rest{records, pool, record_feed};
    ProbesRest probes_rest{probes, pool};

    Router router{RouterDeps{
        .store = **store,
        .fleet = fleet,
        .pool = pool,
        .registry = registry,
        .rpc = rpc,
        .rest = rest,
        .jobs_rest = jobs_rest,
        .roller = roller,
        .bitahoy = bitahoy,
        .logs_rest = logs_rest,
        .probes_rest = probes_rest,
        .probes = probes,
        .auth = auth,
        .stopping = stopping,
    }};
    net::HttpServer server{
        config.server,
        [&router](net::Request request) { return router.handle(std::move(request)); },
        [&router](const net::Request& head) { return router.streams_body(head); }};
    server_ptr = &server;
    register_pool_metrics(registry, fleet, **store, server);
    register_scheduler_metrics(registry, scheduler);

    auto address = server.start();
    if (!address) {
        // The message names the address ("cannot listen on HOST:PORT: bind failed: …").
        std::fprintf(stderr, "aviary: %s\n", address.error().message.c_str());
        alarms.stop();
        alarm_sender.stop();
        annotations.stop();
        scheduler.stop();
        engine.stop();
        return 1;
    }
    if (auto bound = net::split_host_port(*address)) {
        auth.set_bound_port(bound->second);
    }
    publish_address(config.data_dir, *address);
    if (!auth.tokens_required()) {
        log->warn("no auth.tokens configured: every caller is an admin (safe on loopback only)");
    }
    warn_if_tokens_in_clear(*log, config);
    const char* scheme = config.server.tls.cert_file.empty() ? "http" : "https";
    alarms.set_public_url(fmt::format("{}://{}", scheme, *address));
    probes.start(fmt::format("{}://{}", scheme, *address));
    log->info("serving address={}://{} config={} data_dir={} store={}", scheme, *address,
              config.source, config.data_dir, store::describe(config.store));
    std::printf("aviary %s serving on %s://%s\n", std::string{version()}.c_str(), scheme,
                address->c_str());
    std::fflush(stdout);

    int signal = wait_for_shutdown_signal(signals);
    while (signal == SIGHUP) {
        reload_tls(*log, server, config.server.tls);
        signal = wait_for_shutdown_signal(signals);
    }
    log->info("shutting down signal={} grace={}", signal == SIGTERM ? "SIGTERM" : "SIGINT",
              core::format_duration(config.server.shutdown_grace));
    record_feed.close();  // live tails end with "serve is shutting down" and their cursor
    // Before the server: a run-now request in flight hears at once that serve is stopping
    // instead of holding the server's grace; a run cut short is not stored.
    probes.stop();
    server.stop();
    // After the server: no request submits or waits any more. Before the store closes: a
    // running step ends (and is rescued at the next start) with the store still there. The
    // sender first: it cancels its request in flight, so the scheduler's stop does not wait
    // out Grafana's timeout (and the alarm sender its receiver's).
    alarms.stop();
    alarm_sender.stop();
    annotations.stop();
    scheduler.stop();
    engine.stop();
    pool.stop();
    membership.leave();  // another instance takes the periodic work over at its next beat
    (*log_store)->close();
    (*store)->close();
    log->info("stopped");
    return 0;
}

int work(config::Config config) {
    auto signals = block_shutdown_signals();
    auto log = core::logger("worker");
    register_secrets(config);
    if (auto logging = core::configure_logging(config.log.level, config.log.format); !logging) {
        std::fprintf(stderr, "aviary: %s\n", logging.error().message.c_str());
        return 1;
    }
    if (config.store.driver != "postgres") {
        std::fprintf(stderr,
                     "aviary: worker needs a store it shares with serve (store.url or --store "
                     "postgresql://...); on SQLite the job workers run inside serve\n");
        return 2;
    }
    auto store = open_store(config);
    if (!store) {
        return 1;
    }
    core::SystemClock clock;
    // A worker beats like any instance but never leads: the periodic work (lease expiry,
    // retention, the Grafana outbox) is serve's.
    store::Membership membership{**store, clock, membership_settings(config, false)};
    if (auto joined = membership.join(); !joined) {
        std::fprintf(stderr, "aviary: %s\n", joined.error().message.c_str());
        (*store)->close();
        return 1;
    }
    config.fleet.instance = membership.name();
    config.jobs.instance = membership.name();
    core::Scheduler scheduler{clock};
    membership.schedule(scheduler);
    // The fleet is the lease rules' way in (lease steps, an upgrade's implicit acquire); the
    // node list is serve's to reconcile, so the worker leaves it as it is.
    fleet::Fleet fleet{config.fleet, **store, clock};
    jobs::Engine engine{config.jobs, **store, fleet, drivers::make_drivers(config.drivers),
                        clock,       nullptr};
    engine.schedule(scheduler);
    auto rescued = engine.start();
    if (!rescued) {
        std::fprintf(stderr, "aviary: cannot start the job engine: %s\n",
                     rescued.error().message.c_str());
        engine.stop();
        membership.leave();
        (*store)->close();
        return 1;
    }
    log_rescue(*log, *rescued);
    scheduler.start();
    log->info("working instance={} workers={} store={}", membership.name(), config.jobs.workers,
              store::describe(config.store));
    std::printf("aviary %s worker %s running %d workers\n", std::string{version()}.c_str(),
                membership.name().c_str(), config.jobs.workers);
    std::fflush(stdout);
    int signal = wait_for_shutdown_signal(signals);
    while (signal == SIGHUP) {
        signal = wait_for_shutdown_signal(signals);
    }
    log->info("shutting down signal={}", signal == SIGTERM ? "SIGTERM" : "SIGINT");
    scheduler.stop();
    engine.stop();
    membership.leave();
    (*store)->close();
    log->info("stopped");
    return 0;
}

}  // namespace aviary::api
