#include "net/client_connection.hpp"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/url/parse.hpp>
#include <cerrno>

#include "net/openssl.hpp"

namespace aviary::net {

std::string redact_url(std::string_view url) {
    std::string out;
    std::size_t at = 0;
    // Userinfo sits between "://" and the last '@' of the authority.
    if (const auto scheme_end = url.find("://"); scheme_end != std::string_view::npos) {
        const auto authority_start = scheme_end + 3;
        auto authority_end = url.find_first_of("/?#", authority_start);
        if (authority_end == std::string_view::npos) {
            authority_end = url.size();
        }
        const auto authority = url.substr(authority_start, authority_end - authority_start);
        out.append(url.substr(0, authority_start));
        const auto userinfo_end = authority.rfind('@');
        out.append(userinfo_end == std::string_view::npos ? authority
                                                          : authority.substr(userinfo_end + 1));
        at = authority_end;
    }
    const auto fragment = url.find('#', at);
    const auto rest =
        url.substr(at, fragment == std::string_view::npos ? url.size() - at : fragment - at);
    const auto query_start = rest.find('?');
    out.append(rest.substr(0, query_start));
    if (query_start == std::string_view::npos) {
        return out;
    }
    // Keys stay (they say what was sent); values go (tokens, signatures). A bare parameter may
    // itself be the secret ("?<api key>"), so it goes too.
    out += '?';
    auto query = rest.substr(query_start + 1);
    bool first = true;
    while (!query.empty() || first) {
        const auto end = query.find('&');
        const auto param = query.substr(0, end);
        if (!first) {
            out += '&';
        }
        first = false;
        const auto equals = param.find('=');
        if (equals != std::string_view::npos) {
            out.append(param.substr(0, equals));
            out += "=REDACTED";
        } else if (!param.empty()) {
            out += "REDACTED";
        }
        if (end == std::string_view::npos) {
            break;
        }
        query.remove_prefix(end + 1);
    }
    return out;
}

namespace client {
namespace {

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

bool is_ip_literal(const std::string& host) {
    beast::error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

/// The verify result in words. OpenSSL's own string for most; the common three say what an
/// operator should look at.
std::string describe_verify_result(long result, const std::string& name) {
    switch (result) {
        case X509_V_ERR_HOSTNAME_MISMATCH:
        case X509_V_ERR_IP_ADDRESS_MISMATCH:
            return fmt::format("certificate does not match host name \"{}\"", name);
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
            return fmt::format("{} (unknown CA)", X509_verify_cert_error_string(result));
        default:
            return X509_verify_cert_error_string(result);
    }
}

/// Sets SNI and the name the certificate must carry on a fresh TLS stream.
core::Result<void> prepare_tls(ssl::stream<beast::tcp_stream>& stream,
                               const Target& target,
                               const ClientTls& tls) {
    const std::string& name = tls.server_name.empty() ? target.host : tls.server_name;
    SSL* handle = stream.native_handle();
    const bool ip = is_ip_literal(name);
    // SNI carries DNS names only (RFC 6066 §3).
    if (!ip && SSL_set_tlsext_host_name(handle, name.c_str()) != 1) {
        return invalid(fmt::format("cannot use \"{}\" as a TLS server name", name));
    }
    if (!tls.verify) {
        stream.set_verify_mode(ssl::verify_none);
        return {};
    }
    stream.set_verify_mode(ssl::verify_peer);
    // OpenSSL's own host check rather than asio's host_name_verification callback: a mismatch
    // then lands in the verify result as X509_V_ERR_HOSTNAME_MISMATCH, so the error can say
    // "does not match host name" instead of the callback's bare "certificate verify failed".
    X509_VERIFY_PARAM* param = SSL_get0_param(handle);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                       : X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
    if (set != 1) {
        return invalid(fmt::format("cannot verify TLS server name \"{}\"", name));
    }
    return {};
}

core::Error handshake_error(ssl::stream<beast::tcp_stream>& stream,
                            const beast::error_code& ec,
                            const Target& target,
                            const ClientTls& tls,
                            const std::string& shown_url,
                            core::Millis timeout) {
    if (ec == beast::error::timeout) {
        return io_error("handshake", ec, shown_url, timeout, 0);
    }
    const long verified = SSL_get_verify_result(stream.native_handle());
    std::string reason = ec.message();
    if (tls.verify && verified != X509_V_OK) {
        reason = describe_verify_result(verified,
                                        tls.server_name.empty() ? target.host : tls.server_name);
    }
    return core::Error{core::ErrorCode::kUnavailable,
                       fmt::format("TLS handshake with {} failed: {}", target.authority(), reason)};
}

}  // namespace

std::string Target::authority() const {
    // Part of every pooled request's key: appended, not formatted.
    const bool v6 = host.find(':') != std::string::npos;
    std::string out;
    out.reserve(host.size() + port.size() + 3);
    if (v6) {
        out.append("[").append(host).append("]");
    } else {
        out.append(host);
    }
    return out.append(":").append(port);
}

core::Result<Target> parse_target(const std::string& text) {
    auto url = boost::urls::parse_uri(text);
    if (!url) {
        return invalid(
            fmt::format("invalid url \"{}\": {}", redact_url(text), url.error().message()));
    }
    const bool https = url->scheme_id() == boost::urls::scheme::https;
    if (!https && url->scheme_id() != boost::urls::scheme::http) {
        return invalid(fmt::format("unsupported scheme \"{}\" in \"{}\" (http and https only)",
                                   url->scheme(), redact_url(text)));
    }
    Target target;
    target.https = https;
    target.host = url->host_address();
    if (target.host.empty()) {
        return invalid(fmt::format("missing host in url \"{}\"", redact_url(text)));
    }
    target.port = url->has_port() ? std::string{url->port()} : (https ? "443" : "80");
    target.host_header = std::string{url->encoded_host_and_port()};
    target.path = std::string{url->encoded_target()};
    if (target.path.empty() || target.path.front() != '/') {
        target.path.insert(0, "/");
    }
    return target;
}

core::Result<std::shared_ptr<ssl::context>> make_tls_context(const ClientTls& tls) {
    if (auto opened = load_openssl(); !opened) {
        return opened.error();
    }
    auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
    beast::error_code ec;
    if (!tls.ca_file.empty()) {
        context->load_verify_file(tls.ca_file, ec);
        if (ec) {
            return invalid(
                fmt::format("cannot load TLS CA file {}: {}", tls.ca_file, ec.message()));
        }
    } else {
        context->set_default_verify_paths(ec);
        if (ec) {
            return invalid(fmt::format("cannot load the system CA store: {}", ec.message()));
        }
    }
    if (tls.cert_file.empty() != tls.key_file.empty()) {
        return invalid("a TLS client certificate needs both cert_file and key_file");
    }
    if (!tls.cert_file.empty()) {
        context->use_certificate_chain_file(tls.cert_file, ec);
        if (ec) {
            return invalid(fmt::format("cannot load TLS client certificate {}: {}", tls.cert_file,
                                       ec.message()));
        }
        context->use_private_key_file(tls.key_file, ssl::context::pem, ec);
        if (ec) {
            return invalid(
                fmt::format("cannot load TLS client key {}: {}", tls.key_file, ec.message()));
        }
    }
    return context;
}

std::string pool_key(const Target& target, const ClientTls& tls) {
    if (!target.https) {
        return "http://" + target.authority();
    }
    // Every field that changes who we trust or who we claim to be splits the pool.
    return fmt::format("https://{}|{}|{}|{}|{}|{}", target.authority(), tls.ca_file, tls.cert_file,
                       tls.key_file, tls.verify, tls.server_name);
}

ClientConnection::ClientConnection(const executor_type& executor, std::shared_ptr<ssl::context> tls)
    : context_(std::move(tls)) {
    if (context_) {
        tls_.emplace(executor, *context_);
    } else {
        plain_.emplace(executor);
    }
}

/// The timer behind socket_deadline(): shared with its pending wait, which may outlive the
/// connection (it then finds `socket` cleared and does nothing).
struct ClientConnection::Watch : std::enable_shared_from_this<Watch> {
    Watch(const executor_type& executor, tcp::socket* watched) : timer(executor), socket(watched) {}

    void arm() {
        armed = true;
        timer.expires_at(deadline);
        timer.async_wait([self = shared_from_this(), armed_as = ++generation](
                             const beast::error_code& ec) { self->fired(ec, armed_as); });
    }
    void fired(const beast::error_code& ec, std::uint64_t of) {
        if (of != generation) {
            return;  // re-armed since: a newer wait is pending
        }
        armed = false;
        if (ec || socket == nullptr || deadline == Clock::time_point::max()) {
            return;
        }
        if (Clock::now() < deadline) {
            arm();  // the deadline moved on while this wait was pending
            return;
        }
        timed_out = true;
        beast::error_code ignored;
        socket->cancel(ignored);
    }

    asio::steady_timer timer;
    tcp::socket* socket;  // cleared when the connection goes
    Clock::time_point deadline = Clock::time_point::max();
    std::uint64_t generation = 0;
    bool armed = false;
    bool timed_out = false;
};

ClientConnection::~ClientConnection() {
    if (watch_) {
        watch_->socket = nullptr;
        watch_->timer.cancel();
    }
}

void ClientConnection::socket_deadline(Clock::time_point deadline) {
    if (!watch_) {
        watch_ = std::make_shared<Watch>(get_executor(), &tcp().socket());
    }
    auto& watch = *watch_;
    watch.deadline = deadline;
    watch.timed_out = false;
    // A wait pending for a later time would notice this deadline too late: armed anew.
    if (!watch.armed || watch.timer.expiry() > deadline) {
        watch.arm();
    }
}

bool ClientConnection::timed_out() const {
    return watch_ && watch_->timed_out;
}

bool ClientConnection::looks_closed(bool peek) {
    auto& socket = tcp().socket();
    if (!socket.is_open() || buffer.size() > 0) {
        return true;
    }
    if (!peek) {
        return false;
    }
    char byte = 0;
    const auto got = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (got == 0) {
        return true;
    }
    if (got < 0) {
        return errno != EAGAIN && errno != EWOULDBLOCK;
    }
    // Bytes waiting on an idle connection: for plain HTTP a response nobody asked for; for TLS
    // they may be a late session ticket, which the next read consumes.
    return !tls_;
}

void ClientConnection::close() {
    if (watch_) {
        // A closed connection needs no deadline: its pending wait goes now, not at its expiry.
        watch_->deadline = Clock::time_point::max();
        watch_->timer.cancel();
    }
    beast::error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().socket().close(ignored);
}

asio::awaitable<core::Result<std::unique_ptr<ClientConnection>>> open_connection(
    const Target& target,
    const ClientTls& tls,
    std::shared_ptr<ssl::context> context,
    Clock::time_point deadline,
    const std::string& shown_url,
    core::Millis timeout) {
    auto executor = co_await asio::this_coro::executor;
    // Resolution cannot be cut short (getaddrinfo runs to its end on Asio's resolver thread), so
    // the deadline is checked after it; numeric hosts skip it entirely.
    tcp::resolver resolver{executor};
    auto [resolve_ec, endpoints] =
        co_await resolver.async_resolve(target.host, target.port, kUseTuple);
    if (resolve_ec) {
        co_return core::Error{core::ErrorCode::kUnavailable,
                              fmt::format("cannot resolve {} for {}: {}", target.host, shown_url,
                                          resolve_ec.message())};
    }
    if (Clock::now() >= deadline) {
        co_return io_error("resolve", beast::error::timeout, shown_url, timeout, 0);
    }
    auto connection =
        std::make_unique<ClientConnection>(executor, target.https ? context : nullptr);
    // One absolute expiry covers connect, handshake, write and read together: the deadline.
    connection->tcp().expires_at(deadline);
    auto [connect_ec, endpoint] = co_await connection->tcp().async_connect(endpoints, kUseTuple);
    if (connect_ec) {
        co_return io_error("connect", connect_ec, shown_url, timeout, 0);
    }
    // A request's head and body, or a proxied response's pieces, go as written: Nagle's
    // algorithm would hold a second small write until the peer's delayed ACK (~40 ms).
    boost::system::error_code nodelay_ec;
    connection->tcp().socket().set_option(tcp::no_delay{true}, nodelay_ec);
    if (auto* stream = connection->tls()) {
        if (auto prepared = prepare_tls(*stream, target, tls); !prepared) {
            co_return prepared.error();
        }
        auto [handshake_ec] = co_await stream->async_handshake(ssl::stream_base::client, kUseTuple);
        if (handshake_ec) {
            co_return handshake_error(*stream, handshake_ec, target, tls, shown_url, timeout);
        }
    }
    co_return std::move(connection);
}

Failure failure_kind(const core::Error& error) {
    if (error.code == core::ErrorCode::kTimeout) {
        return Failure::kTimeout;
    }
    if (error.message.starts_with("TLS handshake")) {
        return Failure::kTls;
    }
    if (error.message.find("failed to connect") != std::string::npos ||
        error.message.starts_with("cannot resolve")) {
        return Failure::kRefused;
    }
    return Failure::kReset;
}

core::Error io_error(std::string_view step,
                     const beast::error_code& ec,
                     const std::string& shown_url,
                     core::Millis timeout,
                     std::size_t max_body_bytes) {
    if (ec == beast::error::timeout) {
        return core::Error{core::ErrorCode::kTimeout,
                           fmt::format("request to {} timed out after {}", shown_url,
                                       core::format_duration(timeout))};
    }
    if (ec == http::error::body_limit) {
        return core::Error{core::ErrorCode::kUnavailable,
                           fmt::format("response from {} exceeds the {}-byte body limit", shown_url,
                                       max_body_bytes)};
    }
    return core::Error{core::ErrorCode::kUnavailable, fmt::format("request to {} failed to {}: {}",
                                                                  shown_url, step, ec.message())};
}

http::request<http::string_body> make_message(ClientRequest& request,
                                              const Target& target,
                                              bool keep_alive) {
    http::request<http::string_body> message;
    message.method_string(request.method);
    message.target(target.path);
    message.version(11);
    for (auto& header : request.headers) {
        message.insert(header.name, header.value);
    }
    if (message.find(http::field::host) == message.end()) {
        message.set(http::field::host, target.host_header);
    }
    if (message.find(http::field::user_agent) == message.end()) {
        message.set(http::field::user_agent, "aviary");
    }
    message.body() = std::move(request.body);
    // keep_alive(true) would drop a caller's own "Connection: close": honour it.
    message.keep_alive(keep_alive && message.keep_alive());
    message.prepare_payload();
    return message;
}

ClientResponse response_head(const http::response_header<>& header) {
    ClientResponse response;
    response.status = static_cast<int>(header.result_int());
    for (const auto& field : header) {
        response.headers.push_back(
            Header{std::string{field.name_string()}, std::string{field.value()}});
    }
    return response;
}

bool is_idempotent(http::verb method) {
    switch (method) {
        case http::verb::get:
        case http::verb::head:
        case http::verb::options:
        case http::verb::put:
        case http::verb::delete_:
        case http::verb::trace:
            return true;
        default:
            return false;
    }
}

asio::awaitable<Exchanged> exchange(ClientConnection& connection,
                                    http::request<http::string_body>& message,
                                    const ClientRequest& request,
                                    Clock::time_point deadline,
                                    const std::string& shown_url,
                                    const BodySink* sink) {
    connection.tcp().expires_at(deadline);
    Exchanged out{.response = core::Error{core::ErrorCode::kInternal, "no response"}};
    auto [write_ec, written] = co_await http::async_write(connection, message, kUseTuple);
    if (write_ec) {
        out.retryable = written == 0 || is_idempotent(message.method());
        out.response = io_error("send", write_ec, shown_url, request.timeout, 0);
        co_return out;
    }
    // A buffer_body parser fills a fixed buffer; need_buffer means "the buffer is full", not a
    // failure.
    http::response_parser<http::buffer_body> parser;
    parser.header_limit(kResponseHeaderLimit);
    parser.body_limit(request.max_body_bytes);
    parser.skip(message.method() == http::verb::head);
    auto [header_ec, header_read] =
        co_await http::async_read_header(connection, connection.buffer, parser, kUseTuple);
    if (header_ec) {
        out.retryable = !parser.got_some() && header_ec != beast::error::timeout &&
                        is_idempotent(message.method());
        out.response =
            io_error("receive", header_ec, shown_url, request.timeout, request.max_body_bytes);
        co_return out;
    }
    ClientResponse response = response_head(parser.get().base());
    std::array<char, std::size_t{16} * 1024> chunk{};
    while (!parser.is_done()) {
        parser.get().body().data = chunk.data();
        parser.get().body().size = chunk.size();
        // read_some: hand each piece over as it arrives (async_read would wait for the chunk
        // buffer to fill, holding back small NDJSON lines until 16 KiB had gathered).
        auto [read_ec, read] =
            co_await http::async_read_some(connection, connection.buffer, parser, kUseTuple);
        if (read_ec && read_ec != http::error::need_buffer) {
            out.response =
                io_error("receive", read_ec, shown_url, request.timeout, request.max_body_bytes);
            co_return out;
        }
        const std::size_t filled = chunk.size() - parser.get().body().size;
        if (filled == 0) {
            continue;
        }
        if (sink != nullptr) {
            (*sink)(std::string_view{chunk.data(), filled});
        } else {
            response.body.append(chunk.data(), filled);
        }
    }
    out.reusable = parser.keep_alive() && message.keep_alive();
    out.response = std::move(response);
    co_return out;
}

}  // namespace client
}  // namespace aviary::net
