// `aviary supervise`'s file and flags (load_supervise) and the chain presets: the built-in ones
// of examples/chains.yaml and a file's own `preset:`.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "config/chains_embedded.hpp"
#include "config/config.hpp"

namespace aviary::config {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Strings = std::vector<std::string>;
using supervisor::RestartPolicy;

const std::string kChainsExample = std::string{AVIARY_SOURCE_DIR} + "/examples/chains.yaml";

class NodeDir {
public:
    NodeDir()
        : path_(fs::temp_directory_path() /
                ("aviary-supervise-test-" + std::to_string(::getpid()) + "-" + core::new_id())) {
        fs::create_directories(path_);
    }
    ~NodeDir() { fs::remove_all(path_); }
    NodeDir(const NodeDir&) = delete;
    NodeDir& operator=(const NodeDir&) = delete;
    /// Writes node.yaml and returns its path.
    std::string write(const std::string& text) const {
        auto file = path_ / "node.yaml";
        std::ofstream{file, std::ios::binary} << text;
        return file.string();
    }
    fs::path path() const { return path_; }

private:
    fs::path path_;
};

SuperviseFlags with_command(Strings command = {"nodeos", "--data-dir", "/data"}) {
    SuperviseFlags flags;
    flags.command = std::move(command);
    return flags;
}

/// The message of a file (and flags) that must not load, or "(loaded without error)".
std::string error_of(const std::string& yaml, const SuperviseFlags& flags = with_command()) {
    NodeDir dir;
    auto path = dir.write(yaml);
    auto loaded = load_supervise(path, flags);
    if (loaded) {
        return "(loaded without error)";
    }
    EXPECT_EQ(loaded.error().code, core::ErrorCode::kInvalidArgument);
    // The temporary directory differs per run: show the file as node.yaml.
    auto message = loaded.error().message;
    for (auto at = message.find(path); at != std::string::npos; at = message.find(path)) {
        message.replace(at, path.size(), "node.yaml");
    }
    return message;
}

std::string read_text(const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// --- the built-in presets ---------------------------------------------------------------------

TEST(ChainPresets, TheBuiltInOnesInFileOrder) {
    EXPECT_EQ(chain_preset_names(), (Strings{"nodeos", "geth", "lotus", "sim", "none"}));
}

TEST(ChainPresets, NodeosReadsGetInfoAndHasTheProducerApi) {
    auto p = chain_preset("nodeos");
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->name, "nodeos");
    EXPECT_FALSE(p->description.empty());
    EXPECT_EQ(p->readiness, "chain");
    EXPECT_EQ(p->head.method, "POST");
    EXPECT_EQ(p->head.path, "/v1/chain/get_info");
    EXPECT_EQ(p->head.body, "");
    EXPECT_EQ(p->height.pointer, "/head_block_num");
    EXPECT_EQ(p->height.format, "number");
    EXPECT_EQ(p->head_time.pointer, "/head_block_time");
    EXPECT_EQ(p->head_time.format, "iso8601");
    EXPECT_EQ(p->chain_id.pointer, "/chain_id");
    EXPECT_EQ(p->chain_id.format, "string");
    EXPECT_EQ(p->chain_id_call.path, "");
    EXPECT_EQ(p->syncing.path, "");
    EXPECT_EQ(p->block_interval, 500ms);
    EXPECT_EQ(p->producer_pause, "/v1/producer/pause");
    EXPECT_EQ(p->producer_resume, "/v1/producer/resume");
    EXPECT_EQ(p->producer_paused, "/v1/producer/paused");
    EXPECT_EQ(p->head_producer.pointer, "/head_block_producer");
    EXPECT_EQ(p->schedule.method, "POST");
    EXPECT_EQ(p->schedule.path, "/v1/chain/get_producer_schedule");
    EXPECT_EQ(p->schedule_list, "/active/producers");
    EXPECT_EQ(p->schedule_name, "/producer_name");
}

TEST(ChainPresets, GethReadsJsonRpcWithHexNumbers) {
    auto p = chain_preset("geth");
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->readiness, "chain");
    EXPECT_EQ(p->head.method, "POST");
    EXPECT_EQ(p->head.path, "/");
    EXPECT_EQ(
        p->head.body,
        R"({"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["latest",false]})");
    EXPECT_EQ(p->height.pointer, "/result/number");
    EXPECT_EQ(p->height.format, "hex");
    EXPECT_EQ(p->head_time.pointer, "/result/timestamp");
    EXPECT_EQ(p->head_time.format, "unix");
    EXPECT_EQ(p->chain_id_call.method, "POST");
    EXPECT_EQ(p->chain_id_call.path, "/");
    EXPECT_EQ(p->chain_id_call.body,
              R"({"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]})");
    EXPECT_EQ(p->chain_id.pointer, "/result");
    EXPECT_EQ(p->chain_id.format, "string");
    EXPECT_EQ(p->syncing.method, "POST");
    EXPECT_EQ(p->syncing.path, "/");
    EXPECT_EQ(p->syncing.body, R"({"jsonrpc":"2.0","id":1,"method":"eth_syncing","params":[]})");
    EXPECT_EQ(p->syncing_field.pointer, "/result");
    EXPECT_EQ(p->syncing_field.format, "bool");
    EXPECT_EQ(p->block_interval, 12s);
    EXPECT_EQ(p->producer_pause, "");
}

TEST(ChainPresets, LotusReadsChainHeadAndTheNetworkName) {
    auto p = chain_preset("lotus");
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->readiness, "chain");
    EXPECT_EQ(p->head.path, "/rpc/v1");
    EXPECT_EQ(p->head.body,
              R"({"jsonrpc":"2.0","id":1,"method":"Filecoin.ChainHead","params":[]})");
    EXPECT_EQ(p->height.pointer, "/result/Height");
    EXPECT_EQ(p->height.format, "number");
    EXPECT_EQ(p->head_time.pointer, "/result/Blocks/0/Timestamp");
    EXPECT_EQ(p->head_time.format, "unix");
    EXPECT_EQ(p->chain_id_call.path, "/rpc/v1");
    EXPECT_EQ(p->chain_id_call.body,
              R"({"jsonrpc":"2.0","id":1,"method":"Filecoin.StateNetworkName","params":[]})");
    EXPECT_EQ(p->chain_id.pointer, "/result");
    EXPECT_EQ(p->block_interval, 30s);
    EXPECT_EQ(p->syncing.path, "");
}

TEST(ChainPresets, SimIsReadAsNodeos) {
    auto sim = chain_preset("sim");
    auto nodeos = chain_preset("nodeos");
    ASSERT_TRUE(sim) << sim.error().message;
    ASSERT_TRUE(nodeos) << nodeos.error().message;
    EXPECT_NE(sim->description.find("aviary sim-node"), std::string::npos) << sim->description;
    EXPECT_EQ(sim->readiness, "chain");
    EXPECT_EQ(sim->head.method, nodeos->head.method);
    EXPECT_EQ(sim->head.path, "/v1/chain/get_info");
    EXPECT_EQ(sim->height.pointer, nodeos->height.pointer);
    EXPECT_EQ(sim->head_time.pointer, nodeos->head_time.pointer);
    EXPECT_EQ(sim->head_time.format, "iso8601");
    EXPECT_EQ(sim->chain_id.pointer, "/chain_id");
    EXPECT_EQ(sim->block_interval, 500ms);
    EXPECT_EQ(sim->producer_pause, "/v1/producer/pause");
    EXPECT_EQ(sim->producer_resume, "/v1/producer/resume");
    EXPECT_EQ(sim->producer_paused, "/v1/producer/paused");
    EXPECT_EQ(sim->head_producer.pointer, nodeos->head_producer.pointer);
    EXPECT_EQ(sim->schedule.path, nodeos->schedule.path);
    EXPECT_EQ(sim->schedule_list, nodeos->schedule_list);
    EXPECT_EQ(sim->schedule_name, nodeos->schedule_name);
}

TEST(ChainPresets, TheScheduleNeedsWhoMadeTheHeadTheCallAndTheList) {
    auto read = read_chains(R"(chains:
  listless:
    producer:
      head_producer: /head_block_producer
      schedule: {path: /v1/chain/get_producer_schedule}
  unpointed:
    producer:
      schedule_list: active/producers
)",
                            "chains.yaml");
    ASSERT_FALSE(read);
    EXPECT_EQ(read.error().message,
              "chains.yaml:4:22: chains.listless.producer.head_producer: head_producer, schedule "
              "and schedule_list go together: who made the head block, the call that lists the "
              "schedule, and where the list sits in its answer\n"
              "chains.yaml:8:22: chains.unpointed.producer.schedule_list: expected a JSON "
              "pointer like \"/active/producers\", got \"active/producers\"");
}

TEST(SuperviseReader, TheProducersAccountComesFromTheFileOrTheFlag) {
    NodeDir dir;
    const auto path =
        dir.write("chain: nodeos\nproducer:\n  key: eosio.bp\n  account: bpaccount\n");
    auto loaded = load_supervise(path, with_command());
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->producer.key, "eosio.bp");
    EXPECT_EQ(loaded->producer.account, "bpaccount");
    auto flags = with_command();
    flags.producer_account = "other";
    auto flagged = load_supervise(path, flags);
    ASSERT_TRUE(flagged) << flagged.error().message;
    EXPECT_EQ(flagged->producer.account, "other");
    EXPECT_EQ(error_of("producer:\n  account: \"two words\"\n"),
              "node.yaml:2:12: producer.account: \"two words\" must be 1-128 of a-z, A-Z, 0-9, "
              "'.', '-', '_', ':' and '@'");
}

TEST(ChainPresets, NoneIsReadyWhenTheUpstreamAcceptsAConnection) {
    auto p = chain_preset("none");
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->readiness, "tcp");
    EXPECT_EQ(p->head.path, "");
    EXPECT_EQ(p->height.pointer, "");
    EXPECT_EQ(p->block_interval, 1s);
}

TEST(ChainPresets, UnknownNameIsNotFoundNamingTheKnownOnes) {
    auto p = chain_preset("ethereum");
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code, core::ErrorCode::kNotFound);
    EXPECT_EQ(p.error().message,
              R"(unknown chain "ethereum" (known: nodeos, geth, lotus, sim, none))");
}

TEST(ChainPresets, EmbeddedChainsYamlReadsWithoutErrorsAndIsTheExampleVerbatim) {
    auto read = read_chains(generated::kChainsYaml, "chains.yaml");
    ASSERT_TRUE(read) << read.error().message;
    ASSERT_EQ(read->size(), 5U);
    EXPECT_EQ(read->front().name, "nodeos");
    EXPECT_EQ(read->back().name, "none");
    EXPECT_EQ(generated::kChainsYaml, read_text(kChainsExample));
}

TEST(ChainPresets, ChainsFileErrorsNameLineAndKey) {
    auto read = read_chains(R"(chains:
  mine:
    readiness: chain
    head: {path: v1/info}
    height: {pointer: /height, format: decimal}
    block_interval: soon
  "bad name":
    readiness: tcp
  other:
    readiness: ready
    syncing: {path: /sync}
)",
                            "chains.yaml");
    ASSERT_FALSE(read);
    EXPECT_EQ(read.error().message,
              "chains.yaml:4:18: chains.mine.head.path: expected a path on the upstream like "
              "\"/v1/chain/get_info\", got \"v1/info\"\n"
              "chains.yaml:5:40: chains.mine.height.format: unknown format \"decimal\" (number, "
              "hex)\n"
              "chains.yaml:6:21: chains.mine.block_interval: expected a duration like \"30s\", got "
              "\"soon\" (a number must come first)\n"
              "chains.yaml:7:3: chains.bad name: chain name \"bad name\" must be 1-63 of a-z, "
              "A-Z, 0-9, '-', '.' and '_'\n"
              "chains.yaml:10:16: chains.other.readiness: unknown readiness \"ready\" (process, "
              "tcp, http, chain)");
}

TEST(ChainPresets, APresetsPartsThatGoTogetherAreChecked) {
    auto read = read_chains(R"(chains:
  headless:
    readiness: chain
  half:
    syncing: {path: /sync}
  idless:
    chain_id_call: {path: /id}
  pointless:
    height: {format: hex}
  versionless:
    version_call: {path: /version}
)",
                            "chains.yaml");
    ASSERT_FALSE(read);
    EXPECT_EQ(read.error().message,
              "chains.yaml:3:5: chains.headless: readiness chain needs head (the call that reads "
              "the head) and height (where the height sits in its answer)\n"
              "chains.yaml:5:14: chains.half.syncing: syncing and syncing_field go together: the "
              "call, and where its answer says so\n"
              "chains.yaml:7:20: chains.idless.chain_id_call: chain_id_call needs chain_id: "
              "where the id sits in the call's answer\n"
              "chains.yaml:9:13: chains.pointless.height: a field needs a pointer "
              "(\"/result/number\")\n"
              "chains.yaml:11:19: chains.versionless.version_call: version_call needs "
              "node_version: where the version sits in the call's answer");
}

// --- the supervise file -----------------------------------------------------------------------

TEST(SuperviseReader, WithoutAFileTheDefaultsAndTheCommand) {
    auto loaded = load_supervise("", with_command({"aviary", "sim-node"}));
    ASSERT_TRUE(loaded) << loaded.error().message;
    const supervisor::Settings defaults;
    EXPECT_EQ(loaded->name, "node");
    EXPECT_EQ(loaded->chain, "none");
    EXPECT_EQ(loaded->preset.name, "none");
    EXPECT_EQ(loaded->preset.readiness, "tcp");
    EXPECT_EQ(loaded->program.argv, (Strings{"aviary", "sim-node"}));
    EXPECT_EQ(loaded->program.cwd, "");
    EXPECT_TRUE(loaded->program.env.empty());
    EXPECT_EQ(loaded->restart.policy, RestartPolicy::kAlways);
    EXPECT_EQ(loaded->restart.success_codes, (std::vector<int>{0}));
    EXPECT_EQ(loaded->restart.min_delay, defaults.restart.min_delay);
    EXPECT_EQ(loaded->restart.max_delay, defaults.restart.max_delay);
    EXPECT_EQ(loaded->stop.signal, SIGTERM);
    EXPECT_EQ(loaded->stop.grace, 30s);
    EXPECT_EQ(loaded->synced.stall_blocks, 10);
    EXPECT_EQ(loaded->control, "127.0.0.1:8080");
    EXPECT_EQ(loaded->proxy, "0.0.0.0:9999");
    EXPECT_EQ(loaded->upstream, "http://127.0.0.1:8888");
    EXPECT_EQ(loaded->state_dir, "supervise");
    EXPECT_EQ(loaded->data_dir, "");
    EXPECT_EQ(loaded->log_ring_lines, 1000U);
    EXPECT_TRUE(loaded->tokens.empty());
}

TEST(SuperviseReader, AFullFileLoads) {
    NodeDir dir;
    auto path = dir.write(R"(name: eos-1
chain: nodeos
program:
  command: [nodeos, --data-dir, /var/lib/nodeos, --http-server-address, "127.0.0.1:8888"]
  cwd: /var/lib/nodeos
  env:
    LD_LIBRARY_PATH: /opt/eosio/lib
    TZ: UTC
restart:
  policy: on-failure
  success_codes: [0, 143]
  first_delay: 0s
  min_delay: 200ms
  max_delay: 1m
  stable_after: 30s
  start_limit_burst: 3
  start_limit_interval: 5m
  limited_delay: 2m
stop:
  signal: SIGINT
  repeat: 10s
  grace: 2m
synced:
  stall_blocks: 20
  max_head_age: 30s
  interval: 500ms
  timeout: 1s
control: 0.0.0.0:8090
proxy: "[::1]:9000"
upstream: http://127.0.0.1:8888/
state_dir: /var/lib/aviary/eos-1
data_dir: /var/lib/nodeos
log_ring_lines: 5000
auth:
  tokens: [s3cret, other-token]
)");
    auto loaded = load_supervise(path, {});
    ASSERT_TRUE(loaded) << loaded.error().message;
    const auto& s = *loaded;
    EXPECT_EQ(s.name, "eos-1");
    EXPECT_EQ(s.chain, "nodeos");
    EXPECT_EQ(s.preset.name, "nodeos");
    EXPECT_EQ(s.preset.head.path, "/v1/chain/get_info");
    EXPECT_EQ(s.program.argv, (Strings{"nodeos", "--data-dir", "/var/lib/nodeos",
                                       "--http-server-address", "127.0.0.1:8888"}));
    EXPECT_EQ(s.program.cwd, "/var/lib/nodeos");
    using Env = std::vector<std::pair<std::string, std::string>>;
    EXPECT_EQ(s.program.env, (Env{{"LD_LIBRARY_PATH", "/opt/eosio/lib"}, {"TZ", "UTC"}}));
    EXPECT_EQ(s.restart.policy, RestartPolicy::kOnFailure);
    EXPECT_EQ(s.restart.success_codes, (std::vector<int>{0, 143}));
    EXPECT_EQ(s.restart.first_delay, 0ms);
    EXPECT_EQ(s.restart.min_delay, 200ms);
    EXPECT_EQ(s.restart.max_delay, 1min);
    EXPECT_EQ(s.restart.stable_after, 30s);
    EXPECT_EQ(s.restart.start_limit_burst, 3);
    EXPECT_EQ(s.restart.start_limit_interval, 5min);
    EXPECT_EQ(s.restart.limited_delay, 2min);
    EXPECT_EQ(s.stop.signal, SIGINT);
    EXPECT_EQ(s.stop.repeat, 10s);
    EXPECT_EQ(s.stop.grace, 2min);
    EXPECT_EQ(s.synced.stall_blocks, 20);
    EXPECT_EQ(s.synced.max_head_age, 30s);
    EXPECT_EQ(s.synced.interval, 500ms);
    EXPECT_EQ(s.synced.timeout, 1s);
    EXPECT_EQ(s.control, "0.0.0.0:8090");
    EXPECT_EQ(s.proxy, "[::1]:9000");
    EXPECT_EQ(s.upstream, "http://127.0.0.1:8888");  // the trailing "/" dropped
    EXPECT_EQ(s.state_dir, "/var/lib/aviary/eos-1");
    EXPECT_EQ(s.data_dir, "/var/lib/nodeos");
    EXPECT_EQ(s.log_ring_lines, 5000U);
    EXPECT_EQ(s.tokens, (Strings{"s3cret", "other-token"}));
}

TEST(SuperviseReader, FlagsOverrideTheFile) {
    NodeDir dir;
    auto path = dir.write(R"(name: from-file
chain: nodeos
program:
  command: [nodeos]
restart:
  policy: never
control: 127.0.0.1:8080
proxy: 127.0.0.1:9999
upstream: http://127.0.0.1:8888
data_dir: /file/data
state_dir: /file/state
)");
    SuperviseFlags flags;
    flags.chain = "geth";
    flags.name = "from-flags";
    flags.control = "127.0.0.1:0";
    flags.proxy = "";
    flags.upstream = "https://10.0.0.5:8545";
    flags.data_dir = "/flag/data";
    flags.state_dir = "/flag/state";
    flags.restart = "on-failure";
    flags.command = {"geth", "--http"};
    auto loaded = load_supervise(path, flags);
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->name, "from-flags");
    EXPECT_EQ(loaded->chain, "geth");
    EXPECT_EQ(loaded->preset.name, "geth");
    EXPECT_EQ(loaded->preset.height.format, "hex");
    EXPECT_EQ(loaded->control, "127.0.0.1:0");
    EXPECT_EQ(loaded->proxy, "");  // no proxy
    EXPECT_EQ(loaded->upstream, "https://10.0.0.5:8545");
    EXPECT_EQ(loaded->data_dir, "/flag/data");
    EXPECT_EQ(loaded->state_dir, "/flag/state");
    EXPECT_EQ(loaded->restart.policy, RestartPolicy::kOnFailure);
    EXPECT_EQ(loaded->program.argv, (Strings{"geth", "--http"}));
}

TEST(SuperviseReader, StateDirDefaultsUnderDataDir) {
    NodeDir dir;
    auto loaded = load_supervise(dir.write("data_dir: /var/lib/geth\n"), with_command());
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->state_dir, "/var/lib/geth/.aviary-supervise");

    SuperviseFlags flags = with_command();
    flags.data_dir = "node-data";
    loaded = load_supervise("", flags);
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->state_dir, "node-data/.aviary-supervise");
}

TEST(SuperviseReader, AUserPresetForAChainAviaryDoesNotKnow) {
    NodeDir dir;
    auto path = dir.write(R"(chain: cosmos
preset:
  description: a Cosmos SDK node through CometBFT's RPC
  readiness: chain
  head:
    method: GET
    path: /status
  height:
    pointer: /result/sync_info/latest_block_height
  head_time:
    pointer: /result/sync_info/latest_block_time
  chain_id:
    pointer: /result/node_info/network
  syncing:
    method: GET
    path: /status
  syncing_field:
    pointer: /result/sync_info/catching_up
  block_interval: 6s
program:
  command: [gaiad, start]
)");
    auto loaded = load_supervise(path, {});
    ASSERT_TRUE(loaded) << loaded.error().message;
    const auto& p = loaded->preset;
    EXPECT_EQ(loaded->chain, "cosmos");
    EXPECT_EQ(p.name, "cosmos");
    EXPECT_EQ(p.description, "a Cosmos SDK node through CometBFT's RPC");
    EXPECT_EQ(p.readiness, "chain");
    EXPECT_EQ(p.head.method, "GET");
    EXPECT_EQ(p.head.path, "/status");
    EXPECT_EQ(p.head.body, "");
    EXPECT_EQ(p.height.pointer, "/result/sync_info/latest_block_height");
    EXPECT_EQ(p.height.format, "number");  // each field's default format
    EXPECT_EQ(p.head_time.pointer, "/result/sync_info/latest_block_time");
    EXPECT_EQ(p.head_time.format, "iso8601");
    EXPECT_EQ(p.chain_id.pointer, "/result/node_info/network");
    EXPECT_EQ(p.chain_id.format, "string");
    EXPECT_EQ(p.syncing.path, "/status");
    EXPECT_EQ(p.syncing_field.pointer, "/result/sync_info/catching_up");
    EXPECT_EQ(p.syncing_field.format, "bool");
    EXPECT_EQ(p.health.method, "GET");
    EXPECT_EQ(p.health.path, "/");
    EXPECT_EQ(p.block_interval, 6s);
}

TEST(SuperviseReader, AUserPresetWinsOverTheBuiltInOfItsName) {
    NodeDir dir;
    auto path = dir.write(R"(chain: nodeos
preset:
  readiness: http
  health: {path: /v1/chain/get_info}
program:
  command: [nodeos]
)");
    auto loaded = load_supervise(path, {});
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->chain, "nodeos");
    EXPECT_EQ(loaded->preset.name, "nodeos");
    EXPECT_EQ(loaded->preset.readiness, "http");
    EXPECT_EQ(loaded->preset.health.method, "GET");
    EXPECT_EQ(loaded->preset.health.path, "/v1/chain/get_info");
    EXPECT_EQ(loaded->preset.head.path, "");  // none of the built-in's
}

TEST(SuperviseReader, ChainFlagPicksTheBuiltInOverTheFilesPresetForAnotherChain) {
    NodeDir dir;
    auto path = dir.write(R"(chain: mine
preset:
  readiness: tcp
)");
    SuperviseFlags flags = with_command();
    flags.chain = "lotus";
    auto loaded = load_supervise(path, flags);
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->chain, "lotus");
    EXPECT_EQ(loaded->preset.head.path, "/rpc/v1");
}

TEST(SuperviseReader, AFilesPresetWithoutAChainIsNamedByTheChainFlag) {
    NodeDir dir;
    auto path = dir.write("preset:\n  readiness: tcp\n  block_interval: 3s\n");
    SuperviseFlags flags = with_command();
    flags.chain = "geth";
    auto loaded = load_supervise(path, flags);
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->chain, "geth");
    EXPECT_EQ(loaded->preset.name, "geth");
    EXPECT_EQ(loaded->preset.readiness, "tcp");
    EXPECT_EQ(loaded->preset.block_interval, 3s);

    EXPECT_EQ(error_of("preset:\n  readiness: tcp\n"),
              "node.yaml:2:3: preset: name the preset with chain: (the chain it is for)");
}

// --- errors -----------------------------------------------------------------------------------

TEST(SuperviseReader, MissingFileIsNotFound) {
    auto loaded = load_supervise("/nonexistent/node.yaml", with_command());
    ASSERT_FALSE(loaded);
    EXPECT_EQ(loaded.error().code, core::ErrorCode::kNotFound);
    EXPECT_EQ(loaded.error().message, "supervise file \"/nonexistent/node.yaml\" does not exist");
}

TEST(SuperviseReader, UnknownKeyNamesLineAndSuggestsTheClosest) {
    EXPECT_EQ(error_of("name: n\nrestart:\n  polcy: never\n"),
              "node.yaml:3:3: restart.polcy: unknown key \"polcy\"; did you mean \"policy\"?");
    EXPECT_EQ(error_of("chain: nodeos\npreset:\n  heigth: {pointer: /h}\n"),
              "node.yaml:3:3: preset.heigth: unknown key \"heigth\"; did you mean \"height\"?");
}

TEST(SuperviseReader, BadPolicyNamesLineAndKey) {
    EXPECT_EQ(error_of("restart:\n  policy: sometimes\n"),
              "node.yaml:2:11: restart.policy: unknown restart policy \"sometimes\" (never, "
              "on-failure, always)");
    EXPECT_EQ(error_of("restart:\n  policy: on_failure\n"),
              "node.yaml:2:11: restart.policy: unknown restart policy \"on_failure\" (never, "
              "on-failure, always); did you mean \"on-failure\"?");
}

TEST(SuperviseReader, BadSignalNamesLineAndKey) {
    EXPECT_EQ(error_of("stop:\n  signal: SIGSTOP\n"),
              "node.yaml:2:11: stop.signal: unknown stop signal \"SIGSTOP\" (TERM, INT, QUIT, "
              "HUP, KILL, USR1, USR2, with or without SIG)");
    NodeDir dir;
    auto loaded = load_supervise(dir.write("stop:\n  signal: QUIT\n"), with_command());
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->stop.signal, SIGQUIT);
}

TEST(SuperviseReader, BadDurationsNameLineAndKey) {
    EXPECT_EQ(error_of("synced:\n  interval: often\n"),
              "node.yaml:2:13: synced.interval: expected a duration like \"30s\", got \"often\" (a "
              "number must come first)");
    EXPECT_EQ(error_of("stop:\n  grace: 0s\n"),
              "node.yaml:2:10: stop.grace: must be positive, got \"0s\"");
    EXPECT_EQ(error_of("restart:\n  min_delay: 2m\n  max_delay: 1m\n"),
              "node.yaml:3:14: restart.max_delay: max_delay (1m) must be at least min_delay (2m)");
}

TEST(SuperviseReader, BadAddressesNameLineAndKey) {
    EXPECT_EQ(error_of("control: localhost\n"),
              "node.yaml:1:10: control: missing port in \"localhost\"");
    EXPECT_EQ(error_of("proxy: 127.0.0.1:99999\n"),
              "node.yaml:1:8: proxy: port out of range in \"127.0.0.1:99999\" (0-65535)");
    EXPECT_EQ(error_of("upstream: ftp://127.0.0.1:21\n"),
              "node.yaml:1:11: upstream: expected an http:// or https:// url with a port and no "
              "path, like \"http://127.0.0.1:8888\", got \"ftp://127.0.0.1:21\"");
    EXPECT_EQ(error_of("upstream: http://127.0.0.1:8888/rpc\n"),
              "node.yaml:1:11: upstream: expected an http:// or https:// url with a port and no "
              "path, like \"http://127.0.0.1:8888\", got \"http://127.0.0.1:8888/rpc\"");
}

TEST(SuperviseReader, OutOfRangeNumbersNameLineAndKey) {
    EXPECT_EQ(error_of("log_ring_lines: 0\nrestart:\n  start_limit_burst: 0\n"),
              "node.yaml:1:17: log_ring_lines: expected an integer from 1 to 100000, got \"0\"\n"
              "node.yaml:3:22: restart.start_limit_burst: expected an integer from 1 to 1000000, "
              "got \"0\"");
}

TEST(SuperviseReader, MissingCommandIsAnError) {
    EXPECT_EQ(error_of("name: n\n", {}),
              "no command to supervise: give one after -- or as program.command");
    auto loaded = load_supervise("", {});
    ASSERT_FALSE(loaded);
    EXPECT_EQ(loaded.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_EQ(loaded.error().message,
              "no command to supervise: give one after -- or as program.command");
    EXPECT_EQ(error_of("program:\n  command: []\n", {}),
              "node.yaml:2:12: program.command: expected the program and its arguments, like "
              "[nodeos, --data-dir, /var/lib/nodeos]");
}

TEST(SuperviseReader, UnknownChainNamesTheKnownOnes) {
    EXPECT_EQ(error_of("chain: eos\n"),
              "node.yaml:1:8: chain: unknown chain \"eos\" (known: nodeos, geth, lotus, sim, "
              "none)");
    SuperviseFlags flags = with_command();
    flags.chain = "solana";
    EXPECT_EQ(error_of("chain: mine\npreset: {readiness: tcp}\n", flags),
              "--chain: unknown chain \"solana\" (known: nodeos, geth, lotus, sim, none, mine)");
}

TEST(SuperviseReader, BadFlagsAreNamed) {
    SuperviseFlags flags = with_command();
    flags.control = "nowhere";
    flags.upstream = "127.0.0.1:8888";
    flags.restart = "sometimes";
    flags.name = "has space";
    auto loaded = load_supervise("", flags);
    ASSERT_FALSE(loaded);
    EXPECT_EQ(loaded.error().message,
              "--name: name \"has space\" must be 1-63 of a-z, A-Z, 0-9, '-', '.' and '_'\n"
              "--control: missing port in \"nowhere\"\n"
              "--upstream: expected an http:// or https:// url with a port and no path, like "
              "\"http://127.0.0.1:8888\", got \"127.0.0.1:8888\"\n"
              "--restart: unknown restart policy \"sometimes\" (never, on-failure, always)");
}

TEST(SuperviseReader, ErrorsOfTheFileComeInFileOrderThenTheFlags) {
    SuperviseFlags flags = with_command();
    flags.restart = "maybe";
    EXPECT_EQ(error_of("stop:\n  signal: STOP\nname: \"\"\nchain: nodeos\n"
                       "preset:\n  readiness: chain\n",
                       flags),
              "node.yaml:2:11: stop.signal: unknown stop signal \"STOP\" (TERM, INT, QUIT, HUP, "
              "KILL, USR1, USR2, with or without SIG)\n"
              "node.yaml:3:7: name: name \"\" must be 1-63 of a-z, A-Z, 0-9, '-', '.' and '_'\n"
              "node.yaml:6:3: preset: readiness chain needs head (the call that reads the head) "
              "and height (where the height sits in its answer)\n"
              "--restart: unknown restart policy \"maybe\" (never, on-failure, always)");
}

}  // namespace
}  // namespace aviary::config

// --- log metrics ----------------------------------------------------------------------------

namespace aviary::config {
namespace {

/// What a loaded rule makes of `line`: the value it would record, or nullopt when it does not
/// match (the same regex, contains and value group the supervisor applies).
std::optional<double> apply(const supervisor::LogRule& rule, const std::string& line) {
    if (!rule.contains.empty() && line.find(rule.contains) == std::string::npos) {
        return std::nullopt;
    }
    std::smatch match;
    if (!std::regex_search(line, match, std::regex{rule.pattern})) {
        return std::nullopt;
    }
    return rule.value_group > 0 ? std::stod(match[rule.value_group].str()) : 1.0;
}

const supervisor::LogRule& rule_named(const std::vector<supervisor::LogRule>& rules,
                                      const std::string& name) {
    auto it = std::find_if(rules.begin(), rules.end(),
                           [&](const auto& rule) { return rule.name == name; });
    EXPECT_NE(it, rules.end()) << name;
    static const supervisor::LogRule none;
    return it == rules.end() ? none : *it;
}

TEST(LogMetrics, ThePresetsRulesReadTheirChainsLines) {
    auto nodeos = chain_preset("nodeos");
    ASSERT_TRUE(nodeos);
    const auto& head = rule_named(nodeos->log_metrics, "nodeos_head_block_num");
    EXPECT_EQ(head.kind, "gauge");
    EXPECT_EQ(apply(head,
                    "info  2026-12-04T15:01:02.500 nodeos    producer_plugin.cpp:2481      "
                    "produce_block        ] Produced block 8f2f3c1c3a0e4e8b...#1234 @ "
                    "2026-12-04T15:01:02.500 signed by eosio [trxs: 0, lib: 1232, confirmed: 0]"),
              1234.0);
    EXPECT_EQ(apply(head,
                    "info  2026-12-04T15:01:02.500 nodeos    controller.cpp:2001   "
                    "on_incoming_block  ] Received block 0b1c2d3e4f5a6b7c... #1235 @ "
                    "2026-12-04T15:01:03.000 signed by prod1 [trxs: 0, lib: 1233, conf: 0, "
                    "latency: 25 ms]"),
              1235.0);
    EXPECT_EQ(apply(head, "info  2026-12-04 nodeos  net_plugin.cpp  ] connection closed"),
              std::nullopt);
    EXPECT_EQ(apply(rule_named(nodeos->log_metrics, "nodeos_log_errors_total"),
                    "error 2026-12-04T15:01:02.500 nodeos    controller.cpp:1   ] dirty flag"),
              1.0);
    EXPECT_EQ(apply(rule_named(nodeos->log_metrics, "nodeos_log_errors_total"),
                    "info  2026-12-04T15:01:02.500 nodeos  ] no errors here"),
              std::nullopt);

    auto geth = chain_preset("geth");
    ASSERT_TRUE(geth);
    EXPECT_EQ(apply(rule_named(geth->log_metrics, "geth_imported_chain_segments_total"),
                    "INFO [12-04|15:01:02.500] Imported new chain segment number=21,345,678"),
              1.0);
    EXPECT_EQ(apply(rule_named(geth->log_metrics, "geth_log_errors_total"),
                    "ERROR[12-04|15:01:02.500] Snapshot extension registration failed"),
              1.0);

    auto lotus = chain_preset("lotus");
    ASSERT_TRUE(lotus);
    EXPECT_EQ(apply(rule_named(lotus->log_metrics, "lotus_log_errors_total"),
                    "2026-12-04T15:01:02.500Z\tERROR\tchain\tstore/store.go:123\tfailed"),
              1.0);

    auto sim = chain_preset("sim");
    ASSERT_TRUE(sim);
    EXPECT_EQ(apply(rule_named(sim->log_metrics, "sim_head_block_num"), "block 42 version v1.0.0"),
              42.0);
}

TEST(LogMetrics, AFilesRulesFollowThePresets) {
    NodeDir dir;
    auto path = dir.write(
        "chain: nodeos\n"
        "log_metrics:\n"
        "  - name: nodeos_dirty_flag_total\n"
        "    pattern: 'database dirty flag set'\n"
        "  - name: nodeos_peer_latency_ms\n"
        "    kind: gauge\n"
        "    pattern: 'peer (\\w+) latency: ([0-9]+) ms'\n"
        "    value: 2\n"
        "    labels: {peer: 1}\n"
        "    max_series: 20\n"
        "    stream: stderr\n");
    auto loaded = load_supervise(path, with_command());
    ASSERT_TRUE(loaded) << loaded.error().message;
    const auto& rules = loaded->log_metrics;
    ASSERT_EQ(rules.size(), chain_preset("nodeos")->log_metrics.size() + 2);
    EXPECT_EQ(rules.front().name, "nodeos_head_block_num");
    const auto& latency = rules.back();
    EXPECT_EQ(latency.name, "nodeos_peer_latency_ms");
    EXPECT_EQ(latency.value_group, 2);
    ASSERT_EQ(latency.labels.size(), 1U);
    EXPECT_EQ(latency.labels[0], (std::pair<std::string, int>{"peer", 1}));
    EXPECT_EQ(latency.max_series, 20);
    EXPECT_EQ(latency.stream, "stderr");
    EXPECT_EQ(apply(latency, "peer prod3 latency: 25 ms"), 25.0);
}

TEST(LogMetrics, BadRulesNameLineAndKey) {
    EXPECT_EQ(error_of("log_metrics:\n  - name: 9lives_total\n    pattern: x\n"),
              "node.yaml:2:11: log_metrics[0].name: \"9lives_total\" is not a metric name "
              "(letters, digits, _ and :, not starting with a digit)");
    EXPECT_EQ(error_of("log_metrics:\n  - name: aviary_mine_total\n    pattern: x\n"),
              "node.yaml:2:11: log_metrics[0].name: names starting with aviary_ are the "
              "sidecar's own metrics");
    EXPECT_EQ(error_of("log_metrics:\n  - name: errors\n    pattern: x\n"),
              "node.yaml:2:11: log_metrics[0].name: a counter's name ends in _total "
              "(\"errors_total\")");
    EXPECT_NE(error_of("log_metrics:\n  - name: e_total\n    pattern: 'a(b'\n")
                  .find("node.yaml:3:14: log_metrics[0].pattern: not a regular expression"),
              std::string::npos);
    EXPECT_EQ(error_of("log_metrics:\n  - name: h\n    kind: gauge\n    pattern: 'h ([0-9]+)'\n"),
              "node.yaml:2:5: log_metrics[0]: a gauge needs value: the capture group that "
              "holds the number");
    EXPECT_EQ(error_of("log_metrics:\n  - name: h\n    kind: gauge\n    pattern: 'h ([0-9]+)'\n"
                       "    value: 2\n"),
              "node.yaml:5:12: log_metrics[0].value: the pattern has 1 capture group(s), not 2");
    EXPECT_EQ(error_of("log_metrics:\n  - name: e_total\n    pattern: '(x)'\n"
                       "    labels: {node: 1}\n"),
              "node.yaml:4:14: log_metrics[0].labels.node: \"node\" cannot be a label name here "
              "(letters, digits and _, not starting with __; node is the sidecar's own)");
    EXPECT_EQ(error_of("log_metrics:\n  - name: e_total\n    pattern: x\n    max_series: 0\n"),
              "node.yaml:4:17: log_metrics[0].max_series: expected an integer from 1 to 10000, "
              "got \"0\"");
    EXPECT_EQ(error_of("log_metrics:\n  - name: e_total\n    pattern: x\n"
                       "  - name: e_total\n    pattern: y\n"),
              "node.yaml:4:11: log_metrics[1].name: log metric e_total is defined twice (also "
              "at log_metrics[0].name, line 2)");
}

TEST(LogMetrics, ANameTheChainsPresetHasIsAnErrorNamingBoth) {
    EXPECT_EQ(error_of("chain: nodeos\nlog_metrics:\n  - name: mine_total\n    pattern: x\n"
                       "  - name: nodeos_log_errors_total\n    pattern: y\n"),
              "node.yaml:5:11: log_metrics[1].name: log metric nodeos_log_errors_total is "
              "defined twice (the built-in nodeos preset has it too)");
    // The file's own preset: both places are in the file.
    EXPECT_EQ(error_of("chain: mine\npreset:\n  readiness: tcp\n  log_metrics:\n"
                       "    - name: a_total\n      pattern: x\n"
                       "log_metrics:\n  - name: a_total\n    pattern: y\n"),
              "node.yaml:8:11: log_metrics[0].name: log metric a_total is defined twice (also "
              "at preset.log_metrics[0].name, line 5)");
    // Another chain's preset does not count.
    NodeDir dir;
    auto loaded =
        load_supervise(dir.write("chain: geth\nlog_metrics:\n  - name: nodeos_log_errors_total\n"
                                 "    pattern: x\n"),
                       with_command());
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->log_metrics.back().name, "nodeos_log_errors_total");
}

TEST(LogMetrics, AFilesOwnPresetsRulesComeFirst) {
    NodeDir dir;
    auto loaded = load_supervise(dir.write("chain: mine\npreset:\n  readiness: tcp\n"
                                           "  log_metrics:\n"
                                           "    - name: a_total\n      pattern: x\n"
                                           "log_metrics:\n  - name: b_total\n    pattern: y\n"),
                                 with_command());
    ASSERT_TRUE(loaded) << loaded.error().message;
    ASSERT_EQ(loaded->log_metrics.size(), 2U);
    EXPECT_EQ(loaded->log_metrics[0].name, "a_total");
    EXPECT_EQ(loaded->log_metrics[1].name, "b_total");
}

TEST(LogMetrics, UnknownKeyInARuleNamesLineAndKey) {
    EXPECT_EQ(error_of("log_metrics:\n  - name: e_total\n    patern: x\n"),
              "node.yaml:3:5: log_metrics[0].patern: unknown key \"patern\"; did you mean "
              "\"pattern\"?");
}

TEST(LogMetrics, UmaskIsOctal) {
    NodeDir dir;
    auto loaded = load_supervise(dir.write("program:\n  umask: \"0027\"\n"), with_command());
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->program.umask, 027U);
    EXPECT_NE(error_of("program:\n  umask: \"9\"\n").find("expected an octal umask"),
              std::string::npos);
    EXPECT_NE(error_of("program:\n  umask: 0o27\n").find("expected an octal umask"),
              std::string::npos);
}

}  // namespace
}  // namespace aviary::config

namespace aviary::config {
namespace {

TEST(SuperviseReader, AReferenceNodeAndItsLagGoTogether) {
    NodeDir dir;
    auto loaded = load_supervise(
        dir.write("synced:\n  reference: http://10.0.0.7:8888\n  max_lag_blocks: 50\n"),
        with_command());
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->synced.reference, "http://10.0.0.7:8888");
    EXPECT_EQ(loaded->synced.max_lag_blocks, 50);
    EXPECT_EQ(error_of("synced:\n  reference: http://10.0.0.7:8888\n"),
              "node.yaml:2:14: synced.reference: reference and max_lag_blocks go together: the "
              "node to compare with, and how far behind it is still synced");
    EXPECT_NE(
        error_of("synced:\n  reference: ftp://x\n  max_lag_blocks: 5\n").find("synced.reference"),
        std::string::npos);
}

// --- backups (docs/backups.md) ----------------------------------------------------------------

TEST(SuperviseBackups, TheFileSetsTheTargetAndTheExcludesFollowTheBuiltInsAndThePresets) {
    NodeDir dir;
    auto loaded = load_supervise(dir.write(R"(chain: nodeos
chain_id: aca376f206b8fc25a6ed44dbdc66547c36c6c33e3a119ffbeaef943642f0e906
data_dir: /data
backup:
  dir: /backups
  keep: 3
  exclude: [wallet/*.json, secrets]
  resume_timeout: 2m
  restore_on_boot: false
)"),
                                 with_command());
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->chain_id, "aca376f206b8fc25a6ed44dbdc66547c36c6c33e3a119ffbeaef943642f0e906");
    EXPECT_EQ(loaded->backup.dir, "/backups");
    EXPECT_EQ(loaded->backup.keep, 3);
    EXPECT_EQ(loaded->backup.resume_timeout, 2min);
    EXPECT_FALSE(loaded->backup.restore_on_boot);
    Strings expected = supervisor::kBackupExcludes;
    expected.emplace_back("config.ini");  // nodeos's preset: its signature providers
    expected.emplace_back("wallet/*.json");
    expected.emplace_back("secrets");
    EXPECT_EQ(loaded->backup.exclude, expected);
    EXPECT_EQ(loaded->preset.chain_data, "blocks");
    EXPECT_EQ(loaded->preset.dirty_log, "database dirty flag set");
}

TEST(SuperviseBackups, TheFlagsSetTheChainIdAndTheTarget) {
    SuperviseFlags flags = with_command();
    flags.chain_id = "mainnet";
    flags.backup_dir = "/mnt/backups";
    flags.data_dir = "/data";
    auto loaded = load_supervise("", flags);
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->chain_id, "mainnet");
    EXPECT_EQ(loaded->backup.dir, "/mnt/backups");
    EXPECT_EQ(loaded->backup.keep, 5);
    EXPECT_TRUE(loaded->backup.restore_on_boot);
}

TEST(SuperviseBackups, BadValuesNameLineAndKey) {
    EXPECT_EQ(error_of("data_dir: /d\nbackup:\n  keep: 0\n"),
              "node.yaml:3:9: backup.keep: expected an integer from 1 to 10000, got \"0\"");
    EXPECT_EQ(error_of("data_dir: /d\nbackup:\n  exclude: [/etc/keys]\n"),
              "node.yaml:3:13: backup.exclude[0]: \"/etc/keys\" must be a non-empty glob "
              "relative to the data dir");
    EXPECT_EQ(error_of("chain_id: a/b\n"),
              "node.yaml:1:11: chain_id: chain id \"a/b\" must be at most 128 of a-z, A-Z, 0-9, "
              "'-', '.', '_' and ':'");
    EXPECT_EQ(error_of("backup:\n  dir: /b\n"),
              "backup.dir needs data_dir (--data-dir): the directory the backups copy");
    SuperviseFlags flags = with_command();
    flags.chain_id = "x y";
    EXPECT_EQ(error_of("", flags),
              "--chain-id: chain id \"x y\" must be at most 128 of a-z, A-Z, 0-9, '-', '.', '_' "
              "and ':'");
}

TEST(SuperviseBackups, AStreamedFormatTakesUploadAndDownloadCommandsTogether) {
    NodeDir dir;
    auto loaded = load_supervise(dir.write(R"(data_dir: /d
backup:
  dir: /b
  format: tar.zst
  upload: [rclone, rcat, "remote:bk/{{name}}.tar.zst"]
  download: [rclone, cat, "remote:bk/{{name}}.tar.zst"]
  compression_level: 3
  compression_threads: 0
  idle_timeout: 2m
)"),
                                 with_command());
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_TRUE(loaded->backup.format.archive);
    EXPECT_EQ(loaded->backup.format.upload,
              (std::vector<std::string>{"rclone", "rcat", "remote:bk/{{name}}.tar.zst"}));
    EXPECT_EQ(loaded->backup.format.download,
              (std::vector<std::string>{"rclone", "cat", "remote:bk/{{name}}.tar.zst"}));
    EXPECT_EQ(loaded->backup.format.level, 3);
    EXPECT_EQ(loaded->backup.format.threads, 0);
    EXPECT_EQ(loaded->backup.format.idle, core::Millis{120'000});

    EXPECT_EQ(error_of("data_dir: /d\nbackup:\n  format: zip\n"),
              "node.yaml:3:11: backup.format: unknown backup format \"zip\" (dir, tar.zst)");
    EXPECT_EQ(error_of("data_dir: /d\nbackup:\n  upload: [rclone, rcat, x]\n  download: [cat]\n"),
              "node.yaml:3:11: backup.upload: upload takes a stream: it needs format: tar.zst");
    EXPECT_EQ(error_of("data_dir: /d\nbackup:\n  format: tar.zst\n  upload: [rclone, rcat, x]\n"),
              "node.yaml:4:11: backup.upload: upload needs download: the command that gives a "
              "backup back for a restore");
    EXPECT_EQ(error_of("data_dir: /d\nbackup:\n  format: tar.zst\n  download: [cat, x]\n"),
              "node.yaml:4:13: backup.download: download goes with upload");
    EXPECT_EQ(error_of("data_dir: /d\nbackup:\n  format: tar.zst\n  upload: []\n"),
              "node.yaml:4:11: backup.upload: expected the program and its arguments, like "
              "[rclone, rcat, \"remote:backups/{{name}}.tar.zst\"]");
}

TEST(SuperviseBackups, SyncCommandsPushAndPullTogetherWithTheDirFormat) {
    NodeDir dir;
    auto loaded = load_supervise(dir.write(R"(data_dir: /d
backup:
  dir: /b
  push: [rsync, -a, --delete, "{{source}}/", "backup-host:/backups/{{name}}/"]
  pull: [rsync, -a, "backup-host:/backups/{{name}}/", "{{destination}}/"]
  idle_timeout: 10m
)"),
                                 with_command());
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_FALSE(loaded->backup.format.archive);
    EXPECT_EQ(loaded->backup.format.push,
              (std::vector<std::string>{"rsync", "-a", "--delete", "{{source}}/",
                                        "backup-host:/backups/{{name}}/"}));
    EXPECT_EQ(loaded->backup.format.pull,
              (std::vector<std::string>{"rsync", "-a", "backup-host:/backups/{{name}}/",
                                        "{{destination}}/"}));
    EXPECT_EQ(loaded->backup.format.idle, core::Millis{600'000});

    EXPECT_EQ(error_of("data_dir: /d\nbackup:\n  push: [rsync, -a, \"{{source}}/\", r]\n"),
              "node.yaml:3:9: backup.push: push needs pull: the command that copies a backup "
              "back for a restore");
    EXPECT_EQ(error_of("data_dir: /d\nbackup:\n  pull: [rsync, -a, r, \"{{destination}}\"]\n"),
              "node.yaml:3:9: backup.pull: pull goes with push");
    EXPECT_EQ(error_of("data_dir: /d\nbackup:\n  format: tar.zst\n  push: [rsync, "
                       "\"{{source}}/\", r]\n  pull: [rsync, r, \"{{destination}}\"]\n"),
              "node.yaml:4:9: backup.push: push copies a directory tree: it needs format: dir "
              "(tar.zst takes upload and download)");
    EXPECT_EQ(error_of("data_dir: /d\nbackup:\n  push: [rsync, -a, /data/, r]\n  pull: [rsync, "
                       "r, \"{{destination}}\"]\n"),
              "node.yaml:3:9: backup.push: push needs {{source}} in an argument, the tree it "
              "copies, like [rsync, -a, --delete, \"{{source}}/\", "
              "\"backup-host:/backups/{{name}}/\"]");
    EXPECT_EQ(error_of("data_dir: /d\nbackup:\n  push: [rsync, \"{{source}}/\", r]\n  pull: "
                       "[rsync, r, /data/]\n"),
              "node.yaml:4:9: backup.pull: pull needs {{destination}} in an argument, the "
              "directory it fills, like [rsync, -a, \"backup-host:/backups/{{name}}/\", "
              "\"{{destination}}/\"]");
    EXPECT_EQ(
        error_of("data_dir: /d\nbackup:\n  push: []\n  pull: [rsync, r, \"{{destination}}\"]\n"),
        "node.yaml:3:9: backup.push: expected the program and its arguments, like [rsync, "
        "-a, --delete, \"{{source}}/\", \"backup-host:/backups/{{name}}/\"]");
}

TEST(SuperviseBackups, APresetSaysWhatItsDataDirHolds) {
    NodeDir dir;
    auto loaded = load_supervise(dir.write(R"(chain: cosmos
preset:
  readiness: process
  chain_data: data/blockstore.db
  dirty_marker: data/.dirty
  dirty_log: "panic: corrupted"
  backup_exclude: [config/node_key.json]
  signer_state: {path: data/priv_validator_state.json, height: /height}
)"),
                                 with_command());
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->preset.chain_data, "data/blockstore.db");
    EXPECT_EQ(loaded->preset.dirty_marker, "data/.dirty");
    EXPECT_EQ(loaded->preset.dirty_log, "panic: corrupted");
    EXPECT_EQ(loaded->preset.signer_state, "data/priv_validator_state.json");
    EXPECT_EQ(loaded->preset.signer_height, "/height");
    EXPECT_EQ(loaded->backup.exclude.back(), "config/node_key.json");

    EXPECT_EQ(error_of("chain: c\npreset:\n  chain_data: ../up\n"),
              "node.yaml:3:15: preset.chain_data: \"../up\" must be a path relative to the data "
              "dir");
    EXPECT_EQ(error_of("chain: c\npreset:\n  signer_state: {path: s.json, height: height}\n"),
              "node.yaml:3:40: preset.signer_state.height: expected a JSON pointer like "
              "\"/height\"");
}

TEST(SuperviseRender, RendersAreReadAndATemplateReadableNowIsCheckedNow) {
    NodeDir dir;
    const auto tmpl = (dir.path() / "config.ini").string();
    std::ofstream{tmpl} << "agent-name = {{ agent }}\n{{ signature_providers }}\nx = {{ x }}\n";
    auto loaded = load_supervise(dir.write(fmt::format(R"(render:
  - template: {}
    output: /data/config.ini
    values:
      agent: bp-1
      x: {{file: /run/secrets/x}}
    keys_url: http://127.0.0.1:6666/v1/wallet/get_public_keys
    restart_on_change: false
)",
                                                       tmpl)),
                                 with_command());
    ASSERT_TRUE(loaded) << loaded.error().message;
    ASSERT_EQ(loaded->render.size(), 1U);
    const auto& r = loaded->render.front();
    EXPECT_EQ(r.template_path, tmpl);
    EXPECT_EQ(r.output, "/data/config.ini");
    ASSERT_EQ(r.values.size(), 2U);
    EXPECT_EQ(r.values[1].first, "x");
    EXPECT_EQ(r.values[1].second.kind, supervisor::ValueSource::Kind::kFile);
    EXPECT_EQ(r.values[1].second.text, "/run/secrets/x");
    EXPECT_EQ(r.keys_url, "http://127.0.0.1:6666/v1/wallet/get_public_keys");
    EXPECT_FALSE(r.restart_on_change);

    auto missing = error_of(fmt::format("render:\n  - template: {}\n    output: /o\n", tmpl));
    EXPECT_NE(missing.find("render[0].template: the template uses {{ agent }}, which has no value"),
              std::string::npos)
        << missing;
    EXPECT_EQ(error_of("render:\n  - output: /o\n"),
              "node.yaml:2:5: render[0]: a render needs template (the source) and output (the "
              "file the node reads)");
    EXPECT_EQ(error_of("render:\n  - {template: /t, output: /o, values: {a: [1]}}\n"),
              "node.yaml:2:44: render[0].values.a: expected a string, got a sequence");
}

}  // namespace
}  // namespace aviary::config
