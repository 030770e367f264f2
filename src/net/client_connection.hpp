#pragma once
// Private to src/net: one outbound connection, plain or TLS, and the request/response exchange
// that fetch(), HttpClient and ReverseProxy share. Beast and OpenSSL live here and in the .cpp
// files, never in net.hpp.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "net/net.hpp"

namespace aviary::net::client {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

inline constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
inline constexpr std::uint32_t kResponseHeaderLimit = std::uint32_t{64} * 1024;

/// Where a URL points.
struct Target {
    bool https = false;
    std::string host;         // without brackets: what the resolver takes
    std::string host_header;  // as written in the URL, "[::1]:8443"
    std::string port;
    std::string path;  // origin-form, "/" when the URL has none

    /// "127.0.0.1:443", "[::1]:8443": how messages name the peer.
    std::string authority() const;
};

/// Errors: kInvalidArgument naming the (redacted) URL.
core::Result<Target> parse_target(const std::string& url);

/// A TLS client context for `tls`: the trust store, the client certificate and TLS 1.2 as the
/// floor. Errors: kInvalidArgument naming an unreadable file.
core::Result<std::shared_ptr<ssl::context>> make_tls_context(const ClientTls& tls);

/// The key a pooled connection is filed under: scheme, host, port and TLS identity.
std::string pool_key(const Target& target, const ClientTls& tls);

/// A connected socket, wrapped in TLS for https. Satisfies Beast's AsyncStream, so http::async_*
/// run on it directly whichever it is.
class ClientConnection {
public:
    using executor_type = asio::any_io_executor;

    ClientConnection(const executor_type& executor, std::shared_ptr<ssl::context> tls);
    ~ClientConnection();
    ClientConnection(const ClientConnection&) = delete;
    ClientConnection& operator=(const ClientConnection&) = delete;

    executor_type get_executor() { return tcp().get_executor(); }
    beast::tcp_stream& tcp() { return tls_ ? tls_->next_layer() : *plain_; }
    ssl::stream<beast::tcp_stream>* tls() { return tls_ ? &*tls_ : nullptr; }

    // Both branches return the same type: the completion signature is the same.
    template <class MutableBuffers, class Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token) {
        if (tls_) {
            return tls_->async_read_some(buffers, std::forward<Token>(token));
        }
        return plain_->async_read_some(buffers, std::forward<Token>(token));
    }
    template <class ConstBuffers, class Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token) {
        if (tls_) {
            return tls_->async_write_some(buffers, std::forward<Token>(token));
        }
        return plain_->async_write_some(buffers, std::forward<Token>(token));
    }

    /// True when an idle connection cannot carry another request: bytes nobody asked for are
    /// buffered, or (`peek`: one recv with MSG_PEEK) the peer closed it or (plain HTTP) sent some.
    bool looks_closed(bool peek = true);
    void close();

    /// The deadline for operations made on tcp().socket() directly (plain TCP), which Beast's
    /// stream does not time. Cheap to move on every request: one timer per connection, armed
    /// lazily; when it fires before the deadline it re-arms for it, and past it cancels the
    /// socket's operations (they fail with operation_aborted, and timed_out() says why). Costs
    /// one timer operation when the deadline moves earlier than the armed one, none otherwise.
    void socket_deadline(Clock::time_point deadline);
    /// The socket_deadline() passed and the socket's operations were cancelled for it.
    bool timed_out() const;

    /// Bytes read past the last response; they belong to the next one.
    beast::flat_buffer buffer;

private:
    struct Watch;

    std::shared_ptr<ssl::context> context_;  // outlives tls_, which points into it
    std::shared_ptr<Watch> watch_;           // made by the first socket_deadline()
    std::optional<beast::tcp_stream> plain_;
    std::optional<ssl::stream<beast::tcp_stream>> tls_;
};

/// Resolves, connects and (https) runs the TLS handshake, all before `deadline`. Errors:
/// kUnavailable (resolve, refused, handshake), kTimeout. `shown_url` is already redacted.
asio::awaitable<core::Result<std::unique_ptr<ClientConnection>>> open_connection(
    const Target& target,
    const ClientTls& tls,
    std::shared_ptr<ssl::context> context,
    Clock::time_point deadline,
    const std::string& shown_url,
    core::Millis timeout);

/// What went wrong, for callers (the proxy) that answer differently per kind.
enum class Failure { kRefused, kReset, kTimeout, kTls };
Failure failure_kind(const core::Error& error);

/// Maps an I/O failure to the contract's codes. Beast reports a passed deadline as timeout.
core::Error io_error(std::string_view step,
                     const beast::error_code& ec,
                     const std::string& shown_url,
                     core::Millis timeout,
                     std::size_t max_body_bytes);

http::request<http::string_body> make_message(ClientRequest& request,
                                              const Target& target,
                                              bool keep_alive);
ClientResponse response_head(const http::response_header<>& header);
bool is_idempotent(http::verb method);

using BodySink = std::function<void(std::string_view chunk)>;

struct Exchanged {
    core::Result<ClientResponse> response;
    /// The connection may carry another request.
    bool reusable = false;
    /// Failed before any response byte, and sending it again cannot repeat a side effect.
    bool retryable = false;
};

/// Sends `message` on `connection` and reads the response before `deadline`: the body into
/// ClientResponse::body, or to `sink` piece by piece as it arrives when `sink` is set.
asio::awaitable<Exchanged> exchange(ClientConnection& connection,
                                    http::request<http::string_body>& message,
                                    const ClientRequest& request,
                                    Clock::time_point deadline,
                                    const std::string& shown_url,
                                    const BodySink* sink);

}  // namespace aviary::net::client
