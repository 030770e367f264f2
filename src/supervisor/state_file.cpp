#include "supervisor/state_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

namespace aviary::supervisor {
namespace {

core::Error storage(std::string message) {
    return core::Error{core::ErrorCode::kStorage, std::move(message)};
}

}  // namespace

std::string state_file_path(const std::string& state_dir) {
    return (std::filesystem::path{state_dir} / "supervise.state.json").string();
}

core::Result<StateFile> read_state_file(const std::string& state_dir) {
    std::error_code ec;
    std::filesystem::create_directories(state_dir, ec);
    if (ec) {
        return storage(fmt::format("cannot make the state dir {}: {}", state_dir, ec.message()));
    }
    const std::string path = state_file_path(state_dir);
    std::ifstream in{path};
    if (!in) {
        if (!std::filesystem::exists(path, ec)) {
            return StateFile{};
        }
        return storage(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
    }
    std::stringstream text;
    text << in.rdbuf();
    boost::system::error_code parse_error;
    auto value = boost::json::parse(text.str(), parse_error);
    auto bad = [&path](std::string_view why) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("{}: {} (fix or remove the file)", path, why)};
    };
    if (parse_error || !value.is_object()) {
        return bad("not a JSON object");
    }
    const auto& object = value.as_object();
    StateFile state;
    if (const auto* m = object.if_contains("maintenance")) {
        if (!m->is_bool()) {
            return bad("\"maintenance\" must be true or false");
        }
        state.maintenance = m->as_bool();
    }
    for (auto [key, out] : {std::pair{"starts", &state.starts}, {"restarts", &state.restarts}}) {
        if (const auto* n = object.if_contains(key)) {
            if (!n->is_int64() || n->as_int64() < 0) {
                return bad(fmt::format("\"{}\" must be a whole number", key));
            }
            *out = static_cast<std::uint64_t>(n->as_int64());
        }
    }
    if (const auto* r = object.if_contains("restore_pending")) {
        if (!r->is_string()) {
            return bad("\"restore_pending\" must be a string");
        }
        state.restore_pending = std::string{r->as_string()};
    }
    return state;
}

core::Result<void> write_state_file(const std::string& state_dir,
                                    const StateFile& state,
                                    bool durable) {
    const std::string path = state_file_path(state_dir);
    const std::string temp = path + ".tmp";
    boost::json::object object{{"maintenance", state.maintenance},
                               {"starts", static_cast<std::int64_t>(state.starts)},
                               {"restarts", static_cast<std::int64_t>(state.restarts)}};
    if (!state.restore_pending.empty()) {
        object["restore_pending"] = state.restore_pending;
    }
    const std::string text = boost::json::serialize(object) + "\n";
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return storage(fmt::format("cannot write {}: {}", temp, std::strerror(errno)));
    }
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
              (!durable || ::fsync(fd) == 0);
    const int error = errno;
    ::close(fd);
    if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
        return storage(fmt::format("cannot write {}: {}", path, std::strerror(ok ? errno : error)));
    }
    return {};
}

}  // namespace aviary::supervisor
