// The real Keycloak of a test run (tests/fixtures/keycloak.sh: Keycloak with its PostgreSQL and
// slapd). Under ctest one instance serves the whole suite run: the fixture.keycloak.start test
// starts it and passes its dir in PES_KEYCLOAK_DIR (tests/CMakeLists.txt); a test binary run by
// hand starts its own and stops it at exit.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "tests/support/fixture.h"

namespace pes::test {

class SharedKeycloak {
 public:
  // The instance of this process (attached or started on first use); throws when it cannot.
  static SharedKeycloak& instance();
  ~SharedKeycloak();
  SharedKeycloak(const SharedKeycloak&) = delete;
  SharedKeycloak& operator=(const SharedKeycloak&) = delete;

  const std::string& get(const std::string& key) const;
  const std::string& dir() const { return dir_; }

  // Stops Keycloak alone (its PostgreSQL and slapd keep running) and waits until it is gone.
  void stop_keycloak();
  // Starts it again in the same dir: same ports, same database (realm, keys, users).
  void start_keycloak();
  bool keycloak_running() const;
  // The slapd its LDAP federation talks to.
  void stop_slapd();
  void start_slapd();

 private:
  SharedKeycloak();
  void read_env();
  void run_fixture(const std::string& script, const std::string& command, const std::string& dir,
                   const std::vector<std::string>& options = {});

  bool own_ = false;  // started here (no suite fixture given): stopped at exit
  std::string dir_;
  std::map<std::string, std::string> values_;
};

}  // namespace pes::test
