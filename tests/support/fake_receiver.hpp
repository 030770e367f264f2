#pragma once
// Test support: a webhook receiver on a loopback port (a Slack incoming webhook, or any
// receiver of aviary's signed webhooks) that records every request it gets and answers each
// with a status the test chooses (200 by default; 500 for a receiver that errs). Slack answers
// "ok" as text, as its incoming webhooks do. It can be stopped and started again on the same
// port, as a receiver that is down for a while.
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "net/net.hpp"

namespace aviary::test {

class FakeReceiver {
public:
    struct Received {
        std::string method;
        std::string path;
        std::vector<net::Header> headers;
        std::string body;
        std::optional<std::string> header(std::string_view name) const {
            auto found = net::find_header(headers, name);
            return found ? std::optional<std::string>{std::string{*found}} : std::nullopt;
        }
    };

    FakeReceiver() : state_(std::make_shared<State>()) {}
    ~FakeReceiver() { stop(); }
    FakeReceiver(const FakeReceiver&) = delete;
    FakeReceiver& operator=(const FakeReceiver&) = delete;

    /// Listens (on a free port the first time, on the same port after); false when it cannot.
    bool start() {
        net::ServerSettings settings;
        settings.listen = address_.empty() ? "127.0.0.1:0" : address_;
        settings.shutdown_grace = std::chrono::milliseconds{200};
        auto state = state_;
        server_ = std::make_unique<net::HttpServer>(
            settings, [state](net::Request request) -> net::asio::awaitable<net::Response> {
                std::lock_guard lock{state->mu};
                state->received.push_back(Received{.method = request.method,
                                                   .path = request.path,
                                                   .headers = request.headers,
                                                   .body = request.body});
                net::Response response;
                response.status = state->status;
                response.content_type = "text/plain";
                response.body = state->body;
                co_return response;
            });
        auto bound = server_->start();
        if (!bound) {
            server_.reset();
            return false;
        }
        address_ = *bound;
        return true;
    }
    void stop() {
        if (server_) {
            server_->stop();
            server_.reset();
        }
    }
    /// What every request is answered with from now on.
    void answer(int status, std::string body = "ok") {
        std::lock_guard lock{state_->mu};
        state_->status = status;
        state_->body = std::move(body);
    }
    std::string url(std::string_view path = "/hook") const {
        return "http://" + address_ + std::string{path};
    }
    std::vector<Received> received() const {
        std::lock_guard lock{state_->mu};
        return state_->received;
    }

private:
    struct State {
        mutable std::mutex mu;
        std::vector<Received> received;
        int status = 200;
        std::string body = "ok";
    };
    std::shared_ptr<State> state_;
    std::unique_ptr<net::HttpServer> server_;
    std::string address_;
};

}  // namespace aviary::test
