#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>

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

bool is_user_name(std::string_view name) {
    constexpr std::size_t kMaxUserName = 64;
    auto allowed = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '@' || c == '-';
    };
    return !name.empty() && name.size() <= kMaxUserName && name.front() != '-' &&
           std::all_of(name.begin(), name.end(), allowed);
}

bool is_worker_id(std::string_view id) {
    // Never a leading '-': the id may be templated into a task's argv.
    return !id.empty() && id.size() <= kMaxWorkerIdLength && id.front() != '-' &&
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
    // A user name reaches ssh's and ipmitool's argv: a plain name, never an option.
    for (const auto& [field, value] :
         {std::pair{"ssh_user", &m.ssh_user}, std::pair{"ipmi_user", &m.ipmi_user}}) {
        if (field == std::string_view{"ssh_user"} && value->empty()) {
            return invalid(spec, "ssh_user is empty");
        }
        if (!value->empty() && !is_user_name(*value)) {
            return invalid(spec, fmt::format("{} \"{}\" is not a user name (1-64 of A-Z, a-z, "
                                             "0-9, '.', '_', '@' and '-', not starting with '-')",
                                             field, *value));
        }
    }
    if (m.pdu_outlet < 0 || m.pdu_host.empty() != (m.pdu_outlet == 0)) {
        return invalid(spec, "pdu_host and pdu_outlet (from 1) go together");
    }
    // As the config reads them: permission rules name groups, so a name is one plain word.
    constexpr std::size_t kMaxGroup = 64;
    for (std::size_t i = 0; i < m.groups.size(); ++i) {
        const auto& group = m.groups[i];
        const bool plain = !group.empty() && group.size() <= kMaxGroup &&
                           std::none_of(group.begin(), group.end(), [](char c) {
                               return static_cast<unsigned char>(c) <= ' ' || c == 0x7f;
                           });
        if (!plain) {
            return invalid(spec, fmt::format("groups[{}] \"{}\" is not a group name (1-64 "
                                             "characters, no spaces or control characters)",
                                             i, group.size() > 80 ? group.substr(0, 80) : group));
        }
        if (std::find(m.groups.begin(), m.groups.begin() + static_cast<std::ptrdiff_t>(i), group) !=
            m.groups.begin() + static_cast<std::ptrdiff_t>(i)) {
            return invalid(spec, fmt::format("group \"{}\" is listed twice", group));
        }
    }
    return {};
}

std::string control_url_problem(std::string_view url) {
    constexpr std::size_t kMaxUrl = 512;
    if (url.size() > kMaxUrl) {
        return fmt::format("is longer than {} characters", kMaxUrl);
    }
    std::string_view rest = url;
    if (rest.starts_with("http://")) {
        rest.remove_prefix(7);
    } else if (rest.starts_with("https://")) {
        rest.remove_prefix(8);
    } else {
        return "must start with http:// or https://";
    }
    if (rest.ends_with('/')) {
        rest.remove_suffix(1);
    }
    if (rest.find_first_of("/?#") != std::string_view::npos) {
        return "must be http://HOST[:PORT] with no path, query or fragment";
    }
    if (rest.find('@') != std::string_view::npos) {
        return "must not carry credentials (serve's sidecar token_file holds the token)";
    }
    if (!is_host(rest, true)) {
        return "has a bad host or port (a host name or IP address, then optionally :1-65535)";
    }
    return {};
}

core::Result<void> check_control_url(const core::NodeSpec& spec) {
    const bool sidecar = spec.driver == "sidecar";
    if (!sidecar) {
        if (!spec.control_url.empty()) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("node {}: control_url is for driver sidecar, not {}",
                                           spec.name, spec.driver)};
        }
        return {};
    }
    if (spec.control_url.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("node {}: driver sidecar needs a control_url (the "
                                       "sidecar's control API, http://HOST:PORT)",
                                       spec.name)};
    }
    if (auto problem = control_url_problem(spec.control_url); !problem.empty()) {
        return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("node {}: control_url \"{}\" {}", spec.name, spec.control_url, problem)};
    }
    return {};
}

}  // namespace aviary::fleet
