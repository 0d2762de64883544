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

std::vector<std::pair<uint64_t, Clock::time_point>> Scheduler::pop_due(Clock::time_point now) {
  std::vector<std::pair<uint64_t, Clock::time_point>> out;
  while (true) {
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
  auto step = change_pending ? edge_interval(interval, timeout) : interval;
  auto next = planned + step;
  if (next < now) {
    // Overran (or the process was suspended): skip missed slots but keep the phase.
    auto behind = now - planned;
    auto slots = behind / step + 1;
    next = planned + slots * step;
  }
  return next;
}

bool ThresholdState::certain(Reason r) {
  switch (r) {
    case Reason::http_status:
    case Reason::assertion:
    case Reason::auth:
    case Reason::tls:
    case Reason::config:
      return true;
    default:
      return false;
  }
}

bool ThresholdState::record(bool ok, Reason reason) {
  if (ok) {
    ++oks_;
    fails_ = 0;
  } else {
    ++fails_;
    oks_ = 0;
  }
  if (!up_) {
    up_ = ok;
    return true;
  }
  if (*up_ && !ok && (certain(reason) || fails_ >= failure_threshold_)) {
    up_ = false;
    return true;
  }
  if (!*up_ && ok && oks_ >= success_threshold_) {
    up_ = true;
    return true;
  }
  return false;
}

bool ThresholdState::change_pending() const {
  if (!up_) return false;
  return (*up_ && fails_ > 0) || (!*up_ && oks_ > 0);
}

}  // namespace pes
