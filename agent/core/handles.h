// RAII owners for the C handles the agent and its probes use (libcurl, OpenSSL, sockets,
// getaddrinfo), in one place so that every handle is freed by its owner and no early return can
// leak one. Owners move (noexcept) and never copy. Library-specific owners of probes (libpq,
// libldap) are built from the same `Owned` template in probes/common/handles.h.
#pragma once

#include <curl/curl.h>
#include <netdb.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <memory>
#include <utility>

namespace pes {

// Calls the library's free function; a null handle is never passed to it.
template <auto Free>
struct CFree {
  template <typename T>
  void operator()(T* p) const noexcept {
    if (p) Free(p);
  }
};

// std::unique_ptr with the library's free function: noexcept moves, no copies.
template <typename T, auto Free>
using Owned = std::unique_ptr<T, CFree<Free>>;

// libcurl (CURL and CURLSH are typedefs of void, hence the explicit types).
using CurlEasy = Owned<CURL, curl_easy_cleanup>;
using CurlMulti = Owned<CURLM, curl_multi_cleanup>;
using CurlShare = Owned<CURLSH, curl_share_cleanup>;
using CurlUrl = Owned<CURLU, curl_url_cleanup>;
using CurlSlist = Owned<curl_slist, curl_slist_free_all>;
using CurlString = Owned<char, curl_free>;  // strings libcurl allocates (curl_url_get)

// OpenSSL.
using SslCtxPtr = Owned<SSL_CTX, SSL_CTX_free>;
using SslPtr = Owned<SSL, SSL_free>;
using BioPtr = Owned<BIO, BIO_free_all>;
using X509Ptr = Owned<X509, X509_free>;

// getaddrinfo's list.
using AddrInfoPtr = Owned<addrinfo, freeaddrinfo>;

// A file descriptor: closed when the owner goes, unless released.
class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Gives the descriptor to whoever closes it from now on (e.g. libldap's handle).
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace pes
