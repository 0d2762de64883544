// Boost.Beast lives in this file only (see websocket.h). The exchange is one C++20 coroutine on a
// private io_context run by the calling worker thread; one steady_timer at the deadline cancels
// whatever is pending (resolve, connect, TLS, upgrade, read, write), so every step is bounded
// without per-operation timeouts.
#include "probes/jitsi/websocket.h"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <exception>
#include <type_traits>
#include <utility>

#include "probes/jitsi/xmpp.h"

namespace pes::jitsi {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

constexpr size_t kMaxMessageBytes = 1 << 20;
constexpr int kMaxFrames = 16;  // frames read before giving up on seeing stream features
constexpr auto kCloseGrace = std::chrono::milliseconds(300);

// Ends the exchange with a verdict; thrown inside the coroutine, caught by its completion.
struct StepFailure {
  Reason reason;
  std::string message;
};

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

std::string ssl_error_text(const error_code& ec, SSL* ssl) {
  if (ssl) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK)
      return std::string("certificate verification failed: ") +
             X509_verify_cert_error_string(verify);
  }
  return ec.message();
}

class WsRun {
 public:
  WsRun(const WsEndpoint& ep, std::string_view domain, const TlsOptions& tls,
        Clock::time_point deadline, const WsTraceFn& trace)
      : ep_(ep), domain_(domain), tls_(tls), deadline_(deadline), trace_(trace), timer_(ioc_) {}

  WsXmppResult run() {
    if (Clock::now() >= deadline_) return fail(Reason::timeout, "no time left before the deadline");
    arm(deadline_);
    asio::co_spawn(ioc_, session(), [this](std::exception_ptr e) {
      abort_ = nullptr;  // it refers to the coroutine's locals, which are gone now
      timer_.cancel();
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const StepFailure& f) {
        result_.ok = false;
        result_.reason = f.reason;
        result_.message = f.message;
      } catch (const std::exception& x) {
        result_.ok = false;
        result_.reason = Reason::internal;
        result_.message = std::string("WebSocket client error: ") + x.what();
      }
    });
    try {
      ioc_.run();
    } catch (const std::exception& x) {
      return fail(Reason::internal, std::string("WebSocket client error: ") + x.what());
    }
    return result_;
  }

 private:
  // The steps, top-down. `session` picks the stream type; `exchange` is the same for both.
  asio::awaitable<void> session() {
    if (ep_.secure) {
      ssl::context ctx(ssl::context::tls_client);
      configure_tls(ctx);
      websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws(ioc_, ctx);
      co_await exchange(ws);
    } else {
      websocket::stream<beast::tcp_stream> ws(ioc_);
      co_await exchange(ws);
    }
  }

  template <class Ws>
  asio::awaitable<void> exchange(Ws& ws) {
    constexpr bool kTls = !std::is_same_v<typename Ws::next_layer_type, beast::tcp_stream>;
    auto& tcp_layer = beast::get_lowest_layer(ws);
    error_code ec;

    // 1. Resolve.
    step_ = "resolve";
    tcp::resolver resolver(ioc_);
    abort_ = [&resolver] { resolver.cancel(); };
    const auto endpoints = co_await resolver.async_resolve(
        ep_.host, ep_.port, asio::redirect_error(asio::use_awaitable, ec));
    check(ec, Reason::dns, "cannot resolve " + ep_.host);

    // 2. Connect.
    step_ = "connect";
    abort_ = [&tcp_layer] { tcp_layer.close(); };
    const auto peer =
        co_await tcp_layer.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    check(ec, Reason::connect, "cannot connect to " + ep_.host_header);
    note("connected to " + peer.address().to_string() + " port " + std::to_string(peer.port()));

    // 3. TLS (wss).
    if constexpr (kTls) {
      step_ = "tls";
      SSL* ssl = ws.next_layer().native_handle();
      const std::string name = tls_.server_name.empty() ? ep_.host : tls_.server_name;
      if (!is_ip_literal(name)) SSL_set_tlsext_host_name(ssl, name.c_str());
      if (!tls_.insecure_skip_verify) {
        if (is_ip_literal(name))
          X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
        else
          SSL_set1_host(ssl, name.c_str());
      }
      co_await ws.next_layer().async_handshake(ssl::stream_base::client,
                                               asio::redirect_error(asio::use_awaitable, ec));
      if (ec && !timed_out_) fail_now(Reason::tls, ssl_error_text(ec, ssl));
      check(ec, Reason::tls, "TLS handshake");
      note("TLS established");
    }

    // 4. Upgrade with the xmpp subprotocol (RFC 7395 §3.2); the server must echo it.
    step_ = "upgrade";
    ws.set_option(websocket::stream_base::decorator([](websocket::request_type& req) {
      req.set(http::field::sec_websocket_protocol, "xmpp");
      req.set(http::field::user_agent, "pes-agent");
    }));
    ws.read_message_max(kMaxMessageBytes);
    websocket::response_type res;
    co_await ws.async_handshake(res, ep_.host_header, ep_.target,
                                asio::redirect_error(asio::use_awaitable, ec));
    if (ec == websocket::error::upgrade_declined && !timed_out_)
      fail_now(Reason::protocol, "the server refused the WebSocket upgrade of " + ep_.url() +
                                     " with HTTP status " + std::to_string(res.result_int()));
    check(ec, Reason::protocol, "WebSocket upgrade of " + ep_.url());
    const auto protocol = res[http::field::sec_websocket_protocol];
    if (protocol != "xmpp")
      fail_now(
          Reason::protocol,
          protocol.empty()
              ? "the server did not accept the xmpp subprotocol (no Sec-WebSocket-Protocol)"
              : "the server chose subprotocol \"" + std::string(protocol) + "\" instead of xmpp");
    note("upgraded to WebSocket with subprotocol xmpp");

    // 5. Open the stream and wait for <open/> and <stream:features/>.
    step_ = "open";
    ws.text(true);
    const std::string open = build_ws_open(domain_);
    co_await ws.async_write(asio::buffer(open), asio::redirect_error(asio::use_awaitable, ec));
    check(ec, Reason::connect, "sending <open/>");
    note("sent <open to='" + domain_ + "'/>");

    bool opened = false;
    for (int frames = 0;; ++frames) {
      if (frames == kMaxFrames)
        fail_now(Reason::protocol,
                 "no <stream:features/> in the first " + std::to_string(kMaxFrames) + " frames");
      beast::flat_buffer buffer;
      co_await ws.async_read(buffer, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == websocket::error::closed && !timed_out_) {
        const auto& why = ws.reason();
        fail_now(Reason::protocol,
                 "the server closed the WebSocket (code " + std::to_string(why.code) +
                     (why.reason.empty() ? "" : " \"" + std::string(why.reason.c_str()) + "\"") +
                     ") before sending stream features");
      }
      check(ec, Reason::protocol, "reading the server's answer");
      const WsFrame frame = parse_ws_frame(beast::buffers_to_string(buffer.data()));
      switch (frame.kind) {
        case WsFrame::Kind::invalid:
          fail_now(Reason::protocol, "malformed frame: " + frame.error);
        case WsFrame::Kind::stream_error:
          fail_now(Reason::protocol,
                   "stream error " +
                       (frame.condition.empty() ? "(no condition)" : frame.condition) +
                       (frame.text.empty() ? "" : ": " + frame.text));
        case WsFrame::Kind::close:
          fail_now(Reason::protocol, "the server closed the stream" +
                                         (frame.see_other_uri.empty()
                                              ? std::string()
                                              : " (see-other-uri " + frame.see_other_uri + ")"));
        case WsFrame::Kind::open:
          opened = true;
          result_.stream_id = frame.id;
          result_.from = frame.from;
          note("<open from='" + frame.from + "' id='" + frame.id + "' version='" + frame.version +
               "'/>");
          if (frame.version != "1.0")
            fail_now(Reason::protocol,
                     "the server opened a stream with version '" + frame.version + "', not '1.0'");
          continue;
        case WsFrame::Kind::features:
          if (!opened) fail_now(Reason::protocol, "<stream:features/> before <open/>");
          if (frame.sasl_mechanisms.empty())
            fail_now(Reason::protocol, "stream features without SASL mechanisms");
          result_.sasl_mechanisms = frame.sasl_mechanisms;
          break;
        case WsFrame::Kind::other:
          note("ignored frame " + frame.name);
          continue;
      }
      break;
    }
    std::string mechs;
    for (const auto& m : result_.sasl_mechanisms) mechs += (mechs.empty() ? "" : " ") + m;
    note("stream features with SASL mechanisms: " + mechs);
    result_.ok = true;
    result_.reason = Reason::none;

    // 6. Close politely, briefly: the verdict is in, so errors here change nothing.
    step_ = "close";
    closing_ = true;
    arm(std::min(deadline_, Clock::now() + kCloseGrace));
    // RFC 7395 §3.6: our <close/>, the server's <close/>, then the server closes the WebSocket
    // (Beast answers its close frame while reading). Some servers and proxies just drop the
    // connection after their <close/>; only when nothing ends it do we close it ourselves.
    const std::string close = build_ws_close();
    co_await ws.async_write(asio::buffer(close), asio::redirect_error(asio::use_awaitable, ec));
    bool server_closed_stream = false;
    for (int frames = 0; !ec && frames < 4; ++frames) {
      beast::flat_buffer buffer;
      co_await ws.async_read(buffer, asio::redirect_error(asio::use_awaitable, ec));
      if (!ec &&
          parse_ws_frame(beast::buffers_to_string(buffer.data())).kind == WsFrame::Kind::close)
        server_closed_stream = true;
    }
    if (ec == websocket::error::closed) {
      note("stream closed, WebSocket closed by the server");
    } else if (server_closed_stream) {
      note("stream closed, then the server dropped the connection (" + ec.message() + ")");
    } else {
      const std::string why = ec ? ec.message() : "no <close/> from the server";
      if (ws.is_open())
        co_await ws.async_close(websocket::close_code::normal,
                                asio::redirect_error(asio::use_awaitable, ec));
      note("closing: " + why + " (ignored)");
    }
  }

  void configure_tls(ssl::context& ctx) {
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3);
    error_code ec;
    if (tls_.insecure_skip_verify) {
      ctx.set_verify_mode(ssl::verify_none);
    } else {
      ctx.set_verify_mode(ssl::verify_peer);
      if (!tls_.ca_file.empty())
        ctx.load_verify_file(tls_.ca_file, ec);
      else
        ctx.set_default_verify_paths(ec);
      if (ec) throw StepFailure{Reason::config, "cannot load the CA certificates: " + ec.message()};
    }
    if (!tls_.cert_file.empty()) {
      ctx.use_certificate_chain_file(tls_.cert_file, ec);
      if (!ec) ctx.use_private_key_file(tls_.key_file, ssl::context::pem, ec);
      if (ec)
        throw StepFailure{Reason::config,
                          "cannot load the client certificate or key: " + ec.message()};
    }
  }

  // Fails the current step if ec is set: timeout when the deadline cut it, else `reason`.
  void check(const error_code& ec, Reason reason, const std::string& what) {
    if (!ec) return;
    if (timed_out_) fail_now(Reason::timeout, what + ": no answer before the deadline");
    if (reason != Reason::dns &&
        (ec == asio::error::connection_refused || ec == asio::error::connection_reset ||
         ec == asio::error::host_unreachable || ec == asio::error::network_unreachable))
      reason = Reason::connect;
    if (ec == asio::error::eof || ec == http::error::end_of_stream ||
        ec == ssl::error::stream_truncated)
      fail_now(reason == Reason::tls ? Reason::tls : Reason::connect,
               what + ": the server closed the connection");
    fail_now(reason, what + ": " + ec.message());
  }

  [[noreturn]] void fail_now(Reason reason, std::string message) {
    throw StepFailure{reason, std::string(step_) + ": " + std::move(message)};
  }

  WsXmppResult fail(Reason reason, std::string message) {
    WsXmppResult r;
    r.reason = reason;
    r.message = std::move(message);
    return r;
  }

  void arm(Clock::time_point at) {
    timer_.expires_at(at);
    timer_.async_wait([this](const error_code& ec) {
      if (ec) return;  // cancelled or re-armed
      if (!closing_) timed_out_ = true;
      if (abort_) abort_();
    });
  }

  void note(const std::string& line) {
    if (trace_) trace_(line);
  }

  const WsEndpoint& ep_;
  const std::string domain_;
  const TlsOptions& tls_;
  const Clock::time_point deadline_;
  const WsTraceFn& trace_;

  asio::io_context ioc_{1};
  asio::steady_timer timer_;
  std::function<void()> abort_;
  const char* step_ = "resolve";
  bool timed_out_ = false;
  bool closing_ = false;
  WsXmppResult result_;
};

}  // namespace

WsXmppResult ws_xmpp_probe(const WsEndpoint& endpoint, std::string_view domain,
                           const TlsOptions& tls, Clock::time_point deadline,
                           const WsTraceFn& trace) {
  return WsRun(endpoint, domain, tls, deadline, trace).run();
}

}  // namespace pes::jitsi
