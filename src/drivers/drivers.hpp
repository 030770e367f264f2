#pragma once
/// drivers: how an action reaches a node (docs/architecture.md). One interface, one file per
/// implementation: `sim` (a simulated chain node run as a child process of serve) and `helm`
/// (a helm release on a Kubernetes cluster, driven with the `helm` and `kubectl` programs).
///
/// A driver performs one operation at a time per node, as a job step asks: install (helm's
/// `upgrade --install`: installs, or brings an installed node to the tag), upgrade (new tag,
/// data kept), uninstall (data kept), wipe-data, restart, status. The job engine guarantees one
/// mutating job per node at a time, so a driver need not lock per node against itself.
///
/// Executor: every coroutine here runs on the engine's executor (one thread), passed to start().
/// Children a step starts on purpose (helm, kubectl) go through Context::run so the engine can
/// record their process group and end it on cancel or timeout.
#include <sys/types.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "net/net.hpp"
#include "proc/proc.hpp"

namespace aviary::drivers {

namespace asio = net::asio;

/// The simulated node (`aviary sim-node`).
struct SimSettings {
    core::Millis block_interval{500};  ///< a block every interval
    /// Blocks a node produces after it starts before it reports syncing=false.
    int sync_blocks = 2;
    /// The height a fresh data dir starts from: the snapshot it imports (install on an empty
    /// data dir, as a chart's init container would).
    std::int64_t snapshot_height = 1000;
    /// The program run as `PROGRAM sim-node ...`; empty: this executable (/proc/self/exe).
    std::string program;
    core::Millis start_timeout{std::chrono::seconds{10}};  ///< until it has written its port
    core::Millis stop_grace{std::chrono::seconds{5}};      ///< SIGTERM, then SIGKILL
};

/// How the helm driver reaches one node's release (docs/api.md). The release is the node's
/// name.
struct HelmTarget {
    std::string namespace_name = "lotus";            ///< --namespace
    std::string chart = "./lotus-fullnode-minimal";  ///< a path, repo/chart or OCI reference
    /// helm --kube-context / kubectl --context; empty: the kubeconfig's current context.
    std::string kube_context;
    /// KUBECONFIG in the children's environment; empty: inherited from serve.
    std::string kubeconfig;
    /// Extra `--set KEY=VALUE` after `--set image.tag=TAG`, in this order.
    std::vector<std::pair<std::string, std::string>> set;
    /// Longest one helm or kubectl command may run; past it its process group is ended and
    /// the step fails as a timeout. The step's own timeout also applies (the smaller wins).
    core::Millis timeout{std::chrono::minutes{5}};
};

/// Nodes that share a target: a pool matches by node names or by labels.
struct HelmPool {
    std::string name;                ///< shown in messages
    std::vector<std::string> nodes;  ///< these nodes (empty: decided by selector)
    core::Labels selector;           ///< nodes whose labels match (both empty: none)
    HelmTarget target;               ///< the defaults with the pool's overrides applied
};

struct HelmSettings {
    std::string helm = "helm";        ///< the program: a name looked up on PATH, or a path
    std::string kubectl = "kubectl";  ///< likewise
    HelmTarget defaults;              ///< for nodes no pool matches
    std::vector<HelmPool> pools;      ///< the first pool that matches a node wins
    /// `helm status` (the wait step's view of a release) may take this long.
    core::Millis status_timeout{std::chrono::seconds{30}};
};

/// The target a node uses: its first matching pool's, else the defaults.
const HelmTarget& helm_target(const HelmSettings& settings, const core::NodeSpec& node);

/// How serve reaches the `aviary supervise` sidecars of nodes with driver sidecar
/// (docs/producers.md): each node's control_url, with this bearer token.
struct SidecarSettings {
    std::string token;  ///< sent as Authorization: Bearer; never logged. Empty: none sent
    /// A status read, and the answer to a command that is only queued.
    core::Millis timeout{std::chrono::seconds{10}};
    /// A command that runs to its end (`?sync=true`: a backup, a restore, a safe pause) may take
    /// this long; the step's own timeout also applies.
    core::Millis command_timeout{std::chrono::hours{2}};
};

struct Settings {
    /// Where drivers keep node state: sim nodes in <dir>/sim/<node>/. Set by the wiring to
    /// <data_dir>/nodes when empty.
    std::string dir;
    SimSettings sim;
    HelmSettings helm;
    SidecarSettings sidecar;
};

/// What a driver step does. The first six are every deploying driver's; the rest are the
/// commands of a supervised node's sidecar (driver sidecar only), manageos's names.
enum class Op {
    kInstall,
    kUpgrade,
    kUninstall,
    kWipeData,
    kRestart,
    kStatus,
    kMaintenance,       ///< stop the node and hold it stopped
    kResume,            ///< out of maintenance
    kReload,            ///< restart the node, refused while it produces (safely_reload)
    kBackup,            ///< a backup of its data dir (docs/backups.md)
    kRestore,           ///< the newest usable backup put back
    kPauseProduction,   ///< safely_pause_production (bp mode)
    kResumeProduction,  ///< safely_resume_production (bp mode, with the producer lease)
};
/// "install", "upgrade", "uninstall", "wipe-data", "restart", "status", "maintenance", "resume",
/// "reload", "backup", "restore", "pause-production", "resume-production".
std::string_view to_string(Op op);
std::optional<Op> parse_op(std::string_view text);
/// True for the ops only driver sidecar performs (maintenance ... resume-production).
bool is_sidecar_op(Op op);

/// What a node reports about itself.
struct NodeStatus {
    bool installed = false;
    bool running = false;
    std::string version;  ///< the running image tag
    std::int64_t height = 0;
    bool syncing = false;
    /// False when the driver cannot see the chain (helm sees a release, not its blocks):
    /// height and syncing mean nothing, and waits for synced or height-advancing settle for
    /// running (with a note in the job's output).
    bool has_height = true;
    std::string api;  ///< where its API answers, e.g. "http://127.0.0.1:40123"
};

/// What Context::run does for one child beyond the defaults.
struct RunOptions {
    /// Also gets each line the child writes (which goes to the job's output as well): what a
    /// driver keeps to explain a failure. Called on the executor.
    proc::LineCallback on_line;
    /// Ends the child's group (SIGTERM, grace, SIGKILL) once it has run this long, and then
    /// returns kTimeout. 0: only the step's own timeout and cancel apply.
    core::Millis timeout{0};
    /// False: stdout is the driver's to read (a JSON document), not job output; only on_line
    /// gets it. stderr goes to the job output either way.
    bool stdout_to_output = true;
    /// The longest stdout line on_line gets whole; a longer one arrives cut, marked truncated.
    std::size_t max_stdout_line = proc::kMaxLineBytes;
};

/// What a job step gives a driver: where output goes, how to run a child, whether to stop.
/// Implemented by the job engine.
class Context {
public:
    virtual ~Context() = default;
    /// A line for the job's output (stream "aviary": the driver's own notes).
    virtual void note(std::string text) = 0;
    /// Runs a child to completion: its group is recorded on the job (so a later start can kill
    /// it after a crash), its stdout/stderr become job output, and it is ended (SIGTERM, grace,
    /// SIGKILL to the group) when the step is cancelled or times out (stopping() then says so,
    /// and the status is the ended child's) or when run_options.timeout passes (kTimeout).
    virtual asio::awaitable<core::Result<proc::ExitStatus>> run(proc::SpawnOptions options,
                                                                RunOptions run_options) = 0;
    asio::awaitable<core::Result<proc::ExitStatus>> run(proc::SpawnOptions options) {
        return run(std::move(options), RunOptions{});
    }
    /// True once the step should stop (cancel or timeout): loops check it between waits.
    virtual bool stopping() const = 0;
};

struct OpRequest {
    Op op = Op::kStatus;
    core::NodeSpec node;
    std::string image_tag;  ///< install, upgrade: the tag to run (empty: the node's image_tag)
};

class Driver {
public:
    virtual ~Driver() = default;
    virtual std::string_view name() const = 0;
    /// Brings the driver up: the sim driver starts every installed node of `nodes` that uses
    /// it (a node never installed is installed at its image_tag). Called once, on `executor`.
    virtual asio::awaitable<void> start(asio::any_io_executor executor,
                                        std::vector<core::NodeSpec> nodes) = 0;
    /// Performs one operation; returns a compact JSON object for the job's result (the status
    /// after the operation for most). kInvalidArgument for an op the driver cannot do.
    virtual asio::awaitable<core::Result<std::string>> run(const OpRequest& request,
                                                           Context& context) = 0;
    /// The node's status now (cheap: the wait step polls it).
    virtual asio::awaitable<core::Result<NodeStatus>> status(const core::NodeSpec& node) = 0;
    /// Stops what start() started (sim nodes are ended gracefully). On the executor.
    virtual asio::awaitable<void> stop() = 0;
};

/// What a sidecar's GET /v1/status says, as the driver and the producer hand-off read it.
struct SidecarStatus {
    std::string name;       ///< the sidecar's --name
    std::string state;      ///< "running", "stopped", "backoff", "maintenance"...
    std::string readiness;  ///< "ready" when it takes traffic
    std::string reason;     ///< why not ready
    std::optional<std::int64_t> height;
    std::string chain_id;
    std::string phase;  ///< of a backup or restore under way
    /// bp mode: "producing", "paused" or "unknown"; empty when the sidecar is not in bp mode.
    std::string production;
    std::string producer_key;  ///< the producer lease's key, in bp mode
    std::int64_t fence = 0;    ///< the lease's fence while this sidecar holds it, else 0
    /// Where the chain tells it: the round status of the node's account ("producing",
    /// "producing next", "just produced", "not producing"), whether the account is in the
    /// schedule, and who made the head block; empty and nullopt when not known.
    std::string round;
    std::optional<bool> in_schedule;
    std::string head_producer;
};

/// Driver sidecar: a node run by `aviary supervise`, reached on its control API (its
/// NodeSpec::control_url). Besides Driver's ops, the producer hand-off reads and commands it
/// directly (jobs' switch_producer step).
class SidecarDriver : public Driver {
public:
    /// GET /v1/status. kUnavailable when it does not answer (naming the URL), kInternal for an
    /// answer that is not the sidecar's status.
    virtual asio::awaitable<core::Result<SidecarStatus>> read(const core::NodeSpec& node) = 0;
    /// POST /v1/COMMAND?sync=true, run to its end: the sidecar's `Success: ... completed`, or
    /// its `ERROR: ...` as the error (kBusy), or kUnavailable without an answer.
    virtual asio::awaitable<core::Result<std::string>> command(const core::NodeSpec& node,
                                                               Op op,
                                                               Context& context) = 0;
};

/// Every built-in driver, configured.
std::vector<std::unique_ptr<Driver>> make_drivers(const Settings& settings);

/// `aviary sim-node`: the simulated node's program (hidden subcommand). argv after
/// "sim-node": --data-dir DIR --version TAG --port-file FILE [--block-interval 500ms]
/// [--sync-blocks N] [--import SNAPSHOT] [--parent-pid PID] [--listen 127.0.0.1:0]
/// [--chain-id HEX] [--paused].
/// Serves GET /status ({"version","height","syncing"}) and GET /healthz, and nodeos's
/// /v1/chain/get_info and /v1/producer/{pause,resume,paused} (so `aviary supervise --chain sim`
/// reads it as it reads nodeos); keeps its height in DIR/height; exits on SIGTERM/SIGINT or
/// when its parent dies. Returns the exit code.
int sim_node_main(const std::vector<std::string>& args);

/// Writes a snapshot file the sim node can import (--import): a chain at `height`.
core::Result<void> write_sim_snapshot(const std::string& path, std::int64_t height);

}  // namespace aviary::drivers
