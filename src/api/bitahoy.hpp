#pragma once
// Private to api: Bitahoy's monitoring-service WebSocket, verbatim (docs/logs.md). Route /ws;
// one JSON object per text frame, `{"action": NAME, ...}`; replies `{"success": bool, "action":
// NAME, ...}` with `comment` on failure.
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "api/auth.hpp"
#include "api/routes.hpp"
#include "logs/logs.hpp"
#include "net/net.hpp"

namespace aviary::api {

/// Pushes stored notifications to the /ws connections of their scope, and to admins' (which
/// read every scope), as Bitahoy pushes an uploaded notification: for those serve stores
/// itself (its events). `pushes` is the hub given to BitahoyWs.
void push_notifications(net::Hub& pushes, const std::vector<store::LogRecord>& notifications);

class BitahoyWs {
public:
    /// `records`: where stored records are announced to live tails (publish_records()).
    /// `pushes`: new notifications, by scope, to the other connections of that scope.
    BitahoyWs(logs::Logs& logs,
              net::BlockingPool& pool,
              const Authenticator& auth,
              net::Hub& records,
              net::Hub& pushes);
    ~BitahoyWs();
    BitahoyWs(const BitahoyWs&) = delete;
    BitahoyWs& operator=(const BitahoyWs&) = delete;

    void add_routes(RouteTable& table);

private:
    struct Session;
    net::asio::awaitable<void> serve(net::WebSocket& ws, fleet::Caller caller);
    /// Subscribes the session to its scope's notifications (again after a new auth).
    void subscribe(Session& session);
    net::asio::awaitable<void> read_loop(Session& session);
    net::asio::awaitable<void> push_loop(Session& session);
    /// The reply to one message.
    net::asio::awaitable<std::string> answer(Session& session,
                                             const net::WebSocketMessage& message);

    logs::Logs& logs_;
    net::BlockingPool& pool_;
    const Authenticator& auth_;
    net::Hub& records_;
    net::Hub& hub_;
    std::atomic<std::uint64_t> next_session_{1};
};

}  // namespace aviary::api
