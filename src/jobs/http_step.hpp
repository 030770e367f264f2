#pragma once
// The http step (http_step.cpp): one request through net's client, its response checked against
// the step's expectations, tried again on failure. Private to jobs: catalog.cpp validates paths
// with parse_json_path, runner.cpp runs the step with run_http_step.
#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "jobs/jobs.hpp"
#include "net/json_path.hpp"

namespace aviary::jobs {

struct Run;

using net::find_json;
using net::json_equals;
using net::JsonPathStep;
using net::parse_json_path;

/// RFC 3986: every byte but the unreserved A-Z a-z 0-9 - . _ ~ as %XX.
std::string percent_encode(std::string_view text);

/// Fills a URL template like render_template, each placeholder's value percent-encoded, so a
/// value can neither add a path segment or query parameter nor change the host.
core::Result<std::string> render_url(std::string_view url, const core::Job& job);

/// Why `method` is not an HTTP method aviary sends (an upper-case token), or empty.
std::string method_problem(std::string_view method);
/// Whether `name` is an HTTP token (a header name).
bool is_http_token(std::string_view name);

/// Runs one http step of `run` (engine thread). Returns the result JSON
/// {"status": N, "body": <the body when it is JSON of at most 64 KiB>}, or the last attempt's
/// failure.
boost::asio::awaitable<core::Result<std::string>> run_http_step(Engine::Impl& engine,
                                                                Run& run,
                                                                const StepSpec& step);

}  // namespace aviary::jobs
