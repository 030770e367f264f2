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

}  // namespace
}  // namespace aviary::store::serving
