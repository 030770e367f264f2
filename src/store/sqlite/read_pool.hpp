#pragma once
// Private to src/store/sqlite: read-only connections lent to one reader at a time.
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "core/core.hpp"
#include "store/sqlite/connection.hpp"

namespace aviary::store::sqlite {

/// A fixed set of read-only connections. In WAL mode readers never wait for the writer, so
/// reads scale with the pool while the writer commits.
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

    static core::Result<std::unique_ptr<ReadPool>> open(const std::string& path,
                                                        int size,
                                                        core::Millis busy_timeout);
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

}  // namespace aviary::store::sqlite
