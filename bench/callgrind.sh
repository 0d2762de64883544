#!/usr/bin/env bash
# Where the agent's user-space time goes, independent of the machine's load: runs the agent and the
# libcurl floor (bench/curl_floor.cpp) side by side under valgrind --tool=callgrind against the
# nginx fixture, N targets each (default 50) at a 1 s interval, zeroes the counters after a
# warm-up, dumps them after a window, and prints instructions per probe for both plus the
# functions that make the difference. Kernel time (syscalls) is not counted by callgrind; see
# bench/README.md for the syscall counts.
#
#   bench/callgrind.sh [--targets 50] [--warmup 15] [--window 30] [--out DIR]
# Needs the binaries bench/run.sh builds (build/bench/pes-agent, build/bench/bench/curl_floor).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$ROOT/build/bench"
N=50
WARMUP=15
WINDOW=30
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --targets) N="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --window) WINDOW="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "callgrind.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-$BUILD/callgrind-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
AGENT="${AGENT:-$BUILD/pes-agent}"
FLOOR="$BUILD/bench/curl_floor"
for b in "$AGENT" "$FLOOR"; do [ -x "$b" ] || { echo "callgrind.sh: $b missing; run bench/run.sh first" >&2; exit 1; }; done
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not installed" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  "$ROOT/tests/fixtures/nginx.sh" stop "$OUT/nginx" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

env_out="$("$ROOT/tests/fixtures/nginx.sh" start "$OUT/nginx" ACCESS_LOG=0 ERROR_LOG_LEVEL=warn OWNER_PID=$$)"
port="$(sed -n 's/^PORT=//p' <<<"$env_out")"
awk -v n="$N" -v p="$port" 'BEGIN { for (i = 1; i <= n; i++) print "http://127.0.0.1:" p "/ok?i=" i }' >"$OUT/urls.txt"
{
  printf 'global:\n  interval: 1s\n  timeout: 500ms\nprobes:\n'
  awk -v n="$N" -v p="$port" 'BEGIN { for (i = 1; i <= n; i++)
    printf "  - name: t%05d\n    type: http\n    http: {url: \"http://127.0.0.1:%d/ok?i=%d\"}\n", i, p, i }'
} >"$OUT/agent.yml"
aport="$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

valgrind --tool=callgrind --callgrind-out-file="$OUT/agent.cg" "$AGENT" --config.file="$OUT/agent.yml" \
  --web.listen-address="127.0.0.1:$aport" --log.level=warn >"$OUT/agent.log" 2>&1 &
apid=$!
PIDS+=("$apid")
valgrind --tool=callgrind --callgrind-out-file="$OUT/floor.cg" "$FLOOR" --urls "$OUT/urls.txt" \
  --interval-ms 1000 --timeout-ms 500 --stats "$OUT/floor.stats" >"$OUT/floor.log" 2>&1 &
fpid=$!
PIDS+=("$fpid")
echo "callgrind.sh: $N targets at 1 s each; warm-up ${WARMUP}s, window ${WINDOW}s" >&2
sleep "$WARMUP"
callgrind_control -z "$apid" >/dev/null
callgrind_control -z "$fpid" >/dev/null
sleep "$WINDOW"
callgrind_control -d "$apid" >/dev/null
callgrind_control -d "$fpid" >/dev/null
sleep 1

# The dump after zeroing is the file with the suffix .1; probes = calls of curl_multi_add_handle
# (once per HTTP request in both programs).
/usr/bin/python3 - "$OUT/agent.cg.1" "$OUT/floor.cg.1" <<'PY' | tee "$OUT/summary.txt"
import re, subprocess, sys

def calls(path, target):
    names, cur, total = {}, None, 0
    for line in open(path, errors="replace"):
        m = re.match(r"^(cfn|fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if m:
            kind, idx, name = m.groups()
            if name:
                names[idx] = name
            if kind == "cfn":
                cur = names.get(idx)
            continue
        m = re.match(r"^calls=(\d+)", line)
        if m and cur and target in cur:
            total += int(m.group(1))
    return total

def self_costs(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", path],
                         capture_output=True, text=True).stdout
    costs, started = {}, False
    for line in out.splitlines():
        if "file:function" in line:
            started = True
            continue
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if started and m:
            name = m.group(2)
            # Frames that only carry inclusive cost in a dump after zeroing.
            if re.search(r"(below main)|__libc_start_main|clone3?\b|start_thread|_M_run|ld-linux", name):
                continue
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    # A dump taken after zeroing credits the threads' entry frames (e.g. std::thread's trampoline
    # in libstdc++) with the whole run as "self" cost: drop any entry holding most of the total.
    total = sum(costs.values())
    return {k: v for k, v in costs.items() if v < 0.4 * total}

a_path, f_path = sys.argv[1], sys.argv[2]
na, nf = calls(a_path, "curl_multi_add_handle"), calls(f_path, "curl_multi_add_handle")
a, f = self_costs(a_path), self_costs(f_path)
ta, tf = sum(a.values()) / max(na, 1), sum(f.values()) / max(nf, 1)
print(f"agent: {na} probes, {ta:,.0f} instructions per probe (user space)")
print(f"floor: {nf} probes, {tf:,.0f} instructions per probe (user space)")
print(f"ratio: {ta / tf:.2f}")

def lib(name):
    m = re.search(r"\[([^\]]*)\]\s*$", name)
    return m.group(1).rsplit("/", 1)[-1] if m else "?"

print("\nper probe by object:      agent      floor")
objs = {}
for d, n, col in ((a, na, 0), (f, nf, 1)):
    for k, v in d.items():
        objs.setdefault(lib(k), [0, 0])[col] += v / max(n, 1)
for o, (x, y) in sorted(objs.items(), key=lambda kv: -kv[1][0]):
    if x + y >= 100:
        print(f"  {o[:28]:28s} {x:9,.0f} {y:9,.0f}")
print("\nlargest differences per probe (agent - floor), self cost:")
keys = set(a) | set(f)
rows = sorted(keys, key=lambda k: -(a.get(k, 0) / max(na, 1) - f.get(k, 0) / max(nf, 1)))
for k in rows[:30]:
    x, y = a.get(k, 0) / max(na, 1), f.get(k, 0) / max(nf, 1)
    print(f"  {x - y:+8,.0f}  {x:8,.0f} {y:8,.0f}  {re.sub(r'^[^:]*:', '', k)[:110]}")
PY
echo "callgrind.sh: outputs in $OUT (open *.cg.1 with callgrind_annotate or kcachegrind)" >&2
