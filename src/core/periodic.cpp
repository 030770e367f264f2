#include "core/core.hpp"

namespace aviary::core {

Periodic::Periodic(std::string name, Millis interval, std::function<void()> work)
    : name_(std::move(name)), interval_(interval), work_(std::move(work)) {
    AVIARY_ASSERT(interval_.count() > 0, "a periodic task needs a positive interval");
}

Periodic::~Periodic() {
    stop();
}

void Periodic::start() {
    std::lock_guard lock{mu_};
    if (thread_.joinable() || stopping_) {
        return;
    }
    thread_ = std::thread{[this] { loop(); }};
}

void Periodic::stop() {
    {
        std::lock_guard lock{mu_};
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) {
        thread_.join();
    }
}

void Periodic::loop() {
    std::unique_lock lock{mu_};
    while (!stopping_) {
        lock.unlock();
        work_();
        lock.lock();
        wake_.wait_for(lock, interval_, [this] { return stopping_; });
    }
}

}  // namespace aviary::core
