// logs::Shipper on a real directory: lines numbered and shipped in order, sent again until
// acknowledged, kept across a restart and a crash (a torn tail cut), dropped oldest-first past
// the buffer's cap with the count reported, offer() never held by a slow serve, stop() never held
// by a backoff. No test waits for time to pass: each waits (10 s at most) for a condition.
#include "logs/shipper.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace aviary::logs {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto kPatience = 10s;

/// A serve stand-in: records what each accepted batch held; fails while `failing` is set or for
/// the next `fail_next` calls (with `code`), and blocks while `held` is set. Checks that every
/// batch it is given is in order, consecutive and within its bounds.
class Serve {
public:
    explicit Serve(std::size_t max_batch_lines = 5'000) : max_batch_lines_(max_batch_lines) {}

    Send send() {
        return [this](const Shipment& batch) -> core::Result<void> {
            std::unique_lock lock{mu_};
            ++calls_;
            changed_.notify_all();
            changed_.wait(lock, [&] { return !held_; });
            if (batch.records.empty() || batch.records.size() > max_batch_lines_) {
                bad_batches_.push_back(fmt::format("{} lines", batch.records.size()));
            }
            for (std::size_t i = 1; i < batch.records.size(); ++i) {
                if (batch.records[i].seq != batch.records[i - 1].seq + 1) {
                    bad_batches_.push_back(
                        fmt::format("{} after {}", batch.records[i].seq, batch.records[i - 1].seq));
                }
            }
            if (failing_ || fail_next_ > 0) {
                fail_next_ -= fail_next_ > 0 ? 1 : 0;
                return core::Error{code_, "serve is away"};
            }
            for (const auto& r : batch.records) {
                if (!seqs_.empty() && r.seq <= seqs_.back()) {
                    bad_batches_.push_back(fmt::format("{} again", r.seq));
                }
                seqs_.push_back(r.seq);
                messages_.push_back(r.message);
                last_ = r;
            }
            dropped_ += batch.dropped;
            stream_ = batch.stream;
            changed_.notify_all();
            return {};
        };
    }
    void fail(bool on, core::ErrorCode code = core::ErrorCode::kUnavailable) {
        std::lock_guard lock{mu_};
        failing_ = on;
        code_ = code;
    }
    void fail_next(int calls) {
        std::lock_guard lock{mu_};
        fail_next_ = calls;
    }
    void hold(bool on) {
        {
            std::lock_guard lock{mu_};
            held_ = on;
        }
        changed_.notify_all();
    }
    /// Waits (kPatience at most) until `done` holds of what was received.
    bool wait(const std::function<bool(const Serve&)>& done) {
        std::unique_lock lock{mu_};
        return changed_.wait_for(lock, kPatience, [&] { return done(*this); });
    }

    std::vector<std::int64_t> seqs_;
    std::vector<std::string> messages_;
    std::uint64_t dropped_ = 0;
    std::uint64_t calls_ = 0;
    std::string stream_;
    store::LogRecord last_;
    std::vector<std::string> bad_batches_;  ///< what was wrong with a batch: none expected

private:
    std::size_t max_batch_lines_;
    std::mutex mu_;
    std::condition_variable changed_;
    bool failing_ = false;
    int fail_next_ = 0;
    bool held_ = false;
    core::ErrorCode code_ = core::ErrorCode::kUnavailable;
};

std::vector<fs::path> segment_files(const fs::path& dir) {
    std::vector<fs::path> out;
    for (const auto& entry : fs::directory_iterator{dir}) {
        if (entry.path().extension() == ".seg") {
            out.push_back(entry.path());
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

class ShipperTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               fmt::format("aviary-shipper-{}-{}-{}", ::getpid(),
                           ::testing::UnitTest::GetInstance()->random_seed(),
                           ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
    }
    void TearDown() override {
        fs::remove_all(dir_);
        fs::remove_all(crash_dir());
    }
    fs::path crash_dir() const { return dir_.string() + "-crash"; }

    ShipperSettings settings() const {
        return ShipperSettings{.dir = dir_.string(),
                               .node = "canary-a",
                               .service = "nodeos",
                               .linger = 5ms,
                               .min_backoff = 1ms,
                               .max_backoff = 20ms};
    }
    static void offer_lines(Shipper& shipper, int from, int count, std::size_t pad = 0) {
        for (int i = from; i < from + count; ++i) {
            shipper.offer(1'000 + i, i % 2 == 0 ? "stdout" : "stderr", 6,
                          "line " + std::to_string(i) + std::string(pad, '.'));
        }
    }
    /// Waits (kPatience at most) until `done` holds of the shipper's stats. The shipper has no
    /// hook to wait on, so its counters are read every 2 ms: a bounded poll, not a timing.
    static bool settle(const Shipper& shipper,
                       const std::function<bool(const ShipperStats&)>& done) {
        const auto deadline = std::chrono::steady_clock::now() + kPatience;
        while (!done(shipper.stats())) {
            if (std::chrono::steady_clock::now() > deadline) {
                return false;
            }
            std::this_thread::sleep_for(2ms);
        }
        return true;
    }
    /// Everything offered is on the disk or dropped, and serve has all that is on the disk.
    static bool drained(const ShipperStats& s) {
        return s.written + s.dropped >= s.offered &&
               s.acked_seq >= static_cast<std::int64_t>(s.written);
    }

    fs::path dir_;
};

TEST_F(ShipperTest, LinesShipInOrderNumberedFromOneWithTheirLabels) {
    Serve serve;
    Shipper shipper{settings(), serve.send()};
    ASSERT_TRUE(shipper.start());
    offer_lines(shipper, 0, 12'000);
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 12'000; }));
    shipper.stop();
    EXPECT_EQ(serve.bad_batches_, std::vector<std::string>{});
    ASSERT_EQ(serve.seqs_.size(), 12'000U) << "nothing twice";
    for (std::size_t i = 0; i < serve.seqs_.size(); ++i) {
        ASSERT_EQ(serve.seqs_[i], static_cast<std::int64_t>(i) + 1);
        ASSERT_EQ(serve.messages_[i], "line " + std::to_string(i));
    }
    EXPECT_EQ(serve.last_.node, "canary-a");
    EXPECT_EQ(serve.last_.sender, "nodeos");
    EXPECT_EQ(serve.last_.source, "stderr");
    EXPECT_EQ(serve.last_.time_ns, 1'000 + 11'999);
    EXPECT_EQ(serve.stream_, shipper.stream());
    EXPECT_TRUE(shipper.stream().starts_with("canary-a@"));
    EXPECT_EQ(serve.dropped_, 0U);
    const auto stats = shipper.stats();
    EXPECT_EQ(stats.offered, 12'000U);
    EXPECT_EQ(stats.written, 12'000U);
    EXPECT_EQ(stats.shipped, 12'000U);
    EXPECT_EQ(stats.dropped, 0U);
    EXPECT_EQ(stats.acked_seq, 12'000);
}

TEST_F(ShipperTest, ASendThatFailsNTimesIsRetriedAndEveryLineArrivesOnce) {
    auto small = settings();
    small.segment_bytes = 4 * 1024;  // many files, each removed once serve has it
    small.max_batch_lines = 50;
    Serve serve{50};
    serve.fail_next(5);
    Shipper shipper{small, serve.send()};
    ASSERT_TRUE(shipper.start());
    offer_lines(shipper, 0, 500);
    ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) { return s.shipped == 500; }));
    shipper.stop();
    const auto stats = shipper.stats();
    EXPECT_EQ(stats.sends_failed, 5U);
    EXPECT_EQ(stats.last_error, "");
    EXPECT_EQ(stats.dropped, 0U);
    EXPECT_EQ(serve.bad_batches_, std::vector<std::string>{});
    ASSERT_EQ(serve.seqs_.size(), 500U);
    for (std::size_t i = 0; i < serve.seqs_.size(); ++i) {
        ASSERT_EQ(serve.seqs_[i], static_cast<std::int64_t>(i) + 1);
    }
    const auto files = segment_files(dir_);
    ASSERT_EQ(files.size(), 1U) << "acknowledged files are removed, but the one written to";
    EXPECT_EQ(stats.buffered_bytes, fs::file_size(files[0]));
}

TEST_F(ShipperTest, TheLastErrorIsKeptWhileServeIsAway) {
    Serve serve;
    serve.fail(true);
    Shipper shipper{settings(), serve.send()};
    ASSERT_TRUE(shipper.start());
    offer_lines(shipper, 0, 10);
    ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) { return s.sends_failed >= 3; }));
    EXPECT_EQ(shipper.stats().last_error, "serve is away");
    EXPECT_EQ(shipper.stats().acked_seq, 0);
    serve.fail(false);
    ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) { return s.shipped == 10; }));
    EXPECT_EQ(shipper.stats().last_error, "");
}

TEST_F(ShipperTest, StopDoesNotWaitForABackoff) {
    auto patient = settings();
    patient.min_backoff = 1h;
    patient.max_backoff = 1h;
    Serve serve;
    serve.fail(true);
    Shipper shipper{patient, serve.send()};
    ASSERT_TRUE(shipper.start());
    offer_lines(shipper, 0, 3);
    ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) { return s.sends_failed == 1; }));
    auto stopped = std::async(std::launch::async, [&] { shipper.stop(); });
    ASSERT_EQ(stopped.wait_for(kPatience), std::future_status::ready)
        << "stop() waited for the backoff";
    shipper.stop();  // idempotent
    EXPECT_EQ(shipper.stats().written, 3U);
}

TEST_F(ShipperTest, ARestartSendsOnlyWhatWasNotAcknowledgedAndNumbersOn) {
    {
        Serve serve;
        Shipper shipper{settings(), serve.send()};
        ASSERT_TRUE(shipper.start());
        offer_lines(shipper, 0, 100);
        ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) { return s.acked_seq == 100; }));
        serve.fail(true);
        offer_lines(shipper, 100, 50);
        ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) {
            return s.written == 150 && s.sends_failed >= 1;
        }));
        shipper.stop();
    }
    Serve serve;
    Shipper again{settings(), serve.send()};
    ASSERT_TRUE(again.start());
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 50; }));
    offer_lines(again, 150, 1);
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 51; }));
    again.stop();
    EXPECT_EQ(serve.bad_batches_, std::vector<std::string>{});
    ASSERT_EQ(serve.seqs_.size(), 51U);
    EXPECT_EQ(serve.seqs_.front(), 101) << "the first 100 were acknowledged before the restart";
    EXPECT_EQ(serve.messages_.front(), "line 100");
    EXPECT_EQ(serve.seqs_[49], 150);
    EXPECT_EQ(serve.seqs_.back(), 151) << "a new line takes the next number";
    EXPECT_EQ(serve.dropped_, 0U);
}

TEST_F(ShipperTest, ATornTailIsCutAtStartAndTheLinesBeforeItShip) {
    {
        Serve serve;
        serve.fail(true);
        Shipper shipper{settings(), serve.send()};
        ASSERT_TRUE(shipper.start());
        offer_lines(shipper, 0, 20);
        ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) { return s.written == 20; }));
        shipper.stop();
    }
    const auto segments = segment_files(dir_);
    ASSERT_EQ(segments.size(), 1U);
    const auto whole = fs::file_size(segments[0]);
    {
        std::ofstream torn{segments[0], std::ios::binary | std::ios::app};
        torn << std::string("\x30\x00\x00\x00garbage", 11);  // a frame's header, cut short
    }
    Serve serve;
    Shipper again{settings(), serve.send()};
    ASSERT_TRUE(again.start());
    EXPECT_EQ(again.stats().torn_bytes, 11U);
    EXPECT_EQ(fs::file_size(segments[0]), whole) << "cut on the disk too";
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 20; }));
    offer_lines(again, 20, 1);
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 21; }));
    again.stop();
    EXPECT_EQ(serve.bad_batches_, std::vector<std::string>{});
    EXPECT_EQ(serve.seqs_.front(), 1);
    EXPECT_EQ(serve.messages_[19], "line 19");
    EXPECT_EQ(serve.seqs_.back(), 21);
    EXPECT_EQ(serve.messages_.back(), "line 20");
}

TEST_F(ShipperTest, GarbageThatLooksLikeAFrameHeaderIsCutToo) {
    {
        Serve serve;
        serve.fail(true);
        Shipper shipper{settings(), serve.send()};
        ASSERT_TRUE(shipper.start());
        offer_lines(shipper, 0, 5);
        ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) { return s.written == 5; }));
        shipper.stop();
    }
    {
        // A whole header with a plausible length, a payload long enough, a wrong checksum.
        std::ofstream torn{segment_files(dir_)[0], std::ios::binary | std::ios::app};
        torn << std::string("\x40\x00\x00\x00", 4) << std::string(8 + 64, 'x');
    }
    Serve serve;
    Shipper again{settings(), serve.send()};
    ASSERT_TRUE(again.start());
    EXPECT_EQ(again.stats().torn_bytes, 4U + 8 + 64);
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 5; }));
    again.stop();
    EXPECT_EQ(serve.seqs_, (std::vector<std::int64_t>{1, 2, 3, 4, 5}));
}

TEST_F(ShipperTest, PastTheCapTheOldestLinesGoAndServeIsToldHowMany) {
    auto capped = settings();
    capped.max_buffer_bytes = 64 * 1024;
    capped.segment_bytes = 8 * 1024;
    capped.max_batch_bytes = 8 * 1024;
    Serve serve;
    serve.fail(true);
    Shipper shipper{capped, serve.send()};
    ASSERT_TRUE(shipper.start());
    offer_lines(shipper, 0, 4'000, 100);  // ~530 KB against a 64 KiB buffer
    ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) { return s.written == 4'000; }));
    // A send failing after the last write: the cap has been applied around it.
    const auto failed = shipper.stats().sends_failed;
    ASSERT_TRUE(
        settle(shipper, [&](const ShipperStats& s) { return s.sends_failed >= failed + 2; }));
    const auto full = shipper.stats();
    EXPECT_GT(full.dropped, 3'000U);
    // Past the cap by the files the batch being sent spans at most (a batch and two files).
    EXPECT_LE(full.buffered_bytes, 64U * 1024 + 3 * 8 * 1024);
    serve.fail(false);
    ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) { return s.acked_seq == 4'000; }));
    shipper.stop();
    const auto stats = shipper.stats();
    EXPECT_EQ(serve.bad_batches_, std::vector<std::string>{});
    EXPECT_EQ(stats.offered, stats.shipped + stats.dropped) << "every line is accounted for";
    EXPECT_EQ(serve.dropped_, stats.dropped) << "serve was told of every drop";
    EXPECT_EQ(serve.seqs_.back(), 4'000) << "the newest lines are the ones kept";
    EXPECT_EQ(serve.seqs_.size(), stats.shipped);
    EXPECT_EQ(serve.seqs_.front(), static_cast<std::int64_t>(stats.dropped) + 1)
        << "the oldest went";
}

TEST_F(ShipperTest, LinesTheCapDroppedAreReportedAfterAKill) {
    auto capped = settings();
    capped.max_buffer_bytes = 64 * 1024;
    capped.segment_bytes = 8 * 1024;
    capped.min_backoff = 1h;  // after its first failure the sender waits: the disk holds still
    capped.max_backoff = 1h;
    Serve away;
    away.fail(true);
    Shipper shipper{capped, away.send()};
    ASSERT_TRUE(shipper.start());
    offer_lines(shipper, 0, 2'000, 100);
    // Files are removed after they leave the accounting: wait for the disk to agree with it.
    ASSERT_TRUE(settle(shipper, [&](const ShipperStats& s) {
        std::uint64_t on_disk = 0;
        std::error_code ec;
        for (fs::directory_iterator it{dir_, ec}, end; !ec && it != end; it.increment(ec)) {
            const auto size = it->path().extension() == ".seg" ? fs::file_size(it->path(), ec) : 0;
            on_disk += ec ? 0 : size;  // gone since it was listed: not counted
        }
        return s.written == 2'000 && s.sends_failed == 1 && s.dropped > 0 &&
               s.buffered_bytes <= capped.max_buffer_bytes && on_disk == s.buffered_bytes;
    }));
    const auto before = shipper.stats();
    // What a kill -9 leaves: the files as they are, no stop(), no last checkpoint.
    fs::copy(dir_, crash_dir(), fs::copy_options::recursive);
    shipper.stop();

    Serve serve;
    auto again_settings = settings();
    again_settings.dir = crash_dir().string();
    Shipper again{again_settings, serve.send()};
    ASSERT_TRUE(again.start());
    EXPECT_EQ(again.stream(), shipper.stream());
    ASSERT_TRUE(
        serve.wait([](const Serve& s) { return !s.seqs_.empty() && s.seqs_.back() == 2'000; }));
    again.stop();
    EXPECT_EQ(serve.bad_batches_, std::vector<std::string>{});
    EXPECT_EQ(serve.dropped_, before.dropped) << "the gap before the oldest kept line";
    EXPECT_EQ(serve.seqs_.size() + serve.dropped_, 2'000U);
    EXPECT_EQ(serve.seqs_.front(), static_cast<std::int64_t>(before.dropped) + 1);
}

TEST_F(ShipperTest, DropsServeWasNotToldOfAreKeptAcrossARestart) {
    {
        Serve serve;
        serve.fail(true);
        Shipper shipper{settings(), serve.send()};
        offer_lines(shipper, 0, 3);  // before start(): dropped, counted
        ASSERT_TRUE(shipper.start());
        offer_lines(shipper, 3, 2);
        ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) { return s.sends_failed >= 1; }));
        shipper.stop();
        EXPECT_EQ(shipper.stats().dropped, 3U);
    }
    Serve serve;
    Shipper again{settings(), serve.send()};
    ASSERT_TRUE(again.start());
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 2; }));
    again.stop();
    EXPECT_EQ(serve.dropped_, 3U);
    EXPECT_EQ(serve.seqs_, (std::vector<std::int64_t>{1, 2}));
    EXPECT_EQ(serve.messages_.front(), "line 3");
}

TEST_F(ShipperTest, OfferNeverWaitsForAStuckServe) {
    auto small = settings();
    small.max_pending_lines = 1'000;
    Serve serve;
    serve.hold(true);
    Shipper shipper{small, serve.send()};
    ASSERT_TRUE(shipper.start());
    offer_lines(shipper, 0, 1);
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.calls_ >= 1; })) << "a send is stuck";
    // The send blocks; offering goes on, into memory then the disk, never into the caller.
    offer_lines(shipper, 1, 100'000);
    EXPECT_EQ(shipper.stats().offered, 100'001U);
    serve.hold(false);
    ASSERT_TRUE(settle(shipper, drained));
    shipper.stop();
    const auto stats = shipper.stats();
    EXPECT_EQ(serve.bad_batches_, std::vector<std::string>{});
    EXPECT_EQ(stats.offered, stats.shipped + stats.dropped);
    EXPECT_EQ(stats.written, stats.shipped);
    EXPECT_EQ(serve.dropped_, stats.dropped);
}

TEST_F(ShipperTest, ARefusedBatchIsDroppedAndCountedSoTheRestCanGo) {
    Serve serve;
    serve.fail(true, core::ErrorCode::kInvalidArgument);
    Shipper shipper{settings(), serve.send()};
    ASSERT_TRUE(shipper.start());
    offer_lines(shipper, 0, 10);
    ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) { return s.acked_seq == 10; }));
    EXPECT_EQ(shipper.stats().dropped, 10U);
    serve.fail(false);
    offer_lines(shipper, 10, 5);
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 5; }));
    shipper.stop();
    EXPECT_EQ(serve.seqs_.front(), 11);
    EXPECT_EQ(serve.dropped_, 0U) << "serve refused those itself: it knows";
    const auto stats = shipper.stats();
    EXPECT_EQ(stats.offered, stats.shipped + stats.dropped);
}

TEST_F(ShipperTest, AWipedBufferStartsANewStream) {
    Serve serve;
    std::string first;
    {
        Shipper shipper{settings(), serve.send()};
        ASSERT_TRUE(shipper.start());
        first = shipper.stream();
        offer_lines(shipper, 0, 3);
        ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 3; }));
    }
    {
        Shipper same{settings(), serve.send()};
        ASSERT_TRUE(same.start());
        EXPECT_EQ(same.stream(), first);
    }
    fs::remove_all(dir_);
    Shipper fresh{settings(), serve.send()};
    ASSERT_TRUE(fresh.start());
    EXPECT_NE(fresh.stream(), first);
    EXPECT_TRUE(fresh.stream().starts_with("canary-a@"));
    offer_lines(fresh, 3, 1);
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 4; }));
    fresh.stop();
    EXPECT_EQ(serve.stream_, fresh.stream());
    EXPECT_EQ(serve.seqs_.back(), 1) << "a new stream numbers from 1";
}

TEST_F(ShipperTest, AShipperStartsOnce) {
    Serve serve;
    Shipper shipper{settings(), serve.send()};
    ASSERT_TRUE(shipper.start());
    EXPECT_FALSE(shipper.start());
    shipper.stop();
    EXPECT_FALSE(shipper.start());
}

TEST_F(ShipperTest, BytesThatAreNotUtf8AreReplacedAndLongLinesCutBetweenCharacters) {
    Serve serve;
    Shipper shipper{settings(), serve.send()};
    ASSERT_TRUE(shipper.start());
    shipper.offer(1, "stdout", 6, "caf\xE9 ok \xC3\xA9");  // Latin-1, then UTF-8
    // 16 KiB less one byte, then a two-byte character across the 16 KiB mark.
    const std::string long_line = std::string(16 * 1024 - 1, 'a') + "\xC3\xA9" + "tail";
    shipper.offer(2, "stdout", 6, long_line);
    // The longest line there is: cut, then each byte made three by U+FFFD. It is a frame like
    // any other, and the line after it is read too.
    shipper.offer(3, "stdout", 6, std::string(20'000, '\xFF'));
    shipper.offer(4, "stdout", 6, "after");
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 4; }));
    shipper.stop();
    EXPECT_EQ(serve.messages_[0], "caf\xEF\xBF\xBD ok \xC3\xA9");
    EXPECT_EQ(serve.messages_[1], std::string(16 * 1024 - 1, 'a') + " [cut: 6 more bytes]");
    std::string replaced;
    for (int i = 0; i < 16 * 1024; ++i) {
        replaced += "\xEF\xBF\xBD";
    }
    EXPECT_EQ(serve.messages_[2], replaced + " [cut: 3616 more bytes]");
    EXPECT_EQ(serve.messages_[3], "after");
    EXPECT_EQ(serve.bad_batches_, std::vector<std::string>{});
}

TEST(LevelOfLine, ReadsTheCommonLogFormats) {
    EXPECT_EQ(level_of_line("info  2024-05-01T10:00:00.000 nodeos    producer_plugin.cpp:..."), 6);
    EXPECT_EQ(level_of_line("warn  2024-05-01T10:00:00.000 nodeos    net_plugin.cpp:..."), 4);
    EXPECT_EQ(level_of_line("error 2024-05-01T10:00:00.000 nodeos    controller.cpp:..."), 3);
    EXPECT_EQ(level_of_line("debug 2024-05-01T10:00:00.000 nodeos    net_plugin.cpp:..."), 7);
    EXPECT_EQ(level_of_line("INFO [05-01|10:00:00.000] Imported new chain segment"), 6);
    EXPECT_EQ(level_of_line("ERROR[05-01|10:00:00.000] Snapshot extension registration failed"), 3);
    EXPECT_EQ(level_of_line("WARN [05-01|10:00:00.000] Served eth_call"), 4);
    EXPECT_EQ(level_of_line("CRIT [05-01|10:00:00.000] Failed to start"), 2);
    EXPECT_EQ(level_of_line("2024-05-01T10:00:00.000Z\tDEBUG\tchain\tstore/store.go:123"), 7);
    EXPECT_EQ(level_of_line("2024-05-01T10:00:00.000Z\tWARN\tchain\tstore/store.go:123"), 4);
    EXPECT_EQ(level_of_line(R"({"level":"error","ts":"2024-05-01","msg":"boom"})"), 3);
    EXPECT_EQ(level_of_line("time=2024-05-01T10:00:00Z level=warn msg=\"slow peer\""), 4);
    EXPECT_EQ(level_of_line("t=2024-05-01 lvl=eror msg=\"bad block\""), 3);
    EXPECT_EQ(level_of_line("produced block 1200 with 4 transactions"), 6);
    EXPECT_EQ(level_of_line("no errors seen"), 6) << "whole words only";
    EXPECT_EQ(level_of_line("error_code=0 info2 done"), 6) << "a word includes digits and _";
    EXPECT_EQ(level_of_line(std::string(80, 'x') + " error"), 6) << "only the first bytes";
    EXPECT_EQ(level_of_line(""), 6);
}

}  // namespace
}  // namespace aviary::logs
