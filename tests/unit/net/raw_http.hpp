#pragma once
// Test-only helpers for net_test: a raw TCP client that speaks just enough HTTP/1.1 to check
// what the server really puts on the wire, and bounded waits. Every read has a deadline, so a
// misbehaving server fails a test instead of hanging it.
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "net/net.hpp"

namespace aviary::net::test {

using namespace std::chrono_literals;
using tcp = boost::asio::ip::tcp;

/// Polls `condition` until it holds or `within` passes; returns its last value. The interval is
/// a poll period, not a wait for something to happen.
inline bool wait_until(const std::function<bool()>& condition,
                       std::chrono::milliseconds within = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= deadline) {
            return condition();
        }
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

struct RawResponse {
    int status = 0;
    std::string head;  ///< status line and headers, without the blank line
    std::string body;  ///< as sent: chunked bodies keep their framing
};

class RawClient {
public:
    /// Connects to "host:port"; connected() says whether it worked.
    explicit RawClient(const std::string& address) : socket_(ioc_) {
        auto host_port = split_host_port(address);
        if (!host_port) {
            return;
        }
        tcp::endpoint endpoint{boost::asio::ip::make_address(host_port->first), host_port->second};
        socket_.connect(endpoint, error_);
    }

    bool connected() const { return !error_ && socket_.is_open(); }
    const boost::system::error_code& error() const { return error_; }

    void send(std::string_view data) {
        boost::system::error_code ec;
        boost::asio::write(socket_, boost::asio::buffer(data), ec);
    }

    /// Reads until `done(received)` holds, the peer closes, or `within` passes.
    const std::string& read_until(const std::function<bool(const std::string&)>& done,
                                  std::chrono::milliseconds within = 5s) {
        const auto deadline = std::chrono::steady_clock::now() + within;
        while (!done(received_) && !closed_ && std::chrono::steady_clock::now() < deadline) {
            read_once(deadline);
        }
        return received_;
    }

    /// Waits until the server closes the connection; true if it did within `within`.
    bool wait_closed(std::chrono::milliseconds within = 5s) {
        read_until([](const std::string&) { return false; }, within);
        return closed_;
    }

    /// One complete response off the wire (Content-Length, chunked, or until close); what
    /// follows it stays buffered for the next call.
    std::optional<RawResponse> read_response(std::chrono::milliseconds within = 5s) {
        read_until([this](const std::string&) { return response_size().has_value(); }, within);
        auto size = response_size();
        if (!size && closed_ && !received_.empty()) {
            size = received_.size();  // delimited by close
        }
        if (!size) {
            return std::nullopt;
        }
        const auto head_end = received_.find("\r\n\r\n");
        RawResponse response;
        response.head = received_.substr(0, head_end);
        response.body = received_.substr(head_end + 4, *size - head_end - 4);
        response.status = std::stoi(response.head.substr(9, 3));
        received_.erase(0, *size);
        return response;
    }

    /// Status line and headers only (HEAD responses, "100 Continue"); consumes them.
    std::string read_head(std::chrono::milliseconds within = 5s) {
        read_until([](const std::string& got) { return got.find("\r\n\r\n") != std::string::npos; },
                   within);
        const auto head_end = received_.find("\r\n\r\n");
        if (head_end == std::string::npos) {
            return {};
        }
        std::string head = received_.substr(0, head_end);
        received_.erase(0, head_end + 4);
        return head;
    }

    bool closed() const { return closed_; }

private:
    void read_once(std::chrono::steady_clock::time_point deadline) {
        std::array<char, 4096> chunk{};
        bool finished = false;
        socket_.async_read_some(boost::asio::buffer(chunk),
                                [&](const boost::system::error_code& ec, std::size_t n) {
                                    finished = true;
                                    received_.append(chunk.data(), n);
                                    if (ec) {
                                        closed_ = true;
                                    }
                                });
        ioc_.restart();
        ioc_.run_until(deadline);
        if (!finished) {
            socket_.cancel();
            ioc_.restart();
            ioc_.run();
            closed_ = false;  // cancelled by us, not closed by the peer
        }
    }

    /// Bytes of the first complete response in the buffer, if there is one yet.
    std::optional<std::size_t> response_size() const {
        const auto head_end = received_.find("\r\n\r\n");
        if (head_end == std::string::npos) {
            return std::nullopt;
        }
        const std::string head = lower(received_.substr(0, head_end));
        const auto body_start = head_end + 4;
        if (head.find("transfer-encoding: chunked") != std::string::npos) {
            const auto last = received_.find("\r\n0\r\n\r\n", head_end);
            if (last == std::string::npos) {
                if (received_.compare(body_start, 5, "0\r\n\r\n") == 0) {
                    return body_start + 5;
                }
                return std::nullopt;
            }
            return last + 7;
        }
        const auto length_at = head.find("content-length: ");
        if (length_at == std::string::npos) {
            return std::nullopt;  // delimited by close
        }
        const std::size_t length = std::stoul(head.substr(length_at + 16));
        if (received_.size() < body_start + length) {
            return std::nullopt;
        }
        return body_start + length;
    }

    static std::string lower(std::string text) {
        for (auto& c : text) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        return text;
    }

    boost::asio::io_context ioc_;
    tcp::socket socket_;
    boost::system::error_code error_;
    std::string received_;
    bool closed_ = false;
};

}  // namespace aviary::net::test
