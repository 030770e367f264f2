#pragma once
// A blocking HTTP/1.1 keep-alive client connection for the benchmarks' load generators: one
// per client thread, reused for every request (as a real client keeps its connection), with a
// small read buffer and Content-Length framing only. Loopback IPv4.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace aviary::bench {

/// One blocking keep-alive connection with a small read buffer.
class HttpConnection {
public:
    /// `on_error` hears why a connect or a round trip failed (it may be empty).
    HttpConnection(std::string host,
                   int port,
                   int timeout_ms,
                   std::function<void(std::string)> on_error = {})
        : host_(std::move(host)),
          port_(port),
          timeout_ms_(timeout_ms),
          on_error_(std::move(on_error)) {}
    ~HttpConnection() { close(); }
    HttpConnection(const HttpConnection&) = delete;
    HttpConnection& operator=(const HttpConnection&) = delete;

    bool open() {
        close();
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) {
            return false;
        }
        int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        timeval tv{timeout_ms_ / 1000, (timeout_ms_ % 1000) * 1000};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(port_));
        if (::inet_pton(AF_INET, host_.c_str(), &addr.sin_addr) != 1 ||
            ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            note("connect failed: " + std::string{std::strerror(errno)});
            close();
            return false;
        }
        buffer_.clear();
        return true;
    }

    void close() {
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }

    /// Sends `request` and reads one response. Returns the body, or nullopt on a transport or
    /// framing failure (the connection is then closed). Sets `status` and `keep_alive`.
    std::optional<std::string_view> round_trip(const std::string& request,
                                               int& status,
                                               bool& keep_alive) {
        if (!send_all(request)) {
            return fail("send failed");
        }
        std::size_t header_end;
        while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
            if (buffer_.size() > 64 * 1024) {
                return fail("response header too large");
            }
            if (!read_more()) {
                return fail("connection closed or timed out reading the header");
            }
        }
        std::string_view head{buffer_.data(), header_end};
        if (head.size() < 12 || head.substr(0, 9) != "HTTP/1.1 ") {
            return fail("not an HTTP/1.1 response");
        }
        status = std::atoi(std::string{head.substr(9, 3)}.c_str());
        auto length = header_value(head, "content-length");
        if (!length) {
            return fail("response without Content-Length");
        }
        auto connection = header_value(head, "connection");
        keep_alive = !connection || !iequals(*connection, "close");
        std::size_t body_size = std::strtoull(std::string{*length}.c_str(), nullptr, 10);
        std::size_t total = header_end + 4 + body_size;
        while (buffer_.size() < total) {
            if (!read_more()) {
                return fail("connection closed or timed out reading the body");
            }
        }
        body_.assign(buffer_, header_end + 4, body_size);
        buffer_.erase(0, total);
        return std::string_view{body_};
    }

private:
    static bool iequals(std::string_view a, std::string_view b) {
        return a.size() == b.size() &&
               std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
                   return std::tolower(static_cast<unsigned char>(x)) ==
                          std::tolower(static_cast<unsigned char>(y));
               });
    }

    /// The value of the first header named `name` (lower case) in `head`.
    static std::optional<std::string_view> header_value(std::string_view head,
                                                        std::string_view name) {
        std::size_t pos = head.find("\r\n");
        while (pos != std::string_view::npos) {
            std::size_t start = pos + 2;
            std::size_t end = head.find("\r\n", start);
            std::string_view line = head.substr(
                start, end == std::string_view::npos ? std::string_view::npos : end - start);
            auto colon = line.find(':');
            if (colon != std::string_view::npos && iequals(line.substr(0, colon), name)) {
                auto value = line.substr(colon + 1);
                while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
                    value.remove_prefix(1);
                }
                return value;
            }
            pos = end;
        }
        return std::nullopt;
    }

    bool send_all(const std::string& data) {
        std::size_t sent = 0;
        while (sent < data.size()) {
            ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) {
                if (n < 0 && errno == EINTR) {
                    continue;
                }
                return false;
            }
            sent += static_cast<std::size_t>(n);
        }
        return true;
    }

    bool read_more() {
        char chunk[16 * 1024];
        while (true) {
            ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
            if (n > 0) {
                buffer_.append(chunk, static_cast<std::size_t>(n));
                return true;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            return false;
        }
    }

    std::nullopt_t fail(const char* what) {
        note(what);
        close();
        return std::nullopt;
    }

    void note(std::string what) {
        if (on_error_) {
            on_error_(std::move(what));
        }
    }

    std::string host_;
    int port_;
    int timeout_ms_;
    std::function<void(std::string)> on_error_;
    int fd_ = -1;
    std::string buffer_;
    std::string body_;
};

}  // namespace aviary::bench
