#pragma once
// Private to api: logs and notifications over REST (GET /api/v1/logs, paged by an opaque
// cursor) and the live tail (WebSocket /api/v1/logs/tail), which catches up from the store
// before it follows, resumes from a cursor, and ends only with a message saying why
// (docs/logs.md).
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api/routes.hpp"
#include "logs/logs.hpp"
#include "net/net.hpp"

namespace aviary::api {

/// Tells the live tails of the records' scopes that they were stored. Call it after every
/// upload that stored something (any thread).
void publish_records(net::Hub& hub, const std::vector<store::LogRecord>& records);
/// The same for records of `scope` up to id `last_id` that another instance stored.
void publish_stored(net::Hub& hub, std::string_view scope, std::int64_t last_id);

class LogsRest {
public:
    /// `records`: the hub publish_records() publishes on.
    LogsRest(logs::Logs& logs, net::BlockingPool& pool, net::Hub& records);

    void add_routes(RouteTable& table);

    struct Tail;      ///< one live tail's filters and progress (logs_rest.cpp)
    struct TailSink;  ///< where a tail's messages go: a WebSocket, or NDJSON lines

private:
    net::asio::awaitable<net::Response> search(RouteContext& context);
    /// GET /api/v1/logs/labels, and with `name` /api/v1/logs/labels/{name}/values.
    net::asio::awaitable<net::Response> labels(RouteContext& context,
                                               std::optional<std::string> name);
    /// A sidecar's shipment: POST /api/v1/logs/ship (docs/logs.md, "Shipping from sidecars").
    net::asio::awaitable<net::Response> ship(RouteContext& context);
    /// Loki's push API, JSON: POST /loki/api/v1/push (Vector, Alloy, curl).
    net::asio::awaitable<net::Response> loki_push(RouteContext& context);
    net::asio::awaitable<net::Response> tail(RouteContext& context);
    net::asio::awaitable<void> run_tail(TailSink& sink, std::shared_ptr<Tail> tail);
    /// Sends what the store holds after the tail's cursor; false once the client is gone.
    net::asio::awaitable<bool> catch_up(TailSink& sink, Tail& tail);
    /// Counts a tail of `identity` in; false past the limit.
    bool enter(const std::string& identity);
    void leave(const std::string& identity);

    logs::Logs& logs_;
    net::BlockingPool& pool_;
    net::Hub& records_;
    std::mutex mu_;
    std::map<std::string, int, std::less<>> open_tails_;  // by identity
};

}  // namespace aviary::api
