#!/usr/bin/env bash
# The full incident drill (tests/drill/README.md; results in docs/drill.md): every scenario with
# the shipped timings (compose/agent.yml, compose/prometheus/prometheus.yml), PostgreSQL killed
# RUNS times (default 5) for p50/max, then the same PostgreSQL and blip scenarios with Debian's
# blackbox_exporter and the community rule (side by side). About 100 minutes. As root, after
# `cmake --build --preset default`.
#
#   scripts/drill.sh [OUT_DIR]          # default build/drill; tables in OUT_DIR/*.md, data in *.json
#   RUNS=5 SCENARIOS=pg-killed,blip scripts/drill.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/build/drill}"
agent="${PES_AGENT_BINARY:-$root/build/default/pes-agent}"
runs="${RUNS:-5}"
scenarios="${SCENARIOS:-pg-killed,ldap-down,idp-down,cut-off,blip,gitea-down,nc-maintenance,moodle-upgrade,nc-maint-ends-down,window,window-ends-down,slow}"
[ -x "$agent" ] || { echo "drill.sh: build the agent first (cmake --build --preset default)" >&2; exit 1; }
mkdir -p "$out"
py=/usr/bin/python3
"$py" "$root/tests/drill/drill.py" --agent "$agent" --scenarios "$scenarios" --repeat "$runs" \
  --out "$out" --label pes-agent
"$py" "$root/tests/drill/drill.py" --flavor blackbox --prom-interval 15s --scenarios pg-killed,blip --repeat "${BLACKBOX_RUNS:-1}" \
  --out "$out" --label blackbox-community
cat "$out/pes-agent.md" "$out/blackbox-community.md" > "$out/drill.md"
echo "drill.sh: tables in $out/drill.md, data in $out/*.json"
