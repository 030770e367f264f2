#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "net/deadline_stream.hpp"
#include "net/net.hpp"
#include "net/tls_context.hpp"

namespace aviary::net {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using TlsStream = ssl::stream<DeadlineStream>;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kFirstReadBytes = 4096;
// How long a connection we are refusing may keep sending before we close it. Closing with unread
// input makes the kernel send RST, which can destroy our error reply before the client reads it.
constexpr core::Millis kLingerMax{2000};
// After shutdown_grace, sockets are closed; sessions normally end at once. This bounds the wait
// for a handler that ignores stopping() and never returns.
constexpr core::Millis kForcedCloseWait{1000};
// Refused connections allowed to linger at once for their 503: each holds a descriptor for up
// to kLingerMax, so without a bound a flood past max_connections would still use one
// descriptor per connection and the cap would only be soft. Past this, refusals close at once.
constexpr int kMaxLingeringRefusals = 16;
// A failing accept (EMFILE: out of descriptors) fails again at once until something closes;
// retrying at once spins a core and floods the log. The pause doubles between these.
constexpr core::Millis kAcceptBackoffMin{5};
constexpr core::Millis kAcceptBackoffMax{1000};
// A streamed body is read in pieces of at most this much.
constexpr std::size_t kBodyPieceBytes = 64 * 1024;
// The rest of a streamed body a handler did not read is drained (so the connection can carry
// the next request) only when it is at most this long and arrives within kDrainWait; else the
// connection closes after the response.
constexpr std::size_t kDrainMaxBytes = 64 * 1024;
constexpr core::Millis kDrainWait{1000};
constexpr std::size_t kTunnelReadBytes = 16 * 1024;
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

std::string format_endpoint(const tcp::endpoint& endpoint) {
    const auto address = endpoint.address();
    if (address.is_v6()) {
        return fmt::format("[{}]:{}", address.to_string(), endpoint.port());
    }
    return fmt::format("{}:{}", address.to_string(), endpoint.port());
}

Response error_response(int status, std::string text) {
    Response response;
    response.status = status;
    response.body = std::move(text);
    return response;
}

bool is_http_error(const beast::error_code& ec) {
    return &ec.category() == &http::make_error_code(http::error::bad_target).category();
}

template <class Body>
void set_headers(http::response<Body>& message, const Response& response) {
    message.set(http::field::server, "aviary");
    if (!response.content_type.empty()) {
        message.set(http::field::content_type, response.content_type);
    }
    for (const auto& header : response.headers) {
        message.insert(header.name, header.value);
    }
}

// 1xx, 204 and 304 carry no body by definition; Beast refuses to serialise one.
bool status_allows_body(int status) {
    return status >= 200 && status != 204 && status != 304;
}

/// One accepted socket. Shared by its session coroutine and by the server (the registry, the
/// deadline sweep, stop()), which reach it through this base; everything but the stream's
/// construction happens on the socket's loop (one thread, so it serialises like a strand).
struct Connection {
    virtual ~Connection() = default;
    /// The socket layer under the stream: deadlines and closing.
    virtual DeadlineStream& tcp() = 0;

    bool idle = false;  // loop only: no request in progress, stop() may close it at once
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

/// The listener, the connection registry and the lifecycle; HttpServer::Impl is this.
class Server {
public:
    Server(ServerSettings settings_in, Handler handler_in, BodyPolicy streams_body_in)
        : settings(std::move(settings_in)),
          handler(std::move(handler_in)),
          streams_body(std::move(streams_body_in)),
          log(core::logger("net")) {}

    core::Result<std::string> start();
    void stop();
    core::Result<void> reload_tls();
    std::shared_ptr<ssl::context> current_tls_context();
    asio::awaitable<void> accept_loop();
    asio::awaitable<void> deadline_sweep();
    void refuse(tcp::socket socket, bool tls);
    asio::awaitable<void> send_refusal(tcp::socket socket);
    void spawn_session(tcp::socket socket);
    void register_connection(const std::shared_ptr<Connection>& connection);
    void unregister(Connection* connection);
    void close_connections(bool idle_only);
    bool wait_for_drain(core::Millis within);

    enum class State { kNew, kRunning, kStopped };

    // Members the session frames use come first: the frames can outlive the threads (a handler
    // stuck past the grace) and are destroyed with io_context, which is therefore declared after.
    ServerSettings settings;
    Handler handler;
    BodyPolicy streams_body;
    std::shared_ptr<spdlog::logger> log;
    std::atomic<bool> stopping{false};
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> rejected{0};
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> accept_errors{0};
    std::atomic<std::uint64_t> tls_handshake_failures{0};
    std::atomic<int> lingering_refusals{0};

    std::mutex tls_mu;  // guards tls_context: reload_tls() swaps it beside the accept loop
    std::shared_ptr<ssl::context> tls_context;  // null: plain HTTP

    std::mutex mu;  // guards connections
    std::condition_variable drained;
    std::unordered_map<Connection*, std::shared_ptr<Connection>> connections;

    std::mutex lifecycle_mu;  // start() and stop() are serialised
    State state = State::kNew;

    // One event loop per I/O thread, like nginx's workers: a connection lives on one loop, so
    // threads never wake each other (with one shared loop, two threads served fewer requests
    // than one; bench/RESULTS.md). ioc runs the acceptor and its share of connections.
    asio::io_context ioc{1};
    std::vector<std::unique_ptr<asio::io_context>> more_loops;
    std::size_t next_loop = 0;  // round-robin cursor, touched only by the accept loop
    asio::strand<asio::io_context::executor_type> accept_strand{ioc.get_executor()};
    tcp::acceptor acceptor{accept_strand};
    asio::steady_timer accept_pause{accept_strand};  // the backoff after a failed accept
    // Keep run() going even if the accept loop has ended (say, on an exception): stop() posts
    // to the loop and waits, so the loop must still be there.
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> keep_running;
    std::vector<std::thread> threads;

    asio::io_context& loop_for_next_connection() {
        std::size_t count = more_loops.size() + 1;
        std::size_t index = next_loop++ % count;
        return index == 0 ? ioc : *more_loops[index - 1];
    }
    bool on_own_loop() {
        bool mine = ioc.get_executor().running_in_this_thread();
        for (const auto& loop : more_loops) {
            mine = mine || loop->get_executor().running_in_this_thread();
        }
        return mine;
    }
};

// ---------------------------------------------------------------------------------------------
// Session: one per connection, on the connection's loop. Stream is DeadlineStream (plain HTTP)
// or TlsStream; code that takes a connection over after a response (a tunnel, WebSocket) runs
// on the same stream and buffer.

template <class Stream>
class Session {
public:
    static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
    using ConnectionPtr = std::shared_ptr<StreamConnection<Stream>>;

    Session(Server& server, ConnectionPtr connection)
        : server_(server),
          connection_(std::move(connection)),
          stream_(connection_->stream),
          tcp_(connection_->tcp()) {}

    /// The connection's whole life: the TLS handshake, requests until close, then unregisters.
    static asio::awaitable<void> run(Server& server, ConnectionPtr connection);

private:
    class ChunkWriter;
    class StreamedBody;
    class StreamTunnel;

    asio::awaitable<void> serve();
    asio::awaitable<bool> handshake();
    asio::awaitable<bool> serve_one();
    asio::awaitable<bool> serve_streamed(http::request_parser<http::empty_body>& head_parser,
                                         Request request,
                                         bool wants_keep_alive,
                                         bool head);
    asio::awaitable<bool> await_first_byte();
    asio::awaitable<beast::error_code> read_head(http::request_parser<http::empty_body>& parser);
    asio::awaitable<beast::error_code> read_body(http::request_parser<http::string_body>& parser);
    asio::awaitable<beast::error_code> send_continue();
    asio::awaitable<void> reply_to_read_error(const beast::error_code& ec);
    asio::awaitable<Response> call_handler(Request request);
    asio::awaitable<bool> respond(Response& response, bool keep_alive, bool head);
    asio::awaitable<bool> write_response(Response& response, bool keep_alive, bool head);
    asio::awaitable<bool> write_streamed(Response& response, bool keep_alive);
    asio::awaitable<void> run_tunnel(Response& response);
    asio::awaitable<void> finish_sending();
    asio::awaitable<void> linger_close();
    core::Result<Request> make_request(const http::request_header<>& head) const;
    void close_quietly();

    Server& server_;
    ConnectionPtr connection_;
    Stream& stream_;
    DeadlineStream& tcp_;
    beast::flat_buffer buffer_;
    std::string remote_;
    std::string peer_identity_;  // of a verified client certificate (TLS only)
    unsigned version_ = 11;      // of the request being answered: 10 gets no chunking
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
            // Named, not a temporary inside co_await: GCC 12 may destroy those twice (STYLE §5).
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
    StreamedBody(Session& session, http::request_parser<http::empty_body>&& head)
        : session_(session), parser_(std::move(head)) {
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
    http::request_parser<http::buffer_body> parser_;
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
asio::awaitable<void> Session<Stream>::run(Server& server, ConnectionPtr connection) {
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
        // The one top-level catch per connection (STYLE §4): anything here is a bug in net.
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
    // The head first, with its own parser: whether the body is buffered here or streamed to
    // the handler is decided from the head.
    http::request_parser<http::empty_body> head_parser;
    head_parser.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(server_.settings.max_header_bytes, UINT32_MAX)));
    head_parser.body_limit(server_.settings.max_body_bytes);
    if (auto ec = co_await read_head(head_parser)) {
        co_await reply_to_read_error(ec);
        co_return false;
    }
    const auto& message = head_parser.get();
    const bool head = message.method() == http::verb::head;
    version_ = message.version() == 10 ? 10 : 11;
    const bool wants_keep_alive = message.keep_alive();
    auto request = make_request(message.base());
    if (!request) {
        auto response = error_response(400, request.error().message);
        co_await write_response(response, false, head);
        co_await linger_close();
        co_return false;
    }
    if (server_.streams_body && server_.streams_body(*request)) {
        co_return co_await serve_streamed(head_parser, std::move(*request), wants_keep_alive, head);
    }
    http::request_parser<http::string_body> parser{std::move(head_parser)};
    if (auto ec = co_await read_body(parser)) {
        co_await reply_to_read_error(ec);
        co_return false;
    }
    request->body = std::move(parser.get().body());
    server_.requests.fetch_add(1);
    auto response = co_await call_handler(std::move(*request));
    co_return co_await respond(response, wants_keep_alive, head);
}

template <class Stream>
asio::awaitable<bool> Session<Stream>::serve_streamed(
    http::request_parser<http::empty_body>& head_parser,
    Request request,
    bool wants_keep_alive,
    bool head) {
    StreamedBody body{*this, std::move(head_parser)};
    request.body_reader = &body;
    server_.requests.fetch_add(1);
    auto response = co_await call_handler(std::move(request));
    // Before the response: a short rest is dropped and the connection goes on; a long one
    // would make the client's next request start mid-body, so the connection ends instead.
    const bool drained = co_await body.drain();
    const bool again = co_await respond(response, wants_keep_alive && drained, head);
    if (!drained) {
        co_await linger_close();  // the client may still be sending: let it read our answer
    }
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
    tcp_.expires_after(server_.settings.read_timeout);
    auto [ec, n] = co_await http::async_read_header(stream_, buffer_, parser, kUseTuple);
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
    auto [ec, n] = co_await http::async_read(stream_, buffer_, parser, kUseTuple);
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

template <class Stream>
core::Result<Request> Session<Stream>::make_request(const http::request_header<>& head) const {
    Request request;
    request.method = std::string{head.method_string()};
    request.target = std::string{head.target()};
    if (request.target == "*") {
        request.path = "*";  // "OPTIONS *": the server itself, no path to decode
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
    for (const auto& field : head) {
        request.headers.push_back(
            Header{std::string{field.name_string()}, std::string{field.value()}});
    }
    request.remote = remote_;
    request.peer_identity = peer_identity_;
    return request;
}

template <class Stream>
asio::awaitable<Response> Session<Stream>::call_handler(Request request) {
    // The handler may take as long as it likes (held-open responses); no I/O is pending meanwhile
    // unless it reads a streamed body, and each read and write sets its own deadline.
    tcp_.expires_never();
    const std::string method = request.method;
    const std::string path = request.path;
    try {
        auto pending = server_.handler(std::move(request));
        co_return co_await std::move(pending);
    } catch (const std::exception& e) {
        server_.log->error("handler failed method={} path={} remote={} error={}", method, path,
                           remote_, e.what());
    } catch (...) {
        server_.log->error("handler failed method={} path={} remote={} error=unknown exception",
                           method, path, remote_);
    }
    co_return error_response(500, "internal error");
}

template <class Stream>
asio::awaitable<bool> Session<Stream>::write_response(Response& response,
                                                      bool keep_alive,
                                                      bool head) {
    http::response<http::string_body> message;
    const int status = response.status >= 100 && response.status <= 999 ? response.status : 500;
    message.result(static_cast<unsigned>(status));
    message.version(version_);
    set_headers(message, response);
    if (status_allows_body(status)) {
        message.body() = std::move(response.body);
    }
    message.keep_alive(keep_alive);
    message.prepare_payload();

    tcp_.expires_after(server_.settings.write_timeout);
    http::response_serializer<http::string_body> serializer{message};
    // HEAD: the headers (with the Content-Length a GET would get), never the body.
    boost::system::error_code ec;
    if (head) {
        std::tie(ec, std::ignore) =
            co_await http::async_write_header(stream_, serializer, kUseTuple);
    } else {
        std::tie(ec, std::ignore) = co_await http::async_write(stream_, serializer, kUseTuple);
    }
    if (ec) {
        co_return false;
    }
    if (!keep_alive) {
        co_await finish_sending();
    }
    co_return true;
}

template <class Stream>
asio::awaitable<bool> Session<Stream>::write_streamed(Response& response, bool keep_alive) {
    http::response<http::empty_body> message;
    const int status = response.status >= 200 && response.status <= 999 ? response.status : 500;
    message.result(static_cast<unsigned>(status));
    message.version(version_);
    set_headers(message, response);
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
    set_headers(message, response);
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

// ---------------------------------------------------------------------------------------------
// Listener and lifecycle

core::Result<std::string> Server::start() {
    std::lock_guard lifecycle{lifecycle_mu};
    AVIARY_ASSERT(state != State::kRunning, "HttpServer::start() is called once");
    if (state == State::kStopped) {
        return core::Error{core::ErrorCode::kUnavailable, "server is stopped"};
    }
    if (!settings.tls.cert_file.empty()) {
        auto context = make_server_tls_context(settings.tls);
        if (!context) {
            return context.error();
        }
        tls_context = std::move(*context);
    }
    auto host_port = split_host_port(settings.listen);
    if (!host_port) {
        return host_port.error();
    }
    auto& [host, port] = *host_port;
    beast::error_code ec;
    tcp::resolver resolver{ioc};
    auto endpoints = resolver.resolve(host, std::to_string(port), tcp::resolver::passive, ec);
    if (ec || endpoints.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("cannot resolve listen address \"{}\": {}", settings.listen,
                                       ec ? ec.message() : "no address")};
    }
    const tcp::endpoint endpoint = *endpoints.begin();
    auto fail = [&](std::string_view step) {
        return core::Error{
            core::ErrorCode::kUnavailable,
            fmt::format("cannot listen on {}: {} failed: {}", settings.listen, step, ec.message())};
    };
    acceptor.open(endpoint.protocol(), ec);
    if (ec) {
        return fail("open");
    }
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (ec) {
        return fail("setsockopt");
    }
    acceptor.bind(endpoint, ec);
    if (ec) {
        return fail("bind");
    }
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        acceptor.close();
        return fail("listen");
    }
    const auto bound = format_endpoint(acceptor.local_endpoint(ec));

    // The accept loop is spawned before the threads start, so run() never finds the loop empty.
    asio::co_spawn(accept_strand, accept_loop(), [this](std::exception_ptr error) {
        if (error) {
            try {
                std::rethrow_exception(error);
            } catch (const std::exception& e) {
                log->error("accept loop failed error={}", e.what());
            }
        }
    });
    asio::co_spawn(accept_strand, deadline_sweep(), asio::detached);
    const int thread_count = std::max(1, settings.io_threads);
    for (int i = 1; i < thread_count; ++i) {
        more_loops.push_back(std::make_unique<asio::io_context>(1));
    }
    keep_running.push_back(asio::make_work_guard(ioc));
    threads.emplace_back([this] { ioc.run(); });
    for (auto& loop : more_loops) {
        keep_running.push_back(asio::make_work_guard(*loop));
        threads.emplace_back([&loop = *loop] { loop.run(); });
    }
    state = State::kRunning;
    log->info("http server listening address={} io_threads={} tls={}", bound, thread_count,
              tls_context ? "on" : "off");
    return bound;
}

/// Closes connections past their deadline. A quarter of the shortest timeout between sweeps
/// (5 ms to 250 ms), so a timeout fires at most that late; the cost is one pass over the
/// registry per sweep instead of timer operations on every read and write.
asio::awaitable<void> Server::deadline_sweep() {
    auto shortest =
        std::min({settings.read_timeout, settings.idle_timeout, settings.write_timeout});
    auto period = std::clamp<core::Millis>(shortest / 4, core::Millis{5}, core::Millis{250});
    asio::steady_timer tick{accept_strand};
    std::vector<std::shared_ptr<Connection>> expired;
    // Runs until the loop stops: timeouts still matter while requests drain on shutdown.
    for (;;) {
        tick.expires_after(period);
        auto [ec] = co_await tick.async_wait(kUseTuple);
        if (ec) {
            co_return;
        }
        auto now = DeadlineStream::Clock::now();
        {
            std::lock_guard lock{mu};
            for (const auto& [raw, connection] : connections) {
                if (connection->tcp().expired(now)) {
                    expired.push_back(connection);
                }
            }
        }
        for (auto& connection : expired) {
            // Checked again on the connection's own loop: it may have moved its deadline since.
            asio::post(connection->tcp().get_executor(), [connection] {
                if (connection->tcp().expired(DeadlineStream::Clock::now())) {
                    connection->tcp().close();
                }
            });
        }
        expired.clear();
    }
}

asio::awaitable<void> Server::accept_loop() {
    core::Millis pause{0};
    std::uint64_t failures = 0;  // in a row
    for (;;) {
        // No strand: each loop has exactly one thread, which serialises a connection's work
        // already (a strand per connection cost ~10% of /healthz's CPU in type-erased copies).
        auto [ec, socket] =
            co_await acceptor.async_accept(loop_for_next_connection().get_executor(), kUseTuple);
        if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
                co_return;  // stop() closed the acceptor
            }
            // EMFILE and friends: the listener must survive, but the next accept fails at once
            // too until a descriptor frees up, so pause, longer each time.
            accept_errors.fetch_add(1);
            ++failures;
            const bool longer = pause < kAcceptBackoffMax;
            pause = std::clamp(pause * 2, kAcceptBackoffMin, kAcceptBackoffMax);
            if (longer || failures % 60 == 0) {
                log->warn("accept failed, pausing error={} failures={} pause_ms={}", ec.message(),
                          failures, pause.count());
            }
            accept_pause.expires_after(pause);
            auto [wait_ec] = co_await accept_pause.async_wait(kUseTuple);
            if (wait_ec || !acceptor.is_open()) {
                co_return;
            }
            continue;
        }
        if (failures > 0) {
            log->info("accepting again failures={}", failures);
            failures = 0;
            pause = core::Millis{0};
        }
        spawn_session(std::move(socket));
    }
}

std::shared_ptr<ssl::context> Server::current_tls_context() {
    std::lock_guard lock{tls_mu};
    return tls_context;
}

core::Result<void> Server::reload_tls() {
    if (settings.tls.cert_file.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           "cannot reload TLS: it is off (no server.tls.cert_file)"};
    }
    auto context = make_server_tls_context(settings.tls);
    if (!context) {
        return context.error();
    }
    std::lock_guard lock{tls_mu};
    tls_context = std::move(*context);
    return {};
}

void Server::register_connection(const std::shared_ptr<Connection>& connection) {
    std::lock_guard lock{mu};
    connections.emplace(connection.get(), connection);
}

void Server::spawn_session(tcp::socket socket) {
    auto tls = current_tls_context();
    bool full = false;
    {
        // Only this loop adds connections, so the count cannot grow between here and the
        // registration below; sessions ending meanwhile only make room.
        std::lock_guard lock{mu};
        const auto limit = static_cast<std::size_t>(std::max(0, settings.max_connections));
        full = connections.size() >= limit;
    }
    if (full) {
        refuse(std::move(socket), tls != nullptr);
        return;
    }
    accepted.fetch_add(1);
    auto executor = socket.get_executor();
    // Spawned outside the lock: co_spawn may start the coroutine inline, and a session that
    // ends at once (stopping) unregisters under the same mutex.
    if (tls) {
        auto connection =
            std::make_shared<StreamConnection<TlsStream>>(std::move(socket), std::move(tls));
        register_connection(connection);
        asio::co_spawn(executor, Session<TlsStream>::run(*this, std::move(connection)),
                       asio::detached);
    } else {
        auto connection = std::make_shared<StreamConnection<DeadlineStream>>(std::move(socket));
        register_connection(connection);
        asio::co_spawn(executor, Session<DeadlineStream>::run(*this, std::move(connection)),
                       asio::detached);
    }
}

/// Past max_connections. A few refusals linger to deliver a 503; the rest (and all on a TLS
/// listener, where a 503 needs a handshake first) are closed at once, so the cap holds.
void Server::refuse(tcp::socket socket, bool tls) {
    rejected.fetch_add(1);
    if (tls || lingering_refusals.load() >= kMaxLingeringRefusals) {
        log->debug("connection closed: too many connections max_connections={}",
                   settings.max_connections);
        beast::error_code ec;
        socket.close(ec);
        return;
    }
    log->warn("connection refused: too many connections max_connections={}",
              settings.max_connections);
    lingering_refusals.fetch_add(1);
    auto executor = socket.get_executor();
    asio::co_spawn(executor, send_refusal(std::move(socket)), asio::detached);
}

/// A 503 and close, without reading the request first.
asio::awaitable<void> Server::send_refusal(tcp::socket socket) {
    // Counted down however the frame ends, even destroyed unfinished with its loop.
    struct Lingering {
        std::atomic<int>& count;
        ~Lingering() { count.fetch_sub(1); }
    } lingering{lingering_refusals};
    beast::tcp_stream stream{std::move(socket)};
    http::response<http::string_body> message{http::status::service_unavailable, 11};
    message.set(http::field::server, "aviary");
    message.set(http::field::content_type, "text/plain; charset=utf-8");
    message.body() = "too many connections";
    message.keep_alive(false);
    message.prepare_payload();
    // One deadline for the whole refusal: it bounds how long the descriptor is held.
    stream.expires_after(std::min(settings.read_timeout, kLingerMax));
    auto [ec, n] = co_await http::async_write(stream, message, kUseTuple);
    if (ec) {
        co_return;
    }
    // Same reason as Session::linger_close: the request the client may have sent is unread.
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    std::array<char, 4096> sink{};
    for (;;) {
        auto [read_ec, read] = co_await stream.async_read_some(asio::buffer(sink), kUseTuple);
        if (read_ec) {
            co_return;
        }
    }
}

void Server::unregister(Connection* connection) {
    std::lock_guard lock{mu};
    connections.erase(connection);
    if (connections.empty()) {
        drained.notify_all();
    }
}

/// Closes idle connections only (a busy one ends itself after its response), or all of them.
void Server::close_connections(bool idle_only) {
    std::lock_guard lock{mu};
    for (const auto& [raw, connection] : connections) {
        // On the connection's strand: `idle` and the stream are that strand's alone.
        asio::post(connection->tcp().get_executor(), [connection = connection, idle_only] {
            if (!idle_only || connection->idle) {
                connection->tcp().close();
            }
        });
    }
}

bool Server::wait_for_drain(core::Millis within) {
    std::unique_lock lock{mu};
    return drained.wait_for(lock, within, [this] { return connections.empty(); });
}

void Server::stop() {
    std::lock_guard lifecycle{lifecycle_mu};
    stopping.store(true);
    if (state != State::kRunning) {
        state = State::kStopped;
        return;
    }
    AVIARY_ASSERT(!on_own_loop(),
                  "HttpServer::stop() must not run on the server's own I/O threads");
    // Closed before stop() goes on, so a connection attempted from now on is refused by the
    // kernel instead of sitting in the backlog.
    std::promise<void> closed;
    asio::post(accept_strand, [this, &closed] {
        beast::error_code ec;
        acceptor.close(ec);
        accept_pause.cancel();
        closed.set_value();
    });
    closed.get_future().wait();

    close_connections(true);
    if (!wait_for_drain(settings.shutdown_grace)) {
        log->warn("shutdown grace over, closing connections grace_ms={}",
                  settings.shutdown_grace.count());
        close_connections(false);
        wait_for_drain(kForcedCloseWait);
    }
    keep_running.clear();
    ioc.stop();
    for (auto& loop : more_loops) {
        loop->stop();
    }
    for (auto& thread : threads) {
        thread.join();
    }
    threads.clear();
    {
        // Sessions still suspended (a handler that never returned) are destroyed with ioc; their
        // connections must go with them, not after ioc.
        std::lock_guard lock{mu};
        connections.clear();
    }
    state = State::kStopped;
    log->info("http server stopped requests={}", requests.load());
}

}  // namespace

struct HttpServer::Impl : Server {
    using Server::Server;
};

// ---------------------------------------------------------------------------------------------

HttpServer::HttpServer(ServerSettings settings, Handler handler, BodyPolicy streams_body)
    : impl_(std::make_unique<Impl>(
          std::move(settings), std::move(handler), std::move(streams_body))) {}

HttpServer::~HttpServer() {
    stop();
}

core::Result<std::string> HttpServer::start() {
    return impl_->start();
}

void HttpServer::stop() {
    impl_->stop();
}

core::Result<void> HttpServer::reload_tls() {
    return impl_->reload_tls();
}

bool HttpServer::stopping() const {
    return impl_->stopping.load();
}

ServerStats HttpServer::stats() const {
    ServerStats stats;
    stats.accepted = impl_->accepted.load();
    stats.rejected = impl_->rejected.load();
    stats.requests = impl_->requests.load();
    stats.accept_errors = impl_->accept_errors.load();
    stats.tls_handshake_failures = impl_->tls_handshake_failures.load();
    std::lock_guard lock{impl_->mu};
    stats.open = static_cast<std::int64_t>(impl_->connections.size());
    return stats;
}

}  // namespace aviary::net
