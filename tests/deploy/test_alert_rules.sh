#!/usr/bin/env bash
# The Prometheus rule files of alerts/ with the real promtool:
#  - `promtool check rules` on every rule file;
#  - `promtool test rules` on every unit test file in alerts/tests/;
#  - every alert of the rule files has a test where it fires and one where it stays silent,
#    and every rule file is loaded by some test;
#  - the tests bite: with a deliberately broken rule (wrong comparison, longer for:) they fail.
source "$(dirname "$0")/lib.sh"
need promtool
cd "$PES_SOURCE_DIR"

shopt -s nullglob
rules=(alerts/*.rules.yml)
tests=(alerts/tests/*.test.yml)
[ "${#rules[@]}" -gt 0 ] || fail "no rule files in alerts/"
[ "${#tests[@]}" -gt 0 ] || fail "no unit tests in alerts/tests/"

log "promtool check rules ${rules[*]}"
promtool check rules "${rules[@]}" || fail "promtool check rules failed"

log "promtool test rules ${tests[*]}"
promtool test rules "${tests[@]}" || fail "promtool test rules failed"

log "every alert fires in some test and stays silent in another"
"$PY" - "${rules[@]}" -- "${tests[@]}" <<'PYEOF'
import os, sys, yaml
args = sys.argv[1:]
sep = args.index("--")
rule_files, test_files = args[:sep], args[sep + 1:]
alerts = {}
for rf in rule_files:
    for g in yaml.safe_load(open(rf))["groups"]:
        for r in g["rules"]:
            if "alert" in r:
                alerts.setdefault(r["alert"], rf)
fires, silent, loaded = set(), set(), set()
for tf in test_files:
    t = yaml.safe_load(open(tf))
    for rf in t.get("rule_files", []):
        loaded.add(os.path.normpath(os.path.join(os.path.dirname(tf), rf)))
    for case in t.get("tests", []):
        for a in case.get("alert_rule_test", []) or []:
            (fires if a.get("exp_alerts") else silent).add(a["alertname"])
errors = []
for name, rf in sorted(alerts.items()):
    if name not in fires:
        errors.append(f"{name} ({rf}): no test where it fires")
    if name not in silent:
        errors.append(f"{name} ({rf}): no test where it stays silent")
for rf in rule_files:
    if os.path.normpath(rf) not in loaded:
        errors.append(f"{rf}: not loaded by any unit test")
print(f"  {len(alerts)} alerts, each with a firing and a silent case" if not errors else "")
for e in errors:
    print("  ERROR:", e)
sys.exit(1 if errors else 0)
PYEOF

log "mutation check: the unit tests must fail on broken rules"
mkdir -p "$TMP/m1/tests" "$TMP/m2/tests"
cp alerts/*.rules.yml "$TMP/m1/"; cp alerts/tests/*.test.yml "$TMP/m1/tests/"
cp alerts/*.rules.yml "$TMP/m2/"; cp alerts/tests/*.test.yml "$TMP/m2/tests/"
sed -i 's/expr: probe_up == 0/expr: probe_up == 1/' "$TMP/m1/probes.rules.yml"
grep -q 'expr: probe_up == 1' "$TMP/m1/probes.rules.yml" || fail "mutation 1 not applied"
if promtool test rules "$TMP/m1/tests/probes.test.yml" >/dev/null 2>&1; then
  fail "tests pass although PesProbeDown fires on probe_up == 1"
fi
# PostgreSQL saturation: critical for: 2m -> 20m
sed -i '/probe_postgres_connections_ratio > 0.95/{n;s/for: 2m/for: 20m/}' "$TMP/m2/probes.rules.yml"
grep -q 'for: 20m' "$TMP/m2/probes.rules.yml" || fail "mutation 2 not applied"
if promtool test rules "$TMP/m2/tests/probes.test.yml" >/dev/null 2>&1; then
  fail "tests pass although the critical PostgreSQL saturation alert waits 20 minutes"
fi
log "  both mutations were caught"
log "PASS"
