#include <openssl/evp.h>

#include <string>

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

std::string Sha256::bytes() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_DigestFinal_ex(native(context_.get()), digest, &size);
    EVP_DigestInit_ex(native(context_.get()), EVP_sha256(), nullptr);
    return std::string{reinterpret_cast<const char*>(digest), size};
}

std::string Sha256::hex() {
    auto digest = bytes();
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out(digest.size() * 2, '0');
    for (std::size_t i = 0; i < digest.size(); ++i) {
        auto byte = static_cast<unsigned char>(digest[i]);
        out[2 * i] = kDigits[byte >> 4];
        out[2 * i + 1] = kDigits[byte & 0xf];
    }
    return out;
}

core::Result<std::string> hmac_sha256_hex(std::string_view key, std::string_view message) {
    constexpr std::size_t kBlock = 64;  // SHA-256's block size
    auto hash = Sha256::make();
    if (!hash) {
        return hash.error();
    }
    std::string block{key};
    if (block.size() > kBlock) {
        hash->update(block);
        block = hash->bytes();
    }
    block.resize(kBlock, '\0');
    std::string inner_pad = block;
    std::string outer_pad = block;
    for (std::size_t i = 0; i < kBlock; ++i) {
        inner_pad[i] = static_cast<char>(inner_pad[i] ^ 0x36);
        outer_pad[i] = static_cast<char>(outer_pad[i] ^ 0x5c);
    }
    hash->update(inner_pad);
    hash->update(message);
    auto inner = hash->bytes();
    hash->update(outer_pad);
    hash->update(inner);
    return hash->hex();
}

}  // namespace aviary::net
