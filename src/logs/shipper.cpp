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

void encode(std::string& out,
            std::int64_t seq,
            std::int64_t time_ns,
            int level,
            std::string_view source,
            std::string_view text) {
    std::string payload;
    payload.reserve(kFixed + source.size() + text.size());
    put<std::int64_t>(payload, seq);
    put<std::int64_t>(payload, time_ns);
    put<std::int32_t>(payload, level);
    put<std::uint16_t>(payload, static_cast<std::uint16_t>(source.size()));
    payload.append(source);
    payload.append(text);
    put<std::uint32_t>(out, static_cast<std::uint32_t>(payload.size()));
    put<std::uint64_t>(out, fnv1a(payload));
    out.append(payload);
}

struct Frame {
    std::int64_t seq = 0;
    std::int64_t time_ns = 0;
    int level = 6;
    std::string_view source;
    std::string_view text;
    std::size_t size = 0;  ///< the frame's bytes, header included
};

/// The frame at the start of `data`; nullopt when it is cut short or its checksum is wrong.
std::optional<Frame> decode(std::string_view data) {
    if (data.size() < kHeader) {
        return std::nullopt;
    }
    const auto length = get<std::uint32_t>(data.data());
    const auto sum = get<std::uint64_t>(data.data() + 4);
    if (length < kFixed || data.size() - kHeader < length) {
        return std::nullopt;
    }
    const auto payload = data.substr(kHeader, length);
    if (fnv1a(payload) != sum) {
        return std::nullopt;
    }
    Frame f;
    f.seq = get<std::int64_t>(payload.data());
    f.time_ns = get<std::int64_t>(payload.data() + 8);
    f.level = get<std::int32_t>(payload.data() + 16);
    const auto source_size = get<std::uint16_t>(payload.data() + 20);
    if (kFixed + source_size > payload.size()) {
        return std::nullopt;
    }
    f.source = payload.substr(kFixed, source_size);
    f.text = payload.substr(kFixed + source_size);
    f.size = kHeader + length;
    return f;
}

core::Result<std::string> read_file(const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    if (!in) {
        return core::Error{core::ErrorCode::kNotFound, fmt::format("cannot open {}", path)};
    }
    std::string data{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
    return data;
}

/// Writes `text` to `path` through a temporary file and a rename: a crash leaves the old file
/// or the new one, never half of either.
core::Result<void> replace_file(const std::string& path, std::string_view text) {
    const std::string temp = path + ".tmp";
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("cannot write {}: {}", temp, std::strerror(errno))};
    }
    const bool wrote = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (!wrote || ::rename(temp.c_str(), path.c_str()) != 0) {
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("cannot write {}: {}", path, std::strerror(errno))};
    }
    return {};
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

std::string segment_path(const std::string& dir, std::uint64_t number) {
    return fmt::format("{}/{:012}{}", dir, number, kSuffix);
}

core::Millis jittered(core::Millis backoff) {
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
    std::string kept;
    if (text.size() > kMaxLineBytes) {
        kept = fmt::format("{} [cut: {} more bytes]", text.substr(0, kMaxLineBytes),
                           text.size() - kMaxLineBytes);
        text = kept;
    }
    {
        std::lock_guard lock{mu_};
        ++stats_.offered;
        if (!started_ || stopping_) {
            ++stats_.dropped;
            return;
        }
        if (pending_.size() >= settings_.max_pending_lines) {
            // The disk cannot keep up: this line goes, counted, rather than holding the node.
            ++stats_.dropped;
            ++unreported_drops_;
            return;
        }
        pending_.push_back(Line{time_ns, std::string{source}, level,
                                kept.empty() ? std::string{text} : std::move(kept)});
    }
    wake_writer_.notify_one();
}

core::Result<void> Shipper::recover() {
    std::error_code ec;
    fs::create_directories(settings_.dir, ec);
    if (ec) {
        return core::Error{
            core::ErrorCode::kStorage,
            fmt::format("cannot make the log buffer dir {}: {}", settings_.dir, ec.message())};
    }
    // The stream's id is made once, with the buffer.
    const std::string id_path = settings_.dir + "/stream";
    std::string id;
    if (auto read = read_file(id_path); read && !read->empty()) {
        id = read->substr(0, read->find('\n'));
    } else {
        id = core::new_id();
        if (auto saved = replace_file(id_path, id + "\n"); !saved) {
            return saved;
        }
    }
    stream_ = settings_.node + "@" + id;
    // "ACKED DROPPED": what serve has, and the drops it has not been told of yet.
    if (auto checkpoint = read_file(settings_.dir + "/checkpoint"); checkpoint) {
        std::int64_t acked = 0;
        std::uint64_t dropped = 0;
        const char* at = checkpoint->data();
        const char* end = at + checkpoint->size();
        auto parsed = std::from_chars(at, end, acked);
        if (parsed.ec == std::errc{} && parsed.ptr < end && *parsed.ptr == ' ') {
            std::from_chars(parsed.ptr + 1, end, dropped);
        }
        acked_seq_ = std::max<std::int64_t>(acked, 0);
        unreported_drops_ = dropped;
    }
    std::vector<std::uint64_t> numbers;
    for (const auto& entry : fs::directory_iterator{settings_.dir, ec}) {
        const auto name = entry.path().filename().string();
        std::uint64_t number = 0;
        if (name.size() > kSuffix.size() && name.ends_with(kSuffix) &&
            std::from_chars(name.data(), name.data() + name.size() - kSuffix.size(), number).ec ==
                std::errc{}) {
            numbers.push_back(number);
        }
    }
    std::sort(numbers.begin(), numbers.end());
    std::int64_t highest = acked_seq_;
    for (auto number : numbers) {
        Segment segment{.number = number, .path = segment_path(settings_.dir, number)};
        auto data = read_file(segment.path);
        if (!data) {
            return data.error();
        }
        std::string_view rest{*data};
        while (auto frame = decode(rest)) {
            if (segment.first_seq == 0) {
                segment.first_seq = frame->seq;
            }
            segment.last_seq = frame->seq;
            segment.bytes += frame->size;
            rest.remove_prefix(frame->size);
        }
        if (!rest.empty()) {
            // A write the crash cut short: what it held was never numbered for serve.
            stats_.torn_bytes += rest.size();
            if (::truncate(segment.path.c_str(), static_cast<off_t>(segment.bytes)) != 0) {
                return core::Error{core::ErrorCode::kStorage,
                                   fmt::format("cannot cut the torn end of {}: {}", segment.path,
                                               std::strerror(errno))};
            }
        }
        if (segment.last_seq == 0 || segment.last_seq <= acked_seq_) {
            fs::remove(segment.path, ec);  // empty, or serve has all of it
            continue;
        }
        highest = std::max(highest, segment.last_seq);
        stats_.buffered_bytes += segment.bytes;
        segments_.push_back(std::move(segment));
    }
    next_seq_ = highest + 1;
    written_seq_ = highest;
    stats_.acked_seq = acked_seq_;
    return {};
}

core::Result<void> Shipper::start() {
    if (settings_.segment_bytes * 2 > settings_.max_buffer_bytes) {
        settings_.segment_bytes = std::max<std::size_t>(settings_.max_buffer_bytes / 2, 1);
    }
    if (auto recovered = recover(); !recovered) {
        return recovered;
    }
    {
        std::lock_guard lock{mu_};
        started_ = true;
    }
    writer_ = std::thread{[this] { write_loop(); }};
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
    wake_sender_.notify_all();
    writer_.join();
    sender_.join();
    if (active_fd_ >= 0) {
        ::close(active_fd_);
        active_fd_ = -1;
    }
}

core::Result<void> Shipper::append(std::vector<Line>& lines) {
    // Files are cut at segment_bytes, mid-batch if need be: the cap drops whole files, so none
    // may grow much past its size.
    std::size_t next = 0;
    while (next < lines.size()) {
        std::string path;
        std::uint64_t room = 0;
        bool rotate = false;
        {
            std::lock_guard lock{mu_};
            rotate = segments_.empty() || segments_.back().bytes >= settings_.segment_bytes;
            if (rotate) {
                const auto number = segments_.empty() ? 1 : segments_.back().number + 1;
                segments_.push_back(
                    Segment{.number = number, .path = segment_path(settings_.dir, number)});
            }
            path = segments_.back().path;
            room = settings_.segment_bytes - segments_.back().bytes;
        }
        if (rotate && active_fd_ >= 0) {
            ::fdatasync(active_fd_);  // the full one is done
            ::close(active_fd_);
            active_fd_ = -1;
        }
        if (active_fd_ < 0) {
            active_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (active_fd_ < 0) {
                return core::Error{
                    core::ErrorCode::kStorage,
                    fmt::format("cannot open the log buffer {}: {}", path, std::strerror(errno))};
            }
        }
        std::string out;
        std::int64_t seq = next_seq_;
        const std::size_t first = next;
        while (next < lines.size() && (next == first || out.size() < room)) {
            const auto& line = lines[next++];
            encode(out, seq++, line.time_ns, line.level, line.source, line.text);
        }
        if (!write_all(active_fd_, out)) {
            const auto why = std::strerror(errno);
            // What part went out is cut on the next start (its checksum fails). The lines not
            // written are the caller's to count.
            lines.erase(lines.begin(), lines.begin() + static_cast<std::ptrdiff_t>(first));
            return core::Error{core::ErrorCode::kStorage,
                               fmt::format("cannot write the log buffer {}: {}", path, why)};
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
    return {};
}

void Shipper::enforce_cap() {
    while (stats_.buffered_bytes > settings_.max_buffer_bytes && segments_.size() > 1) {
        auto& oldest = segments_.front();
        if (in_flight_to_ != 0 && oldest.first_seq <= in_flight_to_) {
            return;  // being sent: it goes once answered (the cap is passed by one batch at most)
        }
        if (oldest.last_seq > acked_seq_) {
            const auto lost = static_cast<std::uint64_t>(
                oldest.last_seq - std::max(oldest.first_seq - 1, acked_seq_));
            stats_.dropped += lost;
            unreported_drops_ += lost;
        }
        std::error_code ec;
        fs::remove(oldest.path, ec);
        stats_.buffered_bytes -= oldest.bytes;
        segments_.pop_front();
    }
}

void Shipper::write_loop() {
    auto log = core::logger("ship");
    bool dirty = false;
    auto synced_at = std::chrono::steady_clock::now();
    while (true) {
        std::vector<Line> lines;
        bool stop = false;
        {
            std::unique_lock lock{mu_};
            auto ready = [&] { return stopping_ || !pending_.empty(); };
            if (dirty) {
                wake_writer_.wait_for(lock, settings_.linger, ready);
            } else {
                wake_writer_.wait(lock, ready);
            }
            lines.assign(std::make_move_iterator(pending_.begin()),
                         std::make_move_iterator(pending_.end()));
            pending_.clear();
            stop = stopping_;
        }
        if (!lines.empty()) {
            if (auto appended = append(lines); !appended) {
                log->error("{}: {} lines dropped", appended.error().message, lines.size());
                std::lock_guard lock{mu_};
                stats_.dropped += lines.size();
                unreported_drops_ += lines.size();
            } else {
                dirty = true;
            }
        }
        // kill -9 of the sidecar loses nothing written (the kernel has it); a power loss loses
        // at most the last `linger` of lines, as the sync runs that often while lines come.
        const auto now = std::chrono::steady_clock::now();
        if (dirty && active_fd_ >= 0 && (stop || now - synced_at >= settings_.linger)) {
            ::fdatasync(active_fd_);
            dirty = false;
            synced_at = now;
        }
        {
            std::lock_guard lock{mu_};
            enforce_cap();
        }
        wake_sender_.notify_one();
        if (stop) {
            std::lock_guard lock{mu_};
            if (pending_.empty()) {
                return;
            }
        }
    }
}

core::Result<Shipment> Shipper::read_batch(std::int64_t after_seq) {
    std::vector<Segment> wanted;
    {
        std::lock_guard lock{mu_};
        for (const auto& segment : segments_) {
            if (segment.last_seq > after_seq) {
                wanted.push_back(segment);  // its bytes as of now: what is written and whole
            }
        }
    }
    Shipment batch{.stream = stream_};
    std::size_t bytes = 0;
    for (const auto& segment : wanted) {
        const int fd = ::open(segment.path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            continue;  // dropped by the cap since: counted there
        }
        std::string data(segment.bytes, '\0');
        std::size_t got = 0;
        while (got < data.size()) {
            const auto n =
                ::pread(fd, data.data() + got, data.size() - got, static_cast<off_t>(got));
            if (n <= 0) {
                if (n < 0 && errno == EINTR) {
                    continue;
                }
                break;
            }
            got += static_cast<std::size_t>(n);
        }
        ::close(fd);
        std::string_view rest{data.data(), got};
        while (auto frame = decode(rest)) {
            rest.remove_prefix(frame->size);
            if (frame->seq <= after_seq) {
                continue;
            }
            batch.records.push_back(store::LogRecord{.kind = store::LogKind::kLog,
                                                     .time_ns = frame->time_ns,
                                                     .level = frame->level,
                                                     .sender = settings_.service,
                                                     .message = std::string{frame->text},
                                                     .node = settings_.node,
                                                     .source = std::string{frame->source},
                                                     .seq = frame->seq});
            bytes += frame->size;
            if (batch.records.size() >= settings_.max_batch_lines ||
                bytes >= settings_.max_batch_bytes) {
                return batch;
            }
        }
    }
    return batch;
}

void Shipper::save_checkpoint() {
    std::int64_t acked = 0;
    std::uint64_t dropped = 0;
    {
        std::lock_guard lock{mu_};
        acked = acked_seq_;
        dropped = unreported_drops_;
    }
    // Not synced: a checkpoint lost to a power cut only sends lines again, which serve skips.
    if (auto saved =
            replace_file(settings_.dir + "/checkpoint", fmt::format("{} {}\n", acked, dropped));
        !saved) {
        core::logger("ship")->warn("{}", saved.error().message);
    }
}

void Shipper::send_loop() {
    auto log = core::logger("ship");
    auto backoff = settings_.min_backoff;
    while (true) {
        std::int64_t after = 0;
        {
            std::unique_lock lock{mu_};
            wake_sender_.wait(lock, [&] { return stopping_ || written_seq_ > acked_seq_; });
            if (stopping_) {
                return;
            }
            // A partial batch waits a little for company: fewer, larger requests.
            if (written_seq_ - acked_seq_ < static_cast<std::int64_t>(settings_.max_batch_lines)) {
                wake_sender_.wait_for(lock, settings_.linger, [&] { return stopping_; });
                if (stopping_) {
                    return;
                }
            }
            after = acked_seq_;
            // From the read on, not only the send: the cap must not drop (and count) lines this
            // batch is about to hold. Narrowed to the batch once it is read.
            in_flight_to_ = written_seq_;
        }
        auto batch = read_batch(after);
        if (!batch || batch->records.empty()) {
            // Nothing readable past `after` (the cap dropped it, or a new file is not written
            // yet): look again after a moment rather than spin.
            std::unique_lock lock{mu_};
            in_flight_to_ = 0;
            enforce_cap();
            wake_sender_.wait_for(lock, settings_.linger, [&] { return stopping_; });
            continue;
        }
        {
            std::lock_guard lock{mu_};
            in_flight_to_ = batch->records.back().seq;
            batch->dropped = unreported_drops_;
            enforce_cap();  // what the read held back beyond the batch
        }
        auto sent = send_(*batch);
        bool give_up = false;
        {
            std::lock_guard lock{mu_};
            in_flight_to_ = 0;
            // serve refusing the batch itself (not being away) is not fixed by sending it again:
            // its lines are counted as dropped so the rest can go.
            give_up = !sent && sent.error().code == core::ErrorCode::kInvalidArgument;
            if (sent || give_up) {
                acked_seq_ = batch->records.back().seq;
                stats_.acked_seq = acked_seq_;
                unreported_drops_ -= std::min(unreported_drops_, batch->dropped);
                if (sent) {
                    stats_.shipped += batch->records.size();
                    stats_.last_error.clear();
                } else {
                    stats_.dropped += batch->records.size();
                    stats_.last_error = sent.error().message;
                }
                // Files serve has every line of go, but the one still written to.
                while (segments_.size() > 1 && segments_.front().last_seq <= acked_seq_) {
                    std::error_code ec;
                    fs::remove(segments_.front().path, ec);
                    stats_.buffered_bytes -= segments_.front().bytes;
                    segments_.pop_front();
                }
            } else {
                ++stats_.sends_failed;
                stats_.last_error = sent.error().message;
            }
            enforce_cap();  // what the send held back
        }
        if (sent || give_up) {
            if (give_up) {
                log->error("serve refused {} lines of stream {}, which are dropped: {}",
                           batch->records.size(), batch->stream, sent.error().message);
            }
            save_checkpoint();
            backoff = settings_.min_backoff;
            continue;
        }
        log->debug("shipping to serve failed, again in about {}: {}",
                   core::format_duration(backoff), sent.error().message);
        std::unique_lock lock{mu_};
        wake_sender_.wait_for(lock, jittered(backoff), [&] { return stopping_; });
        backoff = std::min(backoff * 2, settings_.max_backoff);
    }
}

int level_of_line(std::string_view text) {
    static constexpr std::pair<std::string_view, int> kWords[] = {
        {"emerg", 0}, {"alert", 1}, {"crit", 2},  {"critical", 2}, {"fatal", 2},   {"panic", 2},
        {"error", 3}, {"err", 3},   {"eror", 3},  {"warn", 4},     {"warning", 4}, {"notice", 5},
        {"info", 6},  {"inf", 6},   {"debug", 7}, {"dbug", 7},     {"trace", 7},   {"trce", 7}};
    text = text.substr(0, 64);
    std::size_t at = 0;
    while (at < text.size()) {
        while (at < text.size() && std::isalpha(static_cast<unsigned char>(text[at])) == 0) {
            ++at;
        }
        std::size_t end = at;
        while (end < text.size() && std::isalpha(static_cast<unsigned char>(text[end])) != 0) {
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
