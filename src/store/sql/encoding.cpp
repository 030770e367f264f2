#include "store/sql/encoding.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <optional>
#include <utility>

namespace aviary::store::sql {
namespace {

boost::json::object labels_object(const core::Labels& labels) {
    boost::json::object out;
    for (const auto& [key, value] : labels) {
        out.emplace(key, value);
    }
    return out;
}

boost::json::object machine_object(const core::MachineSpec& machine) {
    boost::json::array groups;
    for (const auto& group : machine.groups) {
        groups.emplace_back(group);
    }
    return boost::json::object{
        {"hostname", machine.hostname},         {"address", machine.address},
        {"ssh_user", machine.ssh_user},         {"ssh_port", machine.ssh_port},
        {"ipmi_address", machine.ipmi_address}, {"ipmi_user", machine.ipmi_user},
        {"pdu_host", machine.pdu_host},         {"pdu_outlet", machine.pdu_outlet},
        {"groups", std::move(groups)},
    };
}

core::Error corrupt_labels(std::string_view text) {
    return core::Error{core::ErrorCode::kStorage,
                       fmt::format("stored labels are not a JSON object of strings: {}", text)};
}

/// A JSON object of strings, or nullopt for anything else.
std::optional<core::Labels> strings_from_json(std::string_view text) {
    boost::system::error_code ec;
    auto parsed = boost::json::parse(text, ec);
    if (ec || !parsed.is_object()) {
        return std::nullopt;
    }
    core::Labels out;
    for (const auto& [key, value] : parsed.get_object()) {
        if (!value.is_string()) {
            return std::nullopt;
        }
        out.emplace(std::string{key}, std::string{value.get_string()});
    }
    return out;
}

}  // namespace

std::string labels_to_json(const core::Labels& labels) {
    return boost::json::serialize(labels_object(labels));
}

core::Result<core::Labels> labels_from_json(std::string_view text) {
    auto labels = strings_from_json(text);
    if (!labels) {
        return corrupt_labels(text);
    }
    return std::move(*labels);
}

std::string lease_to_json(const core::Lease& lease) {
    // Every lease operation's event: the object lives in a buffer on the stack (it spills to
    // the heap only for long owners or reasons), so only the text is allocated.
    unsigned char buffer[1024];
    boost::json::monotonic_resource arena{buffer, sizeof buffer};
    return boost::json::serialize(
        boost::json::object{{
                                {"lease_id", lease.id},
                                {"owner", lease.owner},
                                {"reason", lease.reason},
                                {"acquired_at", core::format_time(lease.acquired_at)},
                                {"expires_at", core::format_time(lease.expires_at)},
                                {"exclusive", lease.exclusive},
                            },
                            &arena});
}

std::string waiter_to_json(const WaiterRecord& waiter) {
    const auto& request = waiter.request;
    boost::json::object out{
        {"ticket", waiter.ticket},
        {"owner", request.owner},
        {"reason", request.reason},
    };
    if (request.node.empty()) {
        out.emplace("selector", labels_object(request.selector));
        out.emplace("count", request.count);
    } else {
        out.emplace("node", request.node);
    }
    out.emplace("ttl", core::format_duration(request.ttl));
    out.emplace("exclusive", request.exclusive);
    out.emplace("since", core::format_time(request.now));
    out.emplace("deadline", core::format_time(waiter.deadline));
    if (!waiter.lease_id.empty()) {
        out.emplace("lease_id", waiter.lease_id);
    }
    return boost::json::serialize(out);
}

std::string maintenance_to_json(std::string_view reason) {
    if (reason.empty()) {
        return std::string{kNoState};
    }
    return boost::json::serialize(boost::json::object{{"maintenance_reason", reason}});
}

std::string spec_to_json(const core::NodeSpec& spec) {
    boost::json::object out{
        {"name", spec.name},           {"driver", spec.driver},
        {"image_tag", spec.image_tag}, {"labels", labels_object(spec.labels)},
        {"note", spec.note},
    };
    if (spec.machine) {
        out.emplace("machine", machine_object(*spec.machine));
    }
    if (!spec.control_url.empty()) {
        out.emplace("control_url", spec.control_url);
    }
    return boost::json::serialize(out);
}

std::string machine_to_json(const std::optional<core::MachineSpec>& machine) {
    return machine ? boost::json::serialize(machine_object(*machine)) : std::string{};
}

core::Result<std::optional<core::MachineSpec>> machine_from_json(std::string_view node,
                                                                 std::string_view text) {
    if (text.empty()) {
        return std::optional<core::MachineSpec>{};
    }
    auto corrupt = [&] {
        return core::Error{
            core::ErrorCode::kStorage,
            fmt::format("stored machine of node {} is not a machine object: {}", node, text)};
    };
    boost::system::error_code ec;
    auto parsed = boost::json::parse(text, ec);
    if (ec || !parsed.is_object()) {
        return corrupt();
    }
    const auto& object = parsed.as_object();
    core::MachineSpec machine;
    auto text_of = [&](std::string_view key, std::string& out) {
        const auto* value = object.if_contains(key);
        if (value == nullptr || !value->is_string()) {
            return false;
        }
        out = std::string{value->as_string()};
        return true;
    };
    auto int_of = [&](std::string_view key, int& out) {
        const auto* value = object.if_contains(key);
        if (value == nullptr || !value->is_int64()) {
            return false;
        }
        out = static_cast<int>(value->as_int64());
        return true;
    };
    const auto* groups = object.if_contains("groups");
    if (!text_of("hostname", machine.hostname) || !text_of("address", machine.address) ||
        !text_of("ssh_user", machine.ssh_user) || !int_of("ssh_port", machine.ssh_port) ||
        !text_of("ipmi_address", machine.ipmi_address) ||
        !text_of("ipmi_user", machine.ipmi_user) || !text_of("pdu_host", machine.pdu_host) ||
        !int_of("pdu_outlet", machine.pdu_outlet) || groups == nullptr || !groups->is_array()) {
        return corrupt();
    }
    for (const auto& group : groups->as_array()) {
        if (!group.is_string()) {
            return corrupt();
        }
        machine.groups.emplace_back(group.as_string());
    }
    return std::optional<core::MachineSpec>{std::move(machine)};
}

std::string params_to_json(const core::Params& params) {
    return boost::json::serialize(labels_object(params));
}

core::Result<core::Params> params_from_json(std::string_view job_id, std::string_view text) {
    auto params = strings_from_json(text);
    if (!params) {
        return core::Error{
            core::ErrorCode::kStorage,
            fmt::format("stored params of job {} are not a JSON object of strings: {}", job_id,
                        text)};
    }
    return std::move(*params);
}

std::string job_to_json(const core::Job& job) {
    boost::json::object out{
        {"id", job.id},
        {"action", job.action},
        {"node", job.node},
        {"params", labels_object(job.params)},
        {"state", core::to_string(job.state)},
        {"owner", job.owner},
        {"lease_id", job.lease_id},
        {"attempt", job.attempt},
    };
    if (job.step > 0) {
        out.emplace("step", job.step);
        out.emplace("step_name", job.step_name);
    }
    if (!job.error.empty()) {
        out.emplace("error", job.error);
    }
    return boost::json::serialize(out);
}

std::string strings_to_json_array(const std::vector<std::string>& strings) {
    boost::json::array out;
    for (const auto& text : strings) {
        out.emplace_back(text);
    }
    return boost::json::serialize(out);
}

core::Result<std::vector<std::string>> strings_from_json_array(std::string_view text) {
    boost::system::error_code ec;
    auto parsed = boost::json::parse(text, ec);
    std::vector<std::string> out;
    if (!ec && parsed.is_array()) {
        for (const auto& value : parsed.get_array()) {
            if (!value.is_string()) {
                break;
            }
            out.emplace_back(value.get_string());
        }
        if (out.size() == parsed.get_array().size()) {
            return out;
        }
    }
    return core::Error{core::ErrorCode::kStorage,
                       fmt::format("stored value is not a JSON array of strings: {}", text)};
}

std::string queue_to_json(std::string_view queue, bool paused) {
    return boost::json::serialize(boost::json::object{{"queue", queue}, {"paused", paused}});
}

}  // namespace aviary::store::sql
