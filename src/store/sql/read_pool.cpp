#include "store/sql/read_pool.hpp"

namespace aviary::store::sql {

ReadPool::Borrowed::~Borrowed() {
    if (db_ != nullptr) {
        pool_->give_back(*db_);
    }
}

ReadPool::Borrowed::Borrowed(Borrowed&& other) noexcept
    : pool_(other.pool_), db_(std::exchange(other.db_, nullptr)) {}

core::Result<std::unique_ptr<ReadPool>> ReadPool::open(int size, const Connect& connect) {
    std::unique_ptr<ReadPool> pool{new ReadPool};
    for (int i = 0; i < size; ++i) {
        auto db = connect();
        if (!db) {
            return db.error();
        }
        pool->free_.push_back(db->get());
        pool->all_.push_back(std::move(*db));
    }
    return pool;
}

core::Result<ReadPool::Borrowed> ReadPool::borrow() {
    std::unique_lock lock{mu_};
    returned_.wait(lock, [this] { return closed_ || !free_.empty(); });
    if (closed_) {
        return core::Error{core::ErrorCode::kUnavailable, "store is closed"};
    }
    Connection* db = free_.back();
    free_.pop_back();
    return Borrowed{*this, *db};
}

void ReadPool::give_back(Connection& db) {
    {
        std::lock_guard lock{mu_};
        free_.push_back(&db);
    }
    // notify_all: both a waiting reader and a closing store may be waiting.
    returned_.notify_all();
}

void ReadPool::close() {
    std::unique_lock lock{mu_};
    closed_ = true;
    returned_.notify_all();
    returned_.wait(lock, [this] { return free_.size() == all_.size(); });
    free_.clear();
    all_.clear();
}

}  // namespace aviary::store::sql
