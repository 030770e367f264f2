#pragma once
// How the CLI shows things to people: aligned tables and times with what is left of them.
// (--json output bypasses all of this and prints the server's JSON.)
#include <boost/json/value.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"

namespace aviary::cli {

/// Columns padded to their widest cell, two spaces apart; the last column is not padded, so
/// a long note does not push trailing blanks. Empty cells print as "-".
class Table {
public:
    explicit Table(std::vector<std::string> headers);
    void add(std::vector<std::string> row);
    bool empty() const { return rows_.empty(); }
    /// The table as text, header first, every line ending in '\n'.
    std::string text() const;

private:
    std::vector<std::string> headers_;
    std::vector<std::vector<std::string>> rows_;
};

/// "in 23h59m", "3m12s ago", "now": the two largest units of what separates `t` from `now`.
std::string relative(core::TimePoint t, core::TimePoint now);

/// A server time as it was sent plus what is left of it: "2026-11-22T12:00:00.000Z (in 2h)".
/// Text that is not a time is returned as is; null is "-".
std::string time_with_remaining(const boost::json::value& time, core::TimePoint now);

/// A JSON string's text; "" for null, numbers and the rest as JSON.
std::string text_of(const boost::json::value& value);
/// A field of an object, or null when absent (tolerates servers that omit optional fields).
const boost::json::value& field(const boost::json::value& object, std::string_view key);

/// "chain=lotus,zone=a" from a labels object.
std::string labels_text(const boost::json::value& labels);
/// "lotus-0,lotus-1" from an array of names.
std::string join_names(const boost::json::value& names, std::string_view separator = ",");

/// Prints a reply body for --json, ending in exactly one newline.
void print_json_text(std::string_view body);

/// The current wall-clock time (the CLI is an edge, not a feature: it may read the clock).
core::TimePoint now();

}  // namespace aviary::cli
