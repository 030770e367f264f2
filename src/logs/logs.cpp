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

Logs::Logs(const Settings& settings, store::LogStore& store, core::Clock& clock)
    : settings_(settings), store_(store), clock_(clock) {}

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
    auto sweep_kind = [&](store::LogKind kind, core::Millis window) -> core::Result<void> {
        if (window.count() <= 0) {
            return {};  // kept
        }
        const auto before = to_ns(now - window);
        // Bounded batches, each its own commit: uploads slip in between them.
        while (true) {
            auto gone = store_.remove_before(kind, before, settings_.retention_batch);
            if (!gone) {
                return gone.error();
            }
            removed += *gone;
            if (*gone < settings_.retention_batch) {
                return {};
            }
        }
    };
    if (auto logs = sweep_kind(store::LogKind::kLog, settings_.logs_window); !logs) {
        return logs.error();
    }
    if (auto notes = sweep_kind(store::LogKind::kNotification, settings_.notifications_window);
        !notes) {
        return notes.error();
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
