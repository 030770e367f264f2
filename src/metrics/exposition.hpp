#pragma once
// Private to src/metrics (and its tests): the pieces of the text exposition format 0.0.4.
#include <string>
#include <string_view>
#include <vector>

#include "metrics/metrics.hpp"

namespace aviary::metrics::exposition {

/// A sample value or bucket bound: "1", "0.25", "1e-05", "+Inf", "-Inf", "NaN".
std::string format_value(double v);
/// HELP text: backslash and newline escaped.
std::string escape_help(std::string_view help);
/// A label value: backslash, double quote and newline escaped.
std::string escape_label_value(std::string_view value);

/// Appends HELP, TYPE and every sample of one family.
void append_family(std::string& out, const Family<Counter>& family);
void append_family(std::string& out, const Family<Gauge>& family);
void append_family(std::string& out, const Family<Histogram>& family);

}  // namespace aviary::metrics::exposition
