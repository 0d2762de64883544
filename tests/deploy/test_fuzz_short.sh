#!/usr/bin/env bash
# A short run of every libFuzzer target of fuzz/ (the long campaign is scripts/fuzz.sh, see
# fuzz/README.md): builds them with clang into build/fuzz (reused when present; PES_FUZZ_BUILD
# elsewhere), then runs each from its seed corpus in a fresh work dir for PES_FUZZ_SHORT
# (default 3000 executions per target - a count, not a time, so a busy machine makes the run
# slower but never fails it; `30s` means seconds). Passes when every target loaded
# every seed of its corpus and went on to run mutated inputs, all without a crash, leak, timeout
# or sanitizer report; when a planted out-of-bounds read is reported as a
# crash (so a broken sanitizer setup or crash handling cannot pass silently); and when every
# crash saved under fuzz/crashes/ (bugs since fixed) runs clean.
source "$(dirname "$0")/lib.sh"
need clang++
need ninja
cd "$PES_SOURCE_DIR"

limit="${PES_FUZZ_SHORT:-3000}"
targets=(config json_path jwt xmpp stun)
build="${PES_FUZZ_BUILD:-$PES_SOURCE_DIR/build/fuzz}"
export PES_FUZZ_BUILD="$build"

log "building the fuzz targets ($build)"
scripts/fuzz.sh --build-only || fail "scripts/fuzz.sh --build-only failed"

log "running each target for $limit"
out="$TMP/fuzz.out"
PES_FUZZ_WORK="$TMP/work" scripts/fuzz.sh "$limit" >"$out" 2>&1 || {
  cat "$out" >&2
  for t in "${targets[@]}"; do
    grep -a -A30 'ERROR:\|runtime error:' "$TMP/work/logs/$t.log" >&2 || true
  done
  fail "a fuzz target failed (see above)"
}
cat "$out"

for t in "${targets[@]}"; do
  logf="$TMP/work/logs/$t.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logf" | tail -1)
  [ -n "$execs" ] || fail "fuzz_$t printed no final stats"
  # "INFO: seed corpus: files: N" counts what libFuzzer read from both corpus dirs.
  seeds=$(find "fuzz/corpus/$t" -type f | wc -l)
  [ "$seeds" -gt 0 ] || fail "fuzz/corpus/$t has no seeds"
  read_files=$(sed -n 's/^INFO: seed corpus: files: \([0-9]*\).*/\1/p;T;q' "$logf")
  [ -n "$read_files" ] && [ "$read_files" -ge "$seeds" ] ||
    fail "fuzz_$t read ${read_files:-no} corpus files, the seed corpus has $seeds"
  # Beyond the seeds, at least a few hundred mutated inputs (or the requested number of runs).
  case "$limit" in
    *s) want=$((seeds + 300)) ;;
    *) want=$limit ;;
  esac
  [ "$execs" -ge "$want" ] || fail "fuzz_$t ran $execs inputs, fewer than $want"
  if grep -aq 'ERROR: AddressSanitizer\|runtime error:' "$logf"; then
    fail "fuzz_$t: sanitizer report in $logf"
  fi
  log "fuzz_$t: $execs executions, $read_files corpus files, no crash"
done

# The setup bites: a planted one-byte over-read past the STUN datagram must be caught by ASan and
# make scripts/fuzz.sh fail with the crash saved as an artifact.
log "planted over-read: scripts/fuzz.sh must report it"
rc=0
PES_FUZZ_SELFTEST_OVERREAD=1 PES_FUZZ_WORK="$TMP/selftest" scripts/fuzz.sh 100 stun \
  >"$TMP/selftest.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] ||
  { cat "$TMP/selftest.out" >&2; fail "planted over-read: fuzz.sh exited $rc, not 1"; }
grep -aq 'heap-buffer-overflow' "$TMP/selftest/logs/stun.log" ||
  fail "planted over-read: no ASan heap-buffer-overflow report"
ls "$TMP/selftest/artifacts/stun/"crash-* >/dev/null 2>&1 ||
  fail "planted over-read: no crash artifact saved"
grep -q '^stun .*FAILED' "$TMP/selftest.out" ||
  fail "planted over-read: the summary does not say FAILED"

# Crashes found earlier and fixed (fuzz/crashes/<target>/) must stay fixed.
shopt -s nullglob
for input in fuzz/crashes/*/*; do
  case "$input" in *.md) continue ;; esac
  t=$(basename "$(dirname "$input")")
  "$build/bin/fuzz_$t" "$input" >"$TMP/regress.log" 2>&1 ||
    { cat "$TMP/regress.log" >&2; fail "fixed crash $input crashes fuzz_$t again"; }
  log "fuzz_$t: former crash $(basename "$input") passes"
done
log "PASS"
