#pragma once
/// core/regex: regular expressions for text that comes from outside (log lines, uploads, job
/// params). They run on RE2: linear in the text and without recursion on it, so no pattern and
/// no input can stall or crash the process, as a backtracking engine can (std::regex overflows
/// its stack on a 60 KB line with `\S+`). The syntax is RE2's, as Go's, Loki's and Prometheus's:
/// no backreferences and no lookaround (docs/architecture.md, "Regular expressions").
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.hpp"

namespace re2 {
class RE2;
}

namespace aviary::core {

class Regex {
public:
    /// kInvalidArgument with RE2's reason when `pattern` does not compile.
    static Result<Regex> compile(std::string_view pattern);

    /// Whether the pattern matches somewhere in `text`.
    bool search(std::string_view text) const;
    /// Whether it matches the whole of `text`.
    bool full_match(std::string_view text) const;
    /// The first match in `text` and its groups (0: the whole match; an unmatched group is
    /// empty); false when there is none.
    bool search(std::string_view text, std::vector<std::string_view>& groups) const;
    /// `text` with every match replaced by `replacement`, where $0..$9 stand for the groups.
    std::string replace_all(std::string_view text, std::string_view replacement) const;
    /// Capturing groups in the pattern.
    int groups() const;
    const std::string& pattern() const;

private:
    explicit Regex(std::shared_ptr<const re2::RE2> re);
    std::shared_ptr<const re2::RE2> re_;
};

}  // namespace aviary::core
