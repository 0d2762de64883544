#!/usr/bin/env bash
# House style: clang-tidy with the checks of .clang-tidy (bugprone-*, performance-*, a few
# modernize-*) over the production code, agent/ and probes/, with the compile commands of the
# build the suite runs in (the default preset's compile_commands.json). Any finding fails.
# run-clang-tidy runs PES_TIDY_JOBS files at a time (default 2). The checks are shown able to
# fail on a small file with a known finding.
source "$(dirname "$0")/lib.sh"
need clang-tidy
cd "$PES_SOURCE_DIR"
runner=$(command -v run-clang-tidy || command -v run-clang-tidy-14) || fail "run-clang-tidy not found (package clang-tidy)"
[ -f .clang-tidy ] || fail "no .clang-tidy at the repository root"
build_dir=$(dirname "${PES_AGENT_BINARY:-$PES_SOURCE_DIR/build/default/pes-agent}")
[ -f "$build_dir/compile_commands.json" ] || fail "no $build_dir/compile_commands.json (configure the default preset)"

# The production sources the build compiles. clang-tidy 14 cannot compile Boost 1.74's asio
# coroutines against libstdc++ (Boost enables them for clang only with libc++), so the files that
# use them are left out, by name in the log.
mapfile -t all < <("$PY" -c '
import json, sys
root = sys.argv[1] + "/"
for e in json.load(open(sys.argv[2])):
    f = e["file"]
    if f.startswith(root) and f[len(root):].split("/")[0] in ("agent", "probes") and f.endswith(".cpp"):
        print(f[len(root):])' "$PES_SOURCE_DIR" "$build_dir/compile_commands.json" | sort -u)
files=()
for f in "${all[@]}"; do
  if grep -qE 'co_await|co_spawn|use_awaitable' "$f"; then
    log "  left out (asio coroutines, which clang 14 with libstdc++ cannot compile): $f"
  else
    files+=("^$PES_SOURCE_DIR/${f//./\\.}\$")
  fi
done
[ "${#files[@]}" -gt 20 ] || fail "compile_commands.json lists only ${#files[@]} files of agent/ and probes/"
log "run-clang-tidy -j${PES_TIDY_JOBS:-2} over ${#files[@]} files of agent/ and probes/ ($(clang-tidy --version | grep -o 'version [0-9.]*'))"
t0=$(date +%s)
if ! "$runner" -p "$build_dir" -j "${PES_TIDY_JOBS:-2}" -quiet "${files[@]}" >"$TMP/tidy.log" 2>&1; then
  grep -E -A3 '(error|warning): ' "$TMP/tidy.log" | head -n 80
  fail "clang-tidy findings in $(grep -oE '^[^ :]+\.(cpp|h):[0-9]+' "$TMP/tidy.log" | sort -u | wc -l) places"
fi
log "  clean in $(($(date +%s) - t0)) s"

# The same configuration rejects a by-value string parameter only read.
mkdir -p "$TMP/src/agent"
cp .clang-tidy "$TMP/src/"
printf '#include <string>\nstd::size_t length(std::string s) { return s.size(); }\n' >"$TMP/src/agent/sample.cpp"
if clang-tidy "$TMP/src/agent/sample.cpp" -- -std=c++20 >"$TMP/sample.log" 2>&1; then
  fail "clang-tidy accepted a needless copy: $(cat "$TMP/sample.log")"
fi
grep -q 'performance-unnecessary-value-param' "$TMP/sample.log" || fail "unexpected clang-tidy output: $(cat "$TMP/sample.log")"
log "PASS"
