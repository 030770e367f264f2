#include "api/bitahoy.hpp"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "api/logs_rest.hpp"

namespace aviary::api {
namespace {

namespace asio = net::asio;
namespace json = boost::json;
using namespace asio::experimental::awaitable_operators;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

/// How deep a message's JSON may nest: Bitahoy's messages are two levels deep.
constexpr unsigned kMaxDepth = 16;
/// Wrong tokens one connection may send before it is closed.
constexpr int kMaxFailedAuths = 3;
/// How long the push loop waits on the hub before looking at the connection again.
constexpr core::Millis kPushWait{std::chrono::seconds{30}};

std::string reply(bool success, const json::value& action, json::object extra = {}) {
    json::object out;
    out["success"] = success;
    out["action"] = action;
    for (auto& [key, value] : extra) {
        out[key] = std::move(value);
    }
    return json::serialize(out);
}

std::string failure(const json::value& action, std::string_view comment) {
    return reply(false, action, json::object{{"comment", comment}});
}

/// The hub's topic for one scope's new notifications.
std::string topic_of(std::string_view scope) {
    return fmt::format("bitahoy/{}", scope);
}

double seconds_of(std::int64_t ns) {
    return static_cast<double>(ns) / 1e9;
}

/// An entry as the original sent it: logs [sender, message, level], notifications
/// [sender, message, level, time]; or as an object when the reader asked "format":"objects".
json::value entry_json(const store::LogRecord& r, bool objects) {
    if (objects) {
        return json::object{{"sender", r.sender},
                            {"message", r.message},
                            {"level", r.level},
                            {"time", seconds_of(r.time_ns)}};
    }
    json::array entry{r.sender, r.message, r.level};
    if (r.kind == store::LogKind::kNotification) {
        entry.push_back(seconds_of(r.time_ns));
    }
    return entry;
}

core::Error bad(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

/// A whole number that fits an int, as JSON gives it (Python's int arrives as one).
std::optional<int> int_of(const json::value* v) {
    if (v == nullptr) {
        return std::nullopt;
    }
    std::int64_t n = 0;
    if (v->is_int64()) {
        n = v->as_int64();
    } else if (v->is_uint64() && v->as_uint64() <= std::numeric_limits<int>::max()) {
        n = static_cast<std::int64_t>(v->as_uint64());
    } else {
        return std::nullopt;
    }
    if (n < std::numeric_limits<int>::min() || n > std::numeric_limits<int>::max()) {
        return std::nullopt;
    }
    return static_cast<int>(n);
}

/// A JSON number as a double (an integer or a float), or nullopt.
std::optional<double> number_of(const json::value* v) {
    if (v == nullptr) {
        return std::nullopt;
    }
    if (v->is_double()) {
        return v->as_double();
    }
    if (v->is_int64()) {
        return static_cast<double>(v->as_int64());
    }
    if (v->is_uint64()) {
        return static_cast<double>(v->as_uint64());
    }
    return std::nullopt;
}

std::optional<std::string> string_of(const json::value* v) {
    if (v == nullptr || !v->is_string()) {
        return std::nullopt;
    }
    return std::string{v->as_string()};
}

/// An upload's entries: {"level": int, "time": seconds, "sender": str, "message": str} each.
core::Result<std::vector<store::LogRecord>> read_entries(const json::object& body,
                                                         std::string_view field) {
    const auto* list = body.if_contains(field);
    if (list == nullptr || !list->is_array()) {
        return bad(
            fmt::format("{} must be a list of {{\"level\", \"time\", \"sender\", "
                        "\"message\"}} entries",
                        field));
    }
    std::vector<store::LogRecord> records;
    records.reserve(list->as_array().size());
    std::size_t i = 0;
    for (const auto& item : list->as_array()) {
        if (!item.is_object()) {
            return bad(fmt::format("{}[{}] is not an object", field, i));
        }
        const auto& entry = item.as_object();
        auto level = int_of(entry.if_contains("level"));
        if (!level) {
            return bad(fmt::format("{}[{}].level must be an integer", field, i));
        }
        auto time = number_of(entry.if_contains("time"));
        // Seconds since the epoch, as Python's time.time(): up to the year 2262 in ns.
        if (!time || !std::isfinite(*time) || *time < 0 || *time > 9.2e9) {
            return bad(
                fmt::format("{}[{}].time must be seconds since the epoch (time.time())", field, i));
        }
        auto sender = string_of(entry.if_contains("sender"));
        if (!sender) {
            return bad(fmt::format("{}[{}].sender must be a string", field, i));
        }
        auto message = string_of(entry.if_contains("message"));
        if (!message) {
            return bad(fmt::format("{}[{}].message must be a string", field, i));
        }
        records.push_back(store::LogRecord{.time_ns = static_cast<std::int64_t>(*time * 1e9),
                                           .level = *level,
                                           .sender = std::move(*sender),
                                           .message = std::move(*message)});
        ++i;
    }
    return records;
}

struct Read {
    logs::Window window;
    bool objects = false;
};

/// A read's filters: {"timewindow": seconds, "sender"?: str, "level"?: int, "format"?: str}.
core::Result<Read> read_filters(const json::object& body) {
    Read out;
    auto window = number_of(body.if_contains("timewindow"));
    // Up to ten years: anything longer is every record there is.
    if (!window || !std::isfinite(*window) || *window < 0 || *window > 3.2e8) {
        return bad("timewindow must be a number of seconds (logs no older than this)");
    }
    out.window.window = core::Millis{static_cast<std::int64_t>(*window * 1000)};
    if (const auto* sender = body.if_contains("sender"); sender != nullptr && !sender->is_null()) {
        if (!sender->is_string()) {
            return bad("sender must be a string");
        }
        out.window.sender = std::string{sender->as_string()};
    }
    if (const auto* level = body.if_contains("level"); level != nullptr && !level->is_null()) {
        auto n = int_of(level);
        if (!n) {
            return bad("level must be an integer (entries with level <= it are returned)");
        }
        out.window.max_level = *n;
    }
    if (const auto* format = body.if_contains("format"); format != nullptr) {
        if (!format->is_string() ||
            (format->as_string() != "arrays" && format->as_string() != "objects")) {
            return bad("format must be \"arrays\" (the default) or \"objects\"");
        }
        out.objects = format->as_string() == "objects";
    }
    return out;
}

}  // namespace

struct BitahoyWs::Session {
    net::WebSocket& ws;
    std::uint64_t id;
    fleet::Caller caller;
    bool authenticated = false;
    int failed_auths = 0;
    /// Set by answer(): the reply goes, then the connection closes with 1008 and this reason.
    std::string close_after_reply;
    /// Made once, when the session is authenticated; never replaced while push_loop waits on it.
    std::unique_ptr<net::Subscription> pushes;
    /// Expired when the session subscribes: the push loop waits on it until then.
    std::unique_ptr<asio::steady_timer> subscribed;
};

void push_notifications(net::Hub& pushes, const std::vector<store::LogRecord>& notifications) {
    std::map<std::string_view, json::array> by_scope;
    for (const auto& record : notifications) {
        if (record.kind == store::LogKind::kNotification) {
            by_scope[record.scope].push_back(entry_json(record, false));
        }
    }
    for (auto& [scope, entries] : by_scope) {
        // Origin 0: no connection has it, so every connection of the scope is told.
        auto pushed =
            reply(true, "notification", json::object{{"notifications", std::move(entries)}});
        pushes.publish(topic_of(scope), fmt::format("0\n{}", pushed));
    }
}

BitahoyWs::BitahoyWs(logs::Logs& logs,
                     net::BlockingPool& pool,
                     const Authenticator& auth,
                     net::Hub& records,
                     net::Hub& pushes)
    : logs_(logs), pool_(pool), auth_(auth), records_(records), hub_(pushes) {}

BitahoyWs::~BitahoyWs() {
    hub_.close();  // ends every connection's push loop
}

void BitahoyWs::add_routes(RouteTable& table) {
    table.add({.method = "GET",
               .pattern = "/ws",
               .handler = [this](RouteContext& context) -> asio::awaitable<net::Response> {
                   net::Response response;
                   response.websocket = [this, caller = context.caller](net::WebSocket& ws) {
                       return serve(ws, caller);
                   };
                   co_return response;
               },
               .access = Access::kInBand,
               .websocket = true});
}

asio::awaitable<void> BitahoyWs::serve(net::WebSocket& ws, fleet::Caller caller) {
    Session session{.ws = ws,
                    .id = next_session_.fetch_add(1),
                    .caller = std::move(caller),
                    .subscribed = std::make_unique<asio::steady_timer>(
                        ws.executor(), asio::steady_timer::time_point::max())};
    // Without tokens every caller is in; with them, a bearer token on the upgrade counts too.
    session.authenticated = !auth_.tokens_required() || !session.caller.identity.empty();
    if (session.authenticated) {
        subscribe(session);
    }
    co_await (read_loop(session) || push_loop(session));
}

void BitahoyWs::subscribe(Session& session) {
    // An admin reads every scope (getNotifications), so it is told of every scope's too.
    auto made = hub_.subscribe(
        {session.caller.admin ? std::string{net::kAllTopics} : topic_of(session.caller.identity)},
        session.ws.executor());
    if (made) {
        session.pushes = std::move(*made);
    }
    // Past the hub's bound this connection gets no pushes; getNotifications still reads them.
    // An expired timer lets push_loop through whether it waits already or only later.
    session.subscribed->expires_at(asio::steady_timer::time_point::min());
}

asio::awaitable<void> BitahoyWs::read_loop(Session& session) {
    asio::steady_timer idle{session.ws.executor()};
    const auto timeout = logs_.settings().idle_timeout;
    while (true) {
        idle.expires_after(timeout);
        auto got = co_await (session.ws.read() || idle.async_wait(kUseTuple));
        if (got.index() == 1) {
            session.ws.close(1000, fmt::format("no message for {}: send {{\"action\":"
                                               "\"keepalive\"}} to stay connected",
                                               core::format_duration(timeout)));
            co_return;
        }
        auto& message = std::get<0>(got);
        if (!message) {
            co_return;  // closed by the peer, or gone silent
        }
        auto text = co_await answer(session, *message);
        if (!session.ws.send_text(std::move(text))) {
            co_return;
        }
        if (!session.close_after_reply.empty()) {
            session.ws.close(1008, session.close_after_reply);
            co_return;
        }
    }
}

asio::awaitable<void> BitahoyWs::push_loop(Session& session) {
    // Returning would end the connection (read_loop || push_loop): without a subscription
    // (not authenticated yet, or the hub full) this waits until read_loop ends.
    co_await session.subscribed->async_wait(kUseTuple);
    if (!session.pushes) {
        asio::steady_timer never{session.ws.executor(), asio::steady_timer::time_point::max()};
        co_await never.async_wait(kUseTuple);
        co_return;
    }
    while (session.ws.is_open()) {
        auto message = co_await session.pushes->next(kPushWait);
        if (!message) {
            if (session.pushes->closed()) {
                co_return;
            }
            continue;
        }
        // "<origin session id>\n<reply text>": the connection that uploaded is not told again.
        const auto newline = message->data.find('\n');
        if (newline == std::string::npos ||
            message->data.compare(0, newline, std::to_string(session.id)) == 0) {
            continue;
        }
        if (!session.ws.send_text(message->data.substr(newline + 1))) {
            co_return;
        }
    }
}

asio::awaitable<std::string> BitahoyWs::answer(Session& session,
                                               const net::WebSocketMessage& message) {
    if (message.binary) {
        co_return failure(nullptr, "messages are JSON text frames, not binary ones");
    }
    boost::system::error_code ec;
    json::parse_options options;
    options.max_depth = kMaxDepth;
    auto value = json::parse(message.data, ec, {}, options);
    if (ec) {
        co_return failure(nullptr, fmt::format("not JSON: {}", ec.message()));
    }
    if (!value.is_object()) {
        co_return failure(nullptr, "a message is a JSON object: {\"action\": NAME, ...}");
    }
    const auto& body = value.as_object();
    const auto* action_value = body.if_contains("action");
    const json::value action = action_value != nullptr ? *action_value : json::value(nullptr);
    if (!action.is_string()) {
        co_return failure(action, "Unknown Action");
    }
    const std::string_view name = action.as_string();
    if (name == "auth") {
        auto token = string_of(body.if_contains("token"));
        if (!token) {
            co_return failure(action, "token must be a string");
        }
        auto caller = auth_.authenticate_token(*token);
        if (!caller) {
            if (++session.failed_auths >= kMaxFailedAuths) {
                session.close_after_reply = "too many failed auth attempts";
            }
            co_return failure(action, caller.error().message);
        }
        if (session.authenticated && caller->identity != session.caller.identity) {
            // Its pushes are subscribed by scope: another identity takes another connection.
            co_return failure(action,
                              fmt::format("this connection is authenticated as \"{}\" already: "
                                          "open another one for \"{}\"",
                                          session.caller.identity, caller->identity));
        }
        if (!session.authenticated) {
            session.caller = std::move(*caller);
            session.authenticated = true;
            subscribe(session);
        }
        co_return reply(true, action,
                        json::object{{"timeout", std::chrono::duration_cast<std::chrono::seconds>(
                                                     logs_.settings().idle_timeout)
                                                     .count()}});
    }
    if (!session.authenticated) {
        co_return failure(action,
                          "authenticate first: send {\"action\": \"auth\", \"token\": TOKEN}");
    }
    if (name == "ping" || name == "keepalive") {
        co_return reply(true, action);
    }
    const bool logs = name == "uploadLogs" || name == "getLogs";
    const auto kind = logs ? store::LogKind::kLog : store::LogKind::kNotification;
    const std::string_view field = logs ? "logs" : "notifications";
    if (name == "uploadLogs" || name == "uploadNotifications") {
        auto records = read_entries(body, field);
        if (!records) {
            co_return failure(action, records.error().message);
        }
        auto work = [this, kind, scope = session.caller.identity,
                     records = std::move(*records)]() mutable {
            return logs_.upload(kind, scope, std::move(records));
        };
        auto stored = co_await net::offload(pool_, std::move(work));
        if (!stored) {
            co_return failure(action, stored.error().message);
        }
        if (!stored->empty()) {
            publish_records(records_, *stored);
        }
        if (kind == store::LogKind::kNotification && !stored->empty()) {
            json::array entries;
            for (const auto& record : *stored) {
                entries.push_back(entry_json(record, false));
            }
            auto pushed = reply(true, "notification", json::object{{"notifications", entries}});
            hub_.publish(topic_of(session.caller.identity),
                         fmt::format("{}\n{}", session.id, pushed));
        }
        // The original says log(s) for notifications too.
        co_return reply(
            true, action,
            json::object{{"comment", fmt::format("Inserted {} log(s) into db.", stored->size())}});
    }
    if (name == "getLogs" || name == "getNotifications") {
        auto read = read_filters(body);
        if (!read) {
            co_return failure(action, read.error().message);
        }
        read->window.kind = kind;
        if (!session.caller.admin) {
            read->window.scope = session.caller.identity;
        }
        auto work = [this, window = read->window] { return logs_.read(window); };
        auto records = co_await net::offload(pool_, std::move(work));
        if (!records) {
            co_return failure(action, records.error().message);
        }
        json::array entries;
        for (const auto& record : records->records) {
            entries.push_back(entry_json(record, read->objects));
        }
        json::object extra{{field, std::move(entries)}};
        if (records->truncated) {
            // Past logs.max_results or logs.max_read_bytes: narrow the window to see older ones.
            extra["truncated"] = true;
        }
        co_return reply(true, action, std::move(extra));
    }
    co_return failure(action, "Unknown Action");
}

}  // namespace aviary::api
