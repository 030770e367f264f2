// The `jobs:` section (settings, permission rules, the built-in merge) and `drivers:`.
#include "config/jobs_reader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "config/action_reader.hpp"
#include "config/secrets.hpp"

namespace aviary::config {
namespace {

struct PermissionContext {
    std::map<std::string, int, std::less<>> names;  // rule name -> line it was first declared
    std::vector<ActionRef> actions;
};

/// `who:` or `who: []`: a rule naming nothing would never match; leaving it out says that.
bool is_empty_list(const Value& value) {
    return value.is_null() || (value.node.IsSequence() && value.node.size() == 0);
}

void read_who(YamlReader& r, const Value& value, std::vector<std::string>& who) {
    r.read_list(value, [&](const Value& item) {
        std::string entry;
        if (!r.read_string(item, entry)) {
            return;
        }
        if (entry.empty() || entry == "group:") {
            r.error(item, "expected a token identity, \"group:NAME\" or \"*\"");
            return;
        }
        who.push_back(std::move(entry));
    });
    if (is_empty_list(value)) {
        r.error(value, "must name at least one token identity, \"group:NAME\" or \"*\"");
    }
}

void read_rule_actions(YamlReader& r,
                       const Value& value,
                       std::vector<std::string>& actions,
                       std::vector<ActionRef>& refs) {
    r.read_list(value, [&](const Value& item) {
        std::string name;
        if (!r.read_string(item, name)) {
            return;
        }
        if (name != "*") {
            refs.push_back(ActionRef{name, item});
        }
        actions.push_back(std::move(name));
    });
    if (is_empty_list(value)) {
        r.error(value, "must name at least one action, or \"*\" for every action");
    }
}

void read_rule_nodes(YamlReader& r, const Value& value, std::vector<std::string>& nodes) {
    r.read_list(value, [&](const Value& item) {
        std::string name;
        if (!r.read_string(item, name)) {
            return;
        }
        if (name != "*" && !core::is_dns_label(name)) {
            r.error(item, fmt::format("\"{}\" is neither \"*\" nor a node name ({})", name,
                                      kDnsLabelRule));
            return;
        }
        nodes.push_back(std::move(name));
    });
    if (is_empty_list(value)) {
        r.error(value, "must name at least one node, or \"*\" for every node");
    }
}

void read_permission(YamlReader& r,
                     const Value& value,
                     std::size_t index,
                     std::vector<jobs::PermissionRule>& rules,
                     PermissionContext& ctx) {
    auto before = r.error_count();
    jobs::PermissionRule rule;
    rule.name = fmt::format("permissions[{}]", index);
    std::optional<Value> name_at;
    bool effect_given = false;
    bool who_given = false;
    bool actions_given = false;
    bool nodes_given = false;
    std::vector<ActionRef> refs;
    std::vector<Field> fields{
        {"name",
         [&](const Value& v) {
             if (!r.read_string(v, rule.name)) {
                 return;
             }
             name_at = v;
             if (rule.name.empty()) {
                 r.error(v, "must not be empty");
             }
         }},
        {"effect",
         [&](const Value& v) {
             effect_given = true;
             std::string effect;
             if (r.read_choice(v, effect, {"allow", "deny"}, "effect", "allow, deny")) {
                 rule.allow = effect == "allow";
             }
         }},
        {"who",
         [&](const Value& v) {
             who_given = true;
             read_who(r, v, rule.who);
         }},
        {"actions",
         [&](const Value& v) {
             actions_given = true;
             read_rule_actions(r, v, rule.actions, refs);
         }},
        {"nodes",
         [&](const Value& v) {
             nodes_given = true;
             read_rule_nodes(r, v, rule.nodes);
         }},
        {"groups", [&](const Value& v) { read_groups(r, v, rule.groups); }},
        {"selector", [&](const Value& v) { r.read_string_map(v, rule.selector); }},
    };
    if (!r.read_map(value, fields)) {
        return;
    }
    if (!effect_given) {
        r.error(value, "a permission rule needs an effect (allow or deny)");
    }
    if (!who_given) {
        r.error(value, "a permission rule needs who (token identities, \"group:NAME\" or \"*\")");
    }
    if (!actions_given) {
        rule.actions = {"*"};
    }
    if (!nodes_given) {
        rule.nodes = {"*"};
    }
    if (name_at && !rule.name.empty()) {
        auto [first, inserted] = ctx.names.emplace(rule.name, name_at->mark.line + 1);
        if (!inserted) {
            r.error(*name_at, fmt::format("permission rule \"{}\" is declared twice (first at "
                                          "line {})",
                                          rule.name, first->second));
        }
    }
    if (r.error_count() != before) {
        return;
    }
    rules.push_back(std::move(rule));
    std::move(refs.begin(), refs.end(), std::back_inserter(ctx.actions));
}

void add_builtins(std::vector<jobs::ActionSpec>& actions,
                  const std::vector<jobs::ActionSpec>& builtins) {
    std::size_t defined = actions.size();
    for (const auto& builtin : builtins) {
        auto end = actions.begin() + static_cast<std::ptrdiff_t>(defined);
        bool replaced = std::any_of(actions.begin(), end, [&](const jobs::ActionSpec& a) {
            return a.name == builtin.name;
        });
        if (!replaced) {
            actions.push_back(builtin);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// drivers.helm

/// The target keys one mapping sets (the defaults, or a pool's overrides): applied once the
/// whole section is read, since a pool may come before the defaults in the file.
struct TargetKeys {
    std::optional<std::string> namespace_name;
    std::optional<std::string> chart;
    std::optional<std::string> kube_context;
    std::optional<std::string> kubeconfig;
    std::optional<std::vector<std::pair<std::string, std::string>>> set;
    std::optional<core::Millis> timeout;

    void apply_to(drivers::HelmTarget& target) const {
        if (namespace_name) {
            target.namespace_name = *namespace_name;
        }
        if (chart) {
            target.chart = *chart;
        }
        if (kube_context) {
            target.kube_context = *kube_context;
        }
        if (kubeconfig) {
            target.kubeconfig = *kubeconfig;
        }
        if (set) {
            target.set = *set;
        }
        if (timeout) {
            target.timeout = *timeout;
        }
    }
};

bool has_line_break(std::string_view text) {
    return text.find_first_of("\r\n") != std::string_view::npos;
}

/// A string for an argv element or an environment value: no line break, and (`flag_safe`) not
/// starting with '-', where helm or kubectl would read it as an option.
bool read_arg(YamlReader& r,
              const Value& value,
              std::optional<std::string>& out,
              bool flag_safe,
              bool required) {
    std::string text;
    if (!r.read_string(value, text)) {
        return false;
    }
    if (has_line_break(text)) {
        r.error(value, "must not contain a line break");
        return false;
    }
    if (required && text.empty()) {
        r.error(value, "must not be empty");
        return false;
    }
    if (flag_safe && text.rfind('-', 0) == 0) {
        r.error(value,
                fmt::format("\"{}\" must not start with \"-\" (it would read as an option)", text));
        return false;
    }
    out = std::move(text);
    return true;
}

/// `set: {KEY: VALUE, ...}` in file order: each becomes `--set KEY=VALUE`.
void read_helm_set(YamlReader& r,
                   const Value& value,
                   std::optional<std::vector<std::pair<std::string, std::string>>>& out) {
    auto before = r.error_count();
    std::vector<std::pair<std::string, std::string>> entries;
    r.read_entries(value, [&](const Value& key, const Value& item) {
        const std::string name = key.node.Scalar();
        if (name.find_first_of("=,") != std::string::npos || has_line_break(name)) {
            r.error(key, fmt::format("helm value key \"{}\" must not contain '=', ',' or a line "
                                     "break (it is passed as --set KEY=VALUE)",
                                     name));
            return;
        }
        std::string text;
        if (!r.read_string(item, text)) {
            return;
        }
        if (has_line_break(text)) {
            r.error(item, "must not contain a line break");
            return;
        }
        entries.emplace_back(name, std::move(text));
    });
    if (r.error_count() == before) {
        out = std::move(entries);
    }
}

void add_target_fields(YamlReader& r, TargetKeys& keys, std::vector<Field>& fields) {
    fields.push_back({"namespace", [&r, &keys](const Value& v) {
                          std::string text;
                          if (!r.read_string(v, text)) {
                              return;
                          }
                          if (!core::is_dns_label(text)) {
                              r.error(v, fmt::format("\"{}\" is not a namespace name ({})", text,
                                                     kDnsLabelRule));
                              return;
                          }
                          keys.namespace_name = std::move(text);
                      }});
    fields.push_back(
        {"chart", [&r, &keys](const Value& v) { read_arg(r, v, keys.chart, true, true); }});
    fields.push_back({"kube_context", [&r, &keys](const Value& v) {
                          read_arg(r, v, keys.kube_context, true, false);
                      }});
    fields.push_back({"kubeconfig", [&r, &keys](const Value& v) {
                          read_arg(r, v, keys.kubeconfig, false, false);
                      }});
    fields.push_back({"set", [&r, &keys](const Value& v) { read_helm_set(r, v, keys.set); }});
    fields.push_back({"timeout", [&r, &keys](const Value& v) {
                          core::Millis timeout{};
                          if (r.read_duration(v, timeout)) {
                              keys.timeout = timeout;
                          }
                      }});
}

void read_pool_nodes(YamlReader& r, const Value& value, std::vector<std::string>& nodes) {
    r.read_list(value, [&](const Value& item) {
        std::string name;
        if (!r.read_string(item, name)) {
            return;
        }
        if (!core::is_dns_label(name)) {
            r.error(item, fmt::format("\"{}\" is not a node name ({})", name, kDnsLabelRule));
            return;
        }
        nodes.push_back(std::move(name));
    });
}

struct PoolRead {
    drivers::HelmPool pool;
    TargetKeys keys;
};

void read_helm_pool(YamlReader& r,
                    const Value& value,
                    std::vector<PoolRead>& pools,
                    std::map<std::string, int, std::less<>>& names) {
    auto before = r.error_count();
    PoolRead read;
    std::optional<Value> name_at;
    std::vector<Field> fields{
        {"name",
         [&](const Value& v) {
             if (!r.read_string(v, read.pool.name)) {
                 return;
             }
             name_at = v;
             if (read.pool.name.empty()) {
                 r.error(v, "must not be empty");
             }
         }},
        {"nodes", [&](const Value& v) { read_pool_nodes(r, v, read.pool.nodes); }},
        {"selector", [&](const Value& v) { r.read_string_map(v, read.pool.selector); }},
    };
    add_target_fields(r, read.keys, fields);
    if (!r.read_map(value, fields)) {
        return;
    }
    if (!name_at) {
        r.error(value, "a helm pool needs a name");
    } else if (!read.pool.name.empty()) {
        auto [first, inserted] = names.emplace(read.pool.name, name_at->mark.line + 1);
        if (!inserted) {
            r.error(*name_at, fmt::format("helm pool \"{}\" is declared twice (first at line {})",
                                          read.pool.name, first->second));
        }
    }
    // Only for a pool that read cleanly: a bad node name already says what is wrong.
    if (r.error_count() == before && read.pool.nodes.empty() && read.pool.selector.empty()) {
        r.error(value, "a helm pool needs nodes or a selector (it would match no node)");
    }
    if (r.error_count() == before) {
        pools.push_back(std::move(read));
    }
}

void read_helm(YamlReader& r, const Value& value, drivers::HelmSettings& s) {
    TargetKeys defaults;
    std::vector<PoolRead> pools;
    std::map<std::string, int, std::less<>> names;
    std::vector<Field> fields{
        {"helm",
         [&](const Value& v) {
             std::optional<std::string> program;
             if (read_arg(r, v, program, false, true)) {
                 s.helm = std::move(*program);
             }
         }},
        {"kubectl",
         [&](const Value& v) {
             std::optional<std::string> program;
             if (read_arg(r, v, program, false, true)) {
                 s.kubectl = std::move(*program);
             }
         }},
        {"status_timeout", [&](const Value& v) { r.read_duration(v, s.status_timeout); }},
        {"pools",
         [&](const Value& v) {
             r.read_list(v, [&](const Value& item) { read_helm_pool(r, item, pools, names); });
         }},
    };
    add_target_fields(r, defaults, fields);
    r.read_map(value, fields);
    defaults.apply_to(s.defaults);
    s.pools.clear();
    for (auto& read : pools) {
        read.pool.target = s.defaults;
        read.keys.apply_to(read.pool.target);
        s.pools.push_back(std::move(read.pool));
    }
}

}  // namespace

/// jobs.ssh: how ssh steps reach machines.
void read_ssh(YamlReader& r,
              const Value& value,
              jobs::SshSettings& ssh,
              const std::filesystem::path& base_dir) {
    r.read_map(
        value,
        {
            {"program", [&](const Value& v) { r.read_string(v, ssh.program); }},
            {"identity_file",
             [&](const Value& v) {
                 read_file_setting(r, v, "ssh identity file", base_dir, ssh.identity_file);
             }},
            {"known_hosts",
             [&](const Value& v) {
                 read_file_setting(r, v, "ssh known_hosts file", base_dir, ssh.known_hosts);
             }},
            {"connect_timeout", [&](const Value& v) { r.read_duration(v, ssh.connect_timeout); }},
        });
    if (ssh.program.empty()) {
        r.error(value, "ssh.program must name the OpenSSH client");
    }
}

/// jobs.ipmi: ipmitool for reboot's ipmi method; the password from a file or the environment.
void read_ipmi(YamlReader& r,
               const Value& value,
               jobs::IpmiSettings& ipmi,
               const std::filesystem::path& base_dir) {
    SecretSource source;
    r.read_map(
        value,
        {
            {"program", [&](const Value& v) { r.read_string(v, ipmi.program); }},
            {"password_file",
             [&](const Value& v) {
                 source.file_at = v;
                 r.read_string(v, source.file);
             }},
            {"password_env",
             [&](const Value& v) {
                 source.env_at = v;
                 r.read_string(v, source.env);
             }},
            {"cipher_suite", [&](const Value& v) { r.read_int(v, ipmi.cipher_suite, 0, 17); }},
            {"retries", [&](const Value& v) { r.read_int(v, ipmi.retries, 0, 20); }},
            {"retry_seconds", [&](const Value& v) { r.read_int(v, ipmi.retry_seconds, 1, 60); }},
        });
    load_source(r, source, "password", base_dir, ipmi.password_file, ipmi.password);
}

/// jobs.pdu: snmpset for reboot's pdu method; the community from a file or the environment.
void read_pdu(YamlReader& r,
              const Value& value,
              jobs::PduSettings& pdu,
              const std::filesystem::path& base_dir) {
    SecretSource source;
    std::optional<Value> oid_at;
    r.read_map(
        value,
        {
            {"program", [&](const Value& v) { r.read_string(v, pdu.program); }},
            {"community_file",
             [&](const Value& v) {
                 source.file_at = v;
                 r.read_string(v, source.file);
             }},
            {"community_env",
             [&](const Value& v) {
                 source.env_at = v;
                 r.read_string(v, source.env);
             }},
            {"outlet_oid",
             [&](const Value& v) {
                 oid_at = v;
                 r.read_string(v, pdu.outlet_oid);
             }},
            {"on_value", [&](const Value& v) { r.read_int(v, pdu.on_value, 0, 1'000'000); }},
            {"off_value", [&](const Value& v) { r.read_int(v, pdu.off_value, 0, 1'000'000); }},
            {"timeout", [&](const Value& v) { r.read_duration(v, pdu.timeout); }},
            {"retries", [&](const Value& v) { r.read_int(v, pdu.retries, 0, 20); }},
        });
    std::string path;  // the community goes into the snmp.conf serve writes, not this file
    load_source(r, source, "community", base_dir, path, pdu.community);
    if (pdu.community.find_first_of(" \t\r\n#") != std::string::npos) {
        r.error(*(source.file_at ? source.file_at : source.env_at),
                "the community must be one word (no spaces or '#'): it goes into an snmp.conf");
    }
    auto numeric = [](const std::string& oid) {
        return oid.size() > 1 && oid.front() == '.' &&
               oid.find_first_not_of(".0123456789") == std::string::npos &&
               oid.find("..") == std::string::npos && oid.back() != '.';
    };
    if (oid_at && !numeric(pdu.outlet_oid)) {
        r.error(*oid_at, fmt::format("\"{}\" is not a numeric OID like "
                                     "\".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4\"",
                                     pdu.outlet_oid));
    }
}

void read_jobs(YamlReader& r,
               const Value& value,
               jobs::Settings& s,
               const std::vector<jobs::ActionSpec>* builtins,
               const std::filesystem::path& base_dir) {
    PermissionContext permissions;
    std::optional<Value> heartbeat_at;
    std::optional<Value> timeout_at;
    bool heartbeat_ok = true;
    bool timeout_ok = true;
    std::size_t rule_index = 0;
    r.read_map(
        value,
        {
            {"workers", [&](const Value& v) { r.read_int(v, s.workers, 1, 64); }},
            {"output_max_lines",
             [&](const Value& v) { r.read_int(v, s.output_max_lines, 1, 10'000'000); }},
            {"kill_grace", [&](const Value& v) { r.read_duration(v, s.kill_grace); }},
            {"heartbeat",
             [&](const Value& v) {
                 heartbeat_at = v;
                 heartbeat_ok = r.read_duration(v, s.heartbeat);
             }},
            {"heartbeat_timeout",
             [&](const Value& v) {
                 timeout_at = v;
                 timeout_ok = r.read_duration(v, s.heartbeat_timeout);
             }},
            {"retention", [&](const Value& v) { r.read_duration(v, s.retention); }},
            {"retention_sweep", [&](const Value& v) { r.read_duration(v, s.retention_sweep); }},
            {"permissions",
             [&](const Value& v) {
                 r.read_list(v, [&](const Value& item) {
                     read_permission(r, item, rule_index++, s.permissions, permissions);
                 });
             }},
            {"actions",
             [&](const Value& v) {
                 r.read_entries(v, [&](const Value& key, const Value& item) {
                     read_action(r, key, item, s.actions);
                 });
             }},
            {"ssh", [&](const Value& v) { read_ssh(r, v, s.ssh, base_dir); }},
            {"ipmi", [&](const Value& v) { read_ipmi(r, v, s.ipmi, base_dir); }},
            {"pdu", [&](const Value& v) { read_pdu(r, v, s.pdu, base_dir); }},
        });
    // Compared only when both read cleanly, so one typo does not also report a bogus ordering.
    if (heartbeat_ok && timeout_ok && s.heartbeat_timeout <= s.heartbeat) {
        const Value& at = timeout_at ? *timeout_at : heartbeat_at ? *heartbeat_at : value;
        r.error(at, fmt::format("heartbeat_timeout ({}) must be longer than heartbeat ({})",
                                core::format_duration(s.heartbeat_timeout),
                                core::format_duration(s.heartbeat)));
    }
    if (builtins != nullptr) {
        add_builtins(s.actions, *builtins);
    }
    check_action_refs(r, permissions.actions, s.actions);
}

void read_drivers(YamlReader& r,
                  const Value& value,
                  drivers::Settings& s,
                  const std::filesystem::path& base_dir) {
    auto& sim = s.sim;
    auto read_sim = [&](const Value& v) {
        r.read_map(
            v,
            {
                {"block_interval", [&](const Value& x) { r.read_duration(x, sim.block_interval); }},
                {"sync_blocks",
                 [&](const Value& x) { r.read_int(x, sim.sync_blocks, 0, 1'000'000); }},
                {"snapshot_height",
                 [&](const Value& x) {
                     r.read_int(x, sim.snapshot_height, 0, 1'000'000'000'000'000);
                 }},
                {"program", [&](const Value& x) { r.read_string(x, sim.program); }},
                {"start_timeout", [&](const Value& x) { r.read_duration(x, sim.start_timeout); }},
                {"stop_grace", [&](const Value& x) { r.read_duration(x, sim.stop_grace); }},
            });
    };
    // drivers.sidecar: how serve reaches the sidecars of nodes with driver sidecar; the token
    // from a file or the environment, never inline.
    auto read_sidecar = [&](const Value& v) {
        SecretSource source;
        r.read_map(v,
                   {
                       {"token_file",
                        [&](const Value& x) {
                            source.file_at = x;
                            r.read_string(x, source.file);
                        }},
                       {"token_env",
                        [&](const Value& x) {
                            source.env_at = x;
                            r.read_string(x, source.env);
                        }},
                       {"timeout", [&](const Value& x) { r.read_duration(x, s.sidecar.timeout); }},
                       {"command_timeout",
                        [&](const Value& x) { r.read_duration(x, s.sidecar.command_timeout); }},
                   });
        std::string token_path;
        load_source(r, source, "token", base_dir, token_path, s.sidecar.token);
    };
    r.read_map(value, {
                          {"dir", [&](const Value& v) { r.read_string(v, s.dir); }},
                          {"sim", read_sim},
                          {"helm", [&](const Value& v) { read_helm(r, v, s.helm); }},
                          {"sidecar", read_sidecar},
                      });
}

void check_action_refs(YamlReader& r,
                       const std::vector<ActionRef>& refs,
                       const std::vector<jobs::ActionSpec>& actions) {
    std::vector<std::string_view> names;
    names.reserve(actions.size());
    for (const auto& action : actions) {
        names.push_back(action.name);
    }
    for (const auto& ref : refs) {
        if (std::find(names.begin(), names.end(), ref.name) == names.end()) {
            r.error(ref.at, fmt::format("unknown action \"{}\"{}", ref.name,
                                        did_you_mean(ref.name, names)));
        }
    }
}

}  // namespace aviary::config