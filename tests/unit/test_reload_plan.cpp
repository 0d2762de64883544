// The pure part of a reload at fixed times: which probes are kept, changed, new and retired, when
// new and changed ones first run, and the bearer_from wait for a token source's first run.
#include <gtest/gtest.h>

#include "agent/engine/reload_plan.h"
#include "agent/engine/scheduler.h"

using namespace pes;
using namespace std::chrono_literals;

namespace {

const Clock::time_point T0 = Clock::time_point() + 1000h;

WantedProbe wanted(std::string name, uint64_t fp, std::chrono::milliseconds interval = 30s,
                   std::vector<std::string> sources = {}) {
  return WantedProbe{std::move(name), fp, interval, 5s, std::move(sources)};
}

}  // namespace

TEST(ReloadPlan, KeepsChangesAddsAndRetiresByNameAndFingerprint) {
  const std::vector<RunningProbe> running = {{"same", 1, T0 + 7s, 5s, true},
                                             {"edited", 2, T0 + 3s, 5s, true},
                                             {"gone", 3, T0 + 1s, 5s, true}};
  const std::vector<WantedProbe> next = {wanted("fresh", 9), wanted("same", 1),
                                         wanted("edited", 20)};
  Rng rng(1);
  const ReloadPlan plan = plan_reload(running, next, T0, rng, true);
  ASSERT_EQ(plan.steps.size(), 3u);
  EXPECT_EQ(plan.steps[0].action, ReloadAction::add);
  EXPECT_FALSE(plan.steps[0].running.has_value());
  EXPECT_EQ(plan.steps[1].action, ReloadAction::keep);
  EXPECT_EQ(plan.steps[1].running, 0u);
  EXPECT_FALSE(plan.steps[1].first_run.has_value());  // keeps its schedule
  EXPECT_EQ(plan.steps[2].action, ReloadAction::change);
  EXPECT_EQ(plan.steps[2].running, 1u);
  ASSERT_EQ(plan.retired.size(), 1u);
  EXPECT_EQ(plan.retired[0], 2u);
  for (size_t i : {0u, 2u}) {
    ASSERT_TRUE(plan.steps[i].first_run.has_value());
    EXPECT_GE(*plan.steps[i].first_run, T0);
    EXPECT_LT(*plan.steps[i].first_run, T0 + 30s);
  }
}

TEST(ReloadPlan, FirstRunsAreSpreadAndDeterministicForASeed) {
  std::vector<WantedProbe> next;
  for (int i = 0; i < 200; ++i) next.push_back(wanted("p" + std::to_string(i), i, 10s));
  Rng a(5), b(5);
  const ReloadPlan pa = plan_reload({}, next, T0, a, true);
  const ReloadPlan pb = plan_reload({}, next, T0, b, true);
  std::vector<int> per_second(10);
  for (size_t i = 0; i < next.size(); ++i) {
    EXPECT_EQ(pa.steps[i].first_run, pb.steps[i].first_run);
    ++per_second[(*pa.steps[i].first_run - T0) / 1s];
  }
  for (int n : per_second) EXPECT_GT(n, 5);  // 20 expected in each second
}

TEST(ReloadPlan, WithoutSchedulingNothingIsPlanned) {
  Rng rng(1);
  const std::vector<WantedProbe> next = {wanted("a", 1)};
  const ReloadPlan plan = plan_reload({}, next, T0, rng, false);
  EXPECT_EQ(plan.steps[0].action, ReloadAction::add);
  EXPECT_FALSE(plan.steps[0].first_run.has_value());
}

TEST(ReloadPlan, TokenConsumerWaitsForItsNewSourcesFirstDeadline) {
  Rng rng(3);
  const std::vector<WantedProbe> next = {wanted("api", 1, 30s, {"token"}), wanted("token", 2)};
  const ReloadPlan plan = plan_reload({}, next, T0, rng, true);
  const auto source_end = *plan.steps[1].first_run + 5s + kTokenSourceGrace;
  EXPECT_GE(*plan.steps[0].first_run, source_end);
}

TEST(ReloadPlan, TokenConsumerWaitsForAKeptSourceThatHasNotRunYet) {
  Rng rng(3);
  const std::vector<RunningProbe> running = {{"token", 2, T0 + 29s, 5s, false}};
  const std::vector<WantedProbe> next = {wanted("api", 1, 30s, {"token"}), wanted("token", 2)};
  const ReloadPlan plan = plan_reload(running, next, T0, rng, true);
  EXPECT_EQ(plan.steps[1].action, ReloadAction::keep);
  EXPECT_EQ(*plan.steps[0].first_run, T0 + 29s + 5s + kTokenSourceGrace);
}

TEST(ReloadPlan, TokenConsumerDoesNotWaitForASourceThatAlreadyRan) {
  Rng rng(3), same(3);
  const std::vector<RunningProbe> running = {{"token", 2, T0 + 29s, 5s, true}};
  const std::vector<WantedProbe> next = {wanted("api", 1, 30s, {"token"}), wanted("token", 2)};
  const ReloadPlan plan = plan_reload(running, next, T0, rng, true);
  EXPECT_EQ(*plan.steps[0].first_run, first_due(T0, 30s, same));
  EXPECT_LT(*plan.steps[0].first_run, T0 + 30s);
}
