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

/// Writes what of `buffers` the socket takes at once, without waiting: how much, and an error
/// other than would_block. The socket is put in non-blocking mode for this (Asio's own
/// asynchronous operations work either way). Not a coroutine: the common case, where all of it
/// fits, costs its caller no frame.
template <class Buffers>
std::pair<boost::system::error_code, std::size_t> write_now(boost::asio::ip::tcp::socket& socket,
                                                            const Buffers& buffers) {
    boost::system::error_code ec;
    if (!socket.non_blocking()) {
        socket.non_blocking(true, ec);
    }
    std::size_t written = 0;
    if (!ec) {
        written = socket.write_some(buffers, ec);
    }
    if (ec == boost::asio::error::would_block) {
        ec = {};
    }
    return {ec, written};
}

/// The rest of `buffers` after write_now() took `written` of them, through `stream` (whose
/// lowest layer is that socket), with async_write.
template <class Stream, class Buffers>
boost::asio::awaitable<std::pair<boost::system::error_code, std::size_t>> write_later(
    Stream& stream, const Buffers& buffers, std::size_t written) {
    boost::beast::buffers_suffix<Buffers> rest{buffers};
    rest.consume(written);
    auto [ec, later] = co_await boost::asio::async_write(
        stream, rest, boost::asio::as_tuple(boost::asio::use_awaitable));
    co_return std::pair{ec, written + later};
}

}  // namespace aviary::net
