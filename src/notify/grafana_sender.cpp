// GrafanaSender: works through the store's annotation outbox as a task of serve's scheduler.
// Each pass runs a private io_context on the scheduler's thread until the pass is done: it reads
// what is due, posts started annotations (looking up first any post whose answer was
// lost), patches ended ones into regions, and records every outcome in the store, so a restart
// of serve picks up exactly where this one stopped.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <variant>

#include "metrics/metrics.hpp"
#include "net/net.hpp"
#include "notify/delivery.hpp"
#include "notify/notify.hpp"

namespace aviary::notify {
namespace {

namespace asio = net::asio;
namespace json = boost::json;

/// Annotations read from the outbox per pass.
constexpr int kBatch = 100;
/// Grafana's answers are small; a larger one is refused rather than held.
constexpr std::size_t kResponseMax = std::size_t{4} * 1024 * 1024;
/// A pass sends for at most this long, then asks the scheduler to run it again at once: a slow
/// Grafana with a long backlog holds one scheduler thread for a bounded time.
constexpr std::chrono::seconds kPassBudget{30};
/// Idle connections to Grafana older than this are not reused (below the idle timeouts of
/// Grafana's server and of the proxies usually in front of it).
constexpr core::Millis kIdleTimeout{std::chrono::seconds{30}};

/// Why a send failed. `whole`: Grafana as a whole is unreachable or refuses us (down, 5xx,
/// a bad token), so the rest of the pass would fail the same way.
struct Failure {
    std::string error;
    std::string kind;  ///< what the warning log is keyed on: "unavailable", "http 401", ...
    bool whole = false;
};

std::int64_t epoch_ms(core::TimePoint t) {
    return t.time_since_epoch().count();
}

/// Grafana's {"message": "..."}, or an excerpt of whatever else it said.
std::string said(const net::ClientResponse& response) {
    std::error_code ec;
    auto parsed = json::parse(response.body, ec);
    if (!ec && parsed.is_object()) {
        if (const auto* message = parsed.as_object().if_contains("message");
            message != nullptr && message->is_string()) {
            return one_line(message->get_string());
        }
    }
    return response.body.empty() ? std::string{"(empty body)"} : one_line(response.body);
}

/// A failed exchange as a Failure; nullopt for a 2xx answer. `what` names the request.
std::optional<Failure> failure_of(const core::Result<net::ClientResponse>& got,
                                  std::string_view what) {
    if (!got) {
        return Failure{.error = fmt::format("{}: {}", what, got.error().message),
                       .kind = std::string{core::to_string(got.error().code)},
                       .whole = true};
    }
    int status = got->status;
    if (status >= 200 && status < 300) {
        return std::nullopt;
    }
    bool whole = status >= 500 || status == 401 || status == 403 || status == 429;
    return Failure{.error = fmt::format("{}: grafana answered {}: {}", what, status, said(*got)),
                   .kind = fmt::format("http {}", status),
                   .whole = whole};
}

/// True when `found` (an annotation as Grafana lists it) carries `tag`.
bool has_tag(const json::value& found, std::string_view tag) {
    const auto* tags = found.is_object() ? found.as_object().if_contains("tags") : nullptr;
    if (tags == nullptr || !tags->is_array()) {
        return false;
    }
    return std::any_of(tags->as_array().begin(), tags->as_array().end(), [&](const json::value& v) {
        return v.is_string() && v.get_string() == tag;
    });
}

std::optional<std::int64_t> id_of(const json::value& value) {
    if (!value.is_object()) {
        return std::nullopt;
    }
    const auto* id = value.as_object().if_contains("id");
    if (id == nullptr) {
        return std::nullopt;
    }
    if (id->is_int64()) {
        return id->get_int64();
    }
    if (id->is_uint64() && id->get_uint64() <= std::uint64_t(INT64_MAX)) {
        return static_cast<std::int64_t>(id->get_uint64());
    }
    return std::nullopt;
}

json::array tags_of(const store::Annotation& annotation, bool ended) {
    json::array tags;
    for (const auto& tag : annotation.tags) {
        tags.emplace_back(tag);
    }
    if (ended) {
        tags.emplace_back(outcome_tag(annotation));
    }
    return tags;
}

std::string text_of(const store::Annotation& annotation, bool ended) {
    return ended ? annotation.text + outcome_text(annotation) : annotation.text;
}

net::ClientSettings client_settings(const GrafanaTls& tls) {
    net::ClientSettings out;
    out.max_idle_per_host = 2;  // one pass sends one request at a time
    out.max_per_host = 2;
    out.idle_timeout = kIdleTimeout;
    out.tls.ca_file = tls.ca_file;
    out.tls.cert_file = tls.cert_file;
    out.tls.key_file = tls.key_file;
    return out;
}

}  // namespace

struct GrafanaSender::Impl {
    Impl(GrafanaSettings settings_in,
         store::Store& store_in,
         core::Clock& clock_in,
         metrics::Registry* registry)
        : settings(std::move(settings_in)),
          store(store_in),
          clock(clock_in),
          log(core::logger("notify")),
          http(std::make_unique<net::HttpClient>(task.io().get_executor(),
                                                 client_settings(settings.tls))) {
        base = settings.url;
        while (!base.empty() && base.back() == '/') {
            base.pop_back();
        }
        if (registry != nullptr) {
            sent_total = &registry->counter(
                "aviary_annotations_sent_total",
                "Annotation requests Grafana accepted: kind=post (a new annotation) or "
                "patch (a job's end).",
                {"kind"});
            failures_total = &registry->counter(
                "aviary_annotation_failures_total",
                "Annotation requests that failed (Grafana down, refused or erring); each is "
                "retried with backoff.");
            backlog = &registry->gauge(
                "aviary_annotation_backlog",
                "Started annotations not yet wholly sent to Grafana (the outbox's backlog).");
            sent_total->with({"post"});
            sent_total->with({"patch"});
            failures_total->get();
            backlog->get();
        }
    }

    // --- a scheduler thread (or run_once's caller), one pass at a time ------------------------
    /// When the next pass is due after a whole one: the next retry's time.
    std::optional<core::TimePoint> next_due();
    asio::awaitable<void> pass(bool& out_of_time);
    asio::awaitable<std::optional<Failure>> send(store::Annotation annotation);
    asio::awaitable<std::optional<Failure>> post(store::Annotation& annotation);
    asio::awaitable<std::optional<Failure>> patch(store::Annotation& annotation);
    asio::awaitable<std::optional<Failure>> look_up(store::Annotation& annotation);
    /// One request to Grafana; nullopt when the sender was stopped before it was answered.
    asio::awaitable<std::optional<core::Result<net::ClientResponse>>> request(std::string method,
                                                                              std::string path,
                                                                              std::string body);
    void record_failure(const store::Annotation& annotation, const Failure& failure);
    void record_sent(const store::AnnotationSent& sent);
    core::Millis backoff(int attempt);
    void refresh_backlog();

    GrafanaSettings settings;
    store::Store& store;
    core::Clock& clock;
    std::shared_ptr<spdlog::logger> log;
    std::string base;  ///< the url without a trailing slash

    // Declared before `http`, which is destroyed first and closes its connections on its loop.
    OutboxTask task{[this](bool& out_of_time) { return pass(out_of_time); },
                    [this] { return next_due(); }};
    std::unique_ptr<net::HttpClient> http;  // on task.io() only
    std::mt19937_64 random{std::random_device{}()};
    /// The kind of failure last warned about; empty while sends succeed.
    std::string failing;

    metrics::Family<metrics::Counter>* sent_total = nullptr;
    metrics::Family<metrics::Counter>* failures_total = nullptr;
    metrics::Family<metrics::Gauge>* backlog = nullptr;
};

std::optional<core::TimePoint> GrafanaSender::Impl::next_due() {
    // A start or end written meanwhile is found at the next poll, or at once when the engine
    // calls wake().
    auto next = store.next_annotation_at();
    if (!next) {
        log->warn("cannot read the annotation outbox error=\"{}\"", next.error().message);
        return std::nullopt;
    }
    return *next;
}

asio::awaitable<void> GrafanaSender::Impl::pass(bool& out_of_time) {
    auto give_up = std::chrono::steady_clock::now() + kPassBudget;
    auto due = store.due_annotations(clock.now(), kBatch);
    if (!due) {
        log->warn("cannot read the annotation outbox error=\"{}\"", due.error().message);
        co_return;
    }
    std::optional<Failure> whole;
    for (auto& annotation : *due) {
        if (task.stopping()) {
            co_return;
        }
        if (std::chrono::steady_clock::now() >= give_up) {
            out_of_time = true;
            break;
        }
        if (whole) {
            // Grafana is down or refuses us: the rest would fail the same way, so each waits
            // out its own backoff without a request of its own.
            record_failure(annotation, *whole);
            continue;
        }
        auto failed = co_await send(annotation);
        if (task.stopping()) {
            co_return;
        }
        if (failed) {
            // Recorded first: whoever sees the counter move finds the failure in the outbox.
            record_failure(annotation, *failed);
            if (failures_total != nullptr) {
                failures_total->get().inc();
            }
            if (failed->whole) {
                whole = std::move(failed);
            }
        }
    }
    refresh_backlog();
}

asio::awaitable<std::optional<Failure>> GrafanaSender::Impl::send(store::Annotation annotation) {
    if (!annotation.remote_id && annotation.post_in_doubt) {
        if (auto failed = co_await look_up(annotation)) {
            co_return failed;
        }
    }
    if (!annotation.remote_id) {
        co_return co_await post(annotation);
    }
    if (annotation.time_end && !annotation.end_sent) {
        co_return co_await patch(annotation);
    }
    co_return std::nullopt;
}

/// A post was begun and its answer never recorded: Grafana may hold it. Found by its job tag,
/// it is adopted (and counts as ended when it carries the outcome); not found, it is posted.
asio::awaitable<std::optional<Failure>> GrafanaSender::Impl::look_up(
    store::Annotation& annotation) {
    auto path =
        fmt::format("/api/annotations?tags=job:{}&type=annotation&limit=1", annotation.job_id);
    auto got = co_await request("GET", path, "");
    if (!got) {
        co_return std::nullopt;
    }
    auto what = fmt::format("looking up the annotation of job {}", annotation.job_id);
    if (auto failed = failure_of(*got, what)) {
        co_return failed;
    }
    std::error_code ec;
    auto parsed = json::parse((*got)->body, ec);
    if (ec || !parsed.is_array()) {
        co_return Failure{.error = fmt::format("{}: grafana answered {} with a body that is not "
                                               "a JSON array: {}",
                                               what, (*got)->status, one_line((*got)->body)),
                          .kind = "bad answer"};
    }
    auto job_tag = "job:" + annotation.job_id;
    for (const auto& found : parsed.as_array()) {
        auto id = id_of(found);
        if (!id || !has_tag(found, job_tag)) {
            continue;
        }
        bool ended = annotation.time_end.has_value() && has_tag(found, outcome_tag(annotation));
        log->info("annotation found after a lost answer job={} id={}", annotation.job_id, *id);
        record_sent(
            store::AnnotationSent{.job_id = annotation.job_id, .remote_id = id, .end_sent = ended});
        annotation.remote_id = id;
        annotation.end_sent = ended;
        co_return std::nullopt;
    }
    co_return std::nullopt;
}

asio::awaitable<std::optional<Failure>> GrafanaSender::Impl::post(store::Annotation& annotation) {
    // Durably in doubt before the request leaves: if the answer is lost (or serve dies before
    // recording it), the next attempt looks the annotation up instead of posting it twice.
    if (auto marked = store.annotation_posting(annotation.job_id); !marked) {
        co_return Failure{
            .error = fmt::format("cannot mark the annotation of job {} as posting: {}",
                                 annotation.job_id, marked.error().message),
            .kind = "store"};
    }
    bool ended = annotation.time_end.has_value();
    json::object body;
    body["time"] = epoch_ms(annotation.time);
    if (ended) {
        body["timeEnd"] = epoch_ms(*annotation.time_end);
    }
    body["tags"] = tags_of(annotation, ended);
    body["text"] = text_of(annotation, ended);
    auto got = co_await request("POST", "/api/annotations", json::serialize(body));
    if (!got) {
        co_return std::nullopt;
    }
    auto what = fmt::format("posting the annotation of job {}", annotation.job_id);
    if (auto failed = failure_of(*got, what)) {
        co_return failed;
    }
    std::error_code ec;
    auto parsed = json::parse((*got)->body, ec);
    auto id = ec ? std::nullopt : id_of(parsed);
    if (!id) {
        co_return Failure{.error = fmt::format("{}: grafana answered {} without an id: {}", what,
                                               (*got)->status, one_line((*got)->body)),
                          .kind = "bad answer"};
    }
    record_sent(
        store::AnnotationSent{.job_id = annotation.job_id, .remote_id = id, .end_sent = ended});
    if (sent_total != nullptr) {
        sent_total->with({"post"}).inc();
    }
    log->debug("annotation posted job={} id={} ended={}", annotation.job_id, *id, ended);
    co_return std::nullopt;
}

asio::awaitable<std::optional<Failure>> GrafanaSender::Impl::patch(store::Annotation& annotation) {
    json::object body;
    body["timeEnd"] = epoch_ms(*annotation.time_end);
    body["text"] = text_of(annotation, true);
    body["tags"] = tags_of(annotation, true);
    auto path = fmt::format("/api/annotations/{}", *annotation.remote_id);
    auto got = co_await request("PATCH", path, json::serialize(body));
    if (!got) {
        co_return std::nullopt;
    }
    if (*got && (*got)->status == 404) {
        // Deleted in Grafana: there is nothing to end, and asking again would never succeed.
        log->warn("annotation gone from grafana, its end is dropped job={} id={}",
                  annotation.job_id, *annotation.remote_id);
        record_sent(store::AnnotationSent{.job_id = annotation.job_id, .end_sent = true});
        co_return std::nullopt;
    }
    auto what =
        fmt::format("patching annotation {} of job {}", *annotation.remote_id, annotation.job_id);
    if (auto failed = failure_of(*got, what)) {
        co_return failed;
    }
    record_sent(store::AnnotationSent{.job_id = annotation.job_id, .end_sent = true});
    if (sent_total != nullptr) {
        sent_total->with({"patch"}).inc();
    }
    log->debug("annotation ended job={} id={} outcome={}", annotation.job_id, *annotation.remote_id,
               annotation.outcome);
    co_return std::nullopt;
}

asio::awaitable<std::optional<core::Result<net::ClientResponse>>> GrafanaSender::Impl::request(
    std::string method, std::string path, std::string body) {
    net::ClientRequest out;
    out.method = std::move(method);
    out.url = base + path;
    out.headers.push_back(net::Header{"Authorization", "Bearer " + settings.token});
    out.headers.push_back(net::Header{"Accept", "application/json"});
    out.headers.push_back(net::Header{"Content-Type", "application/json"});
    out.body = std::move(body);
    out.timeout = settings.timeout;
    out.max_body_bytes = kResponseMax;
    co_return co_await task.fetch(*http, std::move(out));
}

void GrafanaSender::Impl::record_sent(const store::AnnotationSent& sent) {
    if (auto recorded = store.annotation_sent(sent); !recorded) {
        log->warn("cannot record a sent annotation job={} error=\"{}\"", sent.job_id,
                  recorded.error().message);
        return;
    }
    if (!failing.empty()) {
        log->info("annotations reach grafana again url={}", core::redact_url(base));
        failing.clear();
    }
}

void GrafanaSender::Impl::record_failure(const store::Annotation& annotation,
                                         const Failure& failure) {
    auto wait = backoff(annotation.attempts + 1);
    // The error may quote the URL (with its userinfo) or the token: it is logged and stored.
    const std::string error = core::redact(failure.error);
    if (auto recorded = store.annotation_failed(annotation.job_id, error, clock.now() + wait);
        !recorded) {
        log->warn("cannot record a failed annotation job={} error=\"{}\"", annotation.job_id,
                  recorded.error().message);
    }
    // One warning per change of state, not one per annotation per retry.
    if (failure.kind != failing) {
        log->warn("annotations cannot reach grafana, retrying with backoff error=\"{}\"", error);
        failing = failure.kind;
    } else {
        log->debug("annotation send failed job={} attempt={} retry_in={} error=\"{}\"",
                   annotation.job_id, annotation.attempts + 1, core::format_duration(wait), error);
    }
}

core::Millis GrafanaSender::Impl::backoff(int attempt) {
    return notify::backoff(attempt, settings.retry_backoff, settings.retry_backoff_max, random);
}

void GrafanaSender::Impl::refresh_backlog() {
    if (backlog == nullptr) {
        return;
    }
    if (auto count = store.annotation_backlog()) {
        backlog->get().set(double(*count));
    }
}

// ---------------------------------------------------------------------------------------------

GrafanaSender::GrafanaSender(GrafanaSettings settings,
                             store::Store& store,
                             core::Clock& clock,
                             metrics::Registry* metrics)
    : impl_(std::make_unique<Impl>(std::move(settings), store, clock, metrics)) {}

GrafanaSender::~GrafanaSender() {
    try {
        stop();
    } catch (const std::exception& e) {
        // stop() locks and cancels; nothing may escape a destructor (spdlog does not throw).
        impl_->log->error("stopping the annotation sender failed: {}", e.what());
    } catch (...) {
        impl_->log->error("stopping the annotation sender failed");
    }
}

void GrafanaSender::schedule(core::Scheduler& scheduler) {
    auto& d = *impl_;
    if (d.settings.url.empty()) {
        return;
    }
    if (d.task.schedule(scheduler, core::Scheduler::Task{.name = "grafana-annotations",
                                                         .interval = d.settings.poll,
                                                         .leader_only = true})) {
        d.log->info("annotation sender scheduled url={} actions={}", core::redact_url(d.base),
                    fmt::join(d.settings.actions, ","));
    }
}

void GrafanaSender::wake() {
    impl_->task.wake();
}

void GrafanaSender::stop() {
    if (impl_->task.stop()) {
        impl_->log->info("annotation sender stopped");
    }
}

void GrafanaSender::run_once() {
    impl_->task.run_once();
}

}  // namespace aviary::notify
