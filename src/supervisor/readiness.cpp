#include "supervisor/readiness.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <iterator>

#include "net/net.hpp"

namespace aviary::supervisor {
namespace {

namespace json = boost::json;
using namespace boost::asio::experimental::awaitable_operators;

core::Error bad_answer(std::string why) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(why)};
}

const json::value* at(const json::value& root, const std::string& pointer) {
    boost::system::error_code ec;
    const json::value* found = root.find_pointer(pointer, ec);
    return ec ? nullptr : found;
}

std::optional<std::int64_t> parse_integer(std::string_view text, int base) {
    std::int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
    if (ec != std::errc{} || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

core::Result<std::int64_t> number_of(const json::value& v, const Field& field) {
    if (field.format == "hex") {
        if (v.is_string()) {
            std::string_view s = v.as_string();
            if (s.starts_with("0x") || s.starts_with("0X")) {
                s.remove_prefix(2);
            }
            if (auto n = parse_integer(s, 16)) {
                return *n;
            }
        }
        return bad_answer(
            fmt::format("{}: expected a hex number, got {}", field.pointer, json::serialize(v)));
    }
    if (v.is_int64()) {
        return v.as_int64();
    }
    if (v.is_uint64()) {
        return static_cast<std::int64_t>(v.as_uint64());
    }
    if (v.is_string()) {
        if (auto n = parse_integer(v.as_string(), 10)) {
            return *n;
        }
    }
    return bad_answer(
        fmt::format("{}: expected a number, got {}", field.pointer, json::serialize(v)));
}

core::Result<core::TimePoint> time_of(const json::value& v, const Field& field) {
    if (field.format == "unix") {
        // Seconds as a number, a decimal string, or a hex string (geth's "0x6756a1c3").
        const bool hex =
            v.is_string() && (v.as_string().starts_with("0x") || v.as_string().starts_with("0X"));
        auto seconds = number_of(v, Field{field.pointer, hex ? "hex" : "number"});
        if (!seconds) {
            return seconds.error();
        }
        return core::TimePoint{std::chrono::seconds{*seconds}};
    }
    if (!v.is_string()) {
        return bad_answer(
            fmt::format("{}: expected a time, got {}", field.pointer, json::serialize(v)));
    }
    std::string text{v.as_string()};
    // nodeos prints UTC without a zone: "2026-12-04T15:01:02.500".
    const auto t = text.find('T');
    if (t != std::string::npos && text.find_first_of("Z+", t) == std::string::npos &&
        text.find('-', t) == std::string::npos) {
        text += 'Z';
    }
    auto parsed = core::parse_time(text);
    if (!parsed) {
        return bad_answer(fmt::format("{}: expected an ISO 8601 time, got {}", field.pointer,
                                      json::serialize(v)));
    }
    return *parsed;
}

core::Result<json::value> parse_json(std::string_view body) {
    boost::system::error_code ec;
    json::parse_options options;
    options.max_depth = 64;
    auto value = json::parse(body, ec, {}, options);
    if (ec) {
        return bad_answer(fmt::format("the node's answer is not JSON ({})", ec.message()));
    }
    return value;
}

std::string ago(std::chrono::steady_clock::duration d) {
    return core::format_duration(std::chrono::duration_cast<core::Millis>(d));
}

}  // namespace

core::Result<HeadFields> read_head(const Preset& preset, std::string_view body) {
    auto root = parse_json(body);
    if (!root) {
        return root.error();
    }
    if (const auto* error = at(*root, "/error"); error != nullptr && !error->is_null()) {
        return bad_answer(fmt::format("the node answered an error: {}", json::serialize(*error)));
    }
    HeadFields out;
    const auto* height = at(*root, preset.height.pointer);
    if (height == nullptr) {
        return bad_answer(fmt::format("no {} in the node's answer", preset.height.pointer));
    }
    auto h = number_of(*height, preset.height);
    if (!h) {
        return h.error();
    }
    out.height = *h;
    if (!preset.head_time.pointer.empty()) {
        if (const auto* t = at(*root, preset.head_time.pointer)) {
            auto parsed = time_of(*t, preset.head_time);
            if (!parsed) {
                return parsed.error();
            }
            out.head_time = *parsed;
        }
    }
    if (!preset.chain_id.pointer.empty() && preset.chain_id_call.path.empty()) {
        if (const auto* id = at(*root, preset.chain_id.pointer)) {
            out.chain_id = id->is_string() ? std::string{id->as_string()} : json::serialize(*id);
        }
    }
    // Text as the node gives it, capped: it is only recorded and shown.
    constexpr std::size_t kMaxText = 256;
    auto text_at = [&](const Field& field) {
        const auto* v = field.pointer.empty() ? nullptr : at(*root, field.pointer);
        if (v == nullptr || v->is_null()) {
            return std::string{};
        }
        std::string text = v->is_string() ? std::string{v->as_string()} : json::serialize(*v);
        return text.substr(0, kMaxText);
    };
    out.block_hash = text_at(preset.block_hash);
    out.head_producer = text_at(preset.head_producer);
    if (preset.version_call.path.empty()) {
        out.node_version = text_at(preset.node_version);
    }
    return out;
}

core::Result<std::vector<std::string>> read_schedule(const Preset& preset, std::string_view body) {
    auto root = parse_json(body);
    if (!root) {
        return root.error();
    }
    const auto* list = at(*root, preset.schedule_list);
    if (list == nullptr || !list->is_array()) {
        return bad_answer(
            fmt::format("no list of producers at {} in the schedule", preset.schedule_list));
    }
    // nodeos's schedules hold 21; a bound keeps a hostile answer from growing the status.
    constexpr std::size_t kMaxProducers = 1000;
    std::vector<std::string> names;
    for (const auto& entry : list->as_array()) {
        const auto* name = preset.schedule_name.empty() ? &entry : at(entry, preset.schedule_name);
        if (name == nullptr || !name->is_string() || name->as_string().empty()) {
            return bad_answer(fmt::format(
                "a producer in the schedule at {} has no name at {}", preset.schedule_list,
                preset.schedule_name.empty() ? "itself" : preset.schedule_name));
        }
        if (names.size() == kMaxProducers) {
            return bad_answer(
                fmt::format("the schedule lists more than {} producers", kMaxProducers));
        }
        names.emplace_back(name->as_string().data(),
                           std::min<std::size_t>(name->as_string().size(), 256));
    }
    return names;
}

Round round_of(const std::vector<std::string>& schedule,
               std::string_view head_producer,
               std::string_view account) {
    const auto ours = std::find(schedule.begin(), schedule.end(), account);
    if (ours == schedule.end()) {
        return Round{.status = "not producing", .in_schedule = false};
    }
    const auto head = std::find(schedule.begin(), schedule.end(), head_producer);
    if (head == ours) {
        return Round{.status = "producing", .in_schedule = true};
    }
    if (head == schedule.end()) {
        // A head made by a producer not (or no longer) scheduled: a schedule change is under
        // way, and where the rounds stand is not known.
        return Round{.status = "not producing", .in_schedule = true};
    }
    const auto next = std::next(head) == schedule.end() ? schedule.begin() : std::next(head);
    if (next == ours) {
        return Round{.status = "producing next", .in_schedule = true};
    }
    const auto after_ours = std::next(ours) == schedule.end() ? schedule.begin() : std::next(ours);
    if (after_ours == head) {
        return Round{.status = "just produced", .in_schedule = true};
    }
    return Round{.status = "not producing", .in_schedule = true};
}

core::Result<bool> read_syncing(const Preset& preset, std::string_view body) {
    auto root = parse_json(body);
    if (!root) {
        return root.error();
    }
    const auto* v = at(*root, preset.syncing_field.pointer);
    if (v == nullptr) {
        return bad_answer(fmt::format("no {} in the node's answer", preset.syncing_field.pointer));
    }
    if (v->is_bool()) {
        return v->as_bool();
    }
    return v->is_object();  // geth's eth_syncing: false, or an object while syncing
}

ReadinessReader::ReadinessReader(const Settings& settings, boost::asio::any_io_executor executor)
    : settings_(settings), executor_(std::move(executor)) {}

void ReadinessReader::reset() {
    answered_ = false;
    was_ready_ = false;
    last_height_.reset();
    last_advance_ = std::chrono::steady_clock::now();
    version_.clear();  // an upgrade restarts the node
    schedule_read_ = {};
}

Readiness ReadinessReader::first() const {
    return settings_.preset.readiness == "process" ? Readiness::kReady : Readiness::kStarting;
}

std::string ReadinessReader::first_reason() const {
    return first() == Readiness::kReady ? "" : "starting: the node has not answered yet";
}

boost::asio::awaitable<core::Result<std::string>> ReadinessReader::call(const ChainCall& c,
                                                                        const std::string& base) {
    net::ClientRequest request;
    request.method = c.method;
    request.url = base + c.path;
    request.body = c.body;
    if (!c.body.empty()) {
        request.headers.push_back({"Content-Type", "application/json"});
    }
    request.timeout = settings_.synced.timeout;
    request.max_body_bytes = std::size_t{1} << 20U;
    auto response = co_await net::fetch(std::move(request));
    if (!response) {
        co_return response.error();
    }
    if (response->status < 200 || response->status >= 300) {
        co_return core::Error{core::ErrorCode::kUnavailable,
                              fmt::format("{} {} answered {}", c.method, c.path, response->status)};
    }
    co_return std::move(response->body);
}

boost::asio::awaitable<std::optional<std::int64_t>> ReadinessReader::reference_height() {
    if (settings_.synced.reference.empty()) {
        co_return std::nullopt;
    }
    auto body = co_await call(settings_.preset.head, settings_.synced.reference);
    if (!body) {
        co_return std::nullopt;
    }
    auto head = read_head(settings_.preset, *body);
    if (!head || !head->height) {
        co_return std::nullopt;
    }
    co_return *head->height;
}

Reading ReadinessReader::judge(const HeadFields& head,
                               bool syncing,
                               std::optional<std::int64_t> reference) {
    Reading r{.height = head.height,
              .head_time = head.head_time,
              .chain_id = head.chain_id,
              .block_hash = head.block_hash,
              .node_version = head.node_version,
              .head_producer = head.head_producer};
    const auto now = std::chrono::steady_clock::now();
    if (head.height && (!last_height_ || *head.height > *last_height_)) {
        if (last_height_) {
            last_advance_ = now;
        }
        last_height_ = head.height;
    }
    const auto& preset = settings_.preset;
    const auto& rule = settings_.synced;
    const auto height = head.height ? std::to_string(*head.height) : std::string{"?"};
    if (syncing) {
        r.readiness = Readiness::kSyncing;
        r.reason = fmt::format("syncing: the node says so (head {})", height);
        return r;
    }
    if (head.head_time) {
        const auto wall =
            std::chrono::time_point_cast<core::Millis>(std::chrono::system_clock::now());
        const auto age = wall - *head.head_time;
        if (age > rule.max_head_age) {
            r.readiness = was_ready_ ? Readiness::kLagging : Readiness::kSyncing;
            r.reason =
                fmt::format("{}: head {} is {} old", to_string(r.readiness), height,
                            core::format_duration(std::chrono::duration_cast<core::Millis>(age)));
            return r;
        }
    }
    if (reference && head.height && *reference - *head.height > rule.max_lag_blocks) {
        r.readiness = was_ready_ ? Readiness::kLagging : Readiness::kSyncing;
        r.reason =
            fmt::format("{}: {} blocks behind the reference (head {}, reference {})",
                        to_string(r.readiness), *reference - *head.height, height, *reference);
        return r;
    }
    const auto stall = preset.block_interval * rule.stall_blocks;
    if (now - last_advance_ > stall) {
        r.readiness = Readiness::kStalled;
        r.reason = fmt::format("stalled: head {} has not advanced in {}", height,
                               ago(now - last_advance_));
        return r;
    }
    was_ready_ = true;
    r.readiness = Readiness::kReady;
    return r;
}

boost::asio::awaitable<Reading> ReadinessReader::read() {
    const auto& preset = settings_.preset;
    auto not_answering = [this](const core::Error& error) {
        Reading r;
        r.readiness = answered_ ? Readiness::kStalled : Readiness::kStarting;
        r.reason = fmt::format("{}: the node's API does not answer ({})", to_string(r.readiness),
                               error.message);
        return r;
    };
    if (preset.readiness == "process") {
        co_return Reading{.readiness = Readiness::kReady};
    }
    if (preset.readiness == "tcp") {
        auto address = net::split_host_port(
            settings_.upstream.substr(settings_.upstream.find("://") == std::string::npos
                                          ? 0
                                          : settings_.upstream.find("://") + 3));
        if (!address) {
            co_return not_answering(address.error());
        }
        boost::asio::ip::tcp::socket socket{executor_};
        boost::asio::ip::tcp::resolver resolver{executor_};
        boost::system::error_code ec;
        // Resolve and connect within synced.timeout: a peer that drops SYNs must not hold the
        // reading for the kernel's minutes.
        boost::asio::steady_timer deadline{executor_, settings_.synced.timeout};
        auto connect = [&]() -> boost::asio::awaitable<void> {
            auto endpoints = co_await resolver.async_resolve(
                address->first, std::to_string(address->second),
                boost::asio::redirect_error(boost::asio::use_awaitable, ec));
            if (!ec) {
                co_await boost::asio::async_connect(
                    socket, endpoints, boost::asio::redirect_error(boost::asio::use_awaitable, ec));
            }
        };
        auto which = co_await (
            connect() || deadline.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable)));
        if (which.index() == 1) {
            ec = boost::asio::error::timed_out;
        }
        if (ec) {
            co_return not_answering(core::Error{core::ErrorCode::kUnavailable, ec.message()});
        }
        answered_ = true;
        co_return Reading{.readiness = Readiness::kReady};
    }
    if (preset.readiness == "http") {
        auto body = co_await call(preset.health);
        if (!body) {
            co_return not_answering(body.error());
        }
        answered_ = true;
        co_return Reading{.readiness = Readiness::kReady};
    }
    auto body = co_await call(preset.head);
    if (!body) {
        co_return not_answering(body.error());
    }
    auto head = read_head(preset, *body);
    if (!head) {
        co_return not_answering(head.error());
    }
    answered_ = true;
    if (!preset.chain_id_call.path.empty() && chain_id_.empty()) {
        if (auto id_body = co_await call(preset.chain_id_call)) {
            if (auto root = parse_json(*id_body)) {
                if (const auto* id = at(*root, preset.chain_id.pointer)) {
                    chain_id_ =
                        id->is_string() ? std::string{id->as_string()} : json::serialize(*id);
                }
            }
        }
    }
    if (head->chain_id.empty()) {
        head->chain_id = chain_id_;
    }
    if (!preset.version_call.path.empty() && version_.empty()) {
        if (auto version_body = co_await call(preset.version_call)) {
            if (auto root = parse_json(*version_body)) {
                if (const auto* v = at(*root, preset.node_version.pointer);
                    v != nullptr && !v->is_null()) {
                    version_ = (v->is_string() ? std::string{v->as_string()} : json::serialize(*v))
                                   .substr(0, 256);
                }
            }
        }
    }
    if (head->node_version.empty()) {
        head->node_version = version_;
    }
    bool syncing = false;
    if (!preset.syncing.path.empty()) {
        auto sync_body = co_await call(preset.syncing);
        if (!sync_body) {
            co_return not_answering(sync_body.error());
        }
        auto said = read_syncing(preset, *sync_body);
        if (!said) {
            co_return not_answering(said.error());
        }
        syncing = *said;
    }
    auto reference = co_await reference_height();
    co_return judge(*head, syncing, reference);
}

boost::asio::awaitable<core::Result<std::vector<std::string>>> ReadinessReader::schedule() {
    const auto& preset = settings_.preset;
    if (preset.schedule.path.empty()) {
        co_return core::Error{core::ErrorCode::kUnavailable, "the preset reads no schedule"};
    }
    // Schedules change rarely (nodeos: by a vote of the producers), so one read a minute.
    constexpr auto kScheduleAge = std::chrono::minutes{1};
    const auto now = std::chrono::steady_clock::now();
    if (schedule_read_ != std::chrono::steady_clock::time_point{} &&
        now - schedule_read_ < kScheduleAge) {
        co_return schedule_;
    }
    auto body = co_await call(preset.schedule);
    if (!body) {
        co_return body.error();
    }
    auto names = read_schedule(preset, *body);
    if (!names) {
        co_return names.error();
    }
    schedule_ = std::move(*names);
    schedule_read_ = now;
    co_return schedule_;
}

}  // namespace aviary::supervisor
