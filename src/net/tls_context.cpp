#include "net/tls_context.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509err.h>

#include <array>
#include <boost/asio/ssl/error.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string_view>

#include "net/openssl.hpp"

namespace aviary::net {
namespace {

namespace ssl = boost::asio::ssl;

// Session resumption with client verification needs a context id, or OpenSSL fails the
// resumed handshake ("session id context uninitialized").
constexpr std::string_view kSessionIdContext = "aviary";

core::Error bad_file(std::string_view what, const std::string& path, std::string_view why) {
    return core::Error{core::ErrorCode::kInvalidArgument,
                       fmt::format("cannot load TLS {} \"{}\": {}", what, path, why)};
}

/// OpenSSL's messages for a missing file are vague ("system lib"): say what the OS says first.
std::optional<core::Error> check_readable(std::string_view what, const std::string& path) {
    std::FILE* file = std::fopen(path.c_str(), "rb");
    if (file == nullptr) {
        return bad_file(what, path, std::strerror(errno));
    }
    std::fclose(file);
    return std::nullopt;
}

std::string ssl_reason(const boost::system::error_code& ec) {
    // Asio leaves the rest of OpenSSL's queue behind; the next call must not see it.
    ERR_clear_error();
    return ec.message();
}

core::Error mismatch(const TlsServerSettings& tls) {
    return bad_file("private key", tls.key_file,
                    fmt::format("it does not match the certificate \"{}\"", tls.cert_file));
}

std::optional<core::Error> load_identity(ssl::context& context, const TlsServerSettings& tls) {
    if (auto unreadable = check_readable("certificate", tls.cert_file)) {
        return unreadable;
    }
    if (auto unreadable = check_readable("private key", tls.key_file)) {
        return unreadable;
    }
    boost::system::error_code ec;
    context.use_certificate_chain_file(tls.cert_file, ec);
    if (ec) {
        return bad_file("certificate", tls.cert_file, ssl_reason(ec));
    }
    context.use_private_key_file(tls.key_file, ssl::context::pem, ec);
    if (ec && ec.category() == boost::asio::error::get_ssl_category() &&
        ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == X509_R_KEY_VALUES_MISMATCH) {
        ERR_clear_error();
        return mismatch(tls);
    }
    if (ec) {
        return bad_file("private key", tls.key_file, ssl_reason(ec));
    }
    if (SSL_CTX_check_private_key(context.native_handle()) != 1) {
        ERR_clear_error();
        return mismatch(tls);
    }
    return std::nullopt;
}

std::optional<core::Error> load_client_ca(ssl::context& context, const TlsServerSettings& tls) {
    if (auto unreadable = check_readable("client CA", tls.client_ca_file)) {
        return unreadable;
    }
    boost::system::error_code ec;
    context.load_verify_file(tls.client_ca_file, ec);
    if (ec) {
        return bad_file("client CA", tls.client_ca_file, ssl_reason(ec));
    }
    // Tells clients which CAs we accept, so one holding several certificates picks the right one.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.client_ca_file.c_str())) {
        SSL_CTX_set_client_CA_list(context.native_handle(), names);
    }
    ERR_clear_error();
    auto mode = ssl::verify_peer;
    if (tls.require_client_cert) {
        mode |= ssl::verify_fail_if_no_peer_cert;
    }
    context.set_verify_mode(mode, ec);
    return std::nullopt;
}

}  // namespace

core::Result<std::shared_ptr<ssl::context>> make_server_tls_context(const TlsServerSettings& tls) {
    if (tls.key_file.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("TLS certificate \"{}\" has no key_file", tls.cert_file)};
    }
    if (tls.require_client_cert && tls.client_ca_file.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           "require_client_cert needs client_ca_file to verify them against"};
    }
    if (auto opened = load_openssl(); !opened) {
        return opened.error();
    }
    auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
    SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
    context->set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                         ssl::context::single_dh_use);
    SSL_CTX_set_session_id_context(context->native_handle(),
                                   reinterpret_cast<const unsigned char*>(kSessionIdContext.data()),
                                   static_cast<unsigned>(kSessionIdContext.size()));
    if (auto failed = load_identity(*context, tls)) {
        return *failed;
    }
    if (!tls.client_ca_file.empty()) {
        if (auto failed = load_client_ca(*context, tls)) {
            return *failed;
        }
    }
    return context;
}

std::string verified_peer_identity(ssl_st* ssl) {
    X509* cert = SSL_get1_peer_certificate(ssl);
    if (cert == nullptr) {
        return {};
    }
    std::string identity;
    if (SSL_get_verify_result(ssl) == X509_V_OK) {
        std::array<char, 256> cn{};
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn.data(),
                                          static_cast<int>(cn.size()));
        if (n > 0) {
            identity.assign(cn.data(), static_cast<std::size_t>(n));
        }
    }
    X509_free(cert);
    return identity;
}

}  // namespace aviary::net
