// One action of `jobs.actions`: its settings, params and steps (driver, run, wait, http, noop).
#include "config/action_reader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace aviary::config {
namespace {

constexpr std::string_view kStepKinds =
    "driver, run, wait, http, ssh, lease, reboot, connect, noop";
constexpr std::string_view kOps =
    "install, upgrade, uninstall, wipe-data, restart, status, maintenance, resume, reload, "
    "backup, restore, pause-production, resume-production";
constexpr std::string_view kConditions = "running, synced, height-advancing";
constexpr std::string_view kParamTypes = "string, dns_label, image_tag, integer, boolean";

/// Reads a name into an enum with `parse`; `unknown NOUN "x" (LISTED)` otherwise.
template <class E, class Parse>
bool read_enum(YamlReader& r,
               const Value& value,
               E& out,
               Parse parse,
               std::string_view noun,
               std::string_view listed) {
    std::string text;
    if (!r.read_string(value, text)) {
        return false;
    }
    auto parsed = parse(text);
    if (!parsed) {
        r.error(value, fmt::format("unknown {} \"{}\" ({})", noun, text, listed));
        return false;
    }
    out = *parsed;
    return true;
}

bool is_env_name(std::string_view name) {
    auto letter = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    };
    if (name.empty() || !letter(name.front())) {
        return false;
    }
    return std::all_of(name.begin(), name.end(),
                       [&](char c) { return letter(c) || (c >= '0' && c <= '9'); });
}

// --- params -----------------------------------------------------------------------------------

void read_param(YamlReader& r,
                const Value& key,
                const Value& value,
                std::vector<jobs::ParamSpec>& params) {
    jobs::ParamSpec spec;
    spec.name = key.node.Scalar();
    std::optional<Value> pattern_at;
    bool type_ok = true;
    r.read_map(
        value,
        {
            {"type",
             [&](const Value& v) {
                 type_ok =
                     read_enum(r, v, spec.type, jobs::parse_param_type, "param type", kParamTypes);
             }},
            {"required", [&](const Value& v) { r.read_bool(v, spec.required); }},
            {"default", [&](const Value& v) { r.read_string(v, spec.default_value); }},
            {"pattern",
             [&](const Value& v) {
                 if (r.read_string(v, spec.pattern)) {
                     pattern_at = v;
                 }
             }},
            {"description", [&](const Value& v) { r.read_string(v, spec.description); }},
            {"max_length",
             [&](const Value& v) {
                 int max_length = 0;
                 if (r.read_int(v, max_length, 1, static_cast<int>(jobs::kParamMaxLengthLimit))) {
                     spec.max_length = static_cast<std::size_t>(max_length);
                 }
             }},
            {"allow_leading_dash",
             [&](const Value& v) { r.read_bool(v, spec.allow_leading_dash); }},
            {"from", [&](const Value& v) { r.read_string(v, spec.from); }},
        });
    // The other types have fixed rules; a pattern beside them would be silently ignored.
    if (type_ok && pattern_at && !spec.pattern.empty() && spec.type != jobs::ParamType::kString) {
        r.error(*pattern_at, fmt::format("a pattern applies to string params only, not {}",
                                         jobs::to_string(spec.type)));
    }
    params.push_back(std::move(spec));
}

// --- steps ------------------------------------------------------------------------------------

/// The one key a step of `kind` may have besides its kind key, `name` and `timeout`.
std::string_view extra_key(jobs::StepKind kind) {
    switch (kind) {
        case jobs::StepKind::kDriver:
            return "image_tag";
        case jobs::StepKind::kRun:
            return "env";
        case jobs::StepKind::kWait:
            return "interval";
        case jobs::StepKind::kHttp:  // every key is under `http:` (`lease:`)
        case jobs::StepKind::kLease:
        case jobs::StepKind::kSsh:
        case jobs::StepKind::kReboot:
        case jobs::StepKind::kConnect:
        case jobs::StepKind::kSwitchProducer:
        case jobs::StepKind::kNoop:
            return {};
    }
    return {};
}

constexpr jobs::StepKind kAllKinds[] = {
    jobs::StepKind::kDriver, jobs::StepKind::kRun,     jobs::StepKind::kWait,
    jobs::StepKind::kHttp,   jobs::StepKind::kSsh,     jobs::StepKind::kLease,
    jobs::StepKind::kReboot, jobs::StepKind::kConnect, jobs::StepKind::kSwitchProducer,
    jobs::StepKind::kNoop};

/// Any key a step may have besides a kind key.
bool is_step_key(std::string_view key) {
    if (key == "name" || key == "timeout") {
        return true;
    }
    return std::any_of(std::begin(kAllKinds), std::end(kAllKinds),
                       [&](jobs::StepKind kind) { return extra_key(kind) == key; });
}

std::string default_step_name(const jobs::StepSpec& step) {
    switch (step.kind) {
        case jobs::StepKind::kDriver:
            return fmt::format("driver {}", drivers::to_string(step.op));
        case jobs::StepKind::kWait:
            return fmt::format("wait {}", jobs::to_string(step.condition));
        case jobs::StepKind::kRun:
            return step.argv.empty() ? std::string{"run"} : fmt::format("run {}", step.argv[0]);
        case jobs::StepKind::kHttp:
            return fmt::format("http {} {}", step.http.method, step.http.url);
        case jobs::StepKind::kSsh:
            return step.argv.empty() ? std::string{"ssh"} : fmt::format("ssh {}", step.argv[0]);
        case jobs::StepKind::kLease:
            return step.lease.acquire ? "lease acquire" : "lease release";
        case jobs::StepKind::kReboot:
            return "reboot";
        case jobs::StepKind::kConnect:
            return fmt::format("connect {}:{}", step.connect.host, step.connect.port);
        case jobs::StepKind::kSwitchProducer:
            return "switch producer";
        case jobs::StepKind::kNoop:
            return "noop";
    }
    return "step";
}

/// A step as read, before the action it belongs to is complete.
struct StepReading {
    jobs::StepSpec step;
    bool image_tag_given = false;
};

void read_argv(YamlReader& r, const Value& value, std::vector<std::string>& argv) {
    if (value.is_null() || !value.node.IsSequence()) {
        // A string would have to be split, and splitting is a shell's job: never here.
        r.error(value, fmt::format("expected a list like [echo, \"{{{{node}}}}\"] (a program and "
                                   "its arguments, never a shell command line), got {}",
                                   shown(value)));
        return;
    }
    if (value.node.size() == 0) {
        r.error(value, "needs at least the program: [PROGRAM, ARG...]");
        return;
    }
    r.read_list(value, [&](const Value& item) {
        std::string arg;
        if (r.read_string(item, arg)) {
            argv.push_back(std::move(arg));
        }
    });
}

void read_env(YamlReader& r,
              const Value& value,
              std::vector<std::pair<std::string, std::string>>& env) {
    r.read_entries(value, [&](const Value& key, const Value& item) {
        const std::string& name = key.node.Scalar();
        if (!is_env_name(name)) {
            r.error(key, fmt::format("\"{}\" is not an environment variable name "
                                     "([A-Za-z_][A-Za-z0-9_]*)",
                                     name));
            return;
        }
        std::string text;
        if (r.read_string(item, text)) {
            env.emplace_back(name, std::move(text));
        }
    });
}

// --- http steps -------------------------------------------------------------------------------

constexpr std::string_view kTokenSymbols = "!#$%&'*+-.^_`|~";

bool is_token_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           kTokenSymbols.find(c) != std::string_view::npos;
}

bool is_method(std::string_view method) {
    return !method.empty() && method.size() <= 32 &&
           std::all_of(method.begin(), method.end(),
                       [](char c) { return is_token_char(c) && !(c >= 'a' && c <= 'z'); });
}

void read_method(YamlReader& r, const Value& value, std::string& method) {
    std::string text;
    if (!r.read_string(value, text)) {
        return;
    }
    if (!is_method(text)) {
        r.error(value, fmt::format("\"{}\" is not an HTTP method (GET, POST, PUT, PATCH, DELETE, "
                                   "HEAD, OPTIONS or another upper-case token)",
                                   text));
        return;
    }
    method = std::move(text);
}

void read_url(YamlReader& r, const Value& value, std::string& url) {
    std::string text;
    if (!r.read_string(value, text)) {
        return;
    }
    if (!text.starts_with("http://") && !text.starts_with("https://")) {
        r.error(value, fmt::format("\"{}\" must start with http:// or https://", text));
        return;
    }
    url = std::move(text);
}

void read_headers(YamlReader& r,
                  const Value& value,
                  std::vector<std::pair<std::string, std::string>>& headers) {
    r.read_entries(value, [&](const Value& key, const Value& item) {
        const std::string& name = key.node.Scalar();
        if (!is_header_name(name)) {
            r.error(key, fmt::format("\"{}\" is not a header name (letters, digits and {})", name,
                                     kTokenSymbols));
            return;
        }
        std::string text;
        if (!r.read_string(item, text)) {
            return;
        }
        if (text.find_first_of("\r\n") != std::string::npos) {
            r.error(item, "a header value must be one line");
            return;
        }
        headers.emplace_back(name, std::move(text));
    });
}

/// `expect_status: 200` or `expect_status: [200, 204]`.
void read_statuses(YamlReader& r, const Value& value, std::vector<int>& statuses) {
    auto read_one = [&](const Value& item) {
        int status = 0;
        if (r.read_int(item, status, 100, 599)) {
            statuses.push_back(status);
        }
    };
    if (!value.is_null() && value.node.IsScalar()) {
        read_one(value);
        return;
    }
    r.read_list(value, read_one);
}

/// json_equals' value: any scalar, as its text (an empty value or ~ is null).
void read_expected_value(YamlReader& r, const Value& value, std::string& out) {
    if (value.is_null()) {
        out = "null";
        return;
    }
    if (!value.node.IsScalar()) {
        r.error(value, fmt::format("expected a string, number, true, false or null, got {} (to "
                                   "compare an object or array, write its JSON as a string)",
                                   shown(value)));
        return;
    }
    out = value.node.Scalar();
}

void read_check(YamlReader& r, const Value& value, std::vector<jobs::HttpCheck>& checks) {
    constexpr std::string_view kCheckKinds = "json_equals, json_exists or text_contains";
    if (value.is_null() || !value.node.IsMap()) {
        r.error(value, fmt::format("expected a check (a mapping with one of {}), got {}",
                                   kCheckKinds, shown(value)));
        return;
    }
    std::vector<jobs::HttpCheck> read;
    auto check_of = [&](jobs::HttpCheckKind kind) -> jobs::HttpCheck& {
        read.push_back(jobs::HttpCheck{.kind = kind});
        return read.back();
    };
    std::optional<Value> second;
    auto count = [&](const Value& v) {
        if (!read.empty() && !second) {
            second = v;
        }
    };
    r.read_map(value,
               {
                   {"json_equals",
                    [&](const Value& v) {
                        count(v);
                        auto& check = check_of(jobs::HttpCheckKind::kJsonEquals);
                        bool has_value = false;
                        r.read_map(
                            v, {
                                   {"path", [&](const Value& p) { r.read_string(p, check.path); }},
                                   {"value",
                                    [&](const Value& e) {
                                        has_value = true;
                                        read_expected_value(r, e, check.value);
                                    }},
                               });
                        if (!has_value && (v.is_null() || v.node.IsMap())) {
                            r.error(v, "json_equals needs a value: {path: PATH, value: VALUE}");
                        }
                    }},
                   {"json_exists",
                    [&](const Value& v) {
                        count(v);
                        r.read_string(v, check_of(jobs::HttpCheckKind::kJsonExists).path);
                    }},
                   {"text_contains",
                    [&](const Value& v) {
                        count(v);
                        auto& check = check_of(jobs::HttpCheckKind::kTextContains);
                        if (r.read_string(v, check.value) && check.value.empty()) {
                            r.error(v, "needs the text to look for");
                        }
                    }},
               });
    if (second) {
        r.error(*second, fmt::format("a check has exactly one of {}", kCheckKinds));
    } else if (read.empty() && value.node.size() == 0) {
        r.error(value, fmt::format("a check needs one of {}", kCheckKinds));
    }
    if (read.size() == 1) {
        checks.push_back(std::move(read.front()));
    }
}

/// `http: URL` (a GET expecting any 2xx) or `http: {url: ..., method: ..., ...}`.
void read_http(YamlReader& r, const Value& value, jobs::HttpStepSpec& http) {
    if (!value.is_null() && value.node.IsScalar()) {
        read_url(r, value, http.url);
        return;
    }
    if (value.is_null() || !value.node.IsMap()) {
        r.error(value, fmt::format("expected a url or a mapping with url (and method, headers, "
                                   "body, expect_status, expect, request_timeout, retries, "
                                   "retry_interval), got {}",
                                   shown(value)));
        return;
    }
    bool has_url = false;
    r.read_map(
        value,
        {
            {"method", [&](const Value& v) { read_method(r, v, http.method); }},
            {"url",
             [&](const Value& v) {
                 has_url = true;
                 read_url(r, v, http.url);
             }},
            {"headers", [&](const Value& v) { read_headers(r, v, http.headers); }},
            {"body",
             [&](const Value& v) {
                 if (!v.is_null()) {
                     r.read_string(v, http.body);
                 }
             }},
            {"expect_status", [&](const Value& v) { read_statuses(r, v, http.expect_status); }},
            {"expect",
             [&](const Value& v) {
                 r.read_list(v, [&](const Value& item) { read_check(r, item, http.checks); });
             }},
            {"request_timeout", [&](const Value& v) { r.read_duration(v, http.request_timeout); }},
            {"retries", [&](const Value& v) { r.read_int(v, http.retries, 0, 100); }},
            {"retry_interval", [&](const Value& v) { r.read_duration(v, http.retry_interval); }},
        });
    if (!has_url) {
        r.error(value, "an http step needs a url");
    }
}

/// The value under a step's kind key: the op, the argv, the condition, or nothing.
/// lease: {op: acquire|release, owner, ttl, reason}.
void read_lease(YamlReader& r, const Value& value, jobs::LeaseStepSpec& lease) {
    bool op_given = false;
    r.read_map(
        value,
        {
            {"op",
             [&](const Value& v) {
                 op_given = true;
                 std::string op;
                 if (r.read_choice(v, op, {"acquire", "release"}, "lease op", "acquire, release")) {
                     lease.acquire = op == "acquire";
                 }
             }},
            {"owner", [&](const Value& v) { r.read_string(v, lease.owner); }},
            {"ttl", [&](const Value& v) { r.read_string(v, lease.ttl); }},
            {"reason", [&](const Value& v) { r.read_string(v, lease.reason); }},
        });
    if (!op_given && value.node.IsMap()) {
        r.error(value, "a lease step needs op: acquire or release");
    }
}

/// connect: {host, port, attempts, interval, timeout}.
void read_connect(YamlReader& r, const Value& value, jobs::ConnectStepSpec& connect) {
    r.read_map(value,
               {
                   {"host", [&](const Value& v) { r.read_string(v, connect.host); }},
                   {"port", [&](const Value& v) { r.read_int(v, connect.port, 1, 65535); }},
                   {"attempts", [&](const Value& v) { r.read_int(v, connect.attempts, 1, 1000); }},
                   {"interval", [&](const Value& v) { r.read_duration(v, connect.interval); }},
                   {"timeout", [&](const Value& v) { r.read_duration(v, connect.timeout); }},
               });
}

/// switch_producer: {from, execute, max_lag, verify_timeout}; {} keeps every default.
void read_switch_producer(YamlReader& r, const Value& value, jobs::SwitchProducerStepSpec& spec) {
    if (value.is_null()) {
        return;
    }
    r.read_map(value, {
                          {"from", [&](const Value& v) { r.read_string(v, spec.from); }},
                          {"execute", [&](const Value& v) { r.read_string(v, spec.execute); }},
                          {"max_lag", [&](const Value& v) { r.read_string(v, spec.max_lag); }},
                          {"verify_timeout",
                           [&](const Value& v) { r.read_duration(v, spec.verify_timeout); }},
                      });
}

/// reboot: {methods, ssh_command, ipmi_command, pdu_off_time, verify: {port, down_within,
/// up_within, interval, probe_timeout}}; {} keeps every default.
void read_reboot(YamlReader& r, const Value& value, jobs::RebootStepSpec& reboot) {
    if (value.is_null()) {
        return;
    }
    auto read_command = [&r](const Value& v, std::vector<std::string>& words) {
        std::vector<std::string> read;
        read_argv(r, v, read);
        if (!read.empty()) {
            words = std::move(read);
        }
    };
    r.read_map(
        value,
        {
            {"methods",
             [&](const Value& v) {
                 reboot.methods.clear();
                 r.read_list(v, [&](const Value& item) {
                     jobs::RebootMethod method{};
                     if (read_enum(r, item, method, jobs::parse_reboot_method, "reboot method",
                                   "ssh, ipmi, pdu")) {
                         reboot.methods.push_back(method);
                     }
                 });
             }},
            {"ssh_command", [&](const Value& v) { read_command(v, reboot.ssh_command); }},
            {"ipmi_command", [&](const Value& v) { read_command(v, reboot.ipmi_command); }},
            {"pdu_off_time", [&](const Value& v) { r.read_duration(v, reboot.pdu_off_time); }},
            {"verify",
             [&](const Value& v) {
                 r.read_map(
                     v,
                     {
                         {"port",
                          [&](const Value& x) { r.read_int(x, reboot.verify_port, 0, 65535); }},
                         {"down_within",
                          [&](const Value& x) { r.read_duration(x, reboot.down_within); }},
                         {"up_within",
                          [&](const Value& x) { r.read_duration(x, reboot.up_within); }},
                         {"interval", [&](const Value& x) { r.read_duration(x, reboot.interval); }},
                         {"probe_timeout",
                          [&](const Value& x) { r.read_duration(x, reboot.probe_timeout); }},
                     });
             }},
        });
}

void read_kind_value(YamlReader& r, const Value& value, jobs::StepSpec& step) {
    switch (step.kind) {
        case jobs::StepKind::kDriver:
            read_enum(r, value, step.op, drivers::parse_op, "driver op", kOps);
            return;
        case jobs::StepKind::kRun:
            read_argv(r, value, step.argv);
            return;
        case jobs::StepKind::kWait:
            read_enum(r, value, step.condition, jobs::parse_wait_condition, "wait condition",
                      kConditions);
            return;
        case jobs::StepKind::kHttp:
            read_http(r, value, step.http);
            return;
        case jobs::StepKind::kSsh:
            read_argv(r, value, step.argv);
            return;
        case jobs::StepKind::kLease:
            read_lease(r, value, step.lease);
            return;
        case jobs::StepKind::kReboot:
            read_reboot(r, value, step.reboot);
            return;
        case jobs::StepKind::kConnect:
            read_connect(r, value, step.connect);
            return;
        case jobs::StepKind::kSwitchProducer:
            read_switch_producer(r, value, step.switch_producer);
            return;
        case jobs::StepKind::kNoop:
            if (!value.is_null() && !(value.node.IsMap() && value.node.size() == 0)) {
                r.error(value, fmt::format("expected nothing or {{}}, got {}", shown(value)));
            }
            return;
    }
}

/// `- noop` alone; any other bare word is a kind without its value, or no kind at all.
void read_bare_step(YamlReader& r, const Value& value, std::vector<StepReading>& steps) {
    const std::string& text = value.node.Scalar();
    if (text == "noop") {
        StepReading reading;
        reading.step.kind = jobs::StepKind::kNoop;
        reading.step.name = "noop";
        steps.push_back(std::move(reading));
    } else if (jobs::parse_step_kind(text)) {
        r.error(value, fmt::format("a {0} step needs a value: \"{0}: ...\" (only noop stands "
                                   "alone)",
                                   text));
    } else {
        r.error(value,
                fmt::format("unknown step kind \"{}\"; expected one of {}{}", text, kStepKinds,
                            did_you_mean(text, {"driver", "run", "wait", "http", "ssh", "lease",
                                                "reboot", "noop"})));
    }
}

/// The step's kind key, or nullopt having reported why there is not exactly one.
std::optional<std::string> find_kind_key(YamlReader& r, const Value& value) {
    std::optional<std::string> kind_key;
    std::optional<Value> unknown;  // the first key a step does not know at all
    bool twice = false;
    for (auto it = value.node.begin(); it != value.node.end(); ++it) {
        YAML::Node key_node = it->first;
        std::string key = key_node.IsScalar() ? key_node.Scalar() : std::string{};
        Value key_at{key_node, child_path(value.path, key), key_node.Mark()};
        if (!jobs::parse_step_kind(key)) {
            if (!unknown && !is_step_key(key)) {
                unknown = key_at;
            }
            continue;
        }
        if (!kind_key) {
            kind_key = key;
        } else if (*kind_key != key) {  // the same key twice is read_map's to report
            r.error(key_at, fmt::format("a step has exactly one kind, and this one already has "
                                        "\"{}\"",
                                        *kind_key));
            twice = true;
        }
    }
    if (twice) {
        return std::nullopt;
    }
    if (!kind_key && unknown) {
        auto key = unknown->node.Scalar();
        r.error(*unknown,
                fmt::format("unknown step kind \"{}\"; expected one of {}{}", key, kStepKinds,
                            did_you_mean(key, {"driver", "run", "wait", "http", "ssh", "lease",
                                               "reboot", "noop"})));
    } else if (!kind_key) {
        r.error(value, fmt::format("a step needs one of {}", kStepKinds));
    }
    return kind_key;
}

void read_step(YamlReader& r, const Value& value, std::vector<StepReading>& steps) {
    if (!value.is_null() && value.node.IsScalar()) {
        read_bare_step(r, value, steps);
        return;
    }
    if (value.is_null() || !value.node.IsMap()) {
        r.error(value, fmt::format("expected a step (a mapping with one of {}), got {}", kStepKinds,
                                   shown(value)));
        return;
    }
    auto kind_key = find_kind_key(r, value);
    if (!kind_key) {
        return;
    }
    StepReading reading;
    jobs::StepSpec& step = reading.step;
    step.kind = *jobs::parse_step_kind(*kind_key);
    std::optional<Value> tag_at;
    std::vector<Field> fields{
        {"name", [&](const Value& v) { r.read_string(v, step.name); }},
        {"timeout", [&](const Value& v) { r.read_duration(v, step.timeout); }},
        {*kind_key, [&](const Value& v) { read_kind_value(r, v, step); }},
    };
    for (auto kind : kAllKinds) {
        auto key = extra_key(kind);
        if (key.empty()) {
            continue;
        }
        if (kind != step.kind) {
            fields.push_back({key, [&r, kind, key](const Value& v) {
                                  r.error(v, fmt::format("\"{}\" applies to {} steps only", key,
                                                         jobs::to_string(kind)));
                              }});
        } else if (key == "image_tag") {
            fields.push_back({key, [&](const Value& v) {
                                  if (r.read_string(v, step.image_tag)) {
                                      tag_at = v;
                                  }
                              }});
        } else if (key == "env") {
            fields.push_back({key, [&](const Value& v) { read_env(r, v, step.env); }});
        } else {
            fields.push_back({key, [&](const Value& v) { r.read_duration(v, step.interval); }});
        }
    }
    r.read_map(value, fields);
    if (tag_at && step.op != drivers::Op::kInstall && step.op != drivers::Op::kUpgrade) {
        r.error(*tag_at, fmt::format("image_tag applies to driver install and upgrade only, not "
                                     "{}",
                                     drivers::to_string(step.op)));
    }
    reading.image_tag_given = tag_at.has_value();
    if (step.name.empty()) {
        step.name = default_step_name(step);
    }
    steps.push_back(std::move(reading));
}

// --- actions ----------------------------------------------------------------------------------

/// validate_action's message without its `action "NAME": ` prefix: the key path names it.
std::string without_action_prefix(std::string message, std::string_view name) {
    auto prefix = fmt::format("action \"{}\": ", name);
    if (message.starts_with(prefix)) {
        message.erase(0, prefix.size());
    }
    return message;
}

bool has_param(const jobs::ActionSpec& action, std::string_view name) {
    return std::any_of(action.params.begin(), action.params.end(),
                       [&](const jobs::ParamSpec& p) { return p.name == name; });
}

std::vector<Field> action_fields(YamlReader& r,
                                 jobs::ActionSpec& a,
                                 std::vector<StepReading>& steps) {
    return {
        {"description", [&](const Value& v) { r.read_string(v, a.description); }},
        {"queue", [&](const Value& v) { r.read_string(v, a.queue); }},
        {"timeout", [&](const Value& v) { r.read_duration(v, a.timeout); }},
        {"max_attempts", [&](const Value& v) { r.read_int(v, a.max_attempts, 1, 100); }},
        {"retry_backoff", [&](const Value& v) { r.read_duration(v, a.retry_backoff); }},
        {"retry_backoff_max", [&](const Value& v) { r.read_duration(v, a.retry_backoff_max); }},
        {"destructive", [&](const Value& v) { r.read_bool(v, a.destructive); }},
        {"retry_destructive", [&](const Value& v) { r.read_bool(v, a.retry_destructive); }},
        {"rerun_safe", [&](const Value& v) { r.read_bool(v, a.rerun_safe); }},
        {"exclusive", [&](const Value& v) { r.read_bool(v, a.exclusive); }},
        {"concurrency", [&](const Value& v) { r.read_int(v, a.concurrency, 0, 10'000); }},
        {"public", [&](const Value& v) { r.read_bool(v, a.is_public); }},
        {"params",
         [&](const Value& v) {
             r.read_entries(v, [&](const Value& key, const Value& item) {
                 read_param(r, key, item, a.params);
             });
         }},
        {"steps",
         [&](const Value& v) {
             r.read_list(v, [&](const Value& item) { read_step(r, item, steps); });
         }},
    };
}

}  // namespace

bool is_header_name(std::string_view name) {
    return !name.empty() && std::all_of(name.begin(), name.end(), is_token_char);
}

void read_action(YamlReader& r,
                 const Value& key,
                 const Value& value,
                 std::vector<jobs::ActionSpec>& actions) {
    auto before = r.error_count();
    jobs::ActionSpec action;
    action.name = key.node.Scalar();
    if (!core::is_dns_label(action.name)) {
        r.error(key, fmt::format("action name \"{}\" is not a DNS-1123 label ({})", action.name,
                                 kDnsLabelRule));
    }
    std::vector<StepReading> steps;
    r.read_map(value, action_fields(r, action, steps));
    // Params may come after steps in the file, so the tag default is settled only now.
    bool has_tag = has_param(action, "tag");
    for (auto& reading : steps) {
        auto& step = reading.step;
        bool takes_tag = step.op == drivers::Op::kInstall || step.op == drivers::Op::kUpgrade;
        if (step.kind == jobs::StepKind::kDriver && takes_tag && !reading.image_tag_given &&
            !has_tag) {
            step.image_tag.clear();  // the driver then uses the node's configured image_tag
        }
        action.steps.push_back(std::move(step));
    }
    if (action.is_public && !has_param(action, "tc_worker_id")) {
        // Where a roller job keeps the worker id it was called for (GET /api/v1/jobs/{id}).
        action.params.push_back(jobs::ParamSpec{
            .name = "tc_worker_id",
            .type = jobs::ParamType::kString,
            .required = false,
            .description = "the external worker id the roller endpoint was called for",
            .from = "{{tc_worker_id}}",
        });
    }
    if (r.error_count() != before) {
        return;  // validating a half-read action would report the same problem twice
    }
    if (auto valid = jobs::validate_action(action); !valid) {
        r.error(key, without_action_prefix(valid.error().message, action.name));
        return;
    }
    actions.push_back(std::move(action));
}

}  // namespace aviary::config
