#!/usr/bin/env bash
# The performance benchmark (issue 2): pes-agent against a local nginx with N HTTP targets, side by
# side with a minimal libcurl-multi client doing the same fresh-connection GETs (the floor) and with
# Debian's prometheus-blackbox-exporter driven at the same probe rate. See bench/README.md.
#
#   bench/run.sh [--sizes "1000 10000"] [--interval 10] [--window 60] [--warmup 12]
#                [--contenders "floor agent blackbox base"] [--scrapes 11] [--nice N]
#                [--perf SECONDS] [--no-build] [--out DIR]
#
# For each size N and contender it runs the contender for a warm-up, then takes two snapshots a
# window apart, each pairing the process's CPU time (utime+stime, /proc/PID/stat) with the number
# of probes done (agent: sum of probe_runs_total from /metrics; floor: its own counter; blackbox:
# /probe requests answered), and reports CPU per probe. For the agent also: p99 schedule lag (the
# delta of the pes_agent_schedule_lag_seconds histogram over the window), VmRSS/VmHWM and the
# median wall and CPU time of a /metrics scrape (at most --scrapes, and no more than 30 s of them),
# then the same for scrapes with `Accept-Encoding: gzip` and their size on the wire.
# Contender `base` is the agent again with the binary AGENT_BASE (e.g. the base of a branch), so a
# change is compared with its base in the same run on the same machine load.
# Results: OUT/results.md (markdown tables) and OUT/results.tsv.
# --nice N runs nginx and every contender in its own session at nice level N, and gives that
# session's scheduler autogroup the same nice level (with kernel.sched_autogroup_enabled=1 a plain
# nice only ranks threads within one session). N < 0 needs root. On a machine shared with other
# work this approximates having the cores to themselves; every contender gets the same treatment.
# --perf S profiles the agent with `perf record -e cpu-clock` for S more seconds after its
# measurements (outside the window) into OUT/nN/agent.perf.txt.
# AGENT=path with --no-build measures another agent binary.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$ROOT/build/bench"
SIZES="1000 10000"
INTERVAL=10
WINDOW=50
WARMUP=12
NICE=0
SCRAPES=11
CONTENDERS="floor agent blackbox"
PERF_SECS=0
DO_BUILD=1
OUT=""
BLACKBOX="${BLACKBOX:-/usr/bin/prometheus-blackbox-exporter}"
AGENT_BASE="${AGENT_BASE:-}"

while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) SIZES="$2"; shift 2 ;;
    --interval) INTERVAL="$2"; shift 2 ;;
    --window) WINDOW="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --scrapes) SCRAPES="$2"; shift 2 ;;
    --contenders) CONTENDERS="$2"; shift 2 ;;
    --nice) NICE="$2"; shift 2 ;;
    --perf) PERF_SECS="$2"; shift 2 ;;
    --no-build) DO_BUILD=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-$BUILD/run-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
# One run's deadline, the same for every contender: 5 s, or half the interval if that is shorter.
TIMEOUT_MS=$((INTERVAL * 500 < 5000 ? INTERVAL * 500 : 5000))

# run_niced CMD...: exec CMD, with --nice in a session of its own (call it as `run_niced ... &`;
# a background subshell is no group leader, so setsid does not fork and $! stays CMD's PID).
run_niced() {
  if [ "$NICE" = 0 ]; then exec "$@"; fi
  exec setsid nice -n "$NICE" "$@"
}
# boost PID: once PID leads its own session, set the nice level of its autogroup too.
boost() {
  local pid="$1" i stat
  local -a f
  [ "$NICE" = 0 ] && return 0
  for ((i = 0; i < 250; i++)); do
    read -r stat <"/proc/$pid/stat" 2>/dev/null || return 0
    read -ra f <<<"${stat##*) }"
    if [ "${f[3]}" = "$pid" ]; then
      [ -w "/proc/$pid/autogroup" ] && echo "$NICE" >"/proc/$pid/autogroup" 2>/dev/null && return 0
      log "warning: could not set the autogroup nice level of $pid"
      return 0
    fi
    sleep 0.02
  done
  log "warning: $pid did not lead its own session; only its nice level is set"
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# 1,000 fresh connections a second: every client needs far more descriptors than the default.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge 4096 ] || log "warning: ulimit -n is only $(ulimit -n)"

# ---------------------------------------------------------------------------------------------
# Build (Release) what the benchmark runs.
AGENT="${AGENT:-$BUILD/pes-agent}"
FLOOR="$BUILD/bench/curl_floor"
if [ "$DO_BUILD" = 1 ]; then
  log "building pes-agent (Release) and curl_floor in $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPES_BUILD_TESTS=OFF \
    -DPES_WERROR=OFF >"$OUT/cmake.log" 2>&1 || die "cmake failed, see $OUT/cmake.log"
  ninja -C "$BUILD" -j2 pes-agent >"$OUT/build.log" 2>&1 || die "build failed, see $OUT/build.log"
  mkdir -p "$BUILD/bench"
  # What the binary was built from, for the summary of later --no-build runs too.
  echo "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- agent probes 2>/dev/null || echo ' + uncommitted changes in agent/ or probes/')" \
    >"$BUILD/bench/agent.source"
  g++ -std=c++20 -O2 -Wall -Wextra -Wpedantic -Werror "$ROOT/bench/curl_floor.cpp" -o "$FLOOR" \
    -lcurl >>"$OUT/build.log" 2>&1 || die "curl_floor build failed, see $OUT/build.log"
fi
if [[ " $CONTENDERS " == *" agent "* ]] && [ ! -x "$AGENT" ]; then
  die "no agent binary at $AGENT (run without --no-build)"
fi
[ -x "$FLOOR" ] || die "no curl_floor at $FLOOR (run without --no-build)"
if [[ " $CONTENDERS " == *" base "* ]] && [ ! -x "$AGENT_BASE" ]; then
  die "contender base needs AGENT_BASE=path of the other agent binary"
fi
if [[ " $CONTENDERS " == *" blackbox "* ]] && [ ! -x "$BLACKBOX" ]; then
  die "$BLACKBOX not found (apt-get install prometheus-blackbox-exporter)"
fi
command -v perf >/dev/null || [ "$PERF_SECS" = 0 ] || die "--perf needs perf (Debian: linux-perf)"

# ---------------------------------------------------------------------------------------------
# Helpers. Snapshots use shell builtins only (no forks between the two halves of a pair), since on
# a loaded machine a fork can take longer than the work being measured.

TICKS="$(getconf CLK_TCK)"

# proc_cpu PID: sets P_CPU (utime+stime, seconds), P_USER (utime) and P_AT (wall clock, seconds).
proc_cpu() {
  local stat
  local -a f
  read -r stat <"/proc/$1/stat" || return 1
  P_AT="$EPOCHREALTIME"
  read -ra f <<<"${stat##*) }"
  P_CPU="$(printf '%d.%02d' $(((f[11] + f[12]) / TICKS)) $(((f[11] + f[12]) % TICKS * 100 / TICKS)))"
  P_USER="$(printf '%d.%02d' $((f[11] / TICKS)) $((f[11] % TICKS * 100 / TICKS)))"
}

# machine_jiffies: "busy total" of all CPUs from /proc/stat, to report how loaded the machine was.
machine_jiffies() {
  awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; total = busy + $5 + $6; print busy, total; exit }' /proc/stat
}

vm_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() {
  local url="$1" secs="$2" pid="$3" i
  for ((i = 0; i < secs * 10; i++)); do
    curl -fsS --max-time 2 -o /dev/null "$url" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# stop_pid PID: TERM, wait up to 15 s, then KILL. Only our own children are passed here.
stop_pid() {
  local pid="$1" i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# client_stats PID STATSFILE: asks a curl_floor for its counters; sets C_LINE to its stats line.
client_stats() {
  local pid="$1" file="$2" i
  rm -f "$file"
  kill -USR1 "$pid"
  for ((i = 0; i < 200; i++)); do
    if [ -s "$file" ]; then
      read -r C_LINE <"$file"
      return 0
    fi
    sleep 0.02
  done
  die "curl_floor $pid wrote no stats to $file"
}
stat_field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }

# metric_sum FILE REGEX: sum of the values of the sample lines whose name{labels} part matches.
metric_sum() { awk -v re="$2" '$0 !~ /^#/ && $1 ~ re { s += $NF } END { printf "%.0f\n", s }' "$1"; }
metric_value() { awk -v n="$2" '$1 == n { print $NF; exit }' "$1"; }

# lag_quantile BEFORE AFTER Q: histogram_quantile over the delta of the lag histogram's buckets,
# interpolated linearly inside the bucket like Prometheus does; prints "quantile share_le_100ms
# count" (quantile ">X" when it falls in the +Inf bucket).
lag_quantile() {
  awk -v q="$3" '
    function le_of(line) { match(line, /le="[^"]*"/); return substr(line, RSTART + 4, RLENGTH - 5) }
    FNR == 1 { file++ }
    /^pes_agent_schedule_lag_seconds_bucket/ {
      le = le_of($0); if (file == 1) before[le] = $NF; else { after[le] = $NF; order[n++] = le }
    }
    END {
      total = after["+Inf"] - before["+Inf"]
      if (total <= 0) { print "nan nan 0"; exit }
      rank = q * total; prev_le = 0; prev_c = 0; res = "nan"; share = "nan"
      for (i = 0; i < n; i++) {
        le = order[i]; c = after[le] - before[le]
        if (le + 0 == 0.1) share = c / total
        if (res == "nan" && c >= rank) {
          if (le == "+Inf") res = ">" prev_le
          else res = prev_le + (le - prev_le) * (c > prev_c ? (rank - prev_c) / (c - prev_c) : 1)
        }
        if (le != "+Inf") { prev_le = le; prev_c = c }
      }
      printf "%s %s %d\n", res, share, total
    }' "$1" "$2"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

PIDS=()
NGINX_DIR="$OUT/nginx"
cleanup() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  "$ROOT/tests/fixtures/nginx.sh" stop "$NGINX_DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

machine_begin() { read -r MB0 MT0 < <(machine_jiffies); }
machine_end() {
  local b1 t1
  read -r b1 t1 < <(machine_jiffies)
  W_BUSY="$(awk -v b0="$MB0" -v t0="$MT0" -v b1="$b1" -v t1="$t1" 'BEGIN { printf "%.0f%%", 100 * (b1 - b0) / (t1 - t0) }')"
  W_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
}

RESULTS="$OUT/results.tsv"
printf 'targets\trss_before_scrapes_mb\trss_after_scrapes_mb\tpeak_mb\tseries\tmetrics_kb\tmetrics_ms\tmetrics_cpu_ms\tscrapes\tin_flight_end\tfailures\tlag_samples\trss_pre_series_mb\tscrape_peak_mb\tgzip_kb\tgzip_ms\tgzip_cpu_ms\tgzip_scrapes\tcontender\n' >"$OUT/agent.tsv"
printf 'targets\tcontender\twindow_s\tprobes\tprobes_per_s\tfailed\tcpu_s\tus_per_probe\tuser_share\tp99_lag_s\tlag_le_100ms\trss_mb\thwm_mb\tmetrics_ms\tmetrics_cpu_ms\tmetrics_kb\tmachine_busy\tloadavg\n' >"$RESULTS"

# result N CONTENDER CPU0 USER0 CPU_AT0 CPU1 USER1 CPU_AT1 COUNT0 COUNT_AT0 COUNT1 COUNT_AT1 FAILED
#        [P99 SHARE RSS HWM METRICS_MS METRICS_CPU_MS METRICS_KB]
# CPU and counts are each a difference of two snapshots over (nearly) the same window; both are
# turned into rates over their own exact intervals, so a few ms between the halves of a pair do
# not matter: CPU per probe = (CPU / CPU interval) / (probes / count interval).
result() {
  local n="$1" who="$2"
  shift 2
  local line
  line="$(awk -v c0="$1" -v u0="$2" -v a0="$3" -v c1="$4" -v u1="$5" -v a1="$6" \
    -v n0="$7" -v b0="$8" -v n1="$9" -v b1="${10}" 'BEGIN {
      cpu = c1 - c0; secs = a1 - a0; probes = n1 - n0; psecs = b1 - b0
      rate = probes / psecs
      us = (rate > 0) ? 1e6 * (cpu / secs) / rate : "nan"
      user = (cpu > 0) ? sprintf("%.0f%%", 100 * (u1 - u0) / cpu) : "-"
      printf "%.1f\t%d\t%.1f\t%.2f\t%s\t%s", secs, probes, rate, cpu, (us == "nan" ? us : sprintf("%.1f", us)), user
    }')"
  local IFS=$'\t'
  local -a f
  read -ra f <<<"$line"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$who" \
    "${f[0]}" "${f[1]}" "${f[2]}" "${11}" "${f[3]}" "${f[4]}" "${f[5]}" "${12:-}" "${13:-}" \
    "${14:-}" "${15:-}" "${16:-}" "${17:-}" "${18:-}" "$W_BUSY" "$W_LOAD" >>"$RESULTS"
  log "$(printf '%-8s N=%s: %s probes (%s/s, %s failed) in %ss, CPU %ss (user %s) -> %s us/probe' \
    "$who" "$n" "${f[1]}" "${f[2]}" "${11}" "${f[0]}" "${f[3]}" "${f[5]}" "${f[4]}")"
}

# ---------------------------------------------------------------------------------------------
# nginx: one worker, no access log, quiet error log, room for bursts of fresh connections.
log "starting nginx (tests/fixtures/nginx.sh)"
NGINX_ENV="$("$ROOT/tests/fixtures/nginx.sh" start "$NGINX_DIR" WORKER_CONNECTIONS=8192 ACCESS_LOG=0 \
  ERROR_LOG_LEVEL=warn OWNER_PID=$$)" || die "nginx did not start"
NGINX_PORT="$(sed -n 's/^PORT=//p' <<<"$NGINX_ENV")"
if [ "$NICE" != 0 ]; then
  renice -n "$NICE" -g "$(sed -n 's/^PID=//p' <<<"$NGINX_ENV")" >/dev/null || die "renice of nginx failed"
  boost "$(sed -n 's/^PID=//p' <<<"$NGINX_ENV")"
fi
BASE="http://127.0.0.1:$NGINX_PORT/ok"
log "nginx on port $NGINX_PORT; cpus=$(nproc) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------------
run_floor() {
  local n="$1" dir="$2" pid s0 s1
  run_niced "$FLOOR" --urls "$dir/urls.txt" --interval-ms $((INTERVAL * 1000)) --timeout-ms "$TIMEOUT_MS" \
    --stats "$dir/floor.stats" >"$dir/floor.log" 2>&1 &
  pid=$!
  boost "$pid"
  PIDS+=("$pid")
  sleep "$WARMUP"
  kill -0 "$pid" 2>/dev/null || die "curl_floor died, see $dir/floor.log"
  machine_begin
  client_stats "$pid" "$dir/floor.stats"
  s0="$C_LINE"
  sleep "$WINDOW"
  client_stats "$pid" "$dir/floor.stats"
  s1="$C_LINE"
  machine_end
  local rss hwm
  rss="$(vm_kb "$pid" VmRSS)" hwm="$(vm_kb "$pid" VmHWM)"
  stop_pid "$pid"
  echo "$s0" >"$dir/floor.stats.before"
  echo "$s1" >"$dir/floor.stats.after"
  sec() { awk -v v="$1" 'BEGIN { printf "%.6f", v / 1e6 }'; }
  local at0 at1
  at0="$(sec "$(stat_field "$s0" at_us)")" at1="$(sec "$(stat_field "$s1" at_us)")"
  result "$n" floor \
    "$(sec "$(stat_field "$s0" cpu_us)")" "$(sec "$(stat_field "$s0" user_us)")" "$at0" \
    "$(sec "$(stat_field "$s1" cpu_us)")" "$(sec "$(stat_field "$s1" user_us)")" "$at1" \
    "$(stat_field "$s0" "done")" "$at0" "$(stat_field "$s1" "done")" "$at1" \
    $(($(stat_field "$s1" failed) - $(stat_field "$s0" failed))) \
    "" "" $((rss / 1024)) $((hwm / 1024))
}

run_agent() {
  local n="$1" dir="$2" bin="${3:-$AGENT}" who="${4:-agent}" pid port url
  port="$(free_port)"
  url="http://127.0.0.1:$port"
  run_niced "$bin" --config.file="$dir/agent.yml" --web.listen-address="127.0.0.1:$port" --log.level=warn \
    >"$dir/$who.log" 2>&1 &
  pid=$!
  boost "$pid"
  PIDS+=("$pid")
  wait_http "$url/-/ready" 120 "$pid" || die "$who did not become ready: $(tail -3 "$dir/$who.log")"
  sleep "$WARMUP"
  kill -0 "$pid" 2>/dev/null || die "$who died: $(tail -3 "$dir/$who.log")"
  local rss_steady
  rss_steady="$(vm_kb "$pid" VmRSS)"  # before the first scrape: probes only
  # Counts come from a scrape, CPU from /proc: the CPU interval starts after the first scrape and
  # ends before the second, so the scrapes' own cost stays outside it (it is measured below).
  local b0 b1 c0 u0 a0 c1 u1 a1
  machine_begin
  b0="$EPOCHREALTIME"
  curl -fsS --max-time 120 -o "$dir/metrics.before" "$url/metrics" || die "scrape failed"
  proc_cpu "$pid"
  c0="$P_CPU" u0="$P_USER" a0="$P_AT"
  sleep "$WINDOW"
  proc_cpu "$pid"
  c1="$P_CPU" u1="$P_USER" a1="$P_AT"
  b1="$EPOCHREALTIME"
  curl -fsS --max-time 120 -o "$dir/metrics.after" "$url/metrics" || die "scrape failed"
  machine_end
  local runs='^probe_runs_total[{]' fails='^probe_runs_total[{].*result="failure"'
  local p99 share lagn
  read -r p99 share lagn < <(lag_quantile "$dir/metrics.before" "$dir/metrics.after" 0.99)
  # /metrics serialisation: wall time of repeated scrapes (median) and the agent's CPU per scrape.
  local i ms cpu_ms kb series c_s0 t_end rss_pre hwm_all
  # The peak of the scrape series alone: VmHWM is reset to the current RSS (clear_refs 5, proc(5))
  # right before it, so what it reads afterwards is the highest RSS while scrapes were served.
  hwm_all="$(vm_kb "$pid" VmHWM)"
  rss_pre="$(vm_kb "$pid" VmRSS)"
  echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || log "warning: cannot reset VmHWM of $pid"
  proc_cpu "$pid"
  c_s0="$P_CPU"
  t_end=$((SECONDS + 30))
  for ((i = 0; i < SCRAPES && (i < 3 || SECONDS < t_end); i++)); do
    curl -fsS --max-time 120 -o /dev/null -w '%{time_total}\n' "$url/metrics"
  done >"$dir/scrape_times.txt"
  proc_cpu "$pid"
  ms="$(median <"$dir/scrape_times.txt" | awk '{ printf "%.1f", $1 * 1000 }')"
  cpu_ms="$(awk -v a="$c_s0" -v b="$P_CPU" -v k="$i" 'BEGIN { printf "%.1f", 1000 * (b - a) / k }')"
  # The same with `Accept-Encoding: gzip`, as Prometheus asks: wall, CPU and bytes on the wire
  # (curl without --compressed does not decode, so size_download is the compressed body).
  local gi gz_ms gz_cpu_ms gz_kb
  proc_cpu "$pid"
  c_s0="$P_CPU"
  t_end=$((SECONDS + 30))
  for ((gi = 0; gi < SCRAPES && (gi < 3 || SECONDS < t_end); gi++)); do
    curl -fsS --max-time 120 -H 'Accept-Encoding: gzip' -o /dev/null -w '%{time_total} %{size_download}\n' "$url/metrics"
  done >"$dir/scrape_gzip_$who.txt"
  proc_cpu "$pid"
  gz_ms="$(cut -d' ' -f1 "$dir/scrape_gzip_$who.txt" | median | awk '{ printf "%.1f", $1 * 1000 }')"
  gz_cpu_ms="$(awk -v a="$c_s0" -v b="$P_CPU" -v k="$gi" 'BEGIN { printf "%.1f", 1000 * (b - a) / k }')"
  gz_kb="$(cut -d' ' -f2 "$dir/scrape_gzip_$who.txt" | median | awk '{ printf "%.0f", $1 / 1024 }')"
  kb=$(($(stat -c %s "$dir/metrics.after") / 1024))
  series="$(grep -vc '^#' "$dir/metrics.after")"
  local rss hwm hwm_scrapes
  rss="$(vm_kb "$pid" VmRSS)" hwm_scrapes="$(vm_kb "$pid" VmHWM)"
  hwm=$((hwm_all > hwm_scrapes ? hwm_all : hwm_scrapes))
  # What the agent says about itself at the end of the window.
  local inflight reasons
  inflight="$(metric_value "$dir/metrics.after" pes_agent_probes_in_flight)"
  reasons="$(awk 'FNR == 1 { file++ }
    /^probe_failures_total[{]/ {
      match($0, /reason="[^"]*"/); r = substr($0, RSTART + 8, RLENGTH - 9)
      if (file == 1) b[r] += $NF; else a[r] += $NF
    }
    END { for (k in a) if (a[k] - b[k] > 0) printf "%s=%d ", k, a[k] - b[k] }' \
    "$dir/metrics.before" "$dir/metrics.after")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$((rss_steady / 1024))" "$((rss / 1024))" \
    "$((hwm / 1024))" "$series" "$kb" "$ms" "$cpu_ms" "$i" "${inflight:-?}" "${reasons:-none}" "$lagn" \
    "$((rss_pre / 1024))" "$((hwm_scrapes / 1024))" "$gz_kb" "$gz_ms" "$gz_cpu_ms" "$gi" "$who" >>"$OUT/agent.tsv"
  log "$who N=$n: gzip'd /metrics ${gz_kb} KiB on the wire, median ${gz_ms} ms, ${gz_cpu_ms} ms CPU per scrape"
  log "$who N=$n: lag p99 ${p99}s, share <= 100 ms $share; in flight at the end $inflight; failures in the window: ${reasons:-none}"
  log "$who N=$n: RSS $((rss_steady / 1024)) MB before any scrape, $((rss / 1024)) MB after $((i + 2)) scrapes (peak $((hwm / 1024)) MB; $((rss_pre / 1024)) MB before the scrape series, peak $((hwm_scrapes / 1024)) MB during it); /metrics $series series, $kb KiB, median ${ms} ms, ${cpu_ms} ms CPU per scrape"
  if [ "$PERF_SECS" -gt 0 ]; then
    log "profiling the agent for ${PERF_SECS}s (perf record -e cpu-clock)"
    perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$pid" -o "$dir/agent.perf.data" \
      -- sleep "$PERF_SECS" >"$dir/perf.log" 2>&1 || log "warning: perf record failed, see $dir/perf.log"
    {
      echo "# self time by shared object and symbol"
      perf report -i "$dir/agent.perf.data" --no-children --stdio --sort dso,sym -g none 2>/dev/null |
        grep -v '^$' | head -80
      echo "# inclusive time (children) by symbol"
      perf report -i "$dir/agent.perf.data" --children --stdio --sort sym -g none 2>/dev/null |
        grep -v '^$' | head -80
    } >"$dir/agent.perf.txt"
  fi
  stop_pid "$pid"
  result "$n" "$who" "$c0" "$u0" "$a0" "$c1" "$u1" "$a1" \
    "$(metric_sum "$dir/metrics.before" "$runs")" "$b0" "$(metric_sum "$dir/metrics.after" "$runs")" "$b1" \
    $(($(metric_sum "$dir/metrics.after" "$fails") - $(metric_sum "$dir/metrics.before" "$fails"))) \
    "$p99" "$share" $((rss_steady / 1024)) $((hwm / 1024)) "$ms" "$cpu_ms" "$kb"
}

run_blackbox() {
  local n="$1" dir="$2" port bpid dpid s0 s1 c0 u0 a0 c1 u1 a1
  port="$(free_port)"
  run_niced "$BLACKBOX" --config.file="$dir/blackbox.yml" --web.listen-address="127.0.0.1:$port" \
    --log.level=warn >"$dir/blackbox.log" 2>&1 &
  bpid=$!
  boost "$bpid"
  PIDS+=("$bpid")
  wait_http "http://127.0.0.1:$port/-/healthy" 30 "$bpid" || die "blackbox_exporter did not start, see $dir/blackbox.log"
  sed "s|@BBPORT@|$port|" "$dir/blackbox_urls.in" >"$dir/blackbox_urls.txt"
  run_niced "$FLOOR" --urls "$dir/blackbox_urls.txt" --interval-ms $((INTERVAL * 1000)) --reuse \
    --timeout-ms $((TIMEOUT_MS + 1000)) --expect "probe_success 1" --stats "$dir/driver.stats" \
    >"$dir/driver.log" 2>&1 &
  dpid=$!
  boost "$dpid"
  PIDS+=("$dpid")
  sleep "$WARMUP"
  kill -0 "$dpid" 2>/dev/null || die "the blackbox driver died, see $dir/driver.log"
  machine_begin
  proc_cpu "$bpid"
  c0="$P_CPU" u0="$P_USER" a0="$P_AT"
  client_stats "$dpid" "$dir/driver.stats"
  s0="$C_LINE"
  sleep "$WINDOW"
  proc_cpu "$bpid"
  c1="$P_CPU" u1="$P_USER" a1="$P_AT"
  client_stats "$dpid" "$dir/driver.stats"
  s1="$C_LINE"
  machine_end
  local rss hwm
  rss="$(vm_kb "$bpid" VmRSS)" hwm="$(vm_kb "$bpid" VmHWM)"
  stop_pid "$dpid"
  stop_pid "$bpid"
  echo "$s0" >"$dir/driver.stats.before"
  echo "$s1" >"$dir/driver.stats.after"
  local at0 at1
  at0="$(awk -v v="$(stat_field "$s0" at_us)" 'BEGIN { printf "%.6f", v / 1e6 }')"
  at1="$(awk -v v="$(stat_field "$s1" at_us)" 'BEGIN { printf "%.6f", v / 1e6 }')"
  result "$n" blackbox "$c0" "$u0" "$a0" "$c1" "$u1" "$a1" \
    "$(stat_field "$s0" "done")" "$at0" "$(stat_field "$s1" "done")" "$at1" \
    $(($(stat_field "$s1" failed) - $(stat_field "$s0" failed))) \
    "" "" $((rss / 1024)) $((hwm / 1024))
}

# ---------------------------------------------------------------------------------------------
STARTED=$SECONDS
for n in $SIZES; do
  dir="$OUT/n$n"
  mkdir -p "$dir"
  # The same N distinct URLs (one nginx) for every contender.
  awk -v n="$n" -v base="$BASE" 'BEGIN { for (i = 1; i <= n; i++) print base "?i=" i }' >"$dir/urls.txt"
  {
    printf 'global:\n  interval: %ss\n  timeout: %sms\nprobes:\n' "$INTERVAL" "$TIMEOUT_MS"
    awk -v n="$n" -v base="$BASE" 'BEGIN {
      for (i = 1; i <= n; i++)
        printf "  - name: t%05d\n    type: http\n    http: {url: \"%s?i=%d\"}\n", i, base, i }'
  } >"$dir/agent.yml"
  cat >"$dir/blackbox.yml" <<EOF
modules:
  http_2xx:
    prober: http
    timeout: ${TIMEOUT_MS}ms
    http:
      preferred_ip_protocol: ip4
EOF
  awk -v n="$n" -v port="$NGINX_PORT" 'BEGIN {
    for (i = 1; i <= n; i++)
      printf "http://127.0.0.1:@BBPORT@/probe?module=http_2xx&target=http%%3A%%2F%%2F127.0.0.1%%3A%d%%2Fok%%3Fi%%3D%d\n", port, i }' \
    >"$dir/blackbox_urls.in"
  for c in $CONTENDERS; do
    log "N=$n: $c (warm-up ${WARMUP}s, window ${WINDOW}s)"
    case "$c" in
      floor) run_floor "$n" "$dir" ;;
      agent) run_agent "$n" "$dir" ;;
      base) run_agent "$n" "$dir" "$AGENT_BASE" agent-base ;;
      blackbox) run_blackbox "$n" "$dir" ;;
      *) die "unknown contender $c" ;;
    esac
  done
done

# ---------------------------------------------------------------------------------------------
# Summary: one markdown table; ratios against the floor measured in this same run.
{
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)),"
  echo "interval ${INTERVAL}s, timeout ${TIMEOUT_MS}ms, warm-up ${WARMUP}s, window ${WINDOW}s, $((SECONDS - STARTED)) s in all;"
  echo "nice level of nginx and the contenders: $NICE; agent binary $AGENT built $(date -u -r "$AGENT" +%Y-%m-%dT%H:%MZ);"
  if [ "$AGENT" = "$BUILD/pes-agent" ] && [ -f "$BUILD/bench/agent.source" ]; then
    echo "agent built from $(cat "$BUILD/bench/agent.source"); repository now at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')."
  else
    echo "repository at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') (source of the agent binary not recorded)."
  fi
  echo
  echo "| targets | contender | probes/s | failed | CPU µs/probe (user share) | × floor | p99 lag | runs started ≤ 100 ms late | RSS MB (peak) | /metrics: median wall (CPU), size | machine busy | loadavg |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' 'NR == 1 { next }
    { rows[NR] = $0; if ($2 == "floor") floor[$1] = $8 }
    END {
      for (r = 2; r <= NR; r++) {
        split(rows[r], f, "\t")
        ratio = (f[1] in floor && floor[f[1]] > 0 && f[8] != "nan") ? sprintf("%.2f", f[8] / floor[f[1]]) : "-"
        lag = f[10] == "" || f[10] == "nan" ? "-" : (f[10] ~ /^>/ ? sprintf("> %g ms", 1000 * substr(f[10], 2)) : sprintf("%.0f ms", 1000 * f[10]))
        share = f[11] == "" || f[11] == "nan" ? "-" : sprintf("%.2f%%", 100 * f[11])
        met = f[14] == "" ? "-" : sprintf("%s ms (%s ms), %s KiB", f[14], f[15], f[16])
        printf "| %s | %s | %.0f | %s | %s (%s) | %s | %s | %s | %s (%s) | %s | %s | %s |\n",
          f[1], f[2], f[5], f[6], f[8], f[9], ratio, lag, share, f[12], f[13], met, f[17], f[18]
      }
    }' "$RESULTS"
  if [ "$(wc -l <"$OUT/agent.tsv")" -gt 1 ]; then
    echo
    echo "| targets | agent | RSS MB: before any scrape / after scrapes / peak | RSS MB: before the scrape series / peak during it | /metrics series, size | scrape median wall (CPU) | gzip'd: size on the wire, median wall (CPU) | in flight at window end | failed runs in window by reason |"
    echo "|---|---|---|---|---|---|---|---|---|"
    awk -F'\t' 'NR > 1 { printf "| %s | %s | %s / %s / %s | %s / %s | %s, %s KiB | %s ms (%s ms), %s scrapes | %s KiB, %s ms (%s ms), %s scrapes | %s | %s |\n", $1, $19, $2, $3, $4, $13, $14, $5, $6, $7, $8, $9, $15, $16, $17, $18, $10, $11 }' "$OUT/agent.tsv"
  fi
} >"$OUT/results.md"
cat "$OUT/results.md"
log "results in $OUT/results.md and $OUT/results.tsv"
