#include <fmt/format.h>

#include <string>

#include "fleet/fleet.hpp"

namespace aviary::fleet {
namespace {

constexpr std::size_t kMaxHostLength = 253;  // a DNS name's limit
constexpr std::size_t kMaxPortDigits = 5;
constexpr std::size_t kMaxWorkerIdLength = 128;
constexpr int kMaxPort = 65535;

bool all_digits(std::string_view text) {
    return !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
}

bool is_port(std::string_view text) {
    return text.size() <= kMaxPortDigits && all_digits(text) && std::stoi(std::string{text}) > 0 &&
           std::stoi(std::string{text}) <= kMaxPort;
}

core::Error invalid(const core::NodeSpec& spec, std::string what) {
    return core::Error{core::ErrorCode::kInvalidArgument,
                       fmt::format("machine {}: {}", spec.name, what)};
}

}  // namespace

bool is_host(std::string_view text, bool port_allowed) {
    if (text.empty() || text.size() > kMaxHostLength) {
        return false;
    }
    if (text.front() == '[') {  // [::1] or [::1]:623
        auto close = text.find(']');
        if (close == std::string_view::npos || close == 1 ||
            text.substr(1, close - 1).find_first_not_of("0123456789abcdefABCDEF:.") !=
                std::string_view::npos) {
            return false;
        }
        auto rest = text.substr(close + 1);
        return rest.empty() || (port_allowed && rest.front() == ':' && is_port(rest.substr(1)));
    }
    auto colon = text.find(':');
    if (colon != std::string_view::npos) {
        if (!port_allowed || !is_port(text.substr(colon + 1))) {
            return false;
        }
        text = text.substr(0, colon);
    }
    // Never a leading '-': the host becomes an argument of ssh, ipmitool and snmpset.
    return !text.empty() && text.front() != '-' &&
           text.find_first_not_of(
               "abcdefghijklmnopqrstuvwxyz"
               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == std::string_view::npos;
}

bool is_worker_id(std::string_view id) {
    return !id.empty() && id.size() <= kMaxWorkerIdLength &&
           id.find_first_not_of(
               "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
               "0123456789._-") == std::string_view::npos;
}

bool is_machine_driver(std::string_view driver) {
    return driver == "ssh" || driver == "none";
}

core::Result<void> check_machine(const core::NodeSpec& spec) {
    if (!spec.machine) {
        return invalid(spec, "has no machine properties");
    }
    const auto& m = *spec.machine;
    if (!is_machine_driver(spec.driver)) {
        return invalid(spec, fmt::format("unknown machine driver \"{}\" (ssh, none)", spec.driver));
    }
    if (m.hostname.empty() && m.address.empty()) {
        return invalid(spec, "needs a hostname or an address");
    }
    for (const auto& [field, value] :
         {std::pair{"hostname", &m.hostname}, std::pair{"address", &m.address}}) {
        if (!value->empty() && !is_host(*value, false)) {
            return invalid(
                spec, fmt::format("{} \"{}\" is not a host name or IP address", field, *value));
        }
    }
    for (const auto& [field, value] :
         {std::pair{"ipmi_address", &m.ipmi_address}, std::pair{"pdu_host", &m.pdu_host}}) {
        if (!value->empty() && !is_host(*value, true)) {
            return invalid(spec, fmt::format("{} \"{}\" is not a host name or IP address "
                                             "(optionally with :PORT)",
                                             field, *value));
        }
    }
    if (m.ssh_port < 1 || m.ssh_port > kMaxPort) {
        return invalid(spec, fmt::format("ssh_port {} is not from 1 to 65535", m.ssh_port));
    }
    if (m.ssh_user.empty()) {
        return invalid(spec, "ssh_user is empty");
    }
    if (m.pdu_outlet < 0 || m.pdu_host.empty() != (m.pdu_outlet == 0)) {
        return invalid(spec, "pdu_host and pdu_outlet (from 1) go together");
    }
    return {};
}

}  // namespace aviary::fleet
