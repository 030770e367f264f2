#include "net/plain_head.hpp"

#include <algorithm>
#include <array>
#include <bit>
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

/// The end of the run of `chars` that starts at `at` (a name, a method, a target).
std::size_t run_end(const std::array<bool, 256>& chars, std::string_view bytes, std::size_t at) {
    while (at < bytes.size() && chars[static_cast<unsigned char>(bytes[at])]) {
        ++at;
    }
    return at;
}

/// A flag in the high bit of each of the 8 bytes of `word` that is not field text as it stands:
/// a control character (below 0x20, tab included) or DEL. A borrow may also flag a byte above
/// such a one, never a byte below: the lowest flag is always a true one.
constexpr std::uint64_t control_flags(std::uint64_t word) {
    constexpr std::uint64_t kOnes = 0x0101010101010101;
    constexpr std::uint64_t kHighs = 0x8080808080808080;
    const auto below = [](std::uint64_t w, std::uint64_t n) {
        return (w - kOnes * n) & ~w & kHighs;
    };
    return below(word, 0x20) | below(word ^ (kOnes * 0x7f), 1);
}

// The lowest flag of a word read with memcpy is its first byte on a little-endian machine.
static_assert(std::endian::native == std::endian::little,
              "text_end() reads the first flagged byte of a word as its lowest");

/// One line of field text up to its CRLF, from `at`: the end of the text, or npos when the
/// line holds anything else (a bare CR or LF, a control character). Eight bytes at a time: a
/// word without a flag is all text, and a word with one goes straight to its first flagged
/// byte (the CR, a tab to step over, or a byte that ends the line as not plain).
std::size_t text_end(std::string_view bytes, std::size_t at) {
    for (;;) {
        if (at + 8 <= bytes.size()) {
            std::uint64_t word = 0;
            std::memcpy(&word, bytes.data() + at, sizeof word);
            const auto flags = control_flags(word);
            if (flags == 0) {
                at += 8;
                continue;
            }
            at += static_cast<std::size_t>(std::countr_zero(flags)) / 8;
        } else {
            at = run_end(kFieldText, bytes, at);  // the last few bytes: tabs are text here
            if (at == bytes.size()) {
                return std::string_view::npos;  // the end of what has come so far
            }
        }
        if (bytes[at] != '\t') {
            break;
        }
        ++at;
    }
    if (at + 1 >= bytes.size() || bytes[at] != '\r' || bytes[at + 1] != '\n') {
        return std::string_view::npos;
    }
    return at;
}

/// What the fields of a plain head said about its framing.
struct FieldFacts {
    std::optional<std::uint64_t> content_length;
    bool close = false;       ///< "close" among the Connection tokens
    bool keep_alive = false;  ///< "keep-alive" among them (HTTP/1.0's opt-in)
};

/// Which heads the fields belong to: a request's are refused on what the server reads through
/// Beast (an upgrade, an Expect).
enum class FieldsOf { kResponse, kRequest };

/// The fields from `at` (the start of the line after the start line) to the blank line, into
/// `fields`: the head's size, or npos when the head is not whole yet or not plain.
std::size_t read_fields(std::string_view bytes,
                        std::size_t at,
                        std::vector<HeadField>& fields,
                        FieldFacts& facts,
                        FieldsOf of) {
    // name ":" OWS value OWS CRLF, no folding. Every step checks the bounds: bytes that end
    // before the blank line are not a head yet.
    for (;;) {
        if (at + 1 >= bytes.size()) {
            return std::string_view::npos;  // not whole yet
        }
        if (bytes[at] == '\r') {
            return bytes[at + 1] == '\n' ? at + 2 : std::string_view::npos;
        }
        const auto name_start = at;
        at = run_end(kTokenChars, bytes, at);
        if (at == name_start || at >= bytes.size() || bytes[at] != ':') {
            return std::string_view::npos;  // an empty name, a space before the colon, a fold...
        }
        const auto name = bytes.substr(name_start, at - name_start);
        const auto value_start = at + 1;
        at = text_end(bytes, value_start);
        if (at == std::string_view::npos) {
            return std::string_view::npos;
        }
        const auto value = trim_ows(bytes.substr(value_start, at - value_start));
        at += 2;
        if (equals_lowercase(name, "transfer-encoding")) {
            return std::string_view::npos;  // chunked or worse: Beast's
        }
        if (of == FieldsOf::kRequest &&
            (equals_lowercase(name, "upgrade") || equals_lowercase(name, "expect"))) {
            return std::string_view::npos;  // a WebSocket, a 100-continue: Beast's
        }
        if (equals_lowercase(name, "content-length")) {
            std::uint64_t length = 0;
            auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
            if (facts.content_length || value.empty() || ec != std::errc{} ||
                ptr != value.data() + value.size()) {
                return std::string_view::npos;  // twice, a list, a sign, too large...
            }
            facts.content_length = length;
        } else if (equals_lowercase(name, "connection")) {
            for_each_token(value, [&facts](std::string_view token) {
                if (equals_lowercase(token, "close")) {
                    facts.close = true;
                } else if (equals_lowercase(token, "keep-alive")) {
                    facts.keep_alive = true;
                }
            });
        }
        fields.push_back(HeadField{name, value});
    }
}

/// VCHAR: what a plain request target is made of (Beast also takes obs-text; that is its).
constexpr std::array<bool, 256> kTargetChars = [] {
    std::array<bool, 256> chars{};
    for (int c = 0x21; c < 0x7f; ++c) {
        chars[static_cast<std::size_t>(c)] = true;
    }
    return chars;
}();

}  // namespace

std::optional<PlainHead> parse_plain_head(std::string_view bytes, std::vector<HeadField>& fields) {
    fields.clear();
    // "HTTP/1.1 200 OK\r\n": the version exactly, a final status, a reason of field text.
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
    const auto line_end = text_end(bytes, kVersion.size() + 4);
    if (line_end == std::string_view::npos) {
        return std::nullopt;
    }
    FieldFacts facts;
    head.size = read_fields(bytes, line_end + 2, fields, facts, FieldsOf::kResponse);
    if (head.size == std::string_view::npos) {
        return std::nullopt;
    }
    head.content_length = facts.content_length;
    head.keep_alive = !facts.close;
    return head;
}

std::optional<PlainRequestHead> parse_plain_request_head(std::string_view bytes,
                                                         std::vector<HeadField>& fields) {
    fields.clear();
    // "GET /path?query HTTP/1.1\r\n": a token, one space, a target of visible characters, one
    // space, HTTP/1.1 or HTTP/1.0 exactly.
    std::size_t at = run_end(kTokenChars, bytes, 0);
    if (at == 0 || at >= bytes.size() || bytes[at] != ' ') {
        return std::nullopt;
    }
    PlainRequestHead head;
    head.method = bytes.substr(0, at);
    const auto target_start = ++at;
    at = run_end(kTargetChars, bytes, at);
    constexpr std::string_view kVersion = " HTTP/1.";
    if (at == target_start || bytes.size() < at + kVersion.size() + 3 ||
        bytes.substr(at, kVersion.size()) != kVersion) {
        return std::nullopt;
    }
    head.target = bytes.substr(target_start, at - target_start);
    at += kVersion.size();
    const char minor = bytes[at];
    if ((minor != '0' && minor != '1') || bytes[at + 1] != '\r' || bytes[at + 2] != '\n') {
        return std::nullopt;
    }
    head.version = minor == '1' ? 11 : 10;
    FieldFacts facts;
    head.size = read_fields(bytes, at + 3, fields, facts, FieldsOf::kRequest);
    if (head.size == std::string_view::npos) {
        return std::nullopt;
    }
    head.content_length = facts.content_length;
    // HTTP/1.1 stays open unless asked to close; HTTP/1.0 closes unless asked to stay.
    head.keep_alive = !facts.close && (head.version == 11 || facts.keep_alive);
    return head;
}

}  // namespace aviary::net
