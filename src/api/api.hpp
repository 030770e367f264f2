#pragma once
/// api: the serve role. Wires the store, the fleet and the HTTP server, and speaks the outside
/// wire formats: the tweety JSON-RPC at POST / (docs/api.md), /healthz, /readyz and /metrics.
/// Later issues add REST, WebSocket and the dashboard here.
#include <string_view>

#include "config/config.hpp"
#include "probes/probes.hpp"
#include "supervisor/supervisor.hpp"

namespace aviary::api {

struct ServeOptions {
    /// Allows a non-loopback listen address without auth.tokens (`serve --insecure`).
    bool insecure = false;
};

/// Runs `aviary serve` until SIGTERM or SIGINT, then shuts down gracefully (in-flight requests
/// finish within server.shutdown_grace, the store is drained and closed). Returns the process
/// exit code; errors at start-up are printed to stderr and return 1.
int serve(config::Config config, ServeOptions options = {});

/// Runs `aviary worker` until SIGTERM or SIGINT: job workers on a store shared with serve
/// instances (PostgreSQL), without the HTTP API, for hosts that only run actions
/// (docs/scaling.md). Returns the exit code: 2 for a config without a shared store.
int work(config::Config config);

/// `aviary store copy`'s flags.
struct StoreCopyOptions {
    std::string from;  ///< sqlite:PATH
    std::string to;    ///< postgresql://user@host:port/db (no password in it)
    std::string config_path;
    std::string password_file;
    bool replace = false;
};

/// Runs `aviary store copy`: a SQLite store's state into PostgreSQL in one transaction
/// (docs/scaling.md, "Moving to PostgreSQL"). Prints each table's rows; returns 0 when every
/// count matched and the copy committed, 1 when it failed (nothing committed), 2 for bad flags.
int copy_store(const StoreCopyOptions& options);

/// Runs `aviary supervise` (docs/supervise.md): the node under `settings`, its control API and
/// gated proxy, until SIGTERM or SIGINT (forwarded to the node as its stop) or until the node
/// ends for good under its restart policy. Returns the node's exit status as the exit code
/// (128 + N for a signal); 1 when it cannot start, 2 for settings it refuses.
int supervise(supervisor::Settings settings);

/// "0.1.0", and the git commit the binary was built from ("unknown" outside a checkout).
/// A canary run's result as the API answers it (POST /api/v1/probes/{name}/run; docs/api.md),
/// which `aviary probe run --json` prints too.
std::string probe_result_json(const probes::RunResult& result);

std::string_view version();
std::string_view commit();

}  // namespace aviary::api
