#pragma once
// Private to src/supervisor: reads a running node through its chain preset and applies the
// synced rule (docs/supervise.md, "Readiness").
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "core/core.hpp"
#include "supervisor/supervisor.hpp"

namespace aviary::supervisor {

struct Reading {
    Readiness readiness = Readiness::kStarting;
    std::string reason;
    std::optional<std::int64_t> height;
    std::optional<core::TimePoint> head_time;
    std::string chain_id;
    std::string block_hash;
    std::string node_version;
    std::string head_producer;
};

/// The scheduled producers, in order, from the preset's schedule call's answer.
core::Result<std::vector<std::string>> read_schedule(const Preset& preset, std::string_view body);

/// Where `account` stands in a schedule whose head block `head_producer` made: manageos's
/// round status, by the producers' order (the one after the head's producer is next).
struct Round {
    std::string status;  ///< "producing", "producing next", "just produced", "not producing"
    bool in_schedule = false;
};
Round round_of(const std::vector<std::string>& schedule,
               std::string_view head_producer,
               std::string_view account);

/// One per Supervisor, used on its node thread only.
class ReadinessReader {
public:
    ReadinessReader(const Settings& settings, boost::asio::any_io_executor executor);
    /// Forget what the last run saw (a new run of the node starts).
    void reset();
    /// The readiness a run starts with (kReady at once for readiness "process").
    Readiness first() const;
    std::string first_reason() const;
    /// Reads the node once and applies the synced rule.
    boost::asio::awaitable<Reading> read();
    /// The chain's schedule by the preset's schedule call, read again when older than a minute
    /// or after a start; an error when the call fails or the answer has no list.
    boost::asio::awaitable<core::Result<std::vector<std::string>>> schedule();

private:
    boost::asio::awaitable<core::Result<std::string>> call(const ChainCall& call,
                                                           const std::string& base);
    boost::asio::awaitable<core::Result<std::string>> call(const ChainCall& c) {
        return call(c, settings_.upstream);
    }
    /// The reference's height, or nullopt when there is none or it does not answer.
    boost::asio::awaitable<std::optional<std::int64_t>> reference_height();
    Reading judge(const HeadFields& head, bool syncing, std::optional<std::int64_t> reference);

    const Settings& settings_;
    boost::asio::any_io_executor executor_;
    bool answered_ = false;   // this run
    bool was_ready_ = false;  // this run
    std::optional<std::int64_t> last_height_;
    std::chrono::steady_clock::time_point last_advance_{};
    std::string chain_id_;  // cached from chain_id_call
    std::string version_;   // from version_call, read again after each start
    std::vector<std::string> schedule_;
    std::chrono::steady_clock::time_point schedule_read_{};  // {} : read it at the next call
};

}  // namespace aviary::supervisor
