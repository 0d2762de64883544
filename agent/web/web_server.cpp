#include "agent/web/web_server.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstring>
#include <list>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

namespace pes {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

// Deadlines of one connection (docs/security.md). The head deadline runs from the accept (or the
// first byte of a keep-alive request) to the end of the head, so a client that trickles its head
// a byte at a time is cut after 10 s whatever its pace.
constexpr auto kHandshakeTimeout = 10s;
constexpr auto kHeadTimeout = 10s;
constexpr auto kBodyTimeout = 10s;
// Between keep-alive requests: longer than a 2 m scrape interval, so Prometheus keeps its
// connection; idle connections are the first closed when the cap is reached anyway.
constexpr auto kIdleTimeout = 180s;
// A whole response (27 MB of /metrics at 10,000 probes, plain) to a reader that reads slowly.
constexpr auto kWriteTimeout = 60s;
constexpr auto kShutdownTimeout = 1s;
constexpr size_t kHeaderLimit = 16 * 1024;
constexpr size_t kBodyLimit = 64 * 1024;  // no route takes a body; /-/reload's POST is empty
// Handler threads besides one per allowed /probe run: /metrics, reload, status pages, bcrypt.
constexpr unsigned kPoolBase = 4;
constexpr size_t kVerifiedCacheSize = 1024;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX escapes, and '+' as a space in query strings (form encoding, as civetweb decoded them).
std::string url_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else if (s[i] == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view q) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos <= q.size()) {
    size_t amp = q.find('&', pos);
    if (amp == std::string_view::npos) amp = q.size();
    std::string_view part = q.substr(pos, amp - pos);
    if (!part.empty()) {
      auto eq = part.find('=');
      std::string k = url_decode(part.substr(0, eq), true);
      std::string v = eq == std::string_view::npos ? "" : url_decode(part.substr(eq + 1), true);
      out[k] = v;
    }
    pos = amp + 1;
  }
  return out;
}

bool base64_decode(const std::string& in, std::string& out) {
  std::string buf(in.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(buf.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return false;
  size_t len = static_cast<size_t>(n);
  if (!in.empty() && in.back() == '=') --len;
  if (in.size() > 1 && in[in.size() - 2] == '=') --len;
  buf.resize(len);
  out = buf;
  return true;
}

// The verified-credentials cache keeps digests, never the header itself (it holds a password).
std::string sha256(const std::string& s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}

// Every connection is a descriptor: the default soft limit (1024) would cap the listener and the
// probes' sockets well below what the hard limit allows.
void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
  rlim_t before = rl.rlim_cur;
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
    spdlog::debug("raised the open-files limit from {} to {}", before, rl.rlim_cur);
}

tcp::endpoint listen_endpoint(asio::io_context& io, const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("expected HOST:PORT");
  std::string host = address.substr(0, colon);
  std::string port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535)
    throw std::runtime_error("bad port \"" + port + "\"");
  if (host.empty()) return tcp::endpoint(tcp::v4(), static_cast<unsigned short>(p));
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  if (!ec) return tcp::endpoint(ip, static_cast<unsigned short>(p));
  tcp::resolver resolver(io);
  auto results = resolver.resolve(host, port, tcp::resolver::passive);
  if (results.empty()) throw std::runtime_error("cannot resolve \"" + host + "\"");
  return *results.begin();
}

std::string_view sv(beast::string_view s) { return std::string_view(s.data(), s.size()); }

WebResponse plain(int status, std::string body) {
  return WebResponse{status, "text/plain; charset=utf-8", std::move(body), {}};
}

}  // namespace

bool bcrypt_matches(const std::string& password, const std::string& hash) {
  if (hash.rfind("$2", 0) != 0) return false;
  crypt_data data{};
  const char* out = crypt_r(password.c_str(), hash.c_str(), &data);
  if (!out || out[0] == '*') return false;
  size_t n = std::strlen(out);
  return n == hash.size() && CRYPTO_memcmp(out, hash.data(), n) == 0;
}

// ---------------------------------------------------------------------------------------------
// Users and the cache of credentials that passed bcrypt. A bcrypt check costs tens of
// milliseconds of CPU by design; Prometheus sends the same header on every scrape, so each
// distinct header is checked once per set of users (like Prometheus' exporter-toolkit).

class WebUsers {
 public:
  enum class Verdict { allowed, denied, unknown };

  void set(std::vector<std::pair<std::string, std::string>> users) {
    std::lock_guard lock(mu);
    list = std::move(users);
    verified.clear();
    ++generation;
  }

  // What can be decided without bcrypt: no users, a missing or malformed header, an unknown user,
  // a header already verified.
  Verdict quick(const std::string& authorization) const {
    std::lock_guard lock(mu);
    if (list.empty()) return Verdict::allowed;
    std::string user, pass;
    if (!split(authorization, user, pass) || !find(user)) return Verdict::denied;
    return verified.count(sha256(authorization)) ? Verdict::allowed : Verdict::unknown;
  }

  // The full check (bcrypt), on a handler thread.
  bool verify(const std::string& authorization) {
    std::string user, pass, hash;
    uint64_t gen = 0;
    {
      std::lock_guard lock(mu);
      if (list.empty()) return true;
      if (!split(authorization, user, pass)) return false;
      const std::string* h = find(user);
      if (!h) return false;
      hash = *h;
      gen = generation;
    }
    if (!bcrypt_matches(pass, hash)) return false;
    std::lock_guard lock(mu);
    if (gen == generation) {
      if (verified.size() >= kVerifiedCacheSize) verified.clear();
      verified.insert(sha256(authorization));
    }
    return true;
  }

 private:
  static bool split(const std::string& authorization, std::string& user, std::string& pass) {
    if (authorization.size() < 6 || strncasecmp(authorization.c_str(), "Basic ", 6) != 0)
      return false;
    std::string decoded;
    if (!base64_decode(authorization.substr(6), decoded)) return false;
    auto colon = decoded.find(':');
    if (colon == std::string::npos) return false;
    user = decoded.substr(0, colon);
    pass = decoded.substr(colon + 1);
    return true;
  }
  const std::string* find(const std::string& user) const {
    for (const auto& [u, hash] : list)
      if (u == user) return &hash;
    return nullptr;
  }

  mutable std::mutex mu;
  std::vector<std::pair<std::string, std::string>> list;
  std::set<std::string> verified;
  uint64_t generation = 0;
};

// ---------------------------------------------------------------------------------------------
// The running listener: everything below runs on the one I/O thread unless it says otherwise.

class SessionBase;

struct WebServer::Impl {
  struct Route {
    Handler handler;
    Dispatch how;
  };

  Impl(std::map<std::string, Route> r, WebUsers& u, const WebConfig& web)
      : routes(std::move(r)),
        users(u),
        max_connections(static_cast<size_t>(web.max_connections)),
        pool(kPoolBase + static_cast<unsigned>(web.max_probe_requests)) {}

  void listen(const std::string& address, const WebConfig& web);
  void accept();
  void on_accept(boost::system::error_code ec, tcp::socket socket);
  bool close_oldest_idle();
  // Answers one request: `done` is called on the I/O thread, at once for what needs no handler
  // thread, else when the pool has run the handler.
  void handle(WebRequest req, std::function<void(WebResponse)> done);
  WebResponse respond(const Route* route, const WebRequest& req, bool authorized) const;

  const std::map<std::string, Route> routes;
  WebUsers& users;
  const size_t max_connections;
  std::atomic<size_t> open{0};      // connections accepted and not yet closed
  std::list<SessionBase*> idle;     // waiting for a request; front: idle the longest
  std::optional<ssl::context> tls;  // set when the listener serves TLS
  bool running = false;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  asio::steady_timer retry{io};
  asio::thread_pool pool;
  std::thread thread;
};

// What the server needs of a connection of either kind: its place in the idle list and a way to
// close it from outside.
class SessionBase : public std::enable_shared_from_this<SessionBase> {
 public:
  explicit SessionBase(WebServer::Impl& server) : server_(server) { ++server_.open; }
  virtual ~SessionBase() { forget(); }
  SessionBase(const SessionBase&) = delete;
  SessionBase& operator=(const SessionBase&) = delete;
  virtual void start() = 0;
  // Cancels every operation; the session is freed when their handlers have returned.
  virtual void close() = 0;

 protected:
  void set_idle() {
    if (idle_) return;
    idle_pos_ = server_.idle.insert(server_.idle.end(), this);
    idle_ = true;
  }
  void set_busy() {
    if (!idle_) return;
    server_.idle.erase(idle_pos_);
    idle_ = false;
  }
  // Out of the idle list and the count, once.
  void forget() {
    set_busy();
    if (!counted_) return;
    counted_ = false;
    --server_.open;
  }

  WebServer::Impl& server_;

 private:
  bool idle_ = false;
  bool counted_ = true;
  std::list<SessionBase*>::iterator idle_pos_;
};

template <class Stream>
class Session : public SessionBase {
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

 public:
  Session(WebServer::Impl& server, Stream stream)
      : SessionBase(server), stream_(std::move(stream)) {}

  void start() override {
    if constexpr (kTls) {
      set_idle();
      lowest().expires_after(kHandshakeTimeout);
      stream_.async_handshake(ssl::stream_base::server,
                              [self = self()](boost::system::error_code ec) {
                                if (ec) return self->close();
                                self->read_head();
                              });
    } else {
      read_head();
    }
  }

  void close() override {
    if (closed_) return;
    closed_ = true;
    forget();
    boost::system::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close();
  }

 private:
  std::shared_ptr<Session> self() { return std::static_pointer_cast<Session>(shared_from_this()); }
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  bool bytes_waiting() {
    if (buffer_.size() > 0) return true;
    if constexpr (kTls) return SSL_pending(stream_.native_handle()) > 0;
    return false;
  }

  // Keep-alive: wait (up to the idle timeout) for the first byte of the next request; its head
  // then has the head deadline.
  void wait_for_request() {
    set_idle();
    if (bytes_waiting()) return read_head();
    lowest().expires_after(kIdleTimeout);
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = self()](boost::system::error_code ec, size_t n) {
                              self->buffer_.commit(n);
                              if (ec) return self->close();
                              self->read_head();
                            });
  }

  void read_head() {
    set_idle();
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(kBodyLimit);
    lowest().expires_after(kHeadTimeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = self()](boost::system::error_code ec, size_t) {
                              if (ec) return self->refuse(ec);
                              self->read_body();
                            });
  }

  void read_body() {
    if (parser_->is_done()) return on_request();
    lowest().expires_after(kBodyTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = self()](boost::system::error_code ec, size_t) {
                       if (ec) return self->refuse(ec);
                       self->on_request();
                     });
  }

  // A request that cannot be served gets an answer saying why, then the connection closes; a
  // timeout, a reset or the client's own close just closes.
  void refuse(boost::system::error_code ec) {
    int status = ec == http::error::header_limit ? 431
                 : ec == http::error::body_limit ? 413
                 : ec.category() == http::make_error_code(http::error::bad_target).category() &&
                         ec != http::error::end_of_stream && ec != http::error::partial_message
                     ? 400
                     : 0;
    if (status == 0) return close();
    set_busy();
    keep_alive_ = false;
    head_only_ = false;
    write(plain(status, status == 431   ? "Request header too large.\n"
                        : status == 413 ? "Request body too large.\n"
                                        : "Bad request.\n"));
  }

  void on_request() {
    set_busy();
    lowest().expires_never();
    const auto& msg = parser_->get();
    keep_alive_ = msg.keep_alive();
    head_only_ = msg.method() == http::verb::head;
    version_ = msg.version();
    server_.handle(web_request(msg), [self = self()](WebResponse r) { self->write(std::move(r)); });
  }

  static WebRequest web_request(const http::request<http::string_body>& msg) {
    WebRequest req;
    req.method = std::string(sv(msg.method_string()));
    std::string_view target = sv(msg.target());
    auto q = target.find('?');
    req.path = url_decode(target.substr(0, q), false);
    if (q != std::string_view::npos) req.query = parse_query(target.substr(q + 1));
    for (const auto& field : msg) {
      std::string name = ascii_lower(sv(field.name_string()));
      std::string value(sv(field.value()));
      auto [it, fresh] = req.headers.emplace(name, value);
      if (!fresh) it->second += ", " + value;
    }
    return req;
  }

  void write(WebResponse r) {
    if (closed_) return;
    response_.emplace(static_cast<http::status>(r.status), version_);
    auto& res = *response_;
    res.set(http::field::content_type, r.content_type);
    res.set(http::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
    for (const auto& [k, v] : r.headers) res.insert(k, v);
    res.keep_alive(keep_alive_ && server_.running);
    res.content_length(r.body.size());
    if (!head_only_) res.body() = std::move(r.body);
    lowest().expires_after(kWriteTimeout);
    http::async_write(stream_, res, [self = self()](boost::system::error_code ec, size_t) {
      if (ec) return self->close();
      bool again = self->response_->keep_alive();
      self->response_.reset();
      if (again) return self->wait_for_request();
      self->shutdown();
    });
  }

  // `Connection: close`: end the stream cleanly (TLS close_notify), then close.
  void shutdown() {
    if constexpr (kTls) {
      lowest().expires_after(kShutdownTimeout);
      stream_.async_shutdown([self = self()](boost::system::error_code) { self->close(); });
    } else {
      boost::system::error_code ec;
      lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
      close();
    }
  }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;
  bool keep_alive_ = false;
  bool head_only_ = false;
  bool closed_ = false;
  unsigned version_ = 11;
};

using PlainSession = Session<beast::tcp_stream>;
using TlsSession = Session<beast::ssl_stream<beast::tcp_stream>>;

void WebServer::Impl::listen(const std::string& address, const WebConfig& web) {
  if (!web.tls_cert_file.empty()) {
    tls.emplace(ssl::context::tls_server);
    tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    try {
      tls->use_certificate_chain_file(web.tls_cert_file);
      tls->use_private_key_file(web.tls_key_file, ssl::context::pem);
      if (!web.tls_client_ca_file.empty()) {
        tls->load_verify_file(web.tls_client_ca_file);
        // Also name the CA in the handshake, so clients pick the right certificate.
        SSL_CTX_set_client_CA_list(tls->native_handle(),
                                   SSL_load_client_CA_file(web.tls_client_ca_file.c_str()));
        tls->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
      }
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error("cannot load the listener's TLS files (" + web.tls_cert_file + ", " +
                               web.tls_key_file + "): " + e.what());
    }
  }
  try {
    auto endpoint = listen_endpoint(io, address);
    acceptor.open(endpoint.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(asio::socket_base::max_listen_connections);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot listen on " + address + ": " + e.what());
  }
}

void WebServer::Impl::accept() {
  acceptor.async_accept(io, [this](boost::system::error_code ec, tcp::socket socket) {
    on_accept(ec, std::move(socket));
  });
}

void WebServer::Impl::on_accept(boost::system::error_code ec, tcp::socket socket) {
  if (!running || ec == asio::error::operation_aborted) return;
  if (ec) {
    // Out of descriptors (EMFILE/ENFILE) or memory: make room and try again shortly instead of
    // spinning on an accept that keeps failing.
    spdlog::debug("web listener: accept failed: {}", ec.message());
    close_oldest_idle();
    retry.expires_after(50ms);
    retry.async_wait([this](boost::system::error_code e) {
      if (!e) accept();
    });
    return;
  }
  // At the cap, the connection idle the longest makes room; if every connection is busy with a
  // request, the new one is refused.
  if (open.load() >= max_connections && !close_oldest_idle()) {
    boost::system::error_code ignored;
    socket.close(ignored);
    return accept();
  }
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  std::shared_ptr<SessionBase> session;
  if (tls)
    session = std::make_shared<TlsSession>(
        *this, beast::ssl_stream<beast::tcp_stream>(beast::tcp_stream(std::move(socket)), *tls));
  else
    session = std::make_shared<PlainSession>(*this, beast::tcp_stream(std::move(socket)));
  session->start();
  accept();
}

bool WebServer::Impl::close_oldest_idle() {
  if (idle.empty()) return false;
  idle.front()->close();  // takes itself out of the list
  return true;
}

void WebServer::Impl::handle(WebRequest req, std::function<void(WebResponse)> done) {
  auto it = routes.find(req.path);
  const Route* route = it == routes.end() ? nullptr : &it->second;
  auto verdict = users.quick(req.header("authorization"));
  bool cheap =
      verdict == WebUsers::Verdict::denied ||
      (verdict == WebUsers::Verdict::allowed && (!route || route->how == Dispatch::io_thread));
  if (cheap) return done(respond(route, req, verdict == WebUsers::Verdict::allowed));
  // bcrypt or a slow handler: on the pool, the answer posted back to the I/O thread. `done` moves
  // along, so the session is released on the I/O thread, never on a pool thread.
  asio::post(pool, [this, route, verdict, req = std::move(req), done = std::move(done)]() mutable {
    bool authorized =
        verdict == WebUsers::Verdict::allowed || users.verify(req.header("authorization"));
    WebResponse r = respond(route, req, authorized);
    asio::post(io, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
  });
}

WebResponse WebServer::Impl::respond(const Route* route, const WebRequest& req,
                                     bool authorized) const {
  if (!authorized) {
    WebResponse r = plain(401, "Unauthorized\n");
    r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"pes-agent\"");
    return r;
  }
  if (!route) return plain(404, "Not found\n");
  try {
    return route->handler(req);
  } catch (const std::exception& e) {
    return plain(500, std::string("internal error: ") + e.what() + "\n");
  }
}

// ---------------------------------------------------------------------------------------------

WebServer::WebServer() : users_(std::make_unique<WebUsers>()) {}

WebServer::~WebServer() { stop(); }

void WebServer::route(const std::string& path, Handler handler, Dispatch how) {
  routes_[path] = RouteEntry{std::move(handler), how};
}

void WebServer::set_users(std::vector<std::pair<std::string, std::string>> users) {
  users_->set(std::move(users));
}

size_t WebServer::connections() const { return impl_ ? impl_->open.load() : 0; }

void WebServer::start(const std::string& listen_address, const WebConfig& web) {
  raise_fd_limit();
  set_users(web.basic_auth_users);
  std::map<std::string, Impl::Route> routes;
  for (const auto& [path, r] : routes_) routes[path] = Impl::Route{r.handler, r.how};
  auto impl = std::make_unique<Impl>(std::move(routes), *users_, web);
  impl->listen(listen_address, web);
  impl->running = true;
  impl->accept();
  Impl* p = impl.get();
  impl->thread = std::thread([p] {
    // A handler that throws must not take the listener with it.
    for (;;) {
      try {
        p->io.run();
        return;
      } catch (const std::exception& e) {
        spdlog::error("web listener: {}", e.what());
      }
    }
  });
  impl_ = std::move(impl);
}

void WebServer::stop() {
  if (!impl_) return;
  // Stop the loop, let handlers in progress end (their answers are dropped), then free the
  // connections with the loop's pending work.
  asio::post(impl_->io, [p = impl_.get()] {
    p->running = false;
    boost::system::error_code ignored;
    p->acceptor.close(ignored);
    p->retry.cancel();
    p->io.stop();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->pool.join();
  impl_.reset();
}

}  // namespace pes
