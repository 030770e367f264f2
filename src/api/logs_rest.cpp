#include "api/logs_rest.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <limits>
#include <memory>
#include <span>

#include "api/log_shipping.hpp"
#include "api/rest.hpp"
#include "core/regex.hpp"

namespace aviary::api {
namespace {

namespace asio = net::asio;
namespace json = boost::json;
using namespace asio::experimental::awaitable_operators;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

constexpr std::string_view kRecordsTopic = "records/";
constexpr std::int64_t kDefaultLimit = 100;
/// How many bytes of records one tail message carries at most (a batch is split past it).
constexpr std::size_t kTailMessageBytes = std::size_t{512} * 1024;
/// A tail waits this long on the hub before looking at its connection again.
constexpr core::Millis kTailWait{std::chrono::seconds{15}};

std::string topic_of(std::string_view scope) {
    return fmt::format("{}{}", kRecordsTopic, scope);
}

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

json::object record_json(const store::LogRecord& r) {
    const auto at = core::TimePoint{
        std::chrono::duration_cast<core::Millis>(std::chrono::nanoseconds{r.time_ns})};
    json::object out{{"id", r.id},
                     {"kind", r.kind == store::LogKind::kLog ? "log" : "notification"},
                     {"time", core::format_time(at)},
                     {"time_ns", r.time_ns},
                     {"level", r.level},
                     {"sender", r.sender},
                     {"node", r.node},
                     {"source", r.source},
                     {"message", r.message},
                     {"scope", r.scope}};
    if (!r.fields.empty()) {
        boost::system::error_code ec;
        auto fields = json::parse(r.fields, ec);  // stored as a checked object
        if (!ec) {
            out["fields"] = std::move(fields);
        }
    }
    return out;
}

/// `kind=logs|notifications` (and `all` where both are allowed).
core::Result<std::optional<store::LogKind>> kind_of(std::string_view value, bool all_allowed) {
    if (value == "logs") {
        return std::optional<store::LogKind>{store::LogKind::kLog};
    }
    if (value == "notifications") {
        return std::optional<store::LogKind>{store::LogKind::kNotification};
    }
    if (value == "all" && all_allowed) {
        return std::optional<store::LogKind>{};
    }
    return invalid(fmt::format("query parameter \"kind\" must be logs{}, got \"{}\"",
                               all_allowed ? ", notifications or all" : " or notifications",
                               value));
}

/// A point in time: a duration ago ("10m") or a time ("2026-12-05T09:00:00Z").
core::Result<core::TimePoint> time_param(std::string_view name,
                                         std::string_view value,
                                         core::TimePoint now) {
    if (auto ago = core::parse_duration(value)) {
        return now - *ago;
    }
    if (auto at = core::parse_time(value)) {
        return *at;
    }
    return invalid(
        fmt::format("query parameter \"{}\" must be a duration ago (\"10m\") or a time "
                    "(\"2026-12-05T09:00:00Z\"), got \"{}\"",
                    name, value));
}

std::int64_t ns_of(core::TimePoint t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

/// The REST cursor: where the last page ended, "TIME_NS.ID".
core::Result<store::LogPosition> position_of(std::string_view cursor) {
    const auto dot = cursor.find('.');
    store::LogPosition out;
    auto read = [](std::string_view text, std::int64_t& n) {
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        return ec == std::errc{} && end == text.data() + text.size() && n >= 0;
    };
    if (dot == std::string_view::npos || !read(cursor.substr(0, dot), out.time_ns) ||
        !read(cursor.substr(dot + 1), out.id)) {
        return invalid(fmt::format(
            "query parameter \"cursor\" is not one this server gave (next_cursor), got \"{}\"",
            cursor));
    }
    return out;
}

std::string cursor_of(const store::LogRecord& r) {
    return fmt::format("{}.{}", r.time_ns, r.id);
}

constexpr std::string_view kFilterKeys =
    "node, service (or sender), source, level, contains, regex, node_regex, service_regex, "
    "source_regex, field.<path>";

/// The filters a search and a tail share (docs/logs.md, "Queries"): true when `key` was one.
core::Result<bool> read_filter(std::string_view key,
                               std::string_view value,
                               store::LogFilter& filter) {
    auto label = [&](std::optional<std::string>& out) {
        out = std::string{value};
        return true;
    };
    if (key == "node") {
        return label(filter.node);
    }
    if (key == "service" || key == "sender") {
        return label(filter.sender);
    }
    if (key == "source") {
        return label(filter.source);
    }
    if (key == "level") {
        auto level = query_integer(key, value, std::numeric_limits<int>::min(),
                                   std::numeric_limits<int>::max());
        if (!level) {
            return level.error();
        }
        filter.max_level = static_cast<int>(*level);
        return true;
    }
    if (key == "contains") {
        if (value.empty()) {
            return invalid("query parameter \"contains\" must not be empty");
        }
        filter.contains = std::string{value};
        return true;
    }
    std::optional<std::string>* regex = key == "regex"           ? &filter.message_regex
                                        : key == "node_regex"    ? &filter.node_regex
                                        : key == "service_regex" ? &filter.sender_regex
                                        : key == "sender_regex"  ? &filter.sender_regex
                                        : key == "source_regex"  ? &filter.source_regex
                                                                 : nullptr;
    if (regex != nullptr) {
        if (auto compiled = core::Regex::compile(value); !compiled) {
            return invalid(
                fmt::format("query parameter \"{}\": {}", key, compiled.error().message));
        }
        *regex = std::string{value};
        return true;
    }
    if (key.starts_with("field.")) {
        const auto path = key.substr(6);
        const bool plain = !path.empty() && std::all_of(path.begin(), path.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' ||
                   c == '.';
        });
        if (!plain || path.front() == '.' || path.back() == '.' ||
            path.find("..") != std::string_view::npos) {
            return invalid(
                fmt::format("query parameter \"{}\": a field path is names joined by "
                            "dots (field.peer.id=...), letters, digits, _ and -",
                            key));
        }
        if (filter.fields.size() == store::LogFilter::kMaxFields) {
            return invalid(fmt::format("at most {} field.<path> filters in one query",
                                       store::LogFilter::kMaxFields));
        }
        std::string json_path = "$";
        for (std::size_t at = 0; at <= path.size();) {
            const auto dot = std::min(path.find('.', at), path.size());
            json_path += fmt::format(".\"{}\"", path.substr(at, dot - at));
            at = dot + 1;
        }
        std::string wanted{value};
        if (wanted == "true" || wanted == "false") {
            wanted = wanted == "true" ? "1" : "0";  // SQLite's JSON booleans read as 1 and 0
        }
        filter.fields.push_back({std::move(json_path), std::move(wanted)});
        return true;
    }
    return false;
}

constexpr std::string_view kLokiSenders[] = {"sender", "service_name", "service",
                                             "job",    "app",          "container"};
constexpr std::string_view kLokiNodes[] = {"node", "host", "hostname", "instance", "pod"};
constexpr std::string_view kLokiSources[] = {"source", "stream", "filename"};
constexpr std::string_view kLokiLevels[] = {"level", "detected_level", "severity"};

/// The first of `names` that `labels` has as a non-empty string, and which one; "" when none.
std::pair<std::string, std::string_view> first_label(const json::object& labels,
                                                     std::span<const std::string_view> names) {
    for (auto name : names) {
        if (const auto* v = labels.if_contains(name);
            v != nullptr && v->is_string() && !v->as_string().empty()) {
            return {std::string{v->as_string()}, name};
        }
    }
    return {};
}

/// A Loki stream's labels as aviary's: service (sender), node and source from the usual label
/// names (docs/logs.md, "Shipping with Promtail, Vector or Alloy"), the rest as free fields.
struct LokiLabels {
    std::string sender;
    std::string node;
    std::string source;
    json::object rest;
};

LokiLabels loki_labels(const json::object& labels) {
    LokiLabels out;
    auto [sender, sender_name] = first_label(labels, kLokiSenders);
    auto [node, node_name] = first_label(labels, kLokiNodes);
    auto [source, source_name] = first_label(labels, kLokiSources);
    out.sender = sender.empty() ? (node.empty() ? "loki" : node) : std::move(sender);
    out.node = std::move(node);
    out.source = std::move(source);
    for (const auto& [name, value] : labels) {
        const bool used = name == sender_name || name == node_name || name == source_name ||
                          std::find(std::begin(kLokiLevels), std::end(kLokiLevels), name) !=
                              std::end(kLokiLevels);
        if (!used) {
            out.rest[name] = value;
        }
    }
    return out;
}

/// A Loki stream's level label as a number: syslog's severities by name, or a number as given;
/// 6 (info) when it has none.
core::Result<int> loki_level(const json::object& labels) {
    const json::value* level = nullptr;
    for (auto name : kLokiLevels) {
        if ((level = labels.if_contains(name)) != nullptr) {
            break;
        }
    }
    if (level == nullptr || !level->is_string()) {
        return 6;
    }
    std::string text{level->as_string()};
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    static constexpr std::pair<std::string_view, int> kNames[] = {
        {"emergency", 0}, {"emerg", 0}, {"alert", 1},       {"critical", 2}, {"crit", 2},
        {"fatal", 2},     {"error", 3}, {"err", 3},         {"warning", 4},  {"warn", 4},
        {"notice", 5},    {"info", 6},  {"information", 6}, {"debug", 7},    {"trace", 7}};
    for (const auto& [name, number] : kNames) {
        if (text == name) {
            return number;
        }
    }
    int number = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (ec == std::errc{} && end == text.data() + text.size()) {
        return number;
    }
    return invalid(
        fmt::format("level \"{}\" is neither a severity name (error, warn, info...) "
                    "nor a number",
                    text));
}

/// Loki's JSON push body: {"streams":[{"stream":{labels},"values":[["<unix ns>","line"],...]}]}.
core::Result<std::vector<store::LogRecord>> read_loki_push(std::string_view body,
                                                           std::size_t max_entries) {
    boost::system::error_code ec;
    json::parse_options options;
    options.max_depth = 16;
    auto value = json::parse(body, ec, {}, options);
    if (ec) {
        return invalid(fmt::format("the body is not JSON: {}", ec.message()));
    }
    const auto* streams = value.is_object() ? value.as_object().if_contains("streams") : nullptr;
    if (streams == nullptr || !streams->is_array()) {
        return invalid(
            "a push is {\"streams\": [{\"stream\": {labels}, \"values\": "
            "[[\"<unix ns>\", \"line\"], ...]}]}");
    }
    std::vector<store::LogRecord> records;
    std::size_t s = 0;
    for (const auto& stream : streams->as_array()) {
        const auto* labels =
            stream.is_object() ? stream.as_object().if_contains("stream") : nullptr;
        const auto* values =
            stream.is_object() ? stream.as_object().if_contains("values") : nullptr;
        if (labels == nullptr || !labels->is_object() || values == nullptr || !values->is_array()) {
            return invalid(
                fmt::format("streams[{}] needs \"stream\" (an object of labels) and "
                            "\"values\" (a list)",
                            s));
        }
        auto level = loki_level(labels->as_object());
        if (!level) {
            return invalid(fmt::format("streams[{}].stream: {}", s, level.error().message));
        }
        const auto mapped = loki_labels(labels->as_object());
        std::size_t v = 0;
        for (const auto& entry : values->as_array()) {
            const auto* pair = entry.is_array() ? &entry.as_array() : nullptr;
            std::int64_t ns = 0;
            bool ok = pair != nullptr && pair->size() >= 2 && (*pair)[0].is_string() &&
                      (*pair)[1].is_string();
            if (ok) {
                const auto text = (*pair)[0].as_string();
                auto [end, parsed] = std::from_chars(text.data(), text.data() + text.size(), ns);
                ok = parsed == std::errc{} && end == text.data() + text.size() && ns >= 0;
            }
            if (!ok) {
                return invalid(
                    fmt::format("streams[{}].values[{}] must be [\"<unix time in ns>\", "
                                "\"line\"]",
                                s, v));
            }
            if (records.size() == max_entries) {
                return invalid(fmt::format("the push holds more than {} lines (logs.max_upload)",
                                           max_entries));
            }
            // Structured metadata (a third member, an object of strings) joins the fields.
            json::object fields = mapped.rest;
            if (pair->size() >= 3 && (*pair)[2].is_object()) {
                for (const auto& [name, value] : (*pair)[2].as_object()) {
                    fields[name] = value;
                }
            }
            records.push_back(store::LogRecord{
                .time_ns = ns,
                .level = *level,
                .sender = mapped.sender,
                .message = std::string{(*pair)[1].as_string()},
                .node = mapped.node,
                .source = mapped.source,
                .fields = fields.empty() ? std::string{} : json::serialize(fields)});
            ++v;
        }
        ++s;
    }
    return records;
}

std::string message(std::string_view type, json::object fields) {
    fields["type"] = type;
    return json::serialize(fields);
}

}  // namespace

void publish_records(net::Hub& hub, const std::vector<store::LogRecord>& records) {
    // A wake-up per scope: tails read what is new from the store, in stored order.
    std::vector<std::string_view> scopes;
    for (const auto& record : records) {
        if (std::find(scopes.begin(), scopes.end(), record.scope) == scopes.end()) {
            scopes.push_back(record.scope);
        }
    }
    for (auto scope : scopes) {
        publish_stored(hub, scope, records.back().id);
    }
}

void publish_stored(net::Hub& hub, std::string_view scope, std::int64_t last_id) {
    hub.publish(topic_of(scope), std::to_string(last_id));
}

struct LogsRest::Tail {
    std::string identity;
    std::optional<std::string> scope;  ///< nullopt: every scope (an admin's tail)
    std::optional<store::LogKind> kind;
    store::LogFilter filter;
    std::optional<std::int64_t> resume;  ///< the cursor the client came back with
    std::int64_t cursor = 0;             ///< every record up to this id was looked at
    std::unique_ptr<net::Subscription> wakeups;
};

struct LogsRest::TailSink {
    virtual ~TailSink() = default;
    virtual asio::any_io_executor executor() = 0;
    /// Sends one message; false once the client is gone.
    virtual asio::awaitable<bool> send(std::string text) = 0;
    /// Ends the tail with `code` and `reason` after what was sent (a WebSocket close frame).
    virtual void close(std::uint16_t code, std::string reason) = 0;
    virtual bool is_open() const = 0;
    /// Completes when the client has gone, where that can be seen without writing.
    virtual asio::awaitable<void> gone() = 0;
    /// True where a client's leaving is seen only by writing: idle tails send heartbeats.
    virtual bool needs_heartbeats() const = 0;
};

namespace {

class WebSocketSink final : public LogsRest::TailSink {
public:
    explicit WebSocketSink(net::WebSocket& ws) : ws_(ws) {}
    asio::any_io_executor executor() override { return ws_.executor(); }
    asio::awaitable<bool> send(std::string text) override {
        co_return ws_.send_text(std::move(text));
    }
    void close(std::uint16_t code, std::string reason) override {
        ws_.close(code, std::move(reason));
    }
    bool is_open() const override { return ws_.is_open(); }
    asio::awaitable<void> gone() override {
        // A tail only sends; reading notices the client leaving (and answers its pings).
        while (true) {
            auto got = co_await ws_.read();
            if (!got) {
                co_return;
            }
        }
    }
    bool needs_heartbeats() const override { return false; }

private:
    net::WebSocket& ws_;
};

class NdjsonSink final : public LogsRest::TailSink {
public:
    NdjsonSink(net::ResponseStream& stream, asio::any_io_executor executor)
        : stream_(stream), executor_(std::move(executor)) {}
    asio::any_io_executor executor() override { return executor_; }
    asio::awaitable<bool> send(std::string text) override {
        if (open_) {
            open_ = co_await stream_.write(std::move(text) + "\n");
        }
        co_return open_;
    }
    void close(std::uint16_t, std::string) override { open_ = false; }
    bool is_open() const override { return open_; }
    asio::awaitable<void> gone() override {
        asio::steady_timer never{executor_, asio::steady_timer::time_point::max()};
        co_await never.async_wait(kUseTuple);
    }
    bool needs_heartbeats() const override { return true; }

private:
    net::ResponseStream& stream_;
    asio::any_io_executor executor_;
    bool open_ = true;
};

}  // namespace

LogsRest::LogsRest(logs::Logs& logs, net::BlockingPool& pool, net::Hub& records)
    : logs_(logs), pool_(pool), records_(records) {}

void LogsRest::add_routes(RouteTable& table) {
    table.add({.method = "GET", .pattern = "/api/v1/logs", .handler = [this](RouteContext& c) {
                   return search(c);
               }});
    table.add({.method = "POST",
               .pattern = "/loki/api/v1/push",
               .handler = [this](RouteContext& c) { return loki_push(c); },
               .body = BodyKind::kOwn});
    table.add({.method = "GET",
               .pattern = "/api/v1/logs/labels",
               .handler = [this](RouteContext& c) { return labels(c, std::nullopt); }});
    table.add({.method = "GET",
               .pattern = "/api/v1/logs/labels/{name}/values",
               .handler = [this](RouteContext& c) { return labels(c, c.params["name"]); }});
    table.add({.method = "POST",
               .pattern = "/api/v1/logs/ship",
               .handler = [this](RouteContext& c) { return ship(c); },
               .body = BodyKind::kOwn});
    table.add({.method = "GET",
               .pattern = "/api/v1/logs/tail",
               .handler = [this](RouteContext& c) { return tail(c); },
               .websocket = true});
}

asio::awaitable<net::Response> LogsRest::search(RouteContext& context) {
    const auto now = core::SystemClock{}.now();
    store::LogQuery query;
    query.since_ns = ns_of(now - std::chrono::hours{1});
    query.limit = kDefaultLimit;
    if (!context.caller.admin) {
        query.scope = context.caller.identity;
    }
    for (const auto& [key, value] : context.request.query) {
        auto filter = read_filter(key, value, query.filter);
        if (!filter) {
            co_return error_reply(filter.error());
        }
        if (*filter) {
            continue;
        }
        if (key == "kind") {
            auto kind = kind_of(value, false);
            if (!kind) {
                co_return error_reply(kind.error());
            }
            query.kind = **kind;
        } else if (key == "since" || key == "until") {
            auto at = time_param(key, value, now);
            if (!at) {
                co_return error_reply(at.error());
            }
            (key == "since" ? query.since_ns : query.until_ns.emplace()) = ns_of(*at);
        } else if (key == "limit") {
            auto limit = query_integer(key, value, 1,
                                       static_cast<std::int64_t>(logs_.settings().max_results));
            if (!limit) {
                co_return error_reply(limit.error());
            }
            query.limit = static_cast<std::size_t>(*limit);
        } else if (key == "cursor") {
            auto after = position_of(value);
            if (!after) {
                co_return error_reply(after.error());
            }
            query.after = *after;
        } else if (key == "direction") {
            if (value != "backward" && value != "forward") {
                co_return error_reply(invalid(
                    fmt::format("query parameter \"direction\" must be backward (newest first, the "
                                "default) or forward, got \"{}\"",
                                value)));
            }
            query.oldest_first = value == "forward";
        } else {
            co_return error_reply(unknown_parameter(
                key, fmt::format("kind, since, until, limit, cursor, direction, {}", kFilterKeys)));
        }
    }
    auto work = [this, query] { return logs_.search(query); };
    auto records = co_await net::offload(pool_, std::move(work));
    if (!records) {
        co_return error_reply(records.error());
    }
    json::array out;
    for (const auto& record : *records) {
        out.push_back(record_json(record));
    }
    // A full page, or one the byte bound cut short, may have more below it.
    std::size_t bytes = 0;
    for (const auto& record : *records) {
        bytes += store::bytes_of(record);
    }
    const bool more = !records->empty() &&
                      (records->size() == query.limit || bytes >= logs_.settings().max_read_bytes);
    json::object body{{"records", std::move(out)}};
    body["next_cursor"] = more ? json::value(cursor_of(records->back())) : json::value(nullptr);
    co_return json_reply(200, json::serialize(body));
}

asio::awaitable<net::Response> LogsRest::labels(RouteContext& context,
                                                std::optional<std::string> name) {
    static constexpr std::pair<std::string_view, store::LogLabel> kLabels[] = {
        {"level", store::LogLabel::kLevel},
        {"node", store::LogLabel::kNode},
        {"service", store::LogLabel::kService},
        {"source", store::LogLabel::kSource}};
    std::optional<store::LogLabel> wanted;
    if (name) {
        for (const auto& [label_name, label] : kLabels) {
            if (*name == label_name) {
                wanted = label;
            }
        }
        if (!wanted) {
            co_return error_reply(core::Error{
                core::ErrorCode::kNotFound,
                fmt::format("no label \"{}\": the labels are level, node, service and source "
                            "(other values are free fields, filtered with field.<path>=)",
                            *name)});
        }
    }
    const auto now = core::SystemClock{}.now();
    store::LogLabelQuery query{.since_ns = ns_of(now - std::chrono::hours{24 * 30}),
                               .limit = logs_.settings().max_results};
    if (!context.caller.admin) {
        query.scope = context.caller.identity;
    }
    for (const auto& [key, value] : context.request.query) {
        if (key == "kind") {
            auto kind = kind_of(value, false);
            if (!kind) {
                co_return error_reply(kind.error());
            }
            query.kind = **kind;
        } else if (key == "since") {
            auto at = time_param(key, value, now);
            if (!at) {
                co_return error_reply(at.error());
            }
            query.since_ns = ns_of(*at);
        } else {
            co_return error_reply(unknown_parameter(key, "kind, since"));
        }
    }
    if (wanted) {
        auto work = [this, label = *wanted, query] { return logs_.label_values(label, query); };
        auto values = co_await net::offload(pool_, std::move(work));
        if (!values) {
            co_return error_reply(values.error());
        }
        json::array out;
        for (auto& value : *values) {
            out.emplace_back(std::move(value));
        }
        json::object body{{"label", *name}, {"values", std::move(out)}};
        co_return json_reply(200, json::serialize(body));
    }
    // The labels that have a value among what was stored in the window.
    auto work = [this, query]() -> core::Result<std::vector<std::string>> {
        std::vector<std::string> present;
        auto one = query;
        one.limit = 1;
        for (const auto& [label_name, label] : kLabels) {
            auto values = logs_.label_values(label, one);
            if (!values) {
                return values.error();
            }
            if (!values->empty()) {
                present.emplace_back(label_name);
            }
        }
        return present;
    };
    auto present = co_await net::offload(pool_, std::move(work));
    if (!present) {
        co_return error_reply(present.error());
    }
    json::array out;
    for (auto& label : *present) {
        out.emplace_back(std::move(label));
    }
    json::object body{{"labels", std::move(out)}};
    co_return json_reply(200, json::serialize(body));
}

asio::awaitable<net::Response> LogsRest::loki_push(RouteContext& context) {
    auto plain = [](int status, std::string text) {
        return net::Response{.status = status, .body = std::move(text) + "\n"};
    };
    const auto type = context.request.header("Content-Type").value_or("");
    if (type.find("json") == std::string_view::npos) {
        co_return plain(415, fmt::format("unsupported Content-Type \"{}\": aviary takes Loki's "
                                         "JSON push (application/json), not its protobuf one",
                                         type));
    }
    auto records = read_loki_push(context.request.body, logs_.settings().max_upload);
    if (!records) {
        co_return plain(400, records.error().message);
    }
    auto work = [this, scope = context.caller.identity, records = std::move(*records)]() mutable {
        return logs_.upload(store::LogKind::kLog, scope, std::move(records));
    };
    auto stored = co_await net::offload(pool_, std::move(work));
    if (!stored) {
        co_return plain(stored.error().code == core::ErrorCode::kInvalidArgument ? 400 : 500,
                        stored.error().message);
    }
    if (!stored->empty()) {
        publish_records(records_, *stored);
    }
    co_return net::Response{.status = 204, .body = ""};
}

asio::awaitable<net::Response> LogsRest::ship(RouteContext& context) {
    auto shipment = decode_shipment(context.request.body,
                                    context.request.header("Content-Encoding").value_or(""));
    if (!shipment) {
        co_return error_reply(shipment.error());
    }
    auto work = [this, scope = context.caller.identity, shipment = std::move(*shipment)]() mutable {
        return logs_.ship(scope, std::move(shipment));
    };
    auto stored = co_await net::offload(pool_, std::move(work));
    if (!stored) {
        co_return error_reply(stored.error());
    }
    if (!stored->stored.empty()) {
        publish_records(records_, stored->stored);
    }
    json::object body{{"stored", stored->stored.size()},
                      {"duplicates", stored->duplicates},
                      {"through", stored->through}};
    co_return json_reply(200, json::serialize(body));
}

asio::awaitable<net::Response> LogsRest::tail(RouteContext& context) {
    auto state = std::make_shared<Tail>();
    state->identity = context.caller.identity;
    state->kind = store::LogKind::kLog;
    if (!context.caller.admin) {
        state->scope = context.caller.identity;
    }
    for (const auto& [key, value] : context.request.query) {
        auto filter = read_filter(key, value, state->filter);
        if (!filter) {
            co_return error_reply(filter.error());
        }
        if (*filter) {
            continue;
        }
        if (key == "kind") {
            auto kind = kind_of(value, true);
            if (!kind) {
                co_return error_reply(kind.error());
            }
            state->kind = *kind;
        } else if (key == "cursor") {
            auto cursor = query_integer(key, value, 0, std::numeric_limits<std::int64_t>::max());
            if (!cursor) {
                co_return error_reply(cursor.error());
            }
            state->resume = *cursor;
        } else {
            co_return error_reply(
                unknown_parameter(key, fmt::format("kind, cursor, {}", kFilterKeys)));
        }
    }
    net::Response response;
    if (net::is_websocket_upgrade(context.request)) {
        response.websocket = [this, state](net::WebSocket& ws) -> asio::awaitable<void> {
            WebSocketSink sink{ws};
            co_await run_tail(sink, state);
        };
        co_return response;
    }
    // The same messages as NDJSON lines, for curl and scripts.
    response.content_type = "application/x-ndjson";
    response.stream = [this, state](net::ResponseStream& stream) -> asio::awaitable<void> {
        NdjsonSink sink{stream, co_await asio::this_coro::executor};
        co_await run_tail(sink, state);
    };
    co_return response;
}

bool LogsRest::enter(const std::string& identity) {
    std::lock_guard lock{mu_};
    auto& open = open_tails_[identity];
    if (open >= logs_.settings().max_tails_per_identity) {
        return false;
    }
    ++open;
    return true;
}

void LogsRest::leave(const std::string& identity) {
    std::lock_guard lock{mu_};
    if (auto it = open_tails_.find(identity); it != open_tails_.end() && --it->second <= 0) {
        open_tails_.erase(it);
    }
}

asio::awaitable<void> LogsRest::run_tail(TailSink& sink, std::shared_ptr<Tail> tail) {
    // Every end is announced before the close: the client knows why, and from where to resume.
    // Named, not temporaries inside co_await (GCC 12).
    auto end = [&sink](std::uint16_t code, std::string reason) -> asio::awaitable<void> {
        json::object fields;
        fields["reason"] = reason;
        auto text = message("end", std::move(fields));
        co_await sink.send(std::move(text));
        sink.close(code, std::move(reason));
    };
    if (!enter(tail->identity)) {
        co_await end(1008, fmt::format("{} live tails are open for \"{}\" already "
                                       "(logs.max_tails_per_identity)",
                                       logs_.settings().max_tails_per_identity, tail->identity));
        co_return;
    }
    struct Leave {
        LogsRest* self;
        std::string identity;
        ~Leave() { self->leave(identity); }
    } leave{this, tail->identity};
    // Subscribed before the first read of the store: nothing stored in between is missed.
    auto subscribed = records_.subscribe(
        {tail->scope ? topic_of(*tail->scope) : std::string{net::kAllTopics}}, sink.executor(), 64);
    if (!subscribed) {
        co_await end(1013, "serve cannot follow more tails now: " + subscribed.error().message);
        co_return;
    }
    tail->wakeups = std::move(*subscribed);
    auto work = [this] { return logs_.ids(); };
    auto ids = co_await net::offload(pool_, std::move(work));
    if (!ids) {
        co_await end(1011, "cannot read the log store: " + ids.error().message);
        co_return;
    }
    tail->cursor = tail->resume.value_or(ids->newest);
    if (tail->resume) {
        // Ids are never reused, so the gap up to the oldest one kept was removed by retention.
        const auto first_kept = ids->oldest != 0 ? ids->oldest : ids->newest + 1;
        if (first_kept > *tail->resume + 1) {
            auto text = message(
                "lost", json::object{{"count", first_kept - *tail->resume - 1},
                                     {"detail",
                                      "records after the cursor were removed by retention "
                                      "before this tail resumed (of every sender and kind)"}});
            co_await sink.send(std::move(text));
        }
    }
    const auto limit = logs_.settings().tail_max_duration;
    auto start = message(
        "start", json::object{{"cursor", std::to_string(tail->cursor)},
                              {"max_duration_seconds",
                               std::chrono::duration_cast<std::chrono::seconds>(limit).count()}});
    co_await sink.send(std::move(start));
    if (!co_await catch_up(sink, *tail)) {
        co_return;
    }
    asio::steady_timer deadline{sink.executor()};
    deadline.expires_after(limit);
    auto follow = [&]() -> asio::awaitable<void> {
        while (sink.is_open()) {
            auto wakeup = co_await tail->wakeups->next(kTailWait);
            if (!wakeup && !tail->wakeups->closed() && sink.needs_heartbeats()) {
                auto heartbeat = message("heartbeat", json::object{});
                if (!co_await sink.send(std::move(heartbeat))) {
                    co_return;  // the client has gone
                }
            }
            if (!wakeup && tail->wakeups->closed()) {
                co_await end(1001, "serve is shutting down: reconnect with cursor " +
                                       std::to_string(tail->cursor));
                co_return;
            }
            // One read of the store answers every wake-up queued so far, and one a full queue
            // dropped: the store, not the hub, says what is new.
            while (tail->wakeups->try_next()) {
            }
            if (!co_await catch_up(sink, *tail)) {
                co_return;
            }
        }
    };
    auto ended = co_await (follow() || deadline.async_wait(kUseTuple) || sink.gone());
    if (ended.index() == 1) {
        co_await end(1000,
                     fmt::format("the tail's maximum duration ({}) was reached: reconnect with "
                                 "cursor {}",
                                 core::format_duration(limit), tail->cursor));
    }
}

asio::awaitable<bool> LogsRest::catch_up(TailSink& sink, Tail& tail) {
    auto newest_work = [this] { return logs_.ids(); };
    auto ids = co_await net::offload(pool_, std::move(newest_work));
    if (!ids) {
        auto text = message("error", json::object{{"message", ids.error().message}});
        co_return co_await sink.send(std::move(text));
    }
    const auto up_to = ids->newest;
    while (tail.cursor < up_to) {
        store::LogFollow follow{.kind = tail.kind,
                                .scope = tail.scope,
                                .after_id = tail.cursor,
                                .up_to_id = up_to,
                                .filter = tail.filter};
        auto work = [this, follow] { return logs_.follow(follow); };
        auto records = co_await net::offload(pool_, std::move(work));
        if (!records) {
            auto text = message("error", json::object{{"message", records.error().message}});
            co_return co_await sink.send(std::move(text));
        }
        const bool last_page = records->size() < 1000;
        json::array batch;
        std::size_t bytes = 0;
        for (const auto& record : *records) {
            batch.push_back(record_json(record));
            bytes += store::bytes_of(record) + 128;
            if (bytes >= kTailMessageBytes) {
                auto text = message("records", json::object{{"records", std::move(batch)},
                                                            {"cursor", std::to_string(record.id)}});
                if (!co_await sink.send(std::move(text))) {
                    co_return false;
                }
                batch = json::array{};
                bytes = 0;
            }
        }
        // Past the last record matched, every id up to `up_to` was looked at on the last page.
        tail.cursor = last_page ? up_to : records->back().id;
        if (!batch.empty()) {
            auto text = message("records", json::object{{"records", std::move(batch)},
                                                        {"cursor", std::to_string(tail.cursor)}});
            if (!co_await sink.send(std::move(text))) {
                co_return false;
            }
        }
    }
    co_return sink.is_open();
}

}  // namespace aviary::api
