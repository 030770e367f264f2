// Supervised nodes in serve's pool and the producer hand-off (docs/producers.md), through the
// real binaries: `aviary serve`, `aviary supervise --bp-mode --serve` sidecars that register
// themselves, aviary's sim node, and serve's jobs. Every check is made over real HTTP: on
// serve's REST API, on the sidecars' control APIs and on the nodes' own ports.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "bp_support.hpp"
#include "net/net.hpp"
#include "rpc_helpers.hpp"
#include "supervise_support.hpp"
#include "support/ports.hpp"
#include "support/server_process.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

/// serve's config: the test fleet, and sidecar commands that give up after 3 s (the lost-contact
/// test waits for them).
std::string serve_config() {
    return test_config() + R"(drivers:
  sidecar: {command_timeout: 3s, timeout: 2s}
)";
}

/// Waits until serve's pool lists `name` as a sidecar node; its JSON, or null.
json::value registered(const ServerProcess& serve, const std::string& name) {
    json::value node;
    bool found = wait_until(
        [&] {
            auto response = http(serve, "GET", "/api/v1/nodes/" + name);
            if (!response || response->status != 200) {
                return false;
            }
            node = json_of(response);
            return node.is_object() && node.as_object().contains("control_url");
        },
        30s);
    return found ? node : json::value(nullptr);
}

/// Submits `action` on `node` with `params` and waits for its end: the job, or null.
json::value run_job(const ServerProcess& serve,
                    const std::string& node,
                    const std::string& action,
                    json::object params = {}) {
    auto response = http(serve, "POST", "/api/v1/nodes/" + node + "/actions/" + action,
                         json::serialize(json::object{{"params", std::move(params)}}));
    auto body = json_of(response);
    if (!body.is_object() || !body.as_object().contains("job")) {
        ADD_FAILURE() << action << " on " << node << ": "
                      << (response ? response->body : response.error().message);
        return nullptr;
    }
    auto job = wait_for_job(serve, str(body.at("job").at("id")), 90s);
    EXPECT_TRUE(job.is_object()) << action << " on " << node << " did not end";
    return job;
}

/// The job's output lines, joined.
std::string output_of(const ServerProcess& serve, const json::value& job) {
    auto response = http(serve, "GET", "/api/v1/jobs/" + str(job.at("id")) + "/output");
    auto body = json_of(response);
    std::string out;
    if (body.is_object() && body.as_object().contains("lines")) {
        for (const auto& line : body.at("lines").as_array()) {
            out += str(line.at("text")) + "\n";
        }
    }
    return out;
}

/// The switch-producer action's params. Sim nodes that follow do not sync with each other (each
/// advances its own head from its own start), so their heights differ by however far apart they
/// started: the lag check is given room here.
json::object switch_params(const std::string& from, bool execute) {
    return json::object{
        {"from", from}, {"execute", execute ? "true" : "false"}, {"max_lag", "100000"}};
}

TEST(SidecarNodes, ASidecarRegistersItselfAndServeRunsItsCommandsAsJobs) {
    ServerProcess serve{serve_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    BpNode a{"bp-a", serve.url("")};
    ASSERT_TRUE(a.wait_passive_and_ready()) << a.sidecar.err();

    auto node = registered(serve, "bp-a");
    ASSERT_TRUE(node.is_object()) << a.sidecar.err();
    EXPECT_EQ(str(node.at("driver")), "sidecar");
    EXPECT_EQ(str(node.at("control_url")), "http://" + a.sidecar.control());
    EXPECT_EQ(str(node.at("labels").at("chain")), "sim");

    // status through the driver: the sidecar's readiness and height.
    auto status = run_job(serve, "bp-a", "status");
    ASSERT_EQ(str(status.at("state")), "succeeded") << json::serialize(status);
    EXPECT_EQ(status.at("result").at("readiness"), "ready") << json::serialize(status);
    EXPECT_EQ(status.at("result").at("production"), "paused") << json::serialize(status);
    EXPECT_TRUE(status.at("result").at("height").is_int64()) << json::serialize(status);

    // A command through a job: resume-production claims the lease with fence 1.
    auto resumed = run_job(serve, "bp-a", "resume-production");
    ASSERT_EQ(str(resumed.at("state")), "succeeded") << json::serialize(resumed);
    EXPECT_NE(output_of(serve, resumed).find("Success: safely_resume_production completed"),
              std::string::npos)
        << output_of(serve, resumed);
    EXPECT_EQ(a.paused(), false);
    EXPECT_EQ(lease_in(serve)["holder"], "bp-a");

    // reload is refused while the node produces, saying how to hand over first...
    const auto starts = a.sidecar.status()["starts"].as_int64();
    auto producing = run_job(serve, "bp-a", "reload");
    ASSERT_EQ(str(producing.at("state")), "failed") << json::serialize(producing);
    EXPECT_NE(str(producing.at("error"))
                  .find("node bp-a is producing (fence 1): hand production "
                        "over first"),
              std::string::npos)
        << json::serialize(producing);
    EXPECT_EQ(a.sidecar.status()["starts"].as_int64(), starts);
    EXPECT_EQ(a.paused(), false) << "still producing";
    // ...and restarts it once production is paused (one more start; it comes back passive).
    auto paused = run_job(serve, "bp-a", "pause-production");
    ASSERT_EQ(str(paused.at("state")), "succeeded") << json::serialize(paused);
    EXPECT_TRUE(lease_in(serve)["holder"] == "") << "the lease was given back";
    auto reloaded = run_job(serve, "bp-a", "reload");
    ASSERT_EQ(str(reloaded.at("state")), "succeeded") << json::serialize(reloaded);
    EXPECT_GT(a.sidecar.status()["starts"].as_int64(), starts);
    EXPECT_TRUE(a.wait_passive_and_ready()) << a.sidecar.err();

    // A sidecar's command on a node of another driver is refused, naming both.
    auto refused = run_job(serve, "lotus-0", "backup");
    ASSERT_EQ(str(refused.at("state")), "failed");
    EXPECT_NE(str(refused.at("error")).find("uses driver sim, which has no backup"),
              std::string::npos)
        << json::serialize(refused);
    // And a deploying op on a sidecar node is refused too.
    auto upgrade = run_job(serve, "bp-a", "upgrade", json::object{{"tag", "v2"}});
    ASSERT_EQ(str(upgrade.at("state")), "failed");
    EXPECT_NE(str(upgrade.at("error")).find("which has no upgrade"), std::string::npos)
        << json::serialize(upgrade);
}

TEST(SidecarNodes, ANodeWithoutAValidControlUrlIsRefusedWithTheReason) {
    ServerProcess serve{serve_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    const std::pair<const char*, const char*> cases[] = {
        {R"({"driver": "sidecar"})", "driver sidecar needs a control_url"},
        {R"({"driver": "sidecar", "control_url": "ftp://10.0.0.1:8080"})",
         "must start with http:// or https://"},
        {R"({"driver": "sidecar", "control_url": "http://u:p@10.0.0.1:8080"})",
         "must not carry credentials"},
        {R"({"driver": "sidecar", "control_url": "http://10.0.0.1:8080/v1"})",
         "no path, query or fragment"},
        {R"({"driver": "sidecar", "control_url": "http://10.0.0.1:99999"})", "bad host or port"},
        {R"({"driver": "sim", "control_url": "http://10.0.0.1:8080"})",
         "control_url is for driver sidecar, not sim"},
        {R"({"driver": "sidecar", "control_url": 7})", "control_url"},
    };
    for (const auto& [body, message] : cases) {
        auto response = http(serve, "PUT", "/api/v1/nodes/bp-x", body);
        ASSERT_TRUE(response) << response.error().message;
        EXPECT_EQ(response->status, 400) << body << ": " << response->body;
        EXPECT_NE(response->body.find(message), std::string::npos)
            << body << ": " << response->body;
    }
    auto listed = http(serve, "GET", "/api/v1/nodes/bp-x");
    ASSERT_TRUE(listed);
    EXPECT_EQ(listed->status, 404) << "nothing was added: " << listed->body;
    auto health = http(serve, "GET", "/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200);
}

TEST(SwitchProducer, ADryRunPrintsThePlanChecksAndChangesNothing) {
    ServerProcess serve{serve_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    BpNode a{"bp-a", serve.url("")};
    BpNode b{"bp-b", serve.url("")};
    ASSERT_TRUE(a.wait_passive_and_ready()) << a.sidecar.err();
    ASSERT_TRUE(b.wait_passive_and_ready()) << b.sidecar.err();
    ASSERT_TRUE(registered(serve, "bp-a").is_object());
    ASSERT_TRUE(registered(serve, "bp-b").is_object());
    ASSERT_EQ(str(run_job(serve, "bp-a", "resume-production").at("state")), "succeeded");

    auto dry = run_job(serve, "bp-b", "switch-producer", switch_params("bp-a", false));
    ASSERT_EQ(str(dry.at("state")), "succeeded") << json::serialize(dry);
    const std::string out = output_of(serve, dry);
    EXPECT_NE(out.find("plan: hand block production from bp-a to bp-b (dry run"), std::string::npos)
        << out;
    EXPECT_NE(out.find("check: bp-a produces at height"), std::string::npos) << out;
    EXPECT_NE(out.find("dry run: every check passed and nothing was changed"), std::string::npos)
        << out;
    EXPECT_EQ(out.find("demote:"), std::string::npos) << out;
    EXPECT_EQ(dry.at("result").at("dry_run"), true);

    EXPECT_EQ(a.paused(), false) << "A still produces";
    EXPECT_EQ(b.paused(), true) << "B still passive";
    auto lease = lease_in(serve);
    EXPECT_EQ(lease["holder"], "bp-a");
    EXPECT_EQ(lease["fence"], 1);

    // The checks refuse what cannot be handed over, and still change nothing.
    auto backwards = run_job(serve, "bp-a", "switch-producer", switch_params("bp-b", false));
    ASSERT_EQ(str(backwards.at("state")), "failed");
    EXPECT_NE(str(backwards.at("error")).find("bp-b is not the producer"), std::string::npos)
        << json::serialize(backwards);
    auto self = run_job(serve, "bp-a", "switch-producer", switch_params("bp-a", true));
    ASSERT_EQ(str(self.at("state")), "failed");
    EXPECT_NE(str(self.at("error")).find("from and to are both bp-a"), std::string::npos)
        << json::serialize(self);
    auto sim = run_job(serve, "bp-b", "switch-producer", switch_params("lotus-0", true));
    ASSERT_EQ(str(sim.at("state")), "failed");
    EXPECT_NE(str(sim.at("error")).find("lotus-0 uses driver sim"), std::string::npos)
        << json::serialize(sim);
    auto missing = run_job(serve, "bp-b", "switch-producer", switch_params("bp-zz", true));
    ASSERT_EQ(str(missing.at("state")), "failed");
    EXPECT_NE(str(missing.at("error")).find("bp-zz"), std::string::npos)
        << json::serialize(missing);
    EXPECT_EQ(a.paused(), false);
    EXPECT_EQ(b.paused(), true);
    EXPECT_EQ(lease_in(serve)["fence"], 1);
}

TEST(SwitchProducer, WithAScheduleTheDemotionWaitsForTheSourcesRoundToEnd) {
    ServerProcess serve{serve_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    // Rounds of 2 s, read every 50 ms; C's sim node schedules eosio alone (not the account).
    constexpr int kRoundBlocks = 40;
    const std::string fast = "synced:\n  interval: 50ms\n";
    BpNode a{"bp-a", serve.url(""), fast, schedule_args(kRoundBlocks)};
    BpNode b{"bp-b", serve.url(""), fast, schedule_args(kRoundBlocks)};
    BpNode c{"bp-c", serve.url(""), fast};
    for (auto* node : {&a, &b, &c}) {
        ASSERT_TRUE(node->wait_passive_and_ready()) << node->sidecar.err();
    }
    for (const char* name : {"bp-a", "bp-b", "bp-c"}) {
        ASSERT_TRUE(registered(serve, name).is_object()) << name;
    }
    ASSERT_EQ(str(run_job(serve, "bp-a", "resume-production").at("state")), "succeeded");

    // A node whose account the chain does not schedule is no successor.
    auto unscheduled = run_job(serve, "bp-c", "switch-producer", switch_params("bp-a", false));
    ASSERT_EQ(str(unscheduled.at("state")), "failed");
    EXPECT_NE(str(unscheduled.at("error"))
                  .find("bp-a's account is in the schedule and bp-c's is not: bp-c would "
                        "produce no blocks"),
              std::string::npos)
        << json::serialize(unscheduled);
    EXPECT_EQ(a.paused(), false);

    // Hand over while A is producing its round: the pause lands after the round.
    ASSERT_TRUE(wait_until([&] { return a.sidecar.status()["round"] == "producing"; }, 30s))
        << a.sidecar.err();
    auto job = run_job(serve, "bp-b", "switch-producer", switch_params("bp-a", true));
    ASSERT_EQ(str(job.at("state")), "succeeded") << json::serialize(job);
    const std::string out = output_of(serve, job);
    EXPECT_NE(out.find("check: bp-a is producing its round (head block by eosio.bp): the "
                       "demotion waits for the round's end"),
              std::string::npos)
        << out;
    std::optional<std::int64_t> height;
    ASSERT_TRUE(wait_until([&] { return (height = paused_at(a.sidecar.out())).has_value(); }))
        << a.sidecar.out();
    EXPECT_NE(scheduled_producer(*height, kRoundBlocks), kKey)
        << "A paused at height " << *height << ", inside its own round";
    EXPECT_EQ(a.paused(), true);
    EXPECT_EQ(b.paused(), false);
    EXPECT_EQ(lease_in(serve)["holder"], "bp-b");
}

TEST(SwitchProducer, HandsOverRoundTheThreeNodesAndAtNoInstantDoTwoProduce) {
    ServerProcess serve{serve_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    const std::array<const char*, 3> names{"bp-a", "bp-b", "bp-c"};
    std::vector<std::unique_ptr<BpNode>> nodes;
    for (const auto* name : names) {
        nodes.push_back(std::make_unique<BpNode>(name, serve.url("")));
    }
    std::vector<std::string> upstreams;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        ASSERT_TRUE(nodes[i]->wait_passive_and_ready()) << nodes[i]->sidecar.err();
        ASSERT_TRUE(registered(serve, names[i]).is_object());
        upstreams.push_back(nodes[i]->upstream);
    }
    ASSERT_EQ(str(run_job(serve, "bp-a", "resume-production").at("state")), "succeeded");

    // The sampler reads the nodes' own paused endpoints as A, B, C, A, B: a node read producing
    // twice around another node's producing read produced at that instant (a node goes from
    // producing to paused and back only across two hand-overs, which take far longer than one
    // pass). Bounded passes and a deadline.
    constexpr std::array<int, 5> kOrder{0, 1, 2, 0, 1};
    constexpr std::size_t kMaxPasses = 200'000;
    std::vector<std::array<std::optional<bool>, 5>> passes;
    passes.reserve(kMaxPasses);
    std::jthread sampler{[&](const std::stop_token& stop) {
        const auto deadline = std::chrono::steady_clock::now() + 150s;
        while (!stop.stop_requested() && passes.size() < kMaxPasses &&
               std::chrono::steady_clock::now() < deadline) {
            std::array<std::optional<bool>, 5> pass;
            for (std::size_t i = 0; i < kOrder.size(); ++i) {
                pass[i] = node_paused(upstreams[kOrder[i]]);
            }
            passes.push_back(pass);
            std::this_thread::sleep_for(1ms);
        }
    }};

    // A -> B -> C -> A, twice.
    std::vector<std::int64_t> fences;
    int from = 0;
    for (int round = 0; round < 6; ++round) {
        const int to = (from + 1) % 3;
        auto job = run_job(serve, names[to], "switch-producer", switch_params(names[from], true));
        ASSERT_TRUE(job.is_object());
        ASSERT_EQ(str(job.at("state")), "succeeded")
            << "round " << round << ": " << json::serialize(job) << "\n"
            << output_of(serve, job);
        fences.push_back(job.at("result").at("fence").as_int64());
        EXPECT_EQ(nodes[to]->paused(), false) << names[to] << " produces after round " << round;
        EXPECT_EQ(nodes[from]->paused(), true)
            << names[from] << " is passive after round " << round;
        auto lease = lease_in(serve);
        EXPECT_EQ(lease["holder"], names[to]) << json::serialize(lease);
        from = to;
    }
    sampler.request_stop();
    sampler.join();

    EXPECT_EQ(fences, (std::vector<std::int64_t>{2, 3, 4, 5, 6, 7}))
        << "the fence grows by one at each hand-over";
    // Each pass: pairs (X at slots i and k, Y at slot j between them).
    constexpr std::array<std::array<std::size_t, 3>, 3> kSandwiches{
        {{0, 1, 3}, {1, 2, 4}, {0, 2, 3}}};
    std::size_t overlaps = 0;
    std::size_t unanswered = 0;
    std::array<std::size_t, 3> producing{};
    for (const auto& pass : passes) {
        for (std::size_t i = 0; i < pass.size(); ++i) {
            if (!pass[i]) {
                ++unanswered;
            } else if (!*pass[i]) {
                ++producing[kOrder[i]];
            }
        }
        for (const auto& [x1, y, x2] : kSandwiches) {
            if (pass[x1] == false && pass[y] == false && pass[x2] == false) {
                ++overlaps;
            }
        }
    }
    EXPECT_EQ(overlaps, 0U) << "samples saw two nodes producing at once";
    EXPECT_EQ(unanswered, 0U) << "some reads of the nodes' paused endpoints failed";
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_GT(producing[i], 0U) << names[i] << " was never seen producing";
    }
    EXPECT_GT(passes.size(), 20U) << "the sampler barely ran";
    RecordProperty("samples", static_cast<int>(passes.size()));
}

/// A TCP forwarder between serve and one sidecar's control API that loses contact on purpose:
/// requests are passed on (each on its own connection, `Connection: close`) until one whose
/// request line starts with `cut_at`; from then on every request is held unanswered, as by a
/// network that went away. Everything ends when the object does.
class CuttingForwarder {
public:
    CuttingForwarder(std::string upstream, std::string cut_at)
        : upstream_(std::move(upstream)), cut_at_(std::move(cut_at)) {
        listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        int one = 1;
        ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::listen(listener_, 16) != 0) {
            ADD_FAILURE() << "forwarder: cannot listen";
            return;
        }
        socklen_t len = sizeof addr;
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        thread_ = std::jthread{[this](const std::stop_token& stop) { serve(stop); }};
    }
    ~CuttingForwarder() {
        thread_.request_stop();
        if (thread_.joinable()) {
            thread_.join();
        }
        for (int fd : held_) {
            ::close(fd);
        }
        ::close(listener_);
    }
    CuttingForwarder(const CuttingForwarder&) = delete;
    CuttingForwarder& operator=(const CuttingForwarder&) = delete;

    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
    bool cut() const { return cut_.load(); }
    int held() const { return held_count_.load(); }

private:
    void serve(const std::stop_token& stop) {
        while (!stop.stop_requested()) {
            pollfd p{.fd = listener_, .events = POLLIN, .revents = 0};
            if (::poll(&p, 1, 50) <= 0) {
                continue;
            }
            int client = ::accept(listener_, nullptr, nullptr);
            if (client < 0) {
                continue;
            }
            std::string request = read_head(client);
            if (!cut_ && request.starts_with(cut_at_)) {
                cut_ = true;
            }
            if (cut_) {
                held_.push_back(client);  // never answered, closed at the end
                held_count_.fetch_add(1);
                continue;
            }
            forward(client, request);
            ::close(client);
        }
    }

    /// The request head (the control API's requests here carry no body).
    static std::string read_head(int fd) {
        std::string head;
        char buffer[4096];
        while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536) {
            pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
            if (::poll(&p, 1, 5000) <= 0) {
                break;
            }
            auto n = ::read(fd, buffer, sizeof buffer);
            if (n <= 0) {
                break;
            }
            head.append(buffer, static_cast<std::size_t>(n));
        }
        return head;
    }

    void forward(int client, std::string request) {
        // One request per connection: the upstream closes after answering.
        auto end = request.find("\r\n\r\n");
        if (end == std::string::npos) {
            return;
        }
        std::string head = request.substr(0, end);
        std::string kept;
        std::size_t at = 0;
        while (at <= head.size()) {
            auto eol = head.find("\r\n", at);
            std::string line =
                head.substr(at, eol == std::string::npos ? std::string::npos : eol - at);
            std::string lower = line;
            for (auto& c : lower) {
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            }
            if (!lower.starts_with("connection:")) {
                kept += line + "\r\n";
            }
            if (eol == std::string::npos) {
                break;
            }
            at = eol + 2;
        }
        kept += "Connection: close\r\n\r\n";
        int up = connect_to(upstream_);
        if (up < 0) {
            return;
        }
        (void)!::write(up, kept.data(), kept.size());
        char buffer[8192];
        while (true) {
            pollfd p{.fd = up, .events = POLLIN, .revents = 0};
            if (::poll(&p, 1, 60000) <= 0) {
                break;
            }
            auto n = ::read(up, buffer, sizeof buffer);
            if (n <= 0) {
                break;
            }
            (void)!::write(client, buffer, static_cast<std::size_t>(n));
        }
        ::close(up);
    }

    std::string upstream_;
    std::string cut_at_;
    int listener_ = -1;
    int port_ = 0;
    std::atomic<bool> cut_{false};
    std::atomic<int> held_count_{0};
    std::vector<int> held_;  // the forwarder's thread only, then the destructor
    std::jthread thread_;
};

TEST(SwitchProducer, LosingTheTargetMidHandOverLeavesBothPassiveAndTheLeaseParked) {
    ServerProcess serve{serve_config()};
    ASSERT_TRUE(serve.start()) << serve.log();
    BpNode a{"bp-a", serve.url("")};
    BpNode b{"bp-b", serve.url("")};
    ASSERT_TRUE(a.wait_passive_and_ready()) << a.sidecar.err();
    ASSERT_TRUE(b.wait_passive_and_ready()) << b.sidecar.err();
    ASSERT_TRUE(registered(serve, "bp-a").is_object());
    ASSERT_TRUE(registered(serve, "bp-b").is_object());
    ASSERT_EQ(str(run_job(serve, "bp-a", "resume-production").at("state")), "succeeded");

    // serve reaches B through a forwarder that goes silent at the promotion (B's sidecar itself
    // registers again only every few minutes, so this entry holds for the test).
    CuttingForwarder forwarder{b.sidecar.control(), "POST /v1/safely_resume_production"};
    auto put = http(serve, "PUT", "/api/v1/nodes/bp-b",
                    json::serialize(json::object{{"driver", "sidecar"},
                                                 {"control_url", forwarder.url()},
                                                 {"labels", json::object{{"chain", "sim"}}}}));
    ASSERT_TRUE(put && put->status == 200) << (put ? put->body : put.error().message);

    auto job = run_job(serve, "bp-b", "switch-producer", switch_params("bp-a", true));
    ASSERT_TRUE(job.is_object());
    ASSERT_EQ(str(job.at("state")), "failed") << json::serialize(job);
    EXPECT_TRUE(forwarder.cut()) << "the promotion never reached the forwarder";
    EXPECT_GE(forwarder.held(), 1);
    const std::string error = str(job.at("error"));
    EXPECT_NE(error.find("promoting bp-b failed"), std::string::npos) << error;
    EXPECT_NE(error.find("Could not confirm both passive"), std::string::npos) << error;
    EXPECT_NE(error.find("is parked with switch-producer:" + str(job.at("id"))), std::string::npos)
        << error;
    const std::string out = output_of(serve, job);
    EXPECT_NE(out.find("demote: bp-a"), std::string::npos) << out;
    EXPECT_NE(out.find("leaving both passive"), std::string::npos) << out;

    // Both passive on their own ports; nothing was resumed to undo the failure.
    EXPECT_EQ(a.paused(), true) << "A was demoted and stays passive";
    EXPECT_EQ(b.paused(), true) << "B never got the promotion";
    auto lease = lease_in(serve);
    EXPECT_EQ(str(lease["holder"]), "switch-producer:" + str(job.at("id")))
        << json::serialize(lease);
    EXPECT_EQ(lease["fence"], 2) << json::serialize(lease);

    // The fence refuses both sidecars while the job holds the lease.
    for (auto* node : {&a, &b}) {
        auto refused = node->sidecar.command("safely_resume_production");
        EXPECT_EQ(refused.status, 500) << refused.body;
        EXPECT_TRUE(refused.body.starts_with(kResumeFailed + "producer lease eosio.bp is held by "
                                                             "switch-producer:"))
            << refused.body;
        EXPECT_EQ(node->paused(), true);
    }
}

/// The config-reload jobs of `node` in serve, as JSON objects.
std::vector<json::object> config_reloads(const ServerProcess& serve, const std::string& node) {
    auto response = http(serve, "GET", "/api/v1/jobs?node=" + node);
    auto body = json_of(response);
    std::vector<json::object> out;
    if (!body.is_object()) {
        return out;
    }
    const auto* jobs = body.as_object().if_contains("jobs");
    if (jobs == nullptr || !jobs->is_array()) {
        return out;
    }
    for (const auto& job : jobs->as_array()) {
        if (str(job.at("action")) == "config-reload") {
            out.push_back(job.as_object());
        }
    }
    return out;
}

/// A supervise file rendering `template_path` into `output` before each start.
std::string render_config(const std::string& template_path, const std::string& output) {
    return "render:\n  - template: " + template_path + "\n    output: " + output +
           "\n    values:\n      agent: bp\n";
}

/// Replaces a file as a configmap mount does: a new file renamed over the old one.
void swap_in_file(const std::string& path, const std::string& text) {
    {
        std::ofstream out{path + ".new"};
        out << text;
    }
    std::filesystem::rename(path + ".new", path);
}

/// serve, and two registered bp-mode sidecars rendering one shared template (a configmap's
/// file) into a.ini and b.ini before each start.
class RollingConfigReload : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(serve.start()) << serve.log();
        swap_in_file(source, "agent-name = {{ agent }}\nround = 1\n");
        a = std::make_unique<BpNode>("bp-a", serve.url(""),
                                     render_config(source, shared.path() + "/a.ini"));
        b = std::make_unique<BpNode>("bp-b", serve.url(""),
                                     render_config(source, shared.path() + "/b.ini"));
        ASSERT_TRUE(a->wait_passive_and_ready()) << a->sidecar.err();
        ASSERT_TRUE(b->wait_passive_and_ready()) << b->sidecar.err();
        ASSERT_TRUE(registered(serve, "bp-a").is_object());
        ASSERT_TRUE(registered(serve, "bp-b").is_object());
    }
    std::string rendered(const char* node) const {
        return read_file(shared.path() + "/" + node + ".ini");
    }

    ServerProcess serve{serve_config()};
    TempDir shared;
    const std::string source = shared.path() + "/config.ini.tmpl";
    std::unique_ptr<BpNode> a;
    std::unique_ptr<BpNode> b;
};

TEST_F(RollingConfigReload, RegisteredSidecarsRestartOneAtATimeThroughServesJobs) {
    const auto starts_a = a->sidecar.status()["starts"].as_int64();
    const auto starts_b = b->sidecar.status()["starts"].as_int64();

    swap_in_file(source, "agent-name = {{ agent }}\nround = 2\n");
    std::vector<json::object> jobs_a;
    std::vector<json::object> jobs_b;
    auto done = [](const std::vector<json::object>& jobs) {
        return jobs.size() == 1 &&
               (jobs[0].at("state") == "succeeded" || jobs[0].at("state") == "failed");
    };
    ASSERT_TRUE(wait_until(
        [&] {
            jobs_a = config_reloads(serve, "bp-a");
            jobs_b = config_reloads(serve, "bp-b");
            return done(jobs_a) && done(jobs_b);
        },
        60s))
        << a->sidecar.err() << b->sidecar.err();
    EXPECT_EQ(jobs_a[0].at("state"), "succeeded") << json::serialize(jobs_a[0]);
    EXPECT_EQ(jobs_b[0].at("state"), "succeeded") << json::serialize(jobs_b[0]);
    // Each job waited for its node to be synced again (wait: synced reads the sidecar's
    // readiness; a node just restarted has no height yet and is not synced).
    for (const auto& job : {jobs_a[0], jobs_b[0]}) {
        const auto output = output_of(serve, job);
        EXPECT_EQ(output.find("cannot see"), std::string::npos) << output;
    }
    // One at a time: one job ended before the other began.
    const std::string a_start = str(jobs_a[0].at("started_at"));
    const std::string a_end = str(jobs_a[0].at("finished_at"));
    const std::string b_start = str(jobs_b[0].at("started_at"));
    const std::string b_end = str(jobs_b[0].at("finished_at"));
    EXPECT_TRUE(a_end <= b_start || b_end <= a_start)
        << "a ran " << a_start << ".." << a_end << ", b ran " << b_start << ".." << b_end;
    // Both restarted with the new config rendered.
    EXPECT_GT(a->sidecar.status()["starts"].as_int64(), starts_a);
    EXPECT_GT(b->sidecar.status()["starts"].as_int64(), starts_b);
    EXPECT_EQ(rendered("a"), "agent-name = bp\nround = 2\n");
    EXPECT_EQ(rendered("b"), "agent-name = bp\nround = 2\n");
    EXPECT_TRUE(wait_until(
        [&] {
            return a->sidecar.err().find("restart queued in serve as job") != std::string::npos;
        },
        10s))
        << a->sidecar.err();
}

TEST_F(RollingConfigReload, AProducingNodeDefersItsRestartUntilProductionIsHandedOver) {
    ASSERT_EQ(str(run_job(serve, "bp-a", "resume-production").at("state")), "succeeded");
    const auto starts_a = a->sidecar.status()["starts"].as_int64();

    swap_in_file(source, "agent-name = {{ agent }}\nround = 2\n");
    // B (passive) restarts through serve; A (producing) says why it waits and keeps producing.
    ASSERT_TRUE(wait_until(
        [&] {
            auto jobs = config_reloads(serve, "bp-b");
            return jobs.size() == 1 && jobs[0].at("state") == "succeeded";
        },
        60s))
        << b->sidecar.err();
    ASSERT_TRUE(
        wait_until([&] { return !str(a->sidecar.status()["reload_pending"]).empty(); }, 30s))
        << a->sidecar.err();
    EXPECT_NE(str(a->sidecar.status()["reload_pending"]).find("handed over"), std::string::npos);
    EXPECT_TRUE(config_reloads(serve, "bp-a").empty());
    EXPECT_EQ(a->sidecar.status()["starts"].as_int64(), starts_a);
    EXPECT_EQ(a->paused(), false) << "A still produces";
    EXPECT_EQ(rendered("a"), "agent-name = bp\nround = 1\n");
    ASSERT_TRUE(b->wait_passive_and_ready()) << b->sidecar.err();

    // Hand production to B: A, passive now, restarts with its new config.
    auto handed = run_job(serve, "bp-b", "switch-producer", switch_params("bp-a", true));
    ASSERT_EQ(str(handed.at("state")), "succeeded") << output_of(serve, handed);
    ASSERT_TRUE(wait_until(
        [&] {
            auto jobs = config_reloads(serve, "bp-a");
            return jobs.size() == 1 && jobs[0].at("state") == "succeeded";
        },
        60s))
        << a->sidecar.err();
    EXPECT_GT(a->sidecar.status()["starts"].as_int64(), starts_a);
    EXPECT_EQ(str(a->sidecar.status()["reload_pending"]), "");
    EXPECT_EQ(rendered("a"), "agent-name = bp\nround = 2\n");
    EXPECT_EQ(b->paused(), false) << "B produces through A's restart";
}

}  // namespace
}  // namespace aviary::test
