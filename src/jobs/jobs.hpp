#pragma once
/// jobs: every action on a node is a durable job (docs/architecture.md).
///
/// An action is a named list of steps (YAML, config's `jobs.actions`; built-ins ship in the
/// default config). Submitting one validates its typed params, checks permissions, and inserts
/// the job in the store (with the implicit acquire, in one transaction) before answering. A
/// pool of workers claims runnable jobs with a state-guarded update: one exclusive (mutating)
/// job per node at a time, in store order; global and per-action caps; paused queues skipped.
/// Claims ride on commits that happen anyway (no polling interval): a submission that finds a
/// worker free claims in its own commit, a finishing worker claims its next job in the
/// finishing commit, and otherwise (a retry's run_at comes, a queue is resumed, a node frees
/// up) the dispatcher claims for every free worker in one commit. With an Annotator set, a
/// job's annotation is kept in the store's outbox in the same transactions as its submit,
/// start and end.
///
/// A step is `driver` (an Op of the node's driver), `run` (an argv, never a shell, templated
/// from validated params), `wait` (until the node's status meets a condition), `http` (a
/// request through net's client, templated, with status and body checks, a per-request timeout
/// and retries), `ssh` (an argv run on a machine through the OpenSSH client), `lease` (the node
/// loaned to a person, or given back), `reboot` (ssh, then IPMI, then the PDU, each verified),
/// `connect` (a TCP connection to a port) or `noop`. A step that runs a child (a `run` step, or a
/// driver step whose driver runs one through Context::run, as helm's do) records its process group
/// in the store; timeout and cancel end that whole group (SIGTERM, grace, SIGKILL). Output is
/// captured line by line with sequence numbers, capped per job. Retries back off exponentially with
/// jitter. At start, process groups left by a previous run are killed and their jobs rescued
/// (retried when the action is safe to re-run, failed otherwise); every state change is guarded by
/// the state it expects, so a job is never finished twice.
///
/// Threads: the engine runs its workers and children on one thread of its own (its event
/// loop); store calls go through a BlockingPool. Public methods block on the store and are safe
/// from any thread; coroutines call them through net::offload().
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "drivers/drivers.hpp"
#include "fleet/fleet.hpp"
#include "net/net.hpp"
#include "store/store.hpp"

namespace aviary::metrics {
class Registry;
}

namespace aviary::jobs {

// ---------------------------------------------------------------------------------------------
// Actions

enum class ParamType {
    kString,    ///< any text, optionally matching `pattern`
    kDnsLabel,  ///< DNS-1123 label (node and release names)
    kImageTag,  ///< [A-Za-z0-9_][A-Za-z0-9_.-]{0,127} (a container image tag / git ref)
    kInteger,
    kBoolean,  ///< "true" or "false"
};
std::string_view to_string(ParamType type);
std::optional<ParamType> parse_param_type(std::string_view text);

/// A param value longer than this is refused unless its ParamSpec sets another max_length.
inline constexpr std::size_t kDefaultParamMaxLength = 256;
/// The most max_length may be: patterns run on values at most this long.
inline constexpr std::size_t kParamMaxLengthLimit = 4096;

struct ParamSpec {
    std::string name;  ///< [a-z][a-z0-9_]*; referenced as {{params.NAME}}
    ParamType type = ParamType::kString;
    /// string: an ECMAScript regex the whole value must match. Compiled once per pattern
    /// (validate_action compiles it at config load), and run only on values within max_length.
    std::string pattern;
    bool required = true;
    std::string default_value;  ///< used when not required and not given
    std::string description;
    std::size_t max_length = kDefaultParamMaxLength;  ///< longest value, in bytes; 1..4096
    /// A value starting with '-' could become an option of a run step's command: refused
    /// unless the param says it may (e.g. a param that holds extra flags).
    bool allow_leading_dash = false;
    /// A public action's param: its value when the job comes through the roller endpoint,
    /// templated from {{tc_worker_id}} and the machine's {{machine.FIELD}} (worker_params). Empty:
    /// the default (a public action's param without `from` must have one).
    std::string from;
};

enum class StepKind {
    kDriver,
    kRun,
    kWait,
    kNoop,
    kHttp,
    kSsh,
    kLease,
    kReboot,
    kConnect,
    kSwitchProducer,
};
std::string_view to_string(StepKind kind);
std::optional<StepKind> parse_step_kind(std::string_view text);

/// wait: what the node's status must show.
enum class WaitCondition {
    kRunning,          ///< the node answers
    kSynced,           ///< running and syncing == false
    kHeightAdvancing,  ///< running and its height grew while watched
};
std::string_view to_string(WaitCondition condition);
std::optional<WaitCondition> parse_wait_condition(std::string_view text);

/// http: one condition on the response body.
enum class HttpCheckKind {
    kJsonEquals,    ///< the JSON value at `path` equals `value`
    kJsonExists,    ///< the body is JSON and `path` is in it
    kTextContains,  ///< the body contains `value`
};
std::string_view to_string(HttpCheckKind kind);

struct HttpCheck {
    HttpCheckKind kind = HttpCheckKind::kTextContains;
    /// json_*: a path into the body, "result.height", "items[0].name" or "$.result" ("$" or
    /// "": the whole body).
    std::string path;
    /// json_equals: compared with the value's JSON form: a string value with the text, a
    /// number numerically, true/false/null as those words. text_contains: the text. Templated.
    std::string value;
};

/// http: a request through net's client, and what its response must show.
struct HttpStepSpec {
    std::string method = "GET";
    /// Templated; placeholder values are percent-encoded (they cannot add a path segment,
    /// query parameter or host). https:// is verified against the system's CA store.
    std::string url;
    std::vector<std::pair<std::string, std::string>> headers;  ///< values templated
    std::string body;                                          ///< templated, sent as is
    std::vector<int> expect_status;                            ///< empty: any 2xx
    std::vector<HttpCheck> checks;                             ///< all must hold
    core::Millis request_timeout{std::chrono::seconds{10}};    ///< each attempt, in all
    /// Attempts after the first when the request fails or its response does not meet the
    /// expectations (a probe of something starting up), `retry_interval` apart.
    int retries = 0;
    core::Millis retry_interval{std::chrono::seconds{1}};
};

/// lease: the job's node leased to a person (a loan) or given back, through the fleet, so
/// `aviary who` shows it.
struct LeaseStepSpec {
    bool acquire = true;  ///< op: acquire, or release
    /// Templated. acquire: who gets the node. release: whose lease ends (empty: whoever holds
    /// it; a name that does not hold it is a failure).
    std::string owner;
    std::string ttl;     ///< acquire, templated: a duration ("2h"); empty: the fleet's lease_ttl
    std::string reason;  ///< acquire, templated
};

/// connect: a TCP connection to a host's port, tried up to `attempts` times (ping's way, for a
/// network that drops ICMP, or to see a service answer rather than the host).
struct ConnectStepSpec {
    std::string host = "{{params.host}}";  ///< templated
    int port = 22;
    int attempts = 4;  ///< the step succeeds on the first that connects
    core::Millis interval{std::chrono::seconds{1}};  ///< between attempts
    core::Millis timeout{std::chrono::seconds{5}};   ///< each attempt
};

/// switch_producer: hands block production from the node `from` names to the job's node, both
/// run by sidecars in bp mode (docs/producers.md, "switch-producer"). Fields are templated.
struct SwitchProducerStepSpec {
    std::string from = "{{params.from}}";        ///< the node producing now
    std::string execute = "{{params.execute}}";  ///< "true": act; else only the plan and checks
    /// The most blocks the target may be behind the source for the hand-over to go ahead.
    std::string max_lag = "{{params.max_lag}}";
    /// How long the target may take to show production and a growing head once resumed.
    core::Millis verify_timeout{std::chrono::seconds{30}};
};

/// How a reboot may be done, in the order a reboot step escalates through them.
enum class RebootMethod {
    kSsh,   ///< the machine's own command over ssh (jobs.ssh)
    kIpmi,  ///< its BMC: ipmitool -I lanplus (jobs.ipmi)
    kPdu,   ///< its PDU outlet switched off, then on, over SNMP (jobs.pdu)
};
std::string_view to_string(RebootMethod method);
std::optional<RebootMethod> parse_reboot_method(std::string_view text);

/// reboot: tries each method in turn; after each it verifies that the machine went down and
/// came back (a TCP port stops answering, then answers again) before declaring success, and
/// records which method worked. A method the machine has no controller for is skipped.
struct RebootStepSpec {
    std::vector<RebootMethod> methods{RebootMethod::kSsh, RebootMethod::kIpmi, RebootMethod::kPdu};
    /// The remote argv run over ssh (templated, quoted for the remote shell). Its exit status
    /// is 0, or 255 when the connection drops as the machine goes down; the verification
    /// decides either way.
    std::vector<std::string> ssh_command{"systemctl", "reboot"};
    /// ipmitool's command words after its connection options.
    std::vector<std::string> ipmi_command{"chassis", "power", "cycle"};
    core::Millis pdu_off_time{std::chrono::seconds{10}};  ///< outlet off this long, then on
    int verify_port = 0;  ///< the TCP port that must stop and then start answering; 0: ssh_port
    core::Millis down_within{std::chrono::minutes{2}};    ///< after the command
    core::Millis up_within{std::chrono::minutes{10}};     ///< after it went down
    core::Millis interval{std::chrono::seconds{2}};       ///< between probes
    core::Millis probe_timeout{std::chrono::seconds{2}};  ///< one TCP connect
};

/// One step. Templates ({{node}}, {{params.NAME}}, {{job.id}}) are filled from validated
/// params, each placeholder becoming (part of) exactly one argv element.
struct StepSpec {
    std::string name;  ///< shown as progress; defaults to the kind (and op)
    StepKind kind = StepKind::kNoop;
    drivers::Op op = drivers::Op::kStatus;     ///< driver
    std::string image_tag = "{{params.tag}}";  ///< driver install/upgrade: the tag (templated)
    /// run: the program and its args. ssh: the command run on the machine, each element
    /// quoted for the remote shell, so it arrives as this argv.
    std::vector<std::string> argv;
    std::vector<std::pair<std::string, std::string>> env;  ///< run: added (values templated)
    WaitCondition condition = WaitCondition::kSynced;      ///< wait
    core::Millis interval{250};                            ///< wait: how often to look
    HttpStepSpec http;                                     ///< http
    LeaseStepSpec lease;                                   ///< lease
    RebootStepSpec reboot;                                 ///< reboot
    ConnectStepSpec connect;                               ///< connect
    SwitchProducerStepSpec switch_producer;                ///< switch_producer
    core::Millis timeout{0};  ///< this step; 0: whatever is left of the action's timeout
};

struct ActionSpec {
    std::string name;  ///< DNS-1123 label: "upgrade", "install-snapshot"
    std::string description;
    std::string queue = "default";
    std::vector<ParamSpec> params;
    std::vector<StepSpec> steps;
    core::Millis timeout{std::chrono::minutes{30}};  ///< the whole attempt
    int max_attempts = 1;
    core::Millis retry_backoff{std::chrono::seconds{5}};      ///< first retry's delay
    core::Millis retry_backoff_max{std::chrono::minutes{5}};  ///< the cap
    /// Destroys data (install-snapshot, delete-canary): not retried unless retry_destructive.
    bool destructive = false;
    bool retry_destructive = false;
    /// Safe to run again from the first step after serve died mid-way: rescued jobs of a
    /// safe action are re-queued, the others fail with a clear reason.
    bool rerun_safe = false;
    bool exclusive = true;  ///< mutating: one exclusive job per node at a time
    int concurrency = 0;    ///< most running at once across nodes; 0: no cap
    /// Reachable from the roller endpoint (POST /api/v1/jobs?tc_worker_id=..&task_name=..), on
    /// the machine behind the worker id. A public action has a param `tc_worker_id` (the config
    /// adds it) and every other param has a `from` template or a default.
    bool is_public = false;
};

/// Who may run which action on which nodes. Deny wins; a refusal names the rule.
struct PermissionRule {
    std::string name;   ///< shown in refusals; defaults to "permissions[N]"
    bool allow = true;  ///< effect: allow or deny
    /// Token identities, "group:NAME", or "*".
    std::vector<std::string> who;
    std::vector<std::string> actions;  ///< action names or "*"
    std::vector<std::string> nodes;    ///< node names or "*" (empty: every node)
    /// A machine's groups: the rule matches a machine in one of them (empty: any node; a node
    /// that is not a machine is in no group).
    std::vector<std::string> groups;
    core::Labels selector;  ///< and the node's labels must match
};

/// How ssh steps reach a machine: the OpenSSH client, never interactive, with a pinned
/// known_hosts file (a changed host key is refused) and a configured key.
struct SshSettings {
    std::string program = "ssh";
    std::string identity_file;  ///< -i (with IdentitiesOnly); empty: the client's own keys
    std::string known_hosts;    ///< UserKnownHostsFile; empty: the client's default file
    core::Millis connect_timeout{std::chrono::seconds{10}};
};

/// The OpenSSH client's argv for running `remote` on `machine` (a node with a machine spec):
/// BatchMode, ConnectTimeout, StrictHostKeyChecking=yes, the pinned known_hosts and key, the
/// machine's user and port, then `--`, the host, and `remote` quoted word by word for the remote
/// shell. No shell runs on our side.
std::vector<std::string> ssh_argv(const SshSettings& ssh,
                                  const core::NodeSpec& machine,
                                  const std::vector<std::string>& remote);
/// `word` quoted for a POSIX shell: as is when it holds only safe characters, else in single
/// quotes ("it's" -> 'it'\''s').
std::string shell_quote(std::string_view word);

/// How IPMI reaches a machine's BMC: ipmitool over lanplus, the password in a file (-f) so no
/// command line shows it.
struct IpmiSettings {
    std::string program = "ipmitool";
    /// The file ipmitool reads the password from: the configured password_file, or one serve
    /// writes (mode 0600, under the data dir) for password_env. Empty: no IPMI.
    std::string password_file;
    std::string password;   ///< loaded at start, for redaction only; never rendered or logged
    int cipher_suite = 0;   ///< -C; 0: ipmitool's own choice
    int retries = 2;        ///< -R: retries of each request
    int retry_seconds = 2;  ///< -N: seconds between them
};

/// How a PDU outlet is switched: net-snmp's snmpset, the community in an snmp.conf found
/// through SNMPCONFPATH so no command line shows it.
struct PduSettings {
    std::string program = "snmpset";
    /// SNMPCONFPATH: a directory whose snmp.conf holds defVersion and defCommunity (serve
    /// writes it, mode 0600, under the data dir). Empty: no PDU.
    std::string conf_dir;
    std::string community;  ///< loaded at start, for redaction only; never rendered or logged
    /// The outlet control column; ".N" (the machine's pdu_outlet) is appended. APC's
    /// PowerNet-MIB sPDUOutletCtl by default.
    std::string outlet_oid = ".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4";
    int on_value = 1;                               ///< INTEGER written to switch the outlet on
    int off_value = 2;                              ///< and off
    core::Millis timeout{std::chrono::seconds{2}};  ///< -t: each try
    int retries = 1;                                ///< -r
};

/// ipmitool's argv for `command` on `machine`'s BMC; empty when it has no ipmi_address.
std::vector<std::string> ipmi_argv(const IpmiSettings& ipmi,
                                   const core::NodeSpec& machine,
                                   const std::vector<std::string>& command);
/// snmpset's argv switching `machine`'s outlet to `value`; empty when it has no PDU.
std::vector<std::string> pdu_argv(const PduSettings& pdu, const core::NodeSpec& machine, int value);

struct Settings {
    int workers = 2;               ///< jobs running at once (the global cap)
    int output_max_lines = 10000;  ///< per job; past it one truncation note, then nothing
    core::Millis kill_grace{std::chrono::seconds{5}};  ///< SIGTERM -> SIGKILL on cancel/timeout
    core::Millis heartbeat{std::chrono::seconds{5}};   ///< running jobs' heartbeat_at refresh
    /// A running job whose heartbeat is older than this is taken as hung: its group is
    /// killed and it is rescued as after a crash.
    core::Millis heartbeat_timeout{std::chrono::minutes{1}};
    core::Millis retention{std::chrono::hours{24 * 30}};  ///< finished jobs and output kept
    core::Millis retention_sweep{std::chrono::hours{1}};
    std::vector<ActionSpec> actions;
    SshSettings ssh;    ///< ssh steps, and reboot's ssh method
    IpmiSettings ipmi;  ///< reboot's ipmi method
    PduSettings pdu;    ///< reboot's pdu method
    /// Empty: every caller with a token may run every action. Otherwise users need an allow
    /// rule; admins are allowed unless a deny rule matches.
    std::vector<PermissionRule> permissions;
    /// This serve's name among the instances sharing the store. Its runner ids are
    /// "INSTANCE/RUN": at start it rescues at once only the jobs its own previous runs left
    /// (other instances' jobs are rescued by the heartbeat watchdog once they stop beating),
    /// and it kills only its own leftover process groups (another host's pids mean nothing
    /// here).
    std::string instance = "default";
};

/// Checks an action's definition: names, params, templates that name known params, steps.
/// Errors name the action and step: `action "upgrade": steps[1].argv[2]: unknown param "tg"`.
core::Result<void> validate_action(const ActionSpec& action);

/// Checks and completes a job's params against the action's: unknown, missing and mistyped
/// values are kInvalidArgument naming the param; defaults are filled in.
core::Result<core::Params> validate_params(const ActionSpec& action, const core::Params& given);

/// Fills {{node}}, {{params.NAME}} and {{job.id}} in `text`. kInvalidArgument for an unknown
/// placeholder.
core::Result<std::string> render_template(std::string_view text, const core::Job& job);

/// The placeholders a param's `from` may use: {{tc_worker_id}}, and {{machine.name}} with
/// every field of core::MachineSpec ({{machine.address}} is the address or else the hostname).
inline constexpr std::string_view kFromPlaceholders =
    "tc_worker_id, machine.name, machine.hostname, machine.address, machine.ssh_user, "
    "machine.ssh_port, machine.ipmi_address, machine.ipmi_user, machine.pdu_host, "
    "machine.pdu_outlet";

/// One refused field of a request, for answers keyed by field (the roller's 400s).
struct FieldError {
    std::string field;
    std::string message;
};

/// A public action's params for a job on `machine` (a node with a machine spec) coming through
/// the roller endpoint for `worker_id`: each param's `from` filled in, then every param checked
/// as validate_params does. `errors` names each refused param; `params` is complete when it is
/// empty.
struct WorkerParams {
    core::Params params;
    std::vector<FieldError> errors;
};
WorkerParams worker_params(const ActionSpec& action,
                           std::string_view worker_id,
                           const core::NodeSpec& machine);

// ---------------------------------------------------------------------------------------------
// Engine

struct SubmitRequest {
    std::string action;
    std::string node;
    core::Params params;
    /// Set: the job runs for this owner, who acquires (or renews) the node in the same
    /// transaction; the lease outlives the job. Empty: the node must be free (it stays free) or
    /// held by the caller.
    std::string owner;
    std::optional<core::Millis> lease_ttl;  ///< the implicit acquire's TTL
    std::string reason;                     ///< the implicit acquire's reason
};

struct Submitted {
    core::Job job;
    bool duplicate = false;            ///< the same job was already queued or running: this is it
    std::optional<core::Lease> lease;  ///< the implicit acquire's lease
};

struct JobsQuery {
    std::string node;
    std::optional<core::JobState> state;
    std::string cursor;  ///< from a previous page's next_cursor
    int limit = 50;      ///< 1..1000
};

struct JobsPage {
    std::vector<core::Job> jobs;  ///< newest first
    std::string next_cursor;      ///< empty on the last page
};

struct OutputPage {
    std::vector<core::OutputLine> lines;  ///< in seq order
    std::int64_t last_seq = 0;            ///< the job's highest seq now
    bool finished = false;                ///< the job is terminal: no more lines will come
};

struct QueueInfo {
    std::string name;
    bool paused = false;
};

/// What start() found from a previous run.
struct RescueReport {
    std::vector<core::Job> requeued;   ///< safe to re-run: queued again
    std::vector<core::Job> failed;     ///< not safe: failed with the reason
    std::vector<core::Job> cancelled;  ///< a cancel was pending: cancelled
    int groups_killed = 0;
};

class Engine;

class Engine {
public:
    /// `drivers` by name ("sim", ...). `metrics` may be null.
    Engine(Settings settings,
           store::Store& store,
           fleet::Fleet& fleet,
           std::vector<std::unique_ptr<drivers::Driver>> drivers,
           core::Clock& clock,
           metrics::Registry* metrics);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    /// Adds the engine's tasks to the role's scheduler: retention (finished jobs past
    /// settings.retention) and due jobs (a retry whose backoff ends is claimed then: the next
    /// run_at is read from the store, so nothing waits in an in-memory timer list). Call once,
    /// before start() and before the scheduler starts. The scheduler must outlive the engine.
    void schedule(core::Scheduler& scheduler);
    /// Kills process groups left by a previous run and rescues their jobs, starts the drivers
    /// (sim nodes come up) and the workers. Call once, after schedule().
    core::Result<RescueReport> start();
    /// Stops claiming, ends running steps (their jobs are rescued at the next start, as after a
    /// crash, unless they finish within kill_grace), stops drivers. Idempotent.
    void stop();

    // --- surfaces ------------------------------------------------------------------------
    /// Validates, checks permissions (a refusal is kPermissionDenied naming the rule, and an
    /// event), and queues. Errors: kNotFound (unknown action or node), kInvalidArgument (params),
    /// kBusy naming the holder, kPermissionDenied, kUnavailable for a mutating action on a node
    /// in maintenance; a duplicate returns the first job. No thread waits on the commit: the
    /// caller resumes on its own executor when the store answers.
    net::asio::awaitable<core::Result<Submitted>> submit(SubmitRequest request,
                                                         fleet::Caller caller);
    core::Result<core::Job> job(std::string_view id);
    core::Result<JobsPage> jobs(const JobsQuery& query);
    /// Cancels (requester, the lease owner, or admin). A queued job is cancelled at once; a
    /// running one ends its step's group and becomes cancelled. kInvalidArgument when finished.
    core::Result<core::Job> cancel(std::string_view id, const fleet::Caller& caller);
    /// Runs a finished job again with the same action, node and params (a new job, retry_of
    /// set), by the rules of submit. kInvalidArgument when it is not finished.
    core::Result<Submitted> retry(std::string_view id, const fleet::Caller& caller);
    /// Output lines: query.after_seq to follow, before_seq/newest to page back from the end.
    core::Result<OutputPage> output(const store::OutputQuery& query);
    /// Pauses or resumes a queue (admin). kNotFound for a queue no action uses.
    core::Result<void> set_paused(std::string_view queue, bool paused, const fleet::Caller& caller);
    core::Result<std::vector<QueueInfo>> queues();
    /// Called for every new job (submit, retry) before it is stored: an annotation to keep in
    /// the store's outbox with the job (notify sends it to Grafana when the job starts and
    /// ends). Set before start(); unset: no annotations.
    using Annotator = std::function<std::optional<core::JobAnnotation>(const core::Job& job)>;
    void set_annotator(Annotator annotator);
    /// Called on the engine's thread when a job's attempt has started or has finished (after
    /// the commit), e.g. to wake notify's sender. It must only hand over. Set before start().
    using Transition = std::function<void(const core::Job& job)>;
    void set_on_transition(Transition on_transition);

    /// Where the engine says a job changed: topic job_topic(id) gets a message ("changed")
    /// whenever job `id` changes state or gets output. A follower subscribes
    /// before its first read of the job and reads the store again after each message, so a
    /// change that raced with a read is never lost (and a dropped message costs nothing).
    net::Hub& hub();
    static std::string job_topic(std::string_view id);

    const ActionSpec* action(std::string_view name) const;
    const std::vector<ActionSpec>& actions() const;
    const Settings& settings() const;

    struct Impl;  ///< private to src/jobs (named here so its files can share it)
    Impl& impl_for_test();

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace aviary::jobs
