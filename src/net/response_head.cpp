#include "net/response_head.hpp"

#include <array>
#include <charconv>
#include <cstring>

namespace aviary::net {
namespace {

enum CharClass : std::uint8_t {
    kNone = 0,
    kToken = 1,     // RFC 9110 tchar: header names
    kFieldText = 2  // VCHAR, SP, HTAB and obs-text: values and the reason phrase
};

constexpr std::array<std::uint8_t, 256> kClasses = [] {
    std::array<std::uint8_t, 256> classes{};
    for (int c = 0x21; c <= 0xff; ++c) {
        if (c != 0x7f) {
            classes[static_cast<std::size_t>(c)] = kFieldText;
        }
    }
    classes[' '] = kFieldText;
    classes['\t'] = kFieldText;
    for (int c = 'a'; c <= 'z'; ++c) {
        classes[static_cast<std::size_t>(c)] |= kToken;
    }
    for (int c = 'A'; c <= 'Z'; ++c) {
        classes[static_cast<std::size_t>(c)] |= kToken;
    }
    for (int c = '0'; c <= '9'; ++c) {
        classes[static_cast<std::size_t>(c)] |= kToken;
    }
    for (char c : std::string_view{"!#$%&'*+-.^_`|~"}) {
        classes[static_cast<unsigned char>(c)] |= kToken;
    }
    return classes;
}();

bool is(char c, CharClass kind) {
    return (kClasses[static_cast<unsigned char>(c)] & kind) != 0;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        auto x = static_cast<unsigned char>(a[i]);
        auto y = static_cast<unsigned char>(b[i]);
        if (x >= 'A' && x <= 'Z') {
            x = static_cast<unsigned char>(x + ('a' - 'A'));
        }
        if (x != y) {  // b is lower case
            return false;
        }
    }
    return true;
}

/// One line of field text up to its CRLF, from `at`: the end of the text, or npos when the
/// line holds anything else (a bare CR or LF, a control character).
std::size_t text_end(std::string_view bytes, std::size_t at) {
    while (at < bytes.size() && is(bytes[at], kFieldText)) {
        ++at;
    }
    if (at + 1 >= bytes.size() || bytes[at] != '\r' || bytes[at + 1] != '\n') {
        return std::string_view::npos;
    }
    return at;
}

}  // namespace

std::optional<PlainHead> parse_plain_head(std::string_view bytes, std::vector<HeadField>& fields) {
    fields.clear();
    // "HTTP/1.1 200 OK\r\n": the version exactly, a final status, a reason of field text. Every
    // step checks the bounds: bytes that end before the blank line are not a head yet.
    constexpr std::string_view kVersion = "HTTP/1.1 ";
    if (bytes.size() < kVersion.size() + 5 || !bytes.starts_with(kVersion) ||
        bytes[kVersion.size() + 3] != ' ') {
        return std::nullopt;
    }
    PlainHead head;
    const char* digits = bytes.data() + kVersion.size();
    if (auto [ptr, ec] = std::from_chars(digits, digits + 3, head.status);
        ec != std::errc{} || ptr != digits + 3 || head.status < 200 || head.status > 599) {
        return std::nullopt;
    }
    auto at = text_end(bytes, kVersion.size() + 4);
    if (at == std::string_view::npos) {
        return std::nullopt;
    }
    at += 2;
    // Fields until the blank line: name ":" OWS value OWS CRLF, no folding.
    for (;;) {
        if (at + 1 >= bytes.size()) {
            return std::nullopt;  // not whole yet
        }
        if (bytes[at] == '\r') {
            if (bytes[at + 1] != '\n') {
                return std::nullopt;
            }
            break;
        }
        const auto name_start = at;
        while (at < bytes.size() && is(bytes[at], kToken)) {
            ++at;
        }
        if (at == name_start || at >= bytes.size() || bytes[at] != ':') {
            return std::nullopt;  // an empty name, a space before the colon, a folded line...
        }
        const auto name = bytes.substr(name_start, at - name_start);
        const auto value_start = at + 1;
        at = text_end(bytes, value_start);
        if (at == std::string_view::npos) {
            return std::nullopt;
        }
        const auto value = trim_ows(bytes.substr(value_start, at - value_start));
        at += 2;
        if (iequals(name, "transfer-encoding")) {
            return std::nullopt;  // chunked or worse: Beast's
        }
        if (iequals(name, "content-length")) {
            std::uint64_t length = 0;
            auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
            if (head.content_length || value.empty() || ec != std::errc{} ||
                ptr != value.data() + value.size()) {
                return std::nullopt;  // twice, a list, a sign, too large...
            }
            head.content_length = length;
        } else if (iequals(name, "connection")) {
            for_each_token(value, [&head](std::string_view token) {
                if (iequals(token, "close")) {
                    head.keep_alive = false;
                }
            });
        }
        fields.push_back(HeadField{name, value});
    }
    head.size = at + 2;
    return head;
}

}  // namespace aviary::net
