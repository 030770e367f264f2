// The `drivers.helm` section: every key, pools over the defaults, and the errors a typo or a
// value helm would misread gets, read through config::load_string as serve reads them.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "config_support.hpp"

namespace aviary::config {
namespace {

using namespace std::chrono_literals;
using Sets = std::vector<std::pair<std::string, std::string>>;

using test::error_of;

drivers::HelmSettings helm_of(std::string_view yaml) {
    auto loaded = load_string(yaml, "t.yaml");
    EXPECT_TRUE(loaded) << loaded.error().message;
    return loaded ? loaded->drivers.helm : drivers::HelmSettings{};
}

TEST(HelmConfig, TheDefaultsAreTheOriginalsNamespaceAndChart) {
    auto helm = helm_of("");
    EXPECT_EQ(helm.helm, "helm");
    EXPECT_EQ(helm.kubectl, "kubectl");
    EXPECT_EQ(helm.status_timeout, 30s);
    EXPECT_EQ(helm.defaults.namespace_name, "lotus");
    EXPECT_EQ(helm.defaults.chart, "./lotus-fullnode-minimal");
    EXPECT_EQ(helm.defaults.kube_context, "");
    EXPECT_EQ(helm.defaults.kubeconfig, "");
    EXPECT_TRUE(helm.defaults.set.empty());
    EXPECT_EQ(helm.defaults.timeout, 5min);
    EXPECT_TRUE(helm.pools.empty());
}

TEST(HelmConfig, ReadsEveryKeyAndKeepsTheOrderOfSet) {
    auto helm = helm_of(R"(
drivers:
  helm:
    helm: /usr/local/bin/helm
    kubectl: /usr/local/bin/kubectl
    status_timeout: 5s
    namespace: filecoin
    chart: oci://registry.example.org/charts/lotus
    kube_context: prod-eu
    kubeconfig: /etc/aviary/kubeconfig
    set:
      zeta: "1"
      alpha: two words
      persistence.size: 100Gi
      replicas: 3
    timeout: 90s
)");
    EXPECT_EQ(helm.helm, "/usr/local/bin/helm");
    EXPECT_EQ(helm.kubectl, "/usr/local/bin/kubectl");
    EXPECT_EQ(helm.status_timeout, 5s);
    EXPECT_EQ(helm.defaults.namespace_name, "filecoin");
    EXPECT_EQ(helm.defaults.chart, "oci://registry.example.org/charts/lotus");
    EXPECT_EQ(helm.defaults.kube_context, "prod-eu");
    EXPECT_EQ(helm.defaults.kubeconfig, "/etc/aviary/kubeconfig");
    EXPECT_EQ(helm.defaults.set, (Sets{{"zeta", "1"},
                                       {"alpha", "two words"},
                                       {"persistence.size", "100Gi"},
                                       {"replicas", "3"}}));
    EXPECT_EQ(helm.defaults.timeout, 90s);
}

TEST(HelmConfig, APoolStartsFromTheDefaultsWhereverTheyAreWritten) {
    // The pools come first in the file: the defaults below still apply to them.
    auto helm = helm_of(R"(
drivers:
  helm:
    pools:
      - name: eu
        selector: {region: eu}
        kube_context: eu-1
        set: {region: eu}
      - name: canaries
        nodes: [lotus-0, lotus-1]
        namespace: canaries
        timeout: 1m
    namespace: filecoin
    chart: ./chart
    set: {replicas: "1"}
)");
    ASSERT_EQ(helm.pools.size(), 2u);
    const auto& eu = helm.pools[0];
    EXPECT_EQ(eu.name, "eu");
    EXPECT_TRUE(eu.nodes.empty());
    EXPECT_EQ(eu.selector, (core::Labels{{"region", "eu"}}));
    EXPECT_EQ(eu.target.namespace_name, "filecoin");
    EXPECT_EQ(eu.target.chart, "./chart");
    EXPECT_EQ(eu.target.kube_context, "eu-1");
    EXPECT_EQ(eu.target.set, (Sets{{"region", "eu"}}));  // a pool's set replaces the defaults'
    EXPECT_EQ(eu.target.timeout, 5min);
    const auto& canaries = helm.pools[1];
    EXPECT_EQ(canaries.nodes, (std::vector<std::string>{"lotus-0", "lotus-1"}));
    EXPECT_EQ(canaries.target.namespace_name, "canaries");
    EXPECT_EQ(canaries.target.chart, "./chart");
    EXPECT_EQ(canaries.target.kube_context, "");
    EXPECT_EQ(canaries.target.set, (Sets{{"replicas", "1"}}));
    EXPECT_EQ(canaries.target.timeout, 1min);
}

TEST(HelmConfig, UnknownKeysAreErrorsWithASuggestion) {
    EXPECT_EQ(error_of("drivers:\n  helm:\n    namepsace: lotus\n"),
              "aviary.yaml:3:5: drivers.helm.namepsace: unknown key \"namepsace\"; did you mean "
              "\"namespace\"?");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    pools:\n      - {name: a, nodes: [x], chrat: c}\n"),
              "aviary.yaml:4:31: drivers.helm.pools[0].chrat: unknown key \"chrat\"; did you "
              "mean \"chart\"?");
}

TEST(HelmConfig, SetKeysMustNotHoldWhatHelmWouldSplitOn) {
    EXPECT_EQ(error_of("drivers:\n  helm:\n    set:\n      \"a=b\": x\n"),
              "aviary.yaml:4:7: drivers.helm.set.a=b: helm value key \"a=b\" must not contain "
              "'=', ',' or a line break (it is passed as --set KEY=VALUE)");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    set:\n      \"a,b\": x\n"),
              "aviary.yaml:4:7: drivers.helm.set.a,b: helm value key \"a,b\" must not contain "
              "'=', ',' or a line break (it is passed as --set KEY=VALUE)");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    set:\n      a: \"x\\ny\"\n"),
              "aviary.yaml:4:10: drivers.helm.set.a: must not contain a line break");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    set: [a, b]\n"),
              "aviary.yaml:3:10: drivers.helm.set: expected a mapping, got a sequence");
}

TEST(HelmConfig, ValuesHelmWouldMisreadAreRefused) {
    EXPECT_EQ(error_of("drivers:\n  helm:\n    namespace: Lotus_Prod\n"),
              "aviary.yaml:3:16: drivers.helm.namespace: \"Lotus_Prod\" is not a namespace name "
              "(1-63 of a-z, 0-9 and '-', starting and ending with a letter or digit)");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    chart: \"\"\n"),
              "aviary.yaml:3:12: drivers.helm.chart: must not be empty");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    chart: --devel\n"),
              "aviary.yaml:3:12: drivers.helm.chart: \"--devel\" must not start with \"-\" (it "
              "would read as an option)");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    kube_context: \"-x\"\n"),
              "aviary.yaml:3:19: drivers.helm.kube_context: \"-x\" must not start with \"-\" (it "
              "would read as an option)");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    kubeconfig: \"a\\nb\"\n"),
              "aviary.yaml:3:17: drivers.helm.kubeconfig: must not contain a line break");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    helm: \"\"\n"),
              "aviary.yaml:3:11: drivers.helm.helm: must not be empty");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    timeout: soon\n"),
              "aviary.yaml:3:14: drivers.helm.timeout: expected a duration like \"30s\", got "
              "\"soon\" (a number must come first)");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    status_timeout: 0s\n")
                  .rfind("aviary.yaml:3:21: drivers.helm.status_timeout: ", 0),
              0u);
}

TEST(HelmConfig, PoolsNeedANameUniqueAndSomethingToMatch) {
    EXPECT_EQ(error_of("drivers:\n  helm:\n    pools:\n      - {nodes: [lotus-0]}\n"),
              "aviary.yaml:4:9: drivers.helm.pools[0]: a helm pool needs a name");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    pools:\n      - {name: a}\n"),
              "aviary.yaml:4:9: drivers.helm.pools[0]: a helm pool needs nodes or a selector (it "
              "would match no node)");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    pools:\n      - {name: a, nodes: [x]}\n"
                       "      - {name: a, nodes: [y]}\n"),
              "aviary.yaml:5:16: drivers.helm.pools[1].name: helm pool \"a\" is declared twice "
              "(first at line 4)");
    EXPECT_EQ(error_of("drivers:\n  helm:\n    pools:\n      - {name: a, nodes: [Bad_Node]}\n"),
              "aviary.yaml:4:27: drivers.helm.pools[0].nodes[0]: \"Bad_Node\" is not a node name "
              "(1-63 of a-z, 0-9 and '-', starting and ending with a letter or digit)");
}

TEST(HelmConfig, ANodeMayUseTheHelmDriver) {
    auto loaded = load_string(R"(
fleet:
  nodes:
    - {name: lotus-0, driver: helm, image_tag: v1.0.0}
drivers:
  helm:
    namespace: canaries
)",
                              "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->fleet.nodes.at(0).driver, "helm");
    EXPECT_EQ(loaded->drivers.helm.defaults.namespace_name, "canaries");
}

}  // namespace
}  // namespace aviary::config
