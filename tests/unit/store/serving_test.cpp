#include "store/serving.hpp"

#include <gtest/gtest.h>

namespace aviary::store::serving {
namespace {

using Names = std::vector<std::string>;

core::Node node(std::string name,
                core::NodeState state,
                core::Labels labels = {{"chain", "lotus"}}) {
    core::Node out;
    out.spec.name = std::move(name);
    out.spec.labels = std::move(labels);
    out.state = state;
    return out;
}

LeaseRequest named(std::string name) {
    return LeaseRequest{.node = std::move(name)};
}

LeaseRequest lotus(int count) {
    return LeaseRequest{.selector = {{"chain", "lotus"}}, .count = count};
}

TEST(ServingPlan, GrantsTheFirstFreeMatchingNodesByName) {
    std::vector<core::Node> pool{
        node("lotus-0", core::NodeState::kLeased), node("lotus-1", core::NodeState::kFree),
        node("lotus-2", core::NodeState::kFree), node("lotus-3", core::NodeState::kFree)};
    Plan plan{pool};
    EXPECT_EQ(plan.next(lotus(2)), (Names{"lotus-1", "lotus-2"}));
    EXPECT_EQ(plan.next(lotus(1)), (Names{"lotus-3"}));
    EXPECT_EQ(plan.next(lotus(1)), std::nullopt);
}

TEST(ServingPlan, AnUnservedRequestHoldsBackEveryNodeItCouldUse) {
    std::vector<core::Node> pool{node("geth-0", core::NodeState::kFree, {{"chain", "geth"}}),
                                 node("lotus-0", core::NodeState::kLeased),
                                 node("lotus-1", core::NodeState::kFree)};
    Plan plan{pool};
    EXPECT_EQ(plan.next(lotus(2)), std::nullopt);
    EXPECT_EQ(plan.next(named("lotus-1")), std::nullopt);      // free, but owed to the first
    EXPECT_EQ(plan.next(named("geth-0")), (Names{"geth-0"}));  // the first could not use it
}

TEST(ServingPlan, MaintenanceNodesMatchButAreNeverGranted) {
    std::vector<core::Node> pool{node("lotus-0", core::NodeState::kMaintenance),
                                 node("lotus-1", core::NodeState::kFree)};
    EXPECT_EQ(candidates(lotus(1), pool), (Names{"lotus-0", "lotus-1"}));
    Plan plan{pool};
    EXPECT_EQ(plan.next(named("lotus-0")), std::nullopt);  // holds back lotus-0 only
    EXPECT_EQ(plan.next(lotus(1)), (Names{"lotus-1"}));
}

TEST(ServingPlan, RefusalCountsMatchingLeasedAndMaintenanceNodes) {
    std::vector<core::Node> pool{node("lotus-0", core::NodeState::kLeased),
                                 node("lotus-1", core::NodeState::kMaintenance),
                                 node("lotus-2", core::NodeState::kFree)};
    auto refusal = refusal_for(lotus(2), pool);
    EXPECT_EQ(refusal.matching, 3);
    EXPECT_EQ(refusal.leased, 1);
    EXPECT_EQ(refusal.maintenance, 1);
    EXPECT_EQ(describe({{"chain", "lotus"}, {"net", "calibnet"}}), "chain=lotus,net=calibnet");
}

TEST(ServingPlan, OverlapsComparesSortedNames) {
    EXPECT_TRUE(overlaps({"a", "c", "e"}, {"b", "e"}));
    EXPECT_FALSE(overlaps({"a", "c"}, {"b", "d"}));
    EXPECT_FALSE(overlaps({}, {"a"}));
}

TEST(ServingPlan, AGatedNodeGoesToASelectorOnlyWhileItsGatePasses) {
    const core::TimePoint now{std::chrono::hours{1000}};
    auto passed = node("lotus-0", core::NodeState::kFree);
    passed.gate_until = now + std::chrono::minutes{5};
    auto used_up = node("lotus-1", core::NodeState::kFree);
    used_up.gate_until = core::TimePoint{};  // a lease used its pass; not passed since
    auto lapsed = node("lotus-2", core::NodeState::kFree);
    lapsed.gate_until = now;  // its pass ran out this instant
    auto ungated = node("lotus-3", core::NodeState::kFree);
    std::vector<core::Node> pool{passed, used_up, lapsed, ungated};
    auto at_now = [&](LeaseRequest r) {
        r.now = now;
        return r;
    };
    Plan plan{pool};
    EXPECT_EQ(plan.next(at_now(lotus(2))), (Names{"lotus-0", "lotus-3"}));
    EXPECT_EQ(plan.next(at_now(lotus(1))), std::nullopt) << "the others have not passed";

    // A named acquire is a person choosing that node: the gate is for selectors only.
    Plan named_plan{pool};
    EXPECT_EQ(named_plan.next(at_now(named("lotus-1"))), (Names{"lotus-1"}));

    auto refusal = refusal_for(at_now(lotus(4)), pool);
    EXPECT_EQ(refusal.matching, 4);
    EXPECT_EQ(refusal.gating, 2);
    EXPECT_EQ(refusal.maintenance, 0);
}

}  // namespace
}  // namespace aviary::store::serving
