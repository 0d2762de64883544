// The seam between the engine and the probe types: a configured check (Probe), what a run may
// use (RunContext), and the table entry that reads a type's config section (ProbeType).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/core/http_types.h"
#include "agent/core/redact.h"
#include "agent/core/tokens.h"
#include "agent/core/types.h"

namespace pes {

class Section;

// Step-by-step log of one run for /probe?debug=true. Disabled traces cost one branch per call.
// Every line passes through the redactor.
class Trace {
 public:
  Trace(bool enabled, std::shared_ptr<const Redactor> redactor);
  bool enabled() const { return enabled_; }
  void log(std::string_view line);
  std::string text() const;

 private:
  bool enabled_;
  std::shared_ptr<const Redactor> redactor_;
  Clock::time_point start_;
  mutable std::mutex mu_;
  std::string text_;
};

// What a run may use. Owned by the engine through a shared_ptr, so callbacks may keep it alive.
class RunContext {
 public:
  virtual ~RunContext() = default;
  virtual Clock::time_point deadline() const = 0;
  virtual const std::string& probe_name() const = 0;
  // Milliseconds left until the deadline (at least 1).
  long remaining_ms() const;
  // Starts an HTTP request on the event loop. `done` runs on the loop thread, once, before the
  // deadline (a request still running at the deadline fails with reason timeout).
  virtual void http(HttpRequest request, std::function<void(HttpResponse)> done) = 0;
  // Runs blocking work (libpq, a name lookup) on the bounded worker pool. The work must honour
  // deadline() itself; the engine stops waiting for it at the deadline.
  virtual void blocking(std::function<void()> work) = 0;
  // For probes that drive a socket of their own on the event loop (tcp, ldap), without the worker
  // pool's two thread hand-offs per run. Loop thread only. Calls `ready` once, on the loop thread:
  // true when fd is ready for `events` (POLLIN and/or POLLOUT; an error or hang-up counts as
  // ready), false when the run's deadline comes first. Never calls it from inside wait_fd itself.
  // Once the run is over (the engine gave up at the deadline) pending waits are dropped.
  virtual void wait_fd(int fd, short events, std::function<void(bool ready)> ready) = 0;
  // Runs fn on the loop thread (from any thread, e.g. at the end of blocking work), unless the run
  // is over by then.
  virtual void on_loop(std::function<void()> fn) = 0;
  virtual TokenStore& tokens() = 0;
  virtual Trace& trace() = 0;
};
using RunContextPtr = std::shared_ptr<RunContext>;

// Called exactly once per run, from any thread. Later calls are ignored. Probe::run() is called on
// the loop thread.
using Done = std::function<void(Outcome)>;

// One configured check. run() starts a run and arranges for done to be called; it never throws.
class Probe {
 public:
  virtual ~Probe() = default;
  virtual void run(RunContextPtr ctx, Done done) = 0;
  // What is probed, for probe_info{target} and the status page; never contains credentials.
  virtual std::string target() const = 0;
  // Probes whose tokens this one uses (bearer_from); the `probe` command runs them first.
  virtual std::vector<std::string> token_sources() const { return {}; }
};

// A probe type: its name (the `type:` value and the section key), how to read its section, and the
// label names its samples carry (reserved, so that no global label can collide with them).
// parse() reports problems through the section and returns nullptr when the section is unusable.
struct ProbeType {
  std::string_view name;
  std::unique_ptr<Probe> (*parse)(Section& section);
  std::span<const std::string_view> sample_labels = {};
};

}  // namespace pes
