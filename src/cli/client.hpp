#pragma once
// The CLI's side of the REST API (docs/api.md): one blocking request per call, replies decoded,
// and every way a call can fail turned into the exit code and the sentence the user sees.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "core/core.hpp"

namespace aviary::cli {

/// The exit codes of every client command (docs/cli.md).
enum ExitCode : int {
    kExitOk = 0,
    kExitRefused = 1,      ///< the server answered with an error
    kExitUsage = 2,        ///< bad flags or arguments
    kExitUnreachable = 3,  ///< no answer from the server at all
    kExitTimeout = 4,      ///< gave up waiting (the server's timeout, or our deadline); a
                           ///< followed job that timed out
    kExitCancelled = 5,    ///< a followed job was cancelled (--wait, job wait, job logs -f)
};

/// Why a command stops early: the exit code and the sentence printed after "aviary: ".
struct Failure {
    int exit_code = kExitRefused;
    std::string message;
    int http_status = 0;  ///< the server's status when it answered, else 0
};

/// A T, or the Failure to report. The CLI's Result: its errors carry an exit code, which the
/// closed core::ErrorCode list has no room for (a server's "unavailable" is a refusal, exit 1,
/// while ours is "unreachable", exit 3).
template <class T>
class [[nodiscard]] Outcome {
public:
    Outcome(T value) : v_(std::in_place_index<0>, std::move(value)) {}            // NOLINT
    Outcome(Failure failure) : v_(std::in_place_index<1>, std::move(failure)) {}  // NOLINT

    explicit operator bool() const { return v_.index() == 0; }
    T& operator*() { return std::get<0>(v_); }
    const T& operator*() const { return std::get<0>(v_); }
    T* operator->() { return &std::get<0>(v_); }
    const T* operator->() const { return &std::get<0>(v_); }
    const Failure& failure() const { return std::get<1>(v_); }

private:
    std::variant<T, Failure> v_;
};

/// Prints "aviary: MESSAGE" on stderr and returns the failure's exit code.
int report(const Failure& failure);

/// A successful (2xx) reply.
struct Reply {
    int status = 0;
    std::string body;         ///< as sent, for --json
    boost::json::value json;  ///< the body decoded; null when empty (204)
};

struct Connection {
    std::string server = "http://127.0.0.1:1337";  ///< base URL, no trailing slash needed
    std::string token;                             ///< sent as Authorization: Bearer
    /// For an https:// server: a PEM CA bundle trusted instead of the system's store.
    std::string ca_file;
};

class Client {
public:
    explicit Client(Connection connection);

    /// `method` on `path` ("/api/v1/nodes?label=chain%3Dlotus"), with a JSON body when given.
    /// A 4xx/5xx answer becomes a Failure with the server's message (exit 1, or 4 for a
    /// timeout); no answer at all is exit 3, a passed deadline exit 4.
    Outcome<Reply> call(std::string_view method,
                        std::string_view path,
                        std::optional<boost::json::value> body = std::nullopt,
                        core::Millis timeout = kDefaultTimeout) const;

    /// POSTs an acquire that may wait (docs/api.md, "Leases"). The server grants at once
    /// (201 LEASE) or streams NDJSON: `on_waiting` gets each `{"waiting": {…}}` line's object
    /// as it arrives, and the final line decides: its LEASE comes back as the Reply's json
    /// (body = that LEASE serialized), its error as a Failure (exit 4 for a timeout).
    Outcome<Reply> call_waiting(
        std::string_view path,
        boost::json::value body,
        core::Millis timeout,
        const std::function<void(const boost::json::object&)>& on_waiting) const;

    /// GETs `path`, answered with a stream of NDJSON lines (a job's output with follow=1):
    /// `on_line` gets each line's object as it arrives, on the calling thread; lines that are
    /// not JSON objects are skipped. Returns once the server ends the stream (the Reply has the
    /// status and an empty body). A 4xx/5xx answer is a Failure as call() makes it, with
    /// http_status set; a connection lost or timed out mid-stream is a Failure with
    /// http_status 0, so the caller, who knows from the lines whether it saw the end, may
    /// resume.
    Outcome<Reply> stream(std::string_view path,
                          core::Millis timeout,
                          const std::function<void(const boost::json::object&)>& on_line) const;

    const std::string& server() const { return connection_.server; }

    static constexpr core::Millis kDefaultTimeout{std::chrono::seconds{30}};

private:
    Failure transport_failure(const core::Error& error) const;

    Connection connection_;
};

/// The failure a server error body names: `{"error": {"code", "message"}}`; a body of any
/// other shape is shown as it is. "timeout" exits 4, every other refusal 1.
Failure refusal(int status, std::string_view body);
Failure refusal(const boost::json::value& error_object);

/// Percent-encodes one path segment or query value (RFC 3986 unreserved characters stay).
std::string encode(std::string_view text);

}  // namespace aviary::cli
