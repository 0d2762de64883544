#!/usr/bin/env bash
# Builds the `debug` preset (AddressSanitizer, LeakSanitizer, UndefinedBehaviorSanitizer) in
# build/debug and runs the unit, integration and e2e tests plus the deploy scripts that run the
# agent binary, one at a time. Any sanitizer report fails the run: in a test process (it aborts)
# and in every process it starts (the agent under AgentProcess, `pes-agent probe` and
# `check-config` runs), because every instrumented process writes its reports to
# test-artifacts/sanitizers/ and this script fails if that directory is not empty at the end.
#
#   scripts/test-sanitizers.sh                 # the whole selection: tests take about 9 minutes;
#                                              # a first build of build/debug 13 CPU minutes
#   scripts/test-sanitizers.sh -R test_http    # extra arguments replace the selection (ctest args)
#   PES_SKIP_DEPS=1 scripts/test-sanitizers.sh # skip scripts/install-deps.sh (already run)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

[ "${PES_SKIP_DEPS:-0}" = 1 ] || bash scripts/install-deps.sh
cmake --preset debug
cmake --build --preset debug -j"$(nproc)"

mkdir -p test-artifacts
export PES_ARTIFACTS_DIR="$root/test-artifacts"
reports="$root/test-artifacts/sanitizers"
rm -rf "$reports"
mkdir -p "$reports"

# Reports go to files named <prefix>.<pid> instead of stderr: the agent's stderr is a log file
# in a temp dir the test removes, so the files are the one place nothing gets lost.
# abort_on_error/halt_on_error: the first report ends the process with SIGABRT (a failed test).
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:log_path=$reports/asan"
export LSAN_OPTIONS="suppressions=$root/tests/sanitizers/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan"
# Deadline checks in the tests (a run ends within timeout + slack) scale their slack by this
# factor; the sanitized binaries are 2-3 times slower (tests/support/fixture.h time_scale()).
export PES_TEST_TIME_SCALE="${PES_TEST_TIME_SCALE:-3}"

selection=(-R '^(unit|integration|e2e)\.|^deploy\.test_(agent_config|compose|dashboards_e2e)$')
[ "$#" -eq 0 ] || selection=("$@")

start=$(date +%s)
rc=0
# One test at a time, as in scripts/test.sh (deadline-measuring tests must not be starved).
ctest --test-dir build/debug --output-on-failure --timeout 1800 "${selection[@]}" || rc=$?
echo "test-sanitizers.sh: ctest took $(( $(date +%s) - start )) s (exit $rc)"

# Belt and braces: a report that reached a test's output rather than a file (a process that
# was started with a different environment) still fails the run.
log="build/debug/Testing/Temporary/LastTest.log"
if [ -f "$log" ] && grep -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log" >/dev/null; then
  echo "test-sanitizers.sh: sanitizer reports in the test output ($log):" >&2
  grep -n -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log" >&2
  rc=1
fi
shopt -s nullglob
files=("$reports"/*)
if [ "${#files[@]}" -gt 0 ]; then
  echo "test-sanitizers.sh: ${#files[@]} sanitizer report(s) in $reports:" >&2
  for f in "${files[@]}"; do
    echo "===== $f" >&2
    cat "$f" >&2
  done
  rc=1
fi
[ "$rc" -eq 0 ] && echo "test-sanitizers.sh: clean (no sanitizer reports)"
exit "$rc"
