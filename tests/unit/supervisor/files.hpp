#pragma once
// Reading and writing whole files, for the supervisor's unit tests.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace aviary::supervisor::test {

inline std::string read(const std::filesystem::path& path) {
    std::ifstream in{path, std::ios::binary};
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

/// Writes `text` to `path`, making its parent directories.
inline void write(const std::filesystem::path& path, std::string_view text) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream{path, std::ios::binary} << text;
}

}  // namespace aviary::supervisor::test
