#include "agent/engine/engine.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>

#include <algorithm>
#include <chrono>
#include <string_view>
#include <thread>
#include <unordered_set>

#include "agent/engine/reload_plan.h"

namespace pes {

namespace {

constexpr size_t kStartsPerPass = 256;

std::vector<double> lag_buckets() {
  return {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
}

}  // namespace

EngineMetrics::EngineMetrics(prometheus::Registry& registry)
    : in_flight(prometheus::BuildGauge()
                    .Name("pes_agent_probes_in_flight")
                    .Help("Probe runs currently in progress.")
                    .Register(registry)
                    .Add({})),
      schedule_lag(prometheus::BuildHistogram()
                       .Name("pes_agent_schedule_lag_seconds")
                       .Help("How late each scheduled run started compared with its plan.")
                       .Register(registry)
                       .Add({}, lag_buckets())),
      configured(prometheus::BuildGauge()
                     .Name("pes_agent_probes_configured")
                     .Help("Probes in the running configuration.")
                     .Register(registry)
                     .Add({})) {}

// One run in progress.
struct Engine::ActiveRun {
  std::shared_ptr<ProbeRuntime> rt;
  std::shared_ptr<Context> ctx;
  Clock::time_point started;
  bool scheduled = false;
  bool finished = false;  // loop thread
  std::atomic<bool> done_called{false};
  EventLoop::TimerId backstop = 0;
  std::shared_ptr<std::promise<AdHocResult>> adhoc;
};

class Engine::Context : public RunContext {
 public:
  Context(Engine* engine, std::string name, Clock::time_point deadline, bool debug,
          std::shared_ptr<const Redactor> redactor)
      : engine_(engine),
        name_(std::move(name)),
        deadline_(deadline),
        trace_(debug, std::move(redactor)) {}

  Clock::time_point deadline() const override { return deadline_; }
  const std::string& probe_name() const override { return name_; }
  TokenStore& tokens() override { return engine_->tokens_; }
  Trace& trace() override { return trace_; }

  void http(HttpRequest request, std::function<void(HttpResponse)> done) override {
    auto self = std::static_pointer_cast<Context>(shared_from_this_());
    auto start = [self, request = std::move(request), done = std::move(done)]() mutable {
      if (self->finished_) return;
      if (self->trace_.enabled()) self->trace_.log(request.method + " " + trace_url(request.url));
      auto holder = std::make_shared<EventLoop::HttpId>(0);
      *holder = self->engine_->loop_.start_http(
          request, self->deadline_, [self, holder, done = std::move(done)](HttpResponse r) {
            std::erase(self->http_ids_, *holder);
            if (self->finished_) return;
            if (self->trace_.enabled()) {
              char buf[160];
              std::snprintf(buf, sizeof buf, "  -> %s status=%ld bytes=%zu time=%.3fs",
                            r.ok ? "answer" : "failed", r.status, r.body.size(), r.total_seconds);
              self->trace_.log(std::string(buf) + (r.ok ? "" : " error: " + r.error));
            }
            done(std::move(r));
          });
      self->http_ids_.push_back(*holder);
    };
    if (engine_->loop_.in_loop()) {
      start();
    } else {
      engine_->loop_.post(std::move(start));
    }
  }

  void blocking(std::function<void()> work) override { engine_->pool_.submit(std::move(work)); }

  void wait_fd(int fd, short events, std::function<void(bool)> ready) override {
    if (finished_) return;
    EventLoop& loop = engine_->loop_;
    const uint64_t key = next_wait_++;
    uint32_t ev = 0;
    if (events & POLLIN) ev |= EPOLLIN;
    if (events & POLLOUT) ev |= EPOLLOUT;
    // Whichever of the watch and the deadline comes first cancels the other and calls `ready`.
    auto fn = std::make_shared<std::function<void(bool)>>(std::move(ready));
    auto self = std::static_pointer_cast<Context>(shared_from_this_());
    auto timer = loop.add_timer(deadline_, [self, key, fn] {
      self->end_wait(key, /*ready=*/false);
      (*fn)(false);
    });
    auto watch = loop.watch_fd(fd, ev, [self, key, fn] {
      self->end_wait(key, /*ready=*/true);
      (*fn)(true);
    });
    waits_.emplace(key, PendingWait{watch, timer});
  }

  void on_loop(std::function<void()> fn) override {
    auto self = std::static_pointer_cast<Context>(shared_from_this_());
    engine_->loop_.post([self, fn = std::move(fn)] {
      if (!self->finished_) fn();
    });
  }

  // Loop thread: the run is over; abandon what it still has going.
  void finish() {
    finished_ = true;
    for (auto id : http_ids_) engine_->loop_.cancel_http(id);
    http_ids_.clear();
    // Dropping the callbacks may free the run and close its socket: the watches go first.
    auto waits = std::move(waits_);
    waits_.clear();
    for (auto& [key, w] : waits) {
      engine_->loop_.cancel_timer(w.timer);
      engine_->loop_.cancel_watch(w.watch);
    }
  }

  void set_self(const std::shared_ptr<Context>& self) { weak_self_ = self; }

 private:
  std::shared_ptr<RunContext> shared_from_this_() { return weak_self_.lock(); }

  Engine* engine_;
  std::string name_;
  Clock::time_point deadline_;
  Trace trace_;
  std::weak_ptr<Context> weak_self_;
  // The wait that ended stops its other half (the timer when the fd became ready, the watch when
  // the deadline came).
  void end_wait(uint64_t key, bool ready) {
    auto it = waits_.find(key);
    if (it == waits_.end()) return;
    if (ready) {
      engine_->loop_.cancel_timer(it->second.timer);
    } else {
      engine_->loop_.cancel_watch(it->second.watch);
    }
    waits_.erase(it);
  }

  struct PendingWait {
    EventLoop::WatchId watch = 0;
    EventLoop::TimerId timer = 0;
  };

  bool finished_ = false;                            // loop thread
  std::vector<EventLoop::HttpId> http_ids_;          // loop thread
  uint64_t next_wait_ = 1;                           // loop thread
  std::unordered_map<uint64_t, PendingWait> waits_;  // loop thread
};

Engine::Engine(const EngineOptions& options)
    : options_(options),
      pool_(options.workers),
      clock_(options.clock ? options.clock : SystemClock::shared()),
      rng_(options.seed) {
  if (options_.registry) metrics_ = std::make_unique<EngineMetrics>(*options_.registry);
}

Engine::~Engine() { stop(); }

void Engine::start() {
  if (started_.exchange(true)) return;
  loop_.start();
  loop_.post([this] { arm_scheduler(); });
}

void Engine::stop() {
  if (!started_.exchange(false)) return;
  std::promise<Clock::time_point> latest;
  auto fut = latest.get_future();
  loop_.post([this, &latest] {
    stopping_ = true;
    if (sched_timer_) loop_.cancel_timer(sched_timer_);
    sched_timer_ = 0;
    Clock::time_point last = clock_->steady_now();
    for (auto& [id, rt] : by_id_) {
      scheduler_.remove(id);
      if (rt->in_flight) last = std::max(last, rt->planned + rt->cfg.timeout);
    }
    latest.set_value(last);
  });
  auto until = fut.get() + std::chrono::milliseconds(200);
  while (in_flight_.load() > 0 && clock_->steady_now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  loop_.stop();
}

Engine::View Engine::view() const {
  std::lock_guard lock(view_mu_);
  return View{config_, probes_};
}

void Engine::apply(std::shared_ptr<const Config> config) {
  if (!loop_.in_loop() && started_.load()) {
    std::promise<void> done;
    auto fut = done.get_future();
    loop_.post([&] {
      swap_in(config);
      done.set_value();
    });
    fut.get();
  } else {
    swap_in(config);
  }
  ready_ = true;
}

void Engine::swap_in(const std::shared_ptr<const Config>& config) {
  std::vector<std::shared_ptr<ProbeRuntime>> current;
  std::vector<RunningProbe> running;
  for (auto& [id, rt] : by_id_) {
    current.push_back(rt);
    running.push_back(RunningProbe{rt->cfg.name, rt->cfg.fingerprint, rt->planned, rt->cfg.timeout,
                                   rt->state.has_run()});
  }
  std::vector<WantedProbe> wanted;
  wanted.reserve(config->probes.size());
  for (const auto& pc : config->probes)
    wanted.push_back(
        WantedProbe{pc.name, pc.fingerprint, pc.interval, pc.timeout,
                    pc.probe ? pc.probe->token_sources() : std::vector<std::string>{}});
  const ReloadPlan plan =
      plan_reload(running, wanted, clock_->steady_now(), rng_, !stopping_ && options_.schedule);

  std::unordered_map<uint64_t, std::shared_ptr<ProbeRuntime>> next;
  std::vector<std::shared_ptr<ProbeRuntime>> list;
  list.reserve(config->probes.size());
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const ReloadStep& step = plan.steps[i];
    std::shared_ptr<ProbeRuntime> rt;
    if (step.action == ReloadAction::keep) {
      rt = current[*step.running];
    } else {
      rt = std::make_shared<ProbeRuntime>(next_id_++, config->probes[i]);
      if (step.action == ReloadAction::change)
        rt->state.carry_counters_from(current[*step.running]->state);
      if (step.first_run) {
        rt->planned = *step.first_run;
        scheduler_.schedule(rt->id, rt->planned);
      }
    }
    next[rt->id] = rt;
    list.push_back(rt);
  }
  // Retired as well: the old runtime of a changed probe (a new one took its name).
  for (auto& rt : current)
    if (!next.count(rt->id) && !rt->retired) {
      rt->retired = true;
      scheduler_.remove(rt->id);
    }
  index_graph(list);
  by_id_ = std::move(next);
  {
    std::lock_guard lock(view_mu_);
    config_ = config;
    probes_ = std::move(list);
  }
  // A connectivity check awaited by held runs may have been retired: do not wait for it.
  std::erase_if(awaited_, [this](uint64_t id) { return !by_id_.count(id); });
  if (awaited_.empty() && !held_.empty()) release_held();
  if (metrics_) metrics_->configured.Set(static_cast<double>(config->probes.size()));
  if (started_.load()) arm_scheduler();
}

void Engine::index_graph(const std::vector<std::shared_ptr<ProbeRuntime>>& list) {
  std::unordered_map<std::string_view, const ProbeRuntime*> by_name;
  for (const auto& rt : list) by_name[rt->cfg.name] = rt.get();
  connectivity_ids_.clear();
  dependencies_.clear();
  for (const auto& rt : list) {
    if (rt->cfg.connectivity) connectivity_ids_.push_back(rt->id);
    // Transitive dependencies, each once (the configuration has no cycles; `seen` guards anyway).
    std::vector<uint64_t> deps;
    std::unordered_set<std::string_view> seen;
    std::vector<std::string_view> todo(rt->cfg.depends_on.begin(), rt->cfg.depends_on.end());
    while (!todo.empty()) {
      auto name = todo.back();
      todo.pop_back();
      auto it = by_name.find(name);
      if (it == by_name.end() || !seen.insert(name).second || it->second == rt.get()) continue;
      deps.push_back(it->second->id);
      for (const auto& d : it->second->cfg.depends_on) todo.push_back(d);
    }
    if (!deps.empty()) dependencies_[rt->id] = std::move(deps);
  }
}

void Engine::arm_scheduler() {
  if (stopping_) return;
  auto due = scheduler_.next_due();
  if (sched_timer_) loop_.cancel_timer(sched_timer_);
  sched_timer_ = 0;
  if (!due) return;
  if (*due <= clock_->steady_now()) {
    // Already due (a backlog): a timer at a past time would fire in the loop's current pass of
    // timers, again and again; posted, the next batch waits until the loop has taken its turn.
    if (!dispatch_posted_) {
      dispatch_posted_ = true;
      loop_.post([this] {
        dispatch_posted_ = false;
        if (!stopping_) dispatch_due();
      });
    }
    return;
  }
  sched_timer_ = loop_.add_timer(*due, [this] {
    sched_timer_ = 0;
    dispatch_due();
  });
}

void Engine::dispatch_due() {
  auto now = clock_->steady_now();
  // At most kStartsPerPass runs start per pass of the loop. A starved loop otherwise started
  // every run due at once (~15,000), libcurl then connected them all in one call, and for ~25 s
  // at 0.1 core nothing ended, not even a backstop (bench/README.md); this way what ended is
  // delivered between batches, and the runs still due start later, with their lag.
  for (auto& [id, planned] : scheduler_.pop_due(now, kStartsPerPass)) {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) continue;
    auto& rt = it->second;
    rt->planned = planned;
    if (rt->in_flight) {
      // Still running (only possible with an ad hoc overlap); try again one interval later.
      rt->planned = next_due(planned, now, rt->cfg.interval, rt->cfg.timeout, false);
      scheduler_.schedule(id, rt->planned);
      continue;
    }
    if (metrics_)
      metrics_->schedule_lag.Observe(std::chrono::duration<double>(now - planned).count());
    start_run(rt, true, nullptr, false);
  }
  arm_scheduler();
}

void Engine::start_run(const std::shared_ptr<ProbeRuntime>& rt, bool scheduled,
                       std::shared_ptr<std::promise<AdHocResult>> adhoc, bool debug) {
  auto run = std::make_shared<ActiveRun>();
  run->rt = rt;
  run->started = clock_->steady_now();
  run->scheduled = scheduled;
  run->adhoc = std::move(adhoc);
  auto deadline = run->started + rt->cfg.timeout;
  std::shared_ptr<const Redactor> redactor;
  {
    std::lock_guard lock(view_mu_);
    if (config_) redactor = config_->redactor;
  }
  run->ctx = std::make_shared<Context>(this, rt->cfg.name, deadline, debug, redactor);
  run->ctx->set_self(run->ctx);
  if (scheduled) rt->in_flight = true;
  in_flight_.fetch_add(1);
  if (metrics_) metrics_->in_flight.Increment();
  run->backstop = loop_.add_timer(deadline + std::chrono::milliseconds(30), [this, run] {
    run->backstop = 0;
    if (run->done_called.exchange(true)) return;
    complete(run, Outcome::failure(Reason::timeout,
                                   "no result within the timeout of " +
                                       std::to_string(run->rt->cfg.timeout.count()) + "ms"));
  });
  Done done = [this, run](Outcome o) {
    if (run->done_called.exchange(true)) return;
    loop_.post([this, run, o = std::move(o)]() mutable { complete(run, std::move(o)); });
  };
  auto probe = rt->cfg.probe;  // keeps the probe alive across a reload during the run
  if (!probe) {
    done(Outcome::failure(Reason::config, "probe has no implementation"));
    return;
  }
  try {
    probe->run(run->ctx, std::move(done));
  } catch (const std::exception& e) {
    if (!run->done_called.exchange(true))
      loop_.post([this, run, msg = std::string(e.what())] {
        complete(run, Outcome::failure(Reason::internal, "probe raised an error: " + msg));
      });
  }
}

void Engine::complete(const std::shared_ptr<ActiveRun>& run, Outcome outcome) {
  if (run->finished) return;
  run->finished = true;
  if (run->backstop) loop_.cancel_timer(run->backstop);
  run->ctx->finish();
  in_flight_.fetch_sub(1);
  if (metrics_) metrics_->in_flight.Decrement();
  double duration = std::chrono::duration<double>(clock_->steady_now() - run->started).count();
  std::shared_ptr<const Redactor> redactor;
  {
    std::lock_guard lock(view_mu_);
    if (config_) redactor = config_->redactor;
  }
  if (redactor) outcome.message = redactor->redact(outcome.message);
  if (outcome.ok) outcome.reason = Reason::none;
  auto& rt = *run->rt;
  if (run->adhoc) {
    AdHocResult r;
    r.found = true;
    r.duration = duration;
    r.trace = run->ctx->trace().text();
    r.outcome = std::move(outcome);
    run->adhoc->set_value(std::move(r));
    return;
  }
  const auto ended = clock_->steady_now();
  if (rt.retired) {
    rt.in_flight = false;
    if (rt.cfg.connectivity) connectivity_checked(rt.id);
    return;
  }
  // A failure counts only once the agent knows it can see the platform: hold it while the
  // connectivity checks run (at once, if their last result is not fresh).
  if (!outcome.ok && !outcome.maintenance && !rt.cfg.connectivity && !connectivity_ids_.empty()) {
    held_.push_back(HeldRun{run->rt, std::move(outcome), duration, ended});
    check_connectivity();
    return;
  }
  rt.in_flight = false;
  finish(rt, std::move(outcome), duration, ended);
  if (rt.cfg.connectivity) connectivity_checked(rt.id);
}

void Engine::finish(ProbeRuntime& rt, Outcome outcome, double duration, Clock::time_point ended) {
  rt.last_end = ended;
  const auto r = record(rt, std::move(outcome), duration, ended);
  if (stopping_) return;
  const auto step = r.failure_pending
                        ? confirm_spacing(rt.cfg.interval, rt.cfg.timeout, rt.cfg.confirm_window)
                    : r.change_pending ? edge_interval(rt.cfg.interval, rt.cfg.timeout)
                                       : rt.cfg.interval;
  rt.planned = next_due(rt.planned, clock_->steady_now(), step);
  scheduler_.schedule(rt.id, rt.planned);
  // Before this probe can be called a root cause, its dependencies are checked now, so a
  // dependent never pages ahead of the dependency that took it down.
  if (r.result == RunResult::failure) check_dependencies(rt);
  arm_scheduler();
}

bool Engine::fresh(const ProbeRuntime& rt, Clock::time_point now) const {
  return rt.last_end != Clock::time_point{} && now - rt.last_end < kFreshResult;
}

// Loop thread: starts a scheduled probe now, out of its turn (its cadence continues from now).
void Engine::run_at_once(const std::shared_ptr<ProbeRuntime>& rt, Clock::time_point now) {
  scheduler_.remove(rt->id);
  rt->planned = now;
  if (metrics_) metrics_->schedule_lag.Observe(0);  // planned for now, started now
  start_run(rt, true, nullptr, false);
}

void Engine::check_connectivity() {
  const auto now = clock_->steady_now();
  for (uint64_t id : connectivity_ids_) {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) continue;
    auto& c = it->second;
    if (c->in_flight) {
      awaited_.insert(id);
    } else if (!fresh(*c, now) && !stopping_) {
      awaited_.insert(id);
      run_at_once(c, now);
    }
  }
  if (awaited_.empty()) release_held();
}

void Engine::connectivity_checked(uint64_t id) {
  if (awaited_.erase(id) && awaited_.empty()) release_held();
}

void Engine::release_held() {
  auto held = std::move(held_);
  held_.clear();
  for (auto& h : held) {
    h.rt->in_flight = false;
    if (h.rt->retired) continue;
    finish(*h.rt, std::move(h.outcome), h.duration, h.ended);
  }
}

// Lost when every connectivity check that has run failed its last run: one of several checks
// failing is that target's own outage (a refused port still proves the path), all of them
// failing is the path.
bool Engine::connectivity_lost() const {
  bool any_run = false;
  for (uint64_t id : connectivity_ids_) {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) continue;
    const auto ok = it->second->state.last_ok();
    if (ok == std::optional<bool>(true)) return false;
    any_run = any_run || ok.has_value();
  }
  return any_run;
}

void Engine::check_dependencies(const ProbeRuntime& rt) {
  auto deps = dependencies_.find(rt.id);
  if (deps == dependencies_.end()) return;
  const auto now = clock_->steady_now();
  for (uint64_t id : deps->second) {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) continue;
    auto& d = it->second;
    if (!d->in_flight && !fresh(*d, now)) run_at_once(d, now);
  }
}

ProbeState::Recorded Engine::record(ProbeRuntime& rt, Outcome outcome, double duration,
                                    Clock::time_point ended) {
  const bool ok = outcome.ok;
  const Reason reason = outcome.reason;
  RunFacts facts;
  facts.end = ended;
  facts.end_unix = clock_->unix_now();
  facts.connectivity_lost = !rt.cfg.connectivity && connectivity_lost();
  facts.in_window = any_active(rt.cfg.maintenance, facts.end_unix);
  const bool debug = spdlog::should_log(spdlog::level::debug);
  // Kept for the log lines below; the outcome itself moves into the probe's state.
  std::string message = !ok || debug ? outcome.message : std::string();
  const auto r = rt.state.record(std::move(outcome), duration, facts);
  if (r.changed) {
    if (r.up.value_or(false)) {
      spdlog::info("probe {} ({}) is UP", rt.cfg.name, rt.cfg.service);
    } else {
      spdlog::warn("probe {} ({}) is DOWN: {}: {}", rt.cfg.name, rt.cfg.service,
                   reason_name(reason), message);
    }
  }
  if (debug)
    spdlog::debug("probe {} run: {} in {:.3f}s{}{}", rt.cfg.name, result_name(r.result), duration,
                  ok ? "" : " reason=" + std::string(reason_name(reason)),
                  message.empty() ? "" : " message=" + message);
  return r;
}

Engine::AdHocResult Engine::run_now(const std::string& name, bool debug) {
  std::shared_ptr<ProbeRuntime> rt;
  for (const auto& p : view().probes)
    if (p->cfg.name == name) rt = p;
  if (!rt) return AdHocResult{};
  auto promise = std::make_shared<std::promise<AdHocResult>>();
  auto fut = promise->get_future();
  loop_.post([this, rt, promise, debug] { start_run(rt, false, promise, debug); });
  if (fut.wait_for(rt->cfg.timeout + std::chrono::seconds(2)) != std::future_status::ready) {
    AdHocResult r;
    r.found = true;
    r.outcome = Outcome::failure(Reason::internal, "the engine did not complete the run");
    return r;
  }
  return fut.get();
}

}  // namespace pes
