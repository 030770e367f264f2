#include "config/secrets.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

namespace aviary::config {

namespace fs = std::filesystem;

void load_file_secret(YamlReader& r,
                      const Value& at,
                      const fs::path& path,
                      std::string& secret,
                      std::string_view what) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        r.error(at, fmt::format("cannot read {} \"{}\": it is a directory", what, path.string()));
        return;
    }
    std::ifstream in{path, std::ios::binary};
    if (!in) {
        r.error(at, fmt::format("cannot read {} \"{}\": {}", what, path.string(),
                                std::strerror(errno)));
        return;
    }
    std::ostringstream text;
    text << in.rdbuf();
    std::string content = std::move(text).str();
    while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) {
        content.pop_back();
    }
    if (content.empty()) {
        r.error(at, fmt::format("{} \"{}\" is empty", what, path.string()));
        return;
    }
    secret = std::move(content);
}

void load_env_secret(YamlReader& r, const Value& at, const std::string& name, std::string& secret) {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) {
        r.error(at, fmt::format("environment variable \"{}\" is not set", name));
    } else if (*value == '\0') {
        r.error(at, fmt::format("environment variable \"{}\" is empty", name));
    } else {
        secret = value;
    }
}

void load_secret(YamlReader& r,
                 const Value& at,
                 const std::string& file,
                 const std::string& env,
                 const fs::path& base_dir,
                 std::string& secret) {
    if (file.empty()) {
        load_env_secret(r, at, env, secret);
        return;
    }
    fs::path path{file};
    if (path.is_relative() && !base_dir.empty()) {
        path = base_dir / path;
    }
    load_file_secret(r, at, path, secret);
}

void read_file_setting(YamlReader& r,
                       const Value& value,
                       std::string_view what,
                       const fs::path& base_dir,
                       std::string& out) {
    std::string text;
    if (!r.read_string(value, text)) {
        return;
    }
    if (text.empty()) {
        out.clear();
        return;
    }
    fs::path path{text};
    if (path.is_relative() && !base_dir.empty()) {
        path = base_dir / path;
    }
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        r.error(value, fmt::format("{} \"{}\" is a directory", what, path.string()));
        return;
    }
    std::ifstream in{path, std::ios::binary};
    if (!in) {
        r.error(value, fmt::format("cannot read {} \"{}\": {}", what, path.string(),
                                   std::strerror(errno)));
        return;
    }
    out = path.string();
}

bool file_given(const std::optional<Value>& at) {
    return at && !at->is_null() && at->node.IsScalar() && !at->node.Scalar().empty();
}

void check_cert_and_key(YamlReader& r,
                        const std::optional<Value>& cert_at,
                        const std::optional<Value>& key_at,
                        std::string_view both) {
    if (file_given(key_at) && !file_given(cert_at)) {
        r.error(*key_at, fmt::format("key_file without cert_file: {}", both));
    }
    if (file_given(cert_at) && !file_given(key_at)) {
        r.error(*cert_at, fmt::format("cert_file without key_file: {}", both));
    }
}

/// Loads the secret `source` names (at most one of file and env) into `secret`; a file's
/// resolved path goes to `path`.
void load_source(YamlReader& r,
                 const SecretSource& source,
                 std::string_view name,
                 const std::filesystem::path& base_dir,
                 std::string& path,
                 std::string& secret) {
    if (!source.file.empty() && !source.env.empty()) {
        r.error(*source.env_at, fmt::format("give {0}_file or {0}_env, not both", name));
        return;
    }
    if (source.file_at && !source.file.empty()) {
        read_file_setting(r, *source.file_at, fmt::format("{} file", name), base_dir, path);
        if (!path.empty()) {
            load_file_secret(r, *source.file_at, path, secret, fmt::format("{} file", name));
        }
    } else if (source.env_at && !source.env.empty()) {
        load_env_secret(r, *source.env_at, source.env, secret);
    }
}

}  // namespace aviary::config
