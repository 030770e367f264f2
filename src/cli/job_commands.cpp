// aviary jobs, aviary job show|logs|cancel|retry|wait: jobs after they are submitted.
#include <fmt/format.h>

#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <cstdio>
#include <utility>

#include "cli/commands.hpp"
#include "cli/job_follow.hpp"
#include "cli/render.hpp"

namespace aviary::cli {
namespace json = boost::json;

namespace {

// Pages well under the server's largest (1000): each answer stays small and quick.
constexpr int kPageSize = 100;
/// `job logs` without --from: the newest lines, as tail does.
constexpr int kLogTail = 1000;

std::string job_path(const std::string& id) {
    return "/api/v1/jobs/" + encode(id);
}

std::string jobs_path(const JobsFlags& flags, int page, const std::string& cursor) {
    auto path = fmt::format("/api/v1/jobs?limit={}", page);
    if (!flags.node.empty()) {
        path += "&node=" + encode(flags.node);
    }
    if (!flags.state.empty()) {
        path += "&state=" + encode(flags.state);
    }
    if (!cursor.empty()) {
        path += "&cursor=" + encode(cursor);
    }
    return path;
}

/// Up to flags.limit jobs, following next_cursor; the cursor after the last one kept.
Outcome<json::object> collect_jobs(const Context& context, const JobsFlags& flags) {
    json::array jobs;
    json::value next = nullptr;
    std::string cursor;
    while (static_cast<int>(jobs.size()) < flags.limit) {
        const int page = std::min(flags.limit - static_cast<int>(jobs.size()), kPageSize);
        auto reply = context.client.call("GET", jobs_path(flags, page, cursor));
        if (!reply) {
            return reply.failure();
        }
        if (const auto* got = field(reply->json, "jobs").if_array()) {
            for (const auto& job : *got) {
                jobs.push_back(job);
            }
        }
        next = field(reply->json, "next_cursor");
        cursor = text_of(next);
        if (cursor.empty()) {
            break;
        }
    }
    return json::object{{"jobs", std::move(jobs)}, {"next_cursor", std::move(next)}};
}

std::optional<core::TimePoint> time_of(const json::value& job, std::string_view key) {
    auto parsed = core::parse_time(text_of(field(job, key)));
    return parsed ? std::optional{*parsed} : std::nullopt;
}

/// "2/3" (the step running, or where it stopped); empty before the first step.
std::string step_text(const json::value& job) {
    const auto step = integer_of(field(job, "step"));
    return step > 0 ? fmt::format("{}/{}", step, integer_of(field(job, "steps"))) : std::string{};
}

/// How long it ran: started to finished, or to now while it runs; empty before it started.
std::string run_time_text(const json::value& job, core::TimePoint at) {
    auto started = time_of(job, "started_at");
    if (!started) {
        return {};
    }
    auto until = time_of(job, "finished_at").value_or(at);
    return elapsed_text(std::max(core::Millis{0}, until - *started));
}

std::string age_text(const json::value& job, core::TimePoint at) {
    auto created = time_of(job, "created_at");
    return created ? elapsed_text(std::max(core::Millis{0}, at - *created)) : std::string{};
}

std::string params_text(const json::value& params) {
    std::string out;
    if (const auto* pairs = params.if_object()) {
        for (const auto& [key, value] : *pairs) {
            out += fmt::format("{}{}={}", out.empty() ? "" : " ", std::string_view{key},
                               text_of(value));
        }
    }
    return out;
}

/// Every field of a job worth reading, as "key  value" lines; unset ones are left out.
std::string job_text(const json::value& job, core::TimePoint at) {
    std::vector<std::pair<std::string, std::string>> rows{
        {"id", text_of(field(job, "id"))},
        {"action", text_of(field(job, "action"))},
        {"node", text_of(field(job, "node"))},
        {"state", text_of(field(job, "state"))},
        {"error", text_of(field(job, "error"))},
        {"params", params_text(field(job, "params"))},
        {"requester", text_of(field(job, "requester"))},
        {"owner", text_of(field(job, "owner"))},
        {"lease", text_of(field(job, "lease_id"))},
        {"queue", text_of(field(job, "queue"))},
        {"attempt", fmt::format("{}/{}", integer_of(field(job, "attempt")),
                                integer_of(field(job, "max_attempts")))},
        {"step", fmt::format("{} {}", step_text(job), text_of(field(job, "step_name")))},
        {"status", text_of(field(job, "status"))},
    };
    if (const auto position = integer_of(field(job, "position")); position > 0) {
        rows.emplace_back("position", std::to_string(position));
    }
    if (const auto& cancel = field(job, "cancel_requested");
        cancel.is_bool() && cancel.get_bool()) {
        rows.emplace_back("cancel", "requested");
    }
    rows.emplace_back("created", time_with_remaining(field(job, "created_at"), at));
    if (text_of(field(job, "state")) == "queued") {
        rows.emplace_back("run at", time_with_remaining(field(job, "run_at"), at));
    }
    if (!field(job, "started_at").is_null()) {
        rows.emplace_back("started", time_with_remaining(field(job, "started_at"), at));
    }
    if (!field(job, "finished_at").is_null()) {
        rows.emplace_back("finished", time_with_remaining(field(job, "finished_at"), at));
    }
    rows.emplace_back("duration", run_time_text(job, at));
    if (const auto& result = field(job, "result");
        result.is_object() ? !result.as_object().empty() : !result.is_null()) {
        rows.emplace_back("result", json::serialize(result));
    }
    rows.emplace_back("retry of", text_of(field(job, "retry_of")));

    std::size_t width = 0;
    for (const auto& [key, value] : rows) {
        width = std::max(width, key.size());
    }
    std::string out;
    for (const auto& [key, value] : rows) {
        auto shown = value;
        while (!shown.empty() && shown.back() == ' ') {
            shown.pop_back();
        }
        if (!shown.empty() && shown != "0/0") {
            out += fmt::format("{:<{}}  {}\n", key, width, shown);
        }
    }
    return out;
}

void print_line(const Context& context, const json::value& line) {
    std::puts(output_line_text(context, line).c_str());
}

/// Prints the lines of one page after `after_seq`; the highest seq printed (or `after_seq`).
std::int64_t print_lines_after(const Context& context,
                               const json::value& page,
                               std::int64_t after_seq) {
    if (const auto* lines = field(page, "lines").if_array()) {
        for (const auto& line : *lines) {
            const auto seq = integer_of(field(line, "seq"));
            if (seq > after_seq) {
                print_line(context, line);
                after_seq = seq;
            }
        }
    }
    return after_seq;
}

/// Prints the job's lines after `after_seq` up to its last one now, a page at a time; the
/// highest seq printed. Lines are skipped by seq, so `from` may count either way.
Outcome<std::int64_t> print_lines_from(const Context& context,
                                       const std::string& id,
                                       std::int64_t after_seq) {
    for (;;) {
        auto reply = context.client.call(
            "GET", fmt::format("{}/output?from={}&limit={}", job_path(id), after_seq, kLogTail));
        if (!reply) {
            return reply.failure();
        }
        const auto printed = print_lines_after(context, reply->json, after_seq);
        if (printed == after_seq || printed >= integer_of(field(reply->json, "last_seq"))) {
            return printed;
        }
        after_seq = printed;
    }
}

/// The newest kLogTail lines; the highest seq printed.
Outcome<std::int64_t> print_tail(const Context& context, const std::string& id) {
    auto reply =
        context.client.call("GET", fmt::format("{}/output?limit={}", job_path(id), kLogTail));
    if (!reply) {
        return reply.failure();
    }
    const auto* lines = field(reply->json, "lines").if_array();
    if (!context.json && lines != nullptr && !lines->empty() &&
        integer_of(field(lines->front(), "seq")) > 1) {
        std::fprintf(stderr, "aviary: the last %zu lines; --from 1 prints them all\n",
                     lines->size());
    }
    return print_lines_after(context, reply->json, 0);
}

std::vector<std::string> job_row(const json::value& job, core::TimePoint at) {
    return {text_of(field(job, "id")),
            text_of(field(job, "action")),
            text_of(field(job, "node")),
            text_of(field(job, "state")),
            step_text(job),
            age_text(job, at),
            run_time_text(job, at),
            text_of(field(job, "requester"))};
}

}  // namespace

int run_jobs(const Context& context, const JobsFlags& flags) {
    auto page = collect_jobs(context, flags);
    if (!page) {
        return report(page.failure());
    }
    if (context.json) {
        std::puts(json::serialize(*page).c_str());
        return kExitOk;
    }
    const auto at = now();
    Table table{{"ID", "ACTION", "NODE", "STATE", "STEP", "AGE", "DURATION", "REQUESTER"}};
    for (const auto& job : page->at("jobs").as_array()) {
        table.add(job_row(job, at));
    }
    std::fputs(table.empty() ? "no jobs\n" : table.text().c_str(), stdout);
    return kExitOk;
}

int run_job_show(const Context& context, const JobFlags& flags) {
    auto reply = context.client.call("GET", job_path(flags.id));
    if (!reply) {
        return report(reply.failure());
    }
    if (context.json) {
        print_json_text(reply->body);
        return kExitOk;
    }
    std::fputs(job_text(reply->json, now()).c_str(), stdout);
    return kExitOk;
}

int run_job_logs(const Context& context, const JobFlags& flags) {
    auto printed = flags.from > 0 ? print_lines_from(context, flags.id, flags.from - 1)
                                  : print_tail(context, flags.id);
    if (!printed) {
        return report(printed.failure());
    }
    std::fflush(stdout);
    if (!flags.follow) {
        return kExitOk;
    }
    auto end =
        follow_job(context, flags.id, FollowOptions{.print_lines = true, .after_seq = *printed});
    if (!end) {
        return report(end.failure());
    }
    if (end->state != "succeeded") {
        auto state = end->state == "timed_out" ? std::string{"timed out"} : end->state;
        std::fprintf(stderr, "aviary: job %s %s%s%s\n", flags.id.c_str(), state.c_str(),
                     end->error.empty() ? "" : ": ", end->error.c_str());
    }
    return job_exit_code(end->state);
}

int run_job_cancel(const Context& context, const JobFlags& flags) {
    auto reply = context.client.call("POST", job_path(flags.id) + "/cancel");
    if (!reply) {
        return report(reply.failure());
    }
    if (context.json) {
        print_json_text(reply->body);
        return kExitOk;
    }
    // "cancelled" for a job that had not started, "cancelling" while its step is ended.
    std::printf("job %s %s\n", flags.id.c_str(), text_of(field(reply->json, "state")).c_str());
    return kExitOk;
}

int run_job_retry(const Context& context, const JobFlags& flags) {
    auto reply = context.client.call("POST", job_path(flags.id) + "/retry");
    if (!reply) {
        return report(reply.failure());
    }
    const auto& job = field(reply->json, "job");
    const auto id = text_of(field(job, "id"));
    if (!context.json) {
        const auto state = text_of(field(job, "state"));
        // A retry of a job already retried and still active is that retry, not a third run.
        if (const auto& duplicate = field(reply->json, "duplicate");
            duplicate.is_bool() && duplicate.get_bool()) {
            std::printf("already queued as job %s (%s)\n", id.c_str(), state.c_str());
        } else {
            std::printf("job %s %s: retry of %s\n", id.c_str(), state.c_str(), flags.id.c_str());
        }
        std::fflush(stdout);
    } else if (!flags.wait) {
        print_json_text(reply->body);
    }
    return flags.wait ? wait_for_job(context, id, flags.logs) : kExitOk;
}

int run_job_wait(const Context& context, const JobFlags& flags) {
    return wait_for_job(context, flags.id, flags.logs);
}

}  // namespace aviary::cli
