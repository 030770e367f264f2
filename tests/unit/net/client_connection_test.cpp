#include "net/client_connection.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "net/net.hpp"
#include "support/test_certs.hpp"
#include "unit/net/raw_http.hpp"
#include "unit/net/tls_responder.hpp"

namespace aviary::net {
namespace {

using namespace std::chrono_literals;
using test::TlsResponder;

TEST(RedactUrl, DropsUserinfoAndQueryValues) {
    EXPECT_EQ(redact_url("https://admin:hunter2@grafana.example:3000/api/annotations?token=abc&"
                         "org=1#frag"),
              "https://grafana.example:3000/api/annotations?token=REDACTED&org=REDACTED");
}

TEST(RedactUrl, LeavesAUrlWithoutSecretsAlone) {
    EXPECT_EQ(redact_url("http://127.0.0.1:1337/healthz"), "http://127.0.0.1:1337/healthz");
    EXPECT_EQ(redact_url("http://[::1]:8080"), "http://[::1]:8080");
}

TEST(RedactUrl, RedactsABareQueryParameter) {
    EXPECT_EQ(redact_url("http://hooks.example/x?s3cr3t"), "http://hooks.example/x?REDACTED");
    EXPECT_EQ(redact_url("http://hooks.example/x?a=1&&b"),
              "http://hooks.example/x?a=REDACTED&&REDACTED");
}

TEST(RedactUrl, RedactsTextThatIsNotAUrl) {
    EXPECT_EQ(redact_url("not a url?key=value"), "not a url?key=REDACTED");
    EXPECT_EQ(redact_url("user:pw@host/path"), "user:pw@host/path");  // no scheme: no authority
    EXPECT_EQ(redact_url("http://user@host"), "http://host");
}

TEST(RedactUrl, HidesCredentialsInClientErrors) {
    ClientRequest request;
    request.url = "http://user:pw@127.0.0.1:1/x?token=abc";
    request.timeout = 2s;
    auto response = fetch_sync(request);
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().message.find("pw"), std::string::npos) << response.error().message;
    EXPECT_EQ(response.error().message.find("abc"), std::string::npos) << response.error().message;
    EXPECT_NE(response.error().message.find("http://127.0.0.1:1/x?token=REDACTED"),
              std::string::npos)
        << response.error().message;
}

/// A plain ClientConnection on `ioc`, connected to a peer that writes only when told to.
struct ConnectedPair {
    explicit ConnectedPair(asio::io_context& ioc)
        : acceptor(ioc, {asio::ip::make_address("127.0.0.1"), 0}),
          connection(ioc.get_executor(), nullptr) {
        connection.tcp().socket().connect(acceptor.local_endpoint());
        peer = acceptor.accept();
    }
    /// Starts a read on the connection's socket; `done` is set when it ends.
    void read() {
        connection.tcp().socket().async_read_some(
            asio::buffer(bytes),
            [this](const client::beast::error_code& ec, std::size_t) { done = ec; });
    }

    asio::ip::tcp::acceptor acceptor;
    client::ClientConnection connection;
    asio::ip::tcp::socket peer{acceptor.get_executor()};
    std::array<char, 16> bytes{};
    std::optional<client::beast::error_code> done;
};

TEST(ClientConnectionDeadline, CutsAPendingReadEvenWhenMovedEarlierThanTheArmedOne) {
    asio::io_context ioc;
    ConnectedPair pair{ioc};
    pair.connection.socket_deadline(client::Clock::now() + 1h);
    pair.connection.socket_deadline(client::Clock::now() + 20ms);  // sooner: armed anew
    pair.read();
    while (!pair.done && ioc.run_one() > 0) {
    }
    ASSERT_TRUE(pair.done);
    EXPECT_EQ(*pair.done, asio::error::operation_aborted);
    EXPECT_TRUE(pair.connection.timed_out());
}

TEST(ClientConnectionDeadline, AWaitThatEndsBeforeAMovedDeadlineWaitsOnForIt) {
    asio::io_context ioc;
    ConnectedPair pair{ioc};
    pair.connection.socket_deadline(client::Clock::now() + 10ms);
    pair.connection.socket_deadline(client::Clock::now() + 1h);  // later: the 10 ms wait stays
    pair.read();
    ioc.run_for(200ms);  // the 10 ms wait ends meanwhile and waits again, for the hour
    EXPECT_FALSE(pair.done) << pair.done->message();
    EXPECT_FALSE(pair.connection.timed_out());
    asio::write(pair.peer, asio::buffer(std::string_view{"x"}));
    while (!pair.done && ioc.run_one() > 0) {
    }
    ASSERT_TRUE(pair.done);
    EXPECT_FALSE(*pair.done) << pair.done->message();
}

TEST(ClientConnectionDeadline, HoldsTheLoopNoLongerThanTheConnectionIsOpen) {
    asio::io_context ioc;
    ConnectedPair pair{ioc};
    pair.connection.socket_deadline(client::Clock::now() + 1h);
    pair.connection.close();
    ioc.run_for(5s);
    EXPECT_TRUE(ioc.stopped()) << "the closed connection's deadline still holds the loop";
}

/// One PKI for the whole suite: openssl takes a while per certificate.
class ClientTlsTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        char pattern[] = "/tmp/aviary-tls-XXXXXX";
        dir_ = new std::string{::mkdtemp(pattern)};
        pki_ = new aviary::test::TestPki{aviary::test::make_test_pki(*dir_)};
        auto [cert, key] = aviary::test::make_server_cert(*pki_, *dir_, "other", {"other.example"});
        other_cert_ = new std::string{cert};
        other_key_ = new std::string{key};
    }
    static void TearDownTestSuite() {
        std::filesystem::remove_all(*dir_);
        delete dir_;
        delete pki_;
        delete other_cert_;
        delete other_key_;
    }

    static ClientRequest request_to(const std::string& host, std::uint16_t port) {
        ClientRequest request;
        request.url = fmt::format("https://{}:{}/whoami", host, port);
        request.timeout = 5s;
        request.tls = ClientTls{.ca_file = pki_->ca_cert};
        return request;
    }

    static inline std::string* dir_ = nullptr;
    static inline aviary::test::TestPki* pki_ = nullptr;
    static inline std::string* other_cert_ = nullptr;
    static inline std::string* other_key_ = nullptr;
};

TEST_F(ClientTlsTest, FetchesOverAVerifiedChainAndSendsTheHostAsSni) {
    TlsResponder server{{.cert = pki_->server_cert, .key = pki_->server_key}};
    auto response = fetch_sync(request_to("localhost", server.port()));
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "sni=localhost client=none");
}

TEST_F(ClientTlsTest, VerifiesAnIpLiteralAgainstTheCertificatesIpNames) {
    TlsResponder server{{.cert = pki_->server_cert, .key = pki_->server_key}};
    auto response = fetch_sync(request_to("127.0.0.1", server.port()));
    ASSERT_TRUE(response) << response.error().message;
    // SNI carries DNS names only.
    EXPECT_EQ(response->body, "sni= client=none");
}

TEST_F(ClientTlsTest, RefusesACertificateForAnotherHostNamingTheMismatch) {
    TlsResponder server{{.cert = *other_cert_, .key = *other_key_}};
    auto response = fetch_sync(request_to("localhost", server.port()));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, core::ErrorCode::kUnavailable);
    EXPECT_EQ(response.error().message,
              fmt::format("TLS handshake with localhost:{} failed: certificate does not match "
                          "host name \"localhost\"",
                          server.port()));
}

TEST_F(ClientTlsTest, ServerNameOverridesTheNameSentAndChecked) {
    TlsResponder server{{.cert = *other_cert_, .key = *other_key_}};
    auto request = request_to("127.0.0.1", server.port());
    request.tls->server_name = "other.example";
    auto response = fetch_sync(request);
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->body, "sni=other.example client=none");
}

TEST_F(ClientTlsTest, RefusesAnUnknownCaNamingTheIssuerProblem) {
    TlsResponder server{{.cert = pki_->server_cert, .key = pki_->server_key}};
    auto request = request_to("127.0.0.1", server.port());
    request.tls->ca_file = pki_->other_ca_cert;
    auto response = fetch_sync(request);
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, core::ErrorCode::kUnavailable);
    EXPECT_EQ(response.error().message,
              fmt::format("TLS handshake with 127.0.0.1:{} failed: unable to get local issuer "
                          "certificate (unknown CA)",
                          server.port()));
}

TEST_F(ClientTlsTest, RefusesAnExpiredCertificate) {
    TlsResponder server{{.cert = pki_->expired_cert, .key = pki_->expired_key}};
    auto response = fetch_sync(request_to("127.0.0.1", server.port()));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().message,
              fmt::format("TLS handshake with 127.0.0.1:{} failed: certificate has expired",
                          server.port()));
}

TEST_F(ClientTlsTest, SkipsVerificationWhenToldTo) {
    TlsResponder server{{.cert = pki_->expired_cert, .key = pki_->expired_key}};
    auto request = request_to("127.0.0.1", server.port());
    request.tls = ClientTls{.verify = false};
    auto response = fetch_sync(request);
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->status, 200);
}

TEST_F(ClientTlsTest, PresentsAClientCertificateToAServerThatRequiresOne) {
    TlsResponder server{
        {.cert = pki_->server_cert, .key = pki_->server_key, .client_ca = pki_->ca_cert}};
    auto request = request_to("localhost", server.port());
    request.tls->cert_file = pki_->client_cert;
    request.tls->key_file = pki_->client_key;
    auto response = fetch_sync(request);
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->body, "sni=localhost client=client-1");
}

TEST_F(ClientTlsTest, IsRefusedWithoutAClientCertificateWhereOneIsRequired) {
    TlsResponder server{
        {.cert = pki_->server_cert, .key = pki_->server_key, .client_ca = pki_->ca_cert}};
    auto response = fetch_sync(request_to("localhost", server.port()));
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, core::ErrorCode::kUnavailable);
    // TLS 1.3 finishes the client's side of the handshake first: the refusal arrives as an
    // alert on the first read.
    EXPECT_NE(response.error().message.find("certificate required"), std::string::npos)
        << response.error().message;
    EXPECT_TRUE(test::wait_until([&] { return server.failed_handshakes() == 1; }));
}

TEST_F(ClientTlsTest, ReportsAnUnreadableCaFile) {
    auto request = request_to("localhost", 1);
    request.tls->ca_file = *dir_ + "/missing.crt";
    auto response = fetch_sync(request);
    ASSERT_FALSE(response);
    EXPECT_EQ(response.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_NE(response.error().message.find("cannot load TLS CA file"), std::string::npos);
}

asio::awaitable<void> fetch_with(HttpClient& client,
                                 ClientRequest request,
                                 std::optional<core::Result<ClientResponse>>& out) {
    out.emplace(co_await client.fetch(std::move(request)));
}

TEST_F(ClientTlsTest, HttpClientVerifiesWithItsDefaultTlsSettings) {
    TlsResponder server{{.cert = pki_->server_cert, .key = pki_->server_key}};
    asio::io_context ioc;
    HttpClient client{ioc.get_executor(), ClientSettings{.tls = {.ca_file = pki_->ca_cert}}};
    auto request = request_to("localhost", server.port());
    request.tls.reset();
    std::optional<core::Result<ClientResponse>> response;
    asio::co_spawn(ioc, fetch_with(client, request, response), asio::detached);
    ioc.run();
    ASSERT_TRUE(response.has_value());
    ASSERT_TRUE(*response) << response->error().message;
    EXPECT_EQ((*response)->body, "sni=localhost client=none");

    // Without the CA the system store knows nothing of the test CA.
    HttpClient system_ca{ioc.get_executor(), ClientSettings{}};
    response.reset();
    asio::co_spawn(ioc, fetch_with(system_ca, request, response), asio::detached);
    ioc.restart();
    ioc.run();
    ASSERT_TRUE(response.has_value());
    ASSERT_FALSE(*response);
    EXPECT_NE(response->error().message.find("(unknown CA)"), std::string::npos)
        << response->error().message;
}

TEST_F(ClientTlsTest, FetchStreamSpeaksHttpsToo) {
    TlsResponder server{{.cert = pki_->server_cert, .key = pki_->server_key}};
    std::string received;
    auto response = fetch_stream(request_to("localhost", server.port()),
                                 [&](std::string_view chunk) { received += chunk; });
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(received, "sni=localhost client=none");
}

}  // namespace
}  // namespace aviary::net
