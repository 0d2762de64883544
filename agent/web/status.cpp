#include "agent/web/status.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>

#include "agent/core/duration.h"
#include "agent/engine/states.h"

namespace pes {

namespace {

// One probe as the page shows it: its configuration and a full snapshot of its state.
struct Row {
  const ProbeConfig* cfg;
  ProbeSnapshot s;
};

// Every probe's row and the states derived from all of them together (derive_states).
struct Page {
  std::vector<Row> rows;
  std::vector<DerivedState> derived;
  bool connectivity = true;
  std::vector<std::string> takes_down(size_t i) const {
    std::vector<std::string> names;
    for (size_t d : derived[i].takes_down) names.push_back(rows[d].cfg->name);
    return names;
  }
  std::string word(size_t i) const { return std::string(state_name(rows[i].s, derived[i])); }
};

Page page(const Engine::View& view, double now_unix) {
  Page p;
  p.rows.reserve(view.probes.size());
  for (const auto& rt : view.probes)
    p.rows.push_back(Row{&rt->cfg, rt->state.snapshot(ProbeState::Detail::full)});
  std::vector<ProbeView> views;
  views.reserve(p.rows.size());
  for (const auto& r : p.rows) views.push_back(ProbeView{r.cfg, &r.s});
  p.derived = derive_states(views, now_unix);
  p.connectivity = connectivity_up(views);
  return p;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// The dependencies of a down probe that are down themselves: the likely root cause.
std::vector<std::string> down_dependencies(const Row& r,
                                           const std::map<std::string, const Row*>& by) {
  std::vector<std::string> out;
  for (const auto& d : r.cfg->depends_on) {
    auto it = by.find(d);
    if (it != by.end() && it->second->s.up && !*it->second->s.up) out.push_back(d);
  }
  return out;
}

std::string iso_time(double unix_seconds) {
  if (unix_seconds <= 0) return "";
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string ago(double unix_seconds, double now) {
  if (unix_seconds <= 0) return "never";
  double d = now - unix_seconds;
  char buf[64];
  if (d < 90)
    std::snprintf(buf, sizeof buf, "%.0f s ago", d < 0 ? 0 : d);
  else if (d < 5400)
    std::snprintf(buf, sizeof buf, "%.0f min ago", d / 60);
  else if (d < 172800)
    std::snprintf(buf, sizeof buf, "%.1f h ago", d / 3600);
  else
    std::snprintf(buf, sizeof buf, "%.0f days ago", d / 86400);
  return buf;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace

std::string render_status_json(const Engine::View& view, bool ready, double now_unix) {
  const Page pg = page(view, now_unix);
  const auto& snaps = pg.rows;
  std::map<std::string, const Row*> by;
  for (const auto& r : snaps) by[r.cfg->name] = &r;
  nlohmann::json doc;
  doc["ready"] = ready;
  doc["config_file"] = view.config ? view.config->file : "";
  doc["connectivity_up"] = pg.connectivity;
  auto& list = doc["probes"] = nlohmann::json::array();
  for (size_t i = 0; i < snaps.size(); ++i) {
    const Row& row = snaps[i];
    const ProbeSnapshot& s = row.s;
    const DerivedState& d = pg.derived[i];
    nlohmann::json p;
    p["name"] = row.cfg->name;
    p["service"] = row.cfg->service;
    p["type"] = row.cfg->type;
    p["target"] = row.cfg->target;
    p["depends_on"] = row.cfg->depends_on;
    p["state"] = pg.word(i);
    p["unknown"] = d.unknown;
    p["maintenance"] = d.maintenance;
    p["degraded"] = d.degraded;
    p["root_cause"] = d.root_cause;
    p["takes_down"] = pg.takes_down(i);
    p["last_success"] = s.has_run ? nlohmann::json(s.last_ok) : nlohmann::json(nullptr);
    p["last_reason"] = std::string(reason_name(s.last_reason));
    p["last_message"] = s.last_message;
    p["last_error"] = s.last_error;
    p["last_failure_reason"] = std::string(reason_name(s.last_failure_reason));
    p["last_failure"] = iso_time(s.last_failure_unix);
    p["last_run"] = iso_time(s.last_end_unix);
    p["last_change"] = iso_time(s.last_change_unix);
    p["duration_seconds"] = s.last_duration;
    p["runs"] = {{"success", s.runs_ok},
                 {"failure", s.runs_failed},
                 {"unknown", s.runs_unknown},
                 {"maintenance", s.runs_maintenance}};
    p["down_because"] = down_dependencies(row, by);
    auto& h = p["history"] = nlohmann::json::array();
    for (const auto& r : s.history)
      h.push_back({{"success", r.ok},
                   {"result", std::string(result_name(r.result))},
                   {"reason", std::string(reason_name(r.reason))},
                   {"duration_seconds", r.duration},
                   {"time", iso_time(r.end_unix)}});
    list.push_back(std::move(p));
  }
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string render_status_html(const Engine::View& view, bool ready, double now_unix) {
  const Page pg = page(view, now_unix);
  const auto& snaps = pg.rows;
  std::map<std::string, const Row*> by;
  std::map<const Row*, size_t> index;
  for (size_t i = 0; i < snaps.size(); ++i) {
    by[snaps[i].cfg->name] = &snaps[i];
    index[&snaps[i]] = i;
  }
  std::map<std::string, std::vector<const Row*>> services;
  int down = 0, unknown = 0;
  for (const auto& r : snaps) {
    services[r.cfg->service].push_back(&r);
    if (!r.s.up)
      ++unknown;
    else if (!*r.s.up)
      ++down;
  }
  const double now = now_unix;
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
       "<meta http-equiv=\"refresh\" content=\"15\"><title>";
  h += down ? std::to_string(down) + " down - pes-agent" : "All up - pes-agent";
  h += "</title><style>"
       "body{font-family:system-ui,sans-serif;margin:0;padding:1rem;background:#f6f7f9;color:#111;"
       "font-size:17px}"
       "h1{font-size:1.4rem;margin:0 0 .5rem}h2{font-size:1.1rem;margin:1.2rem 0 .4rem}"
       ".sum{padding:.8rem;border-radius:.5rem;font-weight:600;margin-bottom:1rem}"
       ".sum.ok{background:#d9f2de;color:#0b5a1c}.sum.bad{background:#fde0df;color:#8a1111}"
       ".p{background:#fff;border-radius:.5rem;padding:.7rem .8rem;margin:.4rem "
       "0;border-left:.5rem solid #999}"
       ".p.up{border-color:#1f9d3a}.p.down{border-color:#d0231b}.p.unknown{border-color:#999}"
       ".p.maintenance{border-color:#2b6cb0}.p.degraded{border-color:#d69e2e}"
       ".maintenance .st{color:#2b6cb0}.degraded .st{color:#975a16}"
       ".blast{background:#fde0df;padding:.2rem .4rem;border-radius:.3rem;margin-top:.3rem}"
       ".st{font-weight:700;text-transform:uppercase;margin-right:.4rem}.up .st{color:#1f7a33}"
       ".down .st{color:#b31d16}.unknown .st{color:#555}.name{font-weight:600}"
       ".meta{color:#444;font-size:.9rem;margin-top:.25rem}.err{color:#8a1111;margin-top:.3rem}"
       ".why{background:#fff4d6;padding:.2rem .4rem;border-radius:.3rem;margin-top:.3rem}"
       ".hist{margin-top:.35rem;font-family:monospace;letter-spacing:1px}.hist "
       ".g{color:#1f9d3a}.hist .r{color:#d0231b}"
       "</style></head><body>\n<h1>pes-agent status</h1>\n";
  if (ready && !pg.connectivity)
    h += "<div class=\"sum bad\">The agent cannot see the platform: its connectivity checks fail, "
         "so other probes' failures are recorded as unknown.</div>\n";
  if (!ready)
    h += "<div class=\"sum bad\">Agent is starting: no configuration loaded yet.</div>\n";
  else if (down)
    h += "<div class=\"sum bad\">" + std::to_string(down) + " of " + std::to_string(snaps.size()) +
         " probes DOWN</div>\n";
  else
    h += "<div class=\"sum ok\">All " + std::to_string(snaps.size() - unknown) + " probes up" +
         (unknown ? " (" + std::to_string(unknown) + " not run yet)" : "") + "</div>\n";
  for (const auto& [service, list] : services) {
    h += "<section><h2>" + html_escape(service) + "</h2>\n";
    for (const auto* row : list) {
      const ProbeSnapshot* s = &row->s;
      const ProbeConfig* c = row->cfg;
      const size_t i = index.at(row);
      const DerivedState& d = pg.derived[i];
      std::string st = pg.word(i);
      h += "<div class=\"p " + st + "\" id=\"probe-" + html_escape(c->name) +
           "\"><span class=\"st\">" + st + "</span><span class=\"name\">" + html_escape(c->name) +
           "</span> <small>(" + html_escape(c->type) + ")</small>";
      h += "<div class=\"meta\">" + html_escape(c->target) + "</div>";
      if (s->has_run && !s->last_ok)
        h += "<div class=\"err\">Last run failed (" + std::string(reason_name(s->last_reason)) +
             "): " + html_escape(s->last_message) + "</div>";
      else if (!s->last_error.empty())
        h += "<div class=\"meta\">Last error " + ago(s->last_failure_unix, now) + " (" +
             std::string(reason_name(s->last_failure_reason)) + "): " + html_escape(s->last_error) +
             "</div>";
      if (d.unknown)
        h += "<div class=\"why\">Unknown: the last run failed while the agent's connectivity "
             "checks failed, so it does not count</div>";
      if (d.maintenance) h += "<div class=\"why\">In maintenance: failures do not count</div>";
      if (d.degraded)
        h += "<div class=\"why\">Degraded: up, but slower than " +
             (c->degraded_above ? format_duration(*c->degraded_above) : std::string("its bound")) +
             "</div>";
      if (d.root_cause && !d.takes_down.empty())
        h += "<div class=\"blast\">Root cause; takes down: " +
             html_escape(joined(pg.takes_down(i))) + "</div>";
      else if (d.root_cause)
        h += "<div class=\"blast\">Root cause</div>";
      auto because = down_dependencies(*row, by);
      if (s->up && !*s->up && !because.empty()) {
        std::string names;
        for (const auto& b : because) names += (names.empty() ? "" : ", ") + b;
        h += "<div class=\"why\">Down because " + html_escape(names) +
             (because.size() > 1 ? " are" : " is") + " down</div>";
      }
      char dur[32];
      std::snprintf(dur, sizeof dur, "%.3f s", s->last_duration);
      h += "<div class=\"meta\">State since " + ago(s->last_change_unix, now) + " · last run " +
           ago(s->last_end_unix, now) + " · took " + dur + "</div>";
      if (!s->history.empty()) {
        h += "<div class=\"hist\" title=\"last runs, oldest first\">";
        for (const auto& r : s->history)
          h += r.ok                             ? "<span class=\"g\">●</span>"
               : r.result == RunResult::failure ? "<span class=\"r\">✕</span>"
                                                : "<span class=\"u\">?</span>";
        h += "</div>";
      }
      h += "</div>\n";
    }
    h += "</section>\n";
  }
  h += "<p class=\"meta\">Page refreshes every 15 s · <a href=\"/metrics\">metrics</a> · "
       "<a href=\"/api/v1/status\">JSON</a></p></body></html>\n";
  return h;
}

}  // namespace pes
