// ssh steps through the real binary against a real OpenSSH sshd on loopback
// (tests/support/peers/sshd.sh): the remote command arrives as the argv written (quoted for
// the remote shell), its output is the job's, a changed host key is refused, and a machine
// whose sshd does not answer fails the job saying so.
#include <gtest/gtest.h>

#include "rpc_helpers.hpp"
#include "support/peer_process.hpp"

namespace aviary::test {
namespace {

namespace json = boost::json;

/// A config with machine t-ssh-1 on 127.0.0.1:`port`, worker tc-ssh-1, the client key and
/// `known_hosts` from `dir`, and a public task `remote-echo`.
std::string ssh_config(const std::string& dir, int port, const std::string& known_hosts) {
    return test_config(fmt::format(R"(  wait_heartbeat: 100ms
  machines:
    - {{name: t-ssh-1, hostname: t-ssh-1.test, address: 127.0.0.1, ssh_user: root, ssh_port: {}}}
  worker_ids:
    - {{id: tc-ssh-1, machine: t-ssh-1}}
)",
                                   port)) +
           fmt::format(R"(jobs:
  ssh:
    identity_file: {0}/id_ed25519
    known_hosts: {0}/{1}
    connect_timeout: 5s
  actions:
    remote-echo:
      public: true
      exclusive: false
      params:
        host: {{from: "{{{{machine.address}}}}"}}
      steps:
        - ssh: [echo, "reached {{{{params.host}}}}", "it's", "$HOME;", "a  b"]
    tcp-ping:
      public: true
      exclusive: false
      params:
        host: {{from: "{{{{machine.address}}}}"}}
      steps:
        - connect: {{host: "{{{{params.host}}}}", port: {2}, attempts: 2, interval: 100ms,
                     timeout: 1s}}
)",
                       dir, known_hosts, port);
}

std::string output_of(const ServerProcess& server, const std::string& id) {
    auto output = http(server, "GET", fmt::format("/api/v1/jobs/{}/output", id));
    return output ? output->body : std::string{};
}

/// Posts remote-echo for tc-ssh-1 the roller's way and waits for the job to finish.
json::value run_remote_echo(const ServerProcess& server) {
    auto posted = http(server, "POST", "/api/v1/jobs?tc_worker_id=tc-ssh-1&task_name=remote-echo");
    if (!posted || posted->status != 201) {
        ADD_FAILURE() << (posted ? posted->body : posted.error().message);
        return nullptr;
    }
    return wait_for_job(server, str(json_of(posted).at("task_id")));
}

class SshSteps : public ::testing::Test {
protected:
    void SetUp() override {
        port_ = free_port();
        ASSERT_GT(port_, 0);
        sshd_ = std::make_unique<PeerProcess>(
            std::vector<std::string>{"/bin/bash", peer_script("sshd.sh"), dir_.path() + "/sshd",
                                     std::to_string(port_)},
            dir_.path() + "/sshd.log");
        ASSERT_TRUE(sshd_->wait_for_log("Server listening on 127.0.0.1")) << sshd_->log();
    }

    TempDir dir_;
    int port_ = 0;
    std::unique_ptr<PeerProcess> sshd_;
};

TEST_F(SshSteps, TheRemoteCommandArrivesAsWrittenAndItsOutputIsTheJobs) {
    ServerProcess server{ssh_config(dir_.path() + "/sshd", port_, "known_hosts")};
    ASSERT_TRUE(server.start()) << server.log();
    auto job = run_remote_echo(server);
    ASSERT_TRUE(job.is_object()) << server.log();
    const auto id = str(job.at("id"));
    EXPECT_EQ(job.at("status"), "COMPLETE") << json::serialize(job) << output_of(server, id);
    // Each word arrives as one argument: the quote, the $ and ; and the two spaces are kept.
    auto output = output_of(server, id);
    EXPECT_NE(output.find(R"("reached 127.0.0.1 it's $HOME; a  b")"), std::string::npos) << output;
}

TEST_F(SshSteps, AChangedHostKeyIsRefusedClearly) {
    ServerProcess server{ssh_config(dir_.path() + "/sshd", port_, "known_hosts.wrong")};
    ASSERT_TRUE(server.start()) << server.log();
    auto job = run_remote_echo(server);
    ASSERT_TRUE(job.is_object()) << server.log();
    const auto id = str(job.at("id"));
    EXPECT_EQ(job.at("status"), "FAILED");
    EXPECT_NE(str(job.at("error")).find("exit 255"), std::string::npos) << json::serialize(job);
    auto output = output_of(server, id);
    EXPECT_NE(output.find("REMOTE HOST IDENTIFICATION HAS CHANGED"), std::string::npos) << output;
    EXPECT_NE(output.find("Host key verification failed."), std::string::npos) << output;
    EXPECT_EQ(output.find(R"("stream":"stdout")"), std::string::npos) << output;
}

TEST_F(SshSteps, AMachineWhoseSshdIsGoneFailsSayingSo) {
    ServerProcess server{ssh_config(dir_.path() + "/sshd", port_, "known_hosts")};
    ASSERT_TRUE(server.start()) << server.log();
    sshd_->stop();
    auto job = run_remote_echo(server);
    ASSERT_TRUE(job.is_object()) << server.log();
    EXPECT_EQ(job.at("status"), "FAILED");
    auto output = output_of(server, str(job.at("id")));
    EXPECT_NE(output.find("Connection refused"), std::string::npos) << output;
}

TEST_F(SshSteps, AConnectStepPingsAPortAndSaysWhyWhenNothingAnswers) {
    ServerProcess server{ssh_config(dir_.path() + "/sshd", port_, "known_hosts")};
    ASSERT_TRUE(server.start()) << server.log();
    auto post = [&] {
        auto posted = http(server, "POST", "/api/v1/jobs?tc_worker_id=tc-ssh-1&task_name=tcp-ping");
        EXPECT_TRUE(posted && posted->status == 201);
        return posted && posted->status == 201
                   ? wait_for_job(server, str(json_of(posted).at("task_id")))
                   : json::value(nullptr);
    };
    auto reached = post();
    ASSERT_TRUE(reached.is_object()) << server.log();
    EXPECT_EQ(reached.at("status"), "COMPLETE") << json::serialize(reached);
    EXPECT_EQ(reached.at("result").at("port"), port_);
    EXPECT_EQ(reached.at("result").at("attempt"), 1);

    sshd_->stop();
    auto refused = post();
    ASSERT_TRUE(refused.is_object()) << server.log();
    EXPECT_EQ(refused.at("status"), "FAILED");
    EXPECT_NE(str(refused.at("error"))
                  .find(fmt::format("no TCP connection to 127.0.0.1:{} in 2 attempts (last: "
                                    "Connection refused)",
                                    port_)),
              std::string::npos)
        << json::serialize(refused);
}

TEST(SshConfig, AKeyFileThatCannotBeReadStopsServeNamingIt) {
    ServerProcess server{R"(jobs:
  ssh:
    identity_file: /nonexistent/id_ed25519
)"};
    EXPECT_FALSE(server.start());
    EXPECT_NE(server.log().find("jobs.ssh.identity_file: cannot read ssh identity file "
                                "\"/nonexistent/id_ed25519\""),
              std::string::npos)
        << server.log();
}

}  // namespace
}  // namespace aviary::test
