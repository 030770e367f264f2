#include "core/regex.hpp"

#include <fmt/format.h>
#include <re2/re2.h>

namespace aviary::core {

Regex::Regex(std::shared_ptr<const re2::RE2> re) : re_(std::move(re)) {}

Result<Regex> Regex::compile(std::string_view pattern) {
    re2::RE2::Options options;
    options.set_log_errors(false);
    auto re =
        std::make_shared<const re2::RE2>(re2::StringPiece{pattern.data(), pattern.size()}, options);
    if (!re->ok()) {
        return Error{ErrorCode::kInvalidArgument,
                     fmt::format("not a regular expression (RE2 syntax): {}", re->error())};
    }
    return Regex{std::move(re)};
}

bool Regex::search(std::string_view text) const {
    return re2::RE2::PartialMatch(re2::StringPiece{text.data(), text.size()}, *re_);
}

bool Regex::full_match(std::string_view text) const {
    return re2::RE2::FullMatch(re2::StringPiece{text.data(), text.size()}, *re_);
}

bool Regex::search(std::string_view text, std::vector<std::string_view>& groups) const {
    const int n = re_->NumberOfCapturingGroups() + 1;
    std::vector<re2::StringPiece> found(static_cast<std::size_t>(n));
    if (!re_->Match(re2::StringPiece{text.data(), text.size()}, 0, text.size(),
                    re2::RE2::UNANCHORED, found.data(), n)) {
        return false;
    }
    groups.clear();
    for (const auto& piece : found) {
        groups.emplace_back(piece.data() == nullptr ? std::string_view{}
                                                    : std::string_view{piece.data(), piece.size()});
    }
    return true;
}

std::string Regex::replace_all(std::string_view text, std::string_view replacement) const {
    // RE2 writes groups as \1; this project's rules write them as $1 (as ECMAScript does).
    std::string rewrite;
    for (std::size_t i = 0; i < replacement.size(); ++i) {
        const char c = replacement[i];
        if (c == '$' && i + 1 < replacement.size() && replacement[i + 1] >= '0' &&
            replacement[i + 1] <= '9') {
            rewrite += '\\';
            rewrite += replacement[++i];
        } else if (c == '\\') {
            rewrite += "\\\\";
        } else {
            rewrite += c;
        }
    }
    std::string out{text};
    re2::RE2::GlobalReplace(&out, *re_, rewrite);
    return out;
}

int Regex::groups() const {
    return re_->NumberOfCapturingGroups();
}

const std::string& Regex::pattern() const {
    return re_->pattern();
}

}  // namespace aviary::core
