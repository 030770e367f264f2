// OpenSSL, loaded on first use rather than linked.
//
// Asio's TLS calls OpenSSL directly, so linking it made every process map libssl and libcrypto
// and apply their relocations at start: about 1.7 MB resident in a process that never speaks TLS
// (`aviary supervise` relaying a node's output, the CLI, `serve` without TLS). Instead this file
// defines each OpenSSL function the binary calls; the first call opens libssl.so.3 (which brings
// libcrypto.so.3) and every call goes through the address found there, as the PLT would.
//
// The definitions are checked against OpenSSL's own declarations: a signature that differs is a
// compile error. A function used that is not listed here is a link error naming it: add it to
// the table. The library is never unloaded. docs/architecture.md says which dependencies load on
// first use, and why.
#include "net/openssl.hpp"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <stdexcept>

// X(return type, name, (parameters), (arguments))
#define AVIARY_OPENSSL_FUNCTIONS(X)                                                                \
    X(long, BIO_ctrl, (BIO * bp, int cmd, long larg, void* parg), (bp, cmd, larg, parg))           \
    X(size_t, BIO_ctrl_pending, (BIO * b), (b))                                                    \
    X(int, BIO_free, (BIO * a), (a))                                                               \
    X(int, BIO_new_bio_pair, (BIO * *bio1, size_t writebuf1, BIO * *bio2, size_t writebuf2),       \
      (bio1, writebuf1, bio2, writebuf2))                                                          \
    X(BIO*, BIO_new_file, (const char* filename, const char* mode), (filename, mode))              \
    X(BIO*, BIO_new_mem_buf, (const void* buf, int len), (buf, len))                               \
    X(int, BIO_read, (BIO * b, void* data, int dlen), (b, data, dlen))                             \
    X(int, BIO_write, (BIO * b, const void* data, int dlen), (b, data, dlen))                      \
    X(void, CRYPTO_free, (void* ptr, const char* file, int line), (ptr, file, line))               \
    X(void, ERR_clear_error, (), ())                                                               \
    X(unsigned long, ERR_get_error, (), ())                                                        \
    X(const char*, ERR_lib_error_string, (unsigned long e), (e))                                   \
    X(unsigned long, ERR_peek_error, (), ())                                                       \
    X(unsigned long, ERR_peek_last_error, (), ())                                                  \
    X(const char*, ERR_reason_error_string, (unsigned long e), (e))                                \
    X(int, EVP_Digest,                                                                             \
      (const void* data, size_t count, unsigned char* md, unsigned int* size, const EVP_MD* type,  \
       ENGINE* impl),                                                                              \
      (data, count, md, size, type, impl))                                                         \
    X(int, EVP_DigestFinal_ex, (EVP_MD_CTX * ctx, unsigned char* md, unsigned int* s),             \
      (ctx, md, s))                                                                                \
    X(int, EVP_DigestInit_ex, (EVP_MD_CTX * ctx, const EVP_MD* type, ENGINE* impl),                \
      (ctx, type, impl))                                                                           \
    X(int, EVP_DigestUpdate, (EVP_MD_CTX * ctx, const void* d, size_t cnt), (ctx, d, cnt))         \
    X(void, EVP_MD_CTX_free, (EVP_MD_CTX * ctx), (ctx))                                            \
    X(EVP_MD_CTX*, EVP_MD_CTX_new, (), ())                                                         \
    X(void, EVP_PKEY_free, (EVP_PKEY * pkey), (pkey))                                              \
    X(int, EVP_PKEY_is_a, (const EVP_PKEY* pkey, const char* name), (pkey, name))                  \
    X(const EVP_MD*, EVP_sha256, (), ())                                                           \
    X(EVP_PKEY*, PEM_read_bio_Parameters, (BIO * bp, EVP_PKEY * *x), (bp, x))                      \
    X(EVP_PKEY*, PEM_read_bio_PrivateKey,                                                          \
      (BIO * out, EVP_PKEY * *x, pem_password_cb * cb, void* u), (out, x, cb, u))                  \
    X(X509*, PEM_read_bio_X509, (BIO * out, X509 * *x, pem_password_cb * cb, void* u),             \
      (out, x, cb, u))                                                                             \
    X(X509*, PEM_read_bio_X509_AUX, (BIO * out, X509 * *x, pem_password_cb * cb, void* u),         \
      (out, x, cb, u))                                                                             \
    X(int, SSL_CTX_check_private_key, (const SSL_CTX* ctx), (ctx))                                 \
    X(uint64_t, SSL_CTX_clear_options, (SSL_CTX * ctx, uint64_t op), (ctx, op))                    \
    X(long, SSL_CTX_ctrl, (SSL_CTX * ctx, int cmd, long larg, void* parg), (ctx, cmd, larg, parg)) \
    X(void, SSL_CTX_free, (SSL_CTX * a), (a))                                                      \
    X(X509_STORE*, SSL_CTX_get_cert_store, (const SSL_CTX* a), (a))                                \
    X(pem_password_cb*, SSL_CTX_get_default_passwd_cb, (SSL_CTX * ctx), (ctx))                     \
    X(void*, SSL_CTX_get_default_passwd_cb_userdata, (SSL_CTX * ctx), (ctx))                       \
    X(void*, SSL_CTX_get_ex_data, (const SSL_CTX* ssl, int idx), (ssl, idx))                       \
    X(SSL_verify_cb, SSL_CTX_get_verify_callback, (const SSL_CTX* ctx), (ctx))                     \
    X(int, SSL_CTX_get_verify_mode, (const SSL_CTX* ctx), (ctx))                                   \
    X(int, SSL_CTX_load_verify_locations, (SSL_CTX * ctx, const char* CAfile, const char* CApath), \
      (ctx, CAfile, CApath))                                                                       \
    X(SSL_CTX*, SSL_CTX_new, (const SSL_METHOD* meth), (meth))                                     \
    X(int, SSL_CTX_set0_tmp_dh_pkey, (SSL_CTX * ctx, EVP_PKEY * dhpkey), (ctx, dhpkey))            \
    X(void, SSL_CTX_set_client_CA_list, (SSL_CTX * ctx, STACK_OF(X509_NAME) * name_list),          \
      (ctx, name_list))                                                                            \
    X(void, SSL_CTX_set_default_passwd_cb, (SSL_CTX * ctx, pem_password_cb * cb), (ctx, cb))       \
    X(void, SSL_CTX_set_default_passwd_cb_userdata, (SSL_CTX * ctx, void* u), (ctx, u))            \
    X(int, SSL_CTX_set_default_verify_paths, (SSL_CTX * ctx), (ctx))                               \
    X(int, SSL_CTX_set_ex_data, (SSL_CTX * ssl, int idx, void* data), (ssl, idx, data))            \
    X(uint64_t, SSL_CTX_set_options, (SSL_CTX * ctx, uint64_t op), (ctx, op))                      \
    X(int, SSL_CTX_set_session_id_context,                                                         \
      (SSL_CTX * ctx, const unsigned char* sid_ctx, unsigned int sid_ctx_len),                     \
      (ctx, sid_ctx, sid_ctx_len))                                                                 \
    X(void, SSL_CTX_set_verify, (SSL_CTX * ctx, int mode, SSL_verify_cb callback),                 \
      (ctx, mode, callback))                                                                       \
    X(void, SSL_CTX_set_verify_depth, (SSL_CTX * ctx, int depth), (ctx, depth))                    \
    X(int, SSL_CTX_use_PrivateKey, (SSL_CTX * ctx, EVP_PKEY * pkey), (ctx, pkey))                  \
    X(int, SSL_CTX_use_PrivateKey_file, (SSL_CTX * ctx, const char* file, int type),               \
      (ctx, file, type))                                                                           \
    X(int, SSL_CTX_use_certificate, (SSL_CTX * ctx, X509 * x), (ctx, x))                           \
    X(int, SSL_CTX_use_certificate_ASN1, (SSL_CTX * ctx, int len, const unsigned char* d),         \
      (ctx, len, d))                                                                               \
    X(int, SSL_CTX_use_certificate_chain_file, (SSL_CTX * ctx, const char* file), (ctx, file))     \
    X(int, SSL_CTX_use_certificate_file, (SSL_CTX * ctx, const char* file, int type),              \
      (ctx, file, type))                                                                           \
    X(int, SSL_accept, (SSL * ssl), (ssl))                                                         \
    X(int, SSL_connect, (SSL * ssl), (ssl))                                                        \
    X(long, SSL_ctrl, (SSL * ssl, int cmd, long larg, void* parg), (ssl, cmd, larg, parg))         \
    X(void, SSL_free, (SSL * ssl), (ssl))                                                          \
    X(X509_VERIFY_PARAM*, SSL_get0_param, (SSL * ssl), (ssl))                                      \
    X(X509*, SSL_get1_peer_certificate, (const SSL* s), (s))                                       \
    X(SSL_CTX*, SSL_get_SSL_CTX, (const SSL* ssl), (ssl))                                          \
    X(int, SSL_get_error, (const SSL* s, int ret_code), (s, ret_code))                             \
    X(void*, SSL_get_ex_data, (const SSL* ssl, int idx), (ssl, idx))                               \
    X(int, SSL_get_ex_data_X509_STORE_CTX_idx, (), ())                                             \
    X(int, SSL_get_shutdown, (const SSL* ssl), (ssl))                                              \
    X(SSL_verify_cb, SSL_get_verify_callback, (const SSL* s), (s))                                 \
    X(int, SSL_get_verify_mode, (const SSL* s), (s))                                               \
    X(long, SSL_get_verify_result, (const SSL* ssl), (ssl))                                        \
    X(STACK_OF(X509_NAME)*, SSL_load_client_CA_file, (const char* file), (file))                   \
    X(SSL*, SSL_new, (SSL_CTX * ctx), (ctx))                                                       \
    X(int, SSL_read, (SSL * ssl, void* buf, int num), (ssl, buf, num))                             \
    X(void, SSL_set_bio, (SSL * s, BIO * rbio, BIO * wbio), (s, rbio, wbio))                       \
    X(int, SSL_set_ex_data, (SSL * ssl, int idx, void* data), (ssl, idx, data))                    \
    X(void, SSL_set_verify, (SSL * s, int mode, SSL_verify_cb callback), (s, mode, callback))      \
    X(void, SSL_set_verify_depth, (SSL * s, int depth), (s, depth))                                \
    X(int, SSL_shutdown, (SSL * s), (s))                                                           \
    X(int, SSL_write, (SSL * ssl, const void* buf, int num), (ssl, buf, num))                      \
    X(const SSL_METHOD*, TLS_client_method, (), ())                                                \
    X(const SSL_METHOD*, TLS_method, (), ())                                                       \
    X(const SSL_METHOD*, TLS_server_method, (), ())                                                \
    X(int, X509_NAME_get_text_by_NID, (const X509_NAME* name, int nid, char* buf, int len),        \
      (name, nid, buf, len))                                                                       \
    X(X509*, X509_STORE_CTX_get_current_cert, (const X509_STORE_CTX* ctx), (ctx))                  \
    X(int, X509_STORE_CTX_get_error_depth, (const X509_STORE_CTX* ctx), (ctx))                     \
    X(void*, X509_STORE_CTX_get_ex_data, (const X509_STORE_CTX* ctx, int idx), (ctx, idx))         \
    X(int, X509_STORE_add_cert, (X509_STORE * ctx, X509 * x), (ctx, x))                            \
    X(int, X509_VERIFY_PARAM_set1_host,                                                            \
      (X509_VERIFY_PARAM * param, const char* name, size_t namelen), (param, name, namelen))       \
    X(int, X509_VERIFY_PARAM_set1_ip_asc, (X509_VERIFY_PARAM * param, const char* ipasc),          \
      (param, ipasc))                                                                              \
    X(void, X509_VERIFY_PARAM_set_hostflags, (X509_VERIFY_PARAM * param, unsigned int flags),      \
      (param, flags))                                                                              \
    X(int, X509_check_host,                                                                        \
      (X509 * x, const char* chk, size_t chklen, unsigned int flags, char** peername),             \
      (x, chk, chklen, flags, peername))                                                           \
    X(int, X509_check_ip_asc, (X509 * x, const char* ipasc, unsigned int flags),                   \
      (x, ipasc, flags))                                                                           \
    X(void, X509_free, (X509 * a), (a))                                                            \
    X(X509_NAME*, X509_get_subject_name, (const X509* a), (a))                                     \
    X(const char*, X509_verify_cert_error_string, (long n), (n))                                   \
    X(EVP_PKEY*, d2i_PrivateKey_bio, (BIO * bp, EVP_PKEY * *a), (bp, a))

namespace aviary::net {
namespace {

constexpr const char* kSoname = "libssl.so.3";

struct OpenSsl {
#define AVIARY_OPENSSL_MEMBER(ret, name, params, args) decltype(&::name) name = nullptr;
    AVIARY_OPENSSL_FUNCTIONS(AVIARY_OPENSSL_MEMBER)
#undef AVIARY_OPENSSL_MEMBER
};

/// Opens libssl once per process; later calls return the first outcome.
const core::Result<OpenSsl>& load() {
    static const core::Result<OpenSsl> loaded = []() -> core::Result<OpenSsl> {
        OpenSsl lib;
#define AVIARY_OPENSSL_SYMBOL(ret, name, params, args) core::LibrarySymbol{#name, &lib.name},
        auto opened = core::open_library(kSoname, "TLS", "libssl3",
                                         {AVIARY_OPENSSL_FUNCTIONS(AVIARY_OPENSSL_SYMBOL)},
                                         core::ErrorCode::kUnavailable);
#undef AVIARY_OPENSSL_SYMBOL
        if (!opened) {
            return opened.error();
        }
        return lib;
    }();
    return loaded;
}

/// The loaded functions. Code that can report an error calls load_openssl() first; past that,
/// a missing library can only be met here, and is thrown.
const OpenSsl& openssl() {
    const auto& loaded = load();
    if (!loaded) {
        throw std::runtime_error(loaded.error().message);
    }
    return *loaded;
}

}  // namespace

core::Result<void> load_openssl() {
    const auto& loaded = load();
    if (!loaded) {
        return loaded.error();
    }
    return {};
}

}  // namespace aviary::net

#define AVIARY_OPENSSL_FORWARD(ret, name, params, args) \
    extern "C" ret name params {                        \
        return aviary::net::openssl().name args;        \
    }
AVIARY_OPENSSL_FUNCTIONS(AVIARY_OPENSSL_FORWARD)
#undef AVIARY_OPENSSL_FORWARD
