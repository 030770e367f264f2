#pragma once
// Private to src/net: how an HTTP session hands its connection to a WebSocket. The template is
// defined in websocket.cpp and instantiated there for both server streams, so Beast's websocket
// headers are parsed by that one file, not by every file that includes http_session.hpp.
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <string>

#include "net/net.hpp"

namespace aviary::net::server_side {

struct Connection;
struct SessionHost;

/// Accepts the upgrade `head` on `stream` (the 101 carries response.headers) and runs
/// response.websocket until it returns and the close handshake is over. `buffer_empty`: the
/// caller read nothing past the head (a client may not send frames before our 101).
template <class Stream>
asio::awaitable<void> serve_websocket(
    Stream& stream,
    Connection& connection,
    SessionHost& host,
    const boost::beast::http::request<boost::beast::http::empty_body>& head,
    Response& response,
    const std::string& remote);

}  // namespace aviary::net::server_side
