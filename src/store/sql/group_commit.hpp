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
#include <optional>
#include <thread>
#include <vector>

#include "core/core.hpp"
#include "store/sql/connection.hpp"
#include "store/store.hpp"

namespace aviary::store::sql {

/// Owns the write connection's thread. submit() queues an operation and blocks until the
/// commit that holds it is durable. The thread waits until the queue is non-empty, takes all
/// of it, and runs it as one `BEGIN IMMEDIATE ... COMMIT` in which a failing operation is
/// rolled back alone (Isolation says how). A batch is whatever queued while
/// the previous commit was being made durable. One exception, a bounded one: when the last
/// batch held several operations and the next finds only one, the writer waits up to
/// kGatherWait for a second (PostgreSQL's commit_delay with commit_siblings, decided by what
/// the last batch saw): two workers that finish together then keep sharing each commit instead
/// of falling into alternate ones. A lone writer never waits.
class GroupCommit {
public:
    static constexpr std::chrono::microseconds kGatherWait{20};
    /// Runs on the write connection inside the batch's transaction. An error rolls back only
    /// this operation's writes and is what its submit() returns.
    using Operation = std::function<core::Result<void>(Connection&)>;
    /// Runs on the writer thread after each batch, outside the database mutex and after every
    /// submitter of the batch has been answered: `committed` says whether the batch's
    /// operations are durable (false: they were all rolled back). Under kOptimistic it is also
    /// called with false for an attempt rolled back before the batch runs again: then inside
    /// the database mutex, before anyone is answered, and it must only forget what it kept.
    using AfterBatch = std::function<void(bool committed)>;

    /// How a batch keeps one operation's failure from its neighbours.
    enum class Isolation {
        /// Every operation in its own SAVEPOINT, rolled back to it when it fails.
        kSavepoints,
        /// Where the connection counts the rows it changes (SQLite), operations run without
        /// savepoints, and one that fails having changed nothing needs nothing undone: a
        /// savepoint makes SQLite copy every page an operation touches into its statement
        /// journal first. When one fails having written, the batch is rolled back and run again
        /// with kSavepoints. Its operations must therefore be safe to run twice: nothing they
        /// leave outside the database (a count, a cache) may outlive a rolled-back attempt.
        /// Elsewhere (PostgreSQL, where a failed statement aborts the transaction) it is
        /// kSavepoints.
        kOptimistic,
    };

    /// `db` is used only by the writer thread and only while holding `db_mutex` (an
    /// in-memory database shares its one connection with readers under that mutex).
    GroupCommit(Connection& db,
                std::mutex& db_mutex,
                AfterBatch after_batch = {},
                Isolation isolation = Isolation::kSavepoints);
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
    /// Runs the batch's operations inside the open transaction. Each one's result; nullopt when
    /// an operation run without a savepoint failed having written (the caller rolls back and
    /// runs the batch again with savepoints); an error when the transaction itself was lost.
    core::Result<std::optional<std::vector<core::Result<void>>>> run_operations(
        const std::vector<Pending*>& batch, bool savepoints);
    core::Result<void> run_in_savepoint(const Operation& operation);
    /// The operation's result, a thrown exception turned into an error.
    static core::Result<void> run_one(const Operation& operation, Connection& db);
    void fail_all(const std::vector<Pending*>& batch, const core::Error& error);

    Connection& db_;
    std::mutex& db_mutex_;
    AfterBatch after_batch_;
    Isolation isolation_;
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
    std::atomic<std::uint64_t> batches_run_again_{0};
};

}  // namespace aviary::store::sql
