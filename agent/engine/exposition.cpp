#include "agent/engine/exposition.h"

#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <cmath>
#include <deque>
#include <dirent.h>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

namespace pes {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Families keyed by name, created on first use.
class Families {
 public:
  MetricFamily& get(const std::string& name, const char* help, MetricType type) {
    auto it = index_.find(name);
    if (it != index_.end()) return families_[it->second];
    index_[name] = families_.size();
    families_.push_back(MetricFamily{name, help, type, {}});
    return families_.back();
  }
  std::vector<MetricFamily> take() {
    return std::vector<MetricFamily>(std::make_move_iterator(families_.begin()),
                                     std::make_move_iterator(families_.end()));
  }

 private:
  std::map<std::string, size_t> index_;
  std::deque<MetricFamily> families_;  // a deque: references handed out stay valid as it grows
};

std::vector<ClientMetric::Label> base_labels(const ProbeConfig& p, const Config& c) {
  std::vector<ClientMetric::Label> l;
  l.reserve(3 + c.labels.size());
  l.push_back({"probe", p.name});
  l.push_back({"service", p.service});
  l.push_back({"type", p.type});
  for (const auto& [k, v] : c.labels) l.push_back({k, v});
  return l;
}

ClientMetric gauge(std::vector<ClientMetric::Label> labels, double v) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = v;
  return m;
}

ClientMetric counter(std::vector<ClientMetric::Label> labels, double v) {
  ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = v;
  return m;
}

std::vector<ClientMetric::Label> with(std::vector<ClientMetric::Label> l, std::string k, std::string v) {
  l.push_back({std::move(k), std::move(v)});
  return l;
}

void add_samples(Families& f, const std::vector<ClientMetric::Label>& base, const std::vector<Sample>& samples) {
  for (const auto& s : samples) {
    auto labels = base;
    for (const auto& [k, v] : s.labels) labels.push_back({k, v});
    f.get(s.name, s.help, MetricType::Gauge).metric.push_back(gauge(std::move(labels), s.value));
  }
}

}  // namespace

std::vector<MetricFamily> ProbeCollector::Collect() const {
  auto view = engine_.view();
  Families f;
  if (!view.config) return {};
  const Config& cfg = *view.config;
  auto& success = f.get("probe_success", "1 if the last run of the probe passed, else 0.", MetricType::Gauge);
  auto& up = f.get("probe_up", "Damped state after failure/success thresholds: 1 up, 0 down.", MetricType::Gauge);
  auto& dur = f.get("probe_duration_seconds", "Duration of the last run.", MetricType::Gauge);
  auto& hist = f.get("probe_run_duration_seconds", "Duration of every run.", MetricType::Histogram);
  auto& runs = f.get("probe_runs_total", "Probe runs by result.", MetricType::Counter);
  auto& fails = f.get("probe_failures_total", "Failed probe runs by reason.", MetricType::Counter);
  auto& last = f.get("probe_last_run_timestamp_seconds", "Unix time the last run ended.", MetricType::Gauge);
  auto& change =
      f.get("probe_state_change_timestamp_seconds", "Unix time probe_up last changed.", MetricType::Gauge);
  auto& info = f.get("probe_info", "Constant 1; the target label names what is probed.", MetricType::Gauge);
  auto& deps = f.get("probe_dependency_info", "One series per depends_on edge.", MetricType::Gauge);
  auto& lastfail = f.get("probe_last_failure_info", "1 with the reason of the probe's most recent failed run.",
                         MetricType::Gauge);
  auto& thresholds = f.get("probe_failure_threshold", "Consecutive failed runs that turn the probe down.",
                           MetricType::Gauge);
  auto& interval = f.get("probe_interval_seconds", "Configured interval between runs.", MetricType::Gauge);

  for (const auto& rt : view.probes) {
    auto base = base_labels(rt->cfg, cfg);
    info.metric.push_back(gauge(with(base, "target", rt->cfg.target), 1));
    for (const auto& d : rt->cfg.depends_on) deps.metric.push_back(gauge(with(base, "depends_on", d), 1));
    thresholds.metric.push_back(gauge(base, rt->cfg.failure_threshold));
    interval.metric.push_back(gauge(base, std::chrono::duration<double>(rt->cfg.interval).count()));
    std::lock_guard lock(rt->mu);
    runs.metric.push_back(counter(with(base, "result", "success"), static_cast<double>(rt->runs_ok)));
    runs.metric.push_back(counter(with(base, "result", "failure"), static_cast<double>(rt->runs_failed)));
    for (size_t i = 0; i < kReasonCount; ++i)
      if (rt->failures[i] > 0)
        fails.metric.push_back(counter(with(base, "reason", std::string(reason_name(static_cast<Reason>(i)))),
                                       static_cast<double>(rt->failures[i])));
    ClientMetric h;
    h.label = base;
    h.histogram.sample_count = rt->runs_ok + rt->runs_failed;
    h.histogram.sample_sum = rt->duration_sum;
    for (size_t i = 0; i < kRunDurationBuckets.size(); ++i)
      h.histogram.bucket.push_back({rt->buckets[i], kRunDurationBuckets[i]});
    h.histogram.bucket.push_back({h.histogram.sample_count, std::numeric_limits<double>::infinity()});
    hist.metric.push_back(std::move(h));
    if (rt->runs_failed > 0)
      lastfail.metric.push_back(
          gauge(with(base, "reason", std::string(reason_name(rt->last_failure_reason))), 1));
    if (!rt->has_run) continue;
    success.metric.push_back(gauge(base, rt->last_ok ? 1 : 0));
    up.metric.push_back(gauge(base, rt->state.up().value_or(false) ? 1 : 0));
    dur.metric.push_back(gauge(base, rt->last_duration));
    last.metric.push_back(gauge(base, rt->last_end_unix));
    change.metric.push_back(gauge(base, rt->last_change_unix));
    add_samples(f, base, rt->last_samples);
  }
  return f.take();
}

std::vector<MetricFamily> ProcessCollector::Collect() const {
  std::vector<MetricFamily> out;
  auto add = [&](const char* name, const char* help, MetricType type, double v) {
    MetricFamily fam{name, help, type, {}};
    ClientMetric m;
    if (type == MetricType::Counter) m.counter.value = v;
    else m.gauge.value = v;
    fam.metric.push_back(m);
    out.push_back(std::move(fam));
  };
  long ticks = sysconf(_SC_CLK_TCK);
  long page = sysconf(_SC_PAGESIZE);
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (std::getline(stat, line)) {
    // Fields after the command name "(...)": state is field 3; utime 14, stime 15, starttime 22,
    // vsize 23, rss 24 (1-based, proc(5)).
    auto close = line.rfind(')');
    std::istringstream rest(line.substr(close + 2));
    std::vector<std::string> f;
    std::string tok;
    while (rest >> tok) f.push_back(tok);
    auto field = [&](size_t n) { return n - 3 < f.size() ? std::stod(f[n - 3]) : 0.0; };
    if (f.size() > 22) {
      add("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", MetricType::Counter,
          (field(14) + field(15)) / static_cast<double>(ticks));
      add("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge, field(23));
      add("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
          field(24) * static_cast<double>(page));
      std::ifstream up("/proc/stat");
      std::string key;
      double btime = 0;
      while (up >> key) {
        if (key == "btime") {
          up >> btime;
          break;
        }
        up.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
      }
      add("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
          MetricType::Gauge, btime + field(22) / static_cast<double>(ticks));
    }
  }
  double fds = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (auto* e = readdir(d))
      if (e->d_name[0] != '.') ++fds;
    closedir(d);
    fds -= 1;  // the directory handle itself
  }
  add("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, fds);
  std::ifstream limits("/proc/self/limits");
  while (std::getline(limits, line)) {
    if (line.rfind("Max open files", 0) == 0) {
      std::istringstream ls(line.substr(14));
      double soft = 0;
      if (ls >> soft) add("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge, soft);
    }
  }
  return out;
}

std::string render_text(const std::vector<const prometheus::Collectable*>& sources) {
  std::map<std::string, MetricFamily> merged;
  for (const auto* src : sources) {
    for (auto& fam : src->Collect()) {
      if (fam.metric.empty()) continue;
      auto it = merged.find(fam.name);
      if (it == merged.end()) {
        merged.emplace(fam.name, std::move(fam));
      } else {
        for (auto& m : fam.metric) it->second.metric.push_back(std::move(m));
      }
    }
  }
  std::vector<MetricFamily> list;
  list.reserve(merged.size());
  for (auto& [name, fam] : merged) list.push_back(std::move(fam));
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, list);
  return out.str();
}

std::vector<MetricFamily> adhoc_families(const ProbeConfig& probe, const Config& config, const Outcome& outcome,
                                         double duration) {
  Families f;
  auto base = base_labels(probe, config);
  f.get("probe_success", "1 if the run passed, else 0.", MetricType::Gauge)
      .metric.push_back(gauge(base, outcome.ok ? 1 : 0));
  f.get("probe_duration_seconds", "Duration of the run.", MetricType::Gauge).metric.push_back(gauge(base, duration));
  if (!outcome.ok)
    f.get("probe_last_failure_info", "1 with the reason of this failed run.", MetricType::Gauge)
        .metric.push_back(gauge(with(base, "reason", std::string(reason_name(outcome.reason))), 1));
  add_samples(f, base, outcome.samples);
  return f.take();
}

}  // namespace pes
