// Runs the configured probes: schedules them on the event loop, enforces each run's deadline,
// records outcomes into per-probe state, and swaps configurations on reload.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/config/config.h"
#include "agent/engine/event_loop.h"
#include "agent/engine/scheduler.h"
#include "agent/engine/worker_pool.h"

namespace pes {

inline constexpr std::array<double, 12> kRunDurationBuckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                            0.5,   1,    2.5,   5,    10,  30};
inline constexpr size_t kReasonCount = 11;
inline constexpr size_t kHistoryLength = 20;

struct RunRecord {
  bool ok = false;
  Reason reason = Reason::none;
  double duration = 0;
  double end_unix = 0;
};

// Everything known about one configured probe. Loop-thread fields are marked; the rest is guarded
// by `mu` and read by scrapes and the status page.
struct ProbeRuntime {
  ProbeRuntime(uint64_t id, ProbeConfig cfg)
      : id(id),
        cfg(std::move(cfg)),
        state(this->cfg.failure_threshold, this->cfg.success_threshold) {}

  const uint64_t id;
  ProbeConfig cfg;
  // Loop thread only.
  Clock::time_point planned{};
  bool in_flight = false;
  bool retired = false;

  mutable std::mutex mu;
  ThresholdState state;
  bool has_run = false;
  bool last_ok = false;
  Reason last_reason = Reason::none;
  std::string last_message;
  std::vector<Sample> last_samples;
  double last_duration = 0;
  double last_end_unix = 0;
  double last_change_unix = 0;
  Reason last_failure_reason = Reason::none;
  std::string last_error;
  double last_failure_unix = 0;
  uint64_t runs_ok = 0;
  uint64_t runs_failed = 0;
  std::array<uint64_t, kReasonCount> failures{};
  std::array<uint64_t, kRunDurationBuckets.size()> buckets{};
  double duration_sum = 0;
  std::deque<RunRecord> history;
};

// The agent's own metrics that the engine updates (families live in the agent's registry).
struct EngineMetrics {
  explicit EngineMetrics(prometheus::Registry& registry);
  prometheus::Gauge& in_flight;
  prometheus::Histogram& schedule_lag;
  prometheus::Gauge& configured;
};

struct EngineOptions {
  size_t workers = 16;
  uint64_t seed = std::random_device{}();
  prometheus::Registry* registry = nullptr;  // for EngineMetrics; optional
  bool schedule = true;                      // false: only ad hoc runs (the `probe` command)
};

class Engine {
 public:
  explicit Engine(EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void start();
  // Stops scheduling and waits for in-flight runs to end or reach their deadline.
  void stop();

  // Installs a configuration (first load or reload). Unchanged probes keep state, counters and
  // schedule; changed ones keep counters; removed ones vanish. Blocks until swapped.
  void apply(std::shared_ptr<const Config> config);

  struct View {
    std::shared_ptr<const Config> config;
    std::vector<std::shared_ptr<ProbeRuntime>> probes;
  };
  View view() const;
  bool ready() const { return ready_.load(); }
  TokenStore& tokens() { return tokens_; }

  // Runs one configured probe now, outside its schedule and without touching its state.
  struct AdHocResult {
    bool found = false;
    Outcome outcome;
    double duration = 0;
    std::string trace;
  };
  AdHocResult run_now(const std::string& name, bool debug);

 private:
  class Context;
  struct ActiveRun;
  friend class Context;

  void start_run(const std::shared_ptr<ProbeRuntime>& rt, bool scheduled,
                 std::shared_ptr<std::promise<AdHocResult>> adhoc, bool debug);
  void complete(const std::shared_ptr<ActiveRun>& run, Outcome outcome);
  void record(ProbeRuntime& rt, const Outcome& outcome, double duration);
  void dispatch_due();
  void arm_scheduler();
  void swap_in(std::shared_ptr<const Config> config);

  EngineOptions options_;
  std::unique_ptr<EngineMetrics> metrics_;
  EventLoop loop_;
  WorkerPool pool_;
  TokenStore tokens_;
  std::mt19937_64 rng_;

  // Loop thread only.
  Scheduler scheduler_;
  EventLoop::TimerId sched_timer_ = 0;
  std::unordered_map<uint64_t, std::shared_ptr<ProbeRuntime>> by_id_;
  uint64_t next_id_ = 1;
  bool stopping_ = false;

  mutable std::mutex view_mu_;
  std::shared_ptr<const Config> config_;
  std::vector<std::shared_ptr<ProbeRuntime>> probes_;

  std::atomic<int> in_flight_{0};
  std::atomic<bool> ready_{false};
  std::atomic<bool> started_{false};
};

}  // namespace pes
