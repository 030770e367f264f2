#pragma once
// `aviary supervise` and `aviary supervise ctl` (docs/supervise.md): flags, and what runs them.
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace aviary::cli {

struct SuperviseCliFlags {
    std::string config_path;
    std::string chain;
    std::string name;
    std::string control;
    std::string proxy;
    std::string upstream;
    std::string data_dir;
    std::string state_dir;
    std::string restart;
    std::string chain_id;
    std::string backup_dir;
    std::string serve;
    std::string producer_key;
    std::string producer_account;
    std::string advertise;
    bool bp_mode = false;
    bool no_ship_logs = false;
    // ctl
    std::string ctl_control = "127.0.0.1:8080";
    std::string ctl_token;
    std::string ctl_command;
    bool ctl_sync = false;
    int ctl_tail = 100;
    std::string ctl_backup_name;
    std::string ctl_backup_tag;
};

struct SuperviseApps {
    CLI::App* supervise = nullptr;
    CLI::App* ctl = nullptr;
};

SuperviseApps add_supervise_commands(CLI::App& app, SuperviseCliFlags& flags);
/// Runs the sidecar; `command` is what followed `--`.
int run_supervise(const SuperviseApps& apps,
                  const SuperviseCliFlags& flags,
                  std::vector<std::string> command);
int run_supervise_ctl(const SuperviseCliFlags& flags);

}  // namespace aviary::cli
