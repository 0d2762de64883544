#include "probes/jitsi/jitsi_probe.h"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <random>
#include <utility>
#include <vector>

#include "probes/common/http_step.h"
#include "probes/jitsi/config_js.h"
#include "probes/jitsi/endpoints.h"
#include "probes/jitsi/stun.h"
#include "probes/jitsi/xmpp.h"

namespace pes {
namespace {

using jitsi::StunProbeError;

const char* kUpHelp = "1 if the Jitsi component answered correctly in the last run, else 0.";
const char* kDurationHelp = "Duration of the last check of each Jitsi component, seconds.";

constexpr size_t kMaxBody = 4 << 20;
constexpr Clock::duration kMinMargin = std::chrono::milliseconds(5);
// Up to 150 ms (a tenth of the budget): on a loaded machine the worker thread's verdict can take
// that long to reach the loop, and a verdict that arrives after the engine's backstop is lost
// (the run then says only "no result within the timeout", not which component hung).
constexpr Clock::duration kMaxMargin = std::chrono::milliseconds(150);
constexpr size_t kHtmlSniffBytes = 1024;

constexpr std::array<JitsiComponent, kJitsiComponents> kAll = {
    JitsiComponent::web,    JitsiComponent::config, JitsiComponent::bosh, JitsiComponent::websocket,
    JitsiComponent::jicofo, JitsiComponent::jvb,    JitsiComponent::stun};

// A short, printable excerpt of a server's body for a message.
std::string excerpt(std::string_view body, size_t max = 120) {
  while (!body.empty() && std::isspace(static_cast<unsigned char>(body.front())))
    body.remove_prefix(1);
  std::string out;
  for (char c : body.substr(0, max)) out.push_back(c >= 0x20 && c < 0x7F ? c : ' ');
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (body.size() > max) out += "...";
  return out;
}

// An HTML page: by its Content-Type, or (servers that label it text/plain) by its first bytes.
bool looks_like_html(const HttpResponse& r) {
  if (const std::string* type = r.header("content-type")) {
    const std::string t = ascii_lower(*type);
    if (t.starts_with("text/html") || t.starts_with("application/xhtml+xml")) return true;
  }
  const std::string head = ascii_lower(std::string_view(r.body).substr(0, kHtmlSniffBytes));
  return head.find("<!doctype html") != std::string::npos ||
         head.find("<html") != std::string::npos;
}

Reason stun_reason(StunProbeError e) {
  switch (e) {
    case StunProbeError::none:
      return Reason::none;
    case StunProbeError::timeout:
      return Reason::timeout;
    case StunProbeError::protocol:
      return Reason::protocol;
    case StunProbeError::connect:
      return Reason::connect;
    case StunProbeError::dns:
      return Reason::dns;
  }
  return Reason::internal;
}

// The verdict on one component.
struct ComponentResult {
  bool checked = false;  // false: not configured, or could not be checked (see message)
  bool up = false;
  Reason reason = Reason::none;
  std::string message;
  double seconds = 0;
};

// One run of one jitsi probe. The components run concurrently: HTTP ones on the event loop
// (ctx->http), the WebSocket and STUN ones on the worker pool (ctx->blocking), each bounded by the
// run's deadline. BOSH and WebSocket need the XMPP domain: from xmpp_domain, or else from config.js
// (then they start once config.js has answered). The last component to finish ends the run.
// Per-run state lives here, never in the probe, because runs of one probe may overlap.
class JitsiRun : public std::enable_shared_from_this<JitsiRun> {
 public:
  JitsiRun(std::shared_ptr<const JitsiSpec> spec, RunContextPtr ctx, Done done)
      : spec_(std::move(spec)), ctx_(std::move(ctx)), done_(std::move(done)) {
    for (JitsiComponent c : kAll)
      if (spec_->checks(c)) ++pending_;
  }

  void start() {
    // The worker-pool components stop a little before the deadline, so that their verdict reaches
    // the engine before it gives up on the run (at the deadline plus a few milliseconds) even on
    // a loaded machine. HTTP components are cut by the event loop at the deadline itself.
    const auto budget = ctx_->deadline() - Clock::now();
    blocking_deadline_ =
        ctx_->deadline() - std::clamp<Clock::duration>(budget / 10, kMinMargin, kMaxMargin);
    start_web();
    start_config();
    if (!spec_->xmpp_domain.empty()) start_xmpp(spec_->xmpp_domain);
    start_health(JitsiComponent::jicofo, spec_->jicofo_health_url);
    start_health(JitsiComponent::jvb, spec_->jvb_health_url);
    start_stun();
  }

 private:
  using C = JitsiComponent;

  // --- web: the meeting page ---------------------------------------------------------------
  void start_web() {
    const auto started = Clock::now();
    HttpRequest req = request(spec_->url);
    req.headers.emplace_back("Accept", "text/html");
    ctx_->http(std::move(req),
               [self = shared_from_this(), started](HttpResponse r) { self->on_web(r, started); });
  }

  void on_web(const HttpResponse& r, Clock::time_point started) {
    if (!answered_2xx(C::web, r, spec_->url, Reason::http_status, started)) return;
    if (!looks_like_html(r)) {
      const std::string* type = r.header("content-type");
      return down(C::web, Reason::protocol,
                  "not an HTML page (Content-Type: " + (type ? *type : std::string("none")) + ")",
                  started);
    }
    up(C::web, "HTML page, " + std::to_string(r.body.size()) + " bytes", started);
  }

  // --- config: config.js names the XMPP domain ----------------------------------------------
  void start_config() {
    const auto started = Clock::now();
    ctx_->http(request(spec_->config_js_url), [self = shared_from_this(), started](HttpResponse r) {
      self->on_config(r, started);
    });
  }

  void on_config(const HttpResponse& r, Clock::time_point started) {
    const bool need_domain = spec_->xmpp_domain.empty();
    if (!answered_2xx(C::config, r, spec_->config_js_url, Reason::http_status, started)) {
      if (need_domain) skip_xmpp("config.js failed and xmpp_domain is not set");
      return;
    }
    const jitsi::ConfigJsInfo info = jitsi::parse_config_js(r.body);
    if (!info.ok()) {
      if (need_domain) skip_xmpp("config.js names no XMPP domain and xmpp_domain is not set");
      return down(C::config, Reason::protocol, info.error, started);
    }
    if (!need_domain && ascii_lower(info.domain) != ascii_lower(spec_->xmpp_domain))
      return down(C::config, Reason::assertion,
                  "config.js names XMPP domain \"" + info.domain + "\", expected \"" +
                      spec_->xmpp_domain + "\"",
                  started);
    if (need_domain) start_xmpp(info.domain);
    up(C::config, "XMPP domain " + info.domain, started);
  }

  // --- bosh and websocket: XMPP signalling (Prosody) ----------------------------------------
  void start_xmpp(const std::string& domain) {
    start_bosh(domain);
    start_websocket(domain);
  }

  void skip_xmpp(const std::string& why) {
    if (spec_->checks(C::bosh)) skip(C::bosh, why);
    if (spec_->checks(C::websocket)) skip(C::websocket, why);
  }

  // A real session (XEP-0124 §7.1, XEP-0206): the answer must carry a sid and stream features
  // with SASL mechanisms. A good session is then terminated so that it does not linger.
  void start_bosh(const std::string& domain) {
    if (!spec_->checks(C::bosh)) return;
    const auto started = Clock::now();
    // rid: random, below 2^53 so that JavaScript connection managers keep it exact (§14.1).
    std::random_device rd;
    const uint64_t rid = ((uint64_t{rd()} << 32 | rd()) & ((uint64_t{1} << 52) - 1)) + 1;
    HttpRequest req = request(spec_->bosh_url);
    req.method = "POST";
    req.body = jitsi::build_bosh_session_request(rid, domain, {.wait = 5, .hold = 1, .lang = "en"});
    req.headers.emplace_back("Content-Type", "text/xml; charset=utf-8");
    req.follow_redirects = false;
    trace(C::bosh, "session request to " + domain);
    ctx_->http(std::move(req), [self = shared_from_this(), started, rid, domain](HttpResponse r) {
      self->on_bosh(r, started, rid, domain);
    });
  }

  void on_bosh(const HttpResponse& r, Clock::time_point started, uint64_t rid,
               const std::string& domain) {
    // An HTTP error from a connection manager is a protocol failure: BOSH reports its own errors
    // in the body, so a bare status means something else (a proxy, a missing module) answered.
    if (!answered_2xx(C::bosh, r, spec_->bosh_url, Reason::protocol, started)) return;
    const jitsi::BoshResponse b = jitsi::parse_bosh_response(r.body);
    if (!b.ok()) return down(C::bosh, Reason::protocol, "not a BOSH body: " + b.error, started);
    if (b.terminated()) {
      // XEP-0124 names an unserved domain host-unknown; Prosody (0.12) says improper-addressing.
      std::string why = b.condition.empty() ? "no condition" : b.condition;
      if (b.condition == "host-unknown" || b.condition == "improper-addressing")
        why += ": the server does not serve XMPP domain \"" + domain + "\"";
      if (!b.stream_error.empty()) why += "; stream error " + b.stream_error;
      if (!b.stream_error_text.empty()) why += ": " + b.stream_error_text;
      return down(C::bosh, Reason::protocol,
                  "the connection manager terminated the session (" + why + ")", started);
    }
    if (b.sid.empty())
      return down(C::bosh, Reason::protocol, "no session id (sid) in the answer", started);
    if (!b.has_stream_features)
      return down(C::bosh, Reason::protocol, "no <stream:features/> in the session answer",
                  started);
    if (b.sasl_mechanisms.empty())
      return down(C::bosh, Reason::protocol, "stream features without SASL mechanisms", started);
    std::string mechs;
    for (const auto& m : b.sasl_mechanisms) mechs += (mechs.empty() ? "" : " ") + m;
    const double seconds = since(started);
    trace(C::bosh, "session created (sid not shown), SASL mechanisms: " + mechs);

    // Politely end the session; its answer changes nothing, but the run waits for it (a healthy
    // Prosody answers at once) because ending the run would abandon the request.
    HttpRequest req = request(spec_->bosh_url);
    req.method = "POST";
    req.body = jitsi::build_bosh_terminate(rid + 1, b.sid);
    req.headers.emplace_back("Content-Type", "text/xml; charset=utf-8");
    req.follow_redirects = false;
    ctx_->http(std::move(req), [self = shared_from_this(), seconds, mechs](HttpResponse t) {
      self->trace(C::bosh, t.ok ? "session terminated (HTTP " + std::to_string(t.status) + ")"
                                : "terminating the session failed (ignored): " + t.error);
      self->record(C::bosh, ComponentResult{true, true, Reason::none, "SASL " + mechs, seconds});
    });
  }

  // RFC 7395 on the worker pool (Boost.Beast; see websocket.h).
  void start_websocket(const std::string& domain) {
    if (!spec_->checks(C::websocket)) return;
    ctx_->blocking([self = shared_from_this(), domain] {
      const auto started = Clock::now();
      jitsi::WsTraceFn trace;
      if (self->ctx_->trace().enabled())
        trace = [self](const std::string& line) { self->trace(C::websocket, line); };
      const jitsi::WsXmppResult r = jitsi::ws_xmpp_probe(
          *self->spec_->websocket, domain, self->spec_->tls, self->blocking_deadline_, trace);
      if (!r.ok) return self->down(C::websocket, r.reason, r.message, started);
      std::string mechs;
      for (const auto& m : r.sasl_mechanisms) mechs += (mechs.empty() ? "" : " ") + m;
      self->up(C::websocket, "SASL " + mechs, started);
    });
  }

  // --- jicofo and jvb: their REST health checks ---------------------------------------------
  // Both answer GET /about/health with 200 and an empty body when healthy, 5xx when not.
  void start_health(C c, const std::string& url) {
    if (!spec_->checks(c)) return;
    const auto started = Clock::now();
    HttpRequest req = request(url);
    req.headers.emplace_back("Accept", "application/json");
    ctx_->http(std::move(req), [self = shared_from_this(), c, url, started](HttpResponse r) {
      if (!self->answered_2xx(c, r, url, Reason::http_status, started)) return;
      self->up(c, "HTTP " + std::to_string(r.status), started);
    });
  }

  // --- stun: a Binding request over UDP (RFC 5389) ------------------------------------------
  void start_stun() {
    if (!spec_->checks(C::stun)) return;
    ctx_->blocking([self = shared_from_this()] {
      const auto started = Clock::now();
      const auto r = jitsi::stun_probe(self->spec_->stun_host, self->spec_->stun_port,
                                       self->blocking_deadline_);
      if (!r.ok()) return self->down(C::stun, stun_reason(r.error), r.message, started);
      self->up(C::stun,
               "mapped address " + r.mapped.to_string() + " from " + r.server_address + " after " +
                   std::to_string(r.transmissions) + " request(s)",
               started);
    });
  }

  // --- verdicts -----------------------------------------------------------------------------

  HttpRequest request(const std::string& url) const {
    return http_request(url, spec_->tls, kMaxBody);
  }

  // False (and the component down) unless r is an HTTP answer with a 2xx status; a non-2xx status
  // fails with `status_reason`.
  bool answered_2xx(C c, const HttpResponse& r, const std::string& url, Reason status_reason,
                    Clock::time_point started) {
    auto failed = expect_2xx(r, url, status_reason);
    if (!failed) return true;
    // A short text or JSON body often says why (the JVB's health check does); an HTML error
    // page from a proxy says nothing the status does not.
    if (const std::string body = excerpt(r.body); r.ok && !body.empty() && body.front() != '<')
      failed->message += ": " + body;
    down(c, failed->reason, std::move(failed->message), started);
    return false;
  }

  static double since(Clock::time_point started) {
    return std::chrono::duration<double>(Clock::now() - started).count();
  }

  void up(C c, std::string message, Clock::time_point started) {
    record(c, ComponentResult{true, true, Reason::none, std::move(message), since(started)});
  }
  void down(C c, Reason reason, std::string message, Clock::time_point started) {
    record(c, ComponentResult{true, false, reason, std::move(message), since(started)});
  }
  void skip(C c, std::string why) {
    record(c, ComponentResult{false, false, Reason::none, "not checked: " + std::move(why), 0});
  }

  void trace(C c, const std::string& line) {
    if (ctx_->trace().enabled())
      ctx_->trace().log(std::string(jitsi_component_name(c)) + ": " + line);
  }

  // Stores one component's verdict (any thread); the last one ends the run.
  void record(C c, ComponentResult result) {
    trace(c,
          result.checked
              ? (result.up ? "up (" : "DOWN (" + std::string(reason_name(result.reason)) + ": ") +
                    result.message + ")"
              : result.message);
    bool last;
    {
      std::lock_guard lock(mu_);
      auto& slot = results_[static_cast<size_t>(c)];
      if (slot) return;  // a verdict is final
      slot = std::move(result);
      last = --pending_ == 0;
    }
    if (last) done_(outcome());
  }

  Outcome outcome() const {
    std::vector<std::string> down_names, details, skipped;
    Reason reason = Reason::none;
    int checked = 0;
    for (C c : kAll) {
      const auto& r = results_[static_cast<size_t>(c)];
      if (!r) continue;
      const std::string name(jitsi_component_name(c));
      if (!r->checked) {
        skipped.push_back(name + " (" + r->message + ")");
        continue;
      }
      ++checked;
      if (r->up) continue;
      if (reason == Reason::none) reason = r->reason;
      down_names.push_back(name);
      details.push_back(name + ": " + r->message);
    }
    std::string message;
    const auto join = [](const std::vector<std::string>& v, const char* sep) {
      std::string s;
      for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
      return s;
    };
    Outcome out;
    if (down_names.empty() && skipped.empty()) {
      out = Outcome::success("all " + std::to_string(checked) + " components up");
    } else {
      if (!down_names.empty())
        message = "down: " + join(down_names, ", ") + "; " + join(details, "; ");
      if (!skipped.empty()) message += (message.empty() ? "" : "; ") + join(skipped, "; ");
      // Skipped components only happen when config.js is down, which already sets the reason.
      out =
          Outcome::failure(reason == Reason::none ? Reason::internal : reason, std::move(message));
    }
    for (C c : kAll) {
      const auto& r = results_[static_cast<size_t>(c)];
      if (!r || !r->checked) continue;
      const std::string name(jitsi_component_name(c));
      out.add("probe_jitsi_component_up", kUpHelp, r->up ? 1 : 0, {{"component", name}});
      out.add("probe_jitsi_component_duration_seconds", kDurationHelp, r->seconds,
              {{"component", name}});
    }
    return out;
  }

  const std::shared_ptr<const JitsiSpec> spec_;
  const RunContextPtr ctx_;
  const Done done_;

  Clock::time_point blocking_deadline_{};
  std::mutex mu_;
  size_t pending_ = 0;
  std::array<std::optional<ComponentResult>, kJitsiComponents> results_;
};

}  // namespace

std::string_view jitsi_component_name(JitsiComponent c) {
  switch (c) {
    case JitsiComponent::web:
      return "web";
    case JitsiComponent::config:
      return "config";
    case JitsiComponent::bosh:
      return "bosh";
    case JitsiComponent::websocket:
      return "websocket";
    case JitsiComponent::jicofo:
      return "jicofo";
    case JitsiComponent::jvb:
      return "jvb";
    case JitsiComponent::stun:
      return "stun";
  }
  return "?";
}

bool JitsiSpec::checks(JitsiComponent c) const {
  switch (c) {
    case JitsiComponent::web:
    case JitsiComponent::config:
      return true;
    case JitsiComponent::bosh:
      return !bosh_url.empty();
    case JitsiComponent::websocket:
      return websocket.has_value();
    case JitsiComponent::jicofo:
      return !jicofo_health_url.empty();
    case JitsiComponent::jvb:
      return !jvb_health_url.empty();
    case JitsiComponent::stun:
      return !stun_host.empty();
  }
  return false;
}

void JitsiProbe::run(RunContextPtr ctx, Done done) {
  std::make_shared<JitsiRun>(spec_, std::move(ctx), std::move(done))->start();
}

std::string JitsiProbe::target() const { return strip_userinfo(spec_->url); }

std::unique_ptr<Probe> JitsiProbe::parse(Section& s) {
  JitsiSpec spec;
  auto url = s.str("url", Section::required);
  bool ok = url && s.check_url("url", *url, {"http", "https"});
  if (url) spec.url = *url;

  spec.xmpp_domain = s.str_or("xmpp_domain", "");
  if (s.has("xmpp_domain") && !jitsi::is_host_name(spec.xmpp_domain)) {
    s.error("xmpp_domain",
            "must be a host name such as meet.jitsi, got \"" + spec.xmpp_domain + "\"");
    ok = false;
  }

  // Paths are taken on the origin of `url`; absolute URLs are used as they are.
  const std::string bosh_path = s.str_or("bosh_path", "/http-bind");
  const auto websocket_path = s.str("websocket_path");
  if (ok) {
    std::string error;
    if (auto u = jitsi::config_js_url(spec.url)) {
      spec.config_js_url = *u;
    } else {
      s.error("url", "cannot derive config.js from \"" + strip_userinfo(spec.url) + "\"");
      ok = false;
    }
    if (!bosh_path.empty()) {  // "" turns the BOSH check off (WebSocket-only deployments)
      if (auto u = jitsi::on_origin(spec.url, bosh_path, {"http", "https"}, error)) {
        spec.bosh_url = *u;
      } else {
        s.error("bosh_path", error);
        ok = false;
      }
    }
    if (websocket_path) {
      if (websocket_path->empty()) {
        s.error("websocket_path", "must not be empty (leave it out to skip the WebSocket check)");
        ok = false;
      } else if (auto ep = jitsi::websocket_endpoint(spec.url, *websocket_path, error)) {
        spec.websocket = std::move(*ep);
      } else {
        s.error("websocket_path", error);
        ok = false;
      }
    }
  }

  for (const char* key : {"jicofo_health_url", "jvb_health_url"}) {
    auto v = s.str(key);
    if (!v) continue;
    if (!s.check_url(key, *v, {"http", "https"})) {
      ok = false;
      continue;
    }
    (std::string_view(key) == "jicofo_health_url" ? spec.jicofo_health_url : spec.jvb_health_url) =
        *v;
  }

  if (auto stun = s.str("stun")) {
    if (!jitsi::split_stun_host_port(*stun, spec.stun_host, spec.stun_port)) {
      s.error("stun",
              "must be host:port (or [v6]:port) of a STUN server (UDP), got \"" + *stun + "\"");
      ok = false;
    }
  }
  spec.tls = s.tls();
  if (!ok) return nullptr;
  return std::make_unique<JitsiProbe>(std::move(spec));
}

}  // namespace pes
