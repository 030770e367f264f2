#include "config/yaml_reader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <set>
#include <tuple>

namespace aviary::config {
namespace {

std::string_view kind_of(const YAML::Node& node) {
    switch (node.Type()) {
        case YAML::NodeType::Sequence:
            return "a sequence";
        case YAML::NodeType::Map:
            return "a mapping";
        case YAML::NodeType::Scalar:
            return "a scalar";
        default:
            return "nothing";
    }
}

/// A scalar's text, or nullopt (with an error naming `expected`) for anything else.
std::optional<std::string> scalar(YamlReader& reader,
                                  const Value& value,
                                  std::string_view expected) {
    if (value.is_null() || !value.node.IsScalar()) {
        reader.error(value, fmt::format("expected {}, got {}", expected, shown(value)));
        return std::nullopt;
    }
    return value.node.Scalar();
}

std::optional<long long> parse_integer(std::string_view text) {
    long long n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) {
        return std::nullopt;
    }
    return n;
}

std::optional<std::size_t> byte_unit(std::string_view unit) {
    struct Unit {
        std::string_view name;
        std::size_t bytes;
    };
    static constexpr Unit kUnits[] = {
        {"", 1},
        {"B", 1},
        {"KiB", std::size_t{1} << 10},
        {"MiB", std::size_t{1} << 20},
        {"GiB", std::size_t{1} << 30},
        {"KB", 1'000},
        {"MB", 1'000'000},
        {"GB", 1'000'000'000},
    };
    for (const auto& u : kUnits) {
        if (u.name == unit) {
            return u.bytes;
        }
    }
    return std::nullopt;
}

std::optional<std::size_t> parse_bytes(std::string_view text) {
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
        ++digits;
    }
    auto number = parse_integer(text.substr(0, digits));
    auto unit = byte_unit(text.substr(digits));
    if (!number || !unit || *number <= 0) {
        return std::nullopt;
    }
    auto n = static_cast<std::size_t>(*number);
    if (n > std::numeric_limits<std::size_t>::max() / *unit) {
        return std::nullopt;
    }
    return n * *unit;
}

}  // namespace

std::string shown(const Value& value) {
    if (!value.is_null() && value.node.IsScalar()) {
        return fmt::format("\"{}\"", value.node.Scalar());
    }
    return std::string{kind_of(value.node)};
}

std::string child_path(std::string_view parent, std::string_view key) {
    return parent.empty() ? std::string{key} : fmt::format("{}.{}", parent, key);
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) {
        row[j] = j;
    }
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
            diagonal = above;
        }
    }
    return row[b.size()];
}

std::string did_you_mean(std::string_view text, const std::vector<std::string_view>& choices) {
    std::string_view closest;
    std::size_t best = 3;
    for (auto choice : choices) {
        if (auto d = edit_distance(text, choice); d < best) {
            best = d;
            closest = choice;
        }
    }
    return closest.empty() ? std::string{} : fmt::format("; did you mean \"{}\"?", closest);
}

std::string position(std::string_view source, const YAML::Mark& mark) {
    // yaml-cpp counts from 0 and has no position for an empty document.
    int line = mark.is_null() ? 1 : mark.line + 1;
    int column = mark.is_null() ? 1 : mark.column + 1;
    return fmt::format("{}:{}:{}: ", source, line, column);
}

bool YamlReader::read_map(const Value& value, const std::vector<Field>& fields) {
    if (value.is_null()) {
        return true;
    }
    if (!value.node.IsMap()) {
        error(value, fmt::format("expected a mapping, got {}", shown(value)));
        return false;
    }
    std::set<std::string, std::less<>> seen;
    for (auto it = value.node.begin(); it != value.node.end(); ++it) {
        // Copies, not references: yaml-cpp's iterator hands out a temporary proxy.
        YAML::Node key_node = it->first;
        std::string key = key_node.IsScalar() ? key_node.Scalar() : std::string{};
        std::string path = child_path(value.path, key);
        auto field = std::find_if(fields.begin(), fields.end(),
                                  [&](const Field& f) { return f.key == key; });
        if (field == fields.end()) {
            std::string message = fmt::format("unknown key \"{}\"", key);
            const Field* closest = nullptr;
            std::size_t best = 3;  // suggest only within edit distance 2
            for (const auto& f : fields) {
                if (auto d = edit_distance(key, f.key); d < best) {
                    best = d;
                    closest = &f;
                }
            }
            if (closest != nullptr) {
                message += fmt::format("; did you mean \"{}\"?", closest->key);
            }
            error(key_node.Mark(), path, message);
            continue;
        }
        // yaml-cpp keeps both copies of a repeated key; which one wins would be a guess.
        if (!seen.insert(key).second) {
            error(key_node.Mark(), path, fmt::format("key \"{}\" appears twice", key));
            continue;
        }
        YAML::Node child = it->second;
        bool empty = !child.IsDefined() || child.IsNull();
        field->read(Value{child, path, empty ? key_node.Mark() : child.Mark()});
    }
    return true;
}

void YamlReader::read_list(const Value& value, const std::function<void(const Value&)>& item) {
    if (value.is_null()) {
        return;
    }
    if (!value.node.IsSequence()) {
        error(value, fmt::format("expected a sequence, got {}", shown(value)));
        return;
    }
    for (std::size_t i = 0; i < value.node.size(); ++i) {
        const YAML::Node& child = value.node[i];
        bool empty = !child.IsDefined() || child.IsNull();
        item(Value{child, fmt::format("{}[{}]", value.path, i), empty ? value.mark : child.Mark()});
    }
}

bool YamlReader::read_string(const Value& value, std::string& out) {
    auto text = scalar(*this, value, "a string");
    if (!text) {
        return false;
    }
    out = std::move(*text);
    return true;
}

bool YamlReader::read_choice(const Value& value,
                             std::string& out,
                             std::initializer_list<std::string_view> accepted,
                             std::string_view noun,
                             std::string_view listed) {
    std::string text;
    if (!read_string(value, text)) {
        return false;
    }
    if (std::find(accepted.begin(), accepted.end(), text) == accepted.end()) {
        error(value, fmt::format("unknown {} \"{}\" ({})", noun, text, listed));
        return false;
    }
    out = std::move(text);
    return true;
}

bool YamlReader::read_int(const Value& value, int& out, int min, int max) {
    std::int64_t n = 0;
    if (!read_int(value, n, min, max)) {
        return false;
    }
    out = static_cast<int>(n);
    return true;
}

bool YamlReader::read_int(const Value& value,
                          std::int64_t& out,
                          std::int64_t min,
                          std::int64_t max) {
    std::string expected = fmt::format("an integer from {} to {}", min, max);
    auto text = scalar(*this, value, expected);
    if (!text) {
        return false;
    }
    auto n = parse_integer(*text);
    if (!n || *n < min || *n > max) {
        error(value, fmt::format("expected {}, got \"{}\"", expected, *text));
        return false;
    }
    out = *n;
    return true;
}

bool YamlReader::read_bool(const Value& value, bool& out) {
    auto text = scalar(*this, value, "true or false");
    if (!text) {
        return false;
    }
    if (*text != "true" && *text != "false") {
        error(value, fmt::format("expected true or false, got \"{}\"", *text));
        return false;
    }
    out = *text == "true";
    return true;
}

bool YamlReader::read_bytes(const Value& value, std::size_t& out) {
    constexpr std::string_view kExpected = "a size like 16KiB, 1MiB or 4096";
    auto text = scalar(*this, value, kExpected);
    if (!text) {
        return false;
    }
    auto n = parse_bytes(*text);
    if (!n) {
        error(value, fmt::format("expected {}, got \"{}\"", kExpected, *text));
        return false;
    }
    out = *n;
    return true;
}

bool YamlReader::read_duration(const Value& value, core::Millis& out) {
    auto text = scalar(*this, value, "a duration like \"30s\"");
    if (!text) {
        return false;
    }
    auto parsed = core::parse_duration(*text);
    if (!parsed) {
        error(value, parsed.error().message);
        return false;
    }
    if (parsed->count() <= 0) {
        error(value, fmt::format("must be positive, got \"{}\"", *text));
        return false;
    }
    out = *parsed;
    return true;
}

bool YamlReader::read_string_map(const Value& value, core::Labels& out) {
    auto before = error_count();
    core::Labels labels;
    bool is_map = read_entries(value, [&](const Value& key, const Value& item) {
        std::string text;
        if (read_string(item, text)) {
            labels.emplace(key.node.Scalar(), std::move(text));
        }
    });
    if (!is_map || error_count() != before) {
        return false;
    }
    out = std::move(labels);
    return true;
}

bool YamlReader::read_entries(
    const Value& value, const std::function<void(const Value& key, const Value& item)>& entry) {
    if (value.is_null()) {
        return true;
    }
    if (!value.node.IsMap()) {
        error(value, fmt::format("expected a mapping, got {}", shown(value)));
        return false;
    }
    std::set<std::string, std::less<>> seen;
    for (auto it = value.node.begin(); it != value.node.end(); ++it) {
        // Copies, not references: yaml-cpp's iterator hands out a temporary proxy.
        YAML::Node key_node = it->first;
        std::string key = key_node.IsScalar() ? key_node.Scalar() : std::string{};
        std::string path = child_path(value.path, key);
        if (key.empty()) {
            error(key_node.Mark(), path, "keys must not be empty");
            continue;
        }
        if (!seen.insert(key).second) {
            error(key_node.Mark(), path, fmt::format("key \"{}\" appears twice", key));
            continue;
        }
        YAML::Node child = it->second;
        bool empty = !child.IsDefined() || child.IsNull();
        entry(Value{key_node, path, key_node.Mark()},
              Value{child, path, empty ? key_node.Mark() : child.Mark()});
    }
    return true;
}

void YamlReader::error(const Value& at, std::string_view message) {
    error(at.mark, at.path, message);
}

void YamlReader::error(const YAML::Mark& mark, std::string_view path, std::string_view message) {
    std::string text = position(source_, mark);
    if (!path.empty()) {
        text += fmt::format("{}: ", path);
    }
    text += message;
    problems_.push_back(Problem{mark.line, mark.column, std::move(text)});
}

std::optional<core::Error> YamlReader::failure() const {
    if (problems_.empty()) {
        return std::nullopt;
    }
    auto sorted = problems_;
    std::stable_sort(sorted.begin(), sorted.end(), [](const Problem& a, const Problem& b) {
        return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    std::string message;
    for (const auto& problem : sorted) {
        if (!message.empty()) {
            message += '\n';
        }
        message += problem.text;
    }
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

void read_groups(YamlReader& r, const Value& value, std::vector<std::string>& groups) {
    r.read_list(value, [&](const Value& item) {
        std::string group;
        if (!r.read_string(item, group)) {
            return;
        }
        if (group.empty() || group.find_first_of(" \t") != std::string::npos) {
            r.error(item, fmt::format("\"{}\" is not a group name (non-empty, no spaces)", group));
            return;
        }
        if (std::find(groups.begin(), groups.end(), group) != groups.end()) {
            r.error(item, fmt::format("group \"{}\" is listed twice", group));
            return;
        }
        groups.push_back(std::move(group));
    });
}

}  // namespace aviary::config
