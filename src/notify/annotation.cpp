// What a job's annotation says: its text and tags when it is submitted, and what its end adds.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "notify/notify.hpp"

namespace aviary::notify {
namespace {

/// Past this, an error is cut in the annotation's text (Grafana shows it in a tooltip).
constexpr std::size_t kErrorShownMax = 300;

/// Empty, or a "key:" with nothing after the colon (a value that was missing).
bool is_hollow(std::string_view tag) {
    return tag.empty() || tag.back() == ':';
}

void add_tag(std::vector<std::string>& tags, std::string tag) {
    if (is_hollow(tag) || std::find(tags.begin(), tags.end(), tag) != tags.end()) {
        return;
    }
    tags.push_back(std::move(tag));
}

std::string param(const core::Job& job, std::string_view name) {
    auto found = job.params.find(name);
    return found == job.params.end() ? std::string{} : found->second;
}

/// ", by anton", ", by ci for anton", or "" when nobody is known.
std::string by_whom(const core::Job& job) {
    std::string requester = job.requester == "anonymous" ? std::string{} : job.requester;
    if (requester.empty() && job.owner.empty()) {
        return {};
    }
    if (requester.empty() || requester == job.owner) {
        return fmt::format(", by {}", job.owner);
    }
    if (job.owner.empty()) {
        return fmt::format(", by {}", requester);
    }
    return fmt::format(", by {} for {}", requester, job.owner);
}

/// A duration as people read it on a graph: "250ms" under a second, whole seconds above.
std::string took(core::Millis elapsed) {
    if (elapsed < std::chrono::seconds{1}) {
        return core::format_duration(std::max(elapsed, core::Millis{0}));
    }
    auto seconds = std::chrono::round<std::chrono::seconds>(elapsed);
    return core::format_duration(std::chrono::duration_cast<core::Millis>(seconds));
}

/// At most kErrorShownMax bytes on one line, without cutting a UTF-8 sequence.
std::string shown_error(std::string_view error) {
    std::string out;
    std::size_t n = std::min(error.size(), kErrorShownMax);
    if (n < error.size()) {
        while (n > 0 && (static_cast<unsigned char>(error[n]) & 0xC0U) == 0x80U) {
            --n;
        }
    }
    out.reserve(n + 3);
    for (std::size_t i = 0; i < n; ++i) {
        out += (error[i] == '\n' || error[i] == '\r') ? ' ' : error[i];
    }
    if (n < error.size()) {
        out += "...";
    }
    return out;
}

}  // namespace

std::optional<core::JobAnnotation> annotation_for(const GrafanaSettings& settings,
                                                  const core::Job& job) {
    if (settings.url.empty() || std::find(settings.actions.begin(), settings.actions.end(),
                                          job.action) == settings.actions.end()) {
        return std::nullopt;
    }
    auto tag = param(job, "tag");
    core::JobAnnotation out;
    out.text =
        fmt::format("{} {}{} (job {}{})", job.action, job.node,
                    tag.empty() ? std::string{} : fmt::format(" to {}", tag), job.id, by_whom(job));
    add_tag(out.tags, "deploy");
    add_tag(out.tags, "node:" + job.node);
    add_tag(out.tags, "image:" + tag);
    add_tag(out.tags, "action:" + job.action);
    add_tag(out.tags, "job:" + job.id);
    for (const auto& extra : settings.tags) {
        add_tag(out.tags, extra);
    }
    return out;
}

std::string outcome_text(const store::Annotation& annotation) {
    const auto& outcome = annotation.outcome;
    if (outcome == "succeeded") {
        auto elapsed =
            annotation.time_end ? *annotation.time_end - annotation.time : core::Millis{0};
        return fmt::format(" — succeeded in {}", took(elapsed));
    }
    std::string said = outcome.empty() ? std::string{"ended"} : outcome;
    std::replace(said.begin(), said.end(), '_', ' ');
    if (annotation.error.empty()) {
        return fmt::format(" — {}", said);
    }
    return fmt::format(" — {}: {}", said, shown_error(annotation.error));
}

std::string outcome_tag(const store::Annotation& annotation) {
    return "outcome:" + (annotation.outcome.empty() ? std::string{"ended"} : annotation.outcome);
}

}  // namespace aviary::notify
