#include "agent/engine/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <string_view>
#include <thread>

namespace pes {

namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

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
      if (self->trace_.enabled())
        self->trace_.log(request.method + " " + strip_userinfo(request.url));
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

  // Loop thread: the run is over; abandon what it still has going.
  void finish() {
    finished_ = true;
    for (auto id : http_ids_) engine_->loop_.cancel_http(id);
    http_ids_.clear();
  }

  void set_self(const std::shared_ptr<Context>& self) { weak_self_ = self; }

 private:
  std::shared_ptr<RunContext> shared_from_this_() { return weak_self_.lock(); }

  Engine* engine_;
  std::string name_;
  Clock::time_point deadline_;
  Trace trace_;
  std::weak_ptr<Context> weak_self_;
  bool finished_ = false;                    // loop thread
  std::vector<EventLoop::HttpId> http_ids_;  // loop thread
};

Engine::Engine(EngineOptions options)
    : options_(options), pool_(options.workers), rng_(options.seed) {
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
    Clock::time_point last = Clock::now();
    for (auto& [id, rt] : by_id_) {
      scheduler_.remove(id);
      if (rt->in_flight) last = std::max(last, rt->planned + rt->cfg.timeout);
    }
    latest.set_value(last);
  });
  auto until = fut.get() + std::chrono::milliseconds(200);
  while (in_flight_.load() > 0 && Clock::now() < until)
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
    swap_in(std::move(config));
  }
  ready_ = true;
}

void Engine::swap_in(std::shared_ptr<const Config> config) {
  auto now = Clock::now();
  std::unordered_map<std::string, std::shared_ptr<ProbeRuntime>> old;
  for (auto& [id, rt] : by_id_) old[rt->cfg.name] = rt;
  std::unordered_map<uint64_t, std::shared_ptr<ProbeRuntime>> next;
  std::vector<std::shared_ptr<ProbeRuntime>> list;
  std::vector<std::shared_ptr<ProbeRuntime>> fresh;  // new runtimes, to be scheduled
  for (const auto& pc : config->probes) {
    auto it = old.find(pc.name);
    std::shared_ptr<ProbeRuntime> rt;
    if (it != old.end() && it->second->cfg.fingerprint == pc.fingerprint) {
      rt = it->second;  // unchanged: keeps state, counters, schedule and probe object (caches)
      old.erase(it);
    } else {
      rt = std::make_shared<ProbeRuntime>(next_id_++, pc);
      if (it != old.end()) {
        // Changed: a new check, but the counters go on so rate() sees no reset.
        std::lock_guard lock(it->second->mu);
        rt->runs_ok = it->second->runs_ok;
        rt->runs_failed = it->second->runs_failed;
        rt->failures = it->second->failures;
        rt->buckets = it->second->buckets;
        rt->duration_sum = it->second->duration_sum;
      }
      if (!stopping_ && options_.schedule) {
        rt->planned = first_due(now, pc.interval, rng_);
        fresh.push_back(rt);
      }
    }
    next[rt->id] = rt;
    list.push_back(rt);
  }
  // The SSO chain at start: a probe that sends a keycloak probe's token first runs after that
  // probe's first run has ended (its deadline), so it never fails for want of a token that was
  // simply not fetched yet (a false `auth` at every start or reload).
  std::unordered_map<std::string_view, const ProbeRuntime*> by_name;
  for (const auto& rt : list) by_name[rt->cfg.name] = rt.get();
  for (auto& rt : fresh) {
    if (!rt->cfg.probe) continue;
    for (const auto& source : rt->cfg.probe->token_sources()) {
      auto src = by_name.find(source);
      if (src == by_name.end() || src->second == rt.get()) continue;
      const ProbeRuntime& s = *src->second;
      bool has_run;
      {
        std::lock_guard lock(s.mu);
        has_run = s.has_run;
      }
      if (!has_run)
        rt->planned =
            std::max(rt->planned, s.planned + s.cfg.timeout + std::chrono::milliseconds(50));
    }
  }
  for (auto& rt : fresh) scheduler_.schedule(rt->id, rt->planned);
  for (auto& [name, rt] : old) {
    rt->retired = true;
    scheduler_.remove(rt->id);
  }
  by_id_ = std::move(next);
  {
    std::lock_guard lock(view_mu_);
    config_ = config;
    probes_ = std::move(list);
  }
  if (metrics_) metrics_->configured.Set(static_cast<double>(config->probes.size()));
  if (started_.load()) arm_scheduler();
}

void Engine::arm_scheduler() {
  if (stopping_) return;
  auto due = scheduler_.next_due();
  if (sched_timer_) loop_.cancel_timer(sched_timer_);
  sched_timer_ = 0;
  if (!due) return;
  sched_timer_ = loop_.add_timer(*due, [this] {
    sched_timer_ = 0;
    dispatch_due();
  });
}

void Engine::dispatch_due() {
  auto now = Clock::now();
  for (auto& [id, planned] : scheduler_.pop_due(now)) {
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
  run->started = Clock::now();
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
  double duration = std::chrono::duration<double>(Clock::now() - run->started).count();
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
  rt.in_flight = false;
  if (rt.retired) return;
  record(rt, outcome, duration);
  if (!stopping_ && run->scheduled) {
    bool pending;
    {
      std::lock_guard lock(rt.mu);
      pending = rt.state.change_pending();
    }
    rt.planned = next_due(rt.planned, Clock::now(), rt.cfg.interval, rt.cfg.timeout, pending);
    scheduler_.schedule(rt.id, rt.planned);
    arm_scheduler();
  }
}

void Engine::record(ProbeRuntime& rt, const Outcome& outcome, double duration) {
  double now = unix_now();
  bool changed;
  std::optional<bool> up;
  {
    std::lock_guard lock(rt.mu);
    changed = rt.state.record(outcome.ok, outcome.reason);
    up = rt.state.up();
    rt.has_run = true;
    rt.last_ok = outcome.ok;
    rt.last_reason = outcome.reason;
    rt.last_message = outcome.message;
    rt.last_samples = outcome.samples;
    rt.last_duration = duration;
    rt.last_end_unix = now;
    if (changed) rt.last_change_unix = now;
    if (outcome.ok) {
      ++rt.runs_ok;
    } else {
      ++rt.runs_failed;
      ++rt.failures[static_cast<size_t>(outcome.reason)];
      rt.last_failure_reason = outcome.reason;
      rt.last_error = outcome.message;
      rt.last_failure_unix = now;
    }
    for (size_t i = 0; i < kRunDurationBuckets.size(); ++i)
      if (duration <= kRunDurationBuckets[i]) ++rt.buckets[i];
    rt.duration_sum += duration;
    rt.history.push_back(RunRecord{outcome.ok, outcome.reason, duration, now});
    if (rt.history.size() > kHistoryLength) rt.history.pop_front();
  }
  if (changed) {
    if (up.value_or(false)) {
      spdlog::info("probe {} ({}) is UP", rt.cfg.name, rt.cfg.service);
    } else {
      spdlog::warn("probe {} ({}) is DOWN: {}: {}", rt.cfg.name, rt.cfg.service,
                   reason_name(outcome.reason), outcome.message);
    }
  }
  if (!spdlog::should_log(spdlog::level::debug)) return;
  spdlog::debug("probe {} run: {} in {:.3f}s{}{}", rt.cfg.name, outcome.ok ? "success" : "failure",
                duration, outcome.ok ? "" : " reason=" + std::string(reason_name(outcome.reason)),
                outcome.message.empty() ? "" : " message=" + outcome.message);
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
