// The TLS client of the probes that run TLS on a socket of their own (tcp, ldap): context set-up
// from the common `tls` block, the handshake on the event loop within the deadline, and the
// certificate-chain expiry.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "agent/core/handles.h"
#include "agent/core/http_types.h"
#include "agent/core/probe.h"
#include "agent/core/types.h"

namespace pes {

// Who the client talks to.
struct TlsPeer {
  std::string name;    // verified against the certificate; sent as SNI unless an IP address
  std::string target;  // names the peer in messages
  // Treat a close without close_notify as the end of the data (libldap's reads want that).
  bool ignore_unexpected_eof = false;
};

// One client session. The context outlives the session; both outlive whatever writes through them.
struct TlsSession {
  SslCtxPtr ctx;
  SslPtr ssl;
};

// Called once, on the loop thread: nullopt when the handshake completed, else the failure
// (config, tls, timeout or internal).
using Handshaken = std::function<void(std::optional<Outcome> failed)>;

// Sets up a session on the connected, non-blocking socket fd with the options' CA, client
// certificate and verification, and drives the handshake on the loop (ctx.wait_fd) until it
// completes or the run's deadline passes. `session` must outlive the handshake (the caller's run
// owns both; `done` keeps the run alive). Loop thread only.
void tls_handshake(const RunContextPtr& ctx, TlsSession& session, int fd, const TlsOptions& options,
                   const TlsPeer& peer, Handshaken done);

// The earliest notAfter of the peer's certificate chain, unix seconds.
std::optional<int64_t> earliest_cert_expiry(SSL* ssl);

// Adds probe_ssl_earliest_cert_expiry (blackbox_exporter's name) when the chain has one.
void add_cert_expiry_sample(Outcome& out, SSL* ssl);

// The first queued OpenSSL error as text (the queue is cleared), or `fallback`.
std::string ssl_error_text(const char* fallback = "TLS handshake failed");

}  // namespace pes
