#pragma once
// Private to src/net (and its tests): one server connection's life, from the TLS handshake
// through HTTP/1.1 requests to a hand-over (a 101 tunnel; WebSocket hooks in at
// Session::respond). Session is a template over its stream, DeadlineStream (plain HTTP) or
// TlsStream, and is instantiated in http_server.cpp; code that takes a connection over works
// on the same stream and buffer. Beast is fine here: only net's .cpp files include this.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "net/buffered_parse.hpp"
#include "net/deadline_stream.hpp"
#include "net/net.hpp"
#include "net/plain_head.hpp"
#include "net/tls_context.hpp"
#include "net/websocket_session.hpp"
#include "net/write_now.hpp"

namespace aviary::net::server_side {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using TlsStream = ssl::stream<DeadlineStream>;

inline constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
inline constexpr std::size_t kFirstReadBytes = 4096;
// How long a connection we are refusing may keep sending before we close it. Closing with unread
// input makes the kernel send RST, which can destroy our error reply before the client reads it.
inline constexpr core::Millis kLingerMax{2000};
// A streamed body is read in pieces of at most this much.
inline constexpr std::size_t kBodyPieceBytes = std::size_t{64} * 1024;
// The rest of a streamed body a handler did not read is drained (so the connection can carry
// the next request) only when it is at most this long and arrives within kDrainWait; else the
// connection closes after the response.
inline constexpr std::size_t kDrainMaxBytes = std::size_t{64} * 1024;
inline constexpr core::Millis kDrainWait{1000};
inline constexpr std::size_t kTunnelReadBytes = std::size_t{16} * 1024;
inline constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

inline std::string format_endpoint(const tcp::endpoint& endpoint) {
    const auto address = endpoint.address();
    if (address.is_v6()) {
        return fmt::format("[{}]:{}", address.to_string(), endpoint.port());
    }
    return fmt::format("{}:{}", address.to_string(), endpoint.port());
}

/// Whether `target` is an absolute path with nothing to decode and no query: '/' and RFC 3986
/// pchar without '%'. Its path is then the target itself, without a URL parser's pass; anything
/// else goes through boost::urls (which also refuses what is not a valid origin-form).
inline bool is_plain_path(std::string_view target) {
    static constexpr auto kAllowed = alphanumerics_and("-._~!$&'()*+,;=:@/");
    return !target.empty() && target.front() == '/' &&
           std::all_of(target.begin(), target.end(), [](unsigned char c) { return kAllowed[c]; });
}

inline Response error_response(int status, std::string text) {
    Response response;
    response.status = status;
    response.body = std::move(text);
    return response;
}

inline bool is_http_error(const beast::error_code& ec) {
    return &ec.category() == &http::make_error_code(http::error::bad_target).category();
}

/// Whether a header value holds a CR or LF, which would end its line on the wire.
inline bool has_line_break(std::string_view value) {
    return std::any_of(value.begin(), value.end(), [](char c) { return c == '\r' || c == '\n'; });
}

/// Sets a handler's headers on a message for Beast to serialize, which writes names and values
/// as they are. So a name that is not a token is left out (the count is returned, for the log),
/// and CR and LF in a value become spaces, as Go's net/http does: a value cannot end its line
/// and start a header of its own.
template <class Body>
int set_headers(http::response<Body>& message, const Response& response) {
    message.set(http::field::server, "aviary");
    if (!response.content_type.empty()) {
        message.set(http::field::content_type, response.content_type);
    }
    int left_out = 0;
    const auto insert = [&message, &left_out](std::string_view name, std::string_view value) {
        if (!is_token(name)) {
            ++left_out;
            return;
        }
        if (!has_line_break(value)) {
            message.insert(name, value);
            return;
        }
        std::string clean{value};
        std::replace_if(
            clean.begin(), clean.end(), [](char c) { return c == '\r' || c == '\n'; }, ' ');
        message.insert(name, clean);
    };
    for (const auto& header : response.headers) {
        insert(header.name, header.value);
    }
    for_each_header_line(response.header_lines, insert);
    return left_out;
}

// 1xx, 204 and 304 carry no body by definition; Beast refuses to serialise one.
inline bool status_allows_body(int status) {
    return status >= 200 && status != 204 && status != 304;
}

/// Whether a handler's header can go on the wire as it is, with nothing of Beast's rules to
/// apply: a token for a name that is not one Beast would merge or replace (Connection,
/// Content-Length, Transfer-Encoding), and a value without CR or LF. One pass over each, as this
/// runs for every header of every response.
inline bool is_plain_header(const Header& header) {
    const std::string_view name = header.name;
    if (!is_token(name)) {
        return false;
    }
    switch (name.size()) {
        case 10:
            if (equals_lowercase(name, "connection")) {
                return false;
            }
            break;
        case 14:
            if (equals_lowercase(name, "content-length")) {
                return false;
            }
            break;
        case 17:
            if (equals_lowercase(name, "transfer-encoding")) {
                return false;
            }
            break;
        default:
            break;
    }
    return !has_line_break(header.value);
}

/// The head of a response with a buffered body, in one string: the bytes Beast's serializer
/// writes for the same message (set_headers, keep_alive(), prepare_payload()), without building
/// its field list. Room is reserved for `room_after` more bytes (the body, when the caller sends
/// it in the same buffer). Nullopt when a handler set a header Beast's rules would merge or
/// replace (Connection, Content-Length, Transfer-Encoding) or one that cannot go on the wire as
/// it is (is_plain_header).
inline std::optional<std::string> format_response_head(const Response& response,
                                                       int status,
                                                       unsigned version,
                                                       bool keep_alive,
                                                       std::size_t body_size,
                                                       std::size_t room_after = 0) {
    using namespace std::string_view_literals;
    const auto reason = http::obsolete_reason(static_cast<http::status>(status));
    // An upper bound of the head's size: the fixed parts at their longest (a 3-digit status,
    // "Connection: keep-alive", a 20-digit length) come to 111 bytes.
    std::size_t size =
        128 + reason.size() + response.content_type.size() + response.header_lines.size();
    for (const auto& header : response.headers) {
        if (!is_plain_header(header)) {
            return std::nullopt;
        }
        size += header.name.size() + header.value.size() + 4;
    }
    // Written through a pointer into the sized string, then cut to length: every response
    // comes through here, and a string append per piece cost more than the copying itself.
    std::string head;
    head.reserve(size + room_after);
    head.resize(size);
    SizedWriter writer{head};
    const auto put = [&writer](std::string_view piece) { writer.append(piece); };
    const auto put_number = [&writer](std::uint64_t number) { writer.put_number(number); };
    put(version == 10 ? "HTTP/1.0 "sv : "HTTP/1.1 "sv);
    put_number(static_cast<std::uint64_t>(status));
    put(" "sv);
    put({reason.data(), reason.size()});
    put("\r\nServer: aviary\r\n"sv);
    if (!response.content_type.empty()) {
        put("Content-Type: "sv);
        put(response.content_type);
        put("\r\n"sv);
    }
    for (const auto& header : response.headers) {
        put(header.name);
        put(": "sv);
        put(header.value);
        put("\r\n"sv);
    }
    put(response.header_lines);
    if (version == 10 && keep_alive) {
        put("Connection: keep-alive\r\n"sv);
    } else if (version != 10 && !keep_alive) {
        put("Connection: close\r\n"sv);
    }
    if (status_allows_body(status)) {
        put("Content-Length: "sv);
        put_number(body_size);
        put("\r\n"sv);
    }
    put("\r\n"sv);
    head.resize(writer.written(head));
    return head;
}

/// One accepted socket. Shared by its session coroutine and by the server (the registry, the
/// deadline sweep, stop()), which reach it through this base; everything but the stream's
/// construction happens on the socket's loop (one thread, so it serialises like a strand).
struct Connection {
    virtual ~Connection() = default;
    /// The socket layer under the stream: deadlines and closing.
    virtual DeadlineStream& tcp() = 0;

    bool idle = false;  // loop only: no request in progress, stop() may close it at once
    /// Loop only: set while the connection is a WebSocket, which stop() asks to close
    /// (1001) instead of waiting for a response that never ends.
    std::function<void()> on_stopping;
};

template <class Stream>
struct StreamConnection;

template <>
struct StreamConnection<DeadlineStream> final : Connection {
    explicit StreamConnection(tcp::socket socket) : stream(std::move(socket)) {}
    DeadlineStream& tcp() override { return stream; }

    DeadlineStream stream;
};

template <>
struct StreamConnection<TlsStream> final : Connection {
    StreamConnection(tcp::socket socket, std::shared_ptr<ssl::context> context_in)
        : context(std::move(context_in)), stream(std::move(socket), *context) {}
    DeadlineStream& tcp() override { return stream.next_layer(); }

    // The context this connection started with: a reload makes a new one for later
    // connections, and this one must live as long as the stream made from it.
    std::shared_ptr<ssl::context> context;
    TlsStream stream;
};

/// What a session needs from the server that runs it; the server (http_server.cpp) is one.
struct SessionHost {
    SessionHost(ServerSettings settings_in, Handler handler_in, BodyPolicy streams_body_in)
        : settings(std::move(settings_in)),
          handler(std::move(handler_in)),
          streams_body(std::move(streams_body_in)),
          log(core::logger("net")) {}
    virtual ~SessionHost() = default;
    SessionHost(const SessionHost&) = delete;
    SessionHost& operator=(const SessionHost&) = delete;

    /// Called by a session as its last act: the connection is closed and leaves the registry.
    virtual void unregister(Connection* connection) = 0;

    ServerSettings settings;
    Handler handler;
    BodyPolicy streams_body;
    std::shared_ptr<spdlog::logger> log;
    std::atomic<bool> stopping{false};
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> tls_handshake_failures{0};
    std::atomic<std::int64_t> websockets{0};
};

// ---------------------------------------------------------------------------------------------
// Session: one per connection, on the connection's loop.

template <class Stream>
class Session {
public:
    static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
    using ConnectionPtr = std::shared_ptr<StreamConnection<Stream>>;

    Session(SessionHost& server, ConnectionPtr connection)
        : server_(server),
          connection_(std::move(connection)),
          stream_(connection_->stream),
          tcp_(connection_->tcp()) {}

    /// The connection's whole life: the TLS handshake, requests until close, then unregisters.
    static asio::awaitable<void> run(SessionHost& server, ConnectionPtr connection);

private:
    class ChunkWriter;
    class StreamedBody;
    class StreamTunnel;

    asio::awaitable<void> serve();
    asio::awaitable<bool> handshake();
    asio::awaitable<bool> serve_one();
    asio::awaitable<bool> serve_buffered();
    asio::awaitable<bool> serve_streamed();
    asio::awaitable<bool> answer();
    asio::awaitable<bool> await_first_byte();
    asio::awaitable<beast::error_code> read_head(http::request_parser<http::empty_body>& parser);
    asio::awaitable<beast::error_code> read_body(http::request_parser<http::string_body>& parser);
    asio::awaitable<beast::error_code> send_continue();
    asio::awaitable<void> reply_to_read_error(const beast::error_code& ec);
    asio::awaitable<void> call_handler();
    asio::awaitable<bool> respond(Response& response, bool keep_alive, bool head);
    asio::awaitable<bool> write_response(Response& response, bool keep_alive, bool head);
    asio::awaitable<beast::error_code> send_response(Response& response,
                                                     bool keep_alive,
                                                     bool head);
    asio::awaitable<beast::error_code> send_through_beast(Response& response,
                                                          int status,
                                                          bool keep_alive,
                                                          bool head);
    asio::awaitable<bool> write_streamed(Response& response, bool keep_alive);
    asio::awaitable<void> run_tunnel(Response& response);
    asio::awaitable<bool> accept_websocket(Response& response, bool keep_alive, bool head);
    asio::awaitable<void> finish_sending();
    asio::awaitable<void> linger_close();
    bool take_plain_request();
    core::Result<void> start_request(std::string_view method,
                                     std::string_view target,
                                     unsigned version,
                                     bool keep_alive);
    void put_header(std::size_t index, std::string_view name, std::string_view value);
    template <class Body>
    void put_headers(http::response<Body>& message, const Response& response) const;
    http::request_parser<http::empty_body>& start_head();
    bool take_head();
    void release_response();
    void close_quietly();

    SessionHost& server_;
    ConnectionPtr connection_;
    Stream& stream_;
    DeadlineStream& tcp_;
    beast::flat_buffer buffer_;
    std::string remote_;
    std::string peer_identity_;  // of a verified client certificate (TLS only)
    unsigned version_ = 11;      // of the request being answered: 10 gets no chunking
    // The head of the request being answered, kept when it asks for a WebSocket.
    std::optional<http::request<http::empty_body>> upgrade_head_;

    // The exchange in progress: its parsers, request and response live here, made anew for
    // each request, rather than in serve_one's coroutine frame. A frame past asio's 1,020-byte
    // frame cache costs a large malloc (and glibc's malloc_consolidate) on every request.
    std::optional<http::request_parser<http::empty_body>> head_parser_;
    std::optional<http::request_parser<http::string_body>> body_parser_;
    std::optional<http::request_parser<http::buffer_body>> streamed_parser_;
    std::vector<HeadField> plain_fields_;  // of a plain head (take_plain_request): views
    Request request_;  // filled in place (start_request), then handed to the handler (Handler)
    // The request's method and path, kept for the log when its handler throws: assigned, so
    // their capacity serves request after request.
    std::string handler_method_;
    std::string handler_path_;
    Response response_;
    bool head_request_ = false;  // HEAD: the answer goes without its body
    bool wants_keep_alive_ = false;
};

/// ResponseStream over a chunked response: one write, one chunk.
template <class Stream>
class Session<Stream>::ChunkWriter final : public ResponseStream {
public:
    /// Unchunked (HTTP/1.0), the data goes out as is and the close ends the body.
    ChunkWriter(Session& session, bool chunked) : session_(session), chunked_(chunked) {}

    asio::awaitable<bool> write(std::string data) override {
        if (broken_ || session_.server_.stopping.load()) {
            co_return false;
        }
        if (data.empty()) {
            co_return true;  // an empty chunk would be the last-chunk marker
        }
        session_.tcp_.expires_after(session_.server_.settings.write_timeout);
        beast::error_code ec;
        std::size_t n = 0;
        if (chunked_) {
            // Named, not a temporary inside co_await: GCC 12 may destroy those twice.
            auto chunk = http::make_chunk(asio::buffer(data));
            std::tie(ec, n) = co_await asio::async_write(session_.stream_, chunk, kUseTuple);
        } else {
            std::tie(ec, n) =
                co_await asio::async_write(session_.stream_, asio::buffer(data), kUseTuple);
        }
        broken_ = static_cast<bool>(ec);
        co_return !broken_;
    }

    bool broken() const { return broken_; }

private:
    Session& session_;
    bool chunked_;
    bool broken_ = false;
};

/// BodyReader over the connection: the parser that read the head goes on with the body, into
/// the caller's piece. 100-continue goes out on the first read, so a handler that refuses
/// without reading never invites the body.
template <class Stream>
class Session<Stream>::StreamedBody final : public BodyReader {
public:
    StreamedBody(Session& session, http::request_parser<http::buffer_body>& parser)
        : session_(session), parser_(parser) {
        expect_continue_ = beast::iequals(parser_.get()[http::field::expect], "100-continue");
    }

    asio::awaitable<core::Result<std::string>> read_some() override {
        session_.tcp_.expires_after(session_.server_.settings.read_timeout);
        co_return co_await read_piece();
    }

    /// Reads and drops the rest of a body the handler left, if it is short and arrives soon.
    /// True when the connection can carry another request.
    asio::awaitable<bool> drain() {
        if (failed_) {
            co_return false;
        }
        if (parser_.is_done()) {
            co_return true;
        }
        // Never invited, the body may never come: waiting for it would only stall.
        if (expect_continue_) {
            co_return false;
        }
        auto remaining = parser_.content_length_remaining();
        if (remaining && *remaining > kDrainMaxBytes) {
            co_return false;
        }
        const auto& settings = session_.server_.settings;
        session_.tcp_.expires_after(std::min(settings.read_timeout, kDrainWait));
        std::size_t dropped = 0;
        while (!parser_.is_done() && dropped <= kDrainMaxBytes) {
            auto piece = co_await read_piece();
            if (!piece) {
                co_return false;
            }
            dropped += piece->size();
        }
        co_return parser_.is_done();
    }

    /// The error the handler saw, if any: the server answers with what the handler returned,
    /// and closes.
    bool failed() const { return failed_; }

private:
    asio::awaitable<core::Result<std::string>> read_piece() {
        if (failed_) {
            co_return core::Error{core::ErrorCode::kUnavailable, "the request body failed before"};
        }
        if (expect_continue_) {
            expect_continue_ = false;
            if (auto ec = co_await session_.send_continue()) {
                co_return fail(ec);
            }
        }
        std::string piece;
        // A read may yield framing only (a chunk header): go on until some body or the end.
        while (piece.empty() && !parser_.is_done()) {
            piece.resize(kBodyPieceBytes);
            parser_.get().body().data = piece.data();
            parser_.get().body().size = piece.size();
            auto [ec, n] = co_await http::async_read_some(session_.stream_, session_.buffer_,
                                                          parser_, kUseTuple);
            piece.resize(piece.size() - parser_.get().body().size);
            if (ec == http::error::need_buffer) {
                ec = {};
            }
            if (ec) {
                co_return fail(ec);
            }
        }
        co_return piece;
    }

    core::Error fail(const beast::error_code& ec) {
        failed_ = true;
        if (ec == http::error::body_limit) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("request body exceeds the {}-byte limit",
                                           session_.server_.settings.max_body_bytes)};
        }
        if (session_.tcp_.expired(DeadlineStream::Clock::now())) {
            return core::Error{core::ErrorCode::kTimeout, "request body timed out"};
        }
        if (is_http_error(ec) && ec != http::error::end_of_stream &&
            ec != http::error::partial_message) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("bad request body: {}", ec.message())};
        }
        return core::Error{
            core::ErrorCode::kUnavailable,
            fmt::format("client went away during the request body: {}", ec.message())};
    }

    Session& session_;
    http::request_parser<http::buffer_body>& parser_;  // the session's, made from the head's
    bool expect_continue_ = false;
    bool failed_ = false;
};

/// The connection after a 101: raw bytes both ways. What was read past the request head is
/// still in the session's buffer and comes out first.
template <class Stream>
class Session<Stream>::StreamTunnel final : public Tunnel {
public:
    explicit StreamTunnel(Session& session) : session_(session) {}

    asio::awaitable<core::Result<std::string>> read_some() override {
        auto& buffer = session_.buffer_;
        if (buffer.size() > 0) {
            std::string early{static_cast<const char*>(buffer.data().data()), buffer.size()};
            buffer.consume(buffer.size());
            co_return early;
        }
        std::string data(kTunnelReadBytes, '\0');
        session_.tcp_.expires_after(session_.server_.settings.idle_timeout);
        auto [ec, n] = co_await session_.stream_.async_read_some(asio::buffer(data), kUseTuple);
        if (ec == asio::error::eof || ec == ssl::error::stream_truncated) {
            co_return std::string{};
        }
        if (ec) {
            if (session_.tcp_.expired(DeadlineStream::Clock::now())) {
                co_return core::Error{core::ErrorCode::kTimeout, "tunnel idle past idle_timeout"};
            }
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  fmt::format("tunnel read failed: {}", ec.message())};
        }
        data.resize(n);
        co_return data;
    }

    asio::awaitable<core::Result<void>> write(std::string_view data) override {
        session_.tcp_.expires_after(session_.server_.settings.write_timeout);
        auto [ec, n] = co_await asio::async_write(session_.stream_, asio::buffer(data), kUseTuple);
        if (ec) {
            if (session_.tcp_.expired(DeadlineStream::Clock::now())) {
                co_return core::Error{core::ErrorCode::kTimeout,
                                      "tunnel write took past write_timeout"};
            }
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  fmt::format("tunnel write failed: {}", ec.message())};
        }
        co_return core::Result<void>{};
    }

    // Under TLS this half-closes TCP without a close_notify (that needs an awaited write): the
    // peer may see a truncated stream rather than a clean end.
    void shutdown_send() override { session_.tcp_.shutdown_send(); }

private:
    Session& session_;
};

template <class Stream>
asio::awaitable<void> Session<Stream>::run(SessionHost& server, ConnectionPtr connection) {
    Session session{server, std::move(connection)};
    co_await session.serve();
}

template <class Stream>
asio::awaitable<void> Session<Stream>::serve() {
    beast::error_code ec;
    remote_ = format_endpoint(tcp_.socket().remote_endpoint(ec));
    try {
        if (co_await handshake()) {
            while (co_await serve_one()) {
            }
        }
    } catch (const std::exception& e) {
        // The one top-level catch per connection: anything here is a bug in net.
        server_.log->error("connection failed remote={} error={}", remote_, e.what());
    }
    close_quietly();
    server_.unregister(connection_.get());
}

/// Under read_timeout, like a request. A failure is the client's (a scanner, a plain-HTTP
/// client, an unknown CA): debug and a counter, never an error per connection.
template <class Stream>
asio::awaitable<bool> Session<Stream>::handshake() {
    if constexpr (kTls) {
        if (server_.stopping.load()) {
            co_return false;
        }
        connection_->idle = true;  // no request yet: stop() may close it at once
        tcp_.expires_after(server_.settings.read_timeout);
        auto [ec] = co_await stream_.async_handshake(ssl::stream_base::server, kUseTuple);
        connection_->idle = false;
        if (ec) {
            server_.tls_handshake_failures.fetch_add(1);
            server_.log->debug("tls handshake failed remote={} error={}", remote_, ec.message());
            co_return false;
        }
        peer_identity_ = verified_peer_identity(stream_.native_handle());
    }
    co_return true;
}

/// Reads one request, answers it, and says whether the connection stays open for another.
template <class Stream>
asio::awaitable<bool> Session<Stream>::serve_one() {
    if (!co_await await_first_byte()) {
        co_return false;
    }
    if (take_plain_request()) {
        co_return co_await answer();
    }
    // Beast's parser, the head first: whether the body is buffered here or streamed to the
    // handler is decided from the head.
    if (auto ec = co_await read_head(start_head())) {
        co_await reply_to_read_error(ec);
        co_return false;
    }
    if (!take_head()) {
        co_await write_response(response_, false, head_request_);
        co_await linger_close();
        co_return false;
    }
    if (server_.streams_body && server_.streams_body(request_)) {
        co_return co_await serve_streamed();
    }
    co_return co_await serve_buffered();
}

/// A fresh head parser with the server's limits.
template <class Stream>
http::request_parser<http::empty_body>& Session<Stream>::start_head() {
    auto& parser = head_parser_.emplace();
    parser.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(server_.settings.max_header_bytes, UINT32_MAX)));
    parser.body_limit(server_.settings.max_body_bytes);
    return parser;
}

/// The parsed head made into request_; false, with the 400 in response_, when it is not one.
template <class Stream>
bool Session<Stream>::take_head() {
    const auto& message = head_parser_->get();
    auto taken = start_request(message.method_string(), message.target(), message.version(),
                               message.keep_alive());
    std::size_t count = 0;
    for (const auto& field : message) {
        put_header(count++, field.name_string(), field.value());
    }
    request_.headers.resize(count);
    upgrade_head_.reset();
    if (!taken) {
        response_ = error_response(400, taken.error().message);
        return false;
    }
    if (is_websocket_upgrade(request_)) {
        upgrade_head_.emplace(message);
    }
    return true;
}

/// What the answered response holds (its body, a relay's upstream connection), and the
/// request's body, are let go before the connection waits for the next request.
template <class Stream>
void Session<Stream>::release_response() {
    // A handler that took the request by reference left it here: its body (up to
    // max_body_bytes) is not kept for the next request. The rest is refilled in place.
    request_.body = std::string{};
    response_.body = std::string{};
    response_.headers.clear();
    response_.header_lines.clear();
    response_.stream = nullptr;
    response_.tunnel = nullptr;
    response_.websocket = nullptr;
}

/// The body read whole (within max_body_bytes), then the handler.
template <class Stream>
asio::awaitable<bool> Session<Stream>::serve_buffered() {
    auto& parser = body_parser_.emplace(std::move(*head_parser_));
    if (auto ec = co_await read_body(parser)) {
        co_await reply_to_read_error(ec);
        co_return false;
    }
    request_.body = std::move(parser.get().body());
    body_parser_.reset();
    co_return co_await answer();
}

/// The handler reads the body itself, through request_.body_reader.
template <class Stream>
asio::awaitable<bool> Session<Stream>::serve_streamed() {
    StreamedBody body{*this, streamed_parser_.emplace(std::move(*head_parser_))};
    request_.body_reader = &body;
    server_.requests.fetch_add(1);
    co_await call_handler();
    // Before the response: a short rest is dropped and the connection goes on; a long one
    // would make the client's next request start mid-body, so the connection ends instead.
    const bool drained = co_await body.drain();
    const bool again = co_await respond(response_, wants_keep_alive_ && drained, head_request_);
    release_response();
    if (!drained) {
        co_await linger_close();  // the client may still be sending: let it read our answer
    }
    co_return again;
}

/// The handler's answer to request_, sent.
template <class Stream>
asio::awaitable<bool> Session<Stream>::answer() {
    server_.requests.fetch_add(1);
    co_await call_handler();
    const bool again = co_await respond(response_, wants_keep_alive_, head_request_);
    release_response();
    co_return again;
}

/// Sends the handler's response: a tunnel, a stream or a plain body. True when the connection
/// may carry another request.
template <class Stream>
asio::awaitable<bool> Session<Stream>::respond(Response& response, bool keep_alive, bool head) {
    // Decided after the handler: a response finished while stop() runs is the connection's last.
    keep_alive = keep_alive && !server_.stopping.load();
    // Plain if/else, never co_await inside ?: (GCC 12 mishandles the temporaries).
    bool sent = false;
    if (response.tunnel && response.status == 101) {
        co_await run_tunnel(response);
        co_return false;
    }
    if (response.websocket) {
        co_return co_await accept_websocket(response, keep_alive, head);
    }
    if (response.stream) {
        sent = co_await write_streamed(response, keep_alive);
    } else {
        sent = co_await write_response(response, keep_alive, head);
    }
    co_return sent&& keep_alive;
}

/// The keep-alive wait: idle_timeout applies until the first byte of the next request arrives,
/// and stop() may close the connection while it is here (and only here).
template <class Stream>
asio::awaitable<bool> Session<Stream>::await_first_byte() {
    if (buffer_.size() > 0) {
        co_return true;  // pipelined: the next request is already buffered
    }
    // Checked on the loop after registration: a connection accepted while stop() was
    // enumerating sees the flag here, one already waiting gets closed by stop().
    if (server_.stopping.load()) {
        co_return false;
    }
    connection_->idle = true;
    tcp_.expires_after(server_.settings.idle_timeout);
    auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(kFirstReadBytes), kUseTuple);
    connection_->idle = false;
    if (ec) {
        co_return false;  // closed, timed out or stopped: nothing to answer
    }
    buffer_.commit(n);
    co_return true;
}

template <class Stream>
asio::awaitable<beast::error_code> Session<Stream>::read_head(
    http::request_parser<http::empty_body>& parser) {
    // Set even when the head is whole already: a body read after it goes on under this deadline.
    tcp_.expires_after(server_.settings.read_timeout);
    beast::error_code ec;
    if (parse_buffered(
            parser, buffer_, [&] { return parser.is_header_done(); }, ec)) {
        co_return ec;  // the head was whole in the first read
    }
    std::tie(ec, std::ignore) =
        co_await http::async_read_header(stream_, buffer_, parser, kUseTuple);
    co_return ec;
}

/// The rest of a buffered request, under the read_timeout the head started.
template <class Stream>
asio::awaitable<beast::error_code> Session<Stream>::read_body(
    http::request_parser<http::string_body>& parser) {
    if (parser.is_done()) {
        co_return beast::error_code{};
    }
    // curl and others wait up to a second for "100 Continue" before sending a large body.
    if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
        if (auto ec = co_await send_continue()) {
            co_return ec;
        }
    }
    beast::error_code ec;
    if (parse_buffered(
            parser, buffer_, [&] { return parser.is_done(); }, ec)) {
        co_return ec;
    }
    std::tie(ec, std::ignore) = co_await http::async_read(stream_, buffer_, parser, kUseTuple);
    co_return ec;
}

template <class Stream>
asio::awaitable<beast::error_code> Session<Stream>::send_continue() {
    auto [ec, written] = co_await asio::async_write(stream_, asio::buffer(kContinue), kUseTuple);
    co_return ec;
}

/// Limit breaches and malformed requests get a reply; a client that went away or timed out
/// does not (there is no one to read it).
template <class Stream>
asio::awaitable<void> Session<Stream>::reply_to_read_error(const beast::error_code& ec) {
    const auto& settings = server_.settings;
    Response response;
    if (ec == http::error::body_limit) {
        response = error_response(
            413, fmt::format("request body exceeds the {}-byte limit", settings.max_body_bytes));
    } else if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
        response = error_response(431, fmt::format("request header exceeds the {}-byte limit",
                                                   settings.max_header_bytes));
    } else if (is_http_error(ec) && ec != http::error::end_of_stream &&
               ec != http::error::partial_message) {
        response = error_response(400, fmt::format("bad request: {}", ec.message()));
    } else {
        co_return;
    }
    server_.log->debug("request refused remote={} status={} reason={}", remote_, response.status,
                       ec.message());
    co_await write_response(response, false, false);
    co_await linger_close();
}

/// The usual request taken without Beast's parser: a whole plain head (parse_plain_request_head)
/// whose body, if any, is already buffered and within max_body_bytes. False leaves buffer_ as it
/// was, for Beast's parser to read it from the start (which also answers what this refuses: a bad
/// target, a head past the limit...).
template <class Stream>
bool Session<Stream>::take_plain_request() {
    const auto* data = static_cast<const char*>(buffer_.data().data());
    const std::string_view bytes{data, buffer_.size()};
    const auto head = parse_plain_request_head(bytes, plain_fields_);
    if (!head || head->size > server_.settings.max_header_bytes) {
        return false;
    }
    const auto length = head->content_length.value_or(0);
    if (length > server_.settings.max_body_bytes || length > bytes.size() - head->size) {
        return false;
    }
    if (!start_request(head->method, head->target, head->version, head->keep_alive)) {
        return false;
    }
    for (std::size_t i = 0; i < plain_fields_.size(); ++i) {
        put_header(i, plain_fields_[i].name, plain_fields_[i].value);
    }
    request_.headers.resize(plain_fields_.size());
    // Whole already, the body is the request's even on a route that streams (BodyPolicy).
    request_.body.assign(bytes.substr(head->size, length));
    upgrade_head_.reset();
    buffer_.consume(head->size + length);  // `bytes` and the fields' views end here
    return true;
}

/// request_ made anew, in place, from a head's request line, and what the answer needs of it
/// (HEAD, the version, keep-alive): what the last handler left of the request (a moved-from
/// Request) is cleared first. Its headers are put next (put_header).
template <class Stream>
core::Result<void> Session<Stream>::start_request(std::string_view method,
                                                  std::string_view target,
                                                  unsigned version,
                                                  bool keep_alive) {
    head_request_ = method == "HEAD";
    version_ = version == 10 ? 10 : 11;
    wants_keep_alive_ = keep_alive;
    Request& request = request_;
    request.query.clear();
    request.body.clear();
    request.body_reader = nullptr;
    request.remote = remote_;
    request.peer_identity = peer_identity_;
    request.method.assign(method);
    request.target.assign(target);
    if (request.target == "*") {
        request.path = "*";  // "OPTIONS *": the server itself, no path to decode
    } else if (is_plain_path(request.target)) {
        request.path = request.target;
    } else {
        auto url = boost::urls::parse_origin_form(request.target);
        if (!url) {
            return core::Error{core::ErrorCode::kInvalidArgument,
                               fmt::format("bad request target \"{}\": {}", request.target,
                                           url.error().message())};
        }
        request.path = url->path();
        for (auto param : url->params()) {
            request.query.emplace_back(std::move(param.key), std::move(param.value));
        }
    }
    return {};
}

/// The request's header number `index`, assigned over the last request's where there is one:
/// their strings keep their capacity. The caller then cuts the list to the count it put.
template <class Stream>
void Session<Stream>::put_header(std::size_t index, std::string_view name, std::string_view value) {
    auto& headers = request_.headers;
    if (index < headers.size()) {
        headers[index].name.assign(name);
        headers[index].value.assign(value);
    } else {
        headers.push_back(Header{std::string{name}, std::string{value}});
    }
}

/// set_headers, and a log line for a header it left out (a handler's bug, not the client's).
template <class Stream>
template <class Body>
void Session<Stream>::put_headers(http::response<Body>& message, const Response& response) const {
    if (const int left_out = set_headers(message, response); left_out > 0) {
        server_.log->warn(
            "response headers left out count={} status={} remote={} reason=\"a name is not a "
            "token\"",
            left_out, response.status, remote_);
    }
}

/// Hands request_ to the handler; its answer, or a 500 when it throws, lands in response_.
template <class Stream>
asio::awaitable<void> Session<Stream>::call_handler() {
    // The handler may take as long as it likes (held-open responses); no I/O is pending meanwhile
    // unless it reads a streamed body, and each read and write sets its own deadline.
    tcp_.expires_never();
    handler_method_ = request_.method;
    handler_path_ = request_.path;
    const auto& method = handler_method_;
    const auto& path = handler_path_;
    try {
        auto pending = server_.handler(std::move(request_));
        // Into response_ as it comes: a Response is moved once for every coroutine it passes.
        response_ = co_await std::move(pending);
        co_return;
    } catch (const std::exception& e) {
        server_.log->error("handler failed method={} path={} remote={} error={}", method, path,
                           remote_, e.what());
    } catch (...) {
        server_.log->error("handler failed method={} path={} remote={} error=unknown exception",
                           method, path, remote_);
    }
    response_ = error_response(500, "internal error");
}

/// Writes a buffered response; after one that ends the connection, lets the client read it.
template <class Stream>
asio::awaitable<bool> Session<Stream>::write_response(Response& response,
                                                      bool keep_alive,
                                                      bool head) {
    if (auto ec = co_await send_response(response, keep_alive, head)) {
        co_return false;
    }
    if (!keep_alive) {
        co_await finish_sending();
    }
    co_return true;
}

/// The head (formatted, or through Beast when a handler's header needs its rules) and, unless
/// `head`, the body.
template <class Stream>
asio::awaitable<beast::error_code> Session<Stream>::send_response(Response& response,
                                                                  bool keep_alive,
                                                                  bool head) {
    const int status = response.status >= 100 && response.status <= 999 ? response.status : 500;
    if (status >= 200) {
        const std::size_t body_size = status_allows_body(status) ? response.body.size() : 0;
        // Under TLS a small body goes in the head's buffer: one write, one record. On plain TCP
        // the two go in one sendmsg as two buffers, without the copy.
        constexpr std::size_t kJoinedBody = std::size_t{16} * 1024;
        const bool joined = !std::is_same_v<Stream, DeadlineStream> && !head && body_size > 0 &&
                            body_size <= kJoinedBody;
        if (auto formatted = format_response_head(response, status, version_, keep_alive, body_size,
                                                  joined ? body_size : 0)) {
            std::string_view body;
            if (joined) {
                formatted->append(response.body);
            } else if (!head && body_size > 0) {
                body = response.body;
            }
            tcp_.expires_after(server_.settings.write_timeout);
            const std::array<asio::const_buffer, 2> buffers{asio::buffer(*formatted),
                                                            asio::buffer(body)};
            beast::error_code ec;
            if constexpr (std::is_same_v<Stream, DeadlineStream>) {
                std::size_t written = 0;
                std::tie(ec, written) = write_now(stream_.socket(), buffers);
                if (!ec && written < boost::asio::buffer_size(buffers)) {
                    std::tie(ec, std::ignore) = co_await write_later(stream_, buffers, written);
                }
            } else {
                std::tie(ec, std::ignore) = co_await asio::async_write(stream_, buffers, kUseTuple);
            }
            co_return ec;
        }
    }
    co_return co_await send_through_beast(response, status, keep_alive, head);
}

/// A head format_response_head leaves to Beast (1xx, or headers that need its rules), in a
/// frame of its own: the message and serializer would make every response's frame large.
template <class Stream>
asio::awaitable<beast::error_code> Session<Stream>::send_through_beast(Response& response,
                                                                       int status,
                                                                       bool keep_alive,
                                                                       bool head) {
    http::response<http::string_body> message;
    message.result(static_cast<unsigned>(status));
    message.version(version_);
    put_headers(message, response);
    if (status_allows_body(status)) {
        message.body() = std::move(response.body);
    }
    message.keep_alive(keep_alive);
    message.prepare_payload();

    tcp_.expires_after(server_.settings.write_timeout);
    http::response_serializer<http::string_body> serializer{message};
    // HEAD: the headers (with the Content-Length a GET would get), never the body.
    beast::error_code ec;
    if (head) {
        std::tie(ec, std::ignore) =
            co_await http::async_write_header(stream_, serializer, kUseTuple);
    } else {
        std::tie(ec, std::ignore) = co_await http::async_write(stream_, serializer, kUseTuple);
    }
    co_return ec;
}

template <class Stream>
asio::awaitable<bool> Session<Stream>::write_streamed(Response& response, bool keep_alive) {
    http::response<http::empty_body> message;
    const int status = response.status >= 200 && response.status <= 999 ? response.status : 500;
    message.result(static_cast<unsigned>(status));
    message.version(version_);
    put_headers(message, response);
    // HTTP/1.0 knows no chunks: the body runs until the connection closes.
    const bool chunked = version_ == 11;
    keep_alive = keep_alive && chunked;
    message.keep_alive(keep_alive);
    message.chunked(chunked);

    tcp_.expires_after(server_.settings.write_timeout);
    http::response_serializer<http::empty_body> serializer{message};
    auto [ec, n] = co_await http::async_write_header(stream_, serializer, kUseTuple);
    if (ec) {
        co_return false;
    }
    ChunkWriter writer{*this, chunked};
    if (!co_await writer.write(std::move(response.body))) {
        co_return false;
    }
    try {
        co_await response.stream(writer);
    } catch (const std::exception& e) {
        // Headers are gone already: no 500 possible. Ending without the last chunk tells the
        // client the body is incomplete.
        server_.log->error("response stream failed remote={} error={}", remote_, e.what());
        co_return false;
    }
    if (writer.broken()) {
        co_return false;
    }
    if (!chunked) {
        // The close is the end of the body: this connection carries nothing more.
        co_await finish_sending();
        co_return false;
    }
    tcp_.expires_after(server_.settings.write_timeout);
    auto last_chunk = http::make_chunk_last();
    std::tie(ec, n) = co_await asio::async_write(stream_, last_chunk, kUseTuple);
    if (ec) {
        co_return false;
    }
    if (!keep_alive) {
        co_await finish_sending();
    }
    co_return true;
}

/// A 101 with a tunnel: the head with the handler's headers (no keep-alive, no body), then
/// the handler's tunnel owns the connection until it returns.
template <class Stream>
asio::awaitable<void> Session<Stream>::run_tunnel(Response& response) {
    http::response<http::empty_body> message;
    message.result(http::status::switching_protocols);
    message.version(11);
    response.content_type.clear();  // nothing follows the head that a type could describe
    put_headers(message, response);
    tcp_.expires_after(server_.settings.write_timeout);
    http::response_serializer<http::empty_body> serializer{message};
    auto [ec, n] = co_await http::async_write_header(stream_, serializer, kUseTuple);
    if (ec) {
        co_return;
    }
    StreamTunnel tunnel{*this};
    try {
        co_await response.tunnel(tunnel);
    } catch (const std::exception& e) {
        server_.log->error("tunnel failed remote={} error={}", remote_, e.what());
    }
}

/// A handler's WebSocket: served when the request asked for one, else 426 (the route speaks
/// WebSocket only). The connection is the WebSocket's until it closes.
template <class Stream>
asio::awaitable<bool> Session<Stream>::accept_websocket(Response& response,
                                                        bool keep_alive,
                                                        bool head) {
    if (!upgrade_head_) {
        Response refusal = error_response(426,
                                          "this endpoint speaks WebSocket only: send a "
                                          "WebSocket upgrade (Upgrade: websocket)\n");
        refusal.headers.push_back(Header{"Upgrade", "websocket"});
        refusal.headers.push_back(Header{"Connection", "Upgrade"});
        const bool sent = co_await write_response(refusal, keep_alive, head);
        co_return sent&& keep_alive;
    }
    if (buffer_.size() > 0) {
        // RFC 6455 §4.1: the client waits for our 101 before it sends a frame.
        Response refusal = error_response(400, "data arrived before the WebSocket handshake\n");
        co_await write_response(refusal, false, false);
        co_await linger_close();
        co_return false;
    }
    server_.websockets.fetch_add(1);
    co_await serve_websocket(stream_, *connection_, server_, *upgrade_head_, response, remote_);
    server_.websockets.fetch_sub(1);
    co_return false;
}

/// Ends what we send on a connection that carries nothing more. Under TLS that is a
/// close_notify, which asio sends and then waits for the peer's: bounded like a linger.
template <class Stream>
asio::awaitable<void> Session<Stream>::finish_sending() {
    if constexpr (kTls) {
        tcp_.expires_after(std::min(server_.settings.write_timeout, kLingerMax));
        auto [ec] = co_await stream_.async_shutdown(kUseTuple);
    } else {
        tcp_.shutdown_send();
    }
}

/// After an error reply: stop sending, then read and drop what the client still sends until it
/// closes, for a bounded time, so the reply is not lost to a reset.
template <class Stream>
asio::awaitable<void> Session<Stream>::linger_close() {
    if constexpr (kTls) {
        // The TLS shutdown reads until the peer's close_notify or close: the same linger.
        tcp_.expires_after(std::min(server_.settings.read_timeout, kLingerMax));
        auto [ec] = co_await stream_.async_shutdown(kUseTuple);
    } else {
        tcp_.shutdown_send();
        tcp_.expires_after(std::min(server_.settings.read_timeout, kLingerMax));
        std::array<char, 4096> sink{};
        for (;;) {
            auto [read_ec, n] = co_await tcp_.async_read_some(asio::buffer(sink), kUseTuple);
            if (read_ec) {
                co_return;
            }
        }
    }
}

template <class Stream>
void Session<Stream>::close_quietly() {
    tcp_.close();
}

}  // namespace aviary::net::server_side
