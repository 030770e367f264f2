// The client commands as people and CI run them: the real `aviary` binary against a real
// `aviary serve`, checking exit codes, what is printed, and what the server holds afterwards.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "integration/cli_support.hpp"
#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;

/// Single-quotes `text` for sh.
std::string shell_quoted(std::string_view text) {
    std::string out = "'";
    for (char c : text) {
        out += c == '\'' ? std::string{"'\\''"} : std::string{c};
    }
    return out + "'";
}

/// A loopback port nothing listens on: bound, read, closed.
int closed_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t size = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size);
    close(fd);
    return ntohs(addr.sin_port);
}

class Cli : public ::testing::Test {
protected:
    void SetUp() override {
        // The tests name the server and the owner on every command line; the environment of
        // whoever runs the suite must not change that.
        unsetenv("AVIARY_TOKEN");
        unsetenv("AVIARY_SERVER");
        ASSERT_TRUE(server_.start()) << server_.log();
        server_url_ = "http://" + server_.address();
    }

    /// Runs `aviary --server URL ARGS` through sh (ARGS as typed on a command line).
    CliResult aviary(const std::string& args, const std::string& server = {}) {
        return run_aviary(server.empty() ? server_url_ : server, args, dir_.path());
    }

    /// Starts `aviary --server URL ARGS…` without a shell, stdout to `out_path`; its pid.
    pid_t spawn(std::vector<std::string> args, const std::string& out_path) {
        args.insert(args.begin(), {AVIARY_BINARY, "--server", server_url_});
        std::vector<char*> argv;
        for (auto& arg : args) {
            argv.push_back(arg.data());
        }
        argv.push_back(nullptr);
        const pid_t pid = fork();
        if (pid == 0) {
            const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(out, STDOUT_FILENO);
            execv(AVIARY_BINARY, argv.data());
            _exit(127);
        }
        return pid;
    }

    json::value json_of(const std::string& args) {
        auto result = aviary("--json " + args);
        EXPECT_EQ(result.status, 0) << result.err;
        std::error_code ec;
        auto parsed = json::parse(result.out, ec);
        EXPECT_FALSE(ec) << result.out;
        return ec ? json::value{} : parsed;
    }

    /// A REST call straight to the server (set-up the CLI is not under test for); its JSON.
    json::value rest(const std::string& method, const std::string& path, std::string body = {}) {
        net::ClientRequest request;
        request.method = method;
        request.url = server_.url(path);
        if (!body.empty()) {
            request.headers.push_back({"Content-Type", "application/json"});
            request.body = std::move(body);
        }
        auto response = net::fetch_sync(std::move(request));
        EXPECT_TRUE(response && response->status < 300)
            << method << " " << path << ": " << (response ? response->body : "no answer");
        std::error_code ec;
        return response ? json::parse(response->body, ec) : json::value{};
    }

    /// The node as `aviary nodes --json` shows it.
    json::value node(std::string_view name) {
        auto nodes = json_of("nodes");
        if (const auto* list =
                nodes.is_object() ? nodes.as_object().if_contains("nodes") : nullptr) {
            for (const auto& entry : list->as_array()) {
                if (str(entry.at("node")) == name) {
                    return entry;
                }
            }
        }
        return nullptr;
    }

    bool is_free(std::string_view name) {
        auto entry = node(name);
        return entry.is_object() && entry.at("holder").is_null();
    }

    /// The leases `aviary who --json` lists for `owner`.
    std::vector<json::value> leases_of(std::string_view owner) {
        std::vector<json::value> found;
        auto who = json_of("who");
        if (!who.is_object()) {
            return found;
        }
        for (const auto& lease : who.at("leases").as_array()) {
            if (str(lease.at("owner")) == owner) {
                found.push_back(lease);
            }
        }
        return found;
    }

    TempDir dir_;
    ServerProcess server_{test_config()};
    std::string server_url_;
};

TEST_F(Cli, UnreachableServerExits3AndSaysSo) {
    const auto url = fmt::format("http://127.0.0.1:{}", closed_port());
    auto result = aviary("nodes", url);
    EXPECT_EQ(result.status, 3);
    EXPECT_NE(result.err.find("aviary: cannot reach " + url +
                              ": connection refused (is aviary serve running?)"),
              std::string::npos)
        << result.err;
}

TEST_F(Cli, UsageErrorsExit2) {
    EXPECT_EQ(aviary("nodes --no-such-flag").status, 2);
    EXPECT_EQ(aviary("no-such-command").status, 2);
    EXPECT_EQ(aviary("acquire").status, 2);  // neither a node nor --label
    EXPECT_EQ(aviary("acquire lotus-0 --label chain=lotus").status, 2);
    EXPECT_EQ(aviary("acquire --label chain").status, 2);
    EXPECT_EQ(aviary("acquire lotus-0 --ttl soon").status, 2);
    EXPECT_EQ(aviary("maintenance lotus-0 sideways").status, 2);
    EXPECT_EQ(aviary("with-lease lotus-0").status, 2);  // no command
    EXPECT_EQ(aviary("who -- true").status, 2);
}

TEST_F(Cli, NodesPrintsATableAndJson) {
    auto table = aviary("nodes");
    ASSERT_EQ(table.status, 0) << table.err;
    std::istringstream lines{table.out};
    std::string header;
    std::getline(lines, header);
    EXPECT_EQ(header.rfind("NODE", 0), 0u) << table.out;
    EXPECT_NE(header.find("STATE"), std::string::npos);
    EXPECT_NE(header.find("HOLDER"), std::string::npos);
    for (auto name : {"lotus-0", "lotus-1", "lotus-2"}) {
        EXPECT_NE(table.out.find(name), std::string::npos) << table.out;
    }
    // Columns line up: STATE starts at the same offset on every line.
    const auto state_column = header.find("STATE");
    std::string line;
    while (std::getline(lines, line)) {
        EXPECT_EQ(line.find("free"), state_column) << table.out;
    }

    auto nodes = json_of("nodes --label chain=lotus");
    ASSERT_TRUE(nodes.is_object());
    EXPECT_EQ(nodes.at("nodes").as_array().size(), 3u);
    EXPECT_TRUE(json_of("nodes --label chain=geth").at("nodes").as_array().empty());
}

TEST_F(Cli, AcquireAndReleaseRoundTrip) {
    auto acquired = aviary("acquire lotus-0 --owner alice --ttl 2h --reason demo");
    ASSERT_EQ(acquired.status, 0) << acquired.err;
    EXPECT_NE(acquired.out.find("lotus-0"), std::string::npos) << acquired.out;
    // 2h less the time since the grant: exactly 2h when the CLI reads the clock in the same
    // millisecond the server stamped it.
    EXPECT_TRUE(acquired.out.find("(in 1h59m") != std::string::npos ||
                acquired.out.find("(in 2h)") != std::string::npos)
        << acquired.out;
    ASSERT_EQ(leases_of("alice").size(), 1u);
    EXPECT_EQ(node("lotus-0").at("holder"), "alice");

    auto released = aviary("release lotus-0 --owner alice");
    EXPECT_EQ(released.status, 0) << released.err;
    EXPECT_TRUE(is_free("lotus-0"));

    // By lease id, as scripts do with what --json printed.
    auto lease = json_of("acquire lotus-1 --owner alice");
    ASSERT_TRUE(lease.is_object());
    const auto id = str(lease.at("id"));
    EXPECT_EQ(lease.at("nodes").as_array().at(0), "lotus-1");
    auto renewed = aviary("renew " + id + " --ttl 3h");
    EXPECT_EQ(renewed.status, 0) << renewed.err;
    EXPECT_EQ(aviary("release " + id).status, 0);
    EXPECT_TRUE(is_free("lotus-1"));
    EXPECT_EQ(aviary("release " + id).status, 1);  // no longer held
}

TEST_F(Cli, RefusedAcquireExits1NamingTheHolder) {
    ASSERT_EQ(aviary("acquire lotus-1 --owner anton").status, 0);
    auto refused = aviary("acquire lotus-1 --owner bob");
    EXPECT_EQ(refused.status, 1);
    EXPECT_NE(refused.err.find("current owner is anton"), std::string::npos) << refused.err;

    // release refuses another owner's lease too; free --force is the deliberate way.
    auto release = aviary("release lotus-1 --owner bob");
    EXPECT_EQ(release.status, 1);
    EXPECT_NE(release.err.find("anton"), std::string::npos) << release.err;
    EXPECT_EQ(aviary("free lotus-1 --owner bob").status, 1);
    EXPECT_EQ(node("lotus-1").at("holder"), "anton");
    EXPECT_EQ(aviary("free lotus-1 --force --owner bob").status, 0);
    EXPECT_TRUE(is_free("lotus-1"));
}

TEST_F(Cli, AcquireByLabelTakesSeveralNodes) {
    auto lease = json_of("acquire --label chain=lotus --count 2 --owner ci");
    ASSERT_TRUE(lease.is_object());
    EXPECT_EQ(lease.at("nodes").as_array().size(), 2u);
    auto refused = aviary("acquire --label chain=lotus --count 2 --owner other");
    EXPECT_EQ(refused.status, 1) << refused.out;
}

TEST_F(Cli, WaitingAcquireThatTimesOutExits4) {
    ASSERT_EQ(aviary("acquire lotus-0 --owner anton").status, 0);
    auto waited = aviary("acquire lotus-0 --owner bob --wait 1s");
    EXPECT_EQ(waited.status, 4) << waited.out << waited.err;
    EXPECT_EQ(node("lotus-0").at("holder"), "anton");
    EXPECT_TRUE(json_of("who").at("waiters").as_array().empty());
}

TEST_F(Cli, WaitingAcquireGetsTheNodeWhenItFrees) {
    ASSERT_EQ(aviary("acquire lotus-0 --owner anton").status, 0);
    const auto out_path = dir_.path() + "/waiter.out";
    const pid_t waiter =
        spawn({"--json", "acquire", "lotus-0", "--owner", "bob", "--wait", "60s"}, out_path);
    ASSERT_TRUE(wait_until([&] {
        auto who = json_of("who");
        return who.is_object() && !who.at("waiters").as_array().empty();
    }));
    ASSERT_EQ(aviary("release lotus-0 --owner anton").status, 0);
    EXPECT_EQ(wait_for_exit(waiter), 0);
    auto lease = json::parse(read_file(out_path));
    EXPECT_EQ(lease.at("owner"), "bob");
    EXPECT_EQ(node("lotus-0").at("holder"), "bob");
}

TEST_F(Cli, WithLeaseExportsTheNodesAndExitsWithTheCommandsStatus) {
    const auto file = dir_.path() + "/nodes";
    auto result = aviary(
        fmt::format("with-lease --label chain=lotus --count 2 --owner ci -- sh -c {}",
                    shell_quoted(fmt::format(
                        "echo \"$AVIARY_NODES $AVIARY_NODE0 $AVIARY_NODE1 $AVIARY_LEASE_ID\" "
                        "> {}; exit 7",
                        file))));
    EXPECT_EQ(result.status, 7) << result.err;
    std::istringstream fields{read_file(file)};
    std::string all, first, second, id;
    fields >> all >> first >> second >> id;
    EXPECT_EQ(all, first + "," + second);
    EXPECT_EQ(first.rfind("lotus-", 0), 0u) << all;
    EXPECT_FALSE(id.empty());
    EXPECT_TRUE(leases_of("ci").empty());
    EXPECT_TRUE(is_free(first) && is_free(second));
}

TEST_F(Cli, WithLeaseReleasesWhenTheCommandFails) {
    EXPECT_EQ(aviary("with-lease lotus-2 --owner ci -- false").status, 1);
    EXPECT_TRUE(is_free("lotus-2"));
    EXPECT_EQ(aviary("with-lease lotus-2 --owner ci -- /no/such/command").status, 127);
    EXPECT_TRUE(is_free("lotus-2"));
    // A node it cannot get: refused, the command never runs.
    ASSERT_EQ(aviary("acquire lotus-2 --owner anton").status, 0);
    const auto marker = dir_.path() + "/ran";
    EXPECT_EQ(aviary("with-lease lotus-2 --owner ci -- touch " + marker).status, 1);
    EXPECT_FALSE(std::ifstream{marker}.good());
}

TEST_F(Cli, WithLeaseReleasesOnSigterm) {
    const auto pid_file = dir_.path() + "/child.pid";
    const pid_t aviary_pid = spawn({"with-lease", "lotus-0", "--owner", "ci", "--", "sh", "-c",
                                    fmt::format("echo $$ > {}; exec sleep 300", pid_file)},
                                   "/dev/null");
    ASSERT_TRUE(wait_until([&] {
        return !leases_of("ci").empty() && !read_file(pid_file).empty();
    })) << "with-lease never held the node";
    const pid_t child = std::stoi(read_file(pid_file));

    kill(aviary_pid, SIGTERM);
    EXPECT_EQ(wait_for_exit(aviary_pid), 128 + SIGTERM);
    EXPECT_TRUE(is_free("lotus-0"));
    EXPECT_TRUE(leases_of("ci").empty());
    // The child got the signal and was reaped: its pid no longer exists.
    EXPECT_EQ(kill(child, 0), -1);
    EXPECT_EQ(errno, ESRCH);
}

TEST_F(Cli, MaintenanceTakesANodeOutOfService) {
    auto on = aviary("maintenance lotus-1 on --reason \"disk swap\"");
    ASSERT_EQ(on.status, 0) << on.err;
    EXPECT_EQ(node("lotus-1").at("state"), "maintenance");
    EXPECT_NE(aviary("nodes").out.find("maintenance: disk swap"), std::string::npos);
    EXPECT_EQ(aviary("acquire lotus-1 --owner anton").status, 1);
    ASSERT_EQ(aviary("maintenance lotus-1 off").status, 0);
    EXPECT_EQ(node("lotus-1").at("state"), "free");
}

TEST_F(Cli, NodesAddAndRemove) {
    auto added = aviary("nodes add geth-0 --driver sim --label chain=geth --note \"spare box\"");
    ASSERT_EQ(added.status, 0) << added.err;
    EXPECT_NE(added.out.find("added geth-0"), std::string::npos);
    auto entry = node("geth-0");
    ASSERT_TRUE(entry.is_object());
    EXPECT_EQ(entry.at("labels").at("chain"), "geth");
    EXPECT_EQ(entry.at("note"), "spare box");
    EXPECT_EQ(aviary("nodes add lotus-0").status, 1);  // declared in the config
    ASSERT_EQ(aviary("nodes remove geth-0").status, 0);
    EXPECT_TRUE(node("geth-0").is_null());
}

TEST_F(Cli, MachinesAddListAndRemove) {
    EXPECT_EQ(aviary("machines").out, "no machines\n");
    auto added = aviary(
        "machines add t-linux-1 --address 127.0.0.1 --ssh-user relops --ssh-port 2222 "
        "--ipmi-address 127.0.0.1:6230 --pdu-host 127.0.0.1:1161 --pdu-outlet 4 --group lab "
        "--label rack=r1");
    ASSERT_EQ(added.status, 0) << added.err;
    EXPECT_EQ(added.out, "added t-linux-1\n");
    auto listed = aviary("machines");
    ASSERT_EQ(listed.status, 0) << listed.err;
    EXPECT_NE(listed.out.find("MACHINE"), std::string::npos) << listed.out;
    EXPECT_NE(listed.out.find("t-linux-1"), std::string::npos) << listed.out;
    EXPECT_NE(listed.out.find("127.0.0.1"), std::string::npos) << listed.out;
    auto json = aviary("machines --json");
    ASSERT_EQ(json.status, 0) << json.err;
    auto parsed = boost::json::parse(json.out);
    const auto& m = parsed.at("machines").at(0);
    EXPECT_EQ(m.at("ssh_user"), "relops");
    EXPECT_EQ(m.at("ssh_port"), 2222);
    EXPECT_EQ(m.at("pdu_outlet"), 4);
    EXPECT_EQ(m.at("groups").at(0), "lab");
    EXPECT_EQ(m.at("labels").at("rack"), "r1");
    // The server's checks reach the user: a PDU outlet without its PDU.
    auto half = aviary("machines add t-linux-2 --address 10.0.0.2 --pdu-outlet 3");
    EXPECT_EQ(half.status, 1);
    EXPECT_NE(half.err.find("pdu_host and pdu_outlet"), std::string::npos) << half.err;
    EXPECT_EQ(aviary("machines add t-linux-3 --ssh-port 0").status, 2);  // usage: out of range
    EXPECT_EQ(aviary("nodes remove t-linux-1").status, 1);               // a machine, not a node
    auto removed = aviary("machines remove t-linux-1");
    ASSERT_EQ(removed.status, 0) << removed.err;
    EXPECT_EQ(removed.out, "removed t-linux-1\n");
    EXPECT_EQ(aviary("machines").out, "no machines\n");
}

TEST_F(Cli, HistoryFollowsPagesUpToTheLimit) {
    // More events than one of the CLI's pages (100), made quickly over REST.
    for (int i = 0; i < 60; ++i) {
        auto lease = rest("POST", "/api/v1/leases", R"({"node": "lotus-0", "owner": "alice"})");
        ASSERT_TRUE(lease.is_object());
        rest("DELETE", "/api/v1/leases/" + str(lease.at("id")));
    }
    auto history = json_of("history lotus-0 --limit 110");
    ASSERT_TRUE(history.is_object());
    const auto& events = history.at("events").as_array();
    ASSERT_EQ(events.size(), 110u);
    std::set<std::string> ids;
    for (const auto& event : events) {
        EXPECT_EQ(event.at("node"), "lotus-0");
        ids.insert(str(event.at("id")));
    }
    EXPECT_EQ(ids.size(), events.size()) << "a page was fetched twice";
    EXPECT_EQ(json_of("history --limit 3").at("events").as_array().size(), 3u);

    auto table = aviary("history lotus-0 --limit 4");
    EXPECT_EQ(table.status, 0);
    EXPECT_NE(table.out.find("lease.released"), std::string::npos) << table.out;
    EXPECT_EQ(std::count(table.out.begin(), table.out.end(), '\n'), 5);  // header + 4
}

TEST_F(Cli, CompletionPrintsTheBashScript) {
    auto printed = aviary("completion bash");
    EXPECT_EQ(printed.status, 0);
    EXPECT_EQ(printed.out,
              read_file(std::string{AVIARY_SOURCE_DIR} + "/scripts/aviary-completion.bash"));
    EXPECT_EQ(run_command("bash -n -c " + shell_quoted(printed.out)).status, 0);
}

}  // namespace
}  // namespace aviary::test
