#include "config/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace aviary::config {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

const std::string kExample = std::string{AVIARY_SOURCE_DIR} + "/examples/aviary.yaml";

// Each helper names every field with a structured binding, which stops compiling when a field
// is added to a settings struct: the new field must then be compared here, written in
// examples/aviary.yaml and read by the loader, so the example stays the whole truth.
void expect_same(const net::ServerSettings& want, const net::ServerSettings& got) {
    const auto& [listen, io_threads, blocking_threads, max_header_bytes, max_body_bytes,
                 read_timeout, idle_timeout, write_timeout, max_connections, shutdown_grace] = want;
    EXPECT_EQ(got.listen, listen);
    EXPECT_EQ(got.io_threads, io_threads);
    EXPECT_EQ(got.blocking_threads, blocking_threads);
    EXPECT_EQ(got.max_header_bytes, max_header_bytes);
    EXPECT_EQ(got.max_body_bytes, max_body_bytes);
    EXPECT_EQ(got.read_timeout, read_timeout);
    EXPECT_EQ(got.idle_timeout, idle_timeout);
    EXPECT_EQ(got.write_timeout, write_timeout);
    EXPECT_EQ(got.max_connections, max_connections);
    EXPECT_EQ(got.shutdown_grace, shutdown_grace);
}

void expect_same(const store::Settings& want, const store::Settings& got) {
    const auto& [driver, path, synchronous, read_connections, busy_timeout, event_retention,
                 retention_sweep] = want;
    EXPECT_EQ(got.driver, driver);
    EXPECT_EQ(got.path, path);
    EXPECT_EQ(got.synchronous, synchronous);
    EXPECT_EQ(got.read_connections, read_connections);
    EXPECT_EQ(got.busy_timeout, busy_timeout);
    EXPECT_EQ(got.event_retention, event_retention);
    EXPECT_EQ(got.retention_sweep, retention_sweep);
}

void expect_same(const core::NodeSpec& want, const core::NodeSpec& got) {
    const auto& [name, driver, image_tag, labels, note] = want;
    EXPECT_EQ(got.name, name);
    EXPECT_EQ(got.driver, driver);
    EXPECT_EQ(got.image_tag, image_tag);
    EXPECT_EQ(got.labels, labels);
    EXPECT_EQ(got.note, note);
}

void expect_same(const fleet::Settings& want, const fleet::Settings& got) {
    const auto& [lease_ttl, max_lease_ttl, expiry_sweep, max_wait, wait_heartbeat, nodes] = want;
    EXPECT_EQ(got.max_wait, max_wait);
    EXPECT_EQ(got.wait_heartbeat, wait_heartbeat);
    EXPECT_EQ(got.lease_ttl, lease_ttl);
    EXPECT_EQ(got.max_lease_ttl, max_lease_ttl);
    EXPECT_EQ(got.expiry_sweep, expiry_sweep);
    ASSERT_EQ(got.nodes.size(), nodes.size());
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        expect_same(nodes[i], got.nodes[i]);
    }
}

void expect_same(const Token& want, const Token& got) {
    const auto& [identity, role, file, env, secret] = want;
    EXPECT_EQ(got.identity, identity);
    EXPECT_EQ(got.role, role);
    EXPECT_EQ(got.file, file);
    EXPECT_EQ(got.env, env);
    EXPECT_EQ(got.secret, secret);
}

/// Everything but `source` (which names where each came from).
void expect_same(const Config& want, const Config& got) {
    const auto& [source, data_dir, server, store, fleet, auth, log] = want;
    (void)source;
    EXPECT_EQ(got.data_dir, data_dir);
    expect_same(server, got.server);
    expect_same(store, got.store);
    expect_same(fleet, got.fleet);
    const auto& [tokens, allowed_hosts] = auth;
    EXPECT_EQ(got.auth.allowed_hosts, allowed_hosts);
    ASSERT_EQ(got.auth.tokens.size(), tokens.size());
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        expect_same(tokens[i], got.auth.tokens[i]);
    }
    const auto& [level, format] = log;
    EXPECT_EQ(got.log.level, level);
    EXPECT_EQ(got.log.format, format);
}

/// The default-constructed Config with the demo fleet the example declares.
Config default_with_demo_fleet() {
    Config want;
    for (const char* name : {"lotus-0", "lotus-1", "lotus-2"}) {
        want.fleet.nodes.push_back(core::NodeSpec{.name = name,
                                                  .driver = "sim",
                                                  .image_tag = "v1.0.0",
                                                  .labels = {{"chain", "lotus"}},
                                                  .note = ""});
    }
    return want;
}

std::string read_text(const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::string error_of(std::string_view yaml) {
    auto loaded = load_string(yaml, "aviary.yaml");
    if (loaded) {
        return "(loaded without error)";
    }
    EXPECT_EQ(loaded.error().code, core::ErrorCode::kInvalidArgument);
    return loaded.error().message;
}

/// A directory removed at the end of the test.
class TempDir {
public:
    TempDir() {
        path_ = fs::temp_directory_path() / ("aviary-config-test-" + std::to_string(::getpid()) +
                                             "-" + std::to_string(next_++));
        fs::create_directories(path_);
    }
    ~TempDir() { fs::remove_all(path_); }
    const fs::path& path() const { return path_; }
    fs::path write(const std::string& name, const std::string& text) const {
        auto file = path_ / name;
        std::ofstream{file, std::ios::binary} << text;
        return file;
    }

private:
    static inline int next_ = 0;
    fs::path path_;
};

// --- the example is the default ---------------------------------------------------------------

TEST(Config, EmbeddedDefaultIsDefaultConfigWithDemoFleet) {
    auto loaded = load_string(embedded_default(), "aviary.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    expect_same(default_with_demo_fleet(), *loaded);
    EXPECT_EQ(loaded->source, "aviary.yaml");
}

TEST(Config, ExampleFileIsDefaultConfigWithDemoFleet) {
    auto loaded = load_file(kExample);
    ASSERT_TRUE(loaded) << loaded.error().message;
    expect_same(default_with_demo_fleet(), *loaded);
    EXPECT_EQ(loaded->source, kExample);
}

TEST(Config, EmbeddedDefaultIsTheExampleFileVerbatim) {
    EXPECT_EQ(embedded_default(), read_text(kExample));
}

TEST(Config, EmptyDocumentIsDefaultConfigWithoutNodes) {
    auto loaded = load_string("# nothing to change\n", "empty.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    expect_same(Config{}, *loaded);
}

TEST(Config, ReadsEveryKindOfValue) {
    auto loaded = load_string(R"(
data_dir: /srv/aviary
log: {level: debug, format: json}
server:
  listen: 0.0.0.0:8080
  io_threads: 4
  max_header_bytes: 8192
  max_body_bytes: 2MiB
  idle_timeout: 1m30s
store: {synchronous: normal, path: ":memory:", event_retention: 7d}
fleet:
  lease_ttl: 2h
  nodes:
    - name: geth-0
      driver: helm
      labels: {chain: geth, region: eu}
      note: shared with the indexer team
)",
                              "t.yaml");
    ASSERT_TRUE(loaded) << loaded.error().message;
    EXPECT_EQ(loaded->data_dir, "/srv/aviary");
    EXPECT_EQ(loaded->log.level, "debug");
    EXPECT_EQ(loaded->log.format, "json");
    EXPECT_EQ(loaded->server.listen, "0.0.0.0:8080");
    EXPECT_EQ(loaded->server.io_threads, 4);
    EXPECT_EQ(loaded->server.max_header_bytes, 8192u);
    EXPECT_EQ(loaded->server.max_body_bytes, 2u * 1024 * 1024);
    EXPECT_EQ(loaded->server.idle_timeout, 90s);
    EXPECT_EQ(loaded->store.synchronous, "normal");
    EXPECT_EQ(loaded->store.path, ":memory:");
    EXPECT_EQ(loaded->store.event_retention, 7 * 24h);
    EXPECT_EQ(loaded->fleet.lease_ttl, 2h);
    ASSERT_EQ(loaded->fleet.nodes.size(), 1u);
    EXPECT_EQ(loaded->fleet.nodes[0].driver, "helm");
    EXPECT_EQ(loaded->fleet.nodes[0].image_tag, "");
    EXPECT_EQ(loaded->fleet.nodes[0].labels, (core::Labels{{"chain", "geth"}, {"region", "eu"}}));
    EXPECT_EQ(loaded->fleet.nodes[0].note, "shared with the indexer team");
}

// --- error format -----------------------------------------------------------------------------

TEST(Config, UnknownKeyNamesPositionAndSuggestsClosest) {
    EXPECT_EQ(error_of("fleet:\n  lease_tl: 1h\n"),
              "aviary.yaml:2:3: fleet.lease_tl: unknown key \"lease_tl\"; did you mean "
              "\"lease_ttl\"?");
}

TEST(Config, UnknownKeyFarFromEveryKeyHasNoSuggestion) {
    EXPECT_EQ(error_of("colour: blue\n"), "aviary.yaml:1:1: colour: unknown key \"colour\"");
}

TEST(Config, BadDurationNamesFileLineColumnAndPath) {
    std::string yaml;
    for (int i = 0; i < 12; ++i) {
        yaml += "# padding\n";
    }
    yaml += "fleet:\n";
    yaml += "  lease_ttl:    thirty\n";  // line 14, value at column 17
    auto message = error_of(yaml);
    EXPECT_EQ(message, "aviary.yaml:14:17: fleet.lease_ttl: " +
                           core::parse_duration("thirty").error().message);
    EXPECT_TRUE(message.starts_with(
        R"(aviary.yaml:14:17: fleet.lease_ttl: expected a duration like "30s", got "thirty")"))
        << message;
}

TEST(Config, YamlSyntaxErrorHasPosition) {
    EXPECT_EQ(error_of("server:\n  listen: [127.0.0.1:1337\nfleet: {}\n"),
              "aviary.yaml:3:6: end of sequence flow not found");
}

TEST(Config, CollectsEveryErrorInDocumentOrder) {
    EXPECT_EQ(error_of("server:\n  io_threads: 0\n  read_timeout: -1s\nlog: {level: loud}\n"),
              "aviary.yaml:2:15: server.io_threads: expected an integer from 1 to 64, got \"0\"\n"
              "aviary.yaml:3:17: server.read_timeout: " +
                  core::parse_duration("-1s").error().message +
                  "\n"
                  "aviary.yaml:4:14: log.level: unknown log level \"loud\" (trace, debug, info, "
                  "warn, error, off)");
}

TEST(Config, RepeatedKeyIsAnError) {
    EXPECT_EQ(error_of("data_dir: a\ndata_dir: b\n"),
              "aviary.yaml:2:1: data_dir: key \"data_dir\" appears twice");
}

TEST(Config, WrongShapeIsAnError) {
    EXPECT_EQ(error_of("server: [1, 2]\n"),
              "aviary.yaml:1:9: server: expected a mapping, got a sequence");
    EXPECT_EQ(error_of("- a\n"), "aviary.yaml:1:1: expected a mapping, got a sequence");
    EXPECT_EQ(error_of("data_dir:\n"), "aviary.yaml:1:1: data_dir: expected a string, got nothing");
}

TEST(Config, MissingFileNamesThePath) {
    auto loaded = load_file("/nonexistent/aviary.yaml");
    ASSERT_FALSE(loaded);
    EXPECT_EQ(loaded.error().code, core::ErrorCode::kNotFound);
    EXPECT_EQ(loaded.error().message, "config file \"/nonexistent/aviary.yaml\" does not exist");
}

TEST(Config, FileErrorsNameTheFile) {
    TempDir dir;
    auto file = dir.write("bad.yaml", "fleet:\n  expiry_sweep: soon\n");
    auto loaded = load_file(file.string());
    ASSERT_FALSE(loaded);
    EXPECT_TRUE(loaded.error().message.starts_with(file.string() + ":2:17: fleet.expiry_sweep: "))
        << loaded.error().message;
}

// --- validation -------------------------------------------------------------------------------

TEST(Config, ListenMustBeHostPort) {
    auto message = error_of("server:\n  listen: nowhere\n");
    EXPECT_TRUE(message.starts_with("aviary.yaml:2:11: server.listen: ")) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(Config, ThreadCountsAreBounded) {
    EXPECT_EQ(error_of("server: {io_threads: 65}\n"),
              "aviary.yaml:1:22: server.io_threads: expected an integer from 1 to 64, got \"65\"");
    EXPECT_EQ(error_of("server: {blocking_threads: many}\n"),
              "aviary.yaml:1:28: server.blocking_threads: expected an integer from 1 to 1024, got "
              "\"many\"");
}

TEST(Config, DurationsMustBePositive) {
    EXPECT_EQ(error_of("store: {busy_timeout: 0s}\n"),
              "aviary.yaml:1:23: store.busy_timeout: must be positive, got \"0s\"");
}

TEST(Config, MaxLeaseTtlMustCoverLeaseTtl) {
    EXPECT_EQ(error_of("fleet:\n  lease_ttl: 2h\n  max_lease_ttl: 1h\n"),
              "aviary.yaml:3:18: fleet.max_lease_ttl: max_lease_ttl (1h) must be at least "
              "lease_ttl (2h)");
}

TEST(Config, PostgresIsRefusedForNow) {
    EXPECT_EQ(
        error_of("store: {driver: postgres}\n"),
        "aviary.yaml:1:17: store.driver: \"postgres\" arrives with scale-out; use \"sqlite\"");
    EXPECT_EQ(
        error_of("store: {synchronous: off}\n"),
        "aviary.yaml:1:22: store.synchronous: unknown synchronous mode \"off\" (full, normal)");
}

TEST(Config, LogFormatIsTextOrJson) {
    EXPECT_EQ(error_of("log: {format: xml}\n"),
              "aviary.yaml:1:15: log.format: unknown log format \"xml\" (text, json)");
    EXPECT_TRUE(load_string("log: {level: warning}\n", "t.yaml"));
}

TEST(Config, NodeNamesAreDnsLabels) {
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - name: Lotus_0\n"),
              "aviary.yaml:3:13: fleet.nodes[0].name: node name \"Lotus_0\" is not a DNS-1123 "
              "label (1-63 of a-z, 0-9 and '-', starting and ending with a letter or digit)");
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - driver: sim\n"),
              "aviary.yaml:3:7: fleet.nodes[0]: a node needs a name");
}

TEST(Config, DuplicateNodesAreRefused) {
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - name: lotus-0\n    - name: lotus-0\n"),
              "aviary.yaml:4:13: fleet.nodes[1].name: node \"lotus-0\" is declared twice (first "
              "at line 3)");
}

TEST(Config, NodeDriverAndLabelsAreChecked) {
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - {name: a, driver: ssh}\n"),
              "aviary.yaml:3:25: fleet.nodes[0].driver: unknown node driver \"ssh\" (sim, helm)");
    EXPECT_EQ(error_of("fleet:\n  nodes:\n    - {name: a, labels: {\"\": x}}\n"),
              "aviary.yaml:3:26: fleet.nodes[0].labels.: keys must not be empty");
}

// --- secrets ----------------------------------------------------------------------------------

TEST(Config, TokenSecretComesFromFileWithNewlineTrimmed) {
    TempDir dir;
    dir.write("alice.token", "s3cret-alice\n");
    // Relative token files are read from the config file's directory.
    auto file = dir.write("aviary.yaml",
                          "auth:\n  tokens:\n    - {identity: alice, role: admin, file: "
                          "alice.token}\n");
    auto loaded = load_file(file.string());
    ASSERT_TRUE(loaded) << loaded.error().message;
    ASSERT_EQ(loaded->auth.tokens.size(), 1u);
    EXPECT_EQ(loaded->auth.tokens[0].identity, "alice");
    EXPECT_EQ(loaded->auth.tokens[0].role, "admin");
    EXPECT_EQ(loaded->auth.tokens[0].file, "alice.token");
    EXPECT_EQ(loaded->auth.tokens[0].secret, "s3cret-alice");
}

TEST(Config, TokenSecretComesFromEnvironment) {
    ::setenv("AVIARY_TEST_CI_TOKEN", "s3cret-ci", 1);
    auto loaded = load_string("auth:\n  tokens:\n    - {identity: ci, env: AVIARY_TEST_CI_TOKEN}\n",
                              "t.yaml");
    ::unsetenv("AVIARY_TEST_CI_TOKEN");
    ASSERT_TRUE(loaded) << loaded.error().message;
    ASSERT_EQ(loaded->auth.tokens.size(), 1u);
    EXPECT_EQ(loaded->auth.tokens[0].role, "user");
    EXPECT_EQ(loaded->auth.tokens[0].secret, "s3cret-ci");
}

TEST(Config, InlineSecretIsRefusedWithoutEchoingIt) {
    for (const char* key : {"token", "secret"}) {
        auto message = error_of(std::string{"auth:\n  tokens:\n    - identity: alice\n      "} +
                                key + ": hunter2\n");
        EXPECT_EQ(message, std::string{"aviary.yaml:4:"} + (key[0] == 't' ? "14" : "15") +
                               ": auth.tokens[0]." + key +
                               ": tokens must come from a file or an environment variable, "
                               "never inline");
        EXPECT_EQ(message.find("hunter2"), std::string::npos);
    }
}

TEST(Config, MissingEnvironmentVariableIsNamed) {
    ::unsetenv("AVIARY_TEST_UNSET_TOKEN");
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - {identity: ci, env: AVIARY_TEST_UNSET_TOKEN}\n"),
              "aviary.yaml:3:27: auth.tokens[0].env: environment variable "
              "\"AVIARY_TEST_UNSET_TOKEN\" is not set");
    ::setenv("AVIARY_TEST_EMPTY_TOKEN", "", 1);
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - {identity: ci, env: AVIARY_TEST_EMPTY_TOKEN}\n"),
              "aviary.yaml:3:27: auth.tokens[0].env: environment variable "
              "\"AVIARY_TEST_EMPTY_TOKEN\" is empty");
    ::unsetenv("AVIARY_TEST_EMPTY_TOKEN");
}

TEST(Config, MissingOrEmptyTokenFileIsNamed) {
    TempDir dir;
    auto empty = dir.write("empty.token", "\n");
    auto missing = dir.path() / "missing.token";
    auto message = error_of("auth:\n  tokens:\n    - {identity: a, file: " + empty.string() +
                            "}\n    - {identity: b, file: " + missing.string() + "}\n");
    EXPECT_EQ(message, "aviary.yaml:3:27: auth.tokens[0].file: token file \"" + empty.string() +
                           "\" is empty\n"
                           "aviary.yaml:4:27: auth.tokens[1].file: cannot read token file \"" +
                           missing.string() + "\": No such file or directory");
}

TEST(Config, TokenNeedsExactlyOneSourceAndUniqueIdentity) {
    ::setenv("AVIARY_TEST_TOKEN", "x", 1);
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - {identity: a}\n"),
              "aviary.yaml:3:7: auth.tokens[0]: a token needs exactly one of \"file\" or \"env\"");
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - {identity: a, env: X, file: y}\n"),
              "aviary.yaml:3:7: auth.tokens[0]: a token needs exactly one of \"file\" or \"env\"");
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - {env: AVIARY_TEST_TOKEN}\n"),
              "aviary.yaml:3:7: auth.tokens[0]: a token needs a non-empty identity");
    EXPECT_EQ(error_of("auth:\n  tokens:\n    - {identity: a, env: AVIARY_TEST_TOKEN}\n"
                       "    - {identity: a, env: AVIARY_TEST_TOKEN}\n"),
              "aviary.yaml:4:18: auth.tokens[1].identity: token identity \"a\" is declared twice "
              "(first at line 3)");
    EXPECT_EQ(
        error_of("auth:\n  tokens:\n    - {identity: a, role: root, env: AVIARY_TEST_TOKEN}\n"),
        "aviary.yaml:3:27: auth.tokens[0].role: unknown role \"root\" (admin, user)");
    ::unsetenv("AVIARY_TEST_TOKEN");
}

}  // namespace
}  // namespace aviary::config
