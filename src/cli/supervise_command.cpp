#include "cli/supervise_command.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <cstdio>

#include "api/api.hpp"
#include "cli/client.hpp"
#include "config/config.hpp"
#include "net/net.hpp"

namespace aviary::cli {
namespace {

void optional_flag(CLI::App* app, const std::string& name, std::string& into, std::string help) {
    app->add_option(name, into, std::move(help));
}

std::optional<std::string> given(const CLI::App* app,
                                 const std::string& name,
                                 const std::string& value) {
    if (app->count(name) == 0) {
        return std::nullopt;
    }
    return value;
}

}  // namespace

SuperviseApps add_supervise_commands(CLI::App& app, SuperviseCliFlags& flags) {
    SuperviseApps apps;
    apps.supervise = app.add_subcommand(
        "supervise",
        "run a node process under the sidecar: restarts, readiness, control API on :8080, gated "
        "proxy :9999 -> :8888 (docs/supervise.md); the node's command goes after --");
    auto* s = apps.supervise;
    s->add_option("--config", flags.config_path, "the node's YAML file (docs/supervise.md)");
    optional_flag(s, "--chain", flags.chain, "chain preset: nodeos, geth, lotus, sim or none");
    optional_flag(s, "--name", flags.name, "the node's name in logs and metrics");
    optional_flag(s, "--control", flags.control,
                  "HOST:PORT of the control API (default 127.0.0.1:8080; port 0: any)");
    optional_flag(s, "--proxy", flags.proxy,
                  "HOST:PORT of the gated proxy (default 0.0.0.0:9999; \"\": no proxy)");
    optional_flag(s, "--upstream", flags.upstream,
                  "the node's own API, which readiness reads and the proxy forwards to "
                  "(default http://127.0.0.1:8888)");
    optional_flag(s, "--data-dir", flags.data_dir, "the node's data directory");
    optional_flag(s, "--state-dir", flags.state_dir,
                  "where the sidecar keeps its state file (maintenance survives restarts)");
    optional_flag(s, "--restart", flags.restart, "restart policy: always, on-failure or never");
    optional_flag(s, "--chain-id", flags.chain_id,
                  "the chain this node belongs to: backups carry it, boot restores pick it");
    optional_flag(s, "--backup-dir", flags.backup_dir,
                  "where backups of the data dir go (docs/backups.md)");
    s->add_flag("--bp-mode", flags.bp_mode,
                "block-producer mode: start passive, produce only with the producer lease "
                "(docs/producers.md)");
    optional_flag(s, "--serve", flags.serve,
                  "serve's URL: the node is registered in its pool (driver sidecar), and the "
                  "producer lease is held there (bp mode)");
    s->add_flag("--no-ship-logs", flags.no_ship_logs,
                "with --serve, keep the node's lines here instead of shipping them to serve's "
                "log store (docs/logs.md)");
    optional_flag(s, "--advertise", flags.advertise,
                  "the URL serve reaches this control API at (default: http://HOST:PORT of "
                  "--control as bound)");
    optional_flag(s, "--producer-key", flags.producer_key,
                  "the producer lease's key: the signing key or account the nodes share");
    optional_flag(s, "--producer-account", flags.producer_account,
                  "the producer's name in the chain's schedule, for the round status "
                  "(default: --producer-key)");

    apps.ctl = s->add_subcommand(
        "ctl",
        "drive a running sidecar: maintenance, resume, reload, safely_reload, backup, restore, "
        "list_backups, status, logs");
    apps.ctl->add_option("command", flags.ctl_command, "what to do")
        ->required()
        ->check(CLI::IsMember({"maintenance", "resume", "reload", "safely_reload", "backup",
                               "restore", "list_backups", "safely_pause_production",
                               "safely_resume_production", "status", "logs", "healthz"}));
    apps.ctl->add_option("--control", flags.ctl_control, "HOST:PORT of the sidecar's control API")
        ->envname("AVIARY_SUPERVISE_CONTROL")
        ->capture_default_str();
    apps.ctl->add_option("--token", flags.ctl_token, "bearer token (env AVIARY_SUPERVISE_TOKEN)")
        ->envname("AVIARY_SUPERVISE_TOKEN");
    apps.ctl->add_flag("--sync", flags.ctl_sync, "wait until the command has completed");
    apps.ctl->add_option("--backup-name", flags.ctl_backup_name,
                         "restore: the backup (default: the newest usable one)");
    apps.ctl->add_option("--backup-tag", flags.ctl_backup_tag,
                         "backup: its label; restore: the newest with this label");
    apps.ctl->add_option("--tail", flags.ctl_tail, "logs: how many lines")
        ->check(CLI::Range(1, 10000))
        ->capture_default_str();
    return apps;
}

int run_supervise(const SuperviseApps& apps,
                  const SuperviseCliFlags& flags,
                  std::vector<std::string> command) {
    const auto* s = apps.supervise;
    config::SuperviseFlags overrides;
    overrides.chain = given(s, "--chain", flags.chain);
    overrides.name = given(s, "--name", flags.name);
    overrides.control = given(s, "--control", flags.control);
    overrides.proxy = given(s, "--proxy", flags.proxy);
    overrides.upstream = given(s, "--upstream", flags.upstream);
    overrides.data_dir = given(s, "--data-dir", flags.data_dir);
    overrides.state_dir = given(s, "--state-dir", flags.state_dir);
    overrides.restart = given(s, "--restart", flags.restart);
    overrides.chain_id = given(s, "--chain-id", flags.chain_id);
    overrides.backup_dir = given(s, "--backup-dir", flags.backup_dir);
    overrides.serve = given(s, "--serve", flags.serve);
    overrides.producer_key = given(s, "--producer-key", flags.producer_key);
    overrides.producer_account = given(s, "--producer-account", flags.producer_account);
    overrides.advertise = given(s, "--advertise", flags.advertise);
    overrides.bp_mode = flags.bp_mode;
    overrides.no_ship_logs = flags.no_ship_logs;
    overrides.command = std::move(command);
    auto settings = config::load_supervise(flags.config_path, overrides);
    if (!settings) {
        std::fprintf(stderr, "aviary supervise: %s\n", settings.error().message.c_str());
        return kExitUsage;
    }
    return api::supervise(std::move(*settings));
}

int run_supervise_ctl(const SuperviseCliFlags& flags) {
    const std::string& command = flags.ctl_command;
    net::ClientRequest request;
    const bool read = command == "status" || command == "logs" || command == "healthz" ||
                      command == "list_backups";
    request.method = read ? "GET" : "POST";
    request.url = fmt::format("http://{}/v1/{}", flags.ctl_control, command);
    std::vector<std::string> query;
    if (command == "logs") {
        query.push_back(fmt::format("tail={}", flags.ctl_tail));
    } else if (!read && flags.ctl_sync) {
        query.emplace_back("sync=true");
    }
    // Names and tags are letters, digits and ".-_:" (the sidecar refuses others): no escaping.
    if (!flags.ctl_backup_name.empty()) {
        query.push_back("backupName=" + flags.ctl_backup_name);
    }
    if (!flags.ctl_backup_tag.empty()) {
        query.push_back("backupTag=" + flags.ctl_backup_tag);
    }
    for (std::size_t i = 0; i < query.size(); ++i) {
        request.url += (i == 0 ? "?" : "&") + query[i];
    }
    if (!flags.ctl_token.empty()) {
        request.headers.push_back({"Authorization", "Bearer " + flags.ctl_token});
    }
    // A synchronous stop may wait out the node's whole stop grace.
    request.timeout = std::chrono::minutes{10};
    auto response = net::fetch_sync(std::move(request));
    if (!response) {
        std::fprintf(stderr, "aviary supervise ctl: %s\n", response.error().message.c_str());
        return kExitUnreachable;
    }
    if (command == "logs" && response->status == 200) {
        boost::system::error_code ec;
        auto value = boost::json::parse(response->body, ec);
        if (!ec && value.is_object() && value.as_object().contains("lines")) {
            for (const auto& line : value.at("lines").as_array()) {
                std::printf("%s\n", std::string{line.at("text").as_string()}.c_str());
            }
            return kExitOk;
        }
    }
    std::printf("%s\n", response->body.c_str());
    return response->status >= 200 && response->status < 300 ? kExitOk : kExitRefused;
}

}  // namespace aviary::cli
