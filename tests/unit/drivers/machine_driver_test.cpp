// The ssh and none drivers of machines: status from a real TCP listener on loopback that
// answers as an ssh server would (or does not), and every other op refused with what to do.
#include "drivers/machine_driver.hpp"

#include <gtest/gtest.h>

#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include "sim_test_support.hpp"

namespace aviary::drivers::test {
namespace {

using tcp = asio::ip::tcp;

core::NodeSpec machine_at(int port, std::string driver = "ssh") {
    return core::NodeSpec{
        .name = "t-linux-1",
        .driver = std::move(driver),
        .machine = core::MachineSpec{
            .hostname = "t-linux-1.test", .address = "127.0.0.1", .ssh_port = port}};
}

/// Accepts one connection and writes `greeting` (nothing when empty), then holds the
/// connection until the client closes it.
asio::awaitable<void> serve_once(tcp::acceptor& acceptor, std::string greeting) {
    auto [accept_ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (accept_ec) {
        co_return;
    }
    if (!greeting.empty()) {
        co_await asio::async_write(socket, asio::buffer(greeting),
                                   asio::as_tuple(asio::use_awaitable));
    }
    std::array<char, 64> sink{};
    co_await socket.async_read_some(asio::buffer(sink), asio::as_tuple(asio::use_awaitable));
}

/// A step's context for ops that must not run anything: a run() is a test failure.
class RefusingContext final : public Context {
public:
    void note(std::string text) override { notes.push_back(std::move(text)); }
    asio::awaitable<core::Result<proc::ExitStatus>> run(proc::SpawnOptions /*options*/,
                                                        RunOptions /*run_options*/) override {
        ADD_FAILURE() << "a machine driver ran a child";
        co_return core::Error{core::ErrorCode::kInternal, "no children here"};
    }
    bool stopping() const override { return false; }
    std::vector<std::string> notes;
};

struct Probe {
    std::string greeting;
    core::Millis timeout{5000};
    bool listen = true;
    std::string driver = "ssh";
    core::Result<NodeStatus> status = core::Error{core::ErrorCode::kInternal, "not run"};
};

asio::awaitable<void> probe(Probe& p) {
    auto executor = co_await asio::this_coro::executor;
    tcp::acceptor acceptor{executor, tcp::endpoint{asio::ip::make_address("127.0.0.1"), 0}};
    const int port = acceptor.local_endpoint().port();
    if (p.listen) {
        asio::co_spawn(executor, serve_once(acceptor, p.greeting), asio::detached);
    } else {
        acceptor.close();  // the port is free now: nothing answers on it
    }
    auto driver = make_machine_driver(p.driver, p.timeout);
    p.status = co_await driver->status(machine_at(port, p.driver));
    acceptor.close();
}

TEST(MachineDriver, AnSshServerThatIdentifiesItselfIsRunning) {
    Probe p{.greeting = "a banner line first\r\nSSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"};
    run(probe(p));
    ASSERT_TRUE(p.status) << p.status.error().message;
    EXPECT_TRUE(p.status->running);
    EXPECT_TRUE(p.status->installed);
    EXPECT_FALSE(p.status->has_height);
    EXPECT_EQ(p.status->version, "SSH-2.0-OpenSSH_9.2p1 Debian-2");
}

TEST(MachineDriver, NothingListeningIsUnavailableNamingTheAddress) {
    Probe p{.listen = false};
    run(probe(p));
    ASSERT_FALSE(p.status);
    EXPECT_EQ(p.status.error().code, core::ErrorCode::kUnavailable);
    EXPECT_EQ(p.status.error().message.rfind("machine t-linux-1: ssh at 127.0.0.1:", 0), 0u)
        << p.status.error().message;
    EXPECT_NE(p.status.error().message.find("does not answer: Connection refused"),
              std::string::npos)
        << p.status.error().message;
}

TEST(MachineDriver, ASilentListenerIsATimeout) {
    Probe p{.timeout = core::Millis{300}};
    run(probe(p));
    ASSERT_FALSE(p.status);
    EXPECT_EQ(p.status.error().code, core::ErrorCode::kTimeout);
    EXPECT_NE(p.status.error().message.find("did not identify itself within 300ms"),
              std::string::npos)
        << p.status.error().message;
}

TEST(MachineDriver, AServerThatIsNotSshIsSaidToBeSo) {
    Probe p{.greeting = "HTTP/1.1 400 Bad Request\r\n"};
    // It writes one line and keeps the connection: no "SSH-" line comes before the deadline,
    // or the peer closes; either way it is not running ssh.
    p.timeout = core::Millis{300};
    run(probe(p));
    ASSERT_FALSE(p.status);
    EXPECT_NE(p.status.error().code, core::ErrorCode::kInternal) << p.status.error().message;
}

TEST(MachineDriver, ANoneMachineCannotBeObservedAndOpsAreRefusedSayingWhatToDo) {
    Probe p{.listen = false, .driver = "none"};
    run(probe(p));
    ASSERT_FALSE(p.status);
    EXPECT_EQ(p.status.error().code, core::ErrorCode::kUnavailable);
    EXPECT_EQ(p.status.error().message,
              "machine t-linux-1 has driver none: its state cannot be observed (give it driver "
              "ssh, or probe it with the ping task)");

    auto driver = make_machine_driver("ssh");
    EXPECT_EQ(driver->name(), "ssh");
    core::Result<std::string> result = core::Error{core::ErrorCode::kInternal, "not run"};
    RefusingContext context;
    OpRequest request{.op = Op::kUpgrade, .node = machine_at(22), .image_tag = "v2"};
    auto upgrade = [](Driver& d, const OpRequest& r, RefusingContext& c,
                      core::Result<std::string>& out) -> asio::awaitable<void> {
        out = co_await d.run(r, c);
    };
    run(upgrade(*driver, request, context, result));
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_EQ(result.error().message,
              "machine t-linux-1 (driver ssh) has no upgrade: a machine is not deployed; run one "
              "of its tasks instead (ping, reboot, reimage, loan; docs/machines.md)");
    EXPECT_TRUE(context.notes.empty());
}

}  // namespace
}  // namespace aviary::drivers::test
