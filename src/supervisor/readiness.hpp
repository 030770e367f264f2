#pragma once
// Private to src/supervisor: reads a running node through its chain preset and applies the
// synced rule (docs/supervise.md, "Readiness").
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <optional>
#include <string>

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
};

/// What one call's JSON answer says, by the preset's fields. Exposed for unit tests.
struct HeadFields {
    std::optional<std::int64_t> height;
    std::optional<core::TimePoint> head_time;
    std::string chain_id;
    std::string block_hash;    ///< the preset's block_hash field, when it has one
    std::string node_version;  ///< the preset's node_version field, when in head's answer
};
core::Result<HeadFields> read_head(const Preset& preset, std::string_view body);
/// True when the syncing call's answer says the node is still syncing.
core::Result<bool> read_syncing(const Preset& preset, std::string_view body);

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
};

}  // namespace aviary::supervisor
