// The real-server fixtures (tests/fixtures/*.sh through pes::test::Fixture) and the in-process
// misbehaving servers: each one starts, answers what it promises, restarts on the same port and
// stops, so a broken fixture fails here and not inside some probe test.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <ldap.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/fixture.h"

namespace pes::test {
namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Small clients

struct HttpResult {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string body;
  std::string headers;
  std::string error;
};

struct HttpRequest {
  std::string method = "GET";
  std::string body;
  std::vector<std::string> headers;
  std::string ca_file;
  std::string client_cert, client_key;
  std::string userpwd;
  bool follow = false;
  long timeout_ms = 5000;
};

size_t append_to_string(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

HttpResult http(const std::string& url, const HttpRequest& req = {}) {
  HttpResult r;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(nullptr, curl_slist_free_all);
  for (const auto& h : req.headers) headers.reset(curl_slist_append(headers.release(), h.c_str()));
  char err[CURL_ERROR_SIZE] = {0};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req.timeout_ms);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append_to_string);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, append_to_string);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, req.follow ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  if (req.method == "POST") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(req.body.size()));
  }
  if (!req.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, req.ca_file.c_str());
  if (!req.client_cert.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, req.client_cert.c_str());
    curl_easy_setopt(c, CURLOPT_SSLKEY, req.client_key.c_str());
  }
  if (!req.userpwd.empty()) curl_easy_setopt(c, CURLOPT_USERPWD, req.userpwd.c_str());
  r.code = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  r.error = err[0] ? err : curl_easy_strerror(r.code);
  return r;
}

// Connects to 127.0.0.1:port; false if refused or no answer within `timeout`.
bool tcp_connects(int port, std::chrono::milliseconds timeout = 2s) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    ok = true;
  } else if (errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
      int soerr = 0;
      socklen_t len = sizeof soerr;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
      ok = soerr == 0;
    }
  }
  ::close(fd);
  return ok;
}

// A blocking TCP client socket with a receive timeout, for the HungServer tests.
struct TcpClient {
  int fd = -1;
  explicit TcpClient(int port, std::chrono::milliseconds recv_timeout = 2s) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      fd = -1;
      return;
    }
    timeval tv{};
    tv.tv_sec = recv_timeout.count() / 1000;
    tv.tv_usec = (recv_timeout.count() % 1000) * 1000;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~TcpClient() {
    if (fd >= 0) ::close(fd);
  }
  // recv() once: bytes read, 0 on orderly close, -1 with errno on error/timeout.
  ssize_t read_some(std::string& out) {
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) out.append(buf, static_cast<size_t>(n));
    return n;
  }
};

// Sends one UDP datagram to 127.0.0.1:port and returns the answer (nullopt on timeout).
std::optional<std::string> udp_exchange(int port, const std::string& payload,
                                        std::chrono::milliseconds timeout = 2s) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  pollfd p{fd, POLLIN, 0};
  std::optional<std::string> answer;
  if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
    char buf[2048];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n >= 0) answer = std::string(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return answer;
}

// A STUN Binding request; true if a Binding success response with its transaction id returns.
bool stun_binding_ok(int port) {
  std::string req = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, static_cast<char>(0xA4), 0x42};
  std::string tid = "pes-fixture!";  // 12 bytes
  req += tid;
  auto answer = udp_exchange(port, req);
  return answer && answer->size() >= 20 && (*answer)[0] == 0x01 && (*answer)[1] == 0x01 &&
         answer->substr(8, 12) == tid;
}

// PQconnectdb with the fixture's credentials; empty string on success, else libpq's message.
std::string pg_connect_error(const Fixture& pg, const std::string& password,
                             const std::string& extra = "") {
  std::string conninfo = "host=127.0.0.1 port=" + pg.get("PORT") + " dbname=" + pg.get("DBNAME") +
                         " user=" + pg.get("USER") + " password=" + password +
                         " connect_timeout=5 " + extra;
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(conninfo.c_str()), PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) return PQerrorMessage(conn.get());
  std::unique_ptr<PGresult, decltype(&PQclear)> res(PQexec(conn.get(), "SELECT 1"), PQclear);
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) return PQerrorMessage(conn.get());
  return std::string(PQgetvalue(res.get(), 0, 0)) == "1" ? "" : "SELECT 1 returned something else";
}

// A simple bind on `url`; returns the LDAP result code. With `ca_file`, TLS trusts that CA.
int ldap_bind_result(const std::string& url, const std::string& dn, const std::string& password,
                     const std::string& ca_file = "", bool start_tls = false) {
  LDAP* raw = nullptr;
  if (ldap_initialize(&raw, url.c_str()) != LDAP_SUCCESS) return -1;
  std::unique_ptr<LDAP, void (*)(LDAP*)> ld(
      raw, [](LDAP* l) { ldap_unbind_ext_s(l, nullptr, nullptr); });
  int version = LDAP_VERSION3;
  ldap_set_option(ld.get(), LDAP_OPT_PROTOCOL_VERSION, &version);
  timeval tv{5, 0};
  ldap_set_option(ld.get(), LDAP_OPT_NETWORK_TIMEOUT, &tv);
  if (!ca_file.empty()) {
    ldap_set_option(ld.get(), LDAP_OPT_X_TLS_CACERTFILE, ca_file.c_str());
    int demand = LDAP_OPT_X_TLS_DEMAND;
    ldap_set_option(ld.get(), LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
    int zero = 0;
    ldap_set_option(ld.get(), LDAP_OPT_X_TLS_NEWCTX, &zero);
  }
  if (start_tls) {
    int rc = ldap_start_tls_s(ld.get(), nullptr, nullptr);
    if (rc != LDAP_SUCCESS) return rc;
  }
  berval cred{static_cast<ber_len_t>(password.size()), const_cast<char*>(password.data())};
  return ldap_sasl_bind_s(ld.get(), dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr);
}

// Entries under `base` matching `filter` (subtree), as seen after an anonymous bind; -1 on error.
int ldap_count(const std::string& url, const std::string& base, const std::string& filter) {
  LDAP* raw = nullptr;
  if (ldap_initialize(&raw, url.c_str()) != LDAP_SUCCESS) return -1;
  std::unique_ptr<LDAP, void (*)(LDAP*)> ld(
      raw, [](LDAP* l) { ldap_unbind_ext_s(l, nullptr, nullptr); });
  int version = LDAP_VERSION3;
  ldap_set_option(ld.get(), LDAP_OPT_PROTOCOL_VERSION, &version);
  LDAPMessage* res = nullptr;
  timeval tv{5, 0};
  int rc = ldap_search_ext_s(ld.get(), base.c_str(), LDAP_SCOPE_SUBTREE, filter.c_str(), nullptr, 0,
                             nullptr, nullptr, &tv, 0, &res);
  std::unique_ptr<LDAPMessage, decltype(&ldap_msgfree)> owned(res, ldap_msgfree);
  return rc == LDAP_SUCCESS ? ldap_count_entries(ld.get(), res) : -1;
}

// The JSON payload of a compact JWS (no signature check: tests/unit covers verification).
nlohmann::json jwt_part(const std::string& jwt, int index) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot; (dot = jwt.find('.', start)) != std::string::npos; start = dot + 1) {
    parts.push_back(jwt.substr(start, dot - start));
  }
  parts.push_back(jwt.substr(start));
  if (parts.size() != 3) return nullptr;
  std::string b64 = parts[static_cast<size_t>(index)];
  for (char& c : b64) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (b64.size() % 4) b64 += '=';
  static const std::string alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (char c : b64) {
    if (c == '=') break;
    auto pos = alphabet.find(c);
    if (pos == std::string::npos) return nullptr;
    val = (val << 6) + static_cast<int>(pos);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return nlohmann::json::parse(out, nullptr, false);
}

// ---------------------------------------------------------------------------------------------
// Support functions

TEST(Support, FreePortIsBindableAndNotHandedOutTwice) {
  std::vector<int> ports;
  for (int i = 0; i < 20; ++i) ports.push_back(free_port());
  for (size_t i = 0; i < ports.size(); ++i) {
    EXPECT_GT(ports[i], 1023);
    for (size_t j = i + 1; j < ports.size(); ++j) EXPECT_NE(ports[i], ports[j]);
  }
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(ports[0]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  ::close(s);
}

TEST(Support, TempDirAndFiles) {
  std::string path;
  {
    TempDir dir;
    path = dir.path();
    ASSERT_TRUE(std::filesystem::is_directory(path));
    write_file(dir.file("a.txt"), "hello\n");
    EXPECT_EQ(read_file(dir.file("a.txt")), "hello\n");
    EXPECT_THROW(read_file(dir.file("missing")), std::runtime_error);
    EXPECT_THROW(write_file(dir.file("no/such/dir/file"), "x"), std::runtime_error);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(Support, RunCommandCapturesOutputAndKillsAtDeadline) {
  CommandResult ok = run_command({"bash", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(ok.exit_code, 3);
  EXPECT_EQ(ok.out, "out\n");
  EXPECT_EQ(ok.err, "err\n");
  auto t0 = std::chrono::steady_clock::now();
  CommandResult slow = run_command({"sleep", "30"}, 300ms);
  EXPECT_EQ(slow.exit_code, -1);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST(Support, UnknownFixtureThrows) { EXPECT_THROW(Fixture("no-such-server"), std::runtime_error); }

TEST(Support, FailedStartThrowsWithTheScriptOutput) {
  try {
    Fixture bad("nginx", {{"TLS", "maybe"}});
    FAIL() << "start with TLS=maybe should fail";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("TLS must be 0 or 1"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// In-process misbehaving servers

TEST(HungServer, AcceptAndHangNeverAnswers) {
  HungServer server(HungMode::accept_and_hang);
  TcpClient client(server.port(), 300ms);
  ASSERT_GE(client.fd, 0);
  ASSERT_EQ(::send(client.fd, "GET / HTTP/1.0\r\n\r\n", 18, MSG_NOSIGNAL), 18);
  std::string got;
  EXPECT_EQ(client.read_some(got), -1);
  EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << std::strerror(errno);
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(server.connections(), 1);
}

TEST(HungServer, TrickleSendsOneByteAtATime) {
  HungServer server(HungMode::trickle, 50ms);
  TcpClient client(server.port());
  ASSERT_GE(client.fd, 0);
  std::string got;
  auto t0 = std::chrono::steady_clock::now();
  while (got.size() < 5 && std::chrono::steady_clock::now() - t0 < 3s) client.read_some(got);
  EXPECT_EQ(got, "xxxxx");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 150ms);  // not all at once
}

TEST(HungServer, ResetSendsRst) {
  HungServer server(HungMode::reset);
  TcpClient client(server.port());
  ASSERT_GE(client.fd, 0);
  std::string got;
  errno = 0;
  ssize_t n = client.read_some(got);
  EXPECT_EQ(n, -1);
  EXPECT_EQ(errno, ECONNRESET) << std::strerror(errno);
}

TEST(HungServer, GarbageThenSilence) {
  HungServer server(HungMode::garbage, "SSH-2.0-garbage\r\n");
  TcpClient client(server.port(), 300ms);
  ASSERT_GE(client.fd, 0);
  std::string got;
  while (got.size() < 17 && client.read_some(got) > 0) {
  }
  EXPECT_EQ(got, "SSH-2.0-garbage\r\n");
  EXPECT_EQ(client.read_some(got), -1);  // then nothing, connection still open
  EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK);
}

TEST(HungServer, HttpClientTimesOutAgainstIt) {
  HungServer server(HungMode::accept_and_hang);
  HttpRequest quick;
  quick.timeout_ms = 300;
  auto r = http("http://" + server.address() + "/", quick);
  EXPECT_EQ(r.code, CURLE_OPERATION_TIMEDOUT) << r.error;
}

TEST(UdpGarbageServer, AnswersWithGarbageOrNothing) {
  UdpGarbageServer garbage("\x01\x02junk");
  auto answer = udp_exchange(garbage.port(), "hello");
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(*answer, "\x01\x02junk");
  EXPECT_EQ(garbage.datagrams(), 1);

  UdpGarbageServer silent("");
  EXPECT_FALSE(udp_exchange(silent.port(), "hello", 300ms).has_value());
  EXPECT_EQ(silent.datagrams(), 1);
}

// ---------------------------------------------------------------------------------------------
// certs.sh

TEST(Certs, GeneratesTheTestPki) {
  Fixture certs("certs");
  for (const char* key :
       {"CA_FILE", "CERT", "KEY", "EXPIRED_CERT", "EXPIRED_KEY", "WRONGHOST_CERT", "WRONGHOST_KEY",
        "SELFSIGNED_CERT", "SELFSIGNED_KEY", "SOON_CERT", "CLIENT_CERT", "CLIENT_KEY"}) {
    ASSERT_TRUE(std::filesystem::is_regular_file(certs.get(key))) << key;
  }
  auto verify = [&](const std::string& cert) {
    return run_command({"openssl", "verify", "-CAfile", certs.get("CA_FILE"), cert}).exit_code;
  };
  EXPECT_EQ(verify(certs.get("CERT")), 0);
  EXPECT_EQ(verify(certs.get("WRONGHOST_CERT")), 0);  // valid, just for another name
  EXPECT_NE(verify(certs.get("EXPIRED_CERT")), 0);
  EXPECT_NE(verify(certs.get("SELFSIGNED_CERT")), 0);
  auto host_check = run_command(
      {"openssl", "x509", "-in", certs.get("WRONGHOST_CERT"), "-noout", "-checkhost", "localhost"});
  EXPECT_NE(host_check.out.find("does NOT match"), std::string::npos) << host_check.out;
}

// ---------------------------------------------------------------------------------------------
// nginx.sh

TEST(Nginx, ServesTheDefaultLocations) {
  Fixture nginx("nginx");
  std::string base = "http://127.0.0.1:" + nginx.get("PORT");
  EXPECT_GT(nginx.pid(), 0);
  EXPECT_TRUE(nginx.running());

  auto ok = http(base + "/ok");
  EXPECT_EQ(ok.status, 200) << ok.error;
  EXPECT_EQ(ok.body, "ok\n");
  auto json = http(base + "/json");
  EXPECT_EQ(json.status, 200);
  EXPECT_NE(json.body.find("\"status\":\"ok\""), std::string::npos) << json.body;
  EXPECT_NE(json.headers.find("application/json"), std::string::npos) << json.headers;
  EXPECT_EQ(http(base + "/status/503").status, 503);
  HttpRequest follow;
  follow.follow = true;
  auto redirect = http(base + "/redirect", follow);
  EXPECT_EQ(redirect.status, 200);
  EXPECT_EQ(redirect.body, "ok\n");
  EXPECT_EQ(http(base + "/loop", follow).code, CURLE_TOO_MANY_REDIRECTS);
  auto big = http(base + "/big");
  EXPECT_EQ(big.status, 200);
  EXPECT_EQ(big.body.size(), 4u * 1024 * 1024);
  EXPECT_NE(http(base + "/headers").headers.find("X-Pes-Test: fixture"), std::string::npos);
  EXPECT_EQ(http(base + "/bearer").status, 401);
  HttpRequest bearer;
  bearer.headers = {"Authorization: Bearer eyJx.y.z"};
  EXPECT_EQ(http(base + "/bearer", bearer).status, 200);
  EXPECT_EQ(http(base + "/basic").status, 401);
  HttpRequest basic;
  basic.userpwd = nginx.get("BASIC_USER") + ":" + nginx.get("BASIC_PASSWORD");
  EXPECT_EQ(http(base + "/basic", basic).status, 200);
}

TEST(Nginx, IncludesCallerSnippetsAndRestartsOnTheSamePort) {
  TempDir tmp;
  write_file(tmp.file("extra.conf"), "location = /custom { return 503 \"custom @PORT@\\n\"; }\n");
  int extra_port = free_port();
  write_file(tmp.file("http.conf"), "server { listen 127.0.0.1:" + std::to_string(extra_port) +
                                        "; location / { return 200 \"extra server\\n\"; } }\n");
  Fixture nginx("nginx", {{"CONF", tmp.file("extra.conf")}, {"HTTP_CONF", tmp.file("http.conf")}});
  std::string base = "http://127.0.0.1:" + nginx.get("PORT");
  auto custom = http(base + "/custom");
  EXPECT_EQ(custom.status, 503);
  EXPECT_EQ(custom.body, "custom " + nginx.get("PORT") + "\n");
  EXPECT_EQ(http("http://127.0.0.1:" + std::to_string(extra_port) + "/").body, "extra server\n");

  int port = nginx.port();
  pid_t old_pid = nginx.pid();
  nginx.stop();
  EXPECT_EQ(nginx.pid(), 0);
  EXPECT_FALSE(tcp_connects(port));
  nginx.stop();  // idempotent
  nginx.start();
  EXPECT_EQ(nginx.port(), port);
  EXPECT_NE(nginx.pid(), old_pid);
  EXPECT_EQ(http(base + "/ok").status, 200);

  // A crashed server: stop() still cleans up, start() comes back.
  nginx.kill(SIGKILL);
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(nginx.running());
  nginx.restart();
  EXPECT_EQ(http(base + "/ok").status, 200);
}

TEST(Nginx, TlsPortsPresentTheirCertificates) {
  Fixture nginx("nginx", {{"TLS", "1"}});
  HttpRequest trusting;
  trusting.ca_file = nginx.get("CA_FILE");
  auto https = [&](const std::string& key) {
    return http("https://localhost:" + nginx.get(key) + "/ok", trusting);
  };
  auto good = https("TLS_PORT");
  EXPECT_EQ(good.code, CURLE_OK) << good.error;
  EXPECT_EQ(good.body, "ok\n");
  auto expired = https("EXPIRED_PORT");
  EXPECT_EQ(expired.code, CURLE_PEER_FAILED_VERIFICATION);
  EXPECT_NE(expired.error.find("expired"), std::string::npos) << expired.error;
  auto wronghost = https("WRONGHOST_PORT");
  EXPECT_EQ(wronghost.code, CURLE_PEER_FAILED_VERIFICATION);
  EXPECT_NE(wronghost.error.find("localhost"), std::string::npos) << wronghost.error;
  EXPECT_EQ(https("SELFSIGNED_PORT").code, CURLE_PEER_FAILED_VERIFICATION);
  EXPECT_EQ(https("SOON_PORT").code, CURLE_OK);
  // mTLS: nginx answers 400 without a client certificate, 200 with the test client's.
  EXPECT_EQ(https("MTLS_PORT").status, 400);
  HttpRequest with_client = trusting;
  with_client.client_cert = nginx.get("CLIENT_CERT");
  with_client.client_key = nginx.get("CLIENT_KEY");
  EXPECT_EQ(http("https://localhost:" + nginx.get("MTLS_PORT") + "/ok", with_client).status, 200);
}

// ---------------------------------------------------------------------------------------------
// postgres.sh

TEST(Postgres, ScramLoginRestartOnTheSamePortAndKill) {
  Fixture pg("postgres", {{"PASSWORD", "fixture-pw"}, {"MAX_CONNECTIONS", "10"}});
  EXPECT_EQ(pg.get("PASSWORD"), "fixture-pw");
  EXPECT_EQ(pg.get("USER"), "pesagent");
  EXPECT_EQ(pg.get("DBNAME"), "pesdb");
  EXPECT_EQ(pg_connect_error(pg, "fixture-pw"), "");
  std::string wrong = pg_connect_error(pg, "not-the-password");
  EXPECT_NE(wrong.find("password authentication failed"), std::string::npos) << wrong;

  int port = pg.port();
  pg.restart();
  EXPECT_EQ(pg.port(), port);
  EXPECT_EQ(pg_connect_error(pg, "fixture-pw"), "") << pg.log_tail();

  // Killed mid-run: connections are refused, then a start brings the same data back.
  pg.kill(SIGKILL);
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(pg.running());
  EXPECT_FALSE(tcp_connects(port));
  pg.stop();
  pg.start();
  EXPECT_EQ(pg_connect_error(pg, "fixture-pw"), "") << pg.log_tail();
}

TEST(Postgres, Ssl) {
  Fixture pg("postgres", {{"SSL", "1"}});
  EXPECT_EQ(pg_connect_error(pg, pg.get("PASSWORD"),
                             "sslmode=verify-full sslrootcert=" + pg.get("CA_FILE")),
            "");
  EXPECT_NE(pg_connect_error(pg, pg.get("PASSWORD"), "sslmode=verify-full sslrootcert=/dev/null"),
            "");
}

// ---------------------------------------------------------------------------------------------
// slapd.sh

TEST(Slapd, BindsSearchesAndSpeaksTls) {
  Fixture ldap("slapd", {{"TLS", "1"}});
  std::string url = "ldap://127.0.0.1:" + ldap.get("PORT");
  EXPECT_EQ(ldap.get("BASE_DN"), "dc=pes,dc=test");
  EXPECT_EQ(ldap_bind_result(url, ldap.get("USER_DN"), ldap.get("USER_PASSWORD")), LDAP_SUCCESS);
  EXPECT_EQ(ldap_bind_result(url, ldap.get("ADMIN_DN"), ldap.get("ADMIN_PASSWORD")), LDAP_SUCCESS);
  EXPECT_EQ(ldap_bind_result(url, ldap.get("USER_DN"), "wrong"), LDAP_INVALID_CREDENTIALS);
  EXPECT_EQ(ldap_count(url, "ou=people," + ldap.get("BASE_DN"), "(objectClass=inetOrgPerson)"), 2);
  EXPECT_EQ(ldap_count(url, ldap.get("BASE_DN"), "(cn=admins)"), 1);

  std::string ldaps = "ldaps://127.0.0.1:" + ldap.get("LDAPS_PORT");
  EXPECT_EQ(
      ldap_bind_result(ldaps, ldap.get("USER_DN"), ldap.get("USER_PASSWORD"), ldap.get("CA_FILE")),
      LDAP_SUCCESS);
  EXPECT_EQ(ldap_bind_result(url, ldap.get("USER_DN"), ldap.get("USER_PASSWORD"),
                             ldap.get("CA_FILE"), /*start_tls=*/true),
            LDAP_SUCCESS);
  // Without the test CA the certificate is not trusted.
  Fixture other_pki("certs");
  EXPECT_NE(ldap_bind_result(ldaps, ldap.get("USER_DN"), ldap.get("USER_PASSWORD"),
                             other_pki.get("CA_FILE")),
            LDAP_SUCCESS);
}

// ---------------------------------------------------------------------------------------------
// oidc.sh

TEST(Oidc, KeycloakShapedIssuer) {
  Fixture oidc("oidc", {{"CLIENT_SECRET", "s3cret"}, {"USER_PASSWORD", "alice-pw"}});
  EXPECT_EQ(oidc.get("ISSUER"), "http://127.0.0.1:" + oidc.get("PORT") + "/realms/pes");
  auto discovery = http(oidc.get("ISSUER") + "/.well-known/openid-configuration");
  ASSERT_EQ(discovery.status, 200) << discovery.error;
  auto doc = nlohmann::json::parse(discovery.body);
  EXPECT_EQ(doc["issuer"], oidc.get("ISSUER"));
  EXPECT_EQ(doc["token_endpoint"], oidc.get("ISSUER") + "/protocol/openid-connect/token");
  EXPECT_EQ(doc["jwks_uri"], oidc.get("ISSUER") + "/protocol/openid-connect/certs");
  auto grants = doc["grant_types_supported"];
  EXPECT_NE(std::find(grants.begin(), grants.end(), "password"), grants.end()) << grants;

  auto health = http(oidc.get("HEALTH_URL"));
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(nlohmann::json::parse(health.body)["status"], "UP");
  EXPECT_EQ(http(oidc.get("MANAGEMENT_HEALTH_URL")).status, 200);

  auto token = [&](const std::string& body, const std::string& userpwd = "") {
    HttpRequest req;
    req.method = "POST";
    req.body = body;
    req.userpwd = userpwd;
    return http(oidc.get("TOKEN_URL"), req);
  };
  auto cc = token("grant_type=client_credentials", "pes-agent:s3cret");
  ASSERT_EQ(cc.status, 200) << cc.body;
  std::string at = nlohmann::json::parse(cc.body)["access_token"];
  auto header = jwt_part(at, 0);
  auto claims = jwt_part(at, 1);
  EXPECT_EQ(header["alg"], "RS256");
  EXPECT_EQ(claims["iss"], oidc.get("ISSUER"));
  EXPECT_EQ(claims["aud"], "pes-api");
  EXPECT_EQ(claims["azp"], "pes-agent");

  auto pw = token(
      "grant_type=password&client_id=pes-agent&client_secret=s3cret&username=alice&"
      "password=alice-pw");
  ASSERT_EQ(pw.status, 200) << pw.body;
  EXPECT_EQ(jwt_part(nlohmann::json::parse(pw.body)["access_token"], 1)["preferred_username"],
            "alice");
  auto bad_user = token("grant_type=password&username=alice&password=nope", "pes-agent:s3cret");
  EXPECT_EQ(bad_user.status, 401);
  EXPECT_EQ(nlohmann::json::parse(bad_user.body)["error"], "invalid_grant");
  auto bad_secret = token("grant_type=client_credentials", "pes-agent:wrong");
  EXPECT_EQ(bad_secret.status, 401);
  EXPECT_EQ(nlohmann::json::parse(bad_secret.body)["error"], "invalid_client");

  // A restart keeps the port and the secrets and rotates the signing key.
  auto kid = [&] {
    auto jwks = nlohmann::json::parse(http(oidc.get("JWKS_URL")).body);
    return jwks["keys"][0]["kid"].get<std::string>();
  };
  std::string before = kid();
  EXPECT_EQ(header["kid"], before);
  oidc.restart();
  EXPECT_NE(kid(), before);
  EXPECT_EQ(token("grant_type=client_credentials", "pes-agent:s3cret").status, 200);
}

TEST(Oidc, EcKeys) {
  Fixture oidc("oidc", {{"KEYS", "ec"}, {"AUDIENCE", "other-api"}});
  auto cc = [&] {
    HttpRequest req;
    req.method = "POST";
    req.body = "grant_type=client_credentials";
    req.userpwd = oidc.get("CLIENT_ID") + ":" + oidc.get("CLIENT_SECRET");
    return http(oidc.get("TOKEN_URL"), req);
  }();
  ASSERT_EQ(cc.status, 200) << cc.body;
  std::string at = nlohmann::json::parse(cc.body)["access_token"];
  EXPECT_EQ(jwt_part(at, 0)["alg"], "ES256");
  EXPECT_EQ(jwt_part(at, 1)["aud"], "other-api");
}

// ---------------------------------------------------------------------------------------------
// prosody.sh

TEST(Prosody, BoshWebsocketAndC2s) {
  Fixture xmpp("prosody");
  EXPECT_EQ(xmpp.get("DOMAIN"), "meet.jitsi");
  HttpRequest bosh;
  bosh.method = "POST";
  bosh.headers = {"Content-Type: text/xml; charset=utf-8"};
  bosh.body =
      "<body rid='1' to='meet.jitsi' xml:lang='en' wait='60' hold='1' content='text/xml; "
      "charset=utf-8' ver='1.6' xmpp:version='1.0' xmlns='http://jabber.org/protocol/httpbind' "
      "xmlns:xmpp='urn:xmpp:xbosh'/>";
  auto r = http("http://127.0.0.1:" + xmpp.get("PORT") + xmpp.get("BOSH_PATH"), bosh);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_NE(r.body.find("sid="), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("stream:features"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("ANONYMOUS"), std::string::npos) << r.body;

  TcpClient c2s(xmpp.port("C2S_PORT"));
  ASSERT_GE(c2s.fd, 0);
  std::string open =
      "<?xml version='1.0'?><stream:stream to='meet.jitsi' version='1.0' xmlns='jabber:client' "
      "xmlns:stream='http://etherx.jabber.org/streams'>";
  ASSERT_EQ(::send(c2s.fd, open.data(), open.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(open.size()));
  std::string got;
  while (got.find("</stream:features>") == std::string::npos && c2s.read_some(got) > 0) {
  }
  EXPECT_NE(got.find("<mechanism>ANONYMOUS</mechanism>"), std::string::npos) << got;
}

// ---------------------------------------------------------------------------------------------
// coturn.sh

TEST(Coturn, AnswersStunAndStops) {
  Fixture turn("coturn");
  EXPECT_TRUE(stun_binding_ok(turn.port()));
  turn.stop();
  EXPECT_FALSE(stun_binding_ok(turn.port()));
  turn.start();
  EXPECT_TRUE(stun_binding_ok(turn.port()));
}

TEST(Coturn, GarbageServerIsNotStun) {
  UdpGarbageServer garbage;
  EXPECT_FALSE(stun_binding_ok(garbage.port()));
  EXPECT_EQ(garbage.datagrams(), 1);
}

// All fixtures at once and started concurrently, as the demo runs them: no port, user or
// directory clash.
TEST(AllFixtures, StartConcurrentlySideBySide) {
  const std::vector<std::string> servers = {"nginx", "postgres", "slapd",
                                            "oidc",  "prosody",  "coturn"};
  std::vector<std::unique_ptr<Fixture>> fixtures(servers.size());
  std::vector<std::string> errors(servers.size());
  std::vector<std::thread> starters;
  for (size_t i = 0; i < servers.size(); ++i) {
    starters.emplace_back([&, i] {
      try {
        fixtures[i] = std::make_unique<Fixture>(servers[i]);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : starters) t.join();
  std::vector<int> ports;
  for (size_t i = 0; i < servers.size(); ++i) {
    ASSERT_TRUE(fixtures[i]) << servers[i] << ": " << errors[i];
    EXPECT_TRUE(fixtures[i]->running()) << servers[i];
    ports.push_back(fixtures[i]->port());
    if (servers[i] == "coturn") {
      EXPECT_TRUE(stun_binding_ok(fixtures[i]->port()));
    } else {
      EXPECT_TRUE(tcp_connects(fixtures[i]->port())) << servers[i];
    }
  }
  std::sort(ports.begin(), ports.end());
  EXPECT_EQ(std::adjacent_find(ports.begin(), ports.end()), ports.end());
}

}  // namespace
}  // namespace pes::test
