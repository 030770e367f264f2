#pragma once
// Test support: loopback addresses and ports.
#include <netinet/in.h>

namespace aviary::test {

/// 127.0.0.1:`port`.
sockaddr_in loopback(int port);

/// A loopback port nothing listens on right now: TCP or UDP. It is picked below the kernel's
/// ephemeral range, so a later bind to port 0 (by this test or the binary it starts) is never
/// given it; another test choosing ports at the same time could still take it, so tests use it
/// at once.
int free_port(bool udp = false);

/// A loopback TCP port held by a listening socket until this is destroyed: a port on which
/// another listener's bind fails ("Address already in use").
class HeldPort {
public:
    HeldPort();
    ~HeldPort();
    HeldPort(const HeldPort&) = delete;
    HeldPort& operator=(const HeldPort&) = delete;

    int port() const { return port_; }

private:
    int fd_ = -1;
    int port_ = -1;
};

}  // namespace aviary::test
