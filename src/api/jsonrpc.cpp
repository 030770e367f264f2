#include "api/jsonrpc.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/awaitable.hpp>
#include <boost/json.hpp>

#include "api/errors.hpp"

namespace aviary::api {
namespace {

namespace json = boost::json;

json::value result_envelope(json::object result, const json::value& id) {
    return json::object{{"jsonrpc", "2.0"}, {"result", std::move(result)}, {"id", id}};
}

bool valid_id(const json::value& id) {
    return id.is_string() || id.is_number() || id.is_null();
}

}  // namespace

json::value error_envelope(int code,
                           std::string_view message,
                           const json::value& id,
                           std::string_view reason,
                           const json::object& extra) {
    json::object error{{"code", code}, {"message", message}};
    if (!reason.empty() || !extra.empty()) {
        json::object data{{"error", reason}};
        for (const auto& member : extra) {
            data[member.key()] = member.value();
        }
        error["data"] = std::move(data);
    }
    return json::object{{"jsonrpc", "2.0"}, {"error", std::move(error)}, {"id", id}};
}

void JsonRpc::add(std::string name, Method method) {
    methods_.emplace(std::move(name), std::move(method));
}

net::asio::awaitable<std::optional<std::string>> JsonRpc::handle(std::string_view body,
                                                                 CallContext context) {
    json::parse_options options;
    options.max_depth = kMaxDepth;  // invalid UTF-8 is refused by default
    std::error_code ec;
    json::value parsed = json::parse(body, ec, {}, options);
    if (ec) {
        co_return json::serialize(
            error_envelope(kParseError, fmt::format("parse error: {}", ec.message()), nullptr));
    }
    if (!parsed.is_array()) {
        auto reply = co_await call(parsed, context);
        co_return reply ? std::optional<std::string>{json::serialize(*reply)} : std::nullopt;
    }
    const auto& batch = parsed.get_array();
    if (batch.empty()) {
        co_return json::serialize(
            error_envelope(kInvalidRequest, "invalid request: empty batch", nullptr));
    }
    if (batch.size() > kMaxBatch) {
        co_return json::serialize(
            error_envelope(kInvalidRequest,
                           fmt::format("invalid request: batch of {} exceeds the limit of {}",
                                       batch.size(), kMaxBatch),
                           nullptr));
    }
    json::array replies;
    for (const auto& request : batch) {
        if (auto reply = co_await call(request, context)) {
            replies.push_back(std::move(*reply));
        }
    }
    if (replies.empty()) {
        co_return std::nullopt;
    }
    co_return json::serialize(replies);
}

net::asio::awaitable<std::optional<json::value>> JsonRpc::call(const json::value& request,
                                                               const CallContext& context) {
    if (!request.is_object()) {
        co_return error_envelope(kInvalidRequest, "invalid request: expected an object", nullptr);
    }
    const auto& object = request.get_object();
    const json::value* id = object.if_contains("id");
    json::value reply_id = (id != nullptr && valid_id(*id)) ? *id : json::value{nullptr};
    if (id != nullptr && !valid_id(*id)) {
        co_return error_envelope(kInvalidRequest,
                                 "invalid request: id must be a string, a number or null", nullptr);
    }
    // gorilla/rpc's 1.0 clients send no "jsonrpc" member; a wrong one is refused.
    if (const auto* version = object.if_contains("jsonrpc");
        version != nullptr && !(version->is_string() && version->get_string() == "2.0")) {
        co_return error_envelope(kInvalidRequest, "invalid request: jsonrpc must be \"2.0\"",
                                 reply_id);
    }
    const auto* method_name = object.if_contains("method");
    if (method_name == nullptr || !method_name->is_string()) {
        co_return error_envelope(kInvalidRequest, "invalid request: method must be a string",
                                 reply_id);
    }
    std::string_view name = method_name->get_string();
    auto method = methods_.find(name);
    if (method == methods_.end()) {
        if (on_call) {
            on_call("unknown", "method_not_found");
        }
        if (id == nullptr) {
            co_return std::nullopt;
        }
        co_return error_envelope(kMethodNotFound, fmt::format("method not found: {}", name),
                                 reply_id);
    }
    auto params = Params::from(object.if_contains("params"));
    // No co_await inside ?: — GCC 12 miscompiles some of those.
    std::optional<MethodResult> outcome;
    if (params) {
        outcome.emplace(co_await method->second(std::move(*params), context));
    } else {
        outcome.emplace(params.error());
    }
    MethodResult& result = *outcome;
    std::string_view outcome_name = "ok";
    if (!result) {
        outcome_name = result.code() ? std::string_view{result.reason()}
                                     : core::to_string(result.error().code);
    }
    if (on_call) {
        on_call(method->first, outcome_name);
    }
    if (id == nullptr) {
        co_return std::nullopt;  // a notification: no reply, even for an error
    }
    if (!result) {
        co_return error_envelope(result.code().value_or(jsonrpc_code(result.error().code)),
                                 result.error().message, reply_id, outcome_name, result.data());
    }
    co_return result_envelope(std::move(*result), reply_id);
}

}  // namespace aviary::api
