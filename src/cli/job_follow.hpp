#pragma once
// Following a job to its end (--wait, job wait, job logs -f): its output lines come over the
// server's NDJSON follow stream, resumed from the last line seen when the stream drops; on a
// terminal, a progress line on stderr ("step 2/3 wait height-advancing, 4.2s") is refreshed in
// place from the job itself. Private to src/cli.
#include <boost/json/value.hpp>
#include <cstdint>
#include <string>

#include "cli/commands.hpp"

namespace aviary::cli {

/// How a followed job ended, as the stream's last line says.
struct JobEnd {
    std::string state;  ///< succeeded, failed, cancelled or timed_out
    std::string error;  ///< why, when it did not succeed
};

struct FollowOptions {
    bool print_lines = false;    ///< print output lines on stdout as they arrive
    std::int64_t after_seq = 0;  ///< only lines after this seq (0: from the first)
    bool progress = false;       ///< a progress line on stderr, honoured only on a terminal
};

/// Blocks until job `id` has ended. Failures: the server refused (an unknown job: exit 1), or
/// it could not be heard from again for a minute after the stream dropped (exit 3).
Outcome<JobEnd> follow_job(const Context& context,
                           const std::string& id,
                           const FollowOptions& options);

/// Follows job `id` to its end as --wait does and reports it: "job ID succeeded (…)" on stdout,
/// "aviary: job ID failed: why" on stderr, the final job's JSON with --json. Returns
/// job_exit_code() of its end, or the exit code of a failure to follow it.
int wait_for_job(const Context& context, const std::string& id, bool print_lines);

/// An output line as `job logs` prints it: "12:00:03 stdout hello" (the server's UTC time), or
/// its JSON with --json. No trailing newline.
std::string output_line_text(const Context& context, const boost::json::value& line);

/// A job's elapsed time: "4.2s" under a minute, then "3m05s", "2h10m", "1d4h".
std::string elapsed_text(core::Millis elapsed);

/// A JSON number as an integer (0 for anything else).
std::int64_t integer_of(const boost::json::value& value);

}  // namespace aviary::cli
