#include "store/postgres/connection.hpp"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <vector>

namespace aviary::store::postgres {
namespace {

/// The longest wait between attempts to reopen a lost connection: short enough that an
/// instance is back within a second of the database (its jobs' heartbeats with it, before
/// another instance takes them for dead), and an attempt is one cheap connect.
constexpr core::Millis kMaxReconnectBackoff{1000};

constexpr Oid kInt8 = 20;
constexpr Oid kText = 25;

/// libpq is loaded on the first connection, not linked: a process that never speaks to
/// PostgreSQL (`aviary supervise`, the CLI, `serve` on SQLite) maps neither it nor the libraries
/// it pulls in (Kerberos, LDAP, GnuTLS, p11-kit), about 3.5 MB of resident memory.
#define AVIARY_LIBPQ_FUNCTIONS(X) \
    X(PQbackendPID)               \
    X(PQclear)                    \
    X(PQcmdTuples)                \
    X(PQconnectdbParams)          \
    X(PQconsumeInput)             \
    X(PQerrorMessage)             \
    X(PQfinish)                   \
    X(PQfreemem)                  \
    X(PQgetResult)                \
    X(PQgetisnull)                \
    X(PQgetlength)                \
    X(PQgetvalue)                 \
    X(PQisBusy)                   \
    X(PQnotifies)                 \
    X(PQntuples)                  \
    X(PQputCopyData)              \
    X(PQputCopyEnd)               \
    X(PQreset)                    \
    X(PQresultErrorField)         \
    X(PQresultErrorMessage)       \
    X(PQresultStatus)             \
    X(PQsendPrepare)              \
    X(PQsendQuery)                \
    X(PQsendQueryPrepared)        \
    X(PQsetNoticeProcessor)       \
    X(PQsocket)                   \
    X(PQstatus)                   \
    X(PQtransactionStatus)

struct Libpq {
#define AVIARY_LIBPQ_MEMBER(name) decltype(&::name) name = nullptr;
    AVIARY_LIBPQ_FUNCTIONS(AVIARY_LIBPQ_MEMBER)
#undef AVIARY_LIBPQ_MEMBER
};

/// Loads libpq once per process (never unloaded); later calls return the first outcome.
const core::Result<Libpq>& load_libpq() {
    static const core::Result<Libpq> loaded = []() -> core::Result<Libpq> {
        Libpq lib;
#define AVIARY_LIBPQ_SYMBOL(name) core::LibrarySymbol{#name, &lib.name},
        auto opened = core::open_library("libpq.so.5", "PostgreSQL", "libpq5",
                                         {AVIARY_LIBPQ_FUNCTIONS(AVIARY_LIBPQ_SYMBOL)},
                                         core::ErrorCode::kUnavailable);
#undef AVIARY_LIBPQ_SYMBOL
        if (!opened) {
            return opened.error();
        }
        return lib;
    }();
    return loaded;
}

/// libpq's functions. Only past a successful PgConnection::open(), which loads them.
const Libpq& pq() {
    return *load_libpq();
}

}  // namespace

std::string redact_url(std::string_view url) {
    std::string out{url};
    // URI form: scheme://user:password@host...
    if (auto scheme = out.find("://"); scheme != std::string::npos) {
        auto at = out.find('@', scheme + 3);
        auto slash = out.find('/', scheme + 3);
        if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
            auto colon = out.find(':', scheme + 3);
            if (colon != std::string::npos && colon < at) {
                out.replace(colon + 1, at - colon - 1, "***");
            }
        }
    }
    // Keyword form, or a URI's query: password=...
    for (auto pos = out.find("password="); pos != std::string::npos;
         pos = out.find("password=", pos + 1)) {
        auto start = pos + 9;
        auto end = out.find_first_of(" &", start);
        out.replace(start, (end == std::string::npos ? out.size() : end) - start, "***");
    }
    return out;
}

std::string numbered_parameters(std::string_view sql) {
    std::string out;
    out.reserve(sql.size());
    char quote = 0;
    for (std::size_t i = 0; i < sql.size(); ++i) {
        char c = sql[i];
        if (quote != 0) {
            if (c == quote) {
                quote = 0;
            }
        } else if (c == '\'' || c == '"') {
            quote = c;
        } else if (c == '?' && i + 1 < sql.size() && sql[i + 1] >= '0' && sql[i + 1] <= '9') {
            c = '$';
        }
        out.push_back(c);
    }
    return out;
}

/// One statement, prepared on the server at its first run.
class PgConnection::Cursor final : public sql::Cursor {
public:
    Cursor(PgConnection& db, std::string sql, std::string name)
        : db_(db), sql_(std::move(sql)), name_(std::move(name)) {}
    ~Cursor() override { reset(); }
    Cursor(const Cursor&) = delete;
    Cursor& operator=(const Cursor&) = delete;

    void bind_int64(int index, std::int64_t value) override {
        slot(index) = std::to_string(value);
        types_[static_cast<std::size_t>(index - 1)] = kInt8;
    }
    void bind_text(int index, std::string_view value) override {
        slot(index) = std::string{value};
        types_[static_cast<std::size_t>(index - 1)] = kText;
    }
    void bind_null(int index) override { slot(index).reset(); }

    core::Result<bool> step() override {
        if (result_ == nullptr) {
            if (auto ran = execute(); !ran) {
                return ran.error();
            }
            row_ = -1;
        }
        ++row_;
        return row_ < pq().PQntuples(result_);
    }
    bool is_null(int column) const override { return pq().PQgetisnull(result_, row_, column) != 0; }
    std::int64_t int64(int column) const override {
        const char* value = pq().PQgetvalue(result_, row_, column);
        if (value[0] == 't' && value[1] == '\0') {
            return 1;
        }
        if (value[0] == 'f' && value[1] == '\0') {
            return 0;
        }
        std::int64_t out = 0;
        std::from_chars(value, value + pq().PQgetlength(result_, row_, column), out);
        return out;
    }
    std::string text(int column) const override {
        return std::string(pq().PQgetvalue(result_, row_, column),
                           static_cast<std::size_t>(pq().PQgetlength(result_, row_, column)));
    }
    void reset() override {
        if (result_ != nullptr) {
            pq().PQclear(result_);
            result_ = nullptr;
        }
        for (auto& value : values_) {
            value.reset();
        }
    }
    bool busy() const { return result_ != nullptr; }
    /// The connection was opened again: the server forgot the statement.
    void forget_prepared() { prepared_ = false; }

private:
    std::optional<std::string>& slot(int index) {
        AVIARY_ASSERT(index >= 1, "parameters count from 1");
        auto needed = static_cast<std::size_t>(index);
        if (values_.size() < needed) {
            values_.resize(needed);
            types_.resize(needed, 0);
        }
        return values_[needed - 1];
    }

    core::Result<void> execute() {
        int count = static_cast<int>(values_.size());
        if (!prepared_) {
            if (pq().PQsendPrepare(db_.conn_, name_.c_str(), sql_.c_str(), count, types_.data()) ==
                0) {
                return db_.failed(fmt::format("cannot prepare \"{}\"", sql_), nullptr);
            }
            auto made = db_.await_result(sql_);
            if (!made) {
                return made.error();
            }
            if (pq().PQresultStatus(*made) != PGRES_COMMAND_OK) {
                auto error = db_.failed(fmt::format("cannot prepare \"{}\"", sql_), *made);
                pq().PQclear(*made);
                return error;
            }
            pq().PQclear(*made);
            prepared_ = true;
        }
        std::vector<const char*> values(values_.size());
        for (std::size_t i = 0; i < values_.size(); ++i) {
            values[i] = values_[i] ? values_[i]->c_str() : nullptr;
        }
        if (pq().PQsendQueryPrepared(db_.conn_, name_.c_str(), count, values.data(), nullptr,
                                     nullptr, 0) == 0) {
            return db_.failed(sql_, nullptr);
        }
        auto answered = db_.await_result(sql_);
        if (!answered) {
            return answered.error();
        }
        result_ = *answered;
        auto status = pq().PQresultStatus(result_);
        if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
            auto error = db_.failed(sql_, result_);
            pq().PQclear(result_);
            result_ = nullptr;
            return error;
        }
        db_.last_sqlstate_.clear();
        const char* tuples = pq().PQcmdTuples(result_);
        std::int64_t changed = 0;
        std::from_chars(tuples, tuples + std::char_traits<char>::length(tuples), changed);
        db_.changes_ = changed;
        return {};
    }

    PgConnection& db_;
    std::string sql_;
    std::string name_;
    bool prepared_ = false;
    std::vector<std::optional<std::string>> values_;
    std::vector<Oid> types_;
    PGresult* result_ = nullptr;
    int row_ = -1;
};

core::Result<std::unique_ptr<PgConnection>> PgConnection::open(const ConnectInfo& info) {
    if (const auto& loaded = load_libpq(); !loaded) {
        return loaded.error();
    }
    std::string timeout = std::to_string(std::max<std::int64_t>(
        1, std::chrono::ceil<std::chrono::seconds>(info.connect_timeout).count()));
    // TCP keepalives notice a vanished host within about a minute even with nothing sent.
    std::vector<const char*> keys{"dbname",          "connect_timeout", "application_name",
                                  "keepalives",      "keepalives_idle", "keepalives_interval",
                                  "keepalives_count"};
    std::vector<const char*> values{
        info.url.c_str(), timeout.c_str(), info.application_name.c_str(), "1", "30", "10", "3"};
    if (!info.password.empty()) {
        keys.push_back("password");
        values.push_back(info.password.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    // expand_dbname: "dbname" may be a whole URI or keyword string; later keys fill the rest.
    PGconn* conn = pq().PQconnectdbParams(keys.data(), values.data(), 1);
    std::string name = redact_url(info.url);
    if (conn == nullptr) {
        return core::Error{core::ErrorCode::kStorage,
                           fmt::format("cannot connect to postgres {}: out of memory", name)};
    }
    if (pq().PQstatus(conn) != CONNECTION_OK) {
        std::string why = pq().PQerrorMessage(conn);
        while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) {
            why.pop_back();
        }
        pq().PQfinish(conn);
        return core::Error{core::ErrorCode::kUnavailable,
                           fmt::format("cannot connect to postgres {}: {}", name, why)};
    }
    // Notices (an IF NOT EXISTS that found its table) are not errors: nothing to print.
    pq().PQsetNoticeProcessor(
        conn, [](void*, const char*) {}, nullptr);
    std::unique_ptr<PgConnection> db{
        new PgConnection(conn, std::move(name), info.query_timeout, info.lane)};
    {
        auto schema = db->prepare("SELECT current_schema()");
        if (!schema) {
            return schema.error();
        }
        auto row = schema->step();
        if (!row) {
            return row.error();
        }
        db->channel_ = "aviary." +
                       (*row && !schema->is_null(0) ? schema->text(0) : std::string{"public"}) +
                       (info.lane.empty() ? std::string{} : "." + info.lane);
    }
    return db;
}

PgConnection::PgConnection(pg_conn* conn,
                           std::string name,
                           core::Millis query_timeout,
                           std::string lane)
    : conn_(conn), name_(std::move(name)), query_timeout_(query_timeout), lane_(std::move(lane)) {}

core::Result<std::unique_ptr<sql::ReadPool>> open_readers(int size, const ConnectInfo& info) {
    return sql::ReadPool::open(size, [&info]() -> core::Result<std::unique_ptr<sql::Connection>> {
        auto reader = PgConnection::open(info);
        if (!reader) {
            return reader.error();
        }
        return std::unique_ptr<sql::Connection>{std::move(*reader)};
    });
}

std::string lock_keys(std::string_view lane) {
    // Lane names are aviary's own constants, never input: no quoting is needed.
    return lane.empty() ? std::string{"1635148153, hashtext(current_schema())"}
                        : fmt::format("1635148153, hashtext(current_schema() || '.{}')", lane);
}

PgConnection::~PgConnection() {
    statements_.clear();
    pq().PQfinish(conn_);
}

core::Result<sql::Statement> PgConnection::prepare(std::string_view sql) {
    auto it = statements_.find(sql);
    if (it == statements_.end()) {
        auto cursor = std::make_unique<Cursor>(*this, numbered_parameters(sql),
                                               fmt::format("s{}", ++statements_made_));
        it = statements_.emplace(std::string{sql}, std::move(cursor)).first;
    }
    AVIARY_ASSERT(!it->second->busy(), "a cached statement is used by one Statement at a time");
    return sql::Statement{*it->second};
}

core::Result<void> PgConnection::run(std::string_view sql) {
    return exec(sql);
}

core::Result<void> PgConnection::exec(std::string_view sql) {
    std::string owned{sql};
    if (pq().PQsendQuery(conn_, owned.c_str()) == 0) {
        return failed(owned, nullptr);
    }
    auto result = await_result(owned);
    if (!result) {
        return result.error();
    }
    auto status = pq().PQresultStatus(*result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        auto error = failed(owned, *result);
        pq().PQclear(*result);
        return error;
    }
    last_sqlstate_.clear();
    pq().PQclear(*result);
    return {};
}

core::Result<void> PgConnection::await_ready(std::string_view what,
                                             std::chrono::steady_clock::time_point deadline) {
    while (pq().PQisBusy(conn_) != 0) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now());
        pollfd fd{.fd = pq().PQsocket(conn_), .events = POLLIN, .revents = 0};
        if (left.count() <= 0 || fd.fd < 0 || ::poll(&fd, 1, static_cast<int>(left.count())) == 0) {
            // No answer in time: a paused or partitioned server. The connection is in an
            // unknown state, so it is dropped; recover() opens a new one.
            abandoned_ = true;
            return core::Error{core::ErrorCode::kUnavailable,
                               fmt::format("postgres {}: no answer within {} ({})", name_,
                                           core::format_duration(query_timeout_), what)};
        }
        if (pq().PQconsumeInput(conn_) == 0) {
            return failed(what, nullptr);
        }
    }
    return {};
}

core::Result<pg_result*> PgConnection::await_result(std::string_view what) {
    auto deadline = std::chrono::steady_clock::now() + query_timeout_;
    PGresult* kept = nullptr;  // the first error, or else the last result
    while (true) {
        if (auto ready = await_ready(what, deadline); !ready) {
            pq().PQclear(kept);
            return ready.error();
        }
        PGresult* result = pq().PQgetResult(conn_);
        if (result == nullptr) {
            break;
        }
        bool kept_error = kept != nullptr && pq().PQresultStatus(kept) != PGRES_COMMAND_OK &&
                          pq().PQresultStatus(kept) != PGRES_TUPLES_OK;
        if (kept_error) {
            pq().PQclear(result);  // a script stops at its first error: that one is the answer
        } else {
            pq().PQclear(kept);
            kept = result;
        }
    }
    if (kept == nullptr) {
        return failed(what, nullptr);
    }
    return kept;
}

core::Result<std::int64_t> PgConnection::copy_in(std::string_view sql, std::string_view rows) {
    std::string owned{sql};
    if (pq().PQsendQuery(conn_, owned.c_str()) == 0) {
        return failed(owned, nullptr);
    }
    // The server says it is ready for rows (or refuses the statement) before reading any.
    if (auto ready = await_ready(owned, std::chrono::steady_clock::now() + query_timeout_);
        !ready) {
        return ready.error();
    }
    PGresult* head = pq().PQgetResult(conn_);
    if (head == nullptr || pq().PQresultStatus(head) != PGRES_COPY_IN) {
        auto error = failed(owned, head);
        pq().PQclear(head);
        if (auto rest = await_result(owned); rest) {  // the statement's end, to reuse the line
            pq().PQclear(*rest);
        }
        return error;
    }
    pq().PQclear(head);
    // PQputCopyData takes an int: pieces well under it.
    constexpr std::size_t kPiece = std::size_t{16} << 20;
    for (std::size_t at = 0; at < rows.size(); at += kPiece) {
        const auto piece = rows.substr(at, kPiece);
        if (pq().PQputCopyData(conn_, piece.data(), static_cast<int>(piece.size())) != 1) {
            return failed(owned, nullptr);
        }
    }
    if (pq().PQputCopyEnd(conn_, nullptr) != 1) {
        return failed(owned, nullptr);
    }
    auto result = await_result(owned);
    if (!result) {
        return result.error();
    }
    if (pq().PQresultStatus(*result) != PGRES_COMMAND_OK) {
        auto error = failed(owned, *result);
        pq().PQclear(*result);
        return error;
    }
    std::int64_t copied = 0;
    const char* tuples = pq().PQcmdTuples(*result);
    std::from_chars(tuples, tuples + std::char_traits<char>::length(tuples), copied);
    pq().PQclear(*result);
    last_sqlstate_.clear();
    changes_ = copied;
    return copied;
}

core::Result<void> PgConnection::recover() {
    if (!broken()) {
        return {};
    }
    auto now = std::chrono::steady_clock::now();
    if (now < next_reconnect_) {
        return core::Error{core::ErrorCode::kUnavailable,
                           fmt::format("postgres {} is unreachable: {}", name_, last_loss_)};
    }
    pq().PQreset(conn_);
    if (pq().PQstatus(conn_) != CONNECTION_OK) {
        last_loss_ = pq().PQerrorMessage(conn_);
        while (!last_loss_.empty() && (last_loss_.back() == '\n' || last_loss_.back() == ' ')) {
            last_loss_.pop_back();
        }
        reconnect_backoff_ = std::min(reconnect_backoff_ * 2, kMaxReconnectBackoff);
        next_reconnect_ = now + reconnect_backoff_;
        return core::Error{core::ErrorCode::kUnavailable,
                           fmt::format("postgres {} is unreachable: {}", name_, last_loss_)};
    }
    // A new server session: statements must be prepared again, nothing is pending.
    abandoned_ = false;
    reconnect_backoff_ = core::Millis{50};
    for (auto& [sql, cursor] : statements_) {
        cursor->forget_prepared();
    }
    pending_.clear();
    core::logger("store")->info("postgres connection restored postgres={}", name_);
    return {};
}

bool PgConnection::in_autocommit() const {
    // A lost connection has no transaction left to end.
    return broken() || pq().PQtransactionStatus(conn_) == PQTRANS_IDLE;
}

core::Result<void> PgConnection::begin_write() {
    return exec(fmt::format("BEGIN; SELECT pg_advisory_xact_lock({})", lock_keys(lane_)));
}

core::Result<void> PgConnection::begin_read() {
    return exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
}

void PgConnection::notify(char kind, std::string_view subject) {
    std::string line = fmt::format("{} {}", kind, subject);
    if (std::find(pending_.begin(), pending_.end(), line) == pending_.end()) {
        pending_.push_back(std::move(line));
    }
}

core::Result<void> PgConnection::send_notifications() {
    // NOTIFY payloads must stay under 8000 bytes: lines go out in chunks well below that.
    constexpr std::size_t kChunk = 7000;
    auto lines = std::move(pending_);
    pending_.clear();
    std::string chunk;
    auto send = [this](const std::string& payload) -> core::Result<void> {
        auto statement = prepare("SELECT pg_notify(?1, ?2)");
        if (!statement) {
            return statement.error();
        }
        return statement->bind_all(channel_, payload).run();
    };
    for (const auto& line : lines) {
        if (!chunk.empty() && chunk.size() + line.size() + 1 > kChunk) {
            if (auto sent = send(chunk); !sent) {
                return sent;
            }
            chunk.clear();
        }
        if (!chunk.empty()) {
            chunk.push_back('\n');
        }
        chunk += line.substr(0, kChunk);
    }
    if (!chunk.empty()) {
        return send(chunk);
    }
    return {};
}

int PgConnection::backend_pid() const {
    return pq().PQbackendPID(conn_);
}

core::Result<void> PgConnection::listen() {
    std::string quoted;
    for (char c : channel_) {
        quoted += c == '"' ? std::string{"\"\""} : std::string(1, c);
    }
    return exec(fmt::format("LISTEN \"{}\"", quoted));
}

core::Result<std::vector<PgConnection::Notification>> PgConnection::wait_notifications(
    core::Millis timeout) {
    std::vector<Notification> out;
    auto lost = [this] {
        return core::Error{core::ErrorCode::kUnavailable,
                           fmt::format("postgres {}: {}", name_, pq().PQerrorMessage(conn_))};
    };
    auto drain = [&] {
        while (PGnotify* note = pq().PQnotifies(conn_)) {
            out.push_back(Notification{.sender = note->be_pid, .payload = note->extra});
            pq().PQfreemem(note);
        }
    };
    if (pq().PQconsumeInput(conn_) == 0) {
        return lost();
    }
    drain();
    if (!out.empty()) {
        return out;
    }
    pollfd fd{.fd = pq().PQsocket(conn_), .events = POLLIN, .revents = 0};
    if (fd.fd < 0) {
        return lost();
    }
    if (::poll(&fd, 1, static_cast<int>(timeout.count())) > 0) {
        if (pq().PQconsumeInput(conn_) == 0) {
            return lost();
        }
        drain();
    }
    return out;
}

bool PgConnection::broken() const {
    return abandoned_ || pq().PQstatus(conn_) != CONNECTION_OK;
}

core::Error PgConnection::error(std::string_view what) const {
    std::string why = pq().PQerrorMessage(conn_);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) {
        why.pop_back();
    }
    return core::Error{core::ErrorCode::kStorage,
                       fmt::format("postgres {}: {} ({})", name_, why, what)};
}

core::Error PgConnection::failed(std::string_view what, const pg_result* result) {
    const char* state =
        result != nullptr ? pq().PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
    last_sqlstate_ = state != nullptr ? state : "";
    std::string why = result != nullptr ? pq().PQresultErrorMessage(result) : "";
    if (why.empty()) {
        why = pq().PQerrorMessage(conn_);
    }
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) {
        why.pop_back();
    }
    // A lost connection is the database being away, not a bad statement.
    auto code = broken() ? core::ErrorCode::kUnavailable : core::ErrorCode::kStorage;
    if (last_sqlstate_ == "2201B") {
        // A caller's regular expression PostgreSQL's engine refuses (a log query's regex,
        // which RE2 accepted): bad input, named by the database's own message.
        code = core::ErrorCode::kInvalidArgument;
        return core::Error{code, fmt::format("the database refused the regular expression: {}",
                                             why.substr(why.find("ERROR:") == 0 ? 7 : 0))};
    }
    return core::Error{code, fmt::format("postgres {}: {} ({})", name_, why, what)};
}

}  // namespace aviary::store::postgres
