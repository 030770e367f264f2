// `aviary sim-node`: a simulated chain node, one process per demo node (the sim driver runs it).
//
// Threads: the main thread runs an io_context with the block timer, the signal set and the
// parent watch; net::HttpServer answers /status on its own I/O thread. The two share only
// Chain's atomics.
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "drivers/drivers.hpp"
#include "drivers/sim_files.hpp"

namespace aviary::drivers {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kParentPoll = 100ms;
constexpr int kBadArgs = 2;

struct NodeOptions {
    std::string data_dir;
    std::string version;
    std::string port_file;
    core::Millis block_interval{500};
    int sync_blocks = 2;
    std::string import;
    std::optional<pid_t> parent_pid;
    std::string listen = "127.0.0.1:0";
};

core::Error bad_option(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

core::Result<void> apply_number(std::string_view name, const std::string& value, NodeOptions& out) {
    auto number = sim::parse_count(value);
    if (name == "--sync-blocks") {
        if (!number || *number > 1'000'000) {
            return bad_option(
                fmt::format("--sync-blocks: expected a whole number, got \"{}\"", value));
        }
        out.sync_blocks = static_cast<int>(*number);
        return {};
    }
    if (!number || *number == 0 || *number > 4'194'304) {
        return bad_option(fmt::format("--parent-pid: expected a process id, got \"{}\"", value));
    }
    out.parent_pid = static_cast<pid_t>(*number);
    return {};
}

core::Result<void> apply_option(std::string_view name, const std::string& value, NodeOptions& out) {
    if (name == "--sync-blocks" || name == "--parent-pid") {
        return apply_number(name, value, out);
    }
    if (name == "--block-interval") {
        auto interval = core::parse_duration(value);
        if (!interval || interval->count() <= 0) {
            return bad_option(fmt::format(
                "--block-interval: expected a duration like \"500ms\", got \"{}\"", value));
        }
        out.block_interval = *interval;
        return {};
    }
    std::string* target = nullptr;
    if (name == "--data-dir") {
        target = &out.data_dir;
    } else if (name == "--version") {
        target = &out.version;
    } else if (name == "--port-file") {
        target = &out.port_file;
    } else if (name == "--import") {
        target = &out.import;
    } else if (name == "--listen") {
        target = &out.listen;
    } else {
        return bad_option(fmt::format("unknown option {}", name));
    }
    if (value.empty()) {
        return bad_option(fmt::format("{}: expected a value", name));
    }
    *target = value;
    return {};
}

core::Result<NodeOptions> parse_options(const std::vector<std::string>& args) {
    NodeOptions options;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string_view arg = args[i];
        if (!arg.starts_with("--")) {
            return bad_option(fmt::format("unexpected argument \"{}\"", arg));
        }
        const auto equals = arg.find('=');
        const auto name = arg.substr(0, equals);
        std::string value;
        if (equals != std::string_view::npos) {
            value = arg.substr(equals + 1);
        } else if (i + 1 < args.size()) {
            value = args[++i];
        } else {
            return bad_option(fmt::format("{}: expected a value", name));
        }
        if (auto applied = apply_option(name, value, options); !applied) {
            return applied.error();
        }
    }
    if (options.data_dir.empty()) {
        return bad_option("--data-dir is required");
    }
    if (options.version.empty()) {
        return bad_option("--version is required");
    }
    if (options.port_file.empty()) {
        return bad_option("--port-file is required");
    }
    return options;
}

// What the status API shows; written by the block loop, read by the server's I/O thread.
struct Chain {
    std::string version;
    std::atomic<std::int64_t> height{0};
    std::atomic<bool> syncing{true};
};

net::Response json_response(const Chain& chain) {
    boost::json::object body;
    body["version"] = chain.version;
    body["height"] = chain.height.load();
    body["syncing"] = chain.syncing.load();
    return net::Response{.content_type = "application/json", .body = boost::json::serialize(body)};
}

asio::awaitable<net::Response> serve_request(const Chain* chain, net::Request request) {
    if (request.path != "/status" && request.path != "/healthz") {
        co_return net::Response{.status = 404, .body = "not found\n"};
    }
    if (request.method != "GET" && request.method != "HEAD") {
        co_return net::Response{.status = 405, .body = "method not allowed\n"};
    }
    if (request.path == "/healthz") {
        co_return net::Response{.body = "ok\n"};
    }
    co_return json_response(*chain);
}

class SimNode {
public:
    explicit SimNode(NodeOptions options)
        : options_(std::move(options)),
          data_dir_(options_.data_dir),
          signals_(ioc_, SIGTERM, SIGINT),
          block_timer_(ioc_),
          parent_timer_(ioc_) {
        chain_.version = options_.version;
    }

    int run();

private:
    core::Result<void> load_height();
    core::Result<std::string> serve(net::HttpServer& server);
    asio::awaitable<void> produce_blocks();
    asio::awaitable<void> watch_signals();
    asio::awaitable<void> watch_parent();
    asio::awaitable<void> poll_parent(pid_t parent);
    void finish(int code);

    NodeOptions options_;
    fs::path data_dir_;
    Chain chain_;
    // The io_context outlives everything that waits on it (declared first, destroyed last).
    asio::io_context ioc_;
    asio::signal_set signals_;
    asio::steady_timer block_timer_;
    asio::steady_timer parent_timer_;
    std::optional<asio::posix::stream_descriptor> parent_fd_;
    bool finishing_ = false;
    int exit_code_ = 0;
};

int fail(const std::string& message) {
    std::fprintf(stderr, "sim-node: %s\n", message.c_str());
    return 1;
}

int SimNode::run() {
    // Signals first: from here a SIGTERM (the parent-death one too) is a clean exit, not a kill.
    if (options_.parent_pid) {
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    }
    // Nobody reading our stdout any more (the driver gone) must not kill us mid-write.
    ::signal(SIGPIPE, SIG_IGN);
    std::error_code ec;
    fs::create_directories(data_dir_, ec);
    if (ec) {
        return fail(fmt::format("cannot create {}: {}", data_dir_.string(), ec.message()));
    }
    if (auto loaded = load_height(); !loaded) {
        return fail(loaded.error().message);
    }
    chain_.syncing = options_.sync_blocks > 0;
    auto server_settings = net::ServerSettings{.listen = options_.listen,
                                               .io_threads = 1,
                                               .read_timeout = 5s,
                                               .idle_timeout = 5s,
                                               .write_timeout = 5s,
                                               .max_connections = 64,
                                               .shutdown_grace = 1s};
    const Chain* chain = &chain_;
    net::HttpServer server{server_settings, [chain](net::Request request) {
                               return serve_request(chain, std::move(request));
                           }};
    auto port = serve(server);
    if (!port) {
        server.stop();
        return fail(port.error().message);
    }
    std::printf("serving on port %s version %s height %lld\n", port->c_str(),
                options_.version.c_str(), static_cast<long long>(chain_.height.load()));
    std::fflush(stdout);
    asio::co_spawn(ioc_, watch_signals(), asio::detached);
    asio::co_spawn(ioc_, watch_parent(), asio::detached);
    asio::co_spawn(ioc_, produce_blocks(), asio::detached);
    ioc_.run();
    server.stop();
    fs::remove(options_.port_file, ec);
    return exit_code_;
}

core::Result<void> SimNode::load_height() {
    auto height = sim::read_height(data_dir_);
    if (!height) {
        return height.error();
    }
    if (*height) {
        chain_.height = **height;
        return {};
    }
    if (options_.import.empty()) {
        return {};
    }
    // A data dir without a height is new: start from the snapshot, as a chart's init container
    // would, and keep it at once so a restart before the first block does not import again.
    auto snapshot = sim::read_snapshot(options_.import);
    if (!snapshot) {
        return core::Error{snapshot.error().code, "cannot import: " + snapshot.error().message};
    }
    chain_.height = *snapshot;
    std::printf("imported %s at height %lld\n", options_.import.c_str(),
                static_cast<long long>(*snapshot));
    return sim::write_height(data_dir_, *snapshot);
}

// Starts the server, then publishes its port: the file appears only once requests are served.
core::Result<std::string> SimNode::serve(net::HttpServer& server) {
    auto address = server.start();
    if (!address) {
        return address.error();
    }
    auto host_port = net::split_host_port(*address);
    if (!host_port) {
        return host_port.error();
    }
    auto port = std::to_string(host_port->second);
    if (auto written = sim::write_file_atomically(options_.port_file, port + "\n"); !written) {
        return written.error();
    }
    return port;
}

asio::awaitable<void> SimNode::produce_blocks() {
    int produced = 0;
    while (!finishing_) {
        block_timer_.expires_after(options_.block_interval);
        auto [ec] = co_await block_timer_.async_wait(kUseTuple);
        if (ec || finishing_) {
            co_return;
        }
        const auto height = chain_.height.load() + 1;
        // Kept before it is shown: a node killed at any point restarts from a height it reported.
        if (auto written = sim::write_height(data_dir_, height); !written) {
            std::fprintf(stderr, "sim-node: %s\n", written.error().message.c_str());
            finish(1);
            co_return;
        }
        chain_.height = height;
        if (++produced >= options_.sync_blocks) {
            chain_.syncing = false;
        }
        std::printf("block %lld version %s\n", static_cast<long long>(height),
                    options_.version.c_str());
        std::fflush(stdout);
    }
}

asio::awaitable<void> SimNode::watch_signals() {
    auto [ec, signal] = co_await signals_.async_wait(kUseTuple);
    if (ec) {
        co_return;
    }
    std::printf("signal %d: stopping at height %lld\n", signal,
                static_cast<long long>(chain_.height.load()));
    std::fflush(stdout);
    finish(0);
}

// A pidfd turns readable when the parent ends: no polling, and it works for any process, not
// just our real parent. PR_SET_PDEATHSIG covers the real parent too (it fires when the thread
// that spawned us exits).
asio::awaitable<void> SimNode::watch_parent() {
    if (!options_.parent_pid) {
        co_return;
    }
    const pid_t parent = *options_.parent_pid;
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, parent, 0));
    if (fd < 0 && errno == ESRCH) {
        std::printf("parent %d is gone: stopping\n", parent);
        finish(0);
        co_return;
    }
    if (fd < 0) {
        co_await poll_parent(parent);  // no pidfd (old kernel, seccomp)
        co_return;
    }
    parent_fd_.emplace(ioc_, fd);
    auto [ec] = co_await parent_fd_->async_wait(asio::posix::descriptor_base::wait_read, kUseTuple);
    if (ec || finishing_) {
        co_return;
    }
    std::printf("parent %d is gone: stopping\n", parent);
    std::fflush(stdout);
    finish(0);
}

asio::awaitable<void> SimNode::poll_parent(pid_t parent) {
    const bool is_our_parent = ::getppid() == parent;
    while (!finishing_) {
        if ((::kill(parent, 0) != 0 && errno == ESRCH) ||
            (is_our_parent && ::getppid() != parent)) {
            std::printf("parent %d is gone: stopping\n", parent);
            std::fflush(stdout);
            finish(0);
            co_return;
        }
        parent_timer_.expires_after(kParentPoll);
        auto [ec] = co_await parent_timer_.async_wait(kUseTuple);
        if (ec) {
            co_return;
        }
    }
}

// Ends every wait so run()'s loop drains and returns: no frame is left suspended.
void SimNode::finish(int code) {
    if (finishing_) {
        return;
    }
    finishing_ = true;
    exit_code_ = code;
    boost::system::error_code ignored;
    signals_.cancel(ignored);
    block_timer_.cancel();
    parent_timer_.cancel();
    if (parent_fd_) {
        parent_fd_->cancel(ignored);
    }
}

}  // namespace

int sim_node_main(const std::vector<std::string>& args) {
    auto options = parse_options(args);
    if (!options) {
        std::fprintf(stderr, "sim-node: %s\n", options.error().message.c_str());
        std::fprintf(stderr,
                     "usage: aviary sim-node --data-dir DIR --version TAG --port-file FILE "
                     "[--block-interval 500ms] [--sync-blocks N] [--import SNAPSHOT] "
                     "[--parent-pid PID] [--listen 127.0.0.1:0]\n");
        return kBadArgs;
    }
    // Quiet: the driver drops our output anyway, and three nodes run at once in the demo.
    (void)core::configure_logging("warn", "text");
    SimNode node{std::move(*options)};
    return node.run();
}

}  // namespace aviary::drivers
