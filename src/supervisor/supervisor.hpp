#pragma once
/// supervisor: `aviary supervise`, the sidecar that keeps one node process running, says when
/// it is really ready, and lets operators drive it (docs/supervise.md).
///
/// A Supervisor owns one node process and one thread (the "node" thread) running its loop:
/// it spawns the node in its own process group, relays its output, restarts it by policy when
/// the pidfd says it ended, stops it with repeated signals and then SIGKILL, reads its
/// readiness, and runs operators' commands one at a time in order. Everything else (the control
/// API, the gated proxy) reads status() and gate() from any thread and submits commands.
#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/core.hpp"
#include "metrics/metrics.hpp"
#include "supervisor/backups.hpp"
#include "supervisor/render.hpp"

namespace aviary::supervisor {

using namespace std::chrono_literals;

enum class RestartPolicy { kNever, kOnFailure, kAlways };

/// When the node is started again after it ended by itself (systemd's Restart=, RestartSec=,
/// RestartSteps=/RestartMaxDelaySec=, StartLimitBurst=/StartLimitIntervalSec=).
struct RestartSettings {
    RestartPolicy policy = RestartPolicy::kAlways;
    /// Exit codes that count as success for kOnFailure (a signal never does).
    std::vector<int> success_codes{0};
    /// The first restart after a run that lasted stable_after: at once by default.
    core::Millis first_delay{0};
    /// After a run shorter than stable_after the delay doubles from min_delay up to max_delay.
    core::Millis min_delay{100ms};
    core::Millis max_delay{30s};
    core::Millis stable_after{10s};
    /// More than `start_limit_burst` starts within `start_limit_interval` raise the start-limit
    /// alert (an error line and aviary_supervised_start_limit_hit 1); the node is still
    /// restarted, every `limited_delay`, until a run lasts stable_after.
    int start_limit_burst = 5;
    core::Millis start_limit_interval{60s};
    core::Millis limited_delay{60s};
};

/// How the node is stopped (maintenance, reload, the sidecar's own shutdown).
struct StopSettings {
    int signal = SIGTERM;
    /// The signal is sent again every `repeat` while the node is still running ("send a few
    /// more TERM signals if they don't work right away"), and SIGKILL goes to the whole group
    /// once `grace` has passed.
    core::Millis repeat{5s};
    core::Millis grace{30s};
};

/// The node's program.
struct ProgramSettings {
    std::vector<std::string> argv;
    std::string cwd;
    std::vector<std::pair<std::string, std::string>> env;  ///< set or override
    std::optional<unsigned> umask;  ///< the node's umask; unset: the sidecar's
};

/// One HTTP call to the node that readiness reads.
struct ChainCall {
    std::string method = "POST";
    std::string path;  ///< on the upstream: "/v1/chain/get_info"
    std::string body;  ///< e.g. a JSON-RPC request
};

/// Where a value sits in a call's JSON answer: a JSON pointer ("/head_block_num") and how
/// to read it.
struct Field {
    std::string pointer;  ///< empty: not read
    /// "number" (a JSON number or a decimal string), "hex" ("0x1b4"), "iso8601" (a time,
    /// with or without a zone; none means UTC), "unix" (seconds), "string", "bool".
    std::string format = "number";
};

/// A log line turned into a metric (docs/supervise.md, "Log metrics"): when a line of the
/// node's output matches `pattern`, the metric `name` (with a `node` label and the labels below)
/// is incremented by one (a counter without value_group), by the captured value (a counter with
/// one), or set to it (a gauge).
struct LogRule {
    std::string name;  ///< a Prometheus metric name; counters end in _total
    std::string help;
    std::string kind = "counter";  ///< "counter" or "gauge"
    std::string pattern;           ///< RE2 syntax (core/regex.hpp), searched in the line
    std::string contains;          ///< when set, only lines holding this text are searched
    std::string stream;            ///< "stdout", "stderr", or "" for both
    int value_group = 0;           ///< the capture group holding the value; 0: none
    /// Label name and the capture group its value comes from.
    std::vector<std::pair<std::string, int>> labels;
    /// At most this many label sets per rule; lines that would add another are counted in
    /// aviary_supervised_log_rule_overflow_total instead (no label without a bound).
    int max_series = 100;
};

/// How to read one chain's node: data, written in YAML (docs/supervise.md, "Chain presets").
struct Preset {
    std::string name;
    std::string description;
    /// "chain": the calls below; "http": `health` answers 2xx; "tcp": the upstream accepts a
    /// connection; "process": running is ready.
    std::string readiness = "process";
    ChainCall head;           ///< the call that reads the head
    Field height;             ///< in head's answer
    Field head_time;          ///< in head's answer; empty pointer: the chain reports no time
    Field chain_id;           ///< in head's answer (or in chain_id_call's)
    ChainCall chain_id_call;  ///< when the chain id needs a call of its own (geth's eth_chainId)
    Field block_hash;         ///< in head's answer: the head block's hash (backups record it)
    Field node_version;       ///< in head's answer (or in version_call's): the node's version
    ChainCall version_call;   ///< when the version needs a call of its own (web3_clientVersion)
    ChainCall syncing;        ///< optional: a call whose `syncing_field` says the node still syncs
    Field syncing_field;      ///< "bool": true while syncing; a JSON object counts as syncing
    ChainCall health{"GET", "/", ""};  ///< for readiness "http"
    core::Millis block_interval{1s};   ///< the chain's expected block interval
    /// The producer API, where the chain has one (nodeos): paths on the upstream.
    std::string producer_pause;
    std::string producer_resume;
    std::string producer_paused;
    /// The production schedule, where the chain tells it (nodeos): who made the head block (in
    /// head's answer), and a call listing the scheduled producers in order: `schedule_list`
    /// points at the array in its answer, `schedule_name` at each entry's name ("" when the
    /// entries are the names themselves). Without them the round is not known.
    Field head_producer;
    ChainCall schedule;
    std::string schedule_list;
    std::string schedule_name;
    /// Log metrics every node of this chain gets (the node's file may add more).
    std::vector<LogRule> log_metrics;
    /// What the chain keeps in its data dir (docs/backups.md, "Boot rules"), as paths relative
    /// to it. `chain_data` missing means "no chain data" (nodeos: blocks); `dirty_marker`
    /// present, or a line of output holding `dirty_log`, means the data must be restored.
    std::string chain_data;
    std::string dirty_marker;
    std::string dirty_log;
    /// Globs never backed up and never replaced by a restore (keys, signer state), added to
    /// kBackupExcludes.
    std::vector<std::string> backup_exclude;
    /// The signer's last-signed state in the data dir (Tendermint's
    /// data/priv_validator_state.json), a JSON file whose `signer_height` (a JSON pointer) is
    /// the last height signed: a restore never goes below it. Empty: no such file.
    std::string signer_state;
    std::string signer_height = "/height";
    /// Arguments added to the node's command in bp mode so that it starts with production
    /// paused (nodeos: --pause-on-startup; the sim node: --paused).
    std::vector<std::string> passive_args;
};

/// What one call's JSON answer says, by the preset's fields: how a sidecar reads its node, and
/// how a canary scenario's chain step reads any node of that chain (docs/probes.md).
struct HeadFields {
    std::optional<std::int64_t> height;
    std::optional<core::TimePoint> head_time;
    std::string chain_id;
    std::string block_hash;     ///< the preset's block_hash field, when it has one
    std::string node_version;   ///< the preset's node_version field, when in head's answer
    std::string head_producer;  ///< the preset's head_producer field: who made the head block
};
core::Result<HeadFields> read_head(const Preset& preset, std::string_view body);
/// True when the syncing call's answer says the node is still syncing.
core::Result<bool> read_syncing(const Preset& preset, std::string_view body);

/// Block-producer mode (docs/producers.md): the node starts passive, produces only while this
/// sidecar holds the producer lease for `key` in serve's store, and is paused the moment it
/// produces without it.
struct ProducerSettings {
    bool bp_mode = false;
    std::string serve;  ///< serve's URL (--serve), where the producer lease is held
    std::string token;  ///< bearer token for serve; never logged
    std::string key;    ///< the lease's key (the signing key or producer account)
    /// The producer's name in the chain's schedule (nodeos: producer-name); "" means `key`.
    std::string account;
    core::Millis lease_ttl{std::chrono::seconds{10}};
    /// How long safely_pause_production may take: waiting for the end of the node's round,
    /// then for the node to confirm it paused.
    core::Millis pause_timeout{std::chrono::seconds{30}};
};

/// Key material and signer state of the common node software, never backed up whatever the
/// preset: Tendermint's validator key and last-signed state, node keys, keystores, JWT secrets.
inline const std::vector<std::string> kBackupExcludes{"priv_validator_key.json",
                                                      "priv_validator_state.json",
                                                      "node_key.json",
                                                      "keystore",
                                                      "nodekey",
                                                      "jwtsecret",
                                                      "*.key",
                                                      "*.pem"};

/// Backups of the node's data dir to a directory target (docs/backups.md).
struct BackupSettings {
    std::string dir;  ///< the target; empty: backups are off
    int keep = 5;     ///< usable backups kept per chain id (the only usable one is never removed)
    /// kBackupExcludes, then the preset's, then the file's.
    std::vector<std::string> exclude;
    /// After a backup, how long the restarted node's head may take to pass the height the
    /// backup recorded before the proxy opens again regardless (readiness still decides).
    core::Millis resume_timeout{std::chrono::minutes{10}};
    /// Restore at start when the data dir holds no chain data, or is dirty (the boot rules).
    bool restore_on_boot = true;
    /// A directory copy, or a tar.zst stream (to a file in `dir`, or to an upload command):
    /// docs/backups.md, "Targets".
    BackupFormat format;
};

/// What "synced" means (Lotus's "< 5 epochs", Dshackle's lag gating).
struct SyncedRule {
    /// The head must advance at least once in `stall_blocks` block intervals.
    int stall_blocks = 10;
    /// The head's time must be within this of now, where the chain reports a head time.
    core::Millis max_head_age{60s};
    /// How often the node is read.
    core::Millis interval{1s};
    core::Millis timeout{2s};
    /// Another node of the same chain (or a public endpoint speaking the same API), read with
    /// the preset's head call: the node is behind when the reference's height is more than
    /// max_lag_blocks above its own. Empty: no reference. An unreachable reference is ignored
    /// (its outage must not take this node out of service).
    std::string reference;
    std::int64_t max_lag_blocks = 0;
};

struct Settings {
    std::string name = "node";
    std::string chain = "none";
    Preset preset;  ///< the chain's preset, resolved by config
    SyncedRule synced;
    ProgramSettings program;
    RestartSettings restart;
    StopSettings stop;
    std::string control = "127.0.0.1:8080";  ///< the control API (HOST:PORT, port 0: any)
    /// The gated proxy, on every interface as manageos had it (other pods call the node through
    /// it); empty: none.
    std::string proxy = "0.0.0.0:9999";
    std::string upstream = "http://127.0.0.1:8888";  ///< the node's own API
    std::string state_dir = "supervise";             ///< the state file lives here
    std::string data_dir;                            ///< the node's data (backups)
    /// The chain this node belongs to (--chain-id): backups carry it, and boot restores pick
    /// only its backups. Empty: the id the node reports.
    std::string chain_id;
    BackupSettings backup;
    /// Config files rendered before each start, in order (docs/supervise.md, "Rendered
    /// config").
    std::vector<RenderSettings> render;
    ProducerSettings producer;
    std::size_t log_ring_lines = 1000;  ///< lines kept for GET /v1/logs
    /// With --serve, the node's lines (and the sidecar's own) are shipped to serve's log store
    /// (docs/logs.md, "Shipping from sidecars").
    struct LogShipping {
        bool enabled = true;
        std::string service;  ///< the service label; empty: the chain, or the command's name
        std::size_t max_buffer_bytes = std::size_t{256} * 1024 * 1024;  ///< <state_dir>/ship
    };
    LogShipping ship;
    /// The preset's log metrics followed by the file's (config joins them).
    std::vector<LogRule> log_metrics;
    std::vector<std::string> tokens;  ///< required off loopback
    /// With --serve: the control URL serve reaches this sidecar at (--advertise), given when
    /// it registers the node in serve's pool (docs/producers.md). Empty: http://HOST:PORT of the
    /// control listener as bound (a wildcard HOST needs --advertise).
    std::string advertise;
};

/// Where the node is in its life.
enum class RunState { kStarting, kRunning, kStopping, kStopped, kBackoff, kMaintenance, kExited };

/// Whether the node may take traffic, and why not.
enum class Readiness { kStarting, kSyncing, kReady, kLagging, kStalled, kStopped, kMaintenance };

std::string_view to_string(RunState state);
std::string_view to_string(Readiness readiness);

struct ExitRecord {
    int code = 0;
    int signal = 0;
    core::TimePoint at{};
};

/// A snapshot, safe to copy to any thread.
struct Status {
    std::string name;
    std::string chain;
    RunState state = RunState::kStarting;
    Readiness readiness = Readiness::kStarting;
    std::string reason;  ///< why not ready ("syncing: head 1200 s old"), or "" when ready
    pid_t pid = 0;
    std::uint64_t starts = 0;
    std::uint64_t restarts = 0;
    bool maintenance = false;
    bool start_limit_hit = false;
    core::TimePoint started_at{};  ///< of the current run
    std::optional<ExitRecord> last_exit;
    std::optional<std::int64_t> height;
    std::optional<core::TimePoint> head_time;
    std::string chain_id;
    std::string block_hash;    ///< of the head at `height`, where the chain gives one
    std::string node_version;  ///< where the chain gives one
    std::string command;       ///< the command running now, if any
    std::string phase;         ///< where a backup or restore is ("copying the data dir")
    /// Why the data dir must be restored before the next start ("the node logged \"database
    /// dirty flag set\""); kept in the state file.
    std::string restore_pending;
    /// Why a config change has not been applied yet (the node produces), or "".
    std::string reload_pending;
    std::string last_backup;   ///< the name of the last backup this sidecar made
    std::string last_restore;  ///< the name of the last backup it restored
    /// bp mode: "producing", "paused", or "unknown" (the producer API did not answer); "" when
    /// not in bp mode.
    std::string production;
    std::string producer_key;  ///< bp mode: the producer lease's key (may be empty)
    /// bp mode, where the preset reads the schedule: manageos's ProductionRoundStatus for this
    /// node's account ("producing", "producing next", "just produced", "not producing"), and
    /// whether the account is in the schedule; "" and nullopt when not known.
    std::string round;
    std::optional<bool> in_schedule;
    std::string head_producer;  ///< who made the head block, where the chain says
    std::int64_t fence = 0;     ///< the producer lease's fence while this sidecar holds it, else 0
};

/// One line of the node's output.
struct LogLine {
    core::TimePoint at{};
    bool stderr_stream = false;
    std::string text;
};

/// Operators' commands (manageos's names).
enum class Command {
    kMaintenance,
    kResume,
    kReload,
    kSafelyReload,
    kBackup,
    kRestore,
    kSafelyPauseProduction,
    kSafelyResumeProduction
};
/// What backup and restore take (manageos's backupName and backupTag).
struct CommandArgs {
    std::string backup_name;  ///< restore: this backup; empty or "latest": the newest usable
    std::string backup_tag;   ///< backup: the label it gets; restore: pick among these
};
std::string_view to_string(Command command);
std::optional<Command> command_from(std::string_view name);

/// How a command ended: empty on success, else why it failed.
using CommandDone = std::function<void(core::Result<void>)>;

class Supervisor {
public:
    explicit Supervisor(Settings settings, metrics::Registry& registry);
    ~Supervisor();
    Supervisor(const Supervisor&) = delete;
    Supervisor& operator=(const Supervisor&) = delete;

    /// Hears every line the node writes, in order, on the node thread, as it is read:
    /// it must only hand the line over (a bounded queue), never wait. Before start() only.
    void on_line(std::function<void(const LogLine&)> observer);

    /// Reads the state file (maintenance survives a restart of the sidecar) and starts the node
    /// thread. Errors: the state dir cannot be made, or the state file is unreadable.
    core::Result<void> start();
    /// Stops the node (StopSettings) and joins the thread. Idempotent.
    void stop();
    /// Resolves once the node thread has finished (after stop(), or when the restart policy let
    /// the node end for good); the node's last exit status is in status().last_exit.
    void wait();

    Status status() const;
    /// The last `n` lines (at most log_ring_lines), oldest first.
    std::vector<LogLine> logs(std::size_t n) const;
    /// Whether the proxy may forward now, and the plain reason when not.
    std::pair<bool, std::string> gate() const;

    /// Sends `sig` to the running node's process group (SIGHUP, SIGUSR1... passed through);
    /// nothing when no node runs.
    void forward_signal(int sig);

    /// Queues a command; commands run one at a time, in order. `done` is called on the node
    /// thread when it has run (or at once, on this thread, when it cannot be queued).
    /// `queued`, when set, hears first whether the command was taken (an error: the sidecar is
    /// shutting down, or kMaxQueuedCommands wait already), on the node thread.
    void submit(Command command, CommandDone done, CommandDone queued = {}, CommandArgs args = {});

    /// The backups in the target, newest first (an error when backups are off). Reads the
    /// file system: call it off any I/O loop.
    core::Result<std::vector<BackupEntry>> backups() const;

    const Settings& settings() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace aviary::supervisor
