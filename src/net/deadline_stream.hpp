#pragma once
// Private to src/net (and its tests): the socket layer under every server connection, plain or
// under TLS (asio::ssl::stream<DeadlineStream>). Sessions, and the WebSocket code that takes a
// connection over from a session, instantiate on both.
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <limits>
#include <type_traits>
#include <utility>

#include "net/coarse_clock.hpp"
#include "net/draining_buffer.hpp"

namespace aviary::net {

/// A socket with a lazy deadline: the subset of beast::tcp_stream the session uses, without a
/// timer operation armed and cancelled around every read and write (that was the largest
/// share of /healthz's CPU; bench/RESULTS.md). expires_after() only stores the deadline; the
/// server's deadline sweep closes the socket of a connection past it, which fails the pending
/// operation as tcp_stream's timeout would.
class DeadlineStream {
public:
    using socket_type = boost::asio::ip::tcp::socket;
    using executor_type = socket_type::executor_type;
    /// asio::ssl::stream reaches the socket through these.
    using lowest_layer_type = socket_type::lowest_layer_type;
    using Clock = std::chrono::steady_clock;

    explicit DeadlineStream(socket_type socket) : socket_(std::move(socket)) {}

    executor_type get_executor() noexcept { return socket_.get_executor(); }
    socket_type& socket() { return socket_; }
    lowest_layer_type& lowest_layer() { return socket_.lowest_layer(); }
    const lowest_layer_type& lowest_layer() const { return socket_.lowest_layer(); }

    /// From coarse_now(): at most one kernel tick early, and set twice per request.
    void expires_after(Clock::duration after) {
        deadline_.store((coarse_now() + after).time_since_epoch().count(),
                        std::memory_order_relaxed);
    }
    void expires_never() { deadline_.store(kNever, std::memory_order_relaxed); }
    /// Safe from any thread: the sweep reads it beside the loop that writes it.
    bool expired(Clock::time_point now) const {
        return now.time_since_epoch().count() >= deadline_.load(std::memory_order_relaxed);
    }
    /// Stops sending; the peer reads end of stream once what is queued has gone.
    void shutdown_send() {
        boost::system::error_code ec;
        socket_.shutdown(socket_type::shutdown_send, ec);
    }
    void close() {
        boost::system::error_code ec;
        socket_.shutdown(socket_type::shutdown_both, ec);
        socket_.close(ec);
    }
    /// A read into one buffer waits for readiness after a short read instead of trying first
    /// (draining_buffer.hpp): the session's next request, a TLS record, a body's next piece.
    template <class Buffers, class Token>
    auto async_read_some(const Buffers& buffers, Token&& token) {
        if constexpr (std::is_convertible_v<const Buffers&, boost::asio::mutable_buffer>) {
            return socket_.async_read_some(DrainingBuffer{buffers}, std::forward<Token>(token));
        } else {
            return socket_.async_read_some(buffers, std::forward<Token>(token));
        }
    }
    template <class Buffers, class Token>
    auto async_write_some(const Buffers& buffers, Token&& token) {
        return socket_.async_write_some(buffers, std::forward<Token>(token));
    }

private:
    static constexpr Clock::rep kNever = std::numeric_limits<Clock::rep>::max();
    socket_type socket_;
    std::atomic<Clock::rep> deadline_{kNever};
};

}  // namespace aviary::net
