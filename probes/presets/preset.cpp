#include "probes/presets/preset.h"

#include <cctype>
#include <exception>

#include "probes/http/http_probe.h"

namespace pes {

HttpRequest PresetBase::get(std::string_view path) const {
  HttpRequest req;
  req.url = url + std::string(path);
  req.tls = tls;
  req.max_body_bytes = max_body_bytes;
  return req;
}

std::optional<PresetBase> parse_preset_base(Section& s) {
  PresetBase b;
  auto url = s.str("url", Section::required);
  bool ok = url && s.check_url("url", *url, {"http", "https"});
  if (ok && url->find_first_of("?#") != std::string::npos) {
    s.error("url", "must be the service's base URL, without a query or fragment");
    ok = false;
  }
  if (url) {
    b.url = *url;
    while (!b.url.empty() && b.url.back() == '/') b.url.pop_back();
  }
  b.tls = s.tls();
  if (auto m = s.integer("max_body_bytes", 1024, 1LL << 30))
    b.max_body_bytes = static_cast<size_t>(*m);
  if (!ok) return std::nullopt;
  return b;
}

namespace {

// The state of one run of the steps; lives as long as a callback holds it.
struct StepRun : std::enable_shared_from_this<StepRun> {
  RunContextPtr ctx;
  std::vector<PresetStep> steps;
  Done done;
  Outcome acc = Outcome::success();
  size_t next = 0;

  void finish(Verdict v) {
    if (v) {
      Outcome o = Outcome::failure(v->reason, std::move(v->message));
      o.maintenance = v->maintenance;
      o.samples = std::move(acc.samples);
      done(std::move(o));
    } else {
      done(std::move(acc));
    }
  }

  void step() {
    if (next == steps.size()) return finish(std::nullopt);
    PresetStep& s = steps[next];
    if (s.bearer_from) {
      if (auto missing = attach_bearer(s.request, s.bearer_from, *ctx))
        return finish(fail(missing->reason, s.what + ": " + missing->message));
    }
    ctx->http(std::move(s.request),
              [self = shared_from_this()](HttpResponse r) { self->answered(r); });
  }

  void answered(const HttpResponse& r) {
    PresetStep& s = steps[next];
    if (next == 0) add_http_samples(acc, r);
    ++next;
    if (!r.ok) return finish(fail(r.reason, s.what + ": " + r.error));
    Verdict v;
    try {
      v = s.judge(r, acc, ctx->trace());
    } catch (const std::exception& e) {  // never let a judge's surprise escape onto the event loop
      v = fail(Reason::internal, s.what + ": " + e.what());
    }
    if (v) return finish(std::move(v));
    step();
  }
};

}  // namespace

void PresetProbe::run(RunContextPtr ctx, Done done) {
  run_preset_steps(ctx, steps_(), std::move(done));
}

std::vector<std::string> PresetProbe::token_sources() const {
  return bearer_from_ ? std::vector<std::string>{*bearer_from_} : std::vector<std::string>{};
}

void run_preset_steps(const RunContextPtr& ctx, std::vector<PresetStep> steps, Done done) {
  auto run = std::make_shared<StepRun>();
  run->ctx = ctx;
  run->steps = std::move(steps);
  run->done = std::move(done);
  run->step();
}

std::optional<nlohmann::json> json_object(const std::string& body) {
  auto doc = nlohmann::json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
  return doc;
}

std::optional<std::string> json_string(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::optional<bool> json_bool(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}

std::string body_excerpt(const std::string& body, size_t max) {
  std::string out;
  bool space = false;
  for (char c : body) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    auto u = static_cast<unsigned char>(c);
    if (u == '\n' || u == '\r' || u == '\t' || u == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  return out;
}

std::string content_type_note(const HttpResponse& r) {
  const std::string* ct = r.header("content-type");
  return ct && !ct->empty() ? " (Content-Type " + body_excerpt(*ct, 60) + ")" : "";
}

std::string form_encode(std::string_view value) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

}  // namespace pes
