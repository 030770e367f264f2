#include "store/sql/group_commit.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <exception>

namespace aviary::store::sql {

GroupCommit::GroupCommit(Connection& db,
                         std::mutex& db_mutex,
                         AfterBatch after_batch,
                         Isolation isolation)
    : db_(db),
      db_mutex_(db_mutex),
      after_batch_(std::move(after_batch)),
      isolation_(isolation),
      log_(core::logger("store")) {
    thread_ = std::thread{[this] {
        core::name_this_thread("store-writer");
        loop();
    }};
    writer_id_ = thread_.get_id();
}

GroupCommit::~GroupCommit() {
    close();
}

core::Result<void> GroupCommit::submit(Operation operation) {
    AVIARY_ASSERT(std::this_thread::get_id() != writer_id_,
                  "the writer thread must not submit: it would wait for itself");
    Pending pending{std::move(operation), {}};
    auto done = pending.done.get_future();
    {
        std::lock_guard lock{mu_};
        if (closed_) {
            return core::Error{core::ErrorCode::kUnavailable, "store is closed"};
        }
        queue_.push_back(&pending);
    }
    wake_.notify_one();
    return done.get();
}

void GroupCommit::submit_async(Operation operation, Done done) {
    AVIARY_ASSERT(std::this_thread::get_id() != writer_id_,
                  "the writer thread must not submit: it would run inside its own batch");
    auto pending = std::make_unique<Pending>(Pending{std::move(operation), {}, std::move(done)});
    {
        std::lock_guard lock{mu_};
        if (!closed_) {
            queue_.push_back(pending.release());
        }
    }
    if (pending) {
        pending->on_done(core::Error{core::ErrorCode::kUnavailable, "store is closed"});
        return;
    }
    wake_.notify_one();
}

void GroupCommit::close() {
    std::lock_guard closing{close_mu_};
    {
        std::lock_guard lock{mu_};
        closed_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) {
        thread_.join();
    }
}

Stats GroupCommit::stats() const {
    return Stats{.commits = commits_.load(),
                 .writes = writes_.load(),
                 .failed_writes = failed_writes_.load(),
                 .largest_batch = largest_batch_.load(),
                 .batches_run_again = batches_run_again_.load()};
}

std::size_t GroupCommit::queued_for_test() const {
    std::lock_guard lock{mu_};
    return queue_.size();
}

void GroupCommit::loop() {
    std::vector<Pending*> batch;
    std::size_t last_batch = 0;
    while (true) {
        {
            std::unique_lock lock{mu_};
            wake_.wait(lock, [this] { return !queue_.empty() || closed_; });
            if (queue_.empty()) {
                return;  // closed and drained
            }
            if (queue_.size() == 1 && last_batch > 1) {
                // Writers are concurrent (the last commit was shared): one that is a moment
                // behind shares this commit too instead of paying for the next one alone.
                wake_.wait_for(lock, kGatherWait, [this] { return queue_.size() > 1 || closed_; });
            }
            batch.swap(queue_);
        }
        last_batch = batch.size();
        run_batch(batch);
        batch.clear();
    }
}

void GroupCommit::run_batch(const std::vector<Pending*>& batch) {
    if (batch.size() > largest_batch_.load()) {
        largest_batch_.store(batch.size());  // only this thread writes it
    }
    auto results = run_transaction(batch);
    if (!results) {
        fail_all(batch, results.error());
        return;
    }
    commits_.fetch_add(1);
    for (const auto& result : *results) {
        (result ? writes_ : failed_writes_).fetch_add(1);
    }
    answer(batch, std::move(*results), true);
}

void GroupCommit::answer(const std::vector<Pending*>& batch,
                         std::vector<core::Result<void>> results,
                         bool committed) {
    std::vector<std::pair<Pending*, core::Result<void>>> later;
    for (std::size_t i = 0; i < batch.size(); ++i) {
        if (batch[i]->on_done) {
            later.emplace_back(batch[i], std::move(results[i]));
        } else {
            // After set_value the submitter may return and destroy its Pending: touch it no more.
            batch[i]->done.set_value(std::move(results[i]));
        }
    }
    if (after_batch_) {
        after_batch_(committed);
    }
    for (auto& [pending, result] : later) {
        std::unique_ptr<Pending> owned{pending};
        owned->on_done(std::move(result));
    }
}

core::Result<std::vector<core::Result<void>>> GroupCommit::run_transaction(
    const std::vector<Pending*>& batch) {
    std::lock_guard db_lock{db_mutex_};
    db_.drop_notifications();  // anything a failed batch queued
    if (auto recovered = db_.recover(); !recovered) {
        return recovered.error();  // the database is away: every operation fails, and says so
    }
    bool savepoints = isolation_ == Isolation::kSavepoints || !db_.total_changes().has_value();
    while (true) {
        if (auto begun = db_.begin_write(); !begun) {
            log_->warn("write transaction not started size={} error=\"{}\"", batch.size(),
                       begun.error().message);
            return begun.error();
        }
        auto results = run_operations(batch, savepoints);
        if (!results) {
            return results.error();
        }
        if (!*results) {
            // An operation failed having written, with no savepoint to undo it alone: the
            // attempt goes, and the batch runs again with one savepoint per operation.
            AVIARY_ASSERT(!savepoints, "only an attempt without savepoints is run again");
            if (auto undone = db_.run("ROLLBACK"); !undone) {
                return undone.error();
            }
            db_.drop_notifications();
            if (after_batch_) {
                after_batch_(false);  // forgets what the rolled-back attempt collected
            }
            batches_run_again_.fetch_add(1);
            savepoints = true;
            continue;
        }
        if (auto sent = db_.send_notifications(); !sent) {
            log_->warn("notifications not sent size={} error=\"{}\"", batch.size(),
                       sent.error().message);
            (void)db_.run("ROLLBACK");
            return sent.error();
        }
        if (auto committed = db_.run("COMMIT"); !committed) {
            log_->warn("commit failed size={} error=\"{}\"", batch.size(),
                       committed.error().message);
            (void)db_.run("ROLLBACK");
            return committed.error();
        }
        return std::move(**results);
    }
}

core::Result<std::optional<std::vector<core::Result<void>>>> GroupCommit::run_operations(
    const std::vector<Pending*>& batch, bool savepoints) {
    std::vector<core::Result<void>> results;
    results.reserve(batch.size());
    for (Pending* pending : batch) {
        if (savepoints) {
            results.push_back(run_in_savepoint(pending->operation));
        } else {
            const auto before = db_.total_changes();
            results.push_back(run_one(pending->operation, db_));
            if (!results.back() && !db_.in_autocommit() && db_.total_changes() != before) {
                return std::optional<std::vector<core::Result<void>>>{};
            }
        }
        // Some errors (disk full, I/O) make SQLite roll the whole transaction back, and a
        // PostgreSQL connection lost mid-batch takes it with it: the operations already run
        // are gone too, so the batch cannot be committed. A lost connection is kUnavailable,
        // as for any write while the database is away, so callers that wait it out do.
        if (db_.in_autocommit()) {
            bool lost = db_.lost();
            log_->warn("write transaction rolled back size={} connection_lost={}", batch.size(),
                       lost);
            if (results.back()) {
                return core::Error{
                    lost ? core::ErrorCode::kUnavailable : core::ErrorCode::kStorage,
                    fmt::format("{}: the write transaction was rolled back{}", db_.name(),
                                lost ? " (the connection was lost)" : "")};
            }
            return results.back().error();
        }
    }
    return std::optional{std::move(results)};
}

core::Result<void> GroupCommit::run_one(const Operation& operation, Connection& db) {
    try {
        return operation(db);
    } catch (const std::exception& e) {
        // One top-level catch per operation: a throwing operation fails alone, like an error.
        return core::Error{core::ErrorCode::kInternal,
                           std::string{"store operation failed: "} + e.what()};
    }
}

core::Result<void> GroupCommit::run_in_savepoint(const Operation& operation) {
    if (auto saved = db_.run("SAVEPOINT op"); !saved) {
        return saved.error();
    }
    auto result = run_one(operation, db_);
    if (!result && !db_.in_autocommit()) {
        (void)db_.run("ROLLBACK TO op");
    }
    if (!db_.in_autocommit()) {
        (void)db_.run("RELEASE op");
    }
    return result;
}

void GroupCommit::fail_all(const std::vector<Pending*>& batch, const core::Error& error) {
    // The database being away stays kUnavailable (callers may try again); anything else
    // that lost the batch is a storage failure.
    core::Error failed{
        error.code == core::ErrorCode::kUnavailable ? error.code : core::ErrorCode::kStorage,
        error.message};
    failed_writes_.fetch_add(batch.size());
    std::vector<core::Result<void>> results(batch.size(), failed);
    answer(batch, std::move(results), false);
}

}  // namespace aviary::store::sql
