// aviary acquire: one request, granted at once, refused, or queued with progress on stderr.
#include <fmt/format.h>
#include <unistd.h>

#include <boost/json/object.hpp>
#include <chrono>
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/render.hpp"

namespace aviary::cli {
namespace json = boost::json;

namespace {

/// The gap between the wait the server enforces and our own request deadline: the server's
/// answer (the lease or its timeout line) should always arrive before we give up on it.
constexpr core::Millis kWaitMargin{std::chrono::seconds{30}};

/// "waiting for chain=lotus: position 2, 12s", rewritten in place on a terminal. Elsewhere
/// (CI logs) the first line only, so a log does not fill with one line per heartbeat.
class WaitProgress {
public:
    explicit WaitProgress(std::string wanted)
        : wanted_(std::move(wanted)), terminal_(isatty(STDERR_FILENO) == 1) {}
    ~WaitProgress() {
        if (terminal_ && shown_) {
            std::fputs("\r\033[K", stderr);  // leave the terminal as it was for what follows
        }
    }
    WaitProgress(const WaitProgress&) = delete;
    WaitProgress& operator=(const WaitProgress&) = delete;

    void update(const json::object& waiting) {
        auto elapsed = std::chrono::duration_cast<std::chrono::seconds>(
            core::Millis{integer(waiting, "elapsed_ms")});
        auto line = fmt::format("waiting for {}: position {}, {}", wanted_,
                                integer(waiting, "position"), core::format_duration(elapsed));
        if (terminal_) {
            std::fprintf(stderr, "\r\033[K%s", line.c_str());
        } else if (!shown_) {
            std::fprintf(stderr, "aviary: %s\n", line.c_str());
        }
        std::fflush(stderr);
        shown_ = true;
    }

private:
    static std::int64_t integer(const json::object& object, std::string_view key) {
        const auto* value = object.if_contains(key);
        if (value == nullptr) {
            return 0;
        }
        if (value->is_int64()) {
            return value->get_int64();
        }
        if (value->is_uint64()) {
            return static_cast<std::int64_t>(value->get_uint64());
        }
        return value->is_double() ? static_cast<std::int64_t>(value->get_double()) : 0;
    }

    std::string wanted_;
    bool terminal_;
    bool shown_ = false;
};

std::string wanted_text(const AcquireFlags& flags) {
    if (!flags.node.empty()) {
        return flags.node;
    }
    std::string selector;
    for (const auto& label : flags.labels) {
        selector += (selector.empty() ? "" : ",") + label;
    }
    return flags.count > 1 ? fmt::format("{} nodes with {}", flags.count, selector) : selector;
}

Outcome<json::object> acquire_body(const Context& context, const AcquireFlags& flags) {
    json::object body;
    if (!flags.node.empty()) {
        body["node"] = flags.node;
    } else {
        auto selector = labels_object(flags.labels);
        if (!selector) {
            return selector.failure();
        }
        body["selector"] = std::move(*selector);
    }
    if (flags.count > 0) {
        body["count"] = flags.count;
    }
    if (auto owner = default_owner(context, flags.owner); !owner.empty()) {
        body["owner"] = std::move(owner);
    }
    if (!flags.ttl.empty()) {
        body["ttl"] = flags.ttl;
    }
    if (!flags.wait.empty()) {
        body["wait"] = flags.wait;
    }
    if (flags.exclusive) {
        body["exclusive"] = true;
    }
    if (!flags.reason.empty()) {
        body["reason"] = flags.reason;
    }
    return body;
}

}  // namespace

Outcome<json::value> acquire_lease(const Context& context, const AcquireFlags& flags) {
    if (flags.node.empty() == flags.labels.empty()) {
        return Failure{kExitUsage, "name a NODE or give --label k=v (one of the two)"};
    }
    if (!flags.node.empty() && flags.count > 0) {
        return Failure{kExitUsage, "--count goes with --label, not with a named NODE"};
    }
    auto body = acquire_body(context, flags);
    if (!body) {
        return body.failure();
    }
    if (flags.wait.empty()) {
        // Parentheses: json::value{object} would be a one-element array.
        auto reply = context.client.call("POST", "/api/v1/leases", json::value(std::move(*body)));
        if (!reply) {
            return reply.failure();
        }
        return std::move(reply->json);
    }
    auto wait = core::parse_duration(flags.wait);
    if (!wait) {
        return Failure{kExitUsage, "--wait: " + wait.error().message};
    }
    WaitProgress progress{wanted_text(flags)};
    auto on_waiting = [&progress](const json::object& waiting) { progress.update(waiting); };
    auto reply = context.client.call_waiting("/api/v1/leases", json::value(std::move(*body)),
                                             *wait + kWaitMargin, on_waiting);
    if (!reply) {
        return reply.failure();
    }
    return std::move(reply->json);
}

int run_acquire(const Context& context, const AcquireFlags& flags) {
    auto lease = acquire_lease(context, flags);
    if (!lease) {
        return report(lease.failure());
    }
    print_lease(context, *lease);
    return kExitOk;
}

}  // namespace aviary::cli
