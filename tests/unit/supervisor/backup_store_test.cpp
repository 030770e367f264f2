// Backups of a data dir (src/supervisor/backups.hpp): copies with checksums, hard links against
// the previous backup, quarantine, retention, restores that keep signer state, and the swap a
// crash may interrupt. Real files in a temporary directory.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "files.hpp"
#include "supervisor/backups.hpp"
#include "supervisor/supervisor.hpp"

namespace aviary::supervisor {
namespace {

namespace fs = std::filesystem;

using test::read;
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

class BackupStoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        root_ = fs::temp_directory_path() /
                ("aviary-backups-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(root_);
        data_ = root_ / "data";
        target_ = root_ / "backups";
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

    BackupStore store() const { return BackupStore{target_.string(), kBackupExcludes}; }

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

}  // namespace
}  // namespace aviary::supervisor
