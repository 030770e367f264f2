#include "support/server_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#ifndef AVIARY_BINARY
#error "AVIARY_BINARY must name the aviary executable under test"
#endif

namespace aviary::test {
namespace fs = std::filesystem;

TempDir::TempDir() {
    auto base = fs::temp_directory_path() / "aviary-test-XXXXXX";
    std::string pattern = base.string();
    char* made = mkdtemp(pattern.data());
    if (made == nullptr) {
        std::perror("mkdtemp");
        std::abort();
    }
    path_ = made;
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds deadline) {
    auto until = std::chrono::steady_clock::now() + deadline;
    // A bounded poll, not a timing assumption: the condition decides, the deadline only stops
    // a broken run from hanging.
    while (std::chrono::steady_clock::now() < until) {
        if (condition()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds{20});
    }
    return condition();
}

int connect_to(const std::string& address) {
    auto colon = address.rfind(':');
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
    ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        if (fd >= 0) {
            ::close(fd);
        }
        return -1;
    }
    return fd;
}

std::string raw_exchange(const std::string& address,
                         const std::string& request,
                         std::chrono::milliseconds within) {
    int fd = connect_to(address);
    if (fd < 0) {
        return {};
    }
    (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    std::string received;
    const auto deadline = std::chrono::steady_clock::now() + within;
    std::array<char, 4096> buffer{};
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            break;
        }
        pollfd ready{.fd = fd, .events = POLLIN, .revents = 0};
        if (::poll(&ready, 1, static_cast<int>(left.count())) <= 0) {
            break;
        }
        auto n = ::recv(fd, buffer.data(), buffer.size(), 0);
        if (n <= 0) {
            break;
        }
        received.append(buffer.data(), static_cast<std::size_t>(n));
    }
    ::close(fd);
    return received;
}

CommandResult run_command(const std::string& command_line) {
    CommandResult result;
    FILE* pipe = popen(command_line.c_str(), "r");
    if (pipe == nullptr) {
        return result;
    }
    std::array<char, 4096> buffer{};
    size_t n = 0;
    while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
        result.output.append(buffer.data(), n);
    }
    int status = pclose(pipe);
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
}

int wait_for_exit(pid_t pid, std::chrono::milliseconds deadline) {
    int status = 0;
    const bool exited = wait_until([&] { return waitpid(pid, &status, WNOHANG) == pid; }, deadline);
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

ServerProcess::ServerProcess(std::string config_yaml, std::string data_dir, std::string listen)
    : listen_(std::move(listen)) {
    if (data_dir.empty()) {
        owned_dir_ = std::make_unique<TempDir>();
        data_dir_ = owned_dir_->path();
    } else {
        data_dir_ = std::move(data_dir);
    }
    if (!config_yaml.empty()) {
        config_path_ = (fs::path{data_dir_} / "aviary.yaml").string();
        std::ofstream{config_path_} << config_yaml;
    }
}

ServerProcess::~ServerProcess() {
    if (pid_ > 0) {
        kill9();
    }
}

bool ServerProcess::start() {
    auto addr_file = fs::path{data_dir_} / "aviary.addr";
    std::error_code ec;
    fs::remove(addr_file, ec);
    auto log_path = fs::path{data_dir_} / "serve.log";
    std::vector<std::string> args{AVIARY_BINARY, "serve",      "--listen",
                                  listen_,       "--data-dir", data_dir_};
    if (!config_path_.empty()) {
        args.insert(args.end(), {"--config", config_path_});
    }
    pid_ = fork();
    if (pid_ == 0) {
        int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        std::vector<char*> argv;
        for (auto& arg : args) {
            argv.push_back(arg.data());
        }
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    bool published = wait_until([&] { return fs::exists(addr_file) || !running(); });
    if (!published || !running()) {
        return false;
    }
    std::ifstream{addr_file} >> address_;
    return wait_until([&] {
        auto health = get("/healthz");
        return health && health->status == 200;
    });
}

bool ServerProcess::running() {
    if (pid_ <= 0) {
        return false;
    }
    int status = 0;
    pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        pid_ = -1;
        return false;
    }
    return true;
}

int ServerProcess::wait_exit(std::chrono::milliseconds deadline) {
    if (!wait_until([&] { return !running(); }, deadline)) {
        return -1;
    }
    return exit_status_;
}

int ServerProcess::stop(int signal) {
    if (pid_ > 0) {
        ::kill(pid_, signal);
    }
    int status = wait_exit(std::chrono::seconds{30});
    if (status == -1) {
        kill9();
    }
    return status;
}

void ServerProcess::send_signal(int signal) {
    if (pid_ > 0) {
        ::kill(pid_, signal);
    }
}

void ServerProcess::kill9() {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        int status = 0;
        waitpid(pid_, &status, 0);
        exit_status_ = 128 + SIGKILL;
        pid_ = -1;
    }
}

std::string ServerProcess::url(std::string_view path) const {
    return fmt::format("{}://{}{}", tls_ ? "https" : "http", address_, path);
}

std::string ServerProcess::log() const {
    std::ifstream in{fs::path{data_dir_} / "serve.log"};
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

core::Result<net::ClientResponse> ServerProcess::get(std::string_view path) const {
    net::ClientRequest request;
    request.url = url(path);
    request.timeout = std::chrono::seconds{10};
    request.tls = tls_;
    return net::fetch_sync(std::move(request));
}

core::Result<net::ClientResponse> ServerProcess::post_json(std::string_view path,
                                                           std::string body) const {
    net::ClientRequest request;
    request.method = "POST";
    request.url = url(path);
    request.headers.push_back({"Content-Type", "application/json"});
    request.body = std::move(body);
    request.timeout = std::chrono::seconds{10};
    request.tls = tls_;
    return net::fetch_sync(std::move(request));
}

std::string rpc_body(std::string_view method, std::string_view params_json, int id) {
    return fmt::format(R"({{"jsonrpc":"2.0","method":"{}","params":[{}],"id":{}}})", method,
                       params_json, id);
}

}  // namespace aviary::test
