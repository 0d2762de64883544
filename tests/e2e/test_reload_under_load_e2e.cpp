// Reload under load (issue 8): the built pes-agent runs 1,000 probes against a real nginx while it
// is reloaded 100 times, alternating POST /-/reload and SIGHUP. Each good configuration keeps 990
// probes unchanged, changes 5 (a new URL) and replaces 5 others by new names; 10 of the reloads
// are broken files that must be refused. Asserted: every reload's answer, that no probe's
// probe_runs_total ever goes down across reloads and that the unchanged ones keep running, that
// removed probes vanish from /metrics and added ones appear, pes_agent_config_reloads_total, that
// the agent is alive, and that its descriptors and threads come back to the baseline.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/fixture.h"

using namespace pes::test;
using namespace std::chrono_literals;

namespace {

constexpr int kUnchanged = 990;  // the same in every configuration
constexpr int kChanged = 5;      // same names, a new URL in every good configuration
constexpr int kChurn = 5;        // new names in every good configuration (the old ones removed)
constexpr int kReloads = 100;
// Descriptors that may differ between two floors (a connection nginx has not closed yet, a
// worker's scratch file). One leaked descriptor per reload would be 100, one per refused reload 10.
constexpr int kFdTolerance = 4;

std::string unchanged_name(int i) {
  char b[16];
  std::snprintf(b, sizeof b, "u%03d", i);
  return b;
}
std::string changed_name(int i) { return "c" + std::to_string(i); }
std::string churn_name(int gen, int i) {
  return "n" + std::to_string(gen) + "-" + std::to_string(i);
}

// Reloads 5, 25, 45, 65, 85 (POST) and 10, 30, 50, 70, 90 (SIGHUP) are broken.
bool broken(int reload) { return reload % 20 == 5 || reload % 20 == 10; }
bool by_post(int reload) { return reload % 2 == 1; }

// What one scrape says about the probes and the reloads.
struct Scrape {
  std::map<std::string, double> runs;         // probe -> success + failure runs
  std::map<std::string, std::string> target;  // probe -> probe_info target
  double reloads_ok = 0, reloads_failed = 0, last_ok = 0, configured = 0;
};

std::string label(const std::string& line, const std::string& name) {
  const std::string key = name + "=\"";
  size_t at = line.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  return line.substr(at, line.find('"', at) - at);
}

Scrape parse(const std::string& exposition) {
  Scrape s;
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const double value = std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
    if (line.starts_with("probe_runs_total{")) {
      s.runs[label(line, "probe")] += value;
    } else if (line.starts_with("probe_info{")) {
      s.target[label(line, "probe")] = label(line, "target");
    } else if (line.starts_with("pes_agent_config_reloads_total{result=\"success\"}")) {
      s.reloads_ok = value;
    } else if (line.starts_with("pes_agent_config_reloads_total{result=\"failure\"}")) {
      s.reloads_failed = value;
    } else if (line.starts_with("pes_agent_config_last_reload_successful ")) {
      s.last_ok = value;
    } else if (line.starts_with("pes_agent_probes_configured ")) {
      s.configured = value;
    }
  }
  return s;
}

int count_of(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class ReloadUnderLoadE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    // Quiet nginx: 200 connections a second would otherwise fill its logs.
    nginx_ = std::make_unique<Fixture>(
        "nginx", FixtureOptions{{"ACCESS_LOG", "0"}, {"ERROR_LOG_LEVEL", "error"}});
  }

  std::string http(const std::string& path) const {
    return "http://127.0.0.1:" + nginx_->get("PORT") + path;
  }

  // The configuration of generation `gen`: 1,000 probes, every tenth unchanged one an http probe,
  // the rest tcp connects; `defect` (1-5) makes it invalid in one of five ways.
  std::string config(int gen, int defect = 0) const {
    const std::string tcp = "127.0.0.1:" + nginx_->get("PORT");
    std::string y = "global: {interval: 5s, timeout: 2s, failure_threshold: 2}\nprobes:\n";
    if (defect == 1) y += "  - name: [unclosed\n";
    y.reserve(100 * 1024);
    for (int i = 0; i < kUnchanged; ++i) {
      if (i % 10 == 0)
        y += "  - {name: " + unchanged_name(i) + ", type: http, http: {url: \"" +
             http("/ok?u=" + std::to_string(i)) + "\"}}\n";
      else
        y += "  - {name: " + unchanged_name(i) + ", type: tcp, tcp: {address: \"" + tcp + "\"}}\n";
    }
    for (int i = 0; i < kChanged; ++i)
      y += "  - {name: " + changed_name(i) + ", type: http, http: {url: \"" +
           http("/ok?gen=" + std::to_string(gen)) + "\"}}\n";
    for (int i = 0; i < kChurn; ++i)
      y += "  - {name: " + churn_name(gen, i) + ", type: tcp, tcp: {address: \"" + tcp + "\"}}\n";
    switch (defect) {
      case 2:
        y += "  - {name: bad, type: nosuch, nosuch: {}}\n";
        break;
      case 3:
        y += "  - {name: u000, type: tcp, tcp: {address: \"" + tcp + "\"}}\n";
        break;
      case 4:
        y += "  - {name: bad, type: tcp, timeout: 9s, tcp: {address: \"" + tcp + "\"}}\n";
        break;
      case 5:
        y += "  - {name: bad, type: tcp, depends_on: [nowhere], tcp: {address: \"" + tcp + "\"}}\n";
        break;
      default:
        break;
    }
    return y;
  }

  std::set<std::string> names(int gen) const {
    std::set<std::string> s;
    for (int i = 0; i < kUnchanged; ++i) s.insert(unchanged_name(i));
    for (int i = 0; i < kChanged; ++i) s.insert(changed_name(i));
    for (int i = 0; i < kChurn; ++i) s.insert(churn_name(gen, i));
    return s;
  }

  static int open_fds(pid_t pid) {
    int n = 0;
    for (const auto& e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
      (void)e;
      ++n;
    }
    return n;
  }
  static int threads(pid_t pid) {
    std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
    std::string line;
    while (std::getline(in, line))
      if (line.starts_with("Threads:")) return std::stoi(line.substr(8));
    return -1;
  }
  // The floor of 10 descriptor counts 100 ms apart: runs in flight hold sockets for a moment, a
  // leaked descriptor stays.
  static int fd_floor(pid_t pid) {
    int least = open_fds(pid);
    for (int i = 1; i < 10; ++i) {
      std::this_thread::sleep_for(100ms);
      least = std::min(least, open_fds(pid));
    }
    return least;
  }

  std::unique_ptr<Fixture> nginx_;
  TempDir dir_{"pes-reload-load-"};
};

}  // namespace

TEST_F(ReloadUnderLoadE2E, HundredReloadsWhileThousandProbesRun) {
  const auto test_start = std::chrono::steady_clock::now();
  const std::string file = dir_.file("agent.yml");
  write_file(file, config(0));
  AgentProcess agent(file);

  // Warm-up: every probe has run at least once (5 s interval, first runs spread over it).
  Scrape first;
  const auto warm_deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    first = parse(agent.metrics());
    const bool all_ran =
        first.runs.size() == 1000 && std::all_of(first.runs.begin(), first.runs.end(),
                                                 [](const auto& r) { return r.second >= 1; });
    if (all_ran) break;
    ASSERT_LT(std::chrono::steady_clock::now(), warm_deadline)
        << "not every probe ran within 30 s: " << first.runs.size() << " probes in /metrics";
    std::this_thread::sleep_for(250ms);
  }
  ASSERT_EQ(first.configured, 1000);
  const int fds_before = fd_floor(agent.pid());
  const int threads_before = threads(agent.pid());

  int good_gen = 0;
  double ok_expected = 0, failed_expected = 0;
  bool last_ok = true;
  Scrape prev = first;
  int scrapes = 0;
  int log_results = count_of(agent.log(), "configuration reloaded: ") +
                    count_of(agent.log(), "configuration reload failed");
  for (int k = 1; k <= kReloads; ++k) {
    // Defects cycle through: YAML syntax, unknown type, duplicate name, timeout above the
    // interval, depends_on naming no probe.
    const bool bad = broken(k);
    const int defect = bad ? (k / 5) % 5 + 1 : 0;
    write_file(file, config(k, defect));
    if (by_post(k)) {
      auto r = http_post(agent.url("/-/reload"));
      if (bad) {
        ASSERT_EQ(r.status, 500) << "reload " << k << " (defect " << defect << "): " << r.body;
        EXPECT_NE(r.body.find("agent.yml:"), std::string::npos) << r.body;
      } else {
        ASSERT_EQ(r.status, 200) << "reload " << k << ": " << r.body << r.error;
      }
      ++log_results;
    } else {
      agent.signal(SIGHUP);
      // The agent logs each reload's result once the new set is in place (or refused).
      std::string log;
      const auto deadline = std::chrono::steady_clock::now() + 10s;
      for (;;) {
        log = agent.log();
        if (count_of(log, "configuration reloaded: ") +
                count_of(log, "configuration reload failed") >
            log_results)
          break;
        ASSERT_LT(std::chrono::steady_clock::now(), deadline)
            << "reload " << k << " by SIGHUP: no result logged in 10 s\n"
            << log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
        std::this_thread::sleep_for(10ms);
      }
      ++log_results;
      const size_t last_good = log.rfind("configuration reloaded: ");
      const size_t last_bad = log.rfind("configuration reload failed");
      const bool said_ok =
          last_good != std::string::npos && (last_bad == std::string::npos || last_good > last_bad);
      ASSERT_EQ(said_ok, !bad) << "reload " << k << " by SIGHUP (defect " << defect << ")";
      if (!bad) {
        EXPECT_EQ(log.compare(last_good, 35, "configuration reloaded: 1000 probes"), 0);
      }
    }
    if (bad) {
      ++failed_expected;
      last_ok = false;
    } else {
      ++ok_expected;
      last_ok = true;
      good_gen = k;
    }

    // Every fourth reload and after each refused one: what /metrics says.
    if (k % 4 != 0 && !bad) continue;
    ++scrapes;
    Scrape now = parse(agent.metrics());
    EXPECT_EQ(now.reloads_ok, ok_expected) << "after reload " << k;
    EXPECT_EQ(now.reloads_failed, failed_expected) << "after reload " << k;
    EXPECT_EQ(now.last_ok, last_ok ? 1 : 0) << "after reload " << k;
    EXPECT_EQ(now.configured, 1000) << "after reload " << k;
    // Exactly the probes of the configuration in force: removed ones vanished, added ones appear.
    std::set<std::string> seen;
    for (const auto& [name, runs] : now.runs) seen.insert(name);
    ASSERT_EQ(seen, names(good_gen))
        << "after reload " << k << " (configuration " << good_gen << " in force)";
    for (int i = 0; i < kChanged; ++i)
      EXPECT_EQ(now.target[changed_name(i)], http("/ok?gen=" + std::to_string(good_gen)))
          << "after reload " << k;
    // No lost counters: a probe kept by name (unchanged or changed) never counts fewer runs.
    int decreased = 0;
    std::string example;
    for (const auto& [name, runs] : now.runs) {
      auto it = prev.runs.find(name);
      if (it != prev.runs.end() && runs < it->second) {
        if (++decreased == 1)
          example = name + ": " + std::to_string(it->second) + " -> " + std::to_string(runs);
      }
    }
    EXPECT_EQ(decreased, 0) << "probe_runs_total went down after reload " << k << ", e.g. "
                            << example;
    prev = std::move(now);
  }
  EXPECT_GE(scrapes, 25);
  EXPECT_TRUE(agent.running()) << agent.log();
  EXPECT_EQ(agent.get("/-/healthy").status, 200);

  // The unchanged probes kept running through the reloads: each counts more runs than before the
  // first reload (each runs every 5 s; wait for the slowest, with a deadline).
  Scrape last;
  int stuck = 0;
  std::string stuck_example;
  const auto run_deadline = std::chrono::steady_clock::now() + 15s;
  for (;;) {
    last = parse(agent.metrics());
    stuck = 0;
    for (int i = 0; i < kUnchanged; ++i) {
      const std::string n = unchanged_name(i);
      if (last.runs[n] <= first.runs[n]) {
        if (++stuck == 1) stuck_example = n;
      }
    }
    if (stuck == 0 || std::chrono::steady_clock::now() > run_deadline) break;
    std::this_thread::sleep_for(500ms);
  }
  EXPECT_EQ(stuck, 0) << "unchanged probes that did not run after the reloads, e.g. "
                      << stuck_example;
  EXPECT_EQ(last.reloads_ok, kReloads - 10);
  EXPECT_EQ(last.reloads_failed, 10);
  EXPECT_EQ(last.last_ok, 1);

  // No leaked handles: descriptors and threads back to where they were before the reloads.
  const int fds_after = fd_floor(agent.pid());
  const int threads_after = threads(agent.pid());
  EXPECT_LE(fds_after, fds_before + kFdTolerance)
      << "descriptors before the reloads " << fds_before << ", after " << fds_after;
  EXPECT_EQ(threads_after, threads_before);
  std::printf(
      "reload under load: %d reloads (%d refused), %d scrapes; fds %d -> %d, threads %d -> "
      "%d; %.1f s\n",
      kReloads, 10, scrapes, fds_before, fds_after, threads_before, threads_after,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - test_start).count());
  EXPECT_EQ(agent.stop(), 0) << agent.log();
}
