// Shipping a supervised node's lines to serve (docs/logs.md, "Shipping from sidecars") through
// the real binaries: `aviary supervise --serve` runs a real node process, `aviary serve` stores
// its lines; serve is stopped while the node writes and the sidecar is killed with -9 before
// serve is back, and every line arrives once.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "rpc_helpers.hpp"
#include "supervise_support.hpp"
#include "support/ports.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

/// A node that prints "line N" for N in [from, to], waiting for the file `gate` before it
/// prints the second half, then a warning on stderr, then idles.
std::vector<std::string> printing_node(int from, int to, const std::string& gate) {
    const int middle = from + (to - from) / 2;
    return {"/bin/sh", "-c",
            fmt::format("i={0}; while [ $i -le {1} ]; do echo \"line $i\"; i=$((i+1)); done; "
                        "while [ ! -e {3} ]; do sleep 0.05; done; "
                        "while [ $i -le {2} ]; do echo \"line $i\"; i=$((i+1)); done; "
                        "echo 'WARN printed {0} to {2}' >&2; exec sleep 600",
                        from, middle, to, shell_quote(gate))};
}

/// The messages serve holds for `node` from `source`, with how often each is there.
std::map<std::string, int> stored(ServerProcess& serve,
                                  const std::string& node,
                                  const std::string& source) {
    std::map<std::string, int> out;
    auto response =
        http(serve, "GET",
             fmt::format("/api/v1/logs?node={}&source={}&since=1h&limit=10000", node, source));
    if (!response || response->status != 200) {
        return out;
    }
    const auto body = json_of(response);
    if (!body.is_object()) {
        ADD_FAILURE() << "not JSON: " << response->body.substr(0, 300);
        return out;
    }
    for (const auto& r : body.at("records").as_array()) {
        ++out[std::string{r.at("message").as_string()}];
    }
    return out;
}

/// The value of the aviary_supervised_log_ship_lines_total series whose labels hold `label`.
double metric_value(const std::string& metrics, const std::string& label) {
    std::istringstream lines{metrics};
    for (std::string line; std::getline(lines, line);) {
        if (line.starts_with("aviary_supervised_log_ship_lines_total{") &&
            line.find(label) != std::string::npos) {
            return std::stod(line.substr(line.rfind(' ') + 1));
        }
    }
    return -1;
}

TEST(LogShipping, EveryLineArrivesOnceThroughAServeRestartAndASidecarKilledWithNine) {
    TempDir serve_dir;
    const std::string listen = fmt::format("127.0.0.1:{}", free_port());
    const std::string config = test_config() + "logs:\n  logs_timewindow: 1h\n";
    auto serve = std::make_unique<ServerProcess>(config, serve_dir.path(), listen);
    ASSERT_TRUE(serve->start()) << serve->log();
    TempDir work;
    const std::string state = work.path() + "/state";
    const std::string gate = work.path() + "/gate";
    const std::vector<std::string> args{"--chain", "none",   "--proxy", "",
                                        "--name",  "ship-a", "--serve", serve->url("")};
    {
        Sidecar sidecar{args, printing_node(1, 2000, gate), state};
        ASSERT_TRUE(sidecar.wait_started()) << sidecar.err();
        // The first half reaches serve.
        ASSERT_TRUE(wait_until([&] { return stored(*serve, "ship-a", "stdout").size() == 1000; },
                               std::chrono::seconds{30}))
            << stored(*serve, "ship-a", "stdout").size() << " lines\n"
            << sidecar.err();
        // serve goes away; the node writes the second half into the sidecar's buffer.
        ASSERT_EQ(serve->stop(), 0) << serve->log();
        std::ofstream{gate} << "go";
        // Every line the node printed has reached the shipper (the ring has the last ones), and
        // the shipper has written all it was given to its buffer: what a kill -9 keeps.
        ASSERT_TRUE(wait_until([&] {
            const auto ring = sidecar.call("GET", "/v1/logs?tail=10").body;
            return ring.find("line 2000") != std::string::npos &&
                   ring.find("printed 1 to 2000") != std::string::npos;
        })) << sidecar.err();
        ASSERT_TRUE(wait_until([&] {
            const auto metrics = sidecar.call("GET", "/metrics").body;
            const auto offered = metric_value(metrics, "stage=\"offered\"");
            return offered > 0 && offered == metric_value(metrics, "stage=\"buffered\"");
        })) << sidecar.call("GET", "/metrics").body;
        // Killed before serve is back: the lines wait on disk.
        sidecar.kill_hard();
    }
    ASSERT_TRUE(fs::exists(state + "/ship/stream"));
    ASSERT_TRUE(serve->start()) << serve->log();
    // The sidecar comes back on the same state dir (its node prints new lines).
    std::ofstream{gate + "2"} << "go";
    Sidecar again{args, printing_node(3001, 3100, gate + "2"), state};
    ASSERT_TRUE(again.wait_started()) << again.err();
    ASSERT_TRUE(wait_until([&] { return stored(*serve, "ship-a", "stdout").size() == 2100; },
                           std::chrono::seconds{60}))
        << stored(*serve, "ship-a", "stdout").size() << " lines\n"
        << again.err();
    const auto lines = stored(*serve, "ship-a", "stdout");
    for (int i : {1, 1000, 1001, 2000, 3001, 3100}) {
        EXPECT_EQ(lines.count("line " + std::to_string(i)), 1U) << i;
    }
    for (const auto& [message, count] : lines) {
        EXPECT_EQ(count, 1) << message << " was stored " << count << " times";
    }
    // stderr keeps its source and the level its text says; the sidecar's own lines come too.
    ASSERT_TRUE(wait_until([&] { return stored(*serve, "ship-a", "stderr").size() == 2; }))
        << again.err();
    auto warnings =
        json_of(http(*serve, "GET", "/api/v1/logs?node=ship-a&source=stderr&since=1h&limit=10"));
    EXPECT_EQ(warnings.at("records").at(0).at("level"), 4) << warnings;
    EXPECT_EQ(warnings.at("records").at(0).at("sender"), "sh") << "the command's name";
    EXPECT_FALSE(stored(*serve, "ship-a", "sidecar").empty())
        << "the sidecar's own lines are shipped beside the node's";
}

TEST(LogShipping, WithoutServeOrWithShippingOffNothingIsBuffered) {
    TempDir work;
    ServerProcess serve{test_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    Sidecar off{{"--chain", "none", "--proxy", "", "--name", "quiet", "--serve", serve.url(""),
                 "--no-ship-logs"},
                {"/bin/sh", "-c", "echo hello; exec sleep 600"},
                work.path() + "/state"};
    ASSERT_TRUE(off.wait_started()) << off.err();
    ASSERT_TRUE(wait_until([&] {
        return off.call("GET", "/v1/logs?tail=5").body.find("hello") != std::string::npos;
    }));
    EXPECT_FALSE(fs::exists(work.path() + "/state/ship"));
    EXPECT_TRUE(stored(serve, "quiet", "stdout").empty());
}

}  // namespace
}  // namespace aviary::test
