// The `gitea` preset: /api/healthz (database and cache pings) passes; with an access token, the
// API answers for the monitoring user. docs/presets/gitea.md explains the choices.
#include <memory>

#include "probes/presets/preset.h"

namespace pes {

namespace {

const char* kCheckHelp = "1 if this /api/healthz check passes (pass or warn), 0 if it fails.";

struct GiteaSpec {
  PresetBase base;
  std::optional<std::string> token;  // secret
};

// The health-check draft's statuses and the aliases Gitea documents: 2 pass, 1 warn, 0 fail.
int status_rank(const std::string& status) {
  std::string s = ascii_lower(status);
  if (s == "pass" || s == "ok" || s == "up") return 2;
  if (s == "warn") return 1;
  return 0;
}

Verdict judge_health(const HttpResponse& r, Outcome& out, Trace& trace) {
  auto doc = json_object(r.body);
  if (!doc) {
    if (r.status != 200)
      return fail(Reason::http_status, "api/healthz returned HTTP " + std::to_string(r.status));
    return fail(Reason::protocol, "api/healthz is not Gitea's health JSON" + content_type_note(r) +
                                      ": " + body_excerpt(r.body));
  }
  auto status = json_string(*doc, "status");
  if (!status) return fail(Reason::protocol, "api/healthz has no status: " + body_excerpt(r.body));
  std::vector<std::string> failing, warning;
  auto checks = doc->find("checks");
  if (checks != doc->end() && checks->is_object()) {
    for (const auto& [name, entries] : checks->items()) {
      int worst = 2;
      std::string worst_status = "pass", output;
      if (entries.is_array()) {
        for (const auto& e : entries) {
          if (!e.is_object()) continue;
          std::string st = json_string(e, "status").value_or("fail");
          if (status_rank(st) < worst) {
            worst = status_rank(st);
            worst_status = st;
            output = json_string(e, "output").value_or("");
          }
        }
      }
      out.add("probe_gitea_check_up", kCheckHelp, worst > 0 ? 1 : 0, {{"check", name}});
      std::string line = "Gitea health check " + name + ": " + worst_status +
                         (output.empty() ? "" : " (" + output + ")");
      if (worst == 0) failing.push_back(line);
      if (worst == 1) warning.push_back(line);
    }
  }
  for (const auto& w : warning) trace.log("  " + w);
  if (status_rank(*status) == 0) {
    if (failing.empty()) failing.push_back("Gitea health status: " + *status);
    std::string msg;
    for (const auto& f : failing) msg += (msg.empty() ? "" : "; ") + f;
    return fail(Reason::assertion, msg);
  }
  if (json_string(*doc, "description").value_or("").find("Installation stage") != std::string::npos)
    return fail(Reason::assertion,
                "Gitea is not installed yet (api/healthz reports the installation stage)");
  if (r.status != 200)
    return fail(Reason::http_status, "api/healthz returned HTTP " + std::to_string(r.status) +
                                         " with status " + *status);
  if (!warning.empty()) out.message = warning.front();
  return std::nullopt;
}

Verdict judge_user(const HttpResponse& r, Trace& trace) {
  auto doc = json_object(r.body);
  std::string said = doc ? json_string(*doc, "message").value_or("") : "";
  std::string detail = said.empty() ? "" : ": " + said;
  if (r.status == 401)
    return fail(Reason::auth, "Gitea rejected the access token" + detail + " (HTTP 401)");
  if (r.status == 403)
    return fail(Reason::auth, "Gitea refused the access token" + detail + " (HTTP 403)");
  if (r.status != 200)
    return fail(Reason::http_status,
                "api/v1/user returned HTTP " + std::to_string(r.status) + detail);
  auto login = doc ? json_string(*doc, "login") : std::nullopt;
  if (!login)
    return fail(Reason::protocol, "api/v1/user is not a Gitea user: " + body_excerpt(r.body));
  trace.log("  Gitea knows the token as user \"" + *login + "\"");
  return std::nullopt;
}

std::vector<PresetStep> gitea_steps(const std::shared_ptr<const GiteaSpec>& spec) {
  std::vector<PresetStep> steps;
  steps.push_back({"api/healthz", spec->base.get("/api/healthz"), std::nullopt, judge_health});
  if (spec->token) {
    HttpRequest req = spec->base.get("/api/v1/user");
    req.headers = {{"Authorization", "token " + *spec->token}, {"Accept", "application/json"}};
    steps.push_back({"api/v1/user", std::move(req), std::nullopt,
                     [](const HttpResponse& r, Outcome&, Trace& t) { return judge_user(r, t); }});
  }
  return steps;
}

}  // namespace

std::unique_ptr<Probe> parse_gitea_probe(Section& s) {
  auto base = parse_preset_base(s);
  auto token = s.str("token", Section::optional, Section::secret);
  if (token && token->find_first_of("\r\n") != std::string::npos)
    s.error("token", "must be one line");
  if (!base) return nullptr;
  auto spec = std::make_shared<const GiteaSpec>(GiteaSpec{std::move(*base), std::move(token)});
  return std::make_unique<PresetProbe>(spec->base.url, std::nullopt,
                                       [spec] { return gitea_steps(spec); });
}

}  // namespace pes
