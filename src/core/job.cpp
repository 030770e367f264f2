#include <array>
#include <utility>

#include "core/core.hpp"

namespace aviary::core {
namespace {

constexpr std::array<std::pair<JobState, std::string_view>, 7> kJobStateNames{{
    {JobState::kQueued, "queued"},
    {JobState::kRunning, "running"},
    {JobState::kSucceeded, "succeeded"},
    {JobState::kFailed, "failed"},
    {JobState::kCancelling, "cancelling"},
    {JobState::kCancelled, "cancelled"},
    {JobState::kTimedOut, "timed_out"},
}};

}  // namespace

std::string_view to_string(JobState state) {
    for (const auto& [value, name] : kJobStateNames) {
        if (value == state) {
            return name;
        }
    }
    return "queued";
}

std::optional<JobState> parse_job_state(std::string_view text) {
    for (const auto& [value, name] : kJobStateNames) {
        if (name == text) {
            return value;
        }
    }
    return std::nullopt;
}

bool is_terminal(JobState state) {
    return state == JobState::kSucceeded || state == JobState::kFailed ||
           state == JobState::kCancelled || state == JobState::kTimedOut;
}

}  // namespace aviary::core
