#include "tests/support/agent_process.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/support/fixture.h"

namespace pes::test {

namespace {

size_t collect(char* data, size_t size, size_t n, void* userp) {
  static_cast<std::string*>(userp)->append(data, size * n);
  return size * n;
}

HttpResult request(const std::string& url, bool post, const std::string& userpwd,
                   const std::string& ca) {
  HttpResult r;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> c(curl_easy_init(), &curl_easy_cleanup);
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, &collect);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c.get(), CURLOPT_TIMEOUT_MS, 20000L);
  curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
  if (post) {
    curl_easy_setopt(c.get(), CURLOPT_POST, 1L);
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, "");
  }
  if (!userpwd.empty()) curl_easy_setopt(c.get(), CURLOPT_USERPWD, userpwd.c_str());
  if (!ca.empty()) curl_easy_setopt(c.get(), CURLOPT_CAINFO, ca.c_str());
  CURLcode code = curl_easy_perform(c.get());
  if (code != CURLE_OK) {
    r.error = curl_easy_strerror(code);
    return r;
  }
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &r.status);
  return r;
}

}  // namespace

HttpResult http_get(const std::string& url, const std::string& userpwd,
                    const std::string& ca_file) {
  return request(url, false, userpwd, ca_file);
}

HttpResult http_post(const std::string& url, const std::string& userpwd) {
  return request(url, true, userpwd, "");
}

double metric_value(const std::string& exposition, const std::string& series) {
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind(series, 0) != 0) continue;
    auto space = line.rfind(' ');
    if (space == std::string::npos) continue;
    return std::strtod(line.c_str() + space + 1, nullptr);
  }
  return std::nan("");
}

AgentProcess::AgentProcess(const std::string& config_file, std::vector<std::string> extra_args,
                           bool wait_ready) {
  port_ = free_port();
  log_file_ = make_temp_dir("pes-agent-log-") + "/agent.log";
  std::vector<std::string> args = {PES_AGENT_BINARY, "--config.file=" + config_file,
                                   "--web.listen-address=127.0.0.1:" + std::to_string(port_)};
  for (auto& a : extra_args) args.push_back(std::move(a));
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    int fd = open(log_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  if (!wait_ready) return;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < until) {
    if (!running()) throw std::runtime_error("pes-agent exited at start:\n" + log());
    if (get("/-/ready").status == 200) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("pes-agent not ready after 15s:\n" + log());
}

AgentProcess::~AgentProcess() {
  stop(std::chrono::seconds(5));
  // With ASan's log_path set (scripts/test-sanitizers.sh) reports go to files instead; UBSan
  // and unset log_path write to stderr, which is this log.
  if (!log_file_.empty()) expect_no_sanitizer_report("pes-agent", log());
}

std::string AgentProcess::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::string AgentProcess::metrics() const { return get("/metrics").body; }

double AgentProcess::metric(const std::string& series) const {
  return metric_value(metrics(), series);
}

double series_value(const std::string& exposition, const std::vector<std::string>& parts) {
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    bool all = true;
    for (const auto& p : parts) all = all && line.find(p) != std::string::npos;
    if (all) return std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
  }
  return std::nan("");
}

bool wait_for_series(const AgentProcess& agent, const std::vector<std::string>& parts, double value,
                     std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (series_value(agent.metrics(), parts) == value) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return series_value(agent.metrics(), parts) == value;
}

bool AgentProcess::wait_for_metric(const std::string& series, double value,
                                   std::chrono::milliseconds timeout) const {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (metric(series) == value) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return metric(series) == value;
}

void AgentProcess::signal(int sig) const {
  if (pid_ > 0) ::kill(pid_, sig);
}

bool AgentProcess::running() const {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  if (r == pid_) {
    const_cast<AgentProcess*>(this)->exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    const_cast<AgentProcess*>(this)->pid_ = 0;
  }
  return false;
}

int AgentProcess::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return exit_status_;
  ::kill(pid_, SIGTERM);
  auto until = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < until) {
    if (!running()) return exit_status_;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = 0;
  exit_status_ = -1;
  return exit_status_;
}

std::string AgentProcess::log() const {
  std::ifstream in(log_file_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace pes::test
