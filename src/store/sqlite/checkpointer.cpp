#include "store/sqlite/checkpointer.hpp"

#include <spdlog/spdlog.h>

namespace aviary::store::sqlite {

core::Result<std::unique_ptr<Checkpointer>> Checkpointer::start(const std::string& path,
                                                                core::Millis busy_timeout) {
    auto db = Connection::open(path, Connection::Mode::kReadWrite, busy_timeout);
    if (!db) {
        return db.error();
    }
    return std::unique_ptr<Checkpointer>{new Checkpointer(std::move(*db))};
}

Checkpointer::Checkpointer(std::unique_ptr<Connection> db) : db_(std::move(db)) {
    thread_ = std::thread{[this] { loop(); }};
}

Checkpointer::~Checkpointer() {
    stop();
}

void Checkpointer::wal_grew(int pages) {
    if (pages < kWakeAtPages) {
        return;
    }
    {
        std::lock_guard lock{mu_};
        due_ = true;
    }
    wake_.notify_one();
}

void Checkpointer::stop() {
    {
        std::lock_guard lock{mu_};
        stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) {
        thread_.join();
    }
}

std::uint64_t Checkpointer::checkpoints() const {
    std::lock_guard lock{mu_};
    return checkpoints_;
}

void Checkpointer::loop() {
    auto log = core::logger("store");
    while (true) {
        {
            std::unique_lock lock{mu_};
            wake_.wait(lock, [this] { return due_ || stopping_; });
            if (stopping_) {
                return;
            }
            due_ = false;
        }
        if (auto done = db_->run("PRAGMA wal_checkpoint(PASSIVE)"); !done) {
            log->warn("wal checkpoint failed: {}", done.error().message);
            continue;
        }
        std::lock_guard lock{mu_};
        ++checkpoints_;
    }
}

}  // namespace aviary::store::sqlite
