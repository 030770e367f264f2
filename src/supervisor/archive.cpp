// A backup as one tar.zst stream, and the commands that carry it (archive.hpp).
#include "supervisor/archive.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

extern char** environ;

namespace aviary::supervisor::archive {
namespace {

constexpr std::size_t kBlock = 512;
constexpr std::string_view kLongName = "././@LongLink";
/// The most a long name or link target may be (Linux's PATH_MAX).
constexpr std::uint64_t kMaxLongName = 4096;
/// The largest size ustar's 11 octal digits hold; larger ones are written in base 256.
constexpr std::uint64_t kMaxOctalSize = 077777777777ULL;
constexpr std::size_t kMaxStderr = 4096;
/// How often a command run to its end (Command::run) has its processes' I/O counters read.
constexpr core::Millis kIoLook{1000};

core::Error storage(std::string message) {
    return core::Error{core::ErrorCode::kStorage, std::move(message)};
}

core::Error damaged(std::string_view what) {
    return storage(fmt::format("the archive is damaged: {}", what));
}

// --- tar headers -----------------------------------------------------------------------------

using Block = std::array<char, kBlock>;

void put_octal(char* field, std::size_t width, std::uint64_t value) {
    // width-1 digits, zero-padded, then NUL.
    auto text = fmt::format("{:0{}o}", value, width - 1);
    std::memcpy(field, text.data(), std::min(text.size(), width - 1));
    field[width - 1] = '\0';
}

void put_size(char* field, std::uint64_t size) {
    if (size <= kMaxOctalSize) {
        put_octal(field, 12, size);
        return;
    }
    // GNU base-256: the first byte's high bit set, the value big-endian in the rest.
    std::memset(field, 0, 12);
    field[0] = static_cast<char>(0x80);
    for (int i = 11; i >= 4; --i) {
        field[i] = static_cast<char>(size & 0xff);
        size >>= 8;
    }
}

Block header(std::string_view name,
             char type,
             std::uint64_t size,
             mode_t mode,
             std::int64_t mtime_s,
             std::string_view link) {
    Block b{};
    // copy_n, not memcpy: an empty view's data() may be null.
    std::copy_n(name.data(), std::min<std::size_t>(name.size(), 100), b.data());
    put_octal(b.data() + 100, 8, mode & 07777);
    put_octal(b.data() + 108, 8, 0);
    put_octal(b.data() + 116, 8, 0);
    put_size(b.data() + 124, size);
    put_octal(b.data() + 136, 12, static_cast<std::uint64_t>(std::max<std::int64_t>(mtime_s, 0)));
    b[156] = type;
    std::copy_n(link.data(), std::min<std::size_t>(link.size(), 100), b.data() + 157);
    std::memcpy(b.data() + 257, "ustar", 6);
    std::memcpy(b.data() + 263, "00", 2);
    std::memset(b.data() + 148, ' ', 8);
    unsigned sum = 0;
    for (char c : b) {
        sum += static_cast<unsigned char>(c);
    }
    auto check = fmt::format("{:06o}", sum);
    std::memcpy(b.data() + 148, check.data(), 6);
    b[154] = '\0';
    b[155] = ' ';
    return b;
}

std::uint64_t read_number(const char* field, std::size_t width, bool& ok) {
    if ((static_cast<unsigned char>(field[0]) & 0x80) != 0) {
        std::uint64_t value = 0;
        for (std::size_t i = 1; i < width; ++i) {
            if (value >> 56 != 0) {
                ok = false;
                return 0;
            }
            value = (value << 8) | static_cast<unsigned char>(field[i]);
        }
        return value;
    }
    std::uint64_t value = 0;
    std::size_t i = 0;
    while (i < width && (field[i] == ' ' || field[i] == '\0')) {
        ++i;
    }
    for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i) {
        value = value * 8 + static_cast<std::uint64_t>(field[i] - '0');
    }
    for (; i < width; ++i) {
        if (field[i] != ' ' && field[i] != '\0') {
            ok = false;
        }
    }
    return value;
}

std::string field_text(const char* field, std::size_t width) {
    return std::string{field, ::strnlen(field, width)};
}

/// A relative path with no "..", no empty or "." component, no leading '/'.
bool safe_path(std::string_view path) {
    if (path.empty() || path.front() == '/') {
        return false;
    }
    std::size_t at = 0;
    while (at <= path.size()) {
        auto slash = path.find('/', at);
        auto part =
            path.substr(at, slash == std::string_view::npos ? std::string_view::npos : slash - at);
        if (part.empty() || part == "." || part == "..") {
            return false;
        }
        if (slash == std::string_view::npos) {
            break;
        }
        at = slash + 1;
    }
    return true;
}

}  // namespace

// --- Writer ----------------------------------------------------------------------------------

struct Writer::Impl {
    Sink sink;
    ZSTD_CCtx* cctx = nullptr;
    std::vector<char> out = std::vector<char>(ZSTD_CStreamOutSize());
    std::uint64_t written = 0;
    std::uint64_t file_left = 0;  // bytes of the current file still to come
    std::uint64_t file_size = 0;

    ~Impl() { ZSTD_freeCCtx(cctx); }

    core::Result<void> feed(const char* data, std::size_t size, ZSTD_EndDirective mode) {
        ZSTD_inBuffer in{data, size, 0};
        while (true) {
            ZSTD_outBuffer o{out.data(), out.size(), 0};
            const std::size_t left = ZSTD_compressStream2(cctx, &o, &in, mode);
            if (ZSTD_isError(left) != 0) {
                return storage(fmt::format("zstd: {}", ZSTD_getErrorName(left)));
            }
            if (o.pos > 0) {
                if (auto sent = sink(out.data(), o.pos); !sent) {
                    return sent;
                }
                written += o.pos;
            }
            const bool done = mode == ZSTD_e_continue ? in.pos == in.size : left == 0;
            if (done) {
                return {};
            }
        }
    }

    core::Result<void> pad(std::uint64_t size) {
        static const Block zeros{};
        const std::size_t rest = static_cast<std::size_t>(size % kBlock);
        return rest == 0 ? core::Result<void>{}
                         : feed(zeros.data(), kBlock - rest, ZSTD_e_continue);
    }

    core::Result<void> block(const Block& b) { return feed(b.data(), b.size(), ZSTD_e_continue); }

    /// A GNU long name ('L') or long link target ('K') entry ahead of the real header.
    core::Result<void> long_entry(char type, std::string_view text) {
        const std::uint64_t size = text.size() + 1;
        if (auto put = block(header(kLongName, type, size, 0644, 0, {})); !put) {
            return put;
        }
        std::string data{text};
        data.push_back('\0');
        if (auto put = feed(data.data(), data.size(), ZSTD_e_continue); !put) {
            return put;
        }
        return pad(size);
    }
};

Writer::Writer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Writer::~Writer() = default;

core::Result<std::unique_ptr<Writer>> Writer::make(Sink sink, int level, int threads) {
    auto impl = std::make_unique<Impl>();
    impl->sink = std::move(sink);
    impl->cctx = ZSTD_createCCtx();
    if (impl->cctx == nullptr) {
        return storage("zstd: cannot make a compression context");
    }
    ZSTD_CCtx_setParameter(impl->cctx, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(impl->cctx, ZSTD_c_checksumFlag, 1);
    if (threads > 0) {
        // A libzstd built without threads refuses; the stream is then compressed here.
        (void)ZSTD_CCtx_setParameter(impl->cctx, ZSTD_c_nbWorkers, threads);
    }
    return std::unique_ptr<Writer>(new Writer(std::move(impl)));
}

core::Result<void> Writer::add(const Entry& entry) {
    auto& d = *impl_;
    if (d.file_left != 0) {
        return storage(
            fmt::format("archive: {} more bytes of the previous file were expected", d.file_left));
    }
    if (auto padded = d.pad(d.file_size); !padded) {
        return padded;
    }
    d.file_size = 0;
    char type = '0';
    std::string name = entry.path;
    std::uint64_t size = 0;
    switch (entry.kind) {
        case Entry::Kind::kFile:
            size = entry.size;
            break;
        case Entry::Kind::kDirectory:
            type = '5';
            name += '/';
            break;
        case Entry::Kind::kSymlink:
            type = '2';
            break;
    }
    if (name.size() > 100) {
        if (auto put = d.long_entry('L', name); !put) {
            return put;
        }
    }
    if (entry.target.size() > 100) {
        if (auto put = d.long_entry('K', entry.target); !put) {
            return put;
        }
    }
    auto b = header(name, type, size, entry.mode, entry.mtime_ns / 1'000'000'000, entry.target);
    if (auto put = d.block(b); !put) {
        return put;
    }
    d.file_left = size;
    d.file_size = size;
    return {};
}

core::Result<void> Writer::write(const char* data, std::size_t size) {
    auto& d = *impl_;
    if (size > d.file_left) {
        return storage("archive: a file grew while it was archived");
    }
    d.file_left -= size;
    return d.feed(data, size, ZSTD_e_continue);
}

core::Result<void> Writer::finish() {
    auto& d = *impl_;
    if (d.file_left != 0) {
        return storage(
            fmt::format("archive: {} more bytes of the last file were expected", d.file_left));
    }
    if (auto padded = d.pad(d.file_size); !padded) {
        return padded;
    }
    static const std::array<char, 2 * kBlock> end{};
    return d.feed(end.data(), end.size(), ZSTD_e_end);
}

std::uint64_t Writer::written() const {
    return impl_->written;
}

// --- Reader ----------------------------------------------------------------------------------

struct Reader::Impl {
    Source source;
    ZSTD_DCtx* dctx = nullptr;
    std::vector<char> in = std::vector<char>(ZSTD_DStreamInSize());
    ZSTD_inBuffer input{nullptr, 0, 0};
    bool source_done = false;
    bool frame_done = false;
    std::uint64_t file_left = 0;
    std::uint64_t pad_left = 0;
    bool ended = false;

    ~Impl() { ZSTD_freeDCtx(dctx); }

    /// Exactly `size` decompressed bytes (fewer only at the end of the stream: returned).
    core::Result<std::size_t> raw(char* data, std::size_t size) {
        std::size_t got = 0;
        while (got < size) {
            if (input.pos == input.size && !source_done) {
                auto n = source(in.data(), in.size());
                if (!n) {
                    return n.error();
                }
                if (*n == 0) {
                    source_done = true;
                }
                input = ZSTD_inBuffer{in.data(), *n, 0};
            }
            ZSTD_outBuffer out{data + got, size - got, 0};
            const std::size_t consumed_before = input.pos;
            const std::size_t hint = ZSTD_decompressStream(dctx, &out, &input);
            if (ZSTD_isError(hint) != 0) {
                return damaged(fmt::format("zstd: {}", ZSTD_getErrorName(hint)));
            }
            got += out.pos;
            // A call that moved nothing says nothing about the frame (after its end, zstd
            // waits for the next frame's header).
            if (out.pos > 0 || input.pos > consumed_before) {
                frame_done = hint == 0;
            }
            if (out.pos == 0 && input.pos == input.size && source_done) {
                break;  // nothing more will come
            }
        }
        return got;
    }

    core::Result<void> exact(char* data, std::size_t size, std::string_view what) {
        auto got = raw(data, size);
        if (!got) {
            return got.error();
        }
        if (*got != size) {
            return damaged(fmt::format("it ends inside {}", what));
        }
        return {};
    }

    core::Result<void> skip(std::uint64_t size) {
        std::array<char, 64 * 1024> scratch{};
        while (size > 0) {
            const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(size, scratch.size()));
            if (auto read = exact(scratch.data(), n, "an entry"); !read) {
                return read;
            }
            size -= n;
        }
        return {};
    }

    core::Result<std::string> long_text(std::uint64_t size) {
        if (size == 0 || size > kMaxLongName) {
            return damaged(fmt::format("a long name of {} bytes", size));
        }
        std::string text(static_cast<std::size_t>(size), '\0');
        if (auto read = exact(text.data(), text.size(), "a long name"); !read) {
            return read.error();
        }
        if (auto padded = skip((kBlock - size % kBlock) % kBlock); !padded) {
            return padded.error();
        }
        text.resize(::strnlen(text.data(), text.size()));
        return text;
    }
};

Reader::Reader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Reader::~Reader() = default;

core::Result<std::unique_ptr<Reader>> Reader::make(Source source) {
    auto impl = std::make_unique<Impl>();
    impl->source = std::move(source);
    impl->dctx = ZSTD_createDCtx();
    if (impl->dctx == nullptr) {
        return storage("zstd: cannot make a decompression context");
    }
    return std::unique_ptr<Reader>(new Reader(std::move(impl)));
}

core::Result<bool> Reader::next(Entry& entry) {
    auto& d = *impl_;
    if (d.ended) {
        return false;
    }
    if (auto skipped = d.skip(d.file_left + d.pad_left); !skipped) {
        return skipped.error();
    }
    d.file_left = d.pad_left = 0;
    std::string long_name;
    std::string long_link;
    while (true) {
        Block b{};
        if (auto read = d.exact(b.data(), b.size(), "a header"); !read) {
            return read.error();
        }
        if (std::all_of(b.begin(), b.end(), [](char c) { return c == '\0'; })) {
            // The end: a second zero block, then only zeros (a record's padding) to the end of
            // the zstd frame and of the stream.
            Block second{};
            if (auto read = d.exact(second.data(), second.size(), "the end blocks"); !read) {
                return read.error();
            }
            while (true) {
                auto more = d.raw(second.data(), second.size());
                if (!more) {
                    return more.error();
                }
                if (*more == 0) {
                    break;
                }
                if (!std::all_of(second.begin(), second.begin() + static_cast<long>(*more),
                                 [](char c) { return c == '\0'; })) {
                    return damaged("data after the end of the archive");
                }
            }
            if (!d.frame_done) {
                return damaged("the compressed stream is cut short");
            }
            d.ended = true;
            return false;
        }
        unsigned sum = 0;
        for (std::size_t i = 0; i < b.size(); ++i) {
            sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(b[i]);
        }
        bool ok = true;
        const auto stored = read_number(b.data() + 148, 8, ok);
        const auto size = read_number(b.data() + 124, 12, ok);
        const auto mode = read_number(b.data() + 100, 8, ok);
        const auto mtime = read_number(b.data() + 136, 12, ok);
        if (!ok || stored != sum) {
            return damaged("a header's checksum or numbers are wrong");
        }
        const char type = b[156];
        if (type == 'L' || type == 'K') {
            auto text = d.long_text(size);
            if (!text) {
                return text.error();
            }
            (type == 'L' ? long_name : long_link) = std::move(*text);
            continue;
        }
        std::string name = long_name.empty() ? field_text(b.data(), 100) : long_name;
        const std::string prefix = field_text(b.data() + 345, 155);
        if (long_name.empty() && !prefix.empty() && std::memcmp(b.data() + 257, "ustar", 5) == 0) {
            name = prefix + "/" + name;
        }
        while (!name.empty() && name.back() == '/') {
            name.pop_back();
        }
        if (!safe_path(name)) {
            return damaged(fmt::format("an entry's path \"{}\" leaves the data dir", name));
        }
        entry = Entry{.path = name,
                      .mode = static_cast<mode_t>(mode & 07777),
                      .mtime_ns = static_cast<std::int64_t>(mtime) * 1'000'000'000};
        switch (type) {
            case '0':
            case '\0':
                entry.kind = Entry::Kind::kFile;
                entry.size = size;
                d.file_left = size;
                d.pad_left = (kBlock - size % kBlock) % kBlock;
                return true;
            case '5':
                entry.kind = Entry::Kind::kDirectory;
                return true;
            case '2':
                entry.kind = Entry::Kind::kSymlink;
                entry.target = long_link.empty() ? field_text(b.data() + 157, 100) : long_link;
                return true;
            default:
                return damaged(
                    fmt::format("entry {} has type '{}', which a backup never holds", name, type));
        }
    }
}

core::Result<std::size_t> Reader::read(char* data, std::size_t size) {
    auto& d = *impl_;
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(size, d.file_left));
    if (n == 0) {
        return std::size_t{0};
    }
    if (auto read = d.exact(data, n, "a file"); !read) {
        return read.error();
    }
    d.file_left -= n;
    return n;
}

// --- Command ---------------------------------------------------------------------------------

namespace {

/// write(2) to a pipe whose reader may be gone: EPIPE instead of a SIGPIPE that would end the
/// process (the signal is blocked on this thread for the call, and one it raised is taken).
ssize_t write_no_sigpipe(int fd, const char* data, std::size_t size) {
    sigset_t pipe_only;
    sigset_t old;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    const ssize_t n = ::write(fd, data, size);
    const int saved = errno;
    if (n < 0 && saved == EPIPE) {
        const timespec now{};
        while (::sigtimedwait(&pipe_only, nullptr, &now) == SIGPIPE) {
        }
    }
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    errno = saved;
    return n;
}

/// Bytes `pid` has read and written through any descriptor (/proc/PID/io's rchar and wchar);
/// 0 when /proc does not show them to us.
std::uint64_t io_bytes(pid_t pid) {
    std::ifstream in{fmt::format("/proc/{}/io", pid)};
    std::string key;
    std::uint64_t value = 0;
    std::uint64_t total = 0;
    while (in >> key >> value) {
        if (key == "rchar:" || key == "wchar:") {
            total += value;
        }
    }
    return total;
}

/// io_bytes() of `root` and every process under it, summed: rsync copies in a child it forks,
/// and a child's counters join its parent's only once it is reaped. Only changes matter (a
/// child gone may lower the sum): they show the command is moving data while it prints nothing.
std::uint64_t tree_io(pid_t root) {
    std::multimap<pid_t, pid_t> children;
    std::error_code ec;
    for (std::filesystem::directory_iterator it{"/proc", ec}, end; !ec && it != end;
         it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.empty() ||
            !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            continue;
        }
        std::ifstream stat{it->path() / "stat"};
        std::string line;
        std::getline(stat, line);
        // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
        const auto close = line.rfind(')');
        if (close == std::string::npos) {
            continue;
        }
        std::istringstream rest{line.substr(close + 1)};
        char state = 0;
        pid_t parent = 0;
        if (rest >> state >> parent) {
            children.emplace(parent, static_cast<pid_t>(std::stol(name)));
        }
    }
    std::uint64_t total = 0;
    std::vector<pid_t> todo{root};
    while (!todo.empty()) {
        const pid_t pid = todo.back();
        todo.pop_back();
        total += io_bytes(pid);
        auto [from, to] = children.equal_range(pid);
        for (auto it = from; it != to; ++it) {
            todo.push_back(it->second);
        }
    }
    return total;
}

}  // namespace

struct Command::Impl {
    std::vector<std::string> argv;
    Direction direction = Direction::kToStdin;
    core::Millis idle{0};
    pid_t pid = -1;
    int pipe_fd = -1;    // our end: we write its stdin, or read its stdout
    int stderr_fd = -1;  // our end of its stderr
    std::string err;
    bool reaped = false;
    int status = 0;

    ~Impl() {
        abort();
        close_fd(pipe_fd);
        close_fd(stderr_fd);
    }

    static void close_fd(int& fd) {
        if (fd >= 0) {
            ::close(fd);
            fd = -1;
        }
    }

    /// Reads what stderr holds now into `err` (its last kMaxStderr bytes); true when there was
    /// something.
    bool drain_stderr() {
        if (stderr_fd < 0) {
            return false;
        }
        char buffer[1024];
        bool got = false;
        while (true) {
            auto n = ::read(stderr_fd, buffer, sizeof buffer);
            if (n <= 0) {
                if (n == 0) {
                    close_fd(stderr_fd);
                }
                return got;
            }
            got = true;
            err.append(buffer, static_cast<std::size_t>(n));
            if (err.size() > kMaxStderr) {
                err.erase(0, err.size() - kMaxStderr);
            }
        }
    }

    /// Reads and drops what stdout holds now (Command::run); true when there was something.
    bool drain_stdout() {
        char buffer[4096];
        bool got = false;
        while (pipe_fd >= 0) {
            auto n = ::read(pipe_fd, buffer, sizeof buffer);
            if (n == 0) {
                close_fd(pipe_fd);
            }
            if (n <= 0) {
                break;
            }
            got = true;
        }
        return got;
    }

    /// Waits for the command's exit, draining its output, within the idle bound (progress:
    /// output, or a change in tree_io()).
    core::Result<void> run_to_end(const std::atomic<bool>& cancelled) {
        const auto look_every = std::min(kIoLook, idle / 2);
        auto last_progress = std::chrono::steady_clock::now();
        auto last_look = last_progress;
        std::uint64_t moved = tree_io(pid);
        while (true) {
            if (::waitpid(pid, &status, WNOHANG) == pid) {
                reaped = true;
                break;
            }
            if (cancelled.load(std::memory_order_relaxed)) {
                abort();
                return core::Error{core::ErrorCode::kUnavailable,
                                   fmt::format("{} was ended: cancelled", argv.front())};
            }
            const auto now = std::chrono::steady_clock::now();
            if (now - last_look >= look_every) {
                last_look = now;
                if (const auto io = tree_io(pid); io != moved) {
                    moved = io;
                    last_progress = now;
                }
            }
            if (now - last_progress >= idle) {
                abort();
                const std::string said = tail();
                return core::Error{core::ErrorCode::kTimeout,
                                   said.empty()
                                       ? fmt::format("{} made no progress for {}", argv.front(),
                                                     core::format_duration(idle))
                                       : fmt::format("{} made no progress for {}: {}", argv.front(),
                                                     core::format_duration(idle), said)};
            }
            std::array<pollfd, 2> fds{pollfd{.fd = pipe_fd, .events = POLLIN, .revents = 0},
                                      pollfd{.fd = stderr_fd, .events = POLLIN, .revents = 0}};
            // Negative descriptors (closed at their end) are ignored by poll: it then only waits.
            if (::poll(fds.data(), fds.size(), 100) > 0) {
                const bool out = drain_stdout();
                const bool said = drain_stderr();
                if (out || said) {
                    last_progress = std::chrono::steady_clock::now();
                }
            }
        }
        drain_stdout();
        drain_stderr();
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            return storage(describe());
        }
        return {};
    }

    /// Waits until the pipe is ready for `events`, reading stderr meanwhile; an error when the
    /// command makes no progress for `idle`.
    core::Result<void> wait(short events) {
        const auto deadline = std::chrono::steady_clock::now() + idle;
        while (true) {
            std::array<pollfd, 2> fds{pollfd{.fd = pipe_fd, .events = events, .revents = 0},
                                      pollfd{.fd = stderr_fd, .events = POLLIN, .revents = 0}};
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                return core::Error{core::ErrorCode::kTimeout,
                                   fmt::format("{} made no progress for {}", argv.front(),
                                               core::format_duration(idle))};
            }
            const int ready = ::poll(fds.data(), stderr_fd >= 0 ? 2 : 1,
                                     static_cast<int>(std::min<std::int64_t>(left.count(), 1000)));
            if (ready < 0 && errno != EINTR) {
                return storage(fmt::format("poll: {}", std::strerror(errno)));
            }
            if (fds[1].revents != 0) {
                drain_stderr();
            }
            if (fds[0].revents != 0) {
                return {};
            }
        }
    }

    void abort() {
        if (pid > 0 && !reaped) {
            ::kill(pid, SIGTERM);
            for (int i = 0; i < 50; ++i) {
                if (::waitpid(pid, &status, WNOHANG) == pid) {
                    reaped = true;
                    return;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds{20});
            }
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            reaped = true;
        }
    }

    /// The last of what the command wrote to stderr, without its final line ends.
    std::string tail() const {
        std::string text = err;
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
            text.pop_back();
        }
        return text;
    }

    std::string describe() const {
        std::string how = WIFEXITED(status)
                              ? fmt::format("exited with code {}", WEXITSTATUS(status))
                              : fmt::format("was killed by signal {}", WTERMSIG(status));
        const std::string said = tail();
        return said.empty() ? fmt::format("{} {}", argv.front(), how)
                            : fmt::format("{} {}: {}", argv.front(), how, said);
    }
};

Command::Command(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Command::~Command() = default;

core::Result<std::unique_ptr<Command>> Command::start(std::vector<std::string> argv,
                                                      Direction direction,
                                                      core::Millis idle) {
    if (argv.empty() || argv.front().empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument, "the command is empty"};
    }
    int data[2];
    int err[2];
    if (::pipe2(data, O_CLOEXEC) != 0) {
        return storage(fmt::format("pipe: {}", std::strerror(errno)));
    }
    if (::pipe2(err, O_CLOEXEC) != 0) {
        ::close(data[0]);
        ::close(data[1]);
        return storage(fmt::format("pipe: {}", std::strerror(errno)));
    }
    const bool to_stdin = direction == Direction::kToStdin;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_stdin ? data[0] : data[1], to_stdin ? 0 : 1);
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    if (!to_stdin) {
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    }
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    // Default dispositions: the sidecar ignores SIGPIPE, the command must not.
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigdefault(&attributes, &defaults);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF);
    std::vector<char*> args;
    for (auto& a : argv) {
        args.push_back(a.data());
    }
    args.push_back(nullptr);
    pid_t pid = -1;
    const int spawned = ::posix_spawnp(&pid, args[0], &actions, &attributes, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    ::close(to_stdin ? data[0] : data[1]);
    ::close(err[1]);
    if (spawned != 0) {
        ::close(to_stdin ? data[1] : data[0]);
        ::close(err[0]);
        return storage(fmt::format("cannot run {}: {}", argv.front(), std::strerror(spawned)));
    }
    auto impl = std::make_unique<Impl>();
    impl->argv = std::move(argv);
    impl->direction = direction;
    impl->idle = idle;
    impl->pid = pid;
    impl->pipe_fd = to_stdin ? data[1] : data[0];
    impl->stderr_fd = err[0];
    ::fcntl(impl->pipe_fd, F_SETFL, O_NONBLOCK);
    ::fcntl(impl->stderr_fd, F_SETFL, O_NONBLOCK);
    return std::unique_ptr<Command>(new Command(std::move(impl)));
}

core::Result<void> Command::run(std::vector<std::string> argv,
                                core::Millis idle,
                                const std::atomic<bool>& cancelled) {
    // Its stdout comes to us as for a download (stdin /dev/null), and is only drained.
    auto started = start(std::move(argv), Direction::kFromStdout, idle);
    if (!started) {
        return started.error();
    }
    return (*started)->impl_->run_to_end(cancelled);
}

Sink Command::sink() {
    return [impl = impl_.get()](const char* data, std::size_t size) -> core::Result<void> {
        std::size_t done = 0;
        while (done < size) {
            if (auto ready = impl->wait(POLLOUT); !ready) {
                return ready;
            }
            auto n = write_no_sigpipe(impl->pipe_fd, data + done, size - done);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    continue;
                }
                impl->abort();
                return storage(fmt::format("{} stopped taking the stream ({}): {}",
                                           impl->argv.front(), std::strerror(errno),
                                           impl->describe()));
            }
            done += static_cast<std::size_t>(n);
        }
        return {};
    };
}

Source Command::source() {
    return [impl = impl_.get()](char* data, std::size_t size) -> core::Result<std::size_t> {
        while (true) {
            if (impl->pipe_fd < 0) {
                return std::size_t{0};
            }
            if (auto ready = impl->wait(POLLIN); !ready) {
                return ready.error();
            }
            auto n = ::read(impl->pipe_fd, data, size);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    continue;
                }
                return storage(
                    fmt::format("reading from {}: {}", impl->argv.front(), std::strerror(errno)));
            }
            return static_cast<std::size_t>(n);
        }
    };
}

core::Result<void> Command::finish() {
    auto& d = *impl_;
    Impl::close_fd(d.pipe_fd);
    // stderr until the command closes it, then its exit, within the idle bound.
    const auto deadline = std::chrono::steady_clock::now() + d.idle;
    while (!d.reaped) {
        d.drain_stderr();
        const pid_t done = ::waitpid(d.pid, &d.status, WNOHANG);
        if (done == d.pid) {
            d.reaped = true;
            break;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            d.abort();
            return core::Error{core::ErrorCode::kTimeout,
                               fmt::format("{} did not end within {} of its stream's end",
                                           d.argv.front(), core::format_duration(d.idle))};
        }
        pollfd p{.fd = d.stderr_fd, .events = POLLIN, .revents = 0};
        if (d.stderr_fd >= 0) {
            ::poll(&p, 1, 50);
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds{5});
        }
    }
    d.drain_stderr();
    if (!WIFEXITED(d.status) || WEXITSTATUS(d.status) != 0) {
        return storage(d.describe());
    }
    return {};
}

void Command::abort() {
    impl_->abort();
}

std::vector<std::string> render_argv(const std::vector<std::string>& argv,
                                     const std::vector<Template>& values) {
    std::vector<std::string> out;
    out.reserve(argv.size());
    for (const auto& arg : argv) {
        std::string rendered;
        std::size_t at = 0;
        while (at < arg.size()) {
            const auto open = arg.find("{{", at);
            const auto close = open == std::string::npos ? open : arg.find("}}", open + 2);
            if (close == std::string::npos) {
                break;
            }
            const std::string_view key = std::string_view{arg}.substr(open + 2, close - open - 2);
            auto value = std::find_if(values.begin(), values.end(),
                                      [&](const Template& t) { return t.first == key; });
            rendered.append(arg, at, open - at);
            if (value == values.end()) {
                rendered.append(arg, open, close + 2 - open);
            } else {
                rendered.append(value->second);
            }
            at = close + 2;
        }
        rendered.append(arg, std::min(at, arg.size()));
        out.push_back(std::move(rendered));
    }
    return out;
}

std::vector<std::string> render_argv(const std::vector<std::string>& argv, std::string_view name) {
    return render_argv(argv, {{"name", name}});
}

}  // namespace aviary::supervisor::archive
