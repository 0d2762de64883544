#include "agent/config/config.h"

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "agent/core/duration.h"

namespace pes {
namespace {

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}

bool valid_label_name(const std::string& s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9') || s.rfind("__", 0) == 0) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  return true;
}

// The agent's own labels; each probe type adds the labels of its samples (ProbeType).
const std::set<std::string> kReservedLabels = {
    "probe",          "service", "type", "reason",   "result",    "target",
    "depends_on",     "le",      "job",  "instance", "dependent", "dependent_service",
    "dependent_state"};

bool reserved_label(const std::string& name, std::span<const ProbeType> types) {
  if (kReservedLabels.count(name)) return true;
  for (const auto& t : types)
    for (std::string_view l : t.sample_labels)
      if (l == name) return true;
  return false;
}

struct GlobalDefaults {
  std::chrono::milliseconds interval{30000};
  std::chrono::milliseconds timeout{10000};
  int failure_threshold = 3;
  int success_threshold = 1;
  std::optional<std::chrono::milliseconds> degraded_above;
  std::optional<std::chrono::milliseconds> confirm_window;
};

// The confirm window when none is configured: longer than a restart blip (20 s) at the usual
// intervals, and never more than two thirds of the interval, so short test intervals scale.
std::chrono::milliseconds default_confirm_window(std::chrono::milliseconds interval) {
  return std::min<std::chrono::milliseconds>(std::chrono::milliseconds(20000), interval * 2 / 3);
}

// Reads a list of maintenance windows at `key`; with `with_probes`, each may name the probes it
// covers (`probes:`, default all), returned in `names` (empty = all) with its place.
struct GlobalWindow {
  MaintenanceWindow window;
  std::vector<std::string> probes;
  YAML::Mark mark;
  std::string path;
};

std::vector<GlobalWindow> read_windows(Section& parent, const std::string& key, bool with_probes) {
  std::vector<GlobalWindow> out;
  auto list = parent.raw(key);
  if (!list.IsDefined() || list.IsNull()) return out;
  if (!list.IsSequence()) {
    parent.error(key, "must be a list of windows ({weekdays, start, duration, time_zone})");
    return out;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    Section ws(parent.ctx(), list[i], parent.path_of(key) + "[" + std::to_string(i) + "]");
    if (!list[i].IsMap()) {
      parent.ctx().error(list[i].Mark(), ws.path(), "must be a window {start, duration, ...}");
      continue;
    }
    GlobalWindow g;
    if (with_probes) {
      g.probes = ws.str_list("probes");
      if (ws.has("probes")) {
        g.mark = ws.raw("probes").Mark();
        g.path = ws.path_of("probes");
      }
    }
    if (parse_maintenance_window(ws, g.window)) out.push_back(std::move(g));
  }
  return out;
}

bool validate_bound(Section& s, const std::string& key,
                    const std::optional<std::chrono::milliseconds>& v) {
  if (v && *v <= std::chrono::milliseconds(0)) {
    s.error(key, "must be greater than 0");
    return false;
  }
  return true;
}

const ProbeType* find_type(std::span<const ProbeType> types, const std::string& name) {
  for (const auto& t : types)
    if (t.name == name) return &t;
  return nullptr;
}

// `where` maps a probe name to the place of its depends_on list.
void check_cycles(ParseContext& ctx, const Config& cfg,
                  const std::map<std::string, std::pair<YAML::Mark, std::string>>& where) {
  std::map<std::string, const ProbeConfig*> by_name;
  for (const auto& p : cfg.probes) by_name[p.name] = &p;
  std::map<std::string, int> color;  // 0 new, 1 on stack, 2 done
  std::vector<std::string> stack;
  std::set<std::string> reported;
  std::function<void(const std::string&)> visit = [&](const std::string& n) {
    color[n] = 1;
    stack.push_back(n);
    for (const auto& d : by_name[n]->depends_on) {
      if (!by_name.count(d)) continue;
      if (color[d] == 1) {
        std::string cycle;
        auto it = std::find(stack.begin(), stack.end(), d);
        for (; it != stack.end(); ++it) cycle += *it + " -> ";
        cycle += d;
        if (reported.insert(d).second && where.count(n))
          ctx.error(where.at(n).first, where.at(n).second, "dependency cycle: " + cycle);
      } else if (color[d] == 0) {
        visit(d);
      }
    }
    stack.pop_back();
    color[n] = 2;
  };
  for (const auto& p : cfg.probes)
    if (color[p.name] == 0) visit(p.name);
}

// `connectivity: {probes: [...]}` and the global `maintenance:` windows, which name probes: read
// once every probe is known; both are part of the named probes' fingerprints.
void read_platform_sections(Section& top, Config& cfg,
                            const std::map<std::string, YAML::Mark>& marks) {
  std::map<std::string, std::string> extra;  // probe -> what the sections add to its fingerprint
  {
    auto cs = top.sub("connectivity");
    cfg.connectivity = cs.str_list("probes");
    if (cs.present() && !cs.has("probes"))
      cs.error("probes", "required: the probes that stand for the agent's path to the platform");
    for (const auto& name : cfg.connectivity) {
      if (!marks.count(name)) {
        cs.error("probes", "names unknown probe \"" + name + "\"");
        continue;
      }
      extra[name] += "connectivity\n";
    }
  }
  for (auto& g : read_windows(top, "maintenance", true)) {
    for (const auto& name : g.probes)
      if (!marks.count(name))
        top.ctx().error(g.mark, g.path, "names unknown probe \"" + name + "\"");
    for (auto& pc : cfg.probes) {
      if (!g.probes.empty() &&
          std::find(g.probes.begin(), g.probes.end(), pc.name) == g.probes.end())
        continue;
      pc.maintenance.push_back(g.window);
      extra[pc.name] += "window " + g.window.describe() + "\n";
    }
  }
  for (auto& pc : cfg.probes) {
    auto it = extra.find(pc.name);
    if (it == extra.end()) continue;
    pc.connectivity = it->second.find("connectivity\n") != std::string::npos;
    pc.fingerprint = std::hash<std::string>{}(std::to_string(pc.fingerprint) + "\n" + it->second);
  }
}

}  // namespace

const ProbeConfig* Config::find(const std::string& name) const {
  for (const auto& p : probes)
    if (p.name == name) return &p;
  return nullptr;
}

std::shared_ptr<const Config> parse_config(const std::string& text, const std::string& file,
                                           std::span<const ProbeType> types) {
  auto cfg = std::make_shared<Config>();
  cfg->file = file;
  ParseContext ctx(file);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    ctx.error(e.mark, "", "YAML syntax error: " + e.msg);
    throw ConfigError(ctx.issues());
  } catch (const YAML::Exception& e) {
    ctx.error(e.mark, "", "YAML error: " + e.msg);
    throw ConfigError(ctx.issues());
  }
  if (!root.IsDefined() || root.IsNull()) {
    ctx.error(YAML::Mark::null_mark(), "",
              "the configuration is empty (expected `global:` and `probes:`)");
    throw ConfigError(ctx.issues());
  }

  try {
    Section top(ctx, root, "");
    GlobalDefaults g;
    {
      auto gs = top.sub("global");
      if (auto v = gs.duration("interval")) g.interval = *v;
      if (auto v = gs.duration("timeout")) g.timeout = *v;
      if (auto v = gs.integer("failure_threshold", 1, 1000))
        g.failure_threshold = static_cast<int>(*v);
      if (auto v = gs.integer("success_threshold", 1, 1000))
        g.success_threshold = static_cast<int>(*v);
      g.degraded_above = gs.duration("degraded_above");
      g.confirm_window = gs.duration("confirm_window");
      validate_bound(gs, "degraded_above", g.degraded_above);
      validate_bound(gs, "confirm_window", g.confirm_window);
      if (g.interval < std::chrono::milliseconds(100))
        gs.error("interval", "must be at least 100ms");
      if (g.timeout <= std::chrono::milliseconds(0)) gs.error("timeout", "must be greater than 0");
      if (g.timeout > g.interval)
        gs.error("timeout", "timeout " + format_duration(g.timeout) + " is greater than interval " +
                                format_duration(g.interval));
      cfg->labels = gs.str_map("labels");
      for (const auto& [k, v] : cfg->labels) {
        if (!valid_label_name(k))
          gs.error("labels", "invalid label name \"" + k + "\"");
        else if (reserved_label(k, types))
          gs.error("labels", "label name \"" + k + "\" is reserved by the agent");
      }
    }
    cfg->interval = g.interval;
    cfg->timeout = g.timeout;
    cfg->failure_threshold = g.failure_threshold;
    cfg->success_threshold = g.success_threshold;
    std::string global_fp = ctx.take_fingerprint();

    {
      auto ws = top.sub("web");
      cfg->web.tls_cert_file = ws.str_or("tls_cert_file", "");
      cfg->web.tls_key_file = ws.str_or("tls_key_file", "");
      cfg->web.tls_client_ca_file = ws.str_or("tls_client_ca_file", "");
      cfg->web.basic_auth_users = ws.str_map("basic_auth_users");
      if (auto v = ws.integer("max_connections", 16, 1000000))
        cfg->web.max_connections = static_cast<int>(*v);
      if (auto v = ws.integer("max_probe_requests", 1, 1000))
        cfg->web.max_probe_requests = static_cast<int>(*v);
      if (!cfg->web.tls_client_ca_file.empty() && cfg->web.tls_cert_file.empty())
        ws.error("tls_client_ca_file", "needs tls_cert_file and tls_key_file");
      if (cfg->web.tls_cert_file.empty() != cfg->web.tls_key_file.empty())
        ws.error(cfg->web.tls_cert_file.empty() ? "tls_cert_file" : "tls_key_file",
                 "tls_cert_file and tls_key_file must be given together");
      for (const auto& [user, hash] : cfg->web.basic_auth_users)
        if (hash.rfind("$2", 0) != 0)
          ws.error("basic_auth_users",
                   "password of user \"" + user + "\" must be a bcrypt hash ($2y$...)");
      ctx.take_fingerprint();
    }

    bool has_probes = top.has("probes");
    auto list = top.raw("probes", 2000000);
    ctx.take_fingerprint();
    std::map<std::string, YAML::Mark> marks;
    std::vector<std::pair<std::vector<std::string>, std::pair<YAML::Mark, std::string>>> dep_refs;
    std::map<std::string, std::pair<YAML::Mark, std::string>> dep_where;
    if (!list.IsDefined() || list.IsNull()) {
      if (!has_probes) ctx.error(top.mark(), "probes", "required: a list of probes");
    } else if (!list.IsSequence()) {
      ctx.error(list.Mark(), "probes", "must be a list of probes");
    } else {
      for (size_t i = 0; i < list.size(); ++i) {
        std::string path = "probes[" + std::to_string(i) + "]";
        Section ps(ctx, list[i], path);
        if (!list[i].IsMap()) continue;
        ProbeConfig pc;
        pc.interval = g.interval;
        pc.timeout = g.timeout;
        pc.failure_threshold = g.failure_threshold;
        pc.success_threshold = g.success_threshold;
        auto name = ps.str("name", Section::required);
        if (name) {
          if (!valid_name(*name)) {
            ps.error("name",
                     "must match [a-z0-9_-]+ (at most 128 characters), got \"" + *name + "\"");
          } else if (marks.count(*name)) {
            auto first = marks[*name];
            ps.error("name", "duplicate probe name \"" + *name + "\" (first defined at line " +
                                 std::to_string(first.line + 1) + ")");
          } else {
            marks[*name] = list[i].Mark();
          }
          pc.name = *name;
        }
        pc.service = ps.str_or("service", pc.name);
        if (ps.has("service") && !valid_name(pc.service))
          ps.error("service", "must match [a-z0-9_-]+, got \"" + pc.service + "\"");
        auto type = ps.str("type", Section::required);
        bool has_interval = ps.has("interval");
        if (auto v = ps.duration("interval")) pc.interval = *v;
        if (auto v = ps.duration("timeout")) pc.timeout = *v;
        if (auto v = ps.integer("failure_threshold", 1, 1000))
          pc.failure_threshold = static_cast<int>(*v);
        if (auto v = ps.integer("success_threshold", 1, 1000))
          pc.success_threshold = static_cast<int>(*v);
        pc.degraded_above = g.degraded_above;
        if (auto v = ps.duration("degraded_above")) {
          pc.degraded_above = *v;
          validate_bound(ps, "degraded_above", pc.degraded_above);
        }
        auto confirm = g.confirm_window;
        if (auto v = ps.duration("confirm_window")) {
          confirm = *v;
          validate_bound(ps, "confirm_window", confirm);
        }
        pc.confirm_window = confirm ? *confirm : default_confirm_window(pc.interval);
        for (auto& w : read_windows(ps, "maintenance", false))
          pc.maintenance.push_back(std::move(w.window));
        if (pc.interval < std::chrono::milliseconds(100))
          ps.error("interval", "must be at least 100ms");
        if (pc.timeout <= std::chrono::milliseconds(0))
          ps.error("timeout", "must be greater than 0");
        if (pc.timeout > pc.interval) {
          std::string msg = "timeout " + format_duration(pc.timeout) +
                            " is greater than interval " + format_duration(pc.interval);
          ps.error(ps.has("timeout") || !has_interval ? "timeout" : "interval", msg);
        }
        pc.depends_on = ps.str_list("depends_on");
        pc.locations = ps.str_list("locations");
        if (!pc.depends_on.empty()) {
          auto dn = ps.raw("depends_on");
          dep_refs.push_back({pc.depends_on, {dn.Mark(), ps.path_of("depends_on")}});
          dep_where[pc.name] = {dn.Mark(), ps.path_of("depends_on")};
          std::set<std::string> seen;
          for (const auto& d : pc.depends_on) {
            if (!seen.insert(d).second) ps.error("depends_on", "\"" + d + "\" is listed twice");
          }
        }
        // The type's own section; sections of other known types are a mistake worth naming.
        for (const auto& t : types) {
          std::string key(t.name);
          if (type && key != *type && ps.has(key))
            ps.error(key, "section \"" + key + "\" does not match type \"" + *type + "\"");
        }
        if (type) {
          const ProbeType* pt = find_type(types, *type);
          if (!pt) {
            std::string names;
            for (const auto& t : types) names += (names.empty() ? "" : ", ") + std::string(t.name);
            ps.error("type", "unknown probe type \"" + *type + "\" (known: " + names + ")");
          } else {
            pc.type = *type;
            auto section = ps.sub(*type);
            if (!section.present() && !ps.has(*type)) {
              ctx.error(ps.mark(), ps.path_of(*type), "required: the section for type " + *type);
            } else {
              size_t before = ctx.issues().size();
              auto probe = pt->parse(section);
              if (probe && ctx.issues().size() == before) {
                pc.target = strip_userinfo(probe->target());
                pc.probe = std::move(probe);
              }
            }
          }
        }
        std::string fp = global_fp + ctx.take_fingerprint();
        for (const auto& [k, v] : cfg->labels) fp += k + "=" + v + "\n";
        pc.fingerprint = std::hash<std::string>{}(fp);
        cfg->probes.push_back(std::move(pc));
      }
    }

    // Cross-probe checks: depends_on and references (bearer_from) name existing probes of the right
    // type.
    for (const auto& [deps, where] : dep_refs)
      for (const auto& d : deps)
        if (!marks.count(d))
          ctx.error(where.first, where.second, "depends on unknown probe \"" + d + "\"");
    for (const auto& ref : ctx.references()) {
      const ProbeConfig* target = cfg->find(ref.name);
      if (!target || !marks.count(ref.name)) {
        ctx.error(ref.mark, ref.path, "names unknown probe \"" + ref.name + "\"");
      } else if (!ref.required_type.empty() && target->type != ref.required_type) {
        ctx.error(
            ref.mark, ref.path,
            "probe \"" + ref.name + "\" has type " + target->type + ", not " + ref.required_type);
      }
    }
    check_cycles(ctx, *cfg, dep_where);
    read_platform_sections(top, *cfg, marks);
    parse_fleet(top, *cfg, list);
    ctx.take_fingerprint();
  } catch (const YAML::Exception& e) {
    ctx.error(e.mark, "", std::string("YAML error: ") + e.what());
  }
  if (!ctx.issues().empty()) throw ConfigError(ctx.issues());
  cfg->redactor = ctx.shared_redactor();
  return cfg;
}

std::shared_ptr<const Config> load_config(const std::string& path,
                                          std::span<const ProbeType> types) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ConfigIssue issue;
    issue.file = path;
    issue.message = "cannot read configuration file";
    throw ConfigError({issue});
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, types);
}

}  // namespace pes
