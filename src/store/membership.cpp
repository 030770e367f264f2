#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "store/store.hpp"

namespace aviary::store {
namespace {

std::string host_name() {
    char buffer[256] = {};
    if (::gethostname(buffer, sizeof buffer - 1) != 0 || buffer[0] == '\0') {
        return "localhost";
    }
    return buffer;
}

/// Whether `pid` is a live aviary process on this host (not a recycled pid).
bool aviary_alive(std::int64_t pid) {
    if (pid <= 0 || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM)) {
        return false;
    }
    std::ifstream comm{fmt::format("/proc/{}/comm", pid)};
    std::string name;
    std::getline(comm, name);
    return name.starts_with("aviary");
}

}  // namespace

Membership::Membership(Store& store, core::Clock& clock, MembershipSettings settings)
    : store_(store),
      clock_(clock),
      settings_(std::move(settings)),
      name_(settings_.instance.empty() ? host_name() : settings_.instance),
      log_(core::logger("store")) {}

Membership::~Membership() {
    leave();
}

core::Result<void> Membership::join() {
    auto now = clock_.now();
    InstanceRecord self{.name = name_,
                        .run = run_,
                        .host = host_name(),
                        .pid = ::getpid(),
                        .started_at = now,
                        .heartbeat_at = now};
    auto may_replace = [host = self.host](const InstanceRecord& registered) {
        return registered.host == host && !aviary_alive(registered.pid);
    };
    if (auto joined = store_.join_instance(self, settings_.leader_ttl, may_replace); !joined) {
        return joined;
    }
    joined_ = true;
    log_->info("instance joined name={} run={} host={}", name_, run_, self.host);
    beat(now);
    return {};
}

void Membership::schedule(core::Scheduler& scheduler) {
    scheduler.set_leadership([this] { return settings_.lead && leads_.load(); });
    scheduler.add(core::Scheduler::Task{
        .name = "instance-heartbeat",
        .interval = settings_.heartbeat,
        .jitter = 0.0,
        .run_once = [this](core::TimePoint now) -> std::optional<core::TimePoint> {
            beat(now);
            return std::nullopt;
        },
        .leader_only = false,
        .run_at_start = false,
    });
}

void Membership::beat(core::TimePoint now) {
    if (!joined_) {
        return;
    }
    auto led = store_.beat_instance(name_, run_, settings_.lead ? kSchedulerDuty : "", now,
                                    settings_.leader_ttl);
    if (!led) {
        // Unreachable store, or our name taken over: lead nothing until a beat says otherwise.
        if (leads_.exchange(false)) {
            log_->warn("instance {} gave up leading: {}", name_, led.error().message);
        } else {
            log_->warn("instance {} heartbeat failed: {}", name_, led.error().message);
        }
        return;
    }
    if (leads_.exchange(*led) != *led) {
        log_->info("instance {} {} the periodic work", name_, *led ? "leads" : "no longer leads");
    }
}

void Membership::leave() {
    if (!joined_.exchange(false)) {
        return;
    }
    leads_ = false;
    if (auto left = store_.leave_instance(name_, run_); !left) {
        log_->warn("instance {} could not unregister: {}", name_, left.error().message);
    }
}

}  // namespace aviary::store
