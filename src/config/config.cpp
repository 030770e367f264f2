#include "config/config.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <sstream>

#include "config/embedded.hpp"
#include "config/jobs_reader.hpp"
#include "config/notify_reader.hpp"
#include "config/probes_reader.hpp"
#include "config/secrets.hpp"
#include "config/yaml_reader.hpp"
#include "core/regex.hpp"

namespace aviary::config {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kInlineSecret =
    "tokens must come from a file or an environment variable, never inline";

/// Where the first of several same-named things was declared, for "declared twice" messages.
using FirstSeen = std::map<std::string, int, std::less<>>;

void read_log(YamlReader& r, const Value& value, LogSettings& log) {
    // The names core::configure_logging accepts (spdlog's, with its short aliases); it is not
    // called here because loading a config must not reconfigure the running process.
    r.read_map(value,
               {
                   {"level",
                    [&](const Value& v) {
                        r.read_choice(v, log.level,
                                      {"trace", "debug", "info", "warn", "warning", "error", "err",
                                       "critical", "off"},
                                      "log level", "trace, debug, info, warn, error, off");
                    }},
                   {"format",
                    [&](const Value& v) {
                        r.read_choice(v, log.format, {"text", "json"}, "log format", "text, json");
                    }},
               });
}

/// One `logs.retention` rule: a selector (service or sender, node, source, level, scope; at
/// least one) and a window.
void read_retention_rule(YamlReader& r, const Value& value, std::vector<logs::RetentionRule>& out) {
    logs::RetentionRule rule;
    bool has_window = false;
    const auto before = r.error_count();
    auto glob_of = [&r](std::optional<std::string>& out, std::string_view what) {
        return [&r, &out, what](const Value& v) {
            std::string glob;
            if (r.read_string(v, glob) && glob.empty()) {
                r.error(v,
                        fmt::format("must not be empty: {}, or a glob like \"validator-*\"", what));
            } else if (!glob.empty()) {
                out = std::move(glob);
            }
        };
    };
    bool ok = r.read_map(
        value,
        {
            {"kind",
             [&](const Value& v) {
                 std::string kind;
                 if (r.read_choice(v, kind, {"logs", "notifications"}, "kind",
                                   "logs, notifications")) {
                     rule.kind =
                         kind == "logs" ? store::LogKind::kLog : store::LogKind::kNotification;
                 }
             }},
            {"sender", glob_of(rule.selector.sender_glob, "a sender")},
            {"service", glob_of(rule.selector.sender_glob, "a service")},
            {"node", glob_of(rule.selector.node_glob, "a node")},
            {"source", glob_of(rule.selector.source_glob, "a source")},
            {"level",
             [&](const Value& v) {
                 int level = 0;
                 if (r.read_int(v, level, std::numeric_limits<int>::min(),
                                std::numeric_limits<int>::max())) {
                     rule.selector.max_level = level;
                 }
             }},
            {"scope",
             [&](const Value& v) {
                 std::string scope;
                 if (r.read_string(v, scope)) {
                     rule.selector.scope = std::move(scope);
                 }
             }},
            {"window", [&](const Value& v) { has_window = r.read_duration(v, rule.window); }},
        });
    if (!ok || r.error_count() != before) {
        return;
    }
    if (!has_window) {
        r.error(value, "a retention rule needs a window: how long its records are kept");
        return;
    }
    if (!rule.selector.sender_glob && !rule.selector.node_glob && !rule.selector.source_glob &&
        !rule.selector.max_level && !rule.selector.scope) {
        r.error(value,
                "a retention rule needs a service (sender), node, source, level or scope to "
                "select its records "
                "(the kind's own window is logs_timewindow)");
        return;
    }
    out.push_back(std::move(rule));
}

void read_logs(YamlReader& r, const Value& value, logs::Settings& s) {
    auto count = [&](const Value& v, std::size_t& out, std::int64_t max) {
        std::int64_t n = 0;
        if (r.read_int(v, n, 1, max)) {
            out = static_cast<std::size_t>(n);
        }
    };
    r.read_map(
        value,
        {
            {"path", [&](const Value& v) { r.read_string(v, s.store.path); }},
            {"synchronous",
             [&](const Value& v) {
                 r.read_choice(v, s.store.synchronous, {"full", "normal"}, "synchronous mode",
                               "full, normal");
             }},
            {"logs_timewindow", [&](const Value& v) { r.read_duration(v, s.logs_window); }},
            {"notifications_timewindow",
             [&](const Value& v) {
                 // 0s keeps notifications: Bitahoy's "not cleared".
                 if (v.node.IsScalar() && core::parse_duration(v.node.Scalar()) &&
                     core::parse_duration(v.node.Scalar())->count() == 0) {
                     s.notifications_window = core::Millis{0};
                     return;
                 }
                 r.read_duration(v, s.notifications_window);
             }},
            {"cleanup_interval", [&](const Value& v) { r.read_duration(v, s.cleanup_interval); }},
            {"idle_timeout", [&](const Value& v) { r.read_duration(v, s.idle_timeout); }},
            {"redact",
             [&](const Value& v) {
                 r.read_list(v, [&](const Value& item) {
                     logs::RedactRule rule;
                     std::optional<Value> pattern_at;
                     bool ok = r.read_map(
                         item, {
                                   {"pattern",
                                    [&](const Value& p) {
                                        pattern_at = p;
                                        r.read_string(p, rule.pattern);
                                    }},
                                   {"replacement",
                                    [&](const Value& p) { r.read_string(p, rule.replacement); }},
                               });
                     if (!ok) {
                         return;
                     }
                     if (!pattern_at || rule.pattern.empty()) {
                         r.error(item, "a redaction rule needs a pattern (a regular expression)");
                         return;
                     }
                     auto compiled = core::Regex::compile(rule.pattern);
                     if (!compiled) {
                         r.error(*pattern_at, compiled.error().message);
                         return;
                     }
                     for (std::size_t i = 0; i + 1 < rule.replacement.size(); ++i) {
                         const char c = rule.replacement[i + 1];
                         if (rule.replacement[i] == '$' && c >= '0' && c <= '9' &&
                             c - '0' > compiled->groups()) {
                             r.error(item, fmt::format("the replacement uses ${} but the pattern "
                                                       "has {} group(s)",
                                                       c, compiled->groups()));
                             return;
                         }
                     }
                     s.redact.push_back(std::move(rule));
                 });
             }},
            {"retention",
             [&](const Value& v) {
                 r.read_list(v,
                             [&](const Value& item) { read_retention_rule(r, item, s.retention); });
             }},
            {"max_upload", [&](const Value& v) { count(v, s.max_upload, 1'000'000); }},
            {"max_message_bytes", [&](const Value& v) { r.read_bytes(v, s.max_message_bytes); }},
            {"max_label_bytes", [&](const Value& v) { r.read_bytes(v, s.max_label_bytes); }},
            {"max_fields", [&](const Value& v) { count(v, s.max_fields, 1'000); }},
            {"max_fields_bytes", [&](const Value& v) { r.read_bytes(v, s.max_fields_bytes); }},
            {"max_streams_per_scope",
             [&](const Value& v) { count(v, s.store.max_streams_per_scope, 10'000'000); }},
            {"partition_interval",
             [&](const Value& v) {
                 if (r.read_duration(v, s.store.partition_interval) &&
                     s.store.partition_interval < std::chrono::minutes{1}) {
                     r.error(v, fmt::format("must be at least 1m, got {}",
                                            core::format_duration(s.store.partition_interval)));
                 }
             }},
            {"max_results", [&](const Value& v) { count(v, s.max_results, 1'000'000); }},
            {"tail_max_duration", [&](const Value& v) { r.read_duration(v, s.tail_max_duration); }},
            {"max_tails_per_identity",
             [&](const Value& v) { r.read_int(v, s.max_tails_per_identity, 1, 10'000); }},
        });
    // auth's reply says the timeout in whole seconds.
    if (s.idle_timeout < std::chrono::seconds{1}) {
        r.error(value, fmt::format("logs.idle_timeout must be at least 1s, got {}",
                                   core::format_duration(s.idle_timeout)));
    }
}

void read_listen(YamlReader& r, const Value& value, std::string& listen) {
    std::string text;
    if (!r.read_string(value, text)) {
        return;
    }
    auto split = net::split_host_port(text);
    if (!split) {
        r.error(value, split.error().message);
        return;
    }
    listen = std::move(text);
}

void read_tls(YamlReader& r,
              const Value& value,
              net::TlsServerSettings& s,
              const fs::path& base_dir) {
    std::optional<Value> cert_at;
    std::optional<Value> key_at;
    std::optional<Value> ca_at;
    std::optional<Value> require_at;
    auto remember = [](std::optional<Value>& at) { return [&at](const Value& v) { at = v; }; };
    bool ok = r.read_map(value, {
                                    {"cert_file", remember(cert_at)},
                                    {"key_file", remember(key_at)},
                                    {"client_ca_file", remember(ca_at)},
                                    {"require_client_cert", remember(require_at)},
                                });
    if (!ok) {
        return;
    }
    if (cert_at) {
        read_file_setting(r, *cert_at, "TLS certificate file", base_dir, s.cert_file);
    }
    if (key_at) {
        read_file_setting(r, *key_at, "TLS key file", base_dir, s.key_file);
    }
    if (ca_at) {
        read_file_setting(r, *ca_at, "TLS client CA file", base_dir, s.client_ca_file);
    }
    if (require_at) {
        r.read_bool(*require_at, s.require_client_cert);
    }
    check_cert_and_key(r, cert_at, key_at, "set both to serve TLS");
    if (file_given(ca_at) && !file_given(cert_at)) {
        r.error(*ca_at,
                "client_ca_file needs cert_file and key_file: client certificates are "
                "checked only over TLS");
    }
    if (s.require_client_cert && !file_given(ca_at)) {
        r.error(*require_at, "require_client_cert needs client_ca_file to verify them against");
    }
}

void read_websocket(YamlReader& r, const Value& value, net::WebSocketSettings& s) {
    std::string slow_reader = s.slow_reader == net::SlowReader::kDrop ? "drop" : "close";
    r.read_map(
        value,
        {
            {"max_message_bytes", [&](const Value& v) { r.read_bytes(v, s.max_message_bytes); }},
            {"idle_timeout", [&](const Value& v) { r.read_duration(v, s.idle_timeout); }},
            {"max_queued_messages",
             [&](const Value& v) {
                 int n = static_cast<int>(s.max_queued_messages);
                 if (r.read_int(v, n, 1, 1'000'000)) {
                     s.max_queued_messages = static_cast<std::size_t>(n);
                 }
             }},
            {"max_queued_bytes", [&](const Value& v) { r.read_bytes(v, s.max_queued_bytes); }},
            {"slow_reader",
             [&](const Value& v) {
                 r.read_choice(v, slow_reader, {"close", "drop"}, "slow reader policy",
                               "close, drop");
             }},
            {"close_timeout", [&](const Value& v) { r.read_duration(v, s.close_timeout); }},
            {"deflate", [&](const Value& v) { r.read_bool(v, s.deflate); }},
            {"deflate_min_bytes", [&](const Value& v) { r.read_bytes(v, s.deflate_min_bytes); }},
        });
    s.slow_reader = slow_reader == "drop" ? net::SlowReader::kDrop : net::SlowReader::kClose;
}

void read_server(YamlReader& r,
                 const Value& value,
                 net::ServerSettings& s,
                 const fs::path& base_dir) {
    r.read_map(
        value,
        {
            {"listen", [&](const Value& v) { read_listen(r, v, s.listen); }},
            {"io_threads", [&](const Value& v) { r.read_int(v, s.io_threads, 1, 64); }},
            {"blocking_threads",
             [&](const Value& v) { r.read_int(v, s.blocking_threads, 1, 1024); }},
            {"max_header_bytes", [&](const Value& v) { r.read_bytes(v, s.max_header_bytes); }},
            {"max_body_bytes", [&](const Value& v) { r.read_bytes(v, s.max_body_bytes); }},
            {"read_timeout", [&](const Value& v) { r.read_duration(v, s.read_timeout); }},
            {"idle_timeout", [&](const Value& v) { r.read_duration(v, s.idle_timeout); }},
            {"write_timeout", [&](const Value& v) { r.read_duration(v, s.write_timeout); }},
            {"max_connections",
             [&](const Value& v) { r.read_int(v, s.max_connections, 1, 1'000'000); }},
            {"shutdown_grace", [&](const Value& v) { r.read_duration(v, s.shutdown_grace); }},
            {"tls", [&](const Value& v) { read_tls(r, v, s.tls, base_dir); }},
            {"websocket", [&](const Value& v) { read_websocket(r, v, s.websocket); }},
        });
}

void read_store_driver(YamlReader& r, const Value& value, std::string& driver) {
    std::string text;
    if (!r.read_string(value, text)) {
        return;
    }
    if (text == "postgresql") {
        text = "postgres";
    }
    if (text != "sqlite" && text != "postgres") {
        r.error(value, fmt::format("unknown store driver \"{}\" (sqlite, postgres)", text));
        return;
    }
    driver = std::move(text);
}

/// store.url: checked by check_store_url.
void read_store_url(YamlReader& r, const Value& value, std::string& url) {
    std::string text;
    if (!r.read_string(value, text)) {
        return;
    }
    if (auto problem = check_store_url(text)) {
        r.error(value, *problem);
        return;
    }
    url = std::move(text);
}

void read_store(YamlReader& r,
                const Value& value,
                store::Settings& s,
                const std::filesystem::path& base_dir) {
    SecretSource password;
    std::optional<Value> driver_at;
    std::optional<Value> url_at;
    r.read_map(
        value,
        {
            {"driver",
             [&](const Value& v) {
                 driver_at = v;
                 read_store_driver(r, v, s.driver);
             }},
            {"path", [&](const Value& v) { r.read_string(v, s.path); }},
            {"url",
             [&](const Value& v) {
                 url_at = v;
                 read_store_url(r, v, s.url);
             }},
            {"password_file",
             [&](const Value& v) {
                 password.file_at = v;
                 r.read_string(v, password.file);
             }},
            {"password_env",
             [&](const Value& v) {
                 password.env_at = v;
                 r.read_string(v, password.env);
             }},
            {"connect_timeout", [&](const Value& v) { r.read_duration(v, s.connect_timeout); }},
            {"synchronous",
             [&](const Value& v) {
                 r.read_choice(v, s.synchronous, {"full", "normal"}, "synchronous mode",
                               "full, normal");
             }},
            {"read_connections", [&](const Value& v) { r.read_int(v, s.read_connections, 1, 64); }},
            {"busy_timeout", [&](const Value& v) { r.read_duration(v, s.busy_timeout); }},
            {"event_retention", [&](const Value& v) { r.read_duration(v, s.event_retention); }},
            {"retention_sweep", [&](const Value& v) { r.read_duration(v, s.retention_sweep); }},
            {"heartbeat", [&](const Value& v) { r.read_duration(v, s.heartbeat); }},
            {"leader_ttl", [&](const Value& v) { r.read_duration(v, s.leader_ttl); }},
        });
    if (s.leader_ttl <= s.heartbeat) {
        r.error(
            value,
            fmt::format("store.leader_ttl ({}) must be longer than store.heartbeat ({}): "
                        "a leader would lapse between its beats",
                        core::format_duration(s.leader_ttl), core::format_duration(s.heartbeat)));
    }
    std::string password_path;
    load_source(r, password, "password", base_dir, password_path, s.password);
    // A URL says PostgreSQL; saying sqlite beside it is a contradiction worth naming.
    if (url_at && !driver_at) {
        s.driver = "postgres";
    }
    if (s.driver == "postgres" && s.url.empty() && !url_at) {
        r.error(driver_at ? *driver_at : value,
                "the postgres store needs store.url (postgresql://user@host:5432/database)");
    }
    if (s.driver == "sqlite" && url_at && driver_at) {
        r.error(*url_at, "store.url is for driver postgres; driver is sqlite");
    }
}

/// What a named entry of a list (a node, a machine, a worker id) is told when its name is
/// missing, invalid or taken.
struct EntryName {
    std::string_view missing;  ///< "a node needs a name"
    /// The reason a present name is refused, or nothing.
    std::function<std::optional<std::string>(const std::string&)> invalid;
    /// The message for a name seen before, given the line it was first seen on.
    std::function<std::string(int)> twice;
};

/// True when the entry has a name (`at` set where it was read), the name is valid and it is the
/// first of its kind in `seen`; otherwise reports the error and returns false.
bool check_entry_name(YamlReader& r,
                      const Value& entry,
                      const std::optional<Value>& at,
                      const std::string& name,
                      FirstSeen& seen,
                      const EntryName& rules) {
    if (!at) {
        r.error(entry, std::string{rules.missing});
        return false;
    }
    if (auto why = rules.invalid(name)) {
        r.error(*at, *why);
        return false;
    }
    auto [first, inserted] = seen.emplace(name, at->mark.line + 1);
    if (!inserted) {
        r.error(*at, rules.twice(first->second));
        return false;
    }
    return true;
}

/// Why `name` is not a DNS-1123 label, as a `kind` ("node", "machine") name.
std::optional<std::string> not_a_label(std::string_view kind, const std::string& name) {
    if (core::is_dns_label(name)) {
        return std::nullopt;
    }
    return fmt::format(
        "{} name \"{}\" is not a DNS-1123 label (1-63 of a-z, 0-9 and '-', "
        "starting and ending with a letter or digit)",
        kind, name);
}

void read_node(YamlReader& r,
               const Value& value,
               std::vector<core::NodeSpec>& nodes,
               FirstSeen& seen) {
    core::NodeSpec spec;
    std::optional<Value> name_at;
    std::optional<Value> control_at;
    bool ok = r.read_map(
        value, {
                   {"name",
                    [&](const Value& v) {
                        if (r.read_string(v, spec.name)) {
                            name_at = v;
                        }
                    }},
                   {"driver",
                    [&](const Value& v) {
                        r.read_choice(v, spec.driver, {"sim", "helm", "sidecar"}, "node driver",
                                      "sim, helm, sidecar");
                    }},
                   {"control_url",
                    [&](const Value& v) {
                        if (r.read_string(v, spec.control_url)) {
                            control_at = v;
                        }
                    }},
                   {"image_tag", [&](const Value& v) { r.read_string(v, spec.image_tag); }},
                   {"labels", [&](const Value& v) { r.read_string_map(v, spec.labels); }},
                   {"note", [&](const Value& v) { r.read_string(v, spec.note); }},
               });
    if (!ok) {
        return;
    }
    const EntryName rules{
        .missing = "a node needs a name",
        .invalid = [](const std::string& name) { return not_a_label("node", name); },
        .twice =
            [&](int line) {
                return fmt::format("node \"{}\" is declared twice (first at line {})", spec.name,
                                   line);
            },
    };
    if (!check_entry_name(r, value, name_at, spec.name, seen, rules)) {
        return;
    }
    if (auto valid = fleet::check_control_url(spec); !valid) {
        r.error(control_at ? *control_at : value, valid.error().message);
        return;
    }
    nodes.push_back(std::move(spec));
}

void read_host(YamlReader& r, const Value& v, std::string& out, bool port_allowed) {
    std::string text;
    if (!r.read_string(v, text)) {
        return;
    }
    if (!text.empty() && !fleet::is_host(text, port_allowed)) {
        r.error(v, fmt::format("\"{}\" is not a host name or IP address{}", text,
                               port_allowed ? " (optionally with :PORT)" : ""));
        return;
    }
    out = std::move(text);
}

/// A machine's ssh or IPMI user: a plain name (it reaches a tool's argv).
void read_user(YamlReader& r, const Value& value, std::string& out) {
    std::string text;
    if (!r.read_string(value, text)) {
        return;
    }
    if (!fleet::is_user_name(text)) {
        r.error(value, fmt::format("\"{}\" is not a user name (1-64 of A-Z, a-z, 0-9, '.', '_', "
                                   "'@' and '-', not starting with '-')",
                                   text.size() > 80 ? text.substr(0, 80) + "..." : text));
        return;
    }
    out = std::move(text);
}

/// fleet.machines[]: a node with driver ssh or none and how to reach the host.
void read_machine(YamlReader& r,
                  const Value& value,
                  std::vector<core::NodeSpec>& nodes,
                  FirstSeen& seen) {
    core::NodeSpec spec;
    spec.driver = "ssh";
    core::MachineSpec machine;
    std::optional<Value> name_at;
    std::optional<Value> outlet_at;
    bool host_given = false;  // a bad one has its own error
    bool ok = r.read_map(
        value,
        {
            {"name",
             [&](const Value& v) {
                 if (r.read_string(v, spec.name)) {
                     name_at = v;
                 }
             }},
            {"driver",
             [&](const Value& v) {
                 r.read_choice(v, spec.driver, {"ssh", "none"}, "machine driver", "ssh, none");
             }},
            {"hostname",
             [&](const Value& v) {
                 host_given = true;
                 read_host(r, v, machine.hostname, false);
             }},
            {"address",
             [&](const Value& v) {
                 host_given = true;
                 read_host(r, v, machine.address, false);
             }},
            {"ssh_user", [&](const Value& v) { read_user(r, v, machine.ssh_user); }},
            {"ssh_port", [&](const Value& v) { r.read_int(v, machine.ssh_port, 1, 65535); }},
            {"ipmi_address", [&](const Value& v) { read_host(r, v, machine.ipmi_address, true); }},
            {"ipmi_user", [&](const Value& v) { read_user(r, v, machine.ipmi_user); }},
            {"pdu_host", [&](const Value& v) { read_host(r, v, machine.pdu_host, true); }},
            {"pdu_outlet",
             [&](const Value& v) {
                 outlet_at = v;
                 r.read_int(v, machine.pdu_outlet, 0, 4096);
             }},
            {"groups", [&](const Value& v) { read_groups(r, v, machine.groups); }},
            {"labels", [&](const Value& v) { r.read_string_map(v, spec.labels); }},
            {"note", [&](const Value& v) { r.read_string(v, spec.note); }},
        });
    if (!ok) {
        return;
    }
    const EntryName rules{
        .missing = "a machine needs a name",
        .invalid = [](const std::string& name) { return not_a_label("machine", name); },
        .twice =
            [&](int line) {
                return fmt::format(
                    "\"{}\" is declared twice (first at line {}): machines and "
                    "nodes share one namespace",
                    spec.name, line);
            },
    };
    if (!check_entry_name(r, value, name_at, spec.name, seen, rules)) {
        return;
    }
    if (!host_given) {
        r.error(value, fmt::format("machine \"{}\" needs a hostname or an address", spec.name));
        return;
    }
    if (machine.pdu_host.empty() != (machine.pdu_outlet == 0)) {
        r.error(
            outlet_at ? *outlet_at : value,
            fmt::format("machine \"{}\": pdu_host and pdu_outlet (from 1) go together", spec.name));
        return;
    }
    if (machine.ssh_user.empty()) {
        r.error(value, fmt::format("machine \"{}\": ssh_user is empty", spec.name));
        return;
    }
    spec.machine = std::move(machine);
    nodes.push_back(std::move(spec));
}

struct WorkerAt {
    core::WorkerId worker;
    Value machine_at;
};

void read_worker_id(YamlReader& r,
                    const Value& value,
                    std::vector<WorkerAt>& workers,
                    FirstSeen& seen) {
    core::WorkerId worker;
    std::optional<Value> id_at;
    std::optional<Value> machine_at;
    bool ok = r.read_map(value, {
                                    {"id",
                                     [&](const Value& v) {
                                         if (r.read_string(v, worker.id)) {
                                             id_at = v;
                                         }
                                     }},
                                    {"machine",
                                     [&](const Value& v) {
                                         if (r.read_string(v, worker.machine)) {
                                             machine_at = v;
                                         }
                                     }},
                                });
    if (!ok) {
        return;
    }
    const EntryName rules{
        .missing = "a worker id needs an id",
        .invalid = [](const std::string& id) -> std::optional<std::string> {
            if (fleet::is_worker_id(id)) {
                return std::nullopt;
            }
            return fmt::format(
                "worker id \"{}\" must be 1-128 of A-Z, a-z, 0-9, '.', '_' and '-', not starting "
                "with '-'",
                id);
        },
        .twice =
            [&](int line) {
                return fmt::format("worker id \"{}\" is listed twice (first at line {})", worker.id,
                                   line);
            },
    };
    if (!check_entry_name(r, value, id_at, worker.id, seen, rules)) {
        return;
    }
    workers.push_back(
        WorkerAt{.worker = std::move(worker), .machine_at = machine_at ? *machine_at : value});
}

/// Every worker id names a declared machine, or none.
void check_worker_machines(YamlReader& r,
                           const std::vector<WorkerAt>& workers,
                           const std::vector<core::NodeSpec>& nodes) {
    for (const auto& [worker, at] : workers) {
        if (worker.machine.empty()) {
            continue;
        }
        auto it = std::find_if(nodes.begin(), nodes.end(),
                               [&](const auto& n) { return n.name == worker.machine; });
        if (it == nodes.end()) {
            r.error(at, fmt::format("worker id \"{}\": no machine \"{}\" is declared in "
                                    "fleet.machines",
                                    worker.id, worker.machine));
        } else if (!it->machine) {
            r.error(at, fmt::format("worker id \"{}\": \"{}\" is a node, not a machine", worker.id,
                                    worker.machine));
        }
    }
}

void read_fleet(YamlReader& r, const Value& value, fleet::Settings& s) {
    std::optional<Value> lease_at;
    std::optional<Value> max_at;
    bool lease_ok = true;
    bool max_ok = true;
    FirstSeen seen;
    FirstSeen workers_seen;
    std::vector<WorkerAt> workers;
    r.read_map(
        value,
        {
            {"lease_ttl",
             [&](const Value& v) {
                 lease_at = v;
                 lease_ok = r.read_duration(v, s.lease_ttl);
             }},
            {"max_lease_ttl",
             [&](const Value& v) {
                 max_at = v;
                 max_ok = r.read_duration(v, s.max_lease_ttl);
             }},
            {"expiry_sweep", [&](const Value& v) { r.read_duration(v, s.expiry_sweep); }},
            {"max_wait", [&](const Value& v) { r.read_duration(v, s.max_wait); }},
            {"wait_heartbeat", [&](const Value& v) { r.read_duration(v, s.wait_heartbeat); }},
            {"nodes",
             [&](const Value& v) {
                 r.read_list(v, [&](const Value& item) { read_node(r, item, s.nodes, seen); });
             }},
            {"machines",
             [&](const Value& v) {
                 r.read_list(v, [&](const Value& item) { read_machine(r, item, s.nodes, seen); });
             }},
            {"worker_ids",
             [&](const Value& v) {
                 r.read_list(
                     v, [&](const Value& item) { read_worker_id(r, item, workers, workers_seen); });
             }},
        });
    // After the map: machines may come after the worker ids that name them.
    check_worker_machines(r, workers, s.nodes);
    s.worker_ids.clear();
    for (auto& at : workers) {
        s.worker_ids.push_back(std::move(at.worker));
    }
    // Compared only when both read cleanly, so one typo does not also report a bogus ordering.
    if (lease_ok && max_ok && s.max_lease_ttl < s.lease_ttl) {
        const Value& at = max_at ? *max_at : lease_at ? *lease_at : value;
        r.error(at, fmt::format("max_lease_ttl ({}) must be at least lease_ttl ({})",
                                core::format_duration(s.max_lease_ttl),
                                core::format_duration(s.lease_ttl)));
    }
}

struct TokenContext {
    const fs::path& base_dir;  // relative token files are read from the config file's directory
    FirstSeen seen;
};

void read_token(YamlReader& r, const Value& value, std::vector<Token>& tokens, TokenContext& ctx) {
    Token token;
    std::optional<Value> identity_at;
    std::optional<Value> file_at;
    std::optional<Value> env_at;
    bool inline_secret = false;
    auto refuse = [&](const Value& v) {
        r.error(v, kInlineSecret);
        inline_secret = true;
    };
    bool ok = r.read_map(
        value, {
                   {"identity",
                    [&](const Value& v) {
                        if (r.read_string(v, token.identity)) {
                            identity_at = v;
                        }
                    }},
                   {"role",
                    [&](const Value& v) {
                        r.read_choice(v, token.role, {"admin", "user"}, "role", "admin, user");
                    }},
                   {"file",
                    [&](const Value& v) {
                        if (r.read_string(v, token.file)) {
                            file_at = v;
                        }
                    }},
                   {"env",
                    [&](const Value& v) {
                        if (r.read_string(v, token.env)) {
                            env_at = v;
                        }
                    }},
                   {"groups", [&](const Value& v) { read_groups(r, v, token.groups); }},
                   {"token", refuse},
                   {"secret", refuse},
               });
    if (!ok || inline_secret) {
        return;
    }
    if (token.identity.empty()) {
        r.error(identity_at ? *identity_at : value, "a token needs a non-empty identity");
        return;
    }
    auto [first, inserted] = ctx.seen.emplace(token.identity, identity_at->mark.line + 1);
    if (!inserted) {
        r.error(*identity_at, fmt::format("token identity \"{}\" is declared twice (first at "
                                          "line {})",
                                          token.identity, first->second));
        return;
    }
    if (token.file.empty() == token.env.empty()) {
        r.error(value, "a token needs exactly one of \"file\" or \"env\"");
        return;
    }
    load_secret(r, token.file.empty() ? *env_at : *file_at, token.file, token.env, ctx.base_dir,
                token.secret);
    if (!token.secret.empty()) {
        tokens.push_back(std::move(token));
    }
}

/// Why `origin` is not "*" or SCHEME://HOST[:PORT] as a browser sends it, or empty.
std::string origin_problem(std::string_view origin) {
    if (origin == "*") {
        return {};
    }
    auto scheme_end = origin.find("://");
    if (!(origin.starts_with("http://") || origin.starts_with("https://")) ||
        scheme_end == std::string_view::npos) {
        return "is not an origin: write http://HOST[:PORT] or https://HOST[:PORT], or \"*\"";
    }
    auto authority = origin.substr(scheme_end + 3);
    if (authority.empty() || authority.find_first_of("/?#@ \t") != std::string_view::npos) {
        return "is not an origin: a browser sends the scheme, host and port only (no path)";
    }
    return {};
}

void read_auth(YamlReader& r, const Value& value, AuthSettings& s, const fs::path& base_dir) {
    TokenContext ctx{base_dir, {}};
    r.read_map(value,
               {
                   {"tokens",
                    [&](const Value& v) {
                        r.read_list(v,
                                    [&](const Value& item) { read_token(r, item, s.tokens, ctx); });
                    }},
                   {"allowed_hosts",
                    [&](const Value& v) {
                        r.read_list(v, [&](const Value& item) {
                            std::string host;
                            if (!r.read_string(item, host)) {
                                return;
                            }
                            if (host.empty() || host.find_first_of(" /") != std::string::npos) {
                                r.error(item, fmt::format("\"{}\" is not a host name", host));
                                return;
                            }
                            s.allowed_hosts.push_back(std::move(host));
                        });
                    }},
                   {"cors_origins",
                    [&](const Value& v) {
                        r.read_list(v, [&](const Value& item) {
                            std::string origin;
                            if (!r.read_string(item, origin)) {
                                return;
                            }
                            if (auto problem = origin_problem(origin); !problem.empty()) {
                                r.error(item, fmt::format("\"{}\" {}", origin, problem));
                                return;
                            }
                            s.cors_origins.push_back(std::move(origin));
                        });
                    }},
               });
}

void read_config(YamlReader& r,
                 const Value& root,
                 Config& c,
                 const fs::path& base_dir,
                 const std::vector<jobs::ActionSpec>* builtins) {
    // Read even when absent: the built-in actions are added there.
    Value jobs_value{YAML::Node{}, "jobs", root.mark};
    Value notify_value{YAML::Node{}, "notify", root.mark};
    std::vector<std::pair<std::string, Value>> notifier_refs;
    r.read_map(root,
               {
                   {"data_dir",
                    [&](const Value& v) {
                        std::string text;
                        if (!r.read_string(v, text)) {
                            return;
                        }
                        if (text.empty()) {
                            r.error(v, "must not be empty");
                            return;
                        }
                        c.data_dir = std::move(text);
                    }},
                   {"instance",
                    [&](const Value& v) {
                        std::string text;
                        if (!r.read_string(v, text)) {
                            return;
                        }
                        if (auto problem = check_instance_name(text)) {
                            r.error(v, *problem);
                            return;
                        }
                        c.instance = std::move(text);
                    }},
                   {"log", [&](const Value& v) { read_log(r, v, c.log); }},
                   {"server", [&](const Value& v) { read_server(r, v, c.server, base_dir); }},
                   {"store", [&](const Value& v) { read_store(r, v, c.store, base_dir); }},
                   {"fleet", [&](const Value& v) { read_fleet(r, v, c.fleet); }},
                   {"jobs", [&](const Value& v) { jobs_value = v; }},
                   {"drivers", [&](const Value& v) { read_drivers(r, v, c.drivers, base_dir); }},
                   {"auth", [&](const Value& v) { read_auth(r, v, c.auth, base_dir); }},
                   {"notify", [&](const Value& v) { notify_value = v; }},
                   {"logs", [&](const Value& v) { read_logs(r, v, c.logs); }},
                   {"probes",
                    [&](const Value& v) { read_probes(r, v, c.probes, base_dir, notifier_refs); }},
               });
    read_jobs(r, jobs_value, c.jobs, builtins, base_dir);
    // After the jobs: the actions it names are checked against the merged list.
    read_notify(r, notify_value, c.notify, c.jobs.actions, base_dir);
    // The alarms notify the notifiers notify: names.
    c.probes.notifiers.clear();
    for (const auto& n : c.notify.notifiers) {
        c.probes.notifiers.push_back(n.name);
    }
    for (const auto& [name, at] : notifier_refs) {
        if (std::find(c.probes.notifiers.begin(), c.probes.notifiers.end(), name) ==
            c.probes.notifiers.end()) {
            std::vector<std::string_view> known(c.probes.notifiers.begin(),
                                                c.probes.notifiers.end());
            r.error(at, fmt::format("no notifier \"{}\" in notify.notifiers{}", name,
                                    did_you_mean(name, known)));
        }
    }
}

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

/// `builtins`: the actions added to those the text defines (null: none, for the built-ins).
core::Result<Config> load(std::string_view yaml,
                          std::string source,
                          const fs::path& base_dir,
                          const std::vector<jobs::ActionSpec>* builtins) {
    std::vector<YAML::Node> documents;
    try {
        documents = YAML::LoadAll(std::string{yaml});
    } catch (const YAML::Exception& e) {
        return invalid(position(source, e.mark) + e.msg);
    }
    YamlReader reader{source};
    Config config;
    config.source = source;
    if (documents.size() > 1) {
        // A second document would be ignored silently: probably two files pasted together.
        reader.error(documents[1].Mark(), "", "expected one YAML document, found another here");
    }
    YAML::Node root = documents.empty() ? YAML::Node{} : documents.front();
    try {
        read_config(reader, Value{root, "", root.Mark()}, config, base_dir, builtins);
    } catch (const YAML::Exception& e) {
        // The reader checks node types before reading them; this is yaml-cpp failing anyway.
        reader.error(e.mark, "", e.msg);
    }
    if (auto failure = reader.failure()) {
        return *failure;
    }
    return config;
}

/// The embedded default's actions, read once. The text is part of the binary and config_test
/// loads it, so failing to read it here is a bug.
const std::vector<jobs::ActionSpec>& builtin_actions() {
    static const std::vector<jobs::ActionSpec> actions = [] {
        auto loaded = load(generated::kDefaultYaml, "<embedded default>", fs::path{}, nullptr);
        AVIARY_ASSERT(loaded.has_value(), "the embedded default config must load");
        return std::move(loaded->jobs.actions);
    }();
    return actions;
}

}  // namespace

core::Result<Config> load_file(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("config file \"{}\" does not exist", path)};
    }
    if (fs::is_directory(path, ec)) {
        return invalid(fmt::format("config file \"{}\" is a directory", path));
    }
    std::ifstream in{path, std::ios::binary};
    if (!in) {
        return invalid(
            fmt::format("cannot read config file \"{}\": {}", path, std::strerror(errno)));
    }
    std::ostringstream text;
    text << in.rdbuf();
    return load(text.str(), path, fs::path{path}.parent_path(), &builtin_actions());
}

std::optional<std::string> check_instance_name(std::string_view name) {
    bool plain =
        !name.empty() && name.size() <= 63 && std::all_of(name.begin(), name.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' ||
                   c == '_';
        });
    if (!plain) {
        return fmt::format("instance name \"{}\" must be 1-63 of a-z, A-Z, 0-9, '-', '.' and '_'",
                           name);
    }
    return std::nullopt;
}

std::optional<std::string> check_store_url(std::string_view url) {
    bool uri = url.starts_with("postgresql://") || url.starts_with("postgres://");
    if (!uri && url.find('=') == std::string_view::npos) {
        return "store.url must be a postgresql:// URI or a libpq keyword string "
               "(host=... dbname=...)";
    }
    bool password = url.find("password=") != std::string_view::npos;
    if (uri) {
        auto authority = url.find("://") + 3;
        auto end = url.find_first_of("/?", authority);
        auto userinfo =
            url.substr(authority, end == std::string_view::npos ? end : end - authority);
        auto at = userinfo.rfind('@');
        password = password || (at != std::string_view::npos &&
                                userinfo.substr(0, at).find(':') != std::string_view::npos);
    }
    if (password) {
        return "store.url holds a password, and the URL is logged: put the password in "
               "store.password_file or store.password_env";
    }
    return std::nullopt;
}

core::Result<Config> load_string(std::string_view yaml, std::string_view source) {
    return load(yaml, std::string{source}, fs::path{}, &builtin_actions());
}

std::string_view embedded_default() {
    return generated::kDefaultYaml;
}

}  // namespace aviary::config
