// The `nextcloud` preset: status.php says installed, not in maintenance, no pending database
// upgrade; with credentials, the OCS API answers for the monitoring user (the SSO chain when the
// credential is a Keycloak access token). docs/presets/nextcloud.md explains the choices.
#include <memory>

#include "probes/http/http_probe.h"
#include "probes/http/json_path.h"
#include "probes/presets/preset.h"

namespace pes {

namespace {

const char* kInfoHelp = "Nextcloud's version as status.php reports it (value 1).";
const char* kMaintenanceHelp = "1 if status.php reports maintenance mode, else 0.";
const char* kUpgradeHelp = "1 if status.php reports a pending database upgrade, else 0.";
const char* kOcsHelp =
    "OCS status code of the authenticated cloud/user request (200 is OK, 997 not logged in).";

struct NextcloudSpec {
  PresetBase base;
  std::optional<std::string> username;      // with app_password: HTTP basic auth
  std::optional<std::string> app_password;  // secret
  std::optional<std::string> bearer_from;
};

Verdict judge_status(const HttpResponse& r, Outcome& out) {
  if (r.status != 200)
    return fail(Reason::http_status, "status.php returned HTTP " + std::to_string(r.status) +
                                         (r.body.empty() ? "" : ": " + body_excerpt(r.body)));
  auto doc = json_object(r.body);
  if (!doc)
    return fail(Reason::protocol, "status.php is not Nextcloud's status JSON" +
                                      content_type_note(r) + ": " + body_excerpt(r.body));
  auto installed = json_bool(*doc, "installed");
  auto maintenance = json_bool(*doc, "maintenance");
  auto upgrade = json_bool(*doc, "needsDbUpgrade");
  if (!installed || !maintenance || !upgrade)
    return fail(Reason::protocol,
                "status.php lacks installed/maintenance/needsDbUpgrade: " + body_excerpt(r.body));
  std::string version =
      json_string(*doc, "versionstring").value_or(json_string(*doc, "version").value_or(""));
  out.add("probe_nextcloud_info", kInfoHelp, 1,
          {{"version", version}, {"product", json_string(*doc, "productname").value_or("")}});
  out.add("probe_nextcloud_maintenance", kMaintenanceHelp, *maintenance ? 1 : 0);
  out.add("probe_nextcloud_needs_db_upgrade", kUpgradeHelp, *upgrade ? 1 : 0);
  if (!*installed)
    return fail(Reason::assertion, "Nextcloud is not installed (status.php: installed false)");
  if (*maintenance) return in_maintenance(Reason::assertion, "Nextcloud is in maintenance mode");
  if (*upgrade)
    return fail(Reason::assertion,
                "Nextcloud needs a database upgrade to " + version + " (run occ upgrade)");
  return std::nullopt;
}

Verdict judge_user(const NextcloudSpec& spec, const HttpResponse& r, Outcome& out, Trace& trace) {
  auto doc = json_object(r.body);
  const nlohmann::json* code = doc ? json_lookup(*doc, "ocs.meta.statuscode") : nullptr;
  const nlohmann::json* message = doc ? json_lookup(*doc, "ocs.meta.message") : nullptr;
  std::string said = message && message->is_string() ? message->get<std::string>() : "";
  long ocs = code && code->is_number_integer() ? code->get<long>() : 0;
  if (code) out.add("probe_nextcloud_ocs_status_code", kOcsHelp, static_cast<double>(ocs));
  std::string detail = said.empty() ? "" : ": " + said;
  if (r.status == 401 || ocs == 997) {
    std::string who = spec.bearer_from
                          ? "the access token of keycloak probe \"" + *spec.bearer_from + "\""
                          : "the app password of user \"" + spec.username.value_or("") + "\"";
    return fail(Reason::auth, "Nextcloud rejected " + who + detail + " (HTTP " +
                                  std::to_string(r.status) +
                                  (code ? ", OCS " + std::to_string(ocs) : "") + ")");
  }
  if (r.status != 200)
    return fail(Reason::http_status,
                "OCS cloud/user returned HTTP " + std::to_string(r.status) + detail);
  if (!code)
    return fail(Reason::protocol,
                "OCS cloud/user is not an OCS JSON answer: " + body_excerpt(r.body));
  if (ocs != 200)
    return fail(Reason::assertion, "OCS cloud/user status " + std::to_string(ocs) + detail);
  if (const auto* id = json_lookup(*doc, "ocs.data.id"); id && id->is_string())
    trace.log("  Nextcloud knows the credential as user \"" + id->get<std::string>() + "\"");
  return std::nullopt;
}

std::vector<PresetStep> nextcloud_steps(const std::shared_ptr<const NextcloudSpec>& spec) {
  std::vector<PresetStep> steps;
  steps.push_back(
      {"status.php", spec->base.get("/status.php"), std::nullopt,
       [](const HttpResponse& r, Outcome& out, Trace&) { return judge_status(r, out); }});
  if (spec->app_password || spec->bearer_from) {
    HttpRequest req = spec->base.get("/ocs/v2.php/cloud/user?format=json");
    req.headers = {{"OCS-APIRequest", "true"}, {"Accept", "application/json"}};
    if (spec->app_password) req.basic_auth = std::make_pair(*spec->username, *spec->app_password);
    steps.push_back({"OCS cloud/user", std::move(req), spec->bearer_from,
                     [spec](const HttpResponse& r, Outcome& out, Trace& t) {
                       return judge_user(*spec, r, out, t);
                     }});
  }
  return steps;
}

}  // namespace

std::unique_ptr<Probe> parse_nextcloud_probe(Section& s) {
  auto spec = std::make_shared<NextcloudSpec>();
  auto base = parse_preset_base(s);
  spec->username = s.str("username");
  spec->app_password = s.str("app_password", Section::optional, Section::secret);
  spec->bearer_from = parse_bearer_from(s);
  if (spec->app_password && !spec->username)
    s.error("app_password", "needs username (the app password's user)");
  if (spec->username && !spec->app_password) s.error("username", "needs app_password");
  if (spec->app_password && spec->bearer_from)
    s.error("bearer_from", "give either bearer_from or username/app_password, not both");
  if (!base) return nullptr;
  spec->base = std::move(*base);
  std::string target = spec->base.url;
  auto bearer = spec->bearer_from;
  std::shared_ptr<const NextcloudSpec> frozen = spec;
  return std::make_unique<PresetProbe>(std::move(target), std::move(bearer),
                                       [frozen] { return nextcloud_steps(frozen); });
}

}  // namespace pes
