#include "probes/http/http_probe.h"

#include <chrono>
#include <ctime>

#include "probes/http/json_path.h"

namespace pes {

bool StatusMatcher::matches(long status) const {
  if (codes.empty() && classes.empty()) return status >= 200 && status < 300;
  for (int c : codes)
    if (status == c) return true;
  for (int k : classes)
    if (status / 100 == k) return true;
  return false;
}

std::string StatusMatcher::describe() const {
  if (codes.empty() && classes.empty()) return "2xx";
  std::string out;
  for (int c : codes) out += (out.empty() ? "" : ", ") + std::to_string(c);
  for (int k : classes) out += (out.empty() ? "" : ", ") + std::to_string(k) + "xx";
  return out;
}

namespace {

std::shared_ptr<const RE2> compile(Section& s, const std::string& key, const std::string& pattern) {
  RE2::Options opts;
  opts.set_log_errors(false);
  opts.set_max_mem(8 << 20);
  auto re = std::make_shared<RE2>(pattern, opts);
  if (!re->ok()) {
    s.error(key, "invalid regular expression \"" + pattern + "\": " + re->error());
    return nullptr;
  }
  return re;
}

const char* kStatusHelp = "HTTP status code of the last response (0 if none).";
const char* kPhaseHelp = "Duration of each HTTP phase of the last run.";
const char* kLengthHelp = "Length of the last response body in bytes.";
const char* kCertHelp = "Earliest notAfter of the certificate chain, unix seconds.";

}  // namespace

std::optional<HttpRequest> parse_http_request(Section& s) {
  HttpRequest req;
  auto url = s.str("url", Section::required);
  bool url_ok = url && s.check_url("url", *url, {"http", "https"});
  if (url) req.url = *url;
  req.method = s.str_or("method", "GET");
  for (auto& c : req.method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (s.has("method"))
    s.one_of("method", req.method, {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"});
  req.headers = s.str_map("headers", Section::secret);  // header values often carry credentials
  for (const auto& [k, v] : req.headers)
    if (k.find_first_of(" :\r\n") != std::string::npos ||
        v.find_first_of("\r\n") != std::string::npos)
      s.error("headers", "header \"" + k + "\" has an invalid name or a line break in its value");
  if (auto b = s.str("body")) req.body = *b;
  req.follow_redirects = s.boolean("follow_redirects").value_or(true);
  if (auto m = s.integer("max_redirects", 0, 100)) req.max_redirects = static_cast<long>(*m);
  if (auto m = s.integer("max_body_bytes", 1, 1LL << 30))
    req.max_body_bytes = static_cast<size_t>(*m);
  req.tls = s.tls();
  {
    auto ba = s.sub("basic_auth");
    if (ba.present()) {
      auto user = ba.str("username", Section::required);
      auto pass = ba.str("password", Section::optional, Section::secret);
      if (user) req.basic_auth = std::make_pair(*user, pass.value_or(""));
    }
  }
  if (!url_ok) return std::nullopt;
  return req;
}

std::optional<std::string> parse_bearer_from(Section& s) {
  auto b = s.str("bearer_from");
  if (!b) return std::nullopt;
  s.ctx().reference(
      ProbeReference{*b, "keycloak", s.raw("bearer_from").Mark(), s.path_of("bearer_from")});
  return b;
}

HttpExpectations parse_expectations(Section& s) {
  HttpExpectations e;
  auto x = s.sub("expect");
  auto status = x.raw("status");
  if (status.IsDefined() && !status.IsNull()) {
    std::vector<YAML::Node> items;
    if (status.IsSequence()) {
      for (const auto& n : status) items.push_back(n);
    } else {
      items.push_back(status);
    }
    for (const auto& n : items) {
      const std::string v = n.IsScalar() ? n.Scalar() : "";
      if (v.size() == 3 && v[0] >= '1' && v[0] <= '5' &&
          (v.substr(1) == "xx" || v.substr(1) == "XX")) {
        e.status.classes.push_back(v[0] - '0');
      } else {
        char* end = nullptr;
        long code = std::strtol(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || code < 100 || code > 599) {
          s.ctx().error(
              n.Mark(), x.path_of("status"),
              "each status must be a code 100-599 or a class like \"2xx\", got \"" + v + "\"");
        } else {
          e.status.codes.push_back(static_cast<int>(code));
        }
      }
    }
  }
  for (const auto& p : x.str_list("body_regex"))
    if (auto re = compile(x, "body_regex", p)) e.body_regex.push_back(re);
  for (const auto& p : x.str_list("body_not_regex"))
    if (auto re = compile(x, "body_not_regex", p)) e.body_not_regex.push_back(re);
  auto json = x.raw("json");
  if (json.IsDefined() && !json.IsNull()) {
    if (!json.IsMap()) {
      s.ctx().error(json.Mark(), x.path_of("json"),
                    "must be a mapping of dotted paths to expected values");
    } else {
      for (const auto& kv : json) e.json.emplace_back(kv.first.Scalar(), yaml_to_json(kv.second));
    }
  }
  for (const auto& [name, pattern] : x.str_map("headers")) {
    if (auto re = compile(x, "headers", pattern)) e.headers.emplace_back(ascii_lower(name), re);
  }
  if (auto d = x.integer("cert_min_days", 0, 3650)) e.cert_min_days = static_cast<int>(*d);
  return e;
}

std::optional<Outcome> attach_bearer(HttpRequest& req,
                                     const std::optional<std::string>& bearer_from,
                                     RunContext& ctx) {
  if (!bearer_from) return std::nullopt;
  auto token = ctx.tokens().get(*bearer_from);
  if (!token)
    return Outcome::failure(Reason::auth, "no valid access token from keycloak probe \"" +
                                              *bearer_from +
                                              "\" (its last run failed or it has not run yet)");
  req.headers.emplace_back("Authorization", "Bearer " + *token);
  ctx.trace().log("using the access token of keycloak probe \"" + *bearer_from + "\" (not shown)");
  return std::nullopt;
}

void add_http_samples(Outcome& out, const HttpResponse& r) {
  out.add("probe_http_status_code", kStatusHelp, static_cast<double>(r.status));
  out.add("probe_http_duration_seconds", kPhaseHelp, r.phases.resolve, {{"phase", "resolve"}});
  out.add("probe_http_duration_seconds", kPhaseHelp, r.phases.connect, {{"phase", "connect"}});
  out.add("probe_http_duration_seconds", kPhaseHelp, r.phases.tls, {{"phase", "tls"}});
  out.add("probe_http_duration_seconds", kPhaseHelp, r.phases.processing,
          {{"phase", "processing"}});
  out.add("probe_http_duration_seconds", kPhaseHelp, r.phases.transfer, {{"phase", "transfer"}});
  if (r.ok)
    out.add("probe_http_content_length", kLengthHelp,
            static_cast<double>(r.content_length >= 0 ? r.content_length
                                                      : static_cast<int64_t>(r.body.size())));
  if (r.earliest_cert_expiry)
    out.add("probe_ssl_earliest_cert_expiry", kCertHelp,
            static_cast<double>(*r.earliest_cert_expiry));
}

Outcome judge_http(const HttpResponse& r, const HttpExpectations& e) {
  auto fail = [&](Reason reason, std::string msg) {
    Outcome o = Outcome::failure(reason, std::move(msg));
    add_http_samples(o, r);
    return o;
  };
  if (!r.ok) return fail(r.reason, r.error);
  if (!e.status.matches(r.status))
    return fail(Reason::http_status,
                "HTTP status " + std::to_string(r.status) + ", expected " + e.status.describe());
  for (const auto& re : e.body_regex)
    if (!RE2::PartialMatch(r.body, *re))
      return fail(Reason::assertion, "body does not match /" + re->pattern() + "/");
  for (const auto& re : e.body_not_regex)
    if (RE2::PartialMatch(r.body, *re))
      return fail(Reason::assertion, "body matches /" + re->pattern() + "/");
  if (!e.json.empty()) {
    auto doc = nlohmann::json::parse(r.body, nullptr, false);
    if (doc.is_discarded()) return fail(Reason::assertion, "body is not valid JSON");
    for (const auto& [path, want] : e.json) {
      const auto* got = json_lookup(doc, path);
      if (!got) return fail(Reason::assertion, "JSON path " + path + " is missing");
      if (!json_equal(*got, want))
        return fail(Reason::assertion,
                    "JSON " + path + " is " + json_brief(*got) + ", expected " + json_brief(want));
    }
  }
  for (const auto& [name, re] : e.headers) {
    const auto* v = r.header(name);
    if (!v) return fail(Reason::assertion, "response has no header " + name);
    if (!RE2::PartialMatch(*v, *re))
      return fail(Reason::assertion, "header " + name + " does not match /" + re->pattern() + "/");
  }
  if (e.cert_min_days) {
    if (!r.earliest_cert_expiry)
      return fail(Reason::assertion, "no TLS certificate to check (cert_min_days is set)");
    double days =
        (static_cast<double>(*r.earliest_cert_expiry) - static_cast<double>(std::time(nullptr))) /
        86400.0;
    if (days < *e.cert_min_days) {
      char buf[128];
      std::snprintf(buf, sizeof buf,
                    "certificate expires in %.1f days, fewer than cert_min_days %d", days,
                    *e.cert_min_days);
      return fail(Reason::assertion, buf);
    }
  }
  Outcome o = Outcome::success();
  add_http_samples(o, r);
  return o;
}

void HttpProbe::run(RunContextPtr ctx, Done done) {
  HttpRequest req = request_;
  if (auto missing = attach_bearer(req, bearer_from_, *ctx)) return done(std::move(*missing));
  ctx->http(std::move(req), [this, done](HttpResponse r) { done(judge_http(r, expect_)); });
}

std::unique_ptr<Probe> HttpProbe::parse(Section& s) {
  auto req = parse_http_request(s);
  auto bearer = parse_bearer_from(s);
  auto expect = parse_expectations(s);
  if (!req) return nullptr;
  return std::make_unique<HttpProbe>(std::move(*req), std::move(expect), std::move(bearer));
}

}  // namespace pes
