#pragma once
// Private to src/net (and its tests): the server's OpenSSL context made from TlsServerSettings,
// and what a verified client certificate says about its holder.
#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "core/core.hpp"
#include "net/net.hpp"

struct ssl_st;

namespace aviary::net {

/// A server context: TLS 1.2 or later, the certificate chain and key of `tls`, and client
/// certificate verification when client_ca_file is set. Errors (kInvalidArgument) name the file
/// and OpenSSL's reason. Shared: connections keep the context they started with across a reload.
core::Result<std::shared_ptr<boost::asio::ssl::context>> make_server_tls_context(
    const TlsServerSettings& tls);

/// The subject CN of the peer's certificate when one was sent and verified; empty otherwise.
std::string verified_peer_identity(ssl_st* ssl);

}  // namespace aviary::net
