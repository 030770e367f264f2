// The reboot step: the escalation the roller's reboot task did (ssh `reboot`, then IPMI
// `chassis power cycle`, then the PDU outlet off and on), with a check after each attempt that
// the machine really went down and came back before calling it done.
#include "jobs/reboot_step.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace aviary::jobs {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

/// ssh's own failures before any command ran: the machine was never asked to reboot, so there
/// is nothing to wait for.
constexpr std::string_view kSshNeverRan[] = {
    "Connection refused",           "Connection timed out", "No route to host",
    "Host key verification failed", "Permission denied",    "Could not resolve hostname",
    "Network is unreachable",
};

core::Error failure(std::string message) {
    return core::Error{core::ErrorCode::kUnavailable, std::move(message)};
}

asio::awaitable<bool> connects(asio::any_io_executor executor, std::string host, int port) {
    tcp::resolver resolver{executor};
    const std::string service = std::to_string(port);
    auto [resolve_ec, endpoints] = co_await resolver.async_resolve(host, service, kUseTuple);
    if (resolve_ec) {
        co_return false;
    }
    tcp::socket socket{executor};
    auto [connect_ec, endpoint] = co_await asio::async_connect(socket, endpoints, kUseTuple);
    co_return !connect_ec;
}

/// True when a TCP connection to host:port opens within `timeout`.
asio::awaitable<bool> answers(std::string host, int port, core::Millis timeout) {
    using namespace asio::experimental::awaitable_operators;
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer deadline{executor, timeout};
    auto attempt = connects(executor, std::move(host), port);
    auto timer = deadline.async_wait(kUseTuple);
    auto outcome = co_await (std::move(attempt) || std::move(timer));
    co_return outcome.index() == 0 && std::get<0>(outcome);
}

/// Sleeps `d`, or less when the step is stopped (cancel, timeout).
asio::awaitable<void> pause(Run& run, core::Millis d) {
    using namespace asio::experimental::awaitable_operators;
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer timer{executor, d};
    auto slept = timer.async_wait(kUseTuple);
    auto stopped = run.stop_signal.async_wait(kUseTuple);
    co_await (std::move(slept) || std::move(stopped));
}

/// Polls until the machine's port answers (`up`) or stops answering (!`up`), for at most
/// `within`. The time it took, or nullopt.
asio::awaitable<std::optional<core::Millis>> until(Run& run,
                                                   const RebootStepSpec& spec,
                                                   std::string host,
                                                   int port,
                                                   bool up,
                                                   core::Millis within) {
    const auto started = std::chrono::steady_clock::now();
    while (run.stop == StopReason::kNone) {
        const bool answered = co_await answers(host, port, spec.probe_timeout);
        auto took =
            std::chrono::duration_cast<core::Millis>(std::chrono::steady_clock::now() - started);
        if (answered == up) {
            co_return took;
        }
        if (took >= within) {
            break;
        }
        co_await pause(run, std::min(spec.interval, within - took));
    }
    co_return std::nullopt;
}

/// What asking one method came to.
struct Asked {
    std::string refused;               ///< empty: the machine was asked to reboot
    std::optional<core::Millis> down;  ///< set when the method saw it go down itself (the PDU)
};

/// One method's command, run through the step's context.
asio::awaitable<Asked> ask(Engine::Impl& d,
                           Run& run,
                           const RebootStepSpec& spec,
                           RebootMethod method,
                           drivers::Context& context,
                           std::string host,
                           int port) {
    const auto& node = run.node;
    std::optional<core::Millis> down;
    const auto& m = *node.machine;
    auto render_all =
        [&run](const std::vector<std::string>& words) -> core::Result<std::vector<std::string>> {
        std::vector<std::string> out;
        for (const auto& word : words) {
            auto rendered = render_template(word, run.job);
            if (!rendered) {
                return rendered.error();
            }
            out.push_back(std::move(*rendered));
        }
        return out;
    };
    switch (method) {
        case RebootMethod::kSsh: {
            if (node.driver == "none") {
                co_return Asked{.refused = "skipped: the machine has driver none (no ssh)"};
            }
            auto remote = render_all(spec.ssh_command);
            if (!remote) {
                co_return Asked{.refused = remote.error().message};
            }
            proc::SpawnOptions options;
            options.argv = ssh_argv(d.settings.ssh, node, *remote);
            bool never_ran = false;
            drivers::RunOptions run_options;
            run_options.on_line = [&never_ran](const proc::Line& line) {
                for (auto text : kSshNeverRan) {
                    never_ran = never_ran || line.text.find(text) != std::string::npos;
                }
            };
            auto status = co_await context.run(std::move(options), std::move(run_options));
            if (!status) {
                co_return Asked{.refused = status.error().message};
            }
            // 255 is also what ssh says when the machine drops the connection as it goes
            // down: only its own connection failures mean the command never ran.
            if (status->succeeded() || (status->code == 255 && !never_ran)) {
                co_return Asked{};
            }
            co_return Asked{
                .refused = never_ran ? fmt::format("ssh could not reach {} (see the output above)",
                                                   m.reach())
                                     : fmt::format("the command exited with {}", status->code)};
        }
        case RebootMethod::kIpmi: {
            if (m.ipmi_address.empty()) {
                co_return Asked{.refused = "skipped: the machine has no ipmi_address"};
            }
            if (d.settings.ipmi.password_file.empty()) {
                co_return Asked{.refused = "skipped: no IPMI password is configured (jobs.ipmi)"};
            }
            auto command = render_all(spec.ipmi_command);
            if (!command) {
                co_return Asked{.refused = command.error().message};
            }
            proc::SpawnOptions options;
            options.argv = ipmi_argv(d.settings.ipmi, node, *command);
            auto status = co_await context.run(std::move(options));
            if (!status) {
                co_return Asked{.refused = status.error().message};
            }
            co_return Asked{.refused =
                                status->succeeded()
                                    ? std::string{}
                                    : fmt::format("ipmitool exited with {} (see the output above)",
                                                  status->code)};
        }
        case RebootMethod::kPdu: {
            if (m.pdu_host.empty()) {
                co_return Asked{.refused = "skipped: the machine has no pdu_host"};
            }
            if (d.settings.pdu.conf_dir.empty()) {
                co_return Asked{.refused = "skipped: no SNMP community is configured (jobs.pdu)"};
            }
            for (bool on : {false, true}) {
                proc::SpawnOptions options;
                options.argv = pdu_argv(d.settings.pdu, node,
                                        on ? d.settings.pdu.on_value : d.settings.pdu.off_value);
                options.env_add.emplace_back("SNMPCONFPATH", d.settings.pdu.conf_dir);
                auto status = co_await context.run(std::move(options));
                if (!status) {
                    co_return Asked{.refused = status.error().message};
                }
                if (!status->succeeded()) {
                    co_return Asked{.refused = fmt::format(
                                        "snmpset (outlet {} {}) exited with {} (see the output "
                                        "above)",
                                        m.pdu_outlet, on ? "on" : "off", status->code)};
                }
                if (!on) {
                    // Seen down while the outlet is off, before it is switched on again.
                    const auto off_at = std::chrono::steady_clock::now();
                    down = co_await until(run, spec, host, port, false, spec.down_within);
                    auto off_for = std::chrono::duration_cast<core::Millis>(
                        std::chrono::steady_clock::now() - off_at);
                    if (!down) {
                        context.note(
                            "the machine still answers with its outlet off: switching "
                            "the outlet on again");
                    } else if (off_for < spec.pdu_off_time) {
                        context.note(fmt::format(
                            "outlet {} of {} is off; on again in {}", m.pdu_outlet, m.pdu_host,
                            core::format_duration(spec.pdu_off_time - off_for)));
                        co_await pause(run, spec.pdu_off_time - off_for);
                    }
                }
            }
            if (!down) {
                co_return Asked{.refused = fmt::format(
                                    "{}:{} still answered {} after its outlet was switched off: "
                                    "it did not go down (is pdu_outlet right?)",
                                    host, port, core::format_duration(spec.down_within))};
            }
            co_return Asked{.down = down};
        }
    }
    co_return Asked{.refused = "unknown method"};
}

}  // namespace

asio::awaitable<core::Result<std::string>> run_reboot_step(Engine::Impl& d,
                                                           Run& run,
                                                           const StepSpec& step,
                                                           drivers::Context& context) {
    if (!run.node.machine) {
        co_return failure(
            fmt::format("{} is not a machine: a reboot step needs one", run.node.name));
    }
    const auto& spec = step.reboot;
    const auto& m = *run.node.machine;
    std::string host = m.reach();
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    const int port = spec.verify_port != 0 ? spec.verify_port : m.ssh_port;
    json::array attempts;
    std::vector<std::string> failures;
    for (auto method : spec.methods) {
        if (run.stop != StopReason::kNone) {
            break;
        }
        const auto name = to_string(method);
        context.note(fmt::format("reboot {} by {}", run.node.name, name));
        auto asked = co_await ask(d, run, spec, method, context, host, port);
        auto refused = std::move(asked.refused);
        // The PDU method saw it go down with the outlet off; the others are watched here.
        std::optional<core::Millis> down = asked.down;
        if (refused.empty() && !down) {
            down = co_await until(run, spec, host, port, false, spec.down_within);
            if (!down) {
                refused = fmt::format("{}:{} still answered {} later: it did not go down", host,
                                      port, core::format_duration(spec.down_within));
            }
        }
        std::optional<core::Millis> up;
        if (refused.empty()) {
            context.note(fmt::format("{} went down ({}:{} stopped answering) after {}",
                                     run.node.name, host, port, core::format_duration(*down)));
            up = co_await until(run, spec, host, port, true, spec.up_within);
            if (!up) {
                refused = fmt::format("it went down but {}:{} did not answer again within {}", host,
                                      port, core::format_duration(spec.up_within));
            }
        }
        if (refused.empty()) {
            context.note(
                fmt::format("{} is back ({}:{} answers) {} after going down: rebooted by {}",
                            run.node.name, host, port, core::format_duration(*up), name));
            attempts.push_back(json::object{{"method", name},
                                            {"outcome", "rebooted"},
                                            {"down_after_ms", down->count()},
                                            {"up_after_ms", up->count()}});
            co_return json::serialize(
                json::object{{"method", name}, {"attempts", std::move(attempts)}});
        }
        context.note(fmt::format("{}: {}", name, refused));
        attempts.push_back(json::object{{"method", name}, {"outcome", refused}});
        failures.push_back(fmt::format("{}: {}", name, refused));
    }
    std::string all;
    for (const auto& f : failures) {
        all += (all.empty() ? "" : "; ") + f;
    }
    co_return failure(
        run.stop != StopReason::kNone
            ? fmt::format("reboot of {} stopped ({})", run.node.name, all)
            : fmt::format("reboot of {} failed by every method: {}", run.node.name, all));
}

}  // namespace aviary::jobs
