#include "metrics/metrics.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "metrics/exposition.hpp"

namespace aviary::metrics {
namespace {

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

TEST(Exposition, FormatsIntegersWithoutExponent) {
    EXPECT_EQ(exposition::format_value(1), "1");
    EXPECT_EQ(exposition::format_value(0), "0");
    EXPECT_EQ(exposition::format_value(-3), "-3");
    EXPECT_EQ(exposition::format_value(1'000'000), "1000000");
    EXPECT_EQ(exposition::format_value(1e15), "1000000000000000");
    EXPECT_EQ(exposition::format_value(0.25), "0.25");
    EXPECT_EQ(exposition::format_value(0.005), "0.005");
    EXPECT_EQ(exposition::format_value(std::numeric_limits<double>::infinity()), "+Inf");
    EXPECT_EQ(exposition::format_value(-std::numeric_limits<double>::infinity()), "-Inf");
    EXPECT_EQ(exposition::format_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(Exposition, EscapesHelpAndLabelValues) {
    EXPECT_EQ(exposition::escape_help("a\\b\nc\"d"), "a\\\\b\\nc\"d");
    EXPECT_EQ(exposition::escape_label_value("a\\b\nc\"d"), "a\\\\b\\nc\\\"d");
}

TEST(Registry, RendersCounter) {
    Registry registry;
    auto& jobs = registry.counter("aviary_jobs_total", "Jobs finished.", {"state"});
    jobs.with({"succeeded"}).inc();
    jobs.with({"succeeded"}).inc(2);
    jobs.with({"failed"}).inc(0.5);
    EXPECT_EQ(registry.render(),
              "# HELP aviary_jobs_total Jobs finished.\n"
              "# TYPE aviary_jobs_total counter\n"
              "aviary_jobs_total{state=\"failed\"} 0.5\n"
              "aviary_jobs_total{state=\"succeeded\"} 3\n");
}

TEST(Registry, LabelValuesGivenAsViewsOrStringsReachTheSameChild) {
    Registry registry;
    auto& family = registry.counter("t_calls_total", "Calls", {"method", "outcome"});
    const std::string method = "lease";
    family.with({std::string_view{method}, "ok"}).inc();
    family.with(std::vector<std::string>{"lease", "ok"}).inc();
    family.with({"lease", "refused"}).inc(2);
    EXPECT_EQ(&family.with({"lease", "ok"}), &family.with(std::vector<std::string>{"lease", "ok"}));
    std::vector<std::string> seen;
    family.each([&](const std::vector<std::string>& labels, const Counter& counter) {
        seen.push_back(labels[0] + "/" + labels[1] + "=" +
                       std::to_string(static_cast<int>(counter.value())));
    });
    EXPECT_EQ(seen, (std::vector<std::string>{"lease/ok=2", "lease/refused=2"}));
}

TEST(Registry, RendersGauge) {
    Registry registry;
    auto& nodes = registry.gauge("aviary_nodes", "Nodes by state.", {"state", "chain"});
    nodes.with({"free", "lotus"}).set(3);
    nodes.with({"leased", "lotus"}).inc(2);
    nodes.with({"leased", "lotus"}).dec();
    EXPECT_EQ(registry.render(),
              "# HELP aviary_nodes Nodes by state.\n"
              "# TYPE aviary_nodes gauge\n"
              "aviary_nodes{state=\"free\",chain=\"lotus\"} 3\n"
              "aviary_nodes{state=\"leased\",chain=\"lotus\"} 1\n");
}

TEST(Registry, UnlabelledMetricShowsZeroBeforeFirstUse) {
    Registry registry;
    registry.gauge("aviary_up", "Whether serve is up.");
    EXPECT_TRUE(contains(registry.render(), "\naviary_up 0\n"));
}

TEST(Registry, RendersHistogramWithCumulativeBuckets) {
    Registry registry;
    auto& latency = registry.histogram("aviary_request_duration_seconds", "Request latency.",
                                       {"route"}, {0.1, 0.5, 1});
    auto& h = latency.with({"/"});
    h.observe(0.05);
    h.observe(0.1);  // le is inclusive
    h.observe(0.3);
    h.observe(2);
    EXPECT_EQ(registry.render(),
              "# HELP aviary_request_duration_seconds Request latency.\n"
              "# TYPE aviary_request_duration_seconds histogram\n"
              "aviary_request_duration_seconds_bucket{route=\"/\",le=\"0.1\"} 2\n"
              "aviary_request_duration_seconds_bucket{route=\"/\",le=\"0.5\"} 3\n"
              "aviary_request_duration_seconds_bucket{route=\"/\",le=\"1\"} 3\n"
              "aviary_request_duration_seconds_bucket{route=\"/\",le=\"+Inf\"} 4\n"
              "aviary_request_duration_seconds_sum{route=\"/\"} 2.45\n"
              "aviary_request_duration_seconds_count{route=\"/\"} 4\n");
}

TEST(Histogram, SnapshotEndsWithInfAndCountsEverything) {
    Histogram h{{1, 2}};
    for (double v : {0.5, 1.5, 1.5, 3.0}) {
        h.observe(v);
    }
    auto snap = h.snapshot();
    ASSERT_EQ(snap.bounds.size(), 3u);
    EXPECT_TRUE(std::isinf(snap.bounds.back()));
    EXPECT_EQ(snap.cumulative, (std::vector<std::uint64_t>{1, 3, 4}));
    EXPECT_EQ(snap.count, 4u);
    EXPECT_DOUBLE_EQ(snap.sum, 6.5);
}

TEST(Registry, EscapesLabelValuesAndHelp) {
    Registry registry;
    registry.counter("aviary_odd_total", "Help with \\ and\nnewline.", {"v"})
        .with({"back\\slash \"quoted\"\nnext"})
        .inc();
    auto text = registry.render();
    EXPECT_TRUE(contains(text, "# HELP aviary_odd_total Help with \\\\ and\\nnewline.\n"));
    EXPECT_TRUE(contains(text, "aviary_odd_total{v=\"back\\\\slash \\\"quoted\\\"\\nnext\"} 1\n"));
}

TEST(Registry, SortsFamiliesByName) {
    Registry registry;
    registry.gauge("b_metric", "B.");
    registry.counter("a_metric_total", "A.");
    auto text = registry.render();
    auto a = text.find("# HELP a_metric_total");
    auto b = text.find("# HELP b_metric");
    ASSERT_NE(a, std::string::npos) << text;
    ASSERT_NE(b, std::string::npos) << text;
    EXPECT_LT(a, b);
}

TEST(Registry, SameNameReturnsSameFamily) {
    Registry registry;
    auto& first = registry.counter("aviary_x_total", "X.", {"k"});
    auto& second = registry.counter("aviary_x_total", "X.", {"k"});
    EXPECT_EQ(&first, &second);
    EXPECT_EQ(&first.with({"a"}), &second.with({"a"}));
}

TEST(RegistryDeathTest, SameNameWithAnotherTypeAborts) {
    Registry registry;
    registry.counter("aviary_x_total", "X.");
    EXPECT_DEATH(registry.gauge("aviary_x_total", "X."), "one type");
}

TEST(Registry, HooksRunAtRenderInOrder) {
    Registry registry;
    auto& nodes = registry.gauge("aviary_nodes", "Nodes.");
    std::string order;
    int scrapes = 0;
    registry.on_scrape([&] {
        order += "a";
        nodes.get().set(++scrapes);
    });
    registry.on_scrape([&] { order += "b"; });
    EXPECT_EQ(scrapes, 0);
    EXPECT_TRUE(contains(registry.render(), "\naviary_nodes 1\n"));
    EXPECT_TRUE(contains(registry.render(), "\naviary_nodes 2\n"));
    EXPECT_EQ(order, "abab");
}

TEST(Registry, HookMayRegisterFamilies) {
    Registry registry;
    registry.on_scrape(
        [&] { registry.gauge("aviary_late", "Registered by a hook.").get().set(7); });
    EXPECT_TRUE(contains(registry.render(), "\naviary_late 7\n"));
}

TEST(Counter, ConcurrentIncrementsAreNotLost) {
    Counter counter;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 10'000; ++i) {
                counter.inc();
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(counter.value(), 40'000);
}

// Runs `promtool check metrics` with `text` on stdin; returns its exit status and output.
std::pair<int, std::string> promtool_check(const std::string& text) {
    auto dir = std::filesystem::temp_directory_path();
    auto output = dir / ("aviary-promtool-" + std::to_string(::getpid()) + ".txt");
    std::string command = "promtool check metrics > '" + output.string() + "' 2>&1";
    FILE* pipe = ::popen(command.c_str(), "w");
    if (pipe == nullptr) {
        return {-1, "popen failed"};
    }
    std::fwrite(text.data(), 1, text.size(), pipe);
    int status = ::pclose(pipe);
    std::ifstream in{output};
    std::string report{std::istreambuf_iterator<char>{in}, {}};
    std::filesystem::remove(output);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, report};
}

TEST(Registry, RenderPassesPromtoolCheck) {
    if (std::system("command -v promtool > /dev/null 2>&1") != 0) {
        GTEST_SKIP() << "promtool is not on PATH (Debian package prometheus)";
    }
    Registry registry;
    registry.counter("aviary_jobs_total", "Jobs finished, by state.", {"state"})
        .with({"succeeded"})
        .inc(3);
    registry.counter("aviary_restarts_total", "Restarts.").get().inc();
    registry.gauge("aviary_nodes", "Nodes by state.\nSecond line \\ too.", {"state"})
        .with({"we\"ird\\\nvalue"})
        .set(2.5);
    registry.gauge("aviary_up", "Whether serve is up.").get().set(1);
    auto& latency = registry.histogram("aviary_request_duration_seconds",
                                       "Request latency by route.", {"route", "method"});
    latency.with({"/", "POST"}).observe(0.003);
    latency.with({"/", "POST"}).observe(42);
    latency.with({"/healthz", "GET"}).observe(0.0001);
    registry.histogram("aviary_probe_duration_seconds", "Probe duration.").get().observe(0.7);
    auto text = registry.render();
    auto [status, report] = promtool_check(text);
    EXPECT_EQ(status, 0) << report << "\n--- rendered ---\n" << text;
    EXPECT_EQ(report, "") << "\n--- rendered ---\n" << text;
}

}  // namespace
}  // namespace aviary::metrics
