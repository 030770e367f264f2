#include <atomic>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <mutex>
#include <stdexcept>

#include "net/net.hpp"

namespace aviary::net {

struct BlockingPool::Impl {
    explicit Impl(int threads) : pool(static_cast<std::size_t>(threads < 1 ? 1 : threads)) {}

    asio::thread_pool pool;
    std::mutex mu;         // orders "post work" against "stop accepting work"
    bool stopped = false;  // guarded by mu
    std::mutex join_mu;    // stop() may race with itself (wiring and destructor)
};

BlockingPool::BlockingPool(int threads) : impl_(std::make_unique<Impl>(threads)) {}

BlockingPool::~BlockingPool() {
    stop();
}

asio::awaitable<void> BlockingPool::run(std::function<void()> work) {
    // Runs the work on the pool, then completes on the caller's own executor. The work guard
    // keeps the caller's executor alive meanwhile, so the completion always has somewhere to go.
    // Named, not a temporary inside co_await (GCC 12 destroys those twice; docs/architecture.md).
    auto initiation = [impl = impl_.get()](auto handler, std::function<void()> work) {
        auto home = asio::make_work_guard(handler);
        std::lock_guard lock{impl->mu};
        if (impl->stopped) {
            // Work posted after join() would never run: fail the caller instead of parking it.
            auto error = std::make_exception_ptr(std::runtime_error("blocking pool is stopped"));
            asio::post(home.get_executor(), asio::append(std::move(handler), error));
            return;
        }
        asio::post(impl->pool, [handler = std::move(handler), work = std::move(work),
                                home = std::move(home)]() mutable {
            std::exception_ptr error;
            try {
                work();
            } catch (...) {
                error = std::current_exception();
            }
            auto executor = home.get_executor();
            home.reset();
            asio::post(executor, asio::append(std::move(handler), error));
        });
    };
    // use_awaitable treats a leading exception_ptr as the error: it is rethrown right here.
    co_await asio::async_initiate<const asio::use_awaitable_t<>, void(std::exception_ptr)>(
        std::move(initiation), asio::use_awaitable, std::move(work));
}

asio::awaitable<void> await_wake(std::function<void(std::function<void()>)> begin) {
    // As run(): the work guard keeps the caller's executor alive until the wake-up, which
    // completes there. Named, not a temporary inside co_await (GCC 12).
    auto initiation = [](auto handler, std::function<void(std::function<void()>)> begin) {
        auto home = asio::make_work_guard(handler);
        using Handler = decltype(handler);
        using Home = decltype(home);
        // std::function copies what it holds, and a completion handler moves only. The caller
        // resumes once both the wake-up has come and `begin` has returned: a wake from another
        // thread may come first, and on a multi-threaded executor the caller could then run on
        // (and free what `begin` still uses) while `begin` is finishing.
        struct Waiting {
            Handler handler;
            Home home;
            std::atomic<int> left{2};
        };
        auto waiting = std::make_shared<Waiting>(std::move(handler), std::move(home));
        auto arrive = [waiting] {
            if (waiting->left.fetch_sub(1, std::memory_order_acq_rel) != 1) {
                return;
            }
            auto executor = waiting->home.get_executor();
            waiting->home.reset();
            asio::post(executor, std::move(waiting->handler));
        };
        begin(std::function<void()>{arrive});
        arrive();
    };
    co_await asio::async_initiate<const asio::use_awaitable_t<>, void()>(
        std::move(initiation), asio::use_awaitable, std::move(begin));
}

void BlockingPool::stop() {
    std::lock_guard join_lock{impl_->join_mu};
    {
        std::lock_guard lock{impl_->mu};
        if (impl_->stopped) {
            return;
        }
        impl_->stopped = true;
    }
    // join() without stop() first: queued work still runs, as the header promises.
    impl_->pool.join();
}

}  // namespace aviary::net
