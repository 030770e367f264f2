#include "store/serving.hpp"

#include <algorithm>

namespace aviary::store::serving {

std::vector<std::string> candidates(const LeaseRequest& request,
                                    const std::vector<core::Node>& pool) {
    std::vector<std::string> names;
    for (const auto& node : pool) {
        bool wanted = request.node.empty() ? core::labels_match(node.spec.labels, request.selector)
                                           : node.spec.name == request.node;
        if (wanted) {
            names.push_back(node.spec.name);
        }
    }
    return names;
}

bool overlaps(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    auto i = a.begin();
    auto j = b.begin();
    while (i != a.end() && j != b.end()) {
        if (*i == *j) {
            return true;
        }
        *i < *j ? ++i : ++j;
    }
    return false;
}

std::string describe(const core::Labels& selector) {
    std::string out;
    for (const auto& [key, value] : selector) {
        out += (out.empty() ? "" : ",") + key + "=" + value;
    }
    return out;
}

Plan::Plan(const std::vector<core::Node>& pool) : pool_(pool) {
    for (const auto& node : pool_) {
        if (node.state == core::NodeState::kFree) {
            usable_.insert(node.spec.name);
        }
    }
}

bool Plan::gate_passed(const std::string& name, core::TimePoint now) const {
    auto node = std::lower_bound(
        pool_.begin(), pool_.end(), name,
        [](const core::Node& n, const std::string& key) { return n.spec.name < key; });
    return node == pool_.end() || node->spec.name != name || !node->gate_until ||
           *node->gate_until > now;
}

std::optional<std::vector<std::string>> Plan::next(const LeaseRequest& request) {
    auto wanted = candidates(request, pool_);
    std::vector<std::string> free;
    for (const auto& name : wanted) {
        if (usable_.contains(name) && (!request.node.empty() || gate_passed(name, request.now))) {
            free.push_back(name);
        }
    }
    auto count = static_cast<std::size_t>(request.node.empty() ? request.count : 1);
    if (free.size() >= count) {
        free.resize(count);
        for (const auto& name : free) {
            usable_.erase(name);
        }
        return free;
    }
    // Still waiting: what it could use is kept for it, even the nodes free now (taking them
    // would let a later, smaller request overtake it again and again).
    for (const auto& name : wanted) {
        usable_.erase(name);
    }
    return std::nullopt;
}

Refusal refusal_for(const LeaseRequest& request, const std::vector<core::Node>& pool) {
    Refusal refusal;
    auto wanted = candidates(request, pool);
    refusal.matching = static_cast<int>(wanted.size());
    for (const auto& node : pool) {
        if (!std::binary_search(wanted.begin(), wanted.end(), node.spec.name)) {
            continue;
        }
        if (node.state == core::NodeState::kMaintenance) {
            ++refusal.maintenance;
        } else if (node.state == core::NodeState::kFree && request.node.empty() &&
                   node.gate_until && *node.gate_until <= request.now) {
            ++refusal.gating;
        } else if (node.state == core::NodeState::kLeased) {
            ++refusal.leased;
            if (!request.node.empty() && node.lease) {
                refusal.holders.push_back(*node.lease);
            }
        }
    }
    return refusal;
}

}  // namespace aviary::store::serving
