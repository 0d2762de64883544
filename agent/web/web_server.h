// The agent's single HTTP listener (civetweb): routes requests to handlers, with optional TLS and
// basic auth (bcrypt hashes, like Prometheus' web config).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/config/config.h"
#include "agent/web/tls_terminator.h"

struct mg_context;
struct mg_connection;

namespace pes {

struct WebRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;
};

struct WebResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

class WebServer {
 public:
  using Handler = std::function<WebResponse(const WebRequest&)>;
  WebServer();
  ~WebServer();
  WebServer(const WebServer&) = delete;
  WebServer& operator=(const WebServer&) = delete;

  void route(const std::string& path, Handler handler);
  // Starts listening; throws std::runtime_error with civetweb's reason on failure.
  void start(const std::string& listen_address, const WebConfig& web);
  void stop();
  // The configured users can change on reload; TLS settings need a restart.
  void set_users(std::vector<std::pair<std::string, std::string>> users);

 private:
  static int dispatch(mg_connection* conn, void* self);
  bool authorized(mg_connection* conn) const;

  mg_context* ctx_ = nullptr;
  std::unique_ptr<TlsTerminator> tls_;
  std::map<std::string, Handler> routes_;
  mutable std::mutex users_mu_;
  std::vector<std::pair<std::string, std::string>> users_;
};

// Checks a password against a bcrypt ($2a$/$2b$/$2y$) hash with libxcrypt.
bool bcrypt_matches(const std::string& password, const std::string& hash);

}  // namespace pes
