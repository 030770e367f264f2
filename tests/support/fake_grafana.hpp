#pragma once
// Test support: the part of Grafana's annotation HTTP API that aviary speaks, on a loopback
// port, recording every request it receives. POST /api/annotations assigns ids; PATCH
// /api/annotations/{id} updates one (404 when unknown); GET /api/annotations filters by every
// `tags` parameter (all must match), newest first, up to `limit`. Each needs
// `Authorization: Bearer TOKEN` (401 {"message":"Invalid API key"} otherwise), as Grafana
// answers a bad service-account token. It can be stopped and started again on the same port
// (a Grafana that is down for a while), keeping what it holds, and serve HTTPS (serve_tls()), as
// most Grafanas are reached.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "net/net.hpp"

namespace aviary::test {

class FakeGrafana {
public:
    /// What one request looked like.
    struct Received {
        std::string method;
        std::string target;
        std::string path;
        std::string authorization;
        std::string content_type;
        std::string accept;
        std::string body;
        boost::json::value json() const {
            std::error_code ec;
            auto parsed = boost::json::parse(body, ec);
            return ec ? boost::json::value(nullptr) : parsed;
        }
    };

    explicit FakeGrafana(std::string token = "grafana-test-token")
        : state_(std::make_shared<State>()) {
        state_->token = std::move(token);
    }
    ~FakeGrafana() { stop(); }
    FakeGrafana(const FakeGrafana&) = delete;
    FakeGrafana& operator=(const FakeGrafana&) = delete;

    /// Listens (on a free port the first time, on the same port after); false when it cannot.
    bool start() {
        net::ServerSettings settings;
        settings.listen = address_.empty() ? "127.0.0.1:0" : address_;
        settings.shutdown_grace = std::chrono::milliseconds{500};
        settings.tls = tls_;
        state_->released = false;
        auto state = state_;
        server_ = std::make_unique<net::HttpServer>(
            settings, [state](net::Request request) { return handle(state, std::move(request)); });
        auto bound = server_->start();
        if (!bound) {
            server_.reset();
            return false;
        }
        address_ = *bound;
        return true;
    }
    /// Stops listening: connections are refused until start() again.
    void stop() {
        state_->released = true;
        if (server_) {
            server_->stop();
            server_.reset();
        }
    }

    /// Serves HTTPS with this certificate and key (PEM files) from the next start().
    void serve_tls(std::string cert_file, std::string key_file) {
        tls_.cert_file = std::move(cert_file);
        tls_.key_file = std::move(key_file);
    }
    /// From the next start(), a TLS handshake needs a client certificate signed by `ca_file`.
    void require_client_cert(std::string ca_file) {
        tls_.client_ca_file = std::move(ca_file);
        tls_.require_client_cert = true;
    }
    /// "http://127.0.0.1:PORT", or https:// after serve_tls() (known after the first start()).
    std::string url() const { return (tls_.cert_file.empty() ? "http://" : "https://") + address_; }
    const std::string& address() const { return address_; }

    void set_token(std::string token) {
        std::lock_guard lock{state_->mu};
        state_->token = std::move(token);
    }
    /// The next `n` posts are stored but answered 502, as if the answer were lost on the way.
    void lose_post_answers(int n) {
        std::lock_guard lock{state_->mu};
        state_->lose_answers = n;
    }
    /// Requests are held unanswered (until stop()), as a hung Grafana would.
    void hang(bool on) {
        std::lock_guard lock{state_->mu};
        state_->hang = on;
    }
    /// Adds an annotation as someone else (or a lost post) would have; returns its id.
    std::int64_t add(boost::json::object annotation) {
        std::lock_guard lock{state_->mu};
        auto id = state_->next_id++;
        annotation["id"] = id;
        state_->annotations[id] = std::move(annotation);
        return id;
    }
    /// Deletes one, as a person could in Grafana.
    void remove(std::int64_t id) {
        std::lock_guard lock{state_->mu};
        state_->annotations.erase(id);
    }

    std::vector<Received> requests() const {
        std::lock_guard lock{state_->mu};
        return state_->requests;
    }
    /// Requests with this method (and path, when given).
    std::vector<Received> requests(std::string_view method, std::string_view path = {}) const {
        std::vector<Received> out;
        for (auto& r : requests()) {
            if (r.method == method && (path.empty() || r.path == path)) {
                out.push_back(std::move(r));
            }
        }
        return out;
    }
    /// Every annotation held, by id.
    std::map<std::int64_t, boost::json::object> annotations() const {
        std::lock_guard lock{state_->mu};
        return state_->annotations;
    }
    /// The annotations carrying `tag`.
    std::vector<boost::json::object> tagged(std::string_view tag) const {
        std::vector<boost::json::object> out;
        for (auto& [id, annotation] : annotations()) {
            if (has_tag(annotation, tag)) {
                out.push_back(annotation);
            }
        }
        return out;
    }

    static bool has_tag(const boost::json::object& annotation, std::string_view tag) {
        const auto* tags = annotation.if_contains("tags");
        if (tags == nullptr || !tags->is_array()) {
            return false;
        }
        const auto& list = tags->as_array();
        return std::any_of(list.begin(), list.end(), [&](const boost::json::value& v) {
            return v.is_string() && v.get_string() == tag;
        });
    }

private:
    struct State {
        mutable std::mutex mu;
        std::string token;
        std::int64_t next_id = 1;
        std::map<std::int64_t, boost::json::object> annotations;
        std::vector<Received> requests;
        int lose_answers = 0;
        bool hang = false;
        std::atomic<bool> released = false;
    };

    static net::Response json_response(int status, const boost::json::value& body) {
        net::Response response;
        response.status = status;
        response.content_type = "application/json";
        response.body = boost::json::serialize(body);
        return response;
    }

    static net::Response message(int status, std::string_view text) {
        return json_response(status, boost::json::object{{"message", text}});
    }

    /// A hung Grafana: holds the request until stop().
    static net::asio::awaitable<void> hold(std::shared_ptr<State> state) {
        net::asio::steady_timer timer{co_await net::asio::this_coro::executor};
        while (!state->released) {
            timer.expires_after(std::chrono::milliseconds{10});
            co_await timer.async_wait(net::asio::use_awaitable);
        }
    }

    static net::asio::awaitable<net::Response> handle(std::shared_ptr<State> state,
                                                      net::Request request) {
        bool hang = false;
        {
            std::lock_guard lock{state->mu};
            auto header = [&](std::string_view name) {
                auto found = request.header(name);
                return found ? std::string{*found} : std::string{};
            };
            state->requests.push_back(Received{.method = request.method,
                                               .target = request.target,
                                               .path = request.path,
                                               .authorization = header("Authorization"),
                                               .content_type = header("Content-Type"),
                                               .accept = header("Accept"),
                                               .body = request.body});
            hang = state->hang;
        }
        if (hang) {
            co_await hold(state);
            co_return message(503, "stopping");
        }
        co_return answer(*state, request);
    }

    static net::Response answer(State& state, const net::Request& request) {
        std::lock_guard lock{state.mu};
        auto auth = request.header("Authorization");
        if (!auth || *auth != "Bearer " + state.token) {
            return message(401, "Invalid API key");
        }
        constexpr std::string_view kPrefix = "/api/annotations";
        if (request.path == kPrefix && request.method == "POST") {
            return create(state, request);
        }
        if (request.path == kPrefix && request.method == "GET") {
            return find(state, request);
        }
        if (request.path.starts_with("/api/annotations/") && request.method == "PATCH") {
            return patch(state, request, request.path.substr(kPrefix.size() + 1));
        }
        return message(404, "Not found");
    }

    static net::Response create(State& state, const net::Request& request) {
        std::error_code ec;
        auto body = boost::json::parse(request.body, ec);
        if (ec || !body.is_object() || !body.as_object().contains("text")) {
            return message(400, "bad request data");
        }
        auto annotation = body.as_object();
        auto id = state.next_id++;
        annotation["id"] = id;
        state.annotations[id] = annotation;
        if (state.lose_answers > 0) {
            --state.lose_answers;
            return message(502, "Bad Gateway");
        }
        return json_response(200, boost::json::object{{"message", "Annotation added"}, {"id", id}});
    }

    static net::Response patch(State& state,
                               const net::Request& request,
                               std::string_view id_text) {
        std::int64_t id = 0;
        try {
            id = std::stoll(std::string{id_text});
        } catch (const std::exception&) {
            return message(400, "id is invalid");
        }
        auto found = state.annotations.find(id);
        if (found == state.annotations.end()) {
            return message(404, "Could not find annotation to update");
        }
        std::error_code ec;
        auto body = boost::json::parse(request.body, ec);
        if (ec || !body.is_object()) {
            return message(400, "bad request data");
        }
        for (const auto& [key, value] : body.as_object()) {
            if (key == "text" || key == "tags" || key == "time" || key == "timeEnd") {
                found->second[key] = value;
            }
        }
        return message(200, "Annotation patched");
    }

    static net::Response find(State& state, const net::Request& request) {
        std::vector<std::string> tags;
        std::size_t limit = 100;
        for (const auto& [name, value] : request.query) {
            if (name == "tags") {
                tags.push_back(value);
            } else if (name == "limit") {
                limit = std::strtoul(value.c_str(), nullptr, 10);
            }
        }
        boost::json::array out;
        for (auto it = state.annotations.rbegin(); it != state.annotations.rend(); ++it) {
            bool all = std::all_of(tags.begin(), tags.end(), [&](const std::string& tag) {
                return has_tag(it->second, tag);
            });
            if (all && out.size() < limit) {
                out.push_back(it->second);
            }
        }
        return json_response(200, out);
    }

    std::shared_ptr<State> state_;
    std::unique_ptr<net::HttpServer> server_;
    net::TlsServerSettings tls_;
    std::string address_;
};

}  // namespace aviary::test
