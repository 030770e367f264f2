// The logs when stderr is not a terminal (a service's journal or file, and this test run):
// lines gather in memory and are written together; a warning writes out everything before it
// at once, and nothing is lost or reordered.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <string>

#include "core/core.hpp"

namespace aviary::core {
namespace {

/// Points fd 2 at a pipe for the test's lifetime; read() takes what arrived so far.
class CapturedStderr {
public:
    CapturedStderr() {
        EXPECT_EQ(::pipe(fds_), 0);
        ::fcntl(fds_[0], F_SETFL, O_NONBLOCK);
        saved_ = ::dup(STDERR_FILENO);
        ::dup2(fds_[1], STDERR_FILENO);
    }
    ~CapturedStderr() {
        flush_logs();
        ::dup2(saved_, STDERR_FILENO);
        ::close(saved_);
        ::close(fds_[0]);
        ::close(fds_[1]);
    }
    CapturedStderr(const CapturedStderr&) = delete;
    CapturedStderr& operator=(const CapturedStderr&) = delete;

    /// What was written so far, waiting up to `within` for the first byte.
    std::string read(int within_ms = 0) {
        pollfd ready{.fd = fds_[0], .events = POLLIN, .revents = 0};
        ::poll(&ready, 1, within_ms);
        std::string out;
        char buffer[4096];
        for (ssize_t n; (n = ::read(fds_[0], buffer, sizeof buffer)) > 0;) {
            out.append(buffer, static_cast<std::size_t>(n));
        }
        return out;
    }

private:
    int fds_[2] = {-1, -1};
    int saved_ = -1;
};

TEST(Logs, AWarningWritesOutTheLinesBeforeItInOrder) {
    ASSERT_EQ(::isatty(STDERR_FILENO), 0) << "run with stderr redirected (ctest does)";
    auto log = logger("logtest");
    flush_logs();
    CapturedStderr captured;
    log->info("first {}", 1);
    log->info("second {}", 2);
    log->warn("third {}", 3);
    auto out = captured.read();
    auto first = out.find("info logtest: first 1");
    auto second = out.find("info logtest: second 2");
    auto third = out.find("warning logtest: third 3");
    ASSERT_NE(first, std::string::npos) << out;
    ASSERT_NE(second, std::string::npos) << out;
    ASSERT_NE(third, std::string::npos) << out;
    EXPECT_LT(first, second);
    EXPECT_LT(second, third);
}

TEST(Logs, InfoLinesAreWrittenWithinTheFlushIntervalWithoutAnotherLine) {
    auto log = logger("logtest");
    flush_logs();
    CapturedStderr captured;
    log->info("alone");
    // Bounded: the flusher writes within 100 ms; allow a loaded machine ten times that.
    std::string out;
    for (int i = 0; i < 10 && out.find("alone") == std::string::npos; ++i) {
        out += captured.read(100);
    }
    EXPECT_NE(out.find("info logtest: alone"), std::string::npos) << out;
}

TEST(Logs, FlushLogsWritesWhatIsGathering) {
    auto log = logger("logtest");
    flush_logs();
    CapturedStderr captured;
    log->info("before an abort");
    flush_logs();
    EXPECT_NE(captured.read().find("before an abort"), std::string::npos);
}

}  // namespace
}  // namespace aviary::core
