// Reads into a DrainingBuffer: after a short read the next read waits for readiness instead of
// trying first. What must hold is that no byte is ever waited for that has already come: each
// test below would hang (and fail on its bound) if a short read made the next read wait for an
// event that already went by. What it saves (a failed recv per wait) is counted by
// bench/supervise/proxy_cost.sh.
#include "net/draining_buffer.hpp"

#include <gtest/gtest.h>

#include <array>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <optional>
#include <string>

namespace aviary::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

/// A connected loopback pair: `reader` is read through the io_context, `peer` is written to
/// with blocking calls (on loopback the bytes are in the reader's queue when write returns).
struct Pair {
    asio::io_context context;
    asio::executor_work_guard<asio::io_context::executor_type> work{context.get_executor()};
    tcp::socket reader{context};
    tcp::socket peer{context};

    Pair() {
        tcp::acceptor acceptor{context, tcp::endpoint{asio::ip::address_v4::loopback(), 0}};
        peer.connect(acceptor.local_endpoint());
        acceptor.accept(reader);
    }

    /// One read of up to `capacity` bytes into a DrainingBuffer, run to its end or for at most
    /// 10 s: what it read, or nullopt when it did not end (a read left waiting).
    std::optional<std::string> read(std::size_t capacity,
                                    boost::system::error_code* error = nullptr) {
        std::string data(capacity, '\0');
        std::optional<std::string> got;
        reader.async_read_some(DrainingBuffer{asio::buffer(data)},
                               [&](boost::system::error_code ec, std::size_t n) {
                                   if (error != nullptr) {
                                       *error = ec;
                                   }
                                   got = data.substr(0, n);
                               });
        const auto until = std::chrono::steady_clock::now() + 10s;
        while (!got && std::chrono::steady_clock::now() < until) {
            context.run_one_for(100ms);
        }
        return got;
    }

    void send(const std::string& bytes) { asio::write(peer, asio::buffer(bytes)); }

    /// Lets the io_context take every readiness event pending now, with no read waiting.
    void take_events() {
        for (int i = 0; i < 3; ++i) {
            context.poll();
        }
    }
};

TEST(DrainingBuffer, IsInEffectWithThisBoost) {
    // The tests below exercise the short-read rule only where it is compiled in: Boost 1.81
    // on Linux, what the project builds with. On another Boost they still must pass.
    EXPECT_TRUE(kShortReadDrains)
        << "Boost " << BOOST_LIB_VERSION
        << ": reads into a DrainingBuffer are Asio's own; see draining_buffer.hpp";
}

TEST(DrainingBuffer, ReadsWhatComesAfterAShortRead) {
    Pair pair;
    pair.send("first");
    EXPECT_EQ(pair.read(64), "first");  // short: 5 of 64
    pair.send("second");
    EXPECT_EQ(pair.read(64), "second");
}

TEST(DrainingBuffer, ReadsBytesWhoseReadinessCameWhileNoReadWaited) {
    // The case a pipelined request makes: the bytes come, and their readiness event is taken,
    // while the session is busy elsewhere. The next read must find them at once.
    Pair pair;
    pair.send("head");
    ASSERT_EQ(pair.read(64), "head");
    pair.send("pipelined");
    pair.take_events();
    EXPECT_EQ(pair.read(64), "pipelined");
}

TEST(DrainingBuffer, ReadsTheRestAfterAReadThatFilledItsBuffer) {
    Pair pair;
    pair.send("0123456789");
    EXPECT_EQ(pair.read(4), "0123");  // full: more may be waiting
    EXPECT_EQ(pair.read(4), "4567");
    EXPECT_EQ(pair.read(64), "89");
}

TEST(DrainingBuffer, ReadsTheEndOfStreamAfterAShortRead) {
    Pair pair;
    pair.send("last");
    ASSERT_EQ(pair.read(64), "last");
    pair.peer.shutdown(tcp::socket::shutdown_send);
    pair.take_events();  // the FIN's readiness taken before the read starts
    boost::system::error_code ec;
    const auto got = pair.read(64, &ec);
    ASSERT_TRUE(got) << "the end of stream was not read";
    EXPECT_EQ(*got, "");
    EXPECT_EQ(ec, asio::error::eof);
}

TEST(DrainingBuffer, ManyShortReadsInTurnWithEventsTakenBetween) {
    // Alternates the two orders (bytes before the read starts, bytes after) many times on one
    // socket, as a keep-alive connection does.
    Pair pair;
    for (int i = 0; i < 200; ++i) {
        const auto message = "message " + std::to_string(i);
        if (i % 2 == 0) {
            pair.send(message);
            pair.take_events();
            ASSERT_EQ(pair.read(128), message) << "round " << i;
        } else {
            std::string data(128, '\0');
            std::optional<std::size_t> got;
            pair.reader.async_read_some(DrainingBuffer{asio::buffer(data)},
                                        [&](boost::system::error_code, std::size_t n) { got = n; });
            pair.take_events();  // the read is waiting; nothing has come
            ASSERT_FALSE(got) << "round " << i << ": a read ended with nothing to read";
            pair.send(message);
            const auto until = std::chrono::steady_clock::now() + 10s;
            while (!got && std::chrono::steady_clock::now() < until) {
                pair.context.run_one_for(100ms);
            }
            ASSERT_TRUE(got) << "round " << i;
            EXPECT_EQ(data.substr(0, *got), message) << "round " << i;
        }
    }
}

}  // namespace
}  // namespace aviary::net
