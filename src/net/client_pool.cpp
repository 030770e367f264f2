#include "net/client_pool.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/this_coro.hpp>
#include <exception>
#include <utility>

#include "net/coarse_clock.hpp"
#include "net/net.hpp"

namespace aviary::net {
namespace client {

Lease::Lease(ConnectionPool* pool,
             PoolHost* host,
             std::unique_ptr<ClientConnection> connection,
             bool reused)
    : pool_(pool), host_(host), connection_(std::move(connection)), reused_(reused) {}

Lease& Lease::operator=(Lease&& other) noexcept {
    if (this != &other) {
        if (connection_ && pool_ != nullptr) {
            pool_->release(std::move(*this), false);
        }
        pool_ = other.pool_;
        host_ = other.host_;
        connection_ = std::move(other.connection_);
        reused_ = other.reused_;
    }
    return *this;
}

Lease::~Lease() {
    if (connection_ && pool_ != nullptr) {
        pool_->release(std::move(*this), false);
    }
}

ConnectionPool::~ConnectionPool() {
    for (auto& [key, host] : hosts_) {
        AVIARY_ASSERT(host.waiters.empty(), "the pool outlives every acquire() in flight");
        for (auto& idle : host.idle) {
            idle.connection->close();
        }
    }
}

void ConnectionPool::evict_expired() {
    const auto cutoff = coarse_now() - limits_.idle_timeout;
    for (auto& [key, host] : hosts_) {
        while (!host.idle.empty() && host.idle.front().since <= cutoff) {
            host.idle.front().connection->close();
            host.idle.pop_front();
            drop_slot(host);
        }
    }
}

std::unique_ptr<ClientConnection> ConnectionPool::take_idle_connection(PoolHost& host, bool peek) {
    // Newest first: the one least likely to have been closed by the server's idle timer.
    while (!host.idle.empty()) {
        auto connection = std::move(host.idle.back().connection);
        host.idle.pop_back();
        if (!connection->looks_closed(peek)) {
            return connection;
        }
        connection->close();
        drop_slot(host);
    }
    return nullptr;
}

void ConnectionPool::drop_slot(PoolHost& host) {
    if (!host.waiters.empty()) {
        // The slot passes to the first waiter rather than back to the count, so a request that
        // arrives meanwhile cannot take it and leave the waiter waiting again.
        PoolHost::Waiter* next = host.waiters.front();
        host.waiters.pop_front();
        next->may_open = true;
        next->wake.cancel();
        return;
    }
    --host.open;
}

core::Result<std::shared_ptr<ssl::context>> ConnectionPool::context_for(const std::string& key,
                                                                        const ClientTls& tls) {
    if (auto found = contexts_.find(key); found != contexts_.end()) {
        return found->second;
    }
    auto made = make_tls_context(tls);
    if (!made) {
        return made.error();
    }
    contexts_.emplace(key, *made);
    return std::move(*made);
}

asio::awaitable<core::Result<Lease>> ConnectionPool::open(PoolHost& host,
                                                          const Target& target,
                                                          const ClientTls& tls,
                                                          Clock::time_point deadline,
                                                          const std::string& shown_url,
                                                          core::Millis timeout) {
    std::shared_ptr<ssl::context> context;
    if (target.https) {
        auto found = context_for(host.key, tls);
        if (!found) {
            drop_slot(host);
            co_return found.error();
        }
        context = std::move(*found);
    }
    auto connection =
        co_await open_connection(target, tls, std::move(context), deadline, shown_url, timeout);
    if (!connection) {
        drop_slot(host);
        co_return connection.error();
    }
    ++opened_;
    co_return Lease{this, &host, std::move(*connection), false};
}

PoolHost& ConnectionPool::host(const Target& target, const ClientTls& tls) {
    auto key = pool_key(target, tls);
    auto [it, made] = hosts_.try_emplace(key);
    if (made) {
        it->second.key = std::move(key);
    }
    return it->second;
}

std::optional<Lease> ConnectionPool::take_idle(PoolHost& host, Pick pick) {
    evict_expired();
    if (pick == Pick::kFresh) {
        return std::nullopt;
    }
    if (auto idle = take_idle_connection(host, pick == Pick::kIdleChecked)) {
        return Lease{this, &host, std::move(idle), true};
    }
    return std::nullopt;
}

asio::awaitable<core::Result<Lease>> ConnectionPool::acquire(const Target& target,
                                                             const ClientTls& tls,
                                                             Clock::time_point deadline,
                                                             const std::string& shown_url,
                                                             core::Millis timeout,
                                                             Pick pick) {
    co_return co_await acquire(host(target, tls), target, tls, deadline, shown_url, timeout, pick);
}

asio::awaitable<core::Result<Lease>> ConnectionPool::acquire(PoolHost& host,
                                                             const Target& target,
                                                             const ClientTls& tls,
                                                             Clock::time_point deadline,
                                                             const std::string& shown_url,
                                                             core::Millis timeout,
                                                             Pick pick) {
    if (auto idle = take_idle(host, pick)) {
        co_return std::move(*idle);
    }
    if (pick == Pick::kFresh && host.open >= limits_.max_per_host && !host.idle.empty()) {
        // A fresh connection is wanted and the host is at its bound: an idle one makes room.
        host.idle.front().connection->close();
        host.idle.pop_front();
        --host.open;
    }
    if (host.open < limits_.max_per_host) {
        ++host.open;
        co_return co_await open(host, target, tls, deadline, shown_url, timeout);
    }
    auto executor = co_await asio::this_coro::executor;
    PoolHost::Waiter waiter{executor};
    waiter.wake.expires_at(deadline);
    host.waiters.push_back(&waiter);
    co_await waiter.wake.async_wait(kUseTuple);
    host.waiters.remove(&waiter);
    if (waiter.handed) {
        co_return Lease{this, &host, std::move(waiter.handed), true};
    }
    if (waiter.may_open) {
        co_return co_await open(host, target, tls, deadline, shown_url, timeout);
    }
    co_return core::Error{
        core::ErrorCode::kTimeout,
        fmt::format("request to {} timed out after {} waiting for one of the {} connections to {}",
                    shown_url, core::format_duration(timeout), limits_.max_per_host,
                    target.authority())};
}

void ConnectionPool::release(Lease lease, bool reusable) {
    auto connection = std::move(lease.connection_);
    if (!connection) {
        return;
    }
    PoolHost& host = *lease.host_;
    if (reusable) {
        if (!host.waiters.empty()) {
            PoolHost::Waiter* next = host.waiters.front();
            host.waiters.pop_front();
            next->handed = std::move(connection);
            next->wake.cancel();
            return;
        }
        if (static_cast<int>(host.idle.size()) < limits_.max_idle_per_host) {
            host.idle.push_back(PoolHost::Idle{std::move(connection), coarse_now()});
            return;
        }
    }
    connection->close();
    drop_slot(host);
}

}  // namespace client

struct HttpClient::Impl {
    Impl(asio::any_io_executor executor, ClientSettings settings)
        : executor(std::move(executor)),
          settings(std::move(settings)),
          pool(client::PoolLimits{.max_idle_per_host = this->settings.max_idle_per_host,
                                  .max_per_host = this->settings.max_per_host,
                                  .idle_timeout = this->settings.idle_timeout}) {}

    asio::awaitable<core::Result<ClientResponse>> fetch(ClientRequest request);

    asio::any_io_executor executor;  // documents where fetch() runs; the pool needs no other
    ClientSettings settings;
    client::ConnectionPool pool;
    ClientStats stats;
};

asio::awaitable<core::Result<ClientResponse>> HttpClient::Impl::fetch(ClientRequest request) {
    ++stats.requests;
    const std::string shown_url = redact_url(request.url);
    auto target = client::parse_target(request.url);
    if (!target) {
        co_return target.error();
    }
    const ClientTls tls = request.tls.value_or(settings.tls);
    const auto deadline = client::Clock::now() + request.timeout;
    auto lease = co_await pool.acquire(*target, tls, deadline, shown_url, request.timeout,
                                       client::Pick::kIdleChecked);
    if (!lease) {
        co_return lease.error();
    }
    // The message keeps the body, so a retry sends the same bytes again.
    auto message = client::make_message(request, *target, true);
    auto exchanged = co_await client::exchange(lease->connection(), message, request, deadline,
                                               shown_url, nullptr);
    if (!exchanged.response && exchanged.retryable && lease->reused()) {
        // The server closed the idle connection as we picked it up: the request never reached
        // it, so one fresh connection is safe.
        ++stats.retried;
        pool.release(std::move(*lease), false);
        lease = co_await pool.acquire(*target, tls, deadline, shown_url, request.timeout,
                                      client::Pick::kFresh);
        if (!lease) {
            co_return lease.error();
        }
        exchanged = co_await client::exchange(lease->connection(), message, request, deadline,
                                              shown_url, nullptr);
    } else if (lease->reused()) {
        ++stats.reused;
    }
    pool.release(std::move(*lease), exchanged.response.has_value() && exchanged.reusable);
    co_return std::move(exchanged.response);
}

HttpClient::HttpClient(asio::any_io_executor executor, ClientSettings settings)
    : impl_(std::make_unique<Impl>(std::move(executor), std::move(settings))) {}

HttpClient::~HttpClient() = default;

asio::awaitable<core::Result<ClientResponse>> HttpClient::fetch(ClientRequest request) {
    const std::string shown_url = redact_url(request.url);
    try {
        co_return co_await impl_->fetch(std::move(request));
    } catch (const std::exception& e) {
        co_return core::Error{core::ErrorCode::kInternal,
                              fmt::format("request to {} failed: {}", shown_url, e.what())};
    }
}

ClientStats HttpClient::stats() const {
    ClientStats out = impl_->stats;
    out.connections_opened = impl_->pool.opened();
    return out;
}

}  // namespace aviary::net
