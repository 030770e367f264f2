#pragma once
/// probes: canary scenarios (docs/probes.md). A scenario is a named list of steps that call a
/// system's API (HTTP, JSON-RPC, WebSocket, TCP, a command), check what came back, and carry
/// values from one step to the next; it runs with a timeout and ends passed, failed (a check did
/// not hold: correctness) or broken (the target could not be reached or timed out:
/// availability). The Bacalhau canary's five scenarios ship as the demo's default.
///
/// This header holds the model (filled by config from YAML, which validates every template and
/// assertion through parse_assertion() and parse_template() so a mistake is reported with its
/// line) and run_scenario(), which runs one on an I/O executor. Nothing here blocks.
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/core.hpp"
#include "core/regex.hpp"
#include "store/store.hpp"

namespace aviary::net {
class HttpClient;
class BlockingPool;
}  // namespace aviary::net
namespace aviary::metrics {
class Registry;
}  // namespace aviary::metrics
namespace aviary::supervisor {
struct Preset;
}  // namespace aviary::supervisor

namespace aviary::probes {

// ---------------------------------------------------------------------------------------------
// Assertions

/// What an assertion reads from a step's answer.
enum class Subject {
    kStatus,    ///< the HTTP status
    kDuration,  ///< the step's time, compared in milliseconds ("500ms", "2s" or a number)
    kBody,      ///< the body (a WebSocket message, a command's stdout) as text
    kHeader,    ///< a response header, by `name`
    kJson,      ///< a value at `path` in the body parsed as JSON (JSON-RPC: the whole reply)
    kExitCode,  ///< a command's exit code
    kStderr,    ///< a command's stderr
};

enum class Op {
    kEq,
    kNe,
    kLt,
    kLe,
    kGt,
    kGe,
    kContains,
    kMatches,  ///< RE2 syntax, searched in the value
    kAny,      ///< equals one of `values`
    kHas,      ///< the value exists (a JSON path found, a header sent); no right-hand side
};

/// One check, as written: `status == 200`, `json.state == succeeded`, `len(json.jobs) > 0`,
/// `has(json.id)`, `body contains hello`, `header.Content-Type matches ^application/json`,
/// `duration < 2s`, `json.state any succeeded, failed`.
struct Assertion {
    std::string text;  ///< as written, for messages
    Subject subject = Subject::kStatus;
    std::string name;     ///< the header's name, or the JSON path as written ("" is the whole body)
    bool length = false;  ///< len(...): the value's length (string, array, object members)
    Op op = Op::kHas;
    std::string value;                ///< the right-hand side, a template ({{job}})
    std::vector<std::string> values;  ///< kAny's alternatives, templates
    std::string message;              ///< said before the detail when it fails ("output mismatch")
    /// `matches` with a value that holds no variable: compiled once, at parse.
    std::optional<core::Regex> regex;
};

/// Parses `text` as above; kInvalidArgument saying what is wrong in it.
core::Result<Assertion> parse_assertion(std::string_view text);

/// A value captured from a step's answer into a variable: the same subjects as an assertion
/// (`json.id`, `header.ETag`, `body`, `status`), and for text, `body ~ REGEX` takes the
/// regex's first group.
struct Capture {
    std::string variable;
    std::string text;  ///< as written
    Subject subject = Subject::kBody;
    std::string name;
    std::string regex;                    ///< for `SUBJECT ~ REGEX`
    std::optional<core::Regex> compiled;  ///< `regex`, compiled at parse
};

core::Result<Capture> parse_capture(std::string variable, std::string_view text);

// ---------------------------------------------------------------------------------------------
// Templates

/// Checks a template: `{{name}}` placeholders (letters, digits, `_`, `-` and `.`), none
/// unclosed. kInvalidArgument naming the problem.
core::Result<void> parse_template(std::string_view text);
/// Fills `{{name}}` from `vars`; kInvalidArgument naming an unknown variable.
core::Result<std::string> render(std::string_view text,
                                 const std::map<std::string, std::string, std::less<>>& vars);

// ---------------------------------------------------------------------------------------------
// Scenarios

enum class StepKind {
    kHttp,
    kJsonRpc,
    kWebSocket,
    kTcp,
    kCommand,
    kAction,
    kChain,
    kPoll,
    kParallel
};

std::string_view step_kind_name(StepKind kind);

/// One step. Which fields mean something depends on `kind`; every string field that is sent or
/// run is a template.
struct Step {
    std::string name;  ///< shown in results; defaults to the kind and target
    StepKind kind = StepKind::kHttp;
    // http, jsonrpc, websocket
    std::string method = "GET";  ///< http
    std::string url;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;  ///< http: the request body; websocket: the message sent
    bool tls_verify = true;
    std::string ca_file;
    std::string rpc_method;         ///< jsonrpc
    std::string rpc_params = "[]";  ///< jsonrpc: JSON, a template
    // tcp
    std::string address;  ///< HOST:PORT
    // command
    std::vector<std::string> argv;
    // action: submits a job of `action` on `node` to {{server}}'s job API (with {{token}}) and
    // waits for it to end; its answer is the finished job (`json.state`, `json.error`...), and
    // a job that did not succeed fails the step unless an assertion reads json.state.
    std::string action;
    std::string node;  ///< a template ({{node}} is the scenario's)
    std::vector<std::pair<std::string, std::string>> params;  ///< values are templates
    // chain: reads a node's head at `url` through a chain preset, the one `aviary supervise`
    // uses (examples/chains.yaml), and checks it: "synced" (not syncing, head no older than
    // max_head_age), "advancing" (the height grows within `within`) or "lag" (at most max_lag
    // blocks behind the highest of its peers: those listed in `peers`, and the fleet's nodes
    // whose labels match `fleet`, as {{server}}'s node list gives them). Its answer: {"height",
    // "head_time", "age_ms", "syncing", "advanced_by", "highest_peer", "lag", "peers",
    // "peers_read"} for assertions.
    std::shared_ptr<const supervisor::Preset> preset;
    std::string chain_check = "synced";
    core::Millis max_head_age{0};    ///< 0: ten of the preset's block intervals
    core::Millis within{0};          ///< 0: five block intervals, at least 1s
    std::vector<std::string> peers;  ///< other nodes of the chain: their API's base URLs
    /// lag: the pool's nodes with these labels are peers too, but for the scenario's own node
    /// and those in maintenance. Empty with fleet_peers false: only `peers`.
    core::Labels fleet;
    bool fleet_peers = false;
    /// How a fleet peer is reached: a template with {{peer}} (and {{node}}) set to the peer's
    /// name, {{peer_host}} to where it runs and {{peer.LABEL}} to its labels. Empty: `url`
    /// with those.
    std::string peer_url;
    std::int64_t max_lag = 5;
    /// The step's own limit, within the scenario's; 0: the scenario's.
    core::Millis timeout{0};
    std::vector<Assertion> assertions;
    std::vector<Capture> captures;
    // poll: `steps` until they all pass, `interval` apart, for at most `deadline`.
    // parallel: `steps` as `count` branches at once, each with `{{branch}}` set to 1..count.
    std::vector<Step> steps;
    core::Millis interval{std::chrono::seconds{1}};
    core::Millis deadline{std::chrono::seconds{30}};
    int count = 1;
};

struct Scenario {
    std::string name;  ///< `[A-Za-z0-9_.-]+`
    std::string description;
    core::Millis interval{std::chrono::minutes{2}};  ///< the original canary's schedule
    core::Millis timeout{std::chrono::minutes{1}};
    bool enabled = true;  ///< false: run on demand only (`aviary probe run`, run now)
    core::Labels labels;
    /// The node the scenario checks, if one: its maintenance, or a planned action running on
    /// it, silences the scenario's alarms ({{node}} in templates).
    std::string node;
    std::map<std::string, std::string, std::less<>> vars;  ///< templates' own variables
    std::vector<Step> steps;
    std::vector<Step> cleanup;  ///< run after the steps whatever happened, within `timeout` more
};

// ---------------------------------------------------------------------------------------------
// Alarms (docs/probes.md, "Alarms")

enum class AlarmKind {
    /// The original canary's: the measure below `threshold` in `breaching` of the last
    /// `periods` periods, a period without runs counting as breaching.
    kAvailability,
    /// The scenario's newest `failures` runs all bad.
    kConsecutiveFailures,
    /// An objective over a window, alarmed on its error budget's burn rate: fast (2 % of the
    /// budget in an hour, seen over 1 h and 5 min) or slow (5 % in six hours, over 6 h and 30 min).
    kSlo,
};

std::string_view alarm_kind_name(AlarmKind kind);  ///< "availability", "consecutive", "slo"

/// Which runs count as bad.
enum class Measure {
    kAvailability,  ///< broken runs: the target could not be reached
    kCorrectness,   ///< failed runs: it answered wrongly
    kSuccess,       ///< both
};

std::string_view measure_name(Measure measure);

/// One rule, applied to each scenario it selects: each pair is an alarm named "RULE/SCENARIO".
struct AlarmRule {
    std::string name;
    AlarmKind kind = AlarmKind::kAvailability;
    /// Which scenarios: those named, else those whose labels match `selector` (empty: all).
    /// Scenarios that are not enabled are never selected.
    std::vector<std::string> scenarios;
    core::Labels selector;
    Measure measure = Measure::kAvailability;
    // availability
    double threshold = 0.95;
    core::Millis period{std::chrono::minutes{5}};  ///< a multiple of 5 minutes
    int periods = 5;
    int breaching = 3;
    // consecutive
    int failures = 3;
    // slo
    double objective = 0.995;
    core::Millis window{std::chrono::hours{24 * 30}};
    /// The condition must hold this long before the alarm fires.
    core::Millis pending{0};
    /// Hysteresis: a firing alarm resolves only once its condition has been clear this long.
    core::Millis keep_firing_for{std::chrono::minutes{5}};
    /// While firing (and not silenced), the notifiers hear again this often; 0: never.
    core::Millis repeat{std::chrono::hours{4}};
    /// Which notifiers (notify.notifiers) hear of it; empty: every one.
    std::vector<std::string> notify;
};

/// A pool of nodes that hands out only healthy ones (docs/probes.md, "Gated leases"): its
/// nodes go to acquires by selector only while `scenario`, run with {{node}} set to each, has
/// passed within `max_age` and no lease has used the pass since. A node back from a lease runs
/// it again; a failure puts the node in maintenance with the reason and fires alarm
/// "gate/NODE".
struct Gate {
    std::string name;
    core::Labels selector;  ///< the pool: nodes whose labels match (empty: every node)
    std::string scenario;
    core::Millis max_age{std::chrono::minutes{15}};
};

struct Settings {
    std::vector<Scenario> scenarios;
    /// How many scenarios may run at once on one instance.
    int max_concurrent = 16;
    /// A step's answer is read up to this size; more fails the step (a target that floods).
    std::size_t max_body_bytes = std::size_t{4} * 1024 * 1024;
    /// Runs are kept this long.
    core::Millis retention{std::chrono::hours{24 * 30}};
    /// {{token}} in templates: a bearer token for the scenarios' calls to a serve that has
    /// auth.tokens (read at load from probes.token_file or token_env; never logged, and
    /// redacted from what runs store). Empty: none.
    std::string token;
    std::vector<AlarmRule> alarms;
    /// How often the leader evaluates the alarms (and after every run).
    core::Millis evaluate_every{std::chrono::seconds{30}};
    /// Jobs of these actions running on a scenario's node silence its alarms: planned work.
    std::vector<std::string> silence_actions{"upgrade",       "install-snapshot", "create-canary",
                                             "delete-canary", "restore",          "handoff"};
    /// Where people look: links in notifications are PUBLIC_URL/dashboard#probe-NAME. Empty:
    /// serve's own address.
    std::string public_url;
    /// The notifiers' names (notify.notifiers), filled in by config: whom alarms notify.
    std::vector<std::string> notifiers;
    std::vector<Gate> gates;
    /// How often the gatekeeper looks for gated nodes whose gate is due.
    core::Millis gate_poll{std::chrono::seconds{5}};
};

const Scenario* find_scenario(const Settings& settings, std::string_view name);

// ---------------------------------------------------------------------------------------------
// Results

enum class Outcome {
    kPassed,
    kFailed,  ///< a check did not hold: a correctness failure
    kBroken,  ///< could not reach the target, or ran out of time: an availability failure
};

std::string_view outcome_name(Outcome outcome);  ///< "passed", "failed", "broken"

struct StepResult {
    std::string name;
    StepKind kind = StepKind::kHttp;
    int depth = 0;  ///< 0 for a scenario's own steps, 1 inside a poll or parallel...
    Outcome outcome = Outcome::kPassed;
    core::Millis duration{0};
    std::string message;  ///< why it failed; for a poll, how many tries
    bool cleanup = false;
};

struct RunResult {
    std::string scenario;
    core::TimePoint started{};
    core::Millis duration{0};
    Outcome outcome = Outcome::kPassed;
    std::string failed_step;  ///< the first step that did not pass
    std::string message;      ///< `step "get": json.state == succeeded: expected … but got …`
    std::vector<StepResult> steps;
};

/// What a run may use: an HTTP client on the executor the run is on, the variables every
/// template sees ({{server}} among them), and a callback told of each step as it ends (the CLI
/// prints them).
struct RunContext {
    net::HttpClient* http = nullptr;
    net::BlockingPool* blocking = nullptr;  ///< websocket steps run their client on it
    std::map<std::string, std::string, std::less<>> vars;
    std::size_t max_body_bytes = std::size_t{4} * 1024 * 1024;
    std::function<void(const StepResult&)> on_step;
    core::Clock* clock = nullptr;  ///< for `started`; the system clock when null
};

/// Runs `scenario` on the calling coroutine's executor: its steps in order until one does not
/// pass, then its cleanup steps, all within `timeout` (cleanup within as much again). Never
/// throws: every problem is in the result.
boost::asio::awaitable<RunResult> run_scenario(const Scenario& scenario, RunContext context);

// ---------------------------------------------------------------------------------------------
// Availability

/// A scenario's runs over a window, and the shares the original canary alarmed on:
/// availability = 100 − 100·broken / max(broken, runs) (a run that could not reach its target),
/// correctness the same for failed runs (it answered wrongly). No runs: no figure.
struct Window {
    std::string name;  ///< "1h", "24h", "30d"
    core::Millis length{0};
    std::int64_t runs = 0;
    std::int64_t failed = 0;
    std::int64_t broken = 0;
    std::optional<double> availability;
    std::optional<double> correctness;
    std::optional<double> success;  ///< passed / runs
};

/// The windows every scenario is reported over.
std::vector<std::pair<std::string, core::Millis>> standard_windows();
/// A window's figures from counts.
Window window_from(std::string name, core::Millis length, const store::ProbeBucket& counts);

/// The steps of a run as the store keeps them (a JSON array), and back for an API.
std::string steps_json(const std::vector<StepResult>& steps);

/// Adds the retention task (leader_only): runs older than settings.retention, and buckets older
/// than that or 31 days, whichever is longer, are deleted every hour.
void schedule_retention(core::Scheduler& scheduler, store::Store& store, const Settings& settings);

// ---------------------------------------------------------------------------------------------
// The service: scenarios on their schedule inside serve

/// Runs every enabled scenario on its interval (with jitter, never overlapping itself, at most
/// max_concurrent at once), stores each run, and keeps the probe metrics. With several
/// instances on one store each run is claimed by one instance (Store::claim_probe). Runs on a
/// thread of its own ("probes"); store calls go to the blocking pool.
class Service {
public:
    struct Options {
        store::Store* store = nullptr;
        net::BlockingPool* blocking = nullptr;
        metrics::Registry* metrics = nullptr;  ///< null: no metrics
        core::Clock* clock = nullptr;          ///< null: the system clock
        std::string instance;                  ///< stored with each run
        bool schedule = true;                  ///< false: runs only on demand
        /// Told after each run is stored (serve wakes the alarms). On the probes thread: quick.
        std::function<void()> on_run_stored;
        /// Told how a gated node's gate run ended (serve fires or resolves alarm gate/NODE). On
        /// the blocking pool: it may call the store.
        std::function<void(const std::string& node, const Gate& gate, const RunResult& run)>
            on_gate;
    };

    struct ScenarioStatus {
        const Scenario* scenario = nullptr;
        std::optional<store::ProbeRun> last;
        std::optional<core::TimePoint> next_run_at;
        std::vector<Window> windows;  ///< standard_windows(), in order
    };

    /// How late scheduled runs started against when they were due (this instance's).
    struct Lateness {
        std::uint64_t runs = 0;
        double p50_ms = 0;
        double p99_ms = 0;
        double max_ms = 0;
    };

    Service(Settings settings, Options options);
    ~Service();
    Service(const Service&) = delete;
    Service& operator=(const Service&) = delete;

    /// Starts the schedule; `server_url` is {{server}}, this serve's own address.
    void start(std::string server_url);
    /// Ends the schedule; a run in progress is abandoned (not stored). Idempotent.
    void stop();

    const Settings& settings() const { return settings_; }
    store::Store& store() { return *impl_store(); }
    /// Runs `name` now (besides its schedule), stores the run, and calls `done` with it, once,
    /// from the probes thread (or at once: kNotFound for an unknown scenario, kUnavailable when
    /// the service is not running; a run cut short by stop() is kUnavailable too). Holds no
    /// thread while the run goes on.
    using RunDone = std::function<void(core::Result<RunResult>)>;
    void run_now(std::string_view name, RunDone done);
    /// Every scenario with its last run, next run and windows (store reads: blocks).
    core::Result<std::vector<ScenarioStatus>> status();
    /// The last 24 hours in kProbeBucket steps, for the dashboard (store reads: blocks).
    core::Result<std::vector<store::ProbeBucket>> recent_buckets();
    Lateness lateness() const;

private:
    struct Impl;
    store::Store* impl_store();
    Settings settings_;
    std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// Alarms: evaluation

/// What a rule reads of one scenario at one evaluation.
struct AlarmInput {
    core::TimePoint now{};
    /// The scenario's interval: a period without runs counts as breaching only when a run was
    /// due in it (the period is longer than the longest jittered gap between runs, 1.1 × this).
    core::Millis interval{0};
    /// The scenario's buckets, oldest first, from at least the rule's longest look-back.
    std::vector<store::ProbeBucket> buckets;
    /// The scenario's newest runs, newest first (consecutive rules).
    std::vector<store::ProbeRun> newest;
    /// The scenario's counts over the SLO's window (slo rules).
    store::ProbeBucket window;
    /// Periods that ended before this are not judged (the alarm did not exist yet): a new
    /// alarm does not fire on the missing data of the time before it.
    core::TimePoint judged_from{};
};

/// A rule's verdict on one scenario now.
struct Reading {
    bool breaching = false;
    std::string summary;  ///< "availability below 95% in 3 of the last 5 periods: 80%, …"
};

Reading read_alarm(const AlarmRule& rule, const AlarmInput& input);
/// How far back read_alarm() looks into buckets for `rule`.
core::Millis look_back(const AlarmRule& rule);

/// What an evaluation decided for one alarm: the state to write and the notifications to send
/// ("firing", "resolved", "reminder").
struct AlarmStep {
    store::AlarmState next;
    std::vector<std::string> notify;
};

/// Moves `current` on by `reading` at `now`: ok → firing once the condition held `pending`;
/// firing → ok once it was clear `keep_firing_for`; notifications when the notified state
/// differs from the state and nothing silences it (`silenced_by` empty), and reminders every
/// `repeat` while firing. A silenced change is told once the silence ends, if it still holds.
AlarmStep step_alarm(const AlarmRule& rule,
                     store::AlarmState current,
                     const Reading& reading,
                     std::string silenced_by,
                     core::TimePoint now);

/// The leader's alarm evaluation, a scheduler task (docs/probes.md, "Alarms"): reads the
/// buckets, runs, silences, nodes and running jobs once per pass, moves every alarm on, and
/// writes each changed alarm with its notifications and events in one transaction.
class Alarms {
public:
    Alarms(const Settings& settings,
           store::Store& store,
           core::Clock& clock,
           metrics::Registry* metrics);
    ~Alarms();
    Alarms(const Alarms&) = delete;
    Alarms& operator=(const Alarms&) = delete;

    /// Where links point when settings.public_url is empty (serve's address). Thread-safe.
    void set_public_url(std::string url);
    /// Told after an evaluation queued notifications (serve wakes the sender); before schedule.
    void set_on_notified(std::function<void()> on_notified);
    /// Adds the evaluation (leader_only) to `scheduler`; does nothing without rules.
    void schedule(core::Scheduler& scheduler);
    /// Evaluates soon (a run was stored): at once, or once a second (and ten times the last
    /// evaluation's length) has passed since the last one started. Thread-safe.
    void wake();
    /// Removes the task; returns once no evaluation runs.
    void stop();
    /// One evaluation on the calling thread (blocks on the store).
    core::Result<void> evaluate();
    /// A gated node's gate ended (blocks on the store): a failure fires alarm "gate/NODE" (rule
    /// "gate") and notifies; the next pass resolves it and notifies again. Silences apply as to
    /// any alarm ("*", "gate", the scenario, or "gate/NODE"); maintenance does not, as the
    /// failure itself put the node there.
    core::Result<void> gate_result(const std::string& node, const Gate& gate, const RunResult& run);

    /// The alarms each rule makes of `settings`' scenarios: (rule, scenario) pairs.
    static std::vector<std::pair<const AlarmRule*, const Scenario*>> pairs(
        const Settings& settings);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace aviary::probes
