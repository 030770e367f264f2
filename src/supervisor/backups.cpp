#include "supervisor/backups.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "net/net.hpp"
#include "supervisor/archive.hpp"

namespace aviary::supervisor {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr std::string_view kManifest = "manifest.json";
constexpr std::string_view kData = "data";
constexpr std::string_view kPartial = ".partial-";
constexpr std::string_view kQuarantine = "quarantine";
constexpr std::string_view kReason = "REASON";
constexpr std::string_view kOwnPrefix = ".aviary-";
constexpr std::string_view kRestoring = ".aviary-restore";
constexpr std::string_view kReady = ".aviary-restore-ready";
constexpr std::string_view kOld = ".aviary-restore-old";
constexpr std::string_view kMoved = ".aviary-moved";
constexpr std::size_t kBuffer = 256 * 1024;
constexpr std::string_view kArchiveFile = "data.tar.zst";
constexpr std::string_view kUploaded = "upload";
constexpr std::string_view kPushed = "push";
/// A push's staging tree in the data dir, `.aviary-push-<name>`: ours, so never backed up.
constexpr std::string_view kPushStaging = ".aviary-push-";
/// The most an archive's own manifest entry may be (it is read into memory).
constexpr std::uint64_t kMaxManifestEntry = std::uint64_t{1} << 30;
constexpr int kManifestVersion = 1;

core::Error storage(std::string message) {
    return core::Error{core::ErrorCode::kStorage, std::move(message)};
}

core::Error errno_error(std::string_view what, const fs::path& path) {
    return storage(fmt::format("{} {}: {}", what, path.string(), std::strerror(errno)));
}

core::Error cancelled_error() {
    return core::Error{core::ErrorCode::kUnavailable, "cancelled: the sidecar is shutting down"};
}

/// Closes a descriptor on every path out.
class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }
    /// Takes `fd`, closing what it held.
    void reset(int fd) {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }
    /// close() reports what a deferred write failed with (NFS, some FUSE targets).
    int close() {
        int fd = fd_;
        fd_ = -1;
        return ::close(fd);
    }

private:
    int fd_;
};

std::int64_t mtime_ns(const struct stat& st) {
    return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

timespec to_timespec(std::int64_t ns) {
    return timespec{.tv_sec = static_cast<time_t>(ns / 1'000'000'000),
                    .tv_nsec = static_cast<long>(ns % 1'000'000'000)};
}

bool own_entry(std::string_view relative) {
    return relative.starts_with(kOwnPrefix);
}

/// Reads `from` to its end, feeding `hash`, and writes it to `to` when it is open (>= 0).
core::Result<std::uint64_t> pump(int from,
                                 const fs::path& from_path,
                                 int to,
                                 const fs::path& to_path,
                                 net::Sha256& hash,
                                 std::vector<char>& buffer) {
    std::uint64_t total = 0;
    while (true) {
        ssize_t got = ::read(from, buffer.data(), buffer.size());
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno_error("cannot read", from_path);
        }
        if (got == 0) {
            return total;
        }
        hash.update(buffer.data(), static_cast<std::size_t>(got));
        total += static_cast<std::uint64_t>(got);
        for (ssize_t done = 0; to >= 0 && done < got;) {
            ssize_t put = ::write(to, buffer.data() + done, static_cast<std::size_t>(got - done));
            if (put < 0) {
                if (errno == EINTR) {
                    continue;
                }
                return errno_error("cannot write", to_path);
            }
            done += put;
        }
    }
}

struct Digest {
    std::uint64_t size = 0;
    std::string sha256;
};

core::Result<Digest> hash_file(const fs::path& path, net::Sha256& hash, std::vector<char>& buffer) {
    Fd in{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (in.get() < 0) {
        return errno_error("cannot open", path);
    }
    auto size = pump(in.get(), path, -1, {}, hash, buffer);
    if (!size) {
        return size.error();
    }
    return Digest{*size, hash.hex()};
}

/// Copies a regular file, hashing what it reads; the copy gets `mode` and `mtime`.
core::Result<Digest> copy_file(const fs::path& from,
                               const fs::path& to,
                               mode_t mode,
                               std::int64_t mtime,
                               net::Sha256& hash,
                               std::vector<char>& buffer) {
    Fd in{::open(from.c_str(), O_RDONLY | O_CLOEXEC)};
    if (in.get() < 0) {
        return errno_error("cannot open", from);
    }
    Fd out{::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
    if (out.get() < 0) {
        return errno_error("cannot create", to);
    }
    auto size = pump(in.get(), from, out.get(), to, hash, buffer);
    if (!size) {
        return size.error();
    }
    const timespec times[2] = {to_timespec(mtime), to_timespec(mtime)};
    if (::fchmod(out.get(), mode) != 0 || ::futimens(out.get(), times) != 0) {
        return errno_error("cannot set the mode and time of", to);
    }
    if (out.close() != 0) {
        return errno_error("cannot write", to);
    }
    return Digest{*size, hash.hex()};
}

core::Result<void> make_dir(const fs::path& path, mode_t mode) {
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
        return errno_error("cannot make the directory", path);
    }
    if (::chmod(path.c_str(), mode | S_IRWXU) != 0) {
        return errno_error("cannot set the mode of", path);
    }
    return {};
}

core::Result<void> set_dir_time(const fs::path& path, std::int64_t mtime) {
    const timespec times[2] = {to_timespec(mtime), to_timespec(mtime)};
    if (::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
        return errno_error("cannot set the time of", path);
    }
    return {};
}

core::Result<void> remove_tree(const fs::path& path) {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (ec) {
        return storage(fmt::format("cannot remove {}: {}", path.string(), ec.message()));
    }
    return {};
}

/// Flushes everything written to the file system that holds `path`, then `path`'s directory
/// entry itself.
core::Result<void> flush(const fs::path& path) {
    Fd dir{::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (dir.get() < 0) {
        return errno_error("cannot open", path);
    }
    if (::syncfs(dir.get()) != 0) {
        return errno_error("cannot flush the file system of", path);
    }
    return {};
}

core::Result<void> sync_dir(const fs::path& path) {
    Fd dir{::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (dir.get() < 0 || ::fsync(dir.get()) != 0) {
        return errno_error("cannot sync the directory", path);
    }
    return {};
}

// --- the manifest ---------------------------------------------------------------------------

std::string_view kind_name(BackupFile::Kind kind) {
    switch (kind) {
        case BackupFile::Kind::kDirectory:
            return "dir";
        case BackupFile::Kind::kSymlink:
            return "symlink";
        case BackupFile::Kind::kFile:
            break;
    }
    return "file";
}

json::object to_json(const Manifest& m) {
    json::array files;
    files.reserve(m.files.size());
    for (const auto& f : m.files) {
        json::object o{{"path", f.path}, {"kind", kind_name(f.kind)}};
        if (f.kind == BackupFile::Kind::kSymlink) {
            o["target"] = f.target;
        } else {
            o["mode"] = f.mode;
            o["mtime_ns"] = f.mtime_ns;
        }
        if (f.kind == BackupFile::Kind::kFile) {
            o["size"] = f.size;
            o["sha256"] = f.sha256;
        }
        files.push_back(std::move(o));
    }
    return json::object{{"version", kManifestVersion},
                        {"name", m.name},
                        {"node", m.node},
                        {"chain", m.chain},
                        {"chain_id", m.chain_id},
                        {"height", m.height ? json::value(*m.height) : json::value(nullptr)},
                        {"block_hash", m.block_hash},
                        {"node_version", m.node_version},
                        {"tag", m.tag},
                        {"phase", m.phase},
                        {"created_at", core::format_time(m.created_at)},
                        {"size", m.size},
                        {"file_count", m.file_count},
                        {"linked", m.linked},
                        {"archive", m.archive},
                        {"archive_size", m.archive_size},
                        {"files", std::move(files)}};
}

/// Reads a manifest; `with_files` false skips the file list (listings).
core::Result<Manifest> read_manifest(const fs::path& path, bool with_files) {
    std::ifstream in{path};
    if (!in) {
        return storage(fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
    }
    std::stringstream text;
    text << in.rdbuf();
    auto bad = [&](std::string_view why) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("{}: {}", path.string(), why)};
    };
    boost::system::error_code ec;
    auto value = json::parse(text.str(), ec);
    if (ec || !value.is_object()) {
        return bad("not a manifest (expected a JSON object)");
    }
    const auto& o = value.as_object();
    auto text_of = [&](std::string_view key) -> std::string {
        const auto* v = o.if_contains(key);
        return v != nullptr && v->is_string() ? std::string{v->as_string()} : std::string{};
    };
    auto number_of = [&](const json::object& from, std::string_view key) -> std::uint64_t {
        const auto* v = from.if_contains(key);
        if (v == nullptr) {
            return 0;
        }
        if (v->is_uint64()) {
            return v->as_uint64();
        }
        return v->is_int64() && v->as_int64() >= 0 ? static_cast<std::uint64_t>(v->as_int64()) : 0;
    };
    Manifest m;
    m.name = text_of("name");
    if (m.name.empty()) {
        return bad("no name");
    }
    m.node = text_of("node");
    m.chain = text_of("chain");
    m.chain_id = text_of("chain_id");
    if (const auto* h = o.if_contains("height"); h != nullptr && h->is_int64()) {
        m.height = h->as_int64();
    } else if (h != nullptr && h->is_uint64()) {
        m.height = static_cast<std::int64_t>(h->as_uint64());
    }
    m.block_hash = text_of("block_hash");
    m.node_version = text_of("node_version");
    m.tag = text_of("tag");
    m.phase = text_of("phase");
    auto created = core::parse_time(text_of("created_at"));
    if (!created) {
        return bad("created_at: " + created.error().message);
    }
    m.created_at = *created;
    m.size = number_of(o, "size");
    m.file_count = number_of(o, "file_count");
    m.linked = number_of(o, "linked");
    m.archive = text_of("archive");
    m.archive_size = number_of(o, "archive_size");
    if (!m.archive.empty() && m.archive != kArchiveFile && m.archive != kUploaded &&
        m.archive != kPushed) {
        return bad(fmt::format("archive \"{}\" is not {}, {} or {}", m.archive, kArchiveFile,
                               kUploaded, kPushed));
    }
    if (!with_files) {
        return m;
    }
    const auto* files = o.if_contains("files");
    if (files == nullptr || !files->is_array()) {
        return bad("no files list");
    }
    for (const auto& item : files->as_array()) {
        if (!item.is_object()) {
            return bad("a files entry is not an object");
        }
        const auto& f = item.as_object();
        BackupFile file;
        const auto* path = f.if_contains("path");
        const auto* kind = f.if_contains("kind");
        if (path == nullptr || !path->is_string() || kind == nullptr || !kind->is_string()) {
            return bad("a files entry without path or kind");
        }
        file.path = std::string{path->as_string()};
        if (file.path.empty() || file.path.front() == '/' ||
            file.path.find("..") != std::string::npos) {
            return bad(
                fmt::format("files entry \"{}\" is not a path inside the data dir", file.path));
        }
        const std::string_view k = kind->as_string();
        file.kind = k == "dir"       ? BackupFile::Kind::kDirectory
                    : k == "symlink" ? BackupFile::Kind::kSymlink
                                     : BackupFile::Kind::kFile;
        file.size = number_of(f, "size");
        file.mode = static_cast<mode_t>(number_of(f, "mode") & 07777);
        if (const auto* t = f.if_contains("mtime_ns"); t != nullptr && t->is_int64()) {
            file.mtime_ns = t->as_int64();
        }
        if (const auto* s = f.if_contains("sha256"); s != nullptr && s->is_string()) {
            file.sha256 = std::string{s->as_string()};
        }
        if (const auto* t = f.if_contains("target"); t != nullptr && t->is_string()) {
            file.target = std::string{t->as_string()};
        }
        if (file.kind == BackupFile::Kind::kFile && file.sha256.size() != 64) {
            return bad(fmt::format("files entry \"{}\" has no sha256", file.path));
        }
        m.files.push_back(std::move(file));
    }
    return m;
}

core::Result<void> write_manifest(const fs::path& path, const Manifest& manifest) {
    const std::string text = json::serialize(to_json(manifest)) + "\n";
    Fd out{::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (out.get() < 0) {
        return errno_error("cannot create", path);
    }
    for (std::size_t done = 0; done < text.size();) {
        ssize_t put = ::write(out.get(), text.data() + done, text.size() - done);
        if (put < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno_error("cannot write", path);
        }
        done += static_cast<std::size_t>(put);
    }
    if (out.close() != 0) {
        return errno_error("cannot write", path);
    }
    return {};
}

// --- walking the data dir -------------------------------------------------------------------

/// Calls `visit(relative, absolute, stat)` for every entry under `root` that is not excluded
/// (nor `skip`, the backup dir when it lies inside), parents before children, in name order (so
/// manifests compare across backups).
template <class Visit>
core::Result<void> walk(const fs::path& root,
                        const std::string& relative,
                        const std::vector<std::string>& exclude,
                        std::string_view skip,
                        const Cancelled& cancelled,
                        Visit& visit) {
    std::vector<std::string> names;
    std::error_code ec;
    const fs::path here = relative.empty() ? root : root / relative;
    for (fs::directory_iterator it{here, ec}, end; !ec && it != end; it.increment(ec)) {
        names.push_back(it->path().filename().string());
    }
    if (ec) {
        return storage(fmt::format("cannot list {}: {}", here.string(), ec.message()));
    }
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
        if (cancelled.load(std::memory_order_relaxed)) {
            return cancelled_error();
        }
        const std::string path = relative.empty() ? name : relative + "/" + name;
        if (own_entry(path) || path == skip || excluded(path, exclude)) {
            continue;
        }
        const fs::path absolute = root / path;
        struct stat st {};
        if (::lstat(absolute.c_str(), &st) != 0) {
            return errno_error("cannot read", absolute);
        }
        if (auto visited = visit(path, absolute, st); !visited) {
            return visited;
        }
        if (S_ISDIR(st.st_mode)) {
            if (auto inner = walk(root, path, exclude, skip, cancelled, visit); !inner) {
                return inner;
            }
        }
    }
    return {};
}

/// A directory or a symlink of the walk, made at `to` and described in `file` (a directory's
/// time is set last, from `dir_times`); false for any other kind of entry.
core::Result<bool> make_dir_or_link(const std::string& path,
                                    const fs::path& absolute,
                                    const fs::path& to,
                                    const struct stat& st,
                                    BackupFile& file,
                                    std::vector<std::pair<fs::path, std::int64_t>>& dir_times) {
    if (S_ISDIR(st.st_mode)) {
        file.kind = BackupFile::Kind::kDirectory;
        if (auto made = make_dir(to, file.mode); !made) {
            return made.error();
        }
        dir_times.emplace_back(to, file.mtime_ns);
        return true;
    }
    if (S_ISLNK(st.st_mode)) {
        file.kind = BackupFile::Kind::kSymlink;
        std::error_code ec;
        file.target = fs::read_symlink(absolute, ec).string();
        if (ec || ::symlink(file.target.c_str(), to.c_str()) != 0) {
            return storage(fmt::format("cannot copy the symlink {}: {}", path,
                                       ec ? ec.message() : std::strerror(errno)));
        }
        return true;
    }
    return false;
}

/// The previous backup's files by path, for hard-link dedup.
struct Previous {
    fs::path data;
    std::map<std::string, BackupFile, std::less<>> files;
};

/// The previous backup's entry for a file that looks unchanged since (path, size, mtime and mode
/// equal: rsync's quick check), or null.
const BackupFile* unchanged(const Previous* previous,
                            const std::string& path,
                            const struct stat& st) {
    if (previous == nullptr) {
        return nullptr;
    }
    auto same = previous->files.find(path);
    if (same == previous->files.end() || same->second.kind != BackupFile::Kind::kFile ||
        same->second.size != static_cast<std::uint64_t>(st.st_size) ||
        same->second.mtime_ns != mtime_ns(st) || same->second.mode != (st.st_mode & 07777)) {
        return nullptr;
    }
    return &same->second;
}

core::Result<Digest> link_or_copy(const Previous* previous,
                                  const fs::path& from,
                                  const fs::path& to,
                                  const std::string& path,
                                  const struct stat& st,
                                  net::Sha256& hash,
                                  std::vector<char>& buffer,
                                  bool& linked) {
    linked = false;
    if (const BackupFile* same = unchanged(previous, path, st); same != nullptr) {
        if (::link((previous->data / path).c_str(), to.c_str()) == 0) {
            linked = true;
            return Digest{same->size, same->sha256};
        }
        // EXDEV, EMLINK, a file system without hard links: copy instead.
    }
    return copy_file(from, to, st.st_mode & 07777, mtime_ns(st), hash, buffer);
}

/// Puts a file of the data dir into a push's staging tree, which lies in the data dir: a hard
/// link, so no bytes are copied (the node is stopped, so the file does not change under the
/// push); a copy where the file system refuses the link. Returns the copy's digest, taken as
/// it was read, or nothing when it was linked.
core::Result<std::optional<Digest>> stage_file(const fs::path& from,
                                               const fs::path& to,
                                               const struct stat& st,
                                               net::Sha256& hash,
                                               std::vector<char>& buffer) {
    if (::link(from.c_str(), to.c_str()) == 0) {
        return std::optional<Digest>{};
    }
    // EXDEV: a mount inside the data dir; EPERM: protected_hardlinks, or a file system
    // without hard links; EMLINK: too many links to the file.
    const int why = errno;
    if (why != EXDEV && why != EPERM && why != EMLINK) {
        return storage(fmt::format("cannot link {} into {}: {}", from.string(), to.string(),
                                   std::strerror(why)));
    }
    auto copied = copy_file(from, to, st.st_mode & 07777, mtime_ns(st), hash, buffer);
    if (!copied) {
        return copied.error();
    }
    return std::optional<Digest>{std::move(*copied)};
}

/// Removes the staging trees of pushes that never finished (a crash, a kill) from `data`.
core::Result<void> remove_push_staging(const fs::path& data) {
    std::error_code ec;
    std::vector<fs::path> stale;
    for (fs::directory_iterator it{data, ec}, end; !ec && it != end; it.increment(ec)) {
        if (it->path().filename().string().starts_with(kPushStaging)) {
            stale.push_back(it->path());
        }
    }
    if (ec && ec != std::errc::no_such_file_or_directory) {
        return storage(fmt::format("cannot list {}: {}", data.string(), ec.message()));
    }
    for (const auto& path : stale) {
        if (auto gone = remove_tree(path); !gone) {
            return gone;
        }
    }
    return {};
}

/// Checks every file under `data` against the manifest: what landed is what was read. Files in
/// `linked` are hard links to the previous backup's, checked when that one was made: skipped.
core::Result<void> check_against(const fs::path& data,
                                 const Manifest& manifest,
                                 const std::set<std::string, std::less<>>& linked,
                                 const Cancelled& cancelled) {
    auto hash = net::Sha256::make();
    if (!hash) {
        return hash.error();
    }
    std::vector<char> buffer(kBuffer);
    for (const auto& file : manifest.files) {
        if (cancelled.load(std::memory_order_relaxed)) {
            return cancelled_error();
        }
        if (file.kind != BackupFile::Kind::kFile || linked.contains(file.path)) {
            continue;
        }
        auto digest = hash_file(data / file.path, *hash, buffer);
        if (!digest) {
            return digest.error();
        }
        if (digest->size != file.size || digest->sha256 != file.sha256) {
            return core::Error{
                core::ErrorCode::kStorage,
                fmt::format("{} does not match the manifest: {} bytes, sha256 {} "
                            "(the manifest says {} bytes, sha256 {})",
                            file.path, digest->size, digest->sha256, file.size, file.sha256)};
        }
    }
    return {};
}

/// How every backup ends, by `checked` (the copy against its manifest): quarantined with the
/// reason, or flushed, renamed into place and its directory entry synced. A check that was
/// cancelled removes the partial backup.
core::Result<Manifest> settle(const fs::path& root,
                              const fs::path& partial,
                              Manifest manifest,
                              const core::Result<void>& checked) {
    auto fail = [&](core::Error error) -> core::Result<Manifest> {
        (void)remove_tree(partial);
        return error;
    };
    if (!checked) {
        if (checked.error().code == core::ErrorCode::kUnavailable) {
            return fail(checked.error());
        }
        std::error_code ec;
        fs::rename(partial, root / kQuarantine / manifest.name, ec);
        std::ofstream{root / kQuarantine / manifest.name / kReason} << checked.error().message
                                                                    << "\n";
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("backup {} failed validation (quarantined): {}",
                                       manifest.name, checked.error().message)};
    }
    if (auto flushed = flush(partial); !flushed) {
        return fail(flushed.error());
    }
    std::error_code ec;
    fs::rename(partial, root / manifest.name, ec);
    if (ec) {
        return fail(
            storage(fmt::format("cannot publish backup {}: {}", manifest.name, ec.message())));
    }
    if (auto synced = sync_dir(root); !synced) {
        return synced.error();
    }
    return manifest;
}

bool is_backup_dir(std::string_view name) {
    return !name.starts_with(".") && name != kQuarantine;
}

/// The chain id as a backup's name writes it: characters other than letters, digits, '.' and '_'
/// made '_', at most 64, "unknown" when empty. `{{chain_id}}` in push and pull is this too, so
/// a chain id a node reported can never make a path leave the target ('/', "..").
std::string chain_id_part(std::string_view chain_id) {
    std::string chain;
    for (char c : chain_id.substr(0, 64)) {
        const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '_';
        chain.push_back(safe ? c : '_');
    }
    return chain.empty() ? std::string{"unknown"} : chain;
}

}  // namespace

bool excluded(std::string_view path, const std::vector<std::string>& patterns) {
    // The path itself and each of its parents: excluding a directory excludes what it holds.
    for (std::string_view p = path; !p.empty();) {
        const auto slash = p.rfind('/');
        const std::string prefix{p};
        const std::string name{slash == std::string_view::npos ? p : p.substr(slash + 1)};
        for (const auto& pattern : patterns) {
            const bool rooted = pattern.find('/') != std::string::npos;
            if (::fnmatch(pattern.c_str(), (rooted ? prefix : name).c_str(), FNM_PATHNAME) == 0) {
                return true;
            }
        }
        p = slash == std::string_view::npos ? std::string_view{} : p.substr(0, slash);
    }
    return false;
}

std::string backup_name(core::TimePoint at,
                        std::string_view chain_id,
                        std::optional<std::int64_t> height) {
    const std::string chain = chain_id_part(chain_id);
    const auto day = std::chrono::floor<std::chrono::days>(at);
    const std::chrono::year_month_day ymd{day};
    const std::chrono::hh_mm_ss time{at - day};
    return fmt::format("{:04}{:02}{:02}T{:02}{:02}{:02}{:03}Z-{}-{}", int{ymd.year()},
                       unsigned{ymd.month()}, unsigned{ymd.day()}, time.hours().count(),
                       time.minutes().count(), time.seconds().count(), time.subseconds().count(),
                       chain, height ? std::to_string(*height) : std::string{"unknown"});
}

BackupStore::BackupStore(std::string dir, std::vector<std::string> exclude, BackupFormat format)
    : dir_(std::move(dir)), exclude_(std::move(exclude)), format_(std::move(format)) {}

std::string BackupStore::inside_data(const std::string& data_dir) const {
    std::error_code ec;
    const auto data_real = fs::weakly_canonical(data_dir, ec);
    const auto root_real = fs::weakly_canonical(dir_, ec);
    const auto inside = root_real.lexically_relative(data_real);
    if (ec || inside.empty() || *inside.begin() == "..") {
        return {};
    }
    return inside.generic_string();
}

core::Result<void> BackupStore::open() {
    std::error_code ec;
    fs::create_directories(fs::path{dir_} / kQuarantine, ec);
    if (ec) {
        return storage(fmt::format("cannot make the backup dir {}: {}", dir_, ec.message()));
    }
    for (fs::directory_iterator it{dir_, ec}, end; !ec && it != end; it.increment(ec)) {
        if (it->path().filename().string().starts_with(kPartial)) {
            if (auto removed = remove_tree(it->path()); !removed) {
                return removed;
            }
        }
    }
    if (ec) {
        return storage(fmt::format("cannot list the backup dir {}: {}", dir_, ec.message()));
    }
    return {};
}

core::Result<Manifest> BackupStore::create(const std::string& data_dir,
                                           Manifest provenance,
                                           const Cancelled& cancelled) {
    auto hash = net::Sha256::make();
    if (!hash) {
        return hash.error();
    }
    if (auto opened = open(); !opened) {
        return opened.error();
    }
    Manifest manifest = std::move(provenance);
    manifest.files.clear();
    manifest.size = manifest.file_count = manifest.linked = 0;
    const fs::path root{dir_};
    if (fs::exists(root / manifest.name)) {
        return core::Error{core::ErrorCode::kAlreadyExists,
                           fmt::format("backup {} exists already", manifest.name)};
    }
    if (format_.archive) {
        return create_archive(data_dir, std::move(manifest), cancelled);
    }
    if (!format_.push.empty()) {
        return create_push(data_dir, std::move(manifest), cancelled);
    }
    const fs::path partial = root / (std::string{kPartial} + manifest.name);
    const fs::path data = partial / kData;
    if (auto made = make_dir(partial, 0755); !made) {
        return made.error();
    }
    auto fail = [&](core::Error error) -> core::Result<Manifest> {
        (void)remove_tree(partial);
        return error;
    };
    struct stat root_stat {};
    if (::stat(data_dir.c_str(), &root_stat) != 0 || !S_ISDIR(root_stat.st_mode)) {
        return fail(core::Error{core::ErrorCode::kNotFound,
                                fmt::format("the data dir {} is not a directory", data_dir)});
    }
    if (auto made = make_dir(data, root_stat.st_mode & 07777); !made) {
        return fail(made.error());
    }

    // A backup dir inside the data dir is never copied into itself.
    const std::string skip = inside_data(data_dir);
    if (skip == ".") {
        return fail(core::Error{core::ErrorCode::kInvalidArgument,
                                fmt::format("the backup dir {} is the data dir", dir_)});
    }
    std::optional<Previous> previous;
    if (auto last = this->previous(manifest.chain_id)) {
        previous.emplace();
        previous->data = root / last->name / kData;
        for (auto& file : last->files) {
            std::string path = file.path;
            previous->files.emplace(std::move(path), std::move(file));
        }
    }

    std::vector<char> buffer(kBuffer);
    std::vector<std::pair<fs::path, std::int64_t>> dir_times;
    std::set<std::string, std::less<>> linked_paths;
    auto visit = [&](const std::string& path, const fs::path& absolute,
                     const struct stat& st) -> core::Result<void> {
        BackupFile file{.path = path, .mtime_ns = mtime_ns(st), .mode = st.st_mode & 07777};
        const fs::path to = data / path;
        auto made = make_dir_or_link(path, absolute, to, st, file, dir_times);
        if (!made) {
            return made.error();
        }
        if (!*made && !S_ISREG(st.st_mode)) {
            return {};  // sockets, FIFOs, devices: nothing to copy
        }
        if (!*made) {
            bool linked = false;
            auto digest = link_or_copy(previous ? &*previous : nullptr, absolute, to, path, st,
                                       *hash, buffer, linked);
            if (!digest) {
                return digest.error();
            }
            file.size = digest->size;
            file.sha256 = std::move(digest->sha256);
            manifest.size += file.size;
            ++manifest.file_count;
            if (linked) {
                ++manifest.linked;
                linked_paths.insert(path);
            }
        }
        manifest.files.push_back(std::move(file));
        return {};
    };
    if (auto walked = walk(fs::path{data_dir}, {}, exclude_, skip, cancelled, visit); !walked) {
        return fail(walked.error());
    }
    // Directories get their times last: writing into one moves its mtime.
    for (auto it = dir_times.rbegin(); it != dir_times.rend(); ++it) {
        (void)set_dir_time(it->first, it->second);
    }
    if (auto written = write_manifest(partial / kManifest, manifest); !written) {
        return fail(written.error());
    }
    auto checked = check_against(data, manifest, linked_paths, cancelled);
    return settle(root, partial, std::move(manifest), checked);
}

std::optional<Manifest> BackupStore::previous(std::string_view chain_id) const {
    auto last = latest(chain_id, {});
    if (!last || !*last) {
        return std::nullopt;
    }
    auto full = read((*last)->name);
    if (!full) {
        return std::nullopt;  // unreadable: the backup is made without it, whole
    }
    return std::move(*full);
}

core::Result<Manifest> BackupStore::create_push(const std::string& data_dir,
                                                Manifest manifest,
                                                const Cancelled& cancelled) {
    auto hash = net::Sha256::make();
    if (!hash) {
        return hash.error();
    }
    const fs::path root{dir_};
    const fs::path data{data_dir};
    const fs::path partial = root / (std::string{kPartial} + manifest.name);
    const fs::path staging = data / (std::string{kPushStaging} + manifest.name);
    struct stat root_stat {};
    if (::stat(data_dir.c_str(), &root_stat) != 0 || !S_ISDIR(root_stat.st_mode)) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("the data dir {} is not a directory", data_dir)};
    }
    const std::string skip = inside_data(data_dir);
    if (skip == ".") {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("the backup dir {} is the data dir", dir_)};
    }
    // What a push that never finished left: links, mostly, but in the way of nothing else.
    if (auto stale = remove_push_staging(data); !stale) {
        return stale.error();
    }
    if (auto made = make_dir(partial, 0755); !made) {
        return made.error();
    }
    auto fail = [&](core::Error error) -> core::Result<Manifest> {
        (void)remove_tree(staging);
        (void)remove_tree(partial);
        return error;
    };
    if (auto made = make_dir(staging, root_stat.st_mode & 07777); !made) {
        return fail(made.error());
    }
    manifest.archive = kPushed;
    // Checksums of files unchanged since the previous backup are taken from its manifest:
    // reading every file of a large, mostly old data dir at each backup would cost as much as
    // copying it, where the push command's own quick check (rsync's) skips those files.
    std::optional<Previous> previous;
    if (auto last = this->previous(manifest.chain_id)) {
        previous.emplace();
        for (auto& file : last->files) {
            std::string path = file.path;
            previous->files.emplace(std::move(path), std::move(file));
        }
    }
    std::vector<char> buffer(kBuffer);
    std::vector<std::pair<fs::path, std::int64_t>> dir_times;
    auto visit = [&](const std::string& path, const fs::path& absolute,
                     const struct stat& st) -> core::Result<void> {
        BackupFile file{.path = path, .mtime_ns = mtime_ns(st), .mode = st.st_mode & 07777};
        const fs::path to = staging / path;
        auto made = make_dir_or_link(path, absolute, to, st, file, dir_times);
        if (!made) {
            return made.error();
        }
        if (!*made && !S_ISREG(st.st_mode)) {
            return {};  // sockets, FIFOs, devices: nothing to copy
        }
        if (!*made) {
            auto staged = stage_file(absolute, to, st, *hash, buffer);
            if (!staged) {
                return staged.error();
            }
            Digest digest;
            if (*staged) {
                digest = std::move(**staged);
            } else if (const BackupFile* same =
                           unchanged(previous ? &*previous : nullptr, path, st);
                       same != nullptr) {
                digest = Digest{same->size, same->sha256};
            } else {
                auto read = hash_file(absolute, *hash, buffer);
                if (!read) {
                    return read.error();
                }
                digest = std::move(*read);
            }
            file.size = digest.size;
            file.sha256 = std::move(digest.sha256);
            manifest.size += file.size;
            ++manifest.file_count;
        }
        manifest.files.push_back(std::move(file));
        return {};
    };
    if (auto walked = walk(data, {}, exclude_, skip, cancelled, visit); !walked) {
        return fail(walked.error());
    }
    for (auto it = dir_times.rbegin(); it != dir_times.rend(); ++it) {
        (void)set_dir_time(it->first, it->second);
    }
    // The remote copy describes itself, as a stream's last entry does.
    if (auto written = write_manifest(staging / archive::kManifestEntry, manifest); !written) {
        return fail(written.error());
    }
    if (auto written = write_manifest(partial / kManifest, manifest); !written) {
        return fail(written.error());
    }
    auto argv =
        archive::render_argv(format_.push, {{"name", manifest.name},
                                            {"source", staging.string()},
                                            {"chain_id", chain_id_part(manifest.chain_id)}});
    if (auto pushed = archive::Command::run(std::move(argv), format_.idle, cancelled); !pushed) {
        if (cancelled.load(std::memory_order_relaxed)) {
            return fail(cancelled_error());
        }
        return fail(storage(fmt::format("the push of backup {} failed: {}", manifest.name,
                                        pushed.error().message)));
    }
    // The backup is made once the command exited 0, as an upload is. A staging tree that will
    // not go is removed by the next push or start (remove_push_staging), not worth failing for.
    (void)remove_tree(staging);
    return settle(root, partial, std::move(manifest), core::Result<void>{});
}

core::Result<std::vector<BackupEntry>> BackupStore::list(std::string_view chain_id) const {
    std::vector<BackupEntry> entries;
    auto scan = [&](const fs::path& where, bool usable) -> core::Result<void> {
        std::error_code ec;
        if (!fs::exists(where, ec)) {
            return {};
        }
        for (fs::directory_iterator it{where, ec}, end; !ec && it != end; it.increment(ec)) {
            const std::string name = it->path().filename().string();
            if (!is_backup_dir(name) || !it->is_directory()) {
                continue;
            }
            BackupEntry entry;
            entry.usable = usable;
            auto manifest = read_manifest(it->path() / kManifest, false);
            if (manifest) {
                entry.manifest = std::move(*manifest);
            } else {
                entry.manifest.name = name;
                entry.usable = false;
                entry.reason = manifest.error().message;
            }
            if (!usable) {
                std::ifstream reason{it->path() / kReason};
                std::string line;
                std::getline(reason, line);
                entry.reason = line.empty() ? "quarantined" : line;
            }
            if (!chain_id.empty() && entry.manifest.chain_id != chain_id) {
                continue;
            }
            entries.push_back(std::move(entry));
        }
        if (ec) {
            return storage(fmt::format("cannot list {}: {}", where.string(), ec.message()));
        }
        return {};
    };
    if (auto scanned = scan(fs::path{dir_}, true); !scanned) {
        return scanned.error();
    }
    if (auto scanned = scan(fs::path{dir_} / kQuarantine, false); !scanned) {
        return scanned.error();
    }
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
        return a.manifest.created_at != b.manifest.created_at
                   ? a.manifest.created_at > b.manifest.created_at
                   : a.manifest.name > b.manifest.name;
    });
    return entries;
}

core::Result<std::optional<Manifest>> BackupStore::latest(std::string_view chain_id,
                                                          std::string_view tag) const {
    auto entries = list(chain_id);
    if (!entries) {
        return entries.error();
    }
    for (auto& entry : *entries) {
        if (entry.usable && (tag.empty() || entry.manifest.tag == tag)) {
            return std::optional<Manifest>{std::move(entry.manifest)};
        }
    }
    return std::optional<Manifest>{};
}

core::Result<Manifest> BackupStore::read(std::string_view name) const {
    if (name.empty() || name.find('/') != std::string_view::npos || !is_backup_dir(name)) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("\"{}\" is not a backup name", name)};
    }
    const fs::path root{dir_};
    std::error_code ec;
    if (!fs::exists(root / name / kManifest, ec)) {
        if (fs::exists(root / kQuarantine / name, ec)) {
            std::ifstream reason{root / kQuarantine / name / kReason};
            std::string line;
            std::getline(reason, line);
            return core::Error{core::ErrorCode::kNotFound,
                               fmt::format("backup {} is quarantined: {}", name, line)};
        }
        return core::Error{core::ErrorCode::kNotFound, fmt::format("no backup named {}", name)};
    }
    return read_manifest(root / name / kManifest, true);
}

core::Result<void> BackupStore::quarantine(std::string_view name, std::string_view reason) {
    const fs::path root{dir_};
    const fs::path to = root / kQuarantine / name;
    std::error_code ec;
    fs::create_directories(root / kQuarantine, ec);
    fs::rename(root / name, to, ec);
    if (ec) {
        return storage(fmt::format("cannot quarantine backup {}: {}", name, ec.message()));
    }
    std::ofstream out{to / kReason};
    out << reason << "\n";
    if (!out) {
        return storage(fmt::format("cannot write {}", (to / kReason).string()));
    }
    return {};
}

core::Result<std::vector<std::string>> BackupStore::prune(std::string_view chain_id, int keep) {
    auto entries = list(chain_id);
    // Exactly this chain's: an unknown (empty) chain id never prunes the others'.
    if (entries && chain_id.empty()) {
        std::erase_if(*entries, [](const auto& e) { return !e.manifest.chain_id.empty(); });
    }
    if (!entries) {
        return entries.error();
    }
    std::vector<std::string> removed;
    int kept = 0;
    for (const auto& entry : *entries) {
        if (!entry.usable) {
            continue;
        }
        if (kept < std::max(keep, 1)) {
            ++kept;
            continue;
        }
        if (auto gone = remove_tree(fs::path{dir_} / entry.manifest.name); !gone) {
            return gone.error();
        }
        removed.push_back(entry.manifest.name);
    }
    return removed;
}

// --- restore --------------------------------------------------------------------------------

namespace {

/// Moves each entry of `from` (but ours, and `skip`) into `to`. Entries already gone were
/// moved by an earlier, interrupted run.
core::Result<void> move_entries(const fs::path& from, const fs::path& to, bool skip_own) {
    std::error_code ec;
    std::vector<fs::path> entries;
    for (fs::directory_iterator it{from, ec}, end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if ((skip_own && own_entry(name)) || name == kMoved) {
            continue;
        }
        entries.push_back(it->path());
    }
    if (ec) {
        return storage(fmt::format("cannot list {}: {}", from.string(), ec.message()));
    }
    for (const auto& entry : entries) {
        const fs::path target = to / entry.filename();
        if (fs::exists(fs::symlink_status(target, ec))) {
            if (auto gone = remove_tree(target); !gone) {
                return gone;
            }
        }
        fs::rename(entry, target, ec);
        if (ec) {
            return storage(fmt::format("cannot move {} to {}: {}", entry.string(), target.string(),
                                       ec.message()));
        }
    }
    return {};
}

/// Puts back the files the exclude globs keep (signer state, keys) from `old` into `data`.
core::Result<void> keep_excluded(const fs::path& old,
                                 const fs::path& data,
                                 const std::vector<std::string>& exclude,
                                 std::string_view keep_path) {
    std::vector<std::string> kept;
    std::error_code ec;
    for (fs::recursive_directory_iterator it{old, ec}, end; !ec && it != end; it.increment(ec)) {
        const std::string path = fs::relative(it->path(), old, ec).generic_string();
        if (path == kMoved) {
            continue;
        }
        if (path == keep_path || excluded(path, exclude)) {
            kept.push_back(path);
            it.disable_recursion_pending();
        }
    }
    if (ec) {
        return storage(fmt::format("cannot list {}: {}", old.string(), ec.message()));
    }
    for (const auto& path : kept) {
        const fs::path to = data / path;
        fs::create_directories(to.parent_path(), ec);
        if (fs::exists(fs::symlink_status(to, ec))) {
            if (auto gone = remove_tree(to); !gone) {
                return gone;
            }
        }
        fs::rename(old / path, to, ec);
        if (ec) {
            return storage(fmt::format("cannot keep {} in the data dir: {}", path, ec.message()));
        }
    }
    return {};
}

/// The swap, each step safe to run again after a crash: the data dir's entries move to old/
/// (old/.aviary-moved says they all have), the restored ones move up, the kept files move back.
core::Result<void> swap_in(const fs::path& data,
                           const std::vector<std::string>& exclude,
                           std::string_view keep_path) {
    const fs::path ready = data / kReady;
    const fs::path old = data / kOld;
    if (auto made = make_dir(old, 0700); !made) {
        return made;
    }
    if (!fs::exists(old / kMoved)) {
        if (auto moved = move_entries(data, old, true); !moved) {
            return moved;
        }
        if (!std::ofstream{old / kMoved}) {
            return storage(fmt::format("cannot write {}", (old / kMoved).string()));
        }
    }
    if (auto moved = move_entries(ready, data, false); !moved) {
        return moved;
    }
    if (auto kept = keep_excluded(old, data, exclude, keep_path); !kept) {
        return kept;
    }
    if (auto gone = remove_tree(ready); !gone) {
        return gone;
    }
    if (auto gone = remove_tree(old); !gone) {
        return gone;
    }
    return sync_dir(data);
}

/// Why the tree a pull brought is not exactly `manifest`'s, or nothing when it is: every entry
/// present and of its kind, files of their size and sha256, symlinks to their target, and no
/// entry the manifest does not list. An error is a failure to look, not damage.
core::Result<std::optional<std::string>> check_tree(const fs::path& tree,
                                                    const Manifest& manifest,
                                                    const Cancelled& cancelled) {
    std::map<std::string, struct stat, std::less<>> found;
    std::error_code ec;
    for (fs::recursive_directory_iterator it{tree, ec}, end; !ec && it != end; it.increment(ec)) {
        struct stat st {};
        if (::lstat(it->path().c_str(), &st) != 0) {
            return errno_error("cannot read", it->path());
        }
        found.emplace(it->path().lexically_relative(tree).generic_string(), st);
    }
    if (ec) {
        return storage(fmt::format("cannot list {}: {}", tree.string(), ec.message()));
    }
    std::set<std::string_view, std::less<>> listed;
    for (const auto& file : manifest.files) {
        listed.insert(file.path);
    }
    for (const auto& [path, st] : found) {
        if (!listed.contains(path)) {
            return std::optional<std::string>{
                fmt::format("{} is in the pulled copy but not in the manifest", path)};
        }
    }
    auto hash = net::Sha256::make();
    if (!hash) {
        return hash.error();
    }
    std::vector<char> buffer(kBuffer);
    for (const auto& file : manifest.files) {
        if (cancelled.load(std::memory_order_relaxed)) {
            return cancelled_error();
        }
        auto it = found.find(file.path);
        if (it == found.end()) {
            return std::optional<std::string>{
                fmt::format("{} is missing from the backup", file.path)};
        }
        const mode_t type = it->second.st_mode & S_IFMT;
        switch (file.kind) {
            case BackupFile::Kind::kDirectory:
                if (type != S_IFDIR) {
                    return std::optional<std::string>{
                        fmt::format("{} should be a directory", file.path)};
                }
                break;
            case BackupFile::Kind::kSymlink: {
                std::error_code read_ec;
                const auto target =
                    type == S_IFLNK ? fs::read_symlink(tree / file.path, read_ec) : fs::path{};
                if (type != S_IFLNK || read_ec || target.string() != file.target) {
                    return std::optional<std::string>{
                        fmt::format("{} should be a symlink to {}", file.path, file.target)};
                }
                break;
            }
            case BackupFile::Kind::kFile: {
                if (type != S_IFREG) {
                    return std::optional<std::string>{
                        fmt::format("{} should be a file", file.path)};
                }
                auto digest = hash_file(tree / file.path, *hash, buffer);
                if (!digest) {
                    return digest.error();
                }
                if (digest->size != file.size || digest->sha256 != file.sha256) {
                    return std::optional<std::string>{fmt::format(
                        "{} does not match the manifest: {} bytes, sha256 {} (the manifest says "
                        "{} bytes, sha256 {})",
                        file.path, digest->size, digest->sha256, file.size, file.sha256)};
                }
                break;
            }
        }
    }
    return std::optional<std::string>{};
}

/// Gives a pulled tree the manifest's modes and mtimes: rsync -a keeps them, cp or rclone may
/// not. Directories get their times last, as in a copy.
core::Result<void> set_attributes(const fs::path& tree, const Manifest& manifest) {
    std::vector<std::pair<fs::path, std::int64_t>> dir_times;
    for (const auto& file : manifest.files) {
        const fs::path path = tree / file.path;
        if (file.kind == BackupFile::Kind::kSymlink) {
            continue;
        }
        if (file.kind == BackupFile::Kind::kDirectory) {
            // As make_dir() does: the owner may always write into it.
            if (::chmod(path.c_str(), file.mode | S_IRWXU) != 0) {
                return errno_error("cannot set the mode of", path);
            }
            dir_times.emplace_back(path, file.mtime_ns);
            continue;
        }
        const timespec times[2] = {to_timespec(file.mtime_ns), to_timespec(file.mtime_ns)};
        if (::chmod(path.c_str(), file.mode) != 0 ||
            ::utimensat(AT_FDCWD, path.c_str(), times, 0) != 0) {
            return errno_error("cannot set the mode and time of", path);
        }
    }
    for (auto it = dir_times.rbegin(); it != dir_times.rend(); ++it) {
        (void)set_dir_time(it->first, it->second);
    }
    return {};
}

}  // namespace

core::Result<void> BackupStore::pull(const Manifest& manifest,
                                     const std::string& staging,
                                     const Cancelled& cancelled) {
    if (format_.pull.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("backup {} was pushed, and backup.pull is not set: there "
                                       "is no way to copy it back",
                                       manifest.name)};
    }
    const fs::path tree{staging};
    auto argv =
        archive::render_argv(format_.pull, {{"name", manifest.name},
                                            {"destination", staging},
                                            {"chain_id", chain_id_part(manifest.chain_id)}});
    if (auto pulled = archive::Command::run(std::move(argv), format_.idle, cancelled); !pulled) {
        if (cancelled.load(std::memory_order_relaxed)) {
            return cancelled_error();
        }
        // Not the backup's fault: the target may only be away. Nothing is quarantined.
        return storage(
            fmt::format("the pull of backup {} failed: {}", manifest.name, pulled.error().message));
    }
    auto damaged = [&](const std::string& why) -> core::Result<void> {
        (void)quarantine(manifest.name, why);
        return storage(
            fmt::format("backup {} is damaged (quarantined, the data dir is unchanged): {}",
                        manifest.name, why));
    };
    // The copy's own manifest, when it came along, must be this backup's; it is not data.
    const fs::path own = tree / archive::kManifestEntry;
    std::error_code ec;
    if (fs::exists(fs::symlink_status(own, ec))) {
        auto described = read_manifest(own, false);
        if (!described || described->name != manifest.name) {
            return damaged(
                fmt::format("its own manifest, {}, names another backup", archive::kManifestEntry));
        }
        if (fs::remove(own, ec); ec) {
            return storage(fmt::format("cannot remove {}: {}", own.string(), ec.message()));
        }
    }
    auto checked = check_tree(tree, manifest, cancelled);
    if (!checked) {
        return checked.error();
    }
    if (*checked) {
        return damaged(**checked);
    }
    return set_attributes(tree, manifest);
}

core::Result<Manifest> BackupStore::restore(std::string_view name,
                                            const std::string& data_dir,
                                            const Cancelled& cancelled) {
    auto manifest = read(name);
    if (!manifest) {
        return manifest.error();
    }
    auto hash = net::Sha256::make();
    if (!hash) {
        return hash.error();
    }
    const fs::path data{data_dir};
    std::error_code ec;
    fs::create_directories(data, ec);
    if (ec) {
        return storage(fmt::format("cannot make the data dir {}: {}", data_dir, ec.message()));
    }
    if (auto leftover = finish_restore(data_dir, exclude_, inside_data(data_dir)); !leftover) {
        return leftover.error();
    }
    const fs::path staging = data / kRestoring;
    const fs::path source = fs::path{dir_} / manifest->name / kData;
    if (auto made = make_dir(staging, 0755); !made) {
        return made.error();
    }
    auto fail = [&](core::Error error) -> core::Result<Manifest> {
        (void)remove_tree(staging);
        return error;
    };
    if (manifest->archive == kPushed) {
        if (auto pulled = pull(*manifest, staging.string(), cancelled); !pulled) {
            return fail(pulled.error());
        }
    } else if (!manifest->archive.empty()) {
        const std::string from = manifest->archive == kArchiveFile
                                     ? (fs::path{dir_} / manifest->name / kArchiveFile).string()
                                     : std::string{};
        if (auto extracted = extract(*manifest, from, staging.string(), cancelled); !extracted) {
            return fail(extracted.error());
        }
    } else {
        std::vector<char> buffer(kBuffer);
        std::vector<std::pair<fs::path, std::int64_t>> dir_times;
        for (const auto& file : manifest->files) {
            if (cancelled.load(std::memory_order_relaxed)) {
                return fail(cancelled_error());
            }
            const fs::path to = staging / file.path;
            switch (file.kind) {
                case BackupFile::Kind::kDirectory:
                    if (auto made = make_dir(to, file.mode); !made) {
                        return fail(made.error());
                    }
                    dir_times.emplace_back(to, file.mtime_ns);
                    break;
                case BackupFile::Kind::kSymlink:
                    if (::symlink(file.target.c_str(), to.c_str()) != 0) {
                        return fail(errno_error("cannot make the symlink", to));
                    }
                    break;
                case BackupFile::Kind::kFile: {
                    std::error_code missing;
                    if (!fs::exists(source / file.path, missing)) {
                        auto why = fmt::format("{} is missing from the backup", file.path);
                        (void)quarantine(manifest->name, why);
                        return fail(storage(fmt::format(
                            "backup {} is damaged (quarantined, the data dir is unchanged): {}",
                            manifest->name, why)));
                    }
                    auto digest =
                        copy_file(source / file.path, to, file.mode, file.mtime_ns, *hash, buffer);
                    if (!digest) {
                        return fail(digest.error());
                    }
                    if (digest->size != file.size || digest->sha256 != file.sha256) {
                        auto why = fmt::format(
                            "{} does not match the manifest: {} bytes, sha256 {} (the manifest "
                            "says "
                            "{} bytes, sha256 {})",
                            file.path, digest->size, digest->sha256, file.size, file.sha256);
                        (void)quarantine(manifest->name, why);
                        return fail(storage(fmt::format(
                            "backup {} is damaged (quarantined, the data dir is unchanged): {}",
                            manifest->name, why)));
                    }
                    break;
                }
            }
        }
        for (auto it = dir_times.rbegin(); it != dir_times.rend(); ++it) {
            (void)set_dir_time(it->first, it->second);
        }
    }
    if (auto flushed = flush(staging); !flushed) {
        return fail(flushed.error());
    }
    fs::rename(staging, data / kReady, ec);
    if (ec) {
        return fail(
            storage(fmt::format("cannot finish the restore into {}: {}", data_dir, ec.message())));
    }
    if (auto swapped = swap_in(data, exclude_, inside_data(data_dir)); !swapped) {
        return swapped.error();
    }
    return manifest;
}

// --- archived backups (archive.hpp) ---------------------------------------------------------

core::Result<Manifest> BackupStore::create_archive(const std::string& data_dir,
                                                   Manifest manifest,
                                                   const Cancelled& cancelled) {
    auto hash = net::Sha256::make();
    if (!hash) {
        return hash.error();
    }
    const fs::path root{dir_};
    const fs::path partial = root / (std::string{kPartial} + manifest.name);
    if (auto made = make_dir(partial, 0755); !made) {
        return made.error();
    }
    std::unique_ptr<archive::Command> command;
    auto fail = [&](core::Error error) -> core::Result<Manifest> {
        if (command) {
            command->abort();
        }
        (void)remove_tree(partial);
        return error;
    };
    struct stat root_stat {};
    if (::stat(data_dir.c_str(), &root_stat) != 0 || !S_ISDIR(root_stat.st_mode)) {
        return fail(core::Error{core::ErrorCode::kNotFound,
                                fmt::format("the data dir {} is not a directory", data_dir)});
    }
    const std::string skip = inside_data(data_dir);
    if (skip == ".") {
        return fail(core::Error{core::ErrorCode::kInvalidArgument,
                                fmt::format("the backup dir {} is the data dir", dir_)});
    }
    const bool local = format_.upload.empty();
    manifest.archive = local ? kArchiveFile : kUploaded;
    const fs::path file_path = partial / kArchiveFile;
    Fd file{-1};
    archive::Sink sink;
    if (local) {
        file.reset(::open(file_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
        if (file.get() < 0) {
            return fail(errno_error("cannot create", file_path));
        }
        sink = [&file, &file_path](const char* data, std::size_t size) -> core::Result<void> {
            for (std::size_t done = 0; done < size;) {
                ssize_t put = ::write(file.get(), data + done, size - done);
                if (put < 0) {
                    if (errno == EINTR) {
                        continue;
                    }
                    return errno_error("cannot write", file_path);
                }
                done += static_cast<std::size_t>(put);
            }
            return {};
        };
    } else {
        auto started = archive::Command::start(archive::render_argv(format_.upload, manifest.name),
                                               archive::Command::Direction::kToStdin, format_.idle);
        if (!started) {
            return fail(started.error());
        }
        command = std::move(*started);
        sink = command->sink();
    }
    auto writer = archive::Writer::make(std::move(sink), format_.level, format_.threads);
    if (!writer) {
        return fail(writer.error());
    }
    std::vector<char> buffer(kBuffer);
    auto visit = [&](const std::string& path, const fs::path& absolute,
                     const struct stat& st) -> core::Result<void> {
        BackupFile file{.path = path, .mtime_ns = mtime_ns(st), .mode = st.st_mode & 07777};
        archive::Entry entry{.path = path, .mode = file.mode, .mtime_ns = file.mtime_ns};
        if (S_ISDIR(st.st_mode)) {
            file.kind = BackupFile::Kind::kDirectory;
            entry.kind = archive::Entry::Kind::kDirectory;
            if (auto added = (*writer)->add(entry); !added) {
                return added;
            }
        } else if (S_ISLNK(st.st_mode)) {
            file.kind = BackupFile::Kind::kSymlink;
            std::error_code ec;
            file.target = fs::read_symlink(absolute, ec).string();
            if (ec) {
                return storage(fmt::format("cannot read the symlink {}: {}", path, ec.message()));
            }
            entry.kind = archive::Entry::Kind::kSymlink;
            entry.target = file.target;
            if (auto added = (*writer)->add(entry); !added) {
                return added;
            }
        } else if (S_ISREG(st.st_mode)) {
            Fd in{::open(absolute.c_str(), O_RDONLY | O_CLOEXEC)};
            struct stat now {};
            if (in.get() < 0 || ::fstat(in.get(), &now) != 0) {
                return errno_error("cannot open", absolute);
            }
            entry.size = static_cast<std::uint64_t>(now.st_size);
            if (auto added = (*writer)->add(entry); !added) {
                return added;
            }
            std::uint64_t total = 0;
            while (total < entry.size) {
                ssize_t got = ::read(in.get(), buffer.data(),
                                     static_cast<std::size_t>(std::min<std::uint64_t>(
                                         buffer.size(), entry.size - total)));
                if (got < 0 && errno == EINTR) {
                    continue;
                }
                if (got < 0) {
                    return errno_error("cannot read", absolute);
                }
                if (got == 0) {
                    return storage(fmt::format("{} shrank while it was archived", path));
                }
                hash->update(buffer.data(), static_cast<std::size_t>(got));
                if (auto put = (*writer)->write(buffer.data(), static_cast<std::size_t>(got));
                    !put) {
                    return put;
                }
                total += static_cast<std::uint64_t>(got);
            }
            file.size = total;
            file.sha256 = hash->hex();
            manifest.size += file.size;
            ++manifest.file_count;
        } else {
            return {};  // sockets, FIFOs, devices: nothing to copy
        }
        manifest.files.push_back(std::move(file));
        return {};
    };
    if (auto walked = walk(fs::path{data_dir}, {}, exclude_, skip, cancelled, visit); !walked) {
        return fail(walked.error());
    }
    // The manifest goes last, so a stream cut short has none.
    const std::string text = json::serialize(to_json(manifest)) + "\n";
    archive::Entry last{.path = std::string{archive::kManifestEntry},
                        .size = text.size(),
                        .mode = 0644,
                        .mtime_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        manifest.created_at.time_since_epoch())
                                        .count()};
    if (auto added = (*writer)->add(last); !added) {
        return fail(added.error());
    }
    if (auto put = (*writer)->write(text.data(), text.size()); !put) {
        return fail(put.error());
    }
    if (auto finished = (*writer)->finish(); !finished) {
        return fail(finished.error());
    }
    manifest.archive_size = (*writer)->written();
    if (command) {
        if (auto finished = command->finish(); !finished) {
            return fail(storage(fmt::format("the upload of backup {} failed: {}", manifest.name,
                                            finished.error().message)));
        }
    } else if (file.close() != 0) {
        return fail(errno_error("cannot write", file_path));
    }
    if (auto written = write_manifest(partial / kManifest, manifest); !written) {
        return fail(written.error());
    }
    // What landed locally is read back and checked against the manifest before it is
    // published; an upload counts once its command exited 0.
    auto checked =
        local ? extract(manifest, file_path.string(), {}, cancelled) : core::Result<void>{};
    return settle(root, partial, std::move(manifest), checked);
}

core::Result<void> BackupStore::extract(const Manifest& manifest,
                                        const std::string& archive_path,
                                        const std::string& staging,
                                        const Cancelled& cancelled) {
    auto hash = net::Sha256::make();
    if (!hash) {
        return hash.error();
    }
    std::map<std::string_view, const BackupFile*, std::less<>> expected;
    for (const auto& file : manifest.files) {
        expected.emplace(file.path, &file);
    }
    // The source: the file beside the manifest, or the download command's stdout.
    std::unique_ptr<archive::Command> command;
    Fd file{-1};
    bool source_failed = false;
    archive::Source source;
    if (!archive_path.empty()) {
        file.reset(::open(archive_path.c_str(), O_RDONLY | O_CLOEXEC));
        if (file.get() < 0) {
            const auto why = fmt::format("{} is missing: {}", kArchiveFile, std::strerror(errno));
            if (!staging.empty()) {
                (void)quarantine(manifest.name, why);
            }
            return storage(
                fmt::format("backup {} is damaged (quarantined): {}", manifest.name, why));
        }
        source = [&](char* data, std::size_t size) -> core::Result<std::size_t> {
            while (true) {
                ssize_t got = ::read(file.get(), data, size);
                if (got < 0 && errno == EINTR) {
                    continue;
                }
                if (got < 0) {
                    source_failed = true;
                    return errno_error("cannot read", archive_path);
                }
                return static_cast<std::size_t>(got);
            }
        };
    } else {
        if (format_.download.empty()) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("backup {} was uploaded, and backup.download is not "
                                           "set: there is no way to read it back",
                                           manifest.name)};
        }
        auto started =
            archive::Command::start(archive::render_argv(format_.download, manifest.name),
                                    archive::Command::Direction::kFromStdout, format_.idle);
        if (!started) {
            return started.error();
        }
        command = std::move(*started);
        source = [&, inner = command->source()](char* data,
                                                std::size_t size) -> core::Result<std::size_t> {
            auto got = inner(data, size);
            source_failed = source_failed || !got;
            return got;
        };
    }
    auto reader = archive::Reader::make(std::move(source));
    if (!reader) {
        return reader.error();
    }
    const bool write = !staging.empty();
    const fs::path into{staging};
    std::vector<char> buffer(kBuffer);
    std::vector<std::pair<fs::path, std::int64_t>> dir_times;
    std::set<std::string, std::less<>> seen;
    bool manifest_seen = false;
    // A mismatch of content: the backup is quarantined (when restoring) and the error says so.
    auto damaged = [&](std::string why) -> core::Result<void> {
        if (command) {
            // A download that failed explains a stream that ends early: it is not the backup's
            // fault. The rest is read (and dropped) so a healthy command ends on its own.
            auto rest = command->source();
            while (true) {
                auto got = rest(buffer.data(), buffer.size());
                if (!got || *got == 0) {
                    break;
                }
            }
            if (auto finished = command->finish(); !finished) {
                return storage(fmt::format("the download of backup {} failed: {}", manifest.name,
                                           finished.error().message));
            }
        }
        if (write) {
            (void)quarantine(manifest.name, why);
            return storage(
                fmt::format("backup {} is damaged (quarantined, the data dir is unchanged): {}",
                            manifest.name, why));
        }
        return storage(why);
    };
    archive::Entry entry;
    while (true) {
        if (cancelled.load(std::memory_order_relaxed)) {
            return cancelled_error();
        }
        auto more = (*reader)->next(entry);
        if (!more) {
            if (source_failed) {
                return more.error();
            }
            return damaged(more.error().message);
        }
        if (!*more) {
            break;
        }
        if (entry.path == archive::kManifestEntry) {
            if (entry.size > kMaxManifestEntry) {
                return damaged("its manifest entry is too large");
            }
            std::string text(static_cast<std::size_t>(entry.size), '\0');
            for (std::size_t done = 0; done < text.size();) {
                auto got = (*reader)->read(text.data() + done, text.size() - done);
                if (!got || *got == 0) {
                    return got ? damaged("its manifest entry is cut short")
                               : damaged(got.error().message);
                }
                done += *got;
            }
            boost::system::error_code ec;
            auto value = json::parse(text, ec);
            const auto* name =
                ec || !value.is_object() ? nullptr : value.as_object().if_contains("name");
            if (name == nullptr || !name->is_string() || name->as_string() != manifest.name) {
                return damaged("its own manifest names another backup");
            }
            manifest_seen = true;
            continue;
        }
        auto it = expected.find(entry.path);
        if (it == expected.end()) {
            return damaged(fmt::format("{} is in the archive but not in the manifest", entry.path));
        }
        const BackupFile& want = *it->second;
        const fs::path to = into / entry.path;
        seen.insert(entry.path);
        switch (want.kind) {
            case BackupFile::Kind::kDirectory:
                if (entry.kind != archive::Entry::Kind::kDirectory) {
                    return damaged(fmt::format("{} should be a directory", entry.path));
                }
                if (write) {
                    if (auto made = make_dir(to, want.mode); !made) {
                        return made;
                    }
                    dir_times.emplace_back(to, want.mtime_ns);
                }
                break;
            case BackupFile::Kind::kSymlink:
                if (entry.kind != archive::Entry::Kind::kSymlink || entry.target != want.target) {
                    return damaged(
                        fmt::format("{} should be a symlink to {}", entry.path, want.target));
                }
                if (write && ::symlink(want.target.c_str(), to.c_str()) != 0) {
                    return errno_error("cannot make the symlink", to);
                }
                break;
            case BackupFile::Kind::kFile: {
                if (entry.kind != archive::Entry::Kind::kFile) {
                    return damaged(fmt::format("{} should be a file", entry.path));
                }
                Fd out{-1};
                if (write) {
                    out.reset(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
                    if (out.get() < 0) {
                        return errno_error("cannot create", to);
                    }
                }
                std::uint64_t total = 0;
                while (true) {
                    auto got = (*reader)->read(buffer.data(), buffer.size());
                    if (!got) {
                        return source_failed ? core::Result<void>{got.error()}
                                             : damaged(got.error().message);
                    }
                    if (*got == 0) {
                        break;
                    }
                    hash->update(buffer.data(), *got);
                    total += *got;
                    for (std::size_t done = 0; write && done < *got;) {
                        ssize_t put = ::write(out.get(), buffer.data() + done, *got - done);
                        if (put < 0 && errno == EINTR) {
                            continue;
                        }
                        if (put < 0) {
                            return errno_error("cannot write", to);
                        }
                        done += static_cast<std::size_t>(put);
                    }
                }
                const std::string digest = hash->hex();
                if (total != want.size || digest != want.sha256) {
                    return damaged(fmt::format(
                        "{} does not match the manifest: {} bytes, sha256 {} (the manifest says "
                        "{} bytes, sha256 {})",
                        entry.path, total, digest, want.size, want.sha256));
                }
                if (write) {
                    const timespec times[2] = {to_timespec(want.mtime_ns),
                                               to_timespec(want.mtime_ns)};
                    if (::fchmod(out.get(), want.mode) != 0 || ::futimens(out.get(), times) != 0 ||
                        out.close() != 0) {
                        return errno_error("cannot finish", to);
                    }
                }
                break;
            }
        }
    }
    if (!manifest_seen) {
        return damaged("the archive has no manifest entry: it was cut short");
    }
    for (const auto& file : manifest.files) {
        if (seen.count(file.path) == 0) {
            return damaged(fmt::format("{} is missing from the backup", file.path));
        }
    }
    if (command) {
        if (auto finished = command->finish(); !finished) {
            return storage(fmt::format("the download of backup {} failed: {}", manifest.name,
                                       finished.error().message));
        }
    }
    for (auto it = dir_times.rbegin(); it != dir_times.rend(); ++it) {
        (void)set_dir_time(it->first, it->second);
    }
    return {};
}

core::Result<bool> finish_restore(const std::string& data_dir,
                                  const std::vector<std::string>& exclude,
                                  std::string_view keep_path) {
    const fs::path data{data_dir};
    std::error_code ec;
    bool found = false;
    if (fs::exists(data / kRestoring, ec)) {
        found = true;
        if (auto gone = remove_tree(data / kRestoring); !gone) {
            return gone.error();
        }
    }
    if (fs::exists(data / kReady, ec)) {
        found = true;
        if (auto swapped = swap_in(data, exclude, keep_path); !swapped) {
            return swapped.error();
        }
    } else if (fs::exists(data / kOld, ec)) {
        // The restored entries are all up and the kept files back: only the removal was left.
        found = true;
        if (auto kept = keep_excluded(data / kOld, data, exclude, keep_path); !kept) {
            return kept.error();
        }
        if (auto gone = remove_tree(data / kOld); !gone) {
            return gone.error();
        }
    }
    // Last, and never in the way of the above: a staging tree that will not go now fails the
    // next push backup, which says why.
    (void)remove_push_staging(data);
    return found;
}

}  // namespace aviary::supervisor
