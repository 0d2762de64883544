// The event loop and the engine when starved. Many transfers end in one libcurl pass (they all
// passed their deadline while the loop had no CPU), against a real hung server on loopback; many
// runs fall due while the loop is held. What is checked is that every one completes, how the loop
// talks to libcurl and how many runs it starts at once, never how fast: the test binary is
// linked with --wrap for curl_multi_info_read and curl_multi_remove_handle (tests/CMakeLists.txt)
// so it can see whether a handle is removed while libcurl still queues messages. Such a removal
// walks the whole queue (libcurl's multi.c), which made draining 16,000 timeouts take minutes.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "agent/config/config.h"
#include "agent/core/probe.h"
#include "agent/engine/engine.h"
#include "agent/engine/event_loop.h"
#include "tests/support/fixture.h"

using namespace pes;
using namespace pes::test;
using namespace std::chrono_literals;

namespace {

// What the wrappers saw. Only the loop thread calls them; the test thread reads after a join.
std::atomic<int> queued{0};       // messages left after the last curl_multi_info_read
std::atomic<int> most_queued{0};  // the most left after any read
std::atomic<int> removed_while_queued{0};

}  // namespace

// NOLINTBEGIN(bugprone-reserved-identifier): the names the linker's --wrap gives them.
extern "C" {
CURLMsg* __real_curl_multi_info_read(CURLM* multi, int* left);
CURLMcode __real_curl_multi_remove_handle(CURLM* multi, CURL* easy);

CURLMsg* __wrap_curl_multi_info_read(CURLM* multi, int* left) {
  CURLMsg* msg = __real_curl_multi_info_read(multi, left);
  queued = msg ? *left : 0;
  most_queued = std::max(most_queued.load(), queued.load());
  return msg;
}

CURLMcode __wrap_curl_multi_remove_handle(CURLM* multi, CURL* easy) {
  if (queued.load() > 0) ++removed_while_queued;
  return __real_curl_multi_remove_handle(multi, easy);
}
}
// NOLINTEND(bugprone-reserved-identifier)

namespace {

class StarvedLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    queued = 0;
    most_queued = 0;
    removed_while_queued = 0;
    loop_.start();
  }
  void TearDown() override { loop_.stop(); }

  // Runs fn on the loop thread and waits for it.
  void on_loop(const std::function<void()>& fn) {
    std::promise<void> ran;
    loop_.post([&] {
      fn();
      ran.set_value();
    });
    ran.get_future().get();
  }

  // Keeps the loop thread busy until `until`, as a loop without CPU would be: armed as a timer so
  // that the backstop timers due meanwhile wait for the next pass, and libcurl's own timeouts
  // come first (the order EventLoop::run has after a long pass).
  void starve_until(Clock::time_point at, Clock::time_point until) {
    on_loop([&] { loop_.add_timer(at, [until] { std::this_thread::sleep_until(until); }); });
  }

  // Waits (a hang guard, not a measurement) until `n` transfers have called back.
  bool wait_done(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 120s, [&] { return static_cast<int>(reasons_.size()) >= n; });
  }

  HttpRequest hang_request() const {
    HttpRequest req;
    req.url = "http://" + hang_.address() + "/";
    return req;
  }

  EventLoop::HttpDone record() {
    return [this](HttpResponse r) {
      std::lock_guard lock(mu_);
      reasons_.push_back(r.reason);
      cv_.notify_all();
    };
  }

  HungServer hang_{HungMode::accept_and_hang};
  EventLoop loop_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Reason> reasons_;  // one per transfer that called back
};

}  // namespace

TEST_F(StarvedLoopTest, TransfersThatTimeOutTogetherAllCompleteWithoutRemovalsWhileQueued) {
  constexpr int kTransfers = 200;
  const auto t0 = Clock::now();
  const auto deadline = t0 + 300ms;
  on_loop([&] {
    for (int i = 0; i < kTransfers; ++i) loop_.start_http(hang_request(), deadline, record());
  });
  starve_until(t0 + 100ms, deadline + 300ms);

  ASSERT_TRUE(wait_done(kTransfers));
  loop_.stop();
  std::lock_guard lock(mu_);
  EXPECT_EQ(static_cast<int>(reasons_.size()), kTransfers);
  EXPECT_EQ(std::count(reasons_.begin(), reasons_.end(), Reason::timeout), kTransfers);
  // The situation under test happened: libcurl ended many transfers in one pass ...
  EXPECT_GE(most_queued.load(), 1);
  // ... and the loop read them all before removing one (else each removal walks the queue).
  EXPECT_EQ(removed_while_queued.load(), 0);
  EXPECT_EQ(loop_.transfers(), 0u);
}

// Finishing a batch runs callbacks between the batch's transfers: one that cancels a transfer
// further down the batch (a run ending abandons its other requests) and one that starts a new
// transfer on the handle just given back (the next step of a probe) must both be safe.
TEST_F(StarvedLoopTest, CallbacksDuringABatchCancelAndStartTransfers) {
  const auto t0 = Clock::now();
  const auto deadline = t0 + 300ms;
  std::vector<EventLoop::HttpId> ids;
  std::atomic<int> cancelled_called{0};
  std::promise<Reason> next_step;
  on_loop([&] {
    // Whichever of the two ends first cancels the other.
    auto first = std::make_shared<std::atomic<bool>>(false);
    for (int i = 0; i < 2; ++i) {
      ids.push_back(loop_.start_http(hang_request(), deadline, [&, first, i](HttpResponse r) {
        if (first->exchange(true)) {
          ++cancelled_called;
          return;
        }
        loop_.cancel_http(ids[1 - i]);
        // Its own deadline is later than the batch: it ends on its own pass, by timeout too.
        loop_.start_http(hang_request(), Clock::now() + 200ms,
                         [&](HttpResponse next) { next_step.set_value(next.reason); });
        record()(std::move(r));
      }));
    }
    for (int i = 0; i < 20; ++i) loop_.start_http(hang_request(), deadline, record());
  });
  starve_until(t0 + 100ms, deadline + 300ms);

  auto step = next_step.get_future();
  ASSERT_EQ(step.wait_for(120s), std::future_status::ready);
  EXPECT_EQ(step.get(), Reason::timeout);
  ASSERT_TRUE(wait_done(21));
  loop_.stop();
  EXPECT_EQ(cancelled_called.load(), 0);  // a cancelled transfer never calls back
  std::lock_guard lock(mu_);
  EXPECT_EQ(static_cast<int>(reasons_.size()), 21);  // 20 plus the one that was not cancelled
  EXPECT_EQ(std::count(reasons_.begin(), reasons_.end(), Reason::timeout), 21);
  EXPECT_EQ(removed_while_queued.load(), 0);
  EXPECT_EQ(loop_.transfers(), 0u);
}

namespace {

// What the probes of the backlog test saw, written on the loop thread.
struct Backlog {
  prometheus::Gauge* in_flight = nullptr;  // the engine's pes_agent_probes_in_flight
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> starts;    // per counting probe
  int ran_twice = 0;          // counting probes that started at least twice
  double most_in_flight = 0;  // at any counting probe's start
};

// Ends at once, on the loop thread, and notes how many runs were in flight when it started.
class CountingProbe : public Probe {
 public:
  CountingProbe(Backlog& b, size_t i) : b_(b), i_(i) {}
  void run(RunContextPtr, Done done) override {
    {
      std::lock_guard lock(b_.mu);
      b_.most_in_flight = std::max(b_.most_in_flight, b_.in_flight->Value());
      if (++b_.starts[i_] == 2) ++b_.ran_twice;
    }
    b_.cv.notify_all();
    done(Outcome::success());
  }
  std::string target() const override { return "count"; }

 private:
  Backlog& b_;
  size_t i_;
};

// Its first run holds the loop thread, as a loop without CPU would be held.
class StallingProbe : public Probe {
 public:
  void run(RunContextPtr, Done done) override {
    if (!stalled_.exchange(true)) std::this_thread::sleep_for(1500ms);
    done(Outcome::success());
  }
  std::string target() const override { return "stall"; }

 private:
  std::atomic<bool> stalled_{false};
};

}  // namespace

// While the loop is held, every probe (each runs every second) falls due. When it is free again,
// the runs that piled up must not all start in one pass of the loop: then none of those that
// end could be delivered, nor any timer fire, until all had started (with ~15,000 due and 0.1
// core, ~25 s in which no run ended). They start in batches, and all of them run again.
TEST(EngineBacklog, RunsDueTogetherStartInBatchesAndAllRunAgain) {
  constexpr size_t kProbes = 1000;
  prometheus::Registry registry;
  Backlog backlog;
  backlog.starts.assign(kProbes, 0);
  auto config = std::make_shared<Config>();
  auto add = [&](const std::string& name, std::shared_ptr<Probe> probe) {
    ProbeConfig pc;
    pc.name = name;
    pc.service = name;
    pc.type = "test";
    pc.interval = 1s;
    pc.timeout = 5s;
    pc.probe = std::move(probe);
    config->probes.push_back(std::move(pc));
  };
  add("stall", std::make_shared<StallingProbe>());
  for (size_t i = 0; i < kProbes; ++i)
    add("c" + std::to_string(i), std::make_shared<CountingProbe>(backlog, i));

  EngineOptions opts;
  opts.registry = &registry;
  opts.seed = 7;
  Engine engine(opts);
  // The engine's own gauge: the same family and labels return the child it registered.
  backlog.in_flight = &prometheus::BuildGauge()
                           .Name("pes_agent_probes_in_flight")
                           .Help("Probe runs currently in progress.")
                           .Register(registry)
                           .Add({});
  engine.apply(config);
  engine.start();
  {
    std::unique_lock lock(backlog.mu);
    ASSERT_TRUE(backlog.cv.wait_for(lock, 120s, [&] { return backlog.ran_twice == kProbes; }))
        << backlog.ran_twice << " of " << kProbes << " probes ran twice";
  }
  engine.stop();
  std::lock_guard lock(backlog.mu);
  // Before batches, the whole backlog (~1,000) was in flight at once.
  EXPECT_LT(backlog.most_in_flight, kProbes / 2.0) << "runs in flight at once";
  EXPECT_GE(backlog.most_in_flight, 1);
}
