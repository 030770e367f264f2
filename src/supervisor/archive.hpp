#pragma once
// supervisor/archive: a backup as one stream, a tar archive compressed with zstd (docs/backups.md,
// "Streamed targets"), and the commands that carry such a stream to and from a target that takes
// one object (rclone rcat, `aws s3 cp -`, `gsutil cp -`), or that copy a whole tree themselves
// (rsync, `rclone sync`: "Sync commands"). Private to supervisor: backups.cpp writes and reads
// it.
//
// The archive is POSIX ustar with GNU long names ('L', 'K') and base-256 sizes, so GNU tar and
// bsdtar read it: `zstd -dc NAME.tar.zst | tar -x`. Its last entry is the backup's manifest,
// `.aviary-manifest.json`: a stream cut short has none and is refused whole.
//
// Everything here blocks: call it from a worker thread.
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/core.hpp"

namespace aviary::supervisor::archive {

/// The entry name of the manifest inside an archive (its last entry).
inline constexpr std::string_view kManifestEntry = ".aviary-manifest.json";

/// Where the compressed bytes go: all of them, or an error.
using Sink = std::function<core::Result<void>(const char* data, std::size_t size)>;
/// Where they come from: up to `size` bytes into `data`; 0 at the end of the stream.
using Source = std::function<core::Result<std::size_t>(char* data, std::size_t size)>;

struct Entry {
    enum class Kind { kFile, kDirectory, kSymlink };
    std::string path;  ///< relative, '/'-separated, no trailing '/'
    Kind kind = Kind::kFile;
    std::uint64_t size = 0;  ///< files
    mode_t mode = 0;
    std::int64_t mtime_ns = 0;
    std::string target;  ///< symlinks
};

/// Writes a tar archive through zstd into a sink.
class Writer {
public:
    /// `level`: zstd's (1 fastest); `threads`: zstd's workers (0: compress on this thread).
    static core::Result<std::unique_ptr<Writer>> make(Sink sink, int level, int threads);
    ~Writer();
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    /// A directory or symlink entry, or the header of a file whose `size` bytes follow through
    /// write(), all of them before the next add().
    core::Result<void> add(const Entry& entry);
    core::Result<void> write(const char* data, std::size_t size);
    /// The end-of-archive blocks and the end of the zstd frame, flushed to the sink.
    core::Result<void> finish();
    /// Compressed bytes given to the sink so far.
    std::uint64_t written() const;

private:
    struct Impl;
    explicit Writer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// Reads a tar archive through zstd from a source, entry by entry.
class Reader {
public:
    static core::Result<std::unique_ptr<Reader>> make(Source source);
    ~Reader();
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

    /// The next entry, or false at the end of the archive. A file's content is read with
    /// read() before the next call (what is left unread is skipped).
    core::Result<bool> next(Entry& entry);
    /// Up to `size` bytes of the current file's content; 0 at its end.
    core::Result<std::size_t> read(char* data, std::size_t size);

private:
    struct Impl;
    explicit Reader(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// A command run with a pipe to its stdin (an upload) or from its stdout (a download); stderr is
/// kept (the last 4 KiB) for the error message. Never a shell: argv[0] is looked up on PATH.
class Command {
public:
    enum class Direction { kToStdin, kFromStdout };
    /// `idle`: the longest a read or write may wait for the command before it is ended.
    static core::Result<std::unique_ptr<Command>> start(std::vector<std::string> argv,
                                                        Direction direction,
                                                        core::Millis idle);
    /// Runs a command that moves files itself (rsync, `rclone sync`) to its end: stdin is
    /// /dev/null, its stdout is read and dropped, its stderr kept for the error message. It is
    /// ended when it makes no progress for `idle` — no output, and no change in the bytes its
    /// processes read and wrote (/proc/PID/io), so a quiet `rsync -a` copying a large file is
    /// not cut short — and at once when `cancelled` turns true (the error is then kUnavailable).
    /// An error names its exit and its stderr.
    static core::Result<void> run(std::vector<std::string> argv,
                                  core::Millis idle,
                                  const std::atomic<bool>& cancelled);
    ~Command();  ///< ends the command (SIGTERM, then SIGKILL) if it still runs
    Command(const Command&) = delete;
    Command& operator=(const Command&) = delete;

    Sink sink();
    Source source();
    /// Closes the pipe and waits for the command; an error names its exit and its stderr.
    core::Result<void> finish();
    /// Ends the command now (a failed or cancelled transfer).
    void abort();

private:
    struct Impl;
    explicit Command(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

/// A template's key and what replaces it: {"name", "20261205T002510945Z-..."} for `{{name}}`.
using Template = std::pair<std::string_view, std::string_view>;

/// `argv` with every `{{key}}` of `values` replaced in every element, in one pass (a value that
/// holds `{{...}}` itself is not replaced again). Unknown keys are left as they are.
std::vector<std::string> render_argv(const std::vector<std::string>& argv,
                                     const std::vector<Template>& values);

/// `argv` with `{{name}}` replaced by `name` in every element.
std::vector<std::string> render_argv(const std::vector<std::string>& argv, std::string_view name);

}  // namespace aviary::supervisor::archive
