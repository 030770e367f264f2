#pragma once
/// helm_driver: the `helm` driver (private to drivers and its tests). A node is a helm release
/// named after the node, in its target's namespace (helm_target()); every operation is one or
/// more helm or kubectl commands, run from an argv (never a shell), exactly as docs/drivers.md
/// gives them. See docs/drivers.md.
///
/// The pure parts (argv building, error classification, `helm status -o json` parsing) are
/// declared here so they can be tested on their own.
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "drivers/drivers.hpp"

namespace aviary::drivers {

/// One helm or kubectl invocation.
struct HelmCommand {
    std::vector<std::string> argv;  ///< argv[0] is drivers.helm.helm or drivers.helm.kubectl
    std::vector<std::pair<std::string, std::string>> env_add;  ///< KUBECONFIG when configured
    /// What it is, for messages: "helm upgrade", "helm uninstall", "kubectl delete pvc",
    /// "helm status".
    std::string what;
    std::string setting;  ///< the key naming its program: "drivers.helm.helm" or "...kubectl"
};

/// `helm upgrade --namespace NS [--kube-context CTX] --install REL CHART --set image.tag=TAG`
/// then `--set K=V` per target.set entry, in order.
HelmCommand helm_upgrade_command(const HelmSettings& settings,
                                 const HelmTarget& target,
                                 std::string_view release,
                                 std::string_view tag);
/// `helm --namespace NS [--kube-context CTX] uninstall REL`.
HelmCommand helm_uninstall_command(const HelmSettings& settings,
                                   const HelmTarget& target,
                                   std::string_view release);
/// `kubectl --namespace NS [--context CTX] delete pvc -l release=REL`.
HelmCommand kubectl_delete_pvc_command(const HelmSettings& settings,
                                       const HelmTarget& target,
                                       std::string_view release);
/// `helm status --namespace NS [--kube-context CTX] REL -o json`.
HelmCommand helm_status_command(const HelmSettings& settings,
                                const HelmTarget& target,
                                std::string_view release);

/// The commands `op` runs on `release`, in order (empty for restart, which helm cannot do).
/// install and upgrade are one operation: helm's `upgrade --install`.
std::vector<HelmCommand> helm_commands(const HelmSettings& settings,
                                       const HelmTarget& target,
                                       Op op,
                                       std::string_view release,
                                       std::string_view tag);

/// The argv as a person would type it (arguments that need it single-quoted), for notes.
std::string shell_words(const std::vector<std::string>& argv);

/// How a command ended, as the driver saw it.
struct HelmOutcome {
    proc::ExitStatus status;
    bool timed_out = false;        ///< ended by the driver once the target's timeout had passed
    bool stopped = false;          ///< ended by the driver because the step was stopping
    std::deque<std::string> tail;  ///< its last output lines, stdout and stderr as they came
};

/// What a finished command means. Success when it exited 0 (and was not ended by the driver);
/// otherwise, from its exit and the text of its last lines, in this order:
/// - ended by the driver after `timeout`: kTimeout;
/// - cluster unreachable ("Kubernetes cluster unreachable", "Unable to connect to the server",
///   "connection refused", "no such host", "dial tcp", "i/o timeout"): kUnavailable
///   "cluster unreachable: <the line>";
/// - release not found ("release: not found", "Release not loaded"): kNotFound
///   "helm: release REL not found in namespace NS";
/// - helm's own "timed out waiting for the condition": kTimeout;
/// - anything else from helm upgrade (the chart failed to render or apply): kInvalidArgument
///   "chart error: <the line>";
/// - anything else: kInternal naming the command, its exit and its last line.
core::Result<void> classify_helm_outcome(const HelmCommand& command,
                                         const HelmOutcome& outcome,
                                         std::string_view release,
                                         std::string_view namespace_name,
                                         core::Millis timeout);

/// A release as `helm status -o json` shows it: `info.status` ("deployed": installed and
/// running; "uninstalled" or "uninstalling": not installed; anything else: installed, not
/// running) and `config.image.tag` (the version; empty when the chart's default tag is used).
/// has_height is false: helm sees a release, not its chain.
core::Result<NodeStatus> parse_helm_status(std::string_view json, std::string_view release);

/// `helm status` of a release that is not there: not an error for status().
inline NodeStatus helm_not_installed() {
    NodeStatus status;
    status.has_height = false;
    return status;
}

std::unique_ptr<Driver> make_helm_driver(HelmSettings settings);

}  // namespace aviary::drivers
