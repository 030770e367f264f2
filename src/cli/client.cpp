#include "cli/client.hpp"

#include <fmt/format.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cctype>
#include <cstdio>
#include <limits>

#include "net/net.hpp"

namespace aviary::cli {
namespace json = boost::json;

namespace {

constexpr std::string_view kNdjson = "application/x-ndjson";

/// The TLS settings of every request: the configured CA file, or nullopt (the system's store).
std::optional<net::ClientTls> tls_of(const Connection& connection) {
    if (connection.ca_file.empty()) {
        return std::nullopt;
    }
    net::ClientTls tls;
    tls.ca_file = connection.ca_file;
    return tls;
}

/// "127.0.0.1:1337" is a common way to name a server: take it as http://, and drop a trailing
/// slash so paths join cleanly.
std::string normalise_server(std::string server) {
    if (server.find("://") == std::string::npos) {
        server.insert(0, "http://");
    }
    while (!server.empty() && server.back() == '/') {
        server.pop_back();
    }
    return server;
}

/// The reason at the end of net's message ("… failed to connect: Connection refused"), in the
/// lower case the CLI's sentences use.
std::string trailing_reason(const std::string& message) {
    auto colon = message.rfind(": ");
    std::string reason = colon == std::string::npos ? message : message.substr(colon + 2);
    if (!reason.empty()) {
        reason.front() = static_cast<char>(std::tolower(static_cast<unsigned char>(reason[0])));
    }
    return reason;
}

bool is_ndjson(const net::ClientResponse& response) {
    auto type = response.header("Content-Type");
    return type && type->substr(0, kNdjson.size()) == kNdjson;
}

Outcome<json::value> parse_body(std::string_view body) {
    if (body.empty()) {
        return json::value{};
    }
    std::error_code ec;
    auto parsed = json::parse(body, ec);
    if (ec) {
        return Failure{kExitRefused,
                       fmt::format("the server sent a reply that is not JSON ({}): {:.200}",
                                   ec.message(), body)};
    }
    return parsed;
}

/// Splits streamed bytes into NDJSON lines, keeping the last partial line for the next chunk.
class LineSplitter {
public:
    template <class F>
    void feed(std::string_view chunk, F&& on_line) {
        pending_.append(chunk);
        std::size_t start = 0;
        for (auto end = pending_.find('\n'); end != std::string::npos;
             end = pending_.find('\n', start)) {
            std::string_view line{pending_.data() + start, end - start};
            if (!line.empty()) {
                on_line(line);
            }
            start = end + 1;
        }
        pending_.erase(0, start);
    }
    /// The unterminated rest: a final line the server did not end with '\n'.
    const std::string& rest() const { return pending_; }

private:
    std::string pending_;
};

}  // namespace

int report(const Failure& failure) {
    std::fprintf(stderr, "aviary: %s\n", failure.message.c_str());
    return failure.exit_code;
}

Client::Client(Connection connection) : connection_(std::move(connection)) {
    connection_.server = normalise_server(std::move(connection_.server));
}

Failure Client::transport_failure(const core::Error& error) const {
    switch (error.code) {
        case core::ErrorCode::kInvalidArgument:
            return Failure{kExitUsage, error.message};
        case core::ErrorCode::kTimeout:
            return Failure{kExitTimeout, error.message};
        case core::ErrorCode::kUnavailable: {
            auto reason = trailing_reason(error.message);
            const bool refused = reason.find("refused") != std::string::npos;
            return Failure{kExitUnreachable,
                           fmt::format("cannot reach {}: {}{}", connection_.server, reason,
                                       refused ? " (is aviary serve running?)" : "")};
        }
        default:
            return Failure{kExitUnreachable, error.message};
    }
}

Outcome<Reply> Client::call(std::string_view method,
                            std::string_view path,
                            std::optional<json::value> body,
                            core::Millis timeout) const {
    net::ClientRequest request;
    request.method = std::string{method};
    request.url = connection_.server + std::string{path};
    request.timeout = timeout;
    request.tls = tls_of(connection_);
    if (!connection_.token.empty()) {
        request.headers.push_back({"Authorization", "Bearer " + connection_.token});
    }
    if (body) {
        request.headers.push_back({"Content-Type", "application/json"});
        request.body = json::serialize(*body);
    }
    auto response = net::fetch_sync(std::move(request));
    if (!response) {
        return transport_failure(response.error());
    }
    if (response->status >= 400) {
        return refusal(response->status, response->body);
    }
    auto parsed = parse_body(response->body);
    if (!parsed) {
        return parsed.failure();
    }
    return Reply{response->status, std::move(response->body), std::move(*parsed)};
}

Outcome<Reply> Client::call_waiting(
    std::string_view path,
    json::value body,
    core::Millis timeout,
    const std::function<void(const json::object&)>& on_waiting) const {
    net::ClientRequest request;
    request.method = "POST";
    request.url = connection_.server + std::string{path};
    request.timeout = timeout;
    request.tls = tls_of(connection_);
    request.headers.push_back({"Content-Type", "application/json"});
    if (!connection_.token.empty()) {
        request.headers.push_back({"Authorization", "Bearer " + connection_.token});
    }
    request.body = json::serialize(body);

    // The content type is known only once the exchange ends, so every byte is kept (a plain
    // reply is parsed whole) and lines are decoded as they come. Only a streamed answer has
    // "waiting" lines; its last line is the outcome.
    std::string raw;
    LineSplitter lines;
    json::value last_line;
    auto on_data = [&](std::string_view chunk) {
        raw.append(chunk);
        lines.feed(chunk, [&](std::string_view line) {
            std::error_code ec;
            auto parsed = json::parse(line, ec);
            if (ec || !parsed.is_object()) {
                return;
            }
            if (const auto* waiting = parsed.as_object().if_contains("waiting");
                waiting != nullptr && waiting->is_object()) {
                on_waiting(waiting->as_object());
            }
            last_line = std::move(parsed);
        });
    };
    auto response = net::fetch_stream(std::move(request), on_data);
    if (!response) {
        return transport_failure(response.error());
    }
    if (response->status >= 400) {
        return refusal(response->status, raw);
    }
    if (!is_ndjson(*response)) {
        auto parsed = parse_body(raw);
        if (!parsed) {
            return parsed.failure();
        }
        return Reply{response->status, std::move(raw), std::move(*parsed)};
    }
    if (!lines.rest().empty()) {
        std::error_code ec;
        last_line = json::parse(lines.rest(), ec);
    }
    const auto* final_line = last_line.if_object();
    if (final_line != nullptr) {
        if (const auto* lease = final_line->if_contains("lease")) {
            return Reply{response->status, json::serialize(*lease), *lease};
        }
        if (const auto* error = final_line->if_contains("error")) {
            return refusal(*error);
        }
    }
    // The stream ended without its final line: the server went away mid-wait.
    return Failure{kExitUnreachable, fmt::format("{} ended the wait without an answer "
                                                 "(did aviary serve stop?)",
                                                 connection_.server)};
}

Outcome<Reply> Client::stream(std::string_view path,
                              core::Millis timeout,
                              const std::function<void(const json::object&)>& on_line) const {
    net::ClientRequest request;
    request.url = connection_.server + std::string{path};
    request.timeout = timeout;
    request.tls = tls_of(connection_);
    // A followed job may print more than a reply is allowed to hold; the stream is read as it
    // comes and never kept whole.
    request.max_body_bytes = std::numeric_limits<std::size_t>::max();
    if (!connection_.token.empty()) {
        request.headers.push_back({"Authorization", "Bearer " + connection_.token});
    }
    // An error reply is one small JSON object: keep the start of the body for it, never all of
    // a long stream.
    constexpr std::size_t kKeptForErrors = std::size_t{64} * 1024;
    std::string head;
    LineSplitter lines;
    auto deliver = [&on_line](std::string_view line) {
        std::error_code ec;
        auto parsed = json::parse(line, ec);
        if (!ec && parsed.is_object()) {
            on_line(parsed.as_object());
        }
    };
    auto on_data = [&](std::string_view chunk) {
        if (head.size() < kKeptForErrors) {
            head.append(chunk.substr(0, kKeptForErrors - head.size()));
        }
        lines.feed(chunk, deliver);
    };
    auto response = net::fetch_stream(std::move(request), on_data);
    if (!response) {
        return transport_failure(response.error());
    }
    if (response->status >= 400) {
        return refusal(response->status, head);
    }
    if (!lines.rest().empty()) {
        deliver(lines.rest());
    }
    return Reply{response->status, {}, json::value{}};
}

Failure refusal(const json::value& error_object) {
    const auto* object = error_object.if_object();
    const json::value* code = object != nullptr ? object->if_contains("code") : nullptr;
    const json::value* message = object != nullptr ? object->if_contains("message") : nullptr;
    const bool timeout = code != nullptr && code->is_string() && code->get_string() == "timeout";
    std::string text = message != nullptr && message->is_string()
                           ? std::string{message->get_string()}
                           : json::serialize(error_object);
    return Failure{timeout ? kExitTimeout : kExitRefused, std::move(text)};
}

Failure refusal(int status, std::string_view body) {
    std::error_code ec;
    auto parsed = json::parse(body, ec);
    if (!ec && parsed.is_object()) {
        if (const auto* error = parsed.as_object().if_contains("error")) {
            auto failure = refusal(*error);
            failure.http_status = status;
            return failure;
        }
    }
    // Not the REST error shape (a plain-text 404 from a server without the route, a proxy):
    // show what came back.
    std::string text{body};
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
        text.pop_back();
    }
    return Failure{status == 504 ? kExitTimeout : kExitRefused,
                   text.empty() ? fmt::format("the server answered {}", status)
                                : fmt::format("the server answered {}: {:.300}", status, text),
                   status};
}

std::string encode(std::string_view text) {
    std::string out;
    for (char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (std::isalnum(byte) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(c);
        } else {
            out += fmt::format("%{:02X}", byte);
        }
    }
    return out;
}

}  // namespace aviary::cli
