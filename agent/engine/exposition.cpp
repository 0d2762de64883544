#include "agent/engine/exposition.h"

#include <dirent.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <span>
#include <sstream>
#include <string_view>

#include "agent/engine/states.h"

namespace pes {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

using ProbeSeries = ProbeView;

enum class SeriesScope { scheduled, single_run };

// ---- Prometheus text format, written by hand for the probe families ----------------------------

void put_double(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back exactly
    out.append(buf, r.ptr);
  }
}

void put_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Label values escape backslash, double quote and newline; HELP text only backslash and newline.
void put_escaped(std::string& out, std::string_view s, bool quote) {
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"' && quote)
      out += "\\\"";
    else
      out += c;
  }
}

void put_label(std::string& out, std::string_view key, std::string_view value) {
  out += key;
  out += "=\"";
  put_escaped(out, value, true);
  out += '"';
}

// probe="...",service="...",type="..." and the global labels.
std::string label_text(const ProbeConfig& p, const Config& c) {
  std::string s;
  put_label(s, "probe", p.name);
  s += ',';
  put_label(s, "service", p.service);
  s += ',';
  put_label(s, "type", p.type);
  for (const auto& [k, v] : c.labels) {
    s += ',';
    put_label(s, k, v);
  }
  return s;
}

// One family: "# HELP"/"# TYPE" and then its series; a family without series is taken back out.
class FamilyWriter {
 public:
  FamilyWriter(std::string& out, std::string_view name, std::string_view help,
               std::string_view type)
      : out_(out), name_(name), start_(out.size()) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    put_escaped(out_, help, false);
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
    header_end_ = out_.size();
  }
  ~FamilyWriter() {
    if (out_.size() == header_end_) out_.resize(start_);
  }
  FamilyWriter(const FamilyWriter&) = delete;
  FamilyWriter& operator=(const FamilyWriter&) = delete;

  // name{labels[,key="value"]} (without the value); `suffix` extends the name (_bucket, _sum).
  std::string& series(const std::string& labels, std::string_view suffix = {}) {
    out_ += name_;
    out_ += suffix;
    out_ += '{';
    out_ += labels;
    return out_;
  }
  void value(double v) {
    out_ += "} ";
    put_double(out_, v);
    out_ += '\n';
  }
  void value(uint64_t v) {
    out_ += "} ";
    put_uint(out_, v);
    out_ += '\n';
  }
  void gauge(const std::string& labels, double v) {
    series(labels);
    value(v);
  }
  void with(const std::string& labels, std::string_view key, std::string_view label_value,
            double v) {
    series(labels) += ',';
    put_label(out_, key, label_value);
    value(v);
  }

 private:
  std::string& out_;
  std::string_view name_;
  size_t start_;
  size_t header_end_;
};

// The probe families, in name order, for probes whose snapshots were taken once (so the families
// of one scrape agree). A single run (ad hoc) writes only the families that one run defines.
void write_probe_families(std::string& out, const Config& cfg, std::span<const ProbeSeries> probes,
                          SeriesScope scope, double now_unix) {
  const bool all = scope == SeriesScope::scheduled;
  const size_t n = probes.size();
  const std::vector<DerivedState> derived =
      all ? derive_states(probes, now_unix) : std::vector<DerivedState>(n);
  std::vector<std::string> labels;
  labels.reserve(n);
  std::map<std::string, const char*, std::less<>> extra;  // families of the probes' own samples
  for (const auto& p : probes) {
    labels.push_back(label_text(*p.cfg, cfg));
    if (p.snap->has_run)
      for (const auto& sample : p.snap->sample_list())
        if (extra.find(sample.name) == extra.end()) extra.emplace(sample.name, sample.help);
  }
  auto snap = [&](size_t i) -> const ProbeSnapshot& { return *probes[i].snap; };

  if (all) {
    FamilyWriter f(out, "pes_agent_connectivity_up",
                   "1 while the agent's connectivity checks pass (or none are configured), else 0.",
                   "gauge");
    f.gauge("", connectivity_up(probes) ? 1 : 0);
  }
  if (all) {
    FamilyWriter f(out, "probe_degraded",
                   "1 while the probe is up but its last successful runs were slower than "
                   "degraded_above, else 0.",
                   "gauge");
    for (size_t i = 0; i < n; ++i)
      if (snap(i).has_run) f.gauge(labels[i], derived[i].degraded ? 1 : 0);
  }
  if (all) {
    FamilyWriter f(out, "probe_degraded_above_seconds",
                   "The configured latency bound above which a successful run is slow.", "gauge");
    for (size_t i = 0; i < n; ++i)
      if (probes[i].cfg->degraded_above)
        f.gauge(labels[i], std::chrono::duration<double>(*probes[i].cfg->degraded_above).count());
  }
  if (all) {
    FamilyWriter f(out, "probe_dependency_info", "One series per depends_on edge.", "gauge");
    for (size_t i = 0; i < n; ++i)
      for (const auto& d : probes[i].cfg->depends_on) f.with(labels[i], "depends_on", d, 1);
  }
  {
    FamilyWriter f(out, "probe_duration_seconds", "Duration of the last run.", "gauge");
    for (size_t i = 0; i < n; ++i)
      if (snap(i).has_run) f.gauge(labels[i], snap(i).last_duration);
  }
  if (all) {
    FamilyWriter f(out, "probe_failure_threshold",
                   "Consecutive failed runs that turn the probe down.", "gauge");
    for (size_t i = 0; i < n; ++i) f.gauge(labels[i], probes[i].cfg->failure_threshold);
  }
  if (all) {
    FamilyWriter f(out, "probe_failures_total", "Failed probe runs by reason.", "counter");
    for (size_t i = 0; i < n; ++i)
      for (size_t r = 0; r < kReasonCount; ++r)
        if (snap(i).failures[r] > 0) {
          f.series(labels[i]) += ',';
          put_label(out, "reason", reason_name(static_cast<Reason>(r)));
          f.value(snap(i).failures[r]);
        }
  }
  if (all) {
    FamilyWriter f(out, "probe_info", "Constant 1; the target label names what is probed.",
                   "gauge");
    for (size_t i = 0; i < n; ++i) f.with(labels[i], "target", probes[i].cfg->target, 1);
  }
  if (all) {
    FamilyWriter f(out, "probe_interval_seconds", "Configured interval between runs.", "gauge");
    for (size_t i = 0; i < n; ++i)
      f.gauge(labels[i], std::chrono::duration<double>(probes[i].cfg->interval).count());
  }
  {
    FamilyWriter f(out, "probe_last_failure_info",
                   "1 with the reason of the probe's most recent failed run.", "gauge");
    for (size_t i = 0; i < n; ++i)
      if (snap(i).runs_failed > 0)
        f.with(labels[i], "reason", reason_name(snap(i).last_failure_reason), 1);
  }
  if (all) {
    FamilyWriter f(out, "probe_last_run_timestamp_seconds", "Unix time the last run ended.",
                   "gauge");
    for (size_t i = 0; i < n; ++i)
      if (snap(i).has_run) f.gauge(labels[i], snap(i).last_end_unix);
  }
  if (all) {
    FamilyWriter f(out, "probe_maintenance",
                   "1 while the probe is in maintenance (the service says so, or a configured "
                   "window is active), else 0.",
                   "gauge");
    for (size_t i = 0; i < n; ++i) f.gauge(labels[i], derived[i].maintenance ? 1 : 0);
  }
  if (all) {
    FamilyWriter f(out, "probe_root_cause",
                   "1 while the probe is down and none of its dependencies explains it, else 0.",
                   "gauge");
    for (size_t i = 0; i < n; ++i)
      if (snap(i).has_run) f.gauge(labels[i], derived[i].root_cause ? 1 : 0);
  }
  if (all) {
    FamilyWriter f(out, "probe_run_duration_seconds", "Duration of every run.", "histogram");
    for (size_t i = 0; i < n; ++i) {
      const ProbeSnapshot& s = snap(i);
      const uint64_t count = s.runs_ok + s.runs_failed + s.runs_unknown + s.runs_maintenance;
      for (size_t b = 0; b <= kRunDurationBuckets.size(); ++b) {
        f.series(labels[i], "_bucket") += ",le=\"";
        if (b < kRunDurationBuckets.size())
          put_double(out, kRunDurationBuckets[b]);
        else
          out += "+Inf";
        out += '"';
        f.value(b < kRunDurationBuckets.size() ? s.buckets[b] : count);
      }
      f.series(labels[i], "_sum");
      f.value(s.duration_sum);
      f.series(labels[i], "_count");
      f.value(count);
    }
  }
  if (all) {
    FamilyWriter f(out, "probe_runs_total", "Probe runs by result.", "counter");
    for (size_t i = 0; i < n; ++i) {
      f.series(labels[i]) += ",result=\"success\"";
      f.value(snap(i).runs_ok);
      f.series(labels[i]) += ",result=\"failure\"";
      f.value(snap(i).runs_failed);
      f.series(labels[i]) += ",result=\"unknown\"";
      f.value(snap(i).runs_unknown);
      f.series(labels[i]) += ",result=\"maintenance\"";
      f.value(snap(i).runs_maintenance);
    }
  }
  if (all) {
    FamilyWriter f(out, "probe_state_change_timestamp_seconds", "Unix time probe_up last changed.",
                   "gauge");
    for (size_t i = 0; i < n; ++i)
      if (snap(i).has_run) f.gauge(labels[i], snap(i).last_change_unix);
  }
  {
    FamilyWriter f(out, "probe_success", "1 if the last run of the probe passed, else 0.", "gauge");
    for (size_t i = 0; i < n; ++i)
      if (snap(i).has_run) f.gauge(labels[i], snap(i).last_ok ? 1 : 0);
  }
  if (all) {
    FamilyWriter f(out, "probe_takes_down_info",
                   "1 per probe that a root cause takes down (its transitive dependents), with "
                   "that dependent's name, service and state.",
                   "gauge");
    for (size_t i = 0; i < n; ++i)
      for (size_t d : derived[i].takes_down) {
        std::string_view state = state_name(snap(d), derived[d]);
        if (state == "degraded") state = "up";
        f.series(labels[i]) += ',';
        put_label(out, "dependent", probes[d].cfg->name);
        out += ',';
        put_label(out, "dependent_service", probes[d].cfg->service);
        out += ',';
        put_label(out, "dependent_state", state);
        f.value(1.0);
      }
  }
  if (all) {
    FamilyWriter f(out, "probe_unknown",
                   "1 while the last run could not be judged (the agent's connectivity checks "
                   "failed), else 0.",
                   "gauge");
    for (size_t i = 0; i < n; ++i)
      if (snap(i).has_run) f.gauge(labels[i], derived[i].unknown ? 1 : 0);
  }
  if (all) {
    FamilyWriter f(out, "probe_up", "Damped state after failure/success thresholds: 1 up, 0 down.",
                   "gauge");
    for (size_t i = 0; i < n; ++i)
      if (snap(i).has_run) f.gauge(labels[i], snap(i).up.value_or(false) ? 1 : 0);
  }
  // The probe types' own series (probe_http_*, probe_postgres_*, ...), one family at a time.
  for (const auto& [name, help] : extra) {
    FamilyWriter f(out, name, help, "gauge");
    for (size_t i = 0; i < n; ++i) {
      if (!snap(i).has_run) continue;
      for (const auto& sample : snap(i).sample_list()) {
        if (sample.name != name) continue;
        std::string& o = f.series(labels[i]);
        for (const auto& [k, v] : sample.labels) {
          o += ',';
          put_label(o, k, v);
        }
        f.value(sample.value);
      }
    }
  }
}

}  // namespace

void ProbeExposition::render(std::string& out) const {
  auto view = engine_.view();
  if (!view.config) return;
  out.reserve(out.size() + size_hint_.load(std::memory_order_relaxed) / 8 * 9);
  const size_t begin = out.size();
  std::vector<ProbeSnapshot> snaps;
  snaps.reserve(view.probes.size());
  for (const auto& rt : view.probes)
    snaps.push_back(rt->state.snapshot(ProbeState::Detail::metrics));
  std::vector<ProbeSeries> series;
  series.reserve(view.probes.size());
  for (size_t i = 0; i < view.probes.size(); ++i)
    series.push_back(ProbeSeries{&view.probes[i]->cfg, &snaps[i]});
  write_probe_families(out, *view.config, series, SeriesScope::scheduled,
                       engine_.clock().unix_now());
  size_hint_.store(out.size() - begin, std::memory_order_relaxed);
}

std::string render_run(const ProbeConfig& probe, const Config& config, const Outcome& outcome,
                       double duration) {
  const ProbeSnapshot snap = ProbeSnapshot::of_run(outcome, duration, 0);
  const ProbeSeries one{&probe, &snap};
  std::string out;
  write_probe_families(out, config, std::span<const ProbeSeries>(&one, 1), SeriesScope::single_run,
                       0);
  return out;
}

std::vector<MetricFamily> ProcessCollector::Collect() const {
  std::vector<MetricFamily> out;
  auto add = [&](const char* name, const char* help, MetricType type, double v) {
    MetricFamily fam{name, help, type, {}};
    ClientMetric m;
    if (type == MetricType::Counter)
      m.counter.value = v;
    else
      m.gauge.value = v;
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
      add("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
          MetricType::Counter, (field(14) + field(15)) / static_cast<double>(ticks));
      add("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
          field(23));
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
      if (ls >> soft)
        add("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge, soft);
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

}  // namespace pes
