#pragma once
/// net: the HTTP plumbing every speaker shares (docs/architecture.md). An HTTP/1.1 server
/// (plain or TLS) with keep-alive and limits, streamed bodies both ways, upgrades and graceful
/// shutdown; an outbound HTTP/HTTPS client with timeouts and a keep-alive pool; a reverse
/// proxy; and offload() to run blocking calls (the store) off the I/O loop.
///
/// Beast lives only in net's .cpp files: this header shows plain structs and Asio awaitables.
/// Handlers run as coroutines on the server's I/O threads; a handler must not block: blocking
/// work goes through offload().
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/core.hpp"

namespace aviary::net {

namespace asio = boost::asio;

/// TLS on the listener (OpenSSL, TLS 1.2 or later). On when cert_file is set.
struct TlsServerSettings {
    std::string cert_file;  ///< PEM certificate chain, the server's own first
    std::string key_file;   ///< PEM private key of cert_file
    /// When set, a client certificate is asked for and verified against these PEM CAs; a
    /// verified one's subject CN becomes Request::peer_identity.
    std::string client_ca_file;
    bool require_client_cert = false;  ///< refuse the handshake without a verified certificate
};

/// What a server does when a WebSocket's peer reads slower than the handler sends.
enum class SlowReader {
    kClose,  ///< close with 1008 and a reason naming the queue: the client reconnects and resumes
    kDrop,   ///< drop the new message and count it (WebSocket::stats().dropped); send() is false
};

/// Limits of every WebSocket a server accepts (see WebSocket).
struct WebSocketSettings {
    std::size_t max_message_bytes =
        std::size_t{1024} * 1024;  ///< a larger message closes with 1009
    /// A ping goes out after half of this without a frame from the peer; with nothing heard for
    /// all of it the connection is closed (a peer that vanished without a FIN).
    core::Millis idle_timeout{std::chrono::seconds{60}};
    std::size_t max_queued_messages = 1024;                       ///< the send queue, in messages
    std::size_t max_queued_bytes = std::size_t{8} * 1024 * 1024;  ///< and in bytes
    SlowReader slow_reader = SlowReader::kClose;
    /// How long a close handshake may take (ours or the peer's) before the socket is closed.
    core::Millis close_timeout{std::chrono::seconds{5}};
    /// permessage-deflate (RFC 7692) when the client offers it. max_message_bytes bounds a
    /// message after it is inflated, so a small compressed bomb still closes with 1009.
    bool deflate = true;
    /// Messages we send smaller than this go uncompressed (not worth the CPU).
    std::size_t deflate_min_bytes = 256;
};

struct ServerSettings {
    std::string listen = "127.0.0.1:1337";  ///< HOST:PORT; port 0 picks a free one
    int io_threads = 1;                     ///< threads running the I/O loop
    int blocking_threads = 64;  ///< BlockingPool size for store calls (they wait on commits)
    std::size_t max_header_bytes = std::size_t{16} * 1024;
    std::size_t max_body_bytes = std::size_t{1024} * 1024;
    core::Millis read_timeout{std::chrono::seconds{30}};   ///< to receive a whole request
    core::Millis idle_timeout{std::chrono::seconds{60}};   ///< keep-alive wait for the next one
    core::Millis write_timeout{std::chrono::seconds{30}};  ///< to send a response (or a chunk)
    /// A hard cap: past it a new connection gets 503 and is closed (see HttpServer).
    int max_connections = 1024;
    core::Millis shutdown_grace{std::chrono::seconds{10}};  ///< in-flight requests may finish
    TlsServerSettings tls;
    WebSocketSettings websocket;
};

struct Header {
    std::string name;
    std::string value;
};

/// Case-insensitive lookup of the first header named `name`.
std::optional<std::string_view> find_header(const std::vector<Header>& headers,
                                            std::string_view name);

/// A request body read as it arrives, for routes that stream it (see BodyPolicy). The same
/// max_body_bytes cap applies as to a buffered body.
class BodyReader {
public:
    virtual ~BodyReader() = default;
    /// The next piece of the body; an empty string once the body has ended. Errors:
    /// kInvalidArgument past max_body_bytes, kTimeout past read_timeout, kUnavailable when the
    /// client went away.
    virtual asio::awaitable<core::Result<std::string>> read_some() = 0;
};

/// A connection after the server sent a handler's 101 response (an upgrade the handler
/// accepted, e.g. a proxied WebSocket): raw bytes both ways, no HTTP framing. Bytes the client
/// sent after the request head come first from read_some(). Each read may wait idle_timeout,
/// each write write_timeout; the connection closes when the tunnel callback returns.
class Tunnel {
public:
    virtual ~Tunnel() = default;
    /// Some bytes (empty at end of stream); kUnavailable on a reset, kTimeout when idle past
    /// idle_timeout.
    virtual asio::awaitable<core::Result<std::string>> read_some() = 0;
    virtual asio::awaitable<core::Result<void>> write(std::string_view data) = 0;
    /// Half-closes the sending side (the peer reads end of stream). Under TLS this ends the TCP
    /// stream without a close_notify, so a strict peer sees a truncated stream.
    virtual void shutdown_send() = 0;
};

struct Request {
    std::string method;  ///< "GET", "POST", ...
    std::string target;  ///< as sent: "/api/v1/jobs?node=lotus-0"
    std::string path;    ///< percent-decoded path: "/api/v1/jobs"
    std::vector<std::pair<std::string, std::string>> query;  ///< decoded, in order
    std::vector<Header> headers;
    std::string body;    ///< the whole body, unless the route streams it (body_reader)
    std::string remote;  ///< peer "127.0.0.1:5555"
    /// The subject CN of the client certificate, when the connection is TLS with
    /// client_ca_file set and the client sent a certificate that verified; empty otherwise.
    /// Who the peer proved to be, not what it claims in a header.
    std::string peer_identity;
    /// Set when BodyPolicy said this request's body is streamed and the body had not come whole
    /// with the head: `body` is then empty and the handler reads the body here. A body that
    /// came whole is in `body`, whatever the policy. Valid until the handler returns.
    BodyReader* body_reader = nullptr;

    std::optional<std::string_view> header(std::string_view name) const {
        return find_header(headers, name);
    }
    /// The first query parameter named `name`.
    std::optional<std::string_view> param(std::string_view name) const;
};

/// Where a streamed response writes its chunks.
class ResponseStream {
public:
    virtual ~ResponseStream() = default;
    /// Sends one chunk (empty data is skipped). Returns false once the client has gone or the
    /// server is shutting down: the producer should stop.
    virtual asio::awaitable<bool> write(std::string data) = 0;
};

struct WebSocketMessage {
    std::string data;
    bool binary = false;  ///< a binary frame; text frames carry UTF-8
};

struct WebSocketStats {
    std::uint64_t received = 0;  ///< messages
    std::uint64_t sent = 0;      ///< messages written to the socket
    std::uint64_t dropped = 0;   ///< refused by send() under SlowReader::kDrop
};

/// An accepted WebSocket, handed to Response::websocket (RFC 6455, through Beast). The server
/// reads and writes for the handler: a reader keeps control frames flowing (pongs, the peer's
/// close) and queues a few messages for read(); a writer drains send()'s bounded queue, each
/// write under write_timeout. Use it on the connection's executor only (executor()); work
/// from other threads reaches it through a Hub subscription (below).
///
/// The connection ends when the handler returns: what is queued is sent, then a close frame
/// (1000, or what close() set), and the peer's close is awaited for close_timeout. A handler
/// that only pushes still notices the peer leaving: read() returns an error then, so run the
/// push loop `||` a read loop (Asio's awaitable operators).
class WebSocket {
public:
    virtual ~WebSocket() = default;
    /// The next message. Errors: kUnavailable once the connection is closing or closed (the
    /// message says who closed it, with code and reason), kTimeout when the peer went silent
    /// past idle_timeout, kInvalidArgument when its message was past max_message_bytes.
    virtual asio::awaitable<core::Result<WebSocketMessage>> read() = 0;
    /// Queues a message and returns at once. False when the connection is closing, or the queue
    /// is full: then SlowReader::kDrop counts the message as dropped, and kClose drops the queue
    /// and closes with 1008.
    virtual bool send(WebSocketMessage message) = 0;
    bool send_text(std::string text) { return send(WebSocketMessage{std::move(text), false}); }
    /// Starts the close: queued messages still go, then a close frame with `code` and `reason`
    /// (cut to 123 bytes). read() ends. Idempotent: the first code wins.
    virtual void close(std::uint16_t code, std::string reason) = 0;
    virtual bool is_open() const = 0;
    virtual asio::any_io_executor executor() = 0;
    virtual WebSocketStats stats() const = 0;
};

struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::vector<Header> headers;
    /// Header lines in wire form, "Name: value\r\n" each, sent after `headers` as they are: for
    /// a handler that relays a head it has already read and checked (the reverse proxy), which
    /// spares splitting it into strings and joining them again. Each name a token other than
    /// Connection, Content-Length and Transfer-Encoding, each value without CR or LF. Not for a
    /// WebSocket's 101.
    std::string header_lines;
    std::string body;
    /// When set, the response is sent with chunked encoding: `body` first (if any), then
    /// whatever `stream` writes until it returns. Held-open responses simply co_await before
    /// returning a plain Response.
    std::function<asio::awaitable<void>(ResponseStream&)> stream;
    /// When set (with status 101 and the upgrade headers the handler chose), the server sends
    /// the head and then hands the raw connection over; the connection ends when this returns.
    std::function<asio::awaitable<void>(Tunnel&)> tunnel;
    /// When set, the request is accepted as a WebSocket (the 101 is the server's, with
    /// `headers` added, e.g. Sec-WebSocket-Protocol) and this runs for the connection's life.
    /// A request that is not a WebSocket upgrade gets 426 Upgrade Required instead.
    std::function<asio::awaitable<void>(WebSocket&)> websocket;
};

/// True when `request` asks to become a WebSocket (GET, Connection: upgrade, Upgrade: websocket).
bool is_websocket_upgrade(const Request& request);

/// Answers one request. The request is the server's, handed over as an rvalue: a handler that
/// takes it by value owns it; one that takes `Request&&` (and its coroutine) may use it in place
/// until the awaitable it returned completes, which spares the moves of a request through
/// layers of handlers.
using Handler = std::function<asio::awaitable<Response>(Request&&)>;
/// Decides from the request line and headers alone (body empty) whether the handler reads the
/// body itself through Request::body_reader instead of the server buffering it whole.
using BodyPolicy = std::function<bool(const Request& head)>;

struct ServerStats {
    std::uint64_t accepted = 0;
    std::int64_t websockets = 0;  ///< WebSocket connections open now
    std::uint64_t rejected = 0;   ///< refused past max_connections
    std::uint64_t requests = 0;
    std::int64_t open = 0;                     ///< connections open now
    std::uint64_t accept_errors = 0;           ///< failed accepts (EMFILE, ENFILE, ENOBUFS...)
    std::uint64_t tls_handshake_failures = 0;  ///< handshakes refused, failed or timed out
};

/// An HTTP/1.1 server, over TLS when settings.tls.cert_file is set. Lifecycle: start() once,
/// then stop() (idempotent, safe before start).
///
/// Descriptors are bounded: at most max_connections connections are served, and past that at
/// most 16 refused connections linger (each for up to 2 s, or read_timeout if shorter) to
/// deliver their 503; any further one is closed as soon as it is accepted, as is every refused
/// connection on a TLS listener (a 503 there would cost a handshake). So the server holds at
/// most max_connections + 16 connection descriptors, plus the listener.
/// A failing accept (EMFILE) is retried after a pause that doubles from 5 ms to 1 s and resets
/// on the next success, with one warning per step.
class HttpServer {
public:
    /// `streams_body`, when set, picks the requests whose handler reads the body itself
    /// (Request::body_reader; 100-continue is sent on its first read), unless the body came
    /// whole with the head: then it is in Request::body. A Content-Length past
    /// max_body_bytes is refused with 413 before the handler runs; a chunked body crossing it
    /// is an error from read_some(). A handler that returns before the body's end costs the
    /// connection: it is closed after the response, unless the rest is at most 64 KiB and
    /// arrives within a second (or read_timeout, if shorter).
    HttpServer(ServerSettings settings, Handler handler, BodyPolicy streams_body = {});
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    /// Binds, starts io_threads threads, and returns the bound address "127.0.0.1:43210".
    core::Result<std::string> start();
    /// Stops accepting; requests in flight may finish within shutdown_grace (idle keep-alive
    /// connections are closed at once, busy ones after their response); then closes the rest
    /// and joins the threads.
    void stop();
    /// True once stop() has begun: handlers holding a response open should give up.
    bool stopping() const;
    ServerStats stats() const;
    /// Reads settings.tls's files again into a new context: connections accepted from now on
    /// use it, open ones keep theirs. On an error (naming the file and why) the old context
    /// stays in force. kInvalidArgument when TLS is off or a file is bad.
    core::Result<void> reload_tls();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// Blocking work off the I/O loop

/// A pool of threads for blocking calls. Sized for the calls that wait (store writes wait on
/// group commit), not for CPU.
class BlockingPool {
public:
    explicit BlockingPool(int threads);
    ~BlockingPool();
    BlockingPool(const BlockingPool&) = delete;
    BlockingPool& operator=(const BlockingPool&) = delete;

    /// Runs `work` on the pool and resumes the caller on its own executor. Exceptions thrown by
    /// `work` are rethrown in the caller.
    asio::awaitable<void> run(std::function<void()> work);
    /// Waits for queued work and joins the threads. Idempotent.
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// `co_await offload(pool, fn)` returns fn()'s value, computed on the pool.
/// (GCC 12 destroys a temporary callable inside co_await twice: name it first, then move it in.)
template <class F>
asio::awaitable<std::invoke_result_t<F&>> offload(BlockingPool& pool, F fn) {
    using R = std::invoke_result_t<F&>;
    if constexpr (std::is_void_v<R>) {
        std::function<void()> work = [&fn] { fn(); };
        co_await pool.run(std::move(work));
    } else {
        std::optional<R> out;
        std::function<void()> work = [&fn, &out] { out.emplace(fn()); };
        co_await pool.run(std::move(work));
        co_return std::move(*out);
    }
}

/// `value`, as an awaitable: for a function that answers some calls at once and hands the rest
/// to a coroutine, so that it is not a coroutine itself. A coroutine's frame holds every local
/// of every path, and one past asio's 1,020-byte frame cache costs a large malloc per call.
template <class T>
asio::awaitable<T> ready(T value) {
    co_return value;
}

/// Resumes the caller, on its own executor, once the `wake` that `begin` is given has been
/// called (exactly once, from any thread) and `begin` has returned: for work that answers
/// through a callback, such as a store write answered after its commit, with no thread blocked
/// meanwhile. `begin` may go on using what the caller owns until it returns, even after the
/// wake-up.
asio::awaitable<void> await_wake(std::function<void(std::function<void()>)> begin);

/// `co_await await_answer<T>(start)`: calls start(done) and returns the T that done(T) is
/// called with, exactly once and from any thread (await_wake's rules).
template <class T, class Start>
asio::awaitable<T> await_answer(Start start) {
    auto answer = std::make_shared<std::optional<T>>();
    std::function<void(std::function<void()>)> begin = [&start,
                                                        answer](std::function<void()> wake) {
        start(std::function<void(T)>{[answer, wake = std::move(wake)](T value) {
            answer->emplace(std::move(value));
            wake();
        }});
    };
    co_await await_wake(std::move(begin));
    co_return std::move(**answer);
}

// ---------------------------------------------------------------------------------------------
// Outbound client

/// How an https:// request checks the server and, for mTLS, proves who the client is. TLS 1.2 is
/// the minimum; the server's certificate must chain to a trusted CA and name the URL's host (or
/// `server_name`), DNS names and IP literals alike.
struct ClientTls {
    std::string ca_file;      ///< PEM bundle to trust instead of the system CA store
    std::string cert_file;    ///< client certificate chain (PEM) for mTLS; with key_file
    std::string key_file;     ///< its private key (PEM)
    bool verify = true;       ///< false skips certificate and host checks (test rigs only)
    std::string server_name;  ///< SNI and the name the certificate must match; the URL's host
                              ///< when empty
};

struct ClientRequest {
    std::string method = "GET";
    std::string url;  ///< "http://127.0.0.1:1337/healthz", "https://grafana.example/api"
    std::vector<Header> headers;
    std::string body;
    core::Millis timeout{std::chrono::seconds{10}};  ///< connect + send + receive, in all
    std::size_t max_body_bytes = std::size_t{64} * 1024 * 1024;
    /// For https URLs; unset means the defaults above (an HttpClient uses its settings' tls).
    std::optional<ClientTls> tls;
};

struct ClientResponse {
    int status = 0;
    std::vector<Header> headers;
    std::string body;
    std::optional<std::string_view> header(std::string_view name) const {
        return find_header(headers, name);
    }
};

/// One request on a new connection, on the caller's executor. Errors: kInvalidArgument (bad
/// URL, unreadable TLS files), kUnavailable (cannot connect, reset, TLS handshake refused),
/// kTimeout. Messages carry the URL through redact_url().
asio::awaitable<core::Result<ClientResponse>> fetch(ClientRequest request);
/// The same, blocking, on a private io_context: for the CLI, tests and benchmarks.
core::Result<ClientResponse> fetch_sync(ClientRequest request);
/// Blocking, on a private io_context, for responses that arrive over time (NDJSON progress
/// lines): `on_body_data` gets the body bytes (de-chunked) as they are received, on the
/// calling thread, and the returned response carries the status and headers with an empty
/// `body`. `timeout` covers the whole exchange, streaming included. Errors as fetch().
core::Result<ClientResponse> fetch_stream(ClientRequest request,
                                          std::function<void(std::string_view chunk)> on_body_data);

/// `url` fit for a log line or an error message: userinfo (user:password@) dropped, every query
/// value replaced by REDACTED, the fragment dropped. Works on text that does not parse as a URL.
std::string redact_url(std::string_view url);

struct ClientSettings {
    int max_idle_per_host = 8;  ///< idle keep-alive connections kept per host
    int max_per_host = 32;      ///< open connections per host; more requests wait their turn
    /// Idle connections older than this are closed by the next fetch() (no timer of its own)
    /// and never reused.
    core::Millis idle_timeout{std::chrono::seconds{30}};
    ClientTls tls;  ///< for https requests that carry no ClientRequest::tls
};

struct ClientStats {
    std::uint64_t requests = 0;
    std::uint64_t connections_opened = 0;
    std::uint64_t reused = 0;   ///< requests sent on an idle keep-alive connection
    std::uint64_t retried = 0;  ///< re-sent on a fresh connection after a stale one failed
};

/// An outbound client that keeps connections alive per scheme, host, port and TLS identity.
/// Not thread-safe: construct it with the executor of the I/O loop that calls fetch() and call
/// it only from coroutines on that executor (one thread). Destroy it after every fetch() ended.
class HttpClient {
public:
    HttpClient(asio::any_io_executor executor, ClientSettings settings);
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    /// As net::fetch(), on a pooled connection. A request that waits for a free connection
    /// (max_per_host) waits within its timeout. A reused connection that turns out closed before
    /// any response byte is replaced by a fresh one once, for idempotent methods (or when
    /// nothing was sent). `Connection: close` on either side keeps the connection out of the pool.
    asio::awaitable<core::Result<ClientResponse>> fetch(ClientRequest request);
    ClientStats stats() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// WebSocket client

struct WebSocketConnect {
    std::string url;  ///< "ws://127.0.0.1:1337/api/v1/...", "wss://host/path" (TLS as fetch)
    std::vector<Header> headers;  ///< added to the upgrade request (Authorization, Origin...)
    core::Millis timeout{std::chrono::seconds{10}};  ///< connect + handshake
    std::size_t max_message_bytes = std::size_t{16} * 1024 * 1024;
    std::optional<ClientTls> tls;
    bool deflate = false;  ///< offer permessage-deflate (RFC 7692)
};

/// A blocking WebSocket client on a private io_context: for the CLI, tests and benchmarks.
/// Answers pings while it reads. Not thread-safe.
class WebSocketClient {
public:
    /// Errors: as fetch() for the connection; kInvalidArgument for a non-ws URL;
    /// kUnavailable naming the status when the server refuses the upgrade (with its body).
    static core::Result<std::unique_ptr<WebSocketClient>> connect(WebSocketConnect options);
    ~WebSocketClient();
    WebSocketClient(const WebSocketClient&) = delete;
    WebSocketClient& operator=(const WebSocketClient&) = delete;

    core::Result<void> send(const WebSocketMessage& message, core::Millis timeout);
    /// The next message within `timeout` (kTimeout otherwise, and the connection is closed:
    /// Beast cannot abandon one read and go on).
    /// kUnavailable once closed, naming the close code and reason the server sent.
    core::Result<WebSocketMessage> read(core::Millis timeout);
    /// The close handshake; then the connection is gone.
    core::Result<void> close(std::uint16_t code, std::string_view reason, core::Millis timeout);
    /// Whether the server took the permessage-deflate offer (WebSocketConnect::deflate).
    bool deflated() const;
    /// The code and reason of the server's close frame, once one arrived (0 before).
    std::uint16_t close_code() const;
    std::string close_reason() const;

private:
    struct Impl;
    explicit WebSocketClient(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// Reverse proxy

struct ProxySettings {
    std::string upstream;  ///< "http://127.0.0.1:8888" (https too); its path prefixes targets
    core::Millis connect_timeout{std::chrono::seconds{5}};
    core::Millis response_timeout{std::chrono::seconds{30}};  ///< to the upstream's response head
    core::Millis idle_timeout{std::chrono::seconds{60}};      ///< between body pieces, tunnel bytes
    int max_connections = 64;  ///< to the upstream, per I/O thread calling forward()
    /// Keep-alive connections kept, per I/O thread. As many as may be open: connections are only
    /// opened on demand and idle ones close after idle_timeout, while a cap below the load's
    /// concurrency would close and reopen connections on every burst (connect, TIME_WAIT).
    int max_idle = 64;
    std::string via = "aviary";            ///< this proxy's name in Via headers
    std::string forwarded_proto = "http";  ///< X-Forwarded-Proto: how clients reach this proxy
    std::size_t max_buffered_body =
        std::size_t{64} * 1024;  ///< larger upstream bodies are streamed
    ClientTls tls;               ///< for an https upstream
};

struct ProxyStats {
    std::uint64_t requests = 0;
    std::uint64_t refused = 0;     ///< upstream refused or could not be reached (502)
    std::uint64_t reset = 0;       ///< upstream closed or reset mid-exchange (502)
    std::uint64_t timed_out = 0;   ///< no connection or no response head in time (504)
    std::uint64_t tls_failed = 0;  ///< TLS handshake with the upstream failed (502)
    std::uint64_t upgraded = 0;    ///< 101 responses turned into tunnels
};

/// Forwards requests from an HttpServer handler to one upstream, RFC 9110 style: hop-by-hop
/// headers dropped, Via and X-Forwarded-* added, bodies streamed both ways, upgrades (101)
/// spliced into a tunnel. Upstream connections are kept alive in one pool per I/O thread, so
/// forward() may be called from any of a server's I/O threads. Idle upstream sockets belong to
/// those threads' loops: destroy the proxy after the server's stop() (every Response it returned
/// has then ended) and before the server itself.
class ReverseProxy {
public:
    explicit ReverseProxy(ProxySettings settings);
    ~ReverseProxy();
    ReverseProxy(const ReverseProxy&) = delete;
    ReverseProxy& operator=(const ReverseProxy&) = delete;

    /// The upstream's response, or a 502/504 whose plain-text body names the upstream and what
    /// went wrong. `request` must stay valid until the returned awaitable completes.
    asio::awaitable<Response> forward(Request& request);
    ProxyStats stats() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// Fan-out

/// net::Hub: fan-out from whoever produces events (the job engine, later log ingest and
/// notifications) to whoever follows them (a held-open request, a WebSocket). Publishers on any
/// thread, subscribers waiting on their own executor; nothing a subscriber does slows a
/// publisher down or grows memory without bound (docs/architecture.md).
///
/// A message is a topic and a payload. A subscription names its topics (or kAllTopics) and
/// keeps a bounded queue: when a subscriber falls behind, its oldest messages are dropped and
/// counted, so a follower learns it missed some (and, where it matters, reads the store again).
/// Publishing costs a lookup of the topic and one push per subscriber of that topic.

struct HubMessage {
    std::string topic;
    std::string data;
};

struct HubSettings {
    /// subscribe() refuses past this many live subscriptions (a client opening follows in a
    /// loop cannot exhaust memory).
    std::size_t max_subscribers = 10'000;
    /// A subscription's queue, unless it asks for another size (at most max_queue).
    std::size_t default_queue = 256;
    std::size_t max_queue = 65'536;
};

struct HubStats {
    std::uint64_t published = 0;
    std::uint64_t delivered = 0;  ///< pushes into subscribers' queues
    std::uint64_t dropped = 0;    ///< oldest messages pushed out of a full queue
    std::size_t subscribers = 0;  ///< live now
    std::size_t topics = 0;       ///< with at least one subscriber
};

/// A subscription to some topics. Destroying it leaves the hub. Wait on it from the executor
/// it was made with only; it may be destroyed from anywhere.
class Subscription {
public:
    struct State;
    explicit Subscription(std::shared_ptr<State> state);
    ~Subscription();
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;

    /// The next message: at once when one is queued, else the first published within
    /// `timeout`. nullopt when the timeout passes or the hub closed.
    asio::awaitable<std::optional<HubMessage>> next(core::Millis timeout);
    /// The next queued message, without waiting.
    std::optional<HubMessage> try_next();
    /// Messages this subscription lost to a full queue, since it began.
    std::uint64_t dropped() const;
    /// True once the hub closed: nothing more will come.
    bool closed() const;

private:
    std::shared_ptr<State> state_;
};

/// The topic that subscribes to every topic.
inline constexpr std::string_view kAllTopics = "*";

class Hub {
public:
    explicit Hub(HubSettings settings = {});
    /// Closes: every subscription wakes and sees closed().
    ~Hub();
    Hub(const Hub&) = delete;
    Hub& operator=(const Hub&) = delete;

    /// Subscribes `executor`'s coroutines to `topics` (kAllTopics for all). `queue`: how many
    /// messages it keeps (0: settings.default_queue; at most settings.max_queue). Errors:
    /// kInvalidArgument for no topics or an empty one, kUnavailable past max_subscribers or
    /// once closed.
    core::Result<std::unique_ptr<Subscription>> subscribe(std::vector<std::string> topics,
                                                          asio::any_io_executor executor,
                                                          std::size_t queue = 0);
    /// Queues `data` for each subscriber of `topic`; returns how many got it. Any thread.
    std::size_t publish(std::string_view topic, std::string data);
    /// Ends every subscription (they wake and see closed()); later publishes reach no one.
    void close();
    HubStats stats() const;

    struct Core;

private:
    std::shared_ptr<Core> core_;
};

/// Splits "HOST:PORT" / "[::1]:PORT". kInvalidArgument naming what is wrong.
core::Result<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view address);

// ---------------------------------------------------------------------------------------------
// Digests

/// SHA-256 over data that arrives in pieces (a file as it is copied), through OpenSSL, which is
/// opened on first use (docs/architecture.md, "Libraries loaded on first use").
class Sha256 {
public:
    /// kUnavailable when OpenSSL cannot be opened (the message names the library).
    static core::Result<Sha256> make();
    Sha256(Sha256&&) noexcept;
    Sha256& operator=(Sha256&&) noexcept;
    ~Sha256();

    void update(const void* data, std::size_t size);
    void update(std::string_view data) { update(data.data(), data.size()); }
    /// The digest of everything given so far, as 64 lowercase hex digits; starts over.
    std::string hex();
    /// The same as 32 raw bytes; starts over.
    std::string bytes();

    struct Context;  ///< OpenSSL's, opaque here

private:
    explicit Sha256(std::unique_ptr<Context, void (*)(Context*)> context);
    std::unique_ptr<Context, void (*)(Context*)> context_;
};

/// HMAC-SHA256 (RFC 2104) of `message` under `key`, as 64 lowercase hex digits: what a
/// signed webhook carries. kUnavailable when OpenSSL cannot be opened.
core::Result<std::string> hmac_sha256_hex(std::string_view key, std::string_view message);

}  // namespace aviary::net
