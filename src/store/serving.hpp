#pragma once
// Private to src/store and its unit tests: the first-come-first-served decision, in plain C++
// so every backend takes it the same way. A backend loads the pool and the waiting waiters
// inside its write transaction, asks a Plan, and writes what it decides (on SQLite the single
// writer makes that read-decide-write atomic; PostgreSQL will lock the rows it read).
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/core.hpp"
#include "store/store.hpp"

namespace aviary::store::serving {

/// Nodes `request` could ever use, in name order: the named node if it exists, or every node
/// whose labels match the selector, whatever its state (a leased node or one in maintenance
/// may come back). `pool` is sorted by name.
std::vector<std::string> candidates(const LeaseRequest& request,
                                    const std::vector<core::Node>& pool);

/// True when two name-sorted lists share a node.
bool overlaps(const std::vector<std::string>& a, const std::vector<std::string>& b);

/// "chain=lotus,zone=eu": how refusals name a selector.
std::string describe(const core::Labels& selector);

/// One walk down the queue. Each request asks in turn, in serving order: it gets all its
/// nodes now, or none, and then every node it could use is held back from those after it.
/// That is the whole fairness rule: nobody is overtaken for a node they could use, and as
/// grants are all or nothing, two waiters for overlapping sets never hold half each.
class Plan {
public:
    /// `pool` (sorted by name) as it is now; it must outlive the plan.
    explicit Plan(const std::vector<core::Node>& pool);

    /// The nodes `request` gets now (marked taken), or nullopt (its nodes are held back).
    std::optional<std::vector<std::string>> next(const LeaseRequest& request);

private:
    /// False for a gated node whose gate has not passed (or whose pass a lease used up).
    bool gate_passed(const std::string& name, core::TimePoint now) const;

    const std::vector<core::Node>& pool_;
    std::set<std::string, std::less<>> usable_;  // free, in service, not given or held back
};

/// How a refused request stands in `pool`: matching, leased and in-maintenance counts and
/// the holders of a named node. waiters_ahead is left for the caller.
Refusal refusal_for(const LeaseRequest& request, const std::vector<core::Node>& pool);

}  // namespace aviary::store::serving
