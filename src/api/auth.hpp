#pragma once
// Private to api: who is calling, and whether a request may change anything.
//
// Tokens: with auth.tokens configured, every request but /healthz and /readyz must carry
// `Authorization: Bearer SECRET`; the secret maps to an identity and a role. Without tokens
// (loopback only, enforced at start) every caller is an admin.
//
// Host and Origin: every request but the probes (/healthz, /readyz, /metrics) must name
// aviary itself in Host — the listen address, localhost / 127.0.0.1 / [::1] on the listen
// port, or a name in auth.allowed_hosts — so a page reaching a local aviary through a rebound
// DNS name can neither change nor read anything (job output, events, the dashboard). A change
// (POST, PUT, PATCH, DELETE) or a WebSocket upgrade that carries an Origin must also come from
// an origin on one of those hosts (CSRF, cross-site WebSocket hijacking). Tokens do not replace
// these checks: browsers attach no bearer token on their own. docs/security.md explains both.
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "fleet/fleet.hpp"
#include "net/net.hpp"

namespace aviary::api {

class Authenticator {
public:
    Authenticator(const config::AuthSettings& settings, std::string_view listen_address);

    bool tokens_required() const { return !tokens_.empty(); }
    /// The caller named by the request's bearer token. kUnauthenticated without one (when
    /// tokens are configured) or with an unknown one.
    core::Result<fleet::Caller> authenticate(const net::Request& request) const;
    /// The caller a token names, however it came (Bitahoy's in-band `auth` message).
    /// kUnauthenticated for an unknown one; without tokens configured, an admin.
    core::Result<fleet::Caller> authenticate_token(std::string_view token) const;
    /// kPermissionDenied naming the refused Host (checked on every request) or Origin (checked
    /// when `guarded`: a change or a WebSocket upgrade).
    core::Result<void> check_host_and_origin(const net::Request& request, bool guarded) const;
    /// True when a browser page from `origin` ("https://dash.example:8443") may call the
    /// CORS routes (the roller's): an origin in auth.cors_origins ("*": any), or, when none are
    /// configured, a loopback origin while serve listens on loopback. Such an origin also
    /// passes the Origin rule on those routes.
    bool cors_origin_allowed(std::string_view origin) const;
    /// The port actually bound (the configured one may be 0). Called once after the server
    /// starts, before the address is published.
    void set_bound_port(std::uint16_t port) { bound_port_.store(port); }

private:
    bool allowed_host(std::string_view host_header) const;

    struct TokenEntry {
        std::string secret;
        fleet::Caller caller;
    };
    std::vector<TokenEntry> tokens_;
    std::vector<std::string> names_;            // allowed host names, lower case, without port
    std::atomic<std::uint16_t> bound_port_{0};  // the listen port (0 until bound)
    bool wildcard_listen_ = false;           // 0.0.0.0 / [::]: any IP literal is the machine itself
    bool loopback_listen_ = false;           // listening on loopback: loopback origins may use CORS
    std::vector<std::string> cors_origins_;  // lower case
};

/// True for 127.0.0.0/8, ::1 and localhost.
bool is_loopback_host(std::string_view host);

}  // namespace aviary::api
