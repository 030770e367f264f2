#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "core/core.hpp"

namespace aviary::core {
namespace {

constexpr std::string_view kTextPattern = "%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %n: %v";
constexpr std::string_view kJsonPattern =
    R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","component":"%n","msg":"%v"})";

struct LogState {
    std::mutex mu;
    spdlog::level::level_enum level = spdlog::level::info;
    std::string pattern{kTextPattern};
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
    auto log = spdlog::stderr_color_mt(name);
    log->set_level(s.level);
    log->set_pattern(s.pattern, spdlog::pattern_time_type::utc);
    return log;
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
