#pragma once
// Writing to a plain TCP socket without a trip through the scheduler when it can be helped.
// Asio completes an asynchronous write that finished at once (the common case: the socket's
// send buffer has room) by posting its handler, which costs a round of the event loop (an
// epoll_wait with a zero timeout) per message. Only net's .cpp files include this.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <cstddef>
#include <utility>

namespace aviary::net {

/// Nothing to prepare before write_now_or_later() waits.
struct NoPreparation {
    void operator()() const {}
};

/// Writes all of `buffers` through `stream`, whose lowest layer is `socket` (plain TCP, no
/// TLS): first at once, without waiting, then what did not fit with async_write, after calling
/// `before_waiting` (which may set the stream's deadline, a cost the common case skips). The
/// socket is put in non-blocking mode for this (Asio's own asynchronous operations work either
/// way).
template <class Stream, class Buffers, class Prepare = NoPreparation>
boost::asio::awaitable<std::pair<boost::system::error_code, std::size_t>> write_now_or_later(
    Stream& stream,
    boost::asio::ip::tcp::socket& socket,
    const Buffers& buffers,
    Prepare before_waiting = {}) {
    boost::system::error_code ec;
    if (!socket.non_blocking()) {
        socket.non_blocking(true, ec);
    }
    std::size_t written = 0;
    if (!ec) {
        written = socket.write_some(buffers, ec);
    }
    if (ec && ec != boost::asio::error::would_block) {
        co_return std::pair{ec, written};
    }
    if (written == boost::asio::buffer_size(buffers)) {
        co_return std::pair{boost::system::error_code{}, written};
    }
    boost::beast::buffers_suffix<Buffers> rest{buffers};
    rest.consume(written);
    before_waiting();
    auto [later_ec, later] = co_await boost::asio::async_write(
        stream, rest, boost::asio::as_tuple(boost::asio::use_awaitable));
    co_return std::pair{later_ec, written + later};
}

}  // namespace aviary::net
