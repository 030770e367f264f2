#include "drivers/sim_driver.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "drivers/sidecar_driver.hpp"
#include "drivers/sim_files.hpp"

namespace aviary::drivers {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using asio::experimental::awaitable_operators::operator&&;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kPortPoll = 20ms;
constexpr core::Millis kStatusTimeout = 1s;
constexpr std::size_t kTailLines = 5;
constexpr std::string_view kFirstVersion = "v0.0.0";

/// state.json: what helm's release record is to a real node.
struct Release {
    bool installed = false;
    std::string version;
};

/// One sim-node child. Shared by its life() coroutine, which drains its output and notices its
/// exit, and by whoever stops it: the Process must outlive both.
struct Child {
    Child(proc::Process child_process, const asio::any_io_executor& executor, std::string tag)
        : process(std::move(child_process)),
          version(std::move(tag)),
          finished(executor, asio::steady_timer::time_point::max()) {}

    proc::Process process;
    std::string version;
    bool stop_requested = false;
    bool exited = false;  ///< the leader has ended and been reaped: `status` holds how
    proc::ExitStatus status;
    bool done = false;             ///< life() has returned: output drained, leader reaped
    asio::steady_timer finished;   ///< cancelled when `done` turns true
    std::deque<std::string> tail;  ///< its last lines, for the error when it dies starting
};

core::Error unavailable(std::string message) {
    return core::Error{core::ErrorCode::kUnavailable, std::move(message)};
}

std::string describe(const proc::ExitStatus& status) {
    if (status.exited()) {
        return fmt::format("exit code {}", status.code);
    }
    return fmt::format("signal {}", status.signal);
}

std::string render_release(const Release& release) {
    boost::json::object object;
    object["installed"] = release.installed;
    object["version"] = release.version;
    return boost::json::serialize(object) + "\n";
}

std::optional<Release> parse_release(std::string_view text) {
    boost::system::error_code ec;
    auto value = boost::json::parse(text, ec);
    const auto* object = ec ? nullptr : value.if_object();
    const auto* installed = object == nullptr ? nullptr : object->if_contains("installed");
    const auto* version = object == nullptr ? nullptr : object->if_contains("version");
    if (installed == nullptr || !installed->is_bool() || version == nullptr ||
        !version->is_string()) {
        return std::nullopt;
    }
    return Release{.installed = installed->get_bool(),
                   .version = std::string{version->get_string()}};
}

std::string render_status(const NodeStatus& status) {
    boost::json::object object;
    object["installed"] = status.installed;
    object["running"] = status.running;
    object["version"] = status.version;
    object["height"] = status.height;
    object["syncing"] = status.syncing;
    return boost::json::serialize(object);
}

// Fills version, height and syncing from a sim node's GET /status body.
bool parse_node_status(std::string_view body, NodeStatus& status) {
    boost::system::error_code ec;
    auto value = boost::json::parse(body, ec);
    const auto* object = ec ? nullptr : value.if_object();
    const auto* version = object == nullptr ? nullptr : object->if_contains("version");
    const auto* height = object == nullptr ? nullptr : object->if_contains("height");
    const auto* syncing = object == nullptr ? nullptr : object->if_contains("syncing");
    if (version == nullptr || !version->is_string() || height == nullptr || !height->is_int64() ||
        syncing == nullptr || !syncing->is_bool()) {
        return false;
    }
    status.version = version->get_string();
    status.height = height->get_int64();
    status.syncing = syncing->get_bool();
    return true;
}

net::ClientRequest status_request(const std::string& api) {
    return net::ClientRequest{.url = api + "/status", .timeout = kStatusTimeout};
}

std::string tag_for(const OpRequest& request, const Release& before) {
    if (!request.image_tag.empty()) {
        return request.image_tag;
    }
    if (!request.node.image_tag.empty()) {
        return request.node.image_tag;
    }
    return before.version.empty() ? std::string{kFirstVersion} : before.version;
}

std::string install_note(const std::string& node, const Release& before, const std::string& tag) {
    if (!before.installed) {
        return fmt::format("installing {} at {}", node, tag);
    }
    if (before.version != tag) {
        return fmt::format("upgrading {} from {} to {}", node, before.version, tag);
    }
    return fmt::format("reinstalling {} at {}", node, tag);
}

std::string tail_text(const Child& child) {
    std::string text;
    for (const auto& line : child.tail) {
        text += text.empty() ? "" : " | ";
        text += line;
    }
    return text;
}

/// The sim driver. Every member is touched only from the one executor start() runs on (the job
/// engine's), so nothing here locks; coroutines interleave only at their co_awaits, and a node's
/// child is held by shared_ptr across them so a concurrent stop cannot free it mid-wait.
class SimDriver final : public Driver {
public:
    SimDriver(Settings settings, std::string program)
        : settings_(std::move(settings)),
          program_(std::move(program)),
          root_(fs::absolute(settings_.dir.empty() ? fs::path{"nodes"} : fs::path{settings_.dir}) /
                "sim"),
          log_(core::logger("drivers")) {}

    std::string_view name() const override { return "sim"; }
    asio::awaitable<void> start(asio::any_io_executor executor,
                                std::vector<core::NodeSpec> nodes) override;
    asio::awaitable<core::Result<std::string>> run(const OpRequest& request,
                                                   Context& context) override;
    asio::awaitable<core::Result<NodeStatus>> status(const core::NodeSpec& node) override;
    asio::awaitable<void> stop() override;

private:
    fs::path data_dir(std::string_view node) const { return root_ / node / "data"; }
    fs::path state_file(std::string_view node) const { return root_ / node / "state.json"; }
    fs::path port_file(std::string_view node) const { return root_ / node / "port"; }
    fs::path snapshot_file() const { return root_ / "snapshot.json"; }

    core::Result<std::optional<Release>> read_release(const std::string& node) const;
    core::Result<void> write_release(const std::string& node, const Release& release) const;
    core::Result<void> ensure_snapshot() const;
    std::shared_ptr<Child> running_child(std::string_view node) const;
    std::vector<std::string> sim_node_argv(const std::string& node,
                                           const std::string& version) const;
    core::Result<std::shared_ptr<Child>> spawn_node(const std::string& node,
                                                    const std::string& version,
                                                    const asio::any_io_executor& executor);
    void note(Context* context, std::string text);

    asio::awaitable<core::Result<void>> install(const OpRequest& request, Context& context);
    asio::awaitable<core::Result<void>> uninstall(std::string node, Context& context);
    core::Result<void> wipe_data(const std::string& node, Context& context);
    asio::awaitable<core::Result<void>> restart(std::string node, Context& context);

    asio::awaitable<core::Result<void>> start_node(std::string node,
                                                   std::string version,
                                                   Context* context);
    asio::awaitable<core::Result<void>> wait_serving(std::string node,
                                                     std::shared_ptr<Child> child,
                                                     Context* context);
    asio::awaitable<void> stop_node(std::string node, Context* context);
    asio::awaitable<void> life(std::shared_ptr<Child> child, std::string node);
    asio::awaitable<void> watch_exit(Child& child, const std::string& node);
    static asio::awaitable<void> wait_done(Child& child);

    Settings settings_;
    std::string program_;
    fs::path root_;  // <settings.dir>/sim
    std::map<std::string, std::shared_ptr<Child>, std::less<>> children_;
    std::shared_ptr<spdlog::logger> log_;
};

// ---------------------------------------------------------------------------------------------
// Files

core::Result<std::optional<Release>> SimDriver::read_release(const std::string& node) const {
    const auto path = state_file(node);
    auto text = sim::read_file(path);
    if (!text) {
        return text.error();
    }
    if (!*text) {
        return std::optional<Release>{};
    }
    auto release = parse_release(**text);
    if (!release) {
        return core::Error{
            core::ErrorCode::kStorage,
            fmt::format("sim node {}: {} is not a valid state file", node, path.string())};
    }
    return release;
}

core::Result<void> SimDriver::write_release(const std::string& node, const Release& release) const {
    std::error_code ec;
    fs::create_directories(root_ / node, ec);
    if (ec) {
        return unavailable(
            fmt::format("cannot create {}: {}", (root_ / node).string(), ec.message()));
    }
    return sim::write_file_atomically(state_file(node), render_release(release));
}

// The snapshot follows the configured height: a changed snapshot_height takes effect at the next
// import.
core::Result<void> SimDriver::ensure_snapshot() const {
    const auto path = snapshot_file();
    if (auto height = sim::read_snapshot(path);
        height && *height == settings_.sim.snapshot_height) {
        return {};
    }
    std::error_code ec;
    fs::create_directories(root_, ec);
    if (ec) {
        return unavailable(fmt::format("cannot create {}: {}", root_.string(), ec.message()));
    }
    return write_sim_snapshot(path.string(), settings_.sim.snapshot_height);
}

// ---------------------------------------------------------------------------------------------
// Children

std::shared_ptr<Child> SimDriver::running_child(std::string_view node) const {
    auto it = children_.find(node);
    if (it == children_.end() || it->second->exited) {
        return nullptr;
    }
    return it->second;
}

std::vector<std::string> SimDriver::sim_node_argv(const std::string& node,
                                                  const std::string& version) const {
    // --import always: the node imports only when its data dir holds no height yet.
    return {program_,           "sim-node",
            "--data-dir",       data_dir(node).string(),
            "--version",        version,
            "--port-file",      port_file(node).string(),
            "--block-interval", core::format_duration(settings_.sim.block_interval),
            "--sync-blocks",    std::to_string(settings_.sim.sync_blocks),
            "--parent-pid",     std::to_string(::getpid()),
            "--import",         snapshot_file().string()};
}

core::Result<std::shared_ptr<Child>> SimDriver::spawn_node(const std::string& node,
                                                           const std::string& version,
                                                           const asio::any_io_executor& executor) {
    std::error_code ec;
    fs::create_directories(data_dir(node), ec);
    if (ec) {
        return unavailable(
            fmt::format("cannot create {}: {}", data_dir(node).string(), ec.message()));
    }
    // A port file left by a node that was killed would look like a node already serving.
    fs::remove(port_file(node), ec);
    auto process = proc::spawn(executor, proc::SpawnOptions{.argv = sim_node_argv(node, version)});
    if (!process) {
        return core::Error{process.error().code, fmt::format("cannot start sim node {}: {}", node,
                                                             process.error().message)};
    }
    auto child = std::make_shared<Child>(std::move(*process), executor, version);
    children_[node] = child;
    asio::co_spawn(executor, life(child, node), asio::detached);
    return child;
}

// Drains the child's output (a pipe nobody reads fills and blocks the node) and notices its
// exit. A node that dies on its own stays dead: restarts are the supervisor's decision.
asio::awaitable<void> SimDriver::life(std::shared_ptr<Child> child, std::string node) {
    Child* raw = child.get();
    auto on_line = [this, raw, node](const proc::Line& line) {
        log_->debug("sim node output node={} line={}", node, line.text);
        raw->tail.push_back(line.text);
        if (raw->tail.size() > kTailLines) {
            raw->tail.pop_front();
        }
    };
    try {
        co_await (raw->process.pump(std::move(on_line)) && watch_exit(*raw, node));
    } catch (const std::exception& e) {
        log_->error("sim node watch failed node={} error={}", node, e.what());
    }
    raw->done = true;
    raw->finished.cancel();
}

asio::awaitable<void> SimDriver::watch_exit(Child& child, const std::string& node) {
    child.status = co_await child.process.wait();
    child.exited = true;
    if (child.stop_requested) {
        log_->info("sim node stopped node={} pid={} status=\"{}\"", node, child.process.pid(),
                   describe(child.status));
    } else {
        log_->warn("sim node exited on its own node={} pid={} status=\"{}\"", node,
                   child.process.pid(), describe(child.status));
    }
}

asio::awaitable<void> SimDriver::wait_done(Child& child) {
    // Only cancel() ends this wait (the timer never expires), and done is set just before it.
    if (!child.done) {
        co_await child.finished.async_wait(kUseTuple);
    }
}

asio::awaitable<void> SimDriver::stop_node(std::string node, Context* context) {
    auto it = children_.find(node);
    if (it == children_.end()) {
        co_return;
    }
    auto child = it->second;
    if (!child->exited) {
        child->stop_requested = true;
        note(context, fmt::format("stopping {} (pid {})", node, child->process.pid()));
        auto status = co_await child->process.terminate(settings_.sim.stop_grace);
        note(context, fmt::format("{} stopped ({})", node, describe(status)));
    }
    co_await wait_done(*child);
    // Someone may have started a new child for the node meanwhile: leave that one alone.
    if (auto again = children_.find(node); again != children_.end() && again->second == child) {
        children_.erase(again);
    }
}

asio::awaitable<core::Result<void>> SimDriver::start_node(std::string node,
                                                          std::string version,
                                                          Context* context) {
    co_await stop_node(node, context);  // never two children on one data dir
    if (auto snapshot = ensure_snapshot(); !snapshot) {
        co_return snapshot.error();
    }
    if (auto height = sim::read_height(data_dir(node)); height && !*height) {
        note(context, fmt::format("{} has no data: importing the snapshot at height {}", node,
                                  settings_.sim.snapshot_height));
    }
    auto executor = co_await asio::this_coro::executor;
    auto child = spawn_node(node, version, executor);
    if (!child) {
        co_return child.error();
    }
    note(context,
         fmt::format("starting {} on {} (pid {})", node, version, (*child)->process.pid()));
    co_return co_await wait_serving(std::move(node), std::move(*child), context);
}

// Polls for the port file: the node writes it once it serves.
asio::awaitable<core::Result<void>> SimDriver::wait_serving(std::string node,
                                                            std::shared_ptr<Child> child,
                                                            Context* context) {
    const auto deadline = std::chrono::steady_clock::now() + settings_.sim.start_timeout;
    asio::steady_timer poll{co_await asio::this_coro::executor};
    while (true) {
        if (child->exited) {
            co_await wait_done(*child);  // its last words are in the tail once drained
            co_await stop_node(node, context);
            co_return unavailable(fmt::format("sim node {} exited before serving ({}): {}", node,
                                              describe(child->status), tail_text(*child)));
        }
        if (auto port = sim::read_port(port_file(node))) {
            note(context, fmt::format("{} serves on http://127.0.0.1:{}", node, *port));
            co_return core::Result<void>{};
        }
        if (context != nullptr && context->stopping()) {
            co_return unavailable(fmt::format(
                "gave up waiting for sim node {} to serve: the step is stopping", node));
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            co_await stop_node(node, context);
            co_return core::Error{core::ErrorCode::kTimeout,
                                  fmt::format("sim node {} did not serve within {}", node,
                                              core::format_duration(settings_.sim.start_timeout))};
        }
        poll.expires_after(kPortPoll);
        co_await poll.async_wait(kUseTuple);
    }
}

void SimDriver::note(Context* context, std::string text) {
    if (context != nullptr) {
        context->note(std::move(text));
        return;
    }
    log_->info("{}", text);
}

// ---------------------------------------------------------------------------------------------
// Operations

asio::awaitable<void> SimDriver::start(asio::any_io_executor executor,
                                       std::vector<core::NodeSpec> nodes) {
    (void)executor;  // every coroutine here runs on it already; children spawn on this_coro's
    for (const auto& node : nodes) {
        if (node.driver != "sim") {
            continue;
        }
        if (!core::is_dns_label(node.name)) {
            log_->error("sim node name is not a DNS label node={}", node.name);
            continue;
        }
        auto release = read_release(node.name);
        if (!release) {
            log_->error("sim node not started node={} error=\"{}\"", node.name,
                        release.error().message);
            continue;
        }
        // A node never seen is installed at its configured tag, as the demo expects to find it.
        Release current = release->value_or(Release{
            .installed = true,
            .version = node.image_tag.empty() ? std::string{kFirstVersion} : node.image_tag});
        if (!*release) {
            if (auto written = write_release(node.name, current); !written) {
                log_->error("sim node not installed node={} error=\"{}\"", node.name,
                            written.error().message);
                continue;
            }
        }
        if (!current.installed) {
            continue;
        }
        auto started = co_await start_node(node.name, current.version, nullptr);
        if (!started) {
            log_->error("sim node not started node={} error=\"{}\"", node.name,
                        started.error().message);
        }
    }
}

asio::awaitable<core::Result<std::string>> SimDriver::run(const OpRequest& request,
                                                          Context& context) {
    const std::string node = request.node.name;
    if (!core::is_dns_label(node)) {
        co_return core::Error{core::ErrorCode::kInvalidArgument,
                              fmt::format("sim node name \"{}\" is not a DNS label", node)};
    }
    if (is_sidecar_op(request.op)) {
        co_return not_a_sidecar(name(), request);
    }
    core::Result<void> outcome;
    switch (request.op) {
        case Op::kInstall:
        case Op::kUpgrade:
            outcome = co_await install(request, context);
            break;
        case Op::kUninstall:
            outcome = co_await uninstall(node, context);
            break;
        case Op::kWipeData:
            outcome = wipe_data(node, context);
            break;
        case Op::kRestart:
            outcome = co_await restart(node, context);
            break;
        case Op::kStatus:
        case Op::kMaintenance:
        case Op::kResume:
        case Op::kReload:
        case Op::kBackup:
        case Op::kRestore:
        case Op::kPauseProduction:
        case Op::kResumeProduction:
            break;
    }
    if (!outcome) {
        co_return outcome.error();
    }
    auto after = co_await status(request.node);
    if (!after) {
        co_return after.error();
    }
    co_return render_status(*after);
}

// helm upgrade --install: install and upgrade are one operation; the data dir is kept.
asio::awaitable<core::Result<void>> SimDriver::install(const OpRequest& request, Context& context) {
    const std::string& node = request.node.name;
    auto release = read_release(node);
    if (!release) {
        co_return release.error();
    }
    const Release before = release->value_or(Release{});
    const std::string tag = tag_for(request, before);
    auto child = running_child(node);
    if (before.installed && child && child->version == tag) {
        // helm upgrade with nothing changed rolls nothing.
        context.note(fmt::format("{} already runs {}", node, tag));
        co_return core::Result<void>{};
    }
    context.note(install_note(node, before, tag));
    if (auto written = write_release(node, Release{.installed = true, .version = tag}); !written) {
        co_return written.error();
    }
    co_return co_await start_node(node, tag, &context);
}

// helm uninstall keeps the PVC: the data dir stays for a later install.
asio::awaitable<core::Result<void>> SimDriver::uninstall(std::string node, Context& context) {
    auto release = read_release(node);
    if (!release) {
        co_return release.error();
    }
    co_await stop_node(node, &context);
    Release after = release->value_or(Release{});
    after.installed = false;
    if (auto written = write_release(node, after); !written) {
        co_return written.error();
    }
    context.note(fmt::format("uninstalled {} (data kept in {})", node, data_dir(node).string()));
    co_return core::Result<void>{};
}

core::Result<void> SimDriver::wipe_data(const std::string& node, Context& context) {
    if (auto child = running_child(node)) {
        return core::Error{core::ErrorCode::kBusy,
                           fmt::format("sim node {} is running (pid {}): stop it first: uninstall",
                                       node, child->process.pid())};
    }
    const auto path = data_dir(node);
    std::error_code ec;
    fs::remove_all(path, ec);
    if (ec) {
        return unavailable(fmt::format("cannot wipe {}: {}", path.string(), ec.message()));
    }
    context.note(fmt::format("wiped {}", path.string()));
    return {};
}

asio::awaitable<core::Result<void>> SimDriver::restart(std::string node, Context& context) {
    auto release = read_release(node);
    if (!release) {
        co_return release.error();
    }
    if (!*release || !(*release)->installed) {
        co_return unavailable(fmt::format("sim node {} is not installed", node));
    }
    const std::string version = (*release)->version;
    context.note(fmt::format("restarting {} on {}", node, version));
    co_return co_await start_node(node, version, &context);
}

asio::awaitable<core::Result<NodeStatus>> SimDriver::status(const core::NodeSpec& node) {
    const std::string name = node.name;
    if (!core::is_dns_label(name)) {
        co_return core::Error{core::ErrorCode::kInvalidArgument,
                              fmt::format("sim node name \"{}\" is not a DNS label", name)};
    }
    auto release = read_release(name);
    if (!release) {
        co_return release.error();
    }
    NodeStatus status;
    if (*release) {
        status.installed = (*release)->installed;
        status.version = (*release)->version;
    }
    std::optional<std::uint16_t> port;
    if (auto child = running_child(name)) {
        status.version = child->version;
        port = sim::read_port(port_file(name));
    }
    if (port) {
        status.running = true;
        status.api = fmt::format("http://127.0.0.1:{}", *port);
        auto request = status_request(status.api);
        auto response = co_await net::fetch(std::move(request));
        if (response && response->status == 200 && parse_node_status(response->body, status)) {
            co_return status;
        }
        // Running but not answering: report what the disk says, and not as synced.
        status.syncing = true;
        log_->debug("sim node status unanswered node={} api={}", name, status.api);
    }
    if (auto height = sim::read_height(data_dir(name)); height && *height) {
        status.height = **height;
    }
    co_return status;
}

// Every node gets its SIGTERM first, so the graceful waits overlap: the whole stop takes about
// as long as the slowest node, not the sum.
asio::awaitable<void> SimDriver::stop() {
    std::vector<std::string> nodes;
    for (auto& [node, child] : children_) {
        nodes.push_back(node);
        if (!child->exited) {
            child->stop_requested = true;
            child->process.signal_group(SIGTERM);
        }
    }
    for (auto& node : nodes) {
        co_await stop_node(node, nullptr);
    }
}

}  // namespace

std::unique_ptr<Driver> make_sim_driver(Settings settings, std::string program) {
    return std::make_unique<SimDriver>(std::move(settings), std::move(program));
}

}  // namespace aviary::drivers
