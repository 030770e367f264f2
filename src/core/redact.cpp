// Redaction of what output and logs must never show: URL credentials and query values, helm
// `--set` values, and the configured secrets.
#include <algorithm>
#include <array>
#include <cctype>
#include <mutex>
#include <shared_mutex>

#include "core/core.hpp"

namespace aviary::core {
namespace {

constexpr std::string_view kRedacted = "REDACTED";

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/// Where a URL that starts at `begin` of `line` ends: at whitespace, a quote, or a bracket
/// that text usually puts around a URL.
std::size_t url_end(std::string_view line, std::size_t begin) {
    std::size_t end = begin;
    while (end < line.size() && !is_space(line[end]) && line[end] != '"' && line[end] != '\'' &&
           line[end] != '<' && line[end] != '>' && line[end] != '`') {
        ++end;
    }
    return end;
}

std::string redact_query(std::string_view query) {
    std::string out;
    std::size_t pos = 0;
    while (pos <= query.size()) {
        auto amp = query.find('&', pos);
        auto item = query.substr(pos, amp == std::string_view::npos ? amp : amp - pos);
        if (!out.empty() || pos > 0) {
            out += '&';
        }
        if (!item.empty()) {
            auto eq = item.find('=');
            // A bare item ("?SECRET") is a value too.
            out += eq == std::string_view::npos
                       ? std::string{kRedacted}
                       : std::string{item.substr(0, eq + 1)} + std::string{kRedacted};
        }
        if (amp == std::string_view::npos) {
            break;
        }
        pos = amp + 1;
    }
    return out;
}

/// Replaces every URL (scheme://...) in `line` with redact_url's form.
std::string redact_urls(std::string_view line) {
    std::string out;
    std::size_t pos = 0;
    while (true) {
        auto sep = line.find("://", pos);
        if (sep == std::string_view::npos) {
            out.append(line.substr(pos));
            return out;
        }
        // The scheme: letters, digits, '+', '-', '.' before "://".
        std::size_t begin = sep;
        while (begin > pos &&
               (std::isalnum(static_cast<unsigned char>(line[begin - 1])) != 0 ||
                line[begin - 1] == '+' || line[begin - 1] == '-' || line[begin - 1] == '.')) {
            --begin;
        }
        auto end = url_end(line, sep + 3);
        out.append(line.substr(pos, begin - pos));
        out += begin == sep ? std::string{line.substr(begin, end - begin)}
                            : redact_url(line.substr(begin, end - begin));
        pos = end;
    }
}

constexpr std::array<std::string_view, 3> kSetFlags{"--set", "--set-string", "--set-json"};

/// The value part of a `--set` argument "KEY=VALUE" (quoted or not) starting at `begin`:
/// [value_begin, value_end) and the key; npos when the argument is not KEY=VALUE.
struct SetArg {
    std::string_view key;
    std::size_t value_begin = std::string_view::npos;
    std::size_t value_end = std::string_view::npos;
};

SetArg parse_set_arg(std::string_view line, std::size_t begin) {
    SetArg arg;
    // The whole argument quoted ('KEY=VALUE', as a shell-quoted argv prints it), or only its
    // value (KEY='VALUE').
    char quote = 0;
    if (begin < line.size() && (line[begin] == '\'' || line[begin] == '"')) {
        quote = line[begin];
        ++begin;
    }
    auto is_end = [&](std::size_t at) {
        return at >= line.size() || (quote != 0 ? line[at] == quote : is_space(line[at]));
    };
    std::size_t eq = begin;
    while (!is_end(eq) && line[eq] != '=') {
        ++eq;
    }
    if (is_end(eq)) {
        return arg;
    }
    arg.key = line.substr(begin, eq - begin);
    arg.value_begin = eq + 1;
    if (quote == 0 && arg.value_begin < line.size() &&
        (line[arg.value_begin] == '\'' || line[arg.value_begin] == '"')) {
        quote = line[arg.value_begin];
        ++arg.value_begin;
    }
    arg.value_end = arg.value_begin;
    while (!is_end(arg.value_end)) {
        ++arg.value_end;
    }
    return arg;
}

}  // namespace

std::string redact_url(std::string_view url) {
    auto sep = url.find("://");
    if (sep == std::string_view::npos) {
        return std::string{url};
    }
    auto authority_begin = sep + 3;
    auto authority_end = url.find_first_of("/?#", authority_begin);
    if (authority_end == std::string_view::npos) {
        authority_end = url.size();
    }
    auto authority = url.substr(authority_begin, authority_end - authority_begin);
    auto at = authority.rfind('@');
    std::string out{url.substr(0, authority_begin)};
    out.append(at == std::string_view::npos ? authority : authority.substr(at + 1));
    auto rest = url.substr(authority_end);
    auto question = rest.find('?');
    if (question == std::string_view::npos) {
        out.append(rest);
        return out;
    }
    auto fragment = rest.find('#', question);
    out.append(rest.substr(0, question + 1));
    out += redact_query(rest.substr(
        question + 1, fragment == std::string_view::npos ? fragment : fragment - question - 1));
    if (fragment != std::string_view::npos) {
        out.append(rest.substr(fragment));
    }
    return out;
}

Redactor::Redactor(std::vector<std::string> secrets, std::vector<std::string> safe_set_keys) {
    for (auto& secret : secrets) {
        add_secret(std::move(secret));
    }
    for (auto& key : safe_set_keys) {
        add_safe_set_key(std::move(key));
    }
}

void Redactor::add_secret(std::string secret) {
    // A very short "secret" would blank out ordinary words of every line.
    if (secret.size() < kMinSecretLength) {
        return;
    }
    std::unique_lock lock{mu_};
    if (std::find(secrets_.begin(), secrets_.end(), secret) == secrets_.end()) {
        secrets_.push_back(std::move(secret));
        // Longest first: a secret that contains another is replaced whole.
        std::sort(secrets_.begin(), secrets_.end(),
                  [](const auto& a, const auto& b) { return a.size() > b.size(); });
    }
}

void Redactor::add_safe_set_key(std::string key) {
    std::unique_lock lock{mu_};
    safe_set_keys_.insert(std::move(key));
}

std::string Redactor::redact_set_values(std::string_view line) const {
    std::string out;
    std::size_t pos = 0;
    while (true) {
        // The next "--set..." flag that is a word of its own.
        std::size_t flag = std::string_view::npos;
        std::size_t after = 0;
        for (auto name : kSetFlags) {
            for (auto at = line.find(name, pos); at != std::string_view::npos;
                 at = line.find(name, at + 1)) {
                auto next = at + name.size();
                bool word_start = at == 0 || is_space(line[at - 1]);
                bool word_end = next < line.size() && (is_space(line[next]) || line[next] == '=');
                if (word_start && word_end) {
                    if (at < flag || (at == flag && next > after)) {
                        flag = at;
                        after = next;
                    }
                    break;
                }
            }
        }
        if (flag == std::string_view::npos) {
            out.append(line.substr(pos));
            return out;
        }
        auto arg = parse_set_arg(line, after + 1);
        if (arg.value_begin == std::string_view::npos) {
            out.append(line.substr(pos, after - pos));
            pos = after;
            continue;
        }
        out.append(line.substr(pos, arg.value_begin - pos));
        bool safe = false;
        {
            std::shared_lock lock{mu_};
            safe = safe_set_keys_.count(arg.key) > 0;
        }
        // "--set a=1,b=2" sets several keys: only a lone safe key shows its value.
        auto value = line.substr(arg.value_begin, arg.value_end - arg.value_begin);
        safe = safe && value.find(',') == std::string_view::npos;
        out.append(safe ? value : kRedacted);
        pos = arg.value_end;
    }
}

void Redactor::hide_secrets(std::string& text) const {
    std::shared_lock lock{mu_};
    for (const auto& secret : secrets_) {
        for (auto at = text.find(secret); at != std::string::npos;
             at = text.find(secret, at + kRedacted.size())) {
            text.replace(at, secret.size(), kRedacted);
        }
    }
}

std::string Redactor::redact(std::string_view line) const {
    std::string out{line};
    hide_secrets(out);
    if (out.find("--set") != std::string::npos) {
        out = redact_set_values(out);
    }
    if (out.find("://") != std::string::npos) {
        out = redact_urls(out);
    }
    return out;
}

Redactor& redactor() {
    static Redactor process_redactor;
    return process_redactor;
}

std::string redact(std::string_view line) {
    return redactor().redact(line);
}

}  // namespace aviary::core
