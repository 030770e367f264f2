#include "support/ports.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <random>

namespace aviary::test {

sockaddr_in loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

namespace {

/// The start of the kernel's ephemeral range ("32768 60999" by default): the ports a bind to port 0
/// is given. free_port picks below it, so a listener that asks for port 0 (a sidecar's proxy, a
/// server under test) can never be handed the port a test picked for something else.
int ephemeral_low() {
    std::ifstream in{"/proc/sys/net/ipv4/ip_local_port_range"};
    int low = 32768;
    in >> low;
    return low;
}

/// Binds a loopback socket to `port` (0: the kernel picks) and closes it: the port it had, or
/// -1 when the bind failed.
int bind_and_close(int port, bool udp) {
    int fd = ::socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    auto addr = loopback(port);
    socklen_t len = sizeof addr;
    int bound = -1;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
        bound = ntohs(addr.sin_port);
    }
    ::close(fd);
    return bound;
}

}  // namespace

int free_port(bool udp) {
    constexpr int lowest = 10000;
    static const int span = ephemeral_low() - lowest;
    if (span < 1000) {
        return bind_and_close(0, udp);  // no room below the ephemeral range on this host
    }
    // Each process walks the range from its own random start, so tests run side by side
    // (ctest -j) rarely try the same port, and one process never hands out a port twice
    // until it has walked the whole range.
    static std::atomic<unsigned> next{std::random_device{}()};
    for (int tries = 0; tries < 200; ++tries) {
        int port = lowest + static_cast<int>(next.fetch_add(1) % static_cast<unsigned>(span));
        if (bind_and_close(port, udp) == port) {
            return port;
        }
    }
    return bind_and_close(0, udp);
}

HeldPort::HeldPort() : fd_{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)} {
    auto addr = loopback(0);
    socklen_t len = sizeof addr;
    if (fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::listen(fd_, 1) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
        port_ = ntohs(addr.sin_port);
    }
}

HeldPort::~HeldPort() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

}  // namespace aviary::test
