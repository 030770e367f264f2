#pragma once
// Shared by the CLI integration tests: the real `aviary` client run through sh against a
// ServerProcess, with what it printed on stdout and stderr.
#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <string>

#include "support/server_process.hpp"

namespace aviary::test {

struct CliResult {
    int status = -1;
    std::string out;
    std::string err;
};

inline std::string read_file(const std::string& path) {
    std::ifstream in{path};
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

/// Runs `aviary --server URL ARGS` through sh, ARGS as typed on a command line; stderr goes
/// through a file in `scratch_dir`. A command that hangs is ended after a minute (status 124)
/// rather than hanging the suite.
inline CliResult run_aviary(const std::string& server_url,
                            const std::string& args,
                            const std::string& scratch_dir) {
    const std::string err_path = scratch_dir + "/stderr";
    auto result = run_command(fmt::format("timeout 60 {} --server {} {} 2>{}", AVIARY_BINARY,
                                          server_url, args, err_path));
    return {result.status, result.output, read_file(err_path)};
}

}  // namespace aviary::test
