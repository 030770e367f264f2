#pragma once
/// logs/shipper: a sidecar's node lines on their way to serve (docs/logs.md, "Shipping from
/// sidecars"): numbered per stream, kept in a disk buffer of bounded size, sent in batches by a
/// caller-given Send, and sent again until serve acknowledges them (at-least-once; serve stores
/// each sequence number once). The node is never held back: offer() only queues in memory, and
/// past the buffer's bounds the oldest lines are dropped, counted, and the count reported to
/// serve with the next batch.
///
/// Three threads: `ship-write` moves the memory queue to the disk buffer (write() only),
/// `ship-sync` makes it durable (fdatasync, at most once per `linger`), `ship-send` reads batches
/// back and calls Send. They are apart so that neither a slow sync on a busy disk nor a Send
/// blocked up to its timeout keeps lines in memory, where a kill -9 loses them and the queue's
/// bound drops them while the disk has room.
///
/// What survives what: kill -9 of the sidecar loses nothing written to the buffer; a power loss
/// loses at most the lines of the last `linger` (the buffer is synced that often while lines
/// come). Only synced lines are sent, so a sequence number serve has is never given to another
/// line after a power loss.
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
    std::string node;     ///< the node label of every line; the stream id's prefix
    std::string service;  ///< the service label of every line (the chain, or the program)
    std::size_t max_buffer_bytes = std::size_t{256} * 1024 * 1024;  ///< on disk
    std::size_t segment_bytes = std::size_t{4} * 1024 * 1024;       ///< one buffer file
    std::size_t max_batch_lines = 5'000;
    std::size_t max_batch_bytes = std::size_t{1} * 1024 * 1024;
    /// A batch smaller than the maximum waits this long for more lines before it goes; the
    /// buffer is synced at most this often.
    core::Millis linger{200};
    core::Millis min_backoff{200};  ///< after a failed send, doubling up to max_backoff
    core::Millis max_backoff{std::chrono::seconds{30}};
    /// Lines held in memory between offer() and the disk; past it offer() drops and counts.
    std::size_t max_pending_lines = 50'000;
    /// The same bound in bytes (lines are up to 16 KiB each).
    std::size_t max_pending_bytes = std::size_t{32} * 1024 * 1024;
};

struct ShipperStats {
    std::uint64_t offered = 0;  ///< lines given to offer()
    std::uint64_t written = 0;  ///< lines written to the disk buffer (numbered), this run
    std::uint64_t shipped = 0;  ///< lines serve acknowledged, this run
    /// Lines given up this run: memory queue full, a failed write, the buffer's cap, a batch
    /// serve refused. After a drain, offered == shipped + dropped.
    std::uint64_t dropped = 0;
    std::uint64_t sends_failed = 0;
    std::uint64_t buffered_bytes = 0;  ///< the disk buffer's size now
    std::int64_t acked_seq = 0;        ///< the highest sequence number serve acknowledged
    std::uint64_t torn_bytes = 0;      ///< cut from the buffer's end at start (a torn write)
    std::string last_error;            ///< of the last failed send, "" after a success
};

/// Sends one batch and returns once serve has stored it durably (an error otherwise). Called
/// on the shipper's sending thread only; it may block up to its own timeout. kInvalidArgument
/// means serve refused the batch itself: it is not sent again, its lines count as dropped.
using Send = std::function<core::Result<void>(const Shipment&)>;

class Shipper {
public:
    Shipper(ShipperSettings settings, Send send);
    ~Shipper();
    Shipper(const Shipper&) = delete;
    Shipper& operator=(const Shipper&) = delete;

    /// Opens (or makes) the buffer dir, reads its stream id and checkpoint, recovers the buffer
    /// (cutting a torn tail), and starts its three threads. Once per Shipper.
    core::Result<void> start();
    /// Writes what is queued to the disk and syncs it, stops sending (a send in flight ends on
    /// its own timeout; a backoff is cut short), joins. What was not acknowledged is sent after
    /// the next start. Idempotent.
    void stop();
    /// Queues one line; never waits on the disk or the network. A line longer than 16 KiB is
    /// cut and says so; bytes that are not UTF-8 become U+FFFD (serve reads JSON).
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
        std::uint64_t bytes = 0;     ///< whole frames written
        std::int64_t first_seq = 0;  ///< 0 while empty
        std::int64_t last_seq = 0;
    };
    /// Where the frame after `seq` starts: the next batch reads on from there.
    struct Cursor {
        std::uint64_t segment = 0;
        std::uint64_t offset = 0;
        std::int64_t seq = -1;
    };

    core::Result<void> recover();
    void write_loop();
    void send_loop();
    /// Appends `lines` to the active segment (opening a new one when full); mu_ is not held.
    /// On an error, `lines` keeps the lines not written.
    core::Result<void> append(std::vector<Line>& lines);
    void sync_loop();
    /// Syncs the files holding lines written and not synced yet (and the dir, for a new file);
    /// they become sendable. The syncer's, or stop()'s once the threads are joined.
    void sync_written();
    void close_active();
    /// Takes the oldest segments out while the buffer is over its cap, counting their unsent
    /// lines as dropped; returns their files, to be removed once mu_ is released.
    std::vector<std::string> enforce_cap();
    /// The next batch: lines after `after_seq`, at most through `upto_seq`; mu_ is not held.
    core::Result<Shipment> read_batch(std::int64_t after_seq, std::int64_t upto_seq);
    /// "ACKED DROPPED" to <dir>/checkpoint, atomically; `durable` also syncs it and the dir.
    core::Result<void> save_checkpoint(bool durable);

    ShipperSettings settings_;
    Send send_;
    std::string stream_;  // set by start(), before the threads

    mutable std::mutex mu_;  // never held across a disk or network call
    std::condition_variable wake_writer_;
    std::condition_variable wake_sender_;
    std::condition_variable wake_syncer_;
    bool stopping_ = false;
    bool started_ = false;
    std::deque<Line> pending_;  // offered, not yet written
    std::size_t pending_bytes_ = 0;
    std::deque<Segment> segments_;  // oldest first; the last is the one written to
    bool seal_active_ = false;      // the next write opens a new segment
    std::uint64_t next_segment_ = 1;
    std::int64_t next_seq_ = 1;      // the writer's
    std::int64_t written_seq_ = 0;   // every line through this is in a segment
    std::int64_t synced_seq_ = 0;    // ... and through this is synced: the sender's limit
    std::int64_t acked_seq_ = 0;     // serve has every line through this
    std::int64_t in_flight_to_ = 0;  // lines (acked_seq_, in_flight_to_] are being sent; 0: none
    /// Drops serve has not been told of that its sequence numbers do not show: lines never
    /// numbered (memory queue full, a failed write), and those a refused batch carried. Lines the
    /// cap takes out show as a gap before the next batch's first number, and are reported as such.
    std::uint64_t unreported_drops_ = 0;
    std::uint64_t saved_drops_ = 0;  // unreported_drops_ as the checkpoint on disk has it
    ShipperStats stats_;

    std::mutex checkpoint_mu_;  // one save at a time (writer, sender, stop)
    bool checkpoint_failing_ = false;

    int active_fd_ = -1;                 // the writer thread's
    std::uint64_t dir_synced_upto_ = 0;  // the syncer's: files up to this number are in the dir
    std::string sync_error_;             // the syncer's: the last sync failure, said once
    Cursor cursor_;                      // the sender thread's
    std::string bad_frame_logged_;       // the sender's: an unreadable frame is reported once
    std::thread writer_;
    std::thread syncer_;
    std::thread sender_;
};

/// A line's level read from its first 64 bytes, whole words, any case: nodeos ("info  2024-...",
/// "warn", "error"), geth ("INFO [..]", "WARN", "EROR", "CRIT"), zap and logfmt ("level=warn",
/// "\"level\":\"error\"", "\tINFO\t"). Syslog's numbers (3 error, 4 warning, 6 info, 7 debug);
/// 6 when nothing says.
int level_of_line(std::string_view text);

}  // namespace aviary::logs
