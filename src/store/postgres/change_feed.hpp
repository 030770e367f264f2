#pragma once
// Private to src/store: PostgreSQL's LISTEN as the store's ChangeFeed.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "store/postgres/connection.hpp"
#include "store/sql/sql_store.hpp"

namespace aviary::store::postgres {

/// A thread with its own connection LISTENing on the schema's channel. Notifications from
/// `own_sender` (this instance's writer connection) are skipped: this instance acted on them
/// in-process. A lost connection is opened again with backoff (0.1 s doubling to 5 s).
class PgChangeFeed final : public sql::ChangeFeed {
public:
    PgChangeFeed(ConnectInfo info, int own_sender);
    ~PgChangeFeed() override;
    PgChangeFeed(const PgChangeFeed&) = delete;
    PgChangeFeed& operator=(const PgChangeFeed&) = delete;

    void start(OnChange on_change) override;
    void stop() override;

private:
    void loop();
    /// Waits `delay` or until stop(); true when stopping.
    bool pause(core::Millis delay);

    ConnectInfo info_;
    int own_sender_;
    OnChange on_change_;
    std::mutex mu_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace aviary::store::postgres
