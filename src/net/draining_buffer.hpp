#pragma once
// Private to src/net: reads that let a short read mark a TCP socket drained, so the next read
// waits for the socket's readiness instead of first trying a recv that fails with EAGAIN.
//
// Asio tries every read on a socket before it waits (a "speculative" read), and stops trying
// only after a read returned end of stream: a read that took all the socket held is tried
// again the next time, and fails. On a request/response connection that is one failed recv per
// wait: two per proxied request, one for the client's next request and one for the upstream's
// answer, which cannot have come yet. nginx keeps the rule this header gives Asio: a stream
// read that fills less than its buffer took everything there was (TCP returns short only
// then), so the socket is not read again until the poller says new bytes came. Asio already has
// the flag that rule needs (per socket and direction, cleared by an "exhausted" read, set again
// by every readiness event); a read into a DrainingBuffer reports a short read as exhausted.
//
// Nothing waits longer for it: bytes that arrive after the short read raise a new readiness
// event (the socket is registered edge-triggered), which sets the flag again before the next
// read starts or completes that read if it is already waiting. docs/architecture.md, "Reads
// that do not fail".
#include <boost/asio/buffer.hpp>
#include <boost/version.hpp>

namespace aviary::net {

/// One buffer to read a stream socket into; see above. Reads into any other buffer type keep
/// Asio's behaviour.
class DrainingBuffer : public boost::asio::mutable_buffer {
public:
    explicit DrainingBuffer(boost::asio::mutable_buffer buffer) noexcept : mutable_buffer(buffer) {}
};

}  // namespace aviary::net

// The specialisation replaces one function of Asio's epoll read operation, written against
// Boost 1.81 (Debian bookworm's; docs/architecture.md names what to check on another). On any
// other version reads into a DrainingBuffer are plain speculative reads: slower, never wrong.
#if BOOST_VERSION / 100 == 1081 && defined(__linux__)
#include <boost/asio/detail/reactive_socket_recv_op.hpp>

namespace aviary::net {
/// Whether a short read into a DrainingBuffer ends the trying (else: Asio's own reads).
inline constexpr bool kShortReadDrains = true;
}  // namespace aviary::net

namespace boost::asio::detail {

template <>
inline reactor_op::status reactive_socket_recv_op_base<aviary::net::DrainingBuffer>::do_perform(
    reactor_op* base) {
    auto* op = static_cast<reactive_socket_recv_op_base*>(base);
    const mutable_buffer& buffer = op->buffers_;
    const bool stream = (op->state_ & socket_ops::stream_oriented) != 0;
    if (!socket_ops::non_blocking_recv1(op->socket_, buffer.data(), buffer.size(), op->flags_,
                                        stream, op->ec_, op->bytes_transferred_)) {
        return not_done;  // EAGAIN: the reactor waits for readiness, then calls this again
    }
    // Asio's own rule is "== 0" (end of stream, or an error): a short read drains as well.
    return stream && op->bytes_transferred_ < buffer.size() ? done_and_exhausted : done;
}

}  // namespace boost::asio::detail
#else
namespace aviary::net {
inline constexpr bool kShortReadDrains = false;
}  // namespace aviary::net
#endif
