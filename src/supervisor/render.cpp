#include "supervisor/render.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace aviary::supervisor {
namespace {

constexpr std::string_view kProviders = "signature_providers";

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

/// One `{{ name }}`: where it starts and ends in the text, and the name.
struct Placeholder {
    std::size_t begin = 0;
    std::size_t end = 0;
    std::string name;
    int line = 1;
};

core::Result<std::vector<Placeholder>> scan(std::string_view text, std::string_view source) {
    std::vector<Placeholder> found;
    int line = 1;
    std::size_t counted = 0;
    for (std::size_t at = text.find("{{"); at != std::string_view::npos;
         at = text.find("{{", at + 2)) {
        for (; counted < at; ++counted) {
            line += text[counted] == '\n' ? 1 : 0;
        }
        const auto close = text.find("}}", at + 2);
        const auto newline = text.find('\n', at);
        if (close == std::string_view::npos ||
            (newline != std::string_view::npos && newline < close)) {
            return invalid(fmt::format("{}:{}: \"{{{{\" without its \"}}}}\"", source, line));
        }
        const auto name = trim(text.substr(at + 2, close - at - 2));
        if (name.empty() || !std::all_of(name.begin(), name.end(), name_char)) {
            return invalid(fmt::format("{}:{}: \"{}\" is not a value name (letters, digits, '_')",
                                       source, line, text.substr(at, close + 2 - at)));
        }
        found.push_back(Placeholder{at, close + 2, std::string{name}, line});
        at = close;
    }
    return found;
}

core::Result<std::string> read_text(const std::string& path, std::string_view what) {
    std::ifstream in{path, std::ios::binary};
    if (!in) {
        return core::Error{core::ErrorCode::kNotFound,
                           fmt::format("{}: cannot read {}: {}", what, path, std::strerror(errno))};
    }
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace

core::Result<std::vector<std::string>> template_names(std::string_view text,
                                                      std::string_view source) {
    auto found = scan(text, source);
    if (!found) {
        return found.error();
    }
    std::vector<std::string> names;
    for (const auto& p : *found) {
        if (std::find(names.begin(), names.end(), p.name) == names.end()) {
            names.push_back(p.name);
        }
    }
    return names;
}

core::Result<std::string> render_template(
    std::string_view text,
    std::string_view source,
    const std::vector<std::pair<std::string, std::string>>& values,
    const std::vector<std::string>& keys,
    std::string_view provider) {
    auto found = scan(text, source);
    if (!found) {
        return found.error();
    }
    std::string out;
    out.reserve(text.size());
    std::size_t from = 0;
    for (const auto& p : *found) {
        out.append(text.substr(from, p.begin - from));
        from = p.end;
        if (p.name == kProviders) {
            for (std::size_t i = 0; i < keys.size(); ++i) {
                out += fmt::format("{}signature-provider = {}={}", i == 0 ? "" : "\n", keys[i],
                                   provider);
            }
            continue;
        }
        auto value = std::find_if(values.begin(), values.end(),
                                  [&](const auto& v) { return v.first == p.name; });
        if (value == values.end()) {
            return invalid(fmt::format("{}:{}: {{{{ {} }}}} has no value (render.values)", source,
                                       p.line, p.name));
        }
        out.append(value->second);
    }
    out.append(text.substr(from));
    return out;
}

core::Result<std::vector<std::pair<std::string, std::string>>> resolve_values(
    const RenderSettings& settings) {
    std::vector<std::pair<std::string, std::string>> values;
    for (const auto& [name, source] : settings.values) {
        switch (source.kind) {
            case ValueSource::Kind::kText:
                values.emplace_back(name, source.text);
                break;
            case ValueSource::Kind::kFile: {
                auto text = read_text(source.text, fmt::format("value {}", name));
                if (!text) {
                    return text.error();
                }
                // A secret file usually ends with a newline the value does not have.
                while (!text->empty() && (text->back() == '\n' || text->back() == '\r')) {
                    text->pop_back();
                }
                values.emplace_back(name, std::move(*text));
                break;
            }
            case ValueSource::Kind::kEnv: {
                const char* text = std::getenv(source.text.c_str());
                if (text == nullptr) {
                    return core::Error{
                        core::ErrorCode::kNotFound,
                        fmt::format("value {}: the environment has no {}", name, source.text)};
                }
                values.emplace_back(name, text);
                break;
            }
        }
    }
    return values;
}

core::Result<std::vector<std::string>> parse_keys(std::string_view body, std::string_view url) {
    boost::system::error_code ec;
    auto value = boost::json::parse(body, ec);
    if (ec || !value.is_array()) {
        return core::Error{
            core::ErrorCode::kUnavailable,
            fmt::format("the key service {} did not answer a JSON array of keys", url)};
    }
    std::vector<std::string> keys;
    for (const auto& key : value.as_array()) {
        if (!key.is_string() || key.as_string().empty() ||
            !std::all_of(key.as_string().begin(), key.as_string().end(), name_char)) {
            return core::Error{core::ErrorCode::kUnavailable,
                               fmt::format("the key service {} listed something that is not a "
                                           "public key (letters, digits, '_')",
                                           url)};
        }
        keys.emplace_back(key.as_string());
    }
    return keys;
}

core::Result<std::string> render_text(const RenderSettings& settings,
                                      const std::vector<std::string>& keys) {
    auto text = read_text(settings.template_path, "template");
    if (!text) {
        return text.error();
    }
    auto values = resolve_values(settings);
    if (!values) {
        return values.error();
    }
    return render_template(*text, settings.template_path, *values, keys, settings.provider);
}

bool output_holds(const RenderSettings& settings, std::string_view text) {
    auto current = read_text(settings.output, "output");
    return current && *current == text;
}

core::Result<bool> render_file(const RenderSettings& settings,
                               const std::vector<std::string>& keys) {
    auto rendered = render_text(settings, keys);
    if (!rendered) {
        return rendered.error();
    }
    if (output_holds(settings, *rendered)) {
        return false;
    }
    const std::filesystem::path out{settings.output};
    std::error_code fs_error;
    std::filesystem::create_directories(out.parent_path(), fs_error);
    const std::string temp = settings.output + ".aviary-tmp";
    auto fail = [&](std::string_view what) -> core::Result<bool> {
        auto error = core::Error{
            core::ErrorCode::kStorage,
            fmt::format("cannot {} {}: {}", what, settings.output, std::strerror(errno))};
        ::unlink(temp.c_str());
        return error;
    };
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return fail("write");
    }
    for (std::size_t done = 0; done < rendered->size();) {
        ssize_t put = ::write(fd, rendered->data() + done, rendered->size() - done);
        if (put < 0 && errno == EINTR) {
            continue;
        }
        if (put < 0) {
            ::close(fd);
            return fail("write");
        }
        done += static_cast<std::size_t>(put);
    }
    if (::fsync(fd) != 0) {
        ::close(fd);
        return fail("sync");
    }
    if (::close(fd) != 0) {
        return fail("write");
    }
    if (::rename(temp.c_str(), settings.output.c_str()) != 0) {
        return fail("replace");
    }
    return true;
}

}  // namespace aviary::supervisor
