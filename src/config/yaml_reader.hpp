#pragma once
// Private to src/config (and its tests): walks a yaml-cpp tree, tracking the key path and the
// position of every value, and collects errors as `FILE:LINE:COL: key.path: message` instead
// of stopping at the first one (an operator fixes a config in one pass, not one per run).
#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"

namespace aviary::config {

/// A YAML value and where it came from.
struct Value {
    YAML::Node node;
    std::string path;  ///< "fleet.nodes[2].labels.chain"; empty for the document root
    YAML::Mark mark;   ///< the value's position, or its key's when the value is empty

    bool is_null() const { return !node.IsDefined() || node.IsNull(); }
};

/// One known key of a mapping and what reads its value.
struct Field {
    std::string_view key;
    std::function<void(const Value&)> read;
};

class YamlReader {
public:
    explicit YamlReader(std::string source) : source_(std::move(source)) {}

    /// Reads a mapping whose keys must all be in `fields` (an empty value reads as an empty
    /// mapping). Unknown and repeated keys are errors. False when `value` is not a mapping.
    bool read_map(const Value& value, const std::vector<Field>& fields);
    /// Calls `item` for each element of a sequence (an empty value is an empty sequence).
    void read_list(const Value& value, const std::function<void(const Value&)>& item);

    /// Each returns false (having recorded an error) when the value does not fit; `out` is
    /// then untouched.
    bool read_string(const Value& value, std::string& out);
    /// A string that must be one of `accepted`: `unknown NOUN "x" (LISTED)` otherwise.
    bool read_choice(const Value& value,
                     std::string& out,
                     std::initializer_list<std::string_view> accepted,
                     std::string_view noun,
                     std::string_view listed);
    bool read_int(const Value& value, int& out, int min, int max);
    bool read_int(const Value& value, std::int64_t& out, std::int64_t min, std::int64_t max);
    /// `true` or `false` (YAML 1.1's yes/no/on/off are refused: they read as strings elsewhere).
    bool read_bool(const Value& value, bool& out);
    /// An integer number of bytes, or a string like "16KiB", "1MiB", "1GiB" (also KB, MB, GB).
    bool read_bytes(const Value& value, std::size_t& out);
    /// A positive duration string, read by core::parse_duration.
    bool read_duration(const Value& value, core::Millis& out);
    /// A mapping of non-empty string keys to string values.
    bool read_string_map(const Value& value, core::Labels& out);
    /// Calls `entry(key, item)` for each pair of a mapping whose keys are names the user
    /// chooses (actions, params), in file order. `key` is the key itself (its text in
    /// key.node, its position in key.mark, the item's path). Empty and repeated keys are
    /// errors and skipped. An empty value is an empty mapping; false when not a mapping.
    bool read_entries(const Value& value,
                      const std::function<void(const Value& key, const Value& item)>& entry);

    /// How many errors were recorded so far: a caller compares before and after reading a
    /// part to know whether that part read cleanly.
    std::size_t error_count() const { return problems_.size(); }

    void error(const Value& at, std::string_view message);
    void error(const YAML::Mark& mark, std::string_view path, std::string_view message);

    /// Every error so far, in document order, one per line; nullopt when there were none.
    std::optional<core::Error> failure() const;

private:
    struct Problem {
        int line;
        int column;
        std::string text;
    };
    std::string source_;
    std::vector<Problem> problems_;
};

/// What a value looks like in a message: the scalar quoted, or its kind ("a sequence").
std::string shown(const Value& value);
/// The path of `key` inside `parent`: "fleet" + "nodes" -> "fleet.nodes".
std::string child_path(std::string_view parent, std::string_view key);
/// Levenshtein distance, for "did you mean" suggestions.
std::size_t edit_distance(std::string_view a, std::string_view b);
/// `; did you mean "x"?` for the first of `choices` within two edits of `text`, or empty.
std::string did_you_mean(std::string_view text, const std::vector<std::string_view>& choices);
/// Groups of a token, a machine or a permission rule (permission rules name them): non-empty,
/// no spaces, none twice.
void read_groups(YamlReader& r, const Value& value, std::vector<std::string>& groups);
/// `FILE:LINE:COL: ` with 1-based line and column.
std::string position(std::string_view source, const YAML::Mark& mark);

}  // namespace aviary::config
