// WebSocket, both sides: the server's WebSocket sessions (handed a connection by an HTTP
// session, see websocket_session.hpp) and the blocking WebSocketClient. Beast's websocket
// headers are parsed here only.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <deque>
#include <limits>
#include <memory>
#include <string>
#include <utility>

#include "net/client_connection.hpp"
#include "net/deadline_stream.hpp"
#include "net/http_session.hpp"
#include "net/websocket_session.hpp"

namespace aviary::net {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace http = beast::http;

// Beast closes a socket whose WebSocket timed out, and tears down the connection after a close
// handshake, through these customisation points (found by argument-dependent lookup).
void beast_close_socket(DeadlineStream& stream) {
    stream.close();
}

template <class TeardownHandler>
void async_teardown(beast::role_type role, DeadlineStream& stream, TeardownHandler&& handler) {
    websocket::async_teardown(role, stream.socket(), std::forward<TeardownHandler>(handler));
}

void teardown(beast::role_type role, DeadlineStream& stream, beast::error_code& ec) {
    websocket::teardown(role, stream.socket(), ec);
}

// Beast's own overloads for an ssl::stream live in boost::beast, which argument-dependent
// lookup does not search for ssl::stream<DeadlineStream>: forward to them. (Asynchronous only:
// the server never closes a WebSocket synchronously.)
template <class TeardownHandler>
void async_teardown(beast::role_type role,
                    asio::ssl::stream<DeadlineStream>& stream,
                    TeardownHandler&& handler) {
    beast::async_teardown(role, stream, std::forward<TeardownHandler>(handler));
}

namespace client {

void beast_close_socket(ClientConnection& connection) {
    connection.close();
}

template <class TeardownHandler>
void async_teardown(beast::role_type role,
                    ClientConnection& connection,
                    TeardownHandler&& handler) {
    if (auto* tls = connection.tls()) {
        beast::async_teardown(role, *tls, std::forward<TeardownHandler>(handler));
    } else {
        websocket::async_teardown(role, connection.tcp().socket(),
                                  std::forward<TeardownHandler>(handler));
    }
}

void teardown(beast::role_type role, ClientConnection& connection, beast::error_code& ec) {
    if (auto* tls = connection.tls()) {
        beast::teardown(role, *tls, ec);
    } else {
        websocket::teardown(role, connection.tcp().socket(), ec);
    }
}

}  // namespace client

bool is_websocket_upgrade(const Request& request) {
    if (request.method != "GET") {
        return false;
    }
    auto upgrade = request.header("Upgrade");
    auto connection = request.header("Connection");
    if (!upgrade || !connection || !beast::iequals(*upgrade, "websocket")) {
        return false;
    }
    // Connection is a list of tokens: "keep-alive, Upgrade".
    bool has_upgrade = false;
    for (auto token : http::token_list{*connection}) {
        has_upgrade = has_upgrade || beast::iequals(token, "upgrade");
    }
    return has_upgrade;
}

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
// Messages the reader keeps for read() before it stops reading (backpressure to the peer).
constexpr std::size_t kInboxMessages = 16;
// RFC 6455 §5.5: a control frame's payload is at most 125 bytes, 2 of them the code.
constexpr std::size_t kMaxCloseReason = 123;

std::string cut_reason(std::string reason) {
    if (reason.size() > kMaxCloseReason) {
        reason.resize(kMaxCloseReason);
        // Never cut inside a UTF-8 sequence: drop continuation bytes at the end.
        while (!reason.empty() && (static_cast<unsigned char>(reason.back()) & 0xC0) == 0x80) {
            reason.pop_back();
        }
        if (!reason.empty() && (static_cast<unsigned char>(reason.back()) & 0x80) != 0) {
            reason.pop_back();
        }
    }
    return reason;
}

/// A signal between coroutines on one loop: wait() parks until notify(), and returns at once
/// when notify() came first (a flag, not a count: the waiter re-checks its condition).
class Signal {
public:
    explicit Signal(const asio::any_io_executor& executor) : timer_(executor) {}
    asio::awaitable<void> wait() {
        if (!notified_) {
            timer_.expires_at(asio::steady_timer::time_point::max());
            // Cancelled by notify() or by the loop's shutdown; either way the caller re-checks.
            (void)co_await timer_.async_wait(kUseTuple);
        }
        notified_ = false;
    }
    void notify() {
        notified_ = true;
        timer_.cancel();
    }

private:
    asio::steady_timer timer_;
    bool notified_ = false;
};

}  // namespace

namespace server_side {

/// One accepted WebSocket on the connection's loop: the handler's WebSocket, and the reader and
/// writer coroutines that run beside the handler.
template <class Stream>
class WsSession final : public WebSocket {
public:
    WsSession(Stream& stream, Connection& connection, SessionHost& host, std::string remote)
        : ws_(stream),
          connection_(connection),
          tcp_(connection.tcp()),
          host_(host),
          settings_(host.settings.websocket),
          remote_(std::move(remote)),
          inbox_signal_(tcp_.get_executor()),
          reader_resume_(tcp_.get_executor()),
          outbox_signal_(tcp_.get_executor()) {}

    asio::awaitable<void> run(const http::request<http::empty_body>& head, Response& response) {
        ws_.read_message_max(settings_.max_message_bytes);
        ws_.auto_fragment(false);
        websocket::stream_base::timeout timeouts{};
        timeouts.handshake_timeout = settings_.close_timeout;
        timeouts.idle_timeout = settings_.idle_timeout;
        timeouts.keep_alive_pings = true;
        ws_.set_option(timeouts);
        if (settings_.deflate) {
            // Compression level 1: most of the gain on log lines and JSON at a fraction of the
            // CPU; a small memLevel keeps each connection's deflate state near 140 KiB.
            websocket::permessage_deflate deflate;
            deflate.server_enable = true;
            deflate.compLevel = 1;
            deflate.memLevel = 4;
            deflate.msg_size_threshold = settings_.deflate_min_bytes;
            ws_.set_option(deflate);
        }
        ws_.set_option(websocket::stream_base::decorator(
            [headers = response.headers](websocket::response_type& message) {
                message.set(http::field::server, "aviary");
                for (const auto& header : headers) {
                    message.set(header.name, header.value);
                }
            }));
        tcp_.expires_after(host_.settings.write_timeout);
        auto [ec] = co_await ws_.async_accept(head, kUseTuple);
        tcp_.expires_never();  // from here Beast's own timer watches for silence
        if (ec) {
            host_.log->debug("websocket handshake failed remote={} error={}", remote_,
                             ec.message());
            co_return;
        }
        connection_.on_stopping = [this] { close(1001, "server shutting down"); };
        if (host_.stopping.load()) {
            close(1001, "server shutting down");
        }
        using namespace asio::experimental::awaitable_operators;
        auto handler_part = run_handler(response);
        auto reader_part = read_loop();
        auto writer_part = write_loop();
        try {
            co_await (std::move(handler_part) && std::move(reader_part) && std::move(writer_part));
        } catch (const std::exception& e) {
            host_.log->error("websocket failed remote={} error={}", remote_, e.what());
        }
        connection_.on_stopping = nullptr;
    }

    // --- WebSocket ------------------------------------------------------------------------

    asio::awaitable<core::Result<WebSocketMessage>> read() override {
        while (inbox_.empty() && !read_ended_ && !closing_) {
            co_await inbox_signal_.wait();
        }
        if (!inbox_.empty()) {
            auto message = std::move(inbox_.front());
            inbox_.pop_front();
            inbox_bytes_ -= message.data.size();
            reader_resume_.notify();
            co_return message;
        }
        if (read_error_) {
            co_return *read_error_;
        }
        co_return core::Error{core::ErrorCode::kUnavailable, close_text_};
    }

    bool send(WebSocketMessage message) override {
        if (closing_ || read_ended_) {
            return false;
        }
        if (outbox_.size() >= settings_.max_queued_messages ||
            outbox_bytes_ + message.data.size() > settings_.max_queued_bytes) {
            if (settings_.slow_reader == SlowReader::kDrop) {
                ++stats_.dropped;
                return false;
            }
            const auto queued = outbox_.size();
            outbox_.clear();
            outbox_bytes_ = 0;
            close(1008, fmt::format("slow reader: {} messages queued unread", queued));
            return false;
        }
        outbox_bytes_ += message.data.size();
        outbox_.push_back(std::move(message));
        outbox_signal_.notify();
        return true;
    }

    void close(std::uint16_t code, std::string reason) override {
        if (closing_) {
            return;
        }
        closing_ = true;
        close_reason_ = websocket::close_reason{static_cast<websocket::close_code>(code),
                                                cut_reason(std::move(reason))};
        close_text_ =
            fmt::format("closed by the server ({} {})", code,
                        std::string_view{close_reason_.reason.data(), close_reason_.reason.size()});
        inbox_signal_.notify();
        reader_resume_.notify();
        outbox_signal_.notify();
    }

    bool is_open() const override { return !closing_ && !read_ended_; }
    asio::any_io_executor executor() override { return tcp_.get_executor(); }
    WebSocketStats stats() const override { return stats_; }

private:
    asio::awaitable<void> run_handler(Response& response) {
        try {
            auto pending = response.websocket(*this);
            co_await std::move(pending);
        } catch (const std::exception& e) {
            host_.log->error("websocket handler failed remote={} error={}", remote_, e.what());
            close(1011, "internal error");
        }
        close(1000, "");
    }

    /// Reads until the peer closes or the connection fails; control frames are answered inside
    /// async_read. Pauses while read() has kInboxMessages unread.
    asio::awaitable<void> read_loop() {
        beast::flat_buffer buffer;
        for (;;) {
            while (inbox_full() && !closing_) {
                co_await reader_resume_.wait();
            }
            if (inbox_full()) {
                co_return;  // closing while paused: async_close reads the peer's answer
            }
            auto [ec, n] = co_await ws_.async_read(buffer, kUseTuple);
            if (ec) {
                // The peer's close (or the answer to ours), a timeout, a failure: either way
                // nothing more can be sent.
                read_error_ = describe(ec);
                read_ended_ = true;
                inbox_signal_.notify();
                outbox_signal_.notify();
                co_return;
            }
            ++stats_.received;
            inbox_bytes_ += buffer.size();
            inbox_.push_back(
                WebSocketMessage{beast::buffers_to_string(buffer.data()), ws_.got_binary()});
            buffer.consume(buffer.size());
            inbox_signal_.notify();
        }
    }

    /// Unread messages are bounded in count and bytes (about two of the largest allowed).
    bool inbox_full() const {
        return inbox_.size() >= kInboxMessages || inbox_bytes_ >= settings_.max_message_bytes;
    }

    /// Sends the queue in order, then (once closing) our close frame.
    asio::awaitable<void> write_loop() {
        for (;;) {
            while (outbox_.empty() && !closing_ && !read_ended_) {
                co_await outbox_signal_.wait();
            }
            if (outbox_.empty() || read_ended_) {
                break;
            }
            auto message = std::move(outbox_.front());
            outbox_.pop_front();
            outbox_bytes_ -= message.data.size();
            ws_.binary(message.binary);
            tcp_.expires_after(host_.settings.write_timeout);
            auto [ec, n] = co_await ws_.async_write(asio::buffer(message.data), kUseTuple);
            tcp_.expires_never();
            if (ec) {
                co_return;  // the socket is gone: the reader fails too
            }
            ++stats_.sent;
        }
        if (read_ended_ || !ws_.is_open()) {
            co_return;  // the peer closed first (Beast answered it) or the connection failed
        }
        // Bounded by the deadline sweep; async_close reads the peer's answer unless the
        // reader is still waiting for a frame, which then ends with `closed`.
        tcp_.expires_after(settings_.close_timeout);
        // Whether the peer answered or not, the connection ends here: nothing to act on.
        (void)co_await ws_.async_close(close_reason_, kUseTuple);
        tcp_.expires_never();
    }

    core::Error describe(const beast::error_code& ec) {
        if (closing_) {
            return core::Error{core::ErrorCode::kUnavailable, close_text_};
        }
        if (ec == websocket::error::closed) {
            const auto& reason = ws_.reason();
            close_text_ =
                fmt::format("closed by the peer ({} {})", static_cast<unsigned>(reason.code),
                            std::string_view{reason.reason.data(), reason.reason.size()});
            return core::Error{core::ErrorCode::kUnavailable, close_text_};
        }
        if (ec == websocket::error::message_too_big || ec == websocket::error::buffer_overflow) {
            close_text_ =
                fmt::format("a message exceeded the {}-byte limit", settings_.max_message_bytes);
            return core::Error{core::ErrorCode::kInvalidArgument, close_text_};
        }
        if (ec == beast::error::timeout) {
            close_text_ =
                fmt::format("the peer was silent past {} ms", settings_.idle_timeout.count());
            return core::Error{core::ErrorCode::kTimeout, close_text_};
        }
        close_text_ = fmt::format("connection failed: {}", ec.message());
        return core::Error{core::ErrorCode::kUnavailable, close_text_};
    }

    websocket::stream<Stream&> ws_;
    Connection& connection_;
    DeadlineStream& tcp_;
    SessionHost& host_;
    const WebSocketSettings& settings_;
    std::string remote_;

    std::deque<WebSocketMessage> inbox_;
    std::size_t inbox_bytes_ = 0;
    Signal inbox_signal_;
    Signal reader_resume_;
    bool read_ended_ = false;
    std::optional<core::Error> read_error_;

    std::deque<WebSocketMessage> outbox_;
    std::size_t outbox_bytes_ = 0;
    Signal outbox_signal_;

    bool closing_ = false;
    websocket::close_reason close_reason_;
    std::string close_text_ = "closed";
    WebSocketStats stats_;
};

template <class Stream>
asio::awaitable<void> serve_websocket(Stream& stream,
                                      Connection& connection,
                                      SessionHost& host,
                                      const http::request<http::empty_body>& head,
                                      Response& response,
                                      const std::string& remote) {
    WsSession<Stream> session{stream, connection, host, remote};
    co_await session.run(head, response);
}

template asio::awaitable<void> serve_websocket<DeadlineStream>(
    DeadlineStream&,
    Connection&,
    SessionHost&,
    const http::request<http::empty_body>&,
    Response&,
    const std::string&);
template asio::awaitable<void> serve_websocket<TlsStream>(TlsStream&,
                                                          Connection&,
                                                          SessionHost&,
                                                          const http::request<http::empty_body>&,
                                                          Response&,
                                                          const std::string&);

}  // namespace server_side

// ---------------------------------------------------------------------------------------------
// WebSocketClient

struct WebSocketClient::Impl {
    asio::io_context io;
    std::unique_ptr<client::ClientConnection> connection;
    std::optional<websocket::stream<client::ClientConnection&>> ws;
    beast::flat_buffer buffer;
    std::string shown_url;
    bool closed = false;
    bool deflated = false;

    /// Runs `op` (which sets `done` as its last act) for at most `timeout`; past it the
    /// connection is closed, which ends the operation. True when it finished in time.
    bool run_for(core::Millis timeout, asio::awaitable<void> op, const bool& done) {
        asio::co_spawn(io, std::move(op), asio::detached);
        io.restart();
        io.run_for(timeout);
        if (done) {
            return true;
        }
        if (connection) {
            connection->close();
        }
        closed = true;
        io.restart();
        io.run_for(core::Millis{1000});  // the failed operation completes
        return false;
    }

    asio::awaitable<void> handshake(client::Target target,
                                    ClientTls tls,
                                    std::shared_ptr<asio::ssl::context> context,
                                    WebSocketConnect options,
                                    core::Result<void>& outcome,
                                    bool& done) {
        auto deadline = client::Clock::now() + options.timeout;
        auto opened = co_await client::open_connection(target, tls, std::move(context), deadline,
                                                       shown_url, options.timeout);
        if (!opened) {
            outcome = opened.error();
            done = true;
            co_return;
        }
        connection = std::move(*opened);
        ws.emplace(*connection);
        ws->read_message_max(options.max_message_bytes);
        if (options.deflate) {
            websocket::permessage_deflate deflate;
            deflate.client_enable = true;
            deflate.compLevel = 1;
            deflate.memLevel = 4;
            ws->set_option(deflate);
        }
        ws->set_option(websocket::stream_base::decorator(
            [headers = options.headers](websocket::request_type& message) {
                message.set(http::field::user_agent, "aviary");
                for (const auto& header : headers) {
                    message.set(header.name, header.value);
                }
            }));
        websocket::response_type answer;
        auto [ec] =
            co_await ws->async_handshake(answer, target.host_header, target.path, kUseTuple);
        if (ec == websocket::error::upgrade_declined) {
            outcome = core::Error{core::ErrorCode::kUnavailable,
                                  fmt::format("{} refused the WebSocket upgrade: {} {}", shown_url,
                                              answer.result_int(), answer.body())};
        } else if (ec) {
            outcome = core::Error{
                core::ErrorCode::kUnavailable,
                fmt::format("WebSocket handshake with {} failed: {}", shown_url, ec.message())};
        } else {
            // The connect deadline covered the handshake only: each send, read and close has its
            // own timeout from here (run_for), so a connection may be held as long as wanted.
            connection->tcp().expires_never();
            const auto extensions = answer[http::field::sec_websocket_extensions];
            deflated = extensions.find("permessage-deflate") != std::string_view::npos;
        }
        done = true;
    }

    asio::awaitable<void> write(const WebSocketMessage& message,
                                beast::error_code& failure,
                                bool& done) {
        ws->binary(message.binary);
        auto [ec, n] = co_await ws->async_write(asio::buffer(message.data), kUseTuple);
        failure = ec;
        done = true;
    }

    asio::awaitable<void> read(beast::error_code& failure, bool& done) {
        auto [ec, n] = co_await ws->async_read(buffer, kUseTuple);
        failure = ec;
        done = true;
    }

    asio::awaitable<void> close(websocket::close_reason why,
                                beast::error_code& failure,
                                bool& done) {
        auto [ec] = co_await ws->async_close(why, kUseTuple);
        failure = ec;
        done = true;
    }
};

WebSocketClient::WebSocketClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
WebSocketClient::~WebSocketClient() = default;

core::Result<std::unique_ptr<WebSocketClient>> WebSocketClient::connect(WebSocketConnect options) {
    auto impl = std::make_unique<Impl>();
    impl->shown_url = redact_url(options.url);
    std::string url = options.url;
    if (url.starts_with("ws://")) {
        url = "http://" + url.substr(5);
    } else if (url.starts_with("wss://")) {
        url = "https://" + url.substr(6);
    } else {
        return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("not a WebSocket URL (ws:// or wss://): {}", impl->shown_url)};
    }
    auto target = client::parse_target(url);
    if (!target) {
        return target.error();
    }
    ClientTls tls = options.tls.value_or(ClientTls{});
    std::shared_ptr<asio::ssl::context> context;
    if (target->https) {
        auto made = client::make_tls_context(tls);
        if (!made) {
            return made.error();
        }
        context = std::move(*made);
    }
    core::Result<void> outcome;
    bool done = false;
    const auto timeout = options.timeout;
    auto handshake = impl->handshake(std::move(*target), std::move(tls), std::move(context),
                                     std::move(options), outcome, done);
    if (!impl->run_for(timeout + core::Millis{100}, std::move(handshake), done)) {
        return core::Error{core::ErrorCode::kTimeout,
                           fmt::format("WebSocket connect to {} timed out after {} ms",
                                       impl->shown_url, timeout.count())};
    }
    if (!outcome) {
        return outcome.error();
    }
    return std::unique_ptr<WebSocketClient>(new WebSocketClient(std::move(impl)));
}

core::Result<void> WebSocketClient::send(const WebSocketMessage& message, core::Millis timeout) {
    auto& d = *impl_;
    if (d.closed) {
        return core::Error{core::ErrorCode::kUnavailable, "the WebSocket is closed"};
    }
    beast::error_code failure;
    bool done = false;
    auto writing = d.write(message, failure, done);
    if (!d.run_for(timeout, std::move(writing), done)) {
        return core::Error{core::ErrorCode::kTimeout,
                           fmt::format("WebSocket write timed out after {} ms", timeout.count())};
    }
    if (failure) {
        d.closed = true;
        return core::Error{core::ErrorCode::kUnavailable,
                           fmt::format("WebSocket write failed: {}", failure.message())};
    }
    return {};
}

core::Result<WebSocketMessage> WebSocketClient::read(core::Millis timeout) {
    auto& d = *impl_;
    if (d.closed) {
        return core::Error{
            core::ErrorCode::kUnavailable,
            fmt::format("the WebSocket is closed ({} {})", close_code(), close_reason())};
    }
    beast::error_code failure;
    bool done = false;
    auto reading = d.read(failure, done);
    if (!d.run_for(timeout, std::move(reading), done)) {
        return core::Error{core::ErrorCode::kTimeout,
                           fmt::format("no WebSocket message within {} ms (the connection is "
                                       "closed)",
                                       timeout.count())};
    }
    if (failure) {
        d.closed = true;
        if (failure == websocket::error::closed) {
            return core::Error{core::ErrorCode::kUnavailable,
                               fmt::format("the server closed the WebSocket ({} {})", close_code(),
                                           close_reason())};
        }
        return core::Error{core::ErrorCode::kUnavailable,
                           fmt::format("WebSocket read failed: {}", failure.message())};
    }
    WebSocketMessage message{beast::buffers_to_string(d.buffer.data()), d.ws->got_binary()};
    d.buffer.consume(d.buffer.size());
    return message;
}

core::Result<void> WebSocketClient::close(std::uint16_t code,
                                          std::string_view reason,
                                          core::Millis timeout) {
    auto& d = *impl_;
    if (d.closed) {
        return {};
    }
    beast::error_code failure;
    bool done = false;
    auto closing = d.close(websocket::close_reason{static_cast<websocket::close_code>(code),
                                                   cut_reason(std::string{reason})},
                           failure, done);
    const bool in_time = d.run_for(timeout, std::move(closing), done);
    d.closed = true;
    if (!in_time) {
        return core::Error{core::ErrorCode::kTimeout,
                           fmt::format("WebSocket close timed out after {} ms", timeout.count())};
    }
    if (failure) {
        return core::Error{core::ErrorCode::kUnavailable,
                           fmt::format("WebSocket close failed: {}", failure.message())};
    }
    return {};
}

bool WebSocketClient::deflated() const {
    return impl_->deflated;
}

std::uint16_t WebSocketClient::close_code() const {
    return impl_->ws ? static_cast<std::uint16_t>(impl_->ws->reason().code) : 0;
}

std::string WebSocketClient::close_reason() const {
    if (!impl_->ws) {
        return {};
    }
    const auto& reason = impl_->ws->reason().reason;
    return std::string{reason.data(), reason.size()};
}

}  // namespace aviary::net
