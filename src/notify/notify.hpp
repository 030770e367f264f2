#pragma once
/// notify: telling other systems what happened (docs/architecture.md). Now: Grafana annotations for
/// the deploying actions (the tweety seed annotated Grafana when a canary changed).
///
/// The outbox pattern: the job engine asks annotation_for() for an annotation when a job is
/// submitted, and the store keeps it beside the job, marking its start and end in the same
/// transactions that change the job's state. GrafanaSender, a task on serve's scheduler, posts
/// each started annotation (`POST /api/annotations`), stores Grafana's id, and
/// turns it into a region when the job ends (`PATCH /api/annotations/{id}` with timeEnd and the
/// outcome). Failures are retried with exponential backoff, across restarts of serve: nothing is
/// lost, and a post whose answer was lost is looked up by its job tag before it is sent again,
/// so nothing is duplicated. Sending never affects the job.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/core.hpp"
#include "store/store.hpp"

namespace aviary::metrics {
class Registry;
}

namespace aviary::notify {

/// How an https:// Grafana is verified, and how aviary proves who it is (mTLS). Paths to PEM
/// files; empty ones are unused.
struct GrafanaTls {
    std::string ca_file;    ///< trusted instead of the system CA store (a private CA)
    std::string cert_file;  ///< a client certificate chain, with key_file, for mTLS
    std::string key_file;
};

struct GrafanaSettings {
    /// Grafana's base URL, "https://grafana.example" or "http://127.0.0.1:3000"; empty: no
    /// annotations. An https URL is verified (chain and host name) against the system CA
    /// store, or `tls.ca_file` when set.
    std::string url;
    GrafanaTls tls;
    /// The service-account token (sent as `Authorization: Bearer TOKEN`), read by config from
    /// a file or an environment variable; never logged.
    std::string token;
    /// Which actions are annotated.
    std::vector<std::string> actions{"upgrade", "install-snapshot", "create-canary",
                                     "delete-canary"};
    /// Added to every annotation's tags (empty ones are dropped).
    std::vector<std::string> tags;
    core::Millis timeout{std::chrono::seconds{5}};  ///< each request, in all
    /// The first retry's delay; it doubles (with jitter) up to retry_backoff_max.
    core::Millis retry_backoff{std::chrono::seconds{1}};
    core::Millis retry_backoff_max{std::chrono::minutes{5}};
    /// The longest the outbox goes unread (serve wakes the sender when a job starts or ends;
    /// this bounds what a missed wake-up costs): the scheduler task's interval.
    core::Millis poll{std::chrono::seconds{1}};
};

/// Where an alarm's notifications go (docs/probes.md, "Notifiers").
struct Notifier {
    enum class Type {
        kSlack,    ///< a Slack incoming webhook: {"text": ...} with the alarm, figures and link
        kWebhook,  ///< any receiver: the notification as JSON, HMAC-signed when `secret` is set
    };
    std::string name;
    Type type = Type::kWebhook;
    /// Where it is posted. A Slack webhook's URL is itself the secret: read from url_file or
    /// url_env, never logged.
    std::string url;
    /// The webhook's HMAC-SHA256 key (secret_file or secret_env); empty: unsigned.
    std::string secret;
    GrafanaTls tls;  ///< an https receiver's CA and aviary's client certificate
    core::Millis timeout{std::chrono::seconds{10}};
};

std::string_view notifier_type_name(Notifier::Type type);  ///< "slack", "webhook"

/// How alarm notifications are delivered from the store's outbox.
struct DeliverySettings {
    core::Millis retry_backoff{std::chrono::seconds{5}};  ///< doubles with jitter up to the max
    core::Millis retry_backoff_max{std::chrono::minutes{5}};
    /// A notification not delivered this long after it was raised is given up (logged, and
    /// kept in the outbox as "abandoned"): nothing is retried for ever.
    core::Millis give_up_after{std::chrono::hours{24}};
    core::Millis poll{std::chrono::seconds{5}};  ///< the longest the outbox goes unread
};

struct Settings {
    GrafanaSettings grafana;
    std::vector<Notifier> notifiers;
    DeliverySettings delivery;
};

/// The body of a webhook notification (stable, documented in docs/probes.md): {"version": 1,
/// "id", "alarm", "rule", "scenario", "kind", "state", "summary", "link", "at", "since"}.
std::string webhook_body(const store::AlarmNotification& n);
/// Slack's {"text": ...}: which alarm, firing or resolved, the summary, and the link.
std::string slack_body(const store::AlarmNotification& n);
/// The signature header's value for `body` sent at `unix_seconds`:
/// "t=UNIX,v1=HEX(HMAC-SHA256(secret, "UNIX." + body))".
core::Result<std::string> webhook_signature(std::string_view secret,
                                            std::int64_t unix_seconds,
                                            std::string_view body);
/// The header the signature goes in.
inline constexpr std::string_view kSignatureHeader = "X-Aviary-Signature";

/// Sends the alarm notifications in the store's outbox, as the task "alarm-notifications" on
/// serve's scheduler (leader only, so one instance sends each): each pass posts what is due,
/// one request at a time on a private loop, and records each outcome; a failure waits out its
/// backoff, and a receiver that is down never slows the probes. `metrics` may be null.
class AlarmSender {
public:
    AlarmSender(Settings settings,
                store::Store& store,
                core::Clock& clock,
                metrics::Registry* metrics);
    ~AlarmSender();  ///< stops
    AlarmSender(const AlarmSender&) = delete;
    AlarmSender& operator=(const AlarmSender&) = delete;

    /// Adds the task to `scheduler` (before it starts). The scheduler must outlive this.
    void schedule(core::Scheduler& scheduler);
    /// Runs a pass soon (an alarm changed). Thread-safe.
    void wake();
    /// Ends the pass in flight promptly and removes the task. Idempotent.
    void stop();
    /// One pass on the calling thread; for tests, never while the task may run.
    void run_once();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// The annotation a job gets, or nullopt when Grafana is off or the action is not annotated.
/// text: "upgrade lotus-0 to v1.2.3 (job ID, by anton)"; tags: deploy, node:NAME, image:TAG
/// (from the job's `tag` param), action:NAME, job:ID (how a post whose answer was lost is
/// found again), then the configured tags. Empty tags and "key:" tags with nothing after the
/// colon are dropped, as are repeats.
std::optional<core::JobAnnotation> annotation_for(const GrafanaSettings& settings,
                                                  const core::Job& job);

/// What the end of a job adds to its annotation's text: " — succeeded in 42s",
/// " — failed: <error>" (the error cut to a few hundred bytes), " — cancelled", ...
std::string outcome_text(const store::Annotation& annotation);
/// The tag that carries the outcome: "outcome:succeeded", "outcome:failed", ...
std::string outcome_tag(const store::Annotation& annotation);

/// Sends the outbox to Grafana, as the task "grafana-annotations" on serve's scheduler: each
/// run is one pass over what is due, on a scheduler thread, with its HTTP on a private loop
/// (keep-alive connections to Grafana live from one pass to the next). A pass ends after
/// 30 s even when more is due, and asks to run again at once, so a slow Grafana holds
/// one scheduler thread for a bounded time. `metrics` may be null.
class GrafanaSender {
public:
    GrafanaSender(GrafanaSettings settings,
                  store::Store& store,
                  core::Clock& clock,
                  metrics::Registry* metrics);
    ~GrafanaSender();  ///< stops
    GrafanaSender(const GrafanaSender&) = delete;
    GrafanaSender& operator=(const GrafanaSender&) = delete;

    /// Adds the sender's task to `scheduler`, before the scheduler starts; it first runs at the
    /// scheduler's start, sending what a previous run of serve left. Does nothing when
    /// settings.url is empty. The scheduler must outlive this sender.
    void schedule(core::Scheduler& scheduler);
    /// Runs a pass now (a job started or ended) rather than at the next poll. Thread-safe; does
    /// nothing before schedule() or after stop().
    void wake();
    /// Ends the pass in flight promptly (its request is cancelled and sent again at the next
    /// start; a post in doubt is looked up first) and removes the task. Idempotent, safe before
    /// schedule(); returns once no pass runs.
    void stop();
    /// One pass over the outbox on the calling thread: sends what is due, records each outcome.
    /// For tests; never while the scheduled task may run.
    void run_once();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace aviary::notify
