#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang and runs each one.
#
#   scripts/fuzz.sh [RUNS | SECONDSs] [TARGET...]
#     RUNS       executions per target (default 1000000), e.g. 10000
#     SECONDSs   seconds per target instead, e.g. 60s
#     TARGET     config, json_path, jwt, xmpp, stun (default: all)
#   scripts/fuzz.sh --build-only
#
# The project libraries (pes_core, pes_probes) are built by the root CMakeLists.txt with clang
# into build/fuzz (or $PES_FUZZ_BUILD), with -fsanitize=fuzzer-no-link,address,undefined
# (undefined behaviour aborts); each fuzz/fuzz_<name>.cpp is then linked against them with
# -fsanitize=fuzzer,address,undefined. See fuzz/README.md.
# The seeds in fuzz/corpus/<name>/ are only read. Each run writes to $PES_FUZZ_WORK (default
# build/fuzz/work): corpus/<name>/ (inputs the fuzzer found), artifacts/<name>/ (crashes),
# logs/<name>.log. Extra libFuzzer flags: PES_FUZZ_FLAGS="-use_value_profile=1 ...".
# Prints executions, time and new inputs per target; exits 1 if any target crashed, leaked,
# timed out or ran out of memory, 2 on a usage or build error.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
build="${PES_FUZZ_BUILD:-$here/build/fuzz}"
work="${PES_FUZZ_WORK:-$build/work}"
all_targets=(config json_path jwt xmpp stun)

# Longest input per target: a config file or a JSON body of a few KiB covers every construct the
# parsers have; a STUN datagram is at most a path MTU.
declare -A max_len=([config]=8192 [json_path]=8192 [jwt]=4096 [xmpp]=8192 [stun]=1500)

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2; }

limit=(-runs=1000000)
limit_desc="1000000 runs"
build_only=0
targets=()
for a in "$@"; do
  case "$a" in
    -h | --help) usage ;;
    --build-only) build_only=1 ;;
    *[0-9]s) limit=(-max_total_time="${a%s}"); limit_desc="${a%s} seconds" ;;
    [0-9]*) [[ "$a" =~ ^[0-9]+$ ]] || usage; limit=(-runs="$a"); limit_desc="$a runs" ;;
    *)
      [[ " ${all_targets[*]} " == *" $a "* ]] || { echo "fuzz.sh: unknown target '$a'" >&2; usage; }
      targets+=("$a") ;;
  esac
done
[ "${#targets[@]}" -gt 0 ] || targets=("${all_targets[@]}")

for tool in clang clang++ cmake ninja; do
  command -v "$tool" >/dev/null ||
    { echo "fuzz.sh: $tool not found (scripts/install-deps.sh)" >&2; exit 2; }
done

mkdir -p "$build"
# One build at a time in build/fuzz (the deploy test and a hand-started campaign may overlap).
# Runs of different targets may overlap; give overlapping runs of one target their own
# PES_FUZZ_WORK.
exec 9>"$build/.lock"
flock 9

# ---- build ---------------------------------------------------------------------------------
# -O1 and line tables keep the instrumented build fast enough for CI; _GLIBCXX_ASSERTIONS makes
# out-of-range operator[] on standard containers abort. Boost.Asio only turns on co_await for
# clang with <experimental/coroutine> (libc++); libstdc++ 12 has <coroutine>, which clang 14 uses.
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
flags="-O1 -gline-tables-only -fno-omit-frame-pointer $san -D_GLIBCXX_ASSERTIONS"
flags+=" -DBOOST_ASIO_HAS_CO_AWAIT=1"
cmake_args=(-S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE= -DPES_WERROR=OFF -DPES_BUILD_TESTS=OFF
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
  "-DCMAKE_CXX_COMPILER_LAUNCHER=$here/fuzz/cxx_launcher.sh"
  "-DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link $flags"
  "-DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link $flags")
stamp="$build/.fuzz-configure"
if [ ! -f "$build/build.ninja" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${cmake_args[*]}" ]; then
  echo "== configuring $build"
  rm -f "$build/CMakeCache.txt"
  CC=clang CXX=clang++ cmake "${cmake_args[@]}" >"$build/configure.log" 2>&1 ||
    { tail -30 "$build/configure.log" >&2; echo "fuzz.sh: cmake failed" >&2; exit 2; }
  printf '%s' "${cmake_args[*]}" >"$stamp"
fi

echo "== building pes_core, pes_probes (clang, ASan+UBSan, coverage)"
ninja -C "$build" -j"${PES_FUZZ_JOBS:-2}" pes_core pes_probes >"$build/build.log" 2>&1 ||
  { grep -E 'error|FAILED' "$build/build.log" | head -30 >&2; echo "fuzz.sh: build failed" >&2; exit 2; }

# The libraries' public dependencies, as the root CMakeLists.txt links them (Boost is headers only).
libs=("$build/libpes_probes.a" "$build/libpes_core.a"
  -lprometheus-cpp-core -lcurl -lyaml-cpp -lspdlog -lfmt -lssl -lcrypto -lre2 -lexpat
  -lpq -lldap -llber -lpthread)
# absl::time (maintenance windows) and libxml2 (the keycloak login flow): from their pkg-config files.
read -r -a pc_libs <<<"$(pkg-config --libs absl_time libxml-2.0)"
libs+=("${pc_libs[@]}")
cxxflags=(-std=c++20 $flags -Wall -Wextra -Wpedantic -Werror -I"$here" -I"$build/generated"
  -isystem /usr/include/postgresql -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL -DSPDLOG_SHARED_LIB
  -DFMT_SHARED)
mkdir -p "$build/bin"
for t in "${targets[@]}"; do
  src="fuzz/fuzz_$t.cpp"
  bin="$build/bin/fuzz_$t"
  # Relink when the harness, anything it includes from fuzz/, or a library changed.
  newer=0
  [ -x "$bin" ] || newer=1
  for dep in "$src" fuzz/*.inc fuzz/*.h "$build/libpes_probes.a" "$build/libpes_core.a"; do
    [ -e "$dep" ] && [ "$dep" -nt "$bin" ] && newer=1
  done
  [ "$newer" = 1 ] || continue
  echo "== building fuzz_$t"
  clang++ "${cxxflags[@]}" -fsanitize=fuzzer "$src" "${libs[@]}" -o "$bin.tmp" ||
    { echo "fuzz.sh: building fuzz_$t failed" >&2; exit 2; }
  mv "$bin.tmp" "$bin"
done
[ "$build_only" = 0 ] || exit 0
exec 9>&-  # the build is done: campaigns of different targets may run side by side

# ---- run -----------------------------------------------------------------------------------
echo "== running ${targets[*]}: $limit_desc each"
mkdir -p "$work/logs"
failed=0
summary=()
for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"
  artifacts="$work/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  dict=()
  [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
  log="$work/logs/$t.log"
  start=$(date +%s%N)
  rc=0
  # detect_leaks: a leak is a failure too. RSS grows to 1-2 GB over a million runs of the config
  # target without any growth of its live heap (ASan's quarantine and stack depot, libFuzzer's
  # tables), hence the 4 GB limit. The first corpus directory receives new inputs; the
  # checked-in seeds are only read.
  ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:${ASAN_OPTIONS:-}" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}" \
    "$build/bin/fuzz_$t" "${limit[@]}" -max_len="${max_len[$t]}" "${dict[@]}" \
    -timeout=25 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$artifacts/" \
    ${PES_FUZZ_FLAGS:-} "$corpus" "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  added=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  cov=$( (grep -aoE 'cov: [0-9]+' "$log" || true) | tail -1 | cut -d' ' -f2)
  if [ "$rc" -eq 0 ]; then
    result="ok"
  else
    failed=1
    result="FAILED (exit $rc)"
    echo "---- fuzz_$t: last lines of $log" >&2
    grep -aE 'ERROR|SUMMARY|Test unit written|==[0-9]+==|runtime error' "$log" |
      head -20 >&2 || true
    tail -5 "$log" >&2
  fi
  summary+=("$(printf '%-10s %12s %9.1f %9s %6s %6s  %s' "$t" "${execs:-?}" "$secs" "${rate:-?}" \
    "${cov:-?}" "${added:-?}" "$result")")
done

printf '\n%-10s %12s %9s %9s %6s %6s  %s\n' target executions seconds exec/s cov new result
printf '%s\n' "${summary[@]}"
if [ "$failed" != 0 ]; then
  echo "fuzz.sh: a target failed; reproduce with" \
    "$build/bin/fuzz_<target> $work/artifacts/<target>/<file>" >&2
  exit 1
fi
