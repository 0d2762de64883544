// The floor of the blocking probe types (issue 16): the least a client pays, in CPU, for the work
// one run of the agent's postgres, ldap or tcp probe does, with the same libraries and nothing
// else (no threads, no deadline bookkeeping, no samples).
//
//   blocking_floor pg   HOST PORT DBNAME USER PASSWORD [--bare] N
//   blocking_floor ldap URL BIND_DN PASSWORD N
//   blocking_floor tcp  HOST PORT N
//   blocking_floor tls  HOST PORT CA_FILE N
//   (any of them with --rate R first: R runs per second, sleeping in between, as a scheduler would)
//
// pg: libpq connect + SCRAM/md5 auth (the conninfo the probe sends), `SELECT 1`, and the probe's
//     saturation query; --bare stops after `SELECT 1`.
// ldap: ldap_initialize + simple bind + unbind (libldap's own connect).
// tcp: getaddrinfo + non-blocking connect + poll + close. tls: the same plus an OpenSSL handshake
//     verified against CA_FILE and the host name, and the peer chain's notAfter read.
// Runs N times in a row and prints one line: "runs=N failures=F cpu_us=C per_run_us=C/N", CPU being
// utime+stime of this process over the loop (getrusage), so start-up is not counted.
#include <arpa/inet.h>
#include <ldap.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>

namespace {

double cpu_us() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

bool pg_ok(PGconn* c, const char* sql) {
  PGresult* r = PQexec(c, sql);
  bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
  PQclear(r);
  return ok;
}

bool pg_once(char** a, bool bare) {
  const char* keys[] = {"host",    "port",       "dbname",           "user", "password",
                        "sslmode", "gssencmode", "application_name", nullptr};
  const char* values[] = {a[0], a[1], a[2], a[3], a[4], "prefer", "disable", "pes-floor", nullptr};
  PGconn* c = PQconnectdbParams(keys, values, 0);
  bool ok = PQstatus(c) == CONNECTION_OK && pg_ok(c, "SELECT 1");
  if (ok && !bare)
    ok = pg_ok(c,
               "SELECT (SELECT coalesce(sum(numbackends), 0) FROM pg_stat_database)::float8, "
               "current_setting('max_connections')::float8, pg_is_in_recovery()");
  PQfinish(c);
  return ok;
}

bool ldap_once(const char* url, const char* dn, const char* password) {
  LDAP* ld = nullptr;
  if (ldap_initialize(&ld, url) != LDAP_SUCCESS) return false;
  int version = LDAP_VERSION3;
  ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
  berval cred{static_cast<ber_len_t>(std::strlen(password)), const_cast<char*>(password)};
  bool ok =
      ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr) == LDAP_SUCCESS;
  ldap_unbind_ext_s(ld, nullptr, nullptr);
  return ok;
}

// A connected non-blocking socket, or -1.
int tcp_connect(const char* host, const char* port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
  int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  bool ok = fd >= 0;
  if (ok && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    ok = errno == EINPROGRESS && poll(&p, 1, 5000) == 1 &&
         getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  }
  freeaddrinfo(res);
  if (!ok && fd >= 0) close(fd);
  return ok ? fd : -1;
}

bool tls_once(const char* host, const char* port, const char* ca_file) {
  int fd = tcp_connect(host, port);
  if (fd < 0) return false;
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_load_verify_locations(ctx, ca_file, nullptr);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
  bool ok = false;
  while (true) {
    int r = SSL_connect(ssl);
    if (r == 1) {
      ok = true;
      break;
    }
    int e = SSL_get_error(ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) break;
    pollfd p{fd, static_cast<short>(e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    poll(&p, 1, 5000);
  }
  if (ok) {
    STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
    for (int i = 0; chain && i < sk_X509_num(chain); ++i) {
      struct tm tm {};
      ASN1_TIME_to_tm(X509_get0_notAfter(sk_X509_value(chain, i)), &tm);
    }
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  return ok;
}

int usage() {
  std::fprintf(stderr,
               "usage: blocking_floor [--rate R] pg HOST PORT DBNAME USER PASSWORD [--bare] N\n"
               "       blocking_floor ldap URL BIND_DN PASSWORD N\n"
               "       blocking_floor tcp HOST PORT N\n"
               "       blocking_floor tls HOST PORT CA_FILE N\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // --rate R paces the runs like a scheduler spreading them over time: the caches are then as
  // cold for the floor as for the agent, which runs each probe once an interval, not in a loop.
  double rate = 0;
  if (argc > 3 && std::string(argv[1]) == "--rate") {
    rate = std::atof(argv[2]);
    argv[2] = argv[0];
    argv += 2;
    argc -= 2;
  }
  if (argc < 3) return usage();
  std::string mode = argv[1];
  int n = std::atoi(argv[argc - 1]);
  std::function<bool()> once;
  if (mode == "pg" && (argc == 8 || argc == 9)) {
    bool bare = argc == 9 && std::string(argv[7]) == "--bare";
    once = [argv, bare] { return pg_once(argv + 2, bare); };
  } else if (mode == "ldap" && argc == 6) {
    once = [argv] { return ldap_once(argv[2], argv[3], argv[4]); };
  } else if (mode == "tcp" && argc == 5) {
    once = [argv] {
      int fd = tcp_connect(argv[2], argv[3]);
      if (fd >= 0) close(fd);
      return fd >= 0;
    };
  } else if (mode == "tls" && argc == 6) {
    once = [argv] { return tls_once(argv[2], argv[3], argv[4]); };
  } else {
    return usage();
  }
  if (n < 1) return usage();
  int failures = 0;
  double c0 = cpu_us();
  timespec next{};
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (int i = 0; i < n; ++i) {
    failures += once() ? 0 : 1;
    if (rate <= 0) continue;
    long step = static_cast<long>(1e9 / rate);
    next.tv_nsec += step;
    while (next.tv_nsec >= 1000000000L) {
      next.tv_nsec -= 1000000000L;
      ++next.tv_sec;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr);
  }
  double spent = cpu_us() - c0;
  std::printf("runs=%d failures=%d cpu_us=%.0f per_run_us=%.1f\n", n, failures, spent, spent / n);
  return failures == n ? 1 : 0;
}
