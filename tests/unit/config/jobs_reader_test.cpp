// The `jobs:` and `drivers:` sections, read through config::load_string as serve reads them.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "config_support.hpp"

namespace aviary::config {
namespace {

using namespace std::chrono_literals;

using test::error_of;

/// The action `name` of a config that must load.
jobs::ActionSpec action_of(std::string_view yaml, std::string_view name) {
    auto loaded = load_string(yaml, "t.yaml");
    EXPECT_TRUE(loaded) << loaded.error().message;
    if (loaded) {
        for (const auto& action : loaded->jobs.actions) {
            if (action.name == name) {
                return action;
            }
        }
    }
    ADD_FAILURE() << "no action " << name;
    return {};
}

// --- settings ---------------------------------------------------------------------------------

TEST(JobsReader, ReadsEverySetting) {
    auto loaded = load_string(R"(
jobs:
  workers: 8
  output_max_lines: 500
  kill_grace: 2s
  heartbeat: 1s
  heartbeat_timeout: 10s
  retention: 7d
  retention_sweep: 10m
drivers:
  dir: /srv/nodes
  sim:
    block_interval: 20ms
    sync_blocks: 0
    snapshot_height: 5000000000
    program: /usr/local/bin/aviary
    start_timeout: 3s
    stop_grace: 1s
)",
                              "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    const auto& j = loaded->jobs;
    EXPECT_EQ(j.workers, 8);
    EXPECT_EQ(j.output_max_lines, 500);
    EXPECT_EQ(j.kill_grace, 2s);
    EXPECT_EQ(j.heartbeat, 1s);
    EXPECT_EQ(j.heartbeat_timeout, 10s);
    EXPECT_EQ(j.retention, 7 * 24h);
    EXPECT_EQ(j.retention_sweep, 10min);
    const auto& d = loaded->drivers;
    EXPECT_EQ(d.dir, "/srv/nodes");
    EXPECT_EQ(d.sim.block_interval, 20ms);
    EXPECT_EQ(d.sim.sync_blocks, 0);
    EXPECT_EQ(d.sim.snapshot_height, 5'000'000'000);
    EXPECT_EQ(d.sim.program, "/usr/local/bin/aviary");
    EXPECT_EQ(d.sim.start_timeout, 3s);
    EXPECT_EQ(d.sim.stop_grace, 1s);
}

TEST(JobsReader, SettingsAreBounded) {
    EXPECT_EQ(error_of("jobs: {workers: 0}\n"),
              "aviary.yaml:1:17: jobs.workers: expected an integer from 1 to 64, got \"0\"");
    EXPECT_EQ(error_of("jobs: {workers: 65}\n"),
              "aviary.yaml:1:17: jobs.workers: expected an integer from 1 to 64, got \"65\"");
    EXPECT_EQ(error_of("jobs:\n  heartbeat: 1m\n  heartbeat_timeout: 30s\n"),
              "aviary.yaml:3:22: jobs.heartbeat_timeout: heartbeat_timeout (30s) must be longer "
              "than heartbeat (1m)");
    EXPECT_EQ(error_of("drivers:\n  sim:\n    sync_blocks: -1\n"),
              "aviary.yaml:3:18: drivers.sim.sync_blocks: expected an integer from 0 to 1000000, "
              "got \"-1\"");
    EXPECT_EQ(error_of("drivers:\n  sim: {block_intervall: 1s}\n"),
              "aviary.yaml:2:9: drivers.sim.block_intervall: unknown key \"block_intervall\"; did "
              "you mean \"block_interval\"?");
}

// --- actions ----------------------------------------------------------------------------------

TEST(JobsReader, ReadsEveryKeyOfAnAction) {
    auto action = action_of(R"(
jobs:
  actions:
    deploy:
      description: Deploys.
      queue: slow
      timeout: 20m
      max_attempts: 3
      retry_backoff: 1s
      retry_backoff_max: 1m
      destructive: true
      retry_destructive: true
      rerun_safe: true
      exclusive: false
      concurrency: 2
      params:
        tag: {type: image_tag, required: true, description: The tag.}
        replicas: {type: integer, required: false, default: "3"}
        flavour: {type: string, required: false, default: plain, pattern: "[a-z]+",
                  max_length: 40}
        extra: {type: string, required: false, allow_leading_dash: true}
        target: {type: dns_label}
        dry_run: {type: boolean, required: false, default: "false"}
      steps:
        - noop
)",
                            "deploy");
    EXPECT_EQ(action.description, "Deploys.");
    EXPECT_EQ(action.queue, "slow");
    EXPECT_EQ(action.timeout, 20min);
    EXPECT_EQ(action.max_attempts, 3);
    EXPECT_EQ(action.retry_backoff, 1s);
    EXPECT_EQ(action.retry_backoff_max, 1min);
    EXPECT_TRUE(action.destructive);
    EXPECT_TRUE(action.retry_destructive);
    EXPECT_TRUE(action.rerun_safe);
    EXPECT_FALSE(action.exclusive);
    EXPECT_EQ(action.concurrency, 2);
    // Params keep the order they are written in.
    ASSERT_EQ(action.params.size(), 6u);
    EXPECT_EQ(action.params[0].name, "tag");
    EXPECT_EQ(action.params[0].type, jobs::ParamType::kImageTag);
    EXPECT_TRUE(action.params[0].required);
    EXPECT_EQ(action.params[0].description, "The tag.");
    EXPECT_EQ(action.params[1].name, "replicas");
    EXPECT_EQ(action.params[1].type, jobs::ParamType::kInteger);
    EXPECT_FALSE(action.params[1].required);
    EXPECT_EQ(action.params[1].default_value, "3");
    EXPECT_EQ(action.params[2].name, "flavour");
    EXPECT_EQ(action.params[2].type, jobs::ParamType::kString);
    EXPECT_EQ(action.params[2].pattern, "[a-z]+");
    EXPECT_EQ(action.params[2].max_length, 40u);
    EXPECT_FALSE(action.params[2].allow_leading_dash);
    EXPECT_EQ(action.params[3].name, "extra");
    EXPECT_EQ(action.params[3].max_length, jobs::kDefaultParamMaxLength);
    EXPECT_TRUE(action.params[3].allow_leading_dash);
    EXPECT_EQ(action.params[4].name, "target");
    EXPECT_EQ(action.params[4].type, jobs::ParamType::kDnsLabel);
    EXPECT_TRUE(action.params[4].required);
    EXPECT_EQ(action.params[5].name, "dry_run");
    EXPECT_EQ(action.params[5].type, jobs::ParamType::kBoolean);
}

TEST(JobsReader, ReadsEachStepKind) {
    auto action = action_of(R"(
jobs:
  actions:
    deploy:
      params:
        tag: {type: image_tag}
      steps:
        - driver: upgrade
          image_tag: "{{params.tag}}-debug"
          name: bump
          timeout: 3m
        - driver: wipe-data
        - wait: height-advancing
          timeout: 2m
          interval: 100ms
        - run: [echo, "{{node}}", "{{params.tag}}"]
          env: {TAG: "{{params.tag}}", B_FIRST: "no, written order"}
        - noop: {}
        - noop:
        - noop
)",
                            "deploy");
    ASSERT_EQ(action.steps.size(), 7u);
    const auto& upgrade = action.steps[0];
    EXPECT_EQ(upgrade.kind, jobs::StepKind::kDriver);
    EXPECT_EQ(upgrade.op, drivers::Op::kUpgrade);
    EXPECT_EQ(upgrade.image_tag, "{{params.tag}}-debug");
    EXPECT_EQ(upgrade.name, "bump");
    EXPECT_EQ(upgrade.timeout, 3min);
    EXPECT_EQ(action.steps[1].op, drivers::Op::kWipeData);
    EXPECT_EQ(action.steps[1].name, "driver wipe-data");
    EXPECT_EQ(action.steps[1].timeout, 0ms);  // the rest of the action's timeout
    const auto& wait = action.steps[2];
    EXPECT_EQ(wait.kind, jobs::StepKind::kWait);
    EXPECT_EQ(wait.condition, jobs::WaitCondition::kHeightAdvancing);
    EXPECT_EQ(wait.timeout, 2min);
    EXPECT_EQ(wait.interval, 100ms);
    EXPECT_EQ(wait.name, "wait height-advancing");
    const auto& run = action.steps[3];
    EXPECT_EQ(run.kind, jobs::StepKind::kRun);
    EXPECT_EQ(run.argv, (std::vector<std::string>{"echo", "{{node}}", "{{params.tag}}"}));
    EXPECT_EQ(run.env, (std::vector<std::pair<std::string, std::string>>{
                           {"TAG", "{{params.tag}}"}, {"B_FIRST", "no, written order"}}));
    EXPECT_EQ(run.name, "run echo");
    for (std::size_t i = 4; i < 7; ++i) {
        EXPECT_EQ(action.steps[i].kind, jobs::StepKind::kNoop) << i;
        EXPECT_EQ(action.steps[i].name, "noop") << i;
    }
}

TEST(JobsReader, DriverImageTagDefaultsToTheTagParamOrTheNodes) {
    auto with_tag = action_of(
        "jobs:\n  actions:\n    a:\n      steps: [{driver: install}]\n      params: {tag: {}}\n",
        "a");
    ASSERT_EQ(with_tag.steps.size(), 1u);
    EXPECT_EQ(with_tag.steps[0].image_tag, "{{params.tag}}");
    // Without a tag param, install runs the node's configured image_tag.
    auto without = action_of("jobs:\n  actions:\n    a:\n      steps: [{driver: install}]\n", "a");
    ASSERT_EQ(without.steps.size(), 1u);
    EXPECT_EQ(without.steps[0].image_tag, "");
}

TEST(JobsReader, StepKindErrorsNameTheStep) {
    const std::string head = "jobs:\n  actions:\n    a:\n      steps:\n";
    EXPECT_EQ(error_of(head + "        - shell: [ls]\n"),
              "aviary.yaml:5:11: jobs.actions.a.steps[0].shell: unknown step kind \"shell\"; "
              "expected one of driver, run, wait, http, ssh, lease, reboot, connect, noop");
    EXPECT_EQ(
        error_of(head + "        - drive: upgrade\n"),
        "aviary.yaml:5:11: jobs.actions.a.steps[0].drive: unknown step kind \"drive\"; "
        "expected one of driver, run, wait, http, ssh, lease, reboot, connect, noop; did you mean "
        "\"driver\"?");
    EXPECT_EQ(error_of(head + "        - sleep\n"),
              "aviary.yaml:5:11: jobs.actions.a.steps[0]: unknown step kind \"sleep\"; expected "
              "one of driver, run, wait, http, ssh, lease, reboot, connect, noop");
    EXPECT_EQ(error_of(head + "        - name: nothing\n"),
              "aviary.yaml:5:11: jobs.actions.a.steps[0]: a step needs one of driver, run, wait, "
              "http, ssh, lease, reboot, connect, noop");
    EXPECT_EQ(error_of(head + "        - driver: status\n          run: [ls]\n"),
              "aviary.yaml:6:11: jobs.actions.a.steps[0].run: a step has exactly one kind, and "
              "this one already has \"driver\"");
    EXPECT_EQ(error_of(head + "        - driver\n"),
              "aviary.yaml:5:11: jobs.actions.a.steps[0]: a driver step needs a value: "
              "\"driver: ...\" (only noop stands alone)");
    EXPECT_EQ(error_of(head + "        - [noop]\n"),
              "aviary.yaml:5:11: jobs.actions.a.steps[0]: expected a step (a mapping with one of "
              "driver, run, wait, http, ssh, lease, reboot, connect, noop), got a sequence");
}

TEST(JobsReader, StepValuesAreChecked) {
    const std::string head = "jobs:\n  actions:\n    a:\n      steps:\n";
    EXPECT_EQ(
        error_of(head + "        - driver: reboot\n"),
        "aviary.yaml:5:19: jobs.actions.a.steps[0].driver: unknown driver op \"reboot\" "
        "(install, upgrade, uninstall, wipe-data, restart, status, maintenance, resume, reload, "
        "backup, restore, pause-production, resume-production)");
    EXPECT_EQ(error_of(head + "        - wait: healthy\n"),
              "aviary.yaml:5:17: jobs.actions.a.steps[0].wait: unknown wait condition \"healthy\" "
              "(running, synced, height-advancing)");
    EXPECT_EQ(error_of(head + "        - noop: 1\n"),
              "aviary.yaml:5:17: jobs.actions.a.steps[0].noop: expected nothing or {}, got \"1\"");
    EXPECT_EQ(error_of(head + "        - driver: status\n          interval: 1s\n"),
              "aviary.yaml:6:21: jobs.actions.a.steps[0].interval: \"interval\" applies to wait "
              "steps only");
    EXPECT_EQ(error_of(head + "        - driver: restart\n          image_tag: v2\n"),
              "aviary.yaml:6:22: jobs.actions.a.steps[0].image_tag: image_tag applies to driver "
              "install and upgrade only, not restart");
    EXPECT_EQ(error_of(head + "        - wait: synced\n          timeout: soon\n"),
              "aviary.yaml:6:20: jobs.actions.a.steps[0].timeout: " +
                  core::parse_duration("soon").error().message);
}

TEST(JobsReader, RunTakesAnArgvListNeverAShellLine) {
    const std::string head = "jobs:\n  actions:\n    a:\n      steps:\n";
    EXPECT_EQ(error_of(head + "        - run: echo hello; rm -rf /\n"),
              "aviary.yaml:5:16: jobs.actions.a.steps[0].run: expected a list like [echo, "
              "\"{{node}}\"] (a program and its arguments, never a shell command line), got "
              "\"echo hello; rm -rf /\"");
    EXPECT_EQ(error_of(head + "        - run: []\n"),
              "aviary.yaml:5:16: jobs.actions.a.steps[0].run: needs at least the program: "
              "[PROGRAM, ARG...]");
    EXPECT_EQ(error_of(head + "        - run: [ls]\n          env: {1X: a}\n"),
              "aviary.yaml:6:17: jobs.actions.a.steps[0].env.1X: \"1X\" is not an environment "
              "variable name ([A-Za-z_][A-Za-z0-9_]*)");
}

TEST(JobsReader, ParamErrorsNameTheParam) {
    const std::string head = "jobs:\n  actions:\n    a:\n      steps: [noop]\n      params:\n";
    EXPECT_EQ(error_of(head + "        tag: {type: semver}\n"),
              "aviary.yaml:6:21: jobs.actions.a.params.tag.type: unknown param type \"semver\" "
              "(string, dns_label, image_tag, integer, boolean)");
    EXPECT_EQ(error_of(head + "        tag: {type: integer, pattern: \"[0-9]+\"}\n"),
              "aviary.yaml:6:39: jobs.actions.a.params.tag.pattern: a pattern applies to string "
              "params only, not integer");
    EXPECT_EQ(error_of(head + "        tag: {required: maybe}\n"),
              "aviary.yaml:6:25: jobs.actions.a.params.tag.required: expected true or false, got "
              "\"maybe\"");
    EXPECT_EQ(error_of(head + "        tag: {max_length: 0}\n"),
              "aviary.yaml:6:27: jobs.actions.a.params.tag.max_length: expected an integer from "
              "1 to 4096, got \"0\"");
    EXPECT_EQ(error_of(head + "        tag: {typ: string}\n"),
              "aviary.yaml:6:15: jobs.actions.a.params.tag.typ: unknown key \"typ\"; did you mean "
              "\"type\"?");
}

TEST(JobsReader, ValidateActionMessageComesAtTheActionsKey) {
    // Line 3, column 5: the key "a". The message is jobs::validate_action's, without its
    // `action "a": ` prefix, which the key path already says.
    EXPECT_EQ(error_of("jobs:\n  actions:\n    a:\n      steps:\n"
                       "        - run: [echo, \"{{params.tg}}\"]\n"),
              "aviary.yaml:3:5: jobs.actions.a: steps[0].run[1]: unknown param \"tg\"");
    EXPECT_EQ(error_of("jobs:\n  actions:\n    a:\n      description: no steps\n"),
              "aviary.yaml:3:5: jobs.actions.a: steps: an action needs at least one step");
    EXPECT_EQ(error_of("jobs:\n  actions:\n    a:\n      retry_backoff: 10m\n"
                       "      steps: [noop]\n"),
              "aviary.yaml:3:5: jobs.actions.a: retry_backoff: must be positive and at most "
              "retry_backoff_max");
    EXPECT_EQ(error_of("jobs:\n  actions:\n    a:\n      queue: Slow\n      steps: [noop]\n"),
              "aviary.yaml:3:5: jobs.actions.a: queue: must be a DNS-1123 label");
    // An image_tag naming a param the action lacks.
    EXPECT_EQ(error_of("jobs:\n  actions:\n    a:\n      steps:\n        - driver: upgrade\n"
                       "          image_tag: \"{{params.tag}}\"\n"),
              "aviary.yaml:3:5: jobs.actions.a: steps[0].image_tag: unknown param \"tag\"");
}

TEST(JobsReader, ActionNamesAreDnsLabelsAndUnique) {
    EXPECT_EQ(error_of("jobs:\n  actions:\n    Do_It:\n      steps: [noop]\n"),
              "aviary.yaml:3:5: jobs.actions.Do_It: action name \"Do_It\" is not a DNS-1123 label "
              "(1-63 of a-z, 0-9 and '-', starting and ending with a letter or digit)");
    EXPECT_EQ(error_of("jobs:\n  actions:\n    a: {steps: [noop]}\n    a: {steps: [noop]}\n"),
              "aviary.yaml:4:5: jobs.actions.a: key \"a\" appears twice");
    EXPECT_EQ(error_of("jobs:\n  actions:\n    a: {steps: [noop], exclusive: nope}\n"),
              "aviary.yaml:3:35: jobs.actions.a.exclusive: expected true or false, got \"nope\"");
}

// --- permissions ------------------------------------------------------------------------------

TEST(JobsReader, ReadsPermissionRulesWithDefaults) {
    auto loaded = load_string(R"(
jobs:
  permissions:
    - name: no-ci-on-prod
      effect: deny
      who: [group:ci]
      actions: ["*"]
      nodes: [lotus-0, "*"]
      selector: {env: prod}
    - effect: allow
      who: [alice, "*"]
)",
                              "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    const auto& rules = loaded->jobs.permissions;
    ASSERT_EQ(rules.size(), 2u);
    EXPECT_EQ(rules[0].name, "no-ci-on-prod");
    EXPECT_FALSE(rules[0].allow);
    EXPECT_EQ(rules[0].who, (std::vector<std::string>{"group:ci"}));
    EXPECT_EQ(rules[0].actions, (std::vector<std::string>{"*"}));
    EXPECT_EQ(rules[0].nodes, (std::vector<std::string>{"lotus-0", "*"}));
    EXPECT_EQ(rules[0].selector, (core::Labels{{"env", "prod"}}));
    EXPECT_EQ(rules[1].name, "permissions[1]");
    EXPECT_TRUE(rules[1].allow);
    EXPECT_EQ(rules[1].who, (std::vector<std::string>{"alice", "*"}));
    EXPECT_EQ(rules[1].actions, (std::vector<std::string>{"*"}));
    EXPECT_EQ(rules[1].nodes, (std::vector<std::string>{"*"}));
    EXPECT_TRUE(rules[1].selector.empty());
}

TEST(JobsReader, PermissionRulesMayNameBuiltinAndFileActions) {
    auto loaded = load_string(R"(
jobs:
  actions:
    mine: {steps: [noop]}
  permissions:
    - {effect: allow, who: [ci], actions: [mine, upgrade, install-snapshot]}
)",
                              "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->jobs.permissions[0].actions,
              (std::vector<std::string>{"mine", "upgrade", "install-snapshot"}));
}

TEST(JobsReader, PermissionErrorsNameTheRule) {
    const std::string head = "jobs:\n  permissions:\n";
    EXPECT_EQ(error_of(head + "    - {effect: permit, who: [ci]}\n"),
              "aviary.yaml:3:16: jobs.permissions[0].effect: unknown effect \"permit\" (allow, "
              "deny)");
    EXPECT_EQ(error_of(head + "    - {who: [ci]}\n"),
              "aviary.yaml:3:7: jobs.permissions[0]: a permission rule needs an effect (allow or "
              "deny)");
    EXPECT_EQ(error_of(head + "    - {effect: deny}\n"),
              "aviary.yaml:3:7: jobs.permissions[0]: a permission rule needs who (token "
              "identities, \"group:NAME\" or \"*\")");
    EXPECT_EQ(error_of(head + "    - {effect: deny, who: []}\n"),
              "aviary.yaml:3:27: jobs.permissions[0].who: must name at least one token identity, "
              "\"group:NAME\" or \"*\"");
    EXPECT_EQ(error_of(head + "    - {effect: deny, who: [\"group:\"]}\n"),
              "aviary.yaml:3:28: jobs.permissions[0].who[0]: expected a token identity, "
              "\"group:NAME\" or \"*\"");
    EXPECT_EQ(error_of(head + "    - {effect: deny, who: [ci], actions: [upgarde]}\n"),
              "aviary.yaml:3:43: jobs.permissions[0].actions[0]: unknown action \"upgarde\"; did "
              "you mean \"upgrade\"?");
    EXPECT_EQ(error_of(head + "    - {effect: deny, who: [ci], actions: []}\n"),
              "aviary.yaml:3:42: jobs.permissions[0].actions: must name at least one action, or "
              "\"*\" for every action");
    EXPECT_EQ(error_of(head + "    - {effect: deny, who: [ci], nodes: [Lotus_0]}\n"),
              "aviary.yaml:3:41: jobs.permissions[0].nodes[0]: \"Lotus_0\" is neither \"*\" nor a "
              "node name (1-63 of a-z, 0-9 and '-', starting and ending with a letter or digit)");
    EXPECT_EQ(error_of(head + "    - {effect: deny, who: [ci], selector: [env]}\n"),
              "aviary.yaml:3:43: jobs.permissions[0].selector: expected a mapping, got a "
              "sequence");
    EXPECT_EQ(error_of(head + "    - {name: r, effect: deny, who: [ci]}\n"
                              "    - {name: r, effect: allow, who: [ci]}\n"),
              "aviary.yaml:4:14: jobs.permissions[1].name: permission rule \"r\" is declared "
              "twice (first at line 3)");
}

}  // namespace
}  // namespace aviary::config

namespace aviary::config {
namespace {

// --- machine tasks: public actions, ssh, lease and reboot steps, jobs.ssh/ipmi/pdu -----------

TEST(MachineTaskReader, APublicActionGetsTheWorkerParamAndItsFromTemplates) {
    auto action = action_of(R"(jobs:
  actions:
    hello:
      public: true
      params:
        host: {from: "{{machine.address}}"}
      steps:
        - ssh: [echo, "{{params.host}}"]
        - lease: {op: acquire, owner: ops, ttl: 1h, reason: hello}
)",
                            "hello");
    EXPECT_TRUE(action.is_public);
    ASSERT_EQ(action.params.size(), 2u);
    EXPECT_EQ(action.params[0].from, "{{machine.address}}");
    EXPECT_EQ(action.params[1].name, "tc_worker_id");
    EXPECT_EQ(action.params[1].from, "{{tc_worker_id}}");
    ASSERT_EQ(action.steps.size(), 2u);
    EXPECT_EQ(action.steps[0].kind, jobs::StepKind::kSsh);
    EXPECT_EQ(action.steps[0].argv, (std::vector<std::string>{"echo", "{{params.host}}"}));
    EXPECT_EQ(action.steps[0].name, "ssh echo");
    EXPECT_EQ(action.steps[1].kind, jobs::StepKind::kLease);
    EXPECT_TRUE(action.steps[1].lease.acquire);
    EXPECT_EQ(action.steps[1].lease.owner, "ops");
    EXPECT_EQ(action.steps[1].lease.ttl, "1h");
}

TEST(MachineTaskReader, ARebootStepReadsEveryKey) {
    auto action = action_of(R"(jobs:
  actions:
    bounce:
      steps:
        - reboot:
            methods: [pdu, ipmi]
            ssh_command: [shutdown, -r, now]
            ipmi_command: [chassis, power, reset]
            pdu_off_time: 3s
            verify: {port: 2222, down_within: 1m, up_within: 5m, interval: 1s, probe_timeout: 3s}
        - reboot: {}
)",
                            "bounce");
    ASSERT_EQ(action.steps.size(), 2u);
    const auto& r = action.steps[0].reboot;
    EXPECT_EQ(r.methods, (std::vector<jobs::RebootMethod>{jobs::RebootMethod::kPdu,
                                                          jobs::RebootMethod::kIpmi}));
    EXPECT_EQ(r.ssh_command, (std::vector<std::string>{"shutdown", "-r", "now"}));
    EXPECT_EQ(r.ipmi_command, (std::vector<std::string>{"chassis", "power", "reset"}));
    EXPECT_EQ(r.pdu_off_time, 3s);
    EXPECT_EQ(r.verify_port, 2222);
    EXPECT_EQ(r.down_within, 1min);
    EXPECT_EQ(r.up_within, 5min);
    EXPECT_EQ(r.interval, 1s);
    EXPECT_EQ(r.probe_timeout, 3s);
    EXPECT_EQ(action.steps[1].reboot.methods.size(), 3u);  // {}: every default
}

TEST(MachineTaskReader, BadMachineTaskYamlNamesTheKey) {
    EXPECT_EQ(error_of("jobs:\n  actions:\n    r:\n      steps:\n        - reboot: {methods: "
                       "[ssh, telnet]}\n"),
              "aviary.yaml:5:35: jobs.actions.r.steps[0].reboot.methods[1]: unknown reboot method "
              "\"telnet\" (ssh, ipmi, pdu)");
    EXPECT_EQ(error_of("jobs:\n  actions:\n    r:\n      steps:\n        - lease: {owner: x}\n"),
              "aviary.yaml:5:18: jobs.actions.r.steps[0].lease: a lease step needs op: acquire or "
              "release");
    EXPECT_EQ(error_of("jobs:\n  actions:\n    r:\n      params:\n        h: {from: \"{{node}}\"}\n"
                       "      steps: [noop]\n"),
              "aviary.yaml:3:5: jobs.actions.r: params.h.from: only a public action's params come "
              "from a worker id");
    EXPECT_EQ(error_of("jobs:\n  ipmi: {password_file: /nonexistent/pw}\n"),
              "aviary.yaml:2:25: jobs.ipmi.password_file: cannot read password file "
              "\"/nonexistent/pw\": No such file or directory");
    EXPECT_EQ(error_of("jobs:\n  pdu: {community_env: AVIARY_TEST_UNSET_COMMUNITY}\n"),
              "aviary.yaml:2:24: jobs.pdu.community_env: environment variable "
              "\"AVIARY_TEST_UNSET_COMMUNITY\" is not set");
    EXPECT_EQ(error_of("jobs:\n  pdu: {outlet_oid: \"1.3.6\"}\n"),
              "aviary.yaml:2:21: jobs.pdu.outlet_oid: \"1.3.6\" is not a numeric OID like "
              "\".1.3.6.1.4.1.318.1.1.12.3.3.1.1.4\"");
}

TEST(MachineTaskReader, SecretsAreLoadedNeverLeftInline) {
    setenv("AVIARY_TEST_IPMI_PW", "ipmi-pw-123456", 1);
    setenv("AVIARY_TEST_COMMUNITY", "snmp-community-1", 1);
    auto loaded = load_string(
        "jobs:\n  ipmi: {password_env: AVIARY_TEST_IPMI_PW, cipher_suite: 3}\n"
        "  pdu: {community_env: AVIARY_TEST_COMMUNITY}\n",
        "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->jobs.ipmi.password, "ipmi-pw-123456");
    EXPECT_EQ(loaded->jobs.ipmi.password_file, "");  // serve writes one at start
    EXPECT_EQ(loaded->jobs.ipmi.cipher_suite, 3);
    EXPECT_EQ(loaded->jobs.pdu.community, "snmp-community-1");
    setenv("AVIARY_TEST_COMMUNITY", "two words", 1);
    auto spaced = load_string("jobs:\n  pdu: {community_env: AVIARY_TEST_COMMUNITY}\n", "t.yaml");
    ASSERT_FALSE(spaced);
    EXPECT_NE(spaced.error().message.find("the community must be one word"), std::string::npos);
    EXPECT_EQ(spaced.error().message.find("two words"), std::string::npos);
}

}  // namespace
}  // namespace aviary::config
