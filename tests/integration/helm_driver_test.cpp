// The helm driver through the real binary: `aviary serve` with nodes `driver: helm`, the fake
// helm and kubectl of tests/support/fake_kube first on serve's PATH (no cluster
// here). tweety's Upgrade, InstallSnapshot, CreateCanary and DeleteCanary over JSON-RPC run
// exactly the commands of docs/drivers.md in order; each failure gives a job whose error carries
// the classified message; a hung helm is ended with its whole process group.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "integration/rpc_helpers.hpp"
#include "support/process_groups.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using Argv = std::vector<std::string>;

const std::string kFakes = std::string{AVIARY_SOURCE_DIR} + "/tests/support/fake_kube";

/// Two helm nodes and fast waits. `drivers_helm` is the body of drivers.helm (indented four
/// spaces), `actions` more actions under jobs.actions (indented four spaces).
std::string helm_config(std::string_view drivers_helm = "", std::string_view actions = "") {
    return fmt::format(R"(fleet:
  expiry_sweep: 50ms
  wait_heartbeat: 100ms
  nodes:
    - {{name: lotus-0, driver: helm, image_tag: v1.0.0, labels: {{region: us}}}}
    - {{name: lotus-1, driver: helm, image_tag: v1.0.0, labels: {{region: eu}}}}
server:
  shutdown_grace: 10s
  read_timeout: 5s
  idle_timeout: 5s
drivers:
  helm:
    status_timeout: 10s
{}jobs:
  actions:
{})",
                       drivers_helm, actions);
}

/// The fakes first on PATH and their state in a temp dir, for serve to inherit.
class FakeKube {
public:
    FakeKube() : old_path_(::getenv("PATH") != nullptr ? ::getenv("PATH") : "") {
        ::setenv("FAKE_KUBE_DIR", dir_.path().c_str(), 1);
        ::setenv("PATH", (kFakes + ":" + old_path_).c_str(), 1);
    }
    ~FakeKube() {
        ::setenv("PATH", old_path_.c_str(), 1);
        ::unsetenv("FAKE_KUBE_DIR");
    }
    FakeKube(const FakeKube&) = delete;
    FakeKube& operator=(const FakeKube&) = delete;

    fs::path path() const { return dir_.path(); }

    void touch(const std::string& name, const std::string& text = "") const {
        std::ofstream{path() / name} << text;
    }

    /// Every recorded call: program, "KUBECONFIG=..." or "KUBECONFIG unset", then the args.
    std::vector<Argv> calls() const {
        std::vector<Argv> out;
        std::ifstream in{path() / "calls.log"};
        std::string line;
        while (std::getline(in, line)) {
            Argv fields;
            std::string field;
            std::istringstream split{line};
            while (std::getline(split, field, '\x1f')) {
                fields.push_back(field);
            }
            out.push_back(std::move(fields));
        }
        return out;
    }

    /// The calls that change something: every call but `helm status` (the wait step's polls).
    std::vector<Argv> changes() const {
        std::vector<Argv> out;
        for (auto& call : calls()) {
            if (!is_status(call)) {
                out.push_back(std::move(call));
            }
        }
        return out;
    }

    static bool is_status(const Argv& call) {
        return call.size() > 2 && call[0] == "helm" && call[2] == "status";
    }

    void clear_calls() const { fs::remove(path() / "calls.log"); }

private:
    TempDir dir_;
    std::string old_path_;
};

Argv upgrade(std::string release, std::string tag) {
    return {"helm",  "KUBECONFIG unset",         "upgrade", "--namespace",     "lotus", "--install",
            release, "./lotus-fullnode-minimal", "--set",   "image.tag=" + tag};
}
Argv uninstall(std::string release) {
    return {"helm", "KUBECONFIG unset", "--namespace", "lotus", "uninstall", release};
}
Argv delete_pvc(std::string release) {
    return {"kubectl", "KUBECONFIG unset",  "--namespace", "lotus", "delete", "pvc",
            "-l",      "release=" + release};
}

/// The job of a Wait reply, finished or failed.
json::value job_in(const json::object& reply) {
    if (reply.contains("result")) {
        return reply.at("result").at("Job");
    }
    if (reply.contains("error") && reply.at("error").as_object().contains("data")) {
        return reply.at("error").at("data").at("job");
    }
    return nullptr;
}

/// Every line of a job's output, one per line.
std::string output_of(const ServerProcess& server, const json::value& job) {
    if (!job.is_object()) {
        return {};
    }
    auto response = http(server, "GET", fmt::format("/api/v1/jobs/{}/output", str(job.at("id"))));
    auto body = json_of(response);
    EXPECT_TRUE(body.is_object()) << (response ? response->body : response.error().message);
    std::string text;
    if (body.is_object()) {
        for (const auto& line : body.at("lines").as_array()) {
            text += str(line.at("text")) + "\n";
        }
    }
    return text;
}

bool contains(const std::string& text, std::string_view part) {
    return text.find(part) != std::string::npos;
}

class HelmDriver : public ::testing::Test {
protected:
    /// Starts serve with `config`, the fakes on its PATH.
    void start(std::string config) {
        server_ = std::make_unique<ServerProcess>(std::move(config));
        ASSERT_TRUE(server_->start()) << server_->log();
    }

    json::object call_rpc(std::string_view method, std::string_view params) {
        return call_waiting(*server_, method, params);
    }

    FakeKube kube_;
    std::unique_ptr<ServerProcess> server_;
};

TEST_F(HelmDriver, UpgradeRunsUpgradeInstallThenWaitsForTheReleaseToBeDeployed) {
    start(helm_config());
    auto reply = call_rpc("TweetyService.Upgrade", R"({"ReleaseName": "lotus-0", "ImageTag":
                          "v1.2.2", "Owner": "anton", "Wait": true})");
    ASSERT_TRUE(reply.contains("result")) << json::serialize(reply);
    EXPECT_EQ(reply.at("result").at("State"), "succeeded");
    EXPECT_EQ(kube_.changes(), (std::vector<Argv>{upgrade("lotus-0", "v1.2.2")}));
    // The wait step asked helm for the release after installing it.
    auto all = kube_.calls();
    ASSERT_GE(all.size(), 2u);
    EXPECT_EQ(all[0], upgrade("lotus-0", "v1.2.2"));
    EXPECT_EQ(all[1], (Argv{"helm", "KUBECONFIG unset", "status", "--namespace", "lotus", "lotus-0",
                            "-o", "json"}));
    auto job = job_in(reply);
    auto output = output_of(*server_, job);
    EXPECT_TRUE(contains(output, "Release \"lotus-0\" does not exist. Installing it now."))
        << output;
    EXPECT_TRUE(contains(output,
                         "cannot see lotus-0's chain height; waiting for it to be "
                         "running instead of height-advancing"))
        << output;
    EXPECT_EQ(job.at("result").at("version"), "v1.2.2") << json::serialize(job);
    EXPECT_EQ(job.at("result").at("running"), true);
}

TEST_F(HelmDriver, InstallSnapshotUninstallsDeletesThePvcsThenInstalls) {
    start(helm_config());
    ASSERT_TRUE(call_rpc("TweetyService.CreateCanary",
                         R"({"ReleaseName": "lotus-0", "ImageTag": "v1.0.0", "Wait": true})")
                    .contains("result"));
    kube_.clear_calls();
    auto reply = call_rpc("TweetyService.InstallSnapshot",
                          R"({"ReleaseName": "lotus-0", "ImageTag": "v2.0.0", "Wait": true})");
    ASSERT_TRUE(reply.contains("result")) << json::serialize(reply);
    EXPECT_EQ(reply.at("result").at("State"), "succeeded");
    EXPECT_EQ(kube_.changes(), (std::vector<Argv>{uninstall("lotus-0"), delete_pvc("lotus-0"),
                                                  upgrade("lotus-0", "v2.0.0")}));
    auto output = output_of(*server_, job_in(reply));
    EXPECT_TRUE(contains(output, "release \"lotus-0\" uninstalled")) << output;
    EXPECT_TRUE(contains(output, "persistentvolumeclaim \"data-lotus-0-0\" deleted")) << output;
}

TEST_F(HelmDriver, CreateCanaryInstallsAndDeleteCanaryUninstallsAndDeletesThePvcs) {
    start(helm_config());
    auto created = call_rpc("TweetyService.CreateCanary",
                            R"({"ReleaseName": "lotus-1", "ImageTag": "v3.0.0", "Wait": true})");
    ASSERT_TRUE(created.contains("result")) << json::serialize(created);
    EXPECT_EQ(kube_.changes(), (std::vector<Argv>{upgrade("lotus-1", "v3.0.0")}));
    kube_.clear_calls();
    auto deleted =
        call_rpc("TweetyService.DeleteCanary", R"({"ReleaseName": "lotus-1", "Wait": true})");
    ASSERT_TRUE(deleted.contains("result")) << json::serialize(deleted);
    EXPECT_EQ(deleted.at("result").at("State"), "succeeded");
    EXPECT_EQ(kube_.calls(), (std::vector<Argv>{uninstall("lotus-1"), delete_pvc("lotus-1")}));
}

TEST_F(HelmDriver, SetsContextKubeconfigAndPoolsShapeTheCommands) {
    start(helm_config(R"(    kube_context: prod
    kubeconfig: /etc/aviary/kubeconfig
    set: {replicas: "1", persistence.size: 100Gi}
    pools:
      - name: eu
        selector: {region: eu}
        namespace: canaries
        chart: oci://charts.example.org/lotus
        kube_context: ""
)"));
    ASSERT_TRUE(call_rpc("TweetyService.CreateCanary",
                         R"({"ReleaseName": "lotus-0", "ImageTag": "v1", "Wait": true})")
                    .contains("result"));
    ASSERT_TRUE(call_rpc("TweetyService.DeleteCanary", R"({"ReleaseName": "lotus-0", "Wait":
                         true})")
                    .contains("result"));
    ASSERT_TRUE(call_rpc("TweetyService.CreateCanary",
                         R"({"ReleaseName": "lotus-1", "ImageTag": "v2", "Wait": true})")
                    .contains("result"));
    const std::string env = "KUBECONFIG=/etc/aviary/kubeconfig";
    EXPECT_EQ(
        kube_.changes(),
        (std::vector<Argv>{
            {"helm", env, "upgrade", "--namespace", "lotus", "--kube-context", "prod", "--install",
             "lotus-0", "./lotus-fullnode-minimal", "--set", "image.tag=v1", "--set", "replicas=1",
             "--set", "persistence.size=100Gi"},
            {"helm", env, "--namespace", "lotus", "--kube-context", "prod", "uninstall", "lotus-0"},
            {"kubectl", env, "--namespace", "lotus", "--context", "prod", "delete", "pvc", "-l",
             "release=lotus-0"},
            {"helm", env, "upgrade", "--namespace", "canaries", "--install", "lotus-1",
             "oci://charts.example.org/lotus", "--set", "image.tag=v2", "--set", "replicas=1",
             "--set", "persistence.size=100Gi"},
        }));
}

TEST_F(HelmDriver, DeleteCanaryOfAnUnknownReleaseFailsAsNotFound) {
    start(helm_config());
    auto reply =
        call_rpc("TweetyService.DeleteCanary", R"({"ReleaseName": "lotus-1", "Wait": true})");
    auto job = job_in(reply);
    ASSERT_TRUE(job.is_object()) << json::serialize(reply);
    EXPECT_EQ(job.at("state"), "failed");
    EXPECT_TRUE(
        contains(str(job.at("error")), "helm: release lotus-1 not found in namespace lotus"))
        << str(job.at("error"));
    EXPECT_EQ(kube_.calls(), (std::vector<Argv>{uninstall("lotus-1")}));  // no delete pvc after
    auto output = output_of(*server_, job);
    EXPECT_TRUE(contains(output,
                         "Error: uninstall: Release not loaded: lotus-1: "
                         "release: not found"))
        << output;
}

TEST_F(HelmDriver, AnUnreachableClusterFailsTheJobAsUnreachable) {
    kube_.touch("fail-upgrade",
                "Error: Kubernetes cluster unreachable: Get \"https://127.0.0.1:6443/version\": "
                "dial tcp 127.0.0.1:6443: connect: connection refused\n");
    start(helm_config());
    auto reply = call_rpc("TweetyService.Upgrade", R"({"ReleaseName": "lotus-0", "ImageTag":
                          "v1.2.2", "Wait": true})");
    auto job = job_in(reply);
    ASSERT_TRUE(job.is_object()) << json::serialize(reply);
    EXPECT_EQ(job.at("state"), "failed");
    EXPECT_TRUE(contains(str(job.at("error")),
                         "cluster unreachable: Error: Kubernetes cluster unreachable: Get "
                         "\"https://127.0.0.1:6443/version\": dial tcp"))
        << str(job.at("error"));
}

TEST_F(HelmDriver, AChartErrorFailsTheJobNamingHelmsLine) {
    kube_.touch("fail-upgrade",
                "Error: INSTALLATION FAILED: template: lotus/templates/sts.yaml:7:18: executing "
                "\"lotus/templates/sts.yaml\" at <.Values.image.repository>: nil pointer\n");
    start(helm_config());
    auto reply = call_rpc("TweetyService.CreateCanary", R"({"ReleaseName": "lotus-0", "ImageTag":
                          "v1.2.2", "Wait": true})");
    auto job = job_in(reply);
    ASSERT_TRUE(job.is_object()) << json::serialize(reply);
    EXPECT_EQ(job.at("state"), "failed");
    EXPECT_TRUE(contains(str(job.at("error")),
                         "chart error: Error: INSTALLATION FAILED: template: "
                         "lotus/templates/sts.yaml:7:18"))
        << str(job.at("error"));
    auto output = output_of(*server_, job);
    EXPECT_TRUE(contains(output, "Error: INSTALLATION FAILED: template:")) << output;
}

TEST_F(HelmDriver, AMissingHelmIsNamed) {
    start(helm_config("    helm: aviary-test-no-such-helm\n"));
    auto reply = call_rpc("TweetyService.Upgrade", R"({"ReleaseName": "lotus-0", "ImageTag":
                          "v1.2.2", "Wait": true})");
    auto job = job_in(reply);
    ASSERT_TRUE(job.is_object()) << json::serialize(reply);
    EXPECT_EQ(job.at("state"), "failed");
    EXPECT_TRUE(
        contains(str(job.at("error")),
                 "helm not found on PATH (drivers.helm.helm: \"aviary-test-no-such-helm\")"))
        << str(job.at("error"));
}

TEST_F(HelmDriver, AHelmPastTheDriversTimeoutIsEndedWithItsGroup) {
    kube_.touch("hang-upgrade");
    start(helm_config("    timeout: 500ms\n"));
    auto reply = call_rpc("TweetyService.Upgrade", R"({"ReleaseName": "lotus-0", "ImageTag":
                          "v1.2.2", "Wait": true})");
    auto job = job_in(reply);
    ASSERT_TRUE(job.is_object()) << json::serialize(reply);
    EXPECT_EQ(job.at("state"), "failed");
    EXPECT_TRUE(contains(str(job.at("error")),
                         "helm upgrade of lotus-0 did not finish within "
                         "500ms (drivers.helm.timeout)"))
        << str(job.at("error"));
    std::ifstream pid_file{kube_.path() / "hang-upgrade.pid"};
    pid_t pgid = 0;
    ASSERT_TRUE(pid_file >> pgid);
    EXPECT_TRUE(wait_until([&] { return !group_alive(pgid); }, std::chrono::seconds{10}));
    auto output = output_of(*server_, job);
    EXPECT_TRUE(contains(output, "fake helm: hanging")) << output;
}

TEST_F(HelmDriver, AHelmThatHangsIsEndedByTheStepTimeoutWithItsGroup) {
    kube_.touch("hang-uninstall");
    // delete-canary with a short step timeout; the driver's own timeout is far longer.
    start(helm_config("", R"(    delete-canary:
      destructive: true
      steps:
        - driver: uninstall
          timeout: 1s
        - driver: wipe-data
)"));
    auto reply =
        call_rpc("TweetyService.DeleteCanary", R"({"ReleaseName": "lotus-0", "Wait": true})");
    auto job = job_in(reply);
    ASSERT_TRUE(job.is_object()) << json::serialize(reply);
    EXPECT_EQ(job.at("state"), "timed_out") << json::serialize(job);
    EXPECT_TRUE(contains(str(job.at("error")), "timed out")) << str(job.at("error"));
    std::ifstream pid_file{kube_.path() / "hang-uninstall.pid"};
    pid_t pgid = 0;
    ASSERT_TRUE(pid_file >> pgid);
    EXPECT_TRUE(wait_until([&] { return !group_alive(pgid); }, std::chrono::seconds{10}));
    EXPECT_EQ(kube_.calls(), (std::vector<Argv>{uninstall("lotus-0")}));  // wipe-data never ran
    auto output = output_of(*server_, job);
    EXPECT_TRUE(contains(output, fmt::format("ending process group {} (SIGTERM", pgid))) << output;
}

}  // namespace
}  // namespace aviary::test
