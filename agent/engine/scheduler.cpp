#include "agent/engine/scheduler.h"

#include <algorithm>

namespace pes {

void Scheduler::schedule(uint64_t id, Clock::time_point due) {
  uint64_t g = ++gen_;
  due_[id] = {due, g};
  heap_.push(Entry{due, id, g});
}

void Scheduler::remove(uint64_t id) { due_.erase(id); }

void Scheduler::drop_stale() {
  while (!heap_.empty()) {
    const auto& top = heap_.top();
    auto it = due_.find(top.id);
    if (it != due_.end() && it->second.second == top.gen) return;
    heap_.pop();
  }
}

std::optional<Clock::time_point> Scheduler::next_due() {
  drop_stale();
  if (heap_.empty()) return std::nullopt;
  return heap_.top().due;
}

std::vector<std::pair<uint64_t, Clock::time_point>> Scheduler::pop_due(Clock::time_point now,
                                                                       size_t max) {
  std::vector<std::pair<uint64_t, Clock::time_point>> out;
  while (out.size() < max) {
    drop_stale();
    if (heap_.empty() || heap_.top().due > now) break;
    auto e = heap_.top();
    heap_.pop();
    due_.erase(e.id);
    out.emplace_back(e.id, e.due);
  }
  return out;
}

Clock::time_point first_due(Clock::time_point now, std::chrono::milliseconds interval,
                            std::mt19937_64& rng) {
  auto span =
      std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::microseconds>(interval).count());
  std::uniform_int_distribution<int64_t> dist(0, span - 1);
  return now + std::chrono::microseconds(dist(rng));
}

std::chrono::milliseconds edge_interval(std::chrono::milliseconds interval,
                                        std::chrono::milliseconds timeout) {
  auto quarter = interval / 4;
  auto edge = std::max({quarter, timeout, std::chrono::milliseconds(1000)});
  return std::min(edge, interval);
}

Clock::time_point next_due(Clock::time_point planned, Clock::time_point now,
                           std::chrono::milliseconds interval, std::chrono::milliseconds timeout,
                           bool change_pending) {
  // Overran (or the process was suspended): the step overload skips missed slots, keeping phase.
  return next_due(planned, now, change_pending ? edge_interval(interval, timeout) : interval);
}

Clock::time_point next_due(Clock::time_point planned, Clock::time_point now,
                           std::chrono::milliseconds step) {
  auto next = planned + step;
  if (next < now) {
    auto behind = now - planned;
    auto slots = behind / step + 1;
    next = planned + slots * step;
  }
  return next;
}

std::chrono::milliseconds confirm_spacing(std::chrono::milliseconds interval,
                                          std::chrono::milliseconds timeout,
                                          std::chrono::milliseconds confirm_window) {
  const auto edge = edge_interval(interval, timeout);
  if (confirm_window <= std::chrono::milliseconds(0)) return edge;
  return std::min(edge, std::max(confirm_window / 4, std::chrono::milliseconds(100)));
}

FailureKind failure_kind(Reason reason, int http_status) {
  switch (reason) {
    case Reason::http_status:
      // A gateway or a service that is (re)starting: Envoy's retriable statuses.
      if (http_status == 502 || http_status == 503 || http_status == 504)
        return FailureKind::restart;
      return FailureKind::certain;
    case Reason::assertion:
    case Reason::auth:
    case Reason::tls:
    case Reason::config:
      return FailureKind::certain;
    case Reason::connect:
      return FailureKind::restart;
    default:
      return FailureKind::uncertain;
  }
}

bool ThresholdState::record(bool ok, FailureKind kind, Clock::time_point at) {
  if (ok) {
    ++oks_;
    fails_ = 0;
  } else {
    if (fails_ == 0) first_failure_ = at;
    ++fails_;
    oks_ = 0;
  }
  if (!up_) {
    up_ = ok;
    return true;
  }
  if (*up_ && !ok && confirmed_down(kind, at)) {
    up_ = false;
    return true;
  }
  if (!*up_ && ok && oks_ >= success_threshold_) {
    up_ = true;
    return true;
  }
  return false;
}

bool ThresholdState::confirmed_down(FailureKind kind, Clock::time_point at) const {
  if (kind == FailureKind::restart && confirm_window_ <= std::chrono::milliseconds(0))
    kind = FailureKind::uncertain;
  switch (kind) {
    case FailureKind::certain:
      return true;
    case FailureKind::restart:
      // However many retries fit into the window, a restart is only over once the window is.
      return failure_threshold_ <= 1 || (fails_ >= 2 && at - first_failure_ >= confirm_window_);
    case FailureKind::uncertain:
      return fails_ >= failure_threshold_;
  }
  return false;
}

bool ThresholdState::change_pending() const {
  if (!up_) return false;
  return (*up_ && fails_ > 0) || (!*up_ && oks_ > 0);
}

}  // namespace pes
