#include "probes/keycloak/login.h"

#include <curl/curl.h>
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <nlohmann/json.hpp>

#include "agent/core/redact.h"
#include "probes/common/http_step.h"
#include "probes/keycloak/base64url.h"

namespace pes::login {
namespace {

// Text from a page or a header quoted in a message: whitespace collapsed, printable, short.
std::string collapse(std::string_view s, size_t max = 200) {
  std::string out;
  bool space = false;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isspace(c)) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += (c >= 0x20 && c != 0x7f) ? ch : '?';
    if (out.size() >= max) {
      out += "...";
      break;
    }
  }
  return out;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() &&
               std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// --- libxml2 ---------------------------------------------------------------------------------

struct XmlDocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
using XmlDocPtr = std::unique_ptr<xmlDoc, XmlDocFree>;

struct XmlCharFree {
  void operator()(xmlChar* s) const { xmlFree(s); }
};
using XmlString = std::unique_ptr<xmlChar, XmlCharFree>;

bool is(const xmlNode* n, const char* name) {
  return n->type == XML_ELEMENT_NODE && n->name != nullptr &&
         xmlStrcasecmp(n->name, reinterpret_cast<const xmlChar*>(name)) == 0;
}

std::string attr(const xmlNode* n, const char* name) {
  XmlString v(xmlGetProp(n, reinterpret_cast<const xmlChar*>(name)));
  return v ? std::string(reinterpret_cast<const char*>(v.get())) : std::string();
}

std::string text_of(const xmlNode* n) {
  XmlString v(xmlNodeGetContent(n));
  return v ? collapse(reinterpret_cast<const char*>(v.get())) : std::string();
}

bool has_class(const xmlNode* n, std::string_view cls) {
  const std::string classes = attr(n, "class");
  size_t pos = 0;
  while (pos < classes.size()) {
    const size_t end = std::min(classes.find(' ', pos), classes.size());
    if (std::string_view(classes).substr(pos, end - pos) == cls) return true;
    pos = end + 1;
  }
  return false;
}

template <typename F>
void walk(const xmlNode* n, F&& visit) {
  for (; n != nullptr; n = n->next) {
    if (n->type == XML_ELEMENT_NODE) {
      visit(n);
      walk(n->children, visit);
    }
  }
}

Form read_form(const xmlNode* form) {
  Form f;
  f.id = attr(form, "id");
  f.action = attr(form, "action");
  f.method = ascii_lower(attr(form, "method"));
  if (f.method.empty()) f.method = "get";
  std::string last_text_input;
  walk(form->children, [&](const xmlNode* n) {
    if (!is(n, "input")) return;
    const std::string name = attr(n, "name");
    const std::string type = ascii_lower(attr(n, "type"));
    if (type == "password" && f.password_field.empty()) {
      f.password_field = name;
      if (f.username_field.empty()) f.username_field = last_text_input;
    }
    if (name == "username") f.username_field = name;
    if ((type.empty() || type == "text" || type == "email") && !name.empty())
      last_text_input = name;
    // What a browser submits without a click: not buttons, not unchecked boxes.
    if (name.empty() || type == "submit" || type == "button" || type == "image" || type == "reset")
      return;
    if ((type == "checkbox" || type == "radio") && xmlHasProp(n, BAD_CAST "checked") == nullptr)
      return;
    f.fields.emplace_back(name, attr(n, "value"));
  });
  return f;
}

// Keycloak's message on a page, most specific first: the error page's text, a field error
// (keycloak.v2: #input-error-username; the older theme: #input-error), an alert's text.
std::string page_message(const xmlNode* root, bool& error_page) {
  std::string error_text, field_error, feedback, alert;
  walk(root, [&](const xmlNode* n) {
    const std::string id = attr(n, "id");
    if (id == "kc-error-message" && error_text.empty()) error_text = text_of(n);
    if (id.starts_with("input-error") && !id.starts_with("input-error-container") &&
        field_error.empty())
      field_error = text_of(n);
    if (has_class(n, "kc-feedback-text") && feedback.empty()) feedback = text_of(n);
    if ((id == "kc-alert" || has_class(n, "alert-error") || has_class(n, "pf-m-danger")) &&
        alert.empty())
      alert = text_of(n);
  });
  error_page = !error_text.empty();
  for (const std::string* s : {&error_text, &field_error, &feedback, &alert})
    if (!s->empty()) return *s;
  return {};
}

}  // namespace

// --- pure parts ----------------------------------------------------------------------------

std::string pkce_challenge(std::string_view verifier) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(verifier.data()), verifier.size(), digest);
  return jwt::base64url_encode(
      std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

std::string random_token() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    // OpenSSL's CSPRNG does not fail once seeded; if it ever does, the run still must not reuse
    // a fixed value, so mix the clock in (the flow stays correct, only less unpredictable).
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    for (size_t i = 0; i < sizeof bytes; ++i)
      bytes[i] = static_cast<unsigned char>(now >> (i % 8 * 8));
  }
  return jwt::base64url_encode(
      std::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes));
}

Page read_page(std::string_view html) {
  Page page;
  // NONET: never fetch anything the page refers to; RECOVER: real pages are not valid HTML.
  XmlDocPtr doc(htmlReadMemory(html.data(), static_cast<int>(html.size()), nullptr, "UTF-8",
                               HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                                   HTML_PARSE_NONET | HTML_PARSE_NOBLANKS));
  if (!doc) return page;
  const xmlNode* root = xmlDocGetRootElement(doc.get());
  if (root == nullptr) return page;
  page.parsed = true;
  std::optional<Form> first_with_password;
  walk(root, [&](const xmlNode* n) {
    if (is(n, "title") && page.title.empty()) page.title = text_of(n);
    if (!is(n, "form")) return;
    page.has_form = true;
    Form f = read_form(n);
    if (f.password_field.empty()) return;
    if (f.id == "kc-form-login" && !(page.login && page.login->id == "kc-form-login")) {
      page.login = std::move(f);
    } else if (!first_with_password) {
      first_with_password = std::move(f);
    }
  });
  if (!page.login) page.login = std::move(first_with_password);
  page.message = page_message(root, page.error_page);
  return page;
}

std::optional<Url> parse_url(std::string_view url) {
  const size_t colon = url.find("://");
  if (colon == std::string_view::npos) return std::nullopt;
  Url u;
  u.scheme = ascii_lower(url.substr(0, colon));
  if (u.scheme != "http" && u.scheme != "https") return std::nullopt;
  std::string_view rest = url.substr(colon + 3);
  if (const size_t hash = rest.find('#'); hash != std::string_view::npos)
    rest = rest.substr(0, hash);
  const size_t end = std::min(rest.find_first_of("/?"), rest.size());
  std::string_view authority = rest.substr(0, end);
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos)
    authority = authority.substr(at + 1);
  if (authority.empty()) return std::nullopt;
  u.authority = ascii_lower(authority);
  rest = rest.substr(end);
  const size_t q = rest.find('?');
  u.path = std::string(rest.substr(0, q));
  if (q != std::string_view::npos) u.query = std::string(rest.substr(q + 1));
  if (u.path.empty()) u.path = "/";
  return u;
}

std::string resolve_url(std::string_view base, std::string_view ref) {
  if (parse_url(ref)) return std::string(ref);
  const auto b = parse_url(base);
  if (!b) return std::string(ref);
  if (ref.starts_with("//")) return b->scheme + ":" + std::string(ref);
  if (ref.starts_with("/")) return b->origin() + std::string(ref);
  if (ref.empty()) return std::string(base);
  if (ref.starts_with("?")) return b->origin() + b->path + std::string(ref);
  const std::string dir = b->path.substr(0, b->path.rfind('/') + 1);
  return b->origin() + dir + std::string(ref);
}

void CookieJar::store(std::string_view url,
                      const std::vector<std::pair<std::string, std::string>>& headers,
                      int64_t now_unix) {
  const auto u = parse_url(url);
  if (!u) return;
  for (const auto& [name, value] : headers) {
    if (name != "set-cookie") continue;
    std::vector<std::string_view> parts;
    for (std::string_view rest(value); !rest.empty();) {
      const size_t semi = std::min(rest.find(';'), rest.size());
      std::string_view part = rest.substr(0, semi);
      while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
      while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
      parts.push_back(part);
      rest = semi < rest.size() ? rest.substr(semi + 1) : std::string_view();
    }
    if (parts.empty()) continue;
    const size_t eq = parts[0].find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    // The default path is the request path's directory (RFC 6265 §5.1.4).
    const size_t slash = u->path.rfind('/');
    Cookie c{std::string(parts[0].substr(0, eq)), std::string(parts[0].substr(eq + 1)),
             u->authority, slash == 0 ? "/" : u->path.substr(0, slash)};
    if (c.value.size() >= 2 && c.value.front() == '"' && c.value.back() == '"')
      c.value = c.value.substr(1, c.value.size() - 2);
    bool expired = false;
    // Path, Max-Age and Expires matter here; Domain is ignored (host-only cookies).
    for (size_t i = 1; i < parts.size(); ++i) {
      const size_t aeq = parts[i].find('=');
      const std::string key = ascii_lower(parts[i].substr(0, aeq));
      const std::string val =
          aeq == std::string_view::npos ? std::string() : std::string(parts[i].substr(aeq + 1));
      if (key == "path" && val.starts_with("/")) c.path = val;
      if (key == "max-age") expired = expired || val.empty() || val.front() == '-' || val == "0";
      if (key == "expires") {
        const time_t t = curl_getdate(val.c_str(), nullptr);
        expired = expired || (t != -1 && t <= now_unix);
      }
    }
    std::erase_if(cookies_, [&](const Cookie& o) {
      return o.name == c.name && o.host == c.host && o.path == c.path;
    });
    if (!expired) cookies_.push_back(std::move(c));
  }
}

std::string CookieJar::header_for(std::string_view url) const {
  const auto u = parse_url(url);
  if (!u) return {};
  std::string out;
  for (const auto& c : cookies_) {
    if (c.host != u->authority) continue;
    const bool path_ok =
        u->path.starts_with(c.path) &&
        (c.path.back() == '/' || u->path.size() == c.path.size() || u->path[c.path.size()] == '/');
    if (!path_ok) continue;
    if (!out.empty()) out += "; ";
    out += c.name + "=" + c.value;
  }
  return out;
}

Callback parse_callback(std::string_view location, std::string_view redirect_uri) {
  Callback cb;
  const auto got = parse_url(location);
  const auto want = parse_url(redirect_uri);
  if (!got || !want) return cb;
  cb.is_redirect_uri =
      got->scheme == want->scheme && got->authority == want->authority && got->path == want->path;
  std::string_view q(got->query);
  while (!q.empty()) {
    const size_t amp = std::min(q.find('&'), q.size());
    const std::string_view kv = q.substr(0, amp);
    const size_t eq = kv.find('=');
    const std::string key = percent_decode(kv.substr(0, eq));
    const std::string val = eq == std::string_view::npos ? "" : percent_decode(kv.substr(eq + 1));
    if (key == "code") cb.code = val;
    if (key == "state") cb.state = val;
    if (key == "iss") cb.iss = val;
    if (key == "error") cb.error = val;
    if (key == "error_description") cb.error_description = val;
    if (key == "session_state") cb.session_state = val;
    q = amp < q.size() ? q.substr(amp + 1) : std::string_view();
  }
  return cb;
}

std::string authorization_url(std::string_view endpoint, std::string_view client_id,
                              std::string_view redirect_uri, std::string_view scope,
                              std::string_view state, std::string_view nonce,
                              std::string_view challenge) {
  const std::string query = oidc::form_body({{"response_type", "code"},
                                             {"client_id", std::string(client_id)},
                                             {"redirect_uri", std::string(redirect_uri)},
                                             {"scope", std::string(scope)},
                                             {"state", std::string(state)},
                                             {"nonce", std::string(nonce)},
                                             {"code_challenge", std::string(challenge)},
                                             {"code_challenge_method", "S256"}});
  return std::string(endpoint) + (endpoint.find('?') == std::string_view::npos ? "?" : "&") + query;
}

std::string with_openid(std::string_view scope) {
  for (std::string_view rest = scope; !rest.empty();) {
    const size_t sp = std::min(rest.find(' '), rest.size());
    if (rest.substr(0, sp) == "openid") return std::string(scope);
    rest = sp < rest.size() ? rest.substr(sp + 1) : std::string_view();
  }
  return scope.empty() ? "openid" : "openid " + std::string(scope);
}

std::string check_id_token(const nlohmann::json& claims, std::string_view client_id,
                           std::string_view nonce) {
  bool aud_ok = false;
  if (auto it = claims.find("aud"); it != claims.end()) {
    if (it->is_string()) aud_ok = it->get_ref<const std::string&>() == client_id;
    if (it->is_array())
      for (const auto& a : *it)
        aud_ok = aud_ok || (a.is_string() && a.get_ref<const std::string&>() == client_id);
  }
  if (!aud_ok) return "aud does not contain the client " + collapse(client_id, 64);
  auto it = claims.find("nonce");
  if (it == claims.end() || !it->is_string()) return "no nonce (the request sent one)";
  if (it->get_ref<const std::string&>() != nonce)
    return "nonce does not match the request's (a replayed token?)";
  return {};
}

// --- the flow --------------------------------------------------------------------------------

namespace {

constexpr size_t kMaxPage = 1 << 20;
constexpr int kMaxHops = 5;  // same-origin redirects followed by hand (cookies kept)

int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool is_redirect(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// One login: its own cookie jar, PKCE verifier, state and nonce. Handlers run on the event loop.
class LoginRun : public std::enable_shared_from_this<LoginRun> {
 public:
  LoginRun(RunContextPtr ctx, std::shared_ptr<const LoginSpec> spec, TlsOptions tls,
           oidc::Discovery discovery, oidc::ClientAuth auth, Hooks hooks,
           std::function<void(Result)> done)
      : ctx_(std::move(ctx)),
        spec_(std::move(spec)),
        tls_(std::move(tls)),
        discovery_(std::move(discovery)),
        auth_(auth),
        hooks_(std::move(hooks)),
        done_(std::move(done)) {}

  void start() {
    if (discovery_.authorization_endpoint.empty())
      return fail_now("authorize", Reason::protocol,
                      "the discovery document has no authorization_endpoint");
    verifier_ = random_token();
    state_ = random_token();
    nonce_ = random_token();
    authorize();
  }

 private:
  // 1. The authorization request; Keycloak answers with its login page.
  void authorize() {
    hooks_.begin("authorize");
    const std::string url =
        authorization_url(discovery_.authorization_endpoint, spec_->client_id, spec_->redirect_uri,
                          spec_->scope, state_, nonce_, pkce_challenge(verifier_));
    trace("the authorization request, with PKCE (S256), a fresh state and a fresh nonce");
    get(url, &LoginRun::on_login_page);
  }

  void on_login_page(HttpResponse r) {
    if (!r.ok) return fail(r.reason, r.error);
    jar_.store(url_, r.headers, now_unix());
    if (is_redirect(r.status)) return follow(r, &LoginRun::on_login_page);
    const Page page = read_page(r.body);
    if (r.status != 200) {
      if (page.message.find("redirect_uri") != std::string::npos)
        return fail(Reason::config, "the redirect URI is refused: " + page.message + " (" +
                                        collapse(spec_->redirect_uri) + ")");
      return fail(Reason::http_status, "the login page does not render: HTTP status " +
                                           std::to_string(r.status) + page_says(page));
    }
    if (!page.login)
      return fail(Reason::protocol,
                  "the login page does not render: no form with a password "
                  "field" +
                      titled(page) + page_says(page));
    const std::string action = resolve_url(url_, page.login->action);
    const auto from = parse_url(url_);
    const auto to = parse_url(action);
    if (!from || !to || from->origin() != to->origin())
      return fail(Reason::protocol, "the login form posts to another origin (" +
                                        strip_userinfo(collapse(action)) +
                                        "); not sending the "
                                        "password there");
    hooks_.end();
    trace("login page" + titled(page) + " with form '" + page.login->id + "', " +
          std::to_string(jar_.size()) + " cookies");
    submit(*page.login, action);
  }

  // 2. The credential POST, with the page's hidden fields and the cookies Keycloak set.
  void submit(const Form& form, const std::string& action) {
    hooks_.begin("login");
    Fields fields;
    bool user_set = false, password_set = false;
    for (const auto& [name, value] : form.fields) {
      if (name == form.username_field && !user_set) {
        fields.emplace_back(name, spec_->username);
        user_set = true;
      } else if (name == form.password_field && !password_set) {
        fields.emplace_back(name, spec_->password);
        password_set = true;
      } else {
        fields.emplace_back(name, value);
      }
    }
    if (!user_set)
      fields.emplace_back(form.username_field.empty() ? "username" : form.username_field,
                          spec_->username);
    if (!password_set) fields.emplace_back(form.password_field, spec_->password);
    HttpRequest req = request(action);
    req.method = "POST";
    req.body = oidc::form_body(fields);
    req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    trace("POST the credentials of user '" + collapse(spec_->username, 64) +
          "' (password not "
          "shown)");
    send(std::move(req), &LoginRun::on_login_answer);
  }

  void on_login_answer(HttpResponse r) {
    if (!r.ok) return fail(r.reason, r.error);
    jar_.store(url_, r.headers, now_unix());
    if (is_redirect(r.status)) return follow(r, &LoginRun::on_login_answer);
    const Page page = read_page(r.body);
    if (r.status == 200 && page.login)
      return fail(Reason::auth, "the credentials are refused" +
                                    (page.message.empty() ? std::string(" (the login form came "
                                                                        "back)")
                                                          : ": " + page.message));
    if (r.status == 200 && page.has_form)
      return fail(Reason::auth, "Keycloak wants more than the password" + titled(page) +
                                    page_says(page) +
                                    " (a required action, OTP or consent for this user?)");
    if (page.error_page || r.status >= 400)
      return fail(Reason::http_status,
                  "Keycloak could not check the credentials: HTTP status " +
                      std::to_string(r.status) + ", error page" + page_says(page) +
                      " (an error page instead of a verdict: a backend Keycloak checks "
                      "credentials with, such as its LDAP user federation, failed)");
    fail(Reason::protocol, "the login answered HTTP status " + std::to_string(r.status) +
                               " without the redirect to redirect_uri" + titled(page));
  }

  // 3. The redirect carrying the code: read from Location, never requested.
  void on_callback(const Callback& cb) {
    if (!cb.error.empty()) {
      const Reason reason = cb.error == "access_denied" ? Reason::auth : Reason::config;
      return fail(reason,
                  "the authorization is refused: error " + collapse(cb.error, 64) +
                      (cb.error_description.empty() ? std::string()
                                                    : ": " + collapse(cb.error_description)));
    }
    if (cb.state != state_)
      return fail(Reason::protocol, "the redirect's state does not match the request's");
    if (!cb.iss.empty() && cb.iss != discovery_.issuer)
      return fail(Reason::protocol, "the redirect names issuer " + collapse(cb.iss) + ", not " +
                                        collapse(discovery_.issuer));
    if (cb.code.empty()) return fail(Reason::protocol, "the redirect carries no code");
    hooks_.end();
    trace("redirected to redirect_uri with a code (not shown, not followed)");
    exchange(cb.code);
  }

  // 4. The code exchange, with the PKCE verifier.
  void exchange(const std::string& code) {
    hooks_.begin("token");
    Fields fields{{"grant_type", "authorization_code"},
                  {"code", code},
                  {"redirect_uri", spec_->redirect_uri},
                  {"code_verifier", verifier_}};
    HttpRequest req = request(discovery_.token_endpoint);
    req.method = "POST";
    req.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                   {"Accept", "application/json"}};
    if (auth_ == oidc::ClientAuth::basic) {
      req.headers.emplace_back(
          "Authorization",
          "Basic " + oidc::base64_encode(oidc::form_encode(spec_->client_id) + ":" +
                                         oidc::form_encode(spec_->client_secret)));
    } else {
      fields.emplace_back("client_id", spec_->client_id);
      if (auth_ == oidc::ClientAuth::post)
        fields.emplace_back("client_secret", spec_->client_secret);
    }
    req.body = oidc::form_body(fields);
    req.headers.erase(std::remove_if(req.headers.begin(), req.headers.end(),
                                     [](const auto& h) { return h.first == "Cookie"; }),
                      req.headers.end());
    ctx_->http(std::move(req),
               [self = shared_from_this()](HttpResponse r) { self->on_exchange(std::move(r)); });
  }

  void on_exchange(HttpResponse r) {
    hooks_.end();
    if (!r.ok) return finish_failed(r.reason, r.error);
    Result res;
    res.token = oidc::parse_token_response(r.status, r.body);
    if (!res.token.ok)
      return finish_failed(res.token.reason, "the code exchange fails: " + res.token.message);
    const auto doc = nlohmann::json::parse(r.body, nullptr, false);
    if (auto it = doc.find("id_token"); it != doc.end() && it->is_string())
      res.id_token = it->get<std::string>();
    if (res.id_token.empty())
      return finish_failed(Reason::protocol,
                           "the code exchange fails: the answer has no id_token (is 'openid' in "
                           "the scope?)");
    res.ok = true;
    res.nonce = nonce_;
    trace("exchanged the code for an access token and an ID token (not shown)");
    done_(std::move(res));
  }

  // --- plumbing -------------------------------------------------------------------------

  // Follows a same-origin redirect by hand (so cookies go along and nothing leaves Keycloak);
  // a redirect to redirect_uri is the callback.
  void follow(const HttpResponse& r, void (LoginRun::*handler)(HttpResponse)) {
    const std::string* loc = r.header("location");
    if (loc == nullptr || loc->empty())
      return fail(Reason::protocol,
                  "HTTP status " + std::to_string(r.status) + " without a Location header");
    const std::string next = resolve_url(url_, *loc);
    const Callback cb = parse_callback(next, spec_->redirect_uri);
    if (cb.is_redirect_uri) return on_callback(cb);
    const auto from = parse_url(url_);
    const auto to = parse_url(next);
    if (!from || !to || from->origin() != to->origin())
      return fail(Reason::protocol, "redirected to another origin (" +
                                        strip_userinfo(collapse(to ? to->origin() : next)) +
                                        "), which a login check does not follow");
    if (++hops_ > kMaxHops)
      return fail(Reason::protocol, "more than " + std::to_string(kMaxHops) + " redirects");
    get(next, handler);
  }

  HttpRequest request(const std::string& url) {
    url_ = url;
    HttpRequest req = http_request(url, tls_, kMaxPage);
    req.follow_redirects = false;
    if (const std::string cookies = jar_.header_for(url); !cookies.empty())
      req.headers.emplace_back("Cookie", cookies);
    return req;
  }

  void get(const std::string& url, void (LoginRun::*handler)(HttpResponse)) {
    HttpRequest req = request(url);
    req.headers.emplace_back("Accept", "text/html");
    send(std::move(req), handler);
  }

  void send(HttpRequest req, void (LoginRun::*handler)(HttpResponse)) {
    ctx_->http(std::move(req), [self = shared_from_this(), handler](HttpResponse r) {
      ((*self).*handler)(std::move(r));
    });
  }

  static std::string titled(const Page& p) {
    return p.title.empty() ? std::string() : " (page '" + p.title + "')";
  }
  static std::string page_says(const Page& p) {
    return p.message.empty() ? std::string() : ": " + p.message;
  }

  void trace(const std::string& line) {
    if (ctx_->trace().enabled()) hooks_.trace(line);
  }

  void fail(Reason reason, std::string message) {
    hooks_.end();
    finish_failed(reason, std::move(message));
  }
  void fail_now(const char* step, Reason reason, std::string message) {
    hooks_.begin(step);
    fail(reason, std::move(message));
  }
  void finish_failed(Reason reason, std::string message) {
    Result res;
    res.reason = reason;
    res.message = std::move(message);
    done_(std::move(res));
  }

  const RunContextPtr ctx_;
  const std::shared_ptr<const LoginSpec> spec_;
  const TlsOptions tls_;
  const oidc::Discovery discovery_;
  const oidc::ClientAuth auth_;
  const Hooks hooks_;
  const std::function<void(Result)> done_;

  CookieJar jar_;
  std::string verifier_, state_, nonce_;  // never traced
  std::string url_;                       // the URL of the request in flight
  int hops_ = 0;
};

}  // namespace

void run(RunContextPtr ctx, std::shared_ptr<const LoginSpec> spec, TlsOptions tls,
         const oidc::Discovery& discovery, oidc::ClientAuth auth, Hooks hooks,
         std::function<void(Result)> done) {
  std::make_shared<LoginRun>(std::move(ctx), std::move(spec), std::move(tls), discovery, auth,
                             std::move(hooks), std::move(done))
      ->start();
}

}  // namespace pes::login
