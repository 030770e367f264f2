#include "api/rest.hpp"

#include <fmt/format.h>

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <limits>

#include "api/body.hpp"
#include "api/errors.hpp"
#include "api/render.hpp"

namespace aviary::api {
namespace {

namespace json = boost::json;

/// The first error among several parsed fields, if any.
template <class... Rs>
std::optional<core::Error> first_error(const Rs&... results) {
    std::optional<core::Error> out;
    ((out = (!out && !results) ? std::optional<core::Error>{results.error()} : out), ...);
    return out;
}

}  // namespace

net::Response json_reply(int status, std::string body) {
    net::Response response;
    response.status = status;
    response.content_type = "application/json";
    response.body = std::move(body);
    return response;
}

net::Response error_reply(const core::Error& error) {
    return json_reply(http_status(error.code), json::serialize(error_json(error)));
}

core::Result<std::int64_t> query_integer(std::string_view name,
                                         std::string_view value,
                                         std::int64_t min,
                                         std::int64_t max) {
    std::int64_t out = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
    if (ec != std::errc{} || end != value.data() + value.size() || out < min || out > max) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("query parameter \"{}\" must be an integer from {} to {}, "
                                       "got \"{}\"",
                                       name, min, max, value)};
    }
    return out;
}

core::Error unknown_parameter(std::string_view key, std::string_view known) {
    return core::Error{core::ErrorCode::kInvalidArgument,
                       fmt::format("unknown query parameter \"{}\" (known: {})", key, known)};
}

void RestApi::add_routes(RouteTable& table) {
    table.add({.method = "GET", .pattern = "/api/v1/nodes", .handler = [this](RouteContext& c) {
                   return list_nodes(c.request);
               }});
    table.add({.method = "GET",
               .pattern = "/api/v1/nodes/{name}",
               .handler = [this](RouteContext& c) { return get_node(c.params["name"]); }});
    table.add(
        {.method = "PUT",
         .pattern = "/api/v1/nodes/{name}",
         .handler =
             [this](RouteContext& c) { return put_node(c.params["name"], c.request, c.caller); },
         .body = BodyKind::kJson});
    table.add(
        {.method = "DELETE", .pattern = "/api/v1/nodes/{name}", .handler = [this](RouteContext& c) {
             return delete_node(c.params["name"], c.caller, false);
         }});
    table.add({.method = "GET", .pattern = "/api/v1/machines", .handler = [this](RouteContext&) {
                   return list_machines();
               }});
    table.add({.method = "GET",
               .pattern = "/api/v1/machines/{name}",
               .handler = [this](RouteContext& c) { return get_machine(c.params["name"]); }});
    table.add(
        {.method = "PUT",
         .pattern = "/api/v1/machines/{name}",
         .handler =
             [this](RouteContext& c) { return put_machine(c.params["name"], c.request, c.caller); },
         .body = BodyKind::kJson});
    table.add({.method = "DELETE",
               .pattern = "/api/v1/machines/{name}",
               .handler = [this](RouteContext& c) {
                   return delete_node(c.params["name"], c.caller, true);
               }});
    table.add({.method = "PUT",
               .pattern = "/api/v1/nodes/{name}/maintenance",
               .handler =
                   [this](RouteContext& c) {
                       return maintenance(c.params["name"], true, c.request, c.caller);
                   },
               .body = BodyKind::kJson});
    table.add({.method = "DELETE",
               .pattern = "/api/v1/nodes/{name}/maintenance",
               .handler = [this](RouteContext& c) {
                   return maintenance(c.params["name"], false, c.request, c.caller);
               }});
    table.add({.method = "GET", .pattern = "/api/v1/leases", .handler = [this](RouteContext& c) {
                   return list_leases(c.request);
               }});
    table.add({.method = "POST",
               .pattern = "/api/v1/leases",
               .handler = [this](RouteContext& c) { return acquire(c.request, c.caller); },
               .body = BodyKind::kJson});
    table.add(
        {.method = "PUT",
         .pattern = "/api/v1/leases/{id}",
         .handler = [this](RouteContext& c) { return renew(c.params["id"], c.request, c.caller); },
         .body = BodyKind::kJson});
    table.add({.method = "DELETE",
               .pattern = "/api/v1/leases/{id}",
               .handler = [this](RouteContext& c) { return release(c.params["id"], c.caller); }});
    table.add({.method = "GET", .pattern = "/api/v1/events", .handler = [this](RouteContext& c) {
                   return events(c.request);
               }});
    table.add({.method = "GET", .pattern = "/api/v1/producers", .handler = [this](RouteContext&) {
                   return producers();
               }});
    table.add({.method = "POST",
               .pattern = "/api/v1/producers/{key}/claim",
               .handler =
                   [this](RouteContext& c) {
                       return claim_producer(c.params["key"], c.request, c.caller);
                   },
               .body = BodyKind::kJson});
    table.add({.method = "POST",
               .pattern = "/api/v1/producers/{key}/release",
               .handler =
                   [this](RouteContext& c) {
                       return release_producer(c.params["key"], c.request, c.caller);
                   },
               .body = BodyKind::kJson});
}

namespace {

json::object producer_json(const store::ProducerLease& lease) {
    return json::object{{"key", lease.key},
                        {"holder", lease.holder},
                        {"fence", lease.fence},
                        {"acquired_at", core::format_time(lease.acquired_at)},
                        {"expires_at", core::format_time(lease.expires_at)}};
}

}  // namespace

net::asio::awaitable<net::Response> RestApi::producers() {
    auto work = [this] { return fleet_.producers(); };
    auto listed = co_await net::offload(pool_, std::move(work));
    if (!listed) {
        co_return error_reply(listed.error());
    }
    json::array out;
    for (const auto& lease : *listed) {
        out.push_back(producer_json(lease));
    }
    co_return json_reply(200, json::serialize(json::object{{"producers", std::move(out)}}));
}

net::asio::awaitable<net::Response> RestApi::claim_producer(std::string key,
                                                            net::Request& request,
                                                            fleet::Caller caller) {
    auto body = Body::parse(request.body, {"holder", "ttl"});
    if (!body) {
        co_return error_reply(body.error());
    }
    auto holder = body->string("holder");
    auto ttl = body->duration("ttl");
    if (auto error = first_error(holder, ttl)) {
        co_return error_reply(*error);
    }
    const std::string who = holder->value_or(caller.identity);
    auto work = [this, key, who, ttl = *ttl, caller] {
        return fleet_.claim_producer(key, who, ttl, caller);
    };
    auto claimed = co_await net::offload(pool_, std::move(work));
    if (!claimed) {
        co_return error_reply(claimed.error());
    }
    co_return json_reply(200, json::serialize(producer_json(*claimed)));
}

net::asio::awaitable<net::Response> RestApi::release_producer(std::string key,
                                                              net::Request& request,
                                                              fleet::Caller caller) {
    auto body = Body::parse(request.body, {"holder", "fence"});
    if (!body) {
        co_return error_reply(body.error());
    }
    auto holder = body->string("holder");
    auto fence = body->integer("fence", 1, std::numeric_limits<int>::max());
    if (auto error = first_error(holder, fence)) {
        co_return error_reply(*error);
    }
    if (!*fence) {
        co_return error_reply(
            core::Error{core::ErrorCode::kInvalidArgument, "body field \"fence\" is required"});
    }
    const std::string who = holder->value_or(caller.identity);
    auto work = [this, key, who, fence = **fence, caller] {
        return fleet_.release_producer(key, who, fence, caller);
    };
    auto released = co_await net::offload(pool_, std::move(work));
    if (!released) {
        co_return error_reply(released.error());
    }
    co_return json_reply(200, json::serialize(json::object{{"released", true}, {"key", key}}));
}

net::asio::awaitable<net::Response> RestApi::list_nodes(net::Request& request) {
    core::Labels selector;
    for (const auto& [key, value] : request.query) {
        if (key != "label") {
            co_return error_reply(
                core::Error{core::ErrorCode::kInvalidArgument,
                            fmt::format("unknown query parameter \"{}\" (known: label)", key)});
        }
        auto label = parse_label(value, "label");
        if (!label) {
            co_return error_reply(label.error());
        }
        selector.insert(std::move(*label));
    }
    auto work = [this, selector] { return fleet_.nodes(selector); };
    auto nodes = co_await net::offload(pool_, std::move(work));
    if (!nodes) {
        co_return error_reply(nodes.error());
    }
    json::array out;
    for (const auto& node : *nodes) {
        out.push_back(node_json(node));
    }
    co_return json_reply(200, json::serialize(json::object{{"nodes", std::move(out)}}));
}

net::asio::awaitable<net::Response> RestApi::get_node(std::string name) {
    auto work = [this, name] { return fleet_.node(name); };
    auto node = co_await net::offload(pool_, std::move(work));
    if (!node) {
        co_return error_reply(node.error());
    }
    co_return json_reply(200, json::serialize(node_json(*node)));
}

net::asio::awaitable<net::Response> RestApi::put_node(std::string name,
                                                      net::Request& request,
                                                      fleet::Caller caller) {
    auto body = Body::parse(request.body, {"driver", "image_tag", "labels", "note", "control_url"});
    if (!body) {
        co_return error_reply(body.error());
    }
    auto driver = body->string("driver");
    auto image_tag = body->string("image_tag");
    auto labels = body->labels("labels");
    auto note = body->string("note");
    auto control_url = body->string("control_url");
    if (auto error = first_error(driver, image_tag, labels, note, control_url)) {
        co_return error_reply(*error);
    }
    if (!core::is_dns_label(name)) {
        co_return error_reply(core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("node name \"{}\" must be a DNS-1123 label (a-z, 0-9, -)", name)});
    }
    std::string driver_name = driver->value_or("sim");
    if (driver_name != "sim" && driver_name != "helm" && driver_name != "sidecar") {
        co_return error_reply(
            core::Error{core::ErrorCode::kInvalidArgument,
                        "body field \"driver\" must be \"sim\", \"helm\" or \"sidecar\""});
    }
    core::NodeSpec spec{.name = name,
                        .driver = driver_name,
                        .image_tag = image_tag->value_or(""),
                        .labels = labels->value_or(core::Labels{}),
                        .note = note->value_or(""),
                        .control_url = control_url->value_or("")};
    auto work = [this, spec, caller] { return fleet_.put_node(spec, caller); };
    auto put = co_await net::offload(pool_, std::move(work));
    if (!put) {
        co_return error_reply(put.error());
    }
    co_return json_reply(put->second ? 201 : 200, json::serialize(node_json(put->first)));
}

net::asio::awaitable<net::Response> RestApi::delete_node(std::string name,
                                                         fleet::Caller caller,
                                                         bool machine) {
    auto work = [this, name, caller, machine] { return fleet_.remove_node(name, caller, machine); };
    auto removed = co_await net::offload(pool_, std::move(work));
    if (!removed) {
        co_return error_reply(removed.error());
    }
    net::Response response;
    response.status = 204;
    co_return response;
}

net::asio::awaitable<net::Response> RestApi::list_machines() {
    auto work = [this]() -> core::Result<json::array> {
        auto nodes = fleet_.nodes();
        if (!nodes) {
            return nodes.error();
        }
        auto workers = fleet_.worker_ids();
        if (!workers) {
            return workers.error();
        }
        json::array out;
        for (const auto& node : *nodes) {
            if (node.spec.machine) {
                out.emplace_back(machine_json(node, *workers));
            }
        }
        return out;
    };
    auto machines = co_await net::offload(pool_, std::move(work));
    if (!machines) {
        co_return error_reply(machines.error());
    }
    co_return json_reply(200, json::serialize(json::object{{"machines", std::move(*machines)}}));
}

net::asio::awaitable<net::Response> RestApi::get_machine(std::string name) {
    auto work = [this, name]() -> core::Result<json::object> {
        auto node = fleet_.node(name);
        if (!node) {
            return node.error();
        }
        if (!node->spec.machine) {
            return core::Error{core::ErrorCode::kNotFound,
                               fmt::format("{} is a node, not a machine", name)};
        }
        auto workers = fleet_.worker_ids();
        if (!workers) {
            return workers.error();
        }
        return machine_json(*node, *workers);
    };
    auto machine = co_await net::offload(pool_, std::move(work));
    if (!machine) {
        co_return error_reply(machine.error());
    }
    co_return json_reply(200, json::serialize(*machine));
}

net::asio::awaitable<net::Response> RestApi::put_machine(std::string name,
                                                         net::Request& request,
                                                         fleet::Caller caller) {
    auto body = Body::parse(
        request.body, {"driver", "hostname", "address", "ssh_user", "ssh_port", "ipmi_address",
                       "ipmi_user", "pdu_host", "pdu_outlet", "groups", "labels", "note"});
    if (!body) {
        co_return error_reply(body.error());
    }
    auto driver = body->string("driver");
    auto hostname = body->string("hostname");
    auto address = body->string("address");
    auto ssh_user = body->string("ssh_user");
    auto ssh_port = body->integer("ssh_port", 1, 65535);
    auto ipmi_address = body->string("ipmi_address");
    auto ipmi_user = body->string("ipmi_user");
    auto pdu_host = body->string("pdu_host");
    auto pdu_outlet = body->integer("pdu_outlet", 0, 4096);
    auto groups = body->strings("groups");
    auto labels = body->labels("labels");
    auto note = body->string("note");
    if (auto error = first_error(driver, hostname, address, ssh_user, ssh_port, ipmi_address,
                                 ipmi_user, pdu_host, pdu_outlet, groups, labels, note)) {
        co_return error_reply(*error);
    }
    if (!core::is_dns_label(name)) {
        co_return error_reply(core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("machine name \"{}\" must be a DNS-1123 label (a-z, 0-9, -)", name)});
    }
    core::NodeSpec spec{.name = name,
                        .driver = driver->value_or("ssh"),
                        .labels = labels->value_or(core::Labels{}),
                        .note = note->value_or(""),
                        .machine = core::MachineSpec{
                            .hostname = hostname->value_or(""),
                            .address = address->value_or(""),
                            .ssh_user = ssh_user->value_or("root"),
                            .ssh_port = ssh_port->value_or(22),
                            .ipmi_address = ipmi_address->value_or(""),
                            .ipmi_user = ipmi_user->value_or(""),
                            .pdu_host = pdu_host->value_or(""),
                            .pdu_outlet = pdu_outlet->value_or(0),
                            .groups = groups->value_or(std::vector<std::string>{}),
                        }};
    auto work = [this, spec, caller] { return fleet_.put_node(spec, caller); };
    auto put = co_await net::offload(pool_, std::move(work));
    if (!put) {
        co_return error_reply(put.error());
    }
    auto list_workers = [this] { return fleet_.worker_ids(); };
    auto workers = co_await net::offload(pool_, std::move(list_workers));
    if (!workers) {
        co_return error_reply(workers.error());
    }
    co_return json_reply(put->second ? 201 : 200,
                         json::serialize(machine_json(put->first, *workers)));
}

net::asio::awaitable<net::Response> RestApi::maintenance(std::string name,
                                                         bool on,
                                                         net::Request& request,
                                                         fleet::Caller caller) {
    std::string reason;
    if (on) {
        auto body = Body::parse(request.body, {"reason"});
        if (!body) {
            co_return error_reply(body.error());
        }
        auto given = body->string("reason");
        if (!given || !*given || (*given)->empty()) {
            co_return error_reply(core::Error{core::ErrorCode::kInvalidArgument,
                                              "body field \"reason\" is required"});
        }
        reason = **given;
    }
    auto work = [this, name, on, reason, caller] {
        return on ? fleet_.start_maintenance(name, reason, caller)
                  : fleet_.end_maintenance(name, caller);
    };
    auto node = co_await net::offload(pool_, std::move(work));
    if (!node) {
        co_return error_reply(node.error());
    }
    co_return json_reply(200, json::serialize(node_json(*node)));
}

net::asio::awaitable<net::Response> RestApi::acquire(net::Request& request, fleet::Caller caller) {
    auto body = Body::parse(
        request.body, {"node", "selector", "count", "owner", "ttl", "wait", "exclusive", "reason"});
    if (!body) {
        co_return error_reply(body.error());
    }
    auto node = body->string("node");
    auto selector = body->labels("selector");
    auto count = body->integer("count", 1, 64);
    auto owner = body->string("owner");
    auto ttl = body->duration("ttl");
    auto wait = body->duration("wait");
    auto exclusive = body->boolean("exclusive");
    auto reason = body->string("reason");
    if (auto error = first_error(node, selector, count, owner, ttl, wait, exclusive, reason)) {
        co_return error_reply(*error);
    }
    fleet::AcquireRequest acquire_request{
        .node = node->value_or(""),
        .selector = selector->value_or(core::Labels{}),
        .count = count->value_or(1),
        .owner = owner->value_or(""),
        .reason = reason->value_or(""),
        .ttl = *ttl,
        .exclusive = exclusive->value_or(false),
    };
    auto started =
        co_await waits_.start(acquire_request, wait->value_or(core::Millis{0}), std::move(caller));
    if (!started) {
        co_return error_reply(started.error());
    }
    if (auto* acquired = std::get_if<fleet::Acquired>(&*started)) {
        co_return json_reply(201, json::serialize(lease_set_json(acquired->leases)));
    }
    auto pending = std::get<std::shared_ptr<PendingAcquire>>(*started);
    net::Response response;
    response.content_type = "application/x-ndjson";
    response.stream = [this, pending](net::ResponseStream& stream) {
        return stream_wait(pending, stream);
    };
    co_return response;
}

net::asio::awaitable<bool> RestApi::write_progress(net::ResponseStream& stream,
                                                   const fleet::Waiter& waiter,
                                                   std::chrono::milliseconds elapsed) {
    json::object line{{"waiting", json::object{{"ticket", waiter.ticket},
                                               {"position", waiter.position},
                                               {"elapsed_ms", elapsed.count()}}}};
    co_return co_await stream.write(json::serialize(line) + "\n");
}

net::asio::awaitable<void> RestApi::stream_wait(std::shared_ptr<PendingAcquire> pending,
                                                net::ResponseStream& stream) {
    // The first line says the request is queued, and where.
    if (!co_await write_progress(stream, LeaseWaits::waiter_of(*pending),
                                 std::chrono::milliseconds{0})) {
        co_await waits_.abandon(pending);
        co_return;
    }
    LeaseWaits::Report report = [this, &stream](const fleet::Waiter& waiter,
                                                std::chrono::milliseconds elapsed) {
        return write_progress(stream, waiter, elapsed);
    };
    auto result = co_await waits_.finish(pending, std::move(report));
    if (!result) {
        (void)co_await stream.write(json::serialize(error_json(result.error())) + "\n");
        co_return;
    }
    auto line = json::serialize(json::object{{"lease", lease_set_json(result->leases)}}) + "\n";
    if (!co_await stream.write(std::move(line))) {
        co_await waits_.undeliverable(result->leases);
    }
}

net::asio::awaitable<net::Response> RestApi::list_leases(net::Request& request) {
    std::string owner;
    for (const auto& [key, value] : request.query) {
        if (key != "owner") {
            co_return error_reply(
                core::Error{core::ErrorCode::kInvalidArgument,
                            fmt::format("unknown query parameter \"{}\" (known: owner)", key)});
        }
        owner = value;
    }
    auto work = [this] { return std::pair{fleet_.leases(), fleet_.waiters()}; };
    auto [leases, waiters] = co_await net::offload(pool_, std::move(work));
    if (!leases) {
        co_return error_reply(leases.error());
    }
    if (!waiters) {
        co_return error_reply(waiters.error());
    }
    json::array lease_list;
    for (const auto& group : group_by_id(*leases)) {
        if (owner.empty() || group.front().owner == owner) {
            lease_list.push_back(lease_set_json(group));
        }
    }
    json::array waiter_list;
    for (const auto& waiter : *waiters) {
        if (owner.empty() || waiter.owner == owner) {
            waiter_list.push_back(waiter_json(waiter));
        }
    }
    co_return json_reply(200, json::serialize(json::object{{"leases", std::move(lease_list)},
                                                           {"waiters", std::move(waiter_list)}}));
}

net::asio::awaitable<net::Response> RestApi::renew(std::string id,
                                                   net::Request& request,
                                                   fleet::Caller caller) {
    auto body = Body::parse(request.body, {"ttl"});
    if (!body) {
        co_return error_reply(body.error());
    }
    auto ttl = body->duration("ttl");
    if (!ttl) {
        co_return error_reply(ttl.error());
    }
    auto work = [this, id, ttl = *ttl, caller] { return fleet_.renew(id, ttl, caller); };
    auto renewed = co_await net::offload(pool_, std::move(work));
    if (!renewed) {
        co_return error_reply(renewed.error());
    }
    co_return json_reply(200, json::serialize(lease_set_json(*renewed)));
}

net::asio::awaitable<net::Response> RestApi::release(std::string id, fleet::Caller caller) {
    auto work = [this, id, caller] { return fleet_.release_lease(id, caller); };
    auto released = co_await net::offload(pool_, std::move(work));
    if (!released) {
        co_return error_reply(released.error());
    }
    co_return json_reply(200,
                         json::serialize(json::object{{"released", lease_set_json(*released)}}));
}

net::asio::awaitable<net::Response> RestApi::events(net::Request& request) {
    fleet::EventsQuery query;
    for (const auto& [key, value] : request.query) {
        if (key == "node") {
            query.node = value;
        } else if (key == "cursor") {
            query.cursor = value;
        } else if (key == "since") {
            auto since = core::parse_time(value);
            if (!since) {
                co_return error_reply(core::Error{core::ErrorCode::kInvalidArgument,
                                                  "since: " + since.error().message});
            }
            query.since = *since;
        } else if (key == "limit") {
            int limit = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), limit);
            if (ec != std::errc{} || end != value.data() + value.size() || limit < 1 ||
                limit > 1000) {
                co_return error_reply(core::Error{core::ErrorCode::kInvalidArgument,
                                                  "limit must be an integer from 1 to 1000"});
            }
            query.limit = limit;
        } else {
            co_return error_reply(core::Error{
                core::ErrorCode::kInvalidArgument,
                fmt::format("unknown query parameter \"{}\" (known: node, since, limit, cursor)",
                            key)});
        }
    }
    auto work = [this, query] { return fleet_.events(query); };
    auto page = co_await net::offload(pool_, std::move(work));
    if (!page) {
        co_return error_reply(page.error());
    }
    json::array events;
    for (const auto& event : page->events) {
        events.push_back(event_json(event));
    }
    json::object out{{"events", std::move(events)}};
    out["next_cursor"] =
        page->next_cursor.empty() ? json::value(nullptr) : json::value(page->next_cursor);
    co_return json_reply(200, json::serialize(out));
}

}  // namespace aviary::api
