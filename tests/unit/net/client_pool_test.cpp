#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "net/net.hpp"
#include "unit/net/raw_http.hpp"

namespace aviary::net {
namespace {

using namespace std::chrono_literals;
using tcp = asio::ip::tcp;
using Results = std::vector<core::Result<ClientResponse>>;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

ClientRequest get(const std::string& address, std::string method = "GET") {
    ClientRequest request;
    request.method = std::move(method);
    request.url = fmt::format("http://{}/ping", address);
    request.timeout = 5s;
    return request;
}

/// Sends `requests` one after the other on `client`, collecting the results.
asio::awaitable<void> fetch_in_turn(HttpClient& client,
                                    std::vector<ClientRequest> requests,
                                    Results& out) {
    for (auto& request : requests) {
        out.push_back(co_await client.fetch(std::move(request)));
    }
}

asio::awaitable<void> fetch_one(HttpClient& client, ClientRequest request, Results& out) {
    out.push_back(co_await client.fetch(std::move(request)));
}

/// Holds each request until `in_flight` reaches `together` (or 5 s pass), recording the most
/// seen at once: with a bound of N the handler proves N ran together and never more.
struct Crowd {
    std::atomic<int> together{0};
    std::atomic<int> in_flight{0};
    std::atomic<int> most{0};
};

struct CrowdHandler {
    std::shared_ptr<Crowd> crowd;
    asio::awaitable<Response> operator()(Request) const {
        const int now = ++crowd->in_flight;
        int seen = crowd->most.load();
        while (now > seen && !crowd->most.compare_exchange_weak(seen, now)) {
        }
        asio::steady_timer timer{co_await asio::this_coro::executor};
        const auto give_up = std::chrono::steady_clock::now() + 5s;
        while (crowd->in_flight < crowd->together && std::chrono::steady_clock::now() < give_up) {
            timer.expires_after(2ms);
            co_await timer.async_wait(asio::use_awaitable);
        }
        // Past the bound nobody else gets in while this one is held: keep it a moment longer.
        timer.expires_after(20ms);
        co_await timer.async_wait(asio::use_awaitable);
        --crowd->in_flight;
        Response response;
        response.body = "ok";
        co_return response;
    }
};

Handler ok_handler() {
    return [](Request) -> asio::awaitable<Response> {
        Response response;
        response.body = "pong";
        co_return response;
    };
}

TEST(HttpClientPool, ReusesOneConnectionForSequentialRequests) {
    HttpServer server(ServerSettings{.listen = "127.0.0.1:0"}, ok_handler());
    auto address = server.start();
    ASSERT_TRUE(address) << address.error().message;
    asio::io_context ioc;
    HttpClient client{ioc.get_executor(), ClientSettings{}};
    Results results;
    std::vector<ClientRequest> requests(5, get(*address));
    asio::co_spawn(ioc, fetch_in_turn(client, requests, results), asio::detached);
    ioc.run();
    ASSERT_EQ(results.size(), 5U);
    for (auto& result : results) {
        ASSERT_TRUE(result) << result.error().message;
        EXPECT_EQ(result->body, "pong");
    }
    EXPECT_EQ(server.stats().accepted, 1U);
    EXPECT_EQ(client.stats().connections_opened, 1U);
    EXPECT_EQ(client.stats().reused, 4U);
    server.stop();
}

TEST(HttpClientPool, OpensAFreshConnectionAfterTheServerClosedTheIdleOne) {
    HttpServer server(ServerSettings{.listen = "127.0.0.1:0", .idle_timeout = 50ms}, ok_handler());
    auto address = server.start();
    ASSERT_TRUE(address) << address.error().message;
    asio::io_context ioc;
    HttpClient client{ioc.get_executor(), ClientSettings{}};
    Results results;
    asio::co_spawn(ioc, fetch_one(client, get(*address), results), asio::detached);
    ioc.run();
    ASSERT_TRUE(test::wait_until([&] { return server.stats().open == 0; }));
    ioc.restart();
    asio::co_spawn(ioc, fetch_one(client, get(*address), results), asio::detached);
    ioc.run();
    ASSERT_EQ(results.size(), 2U);
    ASSERT_TRUE(results[1]) << results[1].error().message;
    EXPECT_EQ(server.stats().accepted, 2U);
    server.stop();
}

TEST(HttpClientPool, KeepsNoConnectionTheRequestAskedToClose) {
    HttpServer server(ServerSettings{.listen = "127.0.0.1:0"}, ok_handler());
    auto address = server.start();
    ASSERT_TRUE(address) << address.error().message;
    asio::io_context ioc;
    HttpClient client{ioc.get_executor(), ClientSettings{}};
    Results results;
    auto closing = get(*address);
    closing.headers.push_back({"Connection", "close"});
    std::vector<ClientRequest> requests{closing, get(*address)};
    asio::co_spawn(ioc, fetch_in_turn(client, requests, results), asio::detached);
    ioc.run();
    ASSERT_EQ(results.size(), 2U);
    ASSERT_TRUE(results[0]) << results[0].error().message;
    ASSERT_TRUE(results[1]) << results[1].error().message;
    EXPECT_EQ(server.stats().accepted, 2U);
    EXPECT_EQ(client.stats().reused, 0U);
    server.stop();
}

/// A keep-alive server that answers the first request on each connection and then drops the
/// connection when the second one arrives: a race with its idle timer, made certain.
struct DropsSecondRequest {
    tcp::acceptor& acceptor;
    std::shared_ptr<int> accepted = std::make_shared<int>(0);

    asio::awaitable<void> operator()() const {
        for (;;) {
            auto [ec, socket] = co_await acceptor.async_accept(kTuple);
            if (ec) {
                co_return;
            }
            ++*accepted;
            asio::co_spawn(acceptor.get_executor(), serve(std::move(socket)), asio::detached);
        }
    }

    static asio::awaitable<void> serve(tcp::socket socket) {
        asio::streambuf buffer;
        auto [ec, n] = co_await asio::async_read_until(socket, buffer, "\r\n\r\n", kTuple);
        if (ec) {
            co_return;
        }
        const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        co_await asio::async_write(socket, asio::buffer(answer), kTuple);
        buffer.consume(n);
        co_await asio::async_read_until(socket, buffer, "\r\n\r\n", kTuple);
        socket.close();
    }
};

/// The fetches, then stop: the server's coroutine still waits on the pooled connection.
asio::awaitable<void> fetch_then_stop(HttpClient& client,
                                      std::vector<ClientRequest> requests,
                                      Results& out,
                                      asio::io_context& ioc) {
    co_await fetch_in_turn(client, std::move(requests), out);
    ioc.stop();
}

TEST(HttpClientPool, RetriesAnIdempotentRequestOnAFreshConnectionWhenTheReusedOneDrops) {
    asio::io_context ioc;
    tcp::acceptor acceptor{ioc, {asio::ip::make_address("127.0.0.1"), 0}};
    const auto address = fmt::format("127.0.0.1:{}", acceptor.local_endpoint().port());
    DropsSecondRequest server{acceptor};
    asio::co_spawn(ioc, server(), asio::detached);
    HttpClient client{ioc.get_executor(), ClientSettings{}};
    Results results;
    std::vector<ClientRequest> requests{get(address), get(address)};
    asio::co_spawn(ioc, fetch_then_stop(client, requests, results, ioc), asio::detached);
    ioc.run();
    ASSERT_EQ(results.size(), 2U);
    ASSERT_TRUE(results[1]) << results[1].error().message;
    EXPECT_EQ(results[1]->body, "ok");
    EXPECT_EQ(client.stats().retried, 1U);
    EXPECT_EQ(*server.accepted, 2);
}

TEST(HttpClientPool, DoesNotResendAPostThatReachedTheServer) {
    asio::io_context ioc;
    tcp::acceptor acceptor{ioc, {asio::ip::make_address("127.0.0.1"), 0}};
    const auto address = fmt::format("127.0.0.1:{}", acceptor.local_endpoint().port());
    DropsSecondRequest server{acceptor};
    asio::co_spawn(ioc, server(), asio::detached);
    HttpClient client{ioc.get_executor(), ClientSettings{}};
    Results results;
    std::vector<ClientRequest> requests{get(address), get(address, "POST")};
    asio::co_spawn(ioc, fetch_then_stop(client, requests, results, ioc), asio::detached);
    ioc.run();
    ASSERT_EQ(results.size(), 2U);
    ASSERT_FALSE(results[1]);
    EXPECT_EQ(results[1].error().code, core::ErrorCode::kUnavailable);
    EXPECT_EQ(client.stats().retried, 0U);
    EXPECT_EQ(*server.accepted, 1);
}

TEST(HttpClientPool, HoldsConcurrentRequestsToMaxPerHost) {
    auto crowd = std::make_shared<Crowd>();
    crowd->together = 2;
    HttpServer server(ServerSettings{.listen = "127.0.0.1:0"}, CrowdHandler{crowd});
    auto address = server.start();
    ASSERT_TRUE(address) << address.error().message;
    asio::io_context ioc;
    HttpClient client{ioc.get_executor(), ClientSettings{.max_per_host = 2}};
    Results results;
    for (int i = 0; i < 6; ++i) {
        asio::co_spawn(ioc, fetch_one(client, get(*address), results), asio::detached);
    }
    ioc.run();
    ASSERT_EQ(results.size(), 6U);
    for (auto& result : results) {
        ASSERT_TRUE(result) << result.error().message;
    }
    EXPECT_EQ(crowd->most, 2);
    EXPECT_EQ(server.stats().accepted, 2U);
    server.stop();
}

TEST(HttpClientPool, AWaiterGivesUpAtItsTimeout) {
    auto crowd = std::make_shared<Crowd>();
    crowd->together = 2;  // never reached with one connection: each request is held ~5 s
    HttpServer server(ServerSettings{.listen = "127.0.0.1:0", .shutdown_grace = 10ms},
                      CrowdHandler{crowd});
    auto address = server.start();
    ASSERT_TRUE(address) << address.error().message;
    asio::io_context ioc;
    HttpClient client{ioc.get_executor(), ClientSettings{.max_per_host = 1}};
    Results results;
    auto held = get(*address);
    held.timeout = 300ms;
    auto waiting = get(*address);
    waiting.timeout = 100ms;
    asio::co_spawn(ioc, fetch_one(client, held, results), asio::detached);
    asio::co_spawn(ioc, fetch_one(client, waiting, results), asio::detached);
    ioc.run();
    ASSERT_EQ(results.size(), 2U);
    // The waiter's 100 ms pass first.
    ASSERT_FALSE(results[0]);
    EXPECT_EQ(results[0].error().code, core::ErrorCode::kTimeout);
    EXPECT_NE(results[0].error().message.find("waiting for one of the 1 connections"),
              std::string::npos)
        << results[0].error().message;
    crowd->together = 0;
    server.stop();
}

}  // namespace
}  // namespace aviary::net
