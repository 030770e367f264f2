#pragma once
/// logs: logs and notifications that nodes and tools upload, kept for a window and read back by
/// window, sender and level (docs/logs.md). The rules live here; the records in the store's log
/// store (a database of its own); the wire formats (Bitahoy's WebSocket) in api.
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/core.hpp"
#include "store/store.hpp"

namespace aviary::logs {

/// A retention rule: records its selector matches are kept for `window` instead of their
/// kind's default (docs/logs.md, "Retention"). Rules are in priority order: a record follows the
/// first rule that matches it.
struct RetentionRule {
    store::LogKind kind = store::LogKind::kLog;
    store::LogSelector selector;
    core::Millis window{0};
};

/// A redaction rule: what `pattern` (RE2 syntax, core/regex.hpp) matches in a message becomes
/// `replacement` (which may use $1...) before the record is stored.
struct RedactRule {
    std::string pattern;
    std::string replacement = "REDACTED";
};

struct Settings {
    store::LogStoreSettings store;  ///< where the records live (<data_dir>/logs.db by default)
    /// Logs older than this (by their own time) are removed: Bitahoy's LOGS_TIMEWINDOW.
    core::Millis logs_window{std::chrono::seconds{60}};
    /// Notifications older than this are removed; 0 keeps them (Bitahoy's behaviour).
    core::Millis notifications_window{0};
    /// How often retention runs: Bitahoy's CLEANUP_INTERVAL.
    core::Millis cleanup_interval{std::chrono::seconds{5}};
    std::vector<RetentionRule> retention;  ///< per-stream windows, first match wins
    /// Applied in order to every message before storage, after the configured secrets (every
    /// token aviary knows is always replaced by REDACTED).
    std::vector<RedactRule> redact;
    /// A WebSocket connection that sends nothing for this long is closed; `keepalive` or
    /// `ping` keep it open. auth's reply says it, in seconds.
    core::Millis idle_timeout{std::chrono::seconds{30}};
    std::size_t max_upload = 10'000;         ///< records in one upload
    std::size_t max_message_bytes = 65'536;  ///< a record's message
    std::size_t max_label_bytes = 256;       ///< a record's node, service (sender) or source
    std::size_t max_fields = 32;             ///< keys in a record's free fields
    std::size_t max_fields_bytes = 8'192;    ///< the free fields' JSON text
    std::size_t max_results = 10'000;        ///< records one read returns (the newest)
    /// ...and about this many bytes of senders and messages (a reply must fit a WebSocket
    /// connection's send queue).
    std::size_t max_read_bytes = std::size_t{4} * 1024 * 1024;
    std::size_t retention_batch = 5'000;  ///< records one retention delete removes
    /// A live tail is ended (with the reason, and its cursor to resume from) after this.
    core::Millis tail_max_duration{std::chrono::hours{1}};
    int max_tails_per_identity = 32;  ///< live tails one identity may hold open at once
};

/// Which records a read wants.
struct Window {
    store::LogKind kind = store::LogKind::kLog;
    std::optional<std::string> scope;  ///< nullopt: every scope (an admin's read)
    core::Millis window{0};            ///< records no older than this, by their own time
    std::optional<std::string> sender;
    std::optional<int> max_level;  ///< level <= this
};

/// What a sidecar's shipper sent (docs/logs.md, "Shipping from sidecars").
struct Shipment {
    std::string stream;                     ///< the shipper's stream id
    std::vector<store::LogRecord> records;  ///< seq set, rising
    std::uint64_t dropped =
        0;  ///< lines the shipper dropped (its buffer was full) since its last report
};

/// The notification an audit event becomes (docs/logs.md, "serve's events"): sender
/// "aviary", the event's time, a level by its kind (3 a job failed or timed out, 4 what lapsed
/// or was refused, 5 maintenance, production and queue changes, 6 the rest), and a message
/// naming the kind, the node, the actor and the job or lease id.
store::LogRecord notification_of(const core::Event& event);

/// Every method blocks on the store: call it from a worker thread (net::offload).
class Logs {
public:
    Logs(const Settings& settings, store::LogStore& store, core::Clock& clock);
    ~Logs();
    Logs(const Logs&) = delete;
    Logs& operator=(const Logs&) = delete;

    /// Stores an upload's records under `scope`, all or none. kInvalidArgument naming the first
    /// record past a limit ("logs[3].message is 70000 bytes, more than 65536").
    core::Result<std::vector<store::LogRecord>> upload(store::LogKind kind,
                                                       const std::string& scope,
                                                       std::vector<store::LogRecord> records);
    /// Stores a shipper's batch under `scope` as upload() does, skipping the lines the stream
    /// already holds (a batch sent again). Lines the shipper dropped become one warning record
    /// (source "sidecar") in the same write, when any line of the batch is new.
    core::Result<store::StreamAppend> ship(const std::string& scope, Shipment shipment);
    /// Newest first, at most max_results and about max_read_bytes; `truncated` says whether
    /// older records were left out for those bounds.
    struct Page {
        std::vector<store::LogRecord> records;
        bool truncated = false;
    };
    core::Result<Page> read(const Window& window) const;
    /// A page of a search (REST): `query.limit` and `max_bytes` are held to the settings' bounds.
    core::Result<std::vector<store::LogRecord>> search(store::LogQuery query) const;
    /// What was stored after a cursor, in stored order (a tail catching up), at most 1,000.
    core::Result<std::vector<store::LogRecord>> follow(store::LogFollow follow) const;
    core::Result<store::LogIds> ids() const { return store_.ids(); }
    core::Result<std::vector<std::string>> label_values(store::LogLabel label,
                                                        const store::LogLabelQuery& query) const {
        return store_.label_values(label, query);
    }
    /// Removes what is older than its kind's window, in batches; returns how many records.
    core::Result<std::size_t> sweep(core::TimePoint now);
    /// Runs sweep() every cleanup_interval on `scheduler` (on the leader only).
    void schedule(core::Scheduler& scheduler);

    /// Copies the audit events `events` recorded since the last copy into notifications, the
    /// feed's position stored in the same commit; the first copy starts at the newest event.
    /// Returns how many it copied.
    core::Result<std::size_t> copy_events(store::Store& events);
    /// Runs copy_events() every second; `on_copied` hears of what it stored (live tails).
    using OnCopied = std::function<void(const std::vector<store::LogRecord>&)>;
    void schedule_events(core::Scheduler& scheduler, store::Store& events, OnCopied on_copied);

    const Settings& settings() const { return settings_; }

private:
    /// Holds each record to the limits (naming the first past one as `field`[i]), sets its kind
    /// and scope, and redacts its message.
    core::Result<void> admit(store::LogKind kind,
                             const std::string& scope,
                             std::string_view field,
                             std::vector<store::LogRecord>& records) const;

    Settings settings_;
    struct Compiled;
    std::vector<Compiled> redact_;  // settings_.redact, compiled once
    store::LogStore& store_;
    core::Clock& clock_;
    core::Scheduler* scheduler_ = nullptr;
    core::Scheduler::TaskId task_ = 0;
    std::optional<core::Scheduler::TaskId> events_task_;
    OnCopied on_copied_;
};

/// The longest any record of `kind` is kept: the kind's window or a longer rule's; 0 when the
/// kind's window keeps its records for ever.
core::Millis longest_window(const Settings& settings, store::LogKind kind);

/// Nanoseconds since the epoch of `t`.
std::int64_t to_ns(core::TimePoint t);

}  // namespace aviary::logs
