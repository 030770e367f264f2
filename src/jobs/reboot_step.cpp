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

/// The OpenSSH client's own lines when it never ran the command (the machine was never asked
/// to reboot, so there is nothing to wait for): "ssh: connect to host H port P: Connection
/// refused", "Host key verification failed.", "root@h: Permission denied (publickey).". The
/// remote command's own stderr comes through too, so only these shapes count.
bool ssh_never_ran(std::string_view line) {
    constexpr std::string_view kClientPrefixed[] = {
        "ssh: connect to host ",
        "ssh: Could not resolve hostname ",
        "Host key verification failed.",
        "No ED25519 host key is known for ",
    };
    for (auto prefix : kClientPrefixed) {
        if (line.starts_with(prefix)) {
            return true;
        }
    }
    // "USER@HOST: Permission denied (publickey,password)."
    auto denied = line.find(": Permission denied (");
    return denied != std::string_view::npos &&
           line.substr(0, denied).find('@') != std::string_view::npos &&
           line.substr(0, denied).find(' ') == std::string_view::npos;
}

core::Error failure(std::string message) {
    return core::Error{core::ErrorCode::kUnavailable, std::move(message)};
}

/// Empty when a TCP connection to host:port opens, else why not.
asio::awaitable<std::string> connect_to(asio::any_io_executor executor,
                                        std::string host,
                                        int port) {
    tcp::resolver resolver{executor};
    const std::string service = std::to_string(port);
    auto [resolve_ec, endpoints] = co_await resolver.async_resolve(host, service, kUseTuple);
    if (resolve_ec) {
        co_return fmt::format("cannot resolve {}: {}", host, resolve_ec.message());
    }
    tcp::socket socket{executor};
    auto [connect_ec, endpoint] = co_await asio::async_connect(socket, endpoints, kUseTuple);
    co_return connect_ec ? connect_ec.message() : std::string{};
}

/// Empty when a TCP connection to host:port opens within `timeout`, else why not.
asio::awaitable<std::string> connect_within(std::string host, int port, core::Millis timeout) {
    using namespace asio::experimental::awaitable_operators;
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer deadline{executor, timeout};
    auto attempt = connect_to(executor, std::move(host), port);
    auto timer = deadline.async_wait(kUseTuple);
    auto outcome = co_await (std::move(attempt) || std::move(timer));
    if (outcome.index() == 1) {
        co_return fmt::format("no answer within {}", core::format_duration(timeout));
    }
    co_return std::get<0>(std::move(outcome));
}

/// True when a TCP connection to host:port opens within `timeout`.
asio::awaitable<bool> answers(std::string host, int port, core::Millis timeout) {
    auto failed = co_await connect_within(std::move(host), port, timeout);
    co_return failed.empty();
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
    std::string refused;  ///< empty: the machine was asked to reboot
    /// Set when the method saw it go down itself (the PDU, with the outlet off): how long that
    /// took, and when.
    std::optional<core::Millis> down;
    std::chrono::steady_clock::time_point down_at;
};

/// Switches the outlet on with no regard to the job's stop: a cancel or timeout while the
/// outlet is off must not leave the machine without power. Bounded by snmpset's own -t/-r and
/// a kill a few seconds after.
asio::awaitable<void> outlet_on_anyway(Engine::Impl& d, Run& run, drivers::Context& context) {
    proc::SpawnOptions options;
    options.argv = pdu_argv(d.settings.pdu, run.node, d.settings.pdu.on_value);
    options.env_add.emplace_back("SNMPCONFPATH", d.settings.pdu.conf_dir);
    const auto limit = d.settings.pdu.timeout * (d.settings.pdu.retries + 1) +
                       core::Millis{std::chrono::seconds{5}};
    proc::RunSpec spec;
    spec.timeout = std::chrono::duration_cast<core::Millis>(limit);
    auto ran = co_await proc::run(d.io.get_executor(), std::move(options), std::move(spec));
    const int outlet = run.node.machine->pdu_outlet;
    if (ran && ran->status.succeeded()) {
        context.note(fmt::format("outlet {} switched on again before stopping", outlet));
    } else {
        context.note(fmt::format("outlet {} may still be off: switching it on failed ({})", outlet,
                                 ran ? std::string{"snmpset failed"} : ran.error().message));
    }
}

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
    std::chrono::steady_clock::time_point down_at;
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
                never_ran =
                    never_ran || (line.stream == proc::Stream::kStderr && ssh_never_ran(line.text));
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
                if (on && run.stop != StopReason::kNone) {
                    // Stopped while the outlet was off: the "on" above was ended with the job.
                    co_await outlet_on_anyway(d, run, context);
                    co_return Asked{.refused = "stopped"};
                }
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
                    down_at = std::chrono::steady_clock::now();
                    auto off_for = std::chrono::duration_cast<core::Millis>(down_at - off_at);
                    if (run.stop != StopReason::kNone) {
                        co_await outlet_on_anyway(d, run, context);
                        co_return Asked{.refused = "stopped"};
                    }
                    if (!down) {
                        context.note(fmt::format(
                            "{}:{} still answers {} after outlet {} was switched off: switching "
                            "it on again",
                            host, port, core::format_duration(spec.down_within), m.pdu_outlet));
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
            co_return Asked{.down = down, .down_at = down_at};
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
        // A machine that is not answering now (hung, or off) cannot be seen going down: it is
        // taken as down at once, and only its coming back is checked.
        const bool answering = co_await answers(host, port, spec.probe_timeout);
        if (!answering) {
            context.note(
                fmt::format("{}:{} does not answer before the attempt: only its coming "
                            "back will be checked",
                            host, port));
        }
        auto asked = co_await ask(d, run, spec, method, context, host, port);
        auto refused = std::move(asked.refused);
        // The PDU method saw it go down with the outlet off; the others are watched here.
        std::optional<core::Millis> down = asked.down;
        auto down_at = asked.down_at;
        if (refused.empty() && !down) {
            down = co_await until(run, spec, host, port, false, spec.down_within);
            down_at = std::chrono::steady_clock::now();
            if (!down) {
                refused = fmt::format("{}:{} still answered {} later: it did not go down", host,
                                      port, core::format_duration(spec.down_within));
            }
        }
        std::optional<core::Millis> up;
        if (refused.empty()) {
            context.note(fmt::format("{} went down ({}:{} stopped answering) after {}",
                                     run.node.name, host, port, core::format_duration(*down)));
            // up_within counts from when it was seen down (the PDU's off time is in it).
            const auto spent = std::chrono::duration_cast<core::Millis>(
                std::chrono::steady_clock::now() - down_at);
            const auto left = spec.up_within > spent ? spec.up_within - spent : core::Millis{1};
            auto back = co_await until(run, spec, host, port, true, left);
            if (back) {
                up = std::chrono::duration_cast<core::Millis>(std::chrono::steady_clock::now() -
                                                              down_at);
            } else {
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

asio::awaitable<core::Result<std::string>> run_connect_step(Run& run,
                                                            const StepSpec& step,
                                                            drivers::Context& context) {
    const auto& spec = step.connect;
    auto rendered = render_template(spec.host, run.job);
    if (!rendered) {
        co_return rendered.error();
    }
    std::string host = std::move(*rendered);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    if (host.empty() || host.starts_with('-')) {
        co_return failure(fmt::format("connect: \"{}\" is not a host", host));
    }
    std::string last;
    const auto started = std::chrono::steady_clock::now();
    for (int attempt = 1; attempt <= spec.attempts && run.stop == StopReason::kNone; ++attempt) {
        last = co_await connect_within(host, spec.port, spec.timeout);
        if (last.empty()) {
            auto took = std::chrono::duration_cast<core::Millis>(std::chrono::steady_clock::now() -
                                                                 started);
            context.note(fmt::format("{}:{} answered (attempt {} of {})", host, spec.port, attempt,
                                     spec.attempts));
            co_return json::serialize(json::object{{"host", host},
                                                   {"port", spec.port},
                                                   {"attempt", attempt},
                                                   {"connected_after_ms", took.count()}});
        }
        context.note(fmt::format("{}:{}: {} (attempt {} of {})", host, spec.port, last, attempt,
                                 spec.attempts));
        if (attempt < spec.attempts) {
            co_await pause(run, spec.interval);
        }
    }
    co_return failure(fmt::format("no TCP connection to {}:{} in {} attempts (last: {})", host,
                                  spec.port, spec.attempts, last.empty() ? "stopped" : last));
}

}  // namespace aviary::jobs
