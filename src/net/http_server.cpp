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
#include <unordered_map>
#include <utility>
#include <vector>

#include "net/net.hpp"

namespace aviary::net {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kFirstReadBytes = 4096;
// How long a connection we are refusing may keep sending before we close it. Closing with unread
// input makes the kernel send RST, which can destroy our error reply before the client reads it.
constexpr core::Millis kLingerMax{2000};
// After shutdown_grace, sockets are closed; sessions normally end at once. This bounds the wait
// for a handler that ignores stopping() and never returns.
constexpr core::Millis kForcedCloseWait{1000};
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

/// A socket with a lazy deadline: the subset of beast::tcp_stream the session uses, without a
/// timer operation armed and cancelled around every read and write (that was the largest
/// share of /healthz's CPU; bench/RESULTS.md). expires_after() only stores the deadline; the
/// server's deadline sweep closes the socket of a connection past it, which fails the pending
/// operation as tcp_stream's timeout would.
class DeadlineStream {
public:
    using executor_type = tcp::socket::executor_type;
    using Clock = std::chrono::steady_clock;

    explicit DeadlineStream(tcp::socket socket) : socket_(std::move(socket)) {}

    executor_type get_executor() noexcept { return socket_.get_executor(); }
    tcp::socket& socket() { return socket_; }
    void expires_after(Clock::duration after) {
        deadline_.store((Clock::now() + after).time_since_epoch().count(),
                        std::memory_order_relaxed);
    }
    void expires_never() { deadline_.store(kNever, std::memory_order_relaxed); }
    /// Safe from any thread: the sweep reads it beside the loop that writes it.
    bool expired(Clock::time_point now) const {
        return now.time_since_epoch().count() >= deadline_.load(std::memory_order_relaxed);
    }
    void close() {
        beast::error_code ec;
        socket_.shutdown(tcp::socket::shutdown_both, ec);
        socket_.close(ec);
    }
    template <class Buffers, class Token>
    auto async_read_some(const Buffers& buffers, Token&& token) {
        return socket_.async_read_some(buffers, std::forward<Token>(token));
    }
    template <class Buffers, class Token>
    auto async_write_some(const Buffers& buffers, Token&& token) {
        return socket_.async_write_some(buffers, std::forward<Token>(token));
    }

private:
    static constexpr Clock::rep kNever = std::numeric_limits<Clock::rep>::max();
    tcp::socket socket_;
    std::atomic<Clock::rep> deadline_{kNever};
};

/// One accepted socket. Shared by its session coroutine and by stop(), which reaches it through
/// the registry; everything but `stream`'s construction happens on the socket's loop (one
/// thread, so it serialises like a strand).
struct Connection {
    explicit Connection(tcp::socket socket) : stream(std::move(socket)) {}

    DeadlineStream stream;
    bool idle = false;  // strand only: waiting for the first byte of a request
};

/// The listener, the connection registry and the lifecycle; HttpServer::Impl is this.
class Server {
public:
    Server(ServerSettings settings_in, Handler handler_in)
        : settings(std::move(settings_in)),
          handler(std::move(handler_in)),
          log(core::logger("net")) {}

    core::Result<std::string> start();
    void stop();
    asio::awaitable<void> accept_loop();
    asio::awaitable<void> deadline_sweep();
    asio::awaitable<void> refuse(tcp::socket socket);
    void spawn_session(tcp::socket socket);
    void unregister(Connection* connection);
    void close_connections(bool idle_only);
    bool wait_for_drain(core::Millis within);

    enum class State { kNew, kRunning, kStopped };

    // Members the session frames use come first: the frames can outlive the threads (a handler
    // stuck past the grace) and are destroyed with io_context, which is therefore declared after.
    ServerSettings settings;
    Handler handler;
    std::shared_ptr<spdlog::logger> log;
    std::atomic<bool> stopping{false};
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> rejected{0};
    std::atomic<std::uint64_t> requests{0};

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
// Session: one per connection, on the connection's strand.

class ChunkWriter;

class Session {
public:
    Session(Server& server, std::shared_ptr<Connection> connection)
        : server_(server), connection_(std::move(connection)), stream_(connection_->stream) {}

    /// The connection's whole life: requests until close, then unregisters.
    static asio::awaitable<void> run(Server& server, std::shared_ptr<Connection> connection);

private:
    friend class ChunkWriter;

    asio::awaitable<void> serve();
    asio::awaitable<bool> serve_one();
    asio::awaitable<bool> await_first_byte();
    asio::awaitable<beast::error_code> read_request(
        http::request_parser<http::string_body>& parser);
    asio::awaitable<void> reply_to_read_error(const beast::error_code& ec);
    asio::awaitable<Response> call_handler(Request request);
    asio::awaitable<bool> write_response(Response& response, bool keep_alive, bool head);
    asio::awaitable<bool> write_streamed(Response& response, bool keep_alive);
    asio::awaitable<void> linger_close();
    core::Result<Request> make_request(http::request<http::string_body>& message) const;
    void close_quietly();

    Server& server_;
    std::shared_ptr<Connection> connection_;
    DeadlineStream& stream_;
    beast::flat_buffer buffer_;
    std::string remote_;
    unsigned version_ = 11;  // of the request being answered: 10 gets no chunking
};

/// ResponseStream over a chunked response: one write, one chunk.
class ChunkWriter final : public ResponseStream {
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
        session_.stream_.expires_after(session_.server_.settings.write_timeout);
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

asio::awaitable<void> Session::run(Server& server, std::shared_ptr<Connection> connection) {
    Session session{server, std::move(connection)};
    co_await session.serve();
}

asio::awaitable<void> Session::serve() {
    beast::error_code ec;
    remote_ = format_endpoint(stream_.socket().remote_endpoint(ec));
    try {
        while (co_await serve_one()) {
        }
    } catch (const std::exception& e) {
        // The one top-level catch per connection (STYLE §4): anything here is a bug in net.
        server_.log->error("connection failed remote={} error={}", remote_, e.what());
    }
    close_quietly();
    server_.unregister(connection_.get());
}

/// Reads one request, answers it, and says whether the connection stays open for another.
asio::awaitable<bool> Session::serve_one() {
    if (!co_await await_first_byte()) {
        co_return false;
    }
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(server_.settings.max_header_bytes, UINT32_MAX)));
    parser.body_limit(server_.settings.max_body_bytes);
    if (auto ec = co_await read_request(parser)) {
        co_await reply_to_read_error(ec);
        co_return false;
    }
    auto& message = parser.get();
    const bool head = message.method() == http::verb::head;
    version_ = message.version() == 10 ? 10 : 11;
    const bool wants_keep_alive = message.keep_alive();
    auto request = make_request(message);
    if (!request) {
        auto response = error_response(400, request.error().message);
        co_await write_response(response, false, head);
        co_await linger_close();
        co_return false;
    }
    server_.requests.fetch_add(1);
    auto response = co_await call_handler(std::move(*request));
    // Decided after the handler: a response finished while stop() runs is the connection's last.
    const bool keep_alive = wants_keep_alive && !server_.stopping.load();
    // Plain if/else, never co_await inside ?: (GCC 12 mishandles the temporaries).
    bool sent = false;
    if (response.stream) {
        sent = co_await write_streamed(response, keep_alive);
    } else {
        sent = co_await write_response(response, keep_alive, head);
    }
    co_return sent&& keep_alive;
}

/// The keep-alive wait: idle_timeout applies until the first byte of the next request arrives,
/// and stop() may close the connection while it is here (and only here).
asio::awaitable<bool> Session::await_first_byte() {
    if (buffer_.size() > 0) {
        co_return true;  // pipelined: the next request is already buffered
    }
    // Checked on the strand after registration: a connection accepted while stop() was
    // enumerating sees the flag here, one already waiting gets closed by stop().
    if (server_.stopping.load()) {
        co_return false;
    }
    connection_->idle = true;
    stream_.expires_after(server_.settings.idle_timeout);
    auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(kFirstReadBytes), kUseTuple);
    connection_->idle = false;
    if (ec) {
        co_return false;  // closed, timed out or stopped: nothing to answer
    }
    buffer_.commit(n);
    co_return true;
}

asio::awaitable<beast::error_code> Session::read_request(
    http::request_parser<http::string_body>& parser) {
    stream_.expires_after(server_.settings.read_timeout);
    auto [ec, n] = co_await http::async_read_header(stream_, buffer_, parser, kUseTuple);
    if (ec) {
        co_return ec;
    }
    // curl and others wait up to a second for "100 Continue" before sending a large body.
    auto expect = parser.get()[http::field::expect];
    if (beast::iequals(expect, "100-continue") && !parser.is_done()) {
        auto [write_ec, written] =
            co_await asio::async_write(stream_, asio::buffer(kContinue), kUseTuple);
        if (write_ec) {
            co_return write_ec;
        }
    }
    if (!parser.is_done()) {
        std::tie(ec, n) = co_await http::async_read(stream_, buffer_, parser, kUseTuple);
    }
    co_return ec;
}

/// Limit breaches and malformed requests get a reply; a client that went away or timed out
/// does not (there is no one to read it).
asio::awaitable<void> Session::reply_to_read_error(const beast::error_code& ec) {
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

core::Result<Request> Session::make_request(http::request<http::string_body>& message) const {
    Request request;
    request.method = std::string{message.method_string()};
    request.target = std::string{message.target()};
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
    for (const auto& field : message.base()) {
        request.headers.push_back(
            Header{std::string{field.name_string()}, std::string{field.value()}});
    }
    request.body = std::move(message.body());
    request.remote = remote_;
    return request;
}

asio::awaitable<Response> Session::call_handler(Request request) {
    // The handler may take as long as it likes (held-open responses); no I/O is pending meanwhile,
    // and the write sets its own deadline.
    stream_.expires_never();
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

asio::awaitable<bool> Session::write_response(Response& response, bool keep_alive, bool head) {
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

    stream_.expires_after(server_.settings.write_timeout);
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
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    }
    co_return true;
}

asio::awaitable<bool> Session::write_streamed(Response& response, bool keep_alive) {
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

    stream_.expires_after(server_.settings.write_timeout);
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
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        co_return false;
    }
    stream_.expires_after(server_.settings.write_timeout);
    auto last_chunk = http::make_chunk_last();
    std::tie(ec, n) = co_await asio::async_write(stream_, last_chunk, kUseTuple);
    if (ec) {
        co_return false;
    }
    if (!keep_alive) {
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    }
    co_return true;
}

/// After an error reply: stop sending, then read and drop what the client still sends until it
/// closes, for a bounded time, so the reply is not lost to a reset.
asio::awaitable<void> Session::linger_close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(std::min(server_.settings.read_timeout, kLingerMax));
    std::array<char, 4096> sink{};
    for (;;) {
        auto [read_ec, n] = co_await stream_.async_read_some(asio::buffer(sink), kUseTuple);
        if (read_ec) {
            co_return;
        }
    }
}

void Session::close_quietly() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
}

// ---------------------------------------------------------------------------------------------
// Listener and lifecycle

core::Result<std::string> Server::start() {
    std::lock_guard lifecycle{lifecycle_mu};
    AVIARY_ASSERT(state != State::kRunning, "HttpServer::start() is called once");
    if (state == State::kStopped) {
        return core::Error{core::ErrorCode::kUnavailable, "server is stopped"};
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
    log->info("http server listening address={} io_threads={}", bound, thread_count);
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
                if (connection->stream.expired(now)) {
                    expired.push_back(connection);
                }
            }
        }
        for (auto& connection : expired) {
            // Checked again on the connection's own loop: it may have moved its deadline since.
            asio::post(connection->stream.get_executor(), [connection] {
                if (connection->stream.expired(DeadlineStream::Clock::now())) {
                    connection->stream.close();
                }
            });
        }
        expired.clear();
    }
}

asio::awaitable<void> Server::accept_loop() {
    for (;;) {
        // No strand: each loop has exactly one thread, which serialises a connection's work
        // already (a strand per connection cost ~10% of /healthz's CPU in type-erased copies).
        auto [ec, socket] =
            co_await acceptor.async_accept(loop_for_next_connection().get_executor(), kUseTuple);
        if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
                co_return;  // stop() closed the acceptor
            }
            // EMFILE and friends: the listener must survive; the next accept may succeed.
            log->warn("accept failed error={}", ec.message());
            continue;
        }
        spawn_session(std::move(socket));
    }
}

void Server::spawn_session(tcp::socket socket) {
    auto executor = socket.get_executor();
    std::shared_ptr<Connection> connection;
    {
        std::lock_guard lock{mu};
        const auto limit = static_cast<std::size_t>(std::max(0, settings.max_connections));
        if (connections.size() < limit) {
            connection = std::make_shared<Connection>(std::move(socket));
            connections.emplace(connection.get(), connection);
        }
    }
    // Spawned outside the lock: co_spawn may start the coroutine inline, and a session that
    // ends at once (stopping) unregisters under the same mutex.
    if (!connection) {
        rejected.fetch_add(1);
        log->warn("connection refused: too many connections max_connections={}",
                  settings.max_connections);
        asio::co_spawn(executor, refuse(std::move(socket)), asio::detached);
        return;
    }
    accepted.fetch_add(1);
    asio::co_spawn(executor, Session::run(*this, std::move(connection)), asio::detached);
}

/// Past max_connections: a 503 and close, without reading the request first.
asio::awaitable<void> Server::refuse(tcp::socket socket) {
    beast::tcp_stream stream{std::move(socket)};
    http::response<http::string_body> message{http::status::service_unavailable, 11};
    message.set(http::field::server, "aviary");
    message.set(http::field::content_type, "text/plain; charset=utf-8");
    message.body() = "too many connections";
    message.keep_alive(false);
    message.prepare_payload();
    stream.expires_after(settings.write_timeout);
    auto [ec, n] = co_await http::async_write(stream, message, kUseTuple);
    if (ec) {
        co_return;
    }
    // Same reason as Session::linger_close: the request the client may have sent is unread.
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream.expires_after(std::min(settings.read_timeout, kLingerMax));
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
        asio::post(connection->stream.get_executor(), [connection = connection, idle_only] {
            if (!idle_only || connection->idle) {
                beast::error_code ec;
                connection->stream.socket().shutdown(tcp::socket::shutdown_both, ec);
                connection->stream.close();
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

HttpServer::HttpServer(ServerSettings settings, Handler handler)
    : impl_(std::make_unique<Impl>(std::move(settings), std::move(handler))) {}

HttpServer::~HttpServer() {
    stop();
}

core::Result<std::string> HttpServer::start() {
    return impl_->start();
}

void HttpServer::stop() {
    impl_->stop();
}

bool HttpServer::stopping() const {
    return impl_->stopping.load();
}

ServerStats HttpServer::stats() const {
    ServerStats stats;
    stats.accepted = impl_->accepted.load();
    stats.rejected = impl_->rejected.load();
    stats.requests = impl_->requests.load();
    std::lock_guard lock{impl_->mu};
    stats.open = static_cast<std::int64_t>(impl_->connections.size());
    return stats;
}

}  // namespace aviary::net
