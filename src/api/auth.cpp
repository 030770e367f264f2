#include "api/auth.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace aviary::api {
namespace {

std::string lower(std::string_view text) {
    std::string out{text};
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') {
            c = char(c - 'A' + 'a');
        }
    }
    return out;
}

/// Compares in time that depends only on the lengths, so a token cannot be guessed byte by
/// byte from response times.
bool constant_time_equal(std::string_view a, std::string_view b) {
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (size_t i = 0; i < b.size(); ++i) {
        diff |= static_cast<unsigned char>(a[i % (a.empty() ? 1 : a.size())] ^ b[i]);
    }
    return diff == 0 && !a.empty();
}

/// Splits "host:port", "[v6]:port", "host" into host (brackets kept off) and port.
std::pair<std::string, std::string> split_host(std::string_view text) {
    if (text.starts_with('[')) {
        auto close = text.find(']');
        if (close == std::string_view::npos) {
            return {std::string{text}, ""};
        }
        auto host = text.substr(1, close - 1);
        auto rest = text.substr(close + 1);
        return {lower(host), rest.starts_with(':') ? std::string{rest.substr(1)} : ""};
    }
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
        return {lower(text), ""};
    }
    return {lower(text.substr(0, colon)), std::string{text.substr(colon + 1)}};
}

bool is_ip_literal(std::string_view host) {
    if (host.find(':') != std::string_view::npos) {
        return true;  // only IPv6 literals hold colons once brackets are off
    }
    return !host.empty() && host.find_first_not_of("0123456789.") == std::string_view::npos;
}

std::string base64_decode(std::string_view text) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z')
            return c - 'A';
        if (c >= 'a' && c <= 'z')
            return c - 'a' + 26;
        if (c >= '0' && c <= '9')
            return c - '0' + 52;
        if (c == '+')
            return 62;
        if (c == '/')
            return 63;
        return -1;
    };
    std::string out;
    unsigned bits = 0;
    int count = 0;
    for (char c : text) {
        int v = value(c);
        if (v < 0) {
            break;  // '=' padding or junk ends it
        }
        bits = (bits << 6U) | unsigned(v);
        count += 6;
        if (count >= 8) {
            count -= 8;
            out += char((bits >> unsigned(count)) & 0xFFU);
        }
    }
    return out;
}

}  // namespace

bool is_loopback_host(std::string_view host) {
    auto h = lower(host);
    return h == "localhost" || h == "::1" || h.starts_with("127.");
}

Authenticator::Authenticator(const config::AuthSettings& settings,
                             std::string_view listen_address) {
    for (const auto& token : settings.tokens) {
        tokens_.push_back(TokenEntry{
            .secret = token.secret,
            .caller = fleet::Caller{.identity = token.identity,
                                    .admin = token.role == "admin",
                                    .groups = token.groups},
        });
    }
    auto host = split_host(listen_address).first;
    if (auto configured = net::split_host_port(listen_address)) {
        bound_port_.store(configured->second);
    }
    wildcard_listen_ = host == "0.0.0.0" || host == "::" || host.empty();
    loopback_listen_ = is_loopback_host(host);
    for (const auto& origin : settings.cors_origins) {
        cors_origins_.push_back(lower(origin));
    }
    names_ = {host, "localhost", "127.0.0.1", "::1"};
    for (const auto& name : settings.allowed_hosts) {
        names_.push_back(split_host(name).first);
    }
}

core::Result<fleet::Caller> Authenticator::authenticate(const net::Request& request) const {
    if (tokens_.empty()) {
        return fleet::Caller{.identity = "", .admin = true};
    }
    auto header = request.header("Authorization");
    std::string presented;
    if (header && lower(header->substr(0, 7)) == "bearer ") {
        presented = std::string{header->substr(7)};
    } else if (header && lower(header->substr(0, 6)) == "basic ") {
        // Browsers ask for Basic credentials on their own: the token is the password.
        auto decoded = base64_decode(header->substr(6));
        auto colon = decoded.find(':');
        presented = colon == std::string::npos ? std::string{} : decoded.substr(colon + 1);
    }
    if (presented.empty()) {
        return core::Error{core::ErrorCode::kUnauthenticated,
                           "a bearer token is required: send Authorization: Bearer TOKEN"};
    }
    return authenticate_token(presented);
}

core::Result<fleet::Caller> Authenticator::authenticate_token(std::string_view presented) const {
    if (tokens_.empty()) {
        return fleet::Caller{.identity = "", .admin = true};
    }
    const TokenEntry* match = nullptr;
    for (const auto& entry : tokens_) {
        // Every token is compared, matched or not, so the time says nothing about which.
        if (constant_time_equal(entry.secret, presented) && match == nullptr) {
            match = &entry;
        }
    }
    if (match == nullptr) {
        return core::Error{core::ErrorCode::kUnauthenticated, "the bearer token is not valid"};
    }
    return match->caller;
}

bool Authenticator::allowed_host(std::string_view host_header) const {
    auto [host, port] = split_host(host_header);
    bool known_name = std::find(names_.begin(), names_.end(), host) != names_.end();
    if (known_name || (wildcard_listen_ && is_ip_literal(host))) {
        // A configured proxy name may come without the port (or with the proxy's).
        bool configured = std::find(names_.begin() + 4, names_.end(), host) != names_.end();
        return configured || port.empty() || port == std::to_string(bound_port_.load());
    }
    return false;
}

core::Result<void> Authenticator::check_host_and_origin(const net::Request& request,
                                                        bool guarded) const {
    auto host = request.header("Host");
    if (!host || !allowed_host(*host)) {
        return core::Error{
            core::ErrorCode::kPermissionDenied,
            fmt::format("refused: Host \"{}\" is not this aviary (allowed: the listen address, "
                        "localhost, or a name in auth.allowed_hosts)",
                        host.value_or(""))};
    }
    if (!guarded) {
        return {};
    }
    if (auto origin = request.header("Origin")) {
        auto scheme_end = origin->find("://");
        bool ok = scheme_end != std::string_view::npos &&
                  (origin->starts_with("http://") || origin->starts_with("https://")) &&
                  allowed_host(origin->substr(scheme_end + 3));
        if (!ok) {
            return core::Error{
                core::ErrorCode::kPermissionDenied,
                fmt::format("refused: Origin \"{}\" is foreign to this aviary", *origin)};
        }
    }
    return {};
}

bool Authenticator::cors_origin_allowed(std::string_view origin) const {
    auto scheme_end = origin.find("://");
    if (scheme_end == std::string_view::npos ||
        !(origin.starts_with("http://") || origin.starts_with("https://"))) {
        return false;  // "null" (a file: page, a sandbox) and anything odd
    }
    auto authority = origin.substr(scheme_end + 3);
    if (authority.empty() || authority.find_first_of("/?#@ ") != std::string_view::npos) {
        return false;
    }
    if (!cors_origins_.empty()) {
        auto wanted = lower(origin);
        return std::any_of(cors_origins_.begin(), cors_origins_.end(),
                           [&](const std::string& o) { return o == "*" || o == wanted; });
    }
    return loopback_listen_ && is_loopback_host(split_host(authority).first);
}

}  // namespace aviary::api
