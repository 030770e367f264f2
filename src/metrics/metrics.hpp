#pragma once
/// metrics: a Prometheus registry and its text exposition (format 0.0.4).
///
/// Counters, gauges and histograms in labelled families. Updating a metric is lock-free
/// (atomics) once its labelled child exists; creating a child takes the family's mutex.
/// Scrape hooks run at render() to set gauges computed from elsewhere (nodes by state...).
/// Safe from any thread. Base layer: knows core only.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace aviary::metrics {

class Counter {
public:
    void inc(double by = 1.0);
    double value() const { return value_.load(std::memory_order_relaxed); }
    /// For counters mirrored from another component's running total (store commits).
    void set_total(double total) { value_.store(total, std::memory_order_relaxed); }

private:
    std::atomic<double> value_{0.0};
};

class Gauge {
public:
    void set(double v) { value_.store(v, std::memory_order_relaxed); }
    void inc(double by = 1.0);
    void dec(double by = 1.0) { inc(-by); }
    double value() const { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<double> value_{0.0};
};

class Histogram {
public:
    /// `upper_bounds` ascending and finite; +Inf is implied (and dropped if given).
    explicit Histogram(std::vector<double> upper_bounds);
    void observe(double v);
    /// Cumulative counts per bound, sum and count; a consistent-enough snapshot (count is the
    /// +Inf bucket, as the exposition format requires).
    struct Snapshot {
        std::vector<double> bounds;  ///< the upper bounds, ascending; the last is +Inf

        std::vector<std::uint64_t> cumulative;
        double sum = 0;
        std::uint64_t count = 0;
    };
    Snapshot snapshot() const;

private:
    std::vector<double> bounds_;
    // One per bound, plus +Inf; not cumulative, so observe() touches one bucket.
    std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
    std::atomic<double> sum_{0.0};
};

/// Default latency buckets in seconds: 0.5 ms .. 10 s.
std::vector<double> default_latency_buckets();

enum class Type { kCounter, kGauge, kHistogram };

/// A metric name with fixed label names; with() returns the child for label values (created
/// on first use, stable address for the registry's lifetime).
template <class M>
class Family {
public:
    Family(std::string name,
           std::string help,
           std::vector<std::string> label_names,
           std::function<std::unique_ptr<M>()> make)
        : name_(std::move(name)),
          help_(std::move(help)),
          label_names_(std::move(label_names)),
          make_(std::move(make)) {}

    /// Label values in the order of the family's label names (asserts the count matches). A
    /// child that exists already is found without allocating (a lookup per request on hot
    /// paths); `with({a, b})` takes this overload.
    M& with(std::initializer_list<std::string_view> label_values);
    M& with(const std::vector<std::string>& label_values);
    M& get() { return with(std::initializer_list<std::string_view>{}); }

    const std::string& name() const { return name_; }
    const std::string& help() const { return help_; }
    const std::vector<std::string>& label_names() const { return label_names_; }
    /// Calls fn(label_values, metric) for every child, in label order.
    void each(const std::function<void(const std::vector<std::string>&, const M&)>& fn) const;

private:
    std::string name_;
    std::string help_;
    std::vector<std::string> label_names_;
    std::function<std::unique_ptr<M>()> make_;
    /// Orders label-value lists lexicographically, whatever holds the strings.
    struct LabelsLess {
        using is_transparent = void;
        template <class A, class B>
        bool operator()(const A& a, const B& b) const {
            return std::lexicographical_compare(
                a.begin(), a.end(), b.begin(), b.end(),
                [](std::string_view x, std::string_view y) { return x < y; });
        }
    };
    template <class Values>
    M& find_or_make(const Values& label_values);

    mutable std::mutex mu_;
    std::map<std::vector<std::string>, std::unique_ptr<M>, LabelsLess> children_;
};

class Registry {
public:
    /// Names follow Prometheus conventions (counters end in _total, units in the name); a name
    /// registered twice returns the same family (asserting the same type).
    Family<Counter>& counter(std::string name,
                             std::string help,
                             std::vector<std::string> label_names = {});
    Family<Gauge>& gauge(std::string name,
                         std::string help,
                         std::vector<std::string> label_names = {});
    Family<Histogram>& histogram(std::string name,
                                 std::string help,
                                 std::vector<std::string> label_names = {},
                                 std::vector<double> upper_bounds = default_latency_buckets());
    /// Runs before every render(), in registration order.
    void on_scrape(std::function<void()> hook);
    /// The text exposition: HELP, TYPE and samples for every family, sorted by name; label
    /// values escaped (backslash, quote, newline).
    std::string render();

private:
    struct Entry {
        Type type;
        std::unique_ptr<Family<Counter>> counter;
        std::unique_ptr<Family<Gauge>> gauge;
        std::unique_ptr<Family<Histogram>> histogram;
    };
    std::mutex mu_;
    std::map<std::string, Entry, std::less<>> families_;
    std::vector<std::function<void()>> hooks_;
};

/// The content type of render()'s output.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace aviary::metrics
