// The dashboard's canary section in a real browser: headless Chromium loads /dashboard from a
// real serve whose scenarios have run, and the test reads the rendered page as a person would:
// each scenario's row, its 24-hour availability, the last failure's message, and its chart of
// 24 hourly bars.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "integration/rpc_helpers.hpp"

namespace aviary::test {
namespace {

using namespace std::chrono_literals;

/// The page as Chromium rendered it (--dump-dom).
std::string render(const std::string& url, const std::string& profile_dir) {
    auto result = run_command(
        fmt::format("timeout 90 chromium --headless --no-sandbox --disable-gpu --no-first-run "
                    "--disable-extensions --user-data-dir={} --dump-dom {} 2>/dev/null",
                    profile_dir, url));
    EXPECT_EQ(result.status, 0) << result.output;
    return result.output;
}

/// The text of `html` with its tags (and SVG titles) dropped, as it reads on screen.
std::string visible_text(const std::string& html) {
    std::string text = std::regex_replace(html, std::regex{"<title>[^<]*</title>"}, "");
    text = std::regex_replace(text, std::regex{"<[^>]*>"}, " ");
    text = std::regex_replace(text, std::regex{"&quot;"}, "\"");
    return std::regex_replace(text, std::regex{"\\s+"}, " ");
}

/// The <tr> of scenario `name`.
std::string row_of(const std::string& page, const std::string& name) {
    auto at = page.find(fmt::format("data-probe=\"{}\"", name));
    if (at == std::string::npos) {
        return {};
    }
    auto start = page.rfind("<tr", at);
    auto end = page.find("</tr>", at);
    return page.substr(start, end - start);
}

TEST(DashboardBrowser, ShowsEachScenariosAvailabilityChartAndLastFailure) {
    TempDir scratch;
    ServerProcess server{test_config() + R"(probes:
  scenarios:
    healthy:
      interval: 1s
      steps:
        - http: {url: "{{server}}/healthz"}
    wrong:
      interval: 1s
      steps:
        - name: health
          http: {url: "{{server}}/healthz"}
          assert: [{that: "body == nope", message: "unexpected health"}]
)"};
    ASSERT_TRUE(server.start()) << server.log();
    ASSERT_TRUE(wait_until(
        [&] {
            auto list = json_of(http(server, "GET", "/api/v1/probes"));
            if (!list.is_object()) {
                return false;
            }
            for (const auto& p : list.at("probes").as_array()) {
                if (p.at("last").is_null()) {
                    return false;
                }
            }
            return true;
        },
        20s));

    auto page = render(server.url("/dashboard"), scratch.path());
    ASSERT_NE(page.find("Canary scenarios"), std::string::npos) << page;

    auto healthy = row_of(page, "healthy");
    ASSERT_FALSE(healthy.empty()) << page;
    auto healthy_text = visible_text(healthy);
    EXPECT_NE(healthy_text.find("healthy passed"), std::string::npos) << healthy_text;
    EXPECT_NE(healthy_text.find("100.00%"), std::string::npos) << healthy_text;
    // 24 hourly bars; this hour's is green and full height, the hours before had no runs.
    const std::regex bar{"<rect "};
    EXPECT_EQ(std::distance(std::sregex_iterator(healthy.begin(), healthy.end(), bar),
                            std::sregex_iterator()),
              24);
    EXPECT_NE(healthy.find("fill=\"#17803d\""), std::string::npos) << healthy;
    EXPECT_NE(healthy.find("no runs"), std::string::npos) << healthy;

    auto wrong = row_of(page, "wrong");
    ASSERT_FALSE(wrong.empty()) << page;
    auto wrong_text = visible_text(wrong);
    EXPECT_NE(wrong_text.find("wrong failed"), std::string::npos) << wrong_text;
    // A wrong answer is a correctness failure: still available.
    EXPECT_NE(wrong_text.find("100.00%"), std::string::npos) << wrong_text;
    EXPECT_NE(
        wrong_text.find("step \"health\": unexpected health: expected \"nope\" but got \"ok \""),
        std::string::npos)
        << wrong_text;
}

}  // namespace
}  // namespace aviary::test
