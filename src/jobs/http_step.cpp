// The http step: a request rendered from the step's templates, sent through net's client, its
// status and body checked against the step's expectations, and sent again after retry_interval
// while it fails and retries are left.
#include "jobs/http_step.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <utility>

#include "jobs/engine_impl.hpp"

namespace aviary::jobs {
namespace {

using namespace asio::experimental::awaitable_operators;
namespace json = boost::json;

/// A JSON body at most this big becomes the step's result `body`.
constexpr std::size_t kResultBodyMax = std::size_t{64} * 1024;
/// How much of a body a failure shows.
constexpr std::size_t kExcerptMax = 200;
/// How much of a value a failure shows ("got ...").
constexpr std::size_t kValueShownMax = 100;
/// A larger response fails the request (a status endpoint is small; this guards the engine).
constexpr std::size_t kResponseMax = std::size_t{16} * 1024 * 1024;

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

core::Error failed(std::string message) {
    return core::Error{core::ErrorCode::kInternal, std::move(message)};
}

bool is_unreserved(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

std::string_view trimmed(std::string_view text) {
    while (!text.empty() && text.front() == ' ') {
        text.remove_prefix(1);
    }
    while (!text.empty() && text.back() == ' ') {
        text.remove_suffix(1);
    }
    return text;
}

// --- showing what was seen ----------------------------------------------------------------------

/// At most `max` bytes of `text` on one line: control bytes escaped, a cut UTF-8 sequence backed
/// off, and the full size named when cut.
std::string one_line(std::string_view text, std::size_t max) {
    std::size_t n = std::min(text.size(), max);
    if (n < text.size()) {
        while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0U) == 0x80U) {
            --n;  // a continuation byte: the sequence it belongs to is cut whole
        }
    }
    std::string out;
    out.reserve(n + 16);
    for (std::size_t i = 0; i < n; ++i) {
        auto c = static_cast<unsigned char>(text[i]);
        if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7F) {
            out += fmt::format("\\x{:02x}", c);
        } else {
            out += static_cast<char>(c);
        }
    }
    if (n < text.size()) {
        out += fmt::format("... ({} bytes)", text.size());
    }
    return out;
}

std::string body_excerpt(std::string_view body) {
    if (body.empty()) {
        return "body: (empty)";
    }
    return "body: " + one_line(body, kExcerptMax);
}

std::string shown(const json::value& value) {
    return one_line(json::serialize(value), kValueShownMax);
}

/// The path as the user wrote it, or "$" for the whole body.
std::string_view path_shown(std::string_view path) {
    return path.empty() ? std::string_view{"$"} : path;
}

// --- the request --------------------------------------------------------------------------------

/// The request of every attempt and the checks with their templates filled in.
struct Prepared {
    net::ClientRequest request;
    std::vector<HttpCheck> checks;
    std::vector<std::vector<JsonPathStep>> paths;  ///< by check; empty for text_contains
    bool needs_json = false;
};

std::string line_break_problem(std::string_view value) {
    if (value.find('\r') != std::string_view::npos) {
        return "a carriage return (CR)";
    }
    if (value.find('\n') != std::string_view::npos) {
        return "a line feed (LF)";
    }
    if (value.find('\0') != std::string_view::npos) {
        return "a NUL byte";
    }
    return {};
}

core::Result<Prepared> prepare(const HttpStepSpec& spec, const core::Job& job) {
    Prepared out;
    auto url = render_url(spec.url, job);
    if (!url) {
        return url.error();
    }
    out.request.method = spec.method;
    out.request.url = std::move(*url);
    out.request.timeout = spec.request_timeout;
    out.request.max_body_bytes = kResponseMax;
    for (const auto& [name, value] : spec.headers) {
        auto rendered = render_template(value, job);
        if (!rendered) {
            return rendered.error();
        }
        // A value with a line break would end the header and start another (header injection):
        // refused, and the value is not shown (it may be a credential).
        if (auto problem = line_break_problem(*rendered); !problem.empty()) {
            return invalid(
                fmt::format("header {}: the rendered value holds {}; a header value "
                            "must be one line, so the request was not sent",
                            name, problem));
        }
        out.request.headers.push_back(net::Header{name, std::move(*rendered)});
    }
    auto body = render_template(spec.body, job);
    if (!body) {
        return body.error();
    }
    out.request.body = std::move(*body);
    for (const auto& check : spec.checks) {
        HttpCheck rendered = check;
        auto value = render_template(check.value, job);
        if (!value) {
            return value.error();
        }
        rendered.value = std::move(*value);
        std::vector<JsonPathStep> path;
        if (check.kind != HttpCheckKind::kTextContains) {
            auto parsed = parse_json_path(check.path);
            if (!parsed) {
                return parsed.error();
            }
            path = std::move(*parsed);
            out.needs_json = true;
        }
        out.checks.push_back(std::move(rendered));
        out.paths.push_back(std::move(path));
    }
    return out;
}

// --- the response -------------------------------------------------------------------------------

std::string status_problem(const std::vector<int>& expected, int status) {
    if (expected.empty()) {
        if (status >= 200 && status <= 299) {
            return {};
        }
        return fmt::format("expected a 2xx status, got {}", status);
    }
    if (std::find(expected.begin(), expected.end(), status) != expected.end()) {
        return {};
    }
    std::string listed;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        listed += i == 0 ? "" : (i + 1 == expected.size() ? " or " : ", ");
        listed += std::to_string(expected[i]);
    }
    return fmt::format("expected status {}, got {}", listed, status);
}

/// Why one check does not hold, or empty. `body_json` is null when the body is not JSON, and
/// `json_error` then says why.
std::string check_problem(const HttpCheck& check,
                          const std::vector<JsonPathStep>& path,
                          std::string_view body,
                          const json::value* body_json,
                          std::string_view json_error) {
    if (check.kind == HttpCheckKind::kTextContains) {
        if (body.find(check.value) != std::string_view::npos) {
            return {};
        }
        return fmt::format("the body does not contain \"{}\"", one_line(check.value, 80));
    }
    auto where = path_shown(check.path);
    if (body_json == nullptr) {
        return fmt::format("{}: the body is not JSON ({})", where, json_error);
    }
    std::string missing;
    const json::value* found = find_json(*body_json, path, missing);
    if (check.kind == HttpCheckKind::kJsonExists) {
        return found != nullptr ? std::string{} : fmt::format("{}: not found ({})", where, missing);
    }
    // json_equals: a string is shown quoted on both sides; anything else as its text.
    std::string expected = found != nullptr && found->is_string()
                               ? json::serialize(json::value(check.value))
                               : check.value;
    if (found == nullptr) {
        return fmt::format("{}: expected {}, got nothing ({})", where, one_line(expected, 80),
                           missing);
    }
    if (json_equals(*found, check.value)) {
        return {};
    }
    return fmt::format("{}: expected {}, got {}", where, one_line(expected, 80), shown(*found));
}

/// What one response says: its failures (empty when it met every expectation) and its body as
/// JSON when the body is JSON.
struct Judged {
    std::string failure;
    std::optional<json::value> body;
};

Judged judge(const HttpStepSpec& spec, const Prepared& prepared, const net::ClientResponse& got) {
    Judged out;
    json::parse_options options;
    options.max_depth = 64;
    json::error_code ec;
    json::value parsed = json::parse(got.body, ec, json::storage_ptr{}, options);
    std::string json_error;
    if (ec) {
        json_error = got.body.empty() ? std::string{"it is empty"} : ec.message();
    } else {
        out.body = std::move(parsed);
    }
    if (auto problem = status_problem(spec.expect_status, got.status); !problem.empty()) {
        out.failure = fmt::format("{}; {}", problem, body_excerpt(got.body));
        return out;
    }
    std::string problems;
    for (std::size_t i = 0; i < prepared.checks.size(); ++i) {
        auto problem = check_problem(prepared.checks[i], prepared.paths[i], got.body,
                                     out.body ? &*out.body : nullptr, json_error);
        if (!problem.empty()) {
            problems += (problems.empty() ? "" : "; ") + problem;
        }
    }
    if (!problems.empty()) {
        out.failure = fmt::format("{}; {}", problems, body_excerpt(got.body));
    }
    return out;
}

std::string result_json(const net::ClientResponse& got, const Judged& judged) {
    json::object out;
    out["status"] = got.status;
    if (judged.body && got.body.size() <= kResultBodyMax) {
        out["body"] = *judged.body;
    }
    return json::serialize(out);
}

/// HttpClient::fetch() as an awaitable of a default-constructible type, which the `||` race
/// needs. The engine's client keeps connections alive between a step's retries and between
/// steps to the same endpoint.
asio::awaitable<std::optional<core::Result<net::ClientResponse>>> fetch_once(
    net::HttpClient& client, net::ClientRequest request) {
    std::optional<core::Result<net::ClientResponse>> out;
    out.emplace(co_await client.fetch(std::move(request)));
    co_return out;
}

/// One request; nullopt when the run was told to stop before it answered.
asio::awaitable<std::optional<core::Result<net::ClientResponse>>> send(Engine::Impl& engine,
                                                                       Run& run,
                                                                       net::ClientRequest request) {
    if (run.stop != StopReason::kNone) {
        co_return std::nullopt;
    }
    auto fetching = fetch_once(*engine.http, std::move(request));
    auto stopping = run.stop_signal.async_wait(asio::as_tuple(asio::use_awaitable));
    auto raced = co_await (std::move(fetching) || std::move(stopping));
    if (raced.index() != 0) {
        co_return std::nullopt;
    }
    co_return std::move(std::get<0>(raced));
}

std::string elapsed_ms(std::chrono::steady_clock::time_point since) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - since)
                  .count();
    return fmt::format("{} ms", ms);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Templates and validation

std::string percent_encode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (is_unreserved(c)) {
            out += c;
        } else {
            out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
        }
    }
    return out;
}

core::Result<std::string> render_url(std::string_view url, const core::Job& job) {
    std::string out;
    std::size_t pos = 0;
    while (true) {
        auto open = url.find("{{", pos);
        if (open == std::string_view::npos) {
            out.append(url.substr(pos));
            return out;
        }
        auto close = url.find("}}", open + 2);
        if (close == std::string_view::npos) {
            return invalid(fmt::format("unclosed {{{{ in \"{}\"", url));
        }
        out.append(url.substr(pos, open - pos));
        // One placeholder at a time through render_template, so the URL knows the same names.
        auto name = trimmed(url.substr(open + 2, close - open - 2));
        auto value = render_template(fmt::format("{{{{{}}}}}", name), job);
        if (!value) {
            return value.error();
        }
        out += percent_encode(*value);
        pos = close + 2;
    }
}

bool is_http_token(std::string_view name) {
    if (name.empty()) {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               std::string_view{"!#$%&'*+-.^_`|~"}.find(c) != std::string_view::npos;
    });
}

std::string method_problem(std::string_view method) {
    bool upper =
        std::none_of(method.begin(), method.end(), [](char c) { return c >= 'a' && c <= 'z'; });
    if (method.size() > 32 || !is_http_token(method) || !upper) {
        return fmt::format(
            "\"{}\" is not an HTTP method (GET, POST, PUT, PATCH, DELETE, HEAD, "
            "OPTIONS or another upper-case token)",
            one_line(method, 40));
    }
    return {};
}

// ---------------------------------------------------------------------------------------------
// The step

asio::awaitable<core::Result<std::string>> run_http_step(Engine::Impl& engine,
                                                         Run& run,
                                                         const StepSpec& step) {
    const HttpStepSpec& spec = step.http;
    auto prepared = prepare(spec, run.job);
    if (!prepared) {
        co_return prepared.error();
    }
    const std::string request_line =
        fmt::format("{} {}", prepared->request.method, prepared->request.url);
    const int requests = spec.retries + 1;
    std::string failure = "stopped before the first request";
    for (int n = 1; n <= requests && run.stop == StopReason::kNone; ++n) {
        auto started = std::chrono::steady_clock::now();
        auto answered = co_await send(engine, run, prepared->request);
        if (!answered) {
            engine.add_line(run, "aviary",
                            fmt::format("{} -> stopped ({})", request_line, elapsed_ms(started)));
            failure = fmt::format("{}: stopped before it answered", request_line);
            break;
        }
        std::string of_many = requests == 1 ? "" : fmt::format(" (request {} of {})", n, requests);
        if (!*answered) {
            const auto& error = answered->error().message;
            engine.add_line(run, "aviary",
                            fmt::format("{} -> no response ({}): {}", request_line,
                                        elapsed_ms(started), error));
            failure = fmt::format("{}{}: {}", request_line, of_many, error);
        } else {
            const auto& got = **answered;
            auto judged = judge(spec, *prepared, got);
            engine.add_line(
                run, "aviary",
                fmt::format("{} -> {} ({})", request_line, got.status, elapsed_ms(started)));
            if (judged.failure.empty()) {
                co_return result_json(got, judged);
            }
            engine.add_line(run, "aviary", fmt::format("not as expected: {}", judged.failure));
            failure =
                fmt::format("{} -> {}{}: {}", request_line, got.status, of_many, judged.failure);
        }
        if (n < requests && run.stop == StopReason::kNone) {
            engine.add_line(
                run, "aviary",
                fmt::format("retrying in {} (request {} of {})",
                            core::format_duration(spec.retry_interval), n + 1, requests));
            co_await nap(run, spec.retry_interval);
        }
    }
    co_return failed(std::move(failure));
}

}  // namespace aviary::jobs
