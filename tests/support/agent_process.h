// The built pes-agent binary as a child process for e2e tests: started on a free loopback port,
// scraped over HTTP with libcurl, signalled, and stopped by PID.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace pes::test {

struct HttpResult {
  long status = 0;  // 0 when the request failed
  std::string body;
  std::string error;
};

// A GET/POST with libcurl (optional basic auth "user:pass", CA file for https).
HttpResult http_get(const std::string& url, const std::string& userpwd = "",
                    const std::string& ca_file = "");
HttpResult http_post(const std::string& url, const std::string& userpwd = "");

class AgentProcess {
 public:
  // Starts `pes-agent --config.file=CONFIG --web.listen-address=127.0.0.1:<free port>` plus extra
  // arguments, logs to a file, and waits until /-/ready answers 200 (throws on failure).
  explicit AgentProcess(const std::string& config_file, std::vector<std::string> extra_args = {},
                        bool wait_ready = true);
  ~AgentProcess();
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string url(const std::string& path) const;
  HttpResult get(const std::string& path) const { return http_get(url(path)); }
  std::string metrics() const;
  // The value of the first series line that starts with `series` (e.g. `probe_up{probe="a"`),
  // or NaN if absent.
  double metric(const std::string& series) const;
  // Polls `metric(series) == value` until true or the timeout; returns the final check.
  bool wait_for_metric(const std::string& series, double value,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  void signal(int sig) const;
  // SIGTERM and wait; returns the exit status (or -1 when killed).
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  std::string log() const;
  bool running() const;

 private:
  int port_ = 0;
  pid_t pid_ = 0;
  std::string log_file_;
  int exit_status_ = -1;
};

// Extracts the value of the first line starting with `series` from a text exposition.
double metric_value(const std::string& exposition, const std::string& series);

// The value of the first series line containing every one of `parts` (in any order), or NaN.
double series_value(const std::string& exposition, const std::vector<std::string>& parts);

// Polls the agent's /metrics until `series_value(parts) == value` or the timeout; returns the
// final check.
bool wait_for_series(const AgentProcess& agent, const std::vector<std::string>& parts, double value,
                     std::chrono::milliseconds timeout = std::chrono::seconds(20));

}  // namespace pes::test
