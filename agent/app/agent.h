// The running agent: configuration, engine, reload, self metrics and the web endpoints.
#pragma once

#include <prometheus/registry.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "agent/engine/engine.h"
#include "agent/engine/exposition.h"
#include "agent/web/fleet_status.h"
#include "agent/web/web_server.h"

namespace pes {

struct AgentOptions {
  std::string config_file = "/etc/pes-agent/agent.yml";
  std::string listen_address = "0.0.0.0:9469";
  std::string agent_name;  // --agent.name: this agent's fleet member name (default: hostname)
};

class Agent {
 public:
  explicit Agent(AgentOptions options);
  ~Agent();

  // Loads the configuration, starts the engine and the listener. Throws ConfigError or
  // std::runtime_error (listener) when it cannot start.
  void start();
  // Re-reads the configuration file. A bad file changes nothing; returns the error text ("" = ok).
  std::string reload();
  void stop();

  std::string metrics_text() const;
  std::string status_json() const;
  std::string status_html() const;
  Engine& engine() { return engine_; }

 private:
  WebResponse handle_probe(const WebRequest& req);
  // Loads the file and keeps only what the fleet places on this agent (docs/fleet.md).
  std::shared_ptr<const Config> load_placed();
  void export_fleet(const Config& cfg);

  AgentOptions options_;
  prometheus::Registry registry_;
  Engine engine_;
  ProbeExposition probes_exposition_;
  ProcessCollector process_collector_;
  WebServer web_;
  std::mutex reload_mu_;
  prometheus::Gauge& reload_ok_;
  prometheus::Gauge& reload_time_;
  prometheus::Family<prometheus::Counter>& reloads_;
  std::atomic<bool> started_{false};
  mutable std::mutex fleet_mu_;
  std::shared_ptr<const FleetView> fleet_;  // null without a fleet: section
  // Ad hoc /probe runs: web.max_probe_requests (read at start) and how many run now.
  int max_probe_requests_ = 4;
  std::atomic<int> probe_requests_in_flight_{0};
};

}  // namespace pes
