#pragma once
// Test-only: a small blocking HTTPS client for net_test, verifying the server against a test CA
// (and presenting a client certificate when given one). Every operation has a deadline, so a
// misbehaving server fails a test instead of hanging it.
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <optional>
#include <string>

#include "net/net.hpp"

namespace aviary::net::test {

struct TlsClientOptions {
    std::string ca_file;    ///< the server must present a certificate this CA signed
    std::string cert_file;  ///< a client certificate, or empty
    std::string key_file;
    std::string host = "localhost";  ///< SNI and the name the certificate must carry
};

class TlsClient {
public:
    /// Connects to "host:port" and shakes hands; error() says whether that worked.
    TlsClient(const std::string& address, const TlsClientOptions& options)
        : context_(boost::asio::ssl::context::tls_client) {
        context_.load_verify_file(options.ca_file);
        context_.set_verify_mode(boost::asio::ssl::verify_peer);
        if (!options.cert_file.empty()) {
            context_.use_certificate_chain_file(options.cert_file);
            context_.use_private_key_file(options.key_file, boost::asio::ssl::context::pem);
        }
        stream_.emplace(ioc_, context_);
        SSL_set_tlsext_host_name(stream_->native_handle(), options.host.c_str());
        stream_->set_verify_callback(boost::asio::ssl::host_name_verification(options.host));
        auto host_port = split_host_port(address);
        if (!host_port) {
            error_ = boost::asio::error::invalid_argument;
            return;
        }
        boost::asio::ip::tcp::endpoint endpoint{boost::asio::ip::make_address(host_port->first),
                                                host_port->second};
        error_ = run([&](auto done) {
            boost::beast::get_lowest_layer(*stream_).async_connect(endpoint, done);
        });
        if (error_) {
            return;
        }
        error_ = run([&](auto done) {
            stream_->async_handshake(boost::asio::ssl::stream_base::client, done);
        });
    }

    const boost::system::error_code& error() const { return error_; }

    /// One GET on this connection (asking for keep-alive unless told not to): {status, body},
    /// or nullopt on any failure.
    std::optional<std::pair<int, std::string>> get(const std::string& target,
                                                   bool keep_alive = true) {
        namespace http = boost::beast::http;
        http::request<http::empty_body> request{http::verb::get, target, 11};
        request.set(http::field::host, "localhost");
        request.keep_alive(keep_alive);
        if (run([&](auto done) { http::async_write(*stream_, request, done); })) {
            return std::nullopt;
        }
        http::response<http::string_body> response;
        if (run([&](auto done) { http::async_read(*stream_, buffer_, response, done); })) {
            return std::nullopt;
        }
        return std::pair{response.result_int(), response.body()};
    }

    /// Reads on after a response: how the server ended the stream. asio::error::eof means a
    /// clean TLS close (close_notify); ssl::error::stream_truncated a bare TCP close.
    boost::system::error_code read_end() {
        std::array<char, 256> sink{};
        return run([&](auto done) { stream_->async_read_some(boost::asio::buffer(sink), done); });
    }

    /// The subject CN of the certificate the server presented.
    std::string server_name() {
        X509* cert = SSL_get1_peer_certificate(stream_->native_handle());
        if (cert == nullptr) {
            return {};
        }
        std::array<char, 256> cn{};
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn.data(),
                                          static_cast<int>(cn.size()));
        X509_free(cert);
        return n > 0 ? std::string(cn.data(), static_cast<std::size_t>(n)) : std::string{};
    }

private:
    /// Starts one operation and runs the loop until it completes or 5 s pass.
    template <class Start>
    boost::system::error_code run(Start start) {
        boost::system::error_code result = boost::asio::error::timed_out;
        boost::beast::get_lowest_layer(*stream_).expires_after(std::chrono::seconds{5});
        start([&result](boost::system::error_code ec, auto&&...) { result = ec; });
        ioc_.restart();
        ioc_.run();
        return result;
    }

    boost::asio::io_context ioc_;
    boost::asio::ssl::context context_;
    std::optional<boost::beast::ssl_stream<boost::beast::tcp_stream>> stream_;
    boost::beast::flat_buffer buffer_;
    boost::system::error_code error_;
};

}  // namespace aviary::net::test
