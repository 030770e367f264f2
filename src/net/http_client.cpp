#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <chrono>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "net/net.hpp"

namespace aviary::net {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t kResponseHeaderLimit = 64 * 1024;

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

struct Target {
    std::string host;  // without brackets: what the resolver takes
    std::string host_header;
    std::string port;
    std::string path;  // origin-form, "/" when the URL has none
};

core::Result<Target> parse_target(const std::string& text) {
    auto url = boost::urls::parse_uri(text);
    if (!url) {
        return invalid(fmt::format("invalid url \"{}\": {}", text, url.error().message()));
    }
    if (url->scheme_id() == boost::urls::scheme::https) {
        return invalid(fmt::format("https is not supported yet: \"{}\"", text));
    }
    if (url->scheme_id() != boost::urls::scheme::http) {
        return invalid(
            fmt::format("unsupported scheme \"{}\" in \"{}\" (http only)", url->scheme(), text));
    }
    Target target;
    target.host = url->host_address();
    if (target.host.empty()) {
        return invalid(fmt::format("missing host in url \"{}\"", text));
    }
    target.port = url->has_port() ? std::string{url->port()} : "80";
    target.host_header = std::string{url->encoded_host_and_port()};
    target.path = std::string{url->encoded_target()};
    if (target.path.empty() || target.path.front() != '/') {
        target.path.insert(0, "/");
    }
    return target;
}

http::request<http::string_body> make_message(ClientRequest& request, const Target& target) {
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
    // One request per connection: no pool yet, so the server must not wait for a second one.
    message.keep_alive(false);
    message.prepare_payload();
    return message;
}

/// Maps an I/O failure to the contract's codes. Beast reports a passed deadline as timeout.
core::Error io_error(std::string_view step,
                     const beast::error_code& ec,
                     const ClientRequest& request) {
    if (ec == beast::error::timeout) {
        return core::Error{core::ErrorCode::kTimeout,
                           fmt::format("request to {} timed out after {}", request.url,
                                       core::format_duration(request.timeout))};
    }
    if (ec == http::error::body_limit) {
        return core::Error{core::ErrorCode::kUnavailable,
                           fmt::format("response from {} exceeds the {}-byte body limit",
                                       request.url, request.max_body_bytes)};
    }
    return core::Error{core::ErrorCode::kUnavailable, fmt::format("request to {} failed to {}: {}",
                                                                  request.url, step, ec.message())};
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

/// A connection with the request written, ready for the response to be read.
struct Sent {
    beast::tcp_stream stream;
    bool head = false;  // a HEAD response announces a body it does not carry
};

asio::awaitable<core::Result<Sent>> connect_and_send(ClientRequest& request) {
    auto target = parse_target(request.url);
    if (!target) {
        co_return target.error();
    }
    const auto deadline = std::chrono::steady_clock::now() + request.timeout;
    auto executor = co_await asio::this_coro::executor;

    // Resolution cannot be cut short (getaddrinfo runs to its end on Asio's resolver thread), so
    // the deadline is checked after it; numeric hosts skip it entirely.
    tcp::resolver resolver{executor};
    auto [resolve_ec, endpoints] =
        co_await resolver.async_resolve(target->host, target->port, kUseTuple);
    if (resolve_ec) {
        co_return core::Error{core::ErrorCode::kUnavailable,
                              fmt::format("cannot resolve {} for {}: {}", target->host, request.url,
                                          resolve_ec.message())};
    }
    if (std::chrono::steady_clock::now() >= deadline) {
        co_return io_error("resolve", beast::error::timeout, request);
    }

    Sent sent{beast::tcp_stream{executor}};
    // One absolute expiry covers connect, write and read together: the overall deadline.
    sent.stream.expires_at(deadline);
    auto [connect_ec, endpoint] = co_await sent.stream.async_connect(endpoints, kUseTuple);
    if (connect_ec) {
        co_return io_error("connect", connect_ec, request);
    }
    auto message = make_message(request, *target);
    sent.head = message.method() == http::verb::head;
    auto [write_ec, written] = co_await http::async_write(sent.stream, message, kUseTuple);
    if (write_ec) {
        co_return io_error("send", write_ec, request);
    }
    co_return std::move(sent);
}

asio::awaitable<core::Result<ClientResponse>> exchange(ClientRequest request) {
    auto sent = co_await connect_and_send(request);
    if (!sent) {
        co_return sent.error();
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.header_limit(kResponseHeaderLimit);
    parser.body_limit(request.max_body_bytes);
    parser.skip(sent->head);
    auto [read_ec, read] = co_await http::async_read(sent->stream, buffer, parser, kUseTuple);
    if (read_ec) {
        co_return io_error("receive", read_ec, request);
    }
    beast::error_code ignored;
    sent->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);

    auto& got = parser.get();
    ClientResponse response = response_head(got.base());
    response.body = std::move(got.body());
    co_return response;
}

using BodySink = std::function<void(std::string_view chunk)>;

/// As exchange(), but hands the body to `on_body_data` piece by piece: a buffer_body parser
/// fills a fixed buffer, and need_buffer means "the buffer is full", not a failure.
asio::awaitable<core::Result<ClientResponse>> stream_exchange(ClientRequest request,
                                                              BodySink on_body_data) {
    auto sent = co_await connect_and_send(request);
    if (!sent) {
        co_return sent.error();
    }
    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.header_limit(kResponseHeaderLimit);
    parser.body_limit(request.max_body_bytes);
    parser.skip(sent->head);
    auto [header_ec, header_read] =
        co_await http::async_read_header(sent->stream, buffer, parser, kUseTuple);
    if (header_ec) {
        co_return io_error("receive", header_ec, request);
    }
    ClientResponse response = response_head(parser.get().base());

    std::array<char, 16 * 1024> chunk{};
    while (!parser.is_done()) {
        parser.get().body().data = chunk.data();
        parser.get().body().size = chunk.size();
        // read_some: hand each piece over as it arrives (async_read would wait for the chunk
        // buffer to fill, holding back small NDJSON lines until 16 KiB had gathered).
        auto [read_ec, read] =
            co_await http::async_read_some(sent->stream, buffer, parser, kUseTuple);
        if (read_ec && read_ec != http::error::need_buffer) {
            co_return io_error("receive", read_ec, request);
        }
        const std::size_t filled = chunk.size() - parser.get().body().size;
        if (filled > 0) {
            on_body_data(std::string_view{chunk.data(), filled});
        }
    }
    beast::error_code ignored;
    sent->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    co_return response;
}

asio::awaitable<void> stream_into(ClientRequest request,
                                  BodySink on_body_data,
                                  std::optional<core::Result<ClientResponse>>& out) {
    const std::string url = request.url;
    try {
        out.emplace(co_await stream_exchange(std::move(request), std::move(on_body_data)));
    } catch (const std::exception& e) {
        // Includes whatever on_body_data throws: mapped at this boundary (STYLE §4).
        out.emplace(core::Error{core::ErrorCode::kInternal,
                                fmt::format("request to {} failed: {}", url, e.what())});
    }
}

asio::awaitable<void> fetch_into(ClientRequest request,
                                 std::optional<core::Result<ClientResponse>>& out) {
    out.emplace(co_await fetch(std::move(request)));
}

}  // namespace

asio::awaitable<core::Result<ClientResponse>> fetch(ClientRequest request) {
    const std::string url = request.url;
    try {
        co_return co_await exchange(std::move(request));
    } catch (const std::exception& e) {
        // Asio and Beast report through error codes here; what is left is allocation failure or
        // a bug, mapped at this boundary (STYLE §4).
        co_return core::Error{core::ErrorCode::kInternal,
                              fmt::format("request to {} failed: {}", url, e.what())};
    }
}

core::Result<ClientResponse> fetch_sync(ClientRequest request) {
    asio::io_context ioc;
    std::optional<core::Result<ClientResponse>> out;
    asio::co_spawn(ioc, fetch_into(std::move(request), out), [](std::exception_ptr error) {
        if (error) {
            std::rethrow_exception(error);  // fetch() catches everything; this is a bug
        }
    });
    ioc.run();
    AVIARY_ASSERT(out.has_value(), "fetch ran to completion");
    return std::move(*out);
}

core::Result<ClientResponse> fetch_stream(ClientRequest request, BodySink on_body_data) {
    asio::io_context ioc;
    std::optional<core::Result<ClientResponse>> out;
    asio::co_spawn(ioc, stream_into(std::move(request), std::move(on_body_data), out),
                   [](std::exception_ptr error) {
                       if (error) {
                           std::rethrow_exception(error);  // stream_into catches everything
                       }
                   });
    ioc.run();
    AVIARY_ASSERT(out.has_value(), "fetch_stream ran to completion");
    return std::move(*out);
}

}  // namespace aviary::net
