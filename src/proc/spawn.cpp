#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <system_error>
#include <utility>

#include "proc/process_state.hpp"

extern char** environ;  // NOLINT: POSIX declares it nowhere else

namespace aviary::proc {
namespace {

constexpr std::string_view kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

// Owns one descriptor until released.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    int get() const { return fd_; }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd) { UniqueFd old{std::exchange(fd_, fd)}; }

private:
    int fd_ = -1;
};

struct Pipe {
    UniqueFd read;
    UniqueFd write;
};

core::ErrorCode code_for(int error) {
    switch (error) {
        case ENOENT:
        case ENOTDIR:
            return core::ErrorCode::kNotFound;
        case EACCES:
        case EPERM:
            return core::ErrorCode::kPermissionDenied;
        default:
            return core::ErrorCode::kUnavailable;
    }
}

core::Error cannot_run(std::string_view program, int error) {
    return core::Error{code_for(error), "cannot run \"" + std::string{program} +
                                            "\": " + std::system_category().message(error)};
}

std::vector<std::string> child_env(const SpawnOptions& options) {
    std::vector<std::string> env;
    if (options.inherit_env) {
        for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
            env.emplace_back(*entry);
        }
    }
    for (const auto& [name, value] : options.env_add) {
        const std::string prefix = name + "=";
        std::erase_if(env, [&](const std::string& e) { return e.starts_with(prefix); });
        env.push_back(prefix + value);
    }
    return env;
}

std::string search_path(const SpawnOptions& options) {
    for (const auto& [name, value] : options.env_add) {
        if (name == "PATH") {
            return value;
        }
    }
    const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe): read only
    return path != nullptr ? std::string{path} : std::string{kDefaultPath};
}

bool is_executable_file(const std::string& candidate) {
    struct stat info {};
    return ::stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
           ::access(candidate.c_str(), X_OK) == 0;
}

// The file to execute: argv[0] itself when it holds a slash, else its first match in PATH.
core::Result<std::string> resolve(const SpawnOptions& options) {
    const std::string& program = options.argv.front();
    if (program.find('/') != std::string::npos) {
        return program;
    }
    const std::string path = search_path(options);
    std::string_view rest{path};
    while (true) {
        const auto colon = rest.find(':');
        // An empty PATH entry means the current directory. (Built without assigning a literal
        // over `dir`: GCC 12 -O2 reports that assignment as a false -Wrestrict.)
        std::string_view dir = rest.substr(0, colon);
        std::string candidate = dir.empty() ? std::string{"."} : std::string{dir};
        candidate += "/";
        candidate += program;
        if (is_executable_file(candidate)) {
            return candidate;
        }
        if (colon == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(colon + 1);
    }
    return core::Error{core::ErrorCode::kNotFound,
                       "cannot run \"" + program + "\": no such file in PATH"};
}

int make_pipe(Pipe& pipe) {
    std::array<int, 2> fds{};
    if (::pipe2(fds.data(), O_CLOEXEC) != 0) {
        return errno;
    }
    pipe.read.reset(fds[0]);
    pipe.write.reset(fds[1]);
    return 0;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
    std::vector<char*> result;
    result.reserve(strings.size() + 1);
    for (auto& s : strings) {
        result.push_back(s.data());
    }
    result.push_back(nullptr);
    return result;
}

// posix_spawn attributes and file actions, destroyed together.
class SpawnSetup {
public:
    SpawnSetup() {
        ::posix_spawn_file_actions_init(&actions_);
        ::posix_spawnattr_init(&attr_);
    }
    SpawnSetup(const SpawnSetup&) = delete;
    SpawnSetup& operator=(const SpawnSetup&) = delete;
    ~SpawnSetup() {
        ::posix_spawn_file_actions_destroy(&actions_);
        ::posix_spawnattr_destroy(&attr_);
    }

    // Returns 0 or an errno.
    int prepare(const std::string& cwd, const Pipe& out, const Pipe& err) {
        int rc =
            ::posix_spawn_file_actions_addopen(&actions_, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        rc = rc != 0 ? rc : ::posix_spawn_file_actions_adddup2(&actions_, out.write.get(), 1);
        rc = rc != 0 ? rc : ::posix_spawn_file_actions_adddup2(&actions_, err.write.get(), 2);
        if (rc == 0 && !cwd.empty()) {
            rc = ::posix_spawn_file_actions_addchdir_np(&actions_, cwd.c_str());
        }
        // Close-on-exec for everything else, whatever flags its creator forgot.
        rc = rc != 0 ? rc : ::posix_spawn_file_actions_addclosefrom_np(&actions_, 3);
        // Own process group; default signal handling (the server ignores SIGPIPE, the child
        // must not inherit that) and an empty signal mask.
        sigset_t all;
        sigset_t none;
        ::sigfillset(&all);
        ::sigemptyset(&none);
        rc = rc != 0 ? rc : ::posix_spawnattr_setpgroup(&attr_, 0);
        rc = rc != 0 ? rc : ::posix_spawnattr_setsigdefault(&attr_, &all);
        rc = rc != 0 ? rc : ::posix_spawnattr_setsigmask(&attr_, &none);
        const short flags = POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
        rc = rc != 0 ? rc : ::posix_spawnattr_setflags(&attr_, flags);
        return rc;
    }

    const posix_spawn_file_actions_t* actions() const { return &actions_; }
    const posix_spawnattr_t* attr() const { return &attr_; }

private:
    posix_spawn_file_actions_t actions_{};
    posix_spawnattr_t attr_{};
};

/// What the child of clone_exec reads, and the errno it leaves behind when it cannot exec.
/// Everything is built before the clone: the child only makes system calls.
struct ChildPlan {
    const SpawnOptions* options = nullptr;
    const char* file = nullptr;
    char* const* argv = nullptr;
    char* const* envp = nullptr;
    const char* cwd = nullptr;
    int out_fd = -1;
    int err_fd = -1;
    int max_fd = 0;
    pid_t parent = 0;
    const sigset_t* mask_after = nullptr;
    volatile int error = 0;  // written by the child, read by the parent once it resumes
};

/// The child's side of clone_exec. It runs on the parent's memory while the parent waits
/// (CLONE_VM | CLONE_VFORK), so it makes system calls only, as a vfork child must, and an exec
/// failure is left in the plan as an errno before it exits.
int child_main(void* arg) {
    auto& plan = *static_cast<ChildPlan*>(arg);
    auto fail = [&plan](int error) {
        plan.error = error;
        ::_exit(127);
    };
    // Dies with the thread that cloned it; checked after, so a parent already gone is seen.
    if (plan.options->die_with_parent &&
        (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != plan.parent)) {
        fail(ESRCH);
    }
    if (::setpgid(0, 0) != 0) {
        fail(errno);
    }
    // The handler table is the child's own (no CLONE_SIGHAND): reset it while every signal is
    // still blocked, so none of the parent's handlers can run on the shared memory.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
        (void)::sigaction(sig, &dfl, nullptr);  // SIGKILL and SIGSTOP refuse: fine
    }
    ::sigprocmask(SIG_SETMASK, plan.mask_after, nullptr);
    const int null = ::open("/dev/null", O_RDONLY);
    if (null < 0 || ::dup2(null, STDIN_FILENO) < 0 || ::dup2(plan.out_fd, STDOUT_FILENO) < 0 ||
        ::dup2(plan.err_fd, STDERR_FILENO) < 0) {
        fail(errno);
    }
    if (plan.cwd != nullptr && ::chdir(plan.cwd) != 0) {
        fail(errno);
    }
    if (plan.options->umask) {
        ::umask(static_cast<mode_t>(*plan.options->umask));
    }
    // Everything else closes at exec. CLOSE_RANGE_CLOEXEC (Linux 5.11), else one fcntl per
    // possible descriptor.
    if (::syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) != 0) {
        for (int fd = 3; fd < plan.max_fd; ++fd) {
            (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
    }
    ::execve(plan.file, plan.argv, plan.envp);
    fail(errno);
    return 127;
}

/// Starts a child for what posix_spawn cannot do: PR_SET_PDEATHSIG and a umask set between the
/// clone and the exec. The child shares this process's memory and this thread waits until it
/// has exec'd or failed (CLONE_VM | CLONE_VFORK, as posix_spawn does inside glibc): no page
/// tables copied and no copy-on-write faults after, which a fork of a threaded process pays on
/// every restart. Returns 0 or an errno.
int clone_exec(const SpawnOptions& options,
               const std::string& file,
               char* const* argv,
               char* const* envp,
               const Pipe& out,
               const Pipe& err,
               pid_t& child) {
    rlimit files{};
    ChildPlan plan;
    plan.options = &options;
    plan.file = file.c_str();
    plan.argv = argv;
    plan.envp = envp;
    plan.cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
    plan.out_fd = out.write.get();
    plan.err_fd = err.write.get();
    plan.max_fd = ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < 65536
                      ? static_cast<int>(files.rlim_cur)
                      : 65536;
    plan.parent = ::getpid();
    sigset_t none;
    ::sigemptyset(&none);
    plan.mask_after = &none;
    // The child's stack: it only makes system calls, so a small one is plenty.
    constexpr std::size_t kStack = 64 * 1024;
    auto stack = std::make_unique<std::byte[]>(kStack);
    sigset_t all;
    sigset_t before;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &before);
    const pid_t pid =
        ::clone(child_main, stack.get() + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
    const int clone_error = errno;
    ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
    if (pid < 0) {
        return clone_error;
    }
    if (plan.error != 0) {
        int raw = 0;
        while (::waitpid(pid, &raw, 0) < 0 && errno == EINTR) {
        }
        return plan.error;
    }
    child = pid;
    return 0;
}

}  // namespace

core::Result<Process> spawn(asio::any_io_executor executor, SpawnOptions options) {
    if (options.argv.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument, "cannot run a process: empty argv"};
    }
    const std::string& program = options.argv.front();
    auto file = resolve(options);
    if (!file) {
        return file.error();
    }
    Pipe out;
    Pipe err;
    if (int rc = make_pipe(out); rc != 0) {
        return cannot_run(program, rc);
    }
    if (int rc = make_pipe(err); rc != 0) {
        return cannot_run(program, rc);
    }
    SpawnSetup setup;
    if (int rc = setup.prepare(options.cwd, out, err); rc != 0) {
        return cannot_run(program, rc);
    }
    auto env = child_env(options);
    auto envp = pointers(env);
    auto argv = options.argv;
    auto argvp = pointers(argv);
    pid_t child = -1;
    const int rc = options.die_with_parent || options.umask
                       ? clone_exec(options, *file, argvp.data(), envp.data(), out, err, child)
                       : ::posix_spawn(&child, file->c_str(), setup.actions(), setup.attr(),
                                       argvp.data(), envp.data());
    if (rc != 0) {
        if (!options.cwd.empty() && (rc == ENOENT || rc == ENOTDIR || rc == EACCES) &&
            ::access(options.cwd.c_str(), X_OK) != 0) {
            return core::Error{code_for(rc), "cannot run \"" + program + "\" in \"" + options.cwd +
                                                 "\": " + std::system_category().message(rc)};
        }
        return cannot_run(program, rc);
    }
    // The child holds the write ends now; ours must go or end of file never comes.
    out.write.reset(-1);
    err.write.reset(-1);
    // A child that has already exited is a zombie until reaped, so pidfd_open still finds it.
    UniqueFd pidfd{static_cast<int>(::syscall(SYS_pidfd_open, child, 0))};
    if (pidfd.get() < 0) {
        const int error = errno;
        ::killpg(child, SIGKILL);
        int raw = 0;
        while (::waitpid(child, &raw, 0) < 0 && errno == EINTR) {
        }
        return cannot_run(program, error);
    }
    auto state = std::make_unique<Process::State>(executor, child, pidfd.release(),
                                                  out.read.release(), err.read.release());
    return Process{std::move(state)};
}

}  // namespace aviary::proc
