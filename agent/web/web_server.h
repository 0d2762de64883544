// The agent's single HTTP listener: one Boost.Asio event-loop thread serves every connection
// (HTTP/1.1 with Boost.Beast, optional TLS over OpenSSL), with per-connection deadlines, a cap on
// connections that closes the oldest idle one first, and slow handlers on a small thread pool so
// that nothing a client does stops the others being answered. Basic auth checks bcrypt hashes,
// like Prometheus' web config.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/config/config.h"

namespace pes {

class WebUsers;

struct WebRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;
  // Request headers, names in lower case ("accept-encoding", "authorization"); repeated headers
  // are joined with ", ".
  std::map<std::string, std::string> headers;

  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct WebResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Where a route's handler runs. `io_thread` is for handlers that answer in microseconds and take
// no lock a slow handler may hold (/-/healthy, /-/ready); everything else runs on the handler pool.
enum class Dispatch { pool, io_thread };

class WebServer {
 public:
  using Handler = std::function<WebResponse(const WebRequest&)>;
  WebServer();
  ~WebServer();
  WebServer(const WebServer&) = delete;
  WebServer& operator=(const WebServer&) = delete;

  // Register every route before start(); paths match exactly.
  void route(const std::string& path, Handler handler, Dispatch how = Dispatch::pool);
  // Starts listening; throws std::runtime_error with the reason on failure (address in use, bad
  // certificate or key).
  void start(const std::string& listen_address, const WebConfig& web);
  // Closes the listener and every connection; waits for handlers in progress.
  void stop();
  // The configured users can change on reload; TLS settings and limits need a restart.
  void set_users(std::vector<std::pair<std::string, std::string>> users);

  // Connections open now (for tests and the agent's own metrics).
  size_t connections() const;

  struct Impl;  // the running listener (web_server.cpp)

 private:
  struct RouteEntry {
    Handler handler;
    Dispatch how = Dispatch::pool;
  };
  std::map<std::string, RouteEntry> routes_;
  std::unique_ptr<WebUsers> users_;
  std::unique_ptr<Impl> impl_;
};

// Checks a password against a bcrypt ($2a$/$2b$/$2y$) hash with libxcrypt.
bool bcrypt_matches(const std::string& password, const std::string& hash);

}  // namespace pes
