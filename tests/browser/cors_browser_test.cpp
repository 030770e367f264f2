// A real browser against the roller's routes: headless Chromium loads a page from another
// origin (a page server in this test, on its own loopback port), and the page's script posts a
// task with a bearer token — which makes the browser send a CORS preflight first — then polls
// the task until it is COMPLETE. The page writes what it saw into its DOM, which Chromium
// prints (--dump-dom). A page on an origin aviary was not configured for is stopped by the
// browser, and no task is written.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <regex>
#include <thread>

#include "integration/rpc_helpers.hpp"
#include "support/peer_process.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;

/// Serves one page as text/html to every request on 127.0.0.1:port, until destroyed. The page
/// is set once the server's own origin is known (aviary's config names it).
class PageServer {
public:
    PageServer() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
            ::listen(fd_, 16) == 0 &&
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
            port_ = ntohs(addr.sin_port);
        }
        thread_ = std::thread([this] { serve(); });
    }
    ~PageServer() {
        stop_ = true;
        ::shutdown(fd_, SHUT_RDWR);
        ::close(fd_);
        thread_.join();
    }
    std::string origin() const { return fmt::format("http://127.0.0.1:{}", port_); }
    void set_page(std::string page) {
        std::lock_guard lock{mu_};
        page_ = std::move(page);
    }

private:
    void serve() {
        while (!stop_) {
            int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (client < 0) {
                continue;  // shut down (stop_ is set), or a transient failure
            }
            timeval timeout{.tv_sec = 5, .tv_usec = 0};
            ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
            std::string request;
            char buffer[4096];
            while (request.find("\r\n\r\n") == std::string::npos && request.size() < 65536) {
                auto n = ::recv(client, buffer, sizeof buffer, 0);
                if (n <= 0) {
                    break;
                }
                request.append(buffer, static_cast<std::size_t>(n));
            }
            std::string page;
            {
                std::lock_guard lock{mu_};
                page = page_;
            }
            auto response = fmt::format(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: "
                "{}\r\nConnection: close\r\n\r\n{}",
                page.size(), page);
            ::send(client, response.data(), response.size(), MSG_NOSIGNAL);
            ::close(client);
        }
    }

    std::mutex mu_;
    std::string page_;
    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

/// The page: POST the task with a token (a preflight first), poll it, write what happened.
std::string page_for(const std::string& aviary_url) {
    return fmt::format(R"(<!doctype html>
<html><body><pre id="out">running</pre>
<script>
const aviary = "{}";
const auth = {{"Authorization": "Bearer dash-secret"}};
async function run() {{
  const seen = {{}};
  try {{
    const posted = await fetch(aviary + "/api/v1/jobs?tc_worker_id=tc-worker-1&task_name=hello",
                               {{method: "POST", headers: auth}});
    seen.post_status = posted.status;
    seen.post = await posted.json();
    for (let i = 0; i < 200; i++) {{
      const polled = await fetch(aviary + "/api/v1/jobs/" + seen.post.task_id, {{headers: auth}});
      const job = await polled.json();
      seen.status = job.status;
      if (job.status === "COMPLETE" || job.status === "FAILED") break;
      await new Promise(r => setTimeout(r, 50));
    }}
  }} catch (e) {{
    seen.error = String(e);
  }}
  document.getElementById("out").textContent = "RESULT" + JSON.stringify(seen) + "END";
}}
run();
</script></body></html>
)",
                       aviary_url);
}

/// What the page wrote, from Chromium's --dump-dom of `url`.
json::value visit(const std::string& url, const std::string& profile_dir) {
    auto result = run_command(fmt::format(
        "timeout 90 chromium --headless --no-sandbox --disable-gpu --no-first-run "
        "--disable-extensions --user-data-dir={} --virtual-time-budget=30000 --dump-dom {} "
        "2>/dev/null",
        profile_dir, url));
    std::smatch found;
    if (!std::regex_search(result.output, found, std::regex{"RESULT(.*)END"})) {
        ADD_FAILURE() << "chromium exited " << result.status << " without the page's result:\n"
                      << result.output;
        return nullptr;
    }
    std::error_code ec;
    auto parsed = json::parse(found[1].str(), ec);
    return ec ? json::value(nullptr) : parsed;
}

std::string roller_config(const std::string& origin) {
    return test_config(R"(  machines:
    - {name: t-web-1, hostname: t-web-1.test, address: 127.0.0.1}
  worker_ids:
    - {id: tc-worker-1, machine: t-web-1}
)") + fmt::format(R"(jobs:
  actions:
    hello:
      public: true
      exclusive: false
      params:
        host: {{from: "{{{{machine.address}}}}"}}
      steps:
        - run: [echo, "hello {{{{params.host}}}}"]
auth:
  tokens:
    - {{identity: dashboard, role: user, env: AVIARY_TEST_DASH}}
  cors_origins: ["{}"]
)",
                  origin);
}

double options_answered(const ServerProcess& server) {
    auto metrics = http(server, "GET", "/metrics", {}, {{"Authorization", "Bearer dash-secret"}});
    std::smatch found;
    if (!metrics ||
        !std::regex_search(
            metrics->body, found,
            std::regex{
                R"(aviary_http_requests_total\{[^}]*route="options"[^}]*code="200"[^}]*\} ([0-9.]+))"})) {
        return 0;
    }
    return std::stod(found[1].str());
}

/// serve's base URL without the trailing slash: "http://127.0.0.1:PORT".
std::string base_url(const ServerProcess& server) {
    auto url = server.url("/");
    return url.substr(0, url.size() - 1);
}

int jobs_count(const ServerProcess& server) {
    auto listed =
        json_of(http(server, "GET", "/api/v1/jobs", {}, {{"Authorization", "Bearer dash-secret"}}));
    return listed.is_object() ? static_cast<int>(listed.at("jobs").as_array().size()) : -1;
}

class CorsInABrowser : public ::testing::Test {
protected:
    void SetUp() override {
        setenv("AVIARY_TEST_DASH", "dash-secret", 1);
        ASSERT_TRUE(server_.start()) << server_.log();
        page_.set_page(page_for(base_url(server_)));
        foreign_.set_page(page_for(base_url(server_)));
    }

    TempDir profile_;
    PageServer page_;     // on the configured origin
    PageServer foreign_;  // on an origin aviary does not know
    ServerProcess server_{roller_config(page_.origin())};
};

TEST_F(CorsInABrowser, APageOnAConfiguredOriginPostsATaskAndPollsItToComplete) {
    auto seen = visit(page_.origin() + "/", profile_.path());
    ASSERT_TRUE(seen.is_object()) << server_.log();
    EXPECT_FALSE(seen.as_object().contains("error")) << json::serialize(seen);
    EXPECT_EQ(seen.at("post_status"), 201) << json::serialize(seen);
    EXPECT_EQ(seen.at("post").at("task_name"), "hello");
    EXPECT_EQ(seen.at("post").at("tc_worker_id"), "tc-worker-1");
    EXPECT_EQ(seen.at("status"), "COMPLETE") << json::serialize(seen);
    // The browser really asked first: serve answered preflights.
    EXPECT_GE(options_answered(server_), 1.0);
}

TEST_F(CorsInABrowser, APageOnAnotherOriginIsStoppedByTheBrowserAndWritesNothing) {
    const int before = jobs_count(server_);
    auto seen = visit(foreign_.origin() + "/", profile_.path());
    ASSERT_TRUE(seen.is_object()) << server_.log();
    EXPECT_NE(str(seen.at("error")).find("Failed to fetch"), std::string::npos)
        << json::serialize(seen);
    EXPECT_FALSE(seen.as_object().contains("post_status")) << json::serialize(seen);
    EXPECT_EQ(jobs_count(server_), before);
    EXPECT_TRUE(server_.running());
}

}  // namespace
}  // namespace aviary::test
