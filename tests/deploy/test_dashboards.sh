#!/usr/bin/env bash
# Static checks of the Grafana dashboards (dashboards/*.json):
#  - the committed JSON is exactly what dashboards/generate.py writes;
#  - valid JSON, Grafana 10+ schema, unique dashboard uids, unique panel ids, sane grid;
#  - every datasource reference is the one datasource the provisioning defines;
#  - every panel (other than rows) has a query, and only uses metric names of tests/deploy/metrics.txt;
#  - template variables `service` and `probe` exist; the overview has a row per seed service;
#  - every expression (Grafana variables substituted) parses as PromQL (promtool check rules).
source "$(dirname "$0")/lib.sh"
need promtool
cd "$PES_SOURCE_DIR"

log "regenerating dashboards into a temp dir and comparing with the committed JSON"
mkdir -p "$TMP/gen"
"$PY" dashboards/generate.py "$TMP/gen" >/dev/null
for f in "$TMP"/gen/*.json; do
  diff -u "dashboards/$(basename "$f")" "$f" >/dev/null \
    || fail "dashboards/$(basename "$f") differs from dashboards/generate.py output (run python3 dashboards/generate.py)"
done
n_gen=$(ls "$TMP"/gen/*.json | wc -l); n_repo=$(ls dashboards/*.json | wc -l)
[ "$n_gen" -eq "$n_repo" ] || fail "dashboards/ holds $n_repo JSON files, the generator writes $n_gen"

log "checking structure, ids, datasources, queries and metric names"
"$PY" tests/deploy/check_dashboards.py . "$TMP/exprs.yml" || fail "dashboard structure checks failed"

log "parsing every dashboard expression with promtool"
out=$(promtool check rules "$TMP/exprs.yml" 2>&1) || { echo "$out"; fail "a dashboard expression is not valid PromQL"; }
echo "$out" | grep -q "SUCCESS" || fail "promtool did not confirm the expressions: $out"

# The checks must be able to fail: the same checker has to reject a copy of the dashboards
# with a duplicate panel id, a foreign datasource, a panel without a query and an unknown metric.
log "self-check: a broken copy of the overview is rejected"
mkdir -p "$TMP/broken/tests/deploy" "$TMP/broken/compose/grafana/provisioning/datasources"
cp -r dashboards "$TMP/broken/"
cp tests/deploy/metrics.txt "$TMP/broken/tests/deploy/"
cp compose/grafana/provisioning/datasources/prometheus.yml "$TMP/broken/compose/grafana/provisioning/datasources/"
"$PY" - "$TMP/broken/dashboards/pes-overview.json" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["panels"][2]["id"] = d["panels"][1]["id"]
d["panels"][3]["datasource"] = {"type": "prometheus", "uid": "someone-elses"}
d["panels"][4]["targets"] = []
d["panels"][5]["targets"][0]["expr"] = "probe_made_up_metric"
json.dump(d, open(sys.argv[1], "w"))
PYEOF
out=$("$PY" tests/deploy/check_dashboards.py "$TMP/broken" "$TMP/broken.yml" 2>&1) && fail "checker accepted a broken dashboard"
for want in "duplicate panel id" "not the provisioned one" "no query" "unknown metric"; do
  grep -q "$want" <<<"$out" || fail "checker did not report '$want' in the broken copy: $out"
done
log "  broken copy rejected: duplicate id, foreign datasource, missing query, unknown metric"

log "PASS"
