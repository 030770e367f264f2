#pragma once
/// supervisor/render: node config files (nodeos's config.ini) rendered from a template before
/// each start (docs/supervise.md, "Rendered config").
///
/// A template is the file as the node reads it, with `{{ name }}` where a value goes. Values
/// come from the supervise file, from files (secrets: a Kubernetes secret mount) or from the
/// environment; `{{ signature_providers }}` becomes one `signature-provider = KEY=PROVIDER` line
/// per public key a key service lists (the seed's eos-blocksigner on localhost:6666). Secrets
/// are never logged: errors name the value, never its text.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"

namespace aviary::supervisor {

/// Where one value's text comes from.
struct ValueSource {
    enum class Kind { kText, kFile, kEnv };
    Kind kind = Kind::kText;
    std::string text;  ///< kText: the value; kFile: the path; kEnv: the variable's name
};

struct RenderSettings {
    std::string template_path;  ///< the source (watched for changes)
    std::string output;         ///< the rendered file (written atomically, mode 0600)
    std::vector<std::pair<std::string, ValueSource>> values;
    /// A key service that lists public keys: POST, answered with a JSON array of strings
    /// (keosd's /v1/wallet/get_public_keys). Empty: no signature providers.
    std::string keys_url;
    /// What follows `KEY=` in each signature-provider line.
    std::string provider = "KEOSD:http://127.0.0.1:6666/v1/wallet/sign_digest";
    /// Restart the node when the rendered text changes (the template or a value file did).
    bool restart_on_change = true;
};

/// The value names a template uses, in order of first use. An error names the line of a `{{`
/// without its `}}` or of a name that is not letters, digits and '_'.
core::Result<std::vector<std::string>> template_names(std::string_view text,
                                                      std::string_view source);

/// Fills `text`'s placeholders. `signature_providers` (when the template names it) is the lines
/// for `keys`. An error names the template's line and the value that has none.
core::Result<std::string> render_template(
    std::string_view text,
    std::string_view source,
    const std::vector<std::pair<std::string, std::string>>& values,
    const std::vector<std::string>& keys,
    std::string_view provider);

/// Resolves the settings' values (reads files, the environment). Errors name the value.
core::Result<std::vector<std::pair<std::string, std::string>>> resolve_values(
    const RenderSettings& settings);

/// Parses a key service's answer: a JSON array of strings.
core::Result<std::vector<std::string>> parse_keys(std::string_view body, std::string_view url);

/// Reads the template and the values and fills it. Blocking.
core::Result<std::string> render_text(const RenderSettings& settings,
                                      const std::vector<std::string>& keys);

/// Whether `output` holds `text` already. Blocking.
bool output_holds(const RenderSettings& settings, std::string_view text);

/// render_text(), then writes `output` when its text differs (temporary file, fsync, rename).
/// Returns true when the file changed. Blocking.
core::Result<bool> render_file(const RenderSettings& settings,
                               const std::vector<std::string>& keys);

}  // namespace aviary::supervisor
