// Driver sidecar: every op is a call on the sidecar's control API (docs/supervise.md, "Control
// API"): GET /v1/status for the node's status, POST /v1/COMMAND?sync=true for its commands.
#include "drivers/sidecar_driver.hpp"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <string>
#include <utility>

namespace aviary::drivers {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
/// How often a command in flight checks whether its step is being cancelled.
constexpr core::Millis kStopPoll{200};
/// The most of a sidecar's answer quoted in an error.
constexpr std::size_t kMaxQuoted = 400;

std::string quoted(std::string_view body) {
    std::string out{body.substr(0, kMaxQuoted)};
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) {
        out.pop_back();
    }
    return body.size() > kMaxQuoted ? out + "..." : out;
}

std::string text_of(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    return v != nullptr && v->is_string() ? std::string{v->as_string()} : std::string{};
}

/// The command's path on the control API (manageos's names).
std::string_view command_path(Op op) {
    switch (op) {
        case Op::kMaintenance:
            return "maintenance";
        case Op::kResume:
            return "resume";
        case Op::kRestart:
            return "reload";
        case Op::kReload:
            return "safely_reload";
        case Op::kBackup:
            return "backup";
        case Op::kRestore:
            return "restore";
        case Op::kPauseProduction:
            return "safely_pause_production";
        case Op::kResumeProduction:
            return "safely_resume_production";
        case Op::kInstall:
        case Op::kUpgrade:
        case Op::kUninstall:
        case Op::kWipeData:
        case Op::kStatus:
            break;
    }
    return {};
}

std::string base_of(const core::NodeSpec& node) {
    std::string base = node.control_url;
    while (!base.empty() && base.back() == '/') {
        base.pop_back();
    }
    return base;
}

class SidecarDriverImpl final : public SidecarDriver {
public:
    explicit SidecarDriverImpl(SidecarSettings settings) : settings_(std::move(settings)) {}

    std::string_view name() const override { return "sidecar"; }

    asio::awaitable<void> start(asio::any_io_executor /*executor*/,
                                std::vector<core::NodeSpec> /*nodes*/) override {
        co_return;  // the sidecars run the nodes; nothing runs here
    }

    asio::awaitable<void> stop() override { co_return; }

    asio::awaitable<core::Result<std::string>> run(const OpRequest& request,
                                                   Context& context) override {
        std::string answer;  // a command's `Success: ... completed`
        switch (request.op) {
            case Op::kInstall:
            case Op::kUpgrade:
            case Op::kUninstall:
            case Op::kWipeData:
                co_return core::Error{
                    core::ErrorCode::kInvalidArgument,
                    fmt::format("node {} is run by its sidecar (driver sidecar), which has no {}: "
                                "the node's program and image are the sidecar's deployment's; "
                                "its ops are status, restart, reload, maintenance, resume, "
                                "backup, restore, pause-production and resume-production",
                                request.node.name, to_string(request.op))};
            case Op::kStatus:
                break;
            case Op::kRestart:
            case Op::kMaintenance:
            case Op::kResume:
            case Op::kReload:
            case Op::kBackup:
            case Op::kRestore:
            case Op::kPauseProduction:
            case Op::kResumeProduction: {
                auto done = co_await command(request.node, request.op, context);
                if (!done) {
                    co_return done.error();
                }
                answer = std::move(*done);
                break;
            }
        }
        auto after = co_await read(request.node);
        if (!after && !answer.empty()) {
            // The command is done: a status read that fails afterwards does not undo it.
            context.note(fmt::format("{}: no status after the command: {}", request.node.name,
                                     after.error().message));
            co_return json::serialize(json::object{{"answer", answer}});
        }
        if (!after) {
            co_return after.error();
        }
        json::object out{{"running", after->state == "running"},
                         {"state", after->state},
                         {"readiness", after->readiness},
                         {"height", after->height ? json::value(*after->height) : nullptr}};
        if (!after->production.empty()) {
            out["production"] = after->production;
            out["fence"] = after->fence;
        }
        if (!answer.empty()) {
            out["answer"] = answer;
        }
        co_return json::serialize(out);
    }

    asio::awaitable<core::Result<NodeStatus>> status(const core::NodeSpec& node) override {
        auto read_now = co_await read(node);
        if (!read_now) {
            co_return read_now.error();
        }
        NodeStatus status;
        status.installed = true;
        status.running = read_now->state == "running";
        // No height yet is "not synced yet" while the node is not ready (it has just started, or
        // its first read is still to come); only a ready node without one has none to give (a
        // preset that reads no chain), and waits then settle for running.
        status.has_height = read_now->height.has_value() || read_now->readiness != "ready";
        status.height = read_now->height.value_or(0);
        status.syncing = read_now->readiness != "ready";
        status.api = node.control_url;
        co_return status;
    }

    asio::awaitable<core::Result<SidecarStatus>> read(const core::NodeSpec& node) override {
        const std::string url = base_of(node) + "/v1/status";
        auto response = co_await net::fetch(request_for("GET", url, settings_.timeout));
        if (!response) {
            co_return core::Error{
                core::ErrorCode::kUnavailable,
                fmt::format("the sidecar of {} did not answer at {}: {}", node.name,
                            net::redact_url(url), response.error().message)};
        }
        if (response->status != 200) {
            co_return core::Error{
                core::ErrorCode::kUnavailable,
                fmt::format("the sidecar of {} answered {} at {}: {}", node.name, response->status,
                            net::redact_url(url), quoted(response->body))};
        }
        boost::system::error_code ec;
        auto value = json::parse(response->body, ec);
        if (ec || !value.is_object()) {
            co_return core::Error{
                core::ErrorCode::kInternal,
                fmt::format("the sidecar of {} at {} answered a status that is "
                            "not a JSON object: {}",
                            node.name, net::redact_url(url), quoted(response->body))};
        }
        const auto& o = value.as_object();
        SidecarStatus s;
        s.name = text_of(o, "name");
        s.state = text_of(o, "state");
        s.readiness = text_of(o, "readiness");
        s.reason = text_of(o, "reason");
        s.chain_id = text_of(o, "chain_id");
        s.phase = text_of(o, "phase");
        s.production = text_of(o, "production");
        s.producer_key = text_of(o, "producer_key");
        s.round = text_of(o, "round");
        s.head_producer = text_of(o, "head_producer");
        if (const auto* in = o.if_contains("in_schedule"); in != nullptr && in->is_bool()) {
            s.in_schedule = in->as_bool();
        }
        if (const auto* h = o.if_contains("height"); h != nullptr && h->is_int64()) {
            s.height = h->as_int64();
        }
        if (const auto* f = o.if_contains("fence"); f != nullptr && f->is_int64()) {
            s.fence = f->as_int64();
        }
        if (s.state.empty() || s.readiness.empty()) {
            co_return core::Error{core::ErrorCode::kInternal,
                                  fmt::format("the answer at {} is not an aviary sidecar's status "
                                              "(no state or readiness): {}",
                                              net::redact_url(url), quoted(response->body))};
        }
        co_return s;
    }

    asio::awaitable<core::Result<std::string>> command(const core::NodeSpec& node,
                                                       Op op,
                                                       Context& context) override {
        const auto path = command_path(op);
        if (path.empty()) {
            co_return core::Error{core::ErrorCode::kInvalidArgument,
                                  fmt::format("{} is not a sidecar command", to_string(op))};
        }
        const std::string endpoint = fmt::format("{}/v1/{}", base_of(node), path);
        const std::string url = endpoint + "?sync=true";
        context.note(
            fmt::format("{}: POST {} (run to its end)", node.name, net::redact_url(endpoint)));
        using namespace asio::experimental::awaitable_operators;
        auto outcome = co_await (net::fetch(request_for("POST", url, settings_.command_timeout)) ||
                                 until_stopping(context));
        if (outcome.index() == 1) {
            co_return core::Error{
                core::ErrorCode::kTimeout,
                fmt::format("stopped waiting for {}'s {}: the sidecar carries on with a command "
                            "it has begun; its GET /v1/status shows where it is",
                            node.name, path)};
        }
        auto response = std::get<0>(std::move(outcome));
        if (!response) {
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  fmt::format("the sidecar of {} did not answer {}: {}", node.name,
                                              path, response.error().message)};
        }
        std::string body = quoted(response->body);
        if (response->status == 200) {
            context.note(fmt::format("{}: {}", node.name, body));
            co_return body;
        }
        co_return core::Error{response->status == 401 || response->status == 403
                                  ? core::ErrorCode::kPermissionDenied
                                  : core::ErrorCode::kBusy,
                              fmt::format("the sidecar of {} answered {} to {}: {}", node.name,
                                          response->status, path, body)};
    }

private:
    net::ClientRequest request_for(std::string method,
                                   std::string url,
                                   core::Millis timeout) const {
        net::ClientRequest request{.method = std::move(method), .url = std::move(url)};
        request.timeout = timeout;
        if (!settings_.token.empty()) {
            request.headers.push_back({"Authorization", "Bearer " + settings_.token});
        }
        return request;
    }

    /// Returns once the step is told to stop (cancel or timeout).
    static asio::awaitable<void> until_stopping(Context& context) {
        asio::steady_timer timer{co_await asio::this_coro::executor};
        while (!context.stopping()) {
            timer.expires_after(kStopPoll);
            auto [ec] = co_await timer.async_wait(kUseTuple);
            if (ec) {
                co_return;
            }
        }
    }

    SidecarSettings settings_;
};

}  // namespace

std::unique_ptr<Driver> make_sidecar_driver(SidecarSettings settings) {
    return std::make_unique<SidecarDriverImpl>(std::move(settings));
}

}  // namespace aviary::drivers
