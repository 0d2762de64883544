// Test support: real servers on loopback (tests/fixtures/<server>.sh started from C++), free
// ports, temp dirs, and in-process misbehaving TCP/UDP servers for failure tests.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace pes::test {

using FixtureOptions = std::map<std::string, std::string>;

// One real server started by tests/fixtures/<server>.sh in its own temp dir, on free loopback
// ports, as an unprivileged user. get() returns what the script printed (PORT, PID, and
// server-specific keys such as CA_FILE or PASSWORD). The destructor stops it and removes the
// dir (kept if PES_KEEP_FIXTURES=1 is set). A test process that dies leaves nothing running:
// the script's watchdog stops the server when this process is gone.
//
//   pes::test::Fixture nginx("nginx", {{"TLS", "1"}});
//   std::string url = "http://127.0.0.1:" + nginx.get("PORT") + "/ok";
class Fixture {
 public:
  // Starts the server; throws std::runtime_error with the script's output if it cannot.
  explicit Fixture(std::string server, FixtureOptions options = {});
  ~Fixture();
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;

  // A key the start script printed; throws std::runtime_error naming the key if absent.
  const std::string& get(const std::string& key) const;
  std::string get_or(const std::string& key, const std::string& fallback) const;
  bool has(const std::string& key) const;
  const std::map<std::string, std::string>& values() const { return values_; }

  int port(const std::string& key = "PORT") const;
  const std::string& dir() const { return dir_; }
  const std::string& server() const { return server_; }
  // The server's PID while started, 0 once stopped (and for certs, which runs nothing).
  pid_t pid() const { return pid_; }
  // True while the server process exists (not a zombie).
  bool running() const;

  // Starts again in the same dir with the same options; the script reuses the ports and data
  // of the previous start. Throws if the start fails.
  void start();
  // Stops the server (TERM, then KILL after a grace period); harmless if it already died.
  void stop();
  // stop() then start(): same ports, same data.
  void restart();
  // Sends `sig` to the server process only, without the orderly stop (crash tests). The dir
  // stays; stop() or the destructor cleans up what is left.
  void kill(int sig = 9);
  // The last `lines` lines of the server's log (for failure messages).
  std::string log_tail(std::size_t lines = 40) const;

 private:
  std::string script() const;

  std::string server_;
  FixtureOptions options_;
  std::string dir_;
  std::map<std::string, std::string> values_;
  pid_t pid_ = 0;
};

// Result of running a command with a deadline.
struct CommandResult {
  int exit_code = -1;  // -1 if killed by a signal or the deadline
  std::string out;     // stdout
  std::string err;     // stderr
};

// Runs argv[0] with arguments (no shell), stdin from /dev/null, no inherited descriptors; kills
// its process group after `timeout`. A sanitizer report on its stderr fails the current test.
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(120));
// Adds a GoogleTest failure quoting the report if `output` (a child's stderr or log) holds an
// AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer report. run_command and
// AgentProcess check their children with it: a sanitizer report in the agent fails the test.
void expect_no_sanitizer_report(const std::string& process, const std::string& output);

// A loopback port that is free for TCP and UDP now, below the ephemeral range, and reserved for
// two minutes against the fixture scripts and other tests (same scheme as tests/fixtures/lib.sh).
int free_port();
// A new directory /tmp/pes-test-XXXXXX; the caller removes it.
std::string make_temp_dir(const std::string& prefix = "pes-test-");
// Writes (replaces) a file; throws std::runtime_error on failure.
void write_file(const std::string& path, const std::string& content);
// Reads a whole file; throws std::runtime_error on failure.
std::string read_file(const std::string& path);
// Factor for the slack of timing assertions (how long after a deadline a run may end, how fast
// a fast failure must be): PES_TEST_TIME_SCALE, default 1. scripts/test-sanitizers.sh sets it
// for the slower ASan/UBSan build; the deadlines under test are not scaled, only the slack.
double time_scale();
// `ms` of slack times time_scale(), e.g. EXPECT_LT(took, 500 + slack_ms(100)).
inline double slack_ms(double ms) { return ms * time_scale(); }

// A temp dir removed with its content when it goes out of scope.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "pes-test-") : path_(make_temp_dir(prefix)) {}
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// How a HungServer misbehaves with every connection it accepts.
// `garbage` is the payload a mode sends first; for trickle, reset_after and flood it is optional
// (e.g. HTTP response headers, so that what follows is a slow, cut or endless body).
enum class HungMode {
  accept_and_hang,  // accepts, never reads or writes, keeps the connection open
  trickle,          // sends one byte every `interval` (default 100ms), the first at once:
                    // `garbage` byte by byte if given, then 'x' forever
  reset,            // accepts and closes with a RST
  garbage,          // sends `garbage` once, then hangs
  reset_after,      // sends `garbage`, then closes with a RST `interval` later (cut mid-answer)
  flood,            // sends `garbage`, then 'x' as fast as the peer reads, forever
};

// A TCP listener on 127.0.0.1 (an ephemeral port it holds, so no race) with its own thread.
// The destructor stops the thread and closes every connection.
//   HungServer hang(HungMode::accept_and_hang);
//   HungServer slow(HungMode::trickle, std::chrono::milliseconds(50));
//   HungServer junk(HungMode::garbage, "SSH-2.0-x\r\n");
//   HungServer cut(HungMode::reset_after, 50ms, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhal");
class HungServer {
 public:
  explicit HungServer(HungMode mode) : HungServer(mode, std::chrono::milliseconds(100), {}) {}
  HungServer(HungMode mode, std::chrono::milliseconds interval) : HungServer(mode, interval, {}) {}
  HungServer(HungMode mode, std::string garbage)
      : HungServer(mode, std::chrono::milliseconds(100), std::move(garbage)) {}
  HungServer(HungMode mode, std::chrono::milliseconds interval, std::string garbage);
  ~HungServer();
  HungServer(const HungServer&) = delete;
  HungServer& operator=(const HungServer&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Connections accepted so far.
  int connections() const { return connections_.load(); }

 private:
  void loop();

  HungMode mode_;
  std::chrono::milliseconds interval_;
  std::string garbage_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;
  int port_ = 0;
  std::atomic<int> connections_{0};
  std::thread thread_;
};

// A UDP socket on 127.0.0.1 that answers every datagram with `garbage` (or, if `garbage` is
// empty, swallows it without answering), for STUN failure tests.
class UdpGarbageServer {
 public:
  explicit UdpGarbageServer(std::string garbage = "not a STUN message");
  ~UdpGarbageServer();
  UdpGarbageServer(const UdpGarbageServer&) = delete;
  UdpGarbageServer& operator=(const UdpGarbageServer&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Datagrams received so far.
  int datagrams() const { return datagrams_.load(); }

 private:
  void loop();

  std::string garbage_;
  int fd_ = -1;
  int wake_fd_ = -1;
  int port_ = 0;
  std::atomic<int> datagrams_{0};
  std::thread thread_;
};

}  // namespace pes::test
