#pragma once
// Reading and writing whole files, and what a tree holds, for the supervisor's unit tests.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
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

/// What a tree holds, path by path: kind, mode, mtime (ns), content or link target.
inline std::map<std::string, std::string> snapshot(const std::filesystem::path& root) {
    namespace fs = std::filesystem;
    std::map<std::string, std::string> out;
    for (auto it = fs::recursive_directory_iterator{root}; it != fs::recursive_directory_iterator{};
         ++it) {
        const auto relative = fs::relative(it->path(), root).generic_string();
        struct stat st {};
        ::lstat(it->path().c_str(), &st);
        const std::string mode = std::to_string(st.st_mode & 07777);
        std::string what;
        if (S_ISLNK(st.st_mode)) {
            what = "link " + fs::read_symlink(it->path()).string();
        } else if (S_ISDIR(st.st_mode)) {
            what = "dir " + mode;
        } else {
            what = mode + " " + std::to_string(st.st_mtim.tv_sec) + "." +
                   std::to_string(st.st_mtim.tv_nsec) + " " + read(it->path());
        }
        out[relative] = what;
    }
    return out;
}

}  // namespace aviary::supervisor::test
