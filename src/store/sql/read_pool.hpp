#pragma once
// Private to src/store: read-only connections lent to one reader at a time.
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "core/core.hpp"
#include "store/sql/connection.hpp"

namespace aviary::store::sql {

/// A fixed set of read connections. Readers never wait for the writer (SQLite's WAL mode,
/// PostgreSQL's MVCC), so reads scale with the pool while the writer commits.
class ReadPool {
public:
    /// Hands a connection back to the pool when it goes out of scope.
    class Borrowed {
    public:
        Borrowed(ReadPool& pool, Connection& db) : pool_(&pool), db_(&db) {}
        ~Borrowed();
        Borrowed(Borrowed&& other) noexcept;
        Borrowed& operator=(Borrowed&&) = delete;
        Borrowed(const Borrowed&) = delete;
        Borrowed& operator=(const Borrowed&) = delete;
        Connection& operator*() const { return *db_; }

    private:
        ReadPool* pool_;
        Connection* db_;
    };

    using Connect = std::function<core::Result<std::unique_ptr<Connection>>()>;
    /// Opens `size` connections with `connect`.
    static core::Result<std::unique_ptr<ReadPool>> open(int size, const Connect& connect);
    ~ReadPool() { close(); }
    ReadPool(const ReadPool&) = delete;
    ReadPool& operator=(const ReadPool&) = delete;

    /// Waits for a free connection. kUnavailable once closed.
    core::Result<Borrowed> borrow();
    /// Refuses new borrowers, waits for the connections lent out, closes them. Idempotent.
    void close();

private:
    ReadPool() = default;
    void give_back(Connection& db);

    std::mutex mu_;
    std::condition_variable returned_;
    std::vector<std::unique_ptr<Connection>> all_;
    std::vector<Connection*> free_;
    bool closed_ = false;
};

}  // namespace aviary::store::sql
