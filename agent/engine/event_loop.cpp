#include "agent/engine/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cassert>
#include <cctype>
#include <cstring>
#include <ctime>
#include <optional>

#include "pes_version.h"

namespace pes {

namespace {

// Appends to an owned list; on failure (out of memory) the list stays as it was.
void append(CurlSlist& list, const char* line) {
  if (curl_slist* head = curl_slist_append(list.get(), line)) {
    (void)list.release();  // the same list, now one longer (or a new one)
    list.reset(head);
  }
}

Reason reason_for(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return Reason::timeout;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return Reason::dns;
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
      return Reason::connect;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
      return Reason::tls;
    case CURLE_URL_MALFORMAT:
      return Reason::config;
    // Also "Received HTTP/0.9 when not allowed": the peer does not speak HTTP (URLs are validated
    // at load).
    case CURLE_UNSUPPORTED_PROTOCOL:
      return Reason::protocol;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_FAILED_INIT:
      return Reason::internal;
    default:
      return Reason::protocol;
  }
}

// "Expire date:Jan  1 00:00:00 2030 GMT" as written by libcurl's OpenSSL backend.
std::optional<int64_t> parse_expire(const char* line) {
  const char* colon = std::strchr(line, ':');
  if (!colon) return std::nullopt;
  struct tm tm {};
  const char* end = strptime(colon + 1, "%b %d %H:%M:%S %Y", &tm);
  if (!end) return std::nullopt;
  return static_cast<int64_t>(timegm(&tm));
}

// For tls.server_name: a CONNECT_TO rule to the URL's own host and the URL rewritten to
// server_name, so that SNI, the certificate name and Host are server_name. nullopt (and no rule)
// when the URL cannot be taken apart.
std::optional<std::string> connect_as(const std::string& url, const std::string& server_name,
                                      CurlSlist& rule) {
  CurlUrl u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return std::nullopt;
  char* raw_host = nullptr;
  char* raw_port = nullptr;
  curl_url_get(u.get(), CURLUPART_HOST, &raw_host, 0);
  CurlString host(raw_host);
  curl_url_get(u.get(), CURLUPART_PORT, &raw_port, CURLU_DEFAULT_PORT);
  CurlString port(raw_port);
  if (!host || !port) return std::nullopt;
  std::string line = server_name + ":" + port.get() + ":" + host.get() + ":" + port.get();
  append(rule, line.c_str());
  curl_url_set(u.get(), CURLUPART_HOST, server_name.c_str(), 0);
  char* raw_out = nullptr;
  CURLUcode rc = curl_url_get(u.get(), CURLUPART_URL, &raw_out, 0);
  CurlString out(raw_out);
  if (rc != CURLUE_OK || !out) return std::nullopt;
  return std::string(out.get());
}

size_t on_body(char* data, size_t size, size_t n, void* userp);
size_t on_header(char* data, size_t size, size_t n, void* userp);

// epoll_event.data of the loop's own fds: libcurl's sockets carry the fd (below 2^31), the wake-up
// eventfd kWake, a watched fd its watch id with kWatchTag set. An event of a watch that is gone (a
// stale event in the same batch) then finds no watch instead of another fd's owner.
constexpr uint64_t kWatchTag = uint64_t{1} << 63;
constexpr uint64_t kWake = uint64_t{1} << 62;

}  // namespace

struct EventLoop::Transfer {
  HttpId id = 0;
  CurlEasy easy;
  HttpDone done;
  HttpResponse resp;
  CurlSlist headers;
  CurlSlist connect_to;
  size_t max_body = 0;
  bool overflow = false;
  std::string method;
  TimerId backstop = 0;
  char errbuf[CURL_ERROR_SIZE] = {};
};

namespace {

size_t on_body(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<EventLoop::Transfer*>(userp);
  size_t len = size * n;
  if (t->resp.body.size() + len > t->max_body) {
    t->overflow = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  t->resp.body.append(data, len);
  return len;
}

size_t on_header(char* data, size_t size, size_t n, void* userp) {
  auto* t = static_cast<EventLoop::Transfer*>(userp);
  size_t len = size * n;
  std::string_view line(data, len);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.rfind("HTTP/", 0) == 0) {
    t->resp.headers.clear();  // a new response (after a redirect or 100-continue)
    return len;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos || t->resp.headers.size() > 512) return len;
  std::string name = ascii_lower(line.substr(0, colon));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  t->resp.headers.emplace_back(std::move(name), std::string(value.substr(0, 8192)));
  return len;
}

}  // namespace

EventLoop::EventLoop()
    : multi_(curl_multi_init()),
      share_(curl_share_init()),
      epoll_fd_(epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWake;
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &ev);
  curl_share_setopt(share_.get(), CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_multi_setopt(multi_.get(), CURLMOPT_SOCKETFUNCTION, &EventLoop::on_socket);
  curl_multi_setopt(multi_.get(), CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_.get(), CURLMOPT_TIMERFUNCTION, &EventLoop::on_timer);
  curl_multi_setopt(multi_.get(), CURLMOPT_TIMERDATA, this);
}

EventLoop::~EventLoop() {
  stop();
  // Easy handles go before the multi handle and the share they use.
  for (auto& [id, t] : transfers_) curl_multi_remove_handle(multi_.get(), t->easy.get());
  transfers_.clear();
  idle_handles_.clear();
  auto watches = std::move(watches_);  // their callbacks may own probe runs (and their sockets)
  watch_by_fd_.clear();
  watches.clear();
  multi_.reset();
}

void EventLoop::start() {
  if (running_.exchange(true)) return;
  thread_ = std::thread([this] {
    thread_id_ = std::this_thread::get_id();
    run();
  });
}

void EventLoop::stop() {
  if (!running_.exchange(false)) return;
  uint64_t one = 1;
  [[maybe_unused]] auto w = write(wake_fd_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  thread_id_ = std::thread::id();
}

void EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(post_mu_);
    posted_.push_back(std::move(fn));
  }
  uint64_t one = 1;
  [[maybe_unused]] auto w = write(wake_fd_.get(), &one, sizeof one);
}

EventLoop::TimerId EventLoop::add_timer(Clock::time_point when, std::function<void()> fn) {
  TimerId id = next_timer_id_++;
  auto it = timers_.emplace(when, std::make_pair(id, std::move(fn)));
  timer_index_[id] = it;
  return id;
}

void EventLoop::cancel_timer(TimerId id) {
  auto it = timer_index_.find(id);
  if (it == timer_index_.end()) return;
  timers_.erase(it->second);
  timer_index_.erase(it);
}

void EventLoop::drain_posted() {
  std::vector<std::function<void()>> work;
  {
    std::lock_guard lock(post_mu_);
    work.swap(posted_);
  }
  for (auto& fn : work) fn();
}

void EventLoop::run_timers() {
  auto now = Clock::now();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    auto node = timers_.extract(timers_.begin());
    timer_index_.erase(node.mapped().first);
    node.mapped().second();
  }
}

int EventLoop::on_socket(CURL*, curl_socket_t s, int what, void* userp, void* socketp) {
  auto* self = static_cast<EventLoop*>(userp);
  if (what == CURL_POLL_REMOVE) {
    // The socket may already be closed: ignore errors.
    epoll_ctl(self->epoll_fd_.get(), EPOLL_CTL_DEL, s, nullptr);
    curl_multi_assign(self->multi_.get(), s, nullptr);
    return 0;
  }
  epoll_event ev{};
  ev.data.u64 = static_cast<uint64_t>(s);
  if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
  if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
  if (socketp) {
    epoll_ctl(self->epoll_fd_.get(), EPOLL_CTL_MOD, s, &ev);
  } else {
    if (epoll_ctl(self->epoll_fd_.get(), EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
      epoll_ctl(self->epoll_fd_.get(), EPOLL_CTL_MOD, s, &ev);
    curl_multi_assign(self->multi_.get(), s, self);
  }
  return 0;
}

int EventLoop::on_timer(CURLM*, long timeout_ms, void* userp) {
  auto* self = static_cast<EventLoop*>(userp);
  self->curl_timeout_ms_ = timeout_ms;
  self->curl_timer_set_at_ = Clock::now();
  return 0;
}

void EventLoop::run() {
  std::vector<epoll_event> events(256);
  int still = 0;
  while (running_.load(std::memory_order_relaxed)) {
    auto now = Clock::now();
    long wait_ms = 1000;
    if (!timers_.empty()) {
      auto d = std::chrono::ceil<Millis>(timers_.begin()->first - now).count();
      wait_ms = std::min<long>(wait_ms, std::max<long>(0, d));
    }
    if (curl_timeout_ms_ >= 0) {
      auto due = curl_timer_set_at_ + Millis(curl_timeout_ms_);
      auto d = std::chrono::ceil<Millis>(due - now).count();
      wait_ms = std::min<long>(wait_ms, std::max<long>(0, d));
    }
    {
      std::lock_guard lock(post_mu_);
      if (!posted_.empty()) wait_ms = 0;
    }
    int n = epoll_wait(epoll_fd_.get(), events.data(), static_cast<int>(events.size()),
                       static_cast<int>(wait_ms));
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kWake) {
        uint64_t v;
        [[maybe_unused]] auto r = read(wake_fd_.get(), &v, sizeof v);
        continue;
      }
      if (tag & kWatchTag) {
        fire_watch(tag & ~kWatchTag);
        continue;
      }
      const int fd = static_cast<int>(tag);
      int flags = 0;
      if (events[i].events & EPOLLIN) flags |= CURL_CSELECT_IN;
      if (events[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
      if (events[i].events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
      curl_multi_socket_action(multi_.get(), fd, flags, &still);
    }
    if (curl_timeout_ms_ >= 0 && Clock::now() >= curl_timer_set_at_ + Millis(curl_timeout_ms_)) {
      curl_timeout_ms_ = -1;
      curl_multi_socket_action(multi_.get(), CURL_SOCKET_TIMEOUT, 0, &still);
    }
    check_multi_info();
    drain_posted();
    run_timers();
  }
}

void EventLoop::check_multi_info() {
  // Read the whole queue before finishing anything: curl_multi_remove_handle walks every message
  // still queued (libcurl 7.88, and still so upstream), so finishing while reading made a drain
  // of n messages cost n²/2 list steps. When a starved loop let ~16,000 transfers time out in one
  // pass, that was minutes in which no run completed and no timer fired (bench/README.md).
  struct Ended {
    HttpId id;
    CURLcode code;
  };
  std::vector<Ended> ended;
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_.get(), &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    Transfer* raw = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&raw));
    if (raw && transfers_.count(raw->id)) {
      ended.push_back(Ended{raw->id, msg->data.result});
    } else {
      CURL* easy = msg->easy_handle;  // no transfer owns it (never expected): free it here
      curl_multi_remove_handle(multi_.get(), easy);
      CurlEasy orphan(easy);
    }
  }
  // By id, not by handle: a callback may cancel (and free) a transfer that is further down the
  // list, or start a new one on a handle this one gave back.
  for (const auto& e : ended) {
    auto it = transfers_.find(e.id);
    if (it != transfers_.end()) finish(it->second->easy.get(), e.code);
  }
}

EventLoop::HttpId EventLoop::start_http(const HttpRequest& req, Clock::time_point deadline,
                                        HttpDone done) {
  assert(in_loop() || !running_);
  auto t = std::make_unique<Transfer>();
  t->id = next_http_id_++;
  t->done = std::move(done);
  t->max_body = req.max_body_bytes;
  t->method = req.method;
  if (!idle_handles_.empty()) {
    t->easy = std::move(idle_handles_.back());
    idle_handles_.pop_back();
    curl_easy_reset(t->easy.get());
  } else {
    t->easy.reset(curl_easy_init());
  }
  CURL* e = t->easy.get();
  long left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  if (left < 1) left = 1;

  std::string url = req.url;
  if (!req.tls.server_name.empty()) {
    // Connect to the URL's host but speak TLS (SNI, certificate name, Host) as server_name.
    if (auto rewritten = connect_as(url, req.tls.server_name, t->connect_to)) url = *rewritten;
    if (t->connect_to) curl_easy_setopt(e, CURLOPT_CONNECT_TO, t->connect_to.get());
  }

  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, left);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, left);
  curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);  // measure what a new client pays
  curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
  curl_easy_setopt(e, CURLOPT_SHARE, share_.get());
  curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, 10L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_USERAGENT, "pes-agent/" PES_VERSION);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, req.follow_redirects ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, req.max_redirects);
  curl_easy_setopt(e, CURLOPT_CERTINFO, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, req.tls.insecure_skip_verify ? 0L : 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, req.tls.insecure_skip_verify ? 0L : 2L);
  if (!req.tls.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, req.tls.ca_file.c_str());
  if (!req.tls.cert_file.empty()) curl_easy_setopt(e, CURLOPT_SSLCERT, req.tls.cert_file.c_str());
  if (!req.tls.key_file.empty()) curl_easy_setopt(e, CURLOPT_SSLKEY, req.tls.key_file.c_str());
  if (req.basic_auth) {
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(e, CURLOPT_USERNAME, req.basic_auth->first.c_str());
    curl_easy_setopt(e, CURLOPT_PASSWORD, req.basic_auth->second.c_str());
  }
  if (req.method == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (req.method != "GET" || req.body) {
    if (req.method != "POST") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    if (req.body || req.method == "POST") {
      const std::string& b = req.body ? *req.body : std::string();
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(b.size()));
      curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, b.c_str());
    }
  }
  for (const auto& [k, v] : req.headers) {
    std::string h = v.empty() ? k + ";" : k + ": " + v;
    append(t->headers, h.c_str());
  }
  if (req.body) {
    bool has_expect = false;
    for (const auto& [k, v] : req.headers)
      if (strcasecmp(k.c_str(), "Expect") == 0) has_expect = true;
    if (!has_expect) append(t->headers, "Expect:");
  }
  if (t->headers) curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers.get());

  HttpId id = t->id;
  // Backstop: libcurl's own timeout should end the transfer first; this one never lets it linger.
  t->backstop = add_timer(deadline + Millis(20), [this, id] {
    auto it = transfers_.find(id);
    if (it == transfers_.end()) return;
    auto tr = std::move(it->second);
    transfers_.erase(it);
    curl_multi_remove_handle(multi_.get(), tr->easy.get());
    tr->resp.ok = false;
    tr->resp.reason = Reason::timeout;
    tr->resp.error = "no answer before the deadline";
    if (tr->done) tr->done(std::move(tr->resp));
  });
  transfers_.emplace(id, std::move(t));
  curl_multi_add_handle(multi_.get(), e);
  return id;
}

EventLoop::WatchId EventLoop::watch_fd(int fd, uint32_t events, std::function<void()> fn) {
  assert(in_loop() || !running_);
  if (auto old = watch_by_fd_.find(fd); old != watch_by_fd_.end()) cancel_watch(old->second);
  WatchId id = next_watch_id_++;
  epoll_event ev{};
  ev.events = events & (EPOLLIN | EPOLLOUT);
  ev.data.u64 = kWatchTag | id;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    // Not pollable (never expected for a socket): report it ready, so the caller's next read or
    // write meets the error itself.
    post([this, id] { fire_watch(id); });
  }
  watches_.emplace(id, Watch{fd, std::move(fn)});
  watch_by_fd_[fd] = id;
  return id;
}

void EventLoop::cancel_watch(WatchId id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  watch_by_fd_.erase(it->second.fd);
  auto fn = std::move(it->second.fn);  // destroyed after the maps are consistent
  watches_.erase(it);
}

void EventLoop::fire_watch(WatchId id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  watch_by_fd_.erase(it->second.fd);
  auto fn = std::move(it->second.fn);
  watches_.erase(it);
  fn();
}

void EventLoop::cancel_http(HttpId id) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  auto tr = std::move(it->second);
  transfers_.erase(it);
  cancel_timer(tr->backstop);
  curl_multi_remove_handle(multi_.get(), tr->easy.get());
}

void EventLoop::finish(CURL* easy, CURLcode code) {
  Transfer* raw = nullptr;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, reinterpret_cast<char**>(&raw));
  curl_multi_remove_handle(multi_.get(), easy);
  auto it = raw ? transfers_.find(raw->id) : transfers_.end();
  if (it == transfers_.end()) {
    CurlEasy orphan(easy);  // no transfer owns it (never expected): free it here
    return;
  }
  auto tr = std::move(it->second);
  transfers_.erase(it);
  cancel_timer(tr->backstop);
  HttpResponse& r = tr->resp;

  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
  curl_off_t q = 0, c = 0, a = 0, p = 0, s = 0, total = 0;
  curl_easy_getinfo(easy, CURLINFO_NAMELOOKUP_TIME_T, &q);
  curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &c);
  curl_easy_getinfo(easy, CURLINFO_APPCONNECT_TIME_T, &a);
  curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &p);
  curl_easy_getinfo(easy, CURLINFO_STARTTRANSFER_TIME_T, &s);
  curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total);
  auto sec = [](curl_off_t us) { return us > 0 ? static_cast<double>(us) / 1e6 : 0.0; };
  r.phases.resolve = sec(q);
  r.phases.connect = c > q ? sec(c - q) : 0;
  r.phases.tls = a > c ? sec(a - c) : 0;
  curl_off_t before_processing = std::max({p, a, c});
  r.phases.processing = s > before_processing ? sec(s - before_processing) : 0;
  r.phases.transfer = total > s && s > 0 ? sec(total - s) : 0;
  r.total_seconds = sec(total);
  curl_off_t cl = -1;
  curl_easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
  r.content_length = cl;
  curl_easy_getinfo(easy, CURLINFO_REDIRECT_COUNT, &r.redirects);
  char* eff = nullptr;
  if (curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff)
    r.effective_url = eff;
  curl_certinfo* ci = nullptr;
  if (curl_easy_getinfo(easy, CURLINFO_CERTINFO, &ci) == CURLE_OK && ci) {
    for (int i = 0; i < ci->num_of_certs; ++i) {
      for (curl_slist* l = ci->certinfo[i]; l; l = l->next) {
        if (std::strncmp(l->data, "Expire date:", 12) != 0) continue;
        if (auto t = parse_expire(l->data))
          if (!r.earliest_cert_expiry || *t < *r.earliest_cert_expiry) r.earliest_cert_expiry = *t;
      }
    }
  }

  if (code == CURLE_OK) {
    r.ok = true;
  } else if (tr->overflow) {
    r.reason = Reason::protocol;
    r.error = "response body larger than max_body_bytes (" + std::to_string(tr->max_body) + ")";
  } else {
    r.reason = reason_for(code);
    r.error = tr->errbuf[0] ? tr->errbuf : curl_easy_strerror(code);
    if (code == CURLE_TOO_MANY_REDIRECTS)
      r.error = "too many redirects (more than the allowed maximum)";
  }
  if (idle_handles_.size() < 256) idle_handles_.push_back(std::move(tr->easy));
  if (tr->done) tr->done(std::move(r));
}

}  // namespace pes
