#include "tests/support/fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <system_error>

#ifndef PES_SOURCE_DIR
#error "PES_SOURCE_DIR must be defined (tests/CMakeLists.txt sets it)"
#endif

namespace pes::test {
namespace {

using Clock = std::chrono::steady_clock;

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// The process's start time from /proc/PID/stat (field 22), empty if gone or a zombie.
std::string proc_start_time(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!in || !std::getline(in, stat)) return {};
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return {};
  std::istringstream rest(stat.substr(close_paren + 1));
  std::string field;
  std::vector<std::string> fields;
  while (rest >> field) fields.push_back(field);
  if (fields.size() < 20 || fields[0] == "Z" || fields[0] == "X") return {};
  return fields[19];
}

std::string trim_trailing_newlines(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

void wake(int fd) {
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(fd, &one, sizeof one);
}

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int bound_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) throw_errno("getsockname");
  return ntohs(a.sin_port);
}

bool can_bind(int type, int port) {
  Fd s(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  if (s.get() < 0) return false;
  sockaddr_in a = loopback(port);
  return ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Commands, files, ports

CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  if (argv.empty()) throw std::invalid_argument("run_command: empty argv");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw_errno("pipe2");
  Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw_errno("pipe2");
  Fd err_r(err_pipe[0]), err_w(err_pipe[1]);

  pid_t child = ::fork();
  if (child < 0) throw_errno("fork");
  if (child == 0) {
    // Only async-signal-safe calls from here on. Own process group, so the deadline can kill
    // the whole script; default signal dispositions (an ignored TERM would make servers
    // unstoppable); no descriptor of the test process leaks into the servers.
    ::setpgid(0, 0);
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD, SIGQUIT}) ::signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull < 0 || ::dup2(devnull, 0) < 0 || ::dup2(out_pipe[1], 1) < 0 ||
        ::dup2(err_pipe[1], 2) < 0) {
      ::_exit(126);
    }
    ::close_range(3, ~0U, 0);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  out_w.reset();
  err_w.reset();

  CommandResult result;
  auto deadline = Clock::now() + timeout;
  bool timed_out = false;
  std::vector<std::pair<Fd*, std::string*>> open_fds = {{&out_r, &result.out},
                                                        {&err_r, &result.err}};
  while (!open_fds.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    std::vector<pollfd> pfds;
    for (auto& [fd, _] : open_fds) pfds.push_back({fd->get(), POLLIN, 0});
    int n = ::poll(pfds.data(), pfds.size(), static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) throw_errno("poll");
    for (std::size_t i = pfds.size(); i-- > 0;) {
      if (pfds[i].revents == 0) continue;
      char buf[4096];
      ssize_t got = ::read(pfds[i].fd, buf, sizeof buf);
      if (got > 0) {
        open_fds[i].second->append(buf, static_cast<std::size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        open_fds.erase(open_fds.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
  }
  if (timed_out) {
    ::kill(-child, SIGKILL);
    ::kill(child, SIGKILL);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    result.exit_code = -1;
    result.err += "\n[run_command: killed after " + std::to_string(timeout.count()) + " ms]";
  } else {
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  expect_no_sanitizer_report(argv.empty() ? "" : argv[0], result.err);
  return result;
}

void expect_no_sanitizer_report(const std::string& process, const std::string& output) {
  for (const char* marker :
       {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error: "}) {
    auto at = output.find(marker);
    if (at == std::string::npos) continue;
    auto from = output.rfind('\n', at);
    ADD_FAILURE() << process << ": sanitizer report in its output:\n"
                  << output.substr(from == std::string::npos ? 0 : from + 1, 4000);
    return;
  }
}

double time_scale() {
  static const double scale = [] {
    const char* env = std::getenv("PES_TEST_TIME_SCALE");
    double v = env != nullptr ? std::strtod(env, nullptr) : 1.0;
    return v >= 1.0 ? v : 1.0;
  }();
  return scale;
}

int free_port() {
  static const std::string reservations = "/tmp/pes-fixture-ports";
  ::mkdir(reservations.c_str(), 01777);
  ::chmod(reservations.c_str(), 01777);
  int ephemeral_low = 32768;
  {
    std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
    in >> ephemeral_low;
  }
  int low = 20000, high = ephemeral_low - 1;
  if (ephemeral_low <= 21000) {
    low = ephemeral_low;
    high = 65535;
  }
  thread_local std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<int> pick(low, high);
  auto now = std::filesystem::file_time_type::clock::now();
  for (int attempt = 0; attempt < 500; ++attempt) {
    int port = pick(rng);
    if (!can_bind(SOCK_STREAM, port) || !can_bind(SOCK_DGRAM, port)) continue;
    std::string mark = reservations + "/" + std::to_string(port);
    std::error_code ec;
    auto stamp = std::filesystem::last_write_time(mark, ec);
    if (!ec && now - stamp > std::chrono::seconds(120)) std::filesystem::remove(mark, ec);
    if (::mkdir(mark.c_str(), 0755) == 0) return port;
  }
  throw std::runtime_error("free_port: no free loopback port found");
}

std::string make_temp_dir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw_errno("mkdtemp " + tmpl);
  return tmpl;
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("write_file: cannot open " + path);
  out << content;
  out.close();
  if (!out) throw std::runtime_error("write_file: cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("read_file: cannot open " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

// ---------------------------------------------------------------------------------------------
// Fixture

Fixture::Fixture(std::string server, FixtureOptions options)
    : server_(std::move(server)), options_(std::move(options)) {
  if (!std::filesystem::exists(script())) {
    throw std::runtime_error("no fixture script " + script());
  }
  dir_ = make_temp_dir("pes-fixture-" + server_ + "-");
  try {
    start();
  } catch (...) {
    try {
      stop();
    } catch (...) {
    }
    std::error_code ec;
    if (std::getenv("PES_KEEP_FIXTURES") == nullptr) std::filesystem::remove_all(dir_, ec);
    throw;
  }
}

Fixture::~Fixture() {
  try {
    stop();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pes::test::Fixture(%s): %s\n", server_.c_str(), e.what());
  }
  if (std::getenv("PES_KEEP_FIXTURES") != nullptr) {
    std::fprintf(stderr, "pes::test::Fixture(%s): kept %s\n", server_.c_str(), dir_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string Fixture::script() const {
  return std::string(PES_SOURCE_DIR) + "/tests/fixtures/" + server_ + ".sh";
}

void Fixture::start() {
  std::vector<std::string> argv = {"bash", script(), "start", dir_};
  for (const auto& [key, value] : options_) argv.push_back(key + "=" + value);
  argv.push_back("OWNER_PID=" + std::to_string(::getpid()));
  CommandResult r = run_command(argv);
  if (r.exit_code != 0) {
    throw std::runtime_error("fixture " + server_ + " failed to start (exit " +
                             std::to_string(r.exit_code) + ") in " + dir_ + ":\n" + r.out + r.err);
  }
  static const std::regex line_re("^([A-Z_][A-Z0-9_]*)=(.*)$");
  values_.clear();
  std::istringstream lines(r.out);
  std::string line;
  while (std::getline(lines, line)) {
    std::smatch m;
    if (std::regex_match(line, m, line_re)) values_[m[1]] = m[2];
  }
  pid_ = has("PID") ? static_cast<pid_t>(std::stol(get("PID"))) : 0;
}

void Fixture::stop() {
  if (dir_.empty()) return;
  CommandResult r = run_command({"bash", script(), "stop", dir_});
  pid_ = 0;
  if (r.exit_code != 0) {
    throw std::runtime_error("fixture " + server_ + " failed to stop (exit " +
                             std::to_string(r.exit_code) + "):\n" + r.out + r.err);
  }
}

void Fixture::restart() {
  stop();
  start();
}

void Fixture::kill(int sig) {
  if (pid_ > 0 && running()) ::kill(pid_, sig);
}

bool Fixture::running() const {
  if (pid_ <= 0) return false;
  std::string now = proc_start_time(pid_);
  if (now.empty()) return false;
  std::ifstream in(dir_ + "/pid.start");
  std::string recorded;
  if (in && std::getline(in, recorded) && !recorded.empty()) return recorded == now;
  return true;
}

const std::string& Fixture::get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    throw std::runtime_error("fixture " + server_ + " printed no " + key);
  }
  return it->second;
}

std::string Fixture::get_or(const std::string& key, const std::string& fallback) const {
  auto it = values_.find(key);
  return it == values_.end() ? fallback : it->second;
}

bool Fixture::has(const std::string& key) const { return values_.count(key) != 0; }

int Fixture::port(const std::string& key) const { return std::stoi(get(key)); }

std::string Fixture::log_tail(std::size_t lines) const {
  std::string path = get_or("LOG", dir_ + "/" + server_ + ".log");
  std::ifstream in(path);
  if (!in) return "(no log at " + path + ")";
  std::vector<std::string> all;
  std::string line;
  while (std::getline(in, line)) all.push_back(line);
  std::string out;
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) {
    out += all[i] + "\n";
  }
  return trim_trailing_newlines(out);
}

// ---------------------------------------------------------------------------------------------
// HungServer

HungServer::HungServer(HungMode mode, std::chrono::milliseconds interval, std::string garbage)
    : mode_(mode), interval_(interval), garbage_(std::move(garbage)) {
  if (garbage_.empty() && mode_ == HungMode::garbage) garbage_ = "\x16\x03\x01garbage\r\n\xff\xfe";
  if (interval_.count() <= 0) throw std::invalid_argument("HungServer: interval must be > 0");
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (listener.get() < 0) throw_errno("socket");
  int on = 1;
  ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in a = loopback(0);
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw_errno("bind");
  if (::listen(listener.get(), 128) != 0) throw_errno("listen");
  port_ = bound_port(listener.get());
  Fd waker(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (waker.get() < 0) throw_errno("eventfd");
  listen_fd_ = listener.release();
  wake_fd_ = waker.release();
  thread_ = std::thread([this] { loop(); });
}

HungServer::~HungServer() {
  wake(wake_fd_);
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_fd_);
}

namespace {

// Closes a socket with a RST instead of a FIN.
void close_with_rst(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

bool send_failed(ssize_t n) { return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK; }

}  // namespace

void HungServer::loop() {
  struct Client {
    Fd fd;
    Clock::time_point reset_at{};  // reset_after only
    std::size_t sent = 0;          // trickle: bytes sent so far
  };
  // The trickle's next byte: `garbage` one byte at a time, then 'x' forever.
  auto trickle_byte = [&](const Client& c) {
    return c.sent < garbage_.size() ? garbage_[c.sent] : 'x';
  };
  std::vector<Client> clients;
  const std::string flood_chunk(64 * 1024, 'x');
  auto next_tick = Clock::now() + interval_;
  auto drop = [&](std::size_t i) {
    clients.erase(clients.begin() + static_cast<std::ptrdiff_t>(i));
  };
  for (;;) {
    std::vector<pollfd> pfds = {{wake_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    // Watch for the peer going away (never POLLIN: we do not read), to drop its socket; a flood
    // writes whenever the peer has made room.
    short events = POLLRDHUP | (mode_ == HungMode::flood ? POLLOUT : 0);
    for (const auto& c : clients) pfds.push_back({c.fd.get(), events, 0});
    int timeout_ms = -1;
    if (!clients.empty() && (mode_ == HungMode::trickle || mode_ == HungMode::reset_after)) {
      auto wake_at = next_tick;
      if (mode_ == HungMode::reset_after) {
        wake_at = clients.front().reset_at;
        for (const auto& c : clients) wake_at = std::min(wake_at, c.reset_at);
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(wake_at - Clock::now());
      timeout_ms = static_cast<int>(std::max<long long>(0, left.count() + 1));
    }
    int n = ::poll(pfds.data(), pfds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) return;
    if (pfds[0].revents != 0) return;  // destructor
    for (std::size_t i = pfds.size(); i-- > 2;) {
      if (pfds[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
        drop(i - 2);
      } else if (pfds[i].revents & POLLOUT) {
        if (send_failed(::send(pfds[i].fd, flood_chunk.data(), flood_chunk.size(), MSG_NOSIGNAL)))
          drop(i - 2);
      }
    }
    if (pfds[1].revents & POLLIN) {
      for (;;) {
        Fd c(::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (c.get() < 0) break;
        connections_.fetch_add(1);
        if (mode_ == HungMode::reset) {
          close_with_rst(c.get());
          continue;  // c closes here
        }
        Client client{std::move(c), Clock::now() + interval_};
        if (mode_ == HungMode::trickle) {
          char first = trickle_byte(client);
          if (::send(client.fd.get(), &first, 1, MSG_NOSIGNAL) == 1) client.sent = 1;
          if (clients.empty()) next_tick = Clock::now() + interval_;
        } else if (mode_ != HungMode::accept_and_hang && !garbage_.empty()) {
          ::send(client.fd.get(), garbage_.data(), garbage_.size(), MSG_NOSIGNAL);
        }
        clients.push_back(std::move(client));
      }
    }
    if (mode_ == HungMode::trickle && Clock::now() >= next_tick) {
      for (std::size_t i = clients.size(); i-- > 0;) {
        char next = trickle_byte(clients[i]);
        ssize_t n = ::send(clients[i].fd.get(), &next, 1, MSG_NOSIGNAL);
        if (n == 1) ++clients[i].sent;
        if (send_failed(n)) drop(i);
      }
      next_tick += interval_;
      if (next_tick < Clock::now()) next_tick = Clock::now() + interval_;
    }
    if (mode_ == HungMode::reset_after) {
      auto now = Clock::now();
      for (std::size_t i = clients.size(); i-- > 0;) {
        if (clients[i].reset_at > now) continue;
        close_with_rst(clients[i].fd.get());
        drop(i);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// UdpGarbageServer

UdpGarbageServer::UdpGarbageServer(std::string garbage) : garbage_(std::move(garbage)) {
  Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (sock.get() < 0) throw_errno("socket");
  sockaddr_in a = loopback(0);
  if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw_errno("bind");
  port_ = bound_port(sock.get());
  Fd waker(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (waker.get() < 0) throw_errno("eventfd");
  fd_ = sock.release();
  wake_fd_ = waker.release();
  thread_ = std::thread([this] { loop(); });
}

UdpGarbageServer::~UdpGarbageServer() {
  wake(wake_fd_);
  if (thread_.joinable()) thread_.join();
  ::close(fd_);
  ::close(wake_fd_);
}

void UdpGarbageServer::loop() {
  for (;;) {
    pollfd pfds[2] = {{wake_fd_, POLLIN, 0}, {fd_, POLLIN, 0}};
    int n = ::poll(pfds, 2, -1);
    if (n < 0 && errno != EINTR) return;
    if (pfds[0].revents != 0) return;
    if (!(pfds[1].revents & POLLIN)) continue;
    for (;;) {
      char buf[2048];
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      ssize_t got = ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&peer), &len);
      if (got < 0) break;
      datagrams_.fetch_add(1);
      if (!garbage_.empty()) {
        ::sendto(fd_, garbage_.data(), garbage_.size(), MSG_NOSIGNAL,
                 reinterpret_cast<sockaddr*>(&peer), len);
      }
    }
  }
}

}  // namespace pes::test
