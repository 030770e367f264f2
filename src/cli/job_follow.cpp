#include "cli/job_follow.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>

#include "cli/render.hpp"

namespace aviary::cli {
namespace json = boost::json;

namespace {

using SteadyClock = std::chrono::steady_clock;

/// How often the progress line asks the server where the job is.
constexpr core::Millis kPollInterval{250};
constexpr core::Millis kPollTimeout{std::chrono::seconds{5}};
/// One connection's deadline (net's timeout covers the whole exchange); a job that runs
/// longer is followed on a new connection from the last line seen.
constexpr core::Millis kStreamTimeout{std::chrono::hours{1}};
/// How long a lost stream is retried without a word from the server (a serve restart takes
/// seconds) before the wait is given up as unreachable.
constexpr core::Millis kReconnectFor{std::chrono::minutes{1}};
constexpr core::Millis kFirstBackoff{250};
constexpr core::Millis kMaxBackoff{std::chrono::seconds{2}};

/// The progress line on stderr, and every write to the terminal while it shows: an output
/// line must not land in the middle of it. The streaming thread prints through it while the
/// main thread redraws it.
class ProgressLine {
public:
    explicit ProgressLine(bool wanted) : enabled_(wanted && isatty(STDERR_FILENO) == 1) {}
    ~ProgressLine() { clear(); }
    ProgressLine(const ProgressLine&) = delete;
    ProgressLine& operator=(const ProgressLine&) = delete;

    bool enabled() const { return enabled_; }

    void show(std::string text) {
        std::lock_guard lock{mutex_};
        shown_ = std::move(text);
        std::fprintf(stderr, "\r\033[K%s", shown_.c_str());
        std::fflush(stderr);
    }

    /// Prints `text` on stdout above the progress line.
    void print(const std::string& text) {
        std::lock_guard lock{mutex_};
        const bool showing = enabled_ && !shown_.empty();
        if (showing) {
            std::fputs("\r\033[K", stderr);
        }
        std::fputs(text.c_str(), stdout);
        std::fflush(stdout);
        if (showing) {
            std::fputs(shown_.c_str(), stderr);
            std::fflush(stderr);
        }
    }

    void clear() {
        std::lock_guard lock{mutex_};
        if (enabled_ && !shown_.empty()) {
            std::fputs("\r\033[K", stderr);  // leave the terminal as it was for what follows
            std::fflush(stderr);
            shown_.clear();
        }
    }

private:
    std::mutex mutex_;
    bool enabled_;
    std::string shown_;
};

std::string member_text(const json::object& object, std::string_view key) {
    const auto* value = object.if_contains(key);
    return value != nullptr ? text_of(*value) : std::string{};
}

core::Millis since(const json::value& time, core::TimePoint at) {
    auto parsed = core::parse_time(text_of(time));
    return parsed && *parsed < at ? at - *parsed : core::Millis{0};
}

/// "queued, position 2, 3.1s", "step 2/3 wait height-advancing, 4.2s",
/// "cancelling: step 1/1 run, 9.0s".
std::string progress_text(const json::value& job, core::TimePoint at) {
    const auto state = text_of(field(job, "state"));
    if (state == "queued") {
        const auto position = integer_of(field(job, "position"));
        return fmt::format("queued{}, {}",
                           position > 1 ? fmt::format(", position {}", position) : "",
                           elapsed_text(since(field(job, "created_at"), at)));
    }
    auto text =
        fmt::format("step {}/{}", integer_of(field(job, "step")), integer_of(field(job, "steps")));
    if (auto name = text_of(field(job, "step_name")); !name.empty()) {
        text += " " + name;
    }
    text += ", " + elapsed_text(since(field(job, "started_at"), at));
    return state == "running" ? text : state + ": " + text;
}

/// The lines of job `id` after `after_seq`, to `on_line`, until the stream's last line says
/// the job ended. A stream that drops is resumed from the last line seen; lines already seen
/// are skipped whether the server counts `from` inclusively or not.
Outcome<JobEnd> stream_output(const Context& context,
                              const std::string& id,
                              std::int64_t after_seq,
                              const std::function<void(const json::object&)>& on_line) {
    auto last_heard = SteadyClock::now();
    auto backoff = kFirstBackoff;
    for (;;) {
        std::optional<JobEnd> end;
        std::optional<Failure> refused;
        bool heard = false;
        auto on_object = [&](const json::object& object) {
            heard = true;
            if (const auto* finished = object.if_contains("finished");
                finished != nullptr && finished->is_bool() && finished->get_bool()) {
                end = JobEnd{member_text(object, "state"), member_text(object, "error")};
                return;
            }
            if (const auto* error = object.if_contains("error"); error != nullptr) {
                refused = refusal(*error);  // the server gave up on the stream, and says why
                return;
            }
            const auto* seq = object.if_contains("seq");
            if (seq == nullptr || integer_of(*seq) <= after_seq) {
                return;  // a heartbeat, or a line shown before a reconnect
            }
            after_seq = integer_of(*seq);
            on_line(object);
        };
        auto path = fmt::format("/api/v1/jobs/{}/output?follow=1&from={}", encode(id), after_seq);
        auto streamed = context.client.stream(path, kStreamTimeout, on_object);
        if (end) {
            return *end;
        }
        if (refused) {
            return *refused;
        }
        if (!streamed && streamed.failure().http_status != 0) {
            return streamed.failure();  // the server refused: an unknown job, no permission
        }
        if (heard) {
            last_heard = SteadyClock::now();
            backoff = kFirstBackoff;
        }
        if (SteadyClock::now() - last_heard > kReconnectFor) {
            if (!streamed) {
                return streamed.failure();
            }
            return Failure{kExitUnreachable,
                           fmt::format("lost job {}'s output stream and could not resume it", id)};
        }
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, kMaxBackoff);
    }
}

}  // namespace

Outcome<JobEnd> follow_job(const Context& context,
                           const std::string& id,
                           const FollowOptions& options) {
    ProgressLine progress{options.progress};
    auto on_line = [&](const json::object& line) {
        if (options.print_lines) {
            progress.print(output_line_text(context, line) + "\n");
        }
    };
    if (!progress.enabled()) {
        return stream_output(context, id, options.after_seq, on_line);
    }
    // The stream says nothing while a step runs quietly, so the progress line is kept fresh
    // here, on its own clock, while another thread reads the stream.
    std::mutex mutex;
    std::condition_variable ended;
    std::optional<Outcome<JobEnd>> end;
    std::thread streamer{[&] {
        auto outcome = stream_output(context, id, options.after_seq, on_line);
        std::lock_guard lock{mutex};
        end.emplace(std::move(outcome));
        ended.notify_all();
    }};
    const std::string path = "/api/v1/jobs/" + encode(id);
    std::unique_lock lock{mutex};
    while (!end) {
        lock.unlock();
        auto job = context.client.call("GET", path, std::nullopt, kPollTimeout);
        if (job && !job->json.is_null()) {
            progress.show(progress_text(job->json, now()));
        }
        lock.lock();
        ended.wait_for(lock, kPollInterval, [&] { return end.has_value(); });
    }
    lock.unlock();
    streamer.join();
    progress.clear();
    return std::move(*end);
}

int wait_for_job(const Context& context, const std::string& id, bool print_lines) {
    auto end = follow_job(context, id, FollowOptions{.print_lines = print_lines, .progress = true});
    if (!end) {
        return report(end.failure());
    }
    // The finished job, for --json and for what it ran and how long it took.
    auto job = context.client.call("GET", "/api/v1/jobs/" + encode(id));
    if (context.json) {
        if (!job) {
            return report(job.failure());
        }
        print_json_text(job->body);
        return job_exit_code(end->state);
    }
    std::string about;
    if (job) {
        const auto& got = job->json;
        about =
            fmt::format(" ({} on {}", text_of(field(got, "action")), text_of(field(got, "node")));
        auto started = core::parse_time(text_of(field(got, "started_at")));
        auto finished = core::parse_time(text_of(field(got, "finished_at")));
        if (started && finished) {
            about += ", " + elapsed_text(std::max(core::Millis{0}, *finished - *started));
        }
        about += ")";
    }
    if (end->state == "succeeded") {
        std::printf("job %s succeeded%s\n", id.c_str(), about.c_str());
    } else {
        auto state = end->state == "timed_out" ? std::string{"timed out"} : end->state;
        std::fprintf(stderr, "aviary: job %s %s%s%s%s\n", id.c_str(), state.c_str(), about.c_str(),
                     end->error.empty() ? "" : ": ", end->error.c_str());
    }
    return job_exit_code(end->state);
}

int job_exit_code(std::string_view state) {
    if (state == "succeeded") {
        return kExitOk;
    }
    if (state == "timed_out") {
        return kExitTimeout;
    }
    if (state == "cancelled") {
        return kExitCancelled;
    }
    return kExitRefused;  // failed
}

std::string output_line_text(const Context& context, const json::value& line) {
    if (context.json) {
        return json::serialize(line);
    }
    // "2026-11-22T12:00:03.123Z" -> "12:00:03"
    auto at = text_of(field(line, "at"));
    if (at.size() >= 19 && at[10] == 'T') {
        at = at.substr(11, 8);
    }
    return fmt::format("{} {} {}", at, text_of(field(line, "stream")),
                       text_of(field(line, "text")));
}

std::string elapsed_text(core::Millis elapsed) {
    using namespace std::chrono;
    if (elapsed < minutes{1}) {
        return fmt::format("{:.1f}s", static_cast<double>(elapsed.count()) / 1000.0);
    }
    const auto total = duration_cast<seconds>(elapsed).count();
    if (elapsed < hours{1}) {
        return fmt::format("{}m{:02}s", total / 60, total % 60);
    }
    if (elapsed < hours{24}) {
        return fmt::format("{}h{:02}m", total / 3600, total % 3600 / 60);
    }
    return fmt::format("{}d{}h", total / 86400, total % 86400 / 3600);
}

std::int64_t integer_of(const json::value& value) {
    if (value.is_int64()) {
        return value.get_int64();
    }
    if (value.is_uint64()) {
        return static_cast<std::int64_t>(value.get_uint64());
    }
    return value.is_double() ? static_cast<std::int64_t>(value.get_double()) : 0;
}

}  // namespace aviary::cli
