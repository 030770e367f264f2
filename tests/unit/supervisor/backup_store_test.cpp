// Backups of a data dir (src/supervisor/backups.hpp): copies with checksums, hard links against
// the previous backup, quarantine, retention, restores that keep signer state, and the swap a
// crash may interrupt; pushes and pulls through real rsync into a "remote" directory. Real files
// in a temporary directory.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "files.hpp"
#include "net/net.hpp"
#include "supervisor/backups.hpp"
#include "supervisor/supervisor.hpp"

namespace aviary::supervisor {
namespace {

namespace fs = std::filesystem;

using test::read;
using test::snapshot;
using test::write;

/// Replaces a file by a new one (a backup's file may be a hard link shared with another).
void replace(const fs::path& path, std::string_view text) {
    write(path.string() + ".new", text);
    fs::rename(path.string() + ".new", path);
}

ino_t inode(const fs::path& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

std::string sha256_of(std::string_view text) {
    auto hash = net::Sha256::make();
    if (!hash) {
        return hash.error().message;
    }
    hash->update(text);
    return hash->hex();
}

/// The sha256 a manifest records for `path`, or "" when it lists no such file.
std::string recorded(const Manifest& manifest, std::string_view path) {
    for (const auto& file : manifest.files) {
        if (file.path == path) {
            return file.sha256;
        }
    }
    return {};
}

/// The entries of `dir` whose name starts with `prefix`.
std::vector<std::string> named(const fs::path& dir, std::string_view prefix) {
    std::vector<std::string> out;
    for (const auto& entry : fs::directory_iterator{dir}) {
        if (entry.path().filename().string().starts_with(prefix)) {
            out.push_back(entry.path().filename().string());
        }
    }
    return out;
}

class BackupStoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        root_ = fs::temp_directory_path() /
                ("aviary-backups-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(root_);
        data_ = root_ / "data";
        target_ = root_ / "backups";
        remote_ = root_ / "remote";
        fs::create_directories(remote_);
        write(data_ / "blocks" / "blocks.log", "block one\nblock two\n");
        write(data_ / "state" / "shared_memory.bin", std::string(3 << 20, 'x'));
        write(data_ / "empty", "");
        write(data_ / "priv_validator_key.json", "{\"secret\":1}");
        write(data_ / "config" / "priv_validator_state.json", "{\"height\":\"7\"}");
        write(data_ / "keystore" / "UTC--x", "key");
        write(data_ / ".aviary-supervise" / "supervise.state.json", "{}");
        fs::create_directory_symlink("state", data_ / "current");
    }
    void TearDown() override { fs::remove_all(root_); }

    BackupStore store(BackupFormat format = {}) const {
        return BackupStore{target_.string(), kBackupExcludes, std::move(format)};
    }
    /// rsync into remote_/<name>/ and back, as docs/backups.md's example does over ssh.
    BackupFormat pushing() const {
        return BackupFormat{
            .push = {"rsync", "-a", "--delete", "{{source}}/", remote_.string() + "/{{name}}/"},
            .pull = {"rsync", "-a", remote_.string() + "/{{name}}/", "{{destination}}/"},
            .idle = std::chrono::seconds{30}};
    }

    Manifest provenance(std::int64_t height, std::string tag = {}) const {
        Manifest m{
            .node = "bp-1",
            .chain = "sim",
            .chain_id = "chain-a",
            .height = height,
            .tag = std::move(tag),
            .phase = "stopped for the backup",
            .created_at = core::TimePoint{std::chrono::milliseconds{1'800'000'000'000 + height}}};
        m.name = backup_name(m.created_at, m.chain_id, m.height);
        return m;
    }

    fs::path root_;
    fs::path data_;
    fs::path target_;
    fs::path remote_;
    Cancelled running_{false};
};

TEST(BackupNames, SortByTimeAndCarryTheChainAndTheHeight) {
    const core::TimePoint at{std::chrono::milliseconds{1'796'430'310'945}};
    EXPECT_EQ(backup_name(at, "081ee42f", 7211), "20261205T002510945Z-081ee42f-7211");
    EXPECT_EQ(backup_name(at, "", std::nullopt), "20261205T002510945Z-unknown-unknown");
    EXPECT_EQ(backup_name(at, "a/b c", 1), "20261205T002510945Z-a_b_c-1");
    EXPECT_LT(backup_name(at, "z", 1), backup_name(at + std::chrono::milliseconds{1}, "a", 1));
    EXPECT_EQ(backup_name(at, std::string(100, 'c'), 1).size(), 20U + 64U + 2U);
}

TEST(BackupExcludes, NamesMatchAtAnyDepthRootedPathsFromTheRootAndDirectoriesTakeTheirFiles) {
    const std::vector<std::string> globs{"*.key", "keystore", "config/node_key.json"};
    EXPECT_TRUE(excluded("a/b/validator.key", globs));
    EXPECT_TRUE(excluded("keystore/UTC--x", globs));
    EXPECT_TRUE(excluded("deep/keystore/UTC--x", globs));
    EXPECT_TRUE(excluded("config/node_key.json", globs));
    EXPECT_FALSE(excluded("other/config/node_key.json", globs));
    EXPECT_FALSE(excluded("blocks/blocks.log", globs));
    EXPECT_FALSE(excluded("keystores", globs));
}

TEST_F(BackupStoreTest, ACopyHoldsTheSameBytesWithChecksumsAndLeavesKeysAndOurStateOut) {
    auto s = store();
    auto made = s.create(data_.string(), provenance(7, "weekly"), running_);
    ASSERT_TRUE(made) << made.error().message;
    const fs::path copy = target_ / made->name / "data";
    EXPECT_EQ(read(copy / "blocks" / "blocks.log"), "block one\nblock two\n");
    EXPECT_EQ(fs::file_size(copy / "state" / "shared_memory.bin"), 3U << 20);
    EXPECT_TRUE(fs::exists(copy / "empty"));
    EXPECT_TRUE(fs::is_symlink(copy / "current"));
    EXPECT_EQ(fs::read_symlink(copy / "current"), "state");
    for (const char* never : {"priv_validator_key.json", "config/priv_validator_state.json",
                              "keystore", ".aviary-supervise"}) {
        EXPECT_FALSE(fs::exists(copy / never)) << never;
    }
    EXPECT_EQ(made->file_count, 3U);
    EXPECT_EQ(made->size, 20U + (3U << 20));
    auto manifest = s.read(made->name);
    ASSERT_TRUE(manifest) << manifest.error().message;
    auto empty = std::find_if(manifest->files.begin(), manifest->files.end(),
                              [](const auto& f) { return f.path == "empty"; });
    ASSERT_NE(empty, manifest->files.end());
    EXPECT_EQ(empty->sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(manifest->chain_id, "chain-a");
    EXPECT_EQ(manifest->height, 7);
    EXPECT_EQ(manifest->tag, "weekly");
    // The copy keeps the source's mtime.
    EXPECT_EQ(fs::last_write_time(copy / "blocks" / "blocks.log"),
              fs::last_write_time(data_ / "blocks" / "blocks.log"));
}

TEST_F(BackupStoreTest, UnchangedFilesAreHardLinkedToThePreviousBackupAndChangedOnesCopied) {
    auto s = store();
    auto first = s.create(data_.string(), provenance(7), running_);
    ASSERT_TRUE(first) << first.error().message;
    replace(data_ / "blocks" / "blocks.log", "block one\nblock two\nblock three\n");
    auto second = s.create(data_.string(), provenance(8), running_);
    ASSERT_TRUE(second) << second.error().message;
    EXPECT_EQ(second->linked, 2U);  // shared_memory.bin and empty
    EXPECT_EQ(inode(target_ / first->name / "data" / "state" / "shared_memory.bin"),
              inode(target_ / second->name / "data" / "state" / "shared_memory.bin"));
    EXPECT_NE(inode(target_ / first->name / "data" / "blocks" / "blocks.log"),
              inode(target_ / second->name / "data" / "blocks" / "blocks.log"));
    EXPECT_EQ(read(target_ / second->name / "data" / "blocks" / "blocks.log"),
              "block one\nblock two\nblock three\n");
}

TEST_F(BackupStoreTest, ListingIsNewestFirstByChainAndLatestHonoursTheTag) {
    auto s = store();
    ASSERT_TRUE(s.create(data_.string(), provenance(7, "weekly"), running_));
    ASSERT_TRUE(s.create(data_.string(), provenance(8), running_));
    auto other = provenance(9);
    other.chain_id = "chain-b";
    other.name = backup_name(other.created_at, other.chain_id, other.height);
    ASSERT_TRUE(s.create(data_.string(), other, running_));

    auto listed = s.list("chain-a");
    ASSERT_TRUE(listed) << listed.error().message;
    ASSERT_EQ(listed->size(), 2U);
    EXPECT_EQ(listed->front().manifest.height, 8);
    auto all = s.list();
    ASSERT_TRUE(all);
    EXPECT_EQ(all->size(), 3U);
    auto weekly = s.latest("chain-a", "weekly");
    ASSERT_TRUE(weekly && *weekly);
    EXPECT_EQ((*weekly)->height, 7);
    auto unknown = s.read("20990101T000000000Z-nope-1");
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, core::ErrorCode::kNotFound);
    EXPECT_FALSE(s.read("../escape"));
}

TEST_F(BackupStoreTest, ARestoreBringsTheBackupBackAndKeepsSignerStateAndOurState) {
    auto s = store();
    auto made = s.create(data_.string(), provenance(7), running_);
    ASSERT_TRUE(made) << made.error().message;
    replace(data_ / "blocks" / "blocks.log", "diverged\n");
    write(data_ / "extra", "not in the backup");
    replace(data_ / "config" / "priv_validator_state.json", "{\"height\":\"9\"}");

    auto restored = s.restore(made->name, data_.string(), running_);
    ASSERT_TRUE(restored) << restored.error().message;
    EXPECT_EQ(read(data_ / "blocks" / "blocks.log"), "block one\nblock two\n");
    EXPECT_FALSE(fs::exists(data_ / "extra"));
    EXPECT_TRUE(fs::is_symlink(data_ / "current"));
    // Signer state and keys stay as they are; so does the sidecar's own state.
    EXPECT_EQ(read(data_ / "config" / "priv_validator_state.json"), "{\"height\":\"9\"}");
    EXPECT_EQ(read(data_ / "priv_validator_key.json"), "{\"secret\":1}");
    EXPECT_EQ(read(data_ / "keystore" / "UTC--x"), "key");
    EXPECT_EQ(read(data_ / ".aviary-supervise" / "supervise.state.json"), "{}");
    for (const char* leftover :
         {".aviary-restore", ".aviary-restore-ready", ".aviary-restore-old"}) {
        EXPECT_FALSE(fs::exists(data_ / leftover)) << leftover;
    }
}

TEST_F(BackupStoreTest, ADamagedBackupIsQuarantinedAndTheDataDirLeftAsItWas) {
    auto s = store();
    auto older = s.create(data_.string(), provenance(7), running_);
    ASSERT_TRUE(older);
    auto newer = s.create(data_.string(), provenance(8), running_);
    ASSERT_TRUE(newer);
    replace(target_ / newer->name / "data" / "blocks" / "blocks.log", "tampered\n");
    replace(data_ / "blocks" / "blocks.log", "current\n");

    auto restored = s.restore(newer->name, data_.string(), running_);
    ASSERT_FALSE(restored);
    EXPECT_NE(restored.error().message.find("quarantined"), std::string::npos)
        << restored.error().message;
    EXPECT_NE(restored.error().message.find("blocks/blocks.log"), std::string::npos);
    EXPECT_EQ(read(data_ / "blocks" / "blocks.log"), "current\n");
    EXPECT_FALSE(fs::exists(data_ / ".aviary-restore"));

    auto listed = s.list("chain-a");
    ASSERT_TRUE(listed);
    auto entry = std::find_if(listed->begin(), listed->end(),
                              [&](const auto& e) { return e.manifest.name == newer->name; });
    ASSERT_NE(entry, listed->end());
    EXPECT_FALSE(entry->usable);
    EXPECT_NE(entry->reason.find("blocks/blocks.log"), std::string::npos) << entry->reason;
    auto latest = s.latest("chain-a", "");
    ASSERT_TRUE(latest && *latest);
    EXPECT_EQ((*latest)->name, older->name);
}

TEST_F(BackupStoreTest, PruningKeepsTheNewestOfAChainAndNeverTheLastOne) {
    auto s = store();
    for (int h = 1; h <= 4; ++h) {
        ASSERT_TRUE(s.create(data_.string(), provenance(h), running_));
    }
    auto removed = s.prune("chain-a", 2);
    ASSERT_TRUE(removed) << removed.error().message;
    EXPECT_EQ(removed->size(), 2U);
    auto listed = s.list("chain-a");
    ASSERT_TRUE(listed);
    ASSERT_EQ(listed->size(), 2U);
    EXPECT_EQ(listed->back().manifest.height, 3);
    removed = s.prune("chain-a", 0);
    ASSERT_TRUE(removed);
    listed = s.list("chain-a");
    ASSERT_TRUE(listed);
    EXPECT_EQ(listed->size(), 1U);
    EXPECT_EQ(listed->front().manifest.height, 4);
}

TEST_F(BackupStoreTest, ACancelledOrUnfinishedBackupLeavesNothingListed) {
    auto s = store();
    Cancelled stop{true};
    auto made = s.create(data_.string(), provenance(7), stop);
    ASSERT_FALSE(made);
    EXPECT_EQ(made.error().code, core::ErrorCode::kUnavailable);
    fs::create_directories(target_ / ".partial-20261205T000000000Z-chain-a-1" / "data");
    auto listed = s.list();
    ASSERT_TRUE(listed);
    EXPECT_TRUE(listed->empty());
    ASSERT_TRUE(s.open());
    for (const auto& entry : fs::directory_iterator{target_}) {
        EXPECT_FALSE(entry.path().filename().string().starts_with(".partial-")) << entry.path();
    }
}

TEST_F(BackupStoreTest, AnInterruptedSwapIsFinishedAndAnInterruptedCopyDropped) {
    // A copy that never finished: removed, the data dir untouched.
    write(data_ / ".aviary-restore" / "blocks" / "half", "x");
    auto found = finish_restore(data_.string(), kBackupExcludes);
    ASSERT_TRUE(found) << found.error().message;
    EXPECT_TRUE(*found);
    EXPECT_FALSE(fs::exists(data_ / ".aviary-restore"));
    EXPECT_EQ(read(data_ / "blocks" / "blocks.log"), "block one\nblock two\n");

    // A finished copy whose swap had not begun: swapped in, signer state kept.
    write(data_ / ".aviary-restore-ready" / "blocks" / "blocks.log", "restored\n");
    found = finish_restore(data_.string(), kBackupExcludes);
    ASSERT_TRUE(found) << found.error().message;
    EXPECT_TRUE(*found);
    EXPECT_EQ(read(data_ / "blocks" / "blocks.log"), "restored\n");
    EXPECT_FALSE(fs::exists(data_ / "state"));
    EXPECT_EQ(read(data_ / "priv_validator_key.json"), "{\"secret\":1}");
    EXPECT_FALSE(fs::exists(data_ / ".aviary-restore-ready"));
    EXPECT_FALSE(fs::exists(data_ / ".aviary-restore-old"));

    found = finish_restore(data_.string(), kBackupExcludes);
    ASSERT_TRUE(found);
    EXPECT_FALSE(*found);
}

TEST_F(BackupStoreTest, ABackupDirInsideTheDataDirIsNotCopiedIntoItself) {
    BackupStore inside{(data_ / "backups").string(), kBackupExcludes};
    auto first = inside.create(data_.string(), provenance(7), running_);
    ASSERT_TRUE(first) << first.error().message;
    auto second = inside.create(data_.string(), provenance(8), running_);
    ASSERT_TRUE(second) << second.error().message;
    EXPECT_FALSE(fs::exists(data_ / "backups" / second->name / "data" / "backups"));
    EXPECT_EQ(second->file_count, first->file_count);
}

TEST_F(BackupStoreTest, ARestoreKeepsABackupDirInsideTheDataDir) {
    BackupStore inside{(data_ / "backups").string(), kBackupExcludes};
    auto made = inside.create(data_.string(), provenance(7), running_);
    ASSERT_TRUE(made) << made.error().message;
    auto restored = inside.restore(made->name, data_.string(), running_);
    ASSERT_TRUE(restored) << restored.error().message;
    EXPECT_TRUE(fs::exists(data_ / "backups" / made->name / "manifest.json"));
    auto listed = inside.list();
    ASSERT_TRUE(listed);
    EXPECT_EQ(listed->size(), 1U);
}

TEST_F(BackupStoreTest, AFileMissingFromABackupQuarantinesIt) {
    auto s = store();
    auto made = s.create(data_.string(), provenance(7), running_);
    ASSERT_TRUE(made);
    fs::remove(target_ / made->name / "data" / "empty");
    auto restored = s.restore(made->name, data_.string(), running_);
    ASSERT_FALSE(restored);
    EXPECT_NE(restored.error().message.find("empty is missing from the backup"), std::string::npos)
        << restored.error().message;
    EXPECT_NE(restored.error().message.find("quarantined"), std::string::npos);
    auto latest = s.latest("chain-a", "");
    ASSERT_TRUE(latest);
    EXPECT_FALSE(*latest);
}

TEST_F(BackupStoreTest, PruningAnUnknownChainLeavesTheOtherChainsAlone) {
    auto s = store();
    ASSERT_TRUE(s.create(data_.string(), provenance(7), running_));
    auto unknown = provenance(8);
    unknown.chain_id.clear();
    unknown.name = backup_name(unknown.created_at, unknown.chain_id, unknown.height);
    ASSERT_TRUE(s.create(data_.string(), unknown, running_));
    auto removed = s.prune("", 1);
    ASSERT_TRUE(removed) << removed.error().message;
    EXPECT_TRUE(removed->empty());
    auto listed = s.list();
    ASSERT_TRUE(listed);
    EXPECT_EQ(listed->size(), 2U);
}

// --- sync commands (push and pull) -----------------------------------------------------------

TEST_F(BackupStoreTest, APushCopiesTheTreeWithItsManifestAndAPullBringsItBack) {
    auto s = store(pushing());
    auto made = s.create(data_.string(), provenance(7), running_);
    ASSERT_TRUE(made) << made.error().message;
    EXPECT_EQ(made->archive, "push");
    EXPECT_EQ(made->file_count, 3U);
    EXPECT_EQ(made->linked, 0U);
    // Only the manifest is kept locally; the tree and its own manifest are on the remote.
    EXPECT_TRUE(fs::exists(target_ / made->name / "manifest.json"));
    EXPECT_FALSE(fs::exists(target_ / made->name / "data"));
    const fs::path copy = remote_ / made->name;
    EXPECT_EQ(read(copy / "blocks" / "blocks.log"), "block one\nblock two\n");
    EXPECT_EQ(fs::read_symlink(copy / "current"), "state");
    EXPECT_NE(read(copy / ".aviary-manifest.json").find("\"name\":\"" + made->name + "\""),
              std::string::npos);
    EXPECT_NE(read(copy / ".aviary-manifest.json").find("\"archive\":\"push\""), std::string::npos);
    for (const char* never : {"priv_validator_key.json", "config/priv_validator_state.json",
                              "keystore", ".aviary-supervise"}) {
        EXPECT_FALSE(fs::exists(copy / never)) << never;
    }
    EXPECT_TRUE(named(data_, ".aviary-push-").empty()) << "the staging tree is removed";
    auto listed = s.list();
    ASSERT_TRUE(listed);
    ASSERT_EQ(listed->size(), 1U);
    EXPECT_TRUE((*listed)[0].usable);

    const auto before = snapshot(data_);
    fs::remove_all(data_ / "state");
    replace(data_ / "blocks" / "blocks.log", "diverged\n");
    write(data_ / "extra", "not in the backup");
    auto restored = s.restore(made->name, data_.string(), running_);
    ASSERT_TRUE(restored) << restored.error().message;
    // The same tree, modes and mtimes; excluded files and our own state as they were.
    EXPECT_EQ(snapshot(data_), before);
    EXPECT_FALSE(fs::exists(data_ / ".aviary-manifest.json"));
    for (const char* leftover :
         {".aviary-restore", ".aviary-restore-ready", ".aviary-restore-old"}) {
        EXPECT_FALSE(fs::exists(data_ / leftover)) << leftover;
    }

    // A pull that keeps neither modes nor mtimes (cp, rclone): the manifest's are put back.
    auto copying = pushing();
    copying.pull = {"cp", "-R", remote_.string() + "/{{name}}/.", "{{destination}}"};
    fs::permissions(remote_ / made->name / "blocks" / "blocks.log", fs::perms::owner_read);
    fs::remove_all(data_ / "blocks");
    auto copied = store(copying).restore(made->name, data_.string(), running_);
    ASSERT_TRUE(copied) << copied.error().message;
    EXPECT_EQ(snapshot(data_), before);
}

TEST_F(BackupStoreTest, ASecondPushTakesUnchangedFilesChecksumsFromThePreviousBackup) {
    auto s = store(pushing());
    auto first = s.create(data_.string(), provenance(7), running_);
    ASSERT_TRUE(first) << first.error().message;
    const fs::path log = data_ / "blocks" / "blocks.log";
    // Changed: a new size and mtime. Read again.
    replace(data_ / "state" / "shared_memory.bin", "rewritten");
    // Rewritten with its size, and its old mtime put back: the quick check takes it for
    // unchanged, so its checksum is the previous backup's. That it was not read shows here.
    const auto mtime = fs::last_write_time(log);
    std::ofstream{log, std::ios::binary | std::ios::in | std::ios::out} << "BLOCK";
    fs::last_write_time(log, mtime);
    ASSERT_EQ(read(log), "BLOCK one\nblock two\n");

    auto second = s.create(data_.string(), provenance(8), running_);
    ASSERT_TRUE(second) << second.error().message;
    auto one = s.read(first->name);
    auto two = s.read(second->name);
    ASSERT_TRUE(one && two);
    EXPECT_EQ(recorded(*two, "empty"), recorded(*one, "empty"));
    EXPECT_EQ(recorded(*two, "state/shared_memory.bin"), sha256_of("rewritten"));
    EXPECT_EQ(recorded(*two, "blocks/blocks.log"), recorded(*one, "blocks/blocks.log"));
    EXPECT_NE(recorded(*two, "blocks/blocks.log"), sha256_of("BLOCK one\nblock two\n"));
    // The remote holds what the file holds now; the restore's check finds the stale checksum
    // and refuses the backup rather than restore unchecked bytes (docs/backups.md).
    EXPECT_EQ(read(remote_ / second->name / "blocks" / "blocks.log"), "BLOCK one\nblock two\n");
    auto restored = s.restore(second->name, data_.string(), running_);
    ASSERT_FALSE(restored);
    EXPECT_NE(restored.error().message.find("blocks/blocks.log does not match the manifest"),
              std::string::npos)
        << restored.error().message;
}

TEST_F(BackupStoreTest, AFailingPushFailsTheBackupWithTheCommandsWordsAndListsNothing) {
    auto format = pushing();
    format.push = {"sh", "-c", "echo 'bucket not found' >&2; exit 3", "sh", "{{source}}"};
    auto made = store(format).create(data_.string(), provenance(7), running_);
    ASSERT_FALSE(made);
    EXPECT_NE(made.error().message.find("the push of backup"), std::string::npos)
        << made.error().message;
    EXPECT_NE(made.error().message.find("sh exited with code 3: bucket not found"),
              std::string::npos)
        << made.error().message;
    auto listed = store(format).list();
    ASSERT_TRUE(listed);
    EXPECT_TRUE(listed->empty());
    EXPECT_TRUE(named(target_, ".partial-").empty());
    EXPECT_TRUE(named(data_, ".aviary-push-").empty());

    // One that sits doing nothing is ended after the idle bound.
    format.push = {"sleep", "30"};
    format.idle = std::chrono::milliseconds{300};
    auto stuck = store(format).create(data_.string(), provenance(8), running_);
    ASSERT_FALSE(stuck);
    EXPECT_NE(stuck.error().message.find("sleep made no progress"), std::string::npos)
        << stuck.error().message;
    EXPECT_TRUE(named(data_, ".aviary-push-").empty());
}

TEST_F(BackupStoreTest, AFailingPullFailsTheRestoreWithoutQuarantineAndLeavesTheDataDirAsItWas) {
    auto s = store(pushing());
    auto made = s.create(data_.string(), provenance(7), running_);
    ASSERT_TRUE(made) << made.error().message;
    fs::remove_all(remote_ / made->name);  // the target is away
    replace(data_ / "blocks" / "blocks.log", "current\n");
    const auto before = snapshot(data_);
    auto restored = s.restore(made->name, data_.string(), running_);
    ASSERT_FALSE(restored);
    EXPECT_NE(restored.error().message.find("the pull of backup " + made->name +
                                            " failed: rsync exited with code"),
              std::string::npos)
        << restored.error().message;
    EXPECT_EQ(restored.error().message.find("quarantined"), std::string::npos);
    EXPECT_EQ(snapshot(data_), before);
    auto listed = s.list();
    ASSERT_TRUE(listed);
    ASSERT_EQ(listed->size(), 1U);
    EXPECT_TRUE((*listed)[0].usable) << (*listed)[0].reason;
}

TEST_F(BackupStoreTest, ARemoteCopyDamagedAfterThePushIsQuarantinedOnRestore) {
    auto s = store(pushing());
    std::vector<std::string> names;
    for (int h = 1; h <= 3; ++h) {
        auto made = s.create(data_.string(), provenance(h), running_);
        ASSERT_TRUE(made) << made.error().message;
        names.push_back(made->name);
    }
    replace(remote_ / names[0] / "blocks" / "blocks.log", "tampered\n");
    write(remote_ / names[1] / "state" / "extra", "not pushed");
    fs::remove(remote_ / names[2] / "empty");
    const std::vector<std::string> reasons{
        "blocks/blocks.log does not match the manifest",
        "state/extra is in the pulled copy but not in the manifest",
        "empty is missing from the backup"};
    replace(data_ / "blocks" / "blocks.log", "current\n");
    const auto before = snapshot(data_);
    for (std::size_t i = 0; i < names.size(); ++i) {
        auto restored = s.restore(names[i], data_.string(), running_);
        ASSERT_FALSE(restored) << names[i];
        EXPECT_NE(restored.error().message.find("is damaged (quarantined, the data dir is "
                                                "unchanged): " +
                                                reasons[i]),
                  std::string::npos)
            << restored.error().message;
        EXPECT_EQ(snapshot(data_), before);
    }
    auto listed = s.list();
    ASSERT_TRUE(listed);
    ASSERT_EQ(listed->size(), 3U);
    for (const auto& entry : *listed) {
        EXPECT_FALSE(entry.usable) << entry.manifest.name;
    }
}

TEST_F(BackupStoreTest, AStalePushStagingTreeIsRemovedAtStartAndByTheNextPush) {
    write(data_ / ".aviary-push-20261205T000000000Z-chain_a-1" / "blocks" / "blocks.log", "old");
    auto found = finish_restore(data_.string(), kBackupExcludes);
    ASSERT_TRUE(found) << found.error().message;
    EXPECT_FALSE(*found) << "not a restore";
    EXPECT_TRUE(named(data_, ".aviary-push-").empty());

    // {{chain_id}} is the chain id as the backup's name writes it.
    auto format = pushing();
    format.push.back() = remote_.string() + "/{{chain_id}}/{{name}}/";
    fs::create_directories(remote_ / "chain_a");
    write(data_ / ".aviary-push-20261205T000000000Z-chain_a-1" / "x", "old");
    auto made = store(format).create(data_.string(), provenance(7), running_);
    ASSERT_TRUE(made) << made.error().message;
    EXPECT_TRUE(named(data_, ".aviary-push-").empty());
    EXPECT_EQ(read(remote_ / "chain_a" / made->name / "blocks" / "blocks.log"),
              "block one\nblock two\n");
}

}  // namespace
}  // namespace aviary::supervisor
