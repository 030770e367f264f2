// The reboot task through the real binary against real peers on loopback: OpenSSH's sshd,
// OpenIPMI's ipmi_sim (ipmitool -I lanplus) and net-snmp's snmpd as a PDU
// (tests/support/peers). Nothing real is ever rebooted: every power request runs
// tests/support/peers/bounce.sh, which takes a test listener (the "machine") down and brings it
// back, and the verification watches that listener. Covered: ssh works; ssh refuses, so IPMI
// is tried; IPMI fails too, so the PDU is tried; every method fails and the job says why; the
// IPMI password and the SNMP community reach the tools through files and never show.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "rpc_helpers.hpp"
#include "support/peer_process.hpp"

namespace aviary::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

/// The "machine": a TCP listener on `port` that is closed while `flag` exists.
class FlagListener {
public:
    FlagListener(int port, std::string flag) : port_(port), flag_(std::move(flag)) {
        thread_ = std::thread([this] { loop(); });
    }
    ~FlagListener() {
        stop_ = true;
        thread_.join();
        close_listener();
    }

private:
    void loop() {
        while (!stop_) {
            const bool down = fs::exists(flag_);
            if (down && fd_ >= 0) {
                close_listener();
            } else if (!down && fd_ < 0) {
                open_listener();
            }
            if (fd_ >= 0) {
                int client = ::accept(fd_, nullptr, nullptr);  // non-blocking
                if (client >= 0) {
                    ::close(client);
                }
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{20});
        }
    }
    void open_listener() {
        // CLOEXEC: serve and the peers are forked from this process, and a listener they
        // inherited would keep the port after it is closed here.
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(port_));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::listen(fd_, 64) != 0) {
            close_listener();  // tried again on the next round
        }
    }
    void close_listener() {
        if (fd_ >= 0) {
            ::close(fd_);
            fd_ = -1;
        }
    }

    int port_;
    std::string flag_;
    int fd_ = -1;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

std::string read_file(const std::string& path) {
    std::ifstream in{path};
    std::string text;
    std::getline(in, text);
    return text;
}

void write_script(const std::string& path, const std::string& body) {
    std::ofstream{path} << "#!/bin/bash\n" << body << "\n";
    fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
}

class Reboot : public ::testing::Test {
protected:
    void SetUp() override {
        base_ = dir_.path();
        flag_ = base_ + "/machine-down";
        verify_port_ = free_port();
        listener_ = std::make_unique<FlagListener>(verify_port_, flag_);
        ASSERT_TRUE(wait_for_tcp(verify_port_));
        const auto bounce = peer_script("bounce.sh");
        write_script(base_ + "/ipmi_hook",
                     fmt::format("exec /bin/bash {} {} \"$1\"", bounce, flag_));
        write_script(base_ + "/pdu_hook",
                     fmt::format("exec /bin/bash {} {} \"$3\"", bounce, flag_));
    }

    void start_sshd() {
        sshd_port_ = free_port();
        sshd_ = std::make_unique<PeerProcess>(
            std::vector<std::string>{"/bin/bash", peer_script("sshd.sh"), base_ + "/sshd",
                                     std::to_string(sshd_port_)},
            base_ + "/sshd.log");
        ASSERT_TRUE(sshd_->wait_for_log("Server listening on 127.0.0.1")) << sshd_->log();
    }
    void start_ipmi_sim() {
        ipmi_port_ = free_port(true);
        ipmi_ = std::make_unique<PeerProcess>(
            std::vector<std::string>{"/bin/bash", peer_script("ipmi_sim.sh"), base_ + "/ipmi",
                                     std::to_string(ipmi_port_), base_ + "/ipmi_hook"},
            base_ + "/ipmi.log");
        // Ready once it answers: bounded by ipmitool's own -R/-N and wait_until's deadline.
        ASSERT_TRUE(wait_until(
            [&] {
                return fs::exists(base_ + "/ipmi/ipmi_password") &&
                       run_command(fmt::format("ipmitool -I lanplus -H 127.0.0.1 -p {} -U {} -f "
                                               "{}/ipmi/ipmi_password -C 3 -R 1 -N 1 chassis "
                                               "power status",
                                               ipmi_port_, read_file(base_ + "/ipmi/ipmi_user"),
                                               base_))
                               .status == 0;
            },
            std::chrono::seconds{30}))
            << ipmi_->log();
    }
    void start_snmpd() {
        snmp_port_ = free_port(true);
        snmpd_ = std::make_unique<PeerProcess>(
            std::vector<std::string>{"/bin/bash", peer_script("snmpd.sh"), base_ + "/snmp",
                                     std::to_string(snmp_port_), base_ + "/pdu_hook"},
            base_ + "/snmpd.log");
        ASSERT_TRUE(wait_until(
            [&] {
                std::ifstream log{base_ + "/snmp/snmpd.log"};
                std::string text{std::istreambuf_iterator<char>{log}, {}};
                return text.find("NET-SNMP version") != std::string::npos;
            },
            std::chrono::seconds{30}))
            << snmpd_->log();
    }

    /// A config with machine t-bmc-1 reached as given, the reboot task verified on the test
    /// listener, and the peers' credentials.
    std::string config(int ssh_port, int ipmi_port, int snmp_port) const {
        return test_config(fmt::format(
                   R"(  wait_heartbeat: 100ms
  machines:
    - name: t-bmc-1
      hostname: t-bmc-1.test
      address: 127.0.0.1
      ssh_port: {ssh_port}
      ipmi_address: "127.0.0.1:{ipmi_port}"
      ipmi_user: {ipmi_user}
      pdu_host: "127.0.0.1:{snmp_port}"
      pdu_outlet: 3
  worker_ids:
    - {{id: tc-bmc-1, machine: t-bmc-1}}
)",
                   fmt::arg("ssh_port", ssh_port), fmt::arg("ipmi_port", ipmi_port),
                   fmt::arg("snmp_port", snmp_port), fmt::arg("ipmi_user", ipmi_user()))) +
               // Without sshd the machine's ssh port has nothing on it: the client's own keys do.
               (fs::exists(base_ + "/sshd/id_ed25519") ? fmt::format(R"(jobs:
  ssh:
    identity_file: {base}/sshd/id_ed25519
    known_hosts: {base}/sshd/known_hosts
    connect_timeout: 3s
)",
                                                                     fmt::arg("base", base_))
                                                       : std::string{"jobs:\n"}) +
               fmt::format(R"(  ipmi:
    password_env: AVIARY_TEST_IPMI_PASSWORD
    cipher_suite: 3
    retries: 1
    retry_seconds: 1
  pdu:
    community_file: {base}/snmp/community
    timeout: 500ms
    retries: 0
  actions:
    test-reboot:
      public: true
      timeout: 2m
      params:
        host: {{from: "{{{{machine.address}}}}"}}
      steps:
        - reboot:
            ssh_command: [/bin/bash, {bounce}, {flag}, reboot]
            pdu_off_time: 500ms
            verify: {{port: {verify}, down_within: 3s, up_within: 10s, interval: 100ms,
                      probe_timeout: 500ms}}
    leak:
      steps:
        - run: [cat, "{base}/snmp/community", "{base}/ipmi/ipmi_password"]
    leak-error:
      params:
        word: {{type: string}}
      steps:
        - run: ["/nonexistent/{{{{params.word}}}}"]
)",
                           fmt::arg("base", base_), fmt::arg("bounce", peer_script("bounce.sh")),
                           fmt::arg("flag", flag_), fmt::arg("verify", verify_port_));
    }

    std::string ipmi_user() const {
        auto user = read_file(base_ + "/ipmi/ipmi_user");
        return user.empty() ? std::string{"admin"} : user;
    }

    json::value reboot(ServerProcess& server) {
        auto posted =
            http(server, "POST", "/api/v1/jobs?tc_worker_id=tc-bmc-1&task_name=test-reboot");
        if (!posted || posted->status != 201) {
            ADD_FAILURE() << (posted ? posted->body : posted.error().message);
            return nullptr;
        }
        return wait_for_job(server, str(json_of(posted).at("task_id")), std::chrono::seconds{120});
    }

    std::string output_of(ServerProcess& server, const json::value& job) {
        auto output = http(server, "GET", fmt::format("/api/v1/jobs/{}/output", str(job.at("id"))));
        return output ? output->body : std::string{};
    }

    TempDir dir_;
    std::string base_;
    std::string flag_;
    int verify_port_ = 0;
    std::unique_ptr<FlagListener> listener_;
    int sshd_port_ = 0;
    int ipmi_port_ = 0;
    int snmp_port_ = 0;
    std::unique_ptr<PeerProcess> sshd_;
    std::unique_ptr<PeerProcess> ipmi_;
    std::unique_ptr<PeerProcess> snmpd_;
};

TEST_F(Reboot, SshRebootsAndTheMachineIsSeenGoingDownAndComingBack) {
    start_sshd();
    start_ipmi_sim();
    start_snmpd();
    setenv("AVIARY_TEST_IPMI_PASSWORD", read_file(base_ + "/ipmi/ipmi_password").c_str(), 1);
    ServerProcess server{config(sshd_port_, ipmi_port_, snmp_port_)};
    ASSERT_TRUE(server.start()) << server.log();
    auto job = reboot(server);
    ASSERT_TRUE(job.is_object()) << server.log();
    EXPECT_EQ(job.at("status"), "COMPLETE") << json::serialize(job) << output_of(server, job);
    EXPECT_EQ(job.at("result").at("method"), "ssh") << json::serialize(job);
    EXPECT_EQ(job.at("result").at("attempts").as_array().size(), 1u);
    // IPMI and the PDU were never asked.
    EXPECT_EQ(read_file(base_ + "/ipmi/power_state"), "1");
    EXPECT_FALSE(fs::exists(base_ + "/snmp/pdu_pass.log") &&
                 read_file(base_ + "/snmp/pdu_pass.log").find("-s") != std::string::npos);
}

TEST_F(Reboot, WhenSshRefusesIpmiPowerCyclesIt) {
    start_ipmi_sim();
    start_snmpd();
    setenv("AVIARY_TEST_IPMI_PASSWORD", read_file(base_ + "/ipmi/ipmi_password").c_str(), 1);
    ServerProcess server{config(free_port(), ipmi_port_, snmp_port_)};  // nothing on ssh's port
    ASSERT_TRUE(server.start()) << server.log();
    auto job = reboot(server);
    ASSERT_TRUE(job.is_object()) << server.log();
    auto output = output_of(server, job);
    EXPECT_EQ(job.at("status"), "COMPLETE") << json::serialize(job) << output;
    EXPECT_EQ(job.at("result").at("method"), "ipmi") << json::serialize(job);
    const auto& attempts = job.at("result").at("attempts").as_array();
    ASSERT_EQ(attempts.size(), 2u);
    EXPECT_EQ(attempts[0].at("method"), "ssh");
    EXPECT_NE(str(attempts[0].at("outcome")).find("ssh could not reach 127.0.0.1"),
              std::string::npos)
        << json::serialize(attempts[0]);
    EXPECT_NE(output.find("Connection refused"), std::string::npos) << output;
    // ipmi_sim ran the chassis hook: off, then on.
    std::ifstream log{base_ + "/ipmi/chassis_control.log"};
    std::string calls{std::istreambuf_iterator<char>{log}, {}};
    EXPECT_NE(calls.find("set power"), std::string::npos) << calls;
}

TEST_F(Reboot, WhenIpmiFailsTooThePduSwitchesTheOutletOffAndOn) {
    start_snmpd();
    setenv("AVIARY_TEST_IPMI_PASSWORD", "not-the-password-1", 1);
    // No BMC answers on the IPMI port.
    ServerProcess server{config(free_port(), free_port(true), snmp_port_)};
    ASSERT_TRUE(server.start()) << server.log();
    auto job = reboot(server);
    ASSERT_TRUE(job.is_object()) << server.log();
    auto output = output_of(server, job);
    EXPECT_EQ(job.at("status"), "COMPLETE") << json::serialize(job) << output;
    EXPECT_EQ(job.at("result").at("method"), "pdu") << json::serialize(job);
    const auto& attempts = job.at("result").at("attempts").as_array();
    ASSERT_EQ(attempts.size(), 3u);
    EXPECT_NE(str(attempts[1].at("outcome")).find("ipmitool exited with"), std::string::npos)
        << json::serialize(attempts[1]);
    // The outlet was switched off, then on: it reads "on" (1) now.
    EXPECT_EQ(read_file(base_ + "/snmp/outlets/3"), "1");
    std::ifstream log{base_ + "/snmp/pdu_pass.log"};
    std::string calls{std::istreambuf_iterator<char>{log}, {}};
    auto off = calls.find("-s .1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.3 integer 2");
    auto on = calls.find("-s .1.3.6.1.4.1.318.1.1.12.3.3.1.1.4.3 integer 1");
    EXPECT_NE(off, std::string::npos) << calls;
    EXPECT_NE(on, std::string::npos) << calls;
    EXPECT_LT(off, on) << calls;
}

TEST_F(Reboot, WhenEveryMethodFailsTheJobSaysWhatEachCameTo) {
    setenv("AVIARY_TEST_IPMI_PASSWORD", "not-the-password-1", 1);
    fs::create_directories(base_ + "/snmp");
    std::ofstream{base_ + "/snmp/community"} << "nobody-listens";
    ServerProcess server{config(free_port(), free_port(true), free_port(true))};
    ASSERT_TRUE(server.start()) << server.log();
    auto job = reboot(server);
    ASSERT_TRUE(job.is_object()) << server.log();
    EXPECT_EQ(job.at("status"), "FAILED") << json::serialize(job);
    auto error = str(job.at("error"));
    EXPECT_NE(error.find("reboot of t-bmc-1 failed by every method: ssh: "), std::string::npos)
        << error;
    EXPECT_NE(error.find("; ipmi: ipmitool exited with"), std::string::npos) << error;
    EXPECT_NE(error.find("; pdu: snmpset (outlet 3 off) exited with"), std::string::npos) << error;
    // The machine never went down.
    EXPECT_FALSE(fs::exists(flag_));
}

TEST_F(Reboot, SecretsReachTheToolsThroughPrivateFilesAndNeverShow) {
    start_snmpd();
    const std::string password = "ipmi-secret-password-42";
    setenv("AVIARY_TEST_IPMI_PASSWORD", password.c_str(), 1);
    fs::create_directories(base_ + "/ipmi");
    std::ofstream{base_ + "/ipmi/ipmi_password"} << password;
    const auto community = read_file(base_ + "/snmp/community");
    ASSERT_GE(community.size(), 6u);
    ServerProcess server{config(free_port(), free_port(true), snmp_port_)};
    ASSERT_TRUE(server.start()) << server.log();

    // serve wrote them under its data dir, readable by it alone.
    struct stat st {};
    ASSERT_EQ(::stat((server.data_dir() + "/secrets/ipmi_password").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(read_file(server.data_dir() + "/secrets/ipmi_password"), password);
    ASSERT_EQ(::stat((server.data_dir() + "/secrets/snmp/snmp.conf").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(::stat((server.data_dir() + "/secrets").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);

    // A job that prints them shows REDACTED; so does the rest of what serve says.
    auto leak = http(server, "POST", "/api/v1/nodes/t-bmc-1/actions/leak", R"({"wait": true})");
    ASSERT_TRUE(leak);
    auto job = json_of(leak).at("job");
    auto output = output_of(server, job);
    EXPECT_NE(output.find("REDACTED"), std::string::npos) << output;
    EXPECT_EQ(output.find(password), std::string::npos) << output;
    EXPECT_EQ(output.find(community), std::string::npos) << output;
    // An error text that quotes one (a program that cannot be started) shows REDACTED too.
    auto failed = http(server, "POST", "/api/v1/nodes/t-bmc-1/actions/leak-error",
                       fmt::format(R"({{"params": {{"word": "{}"}}, "wait": true}})", community));
    ASSERT_TRUE(failed);
    auto error = str(json_of(failed).at("job").at("error"));
    EXPECT_NE(error.find("REDACTED"), std::string::npos) << error;
    EXPECT_EQ(error.find(community), std::string::npos) << error;
    auto rebooted = reboot(server);  // the PDU method runs snmpset with the community
    ASSERT_TRUE(rebooted.is_object());
    auto reboot_output = output_of(server, rebooted);
    // The community is in the leak-error job's params now, so in its events and job answers
    // too: every answer shows REDACTED instead.
    for (const auto& path :
         {std::string{"/api/v1/actions"}, std::string{"/api/v1/machines/t-bmc-1"},
          std::string{"/api/v1/events?node=t-bmc-1"}, std::string{"/api/v1/jobs"},
          fmt::format("/api/v1/jobs/{}", str(json_of(failed).at("job").at("id")))}) {
        auto answer = http(server, "GET", path);
        ASSERT_TRUE(answer) << path;
        EXPECT_EQ(answer->body.find(password), std::string::npos) << path;
        EXPECT_EQ(answer->body.find(community), std::string::npos) << path;
    }
    EXPECT_NE(http(server, "GET", "/api/v1/jobs")->body.find("REDACTED"), std::string::npos);
    EXPECT_EQ(reboot_output.find(community), std::string::npos) << reboot_output;
    server.stop();
    EXPECT_EQ(server.log().find(password), std::string::npos);
    EXPECT_EQ(server.log().find(community), std::string::npos);
}

}  // namespace
}  // namespace aviary::test
