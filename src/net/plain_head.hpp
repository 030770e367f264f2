#pragma once
// Private to src/net (and its tests): HTTP's character classes, and the fast reading of plain
// heads: a request's by the server, an upstream's response by the proxy.
// Most requests to the server, and most answers of a node's API, are the same shape: HTTP/1.1,
// a handful of headers, no body or a Content-Length. This takes exactly that shape in one pass
// over the bytes, and says "not plain" for anything else (an interim or 101 status,
// Transfer-Encoding, an upgrade, a folded or odd line, two Content-Lengths...), which the caller
// then leaves to Beast's parser, the bytes untouched. So it never has to be right about the
// unusual: it only has to refuse it.
#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace aviary::net {

/// A lookup table of the characters a grammar allows: letters, digits and `others`.
constexpr std::array<bool, 256> alphanumerics_and(std::string_view others) {
    std::array<bool, 256> allowed{};
    for (int c = 'a'; c <= 'z'; ++c) {
        allowed[static_cast<std::size_t>(c)] = true;
    }
    for (int c = 'A'; c <= 'Z'; ++c) {
        allowed[static_cast<std::size_t>(c)] = true;
    }
    for (int c = '0'; c <= '9'; ++c) {
        allowed[static_cast<std::size_t>(c)] = true;
    }
    for (char c : others) {
        allowed[static_cast<unsigned char>(c)] = true;
    }
    return allowed;
}

/// RFC 9110's tchar: what a header name may be made of.
inline constexpr auto kTokenChars = alphanumerics_and("!#$%&'*+-.^_`|~");

/// Whether `name` can be a header's name: a non-empty token.
inline bool is_token(std::string_view name) {
    return !name.empty() &&
           std::all_of(name.begin(), name.end(), [](unsigned char c) { return kTokenChars[c]; });
}

/// Whether `text` is `lowercase` ignoring the case of its ASCII letters: header names and
/// tokens against a known name. Inline, and a length compare first: the proxy makes a few of
/// these for every header of every message, and most differ in length.
constexpr bool equals_lowercase(std::string_view text, std::string_view lowercase) {
    if (text.size() != lowercase.size()) {
        return false;
    }
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c) != lowercase[i]) {
            return false;
        }
    }
    return true;
}

/// One header of a plain head: views into the bytes given to parse_plain_head().
struct HeadField {
    std::string_view name;
    std::string_view value;  ///< without leading or trailing spaces and tabs
};

struct PlainHead {
    int status = 0;                               ///< 200 to 599
    std::optional<std::uint64_t> content_length;  ///< none: no Content-Length header
    bool keep_alive = true;                       ///< no "close" among the Connection tokens
    std::size_t size = 0;                         ///< bytes of the head, blank line included
};

/// The head at the start of `bytes` when it is whole and plain (above), its headers in
/// `fields` (cleared first; views into `bytes`). Nullopt when the head is not whole yet or not
/// plain: the caller then reads on or hands the bytes to a full parser.
std::optional<PlainHead> parse_plain_head(std::string_view bytes, std::vector<HeadField>& fields);

struct PlainRequestHead {
    std::string_view method;                      ///< a token
    std::string_view target;                      ///< visible ASCII, as sent
    unsigned version = 11;                        ///< 11 or 10
    std::optional<std::uint64_t> content_length;  ///< none: no Content-Length header (no body)
    bool keep_alive = true;  ///< HTTP/1.1 without "close", or HTTP/1.0 with "keep-alive"
    std::size_t size = 0;    ///< bytes of the head, blank line included
};

/// A request's head, the same way: "METHOD target HTTP/1.1" (or 1.0) and plain fields. Also
/// not plain: Upgrade and Expect, which the server handles through Beast's parser.
std::optional<PlainRequestHead> parse_plain_request_head(std::string_view bytes,
                                                         std::vector<HeadField>& fields);

/// `text` without the spaces and tabs around it (HTTP's OWS).
inline std::string_view trim_ows(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
        text.remove_prefix(1);
    }
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
        text.remove_suffix(1);
    }
    return text;
}

/// Writes into a string sized beforehand, through a pointer: a head is made of many small
/// pieces, and a string append each (a call and a capacity check) cost more than the copies.
/// The caller sizes the string for the most it may write, then cuts it to `written(text)`.
class SizedWriter {
public:
    explicit SizedWriter(std::string& text) : at_(text.data()) {}
    SizedWriter& append(std::string_view piece) {
        std::memcpy(at_, piece.data(), piece.size());
        at_ += piece.size();
        return *this;
    }
    void put_number(std::uint64_t number) { at_ = std::to_chars(at_, at_ + 20, number).ptr; }
    std::size_t written(const std::string& text) const {
        return static_cast<std::size_t>(at_ - text.data());
    }

private:
    char* at_;
};

/// The name and value of each "Name: value\r\n" line of `lines` (Response::header_lines), as
/// views. A line without a colon comes as a name with an empty value; a last line without its
/// CRLF is still one.
template <class Visit>
void for_each_header_line(std::string_view lines, Visit visit) {
    while (!lines.empty()) {
        const auto end = lines.find("\r\n");
        const auto line = lines.substr(0, end);
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) {
            visit(line, std::string_view{});
        } else {
            visit(line.substr(0, colon), trim_ows(line.substr(colon + 1)));
        }
        lines = end == std::string_view::npos ? std::string_view{} : lines.substr(end + 2);
    }
}

/// The tokens of a comma-separated header value (Connection's), as views, empty ones skipped.
template <class Visit>
void for_each_token(std::string_view value, Visit visit) {
    while (!value.empty()) {
        const auto comma = value.find(',');
        if (const auto token = trim_ows(value.substr(0, comma)); !token.empty()) {
            visit(token);
        }
        value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
    }
}

}  // namespace aviary::net
