#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "net/net.hpp"
#include "support/test_certs.hpp"
#include "unit/net/raw_http.hpp"
#include "unit/net/tls_client.hpp"

namespace aviary::net {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using test::RawClient;
using test::TlsClient;
using test::TlsClientOptions;
using test::wait_until;

/// Answers with who the client proved to be (empty without a verified certificate).
struct IdentityHandler {
    asio::awaitable<Response> operator()(Request request) const {
        Response response;
        response.body = fmt::format("{} peer={}", request.path, request.peer_identity);
        co_return response;
    }
};

/// A private PKI in a temp dir, and the server's certificate and key copied to "live" paths a
/// test can overwrite before reload_tls().
class HttpServerTls : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               fmt::format("aviary-net-tls-{}-{}", ::getpid(),
                           ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        pki_ = aviary::test::make_test_pki(dir_.string());
        live_cert_ = (dir_ / "live.crt").string();
        live_key_ = (dir_ / "live.key").string();
        install(pki_.server_cert, pki_.server_key);
    }
    void TearDown() override {
        server_.reset();
        fs::remove_all(dir_);
    }

    void install(const std::string& cert, const std::string& key) {
        fs::copy_file(cert, live_cert_, fs::copy_options::overwrite_existing);
        fs::copy_file(key, live_key_, fs::copy_options::overwrite_existing);
    }

    ServerSettings settings() const {
        ServerSettings settings;
        settings.listen = "127.0.0.1:0";
        settings.read_timeout = 2s;
        settings.idle_timeout = 10s;
        settings.write_timeout = 2s;
        settings.shutdown_grace = 2s;
        settings.tls.cert_file = live_cert_;
        settings.tls.key_file = live_key_;
        return settings;
    }

    void start(ServerSettings settings) {
        server_ = std::make_unique<HttpServer>(std::move(settings), IdentityHandler{});
        auto bound = server_->start();
        ASSERT_TRUE(bound) << bound.error().message;
        address_ = *bound;
    }

    TlsClientOptions client_options() const { return {.ca_file = pki_.ca_cert}; }

    fs::path dir_;
    aviary::test::TestPki pki_;
    std::string live_cert_;
    std::string live_key_;
    std::unique_ptr<HttpServer> server_;
    std::string address_;
};

TEST_F(HttpServerTls, ServesARequestOverTls) {
    start(settings());
    TlsClient client{address_, client_options()};
    ASSERT_FALSE(client.error()) << client.error().message();
    auto response = client.get("/hello");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->first, 200);
    EXPECT_EQ(response->second, "/hello peer=");
    EXPECT_EQ(client.server_name(), "localhost");
    // Keep-alive works over TLS as over plain HTTP.
    auto again = client.get("/again");
    ASSERT_TRUE(again);
    EXPECT_EQ(again->second, "/again peer=");
    EXPECT_EQ(server_->stats().accepted, 1U);
}

TEST_F(HttpServerTls, EndsAConnectionCloseWithACloseNotify) {
    start(settings());
    TlsClient client{address_, client_options()};
    ASSERT_FALSE(client.error()) << client.error().message();
    auto response = client.get("/last", false);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->second, "/last peer=");
    EXPECT_EQ(client.read_end(), boost::asio::error::eof);
}

TEST_F(HttpServerTls, RefusesPlainHttpOnTheTlsPort) {
    start(settings());
    RawClient client{address_};
    ASSERT_TRUE(client.connected());
    client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(client.wait_closed());
    auto got = client.read_until([](const std::string&) { return false; }, 0ms);
    EXPECT_EQ(got.find("HTTP/1.1 200"), std::string::npos) << got;
    EXPECT_TRUE(wait_until([&] { return server_->stats().tls_handshake_failures == 1; }));
    EXPECT_EQ(server_->stats().requests, 0U);
}

TEST_F(HttpServerTls, ReloadServesTheNewCertificateAndKeepsOpenConnections) {
    start(settings());
    TlsClient before{address_, client_options()};
    ASSERT_FALSE(before.error()) << before.error().message();
    ASSERT_TRUE(before.get("/first"));
    EXPECT_EQ(before.server_name(), "localhost");

    auto [cert, key] = aviary::test::make_server_cert(pki_, dir_.string(), "renewed",
                                                      {"renewed.localhost", "localhost"});
    install(cert, key);
    auto reloaded = server_->reload_tls();
    ASSERT_TRUE(reloaded) << reloaded.error().message;

    TlsClient after{address_, client_options()};
    ASSERT_FALSE(after.error()) << after.error().message();
    EXPECT_EQ(after.server_name(), "renewed.localhost");
    auto fresh = after.get("/fresh");
    ASSERT_TRUE(fresh);
    EXPECT_EQ(fresh->first, 200);

    auto still = before.get("/still");
    ASSERT_TRUE(still);
    EXPECT_EQ(still->second, "/still peer=");
    EXPECT_EQ(server_->stats().accepted, 2U);
}

TEST_F(HttpServerTls, ReloadWithAMissingFileKeepsTheOldCertificate) {
    start(settings());
    fs::remove(live_key_);
    auto reloaded = server_->reload_tls();
    ASSERT_FALSE(reloaded);
    EXPECT_EQ(reloaded.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_EQ(reloaded.error().message, fmt::format("cannot load TLS private key \"{}\": No such "
                                                    "file or directory",
                                                    live_key_));

    TlsClient client{address_, client_options()};
    ASSERT_FALSE(client.error()) << client.error().message();
    EXPECT_EQ(client.server_name(), "localhost");
    auto response = client.get("/x");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->first, 200);
}

TEST_F(HttpServerTls, ReloadWhenTlsIsOffIsAnError) {
    auto plain = settings();
    plain.tls = {};
    start(plain);
    EXPECT_FALSE(server_->reload_tls());
}

TEST_F(HttpServerTls, StartFailsNamingAMissingCertificate) {
    auto bad = settings();
    bad.tls.cert_file = (dir_ / "nope.crt").string();
    HttpServer server{bad, IdentityHandler{}};
    auto bound = server.start();
    ASSERT_FALSE(bound);
    EXPECT_EQ(bound.error().message,
              fmt::format("cannot load TLS certificate \"{}\": No such file or directory",
                          bad.tls.cert_file));
}

TEST_F(HttpServerTls, StartFailsWhenTheKeyDoesNotMatchTheCertificate) {
    auto bad = settings();
    bad.tls.key_file = pki_.client_key;
    HttpServer server{bad, IdentityHandler{}};
    auto bound = server.start();
    ASSERT_FALSE(bound);
    EXPECT_NE(bound.error().message.find(pki_.client_key), std::string::npos)
        << bound.error().message;
    EXPECT_NE(bound.error().message.find("does not match"), std::string::npos)
        << bound.error().message;
}

TEST_F(HttpServerTls, StartFailsOnAFileThatIsNotACertificate) {
    auto bad = settings();
    bad.tls.cert_file = pki_.server_key;  // readable, but a key
    HttpServer server{bad, IdentityHandler{}};
    auto bound = server.start();
    ASSERT_FALSE(bound);
    EXPECT_TRUE(bound.error().message.starts_with(
        fmt::format("cannot load TLS certificate \"{}\": ", pki_.server_key)))
        << bound.error().message;
}

TEST_F(HttpServerTls, RequiredClientCertificateIsCheckedAndNamesThePeer) {
    auto strict = settings();
    strict.tls.client_ca_file = pki_.ca_cert;
    strict.tls.require_client_cert = true;
    start(strict);

    // Without a certificate: under TLS 1.3 the client may finish its side of the handshake
    // before the server refuses, so the refusal can surface on the first request instead.
    TlsClient anonymous{address_, client_options()};
    if (!anonymous.error()) {
        EXPECT_FALSE(anonymous.get("/anonymous"));
    }
    EXPECT_TRUE(wait_until([&] { return server_->stats().tls_handshake_failures == 1; }));

    auto options = client_options();
    options.cert_file = pki_.client_cert;
    options.key_file = pki_.client_key;
    TlsClient known{address_, options};
    ASSERT_FALSE(known.error()) << known.error().message();
    auto response = known.get("/who");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->first, 200);
    EXPECT_EQ(response->second, "/who peer=client-1");
    EXPECT_EQ(server_->stats().requests, 1U);
}

TEST_F(HttpServerTls, OptionalClientCertificateFromAnotherCaIsRefused) {
    auto optional = settings();
    optional.tls.client_ca_file = pki_.other_ca_cert;
    start(optional);

    TlsClient anonymous{address_, client_options()};
    ASSERT_FALSE(anonymous.error()) << anonymous.error().message();
    auto response = anonymous.get("/anonymous");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->second, "/anonymous peer=");

    auto options = client_options();
    options.cert_file = pki_.client_cert;  // signed by pki_.ca_cert, unknown to the server
    options.key_file = pki_.client_key;
    TlsClient unknown{address_, options};
    if (!unknown.error()) {
        EXPECT_FALSE(unknown.get("/unknown"));
    }
    EXPECT_TRUE(wait_until([&] { return server_->stats().tls_handshake_failures == 1; }));
}

}  // namespace
}  // namespace aviary::net
