// Runs the configured probes: schedules them on the event loop, enforces each run's deadline,
// records outcomes into per-probe state, and swaps configurations on reload.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/config/config.h"
#include "agent/engine/clock.h"
#include "agent/engine/event_loop.h"
#include "agent/engine/probe_state.h"
#include "agent/engine/scheduler.h"
#include "agent/engine/worker_pool.h"

namespace pes {

// One configured probe in the running set: its configuration, its state, and the loop thread's
// bookkeeping of its schedule.
struct ProbeRuntime {
  ProbeRuntime(uint64_t id, ProbeConfig cfg)
      : id(id),
        cfg(std::move(cfg)),
        state(this->cfg.failure_threshold, this->cfg.success_threshold) {}

  const uint64_t id;
  const ProbeConfig cfg;
  ProbeState state;
  // Loop thread only.
  Clock::time_point planned{};
  bool in_flight = false;
  bool retired = false;
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
  std::shared_ptr<const EngineClock> clock = SystemClock::shared();
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
  // Records a finished run into the probe's state; returns whether a state change is pending.
  bool record(ProbeRuntime& rt, Outcome outcome, double duration);
  void dispatch_due();
  void arm_scheduler();
  void swap_in(std::shared_ptr<const Config> config);

  EngineOptions options_;
  std::unique_ptr<EngineMetrics> metrics_;
  EventLoop loop_;
  WorkerPool pool_;
  TokenStore tokens_;
  std::shared_ptr<const EngineClock> clock_;
  Rng rng_;

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
