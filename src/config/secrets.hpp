#pragma once
// Private to src/config: reading a secret (an API token, Grafana's service-account token) from
// a file or an environment variable at load, and checking the TLS files a config names.
// Messages never contain the secret.
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "config/yaml_reader.hpp"

namespace aviary::config {

/// The secret in `path`, trailing newlines trimmed; an unreadable, empty or directory path is
/// an error at `at` naming it as `what`, and `secret` is then untouched.
void load_file_secret(YamlReader& r,
                      const Value& at,
                      const std::filesystem::path& path,
                      std::string& secret,
                      std::string_view what = "token file");

/// The value of environment variable `name`; unset or empty is an error at `at`.
void load_env_secret(YamlReader& r, const Value& at, const std::string& name, std::string& secret);

/// `file` read from `base_dir` when relative (and base_dir is set), else variable `env`: what
/// a "file"/"env" pair names (exactly one of them non-empty).
void load_secret(YamlReader& r,
                 const Value& at,
                 const std::string& file,
                 const std::string& env,
                 const std::filesystem::path& base_dir,
                 std::string& secret);

/// Where a secret given as `NAME_file` or `NAME_env` came from.
struct SecretSource {
    std::optional<Value> file_at;
    std::optional<Value> env_at;
    std::string file;
    std::string env;
};

/// Loads the secret `source` names (at most one of file and env) into `secret`; a file's
/// resolved path goes to `path`.
void load_source(YamlReader& r,
                 const SecretSource& source,
                 std::string_view name,
                 const std::filesystem::path& base_dir,
                 std::string& path,
                 std::string& secret);

/// A file (a TLS certificate, key or CA, an ssh key or known_hosts) that must be readable now,
/// so a typo fails the load and not the first handshake. A relative path is read from `base_dir`
/// (the config file's directory) and stored resolved, so a reload (SIGHUP) finds the same file
/// whatever the working directory. `what` names it in messages: "TLS certificate file", "ssh
/// known_hosts file"...
void read_file_setting(YamlReader& r,
                       const Value& value,
                       std::string_view what,
                       const std::filesystem::path& base_dir,
                       std::string& out);

/// True when a file key was given a non-empty path, whether or not the file could be read:
/// pairing rules are checked on what was written, so an unreadable file is one error, not two.
bool file_given(const std::optional<Value>& at);

/// A `cert_file` needs its `key_file` and the other way round; `both` ends the message
/// ("set both to serve TLS").
void check_cert_and_key(YamlReader& r,
                        const std::optional<Value>& cert_at,
                        const std::optional<Value>& key_at,
                        std::string_view both);

}  // namespace aviary::config
