#include "drivers/sim_files.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <charconv>
#include <fstream>
#include <sstream>
#include <system_error>

#include "drivers/drivers.hpp"

namespace aviary::drivers {
namespace sim {
namespace {

namespace fs = std::filesystem;

core::Error unavailable(std::string message) {
    return core::Error{core::ErrorCode::kUnavailable, std::move(message)};
}

std::string_view trim(std::string_view text) {
    constexpr std::string_view kSpace = " \t\r\n";
    const auto first = text.find_first_not_of(kSpace);
    if (first == std::string_view::npos) {
        return {};
    }
    return text.substr(first, text.find_last_not_of(kSpace) - first + 1);
}

}  // namespace

core::Result<void> write_file_atomically(const fs::path& path, std::string_view text) {
    // The pid in the name keeps two writers (an old node still exiting, a new one starting)
    // from truncating each other's temporary file.
    fs::path tmp = path;
    tmp += fmt::format(".tmp.{}", ::getpid());
    {
        std::ofstream out{tmp, std::ios::binary | std::ios::trunc};
        out.write(text.data(), static_cast<std::streamsize>(text.size()));
        out.close();
        if (!out) {
            std::error_code ignored;
            fs::remove(tmp, ignored);
            return unavailable(fmt::format("cannot write {}", tmp.string()));
        }
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) {
        fs::remove(tmp, ec);
        return unavailable(fmt::format("cannot write {}: {}", path.string(), ec.message()));
    }
    return {};
}

core::Result<std::optional<std::string>> read_file(const fs::path& path) {
    std::ifstream in{path, std::ios::binary};
    if (!in) {
        std::error_code ec;
        if (!fs::exists(path, ec) && !ec) {
            return std::optional<std::string>{};
        }
        return unavailable(fmt::format("cannot read {}", path.string()));
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) {
        return unavailable(fmt::format("cannot read {}", path.string()));
    }
    return std::optional<std::string>{text.str()};
}

std::optional<std::int64_t> parse_count(std::string_view text) {
    text = trim(text);
    std::int64_t value = 0;
    const auto* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc{} || ptr != end || value < 0) {
        return std::nullopt;
    }
    return value;
}

core::Result<std::optional<std::int64_t>> read_height(const fs::path& data_dir) {
    const auto path = data_dir / "height";
    auto text = read_file(path);
    if (!text) {
        return text.error();
    }
    if (!*text) {
        return std::optional<std::int64_t>{};
    }
    auto height = parse_count(**text);
    if (!height) {
        return unavailable(fmt::format("{} does not hold a height", path.string()));
    }
    return std::optional<std::int64_t>{*height};
}

core::Result<void> write_height(const fs::path& data_dir, std::int64_t height) {
    return write_file_atomically(data_dir / "height", fmt::format("{}\n", height));
}

core::Result<std::int64_t> read_snapshot(const fs::path& path) {
    auto text = read_file(path);
    if (!text) {
        return text.error();
    }
    if (!*text) {
        return unavailable(fmt::format("snapshot {} does not exist", path.string()));
    }
    boost::system::error_code ec;
    auto value = boost::json::parse(**text, ec);
    const auto* object = ec ? nullptr : value.if_object();
    const auto* chain = object == nullptr ? nullptr : object->if_contains("chain");
    const auto* height = object == nullptr ? nullptr : object->if_contains("height");
    if (chain == nullptr || !chain->is_string() || chain->get_string() != "sim" ||
        height == nullptr || !height->is_int64() || height->get_int64() < 0) {
        return unavailable(fmt::format("{} is not a sim snapshot", path.string()));
    }
    return height->get_int64();
}

std::optional<std::uint16_t> read_port(const fs::path& path) {
    auto text = read_file(path);
    if (!text || !*text) {
        return std::nullopt;
    }
    auto port = parse_count(**text);
    if (!port || *port == 0 || *port > 65535) {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(*port);
}

}  // namespace sim

core::Result<void> write_sim_snapshot(const std::string& path, std::int64_t height) {
    if (height < 0) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("snapshot height {} is negative", height)};
    }
    return sim::write_file_atomically(path,
                                      fmt::format("{{\"chain\":\"sim\",\"height\":{}}}\n", height));
}

}  // namespace aviary::drivers
