// The event loop when it is starved: many transfers end in one libcurl pass (they all passed their
// deadline while the loop had no CPU), against a real hung server on loopback. What is checked is
// that every one completes and how the loop talks to libcurl, never how fast: the test binary is
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
