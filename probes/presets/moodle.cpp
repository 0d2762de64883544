// The `moodle` preset: the login page is Moodle's and not the maintenance page; with a web
// service token, core_webservice_get_site_info answers with the site's name and release.
// docs/presets/moodle.md explains the choices.
#include <memory>

#include "probes/presets/preset.h"

namespace pes {

namespace {

const char* kInfoHelp =
    "Moodle's release and version from core_webservice_get_site_info (value 1).";

// The id Moodle gives the <body> of its login page, and of its maintenance page.
constexpr std::string_view kLoginMarker = "id=\"page-login-index\"";
constexpr std::string_view kMaintenanceMarker = "page-maintenance-message";

struct MoodleSpec {
  PresetBase base;
  std::optional<std::string> token;  // secret
};

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

Verdict judge_login(const HttpResponse& r) {
  if (contains(r.body, kMaintenanceMarker) || (r.status == 503 && contains(r.body, "maintenance")))
    return in_maintenance(Reason::assertion,
                          "Moodle is in maintenance mode (login page returned HTTP " +
                              std::to_string(r.status) + ")");
  if (r.status != 200)
    return fail(Reason::http_status, "Moodle login page returned HTTP " + std::to_string(r.status));
  if (!contains(r.body, kLoginMarker))
    return fail(Reason::assertion,
                "login/index.php is not Moodle's login page (no <body id=\"page-login-index\">)" +
                    content_type_note(r));
  return std::nullopt;
}

Verdict judge_site_info(const HttpResponse& r, Outcome& out, Trace& trace) {
  if (r.status == 403)
    return fail(Reason::http_status,
                "Moodle refused the web service call (HTTP 403): web services or the REST protocol "
                "are disabled");
  if (r.status != 200)
    return fail(Reason::http_status,
                "Moodle web service returned HTTP " + std::to_string(r.status));
  auto doc = json_object(r.body);
  if (!doc)
    return fail(Reason::protocol, "Moodle web service answer is not JSON" + content_type_note(r) +
                                      ": " + body_excerpt(r.body));
  if (doc->contains("exception")) {
    std::string code = json_string(*doc, "errorcode").value_or("");
    std::string said =
        json_string(*doc, "message").value_or(json_string(*doc, "exception").value_or(""));
    // Token and access problems are credential failures; anything else is Moodle saying no.
    bool auth = code == "invalidtoken" || code == "accessexception" ||
                code.rfind("wsaccess", 0) == 0 || code == "usernotfullysetup" ||
                code == "servicerequireslogin";
    std::string text =
        "Moodle web service error: " + (code.empty() ? std::string() : code + ": ") + said;
    // Maintenance set in the site administration: the login page is up, the web service says so.
    if (code == "sitemaintenance") return in_maintenance(Reason::assertion, std::move(text));
    return fail(auth ? Reason::auth : Reason::assertion, std::move(text));
  }
  auto sitename = json_string(*doc, "sitename");
  if (!sitename || sitename->empty())
    return fail(Reason::assertion,
                "core_webservice_get_site_info returned no site name: " + body_excerpt(r.body));
  std::string release = json_string(*doc, "release").value_or("");
  out.add("probe_moodle_info", kInfoHelp, 1,
          {{"release", release}, {"version", json_string(*doc, "version").value_or("")}});
  trace.log("  site \"" + *sitename + "\", Moodle " + release + ", user \"" +
            json_string(*doc, "username").value_or("") + "\"");
  return std::nullopt;
}

std::vector<PresetStep> moodle_steps(const std::shared_ptr<const MoodleSpec>& spec) {
  std::vector<PresetStep> steps;
  steps.push_back({"login page", spec->base.get("/login/index.php"), std::nullopt,
                   [](const HttpResponse& r, Outcome&, Trace&) { return judge_login(r); }});
  if (spec->token) {
    // The token goes in the POST body, never in a URL that proxies and access logs keep.
    HttpRequest req = spec->base.get("/webservice/rest/server.php?moodlewsrestformat=json");
    req.method = "POST";
    req.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                   {"Accept", "application/json"}};
    req.body = "wstoken=" + form_encode(*spec->token) + "&wsfunction=core_webservice_get_site_info";
    steps.push_back({"web service", std::move(req), std::nullopt, judge_site_info});
  }
  return steps;
}

}  // namespace

std::unique_ptr<Probe> parse_moodle_probe(Section& s) {
  auto base = parse_preset_base(s);
  auto token = s.str("token", Section::optional, Section::secret);
  if (!base) return nullptr;
  auto spec = std::make_shared<const MoodleSpec>(MoodleSpec{std::move(*base), std::move(token)});
  return std::make_unique<PresetProbe>(spec->base.url, std::nullopt,
                                       [spec] { return moodle_steps(spec); });
}

}  // namespace pes
