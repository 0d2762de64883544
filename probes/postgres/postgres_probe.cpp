#include "probes/postgres/postgres_probe.h"

#include <libpq-fe.h>
#include <poll.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <vector>

namespace pes {

namespace {

const char* kConnectHelp =
    "Time to connect and authenticate to PostgreSQL (TLS included), seconds.";
const char* kQueryHelp = "Time to run the probe's query, seconds.";
const char* kRatioHelp = "Client connections in use divided by max_connections.";
const char* kRecoveryHelp = "1 if the server is in recovery (a standby/replica), else 0.";
const char* kInfoHelp = "PostgreSQL server version, as a label; always 1.";

constexpr unsigned kBoolOid = 16;  // pg_type.oid of boolean

struct ConnCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultClearer {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgConn = std::unique_ptr<PGconn, ConnCloser>;
using PgResult = std::unique_ptr<PGresult, ResultClearer>;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > 1000000 ? 1000000 : static_cast<int>(left);
}

// Waits until fd is ready for `events` or the deadline passes; false on timeout.
bool wait_fd(int fd, short events, Clock::time_point deadline) {
  while (true) {
    int left = ms_left(deadline);
    if (left == 0) return false;
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, left);
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return true;  // let libpq report the socket error
  }
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}
bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// Words for where a connection attempt stood, for timeout messages.
const char* stage_words(ConnStatusType st) {
  switch (st) {
    case CONNECTION_STARTED:
      return "waiting for the TCP connection";
    case CONNECTION_MADE:
      return "sending the startup packet";
    case CONNECTION_SSL_STARTUP:
      return "negotiating TLS";
    case CONNECTION_AWAITING_RESPONSE:
      return "waiting for the server's answer to the startup packet";
    case CONNECTION_AUTH_OK:
      return "waiting for the backend to start after authentication";
    case CONNECTION_SETENV:
    case CONNECTION_CHECK_WRITABLE:
    case CONNECTION_CONSUME:
    case CONNECTION_CHECK_TARGET:
    case CONNECTION_CHECK_STANDBY:
      return "waiting for the server's session parameters";
    default:
      return "connecting";
  }
}

std::string describe(const PostgresSpec& s) {
  std::string host =
      s.host.find(':') != std::string::npos && s.host[0] != '/' ? "[" + s.host + "]" : s.host;
  return host + ":" + std::to_string(s.port);
}

std::string fmt_ratio(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", r);
  return buf;
}

// One round trip on a connected, non-blocking connection: sends `sql`, collects every result.
// On failure returns an Outcome; on success `results` holds what the server sent.
std::optional<Outcome> exchange(PGconn* conn, const std::string& sql, Clock::time_point deadline,
                                std::vector<PgResult>& results, const std::string& what) {
  if (!PQsendQuery(conn, sql.c_str()))
    return Outcome::failure(
        Reason::connect, "cannot send the " + what + ": " + tidy_pg_message(PQerrorMessage(conn)));
  int fd = PQsocket(conn);
  while (true) {
    int f = PQflush(conn);
    if (f == 0) break;
    if (f < 0)
      return Outcome::failure(Reason::connect, "connection lost sending the " + what + ": " +
                                                   tidy_pg_message(PQerrorMessage(conn)));
    if (!wait_fd(fd, POLLOUT | POLLIN, deadline))
      return Outcome::failure(Reason::timeout,
                              "the server did not accept the " + what + " before the deadline");
    if (!PQconsumeInput(conn))
      return Outcome::failure(Reason::connect, "connection lost sending the " + what + ": " +
                                                   tidy_pg_message(PQerrorMessage(conn)));
  }
  while (true) {
    while (PQisBusy(conn)) {
      if (!wait_fd(fd, POLLIN, deadline))
        return Outcome::failure(Reason::timeout,
                                "no answer to the " + what + " before the deadline");
      if (!PQconsumeInput(conn))
        return Outcome::failure(Reason::connect, "connection lost during the " + what + ": " +
                                                     tidy_pg_message(PQerrorMessage(conn)));
    }
    PGresult* r = PQgetResult(conn);
    if (!r) break;
    results.emplace_back(r);
  }
  return std::nullopt;
}

// The first error among results, as an Outcome, or nullopt if all succeeded.
std::optional<Outcome> first_error(const std::vector<PgResult>& results, PGconn* conn,
                                   const std::string& what) {
  for (const auto& r : results) {
    auto st = PQresultStatus(r.get());
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) continue;
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
      return Outcome::failure(Reason::config,
                              "the " + what + " started a COPY, which the probe cannot run");
    const char* code = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
    std::string sqlstate = code ? code : "";
    const char* primary = PQresultErrorField(r.get(), PG_DIAG_MESSAGE_PRIMARY);
    std::string msg = primary ? primary : tidy_pg_message(PQresultErrorMessage(r.get()));
    if (msg.empty()) msg = tidy_pg_message(PQerrorMessage(conn));
    Reason reason =
        PQstatus(conn) == CONNECTION_BAD ? Reason::connect : classify_query_error(sqlstate);
    return Outcome::failure(reason, "the " + what + " failed" +
                                        (sqlstate.empty() ? "" : " (SQLSTATE " + sqlstate + ")") +
                                        ": " + msg);
  }
  return std::nullopt;
}

void trace_notice(void* arg, const char* message) {
  auto* trace = static_cast<Trace*>(arg);
  if (trace->enabled()) trace->log("server notice: " + tidy_pg_message(message));
}

}  // namespace

std::string tidy_pg_message(std::string_view message) {
  std::string out;
  size_t pos = 0;
  while (pos <= message.size()) {
    size_t nl = message.find('\n', pos);
    std::string_view line =
        message.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? message.size() + 1 : nl + 1;
    if (starts_with(line, "LOCATION:")) continue;
    for (char c : line) {
      bool space = std::isspace(static_cast<unsigned char>(c));
      if (space && (out.empty() || out.back() == ' ')) continue;
      out += space ? ' ' : c;
    }
    if (!out.empty() && out.back() != ' ') out += ' ';
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

PgFailure classify_connect_error(std::string_view m) {
  // A server error in verbose form reads "FATAL:  28P01: password authentication failed ...": the
  // SQLSTATE follows the (possibly translated) severity and two spaces.
  for (size_t at = m.find(":  "); at != std::string_view::npos; at = m.find(":  ", at + 1)) {
    std::string_view rest = m.substr(at + 3);
    if (rest.size() < 7 || rest[5] != ':' || rest[6] != ' ') continue;
    bool ok = true;
    for (size_t i = 0; i < 5; ++i)
      ok = ok && (std::isdigit(static_cast<unsigned char>(rest[i])) ||
                  std::isupper(static_cast<unsigned char>(rest[i])));
    if (!ok) continue;
    std::string code(rest.substr(0, 5));
    if (starts_with(code, "28"))
      return {Reason::auth, code};  // invalid authorization (password, role, pg_hba)
    if (code == "3D000") return {Reason::config, code};     // database does not exist
    if (code == "53300") return {Reason::assertion, code};  // too many connections
    if (code == "57014") return {Reason::timeout, code};
    if (starts_with(code, "57P") || starts_with(code, "08") || starts_with(code, "53"))
      return {Reason::connect, code};  // shutting down, starting up, out of resources
    return {Reason::protocol, code};
  }
  // Client-side failures (libpq's own words).
  if (contains(m, "could not translate host name") || contains(m, "could not translate host"))
    return {Reason::dns, {}};
  if (contains(m, "timeout expired")) return {Reason::timeout, {}};
  // The peer does not speak PostgreSQL's protocol (e.g. a web server on the port): its first bytes
  // are neither an answer to the SSL request nor an authentication request. Not a TLS problem.
  if (contains(m, "invalid response to SSL negotiation") ||
      contains(m, "expected authentication request from server") ||
      contains(m, "received invalid response to GSSAPI negotiation"))
    return {Reason::protocol, {}};
  if (contains(m, "no password supplied") || contains(m, "password authentication") ||
      contains(m, "authentication method") || contains(m, "SCRAM"))
    return {Reason::auth, {}};
  if (contains(m, "could not open certificate file") || contains(m, "could not load private key") ||
      contains(m, "could not read root certificate file") || contains(m, "root certificate file") ||
      contains(m, "private key file"))
    return {Reason::config, {}};
  if (contains(m, "SSL") || contains(m, "certificate") || contains(m, "TLS"))
    return {Reason::tls, {}};
  return {Reason::connect, {}};
}

Reason classify_query_error(std::string_view code) {
  if (code == "42501" || starts_with(code, "28")) return Reason::auth;  // permission denied
  if (code == "57014") return Reason::timeout;  // canceled (statement_timeout)
  if (starts_with(code, "08") || starts_with(code, "57P")) return Reason::connect;
  return Reason::protocol;
}

std::string PostgresProbe::target() const {
  return describe(*spec_) + "/" + (spec_->dbname.empty() ? spec_->user : spec_->dbname);
}

std::unique_ptr<Probe> PostgresProbe::parse(Section& s) {
  PostgresSpec spec;
  bool ok = true;
  spec.host = s.str_or("host", spec.host);
  if (spec.host.empty()) {
    s.error("host", "must not be empty");
    ok = false;
  }
  spec.port = static_cast<int>(s.integer("port", 1, 65535).value_or(spec.port));
  spec.user = s.str_or("user", "postgres");
  if (spec.user.empty()) {
    s.error("user", "must not be empty");
    ok = false;
  }
  spec.dbname = s.str_or("dbname", "");
  spec.password = s.str_or("password", "", Section::secret);
  spec.sslmode = s.str_or("sslmode", spec.sslmode);
  if (!s.one_of("sslmode", spec.sslmode,
                {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}))
    ok = false;
  spec.query = s.str_or("query", spec.query);
  if (spec.query.find_first_not_of(" \t\r\n;") == std::string::npos) {
    s.error("query", "must not be empty");
    ok = false;
  }
  spec.max_connections_ratio = s.number("max_connections_ratio", 0, 1);
  {
    Section t = s.sub("tls");  // the common block, minus what libpq cannot do
    for (const char* known : {"ca_file", "cert_file", "key_file"}) t.has(known);
    if (t.has("server_name"))
      t.error("server_name", "not supported by postgres (the certificate must match host)");
    if (t.has("insecure_skip_verify"))
      t.error("insecure_skip_verify", "not supported by postgres; choose the checks with sslmode");
  }
  spec.tls = s.tls();
  if ((spec.sslmode == "verify-ca" || spec.sslmode == "verify-full") && spec.tls.ca_file.empty()) {
    s.error("sslmode", "sslmode " + spec.sslmode +
                           " needs tls.ca_file (the CA that signed the server's certificate)");
    ok = false;
  }
  if (!ok) return nullptr;
  return std::make_unique<PostgresProbe>(std::move(spec));
}

void PostgresProbe::run(RunContextPtr ctx, Done done) {
  ctx->blocking(
      [spec = spec_, ctx, done] { done(run_postgres(*spec, ctx->deadline(), ctx->trace())); });
}

Outcome run_postgres(const PostgresSpec& spec, Clock::time_point deadline, Trace& trace) {
  const std::string where = describe(spec);
  const std::string port = std::to_string(spec.port);
  std::vector<const char*> keys, values;
  auto param = [&](const char* k, const std::string& v) {
    if (v.empty()) return;
    keys.push_back(k);
    values.push_back(v.c_str());
  };
  param("host", spec.host);
  param("port", port);
  param("dbname", spec.dbname.empty() ? spec.user : spec.dbname);
  param("user", spec.user);
  param("password", spec.password);
  param("sslmode", spec.sslmode);
  param("sslrootcert", spec.tls.ca_file);
  param("sslcert", spec.tls.cert_file);
  param("sslkey", spec.tls.key_file);
  static const std::string kAppName = "pes-agent";
  static const std::string kDisable = "disable";
  param("application_name", kAppName);
  param("gssencmode", kDisable);  // no Kerberos lookups that could block past the deadline
  keys.push_back(nullptr);
  values.push_back(nullptr);

  if (trace.enabled())
    trace.log("connecting to " + where +
              " dbname=" + (spec.dbname.empty() ? spec.user : spec.dbname) + " user=" + spec.user +
              " sslmode=" + spec.sslmode);
  auto start = Clock::now();
  PgConn conn(PQconnectStartParams(keys.data(), values.data(), 0));
  if (!conn) return Outcome::failure(Reason::internal, "libpq could not allocate a connection");
  // Verbose errors carry the SQLSTATE of errors the server sends while we log in.
  PQsetErrorVerbosity(conn.get(), PQERRORS_VERBOSE);
  // Server notices and warnings go to the debug trace, not to the agent's stderr (libpq's default).
  PQsetNoticeProcessor(conn.get(), &trace_notice, &trace);

  auto connect_failure = [&](const std::string& msg) {
    PgFailure f = classify_connect_error(msg);
    std::string text = tidy_pg_message(msg);
    if (trace.enabled()) trace.log("connection failed: " + text);
    Outcome out = Outcome::failure(f.reason, text);
    if (f.sqlstate == "53300") {
      // The server refuses new sessions: every slot is taken, the outage the ratio warns of.
      out.add("probe_postgres_connections_ratio", kRatioHelp, 1.0);
      out.reason = spec.max_connections_ratio ? Reason::assertion : Reason::connect;
      out.message = "server refuses connections, max_connections reached: " + text;
    }
    return out;
  };
  if (PQstatus(conn.get()) == CONNECTION_BAD) return connect_failure(PQerrorMessage(conn.get()));

  PostgresPollingStatusType poll_state = PGRES_POLLING_WRITING;
  while (poll_state != PGRES_POLLING_OK) {
    if (poll_state == PGRES_POLLING_FAILED) return connect_failure(PQerrorMessage(conn.get()));
    short events = poll_state == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    int fd = PQsocket(conn.get());
    if (fd < 0) return connect_failure(PQerrorMessage(conn.get()));
    if (!wait_fd(fd, events, deadline)) {
      std::string msg = std::string("no answer from ") + where + " before the deadline (" +
                        stage_words(PQstatus(conn.get())) + ")";
      if (trace.enabled()) trace.log(msg);
      return Outcome::failure(Reason::timeout, msg);
    }
    poll_state = PQconnectPoll(conn.get());
  }
  double connect_seconds = seconds_since(start);
  const char* version_param = PQparameterStatus(conn.get(), "server_version");
  std::string version = version_param ? version_param : "";
  if (auto sp = version.find(' '); sp != std::string::npos)
    version.resize(sp);  // "15.4 (Debian ...)"
  if (trace.enabled()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3fs", connect_seconds);
    trace.log(std::string("connected in ") + buf + ", server " + version + ", TLS " +
              (PQsslInUse(conn.get()) ? "on" : "off"));
  }
  PQsetnonblocking(conn.get(), 1);

  Outcome result = Outcome::success();
  auto keep = [&](Outcome failed) {
    for (auto& s : result.samples) failed.samples.push_back(std::move(s));
    return failed;
  };
  result.add("probe_postgres_connect_duration_seconds", kConnectHelp, connect_seconds);
  if (!version.empty()) result.add("probe_postgres_info", kInfoHelp, 1, {{"version", version}});

  // The configured query.
  auto q0 = Clock::now();
  std::vector<PgResult> rows;
  if (auto failed = exchange(conn.get(), spec.query, deadline, rows, "query"))
    return keep(std::move(*failed));
  double query_seconds = seconds_since(q0);
  result.add("probe_postgres_query_duration_seconds", kQueryHelp, query_seconds);
  if (auto failed = first_error(rows, conn.get(), "query")) {
    if (trace.enabled()) trace.log(failed->message);
    return keep(std::move(*failed));
  }
  const PGresult* last = nullptr;
  for (const auto& r : rows)
    if (PQresultStatus(r.get()) == PGRES_TUPLES_OK) last = r.get();
  if (trace.enabled()) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "query done in %.3fs, %d row(s)", query_seconds,
                  last ? PQntuples(last) : 0);
    std::string line = buf;
    if (last && PQntuples(last) > 0 && PQnfields(last) > 0)
      line += ", first value: " + std::string(PQgetvalue(last, 0, 0)).substr(0, 100);
    trace.log(line);
  }
  // A query whose answer is a boolean is a check: false fails the run.
  if (last && PQnfields(last) > 0 && PQntuples(last) > 0 && PQftype(last, 0) == kBoolOid &&
      !PQgetisnull(last, 0, 0) && std::string_view(PQgetvalue(last, 0, 0)) == "f")
    return keep(Outcome::failure(Reason::assertion, "the query returned false"));

  // Saturation and role. pg_stat_database counts the sessions of every role, whereas
  // pg_stat_activity hides other roles' backend_type from an unprivileged monitoring role.
  static const std::string kStats =
      "SELECT (SELECT coalesce(sum(numbackends), 0) FROM pg_stat_database)::float8, "
      "current_setting('max_connections')::float8, pg_is_in_recovery()";
  std::vector<PgResult> stats;
  if (auto failed = exchange(conn.get(), kStats, deadline, stats, "saturation query"))
    return keep(std::move(*failed));
  if (auto failed = first_error(stats, conn.get(), "saturation query"))
    return keep(std::move(*failed));
  const PGresult* st = stats.empty() ? nullptr : stats.back().get();
  if (!st || PQntuples(st) != 1 || PQnfields(st) != 3)
    return keep(Outcome::failure(Reason::protocol, "unexpected answer to the saturation query"));
  double in_use = std::strtod(PQgetvalue(st, 0, 0), nullptr);
  double max_conn = std::strtod(PQgetvalue(st, 0, 1), nullptr);
  bool recovery = std::string_view(PQgetvalue(st, 0, 2)) == "t";
  result.add("probe_postgres_in_recovery", kRecoveryHelp, recovery ? 1 : 0);
  if (max_conn > 0) {
    double ratio = in_use / max_conn;
    result.add("probe_postgres_connections_ratio", kRatioHelp, ratio);
    if (trace.enabled())
      trace.log("connections " + std::to_string(static_cast<long>(in_use)) + " of " +
                std::to_string(static_cast<long>(max_conn)) + " (ratio " + fmt_ratio(ratio) +
                "), in recovery: " + (recovery ? "yes" : "no"));
    if (spec.max_connections_ratio && ratio > *spec.max_connections_ratio)
      return keep(
          Outcome::failure(Reason::assertion, std::to_string(static_cast<long>(in_use)) + " of " +
                                                  std::to_string(static_cast<long>(max_conn)) +
                                                  " connections in use (ratio " + fmt_ratio(ratio) +
                                                  ") is above max_connections_ratio " +
                                                  fmt_ratio(*spec.max_connections_ratio)));
  }
  return result;
}

}  // namespace pes
