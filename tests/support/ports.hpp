#pragma once
// Test support: loopback addresses and ports.
#include <netinet/in.h>

namespace aviary::test {

/// 127.0.0.1:`port`.
sockaddr_in loopback(int port);

/// A loopback port nothing listens on right now (bound to port 0 and closed): TCP or UDP.
/// Another process could take it before the caller does; tests use it at once.
int free_port(bool udp = false);

}  // namespace aviary::test
