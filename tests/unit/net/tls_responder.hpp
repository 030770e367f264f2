#pragma once
// Test-only: a tiny HTTPS responder for the client's TLS tests, on its own thread. It answers
// every request with 200 and a body naming what it saw of the TLS session ("sni=localhost
// client=client-1"), then closes. Handshake failures are counted, not answered.
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace aviary::net::test {

class TlsResponder {
public:
    struct Options {
        std::string cert;
        std::string key;
        std::string client_ca;  ///< when set, a client certificate signed by it is required
    };

    explicit TlsResponder(const Options& options)
        : context_(boost::asio::ssl::context::tls_server),
          acceptor_(ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
        context_.use_certificate_chain_file(options.cert);
        context_.use_private_key_file(options.key, boost::asio::ssl::context::pem);
        if (!options.client_ca.empty()) {
            context_.load_verify_file(options.client_ca);
            context_.set_verify_mode(boost::asio::ssl::verify_peer |
                                     boost::asio::ssl::verify_fail_if_no_peer_cert);
        }
        boost::asio::co_spawn(ioc_, accept_loop(), boost::asio::detached);
        thread_ = std::thread{[this] { ioc_.run(); }};
    }
    ~TlsResponder() {
        ioc_.stop();
        thread_.join();
    }
    TlsResponder(const TlsResponder&) = delete;
    TlsResponder& operator=(const TlsResponder&) = delete;

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    int failed_handshakes() const { return failed_handshakes_; }

private:
    using Stream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;

    boost::asio::awaitable<void> accept_loop() {
        for (;;) {
            auto socket = co_await acceptor_.async_accept(boost::asio::use_awaitable);
            boost::asio::co_spawn(ioc_, serve(std::move(socket)), boost::asio::detached);
        }
    }

    boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket socket) {
        namespace http = boost::beast::http;
        constexpr auto kTuple = boost::asio::as_tuple(boost::asio::use_awaitable);
        Stream stream{std::move(socket), context_};
        auto [handshake_ec] = co_await stream.async_handshake(Stream::server, kTuple);
        if (handshake_ec) {
            ++failed_handshakes_;
            co_return;
        }
        boost::beast::flat_buffer buffer;
        http::request<http::string_body> request;
        auto [read_ec, n] = co_await http::async_read(stream, buffer, request, kTuple);
        if (read_ec) {
            co_return;
        }
        http::response<http::string_body> response{http::status::ok, 11};
        response.body() = "sni=" + server_name(stream) + " client=" + client_name(stream);
        response.keep_alive(false);
        response.prepare_payload();
        co_await http::async_write(stream, response, kTuple);
        co_await stream.async_shutdown(kTuple);
    }

    static std::string server_name(Stream& stream) {
        const char* name = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name);
        return name == nullptr ? "" : name;
    }

    static std::string client_name(Stream& stream) {
        X509* peer = SSL_get1_peer_certificate(stream.native_handle());
        if (peer == nullptr) {
            return "none";
        }
        char name[256] = {};
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, name, sizeof name);
        X509_free(peer);
        return name;
    }

    boost::asio::io_context ioc_;
    boost::asio::ssl::context context_;
    boost::asio::ip::tcp::acceptor acceptor_;
    std::thread thread_;
    std::atomic<int> failed_handshakes_{0};
};

}  // namespace aviary::net::test
