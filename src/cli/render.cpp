#include "cli/render.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <cstdio>
#include <utility>

namespace aviary::cli {
namespace json = boost::json;

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::add(std::vector<std::string> row) {
    row.resize(headers_.size());
    for (auto& cell : row) {
        if (cell.empty()) {
            cell = "-";
        }
    }
    rows_.push_back(std::move(row));
}

std::string Table::text() const {
    std::vector<std::size_t> widths(headers_.size());
    for (std::size_t i = 0; i < headers_.size(); ++i) {
        widths[i] = headers_[i].size();
        for (const auto& row : rows_) {
            widths[i] = std::max(widths[i], row[i].size());
        }
    }
    std::string out;
    auto append_row = [&](const std::vector<std::string>& row) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) {
                line.append(widths[i] - row[i].size() + 2, ' ');
            }
        }
        out += line + '\n';
    };
    append_row(headers_);
    for (const auto& row : rows_) {
        append_row(row);
    }
    return out;
}

std::string relative(core::TimePoint t, core::TimePoint now) {
    using namespace std::chrono;
    auto gap = duration_cast<seconds>(t > now ? t - now : now - t);
    if (gap < seconds{1}) {
        return "now";
    }
    constexpr std::array<std::pair<std::int64_t, char>, 4> kUnits{
        {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}}};
    std::string text;
    std::int64_t left = gap.count();
    int shown = 0;
    for (auto [size, unit] : kUnits) {
        if (left >= size && shown < 2) {
            text += fmt::format("{}{}", left / size, unit);
            left %= size;
            ++shown;
        } else if (shown > 0) {
            ++shown;  // two adjacent units at most: "1d" rather than "1d0h5s"
        }
    }
    return t > now ? "in " + text : text + " ago";
}

std::string time_with_remaining(const json::value& time, core::TimePoint now) {
    if (time.is_null()) {
        return "-";
    }
    auto text = text_of(time);
    auto parsed = core::parse_time(text);
    if (!parsed) {
        return text;
    }
    return fmt::format("{} ({})", text, relative(*parsed, now));
}

std::string text_of(const json::value& value) {
    if (value.is_string()) {
        return std::string{value.get_string()};
    }
    if (value.is_null()) {
        return {};
    }
    return json::serialize(value);
}

const json::value& field(const json::value& object, std::string_view key) {
    static const json::value kNull;
    const auto* fields = object.if_object();
    const auto* found = fields != nullptr ? fields->if_contains(key) : nullptr;
    return found != nullptr ? *found : kNull;
}

std::string labels_text(const json::value& labels) {
    std::string out;
    if (const auto* pairs = labels.if_object()) {
        for (const auto& [key, value] : *pairs) {
            out += fmt::format("{}{}={}", out.empty() ? "" : ",", std::string_view{key},
                               text_of(value));
        }
    }
    return out;
}

std::string join_names(const json::value& names, std::string_view separator) {
    std::string out;
    if (const auto* list = names.if_array()) {
        for (const auto& name : *list) {
            out += (out.empty() ? "" : std::string{separator}) + text_of(name);
        }
    }
    return out;
}

void print_json_text(std::string_view body) {
    std::fwrite(body.data(), 1, body.size(), stdout);
    if (body.empty() || body.back() != '\n') {
        std::fputc('\n', stdout);
    }
}

core::TimePoint now() {
    return std::chrono::time_point_cast<core::Millis>(std::chrono::system_clock::now());
}

}  // namespace aviary::cli
