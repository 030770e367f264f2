#pragma once
/// logs/shipper: a sidecar's node lines on their way to serve (docs/logs.md, "Shipping from
/// sidecars"): numbered per stream, kept in a disk buffer of bounded size, sent in batches by a
/// caller-given Send, and sent again until serve acknowledges them (at-least-once; serve stores
/// each sequence number once). The node is never held back: offer() only queues in memory, and
/// past the buffer's bounds the oldest lines are dropped, counted, and the count reported to
/// serve with the next batch.
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/core.hpp"
#include "logs/logs.hpp"

namespace aviary::logs {

struct ShipperSettings {
    std::string dir;      ///< the disk buffer: <state_dir>/ship
    std::string node;     ///< the node label of every line
    std::string service;  ///< the service label of every line (the chain, or the program)
    std::size_t max_buffer_bytes = std::size_t{256} * 1024 * 1024;  ///< on disk
    std::size_t segment_bytes = std::size_t{4} * 1024 * 1024;       ///< one buffer file
    std::size_t max_batch_lines = 5'000;
    std::size_t max_batch_bytes = std::size_t{1} * 1024 * 1024;
    /// A batch smaller than the maximum waits this long for more lines before it goes.
    core::Millis linger{200};
    core::Millis min_backoff{200};  ///< after a failed send, doubling up to max_backoff
    core::Millis max_backoff{std::chrono::seconds{30}};
    /// Lines held in memory between offer() and the disk; past it offer() drops and counts.
    std::size_t max_pending_lines = 50'000;
};

struct ShipperStats {
    std::uint64_t offered = 0;  ///< lines given to offer()
    std::uint64_t written = 0;  ///< lines in the disk buffer, in all (numbered)
    std::uint64_t shipped = 0;  ///< lines serve acknowledged (this run)
    std::uint64_t dropped = 0;  ///< lines given up: memory queue full, or the buffer's cap
    std::uint64_t sends_failed = 0;
    std::uint64_t buffered_bytes = 0;  ///< the disk buffer's size now
    std::int64_t acked_seq = 0;        ///< the highest sequence number serve acknowledged
    std::uint64_t torn_bytes = 0;      ///< cut from the buffer's end at start (a torn write)
    std::string last_error;            ///< of the last failed send, "" after a success
};

/// Sends one batch and returns once serve has stored it durably (an error otherwise). Called
/// on the shipper's sending thread only; it may block up to its own timeout.
using Send = std::function<core::Result<void>(const Shipment&)>;

class Shipper {
public:
    Shipper(ShipperSettings settings, Send send);
    ~Shipper();
    Shipper(const Shipper&) = delete;
    Shipper& operator=(const Shipper&) = delete;

    /// Opens (or makes) the buffer dir, reads its stream id and checkpoint, recovers the buffer
    /// (cutting a torn tail), and starts the writing and sending threads.
    core::Result<void> start();
    /// Writes what is queued to the disk, stops sending (a send in flight ends on its own
    /// timeout), joins. What was not acknowledged is sent after the next start. Idempotent.
    void stop();
    /// Queues one line; never waits on the disk or the network.
    void offer(std::int64_t time_ns, std::string_view source, int level, std::string_view text);

    ShipperStats stats() const;
    /// "<node>@<id made with the buffer>": a wiped buffer starts a new stream rather than
    /// reusing old sequence numbers. Empty before start().
    std::string stream() const;

private:
    struct Line {
        std::int64_t time_ns = 0;
        std::string source;
        int level = 6;
        std::string text;
    };
    struct Segment {
        std::uint64_t number = 0;
        std::string path;
        std::uint64_t bytes = 0;
        std::int64_t first_seq = 0;  ///< 0 while empty
        std::int64_t last_seq = 0;
    };

    void write_loop();
    void send_loop();
    /// Appends `lines` to the active segment (opening a new one when full); mu_ is not held.
    core::Result<void> append(std::vector<Line>& lines);
    /// Drops the oldest segments while the buffer is over its cap; with mu_ held.
    void enforce_cap();
    /// Reads the next batch after `after_seq` from the buffer; mu_ is not held.
    core::Result<Shipment> read_batch(std::int64_t after_seq);
    void save_checkpoint();
    core::Result<void> recover();

    ShipperSettings settings_;
    Send send_;
    std::string stream_;

    mutable std::mutex mu_;
    std::condition_variable wake_writer_;
    std::condition_variable wake_sender_;
    bool stopping_ = false;
    bool started_ = false;
    std::deque<Line> pending_;       // offered, not yet written
    std::deque<Segment> segments_;   // oldest first; the last is the one written to
    std::int64_t next_seq_ = 1;      // the writer's
    std::int64_t written_seq_ = 0;   // every line up to this is in a segment, readable
    std::int64_t acked_seq_ = 0;     // serve has every line up to this
    std::int64_t in_flight_to_ = 0;  // the batch being sent ends here (0: none)
    std::uint64_t unreported_drops_ = 0;
    ShipperStats stats_;

    int active_fd_ = -1;  // the writer thread's
    std::thread writer_;
    std::thread sender_;
};

/// A line's level read from its first bytes: nodeos ("info  2024-...", "warn", "error"), geth
/// ("INFO [..]", "WARN", "ERROR", "CRIT"), zap and logfmt ("level=warn", "\"level\":\"error\"").
/// Syslog's numbers (3 error, 4 warning, 6 info, 7 debug); 6 when nothing says.
int level_of_line(std::string_view text);

}  // namespace aviary::logs
