// aviary nodes [add|remove], aviary machines [add|remove], aviary maintenance: the pool's
// nodes and machines.
#include <fmt/format.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <cstdio>
#include <string>
#include <string_view>

#include "cli/commands.hpp"
#include "cli/render.hpp"

namespace aviary::cli {
namespace json = boost::json;

namespace {

/// The tag the node runs, and the configured one when a job deployed another.
std::string image_text(const json::value& node) {
    const auto configured = text_of(field(node, "image_tag"));
    const auto& deployed_field = field(node, "deployed_image_tag");
    const auto deployed = deployed_field.is_null() ? std::string{} : text_of(deployed_field);
    if (deployed.empty() || deployed == configured) {
        return configured;
    }
    if (configured.empty()) {
        return deployed;
    }
    return fmt::format("{} (configured {})", deployed, configured);
}

std::vector<std::string> node_row(const json::value& node, core::TimePoint at) {
    const bool maintenance = text_of(field(node, "state")) == "maintenance";
    return {
        text_of(field(node, "node")),
        text_of(field(node, "state")),
        image_text(node),
        text_of(field(node, "holder")),
        field(node, "until").is_null() ? "" : time_with_remaining(field(node, "until"), at),
        labels_text(field(node, "labels")),
        maintenance ? "maintenance: " + text_of(field(node, "maintenance_reason"))
                    : text_of(field(node, "note")),
    };
}

std::string nodes_query(const std::vector<std::string>& labels) {
    std::string query;
    for (const auto& label : labels) {
        query += (query.empty() ? "?label=" : "&label=") + encode(label);
    }
    return query;
}

/// PUT /api/v1/COLLECTION/NAME with `body`; prints "added NAME" or "updated NAME" (or the
/// answer, with --json).
int put_entry(const Context& context,
              std::string_view collection,
              const std::string& name,
              const json::object& body) {
    auto reply =
        context.client.call("PUT", fmt::format("/api/v1/{}/{}", collection, encode(name)), body);
    if (!reply) {
        return report(reply.failure());
    }
    if (context.json) {
        print_json_text(reply->body);
        return kExitOk;
    }
    std::printf("%s %s\n", reply->status == 201 ? "added" : "updated", name.c_str());
    return kExitOk;
}

/// DELETE /api/v1/COLLECTION/NAME; prints "removed NAME" (or {"removed": NAME}).
int remove_entry(const Context& context, std::string_view collection, const std::string& name) {
    auto reply =
        context.client.call("DELETE", fmt::format("/api/v1/{}/{}", collection, encode(name)));
    if (!reply) {
        return report(reply.failure());
    }
    if (context.json) {
        std::puts(json::serialize(json::object{{"removed", name}}).c_str());
        return kExitOk;
    }
    std::printf("removed %s\n", name.c_str());
    return kExitOk;
}

}  // namespace

int run_nodes(const Context& context, const NodesFlags& flags) {
    if (auto checked = labels_object(flags.labels); !checked) {
        return report(checked.failure());
    }
    auto reply = context.client.call("GET", "/api/v1/nodes" + nodes_query(flags.labels));
    if (!reply) {
        return report(reply.failure());
    }
    if (context.json) {
        print_json_text(reply->body);
        return kExitOk;
    }
    Table table{{"NODE", "STATE", "IMAGE", "HOLDER", "UNTIL", "LABELS", "NOTE"}};
    const auto at = now();
    if (const auto* nodes = field(reply->json, "nodes").if_array()) {
        for (const auto& node : *nodes) {
            table.add(node_row(node, at));
        }
    }
    if (table.empty()) {
        std::puts(flags.labels.empty() ? "no nodes" : "no nodes match");
        return kExitOk;
    }
    std::fputs(table.text().c_str(), stdout);
    return kExitOk;
}

int run_nodes_add(const Context& context, const NodeAddFlags& flags) {
    json::object body;
    if (!flags.control_url.empty()) {
        body["control_url"] = flags.control_url;
    }
    if (!flags.driver.empty()) {
        body["driver"] = flags.driver;
    }
    if (!flags.image_tag.empty()) {
        body["image_tag"] = flags.image_tag;
    }
    if (!flags.labels.empty()) {
        auto labels = labels_object(flags.labels);
        if (!labels) {
            return report(labels.failure());
        }
        body["labels"] = std::move(*labels);
    }
    if (flags.note_given) {
        body["note"] = flags.note;
    }
    return put_entry(context, "nodes", flags.name, body);
}

int run_nodes_remove(const Context& context, const std::string& name) {
    return remove_entry(context, "nodes", name);
}

int run_machines(const Context& context) {
    auto reply = context.client.call("GET", "/api/v1/machines");
    if (!reply) {
        return report(reply.failure());
    }
    if (context.json) {
        print_json_text(reply->body);
        return kExitOk;
    }
    Table table{{"MACHINE", "STATE", "DRIVER", "ADDRESS", "HOLDER", "UNTIL", "WORKER IDS"}};
    const auto at = now();
    if (const auto* machines = field(reply->json, "machines").if_array()) {
        for (const auto& m : *machines) {
            std::string address = text_of(field(m, "address"));
            if (address.empty()) {
                address = text_of(field(m, "hostname"));
            }
            std::string workers;
            if (const auto* ids = field(m, "worker_ids").if_array()) {
                for (const auto& id : *ids) {
                    workers += (workers.empty() ? "" : ",") + text_of(id);
                }
            }
            table.add(
                {text_of(field(m, "name")), text_of(field(m, "state")), text_of(field(m, "driver")),
                 address, text_of(field(m, "holder")),
                 field(m, "until").is_null() ? "" : time_with_remaining(field(m, "until"), at),
                 workers});
        }
    }
    if (table.empty()) {
        std::puts("no machines");
        return kExitOk;
    }
    std::fputs(table.text().c_str(), stdout);
    return kExitOk;
}

int run_machines_add(const Context& context, const MachineAddFlags& flags) {
    json::object body;
    auto put_text = [&](const char* key, const std::string& value) {
        if (!value.empty()) {
            body[key] = value;
        }
    };
    put_text("driver", flags.driver);
    put_text("hostname", flags.hostname);
    put_text("address", flags.address);
    put_text("ssh_user", flags.ssh_user);
    put_text("ipmi_address", flags.ipmi_address);
    put_text("ipmi_user", flags.ipmi_user);
    put_text("pdu_host", flags.pdu_host);
    put_text("note", flags.note);
    if (flags.ssh_port != 0) {
        body["ssh_port"] = flags.ssh_port;
    }
    if (flags.pdu_outlet != 0) {
        body["pdu_outlet"] = flags.pdu_outlet;
    }
    if (!flags.groups.empty()) {
        json::array groups;
        for (const auto& group : flags.groups) {
            groups.emplace_back(group);
        }
        body["groups"] = std::move(groups);
    }
    if (!flags.labels.empty()) {
        auto labels = labels_object(flags.labels);
        if (!labels) {
            return report(labels.failure());
        }
        body["labels"] = std::move(*labels);
    }
    return put_entry(context, "machines", flags.name, body);
}

int run_machines_remove(const Context& context, const std::string& name) {
    return remove_entry(context, "machines", name);
}

int run_maintenance(const Context& context, const MaintenanceFlags& flags) {
    const std::string path = "/api/v1/nodes/" + encode(flags.node) + "/maintenance";
    const bool on = flags.mode == "on";
    auto reply = on ? context.client.call("PUT", path, json::object{{"reason", flags.reason}})
                    : context.client.call("DELETE", path);
    if (!reply) {
        return report(reply.failure());
    }
    if (context.json) {
        print_json_text(reply->body);
        return kExitOk;
    }
    if (on) {
        auto reason = text_of(field(reply->json, "maintenance_reason"));
        std::printf("%s is in maintenance%s%s\n", flags.node.c_str(), reason.empty() ? "" : ": ",
                    reason.c_str());
    } else {
        std::printf("%s is back in service\n", flags.node.c_str());
    }
    return kExitOk;
}

}  // namespace aviary::cli
