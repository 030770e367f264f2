#include "api/lease_waits.hpp"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace aviary::api {

namespace asio = boost::asio;

struct PendingAcquire {
    explicit PendingAcquire(asio::any_io_executor executor) : wake(std::move(executor)) {}

    asio::steady_timer wake;  // cancelled when the grant arrives; lives on the request's strand
    std::optional<fleet::Acquired> granted;  // set on the strand
    fleet::Waiter waiter;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point deadline;
};

const fleet::Waiter& LeaseWaits::waiter_of(const PendingAcquire& pending) {
    return pending.waiter;
}

asio::awaitable<core::Result<LeaseWaits::Started>> LeaseWaits::start(fleet::AcquireRequest request,
                                                                     core::Millis wait,
                                                                     fleet::Caller caller) {
    // Not a coroutine: each way gets a frame of its own, the common one a small one.
    if (wait.count() == 0) {
        return acquire_now(std::move(request), std::move(caller));
    }
    return acquire_or_queue(std::move(request), wait, std::move(caller));
}

/// No Wait: a lease now or a refusal. No thread waits on the commit: the answer comes from the
/// store's writer thread.
asio::awaitable<core::Result<LeaseWaits::Started>> LeaseWaits::acquire_now(
    fleet::AcquireRequest request, fleet::Caller caller) {
    auto start = [this, &request, &caller](fleet::Fleet::AcquiredCallback done) {
        fleet_.acquire_async(request, caller, std::move(done));
    };
    auto acquired = co_await net::await_answer<core::Result<fleet::Acquired>>(std::move(start));
    if (!acquired) {
        co_return acquired.error();
    }
    co_return Started{std::move(*acquired)};
}

/// With a Wait: a lease now, or a place in the queue that finish() waits on.
asio::awaitable<core::Result<LeaseWaits::Started>> LeaseWaits::acquire_or_queue(
    fleet::AcquireRequest request, core::Millis wait, fleet::Caller caller) {
    auto executor = co_await asio::this_coro::executor;
    auto pending = std::make_shared<PendingAcquire>(executor);
    pending->deadline = pending->started + wait;
    // Runs on the store's writer thread after the commit that served the waiter: hand the
    // lease over to the request's strand and wake it, nothing more.
    fleet::GrantedCallback on_granted = [pending](fleet::Acquired acquired) {
        asio::post(pending->wake.get_executor(),
                   [pending, acquired = std::move(acquired)]() mutable {
                       pending->granted = std::move(acquired);
                       pending->wake.cancel();
                   });
    };
    auto work = [this, request, wait, caller, on_granted] {
        return fleet_.acquire_or_wait(request, wait, caller, on_granted);
    };
    auto outcome = co_await net::offload(pool_, std::move(work));
    if (!outcome) {
        co_return outcome.error();
    }
    if (auto* acquired = std::get_if<fleet::Acquired>(&*outcome)) {
        co_return Started{std::move(*acquired)};
    }
    pending->waiter = std::get<fleet::Waiter>(*outcome);
    co_return Started{pending};
}

asio::awaitable<core::Result<fleet::Acquired>> LeaseWaits::finish(
    std::shared_ptr<PendingAcquire> pending, Report report) {
    auto heartbeat = fleet_.settings().wait_heartbeat;
    while (!pending->granted) {
        auto now = std::chrono::steady_clock::now();
        if (now >= pending->deadline) {
            co_await drop(pending->waiter.ticket);
            co_return core::Error{
                core::ErrorCode::kTimeout,
                fmt::format("gave up waiting after {}: position {} in the queue",
                            core::format_duration(
                                std::chrono::duration_cast<core::Millis>(now - pending->started)),
                            pending->waiter.position)};
        }
        pending->wake.expires_after(
            std::min<std::chrono::steady_clock::duration>(heartbeat, pending->deadline - now));
        co_await pending->wake.async_wait(asio::as_tuple(asio::use_awaitable));
        if (pending->granted) {
            break;
        }
        if (stopping_()) {
            co_await drop(pending->waiter.ticket);
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  "aviary is shutting down: the wait was dropped, try again"};
        }
        auto ticket = pending->waiter.ticket;
        auto work = [this, ticket] { return fleet_.waiter(ticket); };
        if (auto current = co_await net::offload(pool_, std::move(work))) {
            pending->waiter = *current;
        }
        auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - pending->started);
        if (!pending->granted && !co_await report(pending->waiter, elapsed)) {
            co_await drop(pending->waiter.ticket);
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  "the client went away while waiting"};
        }
    }
    co_return std::move(*pending->granted);
}

asio::awaitable<void> LeaseWaits::abandon(std::shared_ptr<PendingAcquire> pending) {
    co_await drop(pending->waiter.ticket);
    if (pending->granted) {
        co_await undeliverable(pending->granted->leases);
    }
}

asio::awaitable<void> LeaseWaits::drop(std::string ticket) {
    auto work = [this, ticket] { fleet_.cancel_wait(ticket); };
    co_await net::offload(pool_, std::move(work));
}

asio::awaitable<void> LeaseWaits::undeliverable(std::vector<core::Lease> leases) {
    if (leases.empty()) {
        co_return;
    }
    auto id = leases.front().id;
    auto work = [this, id] {
        return fleet_.release_lease(id, fleet::Caller{.identity = "aviary", .admin = true});
    };
    (void)co_await net::offload(pool_, std::move(work));
}

}  // namespace aviary::api
