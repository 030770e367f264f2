// serve over TLS through the real binary: server.tls with certificates made by the openssl
// command for each test. A client that trusts the CA gets answers on every surface (health,
// JSON-RPC, REST); one that does not, or that asks for another name, is refused with the
// reason; plain HTTP on the TLS port gets no answer; SIGHUP swaps the certificate in place,
// and a reload that cannot read the new files keeps the old one. Grafana annotations reach a
// Grafana served over HTTPS with a private CA.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>

#include "cli_support.hpp"
#include "rpc_helpers.hpp"
#include "support/fake_grafana.hpp"
#include "support/test_certs.hpp"

namespace aviary::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

/// The config's certificate and key are copies at fixed paths, so a test can replace them
/// before a SIGHUP as an operator (or cert-manager) would.
class ServeOverTls : public ::testing::Test {
protected:
    void SetUp() override {
        pki_ = make_test_pki(certs_.path());
        auto [cert, key] =
            make_server_cert(pki_, certs_.path(), "first", {"first.aviary.test", "127.0.0.1"});
        install(cert, key);
    }

    /// Copies `cert` and `key` to where the config points.
    void install(const std::string& cert, const std::string& key) {
        fs::copy_file(cert, cert_path(), fs::copy_options::overwrite_existing);
        fs::copy_file(key, key_path(), fs::copy_options::overwrite_existing);
    }
    std::string cert_path() const { return certs_.path() + "/serve.crt"; }
    std::string key_path() const { return certs_.path() + "/serve.key"; }

    std::unique_ptr<ServerProcess> serve(std::string extra = {}) {
        // test_config() ends inside `server:`.
        auto config =
            test_config() + fmt::format(
                                "  tls:\n    cert_file: {}\n    key_file: {}\n"
                                "drivers:\n  sim: {{block_interval: 50ms, sync_blocks: 1}}\n{}",
                                cert_path(), key_path(), extra);
        auto server = std::make_unique<ServerProcess>(config);
        server->use_tls(trusting(pki_.ca_cert));
        EXPECT_TRUE(server->start()) << server->log();
        return server;
    }

    static net::ClientTls trusting(std::string ca_file, std::string server_name = {}) {
        net::ClientTls tls;
        tls.ca_file = std::move(ca_file);
        tls.server_name = std::move(server_name);
        return tls;
    }

    /// GET /healthz over https with `tls`.
    static core::Result<net::ClientResponse> health(const ServerProcess& server,
                                                    net::ClientTls tls) {
        net::ClientRequest request;
        request.url = fmt::format("https://{}/healthz", server.address());
        request.tls = std::move(tls);
        request.timeout = 10s;
        return net::fetch_sync(std::move(request));
    }

    TempDir certs_;
    TestPki pki_;
};

TEST_F(ServeOverTls, EverySurfaceAnswersAClientThatTrustsTheCa) {
    auto server = serve();
    // The log is written in batches: wait for the line rather than expect it at once.
    EXPECT_TRUE(wait_until([&] {
        return server->log().find("serving address=https://") != std::string::npos;
    })) << server->log();

    auto healthz = server->get("/healthz");
    ASSERT_TRUE(healthz) << healthz.error().message;
    EXPECT_EQ(healthz->status, 200);

    auto status = server->post_json("/", rpc_body("TweetyService.Status", "{}"));
    ASSERT_TRUE(status) << status.error().message;
    EXPECT_EQ(status->status, 200) << status->body;
    auto reply = json::parse(status->body);
    ASSERT_TRUE(reply.as_object().contains("result")) << status->body;

    auto nodes = server->get("/api/v1/nodes");
    ASSERT_TRUE(nodes) << nodes.error().message;
    EXPECT_EQ(nodes->status, 200);
    EXPECT_NE(nodes->body.find("lotus-0"), std::string::npos) << nodes->body;
}

TEST_F(ServeOverTls, AClientThatDoesNotTrustTheCaOrAsksForAnotherNameIsRefused) {
    auto server = serve();
    auto unknown = health(*server, trusting(pki_.other_ca_cert));
    ASSERT_FALSE(unknown);
    EXPECT_NE(unknown.error().message.find("unknown CA"), std::string::npos)
        << unknown.error().message;

    auto wrong_name = health(*server, trusting(pki_.ca_cert, "second.aviary.test"));
    ASSERT_FALSE(wrong_name);
    EXPECT_NE(wrong_name.error().message.find("does not match host name \"second.aviary.test\""),
              std::string::npos)
        << wrong_name.error().message;

    // Plain HTTP on the TLS port: the handshake fails and nothing is answered in clear.
    auto plain = raw_exchange(server->address(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 5s);
    EXPECT_EQ(plain.find("HTTP/1.1 200"), std::string::npos) << plain;

    // None of it hurt the server.
    auto healthz = server->get("/healthz");
    ASSERT_TRUE(healthz) << healthz.error().message;
    EXPECT_EQ(healthz->status, 200);
}

TEST_F(ServeOverTls, TheCliSpeaksHttpsWithTheCaItIsGiven) {
    auto server = serve();
    auto trusted =
        run_aviary(server->url(""), "--ca-file " + pki_.ca_cert + " nodes --json", certs_.path());
    EXPECT_EQ(trusted.status, 0) << trusted.err;
    EXPECT_NE(trusted.out.find("lotus-0"), std::string::npos) << trusted.out;

    // Without it the system's store is used, which has never heard of the test CA.
    auto untrusted = run_aviary(server->url(""), "nodes", certs_.path());
    EXPECT_EQ(untrusted.status, 3) << untrusted.out << untrusted.err;
    EXPECT_NE(untrusted.err.find("unknown CA"), std::string::npos) << untrusted.err;
}

TEST_F(ServeOverTls, SighupServesTheReplacedCertificateAndABrokenOneKeepsTheOld) {
    auto server = serve();
    auto as = [&](std::string name) { return health(*server, trusting(pki_.ca_cert, name)); };
    ASSERT_TRUE(as("first.aviary.test"));

    auto [cert, key] =
        make_server_cert(pki_, certs_.path(), "second", {"second.aviary.test", "127.0.0.1"});
    install(cert, key);
    server->send_signal(SIGHUP);
    ASSERT_TRUE(wait_until([&] { return bool(as("second.aviary.test")); })) << server->log();
    EXPECT_FALSE(as("first.aviary.test")) << "the old certificate is no longer served";
    EXPECT_TRUE(wait_until([&] { return server->log().find("tls reloaded") != std::string::npos; }))
        << server->log();

    // A key that is not a key: the reload fails loudly and the served certificate stays.
    std::ofstream{key_path(), std::ios::trunc} << "not a key\n";
    server->send_signal(SIGHUP);
    ASSERT_TRUE(wait_until([&] {
        return server->log().find("tls reload failed") != std::string::npos;
    })) << server->log();
    auto still = as("second.aviary.test");
    ASSERT_TRUE(still) << still.error().message;
    EXPECT_EQ(still->status, 200);
    EXPECT_TRUE(server->running());
    EXPECT_EQ(server->stop(), 0);
}

TEST_F(ServeOverTls, AnnotationsReachAGrafanaServedOverHttpsWithAPrivateCa) {
    FakeGrafana grafana{"glsa_tls_token"};
    auto [cert, key] = make_server_cert(pki_, certs_.path(), "grafana", {"127.0.0.1"});
    grafana.serve_tls(cert, key);
    ASSERT_TRUE(grafana.start());
    ASSERT_TRUE(grafana.url().starts_with("https://"));
    std::ofstream{certs_.path() + "/grafana.token"} << "glsa_tls_token\n";
    auto server = serve(fmt::format(R"(notify:
  grafana:
    url: {}
    token_file: {}/grafana.token
    tls: {{ca_file: {}}}
    poll: 50ms
)",
                                    grafana.url(), certs_.path(), pki_.ca_cert));

    auto reply = call_waiting(*server, "TweetyService.Upgrade",
                              R"({"ReleaseName": "lotus-0", "ImageTag": "v9.9.9", "Owner": "anton",
                          "Wait": true})");
    ASSERT_TRUE(reply.contains("result")) << json::serialize(reply);
    auto job = str(reply.at("result").at("JobID"));
    ASSERT_TRUE(wait_until([&] { return grafana.tagged("outcome:succeeded").size() == 1; }))
        << server->log();
    auto held = grafana.tagged("job:" + job);
    ASSERT_EQ(held.size(), 1u);
    EXPECT_EQ(grafana.requests("POST").at(0).authorization, "Bearer glsa_tls_token");
}

}  // namespace
}  // namespace aviary::test
