#pragma once
/// notify: telling other systems what happened (docs/architecture.md). Now: Grafana annotations for
/// the deploying actions (the tweety seed annotated Grafana when a canary changed).
///
/// The outbox pattern: the job engine asks annotation_for() for an annotation when a job is
/// submitted, and the store keeps it beside the job, marking its start and end in the same
/// transactions that change the job's state. GrafanaSender, a background sender with its own
/// thread, posts each started annotation (`POST /api/annotations`), stores Grafana's id, and
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

struct GrafanaSettings {
    /// Grafana's base URL, "http://grafana.example:3000" (http:// until the TLS issue); empty:
    /// no annotations.
    std::string url;
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
    /// Longest the sender sleeps without looking at the outbox (serve wakes it when a job
    /// starts or ends; this bounds what a missed wake-up costs).
    core::Millis poll{std::chrono::seconds{1}};
};

struct Settings {
    GrafanaSettings grafana;
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

/// Sends the outbox to Grafana. `metrics` may be null.
class GrafanaSender {
public:
    GrafanaSender(GrafanaSettings settings,
                  store::Store& store,
                  core::Clock& clock,
                  metrics::Registry* metrics);
    ~GrafanaSender();  ///< stops
    GrafanaSender(const GrafanaSender&) = delete;
    GrafanaSender& operator=(const GrafanaSender&) = delete;

    void start();  ///< starts the sender's thread; does nothing when settings.url is empty
    /// Wakes the sender now (a job started or ended) rather than at its next poll.
    void wake();
    /// Ends the thread promptly: the sleep and a request in flight are cancelled (the request
    /// is sent again at the next start; a post in doubt is looked up first). Idempotent, safe
    /// before start().
    void stop();
    /// One pass over the outbox on the calling thread, as the thread makes each time it wakes:
    /// sends what is due, records each outcome. For tests; only while the thread is not running.
    void run_once();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace aviary::notify
