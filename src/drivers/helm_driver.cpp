#include "drivers/helm_driver.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/this_coro.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <chrono>
#include <optional>

#include "drivers/sidecar_driver.hpp"

namespace aviary::drivers {
namespace {

using namespace std::chrono_literals;
/// Lines of a command's output kept for its error message.
constexpr std::size_t kTailLines = 20;
/// A command the driver ends gets SIGTERM, then SIGKILL after this (helm cleans up on SIGTERM).
constexpr core::Millis kKillGrace{3000};
/// The longest `helm status -o json` read (one line: the JSON with the rendered manifest);
/// a longer one is an error rather than JSON cut short.
constexpr std::size_t kStatusJsonMax = std::size_t{16} * 1024 * 1024;

// Matched case-insensitively against each output line, last line first.
constexpr std::array<std::string_view, 7> kUnreachable{"kubernetes cluster unreachable",
                                                       "unable to connect to the server",
                                                       "the connection to the server",
                                                       "connection refused",
                                                       "no such host",
                                                       "dial tcp",
                                                       "i/o timeout"};
constexpr std::array<std::string_view, 2> kReleaseNotFound{"release: not found",
                                                           "release not loaded"};
constexpr std::array<std::string_view, 1> kHelmTimedOut{"timed out waiting for the condition"};

// --namespace NS, then the context right after it (the argv of docs/drivers.md when none is set).
void add_namespace(std::vector<std::string>& argv,
                   const HelmTarget& target,
                   std::string_view context_flag) {
    argv.emplace_back("--namespace");
    argv.push_back(target.namespace_name);
    if (!target.kube_context.empty()) {
        argv.emplace_back(context_flag);
        argv.push_back(target.kube_context);
    }
}

HelmCommand make_command(std::vector<std::string> argv,
                         const HelmTarget& target,
                         std::string what,
                         std::string setting) {
    HelmCommand command{
        .argv = std::move(argv), .what = std::move(what), .setting = std::move(setting)};
    if (!target.kubeconfig.empty()) {
        command.env_add.emplace_back("KUBECONFIG", target.kubeconfig);
    }
    return command;
}

std::string lower(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

template <std::size_t N>
std::optional<std::string> find_line(const std::deque<std::string>& tail,
                                     const std::array<std::string_view, N>& patterns) {
    for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
        auto text = lower(*it);
        for (auto pattern : patterns) {
            if (text.find(pattern) != std::string::npos) {
                return *it;
            }
        }
    }
    return std::nullopt;
}

std::string trim(std::string_view text) {
    auto begin = text.find_first_not_of(" \t\r");
    if (begin == std::string_view::npos) {
        return {};
    }
    auto end = text.find_last_not_of(" \t\r");
    return std::string(text.substr(begin, end - begin + 1));
}

// The line that says what went wrong: helm's last "Error: ..." line, else the last non-empty.
std::string error_line(const std::deque<std::string>& tail) {
    for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
        if (it->rfind("Error:", 0) == 0 || it->rfind("error:", 0) == 0) {
            return trim(*it);
        }
    }
    for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
        if (auto line = trim(*it); !line.empty()) {
            return line;
        }
    }
    return {};
}

std::string describe(const proc::ExitStatus& status) {
    if (status.exited()) {
        return fmt::format("exited with code {}", status.code);
    }
    return fmt::format("was killed by signal {}", status.signal);
}

bool needs_quotes(std::string_view word) {
    if (word.empty()) {
        return true;
    }
    return word.find_first_not_of(
               "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
               "-_./=:,@+%") != std::string_view::npos;
}

const boost::json::value* member(const boost::json::value* value, std::string_view key) {
    const auto* object = value == nullptr ? nullptr : value->if_object();
    return object == nullptr ? nullptr : object->if_contains(key);
}

/// `helm status -o json`'s object, read whole (up to kStatusJsonMax).
std::optional<boost::json::value> parse_status_json(std::string_view json) {
    boost::system::error_code ec;
    auto value = boost::json::parse(json, ec);
    if (ec || !value.is_object()) {
        return std::nullopt;
    }
    return value;
}

/// info.status, or "" when it is missing.
std::string release_state(std::string_view json) {
    auto value = parse_status_json(json);
    const auto* state = value ? member(&*value, "info") : nullptr;
    state = member(state, "status");
    return state != nullptr && state->is_string() ? std::string(state->get_string()) : "";
}

std::string render_status(const NodeStatus& status, std::string_view helm_status) {
    boost::json::object object;
    object["installed"] = status.installed;
    object["running"] = status.running;
    object["version"] = status.version;
    object["helm_status"] = helm_status;
    return boost::json::serialize(object);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Commands

const HelmTarget& helm_target(const HelmSettings& settings, const core::NodeSpec& node) {
    for (const auto& pool : settings.pools) {
        if (std::find(pool.nodes.begin(), pool.nodes.end(), node.name) != pool.nodes.end()) {
            return pool.target;
        }
        if (!pool.selector.empty() && core::labels_match(node.labels, pool.selector)) {
            return pool.target;
        }
    }
    return settings.defaults;
}

HelmCommand helm_upgrade_command(const HelmSettings& settings,
                                 const HelmTarget& target,
                                 std::string_view release,
                                 std::string_view tag) {
    std::vector<std::string> argv{settings.helm, "upgrade"};
    add_namespace(argv, target, "--kube-context");
    argv.emplace_back("--install");
    argv.emplace_back(release);
    argv.push_back(target.chart);
    argv.emplace_back("--set");
    argv.push_back(fmt::format("image.tag={}", tag));
    for (const auto& [key, value] : target.set) {
        argv.emplace_back("--set");
        argv.push_back(fmt::format("{}={}", key, value));
    }
    return make_command(std::move(argv), target, "helm upgrade", "drivers.helm.helm");
}

HelmCommand helm_uninstall_command(const HelmSettings& settings,
                                   const HelmTarget& target,
                                   std::string_view release) {
    std::vector<std::string> argv{settings.helm};
    add_namespace(argv, target, "--kube-context");
    argv.emplace_back("uninstall");
    argv.emplace_back(release);
    return make_command(std::move(argv), target, "helm uninstall", "drivers.helm.helm");
}

HelmCommand kubectl_delete_pvc_command(const HelmSettings& settings,
                                       const HelmTarget& target,
                                       std::string_view release) {
    std::vector<std::string> argv{settings.kubectl};
    add_namespace(argv, target, "--context");
    argv.emplace_back("delete");
    argv.emplace_back("pvc");
    argv.emplace_back("-l");
    argv.push_back(fmt::format("release={}", release));
    return make_command(std::move(argv), target, "kubectl delete pvc", "drivers.helm.kubectl");
}

HelmCommand helm_status_command(const HelmSettings& settings,
                                const HelmTarget& target,
                                std::string_view release) {
    std::vector<std::string> argv{settings.helm, "status"};
    add_namespace(argv, target, "--kube-context");
    argv.emplace_back(release);
    argv.emplace_back("-o");
    argv.emplace_back("json");
    return make_command(std::move(argv), target, "helm status", "drivers.helm.helm");
}

std::vector<HelmCommand> helm_commands(const HelmSettings& settings,
                                       const HelmTarget& target,
                                       Op op,
                                       std::string_view release,
                                       std::string_view tag) {
    switch (op) {
        case Op::kInstall:
        case Op::kUpgrade:
            return {helm_upgrade_command(settings, target, release, tag)};
        case Op::kUninstall:
            return {helm_uninstall_command(settings, target, release)};
        case Op::kWipeData:
            return {kubectl_delete_pvc_command(settings, target, release)};
        case Op::kStatus:
            return {helm_status_command(settings, target, release)};
        case Op::kRestart:
        case Op::kMaintenance:
        case Op::kResume:
        case Op::kReload:
        case Op::kBackup:
        case Op::kRestore:
        case Op::kPauseProduction:
        case Op::kResumeProduction:
            break;
    }
    return {};
}

std::string shell_words(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& word : argv) {
        if (!out.empty()) {
            out += ' ';
        }
        if (!needs_quotes(word)) {
            out += word;
            continue;
        }
        out += '\'';
        for (char c : word) {
            if (c == '\'') {
                out += "'\\''";
            } else {
                out += c;
            }
        }
        out += '\'';
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Classification and parsing

core::Result<void> classify_helm_outcome(const HelmCommand& command,
                                         const HelmOutcome& outcome,
                                         std::string_view release,
                                         std::string_view namespace_name,
                                         core::Millis timeout) {
    if (outcome.stopped) {
        return core::Error{
            core::ErrorCode::kUnavailable,
            fmt::format("{} of {} was ended: the step is stopping", command.what, release)};
    }
    if (outcome.timed_out) {
        return core::Error{core::ErrorCode::kTimeout,
                           fmt::format("{} of {} did not finish within {} (drivers.helm.timeout): "
                                       "its process group was ended",
                                       command.what, release, core::format_duration(timeout))};
    }
    if (outcome.status.succeeded()) {
        return {};
    }
    if (auto line = find_line(outcome.tail, kUnreachable)) {
        return core::Error{core::ErrorCode::kUnavailable,
                           fmt::format("cluster unreachable: {}", trim(*line))};
    }
    if (find_line(outcome.tail, kReleaseNotFound)) {
        return core::Error{
            core::ErrorCode::kNotFound,
            fmt::format("helm: release {} not found in namespace {}", release, namespace_name)};
    }
    if (auto line = find_line(outcome.tail, kHelmTimedOut)) {
        return core::Error{
            core::ErrorCode::kTimeout,
            fmt::format("{} of {} timed out: {}", command.what, release, trim(*line))};
    }
    auto line = error_line(outcome.tail);
    if (command.what == "helm upgrade") {
        return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("chart error: {}",
                        line.empty() ? "helm upgrade " + describe(outcome.status) : line)};
    }
    return core::Error{core::ErrorCode::kInternal,
                       fmt::format("{} of {} {}: {}", command.what, release,
                                   describe(outcome.status), line.empty() ? "no output" : line)};
}

core::Result<NodeStatus> parse_helm_status(std::string_view json, std::string_view release) {
    auto parsed = parse_status_json(json);
    if (!parsed) {
        auto shown = json.substr(0, 200);
        return core::Error{core::ErrorCode::kInternal,
                           fmt::format("helm status of {} printed no JSON object: {}", release,
                                       shown.empty() ? "nothing" : shown)};
    }
    const boost::json::value& value = *parsed;
    const auto* state = member(member(&value, "info"), "status");
    if (state == nullptr || !state->is_string()) {
        return core::Error{
            core::ErrorCode::kInternal,
            fmt::format("helm status of {} printed JSON without info.status", release)};
    }
    NodeStatus status;
    status.has_height = false;
    const std::string_view text = state->get_string();
    status.installed = text != "uninstalled" && text != "uninstalling";
    status.running = text == "deployed";
    if (const auto* tag = member(member(member(&value, "config"), "image"), "tag")) {
        // `--set image.tag=1.2` reaches helm as a number: show it as written.
        if (tag->is_string()) {
            status.version = tag->get_string();
        } else if (tag->is_double()) {
            status.version = fmt::format("{}", tag->get_double());
        } else {
            status.version = boost::json::serialize(*tag);
        }
    }
    return status;
}

// ---------------------------------------------------------------------------------------------
// The driver

namespace {

/// What the driver keeps of a command's lines: its tail (for the error) and, for `helm
/// status`, its stdout (the JSON). The job's output gets them through Context::run.
struct Sink {
    bool keep_stdout = false;
    std::deque<std::string> tail;
    std::string stdout_text;
    bool stdout_cut = false;  // a kept stdout line was longer than kStatusJsonMax

    void take(const proc::Line& line) {
        const bool is_stdout = line.stream == proc::Stream::kStdout;
        if (is_stdout && keep_stdout) {
            stdout_cut = stdout_cut || line.truncated;
            stdout_text += line.text;
            stdout_text += '\n';
            return;  // the JSON is for the driver: neither job output nor the error's tail
        }
        std::string text = line.text;
        if (line.truncated) {
            text += " [line truncated]";
        }
        tail.push_back(std::move(text));
        if (tail.size() > kTailLines) {
            tail.pop_front();
        }
    }
};

core::Error status_too_long(std::string_view release) {
    return core::Error{core::ErrorCode::kInternal,
                       fmt::format("helm status of {} printed more than {} MiB of JSON", release,
                                   kStatusJsonMax / (std::size_t{1024} * 1024))};
}

/// What a command gave: how it ended, and its stdout when asked for.
struct Ran {
    HelmOutcome outcome;
    std::string stdout_text;
    bool stdout_cut = false;  ///< stdout_text is longer than kStatusJsonMax: not all of it
};

class HelmDriver final : public Driver {
public:
    explicit HelmDriver(HelmSettings settings)
        : settings_(std::move(settings)), log_(core::logger("drivers")) {}

    std::string_view name() const override { return "helm"; }

    asio::awaitable<void> start(asio::any_io_executor executor,
                                std::vector<core::NodeSpec> nodes) override {
        // Releases live in the cluster: there is nothing to start here.
        (void)executor;
        (void)nodes;
        co_return;
    }

    asio::awaitable<core::Result<std::string>> run(const OpRequest& request,
                                                   Context& context) override;
    asio::awaitable<core::Result<NodeStatus>> status(const core::NodeSpec& node) override;
    asio::awaitable<void> stop() override { co_return; }

private:
    /// Runs one command to completion, ended after `timeout` or (with a context) when the step
    /// stops. Errors only when it could not be started.
    asio::awaitable<core::Result<Ran>> execute(const HelmCommand& command,
                                               core::Millis timeout,
                                               Context* context,
                                               bool json_output);
    /// execute() then classify_helm_outcome().
    asio::awaitable<core::Result<std::string>> perform(const HelmCommand& command,
                                                       const HelmTarget& target,
                                                       std::string release,
                                                       Context& context);
    asio::awaitable<core::Result<std::string>> report_status(const core::NodeSpec& node,
                                                             Context& context);
    core::Error spawn_error(const HelmCommand& command, const core::Error& error) const;
    /// execute() for a step: through Context::run.
    asio::awaitable<core::Result<Ran>> execute_in_step(const HelmCommand& command,
                                                       core::Millis timeout,
                                                       Context& context,
                                                       bool json_output,
                                                       proc::SpawnOptions options);

    HelmSettings settings_;
    std::shared_ptr<spdlog::logger> log_;
};

core::Error HelmDriver::spawn_error(const HelmCommand& command, const core::Error& error) const {
    const std::string& program = command.argv.front();
    const std::string word = command.what.substr(0, command.what.find(' '));
    if (error.code == core::ErrorCode::kNotFound) {
        if (program.find('/') == std::string::npos) {
            return core::Error{
                core::ErrorCode::kUnavailable,
                fmt::format("{} not found on PATH ({}: \"{}\")", word, command.setting, program)};
        }
        return core::Error{core::ErrorCode::kUnavailable,
                           fmt::format("{} not found at {} ({})", word, program, command.setting)};
    }
    return core::Error{error.code,
                       fmt::format("cannot run {} ({}): {}", word, command.setting, error.message)};
}

asio::awaitable<core::Result<Ran>> HelmDriver::execute(const HelmCommand& command,
                                                       core::Millis timeout,
                                                       Context* context,
                                                       bool json_output) {
    proc::SpawnOptions options{.argv = command.argv, .env_add = command.env_add};
    if (context != nullptr) {
        // A step's command runs through the job engine: its group is recorded on the job (a
        // crash's leftover is killed at the next start) and its lines become job output (but
        // `helm status`'s JSON, which the driver reads whole).
        auto out =
            co_await execute_in_step(command, timeout, *context, json_output, std::move(options));
        co_return out;
    }
    // Outside a step (a node's status): the same spawn, timeout and kill, with no job to
    // write to.
    auto sink = std::make_shared<Sink>();
    sink->keep_stdout = json_output;
    log_->debug("helm command started command=\"{}\"", core::redact(shell_words(command.argv)));
    proc::RunSpec spec{.on_line = [sink](const proc::Line& line) { sink->take(line); },
                       .max_stdout_line = json_output ? kStatusJsonMax : proc::kMaxLineBytes,
                       .timeout = timeout,
                       .kill_grace = kKillGrace};
    auto executor = co_await asio::this_coro::executor;
    auto ran_out = co_await proc::run(executor, std::move(options), std::move(spec));
    if (!ran_out) {
        co_return spawn_error(command, ran_out.error());
    }
    Ran ran;
    ran.outcome.status = ran_out->status;
    ran.outcome.timed_out = ran_out->timed_out;
    ran.outcome.tail = std::move(sink->tail);
    ran.stdout_text = std::move(sink->stdout_text);
    ran.stdout_cut = sink->stdout_cut;
    co_return ran;
}

asio::awaitable<core::Result<Ran>> HelmDriver::execute_in_step(const HelmCommand& command,
                                                               core::Millis timeout,
                                                               Context& context,
                                                               bool json_output,
                                                               proc::SpawnOptions options) {
    auto sink = std::make_shared<Sink>();  // no context: Context::run writes the job output
    sink->keep_stdout = json_output;
    RunOptions run_options{.on_line = [sink](const proc::Line& line) { sink->take(line); },
                           .timeout = timeout,
                           .stdout_to_output = !json_output,
                           .max_stdout_line = json_output ? kStatusJsonMax : proc::kMaxLineBytes};
    context.note(fmt::format("running {}", shell_words(command.argv)));
    auto status = co_await context.run(std::move(options), std::move(run_options));
    Ran ran;
    if (status) {
        ran.outcome.status = *status;
        ran.outcome.stopped = context.stopping();
    } else if (status.error().code == core::ErrorCode::kTimeout) {
        ran.outcome.timed_out = true;
    } else if (context.stopping()) {
        ran.outcome.stopped = true;
    } else {
        co_return spawn_error(command, status.error());
    }
    ran.outcome.tail = std::move(sink->tail);
    ran.stdout_text = std::move(sink->stdout_text);
    ran.stdout_cut = sink->stdout_cut;
    co_return ran;
}

asio::awaitable<core::Result<std::string>> HelmDriver::perform(const HelmCommand& command,
                                                               const HelmTarget& target,
                                                               std::string release,
                                                               Context& context) {
    auto ran = co_await execute(command, target.timeout, &context, false);
    if (!ran) {
        co_return ran.error();
    }
    auto verdict = classify_helm_outcome(command, ran->outcome, release, target.namespace_name,
                                         target.timeout);
    if (!verdict) {
        co_return verdict.error();
    }
    co_return std::string{};
}

asio::awaitable<core::Result<std::string>> HelmDriver::run(const OpRequest& request,
                                                           Context& context) {
    const std::string release = request.node.name;
    if (!core::is_dns_label(release)) {
        co_return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("helm release name \"{}\" is not a DNS label (the node's name)", release)};
    }
    const HelmTarget& target = helm_target(settings_, request.node);
    std::string tag = request.image_tag.empty() ? request.node.image_tag : request.image_tag;
    if (is_sidecar_op(request.op)) {
        co_return not_a_sidecar(name(), request);
    }
    boost::json::object result{{"release", release}, {"namespace", target.namespace_name}};
    switch (request.op) {
        case Op::kRestart:
            co_return core::Error{
                core::ErrorCode::kInvalidArgument,
                fmt::format("the helm driver cannot restart {}: helm has no restart. Run upgrade "
                            "to change the release, or delete its pods to have them recreated: "
                            "kubectl --namespace {} delete pod -l release={}",
                            release, target.namespace_name, release)};
        case Op::kStatus:
            co_return co_await report_status(request.node, context);
        case Op::kInstall:
        case Op::kUpgrade:
            if (tag.empty()) {
                co_return core::Error{
                    core::ErrorCode::kInvalidArgument,
                    fmt::format("helm {} of {} needs an image tag: the step's image_tag or the "
                                "node's image_tag",
                                to_string(request.op), release)};
            }
            result["installed"] = true;
            result["version"] = tag;
            break;
        case Op::kUninstall:
            result["installed"] = false;
            break;
        case Op::kWipeData:
            result["data_deleted"] = true;
            break;
        case Op::kMaintenance:
        case Op::kResume:
        case Op::kReload:
        case Op::kBackup:
        case Op::kRestore:
        case Op::kPauseProduction:
        case Op::kResumeProduction:
            break;  // refused above
    }
    for (const auto& command : helm_commands(settings_, target, request.op, release, tag)) {
        auto done = co_await perform(command, target, release, context);
        if (!done) {
            co_return done.error();
        }
    }
    co_return boost::json::serialize(result);
}

asio::awaitable<core::Result<std::string>> HelmDriver::report_status(const core::NodeSpec& node,
                                                                     Context& context) {
    const HelmTarget& target = helm_target(settings_, node);
    auto command = helm_status_command(settings_, target, node.name);
    auto ran = co_await execute(command, target.timeout, &context, true);
    if (!ran) {
        co_return ran.error();
    }
    auto verdict = classify_helm_outcome(command, ran->outcome, node.name, target.namespace_name,
                                         target.timeout);
    if (!verdict) {
        if (verdict.error().code == core::ErrorCode::kNotFound) {
            context.note(fmt::format("{} is not installed in namespace {}", node.name,
                                     target.namespace_name));
            co_return render_status(helm_not_installed(), "");
        }
        co_return verdict.error();
    }
    if (ran->stdout_cut) {
        co_return status_too_long(node.name);
    }
    auto parsed = parse_helm_status(ran->stdout_text, node.name);
    if (!parsed) {
        co_return parsed.error();
    }
    const std::string helm_status = release_state(ran->stdout_text);
    context.note(
        fmt::format("{} is {} at {}", node.name, helm_status.empty() ? "installed" : helm_status,
                    parsed->version.empty() ? "the chart's default tag" : parsed->version));
    co_return render_status(*parsed, helm_status);
}

asio::awaitable<core::Result<NodeStatus>> HelmDriver::status(const core::NodeSpec& node) {
    if (!core::is_dns_label(node.name)) {
        co_return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("helm release name \"{}\" is not a DNS label (the node's name)",
                        node.name)};
    }
    const HelmTarget& target = helm_target(settings_, node);
    auto command = helm_status_command(settings_, target, node.name);
    auto ran = co_await execute(command, settings_.status_timeout, nullptr, true);
    if (!ran) {
        co_return ran.error();
    }
    auto verdict = classify_helm_outcome(command, ran->outcome, node.name, target.namespace_name,
                                         settings_.status_timeout);
    if (!verdict) {
        if (verdict.error().code == core::ErrorCode::kNotFound) {
            co_return helm_not_installed();
        }
        if (ran->outcome.timed_out) {
            co_return core::Error{
                core::ErrorCode::kTimeout,
                fmt::format("helm status of {} did not finish within {} "
                            "(drivers.helm.status_timeout)",
                            node.name, core::format_duration(settings_.status_timeout))};
        }
        co_return verdict.error();
    }
    if (ran->stdout_cut) {
        co_return status_too_long(node.name);
    }
    co_return parse_helm_status(ran->stdout_text, node.name);
}

}  // namespace

std::unique_ptr<Driver> make_helm_driver(HelmSettings settings) {
    return std::make_unique<HelmDriver>(std::move(settings));
}

}  // namespace aviary::drivers
