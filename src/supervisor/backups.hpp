#pragma once
/// supervisor/backups: copies of a node's data dir in a directory target, each with a manifest
/// that says where it came from and what it holds (docs/backups.md).
///
/// A target directory holds one directory per backup, named so that names sort by time and
/// carry the chain id and the height (`20261205T001637123Z-<chain id>-<height>`):
///
///     <dir>/<name>/manifest.json     provenance, and a size and sha256 per file
///     <dir>/<name>/data/...          the copy (format dir; with a push command the copy went to
///                                    the command's target and only the manifest is here)
///     <dir>/<name>/data.tar.zst      the copy as one stream (format tar.zst, no upload command;
///                                    with one, the stream went to the command and only the
///                                    manifest is here)
///     <dir>/.partial-<name>/         a backup being made; never listed, removed by open()
///     <dir>/quarantine/<name>/       failed validation: kept with REASON, never offered
///
/// A backup is published by renaming its .partial directory after every file has been written,
/// checked against its manifest and flushed, so a crash leaves either nothing or a whole,
/// checked backup. Everything here blocks on the file system: call it from a worker thread.
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"

namespace aviary::supervisor {

/// How backups are stored (docs/backups.md, "Targets").
struct BackupFormat {
    /// false: a directory copy per backup (hard links to the previous one); true: one tar.zst
    /// stream per backup.
    bool archive = false;
    /// archive: a command that takes the stream on its stdin, `{{name}}` in its arguments
    /// replaced by the backup's name (`rclone rcat remote:bucket/{{name}}.tar.zst`); empty: the
    /// stream is written to <dir>/<name>/data.tar.zst.
    std::vector<std::string> upload;
    /// With upload: the command that writes backup {{name}}'s stream to its stdout (restores).
    std::vector<std::string> download;
    /// Not archive: a command that copies a backup's tree, staged at `{{source}}`, to a target
    /// of its own (`rsync -a {{source}}/ host:/backups/{{name}}/`); `{{name}}` and `{{chain_id}}`
    /// are replaced too. Empty: the tree is copied into <dir>/<name>/data.
    std::vector<std::string> push;
    /// With push: the command that copies backup {{name}}'s tree back into `{{destination}}`
    /// (restores).
    std::vector<std::string> pull;
    int level = 1;    ///< zstd's level
    int threads = 2;  ///< zstd's worker threads (0: on the copying thread)
    /// The longest an upload, download, push or pull command may make no progress before it is
    /// ended.
    core::Millis idle{std::chrono::minutes{5}};
};

/// One entry of the copy, by its path relative to the data dir ('/'-separated).
struct BackupFile {
    enum class Kind { kFile, kDirectory, kSymlink };
    std::string path;
    Kind kind = Kind::kFile;
    std::uint64_t size = 0;
    std::int64_t mtime_ns = 0;  ///< the source's, restored with it
    mode_t mode = 0;            ///< permission bits
    std::string sha256;         ///< files only
    std::string target;         ///< symlinks only
};

/// What a backup is and where it came from.
struct Manifest {
    std::string name;
    std::string node;   ///< the sidecar's node name
    std::string chain;  ///< the preset ("nodeos")
    std::string chain_id;
    std::optional<std::int64_t> height;
    std::string block_hash;    ///< where the chain gives one
    std::string node_version;  ///< where the chain gives one
    std::string tag;           ///< the operator's label (backupTag)
    /// The node's state when it was copied: "stopped for the backup", "in maintenance", "not
    /// running".
    std::string phase;
    core::TimePoint created_at{};
    std::uint64_t size = 0;        ///< bytes of file content
    std::uint64_t file_count = 0;  ///< regular files
    std::uint64_t linked = 0;      ///< files hard-linked to the previous backup, not copied
    /// Where the copy is: "" a directory (data/), "data.tar.zst" a stream beside the manifest,
    /// "upload" a stream the upload command took, "push" a tree the push command copied.
    std::string archive;
    std::uint64_t archive_size = 0;  ///< bytes of the compressed stream
    std::vector<BackupFile> files;   ///< empty in listings
};

struct BackupEntry {
    Manifest manifest;
    bool usable = true;  ///< false: quarantined, `reason` says why
    std::string reason;
};

/// A check the copy loop makes between files: true to stop (the sidecar is shutting down).
using Cancelled = std::atomic<bool>;

/// True when `path` (relative, '/'-separated) or one of its parent directories matches one of
/// the glob `patterns` (fnmatch: `*` stays within a path component). A pattern without '/'
/// matches a name at any depth ("priv_validator_key.json", "*.key"); one with '/' matches from
/// the data dir's root ("config/priv_validator_state.json", "keystore/*").
bool excluded(std::string_view path, const std::vector<std::string>& patterns);

/// The name a backup made now gets: time (UTC, to the millisecond), chain id (characters other
/// than letters, digits, '.', '_' made '_', at most 64), height ("unknown" when not known).
std::string backup_name(core::TimePoint at,
                        std::string_view chain_id,
                        std::optional<std::int64_t> height);

class BackupStore {
public:
    /// `exclude`: globs (excluded()) never copied, and never replaced by a restore. Entries whose
    /// first component starts with ".aviary-" (the sidecar's own state, a restore in progress)
    /// are always left out.
    BackupStore(std::string dir, std::vector<std::string> exclude, BackupFormat format = {});

    const std::string& dir() const { return dir_; }

    /// Makes the directory when missing and removes what a backup that never finished left.
    core::Result<void> open();

    /// Copies `data_dir` into a new backup described by `provenance` (its name, chain id,
    /// height...; sizes and files are filled in), with a sha256 per file. A file whose path,
    /// size and mtime equal the previous usable backup's of the same chain id is hard-linked to
    /// it instead of copied, where the file system allows. The copy is then checked against the
    /// manifest (a hard-linked file was checked when the previous backup was made): a mismatch
    /// quarantines it and is an error. With a push command the tree is staged in the data dir
    /// and pushed instead (create_push). Returns the manifest as published.
    core::Result<Manifest> create(const std::string& data_dir,
                                  Manifest provenance,
                                  const Cancelled& cancelled);

    /// Every backup, usable and quarantined, newest first; `chain_id` non-empty: that chain's.
    core::Result<std::vector<BackupEntry>> list(std::string_view chain_id = {}) const;

    /// The newest usable backup of `chain_id` (any, when empty) with `tag` (any, when empty).
    core::Result<std::optional<Manifest>> latest(std::string_view chain_id,
                                                 std::string_view tag) const;

    /// One backup's manifest, with its files. kNotFound when there is no usable backup by
    /// that name (a quarantined one is named with its reason).
    core::Result<Manifest> read(std::string_view name) const;

    /// Replaces what `data_dir` holds with backup `name`, each file checked against its sha256
    /// as it is copied (a mismatch quarantines the backup and leaves the data dir as it was).
    /// Files the exclude globs match (signer state, keys) stay as they are in the data dir. The
    /// copy goes to `<data_dir>/.aviary-restore` first and is then swapped in with renames, so
    /// the data dir may be a mount point; finish_restore() completes a swap a crash
    /// interrupted. A pushed backup is pulled into `.aviary-restore` and checked there (pull).
    core::Result<Manifest> restore(std::string_view name,
                                   const std::string& data_dir,
                                   const Cancelled& cancelled);

    /// Moves backup `name` to quarantine/ with `reason`.
    core::Result<void> quarantine(std::string_view name, std::string_view reason);

    /// Removes the oldest usable backups of `chain_id` beyond the newest `keep` (at least one is
    /// always kept). Returns the names removed.
    core::Result<std::vector<std::string>> prune(std::string_view chain_id, int keep);

    /// Where the backup dir lies inside `data_dir` ('/'-separated; "." when it is the data dir),
    /// or "" when it does not: a backup skips it and a restore keeps it.
    std::string inside_data(const std::string& data_dir) const;

private:
    /// The newest usable backup of `chain_id` with its files, when there is one: what a new
    /// backup links to (format dir) or takes unchanged files' checksums from (push).
    std::optional<Manifest> previous(std::string_view chain_id) const;
    /// A backup through the push command: every file hard-linked into a staging tree in the
    /// data dir (`.aviary-push-<name>`), its manifest beside them, the command run on it. Only
    /// the manifest is kept in <dir>. A file whose path, size, mtime and mode equal the previous
    /// backup's takes its sha256 without being read.
    core::Result<Manifest> create_push(const std::string& data_dir,
                                       Manifest manifest,
                                       const Cancelled& cancelled);
    /// Runs the pull command into `staging` and checks what it brought against `manifest`:
    /// every entry present, of its kind, with its size and sha256, and nothing else (a mismatch
    /// quarantines the backup); then gives entries the manifest's modes and mtimes. A pull that
    /// fails does not quarantine: the target may only be away.
    core::Result<void> pull(const Manifest& manifest,
                            const std::string& staging,
                            const Cancelled& cancelled);
    core::Result<Manifest> create_archive(const std::string& data_dir,
                                          Manifest manifest,
                                          const Cancelled& cancelled);
    /// Reads an archived backup from `archive_path` (empty: through the download command),
    /// checking every entry against `manifest`, into `staging` (empty: only checks). Content
    /// that does not match quarantines the backup; a source that fails does not.
    core::Result<void> extract(const Manifest& manifest,
                               const std::string& archive_path,
                               const std::string& staging,
                               const Cancelled& cancelled);

    std::string dir_;
    std::vector<std::string> exclude_;
    BackupFormat format_;
};

/// Completes or discards a restore into `data_dir` that a crash interrupted: a copy that had not
/// finished is removed (the data dir was not touched yet); a swap that had begun is finished.
/// Returns true when it found one. A push's staging tree a crash left (`.aviary-push-*`) is
/// removed too, where it can be, without counting as one.
/// `keep_path`: a path kept as the data dir has it (the backup dir, when it lies inside).
core::Result<bool> finish_restore(const std::string& data_dir,
                                  const std::vector<std::string>& exclude,
                                  std::string_view keep_path = {});

}  // namespace aviary::supervisor
