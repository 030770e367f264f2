// The `notify:` section: where Grafana is, how it is reached over TLS, the token it takes, and
// what is annotated.
#include "config/notify_reader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "config/jobs_reader.hpp"
#include "config/secrets.hpp"

namespace aviary::config {
namespace {

constexpr std::string_view kInlineSecret =
    "the token must come from token_file or token_env, never inline";

/// Why `url` is not a Grafana base URL aviary can use, or empty when it is one.
/// `where_credentials` says where the credentials go instead of the url.
std::string url_problem(std::string_view url,
                        std::string_view where_credentials =
                            "put the token in token_file or "
                            "token_env") {
    std::string_view scheme;
    for (std::string_view known : {"http://", "https://"}) {
        if (url.starts_with(known)) {
            scheme = known;
        }
    }
    if (scheme.empty()) {
        return "expected an http:// or https:// url like \"https://grafana.example\"";
    }
    if (url.find_first_of(" \t\r\n?#") != std::string_view::npos) {
        return "the url must not contain spaces, a query or a fragment";
    }
    auto rest = url.substr(scheme.size());
    auto authority = rest.substr(0, rest.find('/'));
    if (authority.find('@') != std::string_view::npos) {
        return fmt::format("the url must not carry credentials: {}", where_credentials);
    }
    if (authority.empty() || authority.front() == ':') {
        return "the url has no host";
    }
    if (auto colon = authority.rfind(':');
        colon != std::string_view::npos && authority.back() != ']') {
        auto port = authority.substr(colon + 1);
        if (port.empty() || port.size() > 5 ||
            !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
            std::stoi(std::string{port}) > 65535) {
            return fmt::format("\"{}\" is not a port", port);
        }
    }
    return {};
}

void read_url(YamlReader& r, const Value& value, std::string& url) {
    std::string text;
    if (!r.read_string(value, text)) {
        return;
    }
    if (!text.empty()) {
        if (auto problem = url_problem(text); !problem.empty()) {
            r.error(value, problem);
            return;
        }
    }
    url = std::move(text);
}

void read_actions(YamlReader& r,
                  const Value& value,
                  std::vector<std::string>& actions,
                  std::vector<ActionRef>& refs) {
    actions.clear();
    r.read_list(value, [&](const Value& item) {
        std::string name;
        if (!r.read_string(item, name)) {
            return;
        }
        if (std::find(actions.begin(), actions.end(), name) != actions.end()) {
            r.error(item, fmt::format("action \"{}\" is listed twice", name));
            return;
        }
        refs.push_back(ActionRef{name, item});
        actions.push_back(std::move(name));
    });
}

void read_tags(YamlReader& r, const Value& value, std::vector<std::string>& tags) {
    r.read_list(value, [&](const Value& item) {
        std::string tag;
        if (!r.read_string(item, tag)) {
            return;
        }
        if (tag.empty() || tag.back() == ':') {
            r.error(item, fmt::format("\"{}\" is not a tag (non-empty, and a \"key:\" needs a "
                                      "value after the colon)",
                                      tag));
            return;
        }
        tags.push_back(std::move(tag));
    });
}

/// notify.grafana.tls: how an https Grafana is verified and how aviary proves who it is.
void read_grafana_tls(YamlReader& r,
                      const Value& value,
                      notify::GrafanaTls& tls,
                      const std::filesystem::path& base_dir) {
    std::optional<Value> cert_at;
    std::optional<Value> key_at;
    r.read_map(value, {
                          {"ca_file",
                           [&](const Value& v) {
                               read_file_setting(r, v, "TLS CA file", base_dir, tls.ca_file);
                           }},
                          {"cert_file",
                           [&](const Value& v) {
                               cert_at = v;
                               read_file_setting(r, v, "TLS certificate file", base_dir,
                                                 tls.cert_file);
                           }},
                          {"key_file",
                           [&](const Value& v) {
                               key_at = v;
                               read_file_setting(r, v, "TLS key file", base_dir, tls.key_file);
                           }},
                      });
    check_cert_and_key(r, cert_at, key_at, "a client certificate needs both");
}

struct GrafanaRead {
    std::optional<Value> url_at;
    std::optional<Value> tls_at;
    std::optional<Value> file_at;
    std::optional<Value> env_at;
    std::optional<Value> backoff_at;
    std::optional<Value> backoff_max_at;
    std::vector<ActionRef> actions;
};

void read_grafana(YamlReader& r,
                  const Value& value,
                  notify::GrafanaSettings& s,
                  const std::vector<jobs::ActionSpec>& actions,
                  const std::filesystem::path& base_dir) {
    GrafanaRead seen;
    std::string token_file;
    std::string token_env;
    bool inline_secret = false;
    auto refuse = [&](const Value& v) {
        r.error(v, kInlineSecret);
        inline_secret = true;
    };
    auto before = r.error_count();
    bool ok = r.read_map(
        value,
        {
            {"url",
             [&](const Value& v) {
                 seen.url_at = v;
                 read_url(r, v, s.url);
             }},
            {"token_file",
             [&](const Value& v) {
                 seen.file_at = v;
                 r.read_string(v, token_file);
             }},
            {"token_env",
             [&](const Value& v) {
                 seen.env_at = v;
                 r.read_string(v, token_env);
             }},
            {"token", refuse},
            {"tls",
             [&](const Value& v) {
                 seen.tls_at = v;
                 read_grafana_tls(r, v, s.tls, base_dir);
             }},
            {"actions", [&](const Value& v) { read_actions(r, v, s.actions, seen.actions); }},
            {"tags", [&](const Value& v) { read_tags(r, v, s.tags); }},
            {"timeout", [&](const Value& v) { r.read_duration(v, s.timeout); }},
            {"retry_backoff",
             [&](const Value& v) {
                 seen.backoff_at = v;
                 r.read_duration(v, s.retry_backoff);
             }},
            {"retry_backoff_max",
             [&](const Value& v) {
                 seen.backoff_max_at = v;
                 r.read_duration(v, s.retry_backoff_max);
             }},
            {"poll", [&](const Value& v) { r.read_duration(v, s.poll); }},
        });
    if (!ok || inline_secret) {
        return;
    }
    check_action_refs(r, seen.actions, actions);
    if (r.error_count() == before && s.retry_backoff_max < s.retry_backoff) {
        const Value& at = seen.backoff_max_at ? *seen.backoff_max_at : *seen.backoff_at;
        r.error(at, fmt::format("retry_backoff_max ({}) must be at least retry_backoff ({})",
                                core::format_duration(s.retry_backoff_max),
                                core::format_duration(s.retry_backoff)));
    }
    if (s.url.empty()) {
        return;  // annotations are off: no token is needed, none is read
    }
    if (seen.tls_at && !s.url.starts_with("https://") &&
        !(s.tls.ca_file.empty() && s.tls.cert_file.empty())) {
        r.error(*seen.tls_at, "tls applies to an https:// url only; this url is http://");
    }
    if (token_file.empty() == token_env.empty()) {
        r.error(seen.url_at ? *seen.url_at : value,
                token_file.empty()
                    ? "a url needs a token: set exactly one of token_file or token_env"
                    : "set exactly one of token_file or token_env, not both");
        return;
    }
    const Value& at = token_file.empty() ? *seen.env_at : *seen.file_at;
    load_secret(r, at, token_file, token_env, base_dir, s.token);
}

/// notify.notifiers.NAME: a Slack incoming webhook or a generic webhook for alarms.
void read_notifier(YamlReader& r,
                   const Value& value,
                   notify::Notifier& n,
                   const std::filesystem::path& base_dir) {
    SecretSource url_source;
    SecretSource secret_source;
    std::optional<Value> url_at;
    std::optional<Value> type_at;
    std::optional<Value> tls_at;
    std::string type;
    auto source = [&](SecretSource& into, bool file) {
        return [&r, &into, file](const Value& v) {
            if (r.read_string(v, file ? into.file : into.env)) {
                (file ? into.file_at : into.env_at).emplace(v);
            }
        };
    };
    bool ok = r.read_map(
        value, {
                   {"type",
                    [&](const Value& v) {
                        type_at = v;
                        if (r.read_choice(v, type, {"slack", "webhook"}, "notifier type",
                                          "slack, webhook")) {
                            n.type = type == "slack" ? notify::Notifier::Type::kSlack
                                                     : notify::Notifier::Type::kWebhook;
                        }
                    }},
                   {"url",
                    [&](const Value& v) {
                        url_at = v;
                        r.read_string(v, n.url);
                    }},
                   {"url_file", source(url_source, true)},
                   {"url_env", source(url_source, false)},
                   {"secret_file", source(secret_source, true)},
                   {"secret_env", source(secret_source, false)},
                   {"secret",
                    [&](const Value& v) {
                        r.error(
                            v, "the secret must come from secret_file or secret_env, never inline");
                    }},
                   {"timeout", [&](const Value& v) { r.read_duration(v, n.timeout); }},
                   {"tls",
                    [&](const Value& v) {
                        tls_at = v;
                        read_grafana_tls(r, v, n.tls, base_dir);
                    }},
               });
    if (!ok) {
        return;
    }
    if (!type_at) {
        r.error(value, fmt::format("notifier {} needs a type: slack or webhook", n.name));
        return;
    }
    const bool from_source = !url_source.file.empty() || !url_source.env.empty();
    if (n.type == notify::Notifier::Type::kSlack && url_at) {
        // A Slack webhook's URL is its credential: it belongs in a file or the environment.
        r.error(*url_at, "a Slack webhook's url is a secret: give url_file or url_env");
        return;
    }
    if (url_at && from_source) {
        r.error(*url_at, "give url, url_file or url_env, only one");
        return;
    }
    if (!url_at && !from_source) {
        r.error(value, fmt::format("notifier {} needs a url (url, url_file or url_env)", n.name));
        return;
    }
    std::string path;
    load_source(r, url_source, "url", base_dir, path, n.url);
    const Value& where = url_at               ? *url_at
                         : url_source.file_at ? *url_source.file_at
                                              : *url_source.env_at;
    if (!n.url.empty()) {
        if (auto problem = url_problem(n.url, "put them in a file or the environment");
            !problem.empty()) {
            // The url may be the secret: the message names the problem, never the value.
            r.error(where, problem);
            return;
        }
    }
    if (n.type == notify::Notifier::Type::kSlack &&
        (!secret_source.file.empty() || !secret_source.env.empty())) {
        r.error(secret_source.file_at ? *secret_source.file_at : *secret_source.env_at,
                "Slack does not check signatures: a secret applies to type webhook");
        return;
    }
    std::string secret_path;
    load_source(r, secret_source, "secret", base_dir, secret_path, n.secret);
    if (tls_at && !n.url.starts_with("https://") &&
        !(n.tls.ca_file.empty() && n.tls.cert_file.empty())) {
        r.error(*tls_at, "tls applies to an https:// url only");
    }
}

void read_delivery(YamlReader& r, const Value& value, notify::DeliverySettings& d) {
    std::optional<Value> max_at;
    r.read_map(value,
               {
                   {"retry_backoff", [&](const Value& v) { r.read_duration(v, d.retry_backoff); }},
                   {"retry_backoff_max",
                    [&](const Value& v) {
                        max_at = v;
                        r.read_duration(v, d.retry_backoff_max);
                    }},
                   {"give_up_after", [&](const Value& v) { r.read_duration(v, d.give_up_after); }},
                   {"poll", [&](const Value& v) { r.read_duration(v, d.poll); }},
               });
    if (d.retry_backoff_max < d.retry_backoff) {
        r.error(max_at ? *max_at : value,
                fmt::format("retry_backoff_max ({}) must be at least retry_backoff ({})",
                            core::format_duration(d.retry_backoff_max),
                            core::format_duration(d.retry_backoff)));
    }
}

}  // namespace

void read_notify(YamlReader& r,
                 const Value& value,
                 notify::Settings& settings,
                 const std::vector<jobs::ActionSpec>& actions,
                 const std::filesystem::path& base_dir) {
    r.read_map(
        value,
        {
            {"grafana",
             [&](const Value& v) { read_grafana(r, v, settings.grafana, actions, base_dir); }},
            {"notifiers",
             [&](const Value& v) {
                 settings.notifiers.clear();
                 r.read_entries(v, [&](const Value& key, const Value& item) {
                     notify::Notifier n;
                     n.name = key.node.Scalar();
                     read_notifier(r, item, n, base_dir);
                     settings.notifiers.push_back(std::move(n));
                 });
             }},
            {"delivery", [&](const Value& v) { read_delivery(r, v, settings.delivery); }},
        });
}

}  // namespace aviary::config
