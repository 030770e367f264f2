// run_scenario(): one scenario's steps, in order, on the caller's executor (docs/probes.md).
#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/regex.hpp"
#include "net/json_path.hpp"
#include "net/net.hpp"
#include "probes/probes.hpp"
#include "proc/proc.hpp"
#include "supervisor/supervisor.hpp"

namespace aviary::probes {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using SteadyClock = std::chrono::steady_clock;
using Vars = std::map<std::string, std::string, std::less<>>;

constexpr std::size_t kShownMax = 200;
/// The most peers a lag check reads (listed ones first, then the fleet's by name).
constexpr std::size_t kMaxPeers = 32;
/// How often an action step reads its job while it runs.
constexpr core::Millis kActionPoll{250};

/// What a step got back, for its assertions and captures.
struct Answer {
    std::optional<int> status;
    std::vector<net::Header> headers;
    std::string body;
    std::optional<int> exit_code;
    std::string stderr_text;
    core::Millis duration{0};
    // The body as JSON, parsed on first use.
    bool json_tried = false;
    std::optional<json::value> parsed;
    std::string json_error;
};

/// One step's verdict.
struct Verdict {
    Outcome outcome = Outcome::kPassed;
    std::string message;
    static Verdict passed() { return {}; }
    static Verdict failed(std::string why) { return {Outcome::kFailed, std::move(why)}; }
    static Verdict broken(std::string why) { return {Outcome::kBroken, std::move(why)}; }
};

std::string one_line(std::string_view text) {
    std::string out;
    for (char c : text.substr(0, kShownMax)) {
        out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
    }
    if (text.size() > kShownMax) {
        out += "…";
    }
    return out;
}

std::string quoted(std::string_view text) {
    return "\"" + one_line(text) + "\"";
}

/// A string member of `object`, or "".
std::string string_member(const json::object& object, std::string_view key) {
    const auto* found = object.if_contains(key);
    return found != nullptr && found->is_string() ? std::string{found->get_string()} : "";
}

/// The host of an http(s) URL: "10.0.0.5" of "http://10.0.0.5:8080", "::1" of "http://[::1]:80".
std::string url_host(std::string_view url) {
    auto start = url.find("://");
    url = url.substr(start == std::string_view::npos ? 0 : start + 3);
    if (url.starts_with('[')) {
        auto close = url.find(']');
        return std::string{url.substr(1, close == std::string_view::npos ? url.npos : close - 1)};
    }
    return std::string{url.substr(0, url.find_first_of(":/?#"))};
}

/// The variables a fleet peer's URL is rendered with, from its entry in serve's node list:
/// {{peer}} and {{node}} its name, {{peer_host}} where it runs (a machine's address or
/// hostname, a sidecar node's control host, else its name) and {{peer.LABEL}} its labels.
void add_peer_vars(const json::object& node, Vars& vars) {
    const auto name = string_member(node, "node");
    vars["node"] = name;
    vars["peer"] = name;
    std::string host = name;
    if (const auto* machine = node.if_contains("machine");
        machine != nullptr && machine->is_object()) {
        auto address = string_member(machine->as_object(), "address");
        host = !address.empty() ? address : string_member(machine->as_object(), "hostname");
    } else if (auto control = string_member(node, "control_url"); !control.empty()) {
        host = url_host(control);
    }
    vars["peer_host"] = host.empty() ? name : host;
    if (const auto* labels = node.if_contains("labels"); labels != nullptr && labels->is_object()) {
        for (const auto& [key, value] : labels->as_object()) {
            if (value.is_string()) {
                vars["peer." + std::string{key}] = std::string{value.get_string()};
            }
        }
    }
}

/// `text` for a URL's query: every byte but the unreserved ones percent-encoded.
std::string query_escaped(std::string_view text) {
    std::string out;
    for (char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (std::isalnum(byte) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
            out += c;
        } else {
            out += fmt::format("%{:02X}", byte);
        }
    }
    return out;
}

const json::value* json_of(Answer& answer, std::string& problem) {
    if (!answer.json_tried) {
        answer.json_tried = true;
        json::error_code ec;
        auto value = json::parse(answer.body, ec);
        if (ec) {
            answer.json_error =
                fmt::format("the body is not JSON ({}): {}", ec.message(), quoted(answer.body));
        } else {
            answer.parsed = std::move(value);
        }
    }
    if (!answer.parsed) {
        problem = answer.json_error;
        return nullptr;
    }
    return &*answer.parsed;
}

/// A subject's value: JSON when the subject is a JSON path, else text; `missing` says why there
/// is none.
struct Read {
    std::optional<json::value> value;  // numbers and JSON
    std::optional<std::string> text;   // text subjects
    std::string missing;
    bool many = false;  // a path with [*]: `value` is the array of every value found
};

/// The values at `path` when it holds one `[*]` ("lines[*].text"): the path before it must lead
/// to an array, and each element's value at the rest of the path is taken (elements without
/// it are skipped).
bool find_many(const json::value& root, std::string_view path, Read& r) {
    auto star = path.find("[*]");
    auto before = net::parse_json_path(path.substr(0, star));
    auto rest_text = path.substr(star + 3);
    if (rest_text.starts_with('.')) {
        rest_text.remove_prefix(1);
    }
    auto after = net::parse_json_path(rest_text);
    if (!before || !after) {
        r.missing = (!before ? before.error() : after.error()).message;
        return false;
    }
    const auto* at = net::find_json(root, *before, r.missing);
    if (at == nullptr) {
        return false;
    }
    const auto* array = at->if_array();
    if (array == nullptr) {
        r.missing =
            fmt::format("{} is {}, not an array", path.substr(0, star), net::json_kind(*at));
        return false;
    }
    json::array found;
    for (const auto& element : *array) {
        std::string skipped;
        if (const auto* value = net::find_json(element, *after, skipped)) {
            found.push_back(*value);
        }
    }
    r.value = json::value(std::move(found));
    r.many = true;
    return true;
}

Read read_subject(Answer& answer, Subject subject, const std::string& name) {
    Read r;
    switch (subject) {
        case Subject::kStatus:
            if (answer.status) {
                r.value = json::value(*answer.status);
            } else {
                r.missing = "this step has no HTTP status";
            }
            break;
        case Subject::kDuration:
            r.value = json::value(answer.duration.count());
            break;
        case Subject::kBody:
            r.text = answer.body;
            break;
        case Subject::kStderr:
            r.text = answer.stderr_text;
            break;
        case Subject::kExitCode:
            if (answer.exit_code) {
                r.value = json::value(*answer.exit_code);
            } else {
                r.missing = "this step has no exit code";
            }
            break;
        case Subject::kHeader:
            if (auto found = net::find_header(answer.headers, name)) {
                r.text = std::string{*found};
            } else {
                r.missing = fmt::format("no header {} in the answer", name);
            }
            break;
        case Subject::kJson: {
            const json::value* root = json_of(answer, r.missing);
            if (root == nullptr) {
                break;
            }
            if (name.find("[*]") != std::string::npos) {
                find_many(*root, name, r);
                break;
            }
            auto path = net::parse_json_path(name);
            if (!path) {
                r.missing = path.error().message;
                break;
            }
            if (const auto* at = net::find_json(*root, *path, r.missing)) {
                r.value = *at;
            }
            break;
        }
    }
    return r;
}

std::string shown(const Read& r) {
    if (r.text) {
        return quoted(*r.text);
    }
    if (r.value && r.value->is_string()) {
        return quoted(r.value->get_string());
    }
    return r.value ? one_line(json::serialize(*r.value)) : std::string{"nothing"};
}

/// The text a value compares as: a JSON string's own text, else its JSON.
std::string text_of(const Read& r) {
    if (r.text) {
        return *r.text;
    }
    if (r.value && r.value->is_string()) {
        return std::string{r.value->get_string()};
    }
    return r.value ? json::serialize(*r.value) : std::string{};
}

bool equals(const Read& r, std::string_view expected) {
    if (r.text) {
        return *r.text == expected;
    }
    return r.value && net::json_equals(*r.value, expected);
}

std::optional<double> number_of(const Read& r) {
    if (r.value && r.value->is_number()) {
        return r.value->to_number<double>();
    }
    return net::parse_number(text_of(r));
}

std::string_view op_text(Op op) {
    switch (op) {
        case Op::kEq:
            return "==";
        case Op::kNe:
            return "!=";
        case Op::kLt:
            return "<";
        case Op::kLe:
            return "<=";
        case Op::kGt:
            return ">";
        case Op::kGe:
            return ">=";
        case Op::kContains:
            return "contains";
        case Op::kMatches:
            return "matches";
        case Op::kAny:
            return "any";
        case Op::kHas:
            return "has";
    }
    return "?";
}

/// Empty when `a` holds for `answer`; else what was expected and seen.
core::Result<std::string> compare(const Assertion& a, const Read& r, const Vars& vars);

core::Result<std::string> judge(const Assertion& a, Answer& answer, const Vars& vars) {
    Read r = read_subject(answer, a.subject, a.name);
    if (a.op == Op::kHas) {
        if (r.many) {
            return r.value->get_array().empty() ? fmt::format("nothing at {}", a.name)
                                                : std::string{};
        }
        return r.value || r.text ? std::string{} : r.missing;
    }
    if (!r.value && !r.text) {
        return r.missing;
    }
    if (r.many && !a.length) {
        // With [*], the assertion holds when it holds for one of the values.
        for (const auto& one : r.value->get_array()) {
            Read single;
            single.value = one;
            auto problem = compare(a, single, vars);
            if (!problem || problem->empty()) {
                return problem;
            }
        }
        auto expected = render(a.value, vars);
        if (!expected) {
            return expected.error();
        }
        if (a.op == Op::kEq) {
            return fmt::format("expected {} but got {}", quoted(*expected), shown(r));
        }
        if (a.op == Op::kMatches) {
            return fmt::format("expected one of the values to match /{}/ but got {}", *expected,
                               shown(r));
        }
        if (a.op == Op::kContains) {
            return fmt::format("expected one of the values to contain {} but got {}",
                               quoted(*expected), shown(r));
        }
        return fmt::format("expected one of the values {} {} but got {}", op_text(a.op),
                           a.op == Op::kAny ? a.value : quoted(*expected), shown(r));
    }
    if (a.length) {
        std::size_t n = 0;
        if (r.text) {
            n = r.text->size();
        } else if (r.value->is_array()) {
            n = r.value->get_array().size();
        } else if (r.value->is_object()) {
            n = r.value->get_object().size();
        } else if (r.value->is_string()) {
            n = r.value->get_string().size();
        } else {
            return fmt::format("len() of {} which is {}", shown(r), net::json_kind(*r.value));
        }
        r = Read{};
        r.value = json::value(static_cast<std::int64_t>(n));
    }
    return compare(a, r, vars);
}

core::Result<std::string> compare(const Assertion& a, const Read& r, const Vars& vars) {
    auto expected = render(a.value, vars);
    if (!expected) {
        return expected.error();
    }
    auto miss = [&](std::string_view wanted) {
        return fmt::format("expected {} but got {}", wanted, shown(r));
    };
    switch (a.op) {
        case Op::kEq:
            return equals(r, *expected) ? std::string{} : miss(quoted(*expected));
        case Op::kNe:
            return !equals(r, *expected) ? std::string{}
                                         : miss(fmt::format("anything but {}", quoted(*expected)));
        case Op::kLt:
        case Op::kLe:
        case Op::kGt:
        case Op::kGe: {
            double limit = 0;
            if (a.subject == Subject::kDuration && !a.length) {
                auto d = core::parse_duration(*expected);
                if (!d) {
                    return d.error();
                }
                limit = static_cast<double>(d->count());
            } else if (auto n = net::parse_number(*expected)) {
                limit = *n;
            } else {
                return core::Error{core::ErrorCode::kInvalidArgument,
                                   fmt::format("{} is not a number", quoted(*expected))};
            }
            auto got = number_of(r);
            if (!got) {
                return miss(fmt::format("a number {} {}", op_text(a.op), *expected));
            }
            bool ok = a.op == Op::kLt   ? *got < limit
                      : a.op == Op::kLe ? *got <= limit
                      : a.op == Op::kGt ? *got > limit
                                        : *got >= limit;
            std::string unit = a.subject == Subject::kDuration && !a.length ? "ms" : "";
            return ok ? std::string{}
                      : fmt::format("expected {} {} but got {}{}", op_text(a.op), *expected,
                                    shown(r), unit);
        }
        case Op::kContains:
            return text_of(r).find(*expected) != std::string::npos
                       ? std::string{}
                       : miss(fmt::format("text containing {}", quoted(*expected)));
        case Op::kMatches: {
            // Compiled at parse unless the pattern holds a variable.
            auto re =
                a.regex ? core::Result<core::Regex>{*a.regex} : core::Regex::compile(*expected);
            if (!re) {
                return re.error();
            }
            return re->search(text_of(r)) ? std::string{}
                                          : miss(fmt::format("a match for /{}/", *expected));
        }
        case Op::kAny: {
            std::vector<std::string> options;
            for (const auto& v : a.values) {
                auto one = render(v, vars);
                if (!one) {
                    return one.error();
                }
                if (equals(r, *one)) {
                    return std::string{};
                }
                options.push_back(quoted(*one));
            }
            return miss(fmt::format("one of {}", fmt::join(options, ", ")));
        }
        case Op::kHas:
            break;
    }
    return std::string{};
}

core::Result<std::string> capture(const Capture& c, Answer& answer) {
    Read r = read_subject(answer, c.subject, c.name);
    if (!r.value && !r.text) {
        return core::Error{core::ErrorCode::kNotFound, r.missing};
    }
    std::string text = text_of(r);
    if (c.regex.empty()) {
        return text;
    }
    if (!c.compiled) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("capture {}: /{}/ was not compiled", c.variable, c.regex)};
    }
    std::vector<std::string_view> groups;
    if (!c.compiled->search(text, groups) || groups.size() < 2) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("/{}/ does not match {}", c.regex, quoted(text))};
    }
    return std::string{groups[1]};
}

std::string default_name(const Step& step) {
    switch (step.kind) {
        case StepKind::kHttp:
            return fmt::format("{} {}", step.method, step.url);
        case StepKind::kJsonRpc:
            return fmt::format("{} {}", step.rpc_method, step.url);
        case StepKind::kWebSocket:
            return fmt::format("websocket {}", step.url);
        case StepKind::kTcp:
            return fmt::format("tcp {}", step.address);
        case StepKind::kCommand:
            return step.argv.empty() ? std::string{"command"} : step.argv.front();
        case StepKind::kAction:
            return fmt::format("{} on {}", step.action, step.node);
        case StepKind::kChain:
            return fmt::format("chain {} {}", step.chain_check, step.url);
        case StepKind::kPoll:
            return "poll";
        case StepKind::kParallel:
            return fmt::format("parallel x{}", step.count);
    }
    return "step";
}

/// The job in an answer of the job API: {"job": {...}} (or the job itself).
const json::object* job_in(const json::value& answer) {
    const auto* object = answer.if_object();
    if (object == nullptr) {
        return nullptr;
    }
    const auto* job = object->if_contains("job");
    return job != nullptr && job->is_object() ? &job->get_object() : object;
}

/// An action step's submit: its params, and why (the audit trail says a canary did it).
std::string submit_body(json::object params) {
    json::object body;
    body["params"] = std::move(params);
    body["reason"] = "canary scenario";
    return json::serialize(body);
}

core::Millis remaining(SteadyClock::time_point deadline) {
    auto left = std::chrono::duration_cast<core::Millis>(deadline - SteadyClock::now());
    return std::max(left, core::Millis{0});
}

/// One branch of a parallel step: its own copy of the variables and its own results.
struct Branch {
    Vars vars;
    std::vector<StepResult> results;
    std::string failed;
    Verdict verdict;
};

class Runner {
public:
    explicit Runner(RunContext& context) : ctx_(context) {}

    /// Runs `steps` in order until one does not pass. Results go to `out`.
    asio::awaitable<Verdict> steps(const std::vector<Step>& list,
                                   Vars& vars,
                                   int depth,
                                   bool cleanup,
                                   SteadyClock::time_point deadline,
                                   std::vector<StepResult>& out,
                                   std::string& failed_step) {
        for (const auto& step : list) {
            auto started = SteadyClock::now();
            std::vector<StepResult> inner;
            StepResult result{.name = step.name.empty() ? default_name(step) : step.name,
                              .kind = step.kind,
                              .depth = depth,
                              .cleanup = cleanup};
            Verdict v;
            if (SteadyClock::now() >= deadline) {
                v = Verdict::broken("the scenario's timeout passed before this step");
            } else {
                v = co_await one(step, vars, depth, cleanup, deadline, inner);
            }
            result.outcome = v.outcome;
            result.duration =
                std::chrono::duration_cast<core::Millis>(SteadyClock::now() - started);
            result.message = v.message;
            if (ctx_.on_step) {
                ctx_.on_step(result);
            }
            out.push_back(std::move(result));
            out.insert(out.end(), std::make_move_iterator(inner.begin()),
                       std::make_move_iterator(inner.end()));
            if (v.outcome != Outcome::kPassed) {
                if (failed_step.empty()) {
                    failed_step = out[out.size() - inner.size() - 1].name;
                }
                co_return v;
            }
        }
        co_return Verdict::passed();
    }

private:
    asio::awaitable<Verdict> one(const Step& step,
                                 Vars& vars,
                                 int depth,
                                 bool cleanup,
                                 SteadyClock::time_point scenario_deadline,
                                 std::vector<StepResult>& inner) {
        auto deadline = scenario_deadline;
        if (step.timeout.count() > 0) {
            deadline = std::min(deadline, SteadyClock::now() + step.timeout);
        }
        switch (step.kind) {
            case StepKind::kPoll:
                co_return co_await poll(step, vars, depth, cleanup, deadline, inner);
            case StepKind::kParallel:
                co_return co_await parallel(step, vars, depth, cleanup, deadline, inner);
            default:
                break;
        }
        Answer answer;
        auto started = SteadyClock::now();
        Verdict v = co_await call(step, vars, deadline, answer);
        answer.duration = std::chrono::duration_cast<core::Millis>(SteadyClock::now() - started);
        if (v.outcome != Outcome::kPassed) {
            co_return v;
        }
        co_return check(step, vars, answer);
    }

    /// The step's assertions, the implicit ones, then its captures.
    Verdict check(const Step& step, Vars& vars, Answer& answer) {
        bool checks_status = false;
        bool checks_exit = false;
        for (const auto& a : step.assertions) {
            checks_status |= a.subject == Subject::kStatus;
            checks_exit |= a.subject == Subject::kExitCode;
        }
        if (!checks_status && answer.status && *answer.status >= 400) {
            std::string why = fmt::format("HTTP {}: {}", *answer.status, quoted(answer.body));
            return *answer.status >= 500 ? Verdict::broken(why) : Verdict::failed(why);
        }
        if (step.kind == StepKind::kAction) {
            bool checks_state =
                std::any_of(step.assertions.begin(), step.assertions.end(), [](const Assertion& a) {
                    return a.subject == Subject::kJson && a.name == "state";
                });
            std::string problem;
            const json::value* job = json_of(answer, problem);
            const auto* object = job != nullptr ? job->if_object() : nullptr;
            auto member = [&](std::string_view name) {
                const auto* v = object != nullptr ? object->if_contains(name) : nullptr;
                return v != nullptr && v->is_string() ? std::string{v->get_string()}
                                                      : std::string{};
            };
            if (!checks_state && member("state") != "succeeded") {
                return Verdict::failed(fmt::format(
                    "job {} ({} on {}) ended {}{}", member("id"), member("action"), member("node"),
                    member("state"),
                    member("error").empty() ? std::string{} : ": " + one_line(member("error"))));
            }
        }
        if (!checks_exit && answer.exit_code && *answer.exit_code != 0) {
            return Verdict::failed(
                fmt::format("exited with {}: {}", *answer.exit_code, quoted(answer.stderr_text)));
        }
        if (step.kind == StepKind::kJsonRpc) {
            std::string problem;
            const json::value* reply = json_of(answer, problem);
            if (reply == nullptr) {
                return Verdict::failed(problem);
            }
            const auto* object = reply->if_object();
            const json::value* error = object ? object->if_contains("error") : nullptr;
            bool expects_error =
                std::any_of(step.assertions.begin(), step.assertions.end(), [](const Assertion& a) {
                    return a.subject == Subject::kJson && a.name.starts_with("error");
                });
            if (error != nullptr && !error->is_null() && !expects_error) {
                return Verdict::failed("JSON-RPC error: " + one_line(json::serialize(*error)));
            }
        }
        for (const auto& a : step.assertions) {
            auto problem = judge(a, answer, vars);
            if (!problem) {
                return Verdict::failed(fmt::format("{}: {}", a.text, problem.error().message));
            }
            if (!problem->empty()) {
                // 5xx while the status was asserted is still the target failing to serve.
                bool unavailable =
                    a.subject == Subject::kStatus && answer.status && *answer.status >= 500;
                std::string why = a.message.empty() ? fmt::format("{}: {}", a.text, *problem)
                                                    : fmt::format("{}: {}", a.message, *problem);
                return unavailable ? Verdict::broken(why) : Verdict::failed(why);
            }
        }
        for (const auto& c : step.captures) {
            auto value = capture(c, answer);
            if (!value) {
                return Verdict::failed(
                    fmt::format("capture {} ({}): {}", c.variable, c.text, value.error().message));
            }
            vars[c.variable] = std::move(*value);
        }
        return Verdict::passed();
    }

    asio::awaitable<Verdict> call(const Step& step,
                                  const Vars& vars,
                                  SteadyClock::time_point deadline,
                                  Answer& answer) {
        switch (step.kind) {
            case StepKind::kHttp:
            case StepKind::kJsonRpc:
                co_return co_await http(step, vars, deadline, answer);
            case StepKind::kWebSocket:
                co_return co_await websocket(step, vars, deadline, answer);
            case StepKind::kTcp:
                co_return co_await tcp(step, vars, deadline);
            case StepKind::kCommand:
                co_return co_await command(step, vars, deadline, answer);
            case StepKind::kAction:
                co_return co_await action(step, vars, deadline, answer);
            case StepKind::kChain:
                co_return co_await chain(step, vars, deadline, answer);
            default:
                break;
        }
        co_return Verdict::broken("not a call");
    }

    static Verdict from_error(const core::Error& error) {
        return error.code == core::ErrorCode::kInvalidArgument ? Verdict::failed(error.message)
                                                               : Verdict::broken(error.message);
    }

    asio::awaitable<Verdict> http(const Step& step,
                                  const Vars& vars,
                                  SteadyClock::time_point deadline,
                                  Answer& answer) {
        if (ctx_.http == nullptr) {
            co_return Verdict::broken("no HTTP client to run this step with");
        }
        net::ClientRequest request;
        auto url = render(step.url, vars);
        if (!url) {
            co_return Verdict::failed(url.error().message);
        }
        request.url = std::move(*url);
        request.timeout = std::max(remaining(deadline), core::Millis{1});
        request.max_body_bytes = ctx_.max_body_bytes;
        for (const auto& [name, value] : step.headers) {
            auto filled = render(value, vars);
            if (!filled) {
                co_return Verdict::failed(filled.error().message);
            }
            request.headers.push_back(net::Header{name, std::move(*filled)});
        }
        if (!step.tls_verify || !step.ca_file.empty()) {
            request.tls = net::ClientTls{.ca_file = step.ca_file, .verify = step.tls_verify};
        }
        if (step.kind == StepKind::kJsonRpc) {
            auto params = render(step.rpc_params, vars);
            if (!params) {
                co_return Verdict::failed(params.error().message);
            }
            json::error_code ec;
            auto parsed = json::parse(*params, ec);
            if (ec) {
                co_return Verdict::failed(fmt::format("params are not JSON once filled in ({}): {}",
                                                      ec.message(), quoted(*params)));
            }
            request.method = "POST";
            request.body = json::serialize(json::object{
                {"jsonrpc", "2.0"}, {"id", 1}, {"method", step.rpc_method}, {"params", parsed}});
            if (!net::find_header(request.headers, "Content-Type")) {
                request.headers.push_back(net::Header{"Content-Type", "application/json"});
            }
        } else {
            request.method = step.method;
            auto body = render(step.body, vars);
            if (!body) {
                co_return Verdict::failed(body.error().message);
            }
            request.body = std::move(*body);
        }
        auto got = co_await ctx_.http->fetch(std::move(request));
        if (!got) {
            co_return from_error(got.error());
        }
        answer.status = got->status;
        answer.headers = std::move(got->headers);
        answer.body = std::move(got->body);
        co_return Verdict::passed();
    }

    /// One request of an action step to serve's job API, within the step's deadline.
    asio::awaitable<core::Result<net::ClientResponse>> exchange(
        const std::vector<net::Header>& headers,
        SteadyClock::time_point deadline,
        std::string method,
        std::string url,
        std::string body) {
        net::ClientRequest request{.method = std::move(method),
                                   .url = std::move(url),
                                   .headers = headers,
                                   .body = std::move(body),
                                   .timeout = std::max(remaining(deadline), core::Millis{1}),
                                   .max_body_bytes = ctx_.max_body_bytes};
        co_return co_await ctx_.http->fetch(std::move(request));
    }

    /// Submits the job, then reads it every kActionPoll until it has ended or the step's time
    /// is up. The answer is the last read: the job as GET /api/v1/jobs/{id} gives it.
    asio::awaitable<Verdict> action(const Step& step,
                                    const Vars& vars,
                                    SteadyClock::time_point deadline,
                                    Answer& answer) {
        if (ctx_.http == nullptr) {
            co_return Verdict::broken("no HTTP client to run this step with");
        }
        auto server = vars.find("server");
        auto node = render(step.node, vars);
        if (!node) {
            co_return Verdict::failed(node.error().message);
        }
        if (server == vars.end() || server->second.empty()) {
            co_return Verdict::broken("no {{server}} to submit the job to");
        }
        json::object params;
        for (const auto& [name, value] : step.params) {
            auto filled = render(value, vars);
            if (!filled) {
                co_return Verdict::failed(filled.error().message);
            }
            params[name] = std::move(*filled);
        }
        std::vector<net::Header> headers;
        headers.push_back(net::Header{"Content-Type", "application/json"});
        if (auto token = vars.find("token"); token != vars.end() && !token->second.empty()) {
            headers.push_back(net::Header{"Authorization", "Bearer " + token->second});
        }
        auto submitted = co_await exchange(
            headers, deadline, "POST",
            fmt::format("{}/api/v1/nodes/{}/actions/{}", server->second, *node, step.action),
            submit_body(std::move(params)));
        if (!submitted) {
            co_return from_error(submitted.error());
        }
        if (submitted->status >= 300) {
            std::string why = fmt::format("submitting {} on {}: HTTP {}: {}", step.action, *node,
                                          submitted->status, quoted(submitted->body));
            co_return submitted->status >= 500 ? Verdict::broken(why) : Verdict::failed(why);
        }
        std::string id;
        {
            json::error_code ec;
            auto job = json::parse(submitted->body, ec);
            const auto* inner = job_in(job);
            const auto* found = inner != nullptr ? inner->if_contains("id") : nullptr;
            if (found == nullptr || !found->is_string()) {
                co_return Verdict::failed(fmt::format("submitting {} on {}: no job id in {}",
                                                      step.action, *node, quoted(submitted->body)));
            }
            id = found->get_string();
        }
        asio::steady_timer pause{co_await asio::this_coro::executor};
        while (true) {
            auto read = co_await exchange(headers, deadline, "GET",
                                          fmt::format("{}/api/v1/jobs/{}", server->second, id), "");
            if (!read) {
                co_return from_error(read.error());
            }
            json::error_code ec;
            auto whole = json::parse(read->body, ec);
            const auto* job = ec ? nullptr : job_in(whole);
            const auto* state = job != nullptr ? job->if_contains("state") : nullptr;
            if (read->status != 200 || state == nullptr || !state->is_string()) {
                co_return Verdict::broken(fmt::format("reading job {}: HTTP {}: {}", id,
                                                      read->status, quoted(read->body)));
            }
            // The answer the assertions read is the job itself: json.state, json.error...
            answer.status = read->status;
            answer.headers = std::move(read->headers);
            answer.body = json::serialize(*job);
            answer.json_tried = false;
            auto s = state->get_string();
            if (s == "succeeded" || s == "failed" || s == "cancelled" || s == "timed_out") {
                co_return Verdict::passed();
            }
            if (remaining(deadline) <= kActionPoll) {
                co_return Verdict::broken(
                    fmt::format("job {} ({} on {}) still {} when the step's "
                                "time was up",
                                id, step.action, *node, std::string{s}));
            }
            pause.expires_after(kActionPoll);
            co_await pause.async_wait(asio::use_awaitable);
        }
    }

    /// One read of a node's head through the step's preset: its height and head time, and
    /// (for "synced", when the preset has the call) whether it still syncs.
    struct Head {
        std::int64_t height = 0;
        std::optional<core::TimePoint> time;
        bool syncing = false;
    };

    asio::awaitable<core::Result<Head>> read_chain_head(const supervisor::Preset& preset,
                                                        const std::string& base,
                                                        bool with_syncing,
                                                        SteadyClock::time_point deadline) {
        auto call = [&](const supervisor::ChainCall& c) {
            net::ClientRequest request;
            request.method = c.method;
            request.url = base + c.path;
            request.body = c.body;
            if (!c.body.empty()) {
                request.headers.push_back(net::Header{"Content-Type", "application/json"});
            }
            request.timeout = std::max(remaining(deadline), core::Millis{1});
            request.max_body_bytes = ctx_.max_body_bytes;
            return request;
        };
        auto got = co_await ctx_.http->fetch(call(preset.head));
        if (!got) {
            co_return got.error();
        }
        if (got->status >= 300) {
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  fmt::format("{}{} answered HTTP {}: {}", base, preset.head.path,
                                              got->status, quoted(got->body))};
        }
        auto fields = supervisor::read_head(preset, got->body);
        if (!fields) {
            co_return core::Error{core::ErrorCode::kInvalidArgument,
                                  fmt::format("{}: {}", base, fields.error().message)};
        }
        if (!fields->height) {
            co_return core::Error{core::ErrorCode::kInvalidArgument,
                                  fmt::format("{}: no height in the head's answer", base)};
        }
        Head head{.height = *fields->height, .time = fields->head_time};
        if (with_syncing && !preset.syncing.path.empty()) {
            auto said = co_await ctx_.http->fetch(call(preset.syncing));
            if (!said) {
                co_return said.error();
            }
            auto syncing = supervisor::read_syncing(preset, said->body);
            if (!syncing) {
                co_return core::Error{core::ErrorCode::kInvalidArgument,
                                      fmt::format("{}: {}", base, syncing.error().message)};
            }
            head.syncing = *syncing;
        }
        co_return head;
    }

    /// A lag check's peers as base URLs: those it lists, then the pool's nodes its `fleet`
    /// selects (read from {{server}}'s node list), less the scenario's own node, nodes in
    /// maintenance, and `own` (the checked node's URL).
    asio::awaitable<core::Result<std::vector<std::string>>> lag_peers(
        const Step& step,
        const Vars& vars,
        const std::string& own,
        SteadyClock::time_point deadline) {
        std::vector<std::string> peers;
        auto add = [&](const std::string& peer_template, const Vars& with) -> core::Result<void> {
            auto peer = render(peer_template, with);
            if (!peer) {
                return peer.error();
            }
            std::string peer_base = std::move(*peer);
            while (!peer_base.empty() && peer_base.back() == '/') {
                peer_base.pop_back();
            }
            if (peer_base != own &&
                std::find(peers.begin(), peers.end(), peer_base) == peers.end()) {
                peers.push_back(std::move(peer_base));
            }
            return {};
        };
        for (const auto& peer_template : step.peers) {
            if (auto added = add(peer_template, vars); !added) {
                co_return core::Error{core::ErrorCode::kInvalidArgument, added.error().message};
            }
        }
        if (!step.fleet_peers) {
            co_return peers;
        }
        auto server = vars.find("server");
        if (server == vars.end() || server->second.empty()) {
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  "no {{server}} to list the fleet's nodes from"};
        }
        std::string url = server->second + "/api/v1/nodes";
        char separator = '?';
        for (const auto& [key, value] : step.fleet) {
            url += separator;
            url += "label=" + query_escaped(key + "=" + value);
            separator = '&';
        }
        std::vector<net::Header> headers;
        if (auto token = vars.find("token"); token != vars.end() && !token->second.empty()) {
            headers.push_back(net::Header{"Authorization", "Bearer " + token->second});
        }
        auto listed = co_await exchange(headers, deadline, "GET", url, "");
        if (!listed) {
            co_return listed.error();
        }
        json::error_code ec;
        auto whole = listed->status == 200 ? json::parse(listed->body, ec) : json::value{};
        const auto* nodes = whole.is_object() ? whole.as_object().if_contains("nodes") : nullptr;
        if (nodes == nullptr || !nodes->is_array()) {
            co_return core::Error{core::ErrorCode::kUnavailable,
                                  fmt::format("listing the fleet's nodes: HTTP {}: {}",
                                              listed->status, quoted(listed->body))};
        }
        const auto self = vars.find("node");
        const auto& peer_template = step.peer_url.empty() ? step.url : step.peer_url;
        for (const auto& node : nodes->as_array()) {
            const auto* name = node.is_object() ? node.as_object().if_contains("node") : nullptr;
            const auto* state = node.is_object() ? node.as_object().if_contains("state") : nullptr;
            if (name == nullptr || !name->is_string() ||
                (self != vars.end() && name->get_string() == self->second) ||
                (state != nullptr && state->is_string() && state->get_string() == "maintenance")) {
                continue;
            }
            if (peers.size() >= kMaxPeers) {
                break;  // the first kMaxPeers by name: a step's reads stay bounded
            }
            Vars with = vars;
            add_peer_vars(node.as_object(), with);
            if (auto added = add(peer_template, with); !added) {
                co_return core::Error{core::ErrorCode::kInvalidArgument, added.error().message};
            }
        }
        co_return peers;
    }

    /// A chain step: the node's head read through its preset, and the check it names.
    asio::awaitable<Verdict> chain(const Step& step,
                                   const Vars& vars,
                                   SteadyClock::time_point deadline,
                                   Answer& answer) {
        if (ctx_.http == nullptr || !step.preset) {
            co_return Verdict::broken("no HTTP client or chain preset to run this step with");
        }
        const auto& preset = *step.preset;
        auto url = render(step.url, vars);
        if (!url) {
            co_return Verdict::failed(url.error().message);
        }
        std::string base = std::move(*url);
        while (!base.empty() && base.back() == '/') {
            base.pop_back();
        }
        auto head = co_await read_chain_head(preset, base, step.chain_check == "synced", deadline);
        if (!head) {
            co_return from_error(head.error());
        }
        json::object out;
        out["height"] = head->height;
        out["syncing"] = head->syncing;
        if (head->time) {
            out["head_time"] = core::format_time(*head->time);
            out["age_ms"] =
                std::chrono::duration_cast<core::Millis>(core::SystemClock{}.now() - *head->time)
                    .count();
        }
        Verdict verdict = Verdict::passed();
        if (step.chain_check == "synced") {
            auto max_age =
                step.max_head_age.count() > 0 ? step.max_head_age : 10 * preset.block_interval;
            if (head->syncing) {
                verdict = Verdict::failed(
                    fmt::format("{} is still syncing (height {})", base, head->height));
            } else if (head->time && core::SystemClock{}.now() - *head->time > max_age) {
                verdict = Verdict::failed(
                    fmt::format("{}'s head (height {}) is {} old, more than {}", base, head->height,
                                core::format_duration(std::chrono::duration_cast<core::Millis>(
                                    core::SystemClock{}.now() - *head->time)),
                                core::format_duration(max_age)));
            }
        } else if (step.chain_check == "advancing") {
            auto within = step.within.count() > 0
                              ? step.within
                              : std::max(core::Millis{1000}, 5 * preset.block_interval);
            const auto first = head->height;
            const auto until = SteadyClock::now() + within;
            asio::steady_timer pause{co_await asio::this_coro::executor};
            std::int64_t last = first;
            while (last <= first && SteadyClock::now() < until && remaining(deadline).count() > 0) {
                pause.expires_after(std::min(preset.block_interval, remaining(deadline)));
                co_await pause.async_wait(asio::use_awaitable);
                auto again = co_await read_chain_head(preset, base, false, deadline);
                if (!again) {
                    co_return from_error(again.error());
                }
                last = again->height;
            }
            out["height"] = last;
            out["advanced_by"] = last - first;
            if (last <= first) {
                verdict = Verdict::failed(fmt::format("{}'s head stayed at {} for {}", base, first,
                                                      core::format_duration(within)));
            }
        } else {  // lag
            auto peers = co_await lag_peers(step, vars, base, deadline);
            if (!peers) {
                co_return from_error(peers.error());
            }
            std::int64_t highest = head->height;
            std::size_t read = 0;
            std::string first_problem;
            for (const auto& peer_base : *peers) {
                auto theirs = co_await read_chain_head(preset, peer_base, false, deadline);
                if (!theirs) {
                    // A peer that cannot be read says nothing of this node: it is left out.
                    if (first_problem.empty()) {
                        first_problem = theirs.error().message;
                    }
                    continue;
                }
                ++read;
                highest = std::max(highest, theirs->height);
            }
            out["peers"] = peers->size();
            out["peers_read"] = read;
            out["highest_peer"] = highest;
            out["lag"] = highest - head->height;
            if (!peers->empty() && read == 0) {
                // Nothing to compare with is not a pass: the check could not be made.
                verdict = Verdict::broken(fmt::format("none of {}'s {} peers could be read: {}",
                                                      base, peers->size(), first_problem));
            } else if (highest - head->height > step.max_lag) {
                verdict = Verdict::failed(
                    fmt::format("{} is {} blocks behind its peers (height {}, "
                                "highest {}; at most {})",
                                base, highest - head->height, head->height, highest, step.max_lag));
            }
        }
        answer.status = 200;
        answer.body = json::serialize(out);
        answer.json_tried = false;
        co_return verdict;
    }

    asio::awaitable<Verdict> websocket(const Step& step,
                                       const Vars& vars,
                                       SteadyClock::time_point deadline,
                                       Answer& answer) {
        if (ctx_.blocking == nullptr) {
            co_return Verdict::broken("no thread pool to run a websocket step on");
        }
        auto url = render(step.url, vars);
        auto message = render(step.body, vars);
        if (!url || !message) {
            co_return Verdict::failed((!url ? url.error() : message.error()).message);
        }
        net::WebSocketConnect connect{.url = std::move(*url)};
        for (const auto& [name, value] : step.headers) {
            auto filled = render(value, vars);
            if (!filled) {
                co_return Verdict::failed(filled.error().message);
            }
            connect.headers.push_back(net::Header{name, std::move(*filled)});
        }
        connect.timeout = std::max(remaining(deadline), core::Millis{1});
        connect.max_message_bytes = ctx_.max_body_bytes;
        if (!step.tls_verify || !step.ca_file.empty()) {
            connect.tls = net::ClientTls{.ca_file = step.ca_file, .verify = step.tls_verify};
        }
        auto exchange = [connect = std::move(connect), text = std::move(*message),
                         deadline]() -> core::Result<std::string> {
            auto client = net::WebSocketClient::connect(connect);
            if (!client) {
                return client.error();
            }
            if (!text.empty()) {
                if (auto sent = (*client)->send(net::WebSocketMessage{.data = text},
                                                std::max(remaining(deadline), core::Millis{1}));
                    !sent) {
                    return sent.error();
                }
            }
            auto got = (*client)->read(std::max(remaining(deadline), core::Millis{1}));
            if (!got) {
                return got.error();
            }
            (void)(*client)->close(1000, "", core::Millis{200});
            return std::move(got->data);
        };
        auto got = co_await net::offload(*ctx_.blocking, std::move(exchange));
        if (!got) {
            co_return from_error(got.error());
        }
        answer.body = std::move(*got);
        co_return Verdict::passed();
    }

    asio::awaitable<Verdict> tcp(const Step& step,
                                 const Vars& vars,
                                 SteadyClock::time_point deadline) {
        using namespace asio::experimental::awaitable_operators;
        auto address = render(step.address, vars);
        if (!address) {
            co_return Verdict::failed(address.error().message);
        }
        auto colon = address->rfind(':');
        if (colon == std::string::npos || colon + 1 == address->size()) {
            co_return Verdict::failed(fmt::format("\"{}\" is not HOST:PORT", *address));
        }
        std::string host = address->substr(0, colon);
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
            host = host.substr(1, host.size() - 2);
        }
        std::string port = address->substr(colon + 1);
        auto executor = co_await asio::this_coro::executor;
        asio::steady_timer timer{executor, deadline};
        asio::ip::tcp::resolver resolver{executor};
        asio::ip::tcp::socket socket{executor};
        auto attempt = [&]() -> asio::awaitable<boost::system::error_code> {
            auto [rec, endpoints] =
                co_await resolver.async_resolve(host, port, asio::as_tuple(asio::use_awaitable));
            if (rec) {
                co_return rec;
            }
            auto [cec, endpoint] = co_await asio::async_connect(
                socket, endpoints, asio::as_tuple(asio::use_awaitable));
            co_return cec;
        };
        auto raced = co_await (attempt() || timer.async_wait(asio::as_tuple(asio::use_awaitable)));
        if (raced.index() == 1) {
            co_return Verdict::broken(
                fmt::format("no connection to {} within the timeout", *address));
        }
        if (auto ec = std::get<0>(raced); ec) {
            co_return Verdict::broken(
                fmt::format("cannot connect to {}: {}", *address, ec.message()));
        }
        co_return Verdict::passed();
    }

    asio::awaitable<Verdict> command(const Step& step,
                                     const Vars& vars,
                                     SteadyClock::time_point deadline,
                                     Answer& answer) {
        proc::SpawnOptions options;
        for (const auto& arg : step.argv) {
            auto filled = render(arg, vars);
            if (!filled) {
                co_return Verdict::failed(filled.error().message);
            }
            options.argv.push_back(std::move(*filled));
        }
        std::size_t kept = 0;
        bool cut = false;
        std::string out;
        std::string err;
        proc::RunSpec spec;
        spec.timeout = std::max(remaining(deadline), core::Millis{1});
        spec.kill_grace = core::Millis{2000};
        spec.on_line = [&](const proc::Line& line) {
            auto& into = line.stream == proc::Stream::kStdout ? out : err;
            if (kept + line.text.size() + 1 > ctx_.max_body_bytes) {
                cut = true;
                return;
            }
            kept += line.text.size() + 1;
            if (!into.empty()) {
                into += '\n';
            }
            into += line.text;
        };
        auto executor = co_await asio::this_coro::executor;
        auto ran = co_await proc::run(executor, std::move(options), std::move(spec));
        if (!ran) {
            co_return Verdict::broken(ran.error().message);
        }
        if (ran->timed_out) {
            co_return Verdict::broken("the command did not end within the timeout");
        }
        if (cut) {
            co_return Verdict::failed(
                fmt::format("the command printed more than {} bytes", ctx_.max_body_bytes));
        }
        answer.exit_code = ran->status.exited() ? ran->status.code : 128 + ran->status.signal;
        answer.body = std::move(out);
        answer.stderr_text = std::move(err);
        co_return Verdict::passed();
    }

    asio::awaitable<Verdict> poll(const Step& step,
                                  Vars& vars,
                                  int depth,
                                  bool cleanup,
                                  SteadyClock::time_point deadline,
                                  std::vector<StepResult>& inner) {
        deadline = std::min(deadline, SteadyClock::now() + step.deadline);
        auto executor = co_await asio::this_coro::executor;
        asio::steady_timer timer{executor};
        int tries = 0;
        auto started = SteadyClock::now();
        while (true) {
            ++tries;
            Vars attempt = vars;
            std::vector<StepResult> results;
            std::string failed;
            auto quiet = std::exchange(ctx_.on_step, nullptr);  // only the last try is shown
            Verdict v =
                co_await steps(step.steps, attempt, depth + 1, cleanup, deadline, results, failed);
            ctx_.on_step = std::move(quiet);
            if (v.outcome == Outcome::kPassed) {
                vars = std::move(attempt);
                inner = std::move(results);
                co_return Verdict{Outcome::kPassed, fmt::format("passed on try {}", tries)};
            }
            auto next = SteadyClock::now() + step.interval;
            if (next >= deadline) {
                inner = std::move(results);
                auto waited =
                    std::chrono::duration_cast<core::Millis>(SteadyClock::now() - started);
                // Never passing within the deadline is the target not getting there: the last
                // try's own verdict says whether it answered wrongly or not at all.
                co_return Verdict{
                    v.outcome,
                    fmt::format("not passed after {} tries in {}: step \"{}\": {}", tries,
                                core::format_duration(waited), failed, v.message)};
            }
            timer.expires_at(next);
            co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        }
    }

    asio::awaitable<Verdict> parallel(const Step& step,
                                      Vars& vars,
                                      int depth,
                                      bool cleanup,
                                      SteadyClock::time_point deadline,
                                      std::vector<StepResult>& inner) {
        std::vector<Branch> branches(static_cast<std::size_t>(step.count));
        auto executor = co_await asio::this_coro::executor;
        auto quiet = std::exchange(ctx_.on_step, nullptr);  // branches interleave: shown after
        using Op = decltype(asio::co_spawn(executor, std::declval<asio::awaitable<void>>(),
                                           asio::deferred));
        std::vector<Op> ops;
        for (std::size_t i = 0; i < branches.size(); ++i) {
            auto& branch = branches[i];
            branch.vars = vars;
            branch.vars["branch"] = std::to_string(i + 1);
            ops.push_back(asio::co_spawn(
                executor, run_branch(step, branch, depth, cleanup, deadline), asio::deferred));
        }
        co_await asio::experimental::make_parallel_group(std::move(ops))
            .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
        ctx_.on_step = std::move(quiet);
        Verdict worst = Verdict::passed();
        int failures = 0;
        for (std::size_t i = 0; i < branches.size(); ++i) {
            auto& branch = branches[i];
            for (auto& r : branch.results) {
                r.name = fmt::format("[{}] {}", i + 1, r.name);
                inner.push_back(std::move(r));
            }
            if (branch.verdict.outcome != Outcome::kPassed) {
                ++failures;
                if (worst.outcome == Outcome::kPassed ||
                    branch.verdict.outcome == Outcome::kBroken) {
                    worst = Verdict{branch.verdict.outcome,
                                    fmt::format("branch {}: step \"{}\": {}", i + 1, branch.failed,
                                                branch.verdict.message)};
                }
            }
        }
        if (failures > 0) {
            worst.message = fmt::format("{} of {} branches did not pass; {}", failures,
                                        branches.size(), worst.message);
        }
        co_return worst;
    }

    asio::awaitable<void> run_branch(const Step& step,
                                     Branch& branch,
                                     int depth,
                                     bool cleanup,
                                     SteadyClock::time_point deadline) {
        branch.verdict = co_await steps(step.steps, branch.vars, depth + 1, cleanup, deadline,
                                        branch.results, branch.failed);
    }

    RunContext& ctx_;
};

}  // namespace

asio::awaitable<RunResult> run_scenario(const Scenario& scenario, RunContext context) {
    core::SystemClock system_clock;
    core::Clock& clock = context.clock != nullptr ? *context.clock : system_clock;
    RunResult result;
    result.scenario = scenario.name;
    result.started = clock.now();
    auto started = SteadyClock::now();
    Vars vars = context.vars;
    for (const auto& [name, value] : scenario.vars) {
        auto filled = render(value, vars);
        vars[name] = filled ? std::move(*filled) : value;
    }
    Runner runner{context};
    Verdict verdict;
    try {
        verdict = co_await runner.steps(scenario.steps, vars, 0, false, started + scenario.timeout,
                                        result.steps, result.failed_step);
        if (!scenario.cleanup.empty()) {
            std::string cleanup_failed;
            Verdict cleaned = co_await runner.steps(scenario.cleanup, vars, 0, true,
                                                    SteadyClock::now() + scenario.timeout,
                                                    result.steps, cleanup_failed);
            if (verdict.outcome == Outcome::kPassed && cleaned.outcome != Outcome::kPassed) {
                verdict = cleaned;
                result.failed_step = cleanup_failed;
            }
        }
    } catch (const std::exception& e) {
        verdict = Verdict::broken(std::string{"the run failed: "} + e.what());
    }
    result.outcome = verdict.outcome;
    if (verdict.outcome != Outcome::kPassed) {
        result.message = result.failed_step.empty()
                             ? verdict.message
                             : fmt::format("step \"{}\": {}", result.failed_step, verdict.message);
    }
    result.duration = std::chrono::duration_cast<core::Millis>(SteadyClock::now() - started);
    co_return result;
}

}  // namespace aviary::probes
