#pragma once
/// config: aviary.yaml in, one typed settings struct per component out.
///
/// Everything is validated at load. Unknown keys are errors (a typo must not silently become a
/// default); durations are strings ("30s", "5m"); errors name the file, line, column and key
/// path: `aviary.yaml:14:17: fleet.lease_ttl: expected a duration like "30s", got "thirty"`.
/// Secrets (tokens) come from files or environment variables, never inline in the YAML, and
/// are never logged. Features never see YAML: only the role wiring reads a Config.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"
#include "drivers/drivers.hpp"
#include "fleet/fleet.hpp"
#include "jobs/jobs.hpp"
#include "logs/logs.hpp"
#include "net/net.hpp"
#include "notify/notify.hpp"
#include "probes/probes.hpp"
#include "store/store.hpp"
#include "supervisor/supervisor.hpp"

namespace aviary::config {

struct LogSettings {
    std::string level = "info";   ///< trace, debug, info, warn, error, off
    std::string format = "text";  ///< text or json
};

/// One API token. The secret is read from `file` or the environment variable `env` at load.
struct Token {
    std::string identity;
    std::string role = "user";  ///< "admin" or "user"
    std::string file;           ///< path of a file holding the secret (trailing newline ignored)
    std::string env;            ///< or the name of an environment variable holding it
    std::vector<std::string> groups;  ///< permission rules name them as "group:NAME"
    std::string secret;               ///< loaded; never logged or rendered
};

struct AuthSettings {
    std::vector<Token> tokens;
    /// Host names (besides the listen address, localhost, 127.0.0.1 and [::1]) that mutating
    /// requests may name in Host and Origin: the names aviary is reached by behind a proxy.
    std::vector<std::string> allowed_hosts;
    /// Origins ("https://dash.example", "http://127.0.0.1:8080"; "*" for any) whose pages may
    /// call the roller's routes from a browser (CORS). Empty: loopback origins, and only while
    /// serve listens on loopback.
    std::vector<std::string> cors_origins;
};

struct Config {
    std::string source = "<embedded default>";  ///< the file it came from, for messages
    std::string data_dir = "var";               ///< SQLite file and other state live here
    /// This serve's name among the instances that share a store (docs/scaling.md); empty: the
    /// host name. Unique among live instances.
    std::string instance;
    net::ServerSettings server;
    store::Settings store;
    fleet::Settings fleet;
    /// The job engine, its permissions and its actions: the built-in actions (the embedded
    /// default's) plus the file's, a file's action replacing the built-in of the same name.
    jobs::Settings jobs;
    drivers::Settings drivers;  ///< `dir` stays empty unless set: the wiring defaults it
    AuthSettings auth;
    LogSettings log;
    /// Telling other systems: Grafana annotations (off while notify.grafana.url is empty; the
    /// token is read at load).
    notify::Settings notify;
    /// Logs and notifications (Bitahoy's WebSocket; docs/logs.md). store.path stays empty
    /// unless set: serve defaults it to <data_dir>/logs.db.
    logs::Settings logs;
    /// Canary scenarios run on a schedule (docs/probes.md).
    probes::Settings probes;
};

/// Loads and validates a YAML file. Errors: kNotFound when the file does not exist;
/// kInvalidArgument carrying every problem, one `FILE:LINE:COL: key.path: message` per line
/// in file order. Relative token files are read from the file's directory. Every built-in
/// action (those of embedded_default()) the file does not define is added after the file's.
core::Result<Config> load_file(const std::string& path);

/// Why `name` cannot be an instance name (1-63 of letters, digits, '-', '.', '_': it goes
/// into runner ids and logs), or nothing.
std::optional<std::string> check_instance_name(std::string_view name);

/// Why `url` cannot be store.url (or `serve --store`), or nothing: it must be a postgresql://
/// URI or a libpq keyword string, and hold no password (the URL is logged; the password
/// comes from store.password_file or store.password_env).
std::optional<std::string> check_store_url(std::string_view url);
/// Loads and validates YAML text; `source` names it in error messages (as FILE above).
/// Relative token files are read from the working directory. Built-in actions as load_file.
core::Result<Config> load_string(std::string_view yaml, std::string_view source);
/// examples/aviary.yaml as built into the binary: what `aviary serve` runs with no --config
/// (every option at its default, plus the demo fleet lotus-0..lotus-2).
std::string_view embedded_default();

/// Flags of `aviary supervise`; each one set overrides the file (docs/supervise.md).
struct SuperviseFlags {
    std::optional<std::string> chain, name, control, proxy, upstream, data_dir, state_dir, restart,
        chain_id, backup_dir, serve, producer_key, producer_account, advertise;
    bool bp_mode = false;              ///< --bp-mode (the file's bp_mode otherwise)
    bool no_ship_logs = false;         ///< --no-ship-logs (ship_logs.enabled otherwise)
    std::vector<std::string> command;  ///< after `--`; overrides program.command
};
/// Reads `path` (empty: no file) and applies `flags`; resolves the chain preset (a user
/// preset in the file's `preset:` wins over the built-in one of that name). Errors name the
/// file, line and key; a missing command is an error ("no command to supervise: give one
/// after -- or as program.command"). kNotFound when the file does not exist; otherwise
/// kInvalidArgument carrying every problem, one per line: the file's first, in file order, as
/// `FILE:LINE:COL: key.path: message`, then the flags' as `--flag: message`.
/// Unset, state_dir is `<data_dir>/.aviary-supervise` when data_dir is set, else Settings's.
core::Result<supervisor::Settings> load_supervise(const std::string& path,
                                                  const SuperviseFlags& flags);
/// The built-in presets' names, and one by name (kNotFound naming the known ones).
std::vector<std::string> chain_preset_names();
core::Result<supervisor::Preset> chain_preset(std::string_view name);

}  // namespace aviary::config
