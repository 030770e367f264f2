// `aviary supervise`'s file (node.yaml) and flags into supervisor::Settings, and the chain
// presets: the built-in ones of examples/chains.yaml and a file's own `preset:`.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "config/chains_embedded.hpp"
#include "config/config.hpp"
#include "config/secrets.hpp"
#include "config/yaml_reader.hpp"
#include "core/regex.hpp"

namespace aviary::config {
namespace {

namespace fs = std::filesystem;
using supervisor::ChainCall;
using supervisor::Preset;
using supervisor::RestartPolicy;

/// Where the state file goes, under data_dir, when state_dir is not given.
constexpr std::string_view kStateUnderData = ".aviary-supervise";
constexpr std::string_view kNoCommand =
    "no command to supervise: give one after -- or as program.command";

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

bool is_name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
}

/// Why `name` cannot be a chain (preset) name, or nothing.
std::optional<std::string> check_chain_name(std::string_view name) {
    if (name.empty() || name.size() > 63 || !std::all_of(name.begin(), name.end(), is_name_char)) {
        return fmt::format("chain name \"{}\" must be 1-63 of a-z, A-Z, 0-9, '-', '.' and '_'",
                           name);
    }
    return std::nullopt;
}

/// Why `name` cannot be the supervised node's name (it reaches logs, metrics and the API).
std::optional<std::string> check_node_name(std::string_view name) {
    if (name.empty() || name.size() > 63 || !std::all_of(name.begin(), name.end(), is_name_char)) {
        return fmt::format("name \"{}\" must be 1-63 of a-z, A-Z, 0-9, '-', '.' and '_'", name);
    }
    return std::nullopt;
}

std::optional<std::string> check_host_port(std::string_view address) {
    auto split = net::split_host_port(address);
    if (!split) {
        return split.error().message;
    }
    return std::nullopt;
}

/// The proxy's address: HOST:PORT, or empty for no proxy.
std::optional<std::string> check_proxy(std::string_view address) {
    return address.empty() ? std::nullopt : check_host_port(address);
}

std::optional<std::string> check_not_empty(std::string_view text) {
    if (text.empty()) {
        return "must not be empty";
    }
    return std::nullopt;
}

/// Why `id` cannot be a chain id (it reaches backup names and manifests).
std::optional<std::string> check_chain_id(std::string_view id) {
    if (id.size() > 128 || !std::all_of(id.begin(), id.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' ||
                   c == '_' || c == ':';
        })) {
        return fmt::format(
            "chain id \"{}\" must be at most 128 of a-z, A-Z, 0-9, '-', '.', '_' "
            "and ':'",
            id);
    }
    return std::nullopt;
}

std::optional<std::string> check_nothing(std::string_view /*text*/) {
    return std::nullopt;
}

/// Why a setting's text cannot be used, or nothing.
using Check = std::function<std::optional<std::string>(std::string_view)>;

/// The upstream, `http://HOST:PORT` or `https://HOST:PORT` (a trailing "/" is dropped: chain
/// calls' paths are appended to it), or why it is not one.
core::Result<std::string> check_upstream(std::string_view url) {
    constexpr std::string_view kExpected =
        "expected an http:// or https:// url with a port and no path, like "
        "\"http://127.0.0.1:8888\"";
    std::string_view scheme;
    for (std::string_view known : {"http://", "https://"}) {
        if (url.starts_with(known)) {
            scheme = known;
        }
    }
    if (scheme.empty()) {
        return invalid(fmt::format("{}, got \"{}\"", kExpected, url));
    }
    auto authority = url.substr(scheme.size());
    if (authority.ends_with('/')) {
        authority.remove_suffix(1);
    }
    if (authority.find_first_of("/?#@ \t\r\n") != std::string_view::npos) {
        return invalid(fmt::format("{}, got \"{}\"", kExpected, url));
    }
    if (auto problem = check_host_port(authority)) {
        return invalid(fmt::format("{}: {}", kExpected, *problem));
    }
    return std::string{scheme} + std::string{authority};
}

std::optional<RestartPolicy> policy_of(std::string_view name) {
    if (name == "never") {
        return RestartPolicy::kNever;
    }
    if (name == "on-failure") {
        return RestartPolicy::kOnFailure;
    }
    if (name == "always") {
        return RestartPolicy::kAlways;
    }
    return std::nullopt;
}

std::string unknown_policy(std::string_view name) {
    return fmt::format("unknown restart policy \"{}\" (never, on-failure, always){}", name,
                       did_you_mean(name, {"never", "on-failure", "always"}));
}

/// A stop signal by name, "TERM" or "SIGTERM".
std::optional<int> signal_of(std::string_view name) {
    if (name.starts_with("SIG")) {
        name.remove_prefix(3);
    }
    struct Named {
        std::string_view name;
        int signal;
    };
    static constexpr std::array<Named, 7> kSignals{{
        {"TERM", SIGTERM},
        {"INT", SIGINT},
        {"QUIT", SIGQUIT},
        {"HUP", SIGHUP},
        {"KILL", SIGKILL},
        {"USR1", SIGUSR1},
        {"USR2", SIGUSR2},
    }};
    for (const auto& s : kSignals) {
        if (s.name == name) {
            return s.signal;
        }
    }
    return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Presets

/// A path on the upstream: "/" and more, no spaces.
/// A list of globs relative to the data dir (docs/backups.md, "What is never backed up").
void read_globs(YamlReader& r, const Value& value, std::vector<std::string>& out) {
    r.read_list(value, [&](const Value& item) {
        std::string glob;
        if (!r.read_string(item, glob)) {
            return;
        }
        if (glob.empty() || glob.front() == '/' || glob.find("..") != std::string::npos) {
            r.error(item,
                    fmt::format("\"{}\" must be a non-empty glob relative to the data dir", glob));
            return;
        }
        out.push_back(std::move(glob));
    });
}

/// A path inside the data dir ("blocks", "config/dirty"): relative, without "..".
void read_relative(YamlReader& r, const Value& value, std::string& out) {
    std::string text;
    if (!r.read_string(value, text)) {
        return;
    }
    if (text.empty() || text.front() == '/' || text.find("..") != std::string::npos) {
        r.error(value, fmt::format("\"{}\" must be a path relative to the data dir", text));
        return;
    }
    out = std::move(text);
}

void read_path(YamlReader& r, const Value& value, std::string& out) {
    std::string text;
    if (!r.read_string(value, text)) {
        return;
    }
    if (!text.starts_with('/') || text.find_first_of(" \t\r\n") != std::string::npos) {
        r.error(value, fmt::format("expected a path on the upstream like \"/v1/chain/get_info\", "
                                   "got \"{}\"",
                                   text));
        return;
    }
    out = std::move(text);
}

/// serve's URL for the producer lease: http(s)://HOST:PORT, no path.
std::optional<std::string> check_serve_url(std::string_view url) {
    auto checked = check_upstream(url);
    if (!checked) {
        return checked.error().message;
    }
    return std::nullopt;
}

/// Where serve reaches this sidecar's control API: http(s)://HOST[:PORT], no path.
std::optional<std::string> check_advertise(std::string_view url) {
    auto problem = fleet::control_url_problem(url);
    if (!problem.empty()) {
        return fmt::format("\"{}\" {}", url, problem);
    }
    return std::nullopt;
}

/// The producer lease's key: what serve accepts (letters, digits, ".-_:@").
std::optional<std::string> check_producer_key(std::string_view key) {
    if (key.empty() || key.size() > 128 || !std::all_of(key.begin(), key.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' ||
                   c == '_' || c == ':' || c == '@';
        })) {
        return fmt::format("\"{}\" must be 1-128 of a-z, A-Z, 0-9, '.', '-', '_', ':' and '@'",
                           key);
    }
    return std::nullopt;
}

/// {method, path, body}; the path is required.
void read_call(YamlReader& r, const Value& value, ChainCall& call) {
    ChainCall read = call;
    read.path.clear();
    auto before = r.error_count();
    bool ok =
        r.read_map(value, {
                              {"method",
                               [&](const Value& v) {
                                   r.read_choice(v, read.method, {"GET", "HEAD", "POST", "PUT"},
                                                 "method", "GET, HEAD, POST, PUT");
                               }},
                              {"path", [&](const Value& v) { read_path(r, v, read.path); }},
                              {"body", [&](const Value& v) { r.read_string(v, read.body); }},
                          });
    if (!ok || r.error_count() != before) {
        return;
    }
    if (read.path.empty()) {
        r.error(value, "a call needs a path (\"/v1/chain/get_info\")");
        return;
    }
    call = std::move(read);
}

/// {pointer, format}: the pointer is required, the format one of `formats` (`fallback` when
/// not given).
void read_field(YamlReader& r,
                const Value& value,
                supervisor::Field& field,
                std::string_view fallback,
                std::initializer_list<std::string_view> formats,
                std::string_view listed) {
    supervisor::Field read{.pointer = "", .format = std::string{fallback}};
    auto before = r.error_count();
    bool ok = r.read_map(
        value,
        {
            {"pointer",
             [&](const Value& v) {
                 std::string text;
                 if (!r.read_string(v, text)) {
                     return;
                 }
                 if (!text.starts_with('/')) {
                     r.error(v, fmt::format("expected a JSON pointer like "
                                            "\"/result/number\", got \"{}\"",
                                            text));
                     return;
                 }
                 read.pointer = std::move(text);
             }},
            {"format",
             [&](const Value& v) { r.read_choice(v, read.format, formats, "format", listed); }},
        });
    if (!ok || r.error_count() != before) {
        return;
    }
    if (read.pointer.empty()) {
        r.error(value, "a field needs a pointer (\"/result/number\")");
        return;
    }
    field = std::move(read);
}

/// A JSON pointer ("/active/producers").
void read_pointer(YamlReader& r, const Value& value, std::string& out) {
    std::string text;
    if (!r.read_string(value, text)) {
        return;
    }
    if (!text.starts_with('/')) {
        r.error(value, fmt::format("expected a JSON pointer like \"/active/producers\", got \"{}\"",
                                   text));
        return;
    }
    out = std::move(text);
}

/// A preset's `producer:`: the producer API, and where the chain tells the schedule.
void read_producer(YamlReader& r, const Value& value, Preset& p) {
    std::optional<Value> head_at;
    std::optional<Value> schedule_at;
    std::optional<Value> list_at;
    const auto before = r.error_count();
    bool ok = r.read_map(
        value, {
                   {"pause", [&](const Value& v) { read_path(r, v, p.producer_pause); }},
                   {"resume", [&](const Value& v) { read_path(r, v, p.producer_resume); }},
                   {"paused", [&](const Value& v) { read_path(r, v, p.producer_paused); }},
                   {"head_producer",
                    [&](const Value& v) {
                        head_at = v;
                        read_pointer(r, v, p.head_producer.pointer);
                    }},
                   {"schedule",
                    [&](const Value& v) {
                        schedule_at = v;
                        read_call(r, v, p.schedule);
                    }},
                   {"schedule_list",
                    [&](const Value& v) {
                        list_at = v;
                        read_pointer(r, v, p.schedule_list);
                    }},
                   {"schedule_name", [&](const Value& v) { read_pointer(r, v, p.schedule_name); }},
               });
    if (!ok || r.error_count() != before) {
        return;
    }
    // The round needs all three: who made the head, and the schedule to place them in.
    if ((head_at || schedule_at || list_at) && !(head_at && schedule_at && list_at)) {
        r.error(head_at       ? *head_at
                : schedule_at ? *schedule_at
                              : *list_at,
                "head_producer, schedule and schedule_list go together: who made the head "
                "block, the call that lists the schedule, and where the list sits in its answer");
    }
}

/// Where a preset's parts were given, for the checks that relate them.
struct PresetAt {
    std::optional<Value> head;
    std::optional<Value> height;
    std::optional<Value> chain_id;
    std::optional<Value> chain_id_call;
    std::optional<Value> version_call;
    std::optional<Value> node_version;
    std::optional<Value> syncing;
    std::optional<Value> syncing_field;
};

bool valid_metric_name(std::string_view name) {
    if (name.empty()) {
        return false;
    }
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        const bool letter =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!letter && !(i > 0 && c >= '0' && c <= '9')) {
            return false;
        }
    }
    return true;
}

bool valid_label_name(std::string_view name) {
    return valid_metric_name(name) && name.find(':') == std::string_view::npos &&
           !name.starts_with("__");
}

/// Where a value was given, for a message about another: `log_metrics[0].name, line 3`.
std::string given_at(const Value& value) {
    return fmt::format("{}, line {}", value.path, value.mark.line + 1);
}

/// One rule of a `log_metrics:` list (docs/supervise.md, "Log metrics"); a rule that reads
/// cleanly goes to `out`, and where its name was given to `names_at`.
void read_log_rule(YamlReader& r,
                   const Value& value,
                   std::vector<supervisor::LogRule>& out,
                   std::vector<Value>& names_at) {
    supervisor::LogRule rule;
    std::optional<Value> name_at;
    std::optional<Value> pattern_at;
    std::optional<Value> value_at;
    std::optional<Value> labels_at;
    std::vector<std::pair<Value, int>> groups;  // where each group number was given
    const auto before = r.error_count();
    bool ok = r.read_map(
        value,
        {
            {"name",
             [&](const Value& v) {
                 name_at = v;
                 r.read_string(v, rule.name);
             }},
            {"help", [&](const Value& v) { r.read_string(v, rule.help); }},
            {"kind",
             [&](const Value& v) {
                 r.read_choice(v, rule.kind, {"counter", "gauge"}, "kind", "counter, gauge");
             }},
            {"pattern",
             [&](const Value& v) {
                 pattern_at = v;
                 r.read_string(v, rule.pattern);
             }},
            {"contains", [&](const Value& v) { r.read_string(v, rule.contains); }},
            {"stream",
             [&](const Value& v) {
                 r.read_choice(v, rule.stream, {"stdout", "stderr"}, "stream", "stdout, stderr");
             }},
            {"value",
             [&](const Value& v) {
                 value_at = v;
                 if (r.read_int(v, rule.value_group, 1, 99)) {
                     groups.emplace_back(v, rule.value_group);
                 }
             }},
            {"labels",
             [&](const Value& v) {
                 labels_at = v;
                 r.read_entries(v, [&](const Value& key, const Value& item) {
                     const std::string& label = key.node.Scalar();
                     if (!valid_label_name(label) || label == "node") {
                         r.error(key, fmt::format("\"{}\" cannot be a label name here (letters, "
                                                  "digits and _, not starting with __; node is "
                                                  "the sidecar's own)",
                                                  label));
                         return;
                     }
                     int group = 0;
                     if (r.read_int(item, group, 1, 99)) {
                         rule.labels.emplace_back(label, group);
                         groups.emplace_back(item, group);
                     }
                 });
             }},
            {"max_series", [&](const Value& v) { r.read_int(v, rule.max_series, 1, 10'000); }},
        });
    if (!ok || r.error_count() != before) {
        return;
    }
    if (!name_at || !pattern_at) {
        r.error(value, "a log metric needs a name and a pattern");
        return;
    }
    if (!valid_metric_name(rule.name)) {
        r.error(*name_at, fmt::format("\"{}\" is not a metric name (letters, digits, _ and :, "
                                      "not starting with a digit)",
                                      rule.name));
        return;
    }
    if (rule.name.starts_with("aviary_")) {
        r.error(*name_at, "names starting with aviary_ are the sidecar's own metrics");
        return;
    }
    if (rule.kind == "counter" && !rule.name.ends_with("_total")) {
        r.error(*name_at, fmt::format("a counter's name ends in _total (\"{}_total\")", rule.name));
        return;
    }
    if (rule.kind == "gauge" && !value_at) {
        r.error(value, "a gauge needs value: the capture group that holds the number");
        return;
    }
    auto compiled = core::Regex::compile(rule.pattern);
    if (!compiled) {
        r.error(*pattern_at, compiled.error().message);
        return;
    }
    for (const auto& [at, group] : groups) {
        if (group > compiled->groups()) {
            r.error(at, fmt::format("the pattern has {} capture group(s), not {}",
                                    compiled->groups(), group));
            return;
        }
    }
    out.push_back(std::move(rule));
    names_at.push_back(*name_at);
}

/// A `log_metrics:` list: its rules to `out`, where their names were given to `names_at`. A
/// name given twice is an error at the second, naming the first.
void read_log_rules(YamlReader& r,
                    const Value& value,
                    std::vector<supervisor::LogRule>& out,
                    std::vector<Value>& names_at) {
    r.read_list(value, [&](const Value& item) {
        const auto before = out.size();
        read_log_rule(r, item, out, names_at);
        if (out.size() == before) {
            return;
        }
        auto first = std::find_if(out.begin(), out.end() - 1,
                                  [&](const auto& rule) { return rule.name == out.back().name; });
        if (first != out.end() - 1) {
            r.error(names_at.back(),
                    fmt::format("log metric {} is defined twice (also at {})", out.back().name,
                                given_at(names_at[static_cast<std::size_t>(first - out.begin())])));
            out.pop_back();
            names_at.pop_back();
        }
    });
}

/// Reads one preset (its name is set by the caller); where its log metrics' names were given
/// goes to `metric_names_at`. False when it did not read cleanly.
bool read_preset(YamlReader& r,
                 const Value& value,
                 Preset& p,
                 std::vector<Value>& metric_names_at) {
    PresetAt at;
    auto before = r.error_count();
    auto remember = [](std::optional<Value>& where, const Value& v) { where = v; };
    bool ok = r.read_map(
        value,
        {
            {"description", [&](const Value& v) { r.read_string(v, p.description); }},
            {"readiness",
             [&](const Value& v) {
                 r.read_choice(v, p.readiness, {"process", "tcp", "http", "chain"}, "readiness",
                               "process, tcp, http, chain");
             }},
            {"head",
             [&](const Value& v) {
                 remember(at.head, v);
                 read_call(r, v, p.head);
             }},
            {"height",
             [&](const Value& v) {
                 remember(at.height, v);
                 read_field(r, v, p.height, "number", {"number", "hex"}, "number, hex");
             }},
            {"head_time",
             [&](const Value& v) {
                 read_field(r, v, p.head_time, "iso8601", {"iso8601", "unix"}, "iso8601, unix");
             }},
            {"chain_id",
             [&](const Value& v) {
                 remember(at.chain_id, v);
                 read_field(r, v, p.chain_id, "string", {"string", "number", "hex"},
                            "string, number, hex");
             }},
            {"chain_id_call",
             [&](const Value& v) {
                 remember(at.chain_id_call, v);
                 read_call(r, v, p.chain_id_call);
             }},
            {"block_hash",
             [&](const Value& v) {
                 read_field(r, v, p.block_hash, "string", {"string"}, "string");
             }},
            {"node_version",
             [&](const Value& v) {
                 remember(at.node_version, v);
                 read_field(r, v, p.node_version, "string", {"string"}, "string");
             }},
            {"version_call",
             [&](const Value& v) {
                 remember(at.version_call, v);
                 read_call(r, v, p.version_call);
             }},
            {"syncing",
             [&](const Value& v) {
                 remember(at.syncing, v);
                 read_call(r, v, p.syncing);
             }},
            {"syncing_field",
             [&](const Value& v) {
                 remember(at.syncing_field, v);
                 read_field(r, v, p.syncing_field, "bool", {"bool"}, "bool");
             }},
            {"health", [&](const Value& v) { read_call(r, v, p.health); }},
            {"block_interval", [&](const Value& v) { r.read_duration(v, p.block_interval); }},
            {"producer", [&](const Value& v) { read_producer(r, v, p); }},
            {"log_metrics",
             [&](const Value& v) { read_log_rules(r, v, p.log_metrics, metric_names_at); }},
            {"chain_data", [&](const Value& v) { read_relative(r, v, p.chain_data); }},
            {"dirty_marker", [&](const Value& v) { read_relative(r, v, p.dirty_marker); }},
            {"dirty_log",
             [&](const Value& v) {
                 if (r.read_string(v, p.dirty_log) && p.dirty_log.empty()) {
                     r.error(v, "must not be empty: the text a dirty node prints");
                 }
             }},
            {"backup_exclude", [&](const Value& v) { read_globs(r, v, p.backup_exclude); }},
            {"passive_args",
             [&](const Value& v) {
                 r.read_list(v, [&](const Value& item) {
                     std::string arg;
                     if (r.read_string(item, arg)) {
                         p.passive_args.push_back(std::move(arg));
                     }
                 });
             }},
            {"signer_state",
             [&](const Value& v) {
                 r.read_map(
                     v, {
                            {"path",
                             [&](const Value& path) { read_relative(r, path, p.signer_state); }},
                            {"height",
                             [&](const Value& pointer) {
                                 if (r.read_string(pointer, p.signer_height) &&
                                     !p.signer_height.starts_with('/')) {
                                     r.error(pointer, "expected a JSON pointer like \"/height\"");
                                 }
                             }},
                        });
             }},
        });
    if (!ok || r.error_count() != before) {
        return false;
    }
    if (p.readiness == "chain" && (!at.head || !at.height)) {
        r.error(value,
                "readiness chain needs head (the call that reads the head) and height "
                "(where the height sits in its answer)");
    }
    if (at.syncing.has_value() != at.syncing_field.has_value()) {
        r.error(at.syncing ? *at.syncing : *at.syncing_field,
                "syncing and syncing_field go together: the call, and where its answer says so");
    }
    if (at.version_call && !at.node_version) {
        r.error(*at.version_call,
                "version_call needs node_version: where the version sits in the call's answer");
    }
    if (at.chain_id_call && !at.chain_id) {
        r.error(*at.chain_id_call,
                "chain_id_call needs chain_id: where the id sits in the call's answer");
    }
    return r.error_count() == before;
}

std::vector<Preset> read_chains_root(YamlReader& r, const Value& root) {
    std::vector<Preset> presets;
    r.read_map(root, {
                         {"chains",
                          [&](const Value& v) {
                              r.read_entries(v, [&](const Value& key, const Value& item) {
                                  Preset preset;
                                  preset.name = key.node.Scalar();
                                  if (auto problem = check_chain_name(preset.name)) {
                                      r.error(key, *problem);
                                      return;
                                  }
                                  std::vector<Value> metric_names_at;
                                  if (read_preset(r, item, preset, metric_names_at)) {
                                      presets.push_back(std::move(preset));
                                  }
                              });
                          }},
                     });
    return presets;
}

/// Parses one YAML document; an error (with its position) when it is not YAML or holds more
/// than one document.
core::Result<YAML::Node> parse_document(std::string_view yaml, std::string_view source) {
    std::vector<YAML::Node> documents;
    try {
        documents = YAML::LoadAll(std::string{yaml});
    } catch (const YAML::Exception& e) {
        return invalid(position(source, e.mark) + e.msg);
    }
    if (documents.size() > 1) {
        return invalid(position(source, documents[1].Mark()) +
                       "expected one YAML document, found another here");
    }
    return documents.empty() ? YAML::Node{} : documents.front();
}

/// The built-in presets, read once. The text is part of the binary and config_test reads it,
/// so failing here is a bug.
const std::vector<Preset>& builtin_presets() {
    static const std::vector<Preset> presets = [] {
        auto read = read_chains(generated::kChainsYaml, "<embedded chains.yaml>");
        AVIARY_ASSERT(read.has_value(), "the embedded chains.yaml must load");
        return std::move(*read);
    }();
    return presets;
}

std::string known_chains(const std::optional<Preset>& user) {
    auto names = chain_preset_names();
    if (user && std::find(names.begin(), names.end(), user->name) == names.end()) {
        names.push_back(user->name);
    }
    return fmt::format("{}", fmt::join(names, ", "));
}

// ---------------------------------------------------------------------------------------------
// The supervise file

/// What the file said that the flags and the chain resolution need.
struct FileRead {
    std::vector<supervisor::LogRule> log_metrics;
    std::vector<Value> log_metric_names_at;  ///< where each of log_metrics' names was given
    std::optional<Value> chain_at;
    std::string chain;
    std::optional<Value> preset_at;
    std::optional<Preset> preset;  ///< read cleanly
    std::vector<Value> preset_metric_names_at;
    bool own_preset = false;  ///< the chain's preset is the file's own
    bool command_given = false;
    bool state_dir_given = false;
    std::vector<std::string> backup_exclude;  ///< backup.exclude
};

/// Reads a string and, when `check` finds no problem with it, stores it.
void read_checked(YamlReader& r, const Value& value, std::string& out, const Check& check) {
    std::string text;
    if (!r.read_string(value, text)) {
        return;
    }
    if (auto problem = check(text)) {
        r.error(value, *problem);
        return;
    }
    out = std::move(text);
}

/// A duration that may be zero ("0s": at once).
void read_delay(YamlReader& r, const Value& value, core::Millis& out) {
    std::string text;
    if (!r.read_string(value, text)) {
        return;
    }
    auto parsed = core::parse_duration(text);
    if (!parsed) {
        r.error(value, parsed.error().message);
        return;
    }
    out = *parsed;
}

/// A program and its arguments: a list of strings, the first not empty. `example` is shown
/// when it is not one ("[nodeos, --data-dir, /var/lib/nodeos]").
void read_argv(YamlReader& r,
               const Value& v,
               std::vector<std::string>& out,
               std::string_view example) {
    std::vector<std::string> argv;
    auto before = r.error_count();
    r.read_list(v, [&](const Value& item) {
        std::string arg;
        if (r.read_string(item, arg)) {
            argv.push_back(std::move(arg));
        }
    });
    if (r.error_count() != before) {
        return;
    }
    if (argv.empty() || argv.front().empty()) {
        r.error(v, fmt::format("expected the program and its arguments, like {}", example));
        return;
    }
    out = std::move(argv);
}

constexpr std::string_view kUploadExample = "[rclone, rcat, \"remote:backups/{{name}}.tar.zst\"]";
constexpr std::string_view kPushExample =
    "[rsync, -a, --delete, \"{{source}}/\", \"backup-host:/backups/{{name}}/\"]";
constexpr std::string_view kPullExample =
    "[rsync, -a, \"backup-host:/backups/{{name}}/\", \"{{destination}}/\"]";

void read_program(YamlReader& r,
                  const Value& value,
                  supervisor::ProgramSettings& p,
                  FileRead& file) {
    r.read_map(
        value,
        {
            {"command",
             [&](const Value& v) {
                 file.command_given = true;
                 read_argv(r, v, p.argv, "[nodeos, --data-dir, /var/lib/nodeos]");
             }},
            {"cwd", [&](const Value& v) { r.read_string(v, p.cwd); }},
            {"umask",
             [&](const Value& v) {
                 // Octal as the shell writes it ("0027"); quoted or not, the
                 // digits are read as octal.
                 std::string text;
                 if (!r.read_string(v, text)) {
                     return;
                 }
                 unsigned mask = 0;
                 auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), mask, 8);
                 if (text.empty() || ec != std::errc{} || end != text.data() + text.size() ||
                     mask > 0777) {
                     r.error(v, fmt::format("expected an octal umask like \"0027\", "
                                            "got \"{}\"",
                                            text));
                     return;
                 }
                 p.umask = mask;
             }},
            {"env",
             [&](const Value& v) {
                 r.read_entries(v, [&](const Value& key, const Value& item) {
                     const std::string& name = key.node.Scalar();
                     if (name.find('=') != std::string::npos) {
                         r.error(key, fmt::format("\"{}\" is not an environment variable name "
                                                  "(no '=')",
                                                  name));
                         return;
                     }
                     std::string text;
                     if (r.read_string(item, text)) {
                         p.env.emplace_back(name, std::move(text));
                     }
                 });
             }},
        });
}

void read_success_codes(YamlReader& r, const Value& value, std::vector<int>& codes) {
    std::vector<int> read;
    auto before = r.error_count();
    r.read_list(value, [&](const Value& item) {
        int code = 0;
        if (!r.read_int(item, code, 0, 255)) {
            return;
        }
        if (std::find(read.begin(), read.end(), code) != read.end()) {
            r.error(item, fmt::format("exit code {} is listed twice", code));
            return;
        }
        read.push_back(code);
    });
    if (r.error_count() == before) {
        codes = std::move(read);
    }
}

void read_restart(YamlReader& r, const Value& value, supervisor::RestartSettings& s) {
    std::optional<Value> min_at;
    std::optional<Value> max_at;
    bool delays_ok = true;
    auto delay = [&](std::optional<Value>& at, core::Millis& out) {
        return [&r, &at, &out, &delays_ok](const Value& v) {
            at = v;
            delays_ok = r.read_duration(v, out) && delays_ok;
        };
    };
    r.read_map(
        value,
        {
            {"policy",
             [&](const Value& v) {
                 std::string text;
                 if (!r.read_string(v, text)) {
                     return;
                 }
                 if (auto policy = policy_of(text)) {
                     s.policy = *policy;
                 } else {
                     r.error(v, unknown_policy(text));
                 }
             }},
            {"success_codes", [&](const Value& v) { read_success_codes(r, v, s.success_codes); }},
            {"first_delay", [&](const Value& v) { read_delay(r, v, s.first_delay); }},
            {"min_delay", delay(min_at, s.min_delay)},
            {"max_delay", delay(max_at, s.max_delay)},
            {"stable_after", [&](const Value& v) { r.read_duration(v, s.stable_after); }},
            {"start_limit_burst",
             [&](const Value& v) { r.read_int(v, s.start_limit_burst, 1, 1'000'000); }},
            {"start_limit_interval",
             [&](const Value& v) { r.read_duration(v, s.start_limit_interval); }},
            {"limited_delay", [&](const Value& v) { r.read_duration(v, s.limited_delay); }},
        });
    // Compared only when both read cleanly, so one typo does not also report a bogus ordering.
    if (delays_ok && s.max_delay < s.min_delay) {
        const Value& at = max_at ? *max_at : min_at ? *min_at : value;
        r.error(at, fmt::format("max_delay ({}) must be at least min_delay ({})",
                                core::format_duration(s.max_delay),
                                core::format_duration(s.min_delay)));
    }
}

void read_stop(YamlReader& r, const Value& value, supervisor::StopSettings& s) {
    r.read_map(value,
               {
                   {"signal",
                    [&](const Value& v) {
                        std::string text;
                        if (!r.read_string(v, text)) {
                            return;
                        }
                        if (auto signal = signal_of(text)) {
                            s.signal = *signal;
                        } else {
                            r.error(v, fmt::format("unknown stop signal \"{}\" (TERM, INT, QUIT, "
                                                   "HUP, KILL, USR1, USR2, with or without SIG)",
                                                   text));
                        }
                    }},
                   {"repeat", [&](const Value& v) { r.read_duration(v, s.repeat); }},
                   {"grace", [&](const Value& v) { r.read_duration(v, s.grace); }},
               });
}

void read_synced(YamlReader& r, const Value& value, supervisor::SyncedRule& s) {
    std::optional<Value> reference_at;
    std::optional<Value> lag_at;
    r.read_map(
        value,
        {
            {"stall_blocks", [&](const Value& v) { r.read_int(v, s.stall_blocks, 1, 1'000'000); }},
            {"max_head_age", [&](const Value& v) { r.read_duration(v, s.max_head_age); }},
            {"interval", [&](const Value& v) { r.read_duration(v, s.interval); }},
            {"timeout", [&](const Value& v) { r.read_duration(v, s.timeout); }},
            {"reference",
             [&](const Value& v) {
                 reference_at = v;
                 std::string text;
                 if (!r.read_string(v, text)) {
                     return;
                 }
                 auto url = check_upstream(text);
                 if (!url) {
                     r.error(v, url.error().message);
                     return;
                 }
                 s.reference = std::move(*url);
             }},
            {"max_lag_blocks",
             [&](const Value& v) {
                 lag_at = v;
                 r.read_int(v, s.max_lag_blocks, 1, 1'000'000'000);
             }},
        });
    if (reference_at.has_value() != lag_at.has_value()) {
        r.error(reference_at ? *reference_at : *lag_at,
                "reference and max_lag_blocks go together: the node to compare with, and how "
                "far behind it is still synced");
    }
}

void read_tokens(YamlReader& r, const Value& value, std::vector<std::string>& tokens) {
    r.read_map(value, {
                          {"tokens",
                           [&](const Value& v) {
                               r.read_list(v, [&](const Value& item) {
                                   std::string token;
                                   if (!r.read_string(item, token)) {
                                       return;
                                   }
                                   if (token.empty() ||
                                       token.find_first_of(" \t\r\n") != std::string::npos) {
                                       r.error(item, "a token must be non-empty, without spaces");
                                       return;
                                   }
                                   tokens.push_back(std::move(token));
                               });
                           }},
                      });
}

/// One `render:` entry (docs/supervise.md, "Rendered config").
void read_render(YamlReader& r, const Value& value, std::vector<supervisor::RenderSettings>& out) {
    supervisor::RenderSettings render;
    std::optional<Value> template_at;
    auto before = r.error_count();
    r.read_map(
        value,
        {
            {"template",
             [&](const Value& v) {
                 template_at = v;
                 read_checked(r, v, render.template_path, check_not_empty);
             }},
            {"output", [&](const Value& v) { read_checked(r, v, render.output, check_not_empty); }},
            {"values",
             [&](const Value& v) {
                 r.read_entries(v, [&](const Value& key, const Value& item) {
                     const std::string name = key.node.Scalar();
                     if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
                             return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
                         })) {
                         r.error(key, fmt::format("value name \"{}\" must be letters, digits "
                                                  "and '_'",
                                                  name));
                         return;
                     }
                     supervisor::ValueSource source;
                     if (item.node.IsMap()) {
                         bool given = false;
                         r.read_map(item,
                                    {
                                        {"file",
                                         [&](const Value& f) {
                                             given = r.read_string(f, source.text);
                                             source.kind = supervisor::ValueSource::Kind::kFile;
                                         }},
                                        {"env",
                                         [&](const Value& e) {
                                             given = r.read_string(e, source.text);
                                             source.kind = supervisor::ValueSource::Kind::kEnv;
                                         }},
                                    });
                         if (!given) {
                             r.error(item, "expected text, {file: PATH} or {env: NAME}");
                             return;
                         }
                     } else if (!r.read_string(item, source.text)) {
                         return;
                     }
                     render.values.emplace_back(name, std::move(source));
                 });
             }},
            {"keys_url",
             [&](const Value& v) {
                 std::string text;
                 if (!r.read_string(v, text)) {
                     return;
                 }
                 const bool http = text.starts_with("http://") || text.starts_with("https://");
                 const auto host = text.find("://") + 3;
                 if (!http || host >= text.size() || text[host] == '/' ||
                     text.find_first_of(" \t\r\n") != std::string::npos) {
                     r.error(v, fmt::format("expected an http:// or https:// URL like "
                                            "\"http://127.0.0.1:6666/v1/wallet/get_public_keys\", "
                                            "got \"{}\"",
                                            text));
                     return;
                 }
                 render.keys_url = text;
             }},
            {"provider",
             [&](const Value& v) { read_checked(r, v, render.provider, check_not_empty); }},
            {"restart_on_change",
             [&](const Value& v) { r.read_bool(v, render.restart_on_change); }},
        });
    if (r.error_count() != before) {
        return;
    }
    if (render.template_path.empty() || render.output.empty()) {
        r.error(value, "a render needs template (the source) and output (the file the node reads)");
        return;
    }
    // A template readable now is checked now: every name it uses needs a value.
    std::ifstream in{render.template_path, std::ios::binary};
    if (in) {
        std::ostringstream text;
        text << in.rdbuf();
        auto names = supervisor::template_names(text.str(), render.template_path);
        if (!names) {
            r.error(*template_at, names.error().message);
            return;
        }
        for (const auto& name : *names) {
            const bool known = name == "signature_providers" ||
                               std::any_of(render.values.begin(), render.values.end(),
                                           [&](const auto& v) { return v.first == name; });
            if (!known) {
                r.error(*template_at, fmt::format("the template uses {{{{ {} }}}}, which has no "
                                                  "value",
                                                  name));
            }
        }
    }
    out.push_back(std::move(render));
}

void read_producer_settings(YamlReader& r, const Value& value, supervisor::ProducerSettings& p) {
    r.read_map(
        value,
        {
            {"serve", [&](const Value& v) { read_checked(r, v, p.serve, check_serve_url); }},
            {"key", [&](const Value& v) { read_checked(r, v, p.key, check_producer_key); }},
            {"account", [&](const Value& v) { read_checked(r, v, p.account, check_producer_key); }},
            {"token_file",
             [&](const Value& v) {
                 std::string path;
                 if (r.read_string(v, path)) {
                     load_file_secret(r, v, path, p.token);
                 }
             }},
            {"token_env",
             [&](const Value& v) {
                 std::string name;
                 if (r.read_string(v, name)) {
                     load_env_secret(r, v, name, p.token);
                 }
             }},
            {"lease_ttl", [&](const Value& v) { r.read_duration(v, p.lease_ttl); }},
            {"pause_timeout", [&](const Value& v) { r.read_duration(v, p.pause_timeout); }},
        });
}

/// True when one argument of `argv` holds `key` (`{{source}}`).
bool has_template(const std::vector<std::string>& argv, std::string_view key) {
    return std::any_of(argv.begin(), argv.end(),
                       [&](const std::string& arg) { return arg.find(key) != std::string::npos; });
}

/// push and pull (docs/backups.md, "Sync commands"): together, with format dir, each naming the
/// directory it works on. A list read_argv() refused is empty and said so already.
void check_sync_commands(YamlReader& r,
                         const supervisor::BackupFormat& f,
                         const std::optional<Value>& push_at,
                         const std::optional<Value>& pull_at) {
    if (push_at && !f.push.empty()) {
        if (f.archive) {
            r.error(*push_at,
                    "push copies a directory tree: it needs format: dir (tar.zst takes upload and "
                    "download)");
        } else if (!has_template(f.push, "{{source}}")) {
            r.error(*push_at, fmt::format("push needs {{{{source}}}} in an argument, the tree it "
                                          "copies, like {}",
                                          kPushExample));
        } else if (!pull_at) {
            r.error(*push_at,
                    "push needs pull: the command that copies a backup back for a restore");
        }
    }
    if (pull_at && !f.pull.empty()) {
        if (!push_at) {
            r.error(*pull_at, "pull goes with push");
        } else if (!f.archive && !has_template(f.pull, "{{destination}}")) {
            r.error(*pull_at, fmt::format("pull needs {{{{destination}}}} in an argument, the "
                                          "directory it fills, like {}",
                                          kPullExample));
        }
    }
}

void read_backup(YamlReader& r, const Value& value, supervisor::BackupSettings& b, FileRead& file) {
    std::optional<Value> upload_at;
    std::optional<Value> download_at;
    std::optional<Value> push_at;
    std::optional<Value> pull_at;
    r.read_map(
        value,
        {
            {"format",
             [&](const Value& v) {
                 std::string format;
                 if (r.read_choice(v, format, {"dir", "tar.zst"}, "backup format",
                                   "dir, tar.zst")) {
                     b.format.archive = format == "tar.zst";
                 }
             }},
            {"upload",
             [&](const Value& v) {
                 upload_at = v;
                 read_argv(r, v, b.format.upload, kUploadExample);
             }},
            {"download",
             [&](const Value& v) {
                 download_at = v;
                 read_argv(r, v, b.format.download, kUploadExample);
             }},
            {"push",
             [&](const Value& v) {
                 push_at = v;
                 read_argv(r, v, b.format.push, kPushExample);
             }},
            {"pull",
             [&](const Value& v) {
                 pull_at = v;
                 read_argv(r, v, b.format.pull, kPullExample);
             }},
            {"compression_level", [&](const Value& v) { r.read_int(v, b.format.level, 1, 19); }},
            {"compression_threads",
             [&](const Value& v) { r.read_int(v, b.format.threads, 0, 64); }},
            {"idle_timeout", [&](const Value& v) { r.read_duration(v, b.format.idle); }},
            {"dir", [&](const Value& v) { read_checked(r, v, b.dir, check_not_empty); }},
            {"keep", [&](const Value& v) { r.read_int(v, b.keep, 1, 10'000); }},
            {"exclude", [&](const Value& v) { read_globs(r, v, file.backup_exclude); }},
            {"resume_timeout", [&](const Value& v) { r.read_duration(v, b.resume_timeout); }},
            {"restore_on_boot", [&](const Value& v) { r.read_bool(v, b.restore_on_boot); }},
        });
    if (upload_at && !b.format.archive) {
        r.error(*upload_at, "upload takes a stream: it needs format: tar.zst");
    } else if (upload_at && !b.format.upload.empty() && b.format.download.empty()) {
        r.error(*upload_at,
                "upload needs download: the command that gives a backup back for a restore");
    } else if (download_at && b.format.upload.empty()) {
        r.error(*download_at, "download goes with upload");
    }
    check_sync_commands(r, b.format, push_at, pull_at);
}

void read_supervise_root(YamlReader& r,
                         const Value& root,
                         supervisor::Settings& s,
                         FileRead& file) {
    r.read_map(
        root,
        {
            {"name", [&](const Value& v) { read_checked(r, v, s.name, check_node_name); }},
            {"chain",
             [&](const Value& v) {
                 if (r.read_string(v, file.chain)) {
                     file.chain_at = v;
                 }
             }},
            {"preset",
             [&](const Value& v) {
                 file.preset_at = v;
                 Preset preset;
                 if (read_preset(r, v, preset, file.preset_metric_names_at)) {
                     file.preset = std::move(preset);
                 }
             }},
            {"program", [&](const Value& v) { read_program(r, v, s.program, file); }},
            {"restart", [&](const Value& v) { read_restart(r, v, s.restart); }},
            {"stop", [&](const Value& v) { read_stop(r, v, s.stop); }},
            {"synced", [&](const Value& v) { read_synced(r, v, s.synced); }},
            {"control", [&](const Value& v) { read_checked(r, v, s.control, check_host_port); }},
            {"proxy", [&](const Value& v) { read_checked(r, v, s.proxy, check_proxy); }},
            {"upstream",
             [&](const Value& v) {
                 std::string text;
                 if (!r.read_string(v, text)) {
                     return;
                 }
                 auto url = check_upstream(text);
                 if (!url) {
                     r.error(v, url.error().message);
                     return;
                 }
                 s.upstream = std::move(*url);
             }},
            {"state_dir",
             [&](const Value& v) {
                 file.state_dir_given = true;
                 read_checked(r, v, s.state_dir, check_not_empty);
             }},
            {"data_dir", [&](const Value& v) { read_checked(r, v, s.data_dir, check_nothing); }},
            {"chain_id", [&](const Value& v) { read_checked(r, v, s.chain_id, check_chain_id); }},
            {"advertise",
             [&](const Value& v) { read_checked(r, v, s.advertise, check_advertise); }},
            {"backup", [&](const Value& v) { read_backup(r, v, s.backup, file); }},
            {"bp_mode", [&](const Value& v) { r.read_bool(v, s.producer.bp_mode); }},
            {"producer", [&](const Value& v) { read_producer_settings(r, v, s.producer); }},
            {"render",
             [&](const Value& v) {
                 r.read_list(v, [&](const Value& item) { read_render(r, item, s.render); });
             }},
            {"log_ring_lines",
             [&](const Value& v) {
                 std::int64_t n = 0;
                 if (r.read_int(v, n, 1, 100'000)) {
                     s.log_ring_lines = static_cast<std::size_t>(n);
                 }
             }},
            {"auth", [&](const Value& v) { read_tokens(r, v, s.tokens); }},
            {"ship_logs",
             [&](const Value& v) {
                 r.read_map(
                     v, {
                            {"enabled", [&](const Value& e) { r.read_bool(e, s.ship.enabled); }},
                            {"service", [&](const Value& e) { r.read_string(e, s.ship.service); }},
                            {"max_buffer",
                             [&](const Value& e) { r.read_bytes(e, s.ship.max_buffer_bytes); }},
                        });
             }},
            {"log_metrics",
             [&](const Value& v) {
                 read_log_rules(r, v, file.log_metrics, file.log_metric_names_at);
             }},
        });
}

/// Reads the file into `s` and `file`; its errors are left in `r`. kNotFound and errors of
/// the file as a whole (unreadable, not YAML) come back at once.
core::Result<void> read_supervise_file(const std::string& path,
                                       YamlReader& r,
                                       supervisor::Settings& s,
                                       FileRead& file) {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("supervise file \"{}\" does not exist", path)};
    }
    if (fs::is_directory(path, ec)) {
        return invalid(fmt::format("supervise file \"{}\" is a directory", path));
    }
    std::ifstream in{path, std::ios::binary};
    if (!in) {
        return invalid(fmt::format("cannot read supervise file \"{}\": {}", path,
                                   std::generic_category().message(errno)));
    }
    std::ostringstream text;
    text << in.rdbuf();
    auto root = parse_document(text.str(), path);
    if (!root) {
        return root.error();
    }
    try {
        read_supervise_root(r, Value{*root, "", root->Mark()}, s, file);
    } catch (const YAML::Exception& e) {
        // The reader checks node types before reading them; this is yaml-cpp failing anyway.
        r.error(e.mark, "", e.msg);
    }
    return {};
}

/// Sets `out` to the flag's value when the flag is set and `check` finds no problem with it;
/// a problem goes to `problems` as `--flag: message`.
void apply_flag(const std::optional<std::string>& flag,
                std::string_view name,
                const Check& check,
                std::string& out,
                std::vector<std::string>& problems) {
    if (!flag) {
        return;
    }
    if (auto problem = check(*flag)) {
        problems.push_back(fmt::format("{}: {}", name, *problem));
        return;
    }
    out = *flag;
}

/// Applies the flags over the file; their problems go to `problems` as `--flag: message`.
void apply_flags(const SuperviseFlags& flags,
                 supervisor::Settings& s,
                 FileRead& file,
                 std::vector<std::string>& problems) {
    apply_flag(flags.name, "--name", check_node_name, s.name, problems);
    apply_flag(flags.control, "--control", check_host_port, s.control, problems);
    apply_flag(flags.proxy, "--proxy", check_proxy, s.proxy, problems);
    apply_flag(flags.data_dir, "--data-dir", check_nothing, s.data_dir, problems);
    apply_flag(flags.state_dir, "--state-dir", check_not_empty, s.state_dir, problems);
    apply_flag(flags.chain_id, "--chain-id", check_chain_id, s.chain_id, problems);
    apply_flag(flags.backup_dir, "--backup-dir", check_not_empty, s.backup.dir, problems);
    apply_flag(flags.serve, "--serve", check_serve_url, s.producer.serve, problems);
    apply_flag(flags.producer_key, "--producer-key", check_producer_key, s.producer.key, problems);
    apply_flag(flags.producer_account, "--producer-account", check_producer_key, s.producer.account,
               problems);
    apply_flag(flags.advertise, "--advertise", check_advertise, s.advertise, problems);
    if (flags.no_ship_logs) {
        s.ship.enabled = false;
    }
    if (flags.bp_mode) {
        s.producer.bp_mode = true;
    }
    if (flags.state_dir) {
        file.state_dir_given = true;
    }
    if (flags.upstream) {
        if (auto url = check_upstream(*flags.upstream)) {
            s.upstream = std::move(*url);
        } else {
            problems.push_back(fmt::format("--upstream: {}", url.error().message));
        }
    }
    if (flags.restart) {
        if (auto policy = policy_of(*flags.restart)) {
            s.restart.policy = *policy;
        } else {
            problems.push_back(fmt::format("--restart: {}", unknown_policy(*flags.restart)));
        }
    }
    if (!flags.command.empty()) {
        if (flags.command.front().empty()) {
            problems.emplace_back("--: the command's program is empty");
        } else {
            s.program.argv = flags.command;
        }
    }
}

/// Picks the chain (--chain, else the file's `chain`, else Settings's) and its preset: the
/// file's own preset when it has that name, else the built-in one.
void resolve_chain(YamlReader& r,
                   const SuperviseFlags& flags,
                   supervisor::Settings& s,
                   FileRead& file,
                   std::vector<std::string>& problems) {
    // The file's preset is named by the file's chain, or else by --chain.
    const std::string preset_name = file.chain_at ? file.chain : flags.chain.value_or("");
    if (file.preset_at) {
        if (preset_name.empty()) {
            r.error(*file.preset_at, "name the preset with chain: (the chain it is for)");
            file.preset.reset();
        } else if (auto why = check_chain_name(preset_name)) {
            r.error(file.chain_at ? *file.chain_at : *file.preset_at, *why);
            file.preset.reset();
        } else if (file.preset) {
            file.preset->name = preset_name;
        }
    }
    if (flags.chain) {
        s.chain = *flags.chain;
    } else if (file.chain_at) {
        s.chain = file.chain;
    }
    if (file.preset_at && !preset_name.empty() && s.chain == preset_name) {
        // The file's own preset: its errors, if any, are reported already.
        if (file.preset) {
            s.preset = *file.preset;
            file.own_preset = true;
        }
        return;
    }
    auto builtin = chain_preset(s.chain);
    if (builtin) {
        s.preset = std::move(*builtin);
        return;
    }
    auto message =
        fmt::format("unknown chain \"{}\" (known: {})", s.chain, known_chains(file.preset));
    if (flags.chain || !file.chain_at) {
        problems.push_back(fmt::format("--chain: {}", message));
    } else {
        r.error(*file.chain_at, message);
    }
}

}  // namespace

core::Result<std::vector<supervisor::Preset>> read_chains(std::string_view yaml,
                                                          std::string_view source) {
    auto root = parse_document(yaml, source);
    if (!root) {
        return root.error();
    }
    YamlReader r{std::string{source}};
    std::vector<Preset> presets;
    try {
        presets = read_chains_root(r, Value{*root, "", root->Mark()});
    } catch (const YAML::Exception& e) {
        r.error(e.mark, "", e.msg);
    }
    if (auto failure = r.failure()) {
        return *failure;
    }
    return presets;
}

std::vector<std::string> chain_preset_names() {
    std::vector<std::string> names;
    for (const auto& preset : builtin_presets()) {
        names.push_back(preset.name);
    }
    return names;
}

core::Result<supervisor::Preset> chain_preset(std::string_view name) {
    const auto& presets = builtin_presets();
    auto it = std::find_if(presets.begin(), presets.end(),
                           [&](const Preset& p) { return p.name == name; });
    if (it == presets.end()) {
        return core::Error{
            core::ErrorCode::kNotFound,
            fmt::format("unknown chain \"{}\" (known: {})", name, known_chains(std::nullopt))};
    }
    return *it;
}

core::Result<supervisor::Settings> load_supervise(const std::string& path,
                                                  const SuperviseFlags& flags) {
    supervisor::Settings s;
    YamlReader r{path};
    FileRead file;
    if (!path.empty()) {
        if (auto read = read_supervise_file(path, r, s, file); !read) {
            return read.error();
        }
    }
    std::vector<std::string> problems;
    apply_flags(flags, s, file, problems);
    resolve_chain(r, flags, s, file, problems);
    if (s.program.argv.empty() && !file.command_given) {
        problems.emplace_back(kNoCommand);
    }
    if (!file.state_dir_given && !s.data_dir.empty()) {
        s.state_dir = (fs::path{s.data_dir} / kStateUnderData).string();
    }
    // What is never backed up: the built-in list, the preset's, the file's.
    s.backup.exclude = supervisor::kBackupExcludes;
    s.backup.exclude.insert(s.backup.exclude.end(), s.preset.backup_exclude.begin(),
                            s.preset.backup_exclude.end());
    s.backup.exclude.insert(s.backup.exclude.end(), file.backup_exclude.begin(),
                            file.backup_exclude.end());
    if (s.producer.bp_mode) {
        const auto& preset = s.preset;
        if (preset.producer_pause.empty() || preset.producer_resume.empty() ||
            preset.producer_paused.empty() || preset.passive_args.empty()) {
            problems.push_back(fmt::format(
                "bp mode needs a chain preset with a producer API and passive_args (how the "
                "node starts paused); {} has {}",
                s.chain, preset.producer_pause.empty() ? "no producer API" : "no passive_args"));
        }
    }
    if (s.producer.bp_mode && !s.producer.serve.empty() && s.producer.key.empty()) {
        problems.emplace_back(
            "producer.key is required in bp mode with --serve (producer.serve): the signing key "
            "or producer account the nodes of one producer share");
    }
    if (!s.backup.dir.empty() && s.data_dir.empty()) {
        problems.emplace_back(
            "backup.dir needs data_dir (--data-dir): the directory the backups copy");
    }
    // The preset's log metrics, then the file's; one name, one metric.
    s.log_metrics = s.preset.log_metrics;
    // (The file's list has no name twice: read_log_rules saw to that.)
    for (std::size_t i = 0; i < file.log_metrics.size(); ++i) {
        auto& rule = file.log_metrics[i];
        const auto& presets = s.preset.log_metrics;
        auto taken = std::find_if(presets.begin(), presets.end(),
                                  [&](const auto& other) { return other.name == rule.name; });
        if (taken != presets.end()) {
            const auto n = static_cast<std::size_t>(taken - presets.begin());
            r.error(file.log_metric_names_at[i],
                    file.own_preset && n < file.preset_metric_names_at.size()
                        ? fmt::format("log metric {} is defined twice (also at {})", rule.name,
                                      given_at(file.preset_metric_names_at[n]))
                        : fmt::format("log metric {} is defined twice (the built-in {} preset "
                                      "has it too)",
                                      rule.name, s.preset.name));
            continue;
        }
        s.log_metrics.push_back(std::move(rule));
    }
    std::string message;
    if (auto failure = r.failure()) {
        message = failure->message;
    }
    for (const auto& problem : problems) {
        message += message.empty() ? "" : "\n";
        message += problem;
    }
    if (!message.empty()) {
        return invalid(std::move(message));
    }
    return s;
}

}  // namespace aviary::config
