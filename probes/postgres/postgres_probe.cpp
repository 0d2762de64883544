#include "probes/postgres/postgres_probe.h"

#include <libpq-fe.h>
#include <poll.h>

#include <cctype>
#include <cstdio>
#include <vector>

#include "probes/common/deadline.h"
#include "probes/common/handles.h"

namespace pes {

namespace {

const char* kConnectHelp =
    "Time to connect and authenticate to PostgreSQL (TLS included), seconds.";
const char* kQueryHelp = "Time to run the probe's query, seconds.";
const char* kRatioHelp = "Client connections in use divided by max_connections.";
const char* kRecoveryHelp = "1 if the server is in recovery (a standby/replica), else 0.";
const char* kInfoHelp = "PostgreSQL server version, as a label; always 1.";

constexpr unsigned kBoolOid = 16;  // pg_type.oid of boolean

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
                                std::vector<PgResultPtr>& results, const std::string& what) {
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
std::optional<Outcome> first_error(const std::vector<PgResultPtr>& results, PGconn* conn,
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

// The connection parameters of a spec, as libpq's keyword/value arrays (null-terminated).
class ConnParams {
 public:
  explicit ConnParams(const PostgresSpec& spec) : port_(std::to_string(spec.port)) {
    static const std::string kAppName = "pes-agent";
    static const std::string kDisable = "disable";
    add("host", spec.host);
    add("port", port_);
    add("dbname", spec.dbname.empty() ? spec.user : spec.dbname);
    add("user", spec.user);
    add("password", spec.password);
    add("sslmode", spec.sslmode);
    add("sslrootcert", spec.tls.ca_file);
    add("sslcert", spec.tls.cert_file);
    add("sslkey", spec.tls.key_file);
    add("application_name", kAppName);
    add("gssencmode", kDisable);  // no Kerberos lookups that could block past the deadline
    keys_.push_back(nullptr);
    values_.push_back(nullptr);
  }
  const char* const* keys() const { return keys_.data(); }
  const char* const* values() const { return values_.data(); }

 private:
  void add(const char* key, const std::string& value) {
    if (value.empty()) return;
    keys_.push_back(key);
    values_.push_back(value.c_str());
  }
  std::string port_;
  std::vector<const char*> keys_, values_;
};

// One run: connect and authenticate → the configured query → its verdict → saturation and role.
// Each step returns its failure; run() adds the samples gathered so far to it.
class PostgresRun {
 public:
  PostgresRun(const PostgresSpec& spec, Clock::time_point deadline, Trace& trace)
      : spec_(spec), deadline_(deadline), trace_(trace), where_(describe(spec)) {}

  Outcome run() {
    if (auto failed = connect()) return std::move(*failed);  // no samples before the connection
    if (auto failed = run_query()) return keep(std::move(*failed));
    if (auto failed = check_saturation()) return keep(std::move(*failed));
    return std::move(result_);
  }

 private:
  // 1. Connect, TLS and authenticate: libpq's non-blocking connect, each wait within the deadline.
  std::optional<Outcome> connect() {
    if (trace_.enabled())
      trace_.log("connecting to " + where_ +
                 " dbname=" + (spec_.dbname.empty() ? spec_.user : spec_.dbname) +
                 " user=" + spec_.user + " sslmode=" + spec_.sslmode);
    auto start = Clock::now();
    ConnParams params(spec_);
    conn_.reset(PQconnectStartParams(params.keys(), params.values(), 0));
    if (!conn_) return Outcome::failure(Reason::internal, "libpq could not allocate a connection");
    // Verbose errors carry the SQLSTATE of errors the server sends while we log in.
    PQsetErrorVerbosity(conn_.get(), PQERRORS_VERBOSE);
    // Server notices and warnings go to the debug trace, not to the agent's stderr (libpq's
    // default).
    PQsetNoticeProcessor(conn_.get(), &trace_notice, &trace_);
    if (PQstatus(conn_.get()) == CONNECTION_BAD) return connect_failure();
    if (auto failed = poll_connection()) return failed;
    connected(seconds_since(start));
    PQsetnonblocking(conn_.get(), 1);
    return std::nullopt;
  }

  std::optional<Outcome> poll_connection() {
    PostgresPollingStatusType state = PGRES_POLLING_WRITING;
    while (state != PGRES_POLLING_OK) {
      if (state == PGRES_POLLING_FAILED) return connect_failure();
      int fd = PQsocket(conn_.get());
      if (fd < 0) return connect_failure();
      if (!wait_fd(fd, state == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline_)) {
        std::string msg = "no answer from " + where_ + " before the deadline (" +
                          stage_words(PQstatus(conn_.get())) + ")";
        if (trace_.enabled()) trace_.log(msg);
        return Outcome::failure(Reason::timeout, msg);
      }
      state = PQconnectPoll(conn_.get());
    }
    return std::nullopt;
  }

  // The samples and trace of an established session.
  void connected(double seconds) {
    const char* version_param = PQparameterStatus(conn_.get(), "server_version");
    std::string version = version_param ? version_param : "";
    if (auto sp = version.find(' '); sp != std::string::npos)
      version.resize(sp);  // "15.4 (Debian ...)"
    if (trace_.enabled()) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.3fs", seconds);
      trace_.log(std::string("connected in ") + buf + ", server " + version + ", TLS " +
                 (PQsslInUse(conn_.get()) ? "on" : "off"));
    }
    result_.add("probe_postgres_connect_duration_seconds", kConnectHelp, seconds);
    if (!version.empty()) result_.add("probe_postgres_info", kInfoHelp, 1, {{"version", version}});
  }

  Outcome connect_failure() {
    std::string msg = PQerrorMessage(conn_.get());
    PgFailure f = classify_connect_error(msg);
    std::string text = tidy_pg_message(msg);
    if (trace_.enabled()) trace_.log("connection failed: " + text);
    Outcome out = Outcome::failure(f.reason, text);
    if (f.sqlstate == "53300") {
      // The server refuses new sessions: every slot is taken, the outage the ratio warns of.
      out.add("probe_postgres_connections_ratio", kRatioHelp, 1.0);
      out.reason = spec_.max_connections_ratio ? Reason::assertion : Reason::connect;
      out.message = "server refuses connections, max_connections reached: " + text;
    }
    return out;
  }

  // 2. The configured query; an answer that is a boolean is a check: false fails the run.
  std::optional<Outcome> run_query() {
    auto q0 = Clock::now();
    std::vector<PgResultPtr> rows;
    if (auto failed = exchange(conn_.get(), spec_.query, deadline_, rows, "query")) return failed;
    double seconds = seconds_since(q0);
    result_.add("probe_postgres_query_duration_seconds", kQueryHelp, seconds);
    if (auto failed = first_error(rows, conn_.get(), "query")) {
      if (trace_.enabled()) trace_.log(failed->message);
      return failed;
    }
    const PGresult* last = nullptr;
    for (const auto& r : rows)
      if (PQresultStatus(r.get()) == PGRES_TUPLES_OK) last = r.get();
    trace_query(last, seconds);
    if (last && PQnfields(last) > 0 && PQntuples(last) > 0 && PQftype(last, 0) == kBoolOid &&
        !PQgetisnull(last, 0, 0) && std::string_view(PQgetvalue(last, 0, 0)) == "f")
      return Outcome::failure(Reason::assertion, "the query returned false");
    return std::nullopt;
  }

  void trace_query(const PGresult* last, double seconds) {
    if (!trace_.enabled()) return;
    char buf[96];
    std::snprintf(buf, sizeof buf, "query done in %.3fs, %d row(s)", seconds,
                  last ? PQntuples(last) : 0);
    std::string line = buf;
    if (last && PQntuples(last) > 0 && PQnfields(last) > 0)
      line += ", first value: " + std::string(PQgetvalue(last, 0, 0)).substr(0, 100);
    trace_.log(line);
  }

  // 3. Saturation and role. pg_stat_database counts the sessions of every role, whereas
  // pg_stat_activity hides other roles' backend_type from an unprivileged monitoring role.
  std::optional<Outcome> check_saturation() {
    static const std::string kStats =
        "SELECT (SELECT coalesce(sum(numbackends), 0) FROM pg_stat_database)::float8, "
        "current_setting('max_connections')::float8, pg_is_in_recovery()";
    std::vector<PgResultPtr> stats;
    if (auto failed = exchange(conn_.get(), kStats, deadline_, stats, "saturation query"))
      return failed;
    if (auto failed = first_error(stats, conn_.get(), "saturation query")) return failed;
    const PGresult* st = stats.empty() ? nullptr : stats.back().get();
    if (!st || PQntuples(st) != 1 || PQnfields(st) != 3)
      return Outcome::failure(Reason::protocol, "unexpected answer to the saturation query");
    double in_use = std::strtod(PQgetvalue(st, 0, 0), nullptr);
    double max_conn = std::strtod(PQgetvalue(st, 0, 1), nullptr);
    bool recovery = std::string_view(PQgetvalue(st, 0, 2)) == "t";
    result_.add("probe_postgres_in_recovery", kRecoveryHelp, recovery ? 1 : 0);
    if (max_conn <= 0) return std::nullopt;
    return judge_ratio(in_use, max_conn, recovery);
  }

  std::optional<Outcome> judge_ratio(double in_use, double max_conn, bool recovery) {
    double ratio = in_use / max_conn;
    result_.add("probe_postgres_connections_ratio", kRatioHelp, ratio);
    std::string counts = std::to_string(static_cast<long>(in_use)) + " of " +
                         std::to_string(static_cast<long>(max_conn));
    if (trace_.enabled())
      trace_.log("connections " + counts + " (ratio " + fmt_ratio(ratio) +
                 "), in recovery: " + (recovery ? "yes" : "no"));
    if (!spec_.max_connections_ratio || ratio <= *spec_.max_connections_ratio) return std::nullopt;
    return Outcome::failure(Reason::assertion, counts + " connections in use (ratio " +
                                                   fmt_ratio(ratio) +
                                                   ") is above max_connections_ratio " +
                                                   fmt_ratio(*spec_.max_connections_ratio));
  }

  // The failed outcome, carrying the samples gathered before the failure.
  Outcome keep(Outcome failed) {
    for (auto& s : result_.samples) failed.samples.push_back(std::move(s));
    return failed;
  }

  const PostgresSpec& spec_;
  const Clock::time_point deadline_;
  Trace& trace_;
  const std::string where_;
  PgConnPtr conn_;
  Outcome result_ = Outcome::success();
};

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
  return PostgresRun(spec, deadline, trace).run();
}

}  // namespace pes
