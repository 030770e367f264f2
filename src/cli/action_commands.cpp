// aviary upgrade, install-snapshot, canary create|delete, run-action, switch-producer: an action
// on a node, submitted as a job and optionally followed to its end; aviary actions: what can be
// run.
#include <fmt/format.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/job_follow.hpp"
#include "cli/render.hpp"

namespace aviary::cli {
namespace json = boost::json;

namespace {

Outcome<json::object> params_object(const ActionFlags& flags) {
    json::object params;
    for (const auto& pair : flags.params) {
        auto equals = pair.find('=');
        if (equals == std::string::npos || equals == 0) {
            return Failure{kExitUsage, fmt::format("--param expects KEY=VALUE, got \"{}\"", pair)};
        }
        params[pair.substr(0, equals)] = pair.substr(equals + 1);
    }
    if (!flags.tag.empty()) {
        params["tag"] = flags.tag;
    }
    return params;
}

/// canary create without TAG: the image tag the node runs now.
Outcome<std::string> node_image_tag(const Context& context, const std::string& node) {
    auto reply = context.client.call("GET", "/api/v1/nodes/" + encode(node));
    if (!reply) {
        return reply.failure();
    }
    // What it runs now when a job deployed a tag, else the configured one.
    const auto& deployed = field(reply->json, "deployed_image_tag");
    auto tag = deployed.is_string() ? text_of(deployed) : text_of(field(reply->json, "image_tag"));
    if (tag.empty()) {
        return Failure{kExitUsage,
                       fmt::format("node {} has no image tag to default to: give a TAG", node)};
    }
    return tag;
}

Outcome<json::object> submit_body(const Context& context, const ActionFlags& flags) {
    if (!flags.ttl.empty() && flags.owner.empty()) {
        return Failure{kExitUsage, "--ttl is the implicit lease's length: it needs --owner"};
    }
    auto params = params_object(flags);
    if (!params) {
        return params.failure();
    }
    if (flags.tag_from_node && !params->contains("tag")) {
        auto tag = node_image_tag(context, flags.node);
        if (!tag) {
            return tag.failure();
        }
        (*params)["tag"] = std::move(*tag);
    }
    json::object body{{"params", std::move(*params)}};
    if (!flags.owner.empty()) {
        body["owner"] = flags.owner;
    }
    if (!flags.ttl.empty()) {
        body["lease_ttl"] = flags.ttl;
    }
    if (!flags.reason.empty()) {
        body["reason"] = flags.reason;
    }
    return body;
}

/// "job 01J… queued: upgrade on lotus-0 (position 2)", or the job it duplicates, then the
/// implicit acquire's lease.
void print_submitted(const json::value& reply) {
    const auto& job = field(reply, "job");
    const auto id = text_of(field(job, "id"));
    const auto state = text_of(field(job, "state"));
    const auto position = integer_of(field(job, "position"));
    // Position 1 is next in line: worth saying only when others are ahead.
    const auto where =
        position > 1 && state == "queued" ? fmt::format(" (position {})", position) : std::string{};
    if (field(reply, "duplicate").is_bool() && field(reply, "duplicate").get_bool()) {
        std::printf("already queued as job %s (%s)%s\n", id.c_str(), state.c_str(), where.c_str());
    } else {
        std::printf("job %s %s: %s on %s%s\n", id.c_str(), state.c_str(),
                    text_of(field(job, "action")).c_str(), text_of(field(job, "node")).c_str(),
                    where.c_str());
    }
    if (const auto& lease = field(reply, "lease"); lease.is_object()) {
        // The node's lease (lease_id), or a whole lease (id) from a server that sends one.
        auto lease_id = text_of(field(lease, "lease_id"));
        if (lease_id.empty()) {
            lease_id = text_of(field(lease, "id"));
        }
        std::printf("lease %s held by %s until %s\n", lease_id.c_str(),
                    text_of(field(lease, "owner")).c_str(),
                    time_with_remaining(field(lease, "expires_at"), now()).c_str());
    }
    std::fflush(stdout);  // before a --wait's progress or output lines
}

/// "tag (image_tag)", "[replicas=1] (integer)": optional params in brackets with their default.
std::string params_text(const json::value& params) {
    std::string out;
    if (const auto* list = params.if_array()) {
        for (const auto& param : *list) {
            auto name = text_of(field(param, "name"));
            const auto& required = field(param, "required");
            if (required.is_bool() && !required.get_bool()) {
                auto fallback = text_of(field(param, "default"));
                name = fallback.empty() ? "[" + name + "]" : "[" + name + "=" + fallback + "]";
            }
            out += fmt::format("{}{} ({})", out.empty() ? "" : ", ", name,
                               text_of(field(param, "type")));
        }
    }
    return out;
}

std::string steps_text(const json::value& steps) {
    std::string out;
    if (const auto* list = steps.if_array()) {
        for (const auto& step : *list) {
            auto name = text_of(field(step, "name"));
            out += (out.empty() ? "" : ", ") + (name.empty() ? text_of(field(step, "kind")) : name);
        }
    }
    return out;
}

}  // namespace

int run_action(const Context& context, const ActionFlags& flags) {
    auto body = submit_body(context, flags);
    if (!body) {
        return report(body.failure());
    }
    auto reply = context.client.call(
        "POST",
        fmt::format("/api/v1/nodes/{}/actions/{}", encode(flags.node), encode(flags.action)),
        json::value(std::move(*body)));  // parentheses: braces would make a one-element array
    if (!reply) {
        return report(reply.failure());
    }
    if (!flags.wait) {
        if (context.json) {
            print_json_text(reply->body);
        } else {
            print_submitted(reply->json);
        }
        return kExitOk;
    }
    if (!context.json) {
        print_submitted(reply->json);
    }
    return wait_for_job(context, text_of(field(field(reply->json, "job"), "id")), flags.logs);
}

int run_switch_producer(const Context& context, const SwitchProducerFlags& flags) {
    ActionFlags action;
    action.node = flags.to;
    action.action = "switch-producer";
    action.params = {"from=" + flags.from, fmt::format("execute={}", flags.execute),
                     fmt::format("max_lag={}", flags.max_lag)};
    // The plan and every check are the job's output: always followed and shown.
    action.wait = true;
    action.logs = true;
    return run_action(context, action);
}

int run_actions(const Context& context) {
    auto reply = context.client.call("GET", "/api/v1/actions");
    if (!reply) {
        return report(reply.failure());
    }
    if (context.json) {
        print_json_text(reply->body);
        return kExitOk;
    }
    // {"actions": [...]}, or the bare list.
    const auto& listed = reply->json.is_array() ? reply->json : field(reply->json, "actions");
    Table table{{"ACTION", "PARAMS", "STEPS", "DESCRIPTION"}};
    if (const auto* actions = listed.if_array()) {
        for (const auto& action : *actions) {
            table.add({text_of(field(action, "name")), params_text(field(action, "params")),
                       steps_text(field(action, "steps")), text_of(field(action, "description"))});
        }
    }
    std::fputs(table.empty() ? "no actions\n" : table.text().c_str(), stdout);
    return kExitOk;
}

}  // namespace aviary::cli
