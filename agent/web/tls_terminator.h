// TLS for the agent's own listener: accepts TLS connections on the public address and relays
// the plaintext to the civetweb listener on a private loopback port. (Debian 12's civetweb
// cannot do TLS with OpenSSL 3 itself; see docs/security.md.)
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

struct ssl_ctx_st;

namespace pes {

class TlsTerminator {
 public:
  TlsTerminator() = default;
  ~TlsTerminator();
  TlsTerminator(const TlsTerminator&) = delete;
  TlsTerminator& operator=(const TlsTerminator&) = delete;

  // Listens on host:port; throws std::runtime_error (bad certificate/key, address in use).
  void start(const std::string& host, int port, int backend_port, const std::string& cert_file,
             const std::string& key_file);
  void stop();

 private:
  void accept_loop();
  void relay(int client);

  ssl_ctx_st* ctx_ = nullptr;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int backend_port_ = 0;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable idle_;
  int active_ = 0;
};

}  // namespace pes
