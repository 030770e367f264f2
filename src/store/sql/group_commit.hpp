#pragma once
// Private to src/store and its unit tests: the single writer thread (group commit).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/core.hpp"
#include "store/sql/connection.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

/// Owns the write connection's thread. submit() queues an operation and blocks until the
/// commit that holds it is durable. The thread waits until the queue is non-empty, takes all
/// of it, and runs it as one `BEGIN IMMEDIATE ... COMMIT` with each operation in its own
/// SAVEPOINT, so a failing operation is rolled back alone. A batch is whatever queued while
/// the previous commit was being made durable. One exception, a bounded one: when the last
/// batch held several operations and the next finds only one, the writer waits up to
/// kGatherWait for a second (PostgreSQL's commit_delay with commit_siblings, decided by what
/// the last batch saw): two workers that finish together then keep sharing each commit instead
/// of falling into alternate ones. A lone writer never waits.
class GroupCommit {
public:
    static constexpr std::chrono::microseconds kGatherWait{20};
    /// Runs on the write connection inside the batch's transaction. An error rolls back only
    /// this operation's savepoint and is what its submit() returns.
    using Operation = std::function<core::Result<void>(Connection&)>;
    /// Runs on the writer thread after each batch, outside the database mutex and after every
    /// submitter of the batch has been answered: `committed` says whether the batch's
    /// operations are durable (false: they were all rolled back).
    using AfterBatch = std::function<void(bool committed)>;

    /// `db` is used only by the writer thread and only while holding `db_mutex` (an
    /// in-memory database shares its one connection with readers under that mutex).
    GroupCommit(Connection& db, std::mutex& db_mutex, AfterBatch after_batch = {});
    ~GroupCommit();
    GroupCommit(const GroupCommit&) = delete;
    GroupCommit& operator=(const GroupCommit&) = delete;

    /// Blocks until the operation's batch has committed (or failed). kUnavailable once closed;
    /// kStorage for every operation of a batch whose COMMIT failed (kUnavailable when the database
    /// is away). Never call it from the writer thread (an operation or AfterBatch): it would wait
    /// for itself.
    core::Result<void> submit(Operation operation);
    /// Queues an operation without waiting: `done` gets its result on the writer thread once
    /// its batch has committed (or failed), after the batch's AfterBatch; it must only hand the
    /// result over. Once closed, `done` gets kUnavailable at once, on the calling thread.
    using Done = std::function<void(core::Result<void>)>;
    void submit_async(Operation operation, Done done);
    /// Stops accepting, runs what is queued, joins the thread. Idempotent.
    void close();

    Stats stats() const;
    /// Operations waiting for the writer (not counting the batch in progress).
    std::size_t queued_for_test() const;

private:
    struct Pending {
        Operation operation;
        std::promise<core::Result<void>> done;  ///< submit(): its caller waits on it
        Done on_done;  ///< submit_async(): called after the batch (the Pending is then freed)
    };
    /// Answers every submitter of a finished batch: promises at once; async callbacks after
    /// AfterBatch, then their Pendings are freed.
    void answer(const std::vector<Pending*>& batch,
                std::vector<core::Result<void>> results,
                bool committed);

    void loop();
    void run_batch(const std::vector<Pending*>& batch);
    /// The batch's transaction: each operation's own result, or the error that lost them all.
    core::Result<std::vector<core::Result<void>>> run_transaction(
        const std::vector<Pending*>& batch);
    core::Result<void> run_in_savepoint(const Operation& operation);
    void fail_all(const std::vector<Pending*>& batch, const core::Error& error);

    Connection& db_;
    std::mutex& db_mutex_;
    AfterBatch after_batch_;
    std::shared_ptr<spdlog::logger> log_;

    mutable std::mutex mu_;
    std::condition_variable wake_;
    std::vector<Pending*> queue_;  // each Pending lives on its submitter's stack until done
    bool closed_ = false;
    std::mutex close_mu_;  // serialises close() so a second caller waits for the join
    std::thread thread_;
    std::thread::id writer_id_;  // set once in the constructor: close() may reset thread_

    std::atomic<std::uint64_t> commits_{0};
    std::atomic<std::uint64_t> writes_{0};
    std::atomic<std::uint64_t> failed_writes_{0};
    std::atomic<std::uint64_t> largest_batch_{0};
};

}  // namespace aviary::store::sql
