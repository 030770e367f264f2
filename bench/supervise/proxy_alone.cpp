// proxy_alone: net::ReverseProxy behind net::HttpServer and nothing else (no supervisor, no
// gate), so that the proxy's own cost per request can be counted where aviary supervise cannot
// run, e.g. under `valgrind --tool=callgrind` (which cannot follow the sidecar's
// clone(CLONE_VM | CLONE_VFORK) of its node). bench/supervise/proxy_cost.sh uses it.
//
//   proxy_alone LISTEN UPSTREAM_URL     e.g. proxy_alone 127.0.0.1:18004 http://127.0.0.1:18001
// Serves until SIGINT or SIGTERM.
#include <csignal>
#include <cstdio>
#include <functional>

#include "net/net.hpp"

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: proxy_alone LISTEN UPSTREAM_URL\n");
        return 2;
    }
    namespace net = aviary::net;
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // the server's threads inherit it
    std::signal(SIGPIPE, SIG_IGN);

    net::ReverseProxy proxy{net::ProxySettings{.upstream = argv[2], .via = "aviary-supervise"}};
    net::HttpServer server{
        net::ServerSettings{.listen = argv[1], .io_threads = 1, .blocking_threads = 1},
        [&proxy](net::Request&& request) -> net::asio::awaitable<net::Response> {
            co_return co_await proxy.forward(request);
        }};
    auto bound = server.start();
    if (!bound) {
        std::fprintf(stderr, "proxy_alone: %s\n", bound.error().message.c_str());
        return 1;
    }
    std::printf("proxy_alone: %s -> %s\n", bound->c_str(), argv[2]);
    std::fflush(stdout);
    int signal = 0;
    sigwait(&stop_signals, &signal);
    server.stop();
    return 0;
}
