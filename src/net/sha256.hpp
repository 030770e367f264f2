#pragma once
// SHA-256 over data that arrives in pieces (a file as it is copied), through OpenSSL, which is
// opened on first use (docs/architecture.md, "Libraries loaded on first use").
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "core/core.hpp"

namespace aviary::net {

class Sha256 {
public:
    /// kUnavailable when OpenSSL cannot be opened (the message names the library).
    static core::Result<Sha256> make();
    Sha256(Sha256&&) noexcept;
    Sha256& operator=(Sha256&&) noexcept;
    ~Sha256();

    void update(const void* data, std::size_t size);
    void update(std::string_view data) { update(data.data(), data.size()); }
    /// The digest of everything given so far, as 64 lowercase hex digits; starts over.
    std::string hex();

    struct Context;  ///< OpenSSL's, opaque here

private:
    explicit Sha256(std::unique_ptr<Context, void (*)(Context*)> context);
    std::unique_ptr<Context, void (*)(Context*)> context_;
};

}  // namespace aviary::net
