// The `postgres` probe: connect with libpq's non-blocking API, run the configured query, report
// connection saturation, recovery state and server version, all within the run's deadline.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "agent/config/parse.h"
#include "agent/core/probe.h"

namespace pes {

struct PostgresSpec {
  std::string host = "localhost";
  int port = 5432;
  std::string dbname;  // empty: same as user (libpq's rule)
  std::string user;
  std::string password;
  std::string sslmode = "prefer";
  std::string query = "SELECT 1";
  std::optional<double> max_connections_ratio;
  TlsOptions tls;  // ca_file -> sslrootcert, cert_file/key_file -> sslcert/sslkey
};

class PostgresProbe : public Probe {
 public:
  static constexpr std::string_view kSampleLabels[] = {"version"};
  explicit PostgresProbe(PostgresSpec spec)
      : spec_(std::make_shared<const PostgresSpec>(std::move(spec))) {}
  void run(RunContextPtr ctx, Done done) override;
  std::string target() const override;
  static std::unique_ptr<Probe> parse(Section& s);

 private:
  // Shared with running runs, so a reload that drops this probe cannot free it under a worker.
  std::shared_ptr<const PostgresSpec> spec_;
};

// Runs one check synchronously on the calling thread; returns at the latest at `deadline` (plus
// the time of one non-blocking libpq call).
Outcome run_postgres(const PostgresSpec& spec, Clock::time_point deadline, Trace& trace);

// How a connection failure message from libpq (PQerrorMessage, verbose) is classified.
struct PgFailure {
  Reason reason;
  std::string sqlstate;  // from a server error, empty for client-side failures
};
PgFailure classify_connect_error(std::string_view message);
// The reason for a failed query, by SQLSTATE.
Reason classify_query_error(std::string_view sqlstate);
// A libpq error message made fit for one line: LOCATION lines dropped, whitespace collapsed.
std::string tidy_pg_message(std::string_view message);

}  // namespace pes
