#include "agent/app/agent.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <sstream>

#include "agent/engine/clock.h"
#include "agent/web/gzip.h"
#include "agent/web/status.h"
#include "pes_version.h"
#include "probes/registry.h"

namespace pes {

namespace {
// One of the at most `limit` ad hoc runs in flight, held for the run's duration.
class ProbeSlot {
 public:
  ProbeSlot(std::atomic<int>& in_flight, int limit) : in_flight_(in_flight) {
    int n = in_flight_.load();
    while (n < limit && !in_flight_.compare_exchange_weak(n, n + 1)) {
    }
    taken_ = n < limit;
  }
  ~ProbeSlot() {
    if (taken_) --in_flight_;
  }
  ProbeSlot(const ProbeSlot&) = delete;
  ProbeSlot& operator=(const ProbeSlot&) = delete;
  bool taken() const { return taken_; }

 private:
  std::atomic<int>& in_flight_;
  bool taken_ = false;
};
}  // namespace

Agent::Agent(AgentOptions options)
    : options_(std::move(options)),
      engine_(EngineOptions{.workers = 16, .seed = std::random_device{}(), .registry = &registry_}),
      probes_exposition_(engine_),
      reload_ok_(prometheus::BuildGauge()
                     .Name("pes_agent_config_last_reload_successful")
                     .Help("Whether the last configuration reload attempt was successful.")
                     .Register(registry_)
                     .Add({})),
      reload_time_(prometheus::BuildGauge()
                       .Name("pes_agent_config_last_reload_success_timestamp_seconds")
                       .Help("Unix time of the last successful configuration reload.")
                       .Register(registry_)
                       .Add({})),
      reloads_(prometheus::BuildCounter()
                   .Name("pes_agent_config_reloads_total")
                   .Help("Configuration reload attempts by result.")
                   .Register(registry_)) {
  prometheus::BuildGauge()
      .Name("pes_agent_build_info")
      .Help("Constant 1 with the agent's version.")
      .Register(registry_)
      .Add({{"version", PES_VERSION}})
      .Set(1);
  reloads_.Add({{"result", "success"}});
  reloads_.Add({{"result", "failure"}});

  web_.route("/metrics", [this](const WebRequest& req) {
    WebResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_text();
    // Compressed only when asked; caches must keep the two forms apart.
    r.headers.emplace_back("Vary", "Accept-Encoding");
    if (accepts_gzip(req.header("accept-encoding"))) {
      r.body = gzip_compress(r.body);
      r.headers.emplace_back("Content-Encoding", "gzip");
    }
    malloc_trim(0);  // hand the scrape's temporaries back (bench/README.md, RSS)
    return r;
  });
  // Answered on the listener's I/O thread: they must stay fast while scrapes and probes run.
  web_.route(
      "/-/healthy",
      [](const WebRequest&) {
        return WebResponse{200, "text/plain", "Healthy.\n", {}};
      },
      Dispatch::io_thread);
  web_.route(
      "/-/ready",
      [this](const WebRequest&) {
        return engine_.ready()
                   ? WebResponse{200, "text/plain", "Ready.\n", {}}
                   : WebResponse{
                         503, "text/plain", "Not ready: no configuration loaded yet.\n", {}};
      },
      Dispatch::io_thread);
  web_.route("/-/reload", [this](const WebRequest& req) {
    if (req.method != "POST" && req.method != "PUT")
      return WebResponse{
          405, "text/plain", "Use POST to reload the configuration.\n", {{"Allow", "POST"}}};
    std::string err = reload();
    return err.empty() ? WebResponse{200, "text/plain", "Configuration reloaded.\n", {}}
                       : WebResponse{500,
                                     "text/plain",
                                     "Reload failed; the previous configuration keeps running:\n" +
                                         err + "\n",
                                     {}};
  });
  web_.route("/probe", [this](const WebRequest& req) { return handle_probe(req); });
  web_.route("/api/v1/status", [this](const WebRequest&) {
    return WebResponse{200, "application/json", status_json(), {}};
  });
  web_.route("/", [this](const WebRequest&) {
    return WebResponse{200, "text/html; charset=utf-8", status_html(), {}};
  });
}

Agent::~Agent() { stop(); }

void Agent::start() {
  auto cfg = load_placed();
  engine_.apply(cfg);
  export_fleet(*cfg);
  reload_ok_.Set(1);
  reload_time_.Set(SystemClock::shared()->unix_now());
  engine_.start();
  max_probe_requests_ = cfg->web.max_probe_requests;
  web_.start(options_.listen_address, cfg->web);
  started_ = true;
  spdlog::info("pes-agent {} listening on {} with {} probes from {}", PES_VERSION,
               options_.listen_address, cfg->probes.size(), options_.config_file);
}

std::string Agent::reload() {
  std::lock_guard lock(reload_mu_);
  try {
    auto cfg = load_placed();
    engine_.apply(cfg);
    export_fleet(*cfg);
    web_.set_users(cfg->web.basic_auth_users);
    reload_ok_.Set(1);
    reload_time_.Set(SystemClock::shared()->unix_now());
    reloads_.Add({{"result", "success"}}).Increment();
    spdlog::info("configuration reloaded: {} probes", cfg->probes.size());
    return "";
  } catch (const ConfigError& e) {
    reload_ok_.Set(0);
    reloads_.Add({{"result", "failure"}}).Increment();
    spdlog::error("configuration reload failed, keeping the previous configuration:\n{}", e.what());
    return e.what();
  } catch (const std::exception& e) {
    reload_ok_.Set(0);
    reloads_.Add({{"result", "failure"}}).Increment();
    spdlog::error("configuration reload failed, keeping the previous configuration: {}", e.what());
    return e.what();
  }
}

void Agent::stop() {
  if (!started_.exchange(false)) return;
  web_.stop();
  engine_.stop();
}

std::string Agent::metrics_text() const {
  std::string out;
  probes_exposition_.render(out);
  out += render_text({&registry_, &process_collector_});
  return out;
}

std::shared_ptr<const Config> Agent::load_placed() {
  auto full = load_config(options_.config_file, probe_types());
  if (!full->fleet.enabled) {
    std::lock_guard lock(fleet_mu_);
    fleet_.reset();
    return full;
  }
  auto fv = std::make_shared<FleetView>();
  fv->fleet = full->fleet;
  fv->placement = compute_placement(*full);
  fv->agent = options_.agent_name;
  auto mine = apply_placement(full, fv->placement, options_.agent_name);
  std::lock_guard lock(fleet_mu_);
  fleet_ = std::move(fv);
  return mine;
}

void Agent::export_fleet(const Config& cfg) {
  if (!cfg.fleet.enabled) return;
  const FleetMember* self = cfg.fleet.find(options_.agent_name);
  auto& info = prometheus::BuildGauge()
                   .Name("pes_agent_fleet_member_info")
                   .Help("Constant 1: this agent's fleet member name and location.")
                   .Register(registry_);
  auto& quorum = prometheus::BuildGauge()
                     .Name("pes_agent_fleet_quorum")
                     .Help("Replicas of a probe that must agree before it pages (fleet.quorum).")
                     .Register(registry_);
  auto& quorum_locations =
      prometheus::BuildGauge()
          .Name("pes_agent_fleet_quorum_locations")
          .Help(
              "Locations whose replicas must agree before a probe pages (fleet.quorum_locations).")
          .Register(registry_);
  auto& replicas = prometheus::BuildGauge()
                       .Name("pes_agent_fleet_replicas")
                       .Help("Members that run each probe, per location (fleet.replicas).")
                       .Register(registry_);
  info.Add({{"member", self->name}, {"member_location", self->location}}).Set(1);
  quorum.Add({}).Set(cfg.fleet.quorum);
  quorum_locations.Add({}).Set(cfg.fleet.quorum_locations);
  replicas.Add({}).Set(cfg.fleet.replicas);
}

std::string Agent::status_json() const {
  std::string doc = render_status_json(engine_.view(), engine_.ready(), engine_.clock().unix_now());
  std::shared_ptr<const FleetView> fv;
  {
    std::lock_guard lock(fleet_mu_);
    fv = fleet_;
  }
  if (!fv) return doc;
  auto j = nlohmann::json::parse(doc);
  j["fleet"] = render_fleet_json(*fv);
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string Agent::status_html() const {
  std::string page =
      render_status_html(engine_.view(), engine_.ready(), engine_.clock().unix_now());
  std::shared_ptr<const FleetView> fv;
  {
    std::lock_guard lock(fleet_mu_);
    fv = fleet_;
  }
  size_t at = page.rfind("<p class=\"meta\">Page refreshes");
  if (!fv || at == std::string::npos) return page;
  return page.insert(at, render_fleet_html(*fv));
}

WebResponse Agent::handle_probe(const WebRequest& req) {
  auto it = req.query.find("name");
  if (it == req.query.end() || it->second.empty())
    return WebResponse{400, "text/plain", "Missing ?name= (a configured probe name).\n", {}};
  bool debug = req.query.count("debug") && req.query.at("debug") == "true";
  auto view = engine_.view();
  const ProbeConfig* pc = view.config ? view.config->find(it->second) : nullptr;
  if (!pc)
    return WebResponse{
        404, "text/plain", "No probe named \"" + it->second + "\" is configured.\n", {}};
  // A slot only for a name that exists: an unknown one costs nothing and is never refused.
  ProbeSlot slot(probe_requests_in_flight_, max_probe_requests_);
  if (!slot.taken()) {
    auto seconds = std::chrono::ceil<std::chrono::seconds>(pc->timeout).count();
    return WebResponse{429,
                       "text/plain",
                       "Too many /probe runs in flight (web.max_probe_requests: " +
                           std::to_string(max_probe_requests_) + "); retry later.\n",
                       {{"Retry-After", std::to_string(std::max<long>(1, seconds))}}};
  }
  auto result = engine_.run_now(it->second, debug);
  std::string metrics = render_run(*pc, *view.config, result.outcome, result.duration);
  if (!debug) return WebResponse{200, "text/plain; version=0.0.4; charset=utf-8", metrics, {}};
  std::ostringstream out;
  out << "Logs for the probe:\n" << result.trace;
  out << (result.outcome.ok ? "Probe succeeded" : "Probe failed") << " in " << result.duration
      << "s";
  if (!result.outcome.ok)
    out << ": " << reason_name(result.outcome.reason) << ": " << result.outcome.message;
  out << "\n\nMetrics that would have been returned:\n" << metrics;
  std::string body = view.config->redactor ? view.config->redactor->redact(out.str()) : out.str();
  return WebResponse{200, "text/plain; charset=utf-8", body, {}};
}

}  // namespace pes
