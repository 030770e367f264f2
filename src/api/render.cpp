#include "api/render.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <map>

namespace aviary::api {
namespace json = boost::json;

namespace {

json::value time_or_null(const std::optional<core::Lease>& lease,
                         core::TimePoint core::Lease::*at) {
    return lease ? json::value(core::format_time((*lease).*at)) : json::value(nullptr);
}

/// Events keep before/after as JSON text; show them as objects (or the text if it is not JSON).
json::value embedded_json(const std::string& text) {
    std::error_code ec;
    auto parsed = json::parse(text, ec);
    return ec ? json::value(text) : parsed;
}

}  // namespace

json::object labels_json(const core::Labels& labels) {
    json::object out;
    for (const auto& [key, value] : labels) {
        out[key] = value;
    }
    return out;
}

std::string selector_text(const core::Labels& selector) {
    std::string out;
    for (const auto& [key, value] : selector) {
        out += fmt::format("{}{}={}", out.empty() ? "" : ",", key, value);
    }
    return out;
}

json::object node_json(const core::Node& node) {
    json::object out{
        {"node", node.spec.name},
        {"state", core::to_string(node.state)},
        {"driver", node.spec.driver},
        {"image_tag", node.spec.image_tag},
        {"deployed_image_tag",
         node.deployed_tag.empty() ? json::value(nullptr) : json::value(node.deployed_tag)},
        {"labels", labels_json(node.spec.labels)},
        {"note", node.spec.note},
        {"source", node.source},
        {"holder", node.lease ? json::value(node.lease->owner) : json::value(nullptr)},
        {"since", time_or_null(node.lease, &core::Lease::acquired_at)},
        {"until", time_or_null(node.lease, &core::Lease::expires_at)},
    };
    if (node.lease) {
        out["lease_id"] = node.lease->id;
        out["reason"] = node.lease->reason;
    }
    if (node.state == core::NodeState::kMaintenance) {
        out["maintenance_reason"] = node.maintenance_reason;
    }
    if (node.spec.machine) {
        out["machine"] = machine_properties_json(*node.spec.machine);
    }
    if (!node.spec.control_url.empty()) {
        out["control_url"] = node.spec.control_url;
    }
    if (node.gate_until) {
        // A gated node (docs/probes.md, "Gated leases"): until when its last pass lets a
        // selector acquire have it; null while it has not passed since its last lease.
        out["gate_passed_until"] = node.gate_until->time_since_epoch().count() > 0
                                       ? json::value(core::format_time(*node.gate_until))
                                       : json::value(nullptr);
    }
    return out;
}

json::object machine_properties_json(const core::MachineSpec& machine) {
    json::array groups;
    for (const auto& group : machine.groups) {
        groups.emplace_back(group);
    }
    return json::object{
        {"hostname", machine.hostname},         {"address", machine.address},
        {"ssh_user", machine.ssh_user},         {"ssh_port", machine.ssh_port},
        {"ipmi_address", machine.ipmi_address}, {"ipmi_user", machine.ipmi_user},
        {"pdu_host", machine.pdu_host},         {"pdu_outlet", machine.pdu_outlet},
        {"groups", std::move(groups)},
    };
}

json::object machine_json(const core::Node& node, const std::vector<core::WorkerId>& workers) {
    json::object out = node_json(node);
    out.erase("machine");
    out.erase("node");
    out["name"] = node.spec.name;
    if (node.spec.machine) {
        for (auto& [key, value] : machine_properties_json(*node.spec.machine)) {
            out[key] = value;
        }
    }
    json::array ids;
    for (const auto& worker : workers) {
        if (worker.machine == node.spec.name) {
            ids.emplace_back(worker.id);
        }
    }
    out["worker_ids"] = std::move(ids);
    return out;
}

json::object lease_json(const core::Lease& lease) {
    return json::object{
        {"node", lease.node},
        {"owner", lease.owner},
        {"lease_id", lease.id},
        {"reason", lease.reason},
        {"exclusive", lease.exclusive},
        {"acquired_at", core::format_time(lease.acquired_at)},
        {"expires_at", core::format_time(lease.expires_at)},
    };
}

json::object lease_set_json(const std::vector<core::Lease>& leases) {
    AVIARY_ASSERT(!leases.empty(), "a lease covers at least one node");
    const auto& first = leases.front();
    json::array nodes;
    for (const auto& lease : leases) {
        nodes.push_back(json::value(lease.node));
    }
    return json::object{
        {"id", first.id},
        {"owner", first.owner},
        {"reason", first.reason},
        {"exclusive", first.exclusive},
        {"nodes", std::move(nodes)},
        {"acquired_at", core::format_time(first.acquired_at)},
        {"expires_at", core::format_time(first.expires_at)},
    };
}

std::vector<std::vector<core::Lease>> group_by_id(const std::vector<core::Lease>& leases) {
    std::vector<std::vector<core::Lease>> groups;
    std::map<std::string, size_t> index;
    for (const auto& lease : leases) {
        auto [it, added] = index.emplace(lease.id, groups.size());
        if (added) {
            groups.emplace_back();
        }
        groups[it->second].push_back(lease);
    }
    return groups;
}

json::object waiter_json(const fleet::Waiter& waiter) {
    json::object out{
        {"ticket", waiter.ticket},
        {"owner", waiter.owner},
        {"reason", waiter.reason},
        {"count", waiter.count},
        {"position", waiter.position},
        {"since", core::format_time(waiter.since)},
        {"deadline", core::format_time(waiter.deadline)},
    };
    if (!waiter.node.empty()) {
        out["node"] = waiter.node;
    } else {
        out["selector"] = labels_json(waiter.selector);
    }
    return out;
}

json::object event_json(const core::Event& event) {
    return json::object{
        {"id", event.id},
        {"at", core::format_time(event.at)},
        {"actor", event.actor},
        {"kind", event.kind},
        {"node", event.node},
        {"before", embedded_json(event.before)},
        {"after", embedded_json(event.after)},
    };
}

std::string_view roller_status(core::JobState state) {
    switch (state) {
        case core::JobState::kQueued:
            return "PENDING";
        case core::JobState::kRunning:
        case core::JobState::kCancelling:
            return "RUNNING";
        case core::JobState::kSucceeded:
            return "COMPLETE";
        case core::JobState::kFailed:
        case core::JobState::kTimedOut:
            return "FAILED";
        case core::JobState::kCancelled:
            return "CANCELLED";
    }
    return "PENDING";
}

json::object job_json(const core::Job& job) {
    json::object params;
    for (const auto& [name, value] : job.params) {
        params[name] = value;
    }
    auto time_or_null = [](const std::optional<core::TimePoint>& at) {
        return at ? json::value(core::format_time(*at)) : json::value(nullptr);
    };
    json::object out{
        {"id", job.id},
        {"action", job.action},
        {"queue", job.queue},
        {"node", job.node},
        {"params", std::move(params)},
        {"requester", job.requester},
        {"owner", job.owner},
        {"lease_id", job.lease_id},
        {"state", core::to_string(job.state)},
        {"status", roller_status(job.state)},
        {"attempt", job.attempt},
        {"max_attempts", job.max_attempts},
        {"step", job.step},
        {"steps", job.steps},
        {"step_name", job.step_name},
        {"cancel_requested", job.cancel_requested},
        // The instance that ran the last attempt ("INSTANCE/RUN" runner ids), null before one.
        {"instance", job.runner.empty() ? json::value(nullptr)
                                        : json::value(job.runner.substr(0, job.runner.find('/')))},
        {"created_at", core::format_time(job.created_at)},
        {"run_at", core::format_time(job.run_at)},
        {"started_at", time_or_null(job.started_at)},
        {"finished_at", time_or_null(job.finished_at)},
        {"result", embedded_json(job.result.empty() ? std::string{"{}"} : job.result)},
        {"error", job.error},
        {"retry_of", job.retry_of},
    };
    if (job.state == core::JobState::kQueued) {
        out["position"] = job.position;
    }
    // The roller's names for the same job: a dashboard polling GET /api/v1/jobs/{task_id}
    // reads these.
    out["task_id"] = job.id;
    out["task_name"] = job.action;
    auto worker = job.params.find("tc_worker_id");
    out["tc_worker_id"] =
        worker != job.params.end() ? json::value(worker->second) : json::value(nullptr);
    return out;
}

json::object output_line_json(const core::OutputLine& line) {
    return json::object{
        {"seq", line.seq},   {"at", core::format_time(line.at)}, {"stream", line.stream},
        {"text", line.text}, {"attempt", line.attempt},          {"step", line.step},
    };
}

namespace {

json::object param_json(const jobs::ParamSpec& param) {
    json::object out{
        {"name", param.name},
        {"type", jobs::to_string(param.type)},
        {"required", param.required},
        {"description", param.description},
    };
    out["default"] = param.required && param.default_value.empty()
                         ? json::value(nullptr)
                         : json::value(param.default_value);
    out["pattern"] = param.pattern.empty() ? json::value(nullptr) : json::value(param.pattern);
    out["from"] = param.from.empty() ? json::value(nullptr) : json::value(param.from);
    return out;
}

json::object step_json(const jobs::StepSpec& step) {
    json::object out{{"kind", jobs::to_string(step.kind)}};
    std::string name = step.name;
    if (step.kind == jobs::StepKind::kDriver) {
        out["op"] = drivers::to_string(step.op);
        if (name.empty()) {
            name = fmt::format("driver {}", drivers::to_string(step.op));
        }
    } else if (step.kind == jobs::StepKind::kWait) {
        out["condition"] = jobs::to_string(step.condition);
    }
    out["name"] = name.empty() ? std::string{jobs::to_string(step.kind)} : name;
    return out;
}

}  // namespace

json::object action_json(const jobs::ActionSpec& action) {
    json::array params;
    for (const auto& param : action.params) {
        params.push_back(param_json(param));
    }
    json::array steps;
    for (const auto& step : action.steps) {
        steps.push_back(step_json(step));
    }
    return json::object{
        {"name", action.name},
        {"description", action.description},
        {"queue", action.queue},
        {"params", std::move(params)},
        {"steps", std::move(steps)},
        {"timeout", core::format_duration(action.timeout)},
        {"max_attempts", action.max_attempts},
        {"destructive", action.destructive},
        {"rerun_safe", action.rerun_safe},
        {"exclusive", action.exclusive},
        {"public", action.is_public},
    };
}

json::object error_json(const core::Error& error) {
    return json::object{
        {"error", json::object{{"code", core::to_string(error.code)}, {"message", error.message}}}};
}

}  // namespace aviary::api
