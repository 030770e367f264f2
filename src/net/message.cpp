// Plain-text helpers of net.hpp that need no Asio: kept out of the Beast TUs.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "net/net.hpp"

namespace aviary::net {
namespace {

core::Error invalid(std::string message) {
    return core::Error{core::ErrorCode::kInvalidArgument, std::move(message)};
}

}  // namespace

core::Result<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view address) {
    if (address.empty()) {
        return invalid("empty address: expected HOST:PORT");
    }
    std::string_view host;
    std::string_view rest;
    if (address.front() == '[') {
        const auto close = address.find(']');
        if (close == std::string_view::npos) {
            return invalid(fmt::format("missing ']' in \"{}\"", address));
        }
        host = address.substr(1, close - 1);
        rest = address.substr(close + 1);
        if (rest.empty() || rest.front() != ':') {
            return invalid(fmt::format("missing port in \"{}\"", address));
        }
        rest.remove_prefix(1);
    } else {
        const auto colon = address.rfind(':');
        if (colon == std::string_view::npos) {
            return invalid(fmt::format("missing port in \"{}\"", address));
        }
        host = address.substr(0, colon);
        rest = address.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) {
            return invalid(fmt::format(
                "IPv6 address must be in brackets, like \"[::1]:8080\": \"{}\"", address));
        }
    }
    if (host.empty()) {
        return invalid(fmt::format("missing host in \"{}\"", address));
    }
    if (rest.empty()) {
        return invalid(fmt::format("missing port in \"{}\"", address));
    }
    if (!std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return invalid(fmt::format("port \"{}\" is not a number in \"{}\"", rest, address));
    }
    unsigned long port = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), port);
    if (ec != std::errc{} || port > 65535) {
        return invalid(fmt::format("port out of range in \"{}\" (0-65535)", address));
    }
    return std::pair<std::string, std::uint16_t>{std::string{host},
                                                 static_cast<std::uint16_t>(port)};
}

std::optional<std::string_view> find_header(const std::vector<Header>& headers,
                                            std::string_view name) {
    for (const auto& header : headers) {
        if (header.name.size() == name.size() &&
            std::equal(name.begin(), name.end(), header.name.begin(), [](char a, char b) {
                return std::tolower(static_cast<unsigned char>(a)) ==
                       std::tolower(static_cast<unsigned char>(b));
            })) {
            return std::string_view{header.value};
        }
    }
    return std::nullopt;
}

std::optional<std::string_view> Request::param(std::string_view name) const {
    for (const auto& [key, value] : query) {
        if (key == name) {
            return std::string_view{value};
        }
    }
    return std::nullopt;
}

}  // namespace aviary::net
