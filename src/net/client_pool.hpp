#pragma once
// Private to src/net: outbound keep-alive connections filed per scheme, host, port and TLS
// identity, shared by HttpClient and ReverseProxy. Confined to one thread: every call comes from
// coroutines on the same I/O loop, so nothing here locks.
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "net/client_connection.hpp"

namespace aviary::net::client {

struct PoolLimits {
    int max_idle_per_host = 8;
    int max_per_host = 32;
    core::Millis idle_timeout{std::chrono::seconds{30}};
};

/// Which connection ConnectionPool::acquire() hands out.
enum class Pick {
    /// An idle one that still looks open (one recv with MSG_PEEK each), else a new one.
    kIdleChecked,
    /// An idle one without the peek: for a caller that, when a reused connection turns out
    /// closed before any answer, sends again on a fresh one (an idempotent request). Saves a
    /// system call per request.
    kIdle,
    /// A new one.
    kFresh,
};

class ConnectionPool;
struct PoolHost;

/// A connection lent by the pool. Give it back with ConnectionPool::release(); a lease dropped
/// without that (an exception, a cancelled coroutine) closes its connection and frees its slot.
class Lease {
public:
    Lease() = default;
    Lease(ConnectionPool* pool,
          PoolHost* host,
          std::unique_ptr<ClientConnection> connection,
          bool reused);
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();

    ClientConnection& connection() { return *connection_; }
    bool reused() const { return reused_; }

private:
    friend class ConnectionPool;
    ConnectionPool* pool_ = nullptr;
    PoolHost* host_ = nullptr;
    std::unique_ptr<ClientConnection> connection_;
    bool reused_ = false;
};

/// One scheme, host, port and TLS identity's connections (see pool_key). Owned by its pool and
/// never removed from it, so a caller that always reaches the same upstream (the proxy) looks
/// it up once and keeps the reference.
struct PoolHost {
    struct Idle {
        std::unique_ptr<ClientConnection> connection;
        Clock::time_point since;
    };
    struct Waiter {
        explicit Waiter(const asio::any_io_executor& executor) : wake(executor) {}
        asio::steady_timer wake;  // cancelled to wake; expiring means the deadline passed
        std::unique_ptr<ClientConnection> handed;  // a released connection, passed straight on
        bool may_open = false;                     // a closed connection's slot, passed on
    };

    std::string key;        // pool_key()
    std::deque<Idle> idle;  // oldest first
    int open = 0;           // idle + lent + being opened
    std::list<Waiter*> waiters;
};

class ConnectionPool {
public:
    explicit ConnectionPool(PoolLimits limits) : limits_(limits) {}
    ~ConnectionPool();
    ConnectionPool(const ConnectionPool&) = delete;
    ConnectionPool& operator=(const ConnectionPool&) = delete;

    /// The entry for `target` under `tls`, made on first use; valid as long as the pool.
    PoolHost& host(const Target& target, const ClientTls& tls);
    /// An idle connection to `host` at once, when one is kept that `pick` allows (never for
    /// kFresh): the common case of acquire(), without its coroutine.
    std::optional<Lease> take_idle(PoolHost& host, Pick pick);
    /// A connection to `host` (reached at `target`) before `deadline`: an idle one (as `pick`
    /// says), a new one, or at max_per_host the next one another request gives back. Errors as
    /// open_connection(), and kTimeout when no connection came free in time.
    asio::awaitable<core::Result<Lease>> acquire(PoolHost& host,
                                                 const Target& target,
                                                 const ClientTls& tls,
                                                 Clock::time_point deadline,
                                                 const std::string& shown_url,
                                                 core::Millis timeout,
                                                 Pick pick);
    /// acquire() for a target looked up each time.
    asio::awaitable<core::Result<Lease>> acquire(const Target& target,
                                                 const ClientTls& tls,
                                                 Clock::time_point deadline,
                                                 const std::string& shown_url,
                                                 core::Millis timeout,
                                                 Pick pick);
    /// Takes the connection back: kept idle (or handed to a waiter) when `reusable`, else closed.
    void release(Lease lease, bool reusable);

    std::uint64_t opened() const { return opened_; }

private:
    void evict_expired();
    std::unique_ptr<ClientConnection> take_idle_connection(PoolHost& host, bool peek);
    core::Result<std::shared_ptr<ssl::context>> context_for(const std::string& key,
                                                            const ClientTls& tls);
    asio::awaitable<core::Result<Lease>> open(PoolHost& host,
                                              const Target& target,
                                              const ClientTls& tls,
                                              Clock::time_point deadline,
                                              const std::string& shown_url,
                                              core::Millis timeout);
    void drop_slot(PoolHost& host);

    PoolLimits limits_;
    std::map<std::string, PoolHost> hosts_;  // map: PoolHost references stay valid across inserts
    std::map<std::string, std::shared_ptr<ssl::context>> contexts_;
    std::uint64_t opened_ = 0;
};

}  // namespace aviary::net::client
