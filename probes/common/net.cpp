#include "probes/common/net.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "probes/common/deadline.h"

namespace pes {

namespace {

// The outcome of one address: connected, failed (try the next one) or out of time.
enum class Attempt { connected, failed, timed_out };

Attempt connect_one(const addrinfo& a, Clock::time_point deadline, UniqueFd& sock,
                    std::string& error) {
  sock.reset(socket(a.ai_family, a.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a.ai_protocol));
  if (!sock) {
    error = std::strerror(errno);
    return Attempt::failed;
  }
  if (connect(sock.get(), a.ai_addr, a.ai_addrlen) == 0) return Attempt::connected;
  if (errno != EINPROGRESS) {
    error = std::strerror(errno);
    return Attempt::failed;
  }
  if (!wait_fd(sock.get(), POLLOUT, deadline)) return Attempt::timed_out;
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err == 0) return Attempt::connected;
  error = std::strerror(err);
  return Attempt::failed;
}

}  // namespace

std::optional<Outcome> connect_tcp(const std::string& host, const std::string& port,
                                   const std::string& target, Clock::time_point deadline,
                                   UniqueFd& out) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  int gai = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  AddrInfoPtr addrs(res);
  if (gai != 0)
    return Outcome::failure(Reason::dns, "cannot resolve " + host + ": " + gai_strerror(gai));
  std::string last_error = "no address";
  for (const addrinfo* a = addrs.get(); a; a = a->ai_next) {
    UniqueFd sock;
    switch (connect_one(*a, deadline, sock, last_error)) {
      case Attempt::connected:
        out = std::move(sock);
        return std::nullopt;
      case Attempt::timed_out:
        return Outcome::failure(Reason::timeout, "connect to " + target + " timed out");
      case Attempt::failed:
        break;
    }
  }
  return Outcome::failure(Reason::connect, "cannot connect to " + target + ": " + last_error);
}

std::string bracket_host(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

}  // namespace pes
