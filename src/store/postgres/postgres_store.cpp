#include "store/postgres/postgres_store.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "store/postgres/change_feed.hpp"
#include "store/postgres/connection.hpp"
#include "store/postgres/migrations.hpp"
#include "store/sql/sql_store.hpp"

namespace aviary::store::postgres {

core::Result<std::unique_ptr<Store>> open_postgres(const Settings& settings) {
    if (settings.url.empty()) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           "store.url is empty: the postgres driver needs "
                           "postgresql://user@host:port/database"};
    }
    if (settings.read_connections < 1) {
        return core::Error{core::ErrorCode::kInvalidArgument,
                           fmt::format("store.read_connections must be at least 1, got {}",
                                       settings.read_connections)};
    }
    ConnectInfo info{.url = settings.url,
                     .password = settings.password,
                     .connect_timeout = settings.connect_timeout,
                     .query_timeout = settings.busy_timeout};
    auto writer = PgConnection::open(info);
    if (!writer) {
        return writer.error();
    }
    auto reached = migrate(**writer);
    if (!reached) {
        return reached.error();
    }
    auto readers = open_readers(settings.read_connections, info);
    if (!readers) {
        return readers.error();
    }
    core::logger("store")->info("store opened postgres={} schema_version={} readers={}",
                                (*writer)->name(), *reached, settings.read_connections);
    // Other instances' commits arrive on their own connection; this writer's are skipped.
    auto feed = std::make_unique<PgChangeFeed>(info, (*writer)->backend_pid());
    return std::unique_ptr<Store>{
        new sql::SqlStore(std::move(*writer), std::move(*readers), *reached, std::move(feed))};
}

}  // namespace aviary::store::postgres
