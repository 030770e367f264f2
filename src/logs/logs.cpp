#include "logs/logs.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>

#include "core/regex.hpp"

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
    core::Regex pattern;
    std::string replacement;
};

Logs::Logs(const Settings& settings, store::LogStore& store, core::Clock& clock)
    : settings_(settings), store_(store), clock_(clock) {
    for (const auto& rule : settings_.redact) {
        // The config checked each pattern when it was loaded; one that does not compile now
        // (a test's settings) is a bug.
        auto compiled = core::Regex::compile(rule.pattern);
        AVIARY_ASSERT(compiled.has_value(), "a redaction pattern that does not compile");
        redact_.push_back(Compiled{std::move(*compiled), rule.replacement});
    }
}

Logs::~Logs() {
    if (scheduler_ != nullptr) {
        scheduler_->cancel(task_);
        if (events_task_) {
            scheduler_->cancel(*events_task_);
        }
    }
}

namespace {

constexpr std::string_view kEventsFeed = "events";
/// How long serve remembers a shipper stream's position after its last line: a batch sent again
/// later than this would be stored twice (docs/logs.md, "Shipping from sidecars").
constexpr auto kShipperStreamMemory = std::chrono::hours{24 * 7};
constexpr int kEventsPerCopy = 500;

int level_of(std::string_view kind) {
    if (kind == "alarm.firing" || kind == "alarm.reminder") {
        return 2;  // a canary's alarm: someone should look now
    }
    if (kind == "job.failed" || kind == "job.timed_out") {
        return 3;
    }
    for (auto lapsed : {"lease.expired", "lease.freed", "waiter.expired", "waiter.dropped",
                        "job.refused", "job.rescued", "job.cancelled"}) {
        if (kind == lapsed) {
            return 4;
        }
    }
    for (auto prefix : {"node.maintenance", "producer.", "queue.", "job.retrying", "node.removed",
                        "alarm.resolved", "silence."}) {
        if (kind.starts_with(prefix)) {
            return 5;
        }
    }
    return 6;
}

/// A string member of the event's JSON (its `after`, else its `before`), or "".
std::string member_of(const core::Event& event, std::string_view name) {
    for (const auto* text : {&event.after, &event.before}) {
        boost::system::error_code ec;
        auto value = boost::json::parse(*text, ec);
        if (ec || !value.is_object()) {
            continue;
        }
        if (const auto* member = value.as_object().if_contains(name);
            member != nullptr && member->is_string()) {
            return std::string{member->as_string()};
        }
    }
    return {};
}

}  // namespace

store::LogRecord notification_of(const core::Event& event) {
    std::string message = event.kind;
    if (!event.node.empty()) {
        message += " node=" + event.node;
    }
    const auto dot = event.kind.find('.');
    const std::string_view subject = std::string_view{event.kind}.substr(0, dot);
    if (subject == "job") {
        if (auto id = member_of(event, "id"); !id.empty()) {
            message += " job=" + id;
        }
        if (auto action = member_of(event, "action"); !action.empty()) {
            message += " action=" + action;
        }
    }
    if (subject == "alarm") {
        message += " alarm=" + member_of(event, "alarm");
        if (auto summary = member_of(event, "summary"); !summary.empty()) {
            message += ": " + summary;
        }
    }
    if (subject == "silence") {
        message += " matcher=" + member_of(event, "matcher") + " reason=\"" +
                   member_of(event, "reason") + "\"";
    }
    if (subject == "job" || subject == "lease" || subject == "waiter") {
        if (auto lease = member_of(event, "lease_id"); !lease.empty()) {
            message += " lease=" + lease;
        }
    }
    message += " actor=" + event.actor;
    return store::LogRecord{.kind = store::LogKind::kNotification,
                            .scope = "",
                            .time_ns = to_ns(event.at),
                            .level = level_of(event.kind),
                            .sender = "aviary",
                            .message = std::move(message)};
}

core::Result<std::size_t> Logs::copy_events(store::Store& events) {
    auto position = store_.feed_position(kEventsFeed);
    if (!position) {
        return position.error();
    }
    if (!*position) {
        // A new log database starts at the newest event: history stays in the audit trail.
        auto newest = events.events(store::EventQuery{.limit = 1});
        if (!newest) {
            return newest.error();
        }
        const std::int64_t through = newest->empty() ? 0 : newest->front().id;
        auto started = store_.append_from(kEventsFeed, std::nullopt, through, {});
        if (!started && started.error().code == core::ErrorCode::kBusy) {
            return std::size_t{0};
        }
        if (!started) {
            return started.error();
        }
        return std::size_t{0};
    }
    auto batch = events.events(store::EventQuery{.after_id = **position, .limit = kEventsPerCopy});
    if (!batch) {
        return batch.error();
    }
    if (batch->empty()) {
        return std::size_t{0};
    }
    std::vector<store::LogRecord> records;
    records.reserve(batch->size());
    for (const auto& event : *batch) {
        records.push_back(notification_of(event));
        core::redactor().hide_secrets(records.back().message);
    }
    auto stored = store_.append_from(kEventsFeed, **position, batch->back().id, std::move(records));
    if (!stored && stored.error().code == core::ErrorCode::kBusy) {
        return std::size_t{0};  // another instance copied them (a leader's hand-over)
    }
    if (!stored) {
        return stored.error();
    }
    if (on_copied_) {
        on_copied_(*stored);
    }
    return stored->size();
}

void Logs::schedule_events(core::Scheduler& scheduler, store::Store& events, OnCopied on_copied) {
    scheduler_ = &scheduler;
    on_copied_ = std::move(on_copied);
    events_task_ = scheduler.add(core::Scheduler::Task{
        .name = "event-notifications",
        .interval = std::chrono::seconds{1},
        .jitter = 0.0,
        .run_once = [this, &events](core::TimePoint) -> std::optional<core::TimePoint> {
            auto copied = copy_events(events);
            if (!copied) {
                core::logger("logs")->warn("copying events into notifications: {}",
                                           copied.error().message);
            }
            return std::nullopt;
        },
        // On SQLite each instance keeps its own log database and copies into it; on PostgreSQL
        // the leader copies into the shared one, the others hearing of it by notification.
        .leader_only = store_.shared(),
    });
}

core::Result<void> Logs::admit(store::LogKind kind,
                               const std::string& scope,
                               std::string_view field,
                               std::vector<store::LogRecord>& records) const {
    if (records.size() > settings_.max_upload) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("{} holds {} entries, more than {} in one upload", field,
                                       records.size(), settings_.max_upload)};
    }
    auto too_big = [&](std::size_t i, std::string_view what, std::size_t size, std::size_t max) {
        return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("{}[{}].{} is {} bytes, more than {}", field, i, what, size, max)};
    };
    for (std::size_t i = 0; i < records.size(); ++i) {
        auto& record = records[i];
        if (record.message.size() > settings_.max_message_bytes) {
            return too_big(i, "message", record.message.size(), settings_.max_message_bytes);
        }
        for (const auto& [what, label] :
             {std::pair{"sender", &record.sender}, std::pair{"node", &record.node},
              std::pair{"source", &record.source}}) {
            if (label->size() > settings_.max_label_bytes) {
                return too_big(i, what, label->size(), settings_.max_label_bytes);
            }
        }
        if (!record.fields.empty()) {
            if (record.fields.size() > settings_.max_fields_bytes) {
                return too_big(i, "fields", record.fields.size(), settings_.max_fields_bytes);
            }
            boost::system::error_code ec;
            auto fields = boost::json::parse(record.fields, ec);
            if (ec || !fields.is_object()) {
                return core::Error{core::ErrorCode::kInvalidArgument,
                                   fmt::format("{}[{}].fields must be a JSON object", field, i)};
            }
            if (fields.as_object().size() > settings_.max_fields) {
                return core::Error{
                    core::ErrorCode::kInvalidArgument,
                    fmt::format("{}[{}].fields has {} keys, more than {} (logs.max_fields): "
                                "free fields are for a few values, not a document",
                                field, i, fields.as_object().size(), settings_.max_fields)};
            }
        }
        record.kind = kind;
        record.scope = scope;
        // Before storage: what is stored is what every later reader sees.
        core::redactor().hide_secrets(record.message);
        for (const auto& rule : redact_) {
            record.message = rule.pattern.replace_all(record.message, rule.replacement);
        }
    }
    return {};
}

core::Result<std::vector<store::LogRecord>> Logs::upload(store::LogKind kind,
                                                         const std::string& scope,
                                                         std::vector<store::LogRecord> records) {
    if (auto admitted = admit(kind, scope, field_of(kind), records); !admitted) {
        return admitted.error();
    }
    return store_.append(std::move(records));
}

core::Result<store::StreamAppend> Logs::ship(const std::string& scope, Shipment shipment) {
    if (shipment.stream.empty() || shipment.stream.size() > settings_.max_label_bytes) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("stream must be 1 to {} bytes, got {}",
                                       settings_.max_label_bytes, shipment.stream.size())};
    }
    if (auto admitted = admit(store::LogKind::kLog, scope, "lines", shipment.records); !admitted) {
        return admitted.error();
    }
    std::vector<store::LogRecord> notices;
    if (shipment.dropped > 0 && !shipment.records.empty()) {
        const auto& first = shipment.records.front();
        notices.push_back(store::LogRecord{
            .kind = store::LogKind::kLog,
            .scope = scope,
            .time_ns = first.time_ns,
            .level = 4,
            .sender = first.sender,
            .message = fmt::format("the sidecar dropped {} lines of stream {} before these: its "
                                   "buffer was full while serve could not be reached",
                                   shipment.dropped, shipment.stream),
            .node = first.node,
            .source = "sidecar"});
    }
    return store_.append_stream(shipment.stream, std::move(shipment.records), std::move(notices));
}

core::Result<Logs::Page> Logs::read(const Window& window) const {
    // One more than the bound: whether older records were left out.
    auto records = store_.query(
        store::LogQuery{.kind = window.kind,
                        .scope = window.scope,
                        .since_ns = to_ns(clock_.now() - window.window),
                        .filter = {.sender = window.sender, .max_level = window.max_level},
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
        bytes += store::bytes_of(record);
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

core::Millis longest_window(const Settings& settings, store::LogKind kind) {
    auto longest =
        kind == store::LogKind::kLog ? settings.logs_window : settings.notifications_window;
    if (longest.count() <= 0) {
        return core::Millis{0};
    }
    for (const auto& rule : settings.retention) {
        if (rule.kind == kind) {
            longest = std::max(longest, rule.window);
        }
    }
    return longest;
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
        const auto window =
            kind == store::LogKind::kLog ? settings_.logs_window : settings_.notifications_window;
        const bool kept = window.count() <= 0;  // the kind's default keeps its records
        const auto longest = longest_window(settings_, kind);
        // A partitioned store (PostgreSQL) removes what the longest window covers by dropping
        // whole partitions once every record in them is past it: those removals are coarse, and
        // reach only what no partition holds (docs/logs.md, "Retention").
        const bool drops = !kept && store_.partitioned();
        auto coarse = [&](core::Millis w) { return drops && w == longest; };
        if (drops) {
            auto dropped = store_.drop_partitions(kind, to_ns(now - longest));
            if (!dropped) {
                return dropped.error();
            }
            removed += *dropped;
        }
        // Each rule takes what no rule before it took; the kind's window takes the rest.
        std::vector<store::LogSelector> earlier;
        for (const auto& rule : settings_.retention) {
            if (rule.kind != kind) {
                continue;
            }
            auto ruled = drain(store::LogRemoval{.kind = kind,
                                                 .before_ns = to_ns(now - rule.window),
                                                 .match = rule.selector,
                                                 .unless = earlier,
                                                 .coarse = coarse(rule.window)});
            if (!ruled) {
                return ruled.error();
            }
            earlier.push_back(rule.selector);
        }
        if (kept) {
            continue;
        }
        auto rest = drain(store::LogRemoval{.kind = kind,
                                            .before_ns = to_ns(now - window),
                                            .unless = earlier,
                                            .coarse = coarse(window)});
        if (!rest) {
            return rest.error();
        }
        // A label set whose newest record is older than every window of its kind has no record
        // left: it stops counting against the streams-per-scope cap and leaves the listings.
        auto forgotten =
            store_.forget(kind, to_ns(now - longest), to_ns(now - kShipperStreamMemory));
        if (!forgotten) {
            return forgotten.error();
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
        // On SQLite each instance keeps its own log database and sweeps it; on PostgreSQL the
        // instances share the records and the leader sweeps them (docs/logs.md).
        .leader_only = store_.shared(),
    });
}

}  // namespace aviary::logs
