#include "drivers/drivers.hpp"

#include <fmt/format.h>

#include <array>
#include <filesystem>
#include <system_error>
#include <utility>

#include "drivers/helm_driver.hpp"
#include "drivers/machine_driver.hpp"
#include "drivers/sidecar_driver.hpp"
#include "drivers/sim_driver.hpp"

namespace aviary::drivers {
namespace {

constexpr std::array<std::pair<Op, std::string_view>, 13> kOpNames{{
    {Op::kInstall, "install"},
    {Op::kUpgrade, "upgrade"},
    {Op::kUninstall, "uninstall"},
    {Op::kWipeData, "wipe-data"},
    {Op::kRestart, "restart"},
    {Op::kStatus, "status"},
    {Op::kMaintenance, "maintenance"},
    {Op::kResume, "resume"},
    {Op::kReload, "reload"},
    {Op::kBackup, "backup"},
    {Op::kRestore, "restore"},
    {Op::kPauseProduction, "pause-production"},
    {Op::kResumeProduction, "resume-production"},
}};

}  // namespace

std::string_view to_string(Op op) {
    for (const auto& [value, name] : kOpNames) {
        if (value == op) {
            return name;
        }
    }
    return "status";
}

std::optional<Op> parse_op(std::string_view text) {
    for (const auto& [value, name] : kOpNames) {
        if (name == text) {
            return value;
        }
    }
    return std::nullopt;
}

bool is_sidecar_op(Op op) {
    switch (op) {
        case Op::kInstall:
        case Op::kUpgrade:
        case Op::kUninstall:
        case Op::kWipeData:
        case Op::kRestart:
        case Op::kStatus:
            return false;
        case Op::kMaintenance:
        case Op::kResume:
        case Op::kReload:
        case Op::kBackup:
        case Op::kRestore:
        case Op::kPauseProduction:
        case Op::kResumeProduction:
            return true;
    }
    return false;
}

core::Error not_a_sidecar(std::string_view driver, const OpRequest& request) {
    return core::Error{
        core::ErrorCode::kInvalidArgument,
        fmt::format("node {} uses driver {}, which has no {}: it is a command of a supervised "
                    "node's sidecar (driver sidecar; docs/producers.md)",
                    request.node.name, driver, to_string(request.op))};
}

std::vector<std::unique_ptr<Driver>> make_drivers(const Settings& settings) {
    std::string program = settings.sim.program;
    if (program.empty()) {
        // A real path rather than /proc/self/exe, so `ps` and the logs name the program.
        std::error_code ec;
        program = std::filesystem::read_symlink("/proc/self/exe", ec).string();
        if (ec || program.empty()) {
            program = "/proc/self/exe";
        }
    }
    std::vector<std::unique_ptr<Driver>> drivers;
    drivers.push_back(make_sim_driver(settings, std::move(program)));
    drivers.push_back(make_helm_driver(settings.helm));
    drivers.push_back(make_machine_driver("ssh"));
    drivers.push_back(make_machine_driver("none"));
    drivers.push_back(make_sidecar_driver(settings.sidecar));
    return drivers;
}

}  // namespace aviary::drivers
