#include "agent/app/cli.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>
#include <nlohmann/json.hpp>

#include "agent/app/agent.h"
#include "agent/core/log.h"
#include "pes_version.h"
#include "probes/registry.h"

namespace pes {

namespace {

constexpr int kNagiosOk = 0;
constexpr int kNagiosCritical = 2;
constexpr int kNagiosUnknown = 3;

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

int check_config(const std::string& file) {
  try {
    auto cfg = load_config(file, probe_types());
    std::cout << file << ": OK, " << cfg->probes.size() << " probe"
              << (cfg->probes.size() == 1 ? "" : "s") << "\n";
    return 0;
  } catch (const ConfigError& e) {
    for (const auto& issue : e.issues()) std::cerr << issue.str() << "\n";
    std::cerr << file << ": " << e.issues().size() << " error"
              << (e.issues().size() == 1 ? "" : "s") << "\n";
    return 1;
  }
}

int probe_once(const std::string& file, const std::string& name, const std::string& format) {
  std::shared_ptr<const Config> cfg;
  try {
    cfg = load_config(file, probe_types());
  } catch (const ConfigError& e) {
    std::cerr << e.what() << "\n";
    return kNagiosUnknown;
  }
  const ProbeConfig* pc = cfg->find(name);
  if (!pc) {
    std::cerr << "no probe named \"" << name << "\" in " << file << "\n";
    return kNagiosUnknown;
  }
  EngineOptions opts;
  opts.schedule = false;
  Engine engine(opts);
  engine.apply(cfg);
  engine.start();
  // The SSO chain: get the tokens this probe needs first.
  for (const auto& source : pc->probe->token_sources()) {
    auto r = engine.run_now(source, false);
    if (!r.outcome.ok)
      spdlog::warn("token source {} failed: {}: {}", source, reason_name(r.outcome.reason),
                   r.outcome.message);
  }
  auto result = engine.run_now(name, false);
  engine.stop();
  const Outcome& o = result.outcome;
  if (format == "prometheus") {
    std::cout << render_run(*pc, *cfg, o, result.duration);
  } else if (format == "json") {
    nlohmann::json j;
    j["probe"] = pc->name;
    j["service"] = pc->service;
    j["type"] = pc->type;
    j["target"] = pc->target;
    j["success"] = o.ok;
    j["reason"] = std::string(reason_name(o.reason));
    j["message"] = o.message;
    j["duration_seconds"] = result.duration;
    auto& m = j["metrics"] = nlohmann::json::array();
    for (const auto& s : o.samples) {
      nlohmann::json labels = nlohmann::json::object();
      for (const auto& [k, v] : s.labels) labels[k] = v;
      m.push_back({{"name", s.name}, {"labels", labels}, {"value", s.value}});
    }
    std::cout << j.dump(2) << "\n";
  } else {
    char dur[32];
    std::snprintf(dur, sizeof dur, "%.3fs", result.duration);
    if (o.ok) {
      std::cout << "OK - " << pc->name << " (" << pc->type << ") " << pc->target << " in " << dur;
    } else {
      std::cout << "CRITICAL - " << pc->name << " (" << pc->type << ") " << pc->target << ": "
                << reason_name(o.reason) << ": " << o.message;
    }
    std::cout << " | duration=" << dur << "\n";
  }
  return o.ok ? kNagiosOk : kNagiosCritical;
}

int run_agent(const AgentOptions& options) {
  // Signals are taken by one thread with sigwait; block them before any other thread starts.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Agent agent(options);
  try {
    agent.start();
  } catch (const ConfigError& e) {
    spdlog::error("cannot load the configuration:\n{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::error("cannot start: {}", e.what());
    return 1;
  }
  while (true) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      spdlog::info("SIGHUP: reloading the configuration");
      agent.reload();
      continue;
    }
    spdlog::info("signal {}: stopping (in-flight probes may finish)", sig);
    break;
  }
  agent.stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{
      "pes-agent: health checks for the PES collaboration platform, exported to Prometheus"};
  app.set_version_flag("--version", std::string("pes-agent ") + PES_VERSION);
  AgentOptions options;
  std::string log_level = "info";
  std::string log_format = "text";
  app.add_option("--config.file", options.config_file, "Configuration file")->capture_default_str();
  app.add_option("--web.listen-address", options.listen_address, "Address to listen on (HOST:PORT)")
      ->capture_default_str();
  options.agent_name = host_name();
  app.add_option("--agent.name", options.agent_name,
                 "This agent's name in the fleet: section (default: the host name)")
      ->capture_default_str();
  app.add_option("--log.level", log_level, "debug, info, warn or error")->capture_default_str();
  app.add_option("--log.format", log_format, "text or json")->capture_default_str();

  std::string check_file;
  auto* check =
      app.add_subcommand("check-config", "Validate a configuration file, print every error");
  check->add_option("file", check_file, "Configuration file")->required();

  std::string probe_name;
  std::string probe_format = "text";
  auto* probe = app.add_subcommand(
      "probe", "Run one configured probe once (exit 0 ok, 2 failed, 3 could not run)");
  probe->add_option("name", probe_name, "Probe name")->required();
  probe->add_option("--format", probe_format, "text, prometheus or json")
      ->check(CLI::IsMember({"text", "prometheus", "json"}));
  probe->add_option("--config.file", options.config_file, "Configuration file");
  app.require_subcommand(0, 1);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return *probe ? kNagiosUnknown : (code == 0 ? 0 : 1);
  }
  std::string err;
  if (!setup_logging(log_level, log_format, &err)) {
    std::cerr << err << "\n";
    return *probe ? kNagiosUnknown : 1;
  }
  if (*check) return check_config(check_file);
  if (*probe) return probe_once(options.config_file, probe_name, probe_format);
  return run_agent(options);
}

}  // namespace pes
