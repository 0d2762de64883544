// The `collabora` preset: the WOPI discovery document (what Nextcloud reads to embed the editors)
// lists editors, and the capabilities document names the running version.
// docs/presets/collabora.md explains the choices.
#include <expat.h>

#include <cstring>
#include <memory>

#include "agent/core/handles.h"
#include "probes/presets/preset.h"

namespace pes {

namespace {

const char* kInfoHelp =
    "Collabora Online's product and version from /hosting/capabilities (value 1).";
const char* kAppsHelp = "Number of <app> elements in the WOPI discovery document.";
const char* kActionsHelp =
    "Number of <action> elements with a urlsrc in the WOPI discovery document.";

struct CollaboraSpec {
  PresetBase base;
};

using XmlParserPtr = Owned<XML_ParserStruct, XML_ParserFree>;

// What the discovery document holds, as far as the probe cares.
struct Discovery {
  std::string root;
  int apps = 0;
  int actions = 0;
  int depth = 0;
};

void on_start(void* data, const XML_Char* name, const XML_Char** attrs) {
  auto* d = static_cast<Discovery*>(data);
  if (d->depth++ == 0) d->root = name;
  if (std::strcmp(name, "app") == 0) ++d->apps;
  if (std::strcmp(name, "action") == 0) {
    for (const XML_Char** a = attrs; a[0]; a += 2)
      if (std::strcmp(a[0], "urlsrc") == 0 && a[1][0]) {
        ++d->actions;
        break;
      }
  }
}

void on_end(void* data, const XML_Char*) { --static_cast<Discovery*>(data)->depth; }

// Parses the document; returns the expat error text, or "" when it is well-formed.
std::string parse_discovery(const std::string& body, Discovery& d) {
  XmlParserPtr parser(XML_ParserCreate(nullptr));
  if (!parser) return "out of memory";
  XML_SetUserData(parser.get(), &d);
  XML_SetElementHandler(parser.get(), on_start, on_end);
  if (XML_Parse(parser.get(), body.data(), static_cast<int>(body.size()), XML_TRUE) ==
      XML_STATUS_OK)
    return "";
  return std::string(XML_ErrorString(XML_GetErrorCode(parser.get()))) + " at line " +
         std::to_string(XML_GetCurrentLineNumber(parser.get()));
}

Verdict judge_discovery(const HttpResponse& r, Outcome& out, Trace& trace) {
  if (r.status != 200)
    return fail(Reason::http_status, "WOPI discovery returned HTTP " + std::to_string(r.status) +
                                         (r.body.empty() ? "" : ": " + body_excerpt(r.body)));
  Discovery d;
  std::string error = parse_discovery(r.body, d);
  if (!error.empty())
    return fail(Reason::protocol, "/hosting/discovery is not WOPI discovery XML" +
                                      content_type_note(r) + ": " + error);
  if (d.root != "wopi-discovery")
    return fail(Reason::protocol,
                "/hosting/discovery is not WOPI discovery XML (root element <" + d.root + ">)");
  out.add("probe_collabora_discovery_apps", kAppsHelp, d.apps);
  out.add("probe_collabora_discovery_actions", kActionsHelp, d.actions);
  trace.log("  WOPI discovery: " + std::to_string(d.apps) + " apps, " + std::to_string(d.actions) +
            " actions");
  if (d.actions == 0)
    return fail(Reason::assertion,
                "Collabora's WOPI discovery offers no editor (no app with an action urlsrc)");
  return std::nullopt;
}

Verdict judge_capabilities(const HttpResponse& r, Outcome& out) {
  if (r.status != 200)
    return fail(Reason::http_status,
                "/hosting/capabilities returned HTTP " + std::to_string(r.status));
  auto doc = json_object(r.body);
  if (!doc)
    return fail(Reason::protocol, "/hosting/capabilities is not JSON" + content_type_note(r) +
                                      ": " + body_excerpt(r.body));
  auto version = json_string(*doc, "productVersion");
  if (!version || version->empty())
    return fail(Reason::protocol,
                "/hosting/capabilities has no productVersion: " + body_excerpt(r.body));
  out.add("probe_collabora_info", kInfoHelp, 1,
          {{"version", *version},
           {"product", json_string(*doc, "productName").value_or("")},
           {"hash", json_string(*doc, "productVersionHash").value_or("")}});
  return std::nullopt;
}

std::vector<PresetStep> collabora_steps(const std::shared_ptr<const CollaboraSpec>& spec) {
  std::vector<PresetStep> steps;
  steps.push_back(
      {"WOPI discovery", spec->base.get("/hosting/discovery"), std::nullopt, judge_discovery});
  steps.push_back(
      {"capabilities", spec->base.get("/hosting/capabilities"), std::nullopt,
       [](const HttpResponse& r, Outcome& out, Trace&) { return judge_capabilities(r, out); }});
  return steps;
}

}  // namespace

std::unique_ptr<Probe> parse_collabora_probe(Section& s) {
  auto base = parse_preset_base(s);
  if (!base) return nullptr;
  auto spec = std::make_shared<const CollaboraSpec>(CollaboraSpec{std::move(*base)});
  return std::make_unique<PresetProbe>(spec->base.url, std::nullopt,
                                       [spec] { return collabora_steps(spec); });
}

}  // namespace pes
