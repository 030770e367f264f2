#include "metrics/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/core.hpp"
#include "metrics/exposition.hpp"

namespace aviary::metrics {
namespace {

bool is_name_char(char c, bool first, bool colon_ok) {
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool digit = c >= '0' && c <= '9';
    return alpha || (colon_ok && c == ':') || (!first && digit);
}

bool is_valid_name(std::string_view name, bool colon_ok) {
    if (name.empty()) {
        return false;
    }
    for (std::size_t i = 0; i < name.size(); ++i) {
        if (!is_name_char(name[i], i == 0, colon_ok)) {
            return false;
        }
    }
    return true;
}

void check_names(const std::string& name, const std::vector<std::string>& label_names) {
    // A bad name makes the whole scrape unparseable, so it is a bug caught at registration.
    AVIARY_ASSERT(is_valid_name(name, true), "metric names match [a-zA-Z_:][a-zA-Z0-9_:]*");
    for (const auto& label : label_names) {
        AVIARY_ASSERT(is_valid_name(label, false), "label names match [a-zA-Z_][a-zA-Z0-9_]*");
        AVIARY_ASSERT(!label.starts_with("__"), "label names starting with __ are reserved");
    }
}

}  // namespace

void Counter::inc(double by) {
    AVIARY_ASSERT(by >= 0, "a counter only goes up");
    value_.fetch_add(by, std::memory_order_relaxed);
}

void Gauge::inc(double by) {
    value_.fetch_add(by, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
    if (!bounds_.empty() && std::isinf(bounds_.back()) && bounds_.back() > 0) {
        bounds_.pop_back();
    }
    for (std::size_t i = 0; i < bounds_.size(); ++i) {
        AVIARY_ASSERT(std::isfinite(bounds_[i]), "histogram bounds are finite (+Inf is implied)");
        AVIARY_ASSERT(i == 0 || bounds_[i - 1] < bounds_[i], "histogram bounds strictly ascend");
    }
    buckets_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
}

void Histogram::observe(double v) {
    // The first bound with v <= bound ("le"); NaN lands in +Inf.
    auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
    auto index = static_cast<std::size_t>(it - bounds_.begin());
    buckets_[index].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
    Snapshot snap;
    snap.bounds = bounds_;
    snap.bounds.push_back(std::numeric_limits<double>::infinity());
    snap.cumulative.reserve(snap.bounds.size());
    std::uint64_t running = 0;
    for (std::size_t i = 0; i < snap.bounds.size(); ++i) {
        running += buckets_[i].load(std::memory_order_relaxed);
        snap.cumulative.push_back(running);
    }
    snap.count = running;
    snap.sum = sum_.load(std::memory_order_relaxed);
    return snap;
}

std::vector<double> default_latency_buckets() {
    return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

template <class M>
template <class Values>
M& Family<M>::find_or_make(const Values& label_values) {
    AVIARY_ASSERT(label_values.size() == label_names_.size(),
                  "one label value per label name of the family");
    std::lock_guard lock{mu_};
    auto found = children_.find(label_values);
    if (found == children_.end()) {
        found = children_
                    .emplace(std::vector<std::string>(label_values.begin(), label_values.end()),
                             make_())
                    .first;
    }
    return *found->second;
}

template <class M>
M& Family<M>::with(std::initializer_list<std::string_view> label_values) {
    return find_or_make(label_values);
}

template <class M>
M& Family<M>::with(const std::vector<std::string>& label_values) {
    return find_or_make(label_values);
}

template <class M>
void Family<M>::each(
    const std::function<void(const std::vector<std::string>&, const M&)>& fn) const {
    std::lock_guard lock{mu_};
    for (const auto& [labels, metric] : children_) {
        fn(labels, *metric);
    }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

Family<Counter>& Registry::counter(std::string name,
                                   std::string help,
                                   std::vector<std::string> label_names) {
    std::lock_guard lock{mu_};
    if (auto it = families_.find(name); it != families_.end()) {
        AVIARY_ASSERT(it->second.type == Type::kCounter, "a metric name has one type");
        return *it->second.counter;
    }
    check_names(name, label_names);
    auto family = std::make_unique<Family<Counter>>(name, std::move(help), std::move(label_names),
                                                    [] { return std::make_unique<Counter>(); });
    auto& entry = families_[std::move(name)];
    entry.type = Type::kCounter;
    entry.counter = std::move(family);
    // An unlabelled metric exists from registration, so a scrape shows 0 rather than nothing.
    if (entry.counter->label_names().empty()) {
        entry.counter->get();
    }
    return *entry.counter;
}

Family<Gauge>& Registry::gauge(std::string name,
                               std::string help,
                               std::vector<std::string> label_names) {
    std::lock_guard lock{mu_};
    if (auto it = families_.find(name); it != families_.end()) {
        AVIARY_ASSERT(it->second.type == Type::kGauge, "a metric name has one type");
        return *it->second.gauge;
    }
    check_names(name, label_names);
    auto family = std::make_unique<Family<Gauge>>(name, std::move(help), std::move(label_names),
                                                  [] { return std::make_unique<Gauge>(); });
    auto& entry = families_[std::move(name)];
    entry.type = Type::kGauge;
    entry.gauge = std::move(family);
    if (entry.gauge->label_names().empty()) {
        entry.gauge->get();
    }
    return *entry.gauge;
}

Family<Histogram>& Registry::histogram(std::string name,
                                       std::string help,
                                       std::vector<std::string> label_names,
                                       std::vector<double> upper_bounds) {
    std::lock_guard lock{mu_};
    if (auto it = families_.find(name); it != families_.end()) {
        AVIARY_ASSERT(it->second.type == Type::kHistogram, "a metric name has one type");
        return *it->second.histogram;
    }
    check_names(name, label_names);
    AVIARY_ASSERT(std::find(label_names.begin(), label_names.end(), "le") == label_names.end(),
                  "\"le\" is the histogram's own bucket label");
    auto make = [bounds = std::move(upper_bounds)] { return std::make_unique<Histogram>(bounds); };
    auto family = std::make_unique<Family<Histogram>>(name, std::move(help), std::move(label_names),
                                                      std::move(make));
    auto& entry = families_[std::move(name)];
    entry.type = Type::kHistogram;
    entry.histogram = std::move(family);
    if (entry.histogram->label_names().empty()) {
        entry.histogram->get();
    }
    return *entry.histogram;
}

void Registry::on_scrape(std::function<void()> hook) {
    std::lock_guard lock{mu_};
    hooks_.push_back(std::move(hook));
}

std::string Registry::render() {
    std::vector<std::function<void()>> hooks;
    {
        std::lock_guard lock{mu_};
        hooks = hooks_;
    }
    // Hooks run without mu_: they set gauges and may register the families they set.
    for (const auto& hook : hooks) {
        hook();
    }
    std::string out;
    std::lock_guard lock{mu_};
    for (const auto& [name, entry] : families_) {
        switch (entry.type) {
            case Type::kCounter:
                exposition::append_family(out, *entry.counter);
                break;
            case Type::kGauge:
                exposition::append_family(out, *entry.gauge);
                break;
            case Type::kHistogram:
                exposition::append_family(out, *entry.histogram);
                break;
        }
    }
    return out;
}

}  // namespace aviary::metrics
