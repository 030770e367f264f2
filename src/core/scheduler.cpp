#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <optional>
#include <random>

#include "core/core.hpp"

namespace aviary::core {

struct Scheduler::Entry {
    Task task;
    TimePoint due;
    bool running = false;
    bool woken = false;  // wake() while running: run again right after
    // due_by() while running: the run's own next due time, read before the caller's change,
    // must not override it.
    std::optional<TimePoint> due_by_during_run;
    bool cancelled = false;
    TaskStats stats;
};

Scheduler::Scheduler(Clock& clock, int threads)
    : clock_(clock), thread_count_(std::max(1, threads)), random_state_(std::random_device{}()) {}

Scheduler::~Scheduler() {
    stop();
}

Scheduler::TaskId Scheduler::add(Task task) {
    AVIARY_ASSERT(task.interval.count() > 0, "a scheduled task needs a positive interval");
    AVIARY_ASSERT(static_cast<bool>(task.run_once), "a scheduled task needs run_once");
    std::lock_guard lock{mu_};
    AVIARY_ASSERT(!started_, "tasks are added before the scheduler starts");
    auto entry = std::make_unique<Entry>();
    entry->stats.name = task.name;
    entry->due = task.run_at_start ? clock_.now() : clock_.now() + task.interval;
    entry->task = std::move(task);
    entry->stats.next_due = entry->due;
    entries_.push_back(std::move(entry));
    return entries_.size() - 1;
}

void Scheduler::wake(TaskId id) {
    {
        std::lock_guard lock{mu_};
        AVIARY_ASSERT(id < entries_.size(), "wake() of a task that was never added");
        auto& entry = *entries_[id];
        entry.woken = entry.running;
        entry.due = std::min(entry.due, clock_.now());
    }
    changed_.notify_one();
}

void Scheduler::cancel(TaskId id) {
    std::unique_lock lock{mu_};
    AVIARY_ASSERT(id < entries_.size(), "cancel() of a task that was never added");
    auto& entry = *entries_[id];
    entry.cancelled = true;
    changed_.wait(lock, [&entry] { return !entry.running; });
}

void Scheduler::due_by(TaskId id, TimePoint at) {
    bool sooner = false;
    {
        std::lock_guard lock{mu_};
        AVIARY_ASSERT(id < entries_.size(), "due_by() of a task that was never added");
        auto& entry = *entries_[id];
        if (entry.running) {
            entry.due_by_during_run = std::min(entry.due_by_during_run.value_or(at), at);
        }
        sooner = at < entry.due;
        entry.due = std::min(entry.due, at);
        entry.stats.next_due = entry.due;
    }
    if (sooner) {
        changed_.notify_one();
    }
}

void Scheduler::set_leadership(std::function<bool()> leads) {
    std::lock_guard lock{mu_};
    leads_ = std::move(leads);
}

void Scheduler::start() {
    std::lock_guard lock{mu_};
    if (started_ || stopping_) {
        return;
    }
    started_ = true;
    for (int i = 0; i < thread_count_; ++i) {
        threads_.emplace_back([this] {
            name_this_thread("scheduler");
            loop();
        });
    }
}

void Scheduler::stop() {
    {
        std::lock_guard lock{mu_};
        stopping_ = true;
    }
    changed_.notify_all();
    for (auto& thread : threads_) {
        if (thread.joinable()) {
            thread.join();
        }
    }
    threads_.clear();
}

Millis Scheduler::jittered(const Entry& entry) {
    const double jitter = std::clamp(entry.task.jitter, 0.0, 0.9);
    if (jitter == 0.0) {
        return entry.task.interval;
    }
    // A small private generator under mu_: no shared global state, nothing to seed twice.
    random_state_ = random_state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    const double unit = double(random_state_ >> 11U) / double(1ULL << 53U);  // [0, 1)
    const double factor = 1.0 + jitter * (2.0 * unit - 1.0);
    return Millis{
        std::max<Millis::rep>(1, Millis::rep(double(entry.task.interval.count()) * factor))};
}

Scheduler::Entry* Scheduler::next_due(Millis& wait) {
    const auto now = clock_.now();
    Entry* due = nullptr;
    TimePoint soonest = TimePoint::max();
    for (auto& entry : entries_) {
        if (entry->running || entry->cancelled) {
            continue;
        }
        if (entry->due <= now && (due == nullptr || entry->due < due->due)) {
            due = entry.get();
        }
        soonest = std::min(soonest, entry->due);
    }
    if (due == nullptr) {
        wait = soonest == TimePoint::max() ? Millis{std::chrono::hours{1}}
                                           : std::chrono::duration_cast<Millis>(soonest - now);
    }
    return due;
}

void Scheduler::run(Entry& entry, std::unique_lock<std::mutex>& lock) {
    entry.running = true;
    entry.woken = false;
    entry.due_by_during_run.reset();
    const bool skip = entry.task.leader_only && leads_ && !leads_();
    lock.unlock();
    const auto started = std::chrono::steady_clock::now();
    std::optional<TimePoint> wanted;
    bool failed = false;
    if (!skip) {
        try {
            wanted = entry.task.run_once(clock_.now());
        } catch (const std::exception& e) {
            failed = true;
            logger("core")->error("scheduled task failed task={} error={}", entry.task.name,
                                  e.what());
        }
    }
    const auto took =
        std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);
    lock.lock();
    entry.running = false;
    const auto now = clock_.now();
    auto next = now + jittered(entry);
    if (wanted) {
        next = std::min(next, std::max(*wanted, now));
    }
    if (entry.due_by_during_run) {
        // A retry's run_at set while this run read the store's next due time from before it.
        next = std::min(next, std::max(*entry.due_by_during_run, now));
        entry.due_by_during_run.reset();
    }
    if (entry.woken) {
        next = now;
    }
    entry.due = next;
    entry.stats.next_due = next;
    if (!skip) {
        ++entry.stats.runs;
        entry.stats.failures += failed ? 1 : 0;
        entry.stats.last_duration = took;
    }
}

void Scheduler::loop() {
    std::unique_lock lock{mu_};
    while (!stopping_) {
        Millis wait{0};
        if (auto* entry = next_due(wait)) {
            run(*entry, lock);
            // Everyone: a cancel() may wait for this run, another thread may take what became
            // due meanwhile.
            changed_.notify_all();
            continue;
        }
        changed_.wait_for(lock, std::max(wait, Millis{1}));
    }
}

int Scheduler::run_due() {
    std::unique_lock lock{mu_};
    AVIARY_ASSERT(threads_.empty(), "run_due() is for tests, while the threads are not running");
    int ran = 0;
    const auto now = clock_.now();
    for (auto& entry : entries_) {
        if (entry->due <= now && !entry->cancelled) {
            run(*entry, lock);
            ++ran;
        }
    }
    return ran;
}

std::vector<Scheduler::TaskStats> Scheduler::stats() const {
    std::lock_guard lock{mu_};
    std::vector<TaskStats> out;
    out.reserve(entries_.size());
    for (const auto& entry : entries_) {
        if (!entry->cancelled) {  // a cancelled task is gone, from the metrics too
            out.push_back(entry->stats);
        }
    }
    return out;
}

}  // namespace aviary::core
