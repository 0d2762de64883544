// The agent's configuration: global defaults, the web listener, and the list of probes.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agent/config/fleet.h"
#include "agent/config/maintenance.h"
#include "agent/config/parse.h"
#include "agent/core/probe.h"

namespace pes {

struct ProbeConfig {
  std::string name;
  std::string service;
  std::string type;
  std::chrono::milliseconds interval{30000};
  std::chrono::milliseconds timeout{10000};
  int failure_threshold = 3;
  int success_threshold = 1;
  std::vector<std::string> depends_on;
  std::vector<std::string> locations;  // fleet locations it must be checked from (fleet.h)
  // Its own maintenance windows and the global ones that apply to it.
  std::vector<MaintenanceWindow> maintenance;
  // Successful runs slower than this make the probe degraded (probe_degraded); none = never.
  std::optional<std::chrono::milliseconds> degraded_above;
  // How long a failure that may be a restart (connection refused or reset, HTTP 502/503/504) must
  // last before the probe turns down; the confirm retries come a quarter of it apart.
  std::chrono::milliseconds confirm_window{20000};
  // One of the agent's own connectivity checks (connectivity.probes).
  bool connectivity = false;
  std::shared_ptr<Probe> probe;
  std::string target;
  // Hash of every resolved field (including globals that apply): equal means unchanged on reload.
  uint64_t fingerprint = 0;
};

struct WebConfig {
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;  // set: clients must present a certificate signed by it
  std::vector<std::pair<std::string, std::string>> basic_auth_users;  // user -> bcrypt hash
  // Read at start (like TLS): open connections beyond this close the oldest idle one.
  int max_connections = 1024;
  // Ad hoc /probe runs in flight at once; more are answered 429 with Retry-After.
  int max_probe_requests = 4;
};

struct Config {
  std::string file;
  std::chrono::milliseconds interval{30000};
  std::chrono::milliseconds timeout{10000};
  int failure_threshold = 3;
  int success_threshold = 1;
  std::vector<std::pair<std::string, std::string>> labels;
  // Probes that stand for the agent's path to the platform; lost when all of them fail.
  std::vector<std::string> connectivity;
  WebConfig web;
  FleetConfig fleet;
  std::vector<ProbeConfig> probes;
  std::shared_ptr<Redactor> redactor;

  const ProbeConfig* find(const std::string& name) const;
};

// Parses YAML text; `file` names it in errors. Throws ConfigError listing every problem found.
std::shared_ptr<const Config> parse_config(const std::string& text, const std::string& file,
                                           std::span<const ProbeType> types);
// Reads and parses a file. Throws ConfigError (also when the file cannot be read).
std::shared_ptr<const Config> load_config(const std::string& path,
                                          std::span<const ProbeType> types);

}  // namespace pes
