// switch_producer: the seed's "HOWTO SWITCH BP" runbook as one step (docs/producers.md).
//
// The order is what makes it safe: the source stops producing and gives the producer lease
// back before the target may claim it, and the target's sidecar claims it (with the next fence)
// before it resumes, so at no instant do two nodes hold it. Nothing is ever resumed to undo a
// failure: a failure after the demotion pauses what it can and parks the lease with the job
// (a holder that never produces) so that a command still in flight cannot resume anyone.
#include "jobs/switch_producer_step.hpp"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <charconv>
#include <optional>
#include <utility>

namespace aviary::jobs {
namespace {

namespace json = boost::json;
using drivers::Op;
using drivers::SidecarStatus;

constexpr core::Millis kVerifyInterval{100};

core::Error step_failed(std::string message) {
    return core::Error{core::ErrorCode::kInternal, std::move(message)};
}

std::string height_text(const SidecarStatus& s) {
    return s.height ? std::to_string(*s.height) : std::string{"unknown"};
}

/// What stops `s` (of node `name`) from taking part in a hand-off, or "" when nothing does.
std::string unfit(std::string_view name, const SidecarStatus& s) {
    if (s.production.empty()) {
        return fmt::format("{}'s sidecar is not in bp mode (--bp-mode)", name);
    }
    if (s.state != "running") {
        return fmt::format("{}'s node is {}, not running", name, s.state);
    }
    if (s.readiness != "ready") {
        return fmt::format("{} is not ready ({}{}{})", name, s.readiness,
                           s.reason.empty() ? "" : ": ", s.reason);
    }
    if (s.production == "unknown") {
        return fmt::format("{}'s production state is unknown: its producer API does not answer",
                           name);
    }
    if (!s.phase.empty()) {
        return fmt::format("{} is busy: {}", name, s.phase);
    }
    return {};
}

class Handoff {
public:
    Handoff(Engine::Impl& d, Run& run, const StepSpec& step, drivers::Context& context)
        : d_(d), run_(run), step_(step), context_(context) {}

    asio::awaitable<core::Result<std::string>> go() {
        auto ready = co_await prepare();
        if (!ready) {
            co_return ready.error();
        }
        plan();
        auto checked = co_await check();
        if (!checked) {
            co_return checked.error();
        }
        if (!execute_) {
            note(
                "dry run: every check passed and nothing was changed; run it with "
                "execute=true (aviary switch-producer --execute) to hand over");
            co_return json::serialize(result(true));
        }
        co_return co_await hand_over();
    }

private:
    void note(std::string text) { context_.note(std::move(text)); }

    /// Params rendered and both nodes found, each run by a sidecar.
    asio::awaitable<core::Result<void>> prepare() {
        const auto& spec = step_.switch_producer;
        auto from = render_template(spec.from, run_.job);
        auto execute = render_template(spec.execute, run_.job);
        auto max_lag = render_template(spec.max_lag, run_.job);
        for (const auto* rendered : {&from, &execute, &max_lag}) {
            if (!*rendered) {
                co_return rendered->error();
            }
        }
        execute_ = *execute == "true";
        if (!execute->empty() && *execute != "true" && *execute != "false") {
            co_return step_failed(
                fmt::format("execute must be true or false, got \"{}\"", *execute));
        }
        if (!max_lag->empty()) {
            auto [end, ec] =
                std::from_chars(max_lag->data(), max_lag->data() + max_lag->size(), max_lag_);
            if (ec != std::errc{} || end != max_lag->data() + max_lag->size() || max_lag_ < 0) {
                co_return step_failed(fmt::format(
                    "max_lag must be a whole number of blocks (0 or more), got \"{}\"", *max_lag));
            }
        }
        to_ = run_.node;
        if (*from == to_.name) {
            co_return step_failed(fmt::format(
                "from and to are both {}: name the node producing now as from", to_.name));
        }
        sidecars_ = dynamic_cast<drivers::SidecarDriver*>(d_.find_driver("sidecar"));
        if (sidecars_ == nullptr) {
            co_return step_failed("this server has no sidecar driver");
        }
        auto find = [this, name = *from] { return d_.fleet.node(name); };
        auto source = co_await net::offload(*d_.pool, find);
        if (!source) {
            co_return source.error();
        }
        from_ = source->spec;
        for (const auto* node : {&from_, &to_}) {
            if (node->driver != "sidecar") {
                co_return step_failed(fmt::format(
                    "{} uses driver {}: production is handed over between nodes run by an "
                    "aviary supervise sidecar in bp mode (driver sidecar)",
                    node->name, node->driver));
            }
        }
        co_return core::Result<void>{};
    }

    void plan() {
        note(fmt::format("plan: hand block production from {} to {}{}", from_.name, to_.name,
                         execute_ ? "" : " (dry run: checks only)"));
        note(
            fmt::format("  1. check: both running, ready and in bp mode with one producer key "
                        "and chain; {} producing and holding the lease; {} passive and at most "
                        "{} blocks behind",
                        from_.name, to_.name, max_lag_));
        note(
            fmt::format("  2. demote {}: safely_pause_production (it confirms the pause, then "
                        "gives the lease back)",
                        from_.name));
        note(fmt::format("  3. confirm: {} paused without a fence, the lease free in serve",
                         from_.name));
        note(
            fmt::format("  4. promote {}: safely_resume_production (it claims the lease with "
                        "the next fence, then resumes)",
                        to_.name));
        note(
            fmt::format("  5. verify: {} producing with that fence and its head growing, {} "
                        "still paused",
                        to_.name, from_.name));
        note(
            "  on a failure after step 2: both are left passive and the lease parked with this "
            "job; nothing is resumed automatically");
    }

    /// What the demotion will wait for, by the source's place in the schedule.
    std::string round_note() const {
        if (source_.round.empty()) {
            return "check: the chain gives no production schedule here: the demotion waits for "
                   "the node to confirm it paused";
        }
        if (source_.round == "producing") {
            return fmt::format(
                "check: {} is producing its round (head block by {}): the "
                "demotion waits for the round's end",
                from_.name, source_.head_producer);
        }
        if (source_.round == "producing next") {
            return fmt::format(
                "check: {} produces next: should its round begin first, the "
                "demotion waits for the round's end",
                from_.name);
        }
        return fmt::format(
            "check: {}'s round: {} (head block by {}): the demotion pauses it at "
            "once",
            from_.name, source_.round, source_.head_producer);
    }

    /// Step 1; fills source_, target_ and the lease's fence.
    asio::awaitable<core::Result<void>> check() {
        auto source = co_await sidecars_->read(from_);
        if (!source) {
            co_return step_failed(fmt::format("check: {}", source.error().message));
        }
        auto target = co_await sidecars_->read(to_);
        if (!target) {
            co_return step_failed(fmt::format("check: {}", target.error().message));
        }
        source_ = std::move(*source);
        target_ = std::move(*target);
        for (const auto& [name, status] :
             {std::pair{from_.name, &source_}, std::pair{to_.name, &target_}}) {
            if (auto problem = unfit(name, *status); !problem.empty()) {
                co_return step_failed("check: " + problem);
            }
        }
        if (source_.production != "producing" || source_.fence == 0) {
            co_return step_failed(fmt::format(
                "check: {} is not the producer (production {}, no fence): there is nothing to "
                "hand over; to start production on {}, run its resume-production action",
                from_.name, source_.production, to_.name));
        }
        if (target_.production != "paused" || target_.fence != 0) {
            co_return step_failed(fmt::format("check: {} is not passive (production {}, fence {})",
                                              to_.name, target_.production, target_.fence));
        }
        key_ = source_.producer_key;
        if (key_.empty() || key_ != target_.producer_key) {
            co_return step_failed(
                fmt::format("check: {} and {} hold different producer keys (\"{}\" and \"{}\")",
                            from_.name, to_.name, source_.producer_key, target_.producer_key));
        }
        if (!source_.chain_id.empty() && !target_.chain_id.empty() &&
            source_.chain_id != target_.chain_id) {
            co_return step_failed(fmt::format("check: {} is on chain {}, {} on chain {}",
                                              from_.name, source_.chain_id, to_.name,
                                              target_.chain_id));
        }
        if (!source_.height || !target_.height) {
            co_return step_failed(fmt::format("check: heights unknown ({} {}, {} {})", from_.name,
                                              height_text(source_), to_.name,
                                              height_text(target_)));
        }
        if (*target_.height + max_lag_ < *source_.height) {
            co_return step_failed(
                fmt::format("check: {} is {} blocks behind {} (heights {} and {}; max_lag {})",
                            to_.name, *source_.height - *target_.height, from_.name,
                            *target_.height, *source_.height, max_lag_));
        }
        auto lease = co_await lease_now();
        if (!lease) {
            co_return step_failed(fmt::format("check: {}", lease.error().message));
        }
        if (lease->holder != source_.name || lease->fence != source_.fence) {
            co_return step_failed(fmt::format(
                "check: serve's producer lease {} is held by \"{}\" (fence {}), not by {} "
                "(fence {})",
                key_, lease->holder, lease->fence, source_.name, source_.fence));
        }
        fence_ = lease->fence;
        note(fmt::format("check: {} produces at height {} holding {} (fence {})", from_.name,
                         *source_.height, key_, fence_));
        note(fmt::format("check: {} passive at height {} ({} behind)", to_.name, *target_.height,
                         std::max<std::int64_t>(0, *source_.height - *target_.height)));
        if (source_.in_schedule == true && target_.in_schedule == false) {
            co_return step_failed(
                fmt::format("check: {}'s account is in the schedule and {}'s is not: {} would "
                            "produce no blocks (set the same producer.account on both)",
                            from_.name, to_.name, to_.name));
        }
        note(round_note());
        co_return core::Result<void>{};
    }

    asio::awaitable<core::Result<std::string>> hand_over() {
        note(fmt::format("demote: {}", from_.name));
        auto paused = co_await sidecars_->command(from_, Op::kPauseProduction, context_);
        if (!paused) {
            co_return co_await stop_safe(
                fmt::format("demoting {} failed: {}", from_.name, paused.error().message), false);
        }
        auto after = co_await sidecars_->read(from_);
        if (!after || after->production != "paused" || after->fence != 0) {
            co_return co_await stop_safe(
                after ? fmt::format("{} reports production {} with fence {} after its pause",
                                    from_.name, after->production, after->fence)
                      : fmt::format("confirming {}'s pause: {}", from_.name, after.error().message),
                false);
        }
        auto lease = co_await lease_now();
        if (!lease || (!lease->holder.empty() && lease->expires_at > d_.clock.now())) {
            co_return co_await stop_safe(
                lease ? fmt::format("the lease is still held by {} after {} paused", lease->holder,
                                    from_.name)
                      : lease.error().message,
                false);
        }
        note(fmt::format("confirm: {} paused, lease {} free (fence {})", from_.name, key_,
                         lease->fence));
        note(fmt::format("promote: {}", to_.name));
        auto resumed = co_await sidecars_->command(to_, Op::kResumeProduction, context_);
        if (!resumed) {
            co_return co_await stop_safe(
                fmt::format("promoting {} failed: {}", to_.name, resumed.error().message), true);
        }
        auto verified = co_await verify();
        if (!verified) {
            co_return co_await stop_safe(verified.error().message, true);
        }
        note(fmt::format("done: {} produces with fence {} (head {} -> {}); {} passive", to_.name,
                         fence_ + 1, *target_.height, *verified, from_.name));
        auto out = result(false);
        out["fence"] = fence_ + 1;
        co_return json::serialize(out);
    }

    /// Step 5: the target producing with the next fence and a head that grows, the source
    /// still paused, the lease the target's. Returns the head seen growing.
    asio::awaitable<core::Result<std::int64_t>> verify() {
        const auto deadline =
            std::chrono::steady_clock::now() + step_.switch_producer.verify_timeout;
        std::optional<std::int64_t> first;
        std::string last = "no answer yet";
        while (!context_.stopping()) {
            auto target = co_await sidecars_->read(to_);
            if (target) {
                last = fmt::format("production {}, fence {}, height {}", target->production,
                                   target->fence, height_text(*target));
                if (target->production == "producing" && target->fence == fence_ + 1 &&
                    target->height) {
                    if (!first) {
                        first = target->height;
                    } else if (*target->height > *first) {
                        // The source must stay passive: paused, or not running at all (a bp-mode
                        // node starts passive; a config change may restart it right now).
                        auto source = co_await sidecars_->read(from_);
                        if (source && source->production == "producing") {
                            co_return step_failed(fmt::format("{} produces again while {} produces",
                                                              from_.name, to_.name));
                        }
                        const bool passive = source && (source->production == "paused" ||
                                                        source->state != "running");
                        auto lease = co_await lease_now();
                        if (!lease || lease->holder != target->name || lease->fence != fence_ + 1) {
                            co_return step_failed(
                                lease ? fmt::format("serve's lease is held by \"{}\" (fence {}), "
                                                    "not {} (fence {})",
                                                    lease->holder, lease->fence, target->name,
                                                    fence_ + 1)
                                      : lease.error().message);
                        }
                        if (passive) {
                            co_return *target->height;
                        }
                        last = source ? fmt::format("{} is {} with production {}", from_.name,
                                                    source->state, source->production)
                                      : source.error().message;
                    }
                }
            } else {
                last = target.error().message;
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                break;
            }
            co_await nap(run_, kVerifyInterval);
        }
        co_return step_failed(fmt::format(
            "{} was not seen producing with fence {} and a growing head within {} (last: {})",
            to_.name, fence_ + 1, core::format_duration(step_.switch_producer.verify_timeout),
            last));
    }

    /// Ends a failed hand-off in the safe state: the target paused if it may have been resumed,
    /// the source paused if it is not, the lease parked with the job. Never resumes anyone.
    asio::awaitable<core::Result<std::string>> stop_safe(std::string why, bool target_touched) {
        note(fmt::format("failed: {}; leaving both passive", why));
        std::vector<std::string> unconfirmed;
        auto make_passive = [&](const core::NodeSpec& node, bool pause) -> asio::awaitable<void> {
            if (pause) {
                auto paused = co_await sidecars_->command(node, Op::kPauseProduction, context_);
                if (!paused) {
                    note(fmt::format("pausing {}: {}", node.name, paused.error().message));
                }
            }
            auto now = co_await sidecars_->read(node);
            if (!now || now->production != "paused") {
                unconfirmed.push_back(
                    now ? fmt::format("{} reports production {}", node.name, now->production)
                        : now.error().message);
            }
        };
        if (target_touched) {
            co_await make_passive(to_, true);
        }
        auto source = co_await sidecars_->read(from_);
        co_await make_passive(from_, !source || source->production != "paused");
        std::string parked = co_await park();
        if (unconfirmed.empty()) {
            co_return step_failed(fmt::format(
                "{}. Stopped in the safe state: {} and {} are both passive, nobody produces; {}. "
                "Fix the cause, then resume one node (its resume-production action)",
                why, from_.name, to_.name, parked));
        }
        std::string list;
        for (const auto& item : unconfirmed) {
            list += (list.empty() ? "" : "; ") + item;
        }
        co_return step_failed(fmt::format(
            "{}. Could not confirm both passive ({}); {}. Check the nodes before resuming "
            "anything",
            why, list, parked));
    }

    /// Takes the lease for the job itself, so a resume still in flight is refused by the fence.
    asio::awaitable<std::string> park() {
        const std::string holder = "switch-producer:" + run_.job.id;
        const fleet::Caller caller{.identity = run_.job.requester, .admin = true};
        auto claim = [this, &holder, &caller] {
            return d_.fleet.claim_producer(key_, holder, fleet::Fleet::kMaxProducerTtl, caller);
        };
        auto parked = co_await net::offload(*d_.pool, claim);
        if (!parked) {
            note(fmt::format("parking lease {}: {}", key_, parked.error().message));
            co_return fmt::format("lease {} could not be parked: {}", key_, parked.error().message);
        }
        note(fmt::format("parked lease {} with {} (fence {}) until {}", key_, holder, parked->fence,
                         core::format_time(parked->expires_at)));
        co_return fmt::format(
            "lease {} is parked with {} (fence {}) until {}, so no resume in flight can take it",
            key_, holder, parked->fence, core::format_time(parked->expires_at));
    }

    asio::awaitable<core::Result<store::ProducerLease>> lease_now() {
        auto list = [this] { return d_.fleet.producers(); };
        auto leases = co_await net::offload(*d_.pool, list);
        if (!leases) {
            co_return leases.error();
        }
        for (auto& lease : *leases) {
            if (lease.key == key_) {
                co_return std::move(lease);
            }
        }
        co_return store::ProducerLease{.key = key_};
    }

    json::object result(bool dry_run) const {
        return json::object{{"dry_run", dry_run},
                            {"from", from_.name},
                            {"to", to_.name},
                            {"key", key_},
                            {"fence", fence_}};
    }

    Engine::Impl& d_;
    Run& run_;
    const StepSpec& step_;
    drivers::Context& context_;
    drivers::SidecarDriver* sidecars_ = nullptr;
    core::NodeSpec from_;
    core::NodeSpec to_;
    bool execute_ = false;
    std::int64_t max_lag_ = 3;
    SidecarStatus source_;
    SidecarStatus target_;
    std::string key_;
    std::int64_t fence_ = 0;
};

}  // namespace

asio::awaitable<core::Result<std::string>> run_switch_producer_step(Engine::Impl& engine,
                                                                    Run& run,
                                                                    const StepSpec& step,
                                                                    drivers::Context& context) {
    Handoff handoff{engine, run, step, context};
    co_return co_await handoff.go();
}

}  // namespace aviary::jobs
