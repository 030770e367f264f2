// logs::Shipper on a real directory: lines numbered and shipped in order, sent again until
// acknowledged, kept across a restart (a torn tail cut), dropped oldest-first past the buffer's
// cap with the count reported, and offer() never held by a slow serve.
#include "logs/shipper.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace aviary::logs {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

/// A serve stand-in: records what each accepted batch held; fails while `failing` is set (with
/// `code`), or blocks while `held` is set.
class Serve {
public:
    Send send() {
        return [this](const Shipment& batch) -> core::Result<void> {
            std::unique_lock lock{mu_};
            ++calls_;
            changed_.notify_all();
            changed_.wait(lock, [&] { return !held_; });
            if (failing_) {
                return core::Error{code_, "serve is away"};
            }
            for (const auto& r : batch.records) {
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
    void hold(bool on) {
        {
            std::lock_guard lock{mu_};
            held_ = on;
        }
        changed_.notify_all();
    }
    /// Waits (10 s at most) until `done` holds of what was received.
    bool wait(const std::function<bool(const Serve&)>& done) {
        std::unique_lock lock{mu_};
        return changed_.wait_for(lock, 10s, [&] { return done(*this); });
    }

    std::vector<std::int64_t> seqs_;
    std::vector<std::string> messages_;
    std::uint64_t dropped_ = 0;
    std::uint64_t calls_ = 0;
    std::string stream_;
    store::LogRecord last_;

private:
    std::mutex mu_;
    std::condition_variable changed_;
    bool failing_ = false;
    bool held_ = false;
    core::ErrorCode code_ = core::ErrorCode::kUnavailable;
};

class ShipperTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ =
            fs::temp_directory_path() /
            ("aviary-shipper-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
             "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

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
    /// Waits (10 s at most) until `done` holds of the shipper's stats.
    static bool settle(const Shipper& shipper,
                       const std::function<bool(const ShipperStats&)>& done) {
        for (int i = 0; i < 2000; ++i) {
            if (done(shipper.stats())) {
                return true;
            }
            std::this_thread::sleep_for(5ms);  // a bounded poll of counters, not a timing
        }
        return false;
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
    const auto stats = shipper.stats();
    EXPECT_EQ(stats.offered, 12'000U);
    EXPECT_EQ(stats.shipped, 12'000U);
    EXPECT_EQ(stats.dropped, 0U);
    EXPECT_EQ(stats.acked_seq, 12'000);
}

TEST_F(ShipperTest, ASendThatFailsIsRetriedUntilServeTakesItLosingNothing) {
    Serve serve;
    serve.fail(true);
    Shipper shipper{settings(), serve.send()};
    ASSERT_TRUE(shipper.start());
    offer_lines(shipper, 0, 500);
    ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) { return s.sends_failed >= 3; }));
    EXPECT_EQ(shipper.stats().last_error, "serve is away");
    serve.fail(false);
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 500; }));
    ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) { return s.shipped == 500; }));
    EXPECT_EQ(serve.seqs_.front(), 1);
    EXPECT_EQ(serve.seqs_.back(), 500);
    EXPECT_EQ(shipper.stats().last_error, "");
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
    ASSERT_EQ(serve.seqs_.size(), 51U);
    EXPECT_EQ(serve.seqs_.front(), 101) << "the first 100 were acknowledged before the restart";
    EXPECT_EQ(serve.messages_.front(), "line 100");
    EXPECT_EQ(serve.seqs_.back(), 151) << "a new line takes the next number";
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
    std::vector<fs::path> segments;
    for (const auto& entry : fs::directory_iterator{dir_}) {
        if (entry.path().extension() == ".seg") {
            segments.push_back(entry.path());
        }
    }
    ASSERT_EQ(segments.size(), 1U);
    {
        std::ofstream torn{segments[0], std::ios::binary | std::ios::app};
        torn << std::string("\x30\x00\x00\x00garbage", 11);  // a frame header and less
    }
    Serve serve;
    Shipper again{settings(), serve.send()};
    ASSERT_TRUE(again.start());
    EXPECT_EQ(again.stats().torn_bytes, 11U);
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 20; }));
    offer_lines(again, 20, 1);
    ASSERT_TRUE(serve.wait([](const Serve& s) { return s.seqs_.size() >= 21; }));
    again.stop();
    EXPECT_EQ(serve.seqs_.back(), 21);
    EXPECT_EQ(serve.messages_.back(), "line 20");
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
    offer_lines(shipper, 0, 4'000, 100);  // ~500 KB against a 64 KiB buffer
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
    EXPECT_EQ(stats.offered, stats.shipped + stats.dropped) << "every line is accounted for";
    EXPECT_EQ(serve.dropped_, stats.dropped) << "serve was told of every drop";
    EXPECT_EQ(serve.seqs_.back(), 4'000) << "the newest lines are the ones kept";
    EXPECT_EQ(serve.seqs_.size(), stats.shipped);
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
    ASSERT_TRUE(settle(shipper, [](const ShipperStats& s) {
        return s.acked_seq == static_cast<std::int64_t>(s.written);
    }));
    shipper.stop();
    const auto stats = shipper.stats();
    EXPECT_EQ(stats.offered, stats.shipped + stats.dropped);
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
}

TEST_F(ShipperTest, AWipedBufferStartsANewStream) {
    Serve serve;
    std::string first;
    {
        Shipper shipper{settings(), serve.send()};
        ASSERT_TRUE(shipper.start());
        first = shipper.stream();
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
}

TEST(LevelOfLine, ReadsTheCommonLogFormats) {
    EXPECT_EQ(level_of_line("info  2024-05-01T10:00:00.000 nodeos    producer_plugin.cpp:..."), 6);
    EXPECT_EQ(level_of_line("warn  2024-05-01T10:00:00.000 nodeos    net_plugin.cpp:..."), 4);
    EXPECT_EQ(level_of_line("error 2024-05-01T10:00:00.000 nodeos    controller.cpp:..."), 3);
    EXPECT_EQ(level_of_line("ERROR[05-01|10:00:00.000] Snapshot extension registration failed"), 3);
    EXPECT_EQ(level_of_line("WARN [05-01|10:00:00.000] Served eth_call"), 4);
    EXPECT_EQ(level_of_line("CRIT [05-01|10:00:00.000] Failed to start"), 2);
    EXPECT_EQ(level_of_line("2024-05-01T10:00:00.000Z\tDEBUG\tchain\tstore/store.go:123"), 7);
    EXPECT_EQ(level_of_line(R"({"level":"error","ts":"2024-05-01","msg":"boom"})"), 3);
    EXPECT_EQ(level_of_line("t=2024-05-01 lvl=eror msg=\"bad block\""), 3);
    EXPECT_EQ(level_of_line("produced block 1200 with 4 transactions"), 6);
    EXPECT_EQ(level_of_line("no errors seen"), 6) << "whole words only";
    EXPECT_EQ(level_of_line(std::string(80, 'x') + " error"), 6) << "only the first bytes";
}

}  // namespace
}  // namespace aviary::logs
