#pragma once
// Parsing what a connection's buffer already holds, without I/O. Beast's async reads do the same
// first, but when the buffer suffices they complete through the scheduler (a post, and with it
// one more round of the event loop per message); a keep-alive request or a small response
// usually arrives whole in one read, so this is the common case. Only net's .cpp files include
// this (it needs Beast).
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>

namespace aviary::net {

/// Feeds `buffer` to `parser` until `enough()` or the buffer runs out; consumes what was used.
/// True when `enough()` holds or the parser failed (`ec` set, as the async read would have
/// reported it); false when more bytes must be read (then call the async read, which goes on
/// from the parser's state and what is left in the buffer).
template <class Parser, class Enough>
bool parse_buffered(Parser& parser,
                    boost::beast::flat_buffer& buffer,
                    Enough enough,
                    boost::beast::error_code& ec) {
    while (!enough() && buffer.size() > 0) {
        const auto used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        if (ec == boost::beast::http::error::need_more) {
            ec = {};
            return false;
        }
        if (ec) {
            return true;
        }
        if (used == 0) {
            return false;
        }
    }
    return enough();
}

}  // namespace aviary::net
