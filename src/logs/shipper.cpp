#include "logs/shipper.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>

namespace aviary::logs {
namespace {

namespace fs = std::filesystem;

// A buffer file is a run of frames: [payload bytes: u32][FNV-1a 64 of the payload: u64], then
// the payload [seq: i64][time_ns: i64][level: i32][source bytes: u16][source][message]. Native
// byte order: the files never leave the machine. The checksum finds a torn write at the end
// after a crash, which recovery cuts off.
constexpr std::size_t kHeader = 4 + 8;
constexpr std::size_t kFixed = 8 + 8 + 4 + 2;
/// The longest line shipped; past it a line is cut and says so (serve refuses longer messages,
/// and one refused line must not hold back the rest).
constexpr std::size_t kMaxLineBytes = 16 * 1024;
constexpr std::size_t kMaxSourceBytes = 64;
/// No frame written is longer: a cut line and its note, each byte of it made three by U+FFFD
/// at worst. A longer length is garbage.
constexpr std::size_t kMaxPayload = kFixed + kMaxSourceBytes + 3 * (kMaxLineBytes + 64);
/// What a batch reads of a buffer file at a time: many frames, more than the longest.
constexpr std::size_t kReadChunk = 256 * 1024;
static_assert(kReadChunk > kHeader + kMaxPayload);
constexpr std::string_view kSuffix = ".seg";

std::uint64_t fnv1a(std::string_view data) {
    std::uint64_t h = 14695981039346656037ULL;
    for (unsigned char c : data) {
        h = (h ^ c) * 1099511628211ULL;
    }
    return h;
}

template <class T>
void put(std::string& out, T value) {
    char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    out.append(bytes, sizeof(T));
}

template <class T>
T get(const char* at) {
    T value;
    std::memcpy(&value, at, sizeof(T));
    return value;
}

/// The length of the UTF-8 sequence at `at`, 0 when it is not one (RFC 3629: no overlong forms,
/// no surrogates, nothing past U+10FFFF), as serve's JSON parser checks it.
std::size_t utf8_length(std::string_view s, std::size_t at) {
    const auto c = static_cast<unsigned char>(s[at]);
    if (c < 0x80) {
        return 1;
    }
    std::size_t n = 0;
    unsigned char low = 0x80;
    unsigned char high = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        low = c == 0xE0 ? 0xA0 : 0x80;
        high = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        low = c == 0xF0 ? 0x90 : 0x80;
        high = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (s.size() - at < n) {
        return 0;
    }
    for (std::size_t k = 1; k < n; ++k) {
        const auto b = static_cast<unsigned char>(s[at + k]);
        if (b < (k == 1 ? low : 0x80) || b > (k == 1 ? high : 0xBF)) {
            return 0;
        }
    }
    return n;
}

/// `text` with each byte that is not part of a UTF-8 sequence replaced by U+FFFD: serve parses
/// a shipment as JSON, and one Latin-1 byte or binary noise in a line would make it refuse the
/// whole batch. `scratch` holds the result when one is needed.
std::string_view as_utf8(std::string_view text, std::string& scratch) {
    std::size_t at = 0;
    while (at < text.size()) {
        const auto n = utf8_length(text, at);
        if (n == 0) {
            break;
        }
        at += n;
    }
    if (at == text.size()) {
        return text;
    }
    scratch.assign(text.substr(0, at));
    while (at < text.size()) {
        const auto n = utf8_length(text, at);
        if (n == 0) {
            scratch.append("\xEF\xBF\xBD");
            ++at;
        } else {
            scratch.append(text.substr(at, n));
            at += n;
        }
    }
    return scratch;
}

void encode(std::string& out,
            std::int64_t seq,
            std::int64_t time_ns,
            int level,
            std::string_view source,
            std::string_view text) {
    const std::size_t length = kFixed + source.size() + text.size();
    put<std::uint32_t>(out, static_cast<std::uint32_t>(length));
    const std::size_t sum_at = out.size();
    put<std::uint64_t>(out, 0);  // the checksum, once the payload is in place
    const std::size_t payload_at = out.size();
    put<std::int64_t>(out, seq);
    put<std::int64_t>(out, time_ns);
    put<std::int32_t>(out, level);
    put<std::uint16_t>(out, static_cast<std::uint16_t>(source.size()));
    out.append(source);
    out.append(text);
    const auto sum = fnv1a(std::string_view{out}.substr(payload_at));
    std::memcpy(out.data() + sum_at, &sum, sizeof(sum));
}

struct Frame {
    std::int64_t seq = 0;
    std::int64_t time_ns = 0;
    int level = 6;
    std::string_view source;
    std::string_view text;
    std::size_t size = 0;  ///< the frame's bytes, header included
};

enum class Decoded {
    kFrame,  ///< a whole, checked frame
    kShort,  ///< the data ends inside the frame (a torn write, or the end of a read)
    kBad,    ///< not a frame
};

Decoded decode(std::string_view data, Frame& f) {
    if (data.size() < kHeader) {
        return Decoded::kShort;
    }
    const auto length = get<std::uint32_t>(data.data());
    const auto sum = get<std::uint64_t>(data.data() + 4);
    if (length < kFixed || length > kMaxPayload) {
        return Decoded::kBad;
    }
    if (data.size() - kHeader < length) {
        return Decoded::kShort;
    }
    const auto payload = data.substr(kHeader, length);
    if (fnv1a(payload) != sum) {
        return Decoded::kBad;
    }
    const auto source_size = get<std::uint16_t>(payload.data() + 20);
    if (kFixed + source_size > payload.size()) {
        return Decoded::kBad;
    }
    f.seq = get<std::int64_t>(payload.data());
    f.time_ns = get<std::int64_t>(payload.data() + 8);
    f.level = get<std::int32_t>(payload.data() + 16);
    f.source = payload.substr(kFixed, source_size);
    f.text = payload.substr(kFixed + source_size);
    f.size = kHeader + length;
    return f.seq > 0 ? Decoded::kFrame : Decoded::kBad;
}

/// Closes a descriptor when it goes out of scope.
struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd >= 0) {
            ::close(fd);
        }
    }
};

core::Error storage(std::string message) {
    return core::Error{core::ErrorCode::kStorage, std::move(message)};
}

/// nullopt when the file does not exist.
core::Result<std::optional<std::string>> read_file(const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    if (!in) {
        std::error_code ec;
        if (!fs::exists(path, ec) && !ec) {
            return std::optional<std::string>{};
        }
        return storage(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
    }
    std::string data{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
    if (in.bad()) {
        return storage(fmt::format("cannot read {}", path));
    }
    return std::optional<std::string>{std::move(data)};
}

bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        const auto n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

/// Makes a file's creation, removal or rename in `dir` survive a power loss.
core::Result<void> sync_dir(const std::string& dir) {
    Fd fd{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (fd.fd < 0 || ::fsync(fd.fd) != 0) {
        return storage(fmt::format("cannot sync the dir {}: {}", dir, std::strerror(errno)));
    }
    return {};
}

/// Writes <dir>/<name> through a temporary file and a rename, as the supervisor's state file
/// (src/supervisor/state_file.cpp): a crash leaves the old file or the new one, never half of
/// either. `durable` syncs the file before the rename and the dir after it, so that a power
/// loss keeps the new one too.
core::Result<void> replace_file(const std::string& dir,
                                std::string_view name,
                                std::string_view text,
                                bool durable) {
    const std::string path = fmt::format("{}/{}", dir, name);
    const std::string temp = path + ".tmp";
    Fd fd{::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)};
    if (fd.fd < 0) {
        return storage(fmt::format("cannot write {}: {}", temp, std::strerror(errno)));
    }
    if (!write_all(fd.fd, text) || (durable && ::fsync(fd.fd) != 0)) {
        return storage(fmt::format("cannot write {}: {}", temp, std::strerror(errno)));
    }
    if (::rename(temp.c_str(), path.c_str()) != 0) {
        return storage(fmt::format("cannot rename {} to {}: {}", temp, path, std::strerror(errno)));
    }
    return durable ? sync_dir(dir) : core::Result<void>{};
}

std::string segment_path(const std::string& dir, std::uint64_t number) {
    return fmt::format("{}/{:012}{}", dir, number, kSuffix);
}

void remove_files(const std::vector<std::string>& paths) {
    for (const auto& path : paths) {
        std::error_code ec;
        fs::remove(path, ec);
        if (ec) {
            // Out of the accounting already; the next start finds its lines acknowledged or
            // older than the oldest kept, and removes it.
            core::logger("ship")->warn("cannot remove the log buffer file {}: {}", path,
                                       ec.message());
        }
    }
}

core::Millis jittered(core::Millis backoff) {
    // Half to all of the backoff: sidecars that lost serve together do not come back together.
    thread_local std::mt19937_64 random{std::random_device{}()};
    std::uniform_real_distribution<double> factor{0.5, 1.0};
    return core::Millis{
        static_cast<core::Millis::rep>(static_cast<double>(backoff.count()) * factor(random))};
}

}  // namespace

Shipper::Shipper(ShipperSettings settings, Send send)
    : settings_(std::move(settings)), send_(std::move(send)) {}

Shipper::~Shipper() {
    stop();
}

std::string Shipper::stream() const {
    std::lock_guard lock{mu_};
    return stream_;
}

ShipperStats Shipper::stats() const {
    std::lock_guard lock{mu_};
    return stats_;
}

void Shipper::offer(std::int64_t time_ns,
                    std::string_view source,
                    int level,
                    std::string_view text) {
    // Copied before the lock: the lock is held for a push, nothing more.
    Line line{time_ns, std::string{source.substr(0, kMaxSourceBytes)}, level, {}};
    if (text.size() > kMaxLineBytes) {
        std::size_t cut = kMaxLineBytes;
        while (cut > kMaxLineBytes - 3 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
            --cut;  // not inside a UTF-8 sequence
        }
        line.text = fmt::format("{} [cut: {} more bytes]", text.substr(0, cut), text.size() - cut);
    } else {
        line.text = std::string{text};
    }
    const std::size_t bytes = line.source.size() + line.text.size() + sizeof(Line);
    bool first = false;
    {
        std::lock_guard lock{mu_};
        ++stats_.offered;
        if (!started_ || stopping_ || pending_.size() >= settings_.max_pending_lines ||
            pending_bytes_ + bytes > settings_.max_pending_bytes) {
            // The disk cannot keep up (or nothing is running): this line goes, counted, rather
            // than holding the node.
            ++stats_.dropped;
            ++unreported_drops_;
            return;
        }
        first = pending_.empty();
        pending_.push_back(std::move(line));
        pending_bytes_ += bytes;
    }
    if (first) {
        wake_writer_.notify_one();  // the writer takes the whole queue: one wake-up is enough
    }
}

core::Result<void> Shipper::recover() {
    auto log = core::logger("ship");
    const auto& dir = settings_.dir;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
        return storage(fmt::format("cannot make the log buffer dir {}: {}", dir, ec.message()));
    }

    // The stream's id is made once, with the buffer, and kept through a power loss: a wiped
    // buffer gets a new one, so its new numbers never meet the old ones in one stream.
    auto id_text = read_file(dir + "/stream");
    if (!id_text) {
        return id_text.error();
    }
    std::string id;
    if (*id_text) {
        id = (*id_text)->substr(0, (*id_text)->find('\n'));
    }
    if (id.empty()) {
        id = core::new_id();
        if (auto saved = replace_file(dir, "stream", id + "\n", true); !saved) {
            return saved;
        }
    }

    // "ACKED DROPPED": what serve has, and the drops it has not been told of that the numbers
    // do not show.
    auto checkpoint = read_file(dir + "/checkpoint");
    if (!checkpoint) {
        return checkpoint.error();
    }
    bool have_checkpoint = false;
    std::int64_t acked = 0;
    std::uint64_t dropped = 0;
    if (*checkpoint) {
        const auto& text = **checkpoint;
        const char* end = text.data() + text.size();
        const auto a = std::from_chars(text.data(), end, acked);
        if (a.ec == std::errc{} && a.ptr < end && *a.ptr == ' ' && acked >= 0 &&
            std::from_chars(a.ptr + 1, end, dropped).ec == std::errc{}) {
            have_checkpoint = true;
        } else {
            acked = 0;
            dropped = 0;
            log->warn("{}/checkpoint is unreadable ({:?}): the whole buffer is sent again", dir,
                      text.substr(0, 40));
        }
    }

    std::vector<std::uint64_t> numbers;
    for (fs::directory_iterator it{dir, ec}, end; !ec && it != end; it.increment(ec)) {
        const auto name = it->path().filename().string();
        if (name.size() > kSuffix.size() && name.ends_with(kSuffix)) {
            std::uint64_t number = 0;
            const char* digits_end = name.data() + name.size() - kSuffix.size();
            const auto parsed = std::from_chars(name.data(), digits_end, number);
            if (parsed.ec == std::errc{} && parsed.ptr == digits_end) {
                numbers.push_back(number);
            }
        }
    }
    if (ec) {
        return storage(fmt::format("cannot list the log buffer dir {}: {}", dir, ec.message()));
    }
    std::sort(numbers.begin(), numbers.end());

    std::vector<Segment> found;
    std::int64_t previous_seq = 0;
    std::uint64_t torn = 0;
    for (auto number : numbers) {
        Segment segment{.number = number, .path = segment_path(dir, number)};
        auto data = read_file(segment.path);
        if (!data) {
            return data.error();
        }
        if (!*data) {
            continue;
        }
        std::string_view rest{**data};
        Frame frame;
        // A frame numbered out of order is not one this shipper wrote: cut like garbage.
        while (decode(rest, frame) == Decoded::kFrame && frame.seq > previous_seq) {
            if (segment.first_seq == 0) {
                segment.first_seq = frame.seq;
            }
            segment.last_seq = previous_seq = frame.seq;
            segment.bytes += frame.size;
            rest.remove_prefix(frame.size);
        }
        if (!rest.empty()) {
            // A write a crash cut short (or garbage): never shipped; new lines follow the last
            // whole frame.
            torn += rest.size();
            log->warn("{}: {} bytes after its last whole line are cut off", segment.path,
                      rest.size());
            if (::truncate(segment.path.c_str(), static_cast<off_t>(segment.bytes)) != 0) {
                return storage(fmt::format("cannot cut the torn end of {}: {}", segment.path,
                                           std::strerror(errno)));
            }
        }
        found.push_back(std::move(segment));
    }

    if (!have_checkpoint) {
        // Made at the first start and replaced atomically since: missing or unreadable, it was
        // lost, and how much serve has is unknown. The whole buffer goes again (serve skips what
        // it has), and the numbers below the oldest kept are not claimed as dropped.
        const auto oldest = std::find_if(found.begin(), found.end(),
                                         [](const Segment& s) { return s.first_seq != 0; });
        acked = oldest == found.end() ? 0 : oldest->first_seq - 1;
    }

    std::int64_t highest = acked;
    std::uint64_t buffered = 0;
    std::vector<std::string> doomed;
    std::deque<Segment> kept;
    for (std::size_t i = 0; i < found.size(); ++i) {
        auto& segment = found[i];
        const bool last = i + 1 == found.size();
        // The last file stays even when serve has all of it: it holds the highest number given,
        // should a later checkpoint be lost.
        if (!last && (segment.last_seq == 0 || segment.last_seq <= acked)) {
            doomed.push_back(segment.path);
            continue;
        }
        highest = std::max(highest, segment.last_seq);
        buffered += segment.bytes;
        kept.push_back(std::move(segment));
    }
    remove_files(doomed);
    // What the last run wrote is in the page cache; it is sent only once on the disk.
    for (const auto& segment : kept) {
        Fd fd{::open(segment.path.c_str(), O_WRONLY | O_CLOEXEC)};
        if (fd.fd < 0 || ::fdatasync(fd.fd) != 0) {
            return storage(fmt::format("cannot sync the log buffer {}: {}", segment.path,
                                       std::strerror(errno)));
        }
    }

    {
        std::lock_guard lock{mu_};
        stream_ = settings_.node + "@" + id;
        acked_seq_ = acked;
        unreported_drops_ += dropped;  // with what was offered before start()
        next_seq_ = highest + 1;
        written_seq_ = highest;
        synced_seq_ = highest;
        next_segment_ = numbers.empty() ? 1 : numbers.back() + 1;
        dir_synced_upto_ = numbers.empty() ? 0 : numbers.back();  // synced with the checkpoint
        segments_ = std::move(kept);
        stats_.acked_seq = acked;
        stats_.buffered_bytes = buffered;
        stats_.torn_bytes = torn;
    }
    // From here on the checkpoint exists: its absence at a later start means it was lost.
    return save_checkpoint(true);
}

core::Result<void> Shipper::start() {
    {
        std::lock_guard lock{mu_};
        if (started_ || stopping_) {
            return core::Error{core::ErrorCode::kInternal,
                               fmt::format("the log shipper of {} was started before: a "
                                           "Shipper starts once",
                                           settings_.dir)};
        }
    }
    auto& s = settings_;
    if (s.dir.empty() || s.max_batch_lines == 0 || s.max_batch_bytes == 0 ||
        s.max_pending_lines == 0 || s.max_buffer_bytes < 2 || s.linger.count() <= 0 ||
        s.min_backoff.count() <= 0 || s.max_backoff < s.min_backoff) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("log shipping settings for {:?}: a dir, batches of at "
                                       "least a line, a positive linger and backoff "
                                       "(min <= max) are needed",
                                       s.dir)};
    }
    // The cap removes whole files: at least two fit, so that it has an old one to remove.
    s.segment_bytes = std::clamp<std::size_t>(s.segment_bytes, 1, s.max_buffer_bytes / 2);
    if (auto recovered = recover(); !recovered) {
        return recovered;
    }
    {
        std::lock_guard lock{mu_};
        started_ = true;
    }
    writer_ = std::thread{[this] { write_loop(); }};
    syncer_ = std::thread{[this] { sync_loop(); }};
    sender_ = std::thread{[this] { send_loop(); }};
    return {};
}

void Shipper::stop() {
    {
        std::lock_guard lock{mu_};
        if (!started_ || stopping_) {
            return;
        }
        stopping_ = true;
    }
    wake_writer_.notify_all();
    wake_syncer_.notify_all();
    wake_sender_.notify_all();
    writer_.join();  // it writes what was queued first
    syncer_.join();
    sender_.join();
    close_active();
    sync_written();
    // The acknowledged number and the drops not yet told, for the next start.
    (void)save_checkpoint(true);
}

void Shipper::close_active() {
    if (active_fd_ >= 0) {
        ::close(active_fd_);  // what it wrote is synced by path (sync_written)
        active_fd_ = -1;
    }
}

core::Result<void> Shipper::append(std::vector<Line>& lines) {
    // Files are cut at segment_bytes, mid-batch if need be: the cap drops whole files, so none
    // may grow much past its size.
    std::size_t next = 0;
    std::string scratch;
    while (next < lines.size()) {
        std::string path;
        std::uint64_t used = 0;
        bool fresh = false;
        {
            std::lock_guard lock{mu_};
            if (segments_.empty() || segments_.back().bytes >= settings_.segment_bytes ||
                seal_active_) {
                seal_active_ = false;
                segments_.push_back(Segment{.number = next_segment_,
                                            .path = segment_path(settings_.dir, next_segment_)});
                ++next_segment_;
                fresh = true;
            }
            path = segments_.back().path;
            used = segments_.back().bytes;
        }
        if (fresh) {
            close_active();  // the full file is done
        }
        if (active_fd_ < 0) {
            active_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (active_fd_ < 0) {
                return storage(
                    fmt::format("cannot open the log buffer {}: {}", path, std::strerror(errno)));
            }
        }
        std::string out;
        std::int64_t seq = next_seq_;
        const std::size_t first = next;
        const std::uint64_t room =
            settings_.segment_bytes - std::min<std::uint64_t>(used, settings_.segment_bytes);
        while (next < lines.size() && (next == first || out.size() < room)) {
            const auto& line = lines[next++];
            encode(out, seq++, line.time_ns, line.level, line.source, as_utf8(line.text, scratch));
        }
        if (!write_all(active_fd_, out)) {
            const int error = errno;
            // Part of the write may be in the file: cut it, so that later frames follow whole
            // ones (a reader stops at the first bad frame). If even that fails, the file takes
            // no more lines.
            if (::ftruncate(active_fd_, static_cast<off_t>(used)) != 0) {
                close_active();
                std::lock_guard lock{mu_};
                seal_active_ = true;
            }
            lines.erase(lines.begin(), lines.begin() + static_cast<std::ptrdiff_t>(first));
            return storage(
                fmt::format("cannot write the log buffer {}: {}", path, std::strerror(error)));
        }
        std::lock_guard lock{mu_};
        auto& segment = segments_.back();
        if (segment.first_seq == 0) {
            segment.first_seq = next_seq_;
        }
        segment.last_seq = seq - 1;
        segment.bytes += out.size();
        stats_.written += next - first;
        stats_.buffered_bytes += out.size();
        next_seq_ = seq;
        written_seq_ = seq - 1;
    }
    lines.clear();
    return {};
}

void Shipper::sync_written() {
    std::vector<std::string> paths;
    std::int64_t upto = 0;
    std::uint64_t newest = 0;
    {
        std::lock_guard lock{mu_};
        upto = written_seq_;  // every line through it is in the files below (write() returned)
        for (const auto& segment : segments_) {
            if (segment.first_seq != 0 && segment.last_seq > synced_seq_) {
                paths.push_back(segment.path);
            }
        }
        newest = segments_.empty() ? 0 : segments_.back().number;
    }
    auto log = core::logger("ship");
    // Sent anyway when a sync fails: holding lines for a disk that may never sync would stop
    // shipping. What a power loss then takes may have been sent. Said once per failure.
    auto failed = [&](std::string message) {
        if (message != sync_error_) {
            log->warn("{}: lines are sent without it", message);
            sync_error_ = std::move(message);
        }
    };
    bool ok = true;
    if (newest > dir_synced_upto_) {
        // A new file's name survives a power loss before any line in it is sent.
        if (auto synced = sync_dir(settings_.dir); !synced) {
            failed(synced.error().message);
            ok = false;
        }
        dir_synced_upto_ = newest;
    }
    for (const auto& path : paths) {
        Fd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
        if (fd.fd < 0 && errno == ENOENT) {
            continue;  // removed since: by the cap, or acknowledged
        }
        if (fd.fd < 0 || ::fdatasync(fd.fd) != 0) {
            failed(fmt::format("cannot sync the log buffer {}: {}", path, std::strerror(errno)));
            ok = false;
        }
    }
    if (ok && !sync_error_.empty()) {
        log->info("the log buffer {} is synced again", settings_.dir);
        sync_error_.clear();
    }
    {
        std::lock_guard lock{mu_};
        synced_seq_ = std::max(synced_seq_, upto);
    }
    wake_sender_.notify_one();
}

void Shipper::sync_loop() {
    core::name_this_thread("ship-sync");
    // The first write after a quiet spell is synced at once: a quiet node's line goes without
    // waiting.
    auto synced_at = std::chrono::steady_clock::now() - settings_.linger;
    while (true) {
        {
            std::unique_lock lock{mu_};
            wake_syncer_.wait(lock, [&] { return stopping_ || written_seq_ > synced_seq_; });
            // At most one sync per linger: what is written meanwhile joins it.
            wake_syncer_.wait_until(lock, synced_at + settings_.linger, [&] { return stopping_; });
            if (stopping_) {
                return;  // stop() syncs the last writes once the writer is done
            }
        }
        synced_at = std::chrono::steady_clock::now();
        sync_written();
    }
}

std::vector<std::string> Shipper::enforce_cap() {
    std::vector<std::string> doomed;
    while (stats_.buffered_bytes > settings_.max_buffer_bytes && segments_.size() > 1) {
        const auto& oldest = segments_.front();
        const bool unsent = oldest.last_seq > acked_seq_;
        if (unsent && in_flight_to_ != 0 && oldest.first_seq <= in_flight_to_) {
            break;  // being sent: it goes once answered (the cap is passed by one batch at most)
        }
        if (unsent) {
            // Not added to unreported_drops_: the next batch starts past them, and the gap in its
            // numbers is reported.
            stats_.dropped += static_cast<std::uint64_t>(
                oldest.last_seq - std::max(oldest.first_seq - 1, acked_seq_));
        }
        stats_.buffered_bytes -= oldest.bytes;
        doomed.push_back(oldest.path);
        segments_.pop_front();
    }
    return doomed;
}

void Shipper::write_loop() {
    core::name_this_thread("ship-write");
    auto log = core::logger("ship");
    auto saved_at = std::chrono::steady_clock::now() - settings_.linger;
    std::vector<Line> lines;
    std::string failing;  // the last write error, logged once until writing works again
    std::uint64_t failed_lines = 0;
    while (true) {
        bool stop = false;
        bool drops_unsaved = false;
        {
            std::unique_lock lock{mu_};
            auto ready = [&] { return stopping_ || !pending_.empty(); };
            if (unreported_drops_ != saved_drops_) {
                wake_writer_.wait_for(lock, settings_.linger, ready);
            } else {
                wake_writer_.wait(lock, ready);
            }
            lines.assign(std::make_move_iterator(pending_.begin()),
                         std::make_move_iterator(pending_.end()));
            pending_.clear();
            pending_bytes_ = 0;
            stop = stopping_;
        }
        // kill -9 of the sidecar loses nothing written here (the kernel has it), so this thread
        // only writes: the sync, which can take long on a busy disk, is the syncer's.
        if (!lines.empty()) {
            if (auto appended = append(lines); !appended) {
                if (appended.error().message != failing) {
                    failing = appended.error().message;
                    log->error("{}: lines are dropped (and counted) until it works", failing);
                }
                failed_lines += lines.size();
                std::lock_guard lock{mu_};
                stats_.dropped += lines.size();
                unreported_drops_ += lines.size();
            } else if (!failing.empty()) {
                log->info("the log buffer {} is written again; {} lines were dropped meanwhile",
                          settings_.dir, failed_lines);
                failing.clear();
                failed_lines = 0;
            }
            lines.clear();
            wake_syncer_.notify_one();
        }
        std::vector<std::string> doomed;
        {
            std::lock_guard lock{mu_};
            doomed = enforce_cap();
            drops_unsaved = unreported_drops_ != saved_drops_;
        }
        remove_files(doomed);
        if (stop) {
            return;  // offer() queues nothing once stopping_: the queue was taken whole
        }
        // Drops of unnumbered lines are kept across a restart, saved at most once per linger
        // (stop() saves the last ones).
        const auto now = std::chrono::steady_clock::now();
        if (drops_unsaved && now - saved_at >= settings_.linger) {
            (void)save_checkpoint(false);
            saved_at = now;
        }
    }
}

core::Result<Shipment> Shipper::read_batch(std::int64_t after_seq, std::int64_t upto_seq) {
    std::vector<Segment> wanted;
    {
        std::lock_guard lock{mu_};
        for (const auto& segment : segments_) {
            if (segment.last_seq > after_seq && segment.first_seq != 0 &&
                segment.first_seq <= upto_seq) {
                wanted.push_back(segment);  // its bytes as of now: whole frames
            }
        }
    }
    Shipment batch{.stream = stream_};
    std::size_t bytes = 0;
    std::string data;
    for (const auto& segment : wanted) {
        Fd fd{::open(segment.path.c_str(), O_RDONLY | O_CLOEXEC)};
        if (fd.fd < 0) {
            if (errno == ENOENT) {
                // Removed by hand: its lines are in the gap the next batch reports.
                continue;
            }
            return storage(fmt::format("cannot read the log buffer {}: {}", segment.path,
                                       std::strerror(errno)));
        }
        std::uint64_t offset = 0;
        if (cursor_.seq == after_seq && cursor_.segment == segment.number) {
            offset = cursor_.offset;  // where the last batch ended: no need to read it again
        }
        while (offset < segment.bytes) {
            data.resize(std::min<std::uint64_t>(kReadChunk, segment.bytes - offset));
            std::size_t got = 0;
            while (got < data.size()) {
                const auto n = ::pread(fd.fd, data.data() + got, data.size() - got,
                                       static_cast<off_t>(offset + got));
                if (n < 0 && errno == EINTR) {
                    continue;
                }
                if (n < 0) {
                    return storage(fmt::format("cannot read the log buffer {}: {}", segment.path,
                                               std::strerror(errno)));
                }
                if (n == 0) {
                    break;
                }
                got += static_cast<std::size_t>(n);
            }
            std::string_view rest{data.data(), got};
            std::uint64_t consumed = 0;
            Frame frame;
            Decoded decoded = Decoded::kFrame;
            while ((decoded = decode(rest, frame)) == Decoded::kFrame) {
                if (frame.seq > upto_seq) {
                    return batch;  // not synced yet
                }
                consumed += frame.size;
                rest.remove_prefix(frame.size);
                if (frame.seq <= after_seq) {
                    continue;
                }
                batch.records.push_back(store::LogRecord{.kind = store::LogKind::kLog,
                                                         .time_ns = frame.time_ns,
                                                         .level = frame.level,
                                                         .sender = settings_.service,
                                                         .message = std::string{frame.text},
                                                         .node = settings_.node,
                                                         .source = std::string{frame.source},
                                                         .seq = frame.seq});
                bytes += frame.size;
                cursor_ = Cursor{
                    .segment = segment.number, .offset = offset + consumed, .seq = frame.seq};
                if (batch.records.size() >= settings_.max_batch_lines ||
                    bytes >= settings_.max_batch_bytes) {
                    return batch;
                }
            }
            offset += consumed;
            if (decoded == Decoded::kShort && consumed > 0 && got == data.size() &&
                offset < segment.bytes) {
                continue;  // the frame goes on in the next chunk
            }
            if (offset < segment.bytes) {
                // Only whole frames are counted in `bytes`: the file was changed under the
                // shipper. Its rest is skipped (a gap the next batch reports), and new lines go
                // to a new file.
                const auto where = fmt::format("{}:{}", segment.path, offset);
                if (bad_frame_logged_ != where) {
                    bad_frame_logged_ = where;
                    core::logger("ship")->error(
                        "the log buffer {} is unreadable from byte {} on: its {} bytes there are "
                        "skipped",
                        segment.path, offset, segment.bytes - offset);
                }
                std::lock_guard lock{mu_};
                if (!segments_.empty() && segments_.back().number == segment.number) {
                    seal_active_ = true;
                }
            }
            break;
        }
    }
    return batch;
}

core::Result<void> Shipper::save_checkpoint(bool durable) {
    std::lock_guard saving{checkpoint_mu_};
    std::int64_t acked = 0;
    std::uint64_t drops = 0;
    {
        std::lock_guard lock{mu_};
        acked = acked_seq_;
        drops = unreported_drops_;
    }
    auto saved =
        replace_file(settings_.dir, "checkpoint", fmt::format("{} {}\n", acked, drops), durable);
    auto log = core::logger("ship");
    if (!saved) {
        if (!checkpoint_failing_) {
            log->warn("{}: acknowledged lines stay in the buffer until it can be saved",
                      saved.error().message);
        }
        checkpoint_failing_ = true;
        return saved;
    }
    if (checkpoint_failing_) {
        log->info("{}/checkpoint is saved again", settings_.dir);
    }
    checkpoint_failing_ = false;
    std::lock_guard lock{mu_};
    saved_drops_ = drops;
    return {};
}

void Shipper::send_loop() {
    core::name_this_thread("ship-send");
    auto log = core::logger("ship");
    auto backoff = settings_.min_backoff;
    bool retrying = false;
    const auto batch_lines = static_cast<std::int64_t>(settings_.max_batch_lines);
    while (true) {
        std::int64_t after = 0;
        std::int64_t upto = 0;
        {
            std::unique_lock lock{mu_};
            wake_sender_.wait(lock, [&] { return stopping_ || synced_seq_ > acked_seq_; });
            if (stopping_) {
                return;
            }
            // A partial batch waits a little for company: fewer, larger requests. A retry goes
            // at once, its backoff was the wait.
            auto full = [&] { return stopping_ || synced_seq_ - acked_seq_ >= batch_lines; };
            if (!retrying && !full()) {
                wake_sender_.wait_for(lock, settings_.linger, full);
                if (stopping_) {
                    return;
                }
            }
            after = acked_seq_;
            upto = synced_seq_;
            // From the read on, not only the send: the cap must not drop (and count) lines this
            // batch is about to hold. Narrowed to the batch once it is read.
            in_flight_to_ = upto;
        }
        auto batch = read_batch(after, upto);
        std::vector<std::string> doomed;  // files to remove once mu_ is released
        if (!batch || batch->records.empty()) {
            // Unreadable, or nothing synced is left past `after` (the cap took it; the gap goes
            // with the next batch): look again after the next sync, or the backoff.
            std::unique_lock lock{mu_};
            in_flight_to_ = 0;
            doomed = enforce_cap();
            auto wait = settings_.linger;
            if (!batch) {
                stats_.last_error = batch.error().message;
                wait = jittered(backoff);
                backoff = std::min(backoff * 2, settings_.max_backoff);
            }
            lock.unlock();
            remove_files(doomed);
            if (!batch) {
                log->warn("{}: reading again in about {}", batch.error().message,
                          core::format_duration(wait));
            }
            lock.lock();
            wake_sender_.wait_for(lock, wait,
                                  [&] { return stopping_ || (batch && synced_seq_ > upto); });
            continue;
        }
        const auto first = batch->records.front().seq;
        const auto last = batch->records.back().seq;
        const auto gap = static_cast<std::uint64_t>(first - after - 1);
        std::uint64_t carried = 0;
        {
            std::lock_guard lock{mu_};
            in_flight_to_ = last;
            carried = unreported_drops_;
            batch->dropped = carried + gap;
            doomed = enforce_cap();  // what the read held back beyond the batch
        }
        remove_files(doomed);

        auto sent = send_(*batch);

        // serve refusing the batch itself (not being away) is not fixed by sending it again:
        // its lines are counted as dropped so the rest can go.
        const bool give_up = !sent && sent.error().code == core::ErrorCode::kInvalidArgument;
        bool prune = false;
        {
            std::lock_guard lock{mu_};
            in_flight_to_ = 0;
            if (sent || give_up) {
                acked_seq_ = last;
                stats_.acked_seq = last;
                if (sent) {
                    unreported_drops_ -= std::min(unreported_drops_, carried);
                    stats_.shipped += batch->records.size();
                    stats_.last_error.clear();
                } else {
                    // serve took none of it, the drops it carried included: they go with the
                    // next batch, the gap as a count now that the numbers move past it.
                    unreported_drops_ += gap;
                    stats_.dropped += batch->records.size();
                    stats_.last_error = sent.error().message;
                }
                prune = segments_.size() > 1 && segments_.front().last_seq <= acked_seq_;
            } else {
                ++stats_.sends_failed;
                stats_.last_error = sent.error().message;
            }
            doomed = enforce_cap();  // what the send held back
        }
        remove_files(doomed);
        if (!sent && !give_up) {
            log->debug("shipping to serve failed, again in about {}: {}",
                       core::format_duration(backoff), sent.error().message);
            retrying = true;
            std::unique_lock lock{mu_};
            wake_sender_.wait_for(lock, jittered(backoff), [&] { return stopping_; });
            backoff = std::min(backoff * 2, settings_.max_backoff);
            continue;
        }
        if (give_up) {
            log->error("serve refused {} lines of stream {}, which are dropped: {}",
                       batch->records.size(), batch->stream, sent.error().message);
        }
        retrying = false;
        backoff = settings_.min_backoff;
        // Files serve has every line of go (but the one still written to) once the checkpoint
        // on disk says so: a file gone before it would look, at the next start, like lines the
        // cap dropped. Otherwise the checkpoint need not survive a power loss: an older one only
        // sends lines again, which serve skips.
        if (!save_checkpoint(prune) || !prune) {
            continue;
        }
        doomed.clear();
        {
            std::lock_guard lock{mu_};
            while (segments_.size() > 1 && segments_.front().last_seq <= acked_seq_) {
                stats_.buffered_bytes -= segments_.front().bytes;
                doomed.push_back(segments_.front().path);
                segments_.pop_front();
            }
        }
        remove_files(doomed);
    }
}

int level_of_line(std::string_view text) {
    static constexpr std::pair<std::string_view, int> kWords[] = {
        {"emerg", 0}, {"alert", 1}, {"crit", 2},  {"critical", 2}, {"fatal", 2},   {"panic", 2},
        {"error", 3}, {"err", 3},   {"eror", 3},  {"warn", 4},     {"warning", 4}, {"notice", 5},
        {"info", 6},  {"inf", 6},   {"debug", 7}, {"dbug", 7},     {"trace", 7},   {"trce", 7}};
    // A word is a run of letters, digits and '_': "error_code" and "info2" are not levels.
    auto in_word = [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
    };
    text = text.substr(0, 64);
    std::size_t at = 0;
    while (at < text.size()) {
        while (at < text.size() && !in_word(text[at])) {
            ++at;
        }
        std::size_t end = at;
        while (end < text.size() && in_word(text[end])) {
            ++end;
        }
        if (end - at >= 3 && end - at <= 8) {
            std::array<char, 8> word{};
            for (std::size_t i = at; i < end; ++i) {
                word[i - at] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
            }
            const std::string_view lower{word.data(), end - at};
            for (const auto& [name, level] : kWords) {
                if (lower == name) {
                    return level;
                }
            }
        }
        at = end;
    }
    return 6;
}

}  // namespace aviary::logs
