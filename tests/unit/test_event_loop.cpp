// EventLoop's fd watches, which the tcp and ldap probes drive their sockets with: a watch fires
// once when its fd is ready, a cancelled or replaced one never fires, a stale event of a watch
// that is gone reaches nobody, and destroying the loop frees what pending watches own. A
// socketpair stands for a probe's socket.
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>

#include "agent/engine/event_loop.h"

using namespace pes;
using namespace std::chrono_literals;

namespace {

struct Pair {
  Pair() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
  UniqueFd a, b;
};

// Runs fn on the loop thread and waits for it.
template <typename Fn>
auto on_loop(EventLoop& loop, Fn fn) {
  std::promise<decltype(fn())> p;
  auto f = p.get_future();
  loop.post([&] { p.set_value(fn()); });
  EXPECT_EQ(f.wait_for(5s), std::future_status::ready);
  return f.get();
}

// Lets the loop go round a few times (a timer well after anything already ready).
void settle(EventLoop& loop) {
  std::promise<void> p;
  auto f = p.get_future();
  loop.post([&] { loop.add_timer(Clock::now() + 50ms, [&] { p.set_value(); }); });
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
}

}  // namespace

TEST(EventLoopWatch, FiresOnceWhenReadable) {
  EventLoop loop;
  loop.start();
  Pair s;
  std::atomic<int> calls{0};
  std::promise<void> fired;
  on_loop(loop, [&] {
    return loop.watch_fd(s.a.get(), EPOLLIN, [&] {
      if (calls.fetch_add(1) == 0) fired.set_value();
    });
  });
  settle(loop);
  EXPECT_EQ(calls.load(), 0) << "nothing to read yet";
  ASSERT_EQ(write(s.b.get(), "x", 1), 1);
  ASSERT_EQ(fired.get_future().wait_for(5s), std::future_status::ready);
  settle(loop);  // still readable (the byte is unread): a one-shot watch does not fire again
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(on_loop(loop, [&] { return loop.watches(); }), 0u);
  loop.stop();
}

TEST(EventLoopWatch, WritableAndHangUpCountAsReady) {
  EventLoop loop;
  loop.start();
  Pair s;
  std::promise<void> writable, hung_up;
  on_loop(loop, [&] { return loop.watch_fd(s.a.get(), EPOLLOUT, [&] { writable.set_value(); }); });
  EXPECT_EQ(writable.get_future().wait_for(5s), std::future_status::ready);
  on_loop(loop, [&] { return loop.watch_fd(s.a.get(), EPOLLIN, [&] { hung_up.set_value(); }); });
  s.b.reset();  // the peer closes: a read would now return 0, so the watch must fire
  EXPECT_EQ(hung_up.get_future().wait_for(5s), std::future_status::ready);
  loop.stop();
}

TEST(EventLoopWatch, CancelledAndReplacedWatchesNeverFire) {
  EventLoop loop;
  loop.start();
  Pair s;
  std::atomic<int> cancelled{0}, replaced{0}, current{0};
  on_loop(loop, [&] {
    auto id = loop.watch_fd(s.a.get(), EPOLLIN, [&] { cancelled++; });
    loop.cancel_watch(id);
    loop.cancel_watch(id);  // twice is harmless
    loop.watch_fd(s.a.get(), EPOLLIN, [&] { replaced++; });
    return loop.watch_fd(s.a.get(), EPOLLIN, [&] { current++; });  // replaces the one before
  });
  EXPECT_EQ(on_loop(loop, [&] { return loop.watches(); }), 1u);
  ASSERT_EQ(write(s.b.get(), "x", 1), 1);
  settle(loop);
  EXPECT_EQ(cancelled.load(), 0);
  EXPECT_EQ(replaced.load(), 0);
  EXPECT_EQ(current.load(), 1);
  loop.stop();
}

TEST(EventLoopWatch, AStaleEventInTheSameBatchReachesNobody) {
  // Both pairs become readable while the loop is busy, so one epoll batch holds both events. The
  // first pair's callback cancels the second pair's watch, drains its socket and watches it again
  // (nothing to read now). The batch's old event for that fd must not run the new callback.
  EventLoop loop;
  loop.start();
  Pair first, second;
  std::atomic<int> second_calls{0}, new_calls{0};
  std::promise<void> done;
  on_loop(loop, [&] {
    EventLoop::WatchId second_id = loop.watch_fd(second.a.get(), EPOLLIN, [&] { second_calls++; });
    loop.watch_fd(first.a.get(), EPOLLIN, [&, second_id] {
      loop.cancel_watch(second_id);
      char buf[8];
      while (read(second.a.get(), buf, sizeof buf) > 0) {
      }
      loop.watch_fd(second.a.get(), EPOLLIN, [&] { new_calls++; });
      done.set_value();
    });
    return 0;
  });
  std::promise<void> written;
  loop.post([f = written.get_future().share()] { f.wait(); });  // holds the loop
  ASSERT_EQ(write(second.b.get(), "y", 1), 1);
  ASSERT_EQ(write(first.b.get(), "x", 1), 1);
  written.set_value();
  ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
  settle(loop);
  // In epoll's order the second pair's watch may have come first (then it ran once); the new
  // watch of the drained socket has nothing to report either way.
  EXPECT_LE(second_calls.load(), 1);
  EXPECT_EQ(new_calls.load(), 0);
  ASSERT_EQ(write(second.b.get(), "z", 1), 1);  // and it does fire for real data
  settle(loop);
  EXPECT_EQ(new_calls.load(), 1);
  loop.stop();
}

TEST(EventLoopWatch, DestroyingTheLoopFreesWhatPendingWatchesOwn) {
  Pair s;
  auto owned = std::make_shared<int>(7);
  std::weak_ptr<int> seen = owned;
  {
    EventLoop loop;
    loop.start();
    on_loop(loop, [&, o = std::move(owned)] { return loop.watch_fd(s.a.get(), EPOLLIN, [o] {}); });
    EXPECT_FALSE(seen.expired());
    loop.stop();
  }
  EXPECT_TRUE(seen.expired());
}
