// The helm driver: its commands (argv and environment) for every operation, the pool a node
// uses, how a failed command is classified, how `helm status -o json` is read, and the driver
// itself running the fake helm and kubectl of tests/support/fake_kube.
#include "drivers/helm_driver.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "support/process_groups.hpp"
#include "unit/drivers/sim_test_support.hpp"

namespace aviary::drivers {
namespace {

namespace fs = std::filesystem;
using namespace test;
using Argv = std::vector<std::string>;

const std::string kFakes = std::string{AVIARY_SOURCE_DIR} + "/tests/support/fake_kube";

HelmSettings defaults() {
    return HelmSettings{};
}

HelmTarget with_context() {
    HelmTarget target;
    target.kube_context = "prod-eu";
    return target;
}

// ---------------------------------------------------------------------------------------------
// Commands

TEST(HelmCommands, UpgradeIsTheOriginalsCommandExactly) {
    auto settings = defaults();
    auto command = helm_upgrade_command(settings, settings.defaults, "lotus-0", "v1.2.2");
    EXPECT_EQ(command.argv, (Argv{"helm", "upgrade", "--namespace", "lotus", "--install", "lotus-0",
                                  "./lotus-fullnode-minimal", "--set", "image.tag=v1.2.2"}));
    EXPECT_TRUE(command.env_add.empty());
    EXPECT_EQ(command.what, "helm upgrade");
}

TEST(HelmCommands, UpgradeAppendsTheExtraSetsInTheirOrder) {
    auto settings = defaults();
    settings.defaults.set = {{"replicas", "1"}, {"a.b", "x y"}, {"persistence.size", "100Gi"}};
    auto command = helm_upgrade_command(settings, settings.defaults, "lotus-1", "v2");
    EXPECT_EQ(command.argv,
              (Argv{"helm", "upgrade", "--namespace", "lotus", "--install", "lotus-1",
                    "./lotus-fullnode-minimal", "--set", "image.tag=v2", "--set", "replicas=1",
                    "--set", "a.b=x y", "--set", "persistence.size=100Gi"}));
}

TEST(HelmCommands, UninstallAndDeletePvcAreTheOriginalsCommandsExactly) {
    auto settings = defaults();
    auto uninstall = helm_uninstall_command(settings, settings.defaults, "lotus-0");
    EXPECT_EQ(uninstall.argv, (Argv{"helm", "--namespace", "lotus", "uninstall", "lotus-0"}));
    EXPECT_TRUE(uninstall.env_add.empty());
    auto pvc = kubectl_delete_pvc_command(settings, settings.defaults, "lotus-0");
    EXPECT_EQ(pvc.argv,
              (Argv{"kubectl", "--namespace", "lotus", "delete", "pvc", "-l", "release=lotus-0"}));
    EXPECT_TRUE(pvc.env_add.empty());
    EXPECT_EQ(pvc.setting, "drivers.helm.kubectl");
}

TEST(HelmCommands, StatusAsksForJson) {
    auto settings = defaults();
    auto status = helm_status_command(settings, settings.defaults, "lotus-2");
    EXPECT_EQ(status.argv,
              (Argv{"helm", "status", "--namespace", "lotus", "lotus-2", "-o", "json"}));
}

TEST(HelmCommands, AContextFollowsTheNamespacePair) {
    auto settings = defaults();
    auto target = with_context();
    target.namespace_name = "canaries";
    EXPECT_EQ(helm_upgrade_command(settings, target, "lotus-0", "v1").argv,
              (Argv{"helm", "upgrade", "--namespace", "canaries", "--kube-context", "prod-eu",
                    "--install", "lotus-0", "./lotus-fullnode-minimal", "--set", "image.tag=v1"}));
    EXPECT_EQ(helm_uninstall_command(settings, target, "lotus-0").argv,
              (Argv{"helm", "--namespace", "canaries", "--kube-context", "prod-eu", "uninstall",
                    "lotus-0"}));
    EXPECT_EQ(kubectl_delete_pvc_command(settings, target, "lotus-0").argv,
              (Argv{"kubectl", "--namespace", "canaries", "--context", "prod-eu", "delete", "pvc",
                    "-l", "release=lotus-0"}));
    EXPECT_EQ(helm_status_command(settings, target, "lotus-0").argv,
              (Argv{"helm", "status", "--namespace", "canaries", "--kube-context", "prod-eu",
                    "lotus-0", "-o", "json"}));
}

TEST(HelmCommands, AKubeconfigGoesInTheEnvironmentNotTheArgv) {
    auto settings = defaults();
    settings.defaults.kubeconfig = "/etc/aviary/kubeconfig";
    const std::vector<std::pair<std::string, std::string>> env{
        {"KUBECONFIG", "/etc/aviary/kubeconfig"}};
    for (auto op : {Op::kInstall, Op::kUpgrade, Op::kUninstall, Op::kWipeData, Op::kStatus}) {
        auto commands = helm_commands(settings, settings.defaults, op, "lotus-0", "v1");
        ASSERT_EQ(commands.size(), 1u) << to_string(op);
        EXPECT_EQ(commands[0].env_add, env) << to_string(op);
        EXPECT_EQ(
            std::find(commands[0].argv.begin(), commands[0].argv.end(), "/etc/aviary/kubeconfig"),
            commands[0].argv.end());
    }
}

TEST(HelmCommands, TheProgramsComeFromTheSettings) {
    auto settings = defaults();
    settings.helm = "/opt/helm/bin/helm";
    settings.kubectl = "/opt/k8s/kubectl";
    EXPECT_EQ(helm_uninstall_command(settings, settings.defaults, "n").argv.front(),
              "/opt/helm/bin/helm");
    EXPECT_EQ(kubectl_delete_pvc_command(settings, settings.defaults, "n").argv.front(),
              "/opt/k8s/kubectl");
}

TEST(HelmCommands, EachOperationRunsItsCommands) {
    auto settings = defaults();
    auto whats = [&](Op op) {
        std::vector<std::string> out;
        for (const auto& command :
             helm_commands(settings, settings.defaults, op, "lotus-0", "v1")) {
            out.push_back(command.what);
        }
        return out;
    };
    using Whats = std::vector<std::string>;
    EXPECT_EQ(whats(Op::kInstall), (Whats{"helm upgrade"}));
    EXPECT_EQ(whats(Op::kUpgrade), (Whats{"helm upgrade"}));
    EXPECT_EQ(whats(Op::kUninstall), (Whats{"helm uninstall"}));
    EXPECT_EQ(whats(Op::kWipeData), (Whats{"kubectl delete pvc"}));
    EXPECT_EQ(whats(Op::kStatus), (Whats{"helm status"}));
    EXPECT_EQ(whats(Op::kRestart), Whats{});
}

TEST(HelmCommands, ShellWordsQuoteOnlyWhatNeedsIt) {
    EXPECT_EQ(shell_words({"helm", "upgrade", "--set", "image.tag=v1.2"}),
              "helm upgrade --set image.tag=v1.2");
    EXPECT_EQ(shell_words({"helm", "--set", "a=x y", "it's", ""}),
              "helm --set 'a=x y' 'it'\\''s' ''");
}

// ---------------------------------------------------------------------------------------------
// Pools

core::NodeSpec node(std::string name, core::Labels labels = {}) {
    return core::NodeSpec{.name = std::move(name), .driver = "helm", .labels = std::move(labels)};
}

HelmPool pool(std::string name,
              std::vector<std::string> nodes,
              core::Labels selector,
              std::string namespace_name) {
    HelmPool out{
        .name = std::move(name), .nodes = std::move(nodes), .selector = std::move(selector)};
    out.target.namespace_name = std::move(namespace_name);
    return out;
}

TEST(HelmTargetForNode, ANodeNoPoolMatchesUsesTheDefaults) {
    HelmSettings settings;
    settings.pools.push_back(pool("prod", {"lotus-9"}, {{"env", "prod"}}, "prod"));
    EXPECT_EQ(&helm_target(settings, node("lotus-0", {{"env", "dev"}})), &settings.defaults);
}

TEST(HelmTargetForNode, APoolMatchesByNodeName) {
    HelmSettings settings;
    settings.pools.push_back(pool("named", {"lotus-1", "lotus-2"}, {}, "named"));
    EXPECT_EQ(helm_target(settings, node("lotus-2")).namespace_name, "named");
    EXPECT_EQ(helm_target(settings, node("lotus-3")).namespace_name, "lotus");
}

TEST(HelmTargetForNode, APoolMatchesByEveryLabelOfItsSelector) {
    HelmSettings settings;
    settings.pools.push_back(pool("eu", {}, {{"region", "eu"}, {"chain", "lotus"}}, "eu"));
    EXPECT_EQ(helm_target(settings, node("a", {{"region", "eu"}, {"chain", "lotus"}, {"x", "y"}}))
                  .namespace_name,
              "eu");
    EXPECT_EQ(helm_target(settings, node("b", {{"region", "eu"}})).namespace_name, "lotus");
}

TEST(HelmTargetForNode, TheFirstMatchingPoolWins) {
    HelmSettings settings;
    settings.pools.push_back(pool("first", {}, {{"chain", "lotus"}}, "first"));
    settings.pools.push_back(pool("second", {"lotus-0"}, {}, "second"));
    EXPECT_EQ(helm_target(settings, node("lotus-0", {{"chain", "lotus"}})).namespace_name, "first");
    EXPECT_EQ(helm_target(settings, node("lotus-0")).namespace_name, "second");
}

TEST(HelmTargetForNode, APoolWithNeitherNodesNorSelectorMatchesNothing) {
    HelmSettings settings;
    settings.pools.push_back(pool("empty", {}, {}, "empty"));
    EXPECT_EQ(helm_target(settings, node("lotus-0", {{"chain", "lotus"}})).namespace_name, "lotus");
}

// ---------------------------------------------------------------------------------------------
// Classification

struct Case {
    std::string name;
    std::string what;  // which command
    int code;          // exit code (0 with signal 0: success)
    int signal;
    std::vector<std::string> output;
    bool timed_out;
    bool stopped;
    bool ok;
    core::ErrorCode want;
    std::string message;  // the whole message when it starts with '=', else a part of it
};

HelmCommand command_for(const std::string& what) {
    HelmSettings settings;
    if (what == "helm upgrade") {
        return helm_upgrade_command(settings, settings.defaults, "lotus-0", "v1");
    }
    if (what == "helm uninstall") {
        return helm_uninstall_command(settings, settings.defaults, "lotus-0");
    }
    if (what == "kubectl delete pvc") {
        return kubectl_delete_pvc_command(settings, settings.defaults, "lotus-0");
    }
    return helm_status_command(settings, settings.defaults, "lotus-0");
}

TEST(HelmClassification, EachFailureGetsItsClassAndMessage) {
    using core::ErrorCode;
    const std::string unreachable =
        "Error: Kubernetes cluster unreachable: Get \"https://10.0.0.1:6443/version\": dial tcp "
        "10.0.0.1:6443: connect: connection refused";
    const std::vector<Case> cases{
        {"success",
         "helm upgrade",
         0,
         0,
         {"Release \"lotus-0\" has been upgraded."},
         false,
         false,
         true,
         ErrorCode::kInternal,
         ""},
        {"our timeout",
         "helm upgrade",
         0,
         15,
         {},
         true,
         false,
         false,
         ErrorCode::kTimeout,
         "=helm upgrade of lotus-0 did not finish within 5m (drivers.helm.timeout): its process "
         "group was ended"},
        {"the step stopping",
         "kubectl delete pvc",
         0,
         15,
         {},
         false,
         true,
         false,
         ErrorCode::kUnavailable,
         "=kubectl delete pvc of lotus-0 was ended: the step is stopping"},
        {"uninstall of an unknown release",
         "helm uninstall",
         1,
         0,
         {"Error: uninstall: Release not loaded: lotus-0: release: not found"},
         false,
         false,
         false,
         ErrorCode::kNotFound,
         "=helm: release lotus-0 not found in namespace lotus"},
        {"status of an unknown release",
         "helm status",
         1,
         0,
         {"Error: release: not found"},
         false,
         false,
         false,
         ErrorCode::kNotFound,
         "=helm: release lotus-0 not found in namespace lotus"},
        {"helm cannot reach the cluster",
         "helm upgrade",
         1,
         0,
         {unreachable},
         false,
         false,
         false,
         ErrorCode::kUnavailable,
         "=cluster unreachable: " + unreachable},
        {"kubectl cannot resolve the server",
         "kubectl delete pvc",
         1,
         0,
         {"Unable to connect to the server: dial tcp: lookup k8s.example.org: no such host"},
         false,
         false,
         false,
         ErrorCode::kUnavailable,
         "=cluster unreachable: Unable to connect to the server: dial tcp: lookup "
         "k8s.example.org: no such host"},
        {"kubectl refused",
         "kubectl delete pvc",
         1,
         0,
         {"The connection to the server localhost:8080 was refused - did you specify the right "
          "host or port?"},
         false,
         false,
         false,
         ErrorCode::kUnavailable,
         "cluster unreachable: The connection"},
        {"an i/o timeout",
         "helm status",
         1,
         0,
         {"Error: Get \"https://k8s:6443/api\": net/http: TLS handshake: i/o timeout"},
         false,
         false,
         false,
         ErrorCode::kUnavailable,
         "cluster unreachable: Error: Get"},
        {"helm's own wait timed out",
         "helm upgrade",
         1,
         0,
         {"Error: UPGRADE FAILED: timed out waiting for the condition"},
         false,
         false,
         false,
         ErrorCode::kTimeout,
         "=helm upgrade of lotus-0 timed out: Error: UPGRADE FAILED: timed out waiting for the "
         "condition"},
        {"a template error",
         "helm upgrade",
         1,
         0,
         {"Error: INSTALLATION FAILED: template: lotus/templates/sts.yaml:12:20: executing "
          "\"lotus/templates/sts.yaml\" at <.Values.image.repo>: nil pointer"},
         false,
         false,
         false,
         ErrorCode::kInvalidArgument,
         "=chart error: Error: INSTALLATION FAILED: template: lotus/templates/sts.yaml:12:20: "
         "executing \"lotus/templates/sts.yaml\" at <.Values.image.repo>: nil pointer"},
        {"a chart path that does not exist",
         "helm upgrade",
         1,
         0,
         {"Error: path \"./lotus-fullnode-minimal\" not found"},
         false,
         false,
         false,
         ErrorCode::kInvalidArgument,
         "=chart error: Error: path \"./lotus-fullnode-minimal\" not found"},
        {"the Error line, not the usage after it",
         "helm upgrade",
         1,
         0,
         {"Error: UPGRADE FAILED: cannot patch \"lotus-0\"", "", "  some detail"},
         false,
         false,
         false,
         ErrorCode::kInvalidArgument,
         "=chart error: Error: UPGRADE FAILED: cannot patch \"lotus-0\""},
        {"anything else from kubectl",
         "kubectl delete pvc",
         1,
         0,
         {"error: You must be logged in to the server (Unauthorized)"},
         false,
         false,
         false,
         ErrorCode::kInternal,
         "=kubectl delete pvc of lotus-0 exited with code 1: error: You must be logged in to the "
         "server (Unauthorized)"},
        {"killed with no output",
         "helm uninstall",
         0,
         9,
         {},
         false,
         false,
         false,
         ErrorCode::kInternal,
         "=helm uninstall of lotus-0 was killed by signal 9: no output"},
        {"an upgrade that failed silently",
         "helm upgrade",
         2,
         0,
         {},
         false,
         false,
         false,
         ErrorCode::kInvalidArgument,
         "=chart error: helm upgrade exited with code 2"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        HelmOutcome outcome{.status = proc::ExitStatus{.code = c.code, .signal = c.signal},
                            .timed_out = c.timed_out,
                            .stopped = c.stopped};
        outcome.tail.assign(c.output.begin(), c.output.end());
        auto result = classify_helm_outcome(command_for(c.what), outcome, "lotus-0", "lotus",
                                            core::Millis{5 * 60 * 1000});
        ASSERT_EQ(static_cast<bool>(result), c.ok) << (result ? "" : result.error().message);
        if (c.ok) {
            continue;
        }
        EXPECT_EQ(result.error().code, c.want) << core::to_string(result.error().code);
        if (!c.message.empty() && c.message.front() == '=') {
            EXPECT_EQ(result.error().message, c.message.substr(1));
        } else {
            EXPECT_NE(result.error().message.find(c.message), std::string::npos)
                << result.error().message;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// helm status -o json

TEST(HelmStatusJson, ADeployedReleaseIsInstalledAndRunningAtItsTag) {
    auto status = parse_helm_status(
        R"({"name":"lotus-0","info":{"status":"deployed","description":"Upgrade complete"},)"
        R"("config":{"image":{"tag":"v1.2.2"},"replicas":1},"manifest":"---\n","version":3,)"
        R"("namespace":"lotus"})",
        "lotus-0");
    ASSERT_TRUE(status) << status.error().message;
    EXPECT_TRUE(status->installed);
    EXPECT_TRUE(status->running);
    EXPECT_EQ(status->version, "v1.2.2");
    EXPECT_FALSE(status->has_height);
}

TEST(HelmStatusJson, OtherStatesAreInstalledButNotRunningAndUninstalledIsNeither) {
    for (std::string state : {"failed", "pending-install", "pending-upgrade", "superseded"}) {
        auto status = parse_helm_status(
            R"({"info":{"status":")" + state + R"("},"config":{"image":{"tag":"v1"}}})", "x");
        ASSERT_TRUE(status) << state;
        EXPECT_TRUE(status->installed) << state;
        EXPECT_FALSE(status->running) << state;
    }
    for (std::string state : {"uninstalled", "uninstalling"}) {
        auto status = parse_helm_status(R"({"info":{"status":")" + state + R"("}})", "x");
        ASSERT_TRUE(status) << state;
        EXPECT_FALSE(status->installed) << state;
        EXPECT_FALSE(status->running) << state;
    }
}

TEST(HelmStatusJson, TheChartsDefaultTagShowsAsNoVersionAndANumberAsWritten) {
    auto none = parse_helm_status(R"({"info":{"status":"deployed"},"config":{}})", "x");
    ASSERT_TRUE(none);
    EXPECT_EQ(none->version, "");
    auto number =
        parse_helm_status(R"({"info":{"status":"deployed"},"config":{"image":{"tag":1.25}}})", "x");
    ASSERT_TRUE(number);
    EXPECT_EQ(number->version, "1.25");
    auto integer =
        parse_helm_status(R"({"info":{"status":"deployed"},"config":{"image":{"tag":7}}})", "x");
    ASSERT_TRUE(integer);
    EXPECT_EQ(integer->version, "7");
}

TEST(HelmStatusJson, JsonCutShortIsAnErrorNotRepaired) {
    std::string json =
        R"({"name":"lotus-0","info":{"status":"deployed"},"config":{"image":{"tag":"v9"}},)"
        R"("manifest":"---\n# Source: lotus/templates/statefulset.yaml\napiVersion: apps/v1\nki)";
    auto status = parse_helm_status(json, "lotus-0");
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().code, core::ErrorCode::kInternal);
}

TEST(HelmStatusJson, NotJsonOrNoStatusIsAnErrorNamingTheRelease) {
    auto text = parse_helm_status("NAME: lotus-0\nSTATUS: deployed\n", "lotus-0");
    ASSERT_FALSE(text);
    EXPECT_EQ(text.error().code, core::ErrorCode::kInternal);
    EXPECT_NE(text.error().message.find("helm status of lotus-0 printed no JSON object"),
              std::string::npos)
        << text.error().message;
    auto no_status = parse_helm_status(R"({"info":{}})", "lotus-0");
    ASSERT_FALSE(no_status);
    EXPECT_NE(no_status.error().message.find("without info.status"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// The driver, with the fake helm and kubectl

TEST(HelmDriverRegistry, MakeDriversMakesTheHelmDriver) {
    Settings settings;
    settings.sim.program = "/bin/true";
    std::vector<std::string> names;
    for (const auto& driver : make_drivers(settings)) {
        names.emplace_back(driver->name());
    }
    EXPECT_EQ(names, (std::vector<std::string>{"sim", "helm", "ssh", "none", "sidecar"}));
}

/// Records notes and the lines of the children it runs ("stdout: ..."), as the job engine's
/// context does: runs each child in its own group, ends the group past run_options.timeout
/// (kTimeout) or once told to stop.
class NotesContext final : public Context {
public:
    void note(std::string text) override { notes.push_back(std::move(text)); }
    asio::awaitable<core::Result<proc::ExitStatus>> run(proc::SpawnOptions options,
                                                        RunOptions run_options) override {
        auto executor = co_await asio::this_coro::executor;
        const std::string program = options.argv.empty() ? "" : options.argv.front();
        auto spawned = proc::spawn(executor, std::move(options));
        if (!spawned) {
            co_return spawned.error();
        }
        auto process = std::make_shared<proc::Process>(std::move(*spawned));
        auto pump_done = std::make_shared<bool>(false);
        proc::LineCallback on_line = [this, also = run_options.on_line,
                                      to_output =
                                          run_options.stdout_to_output](const proc::Line& line) {
            if (also) {
                also(line);
            }
            if (line.stream == proc::Stream::kStdout && !to_output) {
                return;
            }
            auto stream = line.stream == proc::Stream::kStdout ? "stdout: " : "stderr: ";
            notes.push_back(stream + line.text);
        };
        auto pump = [process, on_line, pump_done,
                     max = run_options.max_stdout_line]() -> asio::awaitable<void> {
            co_await process->pump(on_line, max);
            *pump_done = true;
        };
        asio::co_spawn(executor, pump(), asio::detached);
        auto limit =
            run_options.timeout > core::Millis{0} ? run_options.timeout : core::Millis{3'600'000};
        auto deadline = std::chrono::steady_clock::now() + limit;
        using asio::experimental::awaitable_operators::operator||;
        asio::steady_timer poll{executor};
        bool ended = false;
        bool over = false;
        while (!ended && !stopping_now) {
            if (std::chrono::steady_clock::now() >= deadline) {
                over = true;
                break;
            }
            poll.expires_after(core::Millis{20});
            auto which =
                co_await (process->ended() || poll.async_wait(asio::as_tuple(asio::use_awaitable)));
            ended = which.index() == 0;
        }
        proc::ExitStatus status;
        if (!ended) {
            note(fmt::format("ending process group {}: {}", process->pgid(),
                             over ? program + " ran longer than " + core::format_duration(limit)
                                  : std::string{"the step is stopping"}));
            status = co_await process->terminate(core::Millis{500});
        } else {
            process->signal_group(SIGKILL);
            status = co_await process->wait();
        }
        for (int i = 0; i < 200 && !*pump_done; ++i) {
            poll.expires_after(core::Millis{10});
            co_await poll.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        if (over) {
            co_return core::Error{core::ErrorCode::kTimeout,
                                  program + " ran longer than " + core::format_duration(limit)};
        }
        co_return status;
    }
    bool stopping() const override { return stopping_now; }

    bool said(const std::string& part) const {
        for (const auto& line : notes) {
            if (line.find(part) != std::string::npos) {
                return true;
            }
        }
        return false;
    }
    std::string all() const {
        std::string out;
        for (const auto& line : notes) {
            out += line + "\n";
        }
        return out;
    }

    std::vector<std::string> notes;
    bool stopping_now = false;
};

/// One call recorded by a fake: program, "KUBECONFIG=..." or "KUBECONFIG unset", arguments.
std::vector<Argv> calls(const fs::path& dir) {
    std::vector<Argv> out;
    std::ifstream in{dir / "calls.log"};
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

class HelmDriverTest : public ::testing::Test {
protected:
    HelmDriverTest() {
        ::setenv("FAKE_KUBE_DIR", dir_.path().c_str(), 1);
        settings_.helm = kFakes + "/helm";
        settings_.kubectl = kFakes + "/kubectl";
        settings_.status_timeout = core::Millis{10'000};
        settings_.defaults.timeout = core::Millis{10'000};
    }
    ~HelmDriverTest() override { ::unsetenv("FAKE_KUBE_DIR"); }

    void touch(const std::string& name, const std::string& text = "") {
        write_text(dir_.path() / name, text);
    }

    /// Runs one operation on `node` to completion.
    core::Result<std::string> run_op(Op op, core::NodeSpec spec, std::string tag = "") {
        auto driver = make_helm_driver(settings_);
        core::Result<std::string> result = core::Error{core::ErrorCode::kInternal, "not run"};
        OpRequest request{.op = op, .node = std::move(spec), .image_tag = std::move(tag)};
        test::run(perform(*driver, request, context_, result));
        return result;
    }

    core::Result<NodeStatus> status_of(core::NodeSpec spec) {
        auto driver = make_helm_driver(settings_);
        core::Result<NodeStatus> result = core::Error{core::ErrorCode::kInternal, "not run"};
        test::run(ask_status(*driver, std::move(spec), result));
        return result;
    }

    static asio::awaitable<void> perform(Driver& driver,
                                         OpRequest request,
                                         Context& context,
                                         core::Result<std::string>& out) {
        out = co_await driver.run(request, context);
    }
    static asio::awaitable<void> ask_status(Driver& driver,
                                            core::NodeSpec spec,
                                            core::Result<NodeStatus>& out) {
        out = co_await driver.status(spec);
    }

    TempDir dir_;
    HelmSettings settings_;
    NotesContext context_;
};

TEST_F(HelmDriverTest, InstallRunsUpgradeInstallAndPutsHelmsOutputInTheJob) {
    auto result = run_op(Op::kInstall, node("lotus-0"), "v1.2.2");
    ASSERT_TRUE(result) << result.error().message;
    EXPECT_EQ(*result,
              R"({"release":"lotus-0","namespace":"lotus","installed":true,"version":"v1.2.2"})");
    auto recorded = calls(dir_.path());
    ASSERT_EQ(recorded.size(), 1u);
    EXPECT_EQ(recorded[0],
              (Argv{"helm", "KUBECONFIG unset", "upgrade", "--namespace", "lotus", "--install",
                    "lotus-0", "./lotus-fullnode-minimal", "--set", "image.tag=v1.2.2"}));
    EXPECT_TRUE(context_.said("running " + kFakes + "/helm upgrade --namespace lotus --install"))
        << context_.all();
    EXPECT_TRUE(context_.said("stdout: Release \"lotus-0\" does not exist. Installing it now."))
        << context_.all();
}

TEST_F(HelmDriverTest, WithoutAStepTagTheNodesTagIsUsedAndWithNeitherItIsRefused) {
    auto spec = node("lotus-0");
    spec.image_tag = "v0.9";
    ASSERT_TRUE(run_op(Op::kUpgrade, spec));
    EXPECT_EQ(calls(dir_.path()).at(0).back(), "image.tag=v0.9");

    auto refused = run_op(Op::kUpgrade, node("lotus-1"));
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_NE(refused.error().message.find("needs an image tag"), std::string::npos);
    EXPECT_EQ(calls(dir_.path()).size(), 1u);
}

TEST_F(HelmDriverTest, TheKubeconfigReachesTheChildsEnvironment) {
    settings_.defaults.kubeconfig = "/etc/aviary/kubeconfig.yaml";
    settings_.defaults.kube_context = "canary";
    ASSERT_TRUE(run_op(Op::kWipeData, node("lotus-0")));
    auto recorded = calls(dir_.path());
    ASSERT_EQ(recorded.size(), 1u);
    EXPECT_EQ(recorded[0],
              (Argv{"kubectl", "KUBECONFIG=/etc/aviary/kubeconfig.yaml", "--namespace", "lotus",
                    "--context", "canary", "delete", "pvc", "-l", "release=lotus-0"}));
}

TEST_F(HelmDriverTest, UninstallOfAnUnknownReleaseIsNotFound) {
    auto result = run_op(Op::kUninstall, node("lotus-7"));
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, core::ErrorCode::kNotFound);
    EXPECT_EQ(result.error().message, "helm: release lotus-7 not found in namespace lotus");
    EXPECT_TRUE(context_.said("stderr: Error: uninstall: Release not loaded: lotus-7"))
        << context_.all();
}

TEST_F(HelmDriverTest, StatusReadsTheReleaseAndAnUnknownOneIsNotInstalled) {
    auto unknown = status_of(node("lotus-0"));
    ASSERT_TRUE(unknown) << unknown.error().message;
    EXPECT_FALSE(unknown->installed);
    EXPECT_FALSE(unknown->running);
    EXPECT_FALSE(unknown->has_height);

    ASSERT_TRUE(run_op(Op::kInstall, node("lotus-0"), "v3.1.0"));
    auto known = status_of(node("lotus-0"));
    ASSERT_TRUE(known) << known.error().message;
    EXPECT_TRUE(known->installed);
    EXPECT_TRUE(known->running);
    EXPECT_EQ(known->version, "v3.1.0");
    EXPECT_FALSE(known->has_height);
    EXPECT_EQ(calls(dir_.path()).back(), (Argv{"helm", "KUBECONFIG unset", "status", "--namespace",
                                               "lotus", "lotus-0", "-o", "json"}));
}

TEST_F(HelmDriverTest, TheStatusOperationReportsWithoutEchoingTheJson) {
    ASSERT_TRUE(run_op(Op::kInstall, node("lotus-0"), "v2"));
    auto result = run_op(Op::kStatus, node("lotus-0"));
    ASSERT_TRUE(result) << result.error().message;
    EXPECT_EQ(*result,
              R"({"installed":true,"running":true,"version":"v2","helm_status":"deployed"})");
    EXPECT_TRUE(context_.said("lotus-0 is deployed at v2")) << context_.all();
    EXPECT_FALSE(context_.said("\"manifest\"")) << context_.all();
}

TEST_F(HelmDriverTest, AStatusLongerThanAnOutputLineIsReadWhole) {
    ASSERT_TRUE(run_op(Op::kInstall, node("lotus-0"), "v3"));
    // Past proc's 64 KiB line limit, and before the manifest: no cut could be repaired.
    touch("status-values", std::string(100 * 1024, 'x'));
    auto status = status_of(node("lotus-0"));
    ASSERT_TRUE(status) << status.error().message;
    EXPECT_EQ(status->version, "v3");
    EXPECT_TRUE(status->running);
    context_.notes.clear();
    auto result = run_op(Op::kStatus, node("lotus-0"));
    ASSERT_TRUE(result) << result.error().message;
    EXPECT_EQ(*result,
              R"({"installed":true,"running":true,"version":"v3","helm_status":"deployed"})");
    // Through the step's context like every other command, and its JSON not in the output.
    EXPECT_TRUE(context_.said("running " + kFakes + "/helm status")) << context_.all();
    EXPECT_FALSE(context_.said("xxxxxxxx")) << context_.all().substr(0, 2000);
}

TEST_F(HelmDriverTest, AnUnreachableClusterIsAnErrorForStatus) {
    touch("fail-status",
          "Error: Kubernetes cluster unreachable: Get \"https://127.0.0.1:6443/version\": dial "
          "tcp 127.0.0.1:6443: connect: connection refused\n");
    auto status = status_of(node("lotus-0"));
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().code, core::ErrorCode::kUnavailable);
    EXPECT_EQ(status.error().message.rfind("cluster unreachable: Error: Kubernetes cluster", 0), 0u)
        << status.error().message;
}

TEST_F(HelmDriverTest, RestartIsRefusedSayingWhatToDoInstead) {
    auto result = run_op(Op::kRestart, node("lotus-0"));
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_NE(result.error().message.find("helm has no restart"), std::string::npos);
    EXPECT_NE(result.error().message.find("kubectl --namespace lotus delete pod -l "
                                          "release=lotus-0"),
              std::string::npos)
        << result.error().message;
    EXPECT_TRUE(calls(dir_.path()).empty());
}

TEST_F(HelmDriverTest, AMissingProgramIsNamedWithItsSetting) {
    settings_.helm = "aviary-test-no-such-helm";
    auto result = run_op(Op::kUpgrade, node("lotus-0"), "v1");
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, core::ErrorCode::kUnavailable);
    EXPECT_EQ(result.error().message,
              "helm not found on PATH (drivers.helm.helm: \"aviary-test-no-such-helm\")");
    settings_.kubectl = "/nonexistent/kubectl";
    auto pvc = run_op(Op::kWipeData, node("lotus-0"));
    ASSERT_FALSE(pvc);
    EXPECT_EQ(pvc.error().message,
              "kubectl not found at /nonexistent/kubectl (drivers.helm.kubectl)");
}

TEST_F(HelmDriverTest, ACommandPastItsTimeoutIsEndedWithItsGroup) {
    // Long enough for the fake to start, say it hangs and write its pid on a loaded machine
    // (1 s was not, under the sanitizer suites with two jobs and clang-tidy beside them).
    settings_.defaults.timeout = core::Millis{3000};
    touch("hang-upgrade");
    auto result = run_op(Op::kUpgrade, node("lotus-0"), "v1");
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, core::ErrorCode::kTimeout);
    EXPECT_EQ(result.error().message,
              "helm upgrade of lotus-0 did not finish within 3s (drivers.helm.timeout): its "
              "process group was ended");
    auto pid = std::stoi(read_text(dir_.path() / "hang-upgrade.pid"));
    EXPECT_TRUE(aviary::test::group_ends(pid));
    EXPECT_TRUE(context_.said(": fake helm: hanging")) << context_.all();
    EXPECT_TRUE(context_.said("ran longer than 3s")) << context_.all();
}

TEST_F(HelmDriverTest, AStatusPastTheStatusTimeoutIsATimeout) {
    settings_.status_timeout = core::Millis{3000};  // as above: time for the fake to hang
    touch("hang-status");
    auto status = status_of(node("lotus-0"));
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().code, core::ErrorCode::kTimeout);
    EXPECT_NE(status.error().message.find("drivers.helm.status_timeout"), std::string::npos);
    auto pid = std::stoi(read_text(dir_.path() / "hang-status.pid"));
    EXPECT_TRUE(aviary::test::group_ends(pid));
}

TEST_F(HelmDriverTest, AStepThatStopsEndsTheRunningCommand) {
    touch("hang-uninstall");
    auto driver = make_helm_driver(settings_);
    core::Result<std::string> result = core::Error{core::ErrorCode::kInternal, "not run"};
    OpRequest request{.op = Op::kUninstall, .node = node("lotus-0")};
    auto stopper = [](NotesContext& context, fs::path pid_file) -> asio::awaitable<void> {
        co_await eventually([&] { return fs::exists(pid_file); });
        context.stopping_now = true;
    };
    auto scenario = [](Driver& driver, OpRequest request, NotesContext& context,
                       core::Result<std::string>& out, fs::path pid_file,
                       decltype(stopper)& stop) -> asio::awaitable<void> {
        using asio::experimental::awaitable_operators::operator&&;
        co_await (perform(driver, request, context, out) && stop(context, pid_file));
    };
    test::run(
        scenario(*driver, request, context_, result, dir_.path() / "hang-uninstall.pid", stopper));
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, core::ErrorCode::kUnavailable);
    EXPECT_EQ(result.error().message, "helm uninstall of lotus-0 was ended: the step is stopping");
    auto pid = std::stoi(read_text(dir_.path() / "hang-uninstall.pid"));
    EXPECT_TRUE(aviary::test::group_ends(pid));
}

}  // namespace
}  // namespace aviary::drivers
