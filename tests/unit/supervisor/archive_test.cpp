// Backups as one tar.zst stream (src/supervisor/archive.hpp, BackupFormat in backups.hpp): to a
// file beside the manifest, or through real upload and download commands (sh and cat standing
// in for rclone rcat and rclone cat); read back by GNU tar, checked file by file on restore, and
// refused whole when damaged or cut short. Real files in a temporary directory.
#include "supervisor/archive.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include "files.hpp"
#include "supervisor/backups.hpp"
#include "supervisor/supervisor.hpp"

namespace aviary::supervisor {
namespace {

namespace fs = std::filesystem;

using test::read;
using test::snapshot;
using test::write;

std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        out += c == '\'' ? std::string{"'\\''"} : std::string(1, c);
    }
    return out + "'";
}

class ArchiveTest : public ::testing::Test {
protected:
    void SetUp() override {
        root_ = fs::temp_directory_path() /
                ("aviary-archive-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(root_);
        data_ = root_ / "data";
        target_ = root_ / "backups";
        remote_ = root_ / "remote";
        fs::create_directories(remote_);
        write(data_ / "blocks" / "blocks.log", "block one\nblock two\n");
        std::mt19937 random{7};
        std::string noise(1 << 20, '\0');
        for (auto& c : noise) {
            c = static_cast<char>(random());
        }
        write(data_ / "state" / "shared_memory.bin", noise);
        write(data_ / "empty", "");
        // Past ustar's 100-byte name field, and past its 255-byte name + prefix.
        const std::string deep = std::string(60, 'd') + "/" + std::string(60, 'e');
        write(data_ / deep / "file-with-a-long-name.dat", "deep");
        write(data_ / std::string(120, 'x') / std::string(150, 'y'), "very deep");
        fs::create_directory_symlink("state", data_ / "current");
        fs::create_symlink(std::string(150, 'z') + "/target", data_ / "far");
        write(data_ / "priv_validator_key.json", "{\"secret\":1}");
        write(data_ / "run.sh", "#!/bin/sh\n");
        fs::permissions(data_ / "run.sh", fs::perms::owner_all | fs::perms::group_read);
    }
    void TearDown() override { fs::remove_all(root_); }

    BackupStore store(BackupFormat format = {.archive = true}) const {
        return BackupStore{target_.string(), kBackupExcludes, std::move(format)};
    }
    BackupFormat uploading() const {
        return BackupFormat{
            .archive = true,
            .upload = {"sh", "-c", "cat > " + shell_quote(remote_.string()) + "/{{name}}.tar.zst"},
            .download = {"cat", remote_.string() + "/{{name}}.tar.zst"},
            .idle = std::chrono::seconds{10}};
    }

    Manifest provenance(std::int64_t height) const {
        Manifest m{.node = "bp-1",
                   .chain = "sim",
                   .chain_id = "chain-a",
                   .height = height,
                   .phase = "stopped for the backup",
                   .created_at = core::TimePoint{std::chrono::milliseconds{1'800'000'000'000}}};
        m.name = backup_name(m.created_at, m.chain_id, m.height);
        return m;
    }

    fs::path root_;
    fs::path data_;
    fs::path target_;
    fs::path remote_;
    Cancelled running_{false};
};

TEST_F(ArchiveTest, AStreamBesideTheManifestRestoresTheSameTreeAndGnuTarReadsIt) {
    auto made = store().create(data_.string(), provenance(100), running_);
    ASSERT_TRUE(made) << made.error().message;
    EXPECT_EQ(made->archive, "data.tar.zst");
    EXPECT_GT(made->archive_size, 0U);
    const fs::path archive = target_ / made->name / "data.tar.zst";
    ASSERT_TRUE(fs::exists(archive));
    EXPECT_FALSE(fs::exists(target_ / made->name / "data")) << "no directory copy beside it";
    EXPECT_EQ(fs::file_size(archive), made->archive_size);

    // A peer reads it: GNU tar through zstd lists the long names and the manifest last.
    const std::string list = root_.string() + "/list";
    const std::string command =
        "zstd -dc " + shell_quote(archive.string()) + " | tar -tf - > " + shell_quote(list);
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    const std::string listed = read(list);
    EXPECT_NE(listed.find(std::string(120, 'x') + "/" + std::string(150, 'y')), std::string::npos)
        << listed;
    EXPECT_TRUE(listed.ends_with(".aviary-manifest.json\n")) << listed;
    EXPECT_EQ(listed.find("priv_validator_key.json"), std::string::npos) << "keys stay out";

    // Restored into a data dir with other content: the same tree, keys kept as the dir had them.
    const auto before = snapshot(data_);
    fs::remove_all(data_ / "blocks");
    write(data_ / "blocks" / "stale", "stale");
    write(data_ / "priv_validator_key.json", "{\"secret\":2}");
    auto restored = store().restore(made->name, data_.string(), running_);
    ASSERT_TRUE(restored) << restored.error().message;
    auto after = snapshot(data_);
    EXPECT_EQ(read(data_ / "priv_validator_key.json"), "{\"secret\":2}");
    after.erase("priv_validator_key.json");
    auto want = before;
    want.erase("priv_validator_key.json");
    EXPECT_EQ(after, want);
}

TEST_F(ArchiveTest, ADamagedOrCutShortStreamIsQuarantinedAndTheDataDirLeftAsItWas) {
    auto made = store().create(data_.string(), provenance(100), running_);
    ASSERT_TRUE(made) << made.error().message;
    const fs::path archive = target_ / made->name / "data.tar.zst";
    std::string bytes = read(archive);
    // Cut short: the end (and the manifest entry) never arrived.
    write(archive, bytes.substr(0, bytes.size() / 2));
    write(data_ / "blocks" / "blocks.log", "current");
    auto cut = store().restore(made->name, data_.string(), running_);
    ASSERT_FALSE(cut);
    EXPECT_NE(cut.error().message.find("is damaged (quarantined, the data dir is unchanged)"),
              std::string::npos)
        << cut.error().message;
    EXPECT_EQ(read(data_ / "blocks" / "blocks.log"), "current");
    EXPECT_FALSE(fs::exists(data_ / ".aviary-restore"));
    auto listed = store().list();
    ASSERT_TRUE(listed);
    ASSERT_EQ(listed->size(), 1U);
    EXPECT_FALSE((*listed)[0].usable);

    // A byte flipped inside: zstd's checksum or the file's sha256 catches it.
    auto second = store().create(data_.string(), provenance(200), running_);
    ASSERT_TRUE(second) << second.error().message;
    const fs::path other = target_ / second->name / "data.tar.zst";
    bytes = read(other);
    bytes[bytes.size() / 3] = static_cast<char>(bytes[bytes.size() / 3] ^ 0x55);
    write(other, bytes);
    auto flipped = store().restore(second->name, data_.string(), running_);
    ASSERT_FALSE(flipped);
    EXPECT_NE(flipped.error().message.find("quarantined"), std::string::npos)
        << flipped.error().message;
    EXPECT_EQ(read(data_ / "blocks" / "blocks.log"), "current");
    auto latest = store().latest("chain-a", {});
    ASSERT_TRUE(latest);
    EXPECT_FALSE(latest->has_value()) << "neither is offered as latest";
}

TEST_F(ArchiveTest, AnUploadCommandTakesTheStreamAndADownloadCommandGivesItBack) {
    auto made = store(uploading()).create(data_.string(), provenance(100), running_);
    ASSERT_TRUE(made) << made.error().message;
    EXPECT_EQ(made->archive, "upload");
    EXPECT_FALSE(fs::exists(target_ / made->name / "data.tar.zst")) << "nothing kept locally";
    EXPECT_TRUE(fs::exists(target_ / made->name / "manifest.json"));
    const fs::path object = remote_ / (made->name + ".tar.zst");
    ASSERT_TRUE(fs::exists(object));
    EXPECT_EQ(fs::file_size(object), made->archive_size);

    const auto before = snapshot(data_);
    fs::remove_all(data_ / "state");
    auto restored = store(uploading()).restore(made->name, data_.string(), running_);
    ASSERT_TRUE(restored) << restored.error().message;
    EXPECT_EQ(snapshot(data_), before);

    // The object gone: the download fails, the data dir is as it was and the backup is not
    // quarantined (the target may only be away).
    fs::remove(object);
    write(data_ / "blocks" / "blocks.log", "current");
    auto missing = store(uploading()).restore(made->name, data_.string(), running_);
    ASSERT_FALSE(missing);
    EXPECT_NE(missing.error().message.find("cat"), std::string::npos) << missing.error().message;
    EXPECT_EQ(read(data_ / "blocks" / "blocks.log"), "current");
    auto listed = store(uploading()).list();
    ASSERT_TRUE(listed);
    ASSERT_EQ(listed->size(), 1U);
    EXPECT_TRUE((*listed)[0].usable) << (*listed)[0].reason;
}

TEST_F(ArchiveTest, AFailingUploadLeavesNoBackupAndSaysWhatTheCommandSaid) {
    auto format = uploading();
    format.upload = {"sh", "-c", "cat > /dev/null; echo 'bucket not found' >&2; exit 3"};
    auto made = store(format).create(data_.string(), provenance(100), running_);
    ASSERT_FALSE(made);
    EXPECT_NE(made.error().message.find("exited with code 3: bucket not found"), std::string::npos)
        << made.error().message;
    auto listed = store(format).list();
    ASSERT_TRUE(listed);
    EXPECT_TRUE(listed->empty());
    for (const auto& entry : fs::directory_iterator{target_}) {
        EXPECT_FALSE(entry.path().filename().string().starts_with(".partial-")) << entry.path();
    }

    // A command that stops reading half way (it exits at once) fails the backup too.
    format.upload = {"true"};
    auto closed = store(format).create(data_.string(), provenance(200), running_);
    ASSERT_FALSE(closed);
    EXPECT_NE(closed.error().message.find("true"), std::string::npos) << closed.error().message;

    // One that never reads is ended after the idle bound.
    format.upload = {"sleep", "30"};
    format.idle = std::chrono::milliseconds{300};
    auto stuck = store(format).create(data_.string(), provenance(300), running_);
    ASSERT_FALSE(stuck);
    EXPECT_NE(stuck.error().message.find("made no progress"), std::string::npos)
        << stuck.error().message;
}

TEST(CommandTemplates, AreReplacedInOnePassAndUnknownOnesKept) {
    const std::vector<std::string> argv{
        "rsync", "{{source}}/", "host:/b/{{chain_id}}/{{name}}/", "{{name}}{{name}}", "{{other}}",
        "{{",    "a}}b"};
    EXPECT_EQ(archive::render_argv(
                  argv, {{"name", "N"}, {"source", "/data/{{name}}"}, {"chain_id", "chain_a"}}),
              (std::vector<std::string>{"rsync", "/data/{{name}}/", "host:/b/chain_a/N/", "NN",
                                        "{{other}}", "{{", "a}}b"}));
    EXPECT_EQ(archive::render_argv(argv, "N")[2], "host:/b/{{chain_id}}/N/");
}

TEST(CommandsRunToTheirEnd, AQuietCommandMovingBytesRunsOnAndAStuckOneIsEnded) {
    using namespace std::chrono_literals;
    std::atomic<bool> running{false};
    // 1.5 s of copying, three processes down, printing nothing: its I/O is its progress.
    auto busy = archive::Command::run({"sh", "-c", "timeout 1.5 cat /dev/zero > /dev/null; exit 0"},
                                      400ms, running);
    EXPECT_TRUE(busy) << busy.error().message;

    auto stuck = archive::Command::run({"sleep", "30"}, 300ms, running);
    ASSERT_FALSE(stuck);
    EXPECT_EQ(stuck.error().code, core::ErrorCode::kTimeout);
    EXPECT_NE(stuck.error().message.find("sleep made no progress for"), std::string::npos)
        << stuck.error().message;

    auto failed = archive::Command::run(
        {"sh", "-c", "echo listing >&1; echo 'bucket not found' >&2; exit 3"}, 10s, running);
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().message, "sh exited with code 3: bucket not found");

    std::atomic<bool> stopping{true};
    auto cancelled = archive::Command::run({"sleep", "30"}, 10s, stopping);
    ASSERT_FALSE(cancelled);
    EXPECT_EQ(cancelled.error().code, core::ErrorCode::kUnavailable);

    auto missing = archive::Command::run({"no-such-command-here"}, 10s, running);
    ASSERT_FALSE(missing);
    EXPECT_NE(missing.error().message.find("no-such-command-here"), std::string::npos)
        << missing.error().message;
}

TEST_F(ArchiveTest, ADirectoryBackupStillRestoresWhenTheFormatIsNowAStream) {
    auto copy = store(BackupFormat{}).create(data_.string(), provenance(100), running_);
    ASSERT_TRUE(copy) << copy.error().message;
    EXPECT_EQ(copy->archive, "");
    const auto before = snapshot(data_);
    fs::remove_all(data_ / "blocks");
    auto restored = store().restore(copy->name, data_.string(), running_);
    ASSERT_TRUE(restored) << restored.error().message;
    EXPECT_EQ(snapshot(data_), before);
}

}  // namespace
}  // namespace aviary::supervisor
