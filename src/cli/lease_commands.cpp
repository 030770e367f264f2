// aviary renew, release, free, who: leases after they are granted.
#include <fmt/format.h>
#include <pwd.h>
#include <unistd.h>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <cstdio>
#include <cstdlib>

#include "cli/commands.hpp"
#include "cli/render.hpp"

namespace aviary::cli {
namespace json = boost::json;

namespace {

/// The lease a node holds now, or null when it is free (a "lease id" the caller may end).
struct NodeLease {
    std::string lease_id;
    std::string holder;
};

Outcome<NodeLease> lease_of_node(const Context& context, const std::string& node) {
    auto reply = context.client.call("GET", "/api/v1/nodes/" + encode(node));
    if (!reply) {
        return reply.failure();
    }
    return NodeLease{text_of(field(reply->json, "lease_id")),
                     text_of(field(reply->json, "holder"))};
}

int release_lease_id(const Context& context, const std::string& id) {
    auto reply = context.client.call("DELETE", "/api/v1/leases/" + encode(id));
    if (!reply) {
        return report(reply.failure());
    }
    if (context.json) {
        print_json_text(reply->body);
        return kExitOk;
    }
    const auto& released = field(reply->json, "released");
    std::printf("released %s (%s)\n", text_of(field(released, "id")).c_str(),
                join_names(field(released, "nodes"), ", ").c_str());
    return kExitOk;
}

/// Gives back the lease `node` is under (`held`, just read). The holder check is the CLI's: without
/// tokens the server treats every loopback caller as an admin, and `release` must still not end
/// someone else's lease by accident (tweety refused that too). `force` is the deliberate way.
int release_held(const Context& context,
                 const std::string& node,
                 const NodeLease& held,
                 const ReleaseFlags& flags) {
    if (held.lease_id.empty()) {
        if (context.json) {
            std::puts(json::serialize(json::object{{"node", node}, {"released", nullptr}}).c_str());
        } else {
            std::printf("%s is not leased\n", node.c_str());
        }
        return kExitOk;
    }
    const auto owner = default_owner(context, flags.owner);
    if (!flags.force && !owner.empty() && held.holder != owner) {
        return report(
            Failure{kExitRefused,
                    fmt::format("node {} is leased by {}, not {} (aviary free {} --force ends it)",
                                node, held.holder, owner, node)});
    }
    return release_lease_id(context, held.lease_id);
}

std::string waiter_wants(const json::value& waiter) {
    auto node = text_of(field(waiter, "node"));
    return node.empty() ? labels_text(field(waiter, "selector")) : node;
}

}  // namespace

int run_renew(const Context& context, const RenewFlags& flags) {
    json::object body;
    if (!flags.ttl.empty()) {
        body["ttl"] = flags.ttl;
    }
    auto reply = context.client.call("PUT", "/api/v1/leases/" + encode(flags.id), body);
    if (!reply) {
        return report(reply.failure());
    }
    print_lease(context, reply->json);
    return kExitOk;
}

int run_release(const Context& context, const ReleaseFlags& flags) {
    // Node names are DNS labels (lower case); lease ids are upper-case ULIDs. A lower-cased id
    // is tried as a node first and falls back to an id when no node has that name.
    if (core::is_dns_label(flags.target)) {
        auto held = lease_of_node(context, flags.target);
        if (held) {
            return release_held(context, flags.target, *held, flags);
        }
        if (held.failure().http_status != 404) {
            return report(held.failure());
        }
    }
    return release_lease_id(context, flags.target);
}

int run_free(const Context& context, const ReleaseFlags& flags) {
    auto held = lease_of_node(context, flags.target);
    if (!held) {
        return report(held.failure());
    }
    return release_held(context, flags.target, *held, flags);
}

int run_who(const Context& context) {
    auto reply = context.client.call("GET", "/api/v1/leases");
    if (!reply) {
        return report(reply.failure());
    }
    if (context.json) {
        print_json_text(reply->body);
        return kExitOk;
    }
    const auto at = now();
    Table leases{{"LEASE", "OWNER", "NODES", "SINCE", "UNTIL", "REASON"}};
    if (const auto* list = field(reply->json, "leases").if_array()) {
        for (const auto& lease : *list) {
            leases.add({text_of(field(lease, "id")), text_of(field(lease, "owner")),
                        join_names(field(lease, "nodes")), text_of(field(lease, "acquired_at")),
                        time_with_remaining(field(lease, "expires_at"), at),
                        text_of(field(lease, "reason"))});
        }
    }
    std::fputs(leases.empty() ? "no leases\n" : leases.text().c_str(), stdout);
    Table waiters{{"TICKET", "OWNER", "WANTS", "COUNT", "POSITION", "SINCE", "DEADLINE"}};
    if (const auto* list = field(reply->json, "waiters").if_array()) {
        for (const auto& waiter : *list) {
            waiters.add({text_of(field(waiter, "ticket")), text_of(field(waiter, "owner")),
                         waiter_wants(waiter), text_of(field(waiter, "count")),
                         text_of(field(waiter, "position")), text_of(field(waiter, "since")),
                         time_with_remaining(field(waiter, "deadline"), at)});
        }
    }
    if (!waiters.empty()) {
        std::printf("\nwaiting:\n%s", waiters.text().c_str());
    }
    return kExitOk;
}

Outcome<json::value> labels_object(const std::vector<std::string>& pairs) {
    json::object labels;
    for (const auto& pair : pairs) {
        auto equals = pair.find('=');
        if (equals == std::string::npos || equals == 0) {
            return Failure{kExitUsage, fmt::format("--label expects KEY=VALUE, got \"{}\"", pair)};
        }
        labels[pair.substr(0, equals)] = pair.substr(equals + 1);
    }
    return json::value(std::move(labels));  // braces would make a one-element array
}

std::string default_owner(const Context& context, const std::string& owner_flag) {
    if (!owner_flag.empty()) {
        return owner_flag;
    }
    if (context.has_token) {
        return {};  // the server takes the token's identity; naming another would be refused
    }
    if (const char* user = std::getenv("USER"); user != nullptr && *user != '\0') {
        return user;
    }
    if (const passwd* entry = getpwuid(getuid()); entry != nullptr) {
        return entry->pw_name;
    }
    return "aviary";
}

void print_lease(const Context& context, const json::value& lease) {
    if (context.json) {
        std::puts(json::serialize(lease).c_str());
        return;
    }
    Table table{{"LEASE", "NODES", "OWNER", "UNTIL"}};
    table.add({text_of(field(lease, "id")), join_names(field(lease, "nodes")),
               text_of(field(lease, "owner")),
               time_with_remaining(field(lease, "expires_at"), now())});
    std::fputs(table.text().c_str(), stdout);
}

}  // namespace aviary::cli
