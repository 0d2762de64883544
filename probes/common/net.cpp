#include "probes/common/net.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace pes {

namespace {

// One connect: the lookup, then each address in turn until one accepts.
class TcpConnect : public std::enable_shared_from_this<TcpConnect> {
 public:
  TcpConnect(RunContextPtr ctx, std::string host, std::string port, std::string target,
             Connected done)
      : ctx_(std::move(ctx)),
        host_(std::move(host)),
        port_(std::move(port)),
        target_(std::move(target)),
        done_(std::move(done)) {}

  void start() {
    if (lookup(AI_NUMERICHOST | AI_NUMERICSERV) == 0) return try_address(addrs_.get());
    // A name: getaddrinfo may wait on a DNS server, so it runs on the pool, never on the loop.
    ctx_->blocking([self = shared_from_this()] {
      const int gai = self->lookup(AI_ADDRCONFIG);
      self->ctx_->on_loop([self, gai] { self->resolved(gai); });
    });
  }

 private:
  int lookup(int flags) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = flags;
    addrinfo* res = nullptr;
    const int gai = getaddrinfo(host_.c_str(), port_.c_str(), &hints, &res);
    addrs_.reset(res);
    return gai;
  }

  void resolved(int gai) {
    if (gai != 0)
      return fail(
          Outcome::failure(Reason::dns, "cannot resolve " + host_ + ": " + gai_strerror(gai)));
    try_address(addrs_.get());
  }

  void try_address(const addrinfo* a) {
    if (!a)
      return fail(
          Outcome::failure(Reason::connect, "cannot connect to " + target_ + ": " + last_error_));
    sock_.reset(
        socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
    if (!sock_) {
      last_error_ = std::strerror(errno);
      return try_address(a->ai_next);
    }
    if (::connect(sock_.get(), a->ai_addr, a->ai_addrlen) == 0) return connected();
    if (errno != EINPROGRESS) {
      last_error_ = std::strerror(errno);
      return try_address(a->ai_next);
    }
    ctx_->wait_fd(sock_.get(), POLLOUT, [self = shared_from_this(), a](bool ready) {
      if (!ready)
        return self->fail(
            Outcome::failure(Reason::timeout, "connect to " + self->target_ + " timed out"));
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(self->sock_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0) return self->connected();
      self->last_error_ = std::strerror(err);
      self->try_address(a->ai_next);
    });
  }

  void connected() { done_(std::nullopt, std::move(sock_)); }
  void fail(Outcome failure) {
    sock_.reset();
    done_(std::move(failure), UniqueFd());
  }

  RunContextPtr ctx_;
  const std::string host_, port_, target_;
  Connected done_;
  AddrInfoPtr addrs_;
  UniqueFd sock_;
  std::string last_error_ = "no address";
};

}  // namespace

void connect_tcp(const RunContextPtr& ctx, const std::string& host, const std::string& port,
                 const std::string& target, Connected done) {
  std::make_shared<TcpConnect>(ctx, host, port, target, std::move(done))->start();
}

std::string bracket_host(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

}  // namespace pes
