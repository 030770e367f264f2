#include "net/plain_head.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace aviary::net {
namespace {

using namespace std::string_view_literals;

TEST(EqualsLowercase, IgnoresTheCaseOfLettersOnly) {
    EXPECT_TRUE(equals_lowercase("Content-Length", "content-length"));
    EXPECT_TRUE(equals_lowercase("CONTENT-LENGTH", "content-length"));
    EXPECT_TRUE(equals_lowercase("", ""));
    EXPECT_FALSE(equals_lowercase("Content-Lengths", "content-length"));
    EXPECT_FALSE(equals_lowercase("Content-Lengt", "content-length"));
    EXPECT_FALSE(equals_lowercase("Content_Length", "content-length"));
    // Only A-Z fold: '\r' is not '-' less a case bit, nor is '[' an upper-case '{'.
    EXPECT_FALSE(equals_lowercase("content\rlength", "content-length"));
    EXPECT_FALSE(equals_lowercase("[", "{"));
}

TEST(HeaderLines, SplitsEachLineIntoItsNameAndTrimmedValue) {
    std::vector<std::pair<std::string, std::string>> seen;
    for_each_header_line(
        "A: 1\r\nB-Two:  x, y \r\nno-colon\r\nLast:z",
        [&seen](std::string_view name, std::string_view value) { seen.emplace_back(name, value); });
    EXPECT_EQ(seen, (std::vector<std::pair<std::string, std::string>>{
                        {"A", "1"}, {"B-Two", "x, y"}, {"no-colon", ""}, {"Last", "z"}}));
    seen.clear();
    for_each_header_line("", [&seen](std::string_view name, std::string_view value) {
        seen.emplace_back(name, value);
    });
    EXPECT_TRUE(seen.empty());
}

TEST(PlainHead, TakesTheUsualAnswerWithItsFieldsAndLength) {
    const std::string bytes =
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\n"
        "Content-Length: 2\r\nX-Spaced: \t padded \t\r\nConnection: keep-alive\r\n\r\nok";
    std::vector<HeadField> fields;
    auto head = parse_plain_head(bytes, fields);
    ASSERT_TRUE(head);
    EXPECT_EQ(head->status, 200);
    ASSERT_TRUE(head->content_length);
    EXPECT_EQ(*head->content_length, 2U);
    EXPECT_TRUE(head->keep_alive);
    EXPECT_EQ(head->size, bytes.size() - 2);  // the body is not the head's
    ASSERT_EQ(fields.size(), 5U);
    EXPECT_EQ(fields[0].name, "Server");
    EXPECT_EQ(fields[0].value, "nginx");
    EXPECT_EQ(fields[3].name, "X-Spaced");
    EXPECT_EQ(fields[3].value, "padded");
}

TEST(PlainHead, ReadsCloseAmongTheConnectionTokensInAnyCase) {
    std::vector<HeadField> fields;
    auto head =
        parse_plain_head("HTTP/1.1 204 No Content\r\nconnection: X-Private, CLOSE\r\n\r\n", fields);
    ASSERT_TRUE(head);
    EXPECT_EQ(head->status, 204);
    EXPECT_FALSE(head->content_length);
    EXPECT_FALSE(head->keep_alive);
}

TEST(PlainHead, TakesAnEmptyReasonAndNoFields) {
    std::vector<HeadField> fields{{"stale", "field"}};
    auto head = parse_plain_head("HTTP/1.1 503 \r\n\r\n", fields);
    ASSERT_TRUE(head);
    EXPECT_EQ(head->status, 503);
    EXPECT_TRUE(fields.empty());
}

TEST(PlainHead, RefusesEveryHeadCutShort) {
    // Bytes as they come off the socket, read after read: no prefix passes for a whole head.
    const std::string whole = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok";
    const auto head_size = whole.size() - 2;
    std::vector<HeadField> fields;
    for (std::size_t cut = 0; cut < head_size; ++cut) {
        EXPECT_FALSE(parse_plain_head(std::string_view{whole}.substr(0, cut), fields)) << cut;
    }
    auto head = parse_plain_head(std::string_view{whole}.substr(0, head_size), fields);
    ASSERT_TRUE(head);
    EXPECT_EQ(head->size, head_size);
}

TEST(PlainHead, LeavesEverythingUnusualToTheFullParser) {
    // Each is either incomplete or a shape this pass does not take: the caller hands the bytes,
    // untouched, to Beast, which accepts or refuses them by the whole of RFC 9112.
    for (const std::string& bytes : std::vector<std::string>{
             "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",  // not whole yet
             "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
             "HTTP/1.1 100 Continue\r\n\r\n",
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
             "HTTP/1.1 600 Odd\r\n\r\n",
             "HTTP/1.1 20x OK\r\n\r\n",
             "HTTP/1.1 200\r\n\r\n",
             "http/1.1 200 OK\r\n\r\n",
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
             "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
             "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n",
             "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n",
             "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n",
             "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
             "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
             "HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\n\r\n",
             "HTTP/1.1 200 OK\r\nX-Space : a\r\n\r\n",
             "HTTP/1.1 200 OK\r\n: no name\r\n\r\n",
             "HTTP/1.1 200 OK\r\nX-Bare: a\rb\r\n\r\n",
             "HTTP/1.1 200 OK\r\nX-Lf: a\nb\r\n\r\n",
             std::string{
                 "HTTP/1.1 200 OK\r\nX-Nul: a\0b\r\n\r\n"sv},  // the NUL kept by sv's length
             "HTTP/1.1 200 OK\r\nX-Del: a\x7f\r\n\r\n",
             "HTTP/1.1 200 O\x01K\r\n\r\n",
         }) {
        std::vector<HeadField> fields;
        EXPECT_FALSE(parse_plain_head(bytes, fields)) << bytes;
    }
}

TEST(PlainHead, ChecksEveryByteOfALongValueWhereverTheOddOneIs) {
    // Values are read eight bytes at a time: a control character is found at any offset in
    // the word, and tabs and obs-text (0x80 and up) pass wherever they are.
    const std::string text(41, 'v');
    for (std::size_t at = 0; at < text.size(); ++at) {
        for (const char bad : {'\0', '\x01', '\n', '\r', '\x1f', '\x7f'}) {
            auto value = text;
            value[at] = bad;
            const auto bytes = "HTTP/1.1 200 OK\r\nX-Long: " + value + "\r\n\r\n";
            std::vector<HeadField> fields;
            EXPECT_FALSE(parse_plain_head(bytes, fields)) << "byte " << int(bad) << " at " << at;
        }
        for (const char good : {'\t', ' ', '~', '\x80', '\xff'}) {
            auto value = text;
            value[at] = good;
            value.back() = 'e';  // not trimmed away
            value.front() = 's';
            if (at == 0 || at + 1 == text.size()) {
                continue;
            }
            const auto bytes = "HTTP/1.1 200 OK\r\nX-Long: " + value + "\r\n\r\n";
            std::vector<HeadField> fields;
            auto head = parse_plain_head(bytes, fields);
            ASSERT_TRUE(head) << "byte " << int(good) << " at " << at;
            ASSERT_EQ(fields.size(), 1U);
            EXPECT_EQ(fields[0].value, value);
        }
    }
}

TEST(PlainHead, StepsOverTabsAndStillFindsWhatFollowsThemInTheSameWord) {
    // A word with a tab is read from the tab on: a second tab, or a control character a few
    // bytes after the first, in the same eight bytes or the next.
    const std::string text(24, 'v');
    for (std::size_t tab = 1; tab < 12; ++tab) {
        for (std::size_t gap = 1; gap < 10; ++gap) {
            auto tabs = text;
            tabs[tab] = '\t';
            tabs[tab + gap] = '\t';
            std::vector<HeadField> fields;
            const auto good = "HTTP/1.1 200 OK\r\nX-Tabs: " + tabs + "\r\n\r\n";
            ASSERT_TRUE(parse_plain_head(good, fields))
                << "tabs at " << tab << " and " << tab + gap;
            ASSERT_EQ(fields.size(), 1U);
            EXPECT_EQ(fields[0].value, tabs);

            auto bad = tabs;
            bad[tab + gap] = '\x01';
            const auto odd = "HTTP/1.1 200 OK\r\nX-Tabs: " + bad + "\r\n\r\n";
            EXPECT_FALSE(parse_plain_head(odd, fields))
                << "tab at " << tab << ", 0x01 at " << tab + gap;
        }
    }
}

TEST(PlainRequestHead, TakesTheUsualRequestWithItsTargetFieldsAndLength) {
    const std::string bytes =
        "POST /rpc/v0?x=%20y HTTP/1.1\r\nHost: 127.0.0.1:1337\r\nContent-Type: application/json"
        "\r\nContent-Length: 2\r\nX-Spaced:  padded \r\n\r\n{}";
    std::vector<HeadField> fields;
    auto head = parse_plain_request_head(bytes, fields);
    ASSERT_TRUE(head);
    EXPECT_EQ(head->method, "POST");
    EXPECT_EQ(head->target, "/rpc/v0?x=%20y");
    EXPECT_EQ(head->version, 11U);
    ASSERT_TRUE(head->content_length);
    EXPECT_EQ(*head->content_length, 2U);
    EXPECT_TRUE(head->keep_alive);
    EXPECT_EQ(head->size, bytes.size() - 2);
    ASSERT_EQ(fields.size(), 4U);
    EXPECT_EQ(fields[0].name, "Host");
    EXPECT_EQ(fields[0].value, "127.0.0.1:1337");
    EXPECT_EQ(fields[3].value, "padded");
}

TEST(PlainRequestHead, KeepsAliveByTheVersionAndItsConnectionTokens) {
    const std::vector<std::pair<std::string, bool>> cases{
        {"GET / HTTP/1.1\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nConnection: Keep-Alive, close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nconnection: KEEP-ALIVE, Close\r\n\r\n", false},
    };
    for (const auto& [bytes, keep_alive] : cases) {
        std::vector<HeadField> fields;
        auto head = parse_plain_request_head(bytes, fields);
        ASSERT_TRUE(head) << bytes;
        EXPECT_EQ(head->keep_alive, keep_alive) << bytes;
        EXPECT_EQ(head->version, bytes.find("HTTP/1.0") == std::string::npos ? 11U : 10U);
    }
}

TEST(PlainRequestHead, RefusesEveryHeadCutShort) {
    const std::string whole = "GET /status?full=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
    std::vector<HeadField> fields;
    for (std::size_t cut = 0; cut < whole.size(); ++cut) {
        EXPECT_FALSE(parse_plain_request_head(std::string_view{whole}.substr(0, cut), fields))
            << cut;
    }
    auto head = parse_plain_request_head(whole, fields);
    ASSERT_TRUE(head);
    EXPECT_EQ(head->size, whole.size());
}

TEST(PlainRequestHead, LeavesEverythingUnusualToTheFullParser) {
    // The server then reads these bytes with Beast, which accepts or answers 400/431/413.
    for (const std::string& bytes : std::vector<std::string>{
             "GET / HTTP/1.1\r\nHost: x\r\n",  // not whole yet
             "GET / HTTP/2.0\r\n\r\n",
             "GET / HTTP/1.2\r\n\r\n",
             "GET / http/1.1\r\n\r\n",
             "GET /  HTTP/1.1\r\n\r\n",
             " GET / HTTP/1.1\r\n\r\n",
             "\r\nGET / HTTP/1.1\r\n\r\n",
             "G(T / HTTP/1.1\r\n\r\n",
             "GET  HTTP/1.1\r\n\r\n",
             "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",
             "GET /a\tb HTTP/1.1\r\n\r\n",
             "GET / HTTP/1.1\n\r\n",
             "GET / HTTP/1.1\r\nHost: x\n\r\n",
             "GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
             "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n",
             "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
             "POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n",
             "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
             "GET / HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n",
             "GET / HTTP/1.1\r\nX-Space : a\r\n\r\n",
         }) {
        std::vector<HeadField> fields;
        EXPECT_FALSE(parse_plain_request_head(bytes, fields)) << bytes;
    }
}

}  // namespace
}  // namespace aviary::net
