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
#include <unordered_set>
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
        state(StatePolicy{this->cfg.failure_threshold, this->cfg.success_threshold,
                          this->cfg.confirm_window, this->cfg.degraded_above}) {}

  const uint64_t id;
  const ProbeConfig cfg;
  ProbeState state;
  // Loop thread only.
  Clock::time_point planned{};
  Clock::time_point last_end{};  // when its last scheduled run ended
  bool in_flight = false;        // also while a failed run waits for the connectivity checks
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
  explicit Engine(const EngineOptions& options = {});
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
  const EngineClock& clock() const { return *clock_; }

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
  struct HeldRun {
    std::shared_ptr<ProbeRuntime> rt;
    Outcome outcome;
    double duration = 0;
    Clock::time_point ended;
  };
  // A result younger than this is fresh enough to judge by, so not run again at once.
  static constexpr std::chrono::milliseconds kFreshResult{1000};

  // Records a finished scheduled run, plans the next and checks the dependencies of a failure.
  void finish(ProbeRuntime& rt, Outcome outcome, double duration, Clock::time_point ended);
  ProbeState::Recorded record(ProbeRuntime& rt, Outcome outcome, double duration,
                              Clock::time_point ended);
  bool fresh(const ProbeRuntime& rt, Clock::time_point now) const;
  void run_at_once(const std::shared_ptr<ProbeRuntime>& rt, Clock::time_point now);
  void check_connectivity();
  void connectivity_checked(uint64_t id);
  void release_held();
  bool connectivity_lost() const;
  void check_dependencies(const ProbeRuntime& rt);
  void index_graph(const std::vector<std::shared_ptr<ProbeRuntime>>& list);
  void dispatch_due();
  void arm_scheduler();
  void swap_in(const std::shared_ptr<const Config>& config);

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
  bool dispatch_posted_ = false;  // a dispatch_due waits in the loop's posted queue
  std::unordered_map<uint64_t, std::shared_ptr<ProbeRuntime>> by_id_;
  std::vector<uint64_t> connectivity_ids_;
  std::unordered_map<uint64_t, std::vector<uint64_t>> dependencies_;  // id -> transitive deps
  std::vector<HeldRun> held_;             // failed runs waiting for the connectivity verdict
  std::unordered_set<uint64_t> awaited_;  // connectivity checks they wait for
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
