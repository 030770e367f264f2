// bench/supervise's backup timer: aviary's BackupStore (the directory target of `aviary
// supervise`) on a given data dir, in-process, with nothing else around it.
//
//   backup_bench DATA_DIR TARGET_DIR RESTORE_DIR [tar.zst]
//
// With tar.zst the backups are one tar.zst stream each (backup.format: tar.zst, written beside
// the manifest and read back to check it); there is no hard-link step, so "unchanged" is a
// second full stream, and the restore reads the stream straight into the data dir.
//
// 1. full:      BackupStore::create of DATA_DIR into TARGET_DIR, the first backup there (every
//               file read, hashed, written, read again to check it against the manifest,
//               syncfs, renamed into place).
// 2. unchanged: a second create right after, nothing changed: every file hard-linked to the
//               first backup (and still read again for the check, then syncfs).
// 3. restore:   BackupStore::restore of the first backup into RESTORE_DIR, which must not exist
//               or be empty (copied with its sha256 checked as it goes, syncfs, swapped in).
//
// Wall time of each call (steady clock). MB is 2^20 bytes; MB/s is the data dir's file bytes
// over the call's time. Prints a line per step and one line starting "RESULT " with key=value
// pairs for scripts. Exit status 0 when all three succeeded, 1 otherwise. TARGET_DIR and
// RESTORE_DIR are left as they are (the caller removes them).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "core/core.hpp"
#include "supervisor/backups.hpp"

namespace {

namespace fs = std::filesystem;
namespace sv = aviary::supervisor;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kChainId = "benchchain";
constexpr double kMB = 1024.0 * 1024.0;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

/// A backup name for now that is not `previous` (names are to the millisecond).
std::string fresh_name(const std::string& previous) {
    aviary::core::SystemClock clock;
    std::string name = sv::backup_name(clock.now(), kChainId, 1);
    for (int i = 0; i < 100 && name == previous; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        name = sv::backup_name(clock.now(), kChainId, 1);
    }
    return name;
}

aviary::core::Result<sv::Manifest> timed_create(sv::BackupStore& store,
                                                const std::string& data_dir,
                                                const std::string& name,
                                                const sv::Cancelled& cancelled,
                                                double& seconds) {
    sv::Manifest provenance;
    provenance.name = name;
    provenance.node = "bench";
    provenance.chain = "bench";
    provenance.chain_id = std::string{kChainId};
    provenance.height = 1;
    provenance.phase = "stopped";
    provenance.created_at = aviary::core::SystemClock{}.now();
    const auto start = Clock::now();
    auto made = store.create(data_dir, std::move(provenance), cancelled);
    seconds = seconds_since(start);
    return made;
}

double mb_per_s(std::uint64_t bytes, double seconds) {
    return seconds > 0 ? static_cast<double>(bytes) / kMB / seconds : 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4 && !(argc == 5 && std::string_view{argv[4]} == "tar.zst")) {
        std::fprintf(stderr, "usage: backup_bench DATA_DIR TARGET_DIR RESTORE_DIR [tar.zst]\n");
        return 2;
    }
    const bool stream = argc == 5;
    const std::string data_dir = argv[1];
    const std::string target_dir = argv[2];
    const std::string restore_dir = argv[3];
    std::error_code ec;
    if (fs::exists(restore_dir, ec) && !fs::is_empty(restore_dir, ec)) {
        std::fprintf(stderr, "backup_bench: %s is not empty\n", restore_dir.c_str());
        return 2;
    }
    std::atomic<bool> cancelled{false};
    sv::BackupStore store{target_dir, {}, sv::BackupFormat{.archive = stream}};
    if (auto opened = store.open(); !opened) {
        std::fprintf(stderr, "backup_bench: %s\n", opened.error().message.c_str());
        return 1;
    }

    double full_s = 0;
    const std::string first_name = fresh_name({});
    auto first = timed_create(store, data_dir, first_name, cancelled, full_s);
    if (!first) {
        std::fprintf(stderr, "backup_bench: full backup: %s\n", first.error().message.c_str());
        return 1;
    }
    const std::uint64_t bytes = first->size;
    const std::uint64_t files = first->file_count;
    std::printf("full:      %s, %llu files, %llu bytes, %.3f s, %.1f MB/s\n", first->name.c_str(),
                static_cast<unsigned long long>(files), static_cast<unsigned long long>(bytes),
                full_s, mb_per_s(bytes, full_s));

    double unchanged_s = 0;
    auto second = timed_create(store, data_dir, fresh_name(first_name), cancelled, unchanged_s);
    if (!second) {
        std::fprintf(stderr, "backup_bench: second backup: %s\n", second.error().message.c_str());
        return 1;
    }
    std::printf("unchanged: %s, %llu of %llu files hard-linked, %.3f s, %.1f MB/s\n",
                second->name.c_str(), static_cast<unsigned long long>(second->linked),
                static_cast<unsigned long long>(second->file_count), unchanged_s,
                mb_per_s(bytes, unchanged_s));

    const auto start = Clock::now();
    auto restored = store.restore(first->name, restore_dir, cancelled);
    const double restore_s = seconds_since(start);
    if (!restored) {
        std::fprintf(stderr, "backup_bench: restore: %s\n", restored.error().message.c_str());
        return 1;
    }
    std::printf("restore:   %s into %s, %.3f s, %.1f MB/s\n", restored->name.c_str(),
                restore_dir.c_str(), restore_s, mb_per_s(bytes, restore_s));

    if (stream) {
        std::printf("stream:    %llu compressed bytes (%.1f %% of the files)\n",
                    static_cast<unsigned long long>(first->archive_size),
                    bytes > 0 ? 100.0 * static_cast<double>(first->archive_size) /
                                    static_cast<double>(bytes)
                              : 0);
    }
    std::printf(
        "RESULT files=%llu bytes=%llu full_s=%.3f full_mbps=%.1f unchanged_s=%.3f "
        "unchanged_mbps=%.1f linked=%llu restore_s=%.3f restore_mbps=%.1f\n",
        static_cast<unsigned long long>(files), static_cast<unsigned long long>(bytes), full_s,
        mb_per_s(bytes, full_s), unchanged_s, mb_per_s(bytes, unchanged_s),
        static_cast<unsigned long long>(second->linked), restore_s, mb_per_s(bytes, restore_s));
    return 0;
}
