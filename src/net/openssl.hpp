#pragma once
// Private to src/net (and its tests): OpenSSL is opened on first use, not linked (openssl.cpp).

#include "core/core.hpp"

namespace aviary::net {

/// Opens libssl.so.3 if it is not open yet. An error (kUnavailable) names the library and why
/// it could not be opened; call this before making a TLS context to report it cleanly.
core::Result<void> load_openssl();

}  // namespace aviary::net
