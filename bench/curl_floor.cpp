// A minimal libcurl-multi HTTP client, the benchmark's yardstick: it fetches N URLs, each once
// per interval, spread evenly over the interval, with curl_multi_poll and nothing else. Two uses:
//   - the floor: fresh-connection GETs against nginx (what any libcurl prober must pay at least);
//   - the blackbox driver: GETs of blackbox_exporter's /probe?target=... at the same rate
//     (--reuse keeps connections to the exporter open, as Prometheus does).
//
//   curl_floor --urls FILE --interval-ms 10000 [--reuse] [--timeout-ms 5000]
//              [--expect SUBSTRING] [--stats FILE]
//
// FILE holds one URL per line. On SIGUSR1 the client writes its counters to the --stats file
// ("started=.. done=.. ok=.. failed=.. skipped=.. late_p99_ms=.. cpu_us=.. user_us=.. at_us=..",
// replaced atomically): cpu_us is its own user+system CPU time (getrusage, the same accounting as
// /proc/PID/stat but in microseconds) and at_us the wall clock, both read with the counters, so a
// difference of two snapshots is exact. SIGTERM/SIGINT end it.
// `ok` counts 2xx answers whose body contains --expect (if given); `failed` counts the rest.
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <queue>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int g_sig_pipe[2] = {-1, -1};

void on_signal(int sig) {
  char c = static_cast<char>(sig);
  [[maybe_unused]] auto n = write(g_sig_pipe[1], &c, 1);
}

struct Slot {
  size_t index = 0;
  CURL* easy = nullptr;
  bool busy = false;
  std::string body;
};

struct Due {
  Clock::time_point at;
  size_t index;
  bool operator>(const Due& o) const { return at > o.at; }
};

size_t on_body(char* data, size_t size, size_t n, void* userp) {
  auto* slot = static_cast<Slot*>(userp);
  size_t len = size * n;
  if (slot->body.size() < (1u << 20)) slot->body.append(data, len);
  return len;
}

struct Counters {
  unsigned long long started = 0, done = 0, ok = 0, failed = 0, skipped = 0;
  std::vector<unsigned> late_ms_hist = std::vector<unsigned>(10001, 0);  // start lag in ms, capped
};

void write_stats(const std::string& path, const Counters& c) {
  // p99 of start lag (how late each request started compared with its slot), over the whole run.
  unsigned long long total = 0;
  for (auto v : c.late_ms_hist) total += v;
  size_t p99 = 0;
  unsigned long long acc = 0;
  for (size_t i = 0; i < c.late_ms_hist.size(); ++i) {
    acc += c.late_ms_hist[i];
    if (total && acc * 100 >= total * 99) {
      p99 = i;
      break;
    }
  }
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto us = [](const timeval& t) { return static_cast<long long>(t.tv_sec) * 1000000 + t.tv_usec; };
  auto at = std::chrono::duration_cast<std::chrono::microseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
  std::fprintf(f,
               "started=%llu done=%llu ok=%llu failed=%llu skipped=%llu late_p99_ms=%zu "
               "cpu_us=%lld user_us=%lld "
               "at_us=%lld\n",
               c.started, c.done, c.ok, c.failed, c.skipped, p99, us(ru.ru_utime) + us(ru.ru_stime),
               us(ru.ru_utime), static_cast<long long>(at));
  std::fclose(f);
  std::rename(tmp.c_str(), path.c_str());
}

[[noreturn]] void usage() {
  std::fprintf(
      stderr,
      "usage: curl_floor --urls FILE --interval-ms MS [--reuse] [--timeout-ms MS] [--expect TEXT] "
      "[--stats FILE]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string urls_file, stats_file = "curl_floor.stats", expect;
  long interval_ms = 10000, timeout_ms = 5000;
  bool reuse = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--urls")
      urls_file = next();
    else if (a == "--interval-ms")
      interval_ms = std::atol(next().c_str());
    else if (a == "--timeout-ms")
      timeout_ms = std::atol(next().c_str());
    else if (a == "--stats")
      stats_file = next();
    else if (a == "--expect")
      expect = next();
    else if (a == "--reuse")
      reuse = true;
    else
      usage();
  }
  if (urls_file.empty() || interval_ms <= 0) usage();
  std::vector<std::string> urls;
  {
    std::ifstream in(urls_file);
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) urls.push_back(line);
  }
  if (urls.empty()) {
    std::fprintf(stderr, "curl_floor: no URLs in %s\n", urls_file.c_str());
    return 2;
  }

  if (pipe2(g_sig_pipe, O_NONBLOCK | O_CLOEXEC) != 0) return 1;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM* multi = curl_multi_init();
  if (reuse) curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 256L);

  // One easy handle per URL, configured once; a run only re-adds it to the multi handle.
  std::vector<Slot> slots(urls.size());
  for (size_t i = 0; i < urls.size(); ++i) {
    Slot& s = slots[i];
    s.index = i;
    s.easy = curl_easy_init();
    curl_easy_setopt(s.easy, CURLOPT_URL, urls[i].c_str());
    curl_easy_setopt(s.easy, CURLOPT_PRIVATE, &s);
    curl_easy_setopt(s.easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s.easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(s.easy, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(s.easy, CURLOPT_WRITEDATA, &s);
    if (!reuse) {
      curl_easy_setopt(s.easy, CURLOPT_FRESH_CONNECT, 1L);
      curl_easy_setopt(s.easy, CURLOPT_FORBID_REUSE, 1L);
    }
  }

  Counters counters;
  std::priority_queue<Due, std::vector<Due>, std::greater<>> queue;
  const auto interval = std::chrono::milliseconds(interval_ms);
  const auto t0 = Clock::now();
  for (size_t i = 0; i < urls.size(); ++i)
    queue.push(Due{t0 + interval * static_cast<long>(i) / static_cast<long>(urls.size()), i});

  bool running = true;
  while (running) {
    auto now = Clock::now();
    while (!queue.empty() && queue.top().at <= now) {
      Due d = queue.top();
      queue.pop();
      Slot& s = slots[d.index];
      queue.push(Due{d.at + interval, d.index});
      if (s.busy) {  // still running after a whole interval: skip this slot
        ++counters.skipped;
        continue;
      }
      auto late = std::chrono::duration_cast<std::chrono::milliseconds>(now - d.at).count();
      ++counters.late_ms_hist[std::min<size_t>(static_cast<size_t>(late),
                                               counters.late_ms_hist.size() - 1)];
      s.body.clear();
      s.busy = true;
      ++counters.started;
      curl_multi_add_handle(multi, s.easy);
    }

    int still = 0;
    curl_multi_perform(multi, &still);
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Slot* s = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&s));
      long status = 0;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
      bool good = msg->data.result == CURLE_OK && status >= 200 && status < 300 &&
                  (expect.empty() || s->body.find(expect) != std::string::npos);
      curl_multi_remove_handle(multi, msg->easy_handle);
      s->busy = false;
      ++counters.done;
      ++(good ? counters.ok : counters.failed);
    }

    long wait_ms = 1000;
    if (!queue.empty()) {
      auto d = std::chrono::ceil<std::chrono::milliseconds>(queue.top().at - Clock::now()).count();
      wait_ms = std::clamp<long>(d, 0, 1000);
    }
    long curl_ms = -1;
    curl_multi_timeout(multi, &curl_ms);
    if (curl_ms >= 0) wait_ms = std::min(wait_ms, curl_ms);
    curl_waitfd extra{};
    extra.fd = g_sig_pipe[0];
    extra.events = CURL_WAIT_POLLIN;
    int numfds = 0;
    curl_multi_poll(multi, &extra, 1, static_cast<int>(wait_ms), &numfds);
    if (extra.revents & CURL_WAIT_POLLIN) {
      char sigs[16];
      ssize_t n;
      while ((n = read(g_sig_pipe[0], sigs, sizeof sigs)) > 0) {
        for (ssize_t i = 0; i < n; ++i) {
          if (sigs[i] == SIGUSR1)
            write_stats(stats_file, counters);
          else
            running = false;
        }
      }
    }
  }
  write_stats(stats_file, counters);
  for (auto& s : slots) {
    if (s.busy) curl_multi_remove_handle(multi, s.easy);
    curl_easy_cleanup(s.easy);
  }
  curl_multi_cleanup(multi);
  curl_global_cleanup();
  return 0;
}
