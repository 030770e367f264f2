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

#include "net/http_session.hpp"
#include "net/net.hpp"
#include "net/tls_context.hpp"

namespace aviary::net {
namespace {

using namespace server_side;  // NOLINT(google-build-using-namespace): this file runs them

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

/// The listener, the connection registry and the lifecycle; HttpServer::Impl is this.
class Server : public SessionHost {
public:
    Server(ServerSettings settings_in, Handler handler_in, BodyPolicy streams_body_in)
        : SessionHost(std::move(settings_in), std::move(handler_in), std::move(streams_body_in)) {}

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
    void unregister(Connection* connection) override;
    void close_connections(bool idle_only);
    bool wait_for_drain(core::Millis within);

    enum class State { kNew, kRunning, kStopped };

    // What the session frames use lives in SessionHost, built before and destroyed after these:
    // the frames can outlive the threads (a handler stuck past the grace) and are destroyed with
    // io_context, declared below.
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> rejected{0};
    std::atomic<std::uint64_t> accept_errors{0};
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
    threads.emplace_back([this] {
        core::name_this_thread("http-io");
        ioc.run();
    });
    for (auto& loop : more_loops) {
        keep_running.push_back(asio::make_work_guard(*loop));
        threads.emplace_back([&loop = *loop] {
            core::name_this_thread("http-io");
            loop.run();
        });
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
    // Streamed responses, WebSocket messages and proxied bodies go out as written (no Nagle
    // delay behind the client's delayed ACK).
    boost::system::error_code nodelay_ec;
    socket.set_option(tcp::no_delay{true}, nodelay_ec);
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
            } else if (connection->on_stopping) {
                connection->on_stopping();  // a WebSocket: its close handshake ends it
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
    try {
        stop();
    } catch (const std::exception& e) {
        // stop() drains and joins the loops; nothing may escape a destructor.
        core::logger("net")->error("stopping the http server failed: {}", e.what());
    } catch (...) {
        core::logger("net")->error("stopping the http server failed");
    }
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
    stats.websockets = impl_->websockets.load();
    return stats;
}

}  // namespace aviary::net
