#include "store/sqlite/encoding.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>

namespace aviary::store::sqlite {
namespace {

boost::json::object labels_object(const core::Labels& labels) {
    boost::json::object out;
    for (const auto& [key, value] : labels) {
        out.emplace(key, value);
    }
    return out;
}

core::Error corrupt_labels(std::string_view text) {
    return core::Error{core::ErrorCode::kStorage,
                       fmt::format("stored labels are not a JSON object of strings: {}", text)};
}

}  // namespace

std::string labels_to_json(const core::Labels& labels) {
    return boost::json::serialize(labels_object(labels));
}

core::Result<core::Labels> labels_from_json(std::string_view text) {
    boost::system::error_code ec;
    auto parsed = boost::json::parse(text, ec);
    if (ec || !parsed.is_object()) {
        return corrupt_labels(text);
    }
    core::Labels labels;
    for (const auto& [key, value] : parsed.get_object()) {
        if (!value.is_string()) {
            return corrupt_labels(text);
        }
        labels.emplace(std::string{key}, std::string{value.get_string()});
    }
    return labels;
}

std::string lease_to_json(const core::Lease& lease) {
    return boost::json::serialize(boost::json::object{
        {"lease_id", lease.id},
        {"owner", lease.owner},
        {"reason", lease.reason},
        {"acquired_at", core::format_time(lease.acquired_at)},
        {"expires_at", core::format_time(lease.expires_at)},
        {"exclusive", lease.exclusive},
    });
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
    return boost::json::serialize(boost::json::object{
        {"name", spec.name},
        {"driver", spec.driver},
        {"image_tag", spec.image_tag},
        {"labels", labels_object(spec.labels)},
        {"note", spec.note},
    });
}

}  // namespace aviary::store::sqlite
