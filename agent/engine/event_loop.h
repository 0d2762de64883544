// One thread that owns a libcurl multi handle, an epoll set and a timer queue. Other threads hand
// it work with post(); loop-only functions assert the thread they run on (trantor's shape). Besides
// libcurl's sockets it watches the sockets of the probes that speak their protocol themselves
// (tcp, ldap): watch_fd().
#pragma once

#include <curl/curl.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "agent/core/handles.h"
#include "agent/core/http_types.h"

namespace pes {

class EventLoop {
 public:
  using TimerId = uint64_t;
  using HttpId = uint64_t;
  using HttpDone = std::function<void(HttpResponse)>;
  using WatchId = uint64_t;

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  void start();
  // Stops the thread; pending transfers are abandoned without callbacks.
  void stop();
  bool in_loop() const { return std::this_thread::get_id() == thread_id_.load(); }

  // Thread-safe: runs fn on the loop thread.
  void post(std::function<void()> fn);

  // Loop thread only.
  TimerId add_timer(Clock::time_point when, std::function<void()> fn);
  void cancel_timer(TimerId id);
  // Starts a transfer that ends (with reason timeout if need be) no later than `deadline`.
  HttpId start_http(const HttpRequest& req, Clock::time_point deadline, HttpDone done);
  // Abandons a transfer: its callback will not run.
  void cancel_http(HttpId id);
  size_t transfers() const { return transfers_.size(); }
  // Calls fn once, when fd is ready for `events` (EPOLLIN and/or EPOLLOUT; an error or a hang-up
  // counts as ready: the next read or write reports it). One watch per fd at a time; a new watch
  // of the same fd replaces the old one. The watch must be cancelled (or have fired) before the fd
  // is closed.
  WatchId watch_fd(int fd, uint32_t events, std::function<void()> fn);
  // Drops a watch that has not fired: fn will not run (and is destroyed here).
  void cancel_watch(WatchId id);
  size_t watches() const { return watches_.size(); }

  struct Transfer;  // one transfer's state (defined in the .cpp; public for libcurl's callbacks)

 private:
  void run();
  void run_timers();
  void drain_posted();
  void check_multi_info();
  void finish(CURL* easy, CURLcode code);
  void fire_watch(WatchId id);
  static int on_socket(CURL* easy, curl_socket_t s, int what, void* userp, void* socketp);
  static int on_timer(CURLM* multi, long timeout_ms, void* userp);

  CurlMulti multi_;
  CurlShare share_;  // DNS cache shared by every transfer
  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
  std::atomic<bool> running_{false};

  std::mutex post_mu_;
  std::vector<std::function<void()>> posted_;

  TimerId next_timer_id_ = 1;
  std::multimap<Clock::time_point, std::pair<TimerId, std::function<void()>>> timers_;
  std::unordered_map<TimerId, decltype(timers_)::iterator> timer_index_;
  long curl_timeout_ms_ = -1;  // from CURLMOPT_TIMERFUNCTION; -1 = none
  Clock::time_point curl_timer_set_at_{};

  HttpId next_http_id_ = 1;
  std::unordered_map<HttpId, std::unique_ptr<Transfer>> transfers_;
  std::vector<CurlEasy> idle_handles_;  // easy handles kept for reuse

  struct Watch {
    int fd = -1;
    std::function<void()> fn;
  };
  WatchId next_watch_id_ = 1;
  std::unordered_map<WatchId, Watch> watches_;
  std::unordered_map<int, WatchId> watch_by_fd_;
};

}  // namespace pes
