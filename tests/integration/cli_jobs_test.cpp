// The job commands as people and CI run them: the real `aviary` binary against a real
// `aviary serve` running real jobs on sim nodes (child processes), checking exit codes, what
// is printed, and what the server holds afterwards.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>

#include "integration/cli_support.hpp"
#include "rpc_helpers.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;

/// Sim nodes that make a block every 50 ms (upgrade's wait steps pass in well under a second)
/// and actions made to fail, hang, time out and print. The built-in actions come with any
/// config file.
std::string jobs_config() {
    return test_config() + R"(drivers:
  sim:
    block_interval: 50ms
    sync_blocks: 1
jobs:
  actions:
    fails:
      description: always fails
      steps: [{run: ["false"]}]
    slow:
      description: outlives its timeout
      timeout: 1s
      steps: [{run: [sleep, "30"]}]
    sleepy:
      description: runs until cancelled
      steps: [{run: [sleep, "60"]}]
    counts:
      description: prints more lines than one page
      steps: [{run: [seq, "1500"]}]
    hello:
      description: prints
      steps: [{run: [echo, hello]}, {run: [sh, -c, "echo to-stderr >&2"]}]
)";
}

bool contains(const std::string& text, std::string_view part) {
    return text.find(part) != std::string::npos;
}

class CliJobs : public ::testing::Test {
protected:
    void SetUp() override {
        unsetenv("AVIARY_TOKEN");
        unsetenv("AVIARY_SERVER");
        ASSERT_TRUE(server_.start()) << server_.log();
        server_url_ = "http://" + server_.address();
    }

    /// Runs `aviary --server URL ARGS` through sh, ARGS as typed on a command line. A command
    /// that hangs is ended after a minute (status 124) rather than hanging the suite.
    CliResult aviary(const std::string& args) { return run_aviary(server_url_, args, dir_.path()); }

    json::value json_of(const std::string& args, int expected_status = 0) {
        auto result = aviary("--json " + args);
        EXPECT_EQ(result.status, expected_status) << args << ": " << result.err;
        std::error_code ec;
        auto parsed = json::parse(result.out, ec);
        EXPECT_FALSE(ec) << args << ": " << result.out;
        return ec ? json::value{} : parsed;
    }

    /// Submits without waiting; the new job's id.
    std::string submit(const std::string& args) {
        auto reply = json_of(args);
        if (!reply.is_object() || !reply.as_object().contains("job")) {
            ADD_FAILURE() << args << ": " << json::serialize(reply);
            return {};
        }
        return str(reply.at("job").at("id"));
    }

    std::string state_of(const std::string& id) {
        auto job = json_of("job show " + id);
        return job.is_object() ? str(job.at("state")) : std::string{};
    }

    /// Starts `aviary --server URL ARGS…` without a shell, stdout and stderr to files; its pid.
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
            dup2(out, STDERR_FILENO);
            execv(AVIARY_BINARY, argv.data());
            _exit(127);
        }
        return pid;
    }

    TempDir dir_;
    ServerProcess server_{jobs_config()};
    std::string server_url_;
};

TEST_F(CliJobs, UpgradeWithWaitExits0AndJobShowSaysSucceeded) {
    auto upgraded = aviary("upgrade lotus-0 v1.1.0 --wait");
    ASSERT_EQ(upgraded.status, 0) << upgraded.out << upgraded.err;
    // The submission line, then the end: "job ID succeeded (upgrade on lotus-0, 1.2s)".
    std::smatch match;
    ASSERT_TRUE(std::regex_search(upgraded.out, match,
                                  std::regex{R"(job (\S+) succeeded \(upgrade on lotus-0, )"}))
        << upgraded.out;
    const std::string id = match[1];
    EXPECT_TRUE(contains(upgraded.out, "job " + id + " queued: upgrade on lotus-0"))
        << upgraded.out;
    EXPECT_EQ(upgraded.err, "");  // not a terminal: no progress noise

    auto shown = aviary("job show " + id);
    ASSERT_EQ(shown.status, 0) << shown.err;
    EXPECT_TRUE(std::regex_search(shown.out, std::regex{R"((^|\n)state +succeeded\n)"}))
        << shown.out;
    EXPECT_TRUE(std::regex_search(shown.out, std::regex{R"((^|\n)params +tag=v1\.1\.0\n)"}))
        << shown.out;
    EXPECT_TRUE(contains(shown.out, "action")) << shown.out;

    auto job = json_of("job show " + id);
    ASSERT_TRUE(job.is_object());
    EXPECT_EQ(job.at("state"), "succeeded");
    EXPECT_EQ(job.at("node"), "lotus-0");
    EXPECT_EQ(job.at("params").at("tag"), "v1.1.0");
}

TEST_F(CliJobs, WaitWithJsonPrintsTheFinishedJob) {
    auto job = json_of("run-action lotus-1 noop --wait");
    ASSERT_TRUE(job.is_object());
    EXPECT_EQ(job.at("state"), "succeeded");
    EXPECT_EQ(job.at("action"), "noop");
}

TEST_F(CliJobs, FailingActionExits1WithTheReason) {
    auto failed = aviary("run-action lotus-1 fails --wait");
    EXPECT_EQ(failed.status, 1) << failed.out << failed.err;
    EXPECT_TRUE(
        std::regex_search(failed.err, std::regex{R"(aviary: job \S+ failed \(fails on lotus-1)"}))
        << failed.err;
}

TEST_F(CliJobs, TimedOutActionExits4) {
    auto timed_out = aviary("run-action lotus-1 slow --wait");
    EXPECT_EQ(timed_out.status, 4) << timed_out.out << timed_out.err;
    EXPECT_TRUE(contains(timed_out.err, "timed out")) << timed_out.err;
}

TEST_F(CliJobs, CancelFromAnotherCallMakesJobWaitExit5) {
    const auto id = submit("run-action lotus-2 sleepy");
    ASSERT_FALSE(id.empty());
    const auto out_path = dir_.path() + "/wait.out";
    const pid_t waiter = spawn({"job", "wait", id}, out_path);
    ASSERT_TRUE(wait_until([&] { return state_of(id) == "running"; })) << state_of(id);

    auto cancelled = aviary("job cancel " + id);
    ASSERT_EQ(cancelled.status, 0) << cancelled.err;
    EXPECT_TRUE(contains(cancelled.out, "job " + id + " cancel")) << cancelled.out;
    EXPECT_EQ(wait_for_exit(waiter), 5) << read_file(out_path);
    EXPECT_TRUE(contains(read_file(out_path), "aviary: job " + id + " cancelled"))
        << read_file(out_path);
    EXPECT_EQ(state_of(id), "cancelled");

    // A finished job cannot be cancelled again: refused by the server, exit 1.
    auto again = aviary("job cancel " + id);
    EXPECT_EQ(again.status, 1);
    EXPECT_TRUE(contains(again.err, "aviary: ")) << again.err;
    // Waiting for a job that has already ended answers at once, by how it ended.
    EXPECT_EQ(aviary("job wait " + id).status, 5);
}

TEST_F(CliJobs, SameJobTwiceIsReportedAsTheFirst) {
    const auto id = submit("run-action lotus-2 sleepy");
    ASSERT_FALSE(id.empty());
    auto second = aviary("run-action lotus-2 sleepy");
    ASSERT_EQ(second.status, 0) << second.err;
    EXPECT_TRUE(contains(second.out, "already queued as job " + id)) << second.out;
    EXPECT_EQ(aviary("job cancel " + id).status, 0);
}

TEST_F(CliJobs, JobsListsThemNewestFirst) {
    ASSERT_EQ(aviary("run-action lotus-0 noop --wait").status, 0);
    ASSERT_EQ(aviary("run-action lotus-1 fails --wait").status, 1);

    auto table = aviary("jobs");
    ASSERT_EQ(table.status, 0) << table.err;
    std::istringstream lines{table.out};
    std::string header, first, second;
    std::getline(lines, header);
    std::getline(lines, first);
    std::getline(lines, second);
    for (auto column : {"ID", "ACTION", "NODE", "STATE", "STEP", "AGE", "DURATION", "REQUESTER"}) {
        EXPECT_TRUE(contains(header, column)) << header;
    }
    EXPECT_TRUE(std::regex_search(first, std::regex{R"(fails +lotus-1 +failed +1/1 )"}))
        << table.out;
    EXPECT_TRUE(std::regex_search(second, std::regex{R"(noop +lotus-0 +succeeded )"})) << table.out;

    auto only_failed = json_of("jobs --state failed");
    ASSERT_TRUE(only_failed.is_object());
    ASSERT_EQ(only_failed.at("jobs").as_array().size(), 1u);
    EXPECT_EQ(only_failed.at("jobs").at(0).at("action"), "fails");
    auto on_node = json_of("jobs --node lotus-0");
    ASSERT_TRUE(on_node.is_object());
    for (const auto& job : on_node.at("jobs").as_array()) {
        EXPECT_EQ(job.at("node"), "lotus-0");
    }
    EXPECT_EQ(json_of("jobs --limit 1").at("jobs").as_array().size(), 1u);
    EXPECT_EQ(aviary("jobs --node lotus-2").out, "no jobs\n");
}

TEST_F(CliJobs, JobLogsPrintsTheOutputLines) {
    auto waited = aviary("run-action lotus-0 hello --wait --logs");
    ASSERT_EQ(waited.status, 0) << waited.err;
    // --logs: the lines as they came, between the submission and the end.
    EXPECT_TRUE(std::regex_search(waited.out, std::regex{R"(\d\d:\d\d:\d\d stdout hello\n)"}))
        << waited.out;
    std::smatch match;
    ASSERT_TRUE(std::regex_search(waited.out, match, std::regex{R"(job (\S+) succeeded)"}));
    const std::string id = match[1];

    auto logs = aviary("job logs " + id);
    ASSERT_EQ(logs.status, 0) << logs.err;
    EXPECT_TRUE(std::regex_search(logs.out, std::regex{R"((^|\n)\d\d:\d\d:\d\d stdout hello\n)"}))
        << logs.out;
    EXPECT_TRUE(std::regex_search(logs.out, std::regex{R"(\d\d:\d\d:\d\d stderr to-stderr\n)"}))
        << logs.out;

    // --json: one object per line (NDJSON), as the follow stream sends them, in seq order.
    auto as_json = aviary("--json job logs " + id);
    ASSERT_EQ(as_json.status, 0);
    std::istringstream objects{as_json.out};
    std::string object;
    std::int64_t last_seq = 0;
    std::int64_t hello_seq = 0;
    while (std::getline(objects, object)) {
        auto parsed = json::parse(object);
        const auto seq = parsed.at("seq").as_int64();
        EXPECT_GT(seq, last_seq) << object;
        last_seq = seq;
        if (parsed.at("text") == "hello") {
            hello_seq = seq;
        }
    }
    ASSERT_GT(hello_seq, 0) << as_json.out;

    // --from starts at a line; -f on a finished job prints and exits by how it ended.
    auto from_hello = aviary(fmt::format("job logs {} --from {}", id, hello_seq));
    EXPECT_EQ(from_hello.status, 0);
    EXPECT_EQ(from_hello.out.find("stdout hello"), 9u) << from_hello.out;  // the first line
    auto after_hello = aviary(fmt::format("job logs {} --from {}", id, hello_seq + 1));
    EXPECT_EQ(after_hello.status, 0);
    EXPECT_FALSE(contains(after_hello.out, "stdout hello")) << after_hello.out;
    EXPECT_TRUE(contains(after_hello.out, "stderr to-stderr")) << after_hello.out;
    auto followed = aviary("job logs -f " + id);
    EXPECT_EQ(followed.status, 0) << followed.err;
    EXPECT_TRUE(contains(followed.out, "stdout hello\n")) << followed.out;
}

/// The numbers `seq` printed, in the order `job logs` shows them.
std::vector<int> counted(const std::string& logs) {
    std::vector<int> numbers;
    std::istringstream lines{logs};
    std::string line;
    const std::regex stdout_line{R"(^\d\d:\d\d:\d\d stdout (\d+)$)"};
    std::smatch match;
    while (std::getline(lines, line)) {
        if (std::regex_match(line, match, stdout_line)) {
            numbers.push_back(std::stoi(match[1]));
        }
    }
    return numbers;
}

TEST_F(CliJobs, JobLogsShowsTheLast1000LinesAndFromPagesThroughAll) {
    auto job = json_of("run-action lotus-0 counts --wait");
    ASSERT_TRUE(job.is_object());
    const auto id = str(job.at("id"));

    auto tail = aviary("job logs " + id);
    ASSERT_EQ(tail.status, 0) << tail.err;
    EXPECT_EQ(std::count(tail.out.begin(), tail.out.end(), '\n'), 1000);
    auto numbers = counted(tail.out);
    ASSERT_FALSE(numbers.empty()) << tail.out.substr(0, 300);
    EXPECT_EQ(numbers.back(), 1500);
    EXPECT_TRUE(contains(tail.err, "--from 1")) << tail.err;

    auto all = aviary("job logs " + id + " --from 1");
    ASSERT_EQ(all.status, 0) << all.err;
    numbers = counted(all.out);
    ASSERT_EQ(numbers.size(), 1500u);
    for (int i = 0; i < 1500; ++i) {
        ASSERT_EQ(numbers[i], i + 1) << "a line missing or repeated across pages";
    }
    EXPECT_EQ(counted(aviary("job logs -f " + id + " --from 1").out).size(), 1500u);
}

TEST_F(CliJobs, JobLogsFollowsARunningJobUntilItEnds) {
    const auto id = submit("run-action lotus-2 sleepy");
    ASSERT_FALSE(id.empty());
    const auto out_path = dir_.path() + "/logs.out";
    const pid_t follower = spawn({"job", "logs", "-f", id}, out_path);
    ASSERT_TRUE(wait_until([&] { return state_of(id) == "running"; }));
    ASSERT_EQ(aviary("job cancel " + id).status, 0);
    EXPECT_EQ(wait_for_exit(follower), 5) << read_file(out_path);
}

TEST_F(CliJobs, RetryCreatesANewJobWithTheSameParams) {
    auto first = json_of("run-action lotus-1 fails --wait", 1);
    ASSERT_TRUE(first.is_object());
    const auto old_id = str(first.at("id"));

    auto retried = json_of("job retry " + old_id);
    ASSERT_TRUE(retried.is_object());
    const auto& job = retried.at("job");
    EXPECT_NE(str(job.at("id")), old_id);
    EXPECT_EQ(str(job.at("retry_of")), old_id);
    EXPECT_EQ(job.at("action"), "fails");

    // Let the first retry end: a retry of the same job while one is active is that one.
    EXPECT_EQ(aviary("job wait " + str(job.at("id"))).status, 1);
    auto waited = aviary("job retry " + old_id + " --wait");
    EXPECT_EQ(waited.status, 1) << waited.out << waited.err;
    EXPECT_TRUE(contains(waited.out, "retry of " + old_id)) << waited.out;
}

TEST_F(CliJobs, OwnerAcquiresTheNodeAndTheLeaseOutlivesTheJob) {
    auto upgraded = aviary("upgrade lotus-2 v1.2.0 --owner anton --ttl 2h --wait");
    ASSERT_EQ(upgraded.status, 0) << upgraded.err;
    EXPECT_TRUE(
        std::regex_search(upgraded.out, std::regex{R"(\nlease [0-9A-Z]{26} held by anton until )"}))
        << upgraded.out;
    auto nodes = json_of("nodes");
    ASSERT_TRUE(nodes.is_object());
    for (const auto& node : nodes.at("nodes").as_array()) {
        if (node.at("node") == "lotus-2") {
            EXPECT_EQ(node.at("holder"), "anton");
        }
    }
    // Someone else cannot run an action on anton's node: refused, exit 1, naming him.
    auto refused = aviary("upgrade lotus-2 v1.3.0 --owner bob");
    EXPECT_EQ(refused.status, 1);
    EXPECT_TRUE(contains(refused.err, "anton")) << refused.err;
}

TEST_F(CliJobs, ALoanShowsInWhoUntilItIsGivenBack) {
    auto lent = aviary("run-action lotus-1 loan --param person=alice --param ttl=2h --wait");
    ASSERT_EQ(lent.status, 0) << lent.out << lent.err;
    auto holder_of = [&](const std::string& node) -> std::string {
        auto who = json_of("who");
        if (!who.is_object()) {
            return "?";
        }
        for (const auto& lease : who.at("leases").as_array()) {
            for (const auto& leased : lease.at("nodes").as_array()) {
                if (str(leased) == node) {
                    return str(lease.at("owner"));
                }
            }
        }
        return "";
    };
    EXPECT_EQ(holder_of("lotus-1"), "alice");
    auto back = aviary("run-action lotus-1 return-loan --param person=alice --wait");
    ASSERT_EQ(back.status, 0) << back.out << back.err;
    EXPECT_EQ(holder_of("lotus-1"), "");
}

TEST_F(CliJobs, CanaryCreateDefaultsToTheNodesImageTag) {
    auto job = json_of("canary create lotus-1 --wait");
    ASSERT_TRUE(job.is_object());
    EXPECT_EQ(job.at("action"), "create-canary");
    EXPECT_EQ(job.at("params").at("tag"), "v1.0.0");
    EXPECT_EQ(job.at("state"), "succeeded");
    auto deleted = json_of("canary delete lotus-1 --wait");
    ASSERT_TRUE(deleted.is_object());
    EXPECT_EQ(deleted.at("action"), "delete-canary");
    EXPECT_EQ(deleted.at("state"), "succeeded");
}

TEST_F(CliJobs, ActionsListsBuiltInsAndConfigured) {
    auto listed = aviary("actions");
    ASSERT_EQ(listed.status, 0) << listed.err;
    for (auto name : {"upgrade", "install-snapshot", "create-canary", "delete-canary", "noop",
                      "fails", "sleepy"}) {
        EXPECT_TRUE(contains(listed.out, name)) << listed.out;
    }
    EXPECT_TRUE(contains(listed.out, "tag (image_tag)")) << listed.out;
}

TEST_F(CliJobs, ProgressShowsOnATerminal) {
    // script(1) gives the command a pseudo-terminal: stderr is a tty, as for a person.
    const auto typescript = dir_.path() + "/typescript";
    auto result = run_command(fmt::format(
        "timeout 60 script -qfec '{} --server {} run-action lotus-0 slow --wait' {} >/dev/null",
        AVIARY_BINARY, server_url_, typescript));
    EXPECT_EQ(result.status, 4);
    const auto shown = read_file(typescript);
    EXPECT_TRUE(std::regex_search(shown, std::regex{R"(step 1/1 [^,]*, \d+\.\ds)"})) << shown;
    EXPECT_TRUE(contains(shown, "\r\033[K")) << shown;
}

TEST_F(CliJobs, BadUsageExits2WithAMessage) {
    auto no_tag = aviary("upgrade lotus-0");
    EXPECT_EQ(no_tag.status, 2);
    EXPECT_TRUE(contains(no_tag.err, "tag")) << no_tag.err;
    auto bad_param = aviary("run-action lotus-0 noop --param novalue");
    EXPECT_EQ(bad_param.status, 2);
    EXPECT_TRUE(contains(bad_param.err, "KEY=VALUE")) << bad_param.err;
    auto ttl_alone = aviary("upgrade lotus-0 v2 --ttl 1h");
    EXPECT_EQ(ttl_alone.status, 2);
    EXPECT_TRUE(contains(ttl_alone.err, "--owner")) << ttl_alone.err;
    EXPECT_EQ(aviary("upgrade lotus-0 v2 --ttl soon --owner anton").status, 2);
    EXPECT_EQ(aviary("jobs --state sideways").status, 2);
    EXPECT_EQ(aviary("jobs --limit 0").status, 2);
    EXPECT_EQ(aviary("job").status, 2);
    EXPECT_EQ(aviary("job logs").status, 2);
    EXPECT_EQ(aviary("job logs X --from -3").status, 2);
    EXPECT_EQ(aviary("canary").status, 2);
    auto logs_alone = aviary("upgrade lotus-0 v2 --logs");
    EXPECT_EQ(logs_alone.status, 2);
    EXPECT_TRUE(contains(logs_alone.err, "--wait")) << logs_alone.err;
    EXPECT_EQ(aviary("run-action lotus-0").status, 2);
    // Not usage but refusals: the server names what is wrong, exit 1.
    auto unknown_job = aviary("job show 01NOSUCHJOB0000000000000000");
    EXPECT_EQ(unknown_job.status, 1);
    EXPECT_TRUE(contains(unknown_job.err, "aviary: ")) << unknown_job.err;
    EXPECT_EQ(aviary("job wait 01NOSUCHJOB0000000000000000").status, 1);
    EXPECT_EQ(aviary("run-action lotus-0 no-such-action").status, 1);
    EXPECT_EQ(aviary("upgrade lotus-0 'v1;touch /tmp/x'").status, 1);
}

}  // namespace
}  // namespace aviary::test
