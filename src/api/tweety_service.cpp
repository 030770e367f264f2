#include "api/tweety_service.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

namespace aviary::api {
namespace {

namespace json = boost::json;

json::object lease_fields(const core::Lease& lease) {
    return json::object{
        {"node", lease.node},
        {"owner", lease.owner},
        {"lease_id", lease.id},
        {"reason", lease.reason},
        {"acquired_at", core::format_time(lease.acquired_at)},
        {"expires_at", core::format_time(lease.expires_at)},
    };
}

json::object node_fields(const core::Node& node) {
    json::object labels;
    for (const auto& [key, value] : node.spec.labels) {
        labels[key] = value;
    }
    json::object out{
        {"node", node.spec.name},
        {"state", core::to_string(node.state)},
        {"driver", node.spec.driver},
        {"image_tag", node.spec.image_tag},
        {"labels", std::move(labels)},
        {"note", node.spec.note},
        {"holder", node.lease ? json::value(node.lease->owner) : json::value(nullptr)},
        {"since", node.lease ? json::value(core::format_time(node.lease->acquired_at))
                             : json::value(nullptr)},
        {"until", node.lease ? json::value(core::format_time(node.lease->expires_at))
                             : json::value(nullptr)},
    };
    if (node.lease) {
        out["lease_id"] = node.lease->id;
        out["reason"] = node.lease->reason;
    }
    if (node.state == core::NodeState::kMaintenance) {
        out["maintenance_reason"] = node.maintenance_reason;
    }
    return out;
}

std::string node_summary(const core::Node& node) {
    if (node.lease) {
        return fmt::format("{} leased by {} until {}", node.spec.name, node.lease->owner,
                           core::format_time(node.lease->expires_at));
    }
    if (node.state == core::NodeState::kMaintenance) {
        return fmt::format("{} in maintenance: {}", node.spec.name, node.maintenance_reason);
    }
    return fmt::format("{} free", node.spec.name);
}

json::object ended_lease_result(std::string_view node,
                                const std::optional<core::Lease>& ended,
                                std::string_view verb) {
    json::object out{{"node", node}, {verb, ended.has_value()}};
    if (ended) {
        out["Result"] = fmt::format("{} {} (was held by {})", node, verb, ended->owner);
        out["lease"] = lease_fields(*ended);
    } else {
        out["Result"] = fmt::format("{} was not leased", node);
    }
    return out;
}

}  // namespace

void TweetyService::register_methods(JsonRpc& rpc) {
    rpc.add("TweetyService.Acquire",
            [this](Params p, CallContext c) { return acquire(std::move(p), std::move(c)); });
    rpc.add("TweetyService.Release",
            [this](Params p, CallContext c) { return release(std::move(p), std::move(c)); });
    rpc.add("TweetyService.Free",
            [this](Params p, CallContext c) { return free(std::move(p), std::move(c)); });
    rpc.add("TweetyService.Status",
            [this](Params p, CallContext c) { return status(std::move(p), std::move(c)); });
    for (std::string name : {"Upgrade", "InstallSnapshot", "CreateCanary", "DeleteCanary"}) {
        rpc.add("TweetyService." + name, [this, name](Params p, CallContext) {
            return not_yet("TweetyService." + name, std::move(p));
        });
    }
}

net::asio::awaitable<MethodResult> TweetyService::acquire(Params params, CallContext context) {
    auto node = params.required_string("ReleaseName");
    auto owner = params.required_string("Owner");
    auto reason = params.optional_string("Reason");
    auto ttl = params.optional_duration("TTL");
    for (const core::Error* error :
         {node ? nullptr : &node.error(), owner ? nullptr : &owner.error(),
          reason ? nullptr : &reason.error(), ttl ? nullptr : &ttl.error()}) {
        if (error != nullptr) {
            co_return *error;
        }
    }
    fleet::AcquireRequest request{
        .node = *node, .owner = *owner, .reason = reason->value_or(""), .ttl = *ttl};
    auto work = [this, request, caller = context.caller] {
        return fleet_.acquire(request, caller);
    };
    auto attempt = co_await net::offload(pool_, std::move(work));
    if (!attempt) {
        co_return attempt.error();
    }
    auto out = lease_fields(attempt->lease);
    out["renewed"] = attempt->renewed;
    out["Result"] = fmt::format("{} {} by {} until {}", attempt->lease.node,
                                attempt->renewed ? "renewed" : "acquired", attempt->lease.owner,
                                core::format_time(attempt->lease.expires_at));
    co_return out;
}

net::asio::awaitable<MethodResult> TweetyService::release(Params params, CallContext context) {
    auto node = params.required_string("ReleaseName");
    if (!node) {
        co_return node.error();
    }
    auto owner = params.optional_string("Owner");
    if (!owner) {
        co_return owner.error();
    }
    auto work = [this, name = *node, who = owner->value_or(""), caller = context.caller] {
        return fleet_.release(name, who, caller);
    };
    auto released = co_await net::offload(pool_, std::move(work));
    if (!released) {
        co_return released.error();
    }
    co_return ended_lease_result(*node, *released, "released");
}

net::asio::awaitable<MethodResult> TweetyService::free(Params params, CallContext context) {
    auto node = params.required_string("ReleaseName");
    auto owner = params.optional_string("Owner");
    auto force = params.optional_bool("Force");
    for (const core::Error* error :
         {node ? nullptr : &node.error(), owner ? nullptr : &owner.error(),
          force ? nullptr : &force.error()}) {
        if (error != nullptr) {
            co_return *error;
        }
    }
    auto work = [this, name = *node, who = owner->value_or(""), forced = force->value_or(false),
                 caller = context.caller] { return fleet_.free(name, who, forced, caller); };
    auto freed = co_await net::offload(pool_, std::move(work));
    if (!freed) {
        co_return freed.error();
    }
    co_return ended_lease_result(*node, *freed, "freed");
}

net::asio::awaitable<MethodResult> TweetyService::status(Params params, CallContext) {
    auto only = params.optional_string("ReleaseName");
    if (!only) {
        co_return only.error();
    }
    std::vector<core::Node> nodes;
    if (*only) {
        auto work = [this, name = **only] { return fleet_.node(name); };
        auto node = co_await net::offload(pool_, std::move(work));
        if (!node) {
            co_return node.error();
        }
        nodes.push_back(std::move(*node));
    } else {
        auto work = [this] { return fleet_.nodes(); };
        auto all = co_await net::offload(pool_, std::move(work));
        if (!all) {
            co_return all.error();
        }
        nodes = std::move(*all);
    }
    json::array rendered;
    std::vector<std::string> summaries;
    for (const auto& node : nodes) {
        rendered.push_back(node_fields(node));
        summaries.push_back(node_summary(node));
    }
    co_return json::object{{"Result", fmt::format("{}", fmt::join(summaries, "; "))},
                           {"nodes", std::move(rendered)}};
}

net::asio::awaitable<MethodResult> TweetyService::not_yet(std::string method, Params params) {
    auto node = params.required_string("ReleaseName");
    if (!node) {
        co_return node.error();
    }
    co_return core::Error{core::ErrorCode::kUnimplemented,
                          fmt::format("{} is not available yet: node actions run as durable jobs, "
                                      "which arrive in a later release of aviary",
                                      method)};
}

}  // namespace aviary::api
