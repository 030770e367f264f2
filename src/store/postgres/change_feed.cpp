#include "store/postgres/change_feed.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace aviary::store::postgres {
namespace {

constexpr core::Millis kPoll{500};  // how long one wait lasts: bounds stop()'s join
constexpr core::Millis kFirstBackoff{100};
constexpr core::Millis kMaxBackoff{5000};

}  // namespace

PgChangeFeed::PgChangeFeed(ConnectInfo info, int own_sender)
    : info_(std::move(info)), own_sender_(own_sender) {
    info_.application_name = "aviary-listen";
}

PgChangeFeed::~PgChangeFeed() {
    stop();
}

void PgChangeFeed::start(OnChange on_change) {
    on_change_ = std::move(on_change);
    thread_ = std::thread([this] {
        core::name_this_thread("store-feed");
        loop();
    });
}

void PgChangeFeed::stop() {
    {
        std::lock_guard lock{mu_};
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) {
        thread_.join();
    }
}

bool PgChangeFeed::pause(core::Millis delay) {
    std::unique_lock lock{mu_};
    return wake_.wait_for(lock, delay, [this] { return stopping_; });
}

void PgChangeFeed::loop() {
    auto log = core::logger("store");
    std::unique_ptr<PgConnection> db;
    core::Millis backoff = kFirstBackoff;
    bool warned = false;
    while (true) {
        {
            std::lock_guard lock{mu_};
            if (stopping_) {
                return;
            }
        }
        if (db == nullptr) {
            auto opened = PgConnection::open(info_);
            auto listening = opened ? (*opened)->listen() : core::Result<void>{opened.error()};
            if (!listening) {
                if (!warned) {
                    log->warn("change feed cannot listen (retrying with backoff): {}",
                              listening.error().message);
                    warned = true;
                }
                if (pause(backoff)) {
                    return;
                }
                backoff = std::min(backoff * 2, kMaxBackoff);
                continue;
            }
            db = std::move(*opened);
            if (warned) {
                log->info("change feed listening again channel={}", db->channel());
            }
            warned = false;
            backoff = kFirstBackoff;
            // Whatever was committed while nobody listened: look for runnable jobs now.
            on_change_(sql::change::kJobsQueued, "");
        }
        auto notes = db->wait_notifications(kPoll);
        if (!notes) {
            log->warn("change feed lost its connection: {}", notes.error().message);
            warned = true;
            db.reset();
            continue;
        }
        for (const auto& note : *notes) {
            if (note.sender == own_sender_) {
                continue;
            }
            std::string_view payload = note.payload;
            while (!payload.empty()) {
                auto end = payload.find('\n');
                auto line = payload.substr(0, end);
                if (line.size() >= 2) {
                    on_change_(line[0], line.substr(2));
                }
                payload =
                    end == std::string_view::npos ? std::string_view{} : payload.substr(end + 1);
            }
        }
    }
}

}  // namespace aviary::store::postgres
