// `aviary supervise`'s backups and restores through the real binary: the sim node's data dir,
// the control API over HTTP, restores at start (docs/backups.md).
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "supervise_support.hpp"
#include "support/ports.hpp"
#include "support/server_process.hpp"

namespace aviary::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

/// The sim node's default chain id, as it reports it.
constexpr std::string_view kChainId =
    "081ee42fa1a89993cfe0f0b80bbe898e64832c5ec9b3a3ede900423d728a5009";

/// A JSON string's text ("" for anything else), to compare with std::string.
std::string text(const json::value& value) {
    return value.is_string() ? std::string{value.as_string()} : std::string{};
}

std::int64_t height_in(const fs::path& data) {
    const std::string text = read_file((data / "height").string());
    return text.empty() ? -1 : std::stoll(text);
}

/// A sim node under a sidecar with backups to `backups`; the data and backup dirs outlive it,
/// so a second sidecar can start on them.
struct BackedUpNode {
    BackedUpNode(const fs::path& data, const fs::path& backups, const std::string& config = {})
        : port(free_port()),
          sidecar({"--chain", "sim", "--proxy", "127.0.0.1:0", "--upstream",
                   "http://127.0.0.1:" + std::to_string(port), "--data-dir", data.string(),
                   "--backup-dir", backups.string(), "--chain-id", std::string{kChainId}},
                  sim_node(data.string(), port),
                  {},
                  config) {}

    bool wait_ready() {
        return sidecar.wait_started() &&
               wait_until([&] { return sidecar.status()["readiness"] == "ready"; }, 30s);
    }
    json::array backups() {
        auto listed = sidecar.call("GET", "/v1/list_backups");
        EXPECT_EQ(listed.status, 200) << listed.body;
        boost::system::error_code ec;
        auto value = json::parse(listed.body, ec);
        if (ec || !value.is_object()) {
            ADD_FAILURE() << listed.body;
            return {};
        }
        return value.at("backups").as_array();
    }

    int port;
    Sidecar sidecar;
};

class SidecarBackups : public ::testing::Test {
protected:
    fs::path data() const { return fs::path{dir_.path()} / "data"; }
    fs::path target() const { return fs::path{dir_.path()} / "backups"; }
    TempDir dir_;
};

TEST_F(SidecarBackups, ABackupAndARestoreRoundTripThroughTheControlApi) {
    BackedUpNode node{data(), target()};
    ASSERT_TRUE(node.wait_ready()) << node.sidecar.err();
    ASSERT_TRUE(wait_until([&] { return height_in(data()) >= 5; }, 30s));

    auto made = node.sidecar.command("backup", "backupTag=t1");
    ASSERT_EQ(made.status, 200) << made.body << node.sidecar.err();
    EXPECT_EQ(made.body, "Success: backup completed");
    auto backups = node.backups();
    ASSERT_EQ(backups.size(), 1U);
    const auto& entry = backups[0].as_object();
    EXPECT_EQ(entry.at("usable"), true);
    EXPECT_EQ(entry.at("tag"), "t1");
    EXPECT_EQ(text(entry.at("chain_id")), kChainId);
    const std::string name{entry.at("name").as_string()};
    const std::int64_t backed_up = entry.at("height").as_int64();
    // The head's hash is the one at the recorded height (the sim node's block id starts with the
    // height in 8 hex digits, as nodeos's do), and the node's version is its own.
    ASSERT_TRUE(entry.contains("block_hash")) << boost::json::serialize(entry);
    const std::string hash = text(entry.at("block_hash"));
    EXPECT_EQ(hash.size(), 64U) << hash;
    char height_hex[9];
    std::snprintf(height_hex, sizeof height_hex, "%08llx",
                  static_cast<unsigned long long>(backed_up));
    EXPECT_TRUE(hash.starts_with(height_hex)) << hash << " at height " << backed_up;
    EXPECT_EQ(text(entry.at("node_version")), "v1.0.0") << boost::json::serialize(entry);
    const auto copy = target() / name / "data";
    // The height is the node's as last read before the stop: the copy holds at least that.
    EXPECT_GE(height_in(copy), backed_up);
    EXPECT_NE(read_file((target() / name / "manifest.json").string()).find("\"sha256\""),
              std::string::npos);
    // The node runs again, past the height the backup recorded, and the proxy is open.
    EXPECT_TRUE(wait_until([&] { return node.sidecar.status()["readiness"] == "ready"; }, 30s));
    EXPECT_EQ(text(node.sidecar.status()["phase"]), "");
    EXPECT_EQ(text(node.sidecar.status()["last_backup"]), name);

    ASSERT_TRUE(wait_until([&] { return height_in(data()) > backed_up + 3; }, 30s));
    std::ofstream{data() / "extra"} << "not in the backup";
    auto restored = node.sidecar.command("restore");
    ASSERT_EQ(restored.status, 200) << restored.body << node.sidecar.err();
    EXPECT_EQ(restored.body, "Success: restore completed");
    EXPECT_FALSE(fs::exists(data() / "extra"));
    EXPECT_EQ(text(node.sidecar.status()["last_restore"]), name);
    // The node went on from the backup's height, not from where it had been.
    EXPECT_TRUE(wait_until([&] { return node.sidecar.status()["readiness"] == "ready"; }, 30s));
    EXPECT_LT(node.sidecar.status()["height"].as_int64(), backed_up + 3 + 20 * 10);
}

TEST_F(SidecarBackups, ANodeWithoutChainDataStartsFromTheNewestUsableBackup) {
    std::string older;
    std::string newer;
    {
        BackedUpNode node{data(), target()};
        ASSERT_TRUE(node.wait_ready()) << node.sidecar.err();
        ASSERT_EQ(node.sidecar.command("backup").status, 200) << node.sidecar.err();
        ASSERT_TRUE(wait_until([&] { return height_in(data()) > 3; }, 30s));
        ASSERT_EQ(node.sidecar.command("backup").status, 200) << node.sidecar.err();
        auto backups = node.backups();
        ASSERT_EQ(backups.size(), 2U);
        newer = std::string{backups[0].at("name").as_string()};
        older = std::string{backups[1].at("name").as_string()};
    }
    // The newest is damaged: written over (it may be a hard link, so by a new file).
    const auto damaged = target() / newer / "data" / "height";
    std::ofstream{damaged.string() + ".new"} << "999999";
    fs::rename(damaged.string() + ".new", damaged);
    fs::remove(data() / "height");

    BackedUpNode again{data(), target()};
    ASSERT_TRUE(again.wait_ready()) << again.sidecar.err();
    EXPECT_EQ(text(again.sidecar.status()["last_restore"]), older) << again.sidecar.err();
    EXPECT_NE(again.sidecar.err().find("no chain data (height is missing): restoring backup"),
              std::string::npos)
        << again.sidecar.err();
    auto backups = again.backups();
    ASSERT_EQ(backups.size(), 2U);
    bool quarantined = false;
    for (const auto& b : backups) {
        if (text(b.at("name")) == newer) {
            quarantined = b.at("usable") == false && std::string{b.at("reason").as_string()}.find(
                                                         "height") != std::string::npos;
        }
    }
    EXPECT_TRUE(quarantined) << json::serialize(backups);
}

TEST_F(SidecarBackups, TheDirtyMarkerRestoresBeforeTheNextStart) {
    BackedUpNode node{data(), target()};
    ASSERT_TRUE(node.wait_ready()) << node.sidecar.err();
    ASSERT_EQ(node.sidecar.command("backup").status, 200) << node.sidecar.err();
    const std::string name{node.backups()[0].at("name").as_string()};
    std::ofstream{data() / "dirty"} << "";
    auto reloaded = node.sidecar.command("reload");
    ASSERT_EQ(reloaded.status, 200) << reloaded.body;
    EXPECT_FALSE(fs::exists(data() / "dirty"));
    EXPECT_EQ(text(node.sidecar.status()["last_restore"]), name);
    EXPECT_NE(node.sidecar.err().find("the dirty flag dirty is set: restoring backup " + name),
              std::string::npos)
        << node.sidecar.err();
}

TEST_F(SidecarBackups, ASidecarKilledMidBackupLeavesNothingListedAndTheNodeStartsAgain) {
    // Enough data that the copy takes a moment: 64 files of 512 KiB.
    fs::create_directories(data() / "state");
    const std::string chunk(512 * 1024, 's');
    for (int i = 0; i < 64; ++i) {
        std::ofstream{data() / "state" / ("part-" + std::to_string(i))} << chunk;
    }
    {
        BackedUpNode node{data(), target()};
        ASSERT_TRUE(node.wait_ready()) << node.sidecar.err();
        node.sidecar.call("POST", "/v1/backup");  // queued, not waited for
        bool copying = wait_until(
            [&] {
                auto phase = node.sidecar.status()["phase"];
                return phase == "copying the data dir";
            },
            30s);
        node.sidecar.kill_hard();
        if (!copying) {
            GTEST_SKIP() << "the copy ended before it could be seen: nothing to interrupt";
        }
    }
    BackedUpNode again{data(), target()};
    ASSERT_TRUE(again.wait_ready()) << again.sidecar.err();
    for (const auto& entry : fs::directory_iterator{target()}) {
        EXPECT_FALSE(entry.path().filename().string().starts_with(".partial-")) << entry.path();
    }
    for (const auto& b : again.backups()) {
        EXPECT_EQ(b.at("usable"), true) << json::serialize(b);
    }
}

/// A small tmpfs mounted for the test's life (root only; mounted() is false where it may not).
class SmallTmpfs {
public:
    SmallTmpfs(const fs::path& where, const char* size) : where_(where) {
        fs::create_directories(where_);
        const std::string command = "mount -t tmpfs -o size=" + std::string{size} + " tmpfs " +
                                    shell_quote(where_.string()) + " 2>/dev/null";
        mounted_ = std::system(command.c_str()) == 0;
    }
    ~SmallTmpfs() {
        if (mounted_) {
            const std::string command = "umount " + shell_quote(where_.string());
            (void)std::system(command.c_str());
        }
    }
    SmallTmpfs(const SmallTmpfs&) = delete;
    SmallTmpfs& operator=(const SmallTmpfs&) = delete;
    bool mounted() const { return mounted_; }

private:
    fs::path where_;
    bool mounted_ = false;
};

TEST_F(SidecarBackups, AFullTargetFailsTheBackupCleanlyAndTheNodeRunsAgain) {
    SmallTmpfs full{target(), "2m"};
    if (!full.mounted()) {
        GTEST_SKIP() << "cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)";
    }
    fs::create_directories(data() / "state");
    std::ofstream{data() / "state" / "big"} << std::string(4 << 20, 'b');
    BackedUpNode node{data(), target()};
    ASSERT_TRUE(node.wait_ready()) << node.sidecar.err();
    auto failed = node.sidecar.command("backup");
    EXPECT_EQ(failed.status, 500) << failed.body;
    EXPECT_TRUE(failed.body.starts_with("ERROR: backup failed: cannot write")) << failed.body;
    EXPECT_NE(failed.body.find("No space left on device"), std::string::npos) << failed.body;
    // The node was started again and the proxy reopened; nothing half-made is left.
    EXPECT_TRUE(wait_until([&] { return node.sidecar.status()["readiness"] == "ready"; }, 30s))
        << node.sidecar.err();
    EXPECT_EQ(text(node.sidecar.status()["phase"]), "");
    EXPECT_TRUE(node.backups().empty());
    for (const auto& entry : fs::directory_iterator{target()}) {
        EXPECT_FALSE(entry.path().filename().string().starts_with(".partial-")) << entry.path();
    }
    auto proxied = node.sidecar.call("POST", "/v1/chain/get_info", node.sidecar.proxy());
    EXPECT_EQ(proxied.status, 200) << proxied.body;
}

TEST_F(SidecarBackups, BadInputIsRefusedAndTheSidecarGoesOn) {
    BackedUpNode node{data(), target()};
    ASSERT_TRUE(node.wait_ready()) << node.sidecar.err();
    auto bad_tag = node.sidecar.command("backup", "backupTag=a/b");
    EXPECT_EQ(bad_tag.status, 400);
    EXPECT_TRUE(bad_tag.body.starts_with("backupTag: expected")) << bad_tag.body;
    auto unknown = node.sidecar.command("restore", "backupName=nope");
    EXPECT_EQ(unknown.status, 500);
    EXPECT_EQ(unknown.body, "ERROR: restore failed: no backup named nope");
    auto bad_limit = node.sidecar.call("GET", "/v1/list_backups?limit=abc");
    EXPECT_EQ(bad_limit.status, 400);
    EXPECT_TRUE(bad_limit.body.starts_with("limit: expected a whole number")) << bad_limit.body;
    EXPECT_EQ(node.sidecar.call("GET", "/v1/ping").body, "pong");

    TempDir other;
    const int port = free_port();
    Sidecar plain{{"--chain", "sim", "--proxy", "127.0.0.1:0", "--upstream",
                   "http://127.0.0.1:" + std::to_string(port)},
                  sim_node(other.path(), port)};
    ASSERT_TRUE(plain.wait_started()) << plain.err();
    auto none = plain.command("backup");
    EXPECT_EQ(none.status, 500);
    EXPECT_EQ(none.body,
              "ERROR: backup failed: no backup target: start with --backup-dir DIR or set "
              "backup.dir");
}

TEST_F(SidecarBackups, AStreamedBackupGoesThroughAnUploadCommandAndComesBackOnRestore) {
    const fs::path remote = fs::path{dir_.path()} / "remote";
    fs::create_directories(remote);
    const std::string config = "backup:\n  format: tar.zst\n  upload: [sh, -c, \"cat > " +
                               remote.string() + "/{{name}}.tar.zst\"]\n  download: [cat, \"" +
                               remote.string() + "/{{name}}.tar.zst\"]\n";
    BackedUpNode node{data(), target(), config};
    ASSERT_TRUE(node.wait_ready()) << node.sidecar.err();
    ASSERT_TRUE(wait_until([&] { return height_in(data()) >= 5; }, 30s));

    auto made = node.sidecar.command("backup");
    ASSERT_EQ(made.status, 200) << made.body << node.sidecar.err();
    auto backups = node.backups();
    ASSERT_EQ(backups.size(), 1U);
    const auto& entry = backups[0].as_object();
    EXPECT_EQ(text(entry.at("format")), "tar.zst");
    const std::string name = text(entry.at("name"));
    const std::int64_t backed_up = entry.at("height").as_int64();
    const fs::path object = remote / (name + ".tar.zst");
    ASSERT_TRUE(fs::exists(object));
    EXPECT_EQ(static_cast<std::int64_t>(fs::file_size(object)),
              entry.at("archive_size").as_int64());
    EXPECT_FALSE(fs::exists(target() / name / "data")) << "the stream is the only copy";

    // The node moves on; a restore brings the data dir back to the backup's height through the
    // download command, with no copy of the archive on disk.
    ASSERT_TRUE(wait_until([&] { return height_in(data()) > backed_up + 20; }, 30s));
    const std::int64_t before_restore = height_in(data());
    auto restored = node.sidecar.command("restore", "backupName=" + name);
    ASSERT_EQ(restored.status, 200) << restored.body << node.sidecar.err();
    EXPECT_EQ(text(node.sidecar.status()["last_restore"]), name);
    // The restarted node starts from the restored height (its own file), then goes on.
    EXPECT_TRUE(wait_until([&] { return node.sidecar.status()["readiness"] == "ready"; }, 30s));
    static const std::regex start{R"(serving on port [0-9]+ version \S+ height ([0-9]+))"};
    const std::string log = node.sidecar.out();
    std::int64_t last_start = -1;
    for (auto it = std::sregex_iterator{log.begin(), log.end(), start};
         it != std::sregex_iterator{}; ++it) {
        last_start = std::stoll((*it)[1]);
    }
    EXPECT_GE(last_start, backed_up) << log;
    EXPECT_LT(last_start, before_restore) << "the node did not start from the backup: " << log;
}

TEST_F(SidecarBackups, ASyncedBackupGoesThroughAPushCommandAndComesBackThroughPull) {
    const fs::path remote = fs::path{dir_.path()} / "remote";
    fs::create_directories(remote);
    const std::string config = "backup:\n  push: [rsync, -a, --delete, \"{{source}}/\", \"" +
                               remote.string() + "/{{name}}/\"]\n  pull: [rsync, -a, \"" +
                               remote.string() + "/{{name}}/\", \"{{destination}}/\"]\n";
    BackedUpNode node{data(), target(), config};
    ASSERT_TRUE(node.wait_ready()) << node.sidecar.err();
    ASSERT_TRUE(wait_until([&] { return height_in(data()) >= 5; }, 30s));

    auto made = node.sidecar.command("backup");
    ASSERT_EQ(made.status, 200) << made.body << node.sidecar.err();
    auto backups = node.backups();
    ASSERT_EQ(backups.size(), 1U);
    const auto& entry = backups[0].as_object();
    EXPECT_EQ(text(entry.at("format")), "dir");
    const std::string name = text(entry.at("name"));
    const std::int64_t backed_up = entry.at("height").as_int64();
    // The tree went to the remote with its own manifest; only the manifest stays in the target,
    // and no staging tree in the data dir.
    EXPECT_GE(height_in(remote / name), backed_up);
    EXPECT_TRUE(fs::exists(remote / name / ".aviary-manifest.json"));
    EXPECT_FALSE(fs::exists(target() / name / "data"));
    EXPECT_NE(read_file((target() / name / "manifest.json").string()).find("\"archive\":\"push\""),
              std::string::npos);
    for (const auto& e : fs::directory_iterator{data()}) {
        EXPECT_FALSE(e.path().filename().string().starts_with(".aviary-push-")) << e.path();
    }

    ASSERT_TRUE(wait_until([&] { return height_in(data()) > backed_up + 20; }, 30s));
    const std::int64_t before_restore = height_in(data());
    auto restored = node.sidecar.command("restore", "backupName=" + name);
    ASSERT_EQ(restored.status, 200) << restored.body << node.sidecar.err();
    EXPECT_EQ(text(node.sidecar.status()["last_restore"]), name);
    EXPECT_FALSE(fs::exists(data() / ".aviary-manifest.json"));
    // The restarted node starts from the pulled height (its own file), then goes on.
    EXPECT_TRUE(wait_until([&] { return node.sidecar.status()["readiness"] == "ready"; }, 30s));
    static const std::regex start{R"(serving on port [0-9]+ version \S+ height ([0-9]+))"};
    const std::string log = node.sidecar.out();
    std::int64_t last_start = -1;
    for (auto it = std::sregex_iterator{log.begin(), log.end(), start};
         it != std::sregex_iterator{}; ++it) {
        last_start = std::stoll((*it)[1]);
    }
    EXPECT_GE(last_start, backed_up) << log;
    EXPECT_LT(last_start, before_restore) << "the node did not start from the backup: " << log;
    EXPECT_GE(node.sidecar.status()["height"].as_int64(), backed_up);
}

}  // namespace
}  // namespace aviary::test
