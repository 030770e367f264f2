// Actions as data: names of the enums, validation of an action's definition and of a job's
// params, and the {{...}} templates of steps.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <utility>

#include "jobs/http_step.hpp"
#include "jobs/jobs.hpp"

namespace aviary::jobs {
namespace {

template <class E, std::size_t N>
std::string_view name_of(const std::array<std::pair<E, std::string_view>, N>& names, E value) {
    for (const auto& [candidate, name] : names) {
        if (candidate == value) {
            return name;
        }
    }
    return names.front().second;
}

template <class E, std::size_t N>
std::optional<E> value_of(const std::array<std::pair<E, std::string_view>, N>& names,
                          std::string_view text) {
    for (const auto& [value, name] : names) {
        if (name == text) {
            return value;
        }
    }
    return std::nullopt;
}

constexpr std::array<std::pair<ParamType, std::string_view>, 5> kParamTypes{{
    {ParamType::kString, "string"},
    {ParamType::kDnsLabel, "dns_label"},
    {ParamType::kImageTag, "image_tag"},
    {ParamType::kInteger, "integer"},
    {ParamType::kBoolean, "boolean"},
}};

constexpr std::array<std::pair<RebootMethod, std::string_view>, 3> kRebootMethods{{
    {RebootMethod::kSsh, "ssh"},
    {RebootMethod::kIpmi, "ipmi"},
    {RebootMethod::kPdu, "pdu"},
}};

constexpr std::array<std::pair<StepKind, std::string_view>, 10> kStepKinds{{
    {StepKind::kDriver, "driver"},
    {StepKind::kRun, "run"},
    {StepKind::kWait, "wait"},
    {StepKind::kHttp, "http"},
    {StepKind::kNoop, "noop"},
    {StepKind::kSsh, "ssh"},
    {StepKind::kLease, "lease"},
    {StepKind::kReboot, "reboot"},
    {StepKind::kConnect, "connect"},
    {StepKind::kSwitchProducer, "switch_producer"},
}};

constexpr std::array<std::pair<HttpCheckKind, std::string_view>, 3> kHttpCheckKinds{{
    {HttpCheckKind::kJsonEquals, "json_equals"},
    {HttpCheckKind::kJsonExists, "json_exists"},
    {HttpCheckKind::kTextContains, "text_contains"},
}};

constexpr std::array<std::pair<WaitCondition, std::string_view>, 3> kConditions{{
    {WaitCondition::kRunning, "running"},
    {WaitCondition::kSynced, "synced"},
    {WaitCondition::kHeightAdvancing, "height-advancing"},
}};

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

bool is_param_name(std::string_view name) {
    if (name.empty() || name.size() > 64 || name.front() < 'a' || name.front() > 'z') {
        return false;
    }
    for (char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

bool is_image_tag(std::string_view tag) {
    if (tag.empty() || tag.size() > 128) {
        return false;
    }
    auto word = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_';
    };
    if (!word(tag.front())) {
        return false;
    }
    for (char c : tag) {
        if (!word(c) && c != '.' && c != '-') {
            return false;
        }
    }
    return true;
}

/// `pattern` compiled, once per distinct pattern for the life of the process: validate_action
/// compiles each at config load, and validate_params only looks it up. Patterns come from the
/// config, so the cache holds a handful. The regex is const: matching from many threads at
/// once is safe.
core::Result<std::shared_ptr<const std::regex>> compiled(const std::string& pattern) {
    static std::mutex mu;
    static std::map<std::string, std::shared_ptr<const std::regex>, std::less<>> cache;
    std::lock_guard lock{mu};
    if (auto it = cache.find(pattern); it != cache.end()) {
        return it->second;
    }
    try {
        auto regex = std::make_shared<const std::regex>(pattern, std::regex::ECMAScript);
        cache.emplace(pattern, regex);
        return regex;
    } catch (const std::regex_error& error) {
        return invalid(fmt::format("not a regex: {}", error.what()));
    }
}

/// Why `value` breaks the rules every type shares, or empty. Checked before the type's own
/// rules, so no pattern ever runs on a value longer than max_length (libstdc++'s matcher
/// recurses per character and would overflow the stack on a long one).
std::string shape_problem(const ParamSpec& spec, const std::string& value) {
    if (value.size() > spec.max_length) {
        return fmt::format("is longer than {} bytes (max_length)", spec.max_length);
    }
    if (value.starts_with('-') && !spec.allow_leading_dash) {
        return "must not start with '-' (a run step could take it as an option; set "
               "allow_leading_dash: true on the param to allow it)";
    }
    return {};
}

/// Why `value` is not a valid `spec`, or empty when it is.
std::string type_problem(const ParamSpec& spec, const std::string& value) {
    if (auto problem = shape_problem(spec, value); !problem.empty()) {
        return problem;
    }
    switch (spec.type) {
        case ParamType::kDnsLabel:
            if (!core::is_dns_label(value)) {
                return "must be a DNS-1123 label (1-63 of a-z, 0-9 and '-', starting and ending "
                       "with a letter or digit)";
            }
            return {};
        case ParamType::kImageTag:
            if (!is_image_tag(value)) {
                return "must be an image tag (1-128 of A-Z, a-z, 0-9, '_', '.' and '-', not "
                       "starting with '.' or '-')";
            }
            return {};
        case ParamType::kInteger: {
            long long parsed = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), parsed);
            if (ec != std::errc{} || end != value.data() + value.size() || value.empty()) {
                return "must be an integer";
            }
            return {};
        }
        case ParamType::kBoolean:
            if (value != "true" && value != "false") {
                return "must be true or false";
            }
            return {};
        case ParamType::kString:
            if (value.find('\0') != std::string::npos) {
                return "must not hold a NUL byte";
            }
            if (!spec.pattern.empty()) {
                auto regex = compiled(spec.pattern);
                if (!regex) {
                    return fmt::format("has an invalid pattern {}", spec.pattern);
                }
                if (!std::regex_match(value, **regex)) {
                    return fmt::format("must match {}", spec.pattern);
                }
            }
            return {};
    }
    return {};
}

/// True for the names kFromPlaceholders lists.
bool machine_field(std::string_view name) {
    static constexpr std::array<std::string_view, 10> kNames = {
        "tc_worker_id",     "machine.name",      "machine.hostname",     "machine.address",
        "machine.ssh_user", "machine.ssh_port",  "machine.ipmi_address", "machine.ipmi_user",
        "machine.pdu_host", "machine.pdu_outlet"};
    return std::find(kNames.begin(), kNames.end(), name) != kNames.end();
}

/// The value of placeholder `name` (machine_field) for `worker_id` on `node`.
std::string machine_value(std::string_view name,
                          std::string_view worker_id,
                          const core::NodeSpec& node) {
    static const core::MachineSpec kNone;
    const auto& m = node.machine ? *node.machine : kNone;
    if (name == "tc_worker_id") {
        return std::string{worker_id};
    }
    if (name == "machine.name") {
        return node.name;
    }
    if (name == "machine.hostname") {
        return m.hostname;
    }
    if (name == "machine.address") {
        return m.reach();
    }
    if (name == "machine.ssh_user") {
        return m.ssh_user;
    }
    if (name == "machine.ssh_port") {
        return std::to_string(m.ssh_port);
    }
    if (name == "machine.ipmi_address") {
        return m.ipmi_address;
    }
    if (name == "machine.ipmi_user") {
        return m.ipmi_user;
    }
    if (name == "machine.pdu_host") {
        return m.pdu_host;
    }
    if (name == "machine.pdu_outlet") {
        return m.pdu_outlet == 0 ? std::string{} : std::to_string(m.pdu_outlet);
    }
    return {};
}

/// Calls `on_placeholder(name)` for every {{name}} in `text`; returns false on an unclosed one.
template <class F>
bool for_each_placeholder(std::string_view text, F on_placeholder) {
    std::size_t pos = 0;
    while ((pos = text.find("{{", pos)) != std::string_view::npos) {
        auto close = text.find("}}", pos + 2);
        if (close == std::string_view::npos) {
            return false;
        }
        std::string_view name = text.substr(pos + 2, close - pos - 2);
        while (!name.empty() && name.front() == ' ') {
            name.remove_prefix(1);
        }
        while (!name.empty() && name.back() == ' ') {
            name.remove_suffix(1);
        }
        on_placeholder(name);
        pos = close + 2;
    }
    return true;
}

/// Why `text`'s placeholders do not fit `action`, or empty.
std::string template_problem(std::string_view text, const ActionSpec& action) {
    std::string problem;
    bool closed = for_each_placeholder(text, [&](std::string_view name) {
        if (!problem.empty() || name == "node" || name == "job.id") {
            return;
        }
        if (name.starts_with("params.")) {
            auto param = name.substr(7);
            for (const auto& spec : action.params) {
                if (spec.name == param) {
                    return;
                }
            }
            problem = fmt::format("unknown param \"{}\"", param);
            return;
        }
        problem =
            fmt::format("unknown placeholder {{{{{}}}}} (use node, job.id or params.NAME)", name);
    });
    if (!closed) {
        return "unclosed {{";
    }
    return problem;
}

/// Why a param's `from` template does not hold, or empty.
std::string from_problem(std::string_view text) {
    std::string problem;
    bool closed = for_each_placeholder(text, [&](std::string_view name) {
        if (problem.empty() && !machine_field(name)) {
            problem =
                fmt::format("unknown placeholder {{{{{}}}}} (use {})", name, kFromPlaceholders);
        }
    });
    return closed ? problem : "unclosed {{";
}

/// `text` with every {{...}} removed (what is written around the placeholders).
std::string without_placeholders(std::string_view text) {
    std::string out;
    std::size_t pos = 0;
    while (true) {
        auto open = text.find("{{", pos);
        auto close = open == std::string_view::npos ? open : text.find("}}", open + 2);
        if (close == std::string_view::npos) {
            out.append(text.substr(pos));
            return out;
        }
        out.append(text.substr(pos, open - pos));
        pos = close + 2;
    }
}

/// Why an http step's spec does not hold, as {where under the step, what}; empty when it holds.
std::pair<std::string, std::string> http_problem(const HttpStepSpec& http,
                                                 const ActionSpec& action) {
    if (auto problem = method_problem(http.method); !problem.empty()) {
        return {"method", problem};
    }
    if (auto problem = template_problem(http.url, action); !problem.empty()) {
        return {"url", problem};
    }
    if (http.url.empty()) {
        return {"url", "an http step needs a url"};
    }
    std::size_t scheme = http.url.starts_with("http://")    ? 7
                         : http.url.starts_with("https://") ? 8
                                                            : 0;
    if (scheme == 0) {
        return {"url", fmt::format("\"{}\" must start with http:// or https://", http.url)};
    }
    if (http.url.size() == scheme || http.url[scheme] == '/' || http.url[scheme] == '?' ||
        http.url[scheme] == '#') {
        return {"url", fmt::format("\"{}\" has no host", http.url)};
    }
    if (without_placeholders(http.url).find_first_of(" \t\r\n") != std::string::npos) {
        return {"url",
                "must not hold spaces or line breaks (write them as %20 and so on; "
                "placeholder values are encoded for you)"};
    }
    for (const auto& [name, value] : http.headers) {
        auto where = fmt::format("headers.{}", name);
        if (!is_http_token(name)) {
            return {where, "is not a header name (letters, digits and !#$%&'*+-.^_`|~)"};
        }
        if (value.find_first_of("\r\n") != std::string::npos) {
            return {where, "a header value must be one line"};
        }
        if (auto problem = template_problem(value, action); !problem.empty()) {
            return {where, problem};
        }
    }
    if (auto problem = template_problem(http.body, action); !problem.empty()) {
        return {"body", problem};
    }
    for (std::size_t s = 0; s < http.expect_status.size(); ++s) {
        if (http.expect_status[s] < 100 || http.expect_status[s] > 599) {
            return {fmt::format("expect_status[{}]", s),
                    fmt::format("{} is not an HTTP status (100-599)", http.expect_status[s])};
        }
    }
    for (std::size_t c = 0; c < http.checks.size(); ++c) {
        const auto& check = http.checks[c];
        auto where = fmt::format("expect[{}].{}", c, to_string(check.kind));
        if (check.kind != HttpCheckKind::kTextContains) {
            if (auto path = parse_json_path(check.path); !path) {
                return {where, path.error().message};
            }
        } else if (check.value.empty()) {
            return {where, "needs the text to look for"};
        }
        if (auto problem = template_problem(check.value, action); !problem.empty()) {
            return {where, problem};
        }
    }
    if (http.retries < 0 || http.retries > 100) {
        return {"retries", "must be 0..100"};
    }
    if (http.request_timeout <= core::Millis{0}) {
        return {"request_timeout", "must be positive"};
    }
    if (http.retry_interval <= core::Millis{0}) {
        return {"retry_interval", "must be positive"};
    }
    return {};
}

/// Why a reboot step's spec does not hold, as {where under the step, what}; empty when it holds.
std::pair<std::string, std::string> reboot_problem(const RebootStepSpec& reboot,
                                                   const ActionSpec& action) {
    if (reboot.methods.empty()) {
        return {".methods", "needs at least one of ssh, ipmi, pdu"};
    }
    for (std::size_t i = 0; i < reboot.methods.size(); ++i) {
        for (std::size_t j = 0; j < i; ++j) {
            if (reboot.methods[j] == reboot.methods[i]) {
                return {fmt::format(".methods[{}]", i),
                        fmt::format("{} is listed twice", to_string(reboot.methods[i]))};
            }
        }
    }
    for (const auto& [key, words] : {std::pair{"ssh_command", &reboot.ssh_command},
                                     std::pair{"ipmi_command", &reboot.ipmi_command}}) {
        if (words->empty() || words->front().empty()) {
            return {fmt::format(".{}", key), "needs a command (an argv list)"};
        }
        for (std::size_t i = 0; i < words->size(); ++i) {
            if (auto problem = template_problem((*words)[i], action); !problem.empty()) {
                return {fmt::format(".{}[{}]", key, i), problem};
            }
        }
    }
    if (reboot.verify_port < 0 || reboot.verify_port > 65535) {
        return {".verify.port", "must be 0 (the machine's ssh_port) or 1..65535"};
    }
    for (const auto& [key, value] : {std::pair{".pdu_off_time", reboot.pdu_off_time},
                                     std::pair{".verify.down_within", reboot.down_within},
                                     std::pair{".verify.up_within", reboot.up_within},
                                     std::pair{".verify.interval", reboot.interval},
                                     std::pair{".verify.probe_timeout", reboot.probe_timeout}}) {
        if (value <= core::Millis{0}) {
            return {key, "must be positive"};
        }
    }
    return {};
}

/// "host:port" (or "[v6]:port", or a bare host) split, brackets off; `port` 0 when absent.
std::pair<std::string, int> split_address(std::string_view address) {
    if (auto split = net::split_host_port(address)) {
        return {std::move(split->first), split->second};
    }
    // No port: a bare host, or a bare IPv6 literal with or without its brackets.
    if (address.size() > 2 && address.front() == '[' && address.back() == ']') {
        address = address.substr(1, address.size() - 2);
    }
    return {std::string{address}, 0};
}

}  // namespace

std::string_view to_string(RebootMethod method) {
    return name_of(kRebootMethods, method);
}
std::optional<RebootMethod> parse_reboot_method(std::string_view text) {
    return value_of(kRebootMethods, text);
}

std::vector<std::string> ipmi_argv(const IpmiSettings& ipmi,
                                   const core::NodeSpec& machine,
                                   const std::vector<std::string>& command) {
    if (!machine.machine || machine.machine->ipmi_address.empty()) {
        return {};
    }
    const auto& m = *machine.machine;
    auto [host, port] = split_address(m.ipmi_address);
    std::vector<std::string> argv{ipmi.program, "-I", "lanplus", "-H", host};
    if (port != 0) {
        argv.insert(argv.end(), {"-p", std::to_string(port)});
    }
    if (!m.ipmi_user.empty()) {
        argv.insert(argv.end(), {"-U", m.ipmi_user});
    }
    argv.insert(argv.end(), {"-f", ipmi.password_file});
    if (ipmi.cipher_suite > 0) {
        argv.insert(argv.end(), {"-C", std::to_string(ipmi.cipher_suite)});
    }
    argv.insert(argv.end(),
                {"-R", std::to_string(ipmi.retries), "-N", std::to_string(ipmi.retry_seconds)});
    argv.insert(argv.end(), command.begin(), command.end());
    return argv;
}

std::vector<std::string> pdu_argv(const PduSettings& pdu,
                                  const core::NodeSpec& machine,
                                  int value) {
    if (!machine.machine || machine.machine->pdu_host.empty() || machine.machine->pdu_outlet < 1) {
        return {};
    }
    const auto& m = *machine.machine;
    auto [host, port] = split_address(m.pdu_host);
    // net-snmp's agent syntax: "udp6:[::1]:161" for IPv6, "HOST:PORT" otherwise.
    std::string agent = host.find(':') != std::string::npos ? fmt::format("udp6:[{}]", host) : host;
    if (port != 0) {
        agent += fmt::format(":{}", port);
    }
    auto seconds = std::chrono::duration<double>(pdu.timeout).count();
    return {pdu.program,
            "-t",
            fmt::format("{:g}", seconds),
            "-r",
            std::to_string(pdu.retries),
            agent,
            fmt::format("{}.{}", pdu.outlet_oid, m.pdu_outlet),
            "i",
            std::to_string(value)};
}

std::string_view to_string(ParamType type) {
    return name_of(kParamTypes, type);
}
std::optional<ParamType> parse_param_type(std::string_view text) {
    return value_of(kParamTypes, text);
}
std::string_view to_string(StepKind kind) {
    return name_of(kStepKinds, kind);
}
std::optional<StepKind> parse_step_kind(std::string_view text) {
    return value_of(kStepKinds, text);
}
std::string_view to_string(HttpCheckKind kind) {
    return name_of(kHttpCheckKinds, kind);
}
std::string_view to_string(WaitCondition condition) {
    return name_of(kConditions, condition);
}
std::optional<WaitCondition> parse_wait_condition(std::string_view text) {
    return value_of(kConditions, text);
}

core::Result<void> validate_action(const ActionSpec& action) {
    auto fail = [&](std::string where, std::string what) {
        return invalid(fmt::format("action \"{}\": {}: {}", action.name, where, what));
    };
    if (!core::is_dns_label(action.name)) {
        return invalid(
            fmt::format("action \"{}\": the name must be a DNS-1123 label", action.name));
    }
    if (!core::is_dns_label(action.queue)) {
        return fail("queue", "must be a DNS-1123 label");
    }
    if (action.steps.empty()) {
        return fail("steps", "an action needs at least one step");
    }
    if (action.max_attempts < 1 || action.max_attempts > 100) {
        return fail("max_attempts", "must be 1..100");
    }
    if (action.timeout <= core::Millis{0}) {
        return fail("timeout", "must be positive");
    }
    if (action.retry_backoff <= core::Millis{0} ||
        action.retry_backoff_max < action.retry_backoff) {
        return fail("retry_backoff", "must be positive and at most retry_backoff_max");
    }
    if (action.concurrency < 0) {
        return fail("concurrency", "must be 0 (no cap) or more");
    }
    std::set<std::string, std::less<>> names;
    for (std::size_t i = 0; i < action.params.size(); ++i) {
        const auto& param = action.params[i];
        auto where = fmt::format("params.{}", param.name);
        if (!is_param_name(param.name) || param.name == "node") {
            return fail(where, "a param name is [a-z][a-z0-9_]* and not \"node\"");
        }
        if (!names.insert(param.name).second) {
            return fail(where, "declared twice");
        }
        if (param.max_length < 1 || param.max_length > kParamMaxLengthLimit) {
            return fail(where + ".max_length", fmt::format("must be 1..{}", kParamMaxLengthLimit));
        }
        if (!param.pattern.empty()) {
            if (auto regex = compiled(param.pattern); !regex) {
                return fail(where + ".pattern", regex.error().message);
            }
        }
        if (!param.default_value.empty()) {
            if (auto problem = type_problem(param, param.default_value); !problem.empty()) {
                return fail(where + ".default", problem);
            }
        }
        if (!param.from.empty() && !action.is_public) {
            return fail(where + ".from", "only a public action's params come from a worker id");
        }
        if (auto problem = from_problem(param.from); !problem.empty()) {
            return fail(where + ".from", problem);
        }
        if (action.is_public && param.from.empty() && param.required &&
            param.default_value.empty()) {
            return fail(where,
                        "a public action's param needs `from` (a template over the worker id "
                        "and the machine) or a default: the roller endpoint passes no params");
        }
    }
    if (action.is_public && names.count("tc_worker_id") == 0) {
        return fail("params.tc_worker_id",
                    "a public action records the worker id it was called for in this param");
    }
    for (std::size_t i = 0; i < action.steps.size(); ++i) {
        const auto& step = action.steps[i];
        auto where = fmt::format("steps[{}]", i);
        if (step.timeout < core::Millis{0}) {
            return fail(where + ".timeout", "must not be negative");
        }
        switch (step.kind) {
            case StepKind::kRun:
                if (step.argv.empty() || step.argv.front().empty()) {
                    return fail(where + ".run", "needs a program (an argv list)");
                }
                for (std::size_t a = 0; a < step.argv.size(); ++a) {
                    if (auto problem = template_problem(step.argv[a], action); !problem.empty()) {
                        return fail(fmt::format("{}.run[{}]", where, a), problem);
                    }
                }
                for (const auto& [key, value] : step.env) {
                    if (auto problem = template_problem(value, action); !problem.empty()) {
                        return fail(fmt::format("{}.env.{}", where, key), problem);
                    }
                }
                break;
            case StepKind::kDriver:
                if (step.op == drivers::Op::kInstall || step.op == drivers::Op::kUpgrade) {
                    if (auto problem = template_problem(step.image_tag, action); !problem.empty()) {
                        return fail(where + ".image_tag", problem);
                    }
                }
                break;
            case StepKind::kWait:
                if (step.interval <= core::Millis{0}) {
                    return fail(where + ".interval", "must be positive");
                }
                break;
            case StepKind::kHttp:
                if (auto [at, problem] = http_problem(step.http, action); !problem.empty()) {
                    return fail(fmt::format("{}.http.{}", where, at), problem);
                }
                break;
            case StepKind::kSsh:
                if (step.argv.empty() || step.argv.front().empty()) {
                    return fail(where + ".ssh", "needs the remote command (an argv list)");
                }
                for (std::size_t a = 0; a < step.argv.size(); ++a) {
                    if (auto problem = template_problem(step.argv[a], action); !problem.empty()) {
                        return fail(fmt::format("{}.ssh[{}]", where, a), problem);
                    }
                }
                break;
            case StepKind::kLease:
                for (const auto& [key, text] :
                     {std::pair{"owner", &step.lease.owner}, std::pair{"ttl", &step.lease.ttl},
                      std::pair{"reason", &step.lease.reason}}) {
                    if (auto problem = template_problem(*text, action); !problem.empty()) {
                        return fail(fmt::format("{}.lease.{}", where, key), problem);
                    }
                }
                if (step.lease.acquire && step.lease.owner.empty()) {
                    return fail(where + ".lease.owner", "an acquire needs the owner it loans to");
                }
                if (!step.lease.acquire &&
                    (!step.lease.ttl.empty() || !step.lease.reason.empty())) {
                    return fail(where + ".lease", "a release takes only an owner");
                }
                break;
            case StepKind::kConnect:
                if (step.connect.host.empty()) {
                    return fail(where + ".connect.host", "needs a host (e.g. \"{{params.host}}\")");
                }
                if (auto problem = template_problem(step.connect.host, action); !problem.empty()) {
                    return fail(where + ".connect.host", problem);
                }
                if (step.connect.port < 1 || step.connect.port > 65535) {
                    return fail(where + ".connect.port", "must be 1..65535");
                }
                if (step.connect.attempts < 1 || step.connect.attempts > 1000) {
                    return fail(where + ".connect.attempts", "must be 1..1000");
                }
                if (step.connect.interval <= core::Millis{0} ||
                    step.connect.timeout <= core::Millis{0}) {
                    return fail(where + ".connect", "interval and timeout must be positive");
                }
                break;
            case StepKind::kReboot:
                if (auto [at, problem] = reboot_problem(step.reboot, action); !problem.empty()) {
                    return fail(fmt::format("{}.reboot{}", where, at), problem);
                }
                break;
            case StepKind::kSwitchProducer:
                for (const auto& [key, text] :
                     {std::pair{"from", &step.switch_producer.from},
                      std::pair{"execute", &step.switch_producer.execute},
                      std::pair{"max_lag", &step.switch_producer.max_lag}}) {
                    if (auto problem = template_problem(*text, action); !problem.empty()) {
                        return fail(fmt::format("{}.switch_producer.{}", where, key), problem);
                    }
                }
                if (step.switch_producer.verify_timeout <= core::Millis{0}) {
                    return fail(where + ".switch_producer.verify_timeout", "must be positive");
                }
                break;
            case StepKind::kNoop:
                break;
        }
    }
    return {};
}

core::Result<core::Params> validate_params(const ActionSpec& action, const core::Params& given) {
    for (const auto& [name, value] : given) {
        bool known = false;
        for (const auto& spec : action.params) {
            known = known || spec.name == name;
        }
        if (!known) {
            std::string expected;
            for (const auto& spec : action.params) {
                expected += (expected.empty() ? "" : ", ") + spec.name;
            }
            return invalid(fmt::format("params.{}: action {} takes no such param (it takes: {})",
                                       name, action.name, expected.empty() ? "none" : expected));
        }
    }
    core::Params out;
    for (const auto& spec : action.params) {
        auto it = given.find(spec.name);
        if (it == given.end()) {
            if (spec.required) {
                return invalid(fmt::format("params.{}: required by action {} ({})", spec.name,
                                           action.name, to_string(spec.type)));
            }
            if (!spec.default_value.empty()) {
                out.emplace(spec.name, spec.default_value);
            }
            continue;
        }
        if (auto problem = type_problem(spec, it->second); !problem.empty()) {
            return invalid(fmt::format(
                "params.{}: {} {}", spec.name,
                it->second.size() > 80 ? it->second.substr(0, 80) + "..." : it->second, problem));
        }
        out.emplace(spec.name, it->second);
    }
    return out;
}

core::Result<std::string> render_template(std::string_view text, const core::Job& job) {
    std::string out;
    std::size_t pos = 0;
    while (true) {
        auto open = text.find("{{", pos);
        if (open == std::string_view::npos) {
            out.append(text.substr(pos));
            return out;
        }
        auto close = text.find("}}", open + 2);
        if (close == std::string_view::npos) {
            return invalid(fmt::format("unclosed {{{{ in \"{}\"", text));
        }
        out.append(text.substr(pos, open - pos));
        std::string_view name = text.substr(open + 2, close - open - 2);
        while (!name.empty() && name.front() == ' ') {
            name.remove_prefix(1);
        }
        while (!name.empty() && name.back() == ' ') {
            name.remove_suffix(1);
        }
        if (name == "node") {
            out += job.node;
        } else if (name == "job.id") {
            out += job.id;
        } else if (name.starts_with("params.") && job.params.count(name.substr(7)) > 0) {
            out += job.params.find(name.substr(7))->second;
        } else if (name.starts_with("params.")) {
            // An optional param without a default renders empty.
        } else {
            return invalid(fmt::format("unknown placeholder {{{{{}}}}}", name));
        }
        pos = close + 2;
    }
}

WorkerParams worker_params(const ActionSpec& action,
                           std::string_view worker_id,
                           const core::NodeSpec& machine) {
    WorkerParams out;
    for (const auto& spec : action.params) {
        std::string value;
        if (!spec.from.empty()) {
            std::size_t pos = 0;
            while (true) {
                auto open = spec.from.find("{{", pos);
                auto close = open == std::string::npos ? open : spec.from.find("}}", open + 2);
                if (close == std::string::npos) {
                    value.append(spec.from, pos);
                    break;
                }
                value.append(spec.from, pos, open - pos);
                std::string_view name{spec.from.data() + open + 2, close - open - 2};
                while (!name.empty() && name.front() == ' ') {
                    name.remove_prefix(1);
                }
                while (!name.empty() && name.back() == ' ') {
                    name.remove_suffix(1);
                }
                value += machine_value(name, worker_id, machine);
                pos = close + 2;
            }
        }
        if (value.empty()) {
            if (!spec.default_value.empty()) {
                out.params.emplace(spec.name, spec.default_value);
            } else if (spec.required) {
                out.errors.push_back(FieldError{
                    .field = spec.name,
                    .message = spec.from.empty() ? "This field is required."
                                                 : fmt::format("machine {} has nothing for {}",
                                                               machine.name, spec.from)});
            }
            continue;
        }
        if (auto problem = type_problem(spec, value); !problem.empty()) {
            out.errors.push_back(FieldError{
                .field = spec.name,
                .message = fmt::format(
                    "{} {}", value.size() > 80 ? value.substr(0, 80) + "..." : value, problem)});
            continue;
        }
        out.params.emplace(spec.name, std::move(value));
    }
    return out;
}

std::string shell_quote(std::string_view word) {
    static constexpr std::string_view kSafe =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-./:=@%+,";
    if (!word.empty() && word.find_first_not_of(kSafe) == std::string_view::npos) {
        return std::string{word};
    }
    std::string out = "'";
    for (char c : word) {
        out += c == '\'' ? std::string{"'\\''"} : std::string(1, c);
    }
    return out + "'";
}

std::vector<std::string> ssh_argv(const SshSettings& ssh,
                                  const core::NodeSpec& machine,
                                  const std::vector<std::string>& remote) {
    static const core::MachineSpec kNone;
    const auto& m = machine.machine ? *machine.machine : kNone;
    auto seconds = std::max<long long>(
        1, std::chrono::duration_cast<std::chrono::seconds>(ssh.connect_timeout).count());
    std::vector<std::string> argv{ssh.program,
                                  "-o",
                                  "BatchMode=yes",
                                  "-o",
                                  fmt::format("ConnectTimeout={}", seconds),
                                  "-o",
                                  "StrictHostKeyChecking=yes",
                                  "-o",
                                  "LogLevel=ERROR"};
    if (!ssh.known_hosts.empty()) {
        argv.insert(argv.end(), {"-o", fmt::format("UserKnownHostsFile={}", ssh.known_hosts), "-o",
                                 "GlobalKnownHostsFile=/dev/null"});
    }
    if (!ssh.identity_file.empty()) {
        argv.insert(argv.end(), {"-o", "IdentitiesOnly=yes", "-i", ssh.identity_file});
    }
    argv.insert(argv.end(), {"-p", std::to_string(m.ssh_port), "-l", m.ssh_user, "--"});
    // ssh takes a bare host: "[::1]" is written for URLs, not for it.
    std::string host = m.reach();
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    argv.push_back(std::move(host));
    // The remote side runs its login shell on the joined words: quote each so it arrives as
    // the argv written here.
    std::string command;
    for (const auto& word : remote) {
        command += (command.empty() ? "" : " ") + shell_quote(word);
    }
    argv.push_back(std::move(command));
    return argv;
}

}  // namespace aviary::jobs
