#include "metrics/exposition.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>

namespace aviary::metrics::exposition {
namespace {

// Below 2^53 every integer is exact in a double, so printing it as an integer loses nothing
// and avoids "1e+06" for a million bytes.
constexpr double kExactIntegerLimit = 9007199254740992.0;

void append_header(std::string& out,
                   std::string_view name,
                   std::string_view help,
                   std::string_view type) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, escape_help(help), name, type);
}

/// `name{a="x",le="0.5"} value`; `le` is empty for everything but histogram buckets.
void append_sample(std::string& out,
                   std::string_view name,
                   const std::vector<std::string>& label_names,
                   const std::vector<std::string>& label_values,
                   std::string_view le,
                   double value) {
    out += name;
    if (!label_names.empty() || !le.empty()) {
        out += '{';
        for (std::size_t i = 0; i < label_names.size(); ++i) {
            out += fmt::format("{}{}=\"{}\"", i == 0 ? "" : ",", label_names[i],
                               escape_label_value(label_values[i]));
        }
        if (!le.empty()) {
            out += fmt::format("{}le=\"{}\"", label_names.empty() ? "" : ",", le);
        }
        out += '}';
    }
    out += ' ';
    out += format_value(value);
    out += '\n';
}

}  // namespace

std::string format_value(double v) {
    if (std::isnan(v)) {
        return "NaN";
    }
    if (std::isinf(v)) {
        return v > 0 ? "+Inf" : "-Inf";
    }
    if (v == std::trunc(v) && std::fabs(v) < kExactIntegerLimit) {
        return fmt::format("{}", static_cast<std::int64_t>(v));
    }
    // fmt's shortest round-trip form: "0.25", "1e-05", "1.5e+20".
    return fmt::format("{}", v);
}

std::string escape_help(std::string_view help) {
    std::string out;
    out.reserve(help.size());
    for (char c : help) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

std::string escape_label_value(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

void append_family(std::string& out, const Family<Counter>& family) {
    append_header(out, family.name(), family.help(), "counter");
    family.each([&](const std::vector<std::string>& labels, const Counter& counter) {
        append_sample(out, family.name(), family.label_names(), labels, {}, counter.value());
    });
}

void append_family(std::string& out, const Family<Gauge>& family) {
    append_header(out, family.name(), family.help(), "gauge");
    family.each([&](const std::vector<std::string>& labels, const Gauge& gauge) {
        append_sample(out, family.name(), family.label_names(), labels, {}, gauge.value());
    });
}

void append_family(std::string& out, const Family<Histogram>& family) {
    append_header(out, family.name(), family.help(), "histogram");
    const std::string bucket = family.name() + "_bucket";
    const std::string sum = family.name() + "_sum";
    const std::string count = family.name() + "_count";
    family.each([&](const std::vector<std::string>& labels, const Histogram& histogram) {
        auto snap = histogram.snapshot();
        for (std::size_t i = 0; i < snap.bounds.size(); ++i) {
            append_sample(out, bucket, family.label_names(), labels, format_value(snap.bounds[i]),
                          static_cast<double>(snap.cumulative[i]));
        }
        append_sample(out, sum, family.label_names(), labels, {}, snap.sum);
        append_sample(out, count, family.label_names(), labels, {},
                      static_cast<double>(snap.count));
    });
}

}  // namespace aviary::metrics::exposition
