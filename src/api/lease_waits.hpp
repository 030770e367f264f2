#pragma once
// Private to api: acquires that wait. A waiting acquire is a waiter row in the store (fleet);
// this side holds the HTTP request open on its strand until fleet's grant callback arrives,
// the deadline passes, the client goes away, or the server shuts down — and in every case but
// the grant, drops the waiter (fleet releases a grant that raced with the drop).
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <variant>

#include "fleet/fleet.hpp"
#include "net/net.hpp"

namespace aviary::api {

/// One waiting acquire, owned jointly by the request coroutine and fleet's callback.
struct PendingAcquire;

class LeaseWaits {
public:
    using Started = std::variant<fleet::Acquired, std::shared_ptr<PendingAcquire>>;
    /// Called every heartbeat with the waiter's current position; false: the client is gone.
    using Report = std::function<net::asio::awaitable<bool>(const fleet::Waiter&,
                                                            std::chrono::milliseconds elapsed)>;

    LeaseWaits(fleet::Fleet& fleet, net::BlockingPool& pool, std::function<bool()> stopping)
        : fleet_(fleet), pool_(pool), stopping_(std::move(stopping)) {}

    /// Acquires at once, or queues a waiter for up to `wait` and returns it pending.
    net::asio::awaitable<core::Result<Started>> start(fleet::AcquireRequest request,
                                                      core::Millis wait,
                                                      fleet::Caller caller);
    /// Waits for a pending acquire to be served, reporting progress each heartbeat.
    /// Errors: kTimeout at the deadline, kUnavailable on shutdown, kCancelled-like
    /// kUnavailable when report() says the client has gone.
    net::asio::awaitable<core::Result<fleet::Acquired>> finish(
        std::shared_ptr<PendingAcquire> pending, Report report);
    /// The ticket of a pending acquire (for the first progress line).
    static const fleet::Waiter& waiter_of(const PendingAcquire& pending);
    /// Drops a pending acquire whose client is already gone.
    net::asio::awaitable<void> abandon(std::shared_ptr<PendingAcquire> pending);
    /// Gives back a lease that was granted but could not be delivered.
    net::asio::awaitable<void> undeliverable(std::vector<core::Lease> leases);

private:
    net::asio::awaitable<core::Result<Started>> acquire_now(fleet::AcquireRequest request,
                                                            fleet::Caller caller);
    net::asio::awaitable<core::Result<Started>> acquire_or_queue(fleet::AcquireRequest request,
                                                                 core::Millis wait,
                                                                 fleet::Caller caller);
    net::asio::awaitable<void> drop(std::string ticket);

    fleet::Fleet& fleet_;
    net::BlockingPool& pool_;
    std::function<bool()> stopping_;
};

}  // namespace aviary::api
