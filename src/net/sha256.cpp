#include <openssl/evp.h>

#include "net/net.hpp"
#include "net/openssl.hpp"

namespace aviary::net {

// The public type is opaque; OpenSSL's context stands behind it.
struct Sha256::Context {};

namespace {

EVP_MD_CTX* native(Sha256::Context* context) {
    return reinterpret_cast<EVP_MD_CTX*>(context);
}

void free_context(Sha256::Context* context) {
    EVP_MD_CTX_free(native(context));
}

}  // namespace

core::Result<Sha256> Sha256::make() {
    if (auto loaded = load_openssl(); !loaded) {
        return loaded.error();
    }
    EVP_MD_CTX* context = EVP_MD_CTX_new();
    if (context == nullptr || EVP_DigestInit_ex(context, EVP_sha256(), nullptr) != 1) {
        EVP_MD_CTX_free(context);
        return core::Error{core::ErrorCode::kInternal, "cannot start a SHA-256 digest"};
    }
    return Sha256{std::unique_ptr<Context, void (*)(Context*)>{reinterpret_cast<Context*>(context),
                                                               free_context}};
}

Sha256::Sha256(std::unique_ptr<Context, void (*)(Context*)> context)
    : context_(std::move(context)) {}
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;
Sha256::~Sha256() = default;

void Sha256::update(const void* data, std::size_t size) {
    EVP_DigestUpdate(native(context_.get()), data, size);
}

std::string Sha256::hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_DigestFinal_ex(native(context_.get()), digest, &size);
    EVP_DigestInit_ex(native(context_.get()), EVP_sha256(), nullptr);
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out(std::size_t{size} * 2, '0');
    for (unsigned int i = 0; i < size; ++i) {
        out[2 * i] = kDigits[digest[i] >> 4];
        out[2 * i + 1] = kDigits[digest[i] & 0xf];
    }
    return out;
}

}  // namespace aviary::net
