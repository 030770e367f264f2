#pragma once
// Private to src/store/sqlite: WAL checkpoints off the commit path.
//
// By default SQLite checkpoints inside the COMMIT that takes the WAL past 1000 pages: that
// commit also copies pages into the database file and fsyncs it, and every write waiting in
// the group commit waits with it. The writer connection turns that off (wal_autocheckpoint 0)
// and its WAL hook wakes this thread instead, which runs a PASSIVE checkpoint on a connection
// of its own. A passive checkpoint never blocks the writer or readers: it copies what no reader
// still needs, and SQLite reuses the WAL from its start once everything has been copied.
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/core.hpp"
#include "store/sqlite/connection.hpp"

namespace aviary::store::sqlite {

class Checkpointer {
public:
    /// WAL pages after a commit that wake the checkpointer (SQLite's own default threshold).
    static constexpr int kWakeAtPages = 1000;

    /// Opens its own connection to `path` and starts the thread.
    static core::Result<std::unique_ptr<Checkpointer>> start(const std::string& path,
                                                             core::Millis busy_timeout);
    ~Checkpointer();  ///< stop()
    Checkpointer(const Checkpointer&) = delete;
    Checkpointer& operator=(const Checkpointer&) = delete;

    /// From the writer's WAL hook: the WAL holds `pages` pages now. Cheap; never blocks on a
    /// checkpoint in progress.
    void wal_grew(int pages);
    /// Ends the thread after a checkpoint in progress; idempotent.
    void stop();
    std::uint64_t checkpoints() const;

private:
    explicit Checkpointer(std::unique_ptr<Connection> db);
    void loop();

    std::unique_ptr<Connection> db_;
    mutable std::mutex mu_;
    std::condition_variable wake_;
    bool due_ = false;
    bool stopping_ = false;
    std::uint64_t checkpoints_ = 0;
    std::thread thread_;
};

}  // namespace aviary::store::sqlite
