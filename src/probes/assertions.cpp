// Assertions, captures and templates as a scenario writes them (docs/probes.md, "Assertions").
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>
#include <utility>

#include "core/regex.hpp"
#include "net/json_path.hpp"
#include "probes/probes.hpp"

namespace aviary::probes {
namespace {

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

std::string_view trim(std::string_view text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())) != 0) {
        text.remove_prefix(1);
    }
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())) != 0) {
        text.remove_suffix(1);
    }
    return text;
}

core::Result<void> check_json_path(std::string_view path);

constexpr std::string_view kSubjects =
    "status, duration, body, header.NAME, json, json.PATH, exit_code or stderr";

/// Reads a subject ("json.result.height", "header.ETag", "status") into `a`'s fields.
core::Result<void> read_subject(std::string_view text, Subject& subject, std::string& name) {
    auto after = [&](std::string_view prefix) { return text.substr(prefix.size()); };
    if (text == "status") {
        subject = Subject::kStatus;
    } else if (text == "duration") {
        subject = Subject::kDuration;
    } else if (text == "body") {
        subject = Subject::kBody;
    } else if (text == "exit_code") {
        subject = Subject::kExitCode;
    } else if (text == "stderr") {
        subject = Subject::kStderr;
    } else if (text == "json" || text == "json.$") {
        subject = Subject::kJson;
        name.clear();
    } else if (text.starts_with("json.") || text.starts_with("json[")) {
        subject = Subject::kJson;
        name = std::string{text.starts_with("json.") ? after("json.") : after("json")};
        if (auto checked = check_json_path(name); !checked) {
            return checked.error();
        }
    } else if (text.starts_with("header.") && text.size() > 7) {
        subject = Subject::kHeader;
        name = std::string{after("header.")};
    } else {
        return invalid(
            fmt::format("\"{}\" is not something a step answers: expected {}", text, kSubjects));
    }
    return {};
}

struct OpName {
    std::string_view text;
    Op op;
};
// Longest first, so "<=" is not read as "<".
constexpr OpName kOps[] = {
    {"==", Op::kEq},
    {"!=", Op::kNe},
    {"<=", Op::kLe},
    {">=", Op::kGe},
    {"<", Op::kLt},
    {">", Op::kGt},
    {"contains", Op::kContains},
    {"matches", Op::kMatches},
    {"any", Op::kAny},
};

bool is_word_op(std::string_view op) {
    return std::isalpha(static_cast<unsigned char>(op.front())) != 0;
}

/// Where the operator starts in `text` (after the subject), or npos.
std::size_t find_op(std::string_view text, const OpName*& found) {
    for (std::size_t i = 0; i < text.size(); ++i) {
        for (const auto& candidate : kOps) {
            if (!text.substr(i).starts_with(candidate.text)) {
                continue;
            }
            if (is_word_op(candidate.text)) {
                // A word operator stands between spaces: "body contains x", not "json.contains".
                auto end = i + candidate.text.size();
                bool spaced_before = i > 0 && text[i - 1] == ' ';
                bool spaced_after = end < text.size() && text[end] == ' ';
                if (!spaced_before || !spaced_after) {
                    continue;
                }
            }
            found = &candidate;
            return i;
        }
    }
    return std::string_view::npos;
}

/// A JSON path as a subject takes: net's paths, with at most one `[*]` (every element).
core::Result<void> check_json_path(std::string_view path) {
    auto star = path.find("[*]");
    if (star == std::string_view::npos) {
        if (auto parsed = net::parse_json_path(path); !parsed) {
            return parsed.error();
        }
        return {};
    }
    auto rest = path.substr(star + 3);
    if (rest.find("[*]") != std::string_view::npos) {
        return invalid(fmt::format("json path \"{}\": at most one [*]", path));
    }
    if (!rest.empty() && rest.front() != '.' && rest.front() != '[') {
        return invalid(fmt::format("json path \"{}\": expected '.' or '[' after [*]", path));
    }
    if (rest.starts_with('.')) {
        rest.remove_prefix(1);
    }
    for (auto part : {path.substr(0, star), rest}) {
        if (auto parsed = net::parse_json_path(part); !parsed) {
            return invalid(fmt::format("json path \"{}\": {}", path, parsed.error().message));
        }
    }
    return {};
}

core::Result<void> check_templates(std::string_view text) {
    return parse_template(text);
}

}  // namespace

core::Result<Assertion> parse_assertion(std::string_view text) {
    Assertion a;
    a.text = std::string{trim(text)};
    std::string_view rest = a.text;
    if (rest.empty()) {
        return invalid("an empty assertion: write it like \"status == 200\"");
    }
    auto bad = [&](std::string_view why) {
        return invalid(fmt::format("assertion \"{}\": {}", a.text, why));
    };
    // has(SUBJECT): nothing follows.
    if (rest.starts_with("has(")) {
        if (!rest.ends_with(')')) {
            return bad("has( is not closed: write has(json.id)");
        }
        if (auto read = read_subject(trim(rest.substr(4, rest.size() - 5)), a.subject, a.name);
            !read) {
            return bad(read.error().message);
        }
        a.op = Op::kHas;
        return a;
    }
    std::string_view left;
    const OpName* op = nullptr;
    std::size_t op_at = std::string_view::npos;
    if (rest.starts_with("len(")) {
        auto close = rest.find(')');
        if (close == std::string_view::npos) {
            return bad("len( is not closed: write len(json.items) > 0");
        }
        left = trim(rest.substr(4, close - 4));
        a.length = true;
        auto tail = rest.substr(close + 1);
        op_at = find_op(tail, op);
        if (op_at == std::string_view::npos || !trim(tail.substr(0, op_at)).empty()) {
            return bad("expected an operator after len(...): ==, !=, <, <=, > or >=");
        }
        rest = tail.substr(op_at);
    } else {
        op_at = find_op(rest, op);
        if (op_at == std::string_view::npos) {
            return bad(
                "expected SUBJECT OPERATOR VALUE, like \"status == 200\" (operators: ==, !=, <, "
                "<=, >, >=, contains, matches, any; or has(SUBJECT))");
        }
        left = trim(rest.substr(0, op_at));
        rest = rest.substr(op_at);
    }
    if (auto read = read_subject(left, a.subject, a.name); !read) {
        return bad(read.error().message);
    }
    a.op = op->op;
    a.value = std::string{trim(rest.substr(op->text.size()))};
    if (!a.value.empty() &&
        std::string_view{"=<>!"}.find(a.value.front()) != std::string_view::npos) {
        return bad(fmt::format("\"{}{}\" is not an operator: ==, !=, <, <=, > or >=", op->text,
                               a.value.front()));
    }
    if (a.length && (a.op == Op::kContains || a.op == Op::kMatches || a.op == Op::kAny)) {
        return bad("a length compares with ==, !=, <, <=, > or >=");
    }
    if (a.op == Op::kAny) {
        std::string_view list = a.value;
        while (!list.empty()) {
            auto comma = list.find(',');
            auto item = trim(list.substr(0, comma));
            if (item.empty()) {
                return bad("an empty alternative in the list after any");
            }
            a.values.emplace_back(item);
            list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
        }
        if (a.values.empty()) {
            return bad("any needs a list: json.state any succeeded, failed");
        }
    } else if (a.value.empty() && a.op != Op::kEq && a.op != Op::kNe) {
        return bad("nothing to compare with after the operator");
    }
    if (a.op == Op::kMatches) {
        if (a.value.find("{{") == std::string::npos) {
            auto re = core::Regex::compile(a.value);
            if (!re) {
                return bad(re.error().message);
            }
            a.regex = std::move(*re);
        }
    }
    bool numeric = a.op == Op::kLt || a.op == Op::kLe || a.op == Op::kGt || a.op == Op::kGe;
    if (numeric && a.value.find("{{") == std::string::npos) {
        bool ok =
            a.subject == Subject::kDuration ? core::parse_duration(a.value).has_value() : [&] {
                char* end = nullptr;
                std::string v = a.value;
                std::strtod(v.c_str(), &end);
                return end != v.c_str() && *end == '\0';
            }();
        if (!ok) {
            return bad(a.subject == Subject::kDuration
                           ? "a duration compares with a duration like 500ms or 2s"
                           : "<, <=, > and >= compare numbers");
        }
    }
    for (const auto& v : a.values) {
        if (auto t = check_templates(v); !t) {
            return bad(t.error().message);
        }
    }
    if (auto t = check_templates(a.value); !t) {
        return bad(t.error().message);
    }
    return a;
}

core::Result<Capture> parse_capture(std::string variable, std::string_view text) {
    Capture c;
    c.variable = std::move(variable);
    c.text = std::string{trim(text)};
    std::string_view subject = c.text;
    if (auto tilde = subject.find(" ~ "); tilde != std::string_view::npos) {
        c.regex = std::string{trim(subject.substr(tilde + 3))};
        subject = trim(subject.substr(0, tilde));
        auto re = core::Regex::compile(c.regex);
        if (!re) {
            return invalid(fmt::format("capture {}: {}", c.variable, re.error().message));
        }
        c.compiled = *re;
        if (re->groups() < 1) {
            return invalid(fmt::format(
                "capture {}: the regex needs a group, the part to keep: body ~ id=([0-9]+)",
                c.variable));
        }
    }
    if (auto read = read_subject(subject, c.subject, c.name); !read) {
        return invalid(fmt::format("capture {}: {}", c.variable, read.error().message));
    }
    return c;
}

core::Result<void> parse_template(std::string_view text) {
    std::size_t at = 0;
    while ((at = text.find("{{", at)) != std::string_view::npos) {
        auto close = text.find("}}", at + 2);
        if (close == std::string_view::npos) {
            return invalid(
                fmt::format("\"{{{{\" at character {} is not closed by \"}}}}\"", at + 1));
        }
        auto name = trim(text.substr(at + 2, close - at - 2));
        if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
                return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' ||
                       c == '.';
            })) {
            return invalid(
                fmt::format("\"{}\" is not a variable name (letters, digits, _, - and .)",
                            text.substr(at, close + 2 - at)));
        }
        at = close + 2;
    }
    return {};
}

core::Result<std::string> render(std::string_view text,
                                 const std::map<std::string, std::string, std::less<>>& vars) {
    std::string out;
    out.reserve(text.size());
    std::size_t at = 0;
    while (true) {
        auto open = text.find("{{", at);
        if (open == std::string_view::npos) {
            out.append(text.substr(at));
            return out;
        }
        auto close = text.find("}}", open + 2);
        if (close == std::string_view::npos) {
            return invalid(fmt::format("\"{{{{\" at character {} is not closed", open + 1));
        }
        out.append(text.substr(at, open - at));
        auto name = trim(text.substr(open + 2, close - open - 2));
        auto found = vars.find(name);
        if (found == vars.end()) {
            return invalid(
                fmt::format("no variable \"{}\" (a capture of an earlier step, the "
                            "scenario's vars, or server)",
                            name));
        }
        out.append(found->second);
        at = close + 2;
    }
}

std::string_view step_kind_name(StepKind kind) {
    switch (kind) {
        case StepKind::kHttp:
            return "http";
        case StepKind::kJsonRpc:
            return "jsonrpc";
        case StepKind::kWebSocket:
            return "websocket";
        case StepKind::kTcp:
            return "tcp";
        case StepKind::kCommand:
            return "command";
        case StepKind::kAction:
            return "action";
        case StepKind::kChain:
            return "chain";
        case StepKind::kPoll:
            return "poll";
        case StepKind::kParallel:
            return "parallel";
    }
    return "step";
}

std::string_view outcome_name(Outcome outcome) {
    switch (outcome) {
        case Outcome::kPassed:
            return "passed";
        case Outcome::kFailed:
            return "failed";
        case Outcome::kBroken:
            return "broken";
    }
    return "broken";
}

const Scenario* find_scenario(const Settings& settings, std::string_view name) {
    for (const auto& scenario : settings.scenarios) {
        if (scenario.name == name) {
            return &scenario;
        }
    }
    return nullptr;
}

}  // namespace aviary::probes
