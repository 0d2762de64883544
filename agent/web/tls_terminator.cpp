#include "agent/web/tls_terminator.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>

namespace pes {

namespace {

constexpr int kMaxConnections = 64;
constexpr int kHandshakeMs = 10000;
constexpr int kIdleMs = 60000;

struct SslDeleter {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

bool wait(int fd, short events, int ms) {
  pollfd p{fd, events, 0};
  return poll(&p, 1, ms) > 0;
}

}  // namespace

TlsTerminator::~TlsTerminator() { stop(); }

void TlsTerminator::start(const std::string& host, int port, int backend_port,
                          const std::string& cert_file, const std::string& key_file) {
  backend_port_ = backend_port;
  ctx_ = SSL_CTX_new(TLS_server_method());
  if (!ctx_) throw std::runtime_error("cannot create a TLS context");
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx_, cert_file.c_str()) != 1)
    throw std::runtime_error("web.tls_cert_file: cannot load certificate " + cert_file);
  if (SSL_CTX_use_PrivateKey_file(ctx_, key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx_) != 1)
    throw std::runtime_error(
        "web.tls_key_file: cannot load the key or it does not match the certificate");
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.empty() ? "0.0.0.0" : host.c_str(), &addr.sin_addr) != 1)
    throw std::runtime_error("cannot listen on " + host + ": not an IPv4 address");
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listen_fd_, 64) != 0)
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) + ": " +
                             strerror(errno));
  if (pipe2(wake_, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  acceptor_ = std::thread([this] { accept_loop(); });
}

void TlsTerminator::stop() {
  if (stopping_.exchange(true)) return;
  if (wake_[1] >= 0) {
    [[maybe_unused]] auto w = write(wake_[1], "x", 1);
  }
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::unique_lock lock(mu_);
    idle_.wait_for(lock, std::chrono::seconds(5), [this] { return active_ == 0; });
  }
  for (int* fd : {&listen_fd_, &wake_[0], &wake_[1]})
    if (*fd >= 0) {
      close(*fd);
      *fd = -1;
    }
  if (ctx_) SSL_CTX_free(ctx_);
  ctx_ = nullptr;
}

void TlsTerminator::accept_loop() {
  while (!stopping_) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(p, 2, -1) <= 0) continue;
    if (p[1].revents) return;
    int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    {
      std::lock_guard lock(mu_);
      if (active_ >= kMaxConnections) {
        close(client);
        continue;
      }
      ++active_;
    }
    std::thread([this, client] {
      relay(client);
      std::lock_guard lock(mu_);
      --active_;
      idle_.notify_all();
    }).detach();
  }
}

// One connection: TLS handshake, then bytes both ways until either side closes or idles.
void TlsTerminator::relay(int client) {
  Fd c{client};
  fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK);
  std::unique_ptr<SSL, SslDeleter> ssl(SSL_new(ctx_));
  if (!ssl) return;
  SSL_set_fd(ssl.get(), client);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kHandshakeMs);
  while (true) {
    int r = SSL_accept(ssl.get());
    if (r == 1) break;
    int e = SSL_get_error(ssl.get(), r);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || left <= 0 || stopping_ ||
        !wait(client, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, static_cast<int>(left))) {
      ERR_clear_error();
      return;  // not TLS (e.g. plain HTTP), a bad handshake or a slow client
    }
  }
  Fd b{socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(backend_port_));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(b.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
  fcntl(b.fd, F_SETFL, fcntl(b.fd, F_GETFL) | O_NONBLOCK);
  char buf[16384];
  std::string to_backend, to_client;
  bool client_open = true, backend_open = true;
  // Until the backend has answered and closed (a client that half-closes still gets its answer).
  while (!stopping_ && (backend_open || !to_client.empty())) {
    // Drain what OpenSSL already decrypted before polling the socket.
    while (client_open && to_backend.size() < sizeof buf) {
      int n = SSL_read(ssl.get(), buf, sizeof buf);
      if (n > 0) {
        to_backend.append(buf, static_cast<size_t>(n));
        continue;
      }
      int e = SSL_get_error(ssl.get(), n);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        client_open = false;
        shutdown(b.fd, SHUT_WR);
        if (e != SSL_ERROR_ZERO_RETURN) to_client.clear(), backend_open = false;  // connection gone
      }
      break;
    }
    while (!to_backend.empty()) {
      ssize_t n = send(b.fd, to_backend.data(), to_backend.size(), MSG_NOSIGNAL);
      if (n <= 0) break;
      to_backend.erase(0, static_cast<size_t>(n));
    }
    while (backend_open && to_client.size() < sizeof buf) {
      ssize_t n = recv(b.fd, buf, sizeof buf, 0);
      if (n > 0) {
        to_client.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) backend_open = false;
      break;
    }
    while (!to_client.empty()) {
      int n = SSL_write(ssl.get(), to_client.data(), static_cast<int>(to_client.size()));
      if (n <= 0) {
        int e = SSL_get_error(ssl.get(), n);
        if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
          ERR_clear_error();
          return;
        }
        break;
      }
      to_client.erase(0, static_cast<size_t>(n));
    }
    if (!backend_open && to_client.empty()) break;
    if (!backend_open && to_client.empty()) break;
    pollfd p[2] = {
        {client, static_cast<short>((client_open ? POLLIN : 0) | (to_client.empty() ? 0 : POLLOUT)),
         0},
        {b.fd, static_cast<short>((backend_open ? POLLIN : 0) | (to_backend.empty() ? 0 : POLLOUT)),
         0}};
    if (poll(p, 2, kIdleMs) <= 0) break;
  }
  SSL_shutdown(ssl.get());
  ERR_clear_error();
}

}  // namespace pes
