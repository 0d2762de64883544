// The `nexus` preset: Nexus Repository answers reads (/status) and writes (/status/writable);
// with credentials, every system status check (/status/check) is healthy.
// docs/presets/nexus.md explains the choices.
#include <memory>
#include <set>

#include "probes/presets/preset.h"

namespace pes {

namespace {

const char* kAvailableHelp =
    "1 if Nexus answers /service/rest/v1/status with 200 (ready for reads), else 0.";
const char* kWritableHelp =
    "1 if Nexus answers /service/rest/v1/status/writable with 200 (not read-only), else 0.";
const char* kCheckHelp = "1 if this Nexus system status check is healthy, else 0.";

struct NexusSpec {
  PresetBase base;
  std::optional<std::string> username;
  std::optional<std::string> password;  // secret
  std::set<std::string> ignore_checks;
};

Verdict judge_available(const HttpResponse& r, Outcome& out) {
  out.add("probe_nexus_available", kAvailableHelp, r.status == 200 ? 1 : 0);
  if (r.status == 503)
    return fail(Reason::http_status, "Nexus is not available (status returned 503)");
  if (r.status != 200)
    return fail(Reason::http_status, "Nexus status returned HTTP " + std::to_string(r.status));
  return std::nullopt;
}

Verdict judge_writable(const HttpResponse& r, Outcome& out) {
  out.add("probe_nexus_writable", kWritableHelp, r.status == 200 ? 1 : 0);
  if (r.status == 503)
    return fail(Reason::assertion, "Nexus is read-only (writable check returned 503)");
  if (r.status != 200)
    return fail(Reason::http_status,
                "Nexus writable check returned HTTP " + std::to_string(r.status));
  return std::nullopt;
}

Verdict judge_checks(const NexusSpec& spec, const HttpResponse& r, Outcome& out, Trace& trace) {
  const std::string user = spec.username.value_or("");
  if (r.status == 401)
    return fail(Reason::auth, "Nexus rejected the credentials of user \"" + user + "\" (HTTP 401)");
  if (r.status == 403)
    return fail(Reason::auth,
                "Nexus user \"" + user +
                    "\" may not read the system status checks; it needs the nx-metrics-all "
                    "privilege (HTTP 403)");
  if (r.status != 200)
    return fail(Reason::http_status,
                "Nexus status/check returned HTTP " + std::to_string(r.status));
  auto doc = json_object(r.body);
  if (!doc)
    return fail(Reason::protocol, "Nexus status/check is not JSON" + content_type_note(r) + ": " +
                                      body_excerpt(r.body));
  std::string failures;
  for (const auto& [name, result] : doc->items()) {
    if (!result.is_object()) continue;
    bool healthy = json_bool(result, "healthy").value_or(false);
    out.add("probe_nexus_check_up", kCheckHelp, healthy ? 1 : 0, {{"check", name}});
    if (healthy) continue;
    std::string said = json_string(result, "message").value_or("");
    std::string line =
        "Nexus system check \"" + name + "\" is unhealthy" + (said.empty() ? "" : ": " + said);
    if (spec.ignore_checks.count(name)) {
      trace.log("  " + line + " (ignored)");
      continue;
    }
    failures += (failures.empty() ? "" : "; ") + line;
  }
  if (!failures.empty()) return fail(Reason::assertion, failures);
  return std::nullopt;
}

std::vector<PresetStep> nexus_steps(const std::shared_ptr<const NexusSpec>& spec) {
  std::vector<PresetStep> steps;
  steps.push_back(
      {"status", spec->base.get("/service/rest/v1/status"), std::nullopt,
       [](const HttpResponse& r, Outcome& out, Trace&) { return judge_available(r, out); }});
  steps.push_back(
      {"status/writable", spec->base.get("/service/rest/v1/status/writable"), std::nullopt,
       [](const HttpResponse& r, Outcome& out, Trace&) { return judge_writable(r, out); }});
  if (spec->username) {
    HttpRequest req = spec->base.get("/service/rest/v1/status/check");
    req.headers = {{"Accept", "application/json"}};
    req.basic_auth = std::make_pair(*spec->username, spec->password.value_or(""));
    steps.push_back({"status/check", std::move(req), std::nullopt,
                     [spec](const HttpResponse& r, Outcome& out, Trace& t) {
                       return judge_checks(*spec, r, out, t);
                     }});
  }
  return steps;
}

}  // namespace

std::unique_ptr<Probe> parse_nexus_probe(Section& s) {
  auto spec = std::make_shared<NexusSpec>();
  auto base = parse_preset_base(s);
  spec->username = s.str("username");
  spec->password = s.str("password", Section::optional, Section::secret);
  if (spec->password && !spec->username) s.error("password", "needs username");
  if (spec->username && !spec->password) s.error("username", "needs password");
  for (auto& c : s.str_list("ignore_checks")) spec->ignore_checks.insert(std::move(c));
  if (!spec->ignore_checks.empty() && !spec->username)
    s.error("ignore_checks",
            "only applies with username/password (the system checks need credentials)");
  if (!base) return nullptr;
  spec->base = std::move(*base);
  std::shared_ptr<const NexusSpec> frozen = spec;
  return std::make_unique<PresetProbe>(frozen->base.url, std::nullopt,
                                       [frozen] { return nexus_steps(frozen); });
}

}  // namespace pes
