#pragma once
// Block-producer mode through the real binaries (docs/producers.md): a sim node under an
// `aviary supervise --bp-mode` sidecar, and reads of serve's producer lease. Shared by the
// sidecar's producer tests and the switch-producer tests.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "net/net.hpp"
#include "supervise_support.hpp"
#include "support/ports.hpp"
#include "support/server_process.hpp"

namespace aviary::test {

inline constexpr const char* kKey = "eosio.bp";

/// What the node says on its own port: true paused, false producing, nullopt no answer.
inline std::optional<bool> node_paused(const std::string& upstream) {
    auto response = net::fetch_sync(net::ClientRequest{.method = "GET",
                                                       .url = upstream + "/v1/producer/paused",
                                                       .timeout = std::chrono::seconds{2}});
    if (!response || response->status != 200) {
        return std::nullopt;
    }
    boost::system::error_code ec;
    auto value = boost::json::parse(response->body, ec);
    if (ec || !value.is_bool()) {
        return std::nullopt;
    }
    return value.as_bool();
}

/// A sim node under a bp-mode sidecar named `name`, holding `kKey` in serve at `serve_url`
/// (none when empty); `sim_args` go to the sim node (its --schedule).
struct BpNode {
    BpNode(const std::string& name,
           const std::string& serve_url,
           const std::string& config_yaml = {},
           const std::vector<std::string>& sim_args = {})
        : port(free_port()),
          upstream("http://127.0.0.1:" + std::to_string(port)),
          sidecar(args(name, serve_url, upstream, dir.path()),
                  with(sim_node(dir.path(), port), sim_args),
                  {},
                  config_yaml) {}

    static std::vector<std::string> with(std::vector<std::string> command,
                                         const std::vector<std::string>& more) {
        command.insert(command.end(), more.begin(), more.end());
        return command;
    }

    static std::vector<std::string> args(const std::string& name,
                                         const std::string& serve_url,
                                         const std::string& upstream,
                                         const std::string& data_dir) {
        std::vector<std::string> out{"--chain",   "sim",        "--name",      name,
                                     "--bp-mode", "--proxy",    "127.0.0.1:0", "--upstream",
                                     upstream,    "--data-dir", data_dir};
        if (!serve_url.empty()) {
            out.insert(out.end(), {"--serve", serve_url, "--producer-key", kKey});
        }
        return out;
    }

    std::optional<bool> paused() const { return node_paused(upstream); }

    /// The node's own start line says it started paused ("serving on port ... paused"), and
    /// its sidecar never had to pause it: it was passive from its first instant.
    ::testing::AssertionResult started_passive() const {
        static const std::regex line{
            R"(serving on port [0-9]+ version \S+ height [0-9]+( paused)?\n)"};
        std::smatch m;
        std::string out;
        // The relay may still be writing the line out.
        if (!wait_until([&] {
                out = sidecar.out();
                return std::regex_search(out, m, line);
            })) {
            return ::testing::AssertionFailure() << "no start line from the node: " << out;
        }
        if (!m[1].matched) {
            return ::testing::AssertionFailure() << "the node did not start paused: " << m[0];
        }
        const std::string err = sidecar.err();
        if (err.find("without the producer lease") != std::string::npos) {
            return ::testing::AssertionFailure() << "the sidecar had to pause it: " << err;
        }
        return ::testing::AssertionSuccess();
    }

    /// Started, ready, and seen paused by its sidecar (and by its own API).
    bool wait_passive_and_ready() {
        if (!sidecar.wait_started()) {
            return false;
        }
        return wait_until(
            [&] {
                auto s = sidecar.status();
                return s["readiness"] == "ready" && s["production"] == "paused" && paused() == true;
            },
            std::chrono::seconds{30});
    }

    TempDir dir;
    int port;
    std::string upstream;
    Sidecar sidecar;
};

inline std::int64_t fence_of(Sidecar& sidecar) {
    auto s = sidecar.status();
    const auto* fence = s.if_contains("fence");
    return fence != nullptr && fence->is_int64() ? fence->as_int64() : -1;
}

/// serve's row for kKey (GET /api/v1/producers), or an empty object when it has none.
inline boost::json::object lease_in(const ServerProcess& serve) {
    auto listed = serve.get("/api/v1/producers");
    EXPECT_TRUE(listed && listed->status == 200)
        << (listed ? listed->body : listed.error().message);
    if (!listed || listed->status != 200) {
        return {};
    }
    const auto value = boost::json::parse(listed->body);
    for (const auto& lease : value.at("producers").as_array()) {
        if (lease.at("key") == kKey) {
            return lease.as_object();
        }
    }
    return {};
}

// Rounds (docs/producers.md, "Rounds"): a sim node's schedule of alpha, kKey (the sidecars'
// account) and charlie, each making `round_blocks` blocks in turn.
inline const std::vector<std::string> kSchedule{"alpha", kKey, "charlie"};

inline std::vector<std::string> schedule_args(int round_blocks) {
    return {"--schedule", "alpha,eosio.bp,charlie", "--round-blocks", std::to_string(round_blocks)};
}

/// Who made block `height` on such a sim node: the producers take turns by height.
inline std::string scheduled_producer(std::int64_t height, int round_blocks) {
    const auto turn = std::max<std::int64_t>(height - 1, 0) / round_blocks;
    return kSchedule[static_cast<std::size_t>(turn % 3)];
}

/// The last height the sim node printed it paused at ("paused at height H"), or nullopt.
inline std::optional<std::int64_t> paused_at(const std::string& out) {
    static const std::regex line{R"(\npaused at height ([0-9]+)\n)"};
    std::optional<std::int64_t> last;
    for (std::sregex_iterator it{out.begin(), out.end(), line}, end; it != end; ++it) {
        last = std::stoll((*it)[1].str());
    }
    return last;
}

inline const std::string kResumed = "Success: safely_resume_production completed";
inline const std::string kPaused = "Success: safely_pause_production completed";
inline const std::string kResumeFailed = "ERROR: safely_resume_production failed: ";

}  // namespace aviary::test
