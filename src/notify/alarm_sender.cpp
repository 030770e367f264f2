// AlarmSender: works through the store's alarm notification outbox as a task of serve's
// scheduler (docs/probes.md, "Notifiers"). Each pass runs a private io_context on the
// scheduler's thread: it reads what is due, posts each notification to its notifier (Slack's
// incoming webhook, or a generic webhook signed with HMAC-SHA256), and records the outcome, so a
// restart of serve resumes where this one stopped. A receiver that is down costs one request
// per notification per backoff, on this task's thread only.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <map>
#include <set>

#include "metrics/metrics.hpp"
#include "notify/delivery.hpp"
#include "notify/notify.hpp"

namespace aviary::notify {
namespace {

namespace asio = net::asio;
namespace json = boost::json;

constexpr int kBatch = 100;
/// A receiver's answer is read up to this size; notifications need no more than its status.
constexpr std::size_t kResponseMax = std::size_t{64} * 1024;
/// A pass sends for at most this long, then asks to run again at once.
constexpr std::chrono::seconds kPassBudget{30};

std::int64_t unix_seconds(core::TimePoint t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::string_view state_of(const store::AlarmNotification& n) {
    return n.kind == "resolved" ? "ok" : "firing";
}

net::ClientTls tls_of(const GrafanaTls& tls) {
    net::ClientTls out;
    out.ca_file = tls.ca_file;
    out.cert_file = tls.cert_file;
    out.key_file = tls.key_file;
    return out;
}

}  // namespace

std::string_view notifier_type_name(Notifier::Type type) {
    return type == Notifier::Type::kSlack ? "slack" : "webhook";
}

std::string webhook_body(const store::AlarmNotification& n) {
    json::object body{{"version", 1},
                      {"id", n.id},
                      {"alarm", n.alarm},
                      {"rule", n.rule},
                      {"scenario", n.scenario},
                      {"kind", n.kind},
                      {"state", state_of(n)},
                      {"summary", n.summary},
                      {"link", n.link},
                      {"at", core::format_time(n.at)},
                      {"since", core::format_time(n.since)}};
    return json::serialize(body);
}

std::string slack_body(const store::AlarmNotification& n) {
    std::string_view headline = n.kind == "resolved"   ? ":white_check_mark: Resolved"
                                : n.kind == "reminder" ? ":rotating_light: Still firing"
                                                       : ":rotating_light: Firing";
    auto text = fmt::format("{}: *{}* (scenario {})\n{}\nSince {}", headline, n.alarm, n.scenario,
                            n.summary, core::format_time(n.since));
    if (!n.link.empty()) {
        text += fmt::format("\n<{}|Open the dashboard>", n.link);
    }
    return json::serialize(json::object{{"text", text}});
}

core::Result<std::string> webhook_signature(std::string_view secret,
                                            std::int64_t unix_seconds,
                                            std::string_view body) {
    auto mac = net::hmac_sha256_hex(secret, fmt::format("{}.{}", unix_seconds, body));
    if (!mac) {
        return mac.error();
    }
    return fmt::format("t={},v1={}", unix_seconds, *mac);
}

struct AlarmSender::Impl {
    Impl(Settings settings_in, store::Store& store_in, core::Clock& clock_in, metrics::Registry* m)
        : settings(std::move(settings_in)),
          store(store_in),
          clock(clock_in),
          log(core::logger("notify")),
          http(std::make_unique<net::HttpClient>(
              task.io().get_executor(),
              net::ClientSettings{.max_idle_per_host = 2, .max_per_host = 2})) {
        for (const auto& n : settings.notifiers) {
            by_name.emplace(n.name, &n);
        }
        if (m != nullptr) {
            sent_total = &m->counter("aviary_alarm_notifications_total",
                                     "Alarm notifications by notifier and outcome (sent, failed: "
                                     "retried with backoff, abandoned: given up).",
                                     {"notifier", "outcome"});
            backlog = &m->gauge("aviary_alarm_notification_backlog",
                                "Alarm notifications in the outbox not yet sent.");
            backlog->get();
        }
    }

    std::optional<core::TimePoint> next_due() {
        auto next = store.next_alarm_notification_at();
        if (!next) {
            log->warn("cannot read the alarm outbox error=\"{}\"", next.error().message);
            return std::nullopt;
        }
        return *next;
    }

    asio::awaitable<void> pass(bool& out_of_time) {
        auto give_up = std::chrono::steady_clock::now() + kPassBudget;
        auto due = store.due_alarm_notifications(clock.now(), kBatch);
        if (!due) {
            log->warn("cannot read the alarm outbox error=\"{}\"", due.error().message);
            co_return;
        }
        // A receiver found down this pass is not tried again in it: the rest wait out their own
        // backoff.
        std::map<std::string, std::string, std::less<>> down;
        for (auto& n : *due) {
            if (task.stopping()) {
                co_return;
            }
            if (std::chrono::steady_clock::now() >= give_up) {
                out_of_time = true;
                break;
            }
            auto found = by_name.find(n.notifier);
            if (found == by_name.end()) {
                finish(n, "abandoned",
                       fmt::format("notifier \"{}\" is no longer configured", n.notifier));
                continue;
            }
            if (auto was = down.find(n.notifier); was != down.end()) {
                failed(n, was->second);
                continue;
            }
            auto error = co_await send(*found->second, n);
            if (task.stopping()) {
                co_return;
            }
            if (!error) {
                finish(n, "sent", "");
            } else {
                failed(n, *error);
                down.emplace(n.notifier, *error);
            }
        }
        if (backlog != nullptr) {
            if (auto count = store.alarm_notification_backlog()) {
                backlog->get().set(static_cast<double>(*count));
            }
        }
    }

    /// Posts one notification; the error (redacted) when it was not accepted.
    asio::awaitable<std::optional<std::string>> send(const Notifier& notifier,
                                                     const store::AlarmNotification& n) {
        net::ClientRequest out;
        out.method = "POST";
        out.url = notifier.url;
        out.timeout = notifier.timeout;
        out.max_body_bytes = kResponseMax;
        out.headers.push_back(net::Header{"Content-Type", "application/json"});
        out.headers.push_back(net::Header{"User-Agent", "aviary-alarms"});
        if (notifier.url.starts_with("https://")) {
            out.tls = tls_of(notifier.tls);
        }
        if (notifier.type == Notifier::Type::kSlack) {
            out.body = slack_body(n);
        } else {
            out.body = webhook_body(n);
            out.headers.push_back(net::Header{"X-Aviary-Event", n.kind});
            out.headers.push_back(net::Header{"X-Aviary-Delivery", std::to_string(n.id)});
            if (!notifier.secret.empty()) {
                auto signature =
                    webhook_signature(notifier.secret, unix_seconds(clock.now()), out.body);
                if (!signature) {
                    co_return fmt::format("cannot sign for {}: {}", notifier.name,
                                          signature.error().message);
                }
                out.headers.push_back(net::Header{std::string{kSignatureHeader}, *signature});
            }
        }
        auto answered = co_await task.fetch(*http, std::move(out));
        if (!answered) {
            co_return std::string{"stopped"};
        }
        auto& got = *answered;
        if (!got) {
            co_return core::redact(fmt::format("{} {}: {}", notifier_type_name(notifier.type),
                                               notifier.name, got.error().message));
        }
        if (got->status < 200 || got->status >= 300) {
            co_return core::redact(fmt::format("{} {} answered {}: {}",
                                               notifier_type_name(notifier.type), notifier.name,
                                               got->status, one_line(got->body)));
        }
        co_return std::nullopt;
    }

    void finish(const store::AlarmNotification& n, std::string_view outcome, std::string error) {
        auto recorded = store.alarm_notification_done(n.id, outcome, error, clock.now());
        if (!recorded) {
            log->warn("cannot record a notification id={} error=\"{}\"", n.id,
                      recorded.error().message);
        }
        if (outcome == "abandoned") {
            log->error("alarm notification abandoned id={} alarm={} notifier={} error=\"{}\"", n.id,
                       n.alarm, n.notifier, error);
        } else {
            log->info("alarm notification sent id={} alarm={} kind={} notifier={}", n.id, n.alarm,
                      n.kind, n.notifier);
            failing.erase(n.notifier);
        }
        if (sent_total != nullptr) {
            sent_total->with({n.notifier, outcome}).inc();
        }
    }

    void failed(const store::AlarmNotification& n, const std::string& error) {
        if (clock.now() - n.at >= settings.delivery.give_up_after) {
            finish(n, "abandoned",
                   fmt::format("not delivered within {}: {}",
                               core::format_duration(settings.delivery.give_up_after), error));
            return;
        }
        auto wait = backoff(n.attempts + 1, settings.delivery.retry_backoff,
                            settings.delivery.retry_backoff_max, random);
        if (auto recorded = store.alarm_notification_failed(n.id, error, clock.now() + wait);
            !recorded) {
            log->warn("cannot record a failed notification id={} error=\"{}\"", n.id,
                      recorded.error().message);
        }
        // One warning per notifier until it recovers, not one per notification per retry.
        if (failing.insert(n.notifier).second) {
            log->warn(
                "alarm notifications cannot reach their notifier, retrying with backoff "
                "notifier={} error=\"{}\"",
                n.notifier, error);
        }
        if (sent_total != nullptr) {
            sent_total->with({n.notifier, "failed"}).inc();
        }
    }

    Settings settings;
    store::Store& store;
    core::Clock& clock;
    std::shared_ptr<spdlog::logger> log;
    std::map<std::string, const Notifier*, std::less<>> by_name;
    // Declared before `http`, which is destroyed first and closes its connections on its loop.
    OutboxTask task{[this](bool& out_of_time) { return pass(out_of_time); },
                    [this] { return next_due(); }};
    std::unique_ptr<net::HttpClient> http;  // on task.io() only
    std::mt19937_64 random{std::random_device{}()};
    std::set<std::string, std::less<>> failing;  // notifiers warned about
    metrics::Family<metrics::Counter>* sent_total = nullptr;
    metrics::Family<metrics::Gauge>* backlog = nullptr;
};

AlarmSender::AlarmSender(Settings settings,
                         store::Store& store,
                         core::Clock& clock,
                         metrics::Registry* metrics)
    : impl_(std::make_unique<Impl>(std::move(settings), store, clock, metrics)) {}

AlarmSender::~AlarmSender() {
    try {
        stop();
    } catch (const std::exception& e) {
        impl_->log->error("stopping the alarm sender failed: {}", e.what());
    }
}

void AlarmSender::schedule(core::Scheduler& scheduler) {
    impl_->task.schedule(scheduler, core::Scheduler::Task{.name = "alarm-notifications",
                                                          .interval = impl_->settings.delivery.poll,
                                                          .leader_only = true});
}

void AlarmSender::wake() {
    impl_->task.wake();
}

void AlarmSender::stop() {
    impl_->task.stop();
}

void AlarmSender::run_once() {
    impl_->task.run_once();
}

}  // namespace aviary::notify
