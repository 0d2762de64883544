#include "agent/web/web_server.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <crypt.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace pes {

namespace {

std::string url_decode(const char* s, size_t n) {
  std::string out(n + 1, '\0');
  int len = mg_url_decode(s, static_cast<int>(n), out.data(), static_cast<int>(out.size()), 1);
  out.resize(len < 0 ? 0 : static_cast<size_t>(len));
  return out;
}

std::map<std::string, std::string> parse_query(const char* qs) {
  std::map<std::string, std::string> out;
  if (!qs) return out;
  std::string q(qs);
  size_t pos = 0;
  while (pos <= q.size()) {
    size_t amp = q.find('&', pos);
    if (amp == std::string::npos) amp = q.size();
    std::string part = q.substr(pos, amp - pos);
    if (!part.empty()) {
      auto eq = part.find('=');
      std::string k = url_decode(part.data(), eq == std::string::npos ? part.size() : eq);
      std::string v =
          eq == std::string::npos ? "" : url_decode(part.data() + eq + 1, part.size() - eq - 1);
      out[k] = v;
    }
    pos = amp + 1;
  }
  return out;
}

bool base64_decode(const std::string& in, std::string& out) {
  std::string buf(in.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(buf.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return false;
  size_t len = static_cast<size_t>(n);
  if (!in.empty() && in.back() == '=') --len;
  if (in.size() > 1 && in[in.size() - 2] == '=') --len;
  buf.resize(len);
  out = buf;
  return true;
}

// A free loopback port for the private plaintext listener behind the TLS terminator.
int private_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  close(fd);
  if (port == 0) throw std::runtime_error("cannot find a free loopback port");
  return port;
}

}  // namespace

bool bcrypt_matches(const std::string& password, const std::string& hash) {
  if (hash.rfind("$2", 0) != 0) return false;
  crypt_data data{};
  const char* out = crypt_r(password.c_str(), hash.c_str(), &data);
  if (!out || out[0] == '*') return false;
  size_t n = std::strlen(out);
  return n == hash.size() && CRYPTO_memcmp(out, hash.data(), n) == 0;
}

WebServer::WebServer() = default;

WebServer::~WebServer() { stop(); }

void WebServer::route(const std::string& path, Handler handler) {
  routes_[path] = std::move(handler);
}

void WebServer::set_users(std::vector<std::pair<std::string, std::string>> users) {
  std::lock_guard lock(users_mu_);
  users_ = std::move(users);
}

void WebServer::start(const std::string& listen_address, const WebConfig& web) {
  set_users(web.basic_auth_users);
  // With TLS, civetweb serves plaintext on a private loopback port and TlsTerminator owns the
  // public address (Debian 12's civetweb cannot do TLS with OpenSSL 3: it crashes).
  bool tls = !web.tls_cert_file.empty();
  std::string ports = tls ? "127.0.0.1:" + std::to_string(private_port()) : listen_address;
  std::vector<const char*> opts = {"listening_ports",    ports.c_str(), "num_threads",       "8",
                                   "request_timeout_ms", "30000",       "enable_keep_alive", "yes"};
  opts.push_back(nullptr);
  mg_callbacks callbacks{};
  callbacks.log_message = [](const mg_connection*, const char* message) {
    spdlog::warn("web listener: {}", message);
    return 1;
  };
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = this;
  init.configuration_options = opts.data();
  mg_error_data err{};
  char errbuf[256] = {};
  err.text = errbuf;
  err.text_buffer_size = sizeof errbuf;
  ctx_ = mg_start2(&init, &err);
  if (!ctx_) throw std::runtime_error("cannot listen on " + listen_address + ": " + errbuf);
  if (tls) {
    auto colon = listen_address.rfind(':');
    std::string host = colon == std::string::npos ? "" : listen_address.substr(0, colon);
    int port = std::atoi(listen_address.substr(colon == std::string::npos ? 0 : colon + 1).c_str());
    tls_ = std::make_unique<TlsTerminator>();
    try {
      tls_->start(host, port, std::atoi(ports.substr(ports.rfind(':') + 1).c_str()),
                  web.tls_cert_file, web.tls_key_file);
    } catch (...) {
      mg_stop(ctx_);
      ctx_ = nullptr;
      tls_.reset();
      throw;
    }
  }
  // One catch-all handler; dispatch() routes by exact path.
  mg_set_request_handler(ctx_, "/", &WebServer::dispatch, this);
}

void WebServer::stop() {
  if (tls_) tls_->stop();
  tls_.reset();
  if (ctx_) mg_stop(ctx_);
  ctx_ = nullptr;
}

bool WebServer::authorized(mg_connection* conn) const {
  std::lock_guard lock(users_mu_);
  if (users_.empty()) return true;
  const char* h = mg_get_header(conn, "Authorization");
  if (!h || strncasecmp(h, "Basic ", 6) != 0) return false;
  std::string decoded;
  if (!base64_decode(h + 6, decoded)) return false;
  auto colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  std::string user = decoded.substr(0, colon);
  std::string pass = decoded.substr(colon + 1);
  for (const auto& [u, hash] : users_)
    if (u == user) return bcrypt_matches(pass, hash);
  return false;
}

int WebServer::dispatch(mg_connection* conn, void* p) {
  auto* self = static_cast<WebServer*>(p);
  const mg_request_info* info = mg_get_request_info(conn);
  WebRequest req;
  req.method = info->request_method ? info->request_method : "GET";
  req.path = info->local_uri ? info->local_uri : "/";
  req.query = parse_query(info->query_string);
  WebResponse resp;
  if (!self->authorized(conn)) {
    resp.status = 401;
    resp.body = "Unauthorized\n";
    resp.headers.emplace_back("WWW-Authenticate", "Basic realm=\"pes-agent\"");
  } else {
    auto it = self->routes_.find(req.path);
    if (it == self->routes_.end()) {
      resp.status = 404;
      resp.body = "Not found\n";
    } else {
      try {
        resp = it->second(req);
      } catch (const std::exception& e) {
        resp.status = 500;
        resp.body = std::string("internal error: ") + e.what() + "\n";
      }
    }
  }
  std::string head = "HTTP/1.1 " + std::to_string(resp.status) + " " +
                     mg_get_response_code_text(conn, resp.status) +
                     "\r\nContent-Type: " + resp.content_type +
                     "\r\nContent-Length: " + std::to_string(resp.body.size()) +
                     "\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n";
  for (const auto& [k, v] : resp.headers) head += k + ": " + v + "\r\n";
  head += "\r\n";
  mg_write(conn, head.data(), head.size());
  if (req.method != "HEAD") mg_write(conn, resp.body.data(), resp.body.size());
  return resp.status;
}

}  // namespace pes
