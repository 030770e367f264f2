#include "drivers/machine_driver.hpp"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <string>

namespace aviary::drivers {
namespace {

using tcp = asio::ip::tcp;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
/// RFC 4253 §4.2: the identification line is at most 255 bytes with its CR LF.
constexpr std::size_t kMaxIdentification = 255;

std::string trim_line(std::string line) {
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
        line.pop_back();
    }
    return line;
}

class MachineDriver final : public Driver {
public:
    MachineDriver(std::string_view name, core::Millis probe_timeout)
        : name_(name), probe_timeout_(probe_timeout) {}

    std::string_view name() const override { return name_; }

    asio::awaitable<void> start(asio::any_io_executor /*executor*/,
                                std::vector<core::NodeSpec> /*nodes*/) override {
        co_return;  // nothing runs on our side: the machines exist
    }

    asio::awaitable<core::Result<std::string>> run(const OpRequest& request,
                                                   Context& /*context*/) override {
        if (request.op == Op::kStatus) {
            auto status = co_await this->status(request.node);
            if (!status) {
                co_return status.error();
            }
            co_return fmt::format(R"({{"running":{},"version":"{}"}})", status->running,
                                  status->version);
        }
        co_return core::Error{
            core::ErrorCode::kInvalidArgument,
            fmt::format("machine {} (driver {}) has no {}: a machine is not deployed; run one of "
                        "its tasks instead (ping, reboot, reimage, loan; docs/machines.md)",
                        request.node.name, name_, to_string(request.op))};
    }

    asio::awaitable<core::Result<NodeStatus>> status(const core::NodeSpec& node) override {
        if (!node.machine) {
            co_return core::Error{core::ErrorCode::kInvalidArgument,
                                  fmt::format("{} is not a machine (driver {})", node.name, name_)};
        }
        if (name_ == "none") {
            co_return core::Error{
                core::ErrorCode::kUnavailable,
                fmt::format("machine {} has driver none: its state cannot be observed (give it "
                            "driver ssh, or probe it with the ping task)",
                            node.name)};
        }
        co_return co_await probe(node.name, node.machine->reach(), node.machine->ssh_port);
    }

    asio::awaitable<void> stop() override { co_return; }

private:
    /// Connects and reads the identification line, all within probe_timeout_.
    asio::awaitable<core::Result<NodeStatus>> probe(std::string name, std::string host, int port) {
        using namespace asio::experimental::awaitable_operators;
        auto executor = co_await asio::this_coro::executor;
        asio::steady_timer deadline{executor, probe_timeout_};
        auto attempt = identify(executor, host, port);
        auto timer = deadline.async_wait(kUseTuple);
        auto outcome = co_await (std::move(attempt) || std::move(timer));
        if (outcome.index() == 1) {
            co_return core::Error{
                core::ErrorCode::kTimeout,
                fmt::format("machine {}: ssh at {}:{} did not identify itself within {}", name,
                            host, port, core::format_duration(probe_timeout_))};
        }
        auto identified = std::get<0>(std::move(outcome));
        if (!identified) {
            co_return core::Error{identified.error().code,
                                  fmt::format("machine {}: {}", name, identified.error().message)};
        }
        NodeStatus status;
        status.installed = true;
        status.running = true;
        status.version = std::move(*identified);
        status.has_height = false;
        co_return status;
    }

    static asio::awaitable<core::Result<std::string>> identify(asio::any_io_executor executor,
                                                               std::string host,
                                                               int port) {
        tcp::resolver resolver{executor};
        const std::string service = std::to_string(port);
        auto [resolve_ec, endpoints] = co_await resolver.async_resolve(host, service, kUseTuple);
        if (resolve_ec) {
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  fmt::format("cannot resolve {}: {}", host, resolve_ec.message())};
        }
        tcp::socket socket{executor};
        auto [connect_ec, endpoint] = co_await asio::async_connect(socket, endpoints, kUseTuple);
        if (connect_ec) {
            co_return core::Error{
                core::ErrorCode::kUnavailable,
                fmt::format("ssh at {}:{} does not answer: {}", host, port, connect_ec.message())};
        }
        // Servers may send other lines before it (RFC 4253 §4.2); the first "SSH-" line counts.
        std::string buffer;
        auto sink = asio::dynamic_buffer(buffer, kMaxIdentification * 4);
        while (true) {
            auto [read_ec, n] = co_await asio::async_read_until(socket, sink, '\n', kUseTuple);
            if (read_ec) {
                co_return core::Error{core::ErrorCode::kUnavailable,
                                      fmt::format("{}:{} answers but is not an ssh server ({})",
                                                  host, port, read_ec.message())};
            }
            std::string line = trim_line(buffer.substr(0, n));
            buffer.erase(0, n);
            if (line.starts_with("SSH-")) {
                co_return line.substr(0, kMaxIdentification);
            }
        }
    }

    std::string name_;
    core::Millis probe_timeout_;
};

}  // namespace

std::unique_ptr<Driver> make_machine_driver(std::string_view name, core::Millis probe_timeout) {
    return std::make_unique<MachineDriver>(name, probe_timeout);
}

}  // namespace aviary::drivers
