// The `probes:` section: scenarios, their steps, assertions and captures. Every template and
// assertion is checked here, so a mistake is reported with its line before anything runs.
#include "config/probes_reader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/action_reader.hpp"
#include "config/config.hpp"
#include "config/secrets.hpp"

namespace aviary::config {
namespace {

constexpr std::string_view kStepKinds =
    "http, jsonrpc, websocket, tcp, command, action, chain, poll or parallel";
constexpr int kMaxDepth = 4;
constexpr int kMaxBranches = 64;

bool is_name(std::string_view name) {
    return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '.';
    });
}

/// A string that is a template (`{{name}}` placeholders well formed).
bool read_template(YamlReader& r, const Value& value, std::string& out) {
    std::string text;
    if (!r.read_string(value, text)) {
        return false;
    }
    if (auto ok = probes::parse_template(text); !ok) {
        r.error(value, ok.error().message);
        return false;
    }
    out = std::move(text);
    return true;
}

void read_url(YamlReader& r, const Value& value, std::string& url, bool websocket) {
    std::string text;
    if (!read_template(r, value, text)) {
        return;
    }
    bool ok = websocket ? text.starts_with("ws://") || text.starts_with("wss://")
                        : text.starts_with("http://") || text.starts_with("https://");
    // A URL may also start with a variable that holds its scheme and host: "{{server}}/x".
    if (!ok && !text.starts_with("{{")) {
        r.error(value, fmt::format("\"{}\" must start with {} (or a variable like {{{{server}}}})",
                                   text, websocket ? "ws:// or wss://" : "http:// or https://"));
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
            r.error(key, fmt::format("\"{}\" is not a header name", name));
            return;
        }
        std::string text;
        if (read_template(r, item, text)) {
            headers.emplace_back(name, std::move(text));
        }
    });
}

/// YAML as JSON text: plain scalars that read as numbers, booleans or null stay so, quoted ones
/// are strings. For JSON-RPC params written as YAML.
std::string as_json(const YAML::Node& node) {
    switch (node.Type()) {
        case YAML::NodeType::Sequence: {
            std::string out = "[";
            for (std::size_t i = 0; i < node.size(); ++i) {
                out += (i ? "," : "") + as_json(node[i]);
            }
            return out + "]";
        }
        case YAML::NodeType::Map: {
            std::string out = "{";
            bool first = true;
            for (const auto& pair : node) {
                out += (first ? "" : ",") + as_json(pair.first) + ":" + as_json(pair.second);
                first = false;
            }
            return out + "}";
        }
        case YAML::NodeType::Scalar: {
            const std::string& s = node.Scalar();
            if (node.Tag() != "!") {
                if (s == "true" || s == "false" || s == "null") {
                    return s;
                }
                char* end = nullptr;
                std::strtod(s.c_str(), &end);
                if (!s.empty() && end == s.c_str() + s.size() &&
                    s.find_first_of("xX") == std::string::npos) {
                    return s;
                }
            }
            std::string out = "\"";
            for (char c : s) {
                switch (c) {
                    case '"':
                        out += "\\\"";
                        break;
                    case '\\':
                        out += "\\\\";
                        break;
                    case '\n':
                        out += "\\n";
                        break;
                    case '\t':
                        out += "\\t";
                        break;
                    case '\r':
                        out += "\\r";
                        break;
                    default:
                        if (static_cast<unsigned char>(c) < 0x20) {
                            out += fmt::format("\\u{:04x}", c);
                        } else {
                            out += c;
                        }
                }
            }
            return out + "\"";
        }
        default:
            return "null";
    }
}

void read_assertions(YamlReader& r, const Value& value, std::vector<probes::Assertion>& out) {
    r.read_list(value, [&](const Value& item) {
        std::string text;
        std::string message;
        // Where the assertion's text is, for its errors. (A YAML::Node is never assigned to:
        // that would rewrite the document, not rebind the variable.)
        std::optional<Value> that;
        if (item.node.IsMap()) {
            r.read_map(item, {{"that",
                               [&](const Value& v) {
                                   if (r.read_string(v, text)) {
                                       that.emplace(v);
                                   }
                               }},
                              {"message", [&](const Value& v) { r.read_string(v, message); }}});
            if (!that) {
                r.error(item,
                        "an assertion with a message is {that: \"json.x == 1\", message: "
                        "\"what it means\"}");
                return;
            }
        } else if (!r.read_string(item, text)) {
            return;
        }
        auto parsed = probes::parse_assertion(text);
        if (!parsed) {
            r.error(that ? *that : item, parsed.error().message);
            return;
        }
        parsed->message = std::move(message);
        out.push_back(std::move(*parsed));
    });
}

void read_captures(YamlReader& r, const Value& value, std::vector<probes::Capture>& out) {
    r.read_entries(value, [&](const Value& key, const Value& item) {
        const std::string& name = key.node.Scalar();
        if (!is_name(name) || name == "server" || name == "branch") {
            r.error(key, fmt::format("\"{}\" cannot be a variable: letters, digits, _, - and ., "
                                     "and not server or branch",
                                     name));
            return;
        }
        std::string text;
        if (!r.read_string(item, text)) {
            return;
        }
        auto parsed = probes::parse_capture(name, text);
        if (!parsed) {
            r.error(item, parsed.error().message);
            return;
        }
        out.push_back(std::move(*parsed));
    });
}

void read_steps(YamlReader& r, const Value& value, std::vector<probes::Step>& steps, int depth);

void read_tls(YamlReader& r, const Value& v, probes::Step& step) {
    r.read_map(v, {{"verify", [&](const Value& x) { r.read_bool(x, step.tls_verify); }},
                   {"ca_file", [&](const Value& x) { r.read_string(x, step.ca_file); }}});
}

void read_http(YamlReader& r, const Value& v, probes::Step& step) {
    step.kind = probes::StepKind::kHttp;
    bool has_url = false;
    r.read_map(v,
               {{"method",
                 [&](const Value& x) {
                     std::string m;
                     if (!r.read_string(x, m)) {
                         return;
                     }
                     if (m.empty() || !std::all_of(m.begin(), m.end(),
                                                   [](char c) { return c >= 'A' && c <= 'Z'; })) {
                         r.error(x, fmt::format("\"{}\" is not an HTTP method (GET, POST...)", m));
                         return;
                     }
                     step.method = std::move(m);
                 }},
                {"url",
                 [&](const Value& x) {
                     read_url(r, x, step.url, false);
                     has_url = true;
                 }},
                {"headers", [&](const Value& x) { read_headers(r, x, step.headers); }},
                {"body", [&](const Value& x) { read_template(r, x, step.body); }},
                {"tls", [&](const Value& x) { read_tls(r, x, step); }}});
    if (!has_url) {
        r.error(v, "an http step needs a url");
    }
}

void read_jsonrpc(YamlReader& r, const Value& v, probes::Step& step) {
    step.kind = probes::StepKind::kJsonRpc;
    bool has_url = false;
    r.read_map(v, {{"url",
                    [&](const Value& x) {
                        read_url(r, x, step.url, false);
                        has_url = true;
                    }},
                   {"method", [&](const Value& x) { r.read_string(x, step.rpc_method); }},
                   {"params",
                    [&](const Value& x) {
                        if (x.node.IsScalar()) {
                            read_template(r, x, step.rpc_params);
                        } else if (!x.is_null()) {
                            step.rpc_params = as_json(x.node);
                            if (auto ok = probes::parse_template(step.rpc_params); !ok) {
                                r.error(x, ok.error().message);
                            }
                        }
                    }},
                   {"headers", [&](const Value& x) { read_headers(r, x, step.headers); }},
                   {"tls", [&](const Value& x) { read_tls(r, x, step); }}});
    if (!has_url) {
        r.error(v, "a jsonrpc step needs a url");
    }
    if (step.rpc_method.empty()) {
        r.error(v, "a jsonrpc step needs a method");
    }
}

void read_websocket(YamlReader& r, const Value& v, probes::Step& step) {
    step.kind = probes::StepKind::kWebSocket;
    bool has_url = false;
    r.read_map(v, {{"url",
                    [&](const Value& x) {
                        read_url(r, x, step.url, true);
                        has_url = true;
                    }},
                   {"send", [&](const Value& x) { read_template(r, x, step.body); }},
                   {"headers", [&](const Value& x) { read_headers(r, x, step.headers); }},
                   {"tls", [&](const Value& x) { read_tls(r, x, step); }}});
    if (!has_url) {
        r.error(v, "a websocket step needs a url");
    }
}

void read_nested(YamlReader& r, const Value& v, probes::Step& step, int depth) {
    bool has_steps = false;
    std::vector<Field> fields{{"steps", [&](const Value& x) {
                                   has_steps = true;
                                   read_steps(r, x, step.steps, depth + 1);
                               }}};
    if (step.kind == probes::StepKind::kPoll) {
        fields.push_back({"interval", [&](const Value& x) { r.read_duration(x, step.interval); }});
        fields.push_back({"deadline", [&](const Value& x) { r.read_duration(x, step.deadline); }});
    } else {
        fields.push_back(
            {"count", [&](const Value& x) { r.read_int(x, step.count, 1, kMaxBranches); }});
    }
    r.read_map(v, fields);
    if (!has_steps || step.steps.empty()) {
        r.error(v, fmt::format("a {} step needs steps", probes::step_kind_name(step.kind)));
    }
    if (depth + 1 > kMaxDepth) {
        r.error(v, fmt::format("steps nest at most {} deep", kMaxDepth));
    }
}

/// `action: {name: upgrade, node: "{{node}}", params: {tag: v1.2.3}}`: a job on serve.
void read_action(YamlReader& r, const Value& v, probes::Step& step) {
    step.kind = probes::StepKind::kAction;
    step.node = "{{node}}";
    bool ok =
        r.read_map(v, {
                          {"name", [&](const Value& x) { r.read_string(x, step.action); }},
                          {"node", [&](const Value& x) { read_template(r, x, step.node); }},
                          {"params",
                           [&](const Value& x) {
                               r.read_entries(x, [&](const Value& key, const Value& item) {
                                   std::string text;
                                   if (read_template(r, item, text)) {
                                       step.params.emplace_back(key.node.Scalar(), std::move(text));
                                   }
                               });
                           }},
                      });
    if (ok && step.action.empty()) {
        r.error(v, "an action step names its action: {name: upgrade, node: ..., params: ...}");
    }
}

/// `chain: {preset: geth, url: "http://{{node}}:8545", check: synced|advancing|lag, ...}`: a
/// node's head read through the chain preset `aviary supervise` uses.
void read_chain(YamlReader& r, const Value& v, probes::Step& step) {
    step.kind = probes::StepKind::kChain;
    std::optional<Value> preset_at;
    std::optional<Value> url_at;
    std::map<std::string, Value, std::less<>> check_keys;
    auto only = [&](std::string_view key, std::function<void(const Value&)> read) {
        return Field{key, [&check_keys, key, read = std::move(read)](const Value& x) {
                         check_keys.emplace(std::string{key}, x);
                         read(x);
                     }};
    };
    bool ok = r.read_map(
        v, {
               {"preset",
                [&](const Value& x) {
                    std::string name;
                    if (!r.read_string(x, name)) {
                        return;
                    }
                    preset_at = x;
                    auto preset = chain_preset(name);
                    if (!preset) {
                        r.error(x, preset.error().message);
                        return;
                    }
                    if (preset->height.pointer.empty()) {
                        r.error(x, fmt::format("chain preset {} reads no height", name));
                        return;
                    }
                    step.preset = std::make_shared<const supervisor::Preset>(std::move(*preset));
                }},
               {"url",
                [&](const Value& x) {
                    url_at = x;
                    read_url(r, x, step.url, false);
                }},
               {"check",
                [&](const Value& x) {
                    r.read_choice(x, step.chain_check, {"synced", "advancing", "lag"},
                                  "chain check", "synced, advancing, lag");
                }},
               only("max_head_age", [&](const Value& x) { r.read_duration(x, step.max_head_age); }),
               only("within", [&](const Value& x) { r.read_duration(x, step.within); }),
               only("peers",
                    [&](const Value& x) {
                        r.read_list(x, [&](const Value& item) {
                            std::string peer;
                            if (read_template(r, item, peer)) {
                                step.peers.push_back(std::move(peer));
                            }
                        });
                    }),
               only("fleet",
                    [&](const Value& x) {
                        step.fleet_peers = true;
                        r.read_string_map(x, step.fleet);
                    }),
               only("peer_url", [&](const Value& x) { read_url(r, x, step.peer_url, false); }),
               only("max_lag", [&](const Value& x) { r.read_int(x, step.max_lag, 0, 1'000'000); }),
           });
    if (!ok) {
        return;
    }
    if (!preset_at || !url_at) {
        r.error(v,
                "a chain step names its preset and the node's url: {preset: geth, url: "
                "\"http://127.0.0.1:8545\"}");
        return;
    }
    static const std::map<std::string_view, std::string_view> kCheckOf{
        {"max_head_age", "synced"}, {"within", "advancing"}, {"peers", "lag"},
        {"fleet", "lag"},           {"peer_url", "lag"},     {"max_lag", "lag"}};
    for (const auto& [key, at] : check_keys) {
        if (auto owner = kCheckOf.at(key); owner != step.chain_check) {
            r.error(at, fmt::format("{} applies to check {}, and this one is {}", key, owner,
                                    step.chain_check));
        }
    }
    if (step.chain_check == "lag" && step.peers.empty() && !step.fleet_peers) {
        r.error(v,
                "a lag check needs peers to compare with: `fleet: {chain: geth}` (the pool's "
                "nodes with those labels) or `peers: [URL...]`");
    }
    if (auto at = check_keys.find("peer_url"); at != check_keys.end() && !step.fleet_peers) {
        r.error(at->second,
                "peer_url says how to reach the nodes `fleet` selects, and there is "
                "no fleet");
    }
    if (step.fleet_peers && step.peer_url.empty() &&
        step.url.find("{{node}}") == std::string::npos) {
        r.error(*url_at, fmt::format("a lag check over the fleet reaches each peer at `url` with "
                                     "{{{{node}}}} set to the peer's name, and \"{}\" has no "
                                     "{{{{node}}}}: give peer_url",
                                     step.url));
    }
}

void read_step(YamlReader& r, const Value& item, probes::Step& step, int depth) {
    int kinds = 0;
    auto kind = [&](std::function<void(const Value&)> read) {
        return [&kinds, read = std::move(read)](const Value& x) {
            ++kinds;
            read(x);
        };
    };
    bool ok = r.read_map(
        item, {
                  {"name", [&](const Value& x) { r.read_string(x, step.name); }},
                  {"timeout", [&](const Value& x) { r.read_duration(x, step.timeout); }},
                  {"assert", [&](const Value& x) { read_assertions(r, x, step.assertions); }},
                  {"capture", [&](const Value& x) { read_captures(r, x, step.captures); }},
                  {"http", kind([&](const Value& x) { read_http(r, x, step); })},
                  {"jsonrpc", kind([&](const Value& x) { read_jsonrpc(r, x, step); })},
                  {"websocket", kind([&](const Value& x) { read_websocket(r, x, step); })},
                  {"tcp", kind([&](const Value& x) {
                       step.kind = probes::StepKind::kTcp;
                       if (read_template(r, x, step.address) &&
                           step.address.find(':') == std::string::npos) {
                           r.error(x, fmt::format("\"{}\" is not HOST:PORT", step.address));
                       }
                   })},
                  {"command", kind([&](const Value& x) {
                       step.kind = probes::StepKind::kCommand;
                       r.read_list(x, [&](const Value& arg) {
                           std::string text;
                           if (read_template(r, arg, text)) {
                               step.argv.push_back(std::move(text));
                           }
                       });
                       if (step.argv.empty()) {
                           r.error(x,
                                   "a command is a non-empty list: [program, arg, ...] (no shell)");
                       }
                   })},
                  {"action", kind([&](const Value& x) { read_action(r, x, step); })},
                  {"chain", kind([&](const Value& x) { read_chain(r, x, step); })},
                  {"poll", kind([&](const Value& x) {
                       step.kind = probes::StepKind::kPoll;
                       read_nested(r, x, step, depth);
                   })},
                  {"parallel", kind([&](const Value& x) {
                       step.kind = probes::StepKind::kParallel;
                       read_nested(r, x, step, depth);
                   })},
              });
    if (ok && kinds != 1) {
        r.error(item, fmt::format("a step is exactly one of {}", kStepKinds));
    }
    bool nested = step.kind == probes::StepKind::kPoll || step.kind == probes::StepKind::kParallel;
    if (ok && nested && (!step.assertions.empty() || !step.captures.empty())) {
        r.error(item, "assert and capture go on the steps inside a poll or parallel");
    }
}

void read_steps(YamlReader& r, const Value& value, std::vector<probes::Step>& steps, int depth) {
    r.read_list(value, [&](const Value& item) {
        probes::Step step;
        read_step(r, item, step, depth);
        steps.push_back(std::move(step));
    });
}

void read_scenario(YamlReader& r, const Value& value, probes::Scenario& s) {
    bool has_steps = false;
    r.read_map(value, {
                          {"description", [&](const Value& v) { r.read_string(v, s.description); }},
                          {"interval", [&](const Value& v) { r.read_duration(v, s.interval); }},
                          {"timeout", [&](const Value& v) { r.read_duration(v, s.timeout); }},
                          {"enabled", [&](const Value& v) { r.read_bool(v, s.enabled); }},
                          {"labels", [&](const Value& v) { r.read_string_map(v, s.labels); }},
                          {"node", [&](const Value& v) { r.read_string(v, s.node); }},
                          {"vars",
                           [&](const Value& v) {
                               r.read_entries(v, [&](const Value& key, const Value& item) {
                                   const std::string& name = key.node.Scalar();
                                   if (!is_name(name)) {
                                       r.error(key,
                                               fmt::format("\"{}\" is not a variable name", name));
                                       return;
                                   }
                                   std::string text;
                                   if (read_template(r, item, text)) {
                                       s.vars[name] = std::move(text);
                                   }
                               });
                           }},
                          {"steps",
                           [&](const Value& v) {
                               has_steps = true;
                               read_steps(r, v, s.steps, 0);
                           }},
                          {"cleanup", [&](const Value& v) { read_steps(r, v, s.cleanup, 0); }},
                      });
    if (!has_steps || s.steps.empty()) {
        r.error(value, fmt::format("scenario {} has no steps", s.name));
    }
    if (s.interval < core::Millis{1000}) {
        r.error(value, fmt::format("scenario {}: the interval must be at least 1s", s.name));
    }
}

/// A wait that may be none: "0s" (or 0), or a duration.
void read_wait(YamlReader& r, const Value& value, core::Millis& out) {
    if (value.node.IsScalar() && (value.node.Scalar() == "0" || value.node.Scalar() == "0s")) {
        out = core::Millis{0};
        return;
    }
    r.read_duration(value, out);
}

/// A share: "95%", "99.5%", or a number in (0, 1].
bool read_share(YamlReader& r, const Value& value, double& out) {
    std::string text;
    if (!r.read_string(value, text)) {
        return false;
    }
    bool percent = !text.empty() && text.back() == '%';
    if (percent) {
        text.pop_back();
    }
    double number = 0;
    std::size_t used = 0;
    try {
        number = std::stod(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != text.size()) {
        r.error(value, fmt::format("{} is not a share: write 95% or 0.95", shown(value)));
        return false;
    }
    if (percent) {
        number /= 100.0;
    }
    if (!(number > 0 && number <= 1)) {
        r.error(value, fmt::format("{} is not a share between 0 and 100%{}", shown(value),
                                   !percent && number > 1 ? " (write 95% or 0.95)" : ""));
        return false;
    }
    out = number;
    return true;
}

/// A list of distinct strings; `check` (when set) sees each one read, with where it is.
void read_names(YamlReader& r,
                const Value& value,
                std::vector<std::string>& out,
                const std::function<void(const std::string&, const Value&)>& check = {}) {
    out.clear();
    r.read_list(value, [&](const Value& item) {
        std::string name;
        if (!r.read_string(item, name)) {
            return;
        }
        if (std::find(out.begin(), out.end(), name) != out.end()) {
            r.error(item, fmt::format("\"{}\" is listed twice", name));
            return;
        }
        if (check) {
            check(name, item);
        }
        out.push_back(std::move(name));
    });
}

/// probes.alarms.NAME. Keys that only one kind reads are refused on the others, so a rule
/// never silently ignores what its author wrote.
void read_alarm(YamlReader& r,
                const Value& value,
                probes::AlarmRule& rule,
                const std::vector<probes::Scenario>& scenarios,
                core::Millis kept,
                std::vector<std::pair<std::string, Value>>& notify_refs) {
    std::map<std::string, Value, std::less<>> kind_keys;  // key -> where, for the kind check
    std::optional<Value> scenarios_at;
    std::optional<Value> selector_at;
    std::optional<Value> measure_at;
    auto only = [&](std::string_view key, std::function<void(const Value&)> read) {
        return Field{key, [&kind_keys, key, read = std::move(read)](const Value& v) {
                         kind_keys.emplace(std::string{key}, v);
                         read(v);
                     }};
    };
    std::string kind = "availability";
    bool kind_known = true;
    std::string measure;
    r.read_map(
        value,
        {
            {"kind",
             [&](const Value& v) {
                 kind_known = r.read_choice(v, kind, {"availability", "consecutive", "slo"},
                                            "alarm kind", "availability, consecutive, slo");
                 if (kind_known) {
                     rule.kind = kind == "slo"           ? probes::AlarmKind::kSlo
                                 : kind == "consecutive" ? probes::AlarmKind::kConsecutiveFailures
                                                         : probes::AlarmKind::kAvailability;
                 }
             }},
            {"scenarios",
             [&](const Value& v) {
                 scenarios_at = v;
                 read_names(r, v, rule.scenarios, [&](const std::string& name, const Value& at) {
                     auto found = std::find_if(scenarios.begin(), scenarios.end(),
                                               [&](const auto& s) { return s.name == name; });
                     if (found == scenarios.end()) {
                         std::vector<std::string_view> known;
                         for (const auto& s : scenarios) {
                             known.push_back(s.name);
                         }
                         r.error(at, fmt::format("no scenario \"{}\"{}", name,
                                                 did_you_mean(name, known)));
                     } else if (!found->enabled) {
                         r.error(at, fmt::format("scenario \"{}\" is not enabled: it never "
                                                 "runs on a schedule, so it cannot alarm",
                                                 name));
                     }
                 });
             }},
            {"selector",
             [&](const Value& v) {
                 selector_at = v;
                 r.read_string_map(v, rule.selector);
             }},
            {"measure",
             [&](const Value& v) {
                 measure_at = v;
                 if (r.read_choice(v, measure, {"availability", "correctness", "success"},
                                   "measure", "availability, correctness, success")) {
                     rule.measure = measure == "correctness" ? probes::Measure::kCorrectness
                                    : measure == "success"   ? probes::Measure::kSuccess
                                                             : probes::Measure::kAvailability;
                 }
             }},
            only("threshold", [&](const Value& v) { read_share(r, v, rule.threshold); }),
            only("period", [&](const Value& v) { r.read_duration(v, rule.period); }),
            only("periods", [&](const Value& v) { r.read_int(v, rule.periods, 1, 1000); }),
            only("breaching", [&](const Value& v) { r.read_int(v, rule.breaching, 1, 1000); }),
            only("failures", [&](const Value& v) { r.read_int(v, rule.failures, 1, 1000); }),
            only("objective", [&](const Value& v) { read_share(r, v, rule.objective); }),
            only("window", [&](const Value& v) { r.read_duration(v, rule.window); }),
            {"for", [&](const Value& v) { read_wait(r, v, rule.pending); }},
            {"keep_firing_for", [&](const Value& v) { read_wait(r, v, rule.keep_firing_for); }},
            {"repeat",
             [&](const Value& v) {
                 if (v.node.IsScalar() && v.node.Scalar() == "never") {
                     rule.repeat = core::Millis{0};
                 } else {
                     r.read_duration(v, rule.repeat);
                 }
             }},
            {"notify",
             [&](const Value& v) {
                 read_names(r, v, rule.notify, [&](const std::string& name, const Value& at) {
                     notify_refs.emplace_back(name, at);
                 });
             }},
        });
    static const std::map<std::string_view, std::string_view> kKindOf{{"threshold", "availability"},
                                                                      {"period", "availability"},
                                                                      {"periods", "availability"},
                                                                      {"breaching", "availability"},
                                                                      {"failures", "consecutive"},
                                                                      {"objective", "slo"},
                                                                      {"window", "slo"}};
    for (const auto& [key, at] : kind_keys) {
        if (auto owner = kKindOf.at(key); kind_known && owner != kind) {
            r.error(at, fmt::format("{} applies to alarms of kind {}, and this one is {}", key,
                                    owner, kind));
        }
    }
    if (scenarios_at && selector_at) {
        r.error(*selector_at, "name the scenarios or give a selector, not both");
    }
    if (!measure_at && rule.kind == probes::AlarmKind::kConsecutiveFailures) {
        rule.measure = probes::Measure::kSuccess;  // any bad run counts, unless told otherwise
    }
    if (rule.kind == probes::AlarmKind::kAvailability) {
        if (rule.period.count() % store::kProbeBucket.count() != 0) {
            r.error(kind_keys.contains("period") ? kind_keys.at("period") : value,
                    fmt::format("the period must be a multiple of {} (runs are counted in "
                                "buckets that wide)",
                                core::format_duration(store::kProbeBucket)));
        }
        if (rule.breaching > rule.periods) {
            r.error(kind_keys.contains("breaching") ? kind_keys.at("breaching") : value,
                    fmt::format("breaching ({}) cannot exceed periods ({})", rule.breaching,
                                rule.periods));
        }
    }
    if (rule.kind == probes::AlarmKind::kSlo) {
        if (rule.objective >= 1.0) {
            r.error(kind_keys.contains("objective") ? kind_keys.at("objective") : value,
                    "an objective of 100% leaves no error budget to burn");
        }
        if (rule.window > kept) {
            r.error(kind_keys.contains("window") ? kind_keys.at("window") : value,
                    fmt::format("an SLO window of {} is longer than the runs are counted for ({}: "
                                "probes.retention, at least 31 days)",
                                core::format_duration(rule.window), core::format_duration(kept)));
        }
        if (rule.window < core::Millis{std::chrono::hours{6}}) {
            r.error(kind_keys.contains("window") ? kind_keys.at("window") : value,
                    "an SLO window must be at least 6h (the slow burn is read over 6h)");
        }
    }
}

}  // namespace

void read_probes(YamlReader& r,
                 const Value& value,
                 probes::Settings& settings,
                 const std::filesystem::path& base_dir,
                 std::vector<std::pair<std::string, Value>>& notify_refs) {
    SecretSource token;
    std::optional<Value> alarms_at;
    std::optional<Value> gates_at;
    r.read_map(
        value,
        {
            {"token_file",
             [&](const Value& v) {
                 if (r.read_string(v, token.file)) {
                     token.file_at.emplace(v);
                 }
             }},
            {"token_env",
             [&](const Value& v) {
                 if (r.read_string(v, token.env)) {
                     token.env_at.emplace(v);
                 }
             }},
            {"max_concurrent",
             [&](const Value& v) { r.read_int(v, settings.max_concurrent, 1, 1024); }},
            {"max_body_bytes", [&](const Value& v) { r.read_bytes(v, settings.max_body_bytes); }},
            {"retention", [&](const Value& v) { r.read_duration(v, settings.retention); }},
            {"evaluate_every",
             [&](const Value& v) { r.read_duration(v, settings.evaluate_every); }},
            {"public_url", [&](const Value& v) { r.read_string(v, settings.public_url); }},
            {"silence_actions",
             [&](const Value& v) { read_names(r, v, settings.silence_actions); }},
            {"alarms", [&](const Value& v) { alarms_at = v; }},
            {"gates", [&](const Value& v) { gates_at = v; }},
            {"gate_poll", [&](const Value& v) { r.read_duration(v, settings.gate_poll); }},
            {"scenarios",
             [&](const Value& v) {
                 settings.scenarios.clear();
                 r.read_entries(v, [&](const Value& key, const Value& item) {
                     probes::Scenario s;
                     s.name = key.node.Scalar();
                     if (!is_name(s.name)) {
                         r.error(key, fmt::format("\"{}\" is not a scenario name (letters, "
                                                  "digits, _, - and ., at most 64)",
                                                  s.name));
                         return;
                     }
                     read_scenario(r, item, s);
                     settings.scenarios.push_back(std::move(s));
                 });
             }},
        });
    std::string token_path;
    load_source(r, token, "token", base_dir, token_path, settings.token);
    // After the scenarios, whatever the keys' order: the gates and the rules name them.
    if (gates_at) {
        settings.gates.clear();
        r.read_entries(*gates_at, [&](const Value& key, const Value& item) {
            probes::Gate gate;
            gate.name = key.node.Scalar();
            std::optional<Value> scenario_at;
            bool ok = r.read_map(
                item,
                {
                    {"selector", [&](const Value& v) { r.read_string_map(v, gate.selector); }},
                    {"scenario",
                     [&](const Value& v) {
                         scenario_at = v;
                         r.read_string(v, gate.scenario);
                     }},
                    {"max_age", [&](const Value& v) { r.read_duration(v, gate.max_age); }},
                });
            if (!ok) {
                return;
            }
            if (!scenario_at) {
                r.error(item,
                        fmt::format("gate {} names the scenario its nodes must pass", gate.name));
                return;
            }
            const auto* scenario = probes::find_scenario(settings, gate.scenario);
            if (scenario == nullptr) {
                std::vector<std::string_view> known;
                for (const auto& s : settings.scenarios) {
                    known.push_back(s.name);
                }
                r.error(*scenario_at, fmt::format("no scenario \"{}\"{}", gate.scenario,
                                                  did_you_mean(gate.scenario, known)));
                return;
            }
            if (scenario->timeout >= gate.max_age) {
                r.error(item, fmt::format("gate {}: max_age ({}) must exceed the scenario's "
                                          "timeout ({})",
                                          gate.name, core::format_duration(gate.max_age),
                                          core::format_duration(scenario->timeout)));
            }
            settings.gates.push_back(std::move(gate));
        });
    }
    if (alarms_at) {
        settings.alarms.clear();
        r.read_entries(*alarms_at, [&](const Value& key, const Value& item) {
            probes::AlarmRule rule;
            rule.name = key.node.Scalar();
            if (rule.name == "gate") {
                r.error(key,
                        "\"gate\" is the gates' own alarms' rule (gate/NODE): name this "
                        "rule otherwise");
                return;
            }
            if (!is_name(rule.name)) {
                r.error(key, fmt::format("\"{}\" is not an alarm name (letters, digits, _, - and "
                                         "., at most 64)",
                                         rule.name));
                return;
            }
            // Buckets are kept for the retention or 31 days, whichever is longer.
            const core::Millis kept =
                std::max(settings.retention, core::Millis{std::chrono::hours{24 * 31}});
            read_alarm(r, item, rule, settings.scenarios, kept, notify_refs);
            settings.alarms.push_back(std::move(rule));
        });
    }
}

}  // namespace aviary::config
