#include "logs/logs.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace aviary::logs {
namespace {

std::string_view field_of(store::LogKind kind) {
    return kind == store::LogKind::kLog ? "logs" : "notifications";
}

}  // namespace

std::int64_t to_ns(core::TimePoint t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

struct Logs::Compiled {
    std::regex pattern;
    std::string replacement;
};

Logs::Logs(const Settings& settings, store::LogStore& store, core::Clock& clock)
    : settings_(settings), store_(store), clock_(clock) {
    for (const auto& rule : settings_.redact) {
        // The config checked each pattern when it was loaded.
        redact_.push_back(
            Compiled{std::regex{rule.pattern, std::regex::ECMAScript}, rule.replacement});
    }
}

Logs::~Logs() {
    if (scheduler_ != nullptr) {
        scheduler_->cancel(task_);
    }
}

core::Result<std::vector<store::LogRecord>> Logs::upload(store::LogKind kind,
                                                         const std::string& scope,
                                                         std::vector<store::LogRecord> records) {
    const auto field = field_of(kind);
    if (records.size() > settings_.max_upload) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("{} holds {} entries, more than {} in one upload", field,
                                       records.size(), settings_.max_upload)};
    }
    for (std::size_t i = 0; i < records.size(); ++i) {
        auto& record = records[i];
        if (record.message.size() > settings_.max_message_bytes) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("{}[{}].message is {} bytes, more than {}", field, i,
                                           record.message.size(), settings_.max_message_bytes)};
        }
        if (record.sender.size() > settings_.max_sender_bytes) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("{}[{}].sender is {} bytes, more than {}", field, i,
                                           record.sender.size(), settings_.max_sender_bytes)};
        }
        record.kind = kind;
        record.scope = scope;
        // Before storage: what is stored is what every later reader sees.
        core::redactor().hide_secrets(record.message);
        for (const auto& rule : redact_) {
            record.message = std::regex_replace(record.message, rule.pattern, rule.replacement);
        }
    }
    return store_.append(std::move(records));
}

core::Result<Logs::Page> Logs::read(const Window& window) const {
    // One more than the bound: whether older records were left out.
    auto records = store_.query(store::LogQuery{.kind = window.kind,
                                                .scope = window.scope,
                                                .since_ns = to_ns(clock_.now() - window.window),
                                                .sender = window.sender,
                                                .max_level = window.max_level,
                                                .limit = settings_.max_results + 1,
                                                .max_bytes = settings_.max_read_bytes});
    if (!records) {
        return records.error();
    }
    Page page;
    std::size_t bytes = 0;
    for (auto& record : *records) {
        if (page.records.size() == settings_.max_results || bytes >= settings_.max_read_bytes) {
            page.truncated = true;
            break;
        }
        bytes += record.message.size() + record.sender.size();
        page.records.push_back(std::move(record));
    }
    return page;
}

core::Result<std::vector<store::LogRecord>> Logs::search(store::LogQuery query) const {
    query.limit = std::clamp<std::size_t>(query.limit, 1, settings_.max_results);
    query.max_bytes = settings_.max_read_bytes;
    return store_.query(query);
}

core::Result<std::vector<store::LogRecord>> Logs::follow(store::LogFollow follow) const {
    constexpr std::size_t kFollowBatch = 1000;
    follow.limit = std::clamp<std::size_t>(follow.limit, 1, kFollowBatch);
    return store_.after(follow);
}

core::Result<std::size_t> Logs::sweep(core::TimePoint now) {
    std::size_t removed = 0;
    // Bounded batches, each its own commit: uploads slip in between them.
    auto drain = [&](store::LogRemoval removal) -> core::Result<void> {
        removal.batch = settings_.retention_batch;
        while (true) {
            auto gone = store_.remove(removal);
            if (!gone) {
                return gone.error();
            }
            removed += *gone;
            if (*gone < settings_.retention_batch) {
                return {};
            }
        }
    };
    for (auto kind : {store::LogKind::kLog, store::LogKind::kNotification}) {
        // Each rule takes what no rule before it took; the kind's window takes the rest.
        std::vector<store::LogSelector> earlier;
        for (const auto& rule : settings_.retention) {
            if (rule.kind != kind) {
                continue;
            }
            auto ruled = drain(store::LogRemoval{.kind = kind,
                                                 .before_ns = to_ns(now - rule.window),
                                                 .match = rule.selector,
                                                 .unless = earlier});
            if (!ruled) {
                return ruled.error();
            }
            earlier.push_back(rule.selector);
        }
        const auto window =
            kind == store::LogKind::kLog ? settings_.logs_window : settings_.notifications_window;
        if (window.count() <= 0) {
            continue;  // kept
        }
        auto rest = drain(
            store::LogRemoval{.kind = kind, .before_ns = to_ns(now - window), .unless = earlier});
        if (!rest) {
            return rest.error();
        }
    }
    return removed;
}

void Logs::schedule(core::Scheduler& scheduler) {
    scheduler_ = &scheduler;
    task_ = scheduler.add(core::Scheduler::Task{
        .name = "log-retention",
        .interval = settings_.cleanup_interval,
        .jitter = 0.0,
        .run_once = [this](core::TimePoint now) -> std::optional<core::TimePoint> {
            auto removed = sweep(now);
            if (!removed) {
                core::logger("logs")->warn("log retention: {}", removed.error().message);
            } else if (*removed > 0) {
                core::logger("logs")->debug("log retention removed {} records", *removed);
            }
            return std::nullopt;
        },
        // Each instance keeps its own log database (docs/logs.md): each sweeps its own.
        .leader_only = false,
    });
}

}  // namespace aviary::logs
