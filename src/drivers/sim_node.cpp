// `aviary sim-node`: a simulated chain node, one process per demo node (the sim driver runs it).
//
// Besides its own /status it answers the part of nodeos's HTTP API a supervisor reads
// (/v1/chain/get_info, /v1/chain/get_producer_schedule, /v1/producer/pause|resume|paused), so a
// runbook written for nodeos runs against sim nodes on a laptop. Its producer schedule is a
// fixed rotation by height: block N was made by the producer whose round holds N.
//
// Threads: the main thread runs an io_context with the block timer, the signal set and the
// parent watch; net::HttpServer answers requests on its own I/O thread. The two share only
// Chain: its atomics (the head, published whole as one immutable Head, so a reader never pairs
// one block's number with another's time; syncing; paused) and its `production` mutex, which
// the block loop holds from its look at `paused` to the block's publication and pause/resume
// hold to flip `paused`: once a pause has answered, no block is made until a resume.
#include <fmt/format.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
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
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
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
// The sim chain's name: its default chain id is the SHA-256 of it,
// 081ee42fa1a89993cfe0f0b80bbe898e64832c5ec9b3a3ede900423d728a5009.
constexpr std::string_view kChainName = "aviary-sim";
// The producer get_info names when no schedule is given (a one-producer chain).
constexpr std::string_view kProducer = "eosio";
constexpr int kMaxScheduled = 64;  // nodeos's schedules hold 21

// Lowercase hex of the SHA-256 of `text` (64 characters).
std::string sha256_hex(std::string_view text) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (EVP_Digest(text.data(), text.size(), digest, &size, EVP_sha256(), nullptr) != 1) {
        std::abort();  // SHA-256 is built into every OpenSSL: failing is a broken install
    }
    std::string hex;
    hex.reserve(std::size_t{size} * 2);
    for (unsigned int i = 0; i < size; ++i) {
        hex += fmt::format("{:02x}", digest[i]);
    }
    return hex;
}

bool is_chain_id(std::string_view text) {
    return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
           });
}

struct NodeOptions {
    std::string data_dir;
    std::string version;
    std::string port_file;
    core::Millis block_interval{500};
    int sync_blocks = 2;
    std::string import;
    std::optional<pid_t> parent_pid;
    std::string listen = "127.0.0.1:0";
    std::string chain_id;  ///< lowercase; empty: sha256_hex(kChainName)
    bool paused = false;   ///< start with production paused
    /// While paused the head still advances, as a passive block producer's does with the
    /// blocks it receives; without it a paused node makes no blocks at all.
    bool follow = false;
    /// The chain's producer schedule (get_producer_schedule), in order; each producer makes
    /// `round_blocks` blocks in turn, so get_info's head_block_producer follows the height.
    std::vector<std::string> schedule{std::string{kProducer}};
    int round_blocks = 12;  ///< nodeos: 12 blocks of 500 ms per producer's round
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

// nodeos account names: 1 to 12 of a-z, 1-5 and '.'.
bool is_account_name(std::string_view name) {
    return !name.empty() && name.size() <= 12 && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '1' && c <= '5') || c == '.';
    });
}

core::Result<void> apply_schedule(const std::string& value, NodeOptions& out) {
    std::vector<std::string> names;
    for (std::string_view rest = value; !rest.empty() || names.empty();) {
        const auto comma = rest.find(',');
        const auto name = rest.substr(0, comma);
        if (!is_account_name(name)) {
            return bad_option(fmt::format(
                "--schedule: \"{}\" is not a producer name (1-12 of a-z, 1-5 and '.')", name));
        }
        if (std::find(names.begin(), names.end(), name) != names.end()) {
            return bad_option(fmt::format("--schedule: {} is listed twice", name));
        }
        names.emplace_back(name);
        if (comma == std::string_view::npos) {
            break;
        }
        rest = rest.substr(comma + 1);
        if (rest.empty()) {
            return bad_option("--schedule: a name is missing after the last comma");
        }
    }
    if (names.size() > kMaxScheduled) {
        return bad_option(fmt::format("--schedule: at most {} producers", kMaxScheduled));
    }
    out.schedule = std::move(names);
    return {};
}

core::Result<void> apply_option(std::string_view name, const std::string& value, NodeOptions& out) {
    if (name == "--sync-blocks" || name == "--parent-pid") {
        return apply_number(name, value, out);
    }
    if (name == "--schedule") {
        return apply_schedule(value, out);
    }
    if (name == "--round-blocks") {
        auto number = sim::parse_count(value);
        if (!number || *number == 0 || *number > 10'000) {
            return bad_option(fmt::format(
                "--round-blocks: expected a whole number from 1 to 10000, got \"{}\"", value));
        }
        out.round_blocks = static_cast<int>(*number);
        return {};
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
    if (name == "--chain-id") {
        if (!is_chain_id(value)) {
            return bad_option(fmt::format("--chain-id: expected 64 hex digits, got \"{}\"", value));
        }
        out.chain_id = value;
        std::transform(out.chain_id.begin(), out.chain_id.end(), out.chain_id.begin(),
                       [](char c) { return c >= 'A' && c <= 'F' ? static_cast<char>(c + 32) : c; });
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
        if (name == "--paused" || name == "--follow") {  // flags: they take no value
            if (equals != std::string_view::npos) {
                return bad_option(fmt::format("{}: takes no value", name));
            }
            (name == "--paused" ? options.paused : options.follow) = true;
            continue;
        }
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

using Clock = std::chrono::system_clock;

// The head block: its number and when it was made.
struct Head {
    std::int64_t num = 0;
    Clock::time_point made{};
};

// What the status and nodeos APIs show; the head and syncing are written by the block loop,
// paused by the server's I/O thread (pause/resume), all read by both.
struct Chain {
    std::string version;
    std::string chain_id;
    std::vector<std::string> schedule;
    int round_blocks = 12;
    std::atomic<std::shared_ptr<const Head>> head{std::make_shared<const Head>()};
    std::atomic<bool> syncing{true};
    std::atomic<bool> paused{false};
    // See the top of the file: the block loop's check-make-publish, and flips of `paused`.
    std::mutex production;

    std::int64_t height() const { return head.load()->num; }
    /// Who made block `num`: the schedule's producers take turns of round_blocks blocks.
    const std::string& producer_of(std::int64_t num) const {
        const auto turn = std::max<std::int64_t>(num - 1, 0) / round_blocks;
        return schedule[static_cast<std::size_t>(turn %
                                                 static_cast<std::int64_t>(schedule.size()))];
    }
    void publish(std::int64_t num, Clock::time_point made) {
        head.store(std::make_shared<const Head>(Head{.num = num, .made = made}));
    }
};

net::Response json_response(const boost::json::value& body, int status = 200) {
    return net::Response{
        .status = status, .content_type = "application/json", .body = boost::json::serialize(body)};
}

net::Response status_response(const Chain& chain) {
    boost::json::object body;
    body["version"] = chain.version;
    body["height"] = chain.height();
    body["syncing"] = chain.syncing.load();
    return json_response(body);
}

// nodeos's error body: {"code":404,"message":"Not Found","error":{...}}.
net::Response api_error(int status,
                        std::string_view message,
                        std::string_view what,
                        std::string_view detail) {
    boost::json::object error;
    error["code"] = 0;
    error["name"] = "exception";
    error["what"] = what;
    error["details"] = boost::json::array{boost::json::object{{"message", detail}}};
    boost::json::object body;
    body["code"] = status;
    body["message"] = message;
    body["error"] = std::move(error);
    return json_response(body, status);
}

// As nodeos: the block number as 8 hex digits, then 56 of a hash (here of the chain and number).
std::string block_id(const Chain& chain, std::int64_t num) {
    const auto hash = sha256_hex(fmt::format("{}/{}", chain.chain_id, num));
    return fmt::format("{:08x}{}", static_cast<std::uint32_t>(num), hash.substr(8));
}

// As nodeos prints a block time: ISO 8601 in UTC with milliseconds and no zone,
// "2026-12-04T15:01:02.500".
std::string block_time(Clock::time_point time) {
    const auto millis = std::chrono::floor<std::chrono::milliseconds>(time.time_since_epoch());
    const auto seconds = std::chrono::floor<std::chrono::seconds>(millis);
    const std::time_t whole = static_cast<std::time_t>(seconds.count());
    std::tm utc{};
    ::gmtime_r(&whole, &utc);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}", utc.tm_year + 1900,
                       utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                       (millis - seconds).count());
}

// "v1.2.2" stays, "1.2.2" becomes "v1.2.2": nodeos's server_version_string.
std::string version_string(const std::string& version) {
    return version.starts_with('v') ? version : "v" + version;
}

// nodeos's get_producer_schedule: the active schedule (the sim has no pending or proposed one).
net::Response producer_schedule(const Chain& chain) {
    boost::json::array producers;
    for (const auto& name : chain.schedule) {
        producers.push_back(boost::json::object{
            {"producer_name", name},
            {"authority",
             boost::json::array{
                 0, boost::json::object{{"threshold", 1}, {"keys", boost::json::array{}}}}}});
    }
    boost::json::object body;
    body["active"] = boost::json::object{{"version", 1}, {"producers", std::move(producers)}};
    body["pending"] = nullptr;
    body["proposed"] = nullptr;
    return json_response(body);
}

net::Response get_info(const Chain& chain) {
    const auto head = chain.head.load();
    const auto irreversible = std::max<std::int64_t>(head->num - 2, 0);
    const auto version_hash = sha256_hex(chain.version);
    const auto head_id = block_id(chain, head->num);
    // In nodeos's order.
    boost::json::object info;
    info["server_version"] = version_hash.substr(0, 8);
    info["chain_id"] = chain.chain_id;
    info["head_block_num"] = head->num;
    info["last_irreversible_block_num"] = irreversible;
    info["last_irreversible_block_id"] = block_id(chain, irreversible);
    info["head_block_id"] = head_id;
    info["head_block_time"] = block_time(head->made);
    info["head_block_producer"] = chain.producer_of(head->num);
    info["server_version_string"] = version_string(chain.version);
    info["fork_db_head_block_num"] = head->num;
    info["fork_db_head_block_id"] = head_id;
    info["server_full_version_string"] =
        version_string(chain.version) + "-" + version_hash.substr(0, 40);
    return json_response(info);
}

// Blocks the I/O thread while the block loop writes a block (one small file): see the top.
net::Response set_paused(Chain& chain, bool paused) {
    std::int64_t height = 0;
    {
        std::lock_guard lock{chain.production};
        chain.paused = paused;
        height = chain.height();
    }
    std::printf("%s at height %lld\n", paused ? "paused" : "resumed",
                static_cast<long long>(height));
    std::fflush(stdout);
    return json_response(boost::json::object{{"result", "ok"}});
}

// The nodeos endpoints, with the methods each takes (nodeos's own; GET get_info as nodeos too).
struct Endpoint {
    std::string_view path;
    bool get = false;
    bool post = true;
};

constexpr Endpoint kEndpoints[] = {
    {.path = "/v1/chain/get_info", .get = true},
    {.path = "/v1/chain/get_producer_schedule", .get = true},
    {.path = "/v1/producer/pause"},
    {.path = "/v1/producer/resume"},
    {.path = "/v1/producer/paused", .get = true},
};

net::Response serve_api(Chain& chain, const net::Request& request) {
    const auto* endpoint = std::find_if(std::begin(kEndpoints), std::end(kEndpoints),
                                        [&](const Endpoint& e) { return e.path == request.path; });
    if (endpoint == std::end(kEndpoints)) {
        return api_error(404, "Not Found", "unknown endpoint", "Unknown Endpoint");
    }
    if (!(request.method == "GET" && endpoint->get) &&
        !(request.method == "POST" && endpoint->post)) {
        const std::string allow = endpoint->get ? "GET, POST" : "POST";
        auto response =
            api_error(405, "Method Not Allowed", "method not allowed", "Allowed: " + allow);
        response.headers.push_back(net::Header{.name = "Allow", .value = allow});
        return response;
    }
    if (request.path == "/v1/chain/get_info") {
        return get_info(chain);
    }
    if (request.path == "/v1/chain/get_producer_schedule") {
        return producer_schedule(chain);
    }
    if (request.path == "/v1/producer/paused") {
        return json_response(chain.paused.load());
    }
    return set_paused(chain, request.path == "/v1/producer/pause");
}

asio::awaitable<net::Response> serve_request(Chain* chain, net::Request request) {
    if (request.path.starts_with("/v1/")) {
        co_return serve_api(*chain, request);
    }
    if (request.path != "/status" && request.path != "/healthz") {
        co_return net::Response{.status = 404, .body = "not found\n"};
    }
    if (request.method != "GET" && request.method != "HEAD") {
        co_return net::Response{.status = 405, .body = "method not allowed\n"};
    }
    if (request.path == "/healthz") {
        co_return net::Response{.body = "ok\n"};
    }
    co_return status_response(*chain);
}

// When DATA_DIR/height was last written: when the head block a restarted node resumes from was
// made. Now when the file cannot be read.
Clock::time_point made_at(const fs::path& height_file) {
    std::error_code ec;
    const auto written = fs::last_write_time(height_file, ec);
    if (ec) {
        return Clock::now();
    }
    return std::chrono::time_point_cast<Clock::duration>(std::chrono::file_clock::to_sys(written));
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
        chain_.chain_id = options_.chain_id.empty() ? sha256_hex(kChainName) : options_.chain_id;
        chain_.schedule = options_.schedule;
        chain_.round_blocks = options_.round_blocks;
    }

    int run();

private:
    core::Result<void> load_height();
    core::Result<std::optional<std::int64_t>> make_block();
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
    chain_.paused = options_.paused;
    auto server_settings = net::ServerSettings{.listen = options_.listen,
                                               .io_threads = 1,
                                               .read_timeout = 5s,
                                               .idle_timeout = 5s,
                                               .write_timeout = 5s,
                                               .max_connections = 64,
                                               .shutdown_grace = 1s};
    Chain* chain = &chain_;
    net::HttpServer server{server_settings, [chain](net::Request request) {
                               return serve_request(chain, std::move(request));
                           }};
    auto port = serve(server);
    if (!port) {
        server.stop();
        return fail(port.error().message);
    }
    std::printf("serving on port %s version %s height %lld%s\n", port->c_str(),
                options_.version.c_str(), static_cast<long long>(chain_.height()),
                options_.paused ? " paused" : "");
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
        chain_.publish(**height, made_at(data_dir_ / "height"));
        return {};
    }
    if (options_.import.empty()) {
        chain_.publish(0, Clock::now());
        return {};
    }
    // A data dir without a height is new: start from the snapshot, as a chart's init container
    // would, and keep it at once so a restart before the first block does not import again.
    auto snapshot = sim::read_snapshot(options_.import);
    if (!snapshot) {
        return core::Error{snapshot.error().code, "cannot import: " + snapshot.error().message};
    }
    chain_.publish(*snapshot, Clock::now());
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
        auto block = make_block();
        if (!block) {
            std::fprintf(stderr, "sim-node: %s\n", block.error().message.c_str());
            finish(1);
            co_return;
        }
        if (!*block) {
            continue;  // paused
        }
        const auto height = **block;
        if (++produced >= options_.sync_blocks) {
            chain_.syncing = false;
        }
        std::printf("block %lld version %s\n", static_cast<long long>(height),
                    options_.version.c_str());
        std::fflush(stdout);
    }
}

// The next block's height, or nullopt while paused. See the top of the file for the lock.
core::Result<std::optional<std::int64_t>> SimNode::make_block() {
    std::lock_guard lock{chain_.production};
    if (chain_.paused && !options_.follow) {
        return std::optional<std::int64_t>{};
    }
    const auto height = chain_.height() + 1;
    // Kept before it is shown: a node killed at any point restarts from a height it reported.
    if (auto written = sim::write_height(data_dir_, height); !written) {
        return written.error();
    }
    chain_.publish(height, Clock::now());
    return std::optional<std::int64_t>{height};
}

asio::awaitable<void> SimNode::watch_signals() {
    auto [ec, signal] = co_await signals_.async_wait(kUseTuple);
    if (ec) {
        co_return;
    }
    std::printf("signal %d: stopping at height %lld\n", signal,
                static_cast<long long>(chain_.height()));
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
                     "[--parent-pid PID] [--listen 127.0.0.1:0] [--chain-id HEX] [--paused] "
                     "[--follow] [--schedule NAME,NAME...] [--round-blocks N]\n"
                     "  --chain-id HEX  the chain id get_info shows: 64 hex digits (default: the "
                     "SHA-256 of \"aviary-sim\", 081ee42f...)\n"
                     "  --paused        start with block production paused (as after "
                     "POST /v1/producer/pause)\n"
                     "  --follow        while paused, the head still advances (the blocks a "
                     "passive producer receives)\n"
                     "  --schedule A,B  the producer schedule get_producer_schedule shows; each "
                     "makes --round-blocks blocks (default 12) in turn, as get_info's "
                     "head_block_producer says (default: eosio alone)\n"
                     "serves GET /status and /healthz, and nodeos's /v1/chain/get_info, "
                     "/v1/chain/get_producer_schedule and /v1/producer/pause, /resume, "
                     "/paused\n");
        return kBadArgs;
    }
    // Quiet: the driver drops our output anyway, and three nodes run at once in the demo.
    (void)core::configure_logging("warn", "text");
    SimNode node{std::move(*options)};
    return node.run();
}

}  // namespace aviary::drivers
