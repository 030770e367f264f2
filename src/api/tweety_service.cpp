#include "api/tweety_service.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include "api/errors.hpp"
#include "api/render.hpp"

namespace aviary::api {
namespace {

namespace json = boost::json;

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
        out["lease"] = lease_json(*ended);
    } else {
        out["Result"] = fmt::format("{} was not leased", node);
    }
    return out;
}

net::asio::awaitable<bool> keep_waiting() {
    co_return true;
}

json::object acquired_result(const fleet::Acquired& acquired) {
    const auto& lease = acquired.leases.front();
    auto out = lease_json(lease);
    out["renewed"] = acquired.renewed;
    out["Result"] =
        fmt::format("{} {} by {} until {}", lease.node, acquired.renewed ? "renewed" : "acquired",
                    lease.owner, core::format_time(lease.expires_at));
    return out;
}

struct ActionMethod {
    std::string method;
    TweetyService::NodeAction call;
};

std::vector<ActionMethod> action_methods() {
    return {
        {"TweetyService.Upgrade", {.action = "upgrade", .tagged = true}},
        {"TweetyService.InstallSnapshot", {.action = "install-snapshot", .tagged = true}},
        {"TweetyService.CreateCanary", {.action = "create-canary", .tagged = true}},
        {"TweetyService.DeleteCanary", {.action = "delete-canary", .tagged = false}},
    };
}

/// [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}: what the actions' image_tag params accept. Checked here
/// too so the refusal names the tweety field (ImageTag), not the action's param.
bool is_image_tag(std::string_view tag) {
    auto word = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_';
    };
    if (tag.empty() || tag.size() > 128 || !word(tag.front())) {
        return false;
    }
    return std::all_of(tag.begin(), tag.end(),
                       [&](char c) { return word(c) || c == '.' || c == '-'; });
}

/// "upgrade of lotus-0 to v1.2.2", "delete-canary of lotus-0".
std::string describe(const core::Job& job) {
    auto tag = job.params.find("tag");
    if (tag == job.params.end()) {
        return fmt::format("{} of {}", job.action, job.node);
    }
    return fmt::format("{} of {} to {}", job.action, job.node, tag->second);
}

std::string_view outcome(core::JobState state) {
    switch (state) {
        case core::JobState::kSucceeded:
            return "succeeded";
        case core::JobState::kTimedOut:
            return "timed out";
        case core::JobState::kCancelled:
            return "was cancelled";
        default:
            return "failed";
    }
}

json::object job_reply(std::string result, const core::Job& job) {
    return json::object{{"Result", std::move(result)},
                        {"JobID", job.id},
                        {"State", core::to_string(job.state)},
                        {"Job", job_json(job)}};
}

/// The reply to a Wait whose job finished: the job, or error -32011 carrying it.
MethodResult finished_reply(const core::Job& job) {
    if (job.state == core::JobState::kSucceeded) {
        return job_reply(fmt::format("{} succeeded", describe(job)), job);
    }
    auto message = fmt::format("{} {}", describe(job), outcome(job.state));
    if (!job.error.empty()) {
        message += ": " + job.error;
    }
    return MethodResult::custom_error(
        core::Error{core::ErrorCode::kInternal, std::move(message)}, kJobFailedCode, "job_failed",
        json::object{
            {"JobID", job.id}, {"State", core::to_string(job.state)}, {"job", job_json(job)}});
}

/// A node action call's params, checked: what to submit, and whether to wait.
struct ActionCall {
    jobs::SubmitRequest request;
    bool wait = false;
};

core::Result<ActionCall> parse_action_call(const TweetyService::NodeAction& call,
                                           const Params& params) {
    auto node = params.required_string("ReleaseName");
    auto owner = params.optional_string("Owner");
    auto reason = params.optional_string("Reason");
    auto ttl = params.optional_duration("TTL");
    auto wait = params.optional_bool("Wait");
    for (const core::Error* error :
         {node ? nullptr : &node.error(), owner ? nullptr : &owner.error(),
          reason ? nullptr : &reason.error(), ttl ? nullptr : &ttl.error(),
          wait ? nullptr : &wait.error()}) {
        if (error != nullptr) {
            return *error;
        }
    }
    // The release name reaches helm and the driver: refuse anything but a DNS-1123 label here,
    // before it could name a node at all ("lotus-0;touch X").
    if (!core::is_dns_label(*node)) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("invalid params: ReleaseName must be a DNS-1123 label "
                                       "(a-z, 0-9, -), got \"{}\"",
                                       *node)};
    }
    ActionCall out{.request = {.action = call.action,
                               .node = *node,
                               .owner = owner->value_or(""),
                               .lease_ttl = *ttl,
                               .reason = reason->value_or("")},
                   .wait = wait->value_or(false)};
    if (call.tagged) {
        auto tag = params.required_string("ImageTag");
        if (!tag) {
            return tag.error();
        }
        if (!is_image_tag(*tag)) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("invalid params: ImageTag must be an image tag "
                                           "([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}), got \"{}\"",
                                           *tag)};
        }
        out.request.params.emplace("tag", *tag);
    }
    return out;
}

/// The answer at once: the job as queued (or the active job it duplicates).
json::object queued_reply(const core::Job& job, bool duplicate) {
    auto sentence = duplicate ? fmt::format("{} is already {} as job {}", describe(job),
                                            core::to_string(job.state), job.id)
                              : fmt::format("{} queued as job {}", describe(job), job.id);
    return job_reply(std::move(sentence), job);
}

/// Adds what the submission itself did: Duplicate, and the implicit acquire's Lease.
json::object with_submission(json::object reply, const jobs::Submitted& submitted) {
    reply["Duplicate"] = submitted.duplicate;
    if (submitted.lease) {
        reply["Lease"] = lease_json(*submitted.lease);
    }
    return reply;
}

}  // namespace

void TweetyService::register_methods(JsonRpc& rpc) {
    rpc.add("TweetyService.Acquire",
            [this](Params p, CallContext c) { return acquire(std::move(p), std::move(c)); });
    rpc.add("TweetyService.Release",
            [this](Params p, CallContext c) { return release(std::move(p), std::move(c)); });
    rpc.add("TweetyService.Renew",
            [this](Params p, CallContext c) { return renew(std::move(p), std::move(c)); });
    rpc.add("TweetyService.Free",
            [this](Params p, CallContext c) { return free(std::move(p), std::move(c)); });
    rpc.add("TweetyService.Status",
            [this](Params p, CallContext c) { return status(std::move(p), std::move(c)); });
    for (auto& entry : action_methods()) {
        rpc.add(entry.method, [this, call = entry.call](Params p, CallContext c) {
            return node_action(call, std::move(p), std::move(c));
        });
    }
    rpc.add("TweetyService.JobStatus",
            [this](Params p, CallContext c) { return job_status(std::move(p), std::move(c)); });
}

/// Not a coroutine: the params are read here, and only a well-formed call gets a frame. A
/// coroutine's frame holds the locals of all its paths, and one past asio's 1,020-byte frame
/// cache costs a large malloc per call (release() is written the same way).
net::asio::awaitable<MethodResult> TweetyService::acquire(Params params, CallContext context) {
    auto node = params.required_string("ReleaseName");
    auto owner = params.optional_string("Owner");
    auto reason = params.optional_string("Reason");
    auto ttl = params.optional_duration("TTL");
    auto wait = params.optional_duration("Wait");
    auto exclusive = params.optional_bool("Exclusive");
    for (const core::Error* error :
         {node ? nullptr : &node.error(), owner ? nullptr : &owner.error(),
          reason ? nullptr : &reason.error(), ttl ? nullptr : &ttl.error(),
          wait ? nullptr : &wait.error(), exclusive ? nullptr : &exclusive.error()}) {
        if (error != nullptr) {
            return net::ready(MethodResult{*error});
        }
    }
    // The original required Owner; with a token it defaults to the token's identity.
    if (!*owner && context.caller.identity.empty()) {
        return net::ready(MethodResult{
            core::Error{core::ErrorCode::kInvalidArgument, "invalid params: Owner is required"}});
    }
    fleet::AcquireRequest request{.node = std::move(*node),
                                  .owner = owner->value_or(""),
                                  .reason = reason->value_or(""),
                                  .ttl = *ttl,
                                  .exclusive = exclusive->value_or(false)};
    return acquire_lease(std::move(request), wait->value_or(core::Millis{0}),
                         std::move(context.caller));
}

net::asio::awaitable<MethodResult> TweetyService::acquire_lease(fleet::AcquireRequest request,
                                                                core::Millis wait,
                                                                fleet::Caller caller) {
    auto started = co_await waits_.start(std::move(request), wait, caller);
    if (!started) {
        co_return started.error();
    }
    if (auto* now = std::get_if<fleet::Acquired>(&*started)) {
        co_return acquired_result(*now);
    }
    co_return co_await held_acquire(std::get<std::shared_ptr<PendingAcquire>>(std::move(*started)));
}

/// Held open without progress lines: JSON-RPC has one reply. The deadline bounds it.
net::asio::awaitable<MethodResult> TweetyService::held_acquire(
    std::shared_ptr<PendingAcquire> pending) {
    LeaseWaits::Report hold = [](const fleet::Waiter&, std::chrono::milliseconds) {
        return keep_waiting();
    };
    auto served = co_await waits_.finish(std::move(pending), std::move(hold));
    if (!served) {
        co_return served.error();
    }
    co_return acquired_result(*served);
}

net::asio::awaitable<MethodResult> TweetyService::release(Params params, CallContext context) {
    auto lease_id = params.optional_string("LeaseID");
    if (!lease_id) {
        return net::ready(MethodResult{lease_id.error()});
    }
    if (*lease_id) {
        return release_by_id(std::move(**lease_id), std::move(context.caller));
    }
    auto node = params.required_string("ReleaseName");
    if (!node) {
        return net::ready(MethodResult{node.error()});
    }
    auto owner = params.optional_string("Owner");
    if (!owner) {
        return net::ready(MethodResult{owner.error()});
    }
    auto who = owner->value_or(context.caller.identity);
    if (fleet_.release_needs_read(who, context.caller)) {
        return release_after_read(std::move(*node), std::move(who), std::move(context.caller));
    }
    return release_by_node(std::move(*node), std::move(who), std::move(context.caller));
}

net::asio::awaitable<MethodResult> TweetyService::release_by_id(std::string id,
                                                                fleet::Caller caller) {
    // Copies for the pool thread, which may outlive this frame if the server stops.
    auto work = [this, id = std::move(id), caller = std::move(caller)] {
        return fleet_.release_lease(id, caller);
    };
    auto released = co_await net::offload(pool_, std::move(work));
    if (!released) {
        co_return released.error();
    }
    co_return ended_lease_result(released->front().node, released->front(), "released");
}

/// A release the store can decide alone: no thread waits on the commit, the answer comes from
/// the store's writer thread.
net::asio::awaitable<MethodResult> TweetyService::release_by_node(std::string node,
                                                                  std::string who,
                                                                  fleet::Caller caller) {
    auto start = [this, &node, &who, &caller](fleet::Fleet::ReleasedCallback done) {
        fleet_.release_async(node, who, caller, std::move(done));
    };
    auto released =
        co_await net::await_answer<core::Result<std::optional<core::Lease>>>(std::move(start));
    if (!released) {
        co_return released.error();
    }
    co_return ended_lease_result(node, *released, "released");
}

/// A release that needs a read first (fleet::Fleet::release_needs_read), on the pool.
net::asio::awaitable<MethodResult> TweetyService::release_after_read(std::string node,
                                                                     std::string who,
                                                                     fleet::Caller caller) {
    // Copies for the pool thread, which may outlive this frame if the server stops.
    auto work = [this, node, who = std::move(who), caller = std::move(caller)] {
        return fleet_.release(node, who, caller);
    };
    auto released = co_await net::offload(pool_, std::move(work));
    if (!released) {
        co_return released.error();
    }
    co_return ended_lease_result(node, *released, "released");
}

net::asio::awaitable<MethodResult> TweetyService::renew(Params params, CallContext context) {
    auto lease_id = params.required_string("LeaseID");
    auto ttl = params.optional_duration("TTL");
    if (!lease_id) {
        co_return lease_id.error();
    }
    if (!ttl) {
        co_return ttl.error();
    }
    auto work = [this, id = *lease_id, ttl = *ttl, caller = context.caller] {
        return fleet_.renew(id, ttl, caller);
    };
    auto renewed = co_await net::offload(pool_, std::move(work));
    if (!renewed) {
        co_return renewed.error();
    }
    auto out = lease_set_json(*renewed);
    out["Result"] = fmt::format("lease {} renewed until {}", *lease_id,
                                core::format_time(renewed->front().expires_at));
    co_return out;
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
    auto work = [this, name = *node, who = owner->value_or(context.caller.identity),
                 forced = force->value_or(false),
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
        rendered.push_back(node_json(node));
        summaries.push_back(node_summary(node));
    }
    co_return json::object{{"Result", fmt::format("{}", fmt::join(summaries, "; "))},
                           {"nodes", std::move(rendered)}};
}

net::asio::awaitable<MethodResult> TweetyService::node_action(NodeAction call,
                                                              Params params,
                                                              CallContext context) {
    auto parsed = parse_action_call(call, params);
    if (!parsed) {
        co_return parsed.error();
    }
    auto submitted = co_await job_waits_.engine().submit(parsed->request, context.caller);
    if (!submitted) {
        co_return submitted.error();
    }
    if (!parsed->wait) {
        co_return with_submission(queued_reply(submitted->job, submitted->duplicate), *submitted);
    }
    const auto& job = submitted->job;
    auto finished = co_await job_waits_.until_finished(job.id, job_waits_.wait_limit(job));
    if (!finished) {
        co_return finished.error();
    }
    auto reply = finished_reply(*finished);
    if (reply) {
        *reply = with_submission(std::move(*reply), *submitted);
    }
    co_return reply;
}

net::asio::awaitable<MethodResult> TweetyService::job_status(Params params, CallContext) {
    auto id = params.required_string("JobID");
    if (!id) {
        co_return id.error();
    }
    auto work = [this, id = *id] { return job_waits_.engine().job(id); };
    auto job = co_await net::offload(pool_, std::move(work));
    if (!job) {
        co_return job.error();
    }
    co_return json::object{{"Result", core::to_string(job->state)},
                           {"JobID", job->id},
                           {"State", core::to_string(job->state)},
                           {"Job", job_json(*job)}};
}

}  // namespace aviary::api
