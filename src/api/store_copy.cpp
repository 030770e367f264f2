// `aviary store copy` (docs/cli.md): the flags become two stores' Settings, store::copy moves
// the rows, and this prints what it moved. A server role like serve and worker: it works on the
// store itself rather than through a server.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "api/api.hpp"
#include "config/config.hpp"
#include "store/store.hpp"

namespace aviary::api {
namespace {

constexpr std::string_view kSqlitePrefix = "sqlite:";

core::Result<store::Settings> source_settings(const std::string& from) {
    if (!from.starts_with(kSqlitePrefix) || from.size() == kSqlitePrefix.size()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("--from must be sqlite:PATH (the SQLite store serve used, "
                                       "<data_dir>/aviary.db), got \"{}\"",
                                       from)};
    }
    store::Settings settings;
    settings.driver = "sqlite";
    settings.path = from.substr(kSqlitePrefix.size());
    return settings;
}

core::Result<std::string> read_password_file(const std::string& path) {
    std::ifstream in{path};
    if (!in) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("--password-file {} cannot be read", path)};
    }
    std::stringstream text;
    text << in.rdbuf();
    auto password = text.str();
    while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) {
        password.pop_back();
    }
    if (password.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("--password-file {} is empty", path)};
    }
    return password;
}

/// The destination: --config's store section (as the instances will use it), with --to and
/// --password-file over it; without --config, --to alone (the password from PGPASSWORD or
/// ~/.pgpass, read by libpq).
core::Result<store::Settings> destination_settings(const StoreCopyOptions& flags) {
    store::Settings settings;
    if (!flags.config_path.empty()) {
        auto config = config::load_file(flags.config_path);
        if (!config) {
            return core::Error{config.error().code,
                               fmt::format("invalid configuration:\n{}", config.error().message)};
        }
        settings = config->store;
    }
    if (!flags.to.empty()) {
        if (auto problem = config::check_store_url(flags.to)) {
            return core::Error{core::ErrorCode::kInvalidArgument, "--to: " + *problem};
        }
        settings.driver = "postgres";
        settings.url = flags.to;
    }
    if (settings.driver != "postgres" || settings.url.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           "store copy needs a PostgreSQL destination: --to "
                           "postgresql://user@host:5432/db, or --config with store.url"};
    }
    if (!flags.password_file.empty()) {
        auto password = read_password_file(flags.password_file);
        if (!password) {
            return password.error();
        }
        settings.password = std::move(*password);
    }
    return settings;
}

}  // namespace

int copy_store(const StoreCopyOptions& flags) {
    auto from = source_settings(flags.from);
    if (!from) {
        std::fprintf(stderr, "aviary: %s\n", from.error().message.c_str());
        return 2;
    }
    auto to = destination_settings(flags);
    if (!to) {
        std::fprintf(stderr, "aviary: %s\n", to.error().message.c_str());
        return 2;
    }
    auto report = store::copy(*from, *to, store::CopyOptions{.replace = flags.replace});
    if (!report) {
        std::fprintf(stderr, "aviary: store copy from %s to %s failed, nothing was copied: %s\n",
                     store::describe(*from).c_str(), store::describe(*to).c_str(),
                     report.error().message.c_str());
        return 1;
    }
    std::int64_t total = 0;
    for (const auto& table : report->tables) {
        std::printf("%-14s %lld\n", table.name.c_str(), static_cast<long long>(table.rows));
        total += table.rows;
    }
    std::printf("copied %lld rows from %s to %s (schema version %d); counts match\n",
                static_cast<long long>(total), store::describe(*from).c_str(),
                store::describe(*to).c_str(), report->schema_version);
    return 0;
}

}  // namespace aviary::api
