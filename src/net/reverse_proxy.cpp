#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>
#include <map>
#include <memory_resource>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include "net/buffered_parse.hpp"
#include "net/client_connection.hpp"
#include "net/client_pool.hpp"
#include "net/coarse_clock.hpp"
#include "net/draining_buffer.hpp"
#include "net/net.hpp"
#include "net/plain_head.hpp"
#include "net/write_now.hpp"

namespace aviary::net {
namespace {

using client::Clock;
using client::beast::error_code;
using client::http::field;

constexpr std::size_t kPieceBytes = std::size_t{16} * 1024;

/// Adds the comma-separated tokens of one header value to `tokens` (views into `value`), but
/// not those `skip` names.
void add_tokens(std::string_view value,
                std::vector<std::string_view>& tokens,
                bool (*skip)(std::string_view) = nullptr) {
    for_each_token(value, [&](std::string_view token) {
        if (skip == nullptr || !skip(token)) {
            tokens.push_back(token);
        }
    });
}

/// A failed read on a plain connection's socket, as Beast would report it: operation_aborted
/// after the connection's socket_deadline() passed is a timeout.
error_code socket_read_error(const error_code& ec, const client::ClientConnection& connection) {
    if (ec == asio::error::operation_aborted && connection.timed_out()) {
        return client::beast::error::timeout;
    }
    return ec;
}

/// Orders header names and tokens ignoring ASCII case.
bool iless(std::string_view a, std::string_view b) {
    const auto lower = [](unsigned char c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; };
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(),
        [&](unsigned char x, unsigned char y) { return lower(x) < lower(y); });
}

/// Sorts tokens for is_named(): a Connection header may name thousands of them within the
/// head's size limit, and each forwarded header is looked up among them.
void sort_tokens(std::vector<std::string_view>& tokens) {
    std::sort(tokens.begin(), tokens.end(), iless);
}

/// Whether `name` is among `sorted` (sort_tokens), ignoring case.
bool is_named(std::string_view name, std::span<const std::string_view> sorted) {
    return std::binary_search(sorted.begin(), sorted.end(), name, iless);
}

/// The tokens of every Connection header, sorted: the further hop-by-hop headers a sender
/// names.
std::vector<std::string_view> connection_tokens(const std::vector<Header>& headers) {
    std::vector<std::string_view> tokens;
    for (const auto& header : headers) {
        if (equals_lowercase(header.name, "connection")) {
            add_tokens(header.value, tokens);
        }
    }
    sort_tokens(tokens);
    return tokens;
}

/// What this hop does with a header, by its name.
enum class Role {
    kEndToEnd,      ///< forwarded as it came
    kHopByHop,      ///< describes one hop, not the message: never forwarded (see role_of)
    kContentType,   ///< Response::content_type
    kVia,           ///< joined with this hop's entry
    kServer,        ///< this hop's own
    kHost,          ///< request side: the upstream's; the client's goes in X-Forwarded-Host
    kExpect,        ///< request side: this server already answered it
    kForwardedFor,  ///< request side: joined with this hop's entry
    kForwarded,     ///< request side: X-Forwarded-Proto and -Host, set by this hop
};

/// The role of a header name, ignoring case. One switch on the length and a compare or two:
/// every header of every proxied message comes through here, and a table lookup (Beast's
/// string_to_field) cost more than the rest of the header's handling.
///
/// Hop-by-hop (RFC 9110 §7.6.1): Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
/// Upgrade, Proxy-Authenticate, Proxy-Authorization, and the framing headers Content-Length and
/// Transfer-Encoding, which whoever frames the next hop sets anew. Upgrade survives only when
/// the request is being upgraded, which the proxy adds itself.
Role role_of(std::string_view name) {
    const auto is = [name](std::string_view known) { return equals_lowercase(name, known); };
    switch (name.size()) {
        case 2:
            return is("te") ? Role::kHopByHop : Role::kEndToEnd;
        case 3:
            return is("via") ? Role::kVia : Role::kEndToEnd;
        case 4:
            return is("host") ? Role::kHost : Role::kEndToEnd;
        case 6:
            return is("server") ? Role::kServer : is("expect") ? Role::kExpect : Role::kEndToEnd;
        case 7:
            return is("upgrade") || is("trailer") ? Role::kHopByHop : Role::kEndToEnd;
        case 10:
            return is("connection") || is("keep-alive") ? Role::kHopByHop : Role::kEndToEnd;
        case 12:
            return is("content-type") ? Role::kContentType : Role::kEndToEnd;
        case 14:
            return is("content-length") ? Role::kHopByHop : Role::kEndToEnd;
        case 15:
            return is("x-forwarded-for") ? Role::kForwardedFor : Role::kEndToEnd;
        case 16:
            return is("proxy-connection")   ? Role::kHopByHop
                   : is("x-forwarded-host") ? Role::kForwarded
                                            : Role::kEndToEnd;
        case 17:
            return is("transfer-encoding")   ? Role::kHopByHop
                   : is("x-forwarded-proto") ? Role::kForwarded
                                             : Role::kEndToEnd;
        case 18:
            return is("proxy-authenticate") ? Role::kHopByHop : Role::kEndToEnd;
        case 19:
            return is("proxy-authorization") ? Role::kHopByHop : Role::kEndToEnd;
        default:
            return Role::kEndToEnd;
    }
}

bool is_hop_by_hop(std::string_view name) {
    return role_of(name) == Role::kHopByHop;
}

bool wants_upgrade(const Request& request) {
    const auto tokens = connection_tokens(request.headers);
    return request.header("upgrade").has_value() && is_named("upgrade", tokens);
}

Response error_response(int status, std::string text) {
    Response response;
    response.status = status;
    response.body = std::move(text);
    response.body += '\n';
    return response;
}

/// Appends a list header's value to `out` (a string, or a SizedWriter): what was there, then
/// this hop's entry after it.
template <class Out>
Out& append_joined(Out& out, std::optional<std::string_view> existing, std::string_view added) {
    if (existing && !existing->empty()) {
        out.append(*existing).append(", ");
    }
    return out.append(added);
}

/// The address part of a peer's "host:port" ("[::1]:port" gives "::1"), without a copy.
std::string_view client_address(std::string_view remote) {
    if (remote.starts_with('[')) {
        const auto close = remote.find(']');
        return close == std::string_view::npos ? remote : remote.substr(1, close - 1);
    }
    const auto colon = remote.rfind(':');
    return colon == std::string_view::npos ? remote : remote.substr(0, colon);
}

/// Ends the head: the framing of the body (the client's Content-Length when it sent one with
/// a streamed body, chunked when it sent none; the buffered body's size), then the blank line.
void frame(std::string& head, const Request& request) {
    const auto length = request.header("content-length");
    const bool streamed = request.body_reader != nullptr;
    if (streamed && !length) {
        head.append("Transfer-Encoding: chunked\r\n");
    } else if (streamed) {
        head.append(fmt::format("Content-Length: {}\r\n", std::stoull(std::string{*length})));
    } else if (!request.body.empty() || length) {
        head.append(fmt::format("Content-Length: {}\r\n", request.body.size()));
    }
    head.append("\r\n");
}

/// Writes what a plain connection's socket takes at once of `head` then `body` (one sendmsg):
/// the bytes written, and `ec` set on failure.
std::size_t write_head_and_body(client::ClientConnection& connection,
                                const std::string& head,
                                const std::string& body,
                                error_code& ec) {
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(head), asio::buffer(body)};
    std::size_t written = 0;
    std::tie(ec, written) = write_now(connection.tcp().socket(), buffers);
    return written;
}

/// One header of an upstream head, as relayed_head() reads it: a field of Beast's parsed head,
/// or of a plain head (plain_head.hpp).
std::string_view field_name(const HeadField& header) {
    return header.name;
}
std::string_view field_value(const HeadField& header) {
    return header.value;
}
template <class BeastField>
std::string_view field_name(const BeastField& header) {
    return header.name_string();
}
template <class BeastField>
std::string_view field_value(const BeastField& header) {
    return header.value();
}

/// The client's response to an upstream head: its status and Content-Type, its end-to-end
/// headers (not the hop-by-hop ones, nor those its Connection header names, nor Server, which
/// this hop sets), and Via with `via` after the upstream's first one. A plain head's headers
/// (checked by parse_plain_head) go out as they came, in Response::header_lines; Beast's go in
/// Response::headers, with room kept for `more`. `named` is scratch space for the Connection
/// tokens (views into `fields`).
template <class Fields>
Response relayed_head(int status,
                      const Fields& fields,
                      std::string_view via,
                      std::vector<std::string_view>& named,
                      std::size_t more = 0) {
    constexpr bool kPlain = std::is_same_v<Fields, std::vector<HeadField>>;
    // No default content type: the upstream's, or none (and no allocation for the default).
    Response response{.status = status, .content_type = {}};
    named.clear();
    std::size_t count = 0;
    std::size_t bytes = 0;
    for (const auto& header : fields) {
        ++count;
        bytes += field_name(header).size() + field_value(header).size() + 4;
        if (equals_lowercase(field_name(header), "connection")) {
            // "keep-alive" and the like are dropped anyway: only other names need a lookup.
            add_tokens(field_value(header), named,
                       [](std::string_view token) { return is_hop_by_hop(token); });
        }
    }
    sort_tokens(named);
    // The lines are written through a pointer into the string sized for the most they may
    // take: every header, and Via's value joined with this hop's.
    auto& lines = response.header_lines;
    if constexpr (kPlain) {
        lines.resize(bytes + via.size() + 16);
    } else {
        response.headers.reserve(count + 1 + more);
    }
    SizedWriter writer{lines};
    const auto add = [&response, &writer](std::string_view name, std::string_view value) {
        if constexpr (kPlain) {
            writer.append(name).append(": ").append(value).append("\r\n");
        } else {
            response.headers.push_back(Header{std::string{name}, std::string{value}});
        }
    };
    std::optional<std::string_view> upstream_via;
    for (const auto& header : fields) {
        switch (role_of(field_name(header))) {
            case Role::kContentType:
                response.content_type = field_value(header);
                break;
            case Role::kVia:
                if (!upstream_via) {
                    upstream_via = field_value(header);
                }
                break;
            case Role::kHopByHop:
            case Role::kServer:
                break;
            default:
                if (named.empty() || !is_named(field_name(header), named)) {
                    add(field_name(header), field_value(header));
                }
        }
    }
    if constexpr (kPlain) {
        append_joined(writer.append("Via: "), upstream_via, via).append("\r\n");
        lines.resize(writer.written(lines));
    } else {
        std::string joined_via;
        append_joined(joined_via, upstream_via, via);
        response.headers.push_back(Header{"Via", std::move(joined_via)});
    }
    return response;
}

/// Beast allocates each header field of a parsed message on its own: the upstream's response
/// head goes into an arena inside its Exchange instead, one allocation for the exchange rather
/// than one per field (about eight for a typical response).
using FieldsAllocator = std::pmr::polymorphic_allocator<char>;
using UpstreamParser = client::http::response_parser<client::http::buffer_body, FieldsAllocator>;

/// One upstream exchange: the pooled connection and the parser reading its response, shared by
/// the handler and the body relay or tunnel that outlives it.
struct Exchange {
    // User-provided, so make_shared does not zero the arena's buffer first.
    Exchange() {}  // NOLINT(modernize-use-equals-default)
    Exchange(const Exchange&) = delete;
    Exchange& operator=(const Exchange&) = delete;

    client::Lease lease;
    core::Millis idle_timeout{};
    // Fields past the buffer come from the heap, within the parser's header limit.
    std::array<std::byte, 2048> arena_buffer;
    std::pmr::monotonic_buffer_resource arena{arena_buffer.data(), arena_buffer.size()};
    std::optional<UpstreamParser> parser;

    client::ClientConnection& connection() { return lease.connection(); }
    /// A parser for the next response head (the first, or the final one after a 1xx).
    void new_parser() {
        parser.emplace(std::piecewise_construct, std::make_tuple(),
                       std::make_tuple(FieldsAllocator{&arena}));
    }
};

/// Streams the upstream body into the client's response, piece by piece as it arrives.
struct BodyRelay {
    std::shared_ptr<Exchange> exchange;
    client::ConnectionPool* pool = nullptr;

    asio::awaitable<void> operator()(ResponseStream& out) const {
        auto& parser = *exchange->parser;
        std::array<char, kPieceBytes> piece{};
        while (!parser.is_done()) {
            parser.get().body().data = piece.data();
            parser.get().body().size = piece.size();
            exchange->connection().tcp().expires_after(exchange->idle_timeout);
            auto [ec, n] = co_await client::http::async_read_some(
                exchange->connection(), exchange->connection().buffer, parser, client::kUseTuple);
            if (ec && ec != client::http::error::need_buffer) {
                // Ending without the last chunk tells the client the body is incomplete; the
                // dropped lease closes the upstream connection.
                co_return;
            }
            const std::size_t filled = piece.size() - parser.get().body().size;
            if (filled > 0 && !co_await out.write(std::string{piece.data(), filled})) {
                co_return;  // the client went away: the upstream connection cannot be reused
            }
        }
        pool->release(std::move(exchange->lease), parser.keep_alive());
    }
};

/// Splices an upgraded connection: bytes both ways until either side ends.
struct TunnelSplice {
    std::shared_ptr<Exchange> exchange;

    asio::awaitable<void> operator()(Tunnel& client_side) const {
        using asio::experimental::awaitable_operators::operator||;
        co_await (upstream_to_client(client_side) || client_to_upstream(client_side));
        exchange->connection().close();
    }

    asio::awaitable<void> upstream_to_client(Tunnel& client_side) const {
        auto& connection = exchange->connection();
        // Bytes the upstream sent right behind its 101 head were read with it.
        if (connection.buffer.size() > 0) {
            std::string early = client::beast::buffers_to_string(connection.buffer.data());
            connection.buffer.consume(connection.buffer.size());
            if (!co_await client_side.write(early)) {
                co_return;
            }
        }
        std::array<char, kPieceBytes> piece{};
        for (;;) {
            connection.tcp().expires_after(exchange->idle_timeout);
            auto [ec, n] =
                co_await connection.async_read_some(asio::buffer(piece), client::kUseTuple);
            if (n > 0 && !co_await client_side.write(std::string_view{piece.data(), n})) {
                co_return;
            }
            if (ec) {
                client_side.shutdown_send();
                co_return;
            }
        }
    }

    asio::awaitable<void> client_to_upstream(Tunnel& client_side) const {
        auto& connection = exchange->connection();
        for (;;) {
            auto data = co_await client_side.read_some();
            if (!data || data->empty()) {
                break;
            }
            connection.tcp().expires_after(exchange->idle_timeout);
            auto [ec, n] =
                co_await asio::async_write(connection, asio::buffer(*data), client::kUseTuple);
            if (ec) {
                co_return;
            }
        }
        // The client is done sending: pass the half-close on and let the upstream finish its
        // side; upstream_to_client ends the tunnel (its reads time out after idle_timeout).
        error_code ignored;
        connection.tcp().socket().shutdown(client::tcp::socket::shutdown_send, ignored);
        auto executor = co_await asio::this_coro::executor;
        asio::steady_timer forever{executor};
        forever.expires_at(asio::steady_timer::time_point::max());
        co_await forever.async_wait(client::kUseTuple);
    }
};

/// One read from a plain upstream socket into the spare room of its buffer (up to 64 KiB
/// more); the caller commits what came. After a short read the next one waits for readiness
/// rather than trying first (draining_buffer.hpp).
auto read_more(client::ClientConnection& connection) {
    auto& buffer = connection.buffer;
    return connection.tcp().socket().async_read_some(
        DrainingBuffer{buffer.prepare(client::beast::read_size(buffer, std::size_t{64} * 1024))},
        client::kUseTuple);
}

}  // namespace

/// A kept-alive upstream connection leaves one timer pending for up to response_timeout after
/// its last request (ClientConnection::socket_deadline(), docs/architecture.md): the loops that
/// call forward() are run until stopped, as HttpServer does, not until they run out of work.
struct ReverseProxy::Impl {
    explicit Impl(ProxySettings settings);

    /// One I/O thread's upstream connections, and the pool's entry for the upstream.
    struct Local {
        explicit Local(client::PoolLimits limits) : pool(limits) {}
        client::ConnectionPool pool;
        client::PoolHost* host = nullptr;  // null when the upstream URL is bad
        std::vector<HeadField> fields;     // a plain head's, reused from request to request
        std::vector<std::string_view> named;
    };

    /// What one attempt at a request knows, handed from forward() to through_beast().
    struct Attempt {
        Request& request;
        int number = 0;  // 0, or 1 for the retry on a fresh connection
        bool upgrading = false;
        bool may_retry = false;  // no streamed body, not an upgrade, an idempotent method
        bool head_request = false;
        bool reused = false;  // the connection was a kept-alive one
    };

    /// One attempt (`number`: forward's own is 0). Kept small: a coroutine frame past Asio's
    /// 1,020-byte cache is a malloc, and evicts a cached frame, on every request
    /// (docs/architecture.md, "Frames on the hot paths"). So the usual answer is taken here and
    /// everything else is in coroutines of its own (finish_plain, through_beast).
    asio::awaitable<Response> forward(Request& request, int number = 0);
    /// A new connection to the upstream in `lease` (or the next one given back, at the pool's
    /// limit); false, with the 502/504 in `response`, when there is none.
    asio::awaitable<bool> connect(Local& here,
                                  client::Pick pick,
                                  std::optional<client::Lease>& lease,
                                  Response& response);
    /// Reads the rest of a plain head's body into `response` (`filled` bytes are there), then
    /// gives the connection back to the pool; or sets `response` to the 502/504.
    asio::awaitable<void> finish_plain(client::Lease& lease,
                                       Response& response,
                                       std::size_t filled,
                                       bool keep_alive);
    /// Sets `response` to the upstream's answer read by Beast's parser, from what the buffer
    /// already holds; on a kept-alive connection that closed before answering, to the retry of
    /// a request that may be sent twice. `read_ec` is the plain read's failure, if any;
    /// `got_some` whether it read anything. (Results and arguments by reference: forward()'s
    /// frame holds the temporaries of each co_await.)
    asio::awaitable<void> through_beast(const Attempt& attempt,
                                        client::Lease& lease,
                                        const error_code& send_ec,
                                        error_code read_ec,
                                        bool got_some,
                                        Response& response);
    /// The request line and headers for the upstream, without the framing (send() adds it).
    std::string upstream_head(const Request& request, bool upgrading) const;
    /// Sends the framed head (frame()) and a streamed body, as request.body_reader yields it
    /// (forward() writes a buffered one itself, with the head). On a client-side failure returns no
    /// error and sets `failed`, with its answer in `response`.
    asio::awaitable<error_code> send(client::ClientConnection& connection,
                                     std::string& head,
                                     Request& request,
                                     bool& failed,
                                     Response& response);
    /// Writes the head and the body from `written` on, within idle_timeout.
    asio::awaitable<error_code> send_rest(client::ClientConnection& connection,
                                          const std::string& head,
                                          const std::string& body,
                                          std::size_t written);
    asio::awaitable<error_code> read_head(Exchange& exchange, bool head_request);
    asio::awaitable<Response> relay(std::shared_ptr<Exchange> exchange,
                                    bool upgrading,
                                    client::ConnectionPool& connections);
    /// Reads a plain connection until its buffer holds a whole head (or the head limit).
    asio::awaitable<error_code> read_head_bytes(client::ClientConnection& connection);
    /// What take_plain() made of the connection's buffer.
    struct PlainTaken {
        std::size_t filled = 0;  // bytes of the body taken from the buffer
        bool taken = false;      // false: not a plain head, or one whose body is Beast's to read
        bool keep_alive = true;
    };
    /// The response to the plain head (plain_head.hpp) at the front of the connection's
    /// buffer, with as much of its body as the buffer holds (finish_plain() reads the rest).
    /// Taken only when the body is buffered whole: not one to stream, nor one that runs until
    /// close, which are Beast's to read from the same bytes, left untouched.
    PlainTaken take_plain(client::ClientConnection& connection,
                          bool head_request,
                          Local& local,
                          Response& response);
    /// Reads the rest of `body` from the socket, from `filled` on, within idle_timeout.
    asio::awaitable<error_code> read_body_rest(client::ClientConnection& connection,
                                               std::string& body,
                                               std::size_t filled);
    /// Feeds exchange.parser until `enough()`, within `timeout`.
    template <class Enough>
    asio::awaitable<error_code> read_until(Exchange& exchange, Enough enough, core::Millis timeout);
    Response failure(const core::Error& error);
    static Response body_failure(const core::Error& error);
    /// Where in an exchange the upstream broke off: what a 502 or 504 names.
    enum class Step { kReceivingRequest, kAnswering, kSendingBody };
    Response upstream_broke(const error_code& ec, Step step);

    ProxySettings settings;
    core::Result<client::Target> upstream;
    std::string base_path;       // the upstream URL's path, without a trailing '/'
    std::string name;            // "127.0.0.1:8888"
    std::string shown_upstream;  // the upstream URL as logged (redacted)
    std::string via;             // "1.1 NAME", this hop in Via

    Local& local();

    const std::uint64_t id;  // tells this proxy's thread-local cache entry from another's
    std::mutex mutex;        // guards locals only; each Local is used by its own thread
    std::map<std::thread::id, std::unique_ptr<Local>> locals;

    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> refused{0};
    std::atomic<std::uint64_t> reset{0};
    std::atomic<std::uint64_t> timed_out{0};
    std::atomic<std::uint64_t> tls_failed{0};
    std::atomic<std::uint64_t> upgraded{0};
};

namespace {
std::atomic<std::uint64_t> next_proxy_id{1};
}  // namespace

ReverseProxy::Impl::Impl(ProxySettings settings_in)
    : settings(std::move(settings_in)),
      upstream(client::parse_target(settings.upstream)),
      shown_upstream(redact_url(settings.upstream)),
      via(fmt::format("1.1 {}", settings.via)),
      id(next_proxy_id++) {
    if (upstream) {
        name = upstream->authority();
        base_path = upstream->path;
        while (!base_path.empty() && base_path.back() == '/') {
            base_path.pop_back();
        }
    } else {
        name = redact_url(settings.upstream);
    }
}

ReverseProxy::Impl::Local& ReverseProxy::Impl::local() {
    // One pool per server I/O thread: a connection is then only ever used on the loop that owns
    // its socket, and the pool needs no lock of its own. The thread remembers the last proxy it
    // served, so the lock and the lookup are paid once per thread, not per request.
    struct Cached {
        std::uint64_t proxy = 0;
        Local* local = nullptr;
    };
    thread_local Cached cached;
    if (cached.proxy == id) {
        return *cached.local;
    }
    std::lock_guard lock{mutex};
    auto& slot = locals[std::this_thread::get_id()];
    if (!slot) {
        slot = std::make_unique<Local>(client::PoolLimits{.max_idle_per_host = settings.max_idle,
                                                          .max_per_host = settings.max_connections,
                                                          .idle_timeout = settings.idle_timeout});
        if (upstream) {
            slot->host = &slot->pool.host(*upstream, settings.tls);
        }
    }
    cached = Cached{.proxy = id, .local = slot.get()};
    return *slot;
}

/// The client's request body failed on its way through (it timed out, broke a limit or was
/// malformed): answered to the client, as the upstream never saw a whole request.
Response ReverseProxy::Impl::body_failure(const core::Error& error) {
    const auto code = error.code;
    return error_response(code == core::ErrorCode::kTimeout           ? 408
                          : code == core::ErrorCode::kInvalidArgument ? 413
                                                                      : 400,
                          fmt::format("request body: {}", error.message));
}

Response ReverseProxy::Impl::failure(const core::Error& error) {
    switch (client::failure_kind(error)) {
        case client::Failure::kTimeout:
            ++timed_out;
            return error_response(
                504, fmt::format("upstream {} did not accept a connection within {}", name,
                                 core::format_duration(settings.connect_timeout)));
        case client::Failure::kRefused:
            ++refused;
            return error_response(502, fmt::format("upstream {} refused the connection", name));
        case client::Failure::kTls:
            ++tls_failed;
            return error_response(502, fmt::format("upstream {}: {}", name, error.message));
        case client::Failure::kReset:
            break;
    }
    ++reset;
    return error_response(502, fmt::format("upstream {} failed: {}", name, error.message));
}

/// A 502 naming the step the upstream broke off in, or a 504 naming the timeout that ran out
/// there: response_timeout for the head, idle_timeout between pieces of a body.
Response ReverseProxy::Impl::upstream_broke(const error_code& ec, Step step) {
    const std::string_view doing = step == Step::kAnswering          ? "answering"
                                   : step == Step::kReceivingRequest ? "receiving the request"
                                                                     : "sending the body";
    if (ec == client::beast::error::timeout) {
        ++timed_out;
        if (step == Step::kAnswering) {
            return error_response(504,
                                  fmt::format("upstream {} did not answer within {}", name,
                                              core::format_duration(settings.response_timeout)));
        }
        return error_response(504,
                              fmt::format("upstream {} stalled for {} while {}", name,
                                          core::format_duration(settings.idle_timeout), doing));
    }
    ++reset;
    return error_response(502, fmt::format("upstream {} closed the connection while {}: {}", name,
                                           doing, ec.message()));
}

std::string ReverseProxy::Impl::upstream_head(const Request& request, bool upgrading) const {
    // Written through a pointer into a string sized for the most it may take (SizedWriter): the
    // request's own headers (each value goes out at most once, as itself or joined into this
    // hop's), this hop's, and room for frame()'s Content-Length and blank line.
    std::size_t size = 256 + request.method.size() + base_path.size() + request.target.size() +
                       upstream->host_header.size() + via.size() + request.remote.size() +
                       settings.forwarded_proto.size();
    for (const auto& header : request.headers) {
        size += header.name.size() + header.value.size() + 4;
    }
    std::string head;
    head.resize(size);
    SizedWriter writer{head};
    // The method and target passed the server's parser, so they are tokens as HTTP wants them.
    writer.append(request.method)
        .append(" ")
        .append(base_path)
        .append(request.target)
        .append(" HTTP/1.1\r\n");
    const auto add = [&writer](std::string_view name, std::string_view value) {
        writer.append(name).append(": ").append(value).append("\r\n");
    };
    // A list header the client sent, with this hop's entry added after its own.
    const auto add_joined = [&writer](std::string_view name, std::optional<std::string_view> sent,
                                      std::string_view added) {
        append_joined(writer.append(name).append(": "), sent, added).append("\r\n");
    };
    const auto named = connection_tokens(request.headers);
    // The first of each this hop joins or replaces, found in the same pass.
    std::optional<std::string_view> sent_via;
    std::optional<std::string_view> sent_for;
    std::optional<std::string_view> sent_host;
    const auto first = [](std::optional<std::string_view>& seen, std::string_view value) {
        if (!seen) {
            seen = value;
        }
    };
    for (const auto& header : request.headers) {
        switch (role_of(header.name)) {
            case Role::kVia:
                first(sent_via, header.value);
                break;
            case Role::kForwardedFor:
                first(sent_for, header.value);
                break;
            case Role::kHost:
                first(sent_host, header.value);
                break;
            case Role::kHopByHop:
            case Role::kExpect:  // this server already answered it; the body follows at once
            case Role::kForwarded:
                break;  // this hop's own, below
            default:
                if (!is_named(header.name, named)) {
                    add(header.name, header.value);
                }
        }
    }
    // Host names the upstream (it may route on it); the client's goes in X-Forwarded-Host.
    add("Host", upstream->host_header);
    add_joined("Via", sent_via, via);
    add_joined("X-Forwarded-For", sent_for, client_address(request.remote));
    add("X-Forwarded-Proto", settings.forwarded_proto);
    if (sent_host) {
        add("X-Forwarded-Host", *sent_host);
    }
    if (upgrading) {
        add("Upgrade", *request.header("upgrade"));
        add("Connection", "upgrade");
    }
    head.resize(writer.written(head));  // the capacity stays, for frame()
    return head;
}

/// Writes the framed head, then what request.body_reader yields. On a client-side failure sets
/// `failed` and `response` and returns no error.
asio::awaitable<error_code> ReverseProxy::Impl::send(client::ClientConnection& connection,
                                                     std::string& head,
                                                     Request& request,
                                                     bool& failed,
                                                     Response& response) {
    namespace http = client::http;
    const bool chunked = !request.header("content-length");
    connection.tcp().expires_after(settings.idle_timeout);
    auto [head_ec, head_n] =
        co_await asio::async_write(connection, asio::buffer(head), client::kUseTuple);
    if (head_ec) {
        co_return head_ec;
    }
    for (;;) {
        auto piece = co_await request.body_reader->read_some();
        if (!piece) {
            failed = true;
            response = body_failure(piece.error());
            co_return error_code{};
        }
        connection.tcp().expires_after(settings.idle_timeout);
        error_code ec;
        if (piece->empty()) {
            if (chunked) {
                std::tie(ec, std::ignore) = co_await asio::async_write(
                    connection, http::make_chunk_last(), client::kUseTuple);
            }
            co_return ec;
        }
        if (chunked) {
            auto chunk = http::make_chunk(asio::buffer(*piece));
            std::tie(ec, std::ignore) =
                co_await asio::async_write(connection, chunk, client::kUseTuple);
        } else {
            std::tie(ec, std::ignore) =
                co_await asio::async_write(connection, asio::buffer(*piece), client::kUseTuple);
        }
        if (ec) {
            co_return ec;
        }
    }
}

asio::awaitable<error_code> ReverseProxy::Impl::send_rest(client::ClientConnection& connection,
                                                          const std::string& head,
                                                          const std::string& body,
                                                          std::size_t written) {
    const std::array<asio::const_buffer, 2> buffers{asio::buffer(head), asio::buffer(body)};
    connection.tcp().expires_after(settings.idle_timeout);
    if (connection.tls() != nullptr) {
        auto [ec, n] = co_await asio::async_write(connection, buffers, client::kUseTuple);
        co_return ec;
    }
    auto [ec, n] = co_await write_later(connection, buffers, written);
    co_return ec;
}

asio::awaitable<bool> ReverseProxy::Impl::connect(Local& here,
                                                  client::Pick pick,
                                                  std::optional<client::Lease>& lease,
                                                  Response& response) {
    auto opened = co_await here.pool.acquire(*here.host, *upstream, settings.tls,
                                             coarse_now() + settings.connect_timeout,
                                             shown_upstream, settings.connect_timeout, pick);
    if (!opened) {
        response = failure(opened.error());
        co_return false;
    }
    lease = std::move(*opened);
    co_return true;
}

/// Feeds exchange.parser until `enough()`: what the connection's buffer holds first, then what
/// arrives, all within `timeout`. A plain connection is read on its socket directly, under the
/// connection's lazy socket_deadline(): no timer operation per read, as Beast's stream makes
/// (and the scheduler round its cancelled wait costs after). A TLS one goes through Beast.
template <class Enough>
asio::awaitable<error_code> ReverseProxy::Impl::read_until(Exchange& exchange,
                                                           Enough enough,
                                                           core::Millis timeout) {
    auto& connection = exchange.connection();
    auto& parser = *exchange.parser;
    auto& buffer = connection.buffer;
    error_code ec;
    if (parse_buffered(parser, buffer, enough, ec)) {
        co_return ec;
    }
    if (connection.tls() != nullptr) {
        connection.tcp().expires_after(timeout);
        while (!ec && !enough()) {
            std::tie(ec, std::ignore) = co_await client::http::async_read_some(
                connection, buffer, parser, client::kUseTuple);
        }
        co_return ec;
    }
    connection.socket_deadline(coarse_now() + timeout);
    for (;;) {
        auto [read_ec, n] = co_await read_more(connection);
        buffer.commit(n);
        if (read_ec == asio::error::eof) {
            // As Beast's reads do: the end of a message that runs until close, else a message
            // cut short (or none at all).
            if (parser.got_some()) {
                parser.put_eof(ec);
            } else {
                ec = client::http::error::end_of_stream;
            }
            co_return ec;
        }
        if (read_ec) {
            co_return socket_read_error(read_ec, connection);
        }
        if (parse_buffered(parser, buffer, enough, ec)) {
            co_return ec;
        }
    }
}

/// Reads the upstream's final response head into exchange.parser, within response_timeout.
/// Interim 1xx answers (a 100 Continue the upstream sends anyway) are read past; 101 is final.
asio::awaitable<error_code> ReverseProxy::Impl::read_head(Exchange& exchange, bool head_request) {
    for (;;) {
        auto& parser = *exchange.parser;
        parser.header_limit(client::kResponseHeaderLimit);
        parser.body_limit(boost::none);  // the client's own limits apply downstream, not here
        parser.skip(head_request);
        auto ec = co_await read_until(
            exchange, [&parser] { return parser.is_header_done(); }, settings.response_timeout);
        const auto status = parser.get().result_int();
        if (ec || status < 100 || status > 199 || status == 101) {
            co_return ec;
        }
        exchange.new_parser();
    }
}

/// The upstream's response head (parsed in `exchange`) turned into the client's Response.
asio::awaitable<Response> ReverseProxy::Impl::relay(std::shared_ptr<Exchange> exchange,
                                                    bool upgrading,
                                                    client::ConnectionPool& connections) {
    auto& parser = *exchange->parser;
    const auto& upstream_head = parser.get().base();
    const int status = static_cast<int>(upstream_head.result_int());
    const bool tunnel = upgrading && status == 101;
    std::vector<std::string_view> named;  // views into the parser's fields, which outlive them
    // Room for a tunnel's Upgrade and Connection.
    auto response = relayed_head(status, upstream_head, via, named, 2);
    if (tunnel) {
        ++upgraded;
        response.headers.push_back(Header{"Upgrade", std::string{upstream_head[field::upgrade]}});
        response.headers.push_back(Header{"Connection", "Upgrade"});
        response.tunnel = TunnelSplice{std::move(exchange)};
        co_return response;
    }
    if (parser.is_done()) {
        connections.release(std::move(exchange->lease), parser.keep_alive());
        co_return response;
    }
    const auto length = parser.content_length();
    if (!length || *length > settings.max_buffered_body) {
        response.stream = BodyRelay{std::move(exchange), &connections};
        co_return response;
    }
    // Small and of known size: read it whole, straight into the response, so the client gets a
    // Content-Length too.
    response.body.resize(static_cast<std::size_t>(*length));
    parser.get().body().data = response.body.data();
    parser.get().body().size = response.body.size();
    // Usually the body came with the head: taken from the buffer, not through a read.
    auto ec = co_await read_until(
        *exchange, [&parser] { return parser.is_done(); }, settings.idle_timeout);
    if (ec && ec != client::http::error::need_buffer) {
        co_return upstream_broke(ec, Step::kSendingBody);
    }
    connections.release(std::move(exchange->lease), parser.keep_alive());
    co_return response;
}

asio::awaitable<error_code> ReverseProxy::Impl::read_head_bytes(
    client::ClientConnection& connection) {
    auto& buffer = connection.buffer;
    std::size_t searched = 0;  // the end was not before this
    const auto whole = [&buffer, &searched] {
        const std::string_view bytes{static_cast<const char*>(buffer.data().data()), buffer.size()};
        const auto from = searched < 3 ? 0 : searched - 3;
        searched = bytes.size();
        return bytes.find("\r\n\r\n", from) != std::string_view::npos ||
               bytes.size() >= client::kResponseHeaderLimit;  // Beast's parser reports it
    };
    if (whole()) {
        co_return error_code{};
    }
    connection.socket_deadline(coarse_now() + settings.response_timeout);
    for (;;) {
        auto [ec, n] = co_await read_more(connection);
        buffer.commit(n);
        if (ec == asio::error::eof) {
            co_return buffer.size() == 0 ? error_code{client::http::error::end_of_stream}
                                         : error_code{client::http::error::partial_message};
        }
        if (ec) {
            co_return socket_read_error(ec, connection);
        }
        if (whole()) {
            co_return error_code{};
        }
    }
}

ReverseProxy::Impl::PlainTaken ReverseProxy::Impl::take_plain(client::ClientConnection& connection,
                                                              bool head_request,
                                                              Local& local,
                                                              Response& response) {
    auto& buffer = connection.buffer;
    const std::string_view bytes{static_cast<const char*>(buffer.data().data()), buffer.size()};
    const auto head = parse_plain_head(bytes, local.fields);
    if (!head) {
        return {};
    }
    const bool no_body = head_request || head->status == 204 || head->status == 304;
    if (!no_body && (!head->content_length || *head->content_length > settings.max_buffered_body)) {
        return {};  // streamed, or until close: Beast's, from the same bytes
    }
    response = relayed_head(head->status, local.fields, via, local.named);
    // The views above are into the buffer: consumed only now.
    buffer.consume(head->size);
    PlainTaken taken{.taken = true, .keep_alive = head->keep_alive};
    if (!no_body) {
        response.body.resize(static_cast<std::size_t>(*head->content_length));
        taken.filled = asio::buffer_copy(asio::buffer(response.body), buffer.data());
        buffer.consume(taken.filled);
    }
    return taken;
}

asio::awaitable<error_code> ReverseProxy::Impl::read_body_rest(client::ClientConnection& connection,
                                                               std::string& body,
                                                               std::size_t filled) {
    connection.socket_deadline(coarse_now() + settings.idle_timeout);
    while (filled < body.size()) {
        auto [ec, n] = co_await connection.tcp().socket().async_read_some(
            DrainingBuffer{asio::buffer(body.data() + filled, body.size() - filled)},
            client::kUseTuple);
        filled += n;
        if (ec && filled < body.size()) {
            co_return socket_read_error(ec, connection);
        }
    }
    co_return error_code{};
}

asio::awaitable<Response> ReverseProxy::Impl::forward(Request& request, int number) {
    if (number == 0) {
        ++requests;
    }
    if (!upstream) {
        co_return error_response(502, upstream.error().message);
    }
    Attempt attempt{.request = request, .number = number, .upgrading = wants_upgrade(request)};
    const auto method = client::http::string_to_verb(request.method);
    attempt.may_retry =
        request.body_reader == nullptr && !attempt.upgrading && client::is_idempotent(method);
    attempt.head_request = method == client::http::verb::head;
    auto& here = local();
    // A request that may be sent twice skips the idle connection's liveness peek: when the
    // upstream closed it, the retry on a fresh one takes over (as nginx does).
    const auto pick = number > 0          ? client::Pick::kFresh
                      : attempt.may_retry ? client::Pick::kIdle
                                          : client::Pick::kIdleChecked;
    // For every outcome: a co_await's temporaries would stay in the frame. No default content
    // type (an allocation): each outcome sets its own.
    Response response{.content_type = {}};
    auto lease = here.pool.take_idle(*here.host, pick);
    if (!lease && !co_await connect(here, pick, lease, response)) {
        co_return std::move(response);
    }
    auto& connection = lease->connection();
    attempt.reused = lease->reused();
    auto head = upstream_head(request, attempt.upgrading);
    frame(head, request);
    error_code send_ec;
    const bool plain = connection.tls() == nullptr;
    if (request.body_reader == nullptr) {
        // Head and body in one write. On a plain connection usually all of it fits the socket
        // at once: no coroutine, no timer.
        const auto written =
            plain ? write_head_and_body(connection, head, request.body, send_ec) : 0;
        if (!send_ec && written < head.size() + request.body.size()) {
            send_ec = co_await send_rest(connection, head, request.body, written);
        }
    } else {
        bool failed = false;  // the client's body, not the upstream
        send_ec = co_await send(connection, head, request, failed, response);
        if (failed) {
            co_return std::move(response);
        }
    }
    error_code read_ec;
    if (!send_ec && plain && !attempt.upgrading) {
        // The usual answer is taken in one pass (plain_head.hpp), without Beast's parser
        // or an Exchange; the rest is Beast's, from the same bytes.
        read_ec = co_await read_head_bytes(connection);
        if (!read_ec) {
            if (const auto taken = take_plain(connection, attempt.head_request, here, response);
                taken.taken) {
                if (taken.filled == response.body.size()) {
                    // Usually the body came with the head.
                    here.pool.release(std::move(*lease), taken.keep_alive);
                } else {
                    co_await finish_plain(*lease, response, taken.filled, taken.keep_alive);
                }
                co_return std::move(response);
            }
        }
    }
    const bool got_some = connection.buffer.size() > 0;
    co_await through_beast(attempt, *lease, send_ec, read_ec, got_some, response);
    co_return std::move(response);
}

asio::awaitable<void> ReverseProxy::Impl::finish_plain(client::Lease& lease,
                                                       Response& response,
                                                       std::size_t filled,
                                                       bool keep_alive) {
    if (auto ec = co_await read_body_rest(lease.connection(), response.body, filled)) {
        response = upstream_broke(ec, Step::kSendingBody);
        co_return;
    }
    local().pool.release(std::move(lease), keep_alive);
}

asio::awaitable<void> ReverseProxy::Impl::through_beast(const Attempt& attempt,
                                                        client::Lease& lease,
                                                        const error_code& send_ec,
                                                        error_code read_ec,
                                                        bool got_some,
                                                        Response& response) {
    auto exchange = std::make_shared<Exchange>();
    exchange->lease = std::move(lease);
    exchange->idle_timeout = settings.idle_timeout;
    exchange->new_parser();
    if (!send_ec && !read_ec) {
        read_ec = co_await read_head(*exchange, attempt.head_request);
        got_some = got_some || exchange->parser->got_some();
    }
    if (!send_ec && !read_ec) {
        response = co_await relay(std::move(exchange), attempt.upgrading, local().pool);
        co_return;
    }
    const auto ec = send_ec ? send_ec : read_ec;
    // A kept-alive connection the upstream closed just as we picked it up: nothing reached
    // it, so one fresh connection is safe for a request that can be sent twice.
    if (attempt.reused && attempt.may_retry && attempt.number == 0 && !got_some &&
        ec != client::beast::error::timeout) {
        exchange.reset();  // this connection is done with
        response = co_await forward(attempt.request, 1);
        co_return;
    }
    response = upstream_broke(ec, send_ec ? Step::kReceivingRequest : Step::kAnswering);
}

ReverseProxy::ReverseProxy(ProxySettings settings)
    : impl_(std::make_unique<Impl>(std::move(settings))) {}

ReverseProxy::~ReverseProxy() = default;

asio::awaitable<Response> ReverseProxy::forward(Request& request) {
    return impl_->forward(request);
}

ProxyStats ReverseProxy::stats() const {
    return ProxyStats{.requests = impl_->requests.load(),
                      .refused = impl_->refused.load(),
                      .reset = impl_->reset.load(),
                      .timed_out = impl_->timed_out.load(),
                      .tls_failed = impl_->tls_failed.load(),
                      .upgraded = impl_->upgraded.load()};
}

}  // namespace aviary::net
