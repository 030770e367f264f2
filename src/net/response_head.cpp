#include "net/response_head.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>

namespace aviary::net {
namespace {

/// VCHAR, SP, HTAB and obs-text: what values and the reason phrase may hold.
constexpr std::array<bool, 256> kFieldText = [] {
    std::array<bool, 256> text{};
    for (int c = 0x21; c <= 0xff; ++c) {
        text[static_cast<std::size_t>(c)] = c != 0x7f;
    }
    text[' '] = true;
    text['\t'] = true;
    return text;
}();

/// Whether any of the 8 bytes in `word` may not be field text as they stand: a control
/// character (below 0x20, tab included) or DEL. It may also say so for a byte after such a
/// one (a borrow carries), never for a word without one; the caller then goes byte by byte.
constexpr bool may_hold_control(std::uint64_t word) {
    constexpr std::uint64_t kOnes = 0x0101010101010101;
    constexpr std::uint64_t kHighs = 0x8080808080808080;
    const auto below = [](std::uint64_t w, std::uint64_t n) {
        return (w - kOnes * n) & ~w & kHighs;
    };
    return (below(word, 0x20) | below(word ^ (kOnes * 0x7f), 1)) != 0;
}

/// One line of field text up to its CRLF, from `at`: the end of the text, or npos when the
/// line holds anything else (a bare CR or LF, a control character). Eight bytes at a time
/// while none of them is special: a value is read here byte for byte otherwise.
std::size_t text_end(std::string_view bytes, std::size_t at) {
    for (;;) {
        while (at + 8 <= bytes.size()) {
            std::uint64_t word = 0;
            std::memcpy(&word, bytes.data() + at, sizeof word);
            if (may_hold_control(word)) {
                break;
            }
            at += 8;
        }
        const auto stop = std::min(at + 8, bytes.size());
        while (at < stop && kFieldText[static_cast<unsigned char>(bytes[at])]) {
            ++at;
        }
        if (at < stop || at == bytes.size()) {
            break;  // a byte that is not text, or the end of what has come so far
        }
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
        while (at < bytes.size() && kTokenChars[static_cast<unsigned char>(bytes[at])]) {
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
        if (equals_lowercase(name, "transfer-encoding")) {
            return std::nullopt;  // chunked or worse: Beast's
        }
        if (equals_lowercase(name, "content-length")) {
            std::uint64_t length = 0;
            auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
            if (head.content_length || value.empty() || ec != std::errc{} ||
                ptr != value.data() + value.size()) {
                return std::nullopt;  // twice, a list, a sign, too large...
            }
            head.content_length = length;
        } else if (equals_lowercase(name, "connection")) {
            for_each_token(value, [&head](std::string_view token) {
                if (equals_lowercase(token, "close")) {
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
