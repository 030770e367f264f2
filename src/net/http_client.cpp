#include <fmt/format.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "net/client_connection.hpp"
#include "net/net.hpp"

namespace aviary::net {
namespace {

using client::BodySink;
using client::Clock;

/// One request on its own connection, closed afterwards: the client without a pool.
asio::awaitable<core::Result<ClientResponse>> exchange_once(ClientRequest request,
                                                            const BodySink* sink) {
    const std::string shown_url = redact_url(request.url);
    auto target = client::parse_target(request.url);
    if (!target) {
        co_return target.error();
    }
    const ClientTls tls = request.tls.value_or(ClientTls{});
    std::shared_ptr<client::ssl::context> context;
    if (target->https) {
        auto made = client::make_tls_context(tls);
        if (!made) {
            co_return made.error();
        }
        context = std::move(*made);
    }
    const auto deadline = Clock::now() + request.timeout;
    auto connection = co_await client::open_connection(*target, tls, std::move(context), deadline,
                                                       shown_url, request.timeout);
    if (!connection) {
        co_return connection.error();
    }
    // One request per connection: the server must not wait for a second one.
    auto message = client::make_message(request, *target, false);
    auto exchanged =
        co_await client::exchange(**connection, message, request, deadline, shown_url, sink);
    (*connection)->close();
    co_return std::move(exchanged.response);
}

asio::awaitable<void> stream_into(ClientRequest request,
                                  BodySink on_body_data,
                                  std::optional<core::Result<ClientResponse>>& out) {
    const std::string shown_url = redact_url(request.url);
    try {
        out.emplace(co_await exchange_once(std::move(request), &on_body_data));
    } catch (const std::exception& e) {
        // Includes whatever on_body_data throws: mapped at this boundary.
        out.emplace(core::Error{core::ErrorCode::kInternal,
                                fmt::format("request to {} failed: {}", shown_url, e.what())});
    }
}

asio::awaitable<void> fetch_into(ClientRequest request,
                                 std::optional<core::Result<ClientResponse>>& out) {
    out.emplace(co_await fetch(std::move(request)));
}

}  // namespace

asio::awaitable<core::Result<ClientResponse>> fetch(ClientRequest request) {
    const std::string shown_url = redact_url(request.url);
    try {
        co_return co_await exchange_once(std::move(request), nullptr);
    } catch (const std::exception& e) {
        // Asio and Beast report through error codes here; what is left is allocation failure or
        // a bug, mapped at this boundary.
        co_return core::Error{core::ErrorCode::kInternal,
                              fmt::format("request to {} failed: {}", shown_url, e.what())};
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
