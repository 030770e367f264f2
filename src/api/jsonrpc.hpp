#pragma once
// Private to api: JSON-RPC 2.0 over HTTP POST — envelopes, batches, notifications and the
// spec's error codes. Methods are coroutines registered by name; parameters arrive decoded
// by Params. Hostile bodies are bounded: nesting depth, batch size, and UTF-8 validity.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "api/params.hpp"
#include "fleet/fleet.hpp"
#include "net/net.hpp"

namespace aviary::api {

struct CallContext {
    fleet::Caller caller;
};

/// What a method answers: a result object or an error. An error maps to its JSON-RPC code by
/// ErrorCode, unless the method gives its own code and data (a job that failed under Wait).
class MethodResult : public core::Result<boost::json::object> {
public:
    using core::Result<boost::json::object>::Result;

    /// An error with its own code; `data` is sent as error.data (its "error" member set to
    /// `reason`).
    static MethodResult custom_error(core::Error error,
                                     int code,
                                     std::string reason,
                                     boost::json::object data) {
        MethodResult out{std::move(error)};
        out.code_ = code;
        out.reason_ = std::move(reason);
        out.data_ = std::move(data);
        return out;
    }
    std::optional<int> code() const { return code_; }
    const std::string& reason() const { return reason_; }
    const boost::json::object& data() const { return data_; }

private:
    std::optional<int> code_;
    std::string reason_;
    boost::json::object data_;
};
using Method = std::function<net::asio::awaitable<MethodResult>(Params, CallContext)>;

class JsonRpc {
public:
    static constexpr int kMaxDepth = 64;
    static constexpr std::size_t kMaxBatch = 100;

    void add(std::string name, Method method);
    /// Handles one HTTP body (a request or a batch). Returns the response body, or nullopt
    /// when every call was a notification (the HTTP layer then answers 204).
    net::asio::awaitable<std::optional<std::string>> handle(std::string_view body,
                                                            CallContext context);
    /// Calls to each method and their outcome ("ok" or the ErrorCode name), for /metrics.
    std::function<void(std::string_view method, std::string_view outcome)> on_call;

private:
    net::asio::awaitable<std::optional<boost::json::value>> call(const boost::json::value& request,
                                                                 const CallContext& context);

    std::map<std::string, Method, std::less<>> methods_;
};

/// The error envelope `{"jsonrpc":"2.0","error":{code,message,data},"id":id}`; data is
/// `{"error": reason}` plus `extra`'s members.
boost::json::value error_envelope(int code,
                                  std::string_view message,
                                  const boost::json::value& id,
                                  std::string_view reason = {},
                                  const boost::json::object& extra = {});

}  // namespace aviary::api
