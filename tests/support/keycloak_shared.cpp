#include "tests/support/keycloak_shared.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace pes::test {
namespace {

std::string script_path(const std::string& name) {
  return std::string(PES_SOURCE_DIR) + "/tests/fixtures/" + name + ".sh";
}

bool group_alive(pid_t pgid) { return ::kill(-pgid, 0) == 0 || errno == EPERM; }

}  // namespace

SharedKeycloak& SharedKeycloak::instance() {
  static SharedKeycloak kc;
  return kc;
}

SharedKeycloak::SharedKeycloak() {
  const char* env = std::getenv("PES_KEYCLOAK_DIR");
  if (env != nullptr && *env != '\0') {
    dir_ = env;
  } else {
    // Not through Fixture: its start allows 120 s, and Keycloak's first start may take more on
    // a busy machine. The watchdog (OWNER_PID) stops it should this process die.
    dir_ = make_temp_dir("pes-fixture-keycloak-");
    own_ = true;
    run_fixture("keycloak", "start", dir_, {"OWNER_PID=" + std::to_string(::getpid())});
  }
  read_env();
}

SharedKeycloak::~SharedKeycloak() {
  if (!own_) return;
  // At exit, without GoogleTest's machinery (it may be gone): a plain stop, then the dir.
  const std::string stop =
      "bash '" + script_path("keycloak") + "' stop '" + dir_ + "' >/dev/null 2>&1";
  [[maybe_unused]] int rc = std::system(stop.c_str());
  std::error_code ec;
  if (std::getenv("PES_KEEP_FIXTURES") == nullptr) std::filesystem::remove_all(dir_, ec);
}

void SharedKeycloak::read_env() {
  std::istringstream lines(read_file(dir_ + "/fixture.env"));
  std::string line;
  values_.clear();
  while (std::getline(lines, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos && eq > 0) values_[line.substr(0, eq)] = line.substr(eq + 1);
  }
  if (values_.count("URL") == 0)
    throw std::runtime_error("no Keycloak fixture in " + dir_ + " (fixture.env has no URL)");
}

const std::string& SharedKeycloak::get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) throw std::runtime_error("the Keycloak fixture printed no " + key);
  return it->second;
}

bool SharedKeycloak::keycloak_running() const {
  return run_command({"bash", script_path("keycloak"), "status", dir_}).exit_code == 0;
}

void SharedKeycloak::stop_keycloak() {
  // PID leads Keycloak's process group (kc.sh and its java); TERM the group, as its own stop
  // does, but leave the fixture's pid file and watchdog in place for the suite's cleanup.
  const pid_t pid = static_cast<pid_t>(std::stol(read_file(dir_ + "/pid")));
  ::kill(-pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  while (group_alive(pid) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (group_alive(pid)) ::kill(-pid, SIGKILL);
  while (group_alive(pid)) std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

void SharedKeycloak::start_keycloak() {
  run_fixture("keycloak", "start", dir_);
  read_env();
}

void SharedKeycloak::stop_slapd() { run_fixture("slapd", "stop", get("SLAPD_DIR")); }
void SharedKeycloak::start_slapd() { run_fixture("slapd", "start", get("SLAPD_DIR")); }

void SharedKeycloak::run_fixture(const std::string& script, const std::string& command,
                                 const std::string& dir, const std::vector<std::string>& options) {
  std::vector<std::string> argv = {"bash", script_path(script), command, dir};
  argv.insert(argv.end(), options.begin(), options.end());
  auto r = run_command(argv, std::chrono::seconds(400));
  if (r.exit_code != 0)
    throw std::runtime_error(script + ".sh " + command + " " + dir + " failed (exit " +
                             std::to_string(r.exit_code) + "):\n" + r.out + r.err);
}

}  // namespace pes::test
