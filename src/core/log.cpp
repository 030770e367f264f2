#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <thread>

#include "core/core.hpp"

namespace aviary::core {
namespace {

constexpr std::string_view kTextPattern = "%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %n: %v";
constexpr std::string_view kJsonPattern =
    R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","component":"%n","msg":"%v"})";

/// stderr when it is not a terminal (a service's log file or journal): lines gather in memory
/// and are written together, at most kFlushAfter after the first of them, at once when they
/// reach kFlushBytes, and at once for a warning or an error (and everything before it). A
/// write per line under one lock, from every thread of a busy server, cost more CPU than the
/// request it logged (docs/architecture.md, "Logs").
class BufferedStderrSink final : public spdlog::sinks::base_sink<std::mutex> {
public:
    static constexpr std::chrono::milliseconds kFlushAfter{100};
    static constexpr std::size_t kFlushBytes = 64 * 1024;

    BufferedStderrSink()
        : flusher_([this](std::stop_token stop) {
              name_this_thread("log");
              run(stop);
          }) {}
    ~BufferedStderrSink() override {
        {
            // Under the lock, so the flusher cannot miss it between its check and its wait.
            std::lock_guard lock{mutex_};
            flusher_.request_stop();
        }
        wake_.notify_all();
        flusher_.join();
        std::lock_guard lock{mutex_};
        write_out();
    }
    BufferedStderrSink(const BufferedStderrSink&) = delete;
    BufferedStderrSink& operator=(const BufferedStderrSink&) = delete;

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        bool was_empty = pending_.size() == 0;
        formatter_->format(msg, pending_);
        if (msg.level >= spdlog::level::warn || pending_.size() >= kFlushBytes) {
            write_out();
        } else if (was_empty) {
            wake_.notify_one();
        }
    }
    void flush_() override { write_out(); }

private:
    /// With mutex_ held.
    void write_out() {
        const char* data = pending_.data();
        std::size_t left = pending_.size();
        while (left > 0) {
            ssize_t wrote = ::write(STDERR_FILENO, data, left);
            if (wrote < 0 && errno == EINTR) {
                continue;
            }
            if (wrote <= 0) {
                break;  // nowhere to log to: drop the lines rather than spin
            }
            data += wrote;
            left -= static_cast<std::size_t>(wrote);
        }
        pending_.clear();
    }

    void run(const std::stop_token& stop) {
        std::unique_lock lock{mutex_};
        while (!stop.stop_requested()) {
            wake_.wait(lock, [&] { return pending_.size() > 0 || stop.stop_requested(); });
            // Lines arrived: let more gather for a while, then write them together.
            wake_.wait_for(lock, kFlushAfter, [&] { return stop.stop_requested(); });
            write_out();
        }
    }

    spdlog::memory_buf_t pending_;
    std::condition_variable wake_;
    std::jthread flusher_;
};

struct LogState {
    std::mutex mu;
    spdlog::level::level_enum level = spdlog::level::info;
    std::string pattern{kTextPattern};
    /// Every logger shares one sink, so lines keep their order; a terminal gets colours and a
    /// write per line.
    spdlog::sink_ptr sink;
};

LogState& state() {
    static LogState s;
    return s;
}

}  // namespace

std::shared_ptr<spdlog::logger> logger(std::string_view component) {
    auto& s = state();
    std::lock_guard lock{s.mu};
    std::string name{component};
    if (auto existing = spdlog::get(name)) {
        return existing;
    }
    // Logs go to stderr: stdout belongs to command output (CLI tables, --json).
    if (!s.sink) {
        if (::isatty(STDERR_FILENO) != 0) {
            s.sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
        } else {
            s.sink = std::make_shared<BufferedStderrSink>();
        }
    }
    auto log = std::make_shared<spdlog::logger>(name, s.sink);
    log->set_level(s.level);
    log->set_pattern(s.pattern, spdlog::pattern_time_type::utc);
    spdlog::register_logger(log);
    return log;
}

void flush_logs() {
    spdlog::sink_ptr sink;
    {
        std::lock_guard lock{state().mu};
        sink = state().sink;
    }
    if (sink) {
        sink->flush();
    }
}

Result<void> configure_logging(std::string_view level, std::string_view format) {
    auto parsed = spdlog::level::from_str(std::string{level});
    if (parsed == spdlog::level::off && level != "off") {
        return Error{
            ErrorCode::kInvalidArgument,
            fmt::format("unknown log level \"{}\" (trace, debug, info, warn, error, off)", level)};
    }
    if (format != "text" && format != "json") {
        return Error{ErrorCode::kInvalidArgument,
                     fmt::format("unknown log format \"{}\" (text, json)", format)};
    }
    auto& s = state();
    std::lock_guard lock{s.mu};
    s.level = parsed;
    s.pattern = std::string{format == "json" ? kJsonPattern : kTextPattern};
    spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& log) {
        log->set_level(s.level);
        log->set_pattern(s.pattern, spdlog::pattern_time_type::utc);
    });
    return {};
}

}  // namespace aviary::core
